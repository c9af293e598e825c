/* fixture: what many test files share, a scratch folder per test, the
 * first value a query returns, a compare run and a round-robin layout. Header-only (static
 * inline), so each test file takes just what it uses. */
#ifndef MOESIM_TEST_FIXTURE_H
#define MOESIM_TEST_FIXTURE_H

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "place.h"
#include "util.h"

/* A fresh folder /tmp/moesim-TAG-XXXXXX in dir[n], errors kept quiet (the
 * tests check them). */
static inline void fx_dir_make(char *dir, size_t n, const char *tag) {
    snprintf(dir, n, "/tmp/moesim-%s-XXXXXX", tag);
    cr_assert(mkdtemp(dir));
    ms_err_quiet(1);
}

/* Removes the folder fx_dir_make made and all in it. */
static inline void fx_dir_remove(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The first column of the first row sql returns on h (a row must come). */
static inline double fx_q1_on(sqlite3 *h, const char *sql) {
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &q, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(h));
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW, "%s", sql);
    double v = sqlite3_column_double(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* The same on the database file db. */
static inline double fx_q1(const char *db, const char *sql) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    double v = fx_q1_on(h, sql);
    sqlite3_close(h);
    return v;
}

/* `moesim compare CFG --db DB`; its exit status. */
static inline int fx_compare(const char *cfg, const char *db) {
    char *argv[] = {"compare", (char *)cfg, "--db", (char *)db, NULL};
    return cmd_compare(4, argv);
}

/* Layout: slot s holds expert s % E, spd slots a device, every layer. */
static inline place_layout_t *fx_layout(int L, int E, int D, int dpn, int spd) {
    place_layout_t *lo = place_layout_new(L, E, D, dpn);
    int *se = ms_malloc((size_t)D * spd * sizeof *se);
    for (int s = 0; s < D * spd; s++) se[s] = s % E;
    for (int l = 0; l < L; l++) cr_assert_eq(place_layer_set(lo, l, spd, se), MS_OK);
    free(se);
    return lo;
}

#endif
