/* sweep_mpi: a sweep spread over MPI ranks. Points are handed out one at a
 * time to whichever rank asks, so a slow point holds up only its own rank.
 * Rank 0 answers the asks on a helper thread (the only thread that calls
 * MPI meanwhile, hence MPI_THREAD_SERIALIZED) and runs points itself into
 * the target database; every other rank runs its points into its own file
 * "<db>.<sweep id>.rankN", which rank 0 merges into the target at the end
 * (copying rows) and the rank then deletes. A file left by an interrupted
 * execution is never merged by another: its points are simply run again.
 *
 * Built with -DMOESIM_MPI when the Makefile finds mpicc; otherwise the
 * functions below are a serial stand-in. */
#include "sweep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifdef MOESIM_MPI

#include <mpi.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { TAG_ASK = 1, TAG_GIVE = 2 };

/* A rank's ask for work, carrying the outcome of its previous point. */
typedef struct {
    int point; /* the point it finished, -1 on its first ask */
    int ok;
    char err[SWEEP_ERR_LEN];
} ask_t;

static int mpi_on;    /* MPI_Init_thread was called */
static int mpi_threads; /* rank 0 may answer asks on a helper thread */

/* Rank 0's dispatcher state, shared by its two threads under mu. */
typedef struct {
    sweep_track_t *t;
    pthread_mutex_t mu;
    int workers; /* ranks not yet told to stop */
    int stop;    /* hand out nothing (rank 0 could not prepare) */
} serve_t;

/* A short sleep between polls, so a waiting rank leaves its core to a
 * working one (Open MPI's blocking calls spin). */
static void nap(void) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

static void *serve(void *arg) {
    serve_t *s = arg;
    ask_t m;
    while (s->workers > 0) {
        int flag = 0;
        MPI_Status status;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_ASK, MPI_COMM_WORLD, &flag, &status);
        if (!flag) {
            nap();
            continue;
        }
        MPI_Recv(&m, sizeof m, MPI_BYTE, status.MPI_SOURCE, TAG_ASK, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        pthread_mutex_lock(&s->mu);
        if (m.point >= 0) sweep_track_end(s->t, m.point, m.ok, m.err);
        int next = s->stop ? -1 : sweep_track_next(s->t);
        pthread_mutex_unlock(&s->mu);
        MPI_Send(&next, 1, MPI_INT, status.MPI_SOURCE, TAG_GIVE, MPI_COMM_WORLD);
        if (next < 0) s->workers--;
    }
    return NULL;
}

/* A barrier that naps instead of spinning. */
static void wait_all(void) {
    MPI_Request r;
    int done = 0;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    for (;;) {
        MPI_Test(&r, &done, MPI_STATUS_IGNORE);
        if (done) break;
        nap();
    }
}

int sweep_mpi_built(void) { return 1; }

static int launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

int sweep_mpi_init(int *argc, char ***argv, int *rank, int *size) {
    (void)argc;
    (void)argv;
    *rank = 0;
    *size = 1;
    if (!launched()) return MS_OK; /* a plain start: serial, no MPI start-up cost */
    int provided = MPI_THREAD_SINGLE;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
        return ms_err("cannot start MPI (check the mpirun command and Open MPI's messages)");
    mpi_on = 1;
    mpi_threads = provided >= MPI_THREAD_SERIALIZED;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return MS_OK;
}

int sweep_mpi_agree(int rc) {
    if (!mpi_on) return rc;
    int bad = rc != MS_OK, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any ? MS_ERR : MS_OK;
}

void sweep_mpi_end(void) {
    if (mpi_on) MPI_Finalize();
    mpi_on = 0;
}

