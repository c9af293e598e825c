/* Tests of the presets and the cost formulas, each against numbers worked
 * out by hand in the comment beside it (DeepSeek-V3 on H800 unless said:
 * FP8 peak 1979e12 x 0.7 = 1.3853e15 FLOP/s, BF16 989e12 x 0.7 =
 * 6.923e14, HBM 3.35e12 x 0.85 = 2.8475e12 B/s, kernel 4,000 ns). */
#include <criterion/criterion.h>
#include <string.h>

#include "calib.h"
#include "cost.h"
#include "hw.h"
#include "moe.h"
#include "place.h"
#include "util.h"
#include "fixture.h"

static const hw_t *h800(void) { return hw_find("H800"); }
static const moe_model_t *dsv3(void) { return moe_find("deepseek-v3"); }

Test(presets, hardware) {
    const char *names[] = {"H100", "H800", "H200", "H20", "910B", "910C", "GB200"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const hw_t *h = hw_find(names[i]);
        cr_assert_not_null(h, "%s", names[i]);
        cr_assert(h->flops_bf16 > 0 && h->flops_fp8 >= h->flops_bf16 && h->hbm_bytes > 0 &&
                  h->hbm_bw > 0 && h->scaleup_bw > 0 && h->nic_bw > 0 && h->source &&
                  h->eff_flops > 0 && h->eff_flops <= 1 && h->devices_per_host > 0);
        /* only the H200 has measurements (models/calib/), attached by the
         * spec loader, never written into the preset table */
        cr_assert_null(h->calib, "%s", names[i]);
        cr_assert_eq(calib_builtin(h) != NULL, !strcmp(names[i], "H200"), "%s", names[i]);
        cr_assert(strstr(hw_names(), names[i]));
    }
    cr_assert_not_null(hw_find("h800")); /* case-insensitive */
    cr_assert_null(hw_find("B300"));
    /* REFERENCE.md 5: H800 = H100 compute with NVLink 400 GB/s both ways */
    cr_assert_eq(hw_find("H800")->scaleup_bw, 200e9);
    cr_assert_eq(hw_find("H100")->scaleup_bw, 450e9);
    cr_assert_eq(hw_find("H20")->flops_bf16, 148e12);
    cr_assert_eq(hw_find("H200")->hbm_bytes, 141e9);
    cr_assert_eq(hw_find("910C")->devices_per_host, 16);
    /* SMs a grouped GEMM's waves run over: Hopper SXM's 132 (the H200's as
     * its measurement file reports it); not given elsewhere */
    cr_assert(hw_find("H100")->sms == 132 && hw_find("H800")->sms == 132 &&
              hw_find("H200")->sms == 132);
    cr_assert_eq(hw_find("H20")->sms, 0);
}

Test(presets, models) {
    const char *names[] = {"deepseek-v3", "kimi-k2", "qwen3-235b-a22b", "qwen3-30b-a3b",
                           "mixtral-8x7b"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const moe_model_t *m = moe_find(names[i]);
        cr_assert_not_null(m, "%s", names[i]);
        cr_assert(m->n_dense < m->n_layers && m->top_k <= m->n_experts && m->n_heads > 0 &&
                  m->vocab > 0 && m->source && moe_attn_params(m) > 0);
        cr_assert(strstr(moe_names(), names[i]));
    }
    cr_assert_eq(moe_n_moe_layers(moe_find("kimi-k2")), 60);
    cr_assert_eq(moe_find("kimi-k2")->n_experts, 384);
    cr_assert_eq(moe_n_moe_layers(dsv3()), 58);
}

/* REFERENCE.md 3: one routed expert = 3 x 7168 x 2048 = 44,040,192 bytes
 * in FP8, 88,080,384 in BF16. */
Test(cost, expert_bytes_by_dtype) {
    cr_assert_eq(moe_expert_bytes(dsv3()), 44040192.0);
    cr_assert_eq(moe_expert_bytes_as(dsv3(), 2), 88080384.0);
    /* Mixtral: 3 x 4096 x 14336 x 2 (BF16) */
    cr_assert_eq(moe_expert_bytes(moe_find("mixtral-8x7b")), 3.0 * 4096 * 14336 * 2);
}

/* MLA projections of DeepSeek-V3: q_a 7168x1536 = 11,010,048; q_b
 * 1536x128x192 = 37,748,736; kv_a 7168x576 = 4,128,768; kv_b 512x128x256 =
 * 16,777,216; o 128x128x7168 = 117,440,512: 187,105,280. GQA of
 * Qwen3-235B: q and o 4096x64x128 each = 67,108,864, k and v
 * 2x4096x4x128 = 4,194,304: 71,303,168. */
Test(cost, attention_params_and_kv) {
    cr_assert_eq(moe_attn_params(dsv3()), 187105280.0);
    cr_assert_eq(moe_attn_params(moe_find("qwen3-235b-a22b")), 71303168.0);
    /* KV per token and layer: MLA (512 + 64) x 2 B; GQA 2 x kv_heads x 128 x 2 B */
    cr_assert_eq(moe_kv_bytes_per_token(dsv3()), 1152.0);
    cr_assert_eq(moe_kv_bytes_per_token(moe_find("qwen3-235b-a22b")), 2048.0);
    cr_assert_eq(moe_kv_bytes_per_token(moe_find("mixtral-8x7b")), 4096.0);
    /* core FLOPs a token and position: absorbed MLA 2 x 128 x (2x512 + 64) =
     * 278,528; MHA-form prefill 2 x 128 x (192 + 128) = 81,920; GQA 2 x 64 x
     * 2 x 128 = 32,768 */
    cr_assert_eq(moe_attn_core_flops(dsv3(), 0), 278528.0);
    cr_assert_eq(moe_attn_core_flops(dsv3(), 1), 81920.0);
    cr_assert_eq(moe_attn_core_flops(moe_find("qwen3-235b-a22b"), 0), 32768.0);
}

