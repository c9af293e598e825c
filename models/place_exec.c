/* place_exec: external strategies. `strategies = exec:NAME` runs the
 * command of [strategy.NAME] at init and at every re-plan, hands it the
 * deployment and the loads as JSON on stdin and reads a slot-to-expert map
 * back from stdout, so an algorithm written in any language (typically a
 * Python rebalance_experts) is compared beside the built-in ones unported.
 *
 * The command is an argv split on blanks (quotes group words); no shell
 * ever sees it, so its text is data. The child runs in the config's folder
 * with a deadline; an answer that is not exactly a valid layout of this
 * deployment (bad JSON, wrong shape, id out of range, expert missing,
 * non-zero exit, timeout) is an error naming the strategy and what was
 * wrong, and the run stops before anything is stored. docs/strategies.md
 * gives the protocol. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "place.h"
#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "place_exec writes little-endian .npy loads in place; add byte swapping for this host"
#endif

#define EXEC_PROTOCOL 1
#define EXEC_MAX 16        /* distinct exec:NAME strategies in one process */
#define EXEC_NAME_MAX 31
#define EXEC_MAX_ARGS 64
#define EXEC_MAX_ANSWER (256u << 20)

struct place_state {
    char name[48];            /* "exec:NAME", for messages and metrics */
    char sec[48];             /* "strategy.NAME" */
    char *words;              /* the command's words, NUL-separated */
    char *argv[EXEC_MAX_ARGS + 1];
    char dir[4096];           /* the child's working folder ("" = ours) */
    double timeout_s;
    long npy_above;           /* loads above this many numbers go as .npy */
    int L, E, D, dpn, N, S, R, G, TG, K;
    uint64_t seed;
    place_window_t win;       /* the re-plan window (place.h), as eplb keeps it */
    int last_step;
    /* what the metrics report; the times are wall clock */
    int calls, replans_changed;
    double init_ms, decide_ms_sum, decide_ms_max;
};

/* ---- the command line ------------------------------------------------ */

/* Splits cmd into words at blanks; '...' and "..." group (no escapes, no
 * expansion of any kind). */
static int split_words(place_state_t *s, const char *cmd, const char *where) {
    size_t n = strlen(cmd);
    s->words = ms_malloc(n + 1);
    char *w = s->words;
    int argc = 0;
    const char *p = cmd;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        if (argc == EXEC_MAX_ARGS)
            return ms_err("%s: %s: [%s] command has more than %d words", where, s->name, s->sec,
                          EXEC_MAX_ARGS);
        s->argv[argc++] = w;
        while (*p && *p != ' ' && *p != '\t') {
            if (*p == '\'' || *p == '"') {
                char q = *p++;
                const char *end = strchr(p, q);
                if (!end)
                    return ms_err("%s: %s: [%s] command: unterminated %c quote (close it; quotes "
                                  "only group words, nothing is expanded)", where, s->name, s->sec,
                                  q);
                memcpy(w, p, (size_t)(end - p));
                w += end - p;
                p = end + 1;
            } else {
                *w++ = *p++;
            }
        }
        *w++ = 0;
    }
    s->argv[argc] = NULL;
    if (!argc)
        return ms_err("%s: %s: [%s] command is empty (example: command = python3 my_strategy.py)",
                      where, s->name, s->sec);
    return MS_OK;
}

/* ---- the child process ----------------------------------------------- */

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static int cloexec_pipe(int p[2]) {
    if (pipe(p)) return -1;
    fcntl(p[0], F_SETFD, FD_CLOEXEC);
    fcntl(p[1], F_SETFD, FD_CLOEXEC);
    return 0;
}

/* Runs the command with in on stdin; *out gets stdout (NUL-terminated).
 * Fails on a start error, a timeout, a signal or a non-zero exit, with the
 * tail of the command's stderr in the message. */
