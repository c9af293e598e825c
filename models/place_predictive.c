/* place_predictive: a placement planned for the loads to come rather than
 * the loads seen. It forecasts each expert's load (the observed share shrunk
 * towards uniform, smoothed over windows), takes EPLB's replica counts for
 * that forecast, and packs replicas so that every device's load stays low
 * under the drift the forecast will meet (mean plus a multiple of its
 * standard deviation, experts of one routing group drifting together).
 *
 * Each idea is a parameter that switches it off (docs/strategies.md has the
 * measured ablation):
 *   shrink, prior_tokens   shrink the observed shares towards uniform: by a
 *                          fixed fraction (drift between workloads regresses
 *                          the hottest experts towards the mean) and by the
 *                          weight of a pseudo-count against the tokens the
 *                          shares rest on (sampling noise)
 *   risk, drift            pack on mean + risk x sd of each device's load,
 *                          an expert's sd being drift x its load (plus the
 *                          spread measured over recent windows, history)
 *   group_corr             correlation of the drift of experts in one expert
 *                          group (group-limited routing moves whole groups):
 *                          spreads a group's experts over devices
 *   moves                  local search swaps that lower the riskiest device
 *   smooth, history        in runs: exponential smoothing of the per-window
 *                          shares, and the spread over the last windows as
 *                          the measured drift
 *   repair_copies          in runs: a re-plan repairs the serving layout
 *                          (swaps, spare replicas retargeted) with at most
 *                          this many expert copies a layer, instead of a
 *                          fresh plan that moves most weights
 *   replan_drift           in runs: re-plan only when a window has drifted
 *                          this far from what the layout was planned on (a
 *                          shift), restarting the forecast from that window
 *   coactivation,          from a per-token trace (an earlier dump): experts
 *   coact_slack            chosen by the same tokens swapped onto one node
 *                          where balance allows, so a token's experts touch
 *                          fewer nodes */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"
#include "place_eplb.h"
#include "trace.h"
#include "util.h"

/* Defaults. shrink, risk, drift and group_corr were chosen by
 * leave-one-out cross-validation over the DeepSeek-V3 trace pairs
 * (docs/strategies.md says how); the rest are structural. */
#define PRED_SHRINK 0.15
#define PRED_PRIOR_TOKENS 1000.0
#define PRED_RISK 1.0
#define PRED_DRIFT 0.5
#define PRED_GROUP_CORR 1.0
#define PRED_MOVES 0
#define PRED_SMOOTH 0.5
#define PRED_HISTORY 4
#define PRED_WINDOW 1000
#define PRED_INTERVAL 1000
#define PRED_REPLAN_DRIFT 0.0
#define PRED_COACT_SLACK 0.0
#define PRED_COACT_PASSES 20

/* One replica to pack: its expert, mean load and load sd. */
typedef struct pred_item {
    double r, s;
    int e;
} pred_item_t;

struct place_state {
    int L, E, D, dpn, P, spd, top_k;
    int G, gsize;               /* expert groups for the correlation (G 1: none) */
    double shrink, prior_tokens, risk, drift, rho, smooth;
    int moves, history, window, interval;
    /* forecasting in runs */
    double *acc;                /* [L][E] loads of the open window */
    int acc_steps, since;
    double *fc;                 /* [L][E] smoothed shares (each layer sums to 1) */
    double *fc_tokens;          /* [L] pairs the forecast rests on (smoothed) */
    int have_fc;
    double *hist;               /* [history][L][E] shares of the last windows */
    int hist_next, hist_used;
    int replans, shifts, shift_pending;
    double replan_drift;        /* re-plan only after a window this far (mean L1) from planned */
    int repair_copies;          /* re-plans repair the serving layout with at most this many
                                 * expert copies a layer (0: plan afresh) */
    double *planned;            /* [L][E] shares the current layout was planned on */
    /* scratch, sized once */
    double *mu, *sd;            /* [L][E] forecast load (mean 1 per expert) and sd */
    int *phy2log, *logcnt;      /* [L][P], [L][E] EPLB's answer (counts used) */
    pred_item_t *item;          /* [P] */
    double *m, *q, *gs, *g2;    /* [D], [D], [D][G], [D] device mean, var, group sums */
    int *cnt, *slot;            /* [D], [D][spd] items on each device */
    int *mark;                  /* [D] expert of the last item put there */
    int *room;                  /* [D] devices with a free slot */
    double *rk;                 /* [D] each device's risk: mean + risk x sd */
    /* co-activation (NULL when off) */
    double coact_slack;
    double *co;                 /* [L][E][E] tokens choosing both e and f, per token */
    int *onnode;                /* [N][E] replicas of each expert on each node */
    int N;
};

