/* report_plot: the plumbing every figure shares: text buffers, the fixed
 * strategy colours, the common style, and rendering a gnuplot script into
 * PNG and SVG without leaving half-written files. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "report_int.h"
#include "util.h"

extern char **environ;

void report_printf(report_buf_t *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->s ? b->cap - b->n : 0;
        int k = vsnprintf(b->s ? b->s + b->n : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if ((size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->s = ms_realloc(b->s, b->cap);
        if (b->n == 0) b->s[0] = '\0';
    }
}

void report_buf_free(report_buf_t *b) {
    free(b->s);
    *b = (report_buf_t){0};
}

void report_quote(report_buf_t *b, const char *s) {
    report_printf(b, "'");
    for (; *s; s++) {
        if (*s == '\'') report_printf(b, "''");
        else if (*s == '\n' || *s == '\r') report_printf(b, " ");
        else report_printf(b, "%c", *s);
    }
    report_printf(b, "'");
}

void report_md(report_buf_t *b, const char *s) {
    for (; *s; s++) {
        if (*s == '|' || *s == '*' || *s == '_' || *s == '`' || *s == '[' || *s == ']' ||
            *s == '<' || *s == '>')
            report_printf(b, "\\%c", *s);
        else if (*s == '\n' || *s == '\r') report_printf(b, " ");
        else report_printf(b, "%c", *s);
    }
}

/* One colour per strategy in every figure, so a reader learns them once;
 * the point type tells them apart in greyscale too. A variant named with
 * a known prefix ("eplb-global") keeps its family's colour. */
static const struct { const char *name; report_style_t st; } KNOWN[] = {
    {"static", {"#7f7f7f", 5}}, {"eplb", {"#1f77b4", 7}},  {"omni", {"#d62728", 9}},
    {"bias", {"#2ca02c", 13}},  {"bound", {"#000000", 3}}, {"bestep", {"#000000", 3}},
};
/* Further strategies get one of these, fixed by a hash of the name. */
static const report_style_t EXTRA[] = {
    {"#9467bd", 11}, {"#ff7f0e", 15}, {"#8c564b", 4},
    {"#e377c2", 6},  {"#bcbd22", 8},  {"#17becf", 12},
};

report_style_t report_style(const char *s) {
    size_t n = sizeof KNOWN / sizeof *KNOWN;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(KNOWN[i].name, s)) return KNOWN[i].st;
    for (size_t i = 0; i < n; i++)
        if (!strncmp(KNOWN[i].name, s, strlen(KNOWN[i].name))) return KNOWN[i].st;
    return EXTRA[ms_hash64(s, strlen(s)) % (sizeof EXTRA / sizeof *EXTRA)];
}

int report_rgb(const char *s) { return (int)strtol(report_style(s).color + 1, NULL, 16); }

int report_wanted(const report_ctx_t *c, const char *name) {
    if (!c->only) return 1;
    size_t n = strlen(name);
    for (const char *p = c->only; *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && !strncmp(p, name, n)) return 1;
        p += k;
        if (*p) p++;
    }
    return 0;
}

int report_skip(report_ctx_t *c, const char *fmt, ...) {
    char msg[REPORT_NOTE_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ms_warn("report: skipping %s", msg);
    report_result_t *r = c->res;
    r->skipped++;
    if (r->n_notes < REPORT_MAX_NOTES) snprintf(r->notes[r->n_notes++], REPORT_NOTE_LEN, "%s", msg);
    report_printf(&c->index, "*Not drawn:* ");
    report_md(&c->index, msg);
    report_printf(&c->index, "\n\n");
    return REPORT_SKIP;
}

sqlite3_stmt *report_prepare(report_ctx_t *c, const char *sql) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &q, NULL) != SQLITE_OK) {
        ms_err("report: query failed: %s (is the database from this moesim version?)",
               sqlite3_errmsg(c->db));
        sqlite3_finalize(q);
        return NULL;
    }
    return q;
}

double report_metric(report_ctx_t *c, int64_t run, const char *metric, double dflt) {
    sqlite3_stmt *q =
        report_prepare(c, "SELECT value FROM summary WHERE run_id = ?1 AND metric = ?2");
    if (!q) return dflt;
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_text(q, 2, metric, -1, SQLITE_STATIC);
    double v = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL
                   ? sqlite3_column_double(q, 0)
                   : dflt;
    sqlite3_finalize(q);
    return v;
}

double report_value(report_ctx_t *c, const char *sql, int64_t run, double dflt) {
    sqlite3_stmt *q = report_prepare(c, sql);
    if (!q) return dflt;
    if (sqlite3_bind_parameter_count(q)) sqlite3_bind_int64(q, 1, run);
    double v = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL
                   ? sqlite3_column_double(q, 0)
                   : dflt;
    sqlite3_finalize(q);
    return v;
}

void report_label(report_buf_t *b, const report_exp_t *e, int i) {
    int mixed = 0;
    for (int j = 0; j < e->n; j++) mixed |= e->run[j].devices != e->run[i].devices;
    report_buf_t t = {0};
    report_printf(&t, "%s", e->run[i].strategy);
    if (mixed) report_printf(&t, " (EP%d)", e->run[i].devices);
    report_quote(b, t.s);
    report_buf_free(&t);
}

void report_run_list(report_buf_t *b, const report_exp_t *e, const int *use) {
    int k = 0;
    for (int i = 0; i < e->n; i++) {
        if (use && !use[i]) continue;
        report_printf(b, "%s%lld ", k++ ? ", " : "", (long long)e->run[i].id);
        report_md(b, e->run[i].strategy);
    }
    if (!k) report_printf(b, "none");
}

void report_fig_free(report_fig_t *f) {
    report_buf_free(&f->data);
    report_buf_free(&f->body);
    report_buf_free(&f->caption);
}

