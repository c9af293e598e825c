/* cmd_sweep: `moesim sweep SWEEP.ini`, many runs from one sweep file,
 * serial or under mpirun, resuming where an earlier execution stopped. */
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "progress.h"
#include "sweep.h"
#include "table.h"
#include "util.h"

#define SWEEP_MAX_SETS 256

static void usage(FILE *f) {
    fprintf(f,
            "usage: moesim sweep SWEEP.ini [options]\n"
            "       moesim sweep -j N SWEEP.ini [options]\n"
            "       mpirun -n N moesim sweep SWEEP.ini [options]\n"
            "\n"
            "Runs every point of a sweep file (a base config and a grid or list of\n"
            "key assignments; docs/sweeps.md), one run per point and strategy, into\n"
            "one database. Points already in the database are skipped, so running it\n"
            "again resumes an interrupted sweep. With -j N, N worker processes on this\n"
            "machine run the points; under mpirun (many machines) the points go to the\n"
            "ranks as they ask for work. mpirun refuses to start as root unless given\n"
            "--allow-run-as-root, and more ranks than cores unless given --oversubscribe.\n"
            "\n"
            "options:\n"
            "  --db FILE              results database (default: results/<sweep file name>.db)\n"
            "  --set SECTION.KEY=VAL  set a config key in every point (repeatable)\n"
            "  -j, --jobs N           run points in N processes on this machine (default 1)\n"
            "  --dry-run              list the points and which are done; run nothing\n"
            "  --progress             draw the progress line even when stderr is not a\n"
            "                         terminal (under mpirun it never is)\n"
            "  --no-progress          never draw it\n"
            "  --csv, --json          print the points (--dry-run) or the summary as a table\n"
            "  -h, --help             this text\n");
}

/* The points (--dry-run) or the summary, through the shared table printer;
 * the summary stays a sentence as text. */
static int print_result(const sweep_t *sw, const sweep_opts_t *o, const sweep_stats_t *st,
                        table_format_t fmt, int workers, int mpi) {
    table_doc_t *d = table_doc_new("sweep", fmt);
    if (o->dry_run) {
        table_t *t = table_new(d, "points", NULL);
        table_col(t, "point", "point", 5, 0);
        table_col(t, "config_hash", "config_hash", 16, 1);
        table_col(t, "done", "done", 4, 1);
        table_col(t, "what_varies", "what varies", 0, 1);
        for (int i = 0; i < sw->n_points; i++) {
            table_int(t, i + 1);
            table_str(t, sw->pt[i].hash);
            table_str(t, sw->pt[i].done ? "yes" : "no");
            table_str(t, sw->pt[i].label);
        }
        table_note(d, "summary", "sweep: %d points, %d already in %s, %d to run", st->points,
                   st->skipped, o->db, st->points - st->skipped);
    } else {
        if (fmt != TABLE_TEXT) {
            table_t *t = table_new(d, "sweep", NULL);
            static const char *const k[] = {"points", "ran", "skipped", "failed", "merged",
                                            "wall_s", "workers", "database"};
            for (int i = 0; i < 8; i++) table_col(t, k[i], k[i], 0, i == 7);
            table_int(t, st->points);
            table_int(t, st->ran);
            table_int(t, st->skipped);
            table_int(t, st->failed);
            table_int(t, st->merged);
            table_num(t, st->wall_s, 1);
            table_int(t, workers);
            table_str(t, o->db);
        }
        table_note(d, "summary", "sweep: %d points: %d run, %d already in the database%s, %d "
                   "failed (%.1f s on %d %s%s); results: %s", st->points, st->ran, st->skipped,
                   st->merged ? " (some merged from rank files)" : "", st->failed, st->wall_s,
                   workers, mpi ? "rank" : "process",
                   workers > 1 ? (mpi ? "s" : "es") : "", o->db);
    }
    int rc = table_print(d, stdout);
    table_doc_free(d);
    return rc;
}

int cmd_sweep(int argc, char **argv) {
    static const struct option opts[] = {
        {"db", required_argument, 0, 'd'},   {"set", required_argument, 0, 's'},
        {"dry-run", no_argument, 0, 'n'},    {"progress", no_argument, 0, 'p'},
        {"no-progress", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
        {"jobs", required_argument, 0, 'j'},
        {"csv", no_argument, 0, 'C'},        {"json", no_argument, 0, 'J'},
        {0, 0, 0, 0},
    };
    const char *sets[SWEEP_MAX_SETS];
    sweep_opts_t o = {.progress = -1};
    int nsets = 0, c, jobs = 1;
    table_format_t fmt = TABLE_TEXT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hj:", opts, NULL)) != -1) {
        switch (c) {
        case 'd': o.db = optarg; break;
        case 's':
            if (nsets == SWEEP_MAX_SETS) {
                ms_err("more than %d --set options (put them in the sweep file's [set])",
                       SWEEP_MAX_SETS);
                return MS_EXIT_USAGE;
            }
            sets[nsets++] = optarg;
            break;
        case 'j': {
            char *end;
            long j = strtol(optarg, &end, 10);
            if (*optarg == 0 || *end || j < 1 || j > 1024) {
                ms_err("sweep: -j %s: give the number of worker processes, 1 to 1024 "
                       "(example: -j 2)", optarg);
                return 1;
            }
            jobs = (int)j;
            break;
        }
        case 'n': o.dry_run = 1; break;
        case 'p': o.progress = 1; break;
        case 'q': o.progress = 0; break;
        case 'C': fmt = TABLE_CSV; break;
        case 'J': fmt = TABLE_JSON; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return MS_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        ms_err("sweep: give exactly one sweep file (example: moesim sweep "
               "configs/sweep_redundancy.ini)");
        return MS_EXIT_USAGE;
    }
    const char *path = argv[optind];
    /* the sweep draws its own line; its points' runs (and forked workers) do not */
    progress_hold(1);

    int rank, size;
    if (sweep_mpi_init(&argc, &argv, &rank, &size)) return 1;
    if (size > 1 && jobs > 1) {
        if (rank == 0)
            ms_err("sweep: -j %d under mpirun: use either mpirun's ranks or -j, not both "
                   "(drop -j, or run without mpirun)", jobs);
        sweep_mpi_end();
        return 1;
    }
    int was_quiet = 0;
    if (rank > 0) was_quiet = ms_err_quiet(1); /* rank 0 speaks for all */
    sweep_t *sw = NULL;
    sweep_stats_t st;
    memset(&st, 0, sizeof st);
    int rc = sweep_mpi_agree(sweep_load(path, sets, nsets, &sw));
    char dbbuf[4096];
    if (rc == MS_OK) {
        if (!o.db) {
            char *dup = ms_strdup(path), *name = basename(dup), *dot = strrchr(name, '.');
            if (dot && dot != name) *dot = 0;
            snprintf(dbbuf, sizeof dbbuf, "results/%s.db", name);
            free(dup);
            o.db = dbbuf;
        }
        if (o.progress < 0) o.progress = isatty(STDERR_FILENO);
        if (o.dry_run) {
            if (rank == 0) rc = sweep_list(sw, &o, &st);
        } else {
            rc = size > 1 ? sweep_mpi_run(sw, &o, rank, size, &st)
                          : sweep_local_run(sw, &o, jobs, &st);
        }
    }
    if (rc == MS_OK && rank == 0) rc = print_result(sw, &o, &st, fmt, size > 1 ? size : jobs,
                                                    size > 1);
    sweep_free(sw);
    sweep_mpi_end();
    if (rank > 0) ms_err_quiet(was_quiet);
    return rc != MS_OK || st.failed ? 1 : 0;
}
