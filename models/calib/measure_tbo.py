#!/usr/bin/env python3
"""measure_tbo: what two-batch overlap gains on real GPUs for a stack of MoE layers, EP2.

Each of two GPUs (one process each, torchrun) runs a stack of MoE-layer
slices with DeepSeek-V3 shapes, FP8 weights as deployed: MLA attention
(q_a, q_b, kv_a, kv_b or the absorbed decode form, o_proj; prefill as
causal SDPA over prompts, decode against a KV cache), the shared expert, the
dispatch all-to-all, a grouped GEMM over 8 local experts (the kernels of
measure_experts.py's "grouped" FP8: torch._scaled_grouped_mm, row-wise
scales), the combine all-to-all. The routed work is that of a balanced
EP rank of DeepSeek-V3 (T tokens a GPU, top-8: 8 T rows, T per local
expert). Each token's hidden state goes to the other GPU FAN times in
dispatch (FP8, 1 byte an element) and comes back FAN times in combine
(BF16): FAN 1 is plain EP2; FAN 4 is DeepEP normal mode's one copy per
destination node of node-limited routing (at most 4 nodes); larger FAN
stands for slower links (InfiniBand) by bytes.

Per (phase, T, FAN), all CUDA-graph timed, median of SAMPLES, slowest rank:
  components alone, per layer, at T and at T/2 tokens (attention, shared
  expert, routed experts; the dispatch and combine all-to-all), compute
  also with CARVEOUT SMs left free (torch._C._set_sm_carveout_experimental);
  serial    the stack as one batch: attention, then the dispatch while the
            shared expert runs, the experts once it has arrived, the combine,
            the next layer once that has arrived (moesim's overlap-off
            schedule);
  tbo       two micro-batches of T/2 (DeepSeek's and SGLang's two-batch
            overlap): compute stream A0 A1 S0 S1 X0 X1 per layer, each
            all-to-all on a communication stream as soon as its input is
            ready (D0 D1 C0 C1), each compute waiting only on its own
            micro-batch's transfers; with 0 and with CARVEOUT SMs left free.
Stacks of LO and HI layers are timed; (HI - LO) / (HI - LO layers) is the
steady-state time of a layer (no pipeline fill or drain).

  torchrun --standalone --nproc_per_node=2 measure_tbo.py --out h200_tbo.csv

NVLink multicast must stay off on shared hosts: refuses unless NCCL_NVLS_ENABLE=0.
"""
import argparse
import faulthandler
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calibmeta  # noqa: E402

H, I, NH, QL, KVL, NOPE, ROPE, VD = 7168, 2048, 128, 1536, 512, 128, 64, 128
EXPERTS, TOPK = 8, 8          # local experts of a balanced rank; top-k of DeepSeek-V3
HEADER = ["phase", "tokens", "fan", "context", "layers_lo", "layers_hi", "carveout",
          "attn_ns", "attn_half_ns", "attn_half_co_ns", "shared_ns", "shared_half_ns",
          "shared_half_co_ns", "experts_ns", "experts_half_ns", "experts_half_co_ns",
          "dispatch_ns", "dispatch_half_ns", "combine_ns", "combine_half_ns",
          "serial_lo_ns", "serial_hi_ns", "tbo_lo_ns", "tbo_hi_ns", "tbo_co_lo_ns", "tbo_co_hi_ns",
          "samples"]