static int run_child(place_state_t *s, const char *what, const char *in, size_t in_len,
                     char **out, size_t *out_len) {
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1}, pexe[2] = {-1, -1};
    if (cloexec_pipe(pin) || cloexec_pipe(pout) || cloexec_pipe(perr) || cloexec_pipe(pexe)) {
        int e = errno;
        int *all[] = {pin, pout, perr, pexe};
        for (int i = 0; i < 4; i++) close_fd(&all[i][0]), close_fd(&all[i][1]);
        return ms_err("%s: %s: cannot make pipes: %s", s->name, what, strerror(e));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* the child: only async-signal-safe calls until exec */
        int e = 0;
        if (s->dir[0] && chdir(s->dir)) e = errno;
        if (!e && (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0)) e = errno;
        if (!e) {
            execvp(s->argv[0], s->argv);
            e = errno;
        }
        ssize_t r = write(pexe[1], &e, sizeof e);
        (void)r;
        _exit(127);
    }
    int e = errno;
    close_fd(&pin[0]), close_fd(&pout[1]), close_fd(&perr[1]), close_fd(&pexe[1]);
    if (pid < 0) {
        close_fd(&pin[1]), close_fd(&pout[0]), close_fd(&perr[0]), close_fd(&pexe[0]);
        return ms_err("%s: %s: cannot start a process: %s", s->name, what, strerror(e));
    }
    /* exec closes pexe: EOF means the command started, an int its errno */
    int child_errno = 0;
    ssize_t got;
    do got = read(pexe[0], &child_errno, sizeof child_errno);
    while (got < 0 && errno == EINTR);
    close_fd(&pexe[0]);

    size_t cap = 1 << 16, n = 0, sent = 0;
    char *buf = ms_malloc(cap), err_tail[801];
    size_t err_n = 0;
    int rc = MS_OK, timed_out = 0, too_big = 0;
    if (got == (ssize_t)sizeof child_errno) {
        close_fd(&pin[1]);
    } else {
        fcntl(pin[1], F_SETFL, fcntl(pin[1], F_GETFL) | O_NONBLOCK);
        /* A command that exits without reading its input must not kill
         * moesim with SIGPIPE: block it while writing, drop it after. */
        sigset_t pipe_set, old;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        sigprocmask(SIG_BLOCK, &pipe_set, &old);
        double deadline = now_ms() + s->timeout_s * 1e3;
        if (!in_len) close_fd(&pin[1]);
        while (pout[0] >= 0 || perr[0] >= 0) {
            struct pollfd fds[3];
            int nf = 0, iw = -1, io = -1, ie = -1;
            if (pin[1] >= 0) iw = nf, fds[nf++] = (struct pollfd){pin[1], POLLOUT, 0};
            if (pout[0] >= 0) io = nf, fds[nf++] = (struct pollfd){pout[0], POLLIN, 0};
            if (perr[0] >= 0) ie = nf, fds[nf++] = (struct pollfd){perr[0], POLLIN, 0};
            double left = deadline - now_ms();
            if (left <= 0) {
                timed_out = 1;
                break;
            }
            int r = poll(fds, (nfds_t)nf, left > 1e6 ? 1000000 : (int)left + 1);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                rc = ms_err("%s: %s: poll: %s", s->name, what, strerror(errno));
                break;
            }
            if (iw >= 0 && fds[iw].revents) {
                ssize_t w = write(pin[1], in + sent, in_len - sent);
                if (w > 0) sent += (size_t)w;
                if ((w < 0 && errno != EAGAIN && errno != EINTR) || sent == in_len)
                    close_fd(&pin[1]); /* all sent, or the command closed its stdin */
            }
            if (io >= 0 && fds[io].revents) {
                if (cap - n < 4096) {
                    if (cap >= EXEC_MAX_ANSWER) {
                        too_big = 1;
                        break;
                    }
                    buf = ms_realloc(buf, cap *= 2);
                }
                ssize_t r2 = read(pout[0], buf + n, cap - n - 1);
                if (r2 > 0) n += (size_t)r2;
                else if (r2 == 0 || (errno != EAGAIN && errno != EINTR)) close_fd(&pout[0]);
            }
            if (ie >= 0 && fds[ie].revents) {
                char tmp[4096];
                ssize_t r2 = read(perr[0], tmp, sizeof tmp);
                if (r2 > 0) { /* keep the last 800 bytes */
                    for (ssize_t i = 0; i < r2; i++) {
                        if (err_n == 800) memmove(err_tail, err_tail + 1, --err_n);
                        err_tail[err_n++] = tmp[i];
                    }
                } else if (r2 == 0 || (errno != EAGAIN && errno != EINTR)) {
                    close_fd(&perr[0]);
                }
            }
        }
        close_fd(&pin[1]);
        struct timespec zero = {0, 0};
        sigset_t pending;
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE)) sigtimedwait(&pipe_set, NULL, &zero);
        sigprocmask(SIG_SETMASK, &old, NULL);
    }
    if (timed_out || too_big || rc) kill(pid, SIGKILL);
    close_fd(&pout[0]), close_fd(&perr[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    err_tail[err_n] = 0;
    /* the stderr tail on one line, as data: control bytes become blanks */
    for (size_t i = 0; i < err_n; i++)
        if ((unsigned char)err_tail[i] < 32 || err_tail[i] == 127) err_tail[i] = ' ';
    const char *sep = err_n ? "; its stderr ends: " : "";
    if (rc) {
    } else if (got == (ssize_t)sizeof child_errno) {
        rc = ms_err("%s: cannot run '%s' (%s): %s (check [%s] command: the program must be on PATH "
                    "or a path from the config's folder)", s->name, s->argv[0], what,
                    strerror(child_errno), s->sec);
    } else if (timed_out) {
        rc = ms_err("%s: %s: no answer within %g s, stopped (raise [%s] timeout_s, or make the "
                    "command faster)%s%s", s->name, what, s->timeout_s, s->sec, sep, err_tail);
    } else if (too_big) {
        rc = ms_err("%s: %s: answer larger than %u MiB, stopped (a layout needs far less)",
                    s->name, what, EXEC_MAX_ANSWER >> 20);
    } else if (WIFSIGNALED(status)) {
        rc = ms_err("%s: %s: '%s' was killed by signal %d%s%s", s->name, what, s->argv[0],
                    WTERMSIG(status), sep, err_tail);
    } else if (WEXITSTATUS(status)) {
        rc = ms_err("%s: %s: '%s' exited with status %d (it must exit 0 after writing the "
                    "layout)%s%s", s->name, what, s->argv[0], WEXITSTATUS(status), sep, err_tail);
    }
    if (rc) {
        free(buf);
        return MS_ERR;
    }
    buf[n] = 0;
    *out = buf;
    *out_len = n;
    return MS_OK;
}

/* ---- the request ----------------------------------------------------- */

/* The request is written by hand: jansson formats 15,000 reals in about
 * 15 ms, most of the 50 ms a re-plan may cost. Integral loads (counts) go
 * as integers with ".0", others as %.17g; both read back exactly. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf_t;

static void sb_need(sbuf_t *b, size_t k) {
    if (b->n + k + 1 <= b->cap) return;
    while (b->n + k + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 1 << 16;
    b->p = ms_realloc(b->p, b->cap);
}

static void sb_str(sbuf_t *b, const char *s) {
    size_t k = strlen(s);
    sb_need(b, k);
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

static void sb_fmt(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    sb_need(b, (size_t)k);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

static void sb_long(sbuf_t *b, long long v) {
    char t[24];
    int k = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do t[k++] = (char)('0' + u % 10);
    while (u /= 10);
    sb_need(b, (size_t)k + 1);
    if (v < 0) b->p[b->n++] = '-';
    while (k) b->p[b->n++] = t[--k];
    b->p[b->n] = 0;
}

static void sb_real(sbuf_t *b, double x) {
    if (x == floor(x) && fabs(x) < 9007199254740992.0) { /* 2^53: exact as an integer */
        sb_long(b, (long long)x);
        sb_str(b, ".0");
    } else {
        sb_fmt(b, "%.17g", x);
    }
}

