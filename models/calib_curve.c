/* calib_curve: the lookup of a kernel's fitted figures in a calibration. */
#include "calib_curve.h"

#include <stddef.h>
#include <string.h>

const hw_gemm_t *calib_gemm_par(const calib_t *c, const char *impl, int weight_bytes) {
    if (!c) return NULL;
    if (!impl) impl = c->gemm_impl;
    for (int i = 0; i < c->n_fits; i++)
        if (c->fits[i].weight_bytes == weight_bytes && !strcmp(c->fits[i].impl, impl))
            return &c->fits[i].par;
    return NULL;
}
