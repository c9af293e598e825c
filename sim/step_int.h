/* step_int: what the step's files share (private to sim/step*.c): the
 * simulator's state, its indexing and the functions one file calls in
 * another. step.c is the entry (setup, compute times, step_run);
 * step_traffic.c builds the traffic tables and loads; step_analytic.c
 * times a step in closed form; step_flow.c runs it as events. */
#ifndef MOESIM_STEP_INT_H
#define MOESIM_STEP_INT_H

#include "step.h"

#include "cost.h"
#include "net.h"
#include "util.h"

enum { DISP, COMB };
enum { NVL, NIC };
enum { T_PRE, T_ATTN, T_SHARED, T_EXPERT, T_POST };
enum { F_SHARED = 1, F_EXPERT = 2, F_ADVANCED = 4 };
#define QCAP 16

typedef struct {
    int kind, m, l;
    int64_t ns;
} task_t;

/* A device's compute: tasks run one at a time, first come first served. */
typedef struct {
    task_t q[QCAP];
    int head, n, busy;
} cpu_t;

/* One stream: pieces still to come and the bytes gathered so far. */
typedef struct {
    int pieces;
    double bytes;
} stream_t;

/* Per micro-batch and layer: busiest ports, for the analytic mode. */
typedef struct {
    double nvl, nic, spine; /* max over ports of max(in, out), tokens */
    int has_nvl, has_nic, has_fwd;
} ports_t;

struct step_sim {
    cluster_t c;
    moe_model_t m;
    struct step_pipe *pipe; /* pp > 1: the pipeline runs the step (step_pipe.c) */
    int D, L, E, N, dpn, M;
    int Lm, Lmax;      /* the model's MoE layers (the layout's); L = Lm + this call's MTP
                        * passes, each one more MoE layer (lsrc) */
    int normal;        /* this call's all-to-all is normal mode */
    int count_mode;
    double hd, hc;     /* bytes a token in dispatch / combine */
    /* traffic and loads, per micro-batch and layer */
    float *T, *TN, *FW; /* [M][L][D][D], [M][L][D][N], [M][L][D][dpn] */
    int tables;        /* T, TN (and FW) describe this call */
    const place_layout_t *lo;
    double *slot_load; /* [M][L][maxs] */
    int maxs;
    size_t slot_cap;
    double *exp_ns;    /* [M][L][D] */
    double *tok;       /* [M][D] tokens per micro-batch */
    double *attn_ns, *shared_ns; /* [M][D] */
    double *pre_ns, *post_ns;    /* [D] dense layers and head, whole batch */
    double *peer;      /* [M][L][2] mean bytes a device sends one peer in a phase (the
                        * link model's ramp, models/cost.h) */
    hw_link_t lk[2]; /* link model of NVLink and of the NIC */
    /* Two-batch overlap's contention (hw_t.overlap_*): the MoE layers'
     * compute and their scale-up transfers take these times their time
     * alone (1 without overlap). Every transfer and kernel of an overlapped
     * layer is charged as overlapped, in both modes: the reserved SMs are
     * gone for the whole layer, and a transfer with nothing to hide under
     * is charged too (the bound's side: docs/cost-model.md section 7). */
    double ov_comp, ov_comm;
    /* results */
    double *dev_load, *expert_load;
    int64_t *layer_end, *layer_ns;
    int64_t pre_end;
    step_result_t *res;
    /* flow mode */
    eng_t *eng;
    net_t *net;
    int l_nvo, l_nvi, l_nico, l_nici, l_up, l_down; /* first link id of each kind */
    int l_tok;         /* low-latency mode: the token side of each [M][L][2] NIC phase */
    int l_agg;         /* low-latency mode: all NIC out ports together, then all in ports */
    int spine;
    stream_t *st;      /* [M][L][2][2][D] */
    int *disp_wait, *comb_wait, *fwd_wait; /* [M][L][D] */
    uint8_t *flags;    /* [M][L][D] */
    const step_observer_t *obs; /* this call's observer, or NULL */
    int64_t *ob_t;     /* observer only: [3][M][L][D] attention end (dispatch leaves),
                        * dispatch arrived, experts end */
    cpu_t *cpu;        /* [D] */
    int *mb_done;      /* [D] micro-batches through the last layer */
    /* scratch */
    int *pl;
    double *pw;
    double *nodes;     /* [N] */
    uint32_t *dstamp, *nstamp;
    unsigned char *mb; /* [tokens] micro-batch of each token */
    int *seen;         /* [D] counterparts (start_stream, fwd_dec) */
    int *cps;          /* [D] counterparts being notified (on_flow) */
    size_t mb_cap;
    int *fast;         /* [E] first slot of each expert */
    int *memo;         /* [D][E] default replica choice of each source for each expert */
    int *pc, *pc_slots, *pc_spd, *pc_n; /* pick_cache: choices, the slots they are for */
    size_t pc_layer;
    size_t memo_cap;
    int *slot_dev;     /* [maxs] device of each slot of the current layer */
    int *icnt;         /* token-mode slot counters of one layer [M][maxs] */
    int *dev_node;     /* [D] */
    double *q, *qn;    /* [D], [N] count mode: chance a token meets a device / node */
    double *cq, *cqn;  /* count-mode flow: q and qn of every [M][L], which stand for T and
                        * TN (Tat, TNat); NULL when the tables are materialized */
    double *cq_buf, *cqn_buf;
    /* count-mode flow in low-latency mode (cfast): the traffic is t_a q_d,
     * so a pair (a, d) carries tokens iff t_a > 0 and q_d > 0, and the NIC
     * waits are the same for every device of a node: they are counted by
     * node, O(N) an event instead of O(D) (step_flow.c) */
    int cfast;
    int pairwise;      /* step_count_pairwise: never cfast */
    int *nd_wait;      /* [M][L][N] senders from other nodes the node's NIC dispatch awaits */
    int *nc_left;      /* [M][L][N] NIC combine streams from other nodes still to arrive */
    int *nc_all;       /* [M][L][N] those streams in all */
    double *nscr;      /* [4][N] scratch: tokens, chances, senders, receivers of each node */
};

