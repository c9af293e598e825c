/* Layers (README, "Layers: who may include whom"): every source file has a
 * layer, and a file includes only headers of its own layer or lower ones,
 * with no include cycle between modules. The table below is the rule; a new
 * file that matches none of its rows fails the test until it is given one. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Path prefixes and their layers; the longest matching prefix wins. */
static const struct {
    const char *prefix;
    int layer;
} LAYERS[] = {
    {"sim/base/", 1},                       /* base: errors, allocation, files, INI, the engine */
    {"models/", 2},        {"traces/", 2},  /* what is simulated */
    {"sim/step", 3},       {"sim/migr", 3},  {"sim/req", 3},   {"sim/route", 3},
    {"sim/phold", 3},      {"sim/phase", 3}, {"sim/prior", 3}, /* the step and its inputs */
    {"analysis/", 4},      {"sim/locality", 4}, {"sim/replan", 4}, /* results */
    {"sim/run_spec", 5},   {"sim/serve_spec", 5},                /* specs */
    {"sim/serve", 6},      {"sim/run", 6},   {"sim/sweep", 6},   /* loops */
    {"sim/main", 7},       {"sim/cmd", 7},                       /* the CLI */
};

/* Where an include "x.h" is looked for: the includer's folder, then the
 * Makefile's -I folders in order. */
static const char *const DIRS[] = {"sim/base", "models", "traces", "sim", "analysis"};

static int layer_of(const char *path) {
    int best = -1;
    size_t blen = 0;
    for (size_t i = 0; i < sizeof LAYERS / sizeof *LAYERS; i++) {
        size_t n = strlen(LAYERS[i].prefix);
        if (n > blen && !strncmp(path, LAYERS[i].prefix, n)) {
            best = LAYERS[i].layer;
            blen = n;
        }
    }
    return best;
}

static int exists(const char *path) {
    FILE *f = fopen(path, "r");
    if (f) fclose(f);
    return f != NULL;
}

/* The file an include of name from file `from` resolves to, into out. */
static int resolve(const char *from, const char *name, char *out, size_t n) {
    const char *slash = strrchr(from, '/');
    snprintf(out, n, "%.*s/%s", (int)(slash - from), from, name);
    if (exists(out)) return 1;
    for (size_t i = 0; i < sizeof DIRS / sizeof *DIRS; i++) {
        snprintf(out, n, "%s/%s", DIRS[i], name);
        if (exists(out)) return 1;
    }
    return 0;
}

/* The next include "name" at or after *p, into name; 0 when none is left. */
static int next_include(const char **p, char *name, size_t n) {
    const char *at = strstr(*p, "#include \"");
    if (!at) return 0;
    const char *a = at + 10, *b = strchr(a, '"');
    if (!b) return 0;
    snprintf(name, n, "%.*s", (int)(b - a), a);
    *p = b + 1;
    return 1;
}

/* Counts the includes of text (the contents of file path) that reach a
 * higher layer, or a file with no layer; says which into msg. */
static int upward(const char *path, const char *text, char *msg, size_t n) {
    int bad = 0, mine = layer_of(path);
    if (mine < 0) {
        snprintf(msg, n, "%s has no layer in tests/test_layers.c", path);
        return 1;
    }
    char name[256], hit[512];
    for (const char *p = text; next_include(&p, name, sizeof name);) {
        if (strchr(name, '/')) { /* "../sim/x.h" would step round the -I rules */
            snprintf(msg, n, "%s includes \"%s\" by path (include by name)", path, name);
            bad++;
            continue;
        }
        if (!resolve(path, name, hit, sizeof hit)) continue; /* a system or test header */
        int theirs = layer_of(hit);
        if (theirs < 0 || theirs > mine) {
            snprintf(msg, n, "%s (layer %d) includes %s (layer %d)", path, mine, hit, theirs);
            bad++;
        }
    }
    return bad;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = 0;
    fclose(f);
    return buf;
}

static int is_source(const char *name) {
    size_t n = strlen(name);
    return n > 2 && name[n - 2] == '.' && (name[n - 1] == 'c' || name[n - 1] == 'h');
}

/* Calls fn on every source file of the library's folders; returns how many. */
static int for_each_source(void (*fn)(const char *path, const char *text, void *ctx),
                           void *ctx) {
    static const char *const ROOMS[] = {"sim/base", "sim", "models", "traces", "analysis"};
    int files = 0;
    for (size_t r = 0; r < sizeof ROOMS / sizeof *ROOMS; r++) {
        DIR *d = opendir(ROOMS[r]);
        cr_assert_not_null(d, "run the tests from the repository root (%s)", ROOMS[r]);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!is_source(e->d_name)) continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", ROOMS[r], e->d_name);
            char *text = slurp(path);
            fn(path, text, ctx);
            free(text);
            files++;
        }
        closedir(d);
    }
    return files;
}

static void count_upward(const char *path, const char *text, void *ctx) {
    char msg[1024];
    int n = upward(path, text, msg, sizeof msg);
    if (n) cr_log_error("%s", msg);
    *(int *)ctx += n;
}

Test(layers, no_file_includes_a_higher_layer) {
    int bad = 0, files = for_each_source(count_upward, &bad);
    cr_expect_gt(files, 100, "read only %d source files", files);
    cr_expect_eq(bad, 0, "%d includes point up a layer (README, \"Layers\")", bad);
}

/* ---- include cycles between modules (a module: a file's name without
 * .c/.h and without a private header's _int; <m>_<part> files of m's
 * layer belong to module m when m has a private header m_int.h) */

