/* scores: per-token router scores for traces that record none, so that a
 * strategy steering routing (bias balancing) has scores to add its bias to.
 * A token's score for expert e in layer l is sigmoid(log c_e + shift + G_e)
 * with c the layer's trace counts and G_e independent standard Gumbel
 * draws: the top-k of them (Gumbel-top-k) is a sample of k distinct experts
 * in proportion to c, the same law replay samples, so unbiased top-k routing
 * on these scores reproduces the trace. The draws come from their own seeded
 * GSL stream, so adding scores to a run leaves replay's stream untouched. */
#ifndef MOESIM_SCORES_H
#define MOESIM_SCORES_H

#include <stdint.h>

#include "trace.h"

/* Weight given to an expert the trace never activated, relative to the
 * layer's mean count: keeps its score finite and distinct (so a bias can
 * still rank it) while leaving its unbiased chance negligible. */
#define SCORES_FLOOR 1e-6

typedef struct scores scores_t;

/* Scores for trace t's layers and experts; top_k is the model's (it sets
 * the shift that puts the k-th score near 0.5). */
int scores_new(const trace_t *t, int top_k, uint64_t seed, scores_t **out);
void scores_free(scores_t *s);
/* Uses the counts of trace step step % n_steps from now on (as replay). */
void scores_step(scores_t *s, int step);
/* One token's scores of layer l: n_experts floats in (0, 1), valid until
 * the next call. */
const float *scores_token(scores_t *s, int layer);
/* One standard exponential draw from the scores stream (the ziggurat the
 * scores use; exposed for tests). */
double scores_exp(scores_t *s);

#endif
