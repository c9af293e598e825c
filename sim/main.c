/* moesim: command-line entry. One line per subcommand in the table below. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "util.h"
#include "version.h" /* MOESIM_GIT: git describe at build time (Makefile) */

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} COMMANDS[] = {
    {"run", cmd_run, "simulate one strategy of an experiment config"},
    {"compare", cmd_compare, "simulate every strategy of a config on the same workload"},
    {"report", cmd_report, "draw figures and an index from a results database"},
    {"sweep", cmd_sweep, "run a grid or list of configs (resumable; spreads over mpirun ranks)"},
    {"place", cmd_place, "build one strategy's layout from expert counts; PAR and bound per layer"},
    {"trace", cmd_trace, "inspect, convert or generate expert-activation traces"},
    {"calib", cmd_calib, "the cost model against real-GPU measurements (calib report)"},
    {"list", cmd_list, "list strategies, model presets or hardware presets, with their sources"},
    {"cost", cmd_cost, "what the cost model charges for expert compute or an all-to-all (us)"},
    {"config-keys", cmd_config_keys, "every config key: type, default, range, unit (docs/config.md)"},
    {"version", NULL, "the version and the git commit it was built from (also --version)"},
};

static void usage(FILE *f) {
    fprintf(f, "moesim %s: discrete-event simulator for Mixture-of-Experts serving\n\n"
               "usage: moesim COMMAND [ARGS]   (moesim COMMAND --help for each)\n\ncommands:\n",
            MOESIM_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MS_EXIT_USAGE : MS_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        if (argc > 2) {
            fprintf(stderr, "moesim: %s takes no arguments\n", argv[1]);
            return MS_EXIT_USAGE;
        }
        printf("moesim %s (%s)\n", MOESIM_VERSION, MOESIM_GIT);
        return ferror(stdout) ? MS_EXIT_INPUT : MS_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (COMMANDS[i].fn && !strcmp(argv[1], COMMANDS[i].name)) {
            /* the one place statuses become exit codes (util.h) */
            int rc = COMMANDS[i].fn(argc - 1, argv + 1);
            return rc == MS_EXIT_OK || rc == MS_EXIT_USAGE || rc == MS_EXIT_INTERNAL
                       ? rc
                       : MS_EXIT_INPUT;
        }
    fprintf(stderr, "moesim: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return MS_EXIT_USAGE;
}