/* One expert with 512 tokens: FLOPs 6 x 7168 x 2048 x 512 = 45,097,156,608
 * / 1.3853e15 = 32,554.07 ns; bytes 44,040,192 + 512 x (7168 x 3 + 8 x
 * 2048 = 37,888) = 63,438,848 / 2.8475e12 = 22,278.79 ns: compute-bound,
 * 32,554.07 ns + the call's 4,000. With 64 tokens: 4,069.26 ns of FLOPs
 * against 46,465,024 B = 16,317.83 ns: memory-bound (decode reads
 * weights). Without a calibration the formula is kernel_ns + the hard max. */
Test(cost, expert_roofline) {
    double one = 512, few = 64;
    cr_assert_float_eq(cost_experts_ns(h800(), dsv3(), &one, 1), 32554.07248 + 4000, 1e-3);
    cr_assert_float_eq(cost_experts_ns(h800(), dsv3(), &few, 1), 16317.83108 + 4000, 1e-3);
    cr_assert_float_eq(cost_expert_roofline_ns(h800(), dsv3(), 512), 32554.07248, 1e-3);
    /* one grouped GEMM over a device's slots: FLOPs and bytes summed, then
     * the max: 6 x 7168 x 2048 x 576 = 50,734,301,184 FLOPs = 36,623.33 ns
     * against 2 x 44,040,192 + 576 x 37,888 = 109,903,872 B = 38,596.62 ns
     * (memory-bound together although the 512-token slot alone is not) */
    double n[3] = {512, 0, 64};
    cr_assert_float_eq(cost_experts_ns(h800(), dsv3(), n, 3), 38596.61879 + 4000, 1e-3);
    double idle[2] = {0, 0};
    cr_assert_eq(cost_experts_ns(h800(), dsv3(), idle, 2), 0);
    cr_assert_float_eq(cost_experts_even_ns(h800(), dsv3(), 2, 512),
                       cost_experts_ns(h800(), dsv3(), (double[]){512, 512}, 2), 1e-9);
}

/* The measured form: floor + E x per-expert + smoothmax_p. Hand case,
 * DeepSeek-V3 FP8 on the H800's data sheet with floor 10 us, 0.5 us an
 * expert, eff_flops 0.5, eff_hbm 0.8, p = 2; two experts of 512 tokens:
 * 90,194,313,216 FLOPs / (0.5 x 1979e12) = 91,151.40 ns, 126,877,696 B /
 * (0.8 x 3.35e12) = 47,342.42 ns; sqrt(a^2 + b^2) = 102,712.63;
 * + 10,000 + 2 x 500 = 113,712.63 ns. */
Test(cost, measured_gemm_formula_by_hand) {
    cr_assert_float_eq(cost_smoothmax(3, 4, 2), 5.0, 1e-12);
    cr_assert_float_eq(cost_smoothmax(3, 4, 0), 4.0, 1e-12, "p <= 0: the hard max");
    cr_assert_float_eq(cost_smoothmax(1, 1, 1), 2.0, 1e-12);
    cr_assert_float_eq(cost_smoothmax(1e-3, 1e300, 50), 1e300, 1e288, "no overflow");
    cr_assert_eq(cost_smoothmax(0, 0, 3), 0);
    hw_gemm_t par = {.floor_ns = 10000, .expert_ns = 500, .eff_flops = 0.5, .eff_hbm = 0.8, .sharp = 2};
    double n[2] = {512, 512};
    cr_assert_float_eq(cost_experts_par_ns(&par, h800(), dsv3(), n, 2), 113712.62512, 1e-3);
    cost_gemm_work_t w = {.experts = 2, .flops = 90194313216.0, .bytes = 126877696.0,
                          .peak = 1979e12, .hbm_bw = 3.35e12};
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 113712.62512, 1e-3);
    w.experts = 0;
    cr_assert_eq(cost_gemm_ns(&par, &w), 0, "no active expert, no call");
}

/* Tile quantisation by hand (hw_gemm_t: the FP8 grouped kernel's 128 rows
 * up to 128 tokens per local expert on average, 512 above; no clusters
 * given, so no waves). The par of measured_gemm_formula_by_hand; experts
 * of 200 and 300 tokens on a device of two slots: mean 250 > 128, so
 * 512-row tiles, 1,024 rows computed: 90,194,313,216 FLOPs (as 2 x 512
 * tokens) -> 91,151.40 ns; the bytes are the tokens' own, 2 x 44,040,192 +
 * 500 x 37,888 = 107,024,384 B -> 39,934.47 ns; sqrt(a^2 + b^2) + 11,000 =
 * 110,515.53 ns. The same tokens on four slots (two idle): mean 125,
 * 128-row tiles, 256 + 384 = 640 rows, 56,371,445,760 FLOPs -> 56,969.63
 * ns; 80,572.27 ns in all. */
