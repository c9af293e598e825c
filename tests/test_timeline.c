/* The --timeline file: Chrome trace event JSON that Perfetto opens. Checks
 * the format (every event's fields, one process per node and one thread per
 * device), that its microsecond times are the simulated ns / 1000 inside the
 * stored steps, per-device phases that never overlap, and the cap. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "timeline.h"
#include "util.h"
#include "fixture.h"

static char dir[64];

static void setup(void) { fx_dir_make(dir, sizeof dir, "tl"); }

static void teardown(void) { fx_dir_remove(dir); }

/* 2 nodes x 8 devices, 3 steps; eplb re-plans after every step. */
static const char *write_cfg(const char *extra) {
    static char path[128];
    snprintf(path, sizeof path, "%s/tl.ini", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    char cwd[1024];
    cr_assert(getcwd(cwd, sizeof cwd));
    fprintf(f, "[experiment]\nname = tl\nseed = 3\nsteps = 3\n[cluster]\nhardware = H800\n"
               "nodes = 2\ndevices_per_node = 8\n%s\n[model]\npreset = deepseek-v3\n[workload]\n"
               "trace = %s/traces/data/deepseek-v3-sglang/decode_in1800out100.json\n"
               "tokens_per_device = 8\n[placement]\nstrategies = static, eplb\nredundant = 16\n"
               "[strategy.eplb]\ninterval_steps = 1\n",
            extra, cwd);
    fclose(f);
    return path;
}

static int compare(const char *cfg, const char *tl, const char *max) {
    char db[128];
    snprintf(db, sizeof db, "%s/tl.db", dir);
    char *argv[] = {"compare", (char *)cfg, "--db", db, "--timeline", (char *)tl,
                    "--timeline-max-events", (char *)max, NULL};
    return cmd_compare(max ? 8 : 6, argv);
}

/* Steps of a strategy's run: [start, end) in ns. */
static int steps_of(const char *strategy, int64_t *start, int64_t *end, int cap) {
    char db[128];
    snprintf(db, sizeof db, "%s/tl.db", dir);
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(h,
                                    "SELECT s.start_ns, s.start_ns + s.duration_ns FROM steps s "
                                    "JOIN runs r ON r.run_id = s.run_id WHERE r.strategy = ? "
                                    "ORDER BY s.step", -1, &q, NULL), SQLITE_OK,
                 "%s", sqlite3_errmsg(h));
    sqlite3_bind_text(q, 1, strategy, -1, SQLITE_STATIC);
    int n = 0;
    while (sqlite3_step(q) == SQLITE_ROW && n < cap) {
        start[n] = sqlite3_column_int64(q, 0);
        end[n++] = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    sqlite3_close(h);
    return n;
}

typedef struct {
    double ts, end;
    int kind;
} span_t;

static int by_ts(const void *a, const void *b) {
    const span_t *x = a, *y = b;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

static const char *const KINDS[] = {"dispatch", "expert", "combine"};

/* The format checks every timeline of this config must pass; returns the
 * number of re-plan instants. */
static int check_file(const char *path, const char *strategy) {
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    cr_assert(root, "%s: not JSON: %s (line %d)", path, err.text, err.line);
    json_t *evs = json_object_get(root, "traceEvents");
    cr_assert(json_is_array(evs));
    enum { NODES = 2, DEV = 16, DPN = 8 };
    int proc[NODES] = {0}, thr[DEV] = {0}, replans = 0;
    int64_t st[16], en[16];
    int ns = steps_of(strategy, st, en, 16);
    cr_assert_eq(ns, 3);
    span_t *sp[DEV];
    int nsp[DEV] = {0}, present[DEV][3] = {{0}};
    for (int d = 0; d < DEV; d++) sp[d] = ms_malloc(json_array_size(evs) * sizeof **sp);
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *ph = json_string_value(json_object_get(e, "ph"));
        json_t *ts = json_object_get(e, "ts");
        json_t *pid = json_object_get(e, "pid"), *tid = json_object_get(e, "tid");
        cr_assert(name && ph && json_is_number(ts) && json_is_integer(pid) &&
                  json_is_integer(tid), "event %zu lacks name/ph/ts/pid/tid", i);
        int p = (int)json_integer_value(pid), t = (int)json_integer_value(tid);
        if (!strcmp(ph, "M")) {
            const char *label = json_string_value(json_object_get(json_object_get(e, "args"),
                                                                   "name"));
            cr_assert(label);
            if (!strcmp(name, "process_name")) {
                cr_assert(p >= 0 && p < NODES);
                proc[p]++;
            } else if (!strcmp(name, "thread_name") && t < DEV) {
                cr_assert_eq(p, t / DPN, "device %d drawn in process %d", t, p);
                char want[32];
                snprintf(want, sizeof want, "gpu %d", t);
                cr_assert_str_eq(label, want);
                thr[t]++;
            }
            continue;
        }
        double us = json_number_value(ts);
        /* microseconds: the simulated ns / 1000, exactly (to a float's rounding) */
        cr_assert(fabs(us * 1000 - llround(us * 1000)) < 1e-3, "ts %.6f is not ns / 1000", us);
        if (!strcmp(ph, "i")) {
            cr_assert_str_eq(name, "re-plan");
            replans++;
            continue;
        }
        cr_assert_str_eq(ph, "X", "event %zu: phase %s", i, ph);
        double dur = json_number_value(json_object_get(e, "dur"));
        cr_assert(dur > 0);
        if (!strcmp(name, "weight copy")) { /* a re-plan's copy, on its device's copy thread */
            cr_assert(t >= DEV && t < 2 * DEV && p == (t - DEV) / DPN, "copy on tid %d", t);
            continue;
        }
        cr_assert(t >= 0 && t < DEV, "tid %d is no device (one micro-batch)", t);
        cr_assert_eq(p, t / DPN);
        int k = -1;
        for (int j = 0; j < 3; j++)
            if (!strcmp(name, KINDS[j])) k = j;
        cr_assert(k >= 0, "unknown phase %s", name);
        /* inside one of the stored steps */
        int64_t a = llround(us * 1000), b = llround((us + dur) * 1000);
        int in = 0;
        for (int s = 0; s < ns; s++) in |= a >= st[s] && b <= en[s];
        cr_assert(in, "%s on gpu %d [%lld, %lld] ns lies in no step", name, t, (long long)a,
                  (long long)b);
        present[t][k] = 1;
        sp[t][nsp[t]++] = (span_t){us, us + dur, k};
    }
    for (int b = 0; b < NODES; b++) cr_assert_eq(proc[b], 1, "node %d: %d process names", b, proc[b]);
    for (int d = 0; d < DEV; d++) {
        cr_assert_eq(thr[d], 1, "gpu %d: %d thread names", d, thr[d]);
        for (int k = 0; k < 3; k++) cr_assert(present[d][k], "gpu %d has no %s", d, KINDS[k]);
        /* a device's phases follow one another: no two of its events overlap */
        qsort(sp[d], (size_t)nsp[d], sizeof *sp[d], by_ts);
        for (int j = 1; j < nsp[d]; j++)
            cr_assert(sp[d][j].ts >= sp[d][j - 1].end - 1e-6,
                      "gpu %d: %s at %.3f us overlaps %s ending %.3f", d, KINDS[sp[d][j].kind],
                      sp[d][j].ts, KINDS[sp[d][j - 1].kind], sp[d][j - 1].end);
        free(sp[d]);
    }
    json_decref(root);
    return replans;
}

static void check_mode(const char *mode) {
    char tl[128], f[128], extra[64];
    snprintf(extra, sizeof extra, "mode = %s", mode);
    snprintf(tl, sizeof tl, "%s/steps.json", dir);
    cr_assert_eq(compare(write_cfg(extra), tl, NULL), 0, "%s", ms_err_last());
    cr_assert_neq(access(tl, F_OK), 0, "compare writes one file per strategy, not FILE itself");
    snprintf(f, sizeof f, "%s/steps.static.json", dir);
    cr_assert_eq(check_file(f, "static"), 0, "static never re-plans");
    snprintf(f, sizeof f, "%s/steps.eplb.json", dir);
    cr_assert_geq(check_file(f, "eplb"), 1, "eplb re-plans after every step");
}

Test(timeline, flow_mode_trace_event_format, .init = setup, .fini = teardown) {
    check_mode("flow");
}

Test(timeline, analytic_mode_trace_event_format, .init = setup, .fini = teardown) {
    check_mode("analytic");
}

Test(timeline, cap_is_honoured_and_said, .init = setup, .fini = teardown) {
    char tl[128], f[128];
    snprintf(tl, sizeof tl, "%s/cap.json", dir);
    cr_assert_eq(compare(write_cfg(""), tl, "25"), 0, "%s", ms_err_last());
    snprintf(f, sizeof f, "%s/cap.static.json", dir);
    json_error_t err;
    json_t *root = json_load_file(f, 0, &err);
    cr_assert(root, "%s", err.text);
    json_t *evs = json_object_get(root, "traceEvents"), *e;
    size_t i;
    int n = 0, trunc = 0;
    json_array_foreach(evs, i, e) {
        const char *ph = json_string_value(json_object_get(e, "ph"));
        const char *name = json_string_value(json_object_get(e, "name"));
        if (!strcmp(ph, "M")) continue;
        if (!strcmp(name, "timeline truncated")) {
            trunc++;
            cr_assert_eq(json_integer_value(json_object_get(json_object_get(e, "args"),
                                                            "max_events")), 25);
        } else {
            cr_assert_eq(trunc, 0, "an event after the truncation mark");
            n++;
        }
    }
    cr_assert_eq(n, 25);
    cr_assert_eq(trunc, 1);
    json_decref(root);
}

Test(timeline, bad_options_fail_and_write_nothing, .init = setup, .fini = teardown) {
    char tl[128], db[128];
    snprintf(tl, sizeof tl, "%s/t.json", dir);
    snprintf(db, sizeof db, "%s/tl.db", dir);
    cr_assert_neq(compare(write_cfg(""), tl, "0"), 0);
    cr_assert(strstr(ms_err_last(), "--timeline-max-events"), "%s", ms_err_last());
    cr_assert_neq(compare(write_cfg(""), tl, "1.5"), 0);
    cr_assert_neq(access(db, F_OK), 0, "nothing stored after a refused option");
    /* a pipeline's stages are not drawn: refused, nothing written */
    cr_assert_neq(compare(write_cfg("pp = 2"), tl, NULL), 0);
    cr_assert(strstr(ms_err_last(), "pipeline-parallel run (pp = 2) is not drawn"), "%s",
              ms_err_last());
    cr_assert_neq(access(db, F_OK), 0, "nothing stored after a refused pipeline timeline");
    snprintf(tl, sizeof tl, "%s/no/such/folder/t.json", dir);
    cr_assert_neq(compare(write_cfg(""), tl, NULL), 0);
    cr_assert(strstr(ms_err_last(), "t.static.json"), "%s", ms_err_last());
}

Test(timeline, strategy_file_names) {
    ms_err_quiet(1);
    char b[256];
    cr_assert_eq(timeline_strategy_path("out/t.json", "eplb", b, sizeof b), 0);
    cr_assert_str_eq(b, "out/t.eplb.json");
    cr_assert_eq(timeline_strategy_path("out/t", "omni", b, sizeof b), 0);
    cr_assert_str_eq(b, "out/t.omni.json");
    /* a name from a config never leaves the folder or hides the file */
    cr_assert_eq(timeline_strategy_path("t.json", "exec:../x", b, sizeof b), 0);
    cr_assert_str_eq(b, "t.exec_.._x.json");
    cr_assert_eq(timeline_strategy_path("t.json", ".hidden", b, sizeof b), 0);
    cr_assert_str_eq(b, "t._hidden.json");
    cr_assert_neq(timeline_strategy_path("t.json", "x", b, 8), 0);
}
