/* Tests of replay: per-token traces replay as recorded (with the batch
 * window cycling or trimming), count traces are sampled per trace step and
 * per source device, count mode sums right, and all of it is seeded. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "place.h"
#include "gate.h"
#include "replay.h"
#include "route.h"
#include "trace.h"
#include "trace_gen.h"
#include "util.h"

#define MX_CLEAN "traces/data/mixtral-8x7b-vllm/humaneval_2_routing.jsonl"
#define DS_DECODE "traces/data/deepseek-v3-sglang/decode_in1000out1000.json"

static void setup(void) { ms_err_quiet(1); }
TestSuite(trace_replay, .init = setup);

static trace_t *read_mem_csv(const char *text) {
    trace_t *t;
    cr_assert_eq(trace_read_csv_mem("mem.csv", text, strlen(text), &t), MS_OK, "%s",
                 ms_err_last());
    return t;
}

static const int16_t *tok_of(const trace_t *t, int tok, int l) {
    return t->tok_experts + ((size_t)tok * t->n_layers + l) * t->top_k;
}

static const int16_t *route_of(const route_step_t *rt, int l, int i) {
    return rt->expert + ((size_t)l * rt->n_tokens + i) * rt->top_k;
}

static int complete(const trace_t *t, int tok) {
    for (int l = 0; l < t->n_layers; l++)
        if (tok_of(t, tok, l)[0] < 0) return 0;
    return 1;
}

Test(trace_replay, per_token_replays_as_recorded) {
    trace_t *t;
    cr_assert_eq(trace_read(MX_CLEAN, &t), MS_OK);
    replay_t *r;
    cr_assert_eq(replay_new(t, 2, 1, 1, 1, &r), MS_OK, "%s", ms_err_last());
    int checked = 0;
    for (int s = 0; s < t->n_steps + 5; s++) {
        const route_step_t *rt = replay_step(r, s);
        int tok = s % t->n_steps;
        cr_assert_eq(rt->n_tokens, 1);
        for (int l = 0; l < t->n_layers; l++) {
            const int16_t *want = tok_of(t, tok, l), *got = route_of(rt, l, 0);
            if (want[0] < 0) { /* missing layer: filled with two distinct valid experts */
                cr_assert(got[0] >= 0 && got[0] < 8 && got[1] >= 0 && got[1] < 8);
                cr_assert_neq(got[0], got[1]);
                continue;
            }
            cr_assert_eq(got[0], want[0], "step %d layer %d", s, l);
            cr_assert_eq(got[1], want[1]);
            checked++;
        }
    }
    cr_assert(checked > 10000);
    replay_free(r);
    trace_free(t);
}

Test(trace_replay, batch_window_cycles_into_later_steps_and_wraps) {
    trace_t *t;
    cr_assert_eq(trace_read(MX_CLEAN, &t), MS_OK);
    replay_t *r;
    cr_assert_eq(replay_new(t, 2, 2, 2, 1, &r), MS_OK);
    /* 4 tokens from trace step T-2 on: tokens T-2, T-1, 0, 1, devices 0,0,1,1 */
    int T = t->n_steps, s = 3 * T - 2;
    const route_step_t *rt = replay_step(r, s);
    cr_assert_eq(rt->n_tokens, 4);
    int want_tok[4] = {T - 2, T - 1, 0, 1};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(rt->src[i], i / 2);
        if (!complete(t, want_tok[i])) continue;
        for (int l = 0; l < t->n_layers; l++)
            cr_assert_eq(route_of(rt, l, i)[0], tok_of(t, want_tok[i], l)[0]);
    }
    replay_free(r);
    trace_free(t);
}

Test(trace_replay, batch_smaller_than_step_takes_its_first_tokens) {
    trace_gen_params_t p;
    trace_gen_defaults(&p);
    p.n_layers = 3;
    p.n_experts = 16;
    p.top_k = 2;
    p.n_steps = 4;
    p.tokens = 10;
    p.per_token = 1;
    trace_t *t;
    cr_assert_eq(trace_gen(&p, "gen", &t), MS_OK);
    replay_t *r;
    cr_assert_eq(replay_new(t, 2, 1, 4, 1, &r), MS_OK);
    for (int s = 0; s < 6; s++) {
        const route_step_t *rt = replay_step(r, s);
        for (int i = 0; i < 4; i++)
            for (int l = 0; l < 3; l++)
                cr_assert_eq(memcmp(route_of(rt, l, i), tok_of(t, (s % 4) * 10 + i, l), 4), 0);
    }
    /* count mode counts the same tokens */
    double out[3 * 16], want[3 * 16] = {0};
    replay_counts(r, 5, 4, out);
    for (int i = 0; i < 4; i++)
        for (int l = 0; l < 3; l++)
            for (int j = 0; j < 2; j++) want[l * 16 + tok_of(t, 10 + i, l)[j]] += 1;
    cr_assert_eq(memcmp(out, want, sizeof out), 0);
    replay_free(r);
    trace_free(t);
}

Test(trace_replay, per_token_needs_the_recorded_top_k) {
    trace_t *t;
    cr_assert_eq(trace_read(MX_CLEAN, &t), MS_OK);
    replay_t *r = NULL;
    cr_assert_eq(replay_new(t, 8, 1, 1, 1, &r), MS_ERR);
    cr_assert(strstr(ms_err_last(), "top-8"), "%s", ms_err_last());
    cr_assert_null(r);
    trace_free(t);
}

