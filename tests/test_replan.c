/* Re-planning costs what it costs (sim/replan.c): a new layout serves only
 * after its planning time and its weight copies, derived by hand; the gate
 * skips exactly the re-plans whose predicted gain is below the threshold or
 * does not pay for the copies within the horizon, and counts them; the
 * keep-in-place pass spares a relabelling planner's copies; and fixed-batch
 * runs store the copies, the skipped re-plans and the times, deterministically. */
#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "hw.h"
#include "migr.h"
#include "place_move.h"
#include "replan.h"
#include "util.h"
#include "fixture.h"

/* ---- a planner under the test's control ---- */

struct place_state {
    int calls;                  /* replan calls */
    const place_layout_t *give; /* what the next call returns (a copy), NULL: nothing */
};

static int fake_replan(place_state_t *st, int64_t now_ns, const place_layout_t *cur,
                       place_layout_t **out) {
    (void)now_ns;
    (void)cur;
    st->calls++;
    if (!st->give) return 0;
    *out = place_layout_copy(st->give);
    st->give = NULL;
    return 1;
}

static const place_ops_t FAKE = {.version = PLACE_OPS_VERSION, .name = "fake",
                                 .replan = fake_replan};

/* 2 nodes x 2 devices of 2 slots, 8 experts, 2 layers. */
static const moe_model_t SMALL = {
    .name = "small", .n_layers = 2, .n_dense = 0, .hidden = 2048, .moe_inter = 1024,
    .dense_inter = 0, .n_experts = 8, .top_k = 2, .n_shared = 0, .n_groups = 1,
    .topk_groups = 1, .scoring = MOE_SOFTMAX, .routed_scale = 1, .weight_bytes = 2,
    .dispatch_bytes = 2, .combine_bytes = 2};

static cluster_t cluster(void) {
    cluster_t c = {.n_nodes = 2, .devices_per_node = 2, .n_devices = 4, .hw = *hw_find("H800"),
                   .mode = STEP_ANALYTIC};
    /* round links for hand-computed copy times */
    c.hw.scaleup_bw = 100e9;
    c.hw.nic_bw = 10e9;
    c.hw.eff_scaleup = c.hw.eff_nic = 1;
    c.hw.scaleup_lat_ns = 1000;
    c.hw.nic_lat_ns = 2000;
    return c;
}

/* Device d holds experts 2d, 2d+1 in both layers; NEW0 (layer 0 only):
 * devices 0 and 3 swap contents, two copies over the NIC each way. */
static const int OLD[8] = {0, 1, 2, 3, 4, 5, 6, 7};
static const int NEW0[8] = {6, 7, 3, 2, 4, 5, 0, 1};

static place_layout_t *layout(const int *l0, const int *l1) {
    place_layout_t *lo = place_layout_new(2, 8, 4, 2);
    cr_assert_eq(place_layer_set(lo, 0, 2, l0), MS_OK);
    cr_assert_eq(place_layer_set(lo, 1, 2, l1), MS_OK);
    return lo;
}

static replan_spec_t spec(enum migr_mode mode) {
    return (replan_spec_t){.mode = mode, .window_steps = 1};
}

/* One weight copy of 1 GB per expert. */
#define GB 1e9

