/* place: expert placement. A layout says, per MoE layer, which expert each
 * physical slot holds (slots are numbered device by device); a strategy is a
 * plug-in (struct of function pointers with a name and a version, like
 * sqlite3_vfs) that makes layouts from observed loads and may steer routing.
 *
 * Strategies see only this interface: loads in, layouts out. They never
 * touch the engine or the network. Adding one is a place_<name>.c file and
 * one line in the registry in place.c. */
#ifndef MOESIM_PLACE_H
#define MOESIM_PLACE_H

#include <stdint.h>
#include <stdio.h>

#include "cfg.h"
#include "gate.h"

/* One layer's placement. Slot s lives on device s / slots_per_device. */
typedef struct place_layer {
    int slots_per_device;
    int n_slots;       /* slots_per_device * n_devices */
    int *slot_expert;  /* [n_slots] slot -> expert */
    int *replicas;     /* [n_experts] replica count */
    int *rep_start;    /* [n_experts + 1] offsets into rep_slot */
    int *rep_slot;     /* [n_slots] each expert's slots, ascending */
} place_layer_t;

typedef struct place_layout {
    int n_layers, n_experts, n_devices, devices_per_node;
    place_layer_t *layer; /* [n_layers] */
} place_layout_t;

place_layout_t *place_layout_new(int n_layers, int n_experts, int n_devices, int devices_per_node);
void place_layout_free(place_layout_t *lo);
place_layout_t *place_layout_copy(const place_layout_t *lo);
/* Sets layer l from slot -> expert; builds replicas and the expert -> slot
 * index. Fails (with a message) on an id out of range or an expert with no
 * replica. */
int place_layer_set(place_layout_t *lo, int l, int slots_per_device, const int *slot_expert);
static inline int place_slot_device(const place_layer_t *ly, int slot) {
    return slot / ly->slots_per_device;
}
/* Writes "layer,slot,device,expert" rows (with header). */
int place_layout_write_csv(const place_layout_t *lo, FILE *f);

/* Writes SGLang's expert location (place_io.c): {"physical_to_logical_map":
 * [n_dense + n_layers][n_slots]}, the n_dense leading dense layers as the
 * trivial map slot i -> expert i mod E: what `--init-expert-location FILE.json`
 * loads. */
int place_layout_write_sglang(const place_layout_t *lo, int n_dense, FILE *f);
/* Reads a layout file, SGLang JSON or moesim's CSV (sniffed: JSON starts
 * with '{'), for n_layers MoE layers of n_experts experts in n_slots slots
 * per layer on n_devices devices. Leading extra rows of an SGLang map are
 * dense layers: checked, then dropped. Every error names the file and the
 * position (line, or map[layer][slot]) and the fix. */
int place_layout_read(const char *path, int n_layers, int n_experts, int n_devices,
                      int devices_per_node, int n_slots, place_layout_t **out);

/* The same JSON from memory, exactly n_layers rows (no dense rows): an
 * external strategy's answer (place_exec.c); name leads every message. */
int place_layout_parse_json(const char *name, const char *buf, size_t len, int n_layers,
                            int n_experts, int n_devices, int devices_per_node, int n_slots,
                            place_layout_t **out);

/* Per-device load of layer l when expert e's load is split evenly over its
 * replicas: dev_load[D] (the accounting the placement papers use). */
void place_device_load(const place_layout_t *lo, int l, const double *expert_load,
                       double *dev_load);

/* What a strategy is told about the deployment and its own parameters. */
typedef struct place_env {
    int n_layers, n_experts, n_devices, devices_per_node, n_nodes;
    int redundant;        /* extra slots per layer beyond n_experts */
    int top_k, n_groups, topk_groups; /* routing shape of the model */
    const gate_spec_t *gate; /* the routing the run replays (group and node
                              * limits as configured); NULL: the model's
                              * group-limited top-k */
    cfg_t *cfg;           /* [strategy.<name>] keys for its parameters */
    const char *cfg_section;
    uint64_t seed;
} place_env_t;

