/* replay: per-step routing from a trace.
 *
 * Per-token traces are copied, not sampled: only a token that lacks a
 * layer in the recording takes that layer's experts from scores fitted to
 * the layer's whole-trace counts.
 *
 * Count traces route every token through fitted scores and the limited
 * top-k. Drawing k distinct experts one after the other in proportion to
 * the counts, as replay did before, flattens the hottest experts (gate.c
 * says why); the fit does not. The fit is made (or read from its cache) on
 * the first token-mode step, so count mode, which draws its multinomials
 * straight from the counts, never pays for it. */
#include "replay.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scores.h"
#include "util.h"

struct replay {
    double *cond;                 /* [n_layers][n_experts] conditional probabilities of
                                   * trace step cond_step, for count mode */
    int cond_step;
    const trace_t *t;
    int top_k, n_devices, tokens_per_device;
    gsl_rng *rng;
    uint64_t seed;
    int n_rows;                   /* score rows per layer: the trace's sources, or 1 */
    gate_spec_t spec;             /* the routing replayed */
    scores_t *sc;                 /* fitted scores, made on first use */
    replay_route_fn route;        /* a strategy's choice, or NULL */
    replay_begin_fn begin;
    void *route_ctx;
    route_step_t rt;
    int cap;                      /* tokens the routing buffers hold */
    double *probs;                /* [n_experts] scratch for count mode */
    unsigned int *draw;           /* [n_experts] scratch for count mode */
    /* per-token traces */
    int *step_first;              /* [n_steps + 1] first token of each trace step */
    double *fill_c;               /* [n_layers][n_experts] whole-trace counts */
};

int replay_new(const trace_t *t, int top_k, int n_devices, int tokens_per_device, uint64_t seed,
               replay_t **out) {
    if (top_k < 1 || top_k > t->n_experts)
        return ms_err("%s: top-k %d does not fit %d experts", t->path, top_k, t->n_experts);
    if (top_k > TRACE_MAX_TOP_K)
        return ms_err("top-k %d is above the supported %d", top_k, TRACE_MAX_TOP_K);
    if (t->kind == TRACE_TOKENS && top_k != t->top_k)
        return ms_err("%s: the trace routes each token to %d experts but the model uses top-%d "
                      "(use a model with top-%d, or convert the trace to counts: moesim trace "
                      "convert %s counts.npy)", t->path, t->top_k, top_k, t->top_k, t->path);
    if (t->kind == TRACE_TOKENS)
        for (int i = 1; i < t->n_tokens; i++)
            if (t->tok_step[i] < t->tok_step[i - 1])
                return ms_err("%s: per-token trace is not in step order (token %d)", t->path, i);
    replay_t *r = ms_calloc(1, sizeof *r);
    r->t = t;
    r->top_k = top_k;
    r->n_devices = n_devices;
    r->tokens_per_device = tokens_per_device;
    r->rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r->rng, (unsigned long)seed);
    r->seed = seed;
    r->n_rows = t->kind == TRACE_COUNTS && t->src_counts && t->n_src > 0 ? t->n_src : 1;
    if (gate_spec_make(t->n_experts, top_k, 1, 1, 1, 0, t->path ? t->path : "trace", &r->spec)) {
        replay_free(r);
        return MS_ERR;
    }
    r->rt = (route_step_t){.n_layers = t->n_layers, .top_k = top_k, .n_devices = n_devices};
    r->probs = ms_malloc((size_t)t->n_experts * sizeof *r->probs);
    r->draw = ms_malloc((size_t)t->n_experts * sizeof *r->draw);
    r->cond_step = -1;
    if (t->kind == TRACE_TOKENS) {
        int L = t->n_layers, E = t->n_experts;
        r->step_first = ms_malloc(((size_t)t->n_steps + 1) * sizeof *r->step_first);
        for (int s = 0, i = 0; s <= t->n_steps; s++) {
            while (i < t->n_tokens && t->tok_step[i] < s) i++;
            r->step_first[s] = i;
        }
        r->fill_c = ms_malloc((size_t)L * E * sizeof *r->fill_c);
        for (int l = 0; l < L; l++) trace_layer_total(t, l, r->fill_c + (size_t)l * E);
    }
    *out = r;
    return MS_OK;
}

void replay_free(replay_t *r) {
    if (!r) return;
    scores_free(r->sc);
    free(r->fill_c);
    free(r->step_first);
    gsl_rng_free(r->rng);
    free(r->rt.src);
    free(r->rt.expert);
    free(r->probs);
    free(r->draw);
    free(r->cond);
    free(r);
}

void replay_set_gate(replay_t *r, const gate_spec_t *spec) {
    if (r->sc) { /* a new routing needs a new fit */
        scores_free(r->sc);
        r->sc = NULL;
    }
    r->spec = *spec;
}

void replay_set_route(replay_t *r, replay_route_fn fn, replay_begin_fn begin, void *ctx) {
    r->route = fn;
    r->begin = begin;
    r->route_ctx = ctx;
}

/* The scores, fitting them on first use. Per-token traces fit their
 * whole-trace counts (one step), for the layers a token lacks and as the
 * law of the experts it did not choose. */
