#!/usr/bin/env python3
"""measure_overlap: times a grouped expert GEMM and an NCCL all-to-all, alone and concurrently.

Two-batch overlap runs one micro-batch's expert GEMM while the other
micro-batch's all-to-all is in flight. On a GPU both are kernels that need
SMs: NCCL's all-to-all runs as CTAs (its channels), the grouped GEMM as a
persistent kernel sized to the SM count. This measures what each costs the
other. One process per GPU (start with torchrun); every rank runs the same
GEMM on its own GPU and takes part in the same all-to-all (uniform split).

For each GEMM (DeepSeek-V3 expert shape, dtype, experts E, tokens per
expert n, the kernels of measure_experts.py's "grouped" implementation),
all-to-all size (bytes per GPU) and SM carve-out (SMs the GEMM leaves free,
torch._C._set_sm_carveout_experimental, as DeepSeek reserves SMs for
communication):
  gemm_alone_ns  the GEMM alone (CUDA-graph replays, weights from HBM)
  a2a_alone_ns   one all-to-all alone (CUDA-graph replays of back-to-back calls)
  gemm_overlap_ns the GEMM while all-to-alls run back to back on another
                 stream, started first and lasting past the GEMM's end
  a2a_overlap_ns one all-to-all while GEMMs run on another stream, started
                 first and lasting past the all-to-alls' end
each the median of SAMPLES, the slowest rank's; slowdowns are the ratios.

  torchrun --standalone --nproc_per_node=2 measure_overlap.py --out h200_overlap.csv

NVLink multicast must stay off on shared hosts: refuses unless NCCL_NVLS_ENABLE=0.
"""
import argparse
import faulthandler
import math
import os
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calibmeta  # noqa: E402
import measure_experts  # noqa: E402

HEADER = ["model", "dtype", "experts", "tokens_per_expert", "bytes_per_gpu", "sm_carveout",
          "gemm_alone_ns", "gemm_overlap_ns", "a2a_alone_ns", "a2a_overlap_ns",
          "gemm_slowdown", "a2a_slowdown", "samples"]


