/* serve_metrics: the serving run's metrics from the loop's counters and the
 * request rows, each through its one definition in metrics.c. The loop only
 * counts; every rate, mean and bound is formed here, once, at the end. */
#include "serve_int.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

/* Requests in the system, integrated over the measuring window. */
void serve_in_system(srv_t *s, int64_t now, int delta) {
    int64_t a = s->area_t < s->w0 ? s->w0 : s->area_t, b = now < s->w0 ? s->w0 : now;
    if (a > s->w1) a = s->w1;
    if (b > s->w1) b = s->w1;
    s->area += (double)s->in_sys * (double)(b - a);
    s->area_t = now;
    s->in_sys += delta;
}

void serve_metrics(srv_t *s, const store_request_t *rows, int64_t end, metrics_t *m,
                   metrics_layer_bound_t **pr_lb) {
    const serve_spec_t *ss = s->ss;
    const inst_t *pr = s->has_dc ? &s->dc : &s->pf;
    double win_s = (double)(s->w1 - s->w0) / 1e9;
    int64_t arrived = 0;
    double w_sum = 0;
    for (int64_t i = 0; i < s->released; i++) {
        const sreq_t *q = &s->r[i];
        if (q->arrival_ns >= s->w0 && q->arrival_ns <= s->w1) {
            arrived++;
            w_sum += (double)(q->done_ns - q->arrival_ns) / 1e9;
        }
    }
    metrics_requests(rows, s->released, s->w0, s->has_dc, m);

    double moved = 0, pause = 0;
    int64_t copies = 0, replans = 0;
    for (int k = 0; k < 2; k++) {
        const inst_t *in = k ? &s->pf : &s->dc;
        if (!(k ? s->has_pf : s->has_dc)) continue;
        moved += in->mg->total_bytes;
        copies += in->mg->total_copies;
        pause += (double)in->mg->pause_ns / 1e9;
        replans += in->replans;
    }
    const hw_t *hw = &pr->c.hw;
    double t = end > 0 ? (double)end / 1e9 : 1;
    double link_cap = t * pr->D * (hw->scaleup_bw + hw->nic_bw);
    struct { enum metrics_id id; double v; } v[] = {
        {METRIC_REQUESTS, (double)s->released},
        {METRIC_SIM_TIME, (double)end / 1e9},
        {METRIC_WINDOW, win_s},
        {METRIC_WINDOW_START, (double)s->w0 / 1e9},
        {METRIC_INPUT_TOKENS, s->in_tokens},
        {METRIC_OUTPUT_TOKENS, s->out_tokens},
        {METRIC_PREFILL_COMPUTED, s->pf_computed},
        {METRIC_DECODE_TOKENS, s->dc_tokens},
        {METRIC_TOKENS_PER_SEQ_STEP, s->seq_steps > 0 ? s->dc_tokens / s->seq_steps : 0},
        {METRIC_OUT_TPS_NODE, s->has_dc ? metrics_per_node(s->win_out, win_s, s->dc.c.n_nodes) : 0},
        {METRIC_IN_TPS_NODE, s->has_pf ? metrics_per_node(s->win_in, win_s, s->pf.c.n_nodes) : 0},
        {METRIC_OUT_TPS_NODE_BUSY,
         s->has_dc ? metrics_per_node(s->dc_tokens, s->dc.busy_ns / 1e9, s->dc.c.n_nodes) : 0},
        {METRIC_IN_TPS_NODE_BUSY,
         s->has_pf ? metrics_per_node(s->in_tokens, s->pf.busy_ns / 1e9, s->pf.c.n_nodes) : 0},
        {METRIC_STEPS, (double)pr->steps},
        {METRIC_STEP_TIME_MEAN, pr->steps ? pr->busy_ns / 1e6 / (double)pr->steps : 0},
        {METRIC_BATCH_MEAN, pr->steps ? pr->tokens_sum / (double)pr->steps / pr->D : 0},
        {METRIC_BUSY, pr->busy_ns / 1e9 / t},
        {METRIC_DEVICE_UTIL, pr->bal_ns / 1e9 / t},
        {METRIC_LINK_UTIL, (pr->bytes + pr->mg->total_bytes) / link_cap},
        {METRIC_MIGRATED_GB, moved / 1e9},
        {METRIC_MIGRATIONS, (double)copies},
        {METRIC_REPLANS, (double)replans},
        {METRIC_PRIOR_WARMUP_STEPS, pr->skip},
        {METRIC_REBALANCE_PAUSE, pause},
        {METRIC_IN_SYSTEM_MEAN, win_s > 0 ? s->area / (double)(s->w1 - s->w0) : 0},
        {METRIC_LAMBDA_W,
         win_s > 0 && arrived ? (double)arrived / win_s * (w_sum / (double)arrived) : 0},
        {METRIC_KV_BYTES_PER_TOKEN, ss->kv_bytes_per_token},
        {METRIC_KV_CAPACITY, s->has_dc ? ss->kv_capacity_tokens : 0},
        {METRIC_REDUNDANT, pr->redundant},
        {METRIC_TOKENS_PER_DEVICE,
         s->has_dc ? ss->max_batch_per_device : ss->prefill_tokens_per_device},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) metrics_set(m, v[i].id, v[i].v);
    metrics_set(m, METRIC_LAYOUT_PAR_MEAN, pr->layout_par);
    if (!isnan(pr->hindsight)) {
        metrics_set(m, METRIC_PAR_MEAN_HINDSIGHT, pr->hindsight);
        metrics_set(m, METRIC_REGRET, pr->layout_par - pr->hindsight);
    }
    replan_t *rp[2] = {s->has_dc ? s->dc.rpl : NULL, s->has_pf ? s->pf.rpl : NULL};
    for (int k = 0; k < 2; k++)
        if (rp[k]) replan_end(rp[k], end);
    replan_metrics((const replan_t *const *)rp, 2, m);
    *pr_lb = NULL;
    for (int k = 0; k < 2; k++) {
        const inst_t *in = k ? &s->pf : &s->dc;
        if (!(k ? s->has_pf : s->has_dc)) continue;
        metrics_layer_bound_t *lb = ms_malloc((size_t)in->L * sizeof *lb);
        metrics_layout_bounds(&in->loads, in->mg->live, lb);
        metrics_from_loads(&in->loads, lb, in != pr, m);
        if (in == pr) *pr_lb = lb; /* serve_out.c stores them */
        else free(lb);
    }
    if (s->has_pf && s->has_dc) {
        const inst_t *p = &s->pf;
        metrics_set(m, METRIC_PREFILL_STEPS, (double)p->steps);
        metrics_set(m, METRIC_PREFILL_STEP_TIME_MEAN,
                    p->steps ? p->busy_ns / 1e6 / (double)p->steps : 0);
        metrics_set(m, METRIC_PREFILL_BUSY, p->busy_ns / 1e9 / t);
        metrics_set(m, METRIC_PREFILL_MIGRATED_GB, p->mg->total_bytes / 1e9);
    }
}
