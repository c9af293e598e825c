/* Tests of the capacity-factor baseline (models/place_capacity.c): a case
 * worked by hand (drop and re-route), then replayed DeepSeek-V3 routing
 * where exactly the pairs above each device's cap are dropped, and
 * re-routing conserves every pair. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "gate.h"
#include "place.h"
#include "replay.h"
#include "route.h"
#include "trace.h"
#include "util.h"

extern const place_ops_t place_capacity_ops;

static void setup(void) { ms_err_quiet(1); }
TestSuite(capacity, .init = setup);

static place_state_t *cap_new(const char *ini, int L, int E, int D, int k, cfg_t **cfg) {
    cr_assert_eq(cfg_parse_text(ini, "t.ini", cfg), MS_OK);
    place_env_t env = {.n_layers = L, .n_experts = E, .n_devices = D, .devices_per_node = D,
                       .n_nodes = 1, .top_k = k, .n_groups = 1, .topk_groups = 1, .cfg = *cfg,
                       .cfg_section = "strategy.capacity", .seed = 1};
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(place_capacity_ops.init(&env, NULL, &st, &lo), MS_OK, "%s", ms_err_last());
    place_layout_free(lo);
    return st;
}

static double metric(place_state_t *st, const char *name) {
    const char *names[16];
    double v[16];
    int n = place_capacity_ops.metrics(st, names, v, 16);
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return v[i];
    cr_assert_fail("no metric %s", name);
    return NAN;
}

/* 4 experts on 2 devices (0,1 | 2,3), top-2, 3 tokens, C = 1: a device
 * takes 1 x 3 x 2 / 2 = 3 pairs. Token 0 wants {0,1} (device 0: 2 pairs),
 * token 1 {0,1} (expert 0 is the third pair of device 0; expert 1 would be
 * the fourth), token 2 {2,3} (device 1: 2 pairs). */
static const float SC[3][4] = {{0.9f, 0.8f, 0.2f, 0.1f},
                               {0.9f, 0.8f, 0.2f, 0.1f},
                               {0.1f, 0.2f, 0.9f, 0.8f}};
static const int SRC[3] = {0, 0, 1};

Test(capacity, drops_exactly_the_pair_above_the_cap_by_hand) {
    cfg_t *cfg;
    place_state_t *st = cap_new("[strategy.capacity]\nfactor = 1\n", 1, 4, 2, 2, &cfg);
    place_capacity_ops.begin_step(st, 0, 3, SRC);
    int out[3][2];
    for (int t = 0; t < 3; t++) place_capacity_ops.route(st, 0, SC[t], out[t]);
    int want[3][2] = {{0, 1}, {0, -1}, {2, 3}};
    cr_assert_arr_eq(out, want, sizeof want);
    cr_assert_float_eq(metric(st, "capacity_dropped_pairs"), 1, 0);
    cr_assert_float_eq(metric(st, "capacity_rerouted_pairs"), 0, 0);
    cr_assert_float_eq(metric(st, "capacity_pairs"), 6, 0);
    cr_assert_float_eq(metric(st, "capacity_tokens_dropped_share"), 1.0 / 3, 1e-12);
    /* a new step starts with empty devices */
    place_capacity_ops.begin_step(st, 1, 3, SRC);
    place_capacity_ops.route(st, 0, SC[0], out[0]);
    cr_assert_eq(out[0][1], 1);
    place_capacity_ops.destroy(st);
    cfg_free(cfg);
}

Test(capacity, reroutes_to_the_next_best_expert_with_room_by_hand) {
    cfg_t *cfg;
    place_state_t *st =
        cap_new("[strategy.capacity]\nfactor = 1\nreroute = true\n", 1, 4, 2, 2, &cfg);
    place_capacity_ops.begin_step(st, 0, 3, SRC);
    int out[3][2];
    for (int t = 0; t < 3; t++) place_capacity_ops.route(st, 0, SC[t], out[t]);
    /* token 1's expert 1 goes to expert 2 (0.2 > 0.1, device 1 has room);
     * token 2 then fills device 1 to its cap of 3 */
    int want[3][2] = {{0, 1}, {0, 2}, {2, 3}};
    cr_assert_arr_eq(out, want, sizeof want);
    cr_assert_float_eq(metric(st, "capacity_dropped_pairs"), 0, 0);
    cr_assert_float_eq(metric(st, "capacity_rerouted_pairs"), 1, 0);
    place_capacity_ops.destroy(st);
    cfg_free(cfg);
}

