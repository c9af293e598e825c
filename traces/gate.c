/* gate: limited top-k routing and router logits fitted to a trace.
 *
 * Why fit at all: drawing each token's k distinct experts one after the
 * other in proportion to the counts (sampling without replacement, the
 * Plackett-Luce law of Gumbel-top-k on log-counts) does not reproduce the
 * counts: a hot expert already drawn cannot be drawn again, so its share of
 * the k choices falls below k * its share of the counts and the hottest
 * experts come out flattened (static's PAR on configs/demo.ini was 1.958
 * against 2.010 for a faithful replay). Group- and node-limited top-k
 * distort further. So the logits are solved for: the limited top-k of
 * sigmoid(x_e + G_e) must pick expert e in a share target_e of tokens.
 *
 * The fixed-point step x_e += log(target_e / freq_e) is run on fixed draws
 * (common random numbers: the frequencies move smoothly with x), first on
 * a small subset to get close cheaply, then on all draws. */
#include "gate.h"

#include <errno.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "progress.h"
#include "util.h"

#define FIT_TOKENS 2048      /* fixed draws of the final iterations */
#define FIT_COARSE 256       /* the first iterations use this many of them */
#define FIT_ITER_COARSE 3
#define FIT_ITER_FINE 6
#define FIT_TOL 2e-3         /* stop at this L1 distance (per pair) to the target */
#define FIT_SEED 0x6761746566697431ULL /* "gatefit1" */
#define FIT_VERSION 1        /* bump when the fit changes: old caches refit */
#define FIT_FLOOR 1e-6       /* count of a never-activated expert / mean count */
#define CACHE_MAGIC "moesim-gate-fit"

int gate_spec_make(int E, int k, int groups, int topk_groups, int n_nodes, int max_nodes,
                   const char *where, gate_spec_t *o) {
    memset(o, 0, sizeof *o);
    o->n_experts = E;
    o->top_k = k;
    if (k < 1 || k > E || k > TRACE_MAX_TOP_K)
        return ms_err("%s: top-k %d must be 1..%d and at most the %d experts", where, k,
                      TRACE_MAX_TOP_K, E);
    if (groups > 1 && topk_groups < groups) {
        if (groups > GATE_MAX_SEG || E % groups || topk_groups < 1 || k > topk_groups * (E / groups))
            return ms_err("%s: %d experts in %d groups keeping %d cannot route top-%d (set "
                          "[routing] group_limit = false, or fix the model's groups)",
                          where, E, groups, topk_groups, k);
        o->group = (gate_limit_t){.n = groups, .keep = topk_groups, .top = E / groups > 1 ? 2 : 1};
    }
    if (max_nodes > 0 && max_nodes < n_nodes) {
        if (n_nodes > GATE_MAX_SEG || n_nodes > E)
            return ms_err("%s: node-limited routing over %d nodes needs at most %d nodes and "
                          "%d experts (set [routing] node_limit = false)",
                          where, n_nodes, ms_imin(GATE_MAX_SEG, E), E);
        int per = (k + max_nodes - 1) / max_nodes;
        o->node = (gate_limit_t){.n = n_nodes, .keep = max_nodes, .top = per};
    }
    return MS_OK;
}

/* Inserts (x, e) into the descending list val/idx of n entries (cap k);
 * indices come ascending, so an equal value stays behind. */
static inline int top_push(float *val, int *idx, int n, int k, float x, int e) {
    if (n == k && !(x > val[k - 1])) return n;
    int p = n < k ? n++ : k - 1;
    while (p > 0 && x > val[p - 1]) {
        val[p] = val[p - 1];
        idx[p] = idx[p - 1];
        p--;
    }
    val[p] = x;
    idx[p] = e;
    return n;
}

/* Keeps lim->keep of the segments by the sum of their lim->top best allowed
 * values; allow (NULL: all) says which experts may count. */
