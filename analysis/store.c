/* store: results in SQLite, written so that nothing already stored is lost.
 * Each run is written into a private staging database and then published
 * into the target in one short transaction (docs/reliability.md). */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* The schema (docs/schema.md explains each column), written without a
 * schema name: each "EXISTS " becomes "EXISTS <schema>." when it is made in
 * the staging or the target database. New tables are added here (runs stays
 * first: it is copied first); CREATE ... IF NOT EXISTS keeps older databases
 * readable. */
static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS runs ("
    "  run_id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL, strategy TEXT NOT NULL, strategy_version INTEGER NOT NULL,"
    "  trace TEXT, model TEXT NOT NULL, hardware TEXT NOT NULL,"
    "  nodes INTEGER NOT NULL, devices INTEGER NOT NULL, seed INTEGER NOT NULL,"
    "  config TEXT NOT NULL, config_hash TEXT NOT NULL, moesim_version TEXT NOT NULL,"
    "  prior TEXT NOT NULL DEFAULT 'oracle');"
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
    "CREATE TABLE IF NOT EXISTS summary_ci ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, metric TEXT NOT NULL,"
    "  n INTEGER NOT NULL, mean REAL NOT NULL, half_width REAL NOT NULL,"
    "  unit TEXT NOT NULL DEFAULT '', PRIMARY KEY (run_id, metric));"
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
    "CREATE TABLE IF NOT EXISTS layer_locality ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, layer INTEGER NOT NULL,"
    "  cross_node_bytes REAL NOT NULL, bytes REAL NOT NULL,"
    "  nodes_mean REAL NOT NULL, devices_mean REAL NOT NULL,"
    "  PRIMARY KEY (run_id, layer));"
    "CREATE TABLE IF NOT EXISTS locality_hist ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, layer INTEGER NOT NULL,"
    "  kind TEXT NOT NULL, touched INTEGER NOT NULL, tokens REAL NOT NULL,"
    "  PRIMARY KEY (run_id, layer, kind, touched));"
    "CREATE TABLE IF NOT EXISTS traffic ("
    "  run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE, src_device INTEGER NOT NULL,"
    "  dst_device INTEGER NOT NULL, bytes REAL NOT NULL,"
    "  PRIMARY KEY (run_id, src_device, dst_device));"
    "CREATE INDEX IF NOT EXISTS replans_run ON replans (run_id);"
    "CREATE INDEX IF NOT EXISTS migrations_run ON migrations (run_id);";

enum { Q_RUN, Q_STEP, Q_LAYER, Q_DEV, Q_METRIC, Q_BOUND, Q_REPL, Q_TRACE, Q_REPLAN, Q_MIGR,
       Q_REQ, Q_METRIC_CI, Q_LOC, Q_LOCH, Q_TRAF, NQ };

/* "%s" is the schema written to: "stage", or "main" for a ":memory:" store. */
static const char *const SQL[NQ] = {
    [Q_RUN] = "INSERT INTO %s.runs (name, strategy, strategy_version, trace, model, hardware,"
              " nodes, devices, seed, config, config_hash, moesim_version, prior)"
              " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [Q_STEP] = "INSERT INTO %s.steps VALUES (?,?,?,?,?)",
    [Q_LAYER] = "INSERT INTO %s.layer_steps VALUES (?,?,?,?,?,?)",
    [Q_DEV] = "INSERT INTO %s.device_loads VALUES (?,?,?,?)",
    [Q_METRIC] = "INSERT OR REPLACE INTO %s.summary VALUES (?,?,?,?)",
    [Q_BOUND] = "INSERT INTO %s.layer_bounds VALUES (?,?,?,?,?)",
    [Q_REPL] = "INSERT INTO %s.replicas VALUES (?,?,?,?)",
    [Q_TRACE] = "INSERT INTO %s.trace_counts VALUES (?,?,?,?)",
    [Q_REPLAN] = "INSERT INTO %s.replans VALUES (?,?,?,?,?)",
    [Q_MIGR] = "INSERT INTO %s.migrations VALUES (?,?,?,?,?,?,?,?)",
    [Q_REQ] = "INSERT INTO %s.requests VALUES (?,?,?,?,?,?,?)",
    [Q_METRIC_CI] = "INSERT OR REPLACE INTO %s.summary_ci VALUES (?,?,?,?,?,?)",
    [Q_LOC] = "INSERT INTO %s.layer_locality VALUES (?,?,?,?,?,?)",
    [Q_LOCH] = "INSERT INTO %s.locality_hist VALUES (?,?,?,?,?)",
    [Q_TRAF] = "INSERT INTO %s.traffic VALUES (?,?,?,?)",
};

#define MAX_TABLES 32

/* A table of the schema, with its columns other than run_id, quoted. */
typedef struct {
    char name[64];
    char cols[1024];  /* "a","b" */
    char scols[1200]; /* s."a",s."b" */
} table_t;

struct store {
    sqlite3 *db;
    char *path;       /* the target */
    char *replace;    /* experiment whose older runs the staged ones replace */
    double wait_s;
    int make_parent;
    int batch;        /* publish only at store_finish */
    int direct;       /* ":memory:": rows go straight into main */
    int have_target;  /* main is the target file (else a private temporary) */
    int in_run;
    int staged;       /* committed runs waiting in the staging database */
    sqlite3_stmt *q[NQ];
    table_t t[MAX_TABLES];
    int nt;
    int64_t *ids;     /* pairs (staged, final) of the last publish */
    int n_ids, cap_ids;
};

static int fail(store_t *st, const char *what) {
    return ms_err("%s: %s: %s", st->path, what, st->db ? sqlite3_errmsg(st->db) : "no handle");
}

void store_fault(const char *point) {
    const char *at = getenv("MOESIM_FAULT");
    if (at && !strcmp(at, point)) raise(SIGKILL);
}

static int exec(store_t *st, const char *sql, const char *what) {
    return sqlite3_exec(st->db, sql, NULL, NULL, NULL) == SQLITE_OK ? MS_OK : fail(st, what);
}

/* The schema made in schema `s` (CREATE ... IF NOT EXISTS s.name). */
static int make_schema(store_t *st, const char *s) {
    size_t n = strlen(SCHEMA), k = 0;
    char *out = ms_malloc(2 * n + 1);
    for (const char *p = SCHEMA; *p;) {
        if (!strncmp(p, "EXISTS ", 7)) {
            k += (size_t)sprintf(out + k, "EXISTS %s.", s);
            p += 7;
        } else {
            out[k++] = *p++;
        }
    }
    out[k] = 0;
    int rc = exec(st, out, "cannot create the schema");
    free(out);
    return rc;
}

/* A quoted identifier, for names that come from our own schema. */
static void quote_id(char *out, size_t n, const char *id) {
    size_t k = 0;
    out[k++] = '"';
    for (; *id && k + 3 < n; id++) {
        if (*id == '"') out[k++] = '"';
        out[k++] = *id;
    }
    out[k++] = '"';
    out[k] = 0;
}

/* The tables and columns of the staging schema, which this process made
 * from SCHEMA: the list every copy uses, so nothing a file says about its
 * own tables is ever run. */
static int read_tables(store_t *st, const char *schema) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT name FROM %s.sqlite_master WHERE type = 'table' ORDER BY rowid", schema);
    sqlite3_stmt *q, *c;
    if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK)
        return fail(st, "cannot list the schema");
    st->nt = 0;
    int rc = MS_OK;
    while (rc == MS_OK && sqlite3_step(q) == SQLITE_ROW && st->nt < MAX_TABLES) {
        table_t *t = &st->t[st->nt++];
        snprintf(t->name, sizeof t->name, "%s", (const char *)sqlite3_column_text(q, 0));
        snprintf(sql, sizeof sql, "SELECT name FROM pragma_table_info(?1, '%s')", schema);
        if (sqlite3_prepare_v2(st->db, sql, -1, &c, NULL) != SQLITE_OK) {
            rc = fail(st, "cannot read the schema");
            break;
        }
        sqlite3_bind_text(c, 1, t->name, -1, SQLITE_STATIC);
        size_t k = 0, j = 0;
        t->cols[0] = t->scols[0] = 0;
        while (sqlite3_step(c) == SQLITE_ROW) {
            const char *col = (const char *)sqlite3_column_text(c, 0);
            if (!strcmp(col, "run_id")) continue;
            char qc[128];
            quote_id(qc, sizeof qc, col);
            k += (size_t)snprintf(t->cols + k, sizeof t->cols - k, "%s%s", k ? "," : "", qc);
            j += (size_t)snprintf(t->scols + j, sizeof t->scols - j, "%ss.%s", j ? "," : "", qc);
        }
        sqlite3_finalize(c);
    }
    sqlite3_finalize(q);
    return rc;
}

