/* migr: turning layout changes into timed weight copies. */
#include "migr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Scratch kept with the state (not in the header: nobody else reads it). */
typedef struct {
    migr_state_t pub;
    int *cnt;      /* [n_experts] per-device copy balance while diffing */
    int *busy_in;  /* [n_devices] a copy lands here this batch */
    int *busy_out; /* [n_devices] a copy leaves from here this batch */
} migr_priv_t;

migr_state_t *migr_new(enum migr_mode mode, const cluster_t *c, double expert_bytes,
                       int64_t fixed_ns, place_layout_t *live) {
    migr_priv_t *p = ms_calloc(1, sizeof *p);
    migr_state_t *m = &p->pub;
    m->mode = mode;
    m->c = *c;
    m->expert_bytes = expert_bytes;
    m->fixed_ns = fixed_ns;
    m->live = live;
    int D = c->n_devices;
    m->left = ms_calloc((size_t)live->n_layers, sizeof *m->left);
    m->bg = ms_calloc(4 * (size_t)D, sizeof *m->bg);
    m->sent = ms_calloc((size_t)D, sizeof *m->sent);
    p->cnt = ms_calloc((size_t)live->n_experts, sizeof *p->cnt);
    p->busy_in = ms_calloc((size_t)D, sizeof *p->busy_in);
    p->busy_out = ms_calloc((size_t)D, sizeof *p->busy_out);
    return m;
}

void migr_free(migr_state_t *m) {
    if (!m) return;
    migr_priv_t *p = (migr_priv_t *)m;
    place_layout_free(m->live);
    place_layout_free(m->target);
    free(m->left);
    free(m->pend);
    free(m->flight);
    free(m->log);
    free(m->bg);
    free(m->sent);
    free(p->cnt);
    free(p->busy_in);
    free(p->busy_out);
    free(p);
}

static void push(migr_t **v, int *n, int *cap, migr_t x) {
    if (*n == *cap) *v = ms_realloc(*v, (size_t)(*cap = *cap ? 2 * *cap : 64) * sizeof x);
    (*v)[(*n)++] = x;
}

/* A copy has moved (or is on its way with a known arrival): log it. */
static void log_copy(migr_state_t *m, const migr_t *c) {
    push(&m->log, &m->n_log, &m->cap_log, *c);
    m->total_bytes += c->bytes;
    m->total_copies++;
}

static int same_node(const migr_state_t *m, int a, int b) {
    return cluster_node(&m->c, a) == cluster_node(&m->c, b);
}

/* Time one copy of `bytes` takes from a to b when the busier of its two
 * ports carries port_bytes in all. */
static int64_t xfer_ns(const migr_state_t *m, int a, int b, double port_bytes) {
    if (a == b) return 0;
    const hw_t *hw = &m->c.hw;
    int nvl = same_node(m, a, b);
    double bw = nvl ? hw->scaleup_bw * hw->eff_scaleup : hw->nic_bw * hw->eff_nic;
    double lat = nvl ? hw->scaleup_lat_ns : hw->nic_lat_ns;
    return llround(lat + 1e9 * port_bytes / bw);
}

/* The device to copy expert e of layer l from, for dst: dst itself when it
 * already holds a copy, else a holder on dst's node, else a remote one;
 * within a tier the one that has sent least (ties: lowest id). busy (may be
 * NULL) marks devices that cannot send now. -1 if every holder is busy. */
static int pick_src(const migr_state_t *m, int l, int e, int dst, const int *busy) {
    const place_layer_t *ly = &m->live->layer[l];
    const int *slots = ly->rep_slot + ly->rep_start[e];
    int best = -1, best_tier = 3;
    for (int i = 0; i < ly->replicas[e]; i++) {
        int d = place_slot_device(ly, slots[i]);
        if (d == dst) return dst;
        if (busy && busy[d]) continue;
        int tier = same_node(m, d, dst) ? 1 : 2;
        if (tier < best_tier || (tier == best_tier && m->sent[d] < m->sent[best])) {
            best = d;
            best_tier = tier;
        }
    }
    return best;
}

static int layer_equal(const place_layer_t *a, const place_layer_t *b) {
    return a->slots_per_device == b->slots_per_device && a->n_slots == b->n_slots &&
           !memcmp(a->slot_expert, b->slot_expert, (size_t)a->n_slots * sizeof(int));
}

