/* report: the driver. Opens the database read-only, finds its experiments,
 * writes the run table, calls each figure family and writes index.md. */
#include "report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics.h"
#include "prior.h"
#include "progress.h"
#include "report_int.h"
#include "util.h"

/* The report's progress line (a terminal only): figures of the experiment
 * being drawn. */
static progress_t prog;

const char *const report_figure_names[] = {
    "layer_max", "device_heat", "replica_heat", "traffic_heat", "trace_heat", "par_time",
    "bars",      "cdf",         "par_budget",   NULL,
};

#define REPORT_MAX_TABLE_ROWS 300

static int check_only(const char *only) {
    if (!only) return MS_OK;
    for (const char *p = only; *p;) {
        size_t k = strcspn(p, ",");
        int ok = 0;
        for (int i = 0; report_figure_names[i]; i++)
            ok |= strlen(report_figure_names[i]) == k && !strncmp(p, report_figure_names[i], k);
        if (!ok) {
            char known[256] = "";
            for (int i = 0; report_figure_names[i]; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         i ? ", " : "", report_figure_names[i]);
            return ms_err("report: unknown figure '%.*s' (known: %s)", (int)k, p, known);
        }
        p += k;
        if (*p) p++;
    }
    return MS_OK;
}

/* mkdir -p */
static int make_dir(const char *dir) {
    char *p = ms_strdup(dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0777) && errno != EEXIST) break;
        *s = '/';
    }
    int rc = MS_OK;
    struct stat sb;
    if (mkdir(p, 0777) && (errno != EEXIST || stat(p, &sb) || !S_ISDIR(sb.st_mode)))
        rc = ms_err("%s: cannot create the report folder: %s (choose another -o DIR)", dir,
                    strerror(errno));
    free(p);
    return rc;
}

static void slugify(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; *s && k + 1 < n && k < 60; s++) {
        char ch = *s;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '_' || ch == '.';
        out[k++] = ok ? ch : '_';
    }
    if (!k) out[k++] = 'x';
    else if (out[0] == '.') out[0] = '_'; /* no hidden files */
    out[k] = '\0';
}

/* One run-table cell from a stored metric: "–" when the run did not store
 * it, or when the count `need` (a metrics_id, -1 for none) is zero. */
static void cell(report_buf_t *b, const metrics_t *m, enum metrics_id id, const char *fmt,
                 double scale, int need) {
    if (!m->has[id] || (need >= 0 && metrics_get(m, (enum metrics_id)need, 0) <= 0)) {
        report_printf(b, " | –");
        return;
    }
    char v[64];
    snprintf(v, sizeof v, fmt, scale * m->v[id]);
    report_printf(b, " | %s", v);
}

