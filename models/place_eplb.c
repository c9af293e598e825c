/* place_eplb: DeepSeek EPLB (the pure algorithm) and the "eplb" strategy.
 *
 * The reference (eplb.py) computes in float32 torch tensors; every sum,
 * quotient and comparison here is the same float32 operation in the same
 * order, so ties fall the same way. Sorting and "least loaded" use small
 * heaps and a merge sort, so a 58-layer re-plan takes well under a
 * millisecond instead of the reference's seconds. */
#include "place_eplb.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"
#include "util.h"

/* ---- the algorithm ---------------------------------------------------- */

/* Scratch for one call, sized once; nothing is allocated per layer. */
typedef struct eplb_ws {
    float *wf;            /* [E] the layer's weights as float32 */
    float *gsum;          /* [G] tokens per group */
    int *gpack, *grank;   /* [G] node of each group and its rank there */
    int *log2mlog;        /* [E] expert -> node-major ("mlog") index */
    int *mlog2log;        /* [E] the inverse */
    int *mcnt;            /* [E] replicas per mlog index */
    float *wm;            /* [E/N] weights of one node's experts */
    int *p2m;             /* [P/N] node-local physical -> mlog index */
    float *tok;           /* [P/N] tokens per physical replica */
    int *pack, *rank;     /* [max(P/N, G)] packing result */
    uint64_t *key;        /* [max(E/N, G)] sort keys of experts or groups */
    uint64_t *pkey;       /* [P/N] sort keys of physical replicas */
    uint64_t *tmp;        /* [max(P/N, G)] merge scratch */
    uint64_t *small;      /* [2 (P - E)/N + 1] keys of replicated experts' replicas */
    int *rep;             /* [(P - E)/N + 1] experts with more than one replica */
    float *val;           /* [max(E/N, gpus/N)] load per replica, or pack loads */
    int *items;           /* [gpus/N] items per pack */
    int *heap;            /* [gpus/N] heap of packs */
} eplb_ws_t;

/* Float bits of a non-negative float grow with its value, so one integer
 * key (inverted value bits, then the index) sorts by value descending and
 * index ascending: the order a stable descending sort gives. */
static inline uint64_t desc_key(float v, int i) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return ((uint64_t)(~u) << 32) | (uint32_t)i;
}

static void sort_keys(uint64_t *a, uint64_t *tmp, int n) {
    enum { RUN = 8 };
    for (int lo = 0; lo < n; lo += RUN) {
        int hi = ms_imin(lo + RUN, n);
        for (int i = lo + 1; i < hi; i++) {
            uint64_t x = a[i];
            int j = i;
            for (; j > lo && a[j - 1] > x; j--) a[j] = a[j - 1];
            a[j] = x;
        }
    }
    uint64_t *src = a, *dst = tmp;
    for (int w = RUN; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = ms_imin(lo + w, n), hi = ms_imin(lo + 2 * w, n), i = lo, j = mid, k = lo;
            /* branch-free merge: the comparison is unpredictable */
            while (i < mid && j < hi) {
                uint64_t x = src[i], y = src[j];
                int t = y < x;
                dst[k++] = t ? y : x;
                j += t;
                i += !t;
            }
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, (size_t)n * sizeof *a);
}

/* Up to this many packs, a linear scan picks the pack. */
#define PACK_SCAN 16

/* Min-heap of packs by (load, index): the root is the least-loaded pack,
 * the lowest index among equals, as Python's min() picks it. */
static inline int pack_less(const float *load, int a, int b) {
    return load[a] < load[b] || (load[a] == load[b] && a < b);
}

