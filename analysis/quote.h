/* quote: one quoting function per language moesim writes (gnuplot string
 * literals, gnuplot datablock fields, gnuplot comments, Markdown text, CSV
 * fields), so a string from a trace, a config or a results database always
 * reaches those files as data and never as code or markup. */
#ifndef MOESIM_QUOTE_H
#define MOESIM_QUOTE_H

/* Every function returns a new NUL-terminated string (free it) holding s
 * made safe for one place in one language. All of them first clean s the
 * same way: a control character (C0, DEL, C1; newline and carriage return
 * included) becomes a space and a byte that is not part of well-formed
 * UTF-8 becomes '?', so the result is one line of valid UTF-8 (an SVG that
 * shows it stays well-formed XML). */

/* The clean alone: s as one line of valid UTF-8. */
char *quote_clean(const char *s);

/* A gnuplot string made of single-quoted literals, quotes included:
 * 'it'."'".'s'. Inside single quotes gnuplot expands nothing (no backquote
 * command, no @macro, no backslash escape) and a literal cannot span lines,
 * hence the one-line clean. The quote itself is the only special character;
 * gnuplot 5.4's scanner misreads the documented doubled-quote escape when it
 * follows the opening quote or another doubled quote, so each quote is
 * written as the one-character string "'" joined with '.', which every place
 * moesim puts a string (title, label, output, assignment) takes as an
 * expression. */
char *quote_gp(const char *s);

/* A double-quoted string field for a line of a gnuplot datablock, quotes
 * included. gnuplot never evaluates a datablock's lines; a block ends only
 * at a line that starts with its terminator. A field is one line without a
 * '"' (each becomes '\''), so it can neither end the line, nor the block,
 * nor split into two columns. Callers start every datablock line with a
 * number they print themselves, so no line can start with the terminator. */
char *quote_gp_field(const char *s);

/* Text for the rest of a gnuplot `# ...` comment line. No line break, and
 * no backslash at the end (gnuplot continues a comment ending in '\' onto
 * the next line, which would turn that line into part of the comment or a
 * comment's text into a command): a final '\' becomes '/'. */
char *quote_gp_comment(const char *s);

/* Inline Markdown text (a table cell, a heading after its '#'s, a caption):
 * every character that can start markup, a link, HTML or an entity
 * (\ ` * _ [ ] < > | # ! & ~ $) is backslash-escaped, and a leading list or
 * heading marker (- + = or digits then '.' or ')') too. */
char *quote_md(const char *s);

/* A CSV field (RFC 4180): as is, or in double quotes with '"' doubled when
 * it holds a comma, a quote or leading/trailing space. */
char *quote_csv(const char *s);

#endif
