/* cmd_run: `moesim run` (one strategy) and `moesim compare` (every strategy
 * of the config on the same trace and seed). */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd.h"
#include "metrics.h"
#include "run.h"
#include "store.h"
#include "util.h"

static void usage(const char *cmd, FILE *f) {
    fprintf(f,
            "usage: moesim %s CONFIG [options]\n"
            "\n%s\n\n"
            "options:\n"
            "  --db FILE              results database (default: results/<experiment name>.db)\n"
            "  --set SECTION.KEY=VAL  override a config key (repeatable), e.g. cluster.nodes=18\n"
            "  --replace              delete earlier runs of the same experiment name first\n"
            "%s"
            "  -h, --help             this text\n",
            cmd,
            strcmp(cmd, "run") ? "Runs every strategy listed in [placement] strategies on the same\n"
                                 "trace and seed, one run each in the database, and prints a table."
                               : "Runs one strategy of the config (the first listed unless --strategy).",
            strcmp(cmd, "run") ? "" : "  --strategy NAME        the strategy to run\n");
}

static int parse(int argc, char **argv, cmd_exp_t *o) {
    static const struct option opts[] = {
        {"db", required_argument, 0, 'd'},      {"set", required_argument, 0, 's'},
        {"replace", no_argument, 0, 'r'},       {"strategy", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    const char *sets[256];
    int nsets = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': o->db = optarg; break;
        case 's':
            if (nsets == 256) return ms_err("too many --set options");
            sets[nsets++] = optarg;
            break;
        case 'r': o->replace = 1; break;
        case 'S': o->strategy = optarg; break;
        case 'h': usage(argv[0], stdout); exit(0);
        default: usage(argv[0], stderr); return MS_ERR;
        }
    }
    if (optind != argc - 1) {
        usage(argv[0], stderr);
        return ms_err("%s: give exactly one CONFIG file (example: moesim %s configs/demo.ini)",
                      argv[0], argv[0]);
    }
    o->config = argv[optind];
    if (cfg_load(o->config, &o->cfg)) return MS_ERR;
    for (int i = 0; i < nsets; i++)
        if (cfg_set_assign(o->cfg, sets[i], "--set", i + 1)) return MS_ERR;
    return MS_OK;
}

/* Creates the database's folder if it is missing (one level). */
static void make_parent(const char *path) {
    char *dup = ms_strdup(path);
    char *dir = dirname(dup);
    if (strcmp(dir, ".") && access(dir, F_OK)) mkdir(dir, 0777);
    free(dup);
}

static int run_cmd(int argc, char **argv, int all) {
    cmd_exp_t o;
    run_spec_t spec;
    store_t *st = NULL;
    int rc = 1, existed = 0;
    char dbbuf[4096];
    if (parse(argc, argv, &o) || run_spec_load(o.cfg, &spec)) goto out;
    if (o.strategy) {
        int found = 0;
        for (int i = 0; i < spec.n_strategies; i++) found |= !strcmp(spec.strategies[i], o.strategy);
        if (!found) {
            snprintf(spec.strategies[0], sizeof spec.strategies[0], "%s", o.strategy);
            spec.n_strategies = 1;
        } else {
            snprintf(spec.strategies[0], sizeof spec.strategies[0], "%s", o.strategy);
        }
    }
    int n = all ? spec.n_strategies : 1;
    if (run_spec_check(&spec)) goto out; /* fail before anything is written */
    if (!o.db) {
        snprintf(dbbuf, sizeof dbbuf, "results/%s.db", spec.name);
        o.db = dbbuf;
    }
    existed = access(o.db, F_OK) == 0;
    make_parent(o.db);
    if (store_open(o.db, &st)) goto out;
    if (o.replace && store_delete_named(st, spec.name)) goto out;
    if (all) metrics_print_header(stdout, spec.serving);
    for (int i = 0; i < n; i++) {
        run_summary_t sum;
        metrics_t m;
        serve_progress_runs(i, n);
        /* The table shows what the database now holds, read back. */
        if (run_one(&spec, spec.strategies[i], st, &sum) ||
            metrics_load(store_db(st), sum.run_id, &m))
            goto out;
        if (all) metrics_print_row(stdout, spec.strategies[i], &m, spec.serving);
        else metrics_print_run(stdout, sum.run_id, spec.strategies[i], &m, spec.serving);
    }
    printf("results: %s\n", o.db);
    rc = 0;
out:
    store_close(st);
    if (rc && o.db && !existed) unlink(o.db); /* no half-written output */
    cfg_free(o.cfg);
    return rc;
}

int cmd_run(int argc, char **argv) { return run_cmd(argc, argv, 0); }
int cmd_compare(int argc, char **argv) { return run_cmd(argc, argv, 1); }
