/* prior: where a placement strategy's first knowledge of the expert loads
 * comes from, so that no run scores a strategy on data it planned from
 * unless it says so. One function builds every strategy's prior, for
 * fixed-batch runs, serving instances and `moesim place` alike.
 *
 *   none        no statistics: the strategy's layout for zero loads
 *   past        the loads of a warm-up window of steps simulated before
 *               the measured ones (left out of every measured figure)
 *   trace:PATH  the summed counts of another trace file, as a deployment
 *               plans from an earlier dump (SGLang --init-expert-location)
 *   oracle      the summed counts of the very trace the run is scored on:
 *               an in-sample bound no deployment has, labelled so */
#ifndef MOESIM_PRIOR_H
#define MOESIM_PRIOR_H

#include <stddef.h>

#include "cfg.h"
#include "place.h"
#include "replay.h"
#include "trace.h"

enum prior_kind { PRIOR_NONE, PRIOR_PAST, PRIOR_TRACE, PRIOR_ORACLE };

/* The default: plan from the past, as deployments do (SGLang records 1000
 * passes, vLLM a window of 1000 steps) and as nothing in-sample can. */
#define PRIOR_DEFAULT "past"
#define PRIOR_WARMUP_DEFAULT 100

typedef struct prior_spec {
    enum prior_kind kind;
    char arg[512];        /* trace: the path as written */
    char path[4096];      /* trace: resolved beside the config */
    int warmup_steps;     /* past: steps of the warm-up window */
} prior_spec_t;

/* Parses "none", "past", "trace:PATH" or "oracle"; a trace path is
 * resolved beside origin (the config file; "-" or NULL keeps it as
 * written). where names the source in messages. */
int prior_parse(const char *s, const char *origin, const char *where, prior_spec_t *out);
/* [placement] prior and warmup_steps. */
int prior_spec_load(cfg_t *cfg, prior_spec_t *out);
/* What runs.prior holds: "none", "past", "trace:PATH" (as written) or
 * "oracle". */
const char *prior_label(const prior_spec_t *p, char *buf, size_t n);
/* The label figures and tables show: "oracle (in-sample)" for oracle. */
const char *prior_display(const char *label);

/* The strategy's prior into *out ([n_layers][n_experts], caller frees; NULL
 * for none). oracle: scored's summed counts; trace: the file's, which must
 * have scored's shape; past: the loads of warmup_steps steps drawn from rp
 * (trace step b / step_div for warm-up batch b, n_tokens tokens each) - the
 * run then measures from batch warmup_steps on. */
int prior_build(const prior_spec_t *p, const trace_t *scored, replay_t *rp, double n_tokens,
                int step_div, double **out);
/* The hindsight bound beside a result: strategy ops planned (its init) on
 * the scored counts themselves ([n_layers][n_experts]), the mean PAR of
 * that layout on them into *par. A strategy that needs an input of its own
 * (ops->requires: a layout file, an external program) gets none: *par is
 * NaN, not a figure. */
int prior_hindsight(const place_ops_t *ops, const place_env_t *env, const double *scored,
                    double *par);

/* Batches the run replays before its measured ones (past: warmup_steps). */
int prior_skip(const prior_spec_t *p);

#endif
