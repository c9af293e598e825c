/* cmd_list: `moesim list strategies|models|hardware`: what can be named in
 * a config, one line each with a description and where it comes from, so
 * nobody has to read C to find a preset. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "hw.h"
#include "moe.h"
#include "place.h"
#include "table.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f, "usage: moesim list strategies|models|hardware [--csv | --json]\n\n"
               "Lists what a config can name: placement strategies ([placement] strategies),\n"
               "model presets ([model] preset) and hardware presets ([cluster] hardware),\n"
               "with a one-line description and the source of each. Presets are the INI\n"
               "files of configs/models/ and configs/hardware/, built into the binary; a\n"
               "config may also give a path to such a file (or, for a model, to a Hugging\n"
               "Face config.json). --csv and --json print the same table for machines.\n");
}

/* One table through the shared printer: name, description, source. */
static table_t *table(table_doc_t *d, const char *what, int wname, int wdesc) {
    table_t *t = table_new(d, what, NULL);
    table_col(t, "name", !strcmp(what, "strategies") ? "strategy"
                         : !strcmp(what, "models")   ? "model"
                                                     : "hardware", wname, 1);
    table_col(t, "description", "description", wdesc, 1);
    table_col(t, "source", "source", 0, 1);
    return t;
}

static void row(table_t *t, const char *name, const char *desc, const char *src) {
    table_str(t, name);
    table_str(t, desc);
    table_str(t, src);
}

int cmd_list(int argc, char **argv) {
    table_format_t fmt = TABLE_TEXT;
    int n = 0;
    const char *what = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return MS_EXIT_OK;
        }
        if (!strcmp(argv[i], "--csv")) fmt = TABLE_CSV;
        else if (!strcmp(argv[i], "--json")) fmt = TABLE_JSON;
        else if (argv[i][0] == '-') {
            usage(stderr);
            ms_err("list: unknown option '%s'", argv[i]);
            return MS_EXIT_USAGE;
        } else {
            what = argv[i];
            n++;
        }
    }
    if (n != 1) {
        usage(stderr);
        return MS_EXIT_USAGE;
    }
    table_doc_t *d = table_doc_new("list", fmt);
    char src[600];
    if (!strcmp(what, "strategies")) {
        table_t *t = table(d, what, 12, 80);
        for (int i = 0; i < place_count(); i++) {
            const place_ops_t *o = place_at(i);
            snprintf(src, sizeof src, "models/place_%s.c", o->name);
            row(t, o->name, o->summary, src);
        }
        row(t, "exec:NAME", "an external command: [strategy.NAME] command = ... (docs/strategies.md)",
            "models/place_exec.c");
    } else if (!strcmp(what, "models")) {
        table_t *t = table(d, what, 16, 92);
        for (int i = 0; i < moe_count(); i++) {
            snprintf(src, sizeof src, "%s (%s)", moe_file(i), moe_at(i)->source);
            row(t, moe_at(i)->name, moe_at(i)->description, src);
        }
    } else if (!strcmp(what, "hardware")) {
        table_t *t = table(d, what, 8, 100);
        for (int i = 0; i < hw_count(); i++) {
            snprintf(src, sizeof src, "%s (%s)", hw_file(i), hw_at(i)->source);
            row(t, hw_at(i)->name, hw_at(i)->description, src);
        }
    } else {
        table_doc_free(d);
        ms_err("list: unknown list '%s' (give strategies, models or hardware)", what);
        return MS_EXIT_USAGE;
    }
    int rc = table_print(d, stdout);
    table_doc_free(d);
    return rc ? MS_EXIT_INPUT : MS_EXIT_OK;
}
