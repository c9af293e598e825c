/* store: the results database (SQLite), written so that nothing stored is
 * lost: runs are staged privately and published in one transaction each
 * (docs/reliability.md); the schema is documented in docs/schema.md. */
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
    const char *prior;         /* what the strategy planned from (sim/prior.h): none, past,
                                * trace:PATH or oracle; NULL is stored as oracle */
} store_run_t;

/* How long a writer waits for another process's commit by default. */
#define STORE_WAIT_S 600.0

typedef struct store_opts {
    double wait_s;       /* wait for another writer's lock this long (<= 0: STORE_WAIT_S) */
    const char *replace; /* experiment name whose earlier runs the new ones replace, or NULL */
    int make_parent;     /* create a missing folder (one level) at the first commit */
    int batch;           /* publish all runs together at store_finish (replace implies it) */
} store_opts_t;

/* Opens a results database for writing, checking everything that can be
 * checked before a run starts (a name, a regular writable file or folder, a
 * moesim schema) and touching nothing: a database that does not exist is
 * created only by the first publish, complete, under a temporary name
 * linked into place (so two processes creating it never remove each
 * other's file). ":memory:" writes in place (tests). */
int store_open_results(const char *path, const store_opts_t *o, store_t **out);
/* store_open_results with the default options. */
int store_open(const char *path, store_t **out);
/* Closes; runs staged but not published are dropped, the target untouched. */
void store_close(store_t *st);

/* Starts a run (BEGIN + runs row) in the private staging database; *run_id
 * gets its staged id (store_final_id maps it once published). */
int store_run_begin(store_t *st, const store_run_t *r, int64_t *run_id);
/* Ends a run. Without batch or replace the run is published now, in one
 * transaction that holds the target's lock only for the copy (a second
 * writer waits for it up to wait_s); otherwise it stays staged until
 * store_finish publishes every run of the batch in one transaction. */
int store_run_commit(store_t *st);
void store_run_abort(store_t *st);
/* Publishes the staged runs: with replace, the new runs are written and the
 * experiment's earlier runs deleted in the same transaction, so the target
 * holds exactly the old runs or exactly the new ones. */
int store_finish(store_t *st);
/* The id the run staged as `staged` got in the target by the last publish
 * (-1 if that publish did not hold it). */
int64_t store_final_id(const store_t *st, int64_t staged);

/* Test hook: when the environment variable MOESIM_FAULT names `point`, the
 * process kills itself there (SIGKILL), so the fault tests can stop a real
 * moesim at a known step. Points: "staged" (a run committed to the staging,
 * not yet published), "link" (a new database written under its temporary
 * name, not yet linked), "publish" (inside the publishing transaction,
 * before COMMIT), "published" (just after it). */
void store_fault(const char *point);

int store_step(store_t *st, int64_t run, int step, int64_t start_ns, int64_t duration_ns,
               double tokens);
int store_layer_step(store_t *st, int64_t run, int step, int layer, int64_t duration_ns,
                     double max_load, double mean_load);
int store_device_load(store_t *st, int64_t run, int layer, int device, double load);
int store_metric(store_t *st, int64_t run, const char *metric, double value, const char *unit);
/* A metric over the seeds of one strategy (compare --seeds): n runs, their
 * mean and the half-width of its 95% confidence interval; run is the
 * group's last run, which holds the row (metrics_store_ci). */
int store_metric_ci(store_t *st, int64_t run, const char *metric, int n, double mean,
                    double half_width, const char *unit);
/* Communication locality (sim/locality.h): per layer the bytes crossing
 * nodes and between distinct devices and the mean nodes and devices a token
 * touches; tokens by the number touched (kind "nodes" or "devices"); bytes
 * from device src to dst summed over layers and steps. */
int store_layer_locality(store_t *st, int64_t run, int layer, double cross_node_bytes,
                         double bytes, double nodes_mean, double devices_mean);
int store_locality_hist(store_t *st, int64_t run, int layer, const char *kind, int touched,
                        double tokens);
int store_traffic(store_t *st, int64_t run, int src, int dst, double bytes);

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

/* Copies every run of the database file src_path into st and publishes
 * them in one transaction: runs get new ids, and the rows of every table of
 * this moesim's schema follow them (only our own table and column names are
 * used: no SQL text stored in src is run, and tables we do not know are not
 * copied). Runs whose config_hash st already holds are left out. *n_runs
 * (may be NULL) gets how many were copied. Sweeps under MPI merge each
 * rank's file into the target with it. */
int store_merge(store_t *st, const char *src_path, int *n_runs);

/* The raw handle, for analysis queries. */
struct sqlite3 *store_db(store_t *st);

#endif