/* Serving columns appear in the run table only when some run has requests. */
static void run_table(report_ctx_t *c) {
    int serving = report_value(c, "SELECT count(*) FROM requests", 0, 0) > 0;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT run_id, name, strategy, devices, %s FROM runs "
                              "ORDER BY run_id", c->prior_col);
    sqlite3_stmt *q = report_prepare(c, sql);
    if (!q) return;
    report_buf_t *b = &c->index;
    report_printf(b, "## Runs\n\n"
                     "Every run in the database. Step time is the mean simulated decode step; "
                     "tokens/s per node counts output tokens; mean PAR is the per-layer maximum "
                     "over mean device load, averaged over layers and steps (1 = perfect "
                     "balance); layout PAR is the first layout's on the scored trace's "
                     "summed counts, hindsight PAR the same strategy's layout planned on those "
                     "counts themselves (the best it could have done), regret their "
                     "difference; gap to bound is the busiest devices' load summed over layers "
                     "against the lower bound any placement with the same slots could reach; TTFT and TPOT "
                     "count requests arriving after the warm-up. Every value is the run's "
                     "stored summary metric (docs/schema.md); a dash: the run has none. "
                     "Prior is what the strategy planned from: none, past (a warm-up window "
                     "before the measured steps), trace:FILE (another trace), or oracle "
                     "(in-sample: the very trace it is scored on, a bound no deployment "
                     "reaches).\n\n");
    report_printf(b,
                  "| run | experiment | strategy | prior | EP | redundant | step time (ms) |%s "
                  "tokens/s per node | mean PAR | layout PAR | hindsight PAR | regret | "
                  "GB migrated | gap to bound |\n"
                  "|---:|---|---|---|---:|---:|---:|%s---:|---:|---:|---:|---:|---:|---:|\n",
                  serving ? " TPOT mean (ms) | TPOT p99 (ms) | TTFT p50 (ms) | TTFT p99 (ms) |"
                          : "",
                  serving ? "---:|---:|---:|---:|" : "");
    int rows = 0, more = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (rows++ >= REPORT_MAX_TABLE_ROWS) {
            more++;
            continue;
        }
        int64_t id = sqlite3_column_int64(q, 0);
        const char *name = (const char *)sqlite3_column_text(q, 1);
        const char *strat = (const char *)sqlite3_column_text(q, 2);
        int devices = sqlite3_column_int(q, 3);
        report_printf(b, "| %lld | ", (long long)id);
        report_md(b, name ? name : "");
        report_printf(b, " | ");
        report_md(b, strat ? strat : "");
        report_printf(b, " | ");
        report_md(b, prior_display((const char *)sqlite3_column_text(q, 4)));
        /* Every cell is a stored metric (metrics.c defines them); a run
         * that lacks one shows a dash, nothing is recomputed here. */
        metrics_t m;
        if (metrics_load(c->db, id, &m)) memset(&m, 0, sizeof m);
        report_printf(b, " | %d", devices);
        cell(b, &m, METRIC_REDUNDANT, "%.0f", 1, -1);
        cell(b, &m, METRIC_STEP_TIME_MEAN, "%.2f", 1, -1);
        if (serving) {
            cell(b, &m, METRIC_TPOT_MEAN, "%.2f", 1, METRIC_TPOT_REQUESTS);
            cell(b, &m, METRIC_TPOT_P99, "%.2f", 1, METRIC_TPOT_REQUESTS);
            cell(b, &m, METRIC_TTFT_P50, "%.1f", 1, METRIC_LATENCY_REQUESTS);
            cell(b, &m, METRIC_TTFT_P99, "%.1f", 1, METRIC_LATENCY_REQUESTS);
        }
        cell(b, &m, METRIC_OUT_TPS_NODE, "%.0f", 1, -1);
        cell(b, &m, METRIC_PAR_MEAN, "%.3f", 1, -1);
        cell(b, &m, METRIC_LAYOUT_PAR_MEAN, "%.3f", 1, -1);
        cell(b, &m, METRIC_PAR_MEAN_HINDSIGHT, "%.3f", 1, -1);
        cell(b, &m, METRIC_REGRET, "%+.3f", 1, -1);
        cell(b, &m, METRIC_MIGRATED_GB, "%.2f", 1, -1);
        cell(b, &m, METRIC_GAP_TO_BOUND, "%+.1f%%", 100, -1);
        report_printf(b, " |\n");
    }
    sqlite3_finalize(q);
    if (more) report_printf(b, "\n%d later runs are not listed (query the runs table).\n", more);
    report_printf(b, "\n");
}

