/* bench_step: how fast one DeepSeek-V3 decode step simulates at EP144
 * (18 nodes x 8 H800, 288 slots = 256 experts + 32 redundant, 128 tokens a
 * device, KV length 4,989), in flow and analytic mode, token-level routing
 * and count mode. Prints simulated seconds / wall seconds against the
 * targets: the flow mode at least 1 (faster than real time), the analytic
 * mode at least 100, per-token flow with its replay at least 10 (issue 18).
 * Routing is replayed from the SGLang DeepSeek-V3 trace; its sampling time
 * is shown apart ("+replay", in CPU seconds), since it belongs to the
 * trace replay, not to the cluster model. The layout is balanced the way
 * DeepSeek's EPLB does it (the 32 hottest experts of each layer get a second
 * replica, replicas packed heaviest first onto the least-loaded device),
 * so the simulated step is the deployment's, not a badly skewed one.
 *
 * A last line runs the count-mode flow at EP384 (8 nodes x 48 devices of
 * H800, 384 slots = 256 experts + 128 redundant, one a device, 128 tokens a
 * device), the scale of issue 18's CloudMatrix384 target: at least 1x.
 *
 * Each case runs in a child process, which prints its own peak resident
 * memory (getrusage ru_maxrss: the trace and layouts the parent loaded
 * included).
 *
 * Usage: bench_step [--quick] [--normal] [--case N]   (--normal: DeepEP
 * normal mode; --case: only the N-th line, for profiling)
 * It also prints the documented step of docs/cost-model.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "place.h"
#include "replay.h"
#include "step.h"
#include "trace.h"
#include "util.h"

#define TRACE "traces/data/deepseek-v3-sglang/decode_in1000out1000.json"

/* EPLB-like balanced layout from the trace's whole-run counts. */
static place_layout_t *balanced(const trace_t *tr, int L, int E, int D, int dpn, int red) {
    int S = E + red, spd = S / D;
    place_layout_t *lo = place_layout_new(L, E, D, dpn);
    double *w = ms_malloc((size_t)E * sizeof *w), *dl = ms_malloc((size_t)D * sizeof *dl);
    int *cnt = ms_malloc((size_t)E * sizeof *cnt), *order = ms_malloc((size_t)S * sizeof *order);
    int *rep = ms_malloc((size_t)S * sizeof *rep), *used = ms_malloc((size_t)D * sizeof *used);
    int *se = ms_malloc((size_t)S * sizeof *se);
    for (int l = 0; l < L; l++) {
        trace_layer_total(tr, l, w);
        for (int e = 0; e < E; e++) cnt[e] = 1;
        for (int r = 0; r < red; r++) { /* argmax load / replicas */
            int b = 0;
            for (int e = 1; e < E; e++)
                if (w[e] / cnt[e] > w[b] / cnt[b]) b = e;
            cnt[b]++;
        }
        int n = 0;
        for (int e = 0; e < E; e++)
            for (int c = 0; c < cnt[e]; c++) rep[n++] = e;
        for (int i = 0; i < S; i++) order[i] = i;
        for (int i = 1; i < S; i++) { /* insertion sort by replica weight, descending */
            int x = order[i], j = i;
            while (j && w[rep[order[j - 1]]] / cnt[rep[order[j - 1]]] < w[rep[x]] / cnt[rep[x]]) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = x;
        }
        for (int d = 0; d < D; d++) dl[d] = 0, used[d] = 0;
        for (int i = 0; i < S; i++) {
            int e = rep[order[i]], b = -1;
            for (int d = 0; d < D; d++)
                if (used[d] < spd && (b < 0 || dl[d] < dl[b])) b = d;
            se[b * spd + used[b]++] = e;
            dl[b] += w[e] / cnt[e];
        }
        if (place_layer_set(lo, l, spd, se)) exit(1);
    }
    free(w);
    free(dl);
    free(cnt);
    free(order);
    free(rep);
    free(used);
    free(se);
    return lo;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of this process: on a loaded shared machine the wall clock
 * also counts the time other processes held the cores. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *name;
    enum step_mode mode;
    int count;   /* count mode */
    int overlap;
    int steps;
    double target;
    int big;     /* 1: the EP384 cluster */
    double replay_target; /* issue 18: per-token flow with its replay, > 0 */
} case_t;

