/* bench_sweep: the same 16-point sweep (DeepSeek-V3 on 2 nodes x 8 devices,
 * 40 decode steps of 64 tokens per device, redundant slots x seeds) run
 * serially, under `mpirun -n 1` and under `mpirun -n 2`; prints the wall
 * times and the speed-up of 2 ranks over 1. Run from the repository root
 * (make bench). */
#include <libgen.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POINTS 16

static char dir[512];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int put(const char *name, const char *text) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static long long runs_in(const char *db) {
    sqlite3 *h;
    sqlite3_stmt *q;
    long long n = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, "SELECT count(DISTINCT config_hash) FROM runs", -1, &q, NULL) ==
            SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    sqlite3_close(h);
    return n;
}

/* Runs `prefix moesim sweep` into a fresh database; wall seconds or -1. */
static double timed(const char *label, const char *prefix, const char *exe) {
    char db[700], cmd[3000];
    snprintf(db, sizeof db, "%s/%s.db", dir, label);
    snprintf(cmd, sizeof cmd, "%s '%s' sweep '%s/sweep.ini' --db '%s' --no-progress >/dev/null",
             prefix, exe, dir, db);
    double t0 = now_s();
    int rc = system(cmd);
    double t = now_s() - t0;
    long long n = runs_in(db);
    if (rc || n != POINTS) {
        fprintf(stderr, "bench_sweep: %s failed (exit %d, %lld of %d runs stored)\n", label, rc, n,
                POINTS);
        return -1;
    }
    printf("  %-14s %6.2f s  (%.3f s per point)\n", label, t, t / POINTS);
    return t;
}

int main(int argc, char **argv) {
    (void)argc;
    char self[600], exe[700], root[512], text[2048];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0 || !getcwd(root, sizeof root)) return 1;
    self[k] = 0;
    snprintf(exe, sizeof exe, "%s/moesim", dirname(self));
    if (access(exe, X_OK)) {
        fprintf(stderr, "%s: %s is missing (make bench builds it)\n", argv[0], exe);
        return 1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/moesim-bench-sweep-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return 1;
    snprintf(text, sizeof text,
             "[experiment]\nname = bench_sweep\nseed = 1\nsteps = 40\n"
             "[cluster]\nhardware = H800\nnodes = 2\ndevices_per_node = 8\n"
             "[model]\npreset = deepseek-v3\n"
             "[workload]\ntrace = %s/traces/data/deepseek-v3-sglang/decode_in1000out1000.json\n"
             "tokens_per_device = 64\n"
             "[placement]\nstrategies = static\nredundant = 0\n", root);
    if (put("base.ini", text) ||
        put("sweep.ini", "[sweep]\nbase = base.ini\nmode = grid\n[axes]\n"
                         "placement.redundant = 0, 16, 32, 48\nexperiment.seed = 1, 2, 3, 4\n"))
        return 1;

    printf("sweep of %d points (DeepSeek-V3, 2 nodes x 8 devices, 40 steps x 64 tokens/device)\n",
           POINTS);
    int rc = 0;
    double serial = timed("serial", "", exe);
    if (serial < 0) rc = 1;
    if (system("command -v mpirun >/dev/null 2>&1")) {
        printf("  mpirun is not installed: no MPI figures (make deps installs Open MPI)\n");
    } else {
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        double one = timed("mpirun -n 1", "mpirun -n 1", exe);
        double two = timed("mpirun -n 2", "mpirun --oversubscribe -n 2", exe);
        if (one < 0 || two < 0) rc = 1;
        else
            printf("speed-up of 2 ranks over 1: %.2fx (over the plain serial run: %.2fx; "
                   "%ld cores online)\n", one / two, serial / two, sysconf(_SC_NPROCESSORS_ONLN));
    }
    snprintf(text, sizeof text, "rm -rf '%s'", dir);
    if (system(text)) fprintf(stderr, "bench_sweep: could not remove %s\n", dir);
    return rc;
}
