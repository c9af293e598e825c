/* Sweeps: grid and list expansion, checks before any run, resume by config
 * hash (also after a kill), failing points, per-rank file merging, and the
 * same results under `mpirun -n 2` as serially. Every sweep here is tiny:
 * DeepSeek-V3 on 1 node x 8 devices, a few steps of 4 tokens per device. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <glob.h>
#include <libgen.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd.h"
#include "run.h"
#include "store.h"
#include "sweep.h"
#include "util.h"

static char dir[512];  /* this test's scratch folder */
static char root[512]; /* the repository (tests run from its root) */

static void setup(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/moesim-sweep-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_not_null(getcwd(root, sizeof root));
    ms_err_quiet(1);
}

static void teardown(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) cr_log_warn("could not remove %s", dir);
}

TestSuite(sweep, .init = setup, .fini = teardown);

/* dir/name with printf-style contents; returns the path (static slots). */
static const char *put(const char *name, const char *fmt, ...) {
    static char paths[8][600];
    static int k;
    char *p = paths[k++ % 8];
    snprintf(p, 600, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "cannot write %s", p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    return p;
}

static const char *at(const char *name) {
    static char paths[8][600];
    static int k;
    char *p = paths[k++ % 8];
    snprintf(p, 600, "%s/%s", dir, name);
    return p;
}

/* The base experiment: 1 node x 8 devices, 2 steps, 4 tokens per device.
 * extra goes at the end of [experiment] (line 5 on). */
static void put_base(const char *extra) {
    put("base.ini",
        "[experiment]\n"
        "name = tiny\n"
        "seed = 1\n"
        "steps = 2\n"
        "%s"
        "[cluster]\n"
        "hardware = H800\n"
        "nodes = 1\n"
        "devices_per_node = 8\n"
        "[hardware]\n" /* one node of DeepSeek-V3 needs more than 80 GB a GPU */
        "hbm_bytes = 160e9\n"
        "[model]\n"
        "preset = deepseek-v3\n"
        "[workload]\n"
        "trace = %s/traces/data/deepseek-v3-sglang/decode_in1000out1000.json\n"
        "tokens_per_device = 4\n"
        "[placement]\n"
        "strategies = static\n"
        "redundant = 0\n",
        extra, root);
}

/* A grid over redundant slots (and seeds when seeds is not NULL). */
static const char *put_grid(const char *name, const char *redundant, const char *seeds) {
    return put(name, "[sweep]\nbase = base.ini\nmode = grid\n[axes]\nplacement.redundant = %s\n%s%s\n",
               redundant, seeds ? "experiment.seed = " : "", seeds ? seeds : "");
}

static sweep_t *load(const char *path) {
    sweep_t *sw = NULL;
    cr_assert_eq(sweep_load(path, NULL, 0, &sw), MS_OK, "%s", ms_err_last());
    return sw;
}

static sweep_stats_t run_sweep(const char *path, const char *db) {
    sweep_t *sw = load(path);
    sweep_opts_t o = {.db = db};
    sweep_stats_t st;
    cr_assert_eq(sweep_run(sw, &o, &st), MS_OK, "%s", ms_err_last());
    sweep_free(sw);
    return st;
}

static sqlite3 *open_db(const char *path) {
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

static long long query(sqlite3 *db, const char *sql) {
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW, "%s", sql);
    long long v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

static long long query_file(const char *path, const char *sql) {
    sqlite3 *db = open_db(path);
    long long v = query(db, sql);
    sqlite3_close(db);
    return v;
}

/* Every run complete (its steps and layer rows all there), no row of any
 * table without its run, no config twice. */
static void assert_clean(const char *path, long long runs, int steps) {
    sqlite3 *db = open_db(path);
    cr_assert_eq(query(db, "SELECT count(*) FROM runs"), runs);
    cr_assert_eq(query(db, "SELECT count(DISTINCT config_hash) FROM runs"), runs,
                 "a config was run twice");
    cr_assert_eq(query(db, "SELECT count(*) FROM steps"), runs * steps);
    cr_assert_eq(query(db, "SELECT count(*) FROM layer_steps"), runs * steps * 58);
    cr_assert_eq(query(db, "SELECT count(*) FROM summary WHERE metric = 'par_mean'"), runs);
    const char *tables[] = {"steps", "layer_steps", "device_loads", "summary", "layer_bounds",
                            "replicas", "trace_counts"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM %s WHERE run_id NOT IN (SELECT run_id FROM runs)",
                 tables[i]);
        cr_assert_eq(query(db, sql), 0, "orphan rows in %s", tables[i]);
    }
    sqlite3_close(db);
}

/* ---- expansion ---- */

Test(sweep, grid_expands_first_axis_slowest_with_sets_applied) {
    put_base("");
    const char *s = put("g.ini",
                        "[sweep]\nbase = base.ini\n"
                        "[set]\nexperiment.steps = 3\n"
                        "[axes]\nplacement.redundant = 0, 8 ,16\nexperiment.seed = 1,2\n");
    const char *sets[] = {"workload.tokens_per_device=2"};
    sweep_t *sw = NULL;
    cr_assert_eq(sweep_load(s, sets, 1, &sw), MS_OK, "%s", ms_err_last());
    cr_assert_eq(sw->n_points, 6);
    for (int i = 0; i < 6; i++) {
        long red, seed, steps, tpd;
        const char *strat;
        cfg_t *c = sw->pt[i].cfg;
        cfg_set_kind(c, NULL); /* reads with the test's own defaults */
        cr_assert_eq(cfg_int(c, "placement", "redundant", -1, 0, 1000, &red), MS_OK);
        cr_assert_eq(cfg_int(c, "experiment", "seed", -1, 0, 1000, &seed), MS_OK);
        cr_assert_eq(cfg_int(c, "experiment", "steps", -1, 0, 1000, &steps), MS_OK);
        cr_assert_eq(cfg_int(c, "workload", "tokens_per_device", -1, 0, 1000, &tpd), MS_OK);
        cr_assert_eq(cfg_str(c, "placement", "strategies", NULL, &strat), MS_OK);
        cr_assert_eq(red, 8 * (i / 2), "point %d", i);
        cr_assert_eq(seed, 1 + i % 2, "point %d", i);
        cr_assert_eq(steps, 3, "[set] applies to every point");
        cr_assert_eq(tpd, 2, "--set applies to every point");
        cr_assert_str_eq(strat, "static");
        cr_assert_eq(strlen(sw->pt[i].hash), 16);
    }
    cr_assert_str_eq(sw->pt[3].label, "placement.redundant=8 experiment.seed=2 static");
    sweep_free(sw);
}

Test(sweep, list_points_are_multiplied_by_axes) {
    put_base("");
    const char *s = put("l.ini",
                        "[sweep]\nbase = base.ini\nmode = list\n"
                        "[point.small]\ncluster.nodes = 1\n"
                        "[point.big]\ncluster.nodes = 2\nworkload.tokens_per_device = 2\n"
                        "[axes]\nplacement.redundant = 0, 16\n");
    sweep_t *sw = load(s);
    cr_assert_eq(sw->n_points, 4);
    const char *want[] = {"small placement.redundant=0 static", "small placement.redundant=16 static",
                          "big placement.redundant=0 static", "big placement.redundant=16 static"};
    for (int i = 0; i < 4; i++) {
        cr_assert_str_eq(sw->pt[i].label, want[i]);
        long nodes;
        cfg_set_kind(sw->pt[i].cfg, NULL);
        cr_assert_eq(cfg_int(sw->pt[i].cfg, "cluster", "nodes", 0, 0, 99, &nodes), MS_OK);
        cr_assert_eq(nodes, i < 2 ? 1 : 2);
    }
    sweep_free(sw);
}

Test(sweep, set_assign_takes_the_last_dot_as_the_key) {
    cfg_t *c = cfg_new();
    cr_assert_eq(cfg_set_assign(c, "strategy.eplb.interval_steps=8", "t", 1), MS_OK);
    long v;
    cr_assert_eq(cfg_int(c, "strategy.eplb", "interval_steps", 1000, 0, 100000000, &v), MS_OK);
    cr_assert_eq(v, 8);
    cr_assert_eq(cfg_set_assign(c, "nodots=1", "t", 2), MS_ERR);
    cfg_free(c);
}

/* ---- the resume key ---- */

Test(sweep, point_hash_is_the_stored_config_hash_and_ignores_where_files_are) {
    put_base("");
    const char *s = put_grid("h.ini", "0, 8", NULL);
    const char *db = at("h.db");
    sweep_t *sw = load(s);
    sweep_stats_t st = run_sweep(s, db);
    cr_assert_eq(st.ran, 2);
    sqlite3 *h = open_db(db);
    for (int i = 0; i < sw->n_points; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM runs WHERE config_hash = '%s'",
                 sw->pt[i].hash);
        cr_assert_eq(query(h, sql), 1, "point %d not found by its hash", i + 1);
    }
    sqlite3_close(h);
    /* The same sweep from another folder, into another database: same keys. */
    mkdir(at("sub"), 0777);
    put("sub/h.ini", "[sweep]\nbase = ../base.ini\n[axes]\nplacement.redundant = 0, 8\n");
    sweep_t *other = load(at("sub/h.ini"));
    for (int i = 0; i < sw->n_points; i++) cr_assert_str_eq(other->pt[i].hash, sw->pt[i].hash);
    sweep_free(other);
    sweep_free(sw);
}

