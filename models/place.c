/* place: layouts, the strategy registry and the shared replica choice, and
 * the helpers every strategy's init and re-plan use (parameters, the slot
 * check, the prior, the sliding load window). */
#include "place.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* The registry: one line per strategy. */
extern const place_ops_t place_static_ops;
extern const place_ops_t place_eplb_ops;
extern const place_ops_t place_omni_ops;
extern const place_ops_t place_bias_ops;
extern const place_ops_t place_layout_ops;
extern const place_ops_t place_capacity_ops;
extern const place_ops_t place_predictive_ops;

static const place_ops_t *const registry[] = {
    &place_static_ops,
    &place_eplb_ops,
    &place_omni_ops,
    &place_bias_ops,
    &place_layout_ops,
    &place_capacity_ops,
    &place_predictive_ops,
};

#define N_REG ((int)(sizeof registry / sizeof *registry))

int place_ops_check(const place_ops_t *ops) {
    if (ops->version != PLACE_OPS_VERSION)
        return ms_err("strategy %s implements version %d of the strategy interface, this moesim "
                      "version %d (update the strategy to models/place.h)",
                      ops->name ? ops->name : "(unnamed)", ops->version, PLACE_OPS_VERSION);
    if (!ops->name || !ops->name[0] || !ops->init)
        return ms_err("strategy %s has no %s (every strategy needs a name and init)",
                      ops->name ? ops->name : "(unnamed)", ops->init ? "name" : "init");
    return MS_OK;
}

/* A registry entry is handed out only once it passes place_ops_check. */
static const place_ops_t *checked(const place_ops_t *ops) {
    return ops && place_ops_check(ops) == MS_OK ? ops : NULL;
}

const place_ops_t *place_find(const char *name) {
    if (!strncasecmp(name, "exec:", 5)) return checked(place_exec_find(name));
    for (int i = 0; i < N_REG; i++)
        if (!strcasecmp(registry[i]->name, name)) return checked(registry[i]);
    return NULL;
}

int place_count(void) { return N_REG; }

void place_cfg_section(const place_ops_t *ops, char *sec, size_t n) {
    const char *name = ops->name;
    if (!strncasecmp(name, "exec:", 5)) name += 5;
    snprintf(sec, n, "strategy.%s", name);
}
const place_ops_t *place_at(int i) { return i >= 0 && i < N_REG ? checked(registry[i]) : NULL; }

const char *place_names(void) {
    static char buf[256];
    if (!buf[0])
        for (int i = 0; i < N_REG; i++) {
            if (i) strcat(buf, ", ");
            strcat(buf, registry[i]->name);
            if (i == N_REG - 1) strcat(buf, ", exec:NAME");
        }
    return buf;
}

place_layout_t *place_layout_new(int n_layers, int n_experts, int n_devices, int devices_per_node) {
    place_layout_t *lo = ms_calloc(1, sizeof *lo);
    lo->n_layers = n_layers;
    lo->n_experts = n_experts;
    lo->n_devices = n_devices;
    lo->devices_per_node = devices_per_node;
    lo->layer = ms_calloc((size_t)n_layers, sizeof *lo->layer);
    return lo;
}

static void layer_clear(place_layer_t *ly) {
    free(ly->slot_expert);
    free(ly->replicas);
    free(ly->rep_start);
    free(ly->rep_slot);
    memset(ly, 0, sizeof *ly);
}

void place_layout_free(place_layout_t *lo) {
    if (!lo) return;
    for (int l = 0; l < lo->n_layers; l++) layer_clear(&lo->layer[l]);
    free(lo->layer);
    free(lo);
}

place_layout_t *place_layout_copy(const place_layout_t *lo) {
    place_layout_t *c = place_layout_new(lo->n_layers, lo->n_experts, lo->n_devices,
                                         lo->devices_per_node);
    for (int l = 0; l < lo->n_layers; l++)
        if (lo->layer[l].slot_expert)
            place_layer_set(c, l, lo->layer[l].slots_per_device, lo->layer[l].slot_expert);
    return c;
}

