/* cfg: experiment configuration from INI files (libinih). Every key keeps
 * the file and line it came from, so any later complaint about its value can
 * point there; keys nobody asked for are reported as unknown, which catches
 * typos. Overrides (sweeps, command-line) carry their own origin. */
#ifndef MOESIM_CFG_H
#define MOESIM_CFG_H

#include <stddef.h>

#include "cfg_keys.h"

typedef struct cfg cfg_t;

/* Parses an INI file. Syntax errors name file:line. */
int cfg_load(const char *path, cfg_t **out);
/* Parses INI text held in memory; origin names it in messages. */
int cfg_parse_text(const char *text, const char *origin, cfg_t **out);
/* The same from len bytes (a NUL among them is refused with its byte). */
int cfg_parse_mem(const char *text, size_t len, const char *origin, cfg_t **out);
/* The longest line a config may have (inih's buffer, less newline and NUL;
 * comments may be longer), and the largest config file read. */
#define CFG_MAX_LINE 198
#define CFG_MAX_BYTES (16 << 20)
cfg_t *cfg_new(void);
/* What kind of file the config is (CFGK_EXPERIMENT, the default, or
 * CFGK_MODEL, CFGK_HARDWARE, CFGK_SWEEP of cfg_keys.h): every typed read
 * is checked against that part of the key table. NULL turns the check off,
 * for the tests of the getters themselves only. */
void cfg_set_kind(cfg_t *c, const char *kind);
cfg_t *cfg_copy(const cfg_t *c);
void cfg_free(cfg_t *c);

/* Sets (adds or replaces) section.key = value, remembering its origin. */
void cfg_set(cfg_t *c, const char *section, const char *key, const char *value,
             const char *origin, int line);
/* Sets from "section.key=value" (command-line -s and sweep axes). The key
 * is the part after the last dot, so "strategy.eplb.interval_steps=8" is
 * [strategy.eplb] interval_steps. */
int cfg_set_assign(cfg_t *c, const char *assign, const char *origin, int line);

/* Typed getters. A missing key gives the default; a bad value is an error
 * naming file:line, the key, what was wanted and an example. */
int cfg_str(cfg_t *c, const char *sec, const char *key, const char *def, const char **out);
int cfg_int(cfg_t *c, const char *sec, const char *key, long def, long min, long max, long *out);
int cfg_double(cfg_t *c, const char *sec, const char *key, double def, double min, double max,
               double *out);
int cfg_bool(cfg_t *c, const char *sec, const char *key, int def, int *out);
/* One of names[n] (case-sensitive); *out gets its index. */
int cfg_enum(cfg_t *c, const char *sec, const char *key, const char *def,
             const char *const *names, int n, int *out);
/* 1 if the key is present (marks it used). */
int cfg_has(cfg_t *c, const char *sec, const char *key);
/* 1 if any key of section sec is present (marks nothing used). */
int cfg_has_section(const cfg_t *c, const char *sec);
/* "file:line" of a key, or the file name when the key is absent. */
const char *cfg_where(const cfg_t *c, const char *sec, const char *key);
/* The file the config came from ("-" for text). */
const char *cfg_origin(const cfg_t *c);

/* The i-th entry (0 <= i < cfg_count) in the order the keys were first
 * set: sweep files walk their sections with it. Does not mark it used. */
int cfg_count(const cfg_t *c);
void cfg_entry(const cfg_t *c, int i, const char **sec, const char **key, const char **value,
               int *line);

/* Errors for each key no getter read: "file:line: unknown key ...". */
int cfg_check_unused(const cfg_t *c);
/* Canonical text (sections and keys sorted): stored with each run and
 * hashed to recognise a run already done. Caller frees. */
char *cfg_canonical(const cfg_t *c);

#endif
