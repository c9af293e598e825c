/* fuzz_cfg: libFuzzer target for the config reader (make fuzz): any bytes
 * are parsed; what parses keeps every key's line inside the text, survives
 * the typed getters, and prints canonically. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
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
    cfg_t *c = NULL;
    if (cfg_parse_mem((const char *)data, size, "fuzz.ini", &c) != MS_OK) return 0;
    cfg_set_kind(c, NULL); /* any key: the reader and getters are fuzzed, not the table */
    int lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    for (int i = 0; i < cfg_count(c); i++) {
        const char *sec, *key, *value;
        int line;
        cfg_entry(c, i, &sec, &key, &value, &line);
        FUZZ_CHECK(line >= 1 && line <= lines);
        FUZZ_CHECK(sec && key && value && *key);
        FUZZ_CHECK(!strchr(key, '\n') && !strchr(value, '\n'));
        long v;
        double d;
        int b;
        cfg_int(c, sec, key, 0, -100, 100, &v);
        cfg_double(c, sec, key, 0, -1e9, 1e9, &d);
        cfg_bool(c, sec, key, 0, &b);
    }
    char *text = cfg_canonical(c);
    FUZZ_CHECK(text != NULL);
    free(text);
    cfg_check_unused(c);
    cfg_free(c);
    return 0;
}