static int keep_segments(const gate_limit_t *lim, const float *v, int E,
                         const unsigned char *allow, unsigned char *keep) {
    float sval[GATE_MAX_SEG];
    int sidx[GATE_MAX_SEG], ns = 0;
    for (int i = 0; i < lim->n; i++) {
        int a = (int)((int64_t)i * E / lim->n), b = (int)((int64_t)(i + 1) * E / lim->n);
        float tv[TRACE_MAX_TOP_K];
        int ti[TRACE_MAX_TOP_K], nt = 0;
        if (!allow && lim->top == 2 && b - a >= 2) {
            /* DeepSeek's groups (the best two of each): top_push's values
             * for k = 2 without the indices the sum does not need */
            float t0 = v[a], t1 = v[a + 1];
            if (t1 > t0) {
                t1 = t0;
                t0 = v[a + 1];
            }
            for (int e = a + 2; e < b; e++) {
                float x = v[e];
                if (!(x > t1)) continue;
                if (x > t0) {
                    t1 = t0;
                    t0 = x;
                } else {
                    t1 = x;
                }
            }
            tv[0] = t0;
            tv[1] = t1;
            nt = 2;
        } else
            for (int e = a; e < b; e++)
                if (!allow || allow[e]) nt = top_push(tv, ti, nt, lim->top, v[e], e);
        keep[i] = 0;
        if (!nt) continue;
        float sum = 0;
        for (int j = 0; j < nt; j++) sum += tv[j];
        ns = top_push(sval, sidx, ns, lim->keep, sum, i);
    }
    for (int j = 0; j < ns; j++) keep[sidx[j]] = 1;
    return ns;
}

void gate_select(const gate_spec_t *s, const float *v, int *out) {
    int E = s->n_experts, k = s->top_k;
    float val[TRACE_MAX_TOP_K];
    int n = 0;
    if (s->group.n <= 1 && s->node.n <= 1) {
        for (int e = 0; e < E; e++) n = top_push(val, out, n, k, v[e], e);
        return;
    }
    unsigned char keep[GATE_MAX_SEG];
    if (s->node.n <= 1) {
        /* group limit alone: the kept groups' experts, in ascending order as
         * the scan below would visit them, without the allow mask */
        keep_segments(&s->group, v, E, NULL, keep);
        for (int i = 0; i < s->group.n; i++) {
            if (!keep[i]) continue;
            int a = (int)((int64_t)i * E / s->group.n), b = (int)((int64_t)(i + 1) * E / s->group.n);
            for (int e = a; e < b; e++) n = top_push(val, out, n, k, v[e], e);
        }
        return;
    }
    unsigned char allow_buf[1024], *allow = E <= 1024 ? allow_buf : ms_malloc((size_t)E);
    memset(allow, 1, (size_t)E);
    if (s->group.n > 1) {
        keep_segments(&s->group, v, E, NULL, keep);
        for (int i = 0; i < s->group.n; i++) {
            int a = (int)((int64_t)i * E / s->group.n), b = (int)((int64_t)(i + 1) * E / s->group.n);
            if (!keep[i]) memset(allow + a, 0, (size_t)(b - a));
        }
    }
    if (s->node.n > 1) {
        keep_segments(&s->node, v, E, allow, keep);
        int left = 0;
        for (int i = 0; i < s->node.n; i++) {
            int a = (int)((int64_t)i * E / s->node.n), b = (int)((int64_t)(i + 1) * E / s->node.n);
            for (int e = a; e < b; e++) left += keep[i] && allow[e];
        }
        if (left >= k) /* else the node limit cannot hold k experts: skip it */
            for (int i = 0; i < s->node.n; i++) {
                int a = (int)((int64_t)i * E / s->node.n), b = (int)((int64_t)(i + 1) * E / s->node.n);
                if (!keep[i]) memset(allow + a, 0, (size_t)(b - a));
            }
    }
    for (int e = 0; e < E; e++)
        if (allow[e]) n = top_push(val, out, n, k, v[e], e);
    if (allow != allow_buf) free(allow);
}

/* ---- fitting ---- */

/* n * E standard exponential draws (X = exp(-G), G standard Gumbel). */
static float *make_draws(int n, int E, uint64_t seed) {
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_taus2);
    gsl_rng_set(rng, (unsigned long)(seed & 0xffffffffUL));
    float *x = ms_malloc((size_t)n * E * sizeof *x);
    for (size_t i = 0; i < (size_t)n * E; i++) x[i] = (float)gsl_ran_exponential(rng, 1.0);
    gsl_rng_free(rng);
    return x;
}

