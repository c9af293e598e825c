/* hw: hardware presets. Peak figures are the vendors' dense (no sparsity)
 * numbers; bandwidths are per device and per direction (NVLink's "900 GB/s"
 * is both directions together, so 450 GB/s each way). The efficiency
 * factors are documented defaults, overridable in [hardware]; a measured
 * curve (hw_t.calib) refines the compute and all-to-all ones.
 *
 * Sources, one per figure:
 *  [H100]  NVIDIA H100 Tensor Core GPU datasheet, SXM5 column: BF16 989.5
 *          TFLOPS, FP8 1,979 TFLOPS (dense = half the "with sparsity"
 *          figures), 80 GB HBM3, 3.35 TB/s, NVLink 900 GB/s. NIC: one
 *          ConnectX-7 400 Gb/s per GPU in DGX/HGX H100 (50 GB/s).
 *  [H800]  the H100 SXM5 die with NVLink cut to 400 GB/s (both ways);
 *          DeepSeek-V3 report sec. 3.1: NVLink 160 GB/s and IB 50 GB/s per
 *          GPU, 8 GPUs per node.
 *  [H200]  NVIDIA H200 Tensor Core GPU datasheet (SXM): same compute as H100,
 *          141 GB HBM3e, 4.8 TB/s, NVLink 900 GB/s.
 *  [H20]   NVIDIA H20 product brief: BF16 148 TFLOPS, FP8 296 TFLOPS, 96 GB
 *          HBM3, 4.0 TB/s, NVLink 900 GB/s.
 *  [910C]  Zuo et al., "Serving Large Language Models on Huawei
 *          CloudMatrix384" (Huawei, arXiv 2506.12708, 2025), sec. 3: a 910C
 *          package is two dies with 752 TFLOPS dense BF16/FP16, 128 GB HBM
 *          and 3.2 TB/s together; UB plane 392 GB/s per direction and RDMA
 *          plane 400 Gb/s per direction per package. CANN exposes each die
 *          as one device (16 per Atlas A3 host: 8 HiAM modules of 2 dies,
 *          Ascend MindCluster docs), and EP ranks are dies, so the preset
 *          is one die: half of each package figure.
 *  [910B]  one 910B-class die as in [910C] (376 TFLOPS BF16, 64 GB HBM2e,
 *          1.6 TB/s). Atlas 800T A2 servers join 8 NPUs by HCCS; the
 *          commonly quoted 392 GB/s both ways (56 GB/s x 7 links) gives
 *          196 GB/s per direction, and one 200 GbE RoCE port per NPU
 *          (25 GB/s). Huawei publishes no English data sheet with all of
 *          these; treat the HCCS and RoCE figures as the weakest here.
 *  [8-bit on Ascend] no FP8 unit on 910B/910C: 8-bit weights run as INT8
 *          (W8A8, as CloudMatrix-Infer serves DeepSeek), whose cube rate is
 *          twice FP16 (Huawei, Hot Chips 2019: Ascend 910 256 TFLOPS FP16,
 *          512 TOPS INT8).
 *
 * Efficiency defaults (Hopper): eff_scaleup 0.8 and eff_nic 0.8 are
 * DeepSeek's measured 160 of 200 GB/s NVLink and about 40 of 50 GB/s IB
 * with DeepEP; eff_flops 0.7 is the share of FP8 peak DeepGEMM reports for
 * grouped GEMMs at large batch; eff_hbm 0.85 what streaming kernels reach
 * (FlashMLA: about 3,000 of 3,350 GB/s on H800 in its memory-bound
 * setting). Ascend defaults are the same shares, not measured. */
#include "hw.h"

#include <stddef.h>
#include <strings.h>

#define T 1e12
#define G 1e9

/* Links without measurements: latency + bytes / bandwidth, no ramp, no
 * two-way derating (the data-sheet model). */
#define NIC_DATASHEET .eff_nic = 0.80, .nic_lat_ns = 4000, .nic_half_bytes = 0, \
                      .nic_low_share = 1, .nic_duplex = 1
#define SCALEUP_DATASHEET .eff_scaleup = 0.80, .scaleup_lat_ns = 2000, .scaleup_half_bytes = 0, \
                          .scaleup_low_share = 1, .scaleup_duplex = 1
#define DATASHEET_LINKS                                                                  \
    SCALEUP_DATASHEET, NIC_DATASHEET,                                                   \
    .link_source = "datasheet bandwidth x eff_*, assumed latency; no ramp, no two-way " \
                   "derating (not measured)"
