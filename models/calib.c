/* calib: calibration CSVs, and the fits of the cost model's measured
 * forms (models/cost.h) to them. Every prediction here calls the function
 * the simulator calls (cost_experts_par_ns, the flow network with
 * cost_link_ramp), so what `moesim calib report` prints is what a step
 * charges. */
#include "calib.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_multifit_nlinear.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eng.h"
#include "net.h"
#include "util.h"

enum { GEMM_COLS = 12, A2A_COLS = 8, MAX_COLS = 16 };

/* Fits need more points than figures (five). */
#define MIN_FIT_POINTS 8
/* Share of each buffer the skewed pattern sends to rank 0 (measure_a2a.py). */
#define A2A_SKEW 0.75

/* ---- expert compute: the step's own function on a point ---- */

moe_model_t calib_point_model(const calib_gemm_pt_t *p) {
    return (moe_model_t){.hidden = p->hidden, .moe_inter = p->inter,
                         .weight_bytes = p->weight_bytes, .dispatch_bytes = p->weight_bytes,
                         .combine_bytes = 2};
}

double calib_gemm_par_ns(const hw_gemm_t *par, const hw_t *hw, const calib_gemm_pt_t *p) {
    moe_model_t m = calib_point_model(p);
    double *n = ms_malloc((size_t)p->experts * sizeof *n);
    for (int i = 0; i < p->experts; i++) n[i] = p->tokens;
    double t = cost_experts_par_ns(par, hw, &m, n, p->experts);
    free(n);
    return t;
}

double calib_gemm_charged_ns(const hw_t *hw, const calib_gemm_pt_t *p) {
    hw_gemm_t par = cost_gemm_par_of(hw, p->weight_bytes);
    return calib_gemm_par_ns(&par, hw, p);
}


/* ---- least squares on log error (GSL's trust-region Levenberg-Marquardt) ---- */

typedef int (*resid_fn)(const gsl_vector *x, void *ctx, gsl_vector *r);

/* Minimises the sum of squared residuals over x[0..p) from its start;
 * h_df is the finite-difference step (larger than the default when the
 * residuals are quantised, as the flow network's nanoseconds are). */
static void lsq(resid_fn f, void *ctx, size_t n, size_t p, double *x, double h_df) {
    gsl_multifit_nlinear_parameters prm = gsl_multifit_nlinear_default_parameters();
    if (h_df > 0) prm.h_df = h_df;
    gsl_multifit_nlinear_workspace *w =
        gsl_multifit_nlinear_alloc(gsl_multifit_nlinear_trust, &prm, n, p);
    gsl_multifit_nlinear_fdf fdf = {.f = f, .df = NULL, .fvv = NULL, .n = n, .p = p,
                                    .params = ctx};
    gsl_vector_view xv = gsl_vector_view_array(x, p);
    gsl_error_handler_t *old = gsl_set_error_handler_off();
    int info;
    if (gsl_multifit_nlinear_init(&xv.vector, &fdf, w) == GSL_SUCCESS) {
        gsl_multifit_nlinear_driver(200, 1e-10, 1e-10, 1e-10, NULL, NULL, &info, w);
        const gsl_vector *r = gsl_multifit_nlinear_position(w);
        int ok = 1;
        for (size_t i = 0; i < p; i++) ok &= isfinite(gsl_vector_get(r, i));
        if (ok)
            for (size_t i = 0; i < p; i++) x[i] = gsl_vector_get(r, i);
    }
    gsl_set_error_handler(old);
    gsl_multifit_nlinear_free(w);
}

static double logistic(double v) { return 1.0 / (1.0 + exp(-v)); }
static double logit(double p) { return log(p / (1.0 - p)); }

/* ---- expert-compute fit ---- */

/* The tile configurations of the measured kernels (not fitted: read from
 * the kernels' source, torch 2.11 on SM90, and checked against
 * models/calib/h200_experts_steps.csv, which times them at fine steps of
 * tokens per expert). torch picks a configuration per GEMM from M = rows /
 * groups and the GEMM's N and K (hw_gemm_t); CUTLASS's grouped tile
 * scheduler hands out whole clusters, so an expert's rows are padded to
 * tile M x cluster M, a GEMM's columns to tile N x cluster N, and a cluster
 * holds cluster M x cluster N SMs (one CTA each; the persistent kernel keeps
 * sms / that many clusters running, models/cost.h):
 *   grouped bf16 (torch._grouped_mm, GroupMM.cu), cluster 2x1: M or N <= 128
 *     64x128x128 ping-pong (128 x 128 on 2 SMs), else 128x256x64
 *     cooperative (256 x 256 on 2 SMs);
 *   grouped fp8 (torch._scaled_grouped_mm, ScaledGroupMM.cu, fast
 *     accumulation), cluster 2x2: M or N <= 128 64x128x128 ping-pong (128 x
 *     256 on 4 SMs); else, when two of M, N, K are at least 2048, 256x128x128
 *     cooperative (512 x 256); else 128x256x64 cooperative (256 x 512).
 *     Qwen3's down projection (K = 1536) takes the last below 2048 tokens per
 *     expert: the steps file's step at 257 tokens.
 * Other kernels (the per-expert loop, bmm) are fitted without padding. */
