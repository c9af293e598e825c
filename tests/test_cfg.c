/* Config: parsing, typed values, errors naming file:line. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "util.h"

Test(cfg, reads_typed_values_with_defaults) {
    cfg_t *c;
    cr_assert_eq(cfg_parse_text("[a]\nx = 3\ny = 2.5 ; comment\n# note\nz = yes\n", "t.ini", &c), MS_OK);
    cfg_set_kind(c, NULL); /* made-up keys: the getters themselves under test */
    long x;
    double y;
    int z;
    const char *s;
    cr_assert_eq(cfg_int(c, "a", "x", 0, 0, 10, &x), MS_OK);
    cr_assert_eq(x, 3);
    cr_assert_eq(cfg_double(c, "a", "y", 0, 0, 10, &y), MS_OK);
    cr_assert_float_eq(y, 2.5, 1e-12);
    cr_assert_eq(cfg_bool(c, "a", "z", 0, &z), MS_OK);
    cr_assert_eq(z, 1);
    cr_assert_eq(cfg_str(c, "a", "w", "dflt", &s), MS_OK);
    cr_assert_str_eq(s, "dflt");
    cr_assert_eq(cfg_check_unused(c), MS_OK);
    cfg_free(c);
}

Test(cfg, syntax_error_names_file_and_line) {
    ms_err_quiet(1);
    cfg_t *c;
    cr_assert_eq(cfg_parse_text("[a]\nx = 1\nthis is not ini\n", "bad.ini", &c), MS_ERR);
    cr_assert(strstr(ms_err_last(), "bad.ini:3"), "%s", ms_err_last());
}

Test(cfg, bad_values_name_line_key_and_fix) {
    ms_err_quiet(1);
    cfg_t *c;
    cr_assert_eq(cfg_parse_text("[cluster]\n\nnodes = four\nmore = 99\n", "c.ini", &c), MS_OK);
    cfg_set_kind(c, NULL);
    long v;
    cr_assert_eq(cfg_int(c, "cluster", "nodes", 1, 1, 10, &v), MS_ERR);
    cr_assert(strstr(ms_err_last(), "c.ini:3") && strstr(ms_err_last(), "nodes"), "%s",
              ms_err_last());
    cr_assert_eq(cfg_int(c, "cluster", "more", 1, 1, 10, &v), MS_ERR);
    cr_assert(strstr(ms_err_last(), "c.ini:4") && strstr(ms_err_last(), "out of range"), "%s",
              ms_err_last());
    cfg_free(c);
}

Test(cfg, nan_and_inf_are_rejected) {
    ms_err_quiet(1);
    cfg_t *c;
    cr_assert_eq(cfg_parse_text("[h]\nbw = nan\nlat = inf\n", "h.ini", &c), MS_OK);
    cfg_set_kind(c, NULL);
    double d;
    cr_assert_eq(cfg_double(c, "h", "bw", 1, 0, 1e20, &d), MS_ERR);
    cr_assert(strstr(ms_err_last(), "h.ini:2"));
    cr_assert_eq(cfg_double(c, "h", "lat", 1, 0, 1e20, &d), MS_ERR);
    cfg_free(c);
}

Test(cfg, unknown_and_duplicate_keys) {
    ms_err_quiet(1);
    cfg_t *c;
    cr_assert_eq(cfg_parse_text("[a]\nx = 1\nx = 2\n", "d.ini", &c), MS_ERR);
    cr_assert(strstr(ms_err_last(), "d.ini:3") && strstr(ms_err_last(), "twice"), "%s", ms_err_last());
    cr_assert_eq(cfg_parse_text("[a]\nx = 1\ntypo = 2\n", "u.ini", &c), MS_OK);
    cfg_set_kind(c, NULL);
    long v;
    cfg_int(c, "a", "x", 0, 0, 9, &v);
    cr_assert_eq(cfg_check_unused(c), MS_ERR);
    cr_assert(strstr(ms_err_last(), "u.ini:3") && strstr(ms_err_last(), "typo"), "%s", ms_err_last());
    cfg_free(c);
}

Test(cfg, overrides_and_canonical_text) {
    cfg_t *c;
    cr_assert_eq(cfg_parse_text("[b]\ny = 1\n[a]\nx = 1\n", "o.ini", &c), MS_OK);
    cfg_set_kind(c, NULL);
    cr_assert_eq(cfg_set_assign(c, "a.x=5", "--set", 1), MS_OK);
    long v;
    cfg_int(c, "a", "x", 0, 0, 9, &v);
    cr_assert_eq(v, 5);
    char *t = cfg_canonical(c);
    cr_assert_str_eq(t, "[a]\nx = 5\n[b]\ny = 1\n");
    free(t);
    ms_err_quiet(1);
    cr_assert_eq(cfg_set_assign(c, "novalue", "--set", 2), MS_ERR);
    cfg_free(c);
}

Test(cfg, missing_file) {
    ms_err_quiet(1);
    cfg_t *c;
    cr_assert_eq(cfg_load("no/such/file.ini", &c), MS_ERR);
    cr_assert(strstr(ms_err_last(), "no/such/file.ini"));
}
