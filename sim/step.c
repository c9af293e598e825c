/* step: one step as events (flow mode) or in closed form (analytic mode).
 *
 * Traffic. T[s][d] is the number of distinct tokens of device s whose
 * experts include one on device d (a token goes to a device once however
 * many of its experts live there); TN[s][B] the tokens of s needing node B
 * (one IB copy per token per node in normal mode); FW[x][j] the tokens that
 * x=(B,i) forwards over NVLink to (B,j) in normal mode: those of the
 * sources (A,i), A != B, bound for (B,j). With two micro-batches each has
 * its own tables (first half of a device's tokens, second half).
 *
 * Flow mode. Each device is a compute server running its tasks one at a
 * time in arrival order: PRE (dense layers), ATTN, SHARED (shared experts,
 * started right after the device's dispatch leaves), EXPERT (routed experts,
 * once its dispatch has arrived and its SHARED is done), POST (head). The
 * all-to-all of a layer is one stream per device, phase and link kind,
 * aggregated on the token side (the balanced one: every device holds its
 * own batch) and resolved on the expert side (where placement makes the
 * imbalance):
 *   dispatch  one stream INTO each device per kind, its senders' ports
 *             weighted by their share of the bytes;
 *   combine   one stream OUT OF each device per kind, likewise.
 * A stream starts (paying one hop's latency) when the last of its pieces is
 * ready and is one max-min fair flow on the network; normal mode chains
 * its IB leg (into the forwarder) and NVLink leg (the forwarder's stream
 * into each device starts when its IB stream has landed). Per layer this
 * is 4 streams a device, not one flow per device pair: 576 flows at EP144
 * instead of 41,000, which is what lets the flow mode run faster than
 * real time.
 *
 * Analytic mode. Per layer and micro-batch: A = slowest attention, S =
 * slowest shared expert, X = slowest routed-expert GEMM, and each phase's
 * time = hop latency + busiest port's bytes / bandwidth (NVLink and NIC in
 * parallel in low-latency mode, IB then NVLink in normal mode); layer =
 * A + max(dispatch, S) + X + combine. With overlap the layer is
 * max(sum of compute, sum of communication) over both micro-batches. */
#include "step.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cost.h"
#include "net.h"
#include "util.h"

enum { DISP, COMB };
enum { NVL, NIC };
enum { T_PRE, T_ATTN, T_SHARED, T_EXPERT, T_POST };
enum { F_SHARED = 1, F_EXPERT = 2, F_ADVANCED = 4 };
#define QCAP 16

typedef struct {
    int kind, m, l;
    int64_t ns;
} task_t;

/* A device's compute: tasks run one at a time, first come first served. */
typedef struct {
    task_t q[QCAP];
    int head, n, busy;
} cpu_t;

/* One stream: pieces still to come and the bytes gathered so far. */
typedef struct {
    int pieces;
    double bytes;
} stream_t;

/* Per micro-batch and layer: busiest ports, for the analytic mode. */
typedef struct {
    double nvl, nic, spine; /* max over ports of max(in, out), tokens */
    int has_nvl, has_nic, has_fwd;
} ports_t;

struct step_sim {
    cluster_t c;
    moe_model_t m;
    int D, L, E, N, dpn, M;
    int Lm, Lmax;      /* the model's MoE layers (the layout's); L = Lm + this call's MTP
                        * passes, each one more MoE layer (lsrc) */
    int normal;        /* this call's all-to-all is normal mode */
    int count_mode;
    double hd, hc;     /* bytes a token in dispatch / combine */
    /* traffic and loads, per micro-batch and layer */
    float *T, *TN, *FW; /* [M][L][D][D], [M][L][D][N], [M][L][D][dpn] */
    int tables;        /* T, TN (and FW) describe this call */
    const place_layout_t *lo;
    double *slot_load; /* [M][L][maxs] */
    int maxs;
    size_t slot_cap;
    double *exp_ns;    /* [M][L][D] */
    double *tok;       /* [M][D] tokens per micro-batch */
    double *attn_ns, *shared_ns; /* [M][D] */
    double *pre_ns, *post_ns;    /* [D] dense layers and head, whole batch */
    double *peer;      /* [M][L][2] mean bytes a device sends one peer in a phase (the
                        * link model's ramp, models/cost.h) */
    hw_link_t lk[2]; /* link model of NVLink and of the NIC */
    /* results */
    double *dev_load, *expert_load;
    int64_t *layer_end, *layer_ns;
    int64_t pre_end;
    step_result_t *res;
    /* flow mode */
    eng_t *eng;
    net_t *net;
    int l_nvo, l_nvi, l_nico, l_nici, l_up, l_down; /* first link id of each kind */
    int l_tok;         /* low-latency mode: the token side of each [M][L][2] NIC phase */
    int l_agg;         /* low-latency mode: all NIC out ports together, then all in ports */
    int spine;
    stream_t *st;      /* [M][L][2][2][D] */
    int *disp_wait, *comb_wait, *fwd_wait; /* [M][L][D] */
    uint8_t *flags;    /* [M][L][D] */
    const step_observer_t *obs; /* this call's observer, or NULL */
    int64_t *ob_t;     /* observer only: [3][M][L][D] attention end (dispatch leaves),
                        * dispatch arrived, experts end */
    cpu_t *cpu;        /* [D] */
    int *mb_done;      /* [D] micro-batches through the last layer */
    /* scratch */
    int *pl;
    double *pw;
    double *nodes;     /* [N] */
    uint32_t *dstamp, *nstamp;
    unsigned char *mb; /* [tokens] micro-batch of each token */
    int *seen;         /* [D] counterparts (start_stream, fwd_dec) */
    int *cps;          /* [D] counterparts being notified (on_flow) */
    size_t mb_cap;
    int *fast;         /* [E] first slot of each expert */
    int *memo;         /* [D][E] default replica choice of each source for each expert */
    int *pc, *pc_slots, *pc_spd, *pc_n; /* pick_cache: choices, the slots they are for */
    size_t pc_layer;
    size_t memo_cap;
    int *slot_dev;     /* [maxs] device of each slot of the current layer */
    int *icnt;         /* token-mode slot counters of one layer [M][maxs] */
    int *dev_node;     /* [D] */
    double *q, *qn;    /* [D], [N] count mode: chance a token meets a device / node */
};

const char *step_mode_name(enum step_mode m) { return m == STEP_ANALYTIC ? "analytic" : "flow"; }

const char *step_a2a_name(enum step_a2a a) {
    return a == STEP_A2A_NORMAL ? "normal" : a == STEP_A2A_LOW_LATENCY ? "low_latency" : "auto";
}

/* ---- indexing */

