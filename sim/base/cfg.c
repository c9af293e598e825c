/* cfg: INI configuration through libinih, with file:line kept per key.
 *
 * inih does not hand line numbers to the handler in Debian's build, so the
 * text is fed through ini_parse_stream() with a reader that counts lines. */
#include "cfg.h"

#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg_keys.h"
#include "util.h"

typedef struct {
    char *section, *key, *value;
    char *origin; /* file the entry came from */
    int line;
    int used;
} entry_t;

struct cfg {
    entry_t *e;
    int n, cap;
    char *origin;
    const char *kind; /* CFGK_ file kind its reads are checked as; NULL: unchecked */
    char where[512];
};

cfg_t *cfg_new(void) {
    cfg_t *c = ms_calloc(1, sizeof *c);
    c->origin = ms_strdup("-");
    c->kind = CFGK_EXPERIMENT;
    return c;
}

void cfg_set_kind(cfg_t *c, const char *kind) { c->kind = kind; }

void cfg_free(cfg_t *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        free(c->e[i].section);
        free(c->e[i].key);
        free(c->e[i].value);
        free(c->e[i].origin);
    }
    free(c->e);
    free(c->origin);
    free(c);
}

cfg_t *cfg_copy(const cfg_t *c) {
    cfg_t *d = cfg_new();
    free(d->origin);
    d->origin = ms_strdup(c->origin);
    d->kind = c->kind;
    for (int i = 0; i < c->n; i++)
        cfg_set(d, c->e[i].section, c->e[i].key, c->e[i].value, c->e[i].origin, c->e[i].line);
    return d;
}

static entry_t *find(const cfg_t *c, const char *sec, const char *key) {
    for (int i = 0; i < c->n; i++)
        if (!strcasecmp(c->e[i].section, sec) && !strcasecmp(c->e[i].key, key)) return &c->e[i];
    return NULL;
}

void cfg_set(cfg_t *c, const char *sec, const char *key, const char *value, const char *origin,
             int line) {
    entry_t *e = find(c, sec, key);
    if (!e) {
        if (c->n == c->cap) c->e = ms_realloc(c->e, (c->cap = c->cap ? 2 * c->cap : 32) * sizeof *e);
        e = &c->e[c->n++];
        e->section = ms_strdup(sec);
        e->key = ms_strdup(key);
    } else {
        free(e->value);
        free(e->origin);
    }
    e->value = ms_strdup(value);
    e->origin = ms_strdup(origin ? origin : "-");
    e->line = line;
    e->used = 0;
}

int cfg_set_assign(cfg_t *c, const char *assign, const char *origin, int line) {
    const char *eq = strchr(assign, '=');
    const char *dot = NULL; /* the last dot of the key: sections may hold dots */
    for (const char *p = assign; eq && p < eq; p++)
        if (*p == '.') dot = p;
    if (!eq || !dot || dot == assign || eq == dot + 1)
        return ms_err("%s:%d: '%s' is not section.key=value (example: cluster.nodes=18)", origin,
                      line, assign);
    char sec[128], key[128];
    size_t ls = (size_t)(dot - assign), lk = (size_t)(eq - dot - 1);
    if (ls >= sizeof sec || lk >= sizeof key)
        return ms_err("%s:%d: key too long in '%s'", origin, line, assign);
    memcpy(sec, assign, ls);
    sec[ls] = 0;
    memcpy(key, dot + 1, lk);
    key[lk] = 0;
    cfg_set(c, sec, key, eq + 1, origin, line);
    return MS_OK;
}

typedef struct {
    cfg_t *c;
    const char *text; /* remaining input */
    const char *end;  /* end of the input */
    int line;         /* lines handed to inih so far */
    int dup_line;     /* first duplicate key, 0 if none */
    char dup[256];
    int long_line;    /* a line too long for inih's buffer, 0 if none */
    size_t long_len;
} parse_t;

/* Hands inih one whole line per call, so its line count is ours: inih reads
 * into a fixed buffer (INI_MAX_LINE, 200 bytes in Debian's build) and would
 * split a longer line, applying the tail of a long comment as a key and
 * shifting every later line number. So the reader shortens what inih need
 * not see (a comment line to its marker, an inline comment away, the
 * indentation that inih would take for a continuation line, a UTF-8 BOM)
 * and stops at a line still too long, which cfg_parse_text then refuses
 * with its own number. */
static char *reader(char *buf, int size, void *stream) {
    parse_t *p = stream;
    if (p->long_line || p->text >= p->end) return NULL;
    const char *s = p->text;
    const char *nl = memchr(s, '\n', (size_t)(p->end - s));
    size_t n = nl ? (size_t)(nl - s) : (size_t)(p->end - s);
    p->text = nl ? nl + 1 : p->end;
    p->line++;
    if (p->line == 1 && n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) {
        s += 3;
        n -= 3;
    }
    if (n && s[n - 1] == '\r') n--;
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    if (n && (*s == ';' || *s == '#')) {
        n = 1;
    } else {
        for (size_t i = 1; i < n; i++) /* inih's inline comment: ';' after a space */
            if (s[i] == ';' && (s[i - 1] == ' ' || s[i - 1] == '\t')) {
                n = i;
                break;
            }
    }
    if (n + 2 > (size_t)size) {
        p->long_line = p->line;
        p->long_len = n;
        return NULL;
    }
    memcpy(buf, s, n);
    buf[n] = '\n';
    buf[n + 1] = 0;
    return buf;
}

