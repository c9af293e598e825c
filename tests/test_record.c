/* Tests of the run recorder: the hash is the config text's, an aborted run
 * leaves no row in any table, and a committed run holds every row handed
 * to it. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "record.h"
#include "util.h"

static double q1(store_t *st, const char *sql) {
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(store_db(st), sql, -1, &q, NULL), SQLITE_OK, "%s", sql);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    double v = sqlite3_column_double(q, 0);
    sqlite3_finalize(q);
    return v;
}

static const store_run_t META = {.name = "r", .strategy = "static", .model = "m",
                                 .hardware = "h", .nodes = 1, .devices = 2,
                                 .config = "ignored", .config_hash = "ignored"};

Test(record, hash_is_the_config_texts) {
    char a[17], b[17], c[17];
    record_hash("[placement]\nstrategies = static\n", a);
    record_hash("[placement]\nstrategies = eplb\n", b);
    record_hash("[placement]\nstrategies = static\n", c);
    cr_assert_eq(strlen(a), 16);
    cr_assert_str_neq(a, b);
    cr_assert_str_eq(a, c);
    /* The hash of the empty text is the hash function's offset basis. */
    record_hash("", a);
    char want[17];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)ms_hash64("", 0));
    cr_assert_str_eq(a, want);
}

static void rows(record_t *r) {
    cr_assert_eq(record_step(r, 0, 0, 10, 4), MS_OK);
    cr_assert_eq(record_replan(r, 10, 0, 1, 100), MS_OK);
    store_migration_t m = {.time_ns = 10, .done_ns = 20, .bytes = 100, .dst_device = 1};
    cr_assert_eq(record_migration(r, &m), MS_OK);
    store_request_t q[2] = {{.request = 0, .done_ns = 5, .output_tokens = 1},
                            {.request = 1, .done_ns = 6, .output_tokens = 1}};
    cr_assert_eq(record_requests(r, q, 2), MS_OK);
    metrics_t mt = {0};
    metrics_set(&mt, METRIC_PAR_MEAN, 1.25);
    metrics_set(&mt, METRIC_STEP_TIME_MEAN, 3);
    cr_assert_eq(record_metrics(r, &mt), MS_OK);
}

Test(record, abort_leaves_nothing_and_commit_keeps_everything) {
    store_t *st;
    cr_assert_eq(store_open(":memory:", &st), MS_OK);
    record_t r;
    cr_assert_eq(record_begin(&r, st, &META, "text one"), MS_OK);
    rows(&r);
    record_abort(&r);
    record_abort(&r); /* twice is harmless */
    const char *tables[] = {"runs", "steps", "replans", "migrations", "requests", "summary"};
    for (int i = 0; i < 6; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", tables[i]);
        cr_assert_eq(q1(st, sql), 0, "%s kept rows of an aborted run", tables[i]);
    }
    cr_assert_eq(record_begin(&r, st, &META, "text two"), MS_OK);
    rows(&r);
    cr_assert_eq(record_commit(&r), MS_OK);
    record_abort(&r); /* after a commit: nothing to undo */
    cr_assert_eq(q1(st, "SELECT count(*) FROM runs"), 1);
    cr_assert_eq(q1(st, "SELECT count(*) FROM requests"), 2);
    cr_assert_eq(q1(st, "SELECT count(*) FROM migrations"), 1);
    cr_assert_eq(q1(st, "SELECT value FROM summary WHERE metric = 'par_mean'"), 1.25);
    cr_assert_eq(q1(st, "SELECT count(*) FROM summary WHERE metric = 'step_time_mean'"
                        " AND unit = 'ms'"), 1);
    char h[17], sql[128];
    record_hash("text two", h);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM runs WHERE config = 'text two' AND "
                              "config_hash = '%s' AND run_id = %lld", h, (long long)r.run_id);
    cr_assert_eq(q1(st, sql), 1);
    store_close(st);
}
