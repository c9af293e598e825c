/* sweep: expansion and checking of a sweep file's points, resume by config
 * hash, the serial driver and the progress line. The MPI driver is in
 * sweep_mpi.c and reuses the pieces here. */
#include "sweep.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "place.h"
#include "run.h"
#include "util.h"

/* ---- reading the sweep file ---- */

/* One "section.key = value" of a sweep file with where it was written. */
typedef struct {
    const char *key, *value;
    int line;
} assign_t;

/* An axis: a key and the values it takes. */
typedef struct {
    assign_t a;     /* the whole line */
    int n;          /* values */
    char **values;
} axis_t;

/* A [point.NAME] section: its name and its assignments. */
typedef struct {
    const char *name;
    int line;
    int n;
    assign_t *a;
} group_t;

typedef struct {
    cfg_t *file;            /* the sweep file itself */
    cfg_t *base;            /* the base experiment config */
    assign_t *set;          /* [set], applied to every point */
    int n_set;
    axis_t axes[SWEEP_MAX_AXES];
    int n_axes;
    group_t *groups;        /* [point.*] sections in file order */
    int n_groups;
    const char *const *cli; /* --set overrides, applied last */
    int n_cli;
    int cap;                /* points the sweep's array has room for */
} spec_t;

static void spec_free(spec_t *s) {
    for (int i = 0; i < s->n_axes; i++) {
        for (int j = 0; j < s->axes[i].n; j++) free(s->axes[i].values[j]);
        free(s->axes[i].values);
    }
    for (int i = 0; i < s->n_groups; i++) free(s->groups[i].a);
    free(s->groups);
    free(s->set);
    cfg_free(s->base);
    cfg_free(s->file);
}

/* A sweep key must be section.key; try it on a scratch config once so a
 * bad one is reported at its line, not once per point. */
static int check_key(const char *path, int line, const char *key) {
    cfg_t *c = cfg_new();
    size_t n = strlen(key) + 3;
    char *buf = ms_malloc(n);
    snprintf(buf, n, "%s=x", key);
    int rc = cfg_set_assign(c, buf, path, line);
    free(buf);
    cfg_free(c);
    return rc;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

/* "0, 32, 64" -> three values; an empty one is a typo. */
static int split_axis(const char *path, axis_t *ax) {
    char *dup = ms_strdup(ax->a.value), *p = dup;
    int rc = MS_OK;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        char *v = trim(p);
        if (!*v) {
            rc = ms_err("%s:%d: [axes] %s has an empty value (give values separated by commas, "
                        "example: %s = 0, 32, 64)", path, ax->a.line, ax->a.key, ax->a.key);
            break;
        }
        ax->values = ms_realloc(ax->values, (size_t)(ax->n + 1) * sizeof *ax->values);
        ax->values[ax->n++] = ms_strdup(v);
        if (!comma) break;
        p = comma + 1;
    }
    free(dup);
    return rc;
}

/* Resolves the base config against the sweep file's folder. */
static int load_base(const char *path, const char *base, cfg_t **out) {
    char buf[4096];
    ms_path_beside(path, base, buf, sizeof buf);
    return cfg_load(buf, out);
}

