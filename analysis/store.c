/* store: results in SQLite. Statements are prepared once per connection;
 * a run is one transaction (store_run_begin .. store_run_commit). */
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* The schema (docs/schema.md explains each column). New tables are added
 * here; CREATE ... IF NOT EXISTS keeps older databases readable. */
static const char SCHEMA[] =
    "PRAGMA foreign_keys = ON;"
    "CREATE TABLE IF NOT EXISTS runs ("
    "  run_id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL, strategy TEXT NOT NULL, strategy_version INTEGER NOT NULL,"
    "  trace TEXT, model TEXT NOT NULL, hardware TEXT NOT NULL,"
    "  nodes INTEGER NOT NULL, devices INTEGER NOT NULL, seed INTEGER NOT NULL,"
    "  config TEXT NOT NULL, config_hash TEXT NOT NULL, moesim_version TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS steps ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, step INTEGER NOT NULL,"
    "  start_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL, tokens REAL NOT NULL,"
    "  PRIMARY KEY (run_id, step));"
    "CREATE TABLE IF NOT EXISTS layer_steps ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, step INTEGER NOT NULL,"
    "  layer INTEGER NOT NULL, duration_ns INTEGER NOT NULL,"
    "  max_load REAL NOT NULL, mean_load REAL NOT NULL,"
    "  PRIMARY KEY (run_id, step, layer));"
    "CREATE TABLE IF NOT EXISTS device_loads ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, layer INTEGER NOT NULL,"
    "  device INTEGER NOT NULL, load REAL NOT NULL,"
    "  PRIMARY KEY (run_id, layer, device));"
    "CREATE TABLE IF NOT EXISTS summary ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, metric TEXT NOT NULL,"
    "  value REAL NOT NULL, unit TEXT NOT NULL DEFAULT '',"
    "  PRIMARY KEY (run_id, metric));"
    "CREATE TABLE IF NOT EXISTS layer_bounds ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, layer INTEGER NOT NULL,"
    "  best_ep REAL NOT NULL, bound REAL NOT NULL, max_load REAL NOT NULL,"
    "  PRIMARY KEY (run_id, layer));"
    "CREATE TABLE IF NOT EXISTS replicas ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, layer INTEGER NOT NULL,"
    "  expert INTEGER NOT NULL, count INTEGER NOT NULL,"
    "  PRIMARY KEY (run_id, layer, expert));"
    "CREATE TABLE IF NOT EXISTS trace_counts ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, layer INTEGER NOT NULL,"
    "  expert INTEGER NOT NULL, count REAL NOT NULL,"
    "  PRIMARY KEY (run_id, layer, expert));"
    "CREATE TABLE IF NOT EXISTS replans ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, time_ns INTEGER NOT NULL,"
    "  step INTEGER NOT NULL, layers_changed INTEGER NOT NULL, bytes REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS migrations ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, time_ns INTEGER NOT NULL,"
    "  done_ns INTEGER NOT NULL, layer INTEGER NOT NULL, expert INTEGER NOT NULL,"
    "  bytes REAL NOT NULL, src_device INTEGER NOT NULL, dst_device INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS requests ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, request INTEGER NOT NULL,"
    "  arrival_ns INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,"
    "  output_tokens INTEGER NOT NULL, first_token_ns INTEGER NOT NULL,"
    "  done_ns INTEGER NOT NULL, PRIMARY KEY (run_id, request));"
    "CREATE INDEX IF NOT EXISTS replans_run ON replans (run_id);"
    "CREATE INDEX IF NOT EXISTS migrations_run ON migrations (run_id);";

enum { Q_RUN, Q_STEP, Q_LAYER, Q_DEV, Q_METRIC, Q_BOUND, Q_REPL, Q_TRACE, Q_REPLAN, Q_MIGR,
       Q_REQ, NQ };

static const char *const SQL[NQ] = {
    [Q_RUN] = "INSERT INTO runs (name, strategy, strategy_version, trace, model, hardware,"
              " nodes, devices, seed, config, config_hash, moesim_version)"
              " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    [Q_STEP] = "INSERT INTO steps VALUES (?,?,?,?,?)",
    [Q_LAYER] = "INSERT INTO layer_steps VALUES (?,?,?,?,?,?)",
    [Q_DEV] = "INSERT INTO device_loads VALUES (?,?,?,?)",
    [Q_METRIC] = "INSERT OR REPLACE INTO summary VALUES (?,?,?,?)",
    [Q_BOUND] = "INSERT INTO layer_bounds VALUES (?,?,?,?,?)",
    [Q_REPL] = "INSERT INTO replicas VALUES (?,?,?,?)",
    [Q_TRACE] = "INSERT INTO trace_counts VALUES (?,?,?,?)",
    [Q_REPLAN] = "INSERT INTO replans VALUES (?,?,?,?,?)",
    [Q_MIGR] = "INSERT INTO migrations VALUES (?,?,?,?,?,?,?,?)",
    [Q_REQ] = "INSERT INTO requests VALUES (?,?,?,?,?,?,?)",
};

