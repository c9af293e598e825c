/* prior: a placement strategy's prior statistics, from nothing, the past,
 * another trace or (labelled as such) the scored trace itself. Every run
 * builds its strategies' priors here, so the choice is made in one place. */
#include "prior.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

int prior_parse(const char *s, const char *origin, const char *where, prior_spec_t *o) {
    int warm = o->warmup_steps;
    memset(o, 0, sizeof *o);
    o->warmup_steps = warm;
    if (!strcmp(s, "none")) o->kind = PRIOR_NONE;
    else if (!strcmp(s, "past")) o->kind = PRIOR_PAST;
    else if (!strcmp(s, "oracle")) o->kind = PRIOR_ORACLE;
    else if (!strncmp(s, "trace:", 6)) {
        const char *p = s + 6;
        if (!*p)
            return ms_err("%s: prior 'trace:' names no file (example: trace:../traces/data/"
                          "deepseek-v3-sglang/prefill_in4096.json)", where);
        if (strlen(p) >= sizeof o->arg)
            return ms_err("%s: prior trace path is longer than %zu bytes", where,
                          sizeof o->arg - 1);
        o->kind = PRIOR_TRACE;
        snprintf(o->arg, sizeof o->arg, "%s", p);
        if (origin) ms_path_beside(origin, p, o->path, sizeof o->path);
        else snprintf(o->path, sizeof o->path, "%s", p);
        if (access(o->path, R_OK))
            return ms_err("%s: prior trace '%s' (%s): %s (give a trace file of the same model; "
                          "a relative path is read beside the config)", where, p, o->path,
                          strerror(errno));
    } else {
        return ms_err("%s: prior '%s' (give none, past, trace:PATH or oracle; past plans from "
                      "a warm-up window, oracle from the scored trace itself)", where, s);
    }
    return MS_OK;
}

int prior_spec_load(cfg_t *cfg, prior_spec_t *o) {
    long w;
    const char *s;
    if (cfg_int(cfg, "placement", "warmup_steps", PRIOR_WARMUP_DEFAULT, 1, 100000000, &w))
        return MS_ERR;
    o->warmup_steps = (int)w;
    if (cfg_str(cfg, "placement", "prior", PRIOR_DEFAULT, &s)) return MS_ERR;
    return prior_parse(s, cfg_origin(cfg), cfg_where(cfg, "placement", "prior"), o);
}

const char *prior_label(const prior_spec_t *p, char *buf, size_t n) {
    switch (p->kind) {
    case PRIOR_NONE: return "none";
    case PRIOR_PAST: return "past";
    case PRIOR_ORACLE: return "oracle";
    case PRIOR_TRACE: snprintf(buf, n, "trace:%s", p->arg); return buf;
    }
    return "?";
}

const char *prior_display(const char *label) {
    return label && !strcmp(label, "oracle") ? "oracle (in-sample)" : label ? label : "oracle";
}

int prior_skip(const prior_spec_t *p) { return p->kind == PRIOR_PAST ? p->warmup_steps : 0; }

static void totals(const trace_t *t, double *out) {
    for (int l = 0; l < t->n_layers; l++) trace_layer_total(t, l, out + (size_t)l * t->n_experts);
}

int prior_build(const prior_spec_t *p, const trace_t *scored, replay_t *rp, double n_tokens,
                int step_div, double **out) {
    int L = scored->n_layers, E = scored->n_experts;
    size_t n = (size_t)L * E;
    *out = NULL;
    if (p->kind == PRIOR_NONE) return MS_OK;
    double *pr = ms_calloc(n, sizeof *pr);
    if (p->kind == PRIOR_ORACLE) {
        totals(scored, pr);
    } else if (p->kind == PRIOR_TRACE) {
        trace_t *t = NULL;
        if (trace_read(p->path, &t)) {
            free(pr);
            return MS_ERR;
        }
        if (t->n_layers != L || t->n_experts != E) {
            ms_err("%s: prior trace has %d MoE layers x %d experts but the scored trace %s has "
                   "%d x %d (plan from a trace of the same model)", p->path, t->n_layers,
                   t->n_experts, scored->path ? scored->path : "", L, E);
            trace_free(t);
            free(pr);
            return MS_ERR;
        }
        totals(t, pr);
        trace_free(t);
    } else { /* past: the warm-up window's loads, drawn as the run draws its steps */
        double *one = ms_malloc(n * sizeof *one);
        if (step_div < 1) step_div = 1;
        for (int b = 0; b < p->warmup_steps; b++) {
            replay_counts(rp, b / step_div, n_tokens, one);
            for (size_t i = 0; i < n; i++) pr[i] += one[i];
        }
        free(one);
    }
    *out = pr;
    return MS_OK;
}

int prior_hindsight(const place_ops_t *ops, const place_env_t *env, const double *scored,
                    double *par) {
    *par = NAN;
    if (ops->requires) return MS_OK;
    place_state_t *st = NULL;
    place_layout_t *lo = NULL;
    int rc = ops->init(env, scored, &st, &lo);
    if (rc == MS_OK) *par = place_par_mean(lo, scored);
    if (st && ops->destroy) ops->destroy(st);
    place_layout_free(lo);
    return rc;
}
