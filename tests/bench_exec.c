/* bench_exec: what an external strategy costs moesim per re-plan at EP144
 * (DeepSeek-V3: 58 MoE layers x 256 experts in 288 slots on 144 devices),
 * the algorithm excluded: the request built and written, a process
 * started, its answer read and checked. The command is this binary itself
 * in echo mode (reads the request, answers the trivial layout), so only
 * process start and I/O are timed; a python3 echo is printed beside it for
 * scale. Target: at most 50 ms per re-plan. Prints, never fails on speed. */
#include <gsl/gsl_sort.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "place.h"
#include "trace.h"
#include "util.h"

#define L 58
#define E 256
#define S 288
#define D 144
#define REPLANS 40
#define TARGET_MS 50.0
#define TRACE "traces/data/deepseek-v3-sglang/decode_in1000out1000.json"

/* Echo mode: drain stdin, answer slot s -> expert s mod E in every layer. */
static int echo(void) {
    char buf[1 << 16];
    while (fread(buf, 1, sizeof buf, stdin) > 0) {}
    fputs("{\"physical_to_logical_map\": [", stdout);
    for (int l = 0; l < L; l++) {
        fputs(l ? ",[" : "[", stdout);
        for (int s = 0; s < S; s++) printf(s ? ",%d" : "%d", s % E);
        fputc(']', stdout);
    }
    fputs("]}\n", stdout);
    return 0;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Times REPLANS re-plans of exec:NAME running command; fills mean, median
 * and max in ms. */
static int time_replans(const char *name, const char *command, const double *w, double *mean,
                        double *median, double *max) {
    cfg_t *c = cfg_new();
    char sec[64], full[64];
    snprintf(sec, sizeof sec, "strategy.%s", name);
    snprintf(full, sizeof full, "exec:%s", name);
    cfg_set(c, sec, "command", command, "bench", 1);
    cfg_set(c, sec, "interval_steps", "1", "bench", 2);
    cfg_set(c, sec, "window_steps", "1", "bench", 3);
    const place_ops_t *ops = place_find(full);
    place_env_t env = {.n_layers = L, .n_experts = E, .n_devices = D, .devices_per_node = 8,
                       .n_nodes = 18, .redundant = S - E, .top_k = 8, .n_groups = 8,
                       .topk_groups = 4, .cfg = c, .cfg_section = sec, .seed = 1};
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    double t[REPLANS];
    int rc = ops->init(&env, w, &st, &lo);
    for (int i = 0; i < REPLANS && rc == MS_OK; i++) {
        place_obs_t obs = {.now_ns = i, .step = i, .expert_load = w};
        ops->observe(st, &obs);
        place_layout_t *nl = NULL;
        double t0 = now_ms();
        int r = ops->replan(st, i, lo, &nl);
        t[i] = now_ms() - t0;
        if (r < 0) rc = MS_ERR;
        if (r > 0) {
            place_layout_free(lo);
            lo = nl;
        }
    }
    if (rc == MS_OK) {
        double sum = 0;
        for (int i = 0; i < REPLANS; i++) sum += t[i];
        *mean = sum / REPLANS;
        gsl_sort(t, 1, REPLANS);
        *median = (t[REPLANS / 2 - 1] + t[REPLANS / 2]) / 2;
        *max = t[REPLANS - 1];
    }
    place_layout_free(lo);
    if (st && ops->destroy) ops->destroy(st);
    cfg_free(c);
    return rc;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--echo")) return echo();
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) snprintf(self, sizeof self, "%s", argv[0]);
    else self[n] = 0;
    trace_t *tr;
    if (trace_read(TRACE, &tr)) return 1;
    double *w = ms_malloc(sizeof(double) * L * E);
    for (int l = 0; l < L; l++) trace_layer_total(tr, l, w + (size_t)l * E);
    trace_free(tr);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' --echo", self);
    double mean, med, max;
    printf("bench_exec: external strategy overhead per re-plan at EP144 (%d layers x %d experts, "
           "%d slots on %d devices), %d re-plans, the algorithm excluded:\n", L, E, S, D, REPLANS);
    if (time_replans("echo_c", cmd, w, &mean, &med, &max)) {
        fprintf(stderr, "bench_exec: %s\n", ms_err_last());
        free(w);
        return 1;
    }
    printf("  C echo helper:  mean %6.2f ms, median %6.2f ms, max %6.2f ms (target <= %.0f ms "
           "mean): %s\n", mean, med, max, TARGET_MS, mean <= TARGET_MS ? "met" : "NOT met");
    double pm, pmed, pmax;
    if (time_replans("echo_py", "python3 tests/data/exec_answers.py trivial", w, &pm, &pmed,
                     &pmax) == MS_OK)
        printf("  python3 echo:   mean %6.2f ms, median %6.2f ms, max %6.2f ms (interpreter start "
               "and json parsing included; for scale)\n", pm, pmed, pmax);
    else
        printf("  python3 echo:   not run (%s)\n", ms_err_last());
    free(w);
    return 0;
}
