/* step_traffic: the traffic tables and loads of a step, from per-token
 * routing (token mode) or from expert counts (count mode).
 *
 * T[s][d] is the number of distinct tokens of device s whose
 * experts include one on device d (a token goes to a device once however
 * many of its experts live there); TN[s][B] the tokens of s needing node B
 * (one IB copy per token per node in normal mode); FW[x][j] the tokens that
 * x=(B,i) forwards over NVLink to (B,j) in normal mode: those of the
 * sources (A,i), A != B, bound for (B,j). With two micro-batches each has
 * its own tables (first half of a device's tokens, second half). Count
 * mode stores no T or TN: their entries are t_s q_d and t_s qn_B, formed
 * when read (step_int.h, Tat), so its memory grows with devices, not
 * devices squared. */
#include "step_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- building the traffic */

/* The tables are allocated on first use: the analytic mode in count mode
 * never needs them (O(D) a layer instead of O(D^2)). */
static void alloc_traffic(step_sim_t *s) {
    s->tables = 1;
    size_t ML = (size_t)s->M * s->Lmax, D = (size_t)s->D;
    if (!s->FW) s->FW = ms_malloc(ML * D * (size_t)s->dpn * sizeof *s->FW);
    if (s->T) return;
    s->T = ms_malloc(ML * D * D * sizeof *s->T);
    s->TN = ms_malloc(ML * D * (size_t)s->N * sizeof *s->TN);
}

void step_alloc_slots(step_sim_t *s, const place_layout_t *lo) {
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
void step_build_tokens(step_sim_t *s, const step_in_t *in) {
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
void step_build_counts(step_sim_t *s, const step_in_t *in) {
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
void step_meet_probs(step_sim_t *s, int m, int l) {
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

/* Count mode, flow: the expected traffic tables, as the meeting chances
 * they are made of (O(L D), not O(L D^2): Tat and TNat form an entry when
 * it is read). Only the normal mode's forwards are stored. */
void step_counts_to_traffic(step_sim_t *s) {
    int D = s->D, N = s->N;
    size_t ML = (size_t)s->M * s->Lmax;
    s->tables = 1;
    if (!s->cq_buf) {
        s->cq_buf = ms_malloc(ML * D * sizeof *s->cq_buf);
        s->cqn_buf = ms_malloc(ML * N * sizeof *s->cqn_buf);
    }
    if (s->normal && !s->FW) s->FW = ms_malloc(ML * D * (size_t)s->dpn * sizeof *s->FW);
    for (int m = 0; m < s->M; m++)
        for (int l = 0; l < s->L; l++) {
            step_meet_probs(s, m, l);
            memcpy(s->cq_buf + mld(s, m, l, 0), s->q, (size_t)D * sizeof *s->q);
            memcpy(s->cqn_buf + ml(s, m, l) * N, s->qn, (size_t)N * sizeof *s->qn);
        }
    s->cq = s->cq_buf;
    s->cqn = s->cqn_buf;
}

/* Normal mode: the NVLink forwards of each (micro-batch, layer). */
void step_build_forwards(step_sim_t *s) {
    int D = s->D, dpn = s->dpn, N = s->N;
    for (int m = 0; m < s->M; m++)
        for (int l = 0; l < s->L; l++) {
            float *FW = FWm(s, m, l);
            for (int x = 0; x < D; x++) {
                int B = node_of(s, x), i = idx_of(s, x);
                for (int j = 0; j < dpn; j++) {
                    int d = B * dpn + j;
                    double v = 0;
                    for (int A = 0; A < N; A++)
                        if (A != B) v += Tat(s, m, l, A * dpn + i, d);
                    FW[(size_t)x * dpn + j] = (float)v;
                }
            }
        }
}