/* The latest run of each strategy among runs named name, in run order. */
static int load_exp(report_ctx_t *c, const char *name, report_exp_t *e) {
    /* A strategy run with two priors (past and oracle) shows both. */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT run_id, strategy, coalesce(trace, ''), devices, nodes, %s AS pr FROM runs r "
             "WHERE name = ?1 AND run_id = (SELECT max(run_id) FROM runs "
             "WHERE name = r.name AND strategy = r.strategy AND %s = pr) ORDER BY run_id",
             c->prior_col, c->prior_col);
    sqlite3_stmt *q = report_prepare(c, sql);
    if (!q) return MS_ERR;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->n = 0;
    while (sqlite3_step(q) == SQLITE_ROW && e->n < REPORT_MAX_RUNS) {
        report_run_t *r = &e->run[e->n++];
        r->id = sqlite3_column_int64(q, 0);
        snprintf(r->strategy, sizeof r->strategy, "%s", (const char *)sqlite3_column_text(q, 1));
        snprintf(r->trace, sizeof r->trace, "%s", (const char *)sqlite3_column_text(q, 2));
        r->devices = sqlite3_column_int(q, 3);
        r->nodes = sqlite3_column_int(q, 4);
        snprintf(r->prior, sizeof r->prior, "%s", (const char *)sqlite3_column_text(q, 5));
    }
    sqlite3_finalize(q);
    return MS_OK;
}

/* A figure's outcome into the totals: skips are already counted. */
static int tally(int rc, int *failed) {
    if (rc == MS_ERR) *failed = 1;
    return rc;
}

static void experiments(report_ctx_t *c, int *failed) {
    sqlite3_stmt *q = report_prepare(c, "SELECT name, max(run_id) AS last, count(*) FROM runs "
                                        "GROUP BY name ORDER BY last DESC");
    if (!q) {
        *failed = 1;
        return;
    }
    char used[REPORT_MAX_EXPERIMENTS][96];
    int n = 0, older = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (n == REPORT_MAX_EXPERIMENTS) {
            older++;
            continue;
        }
        report_exp_t e;
        if (load_exp(c, (const char *)sqlite3_column_text(q, 0), &e)) {
            *failed = 1;
            break;
        }
        slugify(e.name, e.slug, sizeof e.slug);
        for (int i = 0; i < n; i++)
            if (!strcmp(used[i], e.slug)) {
                size_t k = strlen(e.slug);
                snprintf(e.slug + k, sizeof e.slug - k, "-%d", n);
                break;
            }
        snprintf(used[n++], sizeof used[0], "%s", e.slug);
        int total = sqlite3_column_int(q, 2);
        report_printf(&c->index, "## Experiment ");
        report_md(&c->index, e.name);
        report_printf(&c->index, "\n\nFigures below show runs ");
        report_run_list(&c->index, &e, NULL);
        report_printf(&c->index, " (the latest run of each strategy named ");
        report_md(&c->index, e.name);
        report_printf(&c->index, "%s).\n\n",
                      total > e.n ? "; earlier runs of the same name appear only in the run table"
                                  : "");
        struct { const char *name; int (*fn)(report_ctx_t *, const report_exp_t *); } figs[] = {
            {"layer_max", report_fig_layer_max}, {"device_heat", report_fig_device_heat},
            {"replica_heat", report_fig_replica_heat}, {"traffic_heat", report_fig_traffic_heat},
            {"par_time", report_fig_par_time},
            {"bars", report_fig_bars}, {"cdf", report_fig_cdf},
        };
        size_t nf = sizeof figs / sizeof *figs;
        for (size_t i = 0; i < nf; i++) {
            if (!report_wanted(c, figs[i].name)) continue;
            if (prog.on) { /* gnuplot takes seconds a figure: a line with an ETA */
                char d[160];
                snprintf(d, sizeof d, "experiment %.80s, figure %s", e.name, figs[i].name);
                progress_update(&prog, (double)i, (double)nf, d, 1);
            }
            tally(figs[i].fn(c, &e), failed);
        }
    }
    sqlite3_finalize(q);
    if (older)
        report_printf(&c->index, "%d older experiment name%s %s no figures of %s own (only the "
                                 "latest %d are drawn; see the run table).\n\n",
                      older, older > 1 ? "s" : "", older > 1 ? "have" : "has",
                      older > 1 ? "their" : "its", REPORT_MAX_EXPERIMENTS);
}

static int build(const char *db_path, const char *dir, const char *only, report_result_t *res);

int report_build(const char *db_path, const char *dir, const char *only, report_result_t *res) {
    progress_begin(&prog, "report");
    int rc = build(db_path, dir, only, res);
    progress_end(&prog);
    return rc;
}

