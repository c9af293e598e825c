/* The cost calculator (`moesim cost`) prints exactly what the model
 * charges: its --csv lines against the C API (cost_experts_ns, the flow
 * network, cost_link_ns) and against cases worked out by hand; bad
 * arguments name the flag and the fix. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib.h"
#include "cmd.h"
#include "cost.h"
#include "hw.h"
#include "moe.h"
#include "util.h"

static void quiet(void) { ms_err_quiet(1); }

/* Runs moesim cost with argv, its stdout captured into out. */
static int run_cost(char **argv, int argc, char *out, size_t n) {
    char path[] = "/tmp/moesim-cost-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    fflush(stdout);
    int keep = dup(1);
    dup2(fd, 1);
    int rc = cmd_cost(argc, argv);
    fflush(stdout);
    dup2(keep, 1);
    close(keep);
    lseek(fd, 0, SEEK_SET);
    ssize_t got = read(fd, out, n - 1);
    out[got > 0 ? got : 0] = 0;
    close(fd);
    unlink(path);
    return rc;
}

/* The --csv output is a header and a row with exact figures: checks the
 * header and gives the row with the fields from `from` on rounded to %.3f
 * (the microseconds the cases below state). */
static const char *row3(const char *out, const char *header, int from) {
    static char row[512];
    size_t h = strlen(header);
    cr_assert(!strncmp(out, header, h) && out[h] == '\n', "header of '%s'", out);
    char copy[512];
    snprintf(copy, sizeof copy, "%s", out + h + 1);
    copy[strcspn(copy, "\n")] = 0;
    row[0] = 0;
    int i = 0;
    for (char *f = strtok(copy, ","); f; f = strtok(NULL, ","), i++) {
        size_t n = strlen(row);
        if (i >= from) snprintf(row + n, sizeof row - n, "%s%.3f", i ? "," : "", strtod(f, NULL));
        else snprintf(row + n, sizeof row - n, "%s%s", i ? "," : "", f);
    }
    strcat(row, "\n");
    return row;
}
#define EXPERT_H "query,hardware,model,dtype,experts,tokens,us"
#define A2A_H "query,hardware,devices,bytes_per_rank,pattern,flow_us,analytic_us"

Test(cost_cmd, expert_prints_what_the_step_charges) {
    char out[512], want[512];
    char *argv[] = {"cost", "expert", "--hardware", "H200", "--model", "deepseek-v3",
                    "--experts", "8", "--tokens", "64", "--csv", NULL};
    cr_assert_eq(run_cost(argv, 11, out, sizeof out), 0, "%s", ms_err_last());
    hw_t h = *hw_find("H200");
    h.calib = calib_builtin(&h);
    double ns = cost_experts_ns(&h, moe_find("deepseek-v3"),
                                (double[]){64, 64, 64, 64, 64, 64, 64, 64}, 8);
    snprintf(want, sizeof want, "expert,H200,deepseek-v3,fp8,8,64,%.3f\n", ns / 1e3);
    cr_assert_str_eq(row3(out, EXPERT_H, 6), want);
    /* --dtype bf16 switches to the BF16 fit (and BF16 activations in) */
    char *bf[] = {"cost", "expert", "--hardware", "H200", "--model", "deepseek-v3",
                  "--experts", "8", "--tokens", "64", "--csv", "--dtype", "bf16", NULL};
    cr_assert_eq(run_cost(bf, 13, out, sizeof out), 0);
    moe_model_t m = *moe_find("deepseek-v3");
    m.weight_bytes = m.dispatch_bytes = 2;
    snprintf(want, sizeof want, "expert,H200,deepseek-v3,bf16,8,64,%.3f\n",
             cost_experts_even_ns(&h, &m, 8, 64) / 1e3);
    cr_assert_str_eq(row3(out, EXPERT_H, 6), want);
}

/* By hand, H800 (no measurements: kernel_ns + the hard max): one FP8
 * DeepSeek-V3 expert with 512 tokens, 32,554.07 ns of FLOPs (compute-bound,
 * tests/test_cost.c) + 4,000 = 36.554 us. */
Test(cost_cmd, expert_by_hand) {
    char out[512];
    char *argv[] = {"cost", "expert", "--hardware", "H800", "--model", "deepseek-v3",
                    "--experts", "1", "--tokens", "512", "--csv", NULL};
    cr_assert_eq(run_cost(argv, 11, out, sizeof out), 0);
    cr_assert_str_eq(row3(out, EXPERT_H, 6), "expert,H800,deepseek-v3,fp8,1,512,36.554\n");
}

