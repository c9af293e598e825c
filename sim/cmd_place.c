/* cmd_place: `moesim place`: one strategy's first layout from a counts
 * file, without simulating anything. Writes the layout as CSV, prints per
 * layer PAR, balancedness, the maximum device load and its gap to the lower
 * bound, and can store the same in the results database. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd.h"
#include "metrics.h"
#include "record.h"
#include "moe.h"
#include "place.h"
#include "store.h"
#include "trace.h"
#include "util.h"

#define PLACE_MAX_SETS 256

/* The command line, parsed. */
typedef struct place_args {
    const char *strategy, *counts, *out, *db, *model, *name;
    int sglang; /* --format sglang: --out is SGLang's expert-location JSON */
    long devices, nodes, redundant, groups, seed; /* -1: not given */
    int quiet;
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
            "\n"
            "options:\n"
            "  --strategy NAME        placement strategy (%s)\n"
            "  --counts FILE          counts: SGLang expert statistics JSON\n"
            "  --out FILE             write the layout CSV: layer,slot,device,expert\n"
            "  --format csv|sglang    --out as that CSV (default) or as the JSON SGLang's\n"
            "                         --init-expert-location FILE.json loads:\n"
            "                         physical_to_logical_map [all layers][slots]\n"
            "  --devices D            devices (GPUs) (default 32)\n"
            "  --nodes N              nodes, D a multiple of N (default D/8 when 8 divides D, else 1)\n"
            "  --redundant R          redundant slots per layer; experts + R a multiple of D\n"
            "                         (default 0)\n"
            "  --groups G             expert groups (default: the model's, 8 for deepseek-v3)\n"
            "  --model NAME           model preset the counts come from (default deepseek-v3)\n"
            "  --seed S               seed for strategies that draw random numbers (default 1)\n"
            "  --set SECTION.KEY=VAL  strategy parameter (repeatable), e.g.\n"
            "                         strategy.eplb.policy=global\n"
            "  --db FILE              also store the result (runs, layer_bounds, replicas,\n"
            "                         device_loads, trace_counts, summary)\n"
            "  --name NAME            experiment name in the database (default place)\n"
            "  -q, --quiet            print the averages only\n"
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
        case 'h': usage(stdout); exit(0);
        case ':': return ms_err("place: %s needs a value (see moesim place --help)", argv[optind - 1]);
        default:
            return ms_err("place: unknown option '%s' (see moesim place --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return ms_err("place: unexpected argument '%s' (options only; see moesim place --help)",
                      argv[optind]);
    if (!a->strategy)
        return ms_err("place: no --strategy (known: %s; example: moesim place --strategy eplb "
                      "--counts trace.json --out layout.csv)", place_names());
    if (!place_find(a->strategy))
        return ms_err("place: unknown strategy '%s' (known: %s)", a->strategy, place_names());
    if (!a->counts)
        return ms_err("place: no --counts FILE (example: --counts traces/data/deepseek-v3-sglang/"
                      "decode_in1000out1000.json)");
    if (a->sglang) {
        size_t n = a->out ? strlen(a->out) : 0;
        /* SGLang reads a file only when the name ends in .json; any other
         * argument it parses as inline JSON. */
        if (n < 5 || strcmp(a->out + n - 5, ".json"))
            return ms_err("place: --format sglang needs --out FILE.json (SGLang's "
                          "--init-expert-location reads a file only when its name ends in .json)");
    }
    if (a->devices < 0) a->devices = 32;
    if (a->nodes < 0) a->nodes = a->devices % 8 == 0 ? a->devices / 8 : 1;
    if (a->redundant < 0) a->redundant = 0;
    if (a->seed < 0) a->seed = 1;
    if (a->devices % a->nodes)
        return ms_err("place: %ld devices do not divide over %ld nodes (give --devices a multiple "
                      "of --nodes)", a->devices, a->nodes);
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
static char *config_text(const place_args_t *a, cfg_t *c, const char *strategy) {
    char v[64];
#define SETI(k, x) (snprintf(v, sizeof v, "%ld", (long)(x)), cfg_set(c, "place", k, v, "place", 0))
    cfg_set(c, "place", "strategy", strategy, "place", 0);
    cfg_set(c, "place", "counts", a->counts, "place", 0);
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
                     const place_layout_t *lo, const double *prior, const metrics_loads_t *acc,
                     const metrics_layer_bound_t *row, const metrics_t *m) {
    store_t *st = NULL;
    record_t rec = {0};
    int rc = MS_ERR;
    char *text = config_text(a, c, ops->name);
    store_run_t meta = {.name = a->name, .strategy = ops->name,
                        .strategy_version = ops->algo_version, .trace = a->counts,
                        .model = a->model, .hardware = "none", .nodes = (int)a->nodes,
                        .devices = (int)a->devices, .seed = (uint64_t)a->seed};
    if (store_open(a->db, &st) || record_begin(&rec, st, &meta, text) ||
        record_layers(&rec, lo, prior, acc, row) || record_metrics(&rec, m) ||
        record_strategy_metrics(&rec, ops, ps, "") || record_commit(&rec))
        goto out;
    rc = MS_OK;
out:
    record_abort(&rec);
    store_close(st); /* a failed run was never published: the database is as it was */
    free(text);
    return rc;
}

int cmd_place(int argc, char **argv) {
    place_args_t a;
    trace_t *tr = NULL;
    cfg_t *cfg = NULL;
    place_state_t *ps = NULL;
    place_layout_t *lo = NULL;
    const place_ops_t *ops = NULL;
    double *prior = NULL, *dev = NULL;
    metrics_layer_bound_t *row = NULL;
    metrics_loads_t acc = {0};
    char *tmp = NULL;
    int rc = 1;

    if (parse(argc, argv, &a)) goto out;
    ops = place_find(a.strategy);
    const moe_model_t *model = moe_find(a.model);
    if (!model) {
        ms_err("place: unknown --model '%s' (known: %s)", a.model, moe_names());
        goto out;
    }
    if (trace_read(a.counts, &tr)) goto out;
    int L = tr->n_layers, E = tr->n_experts, D = (int)a.devices;
    if (E != model->n_experts || L != moe_n_moe_layers(model)) {
        ms_err("%s: counts have %d MoE layers x %d experts but model %s has %d x %d (give the "
               "--model the counts were recorded from)",
               a.counts, L, E, model->name, moe_n_moe_layers(model), model->n_experts);
        goto out;
    }
    if (a.groups < 0) a.groups = model->n_groups > 0 ? model->n_groups : 1;
    if ((E + a.redundant) % D) {
        ms_err("place: %d experts + %ld redundant = %ld slots per layer do not divide over %d "
               "devices (choose --redundant so the sum is a multiple of %d)",
               E, a.redundant, E + a.redundant, D, D);
        goto out;
    }
    prior = ms_malloc((size_t)L * E * sizeof *prior);
    for (int l = 0; l < L; l++) trace_layer_total(tr, l, prior + (size_t)l * E);

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
    if (ops->init(&env, prior, &ps, &lo)) goto out;
    /* Keys the strategy never read are typos: say so before writing. */
    if (cfg_check_unused(cfg)) goto out;
    if (lo->n_layers != L || lo->n_experts != E || lo->n_devices != D) {
        ms_err("place: strategy %s made a %d x %d layout on %d devices for %d x %d on %d "
               "(a bug in the strategy)", ops->name, lo->n_layers, lo->n_experts, lo->n_devices,
               L, E, D);
        goto out;
    }

    /* The prior scored as one step of the layout: the same metric
     * definitions as a simulated run's (metrics.c). */
    dev = ms_malloc((size_t)L * D * sizeof *dev);
    row = ms_calloc((size_t)L, sizeof *row);
    for (int l = 0; l < L; l++)
        place_device_load(lo, l, prior + (size_t)l * E, dev + (size_t)l * D);
    metrics_loads_init(&acc, L, D, E);
    metrics_loads_step(&acc, dev, prior);
    int *slots = ms_malloc((size_t)L * sizeof *slots);
    for (int l = 0; l < L; l++) slots[l] = lo->layer[l].n_slots;
    metrics_layer_bounds(&acc, slots, row);
    free(slots);
    metrics_t m = {0};
    metrics_from_loads(&acc, row, 0, &m);
    metrics_balancedness(row, L, &m);
    metrics_set(&m, METRIC_REDUNDANT, (double)a.redundant);
    if (!a.quiet) {
        printf("%5s %8s %8s %14s %14s %8s\n", "layer", "PAR", "balance", "max load", "bound",
               "gap %");
        for (int l = 0; l < L; l++) {
            const metrics_layer_bound_t *r = &row[l];
            printf("%5d %8.4f %8.4f %14.1f %14.1f %8.2f\n", l,
                   metrics_par(dev + (size_t)l * D, D),
                   r->max_load > 0 ? r->best_ep / r->max_load : 1.0, r->max_load, r->bound,
                   100 * metrics_gap_to_bound(r, 1));
        }
    }
    printf("%s on %s: %d layers, %d experts, %d slots on %d devices / %ld nodes\n", ops->name,
           a.counts, L, E, lo->layer[0].n_slots, D, a.nodes);
#define G(id) metrics_get(&m, METRIC_##id, 0)
    printf("mean PAR %.4f (max %.4f), balancedness %.4f (SGLang) %.4f (vLLM), "
           "bound PAR %.4f, gap to bound %.2f%%\n",
           G(PAR_MEAN), G(PAR_MAX), G(BALANCEDNESS_SGLANG), G(BALANCEDNESS_VLLM),
           G(BOUND_PAR_MEAN), 100 * G(GAP_TO_BOUND));
#undef G

    if (a.out && write_tmp(lo, a.sglang ? model->n_dense : -1, a.out, &tmp)) goto out;
    if (a.db && store_all(&a, cfg, ops, ps, lo, prior, &acc, row, &m)) goto out;
    if (tmp && rename(tmp, a.out)) {
        ms_err("%s: cannot move the layout into place: %s", a.out, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    if (a.out) printf("layout: %s\n", a.out);
    if (a.db) printf("results: %s\n", a.db);
    rc = 0;
out:
    metrics_loads_free(&acc);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(row);
    free(dev);
    free(prior);
    place_layout_free(lo);
    if (ps && ops->destroy) ops->destroy(ps);
    cfg_free(cfg);
    trace_free(tr);
    return rc;
}
