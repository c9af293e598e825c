/* Calibration: the committed H200 measurements load and match what is
 * embedded, malformed files are refused with file:line, the curves
 * interpolate and clamp as documented, the fit recovers a known overhead,
 * and the H200 preset carries its curve unless the config says none. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"
#include "cfg.h"
#include "cmd.h"
#include "hw.h"
#include "run.h"
#include "util.h"

#define H200_CSV "models/calib/h200_experts.csv"

static void quiet(void) { ms_err_quiet(1); }

static calib_t *load1(const char *path) {
    calib_t *c = NULL;
    const char *p[] = {path};
    cr_assert_eq(calib_load(p, 1, hw_find("H200"), &c), MS_OK, "%s", ms_err_last());
    return c;
}

Test(calib, loads_the_committed_measurements) {
    calib_t *c = load1(H200_CSV);
    cr_assert_eq(c->n_gemm, 504);
    cr_assert_eq(c->n_a2a, 0);
    cr_assert_str_eq(c->gemm_impl, "loop");
    const calib_gemm_pt_t *p = &c->gemm[0];
    cr_assert_str_eq(p->model, "deepseek-v3");
    cr_assert_str_eq(p->impl, "grouped");
    cr_assert_eq(p->weight_bytes, 2);
    cr_assert_eq(p->hidden, 7168);
    cr_assert_eq(p->inter, 2048);
    cr_assert_eq(p->experts, 1);
    cr_assert_eq(p->tokens, 1);
    cr_assert_eq(p->graph, 1);
    cr_assert_gt(p->time_ns, 0);
    cr_assert_eq(p->line, 31, "data starts after 30 comment and header lines, got %d", p->line);
    /* One node per measured size (1..8192 tokens) for each dtype. */
    cr_assert_eq(c->gemm_wb[1].n, 14);
    cr_assert_eq(c->gemm_wb[2].n, 14);
    /* Two shapes and two dtypes make the overhead identifiable: a few us. */
    cr_assert(c->gemm_overhead_ns > 2000 && c->gemm_overhead_ns < 40000, "%g",
              c->gemm_overhead_ns);
    calib_free(c);
    c = load1("models/calib/h200_experts_repeat.csv");
    cr_assert_eq(c->n_gemm, 504);
    calib_free(c);
}

Test(calib, calibration_cuts_the_error_and_held_out_errors_are_reported) {
    calib_t *c = load1(H200_CSV);
    calib_err_t e;
    cr_assert_eq(calib_eval_gemm(c, NULL, 0, &e), MS_OK);
    cr_assert_eq(e.n, 336);
    cr_assert_gt(e.before, 3 * e.after, "before %.1f%% after %.1f%%", e.before, e.after);
    cr_assert(!isnan(e.loo) && !isnan(e.cross));
    cr_assert_geq(e.loo, e.after * 0.99);
    cr_assert_geq(e.cross, e.after);
    cr_assert_eq(calib_eval_gemm(c, NULL, 1, &e), MS_OK);
    cr_assert_eq(e.n, 168);
    /* Another implementation is scored against the fitted one's curve, without held-out errors. */
    cr_assert_eq(calib_eval_gemm(c, "grouped", 0, &e), MS_OK);
    cr_assert_eq(e.n, 168);
    cr_assert(isnan(e.loo) && isnan(e.cross));
    cr_assert_eq(calib_eval_a2a(c, NULL, &e), MS_OK);
    cr_assert_eq(e.n, 0);
    calib_free(c);
}

Test(calib, embedded_data_matches_the_files_byte_for_byte) {
    cr_assert_gt(calib_n_blobs, 0);
    for (int i = 0; i < calib_n_blobs; i++) {
        const calib_blob_t *b = &calib_blobs[i];
        char *text;
        size_t len;
        cr_assert_eq(ms_read_file(b->path, &text, &len), MS_OK, "%s", ms_err_last());
        cr_assert_eq(len, b->len, "%s: %zu bytes on disk, %zu embedded: re-run "
                                  "models/calib/embed.py (see its header)", b->path, len, b->len);
        cr_assert(!memcmp(text, b->text, len), "%s differs from models/calib_data.c: re-run "
                                               "models/calib/embed.py", b->path);
        free(text);
    }
}

