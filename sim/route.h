/* route: routing through a strategy's route hook (bias balancing) on router
 * scores generated from the trace. Token mode re-routes every token of a
 * step; count mode, for runs too long to route token by token, estimates
 * the biased routing law from a sample of tokens every few steps and draws
 * each step's expert counts from it as a multinomial. */
#ifndef MOESIM_ROUTE_H
#define MOESIM_ROUTE_H

#include <stdint.h>

#include "place.h"
#include "replay.h"
#include "trace.h"

typedef struct route route_t;

/* samples: tokens routed to estimate the law in count mode; every: steps
 * between estimates. */
int route_new(const trace_t *t, int top_k, const place_ops_t *ops, place_state_t *ps,
              uint64_t seed, int samples, int every, route_t **out);
void route_free(route_t *r);
/* The step `in` with each token's experts chosen by the strategy: a copy
 * the router owns (valid until its next call), so the replay's buffer, and
 * anything else reading it, never sees the strategy's changes. */
const route_step_t *route_tokens(route_t *r, const route_step_t *in, int step);
/* Token-expert pairs per expert when n_tokens tokens are routed in
 * simulated step `step` on trace step `trace_step`: out[n_layers][n_experts],
 * summing to n_tokens * top_k in every layer. */
void route_counts(route_t *r, int trace_step, int step, double n_tokens, double *out);

#endif
