/* [workload] phases: real traces strung together by duration. A trace that
 * loads two experts and one that loads all eight alternate, and a static
 * layout's per-step PAR shows which one each step replayed: the switch
 * must fall on the first step starting at or after the configured time, in
 * fixed-batch runs and in serving. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "phase.h"
#include "trace.h"
#include "util.h"
#include "fixture.h"

static char dir[64];

static void setup(void) { fx_dir_make(dir, sizeof dir, "phase"); }

static void teardown(void) {
    fx_dir_remove(dir);
    ms_err_quiet(0);
}

/* A Mixtral-shaped counts trace (32 layers x 8 experts, one step): hot
 * loads experts 0 and 1 only (one device under contiguous placement on 8),
 * otherwise every expert alike. */
static void write_trace(const char *name, int hot) {
    trace_t *t = ms_calloc(1, sizeof *t);
    t->path = ms_strdup(name);
    t->format = "npy";
    t->kind = TRACE_COUNTS;
    t->n_layers = 32;
    t->n_experts = 8;
    t->n_steps = 1;
    t->counts = ms_calloc(32 * 8, sizeof *t->counts);
    for (int l = 0; l < 32; l++)
        for (int e = 0; e < 8; e++) t->counts[l * 8 + e] = hot ? (e < 2 ? 1000 : 0) : 1000;
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(trace_write(t, path), MS_OK, "%s", ms_err_last());
    trace_free(t);
}

static const char *write_cfg(const char *extra) {
    static char path[128];
    snprintf(path, sizeof path, "%s/p.ini", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "[experiment]\nname = p\nseed = 1\nsteps = 40\n[cluster]\nhardware = H100\n"
               "nodes = 1\ndevices_per_node = 8\nmode = analytic\n[model]\npreset = mixtral-8x7b\n"
               "[workload]\nphases = hot.npy:%s, flat.npy:%s, hot.npy:1s\ntokens_per_device = 64\n"
               "[placement]\nstrategies = static\nprior = none\n%s",
            "30ms", "40ms", extra);
    fclose(f);
    return path;
}

Test(phase, parses_files_and_durations) {
    phases_t ph;
    cr_assert_eq(phase_parse("a.json:30s, b/c.npy:500ms,d.json:1.5s", "cfg/x.ini", "w", &ph), MS_OK,
                 "%s", ms_err_last());
    cr_assert_eq(ph.n, 3);
    cr_expect_str_eq(ph.p[0].path, "cfg/a.json");
    cr_expect_str_eq(ph.p[1].name, "b/c.npy");
    cr_expect_eq(ph.p[1].dur_ns, 500000000);
    cr_expect_eq(ph.p[2].end_ns, 32000000000LL);
    cr_expect_eq(phase_at(&ph, 0), 0);
    cr_expect_eq(phase_at(&ph, 29999999999LL), 0);
    cr_expect_eq(phase_at(&ph, 30000000000LL), 1);
    cr_expect_eq(phase_at(&ph, 99000000000LL), 2);
    ms_err_quiet(1);
    cr_expect_eq(phase_parse("a.json", NULL, "f.ini:3", &ph), MS_ERR);
    cr_expect(strstr(ms_err_last(), "f.ini:3: phase 'a.json' has no duration"), "%s",
              ms_err_last());
    cr_expect_eq(phase_parse("a.json:30", NULL, "w", &ph), MS_ERR);
    cr_expect(strstr(ms_err_last(), "duration '30'"), "%s", ms_err_last());
    cr_expect_eq(phase_parse("a.json:-1s", NULL, "w", &ph), MS_ERR);
    cr_expect_eq(phase_parse("a.json:0s", NULL, "w", &ph), MS_ERR);
    cr_expect_eq(phase_parse(" , ", NULL, "w", &ph), MS_ERR);
    cr_expect(strstr(ms_err_last(), "phases is empty"), "%s", ms_err_last());
    ms_err_quiet(0);
}

/* Per step: its start and the PAR of layer 0 (max / mean device load). */
static int steps_par(const char *db, int64_t *start, double *par, int max) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(h, "SELECT s.start_ns, l.max_load / l.mean_load FROM steps s "
                                       "JOIN layer_steps l USING (run_id, step) WHERE l.layer = 0 "
                                       "ORDER BY s.step", -1, &q, NULL), SQLITE_OK);
    int n = 0;
    while (sqlite3_step(q) == SQLITE_ROW && n < max) {
        start[n] = sqlite3_column_int64(q, 0);
        par[n++] = sqlite3_column_double(q, 1);
    }
    sqlite3_finalize(q);
    sqlite3_close(h);
    return n;
}

/* Every step before 30 ms and from 70 ms on replays hot (PAR about 4: all
 * load on two of 8 devices), every step starting in [30, 70) ms flat. */
static void check_switches(const char *db) {
    int64_t start[4096];
    double par[4096];
    int n = steps_par(db, start, par, 4096), before = 0, mid = 0, after = 0;
    cr_assert_gt(n, 3);
    for (int i = 0; i < n; i++) {
        if (start[i] < 30000000 || start[i] >= 70000000) {
            cr_expect_gt(par[i], 3.5, "step %d at %lld ns: PAR %g", i, (long long)start[i],
                         par[i]);
            if (start[i] < 30000000) before++;
            else after++;
        } else {
            cr_expect_lt(par[i], 2.0, "step %d at %lld ns: PAR %g", i, (long long)start[i],
                         par[i]);
            mid++;
        }
    }
    cr_expect(before && mid && after, "steps before %d, in the flat phase %d, after %d", before,
              mid, after);
}

static int compare(const char *cfg, const char *db) {
    char *argv[] = {"compare", (char *)cfg, "--db", (char *)db, NULL};
    FILE *keep = stdout;
    stdout = fopen("/dev/null", "w");
    int rc = cmd_compare(4, argv);
    fclose(stdout);
    stdout = keep;
    return rc;
}

Test(phase, fixed_batch_switches_at_the_configured_times, .init = setup, .fini = teardown) {
    write_trace("hot.npy", 1);
    write_trace("flat.npy", 0);
    char db[128];
    snprintf(db, sizeof db, "%s/f.db", dir);
    cr_assert_eq(compare(write_cfg(""), db), 0, "%s", ms_err_last());
    check_switches(db);
}

Test(phase, serving_switches_at_the_configured_times, .init = setup, .fini = teardown) {
    write_trace("hot.npy", 1);
    write_trace("flat.npy", 0);
    char db[128];
    snprintf(db, sizeof db, "%s/s.db", dir);
    cr_assert_eq(compare(write_cfg("[serving]\ninstances = decode\narrival = closed\n"
                                   "concurrency = 512\nrequests = 512\nprompt = fixed\n"
                                   "prompt_mean = 16\noutput = fixed\noutput_mean = 40\n"
                                   "kv_cache_gb = 1\n"), db), 0, "%s", ms_err_last());
    check_switches(db);
}

Test(phase, config_errors, .init = setup, .fini = teardown) {
    write_trace("hot.npy", 1);
    char db[128];
    snprintf(db, sizeof db, "%s/e.db", dir);
    cr_expect_neq(compare(write_cfg("[workload]\ntrace = hot.npy\n"), db), 0);
    cr_expect(strstr(ms_err_last(), "both trace and phases"), "%s", ms_err_last());
    /* flat.npy does not exist */
    cr_expect_neq(compare(write_cfg(""), db), 0);
    cr_expect(strstr(ms_err_last(), "flat.npy"), "%s", ms_err_last());
    cr_expect_neq(access(db, F_OK), 0);
}
