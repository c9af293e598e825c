/* Tests of the trace model, readers, writers, generator and `moesim trace`:
 * the project's real traces read, `trace info` agrees with an independent
 * computation, round trips are exact, and every kind of bad input gets a
 * message with its place in the file. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "trace.h"
#include "trace_gen.h"
#include "util.h"

#define DS_DIR "traces/data/deepseek-v3-sglang"
#define MX_CLEAN "traces/data/mixtral-8x7b-vllm/humaneval_2_routing.jsonl"
#define MX_RAW "traces/data/mixtral-8x7b-vllm/routing_raw.jsonl"

static char tmpdir[256];

static void setup(void) {
    ms_err_quiet(1);
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/moesim-trace-XXXXXX", base);
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            remove(p);
        }
    closedir(d);
    rmdir(tmpdir);
}

TestSuite(trace, .init = setup, .fini = teardown);

static const char *tmp(const char *name) {
    static char p[8][512];
    static int i;
    i = (i + 1) % 8;
    snprintf(p[i], sizeof p[i], "%s/%s", tmpdir, name);
    return p[i];
}

static const char *put(const char *name, const void *data, size_t len) {
    const char *p = tmp(name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    return p;
}

static const char *puts_file(const char *name, const char *text) {
    return put(name, text, strlen(text));
}

/* Runs `moesim trace ARGS...`, stdout into a file; returns its exit status. */
static int run_trace(char *out, size_t n, int argc, const char **args) {
    char *argv[16];
    argv[0] = "trace";
    for (int i = 0; i < argc; i++) argv[i + 1] = (char *)args[i];
    fflush(stdout);
    const char *path = tmp("stdout.txt");
    int saved = dup(1);
    FILE *f = freopen(path, "w", stdout);
    cr_assert_not_null(f);
    int rc = cmd_trace(argc + 1, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    FILE *r = fopen(path, "r");
    size_t got = fread(out, 1, n - 1, r);
    out[got] = 0;
    fclose(r);
    return rc;
}

/* ---- the project's real traces ------------------------------------------ */

Test(trace, every_data_file_reads) {
    const char *dirs[] = {DS_DIR, "traces/data/mixtral-8x7b-vllm"};
    int files = 0;
    for (int i = 0; i < 2; i++) {
        DIR *d = opendir(dirs[i]);
        cr_assert_not_null(d, "%s", dirs[i]);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dirs[i], e->d_name);
            trace_t *t = NULL;
            cr_assert_eq(trace_read(p, &t), MS_OK, "%s: %s", p, ms_err_last());
            if (i == 0) {
                cr_assert_str_eq(t->format, "sglang-json");
                cr_assert_eq(t->n_layers, 58);
                cr_assert_eq(t->n_experts, 256);
                cr_assert_eq(t->first_layer, 3);
                cr_assert_eq(t->has_steps, 0);
            } else {
                cr_assert_str_eq(t->format, "jsonl");
                cr_assert_eq(t->kind, TRACE_TOKENS);
                cr_assert_eq(t->n_layers, 32);
                cr_assert_eq(t->n_experts, 8);
                cr_assert_eq(t->top_k, 2);
            }
            files++;
            trace_free(t);
        }
        closedir(d);
    }
    cr_assert_eq(files, 10);
}

/* hottest/mean and contiguous PAR, averaged over the MoE layers, straight
 * from the JSON with jansson (no moesim code). */
static void independent(const char *path, int ep, double *hot, double *par) {
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    cr_assert_not_null(root);
    json_t *lc = json_object_get(root, "logical_count"), *row;
    size_t i;
    double hs = 0, ps = 0;
    int n = 0;
    json_array_foreach(lc, i, row) {
        size_t E = json_array_size(row);
        double sum = 0, mx = 0, dev[64] = {0};
        for (size_t e = 0; e < E; e++) {
            double v = json_number_value(json_array_get(row, e));
            sum += v;
            mx = v > mx ? v : mx;
            dev[e / (E / ep)] += v;
        }
        if (sum == 0) continue;
        double dmx = 0;
        for (int d = 0; d < ep; d++) dmx = dev[d] > dmx ? dev[d] : dmx;
        hs += mx / (sum / E);
        ps += dmx / (sum / ep);
        n++;
    }
    json_decref(root);
    cr_assert_eq(n, 58);
    *hot = hs / n;
    *par = ps / n;
}

