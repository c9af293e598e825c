#!/usr/bin/env python3
"""measure_experts: times the routed-expert computation of one device.

For each model shape, dtype and implementation, E local experts each get n
tokens: gate/up projection (one fused GEMM, hidden -> 2*inter), SiLU(gate)*up,
down projection (inter -> hidden). The time is for all E experts on GPU 0,
measured with CUDA events around CUDA-graph replays after warm-up (graphs
remove host launch gaps, as serving engines do for decode). Each replay runs
R copies over different expert weights so that the weights read are several
times the L2 cache: serving reads each expert's weights from HBM once per
layer, and timing one small expert over and over would time the cache.

Implementations: "loop" (one GEMM pair per expert, torch.matmul for BF16,
torch._scaled_mm for FP8 with per-tensor scales), "bmm" (BF16, one batched
torch.bmm per projection over all experts, equal tokens per expert) and
"grouped" (one grouped-GEMM call per projection for all experts, as
DeepGEMM-style MoE kernels run: torch._grouped_mm for BF16,
torch._scaled_grouped_mm with row-wise scales for FP8), where torch has it.

Writes CSV rows sorted by (model, dtype, impl, experts, tokens_per_expert),
after '# key: value' provenance lines. --dry-run fakes the timings from a
roofline and needs no torch (to check the grid and the file format).

  python3 measure_experts.py --out h200_experts.csv
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calibmeta  # noqa: E402

MODELS = {"deepseek-v3": (7168, 2048), "qwen3-235b-a22b": (4096, 1536)}
HEADER = ["model", "dtype", "impl", "hidden", "inter", "experts", "tokens_per_expert", "graph",
          "time_ns", "p10_ns", "p90_ns", "reps"]
FLUSH_BYTES = 256 << 20  # weights touched per replay: about 4x the H200's 60 MB L2


def ints(s):
    return [int(x) for x in s.split(",") if x]


def grid(args):
    pts = []
    for model in args.models.split(","):
        h, i = MODELS[model]
        for dtype in args.dtypes.split(","):
            for impl in args.impls.split(","):
                if impl == "bmm" and dtype != "bf16":
                    continue
                for e in ints(args.experts):
                    for n in ints(args.tokens):
                        if n * e <= args.max_routed:
                            pts.append(dict(model=model, dtype=dtype, impl=impl, hidden=h,
                                            inter=i, experts=e, tokens_per_expert=n))
    return pts


def wbytes(dtype):
    return 1 if dtype == "fp8" else 2


def expert_bytes(p):
    return 3 * p["hidden"] * p["inter"] * wbytes(p["dtype"])


def pool_size(p, max_e):
    return max(max_e, math.ceil(FLUSH_BYTES / expert_bytes(p)))


def rotations(p, pool):
    e = p["experts"]
    return max(1, min(pool // e, math.ceil(FLUSH_BYTES / (e * expert_bytes(p)))))


def roofline_s(p):
    """A rough time for one computation: orders points and guards the budget."""
    e, n = p["experts"], p["tokens_per_expert"]
    flops = 6.0 * p["hidden"] * p["inter"] * n * e
    peak = 1.2e15 if p["dtype"] == "fp8" else 0.7e15
    return max(flops / peak, e * expert_bytes(p) / 4.0e12) + e * 4 * 4e-6


def plan_s(p, pool, args):
    """Device seconds a point is expected to take, warm-ups included."""
    rep = rotations(p, pool) * roofline_s(p)
    reps = min(args.max_reps, max(args.min_reps, math.ceil(args.target_s / rep)))
    return rep * (reps + 3) + 0.02


def pct(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def capture(torch, fn):
    """A CUDA graph of fn: warmed up on a side stream first, as capture requires."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g


