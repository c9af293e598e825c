/* step_pipe: a step of a pipeline-parallel deployment (cluster_t.pp > 1):
 * the stages as copies of one expert-parallel cluster, each running its
 * slice of the layers, micro-batches through them on GPipe's schedule.
 * step.c hands a step over to it; docs/cost-model.md section 13. */
#ifndef MOESIM_STEP_PIPE_H
#define MOESIM_STEP_PIPE_H

#include "step.h"

typedef struct step_pipe step_pipe_t;

/* A pipeline of cluster_pp(c) stages, each a copy of c (one stage), over
 * model m's layers split by cost_stage_model. */
step_pipe_t *step_pipe_new(const cluster_t *c, const moe_model_t *m);
void step_pipe_free(step_pipe_t *p);
/* One step as step_run describes it, in pipeline form: end_ns - start_ns
 * is cost_pipeline_ns over the (stage, micro-batch) times; layer_ns,
 * dev_load, expert_load and expert_ns sum each layer's micro-batches (the
 * layer times no longer add up to the step: stages run at once); pre_ns
 * and post_ns sum the first and last stage's. No observer is told. */
int step_pipe_run(step_pipe_t *p, const step_in_t *in, step_result_t *out);

#endif