Test(calib, the_h200_preset_carries_the_curve_and_others_do_not) {
    /* The preset table itself never changes; the curve is attached to a copy. */
    cr_assert_null(hw_find("h200")->calib);
    hw_t h200 = *hw_find("h200");
    h200.calib = calib_builtin(&h200);
    const hw_t *h = &h200;
    cr_assert(h->calib);
    cr_assert_eq(h->calib->n_gemm, 504);
    cr_assert(strstr(h->calib->source, "builtin H200"));
    cr_assert_eq(calib_builtin(hw_find("H200")), h->calib, "parsed once");
    cr_assert_null(hw_find("H200")->calib, "hw_find changed the preset table");
    cr_assert_null(calib_builtin(hw_find("H800")));
    cr_assert_null(calib_builtin(hw_find("H100")));
    /* With the curve the H200 expert time follows the measurement. */
    double meas = 0;
    for (int i = 0; i < h->calib->n_gemm; i++) {
        const calib_gemm_pt_t *p = &h->calib->gemm[i];
        if (!strcmp(p->impl, "loop") && p->weight_bytes == 2 && !strcmp(p->model, "deepseek-v3") &&
            p->experts == 8 && p->tokens == 64)
            meas = p->time_ns;
    }
    cr_assert_gt(meas, 0);
    double cal = calib_expert_ns(h, 7168, 2048, 2, 8, 64);
    hw_t plain = *h;
    plain.calib = NULL;
    double before = calib_expert_ns(&plain, 7168, 2048, 2, 8, 64);
    cr_assert_lt(fabs(cal - meas), fabs(before - meas));
    cr_assert_lt(fabs(cal - meas) / meas, 0.1, "calibrated %.0f vs measured %.0f", cal, meas);
}

/* Hand-computed: DeepSeek-V3 BF16 expert, one token, H200 (4.8 TB/s x 0.85). */
Test(calib, the_uncalibrated_model_is_issue_5s_formula) {
    const hw_t *h = hw_find("H200");
    /* weights + one token: hidden in (BF16) and out (BF16), gate/up 2 x inter x BF16
     * written and read (cost_expert_act_bytes) */
    double bytes = 3.0 * 7168 * 2048 * 2 + 7168 * 4.0 + 8.0 * 2048;
    double want = 1e9 * bytes / (4.8e12 * 0.85) + 4000;
    cr_assert_float_eq(calib_predict_expert_ns(h, 7168, 2048, 2, 1, 1), want, 1e-6);
    cr_assert_float_eq(calib_predict_expert_ns(h, 7168, 2048, 2, 3, 1), 3 * want, 1e-6);
    /* Compute-bound: 8192 tokens of FP8, 1979 TFLOP/s x 0.7. */
    double flops = 6.0 * 7168 * 2048 * 8192;
    cr_assert_float_eq(calib_roofline_ns(h, 7168, 2048, 1, 8192), 1e9 * flops / (1979e12 * 0.7),
                       1e-6);
    cr_assert_float_eq(calib_predict_a2a_ns(h, 1e6), 1e9 * 1e6 / (450e9 * 0.8) + 2000, 1e-6);
    cr_assert_eq(calib_predict_expert_ns(h, 7168, 2048, 2, 0, 5), 0);
    cr_assert_eq(calib_predict_expert_ns(h, 7168, 2048, 2, 4, 0), 0);
}

/* ---- curves on synthetic data with known factors ---- */

/* Appends an all-to-all row whose time is f times the model at link bytes b. */
static void a2a_row(char *buf, size_t n, const hw_t *h, const char *pat, double b, double f) {
    double t = f * calib_predict_a2a_ns(h, b);
    size_t l = strlen(buf);
    snprintf(buf + l, n - l, "%s,2,%.17g,%.17g,%.17g,%.17g,%.17g,5\n", pat, 2 * b, b, t, t, t);
}

