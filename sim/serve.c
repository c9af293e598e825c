/* serve: the serving loop on its own engine.
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
#include "serve.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "eng.h"
#include "locality.h"
#include "metrics.h"
#include "replay.h"
#include "route.h"
#include "record.h"
#include "util.h"

#define SEC "serving"
/* Salt of the draft-acceptance generator's seed (independent of the
 * request stream's). */
#define MTP_SEED_SALT 0x6d7470u

/* Progress lines at most this often (seconds of wall time). */
#define PROGRESS_EVERY_S 0.25

static int prog_done, prog_runs;

void serve_progress_runs(int runs_done, int n_runs) {
    prog_done = runs_done;
    prog_runs = n_runs;
}

/* ---- the simulation state ---- */

typedef struct sreq {
    int64_t arrival_ns, first_ns, done_ns; /* -1 until known */
    int prompt, output;
    int hit;          /* prompt tokens whose KV is cached */
    int to_compute;   /* prompt tokens prefill computes */
    int computed;     /* of those, done so far */
    int chunk;        /* tokens in the running prefill step */
    int generated;    /* output tokens made so far */
    int pdev, ddev;   /* prefill and decode device */
    int64_t next;     /* decode wait-queue link, -1: last */
} sreq_t;

typedef struct inst {
    const char *name;          /* "prefill" or "decode": metric prefixes */
    int prefill;               /* 1: prefill batches */
    int primary;               /* its steps fill steps / layer_steps / device_loads */
    cluster_t c;
    int D, L, E, redundant;
    int dev_base;              /* its device 0 in the migrations table */
    const trace_t *tr;
    place_state_t *ps;
    migr_state_t *mg;          /* owns the live layout */
    step_sim_t *sim;
    replay_t *rp;
    route_t *router;           /* the strategy's route hook, NULL when it has none */
    loc_t *loc;                /* communication locality (token mode) */
    step_result_t res;         /* of the running (or last) step */
    int busy;                  /* a step is running */
    int64_t paused_until;      /* blocking rebalance: no step before this time */
    int64_t start_ns;          /* of the running step */
    int64_t steps;
    int *tokens;               /* [D] tokens of the running step */
    double n_tokens;           /* tokens it computes (decode: 1 + mtp_depth a sequence) */
    double made;               /* decode: output tokens it made (accepted drafts included) */
    double *counts;            /* [L][E] count mode */
    double *tr_tot;            /* [L][E] the scored counts (trace_counts rows) */
    int skip;                  /* warm-up batches replayed before the first one served
                                * ([placement] prior = past) */
    /* [workload] phases: phase i > 0 replays with its own replay and
     * router (phase 0 with rp and router above) */
    int n_ph;
    replay_t *ph_rp[PHASE_MAX];
    route_t *ph_router[PHASE_MAX];
    int64_t ph_steps[PHASE_MAX]; /* batches each later phase has replayed */
    metrics_loads_t loads;     /* per-step loads summed over the run */
    double busy_ns, bal_ns, bytes, tokens_sum;
    int64_t replans;
    const place_ops_t *ops;
    timeline_view_t tv;        /* --timeline: where its steps are drawn */
    step_observer_t obs;
} inst_t;

/* Replica choice through the strategy, when it has its own. */
static int pick_via(void *ctx, const place_layout_t *lo, int l, int e, int src) {
    const inst_t *in = ctx;
    return in->ops->pick_replica(in->ps, lo, l, e, src);
}

typedef struct srv {
    const run_spec_t *sp;
    const serve_spec_t *ss;
    const place_ops_t *ops;
    record_t *rec;             /* where the run's rows go (record.h) */
    timeline_t *tl;            /* --timeline, or NULL */
    eng_t *eng;
    int err;
    int64_t n;                 /* requests */
    sreq_t *r;
    int has_pf, has_dc;
    inst_t pf, dc;
    /* prefill */
    int64_t *pq, pq_head, pq_tail; /* FIFO waiting for prefill */
    int64_t *pact;             /* admitted, prompt not finished (in admission order) */
    int n_pact;
    int *left;                 /* [Dp] token budget left while a batch is built */
    int64_t *kv_send_free, *kv_recv_free; /* NIC free times: [Dp], [Dd] */
    /* decode */
    int64_t *dq_head, *dq_tail; /* [Dd] waiting for a batch slot */
    int64_t *dact;             /* running sequences */
    int64_t n_dact;
    int *dcount;               /* [Dd] running per device */
    int *assigned;             /* [Dd] requests headed for or on the device */
    double *kv_used;           /* [Dd] reserved KV tokens */
    /* counts */
    int64_t released, n_done, first_arrival_set;
    double in_tokens, out_tokens, pf_computed, dc_tokens, win_in, win_out;
    double seq_steps;          /* sequences summed over decode steps */
    int64_t w0, w1;            /* the measuring window */
    int kick[2];               /* a batch-forming event is pending: [prefill, decode] */
    int64_t in_sys, area_t;
    double area;
    gsl_rng *mtp_rng;          /* draft acceptance, [model] mtp_depth > 0 */
    /* progress */
    int tty;
    struct timespec wall0, wall_last;
} srv_t;

