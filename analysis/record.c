/* record: one recorder for every producer of results, on the store's
 * atomic runs (staged, then published whole). */
#include "record.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

void record_hash(const char *text, char hash[17]) {
    snprintf(hash, 17, "%016llx", (unsigned long long)ms_hash64(text, strlen(text)));
}

int record_begin(record_t *r, store_t *st, const store_run_t *meta, const char *text) {
    memset(r, 0, sizeof *r);
    r->st = st;
    char hash[17];
    record_hash(text, hash);
    store_run_t m = *meta;
    m.config = text;
    m.config_hash = hash;
    if (store_run_begin(st, &m, &r->run_id)) return MS_ERR;
    r->open = 1;
    return MS_OK;
}

int record_commit(record_t *r) {
    r->open = 0; /* a failed commit rolls the run back itself */
    if (store_run_commit(r->st)) return MS_ERR;
    /* Published now (not batched): the id the target gave it. */
    int64_t id = store_final_id(r->st, r->run_id);
    if (id > 0) r->run_id = id;
    return MS_OK;
}

void record_abort(record_t *r) {
    if (r->open) store_run_abort(r->st);
    r->open = 0;
}

int record_step(record_t *r, int step, int64_t start_ns, int64_t duration_ns, double tokens) {
    return store_step(r->st, r->run_id, step, start_ns, duration_ns, tokens);
}

int record_layer_steps(record_t *r, int step, const int64_t *layer_ns, const metrics_loads_t *a) {
    for (int l = 0; l < a->L; l++)
        if (store_layer_step(r->st, r->run_id, step, l, layer_ns[l], a->step_max[l],
                             a->step_mean[l]))
            return MS_ERR;
    return MS_OK;
}

int record_replan(record_t *r, int64_t time_ns, int step, int layers_changed, double bytes) {
    return store_replan(r->st, r->run_id, time_ns, step, layers_changed, bytes);
}

int record_migration(record_t *r, const store_migration_t *m) {
    return store_migration(r->st, r->run_id, m);
}

int record_layer_locality(record_t *r, int layer, double cross_node_bytes, double bytes,
                          double nodes_mean, double devices_mean) {
    return store_layer_locality(r->st, r->run_id, layer, cross_node_bytes, bytes, nodes_mean,
                                devices_mean);
}

int record_locality_hist(record_t *r, int layer, const char *kind, int touched, double tokens) {
    return store_locality_hist(r->st, r->run_id, layer, kind, touched, tokens);
}

int record_traffic(record_t *r, int src, int dst, double bytes) {
    return store_traffic(r->st, r->run_id, src, dst, bytes);
}

int record_requests(record_t *r, const store_request_t *rows, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (store_request(r->st, r->run_id, &rows[i])) return MS_ERR;
    return MS_OK;
}

int record_layers(record_t *r, const place_layout_t *lo, const double *trace_cnt,
                  const metrics_loads_t *a, const metrics_layer_bound_t *lb) {
    int L = lo->n_layers, D = lo->n_devices, E = lo->n_experts;
    for (int l = 0; l < L; l++) {
        const double *dl = a->dev_sum + (size_t)l * D;
        for (int d = 0; d < D; d++)
            if (store_device_load(r->st, r->run_id, l, d, dl[d])) return MS_ERR;
        if (store_layer_bound(r->st, r->run_id, l, lb[l].best_ep, lb[l].bound, lb[l].max_load))
            return MS_ERR;
        for (int e = 0; e < E; e++)
            if (store_replicas(r->st, r->run_id, l, e, lo->layer[l].replicas[e]) ||
                store_trace_count(r->st, r->run_id, l, e, trace_cnt[(size_t)l * E + e]))
                return MS_ERR;
    }
    return MS_OK;
}

int record_metrics(record_t *r, const metrics_t *m) { return metrics_store(r->st, r->run_id, m); }

int record_metrics_ci(store_t *st, int64_t last_run, const metrics_ci_t *ci) {
    return metrics_store_ci(st, last_run, ci);
}

int record_strategy_metrics(record_t *r, const place_ops_t *ops, place_state_t *ps,
                            const char *prefix) {
    if (!ops->metrics) return MS_OK;
    const char *names[32];
    double vals[32];
    int n = ops->metrics(ps, names, vals, 32);
    for (int i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s%s", prefix, names[i]);
        if (store_metric(r->st, r->run_id, name, vals[i], "")) return MS_ERR;
    }
    return MS_OK;
}
