/* Reliability suite: a table of bad inputs run through the real moesim
 * binary (each must exit 1 with a message naming where and the fix, and
 * change no file), SIGKILL at named points of compare --replace, sweep and
 * report (the database holds exactly the old or the new runs), and a full
 * disk. docs/reliability.md lists what each test holds moesim to. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>

#include "util.h"

static char base[512]; /* mkdtemp's folder */
static char dir[540];  /* scratch folder base/w: every file a case may touch */
static char root[512]; /* the repository */
static char exe[700];  /* the moesim binary beside this test binary */

static void setup(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(base, sizeof base, "%s/moesim-rel-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(base));
    snprintf(dir, sizeof dir, "%s/w", base);
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_not_null(getcwd(root, sizeof root));
    char self[600];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(k, 0);
    self[k] = 0;
    snprintf(exe, sizeof exe, "%s/moesim", dirname(self));
    /* MOESIM_BIN runs the suite against another build (an older moesim, to
     * see which cases it fails). */
    const char *other = getenv("MOESIM_BIN");
    if (other && *other) snprintf(exe, sizeof exe, "%s", other);
    cr_assert_eq(access(exe, X_OK), 0, "%s is missing (make builds it with the tests)", exe);
    ms_err_quiet(1);
}

static void teardown(void) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", base, base);
    /* A killed `moesim report` leaves its gnuplot child writing into the
     * folder for a moment, and rm then fails on a directory that filled up
     * again; a Criterion warning fails the whole suite, so retry first. */
    for (int i = 0; i < 50; i++) {
        if (!system(cmd)) return;
        nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
    }
    cr_log_warn("could not remove %s", dir);
}

TestSuite(reliability, .init = setup, .fini = teardown, .timeout = 600);

/* dir/name holding the given bytes. */
static const char *put_n(const char *name, const char *data, size_t n) {
    static char paths[8][700];
    static int k;
    char *p = paths[k++ % 8];
    snprintf(p, 700, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "cannot write %s", p);
    fwrite(data, 1, n, f);
    fclose(f);
    return p;
}

static const char *put(const char *name, const char *fmt, ...) {
    char buf[16384];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && n < (int)sizeof buf);
    return put_n(name, buf, (size_t)n);
}

/* A tiny experiment: DeepSeek-V3 on 1 node x 8 devices, 2 steps of 4
 * tokens per device; `extra` is appended (sections of its own). */
static const char BASE[] =
    "[experiment]\n"          /* 1 */
    "name = rel\n"            /* 2 */
    "seed = 1\n"              /* 3 */
    "steps = 2\n"             /* 4 */
    "[cluster]\n"             /* 5 */
    "hardware = H800\n"       /* 6 */
    "nodes = 1\n"             /* 7 */
    "devices_per_node = 8\n"  /* 8 */
    "[hardware]\n"            /* 9 */
    "hbm_bytes = 160e9\n"     /* 10 */
    "[model]\n"               /* 11 */
    "preset = deepseek-v3\n"  /* 12 */
    "[workload]\n"            /* 13 */
    "trace = %s/traces/data/deepseek-v3-sglang/decode_in1000out1000.json\n" /* 14 */
    "tokens_per_device = 4\n" /* 15 */
    "[placement]\n"           /* 16 */
    "strategies = %s\n"       /* 17 */
    "redundant = 0\n"         /* 18 */
    "%s";

static const char *config(const char *name, const char *strategies, const char *extra) {
    return put(name, BASE, root, strategies, extra);
}

/* ---- running moesim ---- */

typedef struct {
    int status; /* exit code, or 128 + signal */
    char err[8192];
    char out[8192];
} result_t;

static void slurp_into(const char *p, char *buf, size_t n) {
    buf[0] = 0;
    FILE *f = fopen(p, "rb");
    if (!f) return;
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = 0;
    fclose(f);
}

/* Runs moesim with args (NULL-terminated) in dir, with env "K=V" pairs set
 * and an optional file-size limit; kills it after kill_ms if > 0. */
static result_t run_env(const char *const *envs, long fsize, int kill_ms, const char *const *args) {
    char outp[700], errp[700];
    snprintf(outp, sizeof outp, "%s.out", dir);
    snprintf(errp, sizeof errp, "%s.err", dir);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        if (chdir(dir)) _exit(120);
        int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0) _exit(121);
        dup2(o, 1);
        dup2(e, 2);
        int nul = open("/dev/null", O_RDONLY);
        dup2(nul, 0);
        for (int i = 0; envs && envs[i]; i++) {
            char kv[256];
            snprintf(kv, sizeof kv, "%s", envs[i]);
            char *eq = strchr(kv, '=');
            if (eq) {
                *eq = 0;
                setenv(kv, eq + 1, 1);
            }
        }
        if (getenv("MOESIM_BIN")) { /* an older build may eat memory: not on this machine */
            struct rlimit as = {4UL << 30, 4UL << 30};
            setrlimit(RLIMIT_AS, &as);
        }
        if (fsize > 0) {
            signal(SIGXFSZ, SIG_IGN); /* a write past the limit fails with EFBIG */
            struct rlimit rl = {(rlim_t)fsize, (rlim_t)fsize};
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        const char *argv[64];
        int n = 0;
        argv[n++] = exe;
        for (int i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
        argv[n] = NULL;
        execv(exe, (char *const *)argv);
        _exit(122);
    }
    int status = 0, waited = 0;
    struct timespec nap = {0, 5000000};
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        nanosleep(&nap, NULL);
        waited += 5;
        if (kill_ms > 0 && waited >= kill_ms) {
            kill(pid, SIGKILL);
            kill_ms = 0;
        }
        if (waited > 60000) { /* a case that blocks (a FIFO read) fails, never hangs */
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            cr_log_error("moesim %s ... ran past 60 s (killed)", args[0]);
            break;
        }
    }
    result_t r;
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    slurp_into(errp, r.err, sizeof r.err);
    slurp_into(outp, r.out, sizeof r.out);
    return r;
}

