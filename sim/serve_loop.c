/* serve_loop: the serving loop's events on its own engine, from arrival
 * to the last token.
 *
 * Life of a request (both instances):
 *   ARRIVE        joins the prefill queue (FIFO).
 *   prefill step  a batch of prompt tokens, at most prefill_tokens_per_device
 *                 on each device (attention is data-parallel, so a request's
 *                 prompt stays on one device; chunked prefill may split it
 *                 over several steps). The step that finishes a prompt
 *                 produces the first token (TTFT).
 *   KV transfer   the prompt's KV cache goes over InfiniBand to the decode
 *                 device with the fewest requests; each NIC carries one
 *                 transfer at a time, first come first served.
 *   decode steps  continuous batching: every step, each device's running
 *                 sequences make one token; waiting sequences join at a step
 *                 boundary while the device has batch room and KV room (a
 *                 sequence reserves prompt + output tokens of KV when it
 *                 joins, so nothing is ever evicted).
 * After each step the instance's strategy observes the step's loads and may
 * re-plan; layout changes become weight copies (migr.c). */
#include "serve_int.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "eng.h"
#include "util.h"


/* Replica choice through the strategy, when it has its own. */
static int pick_via(void *ctx, const place_layout_t *lo, int l, int e, int src) {
    const inst_t *in = ctx;
    return in->ops->pick_replica(in->ps, lo, l, e, src);
}

/* The progress line (progress.c): requests done of all, the simulated
 * time beside them. */
void serve_progress(srv_t *s, int64_t now, int last) {
    if (last) {
        progress_end(&s->prog);
        return;
    }
    if (!s->prog.on) return;
    char d[128];
    snprintf(d, sizeof d, "simulated %.1f s, requests %lld/%lld done", (double)now / 1e9,
             (long long)s->n_done, (long long)s->n);
    progress_update(&s->prog, (double)s->n_done, (double)s->n, d, 0);
}

static void fail(srv_t *s) {
    s->err = 1;
    eng_stop(s->eng);
}

static int in_window(const srv_t *s, int64_t t) { return t >= s->w0 && t <= s->w1; }

static void try_prefill(srv_t *s, int64_t now);
static void try_decode(srv_t *s, int64_t now);

/* Batches form in an event of their own at the current time, after every
 * event already due then: requests arriving together join one batch. */
static void ev_kick(eng_t *e, void *ctx, int64_t decode) {
    srv_t *s = ctx;
    s->kick[decode] = 0;
    if (decode) try_decode(s, eng_now(e));
    else try_prefill(s, eng_now(e));
}

static void kick(srv_t *s, int decode, int64_t now) {
    if (s->kick[decode]) return;
    s->kick[decode] = 1;
    eng_schedule(s->eng, now, ev_kick, s, decode);
}

static void done(srv_t *s, int64_t i, int64_t now) {
    sreq_t *q = &s->r[i];
    q->done_ns = now;
    s->n_done++;
    serve_in_system(s, now, -1);
    /* closed loop: the user sends the next request (until duration_s) */
    if (s->ss->req.arrival == REQ_CLOSED && s->released < s->n &&
        (s->ss->req.duration_s <= 0 || now < llround(s->ss->req.duration_s * 1e9)))
        eng_schedule(s->eng, now, serve_ev_arrive, s, s->released++);
}

/* The request's KV cache is on decode device ddev: it waits for a slot. */
static void dc_enqueue(srv_t *s, int64_t i, int64_t now) {
    sreq_t *q = &s->r[i];
    int d = q->ddev;
    q->next = -1;
    if (s->dq_tail[d] >= 0) s->r[s->dq_tail[d]].next = i;
    else s->dq_head[d] = i;
    s->dq_tail[d] = i;
    kick(s, 1, now);
}

/* The decode device with the fewest requests headed for it or on it. */
static int dc_choose(srv_t *s) {
    int best = 0;
    for (int d = 1; d < s->dc.D; d++)
        if (s->assigned[d] < s->assigned[best]) best = d;
    s->assigned[best]++;
    return best;
}

static void ev_kv(eng_t *e, void *ctx, int64_t i) {
    dc_enqueue(ctx, i, eng_now(e));
}

