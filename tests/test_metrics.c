/* Tests of the metrics module: the registry, each formula on hand-computed
 * cases, and that the CLI table, the summary table and the report's run
 * table show the same stored value of every metric, for a fixed-batch and a
 * serving experiment. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "metrics.h"
#include "table.h"
#include "report.h"
#include "util.h"
#include "fixture.h"

Test(metrics, registry_names_are_unique_and_found) {
    for (int i = 0; i < METRIC_N; i++) {
        cr_assert_eq(metrics_find(metrics_name(i)), i, "%s", metrics_name(i));
        cr_assert_gt(strlen(metrics_meaning(i)), 5, "%s has no meaning", metrics_name(i));
        for (int j = 0; j < i; j++) cr_assert_str_neq(metrics_name(i), metrics_name(j));
    }
    cr_assert_eq(metrics_find("omni_replans"), -1); /* a strategy's own */
    cr_assert_str_eq(metrics_unit(METRIC_TTFT_P50), "ms");
    cr_assert_str_eq(metrics_unit(METRIC_OUT_TPS_NODE), "tokens/s");
    cr_assert_str_eq(metrics_unit(METRIC_PAR_MEAN), "");
}

Test(metrics, gap_to_bound_compares_whole_run_loads) {
    /* Layer 0: busiest 3 against bound 2; layer 1: 5 against 2: (3+5)/(2+2) - 1. */
    metrics_layer_bound_t lb[2] = {{.best_ep = 1, .bound = 2, .max_load = 3},
                                   {.best_ep = 1, .bound = 2, .max_load = 5}};
    cr_assert_float_eq(metrics_gap_to_bound(lb, 2), 1.0, 1e-15);
    cr_assert_float_eq(metrics_gap_to_bound(lb, 1), 0.5, 1e-15);

    /* Two steps on 2 devices, one layer of 2 experts. Step loads (1,3) and
     * (3,1): per-step PAR 1.5 both, but summed loads (4,4) balance, so the
     * whole-run gap is 0 even though each step's maximum was 3. */
    metrics_loads_t a;
    metrics_loads_init(&a, 1, 2, 2);
    double d1[2] = {1, 3}, d2[2] = {3, 1}, e1[2] = {1, 3}, e2[2] = {3, 1};
    metrics_loads_step(&a, d1, e1);
    cr_assert_float_eq(a.step_max[0], 3, 1e-15);
    cr_assert_float_eq(a.step_mean[0], 2, 1e-15);
    metrics_loads_step(&a, d2, e2);
    int slots = 2;
    metrics_layer_bound_t b;
    metrics_layer_bounds(&a, &slots, &b);
    cr_assert_float_eq(b.best_ep, 4, 1e-15);
    cr_assert_float_eq(b.max_load, 4, 1e-15);
    cr_assert_float_eq(b.bound, 4, 1e-15);
    metrics_t m = {0};
    metrics_from_loads(&a, &b, 0, &m);
    cr_assert_float_eq(metrics_get(&m, METRIC_PAR_MEAN, -1), 1.5, 1e-15);
    cr_assert_float_eq(metrics_get(&m, METRIC_PAR_MAX, -1), 1.5, 1e-15);
    cr_assert_float_eq(metrics_get(&m, METRIC_GAP_TO_BOUND, -1), 0, 1e-15);
    cr_assert_float_eq(metrics_get(&m, METRIC_BOUND_PAR_MEAN, -1), 1, 1e-15);
    cr_assert_not(m.has[METRIC_PREFILL_PAR_MEAN]);
    metrics_from_loads(&a, &b, 1, &m);
    cr_assert_float_eq(metrics_get(&m, METRIC_PREFILL_PAR_MEAN, -1), 1.5, 1e-15);
    metrics_balancedness(&b, 1, &m);
    cr_assert_float_eq(metrics_get(&m, METRIC_BALANCEDNESS_SGLANG, -1), 1, 1e-15);
    metrics_loads_free(&a);
}

