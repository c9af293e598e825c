/* report_serve: what clients feel and the cluster earns: latency and
 * throughput bars per strategy (figure e) and the TTFT/TPOT distributions
 * of served requests (figure f). */
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "report_int.h"
#include "util.h"

#define CDF_POINTS 400 /* a CDF is drawn through this many quantiles */

void report_lat_free(report_lat_t *l) {
    free(l->ttft_ms);
    free(l->tpot_ms);
    l->ttft_ms = l->tpot_ms = NULL;
}

int report_latency(report_ctx_t *c, int64_t run, report_lat_t *l) {
    memset(l, 0, sizeof *l);
    int64_t n = (int64_t)report_value(c, "SELECT count(*) FROM requests WHERE run_id = ?1", run, 0);
    if (n <= 0) return REPORT_SKIP;
    sqlite3_stmt *q = report_prepare(c, "SELECT arrival_ns, first_token_ns, done_ns, output_tokens "
                                        "FROM requests WHERE run_id = ?1 ORDER BY request");
    if (!q) return MS_ERR;
    sqlite3_bind_int64(q, 1, run);
    store_request_t *r = ms_malloc((size_t)n * sizeof *r);
    int64_t k = 0;
    while (sqlite3_step(q) == SQLITE_ROW && k < n) {
        r[k] = (store_request_t){.arrival_ns = sqlite3_column_int64(q, 0),
                                 .first_token_ns = sqlite3_column_int64(q, 1),
                                 .done_ns = sqlite3_column_int64(q, 2),
                                 .output_tokens = sqlite3_column_int(q, 3)};
        k++;
    }
    sqlite3_finalize(q);
    int64_t w0 = llround(report_metric(c, run, "window_start", 0) * 1e9);
    l->ttft_ms = ms_malloc((size_t)k * sizeof *l->ttft_ms);
    l->tpot_ms = ms_malloc((size_t)k * sizeof *l->tpot_ms);
    metrics_latencies(r, k, w0, 1, l->ttft_ms, &l->n, l->tpot_ms, &l->n_tpot);
    free(r);
    if (!l->n) {
        report_lat_free(l);
        return REPORT_SKIP;
    }
    gsl_sort(l->ttft_ms, 1, (size_t)l->n);
    gsl_sort(l->tpot_ms, 1, (size_t)l->n_tpot);
    return MS_OK;
}

/* One panel of the bar figure: a metric per run. */
typedef struct bar_metric {
    const char *title;  /* with unit */
    int lower_better;
    const char *fmt;    /* value label */
    int is_par;         /* draws the BestEP line and the bound region */
    enum metrics_id id;
    double v[REPORT_MAX_RUNS];
    double half[REPORT_MAX_RUNS]; /* 95% half-width over seeds (summary_ci), 0 without */
    int has[REPORT_MAX_RUNS];
} bar_metric_t;

/* The experiment's mean PAR of the lower bound: what the best placement
 * with the same slots would reach (1 = BestEP). */
static double bound_par(report_ctx_t *c, const report_exp_t *e) {
    double best = -1;
    for (int i = 0; i < e->n; i++) {
        double b = report_metric(c, e->run[i].id, "bound_par_mean", -1);
        if (b > 0 && (best < 0 || b < best)) best = b;
    }
    return best;
}

