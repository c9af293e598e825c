/* place_io: layouts to and from files other tools read: SGLang's
 * expert-location JSON (what `--init-expert-location` loads) and moesim's
 * own layout CSV. Reading sniffs the format and checks every shape, id and
 * slot against the deployment, so a replayed layout is exactly the one
 * written, or a message saying where it is wrong and how to fix it.
 *
 * SGLang (python/sglang/srt/eplb/expert_location.py): when the file has
 * "physical_to_logical_map", compute_initial_expert_location_metadata hands
 * it to ExpertLocationMetadata.init_by_mapping, which takes it as a tensor
 * of [num_layers][num_physical_experts] logical expert ids. num_layers is
 * the model's layer count as the model class reports it for expert
 * location (DeepSeek-V3: num_hidden_layers = 61, its first 3 dense layers
 * included), and num_physical_experts = n_routed_experts +
 * ep_num_redundant_experts. The dense layers' rows are written as SGLang's
 * own trivial location (slot i holds expert i mod E); no token ever reads
 * them. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"
#include "util.h"

int place_layout_write_sglang(const place_layout_t *lo, int n_dense, FILE *f) {
    int E = lo->n_experts;
    fprintf(f, "{\"physical_to_logical_map\": [\n");
    for (int l = 0; l < n_dense + lo->n_layers; l++) {
        const place_layer_t *ly = &lo->layer[l < n_dense ? 0 : l - n_dense];
        fputc('[', f);
        for (int s = 0; s < ly->n_slots; s++)
            fprintf(f, "%s%d", s ? ", " : "", l < n_dense ? s % E : ly->slot_expert[s]);
        fprintf(f, "]%s\n", l + 1 < n_dense + lo->n_layers ? "," : "");
    }
    fprintf(f, "]}\n");
    return ferror(f) ? ms_err("write error on SGLang layout JSON") : MS_OK;
}

/* place_layer_set under a file position: its message, said once, behind
 * where. */
static int set_layer(place_layout_t *lo, int l, int spd, const int *se, const char *where) {
    int q = ms_err_quiet(1), rc = place_layer_set(lo, l, spd, se);
    ms_err_quiet(q);
    if (!rc) return MS_OK;
    char msg[512]; /* ms_err writes where ms_err_last points */
    snprintf(msg, sizeof msg, "%s", ms_err_last());
    return ms_err("%s: %s", where, msg);
}

/* What the file must fit. */
typedef struct want {
    const char *path;
    int L, E, D, dpn, S;
} want_t;

static int check_slots(const want_t *w, int S, const char *where) {
    if (S == w->S) return MS_OK;
    if (S < w->E || S % w->D)
        return ms_err("%s: %d slots per layer, but %d experts on %d devices need at least %d slots "
                      "and a multiple of %d (this layout is for another deployment)",
                      where, S, w->E, w->D, w->E, w->D);
    return ms_err("%s: %d slots per layer, the deployment has %d (%d experts + %d redundant); set "
                  "[placement] redundant = %d (place: --redundant %d) to replay it",
                  where, S, w->S, w->E, w->S - w->E, S - w->E, S - w->E);
}

/* exact: the map must have exactly w->L rows (an external strategy's
 * answer); otherwise leading extra rows are dense layers. */
static int read_sglang(const want_t *w, const char *buf, size_t len, int exact,
                       place_layout_t **out) {
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ms_err("%s:%d:%d: invalid JSON (byte %d): %s (the file must be one complete JSON "
                      "object, {\"physical_to_logical_map\": [[expert per slot] per layer]})",
                      w->path, jerr.line, jerr.column, jerr.position, jerr.text);
    int rc = MS_ERR;
    int *se = NULL;
    place_layout_t *lo = NULL;
    json_t *map = json_is_object(root) ? json_object_get(root, "physical_to_logical_map") : NULL;
    if (!map) {
        if (json_is_object(root) && json_object_get(root, "logical_count"))
            ms_err("%s: holds \"logical_count\" (expert statistics), not a layout (give it as "
                   "counts or a trace and plan it with a strategy such as eplb)", w->path);
        else
            ms_err("%s: no \"physical_to_logical_map\" (expected SGLang's expert location: "
                   "{\"physical_to_logical_map\": [[expert per slot] per layer]})", w->path);
        goto out;
    }
    if (!json_is_array(map)) {
        ms_err("%s: physical_to_logical_map is not an array of layers", w->path);
        goto out;
    }
    int rows = (int)ms_imin((int)json_array_size(map), 1 << 20);
    if (exact && rows != w->L) {
        ms_err("%s: physical_to_logical_map has %d layers, expected %d (one row per MoE layer)",
               w->path, rows, w->L);
        goto out;
    }
    if (rows < w->L) {
        ms_err("%s: physical_to_logical_map has %d layers, the model has %d MoE layers (a "
               "layout for another model? SGLang lists every layer, dense ones included)",
               w->path, rows, w->L);
        goto out;
    }
    /* Leading rows beyond the MoE layers are the dense layers SGLang lists
     * too: checked like the others, then dropped. */
    int dense = rows - w->L;
    se = ms_malloc((size_t)w->S * sizeof *se);
    lo = place_layout_new(w->L, w->E, w->D, w->dpn);
    for (int r = 0; r < rows; r++) {
        json_t *row = json_array_get(map, (size_t)r);
        char where[600];
        snprintf(where, sizeof where, "%s: physical_to_logical_map[%d]", w->path, r);
        if (!json_is_array(row)) {
            ms_err("%s is not an array of expert ids", where);
            goto out;
        }
        if (check_slots(w, (int)ms_imin((int)json_array_size(row), 1 << 24), where)) goto out;
        for (int s = 0; s < w->S; s++) {
            json_t *v = json_array_get(row, (size_t)s);
            json_int_t e = json_is_integer(v) ? json_integer_value(v) : -1;
            if (!json_is_integer(v) || e < 0 || e >= w->E) {
                ms_err("%s[%d]: %s (give a logical expert id 0..%d)", where, s,
                       json_is_integer(v) ? "expert id out of range" : "not a whole number",
                       w->E - 1);
                goto out;
            }
            se[s] = (int)e;
        }
        if (r >= dense && set_layer(lo, r - dense, w->S / w->D, se, where)) goto out;
    }
    *out = lo;
    lo = NULL;
    rc = MS_OK;
out:
    place_layout_free(lo);
    free(se);
    json_decref(root);
    return rc;
}

