/* Tests of one simulated step: flow and analytic modes agree when flows do
 * not contend and the flow mode is slower when they do; count mode; the
 * two-micro-batch overlap; the documented EP144 decode step
 * (docs/cost-model.md); errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cost.h"
#include "place.h"
#include "replay.h"
#include "step.h"
#include "util.h"
#include "fixture.h"


/* The H800 preset without two-batch overlap's contention (hw_t.overlap_*):
 * the tests of the overlap's mechanics (what hides under what) run on it;
 * overlap_contention_by_hand checks the contention itself. */
static hw_t h800_plain(void) {
    hw_t h = *hw_find("H800");
    h.overlap_compute = h.overlap_comm = 1;
    return h;
}

static cluster_t cluster(int nodes, int dpn, enum step_mode mode, enum step_a2a a2a, int overlap) {
    return (cluster_t){.n_nodes = nodes, .devices_per_node = dpn, .n_devices = nodes * dpn,
                       .hw = h800_plain(), .mode = mode, .a2a = a2a, .overlap = overlap};
}

static int64_t run_once(const cluster_t *c, const moe_model_t *m, const step_in_t *in,
                        step_result_t *keep) {
    step_sim_t *s = step_new(c, m);
    step_result_t r;
    cr_assert_eq(step_run(s, in, &r), MS_OK, "%s", ms_err_last());
    if (keep) {
        *keep = r;
        keep->layer_ns = NULL;
        keep->dev_load = keep->expert_load = NULL;
    }
    step_free(s);
    return r.end_ns - r.start_ns;
}

/* Token-level routing on two devices: every token of device 0 picks 8
 * experts on device 1 and the reverse, so each port carries one flow a
 * phase: no contention. Flow and analytic agree up to the nanosecond
 * rounding of each event (a few ns a layer). */
Test(step, analytic_equals_flow_without_contention) {
    const moe_model_t *m = moe_find("deepseek-v3");
    int L = moe_n_moe_layers(m), E = m->n_experts, n = 64, k = m->top_k;
    route_step_t rt = {.n_layers = L, .n_tokens = 2 * n, .top_k = k, .n_devices = 2};
    rt.src = ms_malloc((size_t)2 * n * sizeof *rt.src);
    rt.expert = ms_malloc((size_t)L * 2 * n * k * sizeof *rt.expert);
    for (int t = 0; t < 2 * n; t++) {
        rt.src[t] = t < n ? 0 : 1;
        for (int l = 0; l < L; l++)
            for (int j = 0; j < k; j++)
                rt.expert[((size_t)l * 2 * n + t) * k + j] = (int16_t)((t < n ? 128 : 0) + j);
    }
    int64_t flow_ns[3] = {0};
    for (int nodes = 1; nodes <= 2; nodes++) { /* NVLink, then IB */
        int dpn = 2 / nodes;
        place_layout_t *lo = fx_layout(L, E, 2, dpn, E / 2);
        step_in_t in = {.layout = lo, .route = &rt, .kv_len = 1000};
        cluster_t cf = cluster(nodes, dpn, STEP_FLOW, STEP_A2A_AUTO, 0);
        cluster_t ca = cluster(nodes, dpn, STEP_ANALYTIC, STEP_A2A_AUTO, 0);
        int64_t f = run_once(&cf, m, &in, NULL), a = run_once(&ca, m, &in, NULL);
        cr_assert(llabs(f - a) <= 4 * L, "nodes %d: flow %lld ns, analytic %lld ns", nodes,
                  (long long)f, (long long)a);
        flow_ns[nodes] = f;
        place_layout_free(lo);
    }
    /* the transfers matter: the IB step is slower than the NVLink one */
    cr_assert_gt(flow_ns[2], flow_ns[1], "IB %lld ns, NVLink %lld ns", (long long)flow_ns[2],
                 (long long)flow_ns[1]);
    free(rt.src);
    free(rt.expert);
}

/* Count mode on 2 nodes x 4 devices, one expert a device (the model's
 * shape shrunk: 8 experts, top-2, 2 MoE layers). */
static moe_model_t small_model(void) {
    moe_model_t m = *moe_find("deepseek-v3");
    m.n_experts = 8;
    m.top_k = 2;
    m.n_dense = 1;
    m.n_layers = 3;
    return m;
}

