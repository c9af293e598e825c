/* Presets as data: the INI files of configs/models/ and configs/hardware/
 * are what the binary embeds, byte for byte and all of them; presets load
 * by path with errors naming file and line; Hugging Face config.json files
 * of DeepSeek-V3, Qwen3 and Mixtral import to exactly the built-in
 * presets; `moesim list` names everything with its source. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd.h"
#include "hw.h"
#include "moe.h"
#include "place.h"
#include "presets.h"
#include "run.h"
#include "util.h"

Test(presets, embedded_texts_are_the_files) {
    int seen = 0;
    for (int i = 0; i < preset_n_blobs; i++) {
        const preset_blob_t *b = &preset_blobs[i];
        char *text;
        size_t len;
        cr_assert_eq(ms_read_file(b->path, &text, &len), MS_OK, "%s", b->path);
        cr_expect_eq(len, b->len, "%s: %zu bytes on disk, %zu embedded: re-run "
                                  "models/presets_embed.py", b->path, len, b->len);
        cr_expect(len == b->len && !memcmp(text, b->text, len),
                  "%s differs from models/presets_data.c: re-run models/presets_embed.py",
                  b->path);
        free(text);
    }
    /* and every preset file is embedded */
    const char *dirs[] = {"configs/models", "configs/hardware"};
    for (int d = 0; d < 2; d++) {
        DIR *dir = opendir(dirs[d]);
        cr_assert_not_null(dir, "%s", dirs[d]);
        struct dirent *e;
        while ((e = readdir(dir))) {
            size_t n = strlen(e->d_name);
            if (n < 5 || strcmp(e->d_name + n - 4, ".ini")) continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dirs[d], e->d_name);
            int found = 0;
            for (int i = 0; i < preset_n_blobs; i++) found |= !strcmp(preset_blobs[i].path, path);
            cr_expect(found, "%s is not embedded: re-run models/presets_embed.py", path);
            seen++;
        }
        closedir(dir);
    }
    cr_expect_eq(seen, preset_n_blobs);
    cr_expect_eq(moe_count() + hw_count(), preset_n_blobs, "every embedded preset parses");
}

/* Figures read from the files, checked against the data sheets and
 * config.json values the files cite. */
Test(presets, built_in_values) {
    const moe_model_t *m = moe_find("deepseek-v3");
    cr_assert_not_null(m);
    cr_expect_eq(m->n_layers, 61);
    cr_expect_eq(m->n_dense, 3);
    cr_expect_eq(m->attn, MOE_ATTN_MLA);
    cr_expect_eq(m->scoring, MOE_SIGMOID);
    cr_expect_eq(m->routed_scale, 2.5);
    cr_expect_eq(moe_find("kimi-k2")->routed_scale, 2.827);
    cr_expect_eq(moe_find("mixtral-8x7b")->scoring, MOE_SOFTMAX);
    cr_expect_eq(hw_find("H800")->hbm_bw, 3.35e12);
    cr_expect_eq(hw_find("H800")->eff_hbm, 0.85);
    cr_expect_eq(hw_find("910B")->devices_per_host, 8);
    cr_expect_eq(hw_find("H200")->mem_reserve, 4e9);
    cr_expect_null(hw_find("H200")->calib, "the table stays as read; run.c attaches the curve");
    cr_expect_str_eq(moe_file(0), "configs/models/deepseek-v3.ini");
}

static char dir[64];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/moesim-presets-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    ms_err_quiet(1);
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Every numeric field of two models. */
static void expect_same_model(const moe_model_t *a, const moe_model_t *b) {
#define F(f) cr_expect_eq(a->f, b->f, "%s vs %s: " #f, a->name, b->name)
    F(n_layers); F(n_dense); F(hidden); F(moe_inter); F(dense_inter); F(n_experts); F(top_k);
    F(n_shared); F(shared_inter); F(n_groups); F(topk_groups); F(scoring); F(routed_scale);
    F(weight_bytes); F(dispatch_bytes); F(combine_bytes); F(attn); F(n_heads); F(n_kv_heads);
    F(head_dim); F(q_lora_rank); F(kv_lora_rank); F(qk_nope_dim); F(qk_rope_dim); F(v_head_dim);
    F(vocab); F(dense_bytes); F(embed_bytes); F(kv_bytes); F(mtp_modules); F(mtp_depth);
#undef F
}

Test(presets, hugging_face_configs_import_to_the_built_in_presets) {
    const char *names[] = {"deepseek-v3", "qwen3-30b-a3b", "mixtral-8x7b"};
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, "tests/data/hf/%s/config.json", names[i]);
        moe_model_t m;
        cr_assert_eq(moe_load(path, &m), MS_OK, "%s: %s", path, ms_err_last());
        cr_expect_str_eq(m.name, names[i], "named after its folder");
        cr_expect(strstr(m.source, path));
        expect_same_model(&m, moe_find(names[i]));
    }
}

