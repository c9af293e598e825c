/* Calibration: the committed H200 measurements load and match what is
 * embedded, malformed files are refused with file:line, the fits recover
 * known figures from synthetic data (expert compute, and all-to-all on 4
 * and 8 GPUs), the step charges exactly what the report evaluates, the
 * H200 preset's link figures are the fit, and the config key switches the
 * measured figures on and off. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"
#include "cost.h"
#include "cfg.h"
#include "cmd.h"
#include "hw.h"
#include "place.h"
#include "run.h"
#include "step.h"
#include "util.h"

#define H200_CSV "models/calib/h200_experts_v2.csv"
#define H200_A2A "models/calib/h200_a2a.csv"
#define SYNTH_A2A "tests/ref/a2a_synthetic_w4_w8.csv"

static void quiet(void) { ms_err_quiet(1); }

static calib_t *load1(const char *path) {
    calib_t *c = NULL;
    const char *p[] = {path};
    cr_assert_eq(calib_load(p, 1, hw_find("H200"), &c), MS_OK, "%s", ms_err_last());
    return c;
}

/* Data rows of a CSV and the line of its header, read independently of calib.c. */
static int data_rows(const char *path, int *header_line) {
    char *text;
    size_t len;
    cr_assert_eq(ms_read_file(path, &text, &len), MS_OK);
    int rows = 0, line = 0;
    *header_line = 0;
    for (char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        line++;
        if (*l == '#' || *l == '\n') continue;
        if (!*header_line) *header_line = line;
        else rows++;
    }
    free(text);
    return rows;
}

Test(calib, loads_the_committed_measurements) {
    int hdr, rows = data_rows(H200_CSV, &hdr);
    calib_t *c = load1(H200_CSV);
    cr_assert_eq(c->n_gemm, rows);
    cr_assert_eq(c->n_a2a, 0);
    cr_assert_str_eq(c->gemm_impl, "grouped", "the simulator's kernel: the grouped GEMM");
    const calib_gemm_pt_t *p = &c->gemm[0];
    cr_assert_str_eq(p->model, "deepseek-v3");
    cr_assert_str_eq(p->impl, "bmm");
    cr_assert_eq(p->weight_bytes, 2);
    cr_assert_eq(p->hidden, 7168);
    cr_assert_eq(p->inter, 2048);
    cr_assert_eq(p->experts, 1);
    cr_assert_eq(p->tokens, 1);
    cr_assert_eq(p->graph, 1);
    cr_assert_gt(p->time_ns, 0);
    cr_assert_eq(p->line, hdr + 1, "data starts after the header, got %d", p->line);
    /* every (impl, dtype) measured is fitted */
    static const char *const fits[][2] = {{"grouped", "2"}, {"grouped", "1"}, {"bmm", "2"},
                                          {"loop", "2"}, {"loop", "1"}};
    for (size_t i = 0; i < sizeof fits / sizeof *fits; i++) {
        const hw_gemm_t *par = calib_gemm_par(c, fits[i][0], atoi(fits[i][1]));
        cr_assert_not_null(par, "%s %s", fits[i][0], fits[i][1]);
        cr_assert(par->floor_ns > 0 && par->eff_flops > 0.2 && par->eff_flops <= 1.0 &&
                      par->eff_hbm > 0.2 && par->eff_hbm <= 1.0 && par->sharp >= 1,
                  "%s: floor %g eff %g %g p %g", fits[i][0], par->floor_ns, par->eff_flops,
                  par->eff_hbm, par->sharp);
    }
    cr_assert_null(calib_gemm_par(c, "bmm", 1), "no FP8 bmm was measured");
    calib_free(c);
    c = load1(H200_A2A);
    cr_assert_eq(c->n_a2a, data_rows(H200_A2A, &hdr));
    cr_assert(c->a2a_fitted);
    calib_free(c);
}

