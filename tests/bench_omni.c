/* bench_omni: OmniPlacement's full re-plan (every one of DeepSeek-V3's 58
 * MoE layers, 256 experts, 32 redundant slots) at EP144 (18 hosts of 8) and
 * EP32 (4 hosts of 8), from the recorded SGLang decode counts. The target is
 * 10 ms at EP144; the figure is the median of repeated re-plans. Also the
 * cost of bias balancing's routing per token and layer (scores + route). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "place.h"
#include "place_omni.h"
#include "scores.h"
#include "trace.h"
#include "util.h"

#define TRACE "traces/data/deepseek-v3-sglang/decode_in1000out1000.json"
#define REPS 31

extern const place_ops_t place_bias_ops;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Loads [L][E]: the trace's totals, or a skewed synthetic set without it. */
static double *loads(trace_t *t, int L, int E) {
    double *w = ms_malloc((size_t)L * E * sizeof *w);
    for (int l = 0; l < L; l++) {
        if (t) trace_layer_total(t, l, w + (size_t)l * E);
        else
            for (int e = 0; e < E; e++) w[(size_t)l * E + e] = 1000.0 / (1 + (e * 37 + l) % 97);
    }
    return w;
}

static void bench_replan(const double *w, int L, int E, int D, int R, int dph, double target) {
    int S = E + R, spd = S / D;
    place_layout_t *cur = place_layout_new(L, E, D, dph);
    int *se = ms_malloc((size_t)S * sizeof *se);
    for (int p = 0; p < S; p++) se[p] = p % E; /* the strategy's starting layout */
    for (int l = 0; l < L; l++) place_layer_set(cur, l, spd, se);
    free(se);
    place_omni_cfg_t c;
    place_omni_defaults(&c, dph);
    place_omni_ws_t *ws = place_omni_ws_new(E, D, spd);
    double t[REPS];
    int changed = 0;
    for (int i = 0; i < REPS; i++) {
        place_layout_t *out = NULL;
        double t0 = now_ms();
        changed = place_omni_plan(ws, &c, w, cur, spd, &out);
        t[i] = now_ms() - t0;
        place_layout_free(out);
    }
    qsort(t, REPS, sizeof *t, cmp_double);
    printf("omni re-plan, %d layers x %d experts -> %d slots on %d devices (%d hosts): "
           "median %.3f ms (min %.3f), %d layers changed; target %.0f ms: %s\n",
           L, E, S, D, D / dph, t[REPS / 2], t[0], changed, target,
           t[REPS / 2] <= target ? "met" : "MISSED");
    place_omni_ws_free(ws);
    place_layout_free(cur);
}

/* Bias balancing's per-token work: one token's 256 scores, its biased and
 * unbiased group-limited top-8. */
static void bench_route(void) {
    int E = 256, k = 8, n = 200000;
    double c[256];
    for (int e = 0; e < E; e++) c[e] = 1000.0 / (1 + e % 37);
    trace_t one = {.format = "synthetic", .kind = TRACE_COUNTS, .n_layers = 1,
                   .n_experts = E, .n_steps = 1, .counts = c};
    scores_t *s = NULL;
    place_env_t env = {.n_layers = 1, .n_experts = E, .n_devices = 32, .devices_per_node = 8,
                       .n_nodes = 4, .top_k = k, .n_groups = 8, .topk_groups = 4, .seed = 1};
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    if (scores_new(&one, k, 1, &s) || place_bias_ops.init(&env, NULL, &st, &lo)) exit(1);
    /* one step of loads so the bias is set and both selections run */
    double load[256];
    for (int e = 0; e < E; e++) load[e] = e % 3;
    place_obs_t o = {.expert_load = load};
    place_bias_ops.observe(st, &o);
    int out[8];
    double t0 = now_ms();
    for (int i = 0; i < n; i++) scores_token(s, 0);
    double t1 = now_ms();
    const float *v = scores_token(s, 0);
    for (int i = 0; i < n; i++) place_bias_ops.route(st, 0, v, out);
    double t2 = now_ms();
    printf("bias routing per token and layer (256 experts, top-8 of 4 of 8 groups): scores "
           "%.0f ns, route %.0f ns; a 4096-token x 58-layer step about %.0f ms\n",
           (t1 - t0) * 1e6 / n, (t2 - t1) * 1e6 / n, (t2 - t0) / n * 4096 * 58);
    place_bias_ops.destroy(st);
    place_layout_free(lo);
    scores_free(s);
}

int main(void) {
    trace_t *t = NULL;
    ms_err_quiet(1);
    if (trace_read(TRACE, &t)) {
        printf("(%s not readable: synthetic loads)\n", TRACE);
        t = NULL;
    }
    ms_err_quiet(0);
    int L = 58, E = 256;
    double *w = loads(t, L, E);
    bench_replan(w, L, E, 144, 32, 8, 10);
    bench_replan(w, L, E, 32, 32, 8, 10);
    bench_route();
    free(w);
    trace_free(t);
    return 0;
}
