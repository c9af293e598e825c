/* trace: the one in-memory model of expert-activation traces, and the
 * readers that fill it. Two kinds: counts (steps x layers x experts, token-
 * expert assignments) and per-token routing (tokens x layers x top-k ids).
 * Layers are MoE layers only; dense layers in a source are dropped and
 * first_layer remembers where the MoE layers began. */
#ifndef MOESIM_TRACE_H
#define MOESIM_TRACE_H

#include <stdint.h>

enum trace_kind { TRACE_COUNTS, TRACE_TOKENS };

typedef struct trace {
    char *path;           /* file it was read from */
    const char *format;   /* "sglang-json", "jsonl", "npy", "csv", "synthetic" */
    enum trace_kind kind;
    int n_layers;         /* MoE layers */
    int n_experts;
    int top_k;            /* per-token kind; 0 when unknown */
    int n_steps;          /* >= 1 */
    int has_steps;        /* 0: the source has no time axis (n_steps == 1) */
    int first_layer;      /* source index of the first MoE layer */

    /* counts kind: [n_steps][n_layers][n_experts] */
    double *counts;
    /* optional: counts by source device [n_steps][n_layers][n_src][n_experts] */
    int n_src;
    double *src_counts;

    /* per-token kind: n_tokens tokens, each with a step */
    int n_tokens;
    int *tok_step;        /* [n_tokens] */
    int16_t *tok_experts; /* [n_tokens][n_layers][top_k], -1 = layer missing */
    float *tok_scores;    /* [n_tokens][n_layers][top_k] or NULL */
} trace_t;

void trace_free(trace_t *t);
/* Reads any supported format, chosen by content and extension. */
int trace_read(const char *path, trace_t **out);
/* SGLang {"logical_count": [[..] x layers]} (optionally with a step axis). */
int trace_read_sglang(const char *path, trace_t **out);

/* Counts of step s, layer l: [n_experts] (per-token traces are counted into
 * counts on load, so every trace has them). */
static inline const double *trace_counts(const trace_t *t, int step, int layer) {
    return t->counts + ((int64_t)step * t->n_layers + layer) * t->n_experts;
}
/* Counts of layer l summed over all steps into out[n_experts]. */
void trace_layer_total(const trace_t *t, int layer, double *out);

#endif
