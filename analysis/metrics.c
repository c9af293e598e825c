/* metrics: the registry of run metrics, their formulas, storage and the
 * CLI's tables. Nothing here simulates; every reader of a metric comes here
 * or to the summary row this module wrote. */
#include "metrics.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"
#include "table.h"
#include "util.h"

static const struct {
    const char *name, *unit, *what;
} REG[METRIC_N] = {
#define METRICS_ROW(id, name, unit, what) [METRIC_##id] = {name, unit, what},
    METRICS_LIST(METRICS_ROW)
#undef METRICS_ROW
};

const char *metrics_name(enum metrics_id id) { return REG[id].name; }
const char *metrics_unit(enum metrics_id id) { return REG[id].unit; }
const char *metrics_meaning(enum metrics_id id) { return REG[id].what; }

int metrics_find(const char *name) {
    for (int i = 0; i < METRIC_N; i++)
        if (!strcmp(REG[i].name, name)) return i;
    return -1;
}

void metrics_set(metrics_t *m, enum metrics_id id, double v) {
    m->v[id] = v;
    m->has[id] = 1;
}

double metrics_get(const metrics_t *m, enum metrics_id id, double dflt) {
    return m->has[id] ? m->v[id] : dflt;
}

int metrics_store(store_t *st, int64_t run, const metrics_t *m) {
    for (int i = 0; i < METRIC_N; i++)
        if (m->has[i] && store_metric(st, run, REG[i].name, m->v[i], REG[i].unit)) return MS_ERR;
    return MS_OK;
}

int metrics_load(sqlite3 *db, int64_t run, metrics_t *m) {
    memset(m, 0, sizeof *m);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT metric, value FROM summary WHERE run_id = ?1", -1, &q,
                           NULL) != SQLITE_OK)
        return ms_err("cannot read the summary table: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(q, 1, run);
    int r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        int id = name ? metrics_find(name) : -1;
        if (id >= 0) metrics_set(m, (enum metrics_id)id, sqlite3_column_double(q, 1));
    }
    sqlite3_finalize(q);
    return r == SQLITE_DONE ? MS_OK : ms_err("cannot read the summary table: %s",
                                             sqlite3_errmsg(db));
}

/* ---- several seeds ---- */

int metrics_ci95(const double *v, int n, double *mean, double *half) {
    if (n < 2) return ms_err("a confidence interval needs two runs or more (got %d)", n);
    *mean = gsl_stats_mean(v, 1, (size_t)n);
    double sd = gsl_stats_sd_m(v, 1, (size_t)n, *mean);
    *half = gsl_cdf_tdist_Pinv(0.975, n - 1) * sd / sqrt(n);
    return MS_OK;
}

void metrics_ci_from_runs(const metrics_t *runs, int n, metrics_ci_t *out) {
    memset(out, 0, sizeof *out);
    double *v = ms_malloc((size_t)n * sizeof *v);
    for (int id = 0; id < METRIC_N; id++) {
        int all = n >= 2;
        for (int k = 0; k < n && all; k++) {
            all = runs[k].has[id];
            v[k] = runs[k].v[id];
        }
        double mean, half;
        if (!all || metrics_ci95(v, n, &mean, &half)) continue;
        metrics_set(&out->mean, (enum metrics_id)id, mean);
        out->half[id] = half;
        out->n[id] = n;
    }
    free(v);
}

int metrics_store_ci(store_t *st, int64_t run, const metrics_ci_t *ci) {
    for (int id = 0; id < METRIC_N; id++)
        if (ci->n[id] && store_metric_ci(st, run, REG[id].name, ci->n[id], ci->mean.v[id],
                                         ci->half[id], REG[id].unit))
            return MS_ERR;
    return MS_OK;
}

int metrics_load_ci(sqlite3 *db, int64_t run, metrics_ci_t *ci) {
    memset(ci, 0, sizeof *ci);
    sqlite3_stmt *q;
    /* databases from before --seeds have no summary_ci: no intervals */
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE name = 'summary_ci'", -1, &q,
                           NULL) != SQLITE_OK)
        return ms_err("cannot read the schema: %s", sqlite3_errmsg(db));
    int has = sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
    if (!has) return MS_OK;
    if (sqlite3_prepare_v2(db, "SELECT metric, n, mean, half_width FROM summary_ci "
                               "WHERE run_id = ?1", -1, &q, NULL) != SQLITE_OK)
        return ms_err("cannot read the summary_ci table: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(q, 1, run);
    int r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        int id = name ? metrics_find(name) : -1;
        if (id < 0) continue;
        metrics_set(&ci->mean, (enum metrics_id)id, sqlite3_column_double(q, 2));
        ci->n[id] = sqlite3_column_int(q, 1);
        ci->half[id] = sqlite3_column_double(q, 3);
    }
    sqlite3_finalize(q);
    return r == SQLITE_DONE ? MS_OK : ms_err("cannot read the summary_ci table: %s",
                                             sqlite3_errmsg(db));
}

