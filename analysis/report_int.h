/* report_int: what the report's files share (private to analysis/report*.c).
 * The driver (report.c) finds experiments and writes the index; the figure
 * families (report_load.c, report_heat.c, report_time.c, report_serve.c)
 * query the database and hand a gnuplot script to report_render (report_plot.c). */
#ifndef MOESIM_REPORT_INT_H
#define MOESIM_REPORT_INT_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "report.h"

#define REPORT_MAX_RUNS 12        /* strategies shown per experiment */
#define REPORT_MAX_EXPERIMENTS 6  /* latest experiment names with their own figures */
#define REPORT_MAX_TRACES 4       /* traces with an activation heatmap */
#define REPORT_SKIP 1             /* a figure's return: data missing, nothing drawn */

/* A growing string (gnuplot scripts, the index). */
typedef struct report_buf {
    char *s;    /* NUL-terminated text, NULL while empty */
    size_t n;   /* length */
    size_t cap; /* allocated bytes */
} report_buf_t;

/* One run as the figures show it. */
typedef struct report_run {
    int64_t id;
    char strategy[64];
    char trace[256];
    char prior[64];   /* runs.prior: what the strategy planned from */
    int devices, nodes;
} report_run_t;

/* One experiment (runs sharing runs.name): the latest run of each strategy,
 * in run order, so a re-run replaces the older one in the figures. */
typedef struct report_exp {
    char name[128];
    char slug[96];    /* name made safe for file names, unique in the report */
    int n;            /* runs used */
    report_run_t run[REPORT_MAX_RUNS];
} report_exp_t;

/* A finished file under its temporary name, and where it goes. */
typedef struct report_stage {
    char *tmp, *dst;
} report_stage_t;

typedef struct report_ctx {
    sqlite3 *db;
    const char *dir;      /* output folder */
    const char *only;     /* figure-family filter, NULL for all */
    report_buf_t index;   /* index.md being built */
    report_result_t *res; /* counts and skip notes */
    int no_gnuplot;       /* gnuplot could not be started: said once, figures fail */
    report_stage_t *stage; /* finished files, renamed into place by report_commit */
    int n_stage, cap_stage;
    const char *prior_col; /* "prior", or "'oracle'" for databases older than runs.prior
                            * (every run of theirs planned from the scored trace) */
} report_ctx_t;

/* How a strategy is drawn in every figure. */
typedef struct report_style {
    const char *color; /* "#rrggbb" */
    int pt;            /* gnuplot point type */
} report_style_t;

/* A figure ready to render: data blocks defined once, a body that draws it
 * (run once per output format), its index heading and caption. */
typedef struct report_fig {
    const char *stem;      /* file name without extension */
    const char *title;     /* index heading */
    int width, height;     /* pixels */
    report_buf_t data;     /* gnuplot datablocks ($name << EOD ... EOD) */
    report_buf_t body;     /* commands after the common style */
    report_buf_t caption;  /* Markdown under the figure: how to read it, which runs */
} report_fig_t;

void report_printf(report_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void report_buf_free(report_buf_t *b);
/* Appends s quoted by quote.h: as a gnuplot string literal, as a gnuplot
 * datablock field, as Markdown text. Every string that did not come from
 * moesim's own code goes through one of these. */
void report_quote(report_buf_t *b, const char *s);
void report_field(report_buf_t *b, const char *s);
void report_md(report_buf_t *b, const char *s);

report_style_t report_style(const char *strategy);
/* The colour as an integer 0xRRGGBB, for gnuplot's `lc rgb variable`. */
int report_rgb(const char *strategy);
/* 1 when the strategy is the registry's baseline (place_ops_t.baseline). */
int report_baseline(const char *strategy);

/* Renders f into ctx->dir as stem.png, stem.svg and stem.gp under
 * temporary names (checked complete and synced; staged for report_commit),
 * adds it to the index and frees its buffers. MS_OK or MS_ERR. */
int report_render(report_ctx_t *c, report_fig_t *f);
/* Writes text to ctx->dir/.name.PID.tmp and stages it as ctx->dir/name. */
int report_stage_text(report_ctx_t *c, const char *name, const char *text);
/* Renames every staged file into place, after checking that none of the
 * destinations is a folder or special file; on any failure, and always
 * afterwards, the temporaries are removed (report_discard). */
int report_commit(report_ctx_t *c);
/* Removes every staged temporary: the output folder stays as it was. */
void report_discard(report_ctx_t *c);
void report_fig_free(report_fig_t *f);
/* Records that a figure was skipped and why (with the command that makes
 * the missing data); warns and notes it in the index. Returns REPORT_SKIP. */
int report_skip(report_ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether the family `name` is selected by the only filter. */
int report_wanted(const report_ctx_t *c, const char *name);

/* Prepares a query; NULL (after ms_err) if the database lacks a table. */
sqlite3_stmt *report_prepare(report_ctx_t *c, const char *sql);
/* A summary metric of a run, or dflt when absent. */
double report_metric(report_ctx_t *c, int64_t run, const char *metric, double dflt);
/* The first column of a query's first row, with run bound to ?1; dflt when
 * there is no row or it is NULL. */
double report_value(report_ctx_t *c, const char *sql, int64_t run, double dflt);
/* Appends run i's legend label, quoted: its strategy, with the cluster
 * size when the experiment's runs differ in it. */
void report_label(report_buf_t *b, const report_exp_t *e, int i);
/* "runs 3 static, 4 eplb" for captions. */
void report_run_list(report_buf_t *b, const report_exp_t *e, const int *use);

/* Request latencies of one run, for the distributions figure: the requests
 * rows, with warm-up left out exactly as the stored metrics leave it out
 * (metrics_latencies, from the summary metric window_start). */
typedef struct report_lat {
    int64_t n;                  /* requests measured (TTFT) */
    int64_t n_tpot;             /* of those, with two or more output tokens */
    double *ttft_ms, *tpot_ms;  /* sorted values (n and n_tpot); free with report_lat_free */
} report_lat_t;
/* Fills *l; MS_OK, or REPORT_SKIP when the run has no measured requests. */
int report_latency(report_ctx_t *c, int64_t run, report_lat_t *l);
void report_lat_free(report_lat_t *l);

/* The figure families. Each returns MS_OK (drawn), REPORT_SKIP or MS_ERR. */
int report_fig_layer_max(report_ctx_t *c, const report_exp_t *e);    /* a */
int report_fig_device_heat(report_ctx_t *c, const report_exp_t *e);  /* b */
int report_fig_replica_heat(report_ctx_t *c, const report_exp_t *e); /* b */
int report_fig_traffic_heat(report_ctx_t *c, const report_exp_t *e); /* b */
int report_fig_trace_heat(report_ctx_t *c);                          /* c */
int report_fig_par_time(report_ctx_t *c, const report_exp_t *e);     /* d */
int report_fig_bars(report_ctx_t *c, const report_exp_t *e);         /* e */
int report_fig_cdf(report_ctx_t *c, const report_exp_t *e);          /* f */
int report_fig_par_budget(report_ctx_t *c);                          /* g */

#endif
