/* phase: workloads that change over time, strung together from real
 * per-workload traces. `[workload] phases = a.json:30s, b.json:30s, ...`
 * replays trace a for the first 30 simulated seconds, then b, and so on;
 * the last phase goes on after its duration. Re-planning strategies meet
 * real shifts (prefill after decode, long prompts after short ones) instead
 * of the sampling noise of one stationary trace. */
#ifndef MOESIM_PHASE_H
#define MOESIM_PHASE_H

#include <stdint.h>

#include "trace.h"

#define PHASE_MAX 16

typedef struct phase {
    char name[1024];   /* the trace as written */
    char path[4096];   /* resolved beside the config */
    int64_t dur_ns;    /* how long it lasts */
    int64_t end_ns;    /* when it ends (cumulative) */
} phase_t;

typedef struct phases {
    int n;             /* 0: no phases */
    phase_t p[PHASE_MAX];
} phases_t;

/* Parses "FILE:DURATION, FILE:DURATION, ..."; DURATION is a positive number
 * with the unit s or ms (30s, 500ms). Paths are read beside origin. */
int phase_parse(const char *s, const char *origin, const char *where, phases_t *out);
/* The phase serving time t (the last one after every duration). */
int phase_at(const phases_t *ph, int64_t t_ns);
/* One trace holding every phase's counts, each layer's share weighted by
 * its phase's duration (a single step): what the whole run replays, for
 * the oracle prior and the stored trace_counts. Caller frees. */
trace_t *phase_mix(const phases_t *ph, trace_t *const *tr);

#endif