int place_layer_set(place_layout_t *lo, int l, int spd, const int *slot_expert) {
    int E = lo->n_experts, S = spd * lo->n_devices;
    if (spd < 1) return ms_err("layer %d: %d slots per device (need at least 1)", l, spd);
    if (S < E)
        return ms_err("layer %d: %d slots cannot hold %d experts (add slots per device)", l, S, E);
    int *cnt = ms_calloc((size_t)E, sizeof *cnt);
    for (int s = 0; s < S; s++) {
        int e = slot_expert[s];
        if (e < 0 || e >= E) {
            free(cnt);
            return ms_err("layer %d slot %d: expert %d out of range 0..%d", l, s, e, E - 1);
        }
        cnt[e]++;
    }
    for (int e = 0; e < E; e++)
        if (!cnt[e]) {
            free(cnt);
            return ms_err("layer %d: expert %d has no replica (every expert needs a slot)", l, e);
        }
    place_layer_t *ly = &lo->layer[l];
    layer_clear(ly);
    ly->slots_per_device = spd;
    ly->n_slots = S;
    ly->slot_expert = ms_malloc((size_t)S * sizeof(int));
    memcpy(ly->slot_expert, slot_expert, (size_t)S * sizeof(int));
    ly->replicas = cnt;
    ly->rep_start = ms_malloc((size_t)(E + 1) * sizeof(int));
    ly->rep_slot = ms_malloc((size_t)S * sizeof(int));
    ly->rep_start[0] = 0;
    for (int e = 0; e < E; e++) ly->rep_start[e + 1] = ly->rep_start[e] + cnt[e];
    int *fill = ms_calloc((size_t)E, sizeof *fill);
    for (int s = 0; s < S; s++) {
        int e = slot_expert[s];
        ly->rep_slot[ly->rep_start[e] + fill[e]++] = s;
    }
    free(fill);
    return MS_OK;
}

int place_layout_write_csv(const place_layout_t *lo, FILE *f) {
    fprintf(f, "layer,slot,device,expert\n");
    for (int l = 0; l < lo->n_layers; l++) {
        const place_layer_t *ly = &lo->layer[l];
        for (int s = 0; s < ly->n_slots; s++)
            fprintf(f, "%d,%d,%d,%d\n", l, s, place_slot_device(ly, s), ly->slot_expert[s]);
    }
    return ferror(f) ? ms_err("write error on layout CSV") : MS_OK;
}

void place_device_load(const place_layout_t *lo, int l, const double *expert_load,
                       double *dev_load) {
    const place_layer_t *ly = &lo->layer[l];
    memset(dev_load, 0, (size_t)lo->n_devices * sizeof *dev_load);
    for (int s = 0; s < ly->n_slots; s++) {
        int e = ly->slot_expert[s];
        dev_load[place_slot_device(ly, s)] += expert_load[e] / ly->replicas[e];
    }
}

int place_pick_default(const place_layout_t *lo, int layer, int expert, int src) {
    const place_layer_t *ly = &lo->layer[layer];
    const int *slots = ly->rep_slot + ly->rep_start[expert];
    int n = ly->replicas[expert];
    if (n == 1) return slots[0];
    int node = src / lo->devices_per_node, same = 0, remote = 0;
    for (int i = 0; i < n; i++) {
        int d = place_slot_device(ly, slots[i]);
        if (d == src) return slots[i];
        if (d / lo->devices_per_node == node) same++;
        else remote++;
    }
    int want_same = same > 0;
    int k = src % (want_same ? same : remote);
    for (int i = 0; i < n; i++) {
        int d = place_slot_device(ly, slots[i]);
        if ((d / lo->devices_per_node == node) == want_same && k-- == 0) return slots[i];
    }
    return slots[0]; /* unreachable */
}

