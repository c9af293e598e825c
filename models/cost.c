/* cost: rooflines of the kernels of a step, and the HBM capacity check.
 * Norms, the router's gate and element-wise kernels are left out: next to
 * the GEMMs and the KV reads they are a few percent, and kernel_ns covers
 * launch and tail effects per kernel. Routed experts and all-to-all links
 * have measured forms (cost_gemm_ns, cost_link_ns) that models/calib.c fits
 * and `moesim calib report` checks. */
#include "cost.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "calib_curve.h"
#include "util.h"

double cost_peak(const hw_t *hw, int weight_bytes) {
    return (weight_bytes == 1 ? hw->flops_fp8 : hw->flops_bf16) * hw->eff_flops;
}

double cost_hbm_bw(const hw_t *hw) { return hw->hbm_bw * hw->eff_hbm; }

double cost_roofline_ns(double flops, double peak, double bytes, double bw) {
    return 1e9 * ms_dmax(flops / peak, bytes / bw);
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

double cost_smoothmax(double a, double b, double p) {
    double hi = ms_dmax(a, b), lo = ms_dmin(a, b);
    if (p <= 0 || hi <= 0) return hi;
    /* hi x (1 + (lo/hi)^p)^(1/p): no overflow for large p */
    return hi * pow(1.0 + pow(lo / hi, p), 1.0 / p);
}

double cost_gemm_ns(const hw_gemm_t *par, const cost_gemm_work_t *w) {
    if (w->experts <= 0) return 0;
    double flops = w->flops;
    if (w->n_gemm) {
        /* waves: a partial wave is charged as at least eff_flops x slots
         * clusters, i.e. no cluster runs above its SMs' data-sheet peak */
        flops = 0;
        for (int g = 0; g < w->n_gemm; g++) {
            double s = w->slots[g], full = floor(w->clusters[g] / s);
            double share = w->share[g] > 0 ? w->share[g] : s;
            double rest = w->clusters[g] - full * s, least = par->eff_flops * share;
            flops += w->cluster_flops[g] *
                     (full * ms_dmax(s, least) + (rest > 0 ? ms_dmax(rest, least) : 0));
        }
    }
    double tc = 1e9 * flops / (par->eff_flops * w->peak);
    double tm = 1e9 * w->bytes / (par->eff_hbm * w->hbm_bw);
    return par->floor_ns + w->experts * par->expert_ns + cost_smoothmax(tc, tm, par->sharp);
}

hw_gemm_t cost_gemm_par_of(const hw_t *hw, int weight_bytes) {
    const hw_gemm_t *p = hw->calib ? calib_gemm_par(hw->calib, NULL, weight_bytes) : NULL;
    if (p) return *p;
    return (hw_gemm_t){.floor_ns = hw->kernel_ns, .expert_ns = 0,
                             .eff_flops = hw->eff_flops, .eff_hbm = hw->eff_hbm, .sharp = 0};
}

double cost_persistent_clusters(double sms, double ctas) {
    /* CUTLASS's SM90 persistent grid without an occupancy query (torch's
     * grouped GEMMs give it only the SM count): it takes a GPC to hold at
     * most 18 SMs and fills each with whole clusters, the remainder GPC
     * too; 132 SMs: 66 clusters of 2, 29 of 4 (116 SMs) */
    if (!(sms >= 1) || !(ctas >= 1)) return 0;
    const double gpc = 18;
    double full = sms < gpc ? 1 : floor(sms / gpc), rest = sms < gpc ? 0 : fmod(sms, gpc);
    double c = full * (gpc - fmod(gpc, ctas)) + rest - fmod(rest, ctas);
    return floor(ms_dmin(c, sms) / ctas);
}

const hw_tile_t *cost_gemm_config(const hw_gemm_t *par, double m, double n, double k) {
    if (par->tile[0].rows <= 1) return NULL;
    if (m <= par->small_max || n <= par->small_max) return &par->tile[0];
    double lm = par->large_min;
    int large = lm <= 0 || (m >= lm && k >= lm) || (m >= lm && n >= lm) || (k >= lm && n >= lm);
    return &par->tile[large ? 2 : 1];
}

void cost_experts_work(const hw_gemm_t *par, const hw_t *hw, const moe_model_t *m,
                       const double *n, int n_slots, cost_gemm_work_t *w) {
    /* the step calls this for every device, layer and micro-batch: only
     * the fields every path reads are cleared here, the wave figures where
     * they are set */
    w->experts = w->flops = 0;
    w->n_gemm = 0;
    double tokens = 0;
    for (int i = 0; i < n_slots; i++)
        if (n[i] > 0) {
            tokens += n[i];
            w->experts++;
        }
    w->peak = m->weight_bytes == 1 ? hw->flops_fp8 : hw->flops_bf16;
    w->hbm_bw = hw->hbm_bw;
    w->bytes = 0;
    if (!w->experts) return;
    w->bytes = w->experts * moe_expert_bytes(m) + tokens * cost_expert_act_bytes(m);
    /* gate/up: 2 x inter columns, depth hidden; down: hidden columns, depth
     * inter. The kernel picks a configuration per GEMM from the mean rows
     * over all the groups it is given (torch: total rows / local experts). */
    double h = m->hidden, f = m->moe_inter, mean = tokens / n_slots;
    const double cols[2] = {2 * f, h}, depth[2] = {h, f};
    if (par->tile[0].rows <= 1) { /* no tiles (cost_gemm_config's NULL): no padding */
        w->flops = 2.0 * tokens * cols[0] * depth[0];
        w->flops += 2.0 * tokens * cols[1] * depth[1];
        return;
    }
    int waves = hw->sms > 0;
    for (int g = 0; g < 2; g++) {
        const hw_tile_t *t = cost_gemm_config(par, mean, cols[g], depth[g]); /* not NULL: tiles */
        /* padded rows cost tensor-core time, not HBM bytes (the tile's rows
         * past the tokens are never loaded) */
        double tiles = 0;
        for (int i = 0; i < n_slots; i++)
            if (n[i] > 0) tiles += ceil(n[i] / t->rows);
        double slots = cost_persistent_clusters(hw->sms, t->ctas);
        if (t->cols >= 1 && slots >= 1) {
            w->clusters[g] = tiles * ceil(cols[g] / t->cols);
            w->slots[g] = slots;
            w->share[g] = hw->sms / t->ctas;
            w->cluster_flops[g] = 2.0 * t->rows * t->cols * depth[g];
            w->flops += w->clusters[g] * w->cluster_flops[g];
        } else {
            w->flops += 2.0 * tiles * t->rows * cols[g] * depth[g];
            waves = 0;
        }
    }
    w->n_gemm = waves ? 2 : 0;
}

double cost_experts_par_ns(const hw_gemm_t *par, const hw_t *hw, const moe_model_t *m,
                           const double *n, int n_slots) {
    cost_gemm_work_t w;
    cost_experts_work(par, hw, m, n, n_slots, &w);
    return cost_gemm_ns(par, &w);
}

double cost_experts_ns(const hw_t *hw, const moe_model_t *m, const double *n, int n_slots) {
    hw_gemm_t par = cost_gemm_par_of(hw, m->weight_bytes);
    return cost_experts_par_ns(&par, hw, m, n, n_slots);
}

double cost_experts_even_ns(const hw_t *hw, const moe_model_t *m, int experts, double tokens) {
    if (experts <= 0 || tokens <= 0) return 0;
    double *n = ms_malloc((size_t)experts * sizeof *n);
    for (int i = 0; i < experts; i++) n[i] = tokens;
    double t = cost_experts_ns(hw, m, n, experts);
    free(n);
    return t;
}

/* ---- links */

/* A derating of 0 (a hardware description that leaves it unset) means
 * none, as does a ramp without a half point. */
static hw_link_t link_of(double bw, double lat, double half, double low, double duplex) {
    return (hw_link_t){bw, lat, half > 0 ? half : 0, half > 0 ? low : 1,
                         duplex > 0 && duplex <= 1 ? duplex : 1};
}

hw_link_t cost_scaleup_link(const hw_t *hw) {
    return link_of(hw->scaleup_bw * hw->eff_scaleup, hw->scaleup_lat_ns, hw->scaleup_half_bytes,
                   hw->scaleup_low_share, hw->scaleup_duplex);
}

hw_link_t cost_nic_link(const hw_t *hw) {
    return link_of(hw->nic_bw * hw->eff_nic, hw->nic_lat_ns, hw->nic_half_bytes,
                   hw->nic_low_share, hw->nic_duplex);
}

double cost_link_ramp(const hw_link_t *l, double s) {
    if (l->half_bytes <= 0 || s < 0) return 1.0;
    return (s + l->low_share * l->half_bytes) / (s + l->half_bytes);
}

double cost_link_ns(const hw_link_t *l, double bytes, double bytes_per_peer, int two_way) {
    if (bytes <= 0) return 0;
    double bw = l->bw * cost_link_ramp(l, bytes_per_peer) * (two_way ? l->duplex : 1.0);
    return l->lat_ns + 1e9 * bytes / bw;
}

double cost_kv_bytes_per_token_tp(const moe_model_t *m, int tp) {
    if (m->attn != MOE_ATTN_GQA || tp <= 1) return moe_kv_bytes_per_token(m);
    /* KV heads split over the group; fewer heads than ranks are replicated */
    int heads = (m->n_kv_heads + tp - 1) / tp;
    return 2.0 * heads * m->head_dim * m->kv_bytes;
}

double cost_attn_tp_ns(const hw_t *hw, const moe_model_t *m, double t, double kv_len,
                       int prefill, double q, int tp) {
    if (t <= 0) return 0;
    double P = moe_attn_params(m), h = m->hidden, bw = cost_hbm_bw(hw), n = tp > 1 ? tp : 1;
    /* each rank reads the group's whole input and writes a partial sum of
     * the whole output: the activations do not shrink with tp */
    double proj = cost_roofline_ns(2.0 * P * t / n, cost_peak(hw, m->dense_bytes),
                                   P * m->dense_bytes / n + 4.0 * h * t, bw);
    double kv = cost_kv_bytes_per_token_tp(m, tp);
    /* decode reads each sequence's cache once for its q query tokens */
    double core = cost_roofline_ns(t * kv_len * moe_attn_core_flops(m, prefill) / n,
                                   cost_peak(hw, 2), t * kv * (prefill ? 1.0 : kv_len / q), bw);
    return proj + core + hw->kernel_ns;
}

double cost_attn_q_ns(const hw_t *hw, const moe_model_t *m, double t, double kv_len,
                      int prefill, double q) {
    return cost_attn_tp_ns(hw, m, t, kv_len, prefill, q, 1);
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

double cost_dense_ffn_tp_ns(const hw_t *hw, const moe_model_t *m, double t, int tp) {
    if (t <= 0) return 0;
    return ffn_ns(hw, m, m->dense_inter / (double)(tp > 1 ? tp : 1), t) + hw->kernel_ns;
}

double cost_dense_ffn_ns(const hw_t *hw, const moe_model_t *m, double t) {
    return cost_dense_ffn_tp_ns(hw, m, t, 1);
}

double cost_head_tp_ns(const hw_t *hw, const moe_model_t *m, double t, int tp) {
    if (t <= 0) return 0;
    /* vocabulary-parallel: each rank holds vocab / tp rows of the head */
    double v = m->vocab / (double)(tp > 1 ? tp : 1), hv = (double)m->hidden * v;
    return cost_roofline_ns(2.0 * hv * t, cost_peak(hw, m->embed_bytes),
                            hv * m->embed_bytes + 4.0 * v * t, cost_hbm_bw(hw)) +
           hw->kernel_ns;
}

double cost_head_ns(const hw_t *hw, const moe_model_t *m, double t) {
    return cost_head_tp_ns(hw, m, t, 1);
}

double cost_pre_q_ns(const hw_t *hw, const moe_model_t *m, double t, double kv_len,
                     int prefill, double q) {
    if (t <= 0) return 0;
    return m->n_dense *
           (cost_attn_q_ns(hw, m, t, kv_len, prefill, q) + cost_dense_ffn_ns(hw, m, t));
}

double cost_pre_tp_ns(const hw_t *hw, const moe_model_t *m, double t, double kv_len,
                      int prefill, double q, int tp, const hw_link_t *ar) {
    if (t <= 0) return 0;
    double red = tp > 1 && ar ? cost_allreduce_ns(ar, t * m->hidden * 2.0, tp) : 0;
    return m->n_dense * (cost_attn_tp_ns(hw, m, t, kv_len, prefill, q, tp) + red +
                         cost_dense_ffn_tp_ns(hw, m, t, tp) + red);
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

/* ---- attention parallelism */

void cost_stage_layers(const moe_model_t *m, int pp, int stage, int *lo, int *hi) {
    int L = moe_n_moe_layers(m), n = pp > 1 ? pp : 1, base = L / n, rem = L % n;
    *lo = stage * base + (stage < rem ? stage : rem);
    *hi = *lo + base + (stage < rem);
}

moe_model_t cost_stage_model(const moe_model_t *m, int pp, int stage) {
    moe_model_t s = *m;
    int lo, hi;
    cost_stage_layers(m, pp, stage, &lo, &hi);
    s.n_dense = stage == 0 ? m->n_dense : 0;
    s.n_layers = s.n_dense + hi - lo;
    if (stage != (pp > 1 ? pp : 1) - 1) s.mtp_depth = 0; /* the MTP module sits by the head */
    return s;
}

double cost_allreduce_ns(const hw_link_t *l, double bytes, int n) {
    if (n <= 1 || bytes <= 0) return 0;
    double chunk = bytes / n;
    return 2.0 * (n - 1) * cost_link_ns(l, chunk, chunk, 1);
}

double cost_pipeline_ns(const double *t, int pp, int mb, double send_ns) {
    if (pp < 1 || mb < 1) return 0;
    /* fin[j]: when stage s (the row being filled) finished micro-batch j */
    double *fin = ms_malloc((size_t)mb * sizeof *fin), end = 0;
    for (int s = 0; s < pp; s++) {
        double prev = 0; /* stage s finished j - 1 */
        for (int j = 0; j < mb; j++) {
            double arrive = s ? fin[j] + send_ns : 0;
            fin[j] = ms_dmax(prev, arrive) + t[(size_t)s * mb + j];
            prev = fin[j];
        }
        end = prev;
    }
    free(fin);
    return end;
}

double cost_pipeline_steady_ns(const double *t, int pp, int mb, double send_ns) {
    if (pp < 1 || mb < 1) return 0;
    double period = 0;
    for (int s = 0; s < pp; s++) { /* the busiest stage */
        double w = 0;
        for (int j = 0; j < mb; j++) w += t[(size_t)s * mb + j];
        period = ms_dmax(period, w);
    }
    for (int j = 0; j < mb; j++) { /* the slowest round */
        double r = pp * send_ns;
        for (int s = 0; s < pp; s++) r += t[(size_t)s * mb + j];
        period = ms_dmax(period, r);
    }
    return period;
}

double cost_kv_bytes_sh(const moe_model_t *m, double tokens, double kv_len,
                        const cost_shard_t *sh) {
    moe_model_t s = cost_stage_model(m, sh->pp, sh->stage);
    double tp = sh->tp > 1 ? sh->tp : 1;
    return tp * tokens * kv_len * cost_kv_bytes_per_token_tp(m, sh->tp) * moe_kv_layers(&s);
}

double cost_dense_bytes_sh(const moe_model_t *m, const cost_shard_t *sh) {
    moe_model_t s = cost_stage_model(m, sh->pp, sh->stage);
    double h = m->hidden, tp = sh->tp > 1 ? sh->tp : 1, db = m->dense_bytes;
    int first = sh->stage == 0, last = sh->stage == (sh->pp > 1 ? sh->pp : 1) - 1;
    double embed = (first + last) * (double)m->vocab * h * m->embed_bytes / tp;
    double attn = s.n_layers * moe_attn_params(m) * db / tp;
    double dense = s.n_dense * 3.0 * h * m->dense_inter * db / tp;
    double shared = moe_n_moe_layers(&s) * (double)m->n_shared * 3.0 * h * m->shared_inter * db;
    double mtp = moe_mtp_held(&s) * (2.0 * h * h + moe_attn_params(m) / tp +
                                     (double)m->n_shared * 3.0 * h * m->shared_inter) * db;
    return embed + attn + dense + shared + mtp;
}

int cost_check_memory_sh(const hw_t *hw, const moe_model_t *m, const place_layout_t *lo,
                         double tokens, double kv_len, const cost_shard_t *sh,
                         const char *where) {
    int pp = sh->pp > 1 ? sh->pp : 1, tp = sh->tp > 1 ? sh->tp : 1;
    if (pp == 1 && tp == 1)
        return cost_check_memory(hw, m, lo, cost_kv_bytes(m, tokens, kv_len), where);
    for (int st = 0; st < pp; st++) {
        cost_shard_t one = {tp, pp, st};
        moe_model_t s = cost_stage_model(m, pp, st);
        int l0, l1;
        cost_stage_layers(m, pp, st, &l0, &l1);
        double slots = 0;
        for (int l = l0; l < l1; l++) slots += lo->layer[l].slots_per_device;
        slots += mtp_slots(&s, lo);
        double dense = cost_dense_bytes_sh(m, &one), routed = slots * moe_expert_bytes(m);
        double kv = cost_kv_bytes_sh(m, tokens, kv_len, &one);
        double need = dense + routed + kv + hw->mem_reserve;
        if (need <= hw->hbm_bytes) continue;
        char on[64] = "";
        if (pp > 1) snprintf(on, sizeof on, " on pipeline stage %d of %d", st, pp);
        return ms_err("%s%sdevice memory does not fit%s (attention tensor-parallel %d): %.2f GB "
                      "weights (%.2f GB attention, dense layers, "
                      "shared experts and embeddings + %.2f GB for %.0f routed expert slots of "
                      "%.1f MB) + %.2f GB KV cache + %.2f GB reserve = %.2f GB > %.2f GB HBM of "
                      "%s (use fewer redundant experts, a smaller batch or KV length, more "
                      "devices or pipeline stages, or a device with more memory)",
                      where ? where : "", where ? ": " : "", on, tp, (dense + routed) / 1e9,
                      dense / 1e9, routed / 1e9, slots, moe_expert_bytes(m) / 1e6, kv / 1e9,
                      hw->mem_reserve / 1e9, need / 1e9, hw->hbm_bytes / 1e9, hw->name);
    }
    return MS_OK;
}
