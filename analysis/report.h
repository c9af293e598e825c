/* report: figures (gnuplot: PNG and SVG, with the script that drew them) and
 * an index page (index.md) drawn from a results database alone. Each figure
 * is one function that queries the database and renders a gnuplot script; a
 * figure whose data is missing is skipped with a message naming the data and
 * the command that produces it, and the others are still drawn. */
#ifndef MOESIM_REPORT_H
#define MOESIM_REPORT_H

#include <stddef.h>

#define REPORT_MAX_NOTES 64
#define REPORT_NOTE_LEN 480

/* What one report_build() call did, for the command line and the tests. */
typedef struct report_result {
    int drawn;   /* figures written (each as .png, .svg and .gp) */
    int skipped; /* figures not drawn because the database lacks their data */
    int failed;  /* figures whose rendering failed (gnuplot error) */
    int n_notes; /* entries used in notes */
    char notes[REPORT_MAX_NOTES][REPORT_NOTE_LEN]; /* why each skipped figure was skipped */
} report_result_t;

/* The figure families by name, for the `only` filter; NULL-terminated. */
extern const char *const report_figure_names[];

/* Draws every figure the database supports into out_dir (created) with
 * index.md. Returns MS_OK when at least one figure was drawn and none
 * failed; MS_ERR (with a message) when the database is missing, unreadable
 * or not a moesim database, when nothing could be drawn, or when a figure
 * failed to render. Skipped figures are reported with ms_warn. */
int report_make(const char *db_path, const char *out_dir);

/* The same, drawing only the figure families named in only (comma-separated
 * report_figure_names; NULL draws all), and filling *res (may be NULL). */
int report_build(const char *db_path, const char *out_dir, const char *only,
                 report_result_t *res);

/* What `calib report` shares with the report's figures. */

/* Runs gnuplot on script with dir as its working folder (script and log
 * are names inside dir, so no path the user chose is ever gnuplot code),
 * stdin from /dev/null, stdout and stderr into log; the log's first bytes
 * go to said (n bytes, always terminated). MS_OK when gnuplot exited 0;
 * otherwise a message saying whether it could not start, was killed (a
 * file size limit) or failed. */
int report_gnuplot(const char *dir, const char *script, const char *log, char *said, size_t n);

/* MS_OK when path is a whole PNG (ends with its IEND chunk) or SVG (ends
 * with </svg>), then synced to disk; a cut-short image (disk full) fails. */
int report_check_image(const char *path);

/* Writes len bytes of text to path, synced; on any write, sync or close
 * error (disk full, file size limit) removes path and fails naming it. */
int report_write_file(const char *path, const char *text, size_t len);

#endif
