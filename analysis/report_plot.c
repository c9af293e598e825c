/* report_plot: the plumbing every figure shares: text buffers, the fixed
 * strategy colours, the common style, and rendering a gnuplot script into
 * PNG and SVG without leaving half-written files. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "quote.h"
#include "place.h"
#include "prior.h"
#include "report_int.h"
#include "util.h"

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
    char *q = quote_gp(s);
    report_printf(b, "%s", q);
    free(q);
}

void report_field(report_buf_t *b, const char *s) {
    char *q = quote_gp_field(s);
    report_printf(b, "%s", q);
    free(q);
}

void report_md(report_buf_t *b, const char *s) {
    char *q = quote_md(s);
    report_printf(b, "%s", q);
    free(q);
}

/* One colour per strategy in every figure, so a reader learns them once;
 * the point type tells them apart in greyscale too. Strategies bring their
 * own (place_ops_t.color and .point, in their registry entry); a variant
 * named with a registered prefix ("eplb-global") keeps its family's. Runs of
 * the lower bound itself (not a strategy) are black. */
static const struct { const char *name; report_style_t st; } REFERENCE[] = {
    {"bound", {"#000000", 3}}, {"bestep", {"#000000", 3}},
};
/* Further strategies get one of these, fixed by a hash of the name. */
static const report_style_t EXTRA[] = {
    {"#9467bd", 11}, {"#ff7f0e", 15}, {"#8c564b", 4},
    {"#e377c2", 6},  {"#bcbd22", 8},  {"#17becf", 12},
};

static int styled(const place_ops_t *ops, report_style_t *out) {
    if (!ops || !ops->color) return 0;
    *out = (report_style_t){ops->color, ops->point};
    return 1;
}

report_style_t report_style(const char *s) {
    report_style_t st;
    for (size_t i = 0; i < sizeof REFERENCE / sizeof *REFERENCE; i++)
        if (!strcmp(REFERENCE[i].name, s)) return REFERENCE[i].st;
    if (strncmp(s, "exec:", 5) && styled(place_find(s), &st)) return st;
    for (int i = 0; i < place_count(); i++) {
        const place_ops_t *ops = place_at(i);
        if (!strncmp(ops->name, s, strlen(ops->name)) && styled(ops, &st)) return st;
    }
    return EXTRA[ms_hash64(s, strlen(s)) % (sizeof EXTRA / sizeof *EXTRA)];
}

int report_baseline(const char *s) {
    const place_ops_t *ops = strncmp(s, "exec:", 5) ? place_find(s) : NULL;
    return ops && ops->baseline;
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
    /* In-sample runs say so wherever they are drawn. */
    if (!strcmp(e->run[i].prior, "oracle")) report_printf(&t, " [oracle (in-sample)]");
    report_quote(b, t.s);
    report_buf_free(&t);
}

