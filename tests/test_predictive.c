/* Tests of the predictive strategy (models/place_predictive.c): its layouts
 * keep the invariants, each of its ideas does what it says and switches off,
 * bad parameters are refused, re-planning follows a shifted workload, and
 * on the DeepSeek-V3 traces its out-of-sample PAR beats EPLB's and
 * OmniPlacement's (a pair, and the mean over every ordered pair). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "place.h"
#include "place_eplb.h"
#include "trace.h"
#include "util.h"

#define DS "traces/data/deepseek-v3-sglang/"

static place_env_t env_of(int L, int E, int D, int dpn, int R, int G, cfg_t *cfg) {
    return (place_env_t){.n_layers = L, .n_experts = E, .n_devices = D, .devices_per_node = dpn,
                         .n_nodes = D / dpn, .redundant = R, .top_k = 8, .n_groups = G,
                         .topk_groups = 1, .cfg = cfg, .seed = 1};
}

static cfg_t *cfg_of(const char *ini) {
    cfg_t *c = NULL;
    cr_assert_eq(cfg_parse_text(ini, "test.ini", &c), MS_OK);
    return c;
}

static place_layout_t *plan(const char *strategy, const place_env_t *env, const double *w) {
    const place_ops_t *ops = place_find(strategy);
    cr_assert(ops, "%s registered", strategy);
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(ops->init(env, w, &st, &lo), MS_OK, "%s: %s", strategy, ms_err_last());
    if (ops->destroy) ops->destroy(st);
    return lo;
}

/* Every expert placed, the slot count kept, no expert twice on a device. */
static void check_layout(const place_layout_t *lo, int spd) {
    for (int l = 0; l < lo->n_layers; l++) {
        const place_layer_t *ly = &lo->layer[l];
        cr_assert_eq(ly->slots_per_device, spd);
        for (int e = 0; e < lo->n_experts; e++) cr_assert(ly->replicas[e] >= 1);
        for (int d = 0; d < lo->n_devices; d++)
            for (int a = 0; a < spd; a++)
                for (int b = a + 1; b < spd; b++)
                    cr_assert_neq(ly->slot_expert[d * spd + a], ly->slot_expert[d * spd + b],
                                  "layer %d device %d holds an expert twice", l, d);
    }
}

/* A heavy-tailed layer set from a fixed recurrence (no library RNG, so the
 * figures are the same everywhere). */
static double *skewed(int L, int E, unsigned seed) {
    double *w = ms_malloc((size_t)L * E * sizeof *w);
    unsigned x = seed;
    for (int i = 0; i < L * E; i++) {
        x = x * 1103515245u + 12345u;
        double u = ((x >> 8) & 0xffff) / 65536.0;
        w[i] = floor(1000 * exp(3 * u * u));
    }
    return w;
}

Test(predictive, layouts_keep_the_invariants_and_are_deterministic) {
    const int shapes[][4] = {{64, 8, 4, 16}, {64, 16, 8, 0}, {32, 12, 4, 4}, {256, 144, 8, 32}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        int E = shapes[k][0], D = shapes[k][1], dpn = shapes[k][2], R = shapes[k][3], L = 4;
        double *w = skewed(L, E, (unsigned)k + 1);
        place_env_t env = env_of(L, E, D, dpn, R, 8, NULL);
        place_layout_t *a = plan("predictive", &env, w), *b = plan("predictive", &env, w);
        check_layout(a, (E + R) / D);
        for (int l = 0; l < L; l++)
            cr_assert_arr_eq(a->layer[l].slot_expert, b->layer[l].slot_expert,
                             (size_t)a->layer[l].n_slots * sizeof(int));
        place_layout_free(a);
        place_layout_free(b);
        /* no prior: a valid layout too */
        a = plan("predictive", &env, NULL);
        check_layout(a, (E + R) / D);
        place_layout_free(a);
        free(w);
    }
}

/* With shrinking off, the replica counts are EPLB's (global policy) on the
 * observed loads; with shrink = 1 the forecast is uniform and so are they. */
