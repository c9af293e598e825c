/* bench_trace: how fast the trace readers are. The headline is a
 * 3072 x 58 x 256 int64 .npy (the size of Huawei's public DS-R1 count
 * trace), generated here, read with trace_read: target at most 2 s. The
 * project's real SGLang JSON and Mixtral JSONL files follow for scale. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "trace.h"
#include "util.h"

#define STEPS 3072
#define LAYERS 58
#define EXPERTS 256
#define RUNS 5

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of RUNS reads of path; checks it reads. */
static double time_read(const char *path, int runs) {
    double t[RUNS];
    for (int i = 0; i < runs; i++) {
        trace_t *tr;
        double t0 = now_s();
        if (trace_read(path, &tr)) exit(1);
        t[i] = now_s() - t0;
        trace_free(tr);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_d);
    return t[runs / 2];
}

static int write_npy(const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return ms_err("%s: cannot create", path);
    char dict[128];
    snprintf(dict, sizeof dict, "{'descr': '<i8', 'fortran_order': False, 'shape': (%d, %d, %d), }",
             STEPS, LAYERS, EXPERTS);
    size_t hl = strlen(dict) + 1;
    hl += (64 - (10 + hl) % 64) % 64;
    char pre[10] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0, (char)(hl & 0xff), (char)(hl >> 8)};
    fwrite(pre, 1, 10, f);
    fputs(dict, f);
    for (size_t i = strlen(dict) + 1; i < hl; i++) fputc(' ', f);
    fputc('\n', f);
    /* counts of a skewed decode batch: a cheap LCG, values 0..4095 */
    int64_t row[EXPERTS];
    uint64_t x = 12345;
    for (int s = 0; s < STEPS * LAYERS; s++) {
        for (int e = 0; e < EXPERTS; e++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            row[e] = (int64_t)((x >> 33) % (4096u >> (e % 8)));
        }
        fwrite(row, sizeof row, 1, f);
    }
    if (fclose(f)) return ms_err("%s: write failed (disk full?)", path);
    return MS_OK;
}

int main(void) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/moesim-bench-%ld.npy", base, (long)getpid());
    if (write_npy(path)) return 1;
    double mb = (double)STEPS * LAYERS * EXPERTS * 8 / 1e6;
    double t = time_read(path, RUNS);
    remove(path);
    printf("trace read .npy %dx%dx%d int64 (%.0f MB): %.3f s median of %d (target <= 2 s: %s), "
           "%.0f MB/s\n", STEPS, LAYERS, EXPERTS, mb, t, RUNS, t <= 2 ? "met" : "MISSED", mb / t);

    const char *json = "traces/data/deepseek-v3-sglang/decode_in1000out1000.json";
    const char *jsonl = "traces/data/mixtral-8x7b-vllm/humaneval_2_routing.jsonl";
    if (access(json, R_OK) == 0)
        printf("trace read SGLang JSON 61x256: %.4f s median of %d\n", time_read(json, RUNS), RUNS);
    if (access(jsonl, R_OK) == 0) {
        ms_err_quiet(1); /* its missing-layer warning once per run */
        printf("trace read JSONL 10779 records: %.4f s median of %d\n", time_read(jsonl, RUNS),
               RUNS);
    }
    return 0;
}
