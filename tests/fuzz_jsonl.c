/* fuzz_jsonl: libFuzzer target for trace_read_jsonl_mem (make fuzz). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_run(trace_read_jsonl_mem, "fuzz.jsonl", data, size);
}
