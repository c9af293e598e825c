/* replay: per-step routing from a trace.
 *
 * Per-token traces are copied, not sampled: only a token that lacks a
 * layer in the recording draws that layer's experts from the layer's
 * whole-trace counts.
 *
 * Sampling k distinct experts in proportion to counts is done by drawing
 * from the layer's alias table (gsl_ran_discrete, O(1) a draw) and redrawing
 * on a repeat. Redrawing on repeats is exactly sequential sampling without
 * replacement: given the experts already chosen, each remaining expert is
 * hit with probability count / remaining mass. A draw that keeps repeating
 * (the remaining mass is tiny) falls back to an explicit scan. */
#include "replay.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct replay {
    double *cond;                 /* [n_layers][n_experts] conditional probabilities of
                                   * trace step cond_step, for count mode */
    int cond_step;
    const trace_t *t;
    int top_k, n_devices, tokens_per_device;
    gsl_rng *rng;
    int table_step;               /* trace step whose tables are built, -1 none */
    int n_rows;                   /* tables per layer: the trace's sources, or 1 */
    gsl_ran_discrete_t **table;   /* [n_layers][n_rows] */
    route_step_t rt;
    int cap;                      /* tokens the routing buffers hold */
    double *probs;                /* [n_experts] scratch for count mode */
    unsigned int *draw;           /* [n_experts] scratch for count mode */
    /* per-token traces */
    int *step_first;              /* [n_steps + 1] first token of each trace step */
    double *fill_c;               /* [n_layers][n_experts] whole-trace counts */
    gsl_ran_discrete_t **fill;    /* [n_layers] tables of fill_c, for missing layers */
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
    r->table_step = -1;
    r->n_rows = t->kind == TRACE_COUNTS && t->src_counts && t->n_src > 0 ? t->n_src : 1;
    r->table = ms_calloc((size_t)t->n_layers * r->n_rows, sizeof *r->table);
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
        r->fill = ms_calloc((size_t)L, sizeof *r->fill);
        for (int l = 0; l < L; l++) {
            double *c = r->fill_c + (size_t)l * E, sum = 0;
            trace_layer_total(t, l, c);
            for (int e = 0; e < E; e++) sum += c[e];
            r->fill[l] = sum > 0 ? gsl_ran_discrete_preproc((size_t)E, c) : NULL;
        }
    }
    *out = r;
    return MS_OK;
}

