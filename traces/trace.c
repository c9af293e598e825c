/* trace: the trace model, its shared helpers, the format dispatch (read and
 * write) and the SGLang JSON reader and writer. */
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trace_int.h"
#include "util.h"

static int64_t max_cells = TRACE_DEFAULT_MAX_CELLS;

void trace_limit_cells(int64_t cells) { max_cells = cells > 0 ? cells : TRACE_DEFAULT_MAX_CELLS; }

void trace_free(trace_t *t) {
    if (!t) return;
    free(t->path);
    free(t->counts);
    free(t->src_counts);
    free(t->tok_step);
    free(t->tok_src);
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

int trace_dims_ok(const char *name, int64_t steps, int64_t layers, int64_t experts) {
    if (steps < 1 || layers < 1 || experts < 1)
        return ms_err("%s: %lld steps x %lld layers x %lld experts: every axis needs at least one "
                      "entry (is the file empty?)", name, (long long)steps, (long long)layers,
                      (long long)experts);
    if (layers > TRACE_MAX_LAYERS)
        return ms_err("%s: %lld layers is above the supported %d (is the layer axis right?)", name,
                      (long long)layers, TRACE_MAX_LAYERS);
    if (experts > TRACE_MAX_EXPERTS)
        return ms_err("%s: %lld experts is above the supported %d (is the expert axis right?)",
                      name, (long long)experts, TRACE_MAX_EXPERTS);
    if (steps > INT32_MAX || steps * layers > max_cells / experts)
        return ms_err("%s: %lld steps x %lld layers x %lld experts is above the limit of %lld "
                      "cells (cut the trace into fewer steps)", name, (long long)steps,
                      (long long)layers, (long long)experts, (long long)max_cells);
    return MS_OK;
}

int trace_src_ok(const char *name, int64_t steps, int64_t layers, int64_t experts, int64_t n_src) {
    if (n_src > 1 && steps * layers * experts > max_cells / n_src)
        return ms_err("%s: %lld sources x %lld steps x %lld layers x %lld experts of by-source "
                      "counts is above the limit of %lld cells (fewer sources or steps)", name,
                      (long long)n_src, (long long)steps, (long long)layers, (long long)experts,
                      (long long)max_cells);
    return MS_OK;
}

trace_t *trace_new(const char *name, const char *format, enum trace_kind kind, int n_steps,
                   int n_layers, int n_experts) {
    trace_t *t = ms_calloc(1, sizeof *t);
    t->path = ms_strdup(name);
    t->format = format;
    t->kind = kind;
    t->n_steps = n_steps;
    t->n_layers = n_layers;
    t->n_experts = n_experts;
    t->counts = ms_calloc((size_t)n_steps * n_layers * n_experts, sizeof *t->counts);
    return t;
}

void trace_count_tokens(trace_t *t) {
    int L = t->n_layers, E = t->n_experts, k = t->top_k, S = t->n_src;
    size_t cells = (size_t)t->n_steps * L * E;
    memset(t->counts, 0, cells * sizeof *t->counts);
    free(t->src_counts);
    t->src_counts = t->tok_src && S > 0 ? ms_calloc(cells * S, sizeof *t->src_counts) : NULL;
    for (int i = 0; i < t->n_tokens; i++) {
        int s = t->tok_step[i];
        for (int l = 0; l < L; l++) {
            const int16_t *v = t->tok_experts + ((size_t)i * L + l) * k;
            double *c = t->counts + ((size_t)s * L + l) * E;
            double *sc = t->src_counts
                             ? t->src_counts + (((size_t)s * L + l) * S + t->tok_src[i]) * E
                             : NULL;
            for (int j = 0; j < k; j++) {
                if (v[j] < 0) continue;
                c[v[j]] += 1;
                if (sc) sc[v[j]] += 1;
            }
        }
    }
}

void trace_line_col(const char *buf, size_t len, size_t off, int *line, int *col) {
    int ln = 1, c = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            ln++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = ln;
    *col = c;
}

int trace_map(const char *path, char **buf, size_t *len, int *mapped) {
    *mapped = 0;
    long long size;
    /* A folder, FIFO or device (/dev/zero) is refused before any read. */
    int fd = ms_open_regular(path, MS_MAX_FILE_BYTES, &size);
    if (fd < 0) return MS_ERR;
    if (size > 0) {
        void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            close(fd);
            *buf = p;
            *len = (size_t)size;
            *mapped = 1;
            return MS_OK;
        }
    }
    close(fd);
    return ms_read_file(path, buf, len);
}

