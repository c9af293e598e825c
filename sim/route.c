/* route: a strategy's route hook applied to the fitted scores.
 *
 * Count mode moves the trace's law by the hook's effect measured on the
 * same sample tokens (biased minus unbiased choices): the unbiased part is
 * the trace itself, exactly, and only the steering is estimated; a hook
 * that steers nothing moves nothing, and the draws are then replay's own. */
#include "route.h"

#include <stdlib.h>
#include <string.h>

#include "scores.h"
#include "util.h"

struct route {
    const place_ops_t *ops;
    place_state_t *ps;
    replay_t *rp;
    gate_spec_t spec;
    scores_t *sc;      /* count mode's sample tokens */
    int L, E, k, samples, every;
    int est_step;      /* step of the last estimate, -1 none */
    int est_trace;     /* trace step it was made for (mod n_steps) */
    int n_steps;       /* of the trace */
    double *delta;     /* [L][E] estimated move of the per-pair law */
    int *diff;         /* [E] choices minus unbiased choices of the sample */
};

static void hook(void *ctx, int layer, const float *scores, int *out) {
    route_t *r = ctx;
    if (r->ops->route) r->ops->route(r->ps, layer, scores, out);
    else gate_select(&r->spec, scores, out);
}

static void begin(void *ctx, int step, int n_tokens, const int *src) {
    route_t *r = ctx;
    if (r->ops->begin_step) r->ops->begin_step(r->ps, step, n_tokens, src);
}

int route_new(replay_t *rp, const gate_spec_t *spec, const place_ops_t *ops, place_state_t *ps,
              uint64_t seed, int samples, int every, route_t **out) {
    const gate_fit_t *fit = replay_fit(rp);
    if (!fit) return MS_ERR;
    route_t *r = ms_calloc(1, sizeof *r);
    if (scores_new_fit(gate_fit_copy(fit), seed ^ 0x726f757465ull /* "route" */, &r->sc)) {
        free(r);
        return MS_ERR;
    }
    r->ops = ops;
    r->ps = ps;
    r->rp = rp;
    r->spec = *spec;
    r->L = fit->n_layers;
    r->E = fit->n_experts;
    r->k = spec->top_k;
    r->samples = samples > 0 ? samples : 1;
    r->every = every > 0 ? every : 1;
    r->est_step = -1;
    r->n_steps = fit->n_steps;
    r->delta = ms_calloc((size_t)r->L * r->E, sizeof *r->delta);
    r->diff = ms_malloc((size_t)r->E * sizeof *r->diff);
    replay_set_route(rp, hook, begin, r);
    *out = r;
    return MS_OK;
}

void route_free(route_t *r) {
    if (!r) return;
    scores_free(r->sc);
    free(r->delta);
    free(r->diff);
    free(r);
}

/* The hook's move from `samples` tokens: the bias moves by at most u a
 * step, so a move a few steps old is close to today's. */
static void estimate(route_t *r, int trace_step, int step) {
    int out[TRACE_MAX_TOP_K], ref[TRACE_MAX_TOP_K];
    /* On the same trace step the new sample is averaged with the last
     * estimate: twice the samples' worth for the cost of one. */
    double keep = r->est_step >= 0 && trace_step == r->est_trace ? 0.5 : 0;
    double w = (1 - keep) / ((double)r->samples * r->k);
    scores_step(r->sc, trace_step);
    /* the sample stands for a batch of `samples` tokens, sources unknown */
    begin(r, step, r->samples, NULL);
    for (int l = 0; l < r->L; l++) {
        double *d = r->delta + (size_t)l * r->E;
        memset(r->diff, 0, (size_t)r->E * sizeof *r->diff);
        for (int t = 0; t < r->samples; t++) {
            const float *v = scores_token(r->sc, l);
            hook(r, l, v, out);
            gate_select(&r->spec, v, ref);
            for (int j = 0; j < r->k; j++) {
                if (out[j] >= 0) r->diff[out[j]]++; /* a dropped choice only leaves */
                r->diff[ref[j]]--;
            }
        }
        /* integer differences: no steering leaves the row exactly zero */
        for (int e = 0; e < r->E; e++) d[e] = keep * d[e] + w * r->diff[e];
    }
    r->est_step = step;
    r->est_trace = trace_step;
}

void route_counts(route_t *r, int trace_step, int step, double n_tokens, double *out) {
    int fs = trace_step % r->n_steps; /* per-token traces fit one step */
    if (r->est_step < 0 || step - r->est_step >= r->every || step < r->est_step ||
        fs != r->est_trace)
        estimate(r, fs, step);
    replay_counts_delta(r->rp, trace_step, n_tokens, r->delta, out);
}
