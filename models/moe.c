/* moe: model presets from each model's public config.json. */
#include "moe.h"

#include <stddef.h>
#include <strings.h>

static const moe_model_t presets[] = {
    /* DeepSeek-V3/R1: 61 layers, the first 3 dense; 256 routed experts in 8
     * groups (keep 4), top-8, sigmoid scores, scale 2.5, FP8 weights. DeepEP
     * dispatches FP8 and combines BF16. */
    {.name = "deepseek-v3", .n_layers = 61, .n_dense = 3, .hidden = 7168, .moe_inter = 2048,
     .dense_inter = 18432, .n_experts = 256, .top_k = 8, .n_shared = 1, .n_groups = 8,
     .topk_groups = 4, .scoring = MOE_SIGMOID, .routed_scale = 2.5, .weight_bytes = 1,
     .dispatch_bytes = 1, .combine_bytes = 2},
};

const moe_model_t *moe_find(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcasecmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

const char *moe_names(void) { return "deepseek-v3"; }

double moe_expert_bytes(const moe_model_t *m) {
    return 3.0 * m->hidden * (double)m->moe_inter * m->weight_bytes;
}
