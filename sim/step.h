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

typedef struct cluster {
    int n_nodes;
    int devices_per_node;
    int n_devices;
    hw_t hw;
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

typedef struct step_sim step_sim_t;

step_sim_t *step_new(const cluster_t *c, const moe_model_t *m);
void step_free(step_sim_t *s);
/* Simulates one step starting at eng_now(eng) on the given layout and
 * routing; pick chooses the replica (NULL: place_pick_default). */
int step_run(step_sim_t *s, eng_t *eng, const place_layout_t *lo, const route_step_t *rt,
             int (*pick)(void *ctx, const place_layout_t *lo, int layer, int expert, int src),
             void *pick_ctx, step_result_t *out);

/* Roofline time of routed-expert compute on one device, in ns: the larger
 * of FLOPs / achievable peak and (weights of active experts + activations)
 * bytes / achievable HBM bandwidth. */
double step_compute_ns(const cluster_t *c, const moe_model_t *m, double pairs, int active_experts);

#endif