static int build(const char *db_path, const char *dir, const char *only, report_result_t *res) {
    report_result_t local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    if (check_only(only)) return MS_ERR;
    if (access(db_path, R_OK))
        return ms_err("%s: cannot read the results database: %s (run an experiment first: "
                      "moesim compare CONFIG --db %s)", db_path, strerror(errno), db_path);
    report_ctx_t c = {.dir = dir, .only = only, .res = res};
    if (sqlite3_open_v2(db_path, &c.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        ms_err("%s: cannot open: %s", db_path, sqlite3_errmsg(c.db));
        sqlite3_close(c.db);
        return MS_ERR;
    }
    sqlite3_busy_timeout(c.db, 10000);
    static const char *const TABLES[] = {"runs", "steps", "layer_steps", "device_loads", "summary",
                                         "layer_bounds", "replicas", "trace_counts", "replans",
                                         "migrations", "requests"};
    int64_t nruns = 0;
    for (size_t i = 0; i < sizeof TABLES / sizeof *TABLES; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", TABLES[i]);
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(c.db, sql, -1, &q, NULL) != SQLITE_OK ||
            sqlite3_step(q) != SQLITE_ROW) {
            ms_err("%s: not a moesim results database (%s: %s); give the file written by "
                   "moesim run/compare --db", db_path, TABLES[i], sqlite3_errmsg(c.db));
            sqlite3_finalize(q);
            sqlite3_close(c.db);
            return MS_ERR;
        }
        if (i == 0) nruns = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    c.prior_col = report_value(&c, "SELECT count(*) FROM pragma_table_info('runs') "
                                   "WHERE name = 'prior'", 0, 0) > 0 ? "prior" : "'oracle'";
    if (!nruns) {
        sqlite3_close(c.db);
        return ms_err("%s: the database holds no runs, nothing to draw (run an experiment: "
                      "moesim compare CONFIG --db %s)", db_path, db_path);
    }
    if (make_dir(dir)) {
        sqlite3_close(c.db);
        return MS_ERR;
    }

    int failed = 0;
    const char *base = strrchr(db_path, '/');
    report_printf(&c.index, "# moesim report\n\nDrawn from ");
    report_md(&c.index, base ? base + 1 : db_path);
    report_printf(&c.index, " (%lld run%s). Each figure is a PNG with an SVG beside it and the "
                            "gnuplot script that drew it, its data inline; docs/report.md gives "
                            "the SQL behind each figure.\n\n",
                  (long long)nruns, nruns == 1 ? "" : "s");
    run_table(&c);
    experiments(&c, &failed);
    if (report_wanted(&c, "trace_heat")) {
        report_printf(&c.index, "## Traces\n\n");
        tally(report_fig_trace_heat(&c), &failed);
    }
    if (report_wanted(&c, "par_budget")) {
        report_printf(&c.index, "## Across runs\n\n");
        tally(report_fig_par_budget(&c), &failed);
    }
    /* All or nothing: the figures and the index wait under temporary names
     * and are renamed into place only when every one of them is whole, so
     * a failure (gnuplot, a full disk) leaves the folder as it was. */
    sqlite3_close(c.db);
    int rc = MS_OK;
    if (failed || res->failed)
        rc = ms_err("report: %d figure%s failed to render (see the messages above); nothing in "
                    "%s was replaced", res->failed ? res->failed : 1,
                    res->failed > 1 ? "s" : "", dir);
    else if (!res->drawn)
        rc = ms_err("report: no figure could be drawn from %s: %s", db_path,
                    res->n_notes ? res->notes[0] : "no data");
    else if (report_stage_text(&c, "index.md", c.index.s) || report_commit(&c))
        rc = MS_ERR; /* said, naming the file */
    report_discard(&c);
    report_buf_free(&c.index);
    return rc;
}

int report_make(const char *db_path, const char *out_dir) {
    return report_build(db_path, out_dir, NULL, NULL);
}
