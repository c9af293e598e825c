/* step: one decode step as events on the engine.
 *
 * Per MoE layer l, with tok[s][d] the distinct tokens device s sends to
 * device d (a token whose experts share a device goes there once):
 *   READY(s, l)     device s starts layer l; its dispatch transfers start.
 *   DISPATCHED(d,l) all of d's incoming tokens have arrived: d computes.
 *   COMPUTED(d, l)  d's experts are done; combine transfers start.
 *   READY(s, l+1)   all of s's tokens are back (after the last layer: the
 *                   step ends on s).
 * A transfer s->d on a link type (NVLink inside a node, NIC between nodes)
 * of B bytes ends at start + latency + max(OUT_s, IN_d) / bandwidth, where
 * OUT_s and IN_d are all bytes s sends and d receives on that link type in
 * the phase: a port shares its bandwidth among its flows, so every flow on
 * it finishes when the busier of its two ports drains. Only the last arrival
 * at a device matters, so each device keeps a running maximum and a count
 * of outstanding sources, and one event fires when the count reaches zero:
 * O(D) events per phase instead of O(D^2). */
#include "step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { DISPATCH, COMBINE };

struct step_sim {
    cluster_t c;
    moe_model_t m;
    int D, L, E;
    /* per layer, built from the routing before the events run */
    int *tok;          /* [L][D][D] distinct tokens s -> d */
    double *pairs;     /* [L][D] token-expert pairs computed on d */
    int *active;       /* [L][D] slots with at least one token on d */
    double *port;      /* [L][2 phases][4][D]: out-nvl, out-nic, in-nvl, in-nic bytes */
    /* countdowns: [L][D] sources still to arrive, and the latest arrival */
    int *rem_in, *rem_back;
    int64_t *arr_in, *arr_back;
    step_result_t *res;
    int64_t *layer_end; /* [L] when the last device got layer l's tokens back */
    double *dev_load, *expert_load;
    eng_t *eng;        /* private: a step is a sub-simulation */
};

static double *port_row(step_sim_t *s, int l, int phase, int which) {
    return s->port + (((size_t)l * 2 + phase) * 4 + which) * s->D;
}

step_sim_t *step_new(const cluster_t *c, const moe_model_t *m) {
    step_sim_t *s = ms_calloc(1, sizeof *s);
    s->c = *c;
    s->m = *m;
    s->D = c->n_devices;
    s->L = moe_n_moe_layers(m);
    s->E = m->n_experts;
    size_t D = (size_t)s->D, L = (size_t)s->L;
    s->tok = ms_malloc(L * D * D * sizeof *s->tok);
    s->pairs = ms_malloc(L * D * sizeof *s->pairs);
    s->active = ms_malloc(L * D * sizeof *s->active);
    s->port = ms_malloc(L * 2 * 4 * D * sizeof *s->port);
    s->rem_in = ms_malloc(L * D * sizeof *s->rem_in);
    s->rem_back = ms_malloc(L * D * sizeof *s->rem_back);
    s->arr_in = ms_malloc(L * D * sizeof *s->arr_in);
    s->arr_back = ms_malloc(L * D * sizeof *s->arr_back);
    s->layer_end = ms_malloc(L * sizeof *s->layer_end);
    s->dev_load = ms_malloc(L * D * sizeof *s->dev_load);
    s->expert_load = ms_malloc(L * (size_t)s->E * sizeof *s->expert_load);
    s->eng = eng_new();
    return s;
}

void step_free(step_sim_t *s) {
    if (!s) return;
    free(s->tok);
    free(s->pairs);
    free(s->active);
    free(s->port);
    free(s->rem_in);
    free(s->rem_back);
    free(s->arr_in);
    free(s->arr_back);
    free(s->layer_end);
    free(s->dev_load);
    free(s->expert_load);
    eng_free(s->eng);
    free(s);
}

double step_compute_ns(const cluster_t *c, const moe_model_t *m, double pairs, int active) {
    if (pairs <= 0) return 0;
    double peak = (m->weight_bytes == 1 ? c->hw.flops_fp8 : c->hw.flops_bf16) * c->hw.eff_flops;
    double flops = 2.0 * 3.0 * m->hidden * (double)m->moe_inter * pairs;
    double bytes = active * moe_expert_bytes(m) +
                   pairs * m->hidden * (double)(m->dispatch_bytes + m->combine_bytes);
    double bw = c->hw.hbm_bw * c->hw.eff_hbm;
    return 1e9 * ms_dmax(flops / peak, bytes / bw);
}

