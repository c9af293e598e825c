/* Tests of replay fidelity (traces/gate.c, traces/replay.c, sim/route.c):
 * on every DeepSeek-V3 trace the replayed per-expert distribution is within
 * 1.5x the sampling floor of the trace's, in token and count mode, with the
 * group limit on and off; bias balancing at zero bias routes exactly as
 * static; per-token traces give each token its own experts; the node limit
 * holds; the group-limited selection is the plain definition's, ties
 * included; and the fit cache is used, refitted when stale or corrupt, and
 * falls back when it cannot be written beside the trace. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "gate.h"
#include "place.h"
#include "replay.h"
#include "route.h"
#include "trace.h"
#include "util.h"

extern const place_ops_t place_bias_ops;

#define DS_DIR "traces/data/deepseek-v3-sglang"
#define MX_CLEAN "traces/data/mixtral-8x7b-vllm/humaneval_2_routing.jsonl"
#define LAYERS 3      /* layers of each trace checked (spread over the 58) */
#define TOKENS 4096   /* tokens replayed per layer: 32768 pairs at top-8 */
#define FLOOR_REPS 16 /* pairs of samples averaged for the floor */

static void setup(void) { ms_err_quiet(1); }
TestSuite(gate, .init = setup);

/* A counts trace of `layers` of t's layers (a few, to keep the test fast). */
static trace_t *sub_trace(const trace_t *t, const int *layers, int n) {
    trace_t *s = ms_calloc(1, sizeof *s);
    s->path = ms_strdup("sub");
    s->format = "synthetic";
    s->kind = TRACE_COUNTS;
    s->n_layers = n;
    s->n_experts = t->n_experts;
    s->n_steps = 1;
    s->counts = ms_malloc((size_t)n * t->n_experts * sizeof *s->counts);
    for (int i = 0; i < n; i++) trace_layer_total(t, layers[i], s->counts + (size_t)i * t->n_experts);
    return s;
}

static double l1(const double *a, const double *b, int E) {
    double sa = 0, sb = 0, d = 0;
    for (int e = 0; e < E; e++) sa += a[e], sb += b[e];
    for (int e = 0; e < E; e++) d += fabs(a[e] / sa - b[e] / sb);
    return d;
}

/* The sampling floor: the mean L1 distance between two independent
 * multinomial samples of `pairs` pairs from the layer's own distribution. */
static double sampling_floor(const double *c, int E, unsigned pairs, gsl_rng *rng) {
    unsigned a[512], b[512];
    double da[512], db[512], sum = 0;
    for (int r = 0; r < FLOOR_REPS; r++) {
        gsl_ran_multinomial(rng, (size_t)E, pairs, c, a);
        gsl_ran_multinomial(rng, (size_t)E, pairs, c, b);
        for (int e = 0; e < E; e++) da[e] = a[e], db[e] = b[e];
        sum += l1(da, db, E);
    }
    return sum / FLOOR_REPS;
}

/* The bias strategy at u = 0 for the routing spec (its bias stays zero). */
static place_state_t *bias_zero(const gate_spec_t *spec, int L, cfg_t **cfg) {
    cr_assert_eq(cfg_parse_text("[strategy.bias]\nu = 0\n", "t.ini", cfg), MS_OK);
    place_env_t env = {.n_layers = L, .n_experts = spec->n_experts, .n_devices = 4,
                       .devices_per_node = 4, .n_nodes = 1, .top_k = spec->top_k, .n_groups = 8,
                       .topk_groups = 4, .gate = spec, .cfg = *cfg,
                       .cfg_section = "strategy.bias", .seed = 1};
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(place_bias_ops.init(&env, NULL, &st, &lo), MS_OK, "%s", ms_err_last());
    place_layout_free(lo);
    return st;
}

