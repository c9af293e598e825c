/* util: the few helpers every room uses: error reporting, allocation and
 * small string tools. Errors follow one idiom: a function that can fail
 * returns an int status (MS_OK or MS_ERR) and has already said why. */
#ifndef MOESIM_UTIL_H
#define MOESIM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define MS_OK 0
#define MS_ERR (-1)

#define MS_USAGE (-2) /* a status: the command line itself is wrong (exit 2) */

/* Process exit statuses, the same for every command (README, "Exit status"):
 * 0 done; 1 bad input (a config, trace, database or option value that is
 * wrong, or a file that cannot be read or written); 2 usage (unknown
 * command or option, missing arguments); 3 internal error (out of memory,
 * a broken invariant). */
enum { MS_EXIT_OK = 0, MS_EXIT_INPUT = 1, MS_EXIT_USAGE = 2, MS_EXIT_INTERNAL = 3 };

#define MOESIM_VERSION "0.1.0"

/* Reports an error: "moesim: <message>" on stderr (unless quiet) and keeps
 * the text for ms_err_last(). Always returns MS_ERR so callers can write
 * `return ms_err("...")`. Messages say what, where (file:line) and the fix. */
int ms_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A warning: printed, never fatal. */
void ms_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A function called before a message is printed (progress.c clears its
 * line, so the message starts on a clean one); NULL for none. */
void ms_before_message(void (*fn)(void));
/* The text of the last ms_err() call ("" if none). */
const char *ms_err_last(void);
/* Quiet mode keeps messages out of stderr (the tests use it, and sweeps
 * while they collect a failing point's error). Returns the previous mode. */
int ms_err_quiet(int quiet);

/* Allocation that cannot return NULL: out of memory ends the process with
 * a message, since no simulation can continue without its tables. */
void *ms_malloc(size_t n);
void *ms_calloc(size_t count, size_t size);
void *ms_realloc(void *p, size_t n);
char *ms_strdup(const char *s);

/* Reads a whole file into a NUL-terminated buffer; *len gets its size. Only
 * a regular file is read (a folder, FIFO or device is refused without
 * blocking), and at most MS_MAX_FILE_BYTES (ms_read_file_max: max). */
#define MS_MAX_FILE_BYTES (4LL << 30)
int ms_read_file(const char *path, char **buf, size_t *len);
int ms_read_file_max(const char *path, long long max, char **buf, size_t *len);
/* Opens path for reading if it is a regular file of at most max bytes
 * (*size gets its size); returns the descriptor, or -1 having said why. */
int ms_open_regular(const char *path, long long max, long long *size);

/* Refuses (naming `where` and `what`, the key and its value) an input whose
 * tables would take more than 80% of this machine's memory, rather than
 * run out of memory part way. */
int ms_check_memory(double bytes, const char *where, const char *what);

/* Writes path p as seen from the folder of `file` (a config naming a trace,
 * a sweep naming its base): absolute p, or file "-" (text without a
 * folder), is kept as it is. */
void ms_path_beside(const char *file, const char *p, char *out, size_t n);

/* Strict number parsing: the whole string must be the number. */
int ms_parse_int(const char *s, long *out);
int ms_parse_double(const char *s, double *out);

/* 64-bit FNV-1a of a byte string (config hashes for resumable sweeps). */
uint64_t ms_hash64(const void *data, size_t len);

static inline int ms_imin(int a, int b) { return a < b ? a : b; }
static inline int ms_imax(int a, int b) { return a > b ? a : b; }
static inline double ms_dmax(double a, double b) { return a > b ? a : b; }
static inline double ms_dmin(double a, double b) { return a < b ? a : b; }

#endif
