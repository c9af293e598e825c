/* phold: the PHOLD benchmark model (Fujimoto; shipped with ROSS), kept with
 * the engine to measure it. N logical processes each hold events; running
 * one schedules another at now + lookahead + Exp(mean) on a random process,
 * so the number of pending events stays constant. */
#ifndef MOESIM_PHOLD_H
#define MOESIM_PHOLD_H

#include <stdint.h>

#include "eng.h"

typedef struct phold phold_t;

/* n_lps processes, `pending` events in flight, increments of lookahead_ns +
 * Exp(mean_ns), seeded GSL generator. */
phold_t *phold_new(int n_lps, int pending, int64_t lookahead_ns, double mean_ns, uint64_t seed);
void phold_free(phold_t *p);
/* Seeds the initial events on eng and runs until `events` have run. */
uint64_t phold_run(phold_t *p, eng_t *eng, uint64_t events);
/* Draws the next event of the model: its time and process. Exposed so a
 * baseline queue can run the identical model. */
void phold_next(phold_t *p, int64_t now_ns, int64_t *at_ns, int *lp);
/* Events handled by each process (for checks). */
const uint64_t *phold_counts(const phold_t *p);

#endif