static void bar_panel(report_fig_t *f, const report_exp_t *e, const bar_metric_t *m, int k,
                      int base, double par_bound) {
    double top = 0;
    for (int i = 0; i < e->n; i++)
        if (m->has[i] && m->v[i] + m->half[i] > top) top = m->v[i] + m->half[i];
    int errs = 0;
    for (int i = 0; i < e->n; i++) errs |= m->has[i] && m->half[i] > 0;
    report_printf(&f->data, "$m%d << EOD\n", k);
    int x = 0;
    for (int i = 0; i < e->n; i++) {
        if (!m->has[i]) continue;
        char val[64], rel[64] = "";
        snprintf(val, sizeof val, m->fmt, m->v[i]);
        if (base >= 0 && i != base && m->has[base] && m->v[base] > 0)
            snprintf(rel, sizeof rel, "%+.0f%%", 100 * (m->v[i] / m->v[base] - 1));
        /* The change goes inside the bar, or above its value when the bar
         * is too short to hold it. */
        int inside = top > 0 && m->v[i] / (top * 1.2) > 0.12;
        /* The line starts with a number and the name is a quoted field
         * (quote_gp_field): no name can end the block or become a command. */
        report_printf(&f->data, "%d ", x++);
        report_field(&f->data, e->run[i].strategy);
        report_printf(&f->data, " %.9g %d \"%s\" \"%s\" \"%s\" %.9g\n", m->v[i],
                      report_rgb(e->run[i].strategy), val, inside ? rel : "", inside ? "" : rel,
                      m->half[i]);
    }
    report_printf(&f->data, "EOD\n");
    /* A few bars keep a bar's width: pad the range instead of stretching. */
    double pad = x < 3 ? (3.0 - x) / 2 + 0.6 : 0.6;
    report_printf(&f->body, "  unset arrow\n  unset label\n  set title \"%s\\n%s is better\"\n"
                            "  set xrange [%g:%g]\n  set yrange [0:%.6g]\n",
                  m->title, m->lower_better ? "lower" : "higher", -pad, x - 1 + pad,
                  top > 0 ? top * 1.2 : 1);
    if (par_bound > 0)
        report_printf(&f->body, "  set label 'dashed: BestEP; grey: below the lower bound' at "
                                "graph 0.5, graph 0.97 center font ',9' tc rgb '#555555'\n");
    report_printf(&f->body, "  plot ");
    if (par_bound > 0)
        report_printf(&f->body,
                      "%.6g with filledcurves y1=0 fs solid 1.0 noborder lc rgb '#e6e6e6' "
                      "notitle, \\\n       ",
                      par_bound);
    report_printf(&f->body,
                  "$m%d using 1:3:4:xtic(2) with boxes lc rgb variable notitle, \\\n"
                  "       $m%d using 1:3:5 with labels offset 0,0.7 font ',11' notitle, \\\n"
                  "       $m%d using 1:(0):6 with labels offset 0,0.8 font ',10' tc rgb '#ffffff' "
                  "notitle, \\\n"
                  "       $m%d using 1:3:7 with labels offset 0,1.9 font ',10' tc rgb '#555555' "
                  "notitle",
                  k, k, k, k);
    /* Seeds: the 95% confidence interval of the mean, column 8 */
    if (errs)
        report_printf(&f->body, ", \\\n       $m%d using 1:3:8 with yerrorbars pt 0 lw 1.5 "
                                "lc rgb '#000000' notitle", k);
    /* Perfect balance in front of the bars, so it reads across them. */
    if (par_bound > 0)
        report_printf(&f->body, ", \\\n       1 with lines dt 2 lw 1.5 lc rgb '#000000' notitle");
    report_printf(&f->body, "\n");
}

/* In words: which strategies differ by less than the noise, panel by
 * panel (their 95% intervals overlap). */
static void noise_words(report_buf_t *b, const report_exp_t *e, const bar_metric_t *m, int np,
                        int seeds) {
    report_printf(b, " Bars are means over up to %d seeds; the error bars are 95%% confidence "
                     "intervals (Student t).", seeds);
    for (int k = 0; k < np; k++) {
        int said = 0;
        for (int i = 0; i < e->n; i++)
            for (int j = i + 1; j < e->n; j++) {
                if (!m[k].has[i] || !m[k].has[j] || m[k].half[i] <= 0 || m[k].half[j] <= 0 ||
                    !metrics_ci_overlap(m[k].v[i], m[k].half[i], m[k].v[j], m[k].half[j]))
                    continue;
                report_printf(b, said ? "; " : " %s: ", m[k].title);
                report_md(b, e->run[i].strategy);
                report_printf(b, " and ");
                report_md(b, e->run[j].strategy);
                said = 1;
            }
        if (said) report_printf(b, " differ by less than the noise (their intervals overlap).");
    }
}