struct store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *q[NQ];
    int in_run;
};

static int fail(store_t *st, const char *what) {
    return ms_err("%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

int store_open(const char *path, store_t **out) {
    store_t *st = ms_calloc(1, sizeof *st);
    st->path = ms_strdup(path);
    if (sqlite3_open(path, &st->db) != SQLITE_OK) {
        ms_err("%s: cannot open results database: %s (check the folder exists and is writable)",
               path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
        store_close(st);
        return MS_ERR;
    }
    sqlite3_busy_timeout(st->db, 10000);
    if (sqlite3_exec(st->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) {
        fail(st, "cannot create the schema (is it a moesim database?)");
        store_close(st);
        return MS_ERR;
    }
    for (int i = 0; i < NQ; i++)
        if (sqlite3_prepare_v2(st->db, SQL[i], -1, &st->q[i], NULL) != SQLITE_OK) {
            fail(st, "cannot prepare a statement (database from another moesim version?)");
            store_close(st);
            return MS_ERR;
        }
    *out = st;
    return MS_OK;
}

void store_close(store_t *st) {
    if (!st) return;
    if (st->in_run) store_run_abort(st);
    for (int i = 0; i < NQ; i++) sqlite3_finalize(st->q[i]);
    sqlite3_close(st->db);
    free(st->path);
    free(st);
}

sqlite3 *store_db(store_t *st) { return st->db; }

/* Runs a prepared insert whose parameters are bound. */
static int step(store_t *st, sqlite3_stmt *q) {
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_DONE ? MS_OK : fail(st, "insert failed");
}

static void bind_text(sqlite3_stmt *q, int i, const char *s) {
    if (s) sqlite3_bind_text(q, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(q, i);
}

int store_run_begin(store_t *st, const store_run_t *r, int64_t *run_id) {
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return fail(st, "cannot start a transaction");
    st->in_run = 1;
    sqlite3_stmt *q = st->q[Q_RUN];
    bind_text(q, 1, r->name);
    bind_text(q, 2, r->strategy);
    sqlite3_bind_int(q, 3, r->strategy_version);
    bind_text(q, 4, r->trace);
    bind_text(q, 5, r->model);
    bind_text(q, 6, r->hardware);
    sqlite3_bind_int(q, 7, r->nodes);
    sqlite3_bind_int(q, 8, r->devices);
    sqlite3_bind_int64(q, 9, (sqlite3_int64)r->seed);
    bind_text(q, 10, r->config);
    bind_text(q, 11, r->config_hash);
    bind_text(q, 12, MOESIM_VERSION);
    if (step(st, q)) {
        store_run_abort(st);
        return MS_ERR;
    }
    *run_id = sqlite3_last_insert_rowid(st->db);
    return MS_OK;
}

int store_run_commit(store_t *st) {
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        fail(st, "cannot commit the run");
        store_run_abort(st);
        return MS_ERR;
    }
    st->in_run = 0;
    return MS_OK;
}

void store_run_abort(store_t *st) {
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->in_run = 0;
}

int store_step(store_t *st, int64_t run, int stp, int64_t start_ns, int64_t duration_ns,
               double tokens) {
    sqlite3_stmt *q = st->q[Q_STEP];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int(q, 2, stp);
    sqlite3_bind_int64(q, 3, start_ns);
    sqlite3_bind_int64(q, 4, duration_ns);
    sqlite3_bind_double(q, 5, tokens);
    return step(st, q);
}

int store_layer_step(store_t *st, int64_t run, int stp, int layer, int64_t duration_ns,
                     double max_load, double mean_load) {
    sqlite3_stmt *q = st->q[Q_LAYER];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int(q, 2, stp);
    sqlite3_bind_int(q, 3, layer);
    sqlite3_bind_int64(q, 4, duration_ns);
    sqlite3_bind_double(q, 5, max_load);
    sqlite3_bind_double(q, 6, mean_load);
    return step(st, q);
}

int store_device_load(store_t *st, int64_t run, int layer, int device, double load) {
    sqlite3_stmt *q = st->q[Q_DEV];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int(q, 2, layer);
    sqlite3_bind_int(q, 3, device);
    sqlite3_bind_double(q, 4, load);
    return step(st, q);
}

int store_metric(store_t *st, int64_t run, const char *metric, double value, const char *unit) {
    sqlite3_stmt *q = st->q[Q_METRIC];
    sqlite3_bind_int64(q, 1, run);
    bind_text(q, 2, metric);
    sqlite3_bind_double(q, 3, value);
    bind_text(q, 4, unit ? unit : "");
    return step(st, q);
}

int store_layer_bound(store_t *st, int64_t run, int layer, double best_ep, double bound,
                      double max_load) {
    sqlite3_stmt *q = st->q[Q_BOUND];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int(q, 2, layer);
    sqlite3_bind_double(q, 3, best_ep);
    sqlite3_bind_double(q, 4, bound);
    sqlite3_bind_double(q, 5, max_load);
    return step(st, q);
}

int store_replicas(store_t *st, int64_t run, int layer, int expert, int count) {
    sqlite3_stmt *q = st->q[Q_REPL];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int(q, 2, layer);
    sqlite3_bind_int(q, 3, expert);
    sqlite3_bind_int(q, 4, count);
    return step(st, q);
}

int store_trace_count(store_t *st, int64_t run, int layer, int expert, double count) {
    sqlite3_stmt *q = st->q[Q_TRACE];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int(q, 2, layer);
    sqlite3_bind_int(q, 3, expert);
    sqlite3_bind_double(q, 4, count);
    return step(st, q);
}

int store_replan(store_t *st, int64_t run, int64_t time_ns, int stp, int layers_changed,
                 double bytes) {
    sqlite3_stmt *q = st->q[Q_REPLAN];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int64(q, 2, time_ns);
    sqlite3_bind_int(q, 3, stp);
    sqlite3_bind_int(q, 4, layers_changed);
    sqlite3_bind_double(q, 5, bytes);
    return step(st, q);
}

int store_migration(store_t *st, int64_t run, const store_migration_t *m) {
    sqlite3_stmt *q = st->q[Q_MIGR];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int64(q, 2, m->time_ns);
    sqlite3_bind_int64(q, 3, m->done_ns);
    sqlite3_bind_int(q, 4, m->layer);
    sqlite3_bind_int(q, 5, m->expert);
    sqlite3_bind_double(q, 6, m->bytes);
    sqlite3_bind_int(q, 7, m->src_device);
    sqlite3_bind_int(q, 8, m->dst_device);
    return step(st, q);
}

int store_request(store_t *st, int64_t run, const store_request_t *r) {
    sqlite3_stmt *q = st->q[Q_REQ];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int64(q, 2, r->request);
    sqlite3_bind_int64(q, 3, r->arrival_ns);
    sqlite3_bind_int(q, 4, r->prompt_tokens);
    sqlite3_bind_int(q, 5, r->output_tokens);
    sqlite3_bind_int64(q, 6, r->first_token_ns);
    sqlite3_bind_int64(q, 7, r->done_ns);
    return step(st, q);
}

int store_delete_named(store_t *st, const char *name) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db, "DELETE FROM runs WHERE name = ?", -1, &q, NULL) != SQLITE_OK)
        return fail(st, "cannot prepare delete");
    sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? MS_OK : fail(st, "cannot delete earlier runs");
}

/* An identifier in double quotes, for table and column names read back
 * from the database itself. */
static void quote_id(char *out, size_t n, const char *id) {
    size_t k = 0;
    if (k + 1 < n) out[k++] = '"';
    for (; *id && k + 3 < n; id++) {
        if (*id == '"') out[k++] = '"';
        out[k++] = *id;
    }
    out[k++] = '"';
    out[k] = 0;
}

/* The columns of src.table as a quoted, comma-separated list with run_id
 * written as `run_expr`; *has_run says whether the table has run_id. */
static int merge_columns(store_t *st, const char *table, const char *run_expr, const char *prefix,
                         char *out, size_t n, int *has_run) {
    char sql[512], q[300];
    quote_id(q, sizeof q, table);
    snprintf(sql, sizeof sql, "PRAGMA src.table_info(%s)", q);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return fail(st, "cannot read a merged table's columns");
    size_t k = 0;
    *has_run = 0;
    out[0] = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *col = (const char *)sqlite3_column_text(s, 1);
        int is_run = !strcmp(col, "run_id");
        *has_run |= is_run;
        if (is_run && !run_expr) continue;
        quote_id(q, sizeof q, col);
        int w = snprintf(out + k, n - k, "%s%s%s", k ? "," : "", is_run ? run_expr : prefix,
                         is_run ? "" : q);
        if (w < 0 || (size_t)w >= n - k) {
            sqlite3_finalize(s);
            return ms_err("%s: table %s has too many columns to merge", st->path, table);
        }
        k += (size_t)w;
    }
    sqlite3_finalize(s);
    return MS_OK;
}

