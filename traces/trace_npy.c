/* trace_npy: NumPy .npy count arrays, [steps][layers][experts] as Huawei's
 * public competition traces ship them (or [layers][experts] without a time
 * axis). Such files run to hundreds of megabytes, so the reader converts
 * the mapped bytes in one pass with no per-element parsing, and the writer
 * streams in blocks. Format: numpy.org NEP 1 (versions 1.0, 2.0, 3.0). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"
#include "trace_int.h"
#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "trace_npy reads little-endian .npy data in place; add byte swapping for this host"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAX_DIMS 8

enum npy_type { NPY_I8, NPY_I4, NPY_F4, NPY_F8 };

typedef struct npy_hdr {
    enum npy_type type;
    int size;             /* bytes per element */
    int fortran;          /* 1: column-major */
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    int have_descr, have_order, have_shape;
} npy_hdr_t;

typedef struct npy_scan {
    const char *name, *s; /* whole file */
    size_t i, end;        /* position in, end of, the header dict */
} npy_scan_t;

static int npy_bad(const npy_scan_t *p, const char *what) {
    return ms_err("%s: byte %zu: bad .npy header: %s (save the array with numpy.save)", p->name,
                  p->i, what);
}

static void npy_ws(npy_scan_t *p) {
    while (p->i < p->end && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n'))
        p->i++;
}

static int npy_expect(npy_scan_t *p, char c, const char *what) {
    npy_ws(p);
    if (p->i >= p->end || p->s[p->i] != c) return npy_bad(p, what);
    p->i++;
    return MS_OK;
}

/* A Python string literal 'x' or "x" into out (at most n - 1 bytes). */
static int npy_str(npy_scan_t *p, char *out, size_t n) {
    npy_ws(p);
    if (p->i >= p->end || (p->s[p->i] != '\'' && p->s[p->i] != '"'))
        return npy_bad(p, "expected a quoted string");
    char q = p->s[p->i++];
    size_t k = 0;
    while (p->i < p->end && p->s[p->i] != q) {
        if (k + 1 >= n) return npy_bad(p, "string too long");
        out[k++] = p->s[p->i++];
    }
    if (p->i >= p->end) return npy_bad(p, "unterminated string");
    p->i++;
    out[k] = 0;
    return MS_OK;
}

static int npy_descr(npy_scan_t *p, npy_hdr_t *h) {
    npy_ws(p);
    size_t at = p->i;
    char d[32];
    if (npy_str(p, d, sizeof d)) return MS_ERR;
    static const struct { const char *d; enum npy_type t; int size; } T[] = {
        {"<i8", NPY_I8, 8}, {"<i4", NPY_I4, 4}, {"<f4", NPY_F4, 4}, {"<f8", NPY_F8, 8}};
    for (size_t k = 0; k < sizeof T / sizeof *T; k++)
        if (!strcmp(d, T[k].d)) {
            h->type = T[k].t;
            h->size = T[k].size;
            return MS_OK;
        }
    p->i = at;
    if (d[0] == '>')
        return ms_err("%s: byte %zu: dtype '%s' is big-endian (save a little-endian copy: "
                      "a.astype(a.dtype.newbyteorder('<')))", p->name, at, d);
    return ms_err("%s: byte %zu: dtype '%s' is not supported (int64 '<i8', int32 '<i4', "
                  "float32 '<f4' or float64 '<f8'; convert with a.astype('<i8'))", p->name, at, d);
}

static int npy_bool(npy_scan_t *p, int *v) {
    npy_ws(p);
    if (p->end - p->i >= 4 && !memcmp(p->s + p->i, "True", 4)) {
        *v = 1;
        p->i += 4;
        return MS_OK;
    }
    if (p->end - p->i >= 5 && !memcmp(p->s + p->i, "False", 5)) {
        *v = 0;
        p->i += 5;
        return MS_OK;
    }
    return npy_bad(p, "fortran_order must be True or False");
}

static int npy_shape(npy_scan_t *p, npy_hdr_t *h) {
    if (npy_expect(p, '(', "shape must be a tuple like (3072, 58, 256)")) return MS_ERR;
    h->ndim = 0;
    for (;;) {
        npy_ws(p);
        if (p->i < p->end && p->s[p->i] == ')') {
            p->i++;
            return MS_OK;
        }
        if (p->i >= p->end || p->s[p->i] < '0' || p->s[p->i] > '9')
            return npy_bad(p, "shape entries must be non-negative integers");
        int64_t v = 0;
        while (p->i < p->end && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
            if (v > (INT64_MAX - 9) / 10) return npy_bad(p, "shape entry too large");
            v = v * 10 + (p->s[p->i++] - '0');
        }
        if (p->i < p->end && p->s[p->i] == 'L') p->i++; /* Python 2 longs */
        if (h->ndim == NPY_MAX_DIMS) return npy_bad(p, "too many dimensions");
        h->shape[h->ndim++] = v;
        npy_ws(p);
        if (p->i < p->end && p->s[p->i] == ',') p->i++;
        else if (p->i >= p->end || p->s[p->i] != ')')
            return npy_bad(p, "expected ',' or ')' in shape");
    }
}

/* The header dict: {'descr': '<i8', 'fortran_order': False, 'shape': (..), } */
static int npy_dict(npy_scan_t *p, npy_hdr_t *h) {
    if (npy_expect(p, '{', "expected '{' starting the header dict")) return MS_ERR;
    for (;;) {
        npy_ws(p);
        if (p->i < p->end && p->s[p->i] == '}') {
            p->i++;
            break;
        }
        npy_ws(p);
        size_t at = p->i;
        char key[32];
        if (npy_str(p, key, sizeof key) || npy_expect(p, ':', "expected ':' after a key"))
            return MS_ERR;
        int rc;
        if (!strcmp(key, "descr")) rc = npy_descr(p, h), h->have_descr = 1;
        else if (!strcmp(key, "fortran_order")) rc = npy_bool(p, &h->fortran), h->have_order = 1;
        else if (!strcmp(key, "shape")) rc = npy_shape(p, h), h->have_shape = 1;
        else {
            p->i = at;
            return npy_bad(p, "unknown key (only descr, fortran_order and shape belong)");
        }
        if (rc) return MS_ERR;
        npy_ws(p);
        if (p->i < p->end && p->s[p->i] == ',') p->i++;
        else if (p->i >= p->end || p->s[p->i] != '}') return npy_bad(p, "expected ',' or '}'");
    }
    npy_ws(p);
    if (p->i != p->end) return npy_bad(p, "text after the header dict");
    if (!h->have_descr || !h->have_order || !h->have_shape)
        return npy_bad(p, "the header needs 'descr', 'fortran_order' and 'shape'");
    return MS_OK;
}

/* Converts n elements at src to doubles; returns the index of the first
 * negative, NaN or infinite value, or -1. One pass, branch-free inside. */
static int64_t npy_convert(const char *src, enum npy_type type, int64_t n, double *dst) {
    int bad = 0;
    switch (type) {
    case NPY_I8:
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, 8);
            bad |= v < 0;
            dst[i] = (double)v;
        }
        break;
    case NPY_I4:
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, src + 4 * i, 4);
            bad |= v < 0;
            dst[i] = v;
        }
        break;
    case NPY_F4:
        for (int64_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, src + 4 * i, 4);
            bad |= !(v >= 0 && v <= 3.4e38f);
            dst[i] = v;
        }
        break;
    case NPY_F8:
        for (int64_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, src + 8 * i, 8);
            bad |= !(v >= 0 && v <= 1.7e308);
            dst[i] = v;
        }
        break;
    }
    if (!bad) return -1;
    for (int64_t i = 0; i < n; i++)
        if (!(dst[i] >= 0) || isinf(dst[i])) return i;
    return -1;
}