static int64_t small_step(enum step_mode mode, enum step_a2a a2a, int overlap, const double *load8,
                          const int *tok) {
    moe_model_t m = small_model();
    cluster_t c = cluster(2, 4, mode, a2a, overlap);
    place_layout_t *lo = fx_layout(2, 8, 8, 4, 1);
    double load[16];
    for (int l = 0; l < 2; l++) memcpy(load + 8 * l, load8, 8 * sizeof *load);
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 1000};
    int64_t t = run_once(&c, &m, &in, NULL);
    place_layout_free(lo);
    return t;
}

/* Uniform loads: every stream runs at its port's full rate, no flow is
 * held up by another: both modes give the same step, in both DeepEP
 * modes. */
Test(step, analytic_equals_flow_uniform_all_to_all) {
    int tok[8];
    double load[8];
    for (int i = 0; i < 8; i++) tok[i] = 256, load[i] = 512;
    for (int a = 1; a <= 2; a++) {
        enum step_a2a mode = a == 1 ? STEP_A2A_NORMAL : STEP_A2A_LOW_LATENCY;
        int64_t f = small_step(STEP_FLOW, mode, 0, load, tok);
        int64_t an = small_step(STEP_ANALYTIC, mode, 0, load, tok);
        cr_assert(llabs(f - an) <= 10, "%s: flow %lld, analytic %lld", step_a2a_name(mode),
                  (long long)f, (long long)an);
    }
}

/* A hot expert (40% of the pairs on device 0) makes its streams share
 * ports with the others; the two micro-batches' all-to-alls share ports
 * with each other. The analytic mode charges each phase only its busiest
 * port's bytes, as if nothing else ran: the flow mode is slower. */
Test(step, flow_slower_with_contention) {
    int tok[8];
    double hot[8], uni[8];
    for (int i = 0; i < 8; i++) {
        tok[i] = 256;
        hot[i] = i == 0 ? 0.4 * 4096 : 0.6 * 4096 / 7;
        uni[i] = 512;
    }
    for (int a = 1; a <= 2; a++) {
        int64_t f = small_step(STEP_FLOW, (enum step_a2a)a, 0, hot, tok);
        int64_t an = small_step(STEP_ANALYTIC, (enum step_a2a)a, 0, hot, tok);
        cr_assert(f > an + 1000, "hot expert, %s: flow %lld, analytic %lld",
                  step_a2a_name((enum step_a2a)a), (long long)f, (long long)an);
    }
    int64_t f = small_step(STEP_FLOW, STEP_A2A_LOW_LATENCY, 1, uni, tok);
    int64_t an = small_step(STEP_ANALYTIC, STEP_A2A_LOW_LATENCY, 1, uni, tok);
    cr_assert(f > an + 1000, "overlap: flow %lld, analytic %lld", (long long)f, (long long)an);
}

/* Communication under compute: with 2,048 tokens a device the all-to-all
 * is long, and two micro-batches finish the step sooner than one batch in
 * both modes. With 256 tokens the weights dominate (memory-bound decode)
 * and reading them once per micro-batch costs more than overlap saves. */
Test(step, overlap_hides_communication) {
    int tok[8];
    double load[8];
    for (int T = 256; T <= 2048; T *= 8) {
        for (int i = 0; i < 8; i++) tok[i] = T, load[i] = 2.0 * T;
        for (int mode = 0; mode < 2; mode++) {
            int64_t one = small_step((enum step_mode)mode, STEP_A2A_LOW_LATENCY, 0, load, tok);
            int64_t two = small_step((enum step_mode)mode, STEP_A2A_LOW_LATENCY, 1, load, tok);
            if (T == 2048)
                cr_assert(two < one * 0.95, "%s: overlap %lld vs %lld", step_mode_name(mode),
                          (long long)two, (long long)one);
            else if (mode == STEP_FLOW)
                cr_assert(two > one, "small batch: overlap %lld vs %lld", (long long)two,
                          (long long)one);
        }
    }
}

/* Two micro-batches by hand (docs/cost-model.md section 7). One node of
 * two devices, one expert each, every token sent to both (top-2 of 2
 * experts), 4 MoE layers. Compute-bound: each device runs ATTN0, ATTN1,
 * SHARED0, SHARED1, EXPERT0, EXPERT1 back to back, the dispatches hiding
 * under ATTN1 and the shared experts, each combine under the other
 * micro-batch's experts or the next layer's first attention. So every
 * layer after the first takes exactly 2 (a + s + x), the per-device
 * compute of both micro-batches, and the first adds the one combine
 * nothing hides. */