Test(cost, tile_quantisation_by_hand) {
    hw_gemm_t par = {.floor_ns = 10000, .expert_ns = 500, .eff_flops = 0.5, .eff_hbm = 0.8,
                     .sharp = 2, .small_max = 128, .tile = {{128, 0, 0}, {512, 0, 0}, {512, 0, 0}}};
    const moe_model_t *m = dsv3();
    double per_row = 6.0 * m->hidden * m->moe_inter;
    double n[4] = {200, 300, 0, 0};
    cr_assert_eq(cost_gemm_config(&par, 250, 4096, 7168)->rows, 512);
    cr_assert_eq(cost_gemm_config(&par, 125, 4096, 7168)->rows, 128);
    cr_assert_eq(cost_gemm_config(&par, 250, 100, 7168)->rows, 128, "N <= 128: small");
    cost_gemm_work_t w;
    cost_experts_work(&par, h800(), m, n, 2, &w);
    cr_assert_eq(w.n_gemm, 0, "no clusters, no waves");
    cr_assert_float_eq(w.flops / per_row, 1024, 1e-9);
    cost_experts_work(&par, h800(), m, n, 4, &w);
    cr_assert_float_eq(w.flops / per_row, 640, 1e-9);
    cr_assert_float_eq(cost_experts_par_ns(&par, h800(), m, n, 2), 110515.52786, 1e-3);
    cr_assert_float_eq(cost_experts_par_ns(&par, h800(), m, n, 4), 80572.26752, 1e-3);
    double full[2] = {512, 512}, one[2] = {513, 0};
    cost_experts_work(&par, h800(), m, full, 2, &w);
    cr_assert_float_eq(w.flops / per_row, 1024, 1e-9, "whole tiles: no padding");
    cost_experts_work(&par, h800(), m, one, 2, &w);
    cr_assert_float_eq(w.flops / per_row, 1024, 1e-9, "513 rows take two 512-row tiles");
    hw_gemm_t none = par;
    memset(none.tile, 0, sizeof none.tile);
    cr_assert_null(cost_gemm_config(&none, 250, 4096, 7168));
    cost_experts_work(&none, h800(), m, n, 2, &w);
    cr_assert_float_eq(w.flops / per_row, 500, 1e-9, "no tiles: the tokens");
    cr_assert_float_eq(cost_experts_par_ns(&none, h800(), m, full, 2), 113712.62512, 1e-3,
                       "without tiles the formula is unchanged");
}

/* The FP8 kernel's three configurations (ScaledGroupMM.cu): small when M
 * or N <= 128; large (512 x 256) when two of M, N, K reach 2048; else
 * medium (256 x 512). Qwen3-235B (hidden 4096, inter 1536) at 300 tokens
 * per expert: gate/up N 3072, K 4096 -> large; down N 4096, K 1536 ->
 * medium, M < 2048; from 2048 tokens large. DeepSeek-V3's down (N 7168, K
 * 2048) is large at any M above 128. One Qwen3 expert of 300 tokens on an
 * H200: gate/up 1 x 3072 / 256 = 12 clusters of 2 x 512 x 256 x 4096 FLOPs,
 * down 2 x 4096 / 512 = 16 clusters of 2 x 256 x 512 x 1536. */
Test(cost, fp8_kernel_configurations) {
    hw_gemm_t par = {.eff_flops = 0.5, .eff_hbm = 0.7};
    calib_kernel_tiles("grouped", 1, &par);
    cr_assert_eq(cost_gemm_config(&par, 100, 3072, 4096)->rows, 128);
    cr_assert_eq(cost_gemm_config(&par, 300, 3072, 4096)->rows, 512);
    cr_assert_eq(cost_gemm_config(&par, 300, 4096, 1536)->rows, 256);
    cr_assert_eq(cost_gemm_config(&par, 300, 4096, 1536)->cols, 512);
    cr_assert_eq(cost_gemm_config(&par, 2048, 4096, 1536)->rows, 512);
    cr_assert_eq(cost_gemm_config(&par, 300, 7168, 2048)->rows, 512);
    moe_model_t q = {.hidden = 4096, .moe_inter = 1536, .weight_bytes = 1, .dispatch_bytes = 1,
                     .combine_bytes = 2};
    double one[1] = {300};
    cost_gemm_work_t w;
    cost_experts_work(&par, hw_find("H200"), &q, one, 1, &w);
    cr_assert_eq(w.n_gemm, 2);
    cr_assert(w.clusters[0] == 12 && w.clusters[1] == 16, "%g %g", w.clusters[0], w.clusters[1]);
    cr_assert_eq(w.slots[0], 29, "CUTLASS launches 29 clusters of 4 on 132 SMs");
    cr_assert_eq(w.share[0], 33, "a cluster's share of the peak: 132 / 4");
    cr_assert_eq(w.cluster_flops[0], 2.0 * 512 * 256 * 4096);
    cr_assert_eq(w.cluster_flops[1], 2.0 * 256 * 512 * 1536);
}

/* Wave quantisation by hand (models/cost.h): a wave of clusters costs
 * cluster FLOPs x max(clusters, eff_flops x slots) / (eff_flops x peak).
 * Clusters of F = 2 x 128 x 128 x 4096 = 134,217,728 FLOPs on 132 slots,
 * BF16 989e12: 132 clusters at eff 1 fill one wave, 132 F / 989e12 =
 * 17,913.79 ns; the 133rd starts a second wave that one cluster, at its
 * SM's peak, takes as long as the first: 35,827.58 ns. At eff 0.5 the full
 * wave takes 35,827.58 ns and the lone 133rd cluster half of it (its SM
 * runs at the data-sheet peak, twice the sustained share): 198 F -> 53,741.38
 * ns. 264 clusters: two full waves, 71,655.17 ns. A wave of 10 clusters
 * costs as 66 (0.5 x 132): 17,913.79 ns, one cluster at its SM's peak. */
Test(cost, wave_quantisation_by_hand) {
    hw_gemm_t par = {.floor_ns = 0, .eff_flops = 1, .eff_hbm = 1, .sharp = 0};
    cost_gemm_work_t w = {.experts = 1, .bytes = 1, .peak = 989e12, .hbm_bw = 4.8e12,
                          .n_gemm = 1, .slots = {132}, .cluster_flops = {134217728}};
    w.clusters[0] = 132;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 17913.79181, 1e-3, "132 on 132: one wave");
    w.clusters[0] = 133;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 35827.58361, 1e-3, "133 on 132: two waves");
    par.eff_flops = 0.5;
    w.clusters[0] = 132;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 35827.58361, 1e-3);
    w.clusters[0] = 133;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 53741.37542, 1e-3);
    w.clusters[0] = 264;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 71655.16722, 1e-3);
    w.clusters[0] = 10;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 17913.79181, 1e-3);
    w.clusters[0] = 66;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 17913.79181, 1e-3);
}