Test(calib, the_fit_cuts_the_error_and_held_out_errors_are_reported) {
    calib_t *c;
    cr_assert_eq(calib_load_builtin(hw_find("H200"), &c), MS_OK, "%s", ms_err_last());
    calib_err_t e;
    for (int wb = 1; wb <= 2; wb++) {
        cr_assert_eq(calib_eval_gemm(c, NULL, wb, &e), MS_OK);
        cr_assert_gt(e.n, 100);
        cr_assert_gt(e.before, 3 * e.after, "before %.1f%% after %.1f%%", e.before, e.after);
        cr_assert(!isnan(e.loo) && !isnan(e.cross));
        cr_assert_geq(e.loo, e.after * 0.99);
    }
    cr_assert_eq(calib_eval_a2a(c, NULL, 2, 0, INFINITY, NULL, &e), MS_OK);
    cr_assert_eq(e.n, c->n_a2a);
    cr_assert_gt(e.before, 3 * e.after, "before %.1f%% after %.1f%%", e.before, e.after);
    cr_assert(!isnan(e.loo) && e.loo >= e.after * 0.99);
    cr_assert_eq(calib_eval_a2a(c, "uniform", 4, 0, INFINITY, NULL, &e), MS_OK);
    cr_assert_eq(e.n, 0, "no 4-GPU points in the H200 files");
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
                     "models/calib/embed.py", b->path, len, b->len);
        cr_assert(!memcmp(text, b->text, len), "%s differs from models/calib_data.c: re-run "
                  "models/calib/embed.py", b->path);
        free(text);
    }
}

/* The H200 preset with its embedded measurements attached, as a spec
 * loader attaches them (the preset table itself never changes). */
static hw_t h200(void) {
    hw_t h = *hw_find("H200");
    h.calib = calib_builtin(&h);
    cr_assert_not_null(h.calib);
    return h;
}

Test(calib, the_h200_preset_carries_the_fit_and_others_do_not) {
    cr_assert_null(hw_find("H200")->calib, "hw_find changed the preset table");
    hw_t hh = h200();
    const hw_t *h = &hh;
    int hdr;
    cr_assert_eq(h->calib->n_gemm, data_rows(H200_CSV, &hdr));
    cr_assert(strstr(h->calib->source, "builtin H200"));
    cr_assert_eq(calib_builtin(hw_find("H200")), h->calib, "parsed once");
    cr_assert_null(calib_builtin(hw_find("H800")));
    cr_assert_null(calib_builtin(hw_find("H100")));
    /* the step's figures are the grouped GEMM's fit, by dtype */
    for (int wb = 1; wb <= 2; wb++) {
        hw_gemm_t par = cost_gemm_par_of(h, wb);
        const hw_gemm_t *fit = calib_gemm_par(h->calib, "grouped", wb);
        cr_assert(fit && !memcmp(&par, fit, sizeof par));
    }
    hw_t plain = *h;
    plain.calib = NULL;
    hw_gemm_t k = cost_gemm_par_of(&plain, 2);
    cr_assert(k.floor_ns == h->kernel_ns && k.expert_ns == 0 && k.eff_flops == h->eff_flops &&
              k.eff_hbm == h->eff_hbm && k.sharp == 0, "no calibration: the constants");
}

/* The H200 preset's NVLink figures (configs/hardware/H200.ini) are what the fit to the
 * committed all-to-all file gives, to the 4 digits they are written with. */
Test(calib, h200_link_figures_are_the_fit) {
    const hw_t *h = hw_find("H200");
    calib_t *c = load1(H200_A2A);
    cr_assert(c->a2a_fitted);
    hw_link_t pre = cost_scaleup_link(h);
    cr_assert_float_eq(pre.lat_ns, c->link.lat_ns, 1.0, "latency %g vs fit %g", pre.lat_ns,
                       c->link.lat_ns);
    cr_assert_float_eq(pre.bw, c->link.bw, 1e-4 * pre.bw, "peak %g vs %g", pre.bw, c->link.bw);
    cr_assert_float_eq(pre.half_bytes, c->link.half_bytes, 1e-3 * pre.half_bytes, "half %g vs %g",
                       pre.half_bytes, c->link.half_bytes);
    cr_assert_float_eq(pre.low_share, c->link.low_share, 1e-4, "low %g vs %g", pre.low_share,
                       c->link.low_share);
    cr_assert_float_eq(pre.duplex, c->link.duplex, 1e-4, "duplex %g vs %g", pre.duplex,
                       c->link.duplex);
    cr_assert(strstr(h->link_source, "h200_a2a.csv"));
    cr_assert(strstr(hw_find("H800")->link_source, "not measured"));
    calib_free(c);
}