static const struct {
    const char *impl;
    int weight_bytes;
    double small_max, large_min;
    hw_tile_t tile[3];
} KERNEL_TILES[] = {
    {"grouped", 2, 128, 0, {{128, 128, 2}, {256, 256, 2}, {256, 256, 2}}},
    {"grouped", 1, 128, 2048, {{128, 256, 4}, {256, 512, 4}, {512, 256, 4}}},
};

void calib_kernel_tiles(const char *impl, int weight_bytes, hw_gemm_t *par) {
    par->small_max = par->large_min = 0;
    memset(par->tile, 0, sizeof par->tile);
    for (size_t i = 0; i < sizeof KERNEL_TILES / sizeof KERNEL_TILES[0]; i++)
        if (KERNEL_TILES[i].weight_bytes == weight_bytes && !strcmp(KERNEL_TILES[i].impl, impl)) {
            par->small_max = KERNEL_TILES[i].small_max;
            par->large_min = KERNEL_TILES[i].large_min;
            memcpy(par->tile, KERNEL_TILES[i].tile, sizeof par->tile);
        }
}

typedef struct {
    cost_gemm_work_t w;
    double meas;
} gpt_t;

typedef struct {
    const gpt_t *pt;
    size_t n;
} gset_t;

/* Unconstrained figures: logs of the four positive ones, log(sharp - 1). */
static hw_gemm_t gpar(const double *x) {
    return (hw_gemm_t){.floor_ns = exp(x[0]), .expert_ns = exp(x[1]), .eff_flops = exp(x[2]),
                       .eff_hbm = exp(x[3]), .sharp = 1.0 + exp(x[4])};
}

static int gemm_resid(const gsl_vector *xv, void *ctx, gsl_vector *r) {
    const gset_t *s = ctx;
    hw_gemm_t par = gpar(xv->data);
    for (size_t i = 0; i < s->n; i++) {
        const gpt_t *q = &s->pt[i];
        double t = cost_gemm_ns(&par, &q->w);
        gsl_vector_set(r, i, isfinite(t) && t > 0 ? log(t / q->meas) : 50.0);
    }
    return GSL_SUCCESS;
}

/* The work cost_experts_par_ns charges for point p (its own function, so
 * the fit minimises the error of the step's arithmetic). */
static gpt_t gpt_of(const hw_t *hw, const calib_gemm_pt_t *p) {
    moe_model_t m = calib_point_model(p);
    hw_gemm_t tiles = {0};
    calib_kernel_tiles(p->impl, p->weight_bytes, &tiles);
    double *n = ms_malloc((size_t)p->experts * sizeof *n);
    for (int i = 0; i < p->experts; i++) n[i] = p->tokens;
    gpt_t g = {.meas = p->time_ns};
    cost_experts_work(&tiles, hw, &m, n, p->experts, &g.w);
    free(n);
    return g;
}

/* Fits the points of (impl, wb), leaving out size skip_tokens (<= 0: none)
 * and model skip_model (NULL: none). Returns the number of points used;
 * fewer than MIN_FIT_POINTS: no fit. */
static int fit_gemm(const calib_t *c, const char *impl, int wb, double skip_tokens,
                    const char *skip_model, hw_gemm_t *out) {
    gpt_t *pt = ms_malloc((size_t)(c->n_gemm ? c->n_gemm : 1) * sizeof *pt);
    size_t n = 0;
    for (int i = 0; i < c->n_gemm; i++) {
        const calib_gemm_pt_t *p = &c->gemm[i];
        if (strcmp(p->impl, impl) || p->weight_bytes != wb || p->tokens == skip_tokens ||
            (skip_model && !strcmp(p->model, skip_model)))
            continue;
        pt[n++] = gpt_of(&c->hw, p);
    }
    if (n >= MIN_FIT_POINTS) {
        /* start: a few microseconds a call and an expert, efficiencies the
         * constants', a soft ridge */
        double x[5] = {log(1e4), log(2e3), log(c->hw.eff_flops), log(c->hw.eff_hbm), log(3.0)};
        gset_t s = {pt, n};
        lsq(gemm_resid, &s, n, 5, x, 0);
        *out = gpar(x);
        calib_kernel_tiles(impl, wb, out);
    }
    free(pt);
    return (int)n;
}

/* ---- all-to-all: the flow network on a measured pattern ---- */

double calib_a2a_split(const char *pattern, int world, double bytes, int src, int dst) {
    /* 16-byte units as the script sends them; a remainder stays local */
    double units = floor(bytes / 16), row;
    int w1 = world - 1;
    if (world < 2 || src < 0 || dst < 0 || src >= world || dst >= world) return 0;
    if (!strcmp(pattern, "uniform")) {
        row = floor(units / world);
        if (src == dst) row += units - row * world;
    } else if (!strcmp(pattern, "oneway")) {
        if (src != 0) return 0;
        row = dst ? floor(units / w1) : units - floor(units / w1) * w1;
    } else if (!strcmp(pattern, "skewed")) {
        double hot = floor(units * A2A_SKEW), each = floor((units - hot) / w1);
        row = dst == 0 ? hot : each;
        if (src == dst) row += units - hot - each * w1;
    } else {
        return -1;
    }
    return row * 16;
}

