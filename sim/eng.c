/* eng: future-event set as an implicit 4-ary min-heap of 16-byte keys.
 *
 * Why this shape: the heap holds only (time, sequence|slot) pairs, so a
 * sift moves 16 bytes and four children share one cache line; the action
 * (fn, ctx, arg) waits in a slot table and is touched once, when the event
 * runs. A 4-ary heap halves the depth of a binary one. Cancellation is lazy:
 * the slot is marked dead and its key dropped when it reaches the top.
 *
 * Key layout: seq (high 40 bits) | slot (low 24 bits). Comparing keys at
 * equal times compares sequence numbers, which gives FIFO order for ties. */
#include "eng.h"

#include <assert.h>
#include <stdlib.h>

#include "util.h"

#define SLOT_BITS 24
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define MAX_SLOTS (1u << SLOT_BITS)

typedef struct {
    int64_t t;    /* event time, ns */
    uint64_t key; /* seq << SLOT_BITS | slot */
} hent_t;

typedef struct {
    eng_fn fn;    /* NULL: free or cancelled */
    void *ctx;
    int64_t arg;
    uint64_t seq; /* sequence of the event that owns the slot */
} slot_t;

struct eng {
    hent_t *heap;      /* 4-ary heap, root at 0 */
    size_t n, cap;     /* heap entries (live + cancelled) */
    slot_t *slots;
    uint32_t *free;    /* free slot indices (a stack) */
    size_t nfree, nslots;
    size_t live;       /* live pending events */
    uint64_t seq;      /* next sequence number */
    int64_t now;
    int stop;
};

static inline int less(const hent_t *a, const hent_t *b) {
    return a->t < b->t || (a->t == b->t && a->key < b->key);
}

eng_t *eng_new(void) {
    eng_t *e = ms_calloc(1, sizeof *e);
    e->cap = 1024;
    e->heap = ms_malloc(e->cap * sizeof *e->heap);
    e->slots = ms_malloc(e->cap * sizeof *e->slots);
    e->free = ms_malloc(e->cap * sizeof *e->free);
    e->seq = 1;
    return e;
}

void eng_free(eng_t *e) {
    if (!e) return;
    free(e->heap);
    free(e->slots);
    free(e->free);
    free(e);
}

static uint32_t slot_get(eng_t *e) {
    if (e->nfree) return e->free[--e->nfree];
    if (e->nslots == e->cap) {
        e->cap *= 2;
        assert(e->cap <= MAX_SLOTS && "more than 16M pending events");
        e->heap = ms_realloc(e->heap, e->cap * sizeof *e->heap);
        e->slots = ms_realloc(e->slots, e->cap * sizeof *e->slots);
        e->free = ms_realloc(e->free, e->cap * sizeof *e->free);
    }
    return (uint32_t)e->nslots++;
}

static void sift_up(hent_t *h, size_t i, hent_t x) {
    while (i > 0) {
        size_t p = (i - 1) >> 2;
        if (!less(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static void sift_down(hent_t *h, size_t n, hent_t x) {
    size_t i = 0;
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= n) break;
        size_t best = c, end = c + 4 < n ? c + 4 : n;
        for (size_t j = c + 1; j < end; j++)
            if (less(&h[j], &h[best])) best = j;
        if (!less(&h[best], &x)) break;
        h[i] = h[best];
        i = best;
    }
    h[i] = x;
}

eng_id_t eng_schedule(eng_t *e, int64_t at_ns, eng_fn fn, void *ctx, int64_t arg) {
    assert(fn && at_ns >= e->now && "events cannot be scheduled in the past");
    uint32_t s = slot_get(e);
    uint64_t seq = e->seq++;
    e->slots[s] = (slot_t){fn, ctx, arg, seq};
    hent_t x = {at_ns, seq << SLOT_BITS | s};
    sift_up(e->heap, e->n++, x);
    e->live++;
    return x.key;
}

eng_id_t eng_after(eng_t *e, int64_t delay_ns, eng_fn fn, void *ctx, int64_t arg) {
    return eng_schedule(e, e->now + delay_ns, fn, ctx, arg);
}

int eng_cancel(eng_t *e, eng_id_t id) {
    uint32_t s = (uint32_t)(id & SLOT_MASK);
    if (s >= e->nslots) return 0;
    slot_t *sl = &e->slots[s];
    if (!sl->fn || sl->seq != id >> SLOT_BITS) return 0;
    sl->fn = NULL; /* its heap entry is dropped when it surfaces */
    e->live--;
    return 1;
}

/* Removes the root; returns its slot. */
static uint32_t pop(eng_t *e, int64_t *t) {
    hent_t top = e->heap[0];
    if (--e->n) sift_down(e->heap, e->n, e->heap[e->n]);
    *t = top.t;
    return (uint32_t)(top.key & SLOT_MASK);
}

/* Drops cancelled entries from the top so the root is live. */
static void skip_dead(eng_t *e) {
    while (e->n && !e->slots[e->heap[0].key & SLOT_MASK].fn) {
        int64_t t;
        e->free[e->nfree++] = pop(e, &t);
    }
}

uint64_t eng_run_until(eng_t *e, int64_t end_ns) {
    uint64_t ran = 0;
    e->stop = 0;
    while (!e->stop) {
        skip_dead(e);
        if (!e->n || e->heap[0].t > end_ns) break;
        int64_t t;
        uint32_t s = pop(e, &t);
        slot_t sl = e->slots[s];
        e->slots[s].fn = NULL;
        e->free[e->nfree++] = s;
        e->live--;
        e->now = t;
        sl.fn(e, sl.ctx, sl.arg);
        ran++;
    }
    return ran;
}

void eng_stop(eng_t *e) { e->stop = 1; }

void eng_reset(eng_t *e, int64_t now_ns) {
    assert(e->live == 0 && "eng_reset with events pending");
    e->n = 0; /* only cancelled entries can remain */
    e->nfree = 0;
    e->nslots = 0;
    e->now = now_ns;
}
int64_t eng_now(const eng_t *e) { return e->now; }
size_t eng_pending(const eng_t *e) { return e->live; }

int64_t eng_peek(eng_t *e) {
    skip_dead(e);
    return e->n ? e->heap[0].t : ENG_NEVER;
}