/* freq[e] = share of the n tokens (draws X) whose limited top-k holds e:
 * plain Monte Carlo, for any limit. */
static void freq_mc(const gate_spec_t *s, const float *x, const float *X, int n, double *freq,
                    float *sc) {
    int E = s->n_experts, k = s->top_k, out[TRACE_MAX_TOP_K];
    float *f = ms_malloc((size_t)E * sizeof *f);
    for (int e = 0; e < E; e++) f[e] = expf(-x[e]);
    int *cnt = ms_calloc((size_t)E, sizeof *cnt);
    for (int t = 0; t < n; t++) {
        const float *xt = X + (size_t)t * E;
        for (int e = 0; e < E; e++) sc[e] = 1.0f / (1.0f + xt[e] * f[e]);
        gate_select(s, sc, out);
        for (int j = 0; j < k; j++) cnt[out[j]]++;
    }
    for (int e = 0; e < E; e++) freq[e] = (double)cnt[e] / n;
    free(f);
    free(cnt);
}

/* Whether the conditional estimator below covers spec s. */
static int cond_ok(const gate_spec_t *s) {
    if (s->node.n > 1) return 0;
    if (s->group.n <= 1) return 1;
    return s->group.top == 2 && s->n_experts / s->group.n >= 3;
}

/* The same frequencies, estimated with far less noise by conditioning
 * (Rao-Blackwell): given the other experts' scores of a token, expert e is
 * chosen exactly when its own score exceeds a threshold t_e, and its score
 * sigmoid(x_e + G) does so with probability 1 - exp(-w_e (1 - t_e) / t_e),
 * w_e = exp(x_e); the mean of that over tokens replaces the 0/1 count.
 *
 * t_e for plain top-k: the k-th best other score, i.e. the (k+1)-th best
 * overall when e is in the top k, else the k-th. With the group limit a
 * group scores b1 + max(s, b2) (b1 >= b2 the best two others of e's group),
 * so e's group is kept when that beats B, the TG-th best score of the other
 * groups; once kept, e must beat the k-th best of the others in the kept
 * groups: its own group and the TG-1 best other groups. Ties have
 * probability zero and are ignored. */
typedef struct {
    float v;
    int e;
} ve_t;

static int merge_top(const ve_t *const *lists, int nl, int cap, ve_t *out) {
    int pos[GATE_MAX_SEG] = {0}, n = 0;
    while (n < cap) {
        int best = -1;
        for (int i = 0; i < nl; i++)
            if (pos[i] < cap && lists[i][pos[i]].e >= 0 &&
                (best < 0 || lists[i][pos[i]].v > lists[best][pos[best]].v))
                best = i;
        if (best < 0) break;
        out[n++] = lists[best][pos[best]++];
    }
    return n;
}

static inline double p_above(double t, double w) {
    if (t <= 0) return 1;
    if (t >= 1) return 0;
    double u = w * (1 - t) / t;
    /* most experts are far from the cut: two terms of the series are exact
     * to 1e-10 there, and save the exponential */
    return u < 1e-3 ? u * (1 - 0.5 * u) : -expm1(-u);
}

