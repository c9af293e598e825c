/* req: request streams from GSL processes or a request trace CSV. */
#include "req.h"

#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* The request stream draws from its own generator, seeded apart from the
 * routing replay's, so changing the routing never changes the requests. */
#define REQ_SEED_SALT 0x5e7e5eedULL

/* Reads <name>, <name>_mean, _cv, _min, _max. */
static int dist_load(cfg_t *cfg, const char *sec, const char *name, double def_mean,
                     req_dist_t *d) {
    char k[64];
    const char *kind;
    if (cfg_str(cfg, sec, name, "fixed", &kind)) return MS_ERR;
    if (!strcasecmp(kind, "fixed")) d->kind = REQ_FIXED;
    else if (!strcasecmp(kind, "uniform")) d->kind = REQ_UNIFORM;
    else if (!strcasecmp(kind, "lognormal")) d->kind = REQ_LOGNORMAL;
    else
        return ms_err("%s: [%s] %s = '%s' (give fixed, uniform or lognormal)",
                      cfg_where(cfg, sec, name), sec, name, kind);
    long v;
    snprintf(k, sizeof k, "%s_mean", name);
    if (cfg_double(cfg, sec, k, def_mean, 1, 1e7, &d->mean)) return MS_ERR;
    snprintf(k, sizeof k, "%s_cv", name);
    if (cfg_double(cfg, sec, k, 1.0, 1e-6, 100, &d->cv)) return MS_ERR;
    snprintf(k, sizeof k, "%s_min", name);
    if (cfg_int(cfg, sec, k, 1, 1, 10000000, &v)) return MS_ERR;
    d->min = (int)v;
    snprintf(k, sizeof k, "%s_max", name);
    long def_max = d->kind == REQ_UNIFORM ? ms_imax(d->min, (int)lround(2 * d->mean) - d->min)
                                          : 10000000;
    if (cfg_int(cfg, sec, k, def_max, 1, 10000000, &v)) return MS_ERR;
    d->max = (int)v;
    if (d->max < d->min)
        return ms_err("%s: [%s] %s_max = %d is below %s_min = %d (raise the maximum)",
                      cfg_where(cfg, sec, k), sec, name, d->max, name, d->min);
    return MS_OK;
}

