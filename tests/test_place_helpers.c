/* The helpers strategies share (models/place.c): parameters read through
 * the config or their defaults, the slot check, the prior, the sliding load
 * window that eplb and exec re-plan from, and the "same layout" test. The
 * window's sums are derived by hand below. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "place.h"
#include "util.h"

static place_env_t env_of(int L, int E, int D, int R) {
    return (place_env_t){.n_layers = L, .n_experts = E, .n_devices = D, .devices_per_node = D,
                         .n_nodes = 1, .redundant = R, .top_k = 2};
}

Test(place_helpers, params_come_from_the_config_or_their_defaults) {
    place_env_t env = env_of(1, 8, 4, 0);
    const char *sec = place_param_section(&env, "strategy.eplb");
    cr_expect_str_eq(sec, "strategy.eplb");
    long v = -1;
    double x = -1;
    int b = -1;
    const char *s = NULL;
    cr_assert_eq(place_param_int(&env, sec, "window_steps", 1000, 1, 100000000, &v), MS_OK);
    cr_expect_eq(v, 1000, "no config: the default");
    cr_assert_eq(place_param_double(&env, "strategy.bias", "u", 0.001, 0, 1, &x), MS_OK);
    cr_expect_float_eq(x, 0.001, 0);
    cr_assert_eq(place_param_bool(&env, "strategy.capacity", "reroute", 1, &b), MS_OK);
    cr_expect_eq(b, 1);
    cr_assert_eq(place_param_str(&env, sec, "policy", "auto", &s), MS_OK);
    cr_expect_str_eq(s, "auto");

    cfg_t *c = NULL;
    cr_assert_eq(cfg_parse_text("[strategy.eplb]\nwindow_steps = 48\npolicy = global\n"
                                "[strategy.bias]\nu = 2\n",
                                "t.ini", &c), MS_OK);
    env.cfg = c;
    env.cfg_section = "strategy.eplb";
    cr_expect_str_eq(place_param_section(&env, "strategy.other"), "strategy.eplb");
    cr_assert_eq(place_param_int(&env, sec, "window_steps", 1000, 1, 100000000, &v), MS_OK);
    cr_expect_eq(v, 48, "the config's value");
    cr_assert_eq(place_param_str(&env, sec, "policy", "auto", &s), MS_OK);
    cr_expect_str_eq(s, "global");
    ms_err_quiet(1);
    cr_expect_eq(place_param_double(&env, "strategy.bias", "u", 0.001, 0, 1, &x), MS_ERR,
                 "u = 2 is out of its range [0, 1]");
    cr_expect(strstr(ms_err_last(), "t.ini:5") != NULL, "names file and line: %s",
              ms_err_last());
    ms_err_quiet(0);
    cfg_free(c);
}

Test(place_helpers, slot_check) {
    place_env_t ok = env_of(1, 8, 4, 4), bad = env_of(1, 8, 4, 3);
    cr_expect_eq(place_check_slots(&ok, ""), MS_OK, "12 slots over 4 devices");
    ms_err_quiet(1);
    cr_expect_eq(place_check_slots(&bad, "eplb: "), MS_ERR);
    cr_expect_str_eq(ms_err_last(), "eplb: 8 experts + 3 redundant = 11 slots do not divide over "
                                    "4 devices (make experts + redundant a multiple of the "
                                    "device count)");
    ms_err_quiet(0);
}

Test(place_helpers, prior_or_zero) {
    place_env_t env = env_of(2, 3, 1, 0);
    double prior[6] = {1, 2, 3, 4, 5, 6}, *zeros = (double *)1;
    cr_expect_eq(place_prior_or_zero(&env, prior, &zeros), prior, "the prior itself");
    cr_expect_null(zeros);
    const double *z = place_prior_or_zero(&env, NULL, &zeros);
    cr_assert_not_null(z);
    cr_expect_eq(z, zeros);
    for (int i = 0; i < 6; i++) cr_expect_float_eq(z[i], 0, 0);
    free(zeros);
}

/* window 4, interval 2: buckets of gcd = 2 steps, 2 of them. Step t adds
 * t to value 0 and 10 t to value 1; re-plans after steps 2, 4, 6 see
 * 1+2 = 3, 1+2+3+4 = 10, then the last four only: 3+4+5+6 = 18. */
Test(place_helpers, window_sums_the_last_window_steps) {
    place_window_t w;
    place_window_init(&w, 4, 2, 2);
    cr_expect_eq(w.bucket_steps, 2);
    cr_expect_eq(w.n_buckets, 2);
    const double want[] = {3, 10, 18};
    for (int t = 1; t <= 6; t++) {
        double load[2] = {t, 10.0 * t};
        place_window_add(&w, load);
        int due = place_window_due(&w);
        cr_expect_eq(due, t % 2 == 0, "step %d", t);
        if (!due) continue;
        cr_expect_float_eq(w.sum[0], want[t / 2 - 1], 1e-12, "step %d", t);
        cr_expect_float_eq(w.sum[1], 10 * want[t / 2 - 1], 1e-12, "step %d", t);
    }
    place_window_free(&w);

    /* window 6, interval 4: buckets of 2 steps, 3 of them; the re-plan after
     * step 8 sees steps 3..8 = 33 */
    place_window_init(&w, 6, 4, 1);
    int n_due = 0;
    for (int t = 1; t <= 8; t++) {
        double load = t;
        place_window_add(&w, &load);
        if (place_window_due(&w)) {
            n_due++;
            cr_expect_float_eq(w.sum[0], t == 4 ? 10 : 33, 1e-12, "step %d", t);
        }
    }
    cr_expect_eq(n_due, 2);
    place_window_free(&w);
}

Test(place_helpers, window_without_load_or_interval_never_replans) {
    place_window_t w;
    place_window_init(&w, 4, 2, 3);
    double zero[3] = {0};
    for (int t = 0; t < 6; t++) {
        place_window_add(&w, zero);
        cr_expect_eq(place_window_due(&w), 0, "nothing seen: keep the layout");
    }
    place_window_free(&w);
    place_window_init(&w, 4, 0, 3);
    double one[3] = {1, 1, 1};
    for (int t = 0; t < 6; t++) {
        place_window_add(&w, one);
        cr_expect_eq(place_window_due(&w), 0, "interval 0: never");
    }
    place_window_free(&w);
}

Test(place_helpers, layout_same) {
    place_layout_t *a = place_layout_new(2, 4, 2, 2), *b = place_layout_copy(a);
    cr_expect(place_layout_same(a, b));
    int se[4] = {1, 0, 2, 3};
    cr_assert_eq(place_layer_set(b, 1, 2, se), MS_OK);
    cr_expect_not(place_layout_same(a, b), "layer 1 swapped two experts");
    place_layout_free(a);
    place_layout_free(b);
}