Test(calib, a2a_factor_interpolates_in_log_bytes_and_clamps) {
    const hw_t *h = hw_find("H100");
    char text[4096] = "# synthetic\n" CALIB_A2A_HEADER "\n";
    a2a_row(text, sizeof text, h, "uniform", 1024, 2.0);
    a2a_row(text, sizeof text, h, "uniform", 4096, 4.0);
    a2a_row(text, sizeof text, h, "uniform", 16384, 1.0);
    calib_t *c = calib_new();
    cr_assert_eq(calib_parse(c, text, strlen(text), "syn.csv"), MS_OK, "%s", ms_err_last());
    cr_assert_eq(calib_fit(c, h), MS_OK);
    cr_assert_eq(c->a2a_all.n, 3);
    cr_assert_float_eq(calib_a2a_factor(c, 1024), 2.0, 1e-9);
    cr_assert_float_eq(calib_a2a_factor(c, 2048), 3.0, 1e-9, "midway in log");
    cr_assert_float_eq(calib_a2a_factor(c, 8192), 2.5, 1e-9);
    cr_assert_float_eq(calib_a2a_factor(c, 100), 2.0, 1e-9, "clamped below");
    cr_assert_float_eq(calib_a2a_factor(c, 1e9), 1.0, 1e-9, "clamped above");
    cr_assert_float_eq(calib_a2a_factor(NULL, 1024), 1.0, 1e-12);
    cr_assert_float_eq(calib_gemm_factor(c, 16), 1.0, 1e-12, "no GEMM points: factor 1");
    hw_t with = *h;
    with.calib = c;
    cr_assert_float_eq(calib_a2a_ns(&with, 4096), 4 * calib_predict_a2a_ns(h, 4096), 1e-6);
    calib_err_t e;
    calib_eval_a2a(c, NULL, &e);
    cr_assert_eq(e.n, 3);
    cr_assert_lt(e.after, 1e-9);
    cr_assert_float_eq(e.before, (50 + 75 + 0) / 3.0, 1e-6);
    cr_assert(isnan(e.cross), "one pattern: nothing to hold out");
    calib_free(c);
}

/* Appends a GEMM row: time = E * (roofline * f + overhead). */
static void gemm_row(char *buf, size_t n, const hw_t *h, const char *model, int hid, int inter,
                     const char *dt, int e, int tok, double f, double over) {
    int wb = strcmp(dt, "fp8") ? 2 : 1;
    double t = e * (calib_roofline_ns(h, hid, inter, wb, tok) * f + over);
    size_t l = strlen(buf);
    snprintf(buf + l, n - l, "%s,%s,loop,%d,%d,%d,%d,1,%.17g,%.17g,%.17g,9\n", model, dt, hid,
             inter, e, tok, t, t, t);
}

Test(calib, gemm_factor_with_one_shape_keeps_kernel_ns) {
    const hw_t *h = hw_find("H100");
    char text[4096] = CALIB_GEMM_HEADER "\r\n";
    gemm_row(text, sizeof text, h, "m", 1024, 512, "bf16", 1, 1, 1.5, h->kernel_ns);
    gemm_row(text, sizeof text, h, "m", 1024, 512, "bf16", 1, 4, 2.5, h->kernel_ns);
    gemm_row(text, sizeof text, h, "m", 1024, 512, "bf16", 2, 1, 1.5, h->kernel_ns);
    calib_t *c = calib_new();
    cr_assert_eq(calib_parse(c, text, strlen(text), "g.csv"), MS_OK, "%s", ms_err_last());
    cr_assert_eq(calib_fit(c, h), MS_OK);
    cr_assert_float_eq(c->gemm_overhead_ns, h->kernel_ns, 1e-9, "one shape: not identifiable");
    cr_assert_float_eq(calib_gemm_factor_wb(c, 2, 1), 1.5, 1e-9);
    cr_assert_float_eq(calib_gemm_factor_wb(c, 2, 2), 2.0, 1e-9, "midway in log");
    cr_assert_float_eq(calib_gemm_factor_wb(c, 2, 0.25), 1.5, 1e-9, "clamped below");
    cr_assert_float_eq(calib_gemm_factor_wb(c, 2, 1000), 2.5, 1e-9, "clamped above");
    cr_assert_float_eq(calib_gemm_factor_wb(c, 1, 2), 2.0, 1e-9, "no fp8 points: pooled curve");
    cr_assert_float_eq(calib_gemm_factor(c, 2), 2.0, 1e-9);
    cr_assert_float_eq(calib_gemm_overhead_ns(c, 7), h->kernel_ns, 1e-9);
    cr_assert_float_eq(calib_gemm_overhead_ns(NULL, 7), 7, 1e-12);
    calib_free(c);
}

