/* run: one experiment from its config: build the cluster, model, trace and
 * strategy, simulate the steps on the engine, and write the run to the
 * results store. This is the one way through: config and trace in ->
 * placement -> cluster simulation -> metrics -> SQLite. */
#ifndef MOESIM_RUN_H
#define MOESIM_RUN_H

#include <stdint.h>

#include "cfg.h"
#include "moe.h"
#include "step.h"
#include "store.h"

#define RUN_MAX_STRATEGIES 16

/* The typed experiment, read from a config. */
typedef struct run_spec {
    cfg_t *cfg;               /* not owned */
    const char *name;
    uint64_t seed;
    int steps;                /* decode steps to simulate */
    cluster_t cluster;
    moe_model_t model;
    char trace_path[4096];    /* resolved against the config's folder */
    const char *trace_name;   /* as written in the config */
    int tokens_per_device;    /* decode batch per device */
    double kv_len;            /* mean KV-cache length per token ([workload] kv_len) */
    int redundant;            /* redundant expert slots per layer */
    int n_strategies;
    char strategies[RUN_MAX_STRATEGIES][32];
} run_spec_t;

/* Reads and checks the experiment; every complaint names file:line. */
int run_spec_load(cfg_t *cfg, run_spec_t *out);
/* The [cluster] timing keys (mode, a2a, overlap, spine_oversub) into c,
 * and the [model] overrides (weight_dtype) into m: shared with other
 * commands that build a cluster from a config. */
int run_cluster_load(cfg_t *cfg, cluster_t *c);
int run_model_load(cfg_t *cfg, moe_model_t *m);

/* What a run reports back (also stored in the summary table). */
typedef struct run_summary {
    int64_t run_id;
    double sim_s;             /* simulated seconds */
    double step_ms;           /* mean step time */
    double tokens_per_s_node; /* output tokens per second per node */
    double mean_par, max_par; /* per-layer PAR over steps */
} run_summary_t;

/* Runs one strategy of the spec and stores it (one transaction). */
int run_one(const run_spec_t *spec, const char *strategy, store_t *st, run_summary_t *sum);

#endif