static result_t run_args(const char *const *args) { return run_env(NULL, 0, 0, args); }

/* ---- "no output changed": a digest of every file under dir ---- */

static uint64_t digest_dir(const char *path, uint64_t h) {
    DIR *d = opendir(path);
    if (!d) return h;
    /* names sorted, so the digest does not depend on readdir's order */
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names[n++] = ms_strdup(e->d_name);
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        h = ms_hash64(names[i], strlen(names[i])) ^ (h * 1099511628211ULL);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            h = digest_dir(p, h);
        } else if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
            char *buf = NULL;
            size_t len = 0;
            if (ms_read_file(p, &buf, &len) == MS_OK) {
                h ^= ms_hash64(buf, len) * 31;
                free(buf);
            }
        }
        free(names[i]);
    }
    return h;
}

static uint64_t digest(void) { return digest_dir(dir, 1469598103934665603ULL); }

/* ---- fixtures ---- */

static long long query_file(const char *path, const char *sql) {
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK, "%s", path);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    long long v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static const char *at(const char *name) {
    static char paths[8][700];
    static int k;
    char *p = paths[k++ % 8];
    snprintf(p, 700, "%s/%s", dir, name);
    return p;
}

/* keep.db: a results database with two runs the cases must not lose;
 * foreign.db (SQLite, not moesim), garbage.db, a folder, a FIFO. */
static void fixtures(void) {
    const char *good = config("good.ini", "static, eplb", "");
    const char *a[] = {"compare", good, "--db", "keep.db", NULL};
    result_t r = run_args(a);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(query_file(at("keep.db"), "SELECT count(*) FROM runs"), 2);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(at("foreign.db"), &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "CREATE TABLE people (name TEXT); INSERT INTO people VALUES "
                                  "('x');", 0, 0, 0), SQLITE_OK);
    sqlite3_close(db);
    char junk[2000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)('a' + i % 26);
    put_n("garbage.db", junk, sizeof junk);
    put_n("empty.db", "", 0);
    cr_assert_eq(mkdir(at("folder"), 0700), 0);
    cr_assert_eq(mkfifo(at("fifo"), 0600), 0);
    cr_assert_eq(mkdir(at("out"), 0700), 0);
    put("out/kept.txt", "earlier output\n");
}

/* ---- the table ---- */

typedef struct {
    const char *what;
    const char *args[16]; /* "@x" is dir/x; "@@" is the repository root */
    const char *want[4];  /* substrings of stderr: where, what, the fix */
} bad_t;

#define MAXW 4

/* The cases that are usage mistakes (exit 2); every other is bad input (1). */
static const char *const USAGE_CASES[] = {"no config", "unknown option", "unknown command", NULL};

static int usage_case(const char *what) {
    for (int i = 0; USAGE_CASES[i]; i++)
        if (!strcmp(what, USAGE_CASES[i])) return 1;
    return 0;
}

