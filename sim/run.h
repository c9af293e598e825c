/* run: one experiment from its config: build the cluster, model, trace and
 * strategy, simulate the steps on the engine, and write the run to the
 * results store. This is the one way through: config and trace in ->
 * placement -> cluster simulation -> metrics -> SQLite. */
#ifndef MOESIM_RUN_H
#define MOESIM_RUN_H

#include <stdint.h>

#include "metrics.h"
#include "run_spec.h"
#include "serve.h"
#include "store.h"
#include "timeline.h"

/* What a run reports back: its id and metrics (also stored in the
 * summary table; the CLI prints what it reads back from there). */
typedef metrics_run_t run_summary_t;

/* Runs one strategy of the spec and stores it (one transaction). */
int run_one(const run_spec_t *spec, const char *strategy, store_t *st, run_summary_t *sum);
/* The same, drawing its steps, re-plans and weight copies on tl (an open
 * timeline for spec's cluster; NULL: none). */
int run_one_timeline(const run_spec_t *spec, const char *strategy, store_t *st,
                     run_summary_t *sum, timeline_t *tl);

#endif
