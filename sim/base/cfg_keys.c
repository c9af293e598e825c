/* cfg_keys: the table of every configuration key, the check each cfg getter
 * makes against it, and the Markdown reference generated from it. A parser
 * that reads a new key adds one row here; docs/config.md is then regenerated
 * with `make config-doc` (tests/test_cfg_keys.c fails until it is). */
#include "cfg_keys.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util.h"

#define EXP CFGK_EXPERIMENT
#define MOD CFGK_MODEL
#define HWF CFGK_HARDWARE
#define SWP CFGK_SWEEP
#define I(f, s, k, d, lo, hi, u, m) {f, s, k, CFGK_INT, d, lo, hi, NULL, u, m}
#define D(f, s, k, d, lo, hi, u, m) {f, s, k, CFGK_DOUBLE, d, lo, hi, NULL, u, m}
#define B(f, s, k, d, m) {f, s, k, CFGK_BOOL, d, NULL, NULL, NULL, "", m}
#define S(f, s, k, d, v, u, m) {f, s, k, CFGK_STR, d, NULL, NULL, v, u, m}
#define E(f, s, k, d, v, m) {f, s, k, CFGK_ENUM, d, NULL, NULL, v, "", m}

/* The hardware fields an experiment's [hardware] overrides and a hardware
 * preset file gives: name, range, unit, meaning (the preset file's
 * defaults differ: see its rows). */
#define HW_OVERRIDE(k, lo, hi, u, m) D(EXP, "hardware", k, "(the preset's)", lo, hi, u, m)

