/* Strings are data: hostile names (system(), backquotes, quotes, newlines,
 * datablock terminators, `!` shell lines, ; and |, invalid UTF-8) through
 * every path into the real `moesim report` and `moesim calib report`: the
 * experiment, strategy and trace names of a results database built by hand
 * as a colleague could send it, a real run, a calibration CSV's impl column
 * and the -o folder. Nothing may run (no PWNED file appears, neither while
 * drawing nor when the saved .gp scripts are re-run), and every figure must
 * still draw, showing the name as text. Also: a report or calib report that
 * hits a file size limit fails and leaves the earlier figures byte for byte. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "calib.h"
#include "quote.h"
#include "store.h"
#include "util.h"

static char tmp[512];

static void setup(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/moesim-inject-XXXXXX", t && *t ? t : "/tmp");
    cr_assert_not_null(mkdtemp(tmp));
    ms_err_quiet(1);
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *en;
    while ((en = readdir(d))) {
        if (!strcmp(en->d_name, ".") || !strcmp(en->d_name, "..")) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, en->d_name);
        struct stat sb;
        if (!lstat(p, &sb) && S_ISDIR(sb.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void teardown(void) { rm_tree(tmp); }

TestSuite(inject, .init = setup, .fini = teardown);

/* Every payload creates a file whose name starts with PWNED if it runs. */
#define EXP1 "exp'\n!touch PWNED_e1\nEOD\nsystem(\"touch PWNED_e2\")\n# x \\"
#define EXP2 "`touch PWNED_e3` $(touch PWNED_e4); touch PWNED_e5 | sh @x"
static const char *const STRATS[] = {
    "static",
    "eplb\nEOD\nsystem(\"touch PWNED_s1\")",
    "`touch PWNED_s2`",
    "omni'\"; touch PWNED_s3 | sh",
    "bias\\",
    "x\xff\xfe\n!touch PWNED_s4",
    "''''",
    "EOD",
};
#define N_STRATS (int)(sizeof STRATS / sizeof *STRATS)
#define TRACE "traces/`touch PWNED_t1`\n!touch PWNED_t2\n'); system('touch PWNED_t3'); #\\"
/* The -o folder (a newline is legal in a path). */
#define OUTDIR "o'\"`touch PWNED_o1`;|$(touch PWNED_o2) EOD\n!touch PWNED_o3"

/* Whether any file named PWNED* exists under dir (recursively). */
static int pwned(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *en;
    int hit = 0;
    while (!hit && (en = readdir(d))) {
        if (!strcmp(en->d_name, ".") || !strcmp(en->d_name, "..")) continue;
        if (!strncmp(en->d_name, "PWNED", 5)) hit = 1;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, en->d_name);
        struct stat sb;
        if (!hit && !lstat(p, &sb) && S_ISDIR(sb.st_mode)) hit = pwned(p);
    }
    closedir(d);
    return hit;
}

static void assert_nothing_ran(void) {
    cr_assert(!pwned(tmp), "a payload ran: a PWNED file exists under %s", tmp);
    cr_assert(!pwned("."), "a payload ran: a PWNED file exists in the working folder");
}

