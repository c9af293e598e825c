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
 * x_e = log(c_e / mean c) + log(-log(1 - k/E)): the shift puts the k-th
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
    const trace_t *t;
    int top_k;
    gsl_rng *rng;
    int step;        /* trace step whose factors are built, -1 none */
    float *factor;   /* [n_layers][n_experts] r_e = exp(-x_e) */
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
    if (top_k < 1 || top_k > t->n_experts)
        return ms_err("%s: top-k %d does not fit %d experts", t->path ? t->path : "trace", top_k,
                      t->n_experts);
    scores_t *s = ms_calloc(1, sizeof *s);
    s->t = t;
    s->top_k = top_k;
    /* taus2 (L'Ecuyer's maximally equidistributed Tausworthe, period 2^88)
     * gives the ziggurat its 32 bits about three times faster than
     * mt19937, and a token needs one draw per expert. Its own stream,
     * derived from the run seed, keeps replay's draws as they were. */
    s->rng = gsl_rng_alloc(gsl_rng_taus2);
    uint64_t h = ms_hash64(&seed, sizeof seed) ^ 0x73636f726573ULL; /* "scores" */
    gsl_rng_set(s->rng, (unsigned long)((h ^ (h >> 32)) & 0xffffffffUL));
    s->step = -1;
    s->factor = ms_malloc((size_t)t->n_layers * t->n_experts * sizeof *s->factor);
    s->out = ms_malloc((size_t)t->n_experts * sizeof *s->out);
    zig_init(s);
    scores_step(s, 0);
    *out = s;
    return MS_OK;
}

void scores_free(scores_t *s) {
    if (!s) return;
    gsl_rng_free(s->rng);
    free(s->factor);
    free(s->out);
    free(s);
}

void scores_step(scores_t *s, int step) {
    const trace_t *t = s->t;
    int ts = step % t->n_steps, E = t->n_experts;
    if (ts == s->step) return;
    double k = s->top_k;
    /* -log(1 - k/E): the Exp(1) quantile the k-th of E equal experts sits at */
    double g = k < E ? -log1p(-k / E) : 1.0;
    for (int l = 0; l < t->n_layers; l++) {
        const double *c = trace_counts(t, ts, l);
        double mean = 0;
        for (int e = 0; e < E; e++) mean += c[e] / E;
        float *f = s->factor + (size_t)l * E;
        for (int e = 0; e < E; e++) {
            /* an idle layer routes uniformly: every expert at the mean */
            double ce = mean > 0 ? ms_dmax(c[e], SCORES_FLOOR * mean) : 1.0;
            double m = mean > 0 ? mean : 1.0;
            f[e] = (float)(m / ce / g);
        }
    }
    s->step = ts;
}

const float *scores_token(scores_t *s, int layer) {
    int E = s->t->n_experts;
    const float *f = s->factor + (size_t)layer * E;
    float *o = s->out;
    for (int e = 0; e < E; e++) o[e] = 1.0f / (1.0f + (float)zig_exp(s) * f[e]);
    return o;
}