static moe_model_t two_dev_model(int moe_layers) {
    moe_model_t m = *moe_find("deepseek-v3");
    m.n_experts = 2;
    m.top_k = 2;
    m.n_dense = 1;
    m.n_layers = 1 + moe_layers;
    return m;
}

static int64_t two_dev_step(const hw_t *hw, enum step_mode mode, int overlap, int T,
                            step_result_t *keep) {
    moe_model_t m = two_dev_model(4);
    cluster_t c = cluster(1, 2, mode, STEP_A2A_AUTO, overlap);
    c.hw = *hw;
    place_layout_t *lo = fx_layout(4, 2, 2, 2, 1);
    double load[8];
    int tok[2] = {T, T};
    for (int i = 0; i < 8; i++) load[i] = 2.0 * T; /* every token on both experts */
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 1000};
    step_sim_t *s = step_new(&c, &m);
    step_result_t r;
    cr_assert_eq(step_run(s, &in, &r), MS_OK, "%s", ms_err_last());
    int64_t t = r.end_ns - r.start_ns;
    if (keep) {
        *keep = r;
        keep->layer_ns = ms_malloc(4 * sizeof *keep->layer_ns);
        memcpy(keep->layer_ns, r.layer_ns, 4 * sizeof *keep->layer_ns);
        keep->dev_load = keep->expert_load = NULL;
    }
    step_free(s);
    place_layout_free(lo);
    return t;
}

Test(step, overlap_by_hand_compute_bound) {
    hw_t plain = h800_plain();
    const hw_t *hw = &plain;
    moe_model_t m = two_dev_model(4);
    int T = 4096;
    double half = T / 2.0, pairs = T; /* a micro-batch: half the tokens, T pairs an expert */
    double a = cost_attn_ns(hw, &m, half, 1000, 0), sh = cost_shared_ns(hw, &m, half);
    double x = cost_experts_ns(hw, &m, &pairs, 1);
    step_result_t r;
    int64_t ov = two_dev_step(hw, STEP_FLOW, 1, T, &r);
    for (int l = 1; l < 4; l++)
        cr_assert(llabs(r.layer_ns[l] - llround(2 * (a + sh + x))) <= 2,
                  "layer %d: %lld ns, 2 (a + s + x) = %.1f ns", l, (long long)r.layer_ns[l],
                  2 * (a + sh + x));
    cr_assert_gt(r.layer_ns[0], r.layer_ns[1], "the first layer's combine is exposed");
    int64_t sum = r.pre_ns + r.post_ns;
    for (int l = 0; l < 4; l++) sum += r.layer_ns[l];
    cr_assert_eq(ov, sum);
    /* and overlap wins against one batch, which exposes every transfer */
    cr_assert_lt(ov, two_dev_step(hw, STEP_FLOW, 0, T, NULL));
    free(r.layer_ns);
}

/* Communication-bound by hand: with compute free (peaks and HBM
 * unbounded, no kernel cost) both micro-batches' dispatches start at once
 * and share the same links, then both combines: each layer is the link
 * time of the whole batch, exactly as without overlap. The perfect-
 * pipeline bound is below it (its busiest ports carry both micro-batches,
 * but it lets their hop latencies overlap). */
Test(step, overlap_by_hand_comm_bound) {
    hw_t hw = h800_plain();
    hw.flops_bf16 = hw.flops_fp8 = hw.hbm_bw = 1e30;
    hw.kernel_ns = 0;
    int64_t one = two_dev_step(&hw, STEP_FLOW, 0, 4096, NULL);
    int64_t two = two_dev_step(&hw, STEP_FLOW, 1, 4096, NULL);
    int64_t bound = two_dev_step(&hw, STEP_ANALYTIC, 1, 4096, NULL);
    cr_assert_gt(one, 0);
    cr_assert(llabs(two - one) <= 8, "overlap %lld ns, one batch %lld ns", (long long)two,
              (long long)one);
    cr_assert_leq(bound, two);
}

/* Two-batch overlap's contention by hand (hw_t.overlap_*). Compute-bound
 * as above with overlap_compute = 1.25: every MoE-layer kernel takes 1.25 x
 * its time, so each layer after the first takes 2.5 (a + s + x); the
 * dense layers and head, run once on the whole batch, are not overlapped
 * and keep their time. Communication-bound (compute free) with
 * overlap_comm = 2: every NVLink transfer of an overlapped layer moves its
 * bytes at half speed, so the step is exactly the one on NVLink of half the
 * bandwidth, in both modes; without overlap neither figure applies. */
