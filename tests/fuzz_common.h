/* fuzz_common: what every trace-reader fuzz target does with a buffer:
 * read it, and when it reads, check the model's invariants and drive the
 * consumers (stats, writers, replay) so a reader that accepts inconsistent
 * data is caught where the damage would show. */
#ifndef MOESIM_FUZZ_COMMON_H
#define MOESIM_FUZZ_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "replay.h"
#include "trace.h"
#include "util.h"

#define FUZZ_CHECK(c) \
    do {              \
        if (!(c)) __builtin_trap(); \
    } while (0)

static void fuzz_check_trace(const trace_t *t) {
    FUZZ_CHECK(t->n_steps >= 1 && t->n_layers >= 1 && t->n_experts >= 1);
    FUZZ_CHECK(t->has_steps || t->n_steps == 1);
    int64_t cells = (int64_t)t->n_steps * t->n_layers * t->n_experts;
    for (int64_t i = 0; i < cells; i++) FUZZ_CHECK(isfinite(t->counts[i]) && t->counts[i] >= 0);
    if (t->kind == TRACE_TOKENS) {
        FUZZ_CHECK(t->top_k >= 1 && t->top_k <= TRACE_MAX_TOP_K && t->n_tokens >= 1);
        for (int i = 0; i < t->n_tokens; i++) {
            FUZZ_CHECK(t->tok_step[i] >= 0 && t->tok_step[i] < t->n_steps);
            FUZZ_CHECK(!i || t->tok_step[i] >= t->tok_step[i - 1]);
            if (t->tok_src) FUZZ_CHECK(t->tok_src[i] >= 0 && t->tok_src[i] < t->n_src);
            for (int l = 0; l < t->n_layers; l++)
                for (int j = 0; j < t->top_k; j++) {
                    int e = t->tok_experts[((size_t)i * t->n_layers + l) * t->top_k + j];
                    FUZZ_CHECK(e >= -1 && e < t->n_experts);
                }
        }
    }
}

#define FUZZ_REPLAY_CELLS 512 /* see fuzz_run */

static int fuzz_run(int (*reader)(const char *, const char *, size_t, trace_t **),
                    const char *name, const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        ms_err_quiet(1);
        trace_limit_cells(1 << 20); /* 8 MiB of counts: keeps the fuzzer in memory */
        init = 1;
    }
    trace_t *t = NULL;
    if (reader(name, (const char *)data, size, &t) != MS_OK) return 0;
    fuzz_check_trace(t);
    trace_stats_t st;
    if (trace_stats(t, 2, &st) == MS_OK) trace_stats_free(&st);
    FILE *f = fopen("/dev/null", "w");
    if (f) {
        trace_write_csv(t, f);
        trace_write_npy(t, f);
        trace_write_sglang(t, f);
        fclose(f);
    }
    int k = t->kind == TRACE_TOKENS ? t->top_k : (t->n_experts < 2 ? 1 : 2);
    /* Replay fits router scores per (step, layer) of counts (one step for
     * per-token traces), at a cost that grows with those cells, not with
     * the bytes read: a fuzzed trace of many layers and experts takes
     * seconds to fit, which says nothing about the reader under test, so
     * replay is exercised on small traces only. */
    size_t fit_cells = (size_t)(t->kind == TRACE_TOKENS ? 1 : t->n_steps) * t->n_layers * t->n_experts;
    replay_t *r;
    if (fit_cells <= FUZZ_REPLAY_CELLS && replay_new(t, k, 2, 3, 1, &r) == MS_OK) {
        double *out = ms_malloc((size_t)t->n_layers * t->n_experts * sizeof *out);
        for (int s = 0; s < 3; s++) {
            const route_step_t *rt = replay_step(r, s);
            for (int i = 0; i < rt->n_layers * rt->n_tokens * rt->top_k; i++)
                FUZZ_CHECK(rt->expert[i] >= 0 && rt->expert[i] < t->n_experts);
            replay_counts(r, s, 5, out);
        }
        free(out);
        replay_free(r);
    }
    trace_free(t);
    return 0;
}

#endif