/* The step charges for a device's routed experts exactly what the report
 * evaluates for the measured point with the same shape, experts and tokens:
 * the same function on the same inputs (docs/calibration.md). */
Test(calib, the_step_charges_exactly_what_the_report_evaluates, .init = quiet) {
    hw_t hh = h200();
    const hw_t *h = &hh;
    const moe_model_t *m = moe_find("deepseek-v3");
    int L = moe_n_moe_layers(m), E = m->n_experts, D = 8, spd = E / D;
    const calib_gemm_pt_t *pt = NULL;
    for (int i = 0; i < h->calib->n_gemm; i++) {
        const calib_gemm_pt_t *p = &h->calib->gemm[i];
        if (!strcmp(p->model, "deepseek-v3") && p->weight_bytes == m->weight_bytes &&
            !strcmp(p->impl, "grouped") && p->experts == spd && p->tokens == 64)
            pt = p;
    }
    cr_assert_not_null(pt, "the H200 file has DeepSeek-V3 FP8 grouped, %d experts x 64", spd);
    cluster_t cl = {.n_nodes = 1, .devices_per_node = D, .n_devices = D, .hw = *h,
                    .mode = STEP_ANALYTIC};
    place_layout_t *lo = place_layout_new(L, E, D, D);
    int *se = ms_malloc((size_t)E * sizeof *se);
    for (int s = 0; s < E; s++) se[s] = s;
    for (int l = 0; l < L; l++) cr_assert_eq(place_layer_set(lo, l, spd, se), MS_OK);
    /* device 0's experts (slots 0..spd-1) get 64 pairs each, the others 16 */
    double *load = ms_malloc((size_t)L * E * sizeof *load);
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) load[(size_t)l * E + e] = e < spd ? 64 : 16;
    int tok[8] = {32, 32, 32, 32, 32, 32, 32, 32};
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 100};
    for (int mode = 0; mode < 2; mode++) {
        cl.mode = mode ? STEP_FLOW : STEP_ANALYTIC;
        step_sim_t *s = step_new(&cl, m);
        step_result_t r;
        cr_assert_eq(step_run(s, &in, &r), MS_OK, "%s", ms_err_last());
        double want = calib_gemm_charged_ns(h, pt);
        for (int l = 0; l < L; l++)
            cr_assert(r.expert_ns[(size_t)l * D] == want, "layer %d: step %.17g, report %.17g", l,
                      r.expert_ns[(size_t)l * D], want);
        /* and the report's points.csv carries the same figure */
        char dir[] = "/tmp/moesim-calib-XXXXXX";
        cr_assert(mkdtemp(dir));
        char *argv[] = {"calib", "report", "-q", "-o", dir, NULL};
        cr_assert_eq(cmd_calib(5, argv), 0, "%s", ms_err_last());
        char path[128], *csv, row[128];
        size_t len;
        snprintf(path, sizeof path, "%s/points.csv", dir);
        cr_assert_eq(ms_read_file(path, &csv, &len), MS_OK);
        snprintf(row, sizeof row, "gemm,deepseek-v3/fp8/grouped/E%d,1,64,%.0f,", spd, pt->time_ns);
        char *at = strstr(csv, row);
        cr_assert_not_null(at, "%s", row);
        double before, charged;
        cr_assert_eq(sscanf(at + strlen(row), "%lf,%lf", &before, &charged), 2);
        cr_assert_float_eq(charged, r.expert_ns[0], 0.5, "points.csv %.0f vs step %.1f", charged,
                           r.expert_ns[0]);
        free(csv);
        char cmd[96];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        cr_assert_eq(system(cmd), 0);
        step_free(s);
    }
    free(load);
    free(se);
    place_layout_free(lo);
}