/* Whether schema `s` of the connection can take moesim runs: empty, or
 * holding our tables as tables with at least our columns. `role` names the
 * file in messages ("results database", "rank file"). */
/* The number of objects in schema s, or -1 (said) if it is not readable
 * as an SQLite database. */
static int probe(store_t *st, const char *s, const char *file, const char *role) {
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s.sqlite_master", s);
    sqlite3_stmt *q;
    int r = sqlite3_prepare_v2(st->db, sql, -1, &q, NULL);
    if (r == SQLITE_OK) r = sqlite3_step(q);
    int n = r == SQLITE_ROW ? sqlite3_column_int(q, 0) : -1;
    sqlite3_finalize(q);
    if (n < 0)
        ms_err("%s: cannot read it as a %s: %s (is it an SQLite file? give another --db, or "
               "move this file away)", file, role, sqlite3_errmsg(st->db));
    return n;
}

/* Databases from before runs.prior: every run of theirs planned from the
 * scored trace itself, so the column they gain says oracle. */
static int add_prior_column(store_t *st, const char *s) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM %s.sqlite_master WHERE type = 'table' AND name = "
             "'runs'), (SELECT count(*) FROM pragma_table_info('runs', '%s') WHERE name = "
             "'prior')", s, s);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK)
        return fail(st, "cannot read the runs table's columns");
    int r = sqlite3_step(q);
    int has_runs = r == SQLITE_ROW && sqlite3_column_int(q, 0) > 0;
    int has_prior = r == SQLITE_ROW && sqlite3_column_int(q, 1) > 0;
    sqlite3_finalize(q);
    if (r != SQLITE_ROW) return fail(st, "cannot read the runs table's columns");
    if (!has_runs || has_prior) return MS_OK;
    snprintf(sql, sizeof sql,
             "ALTER TABLE %s.runs ADD COLUMN prior TEXT NOT NULL DEFAULT 'oracle'", s);
    return exec(st, sql, "cannot add the prior column to runs (is the file writable?)");
}