Test(replan, layout_serves_after_planning_time_plus_copy_time) {
    cluster_t c = cluster();
    migr_state_t *m = migr_new(MIGR_BLOCKING, &c, GB, 0, layout(OLD, OLD));
    replan_spec_t sp = spec(MIGR_BLOCKING);
    sp.plan_ns = 20000000; /* 20 ms */
    replan_t *r = replan_new(&sp, m, &c, &SMALL, 100, 0);
    place_layout_t *next = layout(NEW0, OLD);
    struct place_state st = {.give = next};
    migr_plan_info_t info;
    /* steps end every 10 ms; the plan is made at the end of the first */
    cr_assert_eq(replan_poll(r, &FAKE, &st, 10000000, &info), 0, "still planning");
    cr_assert_eq(r->ready_ns, 30000000);
    cr_assert_eq(replan_poll(r, &FAKE, &st, 20000000, &info), 0, "still planning");
    cr_assert_eq(st.calls, 1, "the planner is busy: the strategy is not asked again");
    cr_assert_eq(m->live->layer[0].slot_expert[0], 0, "the old layout serves");
    cr_assert_eq(replan_poll(r, &FAKE, &st, 30000000, &info), 1, "ready after 20 ms");
    /* devices 0 and 3 each send and receive 2 GB over a 10 GB/s NIC: 200 ms
     * + the NIC latency */
    cr_assert_eq(info.copies, 4);
    cr_assert_float_eq(info.bytes, 4 * GB, 1);
    cr_assert_eq(info.pause_ns, 200000000 + 2000);
    cr_assert_eq(m->live->layer[0].slot_expert[0], 0, "copies in flight: the old layout serves");
    migr_finish(m);
    cr_assert_arr_eq(m->live->layer[0].slot_expert, NEW0, sizeof NEW0);
    /* made at 10 ms, serving from 10 + 20 + 200.002 ms */
    cr_assert_eq(30000000 + info.pause_ns - 10000000, sp.plan_ns + 200002000);
    cr_assert_eq(r->plan_ns, 20000000);
    cr_assert_eq(r->migr_ns, 200002000);
    cr_assert_eq(r->done, 1);
    /* a plan ready between two step ends waits for the next one */
    place_layout_t *back = layout(OLD, OLD);
    st.give = back;
    cr_assert_eq(replan_poll(r, &FAKE, &st, 40000000, &info), 0);
    cr_assert_eq(replan_poll(r, &FAKE, &st, 55000000, &info), 0, "ready at 60 ms");
    cr_assert_eq(replan_poll(r, &FAKE, &st, 65000000, &info), 1);
    cr_assert_eq(r->plan_ns, 20000000 + 25000000, "planned at 40 ms, handed over at 65 ms");
    migr_finish(m);
    cr_assert_arr_eq(m->live->layer[0].slot_expert, OLD, sizeof OLD);
    place_layout_free(back);
    place_layout_free(next);
    replan_free(r);
    migr_free(m);
}

/* Pipelined: after the planning time the copies ride the following steps
 * (one into and one out of each device per step), the layer switching once
 * its last copy has arrived. */
Test(replan, pipelined_copies_start_after_planning_time) {
    cluster_t c = cluster();
    migr_state_t *m = migr_new(MIGR_PIPELINED, &c, GB, 0, layout(OLD, OLD));
    replan_spec_t sp = spec(MIGR_PIPELINED);
    sp.plan_ns = 15000000;
    replan_t *r = replan_new(&sp, m, &c, &SMALL, 100, 0);
    place_layout_t *next = layout(NEW0, OLD);
    struct place_state st = {.give = next};
    migr_plan_info_t info;
    int64_t t = 0, step = 300000000; /* steps long enough to carry a copy */
    cr_assert_eq(replan_poll(r, &FAKE, &st, t, &info), 0);
    int handed = 0, switched_at = -1;
    for (int s = 0; s < 6; s++) {
        const double *bg = migr_batch_begin(m, t);
        if (!handed) cr_assert_null(bg, "no copy moves before the hand-over");
        t += step;
        if (replan_batch_end(r, t - step, t) && switched_at < 0) switched_at = s;
        int w = replan_poll(r, &FAKE, &st, t, &info);
        if (w) {
            cr_assert_eq(t, step, "handed over at the first step end after 15 ms");
            cr_assert_eq(info.pause_ns, 0);
            handed = 1;
        }
    }
    cr_assert(handed);
    /* steps 1 and 2 carry two copies each; layer 0 switches at step 2's end */
    cr_assert_eq(switched_at, 2);
    cr_assert_arr_eq(m->live->layer[0].slot_expert, NEW0, sizeof NEW0);
    cr_assert_eq(r->migr_ns, 2 * step, "copies pending from the hand-over to the switch");
    place_layout_free(next);
    replan_free(r);
    migr_free(m);
}

/* Loads that make device 0 (experts 0 and 1) the busiest. */
static void observe_skewed(replan_t *r) {
    double load[2 * 8];
    for (int l = 0; l < 2; l++)
        for (int e = 0; e < 8; e++) load[l * 8 + e] = e < 2 ? 400 : 10;
    int tokens[4] = {128, 128, 128, 128};
    replan_observe(r, load, tokens);
}

/* Spreads experts 0 and 1 over devices 0 and 1 (layer 0): two NVLink
 * copies, less load on the busiest device. */
