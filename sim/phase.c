/* phase: parsing `[workload] phases`, the phase at a given time, and the
 * duration-weighted mixture of the phases' traces. The run loops (run.c,
 * serve.c) keep one replay per phase and switch by simulated time. */
#include "phase.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int phase_parse(const char *s, const char *origin, const char *where, phases_t *o) {
    memset(o, 0, sizeof *o);
    const char *p = s;
    int64_t t = 0;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        size_t n = strcspn(p, ",");
        char item[1024];
        if (n >= sizeof item) return ms_err("%s: phase %d is too long", where, o->n + 1);
        memcpy(item, p, n);
        item[n] = 0;
        p += n;
        while (n && (item[n - 1] == ' ' || item[n - 1] == '\t')) item[--n] = 0;
        char *colon = strrchr(item, ':');
        if (!colon || colon == item)
            return ms_err("%s: phase '%s' has no duration (write FILE:DURATION, e.g. "
                          "prefill_in512.json:30s)", where, item);
        *colon = 0;
        char *dur = colon + 1, *unit = dur;
        while (*unit && (*unit == '.' || (*unit >= '0' && *unit <= '9'))) unit++;
        double scale = !strcmp(unit, "s") ? 1e9 : !strcmp(unit, "ms") ? 1e6 : 0;
        char num[64];
        size_t k = (size_t)(unit - dur);
        double v = 0;
        if (k && k < sizeof num) {
            memcpy(num, dur, k);
            num[k] = 0;
        }
        if (!scale || !k || k >= sizeof num || ms_parse_double(num, &v) || !(v > 0) || v > 1e7)
            return ms_err("%s: phase '%s': duration '%s' (give a positive number of seconds "
                          "with its unit, e.g. 30s or 500ms)", where, item, dur);
        if (o->n == PHASE_MAX) return ms_err("%s: more than %d phases", where, PHASE_MAX);
        phase_t *ph = &o->p[o->n++];
        snprintf(ph->name, sizeof ph->name, "%s", item);
        ms_path_beside(origin, item, ph->path, sizeof ph->path);
        ph->dur_ns = (int64_t)(v * scale + 0.5);
        if (ph->dur_ns < 1)
            return ms_err("%s: phase '%s' lasts less than a nanosecond", where, item);
        t += ph->dur_ns;
        ph->end_ns = t;
    }
    if (!o->n)
        return ms_err("%s: phases is empty (example: phases = prefill_in512.json:30s, "
                      "decode_in1000out1000.json:60s)", where);
    return MS_OK;
}

int phase_at(const phases_t *ph, int64_t t_ns) {
    for (int i = 0; i < ph->n; i++)
        if (t_ns < ph->p[i].end_ns) return i;
    return ph->n - 1;
}

trace_t *phase_mix(const phases_t *ph, trace_t *const *tr) {
    int L = tr[0]->n_layers, E = tr[0]->n_experts;
    trace_t *m = ms_calloc(1, sizeof *m);
    m->path = ms_strdup("phases");
    m->format = "phases";
    m->kind = TRACE_COUNTS;
    m->n_layers = L;
    m->n_experts = E;
    m->top_k = tr[0]->top_k;
    m->n_steps = 1;
    m->counts = ms_calloc((size_t)L * E, sizeof *m->counts);
    double *tot = ms_malloc((size_t)E * sizeof *tot);
    for (int i = 0; i < ph->n; i++) {
        double w = (double)ph->p[i].dur_ns / 1e9;
        for (int l = 0; l < L; l++) {
            trace_layer_total(tr[i], l, tot);
            double s = 0;
            for (int e = 0; e < E; e++) s += tot[e];
            if (s <= 0) continue;
            /* per layer a share of a million pairs per second of the phase */
            for (int e = 0; e < E; e++) m->counts[(size_t)l * E + e] += 1e6 * w * tot[e] / s;
        }
    }
    free(tot);
    return m;
}
