/* cmd_place: `moesim place`: one strategy's first layout from a counts
 * file, without simulating anything. Writes the layout as CSV, prints per
 * layer PAR, balancedness, the maximum device load and its gap to the lower
 * bound, and can store the same in the results database.
 *
 * Planning and scoring are kept apart: --counts A --eval B plans on A and
 * scores on B (out-of-sample, as a deployment that plans from an earlier
 * dump), beside the in-sample PAR on A and the hindsight PAR of the same
 * strategy planned on B itself; --window N does the same on one time-axis
 * trace, window i against window i+1. */
#include <errno.h>
#include <math.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd.h"
#include "progress.h"
#include "table.h"
#include "metrics.h"
#include "record.h"
#include "moe.h"
#include "place.h"
#include "presets.h"
#include "prior.h"
#include "store.h"
#include "trace.h"
#include "util.h"

#define PLACE_MAX_SETS 256

/* The command line, parsed. */
typedef struct place_args {
    const char *strategy, *counts, *out, *db, *model, *name;
    int sglang; /* --format sglang: --out is SGLang's expert-location JSON */
    const char *eval, *prior; /* scored file; what the layout is planned from */
    long window;              /* steps per window, 0: none */
    long devices, nodes, redundant, groups, seed; /* -1: not given */
    int quiet;
    int fmt;      /* --csv, --json: a table_format_t */
    int n_sets;
    const char *sets[PLACE_MAX_SETS];
} place_args_t;

/* One layer's figures under an even split of each expert over its replicas. */
static void usage(FILE *f) {
    fprintf(f,
            "usage: moesim place --strategy NAME --counts FILE [options]\n"
            "\n"
            "Builds one strategy's layout from expert activation counts (summed over the\n"
            "file's steps, given to the strategy as its prior), prints per layer the\n"
            "peak-to-average ratio (PAR), balancedness (mean/max device load), the maximum\n"
            "device load, the lower bound on it and the gap, then the averages.\n"
            "Scored on the file it was planned on, the PAR is in-sample (an oracle no\n"
            "deployment has); --eval scores it on another file (out-of-sample) and adds\n"
            "the in-sample PAR and the hindsight PAR (the same strategy planned on the\n"
            "scored file itself).\n"
            "\n"
            "options:\n"
            "  --strategy NAME        placement strategy (%s)\n"
            "  --counts FILE          counts to plan on: SGLang expert statistics JSON (or any\n"
            "                         trace format)\n"
            "  --eval FILE            score the layout on FILE instead (out-of-sample)\n"
            "  --prior P              plan on: trace:PATH, oracle (the scored file), none\n"
            "                         (default: the --counts file)\n"
            "  --window N             on a trace with a time axis: plan on each window of N\n"
            "                         steps, score on the next, print the mean over windows\n"
            "  --out FILE             write the layout CSV: layer,slot,device,expert\n"
            "  --format csv|sglang    --out as that CSV (default) or as the JSON SGLang's\n"
            "                         --init-expert-location FILE.json loads:\n"
            "                         physical_to_logical_map [all layers][slots]\n"
            "  --devices D            devices (GPUs) (default 32)\n"
            "  --nodes N              nodes, D a multiple of N (default D/8 when 8 divides D, else 1)\n"
            "  --redundant R          redundant slots per layer; experts + R a multiple of D\n"
            "                         (default 0)\n"
            "  --groups G             expert groups (default: the model's, 8 for deepseek-v3)\n"
            "  --model NAME|FILE      model preset the counts come from (default deepseek-v3),\n"
            "                         or a preset .ini or Hugging Face config.json\n"
            "  --seed S               seed for strategies that draw random numbers (default 1)\n"
            "  --set SECTION.KEY=VAL  strategy parameter (repeatable), e.g.\n"
            "                         strategy.eplb.policy=global\n"
            "  --db FILE              also store the result (runs, layer_bounds, replicas,\n"
            "                         device_loads, trace_counts, summary)\n"
            "  --name NAME            experiment name in the database (default place)\n"
            "  -q, --quiet            print the averages only\n"
            "  --csv, --json          print the tables (layers, windows, summary) as CSV or\n"
            "                         JSON on stdout; other lines go to stderr\n"
            "  -h, --help             this text\n",
            place_names());
}