Test(trace_replay, counts_follow_the_trace_step) {
    /* step 0 uses experts 0,1 only; step 1 experts 2,3 only */
    trace_t *t = read_mem_csv("step,layer,expert,count\n0,0,0,5\n0,0,1,5\n1,0,2,5\n1,0,3,5\n");
    cr_assert_eq(t->n_steps, 2);
    replay_t *r;
    cr_assert_eq(replay_new(t, 2, 2, 3, 9, &r), MS_OK);
    for (int s = 0; s < 6; s++) {
        const route_step_t *rt = replay_step(r, s);
        for (int i = 0; i < rt->n_tokens; i++) {
            const int16_t *v = route_of(rt, 0, i);
            int lo = s % 2 ? 2 : 0;
            cr_assert(v[0] >= lo && v[0] <= lo + 1 && v[1] >= lo && v[1] <= lo + 1);
            cr_assert_neq(v[0], v[1]);
        }
    }
    double out[4];
    replay_counts(r, 1, 10, out);
    cr_assert_float_eq(out[0] + out[1], 0, 0);
    cr_assert_float_eq(out[2] + out[3], 20, 0);
    replay_free(r);
    trace_free(t);
}

Test(trace_replay, counts_by_source_device) {
    /* source 0 uses experts 0,1; source 1 experts 2,3 */
    trace_t *t = read_mem_csv("step,layer,src,expert,count\n0,0,0,0,4\n0,0,0,1,4\n"
                              "0,0,1,2,4\n0,0,1,3,4\n");
    cr_assert_eq(t->n_src, 2);
    replay_t *r;
    cr_assert_eq(replay_new(t, 2, 4, 5, 3, &r), MS_OK);
    const route_step_t *rt = replay_step(r, 0);
    for (int i = 0; i < rt->n_tokens; i++) {
        int lo = rt->src[i] % 2 ? 2 : 0;
        const int16_t *v = route_of(rt, 0, i);
        cr_assert(v[0] >= lo && v[0] <= lo + 1 && v[1] >= lo && v[1] <= lo + 1, "device %d",
                  rt->src[i]);
    }
    replay_free(r);
    trace_free(t);
}

Test(trace_replay, count_mode_sums_and_is_seeded) {
    trace_t *t;
    cr_assert_eq(trace_read(DS_DECODE, &t), MS_OK);
    replay_t *a, *b;
    cr_assert_eq(replay_new(t, 8, 4, 16, 5, &a), MS_OK);
    cr_assert_eq(replay_new(t, 8, 4, 16, 5, &b), MS_OK);
    size_t n = (size_t)t->n_layers * t->n_experts;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    replay_counts(a, 0, 100, x);
    replay_counts(b, 0, 100, y);
    cr_assert_eq(memcmp(x, y, n * sizeof *x), 0);
    for (int l = 0; l < t->n_layers; l++) {
        double s = 0;
        for (int e = 0; e < t->n_experts; e++) s += x[(size_t)l * t->n_experts + e];
        cr_assert_float_eq(s, 800, 0);
    }
    const route_step_t *ra = replay_step(a, 1), *rb = replay_step(b, 1);
    cr_assert_eq(memcmp(ra->expert, rb->expert, (size_t)t->n_layers * 64 * 8 * 2), 0);
    free(x);
    free(y);
    replay_free(a);
    replay_free(b);
    trace_free(t);
}

Test(trace_replay, per_token_count_mode_fills_missing_layers_by_share) {
    trace_t *t;
    cr_assert_eq(trace_read(MX_CLEAN, &t), MS_OK);
    replay_t *r;
    cr_assert_eq(replay_new(t, 2, 1, 1, 1, &r), MS_OK);
    double out[32 * 8];
    for (int s = 0; s < t->n_steps; s += 17) {
        replay_counts(r, s, 3, out);
        for (int l = 0; l < 32; l++) {
            double sum = 0;
            for (int e = 0; e < 8; e++) sum += out[l * 8 + e];
            cr_assert_float_eq(sum, 6, 1e-9);
        }
    }
    replay_free(r);
    trace_free(t);
}

/* A routing strategy that sends every token to experts 0 and 1. */
static void route_low(place_state_t *st, int layer, const float *scores, int *out) {
    (void)st, (void)layer, (void)scores;
    out[0] = 0;
    out[1] = 1;
}

/* A routing strategy chooses inside replay, on each token's scores (no
 * buffer is rewritten afterwards): its step is its choice, while a replay
 * without it keeps the trace's choices. */
Test(trace_replay, a_routing_strategy_chooses_every_token_inside_replay) {
    trace_t *t;
    cr_assert_eq(trace_read(MX_CLEAN, &t), MS_OK);
    replay_t *r, *plain;
    cr_assert_eq(replay_new(t, 2, 2, 4, 1, &r), MS_OK);
    cr_assert_eq(replay_new(t, 2, 2, 4, 1, &plain), MS_OK);
    static const place_ops_t LOW = {.version = PLACE_OPS_VERSION, .name = "low",
                                    .route = route_low};
    gate_spec_t spec;
    cr_assert_eq(gate_spec_make(8, 2, 1, 1, 1, 0, "t", &spec), MS_OK);
    route_t *ro;
    cr_assert_eq(route_new(r, &spec, &LOW, NULL, 1, 0, 1, &ro), MS_OK, "%s", ms_err_last());
    const route_step_t *mine = replay_step(r, 3), *rt = replay_step(plain, 3);
    cr_assert_not_null(mine);
    cr_assert_not_null(rt);
    size_t n = (size_t)rt->n_layers * rt->n_tokens * rt->top_k;
    cr_assert_eq(mine->n_tokens, rt->n_tokens);
    int differs = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(mine->expert[i], (int16_t)(i % 2));
        differs |= rt->expert[i] != mine->expert[i];
    }
    cr_assert(differs, "the trace already routed every token to 0 and 1");
    route_free(ro);
    replay_free(r);
    replay_free(plain);
    trace_free(t);
}