static int check_schema(store_t *st, const char *s, const char *file, const char *role) {
    char sql[256];
    sqlite3_stmt *q;
    int r, n = probe(st, s, file, role);
    if (n < 0) return MS_ERR;
    if (n == 0) return MS_OK; /* an empty database: the schema is made at the first commit */
    for (int i = 0; i < st->nt; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT type FROM %s.sqlite_master WHERE name = ?1 AND type IN ('table','view')",
                 s);
        if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK)
            return fail(st, "cannot read the schema");
        sqlite3_bind_text(q, 1, st->t[i].name, -1, SQLITE_STATIC);
        r = sqlite3_step(q);
        int is_table = r == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(q, 0), "table");
        sqlite3_finalize(q);
        if (r != SQLITE_ROW) {
            if (i == 0)
                return ms_err("%s: not a moesim %s (it has tables but no 'runs' table); give "
                              "another --db file", file, role);
            continue; /* a table an older moesim did not have: made at the first commit */
        }
        if (!is_table)
            return ms_err("%s: not a moesim %s ('%s' is a view, not a table); give another "
                          "--db file", file, role, st->t[i].name);
        /* Every column of ours must be there. */
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM pragma_table_info(?1, 'stage') a WHERE a.name NOT IN"
                 " (SELECT name FROM pragma_table_info(?1, '%s'))", s);
        if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK)
            return fail(st, "cannot read the schema");
        sqlite3_bind_text(q, 1, st->t[i].name, -1, SQLITE_STATIC);
        int missing = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : 1;
        sqlite3_finalize(q);
        if (missing)
            return ms_err("%s: not a moesim %s of this version (table '%s' lacks %d of its "
                          "columns); give another --db file", file, role, st->t[i].name, missing);
    }
    return MS_OK;
}

