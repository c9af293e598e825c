/* moe: models from preset INI files (the built-in ones embedded from
 * configs/models/, presets_data.c) and from Hugging Face config.json files,
 * and the byte and FLOP counts the cost model needs. */
#include "moe.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "presets.h"
#include "util.h"

/* The integer keys of a preset file: the struct field of the same name,
 * its range, and whether it must be given (else the default). */
static const struct {
    const char *key;
    size_t off;
    long min, max, def;
    int required;
} INT_KEYS[] = {
#define K(f, lo, hi, d, req) {#f, offsetof(moe_model_t, f), lo, hi, d, req}
    K(n_layers, 1, 100000, 0, 1),      K(n_dense, 0, 100000, 0, 0),
    K(hidden, 1, 1 << 24, 0, 1),       K(moe_inter, 1, 1 << 24, 0, 1),
    K(dense_inter, 0, 1 << 24, 0, 0),  K(n_experts, 1, 1 << 20, 0, 1),
    K(top_k, 1, 1 << 20, 0, 1),        K(n_shared, 0, 1 << 10, 0, 0),
    K(shared_inter, 0, 1 << 24, 0, 0), K(n_groups, 1, 1 << 20, 1, 0),
    K(topk_groups, 1, 1 << 20, 1, 0),  K(weight_bytes, 1, 8, 2, 0),
    K(max_nodes, 0, 4096, 0, 0),
    K(dispatch_bytes, 1, 8, 2, 0),     K(combine_bytes, 1, 8, 2, 0),
    K(n_heads, 1, 1 << 16, 0, 1),      K(n_kv_heads, 0, 1 << 16, 0, 0),
    K(head_dim, 0, 1 << 16, 0, 0),     K(q_lora_rank, 0, 1 << 20, 0, 0),
    K(kv_lora_rank, 0, 1 << 20, 0, 0), K(qk_nope_dim, 0, 1 << 16, 0, 0),
    K(qk_rope_dim, 0, 1 << 16, 0, 0),  K(v_head_dim, 0, 1 << 16, 0, 0),
    K(vocab, 1, 1 << 30, 0, 1),        K(dense_bytes, 1, 8, 2, 0),
    K(embed_bytes, 1, 8, 2, 0),        K(kv_bytes, 1, 8, 2, 0),
    K(mtp_modules, 0, 16, 0, 0),
#undef K
};
#define N_INT_KEYS (sizeof INT_KEYS / sizeof *INT_KEYS)

/* What no single key can say: the shape must hold together. */
static int check(const moe_model_t *m, const char *file) {
    if (m->n_dense >= m->n_layers)
        return ms_err("%s: n_dense = %d leaves no MoE layer of n_layers = %d (n_dense counts the "
                      "leading dense layers)", file, m->n_dense, m->n_layers);
    if (m->top_k > m->n_experts)
        return ms_err("%s: top_k = %d is more than n_experts = %d", file, m->top_k, m->n_experts);
    if (m->n_experts % m->n_groups)
        return ms_err("%s: n_experts = %d do not divide into n_groups = %d (give a divisor, or "
                      "n_groups = 1 for no group-limited routing)", file, m->n_experts,
                      m->n_groups);
    if (m->topk_groups > m->n_groups)
        return ms_err("%s: topk_groups = %d is more than n_groups = %d", file, m->topk_groups,
                      m->n_groups);
    if (m->n_shared && !m->shared_inter)
        return ms_err("%s: n_shared = %d shared experts need shared_inter (their intermediate "
                      "size)", file, m->n_shared);
    if (m->attn == MOE_ATTN_GQA && (!m->n_kv_heads || !m->head_dim))
        return ms_err("%s: attn = gqa needs n_kv_heads and head_dim", file);
    if (m->attn == MOE_ATTN_MLA && (!m->kv_lora_rank || !m->qk_nope_dim || !m->qk_rope_dim ||
                                    !m->v_head_dim))
        return ms_err("%s: attn = mla needs kv_lora_rank, qk_nope_dim, qk_rope_dim and "
                      "v_head_dim", file);
    return MS_OK;
}