static inline size_t ml(const step_sim_t *s, int m, int l) { return (size_t)m * s->L + l; }
static inline float *Tm(step_sim_t *s, int m, int l) {
    return s->T + ml(s, m, l) * s->D * s->D;
}
static inline float *TNm(step_sim_t *s, int m, int l) {
    return s->TN + ml(s, m, l) * s->D * s->N;
}
static inline float *FWm(step_sim_t *s, int m, int l) {
    return s->FW + ml(s, m, l) * s->D * s->dpn;
}
static inline size_t mld(const step_sim_t *s, int m, int l, int d) {
    return ml(s, m, l) * s->D + d;
}
static inline stream_t *stream(step_sim_t *s, int m, int l, int ph, int k, int d) {
    return s->st + ((ml(s, m, l) * 2 + ph) * 2 + k) * s->D + d;
}
static inline int node_of(const step_sim_t *s, int d) { return d / s->dpn; }
/* The layout, routing and loads a simulated layer uses: its own for the
 * model's MoE layers; the last MoE layer's for the MTP block, which no
 * trace records (its experts are placed as that layer's: models/cost.c). */
static inline int lsrc(const step_sim_t *s, int l) { return l < s->Lm ? l : s->Lm - 1; }
static inline int idx_of(const step_sim_t *s, int d) { return d % s->dpn; }

step_sim_t *step_new(const cluster_t *c, const moe_model_t *m) {
    step_sim_t *s = ms_calloc(1, sizeof *s);
    s->c = *c;
    s->m = *m;
    s->D = c->n_devices;
    s->dpn = c->devices_per_node;
    s->N = c->n_nodes;
    s->Lm = moe_n_moe_layers(m);
    s->Lmax = s->L = s->Lm + ms_imax(moe_mtp_passes(m, 0), moe_mtp_passes(m, 1));
    s->E = m->n_experts;
    s->M = c->overlap ? 2 : 1;
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
    }
    return s;
}

void step_free(step_sim_t *s) {
    if (!s) return;
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
    free(s->st);
    free(s->disp_wait);
    free(s->ob_t);
    free(s->comb_wait);
    free(s->fwd_wait);
    free(s->flags);
    free(s->cpu);
    free(s->mb_done);
    net_free(s->net);
    eng_free(s->eng);
    free(s);
}

double step_compute_ns(const cluster_t *c, const moe_model_t *m, double pairs, int active) {
    if (pairs <= 0 || active <= 0) return 0;
    return cost_experts_even_ns(&c->hw, m, active, pairs / active);
}

/* ---- building the traffic */

/* The tables are allocated on first use: the analytic mode in count mode
 * never needs them (O(D) a layer instead of O(D^2)). */
static void alloc_traffic(step_sim_t *s) {
    s->tables = 1;
    if (s->T) return;
    size_t ML = (size_t)s->M * s->Lmax, D = (size_t)s->D;
    s->T = ms_malloc(ML * D * D * sizeof *s->T);
    s->TN = ms_malloc(ML * D * (size_t)s->N * sizeof *s->TN);
    s->FW = ms_malloc(ML * D * (size_t)s->dpn * sizeof *s->FW);
}

static void alloc_slots(step_sim_t *s, const place_layout_t *lo) {
    int maxs = 0;
    for (int l = 0; l < s->Lm; l++) maxs = ms_imax(maxs, lo->layer[l].n_slots);
    s->maxs = maxs;
    size_t need = (size_t)s->M * s->L * maxs;
    if (need > s->slot_cap) {
        free(s->slot_load);
        s->slot_load = ms_malloc(need * sizeof *s->slot_load);
        s->slot_cap = need;
    }
    memset(s->slot_load, 0, need * sizeof *s->slot_load);
}

/* The default replica choices of layer l: its replicated experts (nm of
 * them), then place_pick_default's slot for each [expert][source device].
 * Kept from step to step while the layer's slots stay the same (a layout
 * changes only when a strategy re-plans). */
static const int *pick_cache(step_sim_t *s, const place_layout_t *lo, int l) {
    const place_layer_t *ly = &lo->layer[l];
    int D = s->D, E = s->E;
    size_t per = (size_t)(s->maxs - E > 0 ? s->maxs - E : 0) * (D + 1);
    if (s->pc_layer != per || !s->pc) {
        s->pc_layer = per;
        s->pc = ms_realloc(s->pc, (size_t)s->Lm * (per ? per : 1) * sizeof *s->pc);
        s->pc_slots = ms_realloc(s->pc_slots, (size_t)s->Lm * s->maxs * sizeof *s->pc_slots);
        s->pc_spd = ms_realloc(s->pc_spd, (size_t)s->Lm * sizeof *s->pc_spd);
        s->pc_n = ms_realloc(s->pc_n, (size_t)s->Lm * sizeof *s->pc_n);
        for (int i = 0; i < s->Lm; i++) s->pc_spd[i] = -1;
    }
    int *pc = s->pc + (size_t)l * per, *slots = s->pc_slots + (size_t)l * s->maxs;
    if (s->pc_spd[l] == ly->slots_per_device &&
        !memcmp(slots, ly->slot_expert, (size_t)ly->n_slots * sizeof *slots))
        return pc;
    int nm = 0;
    for (int e = 0; e < E; e++)
        if (ly->replicas[e] > 1) pc[nm++] = e;
    for (int i = 0; i < nm; i++)
        for (int d = 0; d < D; d++) pc[nm + (size_t)i * D + d] = place_pick_default(lo, l, pc[i], d);
    s->pc_n[l] = nm;
    s->pc_spd[l] = ly->slots_per_device;
    memcpy(slots, ly->slot_expert, (size_t)ly->n_slots * sizeof *slots);
    return pc;
}