static void hf_refused(const char *json, const char *want) {
    const char *p = write_file("config.json", json);
    moe_model_t m;
    cr_expect_eq(moe_import_hf(p, &m), MS_ERR, "accepted %s", json);
    cr_expect(strstr(ms_err_last(), p), "'%s' does not name the file", ms_err_last());
    cr_expect(strstr(ms_err_last(), want), "'%s' lacks '%s'", ms_err_last(), want);
}

Test(presets, bad_hugging_face_configs, .init = setup, .fini = teardown) {
    hf_refused("{\"hidden_size\": 4096", "invalid JSON");
    hf_refused("[1]", "not a JSON object");
    hf_refused("{\"hidden_size\": 4096, \"num_hidden_layers\": 32}", "not a Mixture-of-Experts");
    hf_refused("{\"num_local_experts\": 8, \"num_hidden_layers\": 32}", "no \"hidden_size\"");
    hf_refused("{\"num_experts\": 8, \"num_hidden_layers\": \"x\"}",
               "\"num_hidden_layers\" is not a whole number");
    hf_refused("{\"num_experts\": 8, \"num_experts_per_tok\": 2, \"num_hidden_layers\": 4, "
               "\"hidden_size\": 64, \"moe_intermediate_size\": 32, \"num_attention_heads\": 4, "
               "\"vocab_size\": 100, \"mlp_only_layers\": [1]}", "only as a leading block");
    hf_refused("{\"num_experts\": 8, \"num_experts_per_tok\": 9, \"num_hidden_layers\": 4, "
               "\"hidden_size\": 64, \"moe_intermediate_size\": 32, \"num_attention_heads\": 4, "
               "\"vocab_size\": 100}", "top_k = 9 is more than n_experts = 8");
}

#define SMALL_MODEL                                                                        \
    "[model]\nname = tiny\ndescription = a test model\nn_layers = 4\nn_dense = 1\n"        \
    "hidden = 64\nmoe_inter = 32\nn_experts = 16\ntop_k = 2\nn_heads = 4\nn_kv_heads = 2\n" \
    "head_dim = 16\nvocab = 1000\n"

Test(presets, files_load_by_path_and_errors_name_the_line, .init = setup, .fini = teardown) {
    moe_model_t m;
    cr_assert_eq(moe_load(write_file("tiny.ini", SMALL_MODEL), &m), MS_OK, "%s", ms_err_last());
    cr_expect_str_eq(m.name, "tiny");
    cr_expect_eq(moe_n_moe_layers(&m), 3);
    cr_expect_eq(m.weight_bytes, 2, "the default element size");
    cr_expect_eq(m.attn, MOE_ATTN_GQA);
    cr_expect_eq(moe_load(write_file("typo.ini", SMALL_MODEL "n_expert = 3\n"), &m), MS_ERR);
    cr_expect(strstr(ms_err_last(), "typo.ini:14: unknown key [model] n_expert"), "%s",
              ms_err_last());
    cr_expect_eq(moe_load(write_file("range.ini", "[model]\nname = x\nn_layers = 0\n"), &m),
                 MS_ERR);
    cr_expect(strstr(ms_err_last(), "range.ini:3: [model] n_layers = 0 is out of range"), "%s",
              ms_err_last());
    cr_expect_eq(moe_load(write_file("noname.ini", "[model]\nn_layers = 4\n"), &m), MS_ERR);
    cr_expect(strstr(ms_err_last(), "no [model] name"), "%s", ms_err_last());
    cr_expect_eq(moe_load(write_file("short.ini", "[model]\nname = x\nn_layers = 4\n"), &m),
                 MS_ERR);
    cr_expect(strstr(ms_err_last(), "no [model] hidden (required"), "%s", ms_err_last());
    cr_expect_eq(moe_load(write_file("dense.ini", SMALL_MODEL "n_groups = 3\n"), &m), MS_ERR);
    cr_expect(strstr(ms_err_last(), "n_experts = 16 do not divide into n_groups = 3"), "%s",
              ms_err_last());

    /* a hardware preset by path: the H800 file with a faster NIC */
    char *h800;
    cr_assert_eq(ms_read_file("configs/hardware/H800.ini", &h800, NULL), MS_OK);
    char *text = malloc(strlen(h800) + 64);
    snprintf(text, strlen(h800) + 64, "%s", h800);
    char *nic = strstr(text, "nic_bw = 50e9");
    cr_assert_not_null(nic);
    memcpy(nic, "nic_bw = 99e9", 13);
    char *nm = strstr(text, "name = H800");
    memcpy(nm, "name = H8X0", 11);
    hw_t h;
    cr_assert_eq(hw_load(write_file("h8x0.ini", text), &h), MS_OK, "%s", ms_err_last());
    cr_expect_str_eq(h.name, "H8X0");
    cr_expect_eq(h.nic_bw, 99e9);
    cr_expect_eq(h.scaleup_bw, hw_find("H800")->scaleup_bw);
    cr_expect_null(h.calib);
    free(text);
    free(h800);
    cr_expect_eq(hw_load(write_file("bad.ini", "[hardware]\nname = x\nflops_bf16 = fast\n"), &h),
                 MS_ERR);
    cr_expect(strstr(ms_err_last(), "bad.ini:3: [hardware] flops_bf16 = 'fast' is not a finite "
                                    "number"), "%s", ms_err_last());
}

