/* cmd_calib: `moesim calib report`: the cost model beside real-GPU
 * measurements, its error before and after calibration, and a figure. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"
#include "cmd.h"
#include "hw.h"
#include "quote.h"
#include "report.h"
#include "util.h"

#define MAX_CSV 16

static void usage(FILE *f) {
    fprintf(f,
            "usage: moesim calib report [--hardware NAME] [--csv FILE ...] [-o DIR]\n"
            "\n"
            "Prints the cost model's prediction beside every measurement of a calibration\n"
            "(expert GEMMs, all-to-all), the mean absolute percentage error (MAPE) before and\n"
            "after calibration, and two held-out errors: leave-one-size-out (the curve refitted\n"
            "without the point's size) and cross-model / cross-pattern (refitted without the\n"
            "point's model or pattern). Draws measured vs predicted into DIR.\n"
            "\n"
            "options:\n"
            "  --hardware NAME   preset the model uses (default H200)\n"
            "  --csv FILE        calibration CSV (repeatable; default: the preset's embedded\n"
            "                    measurements, models/calib/)\n"
            "  -o, --out DIR     figures, points.csv and index.md (default report/calib)\n"
            "  -q, --quiet       summary only, no per-point table\n"
            "  -h, --help        this text\n");
}

static const char *dtype(int wb) { return wb == 1 ? "fp8" : "bf16"; }
static double pct(double pred, double meas) { return 100.0 * (pred - meas) / meas; }

/* "12.3" or "-" for NaN (a held-out error that cannot be computed). */
static const char *fmt(char *b, double v) {
    if (isnan(v)) return "-";
    snprintf(b, 16, "%.1f", v);
    return b;
}

static void err_row(FILE *f, FILE *md, const char *set, const calib_err_t *e, const char *note) {
    char b[4][16];
    fprintf(f, "%-34s %6d %8s %8s %10s %8s  %s\n", set, e->n, fmt(b[0], e->before),
            fmt(b[1], e->after), fmt(b[2], e->loo), fmt(b[3], e->cross), note);
    if (md) {
        /* set and note hold the CSV's impl and pattern names: Markdown data. */
        char *qs = quote_md(set), *qn = quote_md(note);
        fprintf(md, "| %s | %d | %s | %s | %s | %s | %s |\n", qs, e->n, fmt(b[0], e->before),
                fmt(b[1], e->after), fmt(b[2], e->loo), fmt(b[3], e->cross), qn);
        free(qs);
        free(qn);
    }
}

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

typedef struct outputs {
    const char *dir;
    staged_t f[8];
    int n;
} outputs_t;

/* Writes text to DIR/.name.PID.tmp (checked and synced) and stages it. */
static int stage_text(outputs_t *o, const char *name, const char *text, size_t len) {
    staged_t *f = &o->f[o->n];
    snprintf(f->tmp, sizeof f->tmp, "%s/.%s.%ld.tmp", o->dir, name, (long)getpid());
    snprintf(f->dst, sizeof f->dst, "%s/%s", o->dir, name);
    if (report_write_file(f->tmp, text, len)) return MS_ERR;
    o->n++;
    return MS_OK;
}

/* Renames every staged file into place (after checking that none would
 * land on a folder), or removes them all: the folder keeps its earlier
 * report when anything failed. */
static int finish(outputs_t *o, int ok) {
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
    o->n = 0;
    return rc;
}

/* Runs a gnuplot script inside the output folder, where it draws name
 * under a temporary name (no path the user chose is gnuplot code), checks
 * the PNG is whole and stages it. */