/* Two layers of a DeepSeek-V3 trace on 8 devices, 512 tokens, top-8. */
static trace_t *ds_two_layers(void) {
    trace_t *full;
    cr_assert_eq(trace_read("traces/data/deepseek-v3-sglang/decode_in1000out1000.json", &full),
                 MS_OK);
    trace_t *t = ms_calloc(1, sizeof *t);
    t->path = ms_strdup("two-layers");
    t->format = "synthetic";
    t->kind = TRACE_COUNTS;
    t->n_layers = 2;
    t->n_experts = 256;
    t->n_steps = 1;
    t->counts = ms_malloc(2 * 256 * sizeof *t->counts);
    trace_layer_total(full, 10, t->counts);
    trace_layer_total(full, 30, t->counts + 256);
    trace_free(full);
    return t;
}

static void replayed(int reroute) {
    enum { D = 8, TPD = 64, K = 8, E = 256 };
    trace_t *t = ds_two_layers();
    gate_spec_t spec;
    cr_assert_eq(gate_spec_make(E, K, 8, 4, 1, 0, "t", &spec), MS_OK);
    replay_t *plain, *capped;
    cr_assert_eq(replay_new(t, K, D, TPD, 4, &plain), MS_OK);
    cr_assert_eq(replay_new(t, K, D, TPD, 4, &capped), MS_OK);
    replay_set_gate(plain, &spec);
    replay_set_gate(capped, &spec);
    cfg_t *cfg;
    cr_assert_eq(cfg_parse_text(reroute ? "[strategy.capacity]\nfactor = 1.1\nreroute = true\n"
                                        : "[strategy.capacity]\nfactor = 1.1\n",
                                "t.ini", &cfg),
                 MS_OK);
    place_env_t env = {.n_layers = 2, .n_experts = E, .n_devices = D, .devices_per_node = D,
                       .n_nodes = 1, .top_k = K, .n_groups = 8, .topk_groups = 4, .gate = &spec,
                       .cfg = cfg, .cfg_section = "strategy.capacity", .seed = 1};
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(place_capacity_ops.init(&env, NULL, &st, &lo), MS_OK, "%s", ms_err_last());
    route_t *ro;
    cr_assert_eq(route_new(capped, &spec, &place_capacity_ops, st, 4, 32, 1, &ro), MS_OK);
    const route_step_t *a = replay_step(plain, 0), *b = replay_step(capped, 0);
    int n = a->n_tokens;
    double cap = 1.1 * n * K / D, dropped = 0, total_over = 0;
    for (int l = 0; l < 2; l++) {
        int demand[D] = {0}, served[D] = {0};
        for (int i = 0; i < n * K; i++) {
            int e = a->expert[(size_t)l * n * K + i], f = b->expert[(size_t)l * n * K + i];
            demand[e / (E / D)]++;
            if (f >= 0) served[f / (E / D)]++;
            else dropped++;
        }
        for (int d = 0; d < D; d++) {
            cr_assert(served[d] <= cap, "layer %d device %d serves %d > cap %g", l, d, served[d], cap);
            double over = demand[d] > floor(cap) ? demand[d] - floor(cap) : 0;
            total_over += over;
            /* without re-routing a device serves what it was asked, up to the cap */
            if (!reroute) cr_assert_eq(served[d], demand[d] - (int)over, "layer %d device %d", l, d);
        }
    }
    cr_assert(total_over > 0, "the trace's hot devices exceed a cap of %g", cap);
    if (reroute) { /* every pair still served, to k distinct experts: conservation */
        cr_assert_eq(dropped, 0);
        for (int i = 0; i < 2 * n; i++)
            for (int j = 0; j < K; j++)
                for (int m = 0; m < j; m++)
                    cr_assert_neq(b->expert[(size_t)i * K + j], b->expert[(size_t)i * K + m]);
        /* a moved pair can push another device over its cap in turn */
        cr_assert(metric(st, "capacity_rerouted_pairs") >= total_over);
        cr_assert_float_eq(metric(st, "capacity_dropped_pairs"), 0, 0);
    } else {
        cr_assert_float_eq(dropped, total_over, 0, "dropped %g, above the cap %g", dropped, total_over);
        cr_assert_float_eq(metric(st, "capacity_dropped_pairs"), dropped, 0);
    }
    route_free(ro);
    place_layout_free(lo);
    place_capacity_ops.destroy(st);
    cfg_free(cfg);
    replay_free(plain);
    replay_free(capped);
    trace_free(t);
}

Test(capacity, replayed_routing_drops_exactly_the_pairs_above_each_cap) { replayed(0); }

Test(capacity, rerouting_conserves_every_pair) { replayed(1); }
