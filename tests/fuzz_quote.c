/* fuzz_quote: libFuzzer target for analysis/quote.c (make fuzz). Any bytes
 * in, and every quoting function's promise checked on the way out: one line
 * of valid UTF-8, gnuplot quotes only in the '."'".' join, no '"' inside a
 * datablock field, no comment ending in '\', no bare Markdown character. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quote.h"

#define FUZZ_CHECK(c) \
    do {              \
        if (!(c)) __builtin_trap(); \
    } while (0)

/* One line: no C0 control and no DEL (C1 and invalid UTF-8 are the clean's
 * business, checked through quote_clean below). */
static int one_line(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return 0;
    return 1;
}

/* Well-formed UTF-8 with no C1 control. */
static int valid_utf8(const unsigned char *p) {
    while (*p) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        int k = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
        if (!k || *p > 0xf4) return 0;
        for (int i = 1; i < k; i++)
            if ((p[i] & 0xc0) != 0x80) return 0;
        if (k == 2 && p[0] == 0xc2 && p[1] < 0xa0) return 0;
        p += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0'; /* a C string ends at the first NUL, as names do */

    char *c = quote_clean(s);
    FUZZ_CHECK(one_line(c) && valid_utf8((const unsigned char *)c));

    char *q = quote_gp(s);
    size_t n = strlen(q);
    FUZZ_CHECK(n >= 2 && q[0] == '\'' && q[n - 1] == '\'' && one_line(q));
    for (size_t k = 1; k + 1 < n; k++)
        if (q[k] == '\'') {
            FUZZ_CHECK(!strncmp(q + k, "'.\"'\".'", 7));
            k += 6;
        }
    free(q);

    q = quote_gp_field(s);
    n = strlen(q);
    FUZZ_CHECK(n >= 2 && q[0] == '"' && q[n - 1] == '"' && one_line(q));
    FUZZ_CHECK(!memchr(q + 1, '"', n - 2));
    free(q);

    q = quote_gp_comment(s);
    n = strlen(q);
    FUZZ_CHECK(one_line(q) && (!n || q[n - 1] != '\\'));
    free(q);

    q = quote_md(s);
    FUZZ_CHECK(one_line(q));
    for (size_t k = 0; q[k]; k++) {
        if (q[k] == '\\') {
            FUZZ_CHECK(q[k + 1]);
            k++;
            continue;
        }
        FUZZ_CHECK(!strchr("`*_[]<>|#!&~$", q[k]));
    }
    FUZZ_CHECK(q[0] != '-' && q[0] != '+' && q[0] != '=');
    free(q);

    /* CSV: unquoted fields hold no comma or quote; quoted ones double it. */
    q = quote_csv(s);
    n = strlen(q);
    FUZZ_CHECK(one_line(q));
    if (n && q[0] == '"') {
        FUZZ_CHECK(n >= 2 && q[n - 1] == '"');
        for (size_t k = 1; k + 1 < n; k++)
            if (q[k] == '"') FUZZ_CHECK(q[++k] == '"' && k + 1 < n);
    } else {
        FUZZ_CHECK(!strpbrk(q, ",\""));
    }
    free(q);
    free(c);
    free(s);
    return 0;
}
