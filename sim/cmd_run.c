/* cmd_run: `moesim run` (one strategy) and `moesim compare` (every strategy
 * of the config on the same trace and seed). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd.h"
#include "metrics.h"
#include "place.h"
#include "prior.h"
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
            "  --replace              the new runs replace the experiment's earlier runs (both in\n"
            "                         one transaction, once every new run is done)\n"
            "  --wait-s SECONDS       how long to wait for another process writing the same\n"
            "                         database before giving up (default %.0f)\n"
            "%s"
            "  -h, --help             this text\n",
            cmd,
            strcmp(cmd, "run") ? "Runs every strategy listed in [placement] strategies on the same\n"
                                 "trace and seed, one run each in the database, and prints a table."
                               : "Runs one strategy of the config (the first listed unless --strategy).",
            STORE_WAIT_S,
            strcmp(cmd, "run") ? "  --strategy NAME        run only this strategy of the list (repeatable)\n"
                               : "  --strategy NAME        the strategy to run (any known strategy)\n");
}

static int parse(int argc, char **argv, cmd_exp_t *o) {
    static const struct option opts[] = {
        {"db", required_argument, 0, 'd'},      {"set", required_argument, 0, 's'},
        {"replace", no_argument, 0, 'r'},       {"strategy", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},          {"wait-s", required_argument, 0, 'w'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    const char *sets[256];
    int nsets = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->db = optarg;
            if (!*optarg)
                return ms_err("--db '': the results database needs a file name (example: --db "
                              "results/demo.db)");
            break;
        case 's':
            if (nsets == 256) return ms_err("too many --set options");
            sets[nsets++] = optarg;
            break;
        case 'r': o->replace = 1; break;
        case 'S':
            if (o->n_only == CMD_MAX_ONLY) return ms_err("too many --strategy options");
            o->only[o->n_only++] = optarg;
            break;
        case 'w':
            if (ms_parse_double(optarg, &o->wait_s) || o->wait_s <= 0 || o->wait_s > 1e6)
                return ms_err("--wait-s '%s': give seconds between 0 and 1000000 (example: "
                              "--wait-s 60)", optarg);
            break;
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

/* A default database name from the experiment name must stay inside
 * results/: no folders, no leading dot, no control characters. */
static int check_name(const char *name, const cfg_t *cfg) {
    int bad = !*name || *name == '.' || strlen(name) > 200;
    for (const char *p = name; *p; p++) bad |= *p == '/' || *p == '\\' || (unsigned char)*p < 32;
    if (bad)
        return ms_err("%s: [experiment] name = '%s' cannot name the file results/<name>.db (use "
                      "letters, digits, '-', '_' and '.', not starting with '.'; or give --db "
                      "FILE)", cfg_where((cfg_t *)cfg, "experiment", "name"), name);
    return MS_OK;
}

/* --strategy: for run, the one strategy to run (any known one); for compare,
 * the listed strategies to keep, in the config's order. */
static int select_strategies(const cmd_exp_t *o, run_spec_t *spec, int all) {
    if (!o->n_only) return MS_OK;
    for (int k = 0; k < o->n_only; k++)
        if (!place_find(o->only[k]))
            return ms_err("--strategy %s: unknown strategy (known: %s)", o->only[k],
                          place_names());
    if (!all) {
        if (o->n_only > 1) return ms_err("run: give one --strategy (compare runs several)");
        snprintf(spec->strategies[0], sizeof spec->strategies[0], "%s", o->only[0]);
        spec->n_strategies = 1;
        return MS_OK;
    }
    for (int k = 0; k < o->n_only; k++) {
        int found = 0;
        for (int i = 0; i < spec->n_strategies; i++) found |= !strcmp(spec->strategies[i], o->only[k]);
        if (!found)
            return ms_err("--strategy %s: not in %s's [placement] strategies (add it there, or "
                          "choose one of the list)", o->only[k], o->config);
    }
    int n = 0;
    for (int i = 0; i < spec->n_strategies; i++) {
        int keep = 0;
        for (int k = 0; k < o->n_only; k++) keep |= !strcmp(spec->strategies[i], o->only[k]);
        if (keep && n != i) memcpy(spec->strategies[n], spec->strategies[i], sizeof spec->strategies[0]);
        n += keep;
    }
    spec->n_strategies = n;
    return MS_OK;
}

static int run_cmd(int argc, char **argv, int all) {
    cmd_exp_t o;
    run_spec_t spec;
    store_t *st = NULL;
    int rc = 1;
    char dbbuf[4096];
    int64_t ids[RUN_MAX_STRATEGIES];
    if (parse(argc, argv, &o) || run_spec_load(o.cfg, &spec) || select_strategies(&o, &spec, all))
        goto out;
    int n = all ? spec.n_strategies : 1;
    if (run_spec_check(&spec)) goto out; /* fail before anything is written */
    if (!o.db) {
        if (check_name(spec.name, o.cfg)) goto out;
        snprintf(dbbuf, sizeof dbbuf, "results/%s.db", spec.name);
        o.db = dbbuf;
    }
    store_opts_t so = {.wait_s = o.wait_s, .replace = o.replace ? spec.name : NULL,
                       .make_parent = 1, .batch = 1};
    if (store_open_results(o.db, &so, &st)) goto out;
    for (int i = 0; i < n; i++) {
        run_summary_t sum;
        serve_progress_runs(i, n);
        if (run_one(&spec, spec.strategies[i], st, &sum)) goto out;
        ids[i] = sum.run_id;
    }
    /* The runs are published here, together (with --replace, in place of
     * the old): a compare that fails on its last strategy stores nothing.
     * The table shows what the database now holds, read back. */
    if (store_finish(st)) goto out;
    char plb[600];
    const char *prior = prior_display(prior_label(&spec.prior, plb, sizeof plb));
    if (all) metrics_print_header(stdout, spec.serving);
    for (int i = 0; i < n; i++) {
        metrics_t m;
        int64_t id = store_final_id(st, ids[i]);
        if (metrics_load(store_db(st), id, &m)) goto out;
        if (all) metrics_print_row(stdout, spec.strategies[i], prior, &m, spec.serving);
        else metrics_print_run(stdout, id, spec.strategies[i], prior, &m, spec.serving);
    }
    printf("results: %s\n", o.db);
    rc = 0;
out:
    store_close(st); /* unpublished runs are dropped; the database is as it was */
    cfg_free(o.cfg);
    return rc;
}

int cmd_run(int argc, char **argv) { return run_cmd(argc, argv, 0); }
int cmd_compare(int argc, char **argv) { return run_cmd(argc, argv, 1); }
