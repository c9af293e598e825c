/* step: one decode or prefill step of the cluster. Per MoE layer every
 * device runs attention on its own tokens, dispatches their hidden states
 * to the devices holding the chosen experts, computes its experts (grouped
 * GEMM roofline, models/cost.h), and the results are combined back; a
 * device starts the next layer when all of its tokens are back.
 *
 * Two ways to time it (cluster_t.mode): "flow" runs the step as events with
 * the all-to-all as max-min fair flows over NVLink and NIC ports
 * (models/net.h); "analytic" takes per layer the slowest device's compute
 * and the busiest port's bytes / bandwidth, in closed form and about a
 * thousand times faster. docs/cost-model.md derives both. */
#ifndef MOESIM_STEP_H
#define MOESIM_STEP_H

#include <stdint.h>

#include "eng.h"
#include "hw.h"
#include "moe.h"
#include "place.h"
#include "replay.h"

/* How transfers are timed: max-min fair flows on the step's engine
 * ("flow"), or a closed form per layer ("analytic": max over devices of
 * bytes / bandwidth plus compute). */
enum step_mode { STEP_FLOW, STEP_ANALYTIC };

/* How tokens cross nodes, after DeepEP's two kernel families. Normal: a
 * token goes once over IB to the GPU of the same local index on each
 * target node, which forwards it over NVLink (one IB copy per token per
 * node). Low-latency: every GPU writes directly to every GPU (IB between
 * nodes, NVLink inside one). Auto: low-latency for decode, normal for
 * prefill, as DeepSeek deploys them. */
enum step_a2a { STEP_A2A_AUTO, STEP_A2A_NORMAL, STEP_A2A_LOW_LATENCY };

typedef struct cluster {
    int n_nodes;
    int devices_per_node;
    int n_devices;
    hw_t hw;
    enum step_mode mode;
    enum step_a2a a2a;
    int overlap;          /* 1: two micro-batches, one's communication under the other's
                           * compute (DeepSeek's decode/prefill overlap) */
    double spine_oversub; /* > 1: each node's uplink to the spine carries
                           * devices_per_node * nic_bw / spine_oversub; <= 1: full bisection */
    /* Scale-up domain: devices joined by NVLink/UB, a multiple of
     * devices_per_node (an NVL72 rack, a CloudMatrix384 supernode); links
     * between domains are NICs. 0: one node. */
    int domain;
    /* Attention parallelism (models/cost.h, cost_shard_t): attn_tp devices
     * of one domain run attention together (1: data-parallel attention).
     * With pp > 1 stages the cluster here is ONE stage (n_nodes and
     * n_devices are a stage's: the expert-parallel group), the step runs
     * every stage on a copy of it and micro_batches micro-batches through
     * the pipeline. 0 means 1 for each. */
    int attn_tp, pp, micro_batches;
} cluster_t;

static inline int cluster_domain(const cluster_t *c) {
    return c->domain > 0 ? c->domain : c->devices_per_node;
}
static inline int cluster_pp(const cluster_t *c) { return c->pp > 1 ? c->pp : 1; }
static inline int cluster_tp(const cluster_t *c) { return c->attn_tp > 1 ? c->attn_tp : 1; }
/* Nodes of the whole deployment (every pipeline stage's). */
static inline int cluster_total_nodes(const cluster_t *c) { return c->n_nodes * cluster_pp(c); }

static inline int cluster_node(const cluster_t *c, int dev) { return dev / c->devices_per_node; }

/* What one step produced. Arrays are owned by the step_sim that filled them. */
typedef struct step_result {
    int64_t start_ns, end_ns;
    int n_layers;          /* MoE layers simulated: the model's, then one per MTP pass (their
                            * rows follow the model's in the arrays below) */
    int64_t *layer_ns;     /* [n_layers] MoE layer time: from the last device finishing the
                            * previous layer to the last finishing this one */
    double *dev_load;      /* [n_layers][n_devices] token-expert pairs served */
    double *expert_load;   /* [n_layers][n_experts] token-expert pairs */
    const double *expert_ns; /* [micro-batches][n_layers][n_devices] routed-expert compute
                              * charged (cost_experts_ns), ns */
    double dispatch_bytes; /* all layers, between distinct devices (IB copies counted once
                            * per node in normal mode, plus NVLink forwards) */
    double combine_bytes;
    int64_t pre_ns;        /* dense layers before the first MoE layer (slowest device) */
    int64_t post_ns;       /* output head after the last MoE layer */
    uint64_t events;       /* engine events run (flow mode) */
    uint64_t net_solves;   /* max-min re-solves (flow mode), for benchmarks */
} step_result_t;

