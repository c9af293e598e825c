/* locality: how far each token's routing reaches, the communication
 * locality Huawei credits for OmniPlacement's gain. Per run and MoE layer:
 * the bytes that cross nodes, how many nodes and devices each token
 * touches (mean and histogram), and the device x device traffic summed over
 * layers (the report's heatmap). Computed from the routed tokens and the
 * replicas the step picks for them, in token mode. */
#ifndef MOESIM_LOCALITY_H
#define MOESIM_LOCALITY_H

#include "metrics.h"
#include "place.h"
#include "record.h"
#include "replay.h"
#include "step.h"

typedef struct loc {
    int L, D, N, dpn, k;
    double copy_bytes;   /* one token copy: dispatch plus combine bytes */
    double disp_bytes;   /* of which dispatch (source to expert's device) */
    int per_node;        /* 1: one IB copy per token and remote node (DeepEP normal) */
    double tokens;       /* token-layers seen, all layers */
    double *tok;         /* [L] tokens seen per layer */
    double *cross;       /* [L] bytes crossing nodes */
    double *bytes;       /* [L] bytes between distinct devices */
    double *nodes_hist;  /* [L][N + 1] tokens by the nodes they touch */
    double *dev_hist;    /* [L][k + 1] tokens by the devices they touch */
    double *traffic;     /* [D][D] bytes src -> dst, all layers (dispatch src->dst,
                          * combine dst->src) */
    int *seen;           /* [D] scratch */
    int stamp;
} loc_t;

/* For cluster c and model m; per_node as step.c sends (normal all-to-all). */
loc_t *loc_new(const cluster_t *c, const moe_model_t *m, int per_node);
void loc_free(loc_t *a);
/* Adds one step: rt's tokens on layout lo, replicas chosen by pick (NULL:
 * place_pick_default), as step_run chooses them; dropped choices (-1) are
 * skipped. */
void loc_step(loc_t *a, const route_step_t *rt, const place_layout_t *lo, step_pick_fn pick,
              void *pick_ctx);
/* Stores the per-layer rows, the histograms and the traffic matrix, and
 * sets the run's locality metrics in m (nothing when no token was seen). */
int loc_store(const loc_t *a, record_t *rec, metrics_t *m);

#endif
