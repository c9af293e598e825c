/* table: the one printer of every table the CLI shows, as aligned text, CSV
 * (--csv) or JSON (--json, through jansson). A command fills named tables
 * cell by cell and prints them once, so the three forms always agree. */
#ifndef MOESIM_TABLE_H
#define MOESIM_TABLE_H

#include <stdio.h>

typedef enum { TABLE_TEXT, TABLE_CSV, TABLE_JSON } table_format_t;

typedef struct table_doc table_doc_t; /* what one command prints */
typedef struct table table_t;         /* one table of it */

/* A document for `command` in format fmt. */
table_doc_t *table_doc_new(const char *command, table_format_t fmt);
void table_doc_free(table_doc_t *d);
table_format_t table_doc_format(const table_doc_t *d);

/* A new table named `name` (its key in JSON, its "# name" line in CSV when
 * a document holds several); title, if not NULL, is a line printed above it
 * as text. */
table_t *table_new(table_doc_t *d, const char *name, const char *title);
/* A column: key (CSV header, JSON member), head (text header), text width
 * (a minimum; wider cells widen it) and alignment (left: 1). Columns are
 * added before the first cell. */
void table_col(table_t *t, const char *key, const char *head, int width, int left);

/* Cells, left to right, row after row. */
void table_str(table_t *t, const char *s);  /* NULL: missing */
void table_int(table_t *t, long long v);
/* A number shown with prec decimals as text; CSV and JSON get it exactly
 * (the shortest form that reads back the same double). NaN: missing. */
void table_num(table_t *t, double v, int prec);
/* A number whose text form is given (a unit, "+-", a percent sign). */
void table_num_text(table_t *t, double v, const char *text);
void table_null(table_t *t); /* missing: "-" as text, empty in CSV, null in JSON */
void table_null_text(table_t *t, const char *text); /* missing, shown as text */
/* table_num, or a missing cell shown as `missing` when v is not finite. */
void table_num_or(table_t *t, double v, int prec, const char *missing);

/* A line of text after the tables (text), on stderr (CSV, to keep stdout
 * one table stream), or a member of "notes" (JSON) under key. */
void table_note(table_doc_t *d, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prints the document to f. Returns MS_OK, or MS_ERR when writing failed. */
int table_print(table_doc_t *d, FILE *f);

/* Parses --csv / --json style choices: "text", "csv", "json". */
int table_format_parse(const char *s, table_format_t *out);

#endif
