/* place_static: the static baseline. Contiguous: expert e of every layer on
 * device e / (E/D), SGLang's "trivial" location. Round-robin (order =
 * round-robin): expert e on device e mod D. Redundant slots, if any, hold
 * extra copies of experts 0, 1, ... in the same pattern. Never re-plans. */
#include <stdlib.h>
#include <string.h>

#include "place.h"
#include "util.h"

static int static_init(const place_env_t *env, const double *prior, place_state_t **st,
                       place_layout_t **out) {
    (void)prior;
    const char *order;
    const char *sec = place_param_section(env, "strategy.static");
    if (place_param_str(env, sec, "order", "contiguous", &order)) return MS_ERR;
    int rr = !strcmp(order, "round-robin");
    if (!rr && strcmp(order, "contiguous"))
        return ms_err("%s: [%s] order = '%s' (give contiguous or round-robin)",
                      cfg_where(env->cfg, sec, "order"), sec, order);
    int D = env->n_devices, E = env->n_experts, S = E + env->redundant;
    if (place_check_slots(env, "")) return MS_ERR;
    int spd = S / D;
    int *se = ms_malloc((size_t)S * sizeof *se);
    /* Contiguous is SGLang's trivial location: slot p holds expert p mod E,
     * so with no redundancy device d holds experts [d*E/D, (d+1)*E/D), and
     * redundant slots (the last R) hold second copies of experts 0, 1, ...
     * on the last devices, never beside their first copy. Round-robin deals
     * experts across devices, item i = k*D + d to the k-th slot of device d;
     * the wrap past E shifts by one expert so a copy never lands on the
     * device of its first copy. */
    for (int s = 0; s < S; s++) {
        int dev = s / spd, k = s % spd, i = k * D + dev;
        se[s] = rr ? (i + i / E) % E : s % E;
    }
    place_layout_t *lo = place_layout_new(env->n_layers, E, D, env->devices_per_node);
    for (int l = 0; l < env->n_layers; l++)
        if (place_layer_set(lo, l, spd, se)) {
            free(se);
            place_layout_free(lo);
            return MS_ERR;
        }
    free(se);
    *st = NULL;
    *out = lo;
    return MS_OK;
}

const place_ops_t place_static_ops = {
    .version = 1,
    .name = "static",
    .color = "#7f7f7f",
    .point = 5,
    .baseline = 1,
    .summary = "static contiguous (or round-robin) placement, never re-planned",
    .algo_version = 1,
    .init = static_init,
};
