/* progress: the one progress line of every long command, on stderr with the
 * share done, the wall time so far and an estimate of the time left, and
 * only when stderr is a terminal (never in a pipe, a log or the tests). */
#ifndef MOESIM_PROGRESS_H
#define MOESIM_PROGRESS_H

#include <stddef.h>
#include <stdio.h>

/* Redraws at most this often (seconds of wall time). */
#define PROGRESS_EVERY_S 0.25

typedef struct progress {
    FILE *f;
    int on;         /* draw at all (progress_begin: stderr is a terminal) */
    int drawn;      /* a line is on the screen */
    int in_job;     /* a run of a command of several (progress_begin_run) */
    char what[96];  /* what runs: "compare", "sweep", "fitting router scores" */
    double t0, last; /* wall clock at the start and at the last draw */
} progress_t;

/* A line on stderr when it is a terminal. */
void progress_begin(progress_t *p, const char *what);
/* The same on f, drawn when on (sweep --progress forces it; the tests pass
 * a file and 0 or 1). */
void progress_begin_on(progress_t *p, FILE *f, int on, const char *what);
/* A run's own loop (steps, requests) inside a command of several runs
 * (progress_runs): its line shows the command's share and clock. */
void progress_begin_run(progress_t *p, const char *what);
/* While set (a sweep drawing its own line over its points' runs), lines
 * begun by progress_begin and progress_begin_run stay off. Returns the
 * previous setting. */
int progress_hold(int hold);
/* done of total units finished; detail (or NULL) follows the share. Draws
 * when PROGRESS_EVERY_S has passed since the last draw, or force. */
void progress_update(progress_t *p, double done, double total, const char *detail, int force);
/* Clears the line (results printed next start on a clean line). */
void progress_end(progress_t *p);

/* Commands made of several runs (compare: strategies x seeds) give the
 * run about to start, 0-based, of n; a run's own progress (steps,
 * requests) is then shown as a share of the whole command. n = 0 ends it. */
void progress_runs(int run, int n);
/* The run's share of the whole: (run + done / total) / n, or done / total
 * outside a command of runs. */
double progress_overall(double done, double total);
/* The run numbers for a line ("run 2/4"), "" outside a command of runs. */
const char *progress_run_label(char *buf, size_t n);

/* Seconds left when done of total took elapsed seconds, at the rate so
 * far; negative when nothing is done yet (no estimate). */
double progress_eta_s(double done, double total, double elapsed);
/* "12s", "3m05s", "2h10m". */
void progress_fmt_time(char *out, size_t n, double s);
/* The line itself, without the terminal's control codes:
 * "what: 45% (detail), 12s elapsed, ~15s left". */
void progress_line(char *out, size_t n, const char *what, double done, double total,
                   const char *detail, double elapsed);

#endif