static void close_db(store_t *st) {
    for (int i = 0; i < NQ; i++) {
        sqlite3_finalize(st->q[i]);
        st->q[i] = NULL;
    }
    sqlite3_close(st->db);
    st->db = NULL;
}

/* Opens the connection: main is the target (when it exists), a private
 * temporary otherwise, or ":memory:"; "stage" is a private temporary that
 * SQLite deletes itself (it is unlinked as soon as it is made, so even a
 * killed process leaves nothing of it). */
static int connect(store_t *st) {
    const char *name = st->direct ? ":memory:" : st->have_target ? st->path : "";
    int flags = SQLITE_OPEN_READWRITE | (st->have_target ? 0 : SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(name, &st->db, flags, NULL) != SQLITE_OK)
        return ms_err("%s: cannot open results database: %s (check the folder exists and is "
                      "writable)", st->path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
    /* A database is data: SQL stored in it (views, triggers, defaults) may
     * not call functions with side effects. */
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    double ms = st->wait_s * 1000;
    sqlite3_busy_timeout(st->db, ms > 2e9 ? 2000000000 : (int)ms);
    const char *w = st->direct ? "main" : "stage";
    if (st->have_target && probe(st, "main", st->path, "results database") < 0) return MS_ERR;
    if (exec(st, "PRAGMA foreign_keys = ON", "cannot set up the connection") ||
        (!st->direct && exec(st, "ATTACH '' AS stage", "cannot make the staging database")) ||
        make_schema(st, w) || read_tables(st, w))
        return MS_ERR;
    if (!st->direct && st->have_target &&
        (add_prior_column(st, "main") || check_schema(st, "main", st->path, "results database")))
        return MS_ERR;
    for (int i = 0; i < NQ; i++) {
        char sql[512];
        snprintf(sql, sizeof sql, SQL[i], w);
        if (sqlite3_prepare_v2(st->db, sql, -1, &st->q[i], NULL) != SQLITE_OK)
            return fail(st, "cannot prepare a statement (database from another moesim version?)");
    }
    return MS_OK;
}

/* Refusals that need no database: an empty name, a folder, a FIFO or a
 * device, a folder that does not exist. */
static int check_path(store_t *st) {
    const char *p = st->path;
    if (!*p)
        return ms_err("--db '': the results database needs a file name (example: --db "
                      "results/demo.db)");
    struct stat sb;
    char *dup = ms_strdup(p);
    char *dir = dirname(dup);
    int rc = MS_OK;
    if (stat(p, &sb) == 0) {
        if (!S_ISREG(sb.st_mode))
            rc = ms_err("%s: not a regular file (a folder, FIFO or device); give a file path "
                        "for --db", p);
        else if (access(p, R_OK | W_OK) || access(dir, W_OK | X_OK))
            rc = ms_err("%s: cannot write it or its folder: %s (check the permissions)", p,
                        strerror(errno));
        else
            st->have_target = 1;
    } else if (errno != ENOENT) {
        rc = ms_err("%s: cannot use it as the results database: %s", p, strerror(errno));
    } else if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode) || access(dir, W_OK | X_OK))
            rc = ms_err("%s: cannot create it: folder %s is not a writable folder", p, dir);
    } else {
        /* A missing folder is made at the first commit, one level only. */
        char *dup2 = ms_strdup(dir);
        char *up = dirname(dup2);
        if (!st->make_parent || stat(up, &sb) || !S_ISDIR(sb.st_mode))
            rc = ms_err("%s: cannot create it: folder %s does not exist (create it first)", p,
                        dir);
        free(dup2);
    }
    free(dup);
    return rc;
}

int store_open_results(const char *path, const store_opts_t *o, store_t **out) {
    *out = NULL;
    if (!path) path = "";
    store_t *st = ms_calloc(1, sizeof *st);
    st->path = ms_strdup(path);
    st->wait_s = o && o->wait_s > 0 ? o->wait_s : STORE_WAIT_S;
    st->make_parent = o && o->make_parent;
    st->batch = o && (o->batch || o->replace);
    if (o && o->replace) st->replace = ms_strdup(o->replace);
    st->direct = !strcmp(path, ":memory:");
    if ((!st->direct && check_path(st)) || connect(st)) {
        store_close(st);
        return MS_ERR;
    }
    *out = st;
    return MS_OK;
}