void report_run_list(report_buf_t *b, const report_exp_t *e, const int *use) {
    int k = 0;
    for (int i = 0; i < e->n; i++) {
        if (use && !use[i]) continue;
        report_printf(b, "%s%lld ", k++ ? ", " : "", (long long)e->run[i].id);
        report_md(b, e->run[i].strategy);
        report_printf(b, " (prior ");
        report_md(b, prior_display(e->run[i].prior));
        report_printf(b, ")");
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

/* The first lines of a gnuplot log, on one line, for an error message. */
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

int report_gnuplot(const char *dir, const char *script, const char *log, char *said, size_t n) {
    said[0] = '\0';
    /* exec's errno comes back through a close-on-exec pipe, so "gnuplot is
     * not installed" is told apart from "gnuplot failed". */
    int fds[2];
    if (pipe(fds)) return ms_err("report: cannot start gnuplot: %s", strerror(errno));
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]), close(fds[1]);
        return ms_err("report: cannot start gnuplot: %s", strerror(e));
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. gnuplot runs
         * inside the output folder and is given file names without a
         * folder, so the user's -o path never appears in gnuplot code. */
        close(fds[0]);
        int e = 0;
        if (chdir(dir)) e = errno;
        int in = open("/dev/null", O_RDONLY);
        int out = e ? -1 : open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (!e && (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0))
            e = errno;
        if (!e) {
            char *argv[] = {"gnuplot", (char *)script, NULL};
            execvp("gnuplot", argv);
            e = errno;
        }
        ssize_t w = write(fds[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(fds[1]);
    int e = 0;
    ssize_t got;
    while ((got = read(fds[0], &e, sizeof e)) < 0 && errno == EINTR) {
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return ms_err("report: lost gnuplot: %s", strerror(errno));
    if (got == (ssize_t)sizeof e)
        return ms_err("report: cannot start gnuplot in %s: %s (install it: make deps)", dir,
                      strerror(e));
    char lp[4096];
    snprintf(lp, sizeof lp, "%s/%s", dir, log);
    log_head(lp, said, n);
    if (WIFSIGNALED(status))
        return ms_err("report: gnuplot was killed by signal %d drawing %s/%s%s%s", WTERMSIG(status),
                      dir, script, WTERMSIG(status) == SIGXFSZ ? " (file size limit reached)" : "",
                      "");
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        return ms_err("report: gnuplot failed (exit %d) on %s/%s: %s",
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1, dir, script,
                      said[0] ? said : "no output");
    return MS_OK;
}

/* fsync a finished file so a crash after the rename cannot leave it empty. */
static int sync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int report_check_image(const char *path) {
    char *s = NULL;
    size_t n = 0;
    int quiet = ms_err_quiet(1);
    int rd = ms_read_file(path, &s, &n);
    ms_err_quiet(quiet);
    if (rd) return ms_err("%s: gnuplot wrote no image (disk full?)", path);
    /* A PNG ends with its IEND chunk (length 0, type, fixed CRC); an SVG
     * with its closing tag. A cut-short file has neither. */
    static const unsigned char PNG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const unsigned char IEND[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    int ok = 0;
    if (n >= 20 && !memcmp(s, PNG, 8)) ok = !memcmp(s + n - 12, IEND, 12);
    else if (n >= 12 && (!strncmp(s, "<?xml", 5) || !strncmp(s, "<svg", 4))) {
        size_t k = n;
        while (k && (s[k - 1] == '\n' || s[k - 1] == ' ' || s[k - 1] == '\r')) k--;
        ok = k >= 6 && !memcmp(s + k - 6, "</svg>", 6);
    }
    free(s);
    if (!ok) return ms_err("%s: gnuplot left an incomplete image (disk full or file size limit?)",
                           path);
    if (sync_path(path)) return ms_err("%s: cannot sync: %s (disk full?)", path, strerror(errno));
    return MS_OK;
}

int report_write_file(const char *path, const char *text, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return ms_err("%s: cannot write: %s (check the folder is writable)", path,
                      strerror(errno));
    /* The file-size limit must fail as a write error, not kill moesim. */
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    int e = 0;
    for (size_t off = 0; off < len && !e;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno != EINTR) e = errno;
        else if (w > 0) off += (size_t)w;
    }
    if (!e && fsync(fd)) e = errno;
    if (close(fd) && !e) e = errno;
    signal(SIGXFSZ, old);
    if (e) {
        unlink(path);
        return ms_err("%s: write failed: %s%s", path, strerror(e),
                      e == ENOSPC || e == EFBIG || e == EDQUOT
                          ? " (free some space or choose another folder; nothing was replaced)"
                          : "");
    }
    return MS_OK;
}

/* The finished files wait under temporary names until report_commit. */
static void stage_add(report_ctx_t *c, const char *tmp, const char *dst) {
    if (c->n_stage == c->cap_stage) {
        c->cap_stage = c->cap_stage ? 2 * c->cap_stage : 32;
        c->stage = ms_realloc(c->stage, (size_t)c->cap_stage * sizeof *c->stage);
    }
    c->stage[c->n_stage].tmp = ms_strdup(tmp);
    c->stage[c->n_stage].dst = ms_strdup(dst);
    c->n_stage++;
}

int report_stage_text(report_ctx_t *c, const char *name, const char *text) {
    char tmp[4096], dst[4096];
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.tmp", c->dir, name, (long)getpid());
    snprintf(dst, sizeof dst, "%s/%s", c->dir, name);
    if (report_write_file(tmp, text, strlen(text))) return MS_ERR;
    stage_add(c, tmp, dst);
    return MS_OK;
}

int report_commit(report_ctx_t *c) {
    /* Refuse before the first rename anything that would stop a later one
     * (a folder or a special file where a figure goes), so a report lands
     * whole or not at all. */
    for (int i = 0; i < c->n_stage; i++) {
        struct stat sb;
        if (!lstat(c->stage[i].dst, &sb) && !S_ISREG(sb.st_mode)) {
            ms_err("%s: exists and is not a regular file; nothing was replaced (move it away or "
                   "choose another -o DIR)", c->stage[i].dst);
            report_discard(c);
            return MS_ERR;
        }
    }
    int rc = MS_OK;
    for (int i = 0; i < c->n_stage; i++)
        if (!rc && rename(c->stage[i].tmp, c->stage[i].dst))
            rc = ms_err("%s: cannot rename the finished file into place: %s", c->stage[i].dst,
                        strerror(errno));
    report_discard(c);
    return rc;
}

void report_discard(report_ctx_t *c) {
    for (int i = 0; i < c->n_stage; i++) {
        unlink(c->stage[i].tmp); /* already renamed on success: a no-op */
        free(c->stage[i].tmp);
        free(c->stage[i].dst);
    }
    free(c->stage);
    c->stage = NULL;
    c->n_stage = c->cap_stage = 0;
}

int report_render(report_ctx_t *c, report_fig_t *f) {
    /* Names inside the output folder: gnuplot runs there (report_gnuplot). */
    char png[512], svg[512], gp[512], tpng[512], tsvg[512], tgp[512], log[512];
    long pid = (long)getpid();
    snprintf(png, sizeof png, "%s.png", f->stem);
    snprintf(svg, sizeof svg, "%s.svg", f->stem);
    snprintf(gp, sizeof gp, "%s.gp", f->stem);
    snprintf(tpng, sizeof tpng, ".%s.png.%ld.tmp", f->stem, pid);
    snprintf(tsvg, sizeof tsvg, ".%s.svg.%ld.tmp", f->stem, pid);
    snprintf(tgp, sizeof tgp, ".%s.gp.%ld.tmp", f->stem, pid);
    snprintf(log, sizeof log, ".%s.log.%ld.tmp", f->stem, pid);
    char fpng[4096], fsvg[4096], fgp[4096], ftpng[4096], ftsvg[4096], ftgp[4096], flog[4096];
    snprintf(fpng, sizeof fpng, "%s/%s", c->dir, png);
    snprintf(fsvg, sizeof fsvg, "%s/%s", c->dir, svg);
    snprintf(fgp, sizeof fgp, "%s/%s", c->dir, gp);
    snprintf(ftpng, sizeof ftpng, "%s/%s", c->dir, tpng);
    snprintf(ftsvg, sizeof ftsvg, "%s/%s", c->dir, tsvg);
    snprintf(ftgp, sizeof ftgp, "%s/%s", c->dir, tgp);
    snprintf(flog, sizeof flog, "%s/%s", c->dir, log);

    /* The script draws both formats in a loop over the same body, and
     * names its outputs only when not told, so a reader can re-run it.
     * Every string from the database reached f through report_quote,
     * report_field or quote_gp_comment (quote.h). */
    report_buf_t s = {0};
    char *title = quote_gp_comment(f->title), *stem = quote_gp_comment(f->stem);
    report_printf(&s, "# moesim report: %s\n# Redraw: gnuplot %s.gp (in this folder)\n", title,
                  stem);
    free(title);
    free(stem);
    report_printf(&s, "if (!exists(\"png\")) png = ");
    report_quote(&s, png);
    report_printf(&s, "\nif (!exists(\"svg\")) svg = ");
    report_quote(&s, svg);
    report_printf(&s, "\n");
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
    /* The script run here names the temporary outputs first, then is saved
     * without that line, so the kept .gp draws stem.png and stem.svg. */
    report_buf_t run = {0};
    report_printf(&run, "png = ");
    report_quote(&run, tpng);
    report_printf(&run, "; svg = ");
    report_quote(&run, tsvg);
    report_printf(&run, "\n%s", s.s);

    /* After one failure nothing will be replaced: drawing the rest would
     * only repeat the message (a full disk fails every figure). */
    if (c->res->failed) {
        report_buf_free(&s);
        report_buf_free(&run);
        report_fig_free(f);
        return MS_ERR;
    }
    int rc = MS_ERR;
    char said[600] = "";
    if (c->no_gnuplot) goto done;
    if (report_write_file(ftgp, run.s, run.n)) goto done;
    if (report_gnuplot(c->dir, tgp, log, said, sizeof said)) {
        if (strstr(ms_err_last(), "cannot start gnuplot")) c->no_gnuplot = 1;
        goto done;
    }
    if (report_check_image(ftpng) || report_check_image(ftsvg)) goto done;
    if (said[0]) ms_warn("report: gnuplot warned while drawing %s: %s", fpng, said);
    if (report_write_file(ftgp, s.s, s.n)) goto done;
    stage_add(c, ftpng, fpng);
    stage_add(c, ftsvg, fsvg);
    stage_add(c, ftgp, fgp);
    report_printf(&c->index, "### ");
    report_md(&c->index, f->title);
    report_printf(&c->index, "\n\n![");
    report_md(&c->index, f->title);
    report_printf(&c->index, "](%s.png)\n\n%s%s([SVG](%s.svg), [gnuplot script](%s.gp))\n\n",
                  f->stem, f->caption.s ? f->caption.s : "", f->caption.s ? " " : "", f->stem,
                  f->stem);
    c->res->drawn++;
    rc = MS_OK;
done:
    if (rc) {
        c->res->failed++;
        unlink(ftpng);
        unlink(ftsvg);
        unlink(ftgp);
    }
    unlink(flog);
    report_buf_free(&s);
    report_buf_free(&run);
    report_fig_free(f);
    return rc;
}
