/* report_load: how evenly strategies spread the load: the per-layer maximum
 * device load against perfect balance and the lower bound (figure a), and
 * mean PAR against the redundant-expert budget across runs (figure g). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"
#include "util.h"

#define BUDGET_PANELS 4 /* (cluster, trace) panels in the budget figure */

/* Per-layer series of one run: max load, BestEP, bound, per step. */
typedef struct layer_series {
    int n_layers;
    double *max, *best, *bound; /* [n_layers], NAN where missing */
    int from_bounds;            /* 1: layer_bounds, 0: layer_steps averaged */
} layer_series_t;

static int read_series(report_ctx_t *c, int64_t run, layer_series_t *s) {
    memset(s, 0, sizeof *s);
    double steps = report_value(c, "SELECT count(*) FROM steps WHERE run_id = ?1", run, 0);
    double nb = report_value(c, "SELECT count(*) FROM layer_bounds WHERE run_id = ?1", run, 0);
    s->from_bounds = nb > 0;
    const char *sql =
        s->from_bounds
            ? "SELECT layer, max_load, best_ep, bound FROM layer_bounds WHERE run_id = ?1"
            : "SELECT layer, avg(max_load), avg(mean_load), NULL FROM layer_steps "
              "WHERE run_id = ?1 GROUP BY layer";
    int L = (int)report_value(c, s->from_bounds
                                     ? "SELECT max(layer) + 1 FROM layer_bounds WHERE run_id = ?1"
                                     : "SELECT max(layer) + 1 FROM layer_steps WHERE run_id = ?1",
                              run, 0);
    if (L <= 0 || L > 100000) return REPORT_SKIP;
    sqlite3_stmt *q = report_prepare(c, sql);
    if (!q) return MS_ERR;
    s->n_layers = L;
    s->max = ms_malloc((size_t)L * sizeof *s->max);
    s->best = ms_malloc((size_t)L * sizeof *s->best);
    s->bound = ms_malloc((size_t)L * sizeof *s->bound);
    for (int l = 0; l < L; l++) s->max[l] = s->best[l] = s->bound[l] = NAN;
    /* layer_bounds sums over the run: per step, so runs of different
     * lengths compare; layer_steps rows are per step already. */
    double div = s->from_bounds && steps > 0 ? steps : 1;
    sqlite3_bind_int64(q, 1, run);
    while (sqlite3_step(q) == SQLITE_ROW) {
        int l = sqlite3_column_int(q, 0);
        if (l < 0 || l >= L) continue;
        s->max[l] = sqlite3_column_double(q, 1) / div;
        s->best[l] = sqlite3_column_double(q, 2) / div;
        if (sqlite3_column_type(q, 3) != SQLITE_NULL)
            s->bound[l] = sqlite3_column_double(q, 3) / div;
    }
    sqlite3_finalize(q);
    return MS_OK;
}

static void free_series(layer_series_t *s) {
    free(s->max);
    free(s->best);
    free(s->bound);
}

