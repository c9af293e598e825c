/* The calibration figures as the report module draws them
 * (analysis/report_calib.c): a figure and a text land together when all is
 * well, nothing lands when anything failed, and a class name is data, never
 * gnuplot code. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"
#include "report_calib.h"
#include "util.h"

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && !strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

static void rm_rf(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static const report_calib_pt_t PTS[] = {
    {10, 12, 11, 64, 0}, {100, 90, 101, 256, 1}, {1000, 800, 990, 1024, 1}};

Test(report_calib, figure_and_text_land_together) {
    char dir[] = "/tmp/moesim-rcal-XXXXXX";
    cr_assert(mkdtemp(dir));
    report_calib_t *o;
    cr_assert_eq(report_calib_open(dir, &o), MS_OK, "%s", ms_err_last());
    /* a class name that would run a shell and end the data block if it
     * reached the script as code */
    const char *cls[] = {"bf16", "x'\nEOD\nsystem(\"touch PWNED_rc\")\n#"};
    cr_assert_eq(report_calib_figure(o, "f.png", "title 'q' \"dq\"", "tokens", "%g", PTS, 3, 2,
                                     cls),
                 MS_OK, "%s", ms_err_last());
    cr_expect_eq(count_files(dir, ""), 0, "staged only, nothing in place yet");
    cr_assert_eq(report_calib_text(o, "t.md", "hello\n", 6), MS_OK);
    cr_assert_eq(report_calib_finish(o, 1), MS_OK, "%s", ms_err_last());
    char path[256];
    snprintf(path, sizeof path, "%s/f.png", dir);
    cr_expect_eq(report_check_image(path), MS_OK, "a whole PNG");
    cr_expect_eq(count_files(dir, ""), 2);
    cr_expect_eq(count_files(dir, "PWNED"), 0, "the class name ran as code");
    cr_expect_eq(count_files(".", "PWNED"), 0, "the class name ran as code");
    rm_rf(dir);
}

Test(report_calib, nothing_lands_when_the_report_failed) {
    char dir[] = "/tmp/moesim-rcal-XXXXXX";
    cr_assert(mkdtemp(dir));
    report_calib_t *o;
    cr_assert_eq(report_calib_open(dir, &o), MS_OK);
    const char *cls[] = {"bf16", "fp8"};
    cr_assert_eq(report_calib_figure(o, "f.png", "t", "tokens", "%g", PTS, 3, 2, cls), MS_OK);
    cr_assert_eq(report_calib_text(o, "t.md", "x", 1), MS_OK);
    ms_err_quiet(1);
    cr_expect_eq(report_calib_finish(o, 0), MS_ERR);
    ms_err_quiet(0);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    cr_expect_eq(n, 0, "no staged or final file is left");
    rm_rf(dir);
}