int report_fig_bars(report_ctx_t *c, const report_exp_t *e) {
    /* Every bar is a stored metric (metrics.c); nothing is recomputed. */
    metrics_t mt[REPORT_MAX_RUNS];
    static metrics_ci_t ci[REPORT_MAX_RUNS];
    int serving = 0, seeds = 0;
    for (int i = 0; i < e->n; i++) {
        if (metrics_load(c->db, e->run[i].id, &mt[i]) ||
            metrics_load_ci(c->db, e->run[i].id, &ci[i]))
            return MS_ERR;
        serving |= metrics_get(&mt[i], METRIC_LATENCY_REQUESTS, 0) > 0;
    }
    bar_metric_t m[6];
    memset(m, 0, sizeof m);
    int nm = 0;
    static const struct {
        enum metrics_id id, need;
        const char *title, *fmt;
    } SERVE[] = {
        {METRIC_TPOT_MEAN, METRIC_TPOT_REQUESTS, "TPOT mean (ms)", "%.1f"},
        {METRIC_TPOT_P99, METRIC_TPOT_REQUESTS, "TPOT p99 (ms)", "%.1f"},
        {METRIC_TTFT_P50, METRIC_LATENCY_REQUESTS, "TTFT p50 (ms)", "%.0f"},
        {METRIC_TTFT_P99, METRIC_LATENCY_REQUESTS, "TTFT p99 (ms)", "%.0f"},
    };
    if (serving) {
        for (int k = 0; k < 4; k++) {
            m[k] = (bar_metric_t){.title = SERVE[k].title, .lower_better = 1, .fmt = SERVE[k].fmt,
                                  .id = SERVE[k].id};
            for (int i = 0; i < e->n; i++) {
                m[k].v[i] = metrics_get(&mt[i], SERVE[k].id, 0);
                m[k].has[i] = mt[i].has[SERVE[k].id] &&
                              metrics_get(&mt[i], SERVE[k].need, 0) > 0;
            }
        }
        nm = 4;
    } else {
        m[0] = (bar_metric_t){.title = "decode step time (ms)", .lower_better = 1, .fmt = "%.1f",
                              .id = METRIC_STEP_TIME_MEAN};
        for (int i = 0; i < e->n; i++) {
            m[0].v[i] = metrics_get(&mt[i], METRIC_STEP_TIME_MEAN, 0);
            m[0].has[i] = mt[i].has[METRIC_STEP_TIME_MEAN];
        }
        nm = 1;
    }
    bar_metric_t *tp = &m[nm++], *par = &m[nm++];
    *tp = (bar_metric_t){.title = "output tokens/s per node", .lower_better = 0, .fmt = "%.0f",
                         .id = METRIC_OUT_TPS_NODE};
    *par = (bar_metric_t){.title = "mean PAR (max/mean device load)", .lower_better = 1,
                          .fmt = "%.2f", .is_par = 1, .id = METRIC_PAR_MEAN};
    for (int i = 0; i < e->n; i++) {
        tp->v[i] = metrics_get(&mt[i], METRIC_OUT_TPS_NODE, 0);
        tp->has[i] = mt[i].has[METRIC_OUT_TPS_NODE];
        par->v[i] = metrics_get(&mt[i], METRIC_PAR_MEAN, 0);
        par->has[i] = mt[i].has[METRIC_PAR_MEAN];
    }

    /* A strategy run with compare --seeds N: its bar is the mean over the
     * seeds, with the 95% confidence interval (summary_ci, held by the
     * latest run) as an error bar. */
    for (int k = 0; k < nm; k++)
        for (int i = 0; i < e->n; i++) {
            int n = ci[i].n[m[k].id];
            if (!m[k].has[i] || n < 2) continue;
            m[k].v[i] = ci[i].mean.v[m[k].id];
            m[k].half[i] = ci[i].half[m[k].id];
            if (n > seeds) seeds = n;
        }
    int any = 0, base = -1;
    for (int k = 0; k < nm; k++)
        for (int i = 0; i < e->n; i++) any |= m[k].has[i];
    if (!any)
        return report_skip(c, "figure e (latency and throughput bars) for experiment '%s': its "
                              "runs have no steps, requests or summary metrics (run it again: "
                              "moesim compare CONFIG)", e->name);
    for (int i = 0; i < e->n; i++)
        if (report_baseline(e->run[i].strategy)) base = i;

    char stem[160];
    snprintf(stem, sizeof stem, "bars-%s", e->slug);
    report_fig_t f = {.stem = stem, .title = "e. Latency and throughput per strategy"};
    /* Panels only for metrics some run has. */
    int np = 0;
    for (int k = 0; k < nm; k++) {
        int has = 0;
        for (int i = 0; i < e->n; i++) has |= m[k].has[i];
        if (has) m[np++] = m[k];
    }
    int cols = np > 3 ? 3 : np, rows = (np + cols - 1) / cols;
    f.width = cols > 1 ? 400 * cols : 600;
    f.height = rows > 1 ? 820 : 470;
    report_printf(&f.body, "  set multiplot layout %d,%d title ", rows, cols);
    report_buf_t t = {0};
    report_printf(&t, "Latency and throughput per strategy: experiment %s", e->name);
    report_quote(&f.body, t.s);
    report_buf_free(&t);
    report_printf(&f.body, " font ',14'\n  unset key\n  set boxwidth 0.7\n  set xtics scale 0\n"
                           "  set grid noxtics ytics\n");
    double pb = bound_par(c, e);
    for (int k = 0; k < np; k++) bar_panel(&f, e, &m[k], k, base, m[k].is_par ? pb : -1);
    report_printf(
        &f.caption,
        "%s Each bar is one run; the figure inside a bar (above it when the bar is short) is "
        "its change against static%s. In the PAR panel the dashed line is perfect balance "
        "(BestEP, PAR 1) and the grey region lies below the lower bound: the mean PAR the best "
        "placement with the same slots could reach%s. Runs: ",
        serving ? "Request latencies (TTFT: first token minus arrival; TPOT: decode time "
                  "per output token after the first; requests arriving in the warm-up left "
                  "out) and tokens/s per node: the runs' stored summary metrics."
                : "Fixed-batch decode: the mean simulated step time and output "
                  "tokens/s per node from the summary table.",
        base < 0 ? " (no static run in this experiment, so none is shown)" : "",
        pb > 0 ? "" : " (not drawn: no layer_bounds rows)");
    report_run_list(&f.caption, e, NULL);
    report_printf(&f.caption, ".");
    if (seeds) noise_words(&f.caption, e, m, np, seeds);
    return report_render(c, &f);
}

