/* util: error reporting, allocation, files and strict number parsing. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char err_last[1024];
static int err_quiet;

static void (*before_message)(void);

void ms_before_message(void (*fn)(void)) { before_message = fn; }

int ms_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_last, sizeof err_last, fmt, ap);
    va_end(ap);
    if (!err_quiet && before_message) before_message();
    if (!err_quiet) fprintf(stderr, "moesim: %s\n", err_last);
    return MS_ERR;
}

void ms_warn(const char *fmt, ...) {
    if (err_quiet) return;
    if (before_message) before_message();
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
    return ms_read_file_max(path, MS_MAX_FILE_BYTES, buf, len);
}

int ms_open_regular(const char *path, long long max, long long *size) {
    /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return ms_err("%s: cannot open: %s (check the path)", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return ms_err("%s: cannot read: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ms_err("%s: not a regular file (%s); give a file", path,
                      S_ISDIR(st.st_mode) ? "a folder" : S_ISFIFO(st.st_mode) ? "a FIFO"
                      : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : "a socket");
    }
    if ((long long)st.st_size > max) {
        close(fd);
        return ms_err("%s: %lld bytes, more than the %lld moesim reads from such a file (is it "
                      "the right file? split or shorten it)", path, (long long)st.st_size, max);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if (size) *size = (long long)st.st_size;
    return fd;
}

int ms_read_file_max(const char *path, long long max, char **buf, size_t *len) {
    long long size;
    int fd = ms_open_regular(path, max, &size);
    if (fd < 0) return MS_ERR;
    /* Read at most max bytes, whatever the file grows to meanwhile. */
    size_t cap = (size_t)size + 1, n = 0;
    char *b = ms_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            if ((long long)cap > max) break;
            b = ms_realloc(b, cap *= 2);
        }
        ssize_t got = read(fd, b + n, cap - n - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int e = errno;
            close(fd);
            free(b);
            return ms_err("%s: read error: %s", path, strerror(e));
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    close(fd);
    if ((long long)n > max) {
        free(b);
        return ms_err("%s: more than the %lld bytes moesim reads from such a file (is it the "
                      "right file?)", path, max);
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

int ms_check_memory(double bytes, const char *where, const char *what) {
    double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (phys <= 0 || bytes <= 0.8 * phys) return MS_OK;
    return ms_err("%s: %s needs about %.3g GiB of memory, more than this machine's %.1f GiB "
                  "(lower it)", where, what, bytes / (1 << 30), phys / (1 << 30));
}
