/* EPLB: the README vector, reference vectors (tests/ref/eplb_vectors.py),
 * structural properties on random inputs, errors, and the strategy's
 * sliding-window re-planning. */
#include <criterion/criterion.h>
#include <gsl/gsl_rng.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd.h"
#include "place.h"
#include "place_eplb.h"
#include "ref/eplb_vectors.h"
#include "trace.h"
#include "util.h"

Test(eplb, readme_vector) {
    const double w[2][12] = {{90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
                             {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}};
    const int want_p[2][16] = {{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1},
                               {7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}};
    const int want_c[2][12] = {{1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1},
                               {1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1}};
    const double want_load[8] = {121.5, 86.5, 125, 113, 147.5, 131.5, 156, 152};
    int p[2][16], c[2][12];
    cr_assert_eq(place_eplb(&w[0][0], 2, 12, 16, 4, 2, 8, &p[0][0], &c[0][0]), MS_OK);
    for (int l = 0; l < 2; l++) {
        for (int s = 0; s < 16; s++)
            cr_expect_eq(p[l][s], want_p[l][s], "layer %d slot %d: %d, want %d", l, s, p[l][s],
                         want_p[l][s]);
        for (int e = 0; e < 12; e++) cr_expect_eq(c[l][e], want_c[l][e], "layer %d expert %d", l, e);
    }
    place_layout_t *lo = place_layout_new(2, 12, 8, 4);
    cr_assert_eq(place_layer_set(lo, 0, 2, p[0]), MS_OK);
    double load[8];
    place_device_load(lo, 0, w[0], load);
    for (int d = 0; d < 8; d++)
        cr_expect_float_eq(load[d], want_load[d], 1e-9, "GPU %d: %g, want %g", d, load[d],
                           want_load[d]);
    place_layout_free(lo);
}

/* Random integer loads with many ties (0..5 and the like), hierarchical and
 * global shapes, no redundancy, identity packing, a zero layer, floats. */
Test(eplb, reference_vectors) {
    for (size_t i = 0; i < sizeof eplbv_cases / sizeof *eplbv_cases; i++) {
        const eplbv_case_t *k = &eplbv_cases[i];
        int *p = malloc(sizeof(int) * k->L * k->P), *c = malloc(sizeof(int) * k->L * k->E);
        cr_assert_eq(place_eplb(k->w, k->L, k->E, k->P, k->groups, k->nodes, k->gpus, p, c), MS_OK,
                     "%s", k->name);
        int bad = -1;
        for (int s = 0; s < k->L * k->P && bad < 0; s++)
            if (p[s] != k->phy2log[s]) bad = s;
        cr_expect_eq(bad, -1, "%s: phy2log differs first at layer %d slot %d", k->name,
                     bad / k->P, bad % k->P);
        cr_expect_eq(memcmp(c, k->logcnt, sizeof(int) * k->L * k->E), 0, "%s: logcnt differs",
                     k->name);
        free(p);
        free(c);
    }
}

/* The 58-layer DeepSeek-V3 statistics at EP32 (hierarchical) and EP144
 * (global), checked by digest. */
Test(eplb, reference_traces) {
    for (size_t i = 0; i < sizeof eplbv_traces / sizeof *eplbv_traces; i++) {
        const eplbv_trace_t *k = &eplbv_traces[i];
        char path[512];
        snprintf(path, sizeof path, "traces/data/deepseek-v3-sglang/%s", k->file);
        trace_t *t;
        cr_assert_eq(trace_read(path, &t), MS_OK, "%s", path);
        int L = t->n_layers, E = t->n_experts;
        double *w = malloc(sizeof(double) * L * E);
        for (int l = 0; l < L; l++) trace_layer_total(t, l, w + (size_t)l * E);
        int n = L * k->P + L * E;
        int *out = malloc(sizeof(int) * n);
        cr_assert_eq(place_eplb(w, L, E, k->P, k->groups, k->nodes, k->gpus, out, out + L * k->P),
                     MS_OK);
        uint64_t d = ms_hash64(out, sizeof(int) * n);
        cr_expect_eq(d, k->digest, "%s: digest %016llx, want %016llx", k->name,
                     (unsigned long long)d, (unsigned long long)k->digest);
        free(out);
        free(w);
        trace_free(t);
    }
}

/* Structure every EPLB output must have, on random inputs. */
static void check_structure(const double *w, int L, int E, int P, int G, int N, int GP) {
    int *p = malloc(sizeof(int) * L * P), *c = malloc(sizeof(int) * L * E);
    int *seen = malloc(sizeof(int) * E);
    cr_assert_eq(place_eplb(w, L, E, P, G, N, GP, p, c), MS_OK);
    int hier = G % N == 0;
    for (int l = 0; l < L; l++) {
        memset(seen, 0, sizeof(int) * E);
        int total = 0;
        for (int s = 0; s < P; s++) {
            int e = p[l * P + s];
            cr_assert(e >= 0 && e < E);
            seen[e]++;
            /* hierarchical: a node's slots hold whole groups of its own */
            if (hier) {
                int node = s / (P / N), gnode = -1, g = e / (E / G);
                for (int s2 = 0; s2 < P; s2++)
                    if (p[l * P + s2] / (E / G) == g) {
                        gnode = s2 / (P / N);
                        break;
                    }
                cr_expect_eq(node, gnode, "group %d spans nodes", g);
            }
        }
        for (int e = 0; e < E; e++) {
            cr_expect_geq(seen[e], 1, "expert %d has no replica", e);
            cr_expect_eq(seen[e], c[l * E + e], "logcnt of expert %d", e);
            total += c[l * E + e];
        }
        cr_expect_eq(total, P);
    }
    free(seen);
    free(p);
    free(c);
}

Test(eplb, random_structure) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 7);
    const int shapes[][6] = {{16, 24, 4, 2, 8}, {64, 72, 8, 4, 8},  {64, 80, 8, 3, 16},
                             {32, 32, 4, 4, 32}, {256, 288, 8, 4, 32}, {256, 288, 8, 18, 144}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        int E = shapes[k][0], P = shapes[k][1], G = shapes[k][2], N = shapes[k][3];
        int GP = shapes[k][4], L = 3;
        double *w = malloc(sizeof(double) * L * E);
        for (int i = 0; i < L * E; i++) w[i] = (double)gsl_rng_uniform_int(r, 1000);
        check_structure(w, L, E, P, G, N, GP);
        free(w);
    }
    gsl_rng_free(r);
}

