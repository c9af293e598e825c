/* Tests of OmniPlacement (models/place_omni.c): layout properties on random
 * inputs, the gates, hand-worked packings with ties, the replica choice, the
 * re-plan timer and window, and a short run through the simulator. */
#include <criterion/criterion.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "place.h"
#include "place_omni.h"
#include "run.h"
#include "store.h"
#include "util.h"

extern const place_ops_t place_omni_ops;

static place_env_t env_of(int L, int E, int D, int dpn, int R) {
    return (place_env_t){.n_layers = L, .n_experts = E, .n_devices = D, .devices_per_node = dpn,
                         .n_nodes = (D + dpn - 1) / dpn, .redundant = R, .top_k = 2,
                         .n_groups = 1, .topk_groups = 1, .seed = 1};
}

/* Every layer of lo holds every expert, respects its slot count and never
 * puts two copies of an expert on one device; its device loads sum to the
 * layer's total load. */
static void check_layout(const place_layout_t *lo, const double *w, int max_spd, int max_copies) {
    int E = lo->n_experts, D = lo->n_devices;
    double *dl = ms_malloc((size_t)D * sizeof *dl);
    for (int l = 0; l < lo->n_layers; l++) {
        const place_layer_t *ly = &lo->layer[l];
        cr_assert(ly->slots_per_device >= 1 && ly->slots_per_device <= max_spd,
                  "layer %d: %d slots per device (max %d)", l, ly->slots_per_device, max_spd);
        cr_assert_eq(ly->n_slots, ly->slots_per_device * D);
        for (int e = 0; e < E; e++) {
            cr_assert(ly->replicas[e] >= 1, "layer %d expert %d has no replica", l, e);
            cr_assert(ly->replicas[e] <= (max_copies < D ? max_copies : D));
        }
        for (int d = 0; d < D; d++)
            for (int a = 0; a < ly->slots_per_device; a++)
                for (int b = a + 1; b < ly->slots_per_device; b++)
                    cr_assert_neq(ly->slot_expert[d * ly->slots_per_device + a],
                                  ly->slot_expert[d * ly->slots_per_device + b],
                                  "layer %d device %d holds expert %d twice", l, d,
                                  ly->slot_expert[d * ly->slots_per_device + a]);
        place_device_load(lo, l, w + (size_t)l * E, dl);
        double total = 0, sum = 0;
        for (int e = 0; e < E; e++) total += w[(size_t)l * E + e];
        for (int d = 0; d < D; d++) sum += dl[d];
        cr_assert(fabs(sum - total) <= 1e-9 * total, "layer %d: device loads %g vs %g", l, sum,
                  total);
    }
    free(dl);
}

Test(omni, random_layouts_keep_the_invariants) {
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 7);
    /* E, D, devices per host, redundant: E % D == 0 and E % D != 0 */
    const int shapes[][4] = {{16, 4, 2, 0}, {16, 4, 2, 8},  {32, 8, 4, 16}, {64, 16, 8, 32},
                             {32, 12, 4, 4}, {24, 16, 8, 8}, {8, 8, 8, 8},   {64, 8, 16, 24}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int E = shapes[si][0], D = shapes[si][1], dpn = shapes[si][2], R = shapes[si][3], L = 6;
        double *w = ms_malloc((size_t)L * E * sizeof *w);
        for (int i = 0; i < L * E; i++) /* heavy-tailed, with idle experts and ties */
            w[i] = gsl_rng_uniform(rng) < 0.1 ? 0 : floor(exp(2.0 * gsl_ran_ugaussian(rng)) * 20);
        place_env_t env = env_of(L, E, D, dpn, R);
        place_state_t *st = NULL;
        place_layout_t *lo = NULL;
        cr_assert_eq(place_omni_ops.init(&env, w, &st, &lo), MS_OK, "shape %zu", si);
        check_layout(lo, w, (E + R) / D, PLACE_OMNI_MAX_COPIES);
        /* The planner alone, on every budget, with a tight copy limit. */
        place_omni_cfg_t c;
        place_omni_defaults(&c, dpn);
        c.max_copies = 2;
        place_omni_ws_t *ws = place_omni_ws_new(E, D, (E + R) / D);
        int *se = ms_malloc((size_t)(E + R) * sizeof *se);
        for (int spd = (E + D - 1) / D; spd <= (E + R) / D; spd++) {
            double r;
            if (!place_omni_candidate(ws, &c, w, E, D, spd * D - E, se, &r)) continue;
            place_layout_t *one = place_layout_new(1, E, D, dpn);
            cr_assert_eq(place_layer_set(one, 0, spd, se), MS_OK);
            check_layout(one, w, spd, 2);
            place_layout_free(one);
        }
        free(se);
        place_omni_ws_free(ws);
        place_omni_ops.destroy(st);
        place_layout_free(lo);
        free(w);
    }
    gsl_rng_free(rng);
}

