/* place_omni: Huawei OmniPlacement's per-layer planner (omni-infer,
 * omni_placement, ExpertLoadBalancer), callable without a run so tests and
 * the benchmark can drive it. The "omni" strategy in place_omni.c wraps it
 * with the activation window and the re-plan timer.
 *
 * Per layer: gate on the current placement's max/mean device load, build one
 * candidate per redundancy budget (heap allocation of copies, packing with
 * capacity and anti-affinity, host interleave), keep the best candidate only
 * if it clearly beats the current placement. */
#ifndef MOESIM_PLACE_OMNI_H
#define MOESIM_PLACE_OMNI_H

#include "place.h"

/* Published defaults (ExpertLoadBalancer's constructor defaults and the
 * dynamic decode_config.yaml). */
#define PLACE_OMNI_GATE 1.1      /* input_ratio_threshold */
#define PLACE_OMNI_IMPROVE 0.05  /* improvement_threshold */
#define PLACE_OMNI_BAD 300.0     /* high_low_ratio_threshold */
#define PLACE_OMNI_MAX_COPIES 10 /* max_redundant_per_expert */

/* What the planner did with one layer. */
enum place_omni_outcome {
    PLACE_OMNI_GATE_OK,      /* max/mean below the gate: already balanced, left alone */
    PLACE_OMNI_BAD_DATA,     /* max/min above the bad-data limit: left alone */
    PLACE_OMNI_NO_CANDIDATE, /* every candidate failed to pack: left alone */
    PLACE_OMNI_NO_GAIN,      /* best candidate not better by the margin: left alone */
    PLACE_OMNI_CHANGED       /* the best candidate was adopted */
};

typedef struct place_omni_cfg {
    double gate;          /* leave a layer whose max/mean device load is below this */
    double improve;       /* adopt only a candidate with max/mean < current - improve */
    double bad;           /* leave a layer whose max/min device load is above this */
    int max_copies;       /* copies one expert may have (max_redundant_per_expert) */
    int devices_per_host; /* host size for the interleave (8 GPU nodes, 16 Ascend) */
} place_omni_cfg_t;

/* Scratch space of the planner, sized once for E experts, D devices and at
 * most max_spd slots per device, so a re-plan allocates nothing per layer. */
typedef struct place_omni_ws place_omni_ws_t;

place_omni_ws_t *place_omni_ws_new(int n_experts, int n_devices, int max_spd);
void place_omni_ws_free(place_omni_ws_t *ws);

/* Fills c with the published defaults; devices_per_host as given. */
void place_omni_defaults(place_omni_cfg_t *c, int devices_per_host);

/* max/mean of v[n] as OmniPlacement computes it (1 when all are zero). */
double place_omni_ratio(const double *v, int n);

/* One candidate for redundancy budget b: E + b slots, (E + b) / D on every
 * device, from expert loads w[E]. Writes slot_expert[E + b] (slot s on
 * device s / ((E + b) / D)) and its max/mean into *ratio. Returns 1 when
 * built, 0 when the budget cannot be spent under the per-expert copy limit
 * or the packing gets stuck (OmniPlacement skips such a candidate). */
int place_omni_candidate(place_omni_ws_t *ws, const place_omni_cfg_t *c, const double *w, int E,
                         int D, int b, int *slot_expert, double *ratio);

/* Plans one layer currently placed as cur, with expert loads w[E] split
 * evenly over each expert's replicas, on D devices with at most max_spd
 * slots per device. On PLACE_OMNI_CHANGED, slot_expert[*spd * D] and *spd
 * hold the new layer. ratio_in/ratio_out (may be NULL) get the current
 * max/mean and the adopted or best candidate's. */
enum place_omni_outcome place_omni_layer(place_omni_ws_t *ws, const place_omni_cfg_t *c,
                                         const double *w, int E, int D, const place_layer_t *cur,
                                         int max_spd, int *slot_expert, int *spd,
                                         double *ratio_in, double *ratio_out);

/* Plans every layer of cur from loads w[n_layers][n_experts]; *out is a new
 * layout (caller frees) with the changed layers replaced, or NULL when no
 * layer changed. Returns the number of layers changed, or MS_ERR. */
int place_omni_plan(place_omni_ws_t *ws, const place_omni_cfg_t *c, const double *w,
                    const place_layout_t *cur, int max_spd, place_layout_t **out);

/* OmniPlacement's replica choice ("communication domain"): the source
 * device's own replica, else a same-host one (rank % count), else a remote
 * one (rank % count), hosts of devices_per_host devices. */
int place_omni_pick(const place_layout_t *lo, int layer, int expert, int src,
                    int devices_per_host);

#endif
