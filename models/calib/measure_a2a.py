#!/usr/bin/env python3
"""measure_a2a: times NCCL all-to-all between the GPUs of one host.

One process per GPU (start it with torchrun); each sends bytes_per_gpu in
one dist.all_to_all_single. Patterns: "uniform" (an equal share to every
rank, itself included) and "skewed" (every rank sends SKEW of its buffer to
rank 0 and splits the rest evenly over the others, so rank 0 is the hot
receiver, as with a hot expert), and "oneway" (only rank 0 sends, its
buffer split evenly over the other ranks: each link carries bytes in one
direction only, so oneway against uniform shows what loading both
directions of a link costs). max_link_bytes is the most bytes any GPU
sends to or receives from other GPUs: what a per-port bandwidth model
charges. Times are nccl-tests style: after a barrier, ITERS collectives back
to back between two CUDA events, divided by ITERS; five such samples per
size, the median, the slowest rank's. With --mode graph (the default) the
ITERS collectives are captured in one CUDA graph and replayed, as serving
engines run decode, so host launch costs (about 20 us per call through
torch) stay out; --mode eager times plain calls.

  torchrun --standalone --nproc_per_node=2 measure_a2a.py --out h200_a2a.csv

--pattern-file FILE adds measured patterns from a2a_pattern.py's CSV
(`batch,layer,src,dst,bytes` for one world size): the DeepEP-like dispatch
of a real decode step, one row set per batch, named deepep_bBATCH.

NVLink multicast (NVLS) must stay off on shared hosts: the script refuses to
start unless NCCL_NVLS_ENABLE=0.
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calibmeta  # noqa: E402

HEADER = ["pattern", "world", "bytes_per_gpu", "max_link_bytes", "time_ns", "p10_ns", "p90_ns",
          "reps"]
SKEW = 0.75


def splits(pattern, nbytes, world):
    """send[src][dst] bytes; every entry a multiple of 16 (NCCL likes aligned chunks)."""
    q = 16
    units = nbytes // q
    send = []
    for src in range(world):
        if pattern == "uniform":
            row = [units // world] * world
        elif pattern == "oneway":
            if src != 0 or world == 1:
                send.append([0] * world)
                continue
            row = [0] + [units // (world - 1)] * (world - 1)
        else:
            hot = int(units * SKEW) if world > 1 else units
            rest = units - hot
            row = [hot] + [rest // (world - 1)] * (world - 1) if world > 1 else [hot]
        row[src] += units - sum(row)   # any remainder stays local
        send.append([u * q for u in row])
    return send


def read_pattern_file(path, world):
    """{batch: send[src][dst]} from a2a_pattern.py's CSV; refuses another world size."""
    import csv
    pats = {}
    with open(path) as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        for r in rows:
            b, s, d, n = int(r["batch"]), int(r["src"]), int(r["dst"]), int(r["bytes"])
            if not (0 <= s < world and 0 <= d < world):
                sys.exit("measure_a2a: %s: rank %d->%d outside a world of %d (make the file with "
                         "a2a_pattern.py --world %d)" % (path, s, d, world, world))
            pats.setdefault(b, [[0] * world for _ in range(world)])[s][d] = n - n % 16
    return pats


def max_link(send):
    w = len(send)
    out = [sum(send[s][d] for d in range(w) if d != s) for s in range(w)]
    inn = [sum(send[s][d] for s in range(w) if s != d) for d in range(w)]
    return max(out + inn)