const cfg_key_t cfg_keys[] = {
    /* ---- experiment config ---- */
    S(EXP, "experiment", "name", "experiment", "a name; without --db no /, \\ or control "
      "characters and no leading .", "", "stored with each run; names the default database "
      "results/NAME.db; --replace replaces earlier runs of this name"),
    I(EXP, "experiment", "seed", "1", "0", "9223372036854775807", "",
      "seed of every random stream (same config and seed: byte-identical results)"),
    I(EXP, "experiment", "seeds", "1", "1", "1000", "runs",
      "compare: runs per strategy with seeds seed .. seed + seeds - 1 (--seeds overrides); "
      "mean and 95% interval stored in summary_ci"),
    I(EXP, "experiment", "steps", "20", "1", "100000000", "steps",
      "decode steps to simulate (fixed-batch runs)"),

    S(EXP, "cluster", "hardware", "H800", "a preset name (moesim list hardware) or a preset file path",
      "", "hardware preset"),
    I(EXP, "cluster", "nodes", "1", "1", "4096", "nodes", "nodes"),
    I(EXP, "cluster", "devices_per_node", "(the preset's devices_per_host)", "1", "1024",
      "devices", "devices (GPUs/NPUs) per node (host)"),
    I(EXP, "cluster", "scaleup_domain", "(devices_per_node)", "1", "4194304", "devices",
      "devices in one scale-up domain (NVLink/UB inside, NICs between): whole nodes, dividing "
      "the cluster; e.g. 72 for an NVL72 rack, 384 for CloudMatrix384 dies"),
    I(EXP, "cluster", "attn_tp", "1", "1", "1024", "devices",
      "attention tensor-parallel degree: this many devices of one scale-up domain run "
      "attention, dense FFNs and head together and all-reduce (1: data-parallel attention)"),
    I(EXP, "cluster", "pp", "1", "1", "4096", "stages",
      "pipeline-parallel stages, each whole nodes and domains holding a slice of the layers; "
      "the MoE layers of a stage run expert-parallel over its devices (fixed-batch runs only)"),
    I(EXP, "cluster", "micro_batches", "(pp)", "1", "1048576", "micro-batches",
      "micro-batches a step's batch is cut into through the pipeline (pp > 1 only; at most "
      "[workload] tokens_per_device)"),
    E(EXP, "cluster", "mode", "flow", "flow, analytic",
      "flow: max-min fair flows over the links; analytic: closed-form per-port times (faster)"),
    E(EXP, "cluster", "a2a", "auto", "auto, normal, low_latency",
      "all-to-all kernels: DeepEP normal (prefill) or low-latency (decode); auto picks by phase"),
    B(EXP, "cluster", "overlap", "false",
      "two-batch overlap: one micro-batch's communication hides behind the other's compute "
      "(flow mode)"),
    D(EXP, "cluster", "spine_oversub", "1", "1", "1e6", "ratio",
      "oversubscription of the inter-node spine (1: full bisection)"),

    HW_OVERRIDE("flops_bf16", "1e9", "1e18", "FLOP/s", "peak dense BF16 compute"),
    HW_OVERRIDE("flops_fp8", "1e9", "1e18", "FLOP/s", "peak dense FP8 compute"),
    HW_OVERRIDE("hbm_bytes", "1e6", "1e15", "bytes", "HBM capacity per device"),
    HW_OVERRIDE("hbm_bw", "1e6", "1e15", "bytes/s", "HBM bandwidth per device"),
    HW_OVERRIDE("scaleup_bw", "1e6", "1e14", "bytes/s",
                "scale-up (NVLink) bandwidth per device, one direction"),
    HW_OVERRIDE("nic_bw", "1e6", "1e14", "bytes/s", "NIC bandwidth per device, one direction"),
    HW_OVERRIDE("eff_flops", "1e-3", "1", "fraction", "achievable share of peak compute"),
    HW_OVERRIDE("eff_hbm", "1e-3", "1", "fraction", "achievable share of HBM bandwidth"),
    HW_OVERRIDE("eff_scaleup", "1e-3", "1", "fraction", "achievable share of scale-up bandwidth"),
    HW_OVERRIDE("eff_nic", "1e-3", "1", "fraction", "achievable share of NIC bandwidth"),
    HW_OVERRIDE("scaleup_lat_ns", "0", "1e9", "ns", "scale-up latency floor of a transfer"),
    HW_OVERRIDE("nic_lat_ns", "0", "1e9", "ns", "NIC latency floor of a transfer"),
    HW_OVERRIDE("kernel_ns", "0", "1e9", "ns", "fixed cost of a kernel launch"),
    HW_OVERRIDE("mem_reserve", "0", "1e15", "bytes", "HBM held back from weights and KV cache"),
    I(EXP, "hardware", "sms", "(the preset's)", "0", "1000000", "SMs",
      "streaming multiprocessors a grouped GEMM's tiles run on in waves (0: none)"),
    HW_OVERRIDE("scaleup_half_bytes", "0", "1e12", "bytes",
                "scale-up ramp: bytes per peer at which half the peak is reached (0: no ramp)"),
    HW_OVERRIDE("scaleup_low_share", "1e-3", "1", "fraction",
                "scale-up ramp: share of the peak reached by the smallest transfers"),
    HW_OVERRIDE("scaleup_duplex", "1e-3", "1", "fraction",
                "scale-up bandwidth kept when both directions are loaded"),
    HW_OVERRIDE("nic_half_bytes", "0", "1e12", "bytes",
                "NIC ramp: bytes per peer at which half the peak is reached (0: no ramp)"),
    HW_OVERRIDE("nic_low_share", "1e-3", "1", "fraction",
                "NIC ramp: share of the peak reached by the smallest transfers"),
    HW_OVERRIDE("nic_duplex", "1e-3", "1", "fraction",
                "NIC bandwidth kept when both directions are loaded"),
    HW_OVERRIDE("overlap_compute", "1", "10", "factor",
                "two-batch overlap: MoE-layer compute time over its time alone"),
    HW_OVERRIDE("overlap_comm", "1", "10", "factor",
                "two-batch overlap: scale-up transfer time beside compute over alone"),
    S(EXP, "hardware", "calibration", "default", "none, default or CSV paths (comma-separated)",
      "", "measured curves refining compute and all-to-all: default is the preset's built-in "
      "ones (docs/calibration.md)"),

    S(EXP, "model", "preset", "deepseek-v3",
      "a preset name (moesim list models), a preset file path or a Hugging Face config.json path",
      "", "model preset (a value with a / or ending in .ini or .json is a path)"),
    E(EXP, "model", "weight_dtype", "(the preset's)", "fp8, bf16", "routed-expert weights"),
    I(EXP, "model", "mtp_depth", "0", "0", "8", "drafts",
      "multi-token prediction: draft tokens verified per decode step (0: off; the model needs "
      "an MTP module)"),
    S(EXP, "model", "mtp_accept", "(0.85 at depth 1; required deeper)",
      "one rate in [0, 1] per draft, comma-separated", "",
      "acceptance rate of draft i once the drafts before it were accepted"),

    S(EXP, "workload", "trace", "(none; required unless phases)", "a trace file (docs/traces.md)",
      "", "expert-activation trace, path beside this file"),
    S(EXP, "workload", "phases", "(none)", "FILE:DURATION, ... with DURATION in s or ms", "",
      "instead of trace: traces strung together by simulated time; the last goes on"),
    I(EXP, "workload", "tokens_per_device", "128", "1", "1048576", "tokens",
      "batch per device per step (decode: sequences; prefill: prompt tokens computed)"),
    D(EXP, "workload", "kv_len", "1024", "0", "1e8", "tokens",
      "mean KV-cache length a token attends to"),
    E(EXP, "workload", "phase", "decode", "decode, prefill", "what a fixed-batch step is"),
    D(EXP, "workload", "prefix_hit_rate", "0", "0", "0.99", "fraction",
      "prefill: share of each prompt served from the KV cache (counted, not computed)"),

    B(EXP, "routing", "group_limit", "(true where the model has groups)",
      "DeepSeek-V3's group-limited top-k (top topk_groups of n_groups groups)"),
    B(EXP, "routing", "node_limit", "false", "each token's experts on at most max_nodes nodes"),
    I(EXP, "routing", "max_nodes", "(the model's)", "0", "4096", "nodes",
      "nodes a token may reach under node_limit"),

    S(EXP, "placement", "strategies", "static", "comma-separated names (moesim list strategies) "
      "or exec:NAME", "", "strategies: compare runs each, run the first"),
    I(EXP, "placement", "redundant", "0", "0", "65536", "slots",
      "redundant expert slots per layer; experts + redundant must divide by the devices"),
    S(EXP, "placement", "layout", "(none)", "an SGLang physical_to_logical_map JSON or a moesim "
      "layout CSV", "", "the layout replayed by strategy layout"),
    S(EXP, "placement", "prior", "past", "none, past, trace:PATH, oracle", "",
      "what each strategy plans its first layout from (docs/placement.md#priors)"),
    I(EXP, "placement", "warmup_steps", "100", "1", "100000000", "steps",
      "prior = past: batches in the warm-up window, left out of every figure"),
    S(EXP, "placement", "plan_ms", "0", "milliseconds >= 0, or measured", "ms",
      "planning time of each re-plan: its layout is handed to the weight copies at the first "
      "step end this long after it was made (measured: the replan call's wall time, not "
      "deterministic; docs/placement.md#re-planning-costs)"),
    S(EXP, "placement", "rebalance", "pipelined", "blocking, pipelined", "",
      "how a re-plan's weight copies move in fixed-batch runs (and [serving] rebalance's "
      "default): a few per step alongside it, or all at once with no step meanwhile"),
    D(EXP, "placement", "rebalance_fixed_s", "0", "0", "3600", "s",
      "fixed pause added to every blocking re-plan ([serving] rebalance_fixed_s's default)"),
    B(EXP, "placement", "replan_min_move", "false",
      "permute each new layout (whole nodes' and devices' contents) so the fewest weights move; "
      "PAR unchanged"),
    D(EXP, "placement", "replan_min_gain", "0", "0", "1", "fraction",
      "skip a re-plan whose predicted step-time gain is below this share of the step (0: off)"),
    I(EXP, "placement", "replan_horizon_steps", "0", "0", "1099511627776", "steps",
      "skip a re-plan unless its predicted gain per step x this pays for its copies' time "
      "(0: off)"),
    I(EXP, "placement", "replan_window_steps", "100", "1", "1073741824", "steps",
      "recent loads for those predictions: each step weighted 1 / this, exponentially"),

    S(EXP, "strategy.static", "order", "contiguous", "contiguous, round-robin", "",
      "how experts are dealt to devices"),
    I(EXP, "strategy.eplb", "window_steps", "1000", "1", "100000000", "steps",
      "loads averaged over this many recent steps"),
    I(EXP, "strategy.eplb", "interval_steps", "1000", "0", "100000000", "steps",
      "steps between re-plans (0: never re-plan)"),
    I(EXP, "strategy.eplb", "groups", "(the model's n_groups)", "1", "1048576", "groups",
      "expert groups for the hierarchical policy"),
    S(EXP, "strategy.eplb", "policy", "auto", "auto, hierarchical, global", "",
      "DeepSeek EPLB policy (auto: hierarchical when groups divide over nodes)"),
    D(EXP, "strategy.omni", "interval_s", "60", "1e-6", "1e9", "s",
      "simulated time between re-plans"),
    D(EXP, "strategy.omni", "collect_interval_s", "60", "1e-6", "1e9", "s",
      "simulated time between load collections"),
    I(EXP, "strategy.omni", "window", "20", "1", "1000", "collections",
      "load collections in the sliding window"),
    D(EXP, "strategy.omni", "gate", "1.1", "1", "1e9", "ratio",
      "re-plan only when max/mean load exceeds this (input_ratio_threshold)"),
    D(EXP, "strategy.omni", "improve", "0.05", "0", "1e9", "fraction",
      "adopt a new layout only if it improves balance by this share (improvement_threshold)"),
    D(EXP, "strategy.omni", "bad", "300", "1", "1e18", "ratio",
      "high/low load ratio beyond which a layer is re-planned at once (high_low_ratio_threshold)"),
    I(EXP, "strategy.omni", "max_redundant_per_expert", "10", "1", "1048576", "copies",
      "most copies of one expert"),
    I(EXP, "strategy.omni", "devices_per_host", "([cluster] devices_per_node)", "1", "1048576",
      "devices", "devices per host in OmniPlacement's own model"),
    B(EXP, "strategy.omni", "init_from_prior", "true",
      "plan the first layout from the prior (false: static start)"),
    D(EXP, "strategy.predictive", "shrink", "0.15", "0", "1", "fraction",
      "share of the forecast taken from uniform (drift between workloads; 0: off)"),
    D(EXP, "strategy.predictive", "prior_tokens", "1000", "0", "1e18", "tokens",
      "pseudo-tokens of the uniform prior against the tokens the shares rest on (0: off)"),
    D(EXP, "strategy.predictive", "risk", "1", "0", "100", "",
      "weight of a device's load sd in the packing objective mean + risk x sd (0: off)"),
    D(EXP, "strategy.predictive", "drift", "0.5", "0", "100", "fraction",
      "an expert's assumed load sd as a share of its load"),
    D(EXP, "strategy.predictive", "group_corr", "1", "0", "1", "",
      "correlation of the drift of experts in one expert group (0: independent)"),
    I(EXP, "strategy.predictive", "groups", "(the model's n_groups)", "1", "1048576", "groups",
      "expert groups for the correlation (1: none)"),
    I(EXP, "strategy.predictive", "moves", "0", "0", "1000000", "swaps",
      "local-search swaps after the greedy packing"),
    D(EXP, "strategy.predictive", "smooth", "0.5", "1e-6", "1", "",
      "exponential smoothing of the windows' shares (1: the last window only)"),
    I(EXP, "strategy.predictive", "history", "4", "1", "1000", "windows",
      "recent windows whose spread adds to the drift (1: none)"),
    I(EXP, "strategy.predictive", "window_steps", "1000", "1", "100000000", "steps",
      "steps per observed window"),
    I(EXP, "strategy.predictive", "interval_steps", "1000", "0", "100000000", "steps",
      "steps between re-plans (0: never re-plan)"),
    D(EXP, "strategy.predictive", "replan_drift", "0", "0", "2", "L1 distance",
      "re-plan only after a window drifts this far from the planned shares (0: every interval)"),
    I(EXP, "strategy.predictive", "repair_copies", "0", "0", "1000000", "copies",
      "re-plans repair the serving layout with at most this many copies a layer (0: plan afresh)"),
    S(EXP, "strategy.predictive", "coactivation", "none", "a per-token trace path, or none", "",
      "experts chosen by the same tokens of this earlier dump swapped onto one node"),
    D(EXP, "strategy.predictive", "coact_slack", "0", "0", "100", "fraction",
      "co-activation swaps may raise the riskiest device by this share (0: only at equal risk)"),
    D(EXP, "strategy.bias", "u", "0.001", "0", "1", "",
      "bias update speed (auxiliary-loss-free balancing)"),
    D(EXP, "strategy.capacity", "factor", "1.25", "1e-3", "1e6", "ratio",
      "capacity C: pairs beyond C x a device's mean load are dropped or re-routed"),
    B(EXP, "strategy.capacity", "reroute", "false",
      "re-route pairs beyond capacity to the next-best expert with room (false: drop them)"),
    S(EXP, "strategy.NAME", "command", "(required)", "a command line, split into words (no shell)",
      "", "exec:NAME: the external strategy's command (docs/strategies.md)"),
    D(EXP, "strategy.NAME", "timeout_s", "60", "1e-3", "86400", "s",
      "exec:NAME: wall time allowed per call"),
    I(EXP, "strategy.NAME", "npy_above", "1000000", "0", "1099511627776", "values",
      "exec:NAME: loads larger than this go as a .npy file, not inline JSON"),
    I(EXP, "strategy.NAME", "window_steps", "1000", "1", "100000000", "steps",
      "exec:NAME: loads handed over cover this many recent steps"),
    I(EXP, "strategy.NAME", "interval_steps", "1000", "0", "100000000", "steps",
      "exec:NAME: steps between re-plans (0: never re-plan)"),
    S(EXP, "strategy.NAME", "plan_ms", "0", "milliseconds >= 0, or measured", "ms",
      "any strategy: its planning time, overriding [placement] plan_ms"),

    S(EXP, "serving", "instances", "both", "both, decode, prefill", "",
      "which instances are simulated (prefill and decode disaggregated)"),
    I(EXP, "serving", "prefill_nodes", "4", "1", "4096", "nodes", "nodes of the prefill instance"),
    I(EXP, "serving", "prefill_devices_per_node", "([cluster] devices_per_node)", "1", "1024",
      "devices", "devices per prefill node"),
    I(EXP, "serving", "prefill_redundant", "([placement] redundant)", "0", "65536", "slots",
      "redundant expert slots per layer on the prefill instance"),
    S(EXP, "serving", "prefill_trace", "(none: the workload's)", "a trace file", "",
      "expert-activation trace of the prefill instance"),
    I(EXP, "serving", "max_batch_per_device", "128", "1", "1048576", "sequences",
      "decode batch limit per device"),
    I(EXP, "serving", "prefill_tokens_per_device", "8192", "1", "16777216", "tokens",
      "prefill batch limit per device"),
    B(EXP, "serving", "chunked_prefill", "true", "split long prompts over several prefill batches"),
    D(EXP, "serving", "prefix_hit_rate", "0", "0", "0.99", "fraction",
      "share of each prompt served from the KV cache"),
    D(EXP, "serving", "kv_bytes_per_token", "(from the model)", "1", "1e9", "bytes",
      "KV-cache bytes a token holds over all layers"),
    D(EXP, "serving", "hbm_util", "0.9", "0.05", "1", "fraction",
      "usable share of HBM (weights, then KV cache)"),
    D(EXP, "serving", "nonexpert_gb", "(from the model)", "0", "1e5", "GB",
      "weights besides routed experts on every device"),
    D(EXP, "serving", "kv_cache_gb", "(the HBM left)", "1e-6", "1e5", "GB",
      "KV cache per decode device"),
    S(EXP, "serving", "rebalance", "([placement] rebalance)", "blocking, pipelined", "",
      "how weight copies of a re-plan meet serving: stop the batch, or overlap it"),
    D(EXP, "serving", "rebalance_fixed_s", "([placement] rebalance_fixed_s)", "0", "3600", "s",
      "fixed pause added to every re-plan"),
    I(EXP, "serving", "store_every", "1", "1", "1073741824", "steps",
      "store every Nth step's figures"),
    I(EXP, "serving", "trace_step_every", "1", "1", "1073741824", "batches",
      "advance the replayed trace one step every N batches"),
    I(EXP, "serving", "route_samples", "128", "1", "1048576", "tokens",
      "tokens routed to sample a batch's expert loads"),
    I(EXP, "serving", "route_every", "50", "1", "1073741824", "batches",
      "batches between fresh routing samples"),
    E(EXP, "serving", "routing", "auto", "auto, count, token",
      "count: each batch's expert counts drawn from the trace; token: every token routed; "
      "auto: count in the analytic mode, token in the flow mode"),
    D(EXP, "serving", "warmup_s", "0", "0", "1e7", "s",
      "simulated time left out of the latency figures"),
    S(EXP, "serving", "arrival", "poisson", "poisson, gamma, closed, trace", "",
      "request arrival process"),
    D(EXP, "serving", "rate", "10", "1e-6", "1e7", "requests/s", "mean arrival rate"),
    D(EXP, "serving", "cv", "1", "1e-3", "100", "", "gamma arrivals: coefficient of variation"),
    I(EXP, "serving", "concurrency", "64", "1", "100000000", "users",
      "closed arrivals: users each with one request in flight"),
    I(EXP, "serving", "requests", "0", "0", "1000000000", "requests",
      "requests in all (0: until duration_s)"),
    D(EXP, "serving", "duration_s", "0", "0", "1e7", "s",
      "when arrivals stop (with requests = 0)"),
    S(EXP, "serving", "request_trace", "(none)", "a CSV of arrival_timestamp,prompt_size,"
      "token_size (or Azure's columns)", "", "arrival = trace: the requests, path beside this file"),
    S(EXP, "serving", "prompt", "fixed", "fixed, uniform, lognormal", "",
      "prompt length distribution"),
    D(EXP, "serving", "prompt_mean", "1000", "1", "1e7", "tokens", "mean prompt length"),
    D(EXP, "serving", "prompt_cv", "1", "1e-6", "100", "", "lognormal prompt lengths: coefficient "
      "of variation"),
    I(EXP, "serving", "prompt_min", "1", "1", "10000000", "tokens", "shortest prompt"),
    I(EXP, "serving", "prompt_max", "(uniform: 2 x mean - min; else 10000000)", "1", "10000000",
      "tokens", "longest prompt"),
    S(EXP, "serving", "output", "fixed", "fixed, uniform, lognormal", "",
      "output length distribution"),
    D(EXP, "serving", "output_mean", "200", "1", "1e7", "tokens", "mean output length"),
    D(EXP, "serving", "output_cv", "1", "1e-6", "100", "", "lognormal output lengths: coefficient "
      "of variation"),
    I(EXP, "serving", "output_min", "1", "1", "10000000", "tokens", "shortest output"),
    I(EXP, "serving", "output_max", "(uniform: 2 x mean - min; else 10000000)", "1", "10000000",
      "tokens", "longest output"),

    /* ---- model preset file ---- */
    S(MOD, "model", "name", "(required)", "a name", "", "the preset's name"),
    S(MOD, "model", "description", "", "one line", "", "shown by moesim list models"),
    S(MOD, "model", "source", "(the file's path)", "a citation", "", "where the figures come from"),
    I(MOD, "model", "n_layers", "(required)", "1", "100000", "layers", "all transformer layers"),
    I(MOD, "model", "n_dense", "0", "0", "100000", "layers", "leading dense layers"),
    I(MOD, "model", "hidden", "(required)", "1", "16777216", "", "hidden size"),
    I(MOD, "model", "moe_inter", "(required)", "1", "16777216", "",
      "routed expert intermediate size"),
    I(MOD, "model", "dense_inter", "0", "0", "16777216", "", "dense FFN intermediate size"),
    I(MOD, "model", "n_experts", "(required)", "1", "1048576", "experts", "routed experts"),
    I(MOD, "model", "top_k", "(required)", "1", "1048576", "experts", "experts per token"),
    I(MOD, "model", "n_shared", "0", "0", "1024", "experts", "shared experts"),
    I(MOD, "model", "shared_inter", "0", "0", "16777216", "", "shared expert intermediate size"),
    I(MOD, "model", "n_groups", "1", "1", "1048576", "groups",
      "expert groups of group-limited routing (1: none)"),
    I(MOD, "model", "topk_groups", "1", "1", "1048576", "groups", "groups a token may use"),
    I(MOD, "model", "weight_bytes", "2", "1", "8", "bytes", "routed expert weight element"),
    I(MOD, "model", "max_nodes", "0", "0", "4096", "nodes",
      "node limit of routing from training (0: none)"),
    I(MOD, "model", "dispatch_bytes", "2", "1", "8", "bytes", "dispatched activation element"),
    I(MOD, "model", "combine_bytes", "2", "1", "8", "bytes", "combined activation element"),
    I(MOD, "model", "n_heads", "(required)", "1", "65536", "heads", "attention heads"),
    I(MOD, "model", "n_kv_heads", "0", "0", "65536", "heads", "attn = gqa: KV heads"),
    I(MOD, "model", "head_dim", "0", "0", "65536", "", "attn = gqa: head dimension"),
    I(MOD, "model", "q_lora_rank", "0", "0", "1048576", "", "attn = mla: query LoRA rank (0: none)"),
    I(MOD, "model", "kv_lora_rank", "0", "0", "1048576", "", "attn = mla: compressed KV rank"),
    I(MOD, "model", "qk_nope_dim", "0", "0", "65536", "", "attn = mla: non-rotary QK dimension"),
    I(MOD, "model", "qk_rope_dim", "0", "0", "65536", "", "attn = mla: rotary QK dimension"),
    I(MOD, "model", "v_head_dim", "0", "0", "65536", "", "attn = mla: value head dimension"),
    I(MOD, "model", "vocab", "(required)", "1", "1073741824", "tokens", "vocabulary size"),
    I(MOD, "model", "dense_bytes", "2", "1", "8", "bytes",
      "attention, dense FFN and shared expert weight element"),
    I(MOD, "model", "embed_bytes", "2", "1", "8", "bytes", "embedding element"),
    I(MOD, "model", "kv_bytes", "2", "1", "8", "bytes", "KV-cache element"),
    I(MOD, "model", "mtp_modules", "0", "0", "16", "modules",
      "multi-token prediction modules in the checkpoint"),
    E(MOD, "model", "scoring", "softmax", "sigmoid, softmax", "router scoring function"),
    E(MOD, "model", "attn", "gqa", "gqa, mla", "attention kind"),
    D(MOD, "model", "routed_scale", "1", "0", "1e6", "", "routed experts' output scale"),

    /* ---- hardware preset file ---- */
    S(HWF, "hardware", "name", "(required)", "a name", "", "the preset's name"),
    S(HWF, "hardware", "description", "", "one line", "", "shown by moesim list hardware"),
    S(HWF, "hardware", "source", "(the file's path)", "a citation", "",
      "where the figures come from"),
    S(HWF, "hardware", "link_source", "(data-sheet bandwidth, assumed latency)", "a citation", "",
      "where the link model's figures come from"),
    S(HWF, "hardware", "overlap_source", "(none: not measured)", "a citation", "",
      "where overlap_compute and overlap_comm come from"),
    D(HWF, "hardware", "flops_bf16", "(required)", "1e9", "1e18", "FLOP/s", "peak dense BF16 compute"),
    D(HWF, "hardware", "flops_fp8", "(required)", "1e9", "1e18", "FLOP/s", "peak dense FP8 compute"),
    D(HWF, "hardware", "hbm_bytes", "(required)", "1e6", "1e15", "bytes", "HBM capacity per device"),
    D(HWF, "hardware", "hbm_bw", "(required)", "1e6", "1e15", "bytes/s", "HBM bandwidth per device"),
    D(HWF, "hardware", "scaleup_bw", "(required)", "1e6", "1e14", "bytes/s",
      "scale-up bandwidth per device, one direction"),
    D(HWF, "hardware", "nic_bw", "(required)", "1e6", "1e14", "bytes/s",
      "NIC bandwidth per device, one direction"),
    D(HWF, "hardware", "eff_flops", "0.7", "1e-3", "1", "fraction", "achievable share of peak compute"),
    D(HWF, "hardware", "eff_hbm", "0.85", "1e-3", "1", "fraction", "achievable share of HBM bandwidth"),
    D(HWF, "hardware", "eff_scaleup", "0.8", "1e-3", "1", "fraction",
      "achievable share of scale-up bandwidth"),
    D(HWF, "hardware", "eff_nic", "0.8", "1e-3", "1", "fraction", "achievable share of NIC bandwidth"),
    D(HWF, "hardware", "scaleup_lat_ns", "(required)", "0", "1e9", "ns", "scale-up latency floor"),
    D(HWF, "hardware", "nic_lat_ns", "(required)", "0", "1e9", "ns", "NIC latency floor"),
    D(HWF, "hardware", "kernel_ns", "(required)", "0", "1e9", "ns", "fixed cost of a kernel launch"),
    D(HWF, "hardware", "mem_reserve", "0", "0", "1e15", "bytes",
      "HBM held back from weights and KV cache"),
    I(HWF, "hardware", "sms", "0", "0", "1000000", "SMs",
      "streaming multiprocessors a grouped GEMM's tiles run on in waves (0: none)"),
    D(HWF, "hardware", "scaleup_half_bytes", "0", "0", "1e12", "bytes",
      "scale-up ramp half-point per peer (0: no ramp)"),
    D(HWF, "hardware", "scaleup_low_share", "1", "1e-3", "1", "fraction",
      "scale-up ramp: share of the peak for the smallest transfers"),
    D(HWF, "hardware", "scaleup_duplex", "1", "1e-3", "1", "fraction",
      "scale-up bandwidth kept with both directions loaded"),
    D(HWF, "hardware", "nic_half_bytes", "0", "0", "1e12", "bytes",
      "NIC ramp half-point per peer (0: no ramp)"),
    D(HWF, "hardware", "nic_low_share", "1", "1e-3", "1", "fraction",
      "NIC ramp: share of the peak for the smallest transfers"),
    D(HWF, "hardware", "nic_duplex", "1", "1e-3", "1", "fraction",
      "NIC bandwidth kept with both directions loaded"),
    D(HWF, "hardware", "overlap_compute", "1", "1", "10", "factor",
      "two-batch overlap: MoE-layer compute time over its time alone"),
    D(HWF, "hardware", "overlap_comm", "1", "1", "10", "factor",
      "two-batch overlap: scale-up transfer time beside compute over alone"),
    I(HWF, "hardware", "devices_per_host", "8", "1", "1024", "devices", "devices in one host"),

    /* ---- sweep file ---- */
    S(SWP, "sweep", "base", "(required)", "a config path, beside the sweep file", "",
      "the experiment config every point starts from"),
    S(SWP, "sweep", "mode", "grid", "grid, list", "",
      "grid: every combination of [axes]; list: the [point.NAME] sections"),
};
const int cfg_keys_n = (int)(sizeof cfg_keys / sizeof *cfg_keys);

