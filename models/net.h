/* net: a flow-level network on the event engine. Links are capacities;
 * flows cross weighted sets of links and share them max-min fairly, found
 * by progressive filling (SimGrid's model); a flow pays its latency before
 * it competes, and its completion is an event on the engine.
 *
 * A flow's weight on a link is the share of its bytes that cross it (1 for
 * a plain path), which lets one flow stand for a stream of many small
 * transfers spread over several ports. Rates change only when the set of
 * competing flows changes, so bytes may be added to a running flow
 * (net_add_bytes) without a new solve. A change re-solves only the
 * connected component it touches, and a finishing flow whose links carry
 * no other flow's bottleneck leaves the others' rates as they are. Two
 * links may be paired as the directions of one link, each derated while
 * both are loaded (net_pair_links). */
#ifndef MOESIM_NET_H
#define MOESIM_NET_H

#include <stddef.h>
#include <stdint.h>

#include "eng.h"

/* Called when a flow has delivered its last byte; ctx and tag are what
 * net_start was given. The flow's handle is free once this returns. */
typedef void (*net_done_fn)(eng_t *eng, void *ctx, int64_t tag);

typedef struct net net_t;

/* Statistics, for benchmarks and tests. */
typedef struct net_stats {
    uint64_t flows;       /* flows started */
    uint64_t solves;      /* component solves */
    uint64_t solve_flows; /* flows visited by solves, summed */
    uint64_t fast_done;   /* completions that needed no solve */
    uint64_t fast_add;    /* starts that needed no solve */
    uint64_t hub_redo;    /* solves redone with their hub links */
} net_stats_t;

/* A network whose completions are scheduled on eng. */
net_t *net_new(eng_t *eng);
void net_free(net_t *n);
/* Adds a link of cap_bps bytes/s (> 0); returns its id (0, 1, ...). */
int net_add_link(net_t *n, double cap_bps);
int net_n_links(const net_t *n);
/* Pairs links a and b as the two directions of one physical link: while
 * both carry flows, each keeps duplex (0, 1] of its capacity (two-way
 * derating, measured on NVLink); alone, its full capacity. */
void net_pair_links(net_t *n, int a, int b, double duplex);
/* Changes a link's capacity; only while no flow crosses it. */
void net_set_cap(net_t *n, int link, double cap_bps);
/* Drops every flow (links stay); the engine must hold none of ours. */
void net_clear(net_t *n);

/* Starts a flow of bytes over n_links links (ids, and weights in (0, 1]
 * or NULL for all 1), competing after latency_ns. Returns its handle. A
 * flow over no links finishes after its latency. */
int net_start(net_t *n, int n_links, const int *links, const double *weights, double bytes,
              int64_t latency_ns, net_done_fn fn, void *ctx, int64_t tag);
/* Adds bytes to a flow that has not finished (growing demand): 1, or 0
 * when it has already delivered its last byte (its callback may still be
 * pending at this instant); start a new flow then. */
int net_add_bytes(net_t *n, int flow, double bytes);
/* Current rate of a flow, bytes/s (0 before it competes). */
double net_rate(const net_t *n, int flow);
net_stats_t net_stats(const net_t *n);

#endif
