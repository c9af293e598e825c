/* Exit statuses (util.h, README "Exit status"): usage mistakes give 2, bad
 * input 1, success 0; out of memory is an internal error, 3. One test per
 * class, through the commands' own entry points. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "cmd.h"
#include "util.h"

/* Under AddressSanitizer (make SAN=1) a failed malloc must return NULL, as
 * it does without it, so that ms_malloc's own out-of-memory path runs
 * (ASan reads this hook at start; other builds never call it). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

Test(exit, usage_mistakes_are_2) {
    ms_err_quiet(1);
    fclose(stderr); /* the usage text is not the test's */
    char *unknown_option[] = {"compare", "configs/demo.ini", "--no-such-option", NULL};
    cr_assert_eq(cmd_compare(3, unknown_option), MS_EXIT_USAGE);
    char *no_config[] = {"run", NULL};
    cr_assert_eq(cmd_run(1, no_config), MS_EXIT_USAGE);
    char *two_configs[] = {"compare", "a.ini", "b.ini", NULL};
    cr_assert_eq(cmd_compare(3, two_configs), MS_EXIT_USAGE);
}

Test(exit, bad_input_is_1) {
    ms_err_quiet(1);
    char *missing[] = {"run", "no/such/config.ini", NULL};
    cr_assert_eq(cmd_run(2, missing), MS_EXIT_INPUT);
    char *bad_value[] = {"compare", "configs/demo.ini", "--seeds", "0", NULL};
    cr_assert_eq(cmd_compare(4, bad_value), MS_EXIT_INPUT);
}

Test(exit, success_is_0) {
    char *help[] = {"run", "--help", NULL};
    freopen("/dev/null", "w", stdout);
    cmd_run(2, help); /* --help exits 0 itself */
}

Test(exit, out_of_memory_is_internal_3, .exit_code = MS_EXIT_INTERNAL) {
    fclose(stderr);
    /* more than any machine has, yet valid for malloc: it returns NULL */
    volatile size_t huge = SIZE_MAX / 4;
    ms_malloc(huge);
}

/* Each remaining subcommand: a usage mistake (unknown option, missing
 * argument or subcommand) gives 2, and a bad value still gives 1, so the
 * two classes stay apart in every command. */
Test(exit, report_usage_is_2) {
    ms_err_quiet(1);
    fclose(stderr);
    char *unknown[] = {"report", "x.db", "--no-such-option", NULL};
    cr_assert_eq(cmd_report(3, unknown), MS_EXIT_USAGE);
    char *no_db[] = {"report", NULL};
    cr_assert_eq(cmd_report(1, no_db), MS_EXIT_USAGE);
    char *missing_db[] = {"report", "no/such/results.db", "-o", "no/such/out", NULL};
    cr_assert_eq(cmd_report(4, missing_db), MS_EXIT_INPUT);
}

Test(exit, sweep_usage_is_2) {
    ms_err_quiet(1);
    fclose(stderr);
    char *unknown[] = {"sweep", "configs/sweep_redundancy.ini", "--no-such-option", NULL};
    cr_assert_eq(cmd_sweep(3, unknown), MS_EXIT_USAGE);
    char *no_file[] = {"sweep", NULL};
    cr_assert_eq(cmd_sweep(1, no_file), MS_EXIT_USAGE);
    char *bad_jobs[] = {"sweep", "-j", "0", "configs/sweep_redundancy.ini", NULL};
    cr_assert_eq(cmd_sweep(4, bad_jobs), MS_EXIT_INPUT);
}

Test(exit, place_usage_is_2) {
    ms_err_quiet(1);
    fclose(stderr);
    char *no_strategy[] = {"place", "--counts", "x.json", NULL};
    cr_assert_eq(cmd_place(3, no_strategy), MS_EXIT_USAGE);
    char *unknown[] = {"place", "--strategy", "eplb", "--no-such-option", NULL};
    cr_assert_eq(cmd_place(4, unknown), MS_EXIT_USAGE);
    char *stray[] = {"place", "--strategy", "eplb", "--counts", "x.json", "extra", NULL};
    cr_assert_eq(cmd_place(6, stray), MS_EXIT_USAGE);
    char *bad_value[] = {"place", "--strategy", "eplb", "--devices", "0", NULL};
    cr_assert_eq(cmd_place(5, bad_value), MS_EXIT_INPUT);
}

Test(exit, trace_usage_is_2) {
    ms_err_quiet(1);
    fclose(stderr);
    char *none[] = {"trace", NULL};
    cr_assert_eq(cmd_trace(1, none), MS_EXIT_USAGE);
    char *unknown_sub[] = {"trace", "frobnicate", NULL};
    cr_assert_eq(cmd_trace(2, unknown_sub), MS_EXIT_USAGE);
    char *no_file[] = {"trace", "info", NULL};
    cr_assert_eq(cmd_trace(2, no_file), MS_EXIT_USAGE);
    char *convert_one[] = {"trace", "convert", "in.json", NULL};
    cr_assert_eq(cmd_trace(3, convert_one), MS_EXIT_USAGE);
    char *missing[] = {"trace", "info", "no/such/trace.json", NULL};
    cr_assert_eq(cmd_trace(3, missing), MS_EXIT_INPUT);
}

Test(exit, calib_usage_is_2) {
    ms_err_quiet(1);
    fclose(stderr);
    char *none[] = {"calib", NULL};
    cr_assert_eq(cmd_calib(1, none), MS_EXIT_USAGE);
    char *stray[] = {"calib", "report", "extra", NULL};
    cr_assert_eq(cmd_calib(3, stray), MS_EXIT_USAGE);
    char *unknown[] = {"calib", "report", "--no-such-option", NULL};
    cr_assert_eq(cmd_calib(3, unknown), MS_EXIT_USAGE);
    char *bad_hw[] = {"calib", "report", "--hardware", "NOPE", NULL};
    cr_assert_eq(cmd_calib(4, bad_hw), MS_EXIT_INPUT);
}

Test(exit, list_usage_is_2) {
    ms_err_quiet(1);
    fclose(stderr);
    char *none[] = {"list", NULL};
    cr_assert_eq(cmd_list(1, none), MS_EXIT_USAGE);
    char *unknown[] = {"list", "gpus", NULL};
    cr_assert_eq(cmd_list(2, unknown), MS_EXIT_USAGE);
}

Test(exit, cost_usage_is_2) {
    ms_err_quiet(1);
    fclose(stderr);
    char *none[] = {"cost", NULL};
    cr_assert_eq(cmd_cost(1, none), MS_EXIT_USAGE);
    char *no_model[] = {"cost", "expert", "--hardware", "H200", NULL};
    cr_assert_eq(cmd_cost(4, no_model), MS_EXIT_USAGE);
    char *no_hw[] = {"cost", "a2a", "--devices", "8", NULL};
    cr_assert_eq(cmd_cost(4, no_hw), MS_EXIT_USAGE);
    char *bad_dtype[] = {"cost", "expert", "--hardware", "H200", "--model", "deepseek-v3",
                         "--experts", "8", "--tokens", "64", "--dtype", "fp4", NULL};
    cr_assert_eq(cmd_cost(12, bad_dtype), MS_EXIT_INPUT);
}