Test(gate, replay_reproduces_every_deepseek_trace_within_the_sampling_floor) {
    DIR *d = opendir(DS_DIR);
    cr_assert_not_null(d);
    struct dirent *de;
    int files = 0, checked = 0;
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 5);
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", DS_DIR, de->d_name);
        trace_t *full;
        cr_assert_eq(trace_read(p, &full), MS_OK, "%s", ms_err_last());
        /* different layers for each file, spread over the model */
        int layers[LAYERS];
        for (int i = 0; i < LAYERS; i++) layers[i] = (files * 7 + i * 19) % full->n_layers;
        trace_t *t = sub_trace(full, layers, LAYERS);
        int E = t->n_experts;
        for (int limit = 0; limit < 2; limit++) {
            gate_spec_t spec;
            cr_assert_eq(gate_spec_make(E, 8, limit ? 8 : 1, 4, 1, 0, "t", &spec), MS_OK);
            /* token mode, static (replay alone) and bias at zero bias */
            replay_t *rp;
            cr_assert_eq(replay_new(t, 8, 4, TOKENS / 4, 3, &rp), MS_OK);
            replay_set_gate(rp, &spec);
            const route_step_t *rt = replay_step(rp, 0);
            cr_assert_not_null(rt, "%s", ms_err_last());
            double got[LAYERS][256], cnt[LAYERS * 256];
            memset(got, 0, sizeof got);
            for (int l = 0; l < LAYERS; l++)
                for (int i = 0; i < TOKENS * 8; i++) got[l][rt->expert[(size_t)l * TOKENS * 8 + i]]++;
            replay_counts(rp, 0, TOKENS, cnt);
            for (int l = 0; l < LAYERS; l++) {
                const double *c = trace_counts(t, 0, l);
                double fl = sampling_floor(c, E, TOKENS * 8, rng);
                double tok = l1(got[l], c, E), cm = l1(cnt + (size_t)l * E, c, E);
                cr_assert(tok <= 1.5 * fl, "%s layer %d group limit %d: token mode L1 %.4f, floor %.4f",
                          p, layers[l], limit, tok, fl);
                cr_assert(cm <= 1.5 * fl, "%s layer %d: count mode L1 %.4f, floor %.4f", p,
                          layers[l], cm, fl);
                checked++;
            }
            /* count mode through the strategy hook: the estimate path */
            cfg_t *cfg;
            place_state_t *ps = bias_zero(&spec, LAYERS, &cfg);
            route_t *ro;
            cr_assert_eq(route_new(rp, &spec, &place_bias_ops, ps, 3, 64, 1, &ro), MS_OK);
            route_counts(ro, 0, 1, TOKENS, cnt);
            for (int l = 0; l < LAYERS; l++) {
                const double *c = trace_counts(t, 0, l);
                double fl = sampling_floor(c, E, TOKENS * 8, rng);
                double cm = l1(cnt + (size_t)l * E, c, E);
                cr_assert(cm <= 1.5 * fl, "%s layer %d group limit %d: bias count mode L1 %.4f, "
                          "floor %.4f", p, layers[l], limit, cm, fl);
            }
            route_free(ro);
            place_bias_ops.destroy(ps);
            cfg_free(cfg);
            replay_free(rp);
        }
        trace_free(t);
        trace_free(full);
        files++;
    }
    closedir(d);
    gsl_rng_free(rng);
    cr_assert_eq(files, 8, "all eight DeepSeek-V3 traces");
    cr_assert_eq(checked, 8 * LAYERS * 2);
}

Test(gate, zero_bias_routes_exactly_as_static) {
    trace_t *full;
    cr_assert_eq(trace_read(DS_DIR "/prefill_in1024.json", &full), MS_OK);
    int layers[2] = {5, 40};
    trace_t *t = sub_trace(full, layers, 2);
    gate_spec_t spec;
    cr_assert_eq(gate_spec_make(256, 8, 8, 4, 1, 0, "t", &spec), MS_OK);
    replay_t *a, *b;
    cr_assert_eq(replay_new(t, 8, 4, 64, 9, &a), MS_OK);
    cr_assert_eq(replay_new(t, 8, 4, 64, 9, &b), MS_OK);
    replay_set_gate(a, &spec);
    replay_set_gate(b, &spec);
    /* the default u: the bias is zero until the first observation */
    place_env_t env = {.n_layers = 2, .n_experts = 256, .n_devices = 4, .devices_per_node = 4,
                       .n_nodes = 1, .top_k = 8, .n_groups = 8, .topk_groups = 4, .gate = &spec,
                       .seed = 1};
    place_state_t *ps = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(place_bias_ops.init(&env, NULL, &ps, &lo), MS_OK);
    route_t *ro;
    cr_assert_eq(route_new(b, &spec, &place_bias_ops, ps, 9, 32, 1, &ro), MS_OK);
    const route_step_t *x = replay_step(a, 0), *y = replay_step(b, 0);
    cr_assert_not_null(x);
    cr_assert_not_null(y);
    size_t n = (size_t)2 * x->n_tokens * 8;
    cr_assert_eq(memcmp(x->expert, y->expert, n * sizeof *x->expert), 0);
    double ca[512], cb[512];
    replay_counts(a, 0, 1000, ca);
    route_counts(ro, 0, 0, 1000, cb);
    cr_assert_eq(memcmp(ca, cb, sizeof ca), 0, "count mode draws the same counts");
    /* and once the bias moves, the routing does too */
    double load[512];
    for (int i = 0; i < 512; i++) load[i] = i % 256 < 128 ? 100 : 1;
    place_obs_t o = {.step = 0, .expert_load = load};
    place_bias_ops.observe(ps, &o);
    const char *names[16];
    double vals[16];
    x = replay_step(a, 1);
    for (int i = 0; i < 30; i++) place_bias_ops.observe(ps, &o);
    y = replay_step(b, 1);
    cr_assert_neq(memcmp(x->expert, y->expert, n * sizeof *x->expert), 0);
    place_bias_ops.metrics(ps, names, vals, 16);
    cr_assert(vals[0] > 0, "deviation %g", vals[0]);
    route_free(ro);
    place_layout_free(lo);
    place_bias_ops.destroy(ps);
    replay_free(a);
    replay_free(b);
    trace_free(t);
    trace_free(full);
}

