/* progress: the line is formatted by pure functions (tested: the ETA
 * arithmetic and the text) and drawn with "\r\033[K" on a terminal only;
 * a command of several runs keeps one clock and one share for them all. */
#include "progress.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* the command of several runs: which run, of how many, since when */
static int job_run, job_n;
static double job_t0;

void progress_runs(int run, int n) {
    if (n > 0 && (run == 0 || job_n == 0)) job_t0 = now_s();
    job_run = run;
    job_n = n;
}

double progress_overall(double done, double total) {
    double f = total > 0 ? done / total : 0;
    if (f < 0) f = 0;
    if (f > 1) f = 1;
    return job_n > 0 ? (job_run + f) / job_n : f;
}

const char *progress_run_label(char *buf, size_t n) {
    if (job_n > 1) snprintf(buf, n, "run %d/%d", job_run + 1, job_n);
    else if (n) buf[0] = 0;
    return buf;
}

double progress_eta_s(double done, double total, double elapsed) {
    if (!(done > 0) || !(total > 0) || !(elapsed >= 0)) return -1;
    if (done >= total) return 0;
    return elapsed / done * (total - done);
}

void progress_fmt_time(char *out, size_t n, double s) {
    if (s < 0) s = 0;
    s = floor(s + 0.5);
    if (s < 60) snprintf(out, n, "%.0fs", s);
    else if (s < 3600) snprintf(out, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(out, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

void progress_line(char *out, size_t n, const char *what, double done, double total,
                   const char *detail, double elapsed) {
    char el[24], left[40] = "estimating time left";
    double eta = progress_eta_s(done, total, elapsed);
    progress_fmt_time(el, sizeof el, elapsed);
    if (eta >= 0) {
        char t[24];
        progress_fmt_time(t, sizeof t, eta);
        snprintf(left, sizeof left, "~%s left", t);
    }
    snprintf(out, n, "%s: %.0f%%%s%s%s, %s elapsed, %s", what,
             total > 0 ? floor(100 * done / total) : 0.0, detail && *detail ? " (" : "",
             detail && *detail ? detail : "", detail && *detail ? ")" : "", el, left);
}

/* The stream a line is on now: cleared before any message (util.c). */
static FILE *on_screen;

static void clear_line(void) {
    if (!on_screen) return;
    fputs("\r\033[K", on_screen);
    fflush(on_screen);
    on_screen = NULL;
}

void progress_begin_on(progress_t *p, FILE *f, int on, const char *what) {
    memset(p, 0, sizeof *p);
    p->f = f;
    p->on = on;
    snprintf(p->what, sizeof p->what, "%s", what);
    p->t0 = now_s();
    p->last = -1e9;
}

static int held;

int progress_hold(int hold) {
    int was = held;
    held = hold;
    return was;
}

void progress_begin(progress_t *p, const char *what) {
    progress_begin_on(p, stderr, !held && isatty(STDERR_FILENO), what);
}

void progress_begin_run(progress_t *p, const char *what) {
    progress_begin(p, what);
    p->in_job = job_n > 0;
}

void progress_update(progress_t *p, double done, double total, const char *detail, int force) {
    if (!p->on) return;
    double t = now_s();
    if (!force && t - p->last < PROGRESS_EVERY_S) return;
    p->last = t;
    /* a run of a command of runs: the command's share and clock, this
     * run's detail */
    double share = p->in_job ? progress_overall(done, total) : total > 0 ? done / total : 0;
    double elapsed = t - (p->in_job ? job_t0 : p->t0);
    char line[512], d[320], runs[32] = "";
    if (p->in_job) progress_run_label(runs, sizeof runs);
    snprintf(d, sizeof d, "%s%s%s", runs, *runs && detail && *detail ? ", " : "",
             detail ? detail : "");
    progress_line(line, sizeof line, p->what, share, 1, d, elapsed);
    fflush(stdout); /* lines printed before keep their place */
    fprintf(p->f, "\r\033[K%s", line);
    fflush(p->f);
    p->drawn = 1;
    on_screen = p->f;
    ms_before_message(clear_line);
}

void progress_end(progress_t *p) {
    if (p->on && p->drawn) {
        fputs("\r\033[K", p->f);
        fflush(p->f);
        if (on_screen == p->f) on_screen = NULL;
    }
    p->drawn = 0;
}
