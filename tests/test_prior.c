/* Where a strategy's knowledge comes from ([placement] prior, place --prior,
 * --eval, --window): parsing, storage, and the honest comparison it makes
 * possible - out-of-sample PAR never beats the hindsight layout, and the
 * place command and a run agree on the same prior. */
#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "place.h"
#include "prior.h"
#include "report.h"
#include "store.h"
#include "trace.h"
#include "trace_gen.h"
#include "util.h"
#include "fixture.h"

#define DS "traces/data/deepseek-v3-sglang/"

static char dir[64];

static void setup(void) { fx_dir_make(dir, sizeof dir, "prior"); }

static void teardown(void) {
    fx_dir_remove(dir);
    ms_err_quiet(0);
}

/* 2 nodes x 8 devices, 16 redundant slots, `steps` steps of a DeepSeek-V3
 * trace, one strategy, extra lines appended to [placement]. */
static const char *write_cfg(const char *name, const char *trace, const char *strategy,
                             int steps, const char *extra) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s.ini", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    char cwd[1024];
    cr_assert(getcwd(cwd, sizeof cwd));
    fprintf(f, "[experiment]\nname = %s\nseed = 3\nsteps = %d\n[cluster]\nhardware = H800\n"
               "nodes = 2\ndevices_per_node = 8\nmode = analytic\n[model]\npreset = deepseek-v3\n"
               "[workload]\ntrace = %s/" DS "%s\ntokens_per_device = 8\n[placement]\n"
               "strategies = %s\nredundant = 16\n%s",
            name, steps, cwd, trace, strategy, extra);
    fclose(f);
    return path;
}


static char *text(const char *db, const char *sql) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &q, NULL), SQLITE_OK, "%s", sql);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW, "%s", sql);
    char *s = ms_strdup(sqlite3_column_text(q, 0) ? (const char *)sqlite3_column_text(q, 0) : "");
    sqlite3_finalize(q);
    sqlite3_close(h);
    return s;
}

Test(prior, parses_every_kind_and_refuses_the_rest) {
    prior_spec_t p = {.warmup_steps = 7};
    cr_assert_eq(prior_parse("none", NULL, "t", &p), MS_OK);
    cr_expect_eq(p.kind, PRIOR_NONE);
    cr_expect_eq(p.warmup_steps, 7);
    cr_assert_eq(prior_parse("past", NULL, "t", &p), MS_OK);
    cr_expect_eq(p.kind, PRIOR_PAST);
    cr_expect_eq(prior_skip(&p), 7);
    cr_assert_eq(prior_parse("oracle", NULL, "t", &p), MS_OK);
    cr_expect_eq(p.kind, PRIOR_ORACLE);
    cr_expect_eq(prior_skip(&p), 0);
    cr_assert_eq(prior_parse("trace:" DS "prefill_in512.json", NULL, "t", &p), MS_OK);
    cr_expect_eq(p.kind, PRIOR_TRACE);
    char buf[600];
    cr_expect_str_eq(prior_label(&p, buf, sizeof buf), "trace:" DS "prefill_in512.json");
    cr_expect_str_eq(prior_display("oracle"), "oracle (in-sample)");
    cr_expect_str_eq(prior_display("past"), "past");
    /* a relative trace path is read beside the config */
    cr_assert_eq(prior_parse("trace:prefill_in512.json", DS "x.ini", "t", &p), MS_OK);
    cr_expect_str_eq(p.path, DS "prefill_in512.json");
    ms_err_quiet(1);
    cr_expect_eq(prior_parse("orcale", NULL, "cfg.ini:9", &p), MS_ERR);
    cr_expect(strstr(ms_err_last(), "cfg.ini:9: prior 'orcale' (give none, past, trace:PATH"),
              "%s", ms_err_last());
    cr_expect_eq(prior_parse("trace:", NULL, "w", &p), MS_ERR);
    cr_expect(strstr(ms_err_last(), "names no file"), "%s", ms_err_last());
    cr_expect_eq(prior_parse("trace:nope.json", NULL, "w", &p), MS_ERR);
    cr_expect(strstr(ms_err_last(), "prior trace 'nope.json'"), "%s", ms_err_last());
    ms_err_quiet(0);
}

