/* calib: calibration CSVs, their curves, and the model they correct. */
#include "calib.h"

#include "cost.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_interp.h>
#include <gsl/gsl_min.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

enum { GEMM_COLS = 12, A2A_COLS = 8, MAX_COLS = 16 };

/* Grid steps for the overhead search before Brent refines it. */
#define OVERHEAD_GRID 48

/* ---- the model before calibration ---- */

double calib_roofline_ns(const hw_t *hw, int hidden, int inter, int weight_bytes,
                         double tokens_per_expert) {
    /* The cost model's own roofline (models/cost.c), for an expert whose
     * input comes in the weights' dtype and output leaves in BF16, as
     * measured: the curve corrects exactly the formula the step uses. */
    moe_model_t m = {.hidden = hidden, .moe_inter = inter, .weight_bytes = weight_bytes,
                     .dispatch_bytes = weight_bytes, .combine_bytes = 2};
    return cost_expert_roofline_ns(hw, &m, tokens_per_expert);
}

double calib_predict_expert_ns(const hw_t *hw, int hidden, int inter, int weight_bytes,
                               int experts, double tokens_per_expert) {
    if (experts <= 0 || tokens_per_expert <= 0) return 0;
    return experts *
           (calib_roofline_ns(hw, hidden, inter, weight_bytes, tokens_per_expert) + hw->kernel_ns);
}

double calib_predict_a2a_ns(const hw_t *hw, double link_bytes) {
    if (link_bytes <= 0) return 0;
    return 1e9 * link_bytes / (hw->scaleup_bw * hw->eff_scaleup) + hw->scaleup_lat_ns;
}

static double gemm_before(const hw_t *hw, const calib_gemm_pt_t *p) {
    return calib_predict_expert_ns(hw, p->hidden, p->inter, p->weight_bytes, p->experts, p->tokens);
}

/* ---- curves ---- */

/* One measurement as a curve sees it. */
typedef struct {
    double x;  /* ln(size) */
    double lr; /* ln(measured / modelled) */
    int grp;   /* pattern, for the cross check */
} obs_t;

static int obs_cmp(const void *a, const void *b) {
    double d = ((const obs_t *)a)->x - ((const obs_t *)b)->x;
    return (d > 0) - (d < 0);
}

static void curve_free(calib_curve_t *cv) {
    free(cv->x);
    free(cv->f);
    memset(cv, 0, sizeof *cv);
}

/* Nodes at each distinct x of the sorted observations, leaving out those at
 * skip_x (NaN: none) and of group skip_grp (-1: none). The factor at a node
 * is the geometric mean of its ratios, so over- and under-predictions of the
 * same size weigh alike. */
static void curve_build(const obs_t *o, int n, double skip_x, int skip_grp, calib_curve_t *cv) {
    curve_free(cv);
    cv->x = ms_malloc((size_t)(n ? n : 1) * sizeof *cv->x);
    cv->f = ms_malloc((size_t)(n ? n : 1) * sizeof *cv->f);
    for (int i = 0; i < n;) {
        int j = i, k = 0;
        double sum = 0;
        for (; j < n && o[j].x == o[i].x; j++) {
            if (o[j].x == skip_x || o[j].grp == skip_grp) continue;
            sum += o[j].lr;
            k++;
        }
        if (k) {
            cv->x[cv->n] = o[i].x;
            cv->f[cv->n++] = exp(sum / k);
        }
        i = j;
    }
}

/* ---- the expert-compute fit: a per-expert overhead, and per dtype a
 * curve of measured / roofline time for what the overhead leaves ---- */

/* The points a fit uses, sorted by size. */
typedef struct {
    int n;
    const calib_gemm_pt_t **pt;
    double *x;    /* ln(tokens per expert) */
    double *roof; /* roofline time of one expert */
    double *per;  /* measured time of one expert */
    obs_t *o;     /* scratch for curve_build */
    int shapes;   /* most distinct expert shapes under one dtype's curve: with one, a
                   * curve absorbs any overhead, so the overhead is not identifiable */
    double min_per;
} gemm_set_t;

