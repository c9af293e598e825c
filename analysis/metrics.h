/* metrics: every figure a run reports, defined once. Runs compute each
 * metric here, store it with its unit in the summary table, and the CLI
 * tables, the report and its figures read the stored value back.
 *
 * Adding a metric is one line in METRICS_LIST below (its id, the name
 * stored in summary.metric, its unit, what it means); the producer then
 * calls metrics_set(&m, METRIC_<ID>, value) where the value is known, and
 * the recorder stores it with the others. Readers call metrics_load() and
 * metrics_get(); docs/schema.md lists the same names. A metric whose value
 * needs a formula gets a metrics_<what>() function in metrics.c, so that
 * fixed-batch runs, serving and `moesim place` share it. */
#ifndef MOESIM_METRICS_H
#define MOESIM_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "place.h"
#include "store.h"

struct sqlite3;

/* X(id, stored name, unit, meaning) */
#define METRICS_LIST(X)                                                                          \
    X(STEPS, "steps", "", "simulated steps (serving: of the decode instance, else prefill)")     \
    X(REDUNDANT, "redundant", "slots", "redundant expert slots per layer")                       \
    X(TOKENS_PER_DEVICE, "tokens_per_device", "tokens", "batch per device per step")            \
    X(SIM_TIME, "sim_time", "s", "simulated time of the whole run")                              \
    X(STEP_TIME_MEAN, "step_time_mean", "ms", "mean simulated step time")                        \
    X(OUT_TPS_NODE, "output_tokens_per_s_per_node", "tokens/s",                                  \
      "output tokens per simulated second per node (serving: in the measuring window)")          \
    X(PAR_MEAN, "par_mean", "", "mean over steps and layers of the per-layer PAR (max/mean)")    \
    X(PAR_MAX, "par_max", "", "the largest per-layer, per-step PAR")                             \
    X(GAP_TO_BOUND, "gap_to_bound", "",                                                          \
      "sum over layers of the busiest device's run load over the sum of the lower bounds, - 1")  \
    X(BOUND_PAR_MEAN, "bound_par_mean", "",                                                      \
      "mean over layers of the lower bound over the mean device load (best reachable PAR)")      \
    X(BALANCEDNESS_SGLANG, "balancedness_sglang", "", "mean over layers of mean/max device load") \
    X(BALANCEDNESS_VLLM, "balancedness_vllm", "", "sum of mean loads over sum of max loads")     \
    X(MAX_LOAD_SUM, "max_load_sum", "pairs", "busiest device's load summed over layers")         \
    X(BOUND_SUM, "bound_sum", "pairs", "the lower bound summed over layers")                     \
    X(REQUESTS, "requests", "", "requests released")                                             \
    X(WINDOW, "window", "s", "length of the measuring window")                                   \
    X(WINDOW_START, "window_start", "s", "requests arriving earlier (warm-up) are not measured") \
    X(LATENCY_REQUESTS, "latency_requests", "", "requests in TTFT and end-to-end figures")       \
    X(TPOT_REQUESTS, "tpot_requests", "", "of those, with two or more output tokens (TPOT)")     \
    X(TTFT_MEAN, "ttft_mean", "ms", "time to first token, mean")                                 \
    X(TTFT_P50, "ttft_p50", "ms", "time to first token, median")                                 \
    X(TTFT_P90, "ttft_p90", "ms", "time to first token, 90th percentile")                        \
    X(TTFT_P99, "ttft_p99", "ms", "time to first token, 99th percentile")                        \
    X(TPOT_MEAN, "tpot_mean", "ms", "time per output token after the first, mean")               \
    X(TPOT_P50, "tpot_p50", "ms", "time per output token, median")                               \
    X(TPOT_P90, "tpot_p90", "ms", "time per output token, 90th percentile")                      \
    X(TPOT_P99, "tpot_p99", "ms", "time per output token, 99th percentile")                      \
    X(E2E_MEAN, "e2e_mean", "s", "end-to-end latency, mean")                                     \
    X(E2E_P50, "e2e_p50", "s", "end-to-end latency, median")                                     \
    X(E2E_P90, "e2e_p90", "s", "end-to-end latency, 90th percentile")                            \
    X(E2E_P99, "e2e_p99", "s", "end-to-end latency, 99th percentile")                            \
    X(INPUT_TOKENS, "input_tokens", "tokens", "prompt tokens of finished prompts")               \
    X(OUTPUT_TOKENS, "output_tokens", "tokens", "output tokens made")                            \
    X(PREFILL_COMPUTED, "prefill_computed_tokens", "tokens", "prompt tokens prefill computed")   \
    X(DECODE_TOKENS, "decode_tokens", "tokens", "tokens made by decode steps")                   \
    X(TOKENS_PER_SEQ_STEP, "tokens_per_sequence_step", "tokens",                                 \
      "decode tokens made per sequence and step: 1 + accepted MTP drafts")                       \
    X(IN_TPS_NODE, "input_tokens_per_s_per_node", "tokens/s",                                    \
      "prompt tokens per simulated second per prefill node, in the measuring window")            \
    X(OUT_TPS_NODE_BUSY, "output_tokens_per_s_per_node_busy", "tokens/s",                        \
      "decode tokens per busy second of the decode instance per node")                           \
    X(IN_TPS_NODE_BUSY, "input_tokens_per_s_per_node_busy", "tokens/s",                          \
      "prompt tokens per busy second of the prefill instance per node")                          \
    X(BATCH_MEAN, "batch_mean", "tokens/device", "mean tokens per device per step")              \
    X(BUSY, "busy", "", "share of the run the instance ran steps")                               \
    X(DEVICE_UTIL, "device_util", "", "busy share weighted by mean/max device load")            \
    X(LINK_UTIL, "link_util", "", "bytes moved over the links' capacity for the run")            \
    X(MIGRATED_GB, "migrated_gb", "GB", "expert weights copied by re-plans")                     \
    X(MIGRATIONS, "migrations", "", "expert weight copies")                                      \
    X(REPLANS, "replans", "", "re-plans that changed the layout")                                \
    X(REPLANS_SKIPPED, "replans_skipped", "",                                                    \
      "re-plans skipped: predicted gain below replan_min_gain or not paying for its copies")     \
    X(REPLAN_SKIPPED_GB, "replan_skipped_gb", "GB", "expert weights the skipped re-plans would have copied") \
    X(REPLAN_KEPT_GB, "replan_kept_gb", "GB",                                                    \
      "expert weights replan_min_move kept in place (copies it spared)")                         \
    X(PLAN_TIME, "plan_time_s", "s", "planning time: from each re-plan to its hand-over")        \
    X(MIGRATION_TIME, "migration_s", "s",                                                        \
      "time with weight copies pending or moving (blocking: the pauses)")                        \
    X(PRIOR_WARMUP_STEPS, "prior_warmup_steps", "steps",                                         \
      "prior = past: warm-up batches routed before the measured steps (0 for other priors)")     \
    X(LAYOUT_PAR_MEAN, "layout_par_mean", "",                                                    \
      "the first layout's mean PAR over layers on the scored trace's summed counts, unsampled")  \
    X(PAR_MEAN_IN_SAMPLE, "par_mean_in_sample", "",                                              \
      "place --eval: the layout's mean PAR on the counts it was planned on")                     \
    X(PAR_MEAN_HINDSIGHT, "par_mean_hindsight", "",                                              \
      "the hindsight bound: the same strategy planned on the scored counts, its mean PAR there") \
    X(REGRET, "regret", "",                                                                      \
      "the first layout's mean PAR on the scored counts minus the hindsight bound's")            \
    X(REBALANCE_PAUSE, "rebalance_pause_s", "s", "serving paused by blocking rebalances")        \
    X(IN_SYSTEM_MEAN, "in_system_mean", "requests", "time-average requests in the system")      \
    X(LAMBDA_W, "lambda_w", "requests", "arrival rate x mean time in system (Little's law)")     \
    X(KV_BYTES_PER_TOKEN, "kv_bytes_per_token", "bytes", "KV cache bytes of one token")          \
    X(KV_CAPACITY, "kv_capacity_tokens", "tokens/device", "KV cache tokens a decode device holds") \
    X(PREFILL_STEPS, "prefill_steps", "", "prefill steps (with a decode instance)")              \
    X(PREFILL_STEP_TIME_MEAN, "prefill_step_time_mean", "ms", "mean prefill step time")          \
    X(PREFILL_BUSY, "prefill_busy", "", "share of the run prefill ran steps")                    \
    X(PREFILL_PAR_MEAN, "prefill_par_mean", "", "prefill's par_mean")                            \
    X(PREFILL_PAR_MAX, "prefill_par_max", "", "prefill's par_max")                               \
    X(PREFILL_GAP_TO_BOUND, "prefill_gap_to_bound", "", "prefill's gap_to_bound")                \
    X(PREFILL_MIGRATED_GB, "prefill_migrated_gb", "GB", "prefill's migrated_gb")               \
    X(CROSS_NODE_GB, "cross_node_gb", "GB",                                                      \
      "dispatch and combine bytes crossing nodes, all layers and steps (token mode)")             \
    X(CROSS_NODE_SHARE, "cross_node_share", "",                                                  \
      "share of the bytes between distinct devices that cross nodes (token mode)")               \
    X(NODES_PER_TOKEN, "nodes_per_token_mean", "nodes",                                          \
      "nodes holding a token's chosen replicas, mean over tokens and layers (token mode)")       \
    X(DEVICES_PER_TOKEN, "devices_per_token_mean", "devices",                                    \
      "devices holding a token's chosen replicas, mean over tokens and layers (token mode)")