/* CUTLASS's persistent grid by hand (cost_persistent_clusters): at most 18
 * SMs a GPC. 132 SMs = 7 GPCs of 18 + 6: clusters of 2 fill all (7 x 18 +
 * 6 = 132 SMs, 66 clusters); of 4, 7 x 16 + 4 = 116 SMs, 29 clusters (the
 * grid measured for the FP8 kernels, 58 x 2 CTAs); 144 SMs, 8 x 16 = 128,
 * 32 of 4; 16 SMs (under a GPC): 18 capped at 16, 8 of 2; 1 SM a cluster:
 * every SM. */
Test(cost, persistent_clusters_by_hand) {
    cr_assert_eq(cost_persistent_clusters(132, 2), 66);
    cr_assert_eq(cost_persistent_clusters(132, 4), 29);
    cr_assert_eq(cost_persistent_clusters(144, 4), 32);
    cr_assert_eq(cost_persistent_clusters(16, 2), 8);
    cr_assert_eq(cost_persistent_clusters(132, 1), 132);
    cr_assert_eq(cost_persistent_clusters(0, 2), 0);
    cr_assert_eq(cost_persistent_clusters(132, 0), 0);
}

/* Waves when fewer clusters run than the SMs could hold (29 of 4 SMs on
 * 132): a wave is 29 clusters, and the least a wave costs is still one
 * cluster at its 4 SMs' data-sheet peak, eff_flops x 33 clusters. F = 1e9
 * FLOPs a cluster, peak 1e15, eff 0.5: a unit F / (0.5 x 1e15) = 2 us. 29
 * clusters: one wave, 58 us; 30: 29 + a lone one charged as 16.5, 91 us;
 * 58: two waves, 116 us; 10: 16.5 -> 33 us. With no share given the least
 * is eff x slots (14.5): 10 clusters 29 us. */
Test(cost, waves_over_fewer_clusters_than_the_sms_hold) {
    hw_gemm_t par = {.eff_flops = 0.5, .eff_hbm = 1, .sharp = 0};
    cost_gemm_work_t w = {.experts = 1, .bytes = 1, .peak = 1e15, .hbm_bw = 4.8e12,
                          .n_gemm = 1, .slots = {29}, .share = {33}, .cluster_flops = {1e9}};
    w.clusters[0] = 29;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 58000, 1e-6);
    w.clusters[0] = 30;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 91000, 1e-6);
    w.clusters[0] = 58;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 116000, 1e-6);
    w.clusters[0] = 10;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 33000, 1e-6);
    w.share[0] = 0;
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 29000, 1e-6);
}

/* The clusters a grouped GEMM is given, by hand: BF16 DeepSeek-V3 shape
 * (hidden 7168, inter 2048) with the measured kernel's tiles on an H200
 * (132 SMs). One expert of 256 tokens: the large configuration, 256 x 256
 * clusters on 2 SMs, 66 slots; gate/up 1 x 4096 / 256 = 16 clusters of
 * 2 x 256 x 256 x 7168 = 939,524,096 FLOPs, down 7168 / 256 = 28 of
 * 268,435,456. Both waves are partial, charged as 0.6 x 66 = 39.6
 * clusters, i.e. one cluster at 2 SMs' peak: (939,524,096 + 268,435,456)
 * x 66 / 989e12 = 80,612.06 ns, whatever eff_flops. Bytes: 3 x 7168 x
 * 2048 x 2 + 256 x (7168 x 4 + 8 x 2048) = 99,614,720 -> / (0.7 x 4.8e12)
 * = 29,647.24 ns; hard max + 30 us floor: 110,612.06 ns (measured: 111,120,
 * models/calib/h200_experts_v2.csv). 257 tokens: two row tiles, 32 and 56
 * clusters. Eight experts of 512 tokens: 256 and 448 clusters, 3 and 6
 * full waves and partial ones of 58 and 52 (over 39.6): the padded FLOPs
 * 6 x 7168 x 2048 x 4096 = 360,777,252,864 -> 607,983.24 ns, the formula
 * without waves. */
Test(cost, wave_clusters_by_hand) {
    hw_t h = *hw_find("H200");
    cr_assert_eq(h.sms, 132);
    moe_model_t m = {.hidden = 7168, .moe_inter = 2048, .weight_bytes = 2, .dispatch_bytes = 2,
                     .combine_bytes = 2};
    hw_gemm_t par = {.floor_ns = 30000, .eff_flops = 0.6, .eff_hbm = 0.7, .sharp = 0};
    calib_kernel_tiles("grouped", 2, &par);
    cost_gemm_work_t w;
    double one[1] = {256};
    cost_experts_work(&par, &h, &m, one, 1, &w);
    cr_assert_eq(w.n_gemm, 2);
    cr_assert_eq(w.clusters[0], 16);
    cr_assert_eq(w.clusters[1], 28);
    cr_assert_eq(w.slots[0], 66);
    cr_assert_eq(w.cluster_flops[0], 939524096.0);
    cr_assert_eq(w.cluster_flops[1], 268435456.0);
    cr_assert_eq(w.bytes, 99614720.0);
    cr_assert_float_eq(cost_experts_par_ns(&par, &h, &m, one, 1), 110612.06313, 1e-3);
    one[0] = 257;
    cost_experts_work(&par, &h, &m, one, 1, &w);
    cr_assert(w.clusters[0] == 32 && w.clusters[1] == 56, "%g %g", w.clusters[0], w.clusters[1]);
    double eight[8] = {512, 512, 512, 512, 512, 512, 512, 512};
    cost_experts_work(&par, &h, &m, eight, 8, &w);
    cr_assert(w.clusters[0] == 256 && w.clusters[1] == 448, "%g %g", w.clusters[0], w.clusters[1]);
    cr_assert_eq(w.flops, 360777252864.0);
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 30000 + 607983.23705, 1e-3);
    /* no SM count: the FLOPs spread over the GPU, the same here */
    h.sms = 0;
    cost_experts_work(&par, &h, &m, eight, 8, &w);
    cr_assert_eq(w.n_gemm, 0);
    cr_assert_float_eq(cost_gemm_ns(&par, &w), 30000 + 607983.23705, 1e-3);
    /* and for the lone expert the old padded charge, far below the waves' */
    one[0] = 256;
    cost_experts_work(&par, &h, &m, one, 1, &w);
    cr_assert_lt(cost_gemm_ns(&par, &w), 0.8 * 110612.06313);
}