Test(predictive, replica_counts_come_from_eplb_on_the_forecast) {
    int L = 3, E = 64, D = 16, R = 32, P = E + R;
    double *w = skewed(L, E, 5);
    int *phy = ms_malloc((size_t)L * P * sizeof *phy);
    int *cnt = ms_malloc((size_t)L * E * sizeof *cnt);
    cr_assert_eq(place_eplb(w, L, E, P, 1, 1, D, phy, cnt), MS_OK);
    cfg_t *c = cfg_of("[strategy.predictive]\nshrink = 0\nprior_tokens = 0\n");
    place_env_t env = env_of(L, E, D, 8, R, 8, c);
    place_layout_t *lo = plan("predictive", &env, w);
    int differ_from_uniform = 0;
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) {
            cr_assert_eq(lo->layer[l].replicas[e], cnt[l * E + e], "layer %d expert %d", l, e);
            differ_from_uniform |= cnt[l * E + e] != 1 + (e < R % E ? 1 : 0) + R / E;
        }
    cr_assert(differ_from_uniform, "the skewed loads should not replicate uniformly");
    place_layout_free(lo);
    cfg_free(c);
    c = cfg_of("[strategy.predictive]\nshrink = 1\n");
    env.cfg = c;
    lo = plan("predictive", &env, w);
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++)
            cr_assert_eq(lo->layer[l].replicas[e], 1 + R / E + (e < R % E), "uniform: expert %d",
                         e);
    place_layout_free(lo);
    cfg_free(c);
    free(phy);
    free(cnt);
    free(w);
}

/* group_corr spreads an expert group over devices: equal loads, 8 groups of
 * 8 experts on 8 devices of 8 slots. Contiguous-ish packing by load alone
 * may stack a group on a device; with the correlation every device gets
 * one expert of each group. */
static int max_same_group(const place_layout_t *lo, int gsize) {
    int worst = 0;
    const place_layer_t *ly = &lo->layer[0];
    for (int d = 0; d < lo->n_devices; d++) {
        int n[64] = {0};
        for (int k = 0; k < ly->slots_per_device; k++) {
            int g = ly->slot_expert[d * ly->slots_per_device + k] / gsize;
            if (++n[g] > worst) worst = n[g];
        }
    }
    return worst;
}

Test(predictive, group_correlation_spreads_groups) {
    int L = 1, E = 64, D = 8;
    double w[64];
    for (int e = 0; e < E; e++) w[e] = 100 + (e % 8); /* group g holds one of each load */
    cfg_t *on = cfg_of("[strategy.predictive]\ngroup_corr = 1\nshrink = 0\n");
    cfg_t *off = cfg_of("[strategy.predictive]\ngroup_corr = 0\nshrink = 0\n");
    place_env_t env = env_of(L, E, D, 8, 0, 8, on);
    place_layout_t *lo = plan("predictive", &env, w);
    cr_assert_eq(max_same_group(lo, 8), 1, "group_corr on: one expert per group per device");
    place_layout_free(lo);
    env.cfg = off;
    lo = plan("predictive", &env, w);
    cr_assert_gt(max_same_group(lo, 8), 1, "group_corr off: loads alone stack a group");
    place_layout_free(lo);
    cfg_free(on);
    cfg_free(off);
}

