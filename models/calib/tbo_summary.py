#!/usr/bin/env python3
"""tbo_summary: what two-batch overlap gained on the GPUs against what moesim's schedule predicts.

Reads measure_tbo.py's CSV. Per row (phase, tokens a GPU, fan-out):
  measured  the steady-state layer, (HI-layer stack - LO-layer stack) / (HI - LO),
            serially and with two-batch overlap (SMs reserved for communication
            or not); the gain is serial over overlapped;
  replay    moesim's flow-mode schedule (sim/step_flow.c) run on the measured
            components of the same row: one compute server per GPU taking its
            tasks in arrival order (attention; the shared expert while the
            dispatch is in flight; the experts once both are done; the next
            layer's attention once the combine is back), the transfers of a
            direction sharing the link fairly; overlap off on the full-batch
            components, overlap on on the half-batch ones with every compute
            x overlap_compute and every transfer x overlap_comm (the preset's
            measured contention, --compute/--comm). The same LO and HI stacks are
            replayed and differenced as the measurement is.
Prints per row the measured and predicted layer times and gains and the
ratio of the predicted gain to the measured one with SMs reserved (>1:
moesim's overlap gains more than the GPUs do), the same ratio were the
contention charged only while both sides run (not moesim's rule), then the
median of the first ratio per phase. With several files (repeat runs), then a table per setup: the
measured gain of each run, the replayed one, moesim's own (--moesim: the
output of tbo_moesim.sh) and the ratio on the runs' mean. stdlib only.

  python3 models/calib/tbo_summary.py models/calib/h200_tbo.csv models/calib/h200_tbo_b.csv \
      --moesim <(sh models/calib/tbo_moesim.sh)
"""
import argparse
import csv
import statistics


def replay(nl, m, comp, comm, ov_comp=1.0, ov_comm=1.0, while_both=False):
    """End time of an nl-layer stack under moesim's flow schedule, one GPU of a symmetric pair.

    comp: (attention, shared, experts) of one micro-batch; comm: (dispatch, combine),
    each a transfer's time alone; m micro-batches (1: overlap off, 2: on). The
    contention is charged as moesim does, on every kernel and transfer of an
    overlapped layer, or with while_both only while the other side runs: compute
    at 1/ov_comp speed while a transfer is in flight, transfers at 1/ov_comm while
    compute runs (not moesim's rule: what the measurement suggests)."""
    pre_c, pre_m = (1.0, 1.0) if while_both else (ov_comp, ov_comm)
    A, S, X = (c * pre_c for c in comp)
    D, C = (c * pre_m for c in comm)
    now = 0.0
    queue, busy = [], None           # compute FIFO of (kind, mb, layer, work); running [task, work left]
    flows = []                       # [work left, kind, mb, layer] sharing the link
    shared_done, disp_done = set(), set()
    end = 0.0

    def push(kind, mb, l, dur):
        queue.append((kind, mb, l, dur))

    def expert_ready(mb, l):
        if (mb, l) in shared_done and (mb, l) in disp_done:
            push("X", mb, l, X)

    for mb in range(m):
        push("A", mb, 0, A)
    while queue or busy or flows:
        if busy is None and queue:
            task = queue.pop(0)
            busy = [task, task[3]]
        slow_c = ov_comp if while_both and flows else 1.0
        slow_m = ov_comm if while_both and busy else 1.0
        t_comp = now + busy[1] * slow_c if busy else float("inf")
        t_flow = now + min(f[0] for f in flows) * len(flows) * slow_m if flows else float("inf")
        t = min(t_comp, t_flow)
        for f in flows:
            f[0] -= (t - now) / (len(flows) * slow_m)
        if busy:
            busy[1] -= (t - now) / slow_c
        now = t
        if t_flow <= t_comp:
            # (within a picosecond: the shares are floating point)
            done = [f for f in flows if f[0] <= 1e-3]
            flows = [f for f in flows if f[0] > 1e-3]
            for _, kind, mb, l in done:
                if kind == "D":
                    disp_done.add((mb, l))
                    expert_ready(mb, l)
                elif l + 1 < nl:
                    push("A", mb, l + 1, A)
                else:
                    end = max(end, now)
            continue
        (kind, mb, l, _), busy = busy[0], None
        if kind == "A":
            flows.append([D, "D", mb, l])
            push("S", mb, l, S)
        elif kind == "S":
            shared_done.add((mb, l))
            expert_ready(mb, l)
        else:
            flows.append([C, "C", mb, l])
    return end


def layer(row, key):
    return (float(row[key + "_hi_ns"]) - float(row[key + "_lo_ns"])) / (
        int(row["layers_hi"]) - int(row["layers_lo"]))