static int gnuplot(outputs_t *o, const char *name, const char *script) {
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

/* Left: measured vs predicted (log-log) before and after; right: the ratio
 * the curve describes against size, with the fitted curve(s). Data blocks:
 * $pts "measured before after size ratio class", $cur "size factor class". */
static int figure(outputs_t *o, const char *name, const char *title, const char *xsize,
                  const char *xfmt, const char *ylabel, const char *pts, const char *cur,
                  int n_class, const char *const *classes) {
    char *sc;
    size_t len;
    FILE *f = open_memstream(&sc, &len);
    char out[256];
    snprintf(out, sizeof out, ".%s.%ld.tmp", name, (long)getpid());
    /* Every string goes in as a quoted literal (quote_gp): the title holds
     * the CSV's impl name. */
    char *q_out = quote_gp(out), *q_title = quote_gp(title), *q_xfmt = quote_gp(xfmt),
         *q_xsize = quote_gp(xsize), *q_ylabel = quote_gp(ylabel);
    fprintf(f, "%sset output %s\n%s%s", STYLE, q_out, pts, cur);
    fprintf(f, "set multiplot layout 1,2 title %s\n"
               "set logscale xy\nset xlabel 'measured (us)'\nset ylabel 'predicted (us)'\n"
               "set title 'prediction vs measurement'\n"
               "plot $pts using 1:2 with points pt 6 ps 0.7 lc rgb '#ff7f0e' title 'before "
               "calibration', $pts using 1:3 with points pt 7 ps 0.5 lc rgb '#1f77b4' title "
               "'after calibration', x with lines dt 2 lc rgb '#000000' title 'exact'\n"
               "unset logscale y\nset logscale x 2\nset format x %s\nset xlabel %s\n"
               "set ylabel %s\nset title 'calibration curve'\nset key top "
               "right\nplot ",
            q_title, q_xfmt, q_xsize, q_ylabel);
    free(q_out), free(q_title), free(q_xfmt), free(q_xsize), free(q_ylabel);
    static const char *const COL[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
    for (int k = 0; k < n_class; k++) {
        char m[64], c[64];
        snprintf(m, sizeof m, "%s measured", classes[k]);
        snprintf(c, sizeof c, "%s curve", classes[k]);
        char *qm = quote_gp(m), *qc = quote_gp(c);
        fprintf(f, "%s$pts using 4:($6 == %d ? $5 : 1/0) with points pt 7 ps 0.4 lc rgb '%s' "
                   "title %s, $cur using 1:($3 == %d ? $2 : 1/0) with lines lw 2 lc "
                   "rgb '%s' title %s",
                k ? ", " : "", k, COL[k % 4], qm, k, COL[k % 4], qc);
        free(qm), free(qc);
    }
    fprintf(f, "\nunset multiplot\nset output\n");
    fclose(f);
    int rc = gnuplot(o, name, sc);
    free(sc);
    return rc;
}

/* Samples a curve for the figure at 81 sizes, evenly in log, over [lo, hi]. */
static void sample_curve(FILE *cur, double lo, double hi, int cls,
                         double (*fn)(const calib_t *, int, double), const calib_t *c, int arg) {
    for (int i = 0; i <= 80; i++) {
        double x = exp(log(lo) + (log(hi) - log(lo)) * i / 80.0);
        fprintf(cur, "%.6g %.6g %d\n", x, fn(c, arg, x), cls);
    }
}

static double gemm_f(const calib_t *c, int wb, double x) { return calib_gemm_factor_wb(c, wb, x); }
static double a2a_f(const calib_t *c, int unused, double x) {
    (void)unused;
    return calib_a2a_factor(c, x);
}

static int report(const calib_t *c, const char *dir, int quiet) {
    const hw_t *hw = &c->hw; /* the model before calibration */
    hw_t cal = c->hw;        /* the same with the curves */
    cal.calib = c;
    if (mkdirs(dir)) return MS_ERR;
    /* points.csv and index.md are built in memory and staged with the
     * figures (finish): all of them land, or none. */
    char *pfs = NULL, *mds = NULL;
    size_t pfl, mdl;
    FILE *pf = open_memstream(&pfs, &pfl);
    fprintf(pf, "kind,label,size,measured_ns,before_ns,after_ns\n");

    printf("moesim calib report: hardware %s (%s)\nmeasurements: %s\n", hw->name, hw->source,
           c->source);
    printf("model before calibration: eff_flops %.2f of %.0f/%.0f TFLOP/s (bf16/fp8), eff_hbm %.2f "
           "of %.2f TB/s, kernel_ns %.0f per expert; all-to-all eff_scaleup %.2f of %.0f GB/s, "
           "latency %.0f ns\n",
           hw->eff_flops, hw->flops_bf16 / 1e12, hw->flops_fp8 / 1e12, hw->eff_hbm,
           hw->hbm_bw / 1e12, hw->kernel_ns, hw->eff_scaleup, hw->scaleup_bw / 1e9,
           hw->scaleup_lat_ns);
    if (c->n_gemm)
        printf(
            "calibration: expert compute = experts x (roofline x curve(tokens per expert, dtype) "
            "+ %.1f us fitted per-expert overhead)\n",
            c->gemm_overhead_ns / 1e3);
    printf("\n");

    /* Expert compute. */
    FILE *gp, *gc;
    char *gps = NULL, *gcs = NULL;
    size_t gpl, gcl;
    gp = open_memstream(&gps, &gpl);
    gc = open_memstream(&gcs, &gcl);
    fprintf(gp, "$pts << EOD\n");
    fprintf(gc, "$cur << EOD\n");
    if (c->n_gemm && !quiet)
        printf("expert compute, per device (curve fitted on impl %s, one curve per dtype)\n"
               "%-16s %-5s %-8s %4s %6s %12s %11s %7s %11s %7s\n",
               c->gemm_impl, "model", "dtype", "impl", "E", "n/exp", "measured_us", "model_us",
               "err%", "calib_us", "err%");
    double lo = INFINITY, hi = 0;
    for (int i = 0; i < c->n_gemm; i++) {
        const calib_gemm_pt_t *p = &c->gemm[i];
        double pred = calib_predict_expert_ns(hw, p->hidden, p->inter, p->weight_bytes,
                                              p->experts, p->tokens);
        double after = calib_expert_ns(&cal, p->hidden, p->inter, p->weight_bytes, p->experts,
                                       p->tokens);
        /* What the curve describes: the time the overhead leaves, over the roofline. */
        double ratio = (p->time_ns / p->experts - c->gemm_overhead_ns) /
                       calib_roofline_ns(hw, p->hidden, p->inter, p->weight_bytes, p->tokens);
        if (!quiet)
            printf("%-16s %-5s %-8s %4d %6.0f %12.1f %11.1f %+7.1f %11.1f %+7.1f\n", p->model,
                   dtype(p->weight_bytes), p->impl, p->experts, p->tokens, p->time_ns / 1e3,
                   pred / 1e3, pct(pred, p->time_ns), after / 1e3, pct(after, p->time_ns));
        char label[160];
        snprintf(label, sizeof label, "%s/%s/%s/E%d", p->model, dtype(p->weight_bytes), p->impl,
                 p->experts);
        char *ql = quote_csv(label);
        fprintf(pf, "gemm,%s,%.0f,%.0f,%.0f,%.0f\n", ql, p->tokens, p->time_ns, pred, after);
        free(ql);
        if (!strcmp(p->impl, c->gemm_impl)) {
            fprintf(gp, "%.6g %.6g %.6g %.6g %.6g %d\n", p->time_ns / 1e3, pred / 1e3,
                    after / 1e3, p->tokens, ratio, p->weight_bytes == 1);
            lo = ms_dmin(lo, p->tokens);
            hi = ms_dmax(hi, p->tokens);
        }
    }
    if (c->n_gemm) {
        sample_curve(gc, lo, hi, 0, gemm_f, c, 2);
        sample_curve(gc, lo, hi, 1, gemm_f, c, 1);
    }
    fprintf(gp, "EOD\n");
    fprintf(gc, "EOD\n");
    fclose(gp);
    fclose(gc);

    /* All-to-all. */
    FILE *ap, *ac;
    char *aps = NULL, *acs = NULL;
    size_t apl, acl;
    ap = open_memstream(&aps, &apl);
    ac = open_memstream(&acs, &acl);
    fprintf(ap, "$pts << EOD\n");
    fprintf(ac, "$cur << EOD\n");
    if (c->n_a2a && !quiet)
        printf("%sall-to-all (bytes = the most any GPU sends or receives over its links)\n"
               "%-10s %5s %12s %12s %12s %11s %7s %11s %7s\n",
               c->n_gemm ? "\n" : "", "pattern", "world", "bytes/gpu", "link_bytes",
               "measured_us", "model_us", "err%", "calib_us", "err%");
    lo = INFINITY, hi = 0;
    for (int i = 0; i < c->n_a2a; i++) {
        const calib_a2a_pt_t *p = &c->a2a[i];
        double pred = calib_predict_a2a_ns(hw, p->link_bytes);
        double f = calib_a2a_factor(c, p->link_bytes);
        if (!quiet)
            printf("%-10s %5d %12.0f %12.0f %12.1f %11.1f %+7.1f %11.1f %+7.1f\n", p->pattern,
                   p->world, p->bytes_per_gpu, p->link_bytes, p->time_ns / 1e3, pred / 1e3,
                   pct(pred, p->time_ns), pred * f / 1e3, pct(pred * f, p->time_ns));
        char label[160];
        snprintf(label, sizeof label, "%s/W%d", p->pattern, p->world);
        char *ql = quote_csv(label);
        fprintf(pf, "a2a,%s,%.0f,%.0f,%.0f,%.0f\n", ql, p->link_bytes, p->time_ns, pred,
                pred * f);
        free(ql);
        fprintf(ap, "%.6g %.6g %.6g %.6g %.6g %d\n", p->time_ns / 1e3, pred / 1e3, pred * f / 1e3,
                p->link_bytes, p->time_ns / pred, 0);
        lo = ms_dmin(lo, p->link_bytes);
        hi = ms_dmax(hi, p->link_bytes);
    }
    if (c->n_a2a) sample_curve(ac, lo, hi, 0, a2a_f, c, 0);
    fprintf(ap, "EOD\n");
    fprintf(ac, "EOD\n");
    fclose(ap);
    fclose(ac);
    fclose(pf);

    /* The error table, on stdout and in index.md. */
    FILE *md = open_memstream(&mds, &mdl);
    char *q_hw = quote_md(hw->name), *q_src = quote_md(c->source);
    fprintf(md, "# Cost-model calibration: %s\n\nMeasurements: %s\n\n"
                "Mean absolute percentage error (MAPE, %%) of the model against the measurements.\n"
                "*after*: with the curve; *leave-size-out*: the curve refitted without the point's "
                "size; *cross*: refitted without the point's model (expert compute) or pattern "
                "(all-to-all).\n\n"
                "| set | points | before | after | leave-size-out | cross | note |\n"
                "|---|---|---|---|---|---|---|\n",
            q_hw, q_src);
    free(q_hw), free(q_src);
    printf("\nmean absolute percentage error (MAPE, %%)\n%-34s %6s %8s %8s %10s %8s\n", "set",
           "points", "before", "after", "leave-size", "cross");
    calib_err_t e;
    char set[96];
    if (c->n_gemm) {
        for (int wb = 2; wb >= 0; wb--) {
            calib_eval_gemm(c, NULL, wb, &e);
            if (!e.n) continue;
            snprintf(set, sizeof set, "expert compute %s (%s)", wb ? dtype(wb) : "all",
                     c->gemm_impl);
            err_row(stdout, md, set, &e,
                    "cross: curves from the other model(s), overhead from all");
        }
        /* Other implementations in the file, against the fitted one's curve. */
        for (int i = 0; i < c->n_gemm; i++) {
            const char *impl = c->gemm[i].impl;
            int seen = !strcmp(impl, c->gemm_impl);
            for (int j = 0; j < i && !seen; j++) seen = !strcmp(c->gemm[j].impl, impl);
            if (seen) continue;
            calib_eval_gemm(c, impl, 0, &e);
            snprintf(set, sizeof set, "expert compute all (%s)", impl);
            char note[96];
            snprintf(note, sizeof note, "with the %s curve", c->gemm_impl);
            err_row(stdout, md, set, &e, note);
        }
    }
    if (c->n_a2a) {
        for (int i = 0; i < c->n_a2a; i++) {
            int seen = 0;
            for (int j = 0; j < i && !seen; j++)
                seen = !strcmp(c->a2a[j].pattern, c->a2a[i].pattern);
            if (seen) continue;
            calib_eval_a2a(c, c->a2a[i].pattern, &e);
            snprintf(set, sizeof set, "all-to-all %s", c->a2a[i].pattern);
            err_row(stdout, md, set, &e, "cross = other pattern");
        }
        calib_eval_a2a(c, NULL, &e);
        err_row(stdout, md, "all-to-all all", &e, "cross = other pattern");
    } else {
        printf("%-34s %6d  not measured (needs 2+ GPUs: models/calib/measure_a2a.py)\n",
               "all-to-all", 0);
        fprintf(md, "| all-to-all | 0 | - | - | - | - | not measured (needs 2+ GPUs) |\n");
    }

    outputs_t o = {.dir = dir};
    int rc = MS_OK;
    if (c->n_gemm) {
        char title[256];
        snprintf(title, sizeof title, "%s: routed-expert compute per device (impl %s)", hw->name,
                 c->gemm_impl);
        static const char *const cls[] = {"bf16", "fp8"};
        rc = figure(&o, "calib_gemm.png", title, "tokens per expert", "%g",
                    "(measured per expert - overhead) / roofline", gps, gcs, 2, cls);
        if (!rc) fprintf(md, "\n![expert compute](calib_gemm.png)\n");
    }
    if (!rc && c->n_a2a) {
        char title[256];
        snprintf(title, sizeof title, "%s: NCCL all-to-all", hw->name);
        static const char *const cls[] = {"all patterns"};
        rc = figure(&o, "calib_a2a.png", title, "bytes over the busiest GPU links", "%.0b %BB",
                    "measured / modelled time", aps, acs, 1, cls);
        if (!rc) fprintf(md, "\n![all-to-all](calib_a2a.png)\n");
    }
    fclose(md);
    free(gps), free(gcs), free(aps), free(acs);
    if (!rc) rc = stage_text(&o, "points.csv", pfs, pfl);
    if (!rc) rc = stage_text(&o, "index.md", mds, mdl);
    free(pfs), free(mds);
    if (finish(&o, !rc)) {
        /* Keep the cause (named by the failing step) as the last message. */
        char why[512];
        snprintf(why, sizeof why, "%s", ms_err_last());
        return ms_err("calib report: %s; nothing in %s was replaced", why, dir);
    }
    printf("\nfigures and tables: %s/index.md\n", dir);
    return MS_OK;
}

int cmd_calib(int argc, char **argv) {
    static const struct option opts[] = {
        {"hardware", required_argument, 0, 'H'}, {"csv", required_argument, 0, 'c'},
        {"out", required_argument, 0, 'o'},      {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    if (argc < 2 || strcmp(argv[1], "report")) {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        ms_err("calib: the only subcommand is 'report' (example: moesim calib report -o "
               "report/calib)");
        return 1;
    }
    const char *hw_name = "H200", *out = "report/calib", *csv[MAX_CSV];
    int n_csv = 0, quiet = 0, c;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'H': hw_name = optarg; break;
        case 'c':
            if (n_csv == MAX_CSV) {
                ms_err("calib report: more than %d --csv files", MAX_CSV);
                return 1;
            }
            csv[n_csv++] = optarg;
            break;
        case 'o': out = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        ms_err("calib report: unexpected argument '%s'", argv[optind + 1]);
        return 1;
    }
    const hw_t *hw = hw_find(hw_name);
    if (!hw) {
        ms_err("calib report: unknown hardware preset '%s' (known: %s)", hw_name, hw_names());
        return 1;
    }
    calib_t *own = NULL;
    const calib_t *cal = calib_builtin(hw);
    if (n_csv) {
        if (calib_load(csv, n_csv, hw, &own)) return 1;
        cal = own;
    } else if (!cal) {
        ms_err("calib report: preset %s has no measurements built in (give --csv FILE, made by "
               "models/calib/measure_experts.py or measure_a2a.py)",
               hw->name);
        return 1;
    }
    int rc = report(cal, out, quiet);
    calib_free(own);
    return rc ? 1 : 0;
}
