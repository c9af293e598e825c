/* cmd_calib: `moesim calib report`: what the simulator charges beside
 * real-GPU measurements, the errors per kernel and world size, and figures. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "cmd.h"
#include "table.h"
#include "hw.h"
#include "quote.h"
#include "report_calib.h"
#include "util.h"

#define MAX_CSV 16

static void usage(FILE *f) {
    fprintf(f,
            "usage: moesim calib report [--hardware NAME] [--csv FILE ...] [-o DIR]\n"
            "                           [--table-csv | --json]\n"
            "\n"
            "Prints what the simulator charges beside every measurement of a calibration\n"
            "(expert GEMMs per kernel and dtype, all-to-all per world size and pattern), the\n"
            "mean absolute percentage error (MAPE) of the data-sheet model and of the charged\n"
            "one, and two held-out errors: leave-one-size-out (refitted without the point's\n"
            "size) and cross-model (refitted without the point's model). Draws charged vs\n"
            "measured into DIR.\n"
            "\n"
            "options:\n"
            "  --hardware NAME   preset the model uses (default H200)\n"
            "  --csv FILE        calibration CSV (repeatable; default: the preset's embedded\n"
            "                    measurements, models/calib/)\n"
            "  -o, --out DIR     figures, points.csv and index.md (default report/calib)\n"
            "  -q, --quiet       summary only, no per-point table\n"            "  --table-csv, --json  print the tables as CSV or JSON (--csv names the input)\n"
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

static void err_row(table_t *t, FILE *md, const char *set, const char *world, const calib_err_t *e,
                    double fit, const char *note) {
    char b[5][16];
    table_str(t, set);
    table_str(t, world);
    table_int(t, e->n);
    table_num(t, e->before, 1);
    table_num(t, e->after, 1);
    table_num(t, fit, 1);
    table_num(t, e->loo, 1);
    table_num(t, e->cross, 1);
    table_str(t, note);
    if (md) { /* set and note hold the CSV's impl and pattern names: Markdown data */
        char *qs = quote_md(set), *qn = quote_md(note);
        fprintf(md, "| %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", qs, world, e->n,
                fmt(b[0], e->before), fmt(b[1], e->after), fmt(b[4], fit), fmt(b[2], e->loo),
                fmt(b[3], e->cross), qn);
        free(qs);
        free(qn);
    }
}

/* Index of name among the first n names, added when new (at most max). */
static int class_of(const char *name, const char **names, int *n, int max) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(names[i], name)) return i;
    if (*n == max) return max - 1;
    names[*n] = name;
    return (*n)++;
}

#define MIB 1048576.0

/* A table with its columns: keys as given, text heads the same but where
 * heads[i] is not NULL. */
static table_t *cols(table_doc_t *d, const char *name, const char *title, const char *const *keys,
                     const char *const *heads, const int *widths, int n) {
    table_t *t = table_new(d, name, title);
    for (int i = 0; i < n; i++)
        table_col(t, keys[i], heads && heads[i] ? heads[i] : keys[i], abs(widths[i]), widths[i] < 0);
    return t;
}
#define NCOLS(a) ((int)(sizeof a / sizeof *a))

/* The models a report compares: each kernel's fit beside the data-sheet
 * model, then the link model of the preset (pre) and the one fitted. */
