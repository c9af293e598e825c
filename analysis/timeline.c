/* timeline: Chrome trace event JSON of a run's steps, streamed one event at
 * a time (jansson formats each) so memory stays flat however long the run. */
#include "timeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"

struct timeline {
    FILE *f;
    char *path, *tmp;
    int n_nodes, dpn, n_dev, mb;
    long max, n;
    int truncated, bad;
    int started;       /* an event written: the next needs a comma */
};

static const char *const SPAN_NAME[STEP_SPAN_N] = {"dispatch", "expert", "combine"};

/* Microseconds, as the format wants, from simulated ns: exact to the ns
 * with 16 significant digits (runs up to about 115 days). */
static json_t *us(int64_t ns) { return json_real((double)ns / 1000.0); }

static void put(timeline_t *t, json_t *ev) {
    if (!ev) {
        t->bad = 1;
        return;
    }
    if (!t->bad && (fputs(t->started++ ? ",\n" : "\n", t->f) == EOF ||
                    json_dumpf(ev, t->f, JSON_COMPACT | JSON_REAL_PRECISION(16)) ||
                    ferror(t->f)))
        t->bad = 1;
    json_decref(ev);
}

/* Counts an event against the cap; at the cap, one instant says so. */
static int room(timeline_t *t, int64_t ts_ns) {
    if (t->truncated) return 0;
    if (t->n < t->max) {
        t->n++;
        return 1;
    }
    t->truncated = 1;
    put(t, json_pack("{s:s, s:s, s:s, s:o, s:i, s:i, s:{s:I}}", "name",
                     "timeline truncated", "ph", "i", "s", "g", "ts", us(ts_ns), "pid", 0, "tid",
                     0, "args", "max_events", (json_int_t)t->max));
    return 0;
}

static void meta(timeline_t *t, const char *what, int pid, int tid, const char *name) {
    put(t, json_pack("{s:s, s:s, s:i, s:i, s:i, s:{s:s}}", "name", what, "ph", "M", "ts", 0,
                     "pid", pid, "tid", tid, "args", "name", name));
}

