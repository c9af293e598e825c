/* hw: hardware presets from INI files: the built-in ones embedded from
 * configs/hardware/ (presets_data.c; each file gives its sources), others
 * by path. Peak figures are the vendors' dense (no sparsity) numbers;
 * bandwidths are per device and per direction (NVLink's "900 GB/s" is both
 * directions together, so 450 GB/s each way). A measured curve (hw_t.calib)
 * refines the compute and all-to-all efficiency factors of a built-in
 * preset measured on real GPUs; run.c attaches it. */
#include "hw.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "presets.h"
#include "util.h"

/* The numeric keys of a preset file (the same names [hardware] overrides
 * in an experiment), their ranges, and whether they must be given. */
static const struct {
    const char *key;
    size_t off;
    double min, max, def;
    int required;
} KEYS[] = {
#define K(f, lo, hi, d, req) {#f, offsetof(hw_t, f), lo, hi, d, req}
    K(flops_bf16, 1e9, 1e18, 0, 1),   K(flops_fp8, 1e9, 1e18, 0, 1),
    K(hbm_bytes, 1e6, 1e15, 0, 1),    K(hbm_bw, 1e6, 1e15, 0, 1),
    K(scaleup_bw, 1e6, 1e14, 0, 1),   K(nic_bw, 1e6, 1e14, 0, 1),
    K(eff_flops, 1e-3, 1, 0.7, 0),    K(eff_hbm, 1e-3, 1, 0.85, 0),
    K(eff_scaleup, 1e-3, 1, 0.8, 0),  K(eff_nic, 1e-3, 1, 0.8, 0),
    K(scaleup_lat_ns, 0, 1e9, 0, 1),  K(nic_lat_ns, 0, 1e9, 0, 1),
    K(kernel_ns, 0, 1e9, 0, 1),       K(mem_reserve, 0, 1e15, 0, 0),
    /* the link model beyond latency + bytes / bandwidth (hw.h); the
     * defaults are the data-sheet model: no ramp, no two-way derating */
    K(scaleup_half_bytes, 0, 1e12, 0, 0), K(scaleup_low_share, 1e-3, 1, 1, 0),
    K(scaleup_duplex, 1e-3, 1, 1, 0),     K(nic_half_bytes, 0, 1e12, 0, 0),
    K(nic_low_share, 1e-3, 1, 1, 0),      K(nic_duplex, 1e-3, 1, 1, 0),
    /* two-batch overlap's contention (hw.h); 1: none */
    K(overlap_compute, 1, 10, 1, 0),      K(overlap_comm, 1, 10, 1, 0),
#undef K
};
#define N_KEYS (sizeof KEYS / sizeof *KEYS)

static int parse_ini(cfg_t *c, const char *file, hw_t *h) {
    const char *name, *desc, *src, *links, *ov;
    memset(h, 0, sizeof *h);
    cfg_set_kind(c, CFGK_HARDWARE);
    if (cfg_str(c, "hardware", "name", NULL, &name) ||
        cfg_str(c, "hardware", "description", "", &desc) ||
        cfg_str(c, "hardware", "source", file, &src) ||
        cfg_str(c, "hardware", "link_source",
                "datasheet bandwidth x eff_*, assumed latency; no ramp, no two-way derating "
                "(not measured)", &links) ||
        cfg_str(c, "hardware", "overlap_source",
                "none: overlapped kernels run as fast as alone (not measured)", &ov))
        return MS_ERR;
    if (!name)
        return ms_err("%s: no [hardware] name (every preset file names its device, e.g. name = "
                      "H800)", file);
    for (size_t i = 0; i < N_KEYS; i++) {
        if (KEYS[i].required && !cfg_has(c, "hardware", KEYS[i].key))
            return ms_err("%s: no [hardware] %s (required; see configs/hardware/H800.ini)", file,
                          KEYS[i].key);
        if (cfg_double(c, "hardware", KEYS[i].key, KEYS[i].def, KEYS[i].min, KEYS[i].max,
                       (double *)((char *)h + KEYS[i].off)))
            return MS_ERR;
    }
    /* SMs a grouped GEMM's tiles are scheduled over (hw.h); 0: not given.
     * A count: a fraction would change the waves silently. */
    long dph, sms;
    if (cfg_int(c, "hardware", "sms", 0, 0, HW_MAX_SMS, &sms) ||
        cfg_int(c, "hardware", "devices_per_host", 8, 1, HW_MAX_PER_HOST, &dph) || cfg_check_unused(c))
        return MS_ERR;
    h->sms = (double)sms;
    h->devices_per_host = (int)dph;
    h->name = preset_intern(name);
    h->description = preset_intern(desc);
    h->source = preset_intern(src);
    h->link_source = preset_intern(links);
    h->overlap_source = preset_intern(ov);
    return MS_OK;
}

/* Filled once from the embedded files, then never changed: a preset's
 * measured curve is attached where a spec is loaded (calib_builtin), not
 * here. */
static hw_t builtin[32];
static const char *builtin_file[32];
static int n_builtin = -1;

static void load_builtin(void) {
    if (n_builtin >= 0) return;
    n_builtin = 0;
    for (int i = 0; i < preset_n_blobs && n_builtin < 32; i++) {
        const preset_blob_t *b = &preset_blobs[i];
        if (strcmp(b->kind, "hardware")) continue;
        cfg_t *c = NULL;
        if (cfg_parse_text(b->text, b->path, &c) == MS_OK &&
            parse_ini(c, b->path, &builtin[n_builtin]) == MS_OK)
            builtin_file[n_builtin++] = b->path;
        cfg_free(c);
    }
}

const hw_t *hw_find(const char *name) {
    load_builtin();
    for (int i = 0; i < n_builtin; i++)
        if (!strcasecmp(builtin[i].name, name)) return &builtin[i];
    return NULL;
}

int hw_count(void) {
    load_builtin();
    return n_builtin;
}

const hw_t *hw_at(int i) { return i >= 0 && i < hw_count() ? &builtin[i] : NULL; }
const char *hw_file(int i) { return i >= 0 && i < hw_count() ? builtin_file[i] : NULL; }

const char *hw_names(void) {
    static char buf[1024];
    if (!buf[0])
        for (int i = 0; i < hw_count(); i++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? ", " : "",
                     builtin[i].name);
    return buf;
}

int hw_load(const char *path, hw_t *out) {
    cfg_t *c = NULL;
    if (cfg_load(path, &c)) return MS_ERR;
    int rc = parse_ini(c, path, out);
    cfg_free(c);
    return rc;
}

int hw_resolve(const char *value, const char *cfg_path, const char *where, hw_t *out) {
    if (preset_is_path(value)) {
        char path[4096];
        ms_path_beside(cfg_path, value, path, sizeof path);
        return hw_load(path, out);
    }
    const hw_t *h = hw_find(value);
    if (!h)
        return ms_err("%s: unknown hardware preset '%s' (known: %s; or give a preset .ini path)",
                      where, value, hw_names());
    *out = *h;
    return MS_OK;
}
