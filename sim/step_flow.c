/* step_flow: a step as events on the step's engine, the all-to-all as
 * max-min fair flows over NVLink and NIC ports (models/net.h).
 *
 * Each device is a compute server running its tasks one at a
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
 * real time. */
#include "step_int.h"

#include <assert.h>
#include <math.h>
#include <string.h>

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
    tvec_t col = Tcol(s, m, l, d);
    if (k == NVL) {
        const float *fw = s->normal ? FWm(s, m, l) + j : NULL;
        for (int i = 0; i < dpn; i++) {
            int x = B * dpn + i;
            if (x == d) continue;
            double v = tv_at(&col, x) + (fw ? fw[(size_t)x * dpn] : 0);
            if (v > 0) {
                s->seen[n] = x;
                s->q[n++] = v;
            }
        }
    } else if (!s->normal) {
        for (int x = 0; x < D; x++) {
            double v = tv_at(&col, x);
            if (v > 0 && node_of(s, x) != B) {
                s->seen[n] = x;
                s->q[n++] = v;
            }
        }
    } else {
        for (int A = 0; A < s->N; A++) {
            int x = A * dpn + j;
            double v = TNat(s, m, l, x, B);
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
    } else if (s->cfast) {
        /* count mode, NVLink (the NIC took the branch above): every other
         * token owner of d's node, weighted by its tokens (t_x q_d over
         * their sum: q_d cancels) */
        const double *t = s->tok + (size_t)m * s->D;
        int B = node_of(s, d), dpn = s->dpn;
        double tot = 0;
        for (int x = B * dpn; x < (B + 1) * dpn; x++)
            if (x != d && t[x] > 0) {
                s->pl[np] = cpl + x;
                s->pw[np++] = t[x];
                tot += t[x];
            }
        for (int i = 1; i < np; i++) s->pw[i] /= tot;
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
    double ov = k == NVL ? s->ov_comm : 1; /* overlap's contention, as bytes too */
    net_start(s->net, np, s->pl, s->pw, st->bytes * ov / ramp, lat, on_flow, s,
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
    if (s->cfast) {
        const double *t = s->tok + (size_t)m * D;
        int *cw = s->comb_wait + mld(s, m, l, 0), B = node_of(s, d);
        if (k == NVL) {
            for (int x = B * dpn; x < (B + 1) * dpn; x++)
                if (x != d && t[x] > 0 && --cw[x] == 0) try_advance(s, m, l, x);
            return;
        }
        /* every token owner of another node waits on every NIC stream out
         * of B's devices: a node's owners are released together, when the
         * last stream they wait on has arrived (each owner's wait counts
         * them one by one, as the table path does) */
        int *left = s->nc_left + ml(s, m, l) * s->N, *all = s->nc_all + ml(s, m, l) * s->N;
        for (int A = 0; A < s->N; A++) {
            if (A == B || --left[A]) continue;
            for (int x = A * dpn; x < (A + 1) * dpn; x++) {
                if (!(t[x] > 0)) continue;
                assert(cw[x] >= all[A]);
                if ((cw[x] -= all[A]) == 0) try_advance(s, m, l, x);
            }
        }
        return;
    }
    if (!s->normal) { /* column d of T: x's tokens on d */ /* every token owner of the stream's kind waits on it */
        int *cw = s->comb_wait + mld(s, m, l, 0), B = node_of(s, d);
        tvec_t col = Tcol(s, m, l, d);
        for (int A = 0; A < s->N; A++) {
            if ((A == B) != (k == NVL)) continue;
            for (int x = A * dpn; x < (A + 1) * dpn; x++)
                if (x != d && tv_at(&col, x) > 0 && --cw[x] == 0) try_advance(s, m, l, x);
        }
        return;
    }
    /* normal mode (copied: the notifications start streams, which reuse
     * s->seen) */
    int nc = counterparts(s, m, l, k, d);
    memcpy(s->cps, s->seen, (size_t)nc * sizeof *s->cps);
    const float *FW = s->normal ? FWm(s, m, l) : NULL;
    for (int i = 0; i < nc; i++) {
        int x = s->cps[i];
        if (!s->normal || k == NIC) {
            comb_dec(s, m, l, x);
            continue;
        }
        if (Tat(s, m, l, x, d) > 0) comb_dec(s, m, l, x);
        if (FW[(size_t)x * dpn + idx_of(s, d)] > 0) fwd_dec(s, m, l, x);
    }
}

/* Device a's dispatch leaves after its attention: its piece of every
 * stream it feeds (node by node, so the link kind needs no division). */
static void send_dispatch_counts(step_sim_t *s, int m, int l, int a) {
    int A = node_of(s, a), dpn = s->dpn, D = s->D;
    if (!(s->tok[(size_t)m * D + a] > 0)) return; /* no tokens: no piece anywhere */
    const double *q = s->cq + mld(s, m, l, 0);
    stream_t *dn = stream(s, m, l, DISP, NVL, 0), *di = stream(s, m, l, DISP, NIC, 0);
    int *wait = s->nd_wait + ml(s, m, l) * s->N;
    for (int B = 0; B < s->N; B++) {
        if (B == A) {
            for (int d = A * dpn; d < (A + 1) * dpn; d++)
                if (d != a && q[d] > 0 && --dn[d].pieces == 0) start_stream(s, m, l, DISP, NVL, d);
        } else if (--wait[B] == 0) { /* a was the last sender B's NIC streams awaited */
            for (int d = B * dpn; d < (B + 1) * dpn; d++)
                if (di[d].pieces > 0) {
                    di[d].pieces = 0;
                    start_stream(s, m, l, DISP, NIC, d);
                }
        }
    }
}

static void send_dispatch(step_sim_t *s, int m, int l, int a) {
    if (s->cfast) {
        send_dispatch_counts(s, m, l, a);
        return;
    }
    int A = node_of(s, a), dpn = s->dpn;
    double hd = s->hd;
    tvec_t row = Trow(s, m, l, a);
    for (int B = 0; B < s->N; B++) {
        if (s->normal && B != A) continue;
        int k = B == A ? NVL : NIC;
        stream_t *st = stream(s, m, l, DISP, k, 0);
        for (int d = B * dpn; d < (B + 1) * dpn; d++) {
            float v = tv_at(&row, d);
            if (d == a || v <= 0) continue;
            st[d].bytes += v * hd;
            if (--st[d].pieces == 0) start_stream(s, m, l, DISP, k, d);
        }
    }
    if (!s->normal) return;
    for (int b = 0; b < s->N; b++) {
        float v = TNat(s, m, l, a, b);
        if (v > 0) join(s, m, l, DISP, NIC, b * dpn + idx_of(s, a), v * hd);
    }
}

/* Device d's experts are done: results leave (combine streams' bytes were
 * totalled in init_phase). */
static void send_combine(step_sim_t *s, int m, int l, int d) {
    if (s->cfast ? s->tok[(size_t)m * s->D + d] > 0 && s->cq[mld(s, m, l, d)] > 0
                 : Tat(s, m, l, d, d) > 0)
        comb_dec(s, m, l, d);
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

/* The token side's capacity of (m, l)'s NIC phases in low-latency mode
 * (init_phase says why): tot tokens cross nodes, worst from one device,
 * node[b] from node b. */
static void token_side_caps(step_sim_t *s, int m, int l, double tot, double worst,
                            const double *node) {
    const hw_t *hw = &s->c.hw;
    double C = hw->nic_bw * hw->eff_nic, best = worst > 0 ? C * tot / worst : C;
    if (s->spine)
        for (int b = 0; b < s->N; b++)
            if (node[b] > 0) best = ms_dmin(best, s->dpn * C / s->c.spine_oversub * tot / node[b]);
    for (int ph = 0; ph < 2; ph++)
        net_set_cap(s->net, s->l_tok + (int)(ml(s, m, l) * 2 + (size_t)ph), best);
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
            int cnt = 0;
            double remote = 0;
            tvec_t row = Trow(s, m, l, a);
            for (int B = 0; B < N; B++) {
                int local = B == A;
                if (s->normal && !local) continue;
                stream_t *sd = local ? dn : di, *sc = local ? cn : ci;
                for (int d = B * dpn; d < (B + 1) * dpn; d++) {
                    double v = tv_at(&row, d);
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
            for (int b = 0; b < N; b++) {
                double v = TNat(s, m, l, a, b);
                if (v <= 0) continue;
                int f = b * dpn + idx_of(s, a);
                di[f].pieces++;
                ci[f].pieces = 1;
                ci[f].bytes += v * hc;
                cw[a]++;
                moved += v;
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
    if (!s->normal) token_side_caps(s, m, l, tot, worst, node);
    return moved;
}

/* init_phase in count mode, low latency, in O(D): the traffic t_a q_d has
 * rank one, so a pair carries tokens iff t_a > 0 and q_d > 0, a stream's
 * pieces are the senders of its node (NVLink) or of the other nodes (NIC),
 * and its bytes are q_d times their tokens. The sums are formed in closed
 * form (as the analytic mode's ports_from_counts does), not as D^2 rounded
 * entries: the bytes differ from a table's sum in the last bits. */
static double init_phase_counts(step_sim_t *s, int m, int l) {
    int D = s->D, N = s->N;
    size_t base = mld(s, m, l, 0);
    int *dw = s->disp_wait + base, *cw = s->comb_wait + base;
    memset(s->fwd_wait + base, 0, (size_t)D * sizeof *s->fwd_wait);
    memset(s->flags + base, 0, (size_t)D);
    stream_t *dn = stream(s, m, l, DISP, NVL, 0), *di = stream(s, m, l, DISP, NIC, 0);
    stream_t *cn = stream(s, m, l, COMB, NVL, 0), *ci = stream(s, m, l, COMB, NIC, 0);
    memset(dn, 0, (size_t)D * 2 * sizeof *dn);
    memset(cn, 0, (size_t)D * 2 * sizeof *cn);
    const double *t = s->tok + (size_t)m * D, *q = s->cq + base;
    double *TB = s->nscr, *QB = TB + N, *node = s->nodes;
    int *nsB = (int *)(QB + N), *nqB = nsB + N; /* two [N] ints in the last 2N doubles */
    double Tt = 0, Q = 0, tq = 0;
    int ns = 0, nq = 0;
    for (int b = 0; b < N; b++) TB[b] = QB[b] = node[b] = 0, nsB[b] = nqB[b] = 0;
    for (int d = 0; d < D; d++) {
        int b = node_of(s, d), on = t[d] > 0, rx = q[d] > 0;
        TB[b] += t[d];
        QB[b] += q[d];
        nsB[b] += on;
        nqB[b] += rx;
        ns += on;
        nq += rx;
        Tt += t[d];
        Q += q[d];
        tq += t[d] * q[d];
    }
    double hd = s->hd, hc = s->hc, tot = 0, worst = 0;
    int *wait = s->nd_wait + ml(s, m, l) * N, *left = s->nc_left + ml(s, m, l) * N;
    int *all = s->nc_all + ml(s, m, l) * N;
    for (int A = 0; A < N; A++) {
        wait[A] = ns - nsB[A];
        /* a NIC combine stream leaves every receiving device of another
         * node: each has a sender outside its node (A's owners, if any) */
        left[A] = all[A] = nq - nqB[A];
    }
    for (int d = 0; d < D; d++) {
        int B = node_of(s, d);
        cw[d] = t[d] > 0 ? nq : 0; /* every receiving device, itself included */
        if (t[d] > 0) {
            double remote = t[d] * (Q - QB[B]);
            node[B] += remote;
            tot += remote;
            worst = ms_dmax(worst, remote);
        }
        dw[d] = 0;
        if (!(q[d] > 0)) continue;
        int nvl = nsB[B] - (t[d] > 0), nic = ns - nsB[B];
        double tl = TB[B] - t[d], tr = Tt - TB[B];
        if (nvl > 0) {
            dn[d] = (stream_t){.pieces = nvl, .bytes = q[d] * tl * hd};
            cn[d] = (stream_t){.pieces = 1, .bytes = q[d] * tl * hc};
            dw[d]++;
        }
        if (nic > 0) {
            di[d] = (stream_t){.pieces = nic, .bytes = q[d] * tr * hd};
            ci[d] = (stream_t){.pieces = 1, .bytes = q[d] * tr * hc};
            dw[d]++;
        }
    }
    token_side_caps(s, m, l, tot, worst, node);
    return Tt * Q - tq; /* every pair a != d */
}

void step_run_flow(step_sim_t *s, int64_t t0) {
    int D = s->D;
    s->cfast = s->cq && !s->normal && !s->pairwise;
    for (int m = 0; m < s->M; m++)
        for (int l = 0; l < s->L; l++) {
            double tok = s->cfast ? init_phase_counts(s, m, l) : init_phase(s, m, l);
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

