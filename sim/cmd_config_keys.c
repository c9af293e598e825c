/* cmd_config_keys: `moesim config-keys`, every configuration key from the
 * table the parsers check against (sim/base/cfg_keys.c); --markdown writes the
 * reference of docs/config.md and --update rewrites it in place. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cfg_keys.h"
#include "cmd.h"
#include "table.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f, "usage: moesim config-keys [--csv | --json | --markdown | --update FILE.md]\n\n"
               "Every key of experiment configs, model and hardware preset files and sweep\n"
               "files: section, key, type, default, range, unit and meaning, from the table\n"
               "the config parsers check every read against (sim/base/cfg_keys.c).\n\n"
               "  --csv, --json     the table for machines (default: aligned text)\n"
               "  --markdown        the reference part of docs/config.md, as Markdown\n"
               "  --update FILE.md  rewrite the generated part of FILE.md in place (between its\n"
               "                    BEGIN keys and END keys lines): make config-doc runs it\n"
               "  -h, --help        this text\n");
}

int cmd_config_keys(int argc, char **argv) {
    static const struct option opts[] = {{"markdown", no_argument, 0, 'm'},
                                         {"update", required_argument, 0, 'u'},
                                         {"csv", no_argument, 0, 'C'},
                                         {"json", no_argument, 0, 'J'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *update = NULL;
    int c, markdown = 0;
    table_format_t fmt = TABLE_TEXT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': markdown = 1; break;
        case 'C': fmt = TABLE_CSV; break;
        case 'J': fmt = TABLE_JSON; break;
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
    if (markdown) return cfg_keys_markdown(stdout) ? MS_EXIT_INPUT : MS_EXIT_OK;
    static const char *const types[] = {"string", "integer", "number", "boolean", "enum"};
    table_doc_t *d = table_doc_new("config-keys", fmt);
    table_t *t = table_new(d, "keys", NULL);
    static const char *const cols[] = {"file", "section", "key", "type", "default", "min", "max",
                                       "values", "unit", "meaning"};
    for (int i = 0; i < 10; i++) table_col(t, cols[i], cols[i], 0, 1);
    for (int i = 0; i < cfg_keys_n; i++) {
        const cfg_key_t *k = &cfg_keys[i];
        table_str(t, k->file);
        table_str(t, k->section);
        table_str(t, k->key);
        table_str(t, types[k->type]);
        table_str(t, k->def);
        table_str(t, k->min); /* as the code writes them: text, exact */
        table_str(t, k->max);
        table_str(t, k->type == CFGK_BOOL ? "true, false" : k->values);
        table_str(t, k->unit);
        table_str(t, k->meaning);
    }
    int rc = table_print(d, stdout);
    table_doc_free(d);
    return rc ? MS_EXIT_INPUT : MS_EXIT_OK;
}