int report_fig_layer_max(report_ctx_t *c, const report_exp_t *e) {
    layer_series_t s[REPORT_MAX_RUNS];
    int use[REPORT_MAX_RUNS] = {0}, n = 0, L = 0, bounds = 0, steps_only = 0, rc = MS_OK;
    for (int i = 0; i < e->n; i++) {
        int r = read_series(c, e->run[i].id, &s[i]);
        if (r == MS_ERR) rc = MS_ERR;
        use[i] = r == MS_OK;
        if (!use[i]) continue;
        n++;
        if (s[i].n_layers > L) L = s[i].n_layers;
        bounds |= s[i].from_bounds;
        steps_only |= !s[i].from_bounds;
    }
    if (rc || !n) {
        for (int i = 0; i < e->n; i++)
            if (use[i]) free_series(&s[i]);
        if (rc) return rc;
        return report_skip(c, "figure a (per-layer maximum device load) for experiment '%s': "
                              "no layer_bounds or layer_steps rows (run it again: moesim compare "
                              "CONFIG)", e->name);
    }
    char stem[160];
    snprintf(stem, sizeof stem, "layer_max-%s", e->slug);
    report_fig_t f = {.stem = stem, .title = "a. Per-layer maximum device load",
                      .width = 1100, .height = 580};
    /* Perfect balance is the same for every strategy of one workload; the
     * bound drawn is the lowest, valid for every run shown. */
    report_printf(&f.data, "$ref << EOD\n");
    for (int l = 0; l < L; l++) {
        double best = NAN, bound = NAN;
        for (int i = 0; i < e->n; i++) {
            if (!use[i] || l >= s[i].n_layers) continue;
            if (isnan(best) && !isnan(s[i].best[l])) best = s[i].best[l];
            if (!isnan(s[i].bound[l]) && (isnan(bound) || s[i].bound[l] < bound))
                bound = s[i].bound[l];
        }
        report_printf(&f.data, "%d %.6g %.6g\n", l, best, bound);
    }
    report_printf(&f.data, "EOD\n");
    for (int i = 0; i < e->n; i++) {
        if (!use[i]) continue;
        report_printf(&f.data, "$r%d << EOD\n", i);
        for (int l = 0; l < s[i].n_layers; l++)
            report_printf(&f.data, "%d %.6g\n", l, s[i].max[l]);
        report_printf(&f.data, "EOD\n");
    }
    /* One strategy far above the rest (the baseline, usually) squeezes the
     * others onto the floor: then a second panel zooms on the rest. */
    double peak[REPORT_MAX_RUNS] = {0}, ref_peak = 0;
    int top = -1;
    for (int i = 0; i < e->n; i++) {
        if (!use[i]) continue;
        for (int l = 0; l < s[i].n_layers; l++) {
            if (s[i].max[l] > peak[i]) peak[i] = s[i].max[l];
            if (s[i].best[l] > ref_peak) ref_peak = s[i].best[l];
            if (s[i].bound[l] > ref_peak) ref_peak = s[i].bound[l];
        }
        if (top < 0 || peak[i] > peak[top]) top = i;
    }
    double rest = ref_peak;
    for (int i = 0; i < e->n; i++)
        if (use[i] && i != top && peak[i] > rest) rest = peak[i];
    int zoom = n >= 2 && rest > 0 && peak[top] > 2.5 * rest;

    report_buf_t plot = {0};
    report_printf(&plot, "  plot ");
    /* Below the bound no placement can go: shade it, behind the lines. */
    if (bounds)
        report_printf(&plot, "$ref using 1:3 with filledcurves y1=0 fs solid 1.0 noborder "
                             "lc rgb '#e6e6e6' title 'below the lower bound: unreachable', \\\n"
                             "       ");
    for (int i = 0; i < e->n; i++) {
        if (!use[i]) continue;
        report_style_t st = report_style(e->run[i].strategy);
        report_printf(&plot, "$r%d using 1:2 with linespoints lw 2 pt %d ps 0.7 lc rgb '%s' title ",
                      i, st.pt, st.color);
        report_label(&plot, e, i);
        report_printf(&plot, ", \\\n       ");
    }
    report_printf(&plot, "$ref using 1:2 with lines dt 2 lw 2 lc rgb '#000000' "
                         "title 'mean = perfect balance (BestEP)'\n");

    report_buf_t t = {0};
    report_printf(&t, "Per-layer maximum device load: experiment %s", e->name);
    int mixed = 0;
    for (int i = 1; i < e->n; i++) mixed |= e->run[i].devices != e->run[0].devices;
    if (!mixed) report_printf(&t, " (EP%d)", e->run[0].devices);
    report_printf(&f.body, "  set %stitle ", zoom ? "multiplot " : "");
    report_quote(&f.body, t.s);
    report_buf_free(&t);
    report_printf(&f.body, "%s\n  set xlabel 'MoE layer'\n"
                           "  set ylabel '%s'\n"
                           "  set xrange [-0.5:%d.5]\n  set yrange [0:*]\n  set xtics %d\n",
                  zoom ? " font ',14'" : "",
                  steps_only && !bounds ? "activations per device per step (token-expert pairs)"
                                        : "activations on the busiest device per step",
                  L - 1, L > 40 ? 5 : L > 16 ? 2 : 1);
    if (zoom) {
        f.height = 900;
        report_printf(&f.body, "  set lmargin at screen 0.09\n  set rmargin at screen 0.97\n"
                               "  set tmargin at screen 0.91\n  set bmargin at screen 0.60\n"
                               "  unset xlabel\n  set title 'all strategies'\n"
                               "  set key at screen 0.5, screen 0.01 center bottom horizontal\n%s"
                               "  unset key\n  set tmargin at screen 0.51\n"
                               "  set bmargin at screen 0.19\n  set xlabel 'MoE layer'\n"
                               "  set yrange [0:%.6g]\n  set title ",
                      plot.s, rest * 1.15);
        report_buf_t z = {0};
        report_printf(&z, "zoom on the others (%s leaves the range)", e->run[top].strategy);
        report_quote(&f.body, z.s);
        report_buf_free(&z);
        report_printf(&f.body, "\n");
    }
    report_printf(&f.body, "%s", plot.s);
    report_buf_free(&plot);
    report_printf(&f.caption,
                  "Per MoE layer, the load on the busiest device (token-expert activations per "
                  "decode step, from the run's summed device loads in layer_bounds%s) for each "
                  "strategy. The dashed line is the mean device load, which perfect balance "
                  "would give every device (BestEP); the grey region lies below the lower bound "
                  "on the busiest device, which no placement with the same number of slots can "
                  "enter (it rises above BestEP where one hot expert outweighs a device's share). "
                  "The closer a strategy to the grey region, the less its slowest device holds "
                  "the layer back. Runs: ",
                  steps_only ? "; layer_steps averaged over steps where a run has no bounds" : "");
    report_run_list(&f.caption, e, use);
    report_printf(&f.caption, ".");
    for (int i = 0; i < e->n; i++)
        if (use[i]) free_series(&s[i]);
    return report_render(c, &f);
}