/* The kernels' tile figures (calib_kernel_tiles) against the grouped
 * kernels timed at fine steps of tokens per expert (h200_experts_steps.csv,
 * never fitted): the preset's fit, made on the power-of-two grid, predicts
 * those points better with the padding than without it (11.6% against 20.6%
 * on the 2026-11-30 files), and where the kernel steps up (by over 25%)
 * the charge steps up too. */
#define H200_STEPS "models/calib/h200_experts_steps.csv"
Test(calib, tile_quantisation_predicts_the_fine_steps, .init = quiet) {
    hw_t h = h200();
    calib_t *c = load1(H200_STEPS);
    double with = 0, without = 0;
    int n = 0, jumps = 0, missed = 0;
    for (int i = 0; i < c->n_gemm; i++) {
        const calib_gemm_pt_t *p = &c->gemm[i];
        hw_gemm_t par = cost_gemm_par_of(&h, p->weight_bytes), flat = par;
        memset(flat.tile, 0, sizeof flat.tile);
        double t = calib_gemm_par_ns(&par, &h, p), f = calib_gemm_par_ns(&flat, &h, p);
        with += fabs(t - p->time_ns) / p->time_ns;
        without += fabs(f - p->time_ns) / p->time_ns;
        n++;
        /* a measured jump of over 25% from the previous point of the same
         * series: the charge must jump too (over 10%) */
        if (i > 0 && !strcmp(c->gemm[i - 1].model, p->model) &&
            c->gemm[i - 1].weight_bytes == p->weight_bytes &&
            c->gemm[i - 1].experts == p->experts && p->experts >= 8 &&
            p->time_ns > 1.25 * c->gemm[i - 1].time_ns) {
            double prev = calib_gemm_par_ns(&par, &h, &c->gemm[i - 1]);
            jumps++;
            missed += !(t > 1.10 * prev);
        }
    }
    cr_assert_gt(n, 300, "the steps file holds %d points", n);
    with /= n;
    without /= n;
    cr_log_info("steps file, %d points: MAPE %.1f%% with tiles and waves, %.1f%% without", n,
                100 * with, 100 * without);
    cr_assert_lt(with, 0.7 * without, "MAPE with tiles %.1f%%, without %.1f%%", 100 * with,
                 100 * without);
    cr_assert_gt(jumps, 20, "%d measured steps", jumps);
    cr_assert_eq(missed, 0, "%d of %d measured steps not charged", missed, jumps);
    calib_free(c);
}

/* The H200 preset's SM count, which the waves run over, is the one torch
 * reported on the measured GPUs (sm_count in each expert file's header). */
Test(calib, h200_sms_is_the_measured_count) {
    const char *files[] = {H200_CSV, H200_STEPS};
    for (int i = 0; i < 2; i++) {
        char *text;
        size_t len;
        cr_assert_eq(ms_read_file(files[i], &text, &len), MS_OK, "%s", ms_err_last());
        const char *p = strstr(text, "# sm_count: ");
        cr_assert_not_null(p, "%s has no sm_count line", files[i]);
        cr_assert_eq(atof(p + strlen("# sm_count: ")), hw_find("H200")->sms, "%s", files[i]);
        free(text);
    }
}

/* The grouped kernels' persistent grid is the one torch launched on the
 * measured H200 (models/calib/h200_experts_dispatch.csv, its profiler
 * trace): for every GEMM part, the GEMM kernel's grid (the last launch of
 * the part) holds cost_persistent_clusters(sms, ctas) clusters of the
 * configuration's ctas SMs: 66 x 2 CTAs in BF16, 29 x 4 in FP8. */