static void model_tables(table_doc_t *doc, const calib_t *c, const hw_link_t *pre) {
    const hw_t *hw = &c->hw;
    char line[1024];
    if (c->n_fits) {
        snprintf(line, sizeof line, "expert compute = floor + experts x per_expert + "
                 "smoothmax_p(FLOPs / (eff_flops x %.0f/%.0f TFLOP/s bf16/fp8), bytes / (eff_hbm x "
                 "%.2f TB/s)), fitted per kernel; tiled kernels' FLOPs in waves of clusters, a "
                 "partial wave at least one cluster at its SMs' peak", hw->flops_bf16 / 1e12, hw->flops_fp8 / 1e12,
                 hw->hbm_bw / 1e12);
        static const char *const k[] = {"impl", "dtype", "points", "floor_us", "per_expert_us",
                                        "eff_flops", "eff_hbm", "p", "simulator"};
        static const char *const h[] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ""};
        static const int w[] = {-10, -5, 6, 10, 12, 9, 8, 6, -1};
        table_t *t = cols(doc, "fits", line, k, h, w, NCOLS(k));
        for (int i = 0; i < c->n_fits; i++) {
            const calib_gemm_fit_t *f = &c->fits[i];
            table_str(t, f->impl);
            table_str(t, dtype(f->weight_bytes));
            table_int(t, f->n);
            table_num(t, f->par.floor_ns / 1e3, 2);
            table_num(t, f->par.expert_ns / 1e3, 3);
            table_num(t, f->par.eff_flops, 3);
            table_num(t, f->par.eff_hbm, 3);
            table_num(t, f->par.sharp, 2);
            table_str(t, strcmp(f->impl, c->gemm_impl) ? "" : "<- the simulator's");
        }
        for (int i = 0; i < c->n_fits; i++) {
            const hw_gemm_t *q = &c->fits[i].par;
            char key[96];
            snprintf(key, sizeof key, "tiles_%s_%s", c->fits[i].impl, dtype(c->fits[i].weight_bytes));
            if (q->tile[0].rows <= 1) continue;
            const hw_tile_t *t = q->tile;
            char rest[256], sched[64];
            if (hw->sms > 0)
                snprintf(sched, sizeof sched, "in waves of %.0f clusters over %.0f SMs",
                         cost_persistent_clusters(hw->sms, t[0].ctas), hw->sms);
            else
                snprintf(sched, sizeof sched, "no SM count (sms), no waves");
            if (q->large_min > 0)
                snprintf(rest, sizeof rest, "two of M, N, K >= %.0f: %.0f x %.0f on %.0f SMs; "
                         "else %.0f x %.0f on %.0f SMs", q->large_min, t[2].rows, t[2].cols,
                         t[2].ctas, t[1].rows, t[1].cols, t[1].ctas);
            else
                snprintf(rest, sizeof rest, "else %.0f x %.0f on %.0f SMs", t[2].rows, t[2].cols,
                         t[2].ctas);
            table_note(doc, key, "tiles of %s %s (the kernel's, not fitted; M tokens per local "
                       "expert on average, a GEMM's N columns and depth K): an expert's rows x "
                       "columns padded to clusters of M or N <= %.0f: %.0f x %.0f on %.0f SMs; "
                       "%s; %s", c->fits[i].impl, dtype(c->fits[i].weight_bytes), q->small_max,
                       t[0].rows, t[0].cols, t[0].ctas, rest, sched);
        }
        table_note(doc, "data_sheet", "data-sheet model (before): floor kernel_ns %.1f us, "
                   "eff_flops %.2f, eff_hbm %.2f, hard max", hw->kernel_ns / 1e3, hw->eff_flops,
                   hw->eff_hbm);
    }
    if (c->n_a2a) {
        static const char *const k[] = {"model", "latency_us", "peak_GB_s", "half_MiB", "low",
                                        "duplex"};
        static const char *const h[] = {"", NULL, "peak_GB/s", NULL, NULL, NULL};
        static const int w[] = {-22, 10, 9, 12, 6, 7};
        table_t *t = cols(doc, "link", "all-to-all link model: latency + bytes / (peak x "
                          "ramp(bytes per peer) x duplex when both directions are loaded), "
                          "ramp(s) = (s + low x half) / (s + half)", k, h, w, NCOLS(k));
        const hw_link_t *ls[2] = {pre, c->a2a_fitted ? &c->link : NULL};
        static const char *const names[] = {"preset (charged)", "fitted to these files"};
        for (int i = 0; i < 2 && ls[i]; i++) {
            table_str(t, names[i]);
            table_num(t, ls[i]->lat_ns / 1e3, 2);
            table_num(t, ls[i]->bw / 1e9, 1);
            table_num(t, ls[i]->half_bytes / MIB, 2);
            table_num(t, ls[i]->low_share, 3);
            table_num(t, ls[i]->duplex, 3);
        }
        if (c->a2a_fitted) {
            const hw_link_t *l = &c->link;
            table_note(doc, "hardware_lines", "as [hardware] lines: scaleup_lat_ns = %.0f, "
                       "eff_scaleup = %.4f, scaleup_half_bytes = %.4e, scaleup_low_share = %.4f, "
                       "scaleup_duplex = %.4f", l->lat_ns, l->bw / hw->scaleup_bw, l->half_bytes,
                       l->low_share, l->duplex);
        }
        table_note(doc, "link_source", "preset source: %s", hw->link_source);
    }

}