/* The moesim binary beside this test binary (build/ or build-san/). */
static void moesim_path(char *out, size_t n) {
    char self[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert(k > 0);
    self[k] = '\0';
    snprintf(out, n, "%s/moesim", dirname(self));
}

/* Runs argv in cwd with stdout and stderr into tmp/out.log; fsize > 0 sets
 * RLIMIT_FSIZE (with SIGXFSZ ignored, so writes fail with EFBIG as on a
 * full disk). Returns the exit status (-signal when killed). */
static int run(char *const argv[], const char *cwd, long fsize) {
    char log[1024];
    snprintf(log, sizeof log, "%s/out.log", tmp);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0 || chdir(cwd)) _exit(126);
        if (fsize > 0) {
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {.rlim_cur = (rlim_t)fsize, .rlim_max = (rlim_t)fsize};
            if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(126);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) cr_assert_eq(errno, EINTR);
    /* Under make SAN=1 the child is sanitized too: its reports fail here. */
    char *s = NULL;
    if (!ms_read_file(log, &s, NULL)) {
        cr_assert(!strstr(s, "Sanitizer") && !strstr(s, "runtime error:"), "%s", s);
        free(s);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static char *slurp(const char *path, size_t *n) {
    char *s = NULL;
    if (ms_read_file(path, &s, n)) return NULL;
    return s;
}

static char *out_log(void) {
    char p[1024];
    snprintf(p, sizeof p, "%s/out.log", tmp);
    char *s = slurp(p, NULL);
    return s ? s : ms_strdup("");
}

/* s with & < > as gnuplot's SVG terminal writes them. */
static void xml_text(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; *s && k + 6 < n; s++) {
        const char *r = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
        if (r) k += (size_t)snprintf(out + k, n - k, "%s", r);
        else out[k++] = *s;
    }
    out[k] = '\0';
}

/* A whole PNG (signature, IEND) or SVG (XML prolog or <svg, closing tag). */
static void assert_image(const char *path) {
    size_t n;
    char *s = slurp(path, &n);
    cr_assert_not_null(s, "%s missing", path);
    static const unsigned char PNG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const unsigned char IEND[8] = {0, 0, 0, 0, 'I', 'E', 'N', 'D'};
    if (strstr(path, ".png")) {
        cr_assert(n > 1000 && !memcmp(s, PNG, 8) && !memcmp(s + n - 12, IEND, 8),
                  "%s is not a whole PNG", path);
    } else {
        cr_assert(!strncmp(s, "<?xml", 5) || !strncmp(s, "<svg", 4), "%s: not SVG", path);
        cr_assert_not_null(strstr(s, "</svg>"), "%s is cut short", path);
    }
    free(s);
}

/* A run with enough data for every figure family. */
static void add_run(store_t *st, const char *name, const char *strat, const char *trace,
                    int redundant) {
    store_run_t r = {.name = name, .strategy = strat, .strategy_version = 1, .trace = trace,
                     .model = "deepseek-v3", .hardware = "H800", .nodes = 2, .devices = 4,
                     .seed = 1, .config = "[experiment]\n", .config_hash = "0"};
    int64_t id;
    cr_assert_eq(store_run_begin(st, &r, &id), MS_OK, "%s", ms_err_last());
    double skew = 1.2 + 0.1 * (strat[0] % 7) + 0.01 * redundant;
    for (int k = 0; k < 6; k++) {
        int64_t dur = 50000000 + 1000000 * (int64_t)(10 * skew);
        cr_assert_eq(store_step(st, id, k, k * dur, dur, 512), MS_OK);
        for (int l = 0; l < 4; l++)
            cr_assert_eq(store_layer_step(st, id, k, l, dur / 4, 128 * skew, 128), MS_OK);
    }
    for (int l = 0; l < 4; l++) {
        for (int d = 0; d < 4; d++)
            cr_assert_eq(store_device_load(st, id, l, d, d ? 700 : 700 * skew), MS_OK);
        cr_assert_eq(store_layer_bound(st, id, l, 700, 720, 700 * skew), MS_OK);
        for (int e = 0; e < 8; e++) {
            cr_assert_eq(store_replicas(st, id, l, e, e < 2 ? 2 : 1), MS_OK);
            cr_assert_eq(store_trace_count(st, id, l, e, 1000.0 / (e + 1)), MS_OK);
        }
    }
    cr_assert_eq(store_replan(st, id, 120000000, 2, 3, 4e8), MS_OK);
    store_migration_t mg = {.time_ns = 120000000, .done_ns = 160000000, .layer = 1,
                            .expert = 1, .bytes = 1e8, .src_device = 0, .dst_device = 1};
    cr_assert_eq(store_migration(st, id, &mg), MS_OK);
    for (int q = 0; q < 20; q++) {
        int64_t arr = (int64_t)q * 20000000;
        store_request_t rq = {.request = q, .arrival_ns = arr,
                              .first_token_ns = arr + 100000000 + q * 1000000,
                              .done_ns = arr + 100000000 + q * 1000000 + 40000000LL * (q % 5),
                              .prompt_tokens = 100, .output_tokens = 1 + q % 5};
        cr_assert_eq(store_request(st, id, &rq), MS_OK);
    }
    cr_assert_eq(store_metric(st, id, "redundant", redundant, "slots"), MS_OK);
    cr_assert_eq(store_metric(st, id, "par_mean", skew, ""), MS_OK);
    cr_assert_eq(store_run_commit(st), MS_OK);
}

/* tmp/hostile.db: experiment EXP1 with every hostile strategy, EXP2 with
 * a few at several budgets (for the budget figure), all on TRACE. */
static void build_hostile_db(char *db, size_t n) {
    snprintf(db, n, "%s/hostile.db", tmp);
    store_t *st;
    cr_assert_eq(store_open(db, &st), MS_OK, "%s", ms_err_last());
    for (int r = 0; r <= 8; r += 4)
        for (int i = 0; i < 3; i++) add_run(st, EXP2, STRATS[i + 1], TRACE, r);
    for (int i = 0; i < N_STRATS; i++) add_run(st, EXP1, STRATS[i], TRACE, 4);
    store_close(st);
}

/* Re-runs every saved .gp in dir with gnuplot (as a reader would). */
static void rerun_scripts(const char *dir, int min) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *en;
    int n = 0;
    while ((en = readdir(d))) {
        size_t k = strlen(en->d_name);
        if (k < 4 || strcmp(en->d_name + k - 3, ".gp")) continue;
        char gp[PATH_MAX];
        snprintf(gp, sizeof gp, "%s", en->d_name);
        char *argv[] = {"gnuplot", gp, NULL};
        int rc = run(argv, dir, 0);
        char *log = out_log();
        cr_assert_eq(rc, 0, "gnuplot %s failed on re-run: %s", gp, log);
        free(log);
        n++;
    }
    closedir(d);
    cr_assert(n >= min, "only %d scripts", n);
}

