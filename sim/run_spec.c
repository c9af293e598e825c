/* run_spec: an experiment's config read into a plain spec (run_spec.h),
 * checked whole before anything runs. */
#include "run_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "calib.h"
#include "presets.h"
#include "record.h"
#include "replan.h"
#include "trace.h"
#include "util.h"

/* Hardware fields that [hardware] may override, with their units. */
#define HW_FIELDS(X)                                                   \
    X(flops_bf16, 1e9, 1e18) X(flops_fp8, 1e9, 1e18)                   \
    X(hbm_bytes, 1e6, 1e15) X(hbm_bw, 1e6, 1e15)                        \
    X(scaleup_bw, 1e6, 1e14) X(nic_bw, 1e6, 1e14)                       \
    X(eff_flops, 1e-3, 1) X(eff_hbm, 1e-3, 1) X(eff_scaleup, 1e-3, 1)   \
    X(eff_nic, 1e-3, 1) X(scaleup_lat_ns, 0, 1e9) X(nic_lat_ns, 0, 1e9) \
    X(kernel_ns, 0, 1e9) X(mem_reserve, 0, 1e15)                        \
    X(scaleup_half_bytes, 0, 1e12) X(scaleup_low_share, 1e-3, 1)        \
    X(scaleup_duplex, 1e-3, 1) X(nic_half_bytes, 0, 1e12)               \
    X(nic_low_share, 1e-3, 1) X(nic_duplex, 1e-3, 1)                    \
    X(overlap_compute, 1, 10) X(overlap_comm, 1, 10)

static int split_list(const char *s, run_spec_t *o, const char *where) {
    o->n_strategies = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        size_t n = strcspn(p, " ,\t");
        if (o->n_strategies == RUN_MAX_STRATEGIES || n >= sizeof o->strategies[0])
            return ms_err("%s: too many or too long strategy names", where);
        memcpy(o->strategies[o->n_strategies], p, n);
        o->strategies[o->n_strategies][n] = 0;
        if (!place_find(o->strategies[o->n_strategies]))
            return ms_err("%s: unknown strategy '%s' (known: %s)", where,
                          o->strategies[o->n_strategies], place_names());
        for (int i = 0; i < o->n_strategies; i++)
            if (!strcmp(o->strategies[i], o->strategies[o->n_strategies]))
                return ms_err("%s: strategy '%s' is listed twice (its runs would share one "
                              "config hash; list it once)", where, o->strategies[i]);
        o->n_strategies++;
        p += n;
    }
    if (!o->n_strategies) return ms_err("%s: [placement] strategies is empty (example: static)", where);
    return MS_OK;
}

int run_cluster_load(cfg_t *cfg, cluster_t *c) {
    static const char *const modes[] = {"flow", "analytic"};
    static const char *const a2a[] = {"auto", "normal", "low_latency"};
    int i;
    if (cfg_enum(cfg, "cluster", "mode", "flow", modes, 2, &i)) return MS_ERR;
    c->mode = i ? STEP_ANALYTIC : STEP_FLOW;
    if (cfg_enum(cfg, "cluster", "a2a", "auto", a2a, 3, &i)) return MS_ERR;
    c->a2a = i == 1 ? STEP_A2A_NORMAL : i == 2 ? STEP_A2A_LOW_LATENCY : STEP_A2A_AUTO;
    if (cfg_bool(cfg, "cluster", "overlap", 0, &c->overlap)) return MS_ERR;
    if (cfg_double(cfg, "cluster", "spine_oversub", 1, 1, 1e6, &c->spine_oversub)) return MS_ERR;
    return MS_OK;
}

