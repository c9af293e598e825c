/* The decode-step pipeline on a case small enough to compute by hand:
 * 2 devices on one node, 1 MoE layer, 2 experts (one per device), top-1. */
#include <criterion/criterion.h>
#include <string.h>

#include "cfg.h"
#include "place.h"
#include "step.h"
#include "util.h"

/* hidden 1000, inter 500, FP8 weights (1 B), FP8 dispatch, BF16 combine */
static const moe_model_t M = {.name = "tiny", .n_layers = 1, .n_dense = 0, .hidden = 1000,
                              .moe_inter = 500, .n_experts = 2, .top_k = 1, .n_groups = 1,
                              .topk_groups = 1, .weight_bytes = 1, .dispatch_bytes = 1,
                              .combine_bytes = 2};

static cluster_t two_devices(void) {
    cluster_t c = {.n_nodes = 1, .devices_per_node = 2, .n_devices = 2};
    c.hw = (hw_t){.name = "unit", .flops_fp8 = 1e12, .flops_bf16 = 1e12, .hbm_bw = 1e11,
                  .scaleup_bw = 1e9, .nic_bw = 1e9, .eff_flops = 1, .eff_hbm = 1,
                  .eff_scaleup = 1, .eff_nic = 1, .scaleup_lat_ns = 1000, .nic_lat_ns = 1000};
    return c;
}

Test(step, hand_computed_two_device_layer) {
    cluster_t c = two_devices();
    place_layout_t *lo = place_layout_new(1, 2, 2, 2);
    int se[2] = {0, 1};
    cr_assert_eq(place_layer_set(lo, 0, 1, se), MS_OK);
    /* device 0: three tokens choosing experts 0, 1, 1; device 1: one token, expert 0 */
    int src[4] = {0, 0, 0, 1};
    int16_t ex[4] = {0, 1, 1, 0};
    route_step_t rt = {.n_layers = 1, .n_tokens = 4, .top_k = 1, .n_devices = 2, .src = src,
                       .expert = ex};
    step_sim_t *s = step_new(&c, &M);
    step_result_t r;
    step_in_t in = {.start_ns = 0, .layout = lo, .route = &rt};
    cr_assert_eq(step_run(s, &in, &r), MS_OK);
    /* Attention (no weights in this model, but each token's hidden state is
     * read and written, 4 x 1000 B at 1e11 B/s): device 0, 3 tokens: 120 ns;
     * device 1, 1 token: 40 ns. Then each device's dispatch leaves.
     * Dispatch (1 B x 1000 per token over NVLink, 1 GB/s, 1 us latency):
     *   0->1: 2 tokens, 2000 B: 120 + 1000 + 2000 = 3120
     *   1->0: 1 token, 1000 B:   40 + 1000 + 1000 = 2040
     * Routed experts, each device: 2 pairs, 1 active expert, kernel cost 0:
     *   FLOPs 6*1000*500*2 = 6e6 -> 6e6 / 1e12 = 6 us
     *   bytes 3*1000*500 (weights) + 2 tokens x (1000*(1+2) hidden in and
     *   out + 8*500 gate/up written and read) = 1,514,000 -> / 1e11 = 15.14 us
     *   => 15,140 ns (memory-bound): device 0 computes 2040..17180, device 1
     *   3120..18260.
     * Combine (2 B x 1000 per token):
     *   0->1: 1 token, 2000 B:  17180 + 1000 + 2000 = 20180
     *   1->0: 2 tokens, 4000 B: 18260 + 1000 + 4000 = 23260
     * Device 0 has all its tokens back at 23260, device 1 at 20180: the
     * slowest device sets the layer time, 23,260 ns. */
    cr_assert_eq(step_compute_ns(&c, &M, 2, 1), 15140.0);
    cr_assert_eq(r.layer_ns[0], 23260);
    cr_assert_eq(r.end_ns, 23260);
    cr_assert_eq(r.dev_load[0], 2);
    cr_assert_eq(r.dev_load[1], 2);
    cr_assert_eq(r.expert_load[0], 2);
    cr_assert_eq(r.expert_load[1], 2);
    cr_assert_float_eq(r.dispatch_bytes, 3000, 1e-9);
    cr_assert_float_eq(r.combine_bytes, 6000, 1e-9);

    /* The same step from a later start is shifted, not changed. */
    in.start_ns = 1000000;
    cr_assert_eq(step_run(s, &in, &r), MS_OK);
    cr_assert_eq(r.end_ns - r.start_ns, 23260);

    /* The analytic mode's closed form gives the same: slowest attention +
     * dispatch (latency + busiest port, 2000 B out of device 0) + slowest
     * experts + combine (4000 B out of device 1):
     * 120 + (1000 + 2000) + 15140 + (1000 + 4000) = 23260. */
    step_free(s);
    c.mode = STEP_ANALYTIC;
    s = step_new(&c, &M);
    in.start_ns = 0;
    cr_assert_eq(step_run(s, &in, &r), MS_OK);
    cr_assert_eq(r.end_ns, 23260);
    step_free(s);
    place_layout_free(lo);
}