/* Reads the [model] section of a preset file; every key is checked and an
 * unknown one is an error (a typo would otherwise leave a default). */
static int parse_ini(cfg_t *c, const char *file, moe_model_t *m) {
    static const char *const scorings[] = {"sigmoid", "softmax"};
    static const char *const attns[] = {"gqa", "mla"};
    const char *name, *desc, *src;
    memset(m, 0, sizeof *m);
    cfg_set_kind(c, CFGK_MODEL);
    if (cfg_str(c, "model", "name", NULL, &name) || cfg_str(c, "model", "description", "", &desc) ||
        cfg_str(c, "model", "source", file, &src))
        return MS_ERR;
    if (!name)
        return ms_err("%s: no [model] name (every preset file names its model, e.g. name = "
                      "deepseek-v3)", file);
    for (size_t i = 0; i < N_INT_KEYS; i++) {
        long v;
        if (INT_KEYS[i].required && !cfg_has(c, "model", INT_KEYS[i].key))
            return ms_err("%s: no [model] %s (required; see configs/models/deepseek-v3.ini)", file,
                          INT_KEYS[i].key);
        if (cfg_int(c, "model", INT_KEYS[i].key, INT_KEYS[i].def, INT_KEYS[i].min,
                    INT_KEYS[i].max, &v))
            return MS_ERR;
        *(int *)((char *)m + INT_KEYS[i].off) = (int)v;
    }
    int sc, at;
    if (cfg_enum(c, "model", "scoring", "softmax", scorings, 2, &sc) ||
        cfg_enum(c, "model", "attn", "gqa", attns, 2, &at) ||
        cfg_double(c, "model", "routed_scale", 1.0, 0, 1e6, &m->routed_scale))
        return MS_ERR;
    m->scoring = sc ? MOE_SOFTMAX : MOE_SIGMOID;
    m->attn = at ? MOE_ATTN_MLA : MOE_ATTN_GQA;
    if (cfg_check_unused(c) || check(m, file)) return MS_ERR;
    m->name = preset_intern(name);
    m->description = preset_intern(desc);
    m->source = preset_intern(src);
    return MS_OK;
}

/* ---- the built-in presets -------------------------------------------- */

static moe_model_t builtin[32];
static const char *builtin_file[32];
static int n_builtin = -1; /* -1: not read yet */

static void load_builtin(void) {
    if (n_builtin >= 0) return;
    n_builtin = 0;
    for (int i = 0; i < preset_n_blobs && n_builtin < 32; i++) {
        const preset_blob_t *b = &preset_blobs[i];
        if (strcmp(b->kind, "models")) continue;
        cfg_t *c = NULL;
        /* A broken embedded preset is a build error the tests catch; here
         * it is reported and left out. */
        if (cfg_parse_text(b->text, b->path, &c) == MS_OK &&
            parse_ini(c, b->path, &builtin[n_builtin]) == MS_OK)
            builtin_file[n_builtin++] = b->path;
        cfg_free(c);
    }
}

const moe_model_t *moe_find(const char *name) {
    load_builtin();
    for (int i = 0; i < n_builtin; i++)
        if (!strcasecmp(builtin[i].name, name)) return &builtin[i];
    return NULL;
}

int moe_count(void) {
    load_builtin();
    return n_builtin;
}

const moe_model_t *moe_at(int i) { return i >= 0 && i < moe_count() ? &builtin[i] : NULL; }
const char *moe_file(int i) { return i >= 0 && i < moe_count() ? builtin_file[i] : NULL; }

const char *moe_names(void) {
    static char buf[1024];
    if (!buf[0])
        for (int i = 0; i < moe_count(); i++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? ", " : "",
                     builtin[i].name);
    return buf;
}

/* ---- files ------------------------------------------------------------ */

int moe_load(const char *path, moe_model_t *out) {
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) return moe_import_hf(path, out);
    cfg_t *c = NULL;
    if (cfg_load(path, &c)) return MS_ERR;
    int rc = parse_ini(c, path, out);
    cfg_free(c);
    return rc;
}

