/* replan: planning time, keep-in-place, gating and hand-over of a
 * strategy's new layouts to the weight copies (replan.h). */
#include "replan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "place_move.h"
#include "util.h"

#define SEC "placement"

/* plan_ms of one section: a number of ms, or "measured" (one key of
 * two forms, so read as text and parsed here). */
static int read_plan_ms(cfg_t *cfg, const char *sec, replan_spec_t *o) {
    const char *s;
    if (!cfg_has(cfg, sec, "plan_ms")) return MS_OK;
    if (cfg_str(cfg, sec, "plan_ms", "0", &s)) return MS_ERR;
    if (!strcasecmp(s, "measured")) {
        o->plan_measured = 1;
        o->plan_ns = 0;
        return MS_OK;
    }
    char *end;
    double x = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == s || *end || !(x >= 0 && x <= 3.6e6))
        return ms_err("%s: [%s] plan_ms = '%s' (give milliseconds from 0 to 3600000, e.g. 20, "
                      "or measured)", cfg_where(cfg, sec, "plan_ms"), sec, s);
    o->plan_measured = 0;
    o->plan_ns = llround(x * 1e6);
    return MS_OK;
}

int replan_spec_load(cfg_t *cfg, const place_ops_t *ops, replan_spec_t *o) {
    memset(o, 0, sizeof *o);
    double x;
    const char *s;
    if (read_plan_ms(cfg, SEC, o)) return MS_ERR;
    if (ops) {
        char sec[64];
        place_cfg_section(ops, sec, sizeof sec);
        if (read_plan_ms(cfg, sec, o)) return MS_ERR;
    }
    if (cfg_bool(cfg, SEC, "replan_min_move", 0, &o->min_move) ||
        cfg_double(cfg, SEC, "replan_min_gain", 0, 0, 1, &o->min_gain) ||
        cfg_int(cfg, SEC, "replan_horizon_steps", 0, 0, 1L << 40, &o->horizon_steps) ||
        cfg_int(cfg, SEC, "replan_window_steps", 100, 1, 1L << 30, &o->window_steps) ||
        cfg_str(cfg, SEC, "rebalance", "pipelined", &s))
        return MS_ERR;
    if (!strcasecmp(s, "pipelined")) o->mode = MIGR_PIPELINED;
    else if (!strcasecmp(s, "blocking")) o->mode = MIGR_BLOCKING;
    else
        return ms_err("%s: [placement] rebalance = '%s' (give blocking or pipelined)",
                      cfg_where(cfg, SEC, "rebalance"), s);
    if (cfg_double(cfg, SEC, "rebalance_fixed_s", 0, 0, 3600, &x)) return MS_ERR;
    o->fixed_ns = llround(x * 1e9);
    return MS_OK;
}

replan_t *replan_new(const replan_spec_t *sp, migr_state_t *mg, const cluster_t *c,
                     const moe_model_t *m, double kv_len, int prefill) {
    replan_t *r = ms_calloc(1, sizeof *r);
    r->sp = *sp;
    r->mg = mg;
    r->kv_len = kv_len;
    r->prefill = prefill;
    r->busy_since = -1;
    const place_layout_t *lo = mg->live;
    if (sp->min_gain > 0 || sp->horizon_steps > 0) {
        /* predictions in closed form: the same cost model, a thousand times
         * cheaper than the flow mode, and no randomness */
        cluster_t a = *c;
        a.mode = STEP_ANALYTIC;
        r->pred = step_new(&a, m);
        r->recent = ms_calloc((size_t)lo->n_layers * lo->n_experts, sizeof *r->recent);
        r->tokens = ms_calloc((size_t)lo->n_devices, sizeof *r->tokens);
    }
    return r;
}

void replan_free(replan_t *r) {
    if (!r) return;
    step_free(r->pred);
    free(r->recent);
    free(r->tokens);
    place_layout_free(r->pending);
    free(r);
}

int replan_batch_end(replan_t *r, int64_t start_ns, int64_t end_ns) {
    int n = migr_batch_end(r->mg, start_ns, end_ns);
    if (r->busy_since >= 0 && !migr_busy(r->mg)) {
        r->migr_ns += end_ns - r->busy_since;
        r->busy_since = -1;
    }
    return n;
}

void replan_observe(replan_t *r, const double *expert_load, const int *tokens) {
    r->seen++;
    if (!r->recent) return;
    const place_layout_t *lo = r->mg->live;
    size_t le = (size_t)lo->n_layers * lo->n_experts;
    /* exponentially weighted: the first step counts whole, then each new
     * one with weight 1 / window */
    double a = r->seen == 1 ? 1.0 : 1.0 / (double)r->sp.window_steps;
    for (size_t i = 0; i < le; i++) r->recent[i] += a * (expert_load[i] - r->recent[i]);
    memcpy(r->tokens, tokens, (size_t)lo->n_devices * sizeof *r->tokens);
}

/* Predicted time of one step with layout lo on the recent loads. */
static int predict_ns(replan_t *r, const place_layout_t *lo, int64_t *out) {
    step_in_t in = {.start_ns = 0, .layout = lo, .expert_load = r->recent, .tokens = r->tokens,
                    .kv_len = r->kv_len, .prefill = r->prefill};
    step_result_t res;
    if (step_run(r->pred, &in, &res)) return MS_ERR;
    *out = res.end_ns - res.start_ns;
    return MS_OK;
}

