/* step_analytic: a step in closed form, about a thousand times faster
 * than the flow mode: the busiest port of each phase and the slowest device.
 *
 * Per layer and micro-batch: A = slowest attention, S =
 * slowest shared expert, X = slowest routed-expert GEMM, and each phase's
 * time = hop latency + busiest port's bytes / bandwidth (NVLink and NIC in
 * parallel in low-latency mode, IB then NVLink in normal mode); layer =
 * A + max(dispatch, S) + X + combine. With overlap the layer is
 * max(sum of compute, sum of communication) over both micro-batches. */
#include "step_int.h"

#include <assert.h>
#include <math.h>

/* ---- ports (analytic mode, and the byte counters of both modes) */

/* Port token counts of one (micro-batch, layer) from the traffic tables. */
static ports_t ports_from_tables(step_sim_t *s, int m, int l, double *disp_tok) {
    int D = s->D, N = s->N, dpn = s->dpn;
    assert(!s->cq); /* count mode takes ports_from_counts */
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
    step_meet_probs(s, m, l);
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
    if (p->has_nvl) nvl = port_ns(&s->lk[NVL], p->nvl * bytes_per_tok * s->ov_comm, peer, lat);
    if (p->has_nic) {
        double b = p->nic;
        if (s->c.spine_oversub > 1 && s->N > 1)
            b = ms_dmax(b, p->spine * s->c.spine_oversub / s->dpn);
        nic = port_ns(&s->lk[NIC], b * bytes_per_tok, peer, lat);
    }
    return s->normal && p->has_fwd ? nvl + nic : ms_dmax(nvl, nic);
}

void step_run_analytic(step_sim_t *s, int64_t t0) {
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