int run_parallel_load(cfg_t *cfg, cluster_t *c, int tokens_per_device) {
    long v;
    int dpn = c->devices_per_node, D = c->n_devices;
    /* the scale-up domain: whole nodes, and the cluster whole domains */
    if (cfg_int(cfg, "cluster", "scaleup_domain", dpn, 1, 1 << 22, &v)) return MS_ERR;
    if (v % dpn || D % v)
        return ms_err("%s: scaleup_domain = %ld devices: a scale-up domain holds whole nodes and "
                      "the cluster whole domains (devices_per_node = %d, %d devices: use a "
                      "multiple of %d that divides %d)", cfg_where(cfg, "cluster", "scaleup_domain"),
                      v, dpn, D, dpn, D);
    c->domain = (int)v;
    if (cfg_int(cfg, "cluster", "attn_tp", 1, 1, HW_MAX_PER_HOST, &v)) return MS_ERR;
    if (c->domain % v)
        return ms_err("%s: attn_tp = %ld does not divide the scale-up domain of %d devices (an "
                      "attention group's all-reduce stays inside one domain: use a divisor of %d, "
                      "or 1 for data-parallel attention)", cfg_where(cfg, "cluster", "attn_tp"), v,
                      c->domain, c->domain);
    c->attn_tp = (int)v;
    if (cfg_int(cfg, "cluster", "pp", 1, 1, 4096, &v)) return MS_ERR;
    int pp = (int)v;
    if (c->n_nodes % pp || (D / pp) % c->domain)
        return ms_err("%s: pp = %d stages do not split %d nodes (%d devices) into equal stages of "
                      "whole nodes and whole scale-up domains of %d devices (use a divisor of %d "
                      "that leaves each stage a multiple of %d devices)",
                      cfg_where(cfg, "cluster", "pp"), pp, c->n_nodes, D, c->domain, c->n_nodes,
                      c->domain);
    c->pp = pp;
    if (pp == 1 && cfg_has(cfg, "cluster", "micro_batches"))
        return ms_err("%s: micro_batches splits the batch of a pipeline (set [cluster] pp > 1, "
                      "or remove the key)", cfg_where(cfg, "cluster", "micro_batches"));
    if (cfg_int(cfg, "cluster", "micro_batches", pp, 1, 1 << 20, &v)) return MS_ERR;
    if (v > tokens_per_device)
        return ms_err("%s: micro_batches = %ld is more than the %d tokens a device holds (each "
                      "micro-batch needs one: use at most %d, or more [workload] "
                      "tokens_per_device)", cfg_where(cfg, "cluster", "micro_batches"), v,
                      tokens_per_device, tokens_per_device);
    c->micro_batches = (int)v;
    if (pp > 1 && c->overlap)
        return ms_err("%s: overlap (two micro-batches) and pp = %d (micro_batches) both split "
                      "the batch: keep one (set overlap = false)",
                      cfg_where(cfg, "cluster", "overlap"), pp);
    if (pp > 1) { /* from here on the cluster is one stage: the expert-parallel group */
        c->n_nodes /= pp;
        c->n_devices /= pp;
    }
    return MS_OK;
}

int run_model_load(cfg_t *cfg, moe_model_t *m) {
    static const char *const dtypes[] = {"fp8", "bf16"};
    int i;
    if (cfg_enum(cfg, "model", "weight_dtype", m->weight_bytes == 1 ? "fp8" : "bf16", dtypes, 2,
                   &i))
        return MS_ERR;
    m->weight_bytes = i ? 2 : 1;
    long v;
    if (cfg_int(cfg, "model", "mtp_depth", 0, 0, RUN_MTP_MAX, &v)) return MS_ERR;
    if (v > 0 && m->mtp_modules < 1)
        return ms_err("%s: mtp_depth = %ld but model %s has no multi-token prediction module "
                      "(num_nextn_predict_layers 0); set mtp_depth = 0 or use deepseek-v3",
                      cfg_where(cfg, "model", "mtp_depth"), v, m->name);
    m->mtp_depth = (int)v;
    return MS_OK;
}

/* [model] mtp_accept: one acceptance rate per draft depth, each the chance
 * that draft i is accepted once drafts before it were. DeepSeek reports
 * the second token accepted 85-90% of the time (DeepSeek-V3 report, sec.
 * 5.4.3), so depth 1 defaults to 0.85, the low end; deeper drafts have no
 * published rate and must be given. */
static int mtp_load(cfg_t *cfg, run_spec_t *o) {
    int depth = o->model.mtp_depth;
    const char *s, *where = cfg_where(cfg, "model", "mtp_accept");
    if (cfg_str(cfg, "model", "mtp_accept", depth == 1 ? "0.85" : NULL, &s)) return MS_ERR;
    o->mtp_tokens = 1;
    if (!depth) return MS_OK;
    if (!s)
        return ms_err("%s: mtp_depth = %d needs mtp_accept, one acceptance rate per draft "
                      "(example: mtp_accept = 0.85, 0.6%s)", cfg_where(cfg, "model", "mtp_depth"),
                      depth, depth > 2 ? ", ..." : "");
    int n = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        char *end;
        double a = strtod(p, &end);
        if (end == p || (*end && !strchr(" ,\t", *end)) || !(a >= 0 && a <= 1))
            return ms_err("%s: mtp_accept '%s': give numbers between 0 and 1, one per draft",
                          where, s);
        if (n == depth)
            return ms_err("%s: mtp_accept has more than mtp_depth = %d rates", where, depth);
        o->mtp_accept[n++] = a;
        p = end;
    }
    if (n != depth)
        return ms_err("%s: mtp_accept has %d rates but mtp_depth is %d (one per draft)", where, n,
                      depth);
    double run = 1;
    for (int i = 0; i < depth; i++) {
        run *= o->mtp_accept[i];
        o->mtp_tokens += run;
    }
    return MS_OK;
}

