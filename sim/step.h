/* step: one decode step of the cluster as events. For each MoE layer every
 * device dispatches its tokens' hidden states to the devices holding the
 * chosen experts, each device computes its experts (roofline), results are
 * combined back, and a device starts the next layer when all of its tokens
 * are back. The slowest device sets the layer's time. */
#ifndef MOESIM_STEP_H
#define MOESIM_STEP_H

#include <stdint.h>

#include "eng.h"
#include "hw.h"
#include "moe.h"
#include "place.h"
#include "replay.h"

/* How transfers are timed: events with port sharing ("flow"; the fidelity
 * work makes this max-min fair flows), or a closed form per layer
 * ("analytic": max over devices of bytes / bandwidth plus compute). */
enum step_mode { STEP_FLOW, STEP_ANALYTIC };

typedef struct cluster {
    int n_nodes;
    int devices_per_node;
    int n_devices;
    hw_t hw;
    enum step_mode mode;
} cluster_t;

static inline int cluster_node(const cluster_t *c, int dev) { return dev / c->devices_per_node; }

/* What one step produced. Arrays are owned by the step_sim that filled them. */
typedef struct step_result {
    int64_t start_ns, end_ns;
    int64_t *layer_ns;     /* [n_layers] layer time: slowest device */
    double *dev_load;      /* [n_layers][n_devices] token-expert pairs served */
    double *expert_load;   /* [n_layers][n_experts] token-expert pairs */
    double dispatch_bytes; /* all layers, between distinct devices */
    double combine_bytes;
} step_result_t;

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
                                   * received over NVLink, received over the NIC; spread
                                   * evenly over the step's 2 x n_layers transfer phases.
                                   * NULL: none */
} step_in_t;

typedef struct step_sim step_sim_t;

step_sim_t *step_new(const cluster_t *c, const moe_model_t *m);
void step_free(step_sim_t *s);
/* Simulates one step from in->start_ns on its own engine (a step is a
 * sub-simulation, so callers with an engine of their own, such as the
 * serving loop, nest it freely). out's arrays stay valid until the next
 * call. */
int step_run(step_sim_t *s, const step_in_t *in, step_result_t *out);

/* Roofline time of routed-expert compute on one device, in ns: the larger
 * of FLOPs / achievable peak and (weights of active experts + activations)
 * bytes / achievable HBM bandwidth. */
double step_compute_ns(const cluster_t *c, const moe_model_t *m, double pairs, int active_experts);

#endif
