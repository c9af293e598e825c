/* trace_csv: moesim's native long-form CSV, the one format that holds every
 * part of the trace model (counts by source, per-token routing with scores)
 * and that a person can write by hand. docs/traces.md is the spec:
 *
 *   # moesim-trace v1 kind=counts layers=58 experts=256 steps=1 ...  (optional)
 *   step,layer,expert,count            (or step,layer,src,expert,count)
 *   step,layer,token,experts,scores    (per-token; src optional, scores optional)
 *
 * Columns go in any order; lists are space- or semicolon-separated; rows
 * that are absent are zero (counts) or missing layers (per-token). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "trace.h"
#include "trace_int.h"
#include "util.h"

enum { C_STEP, C_LAYER, C_EXPERT, C_COUNT, C_TOKEN, C_SRC, C_EXPERTS, C_SCORES, C_N };
static const char *const COL_NAME[C_N] = {"step",  "layer", "expert",  "count",
                                          "token", "src",   "experts", "scores"};
#define CSV_MAX_FIELDS 16
#define CSV_META "# moesim-trace v1"

typedef struct csv_meta {
    int kind;                        /* -1 unknown, else enum trace_kind */
    int64_t layers, experts, steps;  /* 0 unknown */
    int64_t has_steps, first_layer, top_k, sources; /* -1 unknown */
    int line;                        /* where it was, 0 none */
} csv_meta_t;

typedef struct csv {
    const char *name, *buf;
    size_t len, pos;
    int line;
    int col[C_N];       /* field index of each column, -1 absent */
    int n_cols;
    csv_meta_t m;
    const char *fa[CSV_MAX_FIELDS], *fb[CSV_MAX_FIELDS]; /* fields of the current row */
} csv_t;

/* Next line into [*a, *b) without its line end; 0 at the end. */
static int csv_next(csv_t *c, const char **a, const char **b) {
    if (c->pos >= c->len) return 0;
    const char *s = c->buf + c->pos, *nl = memchr(s, '\n', c->len - c->pos);
    const char *e = nl ? nl : c->buf + c->len;
    c->pos = (size_t)(e - c->buf) + 1;
    c->line++;
    if (e > s && e[-1] == '\r') e--;
    *a = s;
    *b = e;
    return 1;
}

static const char *trim(const char **a, const char *b) {
    while (*a < b && (**a == ' ' || **a == '\t')) (*a)++;
    while (b > *a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    return b;
}

/* Splits a row at commas outside double quotes; strips quotes and blanks. */
static int csv_split(csv_t *c, const char *a, const char *b) {
    int n = 0;
    for (;;) {
        const char *s = a;
        int q = 0;
        while (a < b && (q || *a != ',')) {
            if (*a == '"') q = !q;
            a++;
        }
        if (n == CSV_MAX_FIELDS)
            return ms_err("%s:%d: more than %d fields (the header names at most 6 columns)",
                          c->name, c->line, CSV_MAX_FIELDS);
        const char *e = trim(&s, a);
        if (e - s >= 2 && *s == '"' && e[-1] == '"') s++, e--;
        c->fa[n] = s;
        c->fb[n] = e;
        n++;
        if (a >= b) break;
        a++;
    }
    return n;
}

/* Field f as a NUL-terminated copy in out[n]. */
static int csv_field(const csv_t *c, int f, char *out, size_t n, const char *what) {
    size_t len = (size_t)(c->fb[f] - c->fa[f]);
    if (len >= n)
        return ms_err("%s:%d: the %s field is too long (%zu bytes)", c->name, c->line, what, len);
    memcpy(out, c->fa[f], len);
    out[len] = 0;
    return MS_OK;
}

static int csv_int(const csv_t *c, int col, int64_t hi, int64_t *v) {
    char s[64];
    const char *what = COL_NAME[col];
    if (csv_field(c, c->col[col], s, sizeof s, what)) return MS_ERR;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return ms_err("%s:%d: %s '%s' is not an integer", c->name, c->line, what, s);
    if (x < 0 || x >= hi)
        return ms_err("%s:%d: %s %lld is out of range [0, %lld)%s", c->name, c->line, what, x,
                      (long long)hi, c->m.line ? " (the sizes declared in the # moesim-trace line)"
                                                : "");
    *v = x;
    return MS_OK;
}

/* A list field ("5 7" or "5;7") into up to max doubles; returns the count. */
static int csv_list(const csv_t *c, int col, double *v, int max) {
    char s[4096];
    const char *what = COL_NAME[col];
    if (csv_field(c, c->col[col], s, sizeof s, what)) return MS_ERR;
    int n = 0;
    char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ';' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        if (n == max)
            return ms_err("%s:%d: more than %d entries in %s", c->name, c->line, max, what);
        char *end;
        errno = 0;
        v[n] = strtod(p, &end);
        if (end == p || errno || !isfinite(v[n]) ||
            (*end && *end != ' ' && *end != ';' && *end != ',' && *end != '\t'))
            return ms_err("%s:%d: %s entry %d is not a finite number ('%s')", c->name, c->line,
                          what, n, s);
        n++;
        p = end;
    }
    return n;
}