typedef struct {
    int64_t end;
} a2a_run_t;

static void a2a_done(eng_t *eng, void *ctx, int64_t tag) {
    (void)tag;
    a2a_run_t *r = ctx;
    if (eng_now(eng) > r->end) r->end = eng_now(eng);
}

/* The network's time for the traffic send[src * world + dst] (diagonal:
 * local, not on a link) with bytes and latency scaled by scale (> 1: finer
 * than the whole nanoseconds events are rounded to; the fit needs smooth
 * residuals), divided back. */
static double matrix_run(const hw_link_t *lk, int world, const double *send, double scale) {
    eng_t *eng = eng_new();
    net_t *net = net_new(eng);
    /* port ids: out of GPU g = 2g, into it = 2g + 1; paired for the derating */
    for (int g = 0; g < world; g++) {
        net_add_link(net, lk->bw);
        net_add_link(net, lk->bw);
        net_pair_links(net, 2 * g, 2 * g + 1, lk->duplex);
    }
    a2a_run_t run = {0};
    int64_t lat = llround(lk->lat_ns * scale);
    for (int a = 0; a < world; a++)
        for (int b = 0; b < world; b++) {
            double v = a == b ? 0 : send[(size_t)a * world + b];
            if (v <= 0) continue;
            int links[2] = {2 * a, 2 * b + 1};
            net_start(net, 2, links, NULL, scale * v / cost_link_ramp(lk, v), lat, a2a_done,
                      &run, 0);
        }
    eng_run_until(eng, INT64_MAX);
    net_free(net);
    eng_free(eng);
    return (double)run.end / scale;
}

double calib_a2a_matrix_ns(const hw_link_t *lk, int world, const double *send) {
    return matrix_run(lk, world, send, 1);
}

static double a2a_run(const hw_link_t *lk, const char *pattern, int world, double bytes_per_gpu,
                      double scale) {
    if (calib_a2a_split(pattern, world, bytes_per_gpu, 0, 0) < 0) return -1;
    double *send = ms_malloc((size_t)world * world * sizeof *send);
    for (int a = 0; a < world; a++)
        for (int b = 0; b < world; b++)
            send[(size_t)a * world + b] = calib_a2a_split(pattern, world, bytes_per_gpu, a, b);
    double t = matrix_run(lk, world, send, scale);
    free(send);
    return t;
}

double calib_a2a_charged_ns(const hw_link_t *lk, const char *pattern, int world,
                            double bytes_per_gpu) {
    return a2a_run(lk, pattern, world, bytes_per_gpu, 1);
}

/* Time resolution of the fit's network runs: a thousandth of a nanosecond. */
#define FIT_SCALE 1000.0

typedef struct {
    const calib_a2a_pt_t *const *pt;
    size_t n;
    double bw0;   /* the data-sheet bandwidth the peak is a share of */
    int duplex;   /* 1: fit the derating (a one-way pattern is measured) */
} aset_t;

/* Unconstrained figures: log latency, log peak share, log half, logit low,
 * logit duplex (fixed at 1 when not fitted). */
static hw_link_t apar(const double *x, const aset_t *s) {
    return (hw_link_t){s->bw0 * exp(x[1]), exp(x[0]), exp(x[2]), logistic(x[3]),
                         s->duplex ? logistic(x[4]) : 1.0};
}

static int a2a_resid(const gsl_vector *xv, void *ctx, gsl_vector *r) {
    const aset_t *s = ctx;
    hw_link_t lk = apar(xv->data, s);
    for (size_t i = 0; i < s->n; i++) {
        const calib_a2a_pt_t *p = s->pt[i];
        double t = a2a_run(&lk, p->pattern, p->world, p->bytes_per_gpu, FIT_SCALE);
        gsl_vector_set(r, i, t > 0 && isfinite(t) ? log(t / p->time_ns) : 50.0);
    }
    return GSL_SUCCESS;
}

static int a2a_known(const calib_a2a_pt_t *p) {
    return calib_a2a_split(p->pattern, p->world, p->bytes_per_gpu, 0, 0) >= 0;
}

/* Fits the link model to the a2a points of known patterns, leaving out
 * bytes_per_gpu skip (<= 0: none). Returns the points used. */
static int fit_a2a(const calib_t *c, double skip, hw_link_t *out) {
    const calib_a2a_pt_t **pt = ms_malloc((size_t)(c->n_a2a ? c->n_a2a : 1) * sizeof *pt);
    size_t n = 0;
    int oneway = 0;
    for (int i = 0; i < c->n_a2a; i++) {
        const calib_a2a_pt_t *p = &c->a2a[i];
        if (!a2a_known(p) || p->bytes_per_gpu == skip) continue;
        pt[n++] = p;
        oneway |= !strcmp(p->pattern, "oneway");
    }
    if (n >= MIN_FIT_POINTS) {
        aset_t s = {pt, n, c->hw.scaleup_bw, oneway};
        /* start (whatever the preset says, so the fit depends on the data
         * alone): 10 us, 0.8 of the data sheet, a 4 MiB half point, a
         * quarter of the peak for tiny messages, 0.9 of it both ways */
        double x[5] = {log(1e4), log(0.8), log(4.0 * 1048576), logit(0.25), logit(0.9)};
        lsq(a2a_resid, &s, n, oneway ? 5 : 4, x, 1e-5);
        *out = apar(x, &s);
    }
    free(pt);
    return (int)n;
}

