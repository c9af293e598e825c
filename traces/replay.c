/* replay: per-step routing from a trace.
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
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct replay {
    const trace_t *t;
    int top_k, n_devices, tokens_per_device;
    gsl_rng *rng;
    int table_step;               /* trace step whose tables are built, -1 none */
    gsl_ran_discrete_t **table;   /* [n_layers] */
    route_step_t rt;
    int cap;                      /* tokens the routing buffers hold */
    double *probs;                /* [n_experts] scratch for count mode */
    unsigned int *draw;           /* [n_experts] scratch for count mode */
};

int replay_new(const trace_t *t, int top_k, int n_devices, int tokens_per_device, uint64_t seed,
               replay_t **out) {
    if (top_k < 1 || top_k > t->n_experts)
        return ms_err("%s: top-k %d does not fit %d experts", t->path, top_k, t->n_experts);
    if (top_k > 32) return ms_err("top-k %d is above the supported 32", top_k);
    replay_t *r = ms_calloc(1, sizeof *r);
    r->t = t;
    r->top_k = top_k;
    r->n_devices = n_devices;
    r->tokens_per_device = tokens_per_device;
    r->rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r->rng, (unsigned long)seed);
    r->table_step = -1;
    r->table = ms_calloc((size_t)t->n_layers, sizeof *r->table);
    r->rt = (route_step_t){.n_layers = t->n_layers, .top_k = top_k, .n_devices = n_devices};
    r->probs = ms_malloc((size_t)t->n_experts * sizeof *r->probs);
    r->draw = ms_malloc((size_t)t->n_experts * sizeof *r->draw);
    *out = r;
    return MS_OK;
}

void replay_free(replay_t *r) {
    if (!r) return;
    for (int l = 0; l < r->t->n_layers; l++)
        if (r->table[l]) gsl_ran_discrete_free(r->table[l]);
    free(r->table);
    gsl_rng_free(r->rng);
    free(r->rt.src);
    free(r->rt.expert);
    free(r->probs);
    free(r->draw);
    free(r);
}

static void build_tables(replay_t *r, int ts) {
    for (int l = 0; l < r->t->n_layers; l++) {
        if (r->table[l]) gsl_ran_discrete_free(r->table[l]);
        const double *c = trace_counts(r->t, ts, l);
        double sum = 0;
        for (int e = 0; e < r->t->n_experts; e++) sum += c[e];
        r->table[l] = sum > 0 ? gsl_ran_discrete_preproc((size_t)r->t->n_experts, c) : NULL;
    }
    r->table_step = ts;
}

static int chosen(const int16_t *v, int n, int e) {
    for (int i = 0; i < n; i++)
        if (v[i] == e) return 1;
    return 0;
}

/* One token's k distinct experts of layer l. */
static void sample_token(replay_t *r, int l, const double *c, int16_t *v) {
    int E = r->t->n_experts, k = r->top_k;
    for (int j = 0; j < k; j++) {
        int e = -1;
        if (r->table[l])
            for (int tries = 0; tries < 64; tries++) {
                int x = (int)gsl_ran_discrete(r->rng, r->table[l]);
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

const route_step_t *replay_step_batch(replay_t *r, int step, const int *tokens) {
    const trace_t *t = r->t;
    int ts = step % t->n_steps;
    if (ts != r->table_step) build_tables(r, ts);
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
    for (int l = 0; l < t->n_layers; l++) {
        const double *c = trace_counts(t, ts, l);
        for (int i = 0; i < n; i++)
            sample_token(r, l, c, r->rt.expert + ((size_t)l * n + i) * k);
    }
    return &r->rt;
}

void replay_counts(replay_t *r, int step, double n_tokens, double *out) {
    const trace_t *t = r->t;
    int ts = step % t->n_steps, E = t->n_experts;
    unsigned int pairs = (unsigned int)(n_tokens * r->top_k + 0.5);
    for (int l = 0; l < t->n_layers; l++) {
        const double *c = trace_counts(t, ts, l);
        double sum = 0;
        for (int e = 0; e < E; e++) sum += c[e];
        double *o = out + (size_t)l * E;
        if (sum <= 0) { /* a silent layer spreads evenly */
            for (int e = 0; e < E; e++) o[e] = (double)pairs / E;
            continue;
        }
        gsl_ran_multinomial(r->rng, (size_t)E, pairs, c, r->draw);
        for (int e = 0; e < E; e++) o[e] = r->draw[e];
    }
}
