/* scores: per-token router scores for traces that record none: replay
 * routes every token through them (gate_select), and a strategy steering
 * routing (bias balancing) adds its bias to the same scores. A token's score
 * for expert e in layer l is sigmoid(x_e + G_e), x the router logits fitted
 * to the trace (gate.h) and G_e independent standard Gumbel draws, so the
 * limited top-k of the scores reproduces the trace's per-expert
 * frequencies. The draws come from their own seeded GSL stream. */
#ifndef MOESIM_SCORES_H
#define MOESIM_SCORES_H

#include <stdint.h>

#include "gate.h"
#include "trace.h"

typedef struct scores scores_t;

/* Scores for trace t's layers and experts under plain top-k routing with
 * the model's top_k (fitted here). */
int scores_new(const trace_t *t, int top_k, uint64_t seed, scores_t **out);
/* Scores from fitted logits g (which the scores take over and free). */
int scores_new_fit(gate_fit_t *g, uint64_t seed, scores_t **out);
void scores_free(scores_t *s);
/* The logits the scores come from. */
const gate_fit_t *scores_fit(const scores_t *s);
/* Uses the counts of trace step step % n_steps from now on (as replay). */
void scores_step(scores_t *s, int step);
/* One token's scores of layer l: n_experts floats in (0, 1), valid until
 * the next call. */
const float *scores_token(scores_t *s, int layer);
/* The same for source row `row` of a trace with source devices. */
const float *scores_token_row(scores_t *s, int layer, int row);
/* A recorded token's scores: its k recorded experts rec[] score above all
 * others (the others drawn from their law truncated below the lowest
 * recorded score), so the plain top-k of these scores is the recording and
 * a bias can still move choices near the cut. */
const float *scores_token_rec(scores_t *s, int layer, const int16_t *rec, int k);
/* One standard exponential draw from the scores stream (the ziggurat the
 * scores use; exposed for tests). */
double scores_exp(scores_t *s);

#endif
