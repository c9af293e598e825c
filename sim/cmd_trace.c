/* cmd_trace: `moesim trace info|convert|gen`: inspect a trace, change its
 * format, or generate a synthetic one. docs/traces.md describes the
 * formats, the generator's parameters and the info figures. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "table.h"
#include "trace.h"
#include "trace_gen.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: moesim trace info FILE [--ep N] [--top-k K] [--summary] [--csv | --json]\n"
            "       moesim trace convert IN OUT\n"
            "       moesim trace gen [options] -o OUT\n"
            "\n"
            "info     layers, experts, steps, tokens; hottest/mean and coldest/mean expert load\n"
            "         and the PAR of contiguous placement at EP size N (default 32), per layer\n"
            "         and averaged. --top-k K turns token-expert pairs into tokens when the\n"
            "         file does not say; --summary leaves out the per-layer table; --csv and\n"
            "         --json print the figures as tables (\"trace\" and \"layers\").\n"
            "convert  reads IN (.json SGLang, .jsonl per-token, .npy counts, .csv native) and\n"
            "         writes OUT in the format of its extension (.csv, .npy, .json).\n"
            "gen      a seeded synthetic trace (defaults in brackets):\n"
            "  --layers N [58]  --experts N [256]  --top-k K [8]  --steps T [64]\n"
            "  --tokens N [4096]      tokens per step\n"
            "  --skew A [0.45]        Zipf exponent of each layer's expert ranking\n"
            "  --drift R [0]          fraction of ranks handed to other experts per step\n"
            "  --phase-step S         step where phase 2 begins (e.g. prefill -> decode)\n"
            "  --phase-tokens N       phase 2 tokens per step [as phase 1]\n"
            "  --phase-skew A         phase 2 Zipf exponent [as phase 1]\n"
            "  --phase-reshuffle      phase 2 starts from new hot sets\n"
            "  --sources N [0]        source devices (by-source counts)\n"
            "  --locality F [1]       weight factor of a source's own experts\n"
            "  --per-token            per-token routing with scores instead of counts\n"
            "  --seed S [1]           -o OUT  output file (.csv, .npy or .json)\n");
}

static int opt_int(const char *opt, const char *v, long lo, long hi, int *out) {
    long x;
    if (ms_parse_int(v, &x) || x < lo || x > hi)
        return ms_err("trace: %s '%s' (give an integer in [%ld, %ld])", opt, v, lo, hi);
    *out = (int)x;
    return MS_OK;
}

static int opt_double(const char *opt, const char *v, double *out) {
    if (ms_parse_double(v, out)) return ms_err("trace: %s '%s' is not a number", opt, v);
    return MS_OK;
}

/* A figure, or n/a where it is undefined (silent layer, EP not dividing). */
static const char *fig(double v, int width, char *buf, size_t n) {
    if (isnan(v)) snprintf(buf, n, "%*s", width, "n/a");
    else snprintf(buf, n, "%*.4f", width, v);
    return buf;
}

/* The per-layer table: text, CSV or JSON alike (NaN: undefined, n/a). */
static void layer_table(table_doc_t *d, const trace_t *t, const trace_stats_t *st, const char *par) {
    table_t *tb = table_new(d, "layers", NULL);
    table_col(tb, "layer", "layer", 5, 0);
    table_col(tb, "src", "src", 5, 0);
    table_col(tb, "hottest_mean", "hottest/mean", 13, 0);
    table_col(tb, "coldest_mean", "coldest/mean", 13, 0);
    table_col(tb, "par", par, 10, 0);
    for (int l = 0; l < t->n_layers; l++) {
        table_int(tb, l);
        table_int(tb, l + t->first_layer);
        table_num_or(tb, st->hot[l], 4, "n/a");
        table_num_or(tb, st->cold[l], 4, "n/a");
        table_num_or(tb, st->par[l], 4, "n/a");
    }
}

