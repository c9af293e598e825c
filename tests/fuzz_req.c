/* fuzz_req: libFuzzer target for the request-trace CSV reader (make fuzz):
 * what it accepts has times from 0 that never decrease (no int64
 * overflow) and token counts inside their stated range. */
#include <stdint.h>
#include <stdlib.h>

#include "req.h"
#include "util.h"

#define FUZZ_CHECK(c) \
    do {              \
        if (!(c)) __builtin_trap(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        ms_err_quiet(1);
        init = 1;
    }
    req_list_t l;
    if (req_read_csv_mem("fuzz.csv", (const char *)data, size, 0, 0, &l) != MS_OK) return 0;
    for (int64_t i = 0; i < l.n; i++) {
        FUZZ_CHECK(l.r[i].arrival_ns >= 0);
        FUZZ_CHECK(!i || l.r[i].arrival_ns >= l.r[i - 1].arrival_ns);
        FUZZ_CHECK(l.r[i].prompt_tokens >= 1 && l.r[i].prompt_tokens <= 10000000);
        FUZZ_CHECK(l.r[i].output_tokens >= 1 && l.r[i].output_tokens <= 10000000);
    }
    FUZZ_CHECK(l.n == 0 || l.r[0].arrival_ns == 0);
    req_list_free(&l);
    return 0;
}