static double wall_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static void progress(srv_t *s, int64_t now, int last) {
    if (!s->tty) return;
    if (!last && wall_since(&s->wall_last) < PROGRESS_EVERY_S) return;
    clock_gettime(CLOCK_MONOTONIC, &s->wall_last);
    fflush(stdout); /* a table row printed before keeps its place */
    if (last) {
        fputs("\r\033[K", stderr);
        return;
    }
    fprintf(stderr, "\r\033[Kmoesim: %s  run %d/%d  simulated %.1f s  wall %.1f s  requests "
                    "%lld/%lld done", s->ops->name, prog_done + 1, prog_runs ? prog_runs : 1,
            (double)now / 1e9, wall_since(&s->wall0), (long long)s->n_done, (long long)s->n);
    fflush(stderr);
}

static void fail(srv_t *s) {
    s->err = 1;
    eng_stop(s->eng);
}

/* Requests in the system, integrated over the measuring window. */
static void in_system(srv_t *s, int64_t now, int delta) {
    int64_t a = s->area_t < s->w0 ? s->w0 : s->area_t, b = now < s->w0 ? s->w0 : now;
    if (a > s->w1) a = s->w1;
    if (b > s->w1) b = s->w1;
    s->area += (double)s->in_sys * (double)(b - a);
    s->area_t = now;
    s->in_sys += delta;
}

static int in_window(const srv_t *s, int64_t t) { return t >= s->w0 && t <= s->w1; }

static void ev_arrive(eng_t *e, void *ctx, int64_t i);
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
    in_system(s, now, -1);
    /* closed loop: the user sends the next request (until duration_s) */
    if (s->ss->req.arrival == REQ_CLOSED && s->released < s->n &&
        (s->ss->req.duration_s <= 0 || now < llround(s->ss->req.duration_s * 1e9)))
        eng_schedule(s->eng, now, ev_arrive, s, s->released++);
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

