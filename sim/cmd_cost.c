/* cmd_cost: `moesim cost expert|a2a`: what the cost model charges for one
 * device's routed experts or one all-to-all, in microseconds, for users
 * and for checking the model against any measurement. Every figure comes
 * from the function the simulator calls (cost_experts_ns, the flow network
 * with the link model, cost_link_ns), never from a formula of its own. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "cmd.h"
#include "table.h"
#include "cost.h"
#include "hw.h"
#include "moe.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: moesim cost expert --hardware H --model M --experts E --tokens N\n"
            "                          [--dtype bf16|fp8] [--csv | --json]\n"
            "       moesim cost a2a --hardware H --devices D --bytes-per-rank B\n"
            "                       [--pattern even|skew:F] [--csv | --json]\n"
            "\n"
            "Prints what the simulator charges, in microseconds:\n"
            "  expert  one device's routed experts: E active experts with N tokens each, one\n"
            "          grouped GEMM (the preset's measured fit where it has one, for the\n"
            "          model's weight dtype or --dtype)\n"
            "  a2a     one all-to-all among D devices of one node, B bytes per rank split\n"
            "          evenly over the ranks (itself included); skew:F: rank 0 sends F times\n"
            "          the others' share. Flow network (flow mode) and busiest port's closed\n"
            "          form (analytic mode).\n"
            "\n"
            "  --csv   a header and one line per query, the figures exact:\n"
            "          query,hardware,model,dtype,experts,tokens,us\n"
            "          query,hardware,devices,bytes_per_rank,pattern,flow_us,analytic_us\n"
            "  --json  the same as {\"tables\": {\"cost\": [{...}]}}\n"
            "\n"
            "hardware: %s; models: %s\n",
            hw_names(), moe_names());
}

/* A number for a flag, within [lo, hi]; the message names the flag. */
static int flag_num(const char *flag, const char *s, double lo, double hi, double *out) {
    if (ms_parse_double(s, out) || !isfinite(*out))
        return ms_err("cost: %s '%s' is not a number (example: %s 64)", flag, s, flag);
    if (*out < lo || *out > hi)
        return ms_err("cost: %s %s is outside %g..%g (give a value in that range)", flag, s, lo,
                      hi);
    return MS_OK;
}

/* The preset with its embedded measurements attached, as a spec loader
 * attaches them. */
static int hardware(const char *name, hw_t *out) {
    const hw_t *h = hw_find(name);
    if (!h) return ms_err("cost: --hardware '%s' is unknown (one of %s)", name, hw_names());
    *out = *h;
    out->calib = calib_builtin(h);
    return MS_OK;
}

enum { O_HW = 1, O_MODEL, O_EXPERTS, O_TOKENS, O_DTYPE, O_DEVICES, O_BYTES, O_PATTERN, O_CSV,
       O_JSON };

/* --csv, --json: one row named "cost" through the shared table printer. */
static int print_row(int fmt, const char *const *keys, int n, const char *const *str,
                     const double *num) {
    table_doc_t *d = table_doc_new("cost", (table_format_t)fmt);
    table_t *t = table_new(d, "cost", NULL);
    for (int i = 0; i < n; i++) table_col(t, keys[i], keys[i], 0, !!str[i]);
    for (int i = 0; i < n; i++) {
        if (str[i]) table_str(t, str[i]);
        else table_num(t, num[i], 3);
    }
    int rc = table_print(d, stdout);
    table_doc_free(d);
    return rc ? MS_EXIT_INPUT : MS_EXIT_OK;
}