/* In an experiment: [model] preset and [cluster] hardware take paths,
 * relative to the config. */
Test(presets, an_experiment_names_files, .init = setup, .fini = teardown) {
    write_file("tiny.ini", SMALL_MODEL);
    char hwtext[2048];
    snprintf(hwtext, sizeof hwtext, "[hardware]\nname = toy\nflops_bf16 = 1e14\nflops_fp8 = 2e14\n"
             "hbm_bytes = 8e10\nhbm_bw = 2e12\nscaleup_bw = 1e11\nnic_bw = 2.5e10\n"
             "scaleup_lat_ns = 1000\nnic_lat_ns = 3000\nkernel_ns = 2000\ndevices_per_host = 4\n");
    write_file("toy.ini", hwtext);
    const char *p = write_file("exp.ini", "[model]\npreset = tiny.ini\n[cluster]\nhardware = toy.ini\n"
                                          "[workload]\ntrace = t.json\n");
    cfg_t *c = NULL;
    cr_assert_eq(cfg_load(p, &c), MS_OK);
    run_spec_t sp;
    cr_assert_eq(run_spec_load(c, &sp), MS_OK, "%s", ms_err_last());
    cr_expect_str_eq(sp.model.name, "tiny");
    cr_expect_eq(sp.model.n_experts, 16);
    cr_expect_str_eq(sp.cluster.hw.name, "toy");
    cr_expect_eq(sp.cluster.devices_per_node, 4, "the preset's devices per host");
    cr_expect_null(sp.cluster.hw.calib, "a preset from a file has no measured curve");
    cfg_free(c);
    p = write_file("exp2.ini", "[model]\npreset = nope.ini\n[workload]\ntrace = t.json\n");
    cr_assert_eq(cfg_load(p, &c), MS_OK);
    cr_expect_eq(run_spec_load(c, &sp), MS_ERR);
    cr_expect(strstr(ms_err_last(), "nope.ini"), "%s", ms_err_last());
    cfg_free(c);
    p = write_file("exp3.ini", "[model]\npreset = gpt\n[workload]\ntrace = t.json\n");
    cr_assert_eq(cfg_load(p, &c), MS_OK);
    cr_expect_eq(run_spec_load(c, &sp), MS_ERR);
    cr_expect(strstr(ms_err_last(), "exp3.ini:2: unknown model preset 'gpt' (known: deepseek-v3"),
              "%s", ms_err_last());
    cfg_free(c);
}

static char *run_list(const char *what) {
    char tmpl[] = "/tmp/moesim-list-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    char *argv[] = {"list", (char *)what, NULL};
    int rc = cmd_list(2, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(fd);
    cr_assert_eq(rc, 0, "list %s", what);
    char *text;
    cr_assert_eq(ms_read_file(tmpl, &text, NULL), MS_OK);
    unlink(tmpl);
    return text;
}

Test(presets, list_names_everything_with_its_source) {
    char *s = run_list("strategies");
    for (int i = 0; i < place_count(); i++) {
        char src[128];
        snprintf(src, sizeof src, "models/place_%s.c", place_at(i)->name);
        cr_expect(strstr(s, place_at(i)->summary), "%s", place_at(i)->name);
        cr_expect(strstr(s, src), "%s", src);
        cr_expect_eq(access(src, F_OK), 0, "%s exists", src);
    }
    cr_expect(strstr(s, "exec:NAME"));
    free(s);
    s = run_list("models");
    for (int i = 0; i < moe_count(); i++) {
        cr_expect(strstr(s, moe_at(i)->name));
        cr_expect(strstr(s, moe_at(i)->description));
        cr_expect(strstr(s, moe_file(i)));
        cr_expect(strstr(s, moe_at(i)->source));
    }
    free(s);
    s = run_list("hardware");
    for (int i = 0; i < hw_count(); i++) {
        cr_expect(strstr(s, hw_at(i)->description));
        cr_expect(strstr(s, hw_file(i)));
    }
    free(s);
    ms_err_quiet(1);
    char *bad[] = {"list", "gpus", NULL};
    cr_expect_eq(cmd_list(2, bad), 2); /* a usage mistake */
    cr_expect(strstr(ms_err_last(), "give strategies, models or hardware"));
}