Test(trace, deepseek_info_matches_independent_computation) {
    DIR *d = opendir(DS_DIR);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", DS_DIR, e->d_name);
        double hot, par;
        independent(p, 32, &hot, &par);
        cr_assert(hot > 5.5 && hot < 8.2, "%s: hottest/mean %g", p, hot);
        cr_assert(par > 2.0 && par < 3.1, "%s: PAR %g", p, par);

        trace_t *t;
        cr_assert_eq(trace_read(p, &t), MS_OK);
        trace_stats_t st;
        cr_assert_eq(trace_stats(t, 32, &st), MS_OK);
        cr_assert_float_eq(st.hot_mean, hot, 1e-12 * hot, "%s", p);
        cr_assert_float_eq(st.par_mean, par, 1e-12 * par, "%s", p);
        cr_assert_eq(st.active_layers, 58);
        trace_stats_free(&st);
        trace_free(t);

        /* and what the command prints */
        char out[8192], want[128];
        const char *args[] = {"info", p, "--summary"};
        cr_assert_eq(run_trace(out, sizeof out, 3, args), 0);
        snprintf(want, sizeof want, "hottest/mean %.4f", hot);
        cr_assert(strstr(out, want), "%s: want '%s' in:\n%s", p, want, out);
        snprintf(want, sizeof want, "PAR@EP32 %.4f", par);
        cr_assert(strstr(out, want), "%s: want '%s' in:\n%s", p, want, out);
        files++;
    }
    closedir(d);
    cr_assert_eq(files, 8);
}

Test(trace, info_prints_per_layer_table_and_tokens) {
    char out[16384];
    const char *args[] = {"info", DS_DIR "/decode_in1800out100.json", "--top-k", "8", "--ep", "8"};
    cr_assert_eq(run_trace(out, sizeof out, 6, args), 0);
    cr_assert(strstr(out, "layers     58 MoE layers (source layers 3-60"), "%s", out);
    cr_assert(strstr(out, "tokens     1824768 "), "%s", out);
    cr_assert(strstr(out, "PAR@EP8"), "%s", out);
    cr_assert(strstr(out, "\n   57    60 "), "%s", out); /* last layer's row */
}

Test(trace, mixtral_raw_reports_duplicates_and_missing_layers) {
    trace_t *t;
    cr_assert_eq(trace_read(MX_RAW, &t), MS_OK, "%s", ms_err_last());
    cr_assert_eq(t->n_duplicates, 2579);
    cr_assert_eq(t->n_tokens, 135);
    cr_assert_eq(t->n_tokens_missing, 76);
    cr_assert_eq(t->n_missing, 122);
    /* kept records: 6777 lines - 2579 repeats = 135 x 32 - 122 */
    double pairs = 0;
    for (int64_t i = 0; i < (int64_t)t->n_steps * t->n_layers * t->n_experts; i++)
        pairs += t->counts[i];
    cr_assert_float_eq(pairs, (6777 - 2579) * 2.0, 0);
    trace_free(t);

    char out[4096];
    const char *args[] = {"info", MX_RAW, "--summary", "--ep", "4"};
    cr_assert_eq(run_trace(out, sizeof out, 5, args), 0);
    cr_assert(strstr(out, "duplicates 2579 records dropped"), "%s", out);
    cr_assert(strstr(out, "missing    76 tokens lack layers (122 token-layer records)"), "%s", out);
}

Test(trace, mixtral_clean_time_axis_and_first_record_kept) {
    trace_t *t;
    cr_assert_eq(trace_read(MX_CLEAN, &t), MS_OK);
    cr_assert_eq(t->n_duplicates, 0);
    cr_assert_eq(t->n_tokens, 338);
    cr_assert_eq(t->n_steps, 338);
    cr_assert_eq(t->n_tokens_missing, 5);
    cr_assert_eq(t->n_missing, 37);
    cr_assert_not_null(t->tok_scores);
    for (int i = 0; i < t->n_tokens; i++) cr_assert_eq(t->tok_step[i], i);
    /* line 1: problem 0, layer 0, token 0, experts [6, 5], probs [0.6959.., 0.3040..] */
    cr_assert_eq(t->tok_experts[0], 6);
    cr_assert_eq(t->tok_experts[1], 5);
    cr_assert_float_eq(t->tok_scores[0], 0.6959583759307861f, 0);
    /* a step holds its one token's pairs */
    for (int s = 0; s < 3; s++) {
        double sum = 0;
        for (int e = 0; e < 8; e++) sum += trace_counts(t, s, 0)[e];
        cr_assert_float_eq(sum, 2, 0);
    }
    trace_free(t);

    /* a repeated key keeps the record that came first in the file */
    const char *p = puts_file("dup.jsonl",
                              "{\"problem_id\": 0, \"layer\": 0, \"token_pos\": 0, \"experts\": [1, 2]}\n"
                              "{\"problem_id\": 0, \"layer\": 0, \"token_pos\": 0, \"experts\": [3, 4]}\n"
                              "{\"problem_id\": 0, \"layer\": 0, \"token_pos\": 0, \"experts\": [5, 6]}\n");
    cr_assert_eq(trace_read(p, &t), MS_OK);
    cr_assert_eq(t->n_duplicates, 2);
    cr_assert_eq(t->tok_experts[0], 1);
    cr_assert_eq(t->tok_experts[1], 2);
    cr_assert_null(t->tok_scores);
    trace_free(t);
}