/* Token mode: T, TN, slot loads and the result loads from the routing. */
static void build_tokens(step_sim_t *s, const step_in_t *in) {
    const route_step_t *rt = in->route;
    const place_layout_t *lo = in->layout;
    int D = s->D, N = s->N, L = s->L, M = s->M, k = rt->top_k, n = rt->n_tokens;
    alloc_traffic(s);
    size_t ML = (size_t)M * L;
    memset(s->T, 0, ML * D * D * sizeof *s->T);
    memset(s->TN, 0, ML * D * N * sizeof *s->TN);
    memset(s->tok, 0, (size_t)M * D * sizeof *s->tok);
    if ((size_t)n > s->mb_cap) {
        s->mb_cap = (size_t)n;
        s->mb = ms_realloc(s->mb, s->mb_cap);
    }
    /* micro-batch of each token: the first half of its device's tokens, then the rest */
    memset(s->seen, 0, (size_t)D * sizeof *s->seen);
    for (int t = 0; t < n; t++) s->seen[rt->src[t]]++;
    for (int d = 0; d < D; d++) {
        double n0 = M == 2 ? (s->seen[d] + 1) / 2 : s->seen[d];
        s->tok[d] = n0;
        if (M == 2) s->tok[D + d] = s->seen[d] - n0;
    }
    memset(s->seen, 0, (size_t)D * sizeof *s->seen);
    for (int t = 0; t < n; t++) {
        int d = rt->src[t];
        s->mb[t] = (unsigned char)(M == 2 && s->seen[d]++ >= (int)s->tok[d]);
    }
    memset(s->dstamp, 0, (size_t)D * sizeof *s->dstamp);
    memset(s->nstamp, 0, (size_t)N * sizeof *s->nstamp);
    uint32_t stamp = 0;
    int maxs = s->maxs, E = s->E;
    s->slot_dev = ms_realloc(s->slot_dev, (size_t)maxs * sizeof *s->slot_dev);
    s->icnt = ms_realloc(s->icnt, (size_t)M * maxs * sizeof *s->icnt);
    /* locals and restrict: the hot loop below runs 8.5M times a step at
     * EP144, and stores through s-> pointers would make the compiler reload
     * every field after each count */
    int *restrict scnt = s->icnt;
    int *restrict fast = s->fast, *restrict sdev = s->slot_dev;
    const int *restrict dnode = s->dev_node, *restrict srcv = rt->src;
    uint32_t *restrict dst = s->dstamp, *restrict nst = s->nstamp;
    const unsigned char *restrict mbv = s->mb;
    step_pick_fn pick = in->pick;
    void *pick_ctx = in->pick_ctx;
    int normal = s->normal; /* TN (per node) is only needed in normal mode */
    if ((size_t)D * E > s->memo_cap) {
        s->memo_cap = (size_t)D * E;
        s->memo = ms_realloc(s->memo, s->memo_cap * sizeof *s->memo);
    }
    int *restrict tabs = s->memo;
    for (int l = 0; l < L; l++) {
        int ls = lsrc(s, l);
        const place_layer_t *ly = &lo->layer[ls];
        for (int sl_i = 0; sl_i < ly->n_slots; sl_i++) sdev[sl_i] = sl_i / ly->slots_per_device;
        /* the default replica choice as a table [source][expert]: a source's
         * row (1 KB) stays in cache over its tokens, and the loop below has
         * no branch on replication */
        if (!pick) {
            const int *pc = pick_cache(s, lo, ls);
            int nm = s->pc_n[ls];
            for (int e = 0; e < E; e++) fast[e] = ly->rep_slot[ly->rep_start[e]];
            for (int d = 0; d < D; d++) {
                int *row = tabs + (size_t)d * E;
                memcpy(row, fast, (size_t)E * sizeof *row);
                for (int i = 0; i < nm; i++) row[pc[i]] = pc[nm + (size_t)i * D + d];
            }
        }
        memset(scnt, 0, (size_t)M * maxs * sizeof *scnt);
        float *restrict T0 = Tm(s, 0, l), *restrict T1 = M == 2 ? Tm(s, 1, l) : T0;
        float *restrict N0 = TNm(s, 0, l), *restrict N1 = M == 2 ? TNm(s, 1, l) : N0;
        const int16_t *restrict ex = rt->expert + (size_t)ls * n * k;
        for (int t = 0; t < n; t++, ex += k) {
            int src = srcv[t], m = mbv[t], snode = dnode[src];
            float *restrict row = (m ? T1 : T0) + (size_t)src * D;
            float *restrict trow = (m ? N1 : N0) + (size_t)src * N;
            int *restrict sc = scnt + (size_t)m * maxs;
            stamp++;
            const int *tab = tabs + (size_t)src * E;
            for (int j = 0; j < k; j++) {
                int e = ex[j];
                if (e < 0) continue; /* dropped by the strategy (capacity) */
                int slot = pick ? pick(pick_ctx, lo, ls, e, src) : tab[e];
                int d = sdev[slot];
                sc[slot]++;
                if (dst[d] == stamp) continue;
                dst[d] = stamp;
                row[d] += 1;
                if (!normal) continue;
                int b = dnode[d], fresh = nst[b] != stamp; /* branch-free: ~half are new */
                nst[b] = stamp;
                trow[b] += (float)(fresh & (b != snode));
            }
        }
        /* expert and device loads follow from the slot counts */
        double *dl = s->dev_load + (size_t)l * D, *el = s->expert_load + (size_t)l * E;
        memset(dl, 0, (size_t)D * sizeof *dl);
        memset(el, 0, (size_t)E * sizeof *el);
        for (int mb = 0; mb < M; mb++) {
            double *sl = s->slot_load + ml(s, mb, l) * maxs;
            for (int i = 0; i < ly->n_slots; i++) {
                int c = scnt[(size_t)mb * maxs + i];
                sl[i] = c;
                el[ly->slot_expert[i]] += c;
                dl[sdev[i]] += c;
            }
        }
    }
}

static double powk(double x, int k) {
    double r = 1;
    while (k) {
        if (k & 1) r *= x;
        x *= x;
        k >>= 1;
    }
    return r;
}

/* Count mode: slot loads split evenly over replicas, tokens split in half
 * per micro-batch, result loads. */
static void build_counts(step_sim_t *s, const step_in_t *in) {
    const place_layout_t *lo = in->layout;
    int D = s->D, M = s->M;
    for (int d = 0; d < D; d++) {
        double t = in->tokens[d] > 0 ? in->tokens[d] : 0;
        s->tok[d] = M == 2 ? t / 2 : t;
        if (M == 2) s->tok[D + d] = t / 2;
    }
    memset(s->dev_load, 0, (size_t)s->L * D * sizeof *s->dev_load);
    for (int l = 0; l < s->L; l++) {
        const place_layer_t *ly = &lo->layer[lsrc(s, l)];
        const double *el = in->expert_load + (size_t)lsrc(s, l) * s->E;
        memcpy(s->expert_load + (size_t)l * s->E, el, (size_t)s->E * sizeof *el);
        double *dl = s->dev_load + (size_t)l * D;
        for (int m = 0; m < M; m++) {
            double *sl = s->slot_load + ml(s, m, l) * s->maxs;
            for (int sl_i = 0; sl_i < ly->n_slots; sl_i++) {
                int e = ly->slot_expert[sl_i];
                double v = el[e] > 0 ? el[e] / ly->replicas[e] / M : 0;
                sl[sl_i] = v;
                dl[sl_i / ly->slots_per_device] += v;
            }
        }
    }
}

/* Count mode, per micro-batch and layer: q[d], the chance that a token
 * meets device d, and qn[B] node B. */
static void meet_probs(step_sim_t *s, int m, int l) {
    int D = s->D, k = s->m.top_k;
    const double *sl = s->slot_load + ml(s, m, l) * s->maxs;
    int spd = s->lo->layer[lsrc(s, l)].slots_per_device;
    double tot = 0;
    for (int d = 0; d < D; d++) {
        double p = 0;
        for (int j = 0; j < spd; j++) p += sl[d * spd + j];
        s->q[d] = p;
        tot += p;
    }
    for (int b = 0; b < s->N; b++) s->qn[b] = 0;
    for (int d = 0; d < D; d++) {
        double p = tot > 0 ? s->q[d] / tot : 0;
        s->qn[d / s->dpn] += p;
        s->q[d] = 1 - powk(1 - p, k);
    }
    for (int b = 0; b < s->N; b++) s->qn[b] = 1 - powk(1 - ms_dmin(s->qn[b], 1), k);
}