enum metrics_id {
#define METRICS_ENUM(id, name, unit, what) METRIC_##id,
    METRICS_LIST(METRICS_ENUM)
#undef METRICS_ENUM
    METRIC_N
};

/* A run's metrics: value and whether it was set. */
typedef struct metrics {
    double v[METRIC_N];
    unsigned char has[METRIC_N];
} metrics_t;

/* A finished run: its id in the database and its metrics as stored. */
typedef struct metrics_run {
    int64_t run_id;
    metrics_t m;
} metrics_run_t;

const char *metrics_name(enum metrics_id id);
const char *metrics_unit(enum metrics_id id);
const char *metrics_meaning(enum metrics_id id);
/* The id of a stored name, -1 when it is not a registered metric (a
 * strategy's own, for example). */
int metrics_find(const char *name);

void metrics_set(metrics_t *m, enum metrics_id id, double v);
/* The value, or dflt when the run did not set it. */
double metrics_get(const metrics_t *m, enum metrics_id id, double dflt);

/* Stores every set metric as a summary row with its registered unit. */
int metrics_store(store_t *st, int64_t run, const metrics_t *m);
/* Reads a run's registered metrics back from the summary table. */
int metrics_load(struct sqlite3 *db, int64_t run, metrics_t *m);

/* ---- definitions ---- */