/* Files the cases refer to, written before the table runs. */
static void case_files(void) {
    char big[400];
    memset(big, 'd', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char longc[400];
    memset(longc, 'c', sizeof longc - 1);
    longc[sizeof longc - 1] = 0;
    config("typo.ini", "static", "[cluster]\noverlapp = true\n");
    put("syntax.ini", "[experiment]\nname = x\nthis line has no equals sign\n");
    put("nokey.ini", "[experiment]\nname = x\n = 5\n");
    put("dup.ini", "[experiment]\nname = x\nseed = 1\nseed = 2\n");
    put("longval.ini", "[experiment]\nname = %s\n", big);
    /* a long comment (its tail once became a key) and a typo after it */
    char text[2000];
    snprintf(text, sizeof text, "; %s overlap = true\n%s", longc, BASE);
    put("longcomment.ini", text, root, "static", "[experiment]\nstepz = 3\n");
    put_n("nul.ini", "[experiment]\nname = x\0y\n", 24);
    config("notnum.ini", "static", "[serving]\nrate = fast\n");
    put("range.ini", BASE, root, "static", "");
    config("nopreset.ini", "static", "");
    config("strat.ini", "static, nope", "");
    config("twice.ini", "static, static", "");
    config("empty_strat.ini", ",", "");
    config("bool.ini", "static", "[cluster]\noverlap = maybe\n");
    config("enum.ini", "static", "[cluster]\nmode = fast\n");
    config("smsfrac.ini", "static", "[hardware]\nsms = 13.5\n");
    config("routing.ini", "static", "[serving]\ninstances = decode\nrouting = tokens\n");
    config("bigcluster.ini", "static", "");
    config("bigserve.ini", "static",
           "[serving]\ninstances = decode\narrival = poisson\nrate = 10000000\n"
           "duration_s = 10000000\n");
    put("dotname.ini", BASE, root, "static", "");
    config("sstrat.ini", "static", "[strategy.static]\nbogus = 1\n");
    config("notrace_req.ini", "static", "[serving]\ninstances = decode\narrival = trace\n");
    put("indent.ini", "[experiment]\nname = x\n[placement]\nstrategies = static,\n   eplb\n");
    config("hbm.ini", "static", "");
    config("noredund.ini", "static", "");
    /* traces */
    put("s.jsonl", "{\"layer\": 0, \"experts\": [\"6\", 5], \"token_idx\": 0}\n");
    put("trunc.jsonl", "{\"layer\": 0, \"experts\": [6, 5], \"token_idx\": 0}\n{\"layer\": 0, \"ex");
    put("range.jsonl", "{\"layer\": 0, \"experts\": [6, 40000], \"token_idx\": 0}\n");
    put("bad.npy", "\x93NUMPX\x01\x00garbage");
    static const char npy[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': "
                              "False, 'shape': (2, 3), }                                    "
                              "                        \n\x00\x00\x00";
    put_n("trunc.npy", npy, sizeof npy - 1);
    put("col.csv", "layer,expert,weight\n0,1,2\n");
    put("count.csv", "step,layer,expert,count\n0,0,1,many\n");
    put("nan.json", "{\"logical_count\": [[[\"1\", 2]]]}");
    put("trunc.json", "{\"logical_count\": [[1, 2], [3");
    put_n("empty.json", "", 0);
    /* request traces (read when a serving run starts) */
    put("r_head.csv", "when,prompt_size,token_size\n0,10,10\n");
    put("r_time.csv", "arrival_timestamp,prompt_size,token_size\n0,10,10\nsoon,10,10\n");
    put("r_sort.csv", "arrival_timestamp,prompt_size,token_size\n5,10,10\n1,10,10\n");
    put("r_century.csv", "arrival_timestamp,prompt_size,token_size\n-9000000000,10,10\n"
                         "9000000000,10,10\n");
    put("r_date.csv", "arrival_timestamp,prompt_size,token_size\n1700-01-01 00:00:00,10,10\n"
                      "2300-01-01 00:00:00,10,10\n");
    put("r_zero.csv", "arrival_timestamp,prompt_size,token_size\n0,0,10\n");
    put("r_fields.csv", "arrival_timestamp,prompt_size,token_size\n0,10\n");
    const char *reqs[] = {"r_head", "r_time", "r_sort", "r_century", "r_date", "r_zero",
                          "r_fields"};
    for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
        char name[64], extra[512];
        snprintf(name, sizeof name, "%s.ini", reqs[i]);
        snprintf(extra, sizeof extra,
                 "[serving]\ninstances = decode\narrival = trace\nrequest_trace = %s.csv\n",
                 reqs[i]);
        config(name, "static", extra);
    }
    /* sweeps */
    put("sw_section.ini", "[sweep]\nbase = good.ini\n[grid]\nplacement.redundant = 0, 8\n");
    put("sw_nobase.ini", "[sweep]\nbase = missing.ini\nmode = grid\n[axes]\n"
                         "placement.redundant = 0, 8\n");
    put("sw_strat.ini", "[sweep]\nbase = good.ini\nmode = grid\n[axes]\n"
                        "placement.strategies = static, nope\n");
    put("sw_key.ini", "[sweep]\nbase = good.ini\nmode = grid\n[axes]\n"
                      "placement.redundnat = 0, 8\n");
    put("sw_ok.ini", "[sweep]\nbase = good.ini\nmode = grid\n[axes]\n"
                     "placement.redundant = 0, 8\n");
    put("sw_mode.ini", "[sweep]\nbase = good.ini\nmode = spiral\n[axes]\n"
                       "placement.redundant = 0, 8\n");
}

/* Every case exits 1, says each `want`, and leaves every file as it was. */
static const bad_t CASES[] = {
    /* configs */
    {"typo'd key", {"compare", "@typo.ini", "--db", "@keep.db"},
     {"typo.ini:20", "unknown key [cluster] overlapp", "misspelt"}},
    {"not a key = value line", {"run", "@syntax.ini", "--db", "@keep.db"},
     {"syntax.ini:3", "not a '[section]' header or 'key = value' line", "fix the syntax"}},
    {"a value without a key", {"run", "@nokey.ini", "--db", "@keep.db"},
     {"nokey.ini:3", "not a '[section]' header or 'key = value' line", "fix the syntax"}},
    {"key twice", {"run", "@dup.ini", "--db", "@keep.db"}, {"dup.ini:4", "given twice", "keep one"}},
    {"value line longer than inih's buffer", {"run", "@longval.ini", "--db", "@keep.db"},
     {"longval.ini:2:", "line of 406 characters", "shorten the value"}},
    {"long comment: its tail is no key, later lines keep their numbers",
     {"run", "@longcomment.ini", "--db", "@keep.db"},
     {"longcomment.ini:21:", "unknown key [experiment] stepz", "misspelt"}},
    {"NUL byte", {"run", "@nul.ini", "--db", "@keep.db"},
     {"nul.ini:2:", "byte 21 is a NUL byte (column 9)", "a config is text"}},
    {"not a number", {"run", "@notnum.ini", "--db", "@keep.db"},
     {"notnum.ini:20", "rate = 'fast' is not a finite number", "example: rate ="}},
    {"out of range", {"run", "@range.ini", "--db", "@keep.db", "--set", "experiment.steps=0"},
     {"--set:1", "steps = 0 is out of range", "give 1 to"}},
    {"unknown model preset", {"run", "@nopreset.ini", "--db", "@keep.db", "--set", "model.preset=gpt"},
     {"--set:1", "unknown model preset 'gpt'", "known:"}},
    {"unknown hardware preset", {"run", "@nopreset.ini", "--db", "@keep.db", "--set", "cluster.hardware=Z9"},
     {"--set:1", "unknown hardware preset 'Z9'", "known:"}},
    {"unknown strategy in the list", {"compare", "@strat.ini", "--db", "@keep.db"},
     {"strat.ini:17", "unknown strategy 'nope'", "known: static"}},
    {"a strategy listed twice", {"compare", "@twice.ini", "--db", "@keep.db"},
     {"twice.ini:17", "'static' is listed twice", "list it once"}},
    {"empty strategy list", {"compare", "@empty_strat.ini", "--db", "@keep.db"},
     {"empty_strat.ini:17", "strategies is empty", "example: static"}},
    {"not a yes/no", {"run", "@bool.ini", "--db", "@keep.db"},
     {"bool.ini:20", "overlap = 'maybe' is not a yes/no value", "give true or false"}},
    {"not one of the names", {"run", "@enum.ini", "--db", "@keep.db"},
     {"enum.ini:20", "mode = 'fast' is not one of", "flow, analytic"}},
    {"SMs not a whole number", {"run", "@smsfrac.ini", "--db", "@keep.db"},
     {"smsfrac.ini:20", "sms = '13.5' is not a whole number", "example: sms ="}},
    {"routing not one of the names", {"run", "@routing.ini", "--db", "@keep.db"},
     {"routing.ini:21", "routing = 'tokens' is not one of", "auto, count, token"}},
    {"a cluster whose tables exceed memory", {"run", "@bigcluster.ini", "--db", "@keep.db", "--set", "cluster.nodes=4096", "--set", "cluster.devices_per_node=64"},
     {"--set:1", "[cluster] nodes = 4096 x devices_per_node = 64", "lower it"}},
    {"a request stream that exceeds memory", {"run", "@bigserve.ini", "--db", "@keep.db"},
     {"bigserve.ini:22", "rate x duration_s = 1e+14 requests", "lower it"}},
    {"experiment name leaving results/", {"run", "@dotname.ini", "--set", "experiment.name=../../x"},
     {"--set:1", "[experiment] name = '../../x'", "give --db FILE"}},
    {"experiment name with a control character", {"run", "@dotname.ini", "--set", "experiment.name=a\nb"},
     {"--set:1", "[experiment] name", "give --db FILE"}},
    {"a strategy's unknown key", {"run", "@sstrat.ini", "--db", "@keep.db"},
     {"sstrat.ini:20", "unknown key [strategy.static] bogus", "misspelt"}},
    {"arrival = trace without a file", {"run", "@notrace_req.ini", "--db", "@keep.db"},
     {"notrace_req.ini:21", "needs request_trace = FILE.csv", "columns"}},
    {"a continuation line", {"run", "@indent.ini", "--db", "@keep.db"},
     {"indent.ini:5", "not a '[section]' header or 'key = value' line", "fix the syntax"}},
    {"HBM too small", {"run", "@hbm.ini", "--db", "@keep.db", "--set", "hardware.hbm_bytes=1e9"},
     {"hbm.ini", "device memory does not fit", "use fewer redundant experts"}},
    {"slots that do not divide", {"run", "@noredund.ini", "--db", "@keep.db", "--set", "placement.redundant=3"},
     {"--set:1", "do not divide over 8 devices", "choose redundant"}},
    {"trace file missing", {"run", "@range.ini", "--db", "@keep.db", "--set", "workload.trace=nope.json"},
     {"nope.json", "cannot open", "check the path"}},
    {"config is a folder", {"run", "@folder", "--db", "@keep.db"},
     {"folder", "not a regular file (a folder)", "give a file"}},
    {"config is a FIFO (never blocks)", {"run", "@fifo", "--db", "@keep.db"},
     {"fifo", "not a regular file (a FIFO)", "give a file"}},
    {"config is a device", {"run", "/dev/zero", "--db", "@keep.db"},
     {"/dev/zero", "not a regular file (a device)", "give a file"}},
    {"config missing", {"run", "@missing.ini", "--db", "@keep.db"},
     {"missing.ini", "cannot open", "check the path"}},
    /* command-line flags */
    {"no config", {"run"}, {"give exactly one CONFIG", "example: moesim run"}},
    {"--db ''", {"compare", "@good.ini", "--db", ""}, {"--db ''", "needs a file name", "example: --db"}},
    {"--set without a dot", {"run", "@good.ini", "--db", "@keep.db", "--set", "nodes=2"},
     {"--set:1", "'nodes=2' is not section.key=value", "example: cluster.nodes=18"}},
    {"--set not a number", {"run", "@good.ini", "--db", "@keep.db", "--set", "cluster.nodes=x"},
     {"--set:1", "nodes = 'x' is not a whole number", "example: nodes ="}},
    {"run --strategy unknown (was a crash)", {"run", "@good.ini", "--db", "@keep.db", "--strategy", "NOPE"},
     {"--strategy NOPE", "unknown strategy", "known: static"}},
    {"compare --strategy not listed", {"compare", "@good.ini", "--db", "@keep.db", "--strategy", "omni"},
     {"--strategy omni", "not in", "add it there"}},
    {"compare --strategy unknown", {"compare", "@good.ini", "--db", "@keep.db", "--strategy", "x"},
     {"--strategy x", "unknown strategy", "known:"}},
    {"--wait-s negative", {"compare", "@good.ini", "--db", "@keep.db", "--wait-s", "-1"},
     {"--wait-s '-1'", "give seconds", "example: --wait-s 60"}},
    {"unknown option", {"compare", "@good.ini", "--bogus"}, {"bogus", "usage: moesim compare"}},
    {"--db a folder", {"compare", "@good.ini", "--db", "@folder"},
     {"folder", "not a regular file", "give a file path for --db"}},
    {"--db a FIFO", {"compare", "@good.ini", "--db", "@fifo"},
     {"fifo", "not a regular file", "give a file path for --db"}},
    {"--db in a missing folder", {"compare", "@good.ini", "--db", "@no/such/x.db"},
     {"no/such/x.db", "folder", "create it first"}},
    {"--db a foreign SQLite file", {"compare", "@good.ini", "--db", "@foreign.db"},
     {"foreign.db", "not a moesim results database", "give another --db"}},
    {"--db a garbage file", {"compare", "@good.ini", "--db", "@garbage.db"},
     {"garbage.db", "cannot read it as a results database", "give another --db"}},
    {"unknown command", {"runn"}, {"unknown command 'runn'", "commands:"}},
    {"--replace with a typo keeps the old runs", {"compare", "@good.ini", "--db", "@keep.db", "--replace", "--set", "experiment.stepz=1"},
     {"--set:1", "unknown key [experiment] stepz", "misspelt"}},
    /* traces (trace info) */
    {"JSONL string expert id", {"trace", "info", "@s.jsonl"},
     {"s.jsonl:1:", "the string \"6\", not an integer", "without quotes"}},
    {"JSONL truncated line", {"trace", "info", "@trunc.jsonl"},
     {"trunc.jsonl:2:", "invalid JSON", "truncated"}},
    {"JSONL expert out of range", {"trace", "info", "@range.jsonl"},
     {"range.jsonl:1:", "is 40000, out of range", "integers in [0,"}},
    {"npy bad magic", {"trace", "info", "@bad.npy"}, {"bad.npy", "npy"}},
    {"npy truncated data", {"trace", "info", "@trunc.npy"}, {"trunc.npy", "bytes"}},
    {"CSV trace unknown column", {"trace", "info", "@col.csv"},
     {"col.csv:1", "unknown column 'weight'", "known: step"}},
    {"CSV trace count not a number", {"trace", "info", "@count.csv"}, {"count.csv:2", "many"}},
    {"SGLang JSON string count", {"trace", "info", "@nan.json"},
     {"nan.json:1:22 (byte 21)", "is not a number"}},
    {"SGLang JSON truncated", {"trace", "info", "@trunc.json"}, {"trunc.json", "invalid JSON", "truncated"}},
    {"empty trace", {"trace", "info", "@empty.json"}, {"empty.json"}},
    {"trace is /dev/zero (bounded)", {"trace", "info", "/dev/zero"},
     {"/dev/zero", "not a regular file (a device)", "give a file"}},
    {"trace is a folder", {"trace", "info", "@folder"}, {"folder", "a folder", "give a file"}},
    {"trace is a FIFO", {"trace", "info", "@fifo"}, {"fifo", "a FIFO", "give a file"}},
    /* request traces */
    {"request CSV without an arrival column", {"run", "@r_head.ini", "--db", "@keep.db"},
     {"r_head.csv:1", "header lacks an arrival column", "arrival_timestamp,prompt_size"}},
    {"request CSV time not a time", {"run", "@r_time.ini", "--db", "@keep.db"},
     {"r_time.csv:3", "arrival 'soon'", "YYYY-MM-DD"}},
    {"request CSV unsorted", {"run", "@r_sort.ini", "--db", "@keep.db"},
     {"r_sort.csv:3", "before the previous row", "sort the file"}},
    {"request CSV spanning centuries (seconds)", {"run", "@r_century.ini", "--db", "@keep.db"},
     {"r_century.csv:3", "more than 292 years", "check the timestamps"}},
    {"request CSV spanning centuries (dates)", {"run", "@r_date.ini", "--db", "@keep.db"},
     {"r_date.csv:3", "more than 292 years", "check the timestamps"}},
    {"request CSV prompt of 0", {"run", "@r_zero.ini", "--db", "@keep.db"},
     {"r_zero.csv:2", "prompt tokens '0'", "from 1 to"}},
    {"request CSV short row", {"run", "@r_fields.ini", "--db", "@keep.db"},
     {"r_fields.csv:2", "2 fields, the header has 3", "one value per column"}},
    /* sweeps */
    {"sweep unknown section", {"sweep", "@sw_section.ini", "--db", "@keep.db"},
     {"sw_section.ini:4", "unknown section [grid]", "[axes]"}},
    {"sweep base missing", {"sweep", "@sw_nobase.ini", "--db", "@keep.db"},
     {"missing.ini", "cannot open", "check the path"}},
    {"sweep unknown strategy", {"sweep", "@sw_strat.ini", "--db", "@keep.db"},
     {"unknown strategy 'nope'", "known: static"}},
    {"sweep axis with a typo'd key", {"sweep", "@sw_key.ini", "--db", "@keep.db"},
     {"sw_key.ini", "redundnat", "misspelt"}},
    {"sweep unknown mode", {"sweep", "@sw_mode.ini", "--db", "@keep.db"}, {"sw_mode.ini:3", "spiral"}},
    {"sweep --db ''", {"sweep", "@sw_ok.ini", "--db", ""}, {"--db ''", "needs a file name"}},
    /* place */
    {"place unknown strategy", {"place", "--strategy", "nope", "--counts", "@@/traces/data/deepseek-v3-sglang/prefill_in1024.json"},
     {"unknown strategy 'nope'", "known: static"}},
    {"place counts from /dev/zero", {"place", "--strategy", "eplb", "--counts", "/dev/zero", "--db", "@keep.db"},
     {"/dev/zero", "not a regular file (a device)"}},
    {"place counts missing", {"place", "--strategy", "eplb", "--counts", "@nope.json", "--db", "@keep.db"},
     {"nope.json", "cannot open", "check the path"}},
    {"place devices not dividing", {"place", "--strategy", "eplb", "--counts", "@@/traces/data/deepseek-v3-sglang/prefill_in1024.json", "--devices", "7", "--db", "@keep.db"},
     {"7"}},
    {"place --db a foreign file", {"place", "--strategy", "eplb", "--counts", "@@/traces/data/deepseek-v3-sglang/prefill_in1024.json", "--db", "@foreign.db"},
     {"foreign.db", "not a moesim results database", "give another --db"}},
    /* report */
    {"report on a foreign database", {"report", "@foreign.db", "-o", "@out"},
     {"foreign.db", "not a moesim results database"}},
    {"report on garbage", {"report", "@garbage.db", "-o", "@out"}, {"garbage.db"}},
    {"report on an empty file", {"report", "@empty.db", "-o", "@out"}, {"empty.db"}},
    {"report on a missing file", {"report", "@missing.db", "-o", "@out"},
     {"missing.db", "moesim compare CONFIG --db"}},
    {"report on a folder", {"report", "@folder", "-o", "@out"}, {"folder"}},
};

/* dir-relative and repository-relative names in a case's arguments. */
static const char *expand(const char *a, char *buf, size_t n) {
    if (!strncmp(a, "@@", 2)) snprintf(buf, n, "%s%s", root, a + 2);
    else if (a[0] == '@') snprintf(buf, n, "%s/%s", dir, a + 1);
    else return a;
    return buf;
}

Test(reliability, bad_inputs_are_refused_and_change_nothing) {
    fixtures();
    case_files();
    size_t n = sizeof CASES / sizeof *CASES;
    cr_assert_geq(n, 60);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const bad_t *c = &CASES[i];
        char bufs[16][900];
        const char *args[17];
        int k = 0;
        for (; c->args[k]; k++) args[k] = expand(c->args[k], bufs[k], sizeof bufs[k]);
        args[k] = NULL;
        uint64_t before = digest();
        result_t r = run_args(args);
        uint64_t after = digest();
        /* 1: bad input, 2: a usage mistake (main.c maps them), each exactly */
        int want = usage_case(c->what) ? 2 : 1;
        if (r.status != want) {
            cr_log_error("case %zu (%s): exit %d, want %d; stderr: %s", i, c->what, r.status,
                         want, r.err);
            bad++;
        }
        for (int w = 0; w < MAXW && c->want[w]; w++)
            if (!strstr(r.err, c->want[w])) {
                cr_log_error("case %zu (%s): stderr lacks '%s': %s", i, c->what, c->want[w],
                             r.err);
                bad++;
            }
        if (before != after) {
            cr_log_error("case %zu (%s): a file under the scratch folder changed", i, c->what);
            bad++;
        }
        if (strstr(r.err, "Sanitizer") || strstr(r.err, "runtime error:")) {
            cr_log_error("case %zu (%s): a sanitizer report: %s", i, c->what, r.err);
            bad++;
        }
    }
    cr_assert_eq(bad, 0, "%d failures (logged above)", bad);
    cr_assert_eq(query_file(at("keep.db"), "SELECT count(*) FROM runs"), 2);
    char outside[600];
    snprintf(outside, sizeof outside, "%s/x.db", base);
    cr_assert_neq(access(outside, F_OK), 0, "nothing written outside results/");
}

