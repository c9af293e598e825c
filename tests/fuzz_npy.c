/* fuzz_npy: libFuzzer target for trace_read_npy_mem (make fuzz). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_run(trace_read_npy_mem, "fuzz.npy", data, size);
}
