/* hw: hardware presets: per-device compute, memory and link figures from
 * vendor data sheets, with achievable-efficiency factors. A preset is one
 * entry of the table in hw.c; every numeric field can be overridden in
 * [hardware] (sim/run.c lists them). */
#ifndef MOESIM_HW_H
#define MOESIM_HW_H

/* Measured efficiency curves (models/calib.h, built separately). NULL in a
 * hw_t means the constant eff_* factors below are all there is. */
struct calib;

typedef struct hw {
    const char *name;
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
    double scaleup_lat_ns;   /* per-hop latency inside a node */
    double nic_lat_ns;       /* per-hop latency between nodes */
    double kernel_ns;        /* fixed cost per kernel (launch, sync, tail) */
    double mem_reserve;      /* HBM bytes kept back per device (workspace, activations,
                              * runtime), not available to weights or KV cache */
    int devices_per_host;    /* devices sharing one host/node by default */
    const struct calib *calib; /* measured efficiency curves (calib.h); NULL = constant factors */
} hw_t;

/* The preset named name (case-insensitive), or NULL. Its calib is NULL: a
 * preset measured on real GPUs gets its curve from calib_builtin() when a
 * spec is loaded (sim/run.c), so this table never changes. */
const hw_t *hw_find(const char *name);
/* Comma-separated names of all presets, for messages. */
const char *hw_names(void);

#endif
