/* cmd_report: `moesim report DB -o DIR`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "report.h"
#include "util.h"

int cmd_report(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *out = "report";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'o') out = optarg;
        else {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: moesim report DB [-o DIR]\n\n"
                    "Draws every figure the results database supports (PNG, gnuplot) into DIR\n"
                    "(default: report/) with an index.md of tables and figures.\n");
            return c == 'h' ? 0 : 1;
        }
    }
    if (optind != argc - 1) {
        ms_err("report: give one results database (example: moesim report results/demo.db -o report)");
        return 1;
    }
    if (report_make(argv[optind], out)) return 1;
    printf("report: %s/index.md\n", out);
    return 0;
}
