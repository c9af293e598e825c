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
#include "progress.h"
#include "record.h"
#include "run.h"
#include "store.h"
#include "table.h"
#include "timeline.h"
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
            "%s"
            "  --timeline FILE.json   write the steps as Chrome trace event JSON (open it in\n"
            "                         ui.perfetto.dev); compare writes one file per strategy,\n"
            "                         FILE.<strategy>.json (docs/timeline.md)\n"
            "  --timeline-max-events N  cap on the events of a timeline file (default %ld;\n"
            "                         a last instant event says when it was reached)\n"
            "  --csv, --json          print the table as CSV or JSON on stdout (other lines go\n"
            "                         to stderr with --csv, into \"notes\" with --json)\n"
            "  -h, --help             this text\n",
            cmd,
            strcmp(cmd, "run") ? "Runs every strategy listed in [placement] strategies on the same\n"
                                 "trace and seed, one run each in the database, and prints a table."
                               : "Runs one strategy of the config (the first listed unless --strategy).",
            STORE_WAIT_S,
            strcmp(cmd, "run") ? "  --strategy NAME        run only this strategy of the list (repeatable)\n"
                               : "  --strategy NAME        the strategy to run (any known strategy)\n",
            strcmp(cmd, "run") ? "  --seeds N              run each strategy with seeds seed, seed+1, ..., seed+N-1\n"
                                 "                         and print mean +- 95% confidence half-width\n"
                                 "                         (default [experiment] seeds, 1)\n"
                               : "",
            TIMELINE_MAX_EVENTS_DEFAULT);
}