/* groups % nodes != 0 is the same as groups = nodes = 1. */
Test(eplb, global_policy_is_one_group_one_node) {
    double w[2 * 24];
    for (int i = 0; i < 48; i++) w[i] = (i * 7919) % 13;
    int a[2 * 36], b[2 * 36], ca[48], cb[48];
    cr_assert_eq(place_eplb(w, 2, 24, 36, 4, 3, 6, a, ca), MS_OK);
    cr_assert_eq(place_eplb(w, 2, 24, 36, 1, 1, 6, b, cb), MS_OK);
    cr_expect_eq(memcmp(a, b, sizeof a), 0);
    cr_expect_eq(memcmp(ca, cb, sizeof ca), 0);
}

Test(eplb, bad_inputs) {
    ms_err_quiet(1);
    double w[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    int p[32], c[12];
    cr_expect_eq(place_eplb(w, 1, 12, 18, 4, 2, 8, p, c), MS_ERR);
    cr_expect(strstr(ms_err_last(), "do not divide over 8 GPUs"), "%s", ms_err_last());
    cr_expect_eq(place_eplb(w, 1, 12, 8, 4, 2, 8, p, c), MS_ERR);
    cr_expect(strstr(ms_err_last(), "cannot hold 12 experts"), "%s", ms_err_last());
    cr_expect_eq(place_eplb(w, 1, 12, 16, 8, 2, 8, p, c), MS_ERR);
    cr_expect(strstr(ms_err_last(), "into 8 groups"), "%s", ms_err_last());
    cr_expect_eq(place_eplb(w, 1, 12, 16, 4, 4, 6, p, c), MS_ERR);
    cr_expect(strstr(ms_err_last(), "6 GPUs do not divide over 4 nodes") ||
                  strstr(ms_err_last(), "do not divide over 6 GPUs"), "%s", ms_err_last());
    w[3] = -1;
    cr_expect_eq(place_eplb(w, 1, 12, 16, 4, 2, 8, p, c), MS_ERR);
    cr_expect(strstr(ms_err_last(), "expert 3 weight -1"), "%s", ms_err_last());
    w[3] = 1e300;
    cr_expect_eq(place_eplb(w, 1, 12, 16, 4, 2, 8, p, c), MS_ERR);
    ms_err_quiet(0);
}

/* ---- the strategy ---------------------------------------------------- */

static place_env_t env_for(cfg_t *c, int L, int E, int D, int N, int R, int G) {
    place_env_t env = {.n_layers = L, .n_experts = E, .n_devices = D, .devices_per_node = D / N,
                       .n_nodes = N, .redundant = R, .top_k = 2, .n_groups = G,
                       .topk_groups = 1, .cfg = c, .cfg_section = "strategy.eplb", .seed = 1};
    return env;
}

static cfg_t *cfg_of(const char *text) {
    cfg_t *c;
    cr_assert_eq(cfg_parse_text(text, "test.ini", &c), MS_OK);
    return c;
}

Test(eplb, strategy_init_matches_algorithm) {
    const place_ops_t *ops = place_find("eplb");
    cr_assert_not_null(ops);
    double w[2 * 12] = {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86,
                        20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27};
    cfg_t *c = cfg_new();
    place_env_t env = env_for(c, 2, 12, 8, 2, 4, 4);
    place_state_t *st;
    place_layout_t *lo;
    cr_assert_eq(ops->init(&env, w, &st, &lo), MS_OK);
    int p[32], cnt[24];
    cr_assert_eq(place_eplb(w, 2, 12, 16, 4, 2, 8, p, cnt), MS_OK);
    for (int l = 0; l < 2; l++) {
        cr_expect_eq(lo->layer[l].slots_per_device, 2);
        cr_expect_eq(memcmp(lo->layer[l].slot_expert, p + 16 * l, sizeof(int) * 16), 0);
        cr_expect_eq(memcmp(lo->layer[l].replicas, cnt + 12 * l, sizeof(int) * 12), 0);
    }
    cr_expect_eq(cfg_check_unused(c), MS_OK);
    place_layout_free(lo);
    ops->destroy(st);
    cfg_free(c);
}

Test(eplb, strategy_config_errors) {
    const place_ops_t *ops = place_find("eplb");
    double w[12] = {0};
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    ms_err_quiet(1);
    cfg_t *c = cfg_of("[strategy.eplb]\npolicy = best\n");
    place_env_t env = env_for(c, 1, 12, 8, 2, 4, 4);
    cr_expect_eq(ops->init(&env, w, &st, &lo), MS_ERR);
    cr_expect(strstr(ms_err_last(), "test.ini:2") && strstr(ms_err_last(), "auto, hierarchical"),
              "%s", ms_err_last());
    cfg_free(c);
    c = cfg_of("[strategy.eplb]\npolicy = hierarchical\ngroups = 3\n");
    env = env_for(c, 1, 12, 8, 2, 4, 4);
    cr_expect_eq(ops->init(&env, w, &st, &lo), MS_ERR);
    cr_expect(strstr(ms_err_last(), "multiple of nodes"), "%s", ms_err_last());
    cfg_free(c);
    c = cfg_new();
    env = env_for(c, 1, 12, 8, 2, 3, 4);
    cr_expect_eq(ops->init(&env, w, &st, &lo), MS_ERR);
    cr_expect(strstr(ms_err_last(), "15 slots do not divide over 8 devices"), "%s", ms_err_last());
    cfg_free(c);
    c = cfg_of("[strategy.eplb]\nwindow_steps = 0\n");
    env = env_for(c, 1, 12, 8, 2, 4, 4);
    cr_expect_eq(ops->init(&env, w, &st, &lo), MS_ERR);
    cfg_free(c);
    ms_err_quiet(0);
}

/* One step of loads: expert `hot` gets 100 tokens, every other 1. */
static void feed(const place_ops_t *ops, place_state_t *st, int step, int E, int hot,
                 double *load) {
    for (int e = 0; e < E; e++) load[e] = e == hot ? 100 : 1;
    place_obs_t obs = {.now_ns = step, .step = step, .expert_load = load};
    ops->observe(st, &obs);
}

/* window 3, interval 2: re-plans after steps 2, 4, 6 ... from exactly the
 * last 3 steps, and reports no change when the layout stands. */
Test(eplb, strategy_sliding_window) {
    const place_ops_t *ops = place_find("eplb");
    enum { E = 8, D = 4, R = 4, P = E + R };
    cfg_t *c = cfg_of("[strategy.eplb]\nwindow_steps = 3\ninterval_steps = 2\n");
    place_env_t env = env_for(c, 1, E, D, 1, R, 1);
    place_state_t *st;
    place_layout_t *lo, *nl = NULL;
    double prior[E] = {0}, load[E];
    cr_assert_eq(ops->init(&env, prior, &st, &lo), MS_OK);
    /* steps 0..5: hot experts 0, 0, 5, 5, 5, 5 */
    const int hot[6] = {0, 0, 5, 5, 5, 5};
    for (int s = 0; s < 6; s++) {
        feed(ops, st, s, E, hot[s], load);
        int w = ops->replan(st, s, lo, &nl);
        if (s % 2 == 0) {
            cr_expect_eq(w, 0, "step %d: re-planned off the interval", s);
            continue;
        }
        /* the window: the last 3 steps */
        double sum[E] = {0};
        for (int k = s - 2; k <= s; k++)
            if (k >= 0)
                for (int e = 0; e < E; e++) sum[e] += e == hot[k] ? 100 : 1;
        int p[P], cnt[E];
        cr_assert_eq(place_eplb(sum, 1, E, P, 1, 1, D, p, cnt), MS_OK);
        int same = !memcmp(p, lo->layer[0].slot_expert, sizeof p);
        cr_expect_eq(w, same ? 0 : 1, "step %d", s);
        if (w == 1) {
            cr_expect_eq(memcmp(p, nl->layer[0].slot_expert, sizeof p), 0, "step %d layout", s);
            place_layout_free(lo);
            lo = nl;
        }
    }
    /* After step 5 the window (steps 3..5) saw only expert 5 hot. */
    cr_expect_gt(lo->layer[0].replicas[5], 1);
    cr_expect_eq(lo->layer[0].replicas[0], 1);
    const char *names[4];
    double vals[4];
    cr_expect_eq(ops->metrics(st, names, vals, 4), 1);
    cr_expect_str_eq(names[0], "eplb_replans");
    cr_expect_geq(vals[0], 2);
    place_layout_free(lo);
    ops->destroy(st);
    cfg_free(c);
}

Test(eplb, strategy_interval_zero_never_replans) {
    const place_ops_t *ops = place_find("eplb");
    cfg_t *c = cfg_of("[strategy.eplb]\ninterval_steps = 0\n");
    place_env_t env = env_for(c, 1, 8, 4, 1, 4, 1);
    place_state_t *st;
    place_layout_t *lo, *nl = NULL;
    double prior[8] = {1, 1, 1, 1, 1, 1, 1, 1}, load[8];
    cr_assert_eq(ops->init(&env, prior, &st, &lo), MS_OK);
    for (int s = 0; s < 5; s++) {
        feed(ops, st, s, 8, 3, load);
        cr_expect_eq(ops->replan(st, s, lo, &nl), 0);
    }
    place_layout_free(lo);
    ops->destroy(st);
    cfg_free(c);
}

/* `moesim run` lets strategies read their [strategy.<name>] keys before it
 * calls a key unknown, and eplb re-plans inside the run loop. */
Test(eplb, run_reads_strategy_keys) {
    char dir[] = "/tmp/moesim-eplb-XXXXXX", db[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/r.db", dir);
    char *ok[] = {"run", "configs/demo.ini", "--strategy", "eplb", "--db", db,
                  "--set", "experiment.steps=4", "--set", "placement.redundant=32",
                  "--set", "strategy.eplb.interval_steps=2", "--set", "strategy.eplb.window_steps=2",
                  NULL};
    cr_assert_eq(cmd_run(14, ok), 0);
    sqlite3 *h;
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(h, "SELECT value FROM summary WHERE metric = 'eplb_replans'",
                                    -1, &q, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_expect_geq(sqlite3_column_double(q, 0), 1);
    sqlite3_finalize(q);
    sqlite3_close(h);
    ms_err_quiet(1);
    char *typo[] = {"run", "configs/demo.ini", "--strategy", "eplb", "--db", db,
                    "--set", "placement.redundant=32", "--set", "strategy.eplb.intervl_steps=2",
                    NULL};
    cr_expect_neq(cmd_run(10, typo), 0);
    cr_expect(strstr(ms_err_last(), "unknown key [strategy.eplb] intervl_steps"), "%s",
              ms_err_last());
    ms_err_quiet(0);
    unlink(db);
    rmdir(dir);
}
