/* report_heat: heatmaps over layers: device load per (layer, device) and
 * replicas per (layer, expert) of each strategy (figure b), the device x
 * device traffic of each strategy (figure b, communication locality), and
 * the trace's activations per (layer, expert): hot and cold experts
 * (figure c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"
#include "util.h"

#define HEAT_MAX_DIM 65536 /* layers or columns beyond this are not a moesim result */

/* A dense [rows][cols] matrix read from "SELECT row, col, value ...". */
typedef struct heat {
    int rows, cols;
    double *v; /* NAN where the query had no row */
} heat_t;

static int read_heat(report_ctx_t *c, const char *dims_sql, const char *sql, int64_t run,
                     heat_t *h) {
    memset(h, 0, sizeof *h);
    sqlite3_stmt *q = report_prepare(c, dims_sql);
    if (!q) return MS_ERR;
    sqlite3_bind_int64(q, 1, run);
    if (sqlite3_step(q) == SQLITE_ROW) {
        h->rows = sqlite3_column_int(q, 0);
        h->cols = sqlite3_column_int(q, 1);
    }
    sqlite3_finalize(q);
    if (h->rows <= 0 || h->cols <= 0 || h->rows > HEAT_MAX_DIM || h->cols > HEAT_MAX_DIM)
        return REPORT_SKIP;
    if (!(q = report_prepare(c, sql))) return MS_ERR;
    h->v = ms_malloc((size_t)h->rows * h->cols * sizeof *h->v);
    for (size_t i = 0; i < (size_t)h->rows * h->cols; i++) h->v[i] = NAN;
    sqlite3_bind_int64(q, 1, run);
    while (sqlite3_step(q) == SQLITE_ROW) {
        int r = sqlite3_column_int(q, 0), k = sqlite3_column_int(q, 1);
        if (r >= 0 && r < h->rows && k >= 0 && k < h->cols)
            h->v[(size_t)r * h->cols + k] = sqlite3_column_double(q, 2);
    }
    sqlite3_finalize(q);
    return MS_OK;
}

/* Divides each row by its mean, so 1 means "as loaded as the average". */
static void per_row_relative(heat_t *h) {
    for (int r = 0; r < h->rows; r++) {
        double *row = h->v + (size_t)r * h->cols, sum = 0;
        int n = 0;
        for (int k = 0; k < h->cols; k++)
            if (!isnan(row[k])) sum += row[k], n++;
        double mean = n ? sum / n : 0;
        for (int k = 0; k < h->cols; k++)
            if (!isnan(row[k])) row[k] = mean > 0 ? row[k] / mean : 0;
    }
}

/* Writes "col row value" lines (blank line per row), values below min_v
 * raised to it. A missing cell (NaN) is written as min_v too: gnuplot 5.4
 * drops undefined points from `with image` and then lays the remaining
 * pixels out on a wrong grid, skewing the whole picture. */
static void heat_block(report_buf_t *b, const char *name, const heat_t *h, double min_v) {
    report_printf(b, "$%s << EOD\n", name);
    for (int r = 0; r < h->rows; r++) {
        for (int k = 0; k < h->cols; k++) {
            double v = h->v[(size_t)r * h->cols + k];
            if (isnan(v) && isfinite(min_v)) v = min_v;
            if (!isnan(v) && v < min_v) v = min_v;
            report_printf(b, "%d %d %.5g\n", k, r, v);
        }
        report_printf(b, "\n");
    }
    report_printf(b, "EOD\n");
}

static double tic_step(int n) {
    static const int steps[] = {1, 2, 4, 5, 8, 10, 16, 20, 32, 50, 64, 100, 128, 256, 512, 1024};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++)
        if (n / steps[i] <= 8) return steps[i];
    return n / 8;
}