static void pred_destroy(place_state_t *s) {
    if (!s) return;
    free(s->acc);
    free(s->fc);
    free(s->fc_tokens);
    free(s->planned);
    free(s->hist);
    free(s->mu);
    free(s->sd);
    free(s->phy2log);
    free(s->logcnt);
    free(s->item);
    free(s->m);
    free(s->q);
    free(s->gs);
    free(s->g2);
    free(s->cnt);
    free(s->slot);
    free(s->mark);
    free(s->room);
    free(s->rk);
    free(s->co);
    free(s->onnode);
    free(s);
}

static int item_cmp(const void *pa, const void *pb) {
    const pred_item_t *a = pa, *b = pb;
    if (a->r != b->r) return a->r > b->r ? -1 : 1;
    return (a->e > b->e) - (a->e < b->e);
}

/* Variance of device d's load: independent part plus the group part. */
static inline double dev_var(const place_state_t *s, double q, double g2) {
    return (1 - s->rho) * q + s->rho * g2;
}

static inline double risk_of(const place_state_t *s, double m, double var) {
    return m + s->risk * sqrt(var > 0 ? var : 0);
}

static inline int group_of(const place_state_t *s, int e) { return s->G > 1 ? e / s->gsize : 0; }

/* Moves item it onto device d (sign +1) or off it (-1). */
static void dev_add(place_state_t *s, int d, const pred_item_t *it, double sign) {
    double *gd = s->gs + (size_t)d * s->G;
    int g = group_of(s, it->e);
    s->m[d] += sign * it->r;
    s->q[d] += sign * it->s * it->s;
    double old = gd[g];
    gd[g] += sign * it->s;
    s->g2[d] += gd[g] * gd[g] - old * old;
    s->rk[d] = risk_of(s, s->m[d], dev_var(s, s->q[d], s->g2[d]));
}

/* Mean and variance of device d with item `out` taken off and item `in`
 * put on (either may be NULL). */
static void dev_swap(const place_state_t *s, int d, const pred_item_t *out, const pred_item_t *in,
                     double *mean, double *var) {
    const double *gd = s->gs + (size_t)d * s->G;
    double m = s->m[d], q = s->q[d], g2 = s->g2[d];
    int go = out ? group_of(s, out->e) : -1, gi = in ? group_of(s, in->e) : -1;
    if (out) {
        m -= out->r;
        q -= out->s * out->s;
    }
    if (in) {
        m += in->r;
        q += in->s * in->s;
    }
    if (out && in && go == gi) {
        double v = gd[go] - out->s + in->s;
        g2 += v * v - gd[go] * gd[go];
    } else {
        if (out) g2 += (gd[go] - out->s) * (gd[go] - out->s) - gd[go] * gd[go];
        if (in) g2 += (gd[gi] + in->s) * (gd[gi] + in->s) - gd[gi] * gd[gi];
    }
    *mean = m;
    *var = dev_var(s, q, g2);
}

/* 1 when mean + risk x sqrt(var) < lim, without a square root: most
 * candidates a scan meets fail this test, and a root per candidate was the
 * planner's largest cost. */
static inline int risk_below(const place_state_t *s, double mean, double var, double lim) {
    double t = lim - mean;
    if (t <= 0) return 0;
    return s->risk * s->risk * (var > 0 ? var : 0) < t * t;
}

static int dev_holds(const place_state_t *s, int d, int e, int skip) {
    for (int k = 0; k < s->cnt[d]; k++)
        if (k != skip && s->item[s->slot[(size_t)d * s->spd + k]].e == e) return 1;
    return 0;
}

/* Co-activation mass of expert e's partners that share no node with it:
 * expected partner pairs per token that cross nodes, from e's side. */
static double sep_cost(const place_state_t *s, const double *co, int e) {
    int E = s->E;
    double c = 0;
    for (int g = 0; g < E; g++) {
        if (co[(size_t)e * E + g] <= 0) continue;
        int together = 0;
        for (int n = 0; n < s->N && !together; n++)
            together = s->onnode[(size_t)n * E + e] && s->onnode[(size_t)n * E + g];
        if (!together) c += co[(size_t)e * E + g];
    }
    return c;
}

static void onnode_swap(place_state_t *s, int na, int ea, int nb, int eb) {
    int E = s->E;
    s->onnode[(size_t)na * E + ea]--, s->onnode[(size_t)nb * E + ea]++;
    s->onnode[(size_t)nb * E + eb]--, s->onnode[(size_t)na * E + eb]++;
}

/* After the packing: swaps of replicas between devices of different nodes
 * that put co-activated experts together, each taken only if it lowers the
 * cross-node partner mass and keeps both devices' risk within coact_slack
 * of the layer's riskiest device. On one slot a device the device loads
 * only trade places, so balance is untouched. */