typedef struct {
    double a;            /* per-expert overhead, ns */
    calib_curve_t cv[3]; /* [0] all dtypes, [1] fp8, [2] bf16 */
} gemm_fit_t;

static const calib_curve_t *fit_curve(const gemm_fit_t *f, int wb) {
    return wb >= 1 && wb <= 2 && f->cv[wb].n ? &f->cv[wb] : &f->cv[0];
}

static double fit_pred(const gemm_fit_t *f, int wb, int experts, double x, double roof) {
    return experts * (roof * calib_curve_at(fit_curve(f, wb), x) + f->a);
}

static int pt_cmp(const void *a, const void *b) {
    double d = (*(const calib_gemm_pt_t *const *)a)->tokens -
               (*(const calib_gemm_pt_t *const *)b)->tokens;
    return (d > 0) - (d < 0);
}

/* Points of impl, without those of size skip_tokens (<= 0: none) or of
 * model skip_model (NULL: none). */
static void set_build(const calib_t *c, const char *impl, double skip_tokens,
                      const char *skip_model, gemm_set_t *s) {
    memset(s, 0, sizeof *s);
    size_t room = (size_t)(c->n_gemm ? c->n_gemm : 1);
    s->pt = ms_malloc(room * sizeof *s->pt);
    for (int i = 0; i < c->n_gemm; i++) {
        const calib_gemm_pt_t *p = &c->gemm[i];
        if (strcmp(p->impl, impl) || p->tokens == skip_tokens ||
            (skip_model && !strcmp(p->model, skip_model)))
            continue;
        s->pt[s->n++] = p;
    }
    qsort(s->pt, (size_t)s->n, sizeof *s->pt, pt_cmp);
    s->x = ms_malloc(room * sizeof *s->x);
    s->roof = ms_malloc(room * sizeof *s->roof);
    s->per = ms_malloc(room * sizeof *s->per);
    s->o = ms_malloc(room * sizeof *s->o);
    double sizes[3][8];
    int n_sizes[3] = {0};
    s->min_per = INFINITY;
    for (int i = 0; i < s->n; i++) {
        const calib_gemm_pt_t *p = s->pt[i];
        s->x[i] = log(p->tokens);
        s->roof[i] = calib_roofline_ns(&c->hw, p->hidden, p->inter, p->weight_bytes, p->tokens);
        s->per[i] = p->time_ns / p->experts;
        s->min_per = ms_dmin(s->min_per, s->per[i]);
        double sz = (double)p->hidden * p->inter;
        int wb = p->weight_bytes, seen = 0;
        for (int k = 0; k < n_sizes[wb] && !seen; k++) seen = sizes[wb][k] == sz;
        if (!seen && n_sizes[wb] < 8) sizes[wb][n_sizes[wb]++] = sz;
        s->shapes = ms_imax(s->shapes, n_sizes[wb]);
    }
}

static void set_free(gemm_set_t *s) {
    free(s->pt);
    free(s->x);
    free(s->roof);
    free(s->per);
    free(s->o);
}

static void fit_free(gemm_fit_t *f) {
    for (int i = 0; i < 3; i++) curve_free(&f->cv[i]);
}

/* The curves for overhead a. What the overhead leaves is floored at 5% of
 * the measurement so that a large trial overhead cannot take a log of zero. */
static void fit_curves(const gemm_set_t *s, double a, gemm_fit_t *f) {
    f->a = a;
    for (int wb = 0; wb <= 2; wb++) {
        int k = 0;
        for (int i = 0; i < s->n; i++)
            if (!wb || s->pt[i]->weight_bytes == wb)
                s->o[k++] =
                    (obs_t){s->x[i], log(ms_dmax(s->per[i] - a, 0.05 * s->per[i]) / s->roof[i]), 0};
        curve_build(s->o, k, NAN, -1, &f->cv[wb]);
    }
}

static double set_mape(const gemm_set_t *s, const gemm_fit_t *f) {
    double sum = 0;
    for (int i = 0; i < s->n; i++) {
        const calib_gemm_pt_t *p = s->pt[i];
        sum += fabs(fit_pred(f, p->weight_bytes, p->experts, s->x[i], s->roof[i]) - p->time_ns) /
               p->time_ns;
    }
    return s->n ? 100.0 * sum / s->n : 0;
}