/* Count mode, flow: the expected traffic tables. */
static void counts_to_traffic(step_sim_t *s) {
    int D = s->D, N = s->N;
    alloc_traffic(s);
    for (int m = 0; m < s->M; m++)
        for (int l = 0; l < s->L; l++) {
            meet_probs(s, m, l);
            float *T = Tm(s, m, l), *TN = TNm(s, m, l);
            for (int a = 0; a < D; a++) {
                double t = s->tok[(size_t)m * D + a];
                for (int d = 0; d < D; d++) T[(size_t)a * D + d] = (float)(t * s->q[d]);
                for (int b = 0; b < N; b++)
                    TN[(size_t)a * N + b] = b == node_of(s, a) ? 0 : (float)(t * s->qn[b]);
            }
        }
}

/* Normal mode: the NVLink forwards of each (micro-batch, layer). */
static void build_forwards(step_sim_t *s) {
    int D = s->D, dpn = s->dpn, N = s->N;
    for (int m = 0; m < s->M; m++)
        for (int l = 0; l < s->L; l++) {
            const float *T = Tm(s, m, l);
            float *FW = FWm(s, m, l);
            for (int x = 0; x < D; x++) {
                int B = node_of(s, x), i = idx_of(s, x);
                for (int j = 0; j < dpn; j++) {
                    int d = B * dpn + j;
                    double v = 0;
                    for (int A = 0; A < N; A++)
                        if (A != B) v += T[(size_t)(A * dpn + i) * D + d];
                    FW[(size_t)x * dpn + j] = (float)v;
                }
            }
        }
}

/* Routed-expert compute of every device: the cost model's one formula
 * (cost_experts_ns) over its slots' loads, as `moesim calib report`
 * evaluates it. */
static void expert_times(step_sim_t *s, const place_layout_t *lo) {
    for (int mb = 0; mb < s->M; mb++)
        for (int l = 0; l < s->L; l++) {
            int spd = lo->layer[lsrc(s, l)].slots_per_device;
            const double *sl = s->slot_load + ml(s, mb, l) * s->maxs;
            double *out = s->exp_ns + ml(s, mb, l) * s->D;
            for (int d = 0; d < s->D; d++)
                out[d] = cost_experts_ns(&s->c.hw, &s->m, sl + (size_t)d * spd, spd);
        }
}

/* With MTP a decode step verifies q = 1 + mtp_depth tokens a sequence (the
 * caller's tokens count all of them): attention reads each sequence's KV
 * cache once for its q queries. The MTP block runs as extra MoE layers
 * (lsrc) on the same tokens; each pass also runs eh_proj on them and the
 * shared head on one token a sequence (its draft), charged after the main
 * head, as the main model's head must finish before a draft starts. */
static void device_times(step_sim_t *s, const step_in_t *in) {
    const hw_t *hw = &s->c.hw;
    const moe_model_t *m = &s->m;
    int passes = s->L - s->Lm;
    double q = in->prefill ? 1 : 1 + m->mtp_depth;
    for (int i = 0; i < s->M * s->D; i++) {
        double t = s->tok[i];
        s->attn_ns[i] = cost_attn_q_ns(hw, m, t, in->kv_len, in->prefill, q);
        s->shared_ns[i] = cost_shared_ns(hw, m, t);
    }
    /* dense layers and head run once on the whole batch: the micro-batches
     * split only the MoE layers (as SGLang's two-batch overlap does) */
    for (int d = 0; d < s->D; d++) {
        double t = s->tok[d] + (s->M == 2 ? s->tok[s->D + d] : 0);
        s->pre_ns[d] = cost_pre_q_ns(hw, m, t, in->kv_len, in->prefill, q);
        s->post_ns[d] = cost_head_ns(hw, m, t) +
                        passes * (cost_mtp_proj_ns(hw, m, t) + cost_head_ns(hw, m, t / q));
    }
}

/* ---- ports (analytic mode, and the byte counters of both modes) */

/* Port token counts of one (micro-batch, layer) from the traffic tables. */
static ports_t ports_from_tables(step_sim_t *s, int m, int l, double *disp_tok) {
    int D = s->D, N = s->N, dpn = s->dpn;
    const float *T = Tm(s, m, l), *TN = TNm(s, m, l), *FW = s->normal ? FWm(s, m, l) : NULL;
    ports_t p = {0};
    double *up = s->nodes, tot = 0;
    for (int b = 0; b < N; b++) up[b] = 0;
    /* out ports: row sums; in ports: column sums (s->q, s->qn as scratch) */
    double *in_nvl = s->q, *down = s->qn;
    for (int d = 0; d < D; d++) in_nvl[d] = 0;
    for (int b = 0; b < N; b++) down[b] = 0;
    double *in_nic = s->pw; /* D + N + 4 long */
    for (int d = 0; d < D; d++) in_nic[d] = 0;
    for (int a = 0; a < D; a++) {
        int A = node_of(s, a);
        double nvl = 0, nic = 0;
        const float *row = T + (size_t)a * D;
        for (int d = 0; d < D; d++) {
            double v = row[d];
            if (v <= 0 || d == a) continue;
            if (node_of(s, d) == A) {
                nvl += v;
                in_nvl[d] += v;
            } else if (!s->normal) {
                nic += v;
                in_nic[d] += v;
                down[node_of(s, d)] += v;
            }
        }
        if (s->normal) {
            int i = idx_of(s, a);
            for (int b = 0; b < N; b++) {
                double v = TN[(size_t)a * N + b];
                if (v <= 0) continue;
                nic += v;
                in_nic[b * dpn + i] += v;
                down[b] += v;
            }
            for (int j = 0; j < dpn; j++) {
                int d = A * dpn + j;
                double f = FW[(size_t)a * dpn + j];
                if (f <= 0) continue;
                if (d == a) continue;
                nvl += f;
                in_nvl[d] += f;
                p.has_fwd = 1;
            }
        }
        up[A] += nic;
        tot += nvl + nic;
        p.nvl = ms_dmax(p.nvl, nvl);
        p.nic = ms_dmax(p.nic, nic);
    }
    for (int d = 0; d < D; d++) {
        p.nvl = ms_dmax(p.nvl, in_nvl[d]);
        p.nic = ms_dmax(p.nic, in_nic[d]);
    }
    for (int b = 0; b < N; b++) p.spine = ms_dmax(p.spine, ms_dmax(up[b], down[b]));
    p.has_nvl = p.nvl > 0;
    p.has_nic = p.nic > 0;
    *disp_tok = tot;
    return p;
}

