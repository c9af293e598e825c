/* Tests of the serving simulation: request streams, weight migration, the
 * serving loop's conservation laws and Little's law, and a hot-expert shift
 * that static placement suffers and a re-planning strategy recovers from.
 *
 * The runs use a tiny MoE model and a slow HBM so steps take milliseconds
 * and a few seconds of serving simulate in well under a second. */
#include <criterion/criterion.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "migr.h"
#include "place.h"
#include "replay.h"
#include "req.h"
#include "run.h"
#include "serve.h"
#include "store.h"
#include "trace.h"
#include "util.h"

/* 2 MoE layers of 16 experts, top-2; one expert is 3 x 2048 x 1024 x 2 bytes. */
static const moe_model_t TINY = {
    .name = "tiny", .n_layers = 2, .n_dense = 0, .hidden = 2048, .moe_inter = 1024,
    .dense_inter = 0, .n_experts = 16, .top_k = 2, .n_shared = 0, .n_groups = 1,
    .topk_groups = 1, .scoring = MOE_SOFTMAX, .routed_scale = 1, .weight_bytes = 2,
    .dispatch_bytes = 2, .combine_bytes = 2};

/* The config head shared by every run: 2 nodes x 2 devices for decode and
 * for prefill, 4 redundant slots, HBM slowed so a step takes milliseconds. */
#define HEAD                                                                  \
    "[experiment]\nname = t\nseed = 7\n"                                      \
    "[cluster]\nhardware = H800\nnodes = 2\ndevices_per_node = 2\n"           \
    "[hardware]\nhbm_bw = 2e10\n"                                             \
    "[workload]\ntrace = unused.json\n"                                       \
    "[placement]\nstrategies = static\nredundant = 4\n"                       \
    "[serving]\nprefill_nodes = 2\nprefill_devices_per_node = 2\n"            \
    "kv_bytes_per_token = 1000\nkv_cache_gb = 1\n"

static trace_t *make_trace(int n_steps) {
    trace_t *t = ms_calloc(1, sizeof *t);
    t->path = ms_strdup("synthetic");
    t->format = "synthetic";
    t->kind = TRACE_COUNTS;
    t->n_layers = TINY.n_layers;
    t->n_experts = TINY.n_experts;
    t->n_steps = n_steps;
    t->has_steps = n_steps > 1;
    t->counts = ms_calloc((size_t)n_steps * t->n_layers * t->n_experts, sizeof *t->counts);
    return t;
}

/* Skewed but stable routing: expert e weighs 1 + e. */
static trace_t *plain_trace(void) {
    trace_t *t = make_trace(1);
    for (int l = 0; l < t->n_layers; l++)
        for (int e = 0; e < t->n_experts; e++) t->counts[l * t->n_experts + e] = 1 + e;
    return t;
}

static void load(const char *ini, cfg_t **cfg, run_spec_t *sp) {
    cr_assert_eq(cfg_parse_text(ini, "test.ini", cfg), MS_OK, "%s", ms_err_last());
    cr_assert_eq(run_spec_load(*cfg, sp), MS_OK, "%s", ms_err_last());
    sp->model = TINY; /* then re-read [serving] against the tiny model */
    cr_assert_eq(serve_spec_load(*cfg, &sp->cluster, &sp->model, sp->redundant, &sp->serve), MS_OK, "%s", ms_err_last());
}

static double q1(store_t *st, const char *sql, int64_t run) {
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(store_db(st), sql, -1, &q, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(store_db(st)));
    if (strchr(sql, '?')) sqlite3_bind_int64(q, 1, run);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW, "%s", sql);
    double v = sqlite3_column_double(q, 0);
    sqlite3_finalize(q);
    return v;
}

static double metric(store_t *st, int64_t run, const char *name) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT value FROM summary WHERE run_id = ? AND metric = '%s'", name);
    return q1(st, sql, run);
}

/* Runs ini with strategy ops on trace t; returns the run id. */
static int64_t serve(const char *ini, const place_ops_t *ops, const trace_t *t, store_t *st,
                     metrics_run_t *sum) {
    cfg_t *cfg;
    run_spec_t sp;
    load(ini, &cfg, &sp);
    metrics_run_t local;
    if (!sum) sum = &local;
    cr_assert_eq(serve_one(&sp, ops, t, st, sum), MS_OK, "%s", ms_err_last());
    cfg_free(cfg);
    return sum->run_id;
}

static store_t *mem_store(void) {
    store_t *st;
    cr_assert_eq(store_open(":memory:", &st), MS_OK);
    return st;
}

/* ---- request streams ---- */

static double cv_of(const double *v, int n, double *mean) {
    double m = 0, s = 0;
    for (int i = 0; i < n; i++) m += v[i] / n;
    for (int i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m) / (n - 1);
    *mean = m;
    return sqrt(s) / m;
}

Test(req, poisson_and_gamma_gaps_have_their_rate_and_cv) {
    for (int g = 0; g < 2; g++) {
        req_spec_t sp = {.arrival = g ? REQ_GAMMA : REQ_POISSON, .rate = 100, .cv = 3,
                         .requests = 40000, .prompt = {REQ_FIXED, 100, 1, 1, 1000},
                         .output = {REQ_FIXED, 10, 1, 1, 1000}};
        req_list_t l;
        cr_assert_eq(req_build(&sp, 1, &l), MS_OK);
        cr_assert_eq(l.n, 40000);
        double *gap = ms_malloc((size_t)l.n * sizeof *gap), mean;
        for (int64_t i = 0; i < l.n; i++)
            gap[i] = (double)(l.r[i].arrival_ns - (i ? l.r[i - 1].arrival_ns : 0)) / 1e9;
        double cv = cv_of(gap, (int)l.n, &mean);
        cr_assert_float_eq(mean, 0.01, 0.0005, "mean gap %g", mean);
        cr_assert_float_eq(cv, g ? 3.0 : 1.0, g ? 0.3 : 0.05, "cv %g", cv);
        cr_assert_eq(l.r[5].prompt_tokens, 100);
        free(gap);
        req_list_free(&l);
    }
}