/* Builds tok, pairs, active, loads and port bytes of every layer. */
static void build(step_sim_t *s, const place_layout_t *lo, const route_step_t *rt,
                  int (*pick)(void *, const place_layout_t *, int, int, int), void *pick_ctx) {
    int D = s->D, k = rt->top_k, dpn = s->c.devices_per_node;
    int maxs = 0;
    for (int l = 0; l < s->L; l++) maxs = ms_imax(maxs, lo->layer[l].n_slots);
    int *slot_tok = ms_calloc((size_t)maxs, sizeof *slot_tok);
    memset(s->expert_load, 0, (size_t)s->L * s->E * sizeof *s->expert_load);
    double hd = s->m.hidden * (double)s->m.dispatch_bytes;
    double hc = s->m.hidden * (double)s->m.combine_bytes;
    for (int l = 0; l < s->L; l++) {
        const place_layer_t *ly = &lo->layer[l];
        int *tok = s->tok + (size_t)l * D * D;
        double *pairs = s->pairs + (size_t)l * D;
        double *el = s->expert_load + (size_t)l * s->E;
        memset(tok, 0, (size_t)D * D * sizeof *tok);
        memset(pairs, 0, (size_t)D * sizeof *pairs);
        memset(slot_tok, 0, (size_t)ly->n_slots * sizeof *slot_tok);
        for (int t = 0; t < rt->n_tokens; t++) {
            int src = rt->src[t];
            const int16_t *ex = rt->expert + ((size_t)l * rt->n_tokens + t) * k;
            int devs[32], nd = 0;
            for (int j = 0; j < k; j++) {
                int e = ex[j];
                int slot = pick ? pick(pick_ctx, lo, l, e, src) : place_pick_default(lo, l, e, src);
                int d = place_slot_device(ly, slot);
                slot_tok[slot]++;
                pairs[d] += 1;
                el[e] += 1;
                int seen = 0;
                for (int i = 0; i < nd; i++) seen |= devs[i] == d;
                if (!seen) devs[nd++] = d;
            }
            for (int i = 0; i < nd; i++) tok[(size_t)src * D + devs[i]]++;
        }
        memcpy(s->dev_load + (size_t)l * D, pairs, (size_t)D * sizeof *pairs);
        int *act = s->active + (size_t)l * D;
        memset(act, 0, (size_t)D * sizeof *act);
        for (int sl = 0; sl < ly->n_slots; sl++)
            if (slot_tok[sl]) act[place_slot_device(ly, sl)]++;
        for (int ph = 0; ph < 2; ph++)
            for (int w = 0; w < 4; w++) memset(port_row(s, l, ph, w), 0, (size_t)D * sizeof(double));
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++) {
                int n = tok[(size_t)a * D + b];
                if (!n || a == b) continue;
                int nic = a / dpn != b / dpn;
                /* dispatch a -> b; combine b -> a */
                port_row(s, l, DISPATCH, 0 + nic)[a] += n * hd;
                port_row(s, l, DISPATCH, 2 + nic)[b] += n * hd;
                port_row(s, l, COMBINE, 0 + nic)[b] += n * hc;
                port_row(s, l, COMBINE, 2 + nic)[a] += n * hc;
                s->res->dispatch_bytes += n * hd;
                s->res->combine_bytes += n * hc;
            }
    }
    free(slot_tok);
}

/* Time a transfer from a to b of the given phase takes, ns. */
static double xfer_ns(step_sim_t *s, int l, int ph, int a, int b) {
    if (a == b) return 0;
    int nic = a / s->c.devices_per_node != b / s->c.devices_per_node;
    const hw_t *hw = &s->c.hw;
    double bw = nic ? hw->nic_bw * hw->eff_nic : hw->scaleup_bw * hw->eff_scaleup;
    double lat = nic ? hw->nic_lat_ns : hw->scaleup_lat_ns;
    double bytes = ms_dmax(port_row(s, l, ph, 0 + nic)[a], port_row(s, l, ph, 2 + nic)[b]);
    return lat + 1e9 * bytes / bw;
}

static void ev_ready(eng_t *eng, void *ctx, int64_t arg);
static void ev_dispatched(eng_t *eng, void *ctx, int64_t arg);
static void ev_computed(eng_t *eng, void *ctx, int64_t arg);

/* Counts one arrival at index i (layer * D + device) at time t; fires fn at
 * the latest arrival once every expected one is in. */
static void arrive(eng_t *eng, step_sim_t *s, int *rem, int64_t *arr, size_t i, int64_t t,
                   eng_fn fn, int64_t arg) {
    if (t > arr[i]) arr[i] = t;
    if (--rem[i] == 0) eng_schedule(eng, arr[i], fn, s, arg);
}

