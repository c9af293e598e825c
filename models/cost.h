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

/* The one expert-compute formula (issue 14): a device's routed experts run
 * as one grouped GEMM call over its active experts, taking
 *
 *   floor_ns + experts x expert_ns
 *     + smoothmax_sharp(compute, bytes / (eff_hbm x HBM))
 *
 * with bytes summed over the experts (weights read once per active expert
 * plus the activations) and smoothmax_p(a, b) = (a^p + b^p)^(1/p), a smooth
 * ridge between the memory- and compute-bound sides (sharp <= 0: the hard
 * max). compute is FLOPs / (eff_flops x peak), FLOPs 2 x 3 x hidden x inter
 * a token padded to the kernel's tiles; with the kernel's clusters known
 * and hw->sms given, it is counted in waves instead: each of the two GEMMs
 * (gate/up: 2 x inter columns over hidden; down: hidden over inter) hands
 * its clusters out over the slots, sms / ctas at a time, and a wave takes
 *
 *   cluster FLOPs x max(clusters in it, eff_flops x slots) / (eff_flops x peak)
 *
 * the larger of the GPU's sustained rate over the wave's work and one
 * cluster at its SMs' data-sheet peak (a wave of few clusters cannot run
 * faster than one of them). Full waves are the first term, so many waves
 * give FLOPs / (eff_flops x peak) again. A measured calibration
 * (models/calib.h) fits the five figures per dtype and GEMM implementation;
 * without one they are kernel_ns, 0, eff_flops, eff_hbm and the hard max,
 * and no tiles. The simulator's step, `moesim cost expert` and `moesim
 * calib report` all call cost_experts_par_ns. The figures: hw_gemm_t
 * (hw.h). */
/* (a^p + b^p)^(1/p) for a, b >= 0, computed without overflow; max(a, b)
 * for p <= 0. */
double cost_smoothmax(double a, double b, double p);
/* What a grouped GEMM call does, independent of the fitted figures. */
typedef struct cost_gemm_work {
    double experts;  /* active experts */
    double flops;    /* FLOPs computed: the tokens padded to whole tiles */
    double bytes;    /* HBM bytes: weights of the active experts, activations */
    double peak;     /* data-sheet FLOP/s of the dtype */
    double hbm_bw;   /* data-sheet HBM bytes/s */
    int n_gemm;      /* GEMMs counted in waves (2), or 0: flops over the whole GPU */
    double clusters[2];      /* clusters of output tiles of each GEMM */
    double slots[2];         /* clusters running at once (cost_persistent_clusters) */
    double share[2];         /* sms / ctas: a cluster's share of the GPU's peak
                              * (0: slots) */
    double cluster_flops[2]; /* FLOPs of one cluster */
} cost_gemm_work_t;
/* Clusters of ctas SMs a persistent SM90 CUTLASS kernel launches on sms
 * SMs when it is given no occupancy figure (torch's grouped GEMMs):
 * PersistentTileSchedulerSm90Params::get_grid_shape's rule, at most 18
 * SMs a GPC, each filled with whole clusters. 0 for no SMs. */
double cost_persistent_clusters(double sms, double ctas);
/* The formula on work w; 0 without active experts. */
double cost_gemm_ns(const hw_gemm_t *par, const cost_gemm_work_t *w);
/* The work of a device's routed experts with par's tiles (only the tile
 * figures of par are read): n[i] tokens on each of n_slots slots. */
void cost_experts_work(const hw_gemm_t *par, const hw_t *hw, const moe_model_t *m,
                       const double *n, int n_slots, cost_gemm_work_t *w);
/* The figures the simulator uses for weights of weight_bytes bytes on hw:
 * hw->calib's fit for that dtype when it has one, else the constants. */
hw_gemm_t cost_gemm_par_of(const hw_t *hw, int weight_bytes);
/* The tile configuration par's kernel runs a GEMM of n columns and depth k
 * in when given m tokens per local expert on average (hw_gemm_t); NULL:
 * the kernel has no tiles (no padding). */
