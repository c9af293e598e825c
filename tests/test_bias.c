/* Tests of bias balancing (models/place_bias.c) and of the router scores it
 * routes on (traces/scores.c): the exponential draws, Gumbel-top-k against
 * the exact law of sampling without replacement, u = 0 against unbiased
 * routing, the group limit against a plain sort-based reference, and MaxVio
 * falling on a skewed trace. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "place.h"
#include "scores.h"
#include "trace.h"
#include "util.h"

extern const place_ops_t place_bias_ops;

static trace_t *synth(int L, int E, const double *counts) {
    trace_t *t = ms_calloc(1, sizeof *t);
    t->path = ms_strdup("synthetic");
    t->format = "synthetic";
    t->kind = TRACE_COUNTS;
    t->n_layers = L;
    t->n_experts = E;
    t->n_steps = 1;
    t->counts = ms_malloc((size_t)L * E * sizeof *t->counts);
    memcpy(t->counts, counts, (size_t)L * E * sizeof *t->counts);
    return t;
}

/* The bias strategy with [strategy.bias] from text (NULL: defaults). */
static place_state_t *bias_new(const char *ini, int L, int E, int k, int G, int TG, cfg_t **cfg) {
    *cfg = NULL;
    if (ini) cr_assert_eq(cfg_parse_text(ini, "test.ini", cfg), MS_OK);
    place_env_t env = {.n_layers = L, .n_experts = E, .n_devices = 4, .devices_per_node = 4,
                       .n_nodes = 1, .top_k = k, .n_groups = G, .topk_groups = TG,
                       .cfg = *cfg, .cfg_section = "strategy.bias", .seed = 1};
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(place_bias_ops.init(&env, NULL, &st, &lo), MS_OK, "%s", ms_err_last());
    place_layout_free(lo);
    return st;
}

/* ---- a sort-based reference of DeepSeek-V3's group-limited top-k ---- */

static const float *ref_v;
static int by_value(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (ref_v[i] != ref_v[j]) return ref_v[i] > ref_v[j] ? -1 : 1;
    return i - j;
}

static void reference(const float *v, int E, int G, int TG, int k, int *out) {
    int gs = E / G, idx[512], gidx[64], n = 0;
    float gscore[64], tmp[512];
    for (int g = 0; g < G; g++) {
        memcpy(tmp, v + g * gs, gs * sizeof *tmp);
        for (int a = 0; a < 2; a++) /* the two largest to the front */
            for (int b = a + 1; b < gs; b++)
                if (tmp[b] > tmp[a]) {
                    float t = tmp[a];
                    tmp[a] = tmp[b];
                    tmp[b] = t;
                }
        gscore[g] = tmp[0] + tmp[1];
        gidx[g] = g;
    }
    ref_v = gscore;
    qsort(gidx, G, sizeof *gidx, by_value);
    for (int i = 0; i < TG; i++)
        for (int e = gidx[i] * gs; e < (gidx[i] + 1) * gs; e++) idx[n++] = e;
    ref_v = v;
    qsort(idx, n, sizeof *idx, by_value);
    memcpy(out, idx, k * sizeof *out);
}

/* ---- scores ---- */

Test(scores, exponential_draws) {
    double c[4] = {1, 1, 1, 1};
    trace_t *t = synth(1, 4, c);
    scores_t *s = NULL;
    cr_assert_eq(scores_new(t, 1, 3, &s), MS_OK);
    int n = 400000, over1 = 0, over3 = 0, over8 = 0;
    double sum = 0, sq = 0;
    for (int i = 0; i < n; i++) {
        double x = scores_exp(s);
        cr_assert(x >= 0);
        sum += x;
        sq += x * x;
        over1 += x > 1;
        over3 += x > 3;
        over8 += x > 8; /* beyond the ziggurat's base strip: the tail path */
    }
    cr_assert_float_eq(sum / n, 1.0, 0.01);
    cr_assert_float_eq(sq / n - (sum / n) * (sum / n), 1.0, 0.02);
    cr_assert_float_eq((double)over1 / n, exp(-1), 0.004);
    cr_assert_float_eq((double)over3 / n, exp(-3), 0.001);
    cr_assert(over8 > 0.5 * n * exp(-8) && over8 < 1.5 * n * exp(-8), "%d above 8", over8);
    scores_free(s);
    trace_free(t);
}