int req_spec_load(cfg_t *cfg, const char *sec, req_spec_t *o) {
    memset(o, 0, sizeof *o);
    const char *s;
    long v;
    if (cfg_str(cfg, sec, "arrival", "poisson", &s)) return MS_ERR;
    if (!strcasecmp(s, "poisson")) o->arrival = REQ_POISSON;
    else if (!strcasecmp(s, "gamma")) o->arrival = REQ_GAMMA;
    else if (!strcasecmp(s, "closed")) o->arrival = REQ_CLOSED;
    else if (!strcasecmp(s, "trace")) o->arrival = REQ_TRACE;
    else
        return ms_err("%s: [%s] arrival = '%s' (give poisson, gamma, closed or trace)",
                      cfg_where(cfg, sec, "arrival"), sec, s);
    if (cfg_double(cfg, sec, "rate", 10, 1e-6, 1e7, &o->rate)) return MS_ERR;
    if (cfg_double(cfg, sec, "cv", 1, 1e-3, 100, &o->cv)) return MS_ERR;
    if (cfg_int(cfg, sec, "concurrency", 64, 1, 100000000, &v)) return MS_ERR;
    o->concurrency = (int)v;
    if (cfg_int(cfg, sec, "requests", 0, 0, 1000000000, &o->requests)) return MS_ERR;
    if (cfg_double(cfg, sec, "duration_s", 0, 0, 1e7, &o->duration_s)) return MS_ERR;
    if (cfg_str(cfg, sec, "request_trace", NULL, &s)) return MS_ERR;
    if (s) {
        o->trace_name = s;
        ms_path_beside(cfg_origin(cfg), s, o->trace_path, sizeof o->trace_path);
    }
    if (dist_load(cfg, sec, "prompt", 1000, &o->prompt)) return MS_ERR;
    if (dist_load(cfg, sec, "output", 200, &o->output)) return MS_ERR;

    /* Every request is held in memory (its list and the simulator's state,
     * about 128 bytes): refuse a stream that cannot fit, naming its key. */
    double n = o->requests ? (double)o->requests
               : o->arrival == REQ_TRACE ? 0 : o->rate * o->duration_s;
    char what[128];
    snprintf(what, sizeof what, o->requests ? "[%s] requests = %.0f" :
             "[%s] rate x duration_s = %.3g requests", sec, n);
    if (ms_check_memory(n * 128, cfg_where(cfg, sec, o->requests ? "requests" : "rate"), what))
        return MS_ERR;
    if (o->arrival == REQ_TRACE && !s)
        return ms_err("%s: [%s] arrival = trace needs request_trace = FILE.csv (columns "
                      "arrival_timestamp,prompt_size,token_size or Azure's "
                      "TIMESTAMP,ContextTokens,GeneratedTokens)",
                      cfg_where(cfg, sec, "arrival"), sec);
    if (o->arrival != REQ_TRACE && s)
        return ms_err("%s: [%s] request_trace is only read with arrival = trace (set it, or "
                      "remove request_trace)", cfg_where(cfg, sec, "request_trace"), sec);
    if (o->arrival == REQ_CLOSED && !o->requests)
        return ms_err("%s: [%s] arrival = closed needs requests = N (how many requests the "
                      "users send in all)", cfg_where(cfg, sec, "arrival"), sec);
    if (o->arrival != REQ_TRACE && !o->requests && o->duration_s <= 0)
        return ms_err("%s: [%s] give requests = N or duration_s = S (when arrivals stop)",
                      cfg_where(cfg, sec, "arrival"), sec);
    return MS_OK;
}

int req_draw_len(const req_dist_t *d, gsl_rng *rng) {
    double x;
    switch (d->kind) {
    case REQ_UNIFORM:
        return d->min + (int)gsl_rng_uniform_int(rng, (unsigned long)(d->max - d->min + 1));
    case REQ_LOGNORMAL: {
        double s2 = log1p(d->cv * d->cv);
        x = gsl_ran_lognormal(rng, log(d->mean) - s2 / 2, sqrt(s2));
        break;
    }
    default: x = d->mean;
    }
    long n = lround(x);
    if (n < d->min) n = d->min;
    if (n > d->max) n = d->max;
    return n < 1 ? 1 : (int)n;
}

void req_list_free(req_list_t *l) {
    if (!l) return;
    free(l->r);
    l->r = NULL;
    l->n = 0;
}

static void push(req_list_t *l, int64_t *cap, req_t r) {
    if (l->n == *cap) l->r = ms_realloc(l->r, (size_t)(*cap = *cap ? 2 * *cap : 1024) * sizeof r);
    l->r[l->n++] = r;
}

int req_build(const req_spec_t *sp, uint64_t seed, req_list_t *out) {
    memset(out, 0, sizeof *out);
    if (sp->arrival == REQ_TRACE) {
        if (req_read_csv(sp->trace_path, sp->requests, sp->duration_s, out)) return MS_ERR;
        if (!out->n) return ms_err("%s: no requests before duration_s (nothing to serve)",
                                   sp->trace_path);
        return MS_OK;
    }
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, (unsigned long)(seed ^ REQ_SEED_SALT));
    int64_t cap = 0;
    double t = 0, mean_gap = 1.0 / sp->rate;
    /* Gamma gaps with mean 1/rate and CV cv: shape 1/cv^2, scale mean*cv^2. */
    double shape = 1.0 / (sp->cv * sp->cv), scale = mean_gap * sp->cv * sp->cv;
    for (;;) {
        if (sp->requests && out->n >= sp->requests) break;
        if (sp->arrival == REQ_POISSON) t += gsl_ran_exponential(rng, mean_gap);
        else if (sp->arrival == REQ_GAMMA) t += gsl_ran_gamma(rng, shape, scale);
        if (sp->arrival != REQ_CLOSED && sp->duration_s > 0 && t >= sp->duration_s) break;
        req_t r = {.arrival_ns = sp->arrival == REQ_CLOSED ? 0 : llround(t * 1e9)};
        r.prompt_tokens = req_draw_len(&sp->prompt, rng);
        r.output_tokens = req_draw_len(&sp->output, rng);
        push(out, &cap, r);
    }
    gsl_rng_free(rng);
    if (!out->n)
        return ms_err("no request arrives before duration_s = %g s at rate %g/s (raise either)",
                      sp->duration_s, sp->rate);
    return MS_OK;
}

