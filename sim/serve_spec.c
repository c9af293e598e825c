/* serve_spec: [serving] keys read and checked into serve_spec_t; every
 * complaint names file:line and the fix. */
#include "serve_spec.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define SEC "serving"

int serve_spec_load(cfg_t *cfg, const cluster_t *decode, const moe_model_t *model, int redundant,
                    serve_spec_t *o) {
    memset(o, 0, sizeof *o);
    const char *s;
    long v;
    double x;
    if (cfg_str(cfg, SEC, "instances", "both", &s)) return MS_ERR;
    if (!strcasecmp(s, "both")) o->instances = SERVE_BOTH;
    else if (!strcasecmp(s, "decode")) o->instances = SERVE_DECODE;
    else if (!strcasecmp(s, "prefill")) o->instances = SERVE_PREFILL;
    else
        return ms_err("%s: [serving] instances = '%s' (give both, decode or prefill)",
                      cfg_where(cfg, SEC, "instances"), s);

    o->prefill = (*decode);
    if (cfg_int(cfg, SEC, "prefill_nodes", 4, 1, 4096, &v)) return MS_ERR;
    o->prefill.n_nodes = (int)v;
    if (cfg_int(cfg, SEC, "prefill_devices_per_node", (*decode).devices_per_node, 1,
                HW_MAX_PER_HOST, &v))
        return MS_ERR;
    o->prefill.devices_per_node = (int)v;
    o->prefill.n_devices = o->prefill.n_nodes * o->prefill.devices_per_node;
    /* the decode cluster's scale-up domain where the prefill one has whole
     * ones of it, else one node */
    int dom = cluster_domain(decode);
    if (dom % o->prefill.devices_per_node || o->prefill.n_devices % dom) o->prefill.domain = 0;
    if (cfg_int(cfg, SEC, "prefill_redundant", redundant, 0, 1 << 16, &v)) return MS_ERR;
    o->prefill_redundant = (int)v;
    int E = model->n_experts;
    if (o->instances != SERVE_DECODE && (E + o->prefill_redundant) % o->prefill.n_devices)
        return ms_err("%s: prefill: %d experts + %d redundant = %d slots per layer do not divide "
                      "over %d devices (%d nodes x %d); choose prefill_redundant or prefill_nodes "
                      "so they do", cfg_where(cfg, SEC, "prefill_redundant"), E,
                      o->prefill_redundant, E + o->prefill_redundant, o->prefill.n_devices,
                      o->prefill.n_nodes, o->prefill.devices_per_node);
    if (cfg_str(cfg, SEC, "prefill_trace", NULL, &s)) return MS_ERR;
    if (s) {
        o->prefill_trace_name = s;
        ms_path_beside(cfg_origin(cfg), s, o->prefill_trace_path, sizeof o->prefill_trace_path);
    }

    if (cfg_int(cfg, SEC, "max_batch_per_device", 128, 1, 1 << 20, &v)) return MS_ERR;
    o->max_batch_per_device = (int)v;
    if (cfg_int(cfg, SEC, "prefill_tokens_per_device", 8192, 1, 1 << 24, &v)) return MS_ERR;
    o->prefill_tokens_per_device = (int)v;
    if (cfg_bool(cfg, SEC, "chunked_prefill", 1, &o->chunked_prefill)) return MS_ERR;
    if (cfg_double(cfg, SEC, "prefix_hit_rate", 0, 0, 0.99, &o->prefix_hit_rate)) return MS_ERR;

    /* KV bytes a token and the weights besides routed experts come from the
     * model preset (MLA caches the compressed KV; attention, shared experts,
     * dense layers and embeddings sit on every device); both can be set. */
    if (cfg_double(cfg, SEC, "kv_bytes_per_token",
                   moe_kv_bytes_per_token(model) * moe_kv_layers(model), 1, 1e9,
                   &o->kv_bytes_per_token))
        return MS_ERR;
    double util;
    if (cfg_double(cfg, SEC, "hbm_util", 0.9, 0.05, 1, &util)) return MS_ERR;
    int has_kv = cfg_has(cfg, SEC, "kv_cache_gb");
    double nonexp, def_nonexp = moe_dense_weight_bytes(model) / 1e9;
    if (cfg_double(cfg, SEC, "nonexpert_gb", def_nonexp, 0, 1e5, &nonexp)) return MS_ERR;
    int L = moe_n_moe_layers(model);
    double slots = (double)(E + redundant) / (*decode).n_devices;
    /* the MTP block's experts are placed as the last MoE layer's */
    double experts = slots * (L + moe_mtp_held(model)) * moe_expert_bytes(model);
    double derived = (*decode).hw.hbm_bytes * util - experts - nonexp * 1e9;
    if (cfg_double(cfg, SEC, "kv_cache_gb", derived / 1e9, 1e-6, 1e5, &x)) return MS_ERR;
    if (!has_kv && derived <= 0)
        return ms_err("%s: no HBM left for the KV cache on a decode device: %.1f GB x %.2f "
                      "usable - %.1f GB routed experts (%.2f slots x %d layers) - %.1f GB other "
                      "weights = %.1f GB (use more decode devices, or set kv_cache_gb)",
                      cfg_origin(cfg), (*decode).hw.hbm_bytes / 1e9, util, experts / 1e9, slots,
                      L, nonexp, derived / 1e9);
    o->kv_cache_bytes = x * 1e9;
    o->kv_capacity_tokens = floor(o->kv_cache_bytes / o->kv_bytes_per_token);

    /* [placement] rebalance (fixed-batch runs too) is the default here */
    const char *pdef;
    if (cfg_str(cfg, "placement", "rebalance", "pipelined", &pdef)) return MS_ERR;
    if (strcasecmp(pdef, "pipelined") && strcasecmp(pdef, "blocking"))
        return ms_err("%s: [placement] rebalance = '%s' (give blocking or pipelined)",
                      cfg_where(cfg, "placement", "rebalance"), pdef);
    if (cfg_str(cfg, SEC, "rebalance", pdef, &s)) return MS_ERR;
    if (!strcasecmp(s, "pipelined")) o->rebalance = MIGR_PIPELINED;
    else if (!strcasecmp(s, "blocking")) o->rebalance = MIGR_BLOCKING;
    else
        return ms_err("%s: [serving] rebalance = '%s' (give blocking or pipelined)",
                      cfg_where(cfg, SEC, "rebalance"), s);
    double pfix;
    if (cfg_double(cfg, "placement", "rebalance_fixed_s", 0, 0, 3600, &pfix) ||
        cfg_double(cfg, SEC, "rebalance_fixed_s", pfix, 0, 3600, &x))
        return MS_ERR;
    o->rebalance_fixed_ns = llround(x * 1e9);
    if (cfg_int(cfg, SEC, "store_every", 1, 1, 1 << 30, &v)) return MS_ERR;
    o->store_every = (int)v;
    if (cfg_int(cfg, SEC, "trace_step_every", 1, 1, 1 << 30, &v)) return MS_ERR;
    o->trace_step_every = (int)v;
    if (cfg_int(cfg, SEC, "route_samples", 128, 1, 1 << 20, &v)) return MS_ERR;
    o->route_samples = (int)v;
    if (cfg_int(cfg, SEC, "route_every", 50, 1, 1 << 30, &v)) return MS_ERR;
    o->route_every = (int)v;
    static const char *const routings[] = {"auto", "count", "token"};
    int r;
    if (cfg_enum(cfg, SEC, "routing", "auto", routings, 3, &r)) return MS_ERR;
    o->routing = (enum serve_routing)r;
    if (cfg_double(cfg, SEC, "warmup_s", 0, 0, 1e7, &o->warmup_s)) return MS_ERR;
    return req_spec_load(cfg, SEC, &o->req);
}

