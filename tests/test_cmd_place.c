/* `moesim place`: every registered strategy writes a well-formed layout,
 * the database gets the same figures, and every bad flag, file or shape
 * fails with a clear message and leaves no output behind. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "place.h"
#include "place_eplb.h"
#include "trace.h"
#include "util.h"

#define TRACE "traces/data/deepseek-v3-sglang/decode_in1000out1000.json"

static char dir[64];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/moesim-place-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Runs `moesim place ARGS` (a NULL-terminated list). */
static int place(const char *first, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "place";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    return cmd_place(argc, argv);
}

/* Reads a layout CSV into slot_expert[L][S]; returns the rows read. */
static int read_csv(const char *path, int L, int S, int spd, int *se) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char line[128];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_expect_str_eq(line, "layer,slot,device,expert\n");
    int rows = 0, l, s, d, e;
    while (fscanf(f, "%d,%d,%d,%d\n", &l, &s, &d, &e) == 4) {
        cr_assert(l >= 0 && l < L && s >= 0 && s < S, "row %d: layer %d slot %d", rows, l, s);
        cr_expect_eq(d, s / spd, "row %d: slot %d on device %d", rows, s, d);
        se[l * S + s] = e;
        rows++;
    }
    fclose(f);
    return rows;
}

Test(place_cmd, every_strategy_writes_a_layout) {
    make_dir();
    enum { L = 58, E = 256, S = 288 };
    int *se = malloc(sizeof(int) * L * S);
    for (int i = 0; i < place_count(); i++) {
        const char *name = place_at(i)->name;
        if (place_at(i)->requires) continue; /* the layout strategy: tested below */
        char out[128];
        snprintf(out, sizeof out, "%s/%s.csv", dir, name);
        cr_assert_eq(place("--strategy", name, "--counts", TRACE, "--devices", "32",
                           "--redundant", "32", "--out", out, "-q", NULL), 0, "%s", name);
        cr_expect_eq(read_csv(out, L, S, 9, se), L * S, "%s", name);
        for (int l = 0; l < L; l++) {
            int seen[E] = {0};
            for (int s = 0; s < S; s++) seen[se[l * S + s]]++;
            for (int e = 0; e < E; e++) cr_expect_gt(seen[e], 0, "%s layer %d expert %d", name, l, e);
        }
    }
    free(se);
    remove_dir();
}

/* The eplb layout is the pure function's output on the summed counts. */
Test(place_cmd, eplb_layout_is_the_algorithm) {
    make_dir();
    enum { L = 58, E = 256, S = 288 };
    char out[128];
    snprintf(out, sizeof out, "%s/eplb.csv", dir);
    cr_assert_eq(place("--strategy", "eplb", "--counts", TRACE, "--devices", "144", "--nodes", "18",
                       "--redundant", "32", "--out", out, "-q", NULL), 0);
    int *se = malloc(sizeof(int) * L * S), *p = malloc(sizeof(int) * L * S), c[L * E];
    cr_assert_eq(read_csv(out, L, S, 2, se), L * S);
    trace_t *t;
    cr_assert_eq(trace_read(TRACE, &t), MS_OK);
    double *w = malloc(sizeof(double) * L * E);
    for (int l = 0; l < L; l++) trace_layer_total(t, l, w + (size_t)l * E);
    cr_assert_eq(place_eplb(w, L, E, S, 8, 18, 144, p, c), MS_OK);
    cr_expect_eq(memcmp(se, p, sizeof(int) * L * S), 0);
    free(w);
    free(se);
    free(p);
    trace_free(t);
    remove_dir();
}

static double query(sqlite3 *db, const char *sql) {
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s", sql);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW, "%s", sql);
    double v = sqlite3_column_double(q, 0);
    sqlite3_finalize(q);
    return v;
}