/* The all-to-all points: table rows (unless quiet), points.csv lines into
 * pf and the figure's points into apts (classes: the patterns, into pats);
 * returns how many points the figure gets. */
static int a2a_points(table_doc_t *doc, const calib_t *c, const hw_link_t *pre, int quiet,
                      FILE *pf, report_calib_pt_t *apts, const char **pats, int *n_pats) {
    const hw_t *hw = &c->hw;
    int n_apts = 0;
    hw_t ds = *hw; /* the data-sheet link model */
    ds.eff_scaleup = 0.8;
    ds.scaleup_lat_ns = 2000;
    ds.scaleup_half_bytes = 0;
    ds.scaleup_duplex = 1;
    hw_link_t base = cost_scaleup_link(&ds);
    table_t *ta = NULL;
    if (c->n_a2a && !quiet) {
        static const char *const k[] = {"pattern", "world", "bytes_per_gpu", "measured_us",
                                        "before_us", "before_err_pct", "charged_us",
                                        "charged_err_pct", "note"};
        static const char *const h[] = {NULL, NULL, "bytes/gpu", NULL, NULL, "err%", NULL, "err%",
                                        ""};
        static const int w[] = {-10, 5, 12, 12, 11, 7, 11, 7, -1};
        ta = cols(doc, "a2a", "all-to-all (flow network; charged: the preset's link model)", k, h,
                  w, NCOLS(k));
    }
    for (int i = 0; i < c->n_a2a; i++) {
        const calib_a2a_pt_t *p = &c->a2a[i];
        double before = calib_a2a_charged_ns(&base, p->pattern, p->world, p->bytes_per_gpu);
        double after = calib_a2a_charged_ns(pre, p->pattern, p->world, p->bytes_per_gpu);
        if (ta) {
            char b[32];
            table_str(ta, p->pattern);
            table_int(ta, p->world);
            table_num(ta, p->bytes_per_gpu, 0);
            table_num(ta, p->time_ns / 1e3, 1);
            if (after < 0) {
                for (int k = 0; k < 4; k++) table_null(ta);
                table_str(ta, "pattern not modelled: uniform, skewed, oneway");
            } else {
                table_num(ta, before / 1e3, 1);
                snprintf(b, sizeof b, "%+.1f", pct(before, p->time_ns));
                table_num_text(ta, pct(before, p->time_ns), b);
                table_num(ta, after / 1e3, 1);
                snprintf(b, sizeof b, "%+.1f", pct(after, p->time_ns));
                table_num_text(ta, pct(after, p->time_ns), b);
                table_str(ta, "");
            }
        }
        if (after < 0) continue;
        char *ql = quote_csv(p->pattern);
        fprintf(pf, "a2a,%s,%d,%.0f,%.0f,%.0f,%.0f\n", ql, p->world, p->bytes_per_gpu,
                p->time_ns, before, after);
        free(ql);
        apts[n_apts++] = (report_calib_pt_t){p->time_ns / 1e3, before / 1e3, after / 1e3,
                                             p->bytes_per_gpu,
                                             class_of(p->pattern, pats, n_pats, 5)};
    }
    return n_apts;
}