/* "# moesim-trace v1 key=value ..." */
static int csv_meta(csv_t *c, const char *a, const char *b) {
    c->m.line = c->line;
    a += strlen(CSV_META);
    while (a < b) {
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        const char *k = a;
        while (a < b && *a != ' ' && *a != '\t') a++;
        if (a == k) break;
        char kv[96];
        size_t n = (size_t)(a - k) < sizeof kv - 1 ? (size_t)(a - k) : sizeof kv - 1;
        memcpy(kv, k, n);
        kv[n] = 0;
        char *eq = strchr(kv, '=');
        if (!eq) return ms_err("%s:%d: '%s' in the moesim-trace line is not key=value", c->name,
                               c->line, kv);
        *eq++ = 0;
        if (!strcmp(kv, "kind")) {
            if (!strcmp(eq, "counts")) c->m.kind = TRACE_COUNTS;
            else if (!strcmp(eq, "tokens")) c->m.kind = TRACE_TOKENS;
            else return ms_err("%s:%d: kind=%s (give counts or tokens)", c->name, c->line, eq);
            continue;
        }
        struct { const char *k; int64_t *v; int64_t lo, hi; } K[] = {
            {"layers", &c->m.layers, 1, TRACE_MAX_LAYERS},
            {"experts", &c->m.experts, 1, TRACE_MAX_EXPERTS},
            {"steps", &c->m.steps, 1, INT32_MAX},
            {"has_steps", &c->m.has_steps, 0, 1},
            {"first_layer", &c->m.first_layer, 0, 1 << 20},
            {"top_k", &c->m.top_k, 0, TRACE_MAX_TOP_K},
            {"sources", &c->m.sources, 0, 1 << 20},
        };
        size_t i = 0;
        for (; i < sizeof K / sizeof *K; i++)
            if (!strcmp(kv, K[i].k)) break;
        if (i == sizeof K / sizeof *K) continue; /* later versions may add keys */
        long v;
        if (ms_parse_int(eq, &v) || v < K[i].lo || v > K[i].hi)
            return ms_err("%s:%d: %s=%s in the moesim-trace line (give an integer in [%lld, %lld])",
                          c->name, c->line, kv, eq, (long long)K[i].lo, (long long)K[i].hi);
        *K[i].v = v;
    }
    return MS_OK;
}

