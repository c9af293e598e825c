/* migr: expert-weight migration while serving. When a strategy re-plans,
 * the difference between the layout that serves now and the new one becomes
 * weight copies between devices, moved either all at once while serving
 * pauses (blocking, as vLLM's synchronous rebalance) or a few per batch while
 * serving goes on, each layer switching to its new layout once its weights
 * have arrived (pipelined, as OmniPlacement does).
 *
 * Transfers use the cluster's links with the same port model as a step:
 * NVLink inside a node, the NIC between nodes, and a transfer ends when the
 * busier of its sender's and receiver's ports has drained. */
#ifndef MOESIM_MIGR_H
#define MOESIM_MIGR_H

#include <stdint.h>

#include "place.h"
#include "step.h"

enum migr_mode {
    MIGR_BLOCKING, /* serving pauses until every copy has arrived */
    MIGR_PIPELINED /* at most one copy into and one out of each device per batch */
};

/* Rows of the [4][n_devices] port array handed to step_in_t.bg_bytes. */
enum { MIGR_OUT_NVL, MIGR_OUT_NIC, MIGR_IN_NVL, MIGR_IN_NIC };

/* One expert weight copy. */
typedef struct migr {
    int layer, expert;
    int src, dst;             /* src == dst: a second copy on one device, copied locally */
    double bytes;
    int64_t start_ns, done_ns;
} migr_t;

/* What a re-plan amounts to. */
typedef struct migr_plan_info {
    int layers_changed;       /* layers whose slot -> expert map differs */
    int copies;               /* weight copies it needs */
    double bytes;             /* their bytes (local copies included) */
    int64_t pause_ns;         /* blocking: how long serving stops (0 when pipelined) */
} migr_plan_info_t;

typedef struct migr_state {
    enum migr_mode mode;
    cluster_t c;
    double expert_bytes;      /* bytes of one routed expert's weights */
    int64_t fixed_ns;         /* blocking: fixed cost added to each pause */
    place_layout_t *live;     /* the layout that serves now (owned) */
    place_layout_t *target;   /* the layout being moved to, NULL when none (owned) */
    int *left;                /* [n_layers] copies of the layer not yet arrived */
    migr_t *pend;             /* copies not yet started (pipelined), in layer order */
    int n_pend, cap_pend;
    migr_t *flight;           /* copies riding the current batch */
    int n_flight, cap_flight;
    migr_t *log;              /* finished copies not yet taken by migr_take_log */
    int n_log, cap_log;
    double *bg;               /* [4][n_devices] bytes the current batch carries for copies */
    double *sent;             /* [n_devices] bytes each device has sent as a source */
    double total_bytes;       /* copies made over the run (a re-plan drops copies of the
                               * previous one not yet started: they are not counted) */
    int64_t total_copies;
    int64_t pause_ns;         /* blocking pauses over the run */
} migr_state_t;

/* Takes ownership of live (the strategy's first layout). */
migr_state_t *migr_new(enum migr_mode mode, const cluster_t *c, double expert_bytes,
                       int64_t fixed_ns, place_layout_t *live);
void migr_free(migr_state_t *m);

/* A strategy's new layout (ownership taken) at a batch boundary. Blocking:
 * every copy starts at now_ns, info->pause_ns says how long serving must
 * stop, and migr_finish() installs the layout afterwards. Pipelined: layers
 * that need no copy switch at once, the rest as their copies arrive. A new
 * plan replaces copies of an older one not yet started. */
void migr_plan(migr_state_t *m, place_layout_t *next, int64_t now_ns, migr_plan_info_t *info);
/* What migr_plan(next) would amount to from the layout that serves now,
 * changing nothing: its copies and bytes, and in pause_ns how long they
 * take moved all at once on the links (the blocking model without the
 * fixed cost), whatever the mode. What a re-plan's copies cost, for
 * deciding whether to make it (sim/replan.c). */
void migr_estimate(const migr_state_t *m, const place_layout_t *next, migr_plan_info_t *info);
/* Blocking: the pause is over; the new layout serves. */
void migr_finish(migr_state_t *m);

/* Pipelined, around each batch: picks this batch's copies (one into and one
 * out of each device at most) and returns the background bytes for
 * step_in_t.bg_bytes, or NULL when nothing moves. */
const double *migr_batch_begin(migr_state_t *m, int64_t start_ns);
/* The batch ended: its copies have arrived (not before the batch's end,
 * since a layer switches between forward passes); finished layers switch.
 * Returns how many layers switched. */
int migr_batch_end(migr_state_t *m, int64_t start_ns, int64_t end_ns);

/* 1 while copies are pending or moving. */
static inline int migr_busy(const migr_state_t *m) { return m->target != NULL; }
/* Finished copies since the last call (for the migrations table); the array
 * stays valid until the next migr_* call. */
const migr_t *migr_take_log(migr_state_t *m, int *n);

#endif