Test(step, overlap_contention_by_hand) {
    hw_t hw = h800_plain();
    moe_model_t m = two_dev_model(4);
    int T = 4096;
    double half = T / 2.0, pairs = T;
    double a = cost_attn_ns(&hw, &m, half, 1000, 0), sh = cost_shared_ns(&hw, &m, half);
    double x = cost_experts_ns(&hw, &m, &pairs, 1);
    step_result_t r0, r;
    two_dev_step(&hw, STEP_FLOW, 1, T, &r0);
    hw.overlap_compute = 1.25;
    two_dev_step(&hw, STEP_FLOW, 1, T, &r);
    for (int l = 1; l < 4; l++)
        cr_assert(llabs(r.layer_ns[l] - llround(2.5 * (a + sh + x))) <= 3,
                  "layer %d: %lld ns, 2.5 (a + s + x) = %.1f ns", l, (long long)r.layer_ns[l],
                  2.5 * (a + sh + x));
    cr_assert_eq(r.pre_ns, r0.pre_ns, "the dense layers are not overlapped");
    cr_assert_eq(r.post_ns, r0.post_ns, "nor is the head");
    hw_t plain = h800_plain();
    cr_assert_eq(two_dev_step(&hw, STEP_FLOW, 0, T, NULL), two_dev_step(&plain, STEP_FLOW, 0, T, NULL),
                 "without overlap the figure does not apply");
    free(r0.layer_ns);
    free(r.layer_ns);

    hw_t fr = h800_plain();
    fr.flops_bf16 = fr.flops_fp8 = fr.hbm_bw = 1e30;
    fr.kernel_ns = 0;
    hw_t slow = fr, halfbw = fr;
    slow.overlap_comm = 2;
    halfbw.scaleup_bw /= 2;
    for (int mode = 0; mode < 2; mode++) {
        int64_t t = two_dev_step(&slow, (enum step_mode)mode, 1, T, NULL);
        int64_t h = two_dev_step(&halfbw, (enum step_mode)mode, 1, T, NULL);
        int64_t f = two_dev_step(&fr, (enum step_mode)mode, 1, T, NULL);
        cr_assert(llabs(t - h) <= 8, "%s: overlap_comm 2 %lld ns, half NVLink %lld ns",
                  step_mode_name((enum step_mode)mode), (long long)t, (long long)h);
        cr_assert_gt(t, f + f / 2, "%s: the transfers dominate, so nearly twice as long",
                     step_mode_name((enum step_mode)mode));
        cr_assert_eq(two_dev_step(&slow, (enum step_mode)mode, 0, T, NULL),
                     two_dev_step(&fr, (enum step_mode)mode, 0, T, NULL));
    }
}

/* Over shapes, both DeepEP modes, balanced and hot loads and batch sizes:
 * (1) where splitting a batch costs nothing (compute linear in tokens: no
 * weight reads, no kernel cost) flow with overlap is never slower than
 * without; (2) on the H800 preset, with balanced loads, it is never faster
 * than the analytic perfect-pipeline bound. With a hot expert the bound's
 * per-phase busiest ports are the hot device's in-port in dispatch and its
 * out-port in combine, which the flow mode runs at once in opposite
 * directions: the bound can then sit up to about 1% above the flow. */