/* Reads comments and the header row; fills col[] and the kind. */
static int csv_header(csv_t *c, enum trace_kind *kind) {
    const char *a, *b;
    for (;;) {
        if (!csv_next(c, &a, &b))
            return ms_err("%s: no header row (start with step,layer,expert,count or "
                          "step,layer,token,experts,scores)", c->name);
        b = trim(&a, b);
        if (a == b) continue;
        if (*a != '#') break;
        if (!c->m.line && (size_t)(b - a) >= strlen(CSV_META) &&
            !memcmp(a, CSV_META, strlen(CSV_META)) && csv_meta(c, a, b))
            return MS_ERR;
    }
    int n = csv_split(c, a, b);
    if (n < 0) return MS_ERR;
    for (int k = 0; k < C_N; k++) c->col[k] = -1;
    for (int f = 0; f < n; f++) {
        int k = 0;
        size_t len = (size_t)(c->fb[f] - c->fa[f]);
        for (; k < C_N; k++)
            if (strlen(COL_NAME[k]) == len && !strncasecmp(c->fa[f], COL_NAME[k], len)) break;
        if (k == C_N)
            return ms_err("%s:%d: unknown column '%.*s' in the header (known: step, layer, expert, "
                          "count, token, src, experts, scores)", c->name, c->line, (int)len,
                          c->fa[f]);
        if (c->col[k] >= 0)
            return ms_err("%s:%d: column %s appears twice", c->name, c->line, COL_NAME[k]);
        c->col[k] = f;
    }
    c->n_cols = n;
    int counts = c->col[C_COUNT] >= 0, tokens = c->col[C_EXPERTS] >= 0;
    if (counts == tokens || c->col[C_STEP] < 0 || c->col[C_LAYER] < 0 ||
        (counts && (c->col[C_EXPERT] < 0 || c->col[C_TOKEN] >= 0 || c->col[C_SCORES] >= 0)) ||
        (tokens && (c->col[C_TOKEN] < 0 || c->col[C_EXPERT] >= 0)))
        return ms_err("%s:%d: header must be step,layer,expert,count (counts, src optional) or "
                      "step,layer,token,experts[,scores] (per-token, src optional)", c->name,
                      c->line);
    *kind = counts ? TRACE_COUNTS : TRACE_TOKENS;
    if (c->m.kind >= 0 && (int)*kind != c->m.kind)
        return ms_err("%s:%d: the header is %s but line %d says kind=%s", c->name, c->line,
                      counts ? "counts" : "per-token", c->m.line,
                      c->m.kind == TRACE_COUNTS ? "counts" : "tokens");
    return MS_OK;
}

/* Next data row, split and checked for its field count; 0 at the end. */
static int csv_row(csv_t *c) {
    const char *a, *b;
    while (csv_next(c, &a, &b)) {
        b = trim(&a, b);
        if (a == b || *a == '#') continue;
        int n = csv_split(c, a, b);
        if (n < 0) return MS_ERR;
        if (n != c->n_cols)
            return ms_err("%s:%d: %d fields, the header has %d", c->name, c->line, n, c->n_cols);
        return 1;
    }
    return 0;
}

static int64_t lim(int64_t declared, int64_t dflt) { return declared > 0 ? declared : dflt; }

/* Applies what the metadata line says about the finished trace. */
static int csv_finish(csv_t *c, trace_t *t) {
    t->has_steps = c->m.has_steps >= 0 ? (int)c->m.has_steps : 1;
    if (!t->has_steps && t->n_steps != 1)
        return ms_err("%s:%d: has_steps=0 but the trace has %d steps", c->name, c->m.line,
                      t->n_steps);
    t->first_layer = c->m.first_layer > 0 ? (int)c->m.first_layer : 0;
    return MS_OK;
}