static int parse(const char *path, spec_t *s) {
    if (cfg_load(path, &s->file)) return MS_ERR;
    cfg_t *f = s->file;
    cfg_set_kind(f, CFGK_SWEEP);
    int n = cfg_count(f), first_point_line = 0;
    s->set = ms_calloc((size_t)n, sizeof *s->set);
    s->groups = ms_calloc((size_t)n, sizeof *s->groups);
    for (int i = 0; i < n; i++) {
        const char *sec, *key, *val;
        int line;
        cfg_entry(f, i, &sec, &key, &val, &line);
        assign_t a = {key, val, line};
        if (!strcasecmp(sec, "sweep")) continue; /* read by name below */
        cfg_has(f, sec, key);                     /* walked here: not unknown */
        if (!strcasecmp(sec, "set")) {
            if (check_key(path, line, key)) return MS_ERR;
            s->set[s->n_set++] = a;
        } else if (!strcasecmp(sec, "axes")) {
            if (check_key(path, line, key)) return MS_ERR;
            if (s->n_axes == SWEEP_MAX_AXES)
                return ms_err("%s:%d: more than %d axes (use fewer, or a list of points)", path,
                              line, SWEEP_MAX_AXES);
            axis_t *ax = &s->axes[s->n_axes++];
            ax->a = a;
            if (split_axis(path, ax)) return MS_ERR;
        } else if (!strncasecmp(sec, "point.", 6) && sec[6]) {
            if (check_key(path, line, key)) return MS_ERR;
            group_t *g = NULL;
            for (int j = 0; j < s->n_groups; j++)
                if (!strcasecmp(s->groups[j].name, sec + 6)) g = &s->groups[j];
            if (!g) {
                g = &s->groups[s->n_groups++];
                g->name = sec + 6;
                g->line = line;
                g->a = ms_calloc((size_t)n, sizeof *g->a);
                if (!first_point_line) first_point_line = line;
            }
            g->a[g->n++] = a;
        } else {
            return ms_err("%s:%d: unknown section [%s] (a sweep file has [sweep], [set], [axes] "
                          "and [point.NAME] sections)", path, line, sec);
        }
    }
    const char *base, *mode;
    if (cfg_str(f, "sweep", "base", NULL, &base) || cfg_str(f, "sweep", "mode", "grid", &mode))
        return MS_ERR;
    if (cfg_check_unused(f)) return MS_ERR; /* unknown keys in [sweep] */
    if (!base)
        return ms_err("%s: no [sweep] base (the experiment config every point starts from, "
                      "relative to this file; example: base = demo.ini)", path);
    if (!strcasecmp(mode, "grid")) {
        if (!s->n_axes)
            return ms_err("%s: mode = grid needs an [axes] section (example: "
                          "placement.redundant = 0, 32, 64)", cfg_where(f, "sweep", "mode"));
        if (s->n_groups)
            return ms_err("%s:%d: [point.%s] in a grid sweep (set mode = list to run listed "
                          "points)", path, first_point_line, s->groups[0].name);
    } else if (!strcasecmp(mode, "list")) {
        if (!s->n_groups)
            return ms_err("%s: mode = list needs [point.NAME] sections (example: [point.a] "
                          "then cluster.nodes = 2)", cfg_where(f, "sweep", "mode"));
    } else {
        return ms_err("%s: [sweep] mode = '%s' (give grid or list)", cfg_where(f, "sweep", "mode"),
                      mode);
    }
    return load_base(path, base, &s->base);
}

/* ---- expanding and checking the points ---- */

static int apply(cfg_t *c, const char *path, const assign_t *a, const char *value) {
    size_t n = strlen(a->key) + strlen(value) + 2;
    char *buf = ms_malloc(n);
    snprintf(buf, n, "%s=%s", a->key, value);
    int rc = cfg_set_assign(c, buf, path, a->line);
    free(buf);
    return rc;
}

/* Appends to a growing label. */
static void cat(char **s, size_t *len, const char *a, const char *b, const char *c) {
    size_t add = strlen(a) + strlen(b) + strlen(c) + 2;
    *s = ms_realloc(*s, *len + add);
    *len += (size_t)snprintf(*s + *len, add, "%s%s%s%s", *len ? " " : "", a, b, c);
}

/* Loads and checks a point's config: spec, trace, strategies, unknown keys. */
static int check_point(cfg_t *c, run_spec_t *spec) {
    if (run_spec_load(c, spec) || run_spec_check(spec)) return MS_ERR;
    return MS_OK;
}

/* A point's config: the base, [set], the list point g's lines, the axis
 * values idx, then --set. *label (when not NULL) gets what varies. */
static int build(const spec_t *s, const char *path, const group_t *g, const int *idx,
                 cfg_t **out, char **label) {
    cfg_t *c = cfg_copy(s->base);
    size_t len = 0;
    int bad = 0;
    for (int i = 0; i < s->n_set && !bad; i++) bad = apply(c, path, &s->set[i], s->set[i].value);
    if (g && label) cat(label, &len, g->name, "", "");
    for (int i = 0; g && i < g->n && !bad; i++) bad = apply(c, path, &g->a[i], g->a[i].value);
    for (int i = 0; i < s->n_axes && !bad; i++) {
        const axis_t *ax = &s->axes[i];
        bad = apply(c, path, &ax->a, ax->values[idx[i]]);
        if (label && strcasecmp(ax->a.key, "placement.strategies")) /* strategy ends labels */
            cat(label, &len, ax->a.key, "=", ax->values[idx[i]]);
    }
    for (int i = 0; i < s->n_cli && !bad; i++) bad = cfg_set_assign(c, s->cli[i], "--set", i + 1);
    *out = c;
    return bad ? MS_ERR : MS_OK;
}