Test(step, default_replica_choice_prefers_own_then_node) {
    /* 2 nodes x 2 devices, expert 0 on devices 1 and 2, expert 1 on 0 and 3 */
    place_layout_t *lo = place_layout_new(1, 2, 4, 2);
    int se[4] = {1, 0, 0, 1};
    cr_assert_eq(place_layer_set(lo, 0, 1, se), MS_OK);
    cr_assert_eq(lo->layer[0].replicas[0], 2);
    cr_assert_eq(place_pick_default(lo, 0, 0, 1), 1, "own device");
    cr_assert_eq(place_pick_default(lo, 0, 0, 0), 1, "same node");
    cr_assert_eq(place_pick_default(lo, 0, 0, 3), 2, "same node (node 1)");
    cr_assert_eq(place_pick_default(lo, 0, 1, 1), 0, "same node for expert 1");
    place_layout_free(lo);
}

Test(step, layout_rejects_bad_slots) {
    ms_err_quiet(1);
    place_layout_t *lo = place_layout_new(1, 3, 2, 2);
    int missing[2] = {0, 1};
    cr_assert_eq(place_layer_set(lo, 0, 1, missing), MS_ERR, "2 slots cannot hold 3 experts");
    int bad[4] = {0, 1, 2, 7};
    cr_assert_eq(place_layer_set(lo, 0, 2, bad), MS_ERR);
    cr_assert(strstr(ms_err_last(), "expert 7"));
    int nocopy[4] = {0, 1, 1, 0};
    cr_assert_eq(place_layer_set(lo, 0, 2, nocopy), MS_ERR);
    cr_assert(strstr(ms_err_last(), "expert 2 has no replica"));
    place_layout_free(lo);
}

Test(step, static_layouts_never_double_an_expert_on_a_device) {
    cfg_t *c = cfg_new();
    const char *orders[] = {"contiguous", "round-robin"};
    for (int o = 0; o < 2; o++) {
        cfg_set(c, "strategy.static", "order", orders[o], "t", 1);
        place_env_t env = {.n_layers = 2, .n_experts = 256, .n_devices = 32,
                           .devices_per_node = 8, .n_nodes = 4, .redundant = 32, .cfg = c,
                           .cfg_section = "strategy.static"};
        place_state_t *st;
        place_layout_t *lo;
        cr_assert_eq(place_find("static")->init(&env, NULL, &st, &lo), MS_OK);
        const place_layer_t *ly = &lo->layer[0];
        cr_assert_eq(ly->slots_per_device, 9);
        for (int d = 0; d < 32; d++)
            for (int i = 0; i < 9; i++)
                for (int j = i + 1; j < 9; j++)
                    cr_assert_neq(ly->slot_expert[d * 9 + i], ly->slot_expert[d * 9 + j]);
        if (o == 0) /* contiguous: slot p holds expert p mod E (SGLang's trivial layout) */
            for (int p = 0; p < 288; p++) cr_assert_eq(ly->slot_expert[p], p % 256);
        place_layout_free(lo);
    }
    cfg_free(c);
}