static const char *const TYPE_NAMES[] = {"string", "integer", "number", "boolean", "one of"};

const cfg_key_t *cfg_keys_find(const char *file, const char *section, const char *key) {
    for (int pass = 0; pass < 2; pass++) {
        /* [strategy.X] without rows of its own is an external strategy's */
        const char *sec = pass ? "strategy.NAME" : section;
        if (pass && strncasecmp(section, "strategy.", 9)) break;
        for (int i = 0; i < cfg_keys_n; i++)
            if (!strcmp(cfg_keys[i].file, file) && !strcasecmp(cfg_keys[i].section, sec) &&
                !strcasecmp(cfg_keys[i].key, key))
                return &cfg_keys[i];
    }
    return NULL;
}

/* Numbers as text compare by value: "1e-3" is the code's 1e-3. */
static int same_number(const char *table, const char *code, int integer) {
    if (!table || !code) return table == code;
    char *e1, *e2;
    errno = 0;
    if (integer) {
        long long a = strtoll(table, &e1, 10), b = strtoll(code, &e2, 10);
        return !*e1 && !*e2 && a == b && !errno;
    }
    double a = strtod(table, &e1), b = strtod(code, &e2);
    return !*e1 && !*e2 && a == b;
}

int cfg_keys_verify(const char *file, const char *section, const char *key, cfgk_type_t type,
                    const char *def, const char *min, const char *max,
                    const char *const *names, int n_names, char *why, size_t n_why) {
    const cfg_key_t *k = cfg_keys_find(file, section, key);
    if (!k) {
        snprintf(why, n_why, "the %s key [%s] %s is read but has no row in "
                 "sim/base/cfg_keys.c", file, section, key);
        return MS_ERR;
    }
    if (k->type != type) {
        snprintf(why, n_why, "[%s] %s is read as a %s but sim/base/cfg_keys.c says %s", section,
                 key, TYPE_NAMES[type], TYPE_NAMES[k->type]);
        return MS_ERR;
    }
    if (type == CFGK_INT || type == CFGK_DOUBLE) {
        if (!same_number(k->min, min, type == CFGK_INT) ||
            !same_number(k->max, max, type == CFGK_INT)) {
            snprintf(why, n_why, "[%s] %s is read with the range %s to %s but sim/base/cfg_keys.c "
                     "says %s to %s", section, key, min, max, k->min, k->max);
            return MS_ERR;
        }
    }
    if (type == CFGK_ENUM) {
        char list[512] = "";
        for (int i = 0; i < n_names; i++) {
            size_t n = strlen(list);
            snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", names[i]);
        }
        if (strcmp(list, k->values)) {
            snprintf(why, n_why, "[%s] %s is read as one of '%s' but sim/base/cfg_keys.c says '%s'",
                     section, key, list, k->values);
            return MS_ERR;
        }
    }
    /* "(...)" describes a computed default: not compared */
    if (k->def[0] != '(') {
        int same;
        if (!def) same = 0;
        else if (type == CFGK_INT || type == CFGK_DOUBLE)
            same = same_number(k->def, def, type == CFGK_INT);
        else same = !strcmp(k->def, def);
        if (!same) {
            snprintf(why, n_why, "[%s] %s is read with the default '%s' but sim/base/cfg_keys.c "
                     "says '%s'", section, key, def ? def : "(none)", k->def);
            return MS_ERR;
        }
    }
    return MS_OK;
}