/* Builds a point (list point g, axis value indices idx), checks it, and
 * adds one sweep point per strategy of it. */
static int add_point(spec_t *s, sweep_t *sw, const group_t *g, const int *idx, int number,
                     int total) {
    const char *path = sw->path;
    cfg_t *c = NULL;
    char *label = NULL;
    run_spec_t spec;
    int rc = MS_ERR;
    /* Quietly first: a bad point is then announced before its reasons
     * (explain_point), and the last error is the cause with its file:line. */
    int was = ms_err_quiet(1);
    int bad = build(s, path, g, idx, &c, &label) || check_point(c, &spec);
    ms_err_quiet(was);
    if (bad) {
        ms_err("%s: point %d of %d (%s) is not valid, nothing was run:", path, number, total,
               label ? label : "base config");
        goto out;
    }
    for (int k = 0; k < spec.n_strategies; k++) {
        if (sw->n_points == SWEEP_MAX_POINTS) {
            ms_err("%s: more than %d runs (split the sweep)", path, SWEEP_MAX_POINTS);
            goto out;
        }
        if (sw->n_points == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 64;
            sw->pt = ms_realloc(sw->pt, (size_t)s->cap * sizeof *sw->pt);
        }
        const place_ops_t *ops = place_find(spec.strategies[k]);
        sweep_point_t *p = &sw->pt[sw->n_points++];
        memset(p, 0, sizeof *p);
        p->cfg = cfg_copy(c);
        cfg_set(p->cfg, "placement", "strategies", ops->name, path, 0);
        size_t n = (label ? strlen(label) : 0) + strlen(ops->name) + 2;
        p->label = ms_malloc(n);
        snprintf(p->label, n, "%s%s%s", label ? label : "", label ? " " : "", ops->name);
        free(run_config_text(p->cfg, ops->name, p->hash));
    }
    rc = MS_OK;
out:
    free(label);
    cfg_free(c);
    return rc;
}

/* The loud pass over a bad point: the same steps, messages printed. */
static void explain_point(const spec_t *s, const char *path, const group_t *g, const int *idx) {
    cfg_t *c;
    run_spec_t spec;
    if (build(s, path, g, idx, &c, NULL) == MS_OK) check_point(c, &spec);
    cfg_free(c);
}

static int cmp_hash(const void *a, const void *b) {
    const sweep_point_t *x = *(sweep_point_t *const *)a, *y = *(sweep_point_t *const *)b;
    return strcmp(x->hash, y->hash);
}

/* Two points with one config would make resume ambiguous: refuse them. */
static int check_unique(sweep_t *sw) {
    sweep_point_t **v = ms_malloc((size_t)(sw->n_points ? sw->n_points : 1) * sizeof *v);
    for (int i = 0; i < sw->n_points; i++) v[i] = &sw->pt[i];
    qsort(v, (size_t)sw->n_points, sizeof *v, cmp_hash);
    int rc = MS_OK;
    for (int i = 1; i < sw->n_points && rc == MS_OK; i++)
        if (!strcmp(v[i - 1]->hash, v[i]->hash)) {
            const sweep_point_t *a = v[i - 1] < v[i] ? v[i - 1] : v[i];
            const sweep_point_t *b = v[i - 1] < v[i] ? v[i] : v[i - 1];
            rc = ms_err("%s: points %d (%s) and %d (%s) are the same run (a value given twice, "
                        "or an axis that --set overrides? remove one)", sw->path,
                        (int)(a - sw->pt) + 1, a->label, (int)(b - sw->pt) + 1, b->label);
        }
    free(v);
    return rc;
}