Test(inject, hostile_database_names_draw_as_text_and_run_nothing, .timeout = 120) {
    char db[1024], out[1024], exe[PATH_MAX];
    build_hostile_db(db, sizeof db);
    snprintf(out, sizeof out, "%s/out", tmp); /* hostile folders: the tests below */
    moesim_path(exe, sizeof exe);
    char *argv[] = {exe, "report", db, "-o", out, NULL};
    int rc = run(argv, tmp, 0);
    char *log = out_log();
    cr_assert_eq(rc, 0, "report failed: %s", log);
    free(log);
    assert_nothing_ran();

    /* Every figure family drew whole images. */
    static const char *const STEMS[] = {
        "layer_max-",
        "device_heat-", "replica_heat-", "par_time-", "bars-", "cdf-", "trace_heat-",
        "par_budget"};
    DIR *d = opendir(out);
    cr_assert_not_null(d);
    int found[8] = {0}, images = 0;
    struct dirent *en;
    char first_layer_svg[PATH_MAX] = "", first_bars_svg[PATH_MAX] = "";
    while ((en = readdir(d))) {
        const char *nm = en->d_name;
        size_t k = strlen(nm);
        cr_assert(nm[0] != '.' || !strcmp(nm, ".") || !strcmp(nm, ".."), "left behind: %s", nm);
        if (k < 5 || (strcmp(nm + k - 4, ".png") && strcmp(nm + k - 4, ".svg"))) continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", out, nm);
        assert_image(p);
        images++;
        for (int i = 0; i < 8; i++) found[i] |= !strncmp(nm, STEMS[i], strlen(STEMS[i]));
        if (!strncmp(nm, "layer_max-exp", 13) && !strcmp(nm + k - 4, ".svg"))
            snprintf(first_layer_svg, sizeof first_layer_svg, "%s", p);
        if (!strncmp(nm, "bars-exp", 8) && !strcmp(nm + k - 4, ".svg"))
            snprintf(first_bars_svg, sizeof first_bars_svg, "%s", p);
    }
    closedir(d);
    for (int i = 0; i < 8; i++) cr_assert(found[i], "no %s figure", STEMS[i]);
    cr_assert(images >= 2 * 8);

    /* The names show as text: the experiment in the title, each strategy
     * in the legend (clean: one line, quotes as they were). */
    cr_assert(first_layer_svg[0]);
    char *svg = slurp(first_layer_svg, NULL);
    char want[2048], esc[2048];
    char *clean = quote_clean("Per-layer maximum device load: experiment " EXP1);
    xml_text(clean, esc, sizeof esc);
    free(clean);
    cr_assert_not_null(strstr(svg, esc), "title '%s' not in %s", esc, first_layer_svg);
    for (int i = 0; i < N_STRATS; i++) {
        clean = quote_clean(STRATS[i]);
        xml_text(clean, esc, sizeof esc);
        free(clean);
        cr_assert_not_null(strstr(svg, esc), "legend '%s' not in the SVG", esc);
    }
    free(svg);
    /* The bar labels came through a datablock field: " became '. */
    cr_assert(first_bars_svg[0]);
    svg = slurp(first_bars_svg, NULL);
    clean = quote_gp_field(STRATS[3]);
    clean[strlen(clean) - 1] = '\0';
    xml_text(clean + 1, esc, sizeof esc);
    free(clean);
    cr_assert_not_null(strstr(svg, esc), "bar label '%s' not in the bars SVG", esc);
    free(svg);

    /* The index shows every name escaped, and no payload starts a line. */
    snprintf(want, sizeof want, "%s/index.md", out);
    char *md = slurp(want, NULL);
    cr_assert_not_null(md);
    clean = quote_md(EXP1);
    cr_assert_not_null(strstr(md, clean), "index lacks the escaped experiment name");
    free(clean);
    for (int i = 0; i < N_STRATS; i++) {
        clean = quote_md(STRATS[i]);
        cr_assert_not_null(strstr(md, clean), "index lacks '%s'", clean);
        free(clean);
    }
    for (const char *p = md; p; p = strchr(p, '\n')) {
        if (*p == '\n') p++;
        cr_assert(strncmp(p, "!touch", 6) && strncmp(p, "EOD", 3) && strncmp(p, "system", 6),
                  "a payload starts a line of index.md: %.40s", p);
    }
    free(md);

    /* The saved scripts redraw, and still run nothing. */
    rerun_scripts(out, 8);
    assert_nothing_ran();
}