/* ---- indexing */

static inline size_t ml(const step_sim_t *s, int m, int l) { return (size_t)m * s->L + l; }
static inline float *Tm(step_sim_t *s, int m, int l) {
    return s->T + ml(s, m, l) * s->D * s->D;
}
static inline float *TNm(step_sim_t *s, int m, int l) {
    return s->TN + ml(s, m, l) * s->D * s->N;
}
static inline float *FWm(step_sim_t *s, int m, int l) {
    return s->FW + ml(s, m, l) * s->D * s->dpn;
}
static inline size_t mld(const step_sim_t *s, int m, int l, int d) {
    return ml(s, m, l) * s->D + d;
}
static inline int node_of(const step_sim_t *s, int d);
/* T[m][l][a][d]: the table's entry, or in count mode the same float made
 * from the meeting chances (t_a q_d, as the table would hold it): count
 * mode never stores the [M][L][D][D] tables, so its memory is O(L D). */
static inline float Tat(const step_sim_t *s, int m, int l, int a, int d) {
    if (s->cq) return (float)(s->tok[(size_t)m * s->D + a] * s->cq[mld(s, m, l, d)]);
    return s->T[(ml(s, m, l) * s->D + a) * s->D + d];
}
/* Row a and column d of T[m][l], for loops over one of them: the same
 * floats as Tat, with the table or the chances looked up once. */