/* Appends layer l's copies (src unset: -1) to the pending list; returns
 * how many. A device needs a copy of e for each replica the new layer puts
 * on it beyond those it already holds; moving a replica between slots of
 * one device costs nothing. */
static int diff_layer(migr_state_t *m, int l) {
    migr_priv_t *p = (migr_priv_t *)m;
    const place_layer_t *o = &m->live->layer[l], *n = &m->target->layer[l];
    int D = m->c.n_devices, copies = 0;
    for (int d = 0; d < D; d++) {
        const int *ns = n->slot_expert + (size_t)d * n->slots_per_device;
        const int *os = o->slot_expert + (size_t)d * o->slots_per_device;
        for (int i = 0; i < n->slots_per_device; i++) p->cnt[ns[i]]++;
        for (int i = 0; i < o->slots_per_device; i++) p->cnt[os[i]]--;
        for (int i = 0; i < n->slots_per_device; i++)
            if (p->cnt[ns[i]] > 0) {
                p->cnt[ns[i]]--;
                push(&m->pend, &m->n_pend, &m->cap_pend,
                     (migr_t){.layer = l, .expert = ns[i], .src = -1, .dst = d,
                              .bytes = m->expert_bytes});
                copies++;
            }
        for (int i = 0; i < n->slots_per_device; i++) p->cnt[ns[i]] = 0;
        for (int i = 0; i < o->slots_per_device; i++) p->cnt[os[i]] = 0;
    }
    return copies;
}

static void switch_layer(migr_state_t *m, int l) {
    const place_layer_t *t = &m->target->layer[l];
    if (place_layer_set(m->live, l, t->slots_per_device, t->slot_expert))
        abort(); /* the target was a valid layout: cannot happen */
}

/* Drops the target once every layer has switched. */
static void maybe_done(migr_state_t *m) {
    if (m->n_pend || m->n_flight) return;
    for (int l = 0; l < m->live->n_layers; l++)
        if (m->left[l]) return;
    place_layout_free(m->target);
    m->target = NULL;
}

void migr_plan(migr_state_t *m, place_layout_t *next, int64_t now_ns, migr_plan_info_t *info) {
    memset(info, 0, sizeof *info);
    int L = m->live->n_layers, D = m->c.n_devices;
    /* Copies of an older plan that have not started are dropped: the new
     * plan is diffed against what serves now. */
    place_layout_free(m->target);
    m->target = next;
    m->n_pend = 0;
    memset(m->left, 0, (size_t)L * sizeof *m->left);
    for (int l = 0; l < L; l++) {
        if (layer_equal(&m->live->layer[l], &next->layer[l])) continue;
        info->layers_changed++;
        int first = m->n_pend;
        m->left[l] = diff_layer(m, l);
        /* A second replica on a device that already holds the expert is a
         * local copy: done at once, no link involved. */
        int kept = first;
        for (int i = first; i < m->n_pend; i++) {
            migr_t c = m->pend[i];
            if (pick_src(m, l, c.expert, c.dst, NULL) != c.dst) {
                m->pend[kept++] = c;
                continue;
            }
            c.src = c.dst;
            c.start_ns = c.done_ns = now_ns;
            log_copy(m, &c);
            info->bytes += c.bytes;
            info->copies++;
            m->left[l]--;
        }
        m->n_pend = kept;
    }
    for (int i = 0; i < m->n_pend; i++) info->bytes += m->pend[i].bytes;
    info->copies += m->n_pend;

    if (m->mode == MIGR_BLOCKING) {
        /* Everything moves at once: each port shares its bandwidth among
         * the copies on it, and a copy ends when its busier port drains. */
        double *port = m->bg;
        memset(port, 0, 4 * (size_t)D * sizeof *port);
        for (int i = 0; i < m->n_pend; i++) {
            migr_t *c = &m->pend[i];
            c->src = pick_src(m, c->layer, c->expert, c->dst, NULL);
            m->sent[c->src] += c->bytes;
            int nic = !same_node(m, c->src, c->dst);
            port[(MIGR_OUT_NVL + nic) * D + c->src] += c->bytes;
            port[(MIGR_IN_NVL + nic) * D + c->dst] += c->bytes;
        }
        int64_t end = now_ns;
        for (int i = 0; i < m->n_pend; i++) {
            migr_t *c = &m->pend[i];
            int nic = !same_node(m, c->src, c->dst);
            double b = ms_dmax(port[(MIGR_OUT_NVL + nic) * D + c->src],
                               port[(MIGR_IN_NVL + nic) * D + c->dst]);
            c->start_ns = now_ns;
            c->done_ns = now_ns + xfer_ns(m, c->src, c->dst, b);
            if (c->done_ns > end) end = c->done_ns;
            log_copy(m, c);
        }
        memset(port, 0, 4 * (size_t)D * sizeof *port);
        m->n_pend = 0;
        memset(m->left, 0, (size_t)L * sizeof *m->left);
        if (info->layers_changed) info->pause_ns = end - now_ns + m->fixed_ns;
        m->pause_ns += info->pause_ns;
        if (!info->layers_changed) {
            place_layout_free(m->target);
            m->target = NULL;
        }
        return;
    }
    for (int l = 0; l < L; l++)
        if (!m->left[l] && !layer_equal(&m->live->layer[l], &next->layer[l])) switch_layer(m, l);
    maybe_done(m);
}

