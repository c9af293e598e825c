/* Tests of the flow-level network: hand-computed max-min rates and finish
 * times, latency, growing demand, hub links, and a randomised comparison
 * against a plain reference (progressive filling of every flow at every
 * event, no fast paths, no components). */
#include <criterion/criterion.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>

#include "eng.h"
#include "net.h"
#include "util.h"

#define G 1e9

typedef struct {
    int64_t done[4096];
    int n;
} log_t;

static void on_done(eng_t *eng, void *ctx, int64_t tag) {
    log_t *lg = ctx;
    lg->done[tag] = eng_now(eng);
    lg->n++;
}

/* One flow: bytes / cap after its latency. */
Test(net, single_flow_and_latency) {
    eng_t *e = eng_new();
    net_t *n = net_new(e);
    int a = net_add_link(n, 1 * G);
    log_t lg = {0};
    net_start(n, 1, &a, NULL, 2 * G, 0, on_done, &lg, 0);
    net_start(n, 1, (int[]){net_add_link(n, 4 * G)}, NULL, 1 * G, 1500, on_done, &lg, 1);
    eng_run_until(e, ENG_NEVER);
    cr_assert_eq(lg.done[0], 2000000000);        /* 2 GB at 1 GB/s */
    cr_assert_eq(lg.done[1], 1500 + 250000000);  /* latency, then 1 GB at 4 GB/s */
    net_free(n);
    eng_free(e);
}

/* Three flows over two links (the classic example): L1 = 1 GB/s carries A
 * and B, L2 = 2 GB/s carries B and C. Progressive filling: L1 saturates
 * first at 0.5 (two flows), fixing A = B = 0.5; C gets 2 - 0.5 = 1.5.
 * Sizes A = 1, B = 2, C = 6 GB: at t = 2 s A is done (1 / 0.5), B has 1
 * left, C 6 - 3 = 3. Re-solve: L1 has B alone (level 1), L2 has B and C
 * (level 1): B = C = 1 GB/s; B done at t = 3. C then has 2 left, alone at
 * 2 GB/s: done at t = 4. */
Test(net, three_flows_two_links) {
    eng_t *e = eng_new();
    net_t *n = net_new(e);
    int l1 = net_add_link(n, 1 * G), l2 = net_add_link(n, 2 * G);
    log_t lg = {0};
    int A = net_start(n, 1, (int[]){l1}, NULL, 1 * G, 0, on_done, &lg, 0);
    int B = net_start(n, 2, (int[]){l1, l2}, NULL, 2 * G, 0, on_done, &lg, 1);
    int C = net_start(n, 1, (int[]){l2}, NULL, 6 * G, 0, on_done, &lg, 2);
    eng_run_until(e, 1); /* activations and the first solve */
    cr_assert_float_eq(net_rate(n, A), 0.5 * G, 1);
    cr_assert_float_eq(net_rate(n, B), 0.5 * G, 1);
    cr_assert_float_eq(net_rate(n, C), 1.5 * G, 1);
    eng_run_until(e, ENG_NEVER);
    cr_assert_eq(lg.done[0], 2000000000);
    cr_assert_eq(lg.done[1], 3000000000);
    cr_assert_eq(lg.done[2], 4000000000);
    net_free(n);
    eng_free(e);
}

/* Paired links (the two directions of one link, duplex 0.8), 1 GB/s each.
 * X (1 GB) goes one way from t = 0; Y (3 GB) the other way after 0.5 s of
 * latency. X runs alone at 1 GB/s for 0.5 s (0.5 GB), then both at 0.8:
 * X's last 0.5 GB take 0.625 s, done at 1.125 s; Y has moved 0.5 GB by
 * then and its other 2.5 GB run at the full 1 GB/s again: done at 3.625 s.
 * An unpaired link beside them is never derated. */
Test(net, two_way_derating) {
    eng_t *e = eng_new();
    net_t *n = net_new(e);
    int a = net_add_link(n, 1 * G), b = net_add_link(n, 1 * G), c = net_add_link(n, 1 * G);
    net_pair_links(n, a, b, 0.8);
    log_t lg = {0};
    int X = net_start(n, 1, &a, NULL, 1 * G, 0, on_done, &lg, 0);
    int Y = net_start(n, 1, &b, NULL, 3 * G, 500000000, on_done, &lg, 1);
    net_start(n, 1, &c, NULL, 1 * G, 0, on_done, &lg, 2);
    eng_run_until(e, 1);
    cr_assert_float_eq(net_rate(n, X), 1 * G, 1, "alone: full capacity");
    eng_run_until(e, 500000001);
    cr_assert_float_eq(net_rate(n, X), 0.8 * G, 1, "both directions: derated");
    cr_assert_float_eq(net_rate(n, Y), 0.8 * G, 1);
    eng_run_until(e, ENG_NEVER);
    cr_assert_eq(lg.done[0], 1125000000);
    cr_assert_eq(lg.done[1], 3625000000);
    cr_assert_eq(lg.done[2], 1000000000);
    net_free(n);
    eng_free(e);
}