int run_spec_load(cfg_t *cfg, run_spec_t *o) {
    memset(o, 0, sizeof *o);
    o->cfg = cfg;
    long v;
    const char *s;
    if (cfg_str(cfg, "experiment", "name", "experiment", &o->name)) return MS_ERR;
    if (cfg_int(cfg, "experiment", "seed", 1, 0, INT64_MAX, &v)) return MS_ERR;
    o->seed = (uint64_t)v;
    if (cfg_int(cfg, "experiment", "seeds", 1, 1, 1000, &v)) return MS_ERR;
    o->seeds = (int)v;
    if (cfg_int(cfg, "experiment", "steps", 20, 1, 100000000, &v)) return MS_ERR;
    o->steps = (int)v;

    /* A built-in name, or a preset file (or, for the model, a Hugging Face
     * config.json) beside the config. */
    if (cfg_str(cfg, "model", "preset", "deepseek-v3", &s) ||
        moe_resolve(s, cfg_origin(cfg), cfg_where(cfg, "model", "preset"), &o->model))
        return MS_ERR;

    if (cfg_str(cfg, "cluster", "hardware", "H800", &s) ||
        hw_resolve(s, cfg_origin(cfg), cfg_where(cfg, "cluster", "hardware"), &o->cluster.hw))
        return MS_ERR;
    const hw_t *hw = &o->cluster.hw;
    /* A built-in preset's measured curve, fitted against the preset itself;
     * a preset read from a file has none unless [hardware] calibration
     * names one. */
    if (!preset_is_path(s)) o->cluster.hw.calib = calib_builtin(hw);
#define OVERRIDE(f, lo, hi) \
    if (cfg_double(cfg, "hardware", #f, o->cluster.hw.f, lo, hi, &o->cluster.hw.f)) return MS_ERR;
    HW_FIELDS(OVERRIDE)
#undef OVERRIDE
    /* a count of SMs, whole as in a preset file (models/hw.c) */
    if (cfg_int(cfg, "hardware", "sms", (long)o->cluster.hw.sms, 0, HW_MAX_SMS, &v)) return MS_ERR;
    o->cluster.hw.sms = (double)v;
    /* none | default (the preset's measured curve, if any) | CSV paths. */
    if (cfg_str(cfg, "hardware", "calibration", "default", &s) ||
        calib_select(s, &o->cluster.hw, cfg_origin(cfg), cfg_where(cfg, "hardware", "calibration"),
                     &o->cluster.hw.calib))
        return MS_ERR;
    if (cfg_int(cfg, "cluster", "nodes", 1, 1, 4096, &v)) return MS_ERR;
    o->cluster.n_nodes = (int)v;
    if (cfg_int(cfg, "cluster", "devices_per_node", hw->devices_per_host, 1, HW_MAX_PER_HOST, &v))
        return MS_ERR;
    o->cluster.devices_per_node = (int)v;
    o->cluster.n_devices = o->cluster.n_nodes * o->cluster.devices_per_node;
    if (run_cluster_load(cfg, &o->cluster) || run_model_load(cfg, &o->model) || mtp_load(cfg, o))
        return MS_ERR;
    if (o->cluster.mode == STEP_FLOW) { /* traffic tables: 2 micro-batches x L x D x D floats */
        char what[128];
        double D = o->cluster.n_devices;
        snprintf(what, sizeof what, "[cluster] nodes = %d x devices_per_node = %d (%d devices)",
                 o->cluster.n_nodes, o->cluster.devices_per_node, o->cluster.n_devices);
        if (ms_check_memory(2.0 * moe_n_moe_layers(&o->model) * D * D * 4,
                            cfg_where(cfg, "cluster", "nodes"), what))
            return MS_ERR;
    }

    const char *ph;
    if (cfg_str(cfg, "workload", "trace", NULL, &s) ||
        cfg_str(cfg, "workload", "phases", NULL, &ph))
        return MS_ERR;
    if (s && ph)
        return ms_err("%s: [workload] has both trace and phases (keep one: phases replays "
                      "its traces one after another)", cfg_where(cfg, "workload", "phases"));
    if (ph) {
        if (phase_parse(ph, cfg_origin(cfg), cfg_where(cfg, "workload", "phases"), &o->phases))
            return MS_ERR;
        o->trace_name = ph;
        snprintf(o->trace_path, sizeof o->trace_path, "%s", o->phases.p[0].path);
    } else {
        if (!s)
            return ms_err("%s: no [workload] trace (example: trace = ../traces/data/"
                          "deepseek-v3-sglang/decode_in1000out1000.json)", cfg_origin(cfg));
        o->trace_name = s;
        ms_path_beside(cfg_origin(cfg), s, o->trace_path, sizeof o->trace_path);
    }
    if (cfg_int(cfg, "workload", "tokens_per_device", 128, 1, 1 << 20, &v)) return MS_ERR;
    o->tokens_per_device = (int)v;
    if (run_parallel_load(cfg, &o->cluster, o->tokens_per_device)) return MS_ERR;
    if (cfg_double(cfg, "workload", "kv_len", 1024, 0, 1e8, &o->kv_len)) return MS_ERR;
    {
        static const char *const phases[] = {"decode", "prefill"};
        int ph;
        if (cfg_enum(cfg, "workload", "phase", "decode", phases, 2, &ph)) return MS_ERR;
        o->prefill = ph;
        if (cfg_double(cfg, "workload", "prefix_hit_rate", 0, 0, 0.99, &o->prefix_hit_rate))
            return MS_ERR;
        if (!ph && o->prefix_hit_rate > 0)
            return ms_err("%s: prefix_hit_rate applies to prefill batches (set [workload] phase = "
                          "prefill, or remove it)", cfg_where(cfg, "workload", "prefix_hit_rate"));
    }

    /* Routing: DeepSeek-V3's group limit (top groups by their best two
     * scores) on by default where the model has groups; its node limit
     * (each token on at most max_nodes nodes, from training) on request. */
    int node_limit;
    if (cfg_bool(cfg, "routing", "group_limit", o->model.n_groups > 1, &o->group_limit) ||
        cfg_bool(cfg, "routing", "node_limit", 0, &node_limit) ||
        cfg_int(cfg, "routing", "max_nodes", o->model.max_nodes, 0, 4096, &v))
        return MS_ERR;
    o->max_nodes = node_limit ? (int)v : 0;
    if (node_limit && v < 1)
        return ms_err("%s: node_limit = true but model %s has no node limit (set [routing] "
                      "max_nodes = M, the nodes a token may reach)",
                      cfg_where(cfg, "routing", "node_limit"), o->model.name);
    if (cfg_int(cfg, "placement", "redundant", 0, 0, 1 << 16, &v)) return MS_ERR;
    o->redundant = (int)v;
    if (prior_spec_load(cfg, &o->prior)) return MS_ERR;
    if (cfg_str(cfg, "placement", "strategies", "static", &s)) return MS_ERR;
    if (split_list(s, o, cfg_where(cfg, "placement", "strategies"))) return MS_ERR;
    /* [placement] layout is read by the layout strategy alone: without it
     * the key would pass for a typo. */
    int replays = 0;
    for (int i = 0; i < o->n_strategies; i++) replays |= !strcasecmp(o->strategies[i], "layout");
    if (!replays && cfg_has(cfg, "placement", "layout"))
        return ms_err("%s: [placement] layout is replayed by strategy 'layout' (add layout to "
                      "[placement] strategies, or remove the key)",
                      cfg_where(cfg, "placement", "layout"));

    int slots = o->model.n_experts + o->redundant;
    if (slots % o->cluster.n_devices)
        return ms_err("%s: %d experts + %d redundant = %d slots per layer do not divide over "
                      "%d devices (%d nodes x %d); choose redundant so the sum is a multiple of %d",
                      cfg_where(cfg, "placement", "redundant"), o->model.n_experts, o->redundant,
                      slots, o->cluster.n_devices, o->cluster.n_nodes,
                      o->cluster.devices_per_node, o->cluster.n_devices);
    gate_spec_t gs;
    if (run_gate_spec(o, &o->cluster, &gs)) return MS_ERR;
    o->serving = cfg_has_section(cfg, "serving");
    if (o->serving && (cluster_pp(&o->cluster) > 1 || cluster_tp(&o->cluster) > 1))
        return ms_err("%s: [cluster] %s = %d is simulated in fixed-batch runs only, not in "
                      "serving (remove the [serving] section, or set it to 1)",
                      cfg_where(cfg, "cluster", cluster_pp(&o->cluster) > 1 ? "pp" : "attn_tp"),
                      cluster_pp(&o->cluster) > 1 ? "pp" : "attn_tp",
                      cluster_pp(&o->cluster) > 1 ? o->cluster.pp : o->cluster.attn_tp);
    if (o->serving &&
        serve_spec_load(cfg, &o->cluster, &o->model, o->redundant, &o->serve))
        return MS_ERR;
    return MS_OK;
}

int run_gate_spec(const run_spec_t *sp, const cluster_t *c, gate_spec_t *out) {
    const moe_model_t *m = &sp->model;
    return gate_spec_make(m->n_experts, m->top_k, sp->group_limit ? m->n_groups : 1,
                          m->topk_groups, c->n_nodes, sp->max_nodes, cfg_origin(sp->cfg), out);
}

place_env_t run_strategy_env(const run_spec_t *sp, const cluster_t *c, int redundant,
                             const place_ops_t *ops, char *sec, size_t n) {
    place_cfg_section(ops, sec, n);
    return (place_env_t){.n_layers = moe_n_moe_layers(&sp->model),
                         .n_experts = sp->model.n_experts, .n_devices = c->n_devices,
                         .devices_per_node = c->devices_per_node, .n_nodes = c->n_nodes,
                         .redundant = redundant, .top_k = sp->model.top_k,
                         .n_groups = sp->model.n_groups, .topk_groups = sp->model.topk_groups,
                         .cfg = sp->cfg, .cfg_section = sec, .seed = sp->seed};
}

int run_spec_check_trace(const run_spec_t *sp, const trace_t *t) {
    int L = moe_n_moe_layers(&sp->model);
    if (t->n_layers != L || t->n_experts != sp->model.n_experts)
        return ms_err("%s: trace has %d MoE layers x %d experts but model %s has %d x %d "
                      "(use a trace recorded from %s, or set [model] preset to match)",
                      sp->trace_path, t->n_layers, t->n_experts, sp->model.name, L,
                      sp->model.n_experts, sp->model.name);
    return MS_OK;
}

char *run_config_text(const cfg_t *cfg, const char *strategy, char hash[17]) {
    cfg_t *one = cfg_copy(cfg);
    cfg_set(one, "placement", "strategies", strategy, cfg_origin(cfg), 0);
    /* The prior in effect is part of the run's identity even when the
     * config leaves it to the default (older runs were all oracle). */
    if (!cfg_has(one, "placement", "prior"))
        cfg_set(one, "placement", "prior", PRIOR_DEFAULT, cfg_origin(cfg), 0);
    char *text = cfg_canonical(one);
    cfg_free(one);
    record_hash(text, hash);
    return text;
}

int run_validate(const run_spec_t *sp) {
    trace_t *tr = NULL;
    for (int i = 1; i < sp->phases.n; i++) { /* every phase's trace must fit the model */
        if (trace_read(sp->phases.p[i].path, &tr) || run_spec_check_trace(sp, tr)) {
            trace_free(tr);
            return MS_ERR;
        }
        trace_free(tr);
        tr = NULL;
    }
    if (trace_read(sp->trace_path, &tr) || run_spec_check_trace(sp, tr)) {
        trace_free(tr);
        return MS_ERR;
    }
    int rc = MS_OK;
    double *prior = NULL;
    /* past needs the run's own replay; the other priors are read now, so a
     * bad prior file fails before anything runs. */
    if (sp->prior.kind != PRIOR_PAST && prior_build(&sp->prior, tr, NULL, 0, 1, &prior)) {
        trace_free(tr);
        return MS_ERR;
    }
    for (int i = 0; i < sp->n_strategies && rc == MS_OK; i++) {
        const place_ops_t *ops = place_find(sp->strategies[i]);
        char sec[64];
        place_env_t env = run_strategy_env(sp, &sp->cluster, sp->redundant, ops, sec, sizeof sec);
        /* the re-planning keys, [strategy.NAME] plan_ms among them */
        replan_spec_t rs;
        if ((rc = replan_spec_load(sp->cfg, ops, &rs))) break;
        gate_spec_t gs;
        if ((rc = run_gate_spec(sp, &sp->cluster, &gs))) break;
        env.gate = &gs;
        place_state_t *ps = NULL;
        place_layout_t *lo = NULL;
        rc = ops->init(&env, prior, &ps, &lo);
        place_layout_free(lo);
        if (ps && ops->destroy) ops->destroy(ps);
    }
    free(prior);
    trace_free(tr);
    return rc;
}

int run_spec_check(const run_spec_t *sp) {
    return run_validate(sp) || cfg_check_unused(sp->cfg) ? MS_ERR : MS_OK;
}

