/* Tests of attention parallelism and scale-up domains in the step
 * (docs/cost-model.md sections 13 and 14): tensor-parallel attention
 * charged as the cost model's formulas, pipeline stages composed by the
 * pipeline recurrence, and the EP384 decode step on CloudMatrix384's
 * unified bus derived by hand, run on configs/ep384_cm384.ini. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "cost.h"
#include "place.h"
#include "run_spec.h"
#include "step.h"
#include "util.h"
#include "fixture.h"


static step_result_t run_once(const cluster_t *c, const moe_model_t *m, const step_in_t *in,
                              int64_t *layer0) {
    step_sim_t *s = step_new(c, m);
    step_result_t r;
    cr_assert_eq(step_run(s, in, &r), MS_OK, "%s", ms_err_last());
    if (layer0) *layer0 = r.layer_ns[0];
    r.layer_ns = NULL;
    r.dev_load = r.expert_load = NULL;
    r.expert_ns = NULL;
    step_free(s);
    return r;
}

/* One node of 8 H800, DeepSeek-V3, 16 tokens a device, every expert slot
 * loaded alike. With attn_tp = 8 the 8 devices run attention together over
 * their 128 tokens, then all-reduce them; a device still dispatches its own
 * 16. So each MoE layer differs from data-parallel attention by exactly
 * cost_attn_tp_ns(128, tp 8) + the all-reduce of 128 x 7168 x 2 B -
 * cost_attn_ns(16); the dense layers and head follow cost_pre_tp_ns and
 * cost_head_tp_ns. Analytic and flow agree (no contention). */
Test(parallel, tensor_parallel_attention_in_the_step) {
    const moe_model_t *m = moe_find("deepseek-v3");
    int L = moe_n_moe_layers(m), E = m->n_experts, D = 8;
    place_layout_t *lo = fx_layout(L, E, D, 8, 32);
    double *load = ms_malloc((size_t)L * E * sizeof *load);
    int tok[8];
    for (int d = 0; d < D; d++) tok[d] = 16;
    for (int i = 0; i < L * E; i++) load[i] = 16.0 * 8 * 8 / E;
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 4989};
    cluster_t dp = {.n_nodes = 1, .devices_per_node = 8, .n_devices = 8,
                    .hw = *hw_find("H800"), .mode = STEP_ANALYTIC};
    cluster_t tp = dp;
    tp.attn_tp = 8;
    int64_t l_dp, l_tp;
    step_result_t a = run_once(&dp, m, &in, &l_dp), b = run_once(&tp, m, &in, &l_tp);
    const hw_t *hw = &dp.hw;
    hw_link_t nv = cost_scaleup_link(hw);
    double ar = cost_allreduce_ns(&nv, 128 * 7168 * 2.0, 8);
    double d_attn = cost_attn_tp_ns(hw, m, 128, 4989, 0, 1, 8) + ar - cost_attn_ns(hw, m, 16, 4989, 0);
    cr_assert(ar > 0 && d_attn > 0);
    cr_assert(llabs(l_tp - l_dp - llround(d_attn)) <= 1, "%lld - %lld vs %.1f", (long long)l_tp,
              (long long)l_dp, d_attn);
    cr_assert_eq(b.pre_ns, llround(cost_pre_tp_ns(hw, m, 128, 4989, 0, 1, 8, &nv)));
    cr_assert_eq(b.post_ns, llround(cost_head_tp_ns(hw, m, 128, 8)));
    cr_assert_eq(a.pre_ns, llround(cost_pre_ns(hw, m, 16, 4989, 0)));
    /* the same in flow mode, to the nanosecond rounding of its events */
    tp.mode = STEP_FLOW;
    step_result_t f = run_once(&tp, m, &in, NULL);
    int64_t ta = b.end_ns - b.start_ns, tf = f.end_ns - f.start_ns;
    cr_assert(llabs(tf - ta) < 1000, "flow %lld, analytic %lld", (long long)tf, (long long)ta);
    /* attn_tp = 1 is the data-parallel step itself */
    tp.mode = STEP_ANALYTIC;
    tp.attn_tp = 1;
    step_result_t c = run_once(&tp, m, &in, NULL);
    cr_assert_eq(c.end_ns, a.end_ns);
    free(load);
    place_layout_free(lo);
}

/* Two stages of one node of 8 H800 each (PP2), 32 tokens a device in 2
 * micro-batches of 16. Each stage is its own step over its layers (the
 * first: the 3 dense layers and MoE layers 0-28; the second: 29-57 and the
 * head), run here separately on the stage models with 16 tokens; the
 * hand-over is 16 x 7168 x 2 B over a NIC: 4,000 + 229,376 / 40e9 s =
 * 9,734.4 ns. Decode keeps the pipeline full: the step is max(2 x the
 * slower stage, both stages + 2 hand-overs). Prefill runs it from empty:
 * the recurrence's t0 + max(t0, t1) + ... (cost_pipeline_ns). Loads sum
 * over the micro-batches to the whole batch's. */