typedef struct {
    const gemm_set_t *s;
    gemm_fit_t *f;
} objective_t;

static double objective(double a, void *arg) {
    objective_t *o = arg;
    fit_curves(o->s, a, o->f);
    return set_mape(o->s, o->f);
}

/* Chooses the overhead that minimises the error (a grid, then Brent), or
 * takes fallback_ns when one shape per dtype cannot tell overhead from
 * bandwidth apart; then the curves for it. */
static void gemm_fit(const gemm_set_t *s, double fallback_ns, gemm_fit_t *f) {
    memset(f, 0, sizeof *f);
    if (s->n == 0 || s->shapes < 2) {
        fit_curves(s, fallback_ns, f);
        return;
    }
    objective_t ob = {s, f};
    double amax = 0.95 * s->min_per, best = 0, best_v = INFINITY, v[OVERHEAD_GRID + 1];
    int bk = 0;
    for (int k = 0; k <= OVERHEAD_GRID; k++) {
        v[k] = objective(amax * k / OVERHEAD_GRID, &ob);
        if (v[k] < best_v) best_v = v[k], bk = k;
    }
    best = amax * bk / OVERHEAD_GRID;
    if (bk > 0 && bk < OVERHEAD_GRID && v[bk] < v[bk - 1] && v[bk] < v[bk + 1]) {
        gsl_function fn = {objective, &ob};
        gsl_min_fminimizer *m = gsl_min_fminimizer_alloc(gsl_min_fminimizer_brent);
        gsl_error_handler_t *old = gsl_set_error_handler_off();
        if (gsl_min_fminimizer_set_with_values(m, &fn, best, v[bk], amax * (bk - 1) / OVERHEAD_GRID,
                                               v[bk - 1], amax * (bk + 1) / OVERHEAD_GRID,
                                               v[bk + 1]) == GSL_SUCCESS) {
            for (int it = 0; it < 60; it++) {
                if (gsl_min_fminimizer_iterate(m) != GSL_SUCCESS) break;
                double lo = gsl_min_fminimizer_x_lower(m), hi = gsl_min_fminimizer_x_upper(m);
                if (gsl_min_test_interval(lo, hi, 1.0, 0.0) == GSL_SUCCESS) break;
            }
            if (gsl_min_fminimizer_f_minimum(m) < best_v) best = gsl_min_fminimizer_x_minimum(m);
        }
        gsl_set_error_handler(old);
        gsl_min_fminimizer_free(m);
    }
    fit_curves(s, best, f);
}

double calib_expert_ns(const hw_t *hw, int hidden, int inter, int weight_bytes, int experts,
                       double tokens_per_expert) {
    const calib_t *c = hw->calib;
    if (!c || !c->n_gemm) return calib_predict_expert_ns(hw, hidden, inter, weight_bytes, experts,
                                                         tokens_per_expert);
    if (experts <= 0 || tokens_per_expert <= 0) return 0;
    return experts * (calib_roofline_ns(hw, hidden, inter, weight_bytes, tokens_per_expert) *
                          calib_gemm_factor_wb(c, weight_bytes, tokens_per_expert) +
                      c->gemm_overhead_ns);
}

double calib_a2a_ns(const hw_t *hw, double link_bytes) {
    return calib_predict_a2a_ns(hw, link_bytes) * calib_a2a_factor(hw->calib, link_bytes);
}

/* Index of name in names[0..*n), added when new. */
static int group_of(const char *name, const char **names, int *n) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(names[i], name)) return i;
    names[*n] = name;
    return (*n)++;
}

/* Sorted observations of the all-to-all points; group g is pattern names[g]. */
static obs_t *a2a_obs(const calib_t *c, int *n_out, const char **names, int *n_grp) {
    obs_t *o = ms_malloc((size_t)(c->n_a2a ? c->n_a2a : 1) * sizeof *o);
    int g = 0;
    for (int i = 0; i < c->n_a2a; i++) {
        const calib_a2a_pt_t *p = &c->a2a[i];
        o[i] = (obs_t){log(p->link_bytes),
                       log(p->time_ns / calib_predict_a2a_ns(&c->hw, p->link_bytes)),
                       group_of(p->pattern, names, &g)};
    }
    qsort(o, (size_t)c->n_a2a, sizeof *o, obs_cmp);
    *n_out = c->n_a2a;
    *n_grp = g;
    return o;
}

