/* place_omni: Huawei OmniPlacement (omni-infer, omni_placement, MIT, 2025)
 * as read from the public code, and the "omni" strategy around it.
 *
 * The planner follows ExpertLoadBalancer in
 * omni/accelerators/placement/omni_placement/cpp/expert_load_balancer.cpp:
 *   select_best_layer_placement  gate on max/mean (1.1) and max/min (300),
 *                                one candidate per budget 0, D, 2D, ...,
 *                                adopt the best if < current - 0.05;
 *   allocate_expert_deployments  max-heap of load/copies (ties: lower id),
 *                                at most min(max_redundant_per_expert, D)
 *                                copies (PlacementOptimizer passes
 *                                max_redundant_per_expert - 1 as the limit of
 *                                extra copies);
 *   distribute_experts_to_ranks  instances by weight desc (ties: lower id),
 *                                each to the least-loaded rank (ties: lower
 *                                rank) without that expert and with fewer than
 *                                E/D + b/D instances, first free slot; then
 *                                the host interleave (logical rank i -> host
 *                                i mod H), falling back to no interleave when
 *                                the hosts do not fit.
 * Differences, all forced by moesim's layout having no empty slots: a
 * candidate whose budget cannot be spent (every expert at its copy limit) is
 * skipped instead of leaving slots empty; and when E is not a multiple of D
 * the budgets start at ceil(E/D) * D - E (for E % D == 0 they are exactly
 * 0, D, 2D, ...). Device loads of the current placement split each expert's
 * windowed load evenly over its replicas, as ClusterActivation's
 * getLogitExpertShiftActivateion does for the sliding window. */
#include "place_omni.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Experts in copy-allocation order: one entry per expert. */
typedef struct {
    double w; /* weight of each instance: load / copies */
    int e;
} omni_item_t;

struct place_omni_ws {
    int E, D, max_spd;
    int *dep;          /* [E] copies of each expert */
    int *eheap;        /* [E] experts that may take another copy */
    double *key;       /* [E] load / copies, 0 for an idle expert */
    omni_item_t *item; /* [E] */
    double *dload;     /* [D] load packed on each logical device */
    int *dcount;       /* [D] instances packed on each logical device */
    int *dheap;        /* [D] devices with room, least loaded first */
    int *stash;        /* [D] devices popped because they hold the expert */
    int *held;         /* [D] devices holding the current expert */
    int *logical;      /* [D * max_spd] packing before the host interleave */
    int *hostcnt;      /* [D] devices filled per host */
    double *cur_dev;   /* [D] device loads of the current placement */
    int *cand, *best;  /* [D * max_spd] candidate and best slot -> expert */
};

place_omni_ws_t *place_omni_ws_new(int E, int D, int max_spd) {
    place_omni_ws_t *ws = ms_calloc(1, sizeof *ws);
    size_t S = (size_t)D * max_spd;
    ws->E = E;
    ws->D = D;
    ws->max_spd = max_spd;
    ws->dep = ms_malloc((size_t)E * sizeof *ws->dep);
    ws->eheap = ms_malloc((size_t)E * sizeof *ws->eheap);
    ws->key = ms_malloc((size_t)E * sizeof *ws->key);
    ws->item = ms_malloc((size_t)E * sizeof *ws->item);
    ws->dload = ms_malloc((size_t)D * sizeof *ws->dload);
    ws->dcount = ms_malloc((size_t)D * sizeof *ws->dcount);
    ws->dheap = ms_malloc((size_t)D * sizeof *ws->dheap);
    ws->stash = ms_malloc((size_t)D * sizeof *ws->stash);
    ws->held = ms_malloc((size_t)D * sizeof *ws->held);
    ws->logical = ms_malloc(S * sizeof *ws->logical);
    ws->hostcnt = ms_malloc((size_t)D * sizeof *ws->hostcnt);
    ws->cur_dev = ms_malloc((size_t)D * sizeof *ws->cur_dev);
    ws->cand = ms_malloc(S * sizeof *ws->cand);
    ws->best = ms_malloc(S * sizeof *ws->best);
    return ws;
}

