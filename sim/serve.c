/* serve: the serving simulation's entry: it reads the run's traces, sets
 * up the instances (each with its strategy, replay and step simulator),
 * runs the event loop (serve_loop.c) and records the results
 * (serve_out.c), then frees it all. */
#include "serve_int.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eng.h"
#include "util.h"

#define SEC "serving"
/* Salt of the draft-acceptance generator's seed (independent of the
 * request stream's). */
#define MTP_SEED_SALT 0x6d7470u

/* tr: the instance's trace; with phases, ph[n_ph] are the phases' traces
 * (ph[0] == tr) and mix their duration-weighted mixture. */
static int inst_init(srv_t *s, inst_t *in, const char *name, int prefill, const cluster_t *c,
                     int redundant, const trace_t *tr, uint64_t seed, trace_t *const *ph,
                     int n_ph, const trace_t *mix) {
    const run_spec_t *sp = s->sp;
    in->name = name;
    in->prefill = prefill;
    in->c = *c;
    in->D = c->n_devices;
    in->L = moe_n_moe_layers(&sp->model);
    in->E = sp->model.n_experts;
    in->redundant = redundant;
    in->tr = tr;
    in->ops = s->ops;
    in->paused_until = INT64_MIN;
    int L = in->L, E = in->E, D = in->D;
    if (tr->n_layers != L || tr->n_experts != E)
        return ms_err("%s: trace has %d MoE layers x %d experts but model %s has %d x %d (use a "
                      "trace recorded from %s)", tr->path ? tr->path : "trace", tr->n_layers,
                      tr->n_experts, sp->model.name, L, E, sp->model.name);
    gate_spec_t gs;
    if (replay_new(tr, sp->model.top_k, D, 1, seed, &in->rp) || run_gate_spec(sp, c, &gs))
        return MS_ERR;
    replay_set_gate(in->rp, &gs);
    in->n_ph = n_ph;
    for (int i = 1; i < n_ph; i++) {
        if (replay_new(ph[i], sp->model.top_k, D, 1, seed + (uint64_t)i, &in->ph_rp[i]))
            return MS_ERR;
        replay_set_gate(in->ph_rp[i], &gs);
    }
    const trace_t *scored = mix ? mix : tr;
    in->tr_tot = ms_malloc((size_t)L * E * sizeof *in->tr_tot);
    for (int l = 0; l < L; l++) trace_layer_total(scored, l, in->tr_tot + (size_t)l * E);
    char sec[64];
    place_env_t env = run_strategy_env(sp, c, redundant, s->ops, sec, sizeof sec);
    env.gate = &gs;
    place_layout_t *lo = NULL;
    /* What the strategy plans from; past warms up on full batches of the
     * instance (the most tokens a batch can hold) before serving starts. */
    double *prior = NULL;
    double full = (double)D * (prefill ? s->ss->prefill_tokens_per_device
                                       : s->ss->max_batch_per_device * (1 + sp->model.mtp_depth));
    if (prior_build(&sp->prior, scored, in->rp, full, s->ss->trace_step_every, &prior))
        return MS_ERR;
    in->skip = prior_skip(&sp->prior);
    int irc = s->ops->init(&env, prior, &in->ps, &lo);
    free(prior);
    if (irc) return MS_ERR;
    if (s->ops->route && route_new(in->rp, &gs, s->ops, in->ps, seed,
                                   s->ss->route_samples, s->ss->route_every, &in->router))
        return MS_ERR;
    for (int i = 1; i < n_ph && s->ops->route; i++)
        if (route_new(in->ph_rp[i], &gs, s->ops, in->ps, seed + (uint64_t)i,
                      s->ss->route_samples, s->ss->route_every, &in->ph_router[i]))
            return MS_ERR;
    if (lo->n_layers != L || lo->n_devices != D) {
        place_layout_free(lo);
        return ms_err("strategy %s made a layout of %d layers x %d devices for a %s instance of "
                      "%d x %d", s->ops->name, lo->n_layers, lo->n_devices, name, L, D);
    }
    /* Beside the result, as for fixed batches: the first layout's PAR on the
     * scored counts and the hindsight bound, the same strategy planned on them. */
    in->layout_par = place_par_mean(lo, in->tr_tot);
    if (prior_hindsight(s->ops, &env, in->tr_tot, &in->hindsight)) {
        place_layout_free(lo);
        return MS_ERR;
    }
    in->mg = migr_new(s->ss->rebalance, c, moe_expert_bytes(&sp->model),
                      s->ss->rebalance_fixed_ns, lo);
    replan_spec_t rs;
    if (replan_spec_load(sp->cfg, s->ops, &rs)) return MS_ERR;
    in->rpl = replan_new(&rs, in->mg, c, &sp->model, sp->kv_len, prefill);
    in->sim = step_new(c, &sp->model);
    /* the kernels step.c times: normal for prefill and when asked for */
    in->loc = loc_new(c, &sp->model,
                      c->a2a == STEP_A2A_NORMAL || (c->a2a == STEP_A2A_AUTO && prefill));
    in->tokens = ms_calloc((size_t)D, sizeof *in->tokens);
    in->counts = ms_calloc((size_t)L * E, sizeof *in->counts);
    metrics_loads_init(&in->loads, L, D, E);
    return MS_OK;
}