int store_open(const char *path, store_t **out) { return store_open_results(path, NULL, out); }

void store_close(store_t *st) {
    if (!st) return;
    if (st->in_run) store_run_abort(st);
    close_db(st); /* unpublished runs go with the staging database */
    free(st->ids);
    free(st->replace);
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

/* ---- publishing ---- */

/* The process holding the write lock of path, from SQLite's POSIX locks
 * (0 if none is seen). Called only while this process holds no lock on the
 * file, since closing the descriptor drops this process's locks on it. */
static long lock_holder(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0x40000000,
                       .l_len = 512 + 2};
    long pid = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK ? (long)fl.l_pid : 0;
    close(fd);
    return pid;
}

static int busy(store_t *st, const char *file) {
    long pid = lock_holder(file);
    char who[64] = "another process";
    if (pid > 0) snprintf(who, sizeof who, "another process (pid %ld)", pid);
    return ms_err("%s: %s kept the database locked for more than %g s, the wait set by --wait-s; "
                  "nothing was written (let it finish and run again, or give a longer --wait-s)",
                  file, who, st->wait_s);
}

static void add_id(store_t *st, int64_t staged, int64_t final) {
    if (st->n_ids == st->cap_ids)
        st->ids = ms_realloc(st->ids, (size_t)(st->cap_ids = st->cap_ids ? 2 * st->cap_ids : 16) *
                                          2 * sizeof *st->ids);
    st->ids[2 * st->n_ids] = staged;
    st->ids[2 * st->n_ids + 1] = final;
    st->n_ids++;
}

int64_t store_final_id(const store_t *st, int64_t staged) {
    if (st->direct) return staged;
    for (int i = 0; i < st->n_ids; i++)
        if (st->ids[2 * i] == staged) return st->ids[2 * i + 1];
    return -1;
}

/* Copies the runs of schema `from` into schema `to` (both attached to the
 * connection, inside the caller's transaction): runs get new ids in their
 * old order, and every table of the schema follows through the id map.
 * Only our own table and column names are used; `skip_known` leaves out runs
 * whose config_hash `to` already holds. Records the ids; *n gets the count. */
static int copy_runs(store_t *st, const char *from, const char *to, int skip_known, int *n) {
    char sql[4096];
    sqlite3_stmt *pick = NULL, *add = NULL, *map = NULL;
    int rc = MS_ERR, r;
    *n = 0;
    st->n_ids = 0;
    if (exec(st, "CREATE TEMP TABLE IF NOT EXISTS merge_map (old INTEGER PRIMARY KEY,"
                 " new INTEGER NOT NULL); DELETE FROM temp.merge_map;",
             "cannot make the run-id map"))
        return MS_ERR;
    snprintf(sql, sizeof sql, "SELECT run_id FROM %s.runs%s%s%s ORDER BY run_id", from,
             skip_known ? " WHERE config_hash NOT IN (SELECT config_hash FROM " : "",
             skip_known ? to : "", skip_known ? ".runs)" : "");
    if (sqlite3_prepare_v2(st->db, sql, -1, &pick, NULL) != SQLITE_OK) goto bad;
    snprintf(sql, sizeof sql, "INSERT INTO %s.runs (%s) SELECT %s FROM %s.runs WHERE run_id = ?1",
             to, st->t[0].cols, st->t[0].cols, from);
    if (sqlite3_prepare_v2(st->db, sql, -1, &add, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "INSERT INTO temp.merge_map VALUES (?1, ?2)", -1, &map,
                           NULL) != SQLITE_OK)
        goto bad;
    while ((r = sqlite3_step(pick)) == SQLITE_ROW) {
        sqlite3_int64 old = sqlite3_column_int64(pick, 0);
        sqlite3_bind_int64(add, 1, old);
        if (step(st, add)) goto out;
        sqlite3_int64 nw = sqlite3_last_insert_rowid(st->db);
        sqlite3_bind_int64(map, 1, old);
        sqlite3_bind_int64(map, 2, nw);
        if (step(st, map)) goto out;
        add_id(st, old, nw);
        (*n)++;
    }
    if (r != SQLITE_DONE) goto bad;
    for (int i = 1; i < st->nt; i++) {
        const table_t *t = &st->t[i];
        /* A table an older file lacks has no rows to copy. */
        snprintf(sql, sizeof sql, "SELECT 1 FROM %s.sqlite_master WHERE type = 'table' AND name = ?1",
                 from);
        sqlite3_stmt *has;
        if (sqlite3_prepare_v2(st->db, sql, -1, &has, NULL) != SQLITE_OK) goto bad;
        sqlite3_bind_text(has, 1, t->name, -1, SQLITE_STATIC);
        int present = sqlite3_step(has) == SQLITE_ROW;
        sqlite3_finalize(has);
        if (!present) continue;
        snprintf(sql, sizeof sql,
                 "INSERT INTO %s.\"%s\" (run_id,%s) SELECT m.new,%s FROM %s.\"%s\" s"
                 " JOIN temp.merge_map m ON s.run_id = m.old",
                 to, t->name, t->cols, t->scols, from, t->name);
        if (exec(st, sql, "cannot copy the runs' rows")) goto out;
    }
    rc = MS_OK;
    goto out;
bad:
    fail(st, "cannot copy runs");
out:
    sqlite3_finalize(pick);
    sqlite3_finalize(add);
    sqlite3_finalize(map);
    return rc;
}