static const int SPREAD0[8] = {0, 2, 1, 3, 4, 5, 6, 7};

/* The decision for one plan under spec sp; returns 1 when handed over. */
static int decide(replan_spec_t sp, const int *l0, replan_t **keep) {
    cluster_t c = cluster();
    migr_state_t *m = migr_new(MIGR_BLOCKING, &c, GB, 0, layout(OLD, OLD));
    replan_t *r = replan_new(&sp, m, &c, &SMALL, 100, 0);
    observe_skewed(r);
    place_layout_t *next = layout(l0, OLD);
    struct place_state st = {.give = next};
    migr_plan_info_t info;
    int w = replan_poll(r, &FAKE, &st, 1000, &info);
    cr_assert_geq(w, 0, "%s", ms_err_last());
    place_layout_free(next);
    if (keep) {
        replan_t *copy = ms_malloc(sizeof *copy);
        *copy = *r;
        *keep = copy;
    }
    replan_free(r);
    migr_free(m);
    return w;
}

Test(replan, gate_skips_below_the_threshold_and_records_it) {
    replan_spec_t sp = spec(MIGR_BLOCKING);
    sp.horizon_steps = 1L << 40; /* gating on, the horizon pays for anything */
    replan_t *r;
    cr_assert_eq(decide(sp, SPREAD0, &r), 1);
    int64_t gain = r->last_gain_ns, copy = r->last_copy_ns;
    double share = r->last_gain;
    cr_assert_gt(gain, 0, "spreading the hot experts shortens the predicted step");
    /* two 1 GB copies over NVLink (100 GB/s), one per port: 10 ms + 1 us */
    cr_assert_eq(copy, 10000000 + 1000);
    cr_assert_eq(r->skipped, 0);
    free(r);
    /* the smallest horizon over which the gain pays for the copies */
    long h = (long)((copy + gain - 1) / gain);
    sp.horizon_steps = h;
    cr_assert_eq(decide(sp, SPREAD0, NULL), 1, "pays within %ld steps", h);
    sp.horizon_steps = h - 1;
    cr_assert_eq(decide(sp, SPREAD0, &r), 0, "does not pay within %ld steps", h - 1);
    cr_assert_eq(r->skipped, 1);
    cr_assert_float_eq(r->skipped_bytes, 2 * GB, 1);
    cr_assert_eq(r->done, 0);
    free(r);
    /* the share threshold */
    sp.horizon_steps = 0;
    sp.min_gain = share * 0.99;
    cr_assert_eq(decide(sp, SPREAD0, NULL), 1);
    sp.min_gain = share * 1.01;
    cr_assert_eq(decide(sp, SPREAD0, &r), 0);
    cr_assert_eq(r->skipped, 1);
    free(r);
    /* gating off: the plan is handed over whatever it gains */
    sp.min_gain = 0;
    cr_assert_eq(decide(sp, SPREAD0, &r), 1);
    cr_assert_eq(r->last_copy_ns, 0, "no estimate made");
    free(r);
}

/* A planner that relabels devices: with replan_min_move nothing moves. */
Test(replan, min_move_spares_a_relabelling_planners_copies) {
    static const int RELABEL[8] = {2, 3, 0, 1, 6, 7, 4, 5}; /* devices swapped in each node */
    for (int keep = 0; keep < 2; keep++) {
        cluster_t c = cluster();
        migr_state_t *m = migr_new(MIGR_BLOCKING, &c, GB, 0, layout(OLD, OLD));
        replan_spec_t sp = spec(MIGR_BLOCKING);
        sp.min_move = keep;
        replan_t *r = replan_new(&sp, m, &c, &SMALL, 100, 0);
        place_layout_t *next = layout(RELABEL, RELABEL);
        struct place_state st = {.give = next};
        migr_plan_info_t info;
        int w = replan_poll(r, &FAKE, &st, 0, &info);
        if (keep) {
            cr_assert_eq(w, 0, "the same layout after the pass: nothing to move");
            cr_assert_float_eq(r->kept_bytes, 16 * GB, 1);
            cr_assert_eq(m->total_bytes, 0);
        } else {
            cr_assert_eq(w, 1);
            cr_assert_eq(info.copies, 16);
        }
        place_layout_free(next);
        replan_free(r);
        migr_free(m);
    }
}

