/* cost: how long one device's kernels take, and whether a deployment fits
 * in HBM. Every kernel is a roofline: the larger of its FLOPs over the
 * achievable peak and its HBM bytes over the achievable bandwidth, plus a
 * fixed per-kernel cost; docs/cost-model.md derives a whole step from these.
 *
 * Units: times in ns (double; the step rounds to int64 when it schedules),
 * bytes in bytes, rates in bytes/s or FLOP/s. */
#ifndef MOESIM_COST_H
#define MOESIM_COST_H

#include "hw.h"
#include "moe.h"
#include "place.h"

/* Achievable FLOP/s for weights of the given element size (1: FP8/INT8, else
 * BF16) and achievable HBM bytes/s. */
double cost_peak(const hw_t *hw, int weight_bytes);
double cost_hbm_bw(const hw_t *hw);
/* max(flops / peak, bytes / bw) in ns. */
double cost_roofline_ns(double flops, double peak, double bytes, double bw);

/* HBM bytes one token moves through one routed expert besides the weights:
 * its hidden state in (dispatch dtype) and out (combine dtype), and the
 * gate/up output (2 x inter, BF16) written and read back. */
double cost_expert_act_bytes(const moe_model_t *m);
/* One routed expert's share of a grouped GEMM with n tokens (no kernel
 * cost): max(2*3*hidden*inter*n / peak, (weights + n * act) / bw). 0 for
 * n == 0: an idle expert's weights are not read. */
double cost_expert_ns(const hw_t *hw, const moe_model_t *m, double n);
/* The same before any measured curve: the pure roofline (what calibration
 * fits its curve against). */
double cost_expert_roofline_ns(const hw_t *hw, const moe_model_t *m, double n);
/* A device's routed experts: one grouped GEMM over the n[i] tokens of each
 * of its slots; the sum of cost_expert_ns plus one kernel_ns if any slot
 * has tokens. */
double cost_experts_ns(const hw_t *hw, const moe_model_t *m, const double *n, int n_slots);
/* One layer's attention for tokens tokens with mean KV length kv_len:
 * projections (2 * params FLOPs a token, weights read once) and the core
 * (moe_attn_core_flops a token and position; decode reads each token's KV
 * cache, prefill writes its own), one kernel_ns. */
double cost_attn_ns(const hw_t *hw, const moe_model_t *m, double tokens, double kv_len,
                    int prefill);
/* The same with q query tokens a sequence (decode with speculative drafts:
 * 1 + mtp_depth), each sequence's KV cache read once for all of them;
 * cost_attn_ns is q = 1. */
double cost_attn_q_ns(const hw_t *hw, const moe_model_t *m, double tokens, double kv_len,
                      int prefill, double q);
/* The shared experts of one MoE layer over the device's own tokens. */
double cost_shared_ns(const hw_t *hw, const moe_model_t *m, double tokens);
/* The dense FFN of one dense layer over the device's own tokens. */
double cost_dense_ffn_ns(const hw_t *hw, const moe_model_t *m, double tokens);
/* The output head (logits, BF16) over the device's own tokens. */
double cost_head_ns(const hw_t *hw, const moe_model_t *m, double tokens);
/* Everything before the first MoE layer: every dense layer's attention and
 * FFN (the embedding lookup is free). */
double cost_pre_ns(const hw_t *hw, const moe_model_t *m, double tokens, double kv_len,
                   int prefill);
double cost_pre_q_ns(const hw_t *hw, const moe_model_t *m, double tokens, double kv_len,
                     int prefill, double q);
/* An MTP module's projection eh_proj (2 x hidden -> hidden, the normed
 * hidden state and next-token embedding concatenated) over tokens tokens. */
double cost_mtp_proj_ns(const hw_t *hw, const moe_model_t *m, double tokens);

/* Calibration hooks: multiplicative corrections from measured curves
 * (hw->calib), 1 without them. tokens: of one expert; bytes: of one
 * device's all-to-all phase. */
double cost_gemm_factor(const hw_t *hw, int weight_bytes, double tokens);
double cost_a2a_factor(const hw_t *hw, double bytes);

/* KV-cache bytes per device: tokens sequences' worth of kv_len positions
 * each, over every layer (the held MTP block's included). */
double cost_kv_bytes(const moe_model_t *m, double tokens, double kv_len);
/* Weights on a device: the dense part every device holds plus its routed
 * expert slots over all MoE layers (and the held MTP block's, placed as the
 * last MoE layer's). */
double cost_device_weight_bytes(const moe_model_t *m, const place_layout_t *lo, int device);
/* Checks that weights (with redundant replicas) + kv_bytes + hw->mem_reserve
 * fit every device's HBM; the error gives the numbers and the fixes. where
 * names the config for the message (NULL: none). */
int cost_check_memory(const hw_t *hw, const moe_model_t *m, const place_layout_t *lo,
                      double kv_bytes, const char *where);

#endif
