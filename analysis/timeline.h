/* timeline: a run's steps as Chrome trace event JSON (Perfetto and
 * chrome://tracing open it), written as the simulation reports them through
 * a step observer. One process per node, one thread per device; dispatch,
 * expert compute, combine and weight copies are complete events ("X"),
 * re-plans instants, all in microseconds; docs/timeline.md describes it. */
#ifndef MOESIM_TIMELINE_H
#define MOESIM_TIMELINE_H

#include <stdint.h>

#include "step.h"

/* Default and largest cap on events a file holds (--timeline-max-events):
 * about 125 bytes an event (docs/timeline.md), so the default is about 125 MB. */
#define TIMELINE_MAX_EVENTS_DEFAULT 1000000L
#define TIMELINE_MAX_EVENTS_LIMIT 100000000L

typedef struct timeline timeline_t;

/* Opens path for a cluster of n_nodes x devices_per_node devices whose
 * steps run micro_batches micro-batches (2 with overlap: the second one's
 * phases go on a thread of their own per device, so that a thread's events
 * never overlap). Writes to path.tmp, renamed to path by timeline_close:
 * a failed run leaves an earlier file at path as it was. */
int timeline_open(const char *path, int n_nodes, int devices_per_node, int micro_batches,
                  long max_events, timeline_t **out);
/* What a step observer writes to: the timeline and the offset of the
 * devices it reports (a serving instance's first device; 0 otherwise). */
typedef struct timeline_view {
    timeline_t *t;
    int dev_base;
} timeline_view_t;

/* The observer to put in step_in_t.obs; v must outlive the steps. */
step_observer_t timeline_observer(timeline_view_t *v);
/* A re-plan decided at now_ns after step (an instant across the trace). */
void timeline_replan(timeline_t *t, int64_t now_ns, int step, int layers_changed);
/* A weight copy of (layer, expert) from device src to dst, on dst's
 * weight-copy thread. */
void timeline_migration(timeline_t *t, int src, int dst, int layer, int expert, int64_t start_ns,
                        int64_t done_ns);
/* Events written, and whether the cap was reached (for tests and messages). */
long timeline_events(const timeline_t *t);
int timeline_truncated(const timeline_t *t);
/* Finishes the file (still at path.tmp): no more events. */
int timeline_finish(timeline_t *t);
/* Finishes it if need be and moves it into place; frees t either way.
 * NULL is fine. */
int timeline_close(timeline_t *t);
/* Drops the unfinished file; frees t. NULL is fine. */
void timeline_abort(timeline_t *t);

/* The file compare writes for one strategy: FILE.json -> FILE.<strategy>.json
 * (the strategy before the last ".json"; appended when path has none). */
int timeline_strategy_path(const char *path, const char *strategy, char *buf, size_t n);

#endif
