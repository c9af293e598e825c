/* calib_curve: a fitted calibration (the measured points and the figures
 * fitted to them) and the lookup the cost model makes in it. Split from
 * calib so that the cost model can read the figures without the fitting
 * code, which itself evaluates the cost model (calib -> cost -> curve). */
#ifndef MOESIM_CALIB_CURVE_H
#define MOESIM_CALIB_CURVE_H

#include "hw.h"

#define CALIB_NAME_MAX 32

/* One measured expert-compute point: E experts with n tokens each. */
typedef struct calib_gemm_pt {
    char model[CALIB_NAME_MAX]; /* shape's name, e.g. deepseek-v3 */
    char impl[CALIB_NAME_MAX];  /* loop (per-expert GEMMs) or grouped */
    int weight_bytes;           /* 2 for bf16, 1 for fp8 */
    int hidden, inter;          /* expert shape */
    int experts;                /* local experts on the device */
    double tokens;              /* tokens per expert */
    int graph;                  /* 1 if timed as CUDA-graph replays */
    double time_ns;             /* median time of all experts together */
    double p10_ns, p90_ns;      /* spread of the samples */
    int reps;                   /* timed samples */
    const char *file;           /* where it was read (owned by the calib_t) */
    int line;
} calib_gemm_pt_t;

/* One measured all-to-all point. */
typedef struct calib_a2a_pt {
    char pattern[CALIB_NAME_MAX]; /* uniform, skewed, ... */
    int world;                    /* GPUs taking part */
    double bytes_per_gpu;         /* each GPU's send buffer */
    double link_bytes;            /* most bytes any GPU sends or receives over its links */
    double time_ns, p10_ns, p90_ns;
    int reps;
    const char *file;
    int line;
} calib_a2a_pt_t;

/* The fitted figures of one (GEMM implementation, dtype). */
typedef struct calib_gemm_fit {
    char impl[CALIB_NAME_MAX];
    int weight_bytes;
    int n;               /* points fitted */
    hw_gemm_t par;
} calib_gemm_fit_t;

typedef struct calib {
    char source[512];            /* the files, or "builtin H200 (models/calib/...)" */
    hw_t hw;                     /* hardware the fits were made against (its calib NULL) */
    char **files;                /* names the points' file fields point into */
    int n_files;
    calib_gemm_pt_t *gemm;       /* in file order (sorted within each file) */
    int n_gemm;
    calib_a2a_pt_t *a2a;
    int n_a2a;
    char gemm_impl[CALIB_NAME_MAX]; /* implementation the simulator uses */
    calib_gemm_fit_t *fits;      /* every (impl, dtype) in the files with enough points */
    int n_fits;
    int a2a_fitted;              /* 1: link below fitted to the a2a points */
    hw_link_t link;              /* the link model fitted to the a2a points (scale-up) */
    double *a2a_loo_ns;          /* [n_a2a] prediction refitted without the point's size */
} calib_t;

/* The fitted figures of impl (NULL: the simulator's, c->gemm_impl) for
 * weight_bytes (1 fp8, 2 bf16); NULL when none was fitted. */
const hw_gemm_t *calib_gemm_par(const calib_t *c, const char *impl, int weight_bytes);

#endif