static void pack_sift(int *h, int n, const float *load, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && pack_less(load, h[l], h[m])) m = l;
        if (r < n && pack_less(load, h[r], h[m])) m = r;
        if (m == i) return;
        int t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* balanced_packing on items already in order (key[k]: heaviest first, the
 * item's index in the low 32 bits): each goes into the least-loaded pack
 * that still has room, every pack taking exactly n / m (> 1) items. */
static void pack_sorted(const uint64_t *key, const float *w, int n, int m, int *pack, int *rank,
                        eplb_ws_t *ws) {
    int per = n / m;
    float *load = ws->val;
    for (int p = 0; p < m; p++) load[p] = 0.0f, ws->items[p] = 0;
    if (m <= PACK_SCAN) {
        /* Few packs: a scan beats the heap. Each pack's key is its load's
         * bits then its index, so the smallest key is the least-loaded pack
         * with the lowest index; a full pack's key is the largest there is. */
        uint64_t sel[PACK_SCAN];
        for (int p = 0; p < m; p++) sel[p] = (uint64_t)p;
        for (int k = 0; k < n; k++) {
            int i = (int)(uint32_t)key[k];
            uint64_t b0 = sel[0], b1 = UINT64_MAX;
            for (int q = 1; q + 1 < m; q += 2) { /* two chains for overlap */
                b0 = sel[q] < b0 ? sel[q] : b0;
                b1 = sel[q + 1] < b1 ? sel[q + 1] : b1;
            }
            if (m % 2 == 0) b1 = sel[m - 1] < b1 ? sel[m - 1] : b1;
            int p = (int)(uint32_t)(b0 < b1 ? b0 : b1);
            pack[i] = p;
            rank[i] = ws->items[p]++;
            load[p] += w[i];
            uint32_t u;
            memcpy(&u, &load[p], sizeof u);
            sel[p] = ws->items[p] == per ? UINT64_MAX : ((uint64_t)u << 32) | (uint32_t)p;
        }
        return;
    }
    int *h = ws->heap, hn = m;
    for (int p = 0; p < m; p++) h[p] = p; /* equal loads: index order is a heap */
    for (int k = 0; k < n; k++) {
        int i = (int)(uint32_t)key[k], p = h[0];
        pack[i] = p;
        rank[i] = ws->items[p]++;
        load[p] += w[i];
        if (ws->items[p] == per) h[0] = h[--hn];
        pack_sift(h, hn, load, 0);
    }
}

/* balanced_packing: n items into m packs of exactly n/m items each, heaviest
 * first (a stable descending sort), each into the least-loaded pack that
 * still has room. n/m == 1 is the identity, as in the reference. */
static void balanced_pack(const float *w, int n, int m, int *pack, int *rank, eplb_ws_t *ws) {
    if (n / m == 1) {
        for (int i = 0; i < n; i++) pack[i] = i, rank[i] = 0;
        return;
    }
    for (int i = 0; i < n; i++) ws->key[i] = desc_key(w[i], i);
    sort_keys(ws->key, ws->tmp, n);
    pack_sorted(ws->key, w, n, m, pack, rank, ws);
}

/* replicate_experts: n experts into n_phy replicas; each extra replica goes
 * to the expert with the most load per replica, the lowest index among
 * equals (torch's argmax). phy2log[i] = i for i < n, then the extras in
 * the order given.
 *
 * ws->key holds the experts sorted (weight descending, index ascending).
 * Experts never chosen keep their whole weight, so the best of them is the
 * next one in that order; the argmax is that one or one of the few already
 * replicated. On return ws->pkey holds all n_phy replicas sorted by
 * (w / count descending, physical index ascending), ready for packing: the
 * unreplicated experts in their order, merged with the replicated ones. */
static void replicate(const float *w, int n, int n_phy, int *phy2log, int *cnt, eplb_ws_t *ws) {
    const uint64_t *key = ws->key;
    float *v = ws->val;
    int *rep = ws->rep, nr = 0, next = 0;
    for (int e = 0; e < n; e++) phy2log[e] = e, cnt[e] = 1;
    for (int i = n; i < n_phy; i++) {
        int b = next < n ? (int)(uint32_t)key[next] : -1;
        float bv = b >= 0 ? w[b] : 0.0f;
        int from_next = b >= 0;
        for (int r = 0; r < nr; r++) {
            int e = rep[r];
            if (b < 0 || v[e] > bv || (v[e] == bv && e < b)) b = e, bv = v[e], from_next = 0;
        }
        if (from_next) rep[nr++] = b, next++;
        phy2log[i] = b;
        cnt[b]++;
        v[b] = w[b] / (float)cnt[b];
    }
    /* the replicas of replicated experts, sorted, then merged */
    int ns = 0;
    for (int k = 0; k < n_phy; k++) {
        int e = phy2log[k];
        if (cnt[e] > 1) ws->small[ns++] = desc_key(v[e], k);
    }
    sort_keys(ws->small, ws->tmp, ns);
    int i = next, j = 0, o = 0;
    while (i < n && j < ns) ws->pkey[o++] = key[i] < ws->small[j] ? key[i++] : ws->small[j++];
    while (i < n) ws->pkey[o++] = key[i++];
    while (j < ns) ws->pkey[o++] = ws->small[j++];
}

static int check_shape(int L, int E, int P, int groups, int nodes, int gpus) {
    if (L < 1 || E < 1)
        return ms_err("eplb: %d layers x %d experts (need at least 1 of each)", L, E);
    if (gpus < 1 || nodes < 1 || groups < 1)
        return ms_err("eplb: %d GPUs, %d nodes, %d groups (each must be at least 1)", gpus, nodes,
                      groups);
    if (P < E)
        return ms_err("eplb: %d slots cannot hold %d experts (slots = experts + redundant)", P, E);
    if (P % gpus)
        return ms_err("eplb: %d slots do not divide over %d GPUs (make experts + redundant a "
                      "multiple of the GPU count)", P, gpus);
    if (groups % nodes == 0) {
        if (E % groups)
            return ms_err("eplb: %d experts do not split into %d groups (groups must divide the "
                          "expert count; groups = 1 selects the global policy)", E, groups);
        if (gpus % nodes)
            return ms_err("eplb: %d GPUs do not divide over %d nodes (GPUs must be a multiple of "
                          "nodes)", gpus, nodes);
    }
    return MS_OK;
}

int place_eplb(const double *weight, int L, int E, int P, int groups, int nodes, int gpus,
               int *phy2log, int *logcnt) {
    if (check_shape(L, E, P, groups, nodes, gpus)) return MS_ERR;
    for (size_t i = 0; i < (size_t)L * E; i++)
        if (!(weight[i] >= 0 && weight[i] <= FLT_MAX))
            return ms_err("eplb: layer %zu expert %zu weight %g (loads must be finite, >= 0 and "
                          "fit float32)", i / (size_t)E, i % (size_t)E, weight[i]);
    int G = groups, N = nodes;
    if (G % N) G = N = 1; /* the global policy */
    int gs = E / G, gpn = G / N, En = E / N, Pn = P / N, m = gpus / N, spg = P / gpus;
    int extra = Pn - En, nval = ms_imax(ms_imax(En, m), N), npack = ms_imax(m, N);

    eplb_ws_t ws;
    ws.wf = ms_malloc((size_t)E * sizeof *ws.wf);
    ws.gsum = ms_malloc((size_t)G * sizeof *ws.gsum);
    ws.gpack = ms_malloc((size_t)G * sizeof *ws.gpack);
    ws.grank = ms_malloc((size_t)G * sizeof *ws.grank);
    ws.log2mlog = ms_malloc((size_t)E * sizeof *ws.log2mlog);
    ws.mlog2log = ms_malloc((size_t)E * sizeof *ws.mlog2log);
    ws.mcnt = ms_malloc((size_t)E * sizeof *ws.mcnt);
    ws.wm = ms_malloc((size_t)En * sizeof *ws.wm);
    ws.p2m = ms_malloc((size_t)Pn * sizeof *ws.p2m);
    ws.tok = ms_malloc((size_t)Pn * sizeof *ws.tok);
    ws.pack = ms_malloc((size_t)ms_imax(Pn, G) * sizeof *ws.pack);
    ws.rank = ms_malloc((size_t)ms_imax(Pn, G) * sizeof *ws.rank);
    ws.key = ms_malloc((size_t)ms_imax(En, G) * sizeof *ws.key);
    ws.pkey = ms_malloc((size_t)Pn * sizeof *ws.pkey);
    ws.tmp = ms_malloc((size_t)ms_imax(Pn, G) * sizeof *ws.tmp);
    ws.small = ms_malloc((size_t)(2 * extra + 1) * sizeof *ws.small);
    ws.rep = ms_malloc((size_t)(extra + 1) * sizeof *ws.rep);
    ws.val = ms_malloc((size_t)nval * sizeof *ws.val);
    ws.items = ms_malloc((size_t)npack * sizeof *ws.items);
    ws.heap = ms_malloc((size_t)npack * sizeof *ws.heap);

    for (int l = 0; l < L; l++) {
        const double *w = weight + (size_t)l * E;
        int *out = phy2log + (size_t)l * P;
        /* +0.0f turns -0 into +0, which torch's sort treats as equal. */
        for (int e = 0; e < E; e++) ws.wf[e] = (float)w[e] + 0.0f;

        /* Step 1: groups onto nodes; number experts node-major. */
        for (int g = 0; g < G; g++) {
            float s = 0.0f;
            for (int j = 0; j < gs; j++) s += ws.wf[g * gs + j];
            ws.gsum[g] = s;
        }
        balanced_pack(ws.gsum, G, N, ws.gpack, ws.grank, &ws);
        for (int e = 0; e < E; e++) {
            int g = e / gs;
            ws.log2mlog[e] = (ws.gpack[g] * gpn + ws.grank[g]) * gs + e % gs;
            ws.mlog2log[ws.log2mlog[e]] = e;
        }

        for (int n = 0; n < N; n++) {
            /* Step 2: replicate the node's experts into its slots. */
            const int *m2l = ws.mlog2log + (size_t)n * En;
            int *cnt = ws.mcnt + (size_t)n * En;
            for (int j = 0; j < En; j++) {
                ws.wm[j] = ws.wf[m2l[j]];
                ws.key[j] = desc_key(ws.wm[j], j);
            }
            sort_keys(ws.key, ws.tmp, En);
            replicate(ws.wm, En, Pn, ws.p2m, cnt, &ws);
            /* Step 3: replicas onto the node's GPUs, each weighing its
             * expert's tokens over its replica count. */
            if (spg == 1) {
                for (int k = 0; k < Pn; k++) ws.pack[k] = k, ws.rank[k] = 0;
            } else {
                for (int k = 0; k < Pn; k++) ws.tok[k] = ws.wm[ws.p2m[k]] / (float)cnt[ws.p2m[k]];
                pack_sorted(ws.pkey, ws.tok, Pn, m, ws.pack, ws.rank, &ws);
            }
            for (int k = 0; k < Pn; k++)
                out[n * Pn + ws.pack[k] * spg + ws.rank[k]] = m2l[ws.p2m[k]];
        }
        for (int e = 0; e < E; e++) logcnt[(size_t)l * E + e] = ws.mcnt[ws.log2mlog[e]];
    }

    free(ws.wf);
    free(ws.gsum);
    free(ws.gpack);
    free(ws.grank);
    free(ws.log2mlog);
    free(ws.mlog2log);
    free(ws.mcnt);
    free(ws.wm);
    free(ws.p2m);
    free(ws.tok);
    free(ws.pack);
    free(ws.rank);
    free(ws.key);
    free(ws.pkey);
    free(ws.tmp);
    free(ws.small);
    free(ws.rep);
    free(ws.val);
    free(ws.items);
    free(ws.heap);
    return MS_OK;
}

/* ---- the strategy ----------------------------------------------------- */

struct place_state {
    int L, E, D, dpn, P;
    int groups, nodes;       /* as passed to place_eplb (1, 1: global) */
    place_window_t win;      /* the re-plan window (place.h) */
    int replans;             /* re-plans that changed the layout */
    int *phy2log, *logcnt;   /* [L][P], [L][E] scratch */
};

static void eplb_destroy(place_state_t *s) {
    if (!s) return;
    place_window_free(&s->win);
    free(s->phy2log);
    free(s->logcnt);
    free(s);
}

/* Runs EPLB on w and builds the layout. */
static int eplb_layout(place_state_t *s, const double *w, place_layout_t **out) {
    if (place_eplb(w, s->L, s->E, s->P, s->groups, s->nodes, s->D, s->phy2log, s->logcnt))
        return MS_ERR;
    place_layout_t *lo = place_layout_new(s->L, s->E, s->D, s->dpn);
    for (int l = 0; l < s->L; l++)
        if (place_layer_set(lo, l, s->P / s->D, s->phy2log + (size_t)l * s->P)) {
            place_layout_free(lo);
            return MS_ERR;
        }
    *out = lo;
    return MS_OK;
}

static int eplb_init(const place_env_t *env, const double *prior, place_state_t **st,
                     place_layout_t **out) {
    const char *sec = place_param_section(env, "strategy.eplb");
    cfg_t *c = env->cfg;
    long window, interval, groups = env->n_groups > 0 ? env->n_groups : 1;
    const char *policy;
    if (place_param_int(env, sec, "window_steps", 1000, 1, 100000000, &window) ||
        place_param_int(env, sec, "interval_steps", 1000, 0, 100000000, &interval) ||
        place_param_int(env, sec, "groups", groups, 1, 1 << 20, &groups) ||
        place_param_str(env, sec, "policy", "auto", &policy))
        return MS_ERR;
    const char *where = c ? cfg_where(c, sec, "policy") : sec;
    int E = env->n_experts, D = env->n_devices, N = env->n_nodes, P = E + env->redundant;
    if (place_check_slots(env, "eplb: ")) return MS_ERR;
    int G = (int)groups, hier = (int)groups % N == 0;
    if (!strcmp(policy, "global")) {
        G = N = 1;
    } else if (!strcmp(policy, "hierarchical")) {
        if (!hier)
            return ms_err("%s: [%s] policy = hierarchical needs groups (%d) to be a multiple of "
                          "nodes (%d) (set groups, or policy = auto or global)",
                          where, sec, G, N);
    } else if (strcmp(policy, "auto")) {
        return ms_err("%s: [%s] policy = '%s' (give auto, hierarchical or global)", where, sec,
                      policy);
    }
    if (check_shape(env->n_layers, E, P, G, N, D)) return MS_ERR;

    place_state_t *s = ms_calloc(1, sizeof *s);
    s->L = env->n_layers, s->E = E, s->D = D, s->dpn = env->devices_per_node, s->P = P;
    s->groups = G, s->nodes = N;
    size_t le = (size_t)s->L * E;
    place_window_init(&s->win, window, interval, le);
    s->phy2log = ms_malloc((size_t)s->L * P * sizeof *s->phy2log);
    s->logcnt = ms_malloc(le * sizeof *s->logcnt);
    /* No prior: EPLB of zero loads, a valid and deterministic layout. */
    double *zeros;
    int rc = eplb_layout(s, place_prior_or_zero(env, prior, &zeros), out);
    free(zeros);
    if (rc) {
        eplb_destroy(s);
        return MS_ERR;
    }
    *st = s;
    return MS_OK;
}

static void eplb_observe(place_state_t *s, const place_obs_t *obs) {
    place_window_add(&s->win, obs->expert_load);
}

static int eplb_replan(place_state_t *s, int64_t now_ns, const place_layout_t *cur,
                       place_layout_t **out) {
    (void)now_ns;
    if (!place_window_due(&s->win)) return 0;
    place_layout_t *lo;
    if (eplb_layout(s, s->win.sum, &lo)) return MS_ERR;
    if (place_layout_same(cur, lo)) {
        place_layout_free(lo);
        return 0;
    }
    s->replans++;
    *out = lo;
    return 1;
}

static int eplb_metrics(place_state_t *s, const char **names, double *values, int max) {
    if (max < 1) return 0;
    names[0] = "eplb_replans";
    values[0] = s->replans;
    return 1;
}

const place_ops_t place_eplb_ops = {
    .version = 1,
    .name = "eplb",
    .color = "#1f77b4",
    .point = 7,
    .summary = "DeepSeek EPLB (exact): hierarchical or global, re-planned over a sliding window",
    .algo_version = 1,
    .init = eplb_init,
    .observe = eplb_observe,
    .replan = eplb_replan,
    .metrics = eplb_metrics,
    .destroy = eplb_destroy,
};
