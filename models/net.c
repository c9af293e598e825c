/* net: max-min fair flows by progressive filling, on the event engine.
 *
 * Solve (one connected component): every unfixed flow's rate rises
 * together; link l saturates at level (cap_l - fixed use) / (sum of the
 * weights of its unfixed flows); the link with the lowest level fixes all
 * its unfixed flows at that level (their bottleneck), their use is taken off
 * every other link they cross, and so on until every flow is fixed. Levels
 * only rise, so the links sit in a lazy min-heap: a popped entry whose link
 * has since risen is pushed back with its new level. Among links within
 * 1e-9 of the same level, the one with fewer flows goes first, so a stream
 * that is alone on its own port is bottlenecked there and its completion
 * leaves the shared ports' flows untouched (the fast path below).
 *
 * Completion: the earliest finish time among flows sits in a heap (lazy,
 * with versions); one engine event waits for its top. A finishing flow
 * leaves its links; only if one of them is another flow's bottleneck is
 * the component solved again, at the same instant (one solve however many
 * flows start or finish at that instant). */
#include "net.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { F_FREE, F_WAIT, F_ACTIVE, F_DONE };

typedef struct {
    int link;  /* link id */
    int pos;   /* index of this incidence in the link's flow list */
    double w;  /* share of the flow's rate used on the link */
} inc_t;

typedef struct {
    inc_t *inc;
    int n_inc, cap_inc;
    double rem;      /* bytes left at t_last */
    double rate;     /* bytes/s */
    double prev;     /* rate before the current solve */
    int64_t t_last;
    int state, bneck, fixed;
    int64_t fin;     /* finish time at the current rate */
    int hpos;        /* index in the completion heap, -1 if not in it */
    uint32_t stamp;  /* component search mark */
    net_done_fn fn;
    void *ctx;
    int64_t tag;
    int next_free;
} flow_t;

/* A flow on a link: its id and the index of its incidence there (one
 * array, so taking a flow off touches one entry). */
typedef struct {
    int f, i;
} lfl_t;

typedef struct {
    double cap;
    lfl_t *fl;       /* flows on the link */
    int n, capn;
    int nb;          /* flows whose bottleneck this link is */
    double load;     /* sum of weight * rate of the flows on it */
    uint32_t stamp, hstamp;
    double rcap, wsum; /* solve scratch: capacity left, weights of unfixed flows */
    int unf;           /* unfixed flows on the link */
    int pair;          /* the other direction of the same link, -1 if none */
    double duplex;     /* share of cap kept while the pair carries flows too */
    double ccap;       /* the capacity offered now (lcap), kept as flows come and go */
} link_t;

typedef struct {
    double lv;
    int l, unf;
} lent_t;

/* A completion heap entry: the flow's finish time beside its id, so that
 * sifting compares entries without reading the flows. */
typedef struct {
    int64_t fin;
    int id;
} hent_t;

struct net {
    eng_t *eng;
    link_t *lk;
    int nl, capl;
    flow_t *fl;
    int nf, capf, free_head;
    hent_t *hp;        /* completion heap */
    size_t hn, hcap;
    eng_id_t cev;      /* pending completion event */
    int64_t cev_t;
    int cev_live, solve_pending;
    int *dirty_f, *dirty_l;
    size_t ndf, capdf, ndl, capdl;
    uint32_t stamp;
    int *cf, *cl, *hub; /* component flows and links, hub links met */
    size_t capcf, capcl, caphub;
    lent_t *lh;
    size_t lhn, lhcap;
    int *done;
    size_t nd, capd;
    size_t unfixed;    /* solve: flows of the component not fixed yet */
    net_stats_t st;
};

/* Makes room for want elements in p (capacity cap), at once. */
#define RESERVE(p, cap, want)                                        \
    do {                                                             \
        if ((cap) < (want)) {                                        \
            (cap) = (want);                                          \
            (p) = ms_realloc((p), (size_t)(cap) * sizeof *(p));      \
        }                                                            \
    } while (0)

#define GROW(p, n, cap)                                              \
    do {                                                             \
        if ((n) >= (cap)) {                                          \
            (cap) = (cap) ? 2 * (cap) : 64;                          \
            (p) = ms_realloc((p), (size_t)(cap) * sizeof *(p));      \
        }                                                            \
    } while (0)

net_t *net_new(eng_t *eng) {
    net_t *n = ms_calloc(1, sizeof *n);
    n->eng = eng;
    n->free_head = -1;
    return n;
}

