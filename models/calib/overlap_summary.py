#!/usr/bin/env python3
"""overlap_summary: the two-batch-overlap figures of a hardware preset from measure_overlap.py's CSV.

overlap_compute: the median, over the rows with SMs reserved for
communication (--carveout, DeepEP's default 20 of 132), of the GEMM's time
while all-to-alls run beside it over the same GEMM's time alone on the
whole GPU (carve-out 0): what reserving the SMs and sharing HBM cost it.
overlap_comm: the median, over the same rows, of an all-to-all's time while
GEMMs run beside it over its time alone. Also prints the medians per dtype
and carve-out (stdlib only).

  python3 models/calib/overlap_summary.py models/calib/h200_overlap.csv
"""
import argparse
import csv
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--carveout", type=int, default=20, help="SMs reserved for communication")
    args = ap.parse_args()
    with open(args.csv) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    alone0 = {(r["dtype"], r["experts"], r["tokens_per_expert"]): float(r["gemm_alone_ns"])
              for r in rows if r["sm_carveout"] == "0"}

    def comp(r):
        return float(r["gemm_overlap_ns"]) / alone0[(r["dtype"], r["experts"], r["tokens_per_expert"])]

    print("dtype carve-out rows  GEMM beside a2a / alone (own carve-out, carve-out 0)  "
          "a2a beside GEMM / alone")
    for d in sorted({r["dtype"] for r in rows}):
        for co in sorted({int(r["sm_carveout"]) for r in rows}):
            sel = [r for r in rows if r["dtype"] == d and int(r["sm_carveout"]) == co]
            print("%-5s %9d %4d  %8.3f %8.3f  %8.3f" % (
                d, co, len(sel), statistics.median(float(r["gemm_slowdown"]) for r in sel),
                statistics.median(comp(r) for r in sel),
                statistics.median(float(r["a2a_slowdown"]) for r in sel)))
    sel = [r for r in rows if int(r["sm_carveout"]) == args.carveout]
    if not sel:
        sys.exit("overlap_summary: %s has no rows with carve-out %d" % (args.csv, args.carveout))
    print("as [hardware] lines (carve-out %d, %d rows): overlap_compute = %.3f, overlap_comm = %.3f"
          % (args.carveout, len(sel), statistics.median(comp(r) for r in sel),
             statistics.median(float(r["a2a_slowdown"]) for r in sel)))


if __name__ == "__main__":
    main()
