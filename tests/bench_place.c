/* bench_place: how long a full EPLB re-plan takes (58 layers x 256 experts
 * -> 288 slots) at EP32 (4 nodes, hierarchical) and EP144 (18 nodes,
 * global), on the DeepSeek-V3 statistics and on random loads, with the
 * targets beside them; a full plan of the predictive strategy at EP144
 * (target 10 ms); the lower bound over 58 layers; and a whole
 * `moesim place --eval` (read both traces, plan, plan in hindsight, score)
 * at EP144; and the keep-in-place pass (place_move_keep) between two EPLB
 * layouts. Medians of many repetitions; prints, never fails. */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

#include <gsl/gsl_rng.h>
#include <gsl/gsl_sort.h>

#include "cmd.h"
#include "place.h"
#include "place_eplb.h"
#include "place_move.h"
#include "trace.h"
#include "util.h"

#define L 58
#define E 256
#define P 288

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double median_ms(double *t, int n) {
    gsl_sort(t, 1, (size_t)n);
    return 1e3 * (n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2);
}

static double time_eplb(const double *w, int nodes, int gpus, int reps) {
    int *p = ms_malloc(sizeof(int) * L * P), *c = ms_malloc(sizeof(int) * L * E);
    double *t = ms_malloc(sizeof(double) * reps);
    place_eplb(w, L, E, P, 8, nodes, gpus, p, c); /* warm the caches */
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        place_eplb(w, L, E, P, 8, nodes, gpus, p, c);
        t[i] = now_s() - t0;
    }
    double m = median_ms(t, reps);
    free(p);
    free(c);
    free(t);
    return m;
}

static double cpu_s(void);

/* One full predictive plan (its init from the prior w: forecast, EPLB's
 * replica counts, drift-aware packing of every layer) at EP144: median
 * wall time, and median CPU time into *cpu_ms. */
static double time_predictive(const double *w, int reps, double *cpu_ms) {
    const place_ops_t *ops = place_find("predictive");
    place_env_t env = {.n_layers = L, .n_experts = E, .n_devices = 144, .devices_per_node = 8,
                       .n_nodes = 18, .redundant = P - E, .top_k = 8, .n_groups = 8,
                       .topk_groups = 4, .seed = 1};
    double *t = ms_malloc(sizeof(double) * reps), *c = ms_malloc(sizeof(double) * reps);
    int ok = ops != NULL;
    for (int i = 0; i < reps && ok; i++) {
        place_state_t *st = NULL;
        place_layout_t *lo = NULL;
        double t0 = now_s(), c0 = cpu_s();
        ok = ops->init(&env, w, &st, &lo) == MS_OK;
        t[i] = now_s() - t0;
        c[i] = cpu_s() - c0;
        if (ok) ops->destroy(st);
        place_layout_free(lo);
    }
    double m = ok ? median_ms(t, reps) : -1;
    *cpu_ms = ok ? median_ms(c, reps) : -1;
    free(t);
    free(c);
    return m;
}

static double time_bound(const double *w, int gpus, int reps) {
    double *t = ms_malloc(sizeof(double) * reps), sink = 0;
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        for (int l = 0; l < L; l++) sink += place_bound(w + (size_t)l * E, E, gpus, P);
        t[i] = now_s() - t0;
    }
    double m = median_ms(t, reps);
    free(t);
    return sink > 0 ? m : m; /* keeps the calls */
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One `moesim place --eval` at EP144, its table sent to /dev/null: median
 * wall time, and median CPU time into *cpu_ms (on a shared machine the
 * wall time also counts waiting for a core). */
static double time_place_eval(const char *strategy, int reps, double *cpu_ms) {
    double *t = ms_malloc(sizeof(double) * reps), *c = ms_malloc(sizeof(double) * reps);
    FILE *keep = stdout;
    int ok = 1;
    for (int i = 0; i < reps && ok; i++) {
        char *argv[] = {"place", "--strategy", (char *)strategy,
                        "--counts", "traces/data/deepseek-v3-sglang/prefill_in4096.json",
                        "--eval", "traces/data/deepseek-v3-sglang/decode_in1000out1000.json",
                        "--devices", "144", "--nodes", "18", "--redundant", "32", NULL};
        stdout = fopen("/dev/null", "w");
        double t0 = now_s(), c0 = cpu_s();
        ok = stdout && cmd_place(13, argv) == 0;
        t[i] = now_s() - t0;
        c[i] = cpu_s() - c0;
        if (stdout) fclose(stdout);
        stdout = keep;
    }
    double m = ok ? median_ms(t, reps) : -1;
    *cpu_ms = ok ? median_ms(c, reps) : -1;
    free(t);
    free(c);
    return m;
}

/* An EPLB layout of loads w on gpus devices of `nodes` nodes. */
static place_layout_t *eplb_layout(const double *w, int nodes, int gpus) {
    int *p = ms_malloc(sizeof(int) * L * P), *c = ms_malloc(sizeof(int) * L * E);
    place_layout_t *lo = place_layout_new(L, E, gpus, gpus / nodes);
    if (place_eplb(w, L, E, P, 8, nodes, gpus, p, c)) abort();
    for (int l = 0; l < L; l++)
        if (place_layer_set(lo, l, P / gpus, p + (size_t)l * P)) abort();
    free(p);
    free(c);
    return lo;
}

