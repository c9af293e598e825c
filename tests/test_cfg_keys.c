/* The key table (sim/base/cfg_keys.c) against docs/config.md and the parsers:
 * the page's reference is exactly what the table generates, the table is
 * consistent with itself, every shipped config reads only keys in it, and a
 * read of a key without a row (or with another range or default) stops the
 * program as an internal error. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "cfg_keys.h"
#include "run_spec.h"
#include "sweep.h"
#include "util.h"

Test(cfg_keys, docs_config_md_is_the_generated_reference) {
    char *doc, *gen = NULL;
    size_t len, glen;
    cr_assert_eq(ms_read_file("docs/config.md", &doc, &len), MS_OK, "%s", ms_err_last());
    FILE *m = open_memstream(&gen, &glen);
    cr_assert_not_null(m);
    cr_assert_eq(cfg_keys_markdown(m), MS_OK);
    fclose(m);
    char *b = strstr(doc, CFG_KEYS_BEGIN);
    cr_assert_not_null(b, "docs/config.md lost its '%s' line", CFG_KEYS_BEGIN);
    /* the page holds the generated text whole, markers included: a row
     * added, removed or changed on either side fails here */
    cr_assert_eq(strncmp(b, gen, glen), 0,
                 "docs/config.md's key reference differs from sim/base/cfg_keys.c: run make "
                 "config-doc");
    cr_assert_null(strstr(b + glen, CFG_KEYS_BEGIN), "two generated parts in docs/config.md");
    free(gen);
    free(doc);
}

static int is_num(const char *s, int integer) {
    char *e;
    if (integer) strtoll(s, &e, 10);
    else strtod(s, &e);
    return *s && !*e;
}

Test(cfg_keys, table_is_consistent) {
    const char *kinds[] = {CFGK_EXPERIMENT, CFGK_MODEL, CFGK_HARDWARE, CFGK_SWEEP};
    cr_assert_gt(cfg_keys_n, 100);
    for (int i = 0; i < cfg_keys_n; i++) {
        const cfg_key_t *k = &cfg_keys[i];
        int kind_ok = 0;
        for (int j = 0; j < 4; j++) kind_ok |= !strcmp(k->file, kinds[j]);
        cr_assert(kind_ok, "row %d: file kind '%s'", i, k->file);
        cr_assert(k->meaning && *k->meaning && !strchr(k->meaning, '\n'), "[%s] %s: meaning",
                  k->section, k->key);
        cr_assert_not_null(k->unit);
        cr_assert_eq(cfg_keys_find(k->file, k->section, k->key), k, "[%s] %s twice", k->section,
                     k->key);
        /* a section's rows are together, so the reference names it once */
        if (i && strcasecmp(cfg_keys[i - 1].section, k->section))
            for (int j = 0; j < i - 1; j++)
                cr_assert(strcmp(cfg_keys[j].file, k->file) ||
                              strcasecmp(cfg_keys[j].section, k->section),
                          "[%s] rows are split", k->section);
        int integer = k->type == CFGK_INT;
        if (k->type == CFGK_INT || k->type == CFGK_DOUBLE) {
            cr_assert(is_num(k->min, integer) && is_num(k->max, integer), "[%s] %s: range",
                      k->section, k->key);
            cr_assert_leq(strtod(k->min, NULL), strtod(k->max, NULL), "[%s] %s", k->section,
                          k->key);
            if (k->def[0] != '(') {
                cr_assert(is_num(k->def, integer), "[%s] %s: default '%s'", k->section, k->key,
                          k->def);
                double d = strtod(k->def, NULL);
                cr_assert(d >= strtod(k->min, NULL) && d <= strtod(k->max, NULL),
                          "[%s] %s: default %s outside its range", k->section, k->key, k->def);
            }
        } else {
            cr_assert(!k->min && !k->max, "[%s] %s: a range on a non-number", k->section, k->key);
        }
        if (k->type == CFGK_BOOL)
            cr_assert(k->def[0] == '(' || !strcmp(k->def, "true") || !strcmp(k->def, "false"));
        if (k->type == CFGK_ENUM) {
            cr_assert_not_null(k->values);
            if (k->def[0] != '(') {
                char list[512];
                snprintf(list, sizeof list, ", %s, ", k->values);
                char want[128];
                snprintf(want, sizeof want, ", %s, ", k->def);
                cr_assert(strstr(list, want), "[%s] %s: default not among %s", k->section, k->key,
                          k->values);
            }
        }
    }
}

