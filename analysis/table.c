/* table: cells kept as typed values with their text form; one pass prints
 * them as aligned text, RFC 4180 CSV (quote_csv) or a jansson JSON document
 * {"command": ..., "tables": {name: [ {column: value}, ... ]}, "notes": {}}. */
#include "table.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "quote.h"
#include "util.h"

enum { CELL_NULL, CELL_STR, CELL_INT, CELL_NUM };

typedef struct {
    int kind;
    char *text; /* text form (CELL_STR: the string) */
    long long i;
    double v;
} cell_t;

typedef struct {
    char *key, *head;
    int width, left;
} col_t;

struct table {
    char *name, *title;
    col_t *col;
    int ncol;
    cell_t *cell;
    size_t ncell, cap;
};

typedef struct {
    char *key, *text;
} note_t;

struct table_doc {
    char *command;
    table_format_t fmt;
    table_t **t;
    int nt;
    note_t *note;
    int nnote;
};

table_doc_t *table_doc_new(const char *command, table_format_t fmt) {
    table_doc_t *d = ms_calloc(1, sizeof *d);
    d->command = ms_strdup(command);
    d->fmt = fmt;
    return d;
}

table_format_t table_doc_format(const table_doc_t *d) { return d->fmt; }

void table_doc_free(table_doc_t *d) {
    if (!d) return;
    for (int i = 0; i < d->nt; i++) {
        table_t *t = d->t[i];
        for (int c = 0; c < t->ncol; c++) {
            free(t->col[c].key);
            free(t->col[c].head);
        }
        for (size_t c = 0; c < t->ncell; c++) free(t->cell[c].text);
        free(t->col);
        free(t->cell);
        free(t->name);
        free(t->title);
        free(t);
    }
    for (int i = 0; i < d->nnote; i++) {
        free(d->note[i].key);
        free(d->note[i].text);
    }
    free(d->note);
    free(d->t);
    free(d->command);
    free(d);
}

table_t *table_new(table_doc_t *d, const char *name, const char *title) {
    table_t *t = ms_calloc(1, sizeof *t);
    t->name = ms_strdup(name);
    t->title = title ? ms_strdup(title) : NULL;
    d->t = ms_realloc(d->t, (size_t)(d->nt + 1) * sizeof *d->t);
    d->t[d->nt++] = t;
    return t;
}

void table_col(table_t *t, const char *key, const char *head, int width, int left) {
    t->col = ms_realloc(t->col, (size_t)(t->ncol + 1) * sizeof *t->col);
    t->col[t->ncol++] = (col_t){ms_strdup(key), head ? ms_strdup(head) : NULL, width, left};
}