void place_omni_ws_free(place_omni_ws_t *ws) {
    if (!ws) return;
    free(ws->dep);
    free(ws->eheap);
    free(ws->key);
    free(ws->item);
    free(ws->dload);
    free(ws->dcount);
    free(ws->dheap);
    free(ws->stash);
    free(ws->held);
    free(ws->logical);
    free(ws->hostcnt);
    free(ws->cur_dev);
    free(ws->cand);
    free(ws->best);
    free(ws);
}

void place_omni_defaults(place_omni_cfg_t *c, int devices_per_host) {
    c->gate = PLACE_OMNI_GATE;
    c->improve = PLACE_OMNI_IMPROVE;
    c->bad = PLACE_OMNI_BAD;
    c->max_copies = PLACE_OMNI_MAX_COPIES;
    c->devices_per_host = devices_per_host;
}

/* compute_placement_ratio_combined / simulate_placement_ratio: max over the
 * average, 1 for an idle layer. */
double place_omni_ratio(const double *v, int n) {
    double mx = 0, total = 0;
    for (int i = 0; i < n; i++) {
        mx = ms_dmax(mx, v[i]);
        total += v[i];
    }
    double avg = total / n;
    if (avg == 0) return mx == 0 ? 1.0 : DBL_MAX;
    return mx / avg;
}

/* The same routine's max/min form; min is taken as at least 1 there. */
static double ratio_high_low(const double *v, int n) {
    double mx = 0, mn = DBL_MAX, total = 0;
    for (int i = 0; i < n; i++) {
        mx = ms_dmax(mx, v[i]);
        mn = ms_dmin(mn, v[i]);
        total += v[i];
    }
    if (total / n == 0) return mx == 0 ? 1.0 : DBL_MAX;
    return mx / ms_dmax(mn, 1.0);
}

/* ---- the copy heap: largest load/copies first, lower expert id on ties ---- */

static int e_before(const place_omni_ws_t *ws, int a, int b) {
    return ws->key[a] > ws->key[b] || (ws->key[a] == ws->key[b] && a < b);
}

static void e_down(place_omni_ws_t *ws, int n, int i) {
    int *h = ws->eheap;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && e_before(ws, h[c + 1], h[c])) c++;
        if (!e_before(ws, h[c], h[i])) return;
        int t = h[c];
        h[c] = h[i];
        h[i] = t;
        i = c;
    }
}

/* allocate_expert_deployments: returns 0 when the budget cannot be spent. */
static int allocate_copies(place_omni_ws_t *ws, const double *w, int E, int D, int budget,
                           int max_copies) {
    int cap = ms_imin(max_copies, D), n = 0;
    for (int e = 0; e < E; e++) {
        ws->dep[e] = 1;
        ws->key[e] = w[e]; /* load / 1 copy */
        if (ws->dep[e] < cap) ws->eheap[n++] = e;
    }
    if (budget <= 0) return 1;
    for (int i = n / 2 - 1; i >= 0; i--) e_down(ws, n, i);
    int added = 0;
    while (added < budget && n > 0) {
        int e = ws->eheap[0];
        ws->dep[e]++;
        added++;
        if (ws->dep[e] < cap) {
            ws->key[e] = w[e] == 0.0 ? 0.0 : w[e] / ws->dep[e];
        } else {
            ws->eheap[0] = ws->eheap[--n];
        }
        e_down(ws, n, 0);
    }
    return added == budget;
}

/* ---- the device heap: least loaded first, lower device index on ties ---- */

static int d_before(const place_omni_ws_t *ws, int a, int b) {
    return ws->dload[a] < ws->dload[b] || (ws->dload[a] == ws->dload[b] && a < b);
}

static void d_down(place_omni_ws_t *ws, int n, int i) {
    int *h = ws->dheap;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && d_before(ws, h[c + 1], h[c])) c++;
        if (!d_before(ws, h[c], h[i])) return;
        int t = h[c];
        h[c] = h[i];
        h[i] = t;
        i = c;
    }
}