/* ---- faults: SIGKILL at named points and at times, a full disk ---- */

/* The set of config hashes of the runs in db, as "h1,h2,..." sorted; and
 * the database is whole: integrity_check ok, no row without its run, every
 * run with its steps. */
static void runs_of(const char *db, char *out, size_t n) {
    /* Read-write, as the next moesim opens it: a kill inside a transaction
     * leaves a hot journal that the next writer rolls back. */
    sqlite3 *h;
    cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 10000);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &q, NULL), SQLITE_OK, "%s: %s",
                 db, sqlite3_errmsg(h));
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_finalize(q);
    const char *orphans[] = {"steps", "layer_steps", "device_loads", "summary", "layer_bounds",
                             "replicas", "trace_counts"};
    for (size_t i = 0; i < sizeof orphans / sizeof *orphans; i++) {
        char sql[200];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM %s WHERE run_id NOT IN (SELECT run_id FROM runs)",
                 orphans[i]);
        cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &q, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
        cr_assert_eq(sqlite3_column_int(q, 0), 0, "orphan rows in %s", orphans[i]);
        sqlite3_finalize(q);
    }
    cr_assert_eq(sqlite3_prepare_v2(h, "SELECT count(*) FROM runs r WHERE (SELECT count(*) FROM"
                                       " steps s WHERE s.run_id = r.run_id) <> 2", -1, &q, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(q, 0), 0, "a run without all its steps");
    sqlite3_finalize(q);
    cr_assert_eq(sqlite3_prepare_v2(h, "SELECT group_concat(config_hash) FROM (SELECT config_hash"
                                       " FROM runs ORDER BY config_hash)", -1, &q, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    const char *s = (const char *)sqlite3_column_text(q, 0);
    snprintf(out, n, "%s", s ? s : "");
    sqlite3_finalize(q);
    sqlite3_close(h);
}

/* compare --replace killed at each publishing step and at several times:
 * the database holds exactly the old runs or exactly the new ones. */
Test(reliability, killed_compare_replace_leaves_old_or_new) {
    const char *good = config("good.ini", "static, eplb", "");
    const char *db = at("r.db");
    const char *a0[] = {"compare", good, "--db", db, NULL};
    cr_assert_eq(run_args(a0).status, 0);
    char old[512], new_[512], now[512];
    runs_of(db, old, sizeof old);
    /* What the replacement stores when it finishes (seed 2: other hashes). */
    const char *a1[] = {"compare", good, "--db", at("ref.db"), "--set", "experiment.seed=2", NULL};
    cr_assert_eq(run_args(a1).status, 0);
    runs_of(at("ref.db"), new_, sizeof new_);
    cr_assert_str_neq(old, new_);
    const char *arep[] = {"compare", good, "--db", db, "--replace", "--set", "experiment.seed=2",
                          NULL};
    const char *points[] = {"staged", "publish", "published"};
    for (int i = 0; i < 3; i++) {
        char env[64];
        snprintf(env, sizeof env, "MOESIM_FAULT=%s", points[i]);
        const char *envs[] = {env, NULL};
        result_t r = run_env(envs, 0, 0, arep);
        cr_assert_eq(r.status, 128 + SIGKILL, "killed at %s: %s", points[i], r.err);
        runs_of(db, now, sizeof now);
        cr_assert_str_eq(now, i < 2 ? old : new_, "killed at %s", points[i]);
        if (i < 2) continue;
        /* back to the old runs for the next point */
        const char *back[] = {"compare", good, "--db", db, "--replace", NULL};
        cr_assert_eq(run_args(back).status, 0);
        runs_of(db, now, sizeof now);
        cr_assert_str_eq(now, old);
    }
    /* Kills at arbitrary times: old or new, nothing else. */
    int olds = 0, news = 0;
    for (int ms = 20; ms <= 1280; ms *= 2) {
        const char *seed = ms % 40 ? "experiment.seed=1" : "experiment.seed=2";
        const char *a[] = {"compare", good, "--db", db, "--replace", "--set", seed, NULL};
        char before[512];
        runs_of(db, before, sizeof before);
        run_env(NULL, 0, ms, a);
        runs_of(db, now, sizeof now);
        cr_assert(!strcmp(now, old) || !strcmp(now, new_), "killed after %d ms: %s", ms, now);
        olds += !strcmp(now, old);
        news += !strcmp(now, new_);
    }
    cr_assert_eq(olds + news, 7);
    /* On a database that does not exist, a kill leaves no file there. */
    const char *points2[] = {"staged", "link"};
    for (int i = 0; i < 2; i++) {
        char env[64];
        snprintf(env, sizeof env, "MOESIM_FAULT=%s", points2[i]);
        const char *envs[] = {env, NULL};
        const char *a[] = {"compare", good, "--db", at("fresh.db"), NULL};
        result_t r = run_env(envs, 0, 0, a);
        cr_assert_eq(r.status, 128 + SIGKILL);
        cr_assert_neq(access(at("fresh.db"), F_OK), 0, "killed at %s: no database file",
                      points2[i]);
    }
}

/* A sweep killed while publishing a point keeps every point published
 * before it whole; running it again completes the sweep. */
Test(reliability, killed_sweep_keeps_whole_points_and_resumes) {
    config("good.ini", "static", "");
    const char *sw = put("sw.ini", "[sweep]\nbase = good.ini\nmode = grid\n[axes]\n"
                                   "placement.redundant = 0, 8, 16\n");
    const char *db = at("sw.db");
    const char *a[] = {"sweep", sw, "--db", db, "--no-progress", NULL};
    const char *envs[] = {"MOESIM_FAULT=publish", NULL};
    result_t r = run_env(envs, 0, 0, a);
    cr_assert_eq(r.status, 128 + SIGKILL, "%s", r.err);
    /* The first point made the file; the second was killed inside its
     * publishing transaction: one whole run. */
    char now[512];
    runs_of(db, now, sizeof now);
    cr_assert_eq(query_file(db, "SELECT count(*) FROM runs"), 1);
    r = run_args(a);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "2 run, 1 already in the database"), "%s", r.out);
    runs_of(db, now, sizeof now);
    cr_assert_eq(query_file(db, "SELECT count(*) FROM runs"), 3);
    /* killed after a few ms on a finished database: nothing to redo, nothing lost */
    run_env(NULL, 0, 30, a);
    char after[512];
    runs_of(db, after, sizeof after);
    cr_assert_str_eq(now, after);
}

