/* SGLang logical_count reader and replay sampling. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "replay.h"
#include "trace.h"
#include "util.h"

#define DSV3 "traces/data/deepseek-v3-sglang/decode_in1000out1000.json"

static char tmp[64];

static const char *write_tmp(const char *text) {
    snprintf(tmp, sizeof tmp, "/tmp/moesim-sglang-XXXXXX");
    int fd = mkstemp(tmp);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return tmp;
}

Test(sglang, reads_the_deepseek_trace) {
    trace_t *t;
    cr_assert_eq(trace_read_sglang(DSV3, &t), MS_OK);
    cr_assert_eq(t->n_layers, 58, "61 layers less 3 dense");
    cr_assert_eq(t->first_layer, 3);
    cr_assert_eq(t->n_experts, 256);
    cr_assert_eq(t->n_steps, 1);
    double tot[256], sum0 = 0;
    for (int l = 0; l < t->n_layers; l++) {
        trace_layer_total(t, l, tot);
        double s = 0;
        for (int e = 0; e < 256; e++) s += tot[e];
        if (!l) sum0 = s;
        cr_assert_float_eq(s, sum0, 1e-6, "every MoE layer sums to tokens x 8");
    }
    cr_assert_float_eq(fmod(sum0, 8.0), 0.0, 1e-9);
    trace_free(t);
}

static void expect_error(const char *text, const char *needle) {
    ms_err_quiet(1);
    trace_t *t = NULL;
    const char *p = write_tmp(text);
    cr_assert_eq(trace_read_sglang(p, &t), MS_ERR, "accepted: %s", text);
    cr_assert(strstr(ms_err_last(), p), "message names the file: %s", ms_err_last());
    cr_assert(strstr(ms_err_last(), needle), "'%s' not in: %s", needle, ms_err_last());
    unlink(p);
}

Test(sglang, bad_inputs_are_clear_errors) {
    expect_error("{\"logical_count\": [[1, 2], [3", "invalid JSON");
    expect_error("{\"logical_count\": [[1, 2], [3]]}", "ragged");
    expect_error("{\"logical_count\": [[1, -2], [3, 4]]}", ">= 0");
    expect_error("{\"logical_count\": [[1, \"x\"], [3, 4]]}", "not a number");
    expect_error("{\"other\": 1}", "logical_count");
    expect_error("", "empty file");
    expect_error("{\"logical_count\": [[0, 0], [0, 0]]}", "zero");
    ms_err_quiet(1);
    trace_t *t;
    cr_assert_eq(trace_read_sglang("no/such.json", &t), MS_ERR);
    cr_assert(strstr(ms_err_last(), "no/such.json"));
}

Test(sglang, truncated_json_reports_line) {
    expect_error("{\"logical_count\": [\n[1, 2],\n[3, 4],\n", ":4:");
}

Test(sglang, step_axis_is_recognised) {
    trace_t *t;
    const char *p = write_tmp("{\"logical_count\": [[[0,0],[1,2]], [[0,0],[3,4]]]}");
    cr_assert_eq(trace_read_sglang(p, &t), MS_OK);
    cr_assert_eq(t->n_steps, 2);
    cr_assert(t->has_steps);
    cr_assert_eq(t->n_layers, 1);
    cr_assert_float_eq(trace_counts(t, 1, 0)[1], 4.0, 0);
    trace_free(t);
    unlink(p);
}

Test(replay, samples_distinct_experts_in_proportion) {
    trace_t *t;
    /* expert 0 ten times as hot as each of experts 1..9, top-2 */
    const char *p = write_tmp("{\"logical_count\": [[10,1,1,1,1,1,1,1,1,1]]}");
    cr_assert_eq(trace_read_sglang(p, &t), MS_OK);
    replay_t *r;
    cr_assert_eq(replay_new(t, 2, 4, 5000, 42, &r), MS_OK);
    const route_step_t *rt = replay_step(r, 0);
    cr_assert_eq(rt->n_tokens, 20000);
    int hot = 0;
    for (int i = 0; i < rt->n_tokens; i++) {
        cr_assert_neq(rt->expert[2 * i], rt->expert[2 * i + 1], "top-k experts are distinct");
        hot += rt->expert[2 * i] == 0 || rt->expert[2 * i + 1] == 0;
        cr_assert_eq(rt->src[i], i / 5000);
    }
    /* Expert 0 holds 10/19 of the pairs, more than one per token (2 x 10/19
     * > 1): replay gives it to (nearly) every token, the most a token can
     * hold, and the rest spread evenly over the other nine. Drawing without
     * replacement in proportion to counts would give it only 10/19 + 9/19 x
     * 10/18 = 0.80 of the tokens. */
    cr_assert((double)hot / rt->n_tokens > 0.98, "expert 0 in %g of the tokens",
              (double)hot / rt->n_tokens);
    replay_free(r);
    trace_free(t);
    unlink(p);
}

Test(replay, same_seed_same_routing) {
    trace_t *t;
    cr_assert_eq(trace_read_sglang(DSV3, &t), MS_OK);
    replay_t *a, *b;
    replay_new(t, 8, 8, 16, 9, &a);
    replay_new(t, 8, 8, 16, 9, &b);
    for (int s = 0; s < 3; s++) {
        const route_step_t *x = replay_step(a, s), *y = replay_step(b, s);
        cr_assert_eq(memcmp(x->expert, y->expert, (size_t)58 * 128 * 8 * sizeof *x->expert), 0);
    }
    double c[58 * 256];
    replay_counts(a, 0, 1000, c);
    double s = 0;
    for (int e = 0; e < 256; e++) s += c[e];
    cr_assert_float_eq(s, 8000, 1e-9, "count mode keeps tokens x top-k");
    replay_free(a);
    replay_free(b);
    trace_free(t);
}