static void freq_cond(const gate_spec_t *s, const float *x, const float *X, int n, double *freq,
                      float *sc) {
    int E = s->n_experts, k = s->top_k, K1 = k + 1;
    int G = s->group.n > 1 ? s->group.n : 1, gs = E / G, TG = s->group.n > 1 ? s->group.keep : 1;
    float *f = ms_malloc((size_t)E * sizeof *f);
    double *w = ms_malloc((size_t)E * sizeof *w);
    for (int e = 0; e < E; e++) {
        f[e] = expf(-x[e]);
        w[e] = exp((double)x[e]);
    }
    memset(freq, 0, (size_t)E * sizeof *freq);
    ve_t *gl = ms_malloc((size_t)G * K1 * sizeof *gl); /* each group's best k+1 */
    ve_t u[TRACE_MAX_TOP_K + 1];
    float tv[TRACE_MAX_TOP_K + 1];
    int ti[TRACE_MAX_TOP_K + 1];
    for (int t = 0; t < n; t++) {
        const float *xt = X + (size_t)t * E;
        for (int e = 0; e < E; e++) sc[e] = 1.0f / (1.0f + xt[e] * f[e]);
        if (G == 1) {
            int m = 0;
            for (int e = 0; e < E; e++) m = top_push(tv, ti, m, K1, sc[e], e);
            double vk = tv[k - 1], vk1 = K1 <= m ? tv[k] : 0;
            for (int e = 0; e < E; e++) freq[e] += p_above(vk, w[e]);
            for (int j = 0; j < k; j++) /* the top k face the (k+1)-th instead */
                freq[ti[j]] += p_above(vk1, w[ti[j]]) - p_above(vk, w[ti[j]]);
            continue;
        }
        float gsum[GATE_MAX_SEG], oval[GATE_MAX_SEG];
        int order[GATE_MAX_SEG], no = 0, rank[GATE_MAX_SEG];
        for (int g = 0; g < G; g++) {
            int m = 0;
            for (int e = g * gs; e < (g + 1) * gs; e++) m = top_push(tv, ti, m, K1, sc[e], e);
            ve_t *l = gl + (size_t)g * K1;
            for (int j = 0; j < K1; j++) l[j] = j < m ? (ve_t){tv[j], ti[j]} : (ve_t){0, -1};
            gsum[g] = l[0].v + l[1].v;
            no = top_push(oval, order, no, G, gsum[g], g);
        }
        for (int j = 0; j < G; j++) rank[order[j]] = j;
        for (int g = 0; g < G; g++) {
            int in = rank[g] < TG;
            double B = TG < G ? gsum[order[in ? TG : TG - 1]] : -1e30;
            const ve_t *lists[GATE_MAX_SEG];
            int nl = 0;
            lists[nl++] = gl + (size_t)g * K1;
            for (int j = 0; j < TG && nl < TG; j++)
                if (order[j] != g) lists[nl++] = gl + (size_t)order[j] * K1;
            int nu = merge_top(lists, nl, K1, u);
            double vk = nu >= k ? u[k - 1].v : 0, vk1 = nu >= K1 ? u[k].v : 0;
            const ve_t *l = gl + (size_t)g * K1;
            for (int e = g * gs; e < (g + 1) * gs; e++) {
                double b1 = l[0].v, b2 = l[1].v;
                if (e == l[0].e) b1 = l[1].v, b2 = l[2].v;
                else if (e == l[1].e) b2 = l[2].v;
                double tg = b1 + b2 > B ? 0 : B - b1;
                int top = 0;
                for (int j = 0; j < k && j < nu; j++) top |= u[j].e == e;
                double ti_ = top ? vk1 : vk;
                freq[e] += p_above(tg > ti_ ? tg : ti_, w[e]);
            }
        }
    }
    for (int e = 0; e < E; e++) freq[e] /= n;
    free(gl);
    free(f);
    free(w);
}

static void freq_on(const gate_spec_t *s, const float *x, const float *X, int n, double *freq,
                    float *sc) {
    if (cond_ok(s)) freq_cond(s, x, X, n, freq, sc);
    else freq_mc(s, x, X, n, freq, sc);
}

/* target[e]: k * c_e / sum c, capped at 1 (a token holds an expert once)
 * with the excess spread over the others in proportion. */
static void targets(const double *c, int E, int k, double *tg) {
    double sum = 0;
    for (int e = 0; e < E; e++) sum += c[e];
    for (int e = 0; e < E; e++) tg[e] = k * c[e] / sum;
    for (int pass = 0; pass < E; pass++) {
        double over = 0, free_mass = 0;
        for (int e = 0; e < E; e++) {
            if (tg[e] > 1) {
                over += tg[e] - 1;
                tg[e] = 1;
            } else if (tg[e] < 1) {
                free_mass += tg[e];
            }
        }
        if (over <= 1e-12 || free_mass <= 0) break;
        for (int e = 0; e < E; e++)
            if (tg[e] < 1) tg[e] *= 1 + over / free_mass;
    }
}