static scores_t *get_scores(replay_t *r) {
    if (r->sc) return r->sc;
    const trace_t *t = r->t;
    gate_fit_t *g = NULL;
    int rc;
    if (t->kind == TRACE_TOKENS) {
        trace_t one = {.path = t->path, .format = t->format, .kind = TRACE_COUNTS,
                       .n_layers = t->n_layers, .n_experts = t->n_experts, .top_k = t->top_k,
                       .n_steps = 1, .counts = r->fill_c};
        rc = gate_fit_trace(&one, &r->spec, &g);
    } else {
        rc = gate_fit_trace(t, &r->spec, &g);
    }
    /* seeds differ from the count-mode stream, which stays as it was */
    if (rc || scores_new_fit(g, r->seed ^ 0x7265706c6179ULL /* "replay" */, &r->sc)) return NULL;
    return r->sc;
}

const gate_fit_t *replay_fit(replay_t *r) {
    scores_t *sc = get_scores(r);
    return sc ? scores_fit(sc) : NULL;
}

/* A token's experts from its scores v: the strategy's choice, or the
 * limited top-k. */
static void choose(replay_t *r, int l, const float *v, int16_t *dst) {
    int out[TRACE_MAX_TOP_K];
    if (r->route) r->route(r->route_ctx, l, v, out);
    else gate_select(&r->spec, v, out);
    for (int j = 0; j < r->top_k; j++) dst[j] = (int16_t)out[j];
}

const route_step_t *replay_step(replay_t *r, int step) {
    int *tokens = ms_malloc((size_t)r->n_devices * sizeof *tokens);
    for (int d = 0; d < r->n_devices; d++) tokens[d] = r->tokens_per_device;
    const route_step_t *rt = replay_step_batch(r, step, tokens);
    free(tokens);
    return rt;
}

/* The recorded tokens from the first token of trace step ts on, n of
 * them, wrapping at the end of the trace. Every recorded token draws its
 * scores, steering strategy or not, so every run consumes the same draws. */
static int copy_tokens(replay_t *r, int ts, int n) {
    const trace_t *t = r->t;
    int L = t->n_layers, k = r->top_k, first = r->step_first[ts];
    scores_t *sc = get_scores(r);
    if (!sc) return MS_ERR;
    scores_step(sc, 0);
    for (int l = 0; l < L; l++)
        for (int i = 0; i < n; i++) {
            int tok = (int)(((int64_t)first + i) % t->n_tokens);
            const int16_t *src = t->tok_experts + ((size_t)tok * L + l) * k;
            int16_t *dst = r->rt.expert + ((size_t)l * n + i) * k;
            if (src[0] >= 0) {
                const float *v = scores_token_rec(sc, l, src, k);
                if (r->route) choose(r, l, v, dst);
                else memcpy(dst, src, (size_t)k * sizeof *dst);
            } else {
                choose(r, l, scores_token(sc, l), dst);
            }
        }
    return MS_OK;
}

const route_step_t *replay_step_batch(replay_t *r, int step, const int *tokens) {
    const trace_t *t = r->t;
    int ts = step % t->n_steps;
    int n = 0, k = r->top_k;
    for (int d = 0; d < r->n_devices; d++) n += tokens[d];
    if (n > r->cap) {
        r->cap = n;
        r->rt.src = ms_realloc(r->rt.src, (size_t)n * sizeof *r->rt.src);
        r->rt.expert = ms_realloc(r->rt.expert, (size_t)t->n_layers * n * k * sizeof *r->rt.expert);
    }
    r->rt.n_tokens = n;
    for (int d = 0, i = 0; d < r->n_devices; d++)
        for (int j = 0; j < tokens[d]; j++) r->rt.src[i++] = d;
    if (r->route && r->begin) r->begin(r->route_ctx, step, n, r->rt.src);
    if (t->kind == TRACE_TOKENS) return copy_tokens(r, ts, n) ? NULL : &r->rt;
    scores_t *sc = get_scores(r);
    if (!sc) return NULL;
    scores_step(sc, ts);
    for (int l = 0; l < t->n_layers; l++)
        for (int i = 0; i < n; i++) {
            /* a token routes by its source device's counts (the fit falls
             * back to the layer's for a source without any) */
            int q = r->n_rows > 1 ? r->rt.src[i] % r->n_rows : 0;
            choose(r, l, scores_token_row(sc, l, q), r->rt.expert + ((size_t)l * n + i) * k);
        }
    return &r->rt;
}

/* The multinomial as a chain of conditional binomials (as GSL's), but a
 * binomial whose mean and complement are both large is drawn from its
 * normal approximation (ziggurat, a few ns) instead of exactly (tens of ns):
 * with ~10^5 pairs a layer over a few hundred experts nearly every draw is
 * such, and the error of the approximation (O(1/sqrt(np))) is far below
 * the draw's own spread. The total stays exact. */
#define NORMAL_MIN 10.0

