/* report_calib: the figures and files of `moesim calib report`, drawn by
 * the report module like every other figure: from the values the command
 * computed (charged and measured times per point), every string quoted by
 * quote.c. All outputs are staged and land together, or none does. */
#ifndef MOESIM_REPORT_CALIB_H
#define MOESIM_REPORT_CALIB_H

#include <stddef.h>

/* One calibration point as drawn: times in microseconds, its size (tokens
 * per expert, or bytes per GPU) and its class (index into the classes a
 * figure is given: dtype, or all-to-all pattern). */
typedef struct report_calib_pt {
    double measured_us, before_us, charged_us, size;
    int cls;
} report_calib_pt_t;

typedef struct report_calib report_calib_t; /* the staged outputs of one folder */

/* Creates dir (and its parents) and starts staging into it. */
int report_calib_open(const char *dir, report_calib_t **out);
/* Stages text as dir/name. */
int report_calib_text(report_calib_t *o, const char *name, const char *text, size_t len);
/* Draws and stages figure name (a PNG): left, charged against measured
 * (log-log), data-sheet model and calibrated; right, charged / measured
 * against size, one colour per class. xsize labels the size axis, xfmt is
 * its gnuplot format. */
int report_calib_figure(report_calib_t *o, const char *name, const char *title,
                        const char *xsize, const char *xfmt, const report_calib_pt_t *pts, int n,
                        int n_class, const char *const *classes);
/* ok: renames every staged file into place (after checking none would land
 * on a folder); otherwise, or when that fails, removes them all, so the
 * folder keeps its earlier report. Frees o. */
int report_calib_finish(report_calib_t *o, int ok);

#endif
