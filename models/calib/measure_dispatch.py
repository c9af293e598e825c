#!/usr/bin/env python3
"""measure_dispatch: which kernel torch runs for a grouped expert GEMM, and at what clock.

For the points where the calibration's residue sits (issue 14: BF16 at 32-160
tokens per expert, FP8 at 128-512, DeepSeek-V3 and Qwen3 shapes, 1-64
experts) it times, under CUDA-graph replays as measure_experts.py does, the
whole expert computation and each of its parts alone: the gate/up grouped
GEMM, the SiLU*up (and FP8 cast) kernel, the down grouped GEMM. For each
part it records the kernels torch dispatches (names, grid and block from a
torch.profiler trace of one eager call), and the SM clock, memory clock,
power and clock-event reasons nvidia-smi reports while the part is timed.
Each point is timed in two passes, the second in reverse order, so an order
or warm-up effect shows as a difference between passes.

Writes one CSV (after '# key: value' provenance lines; kernel names are
listed once in those lines as kernel_K and referred to by K in the rows).

  python3 measure_dispatch.py --out h200_experts_dispatch.csv
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calibmeta  # noqa: E402
import measure_experts as me  # noqa: E402

HEADER = ["model", "dtype", "experts", "tokens_per_expert", "part", "pass", "time_ns", "p10_ns",
          "p90_ns", "reps", "sm_mhz_min", "sm_mhz_med", "sm_mhz_max", "mem_mhz_med", "power_w_med",
          "clock_reasons", "kernels", "grids", "blocks"]
PARTS = ("all", "gateup", "act", "down")


class Clock:
    """nvidia-smi sampling SM clock, memory clock, power and clock-event reasons."""

    FIELDS = ("clocks.sm,clocks.mem,power.draw,clocks_event_reasons.active",
              "clocks.sm,clocks.mem,power.draw,clocks_throttle_reasons.active")

    def __init__(self, period_ms):
        self.samples, self.proc, self.fields = [], None, None
        for f in self.FIELDS:
            probe = subprocess.run(["nvidia-smi", "-i", "0", "--query-gpu=" + f,
                                    "--format=csv,noheader,nounits"], capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip():
                self.fields = f
                break
        if self.fields is None:
            return
        self.proc = subprocess.Popen(["nvidia-smi", "-i", "0", "--query-gpu=" + self.fields,
                                      "--format=csv,noheader,nounits", "-lms", str(period_ms)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            parts = [x.strip() for x in line.split(",")]
            try:
                self.samples.append((time.time(), float(parts[0]), float(parts[1]),
                                     float(parts[2]), parts[3]))
            except (ValueError, IndexError):
                pass

    def between(self, t0, t1):
        s = [x for x in self.samples if t0 - 0.02 <= x[0] <= t1 + 0.02]
        if not s:
            return dict(sm_mhz_min="", sm_mhz_med="", sm_mhz_max="", mem_mhz_med="",
                        power_w_med="", clock_reasons="")
        sm = sorted(x[1] for x in s)
        reasons = sorted(set(x[4] for x in s))
        return dict(sm_mhz_min="%.0f" % sm[0], sm_mhz_med="%.0f" % me.pct(sm, 0.5),
                    sm_mhz_max="%.0f" % sm[-1], mem_mhz_med="%.0f" % me.pct([x[2] for x in s], 0.5),
                    power_w_med="%.0f" % me.pct([x[3] for x in s], 0.5),
                    clock_reasons="|".join(reasons))

    def stop(self):
        if self.proc:
            self.proc.terminate()


class Dispatch(me.Runner):
    """measure_experts' Runner with the computation split into its parts."""

    def parts_fn(self, p, part, r):
        torch, F = self.torch, self.F
        e, n, i = p["experts"], p["tokens_per_expert"], p["inter"]
        pool = self.pools[(p["model"], p["dtype"])]
        x = self.activations(p, e * n)
        offs = torch.arange(1, e + 1, dtype=torch.int32, device=self.dev) * n
        bf = torch.bfloat16
        fp8 = p["dtype"] == "fp8"
        sa = torch.ones(e * n, dtype=torch.float32, device=self.dev)
        s13 = torch.ones((e, 2 * i), dtype=torch.float32, device=self.dev)
        s2 = torch.ones((e, p["hidden"]), dtype=torch.float32, device=self.dev)
        hgu = torch.randn((e * n, 2 * i), dtype=bf, device=self.dev)
        a = torch.randn((e * n, i), dtype=bf, device=self.dev)
        if fp8:
            a = a.to(torch.float8_e4m3fn)

        def gemm(inp, w, s):
            if fp8:
                return self.sgmm(inp, w.transpose(-2, -1), sa, s, offs=offs, out_dtype=bf,
                                 use_fast_accum=True)
            return self.gmm(inp, w.transpose(-2, -1), offs=offs, out_dtype=bf)

        def act():
            y = F.silu(hgu[:, :i]) * hgu[:, i:]
            return y.to(torch.float8_e4m3fn) if fp8 else y

        def fn():
            for k in range(r):
                w13, w2 = pool["w13"][k * e:(k + 1) * e], pool["w2"][k * e:(k + 1) * e]
                if part == "all":
                    self.grouped(p, x, w13, w2, offs)
                elif part == "gateup":
                    gemm(x, w13, s13)
                elif part == "act":
                    act()
                else:
                    gemm(a, w2, s2)
        return fn

    def time_part(self, p, part, clock):
        torch, args = self.torch, self.args
        pool = self.pools[(p["model"], p["dtype"])]
        r = me.rotations(p, pool["size"])
        fn = self.parts_fn(p, part, r)
        fn()
        torch.cuda.synchronize()
        g = me.capture(torch, fn)
        g.replay()
        first = self.timed(g.replay)
        reps = min(args.max_reps, max(args.min_reps, int(args.target_s / max(first, 1e-6)) + 1))
        t0 = time.time()
        ts = [self.timed(g.replay) / r for _ in range(reps)]
        t1 = time.time()
        del g
        res = dict(time_ns="%.0f" % (me.pct(ts, 0.5) * 1e9), p10_ns="%.0f" % (me.pct(ts, 0.1) * 1e9),
                   p90_ns="%.0f" % (me.pct(ts, 0.9) * 1e9), reps=reps)
        res.update(clock.between(t0, t1))
        return res

    def kernels(self, p, parts, names):
        """The kernels one eager call of each part launches: {part: (indices, grids, blocks)}.

        One profiler session for the point; the parts run one after another,
        synchronised, each inside a record_function range, and a kernel
        belongs to the range its start falls in."""
        torch = self.torch
        fns = {part: self.parts_fn(p, part, 1) for part in parts}
        for fn in fns.values():
            fn()
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            for part, fn in fns.items():
                with torch.profiler.record_function("part_" + part):
                    fn()
                    torch.cuda.synchronize()
                time.sleep(0.002)
        fd, path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        try:
            prof.export_chrome_trace(path)
            with open(path) as f:
                trace = json.load(f)
        finally:
            os.remove(path)
        evs = trace.get("traceEvents", [])
        ranges = [(e["ts"], e["ts"] + e.get("dur", 0), e["name"][5:]) for e in evs
                  if e.get("cat") == "user_annotation" and str(e.get("name", "")).startswith("part_")]
        kern = sorted((e for e in evs if e.get("cat") == "kernel"), key=lambda e: e.get("ts", 0))
        out = {part: ([], [], []) for part in parts}
        for e in kern:
            owner = [r[2] for r in ranges if r[0] <= e.get("ts", -1) <= r[1]]
            if not owner or owner[0] not in out:
                continue
            name = e.get("name", "?")
            if name not in names:
                names.append(name)
            a = e.get("args", {})
            o = out[owner[0]]
            o[0].append(str(names.index(name)))
            o[1].append("x".join(str(v) for v in a.get("grid", [])))
            o[2].append("x".join(str(v) for v in a.get("block", [])))
        return {part: tuple(" ".join(x) for x in v) for part, v in out.items()}


