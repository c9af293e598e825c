/* place_bound: a lower bound on the maximum device load of a layer that any
 * placement with the same slot budget could reach.
 *
 * The model: E experts with loads w[e], D devices, n_slots slots (at most
 * ceil(n_slots / D) on a device), every expert in at least one slot, and an
 * expert's load split over its replicas in ANY proportion (even splits, as
 * the placement papers count, are one case; token-level replica choice is
 * another). Three necessary conditions on a maximum device load M:
 *
 *  1. BestEP: M >= total / D.
 *  2. Hot experts: expert e spread over n devices puts at least w[e] / n
 *     on one of them, and n <= D; so e needs n_e(M) = ceil(w[e] / M) slots
 *     and the extra slots sum_e (n_e - 1) cannot exceed R = n_slots - E.
 *  3. Whole experts: every slot holds an expert, so at most R experts have a
 *     second replica; an expert with one replica puts its whole load on one
 *     device. Of the t heaviest experts at least t - s are whole, where s is
 *     the most experts that can be split: s(M) = h(M) + R - X(M) with h the
 *     experts heavier than M (they must split) and X their extra slots. If
 *     t - s > m*D, some device holds m + 1 of them: M >= the sum of the
 *     m + 1 lightest of the top t loads, for t = m*D + s + 1 and every m
 *     with m + 1 slots on a device.
 *
 * If M passes all three, so does every M' > M (X falls, s grows, the sums
 * shrink), so the smallest passing M is found by bisection; the bound is the
 * largest value seen to fail (or the closed-form start when that passes),
 * never above the optimum. Condition 3 is what the old bound lacked: with
 * one slot per expert and loads (2, 2, 2, 0) on 2 devices of 2 slots, the
 * mean says 3 but two loaded experts must share a device: 4. */
#include <gsl/gsl_sort.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"
#include "util.h"

/* Relative slack so rounding can only make a check pass, never fail. */
#define BOUND_EPS 1e-12

typedef struct bound_in {
    const double *ws; /* [E] loads sorted descending */
    int E, D, R, kmax;
    double total;
} bound_in_t;

/* Condition 3 for a given count s of split experts. */
static double whole_bound(const bound_in_t *b, int s) {
    double best = 0;
    for (int m = 1; m < b->kmax; m++) {
        long t = (long)m * b->D + s + 1;
        if (t > b->E) break;
        double sum = 0;
        for (long i = t - m - 1; i < t; i++) sum += b->ws[i];
        best = ms_dmax(best, sum);
    }
    return best;
}

/* 1 if M passes conditions 2 and 3 (condition 1 holds by construction). */
static int passes(const bound_in_t *b, double M) {
    if (M <= 0) return b->total <= 0;
    long extra = 0;
    int hot = 0;
    for (int e = 0; e < b->E && b->ws[e] > M; e++) {
        double q = b->ws[e] / M;
        long n = (long)ceil(q * (1 - BOUND_EPS));
        if (n > b->D) return 0;
        extra += n - 1;
        hot++;
        if (extra > b->R) return 0;
    }
    int s = hot + (int)(b->R - extra);
    return whole_bound(b, s) <= M * (1 + BOUND_EPS);
}

/* Condition 2 alone, exactly: handing extra slots one at a time to the
 * largest w / r (r <= D) minimises the largest w / r. */
static double hot_bound(const double *ws, int E, int D, int R) {
    int *r = ms_malloc((size_t)E * sizeof *r);
    for (int e = 0; e < E; e++) r[e] = 1;
    for (int extra = R; extra > 0; extra--) {
        int arg = -1;
        for (int e = 0; e < E; e++)
            if (r[e] < D && (arg < 0 || ws[e] * r[arg] > ws[arg] * r[e])) arg = e;
        if (arg < 0) break;
        r[arg]++;
    }
    double m = 0;
    for (int e = 0; e < E; e++) m = ms_dmax(m, ws[e] / r[e]);
    free(r);
    return m;
}

double place_bound(const double *w, int E, int D, int n_slots) {
    if (E < 1 || D < 1) return 0;
    double *ws = ms_malloc((size_t)E * sizeof *ws);
    memcpy(ws, w, (size_t)E * sizeof *ws);
    gsl_sort(ws, 1, (size_t)E);
    for (int i = 0; i < E / 2; i++) { /* descending */
        double t = ws[i];
        ws[i] = ws[E - 1 - i];
        ws[E - 1 - i] = t;
    }
    bound_in_t b = {.ws = ws, .E = E, .D = D, .R = ms_imax(n_slots - E, 0),
                    .kmax = (n_slots + D - 1) / D};
    for (int e = 0; e < E; e++) b.total += ws[e];

    double lo = ms_dmax(b.total / D, hot_bound(ws, E, D, b.R));
    lo = ms_dmax(lo, whole_bound(&b, b.R)); /* s <= R always */
    if (!passes(&b, lo)) {
        double hi = ms_dmax(b.total, lo);
        while (!passes(&b, hi)) hi *= 2; /* cannot loop: the total passes */
        for (int i = 0; i < 200 && hi - lo > hi * 1e-13; i++) {
            double mid = lo + (hi - lo) / 2;
            if (passes(&b, mid)) hi = mid;
            else lo = mid;
        }
    }
    free(ws);
    return lo;
}