void trace_unmap(char *buf, size_t len, int mapped) {
    if (mapped) munmap(buf, len);
    else free(buf);
}

/* ---- format dispatch ---------------------------------------------------- */

enum trace_fmt { FMT_UNKNOWN, FMT_SGLANG, FMT_JSONL, FMT_NPY, FMT_CSV };

static const char *ext_of(const char *path) {
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    return dot ? dot + 1 : "";
}

static enum trace_fmt fmt_of_ext(const char *path) {
    const char *x = ext_of(path);
    if (!strcasecmp(x, "json")) return FMT_SGLANG;
    if (!strcasecmp(x, "jsonl") || !strcasecmp(x, "ndjson")) return FMT_JSONL;
    if (!strcasecmp(x, "npy")) return FMT_NPY;
    if (!strcasecmp(x, "csv")) return FMT_CSV;
    return FMT_UNKNOWN;
}

/* What the bytes look like: the .npy magic, a JSON document whose first line
 * is a routing record (JSONL), other JSON (SGLang), or text (CSV). */
static enum trace_fmt fmt_of_content(const char *buf, size_t len) {
    if (len >= 6 && !memcmp(buf, "\x93NUMPY", 6)) return FMT_NPY;
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
    if (i == len) return FMT_UNKNOWN;
    if (buf[i] != '{' && buf[i] != '[') return FMT_CSV;
    const char *nl = memchr(buf + i, '\n', len - i);
    size_t n = nl ? (size_t)(nl - (buf + i)) : len - i;
    /* SGLang files are one long line: spare parsing it twice */
    static const char key[] = "\"logical_count\"";
    for (size_t j = i; j + sizeof key - 1 <= i + (n < 4096 ? n : 4096); j++)
        if (!memcmp(buf + j, key, sizeof key - 1)) return FMT_SGLANG;
    json_error_t jerr;
    json_t *first = json_loadb(buf + i, n, 0, &jerr);
    int jsonl = json_is_object(first) && json_object_get(first, "experts") &&
                !json_object_get(first, "logical_count");
    json_decref(first);
    return jsonl ? FMT_JSONL : FMT_SGLANG;
}

int trace_read_mem(const char *name, const char *buf, size_t len, trace_t **out) {
    if (len == 0)
        return ms_err("%s: empty file (0 bytes; expected a trace: .json, .jsonl, .npy or .csv)",
                      name);
    enum trace_fmt f = fmt_of_ext(name), c = fmt_of_content(buf, len);
    /* .npy and .csv trust the name, so a damaged file is judged as what it
     * claims to be; JSON names choose by content between the JSON formats
     * (or a .npy in disguise); other names go by content alone. */
    if (f == FMT_UNKNOWN) f = c;
    else if ((f == FMT_SGLANG || f == FMT_JSONL) && (c == FMT_SGLANG || c == FMT_JSONL || c == FMT_NPY))
        f = c;
    switch (f) {
    case FMT_NPY: return trace_read_npy_mem(name, buf, len, out);
    case FMT_CSV: return trace_read_csv_mem(name, buf, len, out);
    case FMT_JSONL: return trace_read_jsonl_mem(name, buf, len, out);
    case FMT_SGLANG: return trace_read_sglang_mem(name, buf, len, out);
    default:
        return ms_err("%s: only white space (expected a trace: .json, .jsonl, .npy or .csv)", name);
    }
}