static void d_up(place_omni_ws_t *ws, int i) {
    int *h = ws->dheap;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!d_before(ws, h[i], h[p])) return;
        int t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static int d_pop(place_omni_ws_t *ws, int *n) {
    int top = ws->dheap[0];
    ws->dheap[0] = ws->dheap[--*n];
    d_down(ws, *n, 0);
    return top;
}

static void d_push(place_omni_ws_t *ws, int *n, int d) {
    ws->dheap[*n] = d;
    d_up(ws, (*n)++);
}

static int item_cmp(const void *pa, const void *pb) {
    const omni_item_t *a = pa, *b = pb;
    if (a->w != b->w) return a->w > b->w ? -1 : 1;
    return (a->e > b->e) - (a->e < b->e);
}

int place_omni_candidate(place_omni_ws_t *ws, const place_omni_cfg_t *c, const double *w, int E,
                         int D, int b, int *slot_expert, double *ratio) {
    if ((E + b) % D || (E + b) / D > ws->max_spd || b < 0) return 0;
    int spd = (E + b) / D;
    if (!allocate_copies(ws, w, E, D, b, c->max_copies)) return 0;

    /* Every instance of an expert weighs the same, so sorting experts by
     * (weight desc, id asc) and expanding their copies is the same order as
     * sorting the instances. */
    for (int e = 0; e < E; e++)
        ws->item[e] = (omni_item_t){.w = ws->dep[e] > 0 ? w[e] / ws->dep[e] : 0.0, .e = e};
    qsort(ws->item, (size_t)E, sizeof *ws->item, item_cmp);

    int n = D;
    for (int d = 0; d < D; d++) {
        ws->dload[d] = 0;
        ws->dcount[d] = 0;
        ws->dheap[d] = d; /* equal loads, ascending index: already a heap */
    }
    for (int i = 0; i < E; i++) {
        int e = ws->item[i].e, nheld = 0;
        double wi = ws->item[i].w;
        for (int j = 0; j < ws->dep[e]; j++) {
            /* Least-loaded device with room that does not hold e yet: pop
             * past the (at most copies - 1) devices that already hold it. */
            int chosen = -1, nst = 0;
            while (n > 0 && chosen < 0) {
                int d = d_pop(ws, &n), holds = 0;
                for (int h = 0; h < nheld; h++) holds |= ws->held[h] == d;
                if (holds) ws->stash[nst++] = d;
                else chosen = d;
            }
            for (int s = 0; s < nst; s++) d_push(ws, &n, ws->stash[s]);
            if (chosen < 0) return 0; /* "Cannot allocate position for expert" */
            ws->logical[chosen * spd + ws->dcount[chosen]++] = e;
            ws->dload[chosen] += wi;
            ws->held[nheld++] = chosen;
            if (ws->dcount[chosen] < spd) d_push(ws, &n, chosen);
        }
    }
    *ratio = place_omni_ratio(ws->dload, D);

    /* Host interleave: logical device i goes to host i mod H, so the
     * heaviest devices (built first) spread over hosts. */
    int dph = c->devices_per_host > 0 ? c->devices_per_host : D;
    int H = (D + dph - 1) / dph, ok = H > 1;
    if (ok) {
        memset(ws->hostcnt, 0, (size_t)H * sizeof *ws->hostcnt);
        for (int i = 0; i < D && ok; i++) {
            int host = i % H, phys = host * dph + ws->hostcnt[host]++;
            if (phys >= D) ok = 0; /* hosts do not fit: keep the logical order */
            else memcpy(slot_expert + (size_t)phys * spd, ws->logical + (size_t)i * spd,
                        (size_t)spd * sizeof *slot_expert);
        }
    }
    if (!ok) memcpy(slot_expert, ws->logical, (size_t)D * spd * sizeof *slot_expert);
    return 1;
}