void net_free(net_t *n) {
    if (!n) return;
    for (int i = 0; i < n->nl; i++) {
        free(n->lk[i].fl);
    }
    for (int i = 0; i < n->nf; i++) free(n->fl[i].inc);
    free(n->lk);
    free(n->fl);
    free(n->hp);
    free(n->dirty_f);
    free(n->dirty_l);
    free(n->cf);
    free(n->cl);
    free(n->hub);
    free(n->lh);
    free(n->done);
    free(n);
}

int net_add_link(net_t *n, double cap) {
    GROW(n->lk, n->nl, n->capl);
    link_t *l = &n->lk[n->nl];
    memset(l, 0, sizeof *l);
    l->cap = cap;
    l->ccap = cap;
    l->pair = -1;
    l->duplex = 1;
    return n->nl++;
}

/* The capacity a link offers now: derated while both directions of a
 * paired link carry flows. Kept in ccap (set_ccap on every change of what
 * it depends on), since the solver and fast_add read it once an
 * incidence. */
static void set_ccap(const net_t *n, link_t *l) {
    l->ccap = l->pair >= 0 && l->n && n->lk[l->pair].n ? l->cap * l->duplex : l->cap;
}

static double lcap(const net_t *n, const link_t *l) {
    (void)n;
    return l->ccap;
}

void net_pair_links(net_t *n, int a, int b, double duplex) {
    n->lk[a].pair = b;
    n->lk[b].pair = a;
    n->lk[a].duplex = n->lk[b].duplex = duplex;
    set_ccap(n, &n->lk[a]);
    set_ccap(n, &n->lk[b]);
}

/* A link whose flow count went 0 -> 1 or 1 -> 0 changes its pair's
 * capacity when the pair is loaded: the pair's flows are solved again. */
static void pair_toggled(net_t *n, link_t *l) {
    /* both directions share duplex; at 1 their capacity never changes */
    if (l->pair < 0 || l->duplex == 1) return;
    set_ccap(n, l);
    set_ccap(n, &n->lk[l->pair]);
    if (!n->lk[l->pair].n) return;
    GROW(n->dirty_l, n->ndl, n->capdl);
    n->dirty_l[n->ndl++] = l->pair;
}

int net_n_links(const net_t *n) { return n->nl; }

void net_set_cap(net_t *n, int link, double cap) {
    n->lk[link].cap = cap;
    set_ccap(n, &n->lk[link]);
}

void net_clear(net_t *n) {
    n->free_head = -1;
    for (int i = n->nf - 1; i >= 0; i--) {
        n->fl[i].state = F_FREE;
        n->fl[i].next_free = n->free_head;
        n->free_head = i;
    }
    for (int i = 0; i < n->nl; i++) {
        n->lk[i].n = n->lk[i].nb = 0;
        n->lk[i].load = 0;
        n->lk[i].ccap = n->lk[i].cap; /* no link carries a flow */
    }
    n->hn = n->ndf = n->ndl = 0;
    n->cev_live = n->solve_pending = 0;
}

net_stats_t net_stats(const net_t *n) { return n->st; }

double net_rate(const net_t *n, int f) {
    return n->fl[f].state == F_ACTIVE ? n->fl[f].rate : 0;
}

/* ---- completion heap: an indexed binary heap of flows by (finish time,
 * flow id), one entry a flow, moved in place when its finish changes (so
 * ties are deterministic and re-solves leave no stale entries). */

static inline int hless(hent_t x, hent_t y) {
    return x.fin < y.fin || (x.fin == y.fin && x.id < y.id);
}

static void hplace(net_t *n, size_t i, hent_t e) {
    n->hp[i] = e;
    n->fl[e.id].hpos = (int)i;
}

static void hup(net_t *n, size_t i) {
    hent_t e = n->hp[i];
    while (i) {
        size_t p = (i - 1) / 2;
        if (!hless(e, n->hp[p])) break;
        hplace(n, i, n->hp[p]);
        i = p;
    }
    hplace(n, i, e);
}

static void hdown(net_t *n, size_t i) {
    hent_t e = n->hp[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n->hn) break;
        if (c + 1 < n->hn && hless(n->hp[c + 1], n->hp[c])) c++;
        if (!hless(n->hp[c], e)) break;
        hplace(n, i, n->hp[c]);
        i = c;
    }
    hplace(n, i, e);
}