/* Maps the file and runs one of the *_mem readers on it. */
static int read_path(const char *path, int (*fn)(const char *, const char *, size_t, trace_t **),
                     trace_t **out) {
    char *buf;
    size_t len;
    int mapped;
    if (trace_map(path, &buf, &len, &mapped)) return MS_ERR;
    /* A UTF-8 byte-order mark (some editors and Windows tools write one)
     * is not part of the text. */
    size_t bom = len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3) ? 3 : 0;
    int rc = fn(path, buf + bom, len - bom, out);
    trace_unmap(buf, len, mapped);
    return rc;
}

int trace_read(const char *path, trace_t **out) { return read_path(path, trace_read_mem, out); }
int trace_read_sglang(const char *path, trace_t **out) {
    return read_path(path, trace_read_sglang_mem, out);
}
int trace_read_jsonl(const char *path, trace_t **out) {
    return read_path(path, trace_read_jsonl_mem, out);
}
int trace_read_npy(const char *path, trace_t **out) {
    return read_path(path, trace_read_npy_mem, out);
}
int trace_read_csv(const char *path, trace_t **out) {
    return read_path(path, trace_read_csv_mem, out);
}

int trace_write(const trace_t *t, const char *path) {
    int (*fn)(const trace_t *, FILE *) = NULL;
    switch (fmt_of_ext(path)) {
    case FMT_CSV: fn = trace_write_csv; break;
    case FMT_NPY: fn = trace_write_npy; break;
    case FMT_SGLANG: fn = trace_write_sglang; break;
    default:
        return ms_err("%s: cannot tell the format to write from the name (end it in .csv, .npy "
                      "or .json)", path);
    }
    if (t->kind == TRACE_TOKENS && fn != trace_write_csv)
        ms_warn("%s: .%s holds counts only; the per-token routing of %s is written as its counts "
                "(write .csv to keep it)", path, ext_of(path), t->path);
    size_t n = strlen(path) + 32;
    char *tmp = ms_malloc(n);
    snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        ms_err("%s: cannot create: %s (check the folder exists and is writable)", tmp,
               strerror(errno));
        free(tmp);
        return MS_ERR;
    }
    int rc = fn(t, f);
    if (fflush(f) || ferror(f)) rc = rc ? rc : ms_err("%s: write error: %s", path, strerror(errno));
    if (fclose(f) && !rc) rc = ms_err("%s: write error: %s", path, strerror(errno));
    if (!rc && rename(tmp, path)) rc = ms_err("%s: cannot rename into place: %s", path,
                                              strerror(errno));
    if (rc) remove(tmp);
    free(tmp);
    return rc;
}

/* ---- SGLang JSON ------------------------------------------------------- */

/* The parsed document loses positions, so a bad value is found again in the
 * text: skip_value steps over one JSON value of text jansson accepted. */
static size_t skip_ws(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    return i;
}

static size_t skip_value(const char *s, size_t n, size_t i) {
    int depth = 0;
    do {
        if (i >= n) return n;
        char c = s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
            i++;
        } else if (c == '[' || c == '{') {
            depth++;
            i++;
        } else if (c == ']' || c == '}') {
            depth--;
            i++;
        } else if (depth > 0) {
            i++;
        } else {
            while (i < n && !strchr(",]} \t\r\n", s[i])) i++;
        }
    } while (depth > 0);
    return i;
}

/* Byte offset of logical_count[idx[0]]...[idx[depth-1]], or of the deepest
 * part found. */
