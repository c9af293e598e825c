/* report: gnuplot figures from the results database. */
#include "report.h"

#include <errno.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* One colour per strategy in every figure, so a reader learns them once. */
static const struct { const char *name, *color; } COLORS[] = {
    {"static", "#7f7f7f"}, {"eplb", "#1f77b4"}, {"omni", "#d62728"},
    {"bias", "#2ca02c"},   {"bound", "#000000"},
};

static const char *strategy_color(const char *s) {
    for (size_t i = 0; i < sizeof COLORS / sizeof *COLORS; i++)
        if (!strcmp(COLORS[i].name, s)) return COLORS[i].color;
    return "#9467bd";
}

/* Style shared by every figure. */
static const char STYLE[] =
    "set terminal pngcairo size 1000,560 font 'DejaVu Sans,11' noenhanced\n"
    "set border 3\nset tics nomirror\nset grid ytics lc rgb '#dddddd'\n"
    "set key outside right top box opaque\n";

/* Pipes a script into gnuplot; checks it wrote a non-empty file. */
static int gnuplot(const char *script, const char *png) {
    FILE *p = popen("gnuplot 2>&1", "w");
    if (!p) return ms_err("cannot start gnuplot (install it: make deps)");
    fputs(script, p);
    int st = pclose(p);
    struct stat sb;
    if (st != 0 || stat(png, &sb) || sb.st_size == 0)
        return ms_err("gnuplot failed to draw %s (exit %d)", png, st);
    return MS_OK;
}

typedef struct {
    char *s;
    size_t n, cap;
} buf_t;

static void bprintf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf_t *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->s = ms_realloc(b->s, b->cap);
    }
}

/* Figure: per-layer maximum device load of every run (mean over steps),
 * with the mean device load (perfect balance, "BestEP") of the first run. */
static int fig_layer_load(sqlite3 *db, const char *dir, FILE *index) {
    sqlite3_stmt *runs;
    if (sqlite3_prepare_v2(db, "SELECT DISTINCT r.run_id, r.name, r.strategy FROM runs r "
                               "JOIN layer_steps s USING (run_id) ORDER BY r.run_id",
                           -1, &runs, NULL) != SQLITE_OK)
        return ms_err("report: %s", sqlite3_errmsg(db));
    sqlite3_stmt *q;
    sqlite3_prepare_v2(db, "SELECT layer, avg(max_load), avg(mean_load) FROM layer_steps "
                           "WHERE run_id = ? GROUP BY layer ORDER BY layer", -1, &q, NULL);
    buf_t data = {0}, plot = {0};
    int n = 0;
    while (sqlite3_step(runs) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(runs, 0);
        const char *name = (const char *)sqlite3_column_text(runs, 1);
        const char *strat = (const char *)sqlite3_column_text(runs, 2);
        bprintf(&data, "$r%d << EOD\n", n);
        sqlite3_bind_int64(q, 1, id);
        while (sqlite3_step(q) == SQLITE_ROW)
            bprintf(&data, "%d %.6g %.6g\n", sqlite3_column_int(q, 0), sqlite3_column_double(q, 1),
                    sqlite3_column_double(q, 2));
        sqlite3_reset(q);
        bprintf(&data, "EOD\n");
        bprintf(&plot, "%s$r%d using 1:2 with linespoints pt 7 ps 0.6 lw 2 lc rgb '%s' "
                       "title '%s (%s) max'", n ? ", " : "plot ", n, strategy_color(strat), strat,
                name);
        n++;
    }
    sqlite3_finalize(runs);
    sqlite3_finalize(q);
    if (!n) {
        free(data.s);
        free(plot.s);
        ms_warn("report: skipping layer_load.png: the database has no layer_steps rows "
                "(run an experiment first: moesim run CONFIG)");
        return MS_OK;
    }
    char png[4096];
    snprintf(png, sizeof png, "%s/layer_load.png", dir);
    buf_t sc = {0};
    bprintf(&sc, "%s%sset output '%s'\n"
                 "set title 'Per-layer device load: maximum per strategy, mean = perfect balance'\n"
                 "set xlabel 'MoE layer'\nset ylabel 'token-expert pairs per device per step'\n"
                 "set yrange [0:*]\n%s, $r0 using 1:3 with lines dt 2 lw 2 lc rgb '#000000' "
                 "title 'mean (BestEP)'\n",
            STYLE, data.s, png, plot.s);
    int rc = gnuplot(sc.s, png);
    free(sc.s);
    free(data.s);
    free(plot.s);
    if (rc == MS_OK)
        fprintf(index, "## Per-layer device load\n\n![per-layer load](layer_load.png)\n\n");
    return rc;
}

/* Table of every run's summary metrics. */
static void summary_table(sqlite3 *db, FILE *index) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT r.run_id, r.name, r.strategy, "
                               " (SELECT value FROM summary WHERE run_id = r.run_id AND metric = 'step_time_mean'),"
                               " (SELECT value FROM summary WHERE run_id = r.run_id AND metric = 'output_tokens_per_s_per_node'),"
                               " (SELECT value FROM summary WHERE run_id = r.run_id AND metric = 'par_mean')"
                               " FROM runs r ORDER BY r.run_id", -1, &q, NULL) != SQLITE_OK)
        return;
    fprintf(index, "| run | name | strategy | step time (ms) | output tokens/s per node | mean PAR |\n"
                   "|---|---|---|---|---|---|\n");
    while (sqlite3_step(q) == SQLITE_ROW)
        fprintf(index, "| %lld | %s | %s | %.3f | %.0f | %.3f |\n",
                (long long)sqlite3_column_int64(q, 0), sqlite3_column_text(q, 1),
                sqlite3_column_text(q, 2), sqlite3_column_double(q, 3),
                sqlite3_column_double(q, 4), sqlite3_column_double(q, 5));
    fprintf(index, "\n");
    sqlite3_finalize(q);
}

int report_make(const char *db_path, const char *dir) {
    if (access(db_path, R_OK))
        return ms_err("%s: no such results database (run an experiment first: moesim run CONFIG "
                      "--db %s)", db_path, db_path);
    sqlite3 *db;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        ms_err("%s: cannot open: %s", db_path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return MS_ERR;
    }
    if (sqlite3_exec(db, "SELECT 1 FROM runs LIMIT 1", NULL, NULL, NULL) != SQLITE_OK) {
        ms_err("%s: not a moesim results database (no runs table)", db_path);
        sqlite3_close(db);
        return MS_ERR;
    }
    if (mkdir(dir, 0777) && errno != EEXIST) {
        sqlite3_close(db);
        return ms_err("%s: cannot create the report folder: %s", dir, strerror(errno));
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/index.md", dir);
    FILE *index = fopen(path, "w");
    if (!index) {
        sqlite3_close(db);
        return ms_err("%s: cannot write: %s", path, strerror(errno));
    }
    fprintf(index, "# moesim report\n\nFrom `%s`.\n\n", db_path);
    summary_table(db, index);
    int rc = fig_layer_load(db, dir, index);
    fclose(index);
    sqlite3_close(db);
    return rc;
}
