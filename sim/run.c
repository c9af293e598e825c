/* run: an experiment from config to stored results. */
#include "run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "calib.h"
#include "cost.h"
#include "eng.h"
#include "locality.h"
#include "migr.h"
#include "place.h"
#include "progress.h"
#include "record.h"
#include "replan.h"
#include "replay.h"
#include "route.h"
#include "trace.h"
#include "util.h"

/* pick_replica through the strategy, when it has its own. */
typedef struct {
    const place_ops_t *ops;
    place_state_t *st;
} pick_ctx_t;

static int pick_via(void *ctx, const place_layout_t *lo, int l, int e, int src) {
    pick_ctx_t *p = ctx;
    return p->ops->pick_replica(p->st, lo, l, e, src);
}

int run_one(const run_spec_t *sp, const char *strategy, store_t *st, run_summary_t *sum) {
    return run_one_timeline(sp, strategy, st, sum, NULL);
}

/* One trace and replay per phase (one phase without phases), every phase
 * replaying the run's routing (group and node limits, into *gs). */
static int phases_open(const run_spec_t *sp, int NP, int verify, trace_t **trs, replay_t **rps,
                       gate_spec_t *gs) {
    for (int i = 0; i < NP; i++) {
        const char *path = sp->phases.n ? sp->phases.p[i].path : sp->trace_path;
        if (trace_read(path, &trs[i]) || run_spec_check_trace(sp, trs[i]) ||
            replay_new(trs[i], sp->model.top_k, sp->cluster.n_devices,
                       sp->tokens_per_device * verify, sp->seed + (uint64_t)i, &rps[i]))
            return MS_ERR;
    }
    if (run_gate_spec(sp, &sp->cluster, gs)) return MS_ERR;
    for (int i = 0; i < NP; i++) replay_set_gate(rps[i], gs);
    return MS_OK;
}

/* What a fixed-batch run counted beside its loads. */
typedef struct run_totals {
    int64_t now_ns;    /* the last step's end */
    double tokens;     /* output (decode) or input (prefill) tokens made */
    double layout_par; /* the first layout's PAR on the scored counts */
    double hindsight;  /* the same strategy planned on the scored counts (NaN: none) */
    int skip;          /* warm-up steps replayed before the first measured */
} run_totals_t;

/* The run's metrics (metrics.c defines each). */
static void run_metrics(const run_spec_t *sp, const run_totals_t *t, const migr_state_t *mg,
                        const replan_t *rpl, const metrics_loads_t *acc,
                        const metrics_layer_bound_t *lb, metrics_t *m) {
    double sim_s = (double)t->now_ns / ENG_NS_PER_S;
    metrics_set(m, METRIC_STEPS, sp->steps);
    metrics_set(m, METRIC_REDUNDANT, sp->redundant);
    metrics_set(m, METRIC_TOKENS_PER_DEVICE, sp->tokens_per_device);
    metrics_set(m, METRIC_SIM_TIME, sim_s);
    metrics_set(m, METRIC_STEP_TIME_MEAN, sim_s * 1e3 / sp->steps);
    metrics_set(m, sp->prefill ? METRIC_IN_TPS_NODE : METRIC_OUT_TPS_NODE,
                metrics_per_node(t->tokens, sim_s, cluster_total_nodes(&sp->cluster)));
    metrics_set(m, METRIC_PRIOR_WARMUP_STEPS, t->skip);
    metrics_set(m, METRIC_LAYOUT_PAR_MEAN, t->layout_par);
    metrics_set(m, METRIC_MIGRATED_GB, mg->total_bytes / 1e9);
    metrics_set(m, METRIC_MIGRATIONS, (double)mg->total_copies);
    metrics_set(m, METRIC_REPLANS, (double)rpl->done);
    metrics_set(m, METRIC_REBALANCE_PAUSE, (double)mg->pause_ns / 1e9);
    replan_metrics((const replan_t *const[]){rpl}, 1, m);
    if (!isnan(t->hindsight)) {
        metrics_set(m, METRIC_PAR_MEAN_HINDSIGHT, t->hindsight);
        metrics_set(m, METRIC_REGRET, t->layout_par - t->hindsight);
    }
    metrics_from_loads(acc, lb, 0, m);
}

/* One fixed-batch run from inputs to commit. About 180 lines and kept
 * whole on purpose: it reads top-down as a run's life (inputs, first
 * layout, steps with their re-plans and copies, results) and its one
 * cleanup path owns every resource; the pieces that stand alone are
 * phases_open, run_metrics and replan_record_copies. */
