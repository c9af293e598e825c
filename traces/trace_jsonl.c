/* trace_jsonl: per-token routing as JSON lines, one record per (problem,
 * token, layer): {"problem_id", "layer", "token_idx" (or "token_pos"),
 * "experts": [..], "gating_probs": [..]}, as vLLM routing captures write
 * them. Real captures are messy: a key can repeat (the first record wins,
 * one warning counts them) and a token can lack layers (kept as missing,
 * counted). Time axis: (problem_id, token) order, one token per step. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"
#include "trace_int.h"
#include "util.h"

typedef struct jl_rec {
    int64_t problem, token;
    int layer;
    int line;   /* 1-based, so the earliest of repeated keys is known */
    int idx;    /* record number: where its ids and scores sit */
    int scored; /* had gating_probs */
} jl_rec_t;

typedef struct jl {
    const char *name;
    jl_rec_t *rec;
    int16_t *experts; /* [n][k] */
    float *scores;    /* [n][k] */
    int n, cap, k, k_line;
} jl_t;

static int jl_int(const jl_t *j, json_t *o, const char *key, const char *alt, int line, int64_t lo,
                  int64_t hi, int need, int64_t *v) {
    json_t *x = json_object_get(o, key);
    if (!x && alt) x = json_object_get(o, alt);
    if (!x) {
        if (!need) {
            *v = 0;
            return MS_OK;
        }
        return ms_err("%s:%d: record has no \"%s\"%s%s%s (each line needs problem_id, layer, "
                      "token_idx, experts)", j->name, line, key, alt ? " or \"" : "",
                      alt ? alt : "", alt ? "\"" : "");
    }
    if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > hi)
        return ms_err("%s:%d: \"%s\" must be an integer in [%lld, %lld]", j->name, line,
                      json_object_get(o, key) ? key : alt, (long long)lo, (long long)hi);
    *v = json_integer_value(x);
    return MS_OK;
}

/* One record into j; checks every field. */
static int jl_record(jl_t *j, json_t *o, int line) {
    if (!json_is_object(o))
        return ms_err("%s:%d: a line must be one JSON object (a routing record)", j->name, line);
    int64_t problem, token, layer;
    if (jl_int(j, o, "problem_id", NULL, line, 0, INT64_MAX, 0, &problem) ||
        jl_int(j, o, "token_idx", "token_pos", line, 0, INT64_MAX, 1, &token) ||
        jl_int(j, o, "layer", NULL, line, 0, TRACE_MAX_LAYERS - 1, 1, &layer))
        return MS_ERR;
    json_t *ex = json_object_get(o, "experts"), *pr = json_object_get(o, "gating_probs");
    if (!json_is_array(ex) || json_array_size(ex) == 0 || json_array_size(ex) > TRACE_MAX_TOP_K)
        return ms_err("%s:%d: \"experts\" must be an array of 1 to %d expert ids", j->name, line,
                      TRACE_MAX_TOP_K);
    int k = (int)json_array_size(ex);
    if (!j->k) {
        j->k = k;
        j->k_line = line;
    } else if (k != j->k) {
        return ms_err("%s:%d: %d experts, but line %d has %d (every record needs the same top-k)",
                      j->name, line, k, j->k_line, j->k);
    }
    if (pr && (!json_is_array(pr) || (int)json_array_size(pr) != k))
        return ms_err("%s:%d: \"gating_probs\" must be an array of %d numbers, one per expert",
                      j->name, line, k);
    if (j->n == j->cap) {
        j->cap = j->cap ? 2 * j->cap : 1024;
        j->rec = ms_realloc(j->rec, (size_t)j->cap * sizeof *j->rec);
        j->experts = ms_realloc(j->experts, (size_t)j->cap * k * sizeof *j->experts);
        j->scores = ms_realloc(j->scores, (size_t)j->cap * k * sizeof *j->scores);
    }
    int16_t *ev = j->experts + (size_t)j->n * k;
    float *sv = j->scores + (size_t)j->n * k;
    for (int i = 0; i < k; i++) {
        json_t *e = json_array_get(ex, (size_t)i);
        if (json_is_string(e))
            return ms_err("%s:%d: expert id %d of the record is the string \"%.32s\", not an "
                          "integer (write it without quotes)", j->name, line, i, json_string_value(e));
        if (!json_is_integer(e))
            return ms_err("%s:%d: expert id %d of the record is not an integer (ids are whole "
                          "numbers in [0, %d))", j->name, line, i, TRACE_MAX_EXPERTS);
        if (json_integer_value(e) < 0 || json_integer_value(e) >= TRACE_MAX_EXPERTS)
            return ms_err("%s:%d: expert id %d of the record is %lld, out of range (ids are "
                          "integers in [0, %d))", j->name, line, i,
                          (long long)json_integer_value(e), TRACE_MAX_EXPERTS);
        ev[i] = (int16_t)json_integer_value(e);
        for (int q = 0; q < i; q++)
            if (ev[q] == ev[i])
                return ms_err("%s:%d: expert %d is listed twice (a token's top-k experts are "
                              "distinct)", j->name, line, ev[i]);
        double p = 0;
        if (pr) {
            json_t *x = json_array_get(pr, (size_t)i);
            p = json_number_value(x);
            if (!json_is_number(x) || !isfinite(p))
                return ms_err("%s:%d: gating_probs[%d] is not a finite number", j->name, line, i);
        }
        sv[i] = (float)p;
    }
    j->rec[j->n] = (jl_rec_t){problem, token, (int)layer, line, j->n, pr != NULL};
    j->n++;
    return MS_OK;
}

