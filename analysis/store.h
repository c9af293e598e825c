/* store: the results database (SQLite). One run is written inside one
 * transaction, so an interrupted or failed run leaves nothing behind. The
 * schema is documented in docs/schema.md and created by store_open(). */
#ifndef MOESIM_STORE_H
#define MOESIM_STORE_H

#include <stdint.h>

typedef struct store store_t;

/* What identifies a run. */
typedef struct store_run {
    const char *name;          /* experiment name */
    const char *strategy;
    int strategy_version;
    const char *trace;
    const char *model;
    const char *hardware;
    int nodes, devices;
    uint64_t seed;
    const char *config;        /* canonical config text */
    const char *config_hash;   /* hex of its hash */
} store_run_t;

int store_open(const char *path, store_t **out);
void store_close(store_t *st);

/* Starts a run (BEGIN + runs row); *run_id gets its id. */
int store_run_begin(store_t *st, const store_run_t *r, int64_t *run_id);
int store_run_commit(store_t *st);
void store_run_abort(store_t *st);

int store_step(store_t *st, int64_t run, int step, int64_t start_ns, int64_t duration_ns,
               double tokens);
int store_layer_step(store_t *st, int64_t run, int step, int layer, int64_t duration_ns,
                     double max_load, double mean_load);
int store_device_load(store_t *st, int64_t run, int layer, int device, double load);
int store_metric(store_t *st, int64_t run, const char *metric, double value, const char *unit);

/* Per layer over the whole run: mean device load (BestEP), the lower bound
 * any placement with the same slots could reach, and the realised maximum. */
int store_layer_bound(store_t *st, int64_t run, int layer, double best_ep, double bound,
                      double max_load);
/* Replica count of each (layer, expert) in the run's final layout. */
int store_replicas(store_t *st, int64_t run, int layer, int expert, int count);
/* The trace's activation count of each (layer, expert), summed over steps. */
int store_trace_count(store_t *st, int64_t run, int layer, int expert, double count);
/* A re-plan that changed layers_changed layers and moved bytes of weights. */
int store_replan(store_t *st, int64_t run, int64_t time_ns, int step, int layers_changed,
                 double bytes);

/* One expert weight copy moved by a re-plan. */
typedef struct store_migration {
    int64_t time_ns, done_ns; /* transfer start and arrival */
    int layer, expert;
    double bytes;
    int src_device, dst_device;
} store_migration_t;
int store_migration(store_t *st, int64_t run, const store_migration_t *m);

/* One served request. */
typedef struct store_request {
    int64_t request;
    int64_t arrival_ns, first_token_ns, done_ns;
    int prompt_tokens, output_tokens;
} store_request_t;
int store_request(store_t *st, int64_t run, const store_request_t *r);

/* Deletes runs with this name (for --replace). */
int store_delete_named(store_t *st, const char *name);

/* Copies every run of the database file src_path into st, in one
 * transaction: runs get new ids, and every table of src with a run_id
 * column (found from sqlite_master, so tables added later come along) is
 * remapped to them. Runs whose config_hash st already holds are left out.
 * *n_runs (may be NULL) gets how many were copied. Sweeps under MPI merge
 * each rank's file into the target with it. */
int store_merge(store_t *st, const char *src_path, int *n_runs);

/* The raw handle, for analysis queries. */
struct sqlite3 *store_db(store_t *st);

#endif
