/* trace_gen: the synthetic generator.
 *
 * Each layer ranks its experts by a random permutation (its own hot set);
 * the expert of rank r weighs (r+1)^-skew. A token picks top_k distinct
 * experts, so no expert can be chosen by more than every token: for counts
 * the weights become inclusion probabilities capped at 1 (water-filling,
 * sum = top_k) and a step's token-expert pairs are drawn as one multinomial
 * over them; per-token routing draws each token's experts in sequence
 * without replacement. Drift swaps random ranks between steps; a phase
 * change switches tokens per step and skew (and optionally the hot sets);
 * locality multiplies the weights of a source device's own experts (the
 * block a contiguous placement gives that device). One mt19937 stream,
 * used in a fixed order, makes it deterministic. */
#include "trace_gen.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trace_int.h"
#include "util.h"

void trace_gen_defaults(trace_gen_params_t *p) {
    *p = (trace_gen_params_t){.n_layers = 58, .n_experts = 256, .top_k = 8, .n_steps = 64,
                              .tokens = 4096, .skew = 0.45, .drift = 0, .phase_step = -1,
                              .phase_tokens = 0, .phase_skew = -1, .phase_reshuffle = 0,
                              .n_src = 0, .locality = 1, .per_token = 0, .seed = 1};
}

static int check(const trace_gen_params_t *p, const char *name) {
#define NEED(c, ...) \
    if (!(c)) return ms_err(__VA_ARGS__)
    NEED(p->n_layers >= 1 && p->n_layers <= TRACE_MAX_LAYERS, "%s: layers %d (give 1 to %d)", name,
         p->n_layers, TRACE_MAX_LAYERS);
    NEED(p->n_experts >= 1 && p->n_experts <= TRACE_MAX_EXPERTS, "%s: experts %d (give 1 to %d)",
         name, p->n_experts, TRACE_MAX_EXPERTS);
    NEED(p->top_k >= 1 && p->top_k <= ms_imin(TRACE_MAX_TOP_K, p->n_experts),
         "%s: top-k %d (give 1 to %d, at most the experts)", name, p->top_k,
         ms_imin(TRACE_MAX_TOP_K, p->n_experts));
    NEED(p->n_steps >= 1, "%s: steps %d (give at least 1)", name, p->n_steps);
    NEED(p->tokens >= 1, "%s: tokens %d per step (give at least 1)", name, p->tokens);
    NEED(isfinite(p->skew) && p->skew >= 0 && p->skew <= 20, "%s: skew %g (give 0 to 20)", name,
         p->skew);
    NEED(p->drift >= 0 && p->drift <= 1, "%s: drift %g (a fraction per step: 0 to 1)", name,
         p->drift);
    NEED(p->phase_step >= -1 && p->phase_step < p->n_steps,
         "%s: phase step %d (give a step in [0, %d), or -1 for one phase)", name, p->phase_step,
         p->n_steps);
    NEED(p->phase_tokens >= 0, "%s: phase tokens %d (0 = as phase 1)", name, p->phase_tokens);
    NEED(p->phase_skew == -1 || (isfinite(p->phase_skew) && p->phase_skew >= 0 &&
                                 p->phase_skew <= 20),
         "%s: phase skew %g (give 0 to 20, or -1 = as phase 1)", name, p->phase_skew);
    NEED(p->n_src >= 0 && p->n_src <= 4096, "%s: sources %d (give 0 to 4096)", name, p->n_src);
    NEED(isfinite(p->locality) && p->locality > 0 && p->locality <= 1e6,
         "%s: locality %g (a weight factor > 0; 1 = none)", name, p->locality);
#undef NEED
    int64_t tok2 = p->phase_tokens ? p->phase_tokens : p->tokens;
    int64_t ph = p->phase_step < 0 ? p->n_steps : p->phase_step;
    int64_t total = ph * p->tokens + (p->n_steps - ph) * tok2;
    if (trace_dims_ok(name, p->n_steps, p->n_layers, p->n_experts)) return MS_ERR;
    if (p->per_token && (total > INT32_MAX || trace_dims_ok(name, total, p->n_layers, p->top_k)))
        return ms_err("%s: %lld tokens x %d layers of per-token routing is too large (fewer "
                      "steps or tokens, or counts)", name, (long long)total, p->n_layers);
    if (trace_src_ok(name, p->n_steps, p->n_layers, p->n_experts, p->n_src)) return MS_ERR;
    return MS_OK;
}

