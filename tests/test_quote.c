/* Tests for analysis/quote.c: each quoting function on hostile strings
 * (quotes, backquotes, newlines, datablock terminators, shell metacharacters,
 * invalid UTF-8), checked against the rules of its language, and gnuplot
 * itself reading the quoted strings back unchanged. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "quote.h"
#include "report.h"
#include "util.h"

/* Strings a colleague's database or a careless user could hold. */
static const char *const HOSTILE[] = {
    "system(\"touch PWNED\")",
    "`touch PWNED`",
    "a'b",
    "''",
    "a\"b\"",
    "line\nEOD\nsystem(\"touch PWNED\")",
    "x\n!touch PWNED",
    "x\r\n!touch PWNED",
    "; touch PWNED | cat",
    "$(touch PWNED) @x",
    "trailing\\",
    "# heading",
    "1. list",
    "- item",
    "| a | b |",
    "<script>alert(1)</script> [x](javascript:y) ![i](z) *b* _i_ ~s~ &amp; $m$",
    "bad \xff\xfe utf8 \xc3",
    "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
    "tab\tbell\a del\x7f c1\xc2\x85",
    "",
};
#define N_HOSTILE (sizeof HOSTILE / sizeof *HOSTILE)

/* No byte below 0x20 (no line break) and no DEL. */
static int one_line(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return 0;
    return 1;
}

Test(quote, gnuplot_string_is_single_quoted_literals_on_one_line) {
    for (size_t i = 0; i < N_HOSTILE; i++) {
        char *q = quote_gp(HOSTILE[i]);
        size_t n = strlen(q);
        cr_assert(n >= 2 && q[0] == '\'' && q[n - 1] == '\'', "%s", q);
        cr_assert(one_line(q), "line break in %s", q);
        /* Inside the outer quotes, a quote only ever closes a literal to
         * join the string "'" and open the next: '."'".' */
        for (size_t k = 1; k + 1 < n; k++)
            if (q[k] == '\'') {
                cr_assert(!strncmp(q + k, "'.\"'\".'", 7), "stray quote in %s", q);
                k += 6;
            }
        cr_assert_null(strchr(q, '`') ? strstr(q, "\"`") : NULL, "backquote outside ' in %s", q);
        free(q);
    }
    char *q = quote_gp("it's");
    cr_assert_str_eq(q, "'it'.\"'\".'s'");
    free(q);
    q = quote_gp("a\nb");
    cr_assert_str_eq(q, "'a b'");
    free(q);
    q = quote_gp("bad \xff!");
    cr_assert_str_eq(q, "'bad ?!'");
    free(q);
    q = quote_gp("\xc3\xa9t\xc3\xa9");
    cr_assert_str_eq(q, "'\xc3\xa9t\xc3\xa9'", "valid UTF-8 is kept");
    free(q);
    q = quote_clean("a\r\nb\x7f\xc2\x85" "c\xe0\x80\x80");
    cr_assert_str_eq(q, "a  b  c???", "controls to spaces, an overlong form to '?'");
    free(q);
}

Test(quote, datablock_field_has_no_quote_and_no_line_break) {
    for (size_t i = 0; i < N_HOSTILE; i++) {
        char *q = quote_gp_field(HOSTILE[i]);
        size_t n = strlen(q);
        cr_assert(n >= 2 && q[0] == '"' && q[n - 1] == '"', "%s", q);
        cr_assert(one_line(q), "line break in %s", q);
        cr_assert_null(memchr(q + 1, '"', n - 2), "inner quote in %s", q);
        free(q);
    }
    char *q = quote_gp_field("a \"b\"");
    cr_assert_str_eq(q, "\"a 'b'\"");
    free(q);
}

Test(quote, comment_never_continues_onto_the_next_line) {
    for (size_t i = 0; i < N_HOSTILE; i++) {
        char *q = quote_gp_comment(HOSTILE[i]);
        cr_assert(one_line(q), "line break in %s", q);
        size_t n = strlen(q);
        cr_assert(!n || q[n - 1] != '\\', "continuation in %s", q);
        free(q);
    }
    char *q = quote_gp_comment("C:\\dir\\");
    cr_assert_str_eq(q, "C:\\dir/");
    free(q);
}