static void coact_pass(place_state_t *s, const double *co) {
    int D = s->D, spd = s->spd;
    double rmax = 0;
    for (int d = 0; d < D; d++) rmax = ms_dmax(rmax, s->rk[d]);
    double lim = rmax * (1 + s->coact_slack) * (1 + 1e-12);
    for (int pass = 0; pass < PRED_COACT_PASSES; pass++) {
        int improved = 0;
        for (int da = 0; da < D; da++)
            for (int ka = 0; ka < spd; ka++)
                for (int db = da + 1; db < D; db++) {
                    int na = da / s->dpn, nb = db / s->dpn;
                    if (na == nb) continue;
                    for (int kb = 0; kb < spd; kb++) {
                        int ia = s->slot[(size_t)da * spd + ka];
                        int ib = s->slot[(size_t)db * spd + kb];
                        const pred_item_t *a = &s->item[ia], *b = &s->item[ib];
                        if (a->e == b->e || dev_holds(s, db, a->e, kb) ||
                            dev_holds(s, da, b->e, ka))
                            continue;
                        double before = sep_cost(s, co, a->e) + sep_cost(s, co, b->e);
                        onnode_swap(s, na, a->e, nb, b->e);
                        double after = sep_cost(s, co, a->e) + sep_cost(s, co, b->e);
                        double m1, v1, m2, v2;
                        int ok = after < before - 1e-12;
                        if (ok) {
                            dev_swap(s, da, a, b, &m1, &v1);
                            dev_swap(s, db, b, a, &m2, &v2);
                            ok = risk_of(s, m1, v1) <= lim && risk_of(s, m2, v2) <= lim;
                        }
                        if (!ok) {
                            onnode_swap(s, na, b->e, nb, a->e); /* undo */
                            continue;
                        }
                        dev_add(s, da, a, -1);
                        dev_add(s, db, b, -1);
                        dev_add(s, da, b, 1);
                        dev_add(s, db, a, 1);
                        s->slot[(size_t)da * spd + ka] = ib;
                        s->slot[(size_t)db * spd + kb] = ia;
                        improved = 1;
                    }
                }
        if (!improved) break;
    }
}

/* Packs one layer: items heaviest first, each onto the device with room
 * (not holding its expert) whose risk it raises least; then up to `moves`
 * swaps that lower the riskiest device. Writes slot_expert[P]. */