typedef struct {
    const float *v;     /* the table's row (stride 1) or column (stride D), or NULL */
    size_t stride;
    const double *mul;  /* count mode: q of the row's columns, or t of the column's rows */
    double by;          /* count mode: t_a of the row, or q_d of the column */
} tvec_t;
static inline tvec_t Trow(const step_sim_t *s, int m, int l, int a) {
    if (s->cq)
        return (tvec_t){NULL, 1, s->cq + mld(s, m, l, 0), s->tok[(size_t)m * s->D + a]};
    return (tvec_t){s->T + (ml(s, m, l) * s->D + a) * s->D, 1, NULL, 0};
}
static inline tvec_t Tcol(const step_sim_t *s, int m, int l, int d) {
    if (s->cq) return (tvec_t){NULL, 1, s->tok + (size_t)m * s->D, s->cq[mld(s, m, l, d)]};
    return (tvec_t){s->T + ml(s, m, l) * s->D * s->D + d, (size_t)s->D, NULL, 0};
}
static inline float tv_at(const tvec_t *t, int i) {
    return t->v ? t->v[(size_t)i * t->stride] : (float)(t->by * t->mul[i]);
}
/* TN[m][l][a][b] likewise. */
static inline float TNat(const step_sim_t *s, int m, int l, int a, int b) {
    if (s->cq)
        return b == node_of(s, a) ? 0
                                  : (float)(s->tok[(size_t)m * s->D + a] *
                                            s->cqn[ml(s, m, l) * s->N + b]);
    return s->TN[(ml(s, m, l) * s->D + a) * s->N + b];
}
static inline stream_t *stream(step_sim_t *s, int m, int l, int ph, int k, int d) {
    return s->st + ((ml(s, m, l) * 2 + ph) * 2 + k) * s->D + d;
}
static inline int node_of(const step_sim_t *s, int d) { return d / s->dpn; }
/* The layout, routing and loads a simulated layer uses: its own for the
 * model's MoE layers; the last MoE layer's for the MTP block, which no
 * trace records (its experts are placed as that layer's: models/cost.c). */
static inline int lsrc(const step_sim_t *s, int l) { return l < s->Lm ? l : s->Lm - 1; }
static inline int idx_of(const step_sim_t *s, int d) { return d % s->dpn; }

/* ---- shared by the analytic and flow modes */

/* The mean bytes a device sends one peer in each phase of (m, l), from the
 * token copies tok moved between devices (the ramp's argument). */
static inline void set_peer_bytes(step_sim_t *s, int m, int l, double tok) {
    double *f = s->peer + ml(s, m, l) * 2, pairs = (double)s->D * (s->D - 1);
    f[DISP] = pairs > 0 ? tok * s->hd / pairs : 0;
    f[COMB] = pairs > 0 ? tok * s->hc / pairs : 0;
}

static inline double dmax_of(const double *v, int n) {
    double x = 0;
    for (int i = 0; i < n; i++) x = ms_dmax(x, v[i]);
    return x;
}

/* Observer times of (m, l, d): 0 attention end, 1 dispatch arrived, 2 experts end. */
static inline int64_t *ob_at(step_sim_t *s, int w, size_t i) {
    return s->ob_t + (size_t)w * s->M * s->L * s->D + i;
}

static inline void ob_span(step_sim_t *s, enum step_span k, int d, int m, int l, int64_t t0,
                           int64_t t1) {
    if (t1 > t0) s->obs->span(s->obs->ctx, k, d, m, l, t0, t1);
}

/* ---- step_traffic.c */

/* Sizes and zeroes the slot loads for layout lo. */
void step_alloc_slots(step_sim_t *s, const place_layout_t *lo);
/* Token mode: T, TN, slot loads and the result loads from the routing. */
void step_build_tokens(step_sim_t *s, const step_in_t *in);
/* Count mode: slot loads split evenly over replicas, tokens split in half
 * per micro-batch, result loads. */
void step_build_counts(step_sim_t *s, const step_in_t *in);
/* Count mode, per micro-batch and layer: s->q and s->qn, the chance that a
 * token meets each device and node. */
void step_meet_probs(step_sim_t *s, int m, int l);
/* Count mode, flow: the meeting chances of every (micro-batch, layer), which
 * give the expected traffic (Tat, TNat). */
void step_counts_to_traffic(step_sim_t *s);
/* Normal mode: the NVLink forwards of each (micro-batch, layer). */
void step_build_forwards(step_sim_t *s);

/* ---- step_analytic.c */

/* Times the step from t0 in closed form (layer ends, byte counters). */
void step_run_analytic(step_sim_t *s, int64_t t0);

/* ---- step_flow.c */

/* Runs the step from t0 as events on the step's engine. */
void step_run_flow(step_sim_t *s, int64_t t0);

#endif
