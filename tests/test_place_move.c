/* Migration-aware helpers (models/place_move.c): copy counts derived by hand,
 * the keep-in-place pass moving whole device contents only (so device loads
 * and PAR stay exactly what they were) and never adding copies, optimal on
 * every small case checked exhaustively, and the choice among candidates. */
#include <criterion/criterion.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"
#include "place_move.h"
#include "util.h"

/* One-layer layout from a slot -> expert list. */
static place_layout_t *one_layer(int E, int D, int dpn, int spd, const int *se) {
    place_layout_t *lo = place_layout_new(1, E, D, dpn);
    cr_assert_eq(place_layer_set(lo, 0, spd, se), MS_OK);
    return lo;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Device loads of layer l under w, sorted: PAR and every order statistic
 * follow from them. */
static void sorted_loads(const place_layout_t *lo, int l, const double *w, double *out) {
    place_device_load(lo, l, w + (size_t)l * lo->n_experts, out);
    qsort(out, (size_t)lo->n_devices, sizeof *out, cmp_dbl);
}

Test(place_move, copies_by_hand) {
    /* 2 devices of 2 slots, 3 experts: cur d0{0,1} d1{2,0}; next d0{1,0}
     * (same set, reordered: free), d1{2,2}: one copy of 2 (d1 holds one
     * already, so a second replica is a copy) and expert 0 leaves. */
    int a[] = {0, 1, 2, 0}, b[] = {1, 0, 2, 2};
    place_layout_t *cur = one_layer(3, 2, 2, 2, a), *next = one_layer(3, 2, 2, 2, b);
    cr_expect_eq(place_move_copies(cur, next), 1);
    cr_expect_eq(place_move_copies(next, cur), 1);
    cr_expect_eq(place_move_copies(cur, cur), 0);
    place_layout_t *other = place_layout_new(1, 3, 4, 2);
    cr_expect_eq(place_move_copies(cur, other), -1, "shapes differ");
    place_layout_free(other);
    place_layout_free(cur);
    place_layout_free(next);
}

/* A planner that relabels devices moves everything for nothing: keep undoes
 * the relabelling, and the result is the current layout itself. */
Test(place_move, relabelled_layout_moves_nothing) {
    int a[] = {0, 1, 2, 3, 4, 5, 6, 7};
    int b[] = {7, 6, 4, 5, 3, 2, 1, 0}; /* nodes swapped, devices swapped, slots reversed */
    place_layout_t *cur = one_layer(8, 4, 2, 2, a), *next = one_layer(8, 4, 2, 2, b);
    cr_expect_eq(place_move_copies(cur, next), 8);
    cr_expect_eq(place_move_keep(cur, next), 8);
    cr_expect_eq(place_move_copies(cur, next), 0);
    cr_expect_arr_eq(next->layer[0].slot_expert, a, sizeof a);
    place_layout_free(cur);
    place_layout_free(next);
}

/* The constructed case of the brief: strictly fewer copies, same loads. */
Test(place_move, strictly_fewer_copies_same_par) {
    /* 2 nodes x 2 devices x 2 slots, 6 experts + 2 redundant (0 and 1
     * hot). The planner's layout puts the current node 0's contents on
     * node 1 and the other way round, with one real change. */
    int a[] = {0, 2, 1, 3, 0, 4, 1, 5};
    int b[] = {0, 4, 1, 5, 0, 2, 3, 1};
    place_layout_t *cur = one_layer(6, 4, 2, 2, a), *next = one_layer(6, 4, 2, 2, b);
    double w[6] = {40, 30, 7, 5, 3, 2}, before[4], after[4];
    sorted_loads(next, 0, w, before);
    double par0 = place_par_mean(next, w);
    int64_t c0 = place_move_copies(cur, next);
    int64_t saved = place_move_keep(cur, next);
    int64_t c1 = place_move_copies(cur, next);
    cr_expect_gt(saved, 0);
    cr_expect_eq(c0 - c1, saved);
    cr_expect_lt(c1, c0, "strictly fewer copies (%lld, was %lld)", (long long)c1, (long long)c0);
    sorted_loads(next, 0, w, after);
    cr_expect_arr_eq(before, after, sizeof before, "device loads are only permuted");
    cr_expect_eq(place_par_mean(next, w), par0, "PAR identical");
    place_layout_free(cur);
    place_layout_free(next);
}

/* Random layouts with replicas: keep never adds copies, every device's
 * contents move as a block and no node is split (so loads are permuted
 * exactly: integer loads, replicas of 1, 2 or 4 divide exactly), and on
 * 2 nodes x 2 devices the result is the best over all 8 block
 * permutations. */
static void random_layer(gsl_rng *r, int E, int S, int *se) {
    for (int s = 0; s < S; s++) se[s] = s < E ? s : (int)gsl_rng_uniform_int(r, (unsigned)E);
    gsl_ran_shuffle(r, se, (size_t)S, sizeof *se);
}

static int same_multiset(const int *x, const int *y, int n) {
    int used[16] = {0};
    for (int s = 0; s < n; s++) {
        int hit = 0;
        for (int t = 0; t < n && !hit; t++)
            if (!used[t] && y[t] == x[s]) used[t] = hit = 1;
        if (!hit) return 0;
    }
    return 1;
}

/* Replicas kept under the block permutation: next's node A on node
 * nodes[A], its device i on device dev[A][i] of that node. */
static int kept_under(const int *a, const int *b, int spd, const int *nodes, int dev[2][2]) {
    int kept = 0;
    for (int A = 0; A < 2; A++)
        for (int i = 0; i < 2; i++) {
            const int *nb = b + (A * 2 + i) * spd, *ob = a + (nodes[A] * 2 + dev[A][i]) * spd;
            int used[8] = {0};
            for (int s = 0; s < spd; s++)
                for (int t = 0; t < spd; t++)
                    if (!used[t] && ob[t] == nb[s]) {
                        used[t] = 1;
                        kept++;
                        break;
                    }
        }
    return kept;
}

Test(place_move, random_keeps_loads_and_never_adds_copies) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 7);
    for (int it = 0; it < 300; it++) {
        int D = 4, dpn = 2, spd = 2 + (int)gsl_rng_uniform_int(r, 3), S = D * spd;
        int E = S - (int)gsl_rng_uniform_int(r, 3);
        int a[16], b[16];
        random_layer(r, E, S, a);
        random_layer(r, E, S, b);
        place_layout_t *cur = one_layer(E, D, dpn, spd, a), *next = one_layer(E, D, dpn, spd, b);
        double w[16], before[4], after[4];
        for (int e = 0; e < E; e++) w[e] = (double)(4 * gsl_rng_uniform_int(r, 100));
        int rep_ok = 1;
        for (int e = 0; e < E; e++) rep_ok &= 4 % next->layer[0].replicas[e] == 0;
        sorted_loads(next, 0, w, before);
        int64_t c0 = place_move_copies(cur, next);
        int64_t saved = place_move_keep(cur, next);
        int64_t c1 = place_move_copies(cur, next);
        cr_assert_geq(saved, 0);
        cr_assert_eq(c0 - c1, saved);
        sorted_loads(next, 0, w, after);
        if (rep_ok) cr_assert_arr_eq(before, after, sizeof before, "iteration %d", it);
        /* the exhaustive best over node swaps and in-node device swaps */
        int best = 0;
        for (int ns = 0; ns < 2; ns++)
            for (int d0 = 0; d0 < 2; d0++)
                for (int d1 = 0; d1 < 2; d1++) {
                    int nodes[2] = {ns, 1 - ns}, dev[2][2] = {{d0, 1 - d0}, {d1, 1 - d1}};
                    int k = kept_under(a, b, spd, nodes, dev);
                    if (k > best) best = k;
                }
        cr_assert_eq(c1, S - best, "iteration %d: %lld copies, best %d", it, (long long)c1,
                     S - best);
        /* every device of the result holds a device of the plan's
         * contents, and every node a node's (no node split) */
        const int *z = next->layer[0].slot_expert;
        for (int d = 0; d < D; d++) {
            int found = 0;
            for (int o = 0; o < D && !found; o++) found = same_multiset(z + d * spd, b + o * spd, spd);
            cr_assert(found, "iteration %d: device %d's contents are no device's of the plan", it, d);
        }
        for (int n = 0; n < D / dpn; n++) {
            int found = 0;
            for (int o = 0; o < D / dpn && !found; o++)
                found = same_multiset(z + n * dpn * spd, b + o * dpn * spd, dpn * spd);
            cr_assert(found, "iteration %d: node %d's contents are no node's of the plan", it, n);
        }
        place_layout_free(cur);
        place_layout_free(next);
    }
    gsl_rng_free(r);
}

