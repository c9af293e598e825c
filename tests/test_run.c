/* End to end: a config through the CLI into SQLite, deterministic, with
 * clear errors for impossible experiments. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "util.h"
#include "fixture.h"

static char dir[64];

static void setup(void) { fx_dir_make(dir, sizeof dir, "run"); }

static void teardown(void) { fx_dir_remove(dir); }

/* A small experiment: 1 node x 8, 2 steps, real DeepSeek-V3 trace. */
static const char *write_cfg(const char *name, const char *extra) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s.ini", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    char cwd[1024];
    cr_assert(getcwd(cwd, sizeof cwd));
    fprintf(f, "[experiment]\nname = %s\nseed = 3\nsteps = 2\n[cluster]\nhardware = H800\n"
               "nodes = 2\ndevices_per_node = 8\n[model]\npreset = deepseek-v3\n[workload]\n"
               "trace = %s/traces/data/deepseek-v3-sglang/decode_in1800out100.json\n"
               "tokens_per_device = 8\n[placement]\nstrategies = static\n%s",
            name, cwd, extra);
    fclose(f);
    return path;
}

static int moesim(const char *cmd, const char *cfg, const char *db) {
    char *argv[] = {(char *)cmd, (char *)cfg, "--db", (char *)db, NULL};
    return cmd_compare(4, argv);
}

static char *dump(const char *db) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    sqlite3_prepare_v2(h,
                       "SELECT group_concat(step || ':' || layer || ':' || duration_ns || ':' || "
                       "max_load, ',') FROM layer_steps", -1, &q, NULL);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    char *s = ms_strdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(h);
    return s;
}

Test(run, config_to_database_is_deterministic, .init = setup, .fini = teardown) {
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/a.db", dir);
    snprintf(b, sizeof b, "%s/b.db", dir);
    const char *cfg = write_cfg("det", "");
    cr_assert_eq(moesim("compare", cfg, a), 0, "%s", ms_err_last());
    cr_assert_eq(moesim("compare", cfg, b), 0);
    char *x = dump(a), *y = dump(b);
    cr_assert_str_eq(x, y);
    cr_assert(strlen(x) > 100);
    free(x);
    free(y);
}

static void expect_fail(const char *extra, const char *needle) {
    char db[128];
    snprintf(db, sizeof db, "%s/fail.db", dir);
    const char *cfg = write_cfg("bad", extra);
    cr_assert_neq(moesim("compare", cfg, db), 0, "accepted: %s", extra);
    cr_assert(strstr(ms_err_last(), needle), "'%s' not in: %s", needle, ms_err_last());
    cr_assert_neq(access(db, F_OK), 0, "no half-written database is left");
}

Test(run, impossible_experiments_fail_clearly, .init = setup, .fini = teardown) {
    expect_fail("redundant = 3\n", "do not divide");
    expect_fail("[strategy.static]\norder = zigzag\n", "zigzag");
    expect_fail("[placemnt]\nx = 1\n", "unknown key");
    expect_fail("[cluster]\nmode2 = 1\n", "unknown key");
}

/* The parallelism keys (2 nodes x 8, 8 tokens a device in the base config):
 * a domain of whole nodes dividing the cluster, a TP group inside one
 * domain, stages of whole nodes and domains, micro-batches only with a
 * pipeline and at most a device's tokens, no overlap beside a pipeline, and
 * neither in serving. */
Test(run, parallelism_keys_fail_clearly, .init = setup, .fini = teardown) {
    expect_fail("[cluster]\nscaleup_domain = 12\n", "a scale-up domain holds whole nodes");
    expect_fail("[cluster]\nscaleup_domain = 32\n", "scaleup_domain");
    expect_fail("[cluster]\nattn_tp = 3\n", "does not divide the scale-up domain of 8");
    expect_fail("[cluster]\nattn_tp = 16\n", "attn_tp");
    expect_fail("[cluster]\npp = 3\n", "pp");
    expect_fail("[cluster]\nscaleup_domain = 16\npp = 2\n", "whole scale-up domains of 16");
    expect_fail("[cluster]\nmicro_batches = 2\n", "splits the batch of a pipeline");
    expect_fail("[cluster]\npp = 2\nmicro_batches = 9\n", "micro_batches");
    expect_fail("[cluster]\npp = 2\noverlap = true\n", "keep one");
    expect_fail("[cluster]\npp = 2\n[serving]\nduration_s = 1\n", "fixed-batch runs only");
    expect_fail("[cluster]\nattn_tp = 2\n[serving]\nduration_s = 1\n", "attn_tp = 2");
}

/* TP8 x PP2 on the base cluster runs end to end, deterministic, and its
 * runs row counts both stages' nodes and devices. */