static void inst_free(srv_t *s, inst_t *in) {
    if (in->ps && s->ops->destroy) s->ops->destroy(in->ps);
    replan_free(in->rpl);
    migr_free(in->mg);
    step_free(in->sim);
    loc_free(in->loc);
    replay_free(in->rp);
    route_free(in->router);
    for (int i = 1; i < in->n_ph; i++) {
        replay_free(in->ph_rp[i]);
        route_free(in->ph_router[i]);
    }
    free(in->tokens);
    free(in->counts);
    free(in->tr_tot);
    metrics_loads_free(&in->loads);
}

int serve_one(const run_spec_t *sp, const place_ops_t *ops, const trace_t *trace, store_t *st,
              metrics_run_t *out) {
    return serve_one_timeline(sp, ops, trace, st, out, NULL);
}

/* The traces a serving run replays: the caller's, or those its config
 * names (decode, prefill, or [workload] phases and their mixture). */
typedef struct serve_traces {
    trace_t *own_dc, *own_pf, *ph[PHASE_MAX], *mix; /* read here, freed by traces_free */
    int n_ph;
    const trace_t *tdc, *tpf; /* what each instance replays */
} serve_traces_t;

static int traces_load(const run_spec_t *sp, const trace_t *trace, serve_traces_t *tr) {
    const serve_spec_t *ss = &sp->serve;
    memset(tr, 0, sizeof *tr);
    tr->n_ph = trace ? 0 : sp->phases.n;
    int n_ph = tr->n_ph;
    trace_t **ph = tr->ph;
    tr->tdc = tr->tpf = trace;
    if (n_ph) { /* phases: both instances replay them (docs/config.md) */
        if (ss->prefill_trace_path[0])
            return ms_err("%s: [serving] prefill_trace and [workload] phases together (phases "
                          "drive both instances; drop prefill_trace)",
                          cfg_where(sp->cfg, SEC, "prefill_trace"));
        for (int i = 0; i < n_ph; i++)
            if (trace_read(sp->phases.p[i].path, &ph[i])) return MS_ERR;
        for (int i = 1; i < n_ph; i++)
            if (ph[i]->n_layers != ph[0]->n_layers || ph[i]->n_experts != ph[0]->n_experts)
                return ms_err("%s: phase trace has %d layers x %d experts, the first phase %d x "
                              "%d (string traces of one model)", ph[i]->path, ph[i]->n_layers,
                              ph[i]->n_experts, ph[0]->n_layers, ph[0]->n_experts);
        tr->mix = phase_mix(&sp->phases, ph);
        tr->tdc = tr->tpf = ph[0];
    }
    if (!tr->tdc) {
        if (trace_read(sp->trace_path, &tr->own_dc)) return MS_ERR;
        tr->tdc = tr->own_dc;
    }
    if (!tr->tpf) {
        if (ss->prefill_trace_path[0] && ss->instances != SERVE_DECODE) {
            if (trace_read(ss->prefill_trace_path, &tr->own_pf)) return MS_ERR;
            tr->tpf = tr->own_pf;
        } else {
            tr->tpf = tr->tdc;
        }
    }
    return MS_OK;
}

static void traces_free(serve_traces_t *tr) {
    trace_free(tr->own_dc);
    trace_free(tr->own_pf);
    for (int i = 0; i < tr->n_ph; i++) trace_free(tr->ph[i]);
    trace_free(tr->mix);
}

