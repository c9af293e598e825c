/* Tests that the hardware presets carry the figures their cited sources
 * give: one row per preset and figure, with the source beside it. The
 * H100 and H800 are data-sheet presets (no H100 or H800 is lent to this
 * project to measure); a measured calibration is never built into them. */
#include <criterion/criterion.h>
#include <string.h>

#include "hw.h"

#define T 1e12
#define G 1e9

/* Per device, dense (half the data sheets' "with sparsity" figures), one
 * direction for links (NVIDIA quotes NVLink both directions together). */
typedef struct {
    const char *name;
    double bf16, fp8, hbm, hbm_bw, scaleup, nic;
    int per_host;
    const char *cite; /* must appear in the preset's source string */
} sheet_t;

static const sheet_t SHEETS[] = {
    /* NVIDIA H100 Tensor Core GPU datasheet, SXM5: BF16 1,979 and FP8
     * 3,958 TFLOPS with sparsity (989.5 and 1,979 dense; the preset rounds
     * BF16 to 989 as docs/cost-model.md and the reference table do), 80 GB
     * HBM3 at 3.35 TB/s, NVLink 900 GB/s (450 each way); DGX/HGX H100: one
     * ConnectX-7 400 Gb/s (50 GB/s) per GPU, 8 GPUs a node. */
    {"H100", 989 * T, 1979 * T, 80 * G, 3.35 * T, 450 * G, 50 * G, 8, "H100 datasheet"},
    /* NVIDIA H800 SXM5: the H100 die and memory (same tensor throughput,
     * 80 GB HBM3 at 3.35 TB/s) with NVLink cut to 400 GB/s both ways (200
     * each way). DeepSeek-V3 technical report sec. 3.1: 8 H800 a node,
     * NVLink about 160 GB/s achieved, IB 50 GB/s per GPU (8 x 400 Gb/s
     * InfiniBand per node). */
    {"H800", 989 * T, 1979 * T, 80 * G, 3.35 * T, 200 * G, 50 * G, 8, "DeepSeek-V3 report"},
    /* NVIDIA H200 Tensor Core GPU datasheet, SXM: H100 compute, 141 GB HBM3e
     * at 4.8 TB/s, NVLink 900 GB/s. */
    {"H200", 989 * T, 1979 * T, 141 * G, 4.8 * T, 450 * G, 50 * G, 8, "H200 datasheet"},
    /* NVIDIA GB200 NVL72 specifications, rack of 72 GPUs: FP8 720 and BF16
     * 360 PFLOPS with sparsity, 13.4 TB HBM3e at 576 TB/s, NVLink 130 TB/s;
     * per GPU dense: 5,000 and 2,500 TFLOPS, 186 GB at 8 TB/s, NVLink 1.8
     * TB/s both ways (900 each way); a tray holds 4 GPUs. */
    {"GB200", 2500 * T, 5000 * T, 186 * G, 8 * T, 900 * G, 50 * G, 4, "GB200 NVL72"},
    /* Zuo et al., CloudMatrix384 (arXiv 2506.12708) sec. 3: a 910C package
     * of two dies has 752 TFLOPS BF16, 128 GB HBM at 3.2 TB/s, UB 392 GB/s
     * and RDMA 400 Gb/s per direction; one die is half of each (INT8 at
     * twice BF16: no FP8 unit); 16 dies a host. */
    {"910C", 376 * T, 752 * T, 64 * G, 1.6 * T, 196 * G, 25 * G, 16, "2506.12708"},
};

Test(hw, presets_match_their_sources) {
    for (size_t i = 0; i < sizeof SHEETS / sizeof *SHEETS; i++) {
        const sheet_t *w = &SHEETS[i];
        const hw_t *h = hw_find(w->name);
        cr_assert(h, "%s", w->name);
        cr_assert_eq(h->flops_bf16, w->bf16, "%s BF16", w->name);
        cr_assert_eq(h->flops_fp8, w->fp8, "%s FP8", w->name);
        cr_assert_eq(h->hbm_bytes, w->hbm, "%s HBM", w->name);
        cr_assert_eq(h->hbm_bw, w->hbm_bw, "%s HBM bandwidth", w->name);
        cr_assert_eq(h->scaleup_bw, w->scaleup, "%s NVLink", w->name);
        cr_assert_eq(h->nic_bw, w->nic, "%s NIC", w->name);
        cr_assert_eq(h->devices_per_host, w->per_host, "%s per node", w->name);
        cr_assert(h->source && strstr(h->source, w->cite), "%s: source '%s' cites no '%s'",
                  w->name, h->source, w->cite);
    }
    /* the H800 differs from the H100 only in NVLink */
    const hw_t *a = hw_find("H100"), *b = hw_find("h800");
    cr_assert_eq(b->scaleup_bw * 2, 400 * G);
    cr_assert_eq(a->scaleup_bw * 2, 900 * G);
}

/* Data-sheet presets: nothing measured is attached (the table is constant;
 * only a loaded spec attaches a measured curve, and only H200 has one). */
Test(hw, h100_h800_uncalibrated) {
    cr_assert_null(hw_find("H100")->calib);
    cr_assert_null(hw_find("H800")->calib);
    cr_assert_null(hw_find("gpt"));
}