int sweep_load(const char *path, const char *const *sets, int n_sets, sweep_t **out) {
    spec_t s;
    memset(&s, 0, sizeof s);
    s.cli = sets;
    s.n_cli = n_sets;
    for (int i = 0; i < n_sets; i++)
        if (check_key("--set", i + 1, sets[i])) return MS_ERR;
    sweep_t *sw = ms_calloc(1, sizeof *sw);
    sw->path = ms_strdup(path);
    if (parse(path, &s)) goto fail;

    /* Count before building anything: a runaway grid fails at once. */
    double combos = s.n_groups ? s.n_groups : 1;
    for (int i = 0; i < s.n_axes; i++) combos *= s.axes[i].n;
    if (combos > SWEEP_MAX_POINTS) {
        ms_err("%s: %.0f points (more than %d; split the sweep)", path, combos, SWEEP_MAX_POINTS);
        goto fail;
    }
    int total = (int)combos;
    int idx[SWEEP_MAX_AXES] = {0};
    int number = 0;
    for (int gi = 0; gi < (s.n_groups ? s.n_groups : 1); gi++) {
        const group_t *g = s.n_groups ? &s.groups[gi] : NULL;
        memset(idx, 0, sizeof idx);
        for (;;) {
            if (add_point(&s, sw, g, idx, ++number, total)) {
                explain_point(&s, path, g, idx);
                goto fail;
            }
            int a = s.n_axes - 1; /* odometer: the last axis turns fastest */
            while (a >= 0 && ++idx[a] == s.axes[a].n) idx[a--] = 0;
            if (a < 0) break;
        }
    }
    if (check_unique(sw)) goto fail;
    spec_free(&s);
    *out = sw;
    return MS_OK;
fail:
    spec_free(&s);
    sweep_free(sw);
    return MS_ERR;
}

void sweep_free(sweep_t *sw) {
    if (!sw) return;
    for (int i = 0; i < sw->n_points; i++) {
        cfg_free(sw->pt[i].cfg);
        free(sw->pt[i].label);
    }
    free(sw->pt);
    free(sw->path);
    free(sw);
}

/* ---- resume ---- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Marks the points whose config hash db already holds. */
static int mark_done(sweep_t *sw, sqlite3 *db, const char *path, int *n_done) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT config_hash FROM runs", -1, &q, NULL) != SQLITE_OK)
        return ms_err("%s: cannot read its runs: %s (is it a moesim results database?)", path,
                      sqlite3_errmsg(db));
    char **h = NULL;
    int n = 0, cap = 0, r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        if (n == cap) h = ms_realloc(h, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *h);
        h[n++] = ms_strdup((const char *)sqlite3_column_text(q, 0));
    }
    sqlite3_finalize(q);
    int rc = r == SQLITE_DONE ? MS_OK : ms_err("%s: cannot read its runs: %s", path,
                                               sqlite3_errmsg(db));
    if (n) qsort(h, (size_t)n, sizeof *h, cmp_str);
    *n_done = 0;
    for (int i = 0; i < sw->n_points; i++) {
        const char *key = sw->pt[i].hash;
        sw->pt[i].done = n && bsearch(&key, h, (size_t)n, sizeof *h, cmp_str) != NULL;
        *n_done += sw->pt[i].done;
    }
    for (int i = 0; i < n; i++) free(h[i]);
    free(h);
    return rc;
}

void sweep_rank_path(const char *db, const char *sweep_id, int rank, char *out, size_t n) {
    snprintf(out, n, "%s.%s.rank%d", db, sweep_id, rank);
}

void sweep_new_id(char out[SWEEP_ID_LEN]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, SWEEP_ID_LEN, "%lx-%lx%05lx", (unsigned long)getpid(), (unsigned long)ts.tv_sec,
             (unsigned long)(ts.tv_nsec / 10000) & 0xfffff);
}

int sweep_merge_file(store_t *st, const char *path, int *n_runs) {
    return store_merge(st, path, n_runs);
}

int sweep_prepare(sweep_t *sw, const char *db, store_t **out, sweep_stats_t *st) {
    store_t *s;
    store_opts_t so = {.make_parent = 1};
    if (store_open_results(db, &so, &s)) return MS_ERR;
    /* Rank files are read only by the sweep that wrote them (their names
     * carry its id): a stray one beside the database is never merged. */
    if (mark_done(sw, store_db(s), db, &st->skipped)) {
        store_close(s);
        return MS_ERR;
    }
    st->points = sw->n_points;
    *out = s;
    return MS_OK;
}

/* ---- running ---- */