/* The demo's honest default is past; every run stores its prior, old
 * databases read as oracle. */
Test(prior, stored_with_every_run, .init = setup, .fini = teardown) {
    char db[128];
    snprintf(db, sizeof db, "%s/r.db", dir);
    cr_assert_eq(fx_compare(write_cfg("p", "decode_in1800out100.json", "eplb", 3, ""), db), 0,
                 "%s", ms_err_last());
    cr_assert_eq(fx_compare(write_cfg("o", "decode_in1800out100.json", "eplb", 3,
                                   "prior = oracle\n"), db), 0, "%s", ms_err_last());
    char *a = text(db, "SELECT prior FROM runs WHERE name = 'p'");
    char *b = text(db, "SELECT prior FROM runs WHERE name = 'o'");
    cr_expect_str_eq(a, PRIOR_DEFAULT);
    cr_expect_str_eq(b, "oracle");
    free(a);
    free(b);
    /* the warm-up is left out of the measured steps */
    cr_expect_eq(fx_q1(db, "SELECT count(*) FROM steps JOIN runs USING (run_id) WHERE name = 'p'"),
                 3);
    cr_expect_eq(fx_q1(db, "SELECT value FROM summary JOIN runs USING (run_id) WHERE name = 'p' "
                           "AND metric = 'prior_warmup_steps'"), PRIOR_WARMUP_DEFAULT);
    cr_expect_eq(fx_q1(db, "SELECT value FROM summary JOIN runs USING (run_id) WHERE name = 'o' "
                           "AND metric = 'prior_warmup_steps'"), 0);
    /* the config text names the prior even where it was the default */
    char *cfg = text(db, "SELECT config FROM runs WHERE name = 'p'");
    cr_expect(strstr(cfg, "prior = " PRIOR_DEFAULT), "%s", cfg);
    free(cfg);

    /* A database from before runs.prior gains the column, saying oracle. */
    char old[128];
    snprintf(old, sizeof old, "%s/old.db", dir);
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(old, &h), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h, "CREATE TABLE runs (run_id INTEGER PRIMARY KEY, name TEXT NOT "
                                 "NULL, strategy TEXT NOT NULL, strategy_version INTEGER NOT NULL,"
                                 " trace TEXT, model TEXT NOT NULL, hardware TEXT NOT NULL, nodes "
                                 "INTEGER NOT NULL, devices INTEGER NOT NULL, seed INTEGER NOT "
                                 "NULL, config TEXT NOT NULL, config_hash TEXT NOT NULL, "
                                 "moesim_version TEXT NOT NULL); INSERT INTO runs VALUES (1, 'x', "
                                 "'eplb', 1, 't', 'm', 'h', 1, 8, 1, '', 'h', '0');",
                              NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    store_t *st;
    cr_assert_eq(store_open(old, &st), MS_OK, "%s", ms_err_last());
    store_close(st);
    char *p = text(old, "SELECT prior FROM runs WHERE run_id = 1");
    cr_expect_str_eq(p, "oracle");
    free(p);
}

/* trace:FILE of the scored trace itself plans exactly as oracle does; a
 * strategy that plans from nothing does worse than one that saw the past. */