/* ---- fitting a calibration ---- */

static void add_fit(calib_t *c, const char *impl, int wb) {
    for (int i = 0; i < c->n_fits; i++)
        if (c->fits[i].weight_bytes == wb && !strcmp(c->fits[i].impl, impl)) return;
    hw_gemm_t par;
    int n = fit_gemm(c, impl, wb, 0, NULL, &par);
    if (n < MIN_FIT_POINTS) return;
    c->fits = ms_realloc(c->fits, (size_t)(c->n_fits + 1) * sizeof *c->fits);
    calib_gemm_fit_t *f = &c->fits[c->n_fits++];
    memset(f, 0, sizeof *f);
    snprintf(f->impl, CALIB_NAME_MAX, "%s", impl);
    f->weight_bytes = wb;
    f->n = n;
    f->par = par;
}

/* Fits the simulator's implementation (all = 0) or every implementation
 * and the links too (all = 1). */
static int fit(calib_t *c, const hw_t *hw, int all) {
    if (!c->n_gemm && !c->n_a2a)
        return ms_err("%s: no measurements (a calibration needs at least one data row)", c->source);
    c->hw = *hw;
    c->hw.calib = NULL;
    c->gemm_impl[0] = 0;
    for (int i = 0; i < c->n_gemm && !c->gemm_impl[0]; i++)
        if (!strcmp(c->gemm[i].impl, CALIB_GEMM_IMPL))
            snprintf(c->gemm_impl, CALIB_NAME_MAX, "%s", CALIB_GEMM_IMPL);
    if (!c->gemm_impl[0] && c->n_gemm)
        snprintf(c->gemm_impl, CALIB_NAME_MAX, "%s", c->gemm[0].impl);
    free(c->fits);
    c->fits = NULL;
    c->n_fits = 0;
    for (int wb = 2; wb >= 1; wb--) add_fit(c, c->gemm_impl, wb);
    for (int i = 0; all && i < c->n_gemm; i++) add_fit(c, c->gemm[i].impl, c->gemm[i].weight_bytes);
    c->a2a_fitted = all && fit_a2a(c, 0, &c->link) >= MIN_FIT_POINTS;
    free(c->a2a_loo_ns);
    c->a2a_loo_ns = NULL;
    if (c->a2a_fitted) {
        /* leave-one-size-out once here (each refit runs the network many
         * times); calib_eval_a2a reads the predictions */
        c->a2a_loo_ns = ms_calloc((size_t)c->n_a2a, sizeof *c->a2a_loo_ns);
        for (int i = 0; i < c->n_a2a; i++) {
            const calib_a2a_pt_t *p = &c->a2a[i];
            if (!a2a_known(p) || c->a2a_loo_ns[i] > 0) continue;
            hw_link_t held;
            if (fit_a2a(c, p->bytes_per_gpu, &held) < MIN_FIT_POINTS) continue;
            for (int j = i; j < c->n_a2a; j++)
                if (a2a_known(&c->a2a[j]) && c->a2a[j].bytes_per_gpu == p->bytes_per_gpu)
                    c->a2a_loo_ns[j] = calib_a2a_charged_ns(&held, c->a2a[j].pattern,
                                                            c->a2a[j].world,
                                                            c->a2a[j].bytes_per_gpu);
        }
    }
    return MS_OK;
}

int calib_fit(calib_t *c, const hw_t *hw) { return fit(c, hw, 1); }

/* ---- errors ---- */

static double ape(double pred, double meas) { return 100.0 * fabs(pred - meas) / meas; }

static void err_finish(calib_err_t *e, double loo, int loo_n, double cross, int cross_n) {
    if (!e->n) {
        e->before = e->after = e->loo = e->cross = NAN;
        return;
    }
    e->before /= e->n;
    e->after /= e->n;
    e->loo = loo_n ? loo / loo_n : NAN;
    e->cross = cross_n ? cross / cross_n : NAN;
}

static int gemm_sel(const calib_gemm_pt_t *p, const char *impl, int wb) {
    return !strcmp(p->impl, impl) && (!wb || p->weight_bytes == wb);
}

/* Does a selected point before i have point i's size (or model)? */
static int seen_before(const calib_t *c, int i, const char *impl, int wb, int by_model) {
    for (int j = 0; j < i; j++) {
        const calib_gemm_pt_t *q = &c->gemm[j];
        if (gemm_sel(q, impl, wb) && q->weight_bytes == c->gemm[i].weight_bytes &&
            (by_model ? !strcmp(q->model, c->gemm[i].model) : q->tokens == c->gemm[i].tokens))
            return 1;
    }
    return 0;
}

/* Adds the errors of the selected points of dtype wb and size tokens (> 0)
 * or model (non-NULL) under a fit made without them. */