void cfg_keys_check(const char *file, const char *section, const char *key, cfgk_type_t type,
                    const char *def, const char *min, const char *max,
                    const char *const *names, int n_names) {
    char why[768];
    if (cfg_keys_verify(file, section, key, type, def, min, max, names, n_names, why, sizeof why)) {
        fprintf(stderr, "moesim: internal error: %s (add or correct its row there, then run "
                "make config-doc)\n", why);
        fflush(NULL);
        _exit(MS_EXIT_INTERNAL);
    }
}

/* ---- the Markdown reference ---- */

/* Writes s with Markdown's table separator escaped (the table's text is
 * ours, but a | would still break the row). */
static void md(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
}

static const struct {
    const char *file, *title, *intro;
} FILES[] = {
    {CFGK_EXPERIMENT, "Experiment config",
     "The file given to `run`, `compare` and a sweep's `base`; `--set section.key=value` "
     "overrides any key."},
    {CFGK_MODEL, "Model preset file",
     "`configs/models/*.ini` (embedded), or a path given as `[model] preset`."},
    {CFGK_HARDWARE, "Hardware preset file",
     "`configs/hardware/*.ini` (embedded), or a path given as `[cluster] hardware`."},
    {CFGK_SWEEP, "Sweep file",
     "`moesim sweep FILE`: `[sweep]` below; `[set]`, `[axes]` and `[point.NAME]` hold "
     "`section.key` assignments of the experiment keys (docs/sweeps.md)."},
};