enum place_omni_outcome place_omni_layer(place_omni_ws_t *ws, const place_omni_cfg_t *c,
                                         const double *w, int E, int D, const place_layer_t *cur,
                                         int max_spd, int *slot_expert, int *spd,
                                         double *ratio_in, double *ratio_out) {
    memset(ws->cur_dev, 0, (size_t)D * sizeof *ws->cur_dev);
    for (int s = 0; s < cur->n_slots; s++) {
        int e = cur->slot_expert[s];
        ws->cur_dev[place_slot_device(cur, s)] += w[e] / cur->replicas[e];
    }
    double r_in = place_omni_ratio(ws->cur_dev, D);
    if (ratio_in) *ratio_in = r_in;
    if (ratio_out) *ratio_out = r_in;
    if (r_in < c->gate) return PLACE_OMNI_GATE_OK;
    if (ratio_high_low(ws->cur_dev, D) > c->bad) return PLACE_OMNI_BAD_DATA;

    max_spd = ms_imin(max_spd, ws->max_spd);
    int best_spd = 0;
    double best = DBL_MAX;
    for (int k = (E + D - 1) / D; k <= max_spd; k++) {
        double r;
        if (!place_omni_candidate(ws, c, w, E, D, k * D - E, ws->cand, &r)) continue;
        if (r < best) { /* strict: the lower budget wins ties (stable sort) */
            best = r;
            best_spd = k;
            int *t = ws->best;
            ws->best = ws->cand;
            ws->cand = t;
        }
    }
    if (!best_spd) return PLACE_OMNI_NO_CANDIDATE;
    if (ratio_out) *ratio_out = best;
    if (!(best < r_in - c->improve)) return PLACE_OMNI_NO_GAIN;
    memcpy(slot_expert, ws->best, (size_t)best_spd * D * sizeof *slot_expert);
    *spd = best_spd;
    return PLACE_OMNI_CHANGED;
}

int place_omni_plan(place_omni_ws_t *ws, const place_omni_cfg_t *c, const double *w,
                    const place_layout_t *cur, int max_spd, place_layout_t **out) {
    int E = cur->n_experts, D = cur->n_devices, changed = 0;
    *out = NULL;
    int *se = ms_malloc((size_t)D * ws->max_spd * sizeof *se);
    for (int l = 0; l < cur->n_layers; l++) {
        int spd;
        if (place_omni_layer(ws, c, w + (size_t)l * E, E, D, &cur->layer[l], max_spd, se, &spd,
                             NULL, NULL) != PLACE_OMNI_CHANGED)
            continue;
        if (!*out) *out = place_layout_copy(cur);
        if (place_layer_set(*out, l, spd, se)) {
            place_layout_free(*out);
            *out = NULL;
            free(se);
            return MS_ERR;
        }
        changed++;
    }
    free(se);
    return changed;
}

/* PlacementMapping::update_selector_layer: candidates are met in slot
 * order, so the pick is the (rank % count)-th of the same-host replicas,
 * else of the remote ones. */
int place_omni_pick(const place_layout_t *lo, int layer, int expert, int src, int dph) {
    const place_layer_t *ly = &lo->layer[layer];
    const int *slots = ly->rep_slot + ly->rep_start[expert];
    int n = ly->replicas[expert];
    if (n == 1) return slots[0];
    int host = src / dph, same = 0, remote = 0;
    for (int i = 0; i < n; i++) {
        int d = place_slot_device(ly, slots[i]);
        if (d == src) return slots[i];
        if (d / dph == host) same++;
        else remote++;
    }
    int want_same = same > 0, k = src % (want_same ? same : remote);
    for (int i = 0; i < n; i++) {
        int d = place_slot_device(ly, slots[i]);
        if ((d / dph == host) == want_same && k-- == 0) return slots[i];
    }
    return slots[0]; /* unreachable */
}

/* ---- the strategy: activation window, timer, first layout ---- */

/* Defaults of the timing around the planner. The worker loop
 * (placement_manager.cpp, Placement::placement_manager) collects and plans
 * once per 60 s iteration; the window holds 20 collections. */
#define OMNI_INTERVAL_S 60.0
#define OMNI_COLLECT_S 60.0
#define OMNI_WINDOW 20

