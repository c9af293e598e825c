#!/usr/bin/env python3
"""dispatch_summary: what h200_experts_dispatch.csv says about the calibration's residue.

Prints, from a measure_dispatch.py file: the GEMM kernels torch dispatched
(schedule, tile, pipeline stages, CTAs launched) by dtype and tokens per
expert; then, per model, dtype and expert count, each point's time whole
and by part (gate/up GEMM, SiLU*up kernels, down GEMM; the first pass, and
the second pass's whole time), with the median SM clock while the whole
was timed; and the share of the SiLU*up kernels in the whole.

  python3 models/calib/dispatch_summary.py models/calib/h200_experts_dispatch.csv
"""
import csv
import re
import sys


def load(path):
    meta, rows = {}, []
    with open(path) as f:
        body = []
        for line in f:
            if line.startswith("# "):
                k, _, v = line[2:].partition(": ")
                meta[k] = v.rstrip("\n")
            else:
                body.append(line)
    rows = list(csv.DictReader(body))
    return meta, rows


def kernel_desc(name):
    """Schedule, tile M x N, stages of a mangled CUTLASS grouped-GEMM kernel name."""
    m = re.search(r"KernelPtrArrayTmaWarpSpecialized(Pingpong|Cooperative)", name)
    if not m:
        return None
    stages = re.search(r"MainloopSm90ArrayTmaGmmaWarpSpecializedILi(\d+)E", name)
    tile = re.findall(r"ILi(\d+)EEE", name[m.end():])[:2]
    return "%s %s, %s stages" % (m.group(1).lower(), "x".join(tile),
                                 stages.group(1) if stages else "?")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "models/calib/h200_experts_dispatch.csv"
    meta, rows = load(path)
    names = {k[len("kernel_"):]: v for k, v in meta.items() if k.startswith("kernel_")}
    print("GEMM kernels torch dispatched (profiler trace of one eager call a point):")
    seen = {}
    for r in rows:
        if r["pass"] != "0" or r["part"] not in ("gateup", "down") or not r["kernels"]:
            continue
        ks, gs = r["kernels"].split(), r["grids"].split()
        for k, g in zip(ks, gs):
            d = kernel_desc(names.get(k, ""))
            if d:
                x, y, z = (int(v) for v in g.split("x"))
                key = (r["model"], r["dtype"], r["part"], d, x * y * z)
                seen.setdefault(key, []).append(int(r["tokens_per_expert"]))
    for (model, dtype, part, d, ctas), toks in sorted(seen.items()):
        print("  %-16s %-4s %-6s %-34s %3d CTAs  tokens/expert %d-%d" % (
            model, dtype, part, d, ctas, min(toks), max(toks)))
    print()
    by = {}
    for r in rows:
        by[(r["model"], r["dtype"], int(r["experts"]), int(r["tokens_per_expert"]),
            r["part"], r["pass"])] = r
    pts = sorted({k[:4] for k in by})
    print("%-16s %-4s %3s %5s %9s %9s %8s %8s %8s %6s %5s" % (
        "model", "dt", "E", "n", "all_us", "all2_us", "gateup", "act", "down", "act%", "MHz"))
    for p in pts:
        def t(part, ps="0"):
            r = by.get(p + (part, ps))
            return float(r["time_ns"]) / 1e3 if r else float("nan")
        r = by.get(p + ("all", "0"))
        print("%-16s %-4s %3d %5d %9.1f %9.1f %8.1f %8.1f %8.1f %6.1f %5s" % (
            p[0], p[1], p[2], p[3], t("all"), t("all", "1"), t("gateup"), t("act"), t("down"),
            100 * t("act") / t("all"), r["sm_mhz_med"] if r else ""))


if __name__ == "__main__":
    main()
