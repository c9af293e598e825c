/* step_pipe: one step of a pipeline-parallel deployment. Each of the pp
 * stages is a copy of the cluster step.c simulates (its expert-parallel
 * group) running its own slice of the layers; micro-batches flow through
 * the stages: a prefill batch on GPipe's schedule from an empty pipeline,
 * decode with the pipeline kept full from step to step (models/cost.h,
 * cost_pipeline_ns and cost_pipeline_steady_ns).
 *
 * Every (stage, micro-batch) is one step_run of the stage's sub-model on
 * the micro-batch's tokens, over views of the caller's layout, routing and
 * loads restricted to the stage's MoE layers; the stage times then compose
 * by the pipeline's recurrence, with the hand-over of each micro-batch's
 * hidden states between stages (over the NIC: a stage holds whole scale-up
 * domains) timed on the link model. A stage's devices only ever work on
 * their own layers, so stages interact through the hand-overs alone and
 * the composition is exact for the schedule it states. */
#include "step_pipe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cost.h"
#include "util.h"

struct step_pipe {
    cluster_t c;       /* one stage, pp = 1 */
    moe_model_t m;     /* the whole model */
    int pp, mb, D, E, Lm;
    step_sim_t **st;   /* [pp] one simulator per stage, on its sub-model */
    int *lo, *hi;      /* [pp] each stage's MoE layers [lo, hi) */
    int passes;        /* most MTP passes a step may run (decode or prefill) */
    /* results, over the whole model */
    int64_t *layer_ns;
    double *dev_load, *expert_load, *expert_ns;
    /* scratch: one micro-batch's inputs */
    int *tok;          /* [D] */
    int *cnt, *seen;   /* [D] token mode: a device's tokens, and those met so far */
    double *load;      /* [Lm][E] */
    route_step_t rt;   /* a micro-batch's tokens (token mode) */
    size_t rt_cap;
    double *t;         /* [pp][mb] stage times, ns */
};

/* A pick through the caller's hook, with the view's layer turned back
 * into the model's (the strategy indexes its state by the model's layer). */
typedef struct {
    step_pick_fn pick;
    void *ctx;
    const place_layout_t *lo;
    int l0;
} pick_view_t;

static int pick_view(void *ctx, const place_layout_t *lo, int l, int e, int src) {
    (void)lo;
    const pick_view_t *v = ctx;
    return v->pick(v->ctx, v->lo, v->l0 + l, e, src);
}

step_pipe_t *step_pipe_new(const cluster_t *c, const moe_model_t *m) {
    step_pipe_t *p = ms_calloc(1, sizeof *p);
    p->c = *c;
    p->c.pp = 1;
    p->c.micro_batches = 1;
    p->m = *m;
    p->pp = cluster_pp(c);
    p->mb = c->micro_batches > 0 ? c->micro_batches : p->pp;
    p->D = c->n_devices;
    p->E = m->n_experts;
    p->Lm = moe_n_moe_layers(m);
    p->st = ms_calloc((size_t)p->pp, sizeof *p->st);
    p->lo = ms_malloc((size_t)p->pp * sizeof *p->lo);
    p->hi = ms_malloc((size_t)p->pp * sizeof *p->hi);
    p->passes = ms_imax(moe_mtp_passes(m, 0), moe_mtp_passes(m, 1));
    for (int s = 0; s < p->pp; s++) {
        moe_model_t sm = cost_stage_model(m, p->pp, s);
        cost_stage_layers(m, p->pp, s, &p->lo[s], &p->hi[s]);
        p->st[s] = step_new(&p->c, &sm);
    }
    size_t L = (size_t)p->Lm + p->passes, D = (size_t)p->D;
    p->layer_ns = ms_malloc(L * sizeof *p->layer_ns);
    p->dev_load = ms_malloc(L * D * sizeof *p->dev_load);
    p->expert_load = ms_malloc(L * (size_t)p->E * sizeof *p->expert_load);
    p->expert_ns = ms_malloc(L * D * sizeof *p->expert_ns);
    p->tok = ms_malloc(D * sizeof *p->tok);
    p->cnt = ms_malloc(D * sizeof *p->cnt);
    p->seen = ms_malloc(D * sizeof *p->seen);
    p->load = ms_malloc((size_t)p->Lm * p->E * sizeof *p->load);
    p->t = ms_malloc((size_t)p->pp * p->mb * sizeof *p->t);
    return p;
}