/* Inclusion probabilities pi[e] = min(1, c w[e]) with sum k. */
static void waterfill(const double *w, int E, int k, double *pi, unsigned char *cap) {
    memset(cap, 0, (size_t)E);
    int n_cap = 0;
    double c = 0;
    for (;;) {
        double rest = 0;
        for (int e = 0; e < E; e++)
            if (!cap[e]) rest += w[e];
        if (n_cap >= k || rest <= 0) break;
        c = (k - n_cap) / rest;
        int changed = 0;
        for (int e = 0; e < E; e++)
            if (!cap[e] && c * w[e] >= 1) {
                cap[e] = 1;
                n_cap++;
                changed = 1;
            }
        if (!changed) break;
    }
    for (int e = 0; e < E; e++) pi[e] = cap[e] ? 1 : c * w[e];
}

static int chosen(const int16_t *v, int n, int e) {
    for (int i = 0; i < n; i++)
        if (v[i] == e) return 1;
    return 0;
}

/* k distinct experts in proportion to w (all > 0), drawn in sequence: a
 * repeat is redrawn, which is sampling without replacement; when repeats
 * keep coming (the rest weighs almost nothing) an explicit draw over the
 * experts not yet chosen ends it. */
static void draw_token(gsl_rng *r, const gsl_ran_discrete_t *tab, const double *w, int E, int k,
                       int16_t *v) {
    for (int j = 0; j < k; j++) {
        int e = -1;
        for (int tries = 0; tries < 64 && e < 0; tries++) {
            int x = (int)gsl_ran_discrete(r, tab);
            if (!chosen(v, j, x)) e = x;
        }
        if (e < 0) {
            double rest = 0;
            for (int x = 0; x < E; x++)
                if (!chosen(v, j, x)) rest += w[x];
            double u = gsl_rng_uniform(r) * rest;
            for (int x = 0; x < E && e < 0; x++)
                if (!chosen(v, j, x) && (u -= w[x]) < 0) e = x;
            for (int x = E - 1; x >= 0 && e < 0; x--) /* rounding left u >= 0 */
                if (!chosen(v, j, x)) e = x;
        }
        v[j] = (int16_t)e;
    }
}