static int read_counts(csv_t *c, trace_t **out) {
    size_t body = c->pos;
    int body_line = c->line, has_src = c->col[C_SRC] >= 0, r;
    int64_t hiS = lim(c->m.steps, INT32_MAX), hiL = lim(c->m.layers, TRACE_MAX_LAYERS),
            hiE = lim(c->m.experts, TRACE_MAX_EXPERTS), hiR = lim(c->m.sources, 1 << 20);
    int64_t S = c->m.steps, L = c->m.layers, E = c->m.experts, R = has_src ? c->m.sources : 1;
    int64_t v[C_N];
    /* Pass 1 checks every row and finds the sizes the file does not declare. */
    int64_t mS = 0, mL = 0, mE = 0, mR = 0, rows = 0;
    while ((r = csv_row(c)) > 0) {
        char s[64];
        if (csv_int(c, C_STEP, hiS, &v[C_STEP]) || csv_int(c, C_LAYER, hiL, &v[C_LAYER]) ||
            csv_int(c, C_EXPERT, hiE, &v[C_EXPERT]) ||
            (has_src && csv_int(c, C_SRC, hiR, &v[C_SRC])) ||
            csv_field(c, c->col[C_COUNT], s, sizeof s, "count"))
            return MS_ERR;
        double x;
        if (ms_parse_double(s, &x) || x < 0) {
            char *end;
            x = strtod(s, &end);
            return ms_err("%s:%d: count '%s' %s (counts must be finite numbers >= 0)", c->name,
                          c->line, s, end != s && !*end && isnan(x) ? "is NaN"
                                      : end != s && !*end           ? "is negative or infinite"
                                                                    : "is not a number");
        }
        mS = v[C_STEP] + 1 > mS ? v[C_STEP] + 1 : mS;
        mL = v[C_LAYER] + 1 > mL ? v[C_LAYER] + 1 : mL;
        mE = v[C_EXPERT] + 1 > mE ? v[C_EXPERT] + 1 : mE;
        if (has_src) mR = v[C_SRC] + 1 > mR ? v[C_SRC] + 1 : mR;
        rows++;
    }
    if (r < 0) return MS_ERR;
    if (!rows && (!S || !L || !E))
        return ms_err("%s: no data rows after the header (and no sizes declared)", c->name);
    S = S ? S : mS;
    L = L ? L : mL;
    E = E ? E : mE;
    R = R > 0 ? R : mR;
    if (trace_dims_ok(c->name, S, L, E) || trace_src_ok(c->name, S, L, E, R)) return MS_ERR;
    trace_t *t = trace_new(c->name, "csv", TRACE_COUNTS, (int)S, (int)L, (int)E);
    t->top_k = c->m.top_k > 0 ? (int)c->m.top_k : 0;
    if (has_src) {
        t->n_src = (int)R;
        t->src_counts = ms_calloc((size_t)(S * L * R * E), sizeof *t->src_counts);
    }
    size_t cells = (size_t)(S * L * R * E);
    unsigned char *seen = ms_calloc(cells / 8 + 1, 1);
    /* Pass 2 fills; a cell given twice is an error. */
    c->pos = body;
    c->line = body_line;
    v[C_SRC] = 0;
    while ((r = csv_row(c)) > 0) {
        char s[64];
        csv_int(c, C_STEP, hiS, &v[C_STEP]);
        csv_int(c, C_LAYER, hiL, &v[C_LAYER]);
        csv_int(c, C_EXPERT, hiE, &v[C_EXPERT]);
        if (has_src) csv_int(c, C_SRC, hiR, &v[C_SRC]);
        csv_field(c, c->col[C_COUNT], s, sizeof s, "count");
        double x = strtod(s, NULL);
        size_t cell = (((size_t)v[C_STEP] * L + v[C_LAYER]) * R + v[C_SRC]) * E + v[C_EXPERT];
        if (seen[cell / 8] & (1u << cell % 8)) {
            free(seen);
            trace_free(t);
            return ms_err("%s:%d: a second row for step %lld layer %lld%s expert %lld (each cell "
                          "appears once)", c->name, c->line, (long long)v[C_STEP],
                          (long long)v[C_LAYER], has_src ? " src" : "", (long long)v[C_EXPERT]);
        }
        seen[cell / 8] |= (unsigned char)(1u << cell % 8);
        if (has_src) t->src_counts[cell] = x;
        else t->counts[cell] = x;
    }
    free(seen);
    /* By-source counts add up, in source order, to the counts. */
    if (has_src)
        for (int64_t sl = 0; sl < S * L; sl++)
            for (int64_t q = 0; q < R; q++)
                for (int64_t e = 0; e < E; e++)
                    t->counts[sl * E + e] += t->src_counts[(sl * R + q) * E + e];
    if (csv_finish(c, t)) {
        trace_free(t);
        return MS_ERR;
    }
    *out = t;
    return MS_OK;
}

typedef struct tok_row {
    int64_t step, token;
    int layer, src, line, idx;
} tok_row_t;

