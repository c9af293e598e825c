/* External strategies: a python3 greedy script (tests/data/greedy_place.py)
 * through the exec protocol gives the same layout as the same greedy in C,
 * at init and at a re-plan, with loads inline or as .npy; it runs in
 * `compare` beside the built-in strategies; every malformed answer is
 * refused naming the strategy and the fault, and the run stops with
 * nothing of it stored. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd.h"
#include "place.h"
#include "trace.h"
#include "util.h"
#include "fixture.h"

#define TRACE "traces/data/deepseek-v3-sglang/decode_in1000out1000.json"
#define GREEDY "python3 tests/data/greedy_place.py"

/* The C port of greedy_place.py's place_layer, step for step. */
static void greedy_layer(const double *w, int E, int D, int S, int *out) {
    int *cnt = malloc(sizeof(int) * E), per = S / D;
    for (int e = 0; e < E; e++) cnt[e] = 1;
    for (int r = 0; r < S - E; r++) {
        int best = 0;
        for (int e = 1; e < E; e++)
            if (w[e] / cnt[e] > w[best] / cnt[best]) best = e;
        cnt[best]++;
    }
    struct item { double share; int e, k; } *it = malloc(sizeof *it * S);
    int n = 0;
    for (int e = 0; e < E; e++)
        for (int k = 0; k < cnt[e]; k++) it[n++] = (struct item){w[e] / cnt[e], e, k};
    /* insertion sort by (-share, e, k): stable and exact */
    for (int i = 1; i < n; i++) {
        struct item x = it[i];
        int j = i;
        for (; j > 0; j--) {
            struct item *y = &it[j - 1];
            int after = y->share < x.share || (y->share == x.share && (y->e > x.e ||
                                                (y->e == x.e && y->k > x.k)));
            if (!after) break;
            it[j] = *y;
        }
        it[j] = x;
    }
    double *load = calloc((size_t)D, sizeof *load);
    int *held = malloc(sizeof(int) * S), *nh = calloc((size_t)D, sizeof(int));
    for (int i = 0; i < n; i++) {
        int pick = -1;
        for (int strict = 1; strict >= 0 && pick < 0; strict--)
            for (int d = 0; d < D; d++) {
                if (nh[d] == per) continue;
                int has = 0;
                for (int k = 0; k < nh[d]; k++) has |= held[d * per + k] == it[i].e;
                if (strict && has) continue;
                if (pick < 0 || load[d] < load[pick]) pick = d;
            }
        held[pick * per + nh[pick]++] = it[i].e;
        load[pick] += it[i].share;
    }
    memcpy(out, held, sizeof(int) * S);
    free(cnt), free(it), free(load), free(held), free(nh);
}

/* An exec:NAME strategy's env at DeepSeek-V3 EP32 with 32 redundant slots. */
static place_env_t env_for(cfg_t *c, const char *sec) {
    return (place_env_t){.n_layers = 58, .n_experts = 256, .n_devices = 32,
                         .devices_per_node = 8, .n_nodes = 4, .redundant = 32, .top_k = 8,
                         .n_groups = 8, .topk_groups = 4, .cfg = c, .cfg_section = sec,
                         .seed = 1};
}

static double *prior_of(const char *path) {
    trace_t *t;
    cr_assert_eq(trace_read(path, &t), MS_OK);
    double *w = malloc(sizeof(double) * t->n_layers * t->n_experts);
    for (int l = 0; l < t->n_layers; l++) trace_layer_total(t, l, w + (size_t)l * t->n_experts);
    trace_free(t);
    return w;
}

static void expect_greedy(const place_layout_t *lo, const double *w, const char *what) {
    int se[288];
    for (int l = 0; l < 58; l++) {
        greedy_layer(w + (size_t)l * 256, 256, 32, 288, se);
        cr_assert_eq(lo->layer[l].n_slots, 288);
        cr_assert_eq(memcmp(lo->layer[l].slot_expert, se, sizeof se), 0,
                     "%s: layer %d differs from the C port", what, l);
    }
}

