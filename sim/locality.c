/* locality: cross-node bytes, nodes and devices per token, device traffic.
 *
 * Bytes follow step.c's model of the all-to-all: a token is sent once to
 * each distinct device holding one of its chosen replicas (none to its own
 * device) and its result comes back once from each. Crossing nodes, the
 * low-latency kernels write straight to every remote device; the normal
 * kernels (per_node) send one IB copy per token and remote node and forward
 * it over NVLink, so only that copy crosses. The traffic matrix is the
 * logical one (source to destination device) in both cases. */
#include "locality.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

loc_t *loc_new(const cluster_t *c, const moe_model_t *m, int per_node) {
    loc_t *a = ms_calloc(1, sizeof *a);
    a->L = moe_n_moe_layers(m);
    a->D = c->n_devices;
    a->N = c->n_nodes;
    a->dpn = c->devices_per_node;
    a->k = m->top_k;
    a->copy_bytes = (double)m->hidden * (m->dispatch_bytes + m->combine_bytes);
    a->disp_bytes = (double)m->hidden * m->dispatch_bytes;
    a->per_node = per_node;
    a->tok = ms_calloc((size_t)a->L, sizeof *a->tok);
    a->cross = ms_calloc((size_t)a->L, sizeof *a->cross);
    a->bytes = ms_calloc((size_t)a->L, sizeof *a->bytes);
    a->nodes_hist = ms_calloc((size_t)a->L * (a->N + 1), sizeof *a->nodes_hist);
    a->dev_hist = ms_calloc((size_t)a->L * (a->k + 1), sizeof *a->dev_hist);
    a->traffic = ms_calloc((size_t)a->D * a->D, sizeof *a->traffic);
    a->seen = ms_calloc((size_t)a->D + a->N, sizeof *a->seen);
    return a;
}

void loc_free(loc_t *a) {
    if (!a) return;
    free(a->tok);
    free(a->cross);
    free(a->bytes);
    free(a->nodes_hist);
    free(a->dev_hist);
    free(a->traffic);
    free(a->seen);
    free(a);
}

void loc_step(loc_t *a, const route_step_t *rt, const place_layout_t *lo, step_pick_fn pick,
              void *pick_ctx) {
    int n = rt->n_tokens, k = rt->top_k, D = a->D;
    int *dev_seen = a->seen, *node_seen = a->seen + D;
    for (int l = 0; l < a->L && l < rt->n_layers; l++) {
        const place_layer_t *ly = &lo->layer[l];
        for (int t = 0; t < n; t++) {
            const int16_t *ex = rt->expert + ((size_t)l * n + t) * k;
            int src = rt->src[t], snode = src / a->dpn, nd = 0, nn = 0, remote_nodes = 0;
            if (++a->stamp == 0) { /* wrapped: clear the stamps */
                memset(a->seen, 0, ((size_t)D + a->N) * sizeof *a->seen);
                a->stamp = 1;
            }
            for (int j = 0; j < k; j++) {
                if (ex[j] < 0) continue;
                int slot = pick ? pick(pick_ctx, lo, l, ex[j], src)
                                : place_pick_default(lo, l, ex[j], src);
                int d = place_slot_device(ly, slot), node = d / a->dpn;
                if (node_seen[node] != a->stamp) {
                    node_seen[node] = a->stamp;
                    nn++;
                    remote_nodes += node != snode;
                }
                if (dev_seen[d] == a->stamp) continue;
                dev_seen[d] = a->stamp;
                nd++;
                if (d == src) continue;
                a->bytes[l] += a->copy_bytes;
                a->traffic[(size_t)src * D + d] += a->disp_bytes;
                a->traffic[(size_t)d * D + src] += a->copy_bytes - a->disp_bytes;
                if (!a->per_node && node != snode) a->cross[l] += a->copy_bytes;
            }
            if (a->per_node) a->cross[l] += remote_nodes * a->copy_bytes;
            a->nodes_hist[(size_t)l * (a->N + 1) + nn]++;
            a->dev_hist[(size_t)l * (a->k + 1) + (nd <= a->k ? nd : a->k)]++;
            a->tok[l]++;
            a->tokens++;
        }
    }
}

int loc_store(const loc_t *a, record_t *rec, metrics_t *m) {
    if (a->tokens <= 0) return MS_OK;
    double cross = 0, bytes = 0, nodes = 0, devs = 0;
    for (int l = 0; l < a->L; l++) {
        double nm = 0, dm = 0;
        for (int i = 0; i <= a->N; i++) {
            double v = a->nodes_hist[(size_t)l * (a->N + 1) + i];
            nm += i * v;
            if (v > 0 && record_locality_hist(rec, l, "nodes", i, v)) return MS_ERR;
        }
        for (int i = 0; i <= a->k; i++) {
            double v = a->dev_hist[(size_t)l * (a->k + 1) + i];
            dm += i * v;
            if (v > 0 && record_locality_hist(rec, l, "devices", i, v)) return MS_ERR;
        }
        nodes += nm;
        devs += dm;
        cross += a->cross[l];
        bytes += a->bytes[l];
        double t = a->tok[l] > 0 ? a->tok[l] : 1;
        if (record_layer_locality(rec, l, a->cross[l], a->bytes[l], nm / t, dm / t))
            return MS_ERR;
    }
    for (int s = 0; s < a->D; s++)
        for (int d = 0; d < a->D; d++) {
            double v = a->traffic[(size_t)s * a->D + d];
            if (v > 0 && record_traffic(rec, s, d, v)) return MS_ERR;
        }
    metrics_set(m, METRIC_CROSS_NODE_GB, cross / 1e9);
    metrics_set(m, METRIC_CROSS_NODE_SHARE, bytes > 0 ? cross / bytes : 0);
    metrics_set(m, METRIC_NODES_PER_TOKEN, nodes / a->tokens);
    metrics_set(m, METRIC_DEVICES_PER_TOKEN, devs / a->tokens);
    return MS_OK;
}