/* Peak resident memory of this process so far, MiB. */
static double peak_mib(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) ? -1 : ru.ru_maxrss / 1024.0;
}

/* One case, timed; prints its line. Returns 0, or 1 on a failed step. */
static int run_case(const case_t *k, const cluster_t *c, const moe_model_t *m,
                    const place_layout_t *lo, replay_t *rp, enum step_a2a a2a) {
    int D = c->n_devices, L = moe_n_moe_layers(m), E = m->n_experts, T = 128;
    int *tokens = ms_malloc((size_t)D * sizeof *tokens);
    for (int d = 0; d < D; d++) tokens[d] = T;
    double *load = ms_malloc((size_t)L * E * sizeof *load);
    cluster_t cc = *c;
    cc.mode = k->mode;
    cc.overlap = k->overlap;
    cc.a2a = a2a;
    step_sim_t *sim = step_new(&cc, m);
    double sim_s = 0, wall = 0, cpu_replay = 0, solves = 0, cpu = 0;
    int64_t t = 0;
    for (int s = 0; s < k->steps; s++) {
        double c0 = cpu_s();
        step_in_t in = {.start_ns = t, .layout = lo, .kv_len = 4989};
        if (k->count) {
            replay_counts(rp, s, (double)T * D, load);
            in.expert_load = load;
            in.tokens = tokens;
        } else {
            in.route = replay_step(rp, s);
        }
        double t1 = now_s(), c1 = cpu_s();
        step_result_t r;
        if (step_run(sim, &in, &r)) return 1;
        double t2 = now_s();
        double c2 = cpu_s();
        cpu += c2 - c1;
        cpu_replay += c2 - c0;
        wall += t2 - t1;
        sim_s += (r.end_ns - r.start_ns) * 1e-9;
        solves += r.net_solves;
        t = r.end_ns;
    }
    double ratio = sim_s / wall;
    char tg[80] = "";
    int n = 0;
    if (k->target > 0)
        n = snprintf(tg, sizeof tg, ">= %g %s", k->target, ratio >= k->target ? "ok" : "MISSED");
    if (k->replay_target > 0) /* on the CPU clock: the wall one counts other processes */
        snprintf(tg + n, sizeof tg - (size_t)n, "; +replay >= %g %s", k->replay_target,
                 sim_s / cpu_replay >= k->replay_target ? "ok" : "MISSED");
    printf("%-26s %6d %10.3f %11.3f %9.1f %9.1f %8.2f %7.0f %8.0f  %s\n", k->name, k->steps,
           sim_s * 1e3 / k->steps, wall * 1e3 / k->steps, ratio, sim_s / cpu,
           sim_s / cpu_replay, solves / k->steps, peak_mib(), tg);
    step_free(sim);
    free(tokens);
    free(load);
    return 0;
}

