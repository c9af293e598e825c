/* serve_spec: the [serving] section of a config as a plain spec: which
 * instances run, their shapes, batching, KV cache, rebalancing and the
 * request stream. Read once when the experiment is loaded (run_spec.c). */
#ifndef MOESIM_SERVE_SPEC_H
#define MOESIM_SERVE_SPEC_H

#include <stdint.h>

#include "cfg.h"
#include "migr.h"
#include "moe.h"
#include "req.h"
#include "step.h"

/* Which instances a run simulates. */
enum serve_instances {
    SERVE_BOTH,    /* prefill -> KV transfer -> decode */
    SERVE_DECODE,  /* decode only: a request's KV cache is there when it arrives */
    SERVE_PREFILL  /* prefill only: a request is done at its first token */
};

/* How a serving run routes its tokens. */
enum serve_routing {
    SERVE_ROUTE_AUTO,  /* counts in the analytic mode, every token in the flow mode */
    SERVE_ROUTE_COUNT, /* each batch's expert counts drawn from the trace's law */
    SERVE_ROUTE_TOKEN  /* every token of every layer replayed and routed */
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
    enum serve_routing routing;   /* count or token routing (AUTO: by step mode) */
    double warmup_s;              /* latency and throughput figures ignore earlier arrivals */
    req_spec_t req;               /* the request stream */
} serve_spec_t;

/* Reads [serving] for a decode instance of cluster `decode` with
 * `redundant` extra slots per layer, serving `model`. */
int serve_spec_load(cfg_t *cfg, const cluster_t *decode, const moe_model_t *model, int redundant,
                    serve_spec_t *out);

#endif
