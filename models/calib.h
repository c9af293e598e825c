/* calib: calibration CSVs (models/calib/, written by the measure_*.py
 * scripts) and the fits of the cost model's measured forms to them.
 *
 * Expert compute: per (dtype, GEMM implementation) the five figures of
 * cost_gemm_ns (models/cost.h: per-call floor, per-expert cost, efficiencies
 * against the roofline, ridge sharpness), fitted by nonlinear least squares
 * on log error (GSL multifit_nlinear). The simulator uses the fit of one
 * implementation (CALIB_GEMM_IMPL when measured). All-to-all: the link
 * model of cost_link_ns (latency floor, peak, ramp, two-way derating),
 * fitted the same way to times the flow network (models/net.c) gives for
 * each measured pattern and world size; hardware presets carry the fitted
 * link figures as constants (configs/hardware/NAME.ini). The H200 preset embeds the
 * committed measurements (calib_data.c); [hardware] calibration = none |
 * default | PATH[,PATH] switches them off or replaces them. */
#ifndef MOESIM_CALIB_H
#define MOESIM_CALIB_H

#include <stddef.h>

#include "calib_curve.h"
#include "cost.h"
#include "hw.h"

/* The header line each kind of calibration CSV must have, exactly. */
#define CALIB_GEMM_HEADER                                                               \
    "model,dtype,impl,hidden,inter,experts,tokens_per_expert,graph,time_ns,p10_ns,p90_ns," \
    "reps"
#define CALIB_A2A_HEADER \
    "pattern,world,bytes_per_gpu,max_link_bytes,time_ns,p10_ns,p90_ns,reps"

/* GEMM implementation the simulator uses when a file has several: one
 * grouped GEMM over the device's experts, as deployments run them. */
#define CALIB_GEMM_IMPL "grouped"


/* A committed calibration CSV embedded in the binary (calib_data.c, made by
 * models/calib/embed.py; a test checks it equals the file byte for byte). */
typedef struct calib_blob {
    const char *hw;   /* preset it belongs to */
    const char *path; /* the CSV, relative to the repository root */
    const char *text;
    size_t len;
} calib_blob_t;
extern const calib_blob_t calib_blobs[];
extern const int calib_n_blobs;

/* An empty calibration; calib_parse adds files, calib_fit builds the curves. */
calib_t *calib_new(void);
void calib_free(calib_t *c);
/* Adds the points of one CSV text; every complaint names file:line. */
int calib_parse(calib_t *c, const char *text, size_t len, const char *file);
/* Fits every implementation's figures and the link model against hw
 * (copied), with the held-out refits the report needs. Needs one point. */
int calib_fit(calib_t *c, const hw_t *hw);
/* Reads, checks and fits n CSV files. */
int calib_load(const char *const *paths, int n, const hw_t *hw, calib_t **out);

/* The embedded measurements of a preset, parsed and fitted once for the
 * simulator's implementation (kept for the process), or NULL when none were
 * measured for it. */
const calib_t *calib_builtin(const hw_t *hw);
/* The same measurements with every fit (calib_fit), owned by the caller. */
int calib_load_builtin(const hw_t *hw, calib_t **out);
/* What [hardware] calibration = setting means for hw: "none" -> NULL,
 * "default" -> hw->calib, else comma-separated CSV paths, relative to the
 * config file cfg_path's folder (loaded once per process). where names the
 * key in messages. */
int calib_select(const char *setting, const hw_t *hw, const char *cfg_path, const char *where,
                 const calib_t **out);
/* Frees the calibrations calib_select loaded (tests; the process exit does it too). */
void calib_cache_clear(void);


/* The model of a point's shape as the cost functions see it: activations
 * in the weights' dtype, out in BF16, as measured. */
moe_model_t calib_point_model(const calib_gemm_pt_t *p);
/* What the simulator charges for point p's experts on hw (hw->calib as it
 * is set; none: the constants): cost_experts_ns, the step's own function. */
double calib_gemm_charged_ns(const hw_t *hw, const calib_gemm_pt_t *p);
/* The same under given figures (another implementation's fit). */
double calib_gemm_par_ns(const hw_gemm_t *par, const hw_t *hw, const calib_gemm_pt_t *p);
/* Sets par's tile figures (hw_gemm_t: small_max, large_min, tile) to
 * those of the measured kernel impl for weight_bytes (torch's grouped GEMMs
 * on SM90; none for the others): properties of the kernel, not fitted. */
void calib_kernel_tiles(const char *impl, int weight_bytes, hw_gemm_t *par);

/* Bytes rank src sends to rank dst (src == dst: kept local) in a measured
 * all-to-all pattern: uniform, skewed (SKEW 0.75 of each buffer to rank 0,
 * the rest evenly over the others), oneway (only rank 0 sends, evenly),
 * as models/calib/measure_a2a.py splits them (16-byte units). -1 for an
 * unknown pattern. */
double calib_a2a_split(const char *pattern, int world, double bytes_per_gpu, int src, int dst);
/* What the flow network charges for one all-to-all of pattern among world
 * GPUs joined by scale-up links of model lk (one out and one in port each,
 * paired for the two-way derating; every transfer its own flow, ramped by
 * its own size): the time until the last byte lands, ns. -1 for an unknown
 * pattern. */
double calib_a2a_charged_ns(const hw_link_t *lk, const char *pattern, int world,
                            double bytes_per_gpu);

/* The same for any traffic: send[src * world + dst] bytes (the diagonal
 * stays local), ns; `moesim cost a2a` uses it. */
double calib_a2a_matrix_ns(const hw_link_t *lk, int world, const double *send);

/* Mean absolute percentage errors of the model against measurements. */
typedef struct calib_err {
    int n;          /* points */
    double before;  /* constants (data-sheet model), % */
    double after;   /* what is charged: the fit in sample, % */
    double loo;     /* leave-one-size-out: refitted without the point's size, % */
    double cross;   /* refitted without the point's model (GEMM); NaN if one model */
} calib_err_t;
/* GEMM points of impl (NULL: the simulator's) and weight_bytes (0: all). */
int calib_eval_gemm(const calib_t *c, const char *impl, int weight_bytes, calib_err_t *out);
/* All-to-all points of pattern (NULL: all) and world (0: all) with at least
 * min_bytes and less than max_bytes per GPU; after: under lk (NULL: the
 * fit), the other columns refitted. NaN columns when no link was fitted. */
int calib_eval_a2a(const calib_t *c, const char *pattern, int world, double min_bytes,
                   double max_bytes, const hw_link_t *lk, calib_err_t *out);

#endif
