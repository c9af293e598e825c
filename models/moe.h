/* moe: Mixture-of-Experts model presets (from each model's public
 * config.json): layer counts, sizes, routing shape and weight dtype. A
 * preset is one entry of the table in moe.c. */
#ifndef MOESIM_MOE_H
#define MOESIM_MOE_H

enum moe_scoring { MOE_SIGMOID, MOE_SOFTMAX };

typedef struct moe_model {
    const char *name;
    int n_layers;        /* transformer layers */
    int n_dense;         /* leading dense (non-MoE) layers */
    int hidden;          /* hidden size */
    int moe_inter;       /* routed expert intermediate size */
    int dense_inter;     /* dense-layer FFN intermediate size */
    int n_experts;       /* routed experts per MoE layer */
    int top_k;           /* routed experts per token */
    int n_shared;        /* shared experts per MoE layer */
    int n_groups;        /* expert groups for group-limited routing (1: none) */
    int topk_groups;     /* groups kept per token */
    enum moe_scoring scoring;
    double routed_scale; /* routed_scaling_factor */
    int weight_bytes;    /* bytes per expert weight element (FP8 1, BF16 2) */
    int dispatch_bytes;  /* bytes per hidden element sent in dispatch */
    int combine_bytes;   /* bytes per hidden element sent back in combine */
} moe_model_t;

const moe_model_t *moe_find(const char *name);
const char *moe_names(void);
static inline int moe_n_moe_layers(const moe_model_t *m) { return m->n_layers - m->n_dense; }
/* Bytes of one routed expert's weights (gate, up and down projections). */
double moe_expert_bytes(const moe_model_t *m);

#endif
