/* Layout files: SGLang's expert-location JSON written and read back in the
 * shape SGLang's init_by_mapping takes, moesim's CSV, the "layout" strategy
 * replaying either to the same figures, and a clear refusal of every
 * malformed file. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd.h"
#include "place.h"
#include "util.h"

#define TRACE "traces/data/deepseek-v3-sglang/decode_in1000out1000.json"
/* Built by hand from SGLang's documented structure: a model of 4 layers
 * (the first dense) with 8 routed experts and 2 redundant slots on 2
 * devices: physical_to_logical_map is [4][10]. */
#define SMALL "tests/data/sglang_layout_small.json"

static char dir[64];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/moesim-pio-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    ms_err_quiet(1);
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *text) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

Test(place_io, reads_the_sglang_fixture, .init = setup, .fini = teardown) {
    place_layout_t *lo = NULL;
    cr_assert_eq(place_layout_read(SMALL, 3, 8, 2, 2, 10, &lo), MS_OK, "%s", ms_err_last());
    static const int want[3][10] = {{7, 6, 5, 4, 3, 2, 1, 0, 7, 0},
                                    {0, 2, 4, 6, 1, 1, 3, 5, 7, 2},
                                    {3, 3, 3, 0, 1, 2, 4, 5, 6, 7}};
    for (int l = 0; l < 3; l++) {
        cr_expect_eq(lo->layer[l].slots_per_device, 5);
        cr_expect_eq(memcmp(lo->layer[l].slot_expert, want[l], sizeof want[l]), 0, "layer %d", l);
    }
    cr_expect_eq(lo->layer[2].replicas[3], 3, "expert 3 of the last layer has three slots");
    cr_expect_eq(lo->layer[1].replicas[2], 2);
    place_layout_free(lo);
}

/* Written: one row per layer, dense ones first as the trivial map, every
 * row n_slots logical ids; read back: the same layout. */
Test(place_io, writes_what_init_by_mapping_takes, .init = setup, .fini = teardown) {
    place_layout_t *lo = NULL;
    cr_assert_eq(place_layout_read(SMALL, 3, 8, 2, 2, 10, &lo), MS_OK);
    char path[128];
    snprintf(path, sizeof path, "%s/out.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_eq(place_layout_write_sglang(lo, 1, f), MS_OK);
    fclose(f);
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e), *fixture = json_load_file(SMALL, 0, &e);
    cr_assert_not_null(root, "%s", e.text);
    cr_expect_eq(json_object_size(root), 1);
    json_t *map = json_object_get(root, "physical_to_logical_map");
    cr_assert_eq(json_array_size(map), 4);
    cr_expect(json_equal(root, fixture), "a read layout is written back as the fixture");
    json_decref(fixture);
    json_decref(root);
    place_layout_t *back = NULL;
    cr_assert_eq(place_layout_read(path, 3, 8, 2, 2, 10, &back), MS_OK);
    for (int l = 0; l < 3; l++)
        cr_expect_eq(memcmp(back->layer[l].slot_expert, lo->layer[l].slot_expert, 10 * sizeof(int)),
                     0);
    place_layout_free(back);
    place_layout_free(lo);
}

static int place(const char *first, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "place";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    return cmd_place(argc, argv);
}

