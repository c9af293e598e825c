/* Results store: round trip, a failed run leaves nothing, and the promises
 * of docs/reliability.md: early refusals touch nothing, --replace is one
 * commit, two writers on one new database, a second writer waits. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

static char path[64];

static void fresh(void) {
    snprintf(path, sizeof path, "/tmp/moesim-store-XXXXXX");
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
}

static int count(sqlite3 *db, const char *sql) {
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    int n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return n;
}

static const store_run_t RUN = {.name = "t", .strategy = "static", .strategy_version = 1,
                                 .trace = "x.json", .model = "m", .hardware = "H800",
                                 .nodes = 1, .devices = 2, .seed = 5, .config = "[a]\n",
                                 .config_hash = "00"};

Test(store, round_trip) {
    fresh();
    store_t *st;
    cr_assert_eq(store_open(path, &st), MS_OK);
    int64_t id;
    cr_assert_eq(store_run_begin(st, &RUN, &id), MS_OK);
    cr_assert_eq(store_step(st, id, 0, 0, 1234, 16), MS_OK);
    cr_assert_eq(store_layer_step(st, id, 0, 0, 1234, 9, 8), MS_OK);
    cr_assert_eq(store_device_load(st, id, 0, 1, 7.5), MS_OK);
    cr_assert_eq(store_metric(st, id, "par_mean", 1.125, ""), MS_OK);
    cr_assert_eq(store_run_commit(st), MS_OK);
    store_close(st);

    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(count(db, "SELECT count(*) FROM runs WHERE strategy = 'static' AND seed = 5"), 1);
    cr_assert_eq(count(db, "SELECT duration_ns FROM steps"), 1234);
    cr_assert_eq(count(db, "SELECT max_load FROM layer_steps"), 9);
    cr_assert_eq(count(db, "SELECT load * 2 FROM device_loads WHERE device = 1"), 15);
    cr_assert_eq(count(db, "SELECT value * 8 FROM summary WHERE metric = 'par_mean'"), 9);
    sqlite3_close(db);
    unlink(path);
}

Test(store, aborted_run_leaves_nothing) {
    fresh();
    store_t *st;
    cr_assert_eq(store_open(path, &st), MS_OK);
    int64_t id;
    cr_assert_eq(store_run_begin(st, &RUN, &id), MS_OK);
    store_step(st, id, 0, 0, 1, 1);
    store_run_abort(st);
    /* duplicate primary key makes an insert fail inside a run */
    cr_assert_eq(store_run_begin(st, &RUN, &id), MS_OK);
    cr_assert_eq(store_step(st, id, 0, 0, 1, 1), MS_OK);
    ms_err_quiet(1);
    cr_assert_eq(store_step(st, id, 0, 0, 1, 1), MS_ERR);
    store_run_abort(st);
    store_close(st);
    /* Nothing was committed, so not even an empty database was made. */
    cr_assert_neq(access(path, F_OK), 0, "no schema-only file at %s", path);
}

Test(store, unwritable_path_is_a_clear_error) {
    ms_err_quiet(1);
    store_t *st;
    cr_assert_eq(store_open("/nonexistent-dir/x.db", &st), MS_ERR);
    cr_assert(strstr(ms_err_last(), "/nonexistent-dir/x.db"));
}

/* ---- nothing lost (docs/reliability.md) ---- */

static char dir[128];

static const char *in_dir(const char *name) {
    static char p[4][256];
    static int k;
    char *s = p[k++ % 4];
    snprintf(s, 256, "%s/%s", dir, name);
    return s;
}

static void scratch(void) {
    snprintf(dir, sizeof dir, "/tmp/moesim-store-d-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    ms_err_quiet(1);
}

static void scratch_done(void) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) cr_log_warn("cannot remove %s", dir);
}

/* Entries of dir (., .. excluded). */
static int entries(void) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static int64_t add(store_t *st, const char *name) {
    store_run_t r = RUN;
    r.name = name;
    int64_t id;
    cr_assert_eq(store_run_begin(st, &r, &id), MS_OK, "%s", ms_err_last());
    cr_assert_eq(store_step(st, id, 0, 0, 5, 1), MS_OK);
    cr_assert_eq(store_run_commit(st), MS_OK, "%s", ms_err_last());
    return id;
}

static int count_file(const char *p, const char *sql) {
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int n = count(db, sql);
    sqlite3_close(db);
    return n;
}

static char *slurp(const char *p, size_t *n) {
    char *b = NULL;
    cr_assert_eq(ms_read_file(p, &b, n), MS_OK, "%s", p);
    return b;
}

TestSuite(store_safe, .init = scratch, .fini = scratch_done);

Test(store_safe, an_empty_name_is_refused) {
    store_t *st;
    cr_assert_eq(store_open("", &st), MS_ERR);
    cr_assert_not_null(strstr(ms_err_last(), "--db ''"), "%s", ms_err_last());
    cr_assert_not_null(strstr(ms_err_last(), "file name"), "%s", ms_err_last());
}