static int tok_cmp(const void *a, const void *b) {
    const tok_row_t *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    if (x->token != y->token) return x->token < y->token ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* A row's k expert ids (integers in [0, hiE), distinct) into ex[k] and
 * its ns scores (none: zeros) into sc[k]; raises *mE past the largest id. */
static int row_experts(const csv_t *c, const double *ids, const double *p, int ns, int k,
                       int64_t hiE, int16_t *ex, float *sc, int64_t *mE) {
    for (int j = 0; j < k; j++) {
        if (ids[j] != floor(ids[j]) || ids[j] < 0 || ids[j] >= hiE)
            return ms_err("%s:%d: expert id %g is out of range (ids are integers in [0, %lld))",
                          c->name, c->line, ids[j], (long long)hiE);
        for (int q = 0; q < j; q++)
            if (ids[q] == ids[j])
                return ms_err("%s:%d: expert %g is listed twice (a token's top-k experts are "
                              "distinct)", c->name, c->line, ids[j]);
        ex[j] = (int16_t)ids[j];
        sc[j] = ns ? (float)p[j] : 0.0f;
        *mE = ids[j] + 1 > *mE ? (int64_t)ids[j] + 1 : *mE;
    }
    return MS_OK;
}

/* The n rows sorted by (step, token, layer): each token-layer appears once
 * and a token has one src; *n_tok gets the number of tokens. */
static int count_tokens(const csv_t *c, const tok_row_t *row, int n, int *n_tok) {
    *n_tok = 0;
    for (int i = 0; i < n; i++) {
        int same_tok = i && row[i].step == row[i - 1].step && row[i].token == row[i - 1].token;
        if (same_tok && row[i].layer == row[i - 1].layer)
            return ms_err("%s:%d: step %lld token %lld layer %d is also on line %d (each "
                          "token-layer appears once)", c->name, row[i].line,
                          (long long)row[i].step, (long long)row[i].token, row[i].layer,
                          row[i - 1].line);
        if (same_tok && row[i].src != row[i - 1].src)
            return ms_err("%s:%d: src %d, but line %d gives the same token src %d", c->name,
                          row[i].line, row[i].src, row[i - 1].line, row[i - 1].src);
        *n_tok += !same_tok;
    }
    return MS_OK;
}

static int read_tokens(csv_t *c, trace_t **out) {
    int has_src = c->col[C_SRC] >= 0, has_sc = c->col[C_SCORES] >= 0, r, k = 0, k_line = 0;
    int sc_line = 0, nosc_line = 0;
    int64_t hiS = lim(c->m.steps, INT32_MAX), hiL = lim(c->m.layers, TRACE_MAX_LAYERS),
            hiE = lim(c->m.experts, TRACE_MAX_EXPERTS), hiR = lim(c->m.sources, 1 << 20);
    tok_row_t *row = NULL;
    int16_t *ex = NULL;
    float *sc = NULL;
    int n = 0, cap = 0, rc = MS_ERR;
    int64_t mS = 0, mL = 0, mE = 0, mR = 0, v[C_N];
    trace_t *t = NULL;
    v[C_SRC] = 0;
    while ((r = csv_row(c)) > 0) {
        double ids[TRACE_MAX_TOP_K], p[TRACE_MAX_TOP_K];
        if (csv_int(c, C_STEP, hiS, &v[C_STEP]) || csv_int(c, C_LAYER, hiL, &v[C_LAYER]) ||
            csv_int(c, C_TOKEN, INT64_MAX, &v[C_TOKEN]) ||
            (has_src && csv_int(c, C_SRC, hiR, &v[C_SRC])))
            goto done;
        int ne = csv_list(c, C_EXPERTS, ids, TRACE_MAX_TOP_K);
        if (ne < 0) goto done;
        if (ne == 0) {
            ms_err("%s:%d: no experts (list the token's expert ids, e.g. \"5 7\")", c->name,
                   c->line);
            goto done;
        }
        if (!k) {
            k = ne;
            k_line = c->line;
            if (c->m.top_k > 0 && c->m.top_k != k) {
                ms_err("%s:%d: %d experts but line %d declares top_k=%lld", c->name, c->line, k,
                       c->m.line, (long long)c->m.top_k);
                goto done;
            }
        } else if (ne != k) {
            ms_err("%s:%d: %d experts, but line %d has %d (every row needs the same top-k)",
                   c->name, c->line, ne, k_line, k);
            goto done;
        }
        int ns = has_sc ? csv_list(c, C_SCORES, p, TRACE_MAX_TOP_K) : 0;
        if (ns < 0) goto done;
        if (ns && ns != k) {
            ms_err("%s:%d: %d scores for %d experts (give one score per expert, or none)",
                   c->name, c->line, ns, k);
            goto done;
        }
        if (ns) sc_line = sc_line ? sc_line : c->line;
        else nosc_line = nosc_line ? nosc_line : c->line;
        if (sc_line && nosc_line) {
            ms_err("%s:%d: line %d has scores but line %d has none (give scores on every row or "
                   "on none)", c->name, c->line, sc_line, nosc_line);
            goto done;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            row = ms_realloc(row, (size_t)cap * sizeof *row);
            ex = ms_realloc(ex, (size_t)cap * k * sizeof *ex);
            sc = ms_realloc(sc, (size_t)cap * k * sizeof *sc);
        }
        if (row_experts(c, ids, p, ns, k, hiE, ex + (size_t)n * k, sc + (size_t)n * k, &mE))
            goto done;
        row[n] = (tok_row_t){v[C_STEP], v[C_TOKEN], (int)v[C_LAYER], (int)v[C_SRC], c->line, n};
        n++;
        mS = v[C_STEP] + 1 > mS ? v[C_STEP] + 1 : mS;
        mL = v[C_LAYER] + 1 > mL ? v[C_LAYER] + 1 : mL;
        if (has_src) mR = v[C_SRC] + 1 > mR ? v[C_SRC] + 1 : mR;
        if (n == INT32_MAX / 2) {
            ms_err("%s:%d: too many rows", c->name, c->line);
            goto done;
        }
    }
    if (r < 0) goto done;
    if (!n) {
        ms_err("%s: no data rows after the header", c->name);
        goto done;
    }
    qsort(row, (size_t)n, sizeof *row, tok_cmp);
    int n_tok;
    if (count_tokens(c, row, n, &n_tok)) goto done;
    int64_t S = lim(c->m.steps, mS), L = lim(c->m.layers, mL), E = lim(c->m.experts, mE);
    int64_t R = has_src ? lim(c->m.sources, mR) : 1;
    if (trace_dims_ok(c->name, S, L, E) || trace_src_ok(c->name, S, L, E, R) ||
        trace_dims_ok(c->name, n_tok, L, E))
        goto done;
    t = trace_new(c->name, "csv", TRACE_TOKENS, (int)S, (int)L, (int)E);
    t->top_k = k;
    t->n_tokens = n_tok;
    t->n_src = has_src ? (int)R : 0;
    t->tok_step = ms_malloc((size_t)n_tok * sizeof *t->tok_step);
    t->tok_src = has_src ? ms_malloc((size_t)n_tok * sizeof *t->tok_src) : NULL;
    size_t cells = (size_t)n_tok * L * k;
    t->tok_experts = ms_malloc(cells * sizeof *t->tok_experts);
    for (size_t q = 0; q < cells; q++) t->tok_experts[q] = -1;
    if (sc_line) t->tok_scores = ms_calloc(cells, sizeof *t->tok_scores);
    int tok = -1, present = 0;
    for (int i = 0; i <= n; i++) {
        int new_tok = i == n || !i || row[i].step != row[i - 1].step ||
                      row[i].token != row[i - 1].token;
        if (new_tok && tok >= 0 && present < L) {
            t->n_tokens_missing++;
            t->n_missing += L - present;
        }
        if (i == n) break;
        if (new_tok) {
            tok++;
            t->tok_step[tok] = (int)row[i].step;
            if (has_src) t->tok_src[tok] = row[i].src;
            present = 0;
        }
        present++;
        size_t dst = ((size_t)tok * L + row[i].layer) * k, src = (size_t)row[i].idx * k;
        memcpy(t->tok_experts + dst, ex + src, (size_t)k * sizeof *ex);
        if (sc_line) memcpy(t->tok_scores + dst, sc + src, (size_t)k * sizeof *sc);
    }
    trace_count_tokens(t);
    if (t->n_tokens_missing)
        ms_warn("%s: %d of %d tokens lack some of the %lld layers (%lld token-layer rows absent); "
                "replay fills them from the layer's whole-trace counts", c->name,
                t->n_tokens_missing, n_tok, (long long)L, (long long)t->n_missing);
    if (csv_finish(c, t)) goto done;
    *out = t;
    t = NULL;
    rc = MS_OK;
done:
    trace_free(t);
    free(row);
    free(ex);
    free(sc);
    return rc;
}

int trace_read_csv_mem(const char *name, const char *buf, size_t len, trace_t **out) {
    if (len == 0)
        return ms_err("%s: empty file (0 bytes; expected a header step,layer,expert,count or "
                      "step,layer,token,experts,scores)", name);
    if (memchr(buf, 0, len))
        return ms_err("%s: byte %zu: a NUL byte; this is not a text CSV file", name,
                      (size_t)((const char *)memchr(buf, 0, len) - buf));
    csv_t c = {.name = name, .buf = buf, .len = len,
               .m = {.kind = -1, .has_steps = -1, .first_layer = -1, .top_k = -1,
                     .sources = -1}};
    enum trace_kind kind = TRACE_COUNTS;
    if (csv_header(&c, &kind)) return MS_ERR;
    return kind == TRACE_COUNTS ? read_counts(&c, out) : read_tokens(&c, out);
}

static void put_meta(const trace_t *t, FILE *f) {
    fprintf(f, CSV_META " kind=%s layers=%d experts=%d steps=%d has_steps=%d first_layer=%d "
               "top_k=%d sources=%d\n",
            t->kind == TRACE_COUNTS ? "counts" : "tokens", t->n_layers, t->n_experts, t->n_steps,
            t->has_steps, t->first_layer, t->top_k, t->n_src);
}

int trace_write_csv(const trace_t *t, FILE *f) {
    int L = t->n_layers, E = t->n_experts, R = t->n_src, k = t->top_k;
    put_meta(t, f);
    if (t->kind == TRACE_COUNTS) {
        int src = t->src_counts && R > 0;
        fputs(src ? "step,layer,src,expert,count\n" : "step,layer,expert,count\n", f);
        for (int s = 0; s < t->n_steps; s++)
            for (int l = 0; l < L; l++)
                for (int q = 0; q < (src ? R : 1); q++) {
                    const double *c = src ? t->src_counts + (((size_t)s * L + l) * R + q) * E
                                          : trace_counts(t, s, l);
                    for (int e = 0; e < E; e++) {
                        if (c[e] == 0) continue;
                        if (src) fprintf(f, "%d,%d,%d,%d,%.17g\n", s, l, q, e, c[e]);
                        else fprintf(f, "%d,%d,%d,%.17g\n", s, l, e, c[e]);
                    }
                }
        return MS_OK;
    }
    int src = t->tok_src != NULL;
    fprintf(f, "step,layer,token%s,experts%s\n", src ? ",src" : "", t->tok_scores ? ",scores" : "");
    for (int i = 0, pos = 0; i < t->n_tokens; i++) {
        pos = i && t->tok_step[i] == t->tok_step[i - 1] ? pos + 1 : 0;
        for (int l = 0; l < L; l++) {
            size_t at = ((size_t)i * L + l) * k;
            if (t->tok_experts[at] < 0) continue;
            fprintf(f, "%d,%d,%d", t->tok_step[i], l, pos);
            if (src) fprintf(f, ",%d", t->tok_src[i]);
            for (int j = 0; j < k; j++) fprintf(f, "%c%d", j ? ' ' : ',', t->tok_experts[at + j]);
            if (t->tok_scores)
                for (int j = 0; j < k; j++) fprintf(f, "%c%.9g", j ? ' ' : ',', t->tok_scores[at + j]);
            fputc('\n', f);
        }
    }
    return MS_OK;
}