int timeline_open(const char *path, int n_nodes, int dpn, int micro_batches, long max_events,
                  timeline_t **out) {
    *out = NULL;
    if (max_events < 1 || max_events > TIMELINE_MAX_EVENTS_LIMIT)
        return ms_err("--timeline-max-events %ld: give 1 to %ld", max_events,
                      TIMELINE_MAX_EVENTS_LIMIT);
    timeline_t *t = ms_calloc(1, sizeof *t);
    t->path = ms_strdup(path);
    size_t n = strlen(path) + 5;
    t->tmp = ms_malloc(n);
    snprintf(t->tmp, n, "%s.tmp", path);
    t->n_nodes = n_nodes;
    t->dpn = dpn;
    t->n_dev = n_nodes * dpn;
    t->max = max_events;
    t->f = fopen(t->tmp, "w");
    if (!t->f) {
        int e = errno;
        timeline_abort(t);
        return ms_err("--timeline %s: cannot write %s.tmp: %s (choose a folder that exists and "
                      "is writable)", path, path, strerror(e));
    }
    fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[", t->f);
    /* metadata first (not counted against the cap): the viewer's names */
    char name[64];
    for (int b = 0; b < n_nodes; b++) {
        snprintf(name, sizeof name, "node %d", b);
        meta(t, "process_name", b, 0, name);
        for (int d = b * dpn; d < (b + 1) * dpn; d++)
            for (int m = 0; m < micro_batches; m++) {
                if (m) snprintf(name, sizeof name, "gpu %d micro-batch %d", d, m + 1);
                else snprintf(name, sizeof name, "gpu %d", d);
                meta(t, "thread_name", b, d + m * t->n_dev, name);
            }
    }
    t->mb = micro_batches;
    *out = t;
    return MS_OK;
}

static void on_span(void *ctx, enum step_span kind, int dev, int mb, int layer, int64_t t0,
                    int64_t t1) {
    timeline_view_t *v = ctx;
    timeline_t *t = v->t;
    if (!room(t, t0)) return;
    dev += v->dev_base;
    put(t, json_pack("{s:s, s:s, s:s, s:o, s:o, s:i, s:i, s:{s:i, s:i}}", "name",
                     SPAN_NAME[kind], "cat", "step", "ph", "X", "ts", us(t0), "dur", us(t1 - t0),
                     "pid", dev / t->dpn, "tid", dev + mb * t->n_dev, "args", "layer", layer,
                     "micro_batch", mb + 1));
}

step_observer_t timeline_observer(timeline_view_t *v) {
    return (step_observer_t){.span = on_span, .ctx = v};
}

void timeline_replan(timeline_t *t, int64_t now_ns, int step, int layers_changed) {
    if (!room(t, now_ns)) return;
    put(t, json_pack("{s:s, s:s, s:s, s:s, s:o, s:i, s:i, s:{s:i, s:i}}", "name", "re-plan",
                     "cat", "placement", "ph", "i", "s", "g", "ts", us(now_ns), "pid", 0, "tid",
                     0, "args", "after_step", step, "layers_changed", layers_changed));
}

void timeline_migration(timeline_t *t, int src, int dst, int layer, int expert, int64_t t0,
                        int64_t t1) {
    if (t1 <= t0 || !room(t, t0)) return;
    /* weight copies overlap compute: a thread of their own per device, named on first use */
    put(t, json_pack("{s:s, s:s, s:s, s:o, s:o, s:i, s:i, s:{s:i, s:i, s:i}}", "name",
                     "weight copy", "cat", "migration", "ph", "X", "ts", us(t0), "dur",
                     us(t1 - t0), "pid", dst / t->dpn, "tid", dst + t->mb * t->n_dev, "args",
                     "layer", layer, "expert", expert, "from_device", src));
}

long timeline_events(const timeline_t *t) { return t->n; }
int timeline_truncated(const timeline_t *t) { return t->truncated; }

int timeline_finish(timeline_t *t) {
    if (!t) return MS_OK;
    if (!t->f) return t->bad ? MS_ERR : MS_OK; /* finished before */
    /* the weight-copy threads' names (metadata may come anywhere) */
    char name[64];
    for (int d = 0; d < t->n_dev; d++) {
        snprintf(name, sizeof name, "gpu %d weight copies", d);
        meta(t, "thread_name", d / t->dpn, d + t->mb * t->n_dev, name);
    }
    if (fputs("\n]}\n", t->f) == EOF) t->bad = 1;
    int e = t->bad ? errno : 0;
    if (fclose(t->f) && !t->bad) {
        e = errno;
        t->bad = 1;
    }
    t->f = NULL;
    if (t->bad)
        return ms_err("--timeline %s: writing failed: %s (check the disk's free space)", t->path,
                      e ? strerror(e) : "write error");
    return MS_OK;
}

int timeline_close(timeline_t *t) {
    if (!t) return MS_OK;
    int rc = timeline_finish(t);
    if (rc == MS_OK && rename(t->tmp, t->path))
        rc = ms_err("--timeline %s: cannot move %s into place: %s", t->path, t->tmp,
                    strerror(errno));
    timeline_abort(t);
    return rc;
}

void timeline_abort(timeline_t *t) {
    if (!t) return;
    if (t->f) fclose(t->f);
    if (t->tmp) remove(t->tmp);
    free(t->tmp);
    free(t->path);
    free(t);
}

int timeline_strategy_path(const char *path, const char *strategy, char *buf, size_t n) {
    size_t len = strlen(path);
    size_t stem = len >= 5 && !strcmp(path + len - 5, ".json") ? len - 5 : len;
    /* the strategy's name is data: only [A-Za-z0-9._-] reach the file name */
    char safe[128];
    size_t k = 0;
    for (const char *p = strategy; *p && k + 1 < sizeof safe; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || (c == '.' && k);
        safe[k++] = ok ? c : '_';
    }
    safe[k] = 0;
    int w = snprintf(buf, n, "%.*s.%s.json", (int)stem, path, safe);
    if (w < 0 || (size_t)w >= n) return ms_err("--timeline %s: the file name is too long", path);
    return MS_OK;
}