/* Loads of one simulated step, the monitoring feed. */
typedef struct place_obs {
    int64_t now_ns;            /* simulated time at the end of the step */
    int step;
    const double *expert_load; /* [n_layers][n_experts] token-expert pairs */
    const double *device_load; /* [n_layers][n_devices] pairs served */
} place_obs_t;

typedef struct place_state place_state_t; /* a strategy's private state */

/* The version of place_ops_t below; a strategy states the one it implements
 * and place_find refuses any other. */
#define PLACE_OPS_VERSION 1

typedef struct place_ops {
    int version;        /* of this interface the strategy implements: PLACE_OPS_VERSION */
    const char *name;   /* registry name, e.g. "eplb" */
    const char *summary;
    int algo_version;   /* the strategy's own version, stored with results */
    /* How figures draw it: a colour "#rrggbb" and a gnuplot point type, the
     * same in every figure (NULL: the report picks a spare colour by a hash
     * of the name). baseline 1: the reference the report states the other
     * strategies' changes against (static). */
    const char *color;
    int point;
    int baseline;
    /* Input it cannot run without, e.g. "[placement] layout" (NULL: none):
     * code that tries every registered strategy skips these. */
    const char *requires;

    /* Makes the first layout into *out (already sized). prior is
     * [n_layers][n_experts] load statistics, or NULL when none. */
    int (*init)(const place_env_t *env, const double *prior, place_state_t **st,
                place_layout_t **out);
    /* Optional: sees every step's loads. */
    void (*observe)(place_state_t *st, const place_obs_t *obs);
    /* Optional: returns 1 and a new layout in *out when it wants one (a new
     * allocation the caller frees), 0 when the current one stands, or MS_ERR. */
    int (*replan)(place_state_t *st, int64_t now_ns, const place_layout_t *cur,
                  place_layout_t **out);
    /* Optional: may change a token's experts. scores[n_experts] are the
     * router's unbiased scores; writes top_k experts to out, or -1 for a
     * choice it drops (the token skips that expert). NULL: the run's
     * routing (env->gate) on the scores. */
    void (*route)(place_state_t *st, int layer, const float *scores, int *out);
    /* Optional, with route: told before a step's tokens are routed. n_tokens
     * tokens, token i on device src[i] (NULL: unknown); route is then called
     * for tokens 0..n_tokens-1 of the first layer, then of the next, ... */
    void (*begin_step)(place_state_t *st, int step, int n_tokens, const int *src);
    /* Optional: which slot serves a token of src_device for expert e.
     * NULL: place_pick_default. */
    int (*pick_replica)(place_state_t *st, const place_layout_t *lo, int layer, int expert,
                        int src_device);
    /* Optional: metrics the strategy wants stored (name, value) pairs;
     * called at the end of a run. Returns how many it wrote. */
    int (*metrics)(place_state_t *st, const char **names, double *values, int max);
    void (*destroy)(place_state_t *st);
} place_ops_t;

/* The registry. place_find also makes "exec:NAME", an external command's
 * strategy (place_exec.c), on first use; place_count and place_at list the
 * registered ones only. */
const place_ops_t *place_find(const char *name);
/* MS_OK when ops implements PLACE_OPS_VERSION and has a name and init, else
 * an error naming the strategy and the version it would need. */
int place_ops_check(const place_ops_t *ops);
const place_ops_t *place_exec_find(const char *name);
/* A strategy's parameter section: "strategy.<name>", and for exec:NAME
 * "strategy.NAME". */
void place_cfg_section(const place_ops_t *ops, char *sec, size_t n);
const char *place_names(void);
int place_count(void);
const place_ops_t *place_at(int i);

/* Replica choice shared by every strategy unless it overrides it: the
 * source device's own replica, else one on the same node, else a remote
 * one, spread by the source rank (rank % count) as OmniPlacement does. */