/* The link model by hand: 400 GB/s peak, 10 us, half 4e6 bytes, low 0.25,
 * duplex 0.8. 1e6 bytes per peer: ramp (1e6 + 1e6) / 5e6 = 0.4; 3e6 bytes
 * both ways: 10,000 + 3e6 / (400e9 x 0.4 x 0.8) s = 33,437.5 ns; one way:
 * 10,000 + 3e6 / 160e9 s = 28,750 ns. Large messages reach the peak. */
Test(cost, link_ramp_and_derating_by_hand) {
    hw_link_t l = {400e9, 10000, 4e6, 0.25, 0.8};
    cr_assert_float_eq(cost_link_ramp(&l, 1e6), 0.4, 1e-12);
    cr_assert_float_eq(cost_link_ramp(&l, 0), 0.25, 1e-12, "tiny messages: low x peak");
    cr_assert_float_eq(cost_link_ramp(&l, 4e6), 0.625, 1e-12, "halfway at half_bytes");
    cr_assert_gt(cost_link_ramp(&l, 1e13), 0.999999);
    cr_assert_float_eq(cost_link_ns(&l, 3e6, 1e6, 1), 33437.5, 1e-6);
    cr_assert_float_eq(cost_link_ns(&l, 3e6, 1e6, 0), 28750.0, 1e-6);
    cr_assert_eq(cost_link_ns(&l, 0, 1e6, 1), 0);
    /* presets without measurements: the data-sheet model */
    hw_link_t d = cost_scaleup_link(h800());
    cr_assert(d.bw == 200e9 * 0.8 && d.lat_ns == 2000 && d.duplex == 1);
    cr_assert_eq(cost_link_ramp(&d, 4096), 1.0);
    cr_assert_float_eq(cost_link_ns(&d, 1.6e6, 1e3, 1), 2000 + 10000, 1e-6);
    hw_link_t h = cost_scaleup_link(hw_find("H200"));
    cr_assert(h.half_bytes > 0 && h.low_share < 1 && h.duplex < 1, "H200 NVLink is measured");
    hw_link_t nic = cost_nic_link(hw_find("H200"));
    cr_assert(nic.half_bytes == 0 && nic.duplex == 1, "its NIC is not");
}

/* Decode attention, 128 tokens, KV 4,989: projections 2 x 187,105,280 x 128
 * FLOPs = 34,576.59 ns vs 187,105,280 + 4 x 7168 x 128 = 190,775,296 B =
 * 66,997.47 ns; core 128 x 4989 x 278,528 FLOPs / 6.923e14 = 256,920.05 ns
 * vs 128 x 4989 x 1152 B / 2.8475e12 = 258,352.23 ns. Sum of the two
 * rooflines + 4,000 = 329,349.70 ns. */
Test(cost, attention_decode) {
    cr_assert_float_eq(cost_attn_ns(h800(), dsv3(), 128, 4989, 0), 329349.70325, 1e-2);
    cr_assert_eq(cost_attn_ns(h800(), dsv3(), 0, 4989, 0), 0);
    /* GQA (Qwen3-30B, BF16 weights) on H100, 1 token, no KV: projections
     * 2 x P FLOPs vs P x 2 bytes (+ 4 x 2048) bytes; P = 2048x32x128 x 2 +
     * 2x2048x4x128 = 18,874,368 */
    const moe_model_t *q = moe_find("qwen3-30b-a3b");
    const hw_t *h = hw_find("H100");
    double P = 18874368.0;
    cr_assert_eq(moe_attn_params(q), P);
    double want = 1e9 * ms_dmax(2 * P / (989e12 * 0.7), (2 * P + 4 * 2048) / (3.35e12 * 0.85)) +
                  4000;
    cr_assert_float_eq(cost_attn_ns(h, q, 1, 0, 0), want, 1e-6);
}

/* Decode with one MTP draft: 128 sequences verify 256 tokens, each
 * sequence's KV cache read once for its two queries. Projections 2 x
 * 187,105,280 x 256 FLOPs = 69,153.18 ns (now above the 194,445,312 B =
 * 68,286.33 ns); core 256 x 4989 x 278,528 FLOPs = 513,840.11 ns vs 128 x
 * 4989 x 1152 B = 258,352.23 ns: the second query makes the core
 * compute-bound. 69,153.18 + 513,840.11 + 4,000 = 586,993.29 ns. */
Test(cost, attention_decode_with_drafts) {
    cr_assert_float_eq(cost_attn_q_ns(h800(), dsv3(), 256, 4989, 0, 2), 586993.28791, 1e-2);
    cr_assert_eq(cost_attn_q_ns(h800(), dsv3(), 128, 4989, 0, 1),
                 cost_attn_ns(h800(), dsv3(), 128, 4989, 0));
    /* prefill reads no cache: q changes nothing */
    cr_assert_eq(cost_attn_q_ns(h800(), dsv3(), 4096, 2000, 1, 2),
                 cost_attn_ns(h800(), dsv3(), 4096, 2000, 1));
    cr_assert_float_eq(cost_pre_q_ns(h800(), dsv3(), 256, 4989, 0, 2),
                       3 * (586993.28791 + cost_dense_ffn_ns(h800(), dsv3(), 256)), 1e-1);
}

/* DeepSeek-V3's MTP module (README_WEIGHTS.md of its checkpoint: 11.5B
 * unique parameters besides the shared embedding and head): eh_proj 2 x
 * 7168 x 7168 = 102,760,448, attention 187,105,280, shared expert
 * 44,040,192: 333,905,920 bytes in FP8 on every device; with its 256
 * routed experts (11,274,289,152) 11.61e9 parameters, norms left out. Its
 * projection over 256 tokens: 2 x 2 x 7168^2 x 256 FLOPs = 37,979.75 ns vs
 * 102,760,448 + 256 x 6 x 7168 B = 39,954.52 ns, + 4,000. */
