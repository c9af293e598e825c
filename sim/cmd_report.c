/* cmd_report: `moesim report DB [-o DIR] [--only FIGURES]`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "report.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f, "usage: moesim report DB [-o DIR] [--only FIGURES]\n\n"
               "Draws every figure the results database supports into DIR (default: report/):\n"
               "each as PNG and SVG with the gnuplot script that drew it, and index.md with\n"
               "the run table and the figures. A figure whose data is missing is skipped\n"
               "with a message saying what is missing and which command produces it.\n\n"
               "  -o, --out DIR       output folder (created)\n"
               "      --only LIST     comma-separated figures to draw; known:");
    for (int i = 0; report_figure_names[i]; i++)
        fprintf(f, "%s %s", i ? "," : "", report_figure_names[i]);
    fprintf(f, "\n\nExit status 0 when at least one figure was drawn and none failed.\n");
}

int cmd_report(int argc, char **argv) {
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"only", required_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = "report", *only = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'o') out = optarg;
        else if (c == 'f') only = optarg;
        else {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? MS_EXIT_OK : MS_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        ms_err("report: give one results database (example: moesim report results/demo.db -o report)");
        return MS_EXIT_USAGE;
    }
    report_result_t *res = ms_calloc(1, sizeof *res);
    int rc = report_build(argv[optind], out, only, res);
    if (!rc && res->drawn) /* on failure nothing was replaced: no count to give */
        printf("report: %d figure%s in %s/index.md%s\n", res->drawn, res->drawn == 1 ? "" : "s",
               out, res->skipped ? " (some skipped: see the messages above)" : "");
    free(res);
    return rc ? 1 : 0;
}