static void pack_layer(place_state_t *s, int l, const double *mu, const double *sd,
                       const int *cnt, int *slot_expert) {
    int E = s->E, D = s->D, spd = s->spd, n = 0;
    const double *co = s->co ? s->co + (size_t)l * E * E : NULL;
    for (int e = 0; e < E; e++)
        for (int c = 0; c < cnt[e]; c++)
            s->item[n++] = (pred_item_t){.r = mu[e] / cnt[e], .s = sd[e] / cnt[e], .e = e};
    qsort(s->item, (size_t)n, sizeof *s->item, item_cmp);
    memset(s->m, 0, (size_t)D * sizeof *s->m);
    memset(s->q, 0, (size_t)D * sizeof *s->q);
    memset(s->g2, 0, (size_t)D * sizeof *s->g2);
    memset(s->gs, 0, (size_t)D * s->G * sizeof *s->gs);
    memset(s->cnt, 0, (size_t)D * sizeof *s->cnt);
    memset(s->rk, 0, (size_t)D * sizeof *s->rk);
    for (int d = 0; d < D; d++) s->mark[d] = -1;
    int used = 0; /* devices 0..used-1 hold items, the rest are empty */
    int nroom = D; /* room[0..nroom-1]: the devices with a free slot */
    for (int d = 0; d < D; d++) s->room[d] = d;
    for (int i = 0; i < n; i++) {
        const pred_item_t *it = &s->item[i];
        /* An empty device always costs least (its mean and variance become
         * the item's own), so the scan is over the used devices only until
         * none is empty. */
        int best = -1, bi = -1;
        double bs = 0;
        if (used < D) best = used++;
        else /* backwards: the lightest devices were filled last */
            for (int k = nroom - 1; k >= 0; k--) {
                int d = s->room[k];
                if (s->mark[d] == it->e) continue; /* holds a copy already */
                double mean, var;
                /* adding an item raises a device's risk by at least its
                 * mean (the variance only grows): most devices stop here */
                if (best >= 0 && s->rk[d] + it->r >= bs) continue;
                dev_swap(s, d, NULL, it, &mean, &var);
                if (best >= 0 && !risk_below(s, mean, var, bs)) continue;
                best = d, bi = k;
                bs = risk_of(s, mean, var);
            }
        if (best < 0) /* every device with room holds it (more copies than
                       * devices): the least loaded with room takes another */
            for (int k = 0; k < nroom; k++)
                if (best < 0 || s->m[s->room[k]] < s->m[best]) best = s->room[k], bi = k;
        s->slot[(size_t)best * spd + s->cnt[best]++] = i;
        s->mark[best] = it->e; /* an expert's copies are consecutive items */
        if (s->cnt[best] == spd) { /* full: out of the devices with room */
            if (bi < 0)
                for (bi = 0; s->room[bi] != best; bi++) {}
            s->room[bi] = s->room[--nroom];
        }
        dev_add(s, best, it, 1);
    }
    for (int mv = 0; mv < s->moves; mv++) {
        int dm = 0;
        double rm = -1;
        for (int d = 0; d < D; d++)
            if (s->rk[d] > rm) rm = s->rk[d], dm = d;
        double best = rm * (1 - 1e-12);
        int bk = -1, bd = -1, bt = -1;
        for (int k = 0; k < spd; k++) {
            const pred_item_t *a = &s->item[s->slot[(size_t)dm * spd + k]];
            for (int d = 0; d < D; d++) {
                if (d == dm) continue;
                for (int t = 0; t < spd; t++) {
                    const pred_item_t *b = &s->item[s->slot[(size_t)d * spd + t]];
                    if (b->e == a->e || b->r >= a->r) continue;
                    double m1, v1, m2, v2;
                    if (s->m[dm] - a->r + b->r >= best || s->m[d] - b->r + a->r >= best) continue;
                    dev_swap(s, dm, a, b, &m1, &v1);
                    if (!risk_below(s, m1, v1, best)) continue;
                    dev_swap(s, d, b, a, &m2, &v2);
                    if (!risk_below(s, m2, v2, best) || dev_holds(s, d, a->e, t) ||
                        dev_holds(s, dm, b->e, k))
                        continue;
                    best = ms_dmax(risk_of(s, m1, v1), risk_of(s, m2, v2));
                    bk = k, bd = d, bt = t;
                }
            }
        }
        if (bk < 0) break;
        int ia = s->slot[(size_t)dm * spd + bk], ib = s->slot[(size_t)bd * spd + bt];
        dev_add(s, dm, &s->item[ia], -1);
        dev_add(s, bd, &s->item[ib], -1);
        dev_add(s, dm, &s->item[ib], 1);
        dev_add(s, bd, &s->item[ia], 1);
        s->slot[(size_t)dm * spd + bk] = ib;
        s->slot[(size_t)bd * spd + bt] = ia;
    }
    if (co) {
        memset(s->onnode, 0, (size_t)s->N * E * sizeof *s->onnode);
        for (int p = 0; p < s->P; p++)
            s->onnode[(size_t)(p / spd / s->dpn) * E + s->item[s->slot[p]].e]++;
        coact_pass(s, co);
    }
    for (int p = 0; p < s->P; p++) slot_expert[p] = s->item[s->slot[p]].e;
}

/* Forecast of layer l into mu (mean 1 per expert) and sd, from shares p
 * (summing to 1, or all 0) resting on `pairs` token-expert pairs, and the
 * windows' spread when history has at least two. */
static void forecast_layer(place_state_t *s, int l, const double *p, double pairs) {
    int E = s->E;
    double tokens = s->top_k > 0 ? pairs / s->top_k : pairs;
    double lam = s->prior_tokens > 0 ? s->prior_tokens / (s->prior_tokens + tokens) : 0;
    lam = s->shrink + (1 - s->shrink) * lam;
    double tot = 0;
    for (int e = 0; e < E; e++) tot += p[e];
    if (tot <= 0) lam = 1;
    double *mu = s->mu + (size_t)l * E, *sd = s->sd + (size_t)l * E;
    for (int e = 0; e < E; e++) {
        double share = tot > 0 ? p[e] / tot : 0;
        mu[e] = E * ((1 - lam) * share + lam / E);
        sd[e] = s->drift * mu[e];
    }
    int H = s->hist_used < s->history ? s->hist_used : s->history;
    if (H < 2) return;
    for (int e = 0; e < E; e++) { /* spread of the last H windows' shares */
        double a = 0, b = 0;
        for (int h = 0; h < H; h++) {
            double v = E * s->hist[((size_t)h * s->L + l) * E + e];
            a += v;
            b += v * v;
        }
        double var = b / H - (a / H) * (a / H);
        sd[e] = sqrt(sd[e] * sd[e] + (var > 0 ? var * H / (H - 1) : 0));
    }
}

static int plan(place_state_t *s, place_layout_t **out);

/* ---- repair: a re-plan that starts from the serving layout ---- */

/* Sets every replica of expert e (item index = slot in repair) to its load
 * over c copies, keeping the device figures right. */