Test(prior, trace_of_the_same_file_is_the_oracle, .init = setup, .fini = teardown) {
    char db[128], extra[4200], cwd[1024];
    snprintf(db, sizeof db, "%s/r.db", dir);
    cr_assert(getcwd(cwd, sizeof cwd));
    snprintf(extra, sizeof extra, "prior = trace:%s/" DS "prefill_in4096.json\n", cwd);
    cr_assert_eq(fx_compare(write_cfg("t", "prefill_in4096.json", "eplb", 2, extra), db), 0, "%s",
                 ms_err_last());
    cr_assert_eq(fx_compare(write_cfg("o", "prefill_in4096.json", "eplb", 2, "prior = oracle\n"), db),
                 0, "%s", ms_err_last());
    cr_assert_eq(fx_compare(write_cfg("n", "prefill_in4096.json", "eplb", 2, "prior = none\n"), db),
                 0, "%s", ms_err_last());
    cr_assert_eq(fx_compare(write_cfg("p", "prefill_in4096.json", "eplb", 2, ""), db), 0, "%s",
                 ms_err_last());
    const char *sql = "SELECT group_concat(step || ':' || layer || ':' || max_load, ',') FROM "
                      "layer_steps JOIN runs USING (run_id) WHERE name = '%s'";
    char q[512];
    snprintf(q, sizeof q, sql, "t");
    char *t = text(db, q);
    snprintf(q, sizeof q, sql, "o");
    char *o = text(db, q);
    cr_expect_str_eq(t, o);
    cr_expect_gt(strlen(t), 100);
    free(t);
    free(o);
    const char *lp = "SELECT value FROM summary JOIN runs USING (run_id) WHERE name = '%s' AND "
                     "metric = 'layout_par_mean'";
    snprintf(q, sizeof q, lp, "n");
    double none = fx_q1(db, q);
    snprintf(q, sizeof q, lp, "p");
    double past = fx_q1(db, q);
    snprintf(q, sizeof q, lp, "o");
    double oracle = fx_q1(db, q);
    cr_expect_gt(none, past + 0.1, "none %g past %g", none, past);
    cr_expect_leq(oracle, past, "oracle %g past %g", oracle, past);
}

static int place(const char *first, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "place";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    FILE *keep = stdout;
    stdout = fopen("/dev/null", "w");
    int rc = cmd_place(argc, argv);
    fclose(stdout);
    stdout = keep;
    return rc;
}

/* place --counts A --eval B scores the layout a run with prior = trace:A
 * starts from on trace B: the same PAR. */
Test(prior, place_eval_matches_a_run_planned_from_the_file, .init = setup, .fini = teardown) {
    const char *strategies[] = {"eplb", "omni", "predictive"};
    for (int i = 0; i < 3; i++) {
        char db[128], pdb[128], extra[4200], cwd[1024], q[256];
        snprintf(db, sizeof db, "%s/r%d.db", dir, i);
        snprintf(pdb, sizeof pdb, "%s/p%d.db", dir, i);
        cr_assert(getcwd(cwd, sizeof cwd));
        snprintf(extra, sizeof extra, "prior = trace:%s/" DS "prefill_in512.json\n", cwd);
        cr_assert_eq(fx_compare(write_cfg("r", "decode_in1000out1000.json", strategies[i], 1, extra),
                             db), 0, "%s", ms_err_last());
        cr_assert_eq(place("--strategy", strategies[i], "--counts", DS "prefill_in512.json",
                           "--eval", DS "decode_in1000out1000.json", "--devices", "16", "--nodes",
                           "2", "--redundant", "16", "--seed", "3", "--db", pdb, "-q", NULL), 0,
                     "%s", ms_err_last());
        double run = fx_q1(db, "SELECT value FROM summary WHERE metric = 'layout_par_mean'");
        double out = fx_q1(pdb, "SELECT value FROM summary WHERE metric = 'par_mean'");
        double in = fx_q1(pdb, "SELECT value FROM summary WHERE metric = 'par_mean_in_sample'");
        double hind = fx_q1(pdb, "SELECT value FROM summary WHERE metric = 'par_mean_hindsight'");
        cr_expect_float_eq(run, out, 1e-12, "%s: run %.12g place %.12g", strategies[i], run, out);
        cr_expect_lt(in, out, "%s: in-sample %g out %g", strategies[i], in, out);
        cr_expect_leq(hind, out, "%s: hindsight %g out %g", strategies[i], hind, out);
        /* The run stores the same hindsight bound beside its result, and
         * the regret to it. */
        double rh = fx_q1(db, "SELECT value FROM summary WHERE metric = 'par_mean_hindsight'");
        double rg = fx_q1(db, "SELECT value FROM summary WHERE metric = 'regret'");
        cr_expect_float_eq(rh, hind, 1e-12, "%s: run hindsight %.12g place %.12g", strategies[i],
                           rh, hind);
        cr_expect_float_eq(rg, run - rh, 1e-12, "%s: regret %g", strategies[i], rg);
        cr_expect_gt(rg, 0, "%s: planned on another file, some regret", strategies[i]);
        snprintf(q, sizeof q, "SELECT count(*) FROM runs WHERE prior = 'trace:%s'",
                 DS "prefill_in512.json");
        cr_expect_eq(fx_q1(pdb, q), 1);
    }
}