Test(gate, per_token_traces_give_each_token_its_own_experts) {
    trace_t *t;
    cr_assert_eq(trace_read(MX_CLEAN, &t), MS_OK);
    gate_spec_t spec;
    cr_assert_eq(gate_spec_make(8, 2, 1, 1, 1, 0, "t", &spec), MS_OK);
    replay_t *a, *b;
    cr_assert_eq(replay_new(t, 2, 2, 64, 1, &a), MS_OK);
    cr_assert_eq(replay_new(t, 2, 2, 64, 1, &b), MS_OK);
    place_env_t env = {.n_layers = t->n_layers, .n_experts = 8, .n_devices = 2,
                       .devices_per_node = 2, .n_nodes = 1, .top_k = 2, .n_groups = 1,
                       .topk_groups = 1, .gate = &spec, .seed = 1};
    place_state_t *ps = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(place_bias_ops.init(&env, NULL, &ps, &lo), MS_OK);
    route_t *ro;
    cr_assert_eq(route_new(b, &spec, &place_bias_ops, ps, 1, 32, 1, &ro), MS_OK);
    const route_step_t *x = replay_step(a, 3), *y = replay_step(b, 3);
    int L = t->n_layers, n = x->n_tokens, same = 0, pairs = 0, distinct = 0;
    for (int l = 0; l < L; l++) {
        unsigned char seen[64] = {0};
        for (int i = 0; i < n; i++) {
            const int16_t *u = x->expert + ((size_t)l * n + i) * 2, *v = y->expert + ((size_t)l * n + i) * 2;
            /* at zero bias, bias routing is the recording, token by token */
            same += (u[0] == v[0] && u[1] == v[1]) || (u[0] == v[1] && u[1] == v[0]);
            pairs++;
            int lo_e = u[0] < u[1] ? u[0] : u[1], hi_e = u[0] < u[1] ? u[1] : u[0];
            if (!seen[lo_e * 8 + hi_e]++) distinct++;
        }
    }
    cr_assert_eq(same, pairs, "%d of %d tokens routed as recorded", same, pairs);
    cr_assert(distinct > 3 * L, "%d distinct expert pairs over %d layers", distinct, L);
    route_free(ro);
    place_layout_free(lo);
    place_bias_ops.destroy(ps);
    replay_free(a);
    replay_free(b);
    trace_free(t);
}

Test(gate, node_limit_keeps_each_token_on_m_nodes_and_still_fits) {
    enum { E = 64, K = 8, NODES = 8, M = 4 };
    gate_spec_t spec;
    cr_assert_eq(gate_spec_make(E, K, 1, 1, NODES, M, "t", &spec), MS_OK);
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    float v[E];
    for (int t = 0; t < 2000; t++) {
        for (int e = 0; e < E; e++) v[e] = (float)gsl_rng_uniform(rng);
        int out[K];
        gate_select(&spec, v, out);
        unsigned char node[NODES] = {0};
        int nodes = 0;
        for (int j = 0; j < K; j++) {
            for (int i = 0; i < j; i++) cr_assert_neq(out[i], out[j]);
            if (!node[out[j] / (E / NODES)]++) nodes++;
        }
        cr_assert(nodes <= M, "token on %d nodes", nodes);
    }
    /* a skewed layer: the fit reproduces it under the node limit, to the
     * sampling noise of a batch of 4096 tokens (Monte Carlo fit, gate.c) */
    double c[E];
    for (int e = 0; e < E; e++) c[e] = 1 + (e * 37 % 11) * (e % 3 ? 1 : 4);
    float x[E];
    gate_fit_layer(&spec, c, x);
    double f[E];
    int n = 4096;
    gate_sample_freq(&spec, x, n, 77, f);
    double fl = sampling_floor(c, E, (unsigned)n * K, rng);
    cr_assert(l1(f, c, E) <= 1.5 * fl, "L1 %.4f, floor %.4f", l1(f, c, E), fl);
    gsl_rng_free(rng);
    /* a limit that cannot hold top-k is refused with the key to change */
    cr_assert_eq(gate_spec_make(60, 8, 8, 4, 1, 0, "x.ini", &spec), MS_ERR);
    cr_assert(strstr(ms_err_last(), "group_limit"), "%s", ms_err_last());
}