/* report reads the database only: killed at any time, it stays as it was. */
Test(reliability, killed_report_leaves_the_database_as_it_was) {
    const char *good = config("good.ini", "static, eplb", "");
    const char *db = at("rep.db");
    const char *a0[] = {"compare", good, "--db", db, NULL};
    cr_assert_eq(run_args(a0).status, 0);
    char *before = NULL, *after = NULL;
    size_t n0, n1;
    cr_assert_eq(ms_read_file(db, &before, &n0), MS_OK);
    for (int ms = 10; ms <= 640; ms *= 4) {
        const char *a[] = {"report", db, "-o", at("rep"), NULL};
        run_env(NULL, 0, ms, a);
        cr_assert_eq(ms_read_file(db, &after, &n1), MS_OK);
        cr_assert(n0 == n1 && !memcmp(before, after, n0), "killed after %d ms: database changed",
                  ms);
        free(after);
    }
    free(before);
}

/* A disk that fills up (a file-size limit, SIGXFSZ ignored): compare fails
 * with a message, and the database is as it was (or, new, not made). */
Test(reliability, a_full_disk_fails_compare_and_keeps_the_database) {
    const char *good = config("good.ini", "static, eplb", "");
    const char *db = at("full.db");
    const char *a0[] = {"compare", good, "--db", db, NULL};
    cr_assert_eq(run_args(a0).status, 0);
    char *before = NULL, *after = NULL;
    size_t n0, n1;
    cr_assert_eq(ms_read_file(db, &before, &n0), MS_OK);
    /* The limit lets the file be opened but not hold the new runs, ten
     * times the old ones (so they cannot fit in the old runs' pages either). */
    const char *a[] = {"compare", good, "--db", db, "--replace", "--set", "experiment.steps=20",
                       NULL};
    result_t r = run_env(NULL, (long)n0 + 4096, 0, a);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert_not_null(strstr(r.err, "full.db"), "%s", r.err);
    cr_assert_eq(ms_read_file(db, &after, &n1), MS_OK);
    cr_assert(n0 == n1 && !memcmp(before, after, n0), "the database changed");
    free(before);
    free(after);
    /* A new database on a full disk is not made at all. */
    const char *b[] = {"compare", good, "--db", at("new.db"), NULL};
    r = run_env(NULL, 65536, 0, b);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert_neq(access(at("new.db"), F_OK), 0);
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d)))
        cr_assert_null(strstr(e->d_name, ".new-"), "a temporary file was left: %s", e->d_name);
    closedir(d);
}
