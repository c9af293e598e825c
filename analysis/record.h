/* record: the one way out of a run. Fixed-batch runs, serving and `moesim
 * place` hand what they produce to a recorder: begin (what ran, its
 * canonical config text and the hash of that text), rows, metrics, then
 * commit or abort; the recorder owns the run's transaction and the hash, and
 * producers never call the store themselves.
 *
 * A run goes: record_begin -> record_step / record_layer_step /
 * record_replan / record_migration / record_requests (any order, any number)
 * -> record_layers and record_metrics once at the end -> record_commit. Any
 * failure: record_abort (also safe after a failed commit), and nothing of
 * the run remains. */
#ifndef MOESIM_RECORD_H
#define MOESIM_RECORD_H

#include <stdint.h>

#include "metrics.h"
#include "place.h"
#include "store.h"

typedef struct record {
    store_t *st;
    int64_t run_id;    /* the run's id in the store: staged, the published one after a
                        * commit that published it (store_final_id maps a batch's) */
    int open;          /* begun, neither committed nor aborted */
} record_t;

/* The hash a run's canonical config text is known by (16 hex digits):
 * what runs.config_hash holds and sweeps resume by. */
void record_hash(const char *config_text, char hash[17]);

/* Starts a run. meta's config and config_hash are ignored: the run is
 * stored with config_text and its record_hash. */
int record_begin(record_t *r, store_t *st, const store_run_t *meta, const char *config_text);
int record_commit(record_t *r);
void record_abort(record_t *r);

int record_step(record_t *r, int step, int64_t start_ns, int64_t duration_ns, double tokens);
/* Every layer of one step: its time, and the busiest and mean device load
 * of the metrics accumulator's last step. */
int record_layer_steps(record_t *r, int step, const int64_t *layer_ns, const metrics_loads_t *a);
int record_replan(record_t *r, int64_t time_ns, int step, int layers_changed, double bytes);
int record_migration(record_t *r, const store_migration_t *m);
int record_requests(record_t *r, const store_request_t *rows, int64_t n);
/* Communication locality (sim/locality.h; rows as store.h describes). */
int record_layer_locality(record_t *r, int layer, double cross_node_bytes, double bytes,
                          double nodes_mean, double devices_mean);
int record_locality_hist(record_t *r, int layer, const char *kind, int touched, double tokens);
int record_traffic(record_t *r, int src, int dst, double bytes);
/* Per-layer rows of the finished run: device loads, layer bounds, the final
 * layout's replica counts and the [L][E] trace counts. */
int record_layers(record_t *r, const place_layout_t *lo, const double *trace_cnt,
                  const metrics_loads_t *a, const metrics_layer_bound_t *lb);
/* The registered metrics that are set, with their units. */
int record_metrics(record_t *r, const metrics_t *m);
/* The intervals over the seeds of one strategy (compare --seeds), held by
 * the group's last run: called once that run is committed and before the
 * store publishes the batch, so the rows land with the runs or not at all. */
int record_metrics_ci(store_t *st, int64_t last_run, const metrics_ci_t *ci);
/* A strategy's own metrics (place_ops_t.metrics), each name behind prefix. */
int record_strategy_metrics(record_t *r, const place_ops_t *ops, place_state_t *ps,
                            const char *prefix);

#endif