static void repair_count(place_state_t *s, const double *mu, const double *sd, int e, int c) {
    for (int p = 0; p < s->P; p++) {
        pred_item_t *it = &s->item[p];
        if (it->e != e) continue;
        dev_add(s, p / s->spd, it, -1);
        it->r = mu[e] / c, it->s = sd[e] / c;
        dev_add(s, p / s->spd, it, 1);
    }
}

/* Slot p now holds a new replica of f instead of its expert (which keeps
 * at least one). */
static void repair_retarget(place_state_t *s, const double *mu, const double *sd, int *cnt, int p,
                            int f) {
    pred_item_t *it = &s->item[p];
    int a = it->e, d = p / s->spd;
    dev_add(s, d, it, -1);
    cnt[a]--, cnt[f]++;
    *it = (pred_item_t){.r = mu[f] / cnt[f], .s = sd[f] / cnt[f], .e = f};
    dev_add(s, d, it, 1);
    repair_count(s, mu, sd, a, cnt[a]);
    repair_count(s, mu, sd, f, cnt[f]);
}

static double max_risk(const place_state_t *s, int *dm) {
    double rm = -1;
    for (int d = 0; d < s->D; d++)
        if (s->rk[d] > rm) rm = s->rk[d], *dm = d;
    return rm;
}

static int slot_holds(const place_state_t *s, int d, int e, int skip) {
    for (int k = 0; k < s->spd; k++) {
        int p = d * s->spd + k;
        if (p != skip && s->item[p].e == e) return 1;
    }
    return 0;
}

/* Layer l of cur, improved for the new forecast by at most repair_copies
 * expert copies: each step the swap of two replicas (2 copies) or the
 * retarget of a spare replica to an expert of the riskiest device (1 copy)
 * that lowers the riskiest device most; stops when none does. Writes
 * slot_expert[P]. */
static void repair_layer(place_state_t *s, const place_layer_t *cur, const double *mu,
                         const double *sd, int *cnt, int *slot_expert) {
    int D = s->D, spd = s->spd, P = s->P, E = s->E;
    memset(s->m, 0, (size_t)D * sizeof *s->m);
    memset(s->q, 0, (size_t)D * sizeof *s->q);
    memset(s->g2, 0, (size_t)D * sizeof *s->g2);
    memset(s->gs, 0, (size_t)D * s->G * sizeof *s->gs);
    memset(s->rk, 0, (size_t)D * sizeof *s->rk);
    for (int e = 0; e < E; e++) cnt[e] = cur->replicas[e];
    for (int p = 0; p < P; p++) {
        int e = cur->slot_expert[p];
        s->item[p] = (pred_item_t){.r = mu[e] / cnt[e], .s = sd[e] / cnt[e], .e = e};
        dev_add(s, p / spd, &s->item[p], 1);
    }
    for (int budget = s->repair_copies; budget > 0;) {
        int dm = 0, bp = -1, bq = -1, bf = -1;
        double rm = max_risk(s, &dm), best = rm * (1 - 1e-9);
        for (int k = 0; k < spd; k++) { /* swaps of a replica on dm */
            int p = dm * spd + k;
            const pred_item_t *a = &s->item[p];
            for (int q = 0; q < P && budget >= 2; q++) {
                int d = q / spd;
                const pred_item_t *b = &s->item[q];
                if (d == dm || b->e == a->e || b->r >= a->r) continue;
                double m1, v1, m2, v2;
                dev_swap(s, dm, a, b, &m1, &v1);
                if (!risk_below(s, m1, v1, best)) continue;
                dev_swap(s, d, b, a, &m2, &v2);
                if (!risk_below(s, m2, v2, best) || slot_holds(s, d, a->e, q) ||
                    slot_holds(s, dm, b->e, p))
                    continue;
                double others = 0;
                for (int x = 0; x < D; x++)
                    if (x != dm && x != d) others = ms_dmax(others, s->rk[x]);
                double v = ms_dmax(ms_dmax(risk_of(s, m1, v1), risk_of(s, m2, v2)), others);
                if (v < best) best = v, bp = p, bq = q, bf = -1;
            }
        }
        for (int k = 0; k < spd; k++) { /* a spare replica retargeted to dm's expert */
            int f = s->item[dm * spd + k].e;
            for (int q = 0; q < P; q++) {
                int a = s->item[q].e, d = q / spd, dd;
                if (d == dm || a == f || cnt[a] < 2 || slot_holds(s, d, f, -1)) continue;
                repair_retarget(s, mu, sd, cnt, q, f);
                double v = max_risk(s, &dd);
                repair_retarget(s, mu, sd, cnt, q, a); /* undo */
                if (v < best) best = v, bp = -1, bq = q, bf = f;
            }
        }
        if (bq < 0) break;
        if (bf >= 0) {
            repair_retarget(s, mu, sd, cnt, bq, bf);
            budget -= 1;
        } else {
            pred_item_t a = s->item[bp], b = s->item[bq];
            dev_add(s, bp / spd, &a, -1);
            dev_add(s, bq / spd, &b, -1);
            s->item[bp] = b, s->item[bq] = a;
            dev_add(s, bp / spd, &b, 1);
            dev_add(s, bq / spd, &a, 1);
            budget -= 2;
        }
    }
    for (int p = 0; p < P; p++) slot_expert[p] = s->item[p].e;
}