Test(cost, mtp_module) {
    moe_model_t m = *dsv3();
    cr_assert_eq(m.mtp_modules, 1);
    cr_assert_eq(moe_mtp_weight_bytes(&m), 0, "held only when a run drafts");
    m.mtp_depth = 1;
    cr_assert_eq(moe_mtp_weight_bytes(&m), 333905920.0);
    cr_assert_eq(moe_dense_weight_bytes(&m), 18863554560.0 + 333905920.0);
    cr_assert_eq(moe_mtp_passes(&m, 0), 1);
    cr_assert_eq(moe_mtp_passes(&m, 1), 1);
    cr_assert_float_eq(cost_mtp_proj_ns(h800(), &m, 256), 43954.52011, 1e-3);
    /* its block has a KV cache of its own: 62 layers */
    cr_assert_eq(cost_kv_bytes(&m, 128, 4989), 128.0 * 4989 * 1152 * 62);
    m.mtp_depth = 3; /* deeper drafts run the one module again */
    cr_assert_eq(moe_mtp_passes(&m, 0), 3);
    cr_assert_eq(moe_mtp_passes(&m, 1), 1);
    cr_assert_eq(moe_mtp_weight_bytes(&m), 333905920.0);
    cr_assert_eq(moe_find("kimi-k2")->mtp_modules, 0); /* num_nextn_predict_layers 0 */
}

/* Shared expert, 128 tokens: 6 x 7168 x 2048 x 128 FLOPs = 8,138.52 ns;
 * 44,040,192 + 128 x (4 x 7168 + 8 x 2048) = 49,807,360 B = 17,491.61 ns;
 * + 4,000 = 21,491.61 ns. Dense FFN (18432): 73,246.66 ns of FLOPs vs
 * 3 x 7168 x 18432 + 128 x (4 x 7168 + 8 x 18432) B = 147,113.65 ns, +
 * 4,000. Head (129,280 x 7168, BF16): 342,669.12 ns of FLOPs vs
 * 1,853,358,080 + 4 x 129,280 x 128 B = 674,117.45 ns, + 4,000. */
Test(cost, shared_dense_head) {
    cr_assert_float_eq(cost_shared_ns(h800(), dsv3(), 128), 21491.61018, 1e-3);
    cr_assert_float_eq(cost_dense_ffn_ns(h800(), dsv3(), 128), 151113.64776, 1e-3);
    cr_assert_float_eq(cost_head_ns(h800(), dsv3(), 128), 678117.45040, 1e-2);
    cr_assert_float_eq(cost_pre_ns(h800(), dsv3(), 128, 4989, 0),
                       3 * (329349.70325 + 151113.64776), 1e-1);
    cr_assert_eq(cost_shared_ns(h800(), moe_find("mixtral-8x7b"), 128), 0); /* no shared */
}

/* Dense weight bytes of DeepSeek-V3: embedding + head 2 x 129,280 x 7168 x 2
 * = 3,706,716,160; attention 61 x 187,105,280 = 11,413,422,080; dense FFN
 * 3 x 3 x 7168 x 18432 = 1,189,085,184; shared 58 x 44,040,192 =
 * 2,554,331,136: 18,863,554,560 bytes. */
Test(cost, dense_weights) {
    cr_assert_eq(moe_dense_weight_bytes(dsv3()), 18863554560.0);
    /* KV of 128 sequences x 4,989 positions x 1152 B x 61 layers */
    cr_assert_eq(cost_kv_bytes(dsv3(), 128, 4989), 128.0 * 4989 * 1152 * 61);
}

/* EP144: 2 slots a device x 58 layers x 44 MB = 5.11 GB of routed experts
 * + 18.86 GB dense + 44.88 GB KV (128 x 4989) + 4 GB reserve = 72.85 GB:
 * fits 80 GB. Twice the KV does not; the message gives the numbers. */
Test(cost, memory_capacity) {
    const moe_model_t *m = dsv3();
    place_layout_t *lo = fx_layout(58, 256, 144, 8, 2);
    cr_assert_eq(cost_device_weight_bytes(m, lo, 0), 18863554560.0 + 116 * 44040192.0);
    cr_assert_eq(cost_check_memory(h800(), m, lo, cost_kv_bytes(m, 128, 4989), "x.ini"), MS_OK);
    ms_err_quiet(1);
    cr_assert_eq(cost_check_memory(h800(), m, lo, cost_kv_bytes(m, 256, 4989), "x.ini"), MS_ERR);
    const char *e = ms_err_last();
    cr_assert(strstr(e, "x.ini: device memory does not fit"), "%s", e);
    cr_assert(strstr(e, "23.97 GB weights"), "%s", e);
    cr_assert(strstr(e, "116 routed expert slots"), "%s", e);
    cr_assert(strstr(e, "89.75 GB KV cache"), "%s", e);
    cr_assert(strstr(e, "> 80.00 GB HBM of H800"), "%s", e);
    cr_assert(strstr(e, "fewer redundant experts"), "%s", e);
    /* with MTP the block's experts sit beside the last layer's: 2 more slots */
    moe_model_t mt = *m;
    mt.mtp_depth = 1;
    cr_assert_eq(cost_device_weight_bytes(&mt, lo, 0),
                 18863554560.0 + 333905920.0 + 118 * 44040192.0);
    place_layout_free(lo);
    /* EP32 with 9 slots a device x 58 layers x 44 MB = 22.99 GB + dense
     * 18.86 + 4 reserve: 45.85 GB, leaves room for 34 GB of KV */
    lo = fx_layout(58, 256, 32, 8, 9);
    cr_assert_eq(cost_check_memory(h800(), m, lo, 34e9, NULL), MS_OK);
    cr_assert_eq(cost_check_memory(h800(), m, lo, 35e9, NULL), MS_ERR);
    ms_err_quiet(0);
    place_layout_free(lo);
}