static void ev_arrive(eng_t *e, void *ctx, int64_t i) {
    srv_t *s = ctx;
    int64_t now = eng_now(e);
    sreq_t *q = &s->r[i];
    q->arrival_ns = now;
    in_system(s, now, +1);
    if (s->ss->req.arrival != REQ_CLOSED) {
        s->released = i + 1;
        if (i + 1 < s->n) eng_schedule(e, q[1].arrival_ns, ev_arrive, s, i + 1);
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
    if (in->c.mode == STEP_ANALYTIC) {
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

static int record_migrations(srv_t *s, inst_t *in) {
    int n;
    const migr_t *m = migr_take_log(in->mg, &n);
    for (int i = 0; i < n; i++) {
        store_migration_t row = {.time_ns = m[i].start_ns, .done_ns = m[i].done_ns,
                                 .layer = m[i].layer, .expert = m[i].expert, .bytes = m[i].bytes,
                                 .src_device = m[i].src + in->dev_base,
                                 .dst_device = m[i].dst + in->dev_base};
        if (record_migration(s->rec, &row)) return MS_ERR;
        if (s->tl)
            timeline_migration(s->tl, row.src_device, row.dst_device, row.layer, row.expert,
                               row.time_ns, row.done_ns);
    }
    return MS_OK;
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

    migr_batch_end(in->mg, in->start_ns, now);
    if (record_migrations(s, in)) goto bad;
    if (s->ops->observe) {
        place_obs_t obs = {.now_ns = now, .step = (int)step, .expert_load = r->expert_load,
                           .device_load = r->dev_load};
        s->ops->observe(in->ps, &obs);
    }
    in->steps++;
    in->busy = 0;
    if (s->ops->replan) {
        place_layout_t *nl = NULL;
        int w = s->ops->replan(in->ps, now, in->mg->live, &nl);
        if (w < 0) goto bad;
        if (w > 0) {
            migr_plan_info_t info;
            migr_plan(in->mg, nl, now, &info);
            in->replans++;
            if (s->tl) timeline_replan(s->tl, now, (int)step, info.layers_changed);
            if (record_replan(s->rec, now, (int)step, info.layers_changed, info.bytes) ||
                record_migrations(s, in))
                goto bad;
            if (info.pause_ns > 0) {
                in->paused_until = now + info.pause_ns;
                eng_schedule(s->eng, in->paused_until, ev_resume, s, !in->prefill);
            } else if (in->mg->mode == MIGR_BLOCKING) {
                migr_finish(in->mg);
            }
        }
    }
    progress(s, now, 0);
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

/* ---- setup and results ---- */

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
    in->mg = migr_new(s->ss->rebalance, c, moe_expert_bytes(&sp->model),
                      s->ss->rebalance_fixed_ns, lo);
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

/* The run's metrics (metrics.c defines each) and its per-request,
 * per-layer and strategy rows. */
static int record_results(srv_t *s, metrics_t *m, int64_t end) {
    const serve_spec_t *ss = s->ss;
    const inst_t *pr = s->has_dc ? &s->dc : &s->pf;
    double win_s = (double)(s->w1 - s->w0) / 1e9;
    size_t nr = s->released > 0 ? (size_t)s->released : 1;
    store_request_t *rows = ms_malloc(nr * sizeof *rows);
    int64_t arrived = 0;
    double w_sum = 0;
    for (int64_t i = 0; i < s->released; i++) {
        const sreq_t *q = &s->r[i];
        rows[i] = (store_request_t){.request = i, .arrival_ns = q->arrival_ns,
                                    .first_token_ns = q->first_ns, .done_ns = q->done_ns,
                                    .prompt_tokens = q->prompt, .output_tokens = q->output};
        if (q->arrival_ns >= s->w0 && q->arrival_ns <= s->w1) {
            arrived++;
            w_sum += (double)(q->done_ns - q->arrival_ns) / 1e9;
        }
    }
    metrics_requests(rows, s->released, s->w0, s->has_dc, m);
    int rc = record_requests(s->rec, rows, s->released);
    free(rows);
    if (rc) return MS_ERR;

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
    for (int k = 0; k < 2; k++) {
        const inst_t *in = k ? &s->pf : &s->dc;
        if (!(k ? s->has_pf : s->has_dc)) continue;
        metrics_layer_bound_t *lb = ms_malloc((size_t)in->L * sizeof *lb);
        metrics_layout_bounds(&in->loads, in->mg->live, lb);
        metrics_from_loads(&in->loads, lb, in != pr, m);
        rc = in != pr ? MS_OK
                      : record_layers(s->rec, in->mg->live, in->tr_tot, &in->loads, lb);
        free(lb);
        if (rc) return MS_ERR;
    }
    if (s->has_pf && s->has_dc) {
        const inst_t *p = &s->pf;
        metrics_set(m, METRIC_PREFILL_STEPS, (double)p->steps);
        metrics_set(m, METRIC_PREFILL_STEP_TIME_MEAN,
                    p->steps ? p->busy_ns / 1e6 / (double)p->steps : 0);
        metrics_set(m, METRIC_PREFILL_BUSY, p->busy_ns / 1e9 / t);
        metrics_set(m, METRIC_PREFILL_MIGRATED_GB, p->mg->total_bytes / 1e9);
    }
    if (loc_store(pr->loc, s->rec, m) || record_metrics(s->rec, m)) return MS_ERR;
    for (int k = 0; k < 2; k++) {
        const inst_t *in = k ? &s->pf : &s->dc;
        if ((k ? s->has_pf : s->has_dc) &&
            record_strategy_metrics(s->rec, s->ops, in->ps, in == pr ? "" : "prefill_"))
            return MS_ERR;
    }
    return MS_OK;
}

int serve_one(const run_spec_t *sp, const place_ops_t *ops, const trace_t *trace, store_t *st,
              metrics_run_t *out) {
    return serve_one_timeline(sp, ops, trace, st, out, NULL);
}

int serve_one_timeline(const run_spec_t *sp, const place_ops_t *ops, const trace_t *trace,
                       store_t *st, metrics_run_t *out, timeline_t *tl) {
    const serve_spec_t *ss = &sp->serve;
    record_t rec = {0};
    srv_t s = {.sp = sp, .ss = ss, .ops = ops, .rec = &rec, .tl = tl};
    memset(out, 0, sizeof *out);
    trace_t *own_dc = NULL, *own_pf = NULL, *ph[PHASE_MAX] = {0}, *mix = NULL;
    int n_ph = trace ? 0 : sp->phases.n;
    req_list_t rl = {0};
    char *text = NULL;
    int rc = MS_ERR;

    if (req_build(&ss->req, sp->seed, &rl)) goto out;
    const trace_t *tdc = trace, *tpf = trace;
    if (n_ph) { /* phases: both instances replay them (docs/config.md) */
        if (ss->prefill_trace_path[0]) {
            ms_err("%s: [serving] prefill_trace and [workload] phases together (phases drive "
                   "both instances; drop prefill_trace)", cfg_where(sp->cfg, SEC, "prefill_trace"));
            goto out;
        }
        for (int i = 0; i < n_ph; i++)
            if (trace_read(sp->phases.p[i].path, &ph[i])) goto out;
        for (int i = 1; i < n_ph; i++)
            if (ph[i]->n_layers != ph[0]->n_layers || ph[i]->n_experts != ph[0]->n_experts) {
                ms_err("%s: phase trace has %d layers x %d experts, the first phase %d x %d "
                       "(string traces of one model)", ph[i]->path, ph[i]->n_layers,
                       ph[i]->n_experts, ph[0]->n_layers, ph[0]->n_experts);
                goto out;
            }
        mix = phase_mix(&sp->phases, ph);
        tdc = tpf = ph[0];
    }
    if (!tdc) {
        if (trace_read(sp->trace_path, &own_dc)) goto out;
        tdc = own_dc;
    }
    if (!tpf) {
        if (ss->prefill_trace_path[0] && ss->instances != SERVE_DECODE) {
            if (trace_read(ss->prefill_trace_path, &own_pf)) goto out;
            tpf = own_pf;
        } else {
            tpf = tdc;
        }
    }
    s.has_pf = ss->instances != SERVE_DECODE;
    s.has_dc = ss->instances != SERVE_PREFILL;
    /* Each instance replays routing from its own generator. */
    if (s.has_dc &&
        inst_init(&s, &s.dc, "decode", 0, &sp->cluster, sp->redundant, tdc, sp->seed, ph, n_ph,
                  mix))
        goto out;
    if (s.has_pf && inst_init(&s, &s.pf, "prefill", 1, &ss->prefill, ss->prefill_redundant, tpf,
                              sp->seed ^ 0x9e3779b97f4a7c15ULL, ph, n_ph, mix))
        goto out;
    inst_t *pr = s.has_dc ? &s.dc : &s.pf;
    pr->primary = 1;
    s.pf.dev_base = s.has_dc ? s.dc.D : 0;
    s.dc.tv = (timeline_view_t){tl, s.dc.dev_base};
    s.pf.tv = (timeline_view_t){tl, s.pf.dev_base};
    s.dc.obs = timeline_observer(&s.dc.tv);
    s.pf.obs = timeline_observer(&s.pf.tv);

    /* The measuring window: from warmup_s to the end of arrivals. */
    s.n = rl.n;
    s.w0 = llround(ss->warmup_s * 1e9);
    if (ss->req.arrival == REQ_CLOSED)
        s.w1 = ss->req.duration_s > 0 ? llround(ss->req.duration_s * 1e9) : ENG_NEVER;
    else if (ss->req.duration_s > 0 && ss->req.arrival != REQ_TRACE &&
             !(ss->req.requests && rl.n >= ss->req.requests))
        s.w1 = llround(ss->req.duration_s * 1e9); /* arrivals were cut by time */
    else
        s.w1 = rl.r[rl.n - 1].arrival_ns;
    if (s.w1 <= s.w0) {
        ms_err("%s: [serving] warmup_s = %g leaves no time before arrivals end at %.3f s (lower "
               "warmup_s)", cfg_where(sp->cfg, SEC, "warmup_s"), ss->warmup_s,
               (double)s.w1 / 1e9);
        goto out;
    }

    char hash[17], plabel[600];
    text = run_config_text(sp->cfg, ops->name, hash);
    store_run_t meta = {.name = sp->name, .strategy = ops->name,
                        .strategy_version = ops->algo_version, .trace = sp->trace_name,
                        .model = sp->model.name, .hardware = pr->c.hw.name,
                        .nodes = pr->c.n_nodes, .devices = pr->D, .seed = sp->seed,
                        .prior = prior_label(&sp->prior, plabel, sizeof plabel)};
    if (record_begin(&rec, st, &meta, text)) goto out;

    s.r = ms_calloc((size_t)s.n, sizeof *s.r);
    for (int64_t i = 0; i < s.n; i++) {
        sreq_t *q = &s.r[i];
        q->arrival_ns = rl.r[i].arrival_ns;
        q->first_ns = q->done_ns = -1;
        q->prompt = rl.r[i].prompt_tokens;
        q->output = rl.r[i].output_tokens;
        q->hit = (int)floor(q->prompt * ss->prefix_hit_rate);
        if (q->hit >= q->prompt) q->hit = q->prompt - 1;
        q->to_compute = q->prompt - q->hit;
        q->next = -1;
    }
    s.pq = ms_malloc((size_t)s.n * sizeof *s.pq);
    s.pact = ms_malloc((size_t)s.n * sizeof *s.pact);
    s.dact = ms_malloc((size_t)s.n * sizeof *s.dact);
    int Dp = s.has_pf ? s.pf.D : 1, Dd = s.has_dc ? s.dc.D : 1;
    s.left = ms_calloc((size_t)Dp, sizeof *s.left);
    s.kv_send_free = ms_calloc((size_t)Dp, sizeof *s.kv_send_free);
    s.kv_recv_free = ms_calloc((size_t)Dd, sizeof *s.kv_recv_free);
    s.dq_head = ms_malloc((size_t)Dd * sizeof *s.dq_head);
    s.dq_tail = ms_malloc((size_t)Dd * sizeof *s.dq_tail);
    for (int d = 0; d < Dd; d++) s.dq_head[d] = s.dq_tail[d] = -1;
    s.dcount = ms_calloc((size_t)Dd, sizeof *s.dcount);
    s.assigned = ms_calloc((size_t)Dd, sizeof *s.assigned);
    s.kv_used = ms_calloc((size_t)Dd, sizeof *s.kv_used);

    s.eng = eng_new();
    s.mtp_rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(s.mtp_rng, (unsigned long)(sp->seed ^ MTP_SEED_SALT));
    if (ss->req.arrival == REQ_CLOSED) {
        for (; s.released < s.n && s.released < ss->req.concurrency; s.released++)
            eng_schedule(s.eng, 0, ev_arrive, &s, s.released);
    } else {
        eng_schedule(s.eng, s.r[0].arrival_ns, ev_arrive, &s, 0);
    }
    s.tty = isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &s.wall0);
    s.wall_last = s.wall0;
    eng_run_until(s.eng, ENG_NEVER);
    progress(&s, eng_now(s.eng), 1);
    if (s.err) goto out;
    if (s.n_done < s.released) {
        ms_err("serving stopped with %lld of %lld requests unfinished (%lld queued for prefill); "
               "this is a bug in the serving loop", (long long)(s.released - s.n_done),
               (long long)s.released,
               (long long)(s.pq_tail - s.pq_head));
        goto out;
    }
    int64_t end = eng_now(s.eng);
    if (s.w1 > end) s.w1 = end;
    in_system(&s, end, 0);
    if (s.w1 <= s.w0) { /* a closed loop ended before warmup_s: measure it all */
        ms_warn("%s: [serving] warmup_s = %g is past the run's end at %.3f s; the figures cover "
                "the whole run (lower warmup_s)", cfg_where(sp->cfg, SEC, "warmup_s"),
                ss->warmup_s, (double)end / 1e9);
        s.w0 = 0;
        s.w1 = end;
        s.area = 0;
        s.win_in = s.has_pf ? s.in_tokens : 0;
        s.win_out = s.dc_tokens;
        for (int64_t i = 0; i < s.released; i++)
            s.area += (double)(s.r[i].done_ns - s.r[i].arrival_ns);
    }
    if (record_results(&s, &out->m, end) || record_commit(&rec)) goto out;
    out->run_id = rec.run_id;
    rc = MS_OK;
out:
    record_abort(&rec);
    eng_free(s.eng);
    if (s.mtp_rng) gsl_rng_free(s.mtp_rng);
    inst_free(&s, &s.dc);
    inst_free(&s, &s.pf);
    free(s.r);
    free(s.pq);
    free(s.pact);
    free(s.dact);
    free(s.left);
    free(s.kv_send_free);
    free(s.kv_recv_free);
    free(s.dq_head);
    free(s.dq_tail);
    free(s.dcount);
    free(s.assigned);
    free(s.kv_used);
    free(text);
    req_list_free(&rl);
    trace_free(own_dc);
    trace_free(own_pf);
    for (int i = 0; i < n_ph; i++) trace_free(ph[i]);
    trace_free(mix);
    return rc;
}