int metrics_ci_overlap(double m1, double h1, double m2, double h2) {
    return fabs(m1 - m2) <= h1 + h2;
}

/* ---- definitions ---- */

double metrics_par(const double *dev_load, int n) { return place_par(dev_load, n); }

void metrics_loads_init(metrics_loads_t *a, int L, int D, int E) {
    memset(a, 0, sizeof *a);
    a->L = L;
    a->D = D;
    a->E = E;
    a->dev_sum = ms_calloc((size_t)L * D, sizeof *a->dev_sum);
    a->exp_sum = ms_calloc((size_t)L * E, sizeof *a->exp_sum);
    a->step_max = ms_calloc((size_t)L, sizeof *a->step_max);
    a->step_mean = ms_calloc((size_t)L, sizeof *a->step_mean);
}

void metrics_loads_free(metrics_loads_t *a) {
    free(a->dev_sum);
    free(a->exp_sum);
    free(a->step_max);
    free(a->step_mean);
    memset(a, 0, sizeof *a);
}

void metrics_loads_step(metrics_loads_t *a, const double *dev_load, const double *exp_load) {
    int L = a->L, D = a->D;
    for (int l = 0; l < L; l++) {
        const double *dl = dev_load + (size_t)l * D;
        double mean = 0, par = metrics_par(dl, D);
        for (int d = 0; d < D; d++) {
            mean += dl[d] / D;
            a->dev_sum[(size_t)l * D + d] += dl[d];
        }
        a->step_max[l] = place_max(dl, D);
        a->step_mean[l] = mean;
        a->par_sum += par;
        if (par > a->par_max) a->par_max = par;
        a->par_n++;
    }
    if (exp_load)
        for (size_t i = 0; i < (size_t)L * a->E; i++) a->exp_sum[i] += exp_load[i];
}

void metrics_layer_bounds(const metrics_loads_t *a, const int *n_slots,
                          metrics_layer_bound_t *out) {
    for (int l = 0; l < a->L; l++) {
        const double *dl = a->dev_sum + (size_t)l * a->D;
        double total = 0;
        for (int d = 0; d < a->D; d++) total += dl[d];
        out[l].best_ep = total / a->D;
        out[l].bound = place_bound(a->exp_sum + (size_t)l * a->E, a->E, a->D, n_slots[l]);
        out[l].max_load = place_max(dl, a->D);
    }
}

void metrics_layout_bounds(const metrics_loads_t *a, const place_layout_t *lo,
                           metrics_layer_bound_t *out) {
    int *slots = ms_malloc((size_t)lo->n_layers * sizeof *slots);
    for (int l = 0; l < lo->n_layers; l++) slots[l] = lo->layer[l].n_slots;
    metrics_layer_bounds(a, slots, out);
    free(slots);
}

double metrics_gap_to_bound(const metrics_layer_bound_t *lb, int L) {
    double got = 0, bound = 0;
    for (int l = 0; l < L; l++) {
        got += lb[l].max_load;
        bound += lb[l].bound;
    }
    return bound > 0 ? got / bound - 1 : 0;
}

void metrics_balancedness(const metrics_layer_bound_t *lb, int L, metrics_t *m) {
    double bal = 0, mean = 0, max = 0, bound = 0;
    for (int l = 0; l < L; l++) {
        bal += lb[l].max_load > 0 ? lb[l].best_ep / lb[l].max_load : 1.0;
        mean += lb[l].best_ep;
        max += lb[l].max_load;
        bound += lb[l].bound;
    }
    metrics_set(m, METRIC_BALANCEDNESS_SGLANG, L ? bal / L : 0);
    metrics_set(m, METRIC_BALANCEDNESS_VLLM, max > 0 ? mean / max : 1.0);
    metrics_set(m, METRIC_MAX_LOAD_SUM, max);
    metrics_set(m, METRIC_BOUND_SUM, bound);
}

void metrics_from_loads(const metrics_loads_t *a, const metrics_layer_bound_t *lb, int prefill,
                        metrics_t *m) {
    double par_mean = a->par_n ? a->par_sum / (double)a->par_n : 0;
    metrics_set(m, prefill ? METRIC_PREFILL_PAR_MEAN : METRIC_PAR_MEAN, par_mean);
    metrics_set(m, prefill ? METRIC_PREFILL_PAR_MAX : METRIC_PAR_MAX, a->par_max);
    metrics_set(m, prefill ? METRIC_PREFILL_GAP_TO_BOUND : METRIC_GAP_TO_BOUND,
                metrics_gap_to_bound(lb, a->L));
    if (prefill) return;
    double bpar = 0;
    for (int l = 0; l < a->L; l++) bpar += lb[l].best_ep > 0 ? lb[l].bound / lb[l].best_ep : 1.0;
    metrics_set(m, METRIC_BOUND_PAR_MEAN, a->L ? bpar / a->L : 0);
}