static int cost_expert(int argc, char **argv) {
    static const struct option opts[] = {
        {"hardware", required_argument, 0, O_HW}, {"model", required_argument, 0, O_MODEL},
        {"experts", required_argument, 0, O_EXPERTS}, {"tokens", required_argument, 0, O_TOKENS},
        {"dtype", required_argument, 0, O_DTYPE}, {"csv", no_argument, 0, O_CSV},
        {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *hwn = NULL, *mn = NULL, *dt = NULL;
    double experts = NAN, tokens = NAN;
    int csv = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_HW: hwn = optarg; break;
        case O_MODEL: mn = optarg; break;
        case O_EXPERTS:
            if (flag_num("--experts", optarg, 1, 1 << 16, &experts)) return 1;
            if (experts != floor(experts))
                return ms_err("cost: --experts %s is not a whole number of experts", optarg), 1;
            break;
        case O_TOKENS:
            if (flag_num("--tokens", optarg, 0, 1e9, &tokens)) return 1;
            break;
        case O_DTYPE: dt = optarg; break;
        case O_CSV: csv = TABLE_CSV; break;
        case O_JSON: csv = TABLE_JSON; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return MS_EXIT_USAGE;
        }
    }
    if (optind != argc)
        return ms_err("cost expert: unexpected argument '%s' (every value follows its flag)",
                      argv[optind]), MS_EXIT_USAGE;
    hw_t hw;
    if (!hwn) return ms_err("cost: --hardware is missing (one of %s)", hw_names()), MS_EXIT_USAGE;
    if (hardware(hwn, &hw)) return 1;
    if (!mn) return ms_err("cost expert: --model is missing (one of %s)", moe_names()), MS_EXIT_USAGE;
    const moe_model_t *mp = moe_find(mn);
    if (!mp) return ms_err("cost expert: --model '%s' is unknown (one of %s)", mn, moe_names()), 1;
    if (isnan(experts))
        return ms_err("cost expert: --experts is missing (active experts on the device, e.g. "
                      "--experts 8)"), MS_EXIT_USAGE;
    if (isnan(tokens))
        return ms_err("cost expert: --tokens is missing (tokens per expert, e.g. --tokens 64)"), MS_EXIT_USAGE;
    moe_model_t m = *mp;
    if (dt) {
        if (!strcmp(dt, "fp8")) m.weight_bytes = m.dispatch_bytes = 1;
        else if (!strcmp(dt, "bf16")) m.weight_bytes = m.dispatch_bytes = 2;
        else return ms_err("cost expert: --dtype '%s' is not bf16 or fp8", dt), 1;
    }
    double ns = cost_experts_even_ns(&hw, &m, (int)experts, tokens);
    const char *dts = m.weight_bytes == 1 ? "fp8" : "bf16";
    if (csv) {
        const char *keys[] = {"query", "hardware", "model", "dtype", "experts", "tokens", "us"};
        const char *str[] = {"expert", hw.name, m.name, dts, NULL, NULL, NULL};
        double num[] = {0, 0, 0, 0, experts, tokens, ns / 1e3};
        return print_row(csv, keys, 7, str, num);
    } else {
        const hw_gemm_t *fit = hw.calib ? calib_gemm_par(hw.calib, NULL, m.weight_bytes) : NULL;
        printf("%.3f us: %s on %s, %s weights, %.0f experts x %g tokens (%s)\n", ns / 1e3, m.name,
               hw.name, dts, experts, tokens,
               fit ? "measured fit of the grouped GEMM, models/calib" : "data-sheet constants");
    }
    return 0;
}