/* --csv, --json: the summary as a one-row table "trace", then "layers". */
static int print_tables(const trace_t *t, const trace_stats_t *st, int ep, int summary,
                        table_format_t fmt) {
    table_doc_t *d = table_doc_new("trace info", fmt);
    table_t *tb = table_new(d, "trace", NULL);
    static const char *const cols[] = {"path", "format", "kind", "layers", "first_layer",
                                       "experts", "top_k", "steps", "has_steps", "tokens",
                                       "pairs_per_layer", "sources", "duplicates",
                                       "tokens_missing", "ep", "active_layers", "hottest_mean",
                                       "coldest_mean", "par_mean", "step_par_mean", "drift",
                                       "drift_noise"};
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) table_col(tb, cols[i], cols[i], 0, 1);
    table_str(tb, t->path);
    table_str(tb, t->format);
    table_str(tb, t->kind == TRACE_COUNTS ? "counts" : "per-token");
    table_int(tb, t->n_layers);
    table_int(tb, t->first_layer);
    table_int(tb, t->n_experts);
    if (t->top_k) table_int(tb, t->top_k);
    else table_null(tb);
    table_int(tb, t->n_steps);
    table_int(tb, t->has_steps);
    table_num_or(tb, st->tokens > 0 ? st->tokens : NAN, 0, "-");
    table_num(tb, st->assignments, 0);
    table_int(tb, t->n_src);
    table_int(tb, (long long)t->n_duplicates);
    table_int(tb, t->n_tokens_missing);
    table_int(tb, ep);
    table_int(tb, st->active_layers);
    table_num_or(tb, st->hot_mean, 4, "n/a");
    table_num_or(tb, st->cold_mean, 4, "n/a");
    table_num_or(tb, st->ep ? st->par_mean : NAN, 4, "n/a");
    table_num_or(tb, st->ep && t->n_steps > 1 ? st->step_par_mean : NAN, 4, "n/a");
    table_num_or(tb, st->drift, 4, "n/a");
    table_num_or(tb, st->drift_noise, 4, "n/a");
    char par[32];
    snprintf(par, sizeof par, "PAR@EP%d", ep);
    if (!summary) layer_table(d, t, st, par);
    int rc = table_print(d, stdout);
    table_doc_free(d);
    return rc;
}

static int print_info(const trace_t *t, const trace_stats_t *st, int ep, int summary) {
    printf("trace      %s\n", t->path);
    printf("format     %s (%s)\n", t->format, t->kind == TRACE_COUNTS ? "counts" : "per-token");
    if (t->first_layer)
        printf("layers     %d MoE layers (source layers %d-%d; %d dense before them)\n",
               t->n_layers, t->first_layer, t->first_layer + t->n_layers - 1, t->first_layer);
    else
        printf("layers     %d\n", t->n_layers);
    printf("experts    %d%s\n", t->n_experts,
           t->kind == TRACE_TOKENS ? " (highest id seen + 1)" : "");
    if (t->top_k) printf("top-k      %d\n", t->top_k);
    printf("steps      %d%s\n", t->n_steps, t->has_steps ? "" : " (no time axis)");
    if (st->tokens > 0)
        printf("tokens     %.0f (%.0f token-expert pairs per layer)\n", st->tokens,
               st->assignments);
    else
        printf("tokens     unknown: %.0f token-expert pairs per layer (give --top-k K)\n",
               st->assignments);
    if (t->n_src) printf("sources    %d (counts by source device)\n", t->n_src);
    if (t->n_duplicates) printf("duplicates %lld records dropped\n", (long long)t->n_duplicates);
    if (t->n_tokens_missing)
        printf("missing    %d tokens lack layers (%lld token-layer records)\n",
               t->n_tokens_missing, (long long)t->n_missing);
    char par[32], a[32], b[32], c[32];
    snprintf(par, sizeof par, "PAR@EP%d", ep);
    if (!summary) {
        table_doc_t *d = table_doc_new("trace info", TABLE_TEXT);
        layer_table(d, t, st, par);
        printf("\n");
        int rc = table_print(d, stdout);
        table_doc_free(d);
        if (rc) return rc;
        printf("\n");
    }
    printf("mean over %d layers: hottest/mean %s  coldest/mean %s  %s %s\n", st->active_layers,
           fig(st->hot_mean, 0, a, sizeof a), fig(st->cold_mean, 0, b, sizeof b), par,
           fig(st->par_mean, 0, c, sizeof c));
    if (!st->ep)
        printf("(%s: %d experts do not divide over %d devices; give --ep N with N dividing %d)\n",
               par, t->n_experts, ep, t->n_experts);
    else if (t->n_steps > 1)
        printf("per step: %s %.4f (mean over steps and layers)\n", par, st->step_par_mean);
    if (!isnan(st->drift))
        printf("drift: L1 first half vs second half %.4f, time axis shuffled %.4f (sampling "
               "noise; mean over layers of per-expert distributions)\n", st->drift,
               st->drift_noise);
    return MS_OK;
}