static cell_t *add(table_t *t, int kind) {
    if (t->ncell == t->cap) t->cell = ms_realloc(t->cell, (t->cap = t->cap ? 2 * t->cap : 64) * sizeof *t->cell);
    cell_t *c = &t->cell[t->ncell++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    return c;
}

void table_str(table_t *t, const char *s) {
    if (!s) {
        table_null(t);
        return;
    }
    add(t, CELL_STR)->text = ms_strdup(s);
}

void table_int(table_t *t, long long v) {
    cell_t *c = add(t, CELL_INT);
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    c->i = v;
    c->text = ms_strdup(b);
}

void table_num_text(table_t *t, double v, const char *text) {
    if (!isfinite(v)) {
        table_null(t);
        return;
    }
    cell_t *c = add(t, CELL_NUM);
    c->v = v;
    c->text = ms_strdup(text);
}

void table_num(table_t *t, double v, int prec) {
    char b[64];
    snprintf(b, sizeof b, "%.*f", prec, v);
    table_num_text(t, v, b);
}

void table_null(table_t *t) { add(t, CELL_NULL)->text = ms_strdup("-"); }

void table_null_text(table_t *t, const char *text) { add(t, CELL_NULL)->text = ms_strdup(text); }

void table_num_or(table_t *t, double v, int prec, const char *missing) {
    if (isfinite(v)) table_num(t, v, prec);
    else table_null_text(t, missing);
}

void table_note(table_doc_t *d, const char *key, const char *fmt, ...) {
    char b[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    d->note = ms_realloc(d->note, (size_t)(d->nnote + 1) * sizeof *d->note);
    d->note[d->nnote++] = (note_t){ms_strdup(key), ms_strdup(b)};
}

/* The shortest of %.15g..%.17g that reads back as the same double. */
static void exact(double v, char *b, size_t n) {
    for (int p = 15; p <= 17; p++) {
        snprintf(b, n, "%.*g", p, v);
        if (strtod(b, NULL) == v) return;
    }
}

static void print_text(const table_doc_t *d, FILE *f) {
    for (int ti = 0; ti < d->nt; ti++) {
        const table_t *t = d->t[ti];
        if (ti) fputc('\n', f);
        if (t->title) fprintf(f, "%s\n", t->title);
        if (!t->ncol) continue; /* a title alone (text only) */
        int *w = ms_calloc((size_t)t->ncol, sizeof *w), last = -1;
        for (int c = 0; c < t->ncol; c++)
            if (t->col[c].head) {
                w[c] = ms_imax(t->col[c].width, (int)strlen(t->col[c].head));
                last = c;
            }
        for (size_t i = 0; i < t->ncell; i++)
            w[i % t->ncol] = ms_imax(w[i % t->ncol], (int)strlen(t->cell[i].text));
        size_t rows = t->ncell / t->ncol;
        for (size_t r = 0; r <= rows; r++) { /* row 0: the header */
            int first = 1;
            for (int c = 0; c < t->ncol; c++) {
                if (!t->col[c].head) continue; /* a column for CSV and JSON only */
                const char *s = r ? t->cell[(r - 1) * t->ncol + c].text : t->col[c].head;
                /* a left-aligned last column is not padded: no trailing blanks */
                if (c == last && t->col[c].left && !*s) break; /* no trailing blank */
                if (t->col[c].left) fprintf(f, "%s%-*s", first ? "" : " ", c == last ? 0 : w[c], s);
                else fprintf(f, "%s%*s", first ? "" : " ", w[c], s);
                first = 0;
            }
            fputc('\n', f);
        }
        free(w);
    }
    for (int i = 0; i < d->nnote; i++) fprintf(f, "%s\n", d->note[i].text);
}

static void csv_field(FILE *f, const char *s) {
    char *q = quote_csv(s);
    fputs(q, f);
    free(q);
}

static void print_csv(const table_doc_t *d, FILE *f) {
    int tables = 0, printed = 0;
    for (int ti = 0; ti < d->nt; ti++) tables += d->t[ti]->ncol > 0;
    for (int ti = 0; ti < d->nt; ti++) {
        const table_t *t = d->t[ti];
        if (!t->ncol) continue;
        if (tables > 1) fprintf(f, "%s# %s\n", printed++ ? "\n" : "", t->name);
        for (int c = 0; c < t->ncol; c++) {
            if (c) fputc(',', f);
            csv_field(f, t->col[c].key);
        }
        fputc('\n', f);
        for (size_t i = 0; i < t->ncell; i++) {
            const cell_t *c = &t->cell[i];
            char b[64];
            if (i % t->ncol) fputc(',', f);
            if (c->kind == CELL_STR) csv_field(f, c->text);
            else if (c->kind == CELL_INT) fputs(c->text, f);
            else if (c->kind == CELL_NUM) exact(c->v, b, sizeof b), fputs(b, f);
            if (i % t->ncol == (size_t)t->ncol - 1) fputc('\n', f);
        }
    }
    /* notes are not CSV: stderr keeps stdout one table stream */
    for (int i = 0; i < d->nnote; i++) fprintf(stderr, "%s\n", d->note[i].text);
}

/* A JSON string of s. JSON holds only UTF-8, and jansson refuses anything
 * else (json_string gives NULL, and the cell would vanish from its row): a
 * name from a file need not be UTF-8, so a string that is not is written with
 * each byte above 0x7f as '?', and the cell stays. */
static json_t *json_text(const char *s) {
    json_t *j = json_string(s);
    if (j || !s) return j ? j : json_null();
    char *t = ms_strdup(s);
    for (char *p = t; *p; p++)
        if ((unsigned char)*p > 0x7f) *p = '?';
    j = json_string(t);
    free(t);
    return j;
}

static json_t *json_cell(const cell_t *c) {
    switch (c->kind) {
    case CELL_STR: return json_text(c->text);
    case CELL_INT: return json_integer(c->i);
    case CELL_NUM: return json_real(c->v);
    default: return json_null();
    }
}

static int print_json(const table_doc_t *d, FILE *f) {
    json_t *root = json_object(), *tables = json_object(), *notes = json_object();
    json_object_set_new(root, "command", json_text(d->command));
    for (int ti = 0; ti < d->nt; ti++) {
        const table_t *t = d->t[ti];
        json_t *rows = json_array();
        for (size_t i = 0; t->ncol && i + t->ncol <= t->ncell; i += t->ncol) {
            json_t *row = json_object();
            for (int c = 0; c < t->ncol; c++)
                json_object_set_new(row, t->col[c].key, json_cell(&t->cell[i + c]));
            json_array_append_new(rows, row);
        }
        json_object_set_new(tables, t->name, rows);
    }
    for (int i = 0; i < d->nnote; i++)
        json_object_set_new(notes, d->note[i].key, json_text(d->note[i].text));
    json_object_set_new(root, "tables", tables);
    json_object_set_new(root, "notes", notes);
    /* JSON_PRESERVE_ORDER: columns in the table's order; real numbers in
     * full precision so a value reads back exactly */
    int rc = json_dumpf(root, f, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    fputc('\n', f);
    json_decref(root);
    return rc;
}

int table_print(table_doc_t *d, FILE *f) {
    int rc = 0;
    if (d->fmt == TABLE_CSV) print_csv(d, f);
    else if (d->fmt == TABLE_JSON) rc = print_json(d, f);
    else print_text(d, f);
    return rc || fflush(f) || ferror(f) ? ms_err("cannot write the table to the output") : MS_OK;
}

int table_format_parse(const char *s, table_format_t *out) {
    if (!strcmp(s, "text")) *out = TABLE_TEXT;
    else if (!strcmp(s, "csv")) *out = TABLE_CSV;
    else if (!strcmp(s, "json")) *out = TABLE_JSON;
    else return ms_err("--format '%s': give text, csv or json", s);
    return MS_OK;
}