/* PAR of one layer in one step: busiest device over the mean; 1 when the
 * layer carried nothing. */
double metrics_par(const double *dev_load, int n_devices);

/* Per-step device loads summed over a run: the one place PAR is averaged
 * and the gap to the lower bound is formed, for fixed batches, serving and
 * `place` alike. */
typedef struct metrics_loads {
    int L, D, E;
    double *dev_sum;      /* [L][D] device loads summed over steps */
    double *exp_sum;      /* [L][E] expert loads summed over steps */
    double *step_max;     /* [L] of the last step: busiest device's load */
    double *step_mean;    /* [L] of the last step: mean device load */
    double par_sum, par_max;
    int64_t par_n;        /* (step, layer) pairs seen */
} metrics_loads_t;

void metrics_loads_init(metrics_loads_t *a, int L, int D, int E);
void metrics_loads_free(metrics_loads_t *a);
/* One step's [L][D] device loads and [L][E] expert loads (expert may be
 * NULL). Fills step_max and step_mean. */
void metrics_loads_step(metrics_loads_t *a, const double *dev_load, const double *exp_load);

/* Per layer over the whole run: the mean device load (BestEP), the lower
 * bound any placement with n_slots[l] slots could reach on the run's summed
 * expert loads, and the busiest device's summed load. */
typedef struct metrics_layer_bound {
    double best_ep, bound, max_load;
} metrics_layer_bound_t;
void metrics_layer_bounds(const metrics_loads_t *a, const int *n_slots,
                          metrics_layer_bound_t *out);