/* For EPLB and OmniPlacement, on every ordered pair of the DeepSeek-V3
 * traces, the layout planned on the scored trace itself (oracle) is at
 * least as balanced, averaged over layers, as one planned on the other. */
Test(prior, oracle_is_a_bound_on_every_pair) {
    static const char *const names[] = {
        "decode_in1000out1000.json", "decode_in1800out100.json", "prefill_in1000out1000.json",
        "prefill_in1024.json", "prefill_in2000out100.json", "prefill_in4096.json",
        "prefill_in500out1500.json", "prefill_in512.json"};
    enum { N = 8, L = 58, E = 256 };
    double *w = ms_malloc(sizeof(double) * N * L * E);
    for (int i = 0; i < N; i++) {
        char path[256];
        snprintf(path, sizeof path, DS "%s", names[i]);
        trace_t *t = NULL;
        cr_assert_eq(trace_read(path, &t), MS_OK, "%s", path);
        cr_assert_eq(t->n_layers, L);
        for (int l = 0; l < L; l++) trace_layer_total(t, l, w + ((size_t)i * L + l) * E);
        trace_free(t);
    }
    const char *strategies[] = {"eplb", "omni"};
    const int devices[] = {32, 144};
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 2; k++) {
            const place_ops_t *ops = place_find(strategies[s]);
            place_env_t env = {.n_layers = L, .n_experts = E, .n_devices = devices[k],
                               .devices_per_node = 8, .n_nodes = devices[k] / 8,
                               .redundant = 32, .top_k = 8, .n_groups = 8, .topk_groups = 4,
                               .seed = 1};
            place_layout_t *lo[N];
            for (int i = 0; i < N; i++) {
                place_state_t *ps = NULL;
                lo[i] = NULL;
                cr_assert_eq(ops->init(&env, w + (size_t)i * L * E, &ps, &lo[i]), MS_OK);
                if (ps && ops->destroy) ops->destroy(ps);
            }
            for (int b = 0; b < N; b++) {
                double oracle = place_par_mean(lo[b], w + (size_t)b * L * E);
                for (int a = 0; a < N; a++) {
                    if (a == b) continue;
                    double out = place_par_mean(lo[a], w + (size_t)b * L * E);
                    cr_expect_leq(oracle, out, "%s EP%d: planned on %s, scored on %s: oracle %g "
                                 "> out-of-sample %g", strategies[s], devices[k], names[a],
                                 names[b], oracle, out);
                }
            }
            for (int i = 0; i < N; i++) place_layout_free(lo[i]);
        }
    free(w);
}

/* --window on a drifting time-axis trace: every window pair is scored, and
 * planning on the scored window itself (hindsight) does at least as well. */
