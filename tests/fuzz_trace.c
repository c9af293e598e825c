/* fuzz_trace: libFuzzer target for trace_read_mem, the format dispatch
 * (make fuzz); the name has no extension, so content decides. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_run(trace_read_mem, "fuzz-input", data, size);
}
