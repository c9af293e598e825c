/* phold: PHOLD on the moesim engine. */
#include "phold.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>

#include "util.h"

struct phold {
    int n_lps, pending;
    int64_t lookahead_ns;
    double mean_ns;
    gsl_rng *rng;
    uint64_t *count;  /* [n_lps] events handled */
    uint64_t left;    /* events still to run */
};

phold_t *phold_new(int n_lps, int pending, int64_t lookahead_ns, double mean_ns, uint64_t seed) {
    phold_t *p = ms_calloc(1, sizeof *p);
    p->n_lps = n_lps;
    p->pending = pending;
    p->lookahead_ns = lookahead_ns;
    p->mean_ns = mean_ns;
    p->rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(p->rng, (unsigned long)seed);
    p->count = ms_calloc((size_t)n_lps, sizeof *p->count);
    return p;
}

void phold_free(phold_t *p) {
    if (!p) return;
    gsl_rng_free(p->rng);
    free(p->count);
    free(p);
}

void phold_next(phold_t *p, int64_t now_ns, int64_t *at_ns, int *lp) {
    *at_ns = now_ns + p->lookahead_ns + llround(gsl_ran_exponential(p->rng, p->mean_ns));
    *lp = (int)gsl_rng_uniform_int(p->rng, (unsigned long)p->n_lps);
}

static void ev(eng_t *eng, void *ctx, int64_t lp) {
    phold_t *p = ctx;
    p->count[lp]++;
    if (--p->left == 0) {
        eng_stop(eng);
        return;
    }
    int64_t at;
    int dst;
    phold_next(p, eng_now(eng), &at, &dst);
    eng_schedule(eng, at, ev, p, dst);
}

uint64_t phold_run(phold_t *p, eng_t *eng, uint64_t events) {
    p->left = events;
    for (int i = 0; i < p->pending; i++) {
        int64_t at;
        int dst;
        phold_next(p, eng_now(eng), &at, &dst);
        eng_schedule(eng, at, ev, p, dst);
    }
    return eng_run_until(eng, ENG_NEVER);
}

const uint64_t *phold_counts(const phold_t *p) { return p->count; }