static void same_as_c(const char *npy_above) {
    ms_err_quiet(1);
    cfg_t *c = cfg_new();
    cfg_set(c, "strategy.greedy", "command", GREEDY, "t", 1);
    cfg_set(c, "strategy.greedy", "npy_above", npy_above, "t", 2);
    cfg_set(c, "strategy.greedy", "interval_steps", "2", "t", 3);
    cfg_set(c, "strategy.greedy", "window_steps", "2", "t", 4);
    const place_ops_t *ops = place_find("exec:greedy");
    cr_assert_not_null(ops);
    cr_assert_str_eq(ops->name, "exec:greedy");
    char sec[64];
    place_cfg_section(ops, sec, sizeof sec);
    cr_assert_str_eq(sec, "strategy.greedy");
    place_env_t env = env_for(c, sec);
    double *w = prior_of(TRACE);
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(ops->init(&env, w, &st, &lo), MS_OK, "%s", ms_err_last());
    expect_greedy(lo, w, "init");
    cr_assert_eq(cfg_check_unused(c), MS_OK, "%s", ms_err_last());
    /* two steps of made-up loads, then the re-plan over both */
    double *a = malloc(sizeof(double) * 58 * 256), *sum = malloc(sizeof(double) * 58 * 256);
    for (int step = 0; step < 2; step++) {
        for (int i = 0; i < 58 * 256; i++) a[i] = (double)((i * 7919 + step * 104729) % 1000) / 7;
        for (int i = 0; i < 58 * 256; i++) sum[i] = step ? sum[i] + a[i] : a[i];
        place_obs_t obs = {.now_ns = step, .step = step, .expert_load = a};
        ops->observe(st, &obs);
    }
    place_layout_t *nl = NULL;
    cr_assert_eq(ops->replan(st, 2, lo, &nl), 1, "%s", ms_err_last());
    expect_greedy(nl, sum, "replan");
    const char *names[8];
    double vals[8];
    int n = ops->metrics(st, names, vals, 8);
    cr_assert_geq(n, 4);
    cr_expect_str_eq(names[0], "exec_calls");
    cr_expect_eq(vals[0], 2);
    cr_expect_str_eq(names[3], "exec_decision_ms_mean");
    cr_expect_gt(vals[3], 0);
    place_layout_free(nl);
    place_layout_free(lo);
    ops->destroy(st);
    free(a), free(sum), free(w);
    cfg_free(c);
}

Test(exec, python_greedy_equals_its_c_port) { same_as_c("1000000"); }
Test(exec, loads_as_npy_give_the_same_layout) { same_as_c("0"); }

static char dir[64];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/moesim-exec-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    ms_err_quiet(1);
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static int compare(const char *strategies, const char *extra, const char *db) {
    char cwd[1024], path[128], ini[8192];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    snprintf(path, sizeof path, "%s/x.ini", dir);
    /* The command runs in the config's folder: paths in it are absolute here. */
    snprintf(ini, sizeof ini,
             "[experiment]\nsteps = 2\n[cluster]\nnodes = 4\ndevices_per_node = 8\n"
             "[workload]\ntrace = %s/%s\ntokens_per_device = 8\n[placement]\nstrategies = %s\n"
             "redundant = 32\n%s", cwd, TRACE, strategies, extra);
    FILE *f = fopen(path, "w");
    fputs(ini, f);
    fclose(f);
    char *argv[] = {"compare", path, "--db", (char *)db, NULL};
    return cmd_compare(4, argv);
}


Test(exec, runs_in_compare_beside_the_built_in_ones, .init = setup, .fini = teardown) {
    char db[128], extra[2048], cwd[1024];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    snprintf(db, sizeof db, "%s/r.db", dir);
    snprintf(extra, sizeof extra, "[strategy.greedy]\ncommand = python3 %s/tests/data/greedy_place.py\n"
             "interval_steps = 1\nwindow_steps = 1\n", cwd);
    cr_assert_eq(compare("static, eplb, exec:greedy", extra, db), 0, "%s", ms_err_last());
    cr_expect_eq(fx_q1(db, "SELECT count(*) FROM runs"), 3);
    cr_expect_eq(fx_q1(db, "SELECT count(*) FROM runs WHERE strategy = 'exec:greedy'"), 1);
    cr_expect_eq(fx_q1(db, "SELECT value FROM summary JOIN runs USING (run_id) WHERE strategy = "
                           "'exec:greedy' AND metric = 'exec_calls'"), 3,
                 "init and a re-plan after each of the 2 steps");
    cr_expect_gt(fx_q1(db, "SELECT value FROM summary JOIN runs USING (run_id) WHERE strategy = "
                           "'exec:greedy' AND metric = 'exec_decision_ms_max'"), 0);
    /* greedy balances the prior: better than static's contiguous layout */
    cr_expect_lt(fx_q1(db, "SELECT value FROM summary JOIN runs USING (run_id) WHERE strategy = "
                           "'exec:greedy' AND metric = 'par_mean'"),
                 fx_q1(db, "SELECT value FROM summary JOIN runs USING (run_id) WHERE strategy = "
                           "'static' AND metric = 'par_mean'"));
}

/* A failure at the first re-plan stops the run: the runs before it stay,
 * nothing of the failed one is stored. */
