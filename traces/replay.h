/* replay: turns a trace into the routing of each simulated step: which
 * experts each token of the simulated batch chooses in every MoE layer.
 * Simulated step s uses trace step s mod n_steps, so a trace with a time
 * axis replays its shifts in order.
 *
 * Count traces are sampled: each token gets router scores (scores.h) from
 * logits fitted to the layer's counts (by its source device's counts when
 * the trace has them) and takes their limited top-k (gate.h), so the
 * replayed per-expert frequencies are the trace's. A strategy that steers
 * routing gets the same scores through a route hook and chooses instead, so
 * with nothing to steer it routes exactly as replay. Per-token traces replay
 * as recorded: the batch takes the recorded tokens from the first token of
 * trace step s mod n_steps on, as many as it holds, running on into later
 * steps (and round to the start) when it holds more; docs/traces.md has the
 * details. */
#ifndef MOESIM_REPLAY_H
#define MOESIM_REPLAY_H

#include <gsl/gsl_rng.h>
#include <stdint.h>

#include "gate.h"
#include "trace.h"

/* Routing of one step. Token t sits on device src[t]; its experts in layer
 * l are expert[(l * n_tokens + t) * top_k + j]. */
typedef struct route_step {
    int n_layers, n_tokens, top_k, n_devices;
    int *src;        /* [n_tokens] */
    int16_t *expert; /* [n_layers][n_tokens][top_k] */
} route_step_t;

typedef struct replay replay_t;

/* tokens_per_device tokens on each of n_devices devices every step. The
 * trace must have top_k <= its experts; the model's top_k is given (a
 * per-token trace must have been recorded with the same top_k). */
int replay_new(const trace_t *t, int top_k, int n_devices, int tokens_per_device, uint64_t seed,
               replay_t **out);
void replay_free(replay_t *r);
/* The routing to replay (default: plain top-k); call before the first step. */
void replay_set_gate(replay_t *r, const gate_spec_t *spec);
/* A strategy's choice of a token's top_k experts from its scores[E] (-1:
 * the choice is dropped), and its notice that a step's n tokens (token i on
 * device src[i]) are about to be routed, layer by layer, in token order. */
typedef void (*replay_route_fn)(void *ctx, int layer, const float *scores, int *out);
typedef void (*replay_begin_fn)(void *ctx, int step, int n_tokens, const int *src);
/* Every token's experts are then chosen by fn on the token's scores
 * (per-token traces: scores whose plain top-k is the recording); begin
 * (may be NULL) is called first in every step. */
void replay_set_route(replay_t *r, replay_route_fn fn, replay_begin_fn begin, void *ctx);
/* The fitted logits replay uses (fitting them now if not yet done); NULL
 * on error. */
const gate_fit_t *replay_fit(replay_t *r);
/* Fills the routing of simulated step `step` into r's buffer and returns it
 * (valid until the next call): tokens_per_device tokens on every device. */
const route_step_t *replay_step(replay_t *r, int step);
/* The same with tokens[d] tokens on device d (continuous batching). */
const route_step_t *replay_step_batch(replay_t *r, int step, const int *tokens);
/* A multinomial draw of n into out[k] (sums to n) as a chain of
 * conditional binomials, large ones drawn from their normal approximation
 * for speed. q[k] are the conditional probabilities replay_cond_probs()
 * makes from the weights (compute them once per set of weights). */
void replay_multinomial(gsl_rng *rng, int k, unsigned int n, const double *q, unsigned int *out);
void replay_cond_probs(int k, const double *p, double *q);

/* Count mode, for runs too long to route token by token: the token-expert
 * pairs of each expert in every layer when n_tokens tokens choose top_k
 * experts each, so they sum to n_tokens * top_k. Count traces draw them as
 * a multinomial over the layer's counts; per-token traces count the same
 * recorded tokens replay_step_batch would route (no randomness). out is
 * [n_layers][n_experts]. */
void replay_counts(replay_t *r, int step, double n_tokens, double *out);
/* The same with the per-pair probabilities moved by delta[n_layers][n_experts]
 * (a strategy's steering: each row sums to 0); a row of zeros draws exactly
 * as replay_counts. */
void replay_counts_delta(replay_t *r, int step, double n_tokens, const double *delta,
                         double *out);

#endif
