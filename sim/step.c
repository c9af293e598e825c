/* step: one step of the cluster, the entry of the step simulator: its
 * state (step_new), the compute each device is charged, and step_run, which
 * builds the traffic (step_traffic.c) and times it in closed form
 * (step_analytic.c) or as events (step_flow.c); step_int.h is what they
 * share. */
#include "step_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "step_pipe.h"

const char *step_mode_name(enum step_mode m) { return m == STEP_ANALYTIC ? "analytic" : "flow"; }

const char *step_a2a_name(enum step_a2a a) {
    return a == STEP_A2A_NORMAL ? "normal" : a == STEP_A2A_LOW_LATENCY ? "low_latency" : "auto";
}

step_sim_t *step_new(const cluster_t *c, const moe_model_t *m) {
    step_sim_t *s = ms_calloc(1, sizeof *s);
    s->c = *c;
    s->m = *m;
    if (cluster_pp(c) > 1) {
        s->pipe = step_pipe_new(c, m);
        return s;
    }
    s->D = c->n_devices;
    /* links: NVLink/UB inside a scale-up domain, NICs between domains; the
     * step's "node" is the domain */
    s->dpn = cluster_domain(c);
    s->N = s->D / s->dpn;
    s->Lm = moe_n_moe_layers(m);
    s->Lmax = s->L = s->Lm + ms_imax(moe_mtp_passes(m, 0), moe_mtp_passes(m, 1));
    s->E = m->n_experts;
    s->M = c->overlap ? 2 : 1;
    s->ov_comp = c->overlap ? c->hw.overlap_compute : 1;
    s->ov_comm = c->overlap ? c->hw.overlap_comm : 1;
    size_t D = (size_t)s->D, L = (size_t)s->L, M = (size_t)s->M, N = (size_t)s->N;
    s->exp_ns = ms_malloc(M * L * D * sizeof *s->exp_ns);
    s->tok = ms_malloc(M * D * sizeof *s->tok);
    s->attn_ns = ms_malloc(M * D * sizeof *s->attn_ns);
    s->shared_ns = ms_malloc(M * D * sizeof *s->shared_ns);
    s->pre_ns = ms_malloc(M * D * sizeof *s->pre_ns);
    s->post_ns = ms_malloc(M * D * sizeof *s->post_ns);
    s->peer = ms_malloc(M * L * 2 * sizeof *s->peer);
    s->lk[NVL] = cost_scaleup_link(&c->hw);
    s->lk[NIC] = cost_nic_link(&c->hw);
    s->dev_load = ms_malloc(L * D * sizeof *s->dev_load);
    s->expert_load = ms_malloc(L * (size_t)s->E * sizeof *s->expert_load);
    s->layer_end = ms_malloc(L * sizeof *s->layer_end);
    s->layer_ns = ms_malloc(L * sizeof *s->layer_ns);
    s->pl = ms_malloc((D + N + 4) * sizeof *s->pl);
    s->pw = ms_malloc((D + N + 4) * sizeof *s->pw);
    s->nodes = ms_malloc(N * sizeof *s->nodes);
    s->dstamp = ms_calloc(D, sizeof *s->dstamp);
    s->nstamp = ms_calloc(N, sizeof *s->nstamp);
    s->seen = ms_malloc(D * sizeof *s->seen);
    s->cps = ms_malloc(D * sizeof *s->cps);
    s->fast = ms_malloc((size_t)s->E * sizeof *s->fast);
    s->dev_node = ms_malloc(D * sizeof *s->dev_node);
    for (size_t d = 0; d < D; d++) s->dev_node[d] = (int)d / s->dpn;
    s->q = ms_malloc(D * sizeof *s->q);
    s->qn = ms_malloc(N * sizeof *s->qn);
    s->eng = eng_new();
    if (c->mode == STEP_FLOW) {
        const hw_t *hw = &c->hw;
        s->net = net_new(s->eng);
        double nvl = hw->scaleup_bw * hw->eff_scaleup, nic = hw->nic_bw * hw->eff_nic;
        s->l_nvo = net_n_links(s->net);
        for (size_t d = 0; d < D; d++) net_add_link(s->net, nvl);
        s->l_nvi = net_n_links(s->net);
        for (size_t d = 0; d < D; d++) net_add_link(s->net, nvl);
        s->l_nico = net_n_links(s->net);
        for (size_t d = 0; d < D; d++) net_add_link(s->net, nic);
        s->l_nici = net_n_links(s->net);
        for (size_t d = 0; d < D; d++) net_add_link(s->net, nic);
        /* a device's out and in ports are the two directions of its links:
         * derated while both are loaded (models/cost.h, hw_link_t) */
        for (int d = 0; d < (int)D; d++) {
            net_pair_links(s->net, s->l_nvo + d, s->l_nvi + d, s->lk[NVL].duplex);
            net_pair_links(s->net, s->l_nico + d, s->l_nici + d, s->lk[NIC].duplex);
        }
        s->spine = c->spine_oversub > 1 && s->N > 1;
        if (s->spine) {
            double up = s->dpn * nic / c->spine_oversub;
            s->l_up = net_n_links(s->net);
            for (size_t b = 0; b < N; b++) net_add_link(s->net, up);
            s->l_down = net_n_links(s->net);
            for (size_t b = 0; b < N; b++) net_add_link(s->net, up);
        }
        s->l_tok = net_n_links(s->net);
        for (size_t i = 0; i < M * L * 2; i++) net_add_link(s->net, nic);
        s->l_agg = net_n_links(s->net);
        net_add_link(s->net, (double)D * nic);
        net_add_link(s->net, (double)D * nic);
        s->st = ms_malloc(M * L * 4 * D * sizeof *s->st);
        s->disp_wait = ms_malloc(M * L * D * sizeof *s->disp_wait);
        s->comb_wait = ms_malloc(M * L * D * sizeof *s->comb_wait);
        s->fwd_wait = ms_malloc(M * L * D * sizeof *s->fwd_wait);
        s->flags = ms_malloc(M * L * D * sizeof *s->flags);
        s->ob_t = ms_malloc(3 * M * L * D * sizeof *s->ob_t);
        s->cpu = ms_malloc(D * sizeof *s->cpu);
        s->mb_done = ms_malloc(D * sizeof *s->mb_done);
        s->nd_wait = ms_malloc(M * L * N * sizeof *s->nd_wait);
        s->nc_left = ms_malloc(M * L * N * sizeof *s->nc_left);
        s->nc_all = ms_malloc(M * L * N * sizeof *s->nc_all);
        s->nscr = ms_malloc(4 * N * sizeof *s->nscr);
    }
    return s;
}

