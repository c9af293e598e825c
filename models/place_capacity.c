/* place_capacity: a capacity-factor baseline, the routing-side fix the
 * DeepSeek-V3 report discusses (token dropping): in every layer and step a
 * device takes at most C x its mean load (the step's token-expert pairs over
 * the devices); a pair beyond that is dropped, or with reroute = true sent
 * to the token's next-best expert whose device still has room.
 *
 * Placement is the static baseline's (contiguous, its redundant copies when
 * [placement] redundant > 0) and never changes, so the comparison with the
 * placement strategies isolates what capping the load does. Pairs are
 * admitted first come, first served in token order (GShard's position
 * order); a pair's device is the replica place_pick_default gives the
 * token's source device. Re-routing ignores the group and node limits: it
 * takes the best-scoring expert the token does not already hold on any
 * device under the cap. Counts of dropped and re-routed pairs are stored
 * with the run (the strategy's metrics). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"
#include "util.h"

#define CAP_DEFAULT 1.25 /* a common capacity factor (GShard, Switch Transformer range 1-2) */

extern const place_ops_t place_static_ops;

struct place_state {
    int L, E, D, k;
    double factor;
    int reroute;
    gate_spec_t spec;
    place_layout_t *lo;  /* the (static) layout, for the pairs' devices */
    /* the open step */
    int n_tokens;
    const int *src;      /* [n_tokens] or NULL */
    double cap;          /* pairs a device may take per layer (INFINITY before any step) */
    int *next;           /* [L] token index of the next route call */
    int *load;           /* [L][D] pairs admitted */
    /* metrics */
    double pairs, dropped, rerouted, tokens, tokens_dropped;
};

static void cap_destroy(place_state_t *st) {
    if (!st) return;
    place_layout_free(st->lo);
    free(st->next);
    free(st->load);
    free(st);
}

static int cap_init(const place_env_t *env, const double *prior, place_state_t **out_st,
                    place_layout_t **out) {
    (void)prior;
    const char *sec = place_param_section(env, "strategy.capacity");
    double factor;
    int reroute;
    if (place_param_double(env, sec, "factor", CAP_DEFAULT, 1e-3, 1e6, &factor) ||
        place_param_bool(env, sec, "reroute", 0, &reroute))
        return MS_ERR;
    gate_spec_t spec;
    if (env->gate) spec = *env->gate;
    else if (gate_spec_make(env->n_experts, env->top_k, env->n_groups, env->topk_groups, 1, 0,
                            "capacity", &spec))
        return MS_ERR;
    place_env_t base = *env;
    base.cfg = NULL;
    base.cfg_section = NULL;
    place_state_t *unused = NULL;
    if (place_static_ops.init(&base, NULL, &unused, out)) return MS_ERR;
    place_state_t *st = ms_calloc(1, sizeof *st);
    st->L = env->n_layers;
    st->E = env->n_experts;
    st->D = env->n_devices;
    st->k = env->top_k;
    st->factor = factor;
    st->reroute = reroute;
    st->spec = spec;
    st->lo = place_layout_copy(*out);
    st->cap = INFINITY;
    st->next = ms_calloc((size_t)st->L, sizeof *st->next);
    st->load = ms_calloc((size_t)st->L * st->D, sizeof *st->load);
    *out_st = st;
    return MS_OK;
}

static void cap_begin(place_state_t *st, int step, int n_tokens, const int *src) {
    (void)step;
    st->n_tokens = n_tokens;
    st->src = src;
    st->cap = st->factor * n_tokens * st->k / st->D;
    memset(st->next, 0, (size_t)st->L * sizeof *st->next);
    memset(st->load, 0, (size_t)st->L * st->D * sizeof *st->load);
}

static int device_of(const place_state_t *st, int l, int e, int src) {
    const place_layer_t *ly = &st->lo->layer[l];
    return place_slot_device(ly, place_pick_default(st->lo, l, e, src));
}

static void cap_route(place_state_t *st, int l, const float *scores, int *out) {
    int k = st->k, E = st->E;
    gate_select(&st->spec, scores, out);
    int i = st->next[l]++;
    int src = st->src && i < st->n_tokens ? st->src[i] : i % st->D;
    int *load = st->load + (size_t)l * st->D, any = 0;
    int held[2 * TRACE_MAX_TOP_K], nh = k; /* the choices, and what replaced them */
    memcpy(held, out, (size_t)k * sizeof *held);
    for (int j = 0; j < k; j++) {
        int d = device_of(st, l, out[j], src);
        st->pairs++;
        if (load[d] + 1 <= st->cap) {
            load[d]++;
            continue;
        }
        int best = -1;
        if (st->reroute) /* the best-scoring expert not held, on a device with room */
            for (int e = 0; e < E; e++) {
                int h = 0;
                for (int m = 0; m < nh; m++) h |= held[m] == e;
                if (h || (best >= 0 && !(scores[e] > scores[best]))) continue;
                if (load[device_of(st, l, e, src)] + 1 <= st->cap) best = e;
            }
        if (best >= 0) {
            load[device_of(st, l, best, src)]++;
            held[nh++] = out[j] = best;
            st->rerouted++;
        } else {
            out[j] = -1;
            st->dropped++;
            any = 1;
        }
    }
    st->tokens++;
    st->tokens_dropped += any;
}

static int cap_metrics(place_state_t *st, const char **names, double *values, int max) {
    const char *n[] = {"capacity_pairs", "capacity_dropped_pairs", "capacity_rerouted_pairs",
                       "capacity_dropped_share", "capacity_rerouted_share",
                       "capacity_tokens_dropped_share"};
    double v[] = {st->pairs, st->dropped, st->rerouted,
                  st->pairs > 0 ? st->dropped / st->pairs : 0,
                  st->pairs > 0 ? st->rerouted / st->pairs : 0,
                  st->tokens > 0 ? st->tokens_dropped / st->tokens : 0};
    return place_metrics_out(n, v, (int)(sizeof v / sizeof *v), names, values, max);
}

const place_ops_t place_capacity_ops = {
    .version = 1,
    .name = "capacity",
    .summary = "capacity factor: pairs beyond C x a device's mean load dropped or re-routed "
               "(static placement)",
    .algo_version = 1,
    .color = "#9467bd",
    .point = 11,
    .init = cap_init,
    .route = cap_route,
    .begin_step = cap_begin,
    .metrics = cap_metrics,
    .destroy = cap_destroy,
};