static int repair(place_state_t *s, const place_layout_t *cur, place_layout_t **out) {
    place_layout_t *lo = place_layout_new(s->L, s->E, s->D, s->dpn);
    for (int l = 0; l < s->L; l++) {
        int *se = s->phy2log + (size_t)l * s->P;
        if (cur->layer[l].n_slots != s->P) { /* another slot count: plan it afresh */
            place_layout_free(lo);
            return plan(s, out);
        }
        repair_layer(s, &cur->layer[l], s->mu + (size_t)l * s->E, s->sd + (size_t)l * s->E,
                     s->logcnt + (size_t)l * s->E, se);
        if (place_layer_set(lo, l, s->spd, se)) {
            place_layout_free(lo);
            return MS_ERR;
        }
    }
    *out = lo;
    return MS_OK;
}

/* Plans every layer from the forecast in s->mu, s->sd into a new layout. */
static int plan(place_state_t *s, place_layout_t **out) {
    if (place_eplb(s->mu, s->L, s->E, s->P, 1, 1, s->D, s->phy2log, s->logcnt)) return MS_ERR;
    place_layout_t *lo = place_layout_new(s->L, s->E, s->D, s->dpn);
    for (int l = 0; l < s->L; l++) {
        int *se = s->phy2log + (size_t)l * s->P; /* reused as the packed layer */
        pack_layer(s, l, s->mu + (size_t)l * s->E, s->sd + (size_t)l * s->E,
                   s->logcnt + (size_t)l * s->E, se);
        if (place_layer_set(lo, l, s->spd, se)) {
            place_layout_free(lo);
            return MS_ERR;
        }
    }
    *out = lo;
    return MS_OK;
}

/* Co-activation of the per-token trace at path: per layer, how many tokens
 * (per token of the trace) chose both e and f. where names the key in
 * messages. */
static int load_coact(place_state_t *s, const char *path, const char *where) {
    trace_t *t = NULL;
    if (trace_read(path, &t)) return MS_ERR;
    int rc = MS_OK;
    if (t->kind != TRACE_TOKENS)
        rc = ms_err("%s: %s holds counts, not per-token routing (co-activation needs a per-token "
                    "trace, e.g. a JSONL of each token's experts)", where, path);
    else if (t->n_layers != s->L || t->n_experts != s->E)
        rc = ms_err("%s: %s has %d MoE layers x %d experts, the run %d x %d (give a trace of the "
                    "same model)", where, path, t->n_layers, t->n_experts, s->L, s->E);
    if (rc) {
        trace_free(t);
        return rc;
    }
    int E = s->E, K = t->top_k;
    s->co = ms_calloc((size_t)s->L * E * E, sizeof *s->co);
    for (int i = 0; i < t->n_tokens; i++)
        for (int l = 0; l < s->L; l++) {
            const int16_t *x = t->tok_experts + ((size_t)i * s->L + l) * K;
            double *c = s->co + (size_t)l * E * E;
            for (int a = 0; a < K; a++)
                for (int b = 0; b < K; b++)
                    if (a != b && x[a] >= 0 && x[b] >= 0 && x[a] != x[b]) c[x[a] * E + x[b]]++;
        }
    for (size_t i = 0; i < (size_t)s->L * E * E && t->n_tokens > 0; i++) s->co[i] /= t->n_tokens;
    trace_free(t);
    return MS_OK;
}

