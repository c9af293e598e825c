/* cmd: the moesim subcommands. Each is `int cmd_<name>(argc, argv)` with
 * argv[0] the subcommand's name, returning the process exit status; the
 * table in main.c lists them. A new subcommand is a cmd_<name>.c file and
 * one line in that table. */
#ifndef MOESIM_CMD_H
#define MOESIM_CMD_H

int cmd_run(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_place(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_calib(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_cost(int argc, char **argv);
int cmd_config_keys(int argc, char **argv);

/* Shared by commands that read an experiment config: parses the options
 * --db FILE, --set section.key=value (repeatable), --replace, --strategy S
 * (repeatable), --wait-s SECONDS and -h; loads the config; positional CONFIG is required. */
#define CMD_MAX_ONLY 16

typedef struct cmd_exp {
    const char *config;
    const char *db;
    const char *only[CMD_MAX_ONLY]; /* --strategy names */
    int n_only;
    double wait_s;                  /* --wait-s (0: the default) */
    int replace;
    int quiet;
    const char *timeline;           /* --timeline FILE.json (run, compare) */
    long timeline_max;              /* --timeline-max-events (0: the default) */
    int seeds;                      /* --seeds N (compare; 0: [experiment] seeds) */
    int format;                     /* --csv, --json: a table_format_t (table.h) */
    struct cfg *cfg;
} cmd_exp_t;

#endif