void metrics_latencies(const store_request_t *r, int64_t n, int64_t w0, int decode,
                       double *ttft_ms, int64_t *n_ttft, double *tpot_ms, int64_t *n_tpot) {
    int64_t a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        if (r[i].arrival_ns < w0) continue;
        ttft_ms[a++] = (double)(r[i].first_token_ns - r[i].arrival_ns) / 1e6;
        if (decode && r[i].output_tokens > 1)
            tpot_ms[b++] = (double)(r[i].done_ns - r[i].first_token_ns) / 1e6 /
                           (r[i].output_tokens - 1);
    }
    *n_ttft = a;
    *n_tpot = b;
}

void metrics_quantiles(double *v, size_t n, double out[4]) {
    memset(out, 0, 4 * sizeof *out);
    if (!n) return;
    gsl_sort(v, 1, n);
    out[0] = gsl_stats_mean(v, 1, n);
    out[1] = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.50);
    out[2] = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.90);
    out[3] = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.99);
}

void metrics_requests(const store_request_t *r, int64_t n, int64_t w0, int decode, metrics_t *m) {
    size_t cap = n > 0 ? (size_t)n : 1;
    double *ttft = ms_malloc(cap * sizeof *ttft), *tpot = ms_malloc(cap * sizeof *tpot);
    double *e2e = ms_malloc(cap * sizeof *e2e), q[4];
    int64_t n1, n2, n3 = 0;
    metrics_latencies(r, n, w0, decode, ttft, &n1, tpot, &n2);
    for (int64_t i = 0; i < n; i++)
        if (r[i].arrival_ns >= w0) e2e[n3++] = (double)(r[i].done_ns - r[i].arrival_ns) / 1e9;
    metrics_set(m, METRIC_LATENCY_REQUESTS, (double)n1);
    metrics_set(m, METRIC_TPOT_REQUESTS, (double)n2);
    static const enum metrics_id T[3][4] = {
        {METRIC_TTFT_MEAN, METRIC_TTFT_P50, METRIC_TTFT_P90, METRIC_TTFT_P99},
        {METRIC_TPOT_MEAN, METRIC_TPOT_P50, METRIC_TPOT_P90, METRIC_TPOT_P99},
        {METRIC_E2E_MEAN, METRIC_E2E_P50, METRIC_E2E_P90, METRIC_E2E_P99}};
    double *v[3] = {ttft, tpot, e2e};
    int64_t k[3] = {n1, n2, n3};
    for (int i = 0; i < 3; i++) {
        metrics_quantiles(v[i], (size_t)k[i], q);
        for (int j = 0; j < 4; j++) metrics_set(m, T[i][j], q[j]);
    }
    free(ttft);
    free(tpot);
    free(e2e);
}

double metrics_per_node(double tokens, double seconds, int nodes) {
    return seconds > 0 && nodes > 0 ? tokens / seconds / nodes : 0;
}

/* ---- the CLI's tables ---- */

/* A column: the metric, its key (CSV, JSON), header, width and decimals;
 * scale multiplies the value and suffix follows it as text; a cell whose
 * `need` count is zero is missing (no request measured it). */
typedef struct col {
    enum metrics_id id;
    const char *key, *head;
    int width, prec;
    double scale;
    const char *suffix;
    int need;           /* a metrics_id, or -1 */
} col_t;

static const col_t FIXED[] = {
    {METRIC_STEP_TIME_MEAN, "step_ms", "step (ms)", 12, 3, 1, "", -1},
    {METRIC_OUT_TPS_NODE, "tok_s_node", "tok/s/node", 14, 0, 1, "", -1},
    {METRIC_PAR_MEAN, "par_mean", "mean PAR", 10, 3, 1, "", -1},
    {METRIC_PAR_MAX, "par_max", "max PAR", 10, 3, 1, "", -1},
};
static const col_t SERVE[] = {
    {METRIC_TPOT_MEAN, "tpot_ms", "TPOT(ms)", 9, 2, 1, "", METRIC_TPOT_REQUESTS},
    {METRIC_TPOT_P99, "tpot_p99_ms", "TPOT p99", 9, 2, 1, "", METRIC_TPOT_REQUESTS},
    {METRIC_TTFT_P50, "ttft_p50_ms", "TTFT p50", 9, 1, 1, "", METRIC_LATENCY_REQUESTS},
    {METRIC_TTFT_P99, "ttft_p99_ms", "TTFT p99", 9, 1, 1, "", METRIC_LATENCY_REQUESTS},
    {METRIC_OUT_TPS_NODE, "out_tok_s_node", "out tok/s/n", 12, 0, 1, "", -1},
    {METRIC_IN_TPS_NODE, "in_tok_s_node", "in tok/s/n", 12, 0, 1, "", -1},
    {METRIC_PAR_MEAN, "par_mean", "mean PAR", 8, 3, 1, "", -1},
    {METRIC_MIGRATED_GB, "migrated_gb", "GB moved", 8, 2, 1, "", -1},
    {METRIC_GAP_TO_BOUND, "gap_pct", "gap", 7, 1, 100, "%", -1},
};

