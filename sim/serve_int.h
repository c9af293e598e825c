/* serve_int: what the serving loop's files share (private to sim/serve*.c):
 * the request, instance and loop state and the functions one file calls in
 * another. serve.c sets a run up and tears it down; serve_loop.c is the
 * event loop; serve_metrics.c turns the loop's counters into the run's
 * metrics; serve_out.c hands rows to the recorder. */
#ifndef MOESIM_SERVE_INT_H
#define MOESIM_SERVE_INT_H

#include "progress.h"
#include <gsl/gsl_rng.h>
#include <stdint.h>
#include <time.h>

#include "locality.h"
#include "metrics.h"
#include "record.h"
#include "replan.h"
#include "replay.h"
#include "route.h"
#include "serve.h"

typedef struct sreq {
    int64_t arrival_ns, first_ns, done_ns; /* -1 until known */
    int prompt, output;
    int hit;          /* prompt tokens whose KV is cached */
    int to_compute;   /* prompt tokens prefill computes */
    int computed;     /* of those, done so far */
    int chunk;        /* tokens in the running prefill step */
    int generated;    /* output tokens made so far */
    int pdev, ddev;   /* prefill and decode device */
    int64_t next;     /* decode wait-queue link, -1: last */
} sreq_t;

typedef struct inst {
    const char *name;          /* "prefill" or "decode": metric prefixes */
    int prefill;               /* 1: prefill batches */
    int primary;               /* its steps fill steps / layer_steps / device_loads */
    cluster_t c;
    int D, L, E, redundant;
    int dev_base;              /* its device 0 in the migrations table */
    const trace_t *tr;
    place_state_t *ps;
    migr_state_t *mg;          /* owns the live layout */
    replan_t *rpl;             /* planning time, gating and hand-over to mg */
    step_sim_t *sim;
    replay_t *rp;
    route_t *router;           /* the strategy's route hook, NULL when it has none */
    loc_t *loc;                /* communication locality (token mode) */
    step_result_t res;         /* of the running (or last) step */
    int busy;                  /* a step is running */
    int64_t paused_until;      /* blocking rebalance: no step before this time */
    int64_t start_ns;          /* of the running step */
    int64_t steps;
    int *tokens;               /* [D] tokens of the running step */
    double n_tokens;           /* tokens it computes (decode: 1 + mtp_depth a sequence) */
    double made;               /* decode: output tokens it made (accepted drafts included) */
    double *counts;            /* [L][E] count mode */
    double *tr_tot;            /* [L][E] the scored counts (trace_counts rows) */
    double layout_par;         /* the first layout's mean PAR on tr_tot */
    double hindsight;          /* the same strategy planned on tr_tot (NaN: none) */
    int skip;                  /* warm-up batches replayed before the first one served
                                * ([placement] prior = past) */
    /* [workload] phases: phase i > 0 replays with its own replay and
     * router (phase 0 with rp and router above) */
    int n_ph;
    replay_t *ph_rp[PHASE_MAX];
    route_t *ph_router[PHASE_MAX];
    int64_t ph_steps[PHASE_MAX]; /* batches each later phase has replayed */
    metrics_loads_t loads;     /* per-step loads summed over the run */
    double busy_ns, bal_ns, bytes, tokens_sum;
    int64_t replans;
    const place_ops_t *ops;
    timeline_view_t tv;        /* --timeline: where its steps are drawn */
    step_observer_t obs;
} inst_t;

typedef struct srv {
    const run_spec_t *sp;
    const serve_spec_t *ss;
    const place_ops_t *ops;
    record_t *rec;             /* where the run's rows go (record.h) */
    timeline_t *tl;            /* --timeline, or NULL */
    eng_t *eng;
    int err;
    int64_t n;                 /* requests */
    sreq_t *r;
    int has_pf, has_dc;
    inst_t pf, dc;
    /* prefill */
    int64_t *pq, pq_head, pq_tail; /* FIFO waiting for prefill */
    int64_t *pact;             /* admitted, prompt not finished (in admission order) */
    int n_pact;
    int *left;                 /* [Dp] token budget left while a batch is built */
    int64_t *kv_send_free, *kv_recv_free; /* NIC free times: [Dp], [Dd] */
    /* decode */
    int64_t *dq_head, *dq_tail; /* [Dd] waiting for a batch slot */
    int64_t *dact;             /* running sequences */
    int64_t n_dact;
    int *dcount;               /* [Dd] running per device */
    int *assigned;             /* [Dd] requests headed for or on the device */
    double *kv_used;           /* [Dd] reserved KV tokens */
    /* counts */
    int64_t released, n_done, first_arrival_set;
    double in_tokens, out_tokens, pf_computed, dc_tokens, win_in, win_out;
    double seq_steps;          /* sequences summed over decode steps */
    int64_t w0, w1;            /* the measuring window */
    int kick[2];               /* a batch-forming event is pending: [prefill, decode] */
    int64_t in_sys, area_t;
    double area;
    gsl_rng *mtp_rng;          /* draft acceptance, [model] mtp_depth > 0 */
    progress_t prog;           /* the progress line (a terminal only) */
} srv_t;

/* ---- serve_loop.c */

/* Event: request i arrives (ctx is the srv_t). */
void serve_ev_arrive(eng_t *e, void *ctx, int64_t i);
/* A progress line on a terminal, at most every PROGRESS_EVERY_S (last: clear it). */
void serve_progress(srv_t *s, int64_t now, int last);

/* ---- serve_metrics.c */

/* Requests in the system change by delta at now: integrates the count over
 * the measuring window. */
void serve_in_system(srv_t *s, int64_t now, int delta);
/* The run's metrics into m (metrics.c defines each), from the request rows
 * and the loop's counters; *pr_lb gets the primary instance's per-layer
 * bounds (free it). */
void serve_metrics(srv_t *s, const store_request_t *rows, int64_t end, metrics_t *m,
                   metrics_layer_bound_t **pr_lb);

/* ---- serve_out.c */

/* The run's metrics and its per-request, per-layer and strategy rows. */
int serve_record_results(srv_t *s, metrics_t *m, int64_t end);

#endif
