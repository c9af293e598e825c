/* cost: rooflines of the kernels of a step, and the HBM capacity check.
 * Norms, the router's gate and element-wise kernels are left out: next to
 * the GEMMs and the KV reads they are a few percent, and kernel_ns covers
 * launch and tail effects per kernel. */
#include "cost.h"

#include <stdio.h>

#include "calib_curve.h"
#include "util.h"

double cost_peak(const hw_t *hw, int weight_bytes) {
    return (weight_bytes == 1 ? hw->flops_fp8 : hw->flops_bf16) * hw->eff_flops;
}

double cost_hbm_bw(const hw_t *hw) { return hw->hbm_bw * hw->eff_hbm; }

double cost_roofline_ns(double flops, double peak, double bytes, double bw) {
    return 1e9 * ms_dmax(flops / peak, bytes / bw);
}

/* A measured curve (models/calib) scales the roofline of each expert by
 * measured/modelled time at its token count; 1 without one. The fitted
 * per-expert fixed cost is not added: it was measured on one kernel chain
 * per expert, while the step models one grouped GEMM (kernel_ns a device). */
double cost_gemm_factor(const hw_t *hw, int weight_bytes, double tokens) {
    return hw->calib ? calib_gemm_factor_wb(hw->calib, weight_bytes, tokens) : 1.0;
}

double cost_a2a_factor(const hw_t *hw, double bytes) {
    return hw->calib ? calib_a2a_factor(hw->calib, bytes) : 1.0;
}

double cost_expert_act_bytes(const moe_model_t *m) {
    return m->hidden * (double)(m->dispatch_bytes + m->combine_bytes) + 8.0 * m->moe_inter;
}

double cost_expert_roofline_ns(const hw_t *hw, const moe_model_t *m, double n) {
    if (n <= 0) return 0;
    double flops = 6.0 * m->hidden * (double)m->moe_inter * n;
    double bytes = moe_expert_bytes(m) + n * cost_expert_act_bytes(m);
    return cost_roofline_ns(flops, cost_peak(hw, m->weight_bytes), bytes, cost_hbm_bw(hw));
}

double cost_expert_ns(const hw_t *hw, const moe_model_t *m, double n) {
    return cost_expert_roofline_ns(hw, m, n) * cost_gemm_factor(hw, m->weight_bytes, n);
}

double cost_experts_ns(const hw_t *hw, const moe_model_t *m, const double *n, int n_slots) {
    double t = 0;
    int any = 0;
    for (int i = 0; i < n_slots; i++)
        if (n[i] > 0) {
            t += cost_expert_ns(hw, m, n[i]);
            any = 1;
        }
    return any ? t + hw->kernel_ns : 0;
}

double cost_attn_q_ns(const hw_t *hw, const moe_model_t *m, double t, double kv_len,
                      int prefill, double q) {
    if (t <= 0) return 0;
    double P = moe_attn_params(m), h = m->hidden, bw = cost_hbm_bw(hw);
    double proj = cost_roofline_ns(2.0 * P * t, cost_peak(hw, m->dense_bytes),
                                   P * m->dense_bytes + 4.0 * h * t, bw);
    double kv = moe_kv_bytes_per_token(m);
    /* decode reads each sequence's cache once for its q query tokens */
    double core = cost_roofline_ns(t * kv_len * moe_attn_core_flops(m, prefill),
                                   cost_peak(hw, 2), t * kv * (prefill ? 1.0 : kv_len / q), bw);
    return proj + core + hw->kernel_ns;
}

double cost_attn_ns(const hw_t *hw, const moe_model_t *m, double t, double kv_len, int prefill) {
    return cost_attn_q_ns(hw, m, t, kv_len, prefill, 1);
}

/* A SwiGLU FFN of intermediate size inter over t tokens, weights of wb
 * bytes an element, BF16 activations. */
static double ffn_ns(const hw_t *hw, const moe_model_t *m, double inter, double t) {
    double h = m->hidden;
    return cost_roofline_ns(6.0 * h * inter * t, cost_peak(hw, m->dense_bytes),
                            3.0 * h * inter * m->dense_bytes + t * (4.0 * h + 8.0 * inter),
                            cost_hbm_bw(hw));
}

