/* quote: the quoting functions for every language moesim writes. Each one
 * cleans the string to one line of valid UTF-8, then escapes what is
 * special in its language; see quote.h for why each rule is enough. */
#include "quote.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Output of at most 7 bytes per input byte (a gnuplot quote) plus quotes
 * and NUL: allocated once, no growth needed. */
typedef struct qbuf {
    char *s;
    size_t n;
} qbuf_t;

static qbuf_t qb_new(const char *s) {
    return (qbuf_t){.s = ms_malloc(7 * strlen(s) + 8), .n = 0};
}
static void qb_put(qbuf_t *b, char ch) { b->s[b->n++] = ch; }
static char *qb_done(qbuf_t *b) {
    b->s[b->n] = '\0';
    return b->s;
}

/* Length of the well-formed UTF-8 sequence at p (1-4), or 0 if p does not
 * start one (overlong forms, surrogates and code points past U+10FFFF are
 * refused as RFC 3629 says). */
static int utf8_len(const unsigned char *p) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80 ? 4
                                                                                        : 0;
    }
    return 0;
}

/* Walks s as cleaned characters: calls put for each, with the character's
 * bytes (one for ASCII) and whether it is the first. The clean: controls
 * (C0, DEL, and C1 as U+0080..U+009F) become ' ', invalid bytes '?'. */
typedef void (*quote_put_fn)(qbuf_t *b, const char *ch, int len, int first);

static void clean_walk(qbuf_t *b, const char *s, quote_put_fn put) {
    const unsigned char *p = (const unsigned char *)s;
    int first = 1;
    while (*p) {
        int k = utf8_len(p);
        if (k == 0) put(b, "?", 1, first), p++;
        else if (k == 1 && (*p < 0x20 || *p == 0x7f)) put(b, " ", 1, first), p++;
        else if (k == 2 && p[0] == 0xc2 && p[1] < 0xa0) put(b, " ", 1, first), p += 2;
        else put(b, (const char *)p, k, first), p += k;
        first = 0;
    }
}

static void put_raw(qbuf_t *b, const char *ch, int len) {
    for (int i = 0; i < len; i++) qb_put(b, ch[i]);
}

static void put_plain(qbuf_t *b, const char *ch, int len, int first) {
    (void)first;
    put_raw(b, ch, len);
}

char *quote_clean(const char *s) {
    qbuf_t b = qb_new(s);
    clean_walk(&b, s, put_plain);
    return qb_done(&b);
}

static void put_gp(qbuf_t *b, const char *ch, int len, int first) {
    (void)first;
    if (*ch == '\'') put_raw(b, "'.\"'\".'", 7);
    else put_raw(b, ch, len);
}

char *quote_gp(const char *s) {
    qbuf_t b = qb_new(s);
    qb_put(&b, '\'');
    clean_walk(&b, s, put_gp);
    qb_put(&b, '\'');
    return qb_done(&b);
}

static void put_field(qbuf_t *b, const char *ch, int len, int first) {
    (void)first;
    if (*ch == '"') qb_put(b, '\'');
    else put_raw(b, ch, len);
}

char *quote_gp_field(const char *s) {
    qbuf_t b = qb_new(s);
    qb_put(&b, '"');
    clean_walk(&b, s, put_field);
    qb_put(&b, '"');
    return qb_done(&b);
}

char *quote_gp_comment(const char *s) {
    qbuf_t b = qb_new(s);
    clean_walk(&b, s, put_plain);
    if (b.n && b.s[b.n - 1] == '\\') b.s[b.n - 1] = '/';
    return qb_done(&b);
}

static void put_md(qbuf_t *b, const char *ch, int len, int first) {
    if (len == 1 && strchr("\\`*_[]<>|#!&~$", *ch)) qb_put(b, '\\');
    else if (len == 1 && first && strchr("-+=", *ch)) qb_put(b, '\\');
    put_raw(b, ch, len);
}

char *quote_md(const char *s) {
    qbuf_t b = qb_new(s);
    clean_walk(&b, s, put_md);
    qb_done(&b);
    /* "12. x" or "3) x" at the start would open an ordered list. */
    size_t d = strspn(b.s, "0123456789");
    if (d && (b.s[d] == '.' || b.s[d] == ')')) {
        memmove(b.s + d + 1, b.s + d, b.n - d + 1);
        b.s[d] = '\\';
        b.n++;
    }
    return b.s;
}

char *quote_csv(const char *s) {
    qbuf_t b = qb_new(s);
    clean_walk(&b, s, put_plain);
    qb_done(&b);
    if (!b.n || (!strpbrk(b.s, ",\"") && b.s[0] != ' ' && b.s[b.n - 1] != ' ')) return b.s;
    qbuf_t q = qb_new(b.s);
    qb_put(&q, '"');
    for (size_t i = 0; i < b.n; i++) {
        if (b.s[i] == '"') qb_put(&q, '"');
        qb_put(&q, b.s[i]);
    }
    qb_put(&q, '"');
    free(b.s);
    return qb_done(&q);
}
