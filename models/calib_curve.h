/* calib_curve: a fitted calibration (the measured points and the factor
 * curves) and the lookups the cost model makes in it. Split from calib so
 * that the cost model can read a curve without the fitting code, which
 * itself fits against the cost model's roofline (calib -> cost -> curve). */
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

/* A factor curve; n == 0 means "not measured" (factor 1). */
typedef struct calib_curve {
    int n;     /* nodes */
    double *x; /* ln(tokens per expert) or ln(bytes), strictly ascending */
    double *f; /* geometric mean of measured / modelled time at x */
} calib_curve_t;

typedef struct calib {
    char source[512];            /* the files, or "builtin H200 (models/calib/...)" */
    hw_t hw;                     /* hardware the curves were fitted against (its calib NULL) */
    char **files;                /* names the points' file fields point into */
    int n_files;
    calib_gemm_pt_t *gemm;       /* in file order (sorted within each file) */
    int n_gemm;
    calib_a2a_pt_t *a2a;
    int n_a2a;
    char gemm_impl[CALIB_NAME_MAX]; /* implementation the GEMM curves use */
    double gemm_overhead_ns;     /* fitted fixed cost per expert (replaces kernel_ns) */
    calib_curve_t gemm_all;      /* roofline factor, all dtypes pooled */
    calib_curve_t gemm_wb[3];    /* by weight bytes: [1] fp8, [2] bf16 */
    calib_curve_t a2a_all;       /* all patterns pooled */
} calib_t;

/* A curve at x (ln tokens or ln bytes): 1 with no nodes, clamped at its
 * ends, linear between nodes. */
double calib_curve_at(const calib_curve_t *cv, double x);

/* The curves; 1 when c is NULL or has no points of that kind, clamped
 * beyond the measured range. The GEMM factor multiplies the roofline term
 * (calib_roofline_ns), not the overhead; the all-to-all factor multiplies
 * calib_predict_a2a_ns. */
double calib_gemm_factor(const calib_t *c, double tokens_per_expert);
/* The curve of one weight dtype (1 fp8, 2 bf16), else the pooled one. */
double calib_gemm_factor_wb(const calib_t *c, int weight_bytes, double tokens_per_expert);
/* The fitted per-expert fixed cost, or fallback_ns without GEMM points. */
double calib_gemm_overhead_ns(const calib_t *c, double fallback_ns);
double calib_a2a_factor(const calib_t *c, double bytes);

#endif