/* ---- round trips ---------------------------------------------------------- */

static void assert_same_counts(const trace_t *a, const trace_t *b) {
    cr_assert_eq(a->n_steps, b->n_steps);
    cr_assert_eq(a->n_layers, b->n_layers);
    cr_assert_eq(a->n_experts, b->n_experts);
    cr_assert_eq(a->has_steps, b->has_steps);
    cr_assert_eq(memcmp(a->counts, b->counts,
                        (size_t)a->n_steps * a->n_layers * a->n_experts * sizeof *a->counts),
                 0);
}

static trace_t *gen(trace_gen_params_t *p) {
    trace_t *t;
    cr_assert_eq(trace_gen(p, "gen", &t), MS_OK, "%s", ms_err_last());
    return t;
}

Test(trace, round_trip_counts_every_writable_format) {
    trace_gen_params_t p;
    trace_gen_defaults(&p);
    p.n_layers = 5;
    p.n_experts = 32;
    p.n_steps = 7;
    p.tokens = 300;
    p.drift = 0.1;
    trace_t *g = gen(&p);
    const char *names[] = {"rt.csv", "rt.npy", "rt.json"};
    for (int i = 0; i < 3; i++) {
        trace_t *b;
        cr_assert_eq(trace_write(g, tmp(names[i])), MS_OK, "%s", ms_err_last());
        cr_assert_eq(trace_read(tmp(names[i]), &b), MS_OK, "%s: %s", names[i], ms_err_last());
        assert_same_counts(g, b);
        if (i == 0) cr_assert_eq(b->top_k, g->top_k);
        trace_free(b);
    }
    trace_free(g);

    /* non-integer counts and a trace without a time axis */
    trace_t *sg;
    cr_assert_eq(trace_read(DS_DIR "/prefill_in512.json", &sg), MS_OK);
    sg->counts[5] = 0.1 + 1e-9; /* not representable in short decimal */
    for (int i = 0; i < 3; i++) {
        trace_t *b;
        cr_assert_eq(trace_write(sg, tmp(names[i])), MS_OK, "%s", ms_err_last());
        cr_assert_eq(trace_read(tmp(names[i]), &b), MS_OK, "%s: %s", names[i], ms_err_last());
        assert_same_counts(sg, b);
        if (i != 1) cr_assert_eq(b->first_layer, 3, "%s", names[i]);
        trace_free(b);
    }
    trace_free(sg);
}