static void fit_layer(const gate_spec_t *s, const double *c, const float *X, float *x) {
    int E = s->n_experts, k = s->top_k;
    double sum = 0;
    for (int e = 0; e < E; e++) sum += c[e] > 0 ? c[e] : 0;
    /* -log(1 - k/E): puts the k-th score of a uniform layer near 0.5, so
     * the scores spread over (0, 1) like a sigmoid router's */
    double g = k < E ? -log1p(-(double)k / E) : 1.0, mean = sum / E;
    if (sum <= 0) { /* an idle layer routes uniformly */
        for (int e = 0; e < E; e++) x[e] = (float)log(g);
        return;
    }
    double *tg = ms_malloc(3 * (size_t)E * sizeof *tg), *fr = tg + E, *cc = fr + E;
    for (int e = 0; e < E; e++) cc[e] = c[e] > 0 ? c[e] : 0;
    targets(cc, E, k, tg);
    for (int e = 0; e < E; e++) x[e] = (float)(log(ms_dmax(cc[e], FIT_FLOOR * mean) / mean) + log(g));
    float *sc = ms_malloc((size_t)E * sizeof *sc);
    /* Monte Carlo frequencies (node limit) are noisy and the node ranking
     * couples experts: more, cheaper steps, stopped at the draws' noise */
    int mc = !cond_ok(s);
    for (int phase = 0; phase < 2; phase++) {
        int n = phase ? FIT_TOKENS : FIT_COARSE;
        int iters = (phase ? FIT_ITER_FINE : FIT_ITER_COARSE) * (mc ? 4 : 1);
        double tol = mc ? 0.5 * sqrt((double)E / ((double)n * k)) : phase ? FIT_TOL : 4 * FIT_TOL;
        double last = INFINITY;
        for (int it = 0; it < iters; it++) {
            freq_on(s, x, X, n, fr, sc);
            double l1 = 0;
            for (int e = 0; e < E; e++) l1 += fabs(fr[e] - tg[e]) / k;
            /* done at the tolerance, or once a step gains little (what
             * is left is the float resolution of the scores) */
            if (l1 < tol || (phase && !mc && l1 > 0.9 * last)) break;
            last = l1;
            for (int e = 0; e < E; e++) {
                if (tg[e] <= 0) continue; /* never activated: stays at the floor */
                double f = ms_dmax(fr[e], 0.5 / n);
                /* a hot expert's share moves less than its logit (it is
                 * already in most tokens' top-k): a larger step for it */
                double gain = mc ? 0.3 : 1.0 / ms_dmax(1.0 - tg[e], 0.25);
                double d = gain * log(tg[e] / f);
                x[e] += (float)ms_dmin(ms_dmax(d, -2.0), 2.0);
            }
        }
    }
    free(sc);
    free(tg);
}

void gate_fit_layer(const gate_spec_t *s, const double *c, float *x) {
    float *X = make_draws(FIT_TOKENS, s->n_experts, FIT_SEED);
    fit_layer(s, c, X, x);
    free(X);
}

void gate_sample_freq(const gate_spec_t *s, const float *x, int n, uint64_t seed, double *freq) {
    int E = s->n_experts;
    float *X = make_draws(n, E, seed), *sc = ms_malloc((size_t)E * sizeof *sc);
    freq_mc(s, x, X, n, freq, sc);
    free(sc);
    free(X);
}

static int n_rows_of(const trace_t *t) {
    return t->kind == TRACE_COUNTS && t->src_counts && t->n_src > 0 ? t->n_src : 1;
}

static const double *row_counts(const trace_t *t, int ts, int l, int q, int rows) {
    if (rows == 1) return trace_counts(t, ts, l);
    return t->src_counts + (((size_t)ts * t->n_layers + l) * rows + q) * t->n_experts;
}