/* Sets flow id's finish time, inserting or moving its entry. */
static void hset(net_t *n, int id, int64_t fin) {
    flow_t *f = &n->fl[id];
    int64_t old = f->fin;
    f->fin = fin;
    if (f->hpos < 0) {
        GROW(n->hp, n->hn, n->hcap);
        n->hp[n->hn] = (hent_t){fin, id};
        f->hpos = (int)n->hn++;
        hup(n, (size_t)f->hpos);
        return;
    }
    n->hp[f->hpos].fin = fin;
    if (fin < old) hup(n, (size_t)f->hpos);
    else hdown(n, (size_t)f->hpos);
}

static int hpop(net_t *n) {
    int top = n->hp[0].id;
    n->fl[top].hpos = -1;
    if (--n->hn) {
        hplace(n, 0, n->hp[n->hn]);
        hdown(n, 0);
    }
    return top;
}

static void ev_complete(eng_t *eng, void *ctx, int64_t arg);
static void ev_solve(eng_t *eng, void *ctx, int64_t arg);

/* Keeps one engine event at the earliest finish time. */
static void reschedule(net_t *n) {
    if (!n->hn) return;
    int64_t t = n->hp[0].fin;
    if (n->cev_live && n->cev_t <= t) return;
    if (n->cev_live) eng_cancel(n->eng, n->cev);
    n->cev = eng_schedule(n->eng, t, ev_complete, n, 0);
    n->cev_t = t;
    n->cev_live = 1;
}

static void settle(flow_t *f, int64_t now) {
    if (f->rate > 0 && now > f->t_last) {
        f->rem -= f->rate * (double)(now - f->t_last) * 1e-9;
        if (f->rem < 0) f->rem = 0;
    }
    f->t_last = now;
}

/* (int64_t)ceil(x), without a libm call where the conversion is exact: a
 * non-negative x below 2^63 (above 2^53 every double is a whole number). */
static inline int64_t ceil_i64(double x) {
    if (x >= 0 && x < 9.2e18) {
        int64_t t = (int64_t)x;
        return t + ((double)t < x);
    }
    return (int64_t)ceil(x);
}

static void push_finish(net_t *n, int id, int64_t now) {
    flow_t *f = &n->fl[id];
    if (f->rate <= 0) return;
    hset(n, id, now + ceil_i64(f->rem / f->rate * 1e9));
}

static void request_solve(net_t *n) {
    if (n->solve_pending) return;
    n->solve_pending = 1;
    eng_schedule(n->eng, eng_now(n->eng), ev_solve, n, 0);
}

/* ---- flows */

int net_start(net_t *n, int n_links, const int *links, const double *w, double bytes,
              int64_t latency_ns, net_done_fn fn, void *ctx, int64_t tag);

static void ev_activate(eng_t *eng, void *ctx, int64_t arg);

static int flow_get(net_t *n) {
    if (n->free_head >= 0) {
        int id = n->free_head;
        n->free_head = n->fl[id].next_free;
        return id;
    }
    GROW(n->fl, n->nf, n->capf);
    memset(&n->fl[n->nf], 0, sizeof n->fl[n->nf]);
    return n->nf++;
}

static void flow_put(net_t *n, int id) {
    n->fl[id].state = F_FREE;
    n->fl[id].next_free = n->free_head;
    n->free_head = id;
}

int net_start(net_t *n, int n_links, const int *links, const double *w, double bytes,
              int64_t latency_ns, net_done_fn fn, void *ctx, int64_t tag) {
    int id = flow_get(n);
    flow_t *f = &n->fl[id];
    if (n_links > f->cap_inc) {
        f->cap_inc = n_links;
        f->inc = ms_realloc(f->inc, (size_t)n_links * sizeof *f->inc);
    }
    f->n_inc = n_links;
    for (int i = 0; i < n_links; i++)
        f->inc[i] = (inc_t){.link = links[i], .pos = -1, .w = w ? w[i] : 1.0};
    f->rem = bytes > 0 ? bytes : 0;
    f->rate = 0;
    f->state = F_WAIT;
    f->bneck = -1;
    f->hpos = -1;
    f->fn = fn;
    f->ctx = ctx;
    f->tag = tag;
    n->st.flows++;
    eng_after(n->eng, latency_ns > 0 ? latency_ns : 0, ev_activate, n, id);
    return id;
}