/* Loads as a .npy file: float64, C order, shape (L, E). */
static int write_npy(const place_state_t *s, const double *loads, char *path, size_t n) {
    const char *tmp = getenv("TMPDIR");
#ifdef P_tmpdir
    if (!tmp || !*tmp) tmp = P_tmpdir;
#endif
    if (!tmp || !*tmp) tmp = "/tmp";
    snprintf(path, n, "%s/moesim-loads-XXXXXX", tmp);
    int fd = mkstemp(path);
    if (fd < 0)
        return ms_err("%s: cannot create a loads file in %s: %s (set TMPDIR to a writable folder)",
                      s->name, tmp, strerror(errno));
    char hdr[128];
    int len = snprintf(hdr, sizeof hdr, "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }",
                       s->L, s->E);
    int total = (10 + len + 1 + 63) / 64 * 64; /* magic, version, length, dict, '\n' */
    memset(hdr + len, ' ', (size_t)(total - 10 - len - 1));
    hdr[total - 10 - 1] = '\n';
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                             (unsigned char)((total - 10) & 255), (unsigned char)((total - 10) >> 8)};
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(path);
        return ms_err("%s: cannot write %s: %s", s->name, path, strerror(errno));
    }
    fwrite(pre, 1, sizeof pre, f);
    fwrite(hdr, 1, (size_t)(total - 10), f);
    fwrite(loads, sizeof *loads, (size_t)s->L * s->E, f);
    if (fclose(f)) {
        unlink(path);
        return ms_err("%s: cannot write %s: %s", s->name, path, strerror(errno));
    }
    return MS_OK;
}