int gate_fit_trace_nocache(const trace_t *t, const gate_spec_t *s, gate_fit_t **out) {
    if (s->n_experts != t->n_experts)
        return ms_err("%s: routing for %d experts but the trace has %d", t->path ? t->path : "trace",
                      s->n_experts, t->n_experts);
    gate_fit_t *g = ms_calloc(1, sizeof *g);
    g->n_steps = t->n_steps;
    g->n_layers = t->n_layers;
    g->n_rows = n_rows_of(t);
    g->n_experts = t->n_experts;
    size_t cells = (size_t)g->n_steps * g->n_layers * g->n_rows;
    g->logit = ms_malloc(cells * g->n_experts * sizeof *g->logit);
    float *X = make_draws(FIT_TOKENS, s->n_experts, FIT_SEED);
    double *c = ms_malloc((size_t)t->n_experts * sizeof *c);
    /* seconds a trace step, hours for long count traces: a line with an ETA */
    progress_t prog;
    progress_begin(&prog, "fitting router scores");
    for (int ts = 0; ts < g->n_steps; ts++)
        for (int l = 0; l < g->n_layers; l++)
            for (int q = 0; q < g->n_rows; q++) {
                if (prog.on) {
                    char d[96];
                    snprintf(d, sizeof d, "trace step %d/%d, layer %d/%d", ts + 1, g->n_steps,
                             l + 1, g->n_layers);
                    progress_update(&prog, ((double)ts * g->n_layers + l) * g->n_rows + q,
                                    (double)cells, d, 0);
                }
                const double *rc = row_counts(t, ts, l, q, g->n_rows);
                double sum = 0;
                for (int e = 0; e < t->n_experts; e++) sum += rc[e];
                /* a source with no counts in this layer routes by the layer's */
                memcpy(c, sum > 0 ? rc : trace_counts(t, ts, l), (size_t)t->n_experts * sizeof *c);
                fit_layer(s, c, X, (float *)gate_logits(g, ts, l, q));
            }
    progress_end(&prog);
    free(c);
    free(X);
    *out = g;
    return MS_OK;
}

void gate_fit_free(gate_fit_t *g) {
    if (!g) return;
    free(g->logit);
    free(g);
}

gate_fit_t *gate_fit_copy(const gate_fit_t *g) {
    gate_fit_t *c = ms_malloc(sizeof *c);
    *c = *g;
    size_t n = (size_t)g->n_steps * g->n_layers * g->n_rows * g->n_experts;
    c->logit = ms_malloc(n * sizeof *c->logit);
    memcpy(c->logit, g->logit, n * sizeof *c->logit);
    return c;
}

/* ---- the cache ---- */

static uint64_t trace_key(const trace_t *t) {
    int dims[5] = {t->n_steps, t->n_layers, n_rows_of(t), t->n_experts, (int)t->kind};
    uint64_t h = ms_hash64(dims, sizeof dims);
    h ^= ms_hash64(t->counts, (size_t)t->n_steps * t->n_layers * t->n_experts * sizeof *t->counts);
    if (n_rows_of(t) > 1)
        h = h * 31 + ms_hash64(t->src_counts, (size_t)t->n_steps * t->n_layers * t->n_src *
                                                  t->n_experts * sizeof *t->src_counts);
    return h;
}

static uint64_t spec_key(const gate_spec_t *s) {
    int v[10] = {FIT_VERSION, FIT_TOKENS, FIT_COARSE, s->n_experts, s->top_k,
                 s->group.n, s->group.keep, s->group.top, s->node.n, s->node.keep};
    return ms_hash64(v, sizeof v) * 31 + (uint64_t)s->node.top;
}

void gate_cache_path(const trace_t *t, const gate_spec_t *s, char *out, size_t n) {
    /* a hidden file, so listings of trace folders pass it over */
    const char *p = t->path ? t->path : "trace", *slash = strrchr(p, '/');
    int dir = slash ? (int)(slash - p + 1) : 0;
    snprintf(out, n, "%.*s.%s.%08llx.fit", dir, p, p + dir,
             (unsigned long long)(spec_key(s) & 0xffffffffULL));
}

