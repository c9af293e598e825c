/* trace_int: helpers the trace readers, writers and generator share; not
 * part of the public trace API. Keeping the size checks and the counting of
 * per-token routing here makes every format enforce the same bounds. */
#ifndef MOESIM_TRACE_INT_H
#define MOESIM_TRACE_INT_H

#include "trace.h"

/* Checks steps x layers x experts (each >= 1, within the TRACE_MAX_*
 * bounds and the cell cap); says why with `name` when not. */
int trace_dims_ok(const char *name, int64_t steps, int64_t layers, int64_t experts);
/* The same for by-source counts: steps x layers x experts x n_src cells
 * (call after trace_dims_ok). */
int trace_src_ok(const char *name, int64_t steps, int64_t layers, int64_t experts, int64_t n_src);
/* A new trace with zeroed counts [n_steps][n_layers][n_experts]. */
trace_t *trace_new(const char *name, const char *format, enum trace_kind kind, int n_steps,
                   int n_layers, int n_experts);
/* Per-token kind: fills counts (and src_counts when tok_src is known, over
 * n_src sources) from tok_experts; missing layers count nothing. */
void trace_count_tokens(trace_t *t);
/* 1-based line and column of byte offset off in buf. */
void trace_line_col(const char *buf, size_t len, size_t off, int *line, int *col);
/* The file's bytes: memory-mapped when possible (large .npy files), read
 * otherwise. Release with trace_unmap. */
int trace_map(const char *path, char **buf, size_t *len, int *mapped);
void trace_unmap(char *buf, size_t len, int mapped);

#endif