static int read_csv(const want_t *w, char *buf, place_layout_t **out) {
    static const char header[] = "layer,slot,device,expert";
    size_t S = (size_t)w->S;
    int spd = w->S / w->D, rc = MS_ERR, line = 1;
    int *se = ms_malloc((size_t)w->L * S * sizeof *se);
    for (size_t i = 0; i < (size_t)w->L * S; i++) se[i] = -1;
    place_layout_t *lo = NULL;
    char *save = NULL, *p = strtok_r(buf, "\n", &save);
    size_t hl = p ? strcspn(p, "\r") : 0;
    if (!p || hl != strlen(header) || strncmp(p, header, hl)) {
        ms_err("%s:1: not a moesim layout CSV (its first line must be '%s', or give SGLang JSON "
               "with \"physical_to_logical_map\")", w->path, header);
        goto out;
    }
    while ((p = strtok_r(NULL, "\n", &save))) {
        line++; /* strtok_r skips empty lines; they carry no row */
        long v[4];
        char *q = p;
        int k = 0;
        for (; k < 4; k++) {
            char *end;
            errno = 0;
            v[k] = strtol(q, &end, 10);
            if (end == q || errno) break;
            q = end;
            if (k < 3 && *q++ != ',') break;
        }
        while (*q == '\r' || *q == ' ') q++;
        if (k < 4 || *q) {
            ms_err("%s:%d: '%.80s' is not layer,slot,device,expert (four whole numbers)", w->path,
                   line, p);
            goto out;
        }
        if (v[0] < 0 || v[0] >= w->L) {
            ms_err("%s:%d: layer %ld out of range 0..%d (the model has %d MoE layers)", w->path,
                   line, v[0], w->L - 1, w->L);
            goto out;
        }
        if (v[1] < 0 || v[1] >= w->S) {
            ms_err("%s:%d: slot %ld out of range 0..%d (%d experts + %d redundant; a layout for "
                   "another deployment?)", w->path, line, v[1], w->S - 1, w->E, w->S - w->E);
            goto out;
        }
        if (v[2] != v[1] / spd) {
            ms_err("%s:%d: slot %ld is on device %d with %d slots per device, not %ld (slots are "
                   "numbered device by device)", w->path, line, v[1], (int)(v[1] / spd), spd, v[2]);
            goto out;
        }
        if (v[3] < 0 || v[3] >= w->E) {
            ms_err("%s:%d: expert %ld out of range 0..%d", w->path, line, v[3], w->E - 1);
            goto out;
        }
        int *cell = &se[(size_t)v[0] * S + (size_t)v[1]];
        if (*cell >= 0) {
            ms_err("%s:%d: layer %ld slot %ld is given twice (keep one row per slot)", w->path,
                   line, v[0], v[1]);
            goto out;
        }
        *cell = (int)v[3];
    }
    lo = place_layout_new(w->L, w->E, w->D, w->dpn);
    for (int l = 0; l < w->L; l++) {
        for (size_t s = 0; s < S; s++)
            if (se[(size_t)l * S + s] < 0) {
                ms_err("%s: no row for layer %d slot %zu (every layer needs all %d slots: %d "
                       "experts + %d redundant)", w->path, l, s, w->S, w->E, w->S - w->E);
                goto out;
            }
        if (set_layer(lo, l, spd, se + (size_t)l * S, w->path)) goto out;
    }
    *out = lo;
    lo = NULL;
    rc = MS_OK;
out:
    place_layout_free(lo);
    free(se);
    return rc;
}

int place_layout_read(const char *path, int n_layers, int n_experts, int n_devices,
                      int devices_per_node, int n_slots, place_layout_t **out) {
    char *buf;
    size_t len;
    if (ms_read_file(path, &buf, &len)) return MS_ERR;
    want_t w = {path, n_layers, n_experts, n_devices, devices_per_node, n_slots};
    size_t i = 0;
    while (i < len && isspace((unsigned char)buf[i])) i++;
    int rc;
    if (i == len)
        rc = ms_err("%s: empty file (give SGLang JSON with \"physical_to_logical_map\" or a "
                    "moesim layout CSV)", path);
    else if (buf[i] == '{')
        rc = read_sglang(&w, buf, len, 0, out);
    else
        rc = read_csv(&w, buf, out);
    free(buf);
    return rc;
}

int place_layout_parse_json(const char *name, const char *buf, size_t len, int n_layers,
                            int n_experts, int n_devices, int devices_per_node, int n_slots,
                            place_layout_t **out) {
    want_t w = {name, n_layers, n_experts, n_devices, devices_per_node, n_slots};
    return read_sglang(&w, buf, len, 1, out);
}