static int pred_init(const place_env_t *env, const double *prior, place_state_t **st,
                     place_layout_t **out) {
    const char *sec = place_param_section(env, "strategy.predictive");
    int E = env->n_experts, D = env->n_devices, P = E + env->redundant;
    if (place_check_slots(env, "predictive: ")) return MS_ERR;
    double shrink, prior_tokens, risk, drift, rho, smooth, replan_drift;
    long moves, history, window, interval, groups, repair_copies;
    if (place_param_double(env, sec, "shrink", PRED_SHRINK, 0, 1, &shrink) ||
        place_param_double(env, sec, "prior_tokens", PRED_PRIOR_TOKENS, 0, 1e18, &prior_tokens) ||
        place_param_double(env, sec, "risk", PRED_RISK, 0, 100, &risk) ||
        place_param_double(env, sec, "drift", PRED_DRIFT, 0, 100, &drift) ||
        place_param_double(env, sec, "group_corr", PRED_GROUP_CORR, 0, 1, &rho) ||
        place_param_double(env, sec, "smooth", PRED_SMOOTH, 1e-6, 1, &smooth) ||
        place_param_int(env, sec, "moves", PRED_MOVES, 0, 1000000, &moves) ||
        place_param_int(env, sec, "history", PRED_HISTORY, 1, 1000, &history) ||
        place_param_int(env, sec, "window_steps", PRED_WINDOW, 1, 100000000, &window) ||
        place_param_int(env, sec, "interval_steps", PRED_INTERVAL, 0, 100000000, &interval) ||
        place_param_double(env, sec, "replan_drift", PRED_REPLAN_DRIFT, 0, 2, &replan_drift) ||
        place_param_int(env, sec, "repair_copies", 0, 0, 1000000, &repair_copies) ||
        place_param_int(env, sec, "groups", env->n_groups > 0 ? env->n_groups : 1, 1, 1 << 20, &groups))
        return MS_ERR;
    const char *coact = NULL;
    double coact_slack;
    if (place_param_str(env, sec, "coactivation", "none", &coact) ||
        place_param_double(env, sec, "coact_slack", PRED_COACT_SLACK, 0, 100, &coact_slack))
        return MS_ERR;
    if (E % groups)
        return ms_err("%s: [%s] groups = %ld does not divide %d experts (give a divisor, or 1 "
                      "for no group correlation)",
                      env->cfg ? cfg_where(env->cfg, sec, "groups") : sec, sec, groups, E);
    place_state_t *s = ms_calloc(1, sizeof *s);
    s->L = env->n_layers, s->E = E, s->D = D, s->dpn = env->devices_per_node, s->P = P;
    s->spd = P / D, s->top_k = env->top_k;
    s->G = (int)groups, s->gsize = E / (int)groups;
    s->shrink = shrink, s->prior_tokens = prior_tokens, s->risk = risk, s->drift = drift;
    s->rho = s->G > 1 ? rho : 0, s->smooth = smooth;
    s->moves = (int)moves, s->history = (int)history;
    s->window = (int)window, s->interval = (int)interval;
    s->replan_drift = replan_drift;
    s->repair_copies = (int)repair_copies;
    size_t LE = (size_t)s->L * E;
    s->acc = ms_calloc(LE, sizeof *s->acc);
    s->fc = ms_calloc(LE, sizeof *s->fc);
    s->fc_tokens = ms_calloc((size_t)s->L, sizeof *s->fc_tokens);
    s->planned = ms_calloc(LE, sizeof *s->planned);
    s->hist = ms_calloc(LE * (size_t)s->history, sizeof *s->hist);
    s->mu = ms_malloc(LE * sizeof *s->mu);
    s->sd = ms_malloc(LE * sizeof *s->sd);
    s->phy2log = ms_malloc((size_t)s->L * P * sizeof *s->phy2log);
    s->logcnt = ms_malloc(LE * sizeof *s->logcnt);
    s->item = ms_malloc((size_t)P * sizeof *s->item);
    s->m = ms_malloc((size_t)D * sizeof *s->m);
    s->q = ms_malloc((size_t)D * sizeof *s->q);
    s->g2 = ms_malloc((size_t)D * sizeof *s->g2);
    s->gs = ms_malloc((size_t)D * s->G * sizeof *s->gs);
    s->cnt = ms_malloc((size_t)D * sizeof *s->cnt);
    s->slot = ms_malloc((size_t)P * sizeof *s->slot);
    s->N = env->n_nodes > 0 ? env->n_nodes : (D + s->dpn - 1) / s->dpn;
    s->coact_slack = coact_slack;
    if (coact && strcmp(coact, "none")) {
        char path[4096];
        ms_path_beside(cfg_origin(env->cfg), coact, path, sizeof path);
        if (load_coact(s, path, cfg_where(env->cfg, sec, "coactivation"))) {
            pred_destroy(s);
            return MS_ERR;
        }
        s->onnode = ms_malloc((size_t)s->N * E * sizeof *s->onnode);
    }
    s->mark = ms_malloc((size_t)D * sizeof *s->mark);
    s->room = ms_malloc((size_t)D * sizeof *s->room);
    s->rk = ms_malloc((size_t)D * sizeof *s->rk);
    /* The prior is the first forecast: shares and the pairs they rest on. */
    for (int l = 0; l < s->L; l++) {
        const double *w = prior ? prior + (size_t)l * E : NULL;
        double tot = 0;
        for (int e = 0; e < E && w; e++) tot += w[e];
        for (int e = 0; e < E; e++) s->fc[(size_t)l * E + e] = tot > 0 ? w[e] / tot : 0;
        s->fc_tokens[l] = tot;
        forecast_layer(s, l, s->fc + (size_t)l * E, tot);
    }
    s->have_fc = prior != NULL;
    memcpy(s->planned, s->fc, LE * sizeof *s->planned);
    if (plan(s, out)) {
        pred_destroy(s);
        return MS_ERR;
    }
    *st = s;
    return MS_OK;
}