Test(step, overlap_never_slower_never_below_bound) {
    hw_t lin = h800_plain();
    lin.hbm_bw = 1e30;
    lin.kernel_ns = 0;
    int shapes[3][2] = {{1, 8}, {2, 4}, {4, 2}};
    for (int sh = 0; sh < 3; sh++)
        for (int a2a = STEP_A2A_NORMAL; a2a <= STEP_A2A_LOW_LATENCY; a2a++)
            for (int hot = 0; hot < 2; hot++)
                for (int T = 64; T <= 8192; T *= 8) {
                    int n = shapes[sh][0], dpn = shapes[sh][1], D = n * dpn;
                    moe_model_t m = small_model();
                    m.n_experts = D;
                    place_layout_t *lo = fx_layout(2, D, D, dpn, 1);
                    double load[16];
                    int tok[8];
                    for (int d = 0; d < D; d++) tok[d] = T;
                    for (int l = 0; l < 2; l++)
                        for (int e = 0; e < D; e++)
                            load[l * D + e] = !hot ? 2.0 * T
                                              : e == 0 ? 0.4 * 2 * T * D
                                                       : 0.6 * 2 * T * D / (D - 1);
                    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok,
                                    .kv_len = 1000};
                    cluster_t c0 = cluster(n, dpn, STEP_FLOW, (enum step_a2a)a2a, 0);
                    cluster_t c1 = cluster(n, dpn, STEP_FLOW, (enum step_a2a)a2a, 1);
                    c0.hw = c1.hw = lin;
                    int64_t f0 = run_once(&c0, &m, &in, NULL), f1 = run_once(&c1, &m, &in, NULL);
                    cr_assert_leq(f1, f0, "%dx%d %s hot %d T %d: overlap %lld ns, one batch %lld",
                                 n, dpn, step_a2a_name((enum step_a2a)a2a), hot, T,
                                 (long long)f1, (long long)f0);
                    if (!hot) {
                        cluster_t cf = cluster(n, dpn, STEP_FLOW, (enum step_a2a)a2a, 1);
                        cluster_t ca = cluster(n, dpn, STEP_ANALYTIC, (enum step_a2a)a2a, 1);
                        int64_t f = run_once(&cf, &m, &in, NULL), b = run_once(&ca, &m, &in, NULL);
                        cr_assert_geq(f + 4, b, "%dx%d %s T %d: flow %lld ns below the bound %lld",
                                     n, dpn, step_a2a_name((enum step_a2a)a2a), T, (long long)f,
                                     (long long)b);
                    }
                    place_layout_free(lo);
                }
}

/* Low-latency mode folds each phase's token side into one link; with two
 * micro-batches one's dispatch runs under the other's combine, and every
 * NIC's out port carries both (its tokens going out, its experts' results
 * going back). Two devices on two nodes, one expert each, every token on
 * both, the NIC slowed to 1 GB/s so the transfers overlap: device 0's NIC
 * sends L x T x (dispatch + combine bytes) in all, so the step can be no
 * shorter than that over its bandwidth. */
Test(step, overlapped_phases_share_the_nic) {
    hw_t hw = h800_plain();
    hw.nic_bw = 1e9;
    moe_model_t m = two_dev_model(4);
    int T = 1024;
    cluster_t c = cluster(2, 1, STEP_FLOW, STEP_A2A_LOW_LATENCY, 1);
    c.hw = hw;
    place_layout_t *lo = fx_layout(4, 2, 2, 1, 1);
    double load[8];
    int tok[2] = {T, T};
    for (int i = 0; i < 8; i++) load[i] = 2.0 * T;
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 1000};
    step_result_t r;
    int64_t t = run_once(&c, &m, &in, &r);
    /* count mode: a token meets the other device with q = 1 - (1/2)^2 */
    double q = 0.75, bytes = 4 * T * q * m.hidden * (double)(m.dispatch_bytes + m.combine_bytes);
    double floor_ns = 1e9 * bytes / (hw.nic_bw * hw.eff_nic);
    cr_assert_geq(t - r.pre_ns - r.post_ns, llround(floor_ns), "%lld ns of layers, NIC floor %.0f",
                  (long long)(t - r.pre_ns - r.post_ns), floor_ns);
    place_layout_free(lo);
}

/* Count mode fills the result loads: device loads are the expert loads
 * split over replicas, and sum to tokens x k. */
Test(step, count_mode_loads) {
    const moe_model_t *m = moe_find("deepseek-v3");
    int L = moe_n_moe_layers(m), E = m->n_experts, D = 16;
    place_layout_t *lo = fx_layout(L, E, D, 8, 18); /* 288 slots: 32 redundant */
    double *load = ms_malloc((size_t)L * E * sizeof *load);
    int tok[16];
    for (int d = 0; d < D; d++) tok[d] = 64;
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) load[(size_t)l * E + e] = e < 32 ? 8 : 4;
    for (int mode = 0; mode < 2; mode++) {
        cluster_t c = cluster(2, 8, (enum step_mode)mode, STEP_A2A_AUTO, 0);
        step_sim_t *s = step_new(&c, m);
        step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 100};
        step_result_t r;
        cr_assert_eq(step_run(s, &in, &r), MS_OK);
        for (int l = 0; l < L; l++) {
            double sum = 0;
            for (int d = 0; d < D; d++) sum += r.dev_load[(size_t)l * D + d];
            cr_assert_float_eq(sum, 32 * 8 + 224 * 4, 1e-9);
            cr_assert_eq(r.expert_load[(size_t)l * E + 3], 8);
            cr_assert(r.layer_ns[l] > 0);
        }
        cr_assert(r.dispatch_bytes > 0 && r.combine_bytes > r.dispatch_bytes);
        step_free(s);
    }
    free(load);
    place_layout_free(lo);
}

