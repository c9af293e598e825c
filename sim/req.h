/* req: the request workload of a serving run: when requests arrive and how
 * many prompt and output tokens each carries. Arrivals come from a seeded
 * GSL process (Poisson, bursty gamma, or a closed loop of users) or from a
 * request trace CSV in the SplitwiseSim / Azure LLM-inference column style.
 *
 * The stream is built once before a run and is the same for every strategy
 * (same config, same seed => the same requests in the same order). */
#ifndef MOESIM_REQ_H
#define MOESIM_REQ_H

#include <stdint.h>

#include <gsl/gsl_rng.h>

#include "cfg.h"

/* How requests arrive. */
enum req_arrival {
    REQ_POISSON, /* exponential gaps at `rate` */
    REQ_GAMMA,   /* gamma gaps at `rate` with coefficient of variation `cv` (> 1: bursty) */
    REQ_CLOSED,  /* `concurrency` users, each sends its next request when the last is done */
    REQ_TRACE    /* arrival times and lengths from a CSV file */
};

/* A token-length distribution. */
enum req_dist_kind { REQ_FIXED, REQ_UNIFORM, REQ_LOGNORMAL };

typedef struct req_dist {
    enum req_dist_kind kind;
    double mean;   /* fixed value, or the lognormal's mean */
    double cv;     /* lognormal: standard deviation / mean */
    int min, max;  /* uniform bounds; lognormal draws are clamped to them */
} req_dist_t;

/* The workload part of a [serving] section. */
typedef struct req_spec {
    enum req_arrival arrival;
    double rate;            /* requests per second (poisson, gamma) */
    double cv;              /* gamma: CV of inter-arrival gaps */
    int concurrency;        /* closed: users in the loop */
    long requests;          /* stop after this many requests (0: no limit; closed: needed) */
    double duration_s;      /* stop arrivals at this time (0: no limit); closed: users send
                             * no new request after it */
    req_dist_t prompt;      /* prompt tokens per request */
    req_dist_t output;      /* output tokens per request (>= 1: the first comes from prefill) */
    char trace_path[4096];  /* trace: resolved CSV path */
    const char *trace_name; /* trace: as written in the config */
} req_spec_t;

/* One request. */
typedef struct req {
    int64_t arrival_ns; /* closed loop: 0 for the first `concurrency`, set when released */
    int prompt_tokens;
    int output_tokens;
} req_t;

typedef struct req_list {
    int64_t n;
    req_t *r; /* [n], in arrival order */
} req_list_t;

/* Reads the workload keys of section sec (arrival, rate, cv, concurrency,
 * requests, duration_s, request_trace, prompt*, output*); complaints name
 * file:line. Paths are relative to the config file's folder. */
int req_spec_load(cfg_t *cfg, const char *sec, req_spec_t *out);

/* Builds the stream: draws arrivals and lengths with a GSL generator seeded
 * from seed, or reads the CSV. */
int req_build(const req_spec_t *spec, uint64_t seed, req_list_t *out);
void req_list_free(req_list_t *l);

/* Reads a request trace CSV. The header names the columns (any order, case
 * ignored, other columns skipped):
 *   arrival: arrival_timestamp | arrival_s | arrival_time | timestamp
 *            (seconds, a number) or TIMESTAMP (Azure: "2023-11-16 18:15:46.68")
 *   prompt:  prompt_size | ContextTokens | prompt_tokens | input_tokens
 *   output:  token_size | GeneratedTokens | output_tokens
 * Times are taken relative to the first row and must not decrease. Errors
 * name file:line and the fix. max_rows > 0 and max_s > 0 cut the stream. */
int req_read_csv(const char *path, long max_rows, double max_s, req_list_t *out);
/* The same from size bytes in memory (path names it in messages). */
int req_read_csv_mem(const char *path, const char *data, size_t size, long max_rows,
                     double max_s, req_list_t *out);

/* One draw from a length distribution (>= 1). */
int req_draw_len(const req_dist_t *d, gsl_rng *rng);

#endif
