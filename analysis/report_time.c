/* report_time: balance over simulated time: each strategy's PAR per step,
 * with its re-plans and the periods its expert weights were in flight
 * (figure d), to show how fast near-real-time scheduling converges. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"
#include "util.h"

#define TIME_POINTS 1500 /* steps beyond this are averaged in bins */

/* Per run: the PAR series, re-plans and merged migration intervals. */
typedef struct time_run {
    int n;            /* PAR points */
    int n_replans;
    int n_mig;        /* migrations recorded */
    double mig_bytes;
    report_buf_t par, replans, mig; /* gnuplot data lines, times in ns */
    int n_spans;      /* merged in-flight intervals */
    int binned;       /* 1 when points average several steps */
} time_run_t;

static int read_run(report_ctx_t *c, int64_t run, time_run_t *t, int64_t *t0, int64_t *t1,
                    double *ymax) {
    memset(t, 0, sizeof *t);
    double steps = report_value(c, "SELECT count(*) FROM steps WHERE run_id = ?1", run, 0);
    int bin = steps > TIME_POINTS ? (int)ceil(steps / TIME_POINTS) : 1;
    t->binned = bin > 1;
    sqlite3_stmt *q = report_prepare(
        c, "SELECT min(s.start_ns), avg(l.max_load / l.mean_load) FROM steps s "
           "JOIN layer_steps l ON l.run_id = s.run_id AND l.step = s.step "
           "WHERE s.run_id = ?1 AND l.mean_load > 0 GROUP BY s.step / ?2 ORDER BY 1");
    if (!q) return MS_ERR;
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int(q, 2, bin);
    while (sqlite3_step(q) == SQLITE_ROW) {
        int64_t ts = sqlite3_column_int64(q, 0);
        double p = sqlite3_column_double(q, 1);
        report_printf(&t->par, "%lld %.6g\n", (long long)ts, p);
        if (ts < *t0) *t0 = ts;
        if (ts > *t1) *t1 = ts;
        if (p > *ymax) *ymax = p;
        t->n++;
    }
    sqlite3_finalize(q);
    if (!(q = report_prepare(c, "SELECT time_ns, layers_changed FROM replans WHERE run_id = ?1 "
                                "ORDER BY time_ns")))
        return MS_ERR;
    sqlite3_bind_int64(q, 1, run);
    while (sqlite3_step(q) == SQLITE_ROW) {
        report_printf(&t->replans, "%lld %d\n", (long long)sqlite3_column_int64(q, 0),
                      sqlite3_column_int(q, 1));
        t->n_replans++;
    }
    sqlite3_finalize(q);
    /* Overlapping transfers merge into one span: what the eye sees anyway,
     * and thousands of migrations stay a few lines. */
    if (!(q = report_prepare(c, "SELECT time_ns, done_ns, bytes FROM migrations WHERE run_id = ?1 "
                                "ORDER BY time_ns, done_ns")))
        return MS_ERR;
    sqlite3_bind_int64(q, 1, run);
    int64_t a = 0, b = -1;
    while (sqlite3_step(q) == SQLITE_ROW) {
        int64_t s = sqlite3_column_int64(q, 0), d = sqlite3_column_int64(q, 1);
        t->n_mig++;
        t->mig_bytes += sqlite3_column_double(q, 2);
        if (d < s) d = s;
        if (b >= 0 && s <= b) {
            if (d > b) b = d;
            continue;
        }
        if (b >= 0) report_printf(&t->mig, "%lld %lld\n", (long long)a, (long long)b), t->n_spans++;
        a = s;
        b = d;
    }
    if (b >= 0) report_printf(&t->mig, "%lld %lld\n", (long long)a, (long long)b), t->n_spans++;
    sqlite3_finalize(q);
    if (t->n_mig && b > *t1) *t1 = b;
    return MS_OK;
}

static void free_run(time_run_t *t) {
    report_buf_free(&t->par);
    report_buf_free(&t->replans);
    report_buf_free(&t->mig);
}