Test(trace, round_trip_sources_and_per_token) {
    trace_gen_params_t p;
    trace_gen_defaults(&p);
    p.n_layers = 4;
    p.n_experts = 16;
    p.top_k = 3;
    p.n_steps = 5;
    p.tokens = 40;
    p.n_src = 4;
    p.locality = 3;
    trace_t *g = gen(&p), *b;
    cr_assert_not_null(g->src_counts);
    cr_assert_eq(trace_write(g, tmp("src.csv")), MS_OK);
    cr_assert_eq(trace_read(tmp("src.csv"), &b), MS_OK, "%s", ms_err_last());
    assert_same_counts(g, b);
    cr_assert_eq(b->n_src, 4);
    cr_assert_eq(memcmp(g->src_counts, b->src_counts, (size_t)5 * 4 * 4 * 16 * sizeof(double)), 0);
    trace_free(b);
    trace_free(g);

    p.per_token = 1;
    p.phase_step = 3;
    p.phase_tokens = 9;
    g = gen(&p);
    cr_assert_eq(g->kind, TRACE_TOKENS);
    cr_assert_eq(g->n_tokens, 3 * 40 + 2 * 9);
    cr_assert_eq(trace_write(g, tmp("tok.csv")), MS_OK);
    cr_assert_eq(trace_read(tmp("tok.csv"), &b), MS_OK, "%s", ms_err_last());
    assert_same_counts(g, b);
    cr_assert_eq(b->kind, TRACE_TOKENS);
    cr_assert_eq(b->n_tokens, g->n_tokens);
    cr_assert_eq(b->top_k, 3);
    size_t cells = (size_t)g->n_tokens * g->n_layers * g->top_k;
    cr_assert_eq(memcmp(g->tok_step, b->tok_step, (size_t)g->n_tokens * sizeof(int)), 0);
    cr_assert_eq(memcmp(g->tok_src, b->tok_src, (size_t)g->n_tokens * sizeof(int)), 0);
    cr_assert_eq(memcmp(g->tok_experts, b->tok_experts, cells * sizeof(int16_t)), 0);
    cr_assert_eq(memcmp(g->tok_scores, b->tok_scores, cells * sizeof(float)), 0);
    cr_assert_eq(memcmp(g->src_counts, b->src_counts, (size_t)5 * 4 * 4 * 16 * sizeof(double)), 0);
    trace_free(b);

    /* .npy and .json keep the per-token trace's counts */
    cr_assert_eq(trace_write(g, tmp("tok.npy")), MS_OK);
    cr_assert_eq(trace_read(tmp("tok.npy"), &b), MS_OK);
    assert_same_counts(g, b);
    trace_free(b);
    trace_free(g);
}

Test(trace, round_trip_mixtral_per_token_csv) {
    trace_t *a, *b;
    cr_assert_eq(trace_read(MX_RAW, &a), MS_OK);
    cr_assert_eq(trace_write(a, tmp("mx.csv")), MS_OK);
    cr_assert_eq(trace_read(tmp("mx.csv"), &b), MS_OK, "%s", ms_err_last());
    assert_same_counts(a, b);
    size_t cells = (size_t)a->n_tokens * a->n_layers * a->top_k;
    cr_assert_eq(b->n_tokens_missing, 76);
    cr_assert_eq(memcmp(a->tok_experts, b->tok_experts, cells * sizeof(int16_t)), 0);
    cr_assert_eq(memcmp(a->tok_scores, b->tok_scores, cells * sizeof(float)), 0);
    trace_free(a);
    trace_free(b);
}

Test(trace, convert_command_by_extension) {
    char out[1024];
    const char *a1[] = {"convert", DS_DIR "/prefill_in1024.json", tmp("c.npy")};
    cr_assert_eq(run_trace(out, sizeof out, 3, a1), 0, "%s", ms_err_last());
    trace_t *a, *b;
    cr_assert_eq(trace_read(DS_DIR "/prefill_in1024.json", &a), MS_OK);
    cr_assert_eq(trace_read(tmp("c.npy"), &b), MS_OK);
    assert_same_counts(a, b);
    trace_free(a);
    trace_free(b);
    const char *a2[] = {"convert", DS_DIR "/prefill_in1024.json", tmp("c.txt")};
    cr_assert_neq(run_trace(out, sizeof out, 3, a2), 0);
    cr_assert(strstr(ms_err_last(), ".csv, .npy or .json"), "%s", ms_err_last());
    /* a failed write leaves nothing behind */
    const char *a3[] = {"convert", DS_DIR "/prefill_in1024.json", tmp("no/such/dir/c.csv")};
    cr_assert_neq(run_trace(out, sizeof out, 3, a3), 0);
    struct stat st;
    cr_assert_neq(stat(tmp("c.txt"), &st), 0);
}

/* ---- generator ------------------------------------------------------------ */

static int argmax(const double *c, int n) {
    int m = 0;
    for (int i = 1; i < n; i++)
        if (c[i] > c[m]) m = i;
    return m;
}