#define MAX_MODS 256

typedef struct graph {
    int n;
    char name[MAX_MODS][64];
    unsigned char edge[MAX_MODS][MAX_MODS];
} graph_t;

static int mod_id(graph_t *g, const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char m[64];
    snprintf(m, sizeof m, "%s", base);
    char *dot = strrchr(m, '.');
    if (dot) *dot = 0;
    size_t n = strlen(m);
    if (n > 4 && !strcmp(m + n - 4, "_int")) m[n - 4] = 0;
    /* a module with a private header is one module across its files:
     * step_flow.c and step_pipe.c are the step's, as step_int.h says */
    char *us = strchr(m, '_');
    if (us) {
        char priv[640];
        snprintf(priv, sizeof priv, "%.*s%.*s_int.h", (int)(base - path), path, (int)(us - m), m);
        char home[640]; /* m's own file: a part in another layer stays apart (serve_spec) */
        snprintf(home, sizeof home, "%.*s%.*s.c", (int)(base - path), path, (int)(us - m), m);
        if (exists(priv) && layer_of(home) == layer_of(path)) *us = 0;
    }
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->name[i], m)) return i;
    cr_assert_lt(g->n, MAX_MODS, "more than %d modules: raise MAX_MODS", MAX_MODS);
    snprintf(g->name[g->n], sizeof g->name[0], "%s", m);
    return g->n++;
}

/* Depth-first search; on a cycle, writes it as "a -> b -> a" into out. */
static int cycle_from(const graph_t *g, int v, int *colour, int *parent, char *out, size_t n) {
    colour[v] = 1;
    for (int w = 0; w < g->n; w++) {
        if (!g->edge[v][w]) continue;
        if (colour[w] == 1) {
            size_t k = (size_t)snprintf(out, n, "%s", g->name[w]);
            for (int u = v; u != w && u >= 0 && k < n; u = parent[u])
                k += (size_t)snprintf(out + k, n - k, " <- %s", g->name[u]);
            if (k < n) snprintf(out + k, n - k, " <- %s", g->name[w]);
            return 1;
        }
        if (!colour[w]) {
            parent[w] = v;
            if (cycle_from(g, w, colour, parent, out, n)) return 1;
        }
    }
    colour[v] = 2;
    return 0;
}

static int find_cycle(const graph_t *g, char *out, size_t n) {
    int colour[MAX_MODS] = {0}, parent[MAX_MODS];
    for (int v = 0; v < g->n; v++) parent[v] = -1;
    for (int v = 0; v < g->n; v++)
        if (!colour[v] && cycle_from(g, v, colour, parent, out, n)) return 1;
    return 0;
}

typedef struct edges {
    graph_t *g;
    int n;
} edges_t;

static void add_edges(const char *path, const char *text, void *ctx) {
    edges_t *ed = ctx;
    int from = mod_id(ed->g, path);
    char name[256], hit[512];
    for (const char *p = text; next_include(&p, name, sizeof name);) {
        if (!resolve(path, name, hit, sizeof hit)) continue;
        int to = mod_id(ed->g, hit);
        if (to != from && !ed->g->edge[from][to]) {
            ed->g->edge[from][to] = 1;
            ed->n++;
        }
    }
}

Test(layers, no_include_cycle_between_modules) {
    static graph_t g;
    memset(&g, 0, sizeof g);
    edges_t ed = {&g, 0};
    for_each_source(add_edges, &ed);
    char cyc[1024] = "";
    cr_expect_gt(ed.n, 100, "found only %d include edges", ed.n);
    cr_expect_not(find_cycle(&g, cyc, sizeof cyc), "include cycle (a <- b: b includes a): %s",
                  cyc);
}

/* The cycle search itself: a -> b -> c -> a is found, a -> b -> c is not. */
Test(layers, cycle_search_finds_a_planted_cycle) {
    static graph_t g;
    memset(&g, 0, sizeof g);
    int a = mod_id(&g, "sim/a.c"), b = mod_id(&g, "sim/b.h"), c = mod_id(&g, "sim/c_int.h");
    cr_expect_eq(mod_id(&g, "sim/c.c"), c, "c_int.h belongs to module c");
    g.edge[a][b] = g.edge[b][c] = 1;
    char out[256] = "";
    cr_expect_not(find_cycle(&g, out, sizeof out), "%s", out);
    g.edge[c][a] = 1;
    cr_expect(find_cycle(&g, out, sizeof out));
    cr_expect(strstr(out, "a") && strstr(out, "b") && strstr(out, "c"), "%s", out);
}

/* The checker itself: an upward include is caught, a downward one is not. */
Test(layers, checker_catches_an_upward_include) {
    char msg[1024] = "";
    cr_expect_eq(upward("models/cost.c", "#include \"run.h\"\n", msg, sizeof msg), 1);
    cr_expect(strstr(msg, "sim/run.h") != NULL, "%s", msg);
    cr_expect_eq(upward("traces/trace.c", "#include \"util.h\"\n#include \"place.h\"\n", msg,
                        sizeof msg), 0);
    cr_expect_eq(upward("analysis/store.c", "#include \"serve.h\"\n", msg, sizeof msg), 1);
    cr_expect_eq(upward("sim/base/util.c", "#include \"cost.h\"\n", msg, sizeof msg), 1);
    cr_expect_eq(upward("sim/new_thing.c", "", msg, sizeof msg), 1, "a file with no layer");
    cr_expect_eq(upward("models/cost.c", "#include \"../sim/run.h\"\n", msg, sizeof msg), 1,
                 "an include by path");
}