/* Weights: flow 1 crosses A (cap 1, weight 1) and B (cap 1, weight 0.5);
 * flow 2 crosses B alone. Raising both rates x: A allows x <= 1, B allows
 * 0.5x + x <= 1, x <= 2/3. B saturates first: both flows get 2/3. */
Test(net, weighted_links) {
    eng_t *e = eng_new();
    net_t *n = net_new(e);
    int a = net_add_link(n, 1 * G), b = net_add_link(n, 1 * G);
    log_t lg = {0};
    int f1 = net_start(n, 2, (int[]){a, b}, (double[]){1, 0.5}, 1 * G, 0, on_done, &lg, 0);
    int f2 = net_start(n, 1, (int[]){b}, NULL, 1 * G, 0, on_done, &lg, 1);
    eng_run_until(e, 1);
    cr_assert_float_eq(net_rate(n, f1), 2 * G / 3, 1);
    cr_assert_float_eq(net_rate(n, f2), 2 * G / 3, 1);
    eng_run_until(e, ENG_NEVER);
    cr_assert_eq(lg.n, 2);
    net_free(n);
    eng_free(e);
}

/* Max-min is not work-conserving for the busiest port: port S carries two
 * flows of 1 GB (to R1 and R2); R1 and R2 each also take two 0.5 GB flows
 * from idle senders. Every port carries 2 GB at 1 GB/s, a 2 s lower bound,
 * but R1 and R2 have three flows each (1/3 GB/s), so S runs at 2/3 until
 * t = 1.5 s, then the two 0.5 GB left at 0.5 each: done at 2.5 s. This is
 * the contention the analytic mode (bytes / bandwidth of the busiest
 * port) cannot see. */
Test(net, maxmin_slower_than_port_bound) {
    eng_t *e = eng_new();
    net_t *n = net_new(e);
    int S = net_add_link(n, G), R1 = net_add_link(n, G), R2 = net_add_link(n, G);
    log_t lg = {0};
    net_start(n, 2, (int[]){S, R1}, NULL, 1 * G, 0, on_done, &lg, 0);
    net_start(n, 2, (int[]){S, R2}, NULL, 1 * G, 0, on_done, &lg, 1);
    for (int i = 0; i < 2; i++) {
        net_start(n, 2, (int[]){net_add_link(n, G), R1}, NULL, 0.5 * G, 0, on_done, &lg, 2 + i);
        net_start(n, 2, (int[]){net_add_link(n, G), R2}, NULL, 0.5 * G, 0, on_done, &lg, 4 + i);
    }
    eng_run_until(e, ENG_NEVER);
    for (int i = 2; i < 6; i++) cr_assert_eq(lg.done[i], 1500000000);
    cr_assert_eq(lg.done[0], 2500000000);
    cr_assert_eq(lg.done[1], 2500000000);
    net_free(n);
    eng_free(e);
}

/* Growing demand: bytes added to a running flow delay its finish without
 * changing its rate. */
static net_t *grow_net;
static int grow_flow;
static void add_more(eng_t *eng, void *ctx, int64_t arg) {
    (void)eng;
    (void)ctx;
    cr_assert_eq(net_add_bytes(grow_net, grow_flow, (double)arg), 1);
}

Test(net, growing_demand) {
    eng_t *e = eng_new();
    net_t *n = net_new(e);
    int a = net_add_link(n, 1 * G);
    log_t lg = {0};
    grow_net = n;
    grow_flow = net_start(n, 1, &a, NULL, 1 * G, 0, on_done, &lg, 0);
    eng_schedule(e, 500000000, add_more, NULL, (int64_t)(1 * G)); /* at 0.5 s, +1 GB */
    eng_run_until(e, ENG_NEVER);
    cr_assert_eq(lg.done[0], 2000000000);
    net_free(n);
    eng_free(e);
}

/* A link with many flows (a hub) that is the bottleneck: 40 flows, each
 * alone on its own 1 GB/s port, share a 20 GB/s link: 0.5 GB/s each. With
 * the shared link at 100 GB/s each runs at its port's 1 GB/s. */