/* The error table, into doc and md: every fitted (impl, dtype), the
 * simulator's first, then the all-to-all by world, pattern and size range. */
static void error_table(table_doc_t *doc, const calib_t *c, const hw_link_t *pre,
                        const char *const *pats, int n_pats, FILE *md) {
    static const char *const mk[] = {"set", "world", "points", "before", "charged", "fit",
                                     "leave_size_out", "cross", "note"};
    static const char *const mh[] = {NULL, NULL, NULL, NULL, NULL, NULL, "leave-size", NULL, ""};
    static const int mw[] = {-40, 5, 6, 8, 8, 8, 10, 8, -1};
    table_t *tm = cols(doc, "mape", "mean absolute percentage error (MAPE, %)", mk, mh, mw,
                       NCOLS(mk));
    calib_err_t e;
    char set[128];
    /* Every (impl, dtype) fitted, the simulator's first. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < c->n_fits; i++) {
            const calib_gemm_fit_t *f = &c->fits[i];
            if ((pass == 0) != !strcmp(f->impl, c->gemm_impl)) continue;
            calib_eval_gemm(c, f->impl, f->weight_bytes, &e);
            snprintf(set, sizeof set, "expert compute %s %s", f->impl, dtype(f->weight_bytes));
            err_row(tm, md, set, "1", &e, e.after,
                    pass ? "" : "the simulator's kernel");
        }
    /* All-to-all by world, pattern and size range. */
    static const struct {
        double lo, hi;
        const char *name;
    } R[] = {{MIB, INFINITY, "from 1 MiB/GPU"}, {0, MIB, "below 1 MiB/GPU"}};
    for (int i = 0; i < c->n_a2a; i++) {
        int w = c->a2a[i].world, seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = c->a2a[j].world == w;
        if (seen) continue;
        char ws[16];
        snprintf(ws, sizeof ws, "%d", w);
        for (int r = 0; r < 2; r++)
            for (int k = -1; k < n_pats; k++) {
                const char *pat = k < 0 ? NULL : pats[k];
                calib_err_t fe;
                calib_eval_a2a(c, pat, w, R[r].lo, R[r].hi, pre, &e);
                calib_eval_a2a(c, pat, w, R[r].lo, R[r].hi, NULL, &fe);
                if (!e.n) continue;
                snprintf(set, sizeof set, "all-to-all %s %s", pat ? pat : "all", R[r].name);
                err_row(tm, md, set, ws, &e, fe.after, "");
            }
    }
    if (!c->n_a2a) {
        table_str(tm, "all-to-all");
        table_null(tm);
        table_int(tm, 0);
        for (int k = 0; k < 5; k++) table_null(tm);
        table_str(tm, "not measured (needs 2+ GPUs: models/calib/measure_a2a.py)");
        fprintf(md, "| all-to-all | - | 0 | - | - | - | - | - | not measured (needs 2+ GPUs) |\n");
    }

}

