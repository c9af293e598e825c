/* run_spec: an experiment's config as a plain, typed spec (cluster, model,
 * trace, placement, and the [serving] section when there is one), checked
 * before anything runs. The spec embeds no engine state: the run loop
 * (run.c) and the serving loop (serve.c) both read it, and nothing here
 * calls either of them. */
#ifndef MOESIM_RUN_SPEC_H
#define MOESIM_RUN_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "gate.h"
#include "moe.h"
#include "phase.h"
#include "place.h"
#include "prior.h"
#include "serve_spec.h"
#include "step.h"

struct trace;

#define RUN_MAX_STRATEGIES 16
#define RUN_MTP_MAX 8         /* deepest MTP draft a config may ask for */

/* The typed experiment, read from a config. */
typedef struct run_spec {
    cfg_t *cfg;               /* not owned */
    const char *name;
    uint64_t seed;
    int seeds;                /* compare: runs per strategy, seeds seed, seed + 1, ... */
    int steps;                /* decode steps to simulate */
    cluster_t cluster;
    moe_model_t model;
    char trace_path[4096];    /* resolved against the config's folder */
    const char *trace_name;   /* as written in the config (with phases: the phases key) */
    phases_t phases;          /* [workload] phases; .n == 0 without them */
    int tokens_per_device;    /* decode batch per device */
    double kv_len;            /* mean KV-cache length per token ([workload] kv_len) */
    int prefill;              /* [workload] phase = prefill: fixed prefill batches */
    double prefix_hit_rate;   /* prefill: share of each prompt served from the KV cache */
    double mtp_accept[RUN_MTP_MAX]; /* [model] mtp_accept: chance draft i is accepted given
                                     * drafts 0..i-1 were (model.mtp_depth of them) */
    double mtp_tokens;        /* expected tokens a sequence makes per decode step:
                               * 1 + sum_i prod_{j<=i} mtp_accept[j] */
    int redundant;            /* redundant expert slots per layer */
    prior_spec_t prior;       /* [placement] prior: what the strategies plan from */
    int group_limit;          /* [routing] group_limit: the model's group-limited top-k */
    int max_nodes;            /* [routing] node_limit on: nodes a token may reach; 0 off */
    int n_strategies;
    char strategies[RUN_MAX_STRATEGIES][32];
    int serving;              /* 1: the config has a [serving] section (serve.h) */
    serve_spec_t serve;       /* its keys, when serving */
} run_spec_t;

/* Reads and checks the experiment; every complaint names file:line. */
int run_spec_load(cfg_t *cfg, run_spec_t *out);
/* The [cluster] timing keys (mode, a2a, overlap, spine_oversub) into c,
 * and the [model] overrides (weight_dtype, mtp_depth) into m: shared with
 * other commands that build a cluster from a config. */
int run_cluster_load(cfg_t *cfg, cluster_t *c);
int run_model_load(cfg_t *cfg, moe_model_t *m);
/* The [cluster] parallelism keys (scaleup_domain, attn_tp, pp,
 * micro_batches) into c, checked against its nodes and devices (c's nodes
 * and devices set first) and the batch; with pp > 1, c becomes one stage
 * (step.h). */
int run_parallel_load(cfg_t *cfg, cluster_t *c, int tokens_per_device);

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

/* The trace matches the model (layers, experts), or an error naming both. */
int run_spec_check_trace(const run_spec_t *sp, const struct trace *t);

/* The routing replayed on cluster c (group and node limits as the model
 * and [routing] say), shared by replay and every strategy. */
int run_gate_spec(const run_spec_t *sp, const cluster_t *c, gate_spec_t *out);

/* What strategy ops is told about an instance of cluster c with `redundant`
 * extra slots; sec receives its config section ("strategy.<name>"). */
place_env_t run_strategy_env(const run_spec_t *sp, const cluster_t *c, int redundant,
                             const place_ops_t *ops, char *sec, size_t n);

#endif