#define H200_DISPATCH "models/calib/h200_experts_dispatch.csv"
Test(calib, persistent_grid_is_the_measured_one) {
    char *text;
    size_t len;
    cr_assert_eq(ms_read_file(H200_DISPATCH, &text, &len), MS_OK, "%s", ms_err_last());
    const hw_t *h = hw_find("H200");
    int checked = 0, col_dtype = -1, col_part = -1, col_grids = -1;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (line[0] == '#') continue;
        char *field[32];
        int nf = 0;
        for (char *p = line; nf < 32;) {
            field[nf++] = p;
            char *comma = strchr(p, ',');
            if (!comma) break;
            *comma = 0;
            p = comma + 1;
        }
        if (col_grids < 0) {
            for (int i = 0; i < nf; i++) {
                if (!strcmp(field[i], "dtype")) col_dtype = i;
                if (!strcmp(field[i], "part")) col_part = i;
                if (!strcmp(field[i], "grids")) col_grids = i;
            }
            cr_assert(col_dtype >= 0 && col_part >= 0 && col_grids >= 0, "header: %s", line);
            continue;
        }
        cr_assert_gt(nf, col_grids, "short row");
        if (strcmp(field[col_part], "gateup") && strcmp(field[col_part], "down")) continue;
        const char *g = strrchr(field[col_grids], ' ');
        if (!g) continue; /* the second pass does not trace */
        int x = 0, y = 0, z = 0;
        cr_assert_eq(sscanf(g + 1, "%dx%dx%d", &x, &y, &z), 3, "grid '%s'", g + 1);
        double ctas = strcmp(field[col_dtype], "fp8") ? 2 : 4;
        cr_assert_eq(x * y * z, cost_persistent_clusters(h->sms, ctas) * ctas, "%s %s: grid %s",
                     field[col_dtype], field[col_part], g + 1);
        checked++;
    }
    cr_assert_gt(checked, 100, "%d GEMM launches checked", checked);
    free(text);
}

/* Two-batch overlap's contention figures of the Hopper presets are the
 * medians models/calib/overlap_summary.py prints from the measurement,
 * recomputed here from the CSV: over the rows with 20 SMs reserved, GEMM
 * beside all-to-alls over the same GEMM alone with no SM reserved, and
 * all-to-all beside GEMMs over alone. */
#define H200_OVERLAP "models/calib/h200_overlap.csv"
static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
Test(calib, overlap_figures_are_the_measurement) {
    char *text;
    size_t len;
    cr_assert_eq(ms_read_file(H200_OVERLAP, &text, &len), MS_OK);
    enum { MAXR = 1024 };
    static char dt[MAXR][8];
    static int e[MAXR], n[MAXR], co[MAXR];
    static double ga[MAXR], go[MAXR], cs[MAXR], comp[MAXR], comm[MAXR];
    int rows = 0, header = 0;
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
        if (*l == '#') continue;
        if (!header++) {
            static const char want[] = "model,dtype,experts,tokens_per_expert,bytes_per_gpu,"
                                       "sm_carveout,gemm_alone_ns,gemm_overlap_ns,a2a_alone_ns,"
                                       "a2a_overlap_ns,gemm_slowdown,a2a_slowdown,";
            cr_assert(!strncmp(l, want, sizeof want - 1), "header: %s", l);
            continue;
        }
        cr_assert_lt(rows, MAXR);
        double b, aa, ao, gs;
        int k = sscanf(l, "%*[^,],%7[^,],%d,%d,%lf,%d,%lf,%lf,%lf,%lf,%lf,%lf", dt[rows], &e[rows],
                       &n[rows], &b, &co[rows], &ga[rows], &go[rows], &aa, &ao, &gs, &cs[rows]);
        cr_assert_eq(k, 11, "row %d: %s", rows, l);
        rows++;
    }
    free(text);
    int nc = 0;
    for (int i = 0; i < rows; i++) {
        if (co[i] != 20) continue;
        double alone0 = 0;
        for (int j = 0; j < rows; j++)
            if (co[j] == 0 && !strcmp(dt[j], dt[i]) && e[j] == e[i] && n[j] == n[i]) alone0 = ga[j];
        cr_assert_gt(alone0, 0, "row %d has no carve-out 0 twin", i);
        comp[nc] = go[i] / alone0;
        comm[nc++] = cs[i];
    }
    cr_assert_gt(nc, 20, "%d rows with 20 SMs reserved", nc);
    double c = median(comp, nc), m = median(comm, nc);
    const char *presets[] = {"H200", "H100", "H800"};
    for (int i = 0; i < 3; i++) {
        const hw_t *h = hw_find(presets[i]);
        cr_assert_float_eq(h->overlap_compute, c, 5e-4, "%s overlap_compute %g, measured %.4f",
                           presets[i], h->overlap_compute, c);
        cr_assert_float_eq(h->overlap_comm, m, 5e-4, "%s overlap_comm %g, measured %.4f",
                           presets[i], h->overlap_comm, m);
        cr_assert_not_null(strstr(h->overlap_source, "h200_overlap.csv"));
    }
    cr_assert_eq(hw_find("H20")->overlap_compute, 1, "an unmeasured preset has no contention");
}