/* The same input twice gives the same step; a later start shifts it. */
Test(step, deterministic_and_start_time) {
    int tok[8];
    double hot[8];
    for (int i = 0; i < 8; i++) tok[i] = 100 + 20 * i, hot[i] = i == 2 ? 900 : 200;
    int64_t a = small_step(STEP_FLOW, STEP_A2A_NORMAL, 1, hot, tok);
    int64_t b = small_step(STEP_FLOW, STEP_A2A_NORMAL, 1, hot, tok);
    cr_assert_eq(a, b);
    moe_model_t m = small_model();
    cluster_t c = cluster(2, 4, STEP_FLOW, STEP_A2A_NORMAL, 0);
    place_layout_t *lo = fx_layout(2, 8, 8, 4, 1);
    double load[16];
    for (int i = 0; i < 16; i++) load[i] = hot[i % 8];
    step_sim_t *s = step_new(&c, &m);
    step_result_t r1, r2;
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 10};
    cr_assert_eq(step_run(s, &in, &r1), MS_OK);
    int64_t d1 = r1.end_ns - r1.start_ns;
    in.start_ns = 5000000000LL;
    cr_assert_eq(step_run(s, &in, &r2), MS_OK);
    cr_assert_eq(r2.start_ns, 5000000000LL);
    cr_assert_eq(r2.end_ns - r2.start_ns, d1);
    step_free(s);
    place_layout_free(lo);
}

/* The EP144 decode step of docs/cost-model.md: DeepSeek-V3 on 18 x 8 H800,
 * 288 slots (experts 0-31 twice), 128 tokens a device, KV length 4,989,
 * every slot serving 512 token-expert pairs (count mode), low-latency
 * all-to-all. The document derives 55,126,511 ns. */
#define DOC_EP144_NS 55126511LL
Test(step, documented_ep144_decode) {
    const moe_model_t *m = moe_find("deepseek-v3");
    int L = moe_n_moe_layers(m), E = m->n_experts, D = 144;
    place_layout_t *lo = fx_layout(L, E, D, 8, 2);
    double *load = ms_malloc((size_t)L * E * sizeof *load);
    int tok[144];
    for (int d = 0; d < D; d++) tok[d] = 128;
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) load[(size_t)l * E + e] = e < 32 ? 1024 : 512;
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 4989};
    cluster_t ca = cluster(18, 8, STEP_ANALYTIC, STEP_A2A_AUTO, 0);
    step_result_t r;
    cr_assert_eq(run_once(&ca, m, &in, &r), DOC_EP144_NS);
    cr_assert_eq(r.pre_ns, 1441390);
    cr_assert_eq(r.post_ns, 678117);
    cluster_t cf = cluster(18, 8, STEP_FLOW, STEP_A2A_AUTO, 0);
    int64_t f = run_once(&cf, m, &in, NULL);
    cr_assert(llabs(f - DOC_EP144_NS) < 1000, "flow %lld ns", (long long)f);
    /* and it fits in HBM (docs: 72.85 GB of 80) */
    cr_assert_eq(cost_check_memory(&ca.hw, m, lo, cost_kv_bytes(m, 128, 4989), NULL), MS_OK);
    free(load);
    place_layout_free(lo);
}

/* MTP in the step: the EP144 decode batch of 128 sequences with one draft
 * verifies 256 tokens (each sequence's KV read once for both queries), the
 * MTP block runs as one more MoE layer on the last layer's layout and
 * loads, and the head is followed by eh_proj and the shared head on one
 * token a sequence. Analytic and flow agree (no contention). */