void serve_ev_arrive(eng_t *e, void *ctx, int64_t i) {
    srv_t *s = ctx;
    int64_t now = eng_now(e);
    sreq_t *q = &s->r[i];
    q->arrival_ns = now;
    serve_in_system(s, now, +1);
    if (s->ss->req.arrival != REQ_CLOSED) {
        s->released = i + 1;
        if (i + 1 < s->n) eng_schedule(e, q[1].arrival_ns, serve_ev_arrive, s, i + 1);
    }
    if (s->has_dc && q->prompt + q->output > s->ss->kv_capacity_tokens) {
        ms_err("request %lld needs %d tokens of KV cache (prompt %d + output %d) but a decode "
               "device holds %.0f (lower prompt_max / output_max, or raise [serving] "
               "kv_cache_gb)", (long long)i, q->prompt + q->output, q->prompt, q->output,
               s->ss->kv_capacity_tokens);
        fail(s);
        return;
    }
    if (s->has_pf) {
        s->pq[s->pq_tail++] = i;
        kick(s, 0, now);
    } else { /* decode only: the prompt's KV cache came with it */
        s->in_tokens += q->prompt;
        q->ddev = dc_choose(s);
        dc_enqueue(s, i, now);
    }
}

/* Runs one batch of an instance from now; its end is an event. */
static void inst_step(srv_t *s, inst_t *in, int64_t now, double kv_len, eng_fn done_fn) {
    const double *bg = migr_batch_begin(in->mg, now);
    step_in_t si = {.start_ns = now, .layout = in->mg->live, .kv_len = kv_len,
                    .prefill = in->prefill, .bg_bytes = bg, .obs = s->tl ? &in->obs : NULL};
    if (s->ops->pick_replica) {
        si.pick = pick_via;
        si.pick_ctx = in;
    }
    int ts = (int)((in->skip + in->steps) / s->ss->trace_step_every);
    replay_t *rp = in->rp;
    route_t *router = in->router;
    /* The phase serving when the batch starts; a later phase replays its
     * trace from its own first step. */
    int p = in->n_ph ? phase_at(&s->sp->phases, now) : 0;
    if (p > 0) {
        ts = (int)(in->ph_steps[p]++ / s->ss->trace_step_every);
        rp = in->ph_rp[p];
        router = in->ph_router[p];
    }
    in->n_tokens = 0;
    for (int d = 0; d < in->D; d++) in->n_tokens += in->tokens[d];
    /* count routing unless asked for tokens (auto: the flow mode routes
     * tokens, as it always has; a long flow-mode run asks for counts) */
    enum serve_routing how = s->ss->routing;
    if (how == SERVE_ROUTE_AUTO)
        how = in->c.mode == STEP_ANALYTIC ? SERVE_ROUTE_COUNT : SERVE_ROUTE_TOKEN;
    if (how == SERVE_ROUTE_COUNT) {
        if (router) route_counts(router, ts, (int)in->steps, in->n_tokens, in->counts);
        else replay_counts(rp, ts, in->n_tokens, in->counts);
        si.expert_load = in->counts;
        si.tokens = in->tokens;
    } else {
        si.route = replay_step_batch(rp, ts, in->tokens);
        if (!si.route) {
            fail(s);
            return;
        }
    }
    if (step_run(in->sim, &si, &in->res)) {
        fail(s);
        return;
    }
    if (si.route) loc_step(in->loc, si.route, si.layout, si.pick, si.pick_ctx);
    in->busy = 1;
    in->start_ns = now;
    eng_schedule(s->eng, in->res.end_ns, done_fn, s, 0);
}

static void ev_resume(eng_t *e, void *ctx, int64_t decode) {
    srv_t *s = ctx;
    migr_finish(decode ? s->dc.mg : s->pf.mg);
    kick(s, (int)decode, eng_now(e));
}

/* A batch ended: its statistics and rows, the weight copies that rode it,
 * then the strategy sees the loads and may re-plan. */