static int exec(store_t *st, const char *sql, const char *what) {
    return sqlite3_exec(st->db, sql, NULL, NULL, NULL) == SQLITE_OK ? MS_OK : fail(st, what);
}

/* The copy itself, inside the transaction store_merge opened. */
static int merge_tables(store_t *st, int *n_runs) {
    char cols[4096], ins[4096], sql[10000], q[300];
    int has_run;
    if (exec(st, "CREATE TEMP TABLE IF NOT EXISTS merge_map (old INTEGER PRIMARY KEY,"
                 " new INTEGER NOT NULL); DELETE FROM temp.merge_map;",
             "cannot make the run-id map") ||
        merge_columns(st, "runs", NULL, "", cols, sizeof cols, &has_run))
        return MS_ERR;
    if (!has_run) return ms_err("%s: the merged file has no runs table with run_id", st->path);
    /* Runs one by one, in id order, so the new ids keep the old order. */
    snprintf(sql, sizeof sql,
             "INSERT INTO main.runs (%s) SELECT %s FROM src.runs WHERE run_id = ?1", cols, cols);
    sqlite3_stmt *pick = NULL, *add = NULL, *map = NULL;
    int rc = MS_ERR, n = 0;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT run_id FROM src.runs WHERE config_hash NOT IN"
                           " (SELECT config_hash FROM main.runs) ORDER BY run_id",
                           -1, &pick, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, sql, -1, &add, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "INSERT INTO temp.merge_map VALUES (?1, ?2)", -1, &map,
                           NULL) != SQLITE_OK) {
        fail(st, "cannot prepare the merge of runs");
        goto out;
    }
    int r;
    while ((r = sqlite3_step(pick)) == SQLITE_ROW) {
        sqlite3_int64 old = sqlite3_column_int64(pick, 0);
        sqlite3_bind_int64(add, 1, old);
        if (step(st, add)) goto out;
        sqlite3_bind_int64(map, 1, old);
        sqlite3_bind_int64(map, 2, sqlite3_last_insert_rowid(st->db));
        if (step(st, map)) goto out;
        n++;
    }
    if (r != SQLITE_DONE) {
        fail(st, "cannot read the merged runs");
        goto out;
    }
    sqlite3_finalize(pick);
    /* Every other table keyed by run_id, whatever its name. */
    if (sqlite3_prepare_v2(st->db,
                           "SELECT s.name, s.sql, m.name IS NULL FROM src.sqlite_master s"
                           " LEFT JOIN main.sqlite_master m ON m.type = 'table' AND m.name = s.name"
                           " WHERE s.type = 'table' AND s.name NOT LIKE 'sqlite_%'"
                           " AND s.name <> 'runs' ORDER BY s.name",
                           -1, &pick, NULL) != SQLITE_OK) {
        fail(st, "cannot list the merged tables");
        goto out;
    }
    while ((r = sqlite3_step(pick)) == SQLITE_ROW) {
        const char *table = (const char *)sqlite3_column_text(pick, 0);
        if (merge_columns(st, table, "m.new", "s.", cols, sizeof cols, &has_run) ||
            merge_columns(st, table, "run_id", "", ins, sizeof ins, &has_run))
            goto out;
        if (!has_run) continue; /* not per-run data */
        /* A table the target lacks (made by a newer moesim): create it as
         * the source has it; an unqualified CREATE goes to main. */
        if (sqlite3_column_int(pick, 2) && exec(st, (const char *)sqlite3_column_text(pick, 1),
                                                "cannot create a merged table"))
            goto out;
        quote_id(q, sizeof q, table);
        snprintf(sql, sizeof sql,
                 "INSERT INTO main.%s (%s) SELECT %s FROM src.%s s"
                 " JOIN temp.merge_map m ON s.run_id = m.old",
                 q, ins, cols, q);
        if (exec(st, sql, "cannot copy a merged table")) goto out;
    }
    if (r != SQLITE_DONE) {
        fail(st, "cannot read the merged tables");
        goto out;
    }
    if (n_runs) *n_runs = n;
    rc = MS_OK;
out:
    sqlite3_finalize(pick);
    sqlite3_finalize(add);
    sqlite3_finalize(map);
    return rc;
}

int store_merge(store_t *st, const char *src_path, int *n_runs) {
    sqlite3_stmt *a;
    if (sqlite3_prepare_v2(st->db, "ATTACH ?1 AS src", -1, &a, NULL) != SQLITE_OK)
        return fail(st, "cannot prepare ATTACH");
    sqlite3_bind_text(a, 1, src_path, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(a);
    sqlite3_finalize(a);
    if (r != SQLITE_DONE)
        return ms_err("%s: cannot attach %s to merge it: %s", st->path, src_path,
                      sqlite3_errmsg(st->db));
    int rc = exec(st, "BEGIN IMMEDIATE", "cannot start the merge");
    if (rc == MS_OK) {
        rc = merge_tables(st, n_runs);
        if (rc == MS_OK) rc = exec(st, "COMMIT", "cannot commit the merge");
        if (rc != MS_OK) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_exec(st->db, "DETACH src", NULL, NULL, NULL);
    return rc;
}
