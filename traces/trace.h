/* trace: the one in-memory model of expert-activation traces, and the
 * readers and writers that fill and store it. Every format, real or
 * synthetic, becomes this model, so replay and inspection see one thing.
 *
 * Two kinds: counts (steps x layers x experts token-expert assignments,
 * optionally by source device) and per-token routing (tokens x layers x
 * top-k ids, optionally with scores), which is also counted into counts on
 * load so every trace has them. Layers are MoE layers only; dense layers in
 * a source are dropped and first_layer remembers where the MoE layers
 * began. */
#ifndef MOESIM_TRACE_H
#define MOESIM_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Bounds every reader enforces, so hostile input cannot ask for absurd
 * tables: expert ids must fit the int16 routing tables, and replay supports
 * top-k up to 32. */
#define TRACE_MAX_EXPERTS 32767
#define TRACE_MAX_LAYERS 4096
#define TRACE_MAX_TOP_K 32
/* Default cap on steps x layers x experts (2^28 cells = 2 GiB of counts);
 * trace_limit_cells() changes it (the fuzz targets lower it). */
#define TRACE_DEFAULT_MAX_CELLS (INT64_C(1) << 28)

enum trace_kind { TRACE_COUNTS, TRACE_TOKENS };

typedef struct trace {
    char *path;           /* file it was read from (or a name for generated ones) */
    const char *format;   /* "sglang-json", "jsonl", "npy", "csv", "synthetic" */
    enum trace_kind kind;
    int n_layers;         /* MoE layers */
    int n_experts;
    int top_k;            /* experts per token; 0 when the source does not say */
    int n_steps;          /* >= 1 */
    int has_steps;        /* 0: the source has no time axis (n_steps == 1) */
    int first_layer;      /* source index of the first MoE layer */

    /* counts, both kinds: [n_steps][n_layers][n_experts] */
    double *counts;
    /* optional: counts by source device [n_steps][n_layers][n_src][n_experts],
     * summing over sources to counts; n_src == 0 and NULL when unknown */
    int n_src;
    double *src_counts;

    /* per-token kind: n_tokens tokens in step order (tok_step nondecreasing) */
    int n_tokens;
    int *tok_step;        /* [n_tokens] */
    int *tok_src;         /* [n_tokens] source device, or NULL when unknown */
    int16_t *tok_experts; /* [n_tokens][n_layers][top_k], -1 = layer missing */
    float *tok_scores;    /* [n_tokens][n_layers][top_k] or NULL */

    /* what a tolerant reader repaired (reported once as a warning) */
    int64_t n_duplicates; /* repeated (problem, token, layer) records dropped */
    int n_tokens_missing; /* tokens lacking at least one layer */
    int64_t n_missing;    /* (token, layer) records absent */
} trace_t;

/* Summary figures of a trace, as `moesim trace info` prints them. Ratios
 * are over each layer's counts summed over all steps; layers whose counts
 * are all zero are left out of the averages (their entries are NaN). */
typedef struct trace_stats {
    int n_layers;
    int ep;                /* EP size of par[]; 0 when the experts do not divide */
    double *hot;           /* [n_layers] hottest expert / mean expert */
    double *cold;          /* [n_layers] coldest expert / mean expert */
    double *par;           /* [n_layers] max / mean device load, contiguous at ep */
    double hot_mean, cold_mean, par_mean; /* averaged over active layers */
    double step_par_mean;  /* PAR per (step, layer), averaged; = par_mean for 1 step */
    double assignments;    /* token-expert pairs per layer, averaged */
    double tokens;         /* per-token kind: n_tokens; counts: assignments / top_k;
                              0 when top_k is unknown */
    int active_layers;     /* layers with any counts */
    /* Time-axis traces (NaN otherwise): mean over layers of the L1 distance
     * between the per-expert distributions of the first and second half of
     * the steps, and the same with the steps shuffled (averaged over 16
     * seeded shuffles): the sampling-noise level the drift stands against. */
    double drift, drift_noise;
} trace_stats_t;

void trace_free(trace_t *t);

/* Readers. trace_read picks the format by extension and content (see
 * docs/traces.md); each *_mem variant parses a buffer, with `name` used in
 * messages. On error nothing is returned and the message names the file
 * and a line or byte offset. */
int trace_read(const char *path, trace_t **out);
int trace_read_mem(const char *name, const char *buf, size_t len, trace_t **out);
/* SGLang {"logical_count": [[..] x layers]} (optionally with a step axis). */
int trace_read_sglang(const char *path, trace_t **out);
int trace_read_sglang_mem(const char *name, const char *buf, size_t len, trace_t **out);
/* Per-token JSONL: one {problem_id, layer, token_idx, experts, gating_probs}
 * record per line; repeated keys keep their first record (one warning). */
int trace_read_jsonl(const char *path, trace_t **out);
int trace_read_jsonl_mem(const char *name, const char *buf, size_t len, trace_t **out);
/* NumPy .npy count arrays [steps][layers][experts] or [layers][experts]. */
int trace_read_npy(const char *path, trace_t **out);
int trace_read_npy_mem(const char *name, const char *buf, size_t len, trace_t **out);
/* The native long-form CSV (counts or per-token). */
int trace_read_csv(const char *path, trace_t **out);
int trace_read_csv_mem(const char *name, const char *buf, size_t len, trace_t **out);

/* Writers. trace_write picks the format by the extension of path (.csv,
 * .npy, .json) and writes through a temporary file, so a failed write
 * leaves nothing behind. .npy and .json hold counts only. */
int trace_write(const trace_t *t, const char *path);
int trace_write_csv(const trace_t *t, FILE *f);
int trace_write_npy(const trace_t *t, FILE *f);
int trace_write_sglang(const trace_t *t, FILE *f);

/* Caps steps x layers x experts for every later read (and generation). */
void trace_limit_cells(int64_t max_cells);

/* Counts of step s, layer l: [n_experts]. */
static inline const double *trace_counts(const trace_t *t, int step, int layer) {
    return t->counts + ((int64_t)step * t->n_layers + layer) * t->n_experts;
}
/* Counts of layer l summed over all steps into out[n_experts]. */
void trace_layer_total(const trace_t *t, int layer, double *out);

/* Figures of `trace info`; ep is the EP size of the contiguous PAR. */
int trace_stats(const trace_t *t, int ep, trace_stats_t *out);
void trace_stats_free(trace_stats_t *s);

#endif