/* ---- fits on synthetic data with known figures ---- */

/* Appends a GEMM row whose time is cost_gemm_ns under par. */
static void gemm_row(char *buf, size_t n, const hw_t *h, const char *model, int hid, int inter,
                     const char *dt, int e, int tok, const hw_gemm_t *par) {
    calib_gemm_pt_t p = {.hidden = hid, .inter = inter, .weight_bytes = strcmp(dt, "fp8") ? 2 : 1,
                         .experts = e, .tokens = tok};
    double t = calib_gemm_par_ns(par, h, &p);
    size_t l = strlen(buf);
    snprintf(buf + l, n - l, "%s,%s,grouped,%d,%d,%d,%d,1,%.17g,%.17g,%.17g,9\n", model, dt, hid,
             inter, e, tok, t, t, t);
}

Test(calib, gemm_fit_recovers_known_figures) {
    const hw_t *h = hw_find("H100");
    /* grouped, so the kernel's tiles (calib_kernel_tiles) apply as in the fit */
    hw_gemm_t truth[3] = {
        {0},
        {.floor_ns = 20000, .expert_ns = 500, .eff_flops = 0.55, .eff_hbm = 0.7, .sharp = 3.0},
        {.floor_ns = 30000, .expert_ns = 1500, .eff_flops = 0.62, .eff_hbm = 0.75, .sharp = 5.0}};
    for (int wb = 1; wb <= 2; wb++) calib_kernel_tiles("grouped", wb, &truth[wb]);
    static char text[65536];
    snprintf(text, sizeof text, "%s\n", CALIB_GEMM_HEADER);
    static const struct {
        const char *m;
        int hid, inter;
    } shapes[] = {{"big", 7168, 2048}, {"small", 4096, 1536}};
    for (int s = 0; s < 2; s++)
        for (int dt = 0; dt < 2; dt++)
            for (int e = 1; e <= 16; e *= 2)
                for (int tok = 1; tok <= 8192; tok *= 2)
                    gemm_row(text, sizeof text, h, shapes[s].m, shapes[s].hid, shapes[s].inter,
                             dt ? "fp8" : "bf16", e, tok, &truth[dt ? 1 : 2]);
    calib_t *c = calib_new();
    cr_assert_eq(calib_parse(c, text, strlen(text), "o.csv"), MS_OK, "%s", ms_err_last());
    cr_assert_eq(calib_fit(c, h), MS_OK);
    for (int wb = 1; wb <= 2; wb++) {
        const hw_gemm_t *f = calib_gemm_par(c, NULL, wb), *t = &truth[wb];
        cr_assert_not_null(f);
        cr_assert_float_eq(f->floor_ns, t->floor_ns, 0.01 * t->floor_ns, "floor %g", f->floor_ns);
        cr_assert_float_eq(f->expert_ns, t->expert_ns, 0.01 * t->expert_ns, "per expert %g",
                           f->expert_ns);
        cr_assert_float_eq(f->eff_flops, t->eff_flops, 0.005, "eff_flops %g", f->eff_flops);
        cr_assert_float_eq(f->eff_hbm, t->eff_hbm, 0.005, "eff_hbm %g", f->eff_hbm);
        cr_assert_float_eq(f->sharp, t->sharp, 0.05 * t->sharp, "sharp %g", f->sharp);
    }
    calib_err_t e;
    calib_eval_gemm(c, NULL, 0, &e);
    cr_assert_lt(e.after, 0.1, "%.3f%%", e.after);
    cr_assert_lt(e.loo, 0.5, "%.3f%%", e.loo);
    cr_assert_lt(e.cross, 0.5, "one model predicts the other: %.3f%%", e.cross);
    calib_free(c);
}

