/* The progress line (sim/base/progress.c): its ETA arithmetic and text, the
 * share of a command of several runs, and that it draws on a terminal only
 * (a file or pipe, as in every test and log, gets nothing). */
#define _XOPEN_SOURCE 700 /* posix_openpt: a pseudo-terminal to stand for one */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"
#include "util.h"

Test(progress, eta_is_the_rate_so_far) {
    cr_assert_float_eq(progress_eta_s(5, 20, 10), 30, 1e-12); /* 2 s a unit, 15 left */
    cr_assert_float_eq(progress_eta_s(1, 3, 4.5), 9, 1e-12);
    cr_assert_eq(progress_eta_s(20, 20, 10), 0);
    cr_assert_lt(progress_eta_s(0, 20, 10), 0, "nothing done: no estimate");
    cr_assert_lt(progress_eta_s(5, 0, 10), 0);
}

Test(progress, times_and_the_line) {
    char b[128];
    progress_fmt_time(b, sizeof b, 59.4);
    cr_assert_str_eq(b, "59s");
    progress_fmt_time(b, sizeof b, 125);
    cr_assert_str_eq(b, "2m05s");
    progress_fmt_time(b, sizeof b, 7300);
    cr_assert_str_eq(b, "2h01m");
    progress_line(b, sizeof b, "eplb", 5, 20, "step 6/20", 10);
    cr_assert_str_eq(b, "eplb: 25% (step 6/20), 10s elapsed, ~30s left");
    progress_line(b, sizeof b, "sweep", 0, 8, NULL, 3);
    cr_assert_str_eq(b, "sweep: 0%, 3s elapsed, estimating time left");
}

Test(progress, a_run_is_a_share_of_its_command) {
    cr_assert_float_eq(progress_overall(5, 10), 0.5, 1e-12); /* no command of runs */
    progress_runs(1, 4);                                      /* the second of four */
    cr_assert_float_eq(progress_overall(5, 10), 0.375, 1e-12);
    char b[32];
    cr_assert_str_eq(progress_run_label(b, sizeof b), "run 2/4");
    progress_runs(0, 0);
    cr_assert_str_eq(progress_run_label(b, sizeof b), "");
}

static char *slurp(FILE *f) {
    static char b[4096];
    fflush(f);
    rewind(f);
    size_t n = fread(b, 1, sizeof b - 1, f);
    b[n] = 0;
    return b;
}

Test(progress, nothing_when_stderr_is_not_a_terminal) {
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    fflush(stderr);
    int keep = dup(2);
    dup2(fileno(f), 2); /* stderr a file, as under a pipe or a log */
    progress_t p;
    progress_begin(&p, "compare");
    progress_update(&p, 3, 10, "step 4/10", 1);
    progress_end(&p);
    fflush(stderr);
    dup2(keep, 2);
    close(keep);
    cr_assert_eq(p.on, 0);
    cr_assert_str_eq(slurp(f), "");
    fclose(f);
}

Test(progress, drawn_on_a_terminal_and_cleared) {
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert_geq(m, 0);
    cr_assert_eq(grantpt(m), 0);
    cr_assert_eq(unlockpt(m), 0);
    int s = open(ptsname(m), O_RDWR | O_NOCTTY);
    cr_assert_geq(s, 0);
    fflush(stderr);
    int keep = dup(2);
    dup2(s, 2);
    progress_t p;
    progress_begin(&p, "compare");
    int on = p.on;
    progress_end(&p);
    /* held (a sweep draws its own line): off even on a terminal */
    int was = progress_hold(1);
    progress_t q;
    progress_begin(&q, "eplb");
    progress_hold(was);
    dup2(keep, 2);
    close(keep);
    close(s);
    close(m);
    cr_assert_eq(on, 1, "stderr on a terminal: the line is drawn");
    cr_assert_eq(q.on, 0);
    /* what it draws: a line rewritten in place, then cleared */
    FILE *f = tmpfile();
    progress_begin_on(&p, f, 1, "place --window");
    progress_update(&p, 1, 4, "window 2/4", 1);
    progress_end(&p);
    const char *o = slurp(f);
    cr_assert(!strncmp(o, "\r\033[Kplace --window: 25% (window 2/4), ", 38), "%s", o);
    cr_assert(strstr(o, "left\r\033[K"), "%s", o);
    fclose(f);
}

/* A message (error or warning) starts on a clean line: the progress line
 * is cleared first. */
Test(progress, a_message_clears_the_line_first) {
    FILE *f = tmpfile(), *g = tmpfile();
    cr_assert(f && g);
    progress_t p;
    progress_begin_on(&p, f, 1, "compare");
    progress_update(&p, 1, 2, NULL, 1);
    fflush(stderr);
    int keep = dup(2);
    dup2(fileno(g), 2);
    ms_err_quiet(0);
    ms_warn("something to say");
    fflush(stderr);
    dup2(keep, 2);
    close(keep);
    const char *o = slurp(f);
    size_t n = strlen(o);
    cr_assert(n > 4 && !strcmp(o + n - 4, "\r\033[K"), "the line is cleared: '%s'", o);
    cr_assert_str_eq(slurp(g), "moesim: warning: something to say\n");
    progress_end(&p);
    fclose(f);
    fclose(g);
}