/* ---- fixed-batch runs ---- */

static char dir[64];

static void setup(void) { fx_dir_make(dir, sizeof dir, "replan"); }

static void teardown(void) { fx_dir_remove(dir); }

/* EPLB re-planning every 2 steps on a real DeepSeek-V3 trace, 2 x 8
 * devices, analytic timing. */
static const char *write_cfg(const char *name, const char *extra) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s.ini", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    char cwd[1024];
    cr_assert(getcwd(cwd, sizeof cwd));
    fprintf(f, "[experiment]\nname = %s\nseed = 3\nsteps = 8\n[cluster]\nhardware = H800\n"
               "nodes = 2\ndevices_per_node = 8\nmode = analytic\n[model]\n"
               "preset = deepseek-v3\n[workload]\n"
               "trace = %s/traces/data/deepseek-v3-sglang/decode_in1800out100.json\n"
               "tokens_per_device = 8\n[placement]\nstrategies = eplb\nredundant = 16\n"
               "prior = none\n%s\n[strategy.eplb]\ninterval_steps = 2\nwindow_steps = 2\n",
            name, cwd, extra);
    fclose(f);
    return path;
}


static double metric(const char *db, const char *name) {
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT value FROM summary WHERE metric = '%s'", name);
    return fx_q1(db, sql);
}

Test(replan, fixed_batch_layout_waits_for_planning_and_copies, .init = setup, .fini = teardown) {
    char a[128], b[128], extra[160];
    snprintf(a, sizeof a, "%s/a.db", dir);
    snprintf(b, sizeof b, "%s/b.db", dir);
    cr_assert_eq(fx_compare(write_cfg("free", "rebalance = blocking"), a), 0, "%s", ms_err_last());
    /* without planning time the first plan is handed over where it is
     * made: at the end of step 1 */
    double t0 = fx_q1(a, "SELECT min(time_ns) FROM replans");
    cr_assert_eq(fx_q1(a, "SELECT step FROM replans WHERE time_ns = (SELECT min(time_ns) FROM "
                       "replans)"), 1);
    cr_assert_eq(t0, fx_q1(a, "SELECT start_ns + duration_ns FROM steps WHERE step = 1"));
    /* with planning time P the old layout serves on (no pause), and the
     * plan is handed over at the first step end at or after t0 + P */
    double plan = 2.5 * fx_q1(a, "SELECT duration_ns FROM steps WHERE step = 1");
    snprintf(extra, sizeof extra, "rebalance = blocking\nplan_ms = %.6f", plan / 1e6);
    cr_assert_eq(fx_compare(write_cfg("planned", extra), b), 0, "%s", ms_err_last());
    plan = round(plan / 1e6 * 1e6); /* the ns the config says */
    cr_assert_eq(fx_q1(b, "SELECT start_ns + duration_ns FROM steps WHERE step = 1"), t0,
                 "the same steps until the plan is made");
    double t1 = fx_q1(b, "SELECT min(time_ns) FROM replans");
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT min(start_ns + duration_ns) FROM steps WHERE start_ns + "
                              "duration_ns >= %.0f", t0 + plan);
    cr_assert_eq(t1, fx_q1(b, sql), "handed over at the first step end after the planning time");
    cr_assert_gt(fx_q1(b, "SELECT step FROM replans WHERE time_ns = (SELECT min(time_ns) FROM "
                       "replans)"), 2, "%.0f ns of planning outlast two steps", plan);
    /* blocking: the next step starts when the last copy has arrived */
    double last = fx_q1(b, "SELECT max(done_ns) FROM migrations WHERE time_ns = "
                        "(SELECT min(time_ns) FROM replans)");
    cr_assert_gt(last, t1);
    cr_assert_eq(fx_q1(b, "SELECT start_ns FROM steps WHERE step = 1 + (SELECT step FROM replans "
                       "WHERE time_ns = (SELECT min(time_ns) FROM replans))"), last);
    /* bytes and times in the run's metrics, as in serving */
    double moved = fx_q1(b, "SELECT sum(bytes) FROM migrations");
    cr_assert_gt(moved, 0);
    cr_assert_float_eq(metric(b, "migrated_gb"), moved / 1e9, 1e-9);
    cr_assert_eq(metric(b, "migrations"), fx_q1(b, "SELECT count(*) FROM migrations"));
    cr_assert_eq(metric(b, "replans"), fx_q1(b, "SELECT count(*) FROM replans"));
    cr_assert_gt(metric(b, "migration_s"), 0);
    cr_assert_float_eq(metric(b, "rebalance_pause_s"), metric(b, "migration_s"), 1e-12);
    cr_assert_geq(metric(b, "plan_time_s"), plan / 1e9);
}

