/* The command line's conventions through the real binary: --version and its
 * git commit, machine-readable tables (--csv, --json) and the progress line.
 * Each case runs build/moesim (the binary beside this test binary) in a child. */
#define _XOPEN_SOURCE 700 /* P_tmpdir: the system's temporary folder, when TMPDIR is unset */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "table.h"
#include "util.h"

static char exe[700];

static void setup(void) {
    char self[600];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(k, 0);
    self[k] = 0;
    snprintf(exe, sizeof exe, "%s/moesim", dirname(self));
    cr_assert_eq(access(exe, X_OK), 0, "%s is missing (make builds it with the tests)", exe);
}

TestSuite(cli, .init = setup, .timeout = 300);

typedef struct {
    int status;  /* exit code, or 128 + signal */
    char *out;   /* stdout, NUL-terminated (caller frees) */
    char *err;   /* stderr */
} run_t;

static char *slurp_fd(int fd) {
    size_t n = 0, cap = 4096;
    char *b = ms_malloc(cap);
    ssize_t k;
    lseek(fd, 0, SEEK_SET);
    while ((k = read(fd, b + n, cap - n - 1)) > 0) {
        n += (size_t)k;
        if (cap - n < 2) b = ms_realloc(b, cap *= 2);
    }
    b[n] = 0;
    close(fd);
    return b;
}

/* Runs `file` (exe when NULL) with args (NULL-terminated, argv[0] first). */
static run_t run_prog(const char *file, char *const *args) {
    FILE *fo = tmpfile(), *fe = tmpfile(); /* unnamed: nothing left behind */
    cr_assert(fo && fe);
    int o = dup(fileno(fo)), e = dup(fileno(fe));
    fclose(fo);
    fclose(fe);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(o, 1);
        dup2(e, 2);
        execvp(file ? file : exe, args);
        _exit(127);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    run_t r = {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), slurp_fd(o), slurp_fd(e)};
    return r;
}

static void run_free(run_t *r) {
    free(r->out);
    free(r->err);
}

/* ---- version ---- */

Test(cli, version_names_the_build_commit) {
    char *a1[] = {"moesim", "--version", NULL}, *a2[] = {"moesim", "version", NULL};
    run_t r1 = run_prog(NULL, a1), r2 = run_prog(NULL, a2);
    cr_assert_eq(r1.status, 0, "%s", r1.err);
    cr_assert_eq(r2.status, 0, "%s", r2.err);
    cr_assert_str_eq(r1.out, r2.out);
    char ver[64], git[128];
    cr_assert_eq(sscanf(r1.out, "moesim %63s (%127[^)])\n", ver, git), 2, "got '%s'", r1.out);
    cr_assert_str_eq(ver, MOESIM_VERSION);
    cr_assert_null(strchr(r1.out, '/'), "no path of the build machine: '%s'", r1.out);
    /* the commit is the one git describes now (the suite runs on the tree
     * it was built from), or 'unknown' outside a git checkout */
    char *g[] = {"git", "describe", "--always", NULL};
    run_t rg = run_prog("git", g);
    if (rg.status == 0) {
        rg.out[strcspn(rg.out, "\n")] = 0;
        cr_assert_eq(strncmp(git, rg.out, strlen(rg.out)), 0, "built from '%s', tree is '%s'", git,
                     rg.out);
    } else {
        cr_assert_str_eq(git, "unknown");
    }
    char *a3[] = {"moesim", "--version", "extra", NULL};
    run_t r3 = run_prog(NULL, a3);
    cr_assert_eq(r3.status, MS_EXIT_USAGE);
    run_free(&r1);
    run_free(&r2);
    run_free(&rg);
    run_free(&r3);
}

/* ---- tables: --csv and --json ---- */

#include <jansson.h>

/* The fields of one CSV line (RFC 4180 quotes), each copied into f[]. */
static int csv_fields(const char *line, char f[][256], int max) {
    int n = 0;
    const char *p = line;
    for (;;) {
        char *o = n < max ? f[n] : NULL;
        size_t k = 0;
        if (*p == '"') {
            for (p++; *p && !(*p == '"' && p[1] != '"'); p++) {
                if (*p == '"') p++;
                if (o && k < 255) o[k++] = *p;
            }
            if (*p == '"') p++;
        } else {
            for (; *p && *p != ',' && *p != '\n'; p++)
                if (o && k < 255) o[k++] = *p;
        }
        if (o) o[k] = 0;
        n++;
        if (*p != ',') break;
        p++;
    }
    return n;
}

/* Checks the CSV text of one table: a header with `keys` (n of them, NULL:
 * any) and `rows` lines each of n fields; returns the number of rows. */