static int report(const calib_t *c, const char *dir, int quiet, table_format_t tfmt) {
    table_doc_t *doc = table_doc_new("calib report", tfmt);
    char line[1024];
    const hw_t *hw = &c->hw; /* the hardware, without its measured fits */
    hw_t bare = c->hw, cal = c->hw;
    bare.calib = NULL;
    cal.calib = c; /* as a step sees it */
    report_calib_t *o;
    if (report_calib_open(dir, &o)) return MS_ERR;
    /* points.csv and index.md are built in memory and staged with the
     * figures (finish): all of them land, or none. */
    char *pfs = NULL, *mds = NULL;
    size_t pfl, mdl;
    FILE *pf = open_memstream(&pfs, &pfl);
    fprintf(pf, "kind,label,world,size,measured_ns,before_ns,charged_ns\n");

    /* Every table goes through the shared printer (text, --csv, --json),
     * printed once the report's files are in place; the lines between
     * them are titles and notes. */
    snprintf(line, sizeof line, "moesim calib report: hardware %s (%s)\nmeasurements: %s",
             hw->name, hw->source, c->source);
    table_t *t0 = table_new(doc, "source", line);
    (void)t0; /* a title alone: no columns, so CSV and JSON leave it out */
    hw_link_t pre = cost_scaleup_link(hw);
    model_tables(doc, c, &pre);

    /* Expert compute, point by point (the figure draws the simulator's kernel). */
    report_calib_pt_t *gpts = ms_malloc(((size_t)c->n_gemm + 1) * sizeof *gpts);
    int n_gpts = 0;
    table_t *tg = NULL;
    if (c->n_gemm && !quiet) {
        static const char *const k[] = {"model", "dtype", "impl", "experts", "tokens_per_expert",
                                        "measured_us", "before_us", "before_err_pct",
                                        "charged_us", "charged_err_pct"};
        static const char *const h[] = {NULL, NULL, NULL, "E", "n/exp", NULL, NULL, "err%", NULL,
                                        "err%"};
        static const int w[] = {-16, -5, -8, 4, 6, 12, 11, 7, 11, 7};
        tg = cols(doc, "gemm", "expert compute, per device (charged: the simulator's function, "
                  "each kernel's own fit)", k, h, w, NCOLS(k));
    }
    for (int i = 0; i < c->n_gemm; i++) {
        const calib_gemm_pt_t *p = &c->gemm[i];
        const hw_gemm_t *par = calib_gemm_par(c, p->impl, p->weight_bytes);
        double before = calib_gemm_charged_ns(&bare, p);
        double after = !strcmp(p->impl, c->gemm_impl) ? calib_gemm_charged_ns(&cal, p)
                       : par                          ? calib_gemm_par_ns(par, hw, p)
                                                      : NAN;
        if (tg) {
            char b[32];
            table_str(tg, p->model);
            table_str(tg, dtype(p->weight_bytes));
            table_str(tg, p->impl);
            table_int(tg, p->experts);
            table_num(tg, p->tokens, 0);
            table_num(tg, p->time_ns / 1e3, 1);
            table_num(tg, before / 1e3, 1);
            snprintf(b, sizeof b, "%+.1f", pct(before, p->time_ns));
            table_num_text(tg, pct(before, p->time_ns), b);
            table_num(tg, after / 1e3, 1);
            snprintf(b, sizeof b, "%+.1f", pct(after, p->time_ns));
            table_num_text(tg, pct(after, p->time_ns), b);
        }
        char label[160];
        snprintf(label, sizeof label, "%s/%s/%s/E%d", p->model, dtype(p->weight_bytes), p->impl,
                 p->experts);
        char *ql = quote_csv(label);
        fprintf(pf, "gemm,%s,1,%.0f,%.0f,%.0f,%.0f\n", ql, p->tokens, p->time_ns, before, after);
        free(ql);
        if (!strcmp(p->impl, c->gemm_impl))
            gpts[n_gpts++] = (report_calib_pt_t){p->time_ns / 1e3, before / 1e3, after / 1e3,
                                                 p->tokens, p->weight_bytes == 1};
    }

    /* All-to-all, point by point. */
    report_calib_pt_t *apts = ms_malloc(((size_t)c->n_a2a + 1) * sizeof *apts);
    int n_apts = 0;
    const char *pats[5];
    int n_pats = 0;
    n_apts = a2a_points(doc, c, &pre, quiet, pf, apts, pats, &n_pats);
    fclose(pf);

    /* The error table, on stdout and in index.md. */
    FILE *md = open_memstream(&mds, &mdl);
    char *qhw = quote_md(hw->name), *qsrc = quote_md(c->source);
    fprintf(md, "# Cost-model calibration: %s\n\nMeasurements: %s\n\n"
                "Mean absolute percentage error (MAPE, %%) against the measurements. *before*: "
                "the data-sheet model; *charged*: what the simulator charges (expert compute: "
                "each kernel's fit; all-to-all: the preset's link model); *fit*: the model "
                "fitted to these files, in sample; *leave-size-out*: refitted without the "
                "point's size; *cross*: refitted without the point's model.\n\n"
                "| set | world | points | before | charged | fit | leave-size-out | cross | note |\n"
                "|---|---|---|---|---|---|---|---|---|\n",
            qhw, qsrc);
    free(qhw);
    free(qsrc);
    error_table(doc, c, &pre, pats, n_pats, md);

    int rc = MS_OK;
    if (c->n_gemm) {
        char title[256];
        snprintf(title, sizeof title, "%s: routed-expert compute per device (impl %s)", hw->name,
                 c->gemm_impl);
        static const char *const cls[] = {"bf16", "fp8"};
        rc = report_calib_figure(o, "calib_gemm.png", title, "tokens per expert", "%g", gpts,
                                 n_gpts, 2, cls);
        if (!rc) fprintf(md, "\n![expert compute](calib_gemm.png)\n");
    }
    if (!rc && c->n_a2a && n_pats) {
        char title[256];
        snprintf(title, sizeof title, "%s: NCCL all-to-all", hw->name);
        rc = report_calib_figure(o, "calib_a2a.png", title, "bytes per GPU", "%.0b %BB", apts,
                                 n_apts, n_pats, pats);
        if (!rc) fprintf(md, "\n![all-to-all](calib_a2a.png)\n");
    }
    fclose(md);
    free(gpts), free(apts);
    if (!rc) rc = report_calib_text(o, "points.csv", pfs, pfl);
    if (!rc) rc = report_calib_text(o, "index.md", mds, mdl);
    free(pfs), free(mds);
    if (report_calib_finish(o, !rc)) {
        /* Keep the cause (named by the failing step) as the last message. */
        char why[512];
        snprintf(why, sizeof why, "%s", ms_err_last());
        table_doc_free(doc);
        return ms_err("calib report: %s; nothing in %s was replaced", why, dir);
    }
    table_note(doc, "index", "figures and tables: %s/index.md", dir);
    rc = table_print(doc, stdout);
    table_doc_free(doc);
    return rc;
}