/* The contiguous baseline of E experts on D devices, no redundancy. */
static place_layout_t *contiguous(int L, int E, int D, int dpn) {
    place_layout_t *lo = place_layout_new(L, E, D, dpn);
    int *se = ms_malloc((size_t)E * sizeof *se);
    for (int s = 0; s < E; s++) se[s] = s;
    for (int l = 0; l < L; l++) place_layer_set(lo, l, E / D, se);
    free(se);
    return lo;
}

Test(omni, balanced_layers_are_left_alone) {
    int E = 32, D = 8, L = 4;
    double w[4 * 32];
    for (int i = 0; i < L * E; i++) w[i] = 100 + (i * 7919) % 9; /* PAR about 1.04 */
    place_layout_t *lo = contiguous(L, E, D, 8);
    place_omni_cfg_t c;
    place_omni_defaults(&c, 8);
    place_omni_ws_t *ws = place_omni_ws_new(E, D, E / D + 1);
    int se[64], spd;
    double rin;
    for (int l = 0; l < L; l++) {
        cr_assert_eq(place_omni_layer(ws, &c, w + l * E, E, D, &lo->layer[l], E / D + 1, se, &spd,
                                      &rin, NULL),
                     PLACE_OMNI_GATE_OK);
        cr_assert(rin < 1.1);
    }
    place_layout_t *out = NULL;
    cr_assert_eq(place_omni_plan(ws, &c, w, lo, E / D + 1, &out), 0);
    cr_assert_null(out);
    /* Through the strategy: the first layout is exactly the baseline's. */
    place_env_t env = env_of(L, E, D, 8, 0);
    place_state_t *st = NULL;
    place_layout_t *first = NULL;
    cr_assert_eq(place_omni_ops.init(&env, w, &st, &first), MS_OK);
    for (int l = 0; l < L; l++)
        cr_assert_arr_eq(first->layer[l].slot_expert, lo->layer[l].slot_expert, E * sizeof(int));
    place_omni_ops.destroy(st);
    place_layout_free(first);
    place_omni_ws_free(ws);
    place_layout_free(lo);
}

Test(omni, bad_data_is_left_alone) {
    /* Device loads 2000, 2, 0, 10: max/mean 3.98 passes the first gate,
     * max/min 2000 (min taken as 1) is above 300. */
    double w[8] = {1000, 1000, 1, 1, 0, 0, 5, 5};
    place_layout_t *lo = contiguous(1, 8, 4, 4);
    place_omni_cfg_t c;
    place_omni_defaults(&c, 4);
    place_omni_ws_t *ws = place_omni_ws_new(8, 4, 2);
    int se[8], spd;
    double rin;
    cr_assert_eq(place_omni_layer(ws, &c, w, 8, 4, &lo->layer[0], 2, se, &spd, &rin, NULL),
                 PLACE_OMNI_BAD_DATA);
    cr_assert(rin > 1.1);
    c.bad = 1e9; /* with the gate lifted the same layer is re-planned */
    cr_assert_eq(place_omni_layer(ws, &c, w, 8, 4, &lo->layer[0], 2, se, &spd, NULL, NULL),
                 PLACE_OMNI_CHANGED);
    place_omni_ws_free(ws);
    place_layout_free(lo);
}