Test(trace, gen_is_deterministic_and_seeded) {
    trace_gen_params_t p;
    trace_gen_defaults(&p);
    p.n_layers = 3;
    p.n_steps = 4;
    trace_t *a = gen(&p), *b = gen(&p);
    assert_same_counts(a, b);
    p.seed = 2;
    trace_t *c = gen(&p);
    cr_assert_neq(memcmp(a->counts, c->counts, 3 * 4 * 256 * sizeof(double)), 0);
    trace_free(a);
    trace_free(b);
    trace_free(c);

    char out[1024];
    const char *args[] = {"gen", "--layers", "2", "--steps", "3", "--seed", "7", "-o", tmp("g1.csv")};
    cr_assert_eq(run_trace(out, sizeof out, 9, args), 0, "%s", ms_err_last());
    args[8] = tmp("g2.csv");
    cr_assert_eq(run_trace(out, sizeof out, 9, args), 0);
    char *x, *y;
    size_t nx, ny;
    cr_assert_eq(ms_read_file(tmp("g1.csv"), &x, &nx), MS_OK);
    cr_assert_eq(ms_read_file(tmp("g2.csv"), &y, &ny), MS_OK);
    cr_assert(nx == ny && !memcmp(x, y, nx));
    free(x);
    free(y);
}

Test(trace, gen_skew_hot_sets_drift_phase_locality) {
    trace_gen_params_t p;
    trace_gen_defaults(&p);
    p.n_layers = 6;
    p.n_steps = 6;
    p.tokens = 2048;
    trace_stats_t lo, hi;
    p.skew = 0.2;
    trace_t *a = gen(&p);
    p.skew = 0.8;
    trace_t *b = gen(&p);
    cr_assert_eq(trace_stats(a, 32, &lo), MS_OK);
    cr_assert_eq(trace_stats(b, 32, &hi), MS_OK);
    cr_assert(hi.hot_mean > lo.hot_mean + 1, "%g vs %g", hi.hot_mean, lo.hot_mean);
    cr_assert(hi.par_mean > lo.par_mean);
    /* every layer's pairs sum to tokens x top_k; hot sets differ by layer */
    int hot0 = argmax(trace_counts(b, 0, 0), 256), same = 0;
    for (int l = 0; l < 6; l++) {
        double s = 0;
        for (int e = 0; e < 256; e++) s += trace_counts(b, 0, l)[e];
        cr_assert_float_eq(s, 2048.0 * 8, 0);
        same += argmax(trace_counts(b, 0, l), 256) == hot0;
        /* no drift: the hot expert stays */
        cr_assert_eq(argmax(trace_counts(b, 5, l), 256), argmax(trace_counts(b, 0, l), 256));
    }
    cr_assert(same < 6);
    trace_stats_free(&lo);
    trace_stats_free(&hi);
    trace_free(a);
    trace_free(b);

    p.skew = 1.0;
    p.drift = 1.0;
    p.n_steps = 20;
    a = gen(&p);
    int moves = 0;
    for (int s = 1; s < 20; s++)
        moves += argmax(trace_counts(a, s, 0), 256) != argmax(trace_counts(a, s - 1, 0), 256);
    cr_assert(moves >= 5, "hot expert moved %d times in 19 steps", moves);
    trace_free(a);

    p.drift = 0;
    p.phase_step = 4;
    p.phase_tokens = 64;
    p.phase_skew = 0;
    p.n_steps = 8;
    a = gen(&p);
    double s3 = 0, s4 = 0;
    for (int e = 0; e < 256; e++) {
        s3 += trace_counts(a, 3, 0)[e];
        s4 += trace_counts(a, 4, 0)[e];
    }
    cr_assert_float_eq(s3, 2048.0 * 8, 0);
    cr_assert_float_eq(s4, 64.0 * 8, 0);
    trace_free(a);

    /* locality: a source sends more than its share to its own experts */
    trace_gen_defaults(&p);
    p.n_layers = 2;
    p.n_steps = 2;
    p.n_src = 8;
    p.locality = 10;
    a = gen(&p);
    double own = 0, all = 0;
    for (int q = 0; q < 8; q++)
        for (int e = 0; e < 256; e++) {
            double c = a->src_counts[((size_t)0 * 2 * 8 + q) * 256 + e];
            all += c;
            own += e / 32 == q ? c : 0;
        }
    cr_assert(own / all > 0.3, "own share %g (1/8 without locality)", own / all);
    trace_free(a);
}