Test(net, hub_link_bottleneck_or_not) {
    for (int big = 0; big < 2; big++) {
        eng_t *e = eng_new();
        net_t *n = net_new(e);
        int hub = net_add_link(n, (big ? 100 : 20) * G);
        log_t lg = {0};
        int ids[40];
        for (int i = 0; i < 40; i++)
            ids[i] = net_start(n, 2, (int[]){net_add_link(n, G), hub}, NULL, (1 + i % 2) * G,
                               0, on_done, &lg, i);
        eng_run_until(e, 1);
        for (int i = 0; i < 40; i++)
            cr_assert_float_eq(net_rate(n, ids[i]), (big ? 1.0 : 0.5) * G, 1e-3 * G);
        eng_run_until(e, ENG_NEVER);
        /* small hub: the 1 GB flows finish at 2 s; the 2 GB ones then have 1
         * GB left, 20 flows share 20 GB/s but ports cap them at 1: 3 s */
        cr_assert_eq(lg.done[0], big ? 1000000000 : 2000000000);
        cr_assert_eq(lg.done[1], big ? 2000000000 : 3000000000);
        net_free(n);
        eng_free(e);
    }
}

/* A flow over no links finishes after its latency. */
Test(net, no_links) {
    eng_t *e = eng_new();
    net_t *n = net_new(e);
    log_t lg = {0};
    net_start(n, 0, NULL, NULL, 123, 777, on_done, &lg, 0);
    eng_run_until(e, ENG_NEVER);
    cr_assert_eq(lg.done[0], 777);
    net_free(n);
    eng_free(e);
}

/* ---- reference: every flow re-solved at every event */

typedef struct {
    int nl, links[8];
    double w[8], bytes, rem, rate;
    int64_t start;
    int active, done;
} rflow_t;

static void ref_solve(rflow_t *f, int nf, const double *cap, int nlinks) {
    double rc[64], ws[64];
    int fixed[256] = {0};
    for (int l = 0; l < nlinks; l++) rc[l] = cap[l];
    for (;;) {
        for (int l = 0; l < nlinks; l++) ws[l] = 0;
        int any = 0;
        for (int i = 0; i < nf; i++)
            if (f[i].active && !fixed[i]) {
                any = 1;
                for (int j = 0; j < f[i].nl; j++) ws[f[i].links[j]] += f[i].w[j];
            }
        if (!any) return;
        double lv = HUGE_VAL;
        int best = -1;
        for (int l = 0; l < nlinks; l++)
            if (ws[l] > 0 && rc[l] / ws[l] < lv) {
                lv = rc[l] / ws[l];
                best = l;
            }
        for (int i = 0; i < nf; i++) {
            if (!f[i].active || fixed[i]) continue;
            int on = 0;
            for (int j = 0; j < f[i].nl; j++) on |= f[i].links[j] == best;
            if (!on) continue;
            fixed[i] = 1;
            f[i].rate = lv;
            for (int j = 0; j < f[i].nl; j++) rc[f[i].links[j]] -= f[i].w[j] * lv;
        }
    }
}

/* Finish times of the reference, as doubles of ns. */
static void ref_run(rflow_t *f, int nf, const double *cap, int nlinks, double *fin) {
    double t = 0;
    for (;;) {
        for (int i = 0; i < nf; i++) f[i].active = !f[i].done && f[i].start <= t;
        ref_solve(f, nf, cap, nlinks);
        double next = HUGE_VAL;
        for (int i = 0; i < nf; i++) {
            if (f[i].done) continue;
            if (!f[i].active) next = fmin(next, (double)f[i].start);
            else next = fmin(next, t + f[i].rem / f[i].rate * 1e9);
        }
        if (next == HUGE_VAL) return;
        for (int i = 0; i < nf; i++)
            if (f[i].active) f[i].rem -= f[i].rate * (next - t) * 1e-9;
        t = next;
        for (int i = 0; i < nf; i++)
            if (f[i].active && f[i].rem <= 1e-6 * f[i].bytes) {
                f[i].done = 1;
                fin[i] = t;
            }
    }
}

/* Random networks, some links shared by more than 32 flows (hubs), random
 * start times: the engine's finish times match the reference within the
 * nanosecond rounding of each re-solve. */