static size_t json_locate(const char *s, size_t n, const int *idx, int depth) {
    size_t i = skip_ws(s, n, 0);
    if (i >= n || s[i] != '{') return i;
    i++;
    for (;;) { /* find the key */
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != '"') return i;
        size_t k = i;
        i = skip_value(s, n, i);
        int match = i - k == 15 && !memcmp(s + k, "\"logical_count\"", 15);
        i = skip_ws(s, n, i);
        if (i < n && s[i] == ':') i = skip_ws(s, n, i + 1);
        if (match) break;
        i = skip_ws(s, n, skip_value(s, n, i));
        if (i >= n || s[i] != ',') return i;
        i++;
    }
    for (int d = 0; d < depth; d++) {
        if (i >= n || s[i] != '[') return i;
        i = skip_ws(s, n, i + 1);
        for (int j = 0; j < idx[d]; j++) {
            i = skip_ws(s, n, skip_value(s, n, i));
            if (i >= n || s[i] != ',') return i;
            i = skip_ws(s, n, i + 1);
        }
    }
    return i;
}

/* Array sizes as int, saturating (trace_dims_ok then rejects them). */
static int clamp_size(size_t n) { return n > INT32_MAX ? INT32_MAX : (int)n; }

typedef struct sg_ctx {
    const char *name, *buf;
    size_t len;
    int has_steps;
} sg_ctx_t;

/* "name:line:col (byte N)" of logical_count[s][l][e] (depth entries). */
static const char *sg_where(const sg_ctx_t *c, int s, int l, int e, int depth, char *w, size_t n) {
    int idx[3], d = 0;
    if (c->has_steps) idx[d++] = s;
    idx[d++] = l;
    idx[d++] = e;
    int used = depth - (c->has_steps ? 0 : 1);
    size_t off = json_locate(c->buf, c->len, idx, used < 0 ? 0 : used);
    int line, col;
    trace_line_col(c->buf, c->len, off, &line, &col);
    snprintf(w, n, "%s:%d:%d (byte %zu)", c->name, line, col, off);
    return w;
}

/* "step S layer L" with a step axis, "layer L" without (source indices). */
static const char *sg_label(const sg_ctx_t *c, int s, int l, char *out, size_t n) {
    if (c->has_steps) snprintf(out, n, "step %d layer %d", s, l);
    else snprintf(out, n, "layer %d", l);
    return out;
}

/* Reads one layer row [count x experts] into dst; checks every value. */
static int read_row(const sg_ctx_t *c, json_t *row, int step, int layer, int n_experts,
                    double *dst) {
    char w[512], lab[64];
    sg_label(c, step, layer, lab, sizeof lab);
    if (!json_is_array(row))
        return ms_err("%s: logical_count %s is not an array of counts",
                      sg_where(c, step, layer, 0, 2, w, sizeof w), lab);
    if ((int)json_array_size(row) != n_experts)
        return ms_err("%s: logical_count %s has %zu experts, the first layer has %d (ragged "
                      "layers: every layer needs the same expert count)",
                      sg_where(c, step, layer, 0, 2, w, sizeof w), lab, json_array_size(row),
                      n_experts);
    for (int e = 0; e < n_experts; e++) {
        json_t *v = json_array_get(row, (size_t)e);
        if (!json_is_number(v))
            return ms_err("%s: logical_count %s expert %d is not a number",
                          sg_where(c, step, layer, e, 3, w, sizeof w), lab, e);
        double x = json_number_value(v);
        if (!isfinite(x) || x < 0)
            return ms_err("%s: logical_count %s expert %d = %g (counts must be finite and >= 0)",
                          sg_where(c, step, layer, e, 3, w, sizeof w), lab, e, x);
        dst[e] = x;
    }
    return MS_OK;
}