void step_count_pairwise(step_sim_t *s, int on) { s->pairwise = on; }

void step_free(step_sim_t *s) {
    if (!s) return;
    step_pipe_free(s->pipe);
    free(s->T);
    free(s->TN);
    free(s->FW);
    free(s->slot_load);
    free(s->exp_ns);
    free(s->tok);
    free(s->attn_ns);
    free(s->shared_ns);
    free(s->pre_ns);
    free(s->post_ns);
    free(s->peer);
    free(s->dev_load);
    free(s->expert_load);
    free(s->layer_end);
    free(s->layer_ns);
    free(s->pl);
    free(s->pw);
    free(s->nodes);
    free(s->dstamp);
    free(s->nstamp);
    free(s->mb);
    free(s->seen);
    free(s->cps);
    free(s->fast);
    free(s->memo);
    free(s->pc);
    free(s->pc_slots);
    free(s->pc_spd);
    free(s->pc_n);
    free(s->slot_dev);
    free(s->icnt);
    free(s->dev_node);
    free(s->q);
    free(s->qn);
    free(s->cq_buf);
    free(s->cqn_buf);
    free(s->st);
    free(s->disp_wait);
    free(s->ob_t);
    free(s->comb_wait);
    free(s->fwd_wait);
    free(s->flags);
    free(s->cpu);
    free(s->mb_done);
    free(s->nd_wait);
    free(s->nc_left);
    free(s->nc_all);
    free(s->nscr);
    net_free(s->net);
    eng_free(s->eng);
    free(s);
}

