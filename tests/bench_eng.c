/* bench_eng: engine events per second on PHOLD with 16,384 pending events,
 * against a plain binary heap running the identical model in the same run.
 * Target (issue 2): at least 5 million events/s, and faster than the heap. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "eng.h"
#include "phold.h"
#include "util.h"

#define PENDING 16384
#define EVENTS 20000000ull
#define REPS 3

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The plain binary heap: textbook sift-up/sift-down with swaps on whole
 * event records ordered by (time, sequence). */
typedef struct {
    int64_t t;
    uint64_t seq;
    void (*fn)(void *, int64_t);
    void *ctx;
    int64_t arg;
} rec_t;

typedef struct {
    rec_t *a;
    size_t n;
} bheap_t;

static int rless(const rec_t *x, const rec_t *y) {
    return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

static void bpush(bheap_t *h, rec_t r) {
    size_t i = h->n++;
    h->a[i] = r;
    while (i && rless(&h->a[i], &h->a[(i - 1) / 2])) {
        rec_t tmp = h->a[i];
        h->a[i] = h->a[(i - 1) / 2];
        h->a[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

static rec_t bpop(bheap_t *h) {
    rec_t top = h->a[0];
    h->a[0] = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && rless(&h->a[l], &h->a[m])) m = l;
        if (r < h->n && rless(&h->a[r], &h->a[m])) m = r;
        if (m == i) break;
        rec_t tmp = h->a[i];
        h->a[i] = h->a[m];
        h->a[m] = tmp;
        i = m;
    }
    return top;
}

typedef struct {
    phold_t *p;
    bheap_t *h;
    uint64_t seq;
    int64_t now;
    uint64_t *count;
} heapmodel_t;

static void heap_ev(void *ctx, int64_t lp) {
    heapmodel_t *m = ctx;
    m->count[lp]++;
    int64_t at;
    int dst;
    phold_next(m->p, m->now, &at, &dst);
    bpush(m->h, (rec_t){at, m->seq++, heap_ev, m, dst});
}

static double run_heap(void) {
    phold_t *p = phold_new(PENDING, PENDING, 0, 1000.0, 1);
    bheap_t h = {ms_malloc((PENDING + 1) * sizeof(rec_t)), 0};
    heapmodel_t m = {p, &h, 0, 0, ms_calloc(PENDING, sizeof(uint64_t))};
    for (int i = 0; i < PENDING; i++) {
        int64_t at;
        int dst;
        phold_next(p, 0, &at, &dst);
        bpush(&h, (rec_t){at, m.seq++, heap_ev, &m, dst});
    }
    double t0 = now_s();
    for (uint64_t k = 0; k < EVENTS; k++) {
        rec_t r = bpop(&h);
        m.now = r.t;
        r.fn(r.ctx, r.arg);
    }
    double dt = now_s() - t0;
    free(h.a);
    free(m.count);
    phold_free(p);
    return EVENTS / dt;
}

static double run_eng(void) {
    phold_t *p = phold_new(PENDING, PENDING, 0, 1000.0, 1);
    eng_t *e = eng_new();
    double t0 = now_s();
    uint64_t n = phold_run(p, e, EVENTS);
    double dt = now_s() - t0;
    eng_free(e);
    phold_free(p);
    return n / dt;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    double e[REPS], h[REPS];
    for (int i = 0; i < REPS; i++) { /* interleaved so drift hits both */
        e[i] = run_eng();
        h[i] = run_heap();
    }
    qsort(e, REPS, sizeof *e, cmp);
    qsort(h, REPS, sizeof *h, cmp);
    double em = e[REPS / 2], hm = h[REPS / 2];
    printf("engine (PHOLD, %d pending, %llu events, median of %d):\n", PENDING,
           (unsigned long long)EVENTS, REPS);
    printf("  moesim radix heap : %6.2f M events/s  (target >= 5.00)\n", em / 1e6);
    printf("  plain binary heap : %6.2f M events/s\n", hm / 1e6);
    printf("  ratio             : %6.2f x\n", em / hm);
    return 0;
}
