/* trace_gen: seeded synthetic traces for stressing placement strategies
 * with controlled skew, drift, phase changes and source-device locality.
 * Same parameters and seed give the same trace, byte for byte. */
#ifndef MOESIM_TRACE_GEN_H
#define MOESIM_TRACE_GEN_H

#include <stdint.h>

#include "trace.h"

/* The parameters; trace_gen_defaults() fills the documented defaults. */
typedef struct trace_gen_params {
    int n_layers;        /* MoE layers */
    int n_experts;
    int top_k;           /* distinct experts per token */
    int n_steps;
    int tokens;          /* tokens per step */
    double skew;         /* Zipf exponent: the expert of rank r weighs (r+1)^-skew; 0 = uniform */
    double drift;        /* fraction of each layer's ranks handed to another expert per step */
    int phase_step;      /* step where phase 2 begins; -1 = one phase */
    int phase_tokens;    /* phase 2 tokens per step */
    double phase_skew;   /* phase 2 Zipf exponent */
    int phase_reshuffle; /* 1: phase 2 starts from new hot sets */
    int n_src;           /* source devices; 0 = no by-source counts */
    double locality;     /* weight factor of a source's own experts (1 = none) */
    int per_token;       /* 1: per-token routing with scores; 0: counts */
    uint64_t seed;
} trace_gen_params_t;

void trace_gen_defaults(trace_gen_params_t *p);
/* Checks p and generates; the trace is named `name` (format "synthetic"). */
int trace_gen(const trace_gen_params_t *p, const char *name, trace_t **out);

#endif
