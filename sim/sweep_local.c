/* sweep_local: `moesim sweep -j N`, a sweep's points spread over N worker
 * processes on this machine, without MPI. The parent hands out points as
 * workers ask (as rank 0 does under MPI), each worker stores its runs in a
 * rank file named with this sweep's id, and the parent merges those files
 * into the database at the end, so resume and merge rules are the MPI ones. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sweep.h"
#include "util.h"

/* A worker's answer for one point. */
typedef struct answer {
    int point;
    int ok;
    char err[SWEEP_ERR_LEN];
} answer_t;

typedef struct worker {
    pid_t pid;
    int to, from; /* pipe ends: points to the worker, answers back */
    int point;    /* the point it is running, -1 when idle */
    int alive;
} worker_t;

/* Reads or writes exactly n bytes (0), or fails (-1: EOF or error). */
static int full_io(int fd, void *buf, size_t n, int writing) {
    char *p = buf;
    while (n) {
        ssize_t k = writing ? write(fd, p, n) : read(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The worker: runs the points it is sent into its own rank file, opened at
 * the first point so an idle worker leaves no file. Never returns. */
static void work(const sweep_t *sw, const char *path, int in, int out) {
    ms_err_quiet(1); /* the parent reports each failure once */
    store_t *db = NULL;
    int point;
    while (full_io(in, &point, sizeof point, 0) == 0 && point >= 0) {
        answer_t a = {.point = point};
        if (!db && store_open(path, &db)) snprintf(a.err, sizeof a.err, "%s", ms_err_last());
        else a.ok = sweep_run_point(sw, point, db, a.err) == MS_OK;
        if (full_io(out, &a, sizeof a, 1)) break;
    }
    store_close(db);
    _exit(0);
}

/* Starts worker w[k]; the child closes the pipes of the workers before it,
 * so each worker sees EOF when the parent goes, whatever its siblings do. */
static int spawn(const sweep_t *sw, const char *path, worker_t *w, int k) {
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC)) return ms_err("sweep -j: pipe: %s", strerror(errno));
    if (pipe2(up, O_CLOEXEC)) {
        close(down[0]);
        close(down[1]);
        return ms_err("sweep -j: pipe: %s", strerror(errno));
    }
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) {
        close(down[0]), close(down[1]), close(up[0]), close(up[1]);
        return ms_err("sweep -j: cannot start a worker: %s (try a smaller -j)", strerror(errno));
    }
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        for (int j = 0; j < k; j++) {
            if (w[j].to >= 0) close(w[j].to);
            if (w[j].alive) close(w[j].from);
        }
        work(sw, path, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    w[k] = (worker_t){.pid = pid, .to = down[1], .from = up[0], .point = -1, .alive = 1};
    return MS_OK;
}

/* Gives worker w its next point, or tells it to stop when none is left. */
static void feed(sweep_track_t *t, worker_t *w) {
    int i = sweep_track_next(t);
    if (full_io(w->to, &i, sizeof i, 1) == 0 && i >= 0) {
        w->point = i;
        return;
    }
    if (i >= 0) sweep_track_end(t, i, 0, "the worker process is gone");
    w->point = -1;
    close(w->to);
    w->to = -1;
}

/* Reaps w and describes how it ended when that was not a clean exit. */
static void reap(worker_t *w, char *why, size_t n) {
    int status = 0;
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR) {
    }
    w->alive = 0;
    if (WIFSIGNALED(status)) snprintf(why, n, "its worker process was killed by signal %d", WTERMSIG(status));
    else snprintf(why, n, "its worker process exited with status %d", WEXITSTATUS(status));
}

int sweep_local_run(sweep_t *sw, const sweep_opts_t *o, int jobs, sweep_stats_t *st) {
    memset(st, 0, sizeof *st);
    if (o->dry_run) return sweep_list(sw, o, st);
    if (jobs <= 1) return sweep_run(sw, o, st);
    store_t *db;
    if (sweep_prepare(sw, o->db, &db, st)) return MS_ERR;
    char id[SWEEP_ID_LEN];
    sweep_new_id(id);
    worker_t *w = ms_calloc((size_t)jobs, sizeof *w);
    char (*path)[4200] = ms_calloc((size_t)jobs, sizeof *path);
    sweep_track_t t;
    sweep_track_begin(&t, sw, o->progress);
    int n = 0, rc = MS_OK;
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN); /* a dead worker is an error, not a signal */
    if (jobs > t.todo) jobs = t.todo; /* no idle workers */
    for (; n < jobs; n++) {
        sweep_rank_path(o->db, id, n + 1, path[n], sizeof path[n]);
        if (spawn(sw, path[n], w, n)) break; /* go on with the workers there are */
        feed(&t, &w[n]);
    }
    if (n == 0 && jobs > 0) rc = MS_ERR; /* not one worker started (said why) */
    struct pollfd *pf = ms_calloc((size_t)jobs, sizeof *pf);
    for (;;) {
        int open = 0;
        for (int k = 0; k < n; k++) {
            pf[k] = (struct pollfd){.fd = w[k].alive ? w[k].from : -1, .events = POLLIN};
            open += w[k].alive;
        }
        if (!open) break;
        if (poll(pf, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            rc = ms_err("sweep -j: poll: %s", strerror(errno));
            break;
        }
        for (int k = 0; k < n; k++) {
            if (!pf[k].revents) continue;
            answer_t a;
            if (full_io(w[k].from, &a, sizeof a, 0) == 0 && a.point == w[k].point) {
                a.err[sizeof a.err - 1] = 0;
                sweep_track_end(&t, a.point, a.ok, a.err);
                feed(&t, &w[k]);
                continue;
            }
            /* EOF: the worker finished (told to stop) or died mid-point. */
            char why[128];
            close(w[k].from);
            if (w[k].to >= 0) close(w[k].to);
            w[k].to = -1;
            reap(&w[k], why, sizeof why);
            if (w[k].point >= 0) sweep_track_end(&t, w[k].point, 0, why);
            w[k].point = -1;
        }
    }
    free(pf);
    signal(SIGPIPE, old_pipe);
    /* Every worker has closed its file: merge them, then remove each one
     * that is still the file this sweep's worker made. */
    for (int k = 0; k < n; k++) {
        struct stat before, now;
        if (stat(path[k], &before)) continue; /* idle worker: no file */
        int merged = 0; /* this execution's own runs: counted in ran */
        if (rc == MS_OK) rc = sweep_merge_file(db, path[k], &merged);
        if (rc == MS_OK && stat(path[k], &now) == 0 && now.st_dev == before.st_dev &&
            now.st_ino == before.st_ino)
            unlink(path[k]);
    }
    sweep_track_finish(&t, st);
    store_close(db);
    free(path);
    free(w);
    return rc;
}