Test(req, lognormal_and_uniform_lengths) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    req_dist_t ln = {REQ_LOGNORMAL, 2000, 0.8, 1, 10000000}, un = {REQ_UNIFORM, 0, 0, 10, 20};
    int n = 50000;
    double *v = ms_malloc((size_t)n * sizeof *v), mean;
    for (int i = 0; i < n; i++) v[i] = req_draw_len(&ln, r);
    double cv = cv_of(v, n, &mean);
    cr_assert_float_eq(mean, 2000, 60, "lognormal mean %g", mean);
    cr_assert_float_eq(cv, 0.8, 0.06, "lognormal cv %g", cv);
    int lo = 99, hi = 0;
    for (int i = 0; i < n; i++) {
        int x = req_draw_len(&un, r);
        lo = ms_imin(lo, x);
        hi = ms_imax(hi, x);
    }
    cr_assert(lo == 10 && hi == 20, "uniform range %d..%d", lo, hi);
    free(v);
    gsl_rng_free(r);
}

static char *write_tmp(const char *text) {
    char *path = ms_strdup("/tmp/moesim_req_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

Test(req, csv_splitwise_and_azure_columns) {
    char *a = write_tmp("request_id,request_type,application_id,arrival_timestamp,batch_size,"
                        "prompt_size,token_size\n0,2,0,10.5,1,100,7\n1,2,0,10.75,1,200,9\r\n\n"
                        "2,2,0,12.5,1,300,1\n");
    req_list_t l;
    cr_assert_eq(req_read_csv(a, 0, 0, &l), MS_OK, "%s", ms_err_last());
    cr_assert_eq(l.n, 3);
    cr_assert_eq(l.r[0].arrival_ns, 0);
    cr_assert_eq(l.r[1].arrival_ns, 250000000);
    cr_assert_eq(l.r[2].prompt_tokens, 300);
    cr_assert_eq(l.r[1].output_tokens, 9);
    req_list_free(&l);
    cr_assert_eq(req_read_csv(a, 2, 0, &l), MS_OK);
    cr_assert_eq(l.n, 2);
    req_list_free(&l);
    cr_assert_eq(req_read_csv(a, 0, 1.0, &l), MS_OK);
    cr_assert_eq(l.n, 2, "rows before 1 s: %lld", (long long)l.n);
    req_list_free(&l);
    char *z = write_tmp("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                        "2023-11-16 18:15:46.6805900,374,44\n"
                        "2023-11-16 18:15:50.9951690,396,109\n"
                        "2023-11-17 00:00:00.0,1,1\n");
    cr_assert_eq(req_read_csv(z, 0, 0, &l), MS_OK, "%s", ms_err_last());
    cr_assert_eq(l.n, 3);
    cr_assert_eq(l.r[1].arrival_ns, 4314579000);
    cr_assert_eq(l.r[2].arrival_ns, llround((5 * 3600 + 44 * 60 + 13.31941) * 1e9));
    cr_assert_eq(l.r[0].prompt_tokens, 374);
    req_list_free(&l);
    unlink(a);
    unlink(z);
    free(a);
    free(z);
}

Test(req, csv_errors_name_file_and_line) {
    ms_err_quiet(1);
    struct { const char *text, *want; } bad[] = {
        {"arrival_timestamp,prompt_size\n1,2\n", "lacks a output column"},
        {"arrival_timestamp,prompt_size,token_size\n1,2,3\n0.5,2,3\n", ":3: arrival"},
        {"arrival_timestamp,prompt_size,token_size\n1,2,3\n2,x,3\n", ":3: prompt tokens 'x'"},
        {"arrival_timestamp,prompt_size,token_size\n1,2,0\n", ":2: output tokens '0'"},
        {"arrival_timestamp,prompt_size,token_size\n1,2\n", ":2: 2 fields"},
        {"arrival_timestamp,prompt_size,token_size\nyesterday,2,3\n", ":2: arrival 'yesterday'"},
        {"", "empty request trace"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *p = write_tmp(bad[i].text);
        req_list_t l;
        cr_assert_eq(req_read_csv(p, 0, 0, &l), MS_ERR, "case %zu", i);
        cr_assert(strstr(ms_err_last(), p), "case %zu names no file: %s", i, ms_err_last());
        cr_assert(strstr(ms_err_last(), bad[i].want), "case %zu: %s", i, ms_err_last());
        unlink(p);
        free(p);
    }
}

Test(req, config_errors_name_the_key) {
    ms_err_quiet(1);
    struct { const char *ini, *want; } bad[] = {
        {HEAD "arrival = sometimes\nrequests = 5\n", "test.ini:20: [serving] arrival"},
        {HEAD "arrival = closed\n", "needs requests"},
        {HEAD "arrival = poisson\n", "give requests = N or duration_s"},
        {HEAD "arrival = trace\n", "needs request_trace"},
        {HEAD "requests = 5\nprompt = pareto\n", "prompt = 'pareto'"},
        {HEAD "requests = 5\nrebalance = sometimes\n", "rebalance = 'sometimes'"},
        {HEAD "requests = 5\nprefill_redundant = 1\n", "do not divide"},
        {HEAD "requests = 5\ninstances = all\n", "instances = 'all'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cfg_t *cfg;
        run_spec_t sp;
        cr_assert_eq(cfg_parse_text(bad[i].ini, "test.ini", &cfg), MS_OK);
        int rc = run_spec_load(cfg, &sp);
        if (rc == MS_OK) {
            sp.model = TINY;
            rc = serve_spec_load(cfg, &sp.cluster, &sp.model, sp.redundant, &sp.serve);
        }
        cr_assert_eq(rc, MS_ERR, "case %zu", i);
        cr_assert(strstr(ms_err_last(), bad[i].want), "case %zu: %s", i, ms_err_last());
        cfg_free(cfg);
    }
}

/* ---- weight migration ---- */

static place_layout_t *layout(int D, int spd, int E, const int *se) {
    place_layout_t *lo = place_layout_new(2, E, D, 2);
    for (int l = 0; l < 2; l++) cr_assert_eq(place_layer_set(lo, l, spd, se), MS_OK);
    return lo;
}

static cluster_t small_cluster(void) {
    cluster_t c = {.n_nodes = 2, .devices_per_node = 2, .n_devices = 4};
    c.hw = (hw_t){.name = "x", .scaleup_bw = 100e9, .nic_bw = 10e9, .eff_scaleup = 1,
                  .eff_nic = 1, .scaleup_lat_ns = 1000, .nic_lat_ns = 2000};
    return c;
}

/* Old: device d holds 2d, 2d+1. New, layer 0 only: devices 0 and 3 swap
 * their experts (two NIC copies each way), device 1 swaps its two slots
 * (free). Layer 1 is unchanged. */
static const int OLD[8] = {0, 1, 2, 3, 4, 5, 6, 7};
static const int NEW0[8] = {6, 7, 3, 2, 4, 5, 0, 1};

Test(migr, pipelined_one_copy_per_device_per_batch_and_layers_switch_on_arrival) {
    cluster_t c = small_cluster();
    migr_state_t *m = migr_new(MIGR_PIPELINED, &c, 1e9, 0, layout(4, 2, 8, OLD));
    place_layout_t *next = layout(4, 2, 8, OLD);
    cr_assert_eq(place_layer_set(next, 0, 2, NEW0), MS_OK);
    migr_plan_info_t info;
    migr_plan(m, next, 1000, &info);
    cr_assert_eq(info.layers_changed, 1);
    cr_assert_eq(info.copies, 4);
    cr_assert_float_eq(info.bytes, 4e9, 1);
    cr_assert_eq(info.pause_ns, 0);
    int batches = 0;
    int64_t t = 1000;
    while (migr_busy(m)) {
        /* layer 0 keeps its old layout until its last copy has arrived */
        cr_assert_eq(m->live->layer[0].slot_expert[0], 0);
        const double *bg = migr_batch_begin(m, t);
        cr_assert_not_null(bg);
        cr_assert_leq(m->n_flight, 2, "devices 0 and 3 each take one copy per batch");
        double sent = 0;
        for (int w = 0; w < 4; w++)
            for (int d = 0; d < 4; d++) sent += bg[w * 4 + d];
        cr_assert_float_eq(sent, 2 * 1e9 * m->n_flight, 1, "each copy leaves and lands once");
        cr_assert_float_eq(bg[MIGR_OUT_NIC * 4 + 0] + bg[MIGR_OUT_NIC * 4 + 3], 1e9 * m->n_flight,
                           1);
        migr_batch_end(m, t, t + 1000000);
        t += 1000000;
        batches++;
        cr_assert_leq(batches, 10);
    }
    cr_assert_eq(batches, 2);
    cr_assert_eq(memcmp(m->live->layer[0].slot_expert, NEW0, sizeof NEW0), 0);
    int n;
    const migr_t *log = migr_take_log(m, &n);
    cr_assert_eq(n, 4);
    for (int i = 0; i < n; i++) {
        cr_assert(log[i].src == 0 || log[i].src == 3);
        cr_assert_neq(cluster_node(&c, log[i].src), cluster_node(&c, log[i].dst));
        /* 1 GB over a 10 GB/s NIC is 100 ms, longer than the 1 ms batch */
        cr_assert_eq(log[i].done_ns - log[i].start_ns, 2000 + 100000000);
    }
    migr_free(m);
}

Test(migr, blocking_pause_is_the_busiest_port) {
    cluster_t c = small_cluster();
    migr_state_t *m = migr_new(MIGR_BLOCKING, &c, 1e9, 5000, layout(4, 2, 8, OLD));
    place_layout_t *next = layout(4, 2, 8, OLD);
    cr_assert_eq(place_layer_set(next, 0, 2, NEW0), MS_OK);
    migr_plan_info_t info;
    migr_plan(m, next, 0, &info);
    /* devices 0 and 3 each send and receive 2 GB over the NIC: 200 ms */
    cr_assert_eq(info.pause_ns, 2000 + 200000000 + 5000);
    cr_assert(migr_busy(m));
    migr_finish(m);
    cr_assert(!migr_busy(m));
    cr_assert_eq(memcmp(m->live->layer[0].slot_expert, NEW0, sizeof NEW0), 0);
    migr_free(m);
}

Test(migr, slot_moves_are_free_and_a_second_copy_on_a_holder_is_local) {
    cluster_t c = small_cluster();
    /* 3 slots per device: device d holds 2d, 2d+1 and a second copy of 2d */
    static const int O3[12] = {0, 1, 0, 2, 3, 2, 4, 5, 4, 6, 7, 6};
    static const int SW[12] = {1, 0, 0, 2, 3, 2, 4, 5, 4, 6, 7, 6}; /* slots swapped */
    static const int DUP[12] = {1, 1, 0, 2, 3, 2, 4, 5, 4, 6, 7, 6}; /* 1 doubled on device 0 */
    place_layout_t *o = place_layout_new(2, 8, 4, 2);
    for (int l = 0; l < 2; l++) cr_assert_eq(place_layer_set(o, l, 3, O3), MS_OK);
    migr_state_t *m = migr_new(MIGR_PIPELINED, &c, 1e9, 0, o);
    place_layout_t *next = place_layout_copy(o);
    cr_assert_eq(place_layer_set(next, 0, 3, SW), MS_OK);
    cr_assert_eq(place_layer_set(next, 1, 3, DUP), MS_OK);
    migr_plan_info_t info;
    migr_plan(m, next, 500, &info);
    cr_assert_eq(info.layers_changed, 2);
    cr_assert_eq(info.copies, 1, "moving a replica between slots of a device is free");
    cr_assert(!migr_busy(m), "layers needing no link switch at once");
    cr_assert_eq(m->live->layer[0].slot_expert[0], 1);
    cr_assert_eq(m->live->layer[1].slot_expert[1], 1);
    int n;
    const migr_t *log = migr_take_log(m, &n);
    cr_assert_eq(n, 1);
    cr_assert(log[0].src == 0 && log[0].dst == 0 && log[0].layer == 1 && log[0].expert == 1);
    cr_assert(log[0].start_ns == 500 && log[0].done_ns == 500);
    migr_free(m);
}

Test(migr, weight_copies_slow_the_step_they_ride) {
    /* a step of 2 nodes x 2 devices, every token leaving its node */
    cluster_t c = small_cluster();
    c.hw.flops_bf16 = c.hw.flops_fp8 = 1e15;
    c.hw.hbm_bw = 1e12;
    c.hw.eff_flops = c.hw.eff_hbm = 1;
    step_sim_t *sim = step_new(&c, &TINY);
    trace_t *t = plain_trace();
    replay_t *rp;
    cr_assert_eq(replay_new(t, TINY.top_k, 4, 16, 1, &rp), MS_OK);
    place_layout_t *lo = layout(4, 4, 16, (const int[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                       12, 13, 14, 15});
    step_in_t in = {.start_ns = 0, .layout = lo, .route = replay_step(rp, 0)};
    step_result_t r;
    cr_assert_eq(step_run(sim, &in, &r), MS_OK);
    int64_t quiet = r.end_ns;
    double bg[16] = {0};
    for (int d = 0; d < 4; d++) bg[MIGR_OUT_NIC * 4 + d] = bg[MIGR_IN_NIC * 4 + d] = 100e6;
    in.bg_bytes = bg;
    cr_assert_eq(step_run(sim, &in, &r), MS_OK);
    cr_assert_gt(r.end_ns, quiet, "copies on the NICs delay dispatch (%lld vs %lld ns)",
                 (long long)r.end_ns, (long long)quiet);
    place_layout_free(lo);
    replay_free(rp);
    trace_free(t);
    step_free(sim);
}

/* ---- the serving loop ---- */

#define CONSERVE                                                                  \
    HEAD "arrival = poisson\nrate = 40\nduration_s = 3\n"                         \
         "prompt = lognormal\nprompt_mean = 600\nprompt_cv = 1\nprompt_max = 5000\n" \
         "output = uniform\noutput_min = 1\noutput_max = 60\n"                    \
         "prefill_tokens_per_device = 1024\n"

static void conservation(const char *ini, double hit, int decode_only) {
    store_t *st = mem_store();
    trace_t *t = plain_trace();
    int64_t run = serve(ini, place_find("static"), t, st, NULL);
    double n = q1(st, "SELECT count(*) FROM requests WHERE run_id = ?", run);
    cr_assert_gt(n, 50);
    cr_assert_eq(n, metric(st, run, "requests"));
    cr_assert_eq(q1(st, "SELECT count(*) FROM requests WHERE run_id = ? AND NOT (arrival_ns >= 0 "
                        "AND arrival_ns <= first_token_ns AND first_token_ns <= done_ns)", run),
                 0, "every request arrives, gets a first token, and finishes, in that order");
    double in = q1(st, "SELECT sum(prompt_tokens) FROM requests WHERE run_id = ?", run);
    double out = q1(st, "SELECT sum(output_tokens) FROM requests WHERE run_id = ?", run);
    cr_assert_eq(metric(st, run, "input_tokens"), in);
    cr_assert_eq(metric(st, run, "output_tokens"), out);
    /* decode steps make every token but the first, which prefill makes */
    double decoded = decode_only ? out : out - n;
    cr_assert_eq(q1(st, "SELECT sum(tokens) FROM steps WHERE run_id = ?", run), decoded);
    cr_assert_eq(metric(st, run, "decode_tokens"), decoded);
    /* locality counts every decoded token once per layer, by nodes and by devices */
    cr_assert_eq(q1(st, "SELECT sum(tokens) FROM locality_hist WHERE run_id = ? AND layer = 0 "
                        "AND kind = 'nodes'", run), decoded);
    cr_assert_eq(q1(st, "SELECT sum(tokens) FROM locality_hist WHERE run_id = ? AND layer = 0 "
                        "AND kind = 'devices'", run), decoded);
    cr_assert(metric(st, run, "nodes_per_token_mean") >= 1);
    if (!decode_only) {
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT sum(prompt_tokens - CAST(prompt_tokens * %g AS INTEGER)) "
                                  "FROM requests WHERE run_id = ?", hit);
        cr_assert_eq(metric(st, run, "prefill_computed_tokens"), q1(st, sql, run));
    }
    trace_free(t);
    store_close(st);
}

Test(serve, conservation_chunked_prefill) { conservation(CONSERVE, 0, 0); }
Test(serve, conservation_whole_prompts_with_prefix_hits) {
    conservation(CONSERVE "chunked_prefill = false\nprefix_hit_rate = 0.5\n", 0.5, 0);
}
Test(serve, conservation_decode_only) { conservation(CONSERVE "instances = decode\n", 0, 1); }

Test(serve, request_trace_csv_drives_the_arrivals) {
    char csv[4096] = "arrival_timestamp,prompt_size,token_size\n", *p = csv + strlen(csv);
    for (int i = 0; i < 30; i++)
        p += sprintf(p, "%.3f,%d,%d\n", 100 + 0.05 * i, 50 + 10 * i, 1 + i % 7);
    char *path = write_tmp(csv), ini[2048];
    snprintf(ini, sizeof ini, HEAD "arrival = trace\nrequest_trace = %s\n", path);
    store_t *st = mem_store();
    trace_t *t = plain_trace();
    int64_t run = serve(ini, place_find("static"), t, st, NULL);
    cr_assert_eq(q1(st, "SELECT count(*) FROM requests WHERE run_id = ?", run), 30);
    cr_assert_eq(q1(st, "SELECT max(arrival_ns) FROM requests WHERE run_id = ?", run), 1450000000);
    cr_assert_eq(q1(st, "SELECT sum(prompt_tokens) FROM requests WHERE run_id = ?", run),
                 30 * 50 + 10 * 29 * 30 / 2);
    cr_assert_eq(q1(st, "SELECT count(*) FROM requests WHERE run_id = ? AND output_tokens = 1 "
                        "AND first_token_ns != done_ns", run), 0,
                 "a one-token request ends at prefill");
    unlink(path);
    free(path);
    trace_free(t);
    store_close(st);
}

Test(serve, prefill_only_finishes_at_the_first_token) {
    store_t *st = mem_store();
    trace_t *t = plain_trace();
    int64_t run = serve(CONSERVE "instances = prefill\n", place_find("static"), t, st, NULL);
    cr_assert_eq(q1(st, "SELECT count(*) FROM requests WHERE run_id = ? AND first_token_ns != "
                        "done_ns", run), 0);
    cr_assert_eq(metric(st, run, "output_tokens"), metric(st, run, "requests"));
    cr_assert_gt(metric(st, run, "input_tokens_per_s_per_node"), 0);
    trace_free(t);
    store_close(st);
}

Test(serve, littles_law_in_steady_state) {
    store_t *st = mem_store();
    trace_t *t = plain_trace();
    metrics_run_t sum;
    int64_t run = serve(HEAD "arrival = poisson\nrate = 30\nduration_s = 40\nwarmup_s = 5\n"
                             "prompt = lognormal\nprompt_mean = 400\nprompt_cv = 0.5\n"
                             "output = uniform\noutput_min = 10\noutput_max = 50\n",
                        place_find("static"), t, st, &sum);
    double L = metric(st, run, "in_system_mean"), W = metric(st, run, "e2e_mean");
    cr_log_info("Little: L %.3f, 30 x W %.3f, measured lambda W %.3f", L, 30 * W, metrics_get(&sum.m, METRIC_LAMBDA_W, -1));
    cr_assert_gt(L, 3, "a loaded system (L = %g)", L);
    /* L = lambda W: with the configured rate (sampling noise of ~1000
     * Poisson arrivals) and with the measured one (edge effects only) */
    cr_assert_float_eq(L, 30 * W, 0.1 * L, "L %g vs lambda W %g", L, 30 * W);
    cr_assert_float_eq(L, metrics_get(&sum.m, METRIC_LAMBDA_W, -1), 0.03 * L, "L %g vs measured lambda W %g", L, metrics_get(&sum.m, METRIC_LAMBDA_W, -1));
    trace_free(t);
    store_close(st);
}

Test(serve, kv_capacity_and_batch_limit_bound_the_batch) {
    store_t *st = mem_store();
    trace_t *t = plain_trace();
    /* 2,000 bytes of KV per device at 10 bytes a token: 200 tokens, so at
     * most 3 sequences of 60 tokens run on a device */
#define KVINI(out)                                                                      \
    "[experiment]\nname = t\nseed = 7\n[cluster]\nhardware = H800\nnodes = 2\n"            \
    "devices_per_node = 2\n[hardware]\nhbm_bw = 2e10\n[workload]\ntrace = unused.json\n"    \
    "[placement]\nredundant = 4\n[serving]\ninstances = decode\nkv_bytes_per_token = 10\n"  \
    "kv_cache_gb = 0.000002\narrival = closed\nconcurrency = 40\nrequests = 120\n"         \
    "prompt = fixed\nprompt_mean = 40\noutput = fixed\noutput_mean = " out "\n"
    int64_t run = serve(KVINI("20"), place_find("static"), t, st, NULL);
    cr_assert_eq(q1(st, "SELECT max(tokens) FROM steps WHERE run_id = ?", run), 12);
    cr_assert_eq(q1(st, "SELECT count(*) FROM requests WHERE run_id = ?", run), 120);
    run = serve(KVINI("20") "max_batch_per_device = 2\n", place_find("static"), t, st, NULL);
    cr_assert_eq(q1(st, "SELECT max(tokens) FROM steps WHERE run_id = ?", run), 8);
    /* a request larger than a device's KV cache is an error, not a hang */
    ms_err_quiet(1);
    cfg_t *cfg;
    run_spec_t sp;
    load(KVINI("300"), &cfg, &sp);
    metrics_run_t sum;
    cr_assert_eq(serve_one(&sp, place_find("static"), t, st, &sum), MS_ERR);
    cr_assert(strstr(ms_err_last(), "tokens of KV cache"), "%s", ms_err_last());
    cr_assert_eq(q1(st, "SELECT count(*) FROM runs", 0), 2, "the failed run left no row");
    cfg_free(cfg);
    trace_free(t);
    store_close(st);
}

Test(serve, chunked_prefill_splits_long_prompts) {
    store_t *st = mem_store();
    trace_t *t = plain_trace();
    const char *base = HEAD "arrival = closed\nconcurrency = 1\nrequests = 3\nprompt = fixed\n"
                            "prompt_mean = 3000\noutput = fixed\noutput_mean = 2\n"
                            "prefill_tokens_per_device = 1000\n";
    char buf[1024];
    int64_t run = serve(base, place_find("static"), t, st, NULL);
    cr_assert_eq(metric(st, run, "prefill_steps"), 9, "3 prompts x 3 chunks");
    snprintf(buf, sizeof buf, "%s%s", base, "chunked_prefill = false\n");
    run = serve(buf, place_find("static"), t, st, NULL);
    cr_assert_eq(metric(st, run, "prefill_steps"), 3, "an oversized prompt runs whole, alone");
    trace_free(t);
    store_close(st);
}

Test(serve, same_config_same_results) {
    trace_t *t = plain_trace();
    double v[2][4];
    for (int k = 0; k < 2; k++) {
        store_t *st = mem_store();
        metrics_run_t s;
        int64_t run = serve(CONSERVE, place_find("static"), t, st, &s);
        v[k][0] = metrics_get(&s.m, METRIC_TPOT_P99, -1);
        v[k][1] = metrics_get(&s.m, METRIC_TTFT_P50, -1);
        v[k][2] = q1(st, "SELECT sum(done_ns) FROM requests WHERE run_id = ?", run);
        v[k][3] = q1(st, "SELECT sum(max_load) FROM layer_steps WHERE run_id = ?", run);
        store_close(st);
    }
    cr_assert_eq(memcmp(v[0], v[1], sizeof v[0]), 0);
    trace_free(t);
}

/* Runs ini in step mode `mode`; returns the run id. */
static int64_t serve_mode(const char *ini, enum step_mode mode, const trace_t *t, store_t *st) {
    cfg_t *cfg;
    run_spec_t sp;
    load(ini, &cfg, &sp);
    sp.cluster.mode = sp.serve.prefill.mode = mode;
    metrics_run_t sum;
    cr_assert_eq(serve_one(&sp, place_find("static"), t, st, &sum), MS_OK, "%s", ms_err_last());
    cfg_free(cfg);
    return sum.run_id;
}

/* [serving] routing: the flow mode routes every token unless asked for
 * counts, and then draws the analytic mode's counts (the same replay
 * stream): the first step's loads are the same, and no token is followed
 * (no locality rows). */
Test(serve, routing_key_picks_counts_or_tokens_in_either_mode) {
    trace_t *t = plain_trace();
    const char *sql_load = "SELECT sum(max_load) * 1000 + sum(mean_load) FROM layer_steps "
                           "WHERE run_id = ? AND step = 0";
    const char *sql_loc = "SELECT count(*) FROM locality_hist WHERE run_id = ?";
    store_t *st = mem_store();
    int64_t an = serve_mode(CONSERVE "instances = decode\n", STEP_ANALYTIC, t, st);
    int64_t fc = serve_mode(CONSERVE "instances = decode\nrouting = count\n", STEP_FLOW, t, st);
    int64_t ft = serve_mode(CONSERVE "instances = decode\n", STEP_FLOW, t, st);
    int64_t at = serve_mode(CONSERVE "instances = decode\nrouting = token\n", STEP_ANALYTIC, t, st);
    double la = q1(st, sql_load, an), lc = q1(st, sql_load, fc), lt = q1(st, sql_load, ft);
    cr_assert_gt(la, 0);
    cr_assert_eq(la, lc, "flow with count routing draws the analytic mode's counts");
    cr_assert_neq(la, lt, "flow mode by default routes tokens");
    cr_assert_eq(q1(st, sql_loc, an), 0);
    cr_assert_eq(q1(st, sql_loc, fc), 0, "count routing follows no token");
    cr_assert_gt(q1(st, sql_loc, ft), 0);
    cr_assert_gt(q1(st, sql_loc, at), 0, "routing = token routes tokens in the analytic mode too");
    store_close(st);
    trace_free(t);
}

/* ---- multi-token prediction ---- */

/* Runs ini with the tiny model carrying one MTP module, depth accepts[]
 * rates (depth = n); n = 0 runs without MTP. */
static int64_t serve_mtp(const char *ini, const double *acc, int n, store_t *st,
                         metrics_run_t *sum) {
    cfg_t *cfg;
    run_spec_t sp;
    load(ini, &cfg, &sp);
    sp.model.mtp_modules = 1;
    sp.model.mtp_depth = n;
    double run = 1;
    sp.mtp_tokens = 1;
    for (int i = 0; i < n; i++) {
        sp.mtp_accept[i] = acc[i];
        run *= acc[i];
        sp.mtp_tokens += run;
    }
    trace_t *t = plain_trace();
    cr_assert_eq(serve_one(&sp, place_find("static"), t, st, sum), MS_OK, "%s", ms_err_last());
    trace_free(t);
    cfg_free(cfg);
    return sum->run_id;
}

/* Eight sequences of 21 output tokens, all in one decode batch: a step
 * makes one token a sequence without drafts or with every draft rejected
 * (21 steps), two when every draft is accepted (11 steps, the last making
 * the one token still owed). */
#define MTP_BATCH                                                                     \
    HEAD "instances = decode\narrival = closed\nconcurrency = 8\nrequests = 8\n"     \
         "prompt = fixed\nprompt_mean = 40\noutput = fixed\noutput_mean = 21\n"
Test(serve, mtp_steps_shrink_by_accepted_drafts) {
    store_t *st = mem_store();
    metrics_run_t sum;
    double none = 0, all = 1;
    int64_t r0 = serve_mtp(MTP_BATCH, NULL, 0, st, &sum);
    int64_t r1 = serve_mtp(MTP_BATCH, &none, 1, st, &sum);
    int64_t r2 = serve_mtp(MTP_BATCH, &all, 1, st, &sum);
    cr_assert_eq(metric(st, r0, "steps"), 21);
    cr_assert_eq(metric(st, r1, "steps"), 21);
    cr_assert_eq(metric(st, r2, "steps"), 11);
    for (int64_t r = r0; r <= r2; r++) {
        cr_assert_eq(metric(st, r, "output_tokens"), 8 * 21);
        cr_assert_eq(q1(st, "SELECT sum(tokens) FROM steps WHERE run_id = ?", r), 8 * 21);
    }
    /* each step verifies 1 + depth tokens a sequence: the batch is twice as large */
    cr_assert_eq(metric(st, r1, "batch_mean"), 2 * metric(st, r0, "batch_mean"));
    cr_assert_float_eq(metric(st, r2, "tokens_per_sequence_step"), 8.0 * 21 / (8 * 11), 1e-12);
    store_close(st);
}

/* Acceptance drawn per sequence and step from the run's seeded generator:
 * no token is made or lost, whatever the draws (every request's output,
 * prefill's first token and the decode steps' tokens add up), and over
 * long outputs a sequence makes 1 + a1 + a1 a2 tokens a step. */
Test(serve, mtp_token_accounting) {
    double acc[2] = {0.85, 0.5};
    for (int depth = 1; depth <= 2; depth++) {
        store_t *st = mem_store();
        metrics_run_t sum;
        int64_t run = serve_mtp(CONSERVE, acc, depth, st, &sum);
        double n = q1(st, "SELECT count(*) FROM requests WHERE run_id = ?", run);
        double out = q1(st, "SELECT sum(output_tokens) FROM requests WHERE run_id = ?", run);
        cr_assert_gt(n, 50);
        cr_assert_eq(metric(st, run, "output_tokens"), out);
        cr_assert_eq(metric(st, run, "decode_tokens"), out - n);
        cr_assert_eq(q1(st, "SELECT sum(tokens) FROM steps WHERE run_id = ?", run), out - n);
        int64_t base = serve_mtp(CONSERVE, NULL, 0, st, &sum);
        cr_assert_lt(metric(st, run, "steps"), metric(st, base, "steps"));
        /* long outputs: the rare step capped by what a sequence still owes hardly counts */
        run = serve_mtp(HEAD "instances = decode\narrival = closed\nconcurrency = 32\n"
                             "requests = 32\nprompt = fixed\nprompt_mean = 40\noutput = fixed\n"
                             "output_mean = 400\n", acc, depth, st, &sum);
        double want = depth == 1 ? 1.85 : 1 + 0.85 + 0.85 * 0.5;
        cr_assert_eq(metric(st, run, "output_tokens"), 32 * 400);
        cr_assert(fabs(metric(st, run, "tokens_per_sequence_step") - want) < 0.02,
                  "depth %d: %.4f tokens a sequence and step, expected %.4f", depth,
                  metric(st, run, "tokens_per_sequence_step"), want);
        store_close(st);
    }
}

/* ---- a hot-expert shift ---- */

/* Phase A (trace step 0): experts 1, 5, 9, 13 are hot, one on each device
 * of the contiguous layout. Phase B (steps 1..9): 12..15 are hot, all on
 * device 3 under it. */
static trace_t *shift_trace(void) {
    trace_t *t = make_trace(10);
    for (int s = 0; s < 10; s++)
        for (int l = 0; l < t->n_layers; l++)
            for (int e = 0; e < t->n_experts; e++) {
                /* before: one hot expert on each device of the contiguous layout
                 * (slot p holds expert p mod 16, 5 slots per device); after:
                 * three of the four hot experts share device 2 */
                int hot = s == 0 ? e == 4 || e == 9 || e == 14 || e == 15 : e >= 12;
                t->counts[((size_t)s * t->n_layers + l) * t->n_experts + e] = hot ? 100 : 1;
            }
    return t;
}

/* A test-only dynamic strategy: starts contiguous, sums loads, and every
 * 40 steps re-plans from the loads it saw: extra copies to the largest
 * load per copy, then the heaviest copies first onto the lightest device
 * with a free slot and no copy of that expert. */
struct place_state {
    place_env_t env;
    double *seen; /* [L][E] */
    int steps;
};

static void dyn_pack(const place_env_t *env, const double *w, int *se) {
    int E = env->n_experts, D = env->n_devices, S = E + env->redundant, spd = S / D;
    int copies[64], used[16] = {0}, order[64], n = 0;
    double dev[16] = {0};
    for (int e = 0; e < E; e++) copies[e] = 1;
    for (int x = 0; x < env->redundant; x++) {
        int a = 0;
        for (int e = 1; e < E; e++)
            if (w[e] * copies[a] > w[a] * copies[e]) a = e;
        copies[a]++;
    }
    for (int e = 0; e < E; e++)
        for (int c = 0; c < copies[e]; c++) order[n++] = e;
    for (int i = 1; i < n; i++) /* heaviest copy first; ties: lower expert */
        for (int j = i; j > 0; j--) {
            int a = order[j - 1], b = order[j];
            if (w[b] * copies[a] > w[a] * copies[b]) {
                order[j - 1] = b;
                order[j] = a;
            } else break;
        }
    for (int i = 0; i < n; i++) {
        int e = order[i], best = -1;
        for (int d = 0; d < D; d++) {
            if (used[d] == spd) continue;
            int has = 0;
            for (int k = 0; k < used[d]; k++) has |= se[d * spd + k] == e;
            if (!has && (best < 0 || dev[d] < dev[best])) best = d;
        }
        cr_assert_geq(best, 0);
        se[best * spd + used[best]++] = e;
        dev[best] += w[e] / copies[e];
    }
}

static int dyn_init(const place_env_t *env, const double *prior, place_state_t **st,
                    place_layout_t **out) {
    const place_ops_t *stat = place_find("static");
    place_env_t base = *env; /* static reads its own [strategy.static], not [strategy.dyn] */
    base.cfg_section = NULL;
    if (stat->init(&base, prior, st, out)) return MS_ERR;
    place_state_t *s = ms_calloc(1, sizeof *s);
    s->env = *env;
    s->seen = ms_calloc((size_t)env->n_layers * env->n_experts, sizeof *s->seen);
    *st = s;
    return MS_OK;
}

static void dyn_observe(place_state_t *s, const place_obs_t *o) {
    for (int i = 0; i < s->env.n_layers * s->env.n_experts; i++) s->seen[i] += o->expert_load[i];
    s->steps++;
}

static int dyn_replan(place_state_t *s, int64_t now, const place_layout_t *cur,
                      place_layout_t **out) {
    (void)now;
    if (s->steps < 40) return 0;
    const place_env_t *env = &s->env;
    int S = env->n_experts + env->redundant, se[64];
    place_layout_t *lo = place_layout_new(env->n_layers, env->n_experts, env->n_devices,
                                          env->devices_per_node);
    for (int l = 0; l < env->n_layers; l++) {
        dyn_pack(env, s->seen + (size_t)l * env->n_experts, se);
        cr_assert_eq(place_layer_set(lo, l, S / env->n_devices, se), MS_OK);
    }
    (void)cur;
    memset(s->seen, 0, (size_t)env->n_layers * env->n_experts * sizeof *s->seen);
    s->steps = 0;
    *out = lo;
    return 1;
}

static void dyn_destroy(place_state_t *s) {
    free(s->seen);
    free(s);
}

static const place_ops_t DYN = {.version = 1, .name = "dyn", .summary = "test re-planner",
                                .algo_version = 1, .init = dyn_init, .observe = dyn_observe,
                                .replan = dyn_replan, .destroy = dyn_destroy};

/* Decode only, 64 users each asking for 100 tokens: a steady batch of 16
 * sequences per device for 600 steps; the hot set moves at step 150. */
#define SHIFT                                                                          \
    HEAD "instances = decode\narrival = closed\nconcurrency = 64\nrequests = 384\n"    \
         "prompt = fixed\nprompt_mean = 100\noutput = fixed\noutput_mean = 100\n"      \
         "trace_step_every = 150\n[placement]\nprior = none\n[serving]\n"

static double par(store_t *st, int64_t run, int from, int to) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT avg(max_load / mean_load) FROM layer_steps WHERE run_id = ? "
                              "AND step >= %d AND step < %d", from, to);
    return q1(st, sql, run);
}

Test(serve, hot_expert_shift_static_degrades_dynamic_recovers) {
    store_t *st = mem_store();
    trace_t *t = shift_trace();
    int64_t stat = serve(SHIFT, place_find("static"), t, st, NULL);
    int64_t pipe = serve(SHIFT "rebalance = pipelined\n", &DYN, t, st, NULL);
    int64_t blk =
        serve(SHIFT "rebalance = blocking\nrebalance_fixed_s = 0.01\n", &DYN, t, st, NULL);
    double before = par(st, stat, 10, 150), after = par(st, stat, 400, 600);
    cr_assert_lt(before, 1.8, "static is balanced before the shift (PAR %g)", before);
    cr_assert_gt(after, 2.5, "static degrades after it (PAR %g)", after);
    for (int k = 0; k < 2; k++) {
        int64_t run = k ? blk : pipe;
        double rec = par(st, run, 400, 600);
        cr_log_info("%s: PAR %.3f after the shift (static %.3f, before %.3f); %g copies, pause "
                    "%g s, TPOT %.3f ms", k ? "blocking" : "pipelined", rec, after, before,
                    metric(st, run, "migrations"), metric(st, run, "rebalance_pause_s"),
                    metric(st, run, "tpot_mean"));
        cr_assert_lt(rec, 1.8, "%s re-planning recovers (PAR %g, static %g)",
                     k ? "blocking" : "pipelined", rec, after);
        cr_assert_gt(q1(st, "SELECT count(*) FROM replans WHERE run_id = ? AND bytes > 0", run), 0);
        double copies = q1(st, "SELECT count(*) FROM migrations WHERE run_id = ?", run);
        cr_assert_gt(copies, 0, "the migrations are in the database");
        cr_assert_eq(metric(st, run, "migrations"), copies);
        cr_assert_eq(q1(st, "SELECT count(*) FROM migrations WHERE run_id = ? AND (done_ns < "
                            "time_ns OR src_device < 0 OR src_device > 3 OR dst_device < 0 OR "
                            "dst_device > 3 OR bytes != 12582912)", run), 0);
        cr_assert_float_eq(metric(st, run, "migrated_gb"),
                           q1(st, "SELECT sum(bytes) / 1e9 FROM migrations WHERE run_id = ?", run),
                           1e-9);
    }
    /* pipelined: one copy into and one out of a device per batch, no pause */
    cr_assert_eq(q1(st, "SELECT count(*) FROM (SELECT count(*) c FROM migrations WHERE run_id = ? "
                        "AND src_device != dst_device GROUP BY time_ns, dst_device) WHERE c > 1",
                    pipe), 0);
    cr_assert_eq(q1(st, "SELECT count(*) FROM (SELECT count(*) c FROM migrations WHERE run_id = ? "
                        "AND src_device != dst_device GROUP BY time_ns, src_device) WHERE c > 1",
                    pipe), 0);
    cr_assert_eq(metric(st, pipe, "rebalance_pause_s"), 0);
    /* blocking: all copies of a re-plan start together, and serving paused */
    cr_assert_gt(metric(st, blk, "rebalance_pause_s"), 0.01);
    cr_assert_eq(q1(st, "SELECT count(DISTINCT time_ns) FROM migrations WHERE run_id = ?", blk),
                 q1(st, "SELECT count(*) FROM replans WHERE run_id = ? AND bytes > 0", blk));
    cr_assert_gt(metric(st, blk, "tpot_mean"), metric(st, pipe, "tpot_mean") * 0.99);
    trace_free(t);
    store_close(st);
}

/* Serving takes the road fixed batches take (sim/replan.c): a plan waits
 * for its planning time, the old layout serving meanwhile, and is handed
 * over at the first batch end after it; the gate skips plans and records
 * them, and then nothing moves and nothing recovers. */
Test(serve, replans_wait_for_planning_time_and_the_gate_skips) {
    store_t *st = mem_store();
    trace_t *t = shift_trace();
    int64_t now = serve(SHIFT "rebalance = blocking\n", &DYN, t, st, NULL);
    int64_t slow = serve(SHIFT "rebalance = blocking\n[placement]\nplan_ms = 40\n", &DYN, t, st,
                         NULL);
    int64_t gated = serve(SHIFT "rebalance = blocking\n[placement]\nreplan_min_gain = 1\n", &DYN,
                          t, st, NULL);
    /* the first plan is made at the same batch end in both runs */
    double t0 = q1(st, "SELECT min(time_ns) FROM replans WHERE run_id = ?", now);
    double t1 = q1(st, "SELECT min(time_ns) FROM replans WHERE run_id = ?", slow);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT min(start_ns + duration_ns) FROM steps WHERE run_id = ? AND "
                              "start_ns + duration_ns >= %.0f", t0 + 40e6);
    cr_assert_eq(t1, q1(st, sql, slow), "handed over at the first batch end 40 ms after the plan");
    cr_assert_gt(t1, t0);
    cr_assert_geq(metric(st, slow, "plan_time_s"), 0.04);
    cr_assert_eq(metric(st, now, "plan_time_s"), 0);
    /* no batch starts while the blocking copies move */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM steps WHERE run_id = ? AND start_ns > %.0f AND "
                              "start_ns < (SELECT max(done_ns) FROM migrations WHERE run_id = ? "
                              "AND time_ns = %.0f)", t1, t1);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(store_db(st), sql, -1, &q, NULL), SQLITE_OK);
    sqlite3_bind_int64(q, 1, slow);
    sqlite3_bind_int64(q, 2, slow);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    /* the gate: every plan skipped and counted, no copy, no recovery */
    cr_assert_eq(metric(st, gated, "replans"), 0);
    cr_assert_geq(metric(st, gated, "replans_skipped"), 2);
    cr_assert_eq(metric(st, gated, "migrated_gb"), 0);
    cr_assert_gt(metric(st, gated, "replan_skipped_gb"), 0);
    cr_assert_eq(q1(st, "SELECT count(*) FROM migrations WHERE run_id = ?", gated), 0);
    cr_assert_gt(par(st, gated, 400, 600), 2.5, "skipped plans leave static's layout");
    cr_assert_lt(par(st, now, 400, 600), 1.8);
    trace_free(t);
    store_close(st);
}