Test(predictive, bad_parameters_are_refused) {
    const char *bad[] = {"[strategy.predictive]\nshrink = 1.5\n",
                         "[strategy.predictive]\nrisk = -1\n",
                         "[strategy.predictive]\ngroup_corr = 2\n",
                         "[strategy.predictive]\ngroups = 7\n",
                         "[strategy.predictive]\nsmooth = 0\n",
                         "[strategy.predictive]\nhistory = 0\n"};
    const char *key[] = {"shrink", "risk", "group_corr", "groups", "smooth", "history"};
    double w[64] = {0};
    ms_err_quiet(1);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cfg_t *c = cfg_of(bad[i]);
        place_env_t env = env_of(1, 64, 8, 8, 0, 8, c);
        place_state_t *st = NULL;
        place_layout_t *lo = NULL;
        cr_assert_eq(place_find("predictive")->init(&env, w, &st, &lo), MS_ERR, "%s", bad[i]);
        cr_assert(strstr(ms_err_last(), key[i]), "message names %s: %s", key[i], ms_err_last());
        cr_assert(strstr(ms_err_last(), "test.ini"), "message names the file: %s",
                  ms_err_last());
        cr_assert_null(lo);
        cfg_free(c);
    }
    place_env_t env = env_of(1, 64, 6, 6, 0, 8, NULL); /* 64 slots on 6 devices */
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(place_find("predictive")->init(&env, w, &st, &lo), MS_ERR);
    cr_assert(strstr(ms_err_last(), "redundant"), "%s", ms_err_last());
    ms_err_quiet(0);
}

/* A run's re-plans follow the windows: after a shift of the hot expert the
 * next layout replicates the new one; smoothing keeps part of the old
 * forecast; interval 0 never re-plans. */
Test(predictive, replans_follow_a_shifted_workload) {
    int L = 1, E = 16, D = 4, R = 4;
    double prior[16], step[16];
    for (int e = 0; e < E; e++) prior[e] = step[e] = 100;
    prior[0] = 400; /* expert 0 hot in the prior */
    step[9] = 500;  /* expert 9 hot in every observed step */
    const char *ini[] = {"[strategy.predictive]\nwindow_steps = 2\ninterval_steps = 4\n"
                         "smooth = 1\nshrink = 0\nprior_tokens = 0\n",
                         "[strategy.predictive]\nwindow_steps = 2\ninterval_steps = 4\n"
                         "smooth = 0.5\nshrink = 0\nprior_tokens = 0\n",
                         "[strategy.predictive]\ninterval_steps = 0\n"};
    for (int k = 0; k < 3; k++) {
        cfg_t *c = cfg_of(ini[k]);
        place_env_t env = env_of(L, E, D, 4, R, 1, c);
        const place_ops_t *ops = place_find("predictive");
        place_state_t *st = NULL;
        place_layout_t *lo = NULL;
        cr_assert_eq(ops->init(&env, prior, &st, &lo), MS_OK);
        cr_assert_gt(lo->layer[0].replicas[0], 1);
        cr_assert_eq(lo->layer[0].replicas[9], 1);
        place_layout_t *nl = NULL;
        int got = 0;
        for (int s = 0; s < 4; s++) {
            place_obs_t obs = {.now_ns = s, .step = s, .expert_load = step};
            ops->observe(st, &obs);
            cr_assert_eq(ops->replan(st, s, lo, &nl), s == 3 && k < 2 ? 1 : 0, "config %d step %d",
                         k, s);
            got |= s == 3 && k < 2;
        }
        if (got) {
            cr_assert_gt(nl->layer[0].replicas[9], 1, "config %d: the new hot expert", k);
            if (k == 0) cr_assert_eq(nl->layer[0].replicas[0], 1, "smooth 1: old hot forgotten");
            if (k == 1) cr_assert_gt(nl->layer[0].replicas[0], 1, "smooth 0.5: old hot kept");
            place_layout_free(nl);
        }
        const char *names[4];
        double values[4];
        cr_assert_eq(ops->metrics(st, names, values, 4), 2);
        cr_assert_str_eq(names[0], "predictive_replans");
        cr_assert_eq(values[0], got);
        ops->destroy(st);
        place_layout_free(lo);
        cfg_free(c);
    }
}

/* replan_drift: windows like the prior never re-plan; a shifted one does,
 * once. repair_copies: that re-plan changes at most that many slots of a
 * layer and lowers the PAR on the new loads. */