/* ---- CSV ---- */

/* Days since 1970-01-01 of a civil date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* A time field: seconds as a number, or "YYYY-MM-DD HH:MM:SS[.frac]"
 * (Azure traces; any trailing zone is ignored: times are relative). Whole
 * seconds and the fraction are kept apart: a date is ~1.7e9 s, and a double
 * of it would keep only ~0.2 us of the fraction. */
static int parse_time(const char *s, int64_t *whole, double *frac) {
    double x;
    if (!ms_parse_double(s, &x)) {
        if (fabs(x) > 9e9) return MS_ERR;
        *whole = (int64_t)floor(x);
        *frac = x - floor(x);
        return MS_OK;
    }
    int y, mo, d, h, mi, n = 0;
    double sec;
    if (sscanf(s, "%d-%d-%d%*[ T]%d:%d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || mo < 1 ||
        mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec >= 61)
        return MS_ERR;
    *whole = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (int64_t)floor(sec);
    *frac = sec - floor(sec);
    return MS_OK;
}

static int col_is(const char *name, const char *const *alts) {
    for (; *alts; alts++)
        if (!strcasecmp(name, *alts)) return 1;
    return 0;
}

/* Splits a line in place on commas; strips spaces and surrounding quotes. */
static int split(char *line, char **f, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        char *c = strchr(p, ',');
        if (c) *c = 0;
        while (*p == ' ' || *p == '\t') p++;
        char *e = p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) *--e = 0;
        if (*p == '"' && e > p + 1 && e[-1] == '"') {
            e[-1] = 0;
            p++;
        }
        if (n < max) f[n] = p;
        n++;
        if (!c) break;
        p = c + 1;
    }
    return n;
}

int req_read_csv(const char *path, long max_rows, double max_s, req_list_t *out) {
    char *text;
    size_t len;
    memset(out, 0, sizeof *out);
    if (ms_read_file(path, &text, &len)) return MS_ERR;
    int rc = req_read_csv_mem(path, text, len, max_rows, max_s, out);
    free(text);
    return rc;
}