/* One call: the request, the command, the answer checked into *out. */
static int call(place_state_t *s, const char *event, int step, int64_t now_ns,
                const double *loads, const place_layout_t *cur, place_layout_t **out,
                double *ms) {
    double t0 = now_ms();
    char npy[4096] = "", what[64];
    snprintf(what, sizeof what, "%s at step %d", event, step);
    sbuf_t b = {0};
    sb_fmt(&b, "{\"protocol\": %d, \"event\": \"%s\", \"strategy\": \"%s\", \"step\": %d, "
           "\"now_ns\": %lld, \"deployment\": {\"layers\": %d, \"experts\": %d, \"slots\": %d, "
           "\"slots_per_device\": %d, \"devices\": %d, \"nodes\": %d, \"devices_per_node\": %d, "
           "\"redundant\": %d, \"groups\": %d, \"topk_groups\": %d, \"top_k\": %d, "
           "\"seed\": %llu}", EXEC_PROTOCOL, event, s->name + 5, step, (long long)now_ns, s->L,
           s->E, s->S, s->S / s->D, s->D, s->N, s->dpn, s->R, s->G, s->TG, s->K,
           (unsigned long long)s->seed);
    if (!loads) {
        sb_str(&b, ", \"loads\": null");
    } else if ((long)s->L * s->E > s->npy_above) {
        if (write_npy(s, loads, npy, sizeof npy)) {
            free(b.p);
            return MS_ERR;
        }
        json_t *js = json_string(npy); /* a path is data: quoted by jansson */
        char *q = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        json_decref(js);
        if (!q) {
            unlink(npy);
            free(b.p);
            return ms_err("%s: the loads file's path %s is not UTF-8 (set TMPDIR to a plain "
                          "folder)", s->name, npy);
        }
        sb_fmt(&b, ", \"loads_npy\": %s", q);
        free(q);
    } else {
        sb_str(&b, ", \"loads\": [");
        for (int l = 0; l < s->L; l++) {
            sb_str(&b, l ? ", [" : "[");
            for (int e = 0; e < s->E; e++) {
                if (e) sb_str(&b, ", ");
                sb_real(&b, loads[(size_t)l * s->E + e]);
            }
            sb_str(&b, "]");
        }
        sb_str(&b, "]");
    }
    if (cur) {
        sb_str(&b, ", \"current\": [");
        for (int l = 0; l < s->L; l++) {
            sb_str(&b, l ? ", [" : "[");
            for (int k = 0; k < cur->layer[l].n_slots; k++) {
                if (k) sb_str(&b, ", ");
                sb_long(&b, cur->layer[l].slot_expert[k]);
            }
            sb_str(&b, "]");
        }
        sb_str(&b, "]");
    }
    sb_str(&b, "}\n");
    char *text = b.p;
    char *ans = NULL;
    size_t ans_len = 0;
    int rc = run_child(s, what, text, b.n, &ans, &ans_len);
    free(text);
    if (npy[0]) unlink(npy);
    if (rc) return MS_ERR;
    char name[128];
    snprintf(name, sizeof name, "%s: %s: answer", s->name, what);
    rc = place_layout_parse_json(name, ans, ans_len, s->L, s->E, s->D, s->dpn, s->S, out);
    free(ans);
    if (rc) return MS_ERR;
    *ms = now_ms() - t0;
    s->calls++;
    return MS_OK;
}

/* ---- the strategy ---------------------------------------------------- */

static void exec_destroy(place_state_t *s) {
    if (!s) return;
    free(s->words);
    place_window_free(&s->win);
    free(s);
}

