/* models/calib/a2a_pattern.py, the DeepEP-like dispatch pattern that
 * measure_a2a.py replays on N GPUs: every token reaches each rank holding one
 * of its experts exactly once, so each row's bytes lie between one and
 * min(top-k, world) copies of the batch, and the file is deterministic. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRACE "traces/data/deepseek-v3-sglang/decode_in1000out1000.json"
#define WORLD 4
#define HIDDEN 7168

static char dir[64];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/moesim-a2a-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static int make_pattern(const char *out, int world) {
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "python3 models/calib/a2a_pattern.py --trace " TRACE " --world %d --batches 16,64 --out %s"
             " >/dev/null 2>%s/err.txt",
             world, out, dir);
    return system(cmd);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

Test(a2a_pattern, rows_count_each_token_once_per_destination_rank, .init = make_dir, .fini = remove_dir) {
    char out[128];
    snprintf(out, sizeof out, "%s/ep4.csv", dir);
    cr_assert_eq(make_pattern(out, WORLD), 0, "a2a_pattern.py failed (python3 missing?)");
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    char line[256];
    long row[2][WORLD] = {{0}};
    int seen = 0, layer0 = -1;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || strncmp(line, "batch,", 6) == 0) continue;
        int b, l, s, d;
        long n;
        cr_assert_eq(sscanf(line, "%d,%d,%d,%d,%ld", &b, &l, &s, &d, &n), 5, "line: %s", line);
        cr_assert(b == 16 || b == 64, "batch %d", b);
        cr_assert(s >= 0 && s < WORLD && d >= 0 && d < WORLD);
        cr_expect_eq(n % 16, 0, "bytes %ld not 16-aligned", n);
        cr_expect_eq(n % HIDDEN, 0, "bytes %ld not whole tokens of %d B", n, HIDDEN);
        if (layer0 < 0) layer0 = l;
        cr_expect_eq(l, layer0, "one layer per file");
        cr_expect(l >= 3 && l <= 60, "layer %d is not a MoE layer", l);
        row[b == 64][s] += n;
        seen++;
    }
    fclose(f);
    cr_assert_eq(seen, 2 * WORLD * WORLD);
    for (int k = 0; k < 2; k++) {
        long batch = k ? 64 : 16;
        for (int s = 0; s < WORLD; s++) {
            cr_expect_geq(row[k][s], batch * HIDDEN, "rank %d sends under one copy per token", s);
            cr_expect_leq(row[k][s], batch * WORLD * HIDDEN, "rank %d sends over one copy per rank", s);
            /* top-8 of 256 experts over 4 ranks: a token almost surely spans several ranks */
            cr_expect_gt(row[k][s], 2 * batch * HIDDEN, "rank %d: tokens touch too few ranks", s);
        }
    }
    char again[128];
    snprintf(again, sizeof again, "%s/ep4b.csv", dir);
    cr_assert_eq(make_pattern(again, WORLD), 0);
    char *a = slurp(out), *b = slurp(again);
    cr_expect_str_eq(a, b, "same trace and seed must give the same file");
    free(a);
    free(b);
}

Test(a2a_pattern, refuses_a_world_that_does_not_divide_the_experts, .init = make_dir, .fini = remove_dir) {
    char out[128];
    snprintf(out, sizeof out, "%s/ep3.csv", dir);
    cr_assert_neq(make_pattern(out, 3), 0);
    char errp[128];
    snprintf(errp, sizeof errp, "%s/err.txt", dir);
    char *err = slurp(errp);
    cr_expect(strstr(err, "256 experts do not divide over 3 ranks") != NULL, "message: %s", err);
    free(err);
}
