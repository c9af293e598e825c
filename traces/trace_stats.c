/* trace_stats: the skew figures `moesim trace info` prints. Contiguous
 * placement puts expert e on device e / (E / ep), SGLang's trivial location
 * and the static baseline's layout, so its PAR is what a trace costs a
 * cluster that does no balancing. */
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"
#include "util.h"

/* max / mean device load of one layer's counts under contiguous placement. */
static double contiguous_par(const double *c, int E, int ep, double *dev) {
    int per = E / ep;
    double total = 0, mx = 0;
    for (int d = 0; d < ep; d++) {
        dev[d] = 0;
        for (int j = 0; j < per; j++) dev[d] += c[d * per + j];
        total += dev[d];
        mx = ms_dmax(mx, dev[d]);
    }
    return total > 0 ? mx / (total / ep) : NAN;
}

/* Shuffles of the time axis averaged into the noise level. */
#define DRIFT_SHUFFLES 16

/* Mean over layers of the L1 distance between the per-expert distributions
 * of the steps order[0, n/2) and order[n/2, n); layers silent in either half
 * are left out (NaN when all are). a and b are [E] scratch. */
static double halves_l1(const trace_t *t, const int *order, double *a, double *b) {
    int L = t->n_layers, E = t->n_experts, n = t->n_steps, h = n / 2, used = 0;
    double sum = 0;
    for (int l = 0; l < L; l++) {
        memset(a, 0, (size_t)E * sizeof *a);
        memset(b, 0, (size_t)E * sizeof *b);
        double ta = 0, tb = 0;
        for (int i = 0; i < n; i++) {
            const double *c = trace_counts(t, order[i], l);
            double *o = i < h ? a : b;
            for (int e = 0; e < E; e++) o[e] += c[e];
        }
        for (int e = 0; e < E; e++) {
            ta += a[e];
            tb += b[e];
        }
        if (ta <= 0 || tb <= 0) continue;
        double d = 0;
        for (int e = 0; e < E; e++) d += fabs(a[e] / ta - b[e] / tb);
        sum += d;
        used++;
    }
    return used ? sum / used : NAN;
}

/* Drift: the first half of the steps against the second, beside the same
 * figure with the time axis shuffled (what sampling noise alone gives). */
static void drift(const trace_t *t, trace_stats_t *o) {
    o->drift = o->drift_noise = NAN;
    if (!t->has_steps || t->n_steps < 2) return;
    int n = t->n_steps, E = t->n_experts;
    int *order = ms_malloc((size_t)n * sizeof *order);
    double *a = ms_malloc((size_t)E * sizeof *a), *b = ms_malloc((size_t)E * sizeof *b);
    for (int i = 0; i < n; i++) order[i] = i;
    o->drift = halves_l1(t, order, a, b);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 1); /* fixed: the same trace always prints the same figure */
    double sum = 0;
    int k = 0;
    for (int i = 0; i < DRIFT_SHUFFLES; i++) {
        gsl_ran_shuffle(r, order, (size_t)n, sizeof *order);
        double d = halves_l1(t, order, a, b);
        if (!isnan(d)) {
            sum += d;
            k++;
        }
    }
    o->drift_noise = k ? sum / k : NAN;
    gsl_rng_free(r);
    free(order);
    free(a);
    free(b);
}

int trace_stats(const trace_t *t, int ep, trace_stats_t *o) {
    memset(o, 0, sizeof *o);
    if (ep < 1) return ms_err("EP size %d: give a device count >= 1 (example: --ep 32)", ep);
    int L = t->n_layers, E = t->n_experts;
    o->n_layers = L;
    o->ep = E % ep == 0 ? ep : 0;
    o->hot = ms_malloc((size_t)L * sizeof *o->hot);
    o->cold = ms_malloc((size_t)L * sizeof *o->cold);
    o->par = ms_malloc((size_t)L * sizeof *o->par);
    double *tot = ms_malloc((size_t)E * sizeof *tot), *dev = ms_malloc((size_t)ep * sizeof *dev);
    double sum_hot = 0, sum_cold = 0, sum_par = 0, sum_assign = 0;
    for (int l = 0; l < L; l++) {
        trace_layer_total(t, l, tot);
        double sum = 0, mx = tot[0], mn = tot[0];
        for (int e = 0; e < E; e++) {
            sum += tot[e];
            mx = ms_dmax(mx, tot[e]);
            mn = ms_dmin(mn, tot[e]);
        }
        if (sum <= 0) {
            o->hot[l] = o->cold[l] = o->par[l] = NAN;
            continue;
        }
        double mean = sum / E;
        o->hot[l] = mx / mean;
        o->cold[l] = mn / mean;
        o->par[l] = o->ep ? contiguous_par(tot, E, ep, dev) : NAN;
        o->active_layers++;
        sum_hot += o->hot[l];
        sum_cold += o->cold[l];
        sum_par += o->par[l];
        sum_assign += sum;
    }
    int n = o->active_layers;
    o->hot_mean = n ? sum_hot / n : NAN;
    o->cold_mean = n ? sum_cold / n : NAN;
    o->par_mean = n && o->ep ? sum_par / n : NAN;
    o->assignments = n ? sum_assign / n : 0;
    o->tokens = t->kind == TRACE_TOKENS ? t->n_tokens
                : t->top_k > 0          ? o->assignments / t->top_k
                                        : 0;
    /* A trace with a time axis is balanced step by step, so its per-step
     * PAR is the figure that matters to a static layout. */
    o->step_par_mean = o->par_mean;
    if (t->n_steps > 1 && o->ep) {
        double s_par = 0;
        long cnt = 0;
        for (int s = 0; s < t->n_steps; s++)
            for (int l = 0; l < L; l++) {
                double p = contiguous_par(trace_counts(t, s, l), E, ep, dev);
                if (!isnan(p)) {
                    s_par += p;
                    cnt++;
                }
            }
        o->step_par_mean = cnt ? s_par / cnt : NAN;
    }
    drift(t, o);
    free(tot);
    free(dev);
    return MS_OK;
}

void trace_stats_free(trace_stats_t *s) {
    free(s->hot);
    free(s->cold);
    free(s->par);
    memset(s, 0, sizeof *s);
}