double step_compute_ns(const cluster_t *c, const moe_model_t *m, double pairs, int active) {
    if (pairs <= 0 || active <= 0) return 0;
    return cost_experts_even_ns(&c->hw, m, active, pairs / active);
}


/* Routed-expert compute of every device: the cost model's one formula
 * (cost_experts_ns) over its slots' loads, as `moesim calib report`
 * evaluates it. */
static void expert_times(step_sim_t *s, const place_layout_t *lo) {
    /* the kernel's fitted figures once a step, not once a device and layer
     * (cost_experts_ns looks them up in the calibration each call) */
    hw_gemm_t par = cost_gemm_par_of(&s->c.hw, s->m.weight_bytes);
    for (int mb = 0; mb < s->M; mb++)
        for (int l = 0; l < s->L; l++) {
            int spd = lo->layer[lsrc(s, l)].slots_per_device;
            const double *sl = s->slot_load + ml(s, mb, l) * s->maxs;
            double *out = s->exp_ns + ml(s, mb, l) * s->D;
            for (int d = 0; d < s->D; d++)
                out[d] = cost_experts_par_ns(&par, &s->c.hw, &s->m, sl + (size_t)d * spd, spd) *
                         s->ov_comp;
        }
}

/* With MTP a decode step verifies q = 1 + mtp_depth tokens a sequence (the
 * caller's tokens count all of them): attention reads each sequence's KV
 * cache once for its q queries. The MTP block runs as extra MoE layers
 * (lsrc) on the same tokens; each pass also runs eh_proj on them and the
 * shared head on one token a sequence (its draft), charged after the main
 * head, as the main model's head must finish before a draft starts. */
/*
 * Tensor-parallel attention (attn_tp = tp > 1): the tp devices of a group
 * run attention, dense FFNs and head together over the group's tokens
 * (models/cost.h, cost_attn_tp_ns) and all-reduce the hidden states over
 * their scale-up links after each attention and dense FFN; a device then
 * dispatches its own share (the all-reduce's reduce-scatter half before
 * the MoE layer, its all-gather half after the combine). */
static double group_tokens(const double *tok, int d, int tp) {
    double g = 0;
    for (int x = d - d % tp; x < d - d % tp + tp; x++) g += tok[x];
    return g;
}

static void device_times(step_sim_t *s, const step_in_t *in) {
    const hw_t *hw = &s->c.hw;
    const moe_model_t *m = &s->m;
    int passes = s->L - s->Lm, tp = cluster_tp(&s->c);
    double q = in->prefill ? 1 : 1 + m->mtp_depth;
    const hw_link_t *ar = &s->lk[NVL];
    for (int mb = 0; mb < s->M; mb++)
        for (int d = 0; d < s->D; d++) {
            size_t i = (size_t)mb * s->D + d;
            double t = s->tok[i], g = tp > 1 ? group_tokens(s->tok + (size_t)mb * s->D, d, tp) : t;
            s->attn_ns[i] =
                cost_attn_tp_ns(hw, m, g, in->kv_len, in->prefill, q, tp) * s->ov_comp +
                cost_allreduce_ns(ar, g * m->hidden * 2.0, tp);
            s->shared_ns[i] = cost_shared_ns(hw, m, t) * s->ov_comp;
        }
    /* dense layers and head run once on the whole batch: the micro-batches
     * split only the MoE layers (as SGLang's two-batch overlap does) */
    for (int d = 0; d < s->D; d++) {
        double t = s->tok[d] + (s->M == 2 ? s->tok[s->D + d] : 0), g = t;
        if (tp > 1) {
            g = group_tokens(s->tok, d, tp);
            if (s->M == 2) g += group_tokens(s->tok + s->D, d, tp);
        }
        s->pre_ns[d] = cost_pre_tp_ns(hw, m, g, in->kv_len, in->prefill, q, tp, ar);
        s->post_ns[d] = in->skip_head ? 0
                                      : cost_head_tp_ns(hw, m, g, tp) +
                                            passes * (cost_mtp_proj_ns(hw, m, t) +
                                                      cost_head_tp_ns(hw, m, g / q, tp));
    }
}


