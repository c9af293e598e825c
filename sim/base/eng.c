/* eng: future-event set as a radix heap over integer nanoseconds.
 *
 * Why this shape: simulated time never goes backwards (an event is never
 * scheduled before the one running), which is what a radix heap needs. An
 * event lives in bucket b = the index of the highest bit in which its time
 * differs from `last`, the time of the newest minimum (bucket 0: equal).
 * Taking the minimum empties the lowest non-empty bucket into lower ones,
 * and each event moves at most 64 times, in practice a few: amortised O(1)
 * against a heap's O(log n) sifts.
 *
 * Equal times run in scheduling order: every bucket is kept in sequence
 * order (appends have rising sequence numbers, and a bucket is redistributed
 * only when all lower buckets are empty, so its events land in front of any
 * later appends), and bucket 0 is consumed first in, first out.
 *
 * Entries are 16-byte (time, seq|slot) pairs; the action (fn, ctx, arg)
 * waits in a slot table. Cancellation is lazy: the slot is marked dead and
 * its entry dropped when its bucket is next touched. */
#include "eng.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define SLOT_BITS 24
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define MAX_SLOTS (1u << SLOT_BITS)
#define NBUCKETS 65

typedef struct {
    int64_t t;    /* event time, ns */
    uint64_t key; /* seq << SLOT_BITS | slot */
} ent_t;

typedef struct {
    ent_t *a;
    uint32_t head, n, cap; /* live entries are a[head..n) */
    int64_t min;           /* smallest time in the bucket (may be a dead one) */
} bucket_t;

typedef struct {
    eng_fn fn;    /* NULL: free or cancelled */
    void *ctx;
    int64_t arg;
    uint64_t seq; /* sequence of the event that owns the slot */
} slot_t;

struct eng {
    bucket_t b[NBUCKETS];
    uint64_t used;     /* bit j-1 set: bucket j (1..64) is non-empty */
    int64_t last;      /* every pending time is >= last */
    slot_t *slots;
    uint32_t *free;    /* free slot indices (a stack) */
    size_t nfree, nslots, cap;
    size_t live;       /* live pending events */
    uint64_t seq;      /* next sequence number */
    int64_t now;
    int stop;
};

eng_t *eng_new(void) {
    eng_t *e = ms_calloc(1, sizeof *e);
    e->cap = 1024;
    e->slots = ms_malloc(e->cap * sizeof *e->slots);
    e->free = ms_malloc(e->cap * sizeof *e->free);
    e->seq = 1;
    return e;
}

void eng_free(eng_t *e) {
    if (!e) return;
    for (int i = 0; i < NBUCKETS; i++) free(e->b[i].a);
    free(e->slots);
    free(e->free);
    free(e);
}

static uint32_t slot_get(eng_t *e) {
    if (e->nfree) return e->free[--e->nfree];
    if (e->nslots == e->cap) {
        e->cap *= 2;
        assert(e->cap <= MAX_SLOTS && "more than 16M pending events");
        e->slots = ms_realloc(e->slots, e->cap * sizeof *e->slots);
        e->free = ms_realloc(e->free, e->cap * sizeof *e->free);
    }
    return (uint32_t)e->nslots++;
}

static inline int bucket_of(const eng_t *e, int64_t t) {
    uint64_t x = (uint64_t)t ^ (uint64_t)e->last;
    return x ? 64 - __builtin_clzll(x) : 0;
}

static inline void put(eng_t *e, ent_t x) {
    int i = bucket_of(e, x.t);
    bucket_t *b = &e->b[i];
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->a = ms_realloc(b->a, b->cap * sizeof *b->a);
    }
    if (b->n == b->head || x.t < b->min) b->min = x.t;
    b->a[b->n++] = x;
    if (i) e->used |= 1ull << (i - 1);
}

static inline int dead(const eng_t *e, ent_t x) {
    return !e->slots[x.key & SLOT_MASK].fn;
}

static inline void drop(eng_t *e, ent_t x) { e->free[e->nfree++] = (uint32_t)(x.key & SLOT_MASK); }