Test(place_cmd, database_rows) {
    make_dir();
    char db[128];
    snprintf(db, sizeof db, "%s/r.db", dir);
    cr_assert_eq(place("--strategy", "eplb", "--counts", TRACE, "--redundant", "32", "--db", db,
                       "--name", "t", "-q", NULL), 0);
    cr_assert_eq(place("--strategy", "static", "--counts", TRACE, "--redundant", "32", "--db", db,
                       "--name", "t", "-q", NULL), 0);
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    cr_expect_eq(query(h, "SELECT count(*) FROM runs WHERE name = 't'"), 2);
    cr_expect_eq(query(h, "SELECT count(*) FROM layer_bounds"), 2 * 58);
    cr_expect_eq(query(h, "SELECT count(*) FROM layer_bounds WHERE bound > max_load * (1 + 1e-12)"
                          " OR best_ep > bound * (1 + 1e-12)"), 0);
    cr_expect_eq(query(h, "SELECT count(*) FROM replicas"), 2 * 58 * 256);
    cr_expect_eq(query(h, "SELECT sum(count) FROM replicas r JOIN runs USING (run_id)"
                          " WHERE strategy = 'eplb'"), 58 * 288);
    cr_expect_eq(query(h, "SELECT count(*) FROM device_loads"), 2 * 58 * 32);
    double par = query(h, "SELECT value FROM summary JOIN runs USING (run_id)"
                          " WHERE strategy = 'eplb' AND metric = 'par_mean'");
    double mean_over_max = query(h, "SELECT avg(max_load / best_ep) FROM layer_bounds"
                                    " JOIN runs USING (run_id) WHERE strategy = 'eplb'");
    cr_expect_float_eq(par, mean_over_max, 1e-9);
    cr_expect_gt(query(h, "SELECT value FROM summary JOIN runs USING (run_id)"
                          " WHERE strategy = 'static' AND metric = 'par_mean'"), par);
    cr_expect_eq(query(h, "SELECT count(*) FROM summary WHERE metric IN ('balancedness_sglang',"
                          " 'balancedness_vllm', 'gap_to_bound', 'redundant')"), 2 * 4);
    sqlite3_close(h);
    remove_dir();
}

/* A failing command must say `want` and leave out (pre-filled with "old")
 * as it was. */
static void fails(const char *want, const char *out, const char *first, ...) {
    FILE *f = fopen(out, "w");
    fputs("old", f);
    fclose(f);
    char *argv[64];
    int argc = 0;
    argv[argc++] = "place";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    cr_expect_neq(cmd_place(argc, argv), 0, "expected failure: %s", want);
    cr_expect(strstr(ms_err_last(), want), "message '%s' lacks '%s'", ms_err_last(), want);
    char buf[16] = {0};
    f = fopen(out, "r");
    cr_assert_not_null(f);
    cr_expect_eq(fread(buf, 1, sizeof buf - 1, f), 3);
    fclose(f);
    cr_expect_str_eq(buf, "old", "%s: the output was touched", want);
}

Test(place_cmd, errors) {
    make_dir();
    ms_err_quiet(1);
    char out[128], small[128], db[128];
    snprintf(out, sizeof out, "%s/l.csv", dir);
    snprintf(db, sizeof db, "%s/x.db", dir);
    snprintf(small, sizeof small, "%s/small.json", dir);
    FILE *f = fopen(small, "w");
    fputs("{\"logical_count\": [[1, 2, 3, 4], [4, 3, 2, 1]]}", f);
    fclose(f);
    const char *S = "--strategy", *C = "--counts", *O = "--out";
    fails("no --strategy", out, C, TRACE, O, out, NULL);
    fails("unknown strategy 'best'", out, S, "best", C, TRACE, O, out, NULL);
    fails("no --counts", out, S, "eplb", O, out, NULL);
    fails("nope.json", out, S, "eplb", C, "nope.json", O, out, NULL);
    fails("--devices 'x'", out, S, "eplb", C, TRACE, "--devices", "x", O, out, NULL);
    fails("--devices '0'", out, S, "eplb", C, TRACE, "--devices", "0", O, out, NULL);
    fails("32 devices do not divide over 3 nodes", out, S, "eplb", C, TRACE, "--nodes", "3", O,
          out, NULL);
    fails("do not divide over 32 devices", out, S, "eplb", C, TRACE, "--redundant", "5", O, out,
          NULL);
    fails("unknown key", out, S, "eplb", C, TRACE, "--redundant", "32", "--set",
          "strategy.eplb.windw_steps=5", O, out, NULL);
    fails("not section.key=value", out, S, "eplb", C, TRACE, "--set", "policy", O, out, NULL);
    fails("policy = 'best'", out, S, "eplb", C, TRACE, "--set", "strategy.eplb.policy=best", O,
          out, NULL);
    fails("unknown --model", out, S, "eplb", C, TRACE, "--model", "gpt", O, out, NULL);
    fails("2 MoE layers x 4 experts", out, S, "eplb", C, small, O, out, NULL);
    fails("needs a value", out, S, "eplb", C, TRACE, O, NULL);
    fails("unknown option", out, S, "eplb", C, TRACE, "--bogus", O, out, NULL);
    fails("unexpected argument", out, S, "eplb", C, TRACE, "extra", O, out, NULL);
    fails("cannot create the layout file", out, S, "eplb", C, TRACE, O, "/nonexistent/l.csv",
          "-q", NULL);
    /* a failed run leaves no database it created */
    fails("do not divide", out, S, "eplb", C, TRACE, "--redundant", "5", "--db", db, NULL);
    cr_expect_neq(access(db, F_OK), 0);
    ms_err_quiet(0);
    remove_dir();
}