const hw_tile_t *cost_gemm_config(const hw_gemm_t *par, double m, double n, double k);
/* A device's routed experts under par: one grouped GEMM over the n[i]
 * tokens of each of its n_slots slots (idle slots cost nothing). */
double cost_experts_par_ns(const hw_gemm_t *par, const hw_t *hw, const moe_model_t *m,
                           const double *n, int n_slots);
/* The same with cost_gemm_par_of(hw, m->weight_bytes): what the step charges. */
double cost_experts_ns(const hw_t *hw, const moe_model_t *m, const double *n, int n_slots);
/* experts active experts with tokens tokens each (the calculator, the
 * analytic serving estimate). */
double cost_experts_even_ns(const hw_t *hw, const moe_model_t *m, int experts, double tokens);
/* The pure roofline of one expert with n tokens (constant efficiencies, no
 * per-call cost): max(FLOPs / peak, bytes / bw). */
double cost_expert_roofline_ns(const hw_t *hw, const moe_model_t *m, double n);

/* The link model (issue 14) of one class of ports, scale-up or NIC: a
 * transfer pays lat_ns before it competes, then moves at the port's
 * bandwidth bw x ramp(bytes per peer) x (duplex while the other direction
 * is loaded too). ramp(s) = (s + low x half) / (s + half): NCCL-like
 * protocols move small messages at a fraction of the link (low) and reach
 * the peak only with many MiB per peer. The figures: hw_link_t (hw.h). */
hw_link_t cost_scaleup_link(const hw_t *hw);
hw_link_t cost_nic_link(const hw_t *hw);
/* bw(s) / peak for s bytes sent to one peer, in (0, 1]; 1 without a ramp. */
double cost_link_ramp(const hw_link_t *l, double bytes_per_peer);
/* Time of bytes over one port with bytes_per_peer to each peer, both
 * directions loaded (two_way) or one: lat + bytes / (bw x ramp x duplex).
 * 0 for no bytes. The analytic step and `moesim cost a2a` use it; the flow
 * mode gives the same for one transfer on an otherwise idle link. */
double cost_link_ns(const hw_link_t *l, double bytes, double bytes_per_peer, int two_way);

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

/* ---- attention parallelism (docs/cost-model.md section 13)
 *
 * How a deployment shards what is not a routed expert. tp devices (one
 * attention group, inside one scale-up domain) run attention, the dense
 * FFNs and the output head together over the group's batch, each with 1/tp
 * of the heads and weights, and all-reduce the hidden states after each
 * attention and dense FFN; tp = 1 is data-parallel attention, every device
 * on its own batch. pp stages each hold a slice of the layers on their own
 * devices (the first the dense layers and the embedding, the last the head
 * and the MTP module); the MoE layers of a stage run expert-parallel over
 * its devices. Shared experts stay on each device's own tokens. */
typedef struct cost_shard {
    int tp;    /* attention tensor-parallel degree; 1: data-parallel attention */
    int pp;    /* pipeline stages; 1: none */
    int stage; /* which stage a figure is for, 0 .. pp - 1 */
} cost_shard_t;

/* MoE layers of stage of pp: [*lo, *hi), the model's MoE layers split as
 * evenly as they go, earlier stages taking the remainder. */
void cost_stage_layers(const moe_model_t *m, int pp, int stage, int *lo, int *hi);
/* The model a stage runs: its dense layers (stage 0 only), its MoE layers,
 * and the MTP module on the last stage only. The output head is the last
 * stage's too, which the step charges (the model has no field for it). */
moe_model_t cost_stage_model(const moe_model_t *m, int pp, int stage);
/* A ring all-reduce of bytes (each member's whole buffer) over n devices
 * on one class of ports: 2 (n - 1) steps, each sending bytes / n to the
 * next device while receiving from the previous (both directions loaded),
 * each paying the link's latency and ramp. 0 for n <= 1. */