static void held_out(const calib_t *c, const char *impl, int wb, double tokens, const char *model,
                     double *sum, int *n) {
    hw_gemm_t par;
    if (fit_gemm(c, impl, wb, tokens, model, &par) < MIN_FIT_POINTS) return;
    for (int i = 0; i < c->n_gemm; i++) {
        const calib_gemm_pt_t *p = &c->gemm[i];
        if (!gemm_sel(p, impl, wb) || (tokens > 0 && p->tokens != tokens) ||
            (model && strcmp(p->model, model)))
            continue;
        *sum += ape(calib_gemm_par_ns(&par, &c->hw, p), p->time_ns);
        (*n)++;
    }
}

int calib_eval_gemm(const calib_t *c, const char *impl, int weight_bytes, calib_err_t *out) {
    if (!impl) impl = c->gemm_impl;
    memset(out, 0, sizeof *out);
    hw_t bare = c->hw, cal = c->hw;
    bare.calib = NULL;
    cal.calib = c;
    double loo = 0, cross = 0;
    int loo_n = 0, cross_n = 0;
    for (int i = 0; i < c->n_gemm; i++) {
        const calib_gemm_pt_t *p = &c->gemm[i];
        if (!gemm_sel(p, impl, weight_bytes)) continue;
        const hw_gemm_t *par = calib_gemm_par(c, impl, p->weight_bytes);
        if (!par) continue;
        out->before += ape(calib_gemm_charged_ns(&bare, p), p->time_ns);
        /* the simulator's implementation through hw->calib, as a step sees it */
        double after = !strcmp(impl, c->gemm_impl) ? calib_gemm_charged_ns(&cal, p)
                                                   : calib_gemm_par_ns(par, &c->hw, p);
        out->after += ape(after, p->time_ns);
        out->n++;
        int wb = p->weight_bytes;
        if (!seen_before(c, i, impl, wb, 0)) held_out(c, impl, wb, p->tokens, NULL, &loo, &loo_n);
        if (seen_before(c, i, impl, wb, 1)) continue;
        int models = 0; /* a model held out needs another one to fit on */
        for (int j = 0; j < c->n_gemm && models < 2; j++)
            if (gemm_sel(&c->gemm[j], impl, wb) && c->gemm[j].weight_bytes == wb &&
                !seen_before(c, j, impl, wb, 1))
                models++;
        if (models > 1) held_out(c, impl, wb, 0, p->model, &cross, &cross_n);
    }
    err_finish(out, loo, loo_n, cross, cross_n);
    return MS_OK;
}

static int a2a_sel(const calib_a2a_pt_t *p, const char *pattern, int world, double lo,
                   double hi) {
    return a2a_known(p) && (!pattern || !strcmp(p->pattern, pattern)) &&
           (!world || p->world == world) && p->bytes_per_gpu >= lo && p->bytes_per_gpu < hi;
}

int calib_eval_a2a(const calib_t *c, const char *pattern, int world, double lo, double hi,
                   const hw_link_t *lk, calib_err_t *out) {
    memset(out, 0, sizeof *out);
    if (!lk) lk = c->a2a_fitted ? &c->link : NULL;
    /* before: the data-sheet model (eff_scaleup 0.8, 2 us, no ramp or derating) */
    hw_t ds = c->hw;
    ds.eff_scaleup = 0.8;
    ds.scaleup_lat_ns = 2000;
    ds.scaleup_half_bytes = 0;
    ds.scaleup_duplex = 1;
    hw_link_t base = cost_scaleup_link(&ds);
    double loo = 0;
    int loo_n = 0;
    for (int i = 0; i < c->n_a2a; i++) {
        const calib_a2a_pt_t *p = &c->a2a[i];
        if (!a2a_sel(p, pattern, world, lo, hi)) continue;
        out->before += ape(calib_a2a_charged_ns(&base, p->pattern, p->world, p->bytes_per_gpu),
                           p->time_ns);
        if (lk)
            out->after += ape(calib_a2a_charged_ns(lk, p->pattern, p->world, p->bytes_per_gpu),
                              p->time_ns);
        out->n++;
        if (lk && c->a2a_loo_ns && c->a2a_loo_ns[i] > 0) {
            loo += ape(c->a2a_loo_ns[i], p->time_ns);
            loo_n++;
        }
    }
    err_finish(out, loo, loo_n, NAN, 0);
    if (!lk) out->after = NAN;
    out->cross = NAN;
    return MS_OK;
}

/* ---- reading ---- */

calib_t *calib_new(void) { return ms_calloc(1, sizeof(calib_t)); }

void calib_free(calib_t *c) {
    if (!c) return;
    for (int i = 0; i < c->n_files; i++) free(c->files[i]);
    free(c->files);
    free(c->gemm);
    free(c->a2a);
    free(c->fits);
    free(c->a2a_loo_ns);
    free(c);
}

/* A number in a column, at least lo (strictly more when strict). */
static int num(const char *file, int line, const char *col, const char *s, double lo, int strict,
               double *out) {
    if (ms_parse_double(s, out))
        return ms_err("%s:%d: column %s: '%s' is not a number (write a plain decimal, e.g. 1234.5)",
                      file, line, col, s);
    if (*out < lo || (strict && *out == lo))
        return ms_err("%s:%d: column %s: %s must be %s %g (%s)", file, line, col, s,
                      strict ? "more than" : "at least", lo,
                      strstr(col, "_ns") ? "a time of zero or less is a broken measurement; "
                                           "re-measure or drop the row"
                                         : "fix or drop the row");
    return MS_OK;
}

