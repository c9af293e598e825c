/* gate: the simulated router, i.e. how a token's scores become its experts
 * (plain, group-limited or node-limited top-k, as the model and config say),
 * and router logits FITTED to a trace so that this limited top-k reproduces
 * the trace's per-expert frequencies. Replay and every strategy that steers
 * routing (bias balancing) choose experts through the same gate_select on
 * the same scores, so a strategy that steers nothing routes as replay does.
 *
 * Fitting: per (trace step, layer, source row) one logit x_e per expert; a
 * token's score is sigmoid(x_e + G_e) with G_e standard Gumbel draws (see
 * scores.h). The logits are found by fixed-point iteration on fixed,
 * seeded draws: x_e += log(target_e / freq_e), target_e = k * c_e / sum c.
 * The fit is cached in a small file beside the trace (or the user's cache
 * folder when that is not writable), keyed by a hash of the trace's counts
 * and of the routing options; a stale or corrupt file is refitted. */
#ifndef MOESIM_GATE_H
#define MOESIM_GATE_H

#include <stdint.h>

#include "trace.h"

#define GATE_MAX_SEG 256 /* groups or nodes of a limit */

/* A routing shape. A limit keeps `keep` of `n` contiguous segments of the
 * experts (segment i: experts [i*E/n, (i+1)*E/n)), ranked by the sum of
 * their `top` best scores (among experts still allowed); n <= 1 is off. */
typedef struct gate_limit {
    int n, keep, top;
} gate_limit_t;

typedef struct gate_spec {
    int n_experts, top_k;
    gate_limit_t group; /* DeepSeek-V3: 8 groups, keep 4, by the top 2 */
    gate_limit_t node;  /* node-limited: n_nodes, keep M, by the top k/M */
} gate_spec_t;

/* Builds and checks a spec: groups/topk_groups (groups <= 1: no group
 * limit), n_nodes/max_nodes (max_nodes 0 or >= n_nodes: no node limit;
 * experts sit on nodes contiguously, E / n_nodes a node, the layout the
 * router was trained with, whatever placement a strategy chooses).
 * `where` names the config for messages. */
int gate_spec_make(int n_experts, int top_k, int groups, int topk_groups, int n_nodes,
                   int max_nodes, const char *where, gate_spec_t *out);
/* Limited top-k of v[E] into out[k], descending; ties go to the lower
 * index (segment or expert). A node limit that leaves fewer than k experts
 * (segments straddling groups) is skipped for that token. */
void gate_select(const gate_spec_t *s, const float *v, int *out);

/* Fitted logits of a trace: [n_steps][n_layers][n_rows][n_experts], rows
 * being the trace's source devices (1 when it has none). */
typedef struct gate_fit {
    int n_steps, n_layers, n_rows, n_experts;
    float *logit;
    int from_cache; /* 1: read from the cache, 0: fitted now */
} gate_fit_t;

static inline const float *gate_logits(const gate_fit_t *g, int step, int layer, int row) {
    return g->logit + (((size_t)step * g->n_layers + layer) * g->n_rows + row) * g->n_experts;
}

/* Fits (or reads from the cache) the logits of trace t under spec s. */
int gate_fit_trace(const trace_t *t, const gate_spec_t *s, gate_fit_t **out);
void gate_fit_free(gate_fit_t *g);
gate_fit_t *gate_fit_copy(const gate_fit_t *g);
/* The same without the cache. */
int gate_fit_trace_nocache(const trace_t *t, const gate_spec_t *s, gate_fit_t **out);
/* Where the cache of trace t under spec s lives (beside the trace); n >= 64. */
void gate_cache_path(const trace_t *t, const gate_spec_t *s, char *out, size_t n);

/* Fits one layer: logits x[E] for counts c[E]. */
void gate_fit_layer(const gate_spec_t *s, const double *c, float *x);
/* Per-expert frequency (token-expert pairs per token, sums to k) of the
 * limited top-k on fresh draws of logits x: n_tokens tokens from seed. */
void gate_sample_freq(const gate_spec_t *s, const float *x, int n_tokens, uint64_t seed,
                      double *freq);

#endif