/* ---- the command path ---- */

Test(serve, run_one_dispatches_to_serving_and_keeps_fixed_batches) {
    cfg_t *cfg;
    run_spec_t sp;
    cr_assert_eq(cfg_load("configs/serving.ini", &cfg), MS_OK, "%s", ms_err_last());
    cr_assert_eq(cfg_set_assign(cfg, "serving.duration_s=0.5", "test", 1), MS_OK);
    cr_assert_eq(run_spec_load(cfg, &sp), MS_OK, "%s", ms_err_last());
    cr_assert(sp.serving);
    store_t *st = mem_store();
    run_summary_t sum;
    cr_assert_eq(run_one(&sp, "static", st, &sum), MS_OK, "%s", ms_err_last());
    cr_assert_gt(metrics_get(&sum.m, METRIC_REQUESTS, 0), 0);
    cr_assert_gt(metrics_get(&sum.m, METRIC_OUT_TPS_NODE, 0), 0);
    cfg_free(cfg);
    cr_assert_eq(cfg_load("configs/demo.ini", &cfg), MS_OK);
    cr_assert_eq(cfg_set_assign(cfg, "experiment.steps=2", "test", 1), MS_OK);
    cr_assert_eq(cfg_set_assign(cfg, "workload.tokens_per_device=4", "test", 1), MS_OK);
    cr_assert_eq(run_spec_load(cfg, &sp), MS_OK, "%s", ms_err_last());
    cr_assert(!sp.serving);
    cr_assert_eq(run_one(&sp, "static", st, &sum), MS_OK, "%s", ms_err_last());
    cr_assert_eq(q1(st, "SELECT count(*) FROM requests WHERE run_id = ?", sum.run_id), 0);
    cr_assert_eq(q1(st, "SELECT count(*) FROM steps WHERE run_id = ?", sum.run_id), 2);
    cfg_free(cfg);
    store_close(st);
}

/* Serving stores the hindsight bound beside its result, as fixed batches do:
 * static plans from nothing, so it is its own bound (regret 0); EPLB planned
 * on the scored counts (1..E per expert) beats static's layout on them. */
Test(serve, hindsight_bound_beside_the_result) {
    store_t *st = mem_store();
    trace_t *t = plain_trace();
    int64_t rs = serve(CONSERVE "instances = decode\n", place_find("static"), t, st, NULL);
    int64_t re = serve(CONSERVE "instances = decode\n", place_find("eplb"), t, st, NULL);
    double s_lay = metric(st, rs, "layout_par_mean"), s_h = metric(st, rs, "par_mean_hindsight");
    cr_expect_eq(s_h, s_lay);
    cr_expect_eq(metric(st, rs, "regret"), 0);
    double e_lay = metric(st, re, "layout_par_mean"), e_h = metric(st, re, "par_mean_hindsight");
    cr_expect_eq(metric(st, re, "regret"), e_lay - e_h);
    cr_expect_lt(e_h, s_lay, "EPLB's hindsight %g against static's %g", e_h, s_lay);
    cr_expect_geq(e_h, 1);
    trace_free(t);
    store_close(st);
}
