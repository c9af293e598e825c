/* serve: serving simulation. Requests arrive, a prefill instance turns
 * prompts into KV caches and first tokens, the KV caches cross InfiniBand to
 * a decode instance that continuously batches one token per sequence per
 * step, and each instance's placement strategy re-plans while it serves,
 * its weight moves competing with dispatch traffic (disaggregated serving
 * as DeepSeek runs it: prefill EP32 on 4 nodes, decode EP144 on 18).
 *
 * The serving loop runs on its own engine (arrivals, batch ends, KV
 * arrivals, rebalance pauses); each batch is one step_run, a nested
 * sub-simulation from the batch's start time. */
#ifndef MOESIM_SERVE_H
#define MOESIM_SERVE_H

#include <stdint.h>

#include "metrics.h"
#include "migr.h"
#include "run_spec.h"
#include "place.h"
#include "req.h"
#include "step.h"
#include "store.h"
#include "timeline.h"
#include "trace.h"

/* Serves the request stream with strategy ops and stores the run (one
 * transaction). trace: the routing trace of both instances, or NULL to read
 * the config's. out gets the run id and the metrics stored. */
int serve_one(const struct run_spec *sp, const place_ops_t *ops, const trace_t *trace,
              store_t *st, metrics_run_t *out);
/* The same, drawing batches, re-plans and weight copies on tl (NULL: none):
 * decode devices first, then prefill ones (dev_base). */
int serve_one_timeline(const struct run_spec *sp, const place_ops_t *ops, const trace_t *trace,
                       store_t *st, metrics_run_t *out, timeline_t *tl);

#endif
