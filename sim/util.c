/* util: error reporting, allocation, files and strict number parsing. */
#include "util.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err_last[1024];
static int err_quiet;

int ms_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_last, sizeof err_last, fmt, ap);
    va_end(ap);
    if (!err_quiet) fprintf(stderr, "moesim: %s\n", err_last);
    return MS_ERR;
}

void ms_warn(const char *fmt, ...) {
    if (err_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("moesim: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

const char *ms_err_last(void) { return err_last; }
int ms_err_quiet(int quiet) {
    int was = err_quiet;
    err_quiet = quiet;
    return was;
}

static void *oom(size_t n) {
    fprintf(stderr, "moesim: out of memory allocating %zu bytes\n", n);
    exit(MS_EXIT_INTERNAL);
}

void *ms_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *ms_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    return p ? p : oom(count * size);
}

void *ms_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *ms_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(ms_malloc(n), s, n);
}

int ms_read_file(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return ms_err("%s: cannot open: %s (check the path)", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = ms_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) b = ms_realloc(b, cap *= 2);
        size_t got = fread(b + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return ms_err("%s: read error (is it a regular file?)", path);
    }
    b[n] = '\0';
    *buf = b;
    if (len) *len = n;
    return MS_OK;
}

void ms_path_beside(const char *file, const char *p, char *out, size_t n) {
    char *dup = ms_strdup(file);
    const char *dir = dirname(dup);
    if (p[0] == '/' || !strcmp(file, "-") || !strcmp(dir, "."))
        snprintf(out, n, "%s", p);
    else
        snprintf(out, n, "%s/%s", dir, p);
    free(dup);
}

int ms_parse_int(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s) return MS_ERR;
    while (*end == ' ' || *end == '\t') end++;
    if (*end) return MS_ERR;
    *out = v;
    return MS_OK;
}

int ms_parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v)) return MS_ERR;
    while (*end == ' ' || *end == '\t') end++;
    if (*end) return MS_ERR;
    *out = v;
    return MS_OK;
}

uint64_t ms_hash64(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}