table_t *metrics_table(table_doc_t *d, int serving, int ci) {
    const col_t *c = serving ? SERVE : FIXED;
    size_t n = serving ? sizeof SERVE / sizeof *SERVE : sizeof FIXED / sizeof *FIXED;
    table_t *t = table_new(d, "summary", NULL);
    table_col(t, "strategy", "strategy", 10, 1);
    table_col(t, "prior", "prior", 18, 1);
    for (size_t i = 0; i < n; i++) {
        table_col(t, c[i].key, c[i].head, ci ? 2 * c[i].width + 4 : c[i].width, 0);
        if (ci) { /* the half-width: its own column in CSV and JSON, inside the cell as text */
            char k[64];
            snprintf(k, sizeof k, "%s_ci95", c[i].key);
            table_col(t, k, NULL, 0, 0);
        }
    }
    return t;
}

static void row(table_t *t, const char *strategy, const char *prior, const metrics_t *m,
                const metrics_t *half, int serving) {
    const col_t *c = serving ? SERVE : FIXED;
    size_t n = serving ? sizeof SERVE / sizeof *SERVE : sizeof FIXED / sizeof *FIXED;
    table_str(t, strategy);
    table_str(t, prior ? prior : "-");
    for (size_t i = 0; i < n; i++) {
        int missing = !m->has[c[i].id] ||
                      (c[i].need >= 0 && metrics_get(m, (enum metrics_id)c[i].need, 0) <= 0);
        double v = c[i].scale * m->v[c[i].id], h = half ? c[i].scale * half->v[c[i].id] : 0;
        char cell[96];
        if (half) snprintf(cell, sizeof cell, "%.*f%s +- %.*f", c[i].prec, v, c[i].suffix,
                           c[i].prec, h);
        else snprintf(cell, sizeof cell, "%.*f%s", c[i].prec, v, c[i].suffix);
        if (missing) table_null(t);
        else table_num_text(t, v, cell);
        if (half) {
            if (missing) table_null(t);
            else table_num_text(t, h, "");
        }
    }
}

void metrics_table_row(table_t *t, const char *strategy, const char *prior, const metrics_t *m,
                       int serving) {
    row(t, strategy, prior, m, NULL, serving);
}

void metrics_table_row_ci(table_t *t, const char *strategy, const char *prior,
                          const metrics_ci_t *ci, int serving) {
    metrics_t half = ci->mean;
    for (int i = 0; i < METRIC_N; i++) half.v[i] = ci->half[i];
    row(t, strategy, prior, &ci->mean, &half, serving);
}

void metrics_print_run(FILE *f, int64_t run_id, const char *strategy, const char *prior,
                       const metrics_t *m, int serving) {
#define G(id) metrics_get(m, METRIC_##id, 0)
    if (serving)
        fprintf(f, "run %lld (%s, prior %s): %.0f requests in %.1f simulated s; TPOT %.2f ms "
                   "(p99 %.2f), TTFT p50 %.1f ms (p99 %.1f); %.0f output and %.0f input tokens/s "
                   "per node; mean PAR %.3f; %.2f GB migrated\n",
                (long long)run_id, strategy, prior ? prior : "-", G(REQUESTS), G(SIM_TIME), G(TPOT_MEAN), G(TPOT_P99),
                G(TTFT_P50), G(TTFT_P99), G(OUT_TPS_NODE), G(IN_TPS_NODE), G(PAR_MEAN),
                G(MIGRATED_GB));
    else /* fixed batches: decode runs report output tokens, prefill runs input tokens */
        fprintf(f, "run %lld (%s, prior %s): %.0f steps, %.3f ms per step, %.0f %s tokens/s per "
                   "node, mean PAR %.3f\n", (long long)run_id, strategy, prior ? prior : "-",
                G(STEPS), G(STEP_TIME_MEAN),
                m->has[METRIC_IN_TPS_NODE] ? G(IN_TPS_NODE) : G(OUT_TPS_NODE),
                m->has[METRIC_IN_TPS_NODE] ? "input" : "output", G(PAR_MEAN));
#undef G
}