Test(trace, gen_rejects_bad_parameters) {
    char out[1024];
    const char *a1[] = {"gen", "--top-k", "9", "--experts", "8", "-o", tmp("x.csv")};
    cr_assert_neq(run_trace(out, sizeof out, 7, a1), 0);
    cr_assert(strstr(ms_err_last(), "top-k 9"), "%s", ms_err_last());
    const char *a2[] = {"gen", "--drift", "abc", "-o", tmp("x.csv")};
    cr_assert_neq(run_trace(out, sizeof out, 5, a2), 0);
    cr_assert(strstr(ms_err_last(), "--drift"), "%s", ms_err_last());
    const char *a3[] = {"gen", "--layers", "2"};
    cr_assert_neq(run_trace(out, sizeof out, 3, a3), 0);
    cr_assert(strstr(ms_err_last(), "-o OUT"), "%s", ms_err_last());
    struct stat st;
    cr_assert_neq(stat(tmp("x.csv"), &st), 0);
}

/* ---- bad input ------------------------------------------------------------ */

/* Reads a file that must fail; the message must hold every needle. */
static void bad(const char *name, const void *data, size_t len, const char *n1, const char *n2) {
    const char *p = put(name, data, len);
    trace_t *t = NULL;
    cr_assert_eq(trace_read(p, &t), MS_ERR, "%s read", name);
    cr_assert_null(t);
    const char *m = ms_err_last();
    cr_assert(strstr(m, p), "%s: no file name in '%s'", name, m);
    cr_assert(strstr(m, n1), "%s: want '%s' in '%s'", name, n1, m);
    if (n2) cr_assert(strstr(m, n2), "%s: want '%s' in '%s'", name, n2, m);
    char out[1024];
    const char *args[] = {"info", p};
    cr_assert_neq(run_trace(out, sizeof out, 2, args), 0);
}

static void bad_text(const char *name, const char *text, const char *n1, const char *n2) {
    bad(name, text, strlen(text), n1, n2);
}

Test(trace, bad_sglang_json) {
    bad_text("trunc.json", "{\"logical_count\": [[1.0, 2.0], [3.0,", "invalid JSON", ":1:");
    bad_text("ragged.json", "{\"logical_count\": [[1, 2],\n [3]]}", "ragged", ":2:2 (byte 28)");
    bad_text("neg.json", "{\"logical_count\": [[1, 2],\n [3, -4]]}", "finite and >= 0", ":2:6");
    bad_text("nan.json", "{\"logical_count\": [[1, NaN]]}", "NaN", ":1:");
    bad_text("notnum.json", "{\"logical_count\": [[1, \"x\"]]}", "not a number", ":1:");
    bad_text("nokey.json", "{\"counts\": [[1, 2]]}", "logical_count", NULL);
    bad_text("zero.json", "{\"logical_count\": [[0, 0]]}", "zero", NULL);
    bad_text("steps.json", "{\"logical_count\": [[[1, 2]], [[1, 2], [3, 4]]]}", "ragged steps",
             NULL);
    bad_text("empty.json", "", "empty file", NULL);
    trace_t *t;
    cr_assert_eq(trace_read("no/such/file.json", &t), MS_ERR);
    cr_assert(strstr(ms_err_last(), "cannot open"));
}

Test(trace, bad_jsonl) {
    const char *ok = "{\"problem_id\": 0, \"layer\": 0, \"token_idx\": 0, \"experts\": [1, 2]}\n";
    char b[1024];
    snprintf(b, sizeof b, "%s{\"problem_id\": 0, \"layer\": 1, \"token_idx\": 0, \"exp", ok);
    bad_text("trunc.jsonl", b, ":2:", "invalid JSON");
    snprintf(b, sizeof b, "%s{\"problem_id\": 0, \"layer\": 1, \"token_idx\": 0, \"experts\": [1, 2, 3]}\n", ok);
    bad_text("ragged.jsonl", b, ":2:", "same top-k");
    snprintf(b, sizeof b, "%s{\"problem_id\": 0, \"layer\": 1, \"token_idx\": 0, \"experts\": [1, -2]}\n", ok);
    bad_text("negid.jsonl", b, ":2:", "out of range");
    snprintf(b, sizeof b, "%s{\"problem_id\": 0, \"layer\": 1, \"token_idx\": 0, \"experts\": [1, 40000]}\n", ok);
    bad_text("bigid.jsonl", b, ":2:", "out of range");
    snprintf(b, sizeof b, "%s{\"problem_id\": 0, \"layer\": 1, \"token_idx\": 0, \"experts\": [1, 1]}\n", ok);
    bad_text("twice.jsonl", b, ":2:", "twice");
    snprintf(b, sizeof b, "%s{\"problem_id\": 0, \"layer\": -1, \"token_idx\": 0, \"experts\": [1, 2]}\n", ok);
    bad_text("layer.jsonl", b, ":2:", "\"layer\"");
    snprintf(b, sizeof b, "%s{\"problem_id\": 0, \"layer\": 1, \"experts\": [1, 2]}\n", ok);
    bad_text("notok.jsonl", b, ":2:", "token_idx");
    snprintf(b, sizeof b, "%s{\"problem_id\": 0, \"layer\": 1, \"token_idx\": 0, \"experts\": [1, 2], \"gating_probs\": [0.5]}\n", ok);
    bad_text("probs.jsonl", b, ":2:", "gating_probs");
    bad_text("blank.jsonl", "\n  \n", "no routing records", NULL);
    bad_text("empty.jsonl", "", "empty file", NULL);
}