/* One (cluster size, trace) combination of the budget figure. */
typedef struct budget_panel {
    int devices;
    char trace[256];
} budget_panel_t;

int report_fig_par_budget(report_ctx_t *c) {
    /* Combinations with at least two budgets, most runs first. */
    sqlite3_stmt *q = report_prepare(
        c, "SELECT r.devices, coalesce(r.trace, ''), count(DISTINCT b.value) AS nb FROM runs r "
           "JOIN summary b ON b.run_id = r.run_id AND b.metric = 'redundant' "
           "JOIN summary p ON p.run_id = r.run_id AND p.metric = 'par_mean' "
           "GROUP BY r.devices, r.trace HAVING nb >= 2 ORDER BY count(*) DESC, r.devices");
    if (!q) return MS_ERR;
    budget_panel_t pan[BUDGET_PANELS];
    int np = 0, more = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (np == BUDGET_PANELS) {
            more++;
            continue;
        }
        pan[np].devices = sqlite3_column_int(q, 0);
        snprintf(pan[np].trace, sizeof pan[np].trace, "%s",
                 (const char *)sqlite3_column_text(q, 1));
        np++;
    }
    sqlite3_finalize(q);
    if (!np)
        return report_skip(c, "figure g (PAR against the redundant-expert budget): no trace and "
                              "cluster size has runs at two or more budgets (summary metrics "
                              "'redundant' and 'par_mean'); sweep the budget: moesim sweep "
                              "SWEEP.ini over placement.redundant, or moesim compare CONFIG "
                              "--set placement.redundant=N for several N");
    q = report_prepare(
        c, "SELECT r.strategy, b.value, avg(p.value), min(p.value), max(p.value), count(*) "
           "FROM runs r "
           "JOIN summary b ON b.run_id = r.run_id AND b.metric = 'redundant' "
           "JOIN summary p ON p.run_id = r.run_id AND p.metric = 'par_mean' "
           "WHERE r.devices = ?1 AND coalesce(r.trace, '') = ?2 "
           "GROUP BY r.strategy, b.value ORDER BY min(r.run_id), r.strategy, b.value");
    sqlite3_stmt *qb = report_prepare(
        c, "SELECT b.value, avg(lb.par) FROM runs r "
           "JOIN summary b ON b.run_id = r.run_id AND b.metric = 'redundant' "
           "JOIN (SELECT run_id, avg(bound / best_ep) AS par FROM layer_bounds WHERE best_ep > 0 "
           "      GROUP BY run_id) lb ON lb.run_id = r.run_id "
           "WHERE r.devices = ?1 AND coalesce(r.trace, '') = ?2 GROUP BY b.value ORDER BY b.value");
    if (!q || !qb) {
        sqlite3_finalize(q);
        sqlite3_finalize(qb);
        return MS_ERR;
    }
    report_fig_t f = {.stem = "par_budget", .title = "g. PAR against the redundant-expert budget",
                      .width = np > 1 ? 1200 : 1000, .height = np > 2 ? 900 : 560};
    int cols = np > 1 ? 2 : 1, rows = (np + 1) / 2, nruns = 0;
    if (np > 1)
        report_printf(&f.body, "  set multiplot layout %d,%d title 'Mean PAR against redundant "
                               "experts, per strategy' font ',14'\n",
                      rows, cols);
    report_printf(&f.body, "  set xlabel 'redundant experts per layer (slots beyond one per "
                           "expert)'\n  set ylabel 'mean PAR (1 = perfect balance)'\n"
                           "  set grid xtics ytics\n");
    for (int p = 0; p < np; p++) {
        char strat[REPORT_MAX_RUNS * 2][64];
        int ns = 0, nx = 0;
        double xs[16], ymax = 1;
        sqlite3_bind_int(q, 1, pan[p].devices);
        sqlite3_bind_text(q, 2, pan[p].trace, -1, SQLITE_STATIC);
        /* One block per strategy, in the order strategies first appear. */
        report_buf_t blk[REPORT_MAX_RUNS * 2];
        memset(blk, 0, sizeof blk);
        while (sqlite3_step(q) == SQLITE_ROW) {
            const char *s = (const char *)sqlite3_column_text(q, 0);
            int k = 0;
            while (k < ns && strcmp(strat[k], s)) k++;
            if (k == ns) {
                if (ns == REPORT_MAX_RUNS * 2) continue;
                snprintf(strat[ns++], sizeof strat[0], "%s", s);
            }
            double x = sqlite3_column_double(q, 1), hi = sqlite3_column_double(q, 4);
            report_printf(&blk[k], "%.6g %.6g %.6g %.6g\n", x, sqlite3_column_double(q, 2),
                          sqlite3_column_double(q, 3), hi);
            int j = 0;
            while (j < nx && xs[j] != x) j++;
            if (j == nx && nx < 16) xs[nx++] = x;
            if (hi > ymax) ymax = hi;
            nruns += sqlite3_column_int(q, 5);
        }
        sqlite3_reset(q);
        for (int k = 0; k < ns; k++) {
            report_printf(&f.data, "$p%ds%d << EOD\n%sEOD\n", p, k, blk[k].s);
            report_buf_free(&blk[k]);
        }
        sqlite3_bind_int(qb, 1, pan[p].devices);
        sqlite3_bind_text(qb, 2, pan[p].trace, -1, SQLITE_STATIC);
        int nbound = 0;
        report_printf(&f.data, "$p%db << EOD\n", p);
        while (sqlite3_step(qb) == SQLITE_ROW) {
            report_printf(&f.data, "%.6g %.6g\n", sqlite3_column_double(qb, 0),
                          sqlite3_column_double(qb, 1));
            nbound++;
        }
        sqlite3_reset(qb);
        report_printf(&f.data, "EOD\n");
        const char *tb = strrchr(pan[p].trace, '/');
        report_buf_t t = {0};
        if (np == 1) report_printf(&t, "Mean PAR against redundant experts: ");
        report_printf(&t, "EP%d, %s", pan[p].devices, tb ? tb + 1 : pan[p].trace);
        report_printf(&f.body, "  set title ");
        report_quote(&f.body, t.s);
        report_buf_free(&t);
        /* Ticks at the budgets run, a margin so no point sits on a frame. */
        double x0 = xs[0], x1 = xs[0];
        for (int j = 1; j < nx; j++) {
            if (xs[j] < x0) x0 = xs[j];
            if (xs[j] > x1) x1 = xs[j];
        }
        double mx = (x1 - x0) * 0.05 + 0.5, my = (ymax - 1) * 0.06 + 0.01;
        report_printf(&f.body, "\n  set xrange [%.6g:%.6g]\n  set yrange [%.6g:%.6g]\n",
                      x0 - mx, x1 + mx, 1 - my, ymax + 2 * my);
        if (nx < 16) {
            report_printf(&f.body, "  set xtics (");
            for (int j = 0; j < nx; j++) report_printf(&f.body, "%s%.6g", j ? ", " : "", xs[j]);
            report_printf(&f.body, ")\n");
        } else report_printf(&f.body, "  set xtics autofreq\n");
        report_printf(&f.body, "  plot ");
        for (int k = 0; k < ns; k++) {
            report_style_t st = report_style(strat[k]);
            report_printf(&f.body, "%s$p%ds%d using 1:2:3:4 with yerrorlines lw 2 pt %d ps 1 "
                                   "lc rgb '%s' title ",
                          k ? ", \\\n       " : "", p, k, st.pt, st.color);
            report_quote(&f.body, strat[k]);
        }
        if (nbound)
            report_printf(&f.body, ", \\\n       $p%db using 1:2 with linespoints dt 3 lw 2 pt 3 "
                                   "lc rgb '#000000' title 'lower bound'", p);
        report_printf(&f.body, "\n");
    }
    sqlite3_finalize(q);
    sqlite3_finalize(qb);
    report_printf(&f.caption,
                  "For every cluster size and trace with runs at two or more budgets (summary "
                  "metrics 'redundant' and 'par_mean' of %d runs in all), the mean PAR of each "
                  "strategy against the number of redundant expert slots per layer; points "
                  "average the runs at one budget and the bars span their minimum and maximum "
                  "(seeds or repeats). The dotted black line is the lower bound's PAR (mean over "
                  "layers of bound / mean load, from layer_bounds): no placement with that many "
                  "slots can go below it.%s",
                  nruns,
                  more ? " Further combinations are not drawn (the four with most runs are)." : "");
    return report_render(c, &f);
}