class Runner:
    """Weights, probes and timing on GPU 0."""

    def __init__(self, args, pts, meta, device=0):
        import torch
        import torch.nn.functional as F
        self.torch, self.F, self.args, self.meta = torch, F, args, meta
        # measure_overlap.py runs one Runner per GPU (one process each).
        self.dev = torch.device("cuda", device)
        torch.cuda.set_device(self.dev)
        torch.manual_seed(1)
        self.one = torch.ones((), dtype=torch.float32, device=self.dev)
        self.pad = {}      # (model, dtype, impl) -> rows are padded to this multiple
        self.broken = {}   # (model, dtype, impl) -> why it cannot run
        self.gmm = getattr(torch, "_grouped_mm", None) or getattr(F, "grouped_mm", None)
        self.sgmm = getattr(torch, "_scaled_grouped_mm", None)
        meta.append(("scaled_grouped_mm", "torch._scaled_grouped_mm" if self.sgmm else "unavailable"))
        meta.append(("grouped_mm", "torch._grouped_mm" if getattr(torch, "_grouped_mm", None)
                     else ("torch.nn.functional.grouped_mm" if self.gmm else "unavailable")))
        self.pools = {}
        max_e = max(p["experts"] for p in pts)
        for p in pts:
            key = (p["model"], p["dtype"])
            if key not in self.pools:
                self.pools[key] = self.make_pool(p, pool_size(p, max_e))

    def make_pool(self, p, size):
        torch = self.torch
        h, i = p["hidden"], p["inter"]
        w13 = torch.empty((size, 2 * i, h), dtype=torch.bfloat16, device=self.dev)
        w2 = torch.empty((size, h, i), dtype=torch.bfloat16, device=self.dev)
        w13.normal_(0, h ** -0.5)
        w2.normal_(0, i ** -0.5)
        if p["dtype"] == "fp8":
            # Doubled so fewer weights fall into e4m3's subnormals (zeros can
            # run faster than real data); the SiLU*up result stays far under 448.
            w13 = (w13 * 2).to(torch.float8_e4m3fn)
            w2 = (w2 * 2).to(torch.float8_e4m3fn)
        return dict(w13=w13, w2=w2, size=size)

    def activations(self, p, rows):
        x = self.torch.randn((rows, p["hidden"]), dtype=self.torch.bfloat16, device=self.dev)
        return x.to(self.torch.float8_e4m3fn) if p["dtype"] == "fp8" else x

    # One expert: gate/up, SiLU*up, down.
    def expert(self, p, xe, w13e, w2e):
        torch, F, i = self.torch, self.F, p["inter"]
        if p["dtype"] == "fp8":
            hgu = torch._scaled_mm(xe, w13e.t(), self.one, self.one, out_dtype=torch.bfloat16,
                                   use_fast_accum=True)
            a = (F.silu(hgu[:, :i]) * hgu[:, i:]).to(torch.float8_e4m3fn)
            return torch._scaled_mm(a, w2e.t(), self.one, self.one, out_dtype=torch.bfloat16,
                                    use_fast_accum=True)
        hgu = torch.matmul(xe, w13e.t())
        return torch.matmul(F.silu(hgu[:, :i]) * hgu[:, i:], w2e.t())

    def grouped(self, p, x, w13, w2, offs):
        F, i, bf = self.F, p["inter"], self.torch.bfloat16
        if p["dtype"] == "fp8":
            torch = self.torch
            if self.sgmm is None:
                raise RuntimeError("torch has no scaled grouped mm")
            e = w13.shape[0]
            sa = torch.ones(x.shape[0], dtype=torch.float32, device=self.dev)
            s13 = torch.ones((e, w13.shape[1]), dtype=torch.float32, device=self.dev)
            s2 = torch.ones((e, w2.shape[1]), dtype=torch.float32, device=self.dev)
            hgu = self.sgmm(x, w13.transpose(-2, -1), sa, s13, offs=offs, out_dtype=bf,
                            use_fast_accum=True)
            a = (F.silu(hgu[:, :i]) * hgu[:, i:]).to(torch.float8_e4m3fn)
            return self.sgmm(a, w2.transpose(-2, -1), sa, s2, offs=offs, out_dtype=bf,
                             use_fast_accum=True)
        hgu = self.gmm(x, w13.transpose(-2, -1), offs=offs, out_dtype=bf)
        a = F.silu(hgu[:, :i]) * hgu[:, i:]
        return self.gmm(a, w2.transpose(-2, -1), offs=offs, out_dtype=bf)

    def bmm(self, p, xb, w13, w2):
        torch, F, i = self.torch, self.F, p["inter"]
        hgu = torch.bmm(xb, w13.transpose(-2, -1))
        return torch.bmm(F.silu(hgu[..., :i]) * hgu[..., i:], w2.transpose(-2, -1))

    def make_fn(self, p, rows_per_expert, r):
        """The timed computation: r rotations of E experts over the pool."""
        torch = self.torch
        e = p["experts"]
        pool = self.pools[(p["model"], p["dtype"])]
        x = self.activations(p, e * rows_per_expert)
        if p["impl"] == "bmm":
            xb = x.view(e, rows_per_expert, p["hidden"])

            def fn():
                for k in range(r):
                    self.bmm(p, xb, pool["w13"][k * e:(k + 1) * e], pool["w2"][k * e:(k + 1) * e])
            return fn
        if p["impl"] == "grouped":
            offs = torch.arange(1, e + 1, dtype=torch.int32, device=self.dev) * rows_per_expert

            def fn():
                for k in range(r):
                    self.grouped(p, x, pool["w13"][k * e:(k + 1) * e], pool["w2"][k * e:(k + 1) * e],
                                 offs)
            return fn

        def fn():
            for k in range(r):
                for j in range(e):
                    self.expert(p, x[j * rows_per_expert:(j + 1) * rows_per_expert],
                                pool["w13"][k * e + j], pool["w2"][k * e + j])
        return fn

    def reference(self, p, xe, w13e, w2e):
        F, f = self.F, self.torch.float64
        hgu = xe.float().to(f) @ w13e.float().to(f).t()
        i = p["inter"]
        return (F.silu(hgu[:, :i]) * hgu[:, i:]) @ w2e.float().to(f).t()

    def probe(self, p):
        """Checks the implementation runs and is right; finds row padding. Returns an error or None."""
        torch = self.torch
        key = (p["model"], p["dtype"], p["impl"])
        if key in self.broken:
            return self.broken[key]
        if key in self.pad:
            return None
        pool = self.pools[(p["model"], p["dtype"])]
        err = None
        for m in (1, 16):
            try:
                x = self.activations(p, 2 * m)
                if p["impl"] == "bmm":
                    out = self.bmm(p, x.view(2, m, p["hidden"]), pool["w13"][:2],
                                   pool["w2"][:2]).reshape(2 * m, p["hidden"])
                    ref = torch.cat([self.reference(p, x[j * m:(j + 1) * m], pool["w13"][j], pool["w2"][j])
                                     for j in range(2)])
                elif p["impl"] == "grouped":
                    if self.gmm is None:
                        raise RuntimeError("torch has no grouped mm")
                    offs = torch.tensor([m, 2 * m], dtype=torch.int32, device=self.dev)
                    out = self.grouped(p, x, pool["w13"][:2], pool["w2"][:2], offs)
                    ref = torch.cat([self.expert(p, x[j * m:(j + 1) * m], pool["w13"][j], pool["w2"][j])
                                     for j in range(2)]).to(torch.float64)
                else:
                    out = torch.cat([self.expert(p, x[j * m:(j + 1) * m], pool["w13"][j], pool["w2"][j])
                                     for j in range(2)])
                    ref = torch.cat([self.reference(p, x[j * m:(j + 1) * m], pool["w13"][j], pool["w2"][j])
                                     for j in range(2)])
                torch.cuda.synchronize()
                rel = (out.to(torch.float64) - ref).norm().item() / max(ref.norm().item(), 1e-30)
                tol = 0.1 if p["dtype"] == "fp8" else 0.02
                self.meta.append(("check_%s_%s_%s_m%d" % (p["model"], p["dtype"], p["impl"], m),
                                  "relative error %.2e vs %s (tolerance %g)" %
                                  (rel, "loop" if p["impl"] == "grouped" else "float64", tol)))
                if not (rel < tol):
                    raise RuntimeError("relative error %.3g over %g" % (rel, tol))
                self.pad[key] = m
                if m > 1:
                    self.meta.append(("pad_%s_%s_%s" % key, "rows padded to a multiple of %d (after: %s)"
                                      % (m, err)))
                return None
            except Exception as exc:  # record and try padded rows
                err = "%s: %s" % (exc.__class__.__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
        self.broken[key] = err
        self.meta.append(("failed_%s_%s_%s" % key, err))
        return err

    def timed(self, run):
        torch = self.torch
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        run()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) * 1e-3

    def measure(self, p):
        torch, args = self.torch, self.args
        if self.probe(p):
            return None
        m = self.pad[(p["model"], p["dtype"], p["impl"])]
        rows = -(-p["tokens_per_expert"] // m) * m
        pool = self.pools[(p["model"], p["dtype"])]
        r = rotations(p, pool["size"])
        fn = self.make_fn(p, rows, r)
        fn()
        torch.cuda.synchronize()
        graph, g = 1, None
        try:
            g = capture(torch, fn)
            run = g.replay
        except Exception as exc:
            graph, run, g = 0, fn, None
            self.meta.append(("nograph_%s_%s_%s_e%d_n%d" % (p["model"], p["dtype"], p["impl"],
                                                            p["experts"], p["tokens_per_expert"]),
                              str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__))
            torch.cuda.synchronize()
        run()
        first = self.timed(run)
        reps = min(args.max_reps, max(args.min_reps, math.ceil(args.target_s / max(first, 1e-6))))
        ts = [self.timed(run) / r for _ in range(reps)]
        del g
        return dict(graph=graph, time_ns="%.0f" % (pct(ts, 0.5) * 1e9),
                    p10_ns="%.0f" % (pct(ts, 0.1) * 1e9), p90_ns="%.0f" % (pct(ts, 0.9) * 1e9),
                    reps=reps)

    def ceilings(self):
        """The two ceilings METHOD.md asks for: copy bandwidth and matrix rate."""
        torch = self.torch
        a = torch.empty(1 << 31, dtype=torch.uint8, device=self.dev)
        b = torch.empty_like(a)
        b.copy_(a)
        ts = [self.timed(lambda: b.copy_(a)) for _ in range(10)]
        self.meta.append(("ceiling_copy_TBps", "%.2f (2 GiB device-to-device, read+write, median of 10)"
                          % (2 * a.numel() / pct(ts, 0.5) / 1e12)))
        del a, b
        n = 8192
        x = torch.randn((n, n), dtype=torch.bfloat16, device=self.dev)
        y = torch.randn((n, n), dtype=torch.bfloat16, device=self.dev)
        for _ in range(20):  # also brings the clocks up before any point is timed
            torch.matmul(x, y)
        ts = [self.timed(lambda: torch.matmul(x, y)) for _ in range(10)]
        self.meta.append(("ceiling_bf16_TFLOPs", "%.0f (8192^3 matmul, random data, median of 10)"
                          % (2 * n ** 3 / pct(ts, 0.5) / 1e12)))
        try:
            xf, yf = x.to(torch.float8_e4m3fn), y.to(torch.float8_e4m3fn).t().contiguous().t()
            f = lambda: torch._scaled_mm(xf, yf, self.one, self.one, out_dtype=torch.bfloat16,
                                         use_fast_accum=True)
            f()
            ts = [self.timed(f) for _ in range(10)]
            self.meta.append(("ceiling_fp8_TFLOPs", "%.0f (8192^3 torch._scaled_mm, median of 10)"
                              % (2 * n ** 3 / pct(ts, 0.5) / 1e12)))
        except Exception as exc:
            self.meta.append(("ceiling_fp8_TFLOPs", "failed: %s" % str(exc).splitlines()[0][:200]))
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="CSV to write (a .partial.csv grows beside it)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--dtypes", default="bf16,fp8")
    ap.add_argument("--impls", default="loop,bmm,grouped")
    ap.add_argument("--tokens", default=",".join(str(1 << k) for k in range(14)))
    ap.add_argument("--experts", default="1,2,4,8,16,32,64")
    ap.add_argument("--max-routed", type=int, default=1 << 18,
                    help="largest experts x tokens_per_expert (routed tokens per device)")
    ap.add_argument("--target-s", type=float, default=0.05, help="timed seconds per point")
    ap.add_argument("--min-reps", type=int, default=5)
    ap.add_argument("--max-reps", type=int, default=50)
    ap.add_argument("--budget-s", type=float, default=300, help="skip points that would overrun")
    ap.add_argument("--dry-run", action="store_true", help="fake timings, no torch")
    args = ap.parse_args()

    pts = grid(args)
    max_e = max(p["experts"] for p in pts)
    pts.sort(key=lambda p: plan_s(p, pool_size(p, max_e), args))
    plan = sum(plan_s(p, pool_size(p, max_e), args) for p in pts)
    print("measure_experts: %d points, planned %.0f s of device time" % (len(pts), plan), flush=True)

    torch = None
    if not args.dry_run:
        import torch
    meta = calibmeta.collect(torch)
    meta.append(("what", "routed-expert compute of one device: per expert, x@W13^T (hidden->2*inter), "
                         "SiLU(gate)*up, @W2^T (inter->hidden); time for all experts, GPU 0"))
    meta.append(("timing", "CUDA events around CUDA-graph replays after warm-up; each replay runs the "
                           "experts over rotating weight sets (%d MiB per replay at least) and time_ns "
                           "is the median replay time over the rotations" % (FLUSH_BYTES >> 20)))
    meta.append(("fp8", "torch._scaled_mm, e4m3 weights and activations, per-tensor scales, "
                        "use_fast_accum=True, BF16 out; the SiLU*up result is cast to e4m3 in the "
                        "timed region"))
    if args.dry_run:
        meta.append(("dry_run", "timings are a roofline, not measurements"))
    runner = None
    if not args.dry_run:
        runner = Runner(args, pts, meta)
        runner.ceilings()

    rows, skipped = [], []
    partial = args.out[:-4] + ".partial.csv" if args.out.endswith(".csv") else args.out + ".partial"
    t0 = time.time()
    with open(partial, "w") as pf:
        pf.write(",".join(HEADER) + "\n")
        for p in pts:
            if time.time() - t0 + plan_s(p, pool_size(p, max_e), args) > args.budget_s:
                skipped.append(p)
                continue
            if runner:
                res = runner.measure(p)
                if res is None:
                    continue
            else:
                t = roofline_s(p)
                res = dict(graph=1, time_ns="%.0f" % (t * 1e9), p10_ns="%.0f" % (t * 0.98e9),
                           p90_ns="%.0f" % (t * 1.02e9), reps=args.min_reps)
            p.update(res)
            rows.append(p)
            pf.write(",".join(str(p[h]) for h in HEADER) + "\n")
            pf.flush()
    meta.append(("measured_points", "%d in %.0f s" % (len(rows), time.time() - t0)))
    if skipped:
        meta.append(("skipped_for_budget", "%d points, largest %s" % (
            len(skipped), ", ".join("%s/%s/%s e%d n%d" % (p["model"], p["dtype"], p["impl"],
                                                         p["experts"], p["tokens_per_expert"])
                                    for p in skipped[-5:]))))
    rows.sort(key=lambda p: (p["model"], p["dtype"], p["impl"], p["experts"], p["tokens_per_expert"]))
    calibmeta.write_csv(args.out, meta, HEADER, rows)
    os.remove(partial)
    print("measure_experts: %d rows in %s, %d skipped, %.0f s" % (len(rows), args.out, len(skipped),
                                                                  time.time() - t0))
    for k, v in meta:
        if k.startswith(("ceiling", "failed", "check", "pad", "grouped")):
            print("  %s: %s" % (k, v))


if __name__ == "__main__":
    main()