double place_max(const double *v, int n) {
    double m = v[0];
    for (int i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

double place_par_mean(const place_layout_t *lo, const double *w) {
    double *dl = ms_malloc((size_t)lo->n_devices * sizeof *dl), sum = 0;
    for (int l = 0; l < lo->n_layers; l++) {
        place_device_load(lo, l, w + (size_t)l * lo->n_experts, dl);
        sum += place_par(dl, lo->n_devices);
    }
    free(dl);
    return sum / lo->n_layers;
}

double place_par(const double *v, int n) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += v[i];
    return sum > 0 ? place_max(v, n) * n / sum : 1.0;
}

/* ---- helpers for strategy authors */

int place_layout_same(const place_layout_t *a, const place_layout_t *b) {
    if (a->n_layers != b->n_layers) return 0;
    for (int l = 0; l < a->n_layers; l++) {
        int n = a->layer[l].n_slots; /* 0: a layer not set yet, no array to compare */
        if (n != b->layer[l].n_slots ||
            (n && memcmp(a->layer[l].slot_expert, b->layer[l].slot_expert,
                         (size_t)n * sizeof *a->layer[l].slot_expert)))
            return 0;
    }
    return 1;
}

const char *place_param_section(const place_env_t *env, const char *fallback) {
    return env->cfg_section ? env->cfg_section : fallback;
}

int place_param_int(const place_env_t *env, const char *sec, const char *key, long def, long lo,
                    long hi, long *out) {
    if (!env->cfg) {
        *out = def;
        return MS_OK;
    }
    return cfg_int(env->cfg, sec, key, def, lo, hi, out);
}

int place_param_double(const place_env_t *env, const char *sec, const char *key, double def,
                       double lo, double hi, double *out) {
    if (!env->cfg) {
        *out = def;
        return MS_OK;
    }
    return cfg_double(env->cfg, sec, key, def, lo, hi, out);
}

int place_param_bool(const place_env_t *env, const char *sec, const char *key, int def, int *out) {
    if (!env->cfg) {
        *out = def;
        return MS_OK;
    }
    return cfg_bool(env->cfg, sec, key, def, out);
}

int place_param_str(const place_env_t *env, const char *sec, const char *key, const char *def,
                    const char **out) {
    if (!env->cfg) {
        *out = def;
        return MS_OK;
    }
    return cfg_str(env->cfg, sec, key, def, out);
}

int place_check_slots(const place_env_t *env, const char *who) {
    int E = env->n_experts, D = env->n_devices, S = E + env->redundant;
    if (D > 0 && S % D == 0) return MS_OK;
    return ms_err("%s%d experts + %d redundant = %d slots do not divide over %d devices (make "
                  "experts + redundant a multiple of the device count)",
                  who, E, env->redundant, S, D);
}

const double *place_prior_or_zero(const place_env_t *env, const double *prior, double **zeros) {
    *zeros = NULL;
    if (prior) return prior;
    *zeros = ms_calloc((size_t)env->n_layers * env->n_experts, sizeof **zeros);
    return *zeros;
}

int place_metrics_out(const char *const *n, const double *v, int count, const char **names,
                      double *values, int max) {
    int k = ms_imin(max, count);
    for (int i = 0; i < k; i++) {
        names[i] = n[i];
        values[i] = v[i];
    }
    return k;
}

static long gcd_l(long a, long b) {
    while (b) {
        long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

void place_window_init(place_window_t *w, long window, long interval, size_t n) {
    memset(w, 0, sizeof *w);
    w->window = (int)window, w->interval = (int)interval, w->n = n;
    if (interval > 0) {
        w->bucket_steps = (int)gcd_l(window, interval);
        w->n_buckets = (int)(window / w->bucket_steps);
        w->ring = ms_calloc((size_t)w->n_buckets * n, sizeof *w->ring);
        w->cur = ms_calloc(n, sizeof *w->cur);
        w->sum = ms_calloc(n, sizeof *w->sum);
    }
}

void place_window_free(place_window_t *w) {
    free(w->ring);
    free(w->cur);
    free(w->sum);
    memset(w, 0, sizeof *w);
}

void place_window_add(place_window_t *w, const double *load) {
    if (!w->interval) return;
    size_t n = w->n;
    for (size_t i = 0; i < n; i++) w->cur[i] += load[i];
    w->since++;
    if (++w->cur_steps < w->bucket_steps) return;
    memcpy(w->ring + (size_t)w->ring_next * n, w->cur, n * sizeof *w->cur);
    memset(w->cur, 0, n * sizeof *w->cur);
    w->cur_steps = 0;
    w->ring_next = (w->ring_next + 1) % w->n_buckets;
    if (w->ring_used < w->n_buckets) w->ring_used++;
}

int place_window_due(place_window_t *w) {
    if (!w->interval || w->since < w->interval) return 0;
    w->since = 0;
    size_t n = w->n;
    memset(w->sum, 0, n * sizeof *w->sum);
    double total = 0;
    for (int b = 0; b < w->ring_used; b++) {
        const double *r = w->ring + (size_t)b * n;
        for (size_t i = 0; i < n; i++) w->sum[i] += r[i];
    }
    for (size_t i = 0; i < n; i++) total += w->sum[i];
    return total > 0;
}