Test(metrics, latencies_leave_out_the_warm_up) {
    /* Arrivals at 0 (warm-up), 10 and 20 ms; window from 10 ms. TTFT 5, 7
     * ms; TPOT (30-15)/(4-1) = 5 ms and none (one token). */
    store_request_t r[3] = {
        {.arrival_ns = 0, .first_token_ns = 100000000, .done_ns = 200000000, .output_tokens = 9},
        {.arrival_ns = 10000000, .first_token_ns = 15000000, .done_ns = 30000000,
         .output_tokens = 4},
        {.arrival_ns = 20000000, .first_token_ns = 27000000, .done_ns = 27000000,
         .output_tokens = 1},
    };
    metrics_t m = {0};
    metrics_requests(r, 3, 10000000, 1, &m);
    cr_assert_eq(metrics_get(&m, METRIC_LATENCY_REQUESTS, -1), 2);
    cr_assert_eq(metrics_get(&m, METRIC_TPOT_REQUESTS, -1), 1);
    cr_assert_float_eq(metrics_get(&m, METRIC_TTFT_MEAN, -1), 6, 1e-12);
    cr_assert_float_eq(metrics_get(&m, METRIC_TTFT_P50, -1), 6, 1e-12);
    cr_assert_float_eq(metrics_get(&m, METRIC_TPOT_MEAN, -1), 5, 1e-12);
    cr_assert_float_eq(metrics_get(&m, METRIC_E2E_MEAN, -1), (0.020 + 0.007) / 2, 1e-12);
    /* No window: the warm-up request counts too. */
    metrics_requests(r, 3, 0, 1, &m);
    cr_assert_eq(metrics_get(&m, METRIC_LATENCY_REQUESTS, -1), 3);
    cr_assert_float_eq(metrics_get(&m, METRIC_TTFT_P99, -1), 100 - 0.02 * (100 - 7), 1e-9);
    /* Prefill alone has no TPOT. */
    metrics_requests(r, 3, 0, 0, &m);
    cr_assert_eq(metrics_get(&m, METRIC_TPOT_REQUESTS, -1), 0);
    cr_assert_float_eq(metrics_per_node(100, 2, 5), 10, 1e-15);
    cr_assert_eq(metrics_per_node(100, 0, 5), 0);
}

Test(metrics, cli_cells_print_dashes_without_requests) {
    metrics_t m = {0};
    metrics_set(&m, METRIC_TPOT_MEAN, 3);
    metrics_set(&m, METRIC_TPOT_REQUESTS, 0);
    metrics_set(&m, METRIC_GAP_TO_BOUND, 0.5);
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    table_doc_t *d = table_doc_new("compare", TABLE_TEXT);
    metrics_table_row(metrics_table(d, 1, 0), "x", "past", &m, 1);
    table_print(d, f);
    table_doc_free(d);
    fclose(f);
    const char *row = strchr(s, '\n') + 1; /* after the header */
    cr_assert_str_eq(row, "x          past                       -         -         -         -            -"
                          "            -        -        -   50.0%\n");
    free(s);
}

/* ---- CLI, summary table and report agree ---- */

static char dir[64];

static void setup(void) { fx_dir_make(dir, sizeof dir, "metrics"); }

static void teardown(void) { fx_dir_remove(dir); }

static char *slurp(const char *p) {
    char *buf;
    size_t n;
    cr_assert_eq(ms_read_file(p, &buf, &n), MS_OK, "%s", p);
    return buf;
}

/* Runs `moesim compare` on the config text; returns its stdout. */
static char *compare(const char *name, const char *ini, char *db, size_t n) {
    char cfg[256], out[256], cwd[1024];
    cr_assert(getcwd(cwd, sizeof cwd));
    snprintf(cfg, sizeof cfg, "%s/%s.ini", dir, name);
    snprintf(out, sizeof out, "%s/%s.out", dir, name);
    snprintf(db, n, "%s/%s.db", dir, name);
    FILE *f = fopen(cfg, "w");
    cr_assert(f);
    fprintf(f, ini, cwd);
    fclose(f);
    fflush(stdout);
    int saved = dup(1), fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    close(fd);
    char *argv[] = {"compare", cfg, "--db", db, NULL};
    int rc = cmd_compare(4, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    cr_assert_eq(rc, 0, "%s", ms_err_last());
    return slurp(out);
}

static double sql1(sqlite3 *h, const char *sql, int64_t run) {
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &q, NULL), SQLITE_OK, "%s", sql);
    sqlite3_bind_int64(q, 1, run);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    double v = sqlite3_column_double(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* The line of text that starts with prefix. */
static const char *line_of(const char *text, const char *prefix) {
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, strlen(prefix))) return p;
    return NULL;
}