def pct(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--min-log2", type=int, default=12, help="smallest bytes_per_gpu, log2 (4 KiB)")
    ap.add_argument("--max-log2", type=int, default=30, help="largest bytes_per_gpu, log2 (1 GiB)")
    ap.add_argument("--patterns", default="uniform,skewed,oneway")
    ap.add_argument("--pattern-file", help="a2a_pattern.py CSV: measure those matrices too")
    ap.add_argument("--target-s", type=float, default=0.02, help="seconds per sample")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--mode", choices=("graph", "eager"), default="graph")
    ap.add_argument("--max-iters", type=int, default=200, help="collectives per sample at most")
    args = ap.parse_args()
    if os.environ.get("NCCL_NVLS_ENABLE") != "0":
        sys.exit("measure_a2a: set NCCL_NVLS_ENABLE=0 (NVLink multicast must stay off)")

    import torch
    import torch.distributed as dist
    rank, world, dev = calibmeta.start_ranks(torch, dist)
    meta = calibmeta.collect(torch) if rank == 0 else []

    def timed(run, iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        dist.barrier()
        torch.cuda.synchronize()
        a.record()
        run()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) * 1e-3 / iters

    def runner(inp, out, ins, outs, iters):
        """ITERS collectives as one callable: a graph replay, or plain calls."""
        def eager():
            for _ in range(iters):
                dist.all_to_all_single(out, inp, outs, ins)
        if args.mode == "eager":
            return eager, None
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            dist.all_to_all_single(out, inp, outs, ins)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            eager()
        return g.replay, g

    jobs = [(pattern, 1 << lg, splits(pattern, 1 << lg, world))
            for pattern in args.patterns.split(",") if pattern
            for lg in range(args.min_log2, args.max_log2 + 1)]
    if args.pattern_file:
        for b, send in sorted(read_pattern_file(args.pattern_file, world).items()):
            jobs.append(("deepep_b%d" % b, max(sum(r) for r in send), send))
    rows = []
    t0 = time.time()
    for pattern, nbytes, send in jobs:
        ins = send[rank]
        outs = [send[s][rank] for s in range(world)]
        inp = torch.full((sum(ins),), rank + 1, dtype=torch.uint8, device=dev)
        out = torch.zeros(sum(outs), dtype=torch.uint8, device=dev)
        # Correct first: rank s's bytes arrive in rank order, every byte written.
        dist.all_to_all_single(out, inp, outs, ins)
        want = torch.cat([torch.full((outs[s],), s + 1, dtype=torch.uint8, device=dev)
                          for s in range(world)])
        if not torch.equal(out, want):
            sys.exit("measure_a2a: rank %d received wrong bytes at %d B (%s)" % (rank, nbytes, pattern))
        inp.random_(0, 256)
        for _ in range(3):
            dist.all_to_all_single(out, inp, outs, ins)
        def once():
            dist.all_to_all_single(out, inp, outs, ins)
        est = torch.tensor([timed(once, 1)], dtype=torch.float64, device=dev)
        dist.all_reduce(est, op=dist.ReduceOp.MAX)
        iters = max(1, min(args.max_iters, int(args.target_s / max(est.item(), 1e-7))))
        run, graph = runner(inp, out, ins, outs, iters)
        run()
        ts = torch.tensor([timed(run, iters) for _ in range(args.samples)],
                          dtype=torch.float64, device=dev)
        # Drop the graph (and its captured NCCL work) before the next size
        # and before the process group goes: one left alive hung the exit.
        del run, graph
        torch.cuda.synchronize()
        dist.all_reduce(ts, op=dist.ReduceOp.MAX)   # the slowest rank decides
        ts = ts.tolist()
        rows.append(dict(pattern=pattern, world=world, bytes_per_gpu=nbytes,
                         max_link_bytes=max_link(send), time_ns="%.0f" % (pct(ts, 0.5) * 1e9),
                         p10_ns="%.0f" % (pct(ts, 0.1) * 1e9),
                         p90_ns="%.0f" % (pct(ts, 0.9) * 1e9), reps=iters * args.samples))
        del inp, out
    if rank == 0:
        meta.append(("what", "dist.all_to_all_single over NCCL, one process per GPU, uint8 buffers; "
                             "skewed: every rank sends %.0f%% of its buffer to rank 0" % (SKEW * 100)))
        meta.append(("timing", "after a barrier, ITERS back-to-back collectives between CUDA events, "
                               "/ITERS; %d samples, median (p10, p90), max over ranks; reps = "
                               "ITERS x samples" % args.samples))
        if args.pattern_file:
            with open(args.pattern_file) as f:
                src = " ".join(l[2:].strip() for l in f if l.startswith("# "))
            meta.append(("pattern_file", "deepep_bB rows: a2a_pattern.py output (%s)" % src))
        meta.append(("mode", args.mode + (" (ITERS collectives captured in one CUDA graph, replayed)"
                                           if args.mode == "graph" else " (plain calls)")))
        meta.append(("measured_points", "%d in %.0f s" % (len(rows), time.time() - t0)))
        rows.sort(key=lambda r: (r["pattern"], r["world"], r["bytes_per_gpu"]))
        calibmeta.write_csv(args.out, meta, HEADER, rows)
        print("measure_a2a: %d rows in %s, %.0f s" % (len(rows), args.out, time.time() - t0))
        for r in rows:
            print("  %-8s %10d B  %10s ns" % (r["pattern"], r["bytes_per_gpu"], r["time_ns"]))
    torch.cuda.synchronize()
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: CUDA/NCCL destructors there can hang


if __name__ == "__main__":
    main()