struct place_state {
    place_omni_cfg_t cfg;
    place_omni_ws_t *ws;
    int L, E, max_spd, window;
    int64_t interval_ns, collect_ns, next_replan_ns, next_collect_ns;
    double *bucket; /* [L][E] loads of the open collection interval */
    double *ring;   /* [L][window][E] the last collections of each layer */
    double *win;    /* [L][E] sum over the ring: what a re-plan sees */
    int *ring_pos;  /* [L] next ring entry to overwrite */
    /* what the metrics report */
    int init_changed, replans, replans_changed, layers_changed;
    double spd_mean; /* slots per device over layers, latest layout made */
};

static void omni_destroy(place_state_t *st) {
    if (!st) return;
    place_omni_ws_free(st->ws);
    free(st->bucket);
    free(st->ring);
    free(st->win);
    free(st->ring_pos);
    free(st);
}

static double spd_mean(const place_layout_t *lo) {
    double s = 0;
    for (int l = 0; l < lo->n_layers; l++) s += lo->layer[l].slots_per_device;
    return s / lo->n_layers;
}

static int omni_init(const place_env_t *env, const double *prior, place_state_t **out_st,
                     place_layout_t **out) {
    const char *sec = place_param_section(env, "strategy.omni");
    int E = env->n_experts, D = env->n_devices, S = E + env->redundant;
    if (place_check_slots(env, "")) return MS_ERR;
    place_state_t *st = ms_calloc(1, sizeof *st);
    double interval_s, collect_s, gate, improve, bad;
    long window, copies, dph;
    if (place_param_double(env, sec, "interval_s", OMNI_INTERVAL_S, 1e-6, 1e9, &interval_s) ||
        place_param_double(env, sec, "collect_interval_s", OMNI_COLLECT_S, 1e-6, 1e9, &collect_s) ||
        place_param_int(env, sec, "window", OMNI_WINDOW, 1, 1000, &window) ||
        place_param_double(env, sec, "gate", PLACE_OMNI_GATE, 1.0, 1e9, &gate) ||
        place_param_double(env, sec, "improve", PLACE_OMNI_IMPROVE, 0, 1e9, &improve) ||
        place_param_double(env, sec, "bad", PLACE_OMNI_BAD, 1.0, 1e18, &bad) ||
        place_param_int(env, sec, "max_redundant_per_expert", PLACE_OMNI_MAX_COPIES, 1, 1 << 20,
                        &copies) ||
        place_param_int(env, sec, "devices_per_host", env->devices_per_node, 1, 1 << 20, &dph)) {
        omni_destroy(st);
        return MS_ERR;
    }
    int from_prior;
    if (place_param_bool(env, sec, "init_from_prior", 1, &from_prior)) {
        omni_destroy(st);
        return MS_ERR;
    }
    st->cfg = (place_omni_cfg_t){.gate = gate, .improve = improve, .bad = bad,
                                 .max_copies = (int)copies, .devices_per_host = (int)dph};
    st->L = env->n_layers;
    st->E = E;
    st->max_spd = S / D;
    st->window = (int)window;
    st->interval_ns = (int64_t)(interval_s * 1e9 + 0.5);
    st->collect_ns = (int64_t)(collect_s * 1e9 + 0.5);
    if (st->interval_ns < 1) st->interval_ns = 1;
    if (st->collect_ns < 1) st->collect_ns = 1;
    st->next_replan_ns = st->interval_ns;
    st->next_collect_ns = st->collect_ns;
    st->ws = place_omni_ws_new(E, D, st->max_spd);
    size_t LE = (size_t)st->L * E;
    st->bucket = ms_calloc(LE, sizeof *st->bucket);
    st->ring = ms_calloc(LE * st->window, sizeof *st->ring);
    st->win = ms_calloc(LE, sizeof *st->win);
    st->ring_pos = ms_calloc((size_t)st->L, sizeof *st->ring_pos);

    /* The starting point is the contiguous baseline. OmniPlacement leaves
     * the redundant slots of its baseline pattern empty; moesim's layout has
     * no empty slots, so they hold copies the way SGLang's trivial layout
     * does: slot p holds expert p mod E, which is the contiguous placement
     * when there are no redundant slots and never puts two copies of an
     * expert on one device. From the prior, the planner then improves it. */
    place_layout_t *lo = place_layout_new(env->n_layers, E, D, env->devices_per_node);
    int *se = ms_malloc((size_t)S * sizeof *se);
    for (int p = 0; p < S; p++) se[p] = p % E;
    for (int l = 0; l < env->n_layers; l++)
        if (place_layer_set(lo, l, S / D, se)) {
            free(se);
            place_layout_free(lo);
            omni_destroy(st);
            return MS_ERR;
        }
    free(se);
    if (from_prior && prior) {
        place_layout_t *nl = NULL;
        int n = place_omni_plan(st->ws, &st->cfg, prior, lo, st->max_spd, &nl);
        if (n < 0) {
            place_layout_free(lo);
            omni_destroy(st);
            return MS_ERR;
        }
        if (nl) {
            place_layout_free(lo);
            lo = nl;
        }
        st->init_changed = n;
    }
    st->spd_mean = spd_mean(lo);
    *out_st = st;
    *out = lo;
    return MS_OK;
}