/* The same in closed form from the loads (count mode, O(D) a layer). */
static ports_t ports_from_counts(step_sim_t *s, int m, int l, double *disp_tok) {
    int D = s->D, N = s->N, dpn = s->dpn;
    meet_probs(s, m, l);
    const double *t = s->tok + (size_t)m * D, *q = s->q, *r = s->qn;
    double *TB = s->nodes, *QB = s->pw, *rail = s->pw + N;
    double Tt = 0, Q = 0, R = 0, tot = 0;
    for (int b = 0; b < N; b++) TB[b] = QB[b] = 0;
    for (int i = 0; i < dpn; i++) rail[i] = 0;
    for (int d = 0; d < D; d++) {
        TB[node_of(s, d)] += t[d];
        QB[node_of(s, d)] += q[d];
        rail[idx_of(s, d)] += t[d];
        Tt += t[d];
        Q += q[d];
    }
    for (int b = 0; b < N; b++) R += r[b];
    ports_t p = {0};
    for (int b = 0; b < N; b++) {
        double up = 0, down = 0;
        for (int j = 0; j < dpn; j++) {
            int d = b * dpn + j;
            double nvo, nvi, nio, nii;
            if (!s->normal) {
                nvo = t[d] * (QB[b] - q[d]);
                nio = t[d] * (Q - QB[b]);
                nvi = q[d] * (TB[b] - t[d]);
                nii = q[d] * (Tt - TB[b]);
            } else {
                nio = t[d] * (R - r[b]);
                nii = r[b] * (rail[j] - t[d]);
                nvi = q[d] * (Tt - rail[j]);
                nvo = rail[j] * (QB[b] - q[d]);
                if (N > 1 && dpn > 1 && nvi > 0) p.has_fwd = 1;
            }
            up += nio;
            down += nii;
            tot += nvo + nio;
            p.nvl = ms_dmax(p.nvl, ms_dmax(nvo, nvi));
            p.nic = ms_dmax(p.nic, ms_dmax(nio, nii));
        }
        p.spine = ms_dmax(p.spine, ms_dmax(up, down));
    }
    p.has_nvl = p.nvl > 1e-12;
    p.has_nic = p.nic > 1e-12;
    *disp_tok = tot;
    return p;
}

/* One phase's time in the analytic mode, ns: the busiest port's bytes over
 * the link model (models/cost.h), both directions taken as loaded (every
 * device sends and receives in an all-to-all), with the ramp at the
 * phase's mean bytes per peer; with lat 0 only the time its bytes hold the
 * ports (hop latencies are delay, which overlapped phases pay
 * concurrently). */
static double port_ns(const hw_link_t *lk, double bytes, double peer, int lat) {
    double t = cost_link_ns(lk, bytes, peer, 1);
    return !lat && t > 0 ? t - lk->lat_ns : t;
}

static double phase_ns(const step_sim_t *s, const ports_t *p, double bytes_per_tok, double peer,
                       int lat) {
    double nvl = 0, nic = 0;
    if (p->has_nvl) nvl = port_ns(&s->lk[NVL], p->nvl * bytes_per_tok, peer, lat);
    if (p->has_nic) {
        double b = p->nic;
        if (s->c.spine_oversub > 1 && s->N > 1)
            b = ms_dmax(b, p->spine * s->c.spine_oversub / s->dpn);
        nic = port_ns(&s->lk[NIC], b * bytes_per_tok, peer, lat);
    }
    return s->normal && p->has_fwd ? nvl + nic : ms_dmax(nvl, nic);
}

/* The mean bytes a device sends one peer in each phase of (m, l), from the
 * token copies tok moved between devices (the ramp's argument). */
static void set_peer_bytes(step_sim_t *s, int m, int l, double tok) {
    double *f = s->peer + ml(s, m, l) * 2, pairs = (double)s->D * (s->D - 1);
    f[DISP] = pairs > 0 ? tok * s->hd / pairs : 0;
    f[COMB] = pairs > 0 ? tok * s->hc / pairs : 0;
}

static double dmax_of(const double *v, int n) {
    double x = 0;
    for (int i = 0; i < n; i++) x = ms_dmax(x, v[i]);
    return x;
}

/* Observer times of (m, l, d): 0 attention end, 1 dispatch arrived, 2 experts end. */
static inline int64_t *ob_at(step_sim_t *s, int w, size_t i) {
    return s->ob_t + (size_t)w * s->M * s->L * s->D + i;
}

static void ob_span(step_sim_t *s, enum step_span k, int d, int m, int l, int64_t t0, int64_t t1) {
    if (t1 > t0) s->obs->span(s->obs->ctx, k, d, m, l, t0, t1);
}

static void run_analytic(step_sim_t *s, int64_t t0) {
    int D = s->D, M = s->M;
    double pre = dmax_of(s->pre_ns, D), post = dmax_of(s->post_ns, D), now = pre;
    for (int l = 0; l < s->L; l++) {
        double comp = 0, occ = 0, seq = 0, chain = 0;
        for (int m = 0; m < M; m++) {
            double tok;
            ports_t p = s->tables ? ports_from_tables(s, m, l, &tok)
                                  : ports_from_counts(s, m, l, &tok);
            set_peer_bytes(s, m, l, tok);
            const double *f = s->peer + ml(s, m, l) * 2;
            double dsp = phase_ns(s, &p, s->hd, f[DISP], 1);
            double cmb = phase_ns(s, &p, s->hc, f[COMB], 1);
            s->res->dispatch_bytes += tok * s->hd;
            s->res->combine_bytes += tok * s->hc;
            double A = dmax_of(s->attn_ns + (size_t)m * D, D);
            double S = dmax_of(s->shared_ns + (size_t)m * D, D);
            double X = dmax_of(s->exp_ns + ml(s, m, l) * D, D);
            double one = A + ms_dmax(dsp, S) + X + cmb;
            if (s->obs) /* both micro-batches drawn from the layer's start */
                for (int d = 0; d < D; d++) {
                    double a = t0 + now + A, x = a + ms_dmax(dsp, S);
                    double xe = x + s->exp_ns[ml(s, m, l) * D + d], ce = x + X;
                    ob_span(s, STEP_SPAN_DISPATCH, d, m, l, llround(a), llround(a + dsp));
                    ob_span(s, STEP_SPAN_EXPERT, d, m, l, llround(x), llround(xe));
                    ob_span(s, STEP_SPAN_COMBINE, d, m, l, llround(ce), llround(ce + cmb));
                }
            comp += A + S + X;
            occ += phase_ns(s, &p, s->hd, f[DISP], 0) + phase_ns(s, &p, s->hc, f[COMB], 0);
            chain = ms_dmax(chain, one);
            seq += one;
        }
        /* Two micro-batches: the steady state of a perfect pipeline, a lower
         * bound on the flow mode for layers alike (docs/cost-model.md
         * section 7): the slowest device computes both, the busiest ports
         * carry both (latencies overlap), and each micro-batch still runs
         * its own chain attention -> dispatch -> experts -> combine. */
        double lt = M == 2 ? ms_dmax(ms_dmax(comp, occ), chain) : seq;
        s->layer_ns[l] = llround(now + lt) - llround(now);
        now += lt;
        s->layer_end[l] = t0 + llround(now);
    }
    s->res->pre_ns = llround(pre);
    s->res->post_ns = llround(post);
    s->res->end_ns = t0 + llround(now + post);
}

/* ---- flow mode: compute servers */

static void ev_task(eng_t *eng, void *ctx, int64_t arg);

static void cpu_start(step_sim_t *s, int d) {
    cpu_t *c = &s->cpu[d];
    if (c->busy || !c->n) return;
    c->busy = 1;
    eng_after(s->eng, c->q[c->head].ns, ev_task, s, d);
}

