/* calib_curve: lookups in a fitted calibration: piecewise-linear in
 * ln(tokens per expert) or ln(bytes), clamped at the measured ends. */
#include "calib_curve.h"

#include <gsl/gsl_interp.h>
#include <math.h>
#include <stddef.h>

double calib_curve_at(const calib_curve_t *cv, double x) {
    if (!cv || cv->n == 0) return 1.0;
    if (x <= cv->x[0]) return cv->f[0];
    if (x >= cv->x[cv->n - 1]) return cv->f[cv->n - 1];
    size_t i = gsl_interp_bsearch(cv->x, x, 0, (size_t)cv->n - 1);
    double t = (x - cv->x[i]) / (cv->x[i + 1] - cv->x[i]);
    return cv->f[i] + t * (cv->f[i + 1] - cv->f[i]);
}

double calib_gemm_factor(const calib_t *c, double tokens_per_expert) {
    if (!c || tokens_per_expert <= 0) return 1.0;
    return calib_curve_at(&c->gemm_all, log(tokens_per_expert));
}

double calib_gemm_factor_wb(const calib_t *c, int weight_bytes, double tokens_per_expert) {
    if (!c || tokens_per_expert <= 0) return 1.0;
    const calib_curve_t *cv = weight_bytes >= 1 && weight_bytes <= 2 && c->gemm_wb[weight_bytes].n
                                  ? &c->gemm_wb[weight_bytes]
                                  : &c->gemm_all;
    return calib_curve_at(cv, log(tokens_per_expert));
}

double calib_gemm_overhead_ns(const calib_t *c, double fallback_ns) {
    return c && c->n_gemm ? c->gemm_overhead_ns : fallback_ns;
}

double calib_a2a_factor(const calib_t *c, double bytes) {
    if (!c || bytes <= 0) return 1.0;
    return calib_curve_at(&c->a2a_all, log(bytes));
}