static void inst_step_end(srv_t *s, inst_t *in, int64_t now) {
    const step_result_t *r = &in->res;
    int L = in->L;
    int64_t dur = r->end_ns - r->start_ns, step = in->steps;
    int row = in->primary && step % s->ss->store_every == 0;
    in->busy_ns += (double)dur;
    in->tokens_sum += in->n_tokens;
    in->bytes += r->dispatch_bytes + r->combine_bytes;
    /* a decode step's row counts the tokens it made, a prefill step's those it computed */
    if (in->primary && record_step(s->rec, (int)step, r->start_ns, dur,
                                   in->prefill ? in->n_tokens : in->made))
        goto bad;
    metrics_loads_step(&in->loads, r->dev_load, r->expert_load);
    if (row && record_layer_steps(s->rec, (int)step, r->layer_ns, &in->loads)) goto bad;
    double means = 0, maxes = 0;
    for (int l = 0; l < L; l++) {
        means += in->loads.step_mean[l];
        maxes += in->loads.step_max[l];
    }
    in->bal_ns += maxes > 0 ? (double)dur * means / maxes : (double)dur;

    replan_batch_end(in->rpl, in->start_ns, now);
    if (replan_record_copies(s->rec, in->mg, in->dev_base, s->tl)) goto bad;
    replan_observe(in->rpl, r->expert_load, in->tokens);
    if (s->ops->observe) {
        place_obs_t obs = {.now_ns = now, .step = (int)step, .expert_load = r->expert_load,
                           .device_load = r->dev_load};
        s->ops->observe(in->ps, &obs);
    }
    in->steps++;
    in->busy = 0;
    {
        migr_plan_info_t info;
        int w = replan_poll(in->rpl, s->ops, in->ps, now, &info);
        if (w < 0) goto bad;
        if (w > 0) {
            in->replans++;
            if (s->tl) timeline_replan(s->tl, now, (int)step, info.layers_changed);
            if (record_replan(s->rec, now, (int)step, info.layers_changed, info.bytes) ||
                replan_record_copies(s->rec, in->mg, in->dev_base, s->tl))
                goto bad;
            if (info.pause_ns > 0) {
                in->paused_until = now + info.pause_ns;
                eng_schedule(s->eng, in->paused_until, ev_resume, s, !in->prefill);
            } else if (in->mg->mode == MIGR_BLOCKING) {
                migr_finish(in->mg);
            }
        }
    }
    serve_progress(s, now, 0);
    return;
bad:
    fail(s);
}

static void ev_pf_done(eng_t *e, void *ctx, int64_t unused);
static void ev_dc_done(eng_t *e, void *ctx, int64_t unused);

/* Builds the next prefill batch: prompts already started go on, then the
 * queue in order, each on the device with the most budget left. Without
 * chunking a prompt must fit whole (a prompt above the budget runs alone on
 * an empty device); the queue head blocks the rest (FIFO). */
static void try_prefill(srv_t *s, int64_t now) {
    inst_t *p = &s->pf;
    if (p->busy || now < p->paused_until || s->err) return;
    int D = p->D, B = s->ss->prefill_tokens_per_device;
    for (int d = 0; d < D; d++) {
        s->left[d] = B;
        p->tokens[d] = 0;
    }
    double ctx = 0, tok = 0;
    for (int k = 0; k < s->n_pact; k++) {
        sreq_t *q = &s->r[s->pact[k]];
        int c = ms_imin(q->to_compute - q->computed, s->left[q->pdev]);
        q->chunk = c;
        s->left[q->pdev] -= c;
        p->tokens[q->pdev] += c;
        ctx += c * (q->hit + q->computed + (c + 1) / 2.0);
        tok += c;
    }
    while (s->pq_head < s->pq_tail) {
        int64_t i = s->pq[s->pq_head];
        sreq_t *q = &s->r[i];
        int d = 0;
        for (int k = 1; k < D; k++)
            if (s->left[k] > s->left[d]) d = k;
        int c = q->to_compute;
        if (s->ss->chunked_prefill) {
            if (s->left[d] <= 0) break;
            c = ms_imin(c, s->left[d]);
        } else if (c > s->left[d] && s->left[d] < B) {
            break;
        }
        s->pq_head++;
        q->pdev = d;
        q->chunk = c;
        s->left[d] = ms_imax(0, s->left[d] - c);
        p->tokens[d] += c;
        s->pact[s->n_pact++] = i;
        ctx += c * (q->hit + (c + 1) / 2.0);
        tok += c;
    }
    if (tok <= 0) return;
    inst_step(s, p, now, ctx / tok, ev_pf_done);
}