void replay_cond_probs(int k, const double *p, double *q) {
    double rest = 0;
    for (int i = 0; i < k; i++) rest += p[i];
    for (int i = 0; i < k; i++) {
        q[i] = p[i] <= 0 ? 0 : rest > p[i] ? p[i] / rest : 1;
        rest -= p[i];
    }
}

void replay_multinomial(gsl_rng *rng, int k, unsigned int n, const double *q, unsigned int *out) {
    unsigned int left = n;
    for (int i = 0; i < k; i++) {
        double qi = q[i];
        if (!left || qi <= 0) {
            out[i] = 0;
        } else if (qi >= 1) {
            out[i] = left;
        } else {
            double mean = left * qi, rest = left - mean;
            if (mean >= NORMAL_MIN && rest >= NORMAL_MIN) {
                double x = floor(mean + gsl_ran_gaussian_ziggurat(rng, sqrt(mean * (1 - qi))) + 0.5);
                out[i] = x <= 0 ? 0 : x >= left ? left : (unsigned int)x;
            } else {
                out[i] = gsl_ran_binomial(rng, qi, left);
            }
        }
        left -= out[i];
    }
}

void replay_counts(replay_t *r, int step, double n_tokens, double *out) {
    replay_counts_delta(r, step, n_tokens, NULL, out);
}

static int zero_row(const double *d, int E) {
    if (!d) return 1;
    for (int e = 0; e < E; e++)
        if (d[e] != 0) return 0;
    return 1;
}

void replay_counts_delta(replay_t *r, int step, double n_tokens, const double *delta,
                         double *out) {
    const trace_t *t = r->t;
    int ts = step % t->n_steps, E = t->n_experts, L = t->n_layers, k = r->top_k;
    if (t->kind == TRACE_TOKENS) {
        int n = (int)(n_tokens + 0.5), first = r->step_first[ts];
        memset(out, 0, (size_t)L * E * sizeof *out);
        for (int l = 0; l < L; l++) {
            double *o = out + (size_t)l * E, *fc = r->fill_c + (size_t)l * E, fsum = 0;
            for (int e = 0; e < E; e++) fsum += fc[e];
            for (int i = 0; i < n; i++) {
                int tok = (int)(((int64_t)first + i) % t->n_tokens);
                const int16_t *v = t->tok_experts + ((size_t)tok * L + l) * k;
                if (v[0] >= 0)
                    for (int j = 0; j < k; j++) o[v[j]] += 1;
                else /* a missing layer counts as its expected share */
                    for (int e = 0; e < E; e++) o[e] += fsum > 0 ? k * fc[e] / fsum : (double)k / E;
            }
            const double *d = delta ? delta + (size_t)l * E : NULL;
            if (zero_row(d, E)) continue;
            /* the recorded pairs moved by the steering, kept >= 0; the total
             * shrinks by what the steering drops (a row summing below 0) */
            double pairs = (double)n * k, sum = 0, moved = 0;
            for (int e = 0; e < E; e++) moved += d[e];
            double want = pairs * ms_dmin(1, ms_dmax(0, 1 + moved));
            for (int e = 0; e < E; e++) sum += o[e] = ms_dmax(0, o[e] + d[e] * pairs);
            for (int e = 0; e < E && sum > 0; e++) o[e] *= want / sum;
        }
        return;
    }
    unsigned int pairs = (unsigned int)(n_tokens * r->top_k + 0.5);
    if (r->cond_step != ts) { /* conditional probabilities of this trace step */
        if (!r->cond) r->cond = ms_malloc((size_t)L * E * sizeof *r->cond);
        for (int l = 0; l < L; l++) replay_cond_probs(E, trace_counts(t, ts, l), r->cond + (size_t)l * E);
        r->cond_step = ts;
    }
    double *moved = NULL;
    for (int l = 0; l < L; l++) {
        const double *q = r->cond + (size_t)l * E;
        double *o = out + (size_t)l * E;
        int silent = 1; /* a layer with no counts at all spreads evenly */
        for (int e = 0; e < E && silent; e++) silent = q[e] <= 0;
        if (silent) {
            for (int e = 0; e < E; e++) o[e] = (double)pairs / E;
            continue;
        }
        const double *d = delta ? delta + (size_t)l * E : NULL;
        unsigned int n_pairs = pairs;
        if (!zero_row(d, E)) { /* the trace's law moved by the steering */
            if (!moved) moved = ms_malloc(2 * (size_t)E * sizeof *moved);
            const double *c = trace_counts(t, ts, l);
            double sum = 0, dsum = 0;
            for (int e = 0; e < E; e++) sum += c[e], dsum += d[e];
            for (int e = 0; e < E; e++) moved[E + e] = ms_dmax(0, c[e] / sum + d[e]);
            replay_cond_probs(E, moved + E, moved);
            q = moved;
            /* dropped pairs (a row summing below 0) leave the step */
            if (dsum < 0) n_pairs = (unsigned int)(pairs * ms_dmax(0, 1 + dsum) + 0.5);
        }
        replay_multinomial(r->rng, E, n_pairs, q, r->draw);
        for (int e = 0; e < E; e++) o[e] = r->draw[e];
    }
    free(moved);
}