/* ---- attention parallelism (docs/cost-model.md section 13) */

/* A ring all-reduce of a TP8 group's hidden states, 1,024 tokens x 7,168 x
 * 2 B = 14,680,064 B: 14 steps of 1,835,008 B to the next device. H800
 * NVLink (no ramp, no derating): 2,000 + 1,835,008 / 160e9 s = 13,468.8 ns
 * a step, 188,563.2 ns. H200 (fitted link): ramp (1,835,008 + 0.2571 x
 * 1.5488e7) / (1,835,008 + 1.5488e7) = 0.335795, rate 450e9 x 0.873 x
 * 0.335795 x 0.7821 = 103.17 GB/s, step 17,316 + 17,785.4 ns: 491,426.2 ns.
 * Alone (n = 1) it costs nothing. */
Test(cost, tp_allreduce_by_hand) {
    hw_link_t nv = cost_scaleup_link(h800());
    cr_assert_float_eq(cost_allreduce_ns(&nv, 1024 * 7168 * 2.0, 8), 188563.2, 1e-6);
    hw_link_t h2 = cost_scaleup_link(hw_find("H200"));
    cr_assert_float_eq(cost_allreduce_ns(&h2, 1024 * 7168 * 2.0, 8), 491426.2246, 1e-3);
    cr_assert_eq(cost_allreduce_ns(&nv, 1e6, 1), 0);
    /* two devices: 2 steps of half the buffer */
    cr_assert_float_eq(cost_allreduce_ns(&nv, 3.2e6, 2), 2 * (2000 + 1.6e6 / 160e9 * 1e9), 1e-6);
}

/* TP8 attention over a group batch of 128 sequences (16 a device), KV
 * 4,989, on H800: projections 2 x 187,105,280 x 128 / 8 FLOPs = 8,648.52
 * ns against 23,388,160 + 4 x 7168 x 128 = 27,058,176 B = 9,502.43 ns;
 * core 22,233,219,072 FLOPs = 32,115.01 ns against MLA's latent cache of
 * all 128 sequences, 735,657,984 B = 258,352.23 ns (every rank reads it:
 * the heads split, the latent does not); + 4,000: 271,854.67 ns. tp = 1 is
 * the data-parallel formula. */
Test(cost, tp_attention_by_hand) {
    cr_assert_float_eq(cost_attn_tp_ns(h800(), dsv3(), 128, 4989, 0, 1, 8), 271854.6655, 1e-2);
    cr_assert_eq(cost_attn_tp_ns(h800(), dsv3(), 128, 4989, 0, 1, 1),
                 cost_attn_ns(h800(), dsv3(), 128, 4989, 0));
    /* GQA splits its KV heads: Qwen3-235B's 4 over TP2 keep 2 each, over
     * TP8 one each (replicated) */
    const moe_model_t *q = moe_find("qwen3-235b-a22b");
    cr_assert_eq(cost_kv_bytes_per_token_tp(q, 1), 2.0 * 4 * 128 * 2);
    cr_assert_eq(cost_kv_bytes_per_token_tp(q, 2), 2.0 * 2 * 128 * 2);
    cr_assert_eq(cost_kv_bytes_per_token_tp(q, 8), 2.0 * 1 * 128 * 2);
    cr_assert_eq(cost_kv_bytes_per_token_tp(dsv3(), 8), 1152);
    /* head and dense FFN split: the head's weights are an eighth */
    cr_assert(cost_head_tp_ns(h800(), dsv3(), 128, 8) < cost_head_ns(h800(), dsv3(), 128) / 7);
    cr_assert_eq(cost_head_tp_ns(h800(), dsv3(), 128, 1), cost_head_ns(h800(), dsv3(), 128));
    cr_assert_eq(cost_dense_ffn_tp_ns(h800(), dsv3(), 128, 1),
                 cost_dense_ffn_ns(h800(), dsv3(), 128));
    /* the dense layers: attention + all-reduce + FFN + all-reduce, three times */
    hw_link_t nv = cost_scaleup_link(h800());
    double ar = cost_allreduce_ns(&nv, 128 * 7168 * 2.0, 8);
    cr_assert_float_eq(cost_pre_tp_ns(h800(), dsv3(), 128, 4989, 0, 1, 8, &nv),
                       3 * (271854.6655 + 2 * ar + cost_dense_ffn_tp_ns(h800(), dsv3(), 128, 8)),
                       1e-1);
}

/* GPipe from an empty pipeline (prefill). Uniform: 2 stages, 4 micro-batches of 10
 * ms, hand-over 0.5 ms: (4 + 2 - 1) x 10 + 1 x 0.5 = 50.5 ms, of which the
 * bubble is 1 x (10 + 0.5) ms. Uneven, by hand: stage 0 takes 3 and 5,
 * stage 1 takes 4 and 1, hand-over 1: stage 0 ends its micro-batches at 3
 * and 8; stage 1 starts the first at 3 + 1 = 4 and ends it at 8, starts
 * the second at max(8, 8 + 1) = 9 and ends at 10. */