Test(calib, gemm_fit_recovers_a_known_per_expert_overhead) {
    const hw_t *h = hw_find("H200");
    static char text[16384];
    snprintf(text, sizeof text, "%s\n", CALIB_GEMM_HEADER);
    static const struct { const char *m; int hid, inter; } shapes[] = {
        {"big", 7168, 2048}, {"small", 4096, 1536}};
    for (int s = 0; s < 2; s++)
        for (int dt = 0; dt < 2; dt++)
            for (int e = 1; e <= 4; e *= 2)
                for (int tok = 1; tok <= 4096; tok *= 4)
                    gemm_row(text, sizeof text, h, shapes[s].m, shapes[s].hid, shapes[s].inter,
                             dt ? "fp8" : "bf16", e, tok, tok < 64 ? 1.1 : 1.3, 9000);
    calib_t *c = calib_new();
    cr_assert_eq(calib_parse(c, text, strlen(text), "o.csv"), MS_OK, "%s", ms_err_last());
    cr_assert_eq(calib_fit(c, h), MS_OK);
    cr_assert_float_eq(c->gemm_overhead_ns, 9000, 90, "fitted %.1f", c->gemm_overhead_ns);
    cr_assert_float_eq(calib_gemm_factor_wb(c, 2, 4), 1.1, 0.02);
    cr_assert_float_eq(calib_gemm_factor_wb(c, 1, 4096), 1.3, 0.02);
    calib_err_t e;
    calib_eval_gemm(c, NULL, 0, &e);
    cr_assert_lt(e.after, 1.0, "%.2f%%", e.after);
    cr_assert_lt(e.cross, 2.0, "one model predicts the other: %.2f%%", e.cross);
    calib_free(c);
}

/* ---- malformed files: each refused with file:line and what to fix ---- */

static void refused(const char *text, const char *want) {
    calib_t *c = calib_new();
    int rc = calib_parse(c, text, strlen(text), "bad.csv");
    if (rc == MS_OK) rc = calib_fit(c, hw_find("H200"));
    cr_assert_eq(rc, MS_ERR, "accepted: %s", text);
    cr_assert(strstr(ms_err_last(), want), "message '%s' lacks '%s'", ms_err_last(), want);
    calib_free(c);
}

#define G CALIB_GEMM_HEADER "\n"
#define ROW "deepseek-v3,bf16,loop,7168,2048,1,1,1,36000,35000,37000,50\n"
#define ROW2 "deepseek-v3,bf16,loop,7168,2048,1,2,1,36000,35000,37000,50\n"
#define A CALIB_A2A_HEADER "\n"

Test(calib, malformed_files_are_refused_with_file_and_line, .init = quiet) {
    refused("# only comments\n", "bad.csv: no header line");
    refused("", "bad.csv: no header line");
    refused("model,dtype\n" ROW, "bad.csv:1: 'model,dtype' is not a calibration header");
    refused(G, "bad.csv: a header but no measurements");
    refused(G "deepseek-v3,bf16,loop,7168,2048,1,1,1,36000,35000,37000\n",
            "bad.csv:2: 11 fields, expected 12");
    refused(G "# c\n" ROW "deepseek-v3,bf16,loop,7168,2048,1,2,1,36000,35000,37000,50,9\n",
            "bad.csv:4: 13 fields, expected 12");
    refused(G "deepseek-v3,bf16,loop,7168,2048,1,1,1,fast,35000,37000,50\n",
            "bad.csv:2: column time_ns: 'fast' is not a number");
    refused(G "deepseek-v3,bf16,loop,7168,2048,1,1,1,-5,-6,37000,50\n",
            "bad.csv:2: column time_ns: -5 must be more than 0");
    refused(G "deepseek-v3,bf16,loop,7168,2048,1,1,1,0,0,0,50\n",
            "a time of zero or less is a broken measurement");
    refused(G "deepseek-v3,bf16,loop,7168,2048,1.5,1,1,36000,35000,37000,50\n",
            "bad.csv:2: column experts: '1.5' is not a whole number");
    refused(G "deepseek-v3,bf16,loop,7168,2048,1,0,1,36000,35000,37000,50\n",
            "column tokens_per_expert: 0 must be more than 0");
    refused(G "deepseek-v3,fp16,loop,7168,2048,1,1,1,36000,35000,37000,50\n",
            "bad.csv:2: column dtype: 'fp16' is not bf16 or fp8");
    refused(G ",bf16,loop,7168,2048,1,1,1,36000,35000,37000,50\n",
            "bad.csv:2: column model is empty");
    refused(G "deepseek-v3,bf16,loop,7168,2048,1,1,1,36000,37000,35000,50\n",
            "bad.csv:2: p10_ns 37000, time_ns 36000, p90_ns 35000 are not in order");
    refused(G ROW2 ROW, "bad.csv:3: comes before line 2's point (rows must be sorted by model");
    refused(G ROW "# a comment between\n" ROW, "bad.csv:4: duplicates the point at line 2");
    refused(G ROW "deepseek-v3,bf16,loop,4096,2048,1,2,1,36000,35000,37000,50\n",
            "bad.csv:3: model deepseek-v3 has hidden,inter = 4096,2048 here but 7168,2048 at "
            "bad.csv:2");
    refused(G ROW "deepseek-v3,bf16,loop,7168,2048,1,2,2,36000,35000,37000,50\n",
            "bad.csv:3: column graph: 2 is outside 0..1");
    refused(A "uniform,1,1024,512,9000,8000,9500,5\n", "bad.csv:2: column world: 1 is outside 2..");
    refused(A "uniform,2,1024,4096,9000,8000,9500,5\n",
            "bad.csv:2: max_link_bytes 4096 is more than 1 other GPUs x bytes_per_gpu 1024");
    refused(A "uniform,2,4096,2048,9000,8000,9500,5\nuniform,2,1024,512,9000,8000,9500,5\n",
            "bad.csv:3: comes before line 2's point (rows must be sorted by pattern, world, "
            "bytes_per_gpu");
    refused(A "uniform,2,1024,512,9000,8000,9500\n", "bad.csv:2: 7 fields, expected 8");
    char nul[] = G ROW;
    nul[sizeof G + 3] = 0;
    calib_t *c = calib_new();
    cr_assert_eq(calib_parse(c, nul, sizeof nul - 1, "bad.csv"), MS_ERR);
    cr_assert(strstr(ms_err_last(), "bad.csv: byte"), "%s", ms_err_last());
    cr_assert(strstr(ms_err_last(), "is a NUL"));
    calib_free(c);
    calib_t *out = (calib_t *)1;
    const char *missing[] = {"models/calib/no_such.csv"};
    cr_assert_eq(calib_load(missing, 1, hw_find("H200"), &out), MS_ERR);
    cr_assert_null(out);
    cr_assert(strstr(ms_err_last(), "models/calib/no_such.csv: cannot open"));
}