/* By hand, H800 NVLink (data sheet: 200 GB/s x 0.8, 2 us, no ramp or
 * derating): 2 devices, 1e6 bytes per rank, half to the other: 2,000 +
 * 500,000 / 160e9 s = 5,125 ns in both modes. H200 (measured link): the
 * flow figure is the network's, the analytic one cost_link_ns of the
 * busiest port. */
Test(cost_cmd, a2a_by_hand_and_against_the_api) {
    char out[512], want[512];
    char *argv[] = {"cost", "a2a", "--hardware", "H800", "--devices", "2",
                    "--bytes-per-rank", "1e6", "--csv", NULL};
    cr_assert_eq(run_cost(argv, 9, out, sizeof out), 0, "%s", ms_err_last());
    cr_assert_str_eq(row3(out, A2A_H, 5), "a2a,H800,2,1000000,even,5.125,5.125\n");
    char *sk[] = {"cost", "a2a", "--hardware", "H200", "--devices", "4",
                  "--bytes-per-rank", "4194304", "--pattern", "skew:3", "--csv", NULL};
    cr_assert_eq(run_cost(sk, 11, out, sizeof out), 0, "%s", ms_err_last());
    hw_link_t lk = cost_scaleup_link(hw_find("H200"));
    double send[16], q = 4194304.0 / 4;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) send[a * 4 + b] = (a ? 1 : 3) * q;
    snprintf(want, sizeof want, "a2a,H200,4,4194304,skew:3,%.3f,%.3f\n",
             calib_a2a_matrix_ns(&lk, 4, send) / 1e3, cost_link_ns(&lk, 9 * q, 3 * q, 1) / 1e3);
    cr_assert_str_eq(row3(out, A2A_H, 5), want);
}

Test(cost_cmd, bad_arguments_name_the_flag_and_the_fix, .init = quiet) {
    char out[512];
    struct {
        char *argv[16];
        int argc;
        const char *msg;
    } cases[] = {
        {{"cost", "expert", "--model", "deepseek-v3", "--experts", "8", "--tokens", "64"}, 8,
         "--hardware is missing"},
        {{"cost", "expert", "--hardware", "B300", "--model", "deepseek-v3", "--experts", "8",
          "--tokens", "64"}, 10, "--hardware 'B300' is unknown"},
        {{"cost", "expert", "--hardware", "H200", "--model", "gpt", "--experts", "8", "--tokens",
          "64"}, 10, "--model 'gpt' is unknown"},
        {{"cost", "expert", "--hardware", "H200", "--model", "deepseek-v3", "--experts", "2.5",
          "--tokens", "64"}, 10, "--experts 2.5 is not a whole number"},
        {{"cost", "expert", "--hardware", "H200", "--model", "deepseek-v3", "--experts", "8",
          "--tokens", "-1"}, 10, "--tokens -1 is outside"},
        {{"cost", "expert", "--hardware", "H200", "--model", "deepseek-v3", "--experts", "8",
          "--tokens", "64", "--dtype", "fp4"}, 12, "--dtype 'fp4' is not bf16 or fp8"},
        {{"cost", "a2a", "--hardware", "H200", "--devices", "2", "--bytes-per-rank", "lots"}, 8,
         "--bytes-per-rank 'lots' is not a number"},
        {{"cost", "a2a", "--hardware", "H200", "--devices", "2", "--bytes-per-rank", "1024",
          "--pattern", "zipf"}, 10, "--pattern 'zipf' is not even or skew:F"},
        {{"cost", "a2a", "--hardware", "H200", "--devices", "2", "--bytes-per-rank", "1024",
          "--pattern", "skew:0.5"}, 10, "--pattern skew:F 0.5 is outside"},
        {{"cost", "a2a", "--hardware", "H200", "--devices", "16", "--bytes-per-rank", "1024"}, 8,
         "more than the 8 of one H200 node"},
        {{"cost", "a2a", "--hardware", "H200", "--bytes-per-rank", "1024"}, 6,
         "--devices is missing"},
        {{"cost", "frob"}, 2, "the subcommands are 'expert' and 'a2a'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        /* a missing flag or subcommand is a usage mistake (2), a bad value bad input (1) */
        int usage = strstr(cases[i].msg, "is missing") || strstr(cases[i].msg, "subcommands");
        cr_assert_eq(run_cost(cases[i].argv, cases[i].argc, out, sizeof out), usage ? 2 : 1,
                     "case %zu", i);
        cr_assert(strstr(ms_err_last(), cases[i].msg), "case %zu: '%s' lacks '%s'", i,
                  ms_err_last(), cases[i].msg);
        cr_assert_str_eq(out, "", "case %zu printed a figure", i);
    }
}