int net_add_bytes(net_t *n, int id, double bytes) {
    flow_t *f = &n->fl[id];
    if (f->state == F_WAIT) {
        f->rem += bytes;
        return 1;
    }
    if (f->state != F_ACTIVE) return 0;
    int64_t now = eng_now(n->eng);
    settle(f, now);
    f->rem += bytes;
    if (f->rate > 0) {
        push_finish(n, id, now);
        reschedule(n);
    }
    return 1;
}

static void finish_cb(net_t *n, int id) {
    GROW(n->done, n->nd, n->capd);
    n->done[n->nd++] = id;
}

/* Runs the callbacks of finished flows, freeing each before its callback so
 * the callback may start flows that reuse the handle. */
static void run_done(net_t *n) {
    for (size_t i = 0; i < n->nd; i++) {
        flow_t *f = &n->fl[n->done[i]];
        net_done_fn fn = f->fn;
        void *ctx = f->ctx;
        int64_t tag = f->tag;
        flow_put(n, n->done[i]);
        if (fn) fn(n->eng, ctx, tag);
    }
    n->nd = 0;
}

/* A new flow that fits in the spare capacity of its links leaves the
 * max-min allocation of the others as it is: it takes r = min over its
 * links of spare / weight, which saturates its tightest link l*; that is a
 * valid bottleneck for it if no other flow on l* runs faster than r, and no
 * other flow's bottleneck changes, since the flow crosses no saturated link
 * (r > 0). Otherwise (or with a solve pending at this instant) the
 * component is solved again. ev_activate finds r and l* (best) as it puts
 * the flow on its links; sat: some link had no spare capacity. */
static int fast_add(net_t *n, int id, double r, int best, int sat) {
    if (n->solve_pending || n->ndf || n->ndl || sat) return 0;
    flow_t *f = &n->fl[id];
    const link_t *b = &n->lk[best];
    for (int i = 0; i < b->n; i++)
        if (b->fl[i].f != id && n->fl[b->fl[i].f].rate > r * (1 + 1e-9)) return 0;
    f->rate = r;
    f->bneck = best;
    n->lk[best].nb++;
    for (int i = 0; i < f->n_inc; i++) n->lk[f->inc[i].link].load += f->inc[i].w * r;
    n->st.fast_add++;
    push_finish(n, id, eng_now(n->eng));
    reschedule(n);
    return 1;
}

static void ev_activate(eng_t *eng, void *ctx, int64_t arg) {
    net_t *n = ctx;
    int id = (int)arg;
    flow_t *f = &n->fl[id];
    f->state = F_ACTIVE;
    f->t_last = eng_now(eng);
    if (f->n_inc == 0) {
        finish_cb(n, id);
        run_done(n);
        return;
    }
    /* One pass puts the flow on its links and finds fast_add's r and l*.
     * A link's capacity read here is its final one whenever fast_add can
     * go ahead: a later incidence that changes it (the flow crossing both
     * directions of a derated pair) marks that pair dirty, which sends the
     * flow to a solve. */
    double r = HUGE_VAL;
    int best = -1, sat = 0;
    for (int i = 0; i < f->n_inc; i++) {
        link_t *l = &n->lk[f->inc[i].link];
        if (l->n == l->capn) {
            l->capn = l->capn ? 2 * l->capn : 8;
            l->fl = ms_realloc(l->fl, (size_t)l->capn * sizeof *l->fl);
        }
        f->inc[i].pos = l->n;
        l->fl[l->n] = (lfl_t){id, i};
        if (l->n++ == 0) pair_toggled(n, l);
        if (sat) continue;
        double cap = l->ccap, spare = cap - l->load;
        if (spare <= 1e-9 * cap) {
            sat = 1;
            continue;
        }
        double v = spare / f->inc[i].w;
        if (v < r) {
            r = v;
            best = f->inc[i].link;
        }
    }
    /* a link newly loaded while its pair is (both derated) is no fast add */
    if (fast_add(n, id, r, best, sat)) return;
    GROW(n->dirty_f, n->ndf, n->capdf);
    n->dirty_f[n->ndf++] = id;
    request_solve(n);
}

/* Takes a finished flow off its links; marks for a solve the links where
 * another flow had its bottleneck. */
static void leave_links(net_t *n, int id) {
    flow_t *f = &n->fl[id];
    for (int i = 0; i < f->n_inc; i++) {
        int li = f->inc[i].link;
        link_t *l = &n->lk[li];
        int p = f->inc[i].pos, last = --l->n;
        if (p != last) {
            lfl_t e = l->fl[last];
            l->fl[p] = e;
            n->fl[e.f].inc[e.i].pos = p;
        }
        l->load -= f->inc[i].w * f->rate;
        if (!l->n) pair_toggled(n, l);
        if (l->nb - (f->bneck == li) > 0) {
            GROW(n->dirty_l, n->ndl, n->capdl);
            n->dirty_l[n->ndl++] = li;
        }
    }
    if (f->bneck >= 0) n->lk[f->bneck].nb--;
}