/* A real run: the experiment name (from --set) and the trace file's name
 * reach the database through moesim itself, then the report. */
Test(inject, real_run_names_reach_the_report_as_data, .timeout = 120) {
    char cwd[1024], trace[PATH_MAX], cfg[1024], db[1024], out[1024],
        exe[PATH_MAX], src[PATH_MAX];
    cr_assert(getcwd(cwd, sizeof cwd));
    snprintf(src, sizeof src, "%s/traces/data/deepseek-v3-sglang/decode_in1800out100.json", cwd);
    snprintf(trace, sizeof trace, "%s/tr'a\"ce`touch PWNED_r1`$(touch PWNED_r2)|EOD.json", tmp);
    char *data;
    size_t n;
    cr_assert_eq(ms_read_file(src, &data, &n), MS_OK);
    FILE *f = fopen(trace, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
    free(data);
    snprintf(cfg, sizeof cfg, "%s/e.ini", tmp);
    f = fopen(cfg, "w");
    cr_assert(f);
    fprintf(f, "[experiment]\nname = run\nseed = 3\nsteps = 2\n[cluster]\nhardware = H800\n"
               "nodes = 2\ndevices_per_node = 8\n[model]\npreset = deepseek-v3\n[workload]\n"
               "trace = %s\ntokens_per_device = 8\n[placement]\nstrategies = static, eplb\n",
            trace);
    cr_assert_eq(fclose(f), 0);
    snprintf(db, sizeof db, "%s/r.db", tmp);
    snprintf(out, sizeof out, "%s/%s", tmp, OUTDIR);
    moesim_path(exe, sizeof exe);
    char *cmp[] = {exe, "compare", cfg, "--db", db, "--set",
                   "experiment.name=x'\"`touch PWNED_r4`$(touch PWNED_r5)|EOD",
                   NULL};
    int rc = run(cmp, tmp, 0);
    char *log = out_log();
    cr_assert_eq(rc, 0, "compare failed: %s", log);
    free(log);
    char *rep[] = {exe, "report", db, "-o", out, NULL};
    rc = run(rep, tmp, 0);
    log = out_log();
    cr_assert_eq(rc, 0, "report failed: %s", log);
    free(log);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/index.md", out);
    char *md = slurp(p, NULL);
    cr_assert_not_null(md);
    char *q = quote_md("x'\"`touch PWNED_r4`$(touch PWNED_r5)|EOD");
    cr_assert_not_null(strstr(md, q), "index lacks the escaped experiment name: %s", md);
    free(q);
    free(md);
    assert_nothing_ran();
    rerun_scripts(out, 3);
    assert_nothing_ran();
}

/* A calibration CSV whose impl column is a payload, into a hostile -o. */
static void write_calib_csv(const char *path, const char *impl) {
    char *data;
    cr_assert_eq(ms_read_file("models/calib/h200_experts.csv", &data, NULL), MS_OK);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    /* Keep the grouped rows (one implementation), renamed. */
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || !strncmp(line, "model,", 6)) {
            fprintf(f, "%s\n", line);
            continue;
        }
        char *c = strstr(line, ",grouped,");
        if (!c) continue;
        *c = '\0';
        fprintf(f, "%s,%s,%s\n", line, impl, c + strlen(",grouped,"));
    }
    free(data);
    cr_assert_eq(fclose(f), 0);
}

