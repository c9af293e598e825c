/* Engine: ordering, FIFO ties, cancellation, run-until, PHOLD. */
#include <criterion/criterion.h>

#include "eng.h"
#include "phold.h"

typedef struct {
    int64_t t[64];
    int64_t arg[64];
    int n;
} log_t;

static void rec(eng_t *e, void *ctx, int64_t arg) {
    log_t *l = ctx;
    l->t[l->n] = eng_now(e);
    l->arg[l->n++] = arg;
}

Test(eng, runs_in_time_order) {
    eng_t *e = eng_new();
    log_t l = {0};
    int64_t times[] = {50, 10, 40, 20, 30, 1000000007, 0};
    for (int i = 0; i < 7; i++) eng_schedule(e, times[i], rec, &l, i);
    cr_assert_eq(eng_run_until(e, ENG_NEVER), 7);
    int64_t want[] = {0, 10, 20, 30, 40, 50, 1000000007};
    for (int i = 0; i < 7; i++) cr_assert_eq(l.t[i], want[i]);
    cr_assert_eq(eng_now(e), 1000000007);
    eng_free(e);
}

Test(eng, equal_times_run_in_scheduling_order) {
    eng_t *e = eng_new();
    log_t l = {0};
    /* interleave two times so ties meet events moved between buckets */
    for (int i = 0; i < 20; i++) eng_schedule(e, i % 2 ? 7 : 5, rec, &l, i);
    eng_run_until(e, ENG_NEVER);
    int k = 0;
    for (int i = 0; i < 20; i += 2) cr_assert_eq(l.arg[k++], i, "t=5 events in order");
    for (int i = 1; i < 20; i += 2) cr_assert_eq(l.arg[k++], i, "t=7 events in order");
    eng_free(e);
}

static void chain(eng_t *e, void *ctx, int64_t arg) {
    log_t *l = ctx;
    rec(e, ctx, arg);
    /* same-time events scheduled from a handler run after those already due */
    if (arg < 3) eng_schedule(e, eng_now(e), chain, l, arg + 10);
    (void)l;
}

Test(eng, same_time_from_handler_runs_after_pending_ties) {
    eng_t *e = eng_new();
    log_t l = {0};
    for (int i = 0; i < 3; i++) eng_schedule(e, 100, chain, &l, i);
    eng_run_until(e, ENG_NEVER);
    int64_t want[] = {0, 1, 2, 10, 11, 12};
    cr_assert_eq(l.n, 6);
    for (int i = 0; i < 6; i++) cr_assert_eq(l.arg[i], want[i]);
    eng_free(e);
}

Test(eng, cancel_and_stale_handles) {
    eng_t *e = eng_new();
    log_t l = {0};
    eng_id_t a = eng_schedule(e, 10, rec, &l, 1);
    eng_id_t b = eng_schedule(e, 20, rec, &l, 2);
    eng_schedule(e, 30, rec, &l, 3);
    cr_assert_eq(eng_pending(e), 3);
    cr_assert_eq(eng_cancel(e, b), 1);
    cr_assert_eq(eng_cancel(e, b), 0, "cancelling twice is a no-op");
    cr_assert_eq(eng_pending(e), 2);
    eng_run_until(e, ENG_NEVER);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.arg[0], 1);
    cr_assert_eq(l.arg[1], 3);
    cr_assert_eq(eng_cancel(e, a), 0, "a handle of an event that ran is stale");
    /* the slot of `a` is reused; its old handle must not cancel the new event */
    eng_schedule(e, 40, rec, &l, 4);
    cr_assert_eq(eng_cancel(e, a), 0);
    eng_run_until(e, ENG_NEVER);
    cr_assert_eq(l.arg[2], 4);
    eng_free(e);
}

Test(eng, run_until_stops_and_resumes) {
    eng_t *e = eng_new();
    log_t l = {0};
    for (int i = 1; i <= 5; i++) eng_schedule(e, i * 100, rec, &l, i);
    cr_assert_eq(eng_run_until(e, 250), 2);
    cr_assert_eq(eng_now(e), 200);
    cr_assert_eq(eng_peek(e), 300);
    /* scheduling between now and the peeked time must still order right */
    eng_schedule(e, 210, rec, &l, 99);
    cr_assert_eq(eng_run_until(e, ENG_NEVER), 4);
    int64_t want[] = {1, 2, 99, 3, 4, 5};
    for (int i = 0; i < 6; i++) cr_assert_eq(l.arg[i], want[i]);
    cr_assert_eq(eng_peek(e), ENG_NEVER);
    eng_free(e);
}

Test(eng, matches_a_sorted_reference_on_random_schedules) {
    /* Many events, many ties, handlers scheduling more: the order must be
     * exactly (time, scheduling sequence). */
    eng_t *e = eng_new();
    static log_t big;
    uint64_t x = 12345;
    enum { N = 60 };
    int64_t t[N];
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int64_t)((x >> 33) % 8); /* many ties */
        eng_schedule(e, t[i] * 1000, rec, &big, i);
    }
    /* only 64 fit in the log; N = 60 */
    eng_run_until(e, ENG_NEVER);
    cr_assert_eq(big.n, N);
    for (int i = 1; i < N; i++) {
        cr_assert(big.t[i - 1] <= big.t[i]);
        if (big.t[i - 1] == big.t[i]) cr_assert(big.arg[i - 1] < big.arg[i]);
    }
    eng_free(e);
}

Test(eng, phold_keeps_its_population_and_is_deterministic) {
    uint64_t sums[2];
    for (int r = 0; r < 2; r++) {
        eng_t *e = eng_new();
        phold_t *p = phold_new(64, 256, 10, 1000.0, 7);
        cr_assert_eq(phold_run(p, e, 100000), 100000);
        cr_assert_eq(eng_pending(e), 255, "one event was consumed without a successor");
        uint64_t s = 0;
        for (int i = 0; i < 64; i++) s = s * 31 + phold_counts(p)[i];
        sums[r] = s ^ (uint64_t)eng_now(e);
        phold_free(p);
        eng_free(e);
    }
    cr_assert_eq(sums[0], sums[1]);
}