int run_one_timeline(const run_spec_t *sp, const char *strategy, store_t *st, run_summary_t *sum,
                     timeline_t *tl) {
    const place_ops_t *ops = place_find(strategy);
    if (!ops) return ms_err("unknown strategy '%s' (known: %s)", strategy, place_names());
    memset(sum, 0, sizeof *sum);
    if (sp->serving) /* the serving simulation (serve.c) instead of fixed-batch steps */
        return serve_one_timeline(sp, ops, NULL, st, sum, tl);
    const cluster_t *c = &sp->cluster;
    int L = moe_n_moe_layers(&sp->model), D = c->n_devices, E = sp->model.n_experts;

    /* One trace, replay and router per phase (one phase without phases). */
    int NP = sp->phases.n ? sp->phases.n : 1;
    trace_t *trs[PHASE_MAX] = {0}, *mix = NULL;
    replay_t *rps[PHASE_MAX] = {0};
    route_t *routers[PHASE_MAX] = {0};
    int pstep[PHASE_MAX] = {0}; /* steps each phase has replayed */
    place_state_t *ps = NULL;
    place_layout_t *lo = NULL;
    migr_state_t *mg = NULL;
    replan_t *rpl = NULL;
    int *dtok = NULL;
    step_sim_t *sim = NULL;
    double *prior = NULL, *tr_tot = NULL;
    metrics_layer_bound_t *lb = NULL;
    metrics_loads_t acc = {0};
    loc_t *loc = NULL;
    char *text = NULL;
    record_t rec = {0};
    progress_t prog = {0}; /* the line: drawn only once begun on a terminal */
    int rc = MS_ERR;

    /* decode: tokens_per_device sequences, each verifying 1 + mtp_depth tokens a
     * step; prefill: tokens_per_device prompt tokens computed a step */
    int verify = sp->prefill ? 1 : 1 + sp->model.mtp_depth;
    gate_spec_t gs;
    if (phases_open(sp, NP, verify, trs, rps, &gs)) goto out;
    /* What the run scores on: the trace, or the phases' duration-weighted
     * mixture. */
    if (sp->phases.n) mix = phase_mix(&sp->phases, trs);
    const trace_t *tr = mix ? mix : trs[0];
    char sec[64];
    place_env_t env = run_strategy_env(sp, &sp->cluster, sp->redundant, ops, sec, sizeof sec);
    env.gate = &gs;
    /* What the strategy plans from ([placement] prior); with past, the
     * warm-up batches come first and the measured steps follow them. */
    if (prior_build(&sp->prior, tr, rps[0], (double)sp->tokens_per_device * verify * D, 1,
                    &prior))
        goto out;
    int skip = prior_skip(&sp->prior);
    pstep[0] = skip;
    if (ops->init(&env, prior, &ps, &lo)) goto out;
    /* The first layout on the scored trace's counts, unsampled: what
     * `moesim place --eval` prints for the same prior. */
    tr_tot = ms_malloc((size_t)L * E * sizeof *tr_tot);
    for (int l = 0; l < L; l++) trace_layer_total(tr, l, tr_tot + (size_t)l * E);
    double layout_par = place_par_mean(lo, tr_tot), hindsight;
    /* The hindsight bound beside it: the same strategy planned on them. */
    if (prior_hindsight(ops, &env, tr_tot, &hindsight)) goto out;
    /* A strategy that steers routing chooses every token's experts from the
     * fitted router scores each phase's replay draws for that token. */
    for (int i = 0; i < NP && ops->route; i++)
        if (route_new(rps[i], &gs, ops, ps, sp->seed + (uint64_t)i, 0, 1, &routers[i]))
            goto out;
    /* decode holds each sequence's kv_len positions; prefill the batch's
     * prompts, cached prefixes included */
    cost_shard_t sh = {cluster_tp(c), cluster_pp(c), 0};
    int ok = sp->prefill ? cost_check_memory_sh(&c->hw, &sp->model, lo, 1,
                                                sp->tokens_per_device / (1 - sp->prefix_hit_rate),
                                                &sh, cfg_origin(sp->cfg))
                         : cost_check_memory_sh(&c->hw, &sp->model, lo, sp->tokens_per_device,
                                                sp->kv_len, &sh, cfg_origin(sp->cfg));
    if (ok != MS_OK) goto out;

    char hash[17], plabel[600];
    text = run_config_text(sp->cfg, ops->name, hash);
    store_run_t meta = {.name = sp->name, .strategy = ops->name,
                        .strategy_version = ops->algo_version, .trace = sp->trace_name,
                        .model = sp->model.name, .hardware = c->hw.name,
                        .nodes = cluster_total_nodes(c), .devices = D * cluster_pp(c),
                        .seed = sp->seed,
                        .prior = prior_label(&sp->prior, plabel, sizeof plabel)};
    if (record_begin(&rec, st, &meta, text)) goto out;
    sum->run_id = rec.run_id;

    /* A new layout takes effect after its planning time and its weight
     * copies, as in serving (replan.h); the migration owns the layout. */
    replan_spec_t rs;
    if (replan_spec_load(sp->cfg, ops, &rs)) goto out;
    mg = migr_new(rs.mode, c, moe_expert_bytes(&sp->model), rs.fixed_ns, lo);
    lo = NULL;
    rpl = replan_new(&rs, mg, c, &sp->model, sp->kv_len, sp->prefill);
    dtok = ms_malloc((size_t)D * sizeof *dtok);
    for (int d = 0; d < D; d++) dtok[d] = sp->tokens_per_device * verify;
    sim = step_new(c, &sp->model);
    metrics_loads_init(&acc, L, D, E);
    /* the kernels step.c times: normal for prefill and when asked for */
    loc = loc_new(c, &sp->model,
                  c->a2a == STEP_A2A_NORMAL || (c->a2a == STEP_A2A_AUTO && sp->prefill));
    pick_ctx_t pc = {ops, ps};
    timeline_view_t tv = {tl, 0};
    step_observer_t tobs = timeline_observer(&tv);
    double tokens = 0;
    int64_t now_ns = 0;
    progress_begin_run(&prog, ops->name);
    for (int s = 0; s < sp->steps; s++) {
        if (prog.on) {
            char d[64];
            snprintf(d, sizeof d, "step %d/%d", s + 1, sp->steps);
            progress_update(&prog, s, sp->steps, d, 0);
        }
        /* The phase is the one serving when the step starts. */
        int p = sp->phases.n ? phase_at(&sp->phases, now_ns) : 0, ts = pstep[p]++;
        const route_step_t *rt = replay_step(rps[p], ts);
        if (!rt) goto out;
        step_result_t r;
        step_in_t in = {.start_ns = now_ns, .layout = mg->live, .route = rt,
                        .kv_len = sp->kv_len, .prefill = sp->prefill,
                        .pick = ops->pick_replica ? pick_via : NULL, .pick_ctx = &pc,
                        .bg_bytes = migr_batch_begin(mg, now_ns), .obs = tl ? &tobs : NULL};
        if (step_run(sim, &in, &r)) goto out;
        loc_step(loc, rt, mg->live, in.pick, in.pick_ctx);
        now_ns = r.end_ns;
        /* decode: output tokens in expectation, each sequence making mtp_tokens a
         * step; prefill: input tokens, each computed one standing for
         * 1 / (1 - prefix_hit_rate) of a prompt (the rest is cached) */
        tokens += sp->prefill ? rt->n_tokens / (1 - sp->prefix_hit_rate)
                              : (double)rt->n_tokens / verify * sp->mtp_tokens;
        metrics_loads_step(&acc, r.dev_load, r.expert_load);
        if (record_step(&rec, s, r.start_ns, r.end_ns - r.start_ns, rt->n_tokens) ||
            record_layer_steps(&rec, s, r.layer_ns, &acc))
            goto out;
        replan_batch_end(rpl, r.start_ns, r.end_ns);
        if (replan_record_copies(&rec, mg, 0, tl)) goto out;
        replan_observe(rpl, r.expert_load, dtok);
        if (ops->observe) {
            place_obs_t obs = {.now_ns = r.end_ns, .step = s, .expert_load = r.expert_load,
                               .device_load = r.dev_load};
            ops->observe(ps, &obs);
        }
        migr_plan_info_t info;
        int w = replan_poll(rpl, ops, ps, r.end_ns, &info);
        if (w < 0) goto out;
        if (w > 0) {
            if (tl) timeline_replan(tl, r.end_ns, s, info.layers_changed);
            if (record_replan(&rec, r.end_ns, s, info.layers_changed, info.bytes) ||
                replan_record_copies(&rec, mg, 0, tl))
                goto out;
            /* blocking: the next step waits for every copy */
            now_ns += info.pause_ns;
            if (mg->mode == MIGR_BLOCKING) migr_finish(mg);
        }
    }
    replan_end(rpl, now_ns);
    lb = ms_malloc((size_t)L * sizeof *lb);
    metrics_layout_bounds(&acc, mg->live, lb);
    if (record_layers(&rec, mg->live, tr_tot, &acc, lb)) goto out;

    run_totals_t tot = {.now_ns = now_ns, .tokens = tokens, .layout_par = layout_par,
                        .hindsight = hindsight, .skip = skip};
    metrics_t *m = &sum->m;
    run_metrics(sp, &tot, mg, rpl, &acc, lb, m);
    if (loc_store(loc, &rec, m) || record_metrics(&rec, m) ||
        record_strategy_metrics(&rec, ops, ps, "") || record_commit(&rec))
        goto out;
    sum->run_id = rec.run_id;
    rc = MS_OK;
out:
    progress_end(&prog);
    record_abort(&rec);
    free(text);
    free(prior);
    free(tr_tot);
    free(lb);
    metrics_loads_free(&acc);
    loc_free(loc);
    step_free(sim);
    place_layout_free(lo);
    replan_free(rpl);
    migr_free(mg);
    free(dtok);
    if (ps && ops->destroy) ops->destroy(ps);
    for (int i = 0; i < NP; i++) {
        route_free(routers[i]);
        replay_free(rps[i]);
        trace_free(trs[i]);
    }
    trace_free(mix);
    return rc;
}
