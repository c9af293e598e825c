/* place_eplb: DeepSeek's expert-parallelism load balancer (EPLB, github
 * deepseek-ai/EPLB, eplb.py) as a pure function. It reproduces the
 * reference's output exactly: the same float32 arithmetic, a stable
 * descending sort, the least-loaded pack with the lowest index on ties and
 * the argmax with the lowest index on ties (docs/placement.md says more).
 *
 * The "eplb" strategy (place_eplb.c) wraps it: the first layout from the
 * prior statistics, then a new one every interval_steps steps from the loads
 * of the last window_steps steps, as SGLang's EPLB does. */
#ifndef MOESIM_PLACE_EPLB_H
#define MOESIM_PLACE_EPLB_H

/* Balanced placement of every layer. weight is [L][E] tokens per logical
 * expert (finite, >= 0; used as float32 like the reference), P physical
 * slots per layer (P >= E, a multiple of gpus), on gpus GPUs in nodes nodes.
 * The hierarchical policy runs when groups % nodes == 0 (E a multiple of
 * groups, gpus a multiple of nodes); otherwise the global policy (the
 * hierarchical one with 1 group and 1 node). To force the global policy,
 * pass groups = nodes = 1.
 *
 * Writes phy2log [L][P] (slot -> expert; slot s is on GPU s / (P / gpus))
 * and logcnt [L][E] (replicas per expert). Returns MS_OK, or MS_ERR with a
 * message for a bad shape or weight. */
int place_eplb(const double *weight, int L, int E, int P, int groups, int nodes, int gpus,
               int *phy2log, int *logcnt);

#endif
