/* presets: what the model (moe.c) and hardware (hw.c) presets share: the
 * interned strings they keep and how a preset value names a file. */
#include "presets.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* A list that lives as long as the process: presets read from files are
 * copied by value into run specs, so their strings cannot belong to one. */
typedef struct interned {
    struct interned *next;
    char s[];
} interned_t;

static interned_t *pool;

const char *preset_intern(const char *s) {
    if (!s) return NULL;
    for (interned_t *p = pool; p; p = p->next)
        if (!strcmp(p->s, s)) return p->s;
    size_t n = strlen(s);
    interned_t *p = ms_malloc(sizeof *p + n + 1);
    memcpy(p->s, s, n + 1);
    p->next = pool;
    pool = p;
    return p->s;
}

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && !strcmp(s + n - k, tail);
}

int preset_is_path(const char *v) {
    return strchr(v, '/') || ends_with(v, ".ini") || ends_with(v, ".json");
}