static void ev_complete(eng_t *eng, void *ctx, int64_t arg) {
    (void)arg;
    net_t *n = ctx;
    int64_t now = eng_now(eng);
    n->cev_live = 0;
    size_t dirty0 = n->ndl;
    while (n->hn && n->hp[0].fin <= now) {
        int id = hpop(n);
        leave_links(n, id);
        n->fl[id].state = F_DONE; /* no longer competing; freed in run_done */
        finish_cb(n, id);
    }
    if (n->ndl == dirty0) n->st.fast_done += n->nd;
    if (n->ndl) request_solve(n);
    run_done(n);
    reschedule(n);
}

/* ---- solve */

static int lless(const lent_t *a, const lent_t *b) {
    double tol = 1e-9 * (a->lv > b->lv ? a->lv : b->lv);
    if (a->lv < b->lv - tol) return 1;
    if (b->lv < a->lv - tol) return 0;
    if (a->unf != b->unf) return a->unf < b->unf;
    return a->l < b->l;
}

/* The heap holds at most one entry a component link (solve sizes it). */
static void lpush(net_t *n, lent_t e) {
    size_t i = n->lhn++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!lless(&e, &n->lh[p])) break;
        n->lh[i] = n->lh[p];
        i = p;
    }
    n->lh[i] = e;
}

static lent_t lpop(net_t *n) {
    lent_t top = n->lh[0], x = n->lh[--n->lhn];
    size_t i = 0, m = n->lhn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && lless(&n->lh[c + 1], &n->lh[c])) c++;
        if (!lless(&n->lh[c], &x)) break;
        n->lh[i] = n->lh[c];
        i = c;
    }
    if (m) n->lh[i] = x;
    return top;
}

static double level(const link_t *l) { return l->wsum > 0 ? l->rcap / l->wsum : HUGE_VAL; }

/* A link joins a solve's component: all its capacity to share, no weights
 * yet, and no use (every flow on it is in the component). */
static void link_init(link_t *l) {
    l->rcap = l->ccap;
    l->wsum = 0;
    l->unf = 0;
    l->load = 0;
}

/* Collects the components of the dirty flows and links into cf / cl.
 * Unless full, a link with more than HUB flows reached from a flow is not
 * expanded but listed in hub: such links (the token side of a phase) join
 * every stream of a phase into one component although they are seldom the
 * bottleneck; the solve goes without them, then checks them. The same pass
 * readies the solve: a flow is settled and its weights go to its component
 * links (a hub loses the flow's use, added back at its new rate by fix())
 * as it is reached, in cf order, so each link's sums come out as one pass
 * over cf after the search would make them. */
#define HUB 32
static void component(net_t *n, int full, int first, int64_t now, size_t *ncf, size_t *ncl,
                      size_t *nhub) {
    uint32_t s = ++n->stamp;
    /* a component holds each flow and link at most once: sized up front,
     * not checked per element */
    RESERVE(n->cf, n->capcf, (size_t)n->nf);
    RESERVE(n->cl, n->capcl, (size_t)n->nl);
    RESERVE(n->hub, n->caphub, (size_t)n->nl);
    size_t a = 0, b = 0, h = 0, pf = 0, pl = 0;
    for (size_t i = 0; i < n->ndf; i++) {
        flow_t *f = &n->fl[n->dirty_f[i]];
        if (f->state != F_ACTIVE || f->stamp == s) continue;
        f->stamp = s;
        n->cf[a++] = n->dirty_f[i];
    }
    for (size_t i = 0; i < n->ndl; i++) {
        link_t *l = &n->lk[n->dirty_l[i]];
        if (l->stamp == s) continue;
        l->stamp = s;
        link_init(l);
        n->cl[b++] = n->dirty_l[i];
    }
    while (pf < a || pl < b) {
        while (pf < a) {
            flow_t *f = &n->fl[n->cf[pf++]];
            /* a link is classed (component or hub) when first met, so the
             * flow's share goes to it at once, flow by flow in cf order */
            settle(f, now);
            if (first) f->prev = f->rate;
            for (int i = 0; i < f->n_inc; i++) {
                int li = f->inc[i].link;
                link_t *l = &n->lk[li];
                if (l->stamp != s && l->hstamp != s) {
                    if (!full && l->n > HUB) {
                        l->hstamp = s;
                        n->hub[h++] = li;
                    } else {
                        l->stamp = s;
                        link_init(l);
                        n->cl[b++] = li;
                    }
                }
                if (l->stamp != s) {
                    l->load -= f->inc[i].w * f->rate;
                    continue;
                }
                l->wsum += f->inc[i].w;
                l->unf++;
            }
            if (f->bneck >= 0) n->lk[f->bneck].nb--;
            f->bneck = -1;
            f->fixed = 0;
        }
        while (pl < b) {
            link_t *l = &n->lk[n->cl[pl++]];
            for (int i = 0; i < l->n; i++) {
                flow_t *f = &n->fl[l->fl[i].f];
                if (f->stamp == s) continue;
                f->stamp = s;
                n->cf[a++] = l->fl[i].f;
            }
        }
    }
    *ncf = a;
    *ncl = b;
    *nhub = h;
}

