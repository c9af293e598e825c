/* hw: hardware presets. Peak figures are the vendors' dense (no sparsity)
 * numbers; bandwidths are per device and per direction (NVLink's "900 GB/s"
 * is both directions together, so 450 GB/s each way). The efficiency
 * factors are documented defaults, overridable in [hardware]. */
#include "hw.h"

#include <stddef.h>
#include <strings.h>

#include "calib.h"

#define T 1e12
#define G 1e9

/* Defaults shared by the Hopper presets: achievable fractions as measured
 * in public reports (DeepSeek: ~160 of 200 GB/s NVLink and ~40 of 50 GB/s
 * IB per GPU with DeepEP; grouped GEMMs near 70% of peak; HBM streams near
 * 80-90%). */
#define HOPPER_EFF .eff_flops = 0.70, .eff_hbm = 0.85, .eff_scaleup = 0.80, .eff_nic = 0.80, \
                   .scaleup_lat_ns = 2000, .nic_lat_ns = 4000, .kernel_ns = 4000,           \
                   .devices_per_host = 8

/* Not const: hw_find attaches a preset's measured curve on first use. */
static hw_t presets[] = {
    {.name = "H100", .source = "NVIDIA H100 Tensor Core GPU datasheet (SXM5)",
     .flops_bf16 = 989 * T, .flops_fp8 = 1979 * T, .hbm_bytes = 80 * G, .hbm_bw = 3.35 * T,
     .scaleup_bw = 450 * G, .nic_bw = 50 * G, HOPPER_EFF},
    {.name = "H800", .source = "NVIDIA H800 SXM5 (H100 compute, NVLink 400 GB/s)",
     .flops_bf16 = 989 * T, .flops_fp8 = 1979 * T, .hbm_bytes = 80 * G, .hbm_bw = 3.35 * T,
     .scaleup_bw = 200 * G, .nic_bw = 50 * G, HOPPER_EFF},
    {.name = "H200", .source = "NVIDIA H200 Tensor Core GPU datasheet (SXM)",
     .flops_bf16 = 989 * T, .flops_fp8 = 1979 * T, .hbm_bytes = 141 * G, .hbm_bw = 4.8 * T,
     .scaleup_bw = 450 * G, .nic_bw = 50 * G, HOPPER_EFF},
    {.name = "H20", .source = "NVIDIA H20 product brief",
     .flops_bf16 = 148 * T, .flops_fp8 = 296 * T, .hbm_bytes = 96 * G, .hbm_bw = 4.0 * T,
     .scaleup_bw = 450 * G, .nic_bw = 50 * G, HOPPER_EFF},
};

const hw_t *hw_find(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcasecmp(presets[i].name, name)) {
            if (!presets[i].calib) presets[i].calib = calib_builtin(&presets[i]);
            return &presets[i];
        }
    return NULL;
}

const char *hw_names(void) { return "H100, H800, H200, H20"; }