int req_read_csv_mem(const char *path, const char *data, size_t size, long max_rows,
                     double max_s, req_list_t *out) {
    static const char *const ARR[] = {"arrival_timestamp", "arrival_s", "arrival_time",
                                      "timestamp", NULL};
    static const char *const PR[] = {"prompt_size", "contexttokens", "prompt_tokens",
                                     "input_tokens", NULL};
    static const char *const OUTC[] = {"token_size", "generatedtokens", "output_tokens", NULL};
    enum { MAXF = 64 };
    memset(out, 0, sizeof *out);
    if (memchr(data, 0, size))
        return ms_err("%s: byte %zu is a NUL byte: a request trace is CSV text", path,
                      (size_t)((const char *)memchr(data, 0, size) - data));
    char *text = ms_malloc(size + 1); /* split in place */
    memcpy(text, data, size);
    text[size] = 0;
    int64_t cap = 0;
    int rc = MS_ERR, line = 0, ncol = 0, ca = -1, cp = -1, co = -1;
    int64_t w0 = 0, last = 0;
    double f0 = 0;
    char *p = text, *f[MAXF];
    if (!strncmp(p, "\xEF\xBB\xBF", 3)) p += 3; /* a UTF-8 byte-order mark is not text */
    while (*p) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        char *row = p;
        p = nl ? nl + 1 : p + strlen(p);
        size_t len = strlen(row);
        if (len && row[len - 1] == '\r') row[len - 1] = 0; /* CRLF files */
        if (!row[strspn(row, " \t")] || row[0] == '#') continue;
        int n = split(row, f, MAXF);
        if (!ncol) { /* the header */
            if (n > MAXF) {
                ms_err("%s:%d: %d columns in the header (at most %d)", path, line, n, MAXF);
                goto done;
            }
            ncol = n;
            for (int i = 0; i < n; i++) {
                if (col_is(f[i], ARR) && ca < 0) ca = i;
                else if (col_is(f[i], PR) && cp < 0) cp = i;
                else if (col_is(f[i], OUTC) && co < 0) co = i;
            }
            if (ca < 0 || cp < 0 || co < 0) {
                ms_err("%s:%d: header lacks a%s%s%s column (want arrival_timestamp,prompt_size,"
                       "token_size as SplitwiseSim writes, or Azure's TIMESTAMP,ContextTokens,"
                       "GeneratedTokens)", path, line, ca < 0 ? "n arrival" : "",
                       cp < 0 ? " prompt" : "", co < 0 ? " output" : "");
                goto done;
            }
            continue;
        }
        if (n != ncol) {
            ms_err("%s:%d: %d fields, the header has %d (one value per column)", path, line, n,
                   ncol);
            goto done;
        }
        int64_t tw;
        double tf;
        long pt, ot;
        if (parse_time(f[ca], &tw, &tf)) {
            ms_err("%s:%d: arrival '%s' is neither seconds nor 'YYYY-MM-DD HH:MM:SS.fff'", path,
                   line, f[ca]);
            goto done;
        }
        if (ms_parse_int(f[cp], &pt) || pt < 1 || pt > 10000000) {
            ms_err("%s:%d: prompt tokens '%s' is not a whole number from 1 to 10000000", path,
                   line, f[cp]);
            goto done;
        }
        if (ms_parse_int(f[co], &ot) || ot < 1 || ot > 10000000) {
            ms_err("%s:%d: output tokens '%s' is not a whole number from 1 to 10000000 (a "
                   "request produces at least its first token; drop rows with 0)", path, line,
                   f[co]);
            goto done;
        }
        if (!out->n) {
            w0 = tw;
            f0 = tf;
        }
        /* Nanoseconds since the first row fit int64 for 292 years only. */
        int64_t t;
        if (__builtin_sub_overflow(tw, w0, &t) || __builtin_mul_overflow(t, 1000000000, &t) ||
            __builtin_add_overflow(t, llround((tf - f0) * 1e9), &t)) {
            ms_err("%s:%d: arrival '%s' is more than 292 years from the first row's (moesim "
                   "counts nanoseconds in 64 bits; check the timestamps)", path, line, f[ca]);
            goto done;
        }
        if (out->n && t < last) {
            ms_err("%s:%d: arrival %.6f s is before the previous row's %.6f s (sort the file by "
                   "arrival time)", path, line, (double)t / 1e9, (double)last / 1e9);
            goto done;
        }
        last = t;
        if (max_rows > 0 && out->n >= max_rows) break;
        if (max_s > 0 && (double)t >= max_s * 1e9) break;
        push(out, &cap, (req_t){.arrival_ns = t, .prompt_tokens = (int)pt,
                                .output_tokens = (int)ot});
    }
    if (!ncol) {
        ms_err("%s: empty request trace (want a header line and one row per request)", path);
        goto done;
    }
    rc = MS_OK;
done:
    if (rc) req_list_free(out);
    free(text);
    return rc;
}