double cost_allreduce_ns(const hw_link_t *l, double bytes, int n);
/* Attention of one device of a tp-wide group over the group's batch of
 * group_tokens: projections and core split by heads (FLOPs / tp, weights
 * / tp); the KV cache read is the group's, per device: MLA's latent is
 * shared by all heads, so every rank reads all of it; GQA's KV heads split
 * (moe_kv_bytes_per_token_tp). tp = 1: cost_attn_q_ns. No all-reduce. */
double cost_attn_tp_ns(const hw_t *hw, const moe_model_t *m, double group_tokens,
                       double kv_len, int prefill, double q, int tp);
/* KV bytes per token and layer one rank of a tp group keeps: MLA's latent
 * whole, GQA's KV heads split (ceil(kv_heads / tp) each). */
double cost_kv_bytes_per_token_tp(const moe_model_t *m, int tp);
/* A dense FFN layer and the output head split tp ways over group_tokens. */
double cost_dense_ffn_tp_ns(const hw_t *hw, const moe_model_t *m, double group_tokens, int tp);
double cost_head_tp_ns(const hw_t *hw, const moe_model_t *m, double group_tokens, int tp);
/* The dense layers before the first MoE layer on one device of a tp group:
 * per layer attention + all-reduce + FFN + all-reduce (the all-reduces on
 * ar, the group's links; none when tp = 1). */
double cost_pre_tp_ns(const hw_t *hw, const moe_model_t *m, double group_tokens, double kv_len,
                      int prefill, double q, int tp, const hw_link_t *ar);
/* A pipeline of pp stages and mb micro-batches: stage_ns[s * mb + j] is
 * micro-batch j's time on stage s, send_ns the hand-over between stages.
 * Stage s starts j when it has finished j - 1 and j has arrived from s - 1
 * (GPipe's schedule, from an empty pipeline): the time the last
 * micro-batch leaves the last stage. Uniform stages of t take
 * (mb + pp - 1) t + (pp - 1) send: a bubble of (pp - 1) (t + send). */
double cost_pipeline_ns(const double *stage_ns, int pp, int mb, double send_ns);
/* The same pipeline kept full, as decode runs it: every micro-batch goes
 * round again (its next token) as soon as it leaves the last stage and its
 * sampled token is back at the first (one more hand-over). The period is
 * the larger of the busiest stage's work, sum over j of stage_ns[s][j],
 * and the slowest micro-batch's round, sum over s of stage_ns[s][j] + pp
 * hand-overs: exact for uniform stages, where it is max(mb t, pp (t +
 * send)); no bubble once mb >= pp (t + send) / t, a bubble of pp (t +
 * send) - mb t below. */
double cost_pipeline_steady_ns(const double *stage_ns, int pp, int mb, double send_ns);
/* KV bytes one device of stage sh->stage keeps for tokens sequences a
 * device of kv_len positions: its stage's layers (the MTP block's on the
 * last), tp x tokens sequences of its group at cost_kv_bytes_per_token_tp. */
double cost_kv_bytes_sh(const moe_model_t *m, double tokens, double kv_len,
                        const cost_shard_t *sh);
/* Weights one device of stage sh->stage holds besides its routed experts:
 * embedding (first stage) and head (last) and its layers' attention and
 * dense FFNs, each / tp; its MoE layers' shared experts whole; the MTP
 * module's projection, attention / tp and shared experts (last stage). */
double cost_dense_bytes_sh(const moe_model_t *m, const cost_shard_t *sh);
/* cost_check_memory for every stage of sh->pp (sh->stage ignored): stage
 * s holds lo's routed slots of its MoE layers (lo spans all MoE layers over
 * one stage's devices), the weights above and cost_kv_bytes_sh(tokens,
 * kv_len). tp = pp = 1 is cost_check_memory with cost_kv_bytes. */
int cost_check_memory_sh(const hw_t *hw, const moe_model_t *m, const place_layout_t *lo,
                         double tokens, double kv_len, const cost_shard_t *sh,
                         const char *where);

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