/* True when the line (up to its newline) holds cell. */
static int line_has(const char *line, const char *cell) {
    const char *e = strchr(line, '\n');
    size_t n = e ? (size_t)(e - line) : strlen(line), k = strlen(cell);
    for (size_t i = 0; i + k <= n; i++)
        if (!strncmp(line + i, cell, k)) return 1;
    return 0;
}

typedef struct {
    enum metrics_id id;
    const char *cli, *md; /* formats (NULL: not in that table) */
    double scale;
} shown_t;

static void agree(const char *name, const char *ini, int serving) {
    char db[256], out[256], idx_path[300];
    char *cli = compare(name, ini, db, sizeof db);
    snprintf(out, sizeof out, "%s/%s-report", dir, name);
    cr_assert_eq(report_build(db, out, "bars", NULL), MS_OK, "%s", ms_err_last());
    snprintf(idx_path, sizeof idx_path, "%s/index.md", out);
    char *idx = slurp(idx_path);
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    static const shown_t FIXED[] = {
        {METRIC_STEP_TIME_MEAN, " %.3f ", "| %.2f |", 1},
        {METRIC_OUT_TPS_NODE, " %.0f ", "| %.0f |", 1},
        {METRIC_PAR_MEAN, " %.3f ", "| %.3f |", 1},
        {METRIC_PAR_MAX, " %.3f", NULL, 1},
        {METRIC_GAP_TO_BOUND, NULL, "| %+.1f%% |", 100},
    };
    static const shown_t SERVE[] = {
        {METRIC_TPOT_MEAN, " %.2f ", "| %.2f |", 1},
        {METRIC_TPOT_P99, " %.2f ", "| %.2f |", 1},
        {METRIC_TTFT_P50, " %.1f ", "| %.1f |", 1},
        {METRIC_TTFT_P99, " %.1f ", "| %.1f |", 1},
        {METRIC_OUT_TPS_NODE, " %.0f ", "| %.0f |", 1},
        {METRIC_IN_TPS_NODE, " %.0f ", NULL, 1},
        {METRIC_PAR_MEAN, " %.3f ", "| %.3f |", 1},
        {METRIC_MIGRATED_GB, " %.2f ", "| %.2f |", 1},
        {METRIC_GAP_TO_BOUND, " %.1f%%", "| %+.1f%% |", 100},
    };
    const shown_t *sh = serving ? SERVE : FIXED;
    size_t nsh = serving ? sizeof SERVE / sizeof *SERVE : sizeof FIXED / sizeof *FIXED;
    sqlite3_stmt *q;
    sqlite3_prepare_v2(h, "SELECT run_id, strategy FROM runs ORDER BY run_id", -1, &q, NULL);
    int runs = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(q, 0);
        char strat[64], pre[128];
        snprintf(strat, sizeof strat, "%s", (const char *)sqlite3_column_text(q, 1));
        metrics_t m;
        cr_assert_eq(metrics_load(h, id, &m), MS_OK);
        /* The stored gap is the layer_bounds definition. */
        double gap = sql1(h, "SELECT sum(max_load) / sum(bound) - 1 FROM layer_bounds "
                             "WHERE run_id = ?1", id);
        cr_assert_float_eq(metrics_get(&m, METRIC_GAP_TO_BOUND, NAN), gap, 1e-12, "%s", strat);
        snprintf(pre, sizeof pre, "%-10s ", strat);
        const char *cl = line_of(cli, pre);
        snprintf(pre, sizeof pre, "| %lld | %s | %s |", (long long)id, name, strat);
        const char *ml = line_of(idx, pre);
        cr_assert(cl, "no CLI row for %s in\n%s", strat, cli);
        cr_assert(ml, "no run-table row for %s in\n%s", pre, idx);
        for (size_t k = 0; k < nsh; k++) {
            cr_assert(m.has[sh[k].id], "%s not stored", metrics_name(sh[k].id));
            char cell[64];
            double v = sh[k].scale * m.v[sh[k].id];
            if (sh[k].cli) {
                snprintf(cell, sizeof cell, sh[k].cli, v);
                cr_assert(line_has(cl, cell), "%s: CLI lacks %s = '%s'", strat,
                          metrics_name(sh[k].id), cell);
            }
            if (sh[k].md) {
                snprintf(cell, sizeof cell, sh[k].md, v);
                cr_assert(line_has(ml, cell), "%s: index.md lacks %s = '%s'", strat,
                          metrics_name(sh[k].id), cell);
            }
        }
        if (serving) {
            /* TTFT p50 from the request rows after the warm-up, by hand. */
            double w0 = metrics_get(&m, METRIC_WINDOW_START, -1);
            cr_assert_gt(w0, 0);
            int n = (int)sql1(h, "SELECT count(*) FROM requests WHERE run_id = ?1", id), k = 0;
            double *t = malloc((size_t)n * sizeof *t);
            sqlite3_stmt *r;
            sqlite3_prepare_v2(h, "SELECT (first_token_ns - arrival_ns) / 1e6, arrival_ns "
                                  "FROM requests WHERE run_id = ?1", -1, &r, NULL);
            sqlite3_bind_int64(r, 1, id);
            while (sqlite3_step(r) == SQLITE_ROW)
                if (sqlite3_column_int64(r, 1) >= llround(w0 * 1e9))
                    t[k++] = sqlite3_column_double(r, 0);
            sqlite3_finalize(r);
            cr_assert_lt(k, n, "the warm-up left no request out");
            cr_assert_eq(metrics_get(&m, METRIC_LATENCY_REQUESTS, -1), k);
            gsl_sort(t, 1, (size_t)k);
            cr_assert_float_eq(metrics_get(&m, METRIC_TTFT_P50, -1),
                               gsl_stats_quantile_from_sorted_data(t, 1, (size_t)k, 0.5), 1e-9);
            free(t);
        }
        runs++;
    }
    sqlite3_finalize(q);
    cr_assert_eq(runs, 2);
    /* One hash per strategy: merge and resume tell the runs apart. */
    cr_assert_eq(sql1(h, "SELECT count(DISTINCT config_hash) FROM runs", 0), 2);
    sqlite3_close(h);
    free(cli);
    free(idx);
}