void step_pipe_free(step_pipe_t *p) {
    if (!p) return;
    for (int s = 0; s < p->pp; s++) step_free(p->st[s]);
    free(p->st);
    free(p->layer_ns);
    free(p->dev_load);
    free(p->expert_load);
    free(p->expert_ns);
    free(p->tok);
    free(p->cnt);
    free(p->seen);
    free(p->lo);
    free(p->hi);
    free(p->load);
    free(p->rt.src);
    free(p->rt.expert);
    free(p->t);
    free(p);
}

/* Token mode: micro-batch j's tokens, each device's tokens cut into mb
 * contiguous runs in their order (the first runs one longer). */
static void split_route(step_pipe_t *p, const route_step_t *rt, int j) {
    int D = p->D, k = rt->top_k, n = rt->n_tokens, L = rt->n_layers;
    int *cnt = p->cnt, *seen = p->seen;
    memset(cnt, 0, (size_t)D * sizeof *cnt);
    memset(seen, 0, (size_t)D * sizeof *seen);
    memset(p->tok, 0, (size_t)D * sizeof *p->tok);
    for (int t = 0; t < n; t++) cnt[rt->src[t]]++;
    size_t need = (size_t)n;
    if (need > p->rt_cap) {
        p->rt_cap = need;
        p->rt.src = ms_realloc(p->rt.src, need * sizeof *p->rt.src);
        p->rt.expert = ms_realloc(p->rt.expert, need * (size_t)L * k * sizeof *p->rt.expert);
    }
    int m = 0;
    for (int t = 0; t < n; t++) {
        int d = rt->src[t], i = seen[d]++, c = cnt[d];
        /* run of token i of c: the first c % mb runs hold c / mb + 1 */
        int big = c % p->mb, per = c / p->mb, cut = big * (per + 1);
        int run = i < cut ? i / (per + 1) : big + (per ? (i - cut) / per : 0);
        if (run != j) continue;
        p->rt.src[m++] = t; /* the token's index for now */
        p->tok[d]++;
    }
    for (int l = 0; l < L; l++)
        for (int i = 0; i < m; i++)
            memcpy(p->rt.expert + ((size_t)l * m + i) * k,
                   rt->expert + ((size_t)l * n + p->rt.src[i]) * k, (size_t)k * sizeof *rt->expert);
    for (int i = 0; i < m; i++) p->rt.src[i] = rt->src[p->rt.src[i]];
    p->rt.n_layers = L;
    p->rt.n_tokens = m;
    p->rt.top_k = k;
    p->rt.n_devices = D;
}

/* Count mode: micro-batch j's tokens on each device and its share of the
 * loads (the share of the batch's tokens it holds). */
static void split_counts(step_pipe_t *p, const step_in_t *in, int j) {
    double all = 0, mine = 0;
    for (int d = 0; d < p->D; d++) {
        int c = in->tokens[d] > 0 ? in->tokens[d] : 0;
        p->tok[d] = c / p->mb + (j < c % p->mb);
        all += c;
        mine += p->tok[d];
    }
    double f = all > 0 ? mine / all : 0;
    for (size_t i = 0; i < (size_t)p->Lm * p->E; i++) p->load[i] = in->expert_load[i] * f;
}