static int parse_count(const char *flag, const char *v, long min, long max, long *out) {
    if (ms_parse_int(v, out) || *out < min || *out > max)
        return ms_err("place: %s '%s' (give a whole number from %ld to %ld)", flag, v, min, max);
    return MS_OK;
}

static int parse(int argc, char **argv, place_args_t *a) {
    static const struct option opts[] = {
        {"strategy", required_argument, 0, 'S'}, {"counts", required_argument, 0, 'c'},
        {"out", required_argument, 0, 'o'},      {"devices", required_argument, 0, 'D'},
        {"nodes", required_argument, 0, 'N'},    {"redundant", required_argument, 0, 'R'},
        {"groups", required_argument, 0, 'G'},   {"model", required_argument, 0, 'm'},
        {"seed", required_argument, 0, 'x'},     {"set", required_argument, 0, 's'},
        {"db", required_argument, 0, 'd'},       {"name", required_argument, 0, 'n'},
        {"quiet", no_argument, 0, 'q'},          {"help", no_argument, 0, 'h'},
        {"format", required_argument, 0, 'f'},
        {"eval", required_argument, 0, 'e'},     {"prior", required_argument, 0, 'P'},
        {"window", required_argument, 0, 'w'},
        {"csv", no_argument, 0, 'C'},            {"json", no_argument, 0, 'J'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->devices = a->nodes = a->redundant = a->groups = a->seed = -1;
    a->model = "deepseek-v3";
    a->name = "place";
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":qh", opts, NULL)) != -1) {
        switch (c) {
        case 'S': a->strategy = optarg; break;
        case 'c': a->counts = optarg; break;
        case 'o': a->out = optarg; break;
        case 'D': if (parse_count("--devices", optarg, 1, 1 << 20, &a->devices)) return MS_ERR; break;
        case 'N': if (parse_count("--nodes", optarg, 1, 1 << 20, &a->nodes)) return MS_ERR; break;
        case 'R': if (parse_count("--redundant", optarg, 0, 1 << 20, &a->redundant)) return MS_ERR; break;
        case 'G': if (parse_count("--groups", optarg, 1, 1 << 20, &a->groups)) return MS_ERR; break;
        case 'x': if (parse_count("--seed", optarg, 0, INT64_MAX, &a->seed)) return MS_ERR; break;
        case 'm': a->model = optarg; break;
        case 'e': a->eval = optarg; break;
        case 'P': a->prior = optarg; break;
        case 'w': if (parse_count("--window", optarg, 1, 1 << 30, &a->window)) return MS_ERR; break;
        case 's':
            if (a->n_sets == PLACE_MAX_SETS) return ms_err("place: more than %d --set options", PLACE_MAX_SETS);
            a->sets[a->n_sets++] = optarg;
            break;
        case 'd': a->db = optarg; break;
        case 'n': a->name = optarg; break;
        case 'f':
            if (strcmp(optarg, "csv") && strcmp(optarg, "sglang"))
                return ms_err("place: --format '%s' (give csv or sglang)", optarg);
            a->sglang = !strcmp(optarg, "sglang");
            break;
        case 'q': a->quiet = 1; break;
        case 'C': a->fmt = TABLE_CSV; break;
        case 'J': a->fmt = TABLE_JSON; break;
        case 'h': usage(stdout); exit(0);
        case ':': ms_err("place: %s needs a value (see moesim place --help)", argv[optind - 1]); return MS_USAGE;
        default:
            ms_err("place: unknown option '%s' (see moesim place --help)", argv[optind - 1]);
            return MS_USAGE;
        }
    }
    /* the command line's own mistakes are usage errors (exit 2) */
    if (optind < argc) {
        ms_err("place: unexpected argument '%s' (options only; see moesim place --help)",
               argv[optind]);
        return MS_USAGE;
    }
    if (!a->strategy) {
        ms_err("place: no --strategy (known: %s; example: moesim place --strategy eplb "
               "--counts trace.json --out layout.csv)", place_names());
        return MS_USAGE;
    }
    if (!place_find(a->strategy))
        return ms_err("place: unknown strategy '%s' (known: %s)", a->strategy, place_names());
    if (!a->counts) {
        ms_err("place: no --counts FILE (example: --counts traces/data/deepseek-v3-sglang/"
               "decode_in1000out1000.json)");
        return MS_USAGE;
    }
    if (a->sglang) {
        size_t n = a->out ? strlen(a->out) : 0;
        /* SGLang reads a file only when the name ends in .json; any other
         * argument it parses as inline JSON. */
        if (n < 5 || strcmp(a->out + n - 5, ".json")) {
            ms_err("place: --format sglang needs --out FILE.json (SGLang's "
                   "--init-expert-location reads a file only when its name ends in .json)");
            return MS_USAGE;
        }
    }
    if (a->devices < 0) a->devices = 32;
    if (a->nodes < 0) a->nodes = a->devices % 8 == 0 ? a->devices / 8 : 1;
    if (a->redundant < 0) a->redundant = 0;
    if (a->seed < 0) a->seed = 1;
    if (a->devices % a->nodes)
        return ms_err("place: %ld devices do not divide over %ld nodes (give --devices a multiple "
                      "of --nodes)", a->devices, a->nodes);
    if (a->window && (a->eval || a->prior || a->out || a->db)) {
        ms_err("place: --window plans and scores windows of the --counts trace; it takes "
               "no --eval, --prior, --out or --db (drop them, or drop --window)");
        return MS_USAGE;
    }
    return MS_OK;
}