/* Style shared by every figure: thin frame on two sides, light grid behind
 * the data, legends below the plot so they never cover it. */
static const char STYLE[] =
    "  reset\n"
    "  set border 3 lw 1.2 lc rgb '#333333'\n"
    "  set tics nomirror out scale 0.6\n"
    "  set grid back ytics lc rgb '#e3e3e3' lw 1 dt 1\n"
    "  set key below center horizontal reverse Left nobox samplen 3 spacing 1.2 width 2 height 1\n"
    "  set style fill solid 0.85 border -1\n"
    "  set title font ',14'\n";

static void path_of(char *out, size_t n, const char *dir, const char *pre, const char *stem,
                    const char *ext) {
    snprintf(out, n, "%s/%s%s.%s", dir, pre, stem, ext);
}

/* The first lines of gnuplot's output, for an error message. */
static void log_head(const char *path, char *out, size_t n) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t k = fread(out, 1, n - 1, f);
    out[k] = '\0';
    fclose(f);
    for (char *p = out; *p; p++)
        if (*p == '\n') *p = ' ';
}

/* Runs `gnuplot -e "png=...; svg=..." script`, its output to log. */
static int run_gnuplot(report_ctx_t *c, const char *script, const char *png, const char *svg,
                       const char *log, int *status) {
    if (c->no_gnuplot) return MS_ERR;
    report_buf_t e = {0};
    report_printf(&e, "png = ");
    report_quote(&e, png);
    report_printf(&e, "; svg = ");
    report_quote(&e, svg);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *argv[] = {"gnuplot", "-e", e.s, (char *)script, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    report_buf_free(&e);
    if (rc) {
        c->no_gnuplot = 1;
        return ms_err("report: cannot start gnuplot: %s (install it: make deps)", strerror(rc));
    }
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR) return ms_err("report: lost gnuplot: %s", strerror(errno));
    return MS_OK;
}

static int nonempty(const char *path) {
    struct stat sb;
    return !stat(path, &sb) && sb.st_size > 0;
}

int report_render(report_ctx_t *c, report_fig_t *f) {
    char png[4096], svg[4096], gp[4096], tpng[4096], tsvg[4096], tgp[4096], log[4096];
    path_of(png, sizeof png, c->dir, "", f->stem, "png");
    path_of(svg, sizeof svg, c->dir, "", f->stem, "svg");
    path_of(gp, sizeof gp, c->dir, "", f->stem, "gp");
    path_of(tpng, sizeof tpng, c->dir, ".", f->stem, "png.tmp");
    path_of(tsvg, sizeof tsvg, c->dir, ".", f->stem, "svg.tmp");
    path_of(tgp, sizeof tgp, c->dir, ".", f->stem, "gp.tmp");
    path_of(log, sizeof log, c->dir, ".", f->stem, "log.tmp");

    /* The script draws both formats in a loop over the same body, and
     * names its outputs only when not told, so a reader can re-run it. */
    report_buf_t s = {0};
    report_printf(&s, "# moesim report: %s\n# Redraw: gnuplot %s.gp (in this folder)\n"
                      "if (!exists(\"png\")) png = '%s.png'\n"
                      "if (!exists(\"svg\")) svg = '%s.svg'\n",
                  f->title, f->stem, f->stem, f->stem);
    if (f->data.s) report_printf(&s, "%s", f->data.s);
    report_printf(&s, "do for [fmt = 1:2] {\n"
                      "  if (fmt == 1) {\n"
                      "    set terminal pngcairo size %d,%d font 'DejaVu Sans,12' noenhanced "
                      "background rgb 'white'\n    set output png\n"
                      "  } else {\n"
                      "    set terminal svg size %d,%d font 'DejaVu Sans,12' noenhanced dynamic "
                      "background rgb 'white'\n    set output svg\n  }\n%s%s"
                      "  unset multiplot\n  set output\n}\n",
                  f->width, f->height, f->width, f->height, STYLE, f->body.s ? f->body.s : "");

    int rc = MS_ERR, status = 0;
    FILE *out = fopen(tgp, "w");
    if (!out) {
        ms_err("%s: cannot write: %s (check the report folder is writable)", tgp, strerror(errno));
        goto done;
    }
    int bad = fputs(s.s, out) < 0;
    if (fclose(out) || bad) {
        ms_err("%s: write failed (disk full?)", tgp);
        goto done;
    }
    if (run_gnuplot(c, tgp, tpng, tsvg, log, &status)) goto done;
    char said[600];
    log_head(log, said, sizeof said);
    if (!WIFEXITED(status) || WEXITSTATUS(status) || !nonempty(tpng) || !nonempty(tsvg)) {
        ms_err("report: gnuplot failed to draw %s: %s", png, said[0] ? said : "no output");
        goto done;
    }
    if (said[0]) ms_warn("report: gnuplot warned while drawing %s: %s", png, said);
    if (rename(tpng, png) || rename(tsvg, svg) || rename(tgp, gp)) {
        ms_err("%s: cannot rename the finished figure into place: %s", png, strerror(errno));
        goto done;
    }
    report_printf(&c->index, "### %s\n\n![%s](%s.png)\n\n%s%s([SVG](%s.svg), "
                             "[gnuplot script](%s.gp))\n\n",
                  f->title, f->title, f->stem, f->caption.s ? f->caption.s : "",
                  f->caption.s ? " " : "", f->stem, f->stem);
    c->res->drawn++;
    rc = MS_OK;
done:
    if (rc) c->res->failed++;
    unlink(tpng);
    unlink(tsvg);
    unlink(tgp);
    unlink(log);
    report_buf_free(&s);
    report_fig_free(f);
    return rc;
}
