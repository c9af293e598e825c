/* sweep: many runs from one sweep file, a base experiment config and a grid
 * or list of key assignments; each point is one run of one strategy. Every
 * point is checked before anything runs, points already in the database
 * (same config hash) are skipped so a re-run resumes, and under MPI the
 * points go to whichever rank asks next (sweep_mpi.c). docs/sweeps.md has
 * the file format. */
#ifndef MOESIM_SWEEP_H
#define MOESIM_SWEEP_H

#include <stddef.h>

#include "cfg.h"
#include "progress.h"
#include "store.h"

#define SWEEP_MAX_POINTS 100000 /* runs in one sweep, strategies counted */
#define SWEEP_MAX_AXES 32
#define SWEEP_ERR_LEN 1024      /* a failed point's message, as kept and sent */

/* One run of the sweep. */
typedef struct sweep_point {
    cfg_t *cfg;    /* the run's whole config, [placement] strategies = one */
    char *label;   /* what varies, for people: "placement.redundant=32 static" */
    char hash[17]; /* its runs.config_hash (run_config_text) */
    int done;      /* already in the database when this execution began */
} sweep_point_t;

typedef struct sweep {
    char *path;        /* the sweep file */
    int n_points;
    sweep_point_t *pt; /* [n_points]: list order, then axes (first slowest), strategy last */
} sweep_t;

/* How one execution of a sweep went. */
typedef struct sweep_stats {
    int points;    /* in the sweep */
    int skipped;   /* already in the database */
    int ran;       /* run and stored by this execution */
    int failed;    /* reported and left out; a re-run tries them again */
    int merged;    /* runs found in per-rank files of an interrupted MPI sweep */
    double wall_s;
} sweep_stats_t;

typedef struct sweep_opts {
    const char *db; /* the target results database */
    int dry_run;    /* list the points and which are done; run nothing, write nothing */
    int progress;   /* 1: a progress line on stderr (cmd_sweep: when it is a terminal) */
    /* Called after each point this process stored (the tests stop a sweep
     * midway with it); NULL for none. Serial path only. */
    void (*on_stored)(int point, void *ctx);
    void *ctx;
} sweep_opts_t;

/* Reads a sweep file, expands its points and checks every one of them (the
 * config, the trace, each strategy's keys, unknown keys) before returning:
 * a bad point fails the whole sweep with file:line and nothing runs.
 * sets[n_sets] are "section.key=value" overrides applied to every point
 * last (the command line's --set). */
int sweep_load(const char *path, const char *const *sets, int n_sets, sweep_t **out);
void sweep_free(sweep_t *sw);

/* Runs the points not yet in o->db, one after another in this process. A
 * failing point is reported and counted in st->failed while the others go
 * on; MS_ERR only when the sweep itself cannot go on (database trouble). */
int sweep_run(sweep_t *sw, const sweep_opts_t *o, sweep_stats_t *st);

/* Marks which points are done (--dry-run; cmd_sweep prints the list),
 * reading the database without writing anything. */
int sweep_list(sweep_t *sw, const sweep_opts_t *o, sweep_stats_t *st);

/* The pieces sweep_run is made of, shared with the MPI driver. */

/* Opens the target database (its folder is made at the first commit) and
 * marks points already stored as done. */
int sweep_prepare(sweep_t *sw, const char *db, store_t **out, sweep_stats_t *st);
/* Runs point i into st; on failure err[SWEEP_ERR_LEN] gets the message. */
int sweep_run_point(const sweep_t *sw, int i, store_t *st, char *err);
/* An id for one execution of a sweep (process id and time), which names its
 * rank files. */
#define SWEEP_ID_LEN 40
void sweep_new_id(char out[SWEEP_ID_LEN]);
/* "<db>.<sweep_id>.rank<rank>": where rank `rank` of the MPI sweep with
 * this id stores its runs; only that sweep reads it. */
void sweep_rank_path(const char *db, const char *sweep_id, int rank, char *out, size_t n);
/* Merges one per-rank file into st (rows copied, never SQL run from it).
 * The rank that wrote the file deletes it. */
int sweep_merge_file(store_t *st, const char *path, int *n_runs);

/* Hands out the points still to do and shows progress. Not thread-safe:
 * the MPI driver holds a lock around it. */
typedef struct sweep_track {
    const sweep_t *sw;
    int next;       /* first point not yet handed out */
    int todo;       /* points this execution has to run */
    int running, ran, failed;
    int progress;   /* draw the progress line */
    int quiet;      /* ms_err_quiet was on: report nothing */
    double t0;      /* monotonic seconds at the start */
    int *failed_pt; /* [failed] point numbers, for the summary */
    progress_t line; /* the progress line (progress.c), drawn when progress */
} sweep_track_t;

void sweep_track_begin(sweep_track_t *t, const sweep_t *sw, int progress);
/* The next point to run (now counted as running), or -1 when none is left. */
int sweep_track_next(sweep_track_t *t);
/* Point i finished; err is its message when it failed (ok == 0). */
void sweep_track_end(sweep_track_t *t, int i, int ok, const char *err);
/* Clears the progress line and fills in st (ran, failed, wall_s). */
void sweep_track_finish(sweep_track_t *t, sweep_stats_t *st);

/* Runs the points not yet in o->db in `jobs` worker processes on this
 * machine (sweep_local.c): each stores into its own rank file, merged into
 * o->db at the end as under MPI. jobs <= 1 is sweep_run. */
int sweep_local_run(sweep_t *sw, const sweep_opts_t *o, int jobs, sweep_stats_t *st);

/* MPI (sweep_mpi.c; without Open MPI at build time these are a serial
 * stand-in that refuses to run as several ranks). */

/* 1 when this moesim was built with MPI support. */
int sweep_mpi_built(void);
/* Joins MPI when the process was started by mpirun (else rank 0 of 1). */
int sweep_mpi_init(int *argc, char ***argv, int *rank, int *size);
/* MS_ERR on every rank when rc is MS_ERR on any. */
int sweep_mpi_agree(int rc);
/* Rank 0 hands points to ranks as they ask and runs points itself; the
 * others run what they are given into their per-rank file, which rank 0
 * merges into o->db at the end. st is filled on rank 0. */
int sweep_mpi_run(sweep_t *sw, const sweep_opts_t *o, int rank, int size, sweep_stats_t *st);
void sweep_mpi_end(void);

#endif