/* place_move_keep from EPLB on loads a to EPLB on loads b: median wall ms,
 * median CPU ms into *cpu_ms, and the copies before and after. */
static double time_keep(const double *a, const double *b, int nodes, int gpus, int reps,
                        double *cpu_ms, int64_t *before, int64_t *after) {
    place_layout_t *cur = eplb_layout(a, nodes, gpus), *next = eplb_layout(b, nodes, gpus);
    double *t = ms_malloc(sizeof(double) * reps), *c = ms_malloc(sizeof(double) * reps);
    *before = place_move_copies(cur, next);
    for (int i = 0; i < reps; i++) {
        place_layout_t *x = place_layout_copy(next);
        double t0 = now_s(), c0 = cpu_s();
        place_move_keep(cur, x);
        t[i] = now_s() - t0;
        c[i] = cpu_s() - c0;
        *after = place_move_copies(cur, x);
        place_layout_free(x);
    }
    double m = median_ms(t, reps);
    *cpu_ms = median_ms(c, reps);
    free(t);
    free(c);
    place_layout_free(cur);
    place_layout_free(next);
    return m;
}

int main(void) {
    double *wt = ms_malloc(sizeof(double) * L * E), *wr = ms_malloc(sizeof(double) * L * E);
    trace_t *tr = NULL;
    const char *path = "traces/data/deepseek-v3-sglang/decode_in1000out1000.json";
    int have_trace = trace_read(path, &tr) == MS_OK && tr->n_layers == L && tr->n_experts == E;
    if (have_trace)
        for (int l = 0; l < L; l++) trace_layer_total(tr, l, wt + (size_t)l * E);
    trace_free(tr);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 1);
    for (int i = 0; i < L * E; i++) wr[i] = (double)gsl_rng_uniform_int(r, 1000);
    gsl_rng_free(r);

    const struct { const char *what; int nodes, gpus; double target_ms; } cases[] = {
        {"EP32, 4 nodes (hierarchical)", 4, 32, 1.0},
        {"EP144, 18 nodes (global)", 18, 144, 4.0},
    };
    printf("EPLB re-plan, %d layers x %d experts -> %d slots (median of 500)\n", L, E, P);
    for (int k = 0; k < 2; k++) {
        if (have_trace)
            printf("  %-30s trace  %8.3f ms   (target <= %.0f ms)\n", cases[k].what,
                   time_eplb(wt, cases[k].nodes, cases[k].gpus, 500), cases[k].target_ms);
        printf("  %-30s random %8.3f ms   (target <= %.0f ms)\n", cases[k].what,
               time_eplb(wr, cases[k].nodes, cases[k].gpus, 500), cases[k].target_ms);
    }
    printf("predictive plan, %d layers x %d experts -> %d slots, EP144 (18 nodes; median of 50)\n",
           L, E, P);
    {
        double cpu, ms = time_predictive(have_trace ? wt : wr, 50, &cpu);
        if (ms < 0) printf("  failed: %s\n", ms_err_last());
        else printf("  %-30s %s %8.3f ms wall, %8.3f ms CPU   (target <= 10 ms)\n",
                    "EP144, 18 nodes", have_trace ? "trace " : "random", ms, cpu);
    }
    printf("lower bound, %d layers (median of 100)\n", L);
    for (int k = 0; k < 2; k++)
        printf("  %-30s %s %8.3f ms\n", cases[k].what, have_trace ? "trace " : "random",
               time_bound(have_trace ? wt : wr, cases[k].gpus, 100));
    printf("place --eval at EP144 (18 nodes, 32 redundant; prefill_in4096 -> decode_in1000out1000;"
           " median of 20)\n");
    const char *strats[] = {"static", "eplb", "omni", "bias"};
    for (int k = 0; k < 4; k++) {
        double cpu, ms = time_place_eval(strats[k], 20, &cpu);
        if (ms < 0) printf("  %-8s failed: %s\n", strats[k], ms_err_last());
        else printf("  %-8s %8.1f ms wall, %8.1f ms CPU   (target <= 100 ms)\n", strats[k], ms,
                    cpu);
    }
    printf("keep-in-place pass (place_move_keep), EPLB on random loads -> EPLB on %s, "
           "%d layers (median of 50)\n", have_trace ? "the trace" : "other random loads", L);
    double *wb = have_trace ? wt : ms_malloc(sizeof(double) * L * E);
    if (!have_trace)
        for (int i = 0; i < L * E; i++) wb[i] = wr[(i * 7 + 3) % (L * E)];
    for (int k = 0; k < 2; k++) {
        int64_t c0 = 0, c1 = 0;
        double cpu, ms = time_keep(wr, wb, cases[k].nodes, cases[k].gpus, 50, &cpu, &c0, &c1);
        printf("  %-30s %8.3f ms wall, %8.3f ms CPU   copies %lld -> %lld\n", cases[k].what, ms,
               cpu, (long long)c0, (long long)c1);
    }
    if (!have_trace) free(wb);
    free(wt);
    free(wr);
    return 0;
}