Test(omni, hand_worked_packing_with_ties) {
    /* E = 6, D = 2, budget 2 (4 slots per device), at most 2 copies.
     * Copies: e0 (10) takes the first extra copy and is then at its limit;
     * e1 and e2 tie at 4 and the lower id, e1, takes the second.
     * Instances by weight desc, ties lower id:
     *   e0 5, e0 5, e2 4, e3 3, e4 3, e1 2, e1 2, e5 0
     * Packing (least loaded, ties lower device; never two e0 or two e1 on
     * one device):
     *   e0->d0 [5,0]  e0->d1 [5,5]  e2->d0 (tie) [9,5]  e3->d1 [9,8]
     *   e4->d1 [9,11] e1->d0 [11,11] e1->d1 (d0 has e1) [11,13]
     *   e5->d0 (d1 full) [11,13]
     * max/mean = 13 / 12. */
    double w[6] = {10, 4, 4, 3, 3, 0};
    place_omni_cfg_t c;
    place_omni_defaults(&c, 8);
    c.max_copies = 2;
    place_omni_ws_t *ws = place_omni_ws_new(6, 2, 4);
    int se[8], want[8] = {0, 2, 1, 5, 0, 3, 4, 1};
    double r;
    cr_assert_eq(place_omni_candidate(ws, &c, w, 6, 2, 2, se, &r), 1);
    cr_assert_arr_eq(se, want, sizeof want);
    cr_assert_float_eq(r, 13.0 / 12.0, 1e-12);

    /* Budget 0 of the same loads: e0 d0 [10,0], e1 (tie with e2, lower id)
     * d1 [10,4], e2 d1 [10,8], e3 d1 [10,11] (d1 full), e4 d0 [13,11],
     * e5 d0 [13,11]. */
    int want0[6] = {0, 4, 5, 1, 2, 3};
    cr_assert_eq(place_omni_candidate(ws, &c, w, 6, 2, 0, se, &r), 1);
    cr_assert_arr_eq(se, want0, sizeof want0);
    cr_assert_float_eq(r, 13.0 / 12.0, 1e-12);
    place_omni_ws_free(ws);

    /* The layer takes the lower budget when candidates tie (stable sort),
     * and only if it beats the current max/mean by the margin. */
    place_layout_t *lo = contiguous(1, 6, 2, 8);
    ws = place_omni_ws_new(6, 2, 4);
    int spd;
    double rin, rout;
    cr_assert_eq(place_omni_layer(ws, &c, w, 6, 2, &lo->layer[0], 4, se, &spd, &rin, &rout),
                 PLACE_OMNI_CHANGED);
    cr_assert_float_eq(rin, 18.0 / 12.0, 1e-12); /* contiguous: 18 | 6 */
    cr_assert_eq(spd, 3);
    cr_assert_arr_eq(se, want0, sizeof want0);
    place_omni_ws_free(ws);
    place_layout_free(lo);
}

Test(omni, candidates_that_cannot_spend_the_budget_are_skipped) {
    double w[4] = {8, 4, 2, 1};
    place_omni_cfg_t c;
    place_omni_defaults(&c, 8);
    c.max_copies = 1; /* no expert may get a second copy */
    place_omni_ws_t *ws = place_omni_ws_new(4, 2, 3);
    int se[6];
    double r;
    cr_assert_eq(place_omni_candidate(ws, &c, w, 4, 2, 0, se, &r), 1);
    cr_assert_eq(place_omni_candidate(ws, &c, w, 4, 2, 2, se, &r), 0);
    place_omni_ws_free(ws);
}

Test(omni, no_gain_keeps_the_layer) {
    /* Two experts, two devices, one slot each: the only candidate equals
     * the current placement (max/mean 1.2), not better by 0.05. */
    double w[2] = {12, 8};
    place_layout_t *lo = contiguous(1, 2, 2, 8);
    place_omni_cfg_t c;
    place_omni_defaults(&c, 8);
    place_omni_ws_t *ws = place_omni_ws_new(2, 2, 1);
    int se[2], spd;
    cr_assert_eq(place_omni_layer(ws, &c, w, 2, 2, &lo->layer[0], 1, se, &spd, NULL, NULL),
                 PLACE_OMNI_NO_GAIN);
    place_omni_ws_free(ws);
    place_layout_free(lo);
}

Test(omni, host_interleave) {
    /* Logical devices 0..3 carry e0..e3; with hosts of 2, logical i goes to
     * host i mod 2: physical order 0, 2, 1, 3. */
    double w[4] = {4, 3, 2, 1};
    place_omni_cfg_t c;
    place_omni_defaults(&c, 2);
    place_omni_ws_t *ws = place_omni_ws_new(4, 4, 1);
    int se[4], want[4] = {0, 2, 1, 3};
    double r;
    cr_assert_eq(place_omni_candidate(ws, &c, w, 4, 4, 0, se, &r), 1);
    cr_assert_arr_eq(se, want, sizeof want);
    /* 6 devices in hosts of 4 (the last host short): the interleave does
     * not fit and the logical order stands. */
    place_omni_ws_free(ws);
    ws = place_omni_ws_new(6, 6, 1);
    double w6[6] = {6, 5, 4, 3, 2, 1};
    int se6[6], id6[6] = {0, 1, 2, 3, 4, 5};
    c.devices_per_host = 4;
    cr_assert_eq(place_omni_candidate(ws, &c, w6, 6, 6, 0, se6, &r), 1);
    cr_assert_arr_eq(se6, id6, sizeof id6);
    place_omni_ws_free(ws);
}

