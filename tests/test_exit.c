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