static int jl_cmp(const void *a, const void *b) {
    const jl_rec_t *x = a, *y = b;
    if (x->problem != y->problem) return x->problem < y->problem ? -1 : 1;
    if (x->token != y->token) return x->token < y->token ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* Sorted, de-duplicated records -> the per-token trace. */
static int jl_build(jl_t *j, trace_t **out) {
    jl_rec_t *rec = j->rec;
    qsort(rec, (size_t)j->n, sizeof *rec, jl_cmp);
    int64_t dups = 0;
    int first_dup = 0, n_tok = 0, L = 0, E = 0, kept = 0, scored = 0, k = j->k;
    for (int i = 0; i < j->n; i++) {
        if (i && rec[i].problem == rec[i - 1].problem && rec[i].token == rec[i - 1].token &&
            rec[i].layer == rec[i - 1].layer) {
            dups++;
            if (!first_dup || rec[i].line < first_dup) first_dup = rec[i].line;
            continue;
        }
        if (!kept || rec[i].problem != rec[kept - 1].problem || rec[i].token != rec[kept - 1].token)
            n_tok++;
        rec[kept++] = rec[i];
        L = ms_imax(L, rec[i].layer + 1);
        scored += rec[i].scored;
        for (int q = 0; q < k; q++) E = ms_imax(E, j->experts[(size_t)rec[i].idx * k + q] + 1);
    }
    if (trace_dims_ok(j->name, n_tok, L, E)) return MS_ERR;
    trace_t *t = trace_new(j->name, "jsonl", TRACE_TOKENS, n_tok, L, E);
    t->has_steps = 1;
    t->top_k = k;
    t->n_tokens = n_tok;
    t->tok_step = ms_malloc((size_t)n_tok * sizeof *t->tok_step);
    size_t cells = (size_t)n_tok * L * k;
    t->tok_experts = ms_malloc(cells * sizeof *t->tok_experts);
    for (size_t c = 0; c < cells; c++) t->tok_experts[c] = -1;
    int all_scored = scored == kept;
    if (all_scored) t->tok_scores = ms_calloc(cells, sizeof *t->tok_scores);
    int tok = -1, present = 0;
    for (int i = 0; i <= kept; i++) {
        int new_tok = i == kept || !i || rec[i].problem != rec[i - 1].problem ||
                      rec[i].token != rec[i - 1].token;
        if (new_tok && tok >= 0 && present < L) {
            t->n_tokens_missing++;
            t->n_missing += L - present;
        }
        if (i == kept) break;
        if (new_tok) {
            tok++;
            t->tok_step[tok] = tok; /* batch size 1: each token is a step */
            present = 0;
        }
        present++;
        size_t dst = ((size_t)tok * L + rec[i].layer) * k, src = (size_t)rec[i].idx * k;
        memcpy(t->tok_experts + dst, j->experts + src, (size_t)k * sizeof *t->tok_experts);
        if (all_scored)
            memcpy(t->tok_scores + dst, j->scores + src, (size_t)k * sizeof *t->tok_scores);
    }
    t->n_duplicates = dups;
    trace_count_tokens(t);
    if (dups)
        ms_warn("%s: %lld repeated (problem, token, layer) records (the first repeat at line %d); "
                "kept the first record of each", j->name, (long long)dups, first_dup);
    if (t->n_tokens_missing)
        ms_warn("%s: %d of %d tokens lack some of the %d layers (%lld token-layer records "
                "absent); replay fills them from the layer's whole-trace counts", j->name,
                t->n_tokens_missing, n_tok, L, (long long)t->n_missing);
    if (scored && !all_scored)
        ms_warn("%s: only %d of %d records have gating_probs; scores dropped", j->name, scored,
                kept);
    *out = t;
    return MS_OK;
}

int trace_read_jsonl_mem(const char *name, const char *buf, size_t len, trace_t **out) {
    if (len == 0)
        return ms_err("%s: empty file (0 bytes; expected JSON lines of routing records)", name);
    jl_t j = {.name = name};
    int rc = MS_ERR, line = 0;
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - buf) : len;
        line++;
        size_t a = i;
        while (a < end && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r')) a++;
        if (a < end) {
            if (line == INT32_MAX) {
                ms_err("%s:%d: too many lines", name, line);
                goto done;
            }
            json_error_t jerr;
            json_t *o = json_loadb(buf + a, end - a, JSON_REJECT_DUPLICATES, &jerr);
            if (!o) {
                ms_err("%s:%d:%d: invalid JSON: %s (each line must be one complete JSON "
                       "object; is the file truncated?)", name, line,
                       jerr.column + (int)(a - i), jerr.text);
                goto done;
            }
            int bad = jl_record(&j, o, line);
            json_decref(o);
            if (bad) goto done;
        }
        i = end + 1;
    }
    if (!j.n) {
        ms_err("%s: no routing records (only blank lines)", name);
        goto done;
    }
    rc = jl_build(&j, out);
done:
    free(j.rec);
    free(j.experts);
    free(j.scores);
    return rc;
}