int calib_fit(calib_t *c, const hw_t *hw) {
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
    gemm_set_t s;
    gemm_fit_t f;
    set_build(c, c->gemm_impl, 0, NULL, &s);
    gemm_fit(&s, c->hw.kernel_ns, &f);
    set_free(&s);
    c->gemm_overhead_ns = f.a;
    curve_free(&c->gemm_all);
    for (int i = 1; i <= 2; i++) curve_free(&c->gemm_wb[i]);
    c->gemm_all = f.cv[0];
    c->gemm_wb[1] = f.cv[1];
    c->gemm_wb[2] = f.cv[2];
    int n, g;
    const char **names = ms_malloc((size_t)(c->n_a2a ? c->n_a2a : 1) * sizeof *names);
    obs_t *o = a2a_obs(c, &n, names, &g);
    curve_build(o, n, NAN, -1, &c->a2a_all);
    free(o);
    free(names);
    return MS_OK;
}

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

/* Does point p belong to the evaluated set? */
static int gemm_sel(const calib_gemm_pt_t *p, const char *impl, int wb) {
    return !strcmp(p->impl, impl) && (!wb || p->weight_bytes == wb);
}

/* Does a selected point before i have point i's size (or model)? */
static int seen_before(const calib_t *c, int i, const char *impl, int wb, int by_model) {
    for (int j = 0; j < i; j++) {
        const calib_gemm_pt_t *q = &c->gemm[j];
        if (gemm_sel(q, impl, wb) &&
            (by_model ? !strcmp(q->model, c->gemm[i].model) : q->tokens == c->gemm[i].tokens))
            return 1;
    }
    return 0;
}

/* Adds the errors of the selected points of size tokens (> 0) or of model
 * (non-NULL) under a fit made without them. When what is left cannot
 * identify the overhead (one model left), it keeps the full fit's: the
 * check is then of the curves' transfer between shapes. */
static void held_out(const calib_t *c, const char *impl, int wb, double tokens, const char *model,
                     double *sum, int *n) {
    gemm_set_t s;
    gemm_fit_t f;
    set_build(c, c->gemm_impl, tokens, model, &s);
    if (s.n) {
        gemm_fit(&s, c->gemm_overhead_ns, &f);
        for (int i = 0; i < c->n_gemm; i++) {
            const calib_gemm_pt_t *p = &c->gemm[i];
            if (!gemm_sel(p, impl, wb) || (tokens > 0 && p->tokens != tokens) ||
                (model && strcmp(p->model, model)))
                continue;
            double roof =
                calib_roofline_ns(&c->hw, p->hidden, p->inter, p->weight_bytes, p->tokens);
            *sum +=
                ape(fit_pred(&f, p->weight_bytes, p->experts, log(p->tokens), roof), p->time_ns);
            (*n)++;
        }
        fit_free(&f);
    }
    set_free(&s);
}