Test(exec, a_bad_replan_stops_the_run_cleanly, .init = setup, .fini = teardown) {
    char db[128], extra[2048], cwd[1024];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    snprintf(db, sizeof db, "%s/r.db", dir);
    snprintf(extra, sizeof extra, "[strategy.late]\ncommand = python3 %s/tests/data/exec_answers.py "
             "late_range\ninterval_steps = 1\nwindow_steps = 1\n", cwd);
    cr_assert_neq(compare("static, exec:late", extra, db), 0);
    cr_expect_neq(access(db, F_OK), 0, "a new database is removed: nothing half-written");
    cr_assert_eq(compare("static", "", db), 0, "%s", ms_err_last());
    cr_assert_neq(compare("exec:late", extra, db), 0);
    cr_expect(strstr(ms_err_last(), "exec:late: replan at step 1: answer: "
                                    "physical_to_logical_map[0][3]: expert id out of range"),
              "%s", ms_err_last());
    cr_expect_eq(fx_q1(db, "SELECT count(*) FROM runs"), 1, "the earlier run stays");
    cr_expect_eq(fx_q1(db, "SELECT count(*) FROM runs WHERE strategy = 'exec:late'"), 0);
    cr_expect_eq(fx_q1(db, "SELECT count(*) FROM steps JOIN runs USING (run_id) WHERE strategy = "
                           "'exec:late'"), 0);
}

static void refused(const char *command, const char *timeout, const char *want) {
    cfg_t *c = cfg_new();
    cfg_set(c, "strategy.bad", "command", command, "t.ini", 7);
    if (timeout) cfg_set(c, "strategy.bad", "timeout_s", timeout, "t.ini", 8);
    const place_ops_t *ops = place_find("exec:bad");
    place_env_t env = env_for(c, "strategy.bad");
    env.n_layers = 3, env.n_experts = 8, env.n_devices = 2, env.devices_per_node = 2;
    env.n_nodes = 1, env.redundant = 2;
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_expect_eq(ops->init(&env, NULL, &st, &lo), MS_ERR, "accepted: %s", command);
    cr_expect_null(lo);
    cr_expect_null(st);
    cr_expect(strstr(ms_err_last(), "exec:bad"), "'%s' lacks the strategy", ms_err_last());
    cr_expect(strstr(ms_err_last(), want), "'%s' lacks '%s'", ms_err_last(), want);
    cfg_free(c);
}

Test(exec, malformed_answers_are_refused) {
    ms_err_quiet(1);
    char cmd[256];
#define MODE(m) (snprintf(cmd, sizeof cmd, "python3 tests/data/exec_answers.py %s", m), cmd)
    refused(MODE("badjson"), NULL, "init at step 0: answer:1:");
    refused(MODE("badjson"), NULL, "invalid JSON");
    refused(MODE("shape"), NULL, "has 2 layers, expected 3");
    refused(MODE("slots"), NULL, "9 slots per layer, but 8 experts on 2 devices");
    refused(MODE("range"), NULL, "physical_to_logical_map[0][3]: expert id out of range");
    refused(MODE("missing"), NULL, "expert 1 has no replica");
    refused(MODE("exit3"), NULL, "exited with status 3");
    refused(MODE("exit3"), NULL, "its stderr ends: cannot plan: out of ideas");
    refused(MODE("sleep"), "0.3", "no answer within 0.3 s");
    refused("no-such-program-moesim --x", NULL, "cannot run 'no-such-program-moesim'");
    refused("python3 'unterminated", NULL, "t.ini:7: exec:bad: [strategy.bad] command: unterminated ' quote");
    refused("   ", NULL, "command is empty");
#undef MODE
    /* the same script answering well is accepted */
    cfg_t *c = cfg_new();
    cfg_set(c, "strategy.good", "command", "python3 \"tests/data/exec_answers.py\" trivial", "t", 1);
    const place_ops_t *ops = place_find("exec:good");
    place_env_t env = env_for(c, "strategy.good");
    env.n_layers = 3, env.n_experts = 8, env.n_devices = 2, env.devices_per_node = 2;
    env.n_nodes = 1, env.redundant = 2;
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_assert_eq(ops->init(&env, NULL, &st, &lo), MS_OK, "%s", ms_err_last());
    cr_expect_eq(lo->layer[2].slot_expert[9], 1, "slot 9 holds expert 9 mod 8");
    place_layout_free(lo);
    ops->destroy(st);
    cfg_free(c);
}

Test(exec, names) {
    ms_err_quiet(1);
    cr_expect_null(place_find("exec:"));
    cr_expect_null(place_find("exec:a b"));
    cr_expect_null(place_find("exec:eplb"), "[strategy.eplb] belongs to eplb");
    cr_expect_eq(place_find("exec:x1"), place_find("EXEC:x1"), "made once per name");
    cfg_t *c = cfg_new();
    place_env_t env = env_for(c, "strategy.none");
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    cr_expect_eq(place_find("exec:none")->init(&env, NULL, &st, &lo), MS_ERR);
    cr_expect(strstr(ms_err_last(), "exec:none needs [strategy.none] command"), "%s",
              ms_err_last());
    cfg_free(c);
}