Test(inject, calib_report_impl_column_and_output_folder_are_data, .timeout = 120) {
    static const char *const IMPL[] = {
        "g'.system('touch PWNED_c1').'",
        "`touch PWNED_c2`",
        "g\" $(touch PWNED_c3) | sh",
        "''''; touch PWNED_c4 \\",
    };
    char exe[PATH_MAX], csv[1024], out[1024];
    moesim_path(exe, sizeof exe);
    for (size_t i = 0; i < sizeof IMPL / sizeof *IMPL; i++) {
        cr_assert(strlen(IMPL[i]) < CALIB_NAME_MAX);
        snprintf(csv, sizeof csv, "%s/c%zu.csv", tmp, i);
        write_calib_csv(csv, IMPL[i]);
        snprintf(out, sizeof out, "%s/%s%zu", tmp, OUTDIR, i);
        char *argv[] = {exe, "calib", "report", "-q", "--csv", csv, "-o", out, NULL};
        int rc = run(argv, tmp, 0);
        char *log = out_log();
        cr_assert_eq(rc, 0, "calib report failed for impl %s: %s", IMPL[i], log);
        free(log);
        assert_nothing_ran();
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/calib_gemm.png", out);
        assert_image(p);
        snprintf(p, sizeof p, "%s/index.md", out);
        char *md = slurp(p, NULL);
        cr_assert_not_null(md);
        char *q = quote_md(IMPL[i]);
        cr_assert_not_null(strstr(md, q), "index lacks '%s': %s", q, md);
        free(q);
        free(md);
        snprintf(p, sizeof p, "%s/points.csv", out);
        char *pts = slurp(p, NULL);
        cr_assert_not_null(pts);
        /* The label field (model/dtype/impl/E) is one CSV field. */
        char label[128], field[160];
        snprintf(label, sizeof label, "deepseek-v3/bf16/%s/E1", IMPL[i]);
        q = quote_csv(label);
        snprintf(field, sizeof field, "gemm,%s,", q);
        free(q);
        cr_assert_not_null(strstr(pts, field), "points.csv lacks %s", field);
        free(pts);
    }
}