Test(step, mtp_block_and_verification) {
    moe_model_t m = *moe_find("deepseek-v3");
    int L = moe_n_moe_layers(&m), E = m.n_experts, D = 144;
    place_layout_t *lo = fx_layout(L, E, D, 8, 2);
    double *load = ms_malloc((size_t)L * E * sizeof *load);
    int tok[144];
    for (int d = 0; d < D; d++) tok[d] = 256;
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) load[(size_t)l * E + e] = e < 32 ? 2048 : 1024;
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 4989};
    cluster_t ca = cluster(18, 8, STEP_ANALYTIC, STEP_A2A_AUTO, 0);
    step_sim_t *plain = step_new(&ca, &m);
    step_result_t r0;
    cr_assert_eq(step_run(plain, &in, &r0), MS_OK);
    cr_assert_eq(r0.n_layers, L);
    m.mtp_depth = 1;
    step_sim_t *s = step_new(&ca, &m);
    step_result_t r;
    cr_assert_eq(step_run(s, &in, &r), MS_OK, "%s", ms_err_last());
    cr_assert_eq(r.n_layers, L + 1);
    cr_assert(llabs(r.layer_ns[L] - r.layer_ns[L - 1]) <= 1, "the block repeats the last layer");
    for (int d = 0; d < D; d++)
        cr_assert_eq(r.dev_load[(size_t)L * D + d], r.dev_load[(size_t)(L - 1) * D + d]);
    /* only attention changes per layer: the KV cache is read once, not twice */
    const hw_t *hw = &ca.hw;
    double dA = cost_attn_ns(hw, &m, 256, 4989, 0) - cost_attn_q_ns(hw, &m, 256, 4989, 0, 2);
    cr_assert(dA > 0);
    cr_assert(llabs(r0.layer_ns[0] - r.layer_ns[0] - llround(dA)) <= 1, "%lld vs %lld, dA %.1f",
              (long long)r0.layer_ns[0], (long long)r.layer_ns[0], dA);
    cr_assert_eq(r.pre_ns, llround(cost_pre_q_ns(hw, &m, 256, 4989, 0, 2)));
    double post = cost_head_ns(hw, &m, 256) + cost_mtp_proj_ns(hw, &m, 256) +
                  cost_head_ns(hw, &m, 128);
    cr_assert_eq(r.post_ns, llround(post));
    int64_t layers = 0;
    for (int l = 0; l < r.n_layers; l++) layers += r.layer_ns[l];
    cr_assert(llabs(r.end_ns - r.start_ns - (r.pre_ns + layers + r.post_ns)) <= 1);
    int64_t a = r.end_ns - r.start_ns;
    cluster_t cf = cluster(18, 8, STEP_FLOW, STEP_A2A_AUTO, 0);
    int64_t f = run_once(&cf, &m, &in, NULL);
    cr_assert(llabs(f - a) < 1000, "flow %lld ns, analytic %lld ns", (long long)f, (long long)a);
    /* a prefill step runs the block once (the first draft), no KV reuse */
    in.prefill = 1;
    cr_assert_eq(step_run(s, &in, &r), MS_OK);
    cr_assert_eq(r.n_layers, L + 1);
    step_free(s);
    step_free(plain);
    free(load);
    place_layout_free(lo);
}

Test(step, errors) {
    const moe_model_t *m = moe_find("deepseek-v3");
    cluster_t c = cluster(2, 4, STEP_FLOW, STEP_A2A_AUTO, 0);
    step_sim_t *s = step_new(&c, m);
    place_layout_t *lo = fx_layout(moe_n_moe_layers(m), m->n_experts, 16, 8, 16);
    step_result_t r;
    ms_err_quiet(1);
    step_in_t in = {.layout = lo};
    cr_assert_eq(step_run(s, &in, &r), MS_ERR);
    cr_assert(strstr(ms_err_last(), "does not match the cluster"), "%s", ms_err_last());
    place_layout_free(lo);
    lo = fx_layout(moe_n_moe_layers(m), m->n_experts, 8, 4, 32);
    in.layout = lo;
    cr_assert_eq(step_run(s, &in, &r), MS_ERR);
    cr_assert(strstr(ms_err_last(), "count mode needs expert_load"), "%s", ms_err_last());
    ms_err_quiet(0);
    place_layout_free(lo);
    step_free(s);
}

/* An oversubscribed spine slows only traffic between nodes: 2 nodes x 4
 * devices with every expert loaded alike send half their tokens across; a
 * spine of 4:1 gives each node a quarter of its NICs' bandwidth up, so the
 * step takes longer in flow and in analytic mode, and on one node it
 * changes nothing. */
