/* replan: the road from a strategy's new layout to the layout that serves,
 * the same in fixed-batch runs (run.c) and serving (serve.c). A new layout
 * takes effect only after its planning time and then its weight copies
 * (migr.c, the links' model), and a re-plan whose predicted gain does not
 * pay for its copies is skipped and counted.
 *
 * At each step (batch) boundary the run loop calls, in this order:
 * replan_batch_end() (copies that rode the step arrive), replan_observe()
 * (the step's loads), then replan_poll(), which asks the strategy for a new
 * layout unless one is still being planned, and hands a layout whose
 * planning time has passed to the migration: optionally permuted so the
 * fewest weights move (place_move_keep: PAR unchanged), then gated. A plan
 * ready between two boundaries waits for the next one: layouts switch
 * between forward passes. While one plan is being planned the strategy is
 * not asked again (its planner is busy); a plan handed over while copies of
 * an earlier one are still pending replaces those (migr_plan). */
#ifndef MOESIM_REPLAN_H
#define MOESIM_REPLAN_H

#include <stdint.h>

#include "cfg.h"
#include "metrics.h"
#include "migr.h"
#include "moe.h"
#include "place.h"
#include "record.h"
#include "step.h"
#include "timeline.h"

/* How re-plans are charged and gated ([placement] keys, docs/config.md). */
typedef struct replan_spec {
    int64_t plan_ns;       /* planning time charged per re-plan ([placement] plan_ms, or
                            * [strategy.NAME] plan_ms) */
    int plan_measured;     /* plan_ms = measured: the wall time of the strategy's replan
                            * call instead (not deterministic) */
    int min_move;          /* replan_min_move: permute each new layout so the fewest
                            * weights move, PAR unchanged */
    double min_gain;       /* replan_min_gain: skip below this predicted step-time gain
                            * (a share of the step; 0: off) */
    long horizon_steps;    /* replan_horizon_steps: skip unless the predicted gain over
                            * this many steps pays for the copies' time (0: off) */
    long window_steps;     /* replan_window_steps: recent loads are exponentially
                            * weighted over about this many steps */
    enum migr_mode mode;   /* fixed-batch runs: [placement] rebalance */
    int64_t fixed_ns;      /* [placement] rebalance_fixed_s */
} replan_spec_t;

/* Reads the keys for strategy ops (its [strategy.NAME] plan_ms overrides
 * [placement] plan_ms); every bad value names file:line and the fix. */
int replan_spec_load(cfg_t *cfg, const place_ops_t *ops, replan_spec_t *out);

/* One instance's re-planning (a fixed-batch run has one, serving one per
 * instance). */
typedef struct replan {
    replan_spec_t sp;
    migr_state_t *mg;          /* not owned: the instance's copies (it owns the live layout) */
    step_sim_t *pred;          /* analytic count-mode step predicting step times (gating) */
    double *recent;            /* [n_layers][n_experts] recent pairs per step */
    int *tokens;               /* [n_devices] tokens per device of the last step */
    double kv_len;
    int prefill;
    int64_t seen;              /* steps observed */
    place_layout_t *pending;   /* planned, waiting for its planning time (owned) */
    int64_t planned_ns;        /* when the pending plan was asked for */
    int64_t ready_ns;          /* when the pending plan is ready */
    int64_t busy_since;        /* pipelined copies pending since (-1: none) */
    /* over the run */
    int64_t done;              /* re-plans handed to the migration */
    int64_t skipped;           /* re-plans the gate skipped */
    double skipped_bytes;      /* weights the skipped ones would have copied */
    double kept_bytes;         /* weights replan_min_move spared */
    int64_t plan_ns;           /* from each plan to its hand-over (or the run's end) */
    int64_t migr_ns;           /* time with copies pending or moving; blocking: the pauses */
    /* the last decision, for tests and messages */
    double last_gain;          /* predicted share of the step saved */
    int64_t last_gain_ns;      /* predicted ns saved per step */
    int64_t last_copy_ns;      /* the copies' time (migr_estimate) */
} replan_t;

/* mg: the instance's migrations; c, m: its cluster and model (for the step
 * predictions); kv_len, prefill: the batches it runs. */
replan_t *replan_new(const replan_spec_t *sp, migr_state_t *mg, const cluster_t *c,
                     const moe_model_t *m, double kv_len, int prefill);
void replan_free(replan_t *r);

/* After a step: copies that rode it arrive (migr_batch_end) and the time
 * with copies in flight is counted. Returns the layers that switched. */
int replan_batch_end(replan_t *r, int64_t start_ns, int64_t end_ns);
/* The step's loads: expert_load[n_layers][n_experts] (further rows, MTP
 * passes, are ignored) and tokens[n_devices]. */
void replan_observe(replan_t *r, const double *expert_load, const int *tokens);
/* At a step boundary now_ns: returns 1 when a layout was handed to the
 * migration (info says what it amounts to, as migr_plan does; blocking:
 * the caller pauses info->pause_ns, then calls migr_finish), 0 when none
 * (nothing planned, still planning, skipped, or no change), or MS_ERR. */
int replan_poll(replan_t *r, const place_ops_t *ops, place_state_t *ps, int64_t now_ns,
                migr_plan_info_t *info);
/* The run ended at end_ns: copies still pending and a plan still being
 * planned count until then. */
void replan_end(replan_t *r, int64_t end_ns);

/* The re-planning metrics of n instances (NULL entries skipped) summed
 * into m: replans_skipped, replan_skipped_gb, replan_kept_gb, plan_time_s,
 * migration_s (metrics.h). */
void replan_metrics(const replan_t *const *r, int n, metrics_t *m);

/* The weight copies mg finished since the last call, as migration rows of
 * rec (devices offset by dev_base: the instance's first device in the
 * run's numbering) and, with tl, the timeline's arrows. Fixed-batch runs
 * and serving both hand their copies on through this one function. */
int replan_record_copies(record_t *rec, migr_state_t *mg, int dev_base, timeline_t *tl);

#endif