Test(predictive, drift_triggered_repair_moves_few_weights) {
    int L = 2, E = 32, D = 8, R = 8, P = E + R;
    double prior[64], shifted[64];
    for (int i = 0; i < L * E; i++) {
        prior[i] = 100 + (i % E < 4 ? 300 : 0);        /* experts 0-3 hot */
        shifted[i] = 100 + (i % E >= 28 ? 300 : 0);    /* experts 28-31 hot */
    }
    cfg_t *c = cfg_of("[strategy.predictive]\nwindow_steps = 1\ninterval_steps = 1\n"
                      "replan_drift = 0.2\nrepair_copies = 6\nprior_tokens = 0\n");
    place_env_t env = env_of(L, E, D, 4, R, 1, c);
    const place_ops_t *ops = place_find("predictive");
    place_state_t *st = NULL;
    place_layout_t *lo = NULL, *nl = NULL;
    cr_assert_eq(ops->init(&env, prior, &st, &lo), MS_OK);
    for (int s = 0; s < 3; s++) { /* the prior's own loads: no shift */
        ops->observe(st, &(place_obs_t){.now_ns = s, .step = s, .expert_load = prior});
        cr_assert_eq(ops->replan(st, s, lo, &nl), 0, "step %d: no shift, no re-plan", s);
    }
    ops->observe(st, &(place_obs_t){.now_ns = 3, .step = 3, .expert_load = shifted});
    cr_assert_eq(ops->replan(st, 3, lo, &nl), 1, "the shift re-plans");
    for (int l = 0; l < L; l++) {
        int changed = 0;
        for (int p = 0; p < P; p++)
            changed += lo->layer[l].slot_expert[p] != nl->layer[l].slot_expert[p];
        cr_assert(changed >= 1 && changed <= 6, "layer %d: %d slots changed", l, changed);
    }
    cr_assert_lt(place_par_mean(nl, shifted), place_par_mean(lo, shifted));
    check_layout(nl, P / D);
    const char *names[4];
    double values[4];
    cr_assert_eq(ops->metrics(st, names, values, 4), 2);
    cr_assert_str_eq(names[1], "predictive_shifts");
    cr_assert_eq(values[1], 1);
    place_layout_free(nl);
    ops->destroy(st);
    place_layout_free(lo);
    cfg_free(c);
}

/* Co-activation: tokens that always choose experts e and e + 4 (one
 * expert a device, 2 nodes of 4): planned from that dump, every pair shares
 * a node; without it the equal loads deal expert e to device e, splitting
 * every pair. A counts trace is refused with a message. */
Test(predictive, coactivation_puts_co_chosen_experts_on_one_node) {
    char dir[] = "/tmp/moesim-pred-XXXXXX", path[128], ini[256];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tok.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int t = 0; t < 64; t++)
        for (int l = 0; l < 2; l++)
            fprintf(f, "{\"problem_id\": 0, \"layer\": %d, \"token_idx\": %d, \"experts\": "
                       "[%d, %d], \"gating_probs\": [0.6, 0.4]}\n", l, t, t % 4, t % 4 + 4);
    fclose(f);
    double w[16];
    for (int i = 0; i < 16; i++) w[i] = 100;
    for (int on = 0; on < 2; on++) {
        snprintf(ini, sizeof ini, "[strategy.predictive]\ncoactivation = %s\n",
                 on ? path : "none");
        cfg_t *c = cfg_of(ini);
        place_env_t env = env_of(2, 8, 8, 4, 0, 1, c);
        env.top_k = 2;
        place_layout_t *lo = plan("predictive", &env, w);
        int split = 0;
        for (int l = 0; l < 2; l++)
            for (int e = 0; e < 4; e++) {
                const place_layer_t *ly = &lo->layer[l];
                int da = place_slot_device(ly, ly->rep_slot[ly->rep_start[e]]);
                int db = place_slot_device(ly, ly->rep_slot[ly->rep_start[e + 4]]);
                split += da / 4 != db / 4;
            }
        if (on) cr_assert_eq(split, 0, "co-activation on: every pair on one node");
        else cr_assert_eq(split, 8, "off: equal loads deal expert e to device e");
        place_layout_free(lo);
        cfg_free(c);
    }
    cfg_t *c = cfg_of("[strategy.predictive]\ncoactivation = " DS "prefill_in512.json\n");
    place_env_t env = env_of(58, 256, 32, 8, 32, 8, c);
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    ms_err_quiet(1);
    cr_assert_eq(place_find("predictive")->init(&env, NULL, &st, &lo), MS_ERR);
    ms_err_quiet(0);
    cr_assert(strstr(ms_err_last(), "per-token"), "%s", ms_err_last());
    cr_assert(strstr(ms_err_last(), "test.ini"), "%s", ms_err_last());
    cfg_free(c);
    unlink(path);
    rmdir(dir);
}