Test(place_move, gain_and_pick) {
    /* 2 devices x 2 slots, 4 experts */
    int a[] = {0, 1, 2, 3}, b[] = {0, 2, 1, 3}, c[] = {0, 3, 1, 2}, d[] = {3, 0, 2, 1};
    double w[4] = {10, 8, 2, 1};
    place_layout_t *cur = one_layer(4, 2, 2, 2, a);
    place_layout_t *cand[3] = {one_layer(4, 2, 2, 2, b), one_layer(4, 2, 2, 2, c),
                               one_layer(4, 2, 2, 2, d)};
    /* cur: 18 | 3 -> max 18; b: 12 | 9 -> 12; c: 11 | 10 -> 11; d: 11 | 10 */
    cr_expect_float_eq(place_move_max_load(cur, w), 18.0, 1e-12);
    cr_expect_float_eq(place_move_gain(cur, cand[0], w), 1 - 12.0 / 18, 1e-12);
    cr_expect_float_eq(place_move_gain(cand[0], cur, w), 1 - 18.0 / 12, 1e-12);
    /* copies from cur: c: d0{0,3} vs {0,1}: 1, d1{1,2} vs {2,3}: 1;
     * d: d0{3,0}: 1, d1{2,1}: 1 */
    cr_expect_eq(place_move_copies(cur, cand[1]), 2);
    cr_expect_eq(place_move_copies(cur, cand[2]), 2);
    /* tol 0: c and d tie on load and copies: the lower index */
    cr_expect_eq(place_move_pick(cur, cand, 3, w, 0), 1);
    /* cur itself as a candidate: 0 copies but load 18, outside 10% of
     * the best (11), inside 100% */
    place_layout_t *more[2] = {cand[1], one_layer(4, 2, 2, 2, a)};
    cr_expect_eq(place_move_pick(cur, more, 2, w, 0.1), 0);
    cr_expect_eq(place_move_pick(cur, more, 2, w, 1.0), 1);
    cr_expect_eq(place_move_pick(cur, more, 0, w, 1.0), MS_ERR);
    place_layout_free(more[1]);
    for (int i = 0; i < 3; i++) place_layout_free(cand[i]);
    place_layout_free(cur);
}