Test(store_safe, folders_fifos_and_devices_are_refused) {
    cr_assert_eq(mkfifo(in_dir("fifo"), 0600), 0);
    const char *bad[] = {dir, in_dir("fifo"), "/dev/null"};
    for (int i = 0; i < 3; i++) {
        store_t *st;
        cr_assert_eq(store_open(bad[i], &st), MS_ERR, "%s", bad[i]);
        cr_assert_not_null(strstr(ms_err_last(), "not a regular file"), "%s", ms_err_last());
        cr_assert_not_null(strstr(ms_err_last(), bad[i]), "%s", ms_err_last());
    }
}

Test(store_safe, foreign_and_garbage_files_are_refused_untouched) {
    const char *foreign = in_dir("foreign.db"), *junk = in_dir("junk.db");
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(foreign, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1);", 0, 0, 0),
                 SQLITE_OK);
    sqlite3_close(db);
    FILE *f = fopen(junk, "w");
    for (int i = 0; i < 300; i++) fputs("not a database at all ", f);
    fclose(f);
    const char *p[] = {foreign, junk};
    const char *want[] = {"not a moesim results database", "cannot read it"};
    for (int i = 0; i < 2; i++) {
        size_t n0, n1;
        char *before = slurp(p[i], &n0);
        store_t *st;
        cr_assert_eq(store_open(p[i], &st), MS_ERR, "%s", p[i]);
        cr_assert_not_null(strstr(ms_err_last(), want[i]), "%s", ms_err_last());
        cr_assert_not_null(strstr(ms_err_last(), "--db"), "the fix: %s", ms_err_last());
        char *after = slurp(p[i], &n1);
        cr_assert(n0 == n1 && !memcmp(before, after, n0), "%s changed", p[i]);
        free(before);
        free(after);
    }
    cr_assert_eq(entries(), 2, "no journal or temporary left beside them");
}

/* --replace: the new runs are written, then the old deleted, in one
 * commit; until store_finish the database holds the old runs. */
Test(store_safe, replace_keeps_the_old_runs_until_the_new_are_complete) {
    const char *p = in_dir("r.db");
    store_t *st;
    cr_assert_eq(store_open(p, &st), MS_OK);
    add(st, "t");
    add(st, "t");
    add(st, "u");
    store_close(st);
    store_opts_t o = {.replace = "t"};
    /* A replacement that fails (closed before store_finish) changes nothing. */
    cr_assert_eq(store_open_results(p, &o, &st), MS_OK);
    add(st, "t");
    cr_assert_eq(count_file(p, "SELECT count(*) FROM runs WHERE name = 't'"), 2);
    store_close(st);
    cr_assert_eq(count_file(p, "SELECT count(*) FROM runs WHERE name = 't'"), 2);
    cr_assert_eq(count_file(p, "SELECT count(*) FROM runs"), 3);
    /* A complete one: exactly the new runs of t, u untouched. */
    cr_assert_eq(store_open_results(p, &o, &st), MS_OK);
    int64_t a = add(st, "t"), b = add(st, "t");
    cr_assert_eq(store_finish(st), MS_OK, "%s", ms_err_last());
    int64_t fa = store_final_id(st, a), fb = store_final_id(st, b);
    store_close(st);
    cr_assert(fa > 3 && fb == fa + 1, "new ids %lld %lld", (long long)fa, (long long)fb);
    cr_assert_eq(count_file(p, "SELECT count(*) FROM runs WHERE name = 't' AND run_id > 3"), 2);
    cr_assert_eq(count_file(p, "SELECT count(*) FROM runs WHERE name = 't'"), 2);
    cr_assert_eq(count_file(p, "SELECT count(*) FROM runs WHERE name = 'u'"), 1);
    cr_assert_eq(count_file(p, "SELECT count(*) FROM steps"), 3, "old steps went with their runs");
}

/* Two writers both starting on a database that does not exist: the one
 * that fails never removes the other's file, and both commits land. */
Test(store_safe, two_writers_creating_one_new_database) {
    const char *p = in_dir("n.db");
    store_t *a, *b;
    cr_assert_eq(store_open(p, &a), MS_OK);
    cr_assert_eq(store_open(p, &b), MS_OK);
    cr_assert_neq(access(p, F_OK), 0, "opening creates nothing");
    add(b, "b");
    struct stat s0, s1;
    cr_assert_eq(stat(p, &s0), 0);
    int64_t id;
    store_run_t r = RUN;
    cr_assert_eq(store_run_begin(a, &r, &id), MS_OK);
    store_run_abort(a);
    store_close(a); /* a fails: b's file stays */
    cr_assert_eq(stat(p, &s1), 0);
    cr_assert(s0.st_ino == s1.st_ino && s0.st_dev == s1.st_dev);
    cr_assert_eq(store_open(p, &a), MS_OK);
    add(a, "a");
    add(b, "b");
    store_close(a);
    store_close(b);
    cr_assert_eq(count_file(p, "SELECT count(*) FROM runs"), 3);
    cr_assert_eq(entries(), 1, "no temporary file left");
    /* And the race proper: both open before the file exists, both commit. */
    const char *q = in_dir("m.db");
    cr_assert_eq(store_open(q, &a), MS_OK);
    cr_assert_eq(store_open(q, &b), MS_OK);
    add(a, "a");
    add(b, "b"); /* b finds a's file made meanwhile: adds to it */
    store_close(a);
    store_close(b);
    cr_assert_eq(count_file(q, "SELECT count(*) FROM runs"), 2);
    cr_assert_eq(count_file(q, "SELECT count(*) FROM steps"), 2);
    cr_assert_eq(entries(), 2);
}

