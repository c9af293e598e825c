/* hw: hardware presets: per-device compute, memory and link figures from
 * vendor data sheets, with achievable-efficiency factors. A preset is an
 * INI file (configs/hardware/, built in; or any such file by path); every
 * numeric field can also be overridden in an experiment's [hardware]
 * (sim/run.c lists them). */
#ifndef MOESIM_HW_H
#define MOESIM_HW_H

/* A measured calibration (models/calib_curve.h): the expert-compute
 * figures fitted per kernel and dtype. NULL in a hw_t means the constant
 * eff_* factors below are all there is. */
struct calib;

/* The figures of the expert-compute formula (models/cost.h, cost_gemm_ns)
 * for one kernel and dtype: fitted by models/calib.c, or the constants. */
/* One tile configuration of a grouped GEMM kernel: a persistent kernel
 * hands out its output tiles cluster by cluster, a cluster covering rows x
 * cols of the output on ctas SMs (one CTA each), and keeps hw_t.sms / ctas
 * clusters running at a time (models/cost.h, cost_gemm_ns). */
typedef struct hw_tile {
    double rows; /* tile M x cluster M: an expert's rows are padded to a multiple */
    double cols; /* tile N x cluster N; 0: no waves (FLOPs spread over the GPU) */
    double ctas; /* cluster M x cluster N: SMs one cluster holds; 0: no waves */
} hw_tile_t;

typedef struct hw_gemm {
    double floor_ns;  /* per call: launch, sync, tail, the small kernels around the GEMMs */
    double expert_ns; /* per active expert */
    double eff_flops; /* share of peak FLOP/s reached */
    double eff_hbm;   /* share of HBM bandwidth reached */
    double sharp;     /* ridge sharpness p (>= 1), <= 0 for the hard max */
    /* Tile quantisation, a property of the kernel (not fitted): a grouped
     * GEMM computes each expert's rows in tiles and picks its tile
     * configuration per GEMM from the mean tokens per local expert M, the
     * GEMM's columns N and its depth K: tile[0] (small) when M or N is at
     * most small_max; else tile[2] (large) when large_min is 0 or two of M,
     * N and K reach large_min; else tile[1]. An expert's FLOPs are charged
     * on its tokens padded up to whole tiles (models/cost.h). tile[0].rows
     * 0: no padding, one configuration. */
    double small_max, large_min;
    hw_tile_t tile[3];
} hw_gemm_t;

/* The figures of the link model (models/cost.h, cost_link_ns) of one class
 * of ports. */
typedef struct hw_link {
    double bw;         /* peak bytes/s, one direction (data sheet x eff_*) */
    double lat_ns;     /* latency floor */
    double half_bytes; /* bytes per peer where the ramp is halfway; 0: no ramp */
    double low_share;  /* share of bw that tiny messages reach, (0, 1] */
    double duplex;     /* share of bw kept while both directions are loaded, (0, 1] */
} hw_link_t;

/* The most devices one host (node) may hold: scale-up domains larger
 * than a host are [cluster] scaleup_domain, not bigger hosts. */
#define HW_MAX_PER_HOST 1024
/* The most SMs a preset or [hardware] sms may give (a sanity bound). */
#define HW_MAX_SMS 1000000

typedef struct hw {
    const char *name;
    const char *description; /* one line for `moesim list hardware` */
    const char *source;      /* data sheet the figures come from */
    double flops_bf16;       /* peak dense BF16 FLOP/s */
    double flops_fp8;        /* peak dense 8-bit FLOP/s (FP8; INT8 where no FP8 unit) */
    double hbm_bytes;        /* HBM capacity, bytes */
    double hbm_bw;           /* HBM bandwidth, bytes/s */
    double scaleup_bw;       /* NVLink/HCCS/UB bandwidth per device, one direction, bytes/s */
    double nic_bw;           /* scale-out NIC bandwidth per device, one direction, bytes/s */
    double eff_flops;        /* achievable share of peak FLOP/s (0..1] */
    double eff_hbm;          /* achievable share of HBM bandwidth */
    double eff_scaleup;      /* achievable share of scale-up bandwidth */
    double eff_nic;          /* achievable share of NIC bandwidth */
    double scaleup_lat_ns;   /* latency floor of a transfer inside a node, ns */
    double nic_lat_ns;       /* latency floor of a transfer between nodes, ns */
    /* The link model beyond latency + bytes / bandwidth (models/cost.h,
     * cost_link_ns): effective bandwidth ramps with the bytes a transfer
     * sends to one peer, bw(s) = peak x (s + low x half) / (s + half), from
     * low x peak for tiny messages to peak for large ones (half = 0: no
     * ramp); and each direction of a link keeps duplex x its capacity while
     * the other direction is loaded too (1: no derating). */
    double scaleup_half_bytes, scaleup_low_share, scaleup_duplex;
    double nic_half_bytes, nic_low_share, nic_duplex;
    const char *link_source; /* where the link figures come from (measured file or datasheet) */
    /* Two-batch overlap runs one micro-batch's kernels beside the other's
     * communication kernels, which take SMs (DeepEP reserves 20 of 132) and
     * HBM bandwidth: while overlapped, the MoE layers' compute takes
     * overlap_compute x its time alone on the whole GPU and scale-up
     * transfers overlap_comm x theirs (measured: models/calib/
     * measure_overlap.py; 1: no contention, the data-sheet model). */
    double overlap_compute, overlap_comm;
    const char *overlap_source; /* where those two come from */
    double kernel_ns;        /* fixed cost per kernel (launch, sync, tail) */
    double sms;              /* streaming multiprocessors (tensor-core units a GEMM's tiles are
                              * scheduled over); 0: not given, no wave quantisation */
    double mem_reserve;      /* HBM bytes kept back per device (workspace, activations,
                              * runtime), not available to weights or KV cache */
    int devices_per_host;    /* devices sharing one host/node by default */
    const struct calib *calib; /* measured fits (calib_curve.h); NULL = constant factors */
} hw_t;

/* The built-in preset named name (case-insensitive), or NULL. Its calib is
 * NULL: a preset measured on real GPUs gets its curve from calib_builtin()
 * when a spec is loaded (sim/run.c), so the table never changes. */
const hw_t *hw_find(const char *name);
/* Comma-separated names of all built-in presets, for messages. */
const char *hw_names(void);
int hw_count(void);
const hw_t *hw_at(int i);
const char *hw_file(int i);
/* A preset from an INI file ([hardware] section, keys as in
 * configs/hardware/); no calibration curve ([hardware] calibration = FILE
 * adds one). */
int hw_load(const char *path, hw_t *out);
/* A [cluster] hardware value: a built-in name or a file read beside
 * cfg_path. */
int hw_resolve(const char *value, const char *cfg_path, const char *where, hw_t *out);

#endif