static uint32_t le16(const char *p) {
    return (uint32_t)(unsigned char)p[0] | (uint32_t)(unsigned char)p[1] << 8;
}
static uint32_t le32(const char *p) {
    return le16(p) | (uint32_t)(unsigned char)p[2] << 16 | (uint32_t)(unsigned char)p[3] << 24;
}

int trace_read_npy_mem(const char *name, const char *buf, size_t len, trace_t **out) {
    if (len == 0) return ms_err("%s: empty file (0 bytes; expected a NumPy .npy array)", name);
    if (len < 10 || memcmp(buf, NPY_MAGIC, 6))
        return ms_err("%s: byte 0: not a NumPy .npy file (no \\x93NUMPY magic; write it with "
                      "numpy.save)", name);
    int major = (unsigned char)buf[6], minor = (unsigned char)buf[7];
    size_t hstart;
    uint32_t hlen;
    if (major == 1) {
        hlen = le16(buf + 8);
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return ms_err("%s: byte 8: file ends inside the .npy preamble", name);
        hlen = le32(buf + 8);
        hstart = 12;
    } else {
        return ms_err("%s: byte 6: .npy format version %d.%d is not supported (1.0, 2.0 and 3.0 "
                      "are)", name, major, minor);
    }
    if (hlen > len - hstart)
        return ms_err("%s: byte 8: header length %u runs past the end of the %zu-byte file "
                      "(truncated file?)", name, hlen, len);
    npy_hdr_t h = {0};
    npy_scan_t p = {.name = name, .s = buf, .i = hstart, .end = hstart + hlen};
    if (npy_dict(&p, &h)) return MS_ERR;
    if (h.fortran)
        return ms_err("%s: byte %zu: array is in Fortran (column-major) order; save a C-order "
                      "copy: numpy.save(f, numpy.ascontiguousarray(a))", name, hstart);
    if (h.ndim != 2 && h.ndim != 3) {
        char dims[160] = "";
        for (int d = 0; d < h.ndim; d++)
            snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%lld", d ? ", " : "",
                     (long long)h.shape[d]);
        return ms_err("%s: byte %zu: shape (%s) has %d dimension%s; expected [steps][layers]"
                      "[experts] (or [layers][experts])", name, hstart, dims, h.ndim,
                      h.ndim == 1 ? "" : "s");
    }
    int64_t T = h.ndim == 3 ? h.shape[0] : 1, L = h.shape[h.ndim - 2], E = h.shape[h.ndim - 1];
    if (trace_dims_ok(name, T, L, E)) return MS_ERR;
    int64_t n = T * L * E;
    size_t data = hstart + hlen, need = (size_t)n * (size_t)h.size;
    if (len - data < need)
        return ms_err("%s: byte %zu: the data holds %zu bytes but shape (%lld, %lld, %lld) of "
                      "%d-byte elements needs %zu (truncated file?)", name, data, len - data,
                      (long long)T, (long long)L, (long long)E, h.size, need);
    if (len - data > need)
        ms_warn("%s: byte %zu: %zu bytes after the array's data are ignored", name, data + need,
                len - data - need);
    trace_t *t = trace_new(name, "npy", TRACE_COUNTS, (int)T, (int)L, (int)E);
    t->has_steps = h.ndim == 3;
    int64_t bad = npy_convert(buf + data, h.type, n, t->counts);
    if (bad >= 0) {
        double v = t->counts[bad];
        int64_t s = bad / (L * E), l = bad / E % L, e = bad % E;
        trace_free(t);
        return ms_err("%s: byte %zu: element [%lld][%lld][%lld] = %g (counts must be finite and "
                      ">= 0)", name, data + (size_t)bad * h.size, (long long)s, (long long)l,
                      (long long)e, v);
    }
    *out = t;
    return MS_OK;
}