Test(cost, pp_bubble_by_hand) {
    double u[8];
    for (int i = 0; i < 8; i++) u[i] = 10e6;
    cr_assert_float_eq(cost_pipeline_ns(u, 2, 4, 0.5e6), 50.5e6, 1e-6);
    double bubble = cost_pipeline_ns(u, 2, 4, 0.5e6) - 4 * 10e6;
    cr_assert_float_eq(bubble, 10.5e6, 1e-6);
    double t[4] = {3, 5, 4, 1};
    cr_assert_float_eq(cost_pipeline_ns(t, 2, 2, 1), 10, 1e-12);
    /* one stage is the sum of its micro-batches */
    cr_assert_float_eq(cost_pipeline_ns(t, 1, 2, 1), 8, 1e-12);
    /* 4 stages, one micro-batch: stages and hand-overs in a row */
    cr_assert_float_eq(cost_pipeline_ns(u, 4, 1, 1e6), 43e6, 1e-6);
    /* Kept full (decode). One micro-batch of 10 ms on 2 stages, hand-over
     * 0.5: its round is 2 x (10 + 0.5) = 21 ms, each stage busy 10 of
     * them: a bubble of 11 ms. Two micro-batches: max(2 x 10, 21) = 21,
     * bubble 1 ms. Four: max(40, 21) = 40, none. Uneven (3, 5 / 4, 1,
     * hand-over 1): stage 0 works 8, stage 1 5; rounds 3 + 4 + 2 = 9 and
     * 5 + 1 + 2 = 8: period 9. */
    cr_assert_float_eq(cost_pipeline_steady_ns(u, 2, 1, 0.5e6), 21e6, 1e-6);
    cr_assert_float_eq(cost_pipeline_steady_ns(u, 2, 2, 0.5e6), 21e6, 1e-6);
    cr_assert_float_eq(cost_pipeline_steady_ns(u, 2, 4, 0.5e6), 40e6, 1e-6);
    cr_assert_float_eq(cost_pipeline_steady_ns(t, 2, 2, 1), 9, 1e-12);
}

/* The layers of a stage: DeepSeek-V3's 58 MoE layers over PP2 are 29 and
 * 29; the first stage also holds the 3 dense layers, the last the MTP
 * module. Over PP4: 15, 15, 14, 14. */
Test(cost, pipeline_stages) {
    int lo, hi;
    cost_stage_layers(dsv3(), 2, 1, &lo, &hi);
    cr_assert(lo == 29 && hi == 58);
    cost_stage_layers(dsv3(), 4, 2, &lo, &hi);
    cr_assert(lo == 30 && hi == 44, "%d %d", lo, hi);
    moe_model_t m = *dsv3();
    m.mtp_depth = 1;
    moe_model_t s0 = cost_stage_model(&m, 2, 0), s1 = cost_stage_model(&m, 2, 1);
    cr_assert(s0.n_dense == 3 && s0.n_layers == 32 && s0.mtp_depth == 0);
    cr_assert(s1.n_dense == 0 && s1.n_layers == 29 && s1.mtp_depth == 1);
    cr_assert_eq(moe_n_moe_layers(&s0) + moe_n_moe_layers(&s1), 58);
}

/* 16 H20 as TP8 x PP2, no MTP. Stage 0: embedding 129,280 x 7168 x 2 / 8
 * = 231,669,760; attention 32 layers x 187,105,280 / 8 = 748,421,120; dense
 * FFNs 3 x 3 x 7168 x 18432 / 8 = 148,635,648; shared experts (whole) 29 x
 * 44,040,192 = 1,277,165,568: 2,405,892,096 B. Stage 1: head 231,669,760 +
 * 29 x 23,388,160 + 1,277,165,568 = 2,187,091,968 B. KV: MLA's latent is
 * kept by every rank for the group's 8 x t sequences, on the stage's layers
 * (32 and 29). Routed: 256 experts over 8 devices, 32 slots a layer x 29
 * layers x 44,040,192 = 40.87 GB. Stage 0 at 16 sequences a device and KV
 * 4,096: 2.41 + 40.87 + 8 x 16 x 4096 x 1152 x 32 = 19.33 GB + 4 = 66.61
 * GB: fits 96 GB; at 40 a device 48.32 GB of KV: 95.60, fits; at 41
 * (49.53) it does not, and the message names the stage. */
Test(cost, memory_sharded) {
    const moe_model_t *m = dsv3();
    const hw_t *h20 = hw_find("H20");
    cost_shard_t s0 = {8, 2, 0}, s1 = {8, 2, 1};
    cr_assert_eq(cost_dense_bytes_sh(m, &s0), 2405892096.0);
    cr_assert_eq(cost_dense_bytes_sh(m, &s1), 2187091968.0);
    cr_assert_eq(cost_kv_bytes_sh(m, 16, 4096, &s0), 8.0 * 16 * 4096 * 1152 * 32);
    cr_assert_eq(cost_kv_bytes_sh(m, 16, 4096, &s1), 8.0 * 16 * 4096 * 1152 * 29);
    /* unsharded it is the old arithmetic */
    cost_shard_t one = {1, 1, 0};
    cr_assert_float_eq(cost_dense_bytes_sh(m, &one), moe_dense_weight_bytes(m), 1);
    cr_assert_eq(cost_kv_bytes_sh(m, 128, 4989, &one), cost_kv_bytes(m, 128, 4989));
    place_layout_t *lo = fx_layout(58, 256, 8, 8, 32);
    cr_assert_eq(cost_check_memory_sh(h20, m, lo, 16, 4096, &s0, "h20.ini"), MS_OK);
    cr_assert_eq(cost_check_memory_sh(h20, m, lo, 40, 4096, &s0, "h20.ini"), MS_OK);
    ms_err_quiet(1);
    cr_assert_eq(cost_check_memory_sh(h20, m, lo, 41, 4096, &s0, "h20.ini"), MS_ERR);
    const char *e = ms_err_last();
    cr_assert(strstr(e, "h20.ini: device memory does not fit on pipeline stage 0 of 2"), "%s", e);
    cr_assert(strstr(e, "attention tensor-parallel 8"), "%s", e);
    cr_assert(strstr(e, "49.53 GB KV cache"), "%s", e);
    /* without the pipeline one device holds all 58 layers' experts (81.74
     * GB): 4 sequences a device (9.21 GB of KV on 61 layers) no longer fit */
    cost_shard_t tp8 = {8, 1, 0};
    cr_assert_eq(cost_check_memory_sh(h20, m, lo, 4, 4096, &tp8, NULL), MS_ERR);
    cr_assert(strstr(ms_err_last(), "does not fit (attention tensor-parallel 8)"), "%s",
              ms_err_last());
    ms_err_quiet(0);
    place_layout_free(lo);
}