int step_pipe_run(step_pipe_t *p, const step_in_t *in, step_result_t *out) {
    const place_layout_t *lo = in->layout;
    if (!lo) return ms_err("step: no layout given (set step_in_t.layout)");
    if (lo->n_layers != p->Lm || lo->n_devices != p->D)
        return ms_err("step: layout (%d layers, %d devices) does not match one pipeline stage's "
                      "cluster (%d MoE layers, %d devices)", lo->n_layers, lo->n_devices, p->Lm,
                      p->D);
    if (!in->route && (!in->expert_load || !in->tokens))
        return ms_err("step: count mode needs expert_load [layers][experts] and tokens "
                      "[devices] (or give a route)");
    int D = p->D, E = p->E, last = p->pp - 1;
    int passes = moe_mtp_passes(&p->m, in->prefill), L = p->Lm + passes;
    memset(out, 0, sizeof *out);
    memset(p->layer_ns, 0, (size_t)L * sizeof *p->layer_ns);
    memset(p->dev_load, 0, (size_t)L * D * sizeof *p->dev_load);
    memset(p->expert_load, 0, (size_t)L * E * sizeof *p->expert_load);
    memset(p->expert_ns, 0, (size_t)L * D * sizeof *p->expert_ns);
    double send_tok = 0; /* the largest micro-batch a device hands over */
    for (int j = 0; j < p->mb; j++) {
        if (in->route) split_route(p, in->route, j);
        else split_counts(p, in, j);
        for (int d = 0; d < D; d++) send_tok = ms_dmax(send_tok, p->tok[d]);
        for (int s = 0; s < p->pp; s++) {
            int l0 = p->lo[s], nl = p->hi[s] - l0;
            place_layout_t view = *lo;
            view.layer = lo->layer + l0;
            view.n_layers = nl;
            route_step_t rv = p->rt;
            if (in->route) {
                rv.expert = p->rt.expert + (size_t)l0 * p->rt.n_tokens * p->rt.top_k;
                rv.n_layers = nl;
            }
            pick_view_t pv = {in->pick, in->pick_ctx, lo, l0};
            step_in_t si = *in;
            si.start_ns = 0;
            si.layout = &view;
            si.route = in->route ? &rv : NULL;
            si.expert_load = in->route ? NULL : p->load + (size_t)l0 * E;
            si.tokens = in->route ? NULL : p->tok;
            si.pick = in->pick ? pick_view : NULL;
            si.pick_ctx = in->pick ? &pv : NULL;
            si.skip_head = s != last;
            si.bg_bytes = NULL;
            si.obs = NULL;
            step_result_t r;
            if (step_run(p->st[s], &si, &r)) return MS_ERR;
            p->t[(size_t)s * p->mb + j] = (double)(r.end_ns - r.start_ns);
            /* the stage's layers, then (last stage) its MTP passes */
            for (int i = 0; i < r.n_layers; i++) {
                int l = i < nl ? l0 + i : p->Lm + (i - nl);
                p->layer_ns[l] += r.layer_ns[i];
                for (int d = 0; d < D; d++) {
                    p->dev_load[(size_t)l * D + d] += r.dev_load[(size_t)i * D + d];
                    p->expert_ns[(size_t)l * D + d] += r.expert_ns[(size_t)i * D + d];
                }
                for (int e = 0; e < E; e++)
                    p->expert_load[(size_t)l * E + e] += r.expert_load[(size_t)i * E + e];
            }
            if (s == 0) out->pre_ns += r.pre_ns;
            if (s == last) out->post_ns += r.post_ns;
            out->dispatch_bytes += r.dispatch_bytes;
            out->combine_bytes += r.combine_bytes;
            out->events += r.events;
            out->net_solves += r.net_solves;
        }
    }
    /* the hand-over: each device sends its micro-batch's hidden states
     * (BF16) to its counterpart in the next stage, over its NIC */
    hw_link_t nic = cost_nic_link(&p->c.hw);
    double send = cost_link_ns(&nic, send_tok * p->m.hidden * 2.0, send_tok * p->m.hidden * 2.0, 0);
    out->start_ns = in->start_ns;
    /* prefill: one pass from an empty pipeline; decode: the pipeline stays
     * full from step to step, each micro-batch going round again */
    double t = in->prefill ? cost_pipeline_ns(p->t, p->pp, p->mb, send)
                           : cost_pipeline_steady_ns(p->t, p->pp, p->mb, send);
    out->end_ns = in->start_ns + llround(t);
    out->n_layers = L;
    out->layer_ns = p->layer_ns;
    out->dev_load = p->dev_load;
    out->expert_load = p->expert_load;
    out->expert_ns = p->expert_ns;
    return MS_OK;
}