static int check_csv(const char *csv, const char *const *keys, int n) {
    char f[64][256];
    const char *line = csv;
    int header = csv_fields(line, f, 64);
    if (keys) {
        cr_assert_eq(header, n, "header '%.*s'", (int)strcspn(line, "\n"), line);
        for (int i = 0; i < n; i++) cr_assert_str_eq(f[i], keys[i]);
    } else {
        n = header;
    }
    int rows = 0;
    while ((line = strchr(line, '\n')) && *++line && *line != '\n' && *line != '#') {
        cr_assert_eq(csv_fields(line, f, 64), n, "row %d: '%.*s'", rows,
                     (int)strcspn(line, "\n"), line);
        rows++;
    }
    return rows;
}

static json_t *parse_json(const char *text) {
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    cr_assert_not_null(j, "not JSON (line %d: %s): %.200s", e.line, e.text, text);
    return j;
}

Test(cli, compare_tables_as_csv_and_json_agree) {
    /* the demo, made small: one step of 4 tokens a device, a 1-step warm-up */
    char *ac[] = {"moesim", "compare", "configs/demo.ini", "--db", "", "--set",
                  "experiment.steps=1", "--set", "placement.warmup_steps=1", "--set",
                  "workload.tokens_per_device=4", "--csv", NULL};
    /* a database in a fresh temporary folder: nothing else is touched */
    char tmpl[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/moesim-cli-XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
    cr_assert_not_null(mkdtemp(tmpl));
    char path[600];
    snprintf(path, sizeof path, "%s/c.db", tmpl);
    ac[4] = path;
    run_t rc = run_prog(NULL, ac);
    cr_assert_eq(rc.status, 0, "%s", rc.err);
    static const char *const keys[] = {"strategy", "prior", "step_ms", "tok_s_node", "par_mean",
                                       "par_max"};
    cr_assert_eq(check_csv(rc.out, keys, 6), 4, "%s", rc.out); /* the demo's four strategies */
    cr_assert(strstr(rc.err, "results: "), "the note goes to stderr: %s", rc.err);
    cr_assert_null(strstr(rc.err, "\033[K"), "no progress line off a terminal: %s", rc.err);
    char *aj[] = {"moesim", "compare", "configs/demo.ini", "--db", path, "--replace", "--set",
                  "experiment.steps=1", "--set", "placement.warmup_steps=1", "--set",
                  "workload.tokens_per_device=4", "--json", NULL};
    run_t rj = run_prog(NULL, aj);
    cr_assert_eq(rj.status, 0, "%s", rj.err);
    json_t *j = parse_json(rj.out), *rows = json_object_get(json_object_get(j, "tables"), "summary");
    cr_assert_str_eq(json_string_value(json_object_get(j, "command")), "compare");
    cr_assert_eq(json_array_size(rows), 4);
    /* the same run (same config and seed): the CSV's figures read back to
     * exactly the JSON's */
    char f[8][256];
    const char *line = strchr(rc.out, '\n') + 1;
    for (size_t i = 0; i < 4; i++, line = strchr(line, '\n') + 1) {
        json_t *r = json_array_get(rows, i);
        cr_assert_eq(csv_fields(line, f, 8), 6);
        cr_assert_str_eq(json_string_value(json_object_get(r, "strategy")), f[0]);
        for (int k = 2; k < 6; k++) {
            json_t *v = json_object_get(r, keys[k]);
            cr_assert(json_is_number(v), "%s", keys[k]);
            cr_assert_eq(json_number_value(v), strtod(f[k], NULL), "%s of %s", keys[k], f[0]);
        }
    }
    cr_assert(json_is_string(json_object_get(json_object_get(j, "notes"), "results")));
    json_decref(j);
    run_free(&rc);
    run_free(&rj);
    unlink(path);
    rmdir(tmpl);
}

/* Every other command's tables: CSV with a header and rows of its width,
 * JSON an object of tables with rows as objects. */
Test(cli, every_table_prints_as_csv_and_json) {
    const char *T = "traces/data/deepseek-v3-sglang/decode_in1000out1000.json";
    struct {
        const char *args[16];
        const char *table; /* the JSON table checked */
        int min_rows;
    } cases[] = {
        {{"list", "strategies"}, "strategies", 5},
        {{"list", "models"}, "models", 3},
        {{"list", "hardware"}, "hardware", 3},
        {{"config-keys"}, "keys", 100},
        {{"cost", "expert", "--hardware", "H200", "--model", "deepseek-v3", "--experts", "8",
          "--tokens", "64"}, "cost", 1},
        {{"trace", "info", T}, "layers", 58},
        {{"place", "--strategy", "eplb", "--counts", T}, "layers", 58},
        {{"sweep", "configs/sweep_redundancy.ini", "--dry-run", "--db", "no/such/dir/x.db"},
         "points", 2},
        {{"calib", "report", "-q", "-o", NULL}, "mape", 5},
    };
    char tmpl[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/moesim-cli-XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
    cr_assert_not_null(mkdtemp(tmpl));
    char out[600];
    snprintf(out, sizeof out, "%s/calib", tmpl);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        for (int form = 0; form < 2; form++) {
            char *argv[24] = {"moesim"};
            int n = 1;
            /* a NULL after -o is the scratch folder */
            for (int i = 0; cases[c].args[i] || (i && cases[c].args[i - 1] &&
                                                  !strcmp(cases[c].args[i - 1], "-o")); i++)
                argv[n++] = (char *)(cases[c].args[i] ? cases[c].args[i] : out);
            /* calib report's --csv names its input: its table CSV is --table-csv */
            argv[n++] = form ? "--json" : !strcmp(argv[1], "calib") ? "--table-csv" : "--csv";
            argv[n] = NULL;
            run_t r = run_prog(NULL, argv);
            cr_assert_eq(r.status, 0, "%s %s: %s", argv[1], argv[n - 1], r.err);
            if (form) {
                json_t *j = parse_json(r.out);
                json_t *rows = json_object_get(json_object_get(j, "tables"), cases[c].table);
                cr_assert(json_is_array(rows), "%s: no table %s", argv[1], cases[c].table);
                cr_assert_geq(json_array_size(rows), (size_t)cases[c].min_rows, "%s", argv[1]);
                cr_assert(json_is_object(json_array_get(rows, 0)));
                json_decref(j);
            } else {
                /* the table named (after its "# name" line when there are several) */
                char mark[64];
                snprintf(mark, sizeof mark, "# %s\n", cases[c].table);
                const char *at = strstr(r.out, mark);
                at = at ? at + strlen(mark) : r.out;
                cr_assert_geq(check_csv(at, NULL, 0), cases[c].min_rows, "%s: %s", argv[1], r.out);
            }
            run_free(&r);
        }
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    cr_assert_eq(system(cmd), 0);
}

/* The serving summary (a config with [serving]) through the same printer:
 * its own columns, latencies as numbers or null. */
Test(cli, serving_summary_as_csv_and_json) {
    char tmpl[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/moesim-cli-XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
    cr_assert_not_null(mkdtemp(tmpl));
    char db[600];
    snprintf(db, sizeof db, "%s/s.db", tmpl);
    static const char *const keys[] = {"strategy", "prior", "tpot_ms", "tpot_p99_ms",
                                       "ttft_p50_ms", "ttft_p99_ms", "out_tok_s_node",
                                       "in_tok_s_node", "par_mean", "migrated_gb", "gap_pct"};
    for (int form = 0; form < 2; form++) {
        char *a[] = {"moesim", "compare", "configs/serving.ini", "--db", db, "--replace",
                     "--strategy", "static", "--set", "serving.duration_s=1", "--set",
                     "placement.warmup_steps=1", form ? "--json" : "--csv", NULL};
        run_t r = run_prog(NULL, a);
        cr_assert_eq(r.status, 0, "%s", r.err);
        if (!form) {
            cr_assert_eq(check_csv(r.out, keys, 11), 1, "%s", r.out);
        } else {
            json_t *j = parse_json(r.out);
            json_t *row = json_array_get(json_object_get(json_object_get(j, "tables"), "summary"), 0);
            cr_assert(json_is_object(row));
            for (int k = 2; k < 11; k++)
                cr_assert(json_is_number(json_object_get(row, keys[k])) ||
                              json_is_null(json_object_get(row, keys[k])), "%s", keys[k]);
            cr_assert_gt(json_number_value(json_object_get(row, "out_tok_s_node")), 0);
            json_decref(j);
        }
        run_free(&r);
    }
    unlink(db);
    rmdir(tmpl);
}

/* JSON holds only UTF-8: a name that is not (a trace file's, say) is written
 * with its high bytes as '?', not dropped from its row. */
Test(cli, json_keeps_a_cell_that_is_not_utf8) {
    table_doc_t *d = table_doc_new("x\xff", TABLE_JSON);
    table_t *t = table_new(d, "t", "T");
    table_col(t, "name", "name", 8, 1);
    table_col(t, "v", "v", 8, 0);
    table_str(t, "bad\xff\xfe");
    table_int(t, 3);
    table_note(d, "n", "note \xc3(");
    FILE *f = tmpfile();
    cr_assert(f);
    cr_assert_eq(table_print(d, f), 0);
    table_doc_free(d);
    rewind(f);
    json_error_t e;
    json_t *j = json_loadf(f, 0, &e);
    fclose(f);
    cr_assert(j, "not JSON: %s", e.text);
    json_t *row = json_array_get(json_object_get(json_object_get(j, "tables"), "t"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(row, "name")), "bad??");
    cr_expect_eq(json_integer_value(json_object_get(row, "v")), 3);
    cr_expect_str_eq(json_string_value(json_object_get(j, "command")), "x?");
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "notes"), "n")), "note ?(");
    json_decref(j);
}
