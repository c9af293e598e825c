/* cmd_list: `moesim list strategies|models|hardware`: what can be named in
 * a config, one line each with a description and where it comes from, so
 * nobody has to read C to find a preset. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "hw.h"
#include "moe.h"
#include "place.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f, "usage: moesim list strategies|models|hardware\n\n"
               "Lists what a config can name: placement strategies ([placement] strategies),\n"
               "model presets ([model] preset) and hardware presets ([cluster] hardware),\n"
               "with a one-line description and the source of each. Presets are the INI\n"
               "files of configs/models/ and configs/hardware/, built into the binary; a\n"
               "config may also give a path to such a file (or, for a model, to a Hugging\n"
               "Face config.json).\n");
}

static void strategies(void) {
    printf("%-12s %-80s %s\n", "strategy", "description", "source");
    for (int i = 0; i < place_count(); i++) {
        const place_ops_t *o = place_at(i);
        char src[64];
        snprintf(src, sizeof src, "models/place_%s.c", o->name);
        printf("%-12s %-80s %s\n", o->name, o->summary, src);
    }
    printf("%-12s %-80s %s\n", "exec:NAME",
           "an external command: [strategy.NAME] command = ... (docs/strategies.md)",
           "models/place_exec.c");
}

int cmd_list(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 2) {
        usage(stderr);
        return MS_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "strategies")) {
        strategies();
    } else if (!strcmp(argv[1], "models")) {
        printf("%-16s %-92s %s\n", "model", "description", "source");
        for (int i = 0; i < moe_count(); i++)
            printf("%-16s %-92s %s (%s)\n", moe_at(i)->name, moe_at(i)->description, moe_file(i),
                   moe_at(i)->source);
    } else if (!strcmp(argv[1], "hardware")) {
        printf("%-8s %-100s %s\n", "hardware", "description", "source");
        for (int i = 0; i < hw_count(); i++)
            printf("%-8s %-100s %s (%s)\n", hw_at(i)->name, hw_at(i)->description, hw_file(i),
                   hw_at(i)->source);
    } else {
        ms_err("list: unknown list '%s' (give strategies, models or hardware)", argv[1]);
        return MS_EXIT_USAGE;
    }
    return ferror(stdout) ? 1 : 0;
}