/* ---- the DeepSeek-V3 traces: out-of-sample against EPLB and Omni ---- */

static const char *const ds_files[] = {
    "decode_in1000out1000", "decode_in1800out100", "prefill_in1000out1000", "prefill_in1024",
    "prefill_in2000out100", "prefill_in4096",      "prefill_in500out1500",  "prefill_in512"};
#define N_DS 8

static double *ds_counts(const char *name) {
    char path[256];
    snprintf(path, sizeof path, DS "%s.json", name);
    trace_t *t = NULL;
    cr_assert_eq(trace_read(path, &t), MS_OK, "%s", ms_err_last());
    cr_assert_eq(t->n_layers, 58);
    double *w = ms_malloc((size_t)58 * 256 * sizeof *w);
    for (int l = 0; l < 58; l++) trace_layer_total(t, l, w + (size_t)l * 256);
    trace_free(t);
    return w;
}

static place_env_t ds_env(int D) { return env_of(58, 256, D, 8, 32, 8, NULL); }

/* The small pair: planned on prefill_in512, scored on decode_in1000out1000,
 * at EP32 and EP144 with 32 redundant slots. */
Test(predictive, beats_eplb_and_omni_on_a_pair) {
    double *a = ds_counts("prefill_in512"), *b = ds_counts("decode_in1000out1000");
    for (int D = 32; D <= 144; D += 112) {
        place_env_t env = ds_env(D);
        double par[3];
        const char *names[3] = {"predictive", "eplb", "omni"};
        for (int k = 0; k < 3; k++) {
            place_layout_t *lo = plan(names[k], &env, a);
            par[k] = place_par_mean(lo, b);
            place_layout_free(lo);
        }
        cr_assert_lt(par[0], par[1], "EP%d: predictive %.4f vs eplb %.4f", D, par[0], par[1]);
        cr_assert_lt(par[0], par[2], "EP%d: predictive %.4f vs omni %.4f", D, par[0], par[2]);
    }
    free(a);
    free(b);
}

/* The Done-when figure itself: planned on each file, scored on each other
 * one, the mean over the 56 ordered pairs. */
Test(predictive, beats_eplb_and_omni_over_every_pair, .timeout = 120) {
    double *w[N_DS];
    for (int i = 0; i < N_DS; i++) w[i] = ds_counts(ds_files[i]);
    const char *names[3] = {"predictive", "eplb", "omni"};
    for (int D = 32; D <= 144; D += 112) {
        place_env_t env = ds_env(D);
        double mean[3] = {0};
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < N_DS; i++) {
                place_layout_t *lo = plan(names[k], &env, w[i]);
                for (int j = 0; j < N_DS; j++)
                    if (j != i) mean[k] += place_par_mean(lo, w[j]) / (N_DS * (N_DS - 1));
                place_layout_free(lo);
            }
        cr_assert_lt(mean[0], mean[1], "EP%d: predictive %.4f vs eplb %.4f", D, mean[0], mean[1]);
        cr_assert_lt(mean[0], mean[2], "EP%d: predictive %.4f vs omni %.4f", D, mean[0], mean[2]);
    }
    for (int i = 0; i < N_DS; i++) free(w[i]);
}