/* The same for a layout's slot counts per layer. */
void metrics_layout_bounds(const metrics_loads_t *a, const place_layout_t *lo,
                           metrics_layer_bound_t *out);

/* What layer bounds amount to. prefix selects the ids written: 0 the
 * instance's own (par_mean, ...), 1 prefill's (prefill_par_mean, ...).
 * Gap to bound: the busiest device's load summed over the run, summed over
 * layers, over the bounds summed the same way, minus one. Both sides are
 * whole-run loads, so the gap is what a better placement could still win;
 * per-step maxima would add sampling noise no placement can remove. */
void metrics_from_loads(const metrics_loads_t *a, const metrics_layer_bound_t *lb,
                        int prefill, metrics_t *m);
/* The same gap from per-layer bounds alone (L of them). */
double metrics_gap_to_bound(const metrics_layer_bound_t *lb, int L);
/* Balancedness (mean over max device load) in SGLang's form (mean over
 * layers) and vLLM's (sums over layers), and the two sums behind the gap. */
void metrics_balancedness(const metrics_layer_bound_t *lb, int L, metrics_t *m);

/* Request latencies in ms: TTFT of every request arriving at or after
 * window_start_ns (earlier ones are warm-up), TPOT of those with two or
 * more output tokens when decode is set. Arrays of n; returns their counts. */
void metrics_latencies(const store_request_t *r, int64_t n, int64_t window_start_ns, int decode,
                       double *ttft_ms, int64_t *n_ttft, double *tpot_ms, int64_t *n_tpot);
/* Mean, p50, p90, p99 of v[n] (sorted in place); zeros when n is 0. */
void metrics_quantiles(double *v, size_t n, double out[4]);
/* The latency metrics of served requests (TTFT, TPOT, end-to-end, counts). */
void metrics_requests(const store_request_t *r, int64_t n, int64_t window_start_ns, int decode,
                      metrics_t *m);
/* tokens per second per node; 0 without time or nodes. */
double metrics_per_node(double tokens, double seconds, int nodes);

/* ---- several seeds of one strategy ---- */

/* Mean and 95% confidence interval of v[n] (n >= 2): the half-width is
 * t(0.975, n - 1) s / sqrt(n), Student's t (GSL) and s the sample standard
 * deviation; the interval is mean +- half. */
int metrics_ci95(const double *v, int n, double *mean, double *half);

/* Per registered metric over the seeds of one strategy (summary_ci). n is 0
 * where a metric was not set in every run. */
typedef struct metrics_ci {
    metrics_t mean;
    double half[METRIC_N];
    int n[METRIC_N];
} metrics_ci_t;

/* From the metrics of n runs (n >= 2). */
void metrics_ci_from_runs(const metrics_t *runs, int n, metrics_ci_t *out);
/* Stores / reads back the intervals held by run (the group's last run). */
int metrics_store_ci(store_t *st, int64_t run, const metrics_ci_t *ci);
int metrics_load_ci(struct sqlite3 *db, int64_t run, metrics_ci_t *ci);
/* 1 when the intervals of a metric overlap: a difference within the noise. */
int metrics_ci_overlap(double m1, double h1, double m2, double h2);

/* ---- the CLI's tables, read from stored metrics ---- */

struct table_doc;
struct table;
/* The summary table of run and compare (table.h prints it as text, CSV or
 * JSON): strategy, prior and the fixed-batch or serving columns; with ci,
 * each value as mean +- half-width over seeds (the half-width a column of
 * its own, <key>_ci95, in CSV and JSON). */
struct table *metrics_table(struct table_doc *d, int serving, int ci);
/* prior: what the strategy planned from, as prior_display() shows it. */
void metrics_table_row(struct table *t, const char *strategy, const char *prior,
                       const metrics_t *m, int serving);
void metrics_table_row_ci(struct table *t, const char *strategy, const char *prior,
                          const metrics_ci_t *ci, int serving);
/* One sentence for `moesim run`. */
void metrics_print_run(FILE *f, int64_t run_id, const char *strategy, const char *prior,
                       const metrics_t *m, int serving);

#endif
