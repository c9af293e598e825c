/* route: routing through a strategy's route hook (bias balancing) on the
 * router scores replay fits to the trace. Token mode hands the hook every
 * token's scores inside replay (so a hook that steers nothing routes exactly
 * as replay); count mode, for runs too long to route token by token,
 * estimates how far the hook moves the routing law from a sample of tokens
 * every few steps and draws each step's counts from the trace's law moved by
 * that much. */
#ifndef MOESIM_ROUTE_H
#define MOESIM_ROUTE_H

#include <stdint.h>

#include "gate.h"
#include "place.h"
#include "replay.h"
#include "trace.h"

typedef struct route route_t;

/* For replay rp (whose routing spec and fit it shares) and the strategy's
 * ops/ps; samples: tokens routed per estimate in count mode; every: steps
 * between estimates. Attaches the hook to rp's token-mode routing. */
int route_new(replay_t *rp, const gate_spec_t *spec, const place_ops_t *ops, place_state_t *ps,
              uint64_t seed, int samples, int every, route_t **out);
void route_free(route_t *r);
/* Token-expert pairs per expert when n_tokens tokens are routed in
 * simulated step `step` on trace step `trace_step`: out[n_layers][n_experts],
 * summing to n_tokens * top_k in every layer, drawn with rp's stream. */
void route_counts(route_t *r, int trace_step, int step, double n_tokens, double *out);

#endif
