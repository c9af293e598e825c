/* trace_stats: the skew figures `moesim trace info` prints. Contiguous
 * placement puts expert e on device e / (E / ep), SGLang's trivial location
 * and the static baseline's layout, so its PAR is what a trace costs a
 * cluster that does no balancing. */
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