static int trace_info(int argc, char **argv) {
    static const struct option opts[] = {{"ep", required_argument, 0, 'e'},
                                         {"top-k", required_argument, 0, 'k'},
                                         {"summary", no_argument, 0, 's'},
                                         {"csv", no_argument, 0, 'C'},
                                         {"json", no_argument, 0, 'J'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ep = 32, top_k = 0, summary = 0, c;
    table_format_t fmt = TABLE_TEXT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            if (opt_int("--ep", optarg, 1, 1 << 20, &ep)) return 1;
            break;
        case 'k':
            if (opt_int("--top-k", optarg, 1, TRACE_MAX_TOP_K, &top_k)) return 1;
            break;
        case 's': summary = 1; break;
        case 'C': fmt = TABLE_CSV; break;
        case 'J': fmt = TABLE_JSON; break;
        default: usage(c == 'h' ? stdout : stderr); return c == 'h' ? MS_EXIT_OK : MS_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        ms_err("trace info: give one trace file (example: moesim trace info "
               "traces/data/deepseek-v3-sglang/decode_in1000out1000.json)");
        return MS_EXIT_USAGE;
    }
    trace_t *t;
    if (trace_read(argv[optind], &t)) return 1;
    if (top_k && t->top_k && top_k != t->top_k)
        ms_warn("%s: the trace records top-%d; --top-k %d is ignored", t->path, t->top_k, top_k);
    else if (top_k)
        t->top_k = top_k;
    trace_stats_t st;
    int rc = trace_stats(t, ep, &st);
    if (!rc) rc = fmt == TABLE_TEXT ? print_info(t, &st, ep, summary)
                                    : print_tables(t, &st, ep, summary, fmt);
    trace_stats_free(&st);
    trace_free(t);
    return rc ? 1 : 0;
}

static int trace_convert(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 3) {
        ms_err("trace convert: give IN and OUT (example: moesim trace convert in.json out.csv)");
        return MS_EXIT_USAGE;
    }
    trace_t *t;
    if (trace_read(argv[1], &t)) return 1;
    int rc = trace_write(t, argv[2]);
    if (!rc) printf("convert: %s (%s) -> %s\n", argv[1], t->format, argv[2]);
    trace_free(t);
    return rc ? 1 : 0;
}