Test(sweep, resume_skips_points_already_in_the_database) {
    put_base("");
    const char *db = at("r.db");
    sweep_stats_t a = run_sweep(put_grid("part.ini", "0, 8", NULL), db);
    cr_assert_eq(a.ran, 2);
    cr_assert_eq(a.skipped, 0);
    sweep_stats_t b = run_sweep(put_grid("full.ini", "0, 8, 16", "1, 2"), db);
    cr_assert_eq(b.points, 6);
    cr_assert_eq(b.skipped, 2, "the two points of the partial sweep are done");
    cr_assert_eq(b.ran, 4);
    sweep_stats_t c = run_sweep(at("full.ini"), db);
    cr_assert_eq(c.skipped, 6);
    cr_assert_eq(c.ran, 0, "a finished sweep runs nothing again");
    assert_clean(db, 6, 2);
}

/* ---- interrupted sweeps ---- */

static void die(int point, void *ctx) {
    (void)point;
    (void)ctx;
    raise(SIGKILL);
}

/* Runs the sweep in a child; with stop set it kills itself right after its
 * first stored point. */
static pid_t spawn(const char *sweep, const char *db, int stop) {
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid) return pid;
    sweep_t *sw = NULL;
    if (sweep_load(sweep, NULL, 0, &sw)) _exit(3);
    sweep_opts_t o = {.db = db, .on_stored = stop ? die : NULL};
    sweep_stats_t st;
    _exit(sweep_run(sw, &o, &st) == MS_OK ? 0 : 4);
}