/* Weight copies riding a step (bg_bytes) share its ports. They are charged
 * as the time the busiest port needs to carry them, added to the step and
 * spread evenly over its layers: an upper bound, as if the copies held
 * that port alone rather than filling its idle moments during compute. */
static void add_background(step_sim_t *s, const step_in_t *in, step_result_t *out) {
    if (!in->bg_bytes) return;
    const hw_t *hw = &s->c.hw;
    double bw[2] = {hw->scaleup_bw * hw->eff_scaleup, hw->nic_bw * hw->eff_nic}, worst = 0;
    for (int w = 0; w < 4; w++) /* send NVLink, send NIC, receive NVLink, receive NIC */
        for (int d = 0; d < s->D; d++)
            worst = ms_dmax(worst, in->bg_bytes[(size_t)w * s->D + d] / bw[w % 2]);
    int64_t extra = llround(worst * 1e9);
    if (!extra) return;
    for (int l = 0; l < s->L; l++)
        s->layer_ns[l] += extra / s->L + (l < extra % s->L);
    out->end_ns += extra;
}


/* ---- entry */

int step_run(step_sim_t *s, const step_in_t *in, step_result_t *out) {
    if (s->pipe) return step_pipe_run(s->pipe, in, out);
    s->L = s->Lm + moe_mtp_passes(&s->m, in->prefill);
    int D = s->D, L = s->L;
    const place_layout_t *lo = in->layout;
    const route_step_t *rt = in->route;
    if (!lo) return ms_err("step: no layout given (set step_in_t.layout)");
    if (lo->n_layers != s->Lm || lo->n_devices != D || lo->n_experts != s->E)
        return ms_err("step: layout (%d layers, %d experts, %d devices) does not match the "
                      "cluster (%d MoE layers, %d experts, %d devices)",
                      lo->n_layers, lo->n_experts, lo->n_devices, s->Lm, s->E, D);
    if (rt && (rt->n_layers != s->Lm || rt->n_devices != D))
        return ms_err("step: routing (%d layers, %d devices) does not match the cluster (%d MoE "
                      "layers, %d devices)", rt->n_layers, rt->n_devices, s->Lm, D);
    if (!rt && (!in->expert_load || !in->tokens))
        return ms_err("step: count mode needs expert_load [layers][experts] and tokens "
                      "[devices] (or give a route)");
    memset(out, 0, sizeof *out);
    s->res = out;
    s->obs = in->obs && in->obs->span ? in->obs : NULL;
    s->count_mode = !rt;
    s->lo = lo;
    s->tables = 0;
    s->cq = s->cqn = NULL;
    enum step_a2a a2a = s->c.a2a == STEP_A2A_AUTO
                            ? (in->prefill ? STEP_A2A_NORMAL : STEP_A2A_LOW_LATENCY)
                            : s->c.a2a;
    s->normal = a2a == STEP_A2A_NORMAL && s->N > 1;
    s->hd = s->m.hidden * (double)s->m.dispatch_bytes;
    s->hc = s->m.hidden * (double)s->m.combine_bytes;
    step_alloc_slots(s, lo);
    int flow = s->c.mode == STEP_FLOW;
    if (rt) {
        memset(s->dev_load, 0, (size_t)L * D * sizeof *s->dev_load);
        memset(s->expert_load, 0, (size_t)L * s->E * sizeof *s->expert_load);
        step_build_tokens(s, in);
    } else {
        step_build_counts(s, in);
        if (flow) step_counts_to_traffic(s);
    }
    if (s->tables && s->normal) step_build_forwards(s);
    expert_times(s, lo);
    device_times(s, in);
    int64_t t0 = in->start_ns;
    out->start_ns = out->end_ns = t0;
    for (int l = 0; l < L; l++) s->layer_end[l] = t0;
    if (flow) step_run_flow(s, t0);
    else step_run_analytic(s, t0);
    add_background(s, in, out);
    out->layer_ns = s->layer_ns;
    out->n_layers = L;
    out->dev_load = s->dev_load;
    out->expert_load = s->expert_load;
    out->expert_ns = s->exp_ns;
    return MS_OK;
}