int moe_resolve(const char *value, const char *cfg_path, const char *where, moe_model_t *out) {
    if (preset_is_path(value)) {
        char path[4096];
        ms_path_beside(cfg_path, value, path, sizeof path);
        return moe_load(path, out);
    }
    const moe_model_t *m = moe_find(value);
    if (!m)
        return ms_err("%s: unknown model preset '%s' (known: %s; or give a preset .ini or a "
                      "Hugging Face config.json path)", where, value, moe_names());
    *out = *m;
    return MS_OK;
}

/* ---- Hugging Face config.json ------------------------------------------ */

/* The first of the keys present, as a whole number; def when none is. */
static int hf_int(json_t *root, const char *path, const char *const *keys, long def, long min,
                  long max, long *out) {
    for (const char *const *k = keys; *k; k++) {
        json_t *v = json_object_get(root, *k);
        if (!v || json_is_null(v)) continue;
        if (!json_is_integer(v))
            return ms_err("%s: \"%s\" is not a whole number", path, *k);
        json_int_t x = json_integer_value(v);
        if (x < min || x > max)
            return ms_err("%s: \"%s\" = %lld is out of range (%ld to %ld)", path, *k,
                          (long long)x, min, max);
        *out = (long)x;
        return MS_OK;
    }
    if (def >= 0) {
        *out = def;
        return MS_OK;
    }
    return ms_err("%s: no \"%s\" (a Hugging Face config.json of a Mixture-of-Experts model has "
                  "it)", path, keys[0]);
}

int moe_import_hf(const char *path, moe_model_t *out) {
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line < 0) return ms_err("%s: cannot read: %s", path, jerr.text);
        return ms_err("%s:%d:%d: invalid JSON: %s (a Hugging Face config.json is one JSON object)",
                      path, jerr.line, jerr.column, jerr.text);
    }
    int rc = MS_ERR;
    moe_model_t m;
    memset(&m, 0, sizeof m);
    long v;
    if (!json_is_object(root)) {
        ms_err("%s: not a JSON object (expected a Hugging Face config.json)", path);
        goto out;
    }