static int run_master(sweep_t *sw, const sweep_opts_t *o, const char *id, int size,
                      sweep_stats_t *st) {
    store_t *db = NULL;
    sweep_track_t t;
    serve_t s = {.t = &t, .workers = size - 1};
    pthread_mutex_init(&s.mu, NULL);
    int rc = sweep_prepare(sw, o->db, &db, st);
    s.stop = rc != MS_OK;
    sweep_track_begin(&t, sw, o->progress && rc == MS_OK);
    if (!mpi_threads) {
        serve(&s); /* no thread support: rank 0 only hands out */
    } else {
        pthread_t th;
        pthread_create(&th, NULL, serve, &s);
        char err[SWEEP_ERR_LEN];
        for (;;) {
            pthread_mutex_lock(&s.mu);
            int i = s.stop ? -1 : sweep_track_next(&t);
            pthread_mutex_unlock(&s.mu);
            if (i < 0) break;
            int ok = sweep_run_point(sw, i, db, err) == MS_OK;
            pthread_mutex_lock(&s.mu);
            sweep_track_end(&t, i, ok, err);
            pthread_mutex_unlock(&s.mu);
        }
        pthread_join(th, NULL);
    }
    wait_all(); /* every rank has closed its file */
    for (int r = 1; r < size && rc == MS_OK; r++) {
        char path[4200];
        sweep_rank_path(o->db, id, r, path, sizeof path);
        int n = 0;
        if (access(path, F_OK) == 0) rc = sweep_merge_file(db, path, &n);
        st->merged += n;
    }
    sweep_track_finish(&t, st);
    pthread_mutex_destroy(&s.mu);
    store_close(db);
    return rc;
}

/* Runs points into this rank's own file; *made says whether it made one,
 * and *dev, *ino which. */
static void run_worker(sweep_t *sw, const sweep_opts_t *o, const char *id, int rank,
                       char *path, size_t n, int *made, struct stat *sb) {
    sweep_rank_path(o->db, id, rank, path, n);
    store_t *db = NULL;
    ask_t m = {.point = -1};
    for (;;) {
        int next;
        MPI_Send(&m, sizeof m, MPI_BYTE, 0, TAG_ASK, MPI_COMM_WORLD);
        MPI_Recv(&next, 1, MPI_INT, 0, TAG_GIVE, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (next < 0) break;
        m.point = next;
        m.err[0] = 0;
        /* Opened at the first point, so an idle rank leaves no file. */
        if (!db && store_open(path, &db)) {
            m.ok = 0;
            snprintf(m.err, sizeof m.err, "%s", ms_err_last());
            continue;
        }
        m.ok = sweep_run_point(sw, next, db, m.err) == MS_OK;
    }
    store_close(db);
    *made = db && stat(path, sb) == 0;
    wait_all();
}

int sweep_mpi_run(sweep_t *sw, const sweep_opts_t *o, int rank, int size, sweep_stats_t *st) {
    memset(st, 0, sizeof *st);
    if (size == 1) return sweep_run(sw, o, st);
    int res[2] = {MS_OK, 0}; /* status, failed points: every rank exits alike */
    char id[SWEEP_ID_LEN] = "";
    if (rank == 0) sweep_new_id(id);
    MPI_Bcast(id, SWEEP_ID_LEN, MPI_CHAR, 0, MPI_COMM_WORLD);
    char path[4200];
    int made = 0;
    struct stat sb;
    if (rank == 0) {
        res[0] = run_master(sw, o, id, size, st);
        res[1] = st->failed;
    } else {
        run_worker(sw, o, id, rank, path, sizeof path, &made, &sb);
    }
    MPI_Bcast(res, 2, MPI_INT, 0, MPI_COMM_WORLD);
    /* Merged: each rank deletes the file it made, if it is still that file.
     * Not merged: the file stays, and a re-run runs its points again. */
    if (made && res[0] == MS_OK) {
        struct stat now;
        if (stat(path, &now) == 0 && now.st_dev == sb.st_dev && now.st_ino == sb.st_ino)
            unlink(path);
    }
    st->failed = res[1];
    return res[0];
}

#else /* built without MPI */

int sweep_mpi_built(void) { return 0; }

int sweep_mpi_init(int *argc, char ***argv, int *rank, int *size) {
    (void)argc;
    (void)argv;
    *rank = 0;
    *size = 1;
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (n && atoi(n) > 1)
        return ms_err("started as %s MPI ranks, but this moesim was built without MPI (install "
                      "Open MPI with make deps and rebuild, or run the sweep without mpirun)", n);
    return MS_OK;
}

int sweep_mpi_agree(int rc) { return rc; }

int sweep_mpi_run(sweep_t *sw, const sweep_opts_t *o, int rank, int size, sweep_stats_t *st) {
    (void)rank;
    (void)size;
    return sweep_run(sw, o, st);
}

void sweep_mpi_end(void) {}

#endif