static int trace_gen_cmd(int argc, char **argv) {
    enum { O_LAYERS = 256, O_EXPERTS, O_TOPK, O_STEPS, O_TOKENS, O_SKEW, O_DRIFT, O_PSTEP,
           O_PTOKENS, O_PSKEW, O_PRESHUF, O_SOURCES, O_LOCALITY, O_PERTOKEN, O_SEED };
    static const struct option opts[] = {
        {"layers", required_argument, 0, O_LAYERS},    {"experts", required_argument, 0, O_EXPERTS},
        {"top-k", required_argument, 0, O_TOPK},       {"steps", required_argument, 0, O_STEPS},
        {"tokens", required_argument, 0, O_TOKENS},    {"skew", required_argument, 0, O_SKEW},
        {"drift", required_argument, 0, O_DRIFT},      {"phase-step", required_argument, 0, O_PSTEP},
        {"phase-tokens", required_argument, 0, O_PTOKENS},
        {"phase-skew", required_argument, 0, O_PSKEW}, {"phase-reshuffle", no_argument, 0, O_PRESHUF},
        {"sources", required_argument, 0, O_SOURCES},  {"locality", required_argument, 0, O_LOCALITY},
        {"per-token", no_argument, 0, O_PERTOKEN},     {"seed", required_argument, 0, O_SEED},
        {"out", required_argument, 0, 'o'},            {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    trace_gen_params_t p;
    trace_gen_defaults(&p);
    const char *out = NULL;
    int c, bad = 0;
    optind = 1;
    while (!bad && (c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case O_LAYERS: bad = opt_int("--layers", optarg, 1, TRACE_MAX_LAYERS, &p.n_layers); break;
        case O_EXPERTS:
            bad = opt_int("--experts", optarg, 1, TRACE_MAX_EXPERTS, &p.n_experts);
            break;
        case O_TOPK: bad = opt_int("--top-k", optarg, 1, TRACE_MAX_TOP_K, &p.top_k); break;
        case O_STEPS: bad = opt_int("--steps", optarg, 1, INT32_MAX, &p.n_steps); break;
        case O_TOKENS: bad = opt_int("--tokens", optarg, 1, INT32_MAX, &p.tokens); break;
        case O_SKEW: bad = opt_double("--skew", optarg, &p.skew); break;
        case O_DRIFT: bad = opt_double("--drift", optarg, &p.drift); break;
        case O_PSTEP: bad = opt_int("--phase-step", optarg, 0, INT32_MAX, &p.phase_step); break;
        case O_PTOKENS: bad = opt_int("--phase-tokens", optarg, 1, INT32_MAX, &p.phase_tokens); break;
        case O_PSKEW: bad = opt_double("--phase-skew", optarg, &p.phase_skew); break;
        case O_PRESHUF: p.phase_reshuffle = 1; break;
        case O_SOURCES: bad = opt_int("--sources", optarg, 0, 4096, &p.n_src); break;
        case O_LOCALITY: bad = opt_double("--locality", optarg, &p.locality); break;
        case O_PERTOKEN: p.per_token = 1; break;
        case O_SEED: {
            long s = 0;
            if (ms_parse_int(optarg, &s) || s < 0)
                bad = ms_err("trace: --seed '%s' (give an integer >= 0)", optarg);
            p.seed = (uint64_t)s;
            break;
        }
        case 'o': out = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return MS_EXIT_USAGE;
        }
    }
    if (bad) return 1;
    if (!out || optind != argc) {
        ms_err("trace gen: give the output file with -o OUT (.csv, .npy or .json) and no other "
               "arguments (example: moesim trace gen --skew 0.8 --drift 0.02 -o drift.npy)");
        return MS_EXIT_USAGE;
    }
    trace_t *t;
    if (trace_gen(&p, out, &t)) return 1;
    int rc = trace_write(t, out);
    if (!rc)
        printf("gen: %s (%s, %d steps x %d layers x %d experts, top-%d, seed %llu)\n", out,
               p.per_token ? "per-token" : "counts", p.n_steps, p.n_layers, p.n_experts, p.top_k,
               (unsigned long long)p.seed);
    trace_free(t);
    return rc ? 1 : 0;
}

int cmd_trace(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MS_EXIT_USAGE : MS_EXIT_OK;
    }
    if (!strcmp(argv[1], "info")) return trace_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "convert")) return trace_convert(argc - 1, argv + 1);
    if (!strcmp(argv[1], "gen")) return trace_gen_cmd(argc - 1, argv + 1);
    ms_err("trace: unknown subcommand '%s' (info, convert or gen)", argv[1]);
    return MS_EXIT_USAGE;
}