/* Writes the layout to a temporary file beside path, as CSV or (n_dense >=
 * 0) as SGLang JSON with n_dense dense layers first; *tmp gets its name. */
static int write_tmp(const place_layout_t *lo, int n_dense, const char *path, char **tmp) {
    size_t n = strlen(path) + 16;
    *tmp = ms_malloc(n);
    snprintf(*tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(*tmp);
    if (fd < 0) {
        ms_err("%s: cannot create the layout file: %s (check the folder exists and is writable)",
               path, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return MS_ERR;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
        return ms_err("%s: cannot write the layout file: %s", path, strerror(errno));
    }
    int rc = n_dense < 0 ? place_layout_write_csv(lo, f) : place_layout_write_sglang(lo, n_dense, f);
    if (fclose(f) && rc == MS_OK) rc = ms_err("%s: write error: %s", path, strerror(errno));
    if (rc) {
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
    }
    return rc;
}

/* The run's identity for the database: the options and the --set keys. */
static char *config_text(const place_args_t *a, cfg_t *c, const char *strategy,
                         const char *prior) {
    char v[64];
#define SETI(k, x) (snprintf(v, sizeof v, "%ld", (long)(x)), cfg_set(c, "place", k, v, "place", 0))
    cfg_set(c, "place", "strategy", strategy, "place", 0);
    cfg_set(c, "place", "counts", a->counts, "place", 0);
    if (a->eval) cfg_set(c, "place", "eval", a->eval, "place", 0);
    cfg_set(c, "place", "prior", prior, "place", 0);
    cfg_set(c, "place", "model", a->model, "place", 0);
    SETI("devices", a->devices);
    SETI("nodes", a->nodes);
    SETI("redundant", a->redundant);
    SETI("groups", a->groups);
    SETI("seed", a->seed);
#undef SETI
    return cfg_canonical(c);
}

static int store_all(const place_args_t *a, cfg_t *c, const place_ops_t *ops, place_state_t *ps,
                     const place_layout_t *lo, const char *scored_path, const char *prior_label,
                     const double *scored, const metrics_loads_t *acc,
                     const metrics_layer_bound_t *row, const metrics_t *m) {
    store_t *st = NULL;
    record_t rec = {0};
    int rc = MS_ERR;
    char *text = config_text(a, c, ops->name, prior_label);
    store_run_t meta = {.name = a->name, .strategy = ops->name,
                        .strategy_version = ops->algo_version, .trace = scored_path,
                        .model = a->model, .hardware = "none", .nodes = (int)a->nodes,
                        .devices = (int)a->devices, .seed = (uint64_t)a->seed,
                        .prior = prior_label};
    if (store_open(a->db, &st) || record_begin(&rec, st, &meta, text) ||
        record_layers(&rec, lo, scored, acc, row) || record_metrics(&rec, m) ||
        record_strategy_metrics(&rec, ops, ps, "") || record_commit(&rec))
        goto out;
    rc = MS_OK;
out:
    record_abort(&rec);
    store_close(st); /* a failed run was never published: the database is as it was */
    free(text);
    return rc;
}

/* Counts of steps [s0, s1) of t summed per layer: [L][E], caller frees. */
static double *sum_steps(const trace_t *t, int s0, int s1) {
    int L = t->n_layers, E = t->n_experts;
    double *w = ms_calloc((size_t)L * E, sizeof *w);
    for (int s = s0; s < s1; s++)
        for (int l = 0; l < L; l++) {
            const double *c = trace_counts(t, s, l);
            for (int e = 0; e < E; e++) w[(size_t)l * E + e] += c[e];
        }
    return w;
}

/* The strategy's layout planned from w (NULL: no statistics). */
static int plan(const place_ops_t *ops, const place_env_t *env, const double *w,
                place_state_t **ps, place_layout_t **lo) {
    *ps = NULL;
    *lo = NULL;
    if (ops->init(env, w, ps, lo)) return MS_ERR;
    if ((*lo)->n_layers != env->n_layers || (*lo)->n_experts != env->n_experts ||
        (*lo)->n_devices != env->n_devices)
        return ms_err("place: strategy %s made a %d x %d layout on %d devices for %d x %d on %d "
                      "(a bug in the strategy)", ops->name, (*lo)->n_layers, (*lo)->n_experts,
                      (*lo)->n_devices, env->n_layers, env->n_experts, env->n_devices);
    return MS_OK;
}

static void drop(const place_ops_t *ops, place_state_t **ps, place_layout_t **lo) {
    if (*ps && ops->destroy) ops->destroy(*ps);
    place_layout_free(*lo);
    *ps = NULL;
    *lo = NULL;
}

/* Per layer, the lower bound over the mean device load on loads w. */
static double bound_par(const place_layout_t *lo, const double *w, double *per_layer) {
    int L = lo->n_layers, E = lo->n_experts, D = lo->n_devices;
    double sum = 0;
    for (int l = 0; l < L; l++) {
        const double *wl = w + (size_t)l * E;
        double tot = 0;
        for (int e = 0; e < E; e++) tot += wl[e];
        double b = tot > 0 ? place_bound(wl, E, D, lo->layer[l].n_slots) / (tot / D) : 1.0;
        if (per_layer) per_layer[l] = b;
        sum += b;
    }
    return sum / L;
}

/* Per-layer PAR of lo on loads w into par[L]; returns the mean. */
static double layer_pars(const place_layout_t *lo, const double *w, double *par) {
    int L = lo->n_layers, E = lo->n_experts, D = lo->n_devices;
    double *dl = ms_malloc((size_t)D * sizeof *dl), sum = 0;
    for (int l = 0; l < L; l++) {
        place_device_load(lo, l, w + (size_t)l * E, dl);
        par[l] = metrics_par(dl, D);
        sum += par[l];
    }
    free(dl);
    return sum / L;
}

static int check_shape(const trace_t *t, const char *path, const moe_model_t *m) {
    if (t->n_experts != m->n_experts || t->n_layers != moe_n_moe_layers(m))
        return ms_err("%s: counts have %d MoE layers x %d experts but model %s has %d x %d (give "
                      "the --model the counts were recorded from)",
                      path, t->n_layers, t->n_experts, m->name, moe_n_moe_layers(m),
                      m->n_experts);
    return MS_OK;
}

/* --window N: plan on window i, score on window i + 1, for every pair. */
static int windows(const place_args_t *a, const place_ops_t *ops, const place_env_t *env,
                   const trace_t *tr) {
    int N = (int)a->window, W = tr->n_steps / N, L = env->n_layers;
    if (!tr->has_steps || W < 2)
        return ms_err("%s: --window %d needs a trace with a time axis of at least %d steps (it "
                      "has %d%s; lower --window, or use --counts A --eval B on two files)",
                      a->counts, N, 2 * N, tr->n_steps, tr->has_steps ? "" : ", no time axis");
    double *par = ms_calloc((size_t)L, sizeof *par);
    double *lin = ms_calloc((size_t)L, sizeof *lin), *lout = ms_calloc((size_t)L, sizeof *lout);
    double *lh = ms_calloc((size_t)L, sizeof *lh), *lb = ms_calloc((size_t)L, sizeof *lb);
    double m_in = 0, m_out = 0, m_h = 0, m_b = 0;
    place_state_t *ps = NULL;
    place_layout_t *lo = NULL;
    double *cur = sum_steps(tr, 0, N), *next = NULL;
    int rc = MS_ERR;
    table_doc_t *d = table_doc_new("place", (table_format_t)a->fmt);
    table_t *tw = table_new(d, "windows", NULL);
    static const char *const wk[] = {"par_in", "par_out", "hindsight", "bound"};
    static const char *const wh[] = {"PAR in", "PAR out", "hindsight", "bound"};
    table_col(tw, "window", "window", 6, 0);
    for (int k = 0; k < 4; k++) table_col(tw, wk[k], wh[k], 10, 0);
    progress_t prog;
    progress_begin(&prog, "place --window");
    for (int i = 0; i + 1 < W; i++) {
        if (prog.on) {
            char pd[48];
            snprintf(pd, sizeof pd, "window %d/%d", i + 1, W - 1);
            progress_update(&prog, i, W - 1, pd, 0);
        }
        next = sum_steps(tr, (i + 1) * N, (i + 2) * N);
        if (plan(ops, env, cur, &ps, &lo)) goto out;
        double pin = layer_pars(lo, cur, par);
        for (int l = 0; l < L; l++) lin[l] += par[l];
        double pout = layer_pars(lo, next, par);
        for (int l = 0; l < L; l++) lout[l] += par[l];
        double pb = bound_par(lo, next, par);
        for (int l = 0; l < L; l++) lb[l] += par[l];
        drop(ops, &ps, &lo);
        if (plan(ops, env, next, &ps, &lo)) goto out;
        double ph = layer_pars(lo, next, par);
        for (int l = 0; l < L; l++) lh[l] += par[l];
        drop(ops, &ps, &lo);
        table_int(tw, i);
        table_num(tw, pin, 4);
        table_num(tw, pout, 4);
        table_num(tw, ph, 4);
        table_num(tw, pb, 4);
        m_in += pin;
        m_out += pout;
        m_h += ph;
        m_b += pb;
        free(cur);
        cur = next;
        next = NULL;
    }
    if (!a->quiet) {
        char title[64];
        snprintf(title, sizeof title, "per layer, averaged over %d windows:", W - 1);
        table_t *tl = table_new(d, "layers", title);
        table_col(tl, "layer", "layer", 5, 0);
        for (int k = 0; k < 4; k++) table_col(tl, wk[k], wh[k], 10, 0);
        for (int l = 0; l < L; l++) {
            table_int(tl, l);
            table_num(tl, lin[l] / (W - 1), 4);
            table_num(tl, lout[l] / (W - 1), 4);
            table_num(tl, lh[l] / (W - 1), 4);
            table_num(tl, lb[l] / (W - 1), 4);
        }
    }
    if (a->fmt != TABLE_TEXT) {
        table_t *ts = table_new(d, "summary", NULL);
        static const char *const sk[] = {"strategy", "counts", "window_steps", "pairs",
                                         "par_in", "par_out", "hindsight", "bound"};
        for (int k = 0; k < 8; k++) table_col(ts, sk[k], sk[k], 0, k < 2);
        table_str(ts, ops->name);
        table_str(ts, a->counts);
        table_int(ts, N);
        table_int(ts, W - 1);
        table_num(ts, m_in / (W - 1), 4);
        table_num(ts, m_out / (W - 1), 4);
        table_num(ts, m_h / (W - 1), 4);
        table_num(ts, m_b / (W - 1), 4);
    }
    table_note(d, "summary", "%s on %s, windows of %d steps (%d pairs): mean PAR in-sample %.4f, "
               "out-of-sample %.4f, hindsight %.4f, bound %.4f", ops->name, a->counts, N, W - 1,
               m_in / (W - 1), m_out / (W - 1), m_h / (W - 1), m_b / (W - 1));
    progress_end(&prog);
    rc = table_print(d, stdout);
out:
    progress_end(&prog);
    table_doc_free(d);
    drop(ops, &ps, &lo);
    free(cur);
    free(next);
    free(par);
    free(lin);
    free(lout);
    free(lh);
    free(lb);
    return rc;
}

/* What the layout is planned from: --prior, else the --counts file
 * (in-sample when nothing else is scored). */
static int choose_prior(const place_args_t *a, prior_spec_t *pr) {
    memset(pr, 0, sizeof *pr);
    if (a->prior) {
        if (prior_parse(a->prior, NULL, "place: --prior", pr)) return MS_ERR;
        if (pr->kind == PRIOR_PAST)
            return ms_err("place: --prior past needs simulated steps; on a trace with a time "
                          "axis use --window N (plan on each window, score on the next)");
    } else if (a->eval) {
        pr->kind = PRIOR_TRACE;
        snprintf(pr->arg, sizeof pr->arg, "%s", a->counts);
        snprintf(pr->path, sizeof pr->path, "%s", a->counts);
    } else {
        pr->kind = PRIOR_ORACLE;
    }
    return MS_OK;
}

/* The per-layer table: PAR, balancedness, maximum load, bound and gap of
 * each layer's device loads dev[L][D]; with p_in (out of sample), the
 * in-sample and hindsight PAR p_in[L] and p_h[L] too. */
static void layers_table(table_doc_t *doc, int L, int D, const double *dev,
                         const metrics_layer_bound_t *row, const double *p_in,
                         const double *p_h) {
    table_t *t = table_new(doc, "layers", NULL);
    table_col(t, "layer", "layer", 5, 0);
    table_col(t, "par", "PAR", 8, 0);
    table_col(t, "balance", "balance", 8, 0);
    table_col(t, "max_load", "max load", 14, 0);
    table_col(t, "bound", "bound", 14, 0);
    table_col(t, "gap_pct", "gap %", 8, 0);
    if (p_in) {
        table_col(t, "par_in", "PAR in", 8, 0);
        table_col(t, "hindsight", "hindsight", 9, 0);
    }
    for (int l = 0; l < L; l++) {
        const metrics_layer_bound_t *r = &row[l];
        table_int(t, l);
        table_num(t, metrics_par(dev + (size_t)l * D, D), 4);
        table_num(t, r->max_load > 0 ? r->best_ep / r->max_load : 1.0, 4);
        table_num(t, r->max_load, 1);
        table_num(t, r->bound, 1);
        table_num(t, 100 * metrics_gap_to_bound(r, 1), 2);
        if (p_in) {
            table_num(t, p_in[l], 4);
            table_num(t, p_h[l], 4);
        }
    }
}

/* `moesim place`: plan, score and print or store one layout. About 180
 * lines and kept whole on purpose: it reads as the command's steps in
 * order (inputs, prior, plan, score, tables, outputs) and one cleanup path
 * owns every resource; the prior, the layer table and the window mode
 * (windows) stand apart. */
int cmd_place(int argc, char **argv) {
    place_args_t a;
    trace_t *tr = NULL, *ev = NULL;
    cfg_t *cfg = NULL;
    place_state_t *ps = NULL, *ps_h = NULL;
    place_layout_t *lo = NULL, *lo_h = NULL;
    const place_ops_t *ops = NULL;
    double *scored = NULL, *planw = NULL, *dev = NULL, *p_in = NULL, *p_h = NULL;
    metrics_layer_bound_t *row = NULL;
    metrics_loads_t acc = {0};
    char *tmp = NULL;
    table_doc_t *doc = NULL;
    int rc = 1;

    int prc = parse(argc, argv, &a);
    if (prc) {
        if (prc == MS_USAGE) rc = MS_EXIT_USAGE;
        goto out;
    }
    ops = place_find(a.strategy);
    /* a preset name, or a preset .ini or Hugging Face config.json path */
    moe_model_t model_v;
    const moe_model_t *model = preset_is_path(a.model) ? &model_v : moe_find(a.model);
    if (model == &model_v && moe_load(a.model, &model_v)) goto out;
    if (!model) {
        ms_err("place: unknown --model '%s' (known: %s; or a preset .ini or config.json path)",
               a.model, moe_names());
        goto out;
    }
    if (trace_read(a.counts, &tr) || check_shape(tr, a.counts, model)) goto out;
    if (a.eval && (trace_read(a.eval, &ev) || check_shape(ev, a.eval, model))) goto out;
    int L = tr->n_layers, E = tr->n_experts, D = (int)a.devices;
    if (a.groups < 0) a.groups = model->n_groups > 0 ? model->n_groups : 1;
    if ((E + a.redundant) % D) {
        ms_err("place: %d experts + %ld redundant = %ld slots per layer do not divide over %d "
               "devices (choose --redundant so the sum is a multiple of %d)",
               E, a.redundant, E + a.redundant, D, D);
        goto out;
    }
    /* What the layout is planned from: --prior, else the --counts file
     * (in-sample when nothing else is scored). */
    prior_spec_t pr;
    char plabel_buf[600];
    if (choose_prior(&a, &pr)) goto out;
    const trace_t *sc = ev ? ev : tr; /* the scored counts */
    const char *sc_path = ev ? a.eval : a.counts;
    if (prior_build(&pr, sc, NULL, 0, 1, &planw)) goto out;
    const char *plabel = prior_label(&pr, plabel_buf, sizeof plabel_buf);
    /* In-sample when the plan came from the scored file itself. */
    int oracle = pr.kind == PRIOR_ORACLE ||
                 (pr.kind == PRIOR_TRACE && !ev && !strcmp(pr.path, a.counts));
    if (oracle) plabel = "oracle";
    scored = sum_steps(sc, 0, sc->n_steps);

    cfg = cfg_new();
    for (int i = 0; i < a.n_sets; i++)
        if (cfg_set_assign(cfg, a.sets[i], "--set", i + 1)) goto out;
    char sec[64];
    place_cfg_section(ops, sec, sizeof sec);
    place_env_t env = {.n_layers = L, .n_experts = E, .n_devices = D,
                       .devices_per_node = D / (int)a.nodes, .n_nodes = (int)a.nodes,
                       .redundant = (int)a.redundant, .top_k = model->top_k,
                       .n_groups = (int)a.groups, .topk_groups = model->topk_groups,
                       .cfg = cfg, .cfg_section = sec, .seed = (uint64_t)a.seed};
    if (a.window) {
        rc = windows(&a, ops, &env, tr) || cfg_check_unused(cfg) ? 1 : 0;
        goto out;
    }
    if (plan(ops, &env, planw, &ps, &lo)) goto out;
    /* Keys the strategy never read are typos: say so before writing. */
    if (cfg_check_unused(cfg)) goto out;
    /* Out-of-sample: the hindsight layout (the same strategy planned on
     * the scored counts) and the in-sample PAR on what the plan saw. */
    if (!oracle && plan(ops, &env, scored, &ps_h, &lo_h)) goto out;

    /* The scored counts as one step of the layout: the same metric
     * definitions as a simulated run's (metrics.c). */
    dev = ms_malloc((size_t)L * D * sizeof *dev);
    row = ms_calloc((size_t)L, sizeof *row);
    for (int l = 0; l < L; l++)
        place_device_load(lo, l, scored + (size_t)l * E, dev + (size_t)l * D);
    metrics_loads_init(&acc, L, D, E);
    metrics_loads_step(&acc, dev, scored);
    int *slots = ms_malloc((size_t)L * sizeof *slots);
    for (int l = 0; l < L; l++) slots[l] = lo->layer[l].n_slots;
    metrics_layer_bounds(&acc, slots, row);
    free(slots);
    metrics_t m = {0};
    metrics_from_loads(&acc, row, 0, &m);
    metrics_balancedness(row, L, &m);
    metrics_set(&m, METRIC_REDUNDANT, (double)a.redundant);
    double par_out = metrics_get(&m, METRIC_PAR_MEAN, 0), par_in = par_out, par_h = par_out;
    p_in = ms_calloc((size_t)L, sizeof *p_in);
    p_h = ms_calloc((size_t)L, sizeof *p_h);
    if (!oracle) {
        if (planw) par_in = layer_pars(lo, planw, p_in);
        else
            for (int l = 0; l < L; l++) p_in[l] = NAN;
        par_h = layer_pars(lo_h, scored, p_h);
        metrics_set(&m, METRIC_PAR_MEAN_IN_SAMPLE, planw ? par_in : NAN);
        metrics_set(&m, METRIC_PAR_MEAN_HINDSIGHT, par_h);
        metrics_set(&m, METRIC_REGRET, par_out - par_h);
    }
    doc = table_doc_new("place", (table_format_t)a.fmt);
    if (!a.quiet) layers_table(doc, L, D, dev, row, oracle ? NULL : p_in, p_h);
#define G(id) metrics_get(&m, METRIC_##id, 0)
    if (a.fmt != TABLE_TEXT) {
        table_t *t = table_new(doc, "summary", NULL);
        static const char *const k[] = {"strategy", "counts", "prior", "layers", "experts", "slots",
                                        "devices", "nodes", "par_mean", "par_max",
                                        "balancedness_sglang", "balancedness_vllm",
                                        "bound_par_mean", "gap_to_bound_pct", "par_in_sample",
                                        "par_out_of_sample", "par_hindsight"};
        for (int i = 0; i < 17; i++) table_col(t, k[i], k[i], 0, i < 3);
        table_str(t, ops->name);
        table_str(t, sc_path);
        table_str(t, prior_display(plabel));
        table_int(t, L);
        table_int(t, E);
        table_int(t, lo->layer[0].n_slots);
        table_int(t, D);
        table_int(t, a.nodes);
        table_num(t, G(PAR_MEAN), 4);
        table_num(t, G(PAR_MAX), 4);
        table_num(t, G(BALANCEDNESS_SGLANG), 4);
        table_num(t, G(BALANCEDNESS_VLLM), 4);
        table_num(t, G(BOUND_PAR_MEAN), 4);
        table_num(t, 100 * G(GAP_TO_BOUND), 2);
        table_num(t, oracle ? NAN : par_in, 4);
        table_num(t, oracle ? NAN : par_out, 4);
        table_num(t, oracle ? NAN : par_h, 4);
    }
    table_note(doc, "deployment", "%s on %s: %d layers, %d experts, %d slots on %d devices / %ld "
               "nodes", ops->name, sc_path, L, E, lo->layer[0].n_slots, D, a.nodes);
    table_note(doc, "prior", "prior: %s", prior_display(plabel));
    table_note(doc, "mean", "mean PAR %.4f (max %.4f), balancedness %.4f (SGLang) %.4f (vLLM), "
               "bound PAR %.4f, gap to bound %.2f%%",
               G(PAR_MEAN), G(PAR_MAX), G(BALANCEDNESS_SGLANG), G(BALANCEDNESS_VLLM),
               G(BOUND_PAR_MEAN), 100 * G(GAP_TO_BOUND));
    if (!oracle)
        table_note(doc, "samples", "mean PAR in-sample %.4f, out-of-sample %.4f, hindsight "
                   "(planned on %s) %.4f, bound %.4f", par_in, par_out, sc_path, par_h,
                   G(BOUND_PAR_MEAN));
#undef G
    if (table_print(doc, stdout)) goto out;

    if (a.out && write_tmp(lo, a.sglang ? model->n_dense : -1, a.out, &tmp)) goto out;
    if (a.db && store_all(&a, cfg, ops, ps, lo, sc_path, plabel, scored, &acc, row, &m))
        goto out;
    if (tmp && rename(tmp, a.out)) {
        ms_err("%s: cannot move the layout into place: %s", a.out, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    /* as text, after the table; beside CSV or JSON on stdout, on stderr */
    FILE *said = a.fmt == TABLE_TEXT ? stdout : stderr;
    if (a.out) fprintf(said, "layout: %s\n", a.out);
    if (a.db) fprintf(said, "results: %s\n", a.db);
    rc = 0;
out:
    table_doc_free(doc);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    metrics_loads_free(&acc);
    free(row);
    free(dev);
    free(scored);
    free(planw);
    free(p_in);
    free(p_h);
    if (ops) {
        drop(ops, &ps, &lo);
        drop(ops, &ps_h, &lo_h);
    }
    cfg_free(cfg);
    trace_free(tr);
    trace_free(ev);
    return rc;
}