/* ---- the cache ---- */

static char tmpdir[64];

static void copy_trace(const char *from, char *to, size_t n) {
    strcpy(tmpdir, "/tmp/moesim_gate_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(to, n, "%s/t.json", tmpdir);
    char *buf;
    size_t len;
    cr_assert_eq(ms_read_file(from, &buf, &len), MS_OK);
    FILE *f = fopen(to, "wb");
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
    free(buf);
}

/* A small trace (two layers of 16 experts) written as SGLang JSON. */
static void small_trace(char *to, size_t n, int bump) {
    strcpy(tmpdir, "/tmp/moesim_gate_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(to, n, "%s/t.json", tmpdir);
    FILE *f = fopen(to, "w");
    fprintf(f, "{\"logical_count\": [");
    for (int l = 0; l < 2; l++) {
        fprintf(f, "%s[", l ? "," : "");
        for (int e = 0; e < 16; e++) fprintf(f, "%s%d", e ? "," : "", 1 + (e * 7 + l) % 9 + bump);
        fprintf(f, "]");
    }
    fprintf(f, "]}");
    fclose(f);
}

static gate_fit_t *fit_of(const char *path, int groups, trace_t **tp) {
    trace_t *t;
    cr_assert_eq(trace_read(path, &t), MS_OK, "%s", ms_err_last());
    gate_spec_t s;
    cr_assert_eq(gate_spec_make(16, 2, groups, 2, 1, 0, "t", &s), MS_OK);
    gate_fit_t *g;
    cr_assert_eq(gate_fit_trace(t, &s, &g), MS_OK);
    if (tp) *tp = t;
    else trace_free(t);
    return g;
}

static void rm_tree(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

Test(gate, fit_is_cached_and_refitted_when_stale_or_corrupt) {
    char p[256], cache[512];
    small_trace(p, sizeof p, 0);
    gate_fit_t *a = fit_of(p, 1, NULL), *b = fit_of(p, 1, NULL);
    cr_assert_eq(a->from_cache, 0);
    cr_assert_eq(b->from_cache, 1);
    size_t n = (size_t)2 * 16 * sizeof *a->logit;
    cr_assert_eq(memcmp(a->logit, b->logit, n), 0);
    /* other routing options: another key, its own fit */
    gate_fit_t *g = fit_of(p, 4, NULL);
    cr_assert_eq(g->from_cache, 0);
    gate_fit_free(g);
    /* a corrupt payload is detected and refitted to the same logits */
    trace_t *t;
    gate_fit_free(b);
    b = fit_of(p, 1, &t);
    gate_spec_t s;
    gate_spec_make(16, 2, 1, 2, 1, 0, "t", &s);
    gate_cache_path(t, &s, cache, sizeof cache);
    FILE *f = fopen(cache, "r+b");
    cr_assert_not_null(f, "%s", cache);
    fseek(f, -5, SEEK_END);
    fputc(0x5a, f);
    fclose(f);
    gate_fit_free(b);
    b = fit_of(p, 1, NULL);
    cr_assert_eq(b->from_cache, 0, "corrupt cache not detected");
    cr_assert_eq(memcmp(a->logit, b->logit, n), 0);
    gate_fit_free(b);
    /* a truncated file too */
    cr_assert_eq(truncate(cache, 40), 0);
    b = fit_of(p, 1, NULL);
    cr_assert_eq(b->from_cache, 0);
    gate_fit_free(b);
    /* the trace changed under the same name: stale, refitted */
    trace_free(t);
    char q[256];
    strcpy(q, p);
    char keep[64];
    strcpy(keep, tmpdir);
    small_trace(p, sizeof p, 3);
    cr_assert_eq(rename(p, q), 0);
    rm_tree();
    strcpy(tmpdir, keep);
    b = fit_of(q, 1, NULL);
    cr_assert_eq(b->from_cache, 0, "stale cache used");
    cr_assert_neq(memcmp(a->logit, b->logit, n), 0);
    gate_fit_free(b);
    gate_fit_free(a);
    rm_tree();
}

Test(gate, unwritable_folder_falls_back_to_the_user_cache) {
    char p[256], cache[512], user[128];
    copy_trace(DS_DIR "/decode_in1800out100.json", p, sizeof p);
    /* the cache path beside the trace is taken by a folder: writing fails */
    trace_t *full;
    cr_assert_eq(trace_read(p, &full), MS_OK);
    gate_spec_t s;
    gate_spec_make(256, 8, 1, 1, 1, 0, "t", &s);
    gate_cache_path(full, &s, cache, sizeof cache);
    cr_assert_eq(mkdir(cache, 0700), 0);
    snprintf(user, sizeof user, "%s/user", tmpdir);
    cr_assert_eq(mkdir(user, 0700), 0);
    setenv("XDG_CACHE_HOME", user, 1);
    /* two layers only, to keep it quick: the cache key is the counts */
    int layers[2] = {0, 1};
    trace_t *t = sub_trace(full, layers, 2);
    free(t->path);
    t->path = ms_strdup(p);
    gate_fit_t *a, *b;
    cr_assert_eq(gate_fit_trace(t, &s, &a), MS_OK);
    cr_assert_eq(gate_fit_trace(t, &s, &b), MS_OK);
    cr_assert_eq(a->from_cache, 0);
    cr_assert_eq(b->from_cache, 1, "the user cache was not used");
    gate_fit_free(a);
    gate_fit_free(b);
    /* without any writable place the fit still works, uncached */
    setenv("XDG_CACHE_HOME", "/proc/no-such-place", 1);
    unsetenv("HOME");
    trace_t *u = sub_trace(full, layers + 1, 1);
    free(u->path);
    u->path = ms_strdup(p);
    cr_assert_eq(gate_fit_trace(u, &s, &a), MS_OK);
    cr_assert_eq(gate_fit_trace(u, &s, &b), MS_OK);
    cr_assert_eq(b->from_cache, 0);
    gate_fit_free(a);
    gate_fit_free(b);
    trace_free(u);
    trace_free(t);
    trace_free(full);
    rm_tree();
}

/* The straightforward group-limited top-k: groups ranked by the sum of
 * their best two scores (ties to the lower group), then the top k of the
 * kept groups' experts (ties to the lower expert), all by insertion. */
static void group_select_ref(int E, int K, int G, int TG, const float *v, int *out) {
    float gsum[64];
    for (int g = 0; g < G; g++) {
        float b1 = -HUGE_VALF, b2 = -HUGE_VALF;
        for (int e = g * E / G; e < (g + 1) * E / G; e++) {
            if (v[e] > b1) {
                b2 = b1;
                b1 = v[e];
            } else if (v[e] > b2) {
                b2 = v[e];
            }
        }
        float s = 0;
        s += b1;
        s += b2;
        gsum[g] = s;
    }
    unsigned char keep[64] = {0};
    for (int j = 0; j < TG; j++) {
        int best = -1;
        for (int g = 0; g < G; g++)
            if (!keep[g] && (best < 0 || gsum[g] > gsum[best])) best = g;
        keep[best] = 1;
    }
    unsigned char used[1024] = {0};
    for (int j = 0; j < K; j++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (keep[e * G / E] && !used[e] && (best < 0 || v[e] > v[best])) best = e;
        used[best] = 1;
        out[j] = best;
    }
}

/* gate_select's group-limit path (the fast path of DeepSeek-V3 routing)
 * chooses exactly what the plain definition chooses, ties included:
 * scores are drawn from 16 levels so that equal scores and equal group
 * sums are frequent. */
Test(gate, group_limit_selects_as_the_plain_definition_ties_included) {
    enum { E = 256, K = 8, G = 8, TG = 4 };
    gate_spec_t spec;
    cr_assert_eq(gate_spec_make(E, K, G, TG, 1, 0, "t", &spec), MS_OK);
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    float v[E];
    int ties = 0;
    for (int t = 0; t < 3000; t++) {
        int coarse = t % 2;
        for (int e = 0; e < E; e++)
            v[e] = coarse ? (float)gsl_rng_uniform_int(rng, 16) / 16.0f : (float)gsl_rng_uniform(rng);
        int out[K], ref[K];
        gate_select(&spec, v, out);
        group_select_ref(E, K, G, TG, v, ref);
        for (int j = 0; j < K; j++) {
            cr_assert_eq(out[j], ref[j], "token %d, choice %d: %d, by definition %d", t, j, out[j],
                         ref[j]);
            ties += j && v[out[j]] == v[out[j - 1]];
        }
    }
    cr_assert(ties > 100, "only %d tied choices: the ties were not exercised", ties);
    gsl_rng_free(rng);
}