int cfg_keys_markdown(FILE *f) {
    fprintf(f, "%s\n\n", CFG_KEYS_BEGIN);
    fprintf(f, "%d keys. Range: the values accepted (inclusive). A default in parentheses is "
            "computed or required, as it says.\n", cfg_keys_n);
    for (size_t fi = 0; fi < sizeof FILES / sizeof *FILES; fi++) {
        fprintf(f, "\n## %s\n\n%s\n", FILES[fi].title, FILES[fi].intro);
        const char *sec = NULL;
        for (int i = 0; i < cfg_keys_n; i++) {
            const cfg_key_t *k = &cfg_keys[i];
            if (strcmp(k->file, FILES[fi].file)) continue;
            if (!sec || strcasecmp(sec, k->section)) {
                sec = k->section;
                fprintf(f, "\n### [%s]\n\n| key | type | default | range | unit | meaning |\n"
                        "|---|---|---|---|---|---|\n", sec);
            }
            fprintf(f, "| %s | %s | ", k->key, k->type == CFGK_ENUM ? "enum" : TYPE_NAMES[k->type]);
            md(f, *k->def ? k->def : "(empty)");
            fputs(" | ", f);
            if (k->type == CFGK_INT || k->type == CFGK_DOUBLE) fprintf(f, "%s to %s", k->min, k->max);
            else if (k->type == CFGK_BOOL) fputs("true, false", f);
            else if (k->values) md(f, k->values);
            fputs(" | ", f);
            md(f, k->unit);
            fputs(" | ", f);
            md(f, k->meaning);
            fputs(" |\n", f);
        }
    }
    fprintf(f, "\n%s\n", CFG_KEYS_END);
    return fflush(f) || ferror(f) ? MS_ERR : MS_OK;
}

