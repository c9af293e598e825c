/* route: a strategy's route hook applied to generated scores. */
#include "route.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <stdlib.h>
#include <string.h>

#include "scores.h"
#include "util.h"

struct route {
    const place_ops_t *ops;
    place_state_t *ps;
    scores_t *sc;
    int L, E, k, samples, every;
    int est_step;      /* step of the last estimate, -1 none */
    int est_trace;     /* trace step it was made for (mod n_steps) */
    int n_steps;       /* of the trace */
    double *law;       /* [L][E] estimated choice probabilities */
    double *cond;      /* [L][E] their conditional form for replay_multinomial */
    unsigned int *draw;
    gsl_rng *rng;      /* count mode's multinomial stream */
    route_step_t own;  /* the strategy's routing: its own copy, never the replay's */
    size_t own_cap;    /* int16_t slots allocated in own.expert */
};

int route_new(const trace_t *t, int top_k, const place_ops_t *ops, place_state_t *ps,
              uint64_t seed, int samples, int every, route_t **out) {
    route_t *r = ms_calloc(1, sizeof *r);
    if (scores_new(t, top_k, seed, &r->sc)) {
        free(r);
        return MS_ERR;
    }
    r->ops = ops;
    r->ps = ps;
    r->L = t->n_layers;
    r->E = t->n_experts;
    r->k = top_k;
    r->samples = samples > 0 ? samples : 1;
    r->every = every > 0 ? every : 1;
    r->est_step = -1;
    r->n_steps = t->n_steps;
    r->law = ms_calloc((size_t)r->L * r->E, sizeof *r->law);
    r->cond = ms_malloc((size_t)r->L * r->E * sizeof *r->cond);
    r->draw = ms_malloc((size_t)r->E * sizeof *r->draw);
    r->rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r->rng, (unsigned long)(seed ^ 0x726f757465ull));
    *out = r;
    return MS_OK;
}

void route_free(route_t *r) {
    if (!r) return;
    scores_free(r->sc);
    free(r->law);
    free(r->cond);
    free(r->draw);
    gsl_rng_free(r->rng);
    free(r->own.expert);
    free(r);
}

const route_step_t *route_tokens(route_t *r, const route_step_t *in, int step) {
    size_t n = (size_t)in->n_layers * in->n_tokens * in->top_k;
    if (n > r->own_cap) {
        r->own.expert = ms_realloc(r->own.expert, n * sizeof *r->own.expert);
        r->own_cap = n;
    }
    int16_t *mine = r->own.expert;
    r->own = *in;
    r->own.expert = mine;
    route_step_t *rt = &r->own;
    int k = rt->top_k, out[32];
    scores_step(r->sc, step);
    for (int l = 0; l < rt->n_layers; l++)
        for (int t = 0; t < rt->n_tokens; t++) {
            r->ops->route(r->ps, l, scores_token(r->sc, l), out);
            int16_t *ex = rt->expert + ((size_t)l * rt->n_tokens + t) * k;
            for (int j = 0; j < k; j++) ex[j] = (int16_t)out[j];
        }
    return rt;
}

/* The biased law from `samples` routed tokens: the bias moves by at most u
 * a step, so a law a few steps old is close to today's. */
static void estimate(route_t *r, int trace_step, int step) {
    int out[32];
    /* On the same trace step the new sample is averaged with the last
     * estimate: twice the samples' worth for the cost of one. */
    double keep = r->est_step >= 0 && trace_step == r->est_trace ? 0.5 : 0;
    scores_step(r->sc, trace_step);
    for (int l = 0; l < r->L; l++) {
        double *p = r->law + (size_t)l * r->E;
        for (int e = 0; e < r->E; e++) p[e] *= keep;
        for (int t = 0; t < r->samples; t++) {
            r->ops->route(r->ps, l, scores_token(r->sc, l), out);
            for (int j = 0; j < r->k; j++) p[out[j]] += 1 - keep;
        }
    }
    for (int l = 0; l < r->L; l++)
        replay_cond_probs(r->E, r->law + (size_t)l * r->E, r->cond + (size_t)l * r->E);
    r->est_step = step;
    r->est_trace = trace_step;
}

void route_counts(route_t *r, int trace_step, int step, double n_tokens, double *out) {
    trace_step %= r->n_steps;
    if (r->est_step < 0 || step - r->est_step >= r->every || step < r->est_step ||
        trace_step != r->est_trace)
        estimate(r, trace_step, step);
    unsigned int pairs = (unsigned int)(n_tokens * r->k + 0.5);
    for (int l = 0; l < r->L; l++) {
        replay_multinomial(r->rng, r->E, pairs, r->cond + (size_t)l * r->E, r->draw);
        for (int e = 0; e < r->E; e++) out[(size_t)l * r->E + e] = r->draw[e];
    }
}
