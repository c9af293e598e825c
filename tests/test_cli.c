/* The command line's conventions through the real binary: --version and its
 * git commit, machine-readable tables (--csv, --json) and the progress line.
 * Each case runs build/moesim (the binary beside this test binary) in a child. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

static char exe[700];

static void setup(void) {
    char self[600];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(k, 0);
    self[k] = 0;
    snprintf(exe, sizeof exe, "%s/moesim", dirname(self));
    cr_assert_eq(access(exe, X_OK), 0, "%s is missing (make builds it with the tests)", exe);
}

TestSuite(cli, .init = setup, .timeout = 300);

typedef struct {
    int status;  /* exit code, or 128 + signal */
    char *out;   /* stdout, NUL-terminated (caller frees) */
    char *err;   /* stderr */
} run_t;

static char *slurp_fd(int fd) {
    size_t n = 0, cap = 4096;
    char *b = ms_malloc(cap);
    ssize_t k;
    lseek(fd, 0, SEEK_SET);
    while ((k = read(fd, b + n, cap - n - 1)) > 0) {
        n += (size_t)k;
        if (cap - n < 2) b = ms_realloc(b, cap *= 2);
    }
    b[n] = 0;
    close(fd);
    return b;
}

/* Runs `file` (exe when NULL) with args (NULL-terminated, argv[0] first). */
static run_t run_prog(const char *file, char *const *args) {
    FILE *fo = tmpfile(), *fe = tmpfile(); /* unnamed: nothing left behind */
    cr_assert(fo && fe);
    int o = dup(fileno(fo)), e = dup(fileno(fe));
    fclose(fo);
    fclose(fe);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(o, 1);
        dup2(e, 2);
        execvp(file ? file : exe, args);
        _exit(127);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    run_t r = {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), slurp_fd(o), slurp_fd(e)};
    return r;
}

static void run_free(run_t *r) {
    free(r->out);
    free(r->err);
}

/* ---- version ---- */

Test(cli, version_names_the_build_commit) {
    char *a1[] = {"moesim", "--version", NULL}, *a2[] = {"moesim", "version", NULL};
    run_t r1 = run_prog(NULL, a1), r2 = run_prog(NULL, a2);
    cr_assert_eq(r1.status, 0, "%s", r1.err);
    cr_assert_eq(r2.status, 0, "%s", r2.err);
    cr_assert_str_eq(r1.out, r2.out);
    char ver[64], git[128];
    cr_assert_eq(sscanf(r1.out, "moesim %63s (%127[^)])\n", ver, git), 2, "got '%s'", r1.out);
    cr_assert_str_eq(ver, MOESIM_VERSION);
    cr_assert_null(strchr(r1.out, '/'), "no path of the build machine: '%s'", r1.out);
    /* the commit is the one git describes now (the suite runs on the tree
     * it was built from), or 'unknown' outside a git checkout */
    char *g[] = {"git", "describe", "--always", NULL};
    run_t rg = run_prog("git", g);
    if (rg.status == 0) {
        rg.out[strcspn(rg.out, "\n")] = 0;
        cr_assert_eq(strncmp(git, rg.out, strlen(rg.out)), 0, "built from '%s', tree is '%s'", git,
                     rg.out);
    } else {
        cr_assert_str_eq(git, "unknown");
    }
    char *a3[] = {"moesim", "--version", "extra", NULL};
    run_t r3 = run_prog(NULL, a3);
    cr_assert_eq(r3.status, MS_EXIT_USAGE);
    run_free(&r1);
    run_free(&r2);
    run_free(&rg);
    run_free(&r3);
}
