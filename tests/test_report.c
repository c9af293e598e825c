/* Tests for `moesim report`: every figure family draws a real PNG (and SVG
 * and script) from a small database built with the store_* functions; a
 * database lacking a figure's data skips it with a message naming the data
 * and still draws the rest; bad databases fail cleanly. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "metrics.h"
#include "place.h"
#include "report.h"
#include "report_int.h"
#include "store.h"
#include "util.h"

/* What a test database holds beyond the fixed-batch basics. */
enum {
    DB_SERVING = 1,   /* requests rows */
    DB_DYNAMIC = 2,   /* re-plans, migrations and replicated experts */
    DB_SWEEP = 4,     /* runs at several redundancy budgets */
    DB_ALL = 7,
};

#define L_ 6
#define E_ 16
#define D_ 4
#define STEPS_ 8

static char tmpdir[512];

static void make_tmp(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/moesim-report-XXXXXX", t && *t ? t : "/tmp");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *en;
    while ((en = readdir(d))) {
        if (!strcmp(en->d_name, ".") || !strcmp(en->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, en->d_name);
        struct stat sb;
        if (!lstat(p, &sb) && S_ISDIR(sb.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void teardown(void) { rm_tree(tmpdir); }

static void path(char *out, size_t n, const char *rel) { snprintf(out, n, "%s/%s", tmpdir, rel); }

/* One run of strategy s in experiment name with the given data. */
static void add_run(store_t *st, const char *name, const char *s, int redundant, int what,
                    int64_t *id_out) {
    store_run_t r = {.name = name, .strategy = s, .strategy_version = 1,
                     .trace = "traces/data/test-trace.json", .model = "deepseek-v3",
                     .hardware = "H800", .nodes = 2, .devices = D_, .seed = 1,
                     .config = "[experiment]\n", .config_hash = "0", .prior = "past"};
    int64_t id;
    cr_assert_eq(store_run_begin(st, &r, &id), MS_OK);
    /* Static leaves one device hot; the others balance. */
    double skew = !strcmp(s, "static") ? 3.5 : 1.2 + 0.01 * redundant;
    for (int k = 0; k < STEPS_; k++) {
        int64_t dur = 50000000 + 1000000 * (int64_t)(10 * skew);
        cr_assert_eq(store_step(st, id, k, (int64_t)k * dur, dur, 512), MS_OK);
        for (int l = 0; l < L_; l++)
            cr_assert_eq(store_layer_step(st, id, k, l, dur / L_, 128 * skew * (1 + 0.05 * l),
                                          128),
                         MS_OK);
    }
    for (int l = 0; l < L_; l++) {
        double mx = 0;
        for (int d = 0; d < D_; d++) {
            double v = 128.0 * STEPS_ * (d == 0 ? skew : (D_ - skew) / (D_ - 1));
            if (v > mx) mx = v;
            cr_assert_eq(store_device_load(st, id, l, d, v), MS_OK);
        }
        cr_assert_eq(store_layer_bound(st, id, l, 128.0 * STEPS_, 128.0 * STEPS_ * 1.05, mx),
                     MS_OK);
        for (int e = 0; e < E_; e++) {
            int copies = (what & DB_DYNAMIC) && strcmp(s, "static") && e < 2 ? 2 : 1;

            cr_assert_eq(store_replicas(st, id, l, e, copies), MS_OK);
            cr_assert_eq(store_trace_count(st, id, l, e, e == 3 ? 0 : 1000.0 / (e + 1)), MS_OK);
        }
    }
    /* device traffic: static sends more across nodes (devices 0-1 | 2-3) */
    for (int a = 0; a < D_; a++)
        for (int b = 0; b < D_; b++)
            if (a != b)
                cr_assert_eq(store_traffic(st, id, a, b, (a / 2 != b / 2 ? skew : 1) * 1e6), MS_OK);
    if ((what & DB_DYNAMIC) && strcmp(s, "static")) {
        cr_assert_eq(store_replan(st, id, 120000000, 2, 3, 4e8), MS_OK);
        for (int m = 0; m < 3; m++) {
            store_migration_t mg = {.time_ns = 120000000 + m * 10000000,
                                    .done_ns = 160000000 + m * 10000000, .layer = m, .expert = m,
                                    .bytes = 1e8, .src_device = 0, .dst_device = 1 + m};
            cr_assert_eq(store_migration(st, id, &mg), MS_OK);
        }
    }
    if (what & DB_SERVING) {
        /* TTFT 100 + q ms; TPOT 40 ms for the 24 requests with 2+ tokens. */
        store_request_t rq[30];
        for (int q = 0; q < 30; q++) {
            int64_t arr = (int64_t)q * 20000000;
            rq[q] = (store_request_t){.request = q, .arrival_ns = arr,
                                      .first_token_ns = arr + 100000000 + q * 1000000,
                                      .done_ns = arr + 100000000 + q * 1000000 +
                                                 40000000LL * (q % 5),
                                      .prompt_tokens = 100, .output_tokens = 1 + q % 5};
            cr_assert_eq(store_request(st, id, &rq[q]), MS_OK);
        }
        metrics_t m = {0};
        metrics_requests(rq, 30, 0, 1, &m);
        cr_assert_eq(metrics_store(st, id, &m), MS_OK);
    }
    cr_assert_eq(store_metric(st, id, "redundant", redundant, "slots"), MS_OK);
    cr_assert_eq(store_metric(st, id, "par_mean", skew, ""), MS_OK);
    cr_assert_eq(store_metric(st, id, "step_time_mean", 50 + 10 * skew, "ms"), MS_OK);
    cr_assert_eq(store_metric(st, id, "output_tokens_per_s_per_node", 1e4 / skew, "tokens/s"),
                 MS_OK);
    cr_assert_eq(store_run_commit(st), MS_OK);
    if (id_out) *id_out = store_final_id(st, id);
}

/* tmpdir/t.db with experiment "t" (static, eplb, omni) and what's asked. */
static void build_db(int what) {
    char db[1024];
    path(db, sizeof db, "t.db");
    store_t *st;
    cr_assert_eq(store_open(db, &st), MS_OK);
    const char *S[] = {"static", "eplb", "omni"};
    for (int i = 0; i < 3; i++) add_run(st, "t", S[i], 4, what, NULL);
    if (what & DB_SWEEP)
        for (int i = 0; i < 3; i++)
            for (int r = 0; r <= 12; r += 4) add_run(st, "sweep", S[i], r, 0, NULL);
    store_close(st);
}

static int has_png(const char *rel) {
    char p[1024];
    path(p, sizeof p, rel);
    FILE *f = fopen(p, "rb");
    if (!f) return 0;
    unsigned char sig[8];
    size_t n = fread(sig, 1, 8, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    static const unsigned char PNG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return n == 8 && !memcmp(sig, PNG, 8) && size > 4000;
}

static char *slurp(const char *rel) {
    char p[1024];
    path(p, sizeof p, rel);
    char *s = NULL;
    ms_err_quiet(1);
    if (ms_read_file(p, &s, NULL)) return NULL;
    return s;
}

/* No temporary file may remain in the output folder. */
static void assert_no_tmp(const char *rel) {
    char p[1024];
    path(p, sizeof p, rel);
    DIR *d = opendir(p);
    cr_assert_not_null(d);
    struct dirent *en;
    while ((en = readdir(d)))
        cr_assert(en->d_name[0] != '.' || !strcmp(en->d_name, ".") || !strcmp(en->d_name, ".."),
                  "left behind: %s", en->d_name);
    closedir(d);
}

/* Draws one family into out/ and checks its PNG, SVG and script. */
static void draw_one(const char *fig, const char *stem, int what) {
    build_db(what);
    char db[1024], out[1024];
    path(db, sizeof db, "t.db");
    path(out, sizeof out, "out");
    report_result_t res;
    ms_err_quiet(1);
    cr_assert_eq(report_build(db, out, fig, &res), MS_OK, "%s: %s", fig, ms_err_last());
    cr_assert_eq(res.drawn, 1, "%s drew %d", fig, res.drawn);
    cr_assert_eq(res.failed, 0);
    char rel[256];
    snprintf(rel, sizeof rel, "out/%s.png", stem);
    cr_assert(has_png(rel), "%s is not a non-empty PNG", rel);
    snprintf(rel, sizeof rel, "out/%s.svg", stem);
    char *svg = slurp(rel);
    cr_assert_not_null(svg, "%s missing", rel);
    cr_assert_not_null(strstr(svg, "<svg"));
    cr_assert_not_null(strstr(svg, "</svg>"), "%s is cut short", rel);
    free(svg);
    snprintf(rel, sizeof rel, "out/%s.gp", stem);
    char *gp = slurp(rel);
    cr_assert_not_null(gp, "%s missing", rel);
    free(gp);
    assert_no_tmp("out");
}

TestSuite(report, .init = make_tmp, .fini = teardown);

Test(report, layer_max_png) {
    draw_one("layer_max", "layer_max-t", DB_SERVING | DB_DYNAMIC);
    /* Static far above the rest: a zoom panel; the reference lines drawn. */
    char *gp = slurp("out/layer_max-t.gp");
    cr_assert_not_null(strstr(gp, "zoom on the others (static leaves the range)"));
    cr_assert_not_null(strstr(gp, "title 'mean = perfect balance (BestEP)'"));
    cr_assert_not_null(strstr(gp, "title 'below the lower bound: unreachable'"));
    free(gp);
}
/* True when the block `$name << EOD` of the script holds the line. */
static int block_has(const char *gp, const char *name, const char *line) {
    char head[64];
    snprintf(head, sizeof head, "$%s << EOD\n", name);
    const char *b = strstr(gp, head);
    if (!b) return 0;
    const char *e = strstr(b, "\nEOD\n");
    char want[128];
    snprintf(want, sizeof want, "\n%s\n", line);
    const char *f = strstr(b, want);
    return f && e && f <= e;
}

Test(report, device_heat_png) {
    draw_one("device_heat", "device_heat-t", DB_SERVING | DB_DYNAMIC);
    /* Load over the layer's mean: static's device 0 carries 3.5x, the
     * others (4 - 3.5) / 3; eplb's device 0 1.24x (add_run's skews). */
    char *gp = slurp("out/device_heat-t.gp");
    cr_assert(block_has(gp, "h0", "0 0 3.5"), "%s", gp);
    cr_assert(block_has(gp, "h1", "0 0 1.24"));
    cr_assert(!block_has(gp, "h1", "0 0 3.5"));
    free(gp);
}
Test(report, traffic_heat_png) {
    draw_one("traffic_heat", "traffic_heat-t", DB_SERVING | DB_DYNAMIC);
    /* static's bytes: 3.5e6 across nodes (8 pairs), 1e6 inside (4 pairs),
     * mean 2.667e6: 1.3125 and 0.375 of it (add_run's traffic rows) */
    char *gp = slurp("out/traffic_heat-t.gp");
    cr_assert_not_null(strstr(gp, "destination device"));
    cr_assert(block_has(gp, "h0", "2 0 1.3125"), "%s", gp);
    cr_assert(block_has(gp, "h0", "1 0 0.375"));
    /* A device's traffic to itself has no bytes: drawn at the scale's floor,
     * never as an undefined point (gnuplot drops those from `with image` and
     * skews the picture). */
    cr_assert_null(strstr(gp, "nan"), "an undefined cell in the traffic heatmap");
    free(gp);
}
Test(report, replica_heat_png) {
    draw_one("replica_heat", "replica_heat-t", DB_SERVING | DB_DYNAMIC);
    /* Experts 0 and 1 have two copies in the dynamic runs (eplb, omni), the
     * rest one. */
    char *gp = slurp("out/replica_heat-t.gp");
    cr_assert(block_has(gp, "h1", "0 0 2"), "%s", gp);
    cr_assert(block_has(gp, "h1", "1 5 2"));
    cr_assert(block_has(gp, "h1", "2 0 1"));
    cr_assert(block_has(gp, "h2", "15 5 1"));
    cr_assert(!block_has(gp, "h1", "0 0 1"));
    free(gp);
}
Test(report, trace_heat_png) {
    draw_one("trace_heat", "trace_heat-test-trace", DB_SERVING | DB_DYNAMIC);
    /* Counts 1000 / (e + 1), expert 3 none, over the layer's mean. */
    double sum = 0;
    for (int e = 0; e < E_; e++) sum += e == 3 ? 0 : 1000.0 / (e + 1);
    char line[64];
    char *gp = slurp("out/trace_heat-test-trace.gp");
    snprintf(line, sizeof line, "0 0 %.5g", 1000.0 / (sum / E_));
    cr_assert(block_has(gp, "h", line), "no '%s' in %s", line, gp);
    snprintf(line, sizeof line, "1 2 %.5g", 500.0 / (sum / E_));
    cr_assert(block_has(gp, "h", line), "no '%s'", line);
    cr_assert(!block_has(gp, "h", "3 0 1"));
    free(gp);
}
Test(report, par_time_png) {
    draw_one("par_time", "par_time-t", DB_SERVING | DB_DYNAMIC);
    /* Re-plans as lines and a migration panel for the dynamic strategies. */
    char *gp = slurp("out/par_time-t.gp");
    cr_assert_not_null(strstr(gp, "title 'omni re-plan'"));
    cr_assert_not_null(strstr(gp, "expert weights in flight"));
    free(gp);
}
Test(report, bars_png) {
    draw_one("bars", "bars-t", DB_SERVING | DB_DYNAMIC);
    /* Stored metrics: TPOT 40 ms, TTFT p50 114.5 ms (100..129), tokens/s
     * 1e4 / skew, mean PAR = skew (3.5 static, 1.24 the others). */
    char *gp = slurp("out/bars-t.gp");
    cr_assert(block_has(gp, "m0", "0 \"static\" 40 8355711 \"40.0\" \"\" \"\" 0"), "%s", gp);
    cr_assert(block_has(gp, "m2", "0 \"static\" 114.5 8355711 \"114\" \"\" \"\" 0"), "%s", gp);
    cr_assert(strstr(gp, "0 \"static\" 3.5 "), "%s", gp);
    cr_assert(strstr(gp, "1 \"eplb\" 1.24 "));
    cr_assert(strstr(gp, "0 \"static\" 2857.14286 "));
    cr_assert(!strstr(gp, "yerrorbars"), "one seed a strategy: no error bars");
    free(gp);
}
Test(report, cdf_png) {
    draw_one("cdf", "cdf-t", DB_SERVING | DB_DYNAMIC);
    /* TTFT from 100 to 129 ms; every TPOT 40 ms. */
    char *gp = slurp("out/cdf-t.gp");
    cr_assert(block_has(gp, "ttft0", "100 0"), "%s", gp);
    cr_assert(block_has(gp, "ttft0", "129 1"));
    cr_assert(block_has(gp, "tpot0", "40 1"));
    cr_assert(!block_has(gp, "tpot0", "0 0"));
    free(gp);
}
Test(report, par_budget_png) {
    draw_one("par_budget", "par_budget", DB_ALL);
    /* Mean PAR 1.2 + 0.01 r at r = 0..12 redundant for eplb; static 3.5;
     * the bound 1.05 at every budget. */
    char *gp = slurp("out/par_budget.gp");
    cr_assert(strstr(gp, "\n4 1.24 1.24 1.24\n"), "%s", gp);
    cr_assert(strstr(gp, "\n12 1.32 1.32 1.32\n"));
    cr_assert(strstr(gp, "\n0 3.5 3.5 3.5\n"));
    cr_assert(strstr(gp, "\n8 1.05\n"));
    free(gp);
}

Test(report, full_report_has_every_figure_and_the_run_table) {
    build_db(DB_ALL);
    char db[1024], out[1024];
    path(db, sizeof db, "t.db");
    path(out, sizeof out, "out");
    report_result_t res;
    ms_err_quiet(1);
    cr_assert_eq(report_build(db, out, NULL, &res), MS_OK, "%s", ms_err_last());
    cr_assert_eq(res.failed, 0);
    char *idx = slurp("out/index.md");
    cr_assert_not_null(idx);
    const char *stems[] = {"layer_max-t", "device_heat-t", "replica_heat-t", "par_time-t",
                           "bars-t", "cdf-t", "trace_heat-test-trace", "par_budget",
                           "layer_max-sweep"};
    for (size_t i = 0; i < sizeof stems / sizeof *stems; i++) {
        char rel[256], link[256];
        snprintf(rel, sizeof rel, "out/%s.png", stems[i]);
        cr_assert(has_png(rel), "%s missing", rel);
        snprintf(link, sizeof link, "](%s.png)", stems[i]);
        cr_assert_not_null(strstr(idx, link), "index lacks %s", link);
    }
    /* Serving columns appear once requests exist; static has no migrations. */
    cr_assert_not_null(strstr(idx, "| TPOT mean (ms) |"));
    cr_assert_not_null(strstr(idx, "| gap to bound |"));
    cr_assert_not_null(strstr(idx, "| hindsight PAR | regret |"));
    cr_assert_not_null(strstr(idx, "## Experiment t\n"));
    cr_assert_not_null(strstr(idx, "## Experiment sweep\n"));
    /* The sweep served no requests: its CDFs are skipped, said in the index. */
    cr_assert_not_null(strstr(idx, "figure f (TTFT and TPOT CDFs) for experiment 'sweep'"));
    free(idx);
    assert_no_tmp("out");
}

Test(report, missing_data_is_named_skipped_and_the_rest_drawn) {
    build_db(0); /* fixed batch: no requests, one budget, one copy per expert */
    char db[1024], out[1024];
    path(db, sizeof db, "t.db");
    path(out, sizeof out, "out");
    report_result_t res;
    ms_err_quiet(1);
    cr_assert_eq(report_build(db, out, NULL, &res), MS_OK, "%s", ms_err_last());
    cr_assert_eq(res.skipped, 3);
    int cdf = 0, budget = 0, repl = 0;
    for (int i = 0; i < res.n_notes; i++) {
        const char *n = res.notes[i];
        cdf |=
            strstr(n, "figure f") && strstr(n, "no requests rows") && strstr(n, "moesim compare");
        budget |= strstr(n, "figure g") && strstr(n, "'redundant'") && strstr(n, "moesim sweep");
        repl |= strstr(n, "replicas per expert") && strstr(n, "one copy of each expert");
    }
    cr_assert(cdf && budget && repl, "notes: %s | %s | %s", res.notes[0], res.notes[1],
              res.notes[2]);
    cr_assert(has_png("out/layer_max-t.png"));
    cr_assert(has_png("out/bars-t.png"));
    cr_assert(has_png("out/par_time-t.png"));
    cr_assert(!has_png("out/cdf-t.png"));
    cr_assert(!has_png("out/par_budget.png"));
    char *idx = slurp("out/index.md");
    cr_assert_not_null(strstr(idx, "*Not drawn:* figure f (TTFT and TPOT CDFs)"));
    /* Fixed batch: no serving columns. */
    cr_assert_null(strstr(idx, "TPOT mean"));
    free(idx);
}

Test(report, only_a_missing_figure_fails_with_the_reason) {
    build_db(0);
    char db[1024], out[1024];
    path(db, sizeof db, "t.db");
    path(out, sizeof out, "out");
    report_result_t res;
    ms_err_quiet(1);
    cr_assert_eq(report_build(db, out, "cdf", &res), MS_ERR);
    cr_assert_eq(res.drawn, 0);
    cr_assert_not_null(strstr(ms_err_last(), "no figure could be drawn"));
    cr_assert_not_null(strstr(ms_err_last(), "no requests rows"), "%s", ms_err_last());
}

Test(report, unknown_figure_name) {
    build_db(0);
    char db[1024], out[1024];
    path(db, sizeof db, "t.db");
    path(out, sizeof out, "out");
    ms_err_quiet(1);
    cr_assert_eq(report_build(db, out, "layer_max,nope", NULL), MS_ERR);
    cr_assert_not_null(strstr(ms_err_last(), "unknown figure 'nope'"));
    cr_assert_not_null(strstr(ms_err_last(), "par_budget"));
}

Test(report, not_a_moesim_database) {
    char db[1024], out[1024];
    path(out, sizeof out, "out");
    ms_err_quiet(1);
    /* Missing. */
    path(db, sizeof db, "none.db");
    cr_assert_eq(report_build(db, out, NULL, NULL), MS_ERR);
    cr_assert_not_null(strstr(ms_err_last(), "cannot read the results database"));
    /* Not SQLite at all. */
    path(db, sizeof db, "text.db");
    FILE *f = fopen(db, "w");
    fputs("this is not a database, just text that is long enough to look like a header\n", f);
    fclose(f);
    cr_assert_eq(report_build(db, out, NULL, NULL), MS_ERR);
    cr_assert_not_null(strstr(ms_err_last(), "not a moesim results database"), "%s", ms_err_last());
    /* SQLite, but someone else's. */
    path(db, sizeof db, "other.db");
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h, "CREATE TABLE runs (x); INSERT INTO runs VALUES (1);", NULL, NULL,
                              NULL),
                 SQLITE_OK);
    sqlite3_close(h);
    cr_assert_eq(report_build(db, out, NULL, NULL), MS_ERR);
    cr_assert_not_null(strstr(ms_err_last(), "not a moesim results database"), "%s", ms_err_last());
    /* Nothing was written for any of them. */
    struct stat sb;
    cr_assert_neq(stat(out, &sb), 0);
}

Test(report, empty_database_says_nothing_to_draw) {
    char db[1024], out[1024];
    path(db, sizeof db, "empty.db");
    path(out, sizeof out, "out");
    store_t *st;
    cr_assert_eq(store_open(db, &st), MS_OK); /* a database whose runs were all deleted */
    int64_t id;
    add_run(st, "x", "static", 0, 0, &id);
    cr_assert_eq(sqlite3_exec(store_db(st), "DELETE FROM runs", NULL, NULL, NULL), SQLITE_OK);
    store_close(st);
    ms_err_quiet(1);
    cr_assert_eq(report_build(db, out, NULL, NULL), MS_ERR);
    cr_assert_not_null(strstr(ms_err_last(), "holds no runs"));
}

Test(report, failed_render_leaves_no_partial_file) {
    build_db(0);
    char db[1024], out[1024], blocker[1024];
    path(db, sizeof db, "t.db");
    path(out, sizeof out, "out");
    cr_assert_eq(mkdir(out, 0777), 0);
    /* A folder where the PNG should go: the final rename must fail. */
    path(blocker, sizeof blocker, "out/layer_max-t.png");
    cr_assert_eq(mkdir(blocker, 0777), 0);
    report_result_t res;
    ms_err_quiet(1);
    cr_assert_eq(report_build(db, out, "layer_max,bars", &res), MS_ERR);
    cr_assert_not_null(strstr(ms_err_last(), "not a regular file"), "%s", ms_err_last());
    /* All or nothing: neither figure nor the index lands. */
    struct stat sb;
    path(blocker, sizeof blocker, "out/bars-t.png");
    cr_assert_neq(stat(blocker, &sb), 0, "a figure landed beside a failed one");
    path(blocker, sizeof blocker, "out/layer_max-t.svg");
    cr_assert_neq(stat(blocker, &sb), 0, "half a figure left behind");
    path(blocker, sizeof blocker, "out/index.md");
    cr_assert_neq(stat(blocker, &sb), 0, "an index for figures that did not land");
    assert_no_tmp("out");
}

Test(report, strategy_colours_are_fixed_everywhere) {
    /* Colours come from each strategy's registry entry. */
    for (int i = 0; i < place_count(); i++) {
        const place_ops_t *ops = place_at(i);
        if (!ops->color) continue;
        cr_assert_str_eq(report_style(ops->name).color, ops->color, "%s", ops->name);
        cr_assert_eq(report_style(ops->name).pt, ops->point, "%s", ops->name);
    }
    cr_assert_str_eq(report_style("static").color, place_find("static")->color);
    cr_assert_str_eq(report_style("eplb").color, "#1f77b4");
    cr_assert_str_eq(report_style("omni").color, "#d62728");
    cr_assert_str_eq(report_style("bias").color, "#2ca02c");
    cr_assert_str_eq(report_style("bound").color, "#000000");
    cr_assert_str_eq(report_style("eplb-global").color, "#1f77b4");
    cr_assert(report_baseline("static"));
    cr_assert_not(report_baseline("eplb"));
    /* An unknown name gets a spare colour, the same on every call (a copy
     * of the name in another buffer, after other look-ups, gets it too). */
    char name[16];
    snprintf(name, sizeof name, "%s", "newcomer");
    const char *other = report_style("newcomer").color;
    (void)report_style("eplb");
    cr_assert_str_eq(report_style(name).color, other);
    snprintf(name, sizeof name, "%s", "newcomer2");
    const char *known[] = {"#7f7f7f", "#1f77b4", "#d62728", "#2ca02c", "#000000"};
    for (int i = 0; i < 5; i++) {
        cr_assert_str_neq(other, known[i]);
        cr_assert_str_neq(report_style(name).color, known[i]);
    }
    cr_assert_eq(report_rgb("eplb"), 0x1f77b4);

    build_db(DB_ALL);
    char db[1024], out[1024];
    path(db, sizeof db, "t.db");
    path(out, sizeof out, "out");
    ms_err_quiet(1);
    cr_assert_eq(report_build(db, out, "layer_max,cdf,par_time", NULL), MS_OK, "%s", ms_err_last());
    const char *gps[] = {"out/layer_max-t.gp", "out/cdf-t.gp", "out/par_time-t.gp"};
    for (int i = 0; i < 3; i++) {
        char *gp = slurp(gps[i]);
        cr_assert_not_null(gp);
        cr_assert_not_null(strstr(gp, "lc rgb '#1f77b4' title 'eplb'"), "%s", gps[i]);
        cr_assert_not_null(strstr(gp, "lc rgb '#d62728' title 'omni'"), "%s", gps[i]);
        free(gp);
    }
}

Test(report, latency_from_requests_leaves_out_the_warm_up) {
    char db[1024];
    path(db, sizeof db, "lat.db");
    store_t *st;
    cr_assert_eq(store_open(db, &st), MS_OK);
    store_run_t r = {.name = "x", .strategy = "static", .model = "m", .hardware = "h", .nodes = 1,
                     .devices = 1, .config = "", .config_hash = ""};
    int64_t id;
    cr_assert_eq(store_run_begin(st, &r, &id), MS_OK);
    /* Request 0 arrives in the warm-up (window_start 5 ms) and is left out.
     * TTFT 20, 30 ms; TPOT (done - first) / (out - 1): 10 ms, none. */
    store_request_t q[3] = {
        {.request = 0, .arrival_ns = 0, .first_token_ns = 10000000, .done_ns = 30000000,
         .output_tokens = 5},
        {.request = 1, .arrival_ns = 5000000, .first_token_ns = 25000000, .done_ns = 45000000,
         .output_tokens = 3},
        {.request = 2, .arrival_ns = 6000000, .first_token_ns = 36000000, .done_ns = 36000000,
         .output_tokens = 1},
    };
    for (int i = 0; i < 3; i++) cr_assert_eq(store_request(st, id, &q[i]), MS_OK);
    cr_assert_eq(store_metric(st, id, "window_start", 0.005, "s"), MS_OK);
    cr_assert_eq(store_run_commit(st), MS_OK);
    id = store_final_id(st, id);
    report_ctx_t c = {.db = store_db(st)};
    report_lat_t l;
    cr_assert_eq(report_latency(&c, id, &l), MS_OK);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.n_tpot, 1);
    cr_assert_float_eq(l.ttft_ms[0], 20, 1e-9);
    cr_assert_float_eq(l.ttft_ms[1], 30, 1e-9);
    cr_assert_float_eq(l.tpot_ms[0], 10, 1e-9);
    report_lat_free(&l);
    cr_assert_eq(report_latency(&c, id + 1, &l), REPORT_SKIP);
    store_close(st);
}

Test(report, latest_run_per_strategy_and_one_section_per_experiment) {
    char db[1024], out[1024];
    path(db, sizeof db, "t.db");
    path(out, sizeof out, "out");
    store_t *st;
    cr_assert_eq(store_open(db, &st), MS_OK);
    int64_t old_id, new_id, other;
    add_run(st, "a", "static", 0, 0, &old_id);
    add_run(st, "a", "static", 0, 0, &new_id);
    add_run(st, "b c", "static", 0, 0, &other);
    store_close(st);
    ms_err_quiet(1);
    cr_assert_eq(report_build(db, out, "layer_max", NULL), MS_OK, "%s", ms_err_last());
    cr_assert(has_png("out/layer_max-a.png"));
    cr_assert(has_png("out/layer_max-b_c.png"));
    char *idx = slurp("out/index.md");
    char want[128];
    snprintf(want, sizeof want, "Figures below show runs %lld static", (long long)new_id);
    cr_assert_not_null(strstr(idx, want), "%s", idx);
    /* The latest experiment comes first. */
    const char *bc = strstr(idx, "## Experiment b c\n"), *a = strstr(idx, "## Experiment a\n");
    cr_assert(bc && a && bc < a, "%s", idx);
    free(idx);
}

Test(report, command_exit_status) {
    build_db(0);
    char db[1024], out[1024];
    path(db, sizeof db, "t.db");
    path(out, sizeof out, "out");
    ms_err_quiet(1);
    char *ok[] = {"report", db, "-o", out, "--only", "layer_max", NULL};
    cr_assert_eq(cmd_report(6, ok), 0);
    char *only_missing[] = {"report", db, "-o", out, "--only", "cdf", NULL};
    cr_assert_eq(cmd_report(6, only_missing), 1);
    char none[1024];
    path(none, sizeof none, "none.db");
    char *bad[] = {"report", none, "-o", out, NULL};
    cr_assert_eq(cmd_report(4, bad), 1);
    char *two[] = {"report", db, db, NULL};
    cr_assert_eq(cmd_report(3, two), 2); /* a usage mistake */
}