/* The phases a step observer is told about, per device. */
enum step_span { STEP_SPAN_DISPATCH, STEP_SPAN_EXPERT, STEP_SPAN_COMBINE, STEP_SPAN_N };

/* Watches a step's phases as they are simulated, so that a caller can draw
 * a timeline without the engine doing file I/O. span is called once per
 * (device, micro-batch, layer, phase) with a positive duration: dispatch
 * from the device's attention ending (its tokens leave) until the tokens
 * bound for its experts have all arrived; expert from the start to the end
 * of its routed-expert GEMM; combine from its experts ending until its own
 * tokens' results are all back. Analytic mode reports its closed form: the
 * busiest port's dispatch and combine time on every device, each device's
 * own expert time. Times are simulated ns. */
typedef struct step_observer {
    void (*span)(void *ctx, enum step_span kind, int dev, int mb, int layer, int64_t start_ns,
                 int64_t end_ns);
    void *ctx;
} step_observer_t;

/* Replica choice hook: the slot serving a token of device src for expert. */
typedef int (*step_pick_fn)(void *ctx, const place_layout_t *lo, int layer, int expert, int src);

/* What one step is asked to simulate. */
typedef struct step_in {
    int64_t start_ns;             /* when the step starts */
    const place_layout_t *layout;
    const route_step_t *route;    /* token-level routing; NULL in count mode */
    const double *expert_load;    /* count mode: [n_layers][n_experts] pairs, used when
                                   * route is NULL */
    const int *tokens;            /* count mode: [n_devices] tokens on each device */
    double kv_len;                /* mean KV-cache length per token (attention) */
    int prefill;                  /* 1: a prefill batch, 0: decode */
    step_pick_fn pick;            /* NULL: place_pick_default */
    void *pick_ctx;
    const double *bg_bytes;       /* [4][n_devices] background bytes during the step (weight
                                   * migrations): sent over NVLink, sent over the NIC,
                                   * received over NVLink, received over the NIC; charged
                                   * as the busiest port's time to carry them, spread over
                                   * the layers (an upper bound). NULL: none */
    const step_observer_t *obs;   /* NULL: nobody watches (the fast path) */
    int skip_head;                /* 1: no output head (a pipeline stage before the last) */
} step_in_t;

typedef struct step_sim step_sim_t;

step_sim_t *step_new(const cluster_t *c, const moe_model_t *m);
void step_free(step_sim_t *s);
/* Simulates one step from in->start_ns on its own engine (a step is a
 * sub-simulation, so callers with an engine of their own, such as the
 * serving loop, nest it freely). out's arrays stay valid until the next
 * call. In count mode tokens are assumed to spread over experts as the
 * loads say, each token's k experts drawn independently (so a token meets
 * a device holding a share p of the pairs with probability 1-(1-p)^k), and
 * a replicated expert's load is split evenly over its replicas. */
int step_run(step_sim_t *s, const step_in_t *in, step_result_t *out);

/* Tests only: 1 makes count-mode flow in low-latency mode take the general
 * path (pieces and waits counted pair by pair, O(D^2) a layer) instead of
 * its O(D) one, so that the two can be compared; 0 (the default) undoes it. */
void step_count_pairwise(step_sim_t *s, int on);

/* Roofline time of routed-expert compute on one device, in ns: pairs
 * token-expert pairs spread evenly over active experts, as one grouped
 * GEMM (models/cost.h). */
double step_compute_ns(const cluster_t *c, const moe_model_t *m, double pairs, int active_experts);

/* Names for configs and messages. */
const char *step_mode_name(enum step_mode mode);
const char *step_a2a_name(enum step_a2a a2a);

#endif