/* Empties the staging database (inside the caller's transaction). */
static int clear_stage(store_t *st) {
    char sql[128];
    for (int i = st->nt - 1; i >= 0; i--) {
        snprintf(sql, sizeof sql, "DELETE FROM stage.\"%s\"", st->t[i].name);
        if (exec(st, sql, "cannot clear the staging database")) return MS_ERR;
    }
    st->staged = 0;
    return MS_OK;
}

/* Drops what is staged, after a failed publish. */
static void drop_staged(store_t *st) {
    if (st->direct || !st->db) return;
    if (sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK) {
        int was = ms_err_quiet(1);
        int rc = clear_stage(st);
        ms_err_quiet(was);
        sqlite3_exec(st->db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
    }
}

static int begin_write(store_t *st, const char *file) {
    int r = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (r == SQLITE_OK) return MS_OK;
    if (r == SQLITE_BUSY) return busy(st, file);
    return fail(st, "cannot start a transaction");
}

/* The staged runs into the existing target attached as schema `to`, in one
 * transaction: the new runs are copied, then (with replace) the
 * experiment's other runs are deleted, then the staging is emptied. */
static int publish_into(store_t *st, const char *to) {
    int staged = st->staged;
    if (begin_write(st, st->path)) return MS_ERR;
    int n;
    int rc = make_schema(st, to);
    if (rc == MS_OK) rc = copy_runs(st, "stage", to, 0, &n);
    if (rc == MS_OK && st->replace) {
        char sql[256];
        snprintf(sql, sizeof sql, "DELETE FROM %s.runs WHERE name = ?1 AND run_id NOT IN"
                                  " (SELECT new FROM temp.merge_map)", to);
        sqlite3_stmt *d;
        if (sqlite3_prepare_v2(st->db, sql, -1, &d, NULL) != SQLITE_OK) {
            rc = fail(st, "cannot prepare the replacement");
        } else {
            sqlite3_bind_text(d, 1, st->replace, -1, SQLITE_STATIC);
            if (sqlite3_step(d) != SQLITE_DONE) rc = fail(st, "cannot delete the earlier runs");
            sqlite3_finalize(d);
        }
    }
    if (rc == MS_OK) rc = clear_stage(st);
    if (rc == MS_OK) store_fault("publish");
    if (rc == MS_OK) {
        int r = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
        if (r == SQLITE_BUSY) rc = busy(st, st->path);
        else if (r != SQLITE_OK) rc = fail(st, "cannot commit the runs");
    }
    if (rc != MS_OK) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        st->staged = staged; /* still staged, still unpublished */
    }
    return rc;
}

/* Removes path only if it is still the file this process made. */
static void unlink_own(const char *path, dev_t dev, ino_t ino) {
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_dev == dev && sb.st_ino == ino) unlink(path);
}