def short(name):
    """The tile, cluster and schedule of a CUTLASS kernel name, for the log."""
    shapes = re.findall(r"Shape<([^<>]*)>", name)
    sched = re.findall(r"(Pingpong|Cooperative|PingPong)", name)
    if shapes or sched:
        return "%s shapes %s" % ("/".join(sorted(set(sched))) or "-", " ".join("<%s>" % s for s in shapes[:6]))
    return name[:120]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default=",".join(me.MODELS))
    ap.add_argument("--bf16-tokens", default="16,32,48,64,80,96,112,128,160")
    ap.add_argument("--bf16-experts", default="1,8,32,64")
    ap.add_argument("--fp8-tokens", default="128,192,256,384,512")
    ap.add_argument("--fp8-experts", default="8,16,32,64")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--target-s", type=float, default=0.1)
    ap.add_argument("--min-reps", type=int, default=10)
    ap.add_argument("--max-reps", type=int, default=200)
    ap.add_argument("--clock-ms", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=300, help="stop starting points after this")
    args = ap.parse_args()

    pts = []
    for model in args.models.split(","):
        h, i = me.MODELS[model]
        for dtype, toks, exps in (("bf16", args.bf16_tokens, args.bf16_experts),
                                  ("fp8", args.fp8_tokens, args.fp8_experts)):
            for e in me.ints(exps):
                for n in me.ints(toks):
                    pts.append(dict(model=model, dtype=dtype, impl="grouped", hidden=h, inter=i,
                                    experts=e, tokens_per_expert=n))
    parts = args.parts.split(",")
    print("measure_dispatch: %d points x %d parts x %d passes" % (len(pts), len(parts), args.passes),
          flush=True)
    import torch
    meta = calibmeta.collect(torch)
    meta.append(("what", "grouped routed-expert compute of one device split into its parts: all "
                         "(gate/up GEMM, SiLU*up, down GEMM, as measure_experts.py), gateup (the "
                         "hidden->2*inter grouped GEMM alone), act (SiLU*up, FP8: and the e4m3 cast), "
                         "down (the inter->hidden grouped GEMM alone); GPU 0"))
    meta.append(("timing", "CUDA events around CUDA-graph replays over rotating weight sets, median; "
                           "pass 1 runs the points in reverse order"))
    meta.append(("kernels", "indices into the kernel_K lines, the kernels one eager call launches in "
                            "order (torch.profiler trace); grids and blocks the same order"))
    clock = Clock(args.clock_ms)
    meta.append(("clock", "nvidia-smi -lms %d --query-gpu=%s, samples within 20 ms of each part's timed reps"
                 % (args.clock_ms, clock.fields) if clock.fields else "nvidia-smi clocks unavailable"))
    runner = Dispatch(args, pts, meta)
    runner.ceilings()
    for p in pts:
        err = runner.probe(p)
        if err:
            print("probe failed:", p["model"], p["dtype"], err, flush=True)
    names, rows = [], []
    t0 = time.time()
    partial = args.out + ".partial"
    with open(partial, "w") as pf:
        pf.write(",".join(HEADER) + "\n")
        for ps in range(args.passes):
            order = pts if ps % 2 == 0 else list(reversed(pts))
            for p in order:
                if time.time() - t0 > args.budget_s:
                    break
                if (p["model"], p["dtype"], "grouped") in runner.broken:
                    continue
                kern = {}
                if ps == 0:
                    try:
                        kern = runner.kernels(p, parts, names)
                    except Exception as exc:
                        print("profiler failed: %s" % str(exc).splitlines()[0][:200], flush=True)
                for part in parts:
                    try:
                        res = runner.time_part(p, part, clock)
                        k, gr, bl = kern.get(part, ("", "", ""))
                    except Exception as exc:  # keep the rest of the run
                        print("failed %s %s e%d n%d %s: %s" % (p["model"], p["dtype"], p["experts"],
                              p["tokens_per_expert"], part, str(exc).splitlines()[0][:200]), flush=True)
                        continue
                    row = dict(p, part=part, **res)
                    row["pass"] = ps
                    row.update(kernels=k, grids=gr, blocks=bl)
                    rows.append(row)
                    pf.write(",".join(str(row[h]) for h in HEADER) + "\n")
                    pf.flush()
                    print("%s %s e%d n%d %-6s pass %d: %8s ns  sm %s MHz  %s" % (
                        p["model"], p["dtype"], p["experts"], p["tokens_per_expert"], part, ps,
                        res["time_ns"], res["sm_mhz_med"], k), flush=True)
    clock.stop()
    meta.append(("measured_rows", "%d in %.0f s" % (len(rows), time.time() - t0)))
    for j, n in enumerate(names):
        meta.append(("kernel_%d" % j, n))
        print("kernel_%d: %s" % (j, short(n)))
    calibmeta.write_csv(args.out, meta, HEADER, rows)
    os.remove(partial)
    print("measure_dispatch: %d rows in %s, %.0f s" % (len(rows), args.out, time.time() - t0))


if __name__ == "__main__":
    main()