static int integer(const char *file, int line, const char *col, const char *s, long lo, long hi,
                   int *out) {
    long v;
    if (ms_parse_int(s, &v))
        return ms_err("%s:%d: column %s: '%s' is not a whole number", file, line, col, s);
    if (v < lo || v > hi)
        return ms_err("%s:%d: column %s: %ld is outside %ld..%ld (fix or drop the row)", file, line,
                      col, v, lo, hi);
    *out = (int)v;
    return MS_OK;
}

static int name(const char *file, int line, const char *col, const char *s, char *out) {
    if (!*s)
        return ms_err("%s:%d: column %s is empty (name it, e.g. deepseek-v3)", file, line, col);
    if (strlen(s) >= CALIB_NAME_MAX)
        return ms_err("%s:%d: column %s: '%s' is longer than %d characters", file, line, col, s,
                      CALIB_NAME_MAX - 1);
    snprintf(out, CALIB_NAME_MAX, "%s", s);
    return MS_OK;
}

static int spread(const char *file, int line, double p10, double med, double p90) {
    if (p10 > med || med > p90)
        return ms_err("%s:%d: p10_ns %g, time_ns %g, p90_ns %g are not in order (p10 <= median <= "
                      "p90; the columns may be swapped)",
                      file, line, p10, med, p90);
    return MS_OK;
}

static int gemm_row(calib_t *c, char **f, const char *file, int line, calib_gemm_pt_t *p) {
    memset(p, 0, sizeof *p);
    if (name(file, line, "model", f[0], p->model) || name(file, line, "impl", f[2], p->impl))
        return MS_ERR;
    if (!strcmp(f[1], "bf16")) p->weight_bytes = 2;
    else if (!strcmp(f[1], "fp8")) p->weight_bytes = 1;
    else return ms_err("%s:%d: column dtype: '%s' is not bf16 or fp8", file, line, f[1]);
    if (integer(file, line, "hidden", f[3], 1, 1 << 20, &p->hidden) ||
        integer(file, line, "inter", f[4], 1, 1 << 20, &p->inter) ||
        integer(file, line, "experts", f[5], 1, 1 << 16, &p->experts) ||
        num(file, line, "tokens_per_expert", f[6], 0, 1, &p->tokens) ||
        integer(file, line, "graph", f[7], 0, 1, &p->graph) ||
        num(file, line, "time_ns", f[8], 0, 1, &p->time_ns) ||
        num(file, line, "p10_ns", f[9], 0, 1, &p->p10_ns) ||
        num(file, line, "p90_ns", f[10], 0, 1, &p->p90_ns) ||
        integer(file, line, "reps", f[11], 1, 1 << 30, &p->reps) ||
        spread(file, line, p->p10_ns, p->time_ns, p->p90_ns))
        return MS_ERR;
    for (int i = 0; i < c->n_gemm; i++) {
        const calib_gemm_pt_t *q = &c->gemm[i];
        if (!strcmp(q->model, p->model) && (q->hidden != p->hidden || q->inter != p->inter))
            return ms_err("%s:%d: model %s has hidden,inter = %d,%d here but %d,%d at %s:%d (one "
                          "name per shape)",
                          file, line, p->model, p->hidden, p->inter, q->hidden, q->inter, q->file,
                          q->line);
    }
    return MS_OK;
}

static int a2a_row(char **f, const char *file, int line, calib_a2a_pt_t *p) {
    memset(p, 0, sizeof *p);
    if (name(file, line, "pattern", f[0], p->pattern) ||
        integer(file, line, "world", f[1], 2, 1 << 20, &p->world) ||
        num(file, line, "bytes_per_gpu", f[2], 0, 1, &p->bytes_per_gpu) ||
        num(file, line, "max_link_bytes", f[3], 0, 1, &p->link_bytes) ||
        num(file, line, "time_ns", f[4], 0, 1, &p->time_ns) ||
        num(file, line, "p10_ns", f[5], 0, 1, &p->p10_ns) ||
        num(file, line, "p90_ns", f[6], 0, 1, &p->p90_ns) ||
        integer(file, line, "reps", f[7], 1, 1 << 30, &p->reps) ||
        spread(file, line, p->p10_ns, p->time_ns, p->p90_ns))
        return MS_ERR;
    if (p->link_bytes > (p->world - 1) * p->bytes_per_gpu)
        return ms_err("%s:%d: max_link_bytes %s is more than %d other GPUs x bytes_per_gpu %s "
                      "can move (swapped columns?)",
                      file, line, f[3], p->world - 1, f[2]);
    return MS_OK;
}

static int cmp_gemm(const calib_gemm_pt_t *a, const calib_gemm_pt_t *b) {
    int d = strcmp(a->model, b->model);
    if (!d) d = (a->weight_bytes == 1) - (b->weight_bytes == 1); /* "bf16" < "fp8" */
    if (!d) d = strcmp(a->impl, b->impl);
    if (!d) d = (a->experts > b->experts) - (a->experts < b->experts);
    if (!d) d = (a->tokens > b->tokens) - (a->tokens < b->tokens);
    return d;
}

