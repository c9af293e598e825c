/* trace: the trace model, the format dispatch and the SGLang reader. */
#include "trace.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void trace_free(trace_t *t) {
    if (!t) return;
    free(t->path);
    free(t->counts);
    free(t->src_counts);
    free(t->tok_step);
    free(t->tok_experts);
    free(t->tok_scores);
    free(t);
}

void trace_layer_total(const trace_t *t, int layer, double *out) {
    memset(out, 0, (size_t)t->n_experts * sizeof *out);
    for (int s = 0; s < t->n_steps; s++) {
        const double *c = trace_counts(t, s, layer);
        for (int e = 0; e < t->n_experts; e++) out[e] += c[e];
    }
}

int trace_read(const char *path, trace_t **out) {
    return trace_read_sglang(path, out);
}

/* Reads one layer row [count x experts] into dst; checks every value. */
static int read_row(const char *path, json_t *row, int step, int layer, int n_experts, double *dst) {
    if (!json_is_array(row))
        return ms_err("%s: logical_count step %d layer %d is not an array of counts", path, step,
                      layer);
    if ((int)json_array_size(row) != n_experts)
        return ms_err("%s: logical_count step %d layer %d has %zu experts, layer 0 has %d "
                      "(ragged layers: every layer needs the same expert count)",
                      path, step, layer, json_array_size(row), n_experts);
    for (int e = 0; e < n_experts; e++) {
        json_t *v = json_array_get(row, (size_t)e);
        if (!json_is_number(v))
            return ms_err("%s: logical_count step %d layer %d expert %d is not a number", path,
                          step, layer, e);
        double x = json_number_value(v);
        if (!isfinite(x) || x < 0)
            return ms_err("%s: logical_count step %d layer %d expert %d = %g (counts must be "
                          "finite and >= 0)", path, step, layer, e, x);
        dst[e] = x;
    }
    return MS_OK;
}

int trace_read_sglang(const char *path, trace_t **out) {
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line < 0) return ms_err("%s: %s (check the path)", path, jerr.text);
        return ms_err("%s:%d:%d: invalid JSON: %s (byte %d)", path, jerr.line, jerr.column,
                      jerr.text, jerr.position);
    }
    int rc = MS_ERR;
    trace_t *t = NULL;
    json_t *lc = json_object_get(root, "logical_count");
    if (!json_is_array(lc) || json_array_size(lc) == 0) {
        ms_err("%s: no \"logical_count\" array of layers (expected SGLang expert statistics: "
               "{\"logical_count\": [[count per expert] per layer]})", path);
        goto done;
    }
    /* [layers][experts] or, from recorder dumps, [steps][layers][experts]. */
    json_t *first = json_array_get(lc, 0);
    int has_steps = json_is_array(first) && json_array_size(first) > 0 &&
                    json_is_array(json_array_get(first, 0));
    int n_steps = has_steps ? (int)json_array_size(lc) : 1;
    json_t *step0 = has_steps ? first : lc;
    int n_src_layers = (int)json_array_size(step0);
    json_t *row0 = json_array_get(step0, 0);
    if (!json_is_array(row0) || json_array_size(row0) == 0) {
        ms_err("%s: logical_count layer 0 is not a non-empty array of counts", path);
        goto done;
    }
    int E = (int)json_array_size(row0);
    double *all = ms_calloc((size_t)n_steps * n_src_layers * E, sizeof *all);
    for (int s = 0; s < n_steps; s++) {
        json_t *st = has_steps ? json_array_get(lc, (size_t)s) : lc;
        if (!json_is_array(st) || (int)json_array_size(st) != n_src_layers) {
            ms_err("%s: logical_count step %d has %zu layers, step 0 has %d (ragged steps)", path,
                   s, json_is_array(st) ? json_array_size(st) : 0, n_src_layers);
            free(all);
            goto done;
        }
        for (int l = 0; l < n_src_layers; l++)
            if (read_row(path, json_array_get(st, (size_t)l), s, l, E,
                         all + ((size_t)s * n_src_layers + l) * E)) {
                free(all);
                goto done;
            }
    }
    /* Leading layers with no activations in any step are dense layers. */
    int first_moe = 0;
    for (; first_moe < n_src_layers; first_moe++) {
        double sum = 0;
        for (int s = 0; s < n_steps; s++)
            for (int e = 0; e < E; e++) sum += all[((size_t)s * n_src_layers + first_moe) * E + e];
        if (sum > 0) break;
    }
    if (first_moe == n_src_layers) {
        ms_err("%s: every layer's counts are zero (nothing to replay)", path);
        free(all);
        goto done;
    }
    t = ms_calloc(1, sizeof *t);
    t->path = ms_strdup(path);
    t->format = "sglang-json";
    t->kind = TRACE_COUNTS;
    t->n_layers = n_src_layers - first_moe;
    t->n_experts = E;
    t->n_steps = n_steps;
    t->has_steps = has_steps;
    t->first_layer = first_moe;
    t->counts = ms_malloc((size_t)n_steps * t->n_layers * E * sizeof *t->counts);
    for (int s = 0; s < n_steps; s++)
        memcpy(t->counts + (size_t)s * t->n_layers * E,
               all + ((size_t)s * n_src_layers + first_moe) * E,
               (size_t)t->n_layers * E * sizeof *all);
    free(all);
    *out = t;
    rc = MS_OK;
done:
    json_decref(root);
    return rc;
}