/* Files of dir (names and bytes), to compare before and after. */
typedef struct snap {
    int n;
    char name[64][256];
    char *data[64];
    size_t len[64];
} snap_t;

static void take(const char *dir, snap_t *s) {
    memset(s, 0, sizeof *s);
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *en;
    while ((en = readdir(d))) {
        if (en->d_name[0] == '.') continue;
        cr_assert(s->n < 64);
        snprintf(s->name[s->n], sizeof s->name[0], "%s", en->d_name);
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, en->d_name);
        s->data[s->n] = slurp(p, &s->len[s->n]);
        cr_assert_not_null(s->data[s->n]);
        s->n++;
    }
    closedir(d);
}

static void assert_same(const char *dir, snap_t *before) {
    snap_t after;
    take(dir, &after);
    cr_assert_eq(after.n, before->n, "files in %s: %d before, %d after", dir, before->n, after.n);
    for (int i = 0; i < before->n; i++) {
        int j = 0;
        while (j < after.n && strcmp(after.name[j], before->name[i])) j++;
        cr_assert(j < after.n, "%s disappeared", before->name[i]);
        cr_assert(after.len[j] == before->len[i] &&
                      !memcmp(after.data[j], before->data[i], before->len[i]),
                  "%s changed", before->name[i]);
    }
    /* No temporary left behind either. */
    DIR *d = opendir(dir);
    struct dirent *en;
    while ((en = readdir(d)))
        cr_assert(en->d_name[0] != '.' || !strcmp(en->d_name, ".") || !strcmp(en->d_name, ".."),
                  "left behind: %s", en->d_name);
    closedir(d);
    for (int i = 0; i < after.n; i++) free(after.data[i]);
}

static void snap_free(snap_t *s) {
    for (int i = 0; i < s->n; i++) free(s->data[i]);
}

Test(inject, report_at_a_file_size_limit_fails_and_keeps_the_earlier_figures, .timeout = 120) {
    char db[1024], out[1024], exe[PATH_MAX];
    snprintf(db, sizeof db, "%s/plain.db", tmp);
    store_t *st;
    cr_assert_eq(store_open(db, &st), MS_OK);
    add_run(st, "a", "static", "t.json", 4);
    add_run(st, "a", "eplb", "t.json", 4);
    store_close(st);
    snprintf(out, sizeof out, "%s/rep", tmp);
    moesim_path(exe, sizeof exe);
    char *argv[] = {exe, "report", db, "-o", out, NULL};
    cr_assert_eq(run(argv, tmp, 0), 0, "first report failed");
    snap_t before;
    take(out, &before);
    cr_assert(before.n >= 10);
    /* A second experiment makes every figure differ from the first. */
    cr_assert_eq(store_open(db, &st), MS_OK);
    add_run(st, "b", "omni", "t.json", 8);
    store_close(st);
    /* Limits that cut a script (the .gp is written first) or an image. */
    static const long LIMITS[] = {1000, 9000, 40000};
    for (size_t i = 0; i < sizeof LIMITS / sizeof *LIMITS; i++) {
        int rc = run(argv, tmp, LIMITS[i]);
        char *log = out_log();
        cr_assert_neq(rc, 0, "report at a %ld-byte limit succeeded: %s", LIMITS[i], log);
        cr_assert(strstr(log, "File too large") || strstr(log, "incomplete image") ||
                      strstr(log, "file size limit"),
                  "no clear message at %ld bytes: %s", LIMITS[i], log);
        cr_assert_not_null(strstr(log, "nothing"), "does not say nothing was replaced: %s", log);
        free(log);
        assert_same(out, &before);
    }
    snap_free(&before);
}