int main(int argc, char **argv) {
    int quick = 0, only = -1;
    enum step_a2a a2a = STEP_A2A_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--normal")) a2a = STEP_A2A_NORMAL;
        else if (!strcmp(argv[i], "--case") && i + 1 < argc) only = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_step [--quick] [--normal] [--case N]\n");
            return 2;
        }
    }
    const moe_model_t *m = moe_find("deepseek-v3");
    cluster_t c = {.n_nodes = 18, .devices_per_node = 8, .n_devices = 144, .hw = *hw_find("H800")};
    cluster_t big = {.n_nodes = 8, .devices_per_node = 48, .n_devices = 384, .hw = c.hw};
    int D = c.n_devices, L = moe_n_moe_layers(m), E = m->n_experts, T = 128;
    trace_t *tr = NULL;
    replay_t *rp = NULL, *rp_big = NULL;
    if (trace_read(TRACE, &tr) || replay_new(tr, m->top_k, D, T, 1, &rp) ||
        replay_new(tr, m->top_k, big.n_devices, T, 1, &rp_big))
        return 1;
    place_layout_t *lo = balanced(tr, L, E, D, 8, 32);
    place_layout_t *lo_big = balanced(tr, L, E, big.n_devices, big.devices_per_node, 128);
    int *tokens = ms_malloc((size_t)D * sizeof *tokens);
    for (int d = 0; d < D; d++) tokens[d] = T;
    double *load = ms_malloc((size_t)L * E * sizeof *load);

    case_t cases[] = {
        {"flow, token routing", STEP_FLOW, 0, 0, quick ? 1 : 4, 1, 0, 10},
        {"flow, count mode", STEP_FLOW, 1, 0, quick ? 2 : 10, 1, 0, 0},
        {"flow, count, overlap", STEP_FLOW, 1, 1, quick ? 2 : 10, 1, 0, 0},
        {"analytic, count mode", STEP_ANALYTIC, 1, 0, quick ? 200 : 2000, 100, 0, 0},
        {"analytic, count, overlap", STEP_ANALYTIC, 1, 1, quick ? 200 : 2000, 100, 0, 0},
        {"analytic, token routing", STEP_ANALYTIC, 0, 0, quick ? 1 : 4, 0, 0, 0},
        {"EP384 flow, count mode", STEP_FLOW, 1, 0, quick ? 1 : 5, 1, 1, 0},
    };
    printf("EP144 DeepSeek-V3 decode on H800 (18 x 8), 32 redundant, 128 tokens/device, KV 4989\n");
    printf("(EP384: 8 x 48 H800, 128 redundant; peak MiB: the case's process, trace included)\n");
    printf("(sim/cpu: simulated over CPU seconds, what the wall ratio would be on an idle core;\n"
           " +replay: the same with the routing's sampling from the trace counted in)\n");
    printf("%-26s %6s %10s %11s %9s %9s %8s %7s %8s  %s\n", "case", "steps", "step ms", "wall ms/st",
           "sim/wall", "sim/cpu", "+replay", "solves", "peak MiB", "target");
    fflush(stdout);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        case_t *k = &cases[i];
        if (only >= 0 && (size_t)only != i) continue;
        /* a child per case, so that its peak memory is its own */
        pid_t pid = fork();
        if (pid < 0) {
            perror("bench_step: fork");
            return 1;
        }
        if (pid == 0) {
            int rc = k->big ? run_case(k, &big, m, lo_big, rp_big, a2a)
                            : run_case(k, &c, m, lo, rp, a2a);
            fflush(stdout);
            _exit(rc);
        }
        int st = 0;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
            fprintf(stderr, "bench_step: case '%s' failed\n", k->name);
            return 1;
        }
    }
    /* the documented step: every slot serves 512 pairs */
    place_layout_t *doc = place_layout_new(L, E, D, 8);
    int se[288];
    for (int s = 0; s < 288; s++) se[s] = s % E;
    for (int l = 0; l < L; l++) place_layer_set(doc, l, 2, se);
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) load[(size_t)l * E + e] = e < 32 ? 1024 : 512;
    printf("documented EP144 decode step (docs/cost-model.md):");
    for (int mode = 1; mode >= 0; mode--) {
        cluster_t cc = c;
        cc.mode = (enum step_mode)mode;
        step_sim_t *sim = step_new(&cc, m);
        step_in_t in = {.layout = doc, .expert_load = load, .tokens = tokens, .kv_len = 4989};
        step_result_t r;
        if (step_run(sim, &in, &r)) return 1;
        printf(" %s %.6f ms%s", step_mode_name(cc.mode), (r.end_ns - r.start_ns) * 1e-6,
               mode ? "," : "\n");
        step_free(sim);
    }
    place_layout_free(doc);
    free(tokens);
    free(load);
    place_layout_free(lo);
    place_layout_free(lo_big);
    replay_free(rp);
    replay_free(rp_big);
    trace_free(tr);
    return 0; /* a missed target is printed, not fatal: timings on a shared machine vary */
}