static int exec_init(const place_env_t *env, const double *prior, place_state_t **st,
                     place_layout_t **out) {
    place_state_t *s = ms_calloc(1, sizeof *s);
    const char *sec = place_param_section(env, "strategy.exec");
    snprintf(s->sec, sizeof s->sec, "%s", sec);
    snprintf(s->name, sizeof s->name, "exec:%s", strncmp(sec, "strategy.", 9) ? sec : sec + 9);
    cfg_t *c = env->cfg;
    const char *cmd = NULL;
    long window, interval;
    if (place_param_str(env, sec, "command", NULL, &cmd) ||
        place_param_double(env, sec, "timeout_s", 60, 1e-3, 86400, &s->timeout_s) ||
        place_param_int(env, sec, "npy_above", 1000000, 0, 1L << 40, &s->npy_above) ||
        place_param_int(env, sec, "window_steps", 1000, 1, 100000000, &window) ||
        place_param_int(env, sec, "interval_steps", 1000, 0, 100000000, &interval))
        goto fail;
    if (!cmd) {
        ms_err("%s: %s needs [%s] command (example: command = python3 my_strategy.py; "
               "docs/strategies.md gives the protocol)", c ? cfg_origin(c) : sec, s->name, sec);
        goto fail;
    }
    const char *where = cfg_where(c, sec, "command");
    if (split_words(s, cmd, where)) goto fail;
    /* The command runs where the config lives, as its paths are read. */
    const char *origin = cfg_origin(c);
    if (strcmp(origin, "-") && strchr(origin, '/')) {
        char *dup = ms_strdup(origin);
        snprintf(s->dir, sizeof s->dir, "%s", dirname(dup));
        free(dup);
    }
    s->L = env->n_layers, s->E = env->n_experts, s->D = env->n_devices;
    s->dpn = env->devices_per_node, s->N = env->n_nodes, s->R = env->redundant;
    s->S = s->E + s->R, s->G = env->n_groups > 0 ? env->n_groups : 1;
    s->TG = env->topk_groups > 0 ? env->topk_groups : 1, s->K = env->top_k, s->seed = env->seed;
    char who[64];
    snprintf(who, sizeof who, "%s: ", s->name);
    if (place_check_slots(env, who)) goto fail;
    s->last_step = -1;
    place_window_init(&s->win, window, interval, (size_t)s->L * s->E);
    if (call(s, "init", 0, 0, prior, NULL, out, &s->init_ms)) goto fail;
    *st = s;
    return MS_OK;
fail:
    exec_destroy(s);
    return MS_ERR;
}

static void exec_observe(place_state_t *s, const place_obs_t *obs) {
    s->last_step = obs->step;
    place_window_add(&s->win, obs->expert_load);
}

static int exec_replan(place_state_t *s, int64_t now_ns, const place_layout_t *cur,
                       place_layout_t **out) {
    if (!place_window_due(&s->win)) return 0;
    place_layout_t *lo = NULL;
    double ms;
    if (call(s, "replan", s->last_step + 1, now_ns, s->win.sum, cur, &lo, &ms)) return MS_ERR;
    s->decide_ms_sum += ms;
    s->decide_ms_max = ms_dmax(s->decide_ms_max, ms);
    if (place_layout_same(cur, lo)) {
        place_layout_free(lo);
        return 0;
    }
    s->replans_changed++;
    *out = lo;
    return 1;
}

static int exec_metrics(place_state_t *s, const char **names, double *values, int max) {
    int replans = s->calls - 1;
    const char *n[] = {"exec_calls", "exec_replans_changed", "exec_init_ms", "exec_decision_ms_mean",
                       "exec_decision_ms_max"};
    double v[] = {s->calls, s->replans_changed, s->init_ms,
                  replans > 0 ? s->decide_ms_sum / replans : s->init_ms,
                  ms_dmax(s->decide_ms_max, s->init_ms)};
    int k = 0;
    for (; k < 5 && k < max; k++) names[k] = n[k], values[k] = v[k];
    return k;
}

static const place_ops_t exec_ops = {
    .version = 1,
    .name = "exec",
    .summary = "an external command: deployment and loads as JSON on stdin, a layout on stdout",
    .algo_version = 1,
    .requires = "[strategy.NAME] command",
    .init = exec_init,
    .observe = exec_observe,
    .replan = exec_replan,
    .metrics = exec_metrics,
    .destroy = exec_destroy,
};

/* exec:NAME strategies are made on first use and kept for the process:
 * each is exec_ops under its own name. */
static struct {
    char name[EXEC_NAME_MAX + 6];
    place_ops_t ops;
} interned[EXEC_MAX];
static int n_interned;

const place_ops_t *place_exec_find(const char *name) {
    if (strncasecmp(name, "exec:", 5)) return NULL;
    const char *n = name + 5;
    size_t len = strlen(n);
    if (!len || len > EXEC_NAME_MAX || strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                                                 "QRSTUVWXYZ0123456789_-") != len)
        return NULL;
    for (int i = 0; i < place_count(); i++) /* [strategy.eplb] is eplb's own */
        if (!strcasecmp(place_at(i)->name, n)) return NULL;
    for (int i = 0; i < n_interned; i++)
        if (!strcasecmp(interned[i].name + 5, n)) return &interned[i].ops;
    if (n_interned == EXEC_MAX) return NULL;
    snprintf(interned[n_interned].name, sizeof interned[n_interned].name, "exec:%s", n);
    interned[n_interned].ops = exec_ops;
    interned[n_interned].ops.name = interned[n_interned].name;
    return &interned[n_interned++].ops;
}