#define GET(field, def, lo, hi, ...)                                                   \
    do {                                                                               \
        static const char *const keys_[] = {__VA_ARGS__, NULL};                        \
        if (hf_int(root, path, keys_, def, lo, hi, &v)) goto out;                      \
        m.field = (int)v;                                                              \
    } while (0)
    /* routed experts: DeepSeek/Kimi n_routed_experts, Qwen num_experts,
     * Mixtral num_local_experts */
    {
        static const char *const ek[] = {"n_routed_experts", "num_experts", "num_local_experts",
                                         NULL};
        if (hf_int(root, path, ek, 0, 0, 1 << 20, &v)) goto out;
        if (v < 1) {
            ms_err("%s: no n_routed_experts, num_experts or num_local_experts: not a "
                   "Mixture-of-Experts model", path);
            goto out;
        }
        m.n_experts = (int)v;
    }
    GET(n_layers, -1, 1, 100000, "num_hidden_layers");
    GET(n_dense, 0, 0, 100000, "first_k_dense_replace");
    GET(hidden, -1, 1, 1 << 24, "hidden_size");
    GET(dense_inter, 0, 0, 1 << 24, "intermediate_size");
    /* Mixtral has no moe_intermediate_size: its experts are intermediate_size wide */
    GET(moe_inter, m.dense_inter ? m.dense_inter : -1, 1, 1 << 24, "moe_intermediate_size");
    GET(top_k, -1, 1, 1 << 20, "num_experts_per_tok");
    GET(n_shared, 0, 0, 1 << 10, "n_shared_experts");
    m.shared_inter = m.n_shared ? m.moe_inter : 0;
    GET(n_groups, 1, 1, 1 << 20, "n_group");
    GET(topk_groups, 1, 1, 1 << 20, "topk_group");
    GET(n_heads, -1, 1, 1 << 16, "num_attention_heads");
    GET(vocab, -1, 1, 1 << 30, "vocab_size");
    GET(mtp_modules, 0, 0, 16, "num_nextn_predict_layers");
    /* moesim models dense layers only as a leading block */
    {
        long freq = 1, step = 1;
        static const char *const fk[] = {"moe_layer_freq", NULL}, *const sk[] = {
                                                                "decoder_sparse_step", NULL};
        if (hf_int(root, path, fk, 1, 0, 1 << 20, &freq) ||
            hf_int(root, path, sk, 1, 0, 1 << 20, &step))
            goto out;
        json_t *mlp_only = json_object_get(root, "mlp_only_layers");
        if (freq != 1 || step != 1 || (json_is_array(mlp_only) && json_array_size(mlp_only))) {
            ms_err("%s: dense layers between MoE layers (moe_layer_freq, decoder_sparse_step or "
                   "mlp_only_layers): moesim models dense layers only as a leading block (write "
                   "a preset .ini with n_dense instead)", path);
            goto out;
        }
    }
    json_t *sf = json_object_get(root, "scoring_func");
    m.scoring = json_is_string(sf) && !strcmp(json_string_value(sf), "sigmoid") ? MOE_SIGMOID
                                                                                  : MOE_SOFTMAX;
    json_t *rs = json_object_get(root, "routed_scaling_factor");
    m.routed_scale = json_is_number(rs) ? json_number_value(rs) : 1.0;
    if (json_object_get(root, "kv_lora_rank")) { /* multi-head latent attention */
        m.attn = MOE_ATTN_MLA;
        GET(q_lora_rank, 0, 0, 1 << 20, "q_lora_rank");
        GET(kv_lora_rank, -1, 1, 1 << 20, "kv_lora_rank");
        GET(qk_nope_dim, -1, 1, 1 << 16, "qk_nope_head_dim");
        GET(qk_rope_dim, -1, 1, 1 << 16, "qk_rope_head_dim");
        GET(v_head_dim, -1, 1, 1 << 16, "v_head_dim");
    } else {
        m.attn = MOE_ATTN_GQA;
        GET(n_kv_heads, m.n_heads, 1, 1 << 16, "num_key_value_heads");
        GET(head_dim, m.hidden / m.n_heads, 1, 1 << 16, "head_dim");
    }
#undef GET
    /* Element sizes: FP8 checkpoints (quantization_config quant_method fp8)
     * keep linear weights in 8 bits and dispatch in FP8 as DeepEP does;
     * embeddings, combine and the KV cache stay in torch_dtype (16 bits). */
    json_t *dt = json_object_get(root, "torch_dtype");
    const char *dts = json_is_string(dt) ? json_string_value(dt) : "bfloat16";
    int bytes = !strcmp(dts, "float32") ? 4 : 2;
    json_t *qc = json_object_get(root, "quantization_config");
    json_t *qm = json_is_object(qc) ? json_object_get(qc, "quant_method") : NULL;
    int fp8 = json_is_string(qm) && !strcmp(json_string_value(qm), "fp8");
    m.weight_bytes = m.dense_bytes = m.dispatch_bytes = fp8 ? 1 : bytes;
    m.combine_bytes = m.embed_bytes = m.kv_bytes = bytes;
    if (check(&m, path)) goto out;
    /* the name: the folder of a config.json, else the file's own name */
    char buf[4096], name[4096];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (slash && !strcmp(slash + 1, "config.json")) {
        *slash = 0;
        slash = strrchr(buf, '/');
    }
    snprintf(name, sizeof name, "%s", slash ? slash + 1 : buf);
    size_t nl = strlen(name);
    if (nl > 5 && !strcmp(name + nl - 5, ".json")) name[nl - 5] = 0;
    char desc[256], src[4200];
    snprintf(desc, sizeof desc, "imported from a Hugging Face config.json: %d layers (%d dense), "
             "%d experts top-%d", m.n_layers, m.n_dense, m.n_experts, m.top_k);
    snprintf(src, sizeof src, "%s (Hugging Face config.json)", path);
    m.name = preset_intern(name[0] ? name : "model");
    m.description = preset_intern(desc);
    m.source = preset_intern(src);
    *out = m;
    rc = MS_OK;
out:
    json_decref(root);
    return rc;
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
