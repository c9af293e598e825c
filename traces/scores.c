/* scores: Gumbel-top-k router scores from trace counts.
 *
 * With X_e = exp(-G_e), a standard exponential, the score is
 *   sigmoid(x_e + G_e) = 1 / (1 + X_e * exp(-x_e)),
 * so a token costs one exponential draw per expert and no logarithm: the
 * per-layer factors r_e = exp(-x_e) are computed once per trace step. The
 * exponential draws use Marsaglia and Tsang's ziggurat ("The ziggurat method
 * for generating random variables", J. Stat. Softw. 5(8), 2000), which GSL
 * offers only for the Gaussian: one 32-bit draw and a table lookup in about
 * 99% of cases.
 *
 * x_e comes from the fit (gate.c), whose start and shift put the k-th
 * largest score of a uniform layer near 0.5, so scores spread over (0, 1)
 * like a sigmoid router's and a bias of 1e-3 moves choices near the edge. */
#define HAVE_INLINE /* gsl_rng_get inline (C99 inline: no extra definition) */
#include "scores.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define ZIG_R 7.69711747013104972 /* start of the tail */
#define ZIG_V 3.949659822581572e-3 /* area of each layer */

struct scores {
    gate_fit_t *fit;
    int L, E, rows;
    gsl_rng *rng;
    int step;        /* trace step whose factors are built, -1 none */
    float *factor;   /* [n_layers][rows][n_experts] r_e = exp(-x_e) */
    float *out;      /* [n_experts] the last token's scores */
    uint32_t ke[256];
    double we[256], fe[256];
};

static void zig_init(scores_t *s) {
    const double m2 = 4294967296.0;
    double de = ZIG_R, te = de, q = ZIG_V / exp(-de);
    s->ke[0] = (uint32_t)((de / q) * m2);
    s->ke[1] = 0;
    s->we[0] = q / m2;
    s->we[255] = de / m2;
    s->fe[0] = 1.0;
    s->fe[255] = exp(-de);
    for (int i = 254; i >= 1; i--) {
        de = -log(ZIG_V / de + exp(-de));
        s->ke[i + 1] = (uint32_t)((de / te) * m2);
        te = de;
        s->fe[i] = exp(-de);
        s->we[i] = de / m2;
    }
}

/* The rare path: the base strip's tail, or a wedge test. */
static double zig_fix(scores_t *s, uint32_t jz, int iz) {
    for (;;) {
        if (iz == 0) return ZIG_R - log(gsl_rng_uniform_pos(s->rng));
        double x = jz * s->we[iz];
        if (s->fe[iz] + gsl_rng_uniform(s->rng) * (s->fe[iz - 1] - s->fe[iz]) < exp(-x)) return x;
        jz = (uint32_t)gsl_rng_get(s->rng);
        iz = (int)(jz & 255);
        if (jz < s->ke[iz]) return jz * s->we[iz];
    }
}

static inline double zig_exp(scores_t *s) {
    uint32_t jz = (uint32_t)gsl_rng_get(s->rng);
    int iz = (int)(jz & 255);
    if (jz < s->ke[iz]) return jz * s->we[iz];
    return zig_fix(s, jz, iz);
}

double scores_exp(scores_t *s) { return zig_exp(s); }

int scores_new(const trace_t *t, int top_k, uint64_t seed, scores_t **out) {
    gate_spec_t spec;
    gate_fit_t *g;
    if (gate_spec_make(t->n_experts, top_k, 1, 1, 1, 0, t->path ? t->path : "trace", &spec) ||
        gate_fit_trace(t, &spec, &g))
        return MS_ERR;
    return scores_new_fit(g, seed, out);
}

int scores_new_fit(gate_fit_t *g, uint64_t seed, scores_t **out) {
    scores_t *s = ms_calloc(1, sizeof *s);
    s->fit = g;
    s->L = g->n_layers;
    s->E = g->n_experts;
    s->rows = g->n_rows;
    /* taus2 (L'Ecuyer's maximally equidistributed Tausworthe, period 2^88)
     * gives the ziggurat its 32 bits about three times faster than
     * mt19937, and a token needs one draw per expert. Its own stream,
     * derived from the run seed. */
    s->rng = gsl_rng_alloc(gsl_rng_taus2);
    uint64_t h = ms_hash64(&seed, sizeof seed) ^ 0x73636f726573ULL; /* "scores" */
    gsl_rng_set(s->rng, (unsigned long)((h ^ (h >> 32)) & 0xffffffffUL));
    s->step = -1;
    s->factor = ms_malloc((size_t)s->L * s->rows * s->E * sizeof *s->factor);
    s->out = ms_malloc((size_t)s->E * sizeof *s->out);
    zig_init(s);
    scores_step(s, 0);
    *out = s;
    return MS_OK;
}

void scores_free(scores_t *s) {
    if (!s) return;
    gsl_rng_free(s->rng);
    gate_fit_free(s->fit);
    free(s->factor);
    free(s->out);
    free(s);
}

const gate_fit_t *scores_fit(const scores_t *s) { return s->fit; }

void scores_step(scores_t *s, int step) {
    int ts = step % s->fit->n_steps;
    if (ts == s->step) return;
    size_t n = (size_t)s->L * s->rows * s->E;
    const float *x = gate_logits(s->fit, ts, 0, 0);
    for (size_t i = 0; i < n; i++) s->factor[i] = expf(-x[i]);
    s->step = ts;
}

const float *scores_token_row(scores_t *s, int layer, int row) {
    int E = s->E;
    const float *f = s->factor + ((size_t)layer * s->rows + row) * E;
    float *o = s->out;
    for (int e = 0; e < E; e++) o[e] = 1.0f / (1.0f + (float)zig_exp(s) * f[e]);
    return o;
}

const float *scores_token(scores_t *s, int layer) { return scores_token_row(s, layer, 0); }

/* With X = exp(-G): a recorded expert scores 1 / (1 + X f); an other one's
 * perturbed logit z is drawn below m, the lowest recorded one, by the
 * Gumbel truncation exp(-z) = exp(-m) + X f (exact for a Gumbel truncated
 * at m), i.e. a score 1 / (1 + exp(-m) + X f). */
const float *scores_token_rec(scores_t *s, int layer, const int16_t *rec, int k) {
    int E = s->E;
    const float *f = s->factor + (size_t)layer * s->rows * E;
    float *o = s->out;
    float em = 0; /* exp(-m) = the largest X f among the recorded */
    for (int j = 0; j < k; j++) {
        int e = rec[j];
        float v = (float)zig_exp(s) * f[e];
        o[e] = 1.0f / (1.0f + v);
        if (v > em) em = v;
    }
    for (int e = 0; e < E; e++) {
        int r = 0;
        for (int j = 0; j < k; j++) r |= rec[j] == e;
        if (!r) o[e] = 1.0f / (1.0f + em + (float)zig_exp(s) * f[e]);
    }
    return o;
}