/* Panel i of n side by side, leaving the right edge for one colour box. */
static void panel_margins(report_buf_t *b, int i, int n) {
    double x0 = 0.07, x1 = 0.86, gap = 0.025;
    double w = (x1 - x0 - gap * (n - 1)) / n, l = x0 + i * (w + gap);
    report_printf(b, "  set lmargin at screen %.4f\n  set rmargin at screen %.4f\n"
                     "  set tmargin at screen 0.86\n  set bmargin at screen 0.13\n",
                  l, l + w);
    if (i == n - 1)
        report_printf(b, "  set colorbox user origin screen 0.885, screen 0.13 size screen 0.018, "
                         "screen 0.73\n");
    else report_printf(b, "  unset colorbox\n");
    if (i == 0) report_printf(b, "  set format y '%%g'\n  set ylabel 'MoE layer'\n");
    else report_printf(b, "  set format y ''\n  unset ylabel\n");
}

static void multiplot_title(report_fig_t *f, const char *fmt, const char *name) {
    report_buf_t t = {0};
    report_printf(&t, fmt, name);
    report_printf(&f->body, "  set multiplot title ");
    report_quote(&f->body, t.s);
    report_printf(&f->body, " font ',14'\n");
    report_buf_free(&t);
}

/* Log-scale colour ticks at the powers of two in [lo, hi]. */
static void log2_cbtics(report_buf_t *b, double lo, double hi) {
    report_printf(b, "  set cbtics (");
    int first = 1;
    for (double v = pow(2, floor(log2(lo))); v <= hi * 1.0001; v *= 2) {
        if (v < lo * 0.9999) continue;
        report_printf(b, "%s'%s%g' %g", first ? "" : ", ", v < 1 ? "1/" : "", v < 1 ? 1 / v : v, v);
        first = 0;
    }
    report_printf(b, ")\n");
}

int report_fig_device_heat(report_ctx_t *c, const report_exp_t *e) {
    heat_t h[REPORT_MAX_RUNS];
    int use[REPORT_MAX_RUNS] = {0}, n = 0, rc = MS_OK;
    double top = 2;
    for (int i = 0; i < e->n; i++) {
        int r = read_heat(
            c, "SELECT max(layer) + 1, max(device) + 1 FROM device_loads WHERE run_id = ?1",
            "SELECT layer, device, load FROM device_loads WHERE run_id = ?1", e->run[i].id, &h[i]);
        if (r == MS_ERR) rc = MS_ERR;
        use[i] = r == MS_OK;
        if (!use[i]) continue;
        n++;
        per_row_relative(&h[i]);
        for (size_t k = 0; k < (size_t)h[i].rows * h[i].cols; k++)
            if (h[i].v[k] > top) top = h[i].v[k];
    }
    if (rc || !n) {
        for (int i = 0; i < e->n; i++) free(h[i].v);
        if (rc) return rc;
        return report_skip(c, "figure b (device load heatmap) for experiment '%s': no "
                              "device_loads rows (run it again: moesim compare CONFIG)", e->name);
    }
    /* A colour scale symmetric in log: as far below the mean as above. */
    double hi = pow(2, ceil(log2(top))), lo = 1 / hi;
    char stem[160];
    snprintf(stem, sizeof stem, "device_heat-%s", e->slug);
    report_fig_t f = {.stem = stem, .title = "b. Device load per layer",
                      .width = n > 3 ? 300 * n + 200 : 1100, .height = 620};
    multiplot_title(&f, "Device load relative to the layer mean: experiment %s", e->name);
    report_printf(&f.body, "  set palette defined (0 '#2166ac', 0.25 '#92c5de', 0.5 '#f7f7f7', "
                           "0.75 '#f4a582', 1 '#b2182b')\n"
                           "  set logscale cb 2\n  set cbrange [%g:%g]\n"
                           "  set cblabel 'device load / layer mean (log scale)'\n"
                           "  unset key\n  set tics out\n  set grid noytics\n",
                  lo, hi);
    log2_cbtics(&f.body, lo, hi);
    int k = 0;
    for (int i = 0; i < e->n; i++) {
        if (!use[i]) continue;
        char name[16];
        snprintf(name, sizeof name, "h%d", i);
        heat_block(&f.data, name, &h[i], lo);
        int D = h[i].cols, L = h[i].rows, nodes = e->run[i].nodes;
        int dpn = nodes > 0 && D % nodes == 0 ? D / nodes : D;
        panel_margins(&f.body, k++, n);
        report_printf(&f.body, "  unset arrow\n  set title ");
        report_label(&f.body, e, i);
        /* Ticks on node starts, at most eight of them. */
        int xstep = dpn < D ? dpn * ((D / dpn + 7) / 8) : (int)tic_step(D);
        report_printf(&f.body, "\n  set xrange [-0.5:%d.5]\n  set yrange [-0.5:%d.5]\n"
                               "  set xtics %d\n  set ytics %g\n  set xlabel 'device'\n",
                      D - 1, L - 1, xstep, tic_step(L));
        /* Node boundaries, where traffic leaves the fast scale-up domain;
         * past 16 nodes they would hide the data. */
        if (dpn < D && D / dpn <= 16)
            for (int b = dpn; b < D; b += dpn)
                report_printf(&f.body, "  set arrow from %g, graph 0 to %g, graph 1 nohead "
                                       "lc rgb '#404040' lw 0.8 front\n", b - 0.5, b - 0.5);
        report_printf(&f.body, "  plot $%s using 1:2:3 with image\n", name);
    }
    report_printf(&f.caption,
                  "Each panel is one strategy: rows are MoE layers, columns devices (thin lines "
                  "separate nodes), colour the device's load summed over the run divided by the "
                  "layer's mean device load (device_loads). White is balanced, red overloaded, "
                  "blue underloaded; a red column is a device that slows every layer. Runs: ");
    report_run_list(&f.caption, e, use);
    report_printf(&f.caption, ".");
    for (int i = 0; i < e->n; i++) free(h[i].v);
    return report_render(c, &f);
}