Test(parallel, pipeline_stages_in_the_step) {
    const moe_model_t *m = moe_find("deepseek-v3");
    int L = moe_n_moe_layers(m), E = m->n_experts, D = 8;
    place_layout_t *lo = fx_layout(L, E, D, 8, 32);
    double *load = ms_malloc((size_t)L * E * sizeof *load);
    double *half = ms_malloc((size_t)L * E * sizeof *half);
    int tok[8], tok2[8];
    for (int d = 0; d < D; d++) tok[d] = 32, tok2[d] = 16;
    for (int i = 0; i < L * E; i++) load[i] = 32.0 * 8 * 8 / E, half[i] = load[i] / 2;
    cluster_t pp = {.n_nodes = 1, .devices_per_node = 8, .n_devices = 8,
                    .hw = *hw_find("H800"), .mode = STEP_ANALYTIC, .pp = 2, .micro_batches = 2};
    cluster_t one = pp;
    one.pp = 1;
    one.micro_batches = 1;
    double send = 4000 + 16 * 7168 * 2.0 / 40e9 * 1e9;
    for (int pf = 0; pf < 2; pf++) {
        double t[4];
        for (int s = 0; s < 2; s++) {
            moe_model_t sm = cost_stage_model(m, 2, s);
            place_layout_t view = *lo;
            view.layer += s * 29;
            view.n_layers = 29;
            step_in_t si = {.layout = &view, .expert_load = half + (size_t)s * 29 * E,
                            .tokens = tok2, .kv_len = 4989, .prefill = pf, .skip_head = s == 0};
            step_result_t r = run_once(&one, &sm, &si, NULL);
            t[2 * s] = t[2 * s + 1] = (double)(r.end_ns - r.start_ns);
        }
        cr_assert(t[0] > 0 && t[2] > 0 && t[0] != t[2]);
        double want;
        /* prefill by hand: stage 0 ends its micro-batches at t0 and 2 t0;
         * stage 1 ends the first at t0 + send + t1, the second at
         * max(that, 2 t0 + send) + t1 */
        if (pf) want = fmax(t[0] + send + t[2], 2 * t[0] + send) + t[2];
        else want = fmax(2 * fmax(t[0], t[2]), t[0] + t[2] + 2 * send);
        step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 4989,
                        .prefill = pf};
        step_result_t r = run_once(&pp, m, &in, NULL);
        cr_assert(llabs(r.end_ns - r.start_ns - llround(want)) <= 1, "prefill %d: %lld vs %.1f",
                  pf, (long long)(r.end_ns - r.start_ns), want);
        cr_assert_float_eq(want, pf ? cost_pipeline_ns(t, 2, 2, send)
                                    : cost_pipeline_steady_ns(t, 2, 2, send), 1e-3);
    }
    /* whole-batch loads: the micro-batches' pairs add up */
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 4989};
    step_sim_t *s = step_new(&pp, m);
    step_result_t w;
    cr_assert_eq(step_run(s, &in, &w), MS_OK);
    double pairs = 0;
    for (int i = 0; i < L * D; i++) pairs += w.dev_load[i];
    cr_assert_float_eq(pairs, 32.0 * 8 * 8 * L, 1e-6);
    cr_assert_eq(w.n_layers, L);
    int64_t two = w.end_ns - w.start_ns;
    step_free(s);
    /* one micro-batch waits out the other stage: a bubble */
    pp.micro_batches = 1;
    step_result_t q = run_once(&pp, m, &in, NULL);
    cr_assert(q.end_ns - q.start_ns > two, "%lld vs %lld", (long long)(q.end_ns - q.start_ns),
              (long long)two);
    free(load);
    free(half);
    place_layout_free(lo);
}

/* Token routing through a pipeline: each device's tokens are cut into
 * micro-batches, every stage sees its own layers, and the loads each layer
 * reports add up to what the same routing gives without a pipeline (the
 * replica a token uses depends only on its device). Odd token counts
 * leave the first micro-batch one token longer. */