/* The measuring window: from warmup_s to the end of arrivals. */
static int window_open(srv_t *s, const req_list_t *rl) {
    const serve_spec_t *ss = s->ss;
    s->w0 = llround(ss->warmup_s * 1e9);
    if (ss->req.arrival == REQ_CLOSED)
        s->w1 = ss->req.duration_s > 0 ? llround(ss->req.duration_s * 1e9) : ENG_NEVER;
    else if (ss->req.duration_s > 0 && ss->req.arrival != REQ_TRACE &&
             !(ss->req.requests && rl->n >= ss->req.requests))
        s->w1 = llround(ss->req.duration_s * 1e9); /* arrivals were cut by time */
    else
        s->w1 = rl->r[rl->n - 1].arrival_ns;
    if (s->w1 <= s->w0)
        return ms_err("%s: [serving] warmup_s = %g leaves no time before arrivals end at %.3f s "
                      "(lower warmup_s)", cfg_where(s->sp->cfg, SEC, "warmup_s"), ss->warmup_s,
                      (double)s->w1 / 1e9);
    return MS_OK;
}

/* The window at the run's end: cut to it, and the whole run when a closed
 * loop ended before warmup_s. */
static void window_close(srv_t *s, int64_t end) {
    const serve_spec_t *ss = s->ss;
    if (s->w1 > end) s->w1 = end;
    serve_in_system(s, end, 0);
    if (s->w1 <= s->w0) { /* a closed loop ended before warmup_s: measure it all */
        ms_warn("%s: [serving] warmup_s = %g is past the run's end at %.3f s; the figures cover "
                "the whole run (lower warmup_s)", cfg_where(s->sp->cfg, SEC, "warmup_s"),
                ss->warmup_s, (double)end / 1e9);
        s->w0 = 0;
        s->w1 = end;
        s->area = 0;
        s->win_in = s->has_pf ? s->in_tokens : 0;
        s->win_out = s->dc_tokens;
        for (int64_t i = 0; i < s->released; i++)
            s->area += (double)(s->r[i].done_ns - s->r[i].arrival_ns);
    }
}

/* The requests and the queues of both instances. */
static void requests_init(srv_t *s, const req_list_t *rl) {
    const serve_spec_t *ss = s->ss;
    s->r = ms_calloc((size_t)s->n, sizeof *s->r);
    for (int64_t i = 0; i < s->n; i++) {
        sreq_t *q = &s->r[i];
        q->arrival_ns = rl->r[i].arrival_ns;
        q->first_ns = q->done_ns = -1;
        q->prompt = rl->r[i].prompt_tokens;
        q->output = rl->r[i].output_tokens;
        q->hit = (int)floor(q->prompt * ss->prefix_hit_rate);
        if (q->hit >= q->prompt) q->hit = q->prompt - 1;
        q->to_compute = q->prompt - q->hit;
        q->next = -1;
    }
    s->pq = ms_malloc((size_t)s->n * sizeof *s->pq);
    s->pact = ms_malloc((size_t)s->n * sizeof *s->pact);
    s->dact = ms_malloc((size_t)s->n * sizeof *s->dact);
    int Dp = s->has_pf ? s->pf.D : 1, Dd = s->has_dc ? s->dc.D : 1;
    s->left = ms_calloc((size_t)Dp, sizeof *s->left);
    s->kv_send_free = ms_calloc((size_t)Dp, sizeof *s->kv_send_free);
    s->kv_recv_free = ms_calloc((size_t)Dd, sizeof *s->kv_recv_free);
    s->dq_head = ms_malloc((size_t)Dd * sizeof *s->dq_head);
    s->dq_tail = ms_malloc((size_t)Dd * sizeof *s->dq_tail);
    for (int d = 0; d < Dd; d++) s->dq_head[d] = s->dq_tail[d] = -1;
    s->dcount = ms_calloc((size_t)Dd, sizeof *s->dcount);
    s->assigned = ms_calloc((size_t)Dd, sizeof *s->assigned);
    s->kv_used = ms_calloc((size_t)Dd, sizeof *s->kv_used);
}

static void srv_free(srv_t *s) {
    eng_free(s->eng);
    if (s->mtp_rng) gsl_rng_free(s->mtp_rng);
    inst_free(s, &s->dc);
    inst_free(s, &s->pf);
    free(s->r);
    free(s->pq);
    free(s->pact);
    free(s->dact);
    free(s->left);
    free(s->kv_send_free);
    free(s->kv_recv_free);
    free(s->dq_head);
    free(s->dq_tail);
    free(s->dcount);
    free(s->assigned);
    free(s->kv_used);
}