static int cost_a2a(int argc, char **argv) {
    static const struct option opts[] = {
        {"hardware", required_argument, 0, O_HW}, {"devices", required_argument, 0, O_DEVICES},
        {"bytes-per-rank", required_argument, 0, O_BYTES},
        {"pattern", required_argument, 0, O_PATTERN}, {"csv", no_argument, 0, O_CSV},
        {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *hwn = NULL, *pat = "even";
    double devices = NAN, bytes = NAN, skew = 1;
    int csv = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_HW: hwn = optarg; break;
        case O_DEVICES:
            if (flag_num("--devices", optarg, 2, 4096, &devices)) return 1;
            if (devices != floor(devices))
                return ms_err("cost: --devices %s is not a whole number of devices", optarg), 1;
            break;
        case O_BYTES:
            if (flag_num("--bytes-per-rank", optarg, 1, 1e13, &bytes)) return 1;
            break;
        case O_PATTERN: pat = optarg; break;
        case O_CSV: csv = TABLE_CSV; break;
        case O_JSON: csv = TABLE_JSON; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return MS_EXIT_USAGE;
        }
    }
    if (optind != argc)
        return ms_err("cost a2a: unexpected argument '%s' (every value follows its flag)",
                      argv[optind]), MS_EXIT_USAGE;
    hw_t hw;
    if (!hwn) return ms_err("cost: --hardware is missing (one of %s)", hw_names()), MS_EXIT_USAGE;
    if (hardware(hwn, &hw)) return 1;
    if (isnan(devices))
        return ms_err("cost a2a: --devices is missing (GPUs taking part, e.g. --devices 8)"), MS_EXIT_USAGE;
    if (isnan(bytes))
        return ms_err("cost a2a: --bytes-per-rank is missing (each rank's send buffer in "
                      "bytes, e.g. --bytes-per-rank 1048576)"), MS_EXIT_USAGE;
    if (!strncmp(pat, "skew:", 5)) {
        if (flag_num("--pattern skew:F", pat + 5, 1, 1e6, &skew)) return 1;
    } else if (strcmp(pat, "even")) {
        return ms_err("cost a2a: --pattern '%s' is not even or skew:F (e.g. skew:4: rank 0 "
                      "sends 4 times the others' share)", pat), 1;
    }
    int D = (int)devices;
    if (D > hw.devices_per_host)
        return ms_err("cost a2a: --devices %d is more than the %d of one %s node (the link model "
                      "is the scale-up one; use at most %d)",
                      D, hw.devices_per_host, hw.name, hw.devices_per_host), 1;
    /* Each rank splits its buffer evenly over every rank, itself included;
     * rank 0's buffer is skew times the others'. */
    double *send = ms_malloc((size_t)D * D * sizeof *send), out0 = 0, in0 = 0, peer = 0;
    for (int a = 0; a < D; a++)
        for (int b = 0; b < D; b++) send[(size_t)a * D + b] = (a ? 1 : skew) * bytes / D;
    for (int b = 1; b < D; b++) {
        out0 += send[b];
        in0 += send[(size_t)b * D];
    }
    peer = send[1];
    hw_link_t lk = cost_scaleup_link(&hw);
    double flow = calib_a2a_matrix_ns(&lk, D, send);
    /* analytic: the busiest port (rank 0's out port) with the ramp at its
     * bytes per peer, both directions loaded */
    double analytic = cost_link_ns(&lk, ms_dmax(out0, in0), peer, 1);
    free(send);
    if (csv) {
        const char *keys[] = {"query", "hardware", "devices", "bytes_per_rank", "pattern",
                              "flow_us", "analytic_us"};
        const char *str[] = {"a2a", hw.name, NULL, NULL, pat, NULL, NULL};
        double num[] = {0, 0, D, bytes, 0, flow / 1e3, analytic / 1e3};
        return print_row(csv, keys, 7, str, num);
    } else
        printf("%.3f us (flow mode), %.3f us (analytic mode): all-to-all of %g bytes per rank "
               "among %d %s, pattern %s; link: %s\n",
               flow / 1e3, analytic / 1e3, bytes, D, hw.name, pat, hw.link_source);
    return 0;
}

int cmd_cost(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "expert")) return cost_expert(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "a2a")) return cost_a2a(argc - 1, argv + 1);
    usage(stderr);
    ms_err("cost: the subcommands are 'expert' and 'a2a' (example: moesim cost expert "
           "--hardware H200 --model deepseek-v3 --experts 8 --tokens 64)");
    return MS_EXIT_USAGE;
}