Test(trace, bad_csv) {
    bad_text("neg.csv", "step,layer,expert,count\n0,0,1,5\n0,0,2,-3\n", ":3:", "negative");
    bad_text("nan.csv", "step,layer,expert,count\n0,0,1,nan\n", ":2:", "NaN");
    bad_text("word.csv", "step,layer,expert,count\n0,0,1,many\n", ":2:", "not a number");
    bad_text("dup.csv", "step,layer,expert,count\n0,0,1,5\n0,0,1,6\n", ":3:", "second row");
    bad_text("fields.csv", "step,layer,expert,count\n0,0,1\n", ":2:", "3 fields");
    bad_text("range.csv", "# moesim-trace v1 kind=counts layers=2 experts=4 steps=1\n"
             "step,layer,expert,count\n0,1,4,5\n", ":3:", "out of range");
    bad_text("header.csv", "a,b,c\n1,2,3\n", ":1:", "unknown column");
    bad_text("noheader.csv", "# only a comment\n", "no header row", NULL);
    bad_text("norows.csv", "step,layer,expert,count\n", "no data rows", NULL);
    bad_text("tokid.csv", "# moesim-trace v1 experts=4\nstep,layer,token,experts\n0,0,0,1 7\n",
             ":3:", "out of range");
    bad_text("tokrag.csv", "step,layer,token,experts\n0,0,0,1 2\n0,1,0,1 2 3\n", ":3:",
             "same top-k");
    bad_text("tokdup.csv", "step,layer,token,experts\n0,0,0,1 2\n0,0,0,3 2\n", ":3:",
             "also on line 2");
    bad_text("tokscore.csv", "step,layer,token,experts,scores\n0,0,0,1 2,0.5\n", ":2:",
             "scores");
    bad_text("toknan.csv", "step,layer,token,experts,scores\n0,0,0,1 2,nan 0.5\n", ":2:",
             "finite");
    bad_text("kind.csv", "# moesim-trace v1 kind=tokens\nstep,layer,expert,count\n0,0,0,1\n",
             ":2:", "kind=tokens");
    bad_text("src.csv", "step,layer,src,expert,count\n0,4000,1000000,30000,2\n", "1000001 sources",
             "limit");
    bad_text("empty.csv", "", "empty file", NULL);
}

/* A .npy file: header dict text, then data. */
static size_t npy(char *out, const char *dict, const void *data, size_t n) {
    size_t hl = strlen(dict) + 1;
    hl += (64 - (10 + hl) % 64) % 64;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (char)(hl & 0xff);
    out[9] = (char)(hl >> 8);
    memset(out + 10, ' ', hl);
    memcpy(out + 10, dict, strlen(dict));
    out[10 + hl - 1] = '\n';
    memcpy(out + 10 + hl, data, n);
    return 10 + hl + n;
}