int report_fig_replica_heat(report_ctx_t *c, const report_exp_t *e) {
    heat_t h[REPORT_MAX_RUNS];
    int use[REPORT_MAX_RUNS] = {0}, n = 0, any = 0, rc = MS_OK;
    double top = 1;
    for (int i = 0; i < e->n; i++) {
        int r = read_heat(
            c, "SELECT max(layer) + 1, max(expert) + 1 FROM replicas WHERE run_id = ?1",
            "SELECT layer, expert, count FROM replicas WHERE run_id = ?1", e->run[i].id, &h[i]);
        if (r == MS_ERR) rc = MS_ERR;
        if (r != MS_OK) continue;
        any = 1;
        double mx = 0;
        for (size_t k = 0; k < (size_t)h[i].rows * h[i].cols; k++)
            if (h[i].v[k] > mx) mx = h[i].v[k];
        /* One copy of every expert everywhere says nothing: leave it out. */
        use[i] = mx > 1;
        n += use[i];
        if (mx > top) top = mx;
    }
    if (rc || !n) {
        for (int i = 0; i < e->n; i++) free(h[i].v);
        if (rc) return rc;
        return report_skip(c, any ? "figure b (replicas per expert) for experiment '%s': every run "
                                    "keeps one copy of each expert (set placement.redundant > 0 "
                                    "and run a strategy that replicates, e.g. eplb or omni)"
                                  : "figure b (replicas per expert) for experiment '%s': no "
                                    "replicas rows (run it again: moesim compare CONFIG)",
                           e->name);
    }
    char stem[160];
    snprintf(stem, sizeof stem, "replica_heat-%s", e->slug);
    report_fig_t f = {.stem = stem, .title = "b. Replicas per expert",
                      .width = n > 2 ? 380 * n + 200 : 1100, .height = 620};
    multiplot_title(&f, "Replicas of each expert in the final layout: experiment %s", e->name);
    int cmax = (int)top;
    report_printf(&f.body, "  set palette defined (0 '#f0f0f0', 0.35 '#9ecae1', 0.7 '#2171b5', "
                           "1 '#08306b')\n  set palette maxcolors %d\n"
                           "  set cbrange [0.5:%d.5]\n  set cbtics 1\n  set mcbtics 1\n"
                           "  set cblabel 'replicas (copies of the expert)'\n"
                           "  unset key\n  set tics out\n  set grid noytics\n",
                  cmax, cmax);
    if (cmax > 12) report_printf(&f.body, "  set cbtics %d\n", (int)tic_step(cmax));
    int k = 0;
    for (int i = 0; i < e->n; i++) {
        if (!use[i]) continue;
        char name[16];
        snprintf(name, sizeof name, "h%d", i);
        heat_block(&f.data, name, &h[i], -INFINITY);
        panel_margins(&f.body, k++, n);
        report_printf(&f.body, "  set title ");
        report_label(&f.body, e, i);
        report_printf(&f.body, "\n  set xrange [-0.5:%d.5]\n  set yrange [-0.5:%d.5]\n"
                               "  set xtics %g\n  set ytics %g\n  set xlabel 'expert'\n"
                               "  plot $%s using 1:2:3 with image\n",
                      h[i].cols - 1, h[i].rows - 1, tic_step(h[i].cols), tic_step(h[i].rows), name);
    }
    report_printf(&f.caption,
                  "Each panel is one strategy's layout at the end of its run (replicas table): "
                  "rows are MoE layers, columns experts, colour the number of copies. Redundant "
                  "slots go to the hot experts; a strategy with per-layer budgets spends them "
                  "unevenly across layers. Runs with one copy per expert are left out. Runs: ");
    report_run_list(&f.caption, e, use);
    report_printf(&f.caption, ".");
    for (int i = 0; i < e->n; i++) free(h[i].v);
    return report_render(c, &f);
}