void migr_estimate(const migr_state_t *m, const place_layout_t *next, migr_plan_info_t *info) {
    /* a scratch migration in blocking mode from a copy of the state, so the
     * estimate is the very model that would move the weights */
    migr_state_t *t = migr_new(MIGR_BLOCKING, &m->c, m->expert_bytes, 0,
                               place_layout_copy(m->live));
    memcpy(t->sent, m->sent, (size_t)m->c.n_devices * sizeof *t->sent);
    migr_plan(t, place_layout_copy(next), 0, info);
    migr_free(t);
}

void migr_finish(migr_state_t *m) {
    if (!m->target) return;
    place_layout_free(m->live);
    m->live = m->target;
    m->target = NULL;
}

const double *migr_batch_begin(migr_state_t *m, int64_t start_ns) {
    if (m->mode != MIGR_PIPELINED || !m->n_pend) return NULL;
    migr_priv_t *p = (migr_priv_t *)m;
    int D = m->c.n_devices, kept = 0;
    memset(m->bg, 0, 4 * (size_t)D * sizeof *m->bg);
    memset(p->busy_in, 0, (size_t)D * sizeof *p->busy_in);
    memset(p->busy_out, 0, (size_t)D * sizeof *p->busy_out);
    for (int i = 0; i < m->n_pend; i++) {
        migr_t c = m->pend[i];
        int src = p->busy_in[c.dst] ? -1 : pick_src(m, c.layer, c.expert, c.dst, p->busy_out);
        if (src < 0) {
            m->pend[kept++] = c;
            continue;
        }
        c.src = src;
        c.start_ns = start_ns;
        p->busy_in[c.dst] = p->busy_out[src] = 1;
        m->sent[src] += c.bytes;
        int nic = !same_node(m, src, c.dst);
        m->bg[(MIGR_OUT_NVL + nic) * D + src] += c.bytes;
        m->bg[(MIGR_IN_NVL + nic) * D + c.dst] += c.bytes;
        push(&m->flight, &m->n_flight, &m->cap_flight, c);
    }
    m->n_pend = kept;
    return m->n_flight ? m->bg : NULL;
}

int migr_batch_end(migr_state_t *m, int64_t start_ns, int64_t end_ns) {
    int switched = 0;
    for (int i = 0; i < m->n_flight; i++) {
        migr_t *c = &m->flight[i];
        int64_t arrive = start_ns + xfer_ns(m, c->src, c->dst, c->bytes);
        c->done_ns = arrive > end_ns ? arrive : end_ns;
        log_copy(m, c);
        if (--m->left[c->layer] == 0) {
            switch_layer(m, c->layer);
            switched++;
        }
    }
    m->n_flight = 0;
    if (m->target) maybe_done(m);
    return switched;
}

const migr_t *migr_take_log(migr_state_t *m, int *n) {
    *n = m->n_log;
    m->n_log = 0;
    return m->log;
}