int trace_write_npy(const trace_t *t, FILE *f) {
    int64_t n = (int64_t)t->n_steps * t->n_layers * t->n_experts;
    /* Whole counts stay integers (int64), as recorders write them. */
    int whole = 1;
    for (int64_t i = 0; i < n && whole; i++)
        whole = t->counts[i] == floor(t->counts[i]) && t->counts[i] < 9007199254740992.0;
    char dict[200];
    int steps = t->has_steps || t->n_steps > 1;
    if (steps)
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d, %d), }",
                 whole ? "<i8" : "<f8", t->n_steps, t->n_layers, t->n_experts);
    else
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }",
                 whole ? "<i8" : "<f8", t->n_layers, t->n_experts);
    /* Pad so the data starts on a 64-byte boundary, as numpy does. */
    size_t hlen = strlen(dict) + 1;
    hlen += (64 - (10 + hlen) % 64) % 64;
    char pre[10] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0, (char)(hlen & 0xff), (char)(hlen >> 8)};
    fwrite(pre, 1, sizeof pre, f);
    fputs(dict, f);
    for (size_t i = strlen(dict) + 1; i < hlen; i++) fputc(' ', f);
    fputc('\n', f);
    enum { BLOCK = 1 << 16 };
    int64_t *blk = ms_malloc(BLOCK * sizeof *blk);
    for (int64_t i = 0; i < n; i += BLOCK) {
        int64_t m = n - i < BLOCK ? n - i : BLOCK;
        if (whole) {
            for (int64_t j = 0; j < m; j++) blk[j] = (int64_t)t->counts[i + j];
            fwrite(blk, sizeof *blk, (size_t)m, f);
        } else {
            fwrite(t->counts + i, sizeof *t->counts, (size_t)m, f);
        }
    }
    free(blk);
    return MS_OK;
}