Test(calib, comments_blank_lines_crlf_and_two_files_are_accepted) {
    const char *g = "# a\r\n\r\n" G ROW "\n" ROW2;
    const char *a = A "skewed,2,1024,768,9000,8000,9500,5\nuniform,2,1024,512,9000,8000,9500,5\n";
    calib_t *c = calib_new();
    cr_assert_eq(calib_parse(c, g, strlen(g), "g.csv"), MS_OK, "%s", ms_err_last());
    cr_assert_eq(calib_parse(c, a, strlen(a), "a.csv"), MS_OK, "%s", ms_err_last());
    cr_assert_eq(calib_fit(c, hw_find("H200")), MS_OK);
    cr_assert_eq(c->n_gemm, 2);
    cr_assert_eq(c->n_a2a, 2);
    cr_assert_str_eq(c->a2a[1].file, "a.csv");
    cr_assert_eq(c->gemm[1].line, 6);
    calib_err_t e;
    calib_eval_a2a(c, "skewed", &e);
    cr_assert_eq(e.n, 1);
    cr_assert(!isnan(e.cross), "two patterns: one is held out against the other");
    calib_free(c);
}

/* ---- the config key ---- */

static int spec_with(const char *extra, run_spec_t *spec, cfg_t **cfg) {
    char text[1024];
    snprintf(text, sizeof text,
             "[cluster]\nhardware = H200\n[workload]\ntrace = t.json\n[hardware]\n%s", extra);
    cr_assert_eq(cfg_parse_text(text, "-", cfg), MS_OK);
    return run_spec_load(*cfg, spec);
}