/* 1: the plan pays (or gating is off), 0: skip it. */
static int gate(replan_t *r, const place_layout_t *next, int *pays) {
    *pays = 1;
    r->last_gain = 0;
    r->last_gain_ns = r->last_copy_ns = 0;
    if (!r->pred) return MS_OK;
    migr_plan_info_t est;
    migr_estimate(r->mg, next, &est);
    if (!est.copies) return MS_OK; /* moves no weight: nothing to pay for */
    r->last_copy_ns = est.pause_ns;
    int64_t old_ns = 0, new_ns = 0;
    if (r->seen) { /* nothing observed yet: no evidence of a gain */
        if (predict_ns(r, r->mg->live, &old_ns) || predict_ns(r, next, &new_ns)) return MS_ERR;
        r->last_gain_ns = old_ns - new_ns;
        r->last_gain = old_ns > 0 ? (double)r->last_gain_ns / (double)old_ns : 0;
    }
    if ((r->sp.min_gain > 0 && r->last_gain < r->sp.min_gain) ||
        (r->sp.horizon_steps > 0 &&
         (double)r->last_gain_ns * (double)r->sp.horizon_steps < (double)r->last_copy_ns) ||
        r->last_gain_ns <= 0) {
        *pays = 0;
        r->skipped++;
        r->skipped_bytes += est.bytes;
    }
    return MS_OK;
}

static int64_t wall_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int replan_poll(replan_t *r, const place_ops_t *ops, place_state_t *ps, int64_t now_ns,
                migr_plan_info_t *info) {
    memset(info, 0, sizeof *info);
    if (!ops->replan) return 0;
    if (!r->pending) {
        place_layout_t *nl = NULL;
        int64_t t0 = r->sp.plan_measured ? wall_ns() : 0;
        int w = ops->replan(ps, now_ns, r->mg->live, &nl);
        if (w < 0) return MS_ERR;
        if (w == 0) return 0;
        int64_t plan = r->sp.plan_measured ? wall_ns() - t0 : r->sp.plan_ns;
        r->pending = nl;
        r->planned_ns = now_ns;
        r->ready_ns = now_ns + plan;
    }
    if (r->ready_ns > now_ns) return 0;
    place_layout_t *next = r->pending;
    r->pending = NULL;
    r->plan_ns += now_ns - r->planned_ns;
    if (r->sp.min_move) {
        int64_t saved = place_move_keep(r->mg->live, next);
        if (saved < 0) {
            place_layout_free(next);
            return MS_ERR;
        }
        r->kept_bytes += (double)saved * r->mg->expert_bytes;
    }
    int pays;
    if (gate(r, next, &pays)) {
        place_layout_free(next);
        return MS_ERR;
    }
    if (!pays) {
        place_layout_free(next);
        return 0;
    }
    migr_plan(r->mg, next, now_ns, info);
    if (!info->layers_changed) return 0; /* the same layout: nothing to move */
    r->done++;
    if (info->pause_ns > 0) r->migr_ns += info->pause_ns;
    else if (migr_busy(r->mg) && r->mg->mode == MIGR_PIPELINED && r->busy_since < 0)
        r->busy_since = now_ns;
    return 1;
}

void replan_end(replan_t *r, int64_t end_ns) {
    if (r->busy_since >= 0 && end_ns > r->busy_since) r->migr_ns += end_ns - r->busy_since;
    r->busy_since = -1;
    if (r->pending && end_ns > r->planned_ns) r->plan_ns += end_ns - r->planned_ns;
}

void replan_metrics(const replan_t *const *r, int n, metrics_t *m) {
    double skipped = 0, skipped_b = 0, kept_b = 0, plan = 0, migr = 0;
    for (int i = 0; i < n; i++) {
        if (!r[i]) continue;
        skipped += (double)r[i]->skipped;
        skipped_b += r[i]->skipped_bytes;
        kept_b += r[i]->kept_bytes;
        plan += (double)r[i]->plan_ns;
        migr += (double)r[i]->migr_ns;
    }
    metrics_set(m, METRIC_REPLANS_SKIPPED, skipped);
    metrics_set(m, METRIC_REPLAN_SKIPPED_GB, skipped_b / 1e9);
    metrics_set(m, METRIC_REPLAN_KEPT_GB, kept_b / 1e9);
    metrics_set(m, METRIC_PLAN_TIME, plan / 1e9);
    metrics_set(m, METRIC_MIGRATION_TIME, migr / 1e9);
}

int replan_record_copies(record_t *rec, migr_state_t *mg, int dev_base, timeline_t *tl) {
    int n;
    const migr_t *m = migr_take_log(mg, &n);
    for (int i = 0; i < n; i++) {
        store_migration_t row = {.time_ns = m[i].start_ns, .done_ns = m[i].done_ns,
                                 .layer = m[i].layer, .expert = m[i].expert, .bytes = m[i].bytes,
                                 .src_device = m[i].src + dev_base,
                                 .dst_device = m[i].dst + dev_base};
        if (record_migration(rec, &row)) return MS_ERR;
        if (tl)
            timeline_migration(tl, row.src_device, row.dst_device, row.layer, row.expert,
                               row.time_ns, row.done_ns);
    }
    return MS_OK;
}