/* The committed 4- and 8-GPU fixture is the link model's own output for
 * the figures its header states: every row recomputes, the fit recovers
 * the figures, and the report gives the world sizes their own rows. */
static const hw_link_t SYNTH = {0.85 * 450e9, 12000, 8e6, 0.3, 0.85};

Test(calib, a2a_fit_takes_any_world_size_from_the_file, .init = quiet) {
    calib_t *c = load1(SYNTH_A2A);
    int worlds[9] = {0};
    for (int i = 0; i < c->n_a2a; i++) {
        const calib_a2a_pt_t *p = &c->a2a[i];
        worlds[p->world] = 1;
        double t = calib_a2a_charged_ns(&SYNTH, p->pattern, p->world, p->bytes_per_gpu);
        cr_assert_float_eq(t, p->time_ns, 0.5, "%s:%d", p->file, p->line);
    }
    cr_assert(worlds[4] && worlds[8]);
    cr_assert(c->a2a_fitted);
    cr_assert_float_eq(c->link.lat_ns, SYNTH.lat_ns, 0.01 * SYNTH.lat_ns, "lat %g", c->link.lat_ns);
    cr_assert_float_eq(c->link.bw, SYNTH.bw, 0.01 * SYNTH.bw, "bw %g", c->link.bw);
    cr_assert_float_eq(c->link.half_bytes, SYNTH.half_bytes, 0.03 * SYNTH.half_bytes, "half %g",
                       c->link.half_bytes);
    cr_assert_float_eq(c->link.low_share, SYNTH.low_share, 0.01, "low %g", c->link.low_share);
    cr_assert_float_eq(c->link.duplex, SYNTH.duplex, 0.01, "duplex %g", c->link.duplex);
    calib_err_t e;
    for (int w = 4; w <= 8; w *= 2) {
        calib_eval_a2a(c, NULL, w, 0, INFINITY, NULL, &e);
        cr_assert_eq(e.n, c->n_a2a / 2);
        cr_assert_lt(e.after, 0.5, "world %d: %.3f%%", w, e.after);
    }
    calib_free(c);
    char dir[] = "/tmp/moesim-calib-XXXXXX";
    cr_assert(mkdtemp(dir));
    char *argv[] = {"calib", "report", "-q", "--csv", SYNTH_A2A, "-o", dir, NULL};
    cr_assert_eq(cmd_calib(7, argv), 0, "%s", ms_err_last());
    char path[128], *md;
    size_t len;
    snprintf(path, sizeof path, "%s/index.md", dir);
    cr_assert_eq(ms_read_file(path, &md, &len), MS_OK);
    cr_assert(strstr(md, "| all-to-all uniform from 1 MiB/GPU | 4 |"), "%s", md);
    cr_assert(strstr(md, "| all-to-all skewed below 1 MiB/GPU | 8 |"), "%s", md);
    free(md);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The measured patterns' traffic, as measure_a2a.py splits it (16-byte
 * units, remainders local): 4 GPUs, 1,600 bytes = 100 units each. */