int report_fig_par_time(report_ctx_t *c, const report_exp_t *e) {
    time_run_t tr[REPORT_MAX_RUNS];
    int use[REPORT_MAX_RUNS] = {0}, n = 0, nmig = 0, nrep = 0, binned = 0, rc = MS_OK;
    int64_t t0 = INT64_MAX, t1 = INT64_MIN;
    double ymax = 1;
    for (int i = 0; i < e->n; i++) {
        if (read_run(c, e->run[i].id, &tr[i], &t0, &t1, &ymax)) rc = MS_ERR;
        use[i] = tr[i].n >= 2;
        n += use[i];
        nmig += use[i] && tr[i].n_mig > 0;
        nrep += use[i] ? tr[i].n_replans : 0;
        binned |= use[i] && tr[i].binned;
    }
    if (rc || !n) {
        for (int i = 0; i < e->n; i++) free_run(&tr[i]);
        if (rc) return rc;
        return report_skip(c, "figure d (PAR over time) for experiment '%s': no run has two or "
                              "more steps with layer_steps rows (run more steps: moesim compare "
                              "CONFIG --set experiment.steps=200)", e->name);
    }
    /* Seconds for runs of seconds, milliseconds for shorter ones. */
    double span_s = (double)(t1 - t0) / 1e9, unit = span_s >= 2 ? 1e9 : 1e6;
    const char *uname = span_s >= 2 ? "s" : "ms";
    double x0 = (double)t0 / unit, x1 = (double)t1 / unit;
    if (x1 <= x0) x1 = x0 + 1;
    double ylo = 1, yhi = 1 + (ymax - 1) * 1.12 + 0.02;

    char stem[160];
    snprintf(stem, sizeof stem, "par_time-%s", e->slug);
    report_fig_t f = {.stem = stem, .title = "d. PAR over time, with re-plans and migrations",
                      .width = 1100, .height = nmig ? 700 : 560};
    for (int i = 0; i < e->n; i++) {
        if (!use[i]) continue;
        report_printf(&f.data, "$p%d << EOD\n%sEOD\n", i, tr[i].par.s);
        if (tr[i].n_replans) report_printf(&f.data, "$r%d << EOD\n%sEOD\n", i, tr[i].replans.s);
        if (tr[i].n_mig) report_printf(&f.data, "$m%d << EOD\n%sEOD\n", i, tr[i].mig.s);
    }
    report_buf_t t = {0};
    report_printf(&t, "Balance over time: experiment %s", e->name);
    /* The lower panel grows with its rows; the key sits under both. */
    double low_h = 0.06 + 0.045 * nmig, low_b = 0.18;
    if (low_h > 0.3) low_h = 0.3;
    if (nmig) {
        report_printf(&f.body, "  set multiplot title ");
        report_quote(&f.body, t.s);
        report_printf(&f.body, " font ',14'\n  set lmargin at screen 0.09\n"
                               "  set rmargin at screen 0.97\n  set tmargin at screen 0.90\n"
                               "  set bmargin at screen %.4f\n  set format x ''\n  unset xlabel\n"
                               "  set key at screen 0.5, screen 0.01 center bottom horizontal\n",
                      low_b + low_h + 0.06);
    } else {
        report_printf(&f.body, "  set title ");
        report_quote(&f.body, t.s);
        report_printf(&f.body, "\n  set xlabel 'simulated time (%s)'\n", uname);
    }
    report_buf_free(&t);
    report_printf(&f.body, "  set xrange [%.9g:%.9g]\n  set yrange [%.6g:%.6g]\n"
                           "  set ylabel 'PAR: max / mean device load'\n  set grid xtics ytics\n"
                           "  plot ",
                  x0, x1, ylo, yhi);
    int first = 1;
    for (int i = 0; i < e->n; i++) {
        if (!use[i]) continue;
        report_style_t st = report_style(e->run[i].strategy);
        report_printf(&f.body, "%s$p%d using ($1/%g):2 with ", first ? "" : ", \\\n       ", i,
                      unit);
        /* Points only while they stay apart. */
        if (tr[i].n <= 80) report_printf(&f.body, "linespoints pt %d ps 0.6", st.pt);
        else report_printf(&f.body, "lines");
        report_printf(&f.body, " lw 2 lc rgb '%s' title ", st.color);
        report_label(&f.body, e, i);
        first = 0;
        if (tr[i].n_replans) {
            report_printf(&f.body, ", \\\n       $r%d using ($1/%g):(%.6g):(0):(%.6g) with vectors "
                                   "nohead dt 2 lw 1.5 lc rgb '%s' title ",
                          i, unit, ylo, yhi - ylo, st.color);
            report_buf_t k = {0};
            report_printf(&k, "%s re-plan", e->run[i].strategy);
            report_quote(&f.body, k.s);
            report_buf_free(&k);
        }
    }
    report_printf(&f.body, "\n");
    if (nmig) {
        /* Lower panel: one row per strategy, a bar while weights are moving. */
        report_printf(&f.body, "  unset key\n  unset title\n  set tmargin at screen %.4f\n"
                               "  set bmargin at screen %.4f\n  set format x '%%g'\n"
                               "  set xlabel 'simulated time (%s)'\n"
                               "  unset ylabel\n  set label 'expert weights in flight' at graph 0, "
                               "graph 1 left offset 0.5,0.7 font ',10'\n"
                               "  set yrange [-0.7:%d.7]\n  set grid xtics noytics\n  set ytics (",
                      low_b + low_h, low_b, uname, nmig - 1);
        int r = 0;
        for (int i = 0; i < e->n; i++) {
            if (!use[i] || !tr[i].n_mig) continue;
            report_printf(&f.body, "%s", r ? ", " : "");
            report_label(&f.body, e, i);
            report_printf(&f.body, " %d", r++);
        }
        report_printf(&f.body, ")\n  plot ");
        r = 0;
        for (int i = 0; i < e->n; i++) {
            if (!use[i] || !tr[i].n_mig) continue;
            report_printf(&f.body, "%s$m%d using ($1/%g):(%d):(($2-$1)/%g):(0) with vectors nohead "
                                   "lw 12 lc rgb '%s' notitle",
                          r ? ", \\\n       " : "", i, unit, r, unit,
                          report_style(e->run[i].strategy).color);
            r++;
        }
        report_printf(&f.body, "\n");
    }
    report_printf(&f.caption,
                  "The mean over layers of each step's PAR (layer_steps max_load / mean_load "
                  "joined with steps.start_ns%s) against simulated time; 1 is perfect balance. "
                  "Dashed vertical lines are re-plans (replans table); %s A strategy that "
                  "rebalances should drop after its re-plans and stay low. ",
                  binned ? ", averaged in bins of consecutive steps" : "",
                  nmig ? "the lower panel marks when expert weights were in flight (migrations "
                         "table, overlapping transfers merged)."
                       : "no migrations are recorded in these runs.");
    report_printf(&f.caption, "%d re-plans shown. Runs: ", nrep);
    report_run_list(&f.caption, e, use);
    report_printf(&f.caption, ".");
    for (int i = 0; i < e->n; i++) free_run(&tr[i]);
    return report_render(c, &f);
}