int trace_read_sglang_mem(const char *name, const char *buf, size_t len, trace_t **out) {
    if (len == 0)
        return ms_err("%s: empty file (0 bytes; expected {\"logical_count\": [[count per expert] "
                      "per layer]})", name);
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        int nan = strstr(jerr.text, "NaN") || strstr(jerr.text, "nfinity");
        return ms_err("%s:%d:%d: invalid JSON (byte %d): %s (%s)", name, jerr.line, jerr.column,
                      jerr.position, jerr.text,
                      nan ? "NaN and Infinity are not JSON; counts must be finite numbers"
                          : "is the file truncated? it must be one complete JSON object");
    }
    sg_ctx_t c = {.name = name, .buf = buf, .len = len};
    char w[512];
    int rc = MS_ERR;
    double *all = NULL;
    trace_t *t = NULL;
    json_t *lc = json_is_object(root) ? json_object_get(root, "logical_count") : NULL;
    if (!json_is_array(lc) || json_array_size(lc) == 0) {
        ms_err("%s: no \"logical_count\" array of layers (expected SGLang expert statistics: "
               "{\"logical_count\": [[count per expert] per layer]})", name);
        goto done;
    }
    /* [layers][experts] or, from recorder dumps, [steps][layers][experts]. */
    json_t *first = json_array_get(lc, 0);
    c.has_steps = json_is_array(first) && json_array_size(first) > 0 &&
                  json_is_array(json_array_get(first, 0));
    int n_steps = c.has_steps ? clamp_size(json_array_size(lc)) : 1;
    json_t *step0 = c.has_steps ? first : lc;
    int n_src_layers = clamp_size(json_array_size(step0));
    json_t *row0 = json_array_get(step0, 0);
    if (!json_is_array(row0) || json_array_size(row0) == 0) {
        ms_err("%s: logical_count layer 0 is not a non-empty array of counts",
               sg_where(&c, 0, 0, 0, 2, w, sizeof w));
        goto done;
    }
    int E = clamp_size(json_array_size(row0));
    if (trace_dims_ok(name, n_steps, n_src_layers, E)) goto done;
    all = ms_calloc((size_t)n_steps * n_src_layers * E, sizeof *all);
    for (int s = 0; s < n_steps; s++) {
        json_t *st = c.has_steps ? json_array_get(lc, (size_t)s) : lc;
        if (!json_is_array(st) || (int)json_array_size(st) != n_src_layers) {
            ms_err("%s: logical_count step %d has %zu layers, step 0 has %d (ragged steps: "
                   "every step needs the same layers)", sg_where(&c, s, 0, 0, 1, w, sizeof w), s,
                   json_is_array(st) ? json_array_size(st) : 0, n_src_layers);
            goto done;
        }
        for (int l = 0; l < n_src_layers; l++)
            if (read_row(&c, json_array_get(st, (size_t)l), s, l, E,
                         all + ((size_t)s * n_src_layers + l) * E))
                goto done;
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
        ms_err("%s: every layer's counts are zero (nothing to replay)", name);
        goto done;
    }
    t = trace_new(name, "sglang-json", TRACE_COUNTS, n_steps, n_src_layers - first_moe, E);
    t->has_steps = c.has_steps;
    t->first_layer = first_moe;
    for (int s = 0; s < n_steps; s++)
        memcpy(t->counts + (size_t)s * t->n_layers * E,
               all + ((size_t)s * n_src_layers + first_moe) * E,
               (size_t)t->n_layers * E * sizeof *all);
    *out = t;
    rc = MS_OK;
done:
    free(all);
    json_decref(root);
    return rc;
}

/* Whole numbers as SGLang writes them (1234.0), others exactly. */
static void put_num(FILE *f, double v) {
    if (v == floor(v) && fabs(v) < 1e15) fprintf(f, "%.1f", v);
    else fprintf(f, "%.17g", v);
}

int trace_write_sglang(const trace_t *t, FILE *f) {
    int L = t->n_layers, E = t->n_experts, steps = t->has_steps || t->n_steps > 1;
    fputs("{\"logical_count\": [", f);
    for (int s = 0; s < t->n_steps; s++) {
        if (steps) fputs(s ? ", [" : "[", f);
        for (int l = 0; l < t->first_layer + L; l++) {
            fputs(l ? ", [" : "[", f);
            for (int e = 0; e < E; e++) {
                if (e) fputs(", ", f);
                put_num(f, l < t->first_layer ? 0 : trace_counts(t, s, l - t->first_layer)[e]);
            }
            fputc(']', f);
        }
        if (steps) fputc(']', f);
    }
    fputs("]}\n", f);
    return MS_OK;
}
