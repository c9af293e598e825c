/* `trace info` drift: a time-axis trace whose hot experts move is told
 * apart from one that only carries sampling noise, against the same figure
 * with the time axis shuffled. */
#include <criterion/criterion.h>
#include <math.h>

#include "trace.h"
#include "trace_gen.h"
#include "util.h"

static trace_t *gen(double drift, int steps) {
    trace_gen_params_t p;
    trace_gen_defaults(&p);
    p.n_layers = 4;
    p.n_experts = 64;
    p.top_k = 4;
    p.n_steps = steps;
    p.tokens = 256;
    p.skew = 0.8;
    p.drift = drift;
    p.seed = 9;
    trace_t *t = NULL;
    cr_assert_eq(trace_gen(&p, "drift", &t), MS_OK, "%s", ms_err_last());
    return t;
}

Test(drift, moving_hot_set_stands_above_the_noise) {
    trace_t *t = gen(0.05, 100);
    trace_stats_t st;
    cr_assert_eq(trace_stats(t, 8, &st), MS_OK);
    cr_expect_gt(st.drift, 3 * st.drift_noise, "drift %g noise %g", st.drift, st.drift_noise);
    cr_expect_gt(st.drift_noise, 0);
    trace_stats_free(&st);
    trace_free(t);
}

Test(drift, a_stationary_trace_drifts_as_much_as_its_noise) {
    trace_t *t = gen(0, 100);
    trace_stats_t st;
    cr_assert_eq(trace_stats(t, 8, &st), MS_OK);
    cr_expect_gt(st.drift_noise, 0);
    cr_expect_lt(st.drift, 2 * st.drift_noise, "drift %g noise %g", st.drift, st.drift_noise);
    cr_expect_gt(st.drift, 0.25 * st.drift_noise, "drift %g noise %g", st.drift, st.drift_noise);
    trace_stats_free(&st);
    trace_free(t);
}

Test(drift, none_without_a_time_axis) {
    trace_t *t = NULL;
    cr_assert_eq(trace_read("traces/data/deepseek-v3-sglang/prefill_in512.json", &t), MS_OK);
    trace_stats_t st;
    cr_assert_eq(trace_stats(t, 32, &st), MS_OK);
    cr_expect(isnan(st.drift) && isnan(st.drift_noise));
    trace_stats_free(&st);
    trace_free(t);
}
