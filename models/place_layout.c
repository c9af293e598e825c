/* place_layout: the "layout" strategy replays a layout from a file,
 * [placement] layout = FILE (SGLang's physical_to_logical_map JSON or a
 * moesim layout CSV, place_io.c), fixed for the whole run. It is how a
 * layout made elsewhere (SGLang's EPLB dump, `moesim place --out`) is
 * scored beside the strategies that plan their own. */
#include <stdlib.h>

#include "place.h"
#include "util.h"

static int layout_init(const place_env_t *env, const double *prior, place_state_t **st,
                       place_layout_t **out) {
    (void)prior;
    const char *file = NULL;
    if (env->cfg && cfg_str(env->cfg, "placement", "layout", NULL, &file)) return MS_ERR;
    if (!file)
        return ms_err("%s: strategy layout needs [placement] layout = FILE (an SGLang "
                      "physical_to_logical_map JSON or a moesim layout CSV, e.g. from "
                      "moesim place --out)", env->cfg ? cfg_origin(env->cfg) : "layout");
    char path[4096];
    ms_path_beside(cfg_origin(env->cfg), file, path, sizeof path);
    int S = env->n_experts + env->redundant;
    if (place_check_slots(env, "")) return MS_ERR;
    if (place_layout_read(path, env->n_layers, env->n_experts, env->n_devices,
                          env->devices_per_node, S, out))
        return MS_ERR;
    *st = NULL;
    return MS_OK;
}

const place_ops_t place_layout_ops = {
    .version = 1,
    .name = "layout",
    .summary = "a fixed layout from [placement] layout = FILE (SGLang JSON or moesim CSV)",
    .algo_version = 1,
    .requires = "[placement] layout",
    .init = layout_init,
};
