/* place_move: copy counts between layouts and migration-aware re-planning
 * helpers (place_move.h). The permutation search is an optimal assignment
 * (Hungarian method) of node contents to nodes and device contents to
 * devices, which no dependency of moesim provides. */
#include "place_move.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static int same_shape(const place_layout_t *a, const place_layout_t *b) {
    return a->n_layers == b->n_layers && a->n_experts == b->n_experts &&
           a->n_devices == b->n_devices && a->devices_per_node == b->devices_per_node;
}

static int same_layer_shape(const place_layer_t *a, const place_layer_t *b) {
    return a->slots_per_device == b->slots_per_device && a->n_slots == b->n_slots;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Replicas two sorted expert lists of n entries share (multiset overlap). */
static int overlap(const int *a, const int *b, int n) {
    int i = 0, j = 0, k = 0;
    while (i < n && j < n) {
        if (a[i] < b[j]) i++;
        else if (a[i] > b[j]) j++;
        else {
            k++;
            i++;
            j++;
        }
    }
    return k;
}

/* Each device's experts of a layer, sorted: [n_devices][slots_per_device]. */
static int *sorted_devices(const place_layer_t *ly, int D) {
    int spd = ly->slots_per_device;
    int *v = ms_malloc((size_t)D * spd * sizeof *v);
    memcpy(v, ly->slot_expert, (size_t)D * spd * sizeof *v);
    for (int d = 0; d < D; d++) qsort(v + (size_t)d * spd, (size_t)spd, sizeof *v, cmp_int);
    return v;
}

int64_t place_move_layer_copies(const place_layout_t *cur, const place_layout_t *next, int l) {
    if (!same_shape(cur, next) || l < 0 || l >= cur->n_layers) return -1;
    const place_layer_t *a = &cur->layer[l], *b = &next->layer[l];
    if (!same_layer_shape(a, b)) return -1;
    int D = cur->n_devices, spd = a->slots_per_device;
    int *x = sorted_devices(a, D), *y = sorted_devices(b, D);
    int64_t copies = 0;
    for (int d = 0; d < D; d++)
        copies += spd - overlap(x + (size_t)d * spd, y + (size_t)d * spd, spd);
    free(x);
    free(y);
    return copies;
}

int64_t place_move_copies(const place_layout_t *cur, const place_layout_t *next) {
    if (!same_shape(cur, next)) return -1;
    int64_t sum = 0;
    for (int l = 0; l < cur->n_layers; l++) {
        int64_t c = place_move_layer_copies(cur, next, l);
        if (c < 0) return -1;
        sum += c;
    }
    return sum;
}

/* Scratch of assign_max for matrices up to n x n. */
typedef struct {
    int64_t *u, *v, *minv;
    int *p, *way;
    unsigned char *used;
} hung_t;

static void hung_init(hung_t *h, int n) {
    size_t m = (size_t)n + 1;
    h->u = ms_malloc(m * sizeof *h->u);
    h->v = ms_malloc(m * sizeof *h->v);
    h->minv = ms_malloc(m * sizeof *h->minv);
    h->p = ms_malloc(m * sizeof *h->p);
    h->way = ms_malloc(m * sizeof *h->way);
    h->used = ms_malloc(m);
}

static void hung_free(hung_t *h) {
    free(h->u);
    free(h->v);
    free(h->minv);
    free(h->p);
    free(h->way);
    free(h->used);
}

/* Maximum-weight perfect assignment of rows to columns of the n x n matrix
 * w (row-major): col[i] gets row i's column; returns the total weight. The
 * Hungarian method on costs -w, O(n^3), with 1-based potentials. A matrix
 * of zeros (devices that share no expert) is the identity at once. */
static int64_t assign_max(hung_t *h, const int64_t *w, int n, int *col) {
    int any = 0;
    for (size_t i = 0; i < (size_t)n * n && !any; i++) any = w[i] != 0;
    if (!any) {
        for (int i = 0; i < n; i++) col[i] = i;
        return 0;
    }
    size_t m = (size_t)n + 1;
    int64_t *u = h->u, *v = h->v, *minv = h->minv;
    int *p = h->p, *way = h->way;
    unsigned char *used = h->used;
    memset(u, 0, m * sizeof *u);
    memset(v, 0, m * sizeof *v);
    memset(p, 0, m * sizeof *p);
    memset(way, 0, m * sizeof *way);
    const int64_t INF = INT64_MAX / 4;
    for (int i = 1; i <= n; i++) {
        p[0] = i;
        int j0 = 0;
        for (size_t j = 0; j < m; j++) minv[j] = INF;
        memset(used, 0, m);
        do {
            used[j0] = 1;
            int i0 = p[j0], j1 = 0;
            int64_t delta = INF;
            for (int j = 1; j <= n; j++) {
                if (used[j]) continue;
                int64_t c = -w[(size_t)(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if (c < minv[j]) {
                    minv[j] = c;
                    way[j] = j0;
                }
                if (minv[j] < delta) {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for (int j = 0; j <= n; j++) {
                if (used[j]) {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    int64_t total = 0;
    for (int j = 1; j <= n; j++) {
        col[p[j] - 1] = j - 1;
        total += w[(size_t)(p[j] - 1) * n + (j - 1)];
    }
    return total;
}

/* Layer l of next rewritten to keep replicas in place; returns copies saved. */
static int64_t keep_layer(const place_layout_t *cur, place_layout_t *next, int l) {
    const place_layer_t *a = &cur->layer[l], *b = &next->layer[l];
    int D = cur->n_devices, spd = a->slots_per_device;
    int dpn = cur->devices_per_node > 0 && D % cur->devices_per_node == 0
                  ? cur->devices_per_node : D;
    int N = D / dpn;
    if (!memcmp(a->slot_expert, b->slot_expert, (size_t)D * spd * sizeof(int))) return 0;
    int *y = sorted_devices(b, D);
    hung_t h;
    hung_init(&h, N > dpn ? N : dpn);
    /* ov[d][o]: replicas new device d and old device o share, found from
     * each expert's holders (few per expert), not from all D x D pairs;
     * nz[A][B]: nodes A (new) and B (old) share any. */
    int *ov = ms_calloc((size_t)D * D, sizeof *ov);
    unsigned char *nz = ms_calloc((size_t)N * N, 1);
    for (int d = 0; d < D; d++) {
        const int *yd = y + (size_t)d * spd;
        for (int i = 0; i < spd;) {
            int e = yd[i], cn = 0;
            while (i < spd && yd[i] == e) {
                cn++;
                i++;
            }
            const int *rs = a->rep_slot + a->rep_start[e];
            for (int k = 0; k < a->replicas[e];) {
                int o = place_slot_device(a, rs[k]), co = 0;
                while (k < a->replicas[e] && place_slot_device(a, rs[k]) == o) {
                    co++;
                    k++;
                }
                ov[(size_t)d * D + o] += cn < co ? cn : co;
                nz[(size_t)(d / dpn) * N + o / dpn] = 1;
            }
        }
    }
    /* best[A][B]: replicas kept when next's node A takes old node B's
     * place, its devices assigned optimally; dev[A][B][i]: where A's i-th
     * device goes inside B. */
    int64_t *best = ms_malloc((size_t)N * N * sizeof *best);
    int *dev = ms_malloc((size_t)N * N * dpn * sizeof *dev);
    int64_t *w = ms_malloc((size_t)dpn * dpn * sizeof *w);
    for (int A = 0; A < N; A++)
        for (int B = 0; B < N; B++) {
            int *to = dev + ((size_t)A * N + B) * dpn;
            if (!nz[(size_t)A * N + B]) {
                best[(size_t)A * N + B] = 0;
                for (int i = 0; i < dpn; i++) to[i] = i;
                continue;
            }
            for (int i = 0; i < dpn; i++)
                for (int j = 0; j < dpn; j++)
                    w[(size_t)i * dpn + j] = ov[(size_t)(A * dpn + i) * D + B * dpn + j];
            best[(size_t)A * N + B] = assign_max(&h, w, dpn, to);
        }
    int *node = ms_malloc((size_t)N * sizeof *node);
    int64_t kept = assign_max(&h, best, N, node), kept0 = 0;
    for (int d = 0; d < D; d++) kept0 += ov[(size_t)d * D + d];
    free(ov);
    free(nz);
    int64_t saved = 0;
    if (kept > kept0) {
        int *map = ms_malloc((size_t)D * spd * sizeof *map);
        int *left = ms_malloc((size_t)spd * sizeof *left);
        for (int A = 0; A < N; A++)
            for (int i = 0; i < dpn; i++) {
                int from = A * dpn + i, to = node[A] * dpn + dev[((size_t)A * N + node[A]) * dpn + i];
                /* An expert the device already holds keeps its slot; the
                 * rest fill the free slots in the planned order. */
                memcpy(left, b->slot_expert + (size_t)from * spd, (size_t)spd * sizeof *left);
                int *out = map + (size_t)to * spd;
                const int *old = a->slot_expert + (size_t)to * spd;
                for (int s = 0; s < spd; s++) out[s] = -1;
                for (int s = 0; s < spd; s++)
                    for (int k = 0; k < spd; k++)
                        if (left[k] == old[s]) {
                            out[s] = left[k];
                            left[k] = -1;
                            break;
                        }
                int k = 0;
                for (int s = 0; s < spd; s++) {
                    if (out[s] >= 0) continue;
                    while (left[k] < 0) k++;
                    out[s] = left[k++];
                }
            }
        /* the same multiset of experts, so it cannot fail */
        if (place_layer_set(next, l, spd, map)) abort();
        saved = kept - kept0;
        free(map);
        free(left);
    }
    hung_free(&h);
    free(y);
    free(best);
    free(dev);
    free(w);
    free(node);
    return saved;
}

int64_t place_move_keep(const place_layout_t *cur, place_layout_t *next) {
    if (!same_shape(cur, next))
        return ms_err("place_move_keep: layouts differ in shape (%d x %d experts on %d devices "
                      "against %d x %d on %d)", cur->n_layers, cur->n_experts, cur->n_devices,
                      next->n_layers, next->n_experts, next->n_devices);
    int64_t saved = 0;
    for (int l = 0; l < cur->n_layers; l++)
        if (same_layer_shape(&cur->layer[l], &next->layer[l])) saved += keep_layer(cur, next, l);
    return saved;
}

double place_move_max_load(const place_layout_t *lo, const double *w) {
    double *dl = ms_malloc((size_t)lo->n_devices * sizeof *dl), sum = 0;
    for (int l = 0; l < lo->n_layers; l++) {
        place_device_load(lo, l, w + (size_t)l * lo->n_experts, dl);
        sum += place_max(dl, lo->n_devices);
    }
    free(dl);
    return sum;
}

double place_move_gain(const place_layout_t *cur, const place_layout_t *next, const double *w) {
    double a = place_move_max_load(cur, w);
    return a > 0 ? 1 - place_move_max_load(next, w) / a : 0;
}

int place_move_pick(const place_layout_t *cur, place_layout_t *const *cand, int n,
                    const double *w, double tol) {
    if (n < 1) return ms_err("place_move_pick: no candidate layouts");
    double *load = ms_malloc((size_t)n * sizeof *load), lo = 0;
    for (int i = 0; i < n; i++) {
        if (!same_shape(cur, cand[i])) {
            free(load);
            return ms_err("place_move_pick: candidate %d differs in shape from the current "
                          "layout", i);
        }
        load[i] = place_move_max_load(cand[i], w);
        if (i == 0 || load[i] < lo) lo = load[i];
    }
    int pick = -1;
    int64_t fewest = 0;
    for (int i = 0; i < n; i++) {
        if (load[i] > lo * (1 + tol)) continue;
        int64_t c = place_move_copies(cur, cand[i]);
        if (c < 0) {
            free(load);
            return ms_err("place_move_pick: candidate %d's layers differ in shape from the "
                          "current layout", i);
        }
        if (pick < 0 || c < fewest) {
            pick = i;
            fewest = c;
        }
    }
    free(load);
    return pick;
}