/* A CDF through at most CDF_POINTS quantiles of sorted values. */
static void cdf_block(report_fig_t *f, const char *name, const double *v, int64_t n) {
    report_printf(&f->data, "$%s << EOD\n", name);
    int k = n < CDF_POINTS ? n : CDF_POINTS;
    for (int i = 0; i < k; i++) {
        double p = k > 1 ? (double)i / (k - 1) : 1;
        double x = gsl_stats_quantile_from_sorted_data(v, 1, (size_t)n, p);
        report_printf(&f->data, "%.6g %.6g\n", x, n > 1 ? p : 1.0);
    }
    report_printf(&f->data, "EOD\n");
}

/* Log x when values span more than two decades, so the body stays visible. */
static int wide(const double *lo, const double *hi, int n) {
    double a = INFINITY, b = 0;
    for (int i = 0; i < n; i++) {
        if (lo[i] < a) a = lo[i];
        if (hi[i] > b) b = hi[i];
    }
    return a > 0 && b / a > 100;
}

int report_fig_cdf(report_ctx_t *c, const report_exp_t *e) {
    report_lat_t lat[REPORT_MAX_RUNS];
    int use[REPORT_MAX_RUNS] = {0}, n = 0;
    for (int i = 0; i < e->n; i++) {
        int rc = report_latency(c, e->run[i].id, &lat[i]);
        if (rc == MS_ERR) {
            for (int j = 0; j < i; j++) report_lat_free(&lat[j]);
            return MS_ERR;
        }
        use[i] = rc == MS_OK;
        n += use[i];
    }
    if (!n) {
        for (int i = 0; i < e->n; i++) report_lat_free(&lat[i]);
        return report_skip(c, "figure f (TTFT and TPOT CDFs) for experiment '%s': no requests "
                              "rows (fixed-batch runs serve no requests; a serving run writes "
                              "them: moesim compare CONFIG with a request workload)", e->name);
    }
    char stem[160];
    snprintf(stem, sizeof stem, "cdf-%s", e->slug);
    report_fig_t f = {.stem = stem, .title = "f. TTFT and TPOT distributions", .width = 1200,
                      .height = 520};
    double lo[2][REPORT_MAX_RUNS], hi[2][REPORT_MAX_RUNS];
    int m[2] = {0, 0};
    for (int i = 0; i < e->n; i++) {
        if (!use[i]) continue;
        char name[32];
        snprintf(name, sizeof name, "ttft%d", i);
        cdf_block(&f, name, lat[i].ttft_ms, lat[i].n);
        lo[0][m[0]] = lat[i].ttft_ms[0];
        hi[0][m[0]++] = lat[i].ttft_ms[lat[i].n - 1];
        if (lat[i].n_tpot) {
            snprintf(name, sizeof name, "tpot%d", i);
            cdf_block(&f, name, lat[i].tpot_ms, lat[i].n_tpot);
            lo[1][m[1]] = lat[i].tpot_ms[0];
            hi[1][m[1]++] = lat[i].tpot_ms[lat[i].n_tpot - 1];
        }
    }
    report_printf(&f.body, "  set multiplot layout 1,2 title ");
    report_buf_t t = {0};
    report_printf(&t, "Request latency distributions: experiment %s", e->name);
    report_quote(&f.body, t.s);
    report_buf_free(&t);
    report_printf(&f.body, " font ',14'\n  set bmargin 7\n  set yrange [0:1]\n"
                           "  set ytics 0.1\n  set grid xtics ytics\n"
                           "  set ylabel 'fraction of requests'\n"
                           "  set key at screen 0.5, screen 0.04 center bottom horizontal\n");
    const char *what[2] = {"ttft", "tpot"};
    const char *label[2] = {"time to first token, TTFT (ms)",
                            "time per output token, TPOT (ms)"};
    for (int k = 0; k < 2; k++) {
        report_printf(&f.body, "  set title '%s'\n  set xlabel '%s'\n  %s logscale x\n",
                      k ? "TPOT: decode time per token after the first"
                        : "TTFT: arrival to first token",
                      label[k], wide(lo[k], hi[k], m[k]) ? "set" : "unset");
        if (!m[k]) {
            report_printf(&f.body, "  unset key\n  set xrange [0:1]\n  set label 'no request "
                                   "had two output tokens' at graph 0.5, graph 0.5 center\n"
                                   "  plot NaN notitle\n  unset label\n  set xrange [*:*]\n");
            continue;
        }
        report_printf(&f.body, "  plot ");
        int first = 1;
        for (int i = 0; i < e->n; i++) {
            if (!use[i] || (k == 1 && !lat[i].n_tpot)) continue;
            report_style_t st = report_style(e->run[i].strategy);
            report_printf(&f.body, "%s$%s%d using 1:2 with lines lw 2.5 lc rgb '%s' title ",
                          first ? "" : ", ", what[k], i, st.color);
            if (k == 0) report_label(&f.body, e, i);
            else report_printf(&f.body, "''");
            first = 0;
        }
        report_printf(&f.body, "\n  unset key\n");
    }
    report_printf(&f.caption, "Empirical CDFs over the served requests of each run (requests "
                              "table): read the median at 0.5 and the tail at 0.9 and above; "
                              "a curve further left is faster. Runs: ");
    report_run_list(&f.caption, e, use);
    report_printf(&f.caption, ".");
    for (int i = 0; i < e->n; i++) report_lat_free(&lat[i]);
    return report_render(c, &f);
}
