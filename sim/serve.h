/* serve: serving simulation. Requests arrive, a prefill instance turns
 * prompts into KV caches and first tokens, the KV caches cross InfiniBand to
 * a decode instance that continuously batches one token per sequence per
 * step, and each instance's placement strategy re-plans while it serves,
 * its weight moves competing with dispatch traffic (disaggregated serving
 * as DeepSeek runs it: prefill EP32 on 4 nodes, decode EP144 on 18).
 *
 * The serving loop runs on its own engine (arrivals, batch ends, KV
 * arrivals, rebalance pauses); each batch is one step_run, a nested
 * sub-simulation from the batch's start time. */
#ifndef MOESIM_SERVE_H
#define MOESIM_SERVE_H

#include <stdint.h>

#include "cfg.h"
#include "metrics.h"
#include "migr.h"
#include "place.h"
#include "req.h"
#include "step.h"
#include "store.h"
#include "trace.h"

struct run_spec;

/* Which instances a run simulates. */
enum serve_instances {
    SERVE_BOTH,    /* prefill -> KV transfer -> decode */
    SERVE_DECODE,  /* decode only: a request's KV cache is there when it arrives */
    SERVE_PREFILL  /* prefill only: a request is done at its first token */
};

/* The [serving] section, typed. The decode instance is run_spec's cluster
 * ([cluster] nodes, [placement] redundant); the prefill instance has its own
 * nodes and redundancy here. */
typedef struct serve_spec {
    enum serve_instances instances;
    cluster_t prefill;            /* prefill instance (hardware of [cluster]) */
    int prefill_redundant;        /* redundant expert slots per layer in prefill */
    char prefill_trace_path[4096];/* routing trace of prefill batches ("" = [workload] trace) */
    const char *prefill_trace_name;
    int max_batch_per_device;     /* decode: sequences per device per step */
    int prefill_tokens_per_device;/* prefill: prompt tokens per device per step */
    int chunked_prefill;          /* 1: a prompt may be split over several prefill steps */
    double prefix_hit_rate;       /* share of each prompt whose KV is cached (not computed) */
    double kv_bytes_per_token;    /* KV cache bytes of one token, all layers */
    double kv_capacity_tokens;    /* KV cache tokens one decode device holds */
    double kv_cache_bytes;        /* the bytes behind it */
    enum migr_mode rebalance;     /* blocking or pipelined weight moves */
    int64_t rebalance_fixed_ns;   /* blocking: fixed cost of each pause */
    int store_every;              /* layer_steps rows for every Nth step */
    int trace_step_every;         /* steps per trace step (traces with a time axis) */
    int route_samples;            /* count mode, routing strategies: tokens routed to
                                   * estimate the biased routing law */
    int route_every;              /* steps between those estimates */
    double warmup_s;              /* latency and throughput figures ignore earlier arrivals */
    req_spec_t req;               /* the request stream */
} serve_spec_t;

/* Reads [serving] (sp's model, cluster and redundancy already loaded). */
int serve_spec_load(cfg_t *cfg, const struct run_spec *sp, serve_spec_t *out);

/* Serves the request stream with strategy ops and stores the run (one
 * transaction). trace: the routing trace of both instances, or NULL to read
 * the config's. out gets the run id and the metrics stored. */
int serve_one(const struct run_spec *sp, const place_ops_t *ops, const trace_t *trace,
              store_t *st, metrics_run_t *out);

/* Progress lines on a terminal say "run i of n"; the compare command sets
 * it before each run (runs_done of n_runs). Quiet when stderr is not a
 * terminal. */
void serve_progress_runs(int runs_done, int n_runs);

#endif