/* A run killed before its commit on a new database leaves no file. */
Test(store_safe, a_killed_run_on_a_new_database_leaves_no_file) {
    const char *p = in_dir("k.db");
    pid_t pid = fork();
    if (pid == 0) {
        store_t *st;
        if (store_open(p, &st)) _exit(3);
        int64_t id;
        store_run_begin(st, &RUN, &id);
        store_step(st, id, 0, 0, 1, 1);
        raise(SIGKILL);
        _exit(4);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    cr_assert_eq(entries(), 0, "no database, no journal, no schema-only file");
}

/* A child holding the write lock of p until it reads a byte (or for hold_ms). */
static pid_t hold_lock(const char *p, int *wfd, int hold_ms) {
    int fds[2], ready[2];
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[1]);
        close(ready[0]);
        sqlite3 *db;
        if (sqlite3_open(p, &db) || sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0)) _exit(3);
        if (write(ready[1], "x", 1) != 1) _exit(3);
        if (hold_ms) {
            struct timespec ts = {hold_ms / 1000, (long)(hold_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        } else {
            char c;
            if (read(fds[0], &c, 1) < 0) _exit(3);
        }
        sqlite3_exec(db, "COMMIT", 0, 0, 0);
        sqlite3_close(db);
        _exit(0);
    }
    close(fds[0]);
    close(ready[1]);
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1, "the child took the lock");
    close(ready[0]);
    *wfd = fds[1];
    return pid;
}

Test(store_safe, a_second_writer_waits_for_the_first_commit) {
    const char *p = in_dir("w.db");
    store_t *st;
    cr_assert_eq(store_open(p, &st), MS_OK);
    add(st, "first");
    store_close(st);
    int w;
    pid_t pid = hold_lock(p, &w, 300);
    store_opts_t o = {.wait_s = 60};
    cr_assert_eq(store_open_results(p, &o, &st), MS_OK);
    add(st, "second"); /* waits for the child's commit, then lands */
    store_close(st);
    close(w);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_eq(count_file(p, "SELECT count(*) FROM runs"), 2);
}

Test(store_safe, a_writer_that_waits_too_long_names_the_other_process) {
    const char *p = in_dir("w.db");
    store_t *st;
    cr_assert_eq(store_open(p, &st), MS_OK);
    add(st, "first");
    store_close(st);
    int w;
    pid_t pid = hold_lock(p, &w, 0);
    store_opts_t o = {.wait_s = 0.2};
    cr_assert_eq(store_open_results(p, &o, &st), MS_OK);
    int64_t id;
    cr_assert_eq(store_run_begin(st, &RUN, &id), MS_OK);
    cr_assert_eq(store_run_commit(st), MS_ERR);
    char want[64];
    snprintf(want, sizeof want, "pid %d", (int)pid);
    cr_assert_not_null(strstr(ms_err_last(), want), "%s", ms_err_last());
    cr_assert_not_null(strstr(ms_err_last(), "--wait-s"), "the fix: %s", ms_err_last());
    store_close(st);
    close(w);
    int status;
    waitpid(pid, &status, 0);
    cr_assert_eq(count_file(p, "SELECT count(*) FROM runs"), 1);
}

/* A rank file whose tables are views (SQL that would run on reading) is
 * refused before anything is copied; the target is untouched. */
Test(store_safe, a_rank_file_with_views_is_refused) {
    const char *src = in_dir("src.db"), *dst = in_dir("dst.db");
    store_t *st;
    cr_assert_eq(store_open(src, &st), MS_OK);
    add(st, "s");
    store_close(st);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(src, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "DROP TABLE steps; CREATE VIEW steps AS SELECT run_id,"
                                  " 0 AS step, 0 AS start_ns, 0 AS duration_ns, 0.0 AS tokens"
                                  " FROM runs;", 0, 0, 0), SQLITE_OK);
    sqlite3_close(db);
    cr_assert_eq(store_open(dst, &st), MS_OK);
    add(st, "d");
    size_t n0, n1;
    char *before = slurp(dst, &n0);
    int n = -1;
    cr_assert_eq(store_merge(st, src, &n), MS_ERR);
    cr_assert_not_null(strstr(ms_err_last(), "'steps' is a view"), "%s", ms_err_last());
    cr_assert_not_null(strstr(ms_err_last(), "src.db"), "%s", ms_err_last());
    store_close(st);
    char *after = slurp(dst, &n1);
    cr_assert(n0 == n1 && !memcmp(before, after, n0), "the target changed");
    free(before);
    free(after);
}