static int cmp_a2a(const calib_a2a_pt_t *a, const calib_a2a_pt_t *b) {
    int d = strcmp(a->pattern, b->pattern);
    if (!d) d = (a->world > b->world) - (a->world < b->world);
    if (!d) d = (a->bytes_per_gpu > b->bytes_per_gpu) - (a->bytes_per_gpu < b->bytes_per_gpu);
    return d;
}

static int order(int cmp, const char *file, int line, int prev_line, const char *key) {
    if (cmp > 0) return MS_OK;
    if (cmp == 0)
        return ms_err("%s:%d: duplicates the point at line %d (one row per %s)", file, line,
                      prev_line, key);
    return ms_err("%s:%d: comes before line %d's point (rows must be sorted by %s; sort the file)",
                  file, line, prev_line, key);
}

/* Splits line at commas in place; returns the field count (at most max). */
static int split(char *line, char **f, int max) {
    int n = 0;
    for (char *p = line;; p++) {
        if (n < max) f[n] = p;
        n++;
        p = strchr(p, ',');
        if (!p) break;
        *p = 0;
    }
    return n;
}

int calib_parse(calib_t *c, const char *text, size_t len, const char *file) {
    const char *nul = memchr(text, 0, len);
    if (nul)
        return ms_err("%s: byte %zu is a NUL (a calibration file is CSV text)", file,
                      (size_t)(nul - text));
    c->files = ms_realloc(c->files, (size_t)(c->n_files + 1) * sizeof *c->files);
    char *fname = c->files[c->n_files++] = ms_strdup(file);
    char *buf = ms_malloc(len + 1);
    memcpy(buf, text, len);
    buf[len] = 0;
    int kind = 0, rows = 0, prev_line = 0, rc = MS_OK, ln = 0;
    char *f[MAX_COLS];
    for (char *line = buf, *next; line && rc == MS_OK; line = next) {
        ln++;
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = 0;
        if (!l || line[0] == '#') continue;
        if (!kind) {
            if (!strcmp(line, CALIB_GEMM_HEADER)) kind = 1;
            else if (!strcmp(line, CALIB_A2A_HEADER)) kind = 2;
            else
                rc = ms_err("%s:%d: '%.80s' is not a calibration header (expected '%s' for expert "
                            "compute or '%s' for all-to-all)",
                            fname, ln, line, CALIB_GEMM_HEADER, CALIB_A2A_HEADER);
            continue;
        }
        int want = kind == 1 ? GEMM_COLS : A2A_COLS;
        int got = split(line, f, MAX_COLS);
        if (got != want) {
            rc = ms_err("%s:%d: %d fields, expected %d (%s)", fname, ln, got, want,
                        kind == 1 ? CALIB_GEMM_HEADER : CALIB_A2A_HEADER);
            break;
        }
        if (kind == 1) {
            calib_gemm_pt_t p;
            if ((rc = gemm_row(c, f, fname, ln, &p))) break;
            p.file = fname;
            p.line = ln;
            if (rows && (rc = order(cmp_gemm(&p, &c->gemm[c->n_gemm - 1]), fname, ln, prev_line,
                                    "model, dtype, impl, experts, tokens_per_expert")))
                break;
            c->gemm = ms_realloc(c->gemm, (size_t)(c->n_gemm + 1) * sizeof *c->gemm);
            c->gemm[c->n_gemm++] = p;
        } else {
            calib_a2a_pt_t p;
            if ((rc = a2a_row(f, fname, ln, &p))) break;
            p.file = fname;
            p.line = ln;
            if (rows && (rc = order(cmp_a2a(&p, &c->a2a[c->n_a2a - 1]), fname, ln, prev_line,
                                    "pattern, world, bytes_per_gpu")))
                break;
            c->a2a = ms_realloc(c->a2a, (size_t)(c->n_a2a + 1) * sizeof *c->a2a);
            c->a2a[c->n_a2a++] = p;
        }
        rows++;
        prev_line = ln;
    }
    free(buf);
    if (rc) return rc;
    if (!kind)
        return ms_err("%s: no header line (the first line that is not a # comment must be '%s' or "
                      "'%s')",
                      fname, CALIB_GEMM_HEADER, CALIB_A2A_HEADER);
    if (!rows) return ms_err("%s: a header but no measurements (add data rows)", fname);
    return MS_OK;
}

static void add_source(calib_t *c, const char *s) {
    size_t n = strlen(c->source);
    snprintf(c->source + n, sizeof c->source - n, "%s%s", n ? ", " : "", s);
}

int calib_load(const char *const *paths, int n, const hw_t *hw, calib_t **out) {
    *out = NULL;
    calib_t *c = calib_new();
    for (int i = 0; i < n; i++) {
        char *text;
        size_t len;
        if (ms_read_file(paths[i], &text, &len)) {
            calib_free(c);
            return MS_ERR;
        }
        int rc = calib_parse(c, text, len, paths[i]);
        free(text);
        if (rc) {
            calib_free(c);
            return MS_ERR;
        }
        add_source(c, paths[i]);
    }
    if (calib_fit(c, hw)) {
        calib_free(c);
        return MS_ERR;
    }
    *out = c;
    return MS_OK;
}

/* ---- built-in curves and the config key ---- */

typedef struct cache_ent {
    char *key;
    calib_t *c;
    struct cache_ent *next;
} cache_ent_t;
static cache_ent_t *builtin_cache, *loaded_cache;

