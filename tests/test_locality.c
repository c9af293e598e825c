/* Tests of communication locality (sim/locality.c) on a case worked by
 * hand: four tokens on 2 nodes x 2 devices, their bytes, the nodes and
 * devices each touches, the traffic matrix and what is stored. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <string.h>

#include "locality.h"
#include "metrics.h"
#include "place.h"
#include "record.h"
#include "store.h"
#include "util.h"

/* One MoE layer, 4 experts (expert e on device e), top-2; one token copy
 * is 10 x (1 + 2) = 30 bytes (dispatch and combine). */
static const moe_model_t MODEL = {.name = "tiny", .n_layers = 1, .n_dense = 0, .hidden = 10,
                                  .n_experts = 4, .top_k = 2, .dispatch_bytes = 1,
                                  .combine_bytes = 2};
static const cluster_t CLUSTER = {.n_nodes = 2, .devices_per_node = 2, .n_devices = 4};

/* t0 on device 0 -> experts 0, 1: devices 0 (itself) and 1 (same node)
 * t1 on device 0 -> experts 2, 3: devices 2 and 3, both on node 1
 * t2 on device 3 -> experts 0, 3: device 0 (node 0) and itself
 * t3 on device 1 -> expert 1 and a dropped choice: only itself */
static int SRC[4] = {0, 0, 3, 1};
static int16_t EXPERT[8] = {0, 1, 2, 3, 0, 3, 1, -1};

static loc_t *worked(int per_node, place_layout_t **lo) {
    *lo = place_layout_new(1, 4, 4, 2);
    int se[4] = {0, 1, 2, 3};
    cr_assert_eq(place_layer_set(*lo, 0, 1, se), MS_OK);
    route_step_t rt = {.n_layers = 1, .n_tokens = 4, .top_k = 2, .n_devices = 4, .src = SRC,
                       .expert = EXPERT};
    loc_t *a = loc_new(&CLUSTER, &MODEL, per_node);
    loc_step(a, &rt, *lo, NULL, NULL);
    return a;
}

Test(locality, hand_computed_bytes_nodes_devices_and_traffic) {
    place_layout_t *lo;
    loc_t *a = worked(0, &lo);
    /* copies to other devices: t0 1, t1 2, t2 1, t3 0 -> 4 x 30 bytes;
     * crossing nodes (low-latency, one copy per device): t1 2, t2 1 -> 90 */
    cr_assert_float_eq(a->bytes[0], 120, 0);
    cr_assert_float_eq(a->cross[0], 90, 0);
    /* nodes touched: 1, 1, 2, 1; devices touched: 2, 2, 2, 1 */
    double nodes[3] = {0, 3, 1}, devs[3] = {0, 1, 3};
    cr_assert_arr_eq(a->nodes_hist, nodes, sizeof nodes);
    cr_assert_arr_eq(a->dev_hist, devs, sizeof devs);
    /* traffic: dispatch 10 bytes to the expert's device, combine 20 back */
    double want[16] = {0};
    want[0 * 4 + 1] = 10, want[1 * 4 + 0] = 20; /* t0 */
    want[0 * 4 + 2] = 10, want[2 * 4 + 0] = 20; /* t1 */
    want[0 * 4 + 3] = 10, want[3 * 4 + 0] = 20; /* t1 */
    want[3 * 4 + 0] += 10, want[0 * 4 + 3] += 20; /* t2: from device 3 to device 0 and back */
    cr_assert_arr_eq(a->traffic, want, sizeof want);

    store_t *st;
    cr_assert_eq(store_open(":memory:", &st), MS_OK);
    store_run_t meta = {.name = "x", .strategy = "static", .model = "tiny", .hardware = "h",
                        .nodes = 2, .devices = 4, .config = "", .config_hash = "0"};
    record_t rec = {0};
    cr_assert_eq(record_begin(&rec, st, &meta, ""), MS_OK);
    metrics_t m = {0};
    cr_assert_eq(loc_store(a, &rec, &m), MS_OK);
    cr_assert_float_eq(metrics_get(&m, METRIC_CROSS_NODE_GB, -1), 90e-9, 1e-18);
    cr_assert_float_eq(metrics_get(&m, METRIC_CROSS_NODE_SHARE, -1), 0.75, 1e-12);
    cr_assert_float_eq(metrics_get(&m, METRIC_NODES_PER_TOKEN, -1), 1.25, 1e-12);
    cr_assert_float_eq(metrics_get(&m, METRIC_DEVICES_PER_TOKEN, -1), 1.75, 1e-12);
    cr_assert_eq(record_commit(&rec), MS_OK);
    sqlite3 *db = store_db(st);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT cross_node_bytes, bytes, nodes_mean, devices_mean "
                                    "FROM layer_locality WHERE layer = 0",
                                    -1, &q, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_float_eq(sqlite3_column_double(q, 0), 90, 0);
    cr_assert_float_eq(sqlite3_column_double(q, 1), 120, 0);
    cr_assert_float_eq(sqlite3_column_double(q, 2), 1.25, 1e-12);
    cr_assert_float_eq(sqlite3_column_double(q, 3), 1.75, 1e-12);
    sqlite3_finalize(q);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT group_concat(kind || touched || '=' || tokens, ' ') "
                                    "FROM (SELECT * FROM locality_hist ORDER BY kind, touched)",
                                    -1, &q, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(q, 0),
                     "devices1=1.0 devices2=3.0 nodes1=3.0 nodes2=1.0");
    sqlite3_finalize(q);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*), sum(bytes) FROM traffic WHERE "
                                        "src_device != dst_device", -1, &q, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(q, 0), 6);
    cr_assert_float_eq(sqlite3_column_double(q, 1), 120, 0);
    sqlite3_finalize(q);
    store_close(st);
    loc_free(a);
    place_layout_free(lo);
}

Test(locality, normal_kernels_cross_once_per_node) {
    place_layout_t *lo;
    loc_t *a = worked(1, &lo);
    /* t1 reaches node 1 with one IB copy (forwarded over NVLink), t2 node 0 */
    cr_assert_float_eq(a->cross[0], 60, 0);
    cr_assert_float_eq(a->bytes[0], 120, 0);
    loc_free(a);
    place_layout_free(lo);
}