/* Attaches the target (now existing) as "dst", publishes into it. */
static int publish_attached(store_t *st) {
    sqlite3_stmt *a;
    if (sqlite3_prepare_v2(st->db, "ATTACH ?1 AS dst", -1, &a, NULL) != SQLITE_OK)
        return fail(st, "cannot prepare ATTACH");
    sqlite3_bind_text(a, 1, st->path, -1, SQLITE_STATIC);
    int r = sqlite3_step(a);
    sqlite3_finalize(a);
    if (r != SQLITE_DONE) return fail(st, "cannot open it to add the runs");
    int rc = add_prior_column(st, "dst");
    if (rc == MS_OK) rc = check_schema(st, "dst", st->path, "results database");
    if (rc == MS_OK) rc = publish_into(st, "dst");
    sqlite3_exec(st->db, "DETACH dst", NULL, NULL, NULL);
    return rc;
}

/* The first commit into a target that did not exist: the staged runs are
 * written to a new file under a temporary name in the target's folder,
 * which is then linked to the target's name, which fails rather than
 * replacing a file another process made meanwhile (then the runs are added
 * to that file instead). The target never exists half-made. */
static int publish_new(store_t *st) {
    char *dup = ms_strdup(st->path);
    char *dir = dirname(dup);
    if (st->make_parent && access(dir, F_OK)) mkdir(dir, 0777);
    free(dup);
    size_t len = strlen(st->path) + 16;
    char *tmp = ms_malloc(len);
    snprintf(tmp, len, "%s.new-XXXXXX", st->path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return ms_err("%s: cannot create it: %s (check the folder is writable)", st->path,
                      strerror(e));
    }
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    struct stat sb;
    fstat(fd, &sb);
    int rc = MS_OK, n = 0;
    /* The ids stay as staged: the new file is a copy of the staging. */
    st->n_ids = 0;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db, "SELECT run_id FROM stage.runs ORDER BY run_id", -1, &q,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            add_id(st, sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 0));
            n++;
        }
        sqlite3_finalize(q);
    }
    if (sqlite3_prepare_v2(st->db, "VACUUM stage INTO ?1", -1, &q, NULL) != SQLITE_OK) {
        rc = fail(st, "cannot prepare the new file");
    } else {
        sqlite3_bind_text(q, 1, tmp, -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = fail(st, "cannot write the new file");
        sqlite3_finalize(q);
    }
    if (rc == MS_OK && fsync(fd)) rc = ms_err("%s: cannot write it: %s", tmp, strerror(errno));
    close(fd);
    if (rc == MS_OK) store_fault("link");
    if (rc == MS_OK && link(tmp, st->path) == 0) {
        unlink_own(tmp, sb.st_dev, sb.st_ino);
        free(tmp);
        st->staged = 0;
        close_db(st); /* main becomes the target; the staging starts empty */
        st->have_target = 1;
        return connect(st);
    }
    int e = errno;
    unlink_own(tmp, sb.st_dev, sb.st_ino);
    free(tmp);
    if (rc) return rc;
    if (e != EEXIST && e != EPERM && e != ENOTSUP && e != EXDEV)
        return ms_err("%s: cannot create it: %s", st->path, strerror(e));
    /* Made by another process meanwhile (or a folder without hard links):
     * add the runs to it like to any existing database. */
    if (publish_attached(st)) return MS_ERR;
    close_db(st);
    st->have_target = 1;
    return connect(st);
}

static int publish(store_t *st) {
    if (st->direct || !st->staged) return MS_OK;
    store_fault("staged");
    int rc;
    if (st->have_target) {
        rc = publish_into(st, "main");
    } else {
        struct stat sb;
        rc = stat(st->path, &sb) == 0 ? publish_attached(st) : publish_new(st);
        if (rc == MS_OK && !st->have_target) {
            close_db(st);
            st->have_target = 1;
            rc = connect(st);
        }
    }
    if (rc == MS_OK) store_fault("published");
    return rc;
}

int store_finish(store_t *st) { return publish(st); }

