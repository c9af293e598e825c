/* place_bias: auxiliary-loss-free load balancing (DeepSeek-V3 report; Wang
 * et al. 2024, "Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-
 * Experts") at inference. Each expert of each layer carries a bias b_e that
 * is added to the router's scores for selection only (gate weights stay the
 * unbiased scores, so the simulator's loads need nothing else); after every
 * step b_e += u * sign(mean load - load_e) from that step's loads.
 *
 * Selection is the run's routing (gate_select: DeepSeek-V3's group-limited
 * top-k, and node-limited when configured) on the biased scores, the very
 * routing replay applies to the unbiased ones, so at zero bias this strategy
 * routes exactly as static. Experts outside the kept groups are excluded
 * outright (SGLang masks them with -inf; the HF reference fills 0.0, which
 * differs only when biased scores go negative).
 *
 * Placement is the static baseline's (contiguous, with its redundant copies
 * when [placement] redundant > 0); the strategy never re-plans. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"
#include "util.h"

#define BIAS_U 1e-3   /* update speed: best of 1e-4, 1e-3, 1e-2 in the paper */
#define BIAS_MAX_K TRACE_MAX_TOP_K /* route hook's out[] holds at most this many experts */

struct place_state {
    int L, E, k;
    gate_spec_t spec; /* the routing */
    float u;
    float *bias;          /* [L][E] */
    unsigned char *biased; /* [L] 1 once a layer's bias is not all zero */
    float *work;          /* [E] biased scores of the token being routed */
    /* metrics */
    double choices, deviated; /* token-expert choices, and those bias changed */
    double *unb_load;     /* [L][E] unbiased routing's loads of the open step */
    double *sum_load;     /* [L][E] actual loads over the run */
    double *sum_unb;      /* [L][E] unbiased loads over the run */
    int routed;           /* route was called during the open step */
    int steps, steps_unb;
    double vio_batch, vio_batch_unb, vio_first, vio_last;
};

static void bias_destroy(place_state_t *st) {
    if (!st) return;
    free(st->bias);
    free(st->biased);
    free(st->work);
    free(st->unb_load);
    free(st->sum_load);
    free(st->sum_unb);
    free(st);
}

extern const place_ops_t place_static_ops;

static int bias_init(const place_env_t *env, const double *prior, place_state_t **out_st,
                     place_layout_t **out) {
    (void)prior;
    const char *sec = place_param_section(env, "strategy.bias");
    double u;
    if (place_param_double(env, sec, "u", BIAS_U, 0, 1, &u)) return MS_ERR;
    if (env->cfg && cfg_has(env->cfg, sec, "group_limit"))
        return ms_err("%s: group_limit moved to [routing] group_limit, which every strategy "
                      "and the replay share (move the key there)",
                      cfg_where(env->cfg, sec, "group_limit"));
    int E = env->n_experts, k = env->top_k;
    gate_spec_t spec;
    if (env->gate) spec = *env->gate;
    else if (gate_spec_make(E, k, env->n_groups, env->topk_groups, 1, 0, "bias balancing", &spec))
        return MS_ERR;
    place_env_t base = *env;
    base.cfg = NULL;
    base.cfg_section = NULL;
    place_state_t *unused = NULL;
    if (place_static_ops.init(&base, NULL, &unused, out)) return MS_ERR;

    place_state_t *st = ms_calloc(1, sizeof *st);
    st->L = env->n_layers;
    st->E = E;
    st->k = k;
    st->spec = spec;
    st->u = (float)u;
    size_t LE = (size_t)st->L * E;
    st->bias = ms_calloc(LE, sizeof *st->bias);
    st->biased = ms_calloc((size_t)st->L, 1);
    st->work = ms_malloc((size_t)E * sizeof *st->work);
    st->unb_load = ms_calloc(LE, sizeof *st->unb_load);
    st->sum_load = ms_calloc(LE, sizeof *st->sum_load);
    st->sum_unb = ms_calloc(LE, sizeof *st->sum_unb);
    *out_st = st;
    return MS_OK;
}