static int handler(void *user, const char *sec, const char *key, const char *value) {
    parse_t *p = user;
    if (!*key) return 0; /* "= value" or ": value": inih's error for this line */
    if (find(p->c, sec, key)) {
        if (!p->dup_line) {
            p->dup_line = p->line;
            snprintf(p->dup, sizeof p->dup, "[%s] %s", sec, key);
        }
        return 1;
    }
    cfg_set(p->c, sec, key, value, p->c->origin, p->line);
    return 1;
}

int cfg_parse_text(const char *text, const char *origin, cfg_t **out) {
    return cfg_parse_mem(text, strlen(text), origin, out);
}

int cfg_parse_mem(const char *text, size_t len, const char *origin, cfg_t **out) {
    const char *nul = memchr(text, 0, len);
    if (nul) {
        int line, col;
        line = 1, col = 1;
        for (const char *q = text; q < nul; q++) {
            col = *q == '\n' ? 1 : col + 1;
            line += *q == '\n';
        }
        return ms_err("%s:%d: byte %zu is a NUL byte (column %d): a config is text (is this a "
                      "binary file?)", origin, line, (size_t)(nul - text), col);
    }
    cfg_t *c = cfg_new();
    free(c->origin);
    c->origin = ms_strdup(origin);
    parse_t p = {.c = c, .text = text, .end = text + len};
    int rc = ini_parse_stream(reader, &p, handler, &p);
    if (p.long_line) {
        cfg_free(c);
        return ms_err("%s:%d: line of %zu characters, more than the %d a config line may have "
                      "(shorten the value; split a long comment over several lines)", origin,
                      p.long_line, p.long_len, CFG_MAX_LINE);
    }
    if (rc > 0) {
        cfg_free(c);
        return ms_err("%s:%d: not a '[section]' header or 'key = value' line (fix the syntax; "
                      "comments start with ; or #)", origin, rc);
    }
    if (rc < 0) {
        cfg_free(c);
        return ms_err("%s: cannot parse (out of memory?)", origin);
    }
    if (p.dup_line) {
        cfg_free(c);
        return ms_err("%s:%d: %s is given twice (keep one)", origin, p.dup_line, p.dup);
    }
    *out = c;
    return MS_OK;
}

int cfg_load(const char *path, cfg_t **out) {
    char *text;
    size_t len;
    if (ms_read_file_max(path, CFG_MAX_BYTES, &text, &len)) return MS_ERR;
    int rc = cfg_parse_mem(text, len, path, out);
    free(text);
    return rc;
}

const char *cfg_origin(const cfg_t *c) { return c->origin; }

const char *cfg_where(const cfg_t *c, const char *sec, const char *key) {
    entry_t *e = find(c, sec, key);
    cfg_t *m = (cfg_t *)c; /* the scratch buffer is not part of the value */
    if (e)
        snprintf(m->where, sizeof m->where, "%s:%d", e->origin, e->line);
    else
        snprintf(m->where, sizeof m->where, "%s", c->origin);
    return m->where;
}

int cfg_has(cfg_t *c, const char *sec, const char *key) {
    entry_t *e = find(c, sec, key);
    if (e) e->used = 1;
    return e != NULL;
}

int cfg_has_section(const cfg_t *c, const char *sec) {
    for (int i = 0; i < c->n; i++)
        if (!strcasecmp(c->e[i].section, sec)) return 1;
    return 0;
}

/* Every typed read is checked against the key table (cfg_keys.c) first,
 * present or not, so a parser and the table cannot disagree unnoticed. */
static void check_key(const cfg_t *c, const char *sec, const char *key, cfgk_type_t t,
                      const char *def, const char *min, const char *max) {
    if (c->kind) cfg_keys_check(c->kind, sec, key, t, def, min, max, NULL, 0);
}

static int get_str(cfg_t *c, const char *sec, const char *key, const char *def,
                   const char **out) {
    entry_t *e = find(c, sec, key);
    if (!e) {
        *out = def;
        return MS_OK;
    }
    e->used = 1;
    *out = e->value;
    return MS_OK;
}

int cfg_str(cfg_t *c, const char *sec, const char *key, const char *def, const char **out) {
    check_key(c, sec, key, CFGK_STR, def, NULL, NULL);
    return get_str(c, sec, key, def, out);
}