double cost_shared_ns(const hw_t *hw, const moe_model_t *m, double t) {
    if (t <= 0 || m->n_shared <= 0) return 0;
    return m->n_shared * ffn_ns(hw, m, m->shared_inter, t) + hw->kernel_ns;
}

double cost_dense_ffn_ns(const hw_t *hw, const moe_model_t *m, double t) {
    if (t <= 0) return 0;
    return ffn_ns(hw, m, m->dense_inter, t) + hw->kernel_ns;
}

double cost_head_ns(const hw_t *hw, const moe_model_t *m, double t) {
    if (t <= 0) return 0;
    double hv = (double)m->hidden * m->vocab;
    return cost_roofline_ns(2.0 * hv * t, cost_peak(hw, m->embed_bytes),
                            hv * m->embed_bytes + 4.0 * m->vocab * t, cost_hbm_bw(hw)) +
           hw->kernel_ns;
}

double cost_pre_q_ns(const hw_t *hw, const moe_model_t *m, double t, double kv_len,
                     int prefill, double q) {
    if (t <= 0) return 0;
    return m->n_dense *
           (cost_attn_q_ns(hw, m, t, kv_len, prefill, q) + cost_dense_ffn_ns(hw, m, t));
}

double cost_pre_ns(const hw_t *hw, const moe_model_t *m, double t, double kv_len, int prefill) {
    return cost_pre_q_ns(hw, m, t, kv_len, prefill, 1);
}

double cost_mtp_proj_ns(const hw_t *hw, const moe_model_t *m, double t) {
    if (t <= 0) return 0;
    double h = m->hidden;
    return cost_roofline_ns(2.0 * 2.0 * h * h * t, cost_peak(hw, m->dense_bytes),
                            2.0 * h * h * m->dense_bytes + t * (4.0 * h + 2.0 * h),
                            cost_hbm_bw(hw)) +
           hw->kernel_ns;
}

double cost_kv_bytes(const moe_model_t *m, double tokens, double kv_len) {
    return tokens * kv_len * moe_kv_bytes_per_token(m) * moe_kv_layers(m);
}

/* The MTP block's routed experts are spread as the last MoE layer's are
 * (its layout serves the block: sim/step.c). */
static double mtp_slots(const moe_model_t *m, const place_layout_t *lo) {
    return moe_mtp_held(m) * (double)lo->layer[lo->n_layers - 1].slots_per_device;
}

double cost_device_weight_bytes(const moe_model_t *m, const place_layout_t *lo, int device) {
    (void)device; /* every device of a layer holds slots_per_device slots */
    double slots = 0;
    for (int l = 0; l < lo->n_layers; l++) slots += lo->layer[l].slots_per_device;
    slots += mtp_slots(m, lo);
    return moe_dense_weight_bytes(m) + slots * moe_expert_bytes(m);
}

int cost_check_memory(const hw_t *hw, const moe_model_t *m, const place_layout_t *lo,
                      double kv_bytes, const char *where) {
    double slots = 0;
    for (int l = 0; l < lo->n_layers; l++) slots += lo->layer[l].slots_per_device;
    slots += mtp_slots(m, lo);
    double dense = moe_dense_weight_bytes(m), routed = slots * moe_expert_bytes(m);
    double need = dense + routed + kv_bytes + hw->mem_reserve;
    if (need <= hw->hbm_bytes) return MS_OK;
    return ms_err("%s%sdevice memory does not fit: %.2f GB weights (%.2f GB attention, dense "
                  "layers, shared experts and embeddings + %.2f GB for %.0f routed expert slots "
                  "of %.1f MB) + %.2f GB KV cache + %.2f GB reserve = %.2f GB > %.2f GB HBM of "
                  "%s (use fewer redundant experts, a smaller batch or KV length, more devices, "
                  "or a device with more memory)",
                  where ? where : "", where ? ": " : "", (dense + routed) / 1e9, dense / 1e9,
                  routed / 1e9, slots, moe_expert_bytes(m) / 1e6, kv_bytes / 1e9,
                  hw->mem_reserve / 1e9, need / 1e9, hw->hbm_bytes / 1e9, hw->name);
}