/* Re-buckets every entry against a new `last` (<= every pending time). Only
 * needed when something is scheduled before `last`, which can happen after
 * eng_run_until() stopped early or eng_peek() looked ahead. */
static void rebase(eng_t *e, int64_t new_last) {
    size_t total = 0;
    for (int i = 0; i < NBUCKETS; i++) total += e->b[i].n - e->b[i].head;
    ent_t *all = ms_malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        bucket_t *b = &e->b[i];
        if (b->n > b->head) memcpy(all + k, b->a + b->head, (b->n - b->head) * sizeof *all);
        k += b->n - b->head;
        b->head = b->n = 0;
    }
    /* Sequence order within equal times must survive: sort by (t, key). */
    for (size_t i = 1; i < k; i++) { /* insertion sort: rare, and mostly sorted runs */
        ent_t x = all[i];
        size_t j = i;
        while (j && (all[j - 1].t > x.t || (all[j - 1].t == x.t && all[j - 1].key > x.key))) {
            all[j] = all[j - 1];
            j--;
        }
        all[j] = x;
    }
    e->used = 0;
    e->last = new_last;
    for (size_t i = 0; i < k; i++) put(e, all[i]);
    free(all);
}

eng_id_t eng_schedule(eng_t *e, int64_t at_ns, eng_fn fn, void *ctx, int64_t arg) {
    assert(fn && at_ns >= e->now && "events cannot be scheduled in the past");
    if (at_ns < e->last) rebase(e, at_ns);
    uint32_t s = slot_get(e);
    uint64_t seq = e->seq++;
    e->slots[s] = (slot_t){fn, ctx, arg, seq};
    ent_t x = {at_ns, seq << SLOT_BITS | s};
    put(e, x);
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
    sl->fn = NULL; /* its entry is dropped when its bucket is next touched */
    e->live--;
    return 1;
}

/* Makes bucket 0's head the next live event if its time is <= end_ns;
 * returns 0 when there is none. */
static int front(eng_t *e, int64_t end_ns) {
    bucket_t *b0 = &e->b[0];
    for (;;) {
        while (b0->head < b0->n && dead(e, b0->a[b0->head])) drop(e, b0->a[b0->head++]);
        if (b0->head < b0->n) return e->last <= end_ns;
        b0->head = b0->n = 0;
        if (!e->used) return 0;
        int j = __builtin_ctzll(e->used) + 1;
        bucket_t *bj = &e->b[j];
        if (bj->min > end_ns) return 0;
        e->used &= ~(1ull << (j - 1));
        e->last = bj->min;
        uint32_t n = bj->n;
        bj->n = 0; /* entries go to lower buckets only, never back into j */
        for (uint32_t i = bj->head; i < n; i++) {
            if (dead(e, bj->a[i])) drop(e, bj->a[i]);
            else put(e, bj->a[i]);
        }
        bj->head = 0;
    }
}

uint64_t eng_run_until(eng_t *e, int64_t end_ns) {
    uint64_t ran = 0;
    e->stop = 0;
    while (!e->stop && front(e, end_ns)) {
        bucket_t *b0 = &e->b[0];
        ent_t x = b0->a[b0->head++];
        uint32_t s = (uint32_t)(x.key & SLOT_MASK);
        slot_t sl = e->slots[s];
        e->slots[s].fn = NULL;
        e->free[e->nfree++] = s;
        e->live--;
        e->now = x.t;
        sl.fn(e, sl.ctx, sl.arg);
        ran++;
    }
    return ran;
}

void eng_stop(eng_t *e) { e->stop = 1; }
int64_t eng_now(const eng_t *e) { return e->now; }
size_t eng_pending(const eng_t *e) { return e->live; }

void eng_reset(eng_t *e, int64_t now_ns) {
    assert(e->live == 0 && "eng_reset with events pending");
    for (int i = 0; i < NBUCKETS; i++) e->b[i].head = e->b[i].n = 0;
    e->used = 0;
    e->nfree = e->nslots = 0;
    e->now = e->last = now_ns;
}

int64_t eng_peek(eng_t *e) {
    return front(e, ENG_NEVER) ? e->last : ENG_NEVER;
}