int cfg_int(cfg_t *c, const char *sec, const char *key, long def, long min, long max, long *out) {
    if (c->kind) {
        char d[32], lo[32], hi[32];
        snprintf(d, sizeof d, "%ld", def);
        snprintf(lo, sizeof lo, "%ld", min);
        snprintf(hi, sizeof hi, "%ld", max);
        check_key(c, sec, key, CFGK_INT, d, lo, hi);
    }
    entry_t *e = find(c, sec, key);
    if (!e) {
        *out = def;
        return MS_OK;
    }
    e->used = 1;
    long v;
    if (ms_parse_int(e->value, &v))
        return ms_err("%s:%d: [%s] %s = '%s' is not a whole number (example: %s = %ld)", e->origin,
                      e->line, sec, key, e->value, key, def);
    if (v < min || v > max)
        return ms_err("%s:%d: [%s] %s = %ld is out of range (give %ld to %ld)", e->origin, e->line,
                      sec, key, v, min, max);
    *out = v;
    return MS_OK;
}

int cfg_double(cfg_t *c, const char *sec, const char *key, double def, double min, double max,
               double *out) {
    if (c->kind) {
        char d[40], lo[40], hi[40];
        snprintf(d, sizeof d, "%.17g", def);
        snprintf(lo, sizeof lo, "%.17g", min);
        snprintf(hi, sizeof hi, "%.17g", max);
        check_key(c, sec, key, CFGK_DOUBLE, d, lo, hi);
    }
    entry_t *e = find(c, sec, key);
    if (!e) {
        *out = def;
        return MS_OK;
    }
    e->used = 1;
    double v;
    if (ms_parse_double(e->value, &v))
        return ms_err("%s:%d: [%s] %s = '%s' is not a finite number (example: %s = %g)", e->origin,
                      e->line, sec, key, e->value, key, def);
    if (v < min || v > max)
        return ms_err("%s:%d: [%s] %s = %g is out of range (give %g to %g)", e->origin, e->line,
                      sec, key, v, min, max);
    *out = v;
    return MS_OK;
}

int cfg_bool(cfg_t *c, const char *sec, const char *key, int def, int *out) {
    check_key(c, sec, key, CFGK_BOOL, def ? "true" : "false", NULL, NULL);
    entry_t *e = find(c, sec, key);
    if (!e) {
        *out = def;
        return MS_OK;
    }
    e->used = 1;
    const char *v = e->value;
    if (!strcasecmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        *out = 1;
    else if (!strcasecmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
             !strcasecmp(v, "off"))
        *out = 0;
    else
        return ms_err("%s:%d: [%s] %s = '%s' is not a yes/no value (give true or false)", e->origin,
                      e->line, sec, key, v);
    return MS_OK;
}

int cfg_count(const cfg_t *c) { return c->n; }

void cfg_entry(const cfg_t *c, int i, const char **sec, const char **key, const char **value,
               int *line) {
    const entry_t *e = &c->e[i];
    if (sec) *sec = e->section;
    if (key) *key = e->key;
    if (value) *value = e->value;
    if (line) *line = e->line;
}

int cfg_check_unused(const cfg_t *c) {
    int rc = MS_OK;
    for (int i = 0; i < c->n; i++)
        if (!c->e[i].used && c->kind && cfg_keys_find(c->kind, c->e[i].section, c->e[i].key))
            rc = ms_err("%s:%d: [%s] %s is a known key, but nothing in this run reads it (is the "
                        "strategy or mode it belongs to in use? see docs/config.md)",
                        c->e[i].origin, c->e[i].line, c->e[i].section, c->e[i].key);
        else if (!c->e[i].used)
            rc = ms_err("%s:%d: unknown key [%s] %s (misspelt? see docs/config.md for the keys)",
                        c->e[i].origin, c->e[i].line, c->e[i].section, c->e[i].key);
    return rc;
}

static int cmp_entry(const void *a, const void *b) {
    const entry_t *x = *(entry_t *const *)a, *y = *(entry_t *const *)b;
    int r = strcasecmp(x->section, y->section);
    return r ? r : strcasecmp(x->key, y->key);
}

char *cfg_canonical(const cfg_t *c) {
    entry_t **v = ms_malloc((size_t)(c->n ? c->n : 1) * sizeof *v);
    size_t len = 1;
    for (int i = 0; i < c->n; i++) {
        v[i] = &c->e[i];
        len += strlen(c->e[i].section) + strlen(c->e[i].key) + strlen(c->e[i].value) + 8;
    }
    qsort(v, (size_t)c->n, sizeof *v, cmp_entry);
    char *s = ms_malloc(len), *p = s;
    *p = 0;
    const char *sec = NULL;
    for (int i = 0; i < c->n; i++) {
        if (!sec || strcasecmp(sec, v[i]->section))
            p += sprintf(p, "[%s]\n", sec = v[i]->section);
        p += sprintf(p, "%s = %s\n", v[i]->key, v[i]->value);
    }
    free(v);
    return s;
}

int cfg_enum(cfg_t *c, const char *sec, const char *key, const char *def,
             const char *const *names, int n, int *out) {
    const char *s;
    if (c->kind) cfg_keys_check(c->kind, sec, key, CFGK_ENUM, def, NULL, NULL, names, n);
    if (get_str(c, sec, key, def, &s)) return MS_ERR;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return MS_OK;
        }
    char all[256] = "";
    for (int i = 0; i < n; i++)
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", i ? ", " : "", names[i]);
    return ms_err("%s: [%s] %s = '%s' is not one of: %s", cfg_where(c, sec, key), sec, key, s,
                  all);
}