#define HOPPER_COMPUTE .eff_flops = 0.70, .eff_hbm = 0.85, .kernel_ns = 4000, \
                       .mem_reserve = 4 * G, .devices_per_host = 8
#define HOPPER_EFF HOPPER_COMPUTE, DATASHEET_LINKS
#define ASCEND_EFF .eff_flops = 0.70, .eff_hbm = 0.85, .kernel_ns = 4000, .mem_reserve = 4 * G, \
                   DATASHEET_LINKS

/* H200 NVLink, fitted by `moesim calib report` to models/calib/h200_a2a.csv
 * (NCCL 2.28.9 all-to-all, two H200 SXM over NV18, CUDA-graph timed,
 * 2026-11-30; tests/test_calib.c checks these are what the fit gives):
 * latency floor, peak = eff_scaleup x 450 GB/s, ramp and two-way derating.
 */
#define H200_NVLINK                                                                        \
    .scaleup_lat_ns = 17316, .eff_scaleup = 0.8730, .scaleup_half_bytes = 1.5488e7,        \
    .scaleup_low_share = 0.2571, .scaleup_duplex = 0.7821, NIC_DATASHEET,                   \
    .link_source = "NVLink: fitted to models/calib/h200_a2a.csv (NCCL all-to-all, 2 x H200, " \
                   "2026-11-30); NIC: datasheet x eff_nic, not measured"

/* Constant: a preset's measured curve is attached where a spec is loaded
 * (calib_builtin), never written into this table. */
static const hw_t presets[] = {
    {.name = "H100", .source = "NVIDIA H100 datasheet (SXM5); data sheet, uncalibrated", .flops_bf16 = 989 * T,
     .flops_fp8 = 1979 * T, .hbm_bytes = 80 * G, .hbm_bw = 3.35 * T, .scaleup_bw = 450 * G,
     .nic_bw = 50 * G, HOPPER_EFF},
    {.name = "H800", .source = "NVIDIA H800 SXM5: H100 compute and HBM, NVLink 400 GB/s both "
                               "ways; DeepSeek-V3 report 3.1 (IB 50 GB/s a GPU); data sheet, "
                               "uncalibrated",
     .flops_bf16 = 989 * T, .flops_fp8 = 1979 * T, .hbm_bytes = 80 * G, .hbm_bw = 3.35 * T,
     .scaleup_bw = 200 * G, .nic_bw = 50 * G, HOPPER_EFF},
    /* NVLink figures fitted to NCCL all-to-all between two H200s (H200_NVLINK
     * below); the NIC keeps the data-sheet model (not measured). */
    {.name = "H200", .source = "NVIDIA H200 datasheet (SXM)", .flops_bf16 = 989 * T,
     .flops_fp8 = 1979 * T, .hbm_bytes = 141 * G, .hbm_bw = 4.8 * T, .scaleup_bw = 450 * G,
     .nic_bw = 50 * G, HOPPER_COMPUTE, H200_NVLINK},
    {.name = "H20", .source = "NVIDIA H20 product brief", .flops_bf16 = 148 * T,
     .flops_fp8 = 296 * T, .hbm_bytes = 96 * G, .hbm_bw = 4.0 * T, .scaleup_bw = 450 * G,
     .nic_bw = 50 * G, HOPPER_EFF},
    {.name = "910B", .source = "Ascend 910B die (CloudMatrix384 paper); Atlas 800T A2 HCCS/RoCE",
     .flops_bf16 = 376 * T, .flops_fp8 = 752 * T, .hbm_bytes = 64 * G, .hbm_bw = 1.6 * T,
     .scaleup_bw = 196 * G, .nic_bw = 25 * G, ASCEND_EFF, .devices_per_host = 8},
    {.name = "910C", .source = "Ascend 910C, per die (CloudMatrix384 paper, arXiv 2506.12708)",
     .flops_bf16 = 376 * T, .flops_fp8 = 752 * T, .hbm_bytes = 64 * G, .hbm_bw = 1.6 * T,
     .scaleup_bw = 196 * G, .nic_bw = 25 * G, ASCEND_EFF, .devices_per_host = 16},
};

const hw_t *hw_find(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcasecmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

const char *hw_names(void) { return "H100, H800, H200, H20, 910B, 910C"; }
