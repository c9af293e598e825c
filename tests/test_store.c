/* Results store: round trip, and a failed run leaves nothing. */
#include <criterion/criterion.h>
#include <string.h>
#include <sqlite3.h>
#include <stdio.h>
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
    sqlite3 *db;
    sqlite3_open(path, &db);
    cr_assert_eq(count(db, "SELECT count(*) FROM runs"), 0);
    cr_assert_eq(count(db, "SELECT count(*) FROM steps"), 0);
    sqlite3_close(db);
    unlink(path);
}

Test(store, unwritable_path_is_a_clear_error) {
    ms_err_quiet(1);
    store_t *st;
    cr_assert_eq(store_open("/nonexistent-dir/x.db", &st), MS_ERR);
    cr_assert(strstr(ms_err_last(), "/nonexistent-dir/x.db"));
}