static calib_t *cache_get(cache_ent_t *head, const char *key) {
    for (; head; head = head->next)
        if (!strcmp(head->key, key)) return head->c;
    return NULL;
}

static void cache_put(cache_ent_t **head, const char *key, calib_t *c) {
    cache_ent_t *e = ms_malloc(sizeof *e);
    *e = (cache_ent_t){ms_strdup(key), c, *head};
    *head = e;
}

static void cache_free(cache_ent_t **head) {
    while (*head) {
        cache_ent_t *e = *head;
        *head = e->next;
        free(e->key);
        calib_free(e->c);
        free(e);
    }
}

void calib_cache_clear(void) { cache_free(&loaded_cache); }

/* Parses the embedded files of hw into a new calibration and fits it
 * (all: every fit); *out NULL when none are embedded for hw. */
static int builtin_parse(const hw_t *hw, int all, calib_t **out) {
    *out = NULL;
    calib_t *c = calib_new();
    for (int i = 0; i < calib_n_blobs; i++) {
        const calib_blob_t *b = &calib_blobs[i];
        if (strcasecmp(b->hw, hw->name)) continue;
        if (calib_parse(c, b->text, b->len, b->path)) {
            calib_free(c);
            return MS_ERR;
        }
        add_source(c, b->path);
    }
    if (!c->n_files) {
        calib_free(c);
        return MS_OK;
    }
    if (fit(c, hw, all)) {
        calib_free(c);
        return MS_ERR;
    }
    char tag[sizeof c->source];
    snprintf(tag, sizeof tag, "builtin %.32s (%.440s)", hw->name, c->source);
    memcpy(c->source, tag, sizeof tag);
    *out = c;
    return MS_OK;
}

const calib_t *calib_builtin(const hw_t *hw) {
    calib_t *c = cache_get(builtin_cache, hw->name);
    if (c) return c;
    if (builtin_parse(hw, 0, &c) || !c) return NULL;
    cache_put(&builtin_cache, hw->name, c);
    return c;
}

int calib_load_builtin(const hw_t *hw, calib_t **out) {
    if (builtin_parse(hw, 1, out)) return MS_ERR;
    if (!*out)
        return ms_err("preset %s has no measurements built in (give --csv FILE, made by "
                      "models/calib/measure_experts.py or measure_a2a.py)",
                      hw->name);
    return MS_OK;
}

int calib_select(const char *setting, const hw_t *hw, const char *cfg_path, const char *where,
                 const calib_t **out) {
    /* out may point into hw (run.c passes &hw.calib): read hw first. */
    while (*setting == ' ') setting++;
    if (!strcmp(setting, "none")) {
        *out = NULL;
        return MS_OK;
    }
    if (!strcmp(setting, "default")) {
        *out = hw->calib;
        return MS_OK;
    }
    if (!*setting)
        return ms_err("%s: calibration is empty (none, default, or CSV paths separated by commas)",
                      where);
    /* Paths relative to the config's folder; the key also holds the figures
     * the curve is fitted against, so a sweep over them refits. */
    char *dup = ms_strdup(setting), *dir = NULL;
    if (cfg_path && strcmp(cfg_path, "-")) {
        char *d = ms_strdup(cfg_path);
        dir = ms_strdup(dirname(d));
        free(d);
    }
    const char *paths[64];
    char *owned[64];
    int n = 0;
    /* the name, eleven %.17g figures (at most 24 characters each) and the paths */
    size_t klen = strlen(hw->name) + 512;
    for (char *tok = strtok(dup, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        size_t l = strlen(tok);
        while (l && tok[l - 1] == ' ') tok[--l] = 0;
        if (!l) continue;
        if (n == 64) break;
        size_t need = strlen(tok) + (dir ? strlen(dir) : 0) + 2;
        owned[n] = ms_malloc(need);
        if (tok[0] == '/' || !dir) snprintf(owned[n], need, "%s", tok);
        else snprintf(owned[n], need, "%s/%s", dir, tok);
        paths[n] = owned[n];
        klen += need + 1;
        n++;
    }
    char *key = ms_malloc(klen);
    int k =
        snprintf(key, klen, "%s %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g",
                 hw->name, hw->flops_bf16, hw->flops_fp8, hw->hbm_bw, hw->scaleup_bw,
                 hw->eff_flops, hw->eff_hbm, hw->eff_scaleup, hw->scaleup_lat_ns, hw->kernel_ns,
                 hw->sms);
    for (int i = 0; i < n; i++) k += snprintf(key + k, klen - (size_t)k, "|%s", paths[i]);
    int rc = MS_OK;
    calib_t *c = cache_get(loaded_cache, key);
    if (!n) {
        rc = ms_err("%s: calibration lists no file (none, default, or CSV paths)", where);
    } else if (!c) {
        if (calib_load(paths, n, hw, &c)) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ms_err_last());
            rc = ms_err("%s: calibration: %s", where, msg);
        } else {
            cache_put(&loaded_cache, key, c);
        }
    }
    *out = rc ? NULL : c;
    for (int i = 0; i < n; i++) free(owned[i]);
    free(key);
    free(dup);
    free(dir);
    return rc;
}