void replay_free(replay_t *r) {
    if (!r) return;
    for (int i = 0; i < r->t->n_layers * r->n_rows; i++)
        if (r->table[i]) gsl_ran_discrete_free(r->table[i]);
    free(r->table);
    if (r->fill)
        for (int l = 0; l < r->t->n_layers; l++)
            if (r->fill[l]) gsl_ran_discrete_free(r->fill[l]);
    free(r->fill);
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

/* Counts row q of layer l at trace step ts: by source when the trace has
 * sources, else the layer's counts. */
static const double *row_counts(const replay_t *r, int ts, int l, int q) {
    const trace_t *t = r->t;
    if (r->n_rows == 1) return trace_counts(t, ts, l);
    return t->src_counts + (((size_t)ts * t->n_layers + l) * r->n_rows + q) * t->n_experts;
}

static void build_tables(replay_t *r, int ts) {
    for (int l = 0; l < r->t->n_layers; l++)
        for (int q = 0; q < r->n_rows; q++) {
            gsl_ran_discrete_t **tab = &r->table[l * r->n_rows + q];
            if (*tab) gsl_ran_discrete_free(*tab);
            const double *c = row_counts(r, ts, l, q);
            double sum = 0;
            for (int e = 0; e < r->t->n_experts; e++) sum += c[e];
            *tab = sum > 0 ? gsl_ran_discrete_preproc((size_t)r->t->n_experts, c) : NULL;
        }
    r->table_step = ts;
}

static int chosen(const int16_t *v, int n, int e) {
    for (int i = 0; i < n; i++)
        if (v[i] == e) return 1;
    return 0;
}

/* One token's k distinct experts drawn from table tab (counts c); with no
 * table, an explicit draw over c (uniform when c is all zero). */
static void sample_token(replay_t *r, const gsl_ran_discrete_t *tab, const double *c, int16_t *v) {
    int E = r->t->n_experts, k = r->top_k;
    for (int j = 0; j < k; j++) {
        int e = -1;
        if (tab)
            for (int tries = 0; tries < 64; tries++) {
                int x = (int)gsl_ran_discrete(r->rng, tab);
                if (!chosen(v, j, x)) {
                    e = x;
                    break;
                }
            }
        if (e < 0) { /* explicit draw over the experts not yet chosen */
            double rest = 0;
            for (int x = 0; x < E; x++)
                if (!chosen(v, j, x)) rest += c[x];
            double u = gsl_rng_uniform(r->rng) * rest;
            int uniform = rest <= 0;
            int n_left = E - j, pick = (int)(gsl_rng_uniform(r->rng) * n_left);
            for (int x = 0; x < E && e < 0; x++) {
                if (chosen(v, j, x)) continue;
                if (uniform ? pick-- == 0 : (u -= c[x]) < 0) e = x;
            }
            if (e < 0) /* rounding left u just above zero: take the last free one */
                for (int x = E - 1; x >= 0 && e < 0; x--)
                    if (!chosen(v, j, x)) e = x;
        }
        v[j] = (int16_t)e;
    }
}

const route_step_t *replay_step(replay_t *r, int step) {
    int *tokens = ms_malloc((size_t)r->n_devices * sizeof *tokens);
    for (int d = 0; d < r->n_devices; d++) tokens[d] = r->tokens_per_device;
    const route_step_t *rt = replay_step_batch(r, step, tokens);
    free(tokens);
    return rt;
}

/* The recorded tokens from the first token of trace step ts on, n of
 * them, wrapping at the end of the trace. */
static void copy_tokens(replay_t *r, int ts, int n) {
    const trace_t *t = r->t;
    int L = t->n_layers, k = r->top_k, E = t->n_experts, first = r->step_first[ts];
    for (int l = 0; l < L; l++)
        for (int i = 0; i < n; i++) {
            int tok = (int)(((int64_t)first + i) % t->n_tokens);
            const int16_t *src = t->tok_experts + ((size_t)tok * L + l) * k;
            int16_t *dst = r->rt.expert + ((size_t)l * n + i) * k;
            if (src[0] >= 0) memcpy(dst, src, (size_t)k * sizeof *dst);
            else sample_token(r, r->fill[l], r->fill_c + (size_t)l * E, dst);
        }
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
    if (t->kind == TRACE_TOKENS) {
        copy_tokens(r, ts, n);
        return &r->rt;
    }
    if (ts != r->table_step) build_tables(r, ts);
    for (int l = 0; l < t->n_layers; l++) {
        for (int i = 0; i < n; i++) {
            /* A token samples its source device's counts; a source with no
             * counts in this layer falls back to the layer's counts. */
            int q = r->n_rows > 1 ? r->rt.src[i] % r->n_rows : 0;
            const gsl_ran_discrete_t *tab = r->table[l * r->n_rows + q];
            const double *c = row_counts(r, ts, l, q);
            if (!tab && r->n_rows > 1) c = trace_counts(t, ts, l);
            sample_token(r, tab, c, r->rt.expert + ((size_t)l * n + i) * k);
        }
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
        }
        return;
    }
    unsigned int pairs = (unsigned int)(n_tokens * r->top_k + 0.5);
    if (r->cond_step != ts) { /* conditional probabilities of this trace step */
        if (!r->cond) r->cond = ms_malloc((size_t)L * E * sizeof *r->cond);
        for (int l = 0; l < L; l++) replay_cond_probs(E, trace_counts(t, ts, l), r->cond + (size_t)l * E);
        r->cond_step = ts;
    }
    for (int l = 0; l < L; l++) {
        const double *q = r->cond + (size_t)l * E;
        double *o = out + (size_t)l * E;
        int silent = 1; /* a layer with no counts at all spreads evenly */
        for (int e = 0; e < E && silent; e++) silent = q[e] <= 0;
        if (silent) {
            for (int e = 0; e < E; e++) o[e] = (double)pairs / E;
            continue;
        }
        replay_multinomial(r->rng, E, pairs, q, r->draw);
        for (int e = 0; e < E; e++) o[e] = r->draw[e];
    }
}
