/* report: figures (gnuplot, pngcairo) and an index page drawn from a results
 * database alone. Each figure is one function that queries the database,
 * writes its data inline into a gnuplot script and renders it; a figure
 * whose data is missing is skipped with a message, the others still drawn. */
#ifndef MOESIM_REPORT_H
#define MOESIM_REPORT_H

/* Draws every figure the database supports into out_dir (created). */
int report_make(const char *db_path, const char *out_dir);

#endif
