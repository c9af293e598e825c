/* moe: Mixture-of-Experts models: layer counts, sizes, routing shape,
 * attention shape and weight dtypes, from presets (INI files under
 * configs/models/, built in; or any such file by path) or imported from a
 * Hugging Face config.json. The helpers below turn a model into parameter,
 * byte and FLOP counts for the cost model (models/cost.h). */
#ifndef MOESIM_MOE_H
#define MOESIM_MOE_H

enum moe_scoring { MOE_SIGMOID, MOE_SOFTMAX };

/* Attention kind: multi-head latent attention (DeepSeek, Kimi: the KV cache
 * holds one compressed latent per token) or grouped-query attention (Qwen,
 * Mixtral: n_kv_heads keys and values per token). */
enum moe_attn { MOE_ATTN_GQA, MOE_ATTN_MLA };

typedef struct moe_model {
    const char *name;
    const char *description; /* one line for `moesim list models` */
    const char *source;  /* where the figures come from */
    int n_layers;        /* transformer layers */
    int n_dense;         /* leading dense (non-MoE) layers */
    int hidden;          /* hidden size */
    int moe_inter;       /* routed expert intermediate size */
    int dense_inter;     /* dense-layer FFN intermediate size */
    int n_experts;       /* routed experts per MoE layer */
    int top_k;           /* routed experts per token */
    int n_shared;        /* shared experts per MoE layer */
    int shared_inter;    /* intermediate size of one shared expert */
    int n_groups;        /* expert groups for group-limited routing (1: none) */
    int topk_groups;     /* groups kept per token */
    int max_nodes;       /* node-limited routing: nodes a token may reach (0: none) */
    enum moe_scoring scoring;
    double routed_scale; /* routed_scaling_factor */
    int weight_bytes;    /* bytes per expert weight element (FP8 1, BF16 2) */
    int dispatch_bytes;  /* bytes per hidden element sent in dispatch */
    int combine_bytes;   /* bytes per hidden element sent back in combine */
    /* attention and the rest of the network */
    enum moe_attn attn;
    int n_heads;         /* query heads */
    int n_kv_heads;      /* GQA: key/value heads */
    int head_dim;        /* GQA: per-head dimension */
    int q_lora_rank;     /* MLA: query compression rank (0: none) */
    int kv_lora_rank;    /* MLA: latent KV rank (cached) */
    int qk_nope_dim;     /* MLA: per-head query/key dimension without RoPE */
    int qk_rope_dim;     /* MLA: decoupled RoPE key dimension (cached, shared by heads) */
    int v_head_dim;      /* MLA: per-head value dimension */
    int vocab;           /* vocabulary (embedding and output head) */
    int dense_bytes;     /* bytes per element of attention, dense-FFN and shared-expert
                          * weights */
    int embed_bytes;     /* bytes per element of the embedding and output head */
    int kv_bytes;        /* bytes per cached KV element */
    /* Multi-token prediction (DeepSeek-V3 report sec. 2.2; README_WEIGHTS.md
     * of its checkpoint): an MTP module is the shared embedding, RMSNorms,
     * a projection eh_proj (2 x hidden -> hidden), one transformer block
     * identical to a main MoE layer (attention and its own routed and shared
     * experts: model.layers.61) and the shared output head. */
    int mtp_modules;     /* MTP modules in the checkpoint (num_nextn_predict_layers) */
    int mtp_depth;       /* a run's setting, not the preset's: draft tokens verified per
                          * decode step (0: no speculative decoding); the one module is
                          * run mtp_depth times a step, as SGLang's EAGLE worker does */
} moe_model_t;

/* The built-in preset named name (case-insensitive), or NULL. */
const moe_model_t *moe_find(const char *name);
/* Comma-separated names of the built-in presets, for messages. */
const char *moe_names(void);
int moe_count(void);
const moe_model_t *moe_at(int i);
/* The embedded file a built-in preset came from (configs/models/NAME.ini). */
const char *moe_file(int i);
/* A model from a file: a preset INI ([model] section, keys as in
 * configs/models/) or, for a name ending in .json, a Hugging Face
 * config.json. Every error names the file (and line or field). */
int moe_load(const char *path, moe_model_t *out);
int moe_import_hf(const char *path, moe_model_t *out);
/* A [model] preset value: a built-in name, or a file (preset_is_path) read
 * beside cfg_path. where leads the message when the name is unknown. */
int moe_resolve(const char *value, const char *cfg_path, const char *where, moe_model_t *out);
static inline int moe_n_moe_layers(const moe_model_t *m) { return m->n_layers - m->n_dense; }
/* Bytes of one routed expert's weights (gate, up and down projections). */
double moe_expert_bytes(const moe_model_t *m);
/* The same for a given element size (1 FP8/INT8, 2 BF16): expert bytes by dtype. */
double moe_expert_bytes_as(const moe_model_t *m, int bytes_per_weight);
/* Parameters of one layer's attention block (projections; norms ignored). */
double moe_attn_params(const moe_model_t *m);
/* KV-cache bytes one token keeps per layer. */
double moe_kv_bytes_per_token(const moe_model_t *m);
/* FLOPs of the attention core per token per cached position: scores and
 * the weighted sum of values over all heads. Decode runs MLA in its
 * absorbed form (keys and values are the 512+64 latent), prefill in its
 * multi-head form (192-wide keys, 128-wide values per head). */
double moe_attn_core_flops(const moe_model_t *m, int prefill);
/* Weight bytes every device holds whatever the placement: embedding and
 * output head, every layer's attention, the dense layers' FFNs and the
 * shared experts (data-parallel attention, as DeepSeek and SGLang deploy),
 * and the held MTP module's share of the same (moe_mtp_weight_bytes). */
double moe_dense_weight_bytes(const moe_model_t *m);

/* MTP modules a run holds: one when mtp_depth > 0 (deeper drafts reuse it),
 * none otherwise. */
static inline int moe_mtp_held(const moe_model_t *m) { return m->mtp_depth > 0 ? 1 : 0; }
/* Passes of the MTP module in one step: mtp_depth in decode (one draft
 * each), one in prefill (the first draft, over the prompt). */
static inline int moe_mtp_passes(const moe_model_t *m, int prefill) {
    return prefill ? moe_mtp_held(m) : m->mtp_depth;
}
/* Layers with a KV cache: the main model's plus the MTP block's. */
static inline int moe_kv_layers(const moe_model_t *m) { return m->n_layers + moe_mtp_held(m); }
/* Weights of the held MTP module that every device keeps besides its
 * routed experts: eh_proj, the block's attention and shared experts (the
 * embedding and head are the main model's). 0 without MTP. */
double moe_mtp_weight_bytes(const moe_model_t *m);

#endif