static void cpu_push(step_sim_t *s, int d, int kind, int m, int l, double ns) {
    cpu_t *c = &s->cpu[d];
    assert(c->n < QCAP);
    c->q[(c->head + c->n) % QCAP] = (task_t){.kind = kind, .m = m, .l = l, .ns = llround(ns)};
    c->n++;
    cpu_start(s, d);
}

static void ready(step_sim_t *s, int m, int l, int d) {
    if (l < s->L) cpu_push(s, d, T_ATTN, m, l, s->attn_ns[(size_t)m * s->D + d]);
    else if (++s->mb_done[d] == s->M) cpu_push(s, d, T_POST, 0, l, s->post_ns[d]);
}

static void try_advance(step_sim_t *s, int m, int l, int d) {
    size_t i = mld(s, m, l, d);
    if (s->comb_wait[i] || !(s->flags[i] & F_SHARED) || (s->flags[i] & F_ADVANCED)) return;
    s->flags[i] |= F_ADVANCED;
    int64_t now = eng_now(s->eng);
    /* The combine is drawn from d's experts end to the arrival of its last
     * result. When d's results are all home before its own expert task has
     * ended (its tokens went elsewhere), the wait hid behind that compute:
     * nothing is drawn, so a device's events never overlap. */
    if (s->obs && *ob_at(s, 2, i) >= 0) ob_span(s, STEP_SPAN_COMBINE, d, m, l, *ob_at(s, 2, i), now);
    if (now > s->layer_end[l]) s->layer_end[l] = now;
    ready(s, m, l + 1, d);
}

static void try_expert(step_sim_t *s, int m, int l, int d) {
    size_t i = mld(s, m, l, d);
    if (!(s->flags[i] & F_SHARED) || s->disp_wait[i] || (s->flags[i] & F_EXPERT)) return;
    s->flags[i] |= F_EXPERT;
    if (s->obs) ob_span(s, STEP_SPAN_DISPATCH, d, m, l, *ob_at(s, 0, i), *ob_at(s, 1, i));
    cpu_push(s, d, T_EXPERT, m, l, s->exp_ns[i]);
}

static void comb_dec(step_sim_t *s, int m, int l, int d) {
    size_t i = mld(s, m, l, d);
    assert(s->comb_wait[i] > 0);
    s->comb_wait[i]--;
    try_advance(s, m, l, d);
}

static void join(step_sim_t *s, int m, int l, int ph, int k, int d, double bytes);

/* ---- flow mode: streams */

static int64_t tag_of(const step_sim_t *s, int m, int l, int ph, int k, int d) {
    return (int64_t)(((ml(s, m, l) * 2 + (size_t)ph) * 2 + (size_t)k) * s->D + (size_t)d);
}

static void on_flow(eng_t *eng, void *ctx, int64_t tag);

/* Counterparts of a stream of device d: the devices on the other side and
 * their tokens (x's tokens on d: what x sends d in dispatch and d returns
 * in combine). Fills s->seen / s->q, returns how many. Low-latency NIC
 * streams never need the list for their path (token_side_caps). */
static int counterparts(step_sim_t *s, int m, int l, int k, int d) {
    int n = 0, D = s->D, dpn = s->dpn, B = node_of(s, d), j = idx_of(s, d);
    const float *Tc = Tm(s, m, l) + d; /* column d, stride D */
    if (k == NVL) {
        const float *fw = s->normal ? FWm(s, m, l) + j : NULL;
        for (int i = 0; i < dpn; i++) {
            int x = B * dpn + i;
            if (x == d) continue;
            double v = Tc[(size_t)x * D] + (fw ? fw[(size_t)x * dpn] : 0);
            if (v > 0) {
                s->seen[n] = x;
                s->q[n++] = v;
            }
        }
    } else if (!s->normal) {
        for (int x = 0; x < D; x++) {
            double v = Tc[(size_t)x * D];
            if (v > 0 && node_of(s, x) != B) {
                s->seen[n] = x;
                s->q[n++] = v;
            }
        }
    } else {
        const float *tn = TNm(s, m, l) + B;
        for (int A = 0; A < s->N; A++) {
            int x = A * dpn + j;
            double v = tn[(size_t)x * s->N];
            if (A != B && v > 0) {
                s->seen[n] = x;
                s->q[n++] = v;
            }
        }
    }
    return n;
}

static void start_stream(step_sim_t *s, int m, int l, int ph, int k, int d) {
    stream_t *st = stream(s, m, l, ph, k, d);
    int np = 0;
    int own = k == NVL ? (ph == DISP ? s->l_nvi : s->l_nvo) : (ph == DISP ? s->l_nici : s->l_nico);
    int cpl = k == NVL ? (ph == DISP ? s->l_nvo : s->l_nvi) : (ph == DISP ? s->l_nico : s->l_nici);
    s->pl[np] = own + d;
    s->pw[np++] = 1;
    if (k == NIC && !s->normal) {
        /* low-latency: the token side is one link (see token_side_caps) */
        s->pl[np] = s->l_tok + (int)(ml(s, m, l) * 2 + (size_t)ph);
        s->pw[np++] = 1;
        /* Every byte leaves one NIC and enters one: phases overlapping in
         * time (one micro-batch's dispatch under the other's combine) share
         * the ports' total, which their separate token-side links cannot
         * see. One phase alone never exceeds it. */
        s->pl[np] = s->l_agg;
        s->pw[np++] = 1;
        s->pl[np] = s->l_agg + 1;
        s->pw[np++] = 1;
        if (s->spine) {
            s->pl[np] = (ph == DISP ? s->l_down : s->l_up) + node_of(s, d);
            s->pw[np++] = 1;
        }
    } else {
        int nc = counterparts(s, m, l, k, d), spine = k == NIC && s->spine;
        double tot = 0;
        for (int i = 0; i < nc; i++) tot += s->q[i];
        if (spine) {
            s->pl[np] = (ph == DISP ? s->l_down : s->l_up) + node_of(s, d);
            s->pw[np++] = 1;
        }
        for (int i = 0; i < nc && tot > 0; i++) {
            s->pl[np] = cpl + s->seen[i];
            s->pw[np++] = s->q[i] / tot;
            if (spine) { /* normal mode: one source per node on a rail */
                s->pl[np] = (ph == DISP ? s->l_up : s->l_down) + node_of(s, s->seen[i]);
                s->pw[np++] = s->q[i] / tot;
            }
        }
    }
    /* the ramp as bytes: a stream of small messages moves ramp x the link */
    const hw_link_t *lk = &s->lk[k];
    int64_t lat = llround(lk->lat_ns);
    double ramp = cost_link_ramp(lk, s->peer[ml(s, m, l) * 2 + ph]);
    net_start(s->net, np, s->pl, s->pw, st->bytes / ramp, lat, on_flow, s,
              tag_of(s, m, l, ph, k, d));
}

static void join(step_sim_t *s, int m, int l, int ph, int k, int d, double bytes) {
    stream_t *st = stream(s, m, l, ph, k, d);
    assert(st->pieces > 0);
    st->bytes += bytes;
    if (--st->pieces == 0) start_stream(s, m, l, ph, k, d);
}