static int parse(int argc, char **argv, cmd_exp_t *o) {
    static const struct option opts[] = {
        {"db", required_argument, 0, 'd'},      {"set", required_argument, 0, 's'},
        {"replace", no_argument, 0, 'r'},       {"strategy", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},          {"wait-s", required_argument, 0, 'w'},
        {"timeline", required_argument, 0, 't'}, {"timeline-max-events", required_argument, 0, 'T'},
        {"seeds", required_argument, 0, 'n'},
        {"csv", no_argument, 0, 'C'},           {"json", no_argument, 0, 'J'},
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
        case 't':
            o->timeline = optarg;
            if (!*optarg)
                return ms_err("--timeline '': give a file name (example: --timeline "
                              "results/steps.json)");
            break;
        case 'T': {
            double v;
            if (ms_parse_double(optarg, &v) || v != (double)(long)v || v < 1 ||
                v > TIMELINE_MAX_EVENTS_LIMIT)
                return ms_err("--timeline-max-events '%s': give a whole number from 1 to %ld "
                              "(example: --timeline-max-events 100000)", optarg,
                              TIMELINE_MAX_EVENTS_LIMIT);
            o->timeline_max = (long)v;
            break;
        }
        case 'n': {
            double v;
            if (strcmp(argv[0], "compare") || ms_parse_double(optarg, &v) || v != (int)v ||
                v < 1 || v > 1000)
                return ms_err("--seeds '%s': give a whole number from 1 to 1000 to compare "
                              "(example: moesim compare CONFIG --seeds 5)", optarg);
            o->seeds = (int)v;
            break;
        }
        case 'C': o->format = TABLE_CSV; break;
        case 'J': o->format = TABLE_JSON; break;
        case 'h': usage(argv[0], stdout); exit(0);
        default: usage(argv[0], stderr); return MS_USAGE;
        }
    }
    if (optind != argc - 1) {
        usage(argv[0], stderr);
        ms_err("%s: give exactly one CONFIG file (example: moesim %s configs/demo.ini)", argv[0],
               argv[0]);
        return MS_USAGE;
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

/* --timeline: the file of one run (compare: one per strategy). Serving
 * draws decode devices then prefill ones, as nodes of one size. */
static int open_timeline(const cmd_exp_t *o, const run_spec_t *sp, int all, const char *strategy,
                         timeline_t **tl) {
    *tl = NULL;
    if (!o->timeline) return MS_OK;
    char path[4096];
    if (all) {
        if (timeline_strategy_path(o->timeline, strategy, path, sizeof path)) return MS_ERR;
    } else {
        snprintf(path, sizeof path, "%s", o->timeline);
    }
    const cluster_t *c = &sp->cluster;
    if (cluster_pp(c) > 1) /* the pipeline's stages run as separate sub-steps (step_pipe.c) */
        return ms_err("--timeline: a pipeline-parallel run (pp = %d) is not drawn; drop "
                      "--timeline or set [cluster] pp = 1", cluster_pp(c));
    int nodes = c->n_nodes, mb = c->overlap ? 2 : 1;
    if (sp->serving) {
        const cluster_t *p = &sp->serve.prefill;
        int pf = sp->serve.instances != SERVE_DECODE, dc = sp->serve.instances != SERVE_PREFILL;
        if (pf && dc && p->devices_per_node != c->devices_per_node)
            return ms_err("--timeline: the prefill and decode clusters have %d and %d devices "
                          "a node; a timeline draws nodes of one size (give both [cluster] and "
                          "[serving] prefill clusters the same devices_per_node, or run one "
                          "instance kind)", p->devices_per_node, c->devices_per_node);
        nodes = (dc ? c->n_nodes : 0) + (pf ? p->n_nodes : 0);
        if (pf && p->overlap) mb = 2;
        if (!dc) c = p;
    }
    return timeline_open(path, nodes, c->devices_per_node, mb,
                         o->timeline_max ? o->timeline_max : TIMELINE_MAX_EVENTS_DEFAULT, tl);
}

static int run_cmd(int argc, char **argv, int all) {
    cmd_exp_t o;
    run_spec_t spec;
    store_t *st = NULL;
    int rc = 1;
    char dbbuf[4096];
    int64_t ids[RUN_MAX_STRATEGIES];
    timeline_t *tl[RUN_MAX_STRATEGIES] = {0};
    metrics_t *runs = NULL;
    table_doc_t *doc = NULL;
    int pr = parse(argc, argv, &o);
    if (pr == MS_USAGE) rc = MS_EXIT_USAGE;
    if (pr || run_spec_load(o.cfg, &spec) || select_strategies(&o, &spec, all)) goto out;
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
    int seeds = all && o.seeds ? o.seeds : all ? spec.seeds : 1;
    uint64_t seed0 = spec.seed;
    runs = ms_calloc((size_t)seeds, sizeof *runs);
    metrics_ci_t ci;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < seeds; k++) {
            run_summary_t sum;
            progress_runs(i * seeds + k, n * seeds); /* the line's share and "run i/n" */
            /* the stored config says which seed ran */
            char sv[32];
            snprintf(sv, sizeof sv, "%llu", (unsigned long long)(seed0 + (uint64_t)k));
            cfg_set(o.cfg, "experiment", "seed", sv, "--seeds", 0);
            spec.seed = seed0 + (uint64_t)k;
            /* a timeline draws the first seed's run */
            timeline_t **t = k ? &(timeline_t *){NULL} : &tl[i];
            if ((!k && open_timeline(&o, &spec, all, spec.strategies[i], t)) ||
                run_one_timeline(&spec, spec.strategies[i], st, &sum, *t) || timeline_finish(*t))
                goto out;
            ids[i] = sum.run_id;
            runs[k] = sum.m;
        }
        if (seeds > 1) {
            metrics_ci_from_runs(runs, seeds, &ci);
            if (record_metrics_ci(st, ids[i], &ci)) goto out;
        }
    }
    /* The runs are published here, together (with --replace, in place of
     * the old): a compare that fails on its last strategy stores nothing.
     * The table shows what the database now holds, read back. */
    progress_runs(0, 0);
    if (store_finish(st)) goto out;
    /* the timelines too move into place only now, all runs done and stored */
    for (int i = 0; i < n; i++) {
        int bad = timeline_close(tl[i]);
        tl[i] = NULL;
        if (bad) goto out;
    }
    char plb[600];
    const char *prior = prior_display(prior_label(&spec.prior, plb, sizeof plb));
    /* run prints one sentence as text; compare (and run as CSV or JSON) the table */
    doc = table_doc_new(argv[0], (table_format_t)o.format);
    table_t *tb = all || o.format != TABLE_TEXT ? metrics_table(doc, spec.serving, seeds > 1) : NULL;
    for (int i = 0; i < n; i++) {
        metrics_t m;
        int64_t id = store_final_id(st, ids[i]);
        if (seeds > 1) {
            if (metrics_load_ci(store_db(st), id, &ci)) goto out;
            metrics_table_row_ci(tb, spec.strategies[i], prior, &ci, spec.serving);
            continue;
        }
        if (metrics_load(store_db(st), id, &m)) goto out;
        if (tb) metrics_table_row(tb, spec.strategies[i], prior, &m, spec.serving);
        else metrics_print_run(stdout, id, spec.strategies[i], prior, &m, spec.serving);
    }
    if (seeds > 1)
        table_note(doc, "seeds", "(mean +- half-width of the 95%% confidence interval over %d "
                   "seeds, %llu to %llu)", seeds, (unsigned long long)seed0,
                   (unsigned long long)(seed0 + (uint64_t)seeds - 1));
    table_note(doc, "results", "results: %s", o.db);
    if (table_print(doc, stdout)) goto out;
    rc = 0;
out:
    table_doc_free(doc);
    free(runs);
    for (int i = 0; i < RUN_MAX_STRATEGIES; i++) timeline_abort(tl[i]);
    store_close(st); /* unpublished runs are dropped; the database is as it was */
    cfg_free(o.cfg);
    return rc;
}

int cmd_run(int argc, char **argv) { return run_cmd(argc, argv, 0); }
int cmd_compare(int argc, char **argv) { return run_cmd(argc, argv, 1); }