Test(run, tensor_and_pipeline_parallel_runs, .init = setup, .fini = teardown) {
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/a.db", dir);
    snprintf(b, sizeof b, "%s/b.db", dir);
    const char *cfg = write_cfg("tp", "[cluster]\nattn_tp = 8\npp = 2\nmicro_batches = 2\n");
    cr_assert_eq(moesim("compare", cfg, a), 0, "%s", ms_err_last());
    cr_assert_eq(moesim("compare", cfg, b), 0, "%s", ms_err_last());
    char *x = dump(a), *y = dump(b);
    cr_assert_str_eq(x, y);
    free(x);
    free(y);
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(a, &h), SQLITE_OK);
    sqlite3_stmt *q;
    sqlite3_prepare_v2(h, "SELECT nodes, devices FROM runs", -1, &q, NULL);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(q, 0), 2);
    cr_assert_eq(sqlite3_column_int(q, 1), 16);
    sqlite3_finalize(q);
    sqlite3_close(h);
}

/* MTP keys: rates in [0, 1], one per draft; depth 1 defaults to 0.85. */
Test(run, mtp_keys_fail_clearly, .init = setup, .fini = teardown) {
    expect_fail("[model]\nmtp_depth = 2\n", "needs mtp_accept");
    expect_fail("[model]\nmtp_depth = 1\nmtp_accept = 0.9, 0.5\n", "more than mtp_depth");
    expect_fail("[model]\nmtp_depth = 2\nmtp_accept = 0.9\n", "has 1 rates but mtp_depth is 2");
    expect_fail("[model]\nmtp_depth = 1\nmtp_accept = 1.5\n", "between 0 and 1");
    expect_fail("[model]\nmtp_depth = 1\nmtp_accept = 0.9x\n", "between 0 and 1");
    expect_fail("[model]\nmtp_depth = 9\n", "mtp_depth");
}

static double summary(const char *db, const char *metric) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    sqlite3_prepare_v2(h, "SELECT value FROM summary WHERE metric = ?", -1, &q, NULL);
    sqlite3_bind_text(q, 1, metric, -1, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW, "%s", metric);
    double v = sqlite3_column_double(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(h);
    return v;
}

/* A fixed-batch decode run with one draft counts output tokens in
 * expectation: tokens_per_device sequences a device each make 1 + 0.85
 * tokens a step (the default rate), while the step verifies two tokens a
 * sequence and is slower than the run without drafts. */
Test(run, mtp_fixed_batch_counts_expected_tokens, .init = setup, .fini = teardown) {
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/a.db", dir);
    snprintf(b, sizeof b, "%s/b.db", dir);
    cr_assert_eq(moesim("compare", write_cfg("plain", ""), a), 0, "%s", ms_err_last());
    cr_assert_eq(moesim("compare", write_cfg("mtp", "[model]\nmtp_depth = 1\n"), b), 0, "%s",
                 ms_err_last());
    double ms0 = summary(a, "step_time_mean"), ms1 = summary(b, "step_time_mean");
    cr_assert_gt(ms1, ms0);
    double tps = summary(b, "output_tokens_per_s_per_node");
    /* 2 nodes x 8 devices x 8 sequences x 1.85 tokens a step */
    cr_assert_float_eq(tps * 2 * ms1 / 1e3, 16 * 8 * 1.85, 1e-6);
    cr_assert_float_eq(summary(a, "output_tokens_per_s_per_node") * 2 * ms0 / 1e3, 16 * 8, 1e-6);
}

/* A fixed prefill batch: tokens_per_device prompt tokens computed a device
 * a step, each standing for 1 / (1 - prefix_hit_rate) input tokens; the
 * rate belongs to prefill only. */
Test(run, fixed_prefill_batches_count_input_tokens, .init = setup, .fini = teardown) {
    char a[128];
    snprintf(a, sizeof a, "%s/p.db", dir);
    cr_assert_eq(moesim("compare", write_cfg("pf", "[workload]\nphase = prefill\n"
                                                   "prefix_hit_rate = 0.5\nkv_len = 600\n"), a),
                 0, "%s", ms_err_last());
    double ms = summary(a, "step_time_mean"), tps = summary(a, "input_tokens_per_s_per_node");
    /* 2 nodes x 8 devices x 8 computed tokens, each half a prompt's input */
    cr_assert_float_eq(tps * 2 * ms / 1e3, 16 * 8 * 2.0, 1e-6);
    expect_fail("[workload]\nprefix_hit_rate = 0.5\n", "applies to prefill");
}

Test(run, unknown_names_list_the_known_ones, .init = setup, .fini = teardown) {
    char db[128];
    snprintf(db, sizeof db, "%s/x.db", dir);
    char *argv[] = {"compare", (char *)write_cfg("n", ""), "--db", db, "--set",
                    "model.preset=gpt5", NULL};
    cr_assert_neq(cmd_compare(6, argv), 0);
    cr_assert(strstr(ms_err_last(), "gpt5") && strstr(ms_err_last(), "deepseek-v3"), "%s",
              ms_err_last());
    char *argv2[] = {"compare", (char *)write_cfg("n", ""), "--db", db, "--set",
                     "workload.trace=missing.json", NULL};
    cr_assert_neq(cmd_compare(6, argv2), 0);
    cr_assert(strstr(ms_err_last(), "missing.json"), "%s", ms_err_last());
}
