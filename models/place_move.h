/* place_move: what moving from one layout to another costs in weight copies,
 * and helpers that make re-planning migration-aware for any strategy. They
 * count copies as sim/migr.c makes them, keep experts where they already are
 * without changing any device's load, and choose among nearly equal layouts.
 *
 * How a strategy uses them (include "place_move.h"), in its replan:
 *
 *     place_layout_t *next = ...;                  // the layout it planned
 *     if (place_move_keep(cur, next) < 0) ...;     // same PAR, fewest copies
 *     if (place_move_copies(cur, next) == 0) { place_layout_free(next); return 0; }
 *
 * or, with several candidate layouts of about the same quality:
 *
 *     int i = place_move_pick(cur, cands, n, loads, 0.01);  // within 1% of the
 *                                                          // best, fewest copies
 *
 * place_move_keep costs about 1 ms of CPU at EP32 and 6 ms at EP144 for
 * 58 layers (bench_place), so a strategy with a tight planning budget may
 * leave it to the run loop ([placement] replan_min_move), which applies it
 * outside the strategy's planning time.
 *
 * place_move_gain() predicts, from loads the strategy trusts, how much the
 * busiest devices' load (summed over layers) drops. Whether a re-plan pays
 * for its copies in time is judged by the run loop for every strategy
 * (sim/replan.c, [placement] replan_horizon_steps), which knows the links:
 * strategies need not do it themselves. */
#ifndef MOESIM_PLACE_MOVE_H
#define MOESIM_PLACE_MOVE_H

#include <stdint.h>

#include "place.h"

/* Weight copies that turn layer l of cur into that of next: on each device,
 * one per replica of an expert beyond those the device already holds (a
 * replica moving between slots of one device costs nothing), exactly as
 * sim/migr.c diffs a re-plan. -1 when the layers' shapes differ. */
int64_t place_move_layer_copies(const place_layout_t *cur, const place_layout_t *next, int l);
/* The same summed over layers (-1 when the layouts' shapes differ). Bytes
 * are copies x the model's bytes per expert (moe_expert_bytes). */
int64_t place_move_copies(const place_layout_t *cur, const place_layout_t *next);

/* Rewrites next, layer by layer, so that as many replicas as possible stay
 * on the device that holds them in cur: whole nodes' contents are permuted
 * among nodes and, within a node, whole devices' contents among its devices
 * (an optimal assignment at both levels), and on each device an expert that
 * stays keeps its slot. Every device's set of experts moves as a block, so
 * the multiset of per-device loads, hence PAR, is unchanged for any loads,
 * and no node is split. A layer never gets more copies than before (it is
 * left as it was when the permutation would not help). Returns the copies
 * saved (>= 0), or MS_ERR when the layouts' shapes differ. */
int64_t place_move_keep(const place_layout_t *cur, place_layout_t *next);

/* Sum over layers of the busiest device's load of layout lo under expert
 * loads w[n_layers][n_experts], each split evenly over its replicas: what
 * the step time follows. */
double place_move_max_load(const place_layout_t *lo, const double *w);

/* Predicted relative drop of that sum when next replaces cur:
 * 1 - max_load(next) / max_load(cur); 0 when cur carries nothing, negative
 * when next is worse. */
double place_move_gain(const place_layout_t *cur, const place_layout_t *next, const double *w);

/* Among n candidate layouts, those whose max_load under w is within
 * (1 + tol) of the best one's, the one needing the fewest copies from cur
 * (ties: the lowest index). Returns its index, or MS_ERR (n < 1 or a
 * shape that does not match cur). */
int place_move_pick(const place_layout_t *cur, place_layout_t *const *cand, int n,
                    const double *w, double tol);

#endif