/* Closes the open window: its shares join the history and the smoothed
 * forecast. */
static void close_window(place_state_t *s) {
    int E = s->E, used = 0;
    double *h = s->hist + (size_t)s->hist_next * s->L * E, drift = 0;
    for (int l = 0; l < s->L; l++) {
        double *a = s->acc + (size_t)l * E, tot = 0, d = 0;
        for (int e = 0; e < E; e++) tot += a[e];
        for (int e = 0; e < E; e++) {
            h[(size_t)l * E + e] = tot > 0 ? a[e] / tot : 0;
            d += fabs(h[(size_t)l * E + e] - s->planned[(size_t)l * E + e]);
        }
        if (tot > 0) drift += d, used++;
    }
    drift = used ? drift / used : 0;
    /* A shift: this window is too far from what the layout was planned on.
     * The old regime is gone, so the forecast and the spread restart from
     * this window instead of smoothing towards it. */
    int shift = s->replan_drift > 0 && drift > s->replan_drift;
    if (shift) {
        s->shift_pending = 1;
        s->shifts++;
        s->hist_used = 0;
    }
    for (int l = 0; l < s->L; l++) {
        double *a = s->acc + (size_t)l * E, *f = s->fc + (size_t)l * E, tot = 0;
        for (int e = 0; e < E; e++) tot += a[e];
        double alpha = s->have_fc && !shift ? s->smooth : 1;
        for (int e = 0; e < E; e++) {
            if (tot > 0) f[e] = alpha * h[(size_t)l * E + e] + (1 - alpha) * f[e];
            a[e] = 0;
        }
        if (tot > 0) s->fc_tokens[l] = alpha * tot + (1 - alpha) * s->fc_tokens[l];
    }
    if (shift) /* the restarted ring holds this window first */
        memmove(s->hist, h, (size_t)s->L * E * sizeof *h), s->hist_next = 0;
    s->have_fc = 1;
    s->hist_next = (s->hist_next + 1) % s->history;
    if (s->hist_used < s->history) s->hist_used++;
    s->acc_steps = 0;
}

static void pred_observe(place_state_t *s, const place_obs_t *obs) {
    if (!s->interval) return;
    size_t LE = (size_t)s->L * s->E;
    for (size_t i = 0; i < LE; i++) s->acc[i] += obs->expert_load[i];
    s->since++;
    if (++s->acc_steps >= s->window) close_window(s);
}

static int pred_replan(place_state_t *s, int64_t now_ns, const place_layout_t *cur,
                       place_layout_t **out) {
    (void)now_ns;
    if (!s->interval || s->since < s->interval || !s->hist_used) return 0;
    s->since = 0;
    if (s->replan_drift > 0 && !s->shift_pending) return 0; /* no shift: the layout stands */
    s->shift_pending = 0;
    for (int l = 0; l < s->L; l++)
        forecast_layer(s, l, s->fc + (size_t)l * s->E, s->fc_tokens[l]);
    place_layout_t *lo;
    if (s->repair_copies ? repair(s, cur, &lo) : plan(s, &lo)) return MS_ERR;
    if (place_layout_same(cur, lo)) {
        place_layout_free(lo);
        return 0;
    }
    s->replans++;
    memcpy(s->planned, s->fc, (size_t)s->L * s->E * sizeof *s->planned);
    *out = lo;
    return 1;
}

static int pred_metrics(place_state_t *s, const char **names, double *values, int max) {
    const char *n[] = {"predictive_replans", "predictive_shifts"};
    double v[] = {s->replans, s->shifts};
    return place_metrics_out(n, v, (int)(sizeof v / sizeof *v), names, values, max);
}

const place_ops_t place_predictive_ops = {
    .version = 1,
    .name = "predictive",
    .color = "#ff7f0e",
    .point = 15,
    .summary = "plans for the loads to come: shrunk, smoothed forecast; EPLB replica counts; "
               "drift-aware packing",
    .algo_version = 1,
    .init = pred_init,
    .observe = pred_observe,
    .replan = pred_replan,
    .metrics = pred_metrics,
    .destroy = pred_destroy,
};