/* Sets the run going: the first arrivals (closed loop: one per user). */
static void loop_start(srv_t *s) {
    const serve_spec_t *ss = s->ss;
    s->eng = eng_new();
    s->mtp_rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(s->mtp_rng, (unsigned long)(s->sp->seed ^ MTP_SEED_SALT));
    if (ss->req.arrival == REQ_CLOSED) {
        for (; s->released < s->n && s->released < ss->req.concurrency; s->released++)
            eng_schedule(s->eng, 0, serve_ev_arrive, s, s->released);
    } else {
        eng_schedule(s->eng, s->r[0].arrival_ns, serve_ev_arrive, s, 0);
    }
    progress_begin_run(&s->prog, s->ops->name);
}

int serve_one_timeline(const run_spec_t *sp, const place_ops_t *ops, const trace_t *trace,
                       store_t *st, metrics_run_t *out, timeline_t *tl) {
    const serve_spec_t *ss = &sp->serve;
    record_t rec = {0};
    srv_t s = {.sp = sp, .ss = ss, .ops = ops, .rec = &rec, .tl = tl};
    memset(out, 0, sizeof *out);
    serve_traces_t tr = {0};
    req_list_t rl = {0};
    char *text = NULL;
    int rc = MS_ERR;

    if (req_build(&ss->req, sp->seed, &rl) || traces_load(sp, trace, &tr)) goto out;
    s.has_pf = ss->instances != SERVE_DECODE;
    s.has_dc = ss->instances != SERVE_PREFILL;
    /* Each instance replays routing from its own generator. */
    if (s.has_dc && inst_init(&s, &s.dc, "decode", 0, &sp->cluster, sp->redundant, tr.tdc,
                              sp->seed, tr.ph, tr.n_ph, tr.mix))
        goto out;
    if (s.has_pf && inst_init(&s, &s.pf, "prefill", 1, &ss->prefill, ss->prefill_redundant,
                              tr.tpf, sp->seed ^ 0x9e3779b97f4a7c15ULL, tr.ph, tr.n_ph, tr.mix))
        goto out;
    inst_t *pr = s.has_dc ? &s.dc : &s.pf;
    pr->primary = 1;
    s.pf.dev_base = s.has_dc ? s.dc.D : 0;
    s.dc.tv = (timeline_view_t){tl, s.dc.dev_base};
    s.pf.tv = (timeline_view_t){tl, s.pf.dev_base};
    s.dc.obs = timeline_observer(&s.dc.tv);
    s.pf.obs = timeline_observer(&s.pf.tv);
    s.n = rl.n;
    if (window_open(&s, &rl)) goto out;

    char hash[17], plabel[600];
    text = run_config_text(sp->cfg, ops->name, hash);
    store_run_t meta = {.name = sp->name, .strategy = ops->name,
                        .strategy_version = ops->algo_version, .trace = sp->trace_name,
                        .model = sp->model.name, .hardware = pr->c.hw.name,
                        .nodes = pr->c.n_nodes, .devices = pr->D, .seed = sp->seed,
                        .prior = prior_label(&sp->prior, plabel, sizeof plabel)};
    if (record_begin(&rec, st, &meta, text)) goto out;

    requests_init(&s, &rl);
    loop_start(&s);
    eng_run_until(s.eng, ENG_NEVER);
    serve_progress(&s, eng_now(s.eng), 1);
    if (s.err) goto out;
    if (s.n_done < s.released) {
        ms_err("serving stopped with %lld of %lld requests unfinished (%lld queued for prefill); "
               "this is a bug in the serving loop", (long long)(s.released - s.n_done),
               (long long)s.released,
               (long long)(s.pq_tail - s.pq_head));
        goto out;
    }
    int64_t end = eng_now(s.eng);
    window_close(&s, end);
    if (serve_record_results(&s, &out->m, end) || record_commit(&rec)) goto out;
    out->run_id = rec.run_id;
    rc = MS_OK;
out:
    record_abort(&rec);
    srv_free(&s);
    free(text);
    req_list_free(&rl);
    traces_free(&tr);
    return rc;
}
