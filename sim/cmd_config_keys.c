/* cmd_config_keys: `moesim config-keys`, every configuration key from the
 * table the parsers check against (sim/cfg_keys.c); --markdown writes the
 * reference of docs/config.md and --update rewrites it in place. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cfg_keys.h"
#include "cmd.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f, "usage: moesim config-keys [--markdown | --update FILE.md]\n\n"
               "Every key of experiment configs, model and hardware preset files and sweep\n"
               "files: section, key, type, default, range, unit and meaning, from the table\n"
               "the config parsers check every read against (sim/cfg_keys.c).\n\n"
               "  --markdown        the reference part of docs/config.md, as Markdown\n"
               "  --update FILE.md  rewrite the generated part of FILE.md in place (between its\n"
               "                    BEGIN keys and END keys lines): make config-doc runs it\n"
               "  -h, --help        this text\n");
}

int cmd_config_keys(int argc, char **argv) {
    static const struct option opts[] = {{"markdown", no_argument, 0, 'm'},
                                         {"update", required_argument, 0, 'u'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *update = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': break;
        case 'u': update = optarg; break;
        case 'h': usage(stdout); return MS_EXIT_OK;
        default: usage(stderr); return MS_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        ms_err("config-keys: unexpected argument '%s'", argv[optind]);
        return MS_EXIT_USAGE;
    }
    if (update) return cfg_keys_update_doc(update) ? MS_EXIT_INPUT : MS_EXIT_OK;
    return cfg_keys_markdown(stdout) ? MS_EXIT_INPUT : MS_EXIT_OK;
}