/* The user's cache folder: $XDG_CACHE_HOME/moesim or ~/.cache/moesim. */
static int user_cache_path(const trace_t *t, const gate_spec_t *s, char *out, size_t n) {
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[1024];
    if (x && *x) snprintf(dir, sizeof dir, "%s/moesim", x);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/moesim", home);
    else return MS_ERR;
    if (mkdir(dir, 0777) && errno != EEXIST) return MS_ERR;
    snprintf(out, n, "%s/%016llx-%016llx.fit", dir, (unsigned long long)trace_key(t),
             (unsigned long long)spec_key(s));
    return MS_OK;
}

/* Reads a cache file; any mismatch or damage returns MS_ERR (refit). */
static int cache_read(const char *path, uint64_t tk, uint64_t sk, gate_fit_t *g) {
    FILE *f = fopen(path, "rb");
    if (!f) return MS_ERR;
    char magic[32];
    unsigned long long ftk, fsk, sum;
    int steps, layers, rows, experts, rc = MS_ERR;
    if (fscanf(f, "%31s %llx %llx %d %d %d %d %llx", magic, &ftk, &fsk, &steps, &layers, &rows,
               &experts, &sum) == 8 &&
        fgetc(f) == '\n' && !strcmp(magic, CACHE_MAGIC) && ftk == tk && fsk == sk &&
        steps == g->n_steps && layers == g->n_layers && rows == g->n_rows &&
        experts == g->n_experts) {
        size_t cells = (size_t)steps * layers * rows * experts;
        if (fread(g->logit, sizeof *g->logit, cells, f) == cells && fgetc(f) == EOF &&
            ms_hash64(g->logit, cells * sizeof *g->logit) == sum)
            rc = MS_OK;
        for (size_t i = 0; rc == MS_OK && i < cells; i++)
            if (!isfinite(g->logit[i])) rc = MS_ERR;
    }
    fclose(f);
    return rc;
}

/* Writes through a temporary file renamed into place: a reader never sees
 * half a file, and a failure leaves nothing behind. */
static int cache_write(const char *path, uint64_t tk, uint64_t sk, const gate_fit_t *g) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return MS_ERR;
    size_t cells = (size_t)g->n_steps * g->n_layers * g->n_rows * g->n_experts;
    int ok = fprintf(f, "%s %016llx %016llx %d %d %d %d %016llx\n", CACHE_MAGIC,
                     (unsigned long long)tk, (unsigned long long)sk, g->n_steps, g->n_layers,
                     g->n_rows, g->n_experts,
                     (unsigned long long)ms_hash64(g->logit, cells * sizeof *g->logit)) > 0 &&
             fwrite(g->logit, sizeof *g->logit, cells, f) == cells;
    if (fclose(f)) ok = 0;
    if (!ok || rename(tmp, path)) {
        remove(tmp);
        return MS_ERR;
    }
    return MS_OK;
}

int gate_fit_trace(const trace_t *t, const gate_spec_t *s, gate_fit_t **out) {
    struct stat sb;
    /* only a trace read from a file has a place for its cache */
    if (!t->path || stat(t->path, &sb) || !S_ISREG(sb.st_mode))
        return gate_fit_trace_nocache(t, s, out);
    uint64_t tk = trace_key(t), sk = spec_key(s);
    char beside[4096], user[4096];
    gate_cache_path(t, s, beside, sizeof beside);
    int have_user = user_cache_path(t, s, user, sizeof user) == MS_OK;
    gate_fit_t *g = ms_calloc(1, sizeof *g);
    g->n_steps = t->n_steps;
    g->n_layers = t->n_layers;
    g->n_rows = n_rows_of(t);
    g->n_experts = t->n_experts;
    g->logit = ms_malloc((size_t)g->n_steps * g->n_layers * g->n_rows * g->n_experts *
                         sizeof *g->logit);
    if (cache_read(beside, tk, sk, g) == MS_OK || (have_user && cache_read(user, tk, sk, g) == MS_OK)) {
        g->from_cache = 1;
        *out = g;
        return MS_OK;
    }
    gate_fit_free(g);
    if (gate_fit_trace_nocache(t, s, out)) return MS_ERR;
    /* beside the trace; a read-only folder falls back to the user's cache,
     * and without either the fit is simply not kept */
    if (cache_write(beside, tk, sk, *out) && have_user) cache_write(user, tk, sk, *out);
    return MS_OK;
}
