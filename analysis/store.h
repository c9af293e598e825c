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

/* Deletes runs with this name (for --replace). */
int store_delete_named(store_t *st, const char *name);

/* The raw handle, for analysis queries. */
struct sqlite3 *store_db(store_t *st);

#endif