Test(scores, top_k_samples_in_proportion_to_counts) {
    /* Expert 8 never fired in the trace; the rest fire 1..8 times. */
    enum { E = 9, K = 2 };
    double c[E] = {1, 2, 3, 4, 5, 6, 7, 8, 0}, C = 36;
    trace_t *t = synth(1, E, c);
    scores_t *s = NULL;
    cr_assert_eq(scores_new(t, K, 11, &s), MS_OK);
    int n = 200000, hits[E] = {0}, out[K];
    for (int i = 0; i < n; i++) {
        const float *v = scores_token(s, 0);
        for (int e = 0; e < E; e++) cr_assert(v[e] > 0 && v[e] < 1);
        reference(v, E, 1, 1, K, out);
        hits[out[0]]++;
        hits[out[1]]++;
    }
    /* The fitted scores reproduce the counts: expert i in a share K c_i / C
     * of the tokens (two draws without replacement in proportion to counts
     * would give p_i + sum_{j != i} p_j p_i / (1 - p_j), flatter). */
    for (int i = 0; i < E; i++) {
        double want = K * c[i] / C;
        cr_assert_float_eq((double)hits[i] / n, want, 0.005, "expert %d: %g vs %g", i,
                           (double)hits[i] / n, want);
    }
    cr_assert_eq(hits[8], 0);
    scores_free(s);
    trace_free(t);
}

/* ---- bias balancing ---- */

/* DeepSeek-V3's routing shape. */
enum { DE = 256, DK = 8, DG = 8, DTG = 4 };

static void skewed(double *c, int E) {
    for (int e = 0; e < E; e++) c[e] = 1000.0 / pow(e % 37 + 1, 1.1) + (e % 5);
}

Test(bias, zero_u_reproduces_unbiased_routing) {
    double c[DE];
    skewed(c, DE);
    trace_t *t = synth(1, DE, c);
    scores_t *s = NULL;
    cr_assert_eq(scores_new(t, DK, 5, &s), MS_OK);
    cfg_t *cfg;
    place_state_t *st = bias_new("[strategy.bias]\nu = 0\n", 1, DE, DK, DG, DTG, &cfg);
    double load[DE];
    for (int step = 0; step < 4; step++) {
        memset(load, 0, sizeof load);
        for (int tok = 0; tok < 300; tok++) {
            const float *v = scores_token(s, 0);
            int out[DK], want[DK];
            place_bias_ops.route(st, 0, v, out);
            reference(v, DE, DG, DTG, DK, want);
            cr_assert_arr_eq(out, want, sizeof want, "step %d token %d", step, tok);
            for (int j = 0; j < DK; j++) load[out[j]]++;
        }
        place_obs_t o = {.now_ns = step, .step = step, .expert_load = load};
        place_bias_ops.observe(st, &o);
    }
    const char *names[16];
    double vals[16];
    int n = place_bias_ops.metrics(st, names, vals, 16);
    cr_assert(n > 0);
    cr_assert_str_eq(names[0], "bias_routing_deviation");
    cr_assert_float_eq(vals[0], 0, 0);
    place_bias_ops.destroy(st);
    cfg_free(cfg);
    scores_free(s);
    trace_free(t);
}