int trace_gen(const trace_gen_params_t *p, const char *name, trace_t **out) {
    if (check(p, name)) return MS_ERR;
    int L = p->n_layers, E = p->n_experts, k = p->top_k, T = p->n_steps;
    int Q = p->n_src > 0 ? p->n_src : 1;
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, (unsigned long)p->seed);

    trace_t *t = trace_new(name, "synthetic", p->per_token ? TRACE_TOKENS : TRACE_COUNTS, T, L, E);
    t->has_steps = 1;
    t->top_k = k;
    t->n_src = p->n_src;
    if (p->n_src && !p->per_token)
        t->src_counts = ms_calloc((size_t)T * L * Q * E, sizeof *t->src_counts);
    int tok2 = p->phase_tokens ? p->phase_tokens : p->tokens;
    double skew2 = p->phase_skew >= 0 ? p->phase_skew : p->skew;
    if (p->per_token) {
        int64_t total = 0;
        for (int s = 0; s < T; s++) total += p->phase_step >= 0 && s >= p->phase_step ? tok2 : p->tokens;
        t->n_tokens = (int)total;
        t->tok_step = ms_malloc((size_t)total * sizeof *t->tok_step);
        t->tok_src = p->n_src ? ms_malloc((size_t)total * sizeof *t->tok_src) : NULL;
        t->tok_experts = ms_malloc((size_t)total * L * k * sizeof *t->tok_experts);
        t->tok_scores = ms_malloc((size_t)total * L * k * sizeof *t->tok_scores);
    }

    size_t *perm = ms_malloc((size_t)L * E * sizeof *perm); /* [l][rank] -> expert */
    for (int l = 0; l < L; l++) {
        size_t *pl = perm + (size_t)l * E;
        for (int e = 0; e < E; e++) pl[e] = (size_t)e;
        gsl_ran_shuffle(rng, pl, (size_t)E, sizeof *pl);
    }
    double *w = ms_malloc((size_t)E * sizeof *w), *wq = ms_malloc((size_t)E * sizeof *wq);
    double *pi = ms_malloc((size_t)E * sizeof *pi);
    unsigned char *cap = ms_malloc((size_t)E);
    unsigned int *draw = ms_malloc((size_t)E * sizeof *draw);
    int tok = 0;
    for (int s = 0; s < T; s++) {
        int phase2 = p->phase_step >= 0 && s >= p->phase_step;
        int n_tok = phase2 ? tok2 : p->tokens;
        double skew = phase2 ? skew2 : p->skew;
        if (s == p->phase_step && p->phase_reshuffle)
            for (int l = 0; l < L; l++)
                gsl_ran_shuffle(rng, perm + (size_t)l * E, (size_t)E, sizeof *perm);
        if (s > 0 && p->drift > 0)
            for (int l = 0; l < L; l++) {
                size_t *pl = perm + (size_t)l * E;
                unsigned int swaps = gsl_ran_poisson(rng, p->drift * E / 2);
                for (unsigned int i = 0; i < swaps; i++) {
                    size_t a = gsl_rng_uniform_int(rng, (unsigned long)E);
                    size_t b = gsl_rng_uniform_int(rng, (unsigned long)E);
                    size_t x = pl[a];
                    pl[a] = pl[b];
                    pl[b] = x;
                }
            }
        int first_tok = tok;
        for (int l = 0; l < L; l++) {
            const size_t *pl = perm + (size_t)l * E;
            for (int r = 0; r < E; r++) w[pl[r]] = pow(r + 1.0, -skew);
            tok = first_tok;
            for (int q = 0; q < Q; q++) {
                int nq = n_tok / Q + (q < n_tok % Q);
                for (int e = 0; e < E; e++)
                    wq[e] = (int64_t)e * Q / E == q ? w[e] * p->locality : w[e];
                if (!p->per_token) {
                    waterfill(wq, E, k, pi, cap);
                    gsl_ran_multinomial(rng, (size_t)E, (unsigned int)nq * (unsigned int)k, pi,
                                        draw);
                    double *c = t->counts + ((size_t)s * L + l) * E;
                    double *sc = t->src_counts ? t->src_counts + (((size_t)s * L + l) * Q + q) * E
                                               : NULL;
                    for (int e = 0; e < E; e++) {
                        c[e] += draw[e];
                        if (sc) sc[e] = draw[e];
                    }
                    continue;
                }
                gsl_ran_discrete_t *tab = gsl_ran_discrete_preproc((size_t)E, wq);
                for (int i = 0; i < nq; i++, tok++) {
                    int16_t *v = t->tok_experts + ((size_t)tok * L + l) * k;
                    float *sv = t->tok_scores + ((size_t)tok * L + l) * k;
                    draw_token(rng, tab, wq, E, k, v);
                    double sum = 0;
                    for (int j = 0; j < k; j++) sum += wq[v[j]];
                    for (int j = 0; j < k; j++) sv[j] = (float)(wq[v[j]] / sum);
                    t->tok_step[tok] = s;
                    if (t->tok_src) t->tok_src[tok] = q;
                }
                gsl_ran_discrete_free(tab);
            }
        }
    }
    if (p->per_token) trace_count_tokens(t);
    free(perm);
    free(w);
    free(wq);
    free(pi);
    free(cap);
    free(draw);
    gsl_rng_free(rng);
    *out = t;
    return MS_OK;
}