def analyse(row, ov_comp, ov_comm):
    """The figures of one row (times in ns)."""
    f = {k: float(v) for k, v in row.items() if k.endswith("_ns")}
    lo, hi = int(row["layers_lo"]), int(row["layers_hi"])
    full = (f["attn_ns"], f["shared_ns"], f["experts_ns"]), (f["dispatch_ns"], f["combine_ns"])
    half = (f["attn_half_ns"], f["shared_half_ns"], f["experts_half_ns"]), \
        (f["dispatch_half_ns"], f["combine_half_ns"])

    def steady(m, parts, oc=1.0, om=1.0, both=False):
        return (replay(hi, m, *parts, oc, om, both) - replay(lo, m, *parts, oc, om, both)) / (hi - lo)
    r = dict(serial=layer(row, "serial"), tbo=layer(row, "tbo"), tbo_co=layer(row, "tbo_co"),
             p_serial=steady(1, full), p_tbo=steady(2, half, ov_comp, ov_comm),
             p_tbo_free=steady(2, half), p_tbo_both=steady(2, half, ov_comp, ov_comm, True))
    r["gain"] = r["serial"] / r["tbo"]
    r["gain_co"] = r["serial"] / r["tbo_co"]
    r["p_gain"] = r["p_serial"] / r["p_tbo"]
    r["excess"] = r["p_gain"] / r["gain_co"]
    r["excess_both"] = r["p_serial"] / r["p_tbo_both"] / r["gain_co"]
    # the halves' own cost: two half-batch micro-batches' compute over one full batch's
    r["halves"] = (f["attn_half_ns"] + f["shared_half_ns"] + f["experts_half_ns"]) * 2 / (
        f["attn_ns"] + f["shared_ns"] + f["experts_ns"])
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--moesim", help="tbo_moesim.sh's output: moesim's gain per setup")
    ap.add_argument("--compute", type=float, default=1.129, help="overlap_compute (H200 preset)")
    ap.add_argument("--comm", type=float, default=1.841, help="overlap_comm (H200 preset)")
    args = ap.parse_args()
    runs = []
    for path in args.csv:
        with open(path) as fh:
            runs.append(list(csv.DictReader(line for line in fh if not line.startswith("#"))))
    for rows in runs:
        one_file(rows, args)
    if len(runs) < 2 and not args.moesim:
        return
    sim = {}
    if args.moesim:
        with open(args.moesim) as fh:
            for line in fh:
                w = line.split()
                if len(w) == 6 and w[0] in ("decode", "prefill"):
                    sim[tuple(w[:3])] = float(w[5])
    keys = []
    for rows in runs:
        for row in rows:
            k = (row["phase"], row["tokens"], row["fan"])
            if k not in keys:
                keys.append(k)
    print("\n| phase | tokens a GPU | fan-out | measured gain (SMs reserved), per run | "
          "moesim's schedule on the measured parts | moesim | replayed / measured |")
    print("|---|---|---|---|---|---|---|")
    for k in keys:
        got = [analyse(row, args.compute, args.comm) for rows in runs for row in rows
               if (row["phase"], row["tokens"], row["fan"]) == k]
        mean = statistics.mean(g["gain_co"] for g in got)
        rep = statistics.mean(g["p_gain"] for g in got)
        print("| %s | %s | %s | %s | %.3f | %s | %.3f |" % (
            k[0], k[1], k[2], ", ".join("%.3f" % g["gain_co"] for g in got), rep,
            "%.3f" % sim[k] if k in sim else "-", rep / mean))


def one_file(rows, args):
    print("phase    tokens fan | measured layer us: serial  tbo  tbo-co  gain  gain-co | "
          "replay: serial  tbo  gain | halves  excess  excess-if-contention-only-while-both")
    by = {}
    for row in rows:
        r = analyse(row, args.compute, args.comm)
        by.setdefault(row["phase"], []).append(r["excess"])
        print("%-7s %7s %3s | %8.1f %8.1f %8.1f %6.3f %6.3f | %8.1f %8.1f %6.3f | %6.3f %6.3f %6.3f" % (
            row["phase"], row["tokens"], row["fan"], r["serial"] / 1e3, r["tbo"] / 1e3,
            r["tbo_co"] / 1e3, r["gain"], r["gain_co"], r["p_serial"] / 1e3, r["p_tbo"] / 1e3,
            r["p_gain"], r["halves"], r["excess"], r["excess_both"]))
    for ph, xs in sorted(by.items()):
        print("%s: median excess of the replayed gain over the measured one %.3f (%d rows, %.3f-%.3f)"
              % (ph, statistics.median(xs), len(xs), min(xs), max(xs)))


if __name__ == "__main__":
    main()
