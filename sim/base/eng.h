/* eng: the discrete-event engine. A future-event set ordered by (time,
 * insertion sequence), so events at equal times run in the order they were
 * scheduled and every run is reproducible.
 *
 * Simulated time is an integer count of nanoseconds (int64_t, names end in
 * _ns) everywhere in moesim: 2^63 ns is 292 years, and integers make equal
 * times compare equal, which a double of seconds would not guarantee. */
#ifndef MOESIM_ENG_H
#define MOESIM_ENG_H

#include <stddef.h>
#include <stdint.h>

#define ENG_NS_PER_S 1000000000LL
#define ENG_NEVER INT64_MAX

typedef struct eng eng_t;

/* An event's action: ctx and arg are what was given to eng_schedule(). */
typedef void (*eng_fn)(eng_t *eng, void *ctx, int64_t arg);

/* Handle of a scheduled event, for eng_cancel(); never 0. */
typedef uint64_t eng_id_t;

eng_t *eng_new(void);
void eng_free(eng_t *eng);

/* Schedules fn(ctx, arg) at absolute time at_ns (>= eng_now()). */
eng_id_t eng_schedule(eng_t *eng, int64_t at_ns, eng_fn fn, void *ctx, int64_t arg);
/* Schedules after a delay from now. */
eng_id_t eng_after(eng_t *eng, int64_t delay_ns, eng_fn fn, void *ctx, int64_t arg);
/* Cancels a pending event: 1 if it was pending, 0 if it already ran or was
 * cancelled (stale handles are detected, never misapplied). */
int eng_cancel(eng_t *eng, eng_id_t id);

/* Runs events in order while their time is <= end_ns (ENG_NEVER: until the
 * set is empty or eng_stop() is called). Returns the number of events run.
 * Afterwards eng_now() is the time of the last event run. */
uint64_t eng_run_until(eng_t *eng, int64_t end_ns);
/* Makes eng_run_until() return after the current event. */
void eng_stop(eng_t *eng);

int64_t eng_now(const eng_t *eng);
/* Moves the clock of an engine with no pending events to now_ns (earlier
 * or later): lets a sub-simulation be replayed from any start time. */
void eng_reset(eng_t *eng, int64_t now_ns);
/* Live (not cancelled) pending events. */
size_t eng_pending(const eng_t *eng);
/* Time of the next live event, ENG_NEVER if none. */
int64_t eng_peek(eng_t *eng);

#endif