static void fwd_dec(step_sim_t *s, int m, int l, int f) {
    size_t i = mld(s, m, l, f);
    assert(s->fwd_wait[i] > 0);
    if (--s->fwd_wait[i]) return;
    if (stream(s, m, l, COMB, NIC, f)->pieces) join(s, m, l, COMB, NIC, f, 0);
}

/* A stream has delivered everything: tell whoever waits on it. */
static void on_flow(eng_t *eng, void *ctx, int64_t tag) {
    (void)eng;
    step_sim_t *s = ctx;
    int D = s->D, dpn = s->dpn;
    int d = (int)(tag % D);
    tag /= D;
    int k = (int)(tag % 2);
    tag /= 2;
    int ph = (int)(tag % 2);
    tag /= 2;
    int l = (int)(tag % s->L), m = (int)(tag / s->L);
    if (ph == DISP) {
        if (!s->normal || k == NVL) {
            if (--s->disp_wait[mld(s, m, l, d)] == 0 && s->obs)
                *ob_at(s, 1, mld(s, m, l, d)) = eng_now(s->eng);
            try_expert(s, m, l, d);
            return;
        }
        /* normal mode: the IB leg into forwarder d has landed */
        const float *FW = FWm(s, m, l) + (size_t)d * dpn;
        int B = node_of(s, d);
        if (FW[idx_of(s, d)] > 0) {
            if (--s->disp_wait[mld(s, m, l, d)] == 0 && s->obs)
                *ob_at(s, 1, mld(s, m, l, d)) = eng_now(s->eng);
            try_expert(s, m, l, d);
        }
        for (int j = 0; j < dpn; j++) {
            int x = B * dpn + j;
            if (x != d && FW[j] > 0) join(s, m, l, DISP, NVL, x, FW[j] * s->hd);
        }
        return;
    }
    /* combine: the stream out of d reached its counterparts */
    const float *Tc = Tm(s, m, l) + d; /* column d: x's tokens on d */
    if (!s->normal) { /* every token owner of the stream's kind waits on it */
        int *cw = s->comb_wait + mld(s, m, l, 0), B = node_of(s, d);
        for (int A = 0; A < s->N; A++) {
            if ((A == B) != (k == NVL)) continue;
            for (int x = A * dpn; x < (A + 1) * dpn; x++)
                if (x != d && Tc[(size_t)x * D] > 0 && --cw[x] == 0) try_advance(s, m, l, x);
        }
        return;
    }
    /* normal mode (copied: the notifications start streams, which reuse
     * s->seen) */
    int nc = counterparts(s, m, l, k, d);
    memcpy(s->cps, s->seen, (size_t)nc * sizeof *s->cps);
    const float *T = Tm(s, m, l), *FW = s->normal ? FWm(s, m, l) : NULL;
    for (int i = 0; i < nc; i++) {
        int x = s->cps[i];
        if (!s->normal || k == NIC) {
            comb_dec(s, m, l, x);
            continue;
        }
        if (T[(size_t)x * D + d] > 0) comb_dec(s, m, l, x);
        if (FW[(size_t)x * dpn + idx_of(s, d)] > 0) fwd_dec(s, m, l, x);
    }
}

/* Device a's dispatch leaves after its attention: its piece of every
 * stream it feeds (node by node, so the link kind needs no division). */
static void send_dispatch(step_sim_t *s, int m, int l, int a) {
    int D = s->D, A = node_of(s, a), dpn = s->dpn;
    const float *row = Tm(s, m, l) + (size_t)a * D;
    double hd = s->hd;
    for (int B = 0; B < s->N; B++) {
        if (s->normal && B != A) continue;
        int k = B == A ? NVL : NIC;
        stream_t *st = stream(s, m, l, DISP, k, 0);
        for (int d = B * dpn; d < (B + 1) * dpn; d++) {
            if (d == a || row[d] <= 0) continue;
            st[d].bytes += row[d] * hd;
            if (--st[d].pieces == 0) start_stream(s, m, l, DISP, k, d);
        }
    }
    if (!s->normal) return;
    const float *tn = TNm(s, m, l) + (size_t)a * s->N;
    for (int b = 0; b < s->N; b++)
        if (tn[b] > 0) join(s, m, l, DISP, NIC, b * dpn + idx_of(s, a), tn[b] * hd);
}

/* Device d's experts are done: results leave (combine streams' bytes were
 * totalled in init_phase). */
static void send_combine(step_sim_t *s, int m, int l, int d) {
    if (Tm(s, m, l)[(size_t)d * s->D + d] > 0) comb_dec(s, m, l, d);
    for (int k = 0; k < 2; k++) {
        if (s->normal && k == NIC) continue; /* IB leaves from the forwarders */
        if (stream(s, m, l, COMB, k, d)->pieces) join(s, m, l, COMB, k, d, 0);
    }
    if (s->normal && FWm(s, m, l)[(size_t)d * s->dpn + idx_of(s, d)] > 0) fwd_dec(s, m, l, d);
}

static void ev_task(eng_t *eng, void *ctx, int64_t arg) {
    step_sim_t *s = ctx;
    int d = (int)arg;
    cpu_t *c = &s->cpu[d];
    task_t t = c->q[c->head];
    c->head = (c->head + 1) % QCAP;
    c->n--;
    c->busy = 0;
    int64_t now = eng_now(eng);
    switch (t.kind) {
    case T_PRE:
        if (now > s->pre_end) s->pre_end = now;
        for (int m = 0; m < s->M; m++) ready(s, m, 0, d);
        break;
    case T_ATTN:
        if (s->obs) *ob_at(s, 0, mld(s, t.m, t.l, d)) = now;
        send_dispatch(s, t.m, t.l, d);
        cpu_push(s, d, T_SHARED, t.m, t.l, s->shared_ns[(size_t)t.m * s->D + d]);
        break;
    case T_SHARED:
        s->flags[mld(s, t.m, t.l, d)] |= F_SHARED;
        try_expert(s, t.m, t.l, d);
        try_advance(s, t.m, t.l, d);
        break;
    case T_EXPERT:
        if (s->obs) {
            *ob_at(s, 2, mld(s, t.m, t.l, d)) = now;
            ob_span(s, STEP_SPAN_EXPERT, d, t.m, t.l, now - t.ns, now);
        }
        send_combine(s, t.m, t.l, d);
        break;
    case T_POST:
        if (now > s->res->end_ns) s->res->end_ns = now;
        break;
    }
    cpu_start(s, d);
}

/* Stream pieces, combine bytes and waits of one (micro-batch, layer), in
 * one node-blocked pass over the traffic tables. Returns the tokens that
 * cross between devices (for the byte counters). Low-latency mode also
 * sets the capacity of each phase's token-side link:
 *
 * the token side of a NIC phase (the 136 other devices of EP144, each
 * sending or receiving its share) is folded into one link a phase, which
 * each stream crosses besides its own port. If every stream draws on the
 * token-side ports in the same proportions a_s (exact in count mode, close
 * for balanced batches), port s carries a_s of the phase's total rate, so
 * the total can reach min_s cap / a_s and no more; with a spine, likewise
 * min over nodes of the uplink / the node's share. This keeps a solve
 * O(streams) instead of O(streams x devices); what it gives up is the
 * token-side contention between two phases that overlap in time (their
 * expert-side ports still contend). */