int sweep_run_point(const sweep_t *sw, int i, store_t *st, char *err) {
    const sweep_point_t *p = &sw->pt[i];
    run_spec_t spec;
    run_summary_t sum;
    int was = ms_err_quiet(1);
    int rc = run_spec_load(p->cfg, &spec);
    if (rc == MS_OK) rc = run_one(&spec, spec.strategies[0], st, &sum);
    ms_err_quiet(was);
    if (rc) snprintf(err, SWEEP_ERR_LEN, "%s", ms_err_last());
    return rc;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The sweep's line through progress.c: points finished of those to run,
 * the ETA at the rate so far. */
static void draw(sweep_track_t *t) {
    if (!t->progress || t->quiet) return;
    char d[160];
    snprintf(d, sizeof d, "%d of %d done, %d running, %d failed, %d skipped", t->ran, t->todo,
             t->running, t->failed, t->sw->n_points - t->todo);
    progress_update(&t->line, t->ran + t->failed, t->todo, d, 1);
}

void sweep_track_begin(sweep_track_t *t, const sweep_t *sw, int progress) {
    memset(t, 0, sizeof *t);
    t->sw = sw;
    t->progress = progress;
    t->quiet = ms_err_quiet(0);
    ms_err_quiet(t->quiet);
    t->t0 = now_s();
    progress_begin_on(&t->line, stderr, progress && !t->quiet, "sweep");
    for (int i = 0; i < sw->n_points; i++) t->todo += !sw->pt[i].done;
    t->failed_pt = ms_calloc((size_t)t->todo + 1, sizeof *t->failed_pt);
    draw(t);
}

int sweep_track_next(sweep_track_t *t) {
    while (t->next < t->sw->n_points && t->sw->pt[t->next].done) t->next++;
    if (t->next == t->sw->n_points) return -1;
    t->running++;
    draw(t);
    return t->next++;
}

void sweep_track_end(sweep_track_t *t, int i, int ok, const char *err) {
    t->running--;
    if (ok) {
        t->ran++;
    } else {
        t->failed_pt[t->failed++] = i + 1;
        if (!t->quiet)
            fprintf(stderr, "%smoesim: %s: point %d of %d (%s) failed: %s (the others go on)\n",
                    t->progress ? "\r\033[K" : "", t->sw->path, i + 1, t->sw->n_points,
                    t->sw->pt[i].label, err);
    }
    draw(t);
}

void sweep_track_finish(sweep_track_t *t, sweep_stats_t *st) {
    progress_end(&t->line);
    st->ran = t->ran;
    st->failed = t->failed;
    st->wall_s = now_s() - t->t0;
    if (t->failed && !t->quiet) {
        fprintf(stderr, "moesim: %s: %d point%s failed:", t->sw->path, t->failed,
                t->failed > 1 ? "s" : "");
        for (int i = 0; i < t->failed; i++) fprintf(stderr, " %d", t->failed_pt[i]);
        fputs(" (errors above; a re-run tries them again)\n", stderr);
    }
    free(t->failed_pt);
    t->failed_pt = NULL;
}

int sweep_run(sweep_t *sw, const sweep_opts_t *o, sweep_stats_t *st) {
    memset(st, 0, sizeof *st);
    if (o->dry_run) return sweep_list(sw, o, st);
    store_t *db;
    if (sweep_prepare(sw, o->db, &db, st)) return MS_ERR;
    sweep_track_t t;
    sweep_track_begin(&t, sw, o->progress);
    char err[SWEEP_ERR_LEN];
    int i;
    while ((i = sweep_track_next(&t)) >= 0) {
        int ok = sweep_run_point(sw, i, db, err) == MS_OK;
        sweep_track_end(&t, i, ok, err);
        if (ok && o->on_stored) o->on_stored(i, o->ctx);
    }
    sweep_track_finish(&t, st);
    store_close(db);
    return MS_OK;
}

int sweep_list(sweep_t *sw, const sweep_opts_t *o, sweep_stats_t *st) {
    memset(st, 0, sizeof *st);
    st->points = sw->n_points;
    /* Read-only: a dry run writes nothing, not even an empty database. */
    if (access(o->db, F_OK) == 0) {
        sqlite3 *db = NULL;
        int rc = sqlite3_open_v2(o->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK
                     ? mark_done(sw, db, o->db, &st->skipped)
                     : ms_err("%s: cannot open: %s", o->db, db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        if (rc) return MS_ERR;
    }
    return MS_OK;
}