static void ev_pf_done(eng_t *e, void *ctx, int64_t unused) {
    (void)unused;
    srv_t *s = ctx;
    int64_t now = eng_now(e);
    const hw_t *hw = &s->pf.c.hw;
    int kept = 0;
    for (int k = 0; k < s->n_pact; k++) {
        int64_t i = s->pact[k];
        sreq_t *q = &s->r[i];
        q->computed += q->chunk;
        s->pf_computed += q->chunk;
        q->chunk = 0;
        if (q->computed < q->to_compute) {
            s->pact[kept++] = i;
            continue;
        }
        /* The prompt is done: prefill's logits give the first token. */
        q->first_ns = now;
        q->generated = 1;
        s->out_tokens += 1;
        s->in_tokens += q->prompt;
        if (in_window(s, now)) s->win_in += q->prompt;
        if (!s->has_dc || q->output <= 1) {
            done(s, i, now);
            continue;
        }
        q->ddev = dc_choose(s);
        double bytes = q->prompt * s->ss->kv_bytes_per_token;
        int64_t start = now;
        if (s->kv_send_free[q->pdev] > start) start = s->kv_send_free[q->pdev];
        if (s->kv_recv_free[q->ddev] > start) start = s->kv_recv_free[q->ddev];
        int64_t end = start + llround(hw->nic_lat_ns + 1e9 * bytes / (hw->nic_bw * hw->eff_nic));
        s->kv_send_free[q->pdev] = s->kv_recv_free[q->ddev] = end;
        eng_schedule(e, end, ev_kv, s, i);
    }
    s->n_pact = kept;
    inst_step_end(s, &s->pf, now);
    kick(s, 0, now);
}

/* Admits waiting sequences (batch room and KV room), then runs a step of
 * every running sequence. */
static void try_decode(srv_t *s, int64_t now) {
    inst_t *dc = &s->dc;
    if (dc->busy || now < dc->paused_until || s->err) return;
    double cap = s->ss->kv_capacity_tokens;
    for (int d = 0; d < dc->D; d++) {
        while (s->dq_head[d] >= 0 && s->dcount[d] < s->ss->max_batch_per_device) {
            int64_t i = s->dq_head[d];
            sreq_t *q = &s->r[i];
            if (s->kv_used[d] + q->prompt + q->output > cap) break;
            s->dq_head[d] = q->next;
            if (s->dq_head[d] < 0) s->dq_tail[d] = -1;
            s->dact[s->n_dact++] = i;
            s->dcount[d]++;
            s->kv_used[d] += q->prompt + q->output;
        }
        /* each sequence verifies its token and mtp_depth drafts */
        dc->tokens[d] = s->dcount[d] * (1 + s->sp->model.mtp_depth);
    }
    if (!s->n_dact) return;
    double ctx = 0;
    for (int64_t j = 0; j < s->n_dact; j++) {
        const sreq_t *q = &s->r[s->dact[j]];
        ctx += q->prompt + q->generated;
    }
    inst_step(s, dc, now, ctx / (double)s->n_dact, ev_dc_done);
}

/* Tokens a sequence makes in a decode step: its own, then each draft in
 * order while the verifier accepts it (draft i with probability
 * mtp_accept[i], drawn from the run's seeded generator), never more than
 * it still owes: every requested token is made once, none beyond. */
static int mtp_made(srv_t *s, const sreq_t *q) {
    int n = 1, depth = s->sp->model.mtp_depth;
    for (int i = 0; i < depth && gsl_rng_uniform(s->mtp_rng) < s->sp->mtp_accept[i]; i++) n++;
    int owed = q->output - q->generated;
    return n < owed ? n : owed;
}

static void ev_dc_done(eng_t *e, void *ctx, int64_t unused) {
    (void)unused;
    srv_t *s = ctx;
    int64_t now = eng_now(e), kept = 0;
    int win = in_window(s, now);
    s->dc.made = 0;
    s->seq_steps += (double)s->n_dact;
    for (int64_t j = 0; j < s->n_dact; j++) {
        int64_t i = s->dact[j];
        sreq_t *q = &s->r[i];
        int made = mtp_made(s, q);
        q->generated += made;
        s->dc_tokens += made;
        s->dc.made += made;
        s->out_tokens += made;
        if (win) s->win_out += made;
        if (q->first_ns < 0) q->first_ns = now;
        if (q->generated < q->output) {
            s->dact[kept++] = i;
            continue;
        }
        int d = q->ddev;
        s->dcount[d]--;
        s->assigned[d]--;
        s->kv_used[d] -= q->prompt + q->output;
        done(s, i, now);
    }
    s->n_dact = kept;
    inst_step_end(s, &s->dc, now);
    kick(s, 1, now);
}