Test(sweep, killed_after_a_commit_resumes_without_duplicates) {
    put_base("");
    const char *s = put_grid("k.ini", "0, 8, 16", "1, 2");
    const char *db = at("k.db");
    int status;
    waitpid(spawn(s, db, 1), &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child was to be killed");
    assert_clean(db, 1, 2);
    sweep_stats_t st = run_sweep(s, db);
    cr_assert_eq(st.skipped, 1);
    cr_assert_eq(st.ran, 5);
    assert_clean(db, 6, 2);
}

Test(sweep, killed_at_any_moment_resumes_without_duplicates) {
    put_base("");
    put_base("");
    /* More steps, so the kill most likely lands inside a run's transaction. */
    const char *s = put("a.ini", "[sweep]\nbase = base.ini\n[set]\nexperiment.steps = 6\n"
                                 "[axes]\nplacement.redundant = 0, 8, 16, 24\nexperiment.seed = 1, 2\n");
    const char *db = at("a.db");
    pid_t pid = spawn(s, db, 0);
    long long before = 0;
    for (int i = 0; i < 20000 && before < 1; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        if (access(db, F_OK)) continue;
        sqlite3 *h;
        if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
            sqlite3_busy_timeout(h, 1000);
            sqlite3_stmt *q;
            if (sqlite3_prepare_v2(h, "SELECT count(*) FROM runs", -1, &q, NULL) == SQLITE_OK &&
                sqlite3_step(q) == SQLITE_ROW)
                before = sqlite3_column_int64(q, 0);
            sqlite3_finalize(q);
        }
        sqlite3_close(h);
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    before = query_file(db, "SELECT count(*) FROM runs");
    cr_assert_geq(before, 1);
    cr_log_info("killed with %lld of 8 runs stored", before);
    assert_clean(db, before, 6); /* a killed transaction left nothing */
    sweep_stats_t st = run_sweep(s, db);
    cr_assert_eq(st.skipped, before);
    cr_assert_eq(st.ran, 8 - before, "nothing done before the kill is repeated");
    assert_clean(db, 8, 6);
}

/* ---- failures ---- */

Test(sweep, failing_point_is_reported_and_the_others_go_on) {
    put_base("");
    const char *s = put_grid("f.ini", "0, 8, 16", NULL);
    const char *db = at("f.db");
    /* A database that refuses the point with 8 redundant slots (made by a
     * first commit, so the trigger has its runs table to sit on). */
    store_t *st0;
    cr_assert_eq(store_open(db, &st0), MS_OK);
    store_run_t r0 = {.name = "x", .strategy = "static", .model = "m", .hardware = "h",
                      .config = "", .config_hash = "-"};
    int64_t id0;
    cr_assert_eq(store_run_begin(st0, &r0, &id0), MS_OK);
    cr_assert_eq(store_run_commit(st0), MS_OK);
    cr_assert_eq(sqlite3_exec(store_db(st0),
                              "DELETE FROM runs;"
                              "CREATE TRIGGER refuse BEFORE INSERT ON runs"
                              " WHEN NEW.config LIKE '%redundant = 8%'"
                              " BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sweep_t *sw = load(s);
    char err[SWEEP_ERR_LEN];
    cr_assert_eq(sweep_run_point(sw, 1, st0, err), MS_ERR);
    cr_assert(strstr(err, "injected failure"), "the point's error is kept: %s", err);
    store_close(st0);
    sweep_free(sw);

    sweep_stats_t a = run_sweep(s, db);
    cr_assert_eq(a.failed, 1, "ran %d skipped %d", a.ran, a.skipped);
    cr_assert_eq(a.ran, 2, "the points after the failing one still ran");
    assert_clean(db, 2, 2);
    sqlite3 *h = open_db(db);
    cr_assert_eq(sqlite3_exec(h, "DROP TRIGGER refuse", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    sweep_stats_t b = run_sweep(s, db);
    cr_assert_eq(b.failed, 0);
    cr_assert_eq(b.ran, 1, "a re-run tries the failed point again");
    assert_clean(db, 3, 2);
}

/* sweep_load fails and the last message holds each needle. */
static void assert_bad(const char *path, const char *n1, const char *n2) {
    sweep_t *sw = NULL;
    cr_assert_eq(sweep_load(path, NULL, 0, &sw), MS_ERR, "%s was accepted", path);
    cr_assert_null(sw);
    cr_assert(strstr(ms_err_last(), n1), "'%s' not in: %s", n1, ms_err_last());
    if (n2) cr_assert(strstr(ms_err_last(), n2), "'%s' not in: %s", n2, ms_err_last());
}

Test(sweep, bad_sweep_files_name_file_line_and_fix) {
    put_base("");
    assert_bad(put("b1.ini", "[sweep]\nbase = base.ini\n[axes]\nplacement.redundnt = 0, 8\n"),
               "b1.ini:4: unknown key [placement] redundnt", NULL);
    assert_bad(put("b2.ini", "[sweep]\nbase = base.ini\n[axes]\nplacement.redundant = 0, 3\n"),
               "b2.ini:4:", "do not divide");
    assert_bad(put("b3.ini", "[sweep]\nbase = base.ini\n[axis]\nx.y = 1\n"),
               "b3.ini:4: unknown section [axis]", NULL);
    assert_bad(put("b4.ini", "[sweep]\nbase = base.ini\n[axes]\nplacement.redundant = 0,,8\n"),
               "b4.ini:4:", "empty value");
    assert_bad(put("b5.ini", "[sweep]\nbase = base.ini\n[axes]\nredundant = 0, 8\n"),
               "b5.ini:4:", "section.key=value");
    assert_bad(put("b6.ini", "[sweep]\nbase = base.ini\n[axes]\nplacement.redundant = 8, 8\n"),
               "are the same run", NULL);
    assert_bad(put("b7.ini", "[sweep]\nbase = base.ini\nmode = list\n"), "b7.ini:3:",
               "[point.NAME]");
    assert_bad(put("b8.ini", "[sweep]\nbase = base.ini\nmode = cube\n[axes]\nexperiment.seed = 1\n"),
               "b8.ini:3:", "grid or list");
    assert_bad(put("b9.ini", "[sweep]\nbase = base.ini\n[axes]\nexperiment.seed = 1\n"
                             "[point.a]\nexperiment.seed = 2\n"),
               "b9.ini:6: [point.a] in a grid sweep", NULL);
    assert_bad(put("b10.ini", "[sweep]\nmode = grid\n[axes]\nexperiment.seed = 1\n"),
               "no [sweep] base", NULL);
    assert_bad(put("b11.ini", "[sweep]\nbase = nowhere.ini\n[axes]\nexperiment.seed = 1\n"),
               "nowhere.ini", "cannot open");
    assert_bad(put("b12.ini", "[sweep]\nbase = base.ini\nbogus = 1\n[axes]\nexperiment.seed = 1\n"),
               "b12.ini:3: unknown key [sweep] bogus", NULL);
    assert_bad(put("b13.ini", "[sweep]\nbase = base.ini\n[axes]\n"
                              "strategy.static.order = contiguous, zigzag\n"),
               "b13.ini:4:", "zigzag");
    assert_bad(put("b14.ini", "[sweep]\nbase = base.ini\n[axes]\nworkload.trace = nothing.json\n"),
               "nothing.json", NULL);
}

Test(sweep, unknown_key_in_the_base_fails_before_anything_is_written) {
    put_base("stepz = 3\n");
    const char *s = put_grid("u.ini", "0, 8", NULL);
    assert_bad(s, "base.ini:5: unknown key [experiment] stepz", NULL);
    const char *db = at("u.db");
    char *argv[] = {"sweep", (char *)s, "--db", (char *)db, NULL};
    cr_assert_eq(cmd_sweep(4, argv), 1);
    cr_assert_neq(access(db, F_OK), 0, "a sweep that fails its checks writes no database");
}

Test(sweep, dry_run_lists_points_and_writes_nothing) {
    cr_redirect_stdout(); /* the listing */
    put_base("");
    const char *s = put_grid("d.ini", "0, 8", NULL);
    const char *db = at("d.db");
    char *argv[] = {"sweep", (char *)s, "--db", (char *)db, "--dry-run", NULL};
    cr_assert_eq(cmd_sweep(5, argv), 0);
    cr_assert_neq(access(db, F_OK), 0);
    run_sweep(put_grid("d1.ini", "0", NULL), db);
    sweep_t *sw = load(s);
    sweep_opts_t o = {.db = db, .dry_run = 1};
    sweep_stats_t st;
    cr_assert_eq(sweep_run(sw, &o, &st), MS_OK);
    cr_assert_eq(st.skipped, 1);
    cr_assert_eq(st.ran, 0);
    cr_assert(sw->pt[0].done && !sw->pt[1].done);
    sweep_free(sw);
    cr_assert_eq(query_file(db, "SELECT count(*) FROM runs"), 1);
}

/* ---- merging per-rank files ---- */

/* A file named like a rank file beside the database, whatever its age or
 * contents, is not this sweep's: it is never read, merged or deleted. */
Test(sweep, stray_rank_files_beside_the_database_are_ignored) {
    put_base("");
    const char *db = at("m.db");
    char old[700], ided[700];
    snprintf(old, sizeof old, "%s.rank1", db);           /* the name earlier sweeps used */
    sweep_rank_path(db, "1-2345", 3, ided, sizeof ided); /* another execution's */
    run_sweep(put_grid("m1.ini", "0, 8", NULL), old);
    run_sweep(put_grid("m2.ini", "0, 8", "2"), ided);
    sweep_stats_t st = run_sweep(put_grid("m.ini", "16", NULL), db);
    cr_assert_eq(st.merged, 0);
    cr_assert_eq(st.ran, 1);
    assert_clean(db, 1, 2);
    cr_assert_eq(access(old, F_OK), 0, "a file this sweep did not write is left alone");
    cr_assert_eq(access(ided, F_OK), 0, "a file this sweep did not write is left alone");
}

/* A merge copies rows of the tables this moesim knows, through its own
 * statements: SQL text stored in the merged file (its sqlite_master) is
 * never run, so a table it defines is not made in the target. */
Test(sweep, store_merge_remaps_every_table_with_a_run_id) {
    put_base("");
    const char *src = at("src.db"), *dst = at("dst.db");
    run_sweep(put_grid("s.ini", "0, 8, 16", NULL), src);
    run_sweep(put_grid("t.ini", "8", "2"), dst); /* dst: a run src lacks */
    run_sweep(put_grid("t2.ini", "16", NULL), dst); /* and one src has too */
    sqlite3 *h = open_db(src);
    /* A table a later moesim might add, and one not keyed by run. */
    cr_assert_eq(sqlite3_exec(h,
                              "CREATE TABLE extra (run_id INTEGER NOT NULL, tag TEXT);"
                              "INSERT INTO extra SELECT run_id, config_hash FROM runs;"
                              "CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('x');",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(h);
    store_t *st;
    int n = -1;
    cr_assert_eq(store_open(dst, &st), MS_OK);
    cr_assert_eq(store_merge(st, src, &n), MS_OK, "%s", ms_err_last());
    store_close(st);
    cr_assert_eq(n, 2, "the run dst already had is left out");
    assert_clean(dst, 4, 2);
    h = open_db(dst);
    cr_assert_eq(query(h, "SELECT count(*) FROM sqlite_master WHERE name = 'extra'"), 0,
                 "no CREATE from the merged file is run");
    cr_assert_eq(query(h, "SELECT count(*) FROM sqlite_master WHERE name = 'notes'"), 0);
    sqlite3_close(h);
}

/* ---- MPI ---- */

/* Columns that may differ between equal runs: ids and wall-clock stamps. */
static int volatile_column(const char *c) {
    static const char *const skip[] = {"run_id", "created_at", "timestamp", "started_at",
                                       "finished_at", "wall_s", NULL};
    for (int i = 0; skip[i]; i++)
        if (!strcmp(c, skip[i])) return 1;
    return 0;
}

/* A table's rows as text, each row led by its run's config_hash, sorted. */
static char *dump(sqlite3 *db, const char *table) {
    char sql[4096], cols[3000] = "";
    sqlite3_stmt *q;
    snprintf(sql, sizeof sql, "PRAGMA table_info(\"%s\")", table);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    int has_run = 0, n = 1;
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *c = (const char *)sqlite3_column_text(q, 1);
        has_run |= !strcmp(c, "run_id");
        if (volatile_column(c)) continue;
        size_t k = strlen(cols);
        snprintf(cols + k, sizeof cols - k, ", t.\"%s\"", c);
        n++;
    }
    sqlite3_finalize(q);
    char order[600] = "1";
    for (int i = 2; i <= n; i++) snprintf(order + strlen(order), sizeof order - strlen(order), ",%d", i);
    if (!strcmp(table, "runs") || !has_run)
        snprintf(sql, sizeof sql, "SELECT ''%s FROM \"%s\" t ORDER BY %s", cols, table, order);
    else
        snprintf(sql, sizeof sql,
                 "SELECT r.config_hash%s FROM \"%s\" t JOIN runs r ON r.run_id = t.run_id"
                 " ORDER BY %s", cols, table, order);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    size_t len = 0, cap = 1 << 16;
    char *out = ms_malloc(cap);
    out[0] = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(q); i++) {
            const char *v = (const char *)sqlite3_column_text(q, i);
            size_t need = (v ? strlen(v) : 4) + 2;
            if (len + need >= cap) out = ms_realloc(out, cap = 2 * (cap + need));
            len += (size_t)sprintf(out + len, "%s%c", v ? v : "NULL",
                                   i + 1 < sqlite3_column_count(q) ? '|' : '\n');
        }
    }
    sqlite3_finalize(q);
    return out;
}

static void assert_same_results(const char *a, const char *b) {
    sqlite3 *x = open_db(a), *y = open_db(b);
    const char *list = "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master"
                       " WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name)";
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(x, list, -1, &q, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    char *tables = ms_strdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    cr_assert_eq(sqlite3_prepare_v2(y, list, -1, &q, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), tables, "different tables");
    sqlite3_finalize(q);
    for (char *t = strtok(tables, ","); t; t = strtok(NULL, ",")) {
        char *u = dump(x, t), *v = dump(y, t);
        cr_assert(strcmp(u, v) == 0, "table %s differs (%zu vs %zu bytes)", t, strlen(u),
                  strlen(v));
        free(u);
        free(v);
    }
    free(tables);
    sqlite3_close(x);
    sqlite3_close(y);
}

/* The moesim binary built next to this test binary. */
static void moesim_path(char *out, size_t n) {
    char self[600];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(k, 0);
    self[k] = 0;
    snprintf(out, n, "%s/moesim", dirname(self));
    cr_assert_eq(access(out, X_OK), 0, "%s is missing (make builds it with the tests)", out);
}

Test(sweep, two_mpi_ranks_give_the_serial_results) {
    if (system("command -v mpirun >/dev/null 2>&1"))
        cr_skip_test("mpirun is not installed (make deps installs Open MPI)");
    if (!sweep_mpi_built())
        cr_skip_test("moesim was built with MPI=0: no MPI sweep to compare");
    put_base("");
    const char *s = put_grid("p.ini", "0, 8", "1, 2, 3");
    const char *serial = at("serial.db"), *mpi = at("mpi.db");
    sweep_stats_t st = run_sweep(s, serial);
    cr_assert_eq(st.ran, 6);

    char exe[700], cmd[3000];
    moesim_path(exe, sizeof exe);
    /* mpirun refuses root unless told; under SAN=1 Open MPI's own
     * allocations outlive MPI_Finalize, so LeakSanitizer skips stacks through
     * it (full stacks are needed to see them) and still checks moesim's. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("ASAN_OPTIONS", "fast_unwind_on_malloc=0", 1);
    char supp[700];
    snprintf(supp, sizeof supp, "suppressions=%s/tests/lsan_mpi.supp:print_suppressions=0", root);
    setenv("LSAN_OPTIONS", supp, 1);
    snprintf(cmd, sizeof cmd, "mpirun --oversubscribe -n 2 '%s' sweep '%s' --db '%s' > '%s/mpi.log' 2>&1",
             exe, s, mpi, dir);
    int rc = system(cmd);
    if (rc) {
        char log[700];
        snprintf(log, sizeof log, "%s/mpi.log", dir);
        char *text = NULL;
        ms_read_file(log, &text, NULL);
        cr_assert_fail("mpirun failed (%d):\n%s", rc, text ? text : "");
    }
    char pattern[700];
    snprintf(pattern, sizeof pattern, "%s.*.rank*", mpi);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), GLOB_NOMATCH, "rank 1's file was merged and deleted");
    globfree(&g);
    assert_clean(mpi, 6, 2);
    assert_same_results(serial, mpi);
}

Test(sweep, two_local_jobs_give_the_serial_results) {
    put_base("");
    const char *s = put_grid("j.ini", "0, 8", "1, 2, 3");
    const char *serial = at("serial.db"), *local = at("local.db");
    sweep_stats_t st = run_sweep(s, serial);
    cr_assert_eq(st.ran, 6);
    sweep_t *sw = load(s);
    sweep_opts_t o = {.db = local};
    sweep_stats_t lt;
    cr_assert_eq(sweep_local_run(sw, &o, 2, &lt), MS_OK, "%s", ms_err_last());
    cr_assert_eq(lt.ran, 6);
    cr_assert_eq(lt.failed, 0);
    char pattern[700];
    snprintf(pattern, sizeof pattern, "%s.*.rank*", local);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), GLOB_NOMATCH, "the workers' files were merged and deleted");
    globfree(&g);
    assert_clean(local, 6, 2);
    assert_same_results(serial, local);
    /* Resume rules are the serial ones: a second execution runs nothing. */
    cr_assert_eq(sweep_local_run(sw, &o, 2, &lt), MS_OK, "%s", ms_err_last());
    cr_assert_eq(lt.ran, 0);
    cr_assert_eq(lt.skipped, 6);
    sweep_free(sw);
}

Test(sweep, bad_jobs_count_is_refused_with_the_fix) {
    put_base("");
    const char *s = put_grid("jb.ini", "0, 8", NULL);
    const char *bad[] = {"0", "-2", "x", "2k", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *argv[] = {"sweep", "-j", (char *)bad[i], (char *)s, "--db", (char *)at("jb.db"), NULL};
        cr_assert_eq(cmd_sweep(6, argv), 1, "-j '%s' was accepted", bad[i]);
        cr_assert(strstr(ms_err_last(), "number of worker processes"), "-j '%s': %s", bad[i],
                  ms_err_last());
        cr_assert_neq(access(at("jb.db"), F_OK), 0, "-j '%s' wrote a database", bad[i]);
    }
}