static double par_of(const char *db, const char *strategy) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(h, "SELECT value FROM summary JOIN runs USING (run_id) WHERE "
                                       "strategy = ?1 AND metric = 'par_mean'", -1, &q, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(q, 1, strategy, -1, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW, "no par_mean for %s", strategy);
    double v = sqlite3_column_double(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(h);
    return v;
}

/* The Done-when point: DeepSeek-V3's EPLB layout at EP32 with 32 redundant
 * slots, written for SGLang, has SGLang's shape [61][288] and replays
 * through the layout strategy to the same PAR; the CSV does too. */
Test(place_io, deepseek_v3_round_trip, .init = setup, .fini = teardown) {
    char js[128], csv[128], db[128], set[160];
    snprintf(js, sizeof js, "%s/dsv3.json", dir);
    snprintf(csv, sizeof csv, "%s/dsv3.csv", dir);
    snprintf(db, sizeof db, "%s/r.db", dir);
    const char *common[] = {"--counts", TRACE, "--devices", "32", "--redundant", "32"};
#define C common[0], common[1], common[2], common[3], common[4], common[5]
    cr_assert_eq(place("--strategy", "eplb", C, "--format", "sglang", "--out", js, "--db", db,
                       "-q", NULL), 0, "%s", ms_err_last());
    cr_assert_eq(place("--strategy", "eplb", C, "--out", csv, "-q", NULL), 0);
    json_error_t e;
    json_t *root = json_load_file(js, 0, &e);
    cr_assert_not_null(root, "%s", e.text);
    json_t *map = json_object_get(root, "physical_to_logical_map");
    cr_assert_eq(json_array_size(map), 61, "num_hidden_layers, the 3 dense layers included");
    for (int l = 0; l < 61; l++) {
        json_t *row = json_array_get(map, (size_t)l);
        cr_assert_eq(json_array_size(row), 288, "256 experts + 32 redundant");
        for (int s = 0; s < 288; s++) {
            json_int_t x = json_integer_value(json_array_get(row, (size_t)s));
            cr_assert(x >= 0 && x < 256);
            if (l < 3) cr_assert_eq(x, s % 256, "dense layer %d: the trivial map", l);
        }
    }
    json_decref(root);
    snprintf(set, sizeof set, "placement.layout=%s", js);
    cr_assert_eq(place("--strategy", "layout", C, "--set", set, "--db", db, "-q", NULL), 0, "%s",
                 ms_err_last());
    double eplb = par_of(db, "eplb"), replay = par_of(db, "layout");
    cr_expect_eq(eplb, replay, "eplb %.17g, its layout replayed %.17g", eplb, replay);
    cr_expect_gt(eplb, 1.0);
    char db2[128];
    snprintf(db2, sizeof db2, "%s/r2.db", dir);
    snprintf(set, sizeof set, "placement.layout=%s", csv);
    cr_assert_eq(place("--strategy", "layout", C, "--set", set, "--db", db2, "-q", NULL), 0);
    cr_expect_eq(par_of(db2, "layout"), eplb);
#undef C
}

static void refused(const char *name, const char *text, int L, const char *want) {
    const char *p = write_file(name, text);
    place_layout_t *lo = NULL;
    cr_expect_eq(place_layout_read(p, L, 8, 2, 2, 10, &lo), MS_ERR, "accepted %s", text);
    cr_expect_null(lo);
    cr_expect(strstr(ms_err_last(), p), "'%s' does not name the file", ms_err_last());
    cr_expect(strstr(ms_err_last(), want), "'%s' lacks '%s'", ms_err_last(), want);
}

Test(place_io, malformed_files_are_refused_with_position_and_fix, .init = setup,
     .fini = teardown) {
    const char *row = "[0,1,2,3,4,5,6,7,0,1]";
    char ok3[256];
    snprintf(ok3, sizeof ok3, "{\"physical_to_logical_map\": [%s, %s, %s]}", row, row, row);
    place_layout_t *lo = NULL;
    cr_assert_eq(place_layout_read(write_file("ok.json", ok3), 3, 8, 2, 2, 10, &lo), MS_OK);
    place_layout_free(lo);
    refused("a.json", "", 3, "empty file");
    refused("b.json", "{\"physical_to_logical_map\": [[0, 1", 3, ":1:");
    refused("c.json", "{\"logical_count\": [[1, 2]]}", 3, "expert statistics");
    refused("d.json", "{\"other\": 1}", 3, "no \"physical_to_logical_map\"");
    refused("e.json", ok3, 4, "has 3 layers, the model has 4 MoE layers");
    refused("f.json", "{\"physical_to_logical_map\": [[0,1,2,3,4,5,6,7]]}", 1,
            "set [placement] redundant = 0");
    refused("g.json", "{\"physical_to_logical_map\": [[0,1,2,3,4,5,6]]}", 1,
            "need at least 8 slots");
    refused("h.json", "{\"physical_to_logical_map\": [[0,1,2,3,4,5,6,8,0,1]]}", 1,
            "physical_to_logical_map[0][7]: expert id out of range");
    refused("i.json", "{\"physical_to_logical_map\": [[0,1,2,3,4,5,6,1.5,0,1]]}", 1,
            "[0][7]: not a whole number");
    refused("j.json", "{\"physical_to_logical_map\": [[0,1,2,3,4,5,6,6,0,1]]}", 1,
            "expert 7 has no replica");
    refused("k.json", "{\"physical_to_logical_map\": [[0,1,2,3,4,5,6,7,0,1], 3]}", 1,
            "physical_to_logical_map[1] is not an array");
    refused("a.csv", "layer,slot,expert\n", 1, ":1: not a moesim layout CSV");
    refused("b.csv", "layer,slot,device,expert\n0,0,0\n", 1, ":2: '0,0,0' is not");
    refused("c.csv", "layer,slot,device,expert\n0,5,0,1\n", 1, ":2: slot 5 is on device 1");
    refused("d.csv", "layer,slot,device,expert\n0,0,0,1\n0,0,0,2\n", 1, ":3: layer 0 slot 0 is "
            "given twice");
    refused("e.csv", "layer,slot,device,expert\n1,0,0,1\n", 1, ":2: layer 1 out of range");
    refused("f.csv", "layer,slot,device,expert\n0,10,2,1\n", 1, ":2: slot 10 out of range");
    refused("g.csv", "layer,slot,device,expert\n0,0,0,9\n", 1, ":2: expert 9 out of range");
    refused("h.csv", "layer,slot,device,expert\n0,0,0,1\n", 1, "no row for layer 0 slot 1");
}

/* `place --format sglang` insists on a .json name (SGLang parses any other
 * argument as inline JSON) and leaves nothing behind when it fails. */
Test(place_io, place_format_errors, .init = setup, .fini = teardown) {
    char out[128];
    snprintf(out, sizeof out, "%s/l.txt", dir);
    cr_expect_neq(place("--strategy", "static", "--counts", TRACE, "--format", "sglang", "--out",
                        out, NULL), 0);
    cr_expect(strstr(ms_err_last(), "ends in .json"), "%s", ms_err_last());
    cr_expect_neq(access(out, F_OK), 0);
    cr_expect_neq(place("--strategy", "static", "--counts", TRACE, "--format", "yaml", NULL), 0);
    cr_expect(strstr(ms_err_last(), "give csv or sglang"), "%s", ms_err_last());
    cr_expect_neq(place("--strategy", "layout", "--counts", TRACE, NULL), 0);
    cr_expect(strstr(ms_err_last(), "[placement] layout = FILE"), "%s", ms_err_last());
}

/* In a config: the layout strategy beside static, and the key refused
 * without it. */
Test(place_io, config_replays_the_layout, .init = setup, .fini = teardown) {
    char cwd[1024], js[128], db[128];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    snprintf(js, sizeof js, "%s/static.json", dir);
    snprintf(db, sizeof db, "%s/r.db", dir);
    cr_assert_eq(place("--strategy", "static", "--counts", TRACE, "--devices", "16", "--format",
                       "sglang", "--out", js, "-q", NULL), 0);
    char ini[2048];
    const char *head = "[experiment]\nsteps = 2\n[cluster]\nnodes = 2\ndevices_per_node = 8\n"
                       "[workload]\ntokens_per_device = 8\n";
    snprintf(ini, sizeof ini, "%strace = %s/%s\n[placement]\nstrategies = static, layout\n"
             "layout = static.json\n", head, cwd, TRACE);
    char *argv[] = {"compare", (char *)write_file("a.ini", ini), "--db", db, NULL};
    cr_assert_eq(cmd_compare(4, argv), 0, "%s", ms_err_last());
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    /* the same layout gives the same steps */
    cr_assert_eq(sqlite3_prepare_v2(h, "SELECT count(*), sum(a.duration_ns = b.duration_ns) FROM "
                                       "steps a JOIN steps b USING (step) WHERE a.run_id = 1 AND "
                                       "b.run_id = 2", -1, &q, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(h));
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_expect_eq(sqlite3_column_int(q, 0), 2);
    cr_expect_eq(sqlite3_column_int(q, 1), 2);
    sqlite3_finalize(q);
    sqlite3_close(h);
    snprintf(ini, sizeof ini, "%strace = %s/%s\n[placement]\nstrategies = static\n"
             "layout = static.json\n", head, cwd, TRACE);
    char *argv2[] = {"compare", (char *)write_file("b.ini", ini), "--db", db, NULL};
    cr_expect_neq(cmd_compare(4, argv2), 0);
    cr_expect(strstr(ms_err_last(), "b.ini:11: [placement] layout is replayed by strategy "
                                    "'layout'"), "%s", ms_err_last());
}