int calib_eval_gemm(const calib_t *c, const char *impl, int weight_bytes, calib_err_t *out) {
    if (!impl) impl = c->gemm_impl;
    memset(out, 0, sizeof *out);
    gemm_fit_t f = {c->gemm_overhead_ns, {c->gemm_all, {0}, {0}}};
    f.cv[1] = c->gemm_wb[1];
    f.cv[2] = c->gemm_wb[2];
    for (int i = 0; i < c->n_gemm; i++) {
        const calib_gemm_pt_t *p = &c->gemm[i];
        if (!gemm_sel(p, impl, weight_bytes)) continue;
        double roof = calib_roofline_ns(&c->hw, p->hidden, p->inter, p->weight_bytes, p->tokens);
        out->before += ape(gemm_before(&c->hw, p), p->time_ns);
        out->after +=
            ape(fit_pred(&f, p->weight_bytes, p->experts, log(p->tokens), roof), p->time_ns);
        out->n++;
    }
    /* Held out: each size, then each model, left out of the fit in turn
     * (only for the implementation the curves are fitted on). */
    double loo = 0, cross = 0;
    int loo_n = 0, cross_n = 0, models = 0;
    int fitted = out->n && !strcmp(impl, c->gemm_impl);
    for (int i = 0; fitted && i < c->n_gemm; i++) {
        const calib_gemm_pt_t *p = &c->gemm[i];
        if (!gemm_sel(p, impl, weight_bytes)) continue;
        if (!seen_before(c, i, impl, weight_bytes, 0))
            held_out(c, impl, weight_bytes, p->tokens, NULL, &loo, &loo_n);
        models += !seen_before(c, i, impl, weight_bytes, 1);
    }
    for (int i = 0; fitted && models > 1 && i < c->n_gemm; i++)
        if (gemm_sel(&c->gemm[i], impl, weight_bytes) && !seen_before(c, i, impl, weight_bytes, 1))
            held_out(c, impl, weight_bytes, 0, c->gemm[i].model, &cross, &cross_n);
    err_finish(out, loo, loo_n, cross, cross_n);
    return MS_OK;
}

int calib_eval_a2a(const calib_t *c, const char *pattern, calib_err_t *out) {
    memset(out, 0, sizeof *out);
    int no, ng;
    const char **names = ms_malloc((size_t)(c->n_a2a ? c->n_a2a : 1) * sizeof *names);
    obs_t *o = a2a_obs(c, &no, names, &ng);
    calib_curve_t tmp = {0};
    double loo = 0, cross = 0;
    int loo_n = 0, cross_n = 0;
    for (int i = 0; i < c->n_a2a; i++) {
        const calib_a2a_pt_t *p = &c->a2a[i];
        if (pattern && strcmp(p->pattern, pattern)) continue;
        double pred = calib_predict_a2a_ns(&c->hw, p->link_bytes), x = log(p->link_bytes);
        out->before += ape(pred, p->time_ns);
        out->after += ape(pred * calib_curve_at(&c->a2a_all, x), p->time_ns);
        out->n++;
        curve_build(o, no, x, -1, &tmp);
        loo += ape(pred * calib_curve_at(&tmp, x), p->time_ns);
        loo_n++;
        if (ng > 1) {
            int grp = 0;
            while (strcmp(names[grp], p->pattern)) grp++;
            curve_build(o, no, NAN, grp, &tmp);
            cross += ape(pred * calib_curve_at(&tmp, x), p->time_ns);
            cross_n++;
        }
    }
    curve_free(&tmp);
    free(o);
    free(names);
    err_finish(out, loo, loo_n, cross, cross_n);
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
    curve_free(&c->gemm_all);
    for (int i = 0; i < 3; i++) curve_free(&c->gemm_wb[i]);
    curve_free(&c->a2a_all);
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

const calib_t *calib_builtin(const hw_t *hw) {
    calib_t *c = cache_get(builtin_cache, hw->name);
    if (c) return c;
    c = calib_new();
    for (int i = 0; i < calib_n_blobs; i++) {
        const calib_blob_t *b = &calib_blobs[i];
        if (strcasecmp(b->hw, hw->name)) continue;
        if (calib_parse(c, b->text, b->len, b->path)) {
            calib_free(c);
            return NULL;
        }
        add_source(c, b->path);
    }
    if (!c->n_files) {
        calib_free(c);
        return NULL;
    }
    if (calib_fit(c, hw)) {
        calib_free(c);
        return NULL;
    }
    char tag[sizeof c->source];
    snprintf(tag, sizeof tag, "builtin %.32s (%.440s)", hw->name, c->source);
    memcpy(c->source, tag, sizeof tag);
    cache_put(&builtin_cache, hw->name, c);
    return c;
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
    size_t klen = 512;
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
        snprintf(key, klen, "%s %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g", hw->name,
                 hw->flops_bf16, hw->flops_fp8, hw->hbm_bw, hw->scaleup_bw, hw->eff_flops,
                 hw->eff_hbm, hw->eff_scaleup, hw->scaleup_lat_ns, hw->kernel_ns);
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