int cmd_calib(int argc, char **argv) {
    static const struct option opts[] = {
        {"hardware", required_argument, 0, 'H'}, {"csv", required_argument, 0, 'c'},
        {"out", required_argument, 0, 'o'},      {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},           {"json", no_argument, 0, 'J'},
        {"table-csv", no_argument, 0, 'C'},     {0, 0, 0, 0}};
    if (argc < 2 || strcmp(argv[1], "report")) {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        ms_err("calib: the only subcommand is 'report' (example: moesim calib report -o "
               "report/calib)");
        return MS_EXIT_USAGE;
    }
    const char *hw_name = "H200", *out = "report/calib", *csv[MAX_CSV];
    int n_csv = 0, quiet = 0, c;
    table_format_t tfmt = TABLE_TEXT;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'H': hw_name = optarg; break;
        case 'c':
            if (n_csv == MAX_CSV) {
                ms_err("calib report: more than %d --csv files", MAX_CSV);
                return MS_EXIT_USAGE;
            }
            csv[n_csv++] = optarg;
            break;
        case 'o': out = optarg; break;
        case 'q': quiet = 1; break;
        case 'C': tfmt = TABLE_CSV; break;
        case 'J': tfmt = TABLE_JSON; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return MS_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        ms_err("calib report: unexpected argument '%s'", argv[optind + 1]);
        return MS_EXIT_USAGE;
    }
    const hw_t *hw = hw_find(hw_name);
    if (!hw) {
        ms_err("calib report: unknown hardware preset '%s' (known: %s)", hw_name, hw_names());
        return 1;
    }
    calib_t *own = NULL;
    if (n_csv ? calib_load(csv, n_csv, hw, &own) : calib_load_builtin(hw, &own)) {
        if (!n_csv) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ms_err_last());
            ms_err("calib report: %s", msg);
        }
        return 1;
    }
    int rc = report(own, out, quiet, tfmt);
    calib_free(own);
    return rc ? 1 : 0;
}