static int64_t spine_step(int nodes, enum step_mode mode, double oversub) {
    moe_model_t m = small_model();
    cluster_t c = cluster(nodes, 8 / nodes, mode, STEP_A2A_AUTO, 0);
    c.spine_oversub = oversub;
    place_layout_t *lo = fx_layout(2, 8, 8, 8 / nodes, 1);
    double load[16];
    int tok[8];
    for (int i = 0; i < 16; i++) load[i] = 512;
    for (int d = 0; d < 8; d++) tok[d] = 256;
    step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 1000};
    int64_t t = run_once(&c, &m, &in, NULL);
    place_layout_free(lo);
    return t;
}

Test(step, spine_oversubscription_slows_cross_node_traffic_only) {
    for (int mode = 0; mode < 2; mode++) {
        enum step_mode md = mode ? STEP_ANALYTIC : STEP_FLOW;
        int64_t flat = spine_step(2, md, 1), over = spine_step(2, md, 4);
        cr_assert_gt(over, flat, "mode %d: 4:1 spine %lld ns vs %lld ns", mode, (long long)over,
                     (long long)flat);
        cr_assert_eq(spine_step(1, md, 4), spine_step(1, md, 1), "mode %d: one node", mode);
    }
}

/* Count-mode flow in low-latency mode counts its pieces and waits by node
 * in O(D) and forms its bytes in closed form; the general path counts them
 * pair by pair from the rounded entries t_a q_d. On random clusters (idle
 * devices, experts without tokens, overlap, an oversubscribed spine) both
 * finish every layer, within a few ns of each other (the bytes differ in
 * their last bits), and move the same bytes to 1e-6. */
Test(step, count_flow_by_node_equals_pair_by_pair) {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int it = 0; it < 60; it++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int nodes = 1 + (int)(x >> 60) % 4, dpn = 1 + (int)(x >> 56) % 5, D = nodes * dpn;
        int overlap = (int)(x >> 40) & 1, spine = (int)(x >> 41) & 1;
        moe_model_t m = small_model();
        m.n_experts = 2 * D;
        m.top_k = ms_imin(4, m.n_experts);
        place_layout_t *lo = fx_layout(m.n_layers - m.n_dense, m.n_experts, D, dpn, 2);
        int L = m.n_layers - m.n_dense, E = m.n_experts;
        int *tok = ms_malloc((size_t)D * sizeof *tok);
        double *load = ms_malloc((size_t)L * E * sizeof *load);
        for (int d = 0; d < D; d++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            tok[d] = (x >> 61) == 0 ? 0 : 1 + (int)(x >> 33) % 200; /* some devices idle */
        }
        for (int i = 0; i < L * E; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            load[i] = (x >> 61) < 2 ? 0 : (double)((x >> 30) % 500); /* some experts idle */
        }
        cluster_t c = cluster(nodes, dpn, STEP_FLOW, STEP_A2A_LOW_LATENCY, overlap);
        c.spine_oversub = spine ? 3 : 1;
        step_in_t in = {.layout = lo, .expert_load = load, .tokens = tok, .kv_len = 1000};
        step_result_t r[2];
        int64_t lay[2][8];
        for (int k = 0; k < 2; k++) {
            step_sim_t *s = step_new(&c, &m);
            step_count_pairwise(s, k);
            cr_assert_eq(step_run(s, &in, &r[k]), MS_OK, "%s", ms_err_last());
            for (int l = 0; l < r[k].n_layers && l < 8; l++) lay[k][l] = r[k].layer_ns[l];
            step_free(s);
        }
        char what[96];
        snprintf(what, sizeof what, "case %d: %d x %d, overlap %d, spine %d", it, nodes, dpn,
                 overlap, spine);
        cr_assert_gt(r[1].end_ns, 0, "%s", what);
        cr_assert_leq(llabs(r[0].end_ns - r[1].end_ns), 2 * r[0].n_layers,
                      "%s: by node %lld ns, pair by pair %lld", what, (long long)r[0].end_ns,
                      (long long)r[1].end_ns);
        for (int l = 0; l < r[0].n_layers && l < 8; l++)
            cr_assert_leq(llabs(lay[0][l] - lay[1][l]), 4, "%s, layer %d", what, l);
        cr_assert_leq(fabs(r[0].dispatch_bytes - r[1].dispatch_bytes),
                      1e-6 * r[1].dispatch_bytes + 1e-9, "%s", what);
        place_layout_free(lo);
        free(tok);
        free(load);
    }
}