#define TRACE "trace = %s/traces/data/deepseek-v3-sglang/decode_in1800out100.json\n"

Test(metrics, cli_summary_and_report_agree_fixed_batch, .init = setup, .fini = teardown) {
    agree("fixed",
          "[experiment]\nname = fixed\nseed = 3\nsteps = 3\n[cluster]\nhardware = H800\n"
          "nodes = 2\ndevices_per_node = 8\n[model]\npreset = deepseek-v3\n[workload]\n" TRACE
          "tokens_per_device = 8\n[placement]\nstrategies = static, eplb\n",
          0);
}

/* Serving in analytic mode with OmniPlacement re-planning while it serves. */
Test(metrics, cli_summary_and_report_agree_serving, .init = setup, .fini = teardown) {
    agree("serving",
          "[experiment]\nname = serving\nseed = 1\n[cluster]\nhardware = H800\nnodes = 2\n"
          "devices_per_node = 8\nmode = analytic\n[model]\npreset = deepseek-v3\n[workload]\n" TRACE
          "[placement]\nstrategies = static, omni\nredundant = 16\n"
          "[serving]\nprefill_nodes = 1\nmax_batch_per_device = 16\narrival = poisson\n"
          "rate = 20\nduration_s = 1.5\nwarmup_s = 0.3\nprompt = lognormal\nprompt_mean = 128\n"
          "prompt_cv = 0.5\nprompt_max = 1024\noutput = lognormal\noutput_mean = 20\n"
          "output_cv = 0.5\noutput_max = 100\n",
          1);
}