static void bias_route(place_state_t *st, int layer, const float *scores, int *out) {
    int E = st->E, k = st->k;
    int ref[BIAS_MAX_K];
    gate_select(&st->spec, scores, ref); /* unbiased routing on the same scores */
    double *ul = st->unb_load + (size_t)layer * E;
    for (int j = 0; j < k; j++) ul[ref[j]] += 1;
    st->choices += k;
    st->routed = 1;
    if (!st->biased[layer]) {
        memcpy(out, ref, (size_t)k * sizeof *out);
        return;
    }
    const float *b = st->bias + (size_t)layer * E;
    for (int e = 0; e < E; e++) st->work[e] = scores[e] + b[e];
    gate_select(&st->spec, st->work, out);
    int same = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) same += out[i] == ref[j];
    st->deviated += k - same;
}

/* MaxVio = (max load - mean load) / mean load; 0 for an idle layer. */
static double maxvio(const double *load, int E) {
    double mx = 0, sum = 0;
    for (int e = 0; e < E; e++) {
        mx = ms_dmax(mx, load[e]);
        sum += load[e];
    }
    return sum > 0 ? (mx - sum / E) / (sum / E) : 0.0;
}

static void bias_observe(place_state_t *st, const place_obs_t *obs) {
    int E = st->E;
    double vio = 0, vio_unb = 0;
    for (int l = 0; l < st->L; l++) {
        const double *load = obs->expert_load + (size_t)l * E;
        double *ul = st->unb_load + (size_t)l * E;
        vio += maxvio(load, E) / st->L;
        vio_unb += maxvio(ul, E) / st->L;
        double mean = 0;
        for (int e = 0; e < E; e++) {
            mean += load[e] / E;
            st->sum_load[(size_t)l * E + e] += load[e];
            st->sum_unb[(size_t)l * E + e] += ul[e];
            ul[e] = 0;
        }
        /* Only this past step's loads steer the next step. */
        float *b = st->bias + (size_t)l * E;
        for (int e = 0; e < E; e++) {
            if (load[e] < mean) b[e] += st->u;
            else if (load[e] > mean) b[e] -= st->u;
            if (b[e] != 0.0f) st->biased[l] = 1;
        }
    }
    if (!st->steps) st->vio_first = vio;
    st->vio_last = vio;
    st->vio_batch += vio;
    st->steps++;
    if (st->routed) {
        st->vio_batch_unb += vio_unb;
        st->steps_unb++;
    }
    st->routed = 0;
}

static double global_vio(const place_state_t *st, const double *sum) {
    double v = 0;
    for (int l = 0; l < st->L; l++) v += maxvio(sum + (size_t)l * st->E, st->E) / st->L;
    return v;
}

static int bias_metrics(place_state_t *st, const char **names, double *values, int max) {
    double babs = 0;
    for (size_t i = 0; i < (size_t)st->L * st->E; i++) babs += fabsf(st->bias[i]);
    const char *n[] = {"bias_routing_deviation", "bias_maxvio_global",
                       "bias_maxvio_global_unbiased", "bias_maxvio_batch",
                       "bias_maxvio_batch_unbiased", "bias_maxvio_first_step",
                       "bias_maxvio_last_step", "bias_abs_mean"};
    double v[] = {st->choices > 0 ? st->deviated / st->choices : 0,
                  global_vio(st, st->sum_load),
                  st->steps_unb ? global_vio(st, st->sum_unb) : 0,
                  st->steps ? st->vio_batch / st->steps : 0,
                  st->steps_unb ? st->vio_batch_unb / st->steps_unb : 0,
                  st->vio_first,
                  st->vio_last,
                  babs / ((double)st->L * st->E)};
    return place_metrics_out(n, v, (int)(sizeof v / sizeof *v), names, values, max);
}

const place_ops_t place_bias_ops = {
    .version = 1,
    .name = "bias",
    .color = "#2ca02c",
    .point = 13,
    .summary = "auxiliary-loss-free bias balancing on router scores (static placement)",
    .algo_version = 1,
    .init = bias_init,
    .observe = bias_observe,
    .route = bias_route,
    .metrics = bias_metrics,
    .destroy = bias_destroy,
};