Test(parallel, pipeline_token_routing) {
    const moe_model_t *m = moe_find("deepseek-v3");
    int L = moe_n_moe_layers(m), E = m->n_experts, D = 8, k = m->top_k, n = 8 * 13;
    place_layout_t *lo = fx_layout(L, E, D, 8, 32);
    route_step_t rt = {.n_layers = L, .n_tokens = n, .top_k = k, .n_devices = D};
    rt.src = ms_malloc((size_t)n * sizeof *rt.src);
    rt.expert = ms_malloc((size_t)L * n * k * sizeof *rt.expert);
    for (int t = 0; t < n; t++) {
        rt.src[t] = (t * 5) % D;
        for (int l = 0; l < L; l++)
            for (int j = 0; j < k; j++)
                rt.expert[((size_t)l * n + t) * k + j] = (int16_t)(j * 32 + (t * 7 + l) % 32);
    }
    cluster_t one = {.n_nodes = 1, .devices_per_node = 8, .n_devices = 8,
                     .hw = *hw_find("H800"), .mode = STEP_FLOW};
    cluster_t pp = one;
    pp.pp = 2;
    pp.micro_batches = 2;
    step_in_t in = {.layout = lo, .route = &rt, .kv_len = 1000};
    step_sim_t *a = step_new(&one, m), *b = step_new(&pp, m);
    step_result_t ra, rb;
    cr_assert_eq(step_run(a, &in, &ra), MS_OK, "%s", ms_err_last());
    cr_assert_eq(step_run(b, &in, &rb), MS_OK, "%s", ms_err_last());
    cr_assert_eq(rb.n_layers, L);
    for (int i = 0; i < L * D; i++)
        cr_assert_float_eq(rb.dev_load[i], ra.dev_load[i], 1e-9, "layer %d device %d", i / D,
                           i % D);
    for (int i = 0; i < L * E; i++) cr_assert_float_eq(rb.expert_load[i], ra.expert_load[i], 1e-9);
    cr_assert(rb.end_ns > rb.start_ns);
    /* the same step twice: the same answer */
    int64_t t1 = rb.end_ns;
    cr_assert_eq(step_run(b, &in, &rb), MS_OK);
    cr_assert_eq(rb.end_ns, t1);
    step_free(a);
    step_free(b);
    free(rt.src);
    free(rt.expert);
    place_layout_free(lo);
}

/* The EP384 decode step of docs/cost-model.md section 14, derived there by
 * hand: DeepSeek-V3 on 384 Ascend 910C dies in one UB domain
 * (configs/ep384_cm384.ini: 24 hosts of 16, scaleup_domain 384, 96
 * sequences a die, KV 4,096, 128 redundant experts), every one of the 384
 * slots serving 768 pairs (experts 0-127 twice, each replica half). By
 * hand: attention 559,717.07 ns, shared expert 39,562.92, routed experts
 * 132,506.34, dispatch 36,699.63 and combine 71,399.27 over UB only (no
 * NIC: one domain): a MoE layer 803,185.59 ns, 58 of them 46,584,764.18;
 * dense layers 2,602,776.25, head 1,403,265.88: 50,590,806.31 ns. */
#define DOC_EP384_NS 50590806.31
Test(parallel, documented_ep384_decode) {
    cfg_t *cfg = NULL;
    run_spec_t sp;
    cr_assert_eq(cfg_load("configs/ep384_cm384.ini", &cfg), MS_OK, "%s", ms_err_last());
    cr_assert_eq(run_spec_load(cfg, &sp), MS_OK, "%s", ms_err_last());
    const cluster_t *c = &sp.cluster;
    cr_assert_eq(c->n_devices, 384);
    cr_assert_eq(cluster_domain(c), 384);
    const moe_model_t *m = &sp.model;
    int L = moe_n_moe_layers(m), E = m->n_experts, D = c->n_devices;
    cr_assert_eq(E + sp.redundant, D, "one slot a die");
    place_layout_t *lo = fx_layout(L, E, D, c->devices_per_node, 1);
    double *load = ms_malloc((size_t)L * E * sizeof *load);
    int *tok = ms_malloc((size_t)D * sizeof *tok);
    for (int d = 0; d < D; d++) tok[d] = sp.tokens_per_device;
    double unit = (double)sp.tokens_per_device * D * m->top_k / D; /* 768 pairs a slot */
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) load[(size_t)l * E + e] = e < 128 ? 2 * unit : unit;
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = sp.kv_len};
    for (int mode = 0; mode < 2; mode++) {
        cluster_t cm = *c;
        cm.mode = mode ? STEP_ANALYTIC : STEP_FLOW;
        step_result_t r = run_once(&cm, m, &in, NULL);
        double got = (double)(r.end_ns - r.start_ns);
        cr_assert(fabs(got - DOC_EP384_NS) <= 1e-3 * DOC_EP384_NS, "%s: %.0f ns vs %.0f by hand",
                  mode ? "analytic" : "flow", got, DOC_EP384_NS);
        if (mode) cr_assert(fabs(got - DOC_EP384_NS) <= 1, "analytic %.0f", got);
    }
    /* it fits the die's 64 GB: 18.86 dense + 2.55 routed + 27.63 KV + 4 */
    cost_shard_t sh = {1, 1, 0};
    cr_assert_eq(cost_check_memory_sh(&c->hw, m, lo, sp.tokens_per_device, sp.kv_len, &sh, NULL),
                 MS_OK);
    free(tok);
    free(load);
    place_layout_free(lo);
    cfg_free(cfg);
}
