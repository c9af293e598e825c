/* report_calib: the figures and files of `moesim calib report` (report_calib.h). */
#include "report_calib.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quote.h"
#include "report.h"
#include "util.h"

/* Creates dir and its parents. */
static int mkdirs(const char *dir) {
    char *p = ms_strdup(dir);
    for (char *s = p + 1;; s++) {
        char c = *s;
        if (c == '/' || !c) {
            *s = 0;
            if (mkdir(p, 0777) && errno != EEXIST) {
                int e = errno;
                free(p);
                return ms_err("%s: cannot create the folder: %s", dir, strerror(e));
            }
            *s = c;
        }
        if (!c) break;
    }
    free(p);
    return MS_OK;
}

/* A file written under a temporary name, renamed into place only when
 * every output of the report is whole. */
typedef struct staged {
    char tmp[4096], dst[4096];
} staged_t;

struct report_calib {
    char *dir;
    staged_t f[8];
    int n;
};

/* Writes text to DIR/.name.PID.tmp (checked and synced) and stages it. */
int report_calib_text(report_calib_t *o, const char *name, const char *text, size_t len) {
    staged_t *f = &o->f[o->n];
    snprintf(f->tmp, sizeof f->tmp, "%s/.%s.%ld.tmp", o->dir, name, (long)getpid());
    snprintf(f->dst, sizeof f->dst, "%s/%s", o->dir, name);
    if (report_write_file(f->tmp, text, len)) return MS_ERR;
    o->n++;
    return MS_OK;
}

int report_calib_finish(report_calib_t *o, int ok) {
    for (int i = 0; ok && i < o->n; i++) {
        struct stat sb;
        if (!lstat(o->f[i].dst, &sb) && !S_ISREG(sb.st_mode))
            ok = !ms_err("%s: exists and is not a regular file; nothing was replaced (move it "
                         "away or choose another -o DIR)", o->f[i].dst);
    }
    int rc = ok ? MS_OK : MS_ERR;
    for (int i = 0; i < o->n; i++)
        if (!rc && rename(o->f[i].tmp, o->f[i].dst))
            rc = ms_err("%s: cannot rename into place: %s", o->f[i].dst, strerror(errno));
    for (int i = 0; i < o->n; i++) unlink(o->f[i].tmp);
    free(o->dir);
    free(o);
    return rc;
}

/* Runs a gnuplot script inside the output folder, where it draws name
 * under a temporary name (no path the user chose is gnuplot code), checks
 * the PNG is whole and stages it. */
static int gnuplot(report_calib_t *o, const char *name, const char *script) {
    char gp[256], log[256], path[4096];
    snprintf(gp, sizeof gp, ".%s.gp.%ld.tmp", name, (long)getpid());
    snprintf(log, sizeof log, ".%s.log.%ld.tmp", name, (long)getpid());
    snprintf(path, sizeof path, "%s/%s", o->dir, gp);
    int rc = report_write_file(path, script, strlen(script));
    char said[600];
    if (!rc) rc = report_gnuplot(o->dir, gp, log, said, sizeof said);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s", o->dir, log);
    unlink(path);
    staged_t *f = &o->f[o->n];
    snprintf(f->tmp, sizeof f->tmp, "%s/.%s.%ld.tmp", o->dir, name, (long)getpid());
    snprintf(f->dst, sizeof f->dst, "%s/%s", o->dir, name);
    if (!rc) rc = report_check_image(f->tmp);
    if (rc) {
        unlink(f->tmp);
        return MS_ERR; /* said, naming the file */
    }
    o->n++;
    return MS_OK;
}

static const char STYLE[] =
    "set terminal pngcairo size 1400,600 font 'DejaVu Sans,11' noenhanced\n"
    "set border 3\nset tics nomirror\nset grid lc rgb '#dddddd'\n"
    "set key top left box opaque\n";

/* Data block $pts: "measured before charged size class". */
int report_calib_figure(report_calib_t *o, const char *name, const char *title,
                        const char *xsize, const char *xfmt, const report_calib_pt_t *pts, int n,
                        int n_class, const char *const *classes) {
    char *sc;
    size_t len;
    FILE *f = open_memstream(&sc, &len);
    char out[256];
    snprintf(out, sizeof out, ".%s.%ld.tmp", name, (long)getpid());
    /* Every string goes in as a quoted literal (quote_gp): titles and
     * classes hold the CSV's impl and pattern names. */
    char *q_out = quote_gp(out), *q_title = quote_gp(title), *q_xfmt = quote_gp(xfmt),
         *q_xsize = quote_gp(xsize);
    fprintf(f, "%sset output %s\n$pts << EOD\n", STYLE, q_out);
    for (int i = 0; i < n; i++)
        fprintf(f, "%.6g %.6g %.6g %.6g %d\n", pts[i].measured_us, pts[i].before_us,
                pts[i].charged_us, pts[i].size, pts[i].cls);
    fprintf(f, "EOD\n");
    fprintf(f, "set multiplot layout 1,2 title %s\n"
               "set logscale xy\nset xlabel 'measured (us)'\nset ylabel 'charged (us)'\n"
               "set title 'what the simulator charges vs measurement'\n"
               "plot $pts using 1:2 with points pt 6 ps 0.7 lc rgb '#ff7f0e' title 'data-sheet "
               "model', $pts using 1:3 with points pt 7 ps 0.5 lc rgb '#1f77b4' title "
               "'calibrated', x with lines dt 2 lc rgb '#000000' title 'exact'\n"
               "unset logscale y\nset logscale x 2\nset format x %s\nset xlabel %s\n"
               "set ylabel 'charged / measured'\nset title 'calibrated model, by size'\n"
               "set key top right\nplot 1 with lines dt 2 lc rgb '#000000' notitle",
            q_title, q_xfmt, q_xsize);
    free(q_out), free(q_title), free(q_xfmt), free(q_xsize);
    static const char *const COL[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"};
    for (int k = 0; k < n_class; k++) {
        char *qc = quote_gp(classes[k]);
        fprintf(f, ", $pts using 4:($5 == %d ? $3/$1 : 1/0) with points pt 7 ps 0.5 lc rgb '%s' "
                   "title %s",
                k, COL[k % 5], qc);
        free(qc);
    }
    fprintf(f, "\nunset multiplot\nset output\n");
    fclose(f);
    int rc = gnuplot(o, name, sc);
    free(sc);
    return rc;
}

int report_calib_open(const char *dir, report_calib_t **out) {
    *out = NULL;
    if (mkdirs(dir)) return MS_ERR;
    report_calib_t *o = ms_calloc(1, sizeof *o);
    o->dir = ms_strdup(dir);
    *out = o;
    return MS_OK;
}
