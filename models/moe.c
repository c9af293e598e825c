/* moe: model presets from each model's public config.json (Hugging Face
 * model repositories, file config.json; the field names are given beside
 * the less obvious figures). */
#include "moe.h"

#include <stddef.h>
#include <strings.h>

static const moe_model_t presets[] = {
    /* deepseek-ai/DeepSeek-V3 config.json: num_hidden_layers 61,
     * first_k_dense_replace 3, hidden_size 7168, moe_intermediate_size 2048,
     * intermediate_size 18432, n_routed_experts 256, num_experts_per_tok 8,
     * n_shared_experts 1, n_group 8, topk_group 4, scoring_func sigmoid,
     * routed_scaling_factor 2.5, num_attention_heads 128, q_lora_rank 1536,
     * kv_lora_rank 512, qk_nope_head_dim 128, qk_rope_head_dim 64,
     * v_head_dim 128, vocab_size 129280; quantization_config fp8 (linear
     * layers; embedding and head stay BF16), num_nextn_predict_layers 1.
     * DeepEP dispatches FP8 and combines BF16. */
    {.name = "deepseek-v3", .source = "deepseek-ai/DeepSeek-V3 config.json", .n_layers = 61,
     .n_dense = 3, .hidden = 7168, .moe_inter = 2048, .dense_inter = 18432, .n_experts = 256,
     .top_k = 8, .n_shared = 1, .shared_inter = 2048, .n_groups = 8, .topk_groups = 4,
     .scoring = MOE_SIGMOID, .routed_scale = 2.5, .weight_bytes = 1, .dispatch_bytes = 1,
     .combine_bytes = 2, .attn = MOE_ATTN_MLA, .n_heads = 128, .q_lora_rank = 1536,
     .kv_lora_rank = 512, .qk_nope_dim = 128, .qk_rope_dim = 64, .v_head_dim = 128,
     .vocab = 129280, .dense_bytes = 1, .embed_bytes = 2, .kv_bytes = 2, .mtp_modules = 1},
    /* moonshotai/Kimi-K2-Instruct config.json: the DeepSeek-V3 architecture
     * with num_hidden_layers 61, first_k_dense_replace 1, n_routed_experts
     * 384, n_group 1, topk_group 1, routed_scaling_factor 2.827,
     * num_attention_heads 64, vocab_size 163840; FP8 block weights. */
    {.name = "kimi-k2", .source = "moonshotai/Kimi-K2-Instruct config.json", .n_layers = 61,
     .n_dense = 1, .hidden = 7168, .moe_inter = 2048, .dense_inter = 18432, .n_experts = 384,
     .top_k = 8, .n_shared = 1, .shared_inter = 2048, .n_groups = 1, .topk_groups = 1,
     .scoring = MOE_SIGMOID, .routed_scale = 2.827, .weight_bytes = 1, .dispatch_bytes = 1,
     .combine_bytes = 2, .attn = MOE_ATTN_MLA, .n_heads = 64, .q_lora_rank = 1536,
     .kv_lora_rank = 512, .qk_nope_dim = 128, .qk_rope_dim = 64, .v_head_dim = 128,
     .vocab = 163840, .dense_bytes = 1, .embed_bytes = 2, .kv_bytes = 2},
    /* Qwen/Qwen3-235B-A22B config.json: num_hidden_layers 94 (all MoE,
     * mlp_only_layers []), hidden_size 4096, moe_intermediate_size 1536,
     * num_experts 128, num_experts_per_tok 8, num_attention_heads 64,
     * num_key_value_heads 4, head_dim 128, vocab_size 151936, bfloat16,
     * softmax routing (norm_topk_prob true), no shared expert. */
    {.name = "qwen3-235b-a22b", .source = "Qwen/Qwen3-235B-A22B config.json", .n_layers = 94,
     .n_dense = 0, .hidden = 4096, .moe_inter = 1536, .dense_inter = 12288, .n_experts = 128,
     .top_k = 8, .n_shared = 0, .n_groups = 1, .topk_groups = 1, .scoring = MOE_SOFTMAX,
     .routed_scale = 1.0, .weight_bytes = 2, .dispatch_bytes = 2, .combine_bytes = 2,
     .attn = MOE_ATTN_GQA, .n_heads = 64, .n_kv_heads = 4, .head_dim = 128, .vocab = 151936,
     .dense_bytes = 2, .embed_bytes = 2, .kv_bytes = 2},
    /* Qwen/Qwen3-30B-A3B config.json: num_hidden_layers 48, hidden_size
     * 2048, moe_intermediate_size 768, num_experts 128, top-8,
     * num_attention_heads 32, num_key_value_heads 4, head_dim 128,
     * vocab_size 151936, bfloat16. */
    {.name = "qwen3-30b-a3b", .source = "Qwen/Qwen3-30B-A3B config.json", .n_layers = 48,
     .n_dense = 0, .hidden = 2048, .moe_inter = 768, .dense_inter = 6144, .n_experts = 128,
     .top_k = 8, .n_shared = 0, .n_groups = 1, .topk_groups = 1, .scoring = MOE_SOFTMAX,
     .routed_scale = 1.0, .weight_bytes = 2, .dispatch_bytes = 2, .combine_bytes = 2,
     .attn = MOE_ATTN_GQA, .n_heads = 32, .n_kv_heads = 4, .head_dim = 128, .vocab = 151936,
     .dense_bytes = 2, .embed_bytes = 2, .kv_bytes = 2},
    /* mistralai/Mixtral-8x7B-v0.1 config.json: num_hidden_layers 32,
     * hidden_size 4096, intermediate_size 14336 (per expert),
     * num_local_experts 8, num_experts_per_tok 2, num_attention_heads 32,
     * num_key_value_heads 8 (head_dim 4096/32 = 128), vocab_size 32000,
     * bfloat16, softmax routing. */
    {.name = "mixtral-8x7b", .source = "mistralai/Mixtral-8x7B-v0.1 config.json", .n_layers = 32,
     .n_dense = 0, .hidden = 4096, .moe_inter = 14336, .dense_inter = 14336, .n_experts = 8,
     .top_k = 2, .n_shared = 0, .n_groups = 1, .topk_groups = 1, .scoring = MOE_SOFTMAX,
     .routed_scale = 1.0, .weight_bytes = 2, .dispatch_bytes = 2, .combine_bytes = 2,
     .attn = MOE_ATTN_GQA, .n_heads = 32, .n_kv_heads = 8, .head_dim = 128, .vocab = 32000,
     .dense_bytes = 2, .embed_bytes = 2, .kv_bytes = 2},
};