static double init_phase(step_sim_t *s, int m, int l) {
    int D = s->D, N = s->N, dpn = s->dpn;
    const float *T = Tm(s, m, l);
    size_t base = mld(s, m, l, 0);
    int *dw = s->disp_wait + base, *cw = s->comb_wait + base, *fwt = s->fwd_wait + base;
    memset(dw, 0, (size_t)D * sizeof *dw);
    memset(cw, 0, (size_t)D * sizeof *cw);
    memset(fwt, 0, (size_t)D * sizeof *fwt);
    memset(s->flags + base, 0, (size_t)D);
    stream_t *dn = stream(s, m, l, DISP, NVL, 0), *di = stream(s, m, l, DISP, NIC, 0);
    stream_t *cn = stream(s, m, l, COMB, NVL, 0), *ci = stream(s, m, l, COMB, NIC, 0);
    memset(dn, 0, (size_t)D * 2 * sizeof *dn); /* DISP NVL and NIC are adjacent */
    memset(cn, 0, (size_t)D * 2 * sizeof *cn);
    double hc = s->hc, moved = 0, tot = 0, worst = 0;
    double *node = s->nodes;
    for (int b = 0; b < N; b++) node[b] = 0;
    for (int A = 0; A < N; A++)
        for (int a = A * dpn; a < (A + 1) * dpn; a++) {
            const float *row = T + (size_t)a * D;
            int cnt = 0;
            double remote = 0;
            for (int B = 0; B < N; B++) {
                int local = B == A;
                if (s->normal && !local) continue;
                stream_t *sd = local ? dn : di, *sc = local ? cn : ci;
                for (int d = B * dpn; d < (B + 1) * dpn; d++) {
                    double v = row[d];
                    if (v <= 0) continue;
                    cnt++;
                    if (d == a) continue;
                    sd[d].pieces++;
                    sc[d].pieces = 1;
                    sc[d].bytes += v * hc;
                    if (!local) remote += v;
                    moved += v;
                }
            }
            cw[a] = cnt;
            if (!s->normal) {
                node[A] += remote;
                tot += remote;
                worst = ms_dmax(worst, remote);
                continue;
            }
            const float *tn = TNm(s, m, l) + (size_t)a * N;
            for (int b = 0; b < N; b++) {
                if (tn[b] <= 0) continue;
                int f = b * dpn + idx_of(s, a);
                di[f].pieces++;
                ci[f].pieces = 1;
                ci[f].bytes += tn[b] * hc;
                cw[a]++;
                moved += tn[b];
            }
            const float *fw = FWm(s, m, l) + (size_t)a * dpn;
            for (int j = 0; j < dpn; j++) {
                if (fw[j] <= 0) continue;
                int d = A * dpn + j;
                fwt[a]++;
                if (d == a) {
                    dw[a]++;
                    continue;
                }
                dn[d].pieces++;
                cn[d].pieces = 1;
                cn[d].bytes += fw[j] * hc;
                moved += fw[j];
            }
        }
    for (int d = 0; d < D; d++) dw[d] += (dn[d].pieces > 0) + (!s->normal && di[d].pieces > 0);
    if (!s->normal) {
        const hw_t *hw = &s->c.hw;
        double C = hw->nic_bw * hw->eff_nic, best = worst > 0 ? C * tot / worst : C;
        if (s->spine)
            for (int b = 0; b < N; b++)
                if (node[b] > 0) best = ms_dmin(best, dpn * C / s->c.spine_oversub * tot / node[b]);
        for (int ph = 0; ph < 2; ph++)
            net_set_cap(s->net, s->l_tok + (int)(ml(s, m, l) * 2 + (size_t)ph), best);
    }
    return moved;
}

static void run_flow(step_sim_t *s, int64_t t0) {
    int D = s->D;
    for (int m = 0; m < s->M; m++)
        for (int l = 0; l < s->L; l++) {
            double tok = init_phase(s, m, l);
            set_peer_bytes(s, m, l, tok);
            s->res->dispatch_bytes += tok * s->hd;
            s->res->combine_bytes += tok * s->hc;
        }
    if (s->obs) { /* inputs already complete (nothing to wait for) count from the start */
        size_t n = (size_t)s->M * s->L * D;
        for (size_t i = 0; i < 2 * n; i++) s->ob_t[i] = t0;
        for (size_t i = 2 * n; i < 3 * n; i++) s->ob_t[i] = -1; /* experts not ended yet */
    }
    eng_reset(s->eng, t0);
    net_clear(s->net);
    s->pre_end = t0;
    for (int d = 0; d < D; d++) s->cpu[d] = (cpu_t){.head = 0};
    memset(s->mb_done, 0, (size_t)D * sizeof *s->mb_done);
    for (int d = 0; d < D; d++) cpu_push(s, d, T_PRE, 0, 0, s->pre_ns[d]);
    uint64_t solves0 = net_stats(s->net).solves;
    s->res->events = eng_run_until(s->eng, ENG_NEVER);
    s->res->net_solves = net_stats(s->net).solves - solves0;
    s->res->pre_ns = s->pre_end - t0;
    s->res->post_ns = llround(dmax_of(s->post_ns, D));
    int64_t prev = s->pre_end;
    for (int l = 0; l < s->L; l++) {
        s->layer_ns[l] = s->layer_end[l] > prev ? s->layer_end[l] - prev : 0;
        if (s->layer_end[l] > prev) prev = s->layer_end[l];
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
    enum step_a2a a2a = s->c.a2a == STEP_A2A_AUTO
                            ? (in->prefill ? STEP_A2A_NORMAL : STEP_A2A_LOW_LATENCY)
                            : s->c.a2a;
    s->normal = a2a == STEP_A2A_NORMAL && s->N > 1;
    s->hd = s->m.hidden * (double)s->m.dispatch_bytes;
    s->hc = s->m.hidden * (double)s->m.combine_bytes;
    alloc_slots(s, lo);
    int flow = s->c.mode == STEP_FLOW;
    if (rt) {
        memset(s->dev_load, 0, (size_t)L * D * sizeof *s->dev_load);
        memset(s->expert_load, 0, (size_t)L * s->E * sizeof *s->expert_load);
        build_tokens(s, in);
    } else {
        build_counts(s, in);
        if (flow) counts_to_traffic(s);
    }
    if (s->tables && s->normal) build_forwards(s);
    expert_times(s, lo);
    device_times(s, in);
    int64_t t0 = in->start_ns;
    out->start_ns = out->end_ns = t0;
    for (int l = 0; l < L; l++) s->layer_end[l] = t0;
    if (flow) run_flow(s, t0);
    else run_analytic(s, t0);
    add_background(s, in, out);
    out->layer_ns = s->layer_ns;
    out->n_layers = L;
    out->dev_load = s->dev_load;
    out->expert_load = s->expert_load;
    out->expert_ns = s->exp_ns;
    return MS_OK;
}