Test(replan, fixed_batch_gate_skips_and_records, .init = setup, .fini = teardown) {
    char a[128];
    snprintf(a, sizeof a, "%s/a.db", dir);
    cr_assert_eq(fx_compare(write_cfg("gated", "replan_min_gain = 1"), a), 0, "%s", ms_err_last());
    cr_assert_geq(metric(a, "replans_skipped"), 1);
    cr_assert_eq(metric(a, "replans"), 0);
    cr_assert_eq(metric(a, "migrated_gb"), 0);
    cr_assert_eq(fx_q1(a, "SELECT count(*) FROM migrations"), 0);
    cr_assert_gt(metric(a, "replan_skipped_gb"), 0);
}

static char *dump(const char *db) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    const char *sql =
        "SELECT (SELECT group_concat(metric || '=' || quote(value), ',') FROM summary) || '|' "
        "|| coalesce((SELECT group_concat(time_ns || ':' || done_ns || ':' || layer || ':' || "
        "expert || ':' || src_device || ':' || dst_device, ',') FROM migrations), '') || '|' || "
        "(SELECT group_concat(start_ns || ':' || duration_ns, ',') FROM steps)";
    cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &q, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    char *s = ms_strdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(h);
    return s;
}

Test(replan, costs_and_gating_are_deterministic, .init = setup, .fini = teardown) {
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/a.db", dir);
    snprintf(b, sizeof b, "%s/b.db", dir);
    const char *cfg = write_cfg("det", "plan_ms = 0.5\nreplan_min_move = on\n"
                                       "replan_horizon_steps = 1000");
    cr_assert_eq(fx_compare(cfg, a), 0, "%s", ms_err_last());
    cr_assert_eq(fx_compare(cfg, b), 0);
    char *x = dump(a), *y = dump(b);
    cr_assert_str_eq(x, y);
    cr_assert(strstr(x, "replans_skipped") && strlen(x) > 200);
    free(x);
    free(y);
}

/* plan_ms = measured charges the replan call's wall time: more than 0, so
 * the plan waits for a step end after the one it was made at; a strategy's
 * own plan_ms overrides [placement]'s. */
Test(replan, measured_and_per_strategy_planning_time, .init = setup, .fini = teardown) {
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/a.db", dir);
    snprintf(b, sizeof b, "%s/b.db", dir);
    cr_assert_eq(fx_compare(write_cfg("measured", "plan_ms = measured"), a), 0, "%s", ms_err_last());
    cr_assert_gt(metric(a, "plan_time_s"), 0);
    cr_assert_gt(fx_q1(a, "SELECT min(step) FROM replans"), 1, "handed over after step 1's end");
    /* [placement] says measured, [strategy.eplb] says 0: planning is free */
    const char *cfg = write_cfg("own", "plan_ms = measured\n[strategy.eplb]\nplan_ms = 0");
    cr_assert_eq(fx_compare(cfg, b), 0, "%s", ms_err_last());
    cr_assert_eq(metric(b, "plan_time_s"), 0);
    cr_assert_eq(fx_q1(b, "SELECT min(step) FROM replans"), 1);
}

Test(replan, bad_keys_name_the_line, .init = setup, .fini = teardown) {
    char a[128];
    snprintf(a, sizeof a, "%s/a.db", dir);
    const char *bad[] = {"plan_ms = soon", "plan_ms = -1", "rebalance = lazy",
                         "replan_min_gain = 2", "replan_horizon_steps = -3",
                         "replan_min_move = maybe"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_neq(fx_compare(write_cfg("bad", bad[i]), a), 0, "%s accepted", bad[i]);
        cr_assert(strstr(ms_err_last(), "bad.ini:"), "%s: %s", bad[i], ms_err_last());
    }
    cr_assert_eq(access(a, F_OK), -1, "nothing written");
}