Test(quote, markdown_escapes_every_markup_character) {
    for (size_t i = 0; i < N_HOSTILE; i++) {
        char *q = quote_md(HOSTILE[i]);
        cr_assert(one_line(q), "line break in %s", q);
        /* Every markup character is preceded by a backslash that is not
         * itself escaped. */
        for (size_t k = 0; q[k]; k++) {
            if (q[k] == '\\') {
                cr_assert(q[k + 1], "dangling backslash in %s", q);
                k++;
                continue;
            }
            cr_assert_null(strchr("`*_[]<>|#!&~$", q[k]), "bare '%c' in %s", q[k], q);
        }
        cr_assert(q[0] != '-' && q[0] != '+' && q[0] != '=', "list marker in %s", q);
        free(q);
    }
    char *q = quote_md("a|b");
    cr_assert_str_eq(q, "a\\|b");
    free(q);
    q = quote_md("12. x");
    cr_assert_str_eq(q, "12\\. x");
    free(q);
    q = quote_md("- x");
    cr_assert_str_eq(q, "\\- x");
    free(q);
    q = quote_md("eplb-global 1.5");
    cr_assert_str_eq(q, "eplb-global 1.5", "plain names stay readable");
    free(q);
}

Test(quote, csv_field_round_trips_by_rfc4180) {
    char *q = quote_csv("plain");
    cr_assert_str_eq(q, "plain");
    free(q);
    q = quote_csv("a,b \"c\"");
    cr_assert_str_eq(q, "\"a,b \"\"c\"\"\"");
    free(q);
    q = quote_csv("x\ny");
    cr_assert_str_eq(q, "x y");
    free(q);
    q = quote_csv(" lead");
    cr_assert_str_eq(q, "\" lead\"");
    free(q);
}

/* gnuplot reads each quoted literal back as the cleaned string, prints it
 * through a datablock field and a comment, and runs nothing. */
Test(quote, gnuplot_reads_every_quoted_string_back_and_runs_nothing) {
    char dir[] = "/tmp/moesim-quote-XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/t.gp", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (size_t i = 0; i < N_HOSTILE; i++) {
        char *lit = quote_gp(HOSTILE[i]), *fld = quote_gp_field(HOSTILE[i]),
             *com = quote_gp_comment(HOSTILE[i]);
        fprintf(f, "# %s\nprint %s\n$d%zu << EOD\n%zu %s 1\nEOD\nprint $d%zu[1]\n", com, lit, i, i,
                fld, i);
        free(lit), free(fld), free(com);
    }
    fprintf(f, "print 'END'\n");
    cr_assert_eq(fclose(f), 0);
    char said[8192];
    ms_err_quiet(1);
    cr_assert_eq(report_gnuplot(dir, "t.gp", "t.log", said, sizeof said), MS_OK, "%s",
                 ms_err_last());
    char *log;
    snprintf(path, sizeof path, "%s/t.log", dir);
    cr_assert_eq(ms_read_file(path, &log, NULL), MS_OK);
    cr_assert_not_null(strstr(log, "END"), "gnuplot stopped early: %s", log);
    /* Each string printed as its cleaned text, in order. */
    const char *p = log;
    for (size_t i = 0; i < N_HOSTILE; i++) {
        char *want = quote_clean(HOSTILE[i]);
        const char *hit = strstr(p, want);
        cr_assert_not_null(hit, "string %zu not read back as '%s': %s", i, want, log);
        p = hit + strlen(want);
        free(want);
    }
    free(log);
    snprintf(path, sizeof path, "%s/PWNED", dir);
    struct stat sb;
    cr_assert_neq(stat(path, &sb), 0, "a quoted string ran a command");
    cr_assert_neq(stat("PWNED", &sb), 0, "a quoted string ran a command");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* docs/reliability.md promises moesim starts no shell: no popen, system or
 * sh -c anywhere in the sources (gnuplot and external strategies are started
 * with an argv). A new call would need its own quoting function and test. */
Test(quote, no_source_file_starts_a_shell) {
    static const char *const ROOMS[] = {"sim", "models", "traces", "analysis"};
    int files = 0;
    for (size_t r = 0; r < sizeof ROOMS / sizeof *ROOMS; r++) {
        DIR *d = opendir(ROOMS[r]);
        cr_assert_not_null(d, "run the tests from the repository root");
        struct dirent *en;
        while ((en = readdir(d))) {
            size_t n = strlen(en->d_name);
            if (n < 3 || (strcmp(en->d_name + n - 2, ".c") && strcmp(en->d_name + n - 2, ".h")))
                continue;
            char path[512], *src;
            snprintf(path, sizeof path, "%s/%s", ROOMS[r], en->d_name);
            cr_assert_eq(ms_read_file(path, &src, NULL), MS_OK);
            files++;
            cr_assert_null(strstr(src, "popen("), "%s calls popen", path);
            cr_assert_null(strstr(src, "sh -c"), "%s runs sh -c", path);
            for (const char *p = src; (p = strstr(p, "system(")); p++) {
                char before = p == src ? ' ' : p[-1];
                int ident = (before >= 'a' && before <= 'z') || (before >= 'A' && before <= 'Z') ||
                            (before >= '0' && before <= '9') || before == '_';
                cr_assert(ident, "%s calls system()", path);
            }
            free(src);
        }
        closedir(d);
    }
    cr_assert(files > 40, "only %d source files found", files);
}