/* Closes the open collection into each layer's ring (a layer that saw no
 * activations is not updated, as updateShiftWindows skips it). */
static void collect(place_state_t *st) {
    int E = st->E, W = st->window;
    for (int l = 0; l < st->L; l++) {
        double *b = st->bucket + (size_t)l * E, total = 0;
        for (int e = 0; e < E; e++) total += b[e];
        if (total == 0) continue;
        double *slot = st->ring + ((size_t)l * W + st->ring_pos[l]) * E;
        double *w = st->win + (size_t)l * E;
        for (int e = 0; e < E; e++) {
            w[e] += b[e] - slot[e];
            slot[e] = b[e];
            b[e] = 0;
        }
        st->ring_pos[l] = (st->ring_pos[l] + 1) % W;
    }
}

static void omni_observe(place_state_t *st, const place_obs_t *obs) {
    size_t LE = (size_t)st->L * st->E;
    for (size_t i = 0; i < LE; i++) st->bucket[i] += obs->expert_load[i];
    if (obs->now_ns < st->next_collect_ns) return;
    collect(st);
    while (st->next_collect_ns <= obs->now_ns) st->next_collect_ns += st->collect_ns;
}

static int omni_replan(place_state_t *st, int64_t now_ns, const place_layout_t *cur,
                       place_layout_t **out) {
    if (now_ns < st->next_replan_ns) return 0;
    while (st->next_replan_ns <= now_ns) st->next_replan_ns += st->interval_ns;
    st->replans++;
    int n = place_omni_plan(st->ws, &st->cfg, st->win, cur, st->max_spd, out);
    if (n < 0) return MS_ERR;
    if (!n) return 0;
    st->replans_changed++;
    st->layers_changed += n;
    st->spd_mean = spd_mean(*out);
    return 1;
}

static int omni_pick(place_state_t *st, const place_layout_t *lo, int layer, int expert, int src) {
    return place_omni_pick(lo, layer, expert, src, st->cfg.devices_per_host);
}

static int omni_metrics(place_state_t *st, const char **names, double *values, int max) {
    const char *n[] = {"omni_init_layers_changed", "omni_replans", "omni_replans_changed",
                       "omni_layers_changed", "omni_slots_per_device_mean"};
    double v[] = {st->init_changed, st->replans, st->replans_changed, st->layers_changed,
                  st->spd_mean};
    return place_metrics_out(n, v, (int)(sizeof v / sizeof *v), names, values, max);
}

const place_ops_t place_omni_ops = {
    .version = 1,
    .name = "omni",
    .color = "#d62728",
    .point = 9,
    .summary = "Huawei OmniPlacement: gated per-layer re-plan with per-layer redundancy",
    .algo_version = 1,
    .init = omni_init,
    .observe = omni_observe,
    .replan = omni_replan,
    .pick_replica = omni_pick,
    .metrics = omni_metrics,
    .destroy = omni_destroy,
};