Test(net, random_against_reference) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 7);
    for (int trial = 0; trial < 40; trial++) {
        int nlinks = 4 + (int)gsl_rng_uniform_int(r, 12), nf = 10 + (int)gsl_rng_uniform_int(r, 70);
        double cap[64];
        for (int l = 0; l < nlinks; l++) cap[l] = (0.5 + gsl_rng_uniform(r) * 4) * G;
        rflow_t f[256];
        for (int i = 0; i < nf; i++) {
            rflow_t *x = &f[i];
            x->nl = 1 + (int)gsl_rng_uniform_int(r, 3);
            for (int j = 0; j < x->nl; j++) {
                int l, dup;
                do {
                    l = (int)gsl_rng_uniform_int(r, nlinks);
                    dup = 0;
                    for (int q = 0; q < j; q++) dup |= x->links[q] == l;
                } while (dup);
                x->links[j] = l;
                x->w[j] = gsl_rng_uniform(r) < 0.5 ? 1.0 : 0.2 + 0.8 * gsl_rng_uniform(r);
            }
            x->bytes = x->rem = (0.01 + gsl_rng_uniform(r)) * G;
            x->start = trial % 2 ? (int64_t)(gsl_rng_uniform(r) * 5e8) : 0;
            x->done = 0;
        }
        eng_t *e = eng_new();
        net_t *n = net_new(e);
        for (int l = 0; l < nlinks; l++) net_add_link(n, cap[l]);
        log_t *lg = ms_calloc(1, sizeof *lg);
        for (int i = 0; i < nf; i++)
            net_start(n, f[i].nl, f[i].links, f[i].w, f[i].bytes, f[i].start, on_done, lg, i);
        eng_run_until(e, ENG_NEVER);
        double fin[256];
        ref_run(f, nf, cap, nlinks, fin);
        cr_assert_eq(lg->n, nf);
        for (int i = 0; i < nf; i++)
            cr_assert(fabs((double)lg->done[i] - fin[i]) <= 2.0 * nf + 1e-6 * fin[i],
                      "trial %d flow %d: net %lld ns, reference %.1f ns", trial, i,
                      (long long)lg->done[i], fin[i]);
        free(lg);
        net_free(n);
        eng_free(e);
    }
    gsl_rng_free(r);
}

/* Max-min sharing inside one 384-device scale-up domain (CloudMatrix384's
 * UB, 910C dies: 196 GB/s x 0.8 = 156.8 GB/s a port and direction), with
 * each device's out and in ports as the step builds them. Four flows of
 * B = 1.568 MB (10 us at a full port): A 1 -> 383 (3B), P 1 -> 200 (B),
 * C 2 -> 383 (2B), Q 5 -> 6 (B). Out-port 1 carries A and P, in-port 383
 * carries A and C: both saturate at half a port, so A = P = C = c/2; Q is
 * alone at c. After 2 us of latency: Q ends at 10 us; P (B at c/2) at 20
 * us; then A still shares in-port 383 with C, so nothing changes until C
 * (2B at c/2) ends at 40 us, A having sent 2B; A's last B alone at c: 50
 * us. */
Test(net, maxmin_in_a_384_device_domain) {
    eng_t *e = eng_new();
    net_t *n = net_new(e);
    double c = 196e9 * 0.8, B = 1.568e6;
    int out0 = net_n_links(n);
    for (int d = 0; d < 384; d++) net_add_link(n, c);
    int in0 = net_n_links(n);
    for (int d = 0; d < 384; d++) net_add_link(n, c);
    for (int d = 0; d < 384; d++) net_pair_links(n, out0 + d, in0 + d, 1);
    log_t lg = {0};
    int A = net_start(n, 2, (int[]){out0 + 1, in0 + 383}, NULL, 3 * B, 2000, on_done, &lg, 0);
    int P = net_start(n, 2, (int[]){out0 + 1, in0 + 200}, NULL, B, 2000, on_done, &lg, 1);
    int C = net_start(n, 2, (int[]){out0 + 2, in0 + 383}, NULL, 2 * B, 2000, on_done, &lg, 2);
    int Q = net_start(n, 2, (int[]){out0 + 5, in0 + 6}, NULL, B, 2000, on_done, &lg, 3);
    eng_run_until(e, 2001);
    cr_assert_float_eq(net_rate(n, A), c / 2, 1);
    cr_assert_float_eq(net_rate(n, P), c / 2, 1);
    cr_assert_float_eq(net_rate(n, C), c / 2, 1);
    cr_assert_float_eq(net_rate(n, Q), c, 1);
    eng_run_until(e, ENG_NEVER);
    cr_assert_eq(lg.n, 4);
    cr_assert(llabs(lg.done[3] - 12000) <= 1, "Q %lld", (long long)lg.done[3]);
    cr_assert(llabs(lg.done[1] - 22000) <= 1, "P %lld", (long long)lg.done[1]);
    cr_assert(llabs(lg.done[2] - 42000) <= 1, "C %lld", (long long)lg.done[2]);
    cr_assert(llabs(lg.done[0] - 52000) <= 1, "A %lld", (long long)lg.done[0]);
    net_free(n);
    eng_free(e);
}