Test(calib, a2a_patterns_split_as_the_script_does) {
    /* uniform: 25 units to every rank */
    cr_assert_eq(calib_a2a_split("uniform", 4, 1600, 1, 2), 400);
    cr_assert_eq(calib_a2a_split("uniform", 4, 1608, 1, 1), 400, "8 bytes short of a unit");
    /* skewed: 75 units to rank 0, the other 25 over 3 ranks: 8 each, 1 left local */
    cr_assert_eq(calib_a2a_split("skewed", 4, 1600, 2, 0), 1200);
    cr_assert_eq(calib_a2a_split("skewed", 4, 1600, 2, 3), 128);
    cr_assert_eq(calib_a2a_split("skewed", 4, 1600, 2, 2), 144);
    cr_assert_eq(calib_a2a_split("skewed", 4, 1600, 0, 0), 1200 + 16);
    /* oneway: rank 0 only, 33 units to each other rank */
    cr_assert_eq(calib_a2a_split("oneway", 4, 1600, 0, 3), 528);
    cr_assert_eq(calib_a2a_split("oneway", 4, 1600, 1, 0), 0);
    cr_assert_eq(calib_a2a_split("deepep", 4, 1600, 0, 1), -1);
    hw_link_t lk = SYNTH;
    cr_assert_eq(calib_a2a_charged_ns(&lk, "deepep", 4, 1600), -1);
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
    calib_eval_a2a(c, "skewed", 0, 0, INFINITY, NULL, &e);
    cr_assert_eq(e.n, 1);
    cr_assert(isnan(e.after), "two points fit no link model");
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
                 "default: the preset's fit");
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
    /* the link model's figures are [hardware] keys like the others */
    cr_assert_eq(spec_with("scaleup_duplex = 0.9\nscaleup_half_bytes = 4e6\n", &spec, &cfg), MS_OK,
                 "%s", ms_err_last());
    cr_assert_eq(spec.cluster.hw.scaleup_duplex, 0.9);
    cr_assert_eq(cost_scaleup_link(&spec.cluster.hw).half_bytes, 4e6);
    cfg_free(cfg);
    cr_assert_eq(spec_with("scaleup_duplex = 0\n", &spec, &cfg), MS_ERR);
    cr_assert(strstr(ms_err_last(), "scaleup_duplex"), "%s", ms_err_last());
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
    int hdr, ng = data_rows(H200_CSV, &hdr), na = data_rows(H200_A2A, &hdr);
    char want[96];
    snprintf(want, sizeof want, "| expert compute grouped bf16 | 1 | %d |", ng / 5);
    cr_assert(strstr(md, want), "%s", md);
    cr_assert(strstr(md, "| all-to-all all from 1 MiB/GPU | 2 |"), "%s", md);
    free(md);
    snprintf(path, sizeof path, "%s/points.csv", out);
    char *pts;
    cr_assert_eq(ms_read_file(path, &pts, &len), MS_OK);
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += pts[i] == '\n';
    cr_assert_eq(lines, 1 + ng + na, "header and one row per measurement");
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
    cr_assert(strstr(md, "| all-to-all uniform below 1 MiB/GPU | 2 | 4 |"), "%s", md);
    cr_assert(strstr(md, "| all-to-all uniform from 1 MiB/GPU | 2 | 1 |"), "%s", md);
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
    cr_assert_eq(cmd_calib(2, bad_sub), 2); /* a usage mistake */
    cr_assert(strstr(ms_err_last(), "the only subcommand is 'report'"));
}

/* calib_select keys its cache on the preset's name and figures: a long
 * name must not overrun the key (ASan caught the write past it: the key's
 * length left the name out, and only the config line limit kept a preset
 * file's names short enough). The missing file is then reported by name. */
Test(calib, select_key_holds_a_long_preset_name, .init = quiet) {
    hw_t h = *hw_find("H200");
    char name[2048];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = 0;
    h.name = name;
    const calib_t *c = NULL;
    cr_assert_eq(calib_select("no_such_file.csv", &h, NULL, "test", &c), MS_ERR);
    cr_assert(strstr(ms_err_last(), "no_such_file.csv"), "%s", ms_err_last());
    cr_assert_null(c);
}