int report_fig_traffic_heat(report_ctx_t *c, const report_exp_t *e) {
    if (report_value(c, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'traffic' AND ?1 = ?1", 0, 0) < 1)
        return report_skip(c, "figure b (device traffic heatmap) for experiment '%s': the "
                              "database has no traffic table (run it again: moesim compare "
                              "CONFIG)", e->name);
    heat_t h[REPORT_MAX_RUNS];
    int use[REPORT_MAX_RUNS] = {0}, n = 0, rc = MS_OK;
    double top = 2, bottom = 0.5;
    for (int i = 0; i < e->n; i++) {
        int r = read_heat(c,
                          "SELECT devices, devices FROM runs WHERE run_id = ?1 AND EXISTS "
                          "(SELECT 1 FROM traffic WHERE run_id = ?1)",
                          "SELECT src_device, dst_device, bytes FROM traffic WHERE run_id = ?1",
                          e->run[i].id, &h[i]);
        if (r == MS_ERR) rc = MS_ERR;
        use[i] = r == MS_OK;
        if (!use[i]) continue;
        n++;
        /* relative to the mean over the pairs that exchanged anything */
        double sum = 0;
        int cnt = 0;
        for (size_t k = 0; k < (size_t)h[i].rows * h[i].cols; k++)
            if (!isnan(h[i].v[k]) && h[i].v[k] > 0) sum += h[i].v[k], cnt++;
        for (size_t k = 0; k < (size_t)h[i].rows * h[i].cols; k++) {
            if (isnan(h[i].v[k]) || !(h[i].v[k] > 0)) continue;
            h[i].v[k] /= sum / cnt;
            if (h[i].v[k] > top) top = h[i].v[k];
            if (h[i].v[k] < bottom) bottom = h[i].v[k];
        }
    }
    if (rc || !n) {
        for (int i = 0; i < e->n; i++) free(h[i].v);
        if (rc) return rc;
        return report_skip(c, "figure b (device traffic heatmap) for experiment '%s': no "
                              "traffic rows (runs routed token by token store them; a serving run "
                              "routed by counts does not: set [serving] routing = token)",
                           e->name);
    }
    double hi = pow(2, ceil(log2(top))), lo = pow(2, floor(log2(bottom)));
    if (lo < 1.0 / 1024) lo = 1.0 / 1024;
    char stem[160];
    snprintf(stem, sizeof stem, "traffic_heat-%s", e->slug);
    report_fig_t f = {.stem = stem, .title = "b. Device traffic (communication locality)",
                      .width = n > 3 ? 300 * n + 200 : 1100, .height = 620};
    multiplot_title(&f, "Bytes from device to device, relative to the mean pair: experiment %s",
                    e->name);
    report_printf(&f.body, "  set palette defined (0 '#000004', 0.25 '#51127c', 0.5 '#b73779', "
                           "0.75 '#fc8961', 1 '#fcfdbf')\n"
                           "  set logscale cb 2\n  set cbrange [%g:%g]\n"
                           "  set cblabel 'bytes / mean over device pairs (log scale; none: lowest colour)'\n"
                           "  unset key\n  set tics out\n  set grid noytics\n",
                  lo, hi);
    log2_cbtics(&f.body, lo, hi);
    int k = 0;
    for (int i = 0; i < e->n; i++) {
        if (!use[i]) continue;
        char name[16];
        snprintf(name, sizeof name, "h%d", i);
        heat_block(&f.data, name, &h[i], lo);
        int D = h[i].cols, nodes = e->run[i].nodes;
        int dpn = nodes > 0 && D % nodes == 0 ? D / nodes : D;
        panel_margins(&f.body, k++, n);
        /* panel_margins labels rows as layers; here they are source devices */
        report_printf(&f.body, "  unset arrow\n  set ylabel %s\n  set title ",
                      k == 1 ? "'source device'" : "''");
        report_label(&f.body, e, i);
        int step = dpn < D ? dpn * ((D / dpn + 7) / 8) : (int)tic_step(D);
        report_printf(&f.body, "\n  set xrange [-0.5:%d.5]\n  set yrange [-0.5:%d.5]\n"
                               "  set xtics %d\n  set ytics %d\n  set xlabel 'destination device'\n",
                      D - 1, D - 1, step, step);
        /* node blocks: traffic inside them stays on NVLink */
        if (dpn < D && D / dpn <= 16)
            for (int b = dpn; b < D; b += dpn)
                report_printf(&f.body,
                              "  set arrow from %g, graph 0 to %g, graph 1 nohead lc rgb '#a0a0a0' "
                              "lw 0.8 front\n  set arrow from graph 0, first %g to graph 1, "
                              "first %g nohead lc rgb '#a0a0a0' lw 0.8 front\n",
                              b - 0.5, b - 0.5, b - 0.5, b - 0.5);
        report_printf(&f.body, "  plot $%s using 1:2:3 with image\n", name);
    }
    report_printf(&f.caption,
                  "Each panel is one strategy: rows are source devices, columns destination "
                  "devices, colour the dispatch and combine bytes between them summed over the "
                  "run's layers and steps (traffic), divided by the mean over the pairs that "
                  "exchanged any; grey lines separate nodes, so bytes off the diagonal blocks "
                  "cross nodes. The diagonal (a token's own device) carries nothing. Per-layer "
                  "cross-node bytes and the nodes and devices each token touches are in the "
                  "layer_locality and locality_hist tables. Runs: ");
    report_run_list(&f.caption, e, use);
    report_printf(&f.caption, ".");
    for (int i = 0; i < e->n; i++) free(h[i].v);
    return report_render(c, &f);
}

static int trace_one(report_ctx_t *c, int64_t run, const char *trace, int ntr) {
    heat_t h;
    int r =
        read_heat(c, "SELECT max(layer) + 1, max(expert) + 1 FROM trace_counts WHERE run_id = ?1",
                  "SELECT layer, expert, count FROM trace_counts WHERE run_id = ?1", run, &h);
    if (r) return r == REPORT_SKIP ? MS_OK : r;
    per_row_relative(&h);
    double hot = 0, lo = INFINITY;
    int hot_l = 0, hot_e = 0, zeros = 0;
    for (int l = 0; l < h.rows; l++)
        for (int k = 0; k < h.cols; k++) {
            double v = h.v[(size_t)l * h.cols + k];
            if (isnan(v)) continue;
            if (v > hot) hot = v, hot_l = l, hot_e = k;
            if (v <= 0) zeros++;
            else if (v < lo) lo = v;
        }
    if (!(hot > 0)) {
        free(h.v);
        return MS_OK;
    }
    /* Never-activated experts are drawn at the scale's floor colour. */
    double cb_lo = pow(2, floor(log2(isfinite(lo) ? lo : 1))), cb_hi = pow(2, ceil(log2(hot)));
    if (cb_lo < 1.0 / 1024) cb_lo = 1.0 / 1024;
    if (cb_hi < 2) cb_hi = 2;
    const char *base = strrchr(trace, '/');
    base = base ? base + 1 : trace;
    char slug[64], stem[160];
    size_t j = 0;
    for (const char *p = base; *p && *p != '.' && j + 1 < sizeof slug; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                 *p == '-' || *p == '_';
        slug[j++] = ok ? *p : '_';
    }
    slug[j] = '\0';
    /* The trace's base name, numbered when two traces share one. */
    if (ntr) snprintf(stem, sizeof stem, "trace_heat-%s-%d", j ? slug : "trace", ntr);
    else snprintf(stem, sizeof stem, "trace_heat-%s", j ? slug : "trace");
    report_buf_t title = {0};
    report_printf(&title, "c. Expert activations: %s", base[0] ? base : "(unnamed trace)");
    report_fig_t f = {.stem = stem, .title = title.s, .width = 1200, .height = 620};
    heat_block(&f.data, "h", &h, cb_lo);
    report_buf_t t = {0};
    report_printf(&t, "Expert activations per layer, relative to the layer mean: %s", base);
    report_printf(&f.body, "  set title ");
    report_quote(&f.body, t.s);
    report_buf_free(&t);
    report_printf(&f.body, "\n  set palette defined (0 '#000004', 0.25 '#51127c', 0.5 '#b73779', "
                           "0.75 '#fc8961', 1 '#fcfdbf')\n"
                           "  set logscale cb 2\n  set cbrange [%g:%g]\n"
                           "  set cblabel 'activations / layer mean (log scale)'\n"
                           "  unset key\n  set tics out\n  set grid noytics\n"
                           "  set xrange [-0.5:%d.5]\n  set yrange [-0.5:%d.5]\n"
                           "  set xtics %g\n  set ytics %g\n"
                           "  set xlabel 'expert'\n  set ylabel 'MoE layer'\n  set rmargin 14\n",
                  cb_lo, cb_hi, h.cols - 1, h.rows - 1, tic_step(h.cols), tic_step(h.rows));
    log2_cbtics(&f.body, cb_lo, cb_hi);
    report_printf(&f.body, "  plot $h using 1:2:3 with image\n");
    report_printf(&f.caption,
                  "The trace's routing counts summed over its steps (trace_counts, stored with "
                  "run %lld): rows are MoE layers, columns experts, colour each expert's "
                  "activations divided by its layer's mean, on a log scale: bright experts are "
                  "hot, dark ones cold. The hottest is expert %d in layer %d at %.1f times its "
                  "layer mean; %d (layer, expert) pairs were never activated (drawn at the "
                  "darkest colour).",
                  (long long)run, hot_e, hot_l, hot, zeros);
    free(h.v);
    int rc = report_render(c, &f);
    report_buf_free(&title);
    return rc;
}

int report_fig_trace_heat(report_ctx_t *c) {
    sqlite3_stmt *q = report_prepare(
        c, "SELECT coalesce(trace, ''), max(run_id) AS last FROM runs r "
           "WHERE EXISTS (SELECT 1 FROM trace_counts t WHERE t.run_id = r.run_id) "
           "GROUP BY trace ORDER BY last DESC");
    if (!q) return MS_ERR;
    int n = 0, more = 0, failed = 0, drawn0 = c->res->drawn;
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (n == REPORT_MAX_TRACES) {
            more++;
            continue;
        }
        if (trace_one(c, sqlite3_column_int64(q, 1), (const char *)sqlite3_column_text(q, 0), n))
            failed = 1;
        n++;
    }
    sqlite3_finalize(q);
    if (more)
        report_printf(&c->index, "%d further trace%s not drawn (the latest %d are).\n\n", more,
                      more > 1 ? "s are" : " is", REPORT_MAX_TRACES);
    if (failed) return MS_ERR;
    if (c->res->drawn == drawn0)
        return report_skip(c, "figure c (expert activation heatmap): no trace_counts rows (each "
                              "run stores its trace's counts: moesim compare CONFIG)");
    return MS_OK;
}
