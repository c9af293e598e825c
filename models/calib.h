/* calib: measured efficiency curves that correct the cost model on a real
 * GPU. A calibration CSV (models/calib/, written by the measure_*.py scripts)
 * holds timings of the routed-expert GEMMs or of NCCL all-to-all; a curve is
 * a ratio measured / modelled time, piecewise-linear in ln(tokens per
 * expert) or ln(bytes) and clamped at its ends.
 *
 * Expert compute, calibrated: experts * (roofline(n) * factor(n) + overhead),
 * where roofline is the constant-efficiency max(FLOPs, bytes) term, overhead
 * a fitted per-expert fixed cost (it replaces kernel_ns: a ratio alone cannot
 * carry a fixed cost from one expert size to another) and factor one curve per
 * dtype. All-to-all, calibrated: the constant model times factor(bytes).
 * Curves are fitted against one hardware description (its constant factors
 * included). The H200 preset carries the committed measurements' curves
 * (embedded in calib_data.c); [hardware] calibration = none | default |
 * PATH[,PATH] switches them off or replaces them. */
#ifndef MOESIM_CALIB_H
#define MOESIM_CALIB_H

#include <stddef.h>

#include "calib_curve.h"
#include "hw.h"

/* The header line each kind of calibration CSV must have, exactly. */
#define CALIB_GEMM_HEADER                                                               \
    "model,dtype,impl,hidden,inter,experts,tokens_per_expert,graph,time_ns,p10_ns,p90_ns," \
    "reps"
#define CALIB_A2A_HEADER \
    "pattern,world,bytes_per_gpu,max_link_bytes,time_ns,p10_ns,p90_ns,reps"

/* GEMM implementation the curves are fitted on when a file has several:
 * one GEMM pair per expert, the structure of the cost model's formula. */
#define CALIB_GEMM_IMPL "loop"

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
/* Fits the curves against hw (copied). Needs at least one point. */
int calib_fit(calib_t *c, const hw_t *hw);
/* Reads, checks and fits n CSV files. */
int calib_load(const char *const *paths, int n, const hw_t *hw, calib_t **out);

/* The embedded curve of a preset (parsed and fitted once, kept for the
 * process), or NULL when none was measured for it. */
const calib_t *calib_builtin(const hw_t *hw);
/* What [hardware] calibration = setting means for hw: "none" -> NULL,
 * "default" -> hw->calib (the spec loader set it from calib_builtin), else comma-separated CSV paths, relative to the
 * config file cfg_path's folder (loaded once per process). where names the
 * key in messages. */
int calib_select(const char *setting, const hw_t *hw, const char *cfg_path, const char *where,
                 const calib_t **out);
/* Frees the calibrations calib_select loaded (tests; the process exit does it too). */
void calib_cache_clear(void);


/* The model before calibration (issue 5's formulas, hw's constant factors).
 * Roofline of one expert with n tokens: cost_expert_roofline_ns, the step's
 * own formula, with activations in the weights' dtype and out in BF16. */
double calib_roofline_ns(const hw_t *hw, int hidden, int inter, int weight_bytes,
                         double tokens_per_expert);
/* Expert compute of one device: experts * (roofline + kernel_ns). */
double calib_predict_expert_ns(const hw_t *hw, int hidden, int inter, int weight_bytes,
                               int experts, double tokens_per_expert);
/* All-to-all: link_bytes / (scaleup_bw*eff_scaleup) + scaleup_lat_ns. */
double calib_predict_a2a_ns(const hw_t *hw, double link_bytes);

/* The same with hw->calib applied when it is set: what a cost model should
 * call. Expert: experts * (roofline * factor_wb(n) + overhead). */
double calib_expert_ns(const hw_t *hw, int hidden, int inter, int weight_bytes, int experts,
                       double tokens_per_expert);
double calib_a2a_ns(const hw_t *hw, double link_bytes);

/* Mean absolute percentage errors of the model against measurements. */
typedef struct calib_err {
    int n;          /* points */
    double before;  /* constant-factor model, % */
    double after;   /* with the curve, in sample, % */
    double loo;     /* leave-one-size-out: refitted without the point's size, % */
    double cross;   /* refitted without the point's model (GEMM) or pattern (a2a), %; NaN if one */
} calib_err_t;
/* GEMM points of impl (NULL: the fitted one) and weight_bytes (0: all). */
int calib_eval_gemm(const calib_t *c, const char *impl, int weight_bytes, calib_err_t *out);
/* All-to-all points of pattern (NULL: all). */
int calib_eval_a2a(const calib_t *c, const char *pattern, calib_err_t *out);

#endif