Test(omni, replica_choice_own_then_host_then_remote) {
    place_layout_t *lo = place_layout_new(1, 2, 4, 2);
    int se[4] = {0, 1, 0, 1}; /* e0 on d0 and d2, e1 on d1 and d3 */
    cr_assert_eq(place_layer_set(lo, 0, 1, se), MS_OK);
    cr_assert_eq(place_omni_pick(lo, 0, 0, 0, 2), 0); /* own */
    cr_assert_eq(place_omni_pick(lo, 0, 0, 1, 2), 0); /* same host {0,1} */
    cr_assert_eq(place_omni_pick(lo, 0, 0, 3, 2), 2); /* same host {2,3} */
    cr_assert_eq(place_omni_pick(lo, 0, 0, 1, 4), 2); /* one host: 1 % 2 -> second */
    cr_assert_eq(place_omni_pick(lo, 0, 0, 1, 1), 2); /* all remote: 1 % 2 */
    cr_assert_eq(place_omni_pick(lo, 0, 1, 2, 1), 1); /* all remote: 2 % 2 */
    place_layout_free(lo);
}

Test(omni, replans_on_its_interval_over_the_window) {
    int L = 2, E = 16, D = 4;
    cfg_t *cfg = NULL;
    cr_assert_eq(cfg_parse_text("[strategy.omni]\ninterval_s = 1\ncollect_interval_s = 0.5\n"
                                "window = 2\n",
                                "test", &cfg),
                 MS_OK);
    place_env_t env = env_of(L, E, D, 2, 4);
    env.cfg = cfg;
    env.cfg_section = "strategy.omni";
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(place_omni_ops.init(&env, NULL, &st, &lo), MS_OK); /* no prior: baseline */
    double skew[2 * 16], flat[2 * 16];
    for (int i = 0; i < L * E; i++) {
        skew[i] = i % E < 4 ? 400 : 10; /* device 0's experts are hot */
        flat[i] = i % E == 0 || i % E == 4 ? 300 : 20; /* hot where the plan put 0 and 4 together */
    }
    place_obs_t o = {.now_ns = 500000000, .step = 0, .expert_load = skew};
    place_layout_t *nl = NULL;
    place_omni_ops.observe(st, &o);
    cr_assert_eq(place_omni_ops.replan(st, o.now_ns, lo, &nl), 0); /* before the interval */
    o.now_ns = 1000000000;
    place_omni_ops.observe(st, &o);
    cr_assert_eq(place_omni_ops.replan(st, o.now_ns, lo, &nl), 1);
    check_layout(nl, skew, (E + 4) / D, PLACE_OMNI_MAX_COPIES);
    place_layout_free(lo);
    lo = nl;
    /* Two collections with other hot experts push the first ones out of
     * the window: the re-plan is the planner's answer for the new loads
     * alone, which differs from its answer with the old ones still in. */
    o.expert_load = flat;
    o.now_ns = 1500000000;
    place_omni_ops.observe(st, &o);
    o.now_ns = 2000000000;
    place_omni_ops.observe(st, &o);
    place_omni_cfg_t c;
    place_omni_defaults(&c, 2);
    place_omni_ws_t *ws = place_omni_ws_new(E, D, (E + 4) / D);
    double mixed[2 * 16];
    for (int i = 0; i < L * E; i++) mixed[i] = 2 * skew[i] + 2 * flat[i];
    place_layout_t *want = NULL, *other = NULL;
    int n_flat = place_omni_plan(ws, &c, flat, lo, (E + 4) / D, &want);
    int n_mixed = place_omni_plan(ws, &c, mixed, lo, (E + 4) / D, &other);
    cr_assert(n_flat != n_mixed || (want && other && memcmp(want->layer[0].slot_expert,
                                                             other->layer[0].slot_expert,
                                                             want->layer[0].n_slots * sizeof(int))),
              "test data does not tell the windows apart");
    nl = NULL;
    cr_assert_eq(place_omni_ops.replan(st, o.now_ns, lo, &nl), n_flat > 0);
    for (int l = 0; nl && l < L; l++) {
        cr_assert_eq(nl->layer[l].n_slots, want->layer[l].n_slots);
        cr_assert_arr_eq(nl->layer[l].slot_expert, want->layer[l].slot_expert,
                         want->layer[l].n_slots * sizeof(int));
    }
    if (nl) {
        place_layout_free(lo);
        lo = nl;
    }
    place_layout_free(want);
    place_layout_free(other);
    place_omni_ws_free(ws);
    const char *names[8];
    double vals[8];
    int n = place_omni_ops.metrics(st, names, vals, 8);
    cr_assert(n >= 4);
    cr_assert_str_eq(names[1], "omni_replans");
    cr_assert_float_eq(vals[1], 2, 0);
    cr_assert_float_eq(vals[2], 1 + (n_flat > 0), 0);
    place_omni_ops.destroy(st);
    place_layout_free(lo);
    cfg_free(cfg);
}