def ints(s):
    return [int(x) for x in s.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="deepseek-v3", choices=sorted(measure_experts.MODELS))
    ap.add_argument("--dtypes", default="bf16,fp8")
    ap.add_argument("--experts", default="8,32")
    ap.add_argument("--tokens", default="32,128,512,2048")
    ap.add_argument("--bytes", default="262144,4194304,67108864", help="all-to-all bytes per GPU")
    ap.add_argument("--carveouts", default="0,20", help="SMs the GEMM leaves free")
    ap.add_argument("--max-routed", type=int, default=1 << 16, help="largest E x n")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--inner-s", type=float, default=0.004, help="seconds of the timed (inner) side")
    ap.add_argument("--budget-s", type=float, default=400)
    ap.add_argument("--comm-mode", choices=("graph", "eager"), default="graph",
                    help="all-to-alls as CUDA-graph replays or plain calls")
    ap.add_argument("--stall-s", type=float, default=60,
                    help="print every thread's stack after this long without progress, and exit")
    args = ap.parse_args()
    if os.environ.get("NCCL_NVLS_ENABLE") != "0":
        sys.exit("measure_overlap: set NCCL_NVLS_ENABLE=0 (NVLink multicast must stay off)")

    import torch
    import torch.distributed as dist
    rank, world, dev = calibmeta.start_ranks(torch, dist)
    meta = calibmeta.collect(torch) if rank == 0 else []
    t_start = time.time()

    def stage(what):
        """Progress on stderr; a stall past --stall-s dumps the stacks and exits."""
        print("[rank %d %6.1f s] %s" % (rank, time.time() - t_start, what), file=sys.stderr, flush=True)
        faulthandler.dump_traceback_later(args.stall_s, exit=True)
    set_co = getattr(torch._C, "_set_sm_carveout_experimental", None)
    carveouts = ints(args.carveouts)
    if set_co is None and any(carveouts):
        meta.append(("sm_carveout", "unavailable in this torch: carve-outs other than 0 skipped"))
        carveouts = [0]

    h, i = measure_experts.MODELS[args.model]
    pts = [dict(model=args.model, dtype=d, impl="grouped", hidden=h, inter=i, experts=e,
                tokens_per_expert=n)
           for d in args.dtypes.split(",") for e in ints(args.experts) for n in ints(args.tokens)
           if e * n <= args.max_routed]
    runner = measure_experts.Runner(SimpleNamespace(), pts, meta, device=dev.index)
    gs = torch.cuda.Stream(device=dev)
    cs = torch.cuda.Stream(device=dev)

    def capture(fn, reps):
        """fn() reps times in one CUDA graph (warmed up on a side stream first)."""
        s = torch.cuda.Stream(device=dev)
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            fn()
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(reps):
                fn()
        return g

    def ev():
        return torch.cuda.Event(enable_timing=True)

    def span(stream, graph, times):
        """Records events around `times` replays on stream; returns (start, end)."""
        a, b = ev(), ev()
        with torch.cuda.stream(stream):
            a.record()
            for _ in range(times):
                graph.replay()
            b.record()
        return a, b

    def sync_start():
        torch.cuda.synchronize()
        dist.barrier()
        torch.cuda.synchronize()

    def alone(graph, stream, times, per):
        sync_start()
        a, b = span(stream, graph, times)
        b.synchronize()
        return a.elapsed_time(b) * 1e-3 / (times * per)

    def overlapped(outer, inner):
        """outer = (graph, stream, times) started first; returns inner's seconds per unit."""
        sync_start()
        og, ost, ot = outer
        ig, ist, it, per = inner
        span(ost, og, ot)
        a, b = span(ist, ig, it)
        torch.cuda.synchronize()
        return a.elapsed_time(b) * 1e-3 / (it * per)

    def slowest(xs):
        t = torch.tensor(xs, dtype=torch.float64, device=dev)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def med(xs):
        return sorted(xs)[len(xs) // 2]

    rows = []
    t0 = time.time()
    partial = open(args.out + ".partial", "w") if rank == 0 else None
    if partial:
        partial.write(",".join(HEADER) + "\n")
    a2a = {}
    # The all-to-alls first, alone: buffers, a graph of back-to-back calls, per-call time.
    for nbytes in ints(args.bytes):
        stage("all-to-all alone, %d B" % nbytes)
        inp = torch.empty(nbytes, dtype=torch.uint8, device=dev).random_(0, 256)
        out = torch.empty_like(inp)
        call = lambda inp=inp, out=out: dist.all_to_all_single(out, inp)  # noqa: E731
        for _ in range(3):
            call()
        sync_start()
        a, b = ev(), ev()
        a.record()
        call()
        b.record()
        b.synchronize()
        est = slowest([a.elapsed_time(b) * 1e-3])[0]
        k = max(1, min(200, int(0.002 / max(est, 1e-7))))
        if args.comm_mode == "eager":
            g = SimpleNamespace(replay=lambda call=call, k=k: [call() for _ in range(k)])
        else:
            with torch.cuda.stream(cs):
                g = capture(call, k)
        g.replay()
        torch.cuda.synchronize()
        est = slowest([alone(g, cs, 1, k)])[0]
        a2a[nbytes] = dict(graph=g, k=k, est=est, bufs=(inp, out))
    skipped = 0
    for co in carveouts:
        for p in pts:
            if slowest([time.time() - t0])[0] > args.budget_s:  # every rank skips, or none does
                skipped += 1
                continue
            stage("%s E%d n%d carve-out %d" % (p["dtype"], p["experts"], p["tokens_per_expert"], co))
            if set_co is not None:
                set_co(co)
            err = runner.probe(p)
            if err:
                sys.exit("measure_overlap: %s/%s E%d n%d: %s" % (p["dtype"], p["impl"], p["experts"],
                                                              p["tokens_per_expert"], err))
            pool = runner.pools[(p["model"], p["dtype"])]
            r = measure_experts.rotations(p, pool["size"])
            fn = runner.make_fn(p, p["tokens_per_expert"], r)
            with torch.cuda.stream(gs):
                gg = capture(fn, 1)   # captured under the carve-out set above
            gg.replay()
            torch.cuda.synchronize()
            # GEMM alone: enough replays for inner_s.
            # Every rank must size its loops alike (the all-to-alls pair up across
            # ranks; a rank launching more of them than its peer hangs): the
            # slowest rank's figures throughout.
            t1 = slowest([alone(gg, gs, 1, r)])[0]
            gin = max(2, math.ceil(args.inner_s / (t1 * r)))
            g_alone = med(slowest([alone(gg, gs, gin, r) for _ in range(args.samples)]))
            for nbytes, c in a2a.items():
                k = c["k"]
                ain = max(1, math.ceil(args.inner_s / (k * c["est"])))
                stage("  %d B alone" % nbytes)
                c_alone = med(slowest([alone(c["graph"], cs, ain, k) for _ in range(args.samples)]))
                # Inner GEMM covered by all-to-alls lasting twice as long (plus a margin).
                cin = max(1, math.ceil((2 * gin * r * g_alone + 3e-4) / (k * c_alone)))
                stage("  GEMM inside %d all-to-all graph replays" % cin)
                g_ov = med(slowest([overlapped((c["graph"], cs, cin), (gg, gs, gin, r))
                                    for _ in range(args.samples)]))
                # Inner all-to-alls covered by GEMMs lasting twice as long.
                gout = max(1, math.ceil((2 * ain * k * c_alone + 3e-4) / (r * g_alone)))
                stage("  all-to-all inside %d GEMM graph replays" % gout)
                c_ov = med(slowest([overlapped((gg, gs, gout), (c["graph"], cs, ain, k))
                                    for _ in range(args.samples)]))
                rows.append(dict(model=p["model"], dtype=p["dtype"], experts=p["experts"],
                                 tokens_per_expert=p["tokens_per_expert"], bytes_per_gpu=nbytes,
                                 sm_carveout=co, gemm_alone_ns="%.0f" % (g_alone * 1e9),
                                 gemm_overlap_ns="%.0f" % (g_ov * 1e9),
                                 a2a_alone_ns="%.0f" % (c_alone * 1e9),
                                 a2a_overlap_ns="%.0f" % (c_ov * 1e9),
                                 gemm_slowdown="%.4f" % (g_ov / g_alone),
                                 a2a_slowdown="%.4f" % (c_ov / c_alone), samples=args.samples))
                if rank == 0:
                    r_ = rows[-1]
                    partial.write(",".join(str(r_[h]) for h in HEADER) + "\n")
                    partial.flush()
                    print("  %s E%-3d n%-5d %10d B co%-3d gemm %8s -> %8s (x%s)  a2a %8s -> %8s (x%s)" % (
                        p["dtype"], p["experts"], p["tokens_per_expert"], nbytes, co,
                        r_["gemm_alone_ns"], r_["gemm_overlap_ns"], r_["gemm_slowdown"],
                        r_["a2a_alone_ns"], r_["a2a_overlap_ns"], r_["a2a_slowdown"]), flush=True)
            del gg, fn
            torch.cuda.synchronize()
    faulthandler.cancel_dump_traceback_later()
    if set_co is not None:
        set_co(0)
    if rank == 0:
        partial.close()
        os.remove(args.out + ".partial")
        meta.append(("what", "grouped expert GEMM (measure_experts.py 'grouped', %s shape) and "
                             "dist.all_to_all_single (uniform, uint8) over NCCL, one process per "
                             "GPU, alone and on two streams at once" % args.model))
        meta.append(("timing", "CUDA events around CUDA-graph replays; overlapped: the other side "
                               "started first on its own stream and sized to last about twice as "
                               "long; median of %d samples, the slowest rank's" % args.samples))
        meta.append(("comm_mode", args.comm_mode))
        meta.append(("a2a_calls_per_graph", " ".join("%d:%d" % (b, c["k"]) for b, c in a2a.items())))
        meta.append(("sm_carveout_api", "torch._C._set_sm_carveout_experimental" if set_co
                     else "unavailable"))
        for k in ("NCCL_MAX_NCHANNELS", "NCCL_MIN_NCHANNELS", "NCCL_PROTO", "NCCL_ALGO"):
            meta.append(("env_" + k, os.environ.get(k, "(unset)")))
        meta.append(("measured_points", "%d in %.0f s, %d skipped for the budget" %
                     (len(rows), time.time() - t0, skipped)))
        rows.sort(key=lambda r: (r["dtype"], r["sm_carveout"], r["experts"], r["tokens_per_expert"],
                                 r["bytes_per_gpu"]))
        calibmeta.write_csv(args.out, meta, HEADER, rows)
        print("measure_overlap: %d rows in %s, %.0f s" % (len(rows), args.out, time.time() - t0))
    # No barrier or process-group teardown: with the all-to-all graphs alive
    # both hung the 2026-11-30 run for minutes after its CSV was written.
    torch.cuda.synchronize()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: CUDA/NCCL destructors there can hang


if __name__ == "__main__":
    main()