/* Device a starts layer l: its tokens leave for the devices of their
 * experts. A device with no tokens in flight goes straight on. */
static void ev_ready(eng_t *eng, void *ctx, int64_t arg) {
    step_sim_t *s = ctx;
    int D = s->D, l = (int)(arg / D), a = (int)(arg % D);
    int64_t now = eng_now(eng);
    if (l > 0 && now > s->layer_end[l - 1]) s->layer_end[l - 1] = now;
    if (l == s->L) {
        if (now > s->res->end_ns) s->res->end_ns = now;
        return;
    }
    if (s->rem_back[(size_t)l * D + a] == 0) {
        eng_schedule(eng, now, ev_ready, s, arg + D);
        return;
    }
    const int *tok = s->tok + (size_t)l * D * D + (size_t)a * D;
    for (int b = 0; b < D; b++)
        if (tok[b])
            arrive(eng, s, s->rem_in, s->arr_in, (size_t)l * D + b,
                   now + llround(xfer_ns(s, l, DISPATCH, a, b)), ev_dispatched, (int64_t)l * D + b);
}

/* Everything for b's experts has arrived: compute. */
static void ev_dispatched(eng_t *eng, void *ctx, int64_t arg) {
    step_sim_t *s = ctx;
    size_t i = (size_t)arg;
    eng_after(eng, llround(step_compute_ns(&s->c, &s->m, s->pairs[i], s->active[i])), ev_computed,
              s, arg);
}

/* b's experts are done: results go back to every device that sent tokens. */
static void ev_computed(eng_t *eng, void *ctx, int64_t arg) {
    step_sim_t *s = ctx;
    int D = s->D, l = (int)(arg / D), b = (int)(arg % D);
    int64_t now = eng_now(eng);
    const int *tok = s->tok + (size_t)l * D * D;
    for (int a = 0; a < D; a++)
        if (tok[(size_t)a * D + b])
            arrive(eng, s, s->rem_back, s->arr_back, (size_t)l * D + a,
                   now + llround(xfer_ns(s, l, COMBINE, b, a)), ev_ready, (int64_t)(l + 1) * D + a);
}

int step_run(step_sim_t *s, const step_in_t *in, step_result_t *out) {
    int D = s->D, L = s->L;
    const place_layout_t *lo = in->layout;
    const route_step_t *rt = in->route;
    if (!rt) return ms_err("step: count-mode routing needs the analytic mode (not built yet)");
    if (lo->n_layers != L || lo->n_devices != D || rt->n_layers != L || rt->n_devices != D)
        return ms_err("step: layout (%d layers, %d devices) or routing (%d layers, %d devices) "
                      "does not match the cluster (%d MoE layers, %d devices)",
                      lo->n_layers, lo->n_devices, rt->n_layers, rt->n_devices, L, D);
    memset(out, 0, sizeof *out);
    s->res = out;
    build(s, lo, rt, in->pick, in->pick_ctx);
    if (in->bg_bytes) /* background copies share every phase's ports */
        for (int l = 0; l < L; l++)
            for (int ph = 0; ph < 2; ph++)
                for (int w = 0; w < 4; w++)
                    for (int d = 0; d < D; d++)
                        port_row(s, l, ph, w)[d] += in->bg_bytes[(size_t)w * D + d] / (2.0 * L);
    int64_t t0 = in->start_ns;
    out->start_ns = out->end_ns = t0;
    for (int l = 0; l < L; l++) {
        s->layer_end[l] = t0;
        const int *tok = s->tok + (size_t)l * D * D;
        for (int d = 0; d < D; d++) {
            size_t i = (size_t)l * D + d;
            s->rem_in[i] = s->rem_back[i] = 0;
            s->arr_in[i] = s->arr_back[i] = t0;
        }
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++)
                if (tok[(size_t)a * D + b]) {
                    s->rem_in[(size_t)l * D + b]++;
                    s->rem_back[(size_t)l * D + a]++;
                }
    }
    eng_reset(s->eng, t0);
    for (int a = 0; a < D; a++) eng_schedule(s->eng, t0, ev_ready, s, a);
    eng_run_until(s->eng, ENG_NEVER);
    out->layer_ns = s->layer_end; /* turned into durations below */
    for (int l = L - 1; l >= 0; l--)
        s->layer_end[l] -= l ? s->layer_end[l - 1] : t0;
    out->dev_load = s->dev_load;
    out->expert_load = s->expert_load;
    return MS_OK;
}