/* Fixes flow id at level lv, its bottleneck link li. Links outside the
 * component (hubs) only keep their load up to date. */
static void fix(net_t *n, int id, double lv, int li, uint32_t s) {
    flow_t *f = &n->fl[id];
    f->rate = lv;
    f->bneck = li;
    f->fixed = 1;
    n->unfixed--;
    n->lk[li].nb++;
    for (int i = 0; i < f->n_inc; i++) {
        link_t *l = &n->lk[f->inc[i].link];
        double u = f->inc[i].w * lv;
        l->load += u;
        if (l->stamp != s) continue;
        l->rcap -= u;
        if (l->rcap < 0) l->rcap = 0;
        l->wsum -= f->inc[i].w;
        if (--l->unf == 0) l->wsum = 0;
    }
}

/* Progressive filling over one component (hubs left out unless full).
 * Returns 1 when a hub ends up over its capacity: solve again, full. */
static int solve(net_t *n, int full, int first, int64_t now, size_t *ncf_out) {
    size_t ncf, ncl, nhub;
    component(n, full, first, now, &ncf, &ncl, &nhub);
    uint32_t s = n->stamp;
    n->st.solves++;
    n->st.solve_flows += ncf;
    n->lhn = 0;
    RESERVE(n->lh, n->lhcap, ncl);
    for (size_t i = 0; i < ncl; i++) {
        link_t *l = &n->lk[n->cl[i]];
        if (l->unf) lpush(n, (lent_t){.lv = level(l), .l = n->cl[i], .unf = l->unf});
    }
    double last = 0;
    /* once every flow is fixed the entries left have no unfixed flow and
     * would only be popped and skipped */
    n->unfixed = ncf;
    while (n->lhn && n->unfixed) {
        lent_t e = lpop(n);
        link_t *l = &n->lk[e.l];
        if (!l->unf) continue;
        double cur = level(l);
        if (cur > e.lv * (1 + 1e-9)) { /* risen since pushed */
            lpush(n, (lent_t){.lv = cur, .l = e.l, .unf = l->unf});
            continue;
        }
        double lv = cur > last ? cur : last;
        last = lv;
        for (int i = 0; i < l->n && l->unf; i++)
            if (!n->fl[l->fl[i].f].fixed) fix(n, l->fl[i].f, lv, e.l, s);
    }
    *ncf_out = ncf;
    for (size_t i = 0; i < nhub; i++) {
        const link_t *l = &n->lk[n->hub[i]];
        if (l->load > lcap(n, l) * (1 + 1e-9)) return 1;
    }
    return 0;
}

static void ev_solve(eng_t *eng, void *ctx, int64_t arg) {
    (void)arg;
    net_t *n = ctx;
    n->solve_pending = 0;
    if (!n->ndf && !n->ndl) return;
    int64_t now = eng_now(eng);
    size_t ncf;
    if (solve(n, 0, 1, now, &ncf)) {
        n->st.hub_redo++;
        solve(n, 1, 0, now, &ncf);
    }
    n->ndf = n->ndl = 0;
    /* a flow whose rate did not change keeps its finish time and entry */
    for (size_t i = 0; i < ncf; i++) {
        flow_t *f = &n->fl[n->cf[i]];
        if (f->prev > 0 && fabs(f->rate - f->prev) <= 1e-12 * f->prev) continue;
        push_finish(n, n->cf[i], now);
    }
    reschedule(n);
}