Test(inject, calib_report_at_a_file_size_limit_fails_and_keeps_the_earlier_files,
     .timeout = 120) {
    char exe[PATH_MAX], out[1024], cwd[1024];
    moesim_path(exe, sizeof exe);
    cr_assert(getcwd(cwd, sizeof cwd));
    snprintf(out, sizeof out, "%s/cal", tmp);
    char csv[2048];
    snprintf(csv, sizeof csv, "%s/models/calib/h200_experts_repeat.csv", cwd);
    char *first[] = {exe, "calib", "report", "-q", "--csv", csv, "-o", out, NULL};
    cr_assert_eq(run(first, tmp, 0), 0, "first calib report failed");
    snap_t before;
    take(out, &before);
    cr_assert_eq(before.n, 3);
    char *second[] = {exe, "calib", "report", "-q", "-o", out, NULL};
    static const long LIMITS[] = {2000, 20000};
    for (size_t i = 0; i < sizeof LIMITS / sizeof *LIMITS; i++) {
        int rc = run(second, tmp, LIMITS[i]);
        char *log = out_log();
        cr_assert_neq(rc, 0, "calib report at a %ld-byte limit succeeded: %s", LIMITS[i], log);
        cr_assert(strstr(log, "File too large") || strstr(log, "incomplete image"),
                  "no clear message at %ld bytes: %s", LIMITS[i], log);
        cr_assert_not_null(strstr(log, "nothing in"), "%s", log);
        free(log);
        assert_same(out, &before);
    }
    snap_free(&before);
}

/* gnuplot's exit status and its output are both checked: a gnuplot that
 * fails, or one that says nothing and draws nothing, replaces nothing. */
Test(inject, failing_gnuplot_replaces_nothing, .timeout = 120) {
    char db[1024], out[1024], exe[PATH_MAX], bin[1024], fake[1100];
    snprintf(db, sizeof db, "%s/plain.db", tmp);
    store_t *st;
    cr_assert_eq(store_open(db, &st), MS_OK);
    add_run(st, "a", "static", "t.json", 4);
    store_close(st);
    snprintf(out, sizeof out, "%s/rep", tmp);
    moesim_path(exe, sizeof exe);
    char *argv[] = {exe, "report", db, "-o", out, "--only", "layer_max", NULL};
    cr_assert_eq(run(argv, tmp, 0), 0, "first report failed");
    snap_t before;
    take(out, &before);
    cr_assert_eq(before.n, 4);
    snprintf(bin, sizeof bin, "%s/bin", tmp);
    cr_assert_eq(mkdir(bin, 0755), 0);
    snprintf(fake, sizeof fake, "%s/gnuplot", bin);
    char path[8192];
    snprintf(path, sizeof path, "%s:%s", bin, getenv("PATH") ? getenv("PATH") : "/usr/bin");
    cr_assert_eq(setenv("PATH", path, 1), 0);
    static const char *const FAKES[][2] = {
        {"#!/bin/sh\necho 'fake gnuplot: broken' >&2\nexit 3\n", "gnuplot failed (exit 3)"},
        {"#!/bin/sh\nexit 0\n", "gnuplot wrote no image"},
    };
    for (size_t i = 0; i < sizeof FAKES / sizeof *FAKES; i++) {
        FILE *f = fopen(fake, "w");
        cr_assert(f);
        fputs(FAKES[i][0], f);
        cr_assert_eq(fclose(f), 0);
        cr_assert_eq(chmod(fake, 0755), 0);
        int rc = run(argv, tmp, 0);
        char *log = out_log();
        cr_assert_eq(rc, 1, "report with a broken gnuplot exited %d: %s", rc, log);
        cr_assert_not_null(strstr(log, FAKES[i][1]), "%s", log);
        cr_assert_not_null(strstr(log, "nothing in"), "%s", log);
        cr_assert_null(strstr(log, "figure in"), "a count of figures after a failure: %s", log);
        free(log);
        assert_same(out, &before);
    }
    snap_free(&before);
}