Test(omni, bad_config_is_reported) {
    ms_err_quiet(1);
    cfg_t *cfg = NULL;
    cr_assert_eq(cfg_parse_text("[strategy.omni]\ngate = 0.5\n", "test.ini", &cfg), MS_OK);
    place_env_t env = env_of(1, 16, 4, 4, 0);
    env.cfg = cfg;
    env.cfg_section = "strategy.omni";
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(place_omni_ops.init(&env, NULL, &st, &lo), MS_ERR);
    cr_assert(strstr(ms_err_last(), "test.ini") && strstr(ms_err_last(), "gate"), "%s",
              ms_err_last());
    cfg_free(cfg);
    env = env_of(1, 16, 4, 4, 2); /* 18 slots on 4 devices */
    cr_assert_eq(place_omni_ops.init(&env, NULL, &st, &lo), MS_ERR);
    cr_assert(strstr(ms_err_last(), "multiple of the device count"), "%s", ms_err_last());
    ms_err_quiet(0);
}

/* A short run of every new strategy through the simulator: device loads of
 * each layer sum to the token-expert pairs routed. */
Test(omni, short_run_loads_sum_to_the_tokens) {
    cfg_t *cfg = NULL;
    cr_assert_eq(cfg_load("configs/demo.ini", &cfg), MS_OK);
    const char *sets[] = {"experiment.steps=2", "workload.tokens_per_device=4",
                          "placement.redundant=32", "placement.strategies=omni,bias",
                          "strategy.omni.interval_s=0.001"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        cr_assert_eq(cfg_set_assign(cfg, sets[i], "test", (int)i), MS_OK);
    run_spec_t spec;
    cr_assert_eq(run_spec_load(cfg, &spec), MS_OK);
    char db[] = "/tmp/moesim_omni_XXXXXX";
    int fd = mkstemp(db);
    cr_assert(fd >= 0);
    close(fd);
    store_t *st = NULL;
    cr_assert_eq(store_open(db, &st), MS_OK);
    for (int i = 0; i < spec.n_strategies; i++) {
        run_summary_t sum;
        cr_assert_eq(run_one(&spec, spec.strategies[i], st, &sum), MS_OK, "%s: %s",
                     spec.strategies[i], ms_err_last());
    }
    store_close(st);
    sqlite3 *q;
    cr_assert_eq(sqlite3_open(db, &q), SQLITE_OK);
    sqlite3_stmt *stmt;
    cr_assert_eq(sqlite3_prepare_v2(q,
                                    "SELECT run_id, layer, SUM(load) FROM device_loads "
                                    "GROUP BY run_id, layer",
                                    -1, &stmt, NULL),
                 SQLITE_OK);
    int rows = 0;
    double want = 2.0 * 4 * spec.cluster.n_devices * spec.model.top_k;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        cr_assert_float_eq(sqlite3_column_double(stmt, 2), want, 1e-6);
        rows++;
    }
    cr_assert_eq(rows, 2 * 58);
    sqlite3_finalize(stmt);
    /* The interval set under [strategy.omni] reached the strategy: it
     * re-planned after each of the two steps. */
    cr_assert_eq(sqlite3_prepare_v2(q, "SELECT value FROM summary WHERE metric = 'omni_replans'",
                                    -1, &stmt, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(stmt), SQLITE_ROW);
    cr_assert_float_eq(sqlite3_column_double(stmt, 0), 2, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(q);
    unlink(db);
    cfg_free(cfg);
}