int cfg_keys_update_doc(const char *path) {
    char *text = NULL, *gen = NULL;
    size_t len, glen;
    if (ms_read_file(path, &text, &len)) return MS_ERR;
    char *b = strstr(text, CFG_KEYS_BEGIN), *e = b ? strstr(b, CFG_KEYS_END) : NULL;
    if (!b || !e) {
        free(text);
        return ms_err("%s: no generated part (the lines '%s' and '%s' mark where it goes)", path,
                      CFG_KEYS_BEGIN, CFG_KEYS_END);
    }
    e += strlen(CFG_KEYS_END);
    if (*e == '\n') e++;
    FILE *m = open_memstream(&gen, &glen);
    if (!m || cfg_keys_markdown(m)) {
        if (m) fclose(m);
        free(gen);
        free(text);
        return ms_err("%s: cannot build the key reference in memory", path);
    }
    fclose(m);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *o = fopen(tmp, "w");
    int rc = MS_OK;
    if (!o) {
        rc = ms_err("%s: cannot write: %s", tmp, strerror(errno));
    } else {
        fwrite(text, 1, (size_t)(b - text), o);
        fwrite(gen, 1, glen, o);
        fputs(e, o);
        int bad = ferror(o);
        if (fclose(o) || bad || rename(tmp, path)) {
            rc = ms_err("%s: cannot write: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    free(gen);
    free(text);
    return rc;
}