int store_run_begin(store_t *st, const store_run_t *r, int64_t *run_id) {
    /* Only the staging database is written until the publish, so a plain
     * BEGIN takes no lock on the target. */
    const char *begin = st->direct ? "BEGIN IMMEDIATE" : "BEGIN";
    if (sqlite3_exec(st->db, begin, NULL, NULL, NULL) != SQLITE_OK)
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
    bind_text(q, 13, r->prior ? r->prior : "oracle");
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
    st->staged++;
    /* Otherwise each run is published at once (the target's lock is held
     * only for that copy); a batch waits for store_finish. */
    if (st->batch || publish(st) == MS_OK) return MS_OK;
    drop_staged(st); /* the run failed: the next one starts clean */
    return MS_ERR;
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

int store_metric_ci(store_t *st, int64_t run, const char *metric, int n, double mean,
                    double half_width, const char *unit) {
    sqlite3_stmt *q = st->q[Q_METRIC_CI];
    sqlite3_bind_int64(q, 1, run);
    bind_text(q, 2, metric);
    sqlite3_bind_int(q, 3, n);
    sqlite3_bind_double(q, 4, mean);
    sqlite3_bind_double(q, 5, half_width);
    bind_text(q, 6, unit ? unit : "");
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

int store_layer_locality(store_t *st, int64_t run, int layer, double cross_node_bytes,
                         double bytes, double nodes_mean, double devices_mean) {
    sqlite3_stmt *q = st->q[Q_LOC];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int(q, 2, layer);
    sqlite3_bind_double(q, 3, cross_node_bytes);
    sqlite3_bind_double(q, 4, bytes);
    sqlite3_bind_double(q, 5, nodes_mean);
    sqlite3_bind_double(q, 6, devices_mean);
    return step(st, q);
}

int store_locality_hist(store_t *st, int64_t run, int layer, const char *kind, int touched,
                        double tokens) {
    sqlite3_stmt *q = st->q[Q_LOCH];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int(q, 2, layer);
    bind_text(q, 3, kind);
    sqlite3_bind_int(q, 4, touched);
    sqlite3_bind_double(q, 5, tokens);
    return step(st, q);
}

int store_traffic(store_t *st, int64_t run, int src, int dst, double bytes) {
    sqlite3_stmt *q = st->q[Q_TRAF];
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_int(q, 2, src);
    sqlite3_bind_int(q, 3, dst);
    sqlite3_bind_double(q, 4, bytes);
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

int store_merge(store_t *st, const char *src_path, int *n_runs) {
    if (st->staged) return ms_err("%s: runs are waiting to be published; finish them first", st->path);
    sqlite3_stmt *a;
    if (sqlite3_prepare_v2(st->db, "ATTACH ?1 AS src", -1, &a, NULL) != SQLITE_OK)
        return fail(st, "cannot prepare ATTACH");
    sqlite3_bind_text(a, 1, src_path, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(a);
    sqlite3_finalize(a);
    if (r != SQLITE_DONE)
        return ms_err("%s: cannot attach %s to merge it: %s", st->path, src_path,
                      sqlite3_errmsg(st->db));
    /* The rows go through the staging database, then the usual publish. */
    const char *to = st->direct ? "main" : "stage";
    int n = 0;
    int rc = check_schema(st, "src", src_path, "rank file");
    if (rc == MS_OK) rc = exec(st, "BEGIN", "cannot start the merge");
    if (rc == MS_OK) {
        if (st->direct) rc = copy_runs(st, "src", to, 1, &n);
        else if (st->have_target) {
            /* leave out what the target already holds */
            rc = copy_runs(st, "src", to, 0, &n);
            if (rc == MS_OK)
                rc = exec(st, "DELETE FROM stage.runs WHERE config_hash IN"
                              " (SELECT config_hash FROM main.runs)", "cannot drop known runs");
        } else {
            rc = copy_runs(st, "src", to, 0, &n);
        }
        if (rc == MS_OK) rc = exec(st, "COMMIT", "cannot commit the merge");
        if (rc != MS_OK) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_exec(st->db, "DETACH src", NULL, NULL, NULL);
    if (rc != MS_OK || st->direct) {
        if (rc == MS_OK && n_runs) *n_runs = n;
        return rc;
    }
    /* How many survived the de-duplication. */
    sqlite3_stmt *q;
    n = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM stage.runs", -1, &q, NULL) == SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
    }
    st->staged = n;
    char *keep = st->replace;
    st->replace = NULL; /* a merge adds; it never replaces */
    rc = n ? publish(st) : MS_OK;
    st->replace = keep;
    if (rc == MS_OK && n_runs) *n_runs = n;
    return rc;
}