Test(trace, npy_reads_each_dtype) {
    char b[1024];
    int64_t i8[6] = {0, 1, 2, 3, 4, 5};
    int32_t i4[6] = {0, 1, 2, 3, 4, 5};
    float f4[6] = {0, 1, 2, 3, 4, 5.5f};
    double f8[6] = {0, 1, 2, 3, 4, 5.25};
    struct { const char *d; const void *p; size_t n; double last; } c[] = {
        {"<i8", i8, sizeof i8, 5}, {"<i4", i4, sizeof i4, 5},
        {"<f4", f4, sizeof f4, 5.5}, {"<f8", f8, sizeof f8, 5.25}};
    for (int i = 0; i < 4; i++) {
        char dict[128];
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (2, 1, 3), }",
                 c[i].d);
        const char *p = put("a.npy", b, npy(b, dict, c[i].p, c[i].n));
        trace_t *t;
        cr_assert_eq(trace_read(p, &t), MS_OK, "%s: %s", c[i].d, ms_err_last());
        cr_assert_eq(t->n_steps, 2);
        cr_assert_eq(t->n_layers, 1);
        cr_assert_eq(t->n_experts, 3);
        cr_assert_eq(t->has_steps, 1);
        cr_assert_float_eq(trace_counts(t, 1, 0)[2], c[i].last, 0);
        trace_free(t);
    }
    /* [layers][experts]: no time axis; the name need not say .npy */
    const char *p = put("two_d.bin", b,
                        npy(b, "{'shape': (2, 3), 'fortran_order': False, 'descr': '<i8'}", i8,
                            sizeof i8));
    trace_t *t;
    cr_assert_eq(trace_read(p, &t), MS_OK, "%s", ms_err_last());
    cr_assert_eq(t->has_steps, 0);
    cr_assert_eq(t->n_layers, 2);
    trace_free(t);
}

Test(trace, bad_npy) {
    char b[1024];
    int64_t d[6] = {0, 1, 2, 3, 4, 5}, neg[6] = {0, 1, 2, 3, -4, 5};
    double nan[2] = {1, NAN};
    const char *hdr = "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1, 3), }";
    bad("magic.npy", "NUMPY\x01\x00  ", 10, "byte 0", "magic");
    bad("fortran.npy", b,
        npy(b, "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 1, 3), }", d, sizeof d),
        "Fortran", "byte 10");
    bad("dims1.npy", b, npy(b, "{'descr': '<i8', 'fortran_order': False, 'shape': (6,), }", d,
                            sizeof d), "1 dimension", "byte 10");
    bad("dims4.npy", b, npy(b, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1, 2, 3), }",
                            d, sizeof d), "4 dimensions", NULL);
    bad("big.npy", b, npy(b, "{'descr': '>i8', 'fortran_order': False, 'shape': (2, 1, 3), }", d,
                          sizeof d), "big-endian", "byte 20");
    bad("dtype.npy", b, npy(b, "{'descr': '<c16', 'fortran_order': False, 'shape': (2, 1, 3), }",
                            d, sizeof d), "not supported", NULL);
    bad("short.npy", b, npy(b, hdr, d, sizeof d - 8), "truncated", "byte 128");
    bad("noshape.npy", b, npy(b, "{'descr': '<i8', 'fortran_order': False, }", d, sizeof d),
        "'shape'", NULL);
    bad("key.npy", b, npy(b, "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1, 3), 'x': 1}",
                          d, sizeof d), "unknown key", "byte 71");
    bad("syntax.npy", b, npy(b, "{'descr': '<i8' 'fortran_order': False}", d, sizeof d),
        "bad .npy header", NULL);
    bad("neg.npy", b, npy(b, hdr, neg, sizeof neg), "[1][0][1] = -4", "byte 160");
    bad("nan.npy", b,
        npy(b, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 2), }", nan, sizeof nan),
        "[0][0][1] = nan", "finite");
    bad("zero.npy", b, npy(b, "{'descr': '<i8', 'fortran_order': False, 'shape': (0, 1, 3), }", d,
                           0), "at least one", NULL);
    bad("version.npy", "\x93NUMPY\x07\x00\x10\x00{}", 12, "version 7.0", "byte 6");
    /* header length past the end of the file */
    const char h[] = "\x93NUMPY\x01\x00\xff\x00{'descr'";
    bad("hlen.npy", h, 16, "runs past the end", "byte 8");
    bad("empty.npy", "", 0, "empty file", NULL);
}

Test(trace, read_picks_format_by_content) {
    /* JSONL in a .json file, CSV without an extension */
    const char *p = puts_file(
        "routing.json", "{\"problem_id\": 0, \"layer\": 0, \"token_idx\": 0, \"experts\": [1, 2]}\n");
    trace_t *t;
    cr_assert_eq(trace_read(p, &t), MS_OK, "%s", ms_err_last());
    cr_assert_str_eq(t->format, "jsonl");
    trace_free(t);
    p = puts_file("counts", "step,layer,expert,count\n0,0,1,5\n");
    cr_assert_eq(trace_read(p, &t), MS_OK, "%s", ms_err_last());
    cr_assert_str_eq(t->format, "csv");
    trace_free(t);
    p = puts_file("space.json", " \n\t\n");
    cr_assert_eq(trace_read(p, &t), MS_ERR);
}