Test(bias, group_limited_selection_matches_the_reference) {
    /* Random biases from random loads, scores on a coarse grid so that
     * values and group sums tie often. */
    const float u = 1.0f / 64;
    cfg_t *cfg;
    place_state_t *st = bias_new("[strategy.bias]\nu = 0.015625\n", 1, DE, DK, DG, DTG, &cfg);
    float bias[DE] = {0}, v[DE], vb[DE];
    double load[DE];
    unsigned seed = 12345;
    for (int step = 0; step < 30; step++) {
        for (int tok = 0; tok < 200; tok++) {
            for (int e = 0; e < DE; e++) {
                seed = seed * 1103515245u + 12345u;
                v[e] = (float)((seed >> 16) % 64) / 64.0f;
                vb[e] = v[e] + bias[e];
            }
            int out[DK], want[DK];
            place_bias_ops.route(st, 0, v, out);
            reference(vb, DE, DG, DTG, DK, want);
            cr_assert_arr_eq(out, want, sizeof want, "step %d token %d", step, tok);
            unsigned char group[DG] = {0};
            int groups = 0;
            for (int j = 0; j < DK; j++)
                if (!group[out[j] / (DE / DG)]++) groups++;
            cr_assert(groups <= DTG, "token spans %d groups", groups);
        }
        double mean = 0;
        for (int e = 0; e < DE; e++) {
            seed = seed * 1103515245u + 12345u;
            load[e] = (seed >> 16) % 7;
            mean += load[e] / DE;
        }
        for (int e = 0; e < DE; e++) /* the update rule, mirrored */
            bias[e] += load[e] < mean ? u : load[e] > mean ? -u : 0;
        place_obs_t o = {.now_ns = step, .step = step, .expert_load = load};
        place_bias_ops.observe(st, &o);
    }
    place_bias_ops.destroy(st);
    cfg_free(cfg);
}

Test(bias, lowers_maxvio_on_a_skewed_trace) {
    double c[DE];
    skewed(c, DE);
    trace_t *t = synth(1, DE, c);
    scores_t *s = NULL;
    cr_assert_eq(scores_new(t, DK, 9, &s), MS_OK);
    cfg_t *cfg;
    place_state_t *st = bias_new("[strategy.bias]\nu = 0.01\n", 1, DE, DK, DG, DTG, &cfg);
    double load[DE];
    for (int step = 0; step < 40; step++) {
        memset(load, 0, sizeof load);
        for (int tok = 0; tok < 512; tok++) {
            int out[DK];
            place_bias_ops.route(st, 0, scores_token(s, 0), out);
            for (int j = 0; j < DK; j++) load[out[j]]++;
        }
        place_obs_t o = {.now_ns = step, .step = step, .expert_load = load};
        place_bias_ops.observe(st, &o);
    }
    const char *names[16];
    double vals[16];
    int n = place_bias_ops.metrics(st, names, vals, 16);
    double m[16];
    const char *want[] = {"bias_routing_deviation", "bias_maxvio_global",
                          "bias_maxvio_global_unbiased", "bias_maxvio_batch",
                          "bias_maxvio_batch_unbiased", "bias_maxvio_first_step",
                          "bias_maxvio_last_step"};
    for (int i = 0; i < 7; i++) {
        cr_assert(i < n);
        cr_assert_str_eq(names[i], want[i]);
        m[i] = vals[i];
    }
    cr_assert(m[0] > 0.01, "bias changed %g of the choices", m[0]);
    cr_assert(m[6] < 0.5 * m[5], "MaxVio first step %g, last step %g", m[5], m[6]);
    cr_assert(m[1] < 0.5 * m[2], "MaxVio over the run %g, unbiased %g", m[1], m[2]);
    cr_assert(m[3] < m[4]);
    place_bias_ops.destroy(st);
    cfg_free(cfg);
    scores_free(s);
    trace_free(t);
}

Test(bias, bad_routing_shape_is_reported) {
    ms_err_quiet(1);
    place_env_t env = {.n_layers = 1, .n_experts = 60, .n_devices = 4, .devices_per_node = 4,
                       .n_nodes = 1, .top_k = 8, .n_groups = 8, .topk_groups = 4, .seed = 1};
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(place_bias_ops.init(&env, NULL, &st, &lo), MS_ERR);
    cr_assert(strstr(ms_err_last(), "group_limit"), "%s", ms_err_last());
    cfg_t *cfg = NULL;
    cr_assert_eq(cfg_parse_text("[strategy.bias]\nu = 2\n", "test.ini", &cfg), MS_OK);
    env.n_experts = 64;
    env.cfg = cfg;
    env.cfg_section = "strategy.bias";
    cr_assert_eq(place_bias_ops.init(&env, NULL, &st, &lo), MS_ERR);
    cr_assert(strstr(ms_err_last(), "test.ini"), "%s", ms_err_last());
    cfg_free(cfg);
    ms_err_quiet(0);
}