Test(prior, place_window_on_a_time_axis, .init = setup, .fini = teardown) {
    trace_gen_params_t p;
    trace_gen_defaults(&p);
    p.n_layers = 58;
    p.n_experts = 256;
    p.top_k = 8;
    p.n_steps = 40;
    p.tokens = 512;
    p.skew = 1.0;
    p.drift = 0.2;
    p.seed = 5;
    trace_t *t = NULL;
    cr_assert_eq(trace_gen(&p, "drift", &t), MS_OK, "%s", ms_err_last());
    char path[128], out[128];
    snprintf(path, sizeof path, "%s/drift.npy", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    cr_assert_eq(trace_write(t, path), MS_OK, "%s", ms_err_last());
    trace_free(t);
    FILE *keep = stdout;
    stdout = fopen(out, "w");
    char *argv[] = {"place", "--strategy", "eplb", "--counts", path, "--window", "10",
                    "--redundant", "32", "-q", NULL};
    int rc = cmd_place(10, argv);
    fclose(stdout);
    stdout = keep;
    cr_assert_eq(rc, 0, "%s", ms_err_last());
    char *buf;
    size_t n;
    cr_assert_eq(ms_read_file(out, &buf, &n), MS_OK);
    const char *m = strstr(buf, "(3 pairs): mean PAR in-sample ");
    cr_assert(m, "%s", buf);
    double in, o, h, b;
    cr_assert_eq(sscanf(m, "(3 pairs): mean PAR in-sample %lf, out-of-sample %lf, hindsight "
                           "%lf, bound %lf", &in, &o, &h, &b), 4, "%s", m);
    cr_expect_lt(h, o, "%s", m);
    cr_expect_leq(b, h + 1e-12, "%s", m);
    cr_expect_gt(in, 1.0);
    free(buf);
    ms_err_quiet(1);
    cr_expect_neq(place("--strategy", "eplb", "--counts", DS "prefill_in512.json", "--window",
                        "2", NULL), 0);
    cr_expect(strstr(ms_err_last(), "needs a trace with a time axis"), "%s", ms_err_last());
    cr_expect_neq(place("--strategy", "eplb", "--counts", path, "--window", "2", "--eval", path,
                        NULL), 0);
    cr_expect(strstr(ms_err_last(), "--window plans and scores windows"), "%s", ms_err_last());
    cr_expect_neq(place("--strategy", "eplb", "--counts", path, "--prior", "past", NULL), 0);
    cr_expect(strstr(ms_err_last(), "use --window N"), "%s", ms_err_last());
}

/* Config errors name the key and leave no database. */
Test(prior, config_errors, .init = setup, .fini = teardown) {
    char db[128];
    snprintf(db, sizeof db, "%s/bad.db", dir);
    cr_expect_neq(fx_compare(write_cfg("b", "prefill_in512.json", "eplb", 1, "prior = orcale\n"), db),
                  0);
    cr_expect(strstr(ms_err_last(), "b.ini:18: prior 'orcale'"), "%s", ms_err_last());
    cr_expect_neq(fx_compare(write_cfg("b", "prefill_in512.json", "eplb", 1,
                                    "prior = trace:missing.json\n"), db), 0);
    cr_expect(strstr(ms_err_last(), "prior trace 'missing.json'"), "%s", ms_err_last());
    char extra[4200], cwd[1024];
    cr_assert(getcwd(cwd, sizeof cwd));
    snprintf(extra, sizeof extra,
             "prior = trace:%s/traces/data/mixtral-8x7b-vllm/humaneval_2_routing.jsonl\n", cwd);
    cr_expect_neq(fx_compare(write_cfg("b", "prefill_in512.json", "eplb", 1, extra), db), 0);
    cr_expect(strstr(ms_err_last(), "plan from a trace of the same model"), "%s", ms_err_last());
    cr_expect_neq(fx_compare(write_cfg("b", "prefill_in512.json", "eplb", 1, "warmup_steps = 0\n"),
                          db), 0);
    cr_expect(strstr(ms_err_last(), "warmup_steps"), "%s", ms_err_last());
    cr_expect_neq(access(db, F_OK), 0);
}

/* The report labels in-sample runs wherever it names them. */
Test(prior, report_labels_oracle_runs, .init = setup, .fini = teardown) {
    char db[128], rep[128], idx[160];
    snprintf(db, sizeof db, "%s/r.db", dir);
    snprintf(rep, sizeof rep, "%s/rep", dir);
    snprintf(idx, sizeof idx, "%s/index.md", rep);
    cr_assert_eq(fx_compare(write_cfg("o", "prefill_in512.json", "eplb", 2, "prior = oracle\n"), db),
                 0, "%s", ms_err_last());
    cr_assert_eq(fx_compare(write_cfg("o", "prefill_in512.json", "eplb", 2, "prior = past\n"), db), 0,
                 "%s", ms_err_last());
    cr_assert_eq(report_build(db, rep, "bars", NULL), MS_OK, "%s", ms_err_last());
    char *buf;
    size_t n;
    cr_assert_eq(ms_read_file(idx, &buf, &n), MS_OK);
    cr_expect(strstr(buf, "| eplb | oracle (in-sample) |"), "%s", buf);
    cr_expect(strstr(buf, "| eplb | past |"), "%s", buf);
    /* both priors of one strategy keep their place in the figures */
    cr_expect(strstr(buf, "eplb (prior oracle (in-sample))"), "%s", buf);
    cr_expect(strstr(buf, "eplb (prior past)"), "%s", buf);
    free(buf);
}