int place_pick_default(const place_layout_t *lo, int layer, int expert, int src_device);

/* Lower bound on the maximum device load of a layer with expert loads
 * w[E] on D devices and n_slots slots, over every placement (place_bound.c):
 * at least the mean (BestEP), tightened by the hottest experts' loads over
 * the most replicas they could get. */
double place_bound(const double *w, int E, int D, int n_slots);

/* Mean over layers of the PAR of layout lo when expert loads are w
 * ([n_layers][n_experts]), each split evenly over its replicas: how a layout
 * fares on given counts, without sampling. */
double place_par_mean(const place_layout_t *lo, const double *w);

/* Metrics of a layer's device loads. */
double place_par(const double *dev_load, int n);          /* max / mean */
double place_max(const double *v, int n);

/* ---- helpers for strategy authors (place.c) */

/* 1 when layouts a and b put the same experts in the same slots of every
 * layer (a re-plan that changes nothing is no re-plan). */
int place_layout_same(const place_layout_t *a, const place_layout_t *b);

/* The section a strategy's parameters live in: env->cfg_section, or
 * fallback ("strategy.<name>") when the caller named none. */
const char *place_param_section(const place_env_t *env, const char *fallback);
/* A parameter [sec] key of env->cfg, checked by cfg.h (type, range, the
 * key table; a bad value names its file and line); def when the strategy
 * runs without a config (tests, `moesim place` without one). */
int place_param_int(const place_env_t *env, const char *sec, const char *key, long def, long lo,
                    long hi, long *out);
int place_param_double(const place_env_t *env, const char *sec, const char *key, double def,
                       double lo, double hi, double *out);
int place_param_bool(const place_env_t *env, const char *sec, const char *key, int def, int *out);
int place_param_str(const place_env_t *env, const char *sec, const char *key, const char *def,
                    const char **out);

/* The slot check every layout needs: n_experts + redundant slots must
 * split evenly over the devices. MS_OK, or says why, the message opened by
 * who (e.g. "eplb: "; "" for none). */
int place_check_slots(const place_env_t *env, const char *who);

/* The prior a strategy plans its first layout from: prior itself, or, when
 * the run gives none, zero loads ([n_layers][n_experts], kept in *zeros for
 * the caller to free): every strategy then plans from the same kind of
 * input and none needs a branch of its own for "no prior". */
const double *place_prior_or_zero(const place_env_t *env, const double *prior, double **zeros);

/* A strategy's metrics hook (place_ops_t.metrics) hands back its n
 * (name, value) pairs through this: at most max of them, copied into names
 * and values; returns how many. */
int place_metrics_out(const char *const *n, const double *v, int count, const char **names,
                      double *values, int max);

/* A sliding window of expert loads, for strategies that re-plan every
 * interval steps from the last window steps. It is kept as a ring of bucket
 * sums: a bucket holds gcd(window, interval) steps, so every re-plan (a
 * multiple of interval steps) sees exactly the last window steps without
 * storing each step. */
typedef struct place_window {
    int window, interval;    /* steps; interval 0: never re-plan */
    int bucket_steps, n_buckets;
    size_t n;                /* values a step ([n_layers][n_experts]) */
    double *ring;            /* [n_buckets][n] closed buckets */
    int ring_next, ring_used;
    double *cur;             /* [n] the bucket being filled */
    int cur_steps;
    int since;               /* steps observed since the last re-plan */
    double *sum;             /* [n] the window's loads, filled by place_window_due */
} place_window_t;

void place_window_init(place_window_t *w, long window, long interval, size_t n);
void place_window_free(place_window_t *w);
/* One step's loads (n values); nothing when interval is 0. */
void place_window_add(place_window_t *w, const double *load);
/* At a re-plan opportunity: 1 with the window's loads in w->sum when
 * interval steps have passed since the last one and the window holds some
 * load, else 0 (nothing seen: keep the layout). */
int place_window_due(place_window_t *w);

#endif