Test(cfg_keys, a_read_is_checked_against_its_row) {
    char why[768];
    const char *flow[] = {"flow", "analytic"}, *swapped[] = {"analytic", "flow"};
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "cluster", "nodes", CFGK_INT, "1", "1", "4096",
                                 NULL, 0, why, sizeof why), MS_OK, "%s", why);
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "Cluster", "NODES", CFGK_INT, "1", "1", "4096",
                                 NULL, 0, why, sizeof why), MS_OK, "INI names are case-blind");
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "cluster", "nodes", CFGK_INT, "1", "1", "4095",
                                 NULL, 0, why, sizeof why), MS_ERR);
    cr_assert(strstr(why, "range") && strstr(why, "4095"), "%s", why);
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "cluster", "nodes", CFGK_INT, "2", "1", "4096",
                                 NULL, 0, why, sizeof why), MS_ERR);
    cr_assert(strstr(why, "default"), "%s", why);
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "cluster", "nodes", CFGK_DOUBLE, "1", "1",
                                 "4096", NULL, 0, why, sizeof why), MS_ERR);
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "cluster", "nodez", CFGK_INT, "1", "1", "4096",
                                 NULL, 0, why, sizeof why), MS_ERR);
    cr_assert(strstr(why, "no row"), "%s", why);
    /* the same key in another kind of file is another row */
    cr_assert_eq(cfg_keys_verify(CFGK_MODEL, "cluster", "nodes", CFGK_INT, "1", "1", "4096",
                                 NULL, 0, why, sizeof why), MS_ERR);
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "cluster", "mode", CFGK_ENUM, "flow", NULL, NULL,
                                 flow, 2, why, sizeof why), MS_OK, "%s", why);
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "cluster", "mode", CFGK_ENUM, "flow", NULL, NULL,
                                 swapped, 2, why, sizeof why), MS_ERR);
    /* numbers compare by value: the code's 1e-3 is the table's "1e-3" */
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "strategy.capacity", "factor", CFGK_DOUBLE,
                                 "1.25", "0.001", "1000000", NULL, 0, why, sizeof why), MS_OK,
                 "%s", why);
    /* an external strategy's section is any [strategy.X] without rows */
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "strategy.mine", "timeout_s", CFGK_DOUBLE, "60",
                                 "1e-3", "86400", NULL, 0, why, sizeof why), MS_OK, "%s", why);
    /* a computed default "(...)" is not compared */
    cr_assert_eq(cfg_keys_verify(CFGK_EXPERIMENT, "cluster", "devices_per_node", CFGK_INT, "4",
                                 "1", "1024", NULL, 0, why, sizeof why), MS_OK, "%s", why);
}

/* A parser reading a key the table lacks cannot pass unnoticed: the read
 * itself ends the program with the internal-error status. */
Test(cfg_keys, reading_a_key_without_a_row_is_an_internal_error,
     .exit_code = MS_EXIT_INTERNAL) {
    fclose(stderr);
    cfg_t *c = cfg_new();
    long v;
    cfg_int(c, "cluster", "gpus_per_rack", 1, 1, 4096, &v);
}

Test(cfg_keys, a_read_with_another_range_is_an_internal_error, .exit_code = MS_EXIT_INTERNAL) {
    fclose(stderr);
    cfg_t *c = cfg_new();
    long v;
    cfg_int(c, "cluster", "nodes", 1, 1, 8192, &v);
}

Test(cfg_keys, a_preset_file_reads_its_own_rows, .exit_code = MS_EXIT_INTERNAL) {
    fclose(stderr);
    cfg_t *c = cfg_new();
    cfg_set_kind(c, CFGK_MODEL);
    const char *s;
    cfg_str(c, "model", "preset", "deepseek-v3", &s); /* an experiment key, not a preset's */
}

/* Every config shipped in configs/ loads with every read in the table. */
Test(cfg_keys, shipped_configs_read_only_tabled_keys) {
    DIR *d = opendir("configs");
    cr_assert_not_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".ini")) continue;
        char path[512];
        snprintf(path, sizeof path, "configs/%s", e->d_name);
        cfg_t *c;
        cr_assert_eq(cfg_load(path, &c), MS_OK, "%s", ms_err_last());
        if (cfg_has_section(c, "sweep")) {
            sweep_t *sw = NULL;
            cr_assert_eq(sweep_load(path, NULL, 0, &sw), MS_OK, "%s: %s", path, ms_err_last());
            sweep_free(sw);
        } else {
            run_spec_t sp;
            cr_assert_eq(run_spec_load(c, &sp), MS_OK, "%s: %s", path, ms_err_last());
        }
        cfg_free(c);
        n++;
    }
    closedir(d);
    cr_assert_geq(n, 5, "configs/ holds the shipped configs");
}
