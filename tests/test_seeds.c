/* compare --seeds N: each strategy runs with N seeds, the summary_ci table
 * holds the mean and 95% confidence half-width per metric, and the report's
 * bars figure draws them as error bars and says which differences are
 * within the noise. */
#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "metrics.h"
#include "util.h"
#include "fixture.h"

static char dir[64];

static void setup(void) { fx_dir_make(dir, sizeof dir, "seeds"); }

static void teardown(void) { fx_dir_remove(dir); }

Test(seeds, ci95_by_hand) {
    /* 1..5: mean 3, s = sqrt(2.5); t(0.975, 4) = 2.7764 (any t table) */
    double v[] = {1, 2, 3, 4, 5}, mean, half;
    cr_assert_eq(metrics_ci95(v, 5, &mean, &half), MS_OK);
    cr_assert_float_eq(mean, 3, 1e-12);
    cr_assert_float_eq(half, 2.7764 * sqrt(2.5) / sqrt(5), 1e-4);
    /* two runs: t(0.975, 1) = 12.706 */
    double w[] = {10, 12};
    cr_assert_eq(metrics_ci95(w, 2, &mean, &half), MS_OK);
    cr_assert_float_eq(half, 12.706 * sqrt(2) / sqrt(2), 1e-3);
    ms_err_quiet(1);
    cr_assert_neq(metrics_ci95(w, 1, &mean, &half), MS_OK);
    cr_assert(metrics_ci_overlap(1.0, 0.2, 1.3, 0.2));
    cr_assert(!metrics_ci_overlap(1.0, 0.1, 1.3, 0.1));
}

static const char *write_cfg(void) {
    static char path[128];
    snprintf(path, sizeof path, "%s/s.ini", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    char cwd[1024];
    cr_assert(getcwd(cwd, sizeof cwd));
    fprintf(f, "[experiment]\nname = seeds\nseed = 7\nsteps = 2\n[cluster]\nhardware = H800\n"
               "nodes = 2\ndevices_per_node = 8\nmode = analytic\n[model]\npreset = deepseek-v3\n"
               "[workload]\ntrace = %s/traces/data/deepseek-v3-sglang/decode_in1800out100.json\n"
               "tokens_per_device = 8\n[placement]\nstrategies = static, eplb\nredundant = 16\n",
            cwd);
    fclose(f);
    return path;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = ms_malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

Test(seeds, compare_stores_runs_and_intervals_and_bars_draw_them, .init = setup,
     .fini = teardown) {
    char db[128], out[128];
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(out, sizeof out, "%s/rep", dir);
    char *argv[] = {"compare", (char *)write_cfg(), "--db", db, "--seeds", "5", NULL};
    cr_assert_eq(cmd_compare(6, argv), 0, "%s", ms_err_last());
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    const char *strat[] = {"static", "eplb"};
    for (int s = 0; s < 2; s++) {
        /* five runs, seeds 7..11, and the interval recomputed from their stored values */
        sqlite3_stmt *q;
        sqlite3_prepare_v2(h, "SELECT r.seed, m.value, r.run_id FROM runs r JOIN summary m ON "
                              "m.run_id = r.run_id AND m.metric = 'step_time_mean' WHERE "
                              "r.strategy = ?1 ORDER BY r.run_id", -1, &q, NULL);
        sqlite3_bind_text(q, 1, strat[s], -1, SQLITE_STATIC);
        double v[8];
        int n = 0;
        int64_t last = 0;
        while (sqlite3_step(q) == SQLITE_ROW && n < 8) {
            cr_assert_eq(sqlite3_column_int(q, 0), 7 + n, "seed of run %d", n);
            v[n++] = sqlite3_column_double(q, 1);
            last = sqlite3_column_int64(q, 2);
        }
        sqlite3_finalize(q);
        cr_assert_eq(n, 5, "%s: %d runs", strat[s], n);
        double mean, half;
        cr_assert_eq(metrics_ci95(v, 5, &mean, &half), MS_OK);
        cr_assert(half > 0, "seeds change the routing, so the step time varies");
        metrics_ci_t ci;
        cr_assert_eq(metrics_load_ci(h, last, &ci), MS_OK);
        cr_assert_eq(ci.n[METRIC_STEP_TIME_MEAN], 5);
        cr_assert_float_eq(ci.mean.v[METRIC_STEP_TIME_MEAN], mean, 1e-9 * mean);
        cr_assert_float_eq(ci.half[METRIC_STEP_TIME_MEAN], half, 1e-9 * mean);
        cr_assert_eq(ci.n[METRIC_PAR_MEAN], 5);
    }
    sqlite3_close(h);

    char *rargv[] = {"report", db, "-o", out, "--only", "bars", NULL};
    cr_assert_eq(cmd_report(6, rargv), 0, "%s", ms_err_last());
    char gp[160];
    snprintf(gp, sizeof gp, "%s/bars-seeds.gp", out);
    char *t = slurp(gp);
    cr_assert(strstr(t, "with yerrorbars"), "no error bars in the figure");
    /* the PAR panel's static bar: the mean over seeds and its half-width, in column 8 */
    metrics_ci_t ci;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    sqlite3_prepare_v2(h, "SELECT max(run_id) FROM runs WHERE strategy = 'static'", -1, &q, NULL);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    int64_t id = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    cr_assert_eq(metrics_load_ci(h, id, &ci), MS_OK);
    sqlite3_close(h);
    char row[160];
    snprintf(row, sizeof row, " %.9g ", ci.mean.v[METRIC_PAR_MEAN]);
    char *at = strstr(t, row);
    cr_assert(at, "static's mean PAR %s not drawn", row);
    char half[64];
    snprintf(half, sizeof half, " %.9g\n", ci.half[METRIC_PAR_MEAN]);
    char *eol = strchr(at, '\n');
    cr_assert(eol && !strncmp(eol - strlen(half) + 1, half, strlen(half)),
              "static's PAR half-width %s not at the end of its data line", half);
    free(t);
    char md[160];
    snprintf(md, sizeof md, "%s/index.md", out);
    t = slurp(md);
    cr_assert(strstr(t, "95% confidence intervals"), "the report does not say what the bars are");
    free(t);
}

Test(seeds, bad_seeds_refused, .init = setup, .fini = teardown) {
    char db[128];
    snprintf(db, sizeof db, "%s/s.db", dir);
    char *argv[] = {"compare", (char *)write_cfg(), "--db", db, "--seeds", "0", NULL};
    cr_assert_neq(cmd_compare(6, argv), 0);
    cr_assert(strstr(ms_err_last(), "--seeds"), "%s", ms_err_last());
    argv[5] = "2.5";
    cr_assert_neq(cmd_compare(6, argv), 0);
    cr_assert_neq(access(db, F_OK), 0, "nothing stored");
}