const moe_model_t *moe_find(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcasecmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

const char *moe_names(void) {
    return "deepseek-v3, kimi-k2, qwen3-235b-a22b, qwen3-30b-a3b, mixtral-8x7b";
}

double moe_expert_bytes_as(const moe_model_t *m, int bytes_per_weight) {
    return 3.0 * m->hidden * (double)m->moe_inter * bytes_per_weight;
}

double moe_expert_bytes(const moe_model_t *m) { return moe_expert_bytes_as(m, m->weight_bytes); }

double moe_attn_params(const moe_model_t *m) {
    double h = m->hidden, H = m->n_heads;
    if (m->attn == MOE_ATTN_GQA) {
        double hd = m->head_dim;
        return h * H * hd + 2.0 * h * m->n_kv_heads * hd + H * hd * h;
    }
    double qk = (double)m->qk_nope_dim + m->qk_rope_dim;
    double q = m->q_lora_rank ? h * m->q_lora_rank + (double)m->q_lora_rank * H * qk : h * H * qk;
    double kv_a = h * ((double)m->kv_lora_rank + m->qk_rope_dim);
    double kv_b = (double)m->kv_lora_rank * H * ((double)m->qk_nope_dim + m->v_head_dim);
    double o = H * m->v_head_dim * h;
    return q + kv_a + kv_b + o;
}

double moe_kv_bytes_per_token(const moe_model_t *m) {
    if (m->attn == MOE_ATTN_GQA) return 2.0 * m->n_kv_heads * m->head_dim * m->kv_bytes;
    return ((double)m->kv_lora_rank + m->qk_rope_dim) * m->kv_bytes;
}

double moe_attn_core_flops(const moe_model_t *m, int prefill) {
    double H = m->n_heads;
    if (m->attn == MOE_ATTN_GQA) return 2.0 * H * 2.0 * m->head_dim;
    if (prefill) return 2.0 * H * ((double)m->qk_nope_dim + m->qk_rope_dim + m->v_head_dim);
    return 2.0 * H * (2.0 * m->kv_lora_rank + m->qk_rope_dim);
}

double moe_dense_weight_bytes(const moe_model_t *m) {
    double h = m->hidden;
    double embed = 2.0 * m->vocab * h * m->embed_bytes; /* input embedding + output head */
    double attn = m->n_layers * moe_attn_params(m) * m->dense_bytes;
    double dense = m->n_dense * 3.0 * h * m->dense_inter * m->dense_bytes;
    double shared = moe_n_moe_layers(m) * (double)m->n_shared * 3.0 * h * m->shared_inter *
                    m->dense_bytes;
    return embed + attn + dense + shared + moe_mtp_weight_bytes(m);
}

double moe_mtp_weight_bytes(const moe_model_t *m) {
    if (!moe_mtp_held(m)) return 0;
    double h = m->hidden;
    double proj = 2.0 * h * h, attn = moe_attn_params(m);
    double shared = (double)m->n_shared * 3.0 * h * m->shared_inter;
    return moe_mtp_held(m) * (proj + attn + shared) * m->dense_bytes;
}
