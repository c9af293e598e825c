/* run: one experiment from its config: build the cluster, model, trace and
 * strategy, simulate the steps on the engine, and write the run to the
 * results store. This is the one way through: config and trace in ->
 * placement -> cluster simulation -> metrics -> SQLite. */
#ifndef MOESIM_RUN_H
#define MOESIM_RUN_H

#include <stdint.h>

#include "cfg.h"
#include "metrics.h"
#include "moe.h"
#include "place.h"
#include "serve.h"
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
    int serving;              /* 1: the config has a [serving] section (serve.h) */
    serve_spec_t serve;       /* its keys, when serving */
} run_spec_t;

/* Reads and checks the experiment; every complaint names file:line. */
int run_spec_load(cfg_t *cfg, run_spec_t *out);
/* The [cluster] timing keys (mode, a2a, overlap, spine_oversub) into c,
 * and the [model] overrides (weight_dtype) into m: shared with other
 * commands that build a cluster from a config. */
int run_cluster_load(cfg_t *cfg, cluster_t *c);
int run_model_load(cfg_t *cfg, moe_model_t *m);

/* What a run reports back: its id and metrics (also stored in the
 * summary table; the CLI prints what it reads back from there). */
typedef metrics_run_t run_summary_t;

/* The canonical config text of one strategy's run (the config with
 * [placement] strategies set to just that strategy) and its hash as 16 hex
 * digits into hash: what runs.config and runs.config_hash hold, and how a
 * sweep recognises a run already done. Caller frees the text. */
char *run_config_text(const cfg_t *cfg, const char *strategy, char hash[17]);

/* Checks what run_spec_load cannot without the trace: reads it, matches it
 * against the model, and starts (then drops) each strategy so every
 * [strategy.<name>] key is read and checked. Then cfg_check_unused() can
 * tell unknown keys before anything runs. */
int run_validate(const run_spec_t *spec);
/* run_validate(), then no config key went unread: what to call before
 * writing anything. */
int run_spec_check(const run_spec_t *spec);

/* What strategy ops is told about an instance of cluster c with `redundant`
 * extra slots; sec receives its config section ("strategy.<name>"). */
place_env_t run_strategy_env(const run_spec_t *sp, const cluster_t *c, int redundant,
                             const place_ops_t *ops, char *sec, size_t n);

/* Runs one strategy of the spec and stores it (one transaction). */
int run_one(const run_spec_t *spec, const char *strategy, store_t *st, run_summary_t *sum);

/* Per-layer rows of a finished run (device_loads, layer_bounds, replicas,
 * trace_counts) from its final layout, [L][E] trace counts, the loads the
 * run summed and their per-layer bounds (run_layer_bounds). */
int run_store_layers(store_t *st, int64_t run, const place_layout_t *lo, const double *trace_cnt,
                     const metrics_loads_t *a, const metrics_layer_bound_t *lb);
/* The per-layer bounds of summed loads for layout lo's slot counts. */
void run_layer_bounds(const metrics_loads_t *a, const place_layout_t *lo,
                      metrics_layer_bound_t *lb);
/* The strategy's own metrics (place_ops_t.metrics, if any) as summary
 * rows, each name behind prefix ("" or, for a prefill instance, "prefill_"). */
int run_store_strategy_metrics(store_t *st, int64_t run, const place_ops_t *ops,
                               place_state_t *ps, const char *prefix);

#endif