Test(calib, config_key_switches_the_curve, .init = quiet) {
    run_spec_t spec;
    cfg_t *cfg;
    cr_assert_eq(spec_with("", &spec, &cfg), MS_OK, "%s", ms_err_last());
    cr_assert_eq(spec.cluster.hw.calib, calib_builtin(hw_find("H200")),
                 "default: the preset's curve");
    cr_assert_not_null(spec.cluster.hw.calib);
    cfg_free(cfg);
    cr_assert_eq(spec_with("calibration = default\n", &spec, &cfg), MS_OK);
    cr_assert_eq(spec.cluster.hw.calib, calib_builtin(hw_find("H200")));
    cfg_free(cfg);
    cr_assert_eq(spec_with("calibration = none\n", &spec, &cfg), MS_OK);
    cr_assert_null(spec.cluster.hw.calib);
    cfg_free(cfg);
    cr_assert_eq(spec_with("calibration = models/calib/h200_experts_repeat.csv\n", &spec, &cfg),
                 MS_OK, "%s", ms_err_last());
    const calib_t *own = spec.cluster.hw.calib;
    cr_assert(own && own != calib_builtin(hw_find("H200")));
    cr_assert(strstr(own->source, "h200_experts_repeat.csv"));
    cfg_free(cfg);
    cr_assert_eq(spec_with("calibration = models/calib/h200_experts_repeat.csv\n", &spec, &cfg),
                 MS_OK);
    cr_assert_eq(spec.cluster.hw.calib, own, "loaded once per process");
    cfg_free(cfg);
    cr_assert_eq(spec_with("calibration = missing.csv\n", &spec, &cfg), MS_ERR);
    cr_assert(strstr(ms_err_last(), "-:6: calibration: missing.csv: cannot open"), "%s",
              ms_err_last());
    cfg_free(cfg);
    cr_assert_eq(spec_with("calibration = ,\n", &spec, &cfg), MS_ERR);
    cr_assert(strstr(ms_err_last(), "calibration lists no file"), "%s", ms_err_last());
    cfg_free(cfg);
    calib_cache_clear();
}

/* ---- the command ---- */

Test(calib, report_prints_errors_and_draws_the_figure, .init = quiet) {
    char dir[] = "/tmp/moesim-calib-XXXXXX";
    cr_assert(mkdtemp(dir));
    char out[128];
    snprintf(out, sizeof out, "%s/sub/fig", dir);
    char *argv[] = {"calib", "report", "-q", "-o", out, NULL};
    cr_assert_eq(cmd_calib(5, argv), 0, "%s", ms_err_last());
    char path[256];
    struct stat sb;
    snprintf(path, sizeof path, "%s/calib_gemm.png", out);
    cr_assert(!stat(path, &sb) && sb.st_size > 1000);
    snprintf(path, sizeof path, "%s/index.md", out);
    char *md;
    size_t len;
    cr_assert_eq(ms_read_file(path, &md, &len), MS_OK);
    cr_assert(strstr(md, "| expert compute all (loop) | 336 |"), "%s", md);
    cr_assert(strstr(md, "all-to-all | 0 |"));
    free(md);
    snprintf(path, sizeof path, "%s/points.csv", out);
    char *pts;
    cr_assert_eq(ms_read_file(path, &pts, &len), MS_OK);
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += pts[i] == '\n';
    cr_assert_eq(lines, 505, "header and one row per measurement");
    free(pts);
    /* With an all-to-all file too: its rows, errors and figure. */
    snprintf(path, sizeof path, "%s/a2a.csv", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "%s\n", CALIB_A2A_HEADER);
    for (int lg = 12; lg <= 20; lg += 2)
        fprintf(f, "uniform,2,%d,%d,%d,%d,%d,9\n", 1 << lg, 1 << (lg - 1), 20000 + (1 << lg) / 100,
                20000, 30000 + (1 << lg) / 100);
    fclose(f);
    char *both[] = {"calib", "report", "-q", "--csv", H200_CSV, "--csv", path, "-o", out, NULL};
    cr_assert_eq(cmd_calib(9, both), 0, "%s", ms_err_last());
    snprintf(path, sizeof path, "%s/calib_a2a.png", out);
    cr_assert(!stat(path, &sb) && sb.st_size > 1000);
    snprintf(path, sizeof path, "%s/index.md", out);
    cr_assert_eq(ms_read_file(path, &md, &len), MS_OK);
    cr_assert(strstr(md, "| all-to-all uniform | 5 |"), "%s", md);
    free(md);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);

    char *bad_hw[] = {"calib", "report", "--hardware", "B300", NULL};
    cr_assert_eq(cmd_calib(4, bad_hw), 1);
    cr_assert(strstr(ms_err_last(), "unknown hardware preset 'B300'"));
    char *no_data[] = {"calib", "report", "--hardware", "H100", NULL};
    cr_assert_eq(cmd_calib(4, no_data), 1);
    cr_assert(strstr(ms_err_last(), "preset H100 has no measurements built in"));
    char *bad_sub[] = {"calib", "frob", NULL};
    cr_assert_eq(cmd_calib(2, bad_sub), 1);
    cr_assert(strstr(ms_err_last(), "the only subcommand is 'report'"));
}