def ints(s):
    return [int(x) for x in s.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--decode", default="64,128,256", help="decode tokens (sequences) a GPU")
    ap.add_argument("--prefill", default="4096,16384", help="prefill tokens a GPU")
    ap.add_argument("--fans", default="1,4,16")
    ap.add_argument("--kv", type=int, default=2048, help="decode KV length")
    ap.add_argument("--prompt", type=int, default=2048, help="prefill prompt length")
    ap.add_argument("--layers", default="2,6", help="LO,HI stack lengths")
    ap.add_argument("--max-combine-gib", type=float, default=8,
                    help="skip a (tokens, fan) whose combine buffer (2 FAN T hidden bytes) is larger")
    ap.add_argument("--carveout", type=int, default=20)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--inner-s", type=float, default=0.01, help="seconds a timed sample lasts at least")
    ap.add_argument("--budget-s", type=float, default=400)
    ap.add_argument("--stall-s", type=float, default=90)
    args = ap.parse_args()
    if os.environ.get("NCCL_NVLS_ENABLE") != "0":
        sys.exit("measure_tbo: set NCCL_NVLS_ENABLE=0 (NVLink multicast must stay off)")
    lo_l, hi_l = ints(args.layers)
    if not 0 < lo_l < hi_l:
        sys.exit("measure_tbo: --layers LO,HI with 0 < LO < HI")

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    # never the math fallback (it materialises the scores): flash, cuDNN or memory-efficient
    FAST = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    if int(os.environ["WORLD_SIZE"]) != 2:
        sys.exit("measure_tbo: needs exactly 2 processes (EP2)")
    rank, world, dev = calibmeta.start_ranks(torch, dist)
    meta = calibmeta.collect(torch) if rank == 0 else []
    t_start = time.time()
    set_co = getattr(torch._C, "_set_sm_carveout_experimental", None)
    if set_co is None:
        sys.exit("measure_tbo: this torch has no torch._C._set_sm_carveout_experimental")

    def stage(what):
        print("[rank %d %6.1f s] %s" % (rank, time.time() - t_start, what), file=sys.stderr, flush=True)
        faulthandler.dump_traceback_later(args.stall_s, exit=True)

    bf, f8 = torch.bfloat16, torch.float8_e4m3fn
    one = torch.ones((), dtype=torch.float32, device=dev)
    torch.manual_seed(1 + rank)

    def w8(*shape):
        return (torch.randn(shape, dtype=bf, device=dev) * (2 * shape[-1] ** -0.5)).to(f8)

    def smm(a, w):
        """a [M,K] fp8 @ w[N,K]^T -> [M,N] bf16 (per-tensor scales, as measure_experts' loop)."""
        return torch._scaled_mm(a, w.t(), one, one, out_dtype=bf, use_fast_accum=True)

    # Weights of every layer (each layer its own: the stack reads them from HBM).
    layers = []
    for _ in range(hi_l):
        layers.append(dict(
            wqa=w8(QL, H), wqb=w8(NH * (NOPE + ROPE), QL), wkva=w8(KVL + ROPE, H),
            wkvb=w8(NH * (NOPE + VD), KVL), wo=w8(H, NH * VD),
            wuk=torch.randn((NH, NOPE, KVL), dtype=bf, device=dev) * NOPE ** -0.5,
            wuv=torch.randn((NH, KVL, VD), dtype=bf, device=dev) * KVL ** -0.5,
            sw13=w8(2 * I, H), sw2=w8(H, I),
            ew13=w8(EXPERTS, 2 * I, H), ew2=w8(EXPERTS, H, I),
            es13=torch.ones((EXPERTS, 2 * I), dtype=torch.float32, device=dev),
            es2=torch.ones((EXPERTS, H), dtype=torch.float32, device=dev)))
    sgmm = torch._scaled_grouped_mm

    def attention(L, b, kvc):
        t = b["t"]
        xf = b["x"].to(f8)
        q = smm(smm(xf, L["wqa"]).to(f8), L["wqb"]).view(t, NH, NOPE + ROPE)
        kva = smm(xf, L["wkva"])
        if b["decode"]:
            qa = torch.bmm(q[..., :NOPE].transpose(0, 1), L["wuk"]).transpose(0, 1)
            qf = torch.cat([qa, q[..., NOPE:]], -1)                       # [t, NH, 576]
            c = kvc[b["s0"]:b["s0"] + t]                                  # [t, kv, 576]
            p = torch.softmax(torch.bmm(qf, c.transpose(1, 2)) * (NOPE + ROPE) ** -0.5, -1)
            o = torch.bmm(p, c[..., :KVL])                                # [t, NH, 512]
            o = torch.bmm(o.transpose(0, 1), L["wuv"]).transpose(0, 1).reshape(t, NH * VD)
        else:
            kv = smm(kva[:, :KVL].contiguous().to(f8), L["wkvb"]).view(t, NH, NOPE + VD)
            k = torch.cat([kv[..., :NOPE], kva[:, KVL:].unsqueeze(1).expand(t, NH, ROPE)], -1)
            P = b["prompt"]
            B = t // P
            qs, ks = q.view(B, P, NH, -1).transpose(1, 2), k.view(B, P, NH, -1).transpose(1, 2)
            vs = kv[..., NOPE:].reshape(B, P, NH, VD).transpose(1, 2)
            if b["pad_v"]:
                vs = F.pad(vs, (0, NOPE + ROPE - VD))
            with sdpa_kernel(FAST):
                o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True)[..., :VD]
            o = o.transpose(1, 2).reshape(t, NH * VD)
        b["y"] = smm(o.to(f8), L["wo"])

    def shared(L, b):
        hgu = smm(b["x"].to(f8), L["sw13"])
        a = (F.silu(hgu[:, :I]) * hgu[:, I:]).to(f8)
        b["ys"] = smm(a, L["sw2"])

    def experts(L, b):
        hgu = sgmm(b["xg"], L["ew13"].transpose(-2, -1), b["sa"], L["es13"], offs=b["offs"],
                   out_dtype=bf, use_fast_accum=True)
        a = (F.silu(hgu[:, :I]) * hgu[:, I:]).to(f8)
        b["yg"] = sgmm(a, L["ew2"].transpose(-2, -1), b["sa"], L["es2"], offs=b["offs"],
                       out_dtype=bf, use_fast_accum=True)

    peer = 1 - rank

    def a2a(out, inp):
        n = inp.numel()
        splits = [0, 0]
        splits[peer] = n
        dist.all_to_all_single(out, inp, splits, splits)

    def batch(t, fan, decode, s0, prompt, pad_v):
        rows = TOPK * t
        return dict(t=t, decode=decode, s0=s0, prompt=prompt, pad_v=pad_v,
                    x=torch.randn((t, H), dtype=bf, device=dev),
                    xg=torch.randn((rows, H), dtype=bf, device=dev).to(f8),
                    sa=torch.ones(rows, dtype=torch.float32, device=dev),
                    offs=torch.arange(1, EXPERTS + 1, dtype=torch.int32, device=dev) * (rows // EXPERTS),
                    ds=torch.empty(fan * t * H, dtype=torch.uint8, device=dev),
                    dr=torch.empty(fan * t * H, dtype=torch.uint8, device=dev),
                    cs=torch.empty(2 * fan * t * H, dtype=torch.uint8, device=dev),
                    cr=torch.empty(2 * fan * t * H, dtype=torch.uint8, device=dev))

    comm = torch.cuda.Stream(device=dev)

    def ev():
        return torch.cuda.Event()

    def serial_stack(nl, b, kvcs):
        """One batch: A, dispatch under S, X, combine; next layer after the combine."""
        cmp = torch.cuda.current_stream()
        for l in range(nl):
            L = layers[l]
            attention(L, b, kvcs[l])
            e = ev(); e.record(cmp)
            comm.wait_event(e)
            with torch.cuda.stream(comm):
                a2a(b["dr"], b["ds"])
            d = ev(); d.record(comm)
            shared(L, b)
            cmp.wait_event(d)
            experts(L, b)
            e = ev(); e.record(cmp)
            comm.wait_event(e)
            with torch.cuda.stream(comm):
                a2a(b["cr"], b["cs"])
            c = ev(); c.record(comm)
            cmp.wait_event(c)

    def tbo_stack(nl, bs, kvcs):
        """Two micro-batches: compute A0 A1 S0 S1 X0 X1, transfers D0 D1 C0 C1 on comm."""
        cmp = torch.cuda.current_stream()
        cdone = [None, None]
        for l in range(nl):
            L = layers[l]
            dd = []
            for m in (0, 1):
                if cdone[m] is not None:
                    cmp.wait_event(cdone[m])
                attention(L, bs[m], kvcs[l])
                e = ev(); e.record(cmp)
                comm.wait_event(e)
                with torch.cuda.stream(comm):
                    a2a(bs[m]["dr"], bs[m]["ds"])
                d = ev(); d.record(comm)
                dd.append(d)
            for m in (0, 1):
                shared(L, bs[m])
            for m in (0, 1):
                cmp.wait_event(dd[m])
                experts(L, bs[m])
                e = ev(); e.record(cmp)
                comm.wait_event(e)
                with torch.cuda.stream(comm):
                    a2a(bs[m]["cr"], bs[m]["cs"])
                c = ev(); c.record(comm)
                cdone[m] = c
        for m in (0, 1):
            cmp.wait_event(cdone[m])

    def capture(fn):
        """fn once eagerly on a side stream (warm-up), then captured in a CUDA graph."""
        s = torch.cuda.Stream(device=dev)
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            fn()
            s.wait_stream(comm)
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            comm.wait_stream(torch.cuda.current_stream())
            fn()
            torch.cuda.current_stream().wait_stream(comm)
        torch.cuda.synchronize()
        return g

    def slowest(xs):
        t = torch.tensor(xs, dtype=torch.float64, device=dev)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def timed(g, times):
        torch.cuda.synchronize()
        dist.barrier()
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(times):
            g.replay()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) * 1e-3 / times

    def measure(fn, co=0, per=1):
        """Median seconds of one fn() / per, the slowest rank's; fn captured under carve-out co."""
        set_co(co)
        g = capture(fn)
        set_co(0)
        g.replay()
        est = slowest([timed(g, 1)])[0]
        times = max(1, math.ceil(args.inner_s / max(est, 1e-7)))
        ts = slowest([timed(g, times) for _ in range(args.samples)])
        del g
        torch.cuda.synchronize()
        return sorted(ts)[len(ts) // 2] / per

    # SDPA with a value head narrower than the query's: pad it if this torch refuses.
    pad_v = False
    try:
        qq = torch.randn((1, NH, 64, NOPE + ROPE), dtype=bf, device=dev)
        with sdpa_kernel(FAST):
            F.scaled_dot_product_attention(qq, qq, qq[..., :VD].contiguous(), is_causal=True)
        torch.cuda.synchronize()
    except Exception as exc:  # record why, then pad
        pad_v = True
        meta.append(("sdpa_pad_v", "value head padded to %d (%s)" % (NOPE + ROPE, str(exc)[:120])))

    jobs = [("decode", t, f) for t in ints(args.decode) for f in ints(args.fans)] + \
           [("prefill", t, f) for t in ints(args.prefill) for f in ints(args.fans)]
    rows, skipped = [], 0
    t0 = time.time()
    partial = open(args.out + ".partial", "w") if rank == 0 else None
    if partial:
        partial.write(",".join(HEADER) + "\n")
    too_big = 0
    for phase, T, fan in jobs:
        if 2.0 * fan * T * H > args.max_combine_gib * 2 ** 30:
            too_big += 1
            continue
        if slowest([time.time() - t0])[0] > args.budget_s:  # every rank skips, or none does
            skipped += 1
            continue
        decode = phase == "decode"
        if not decode and T % (2 * args.prompt):
            sys.exit("measure_tbo: prefill tokens %d are not an even number of %d-token prompts"
                     % (T, args.prompt))
        if T % 64:
            sys.exit("measure_tbo: tokens %d: use multiples of 64 (FP8 GEMMs want 16-row halves)" % T)
        stage("%s T=%d fan=%d" % (phase, T, fan))
        kvcs = ([torch.randn((T, args.kv, KVL + ROPE), dtype=bf, device=dev) for _ in range(hi_l)]
                if decode else [None] * hi_l)
        full = batch(T, fan, decode, 0, args.prompt, pad_v)
        half = [batch(T // 2, fan, decode, m * T // 2, args.prompt, pad_v) for m in (0, 1)]
        r = dict(phase=phase, tokens=T, fan=fan, context=args.kv if decode else args.prompt,
                 layers_lo=lo_l, layers_hi=hi_l, carveout=args.carveout, samples=args.samples)
        n = hi_l

        def comp(f, b):
            return lambda: [f(layers[l], b, kvcs[l]) if f is attention else f(layers[l], b)
                            for l in range(n)]
        stage("  components")
        for name, f in (("attn", attention), ("shared", shared), ("experts", experts)):
            r[name + "_ns"] = measure(comp(f, full), 0, n)
            r[name + "_half_ns"] = measure(comp(f, half[0]), 0, n)
            r[name + "_half_co_ns"] = measure(comp(f, half[0]), args.carveout, n)

        def comm_only(b, key):
            def fn():
                with torch.cuda.stream(comm):
                    for _ in range(n):
                        a2a(b[key[1]], b[key[0]])
            return fn
        r["dispatch_ns"] = measure(comm_only(full, ("ds", "dr")), 0, n)
        r["dispatch_half_ns"] = measure(comm_only(half[0], ("ds", "dr")), 0, n)
        r["combine_ns"] = measure(comm_only(full, ("cs", "cr")), 0, n)
        r["combine_half_ns"] = measure(comm_only(half[0], ("cs", "cr")), 0, n)
        for nl, tag in ((lo_l, "lo"), (hi_l, "hi")):
            stage("  stacks of %d layers" % nl)
            r["serial_%s_ns" % tag] = measure(lambda nl=nl: serial_stack(nl, full, kvcs), 0)
            r["tbo_%s_ns" % tag] = measure(lambda nl=nl: tbo_stack(nl, half, kvcs), 0)
            r["tbo_co_%s_ns" % tag] = measure(lambda nl=nl: tbo_stack(nl, half, kvcs), args.carveout)
        for k in list(r):
            if k.endswith("_ns"):
                r[k] = "%.0f" % (r[k] * 1e9)
        rows.append(r)
        if rank == 0:
            partial.write(",".join(str(r[h]) for h in HEADER) + "\n")
            partial.flush()
            lay = lambda a, b: (float(r[b]) - float(r[a])) / (hi_l - lo_l)  # noqa: E731
            s, o, oc = lay("serial_lo_ns", "serial_hi_ns"), lay("tbo_lo_ns", "tbo_hi_ns"), \
                lay("tbo_co_lo_ns", "tbo_co_hi_ns")
            print("%-7s T=%-6d fan=%-3d A %s/%s S %s/%s X %s/%s D %s/%s C %s/%s | layer serial %.0f "
                  "tbo %.0f (x%.3f) tbo co%d %.0f (x%.3f)" % (
                      phase, T, fan, r["attn_ns"], r["attn_half_ns"], r["shared_ns"],
                      r["shared_half_ns"], r["experts_ns"], r["experts_half_ns"], r["dispatch_ns"],
                      r["dispatch_half_ns"], r["combine_ns"], r["combine_half_ns"], s, o, s / o,
                      args.carveout, oc, s / oc), flush=True)
        del kvcs, full, half
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    faulthandler.cancel_dump_traceback_later()
    if rank == 0:
        partial.close()
        os.remove(args.out + ".partial")
        meta.append(("what", "EP2 stack of DeepSeek-V3 MoE-layer slices (MLA attention, shared expert, "
                             "dispatch, 8 local experts as one FP8 grouped GEMM, combine; FP8 weights "
                             "and dispatch, BF16 combine), serially and as two-batch overlap"))
        meta.append(("kernels", "torch._scaled_mm (per-tensor scales) for projections and shared "
                                "expert; torch._scaled_grouped_mm (row-wise) for the routed experts; "
                                "torch.bmm + softmax (absorbed MLA, decode); "
                                "F.scaled_dot_product_attention causal (prefill); "
                                "dist.all_to_all_single to the other GPU over NCCL"))
        meta.append(("timing", "CUDA events around CUDA-graph replays (whole stacks, two streams in "
                               "one graph); median of %d samples, the slowest rank's; per-layer "
                               "components: a graph over every layer's weights / layers" % args.samples))
        meta.append(("sdpa_pad_v", "yes" if pad_v else "no"))
        meta.append(("measured_points", "%d in %.0f s, %d skipped for the budget, %d for memory "
                     "(--max-combine-gib %g)" % (len(rows), time.time() - t0, skipped, too_big,
                                                 args.max_combine_gib)))
        calibmeta.write_csv(args.out, meta, HEADER, rows)
        print("measure_tbo: %d rows in %s, %.0f s" % (len(rows), args.out, time.time() - t0))
    torch.cuda.synchronize()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no process-group teardown: with captured NCCL graphs it has hung


if __name__ == "__main__":
    main()
