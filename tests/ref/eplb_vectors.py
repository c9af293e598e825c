#!/usr/bin/env python3
"""Reference vectors for moesim's EPLB (tests/test_eplb.c).

How the vectors in tests/ref/eplb_vectors.h were made:

  1. python3 tests/ref/eplb_vectors.py inputs inputs.json
       random integer loads with many ties (values 0..5 and the like) for
       hierarchical and global shapes, one float case, the EPLB README
       vector, and the 58-layer DeepSeek-V3 traces of traces/data at EP32
       and EP144 (seeded: the same file every time).
  2. python3 tests/ref/eplb_vectors.py run eplb.py inputs.json ref.json
       runs DeepSeek's own eplb.py (github deepseek-ai/EPLB; needs torch;
       fetch it yourself, it is not part of this tree) on every case, and
       also a copy whose sort is forced stable, and times it.
  3. python3 tests/ref/eplb_vectors.py header ref.json > tests/ref/eplb_vectors.h
       bakes small cases as C arrays and the trace cases as FNV-1a 64
       digests of phy2log then logcnt (int32 little-endian), the digest
       moesim's ms_hash64 computes.

`port` runs a plain-Python port (float32 emulated exactly, stable sort, no
torch) in place of step 2:
  python3 tests/ref/eplb_vectors.py port inputs.json ref.json

The committed header was made from a torch run (torch 2.11.0, Python 3.12,
AVX-512 CPU, 2026-11-23) of DeepSeek's eplb.py with its sort made stable, the
tie rule REFERENCE.md 1.2 gives. The port gives identical output on all 31
cases. torch's default CPU sort is not stable: on that machine it broke ties
differently from the stable sort on 22 of the 31 cases (the README vector
is not one of them), so "the reference output" on tied inputs is only
defined with the stable rule; docs/placement.md explains.
"""
import json
import os
import random
import struct
import sys
import time

TRACE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                         "traces", "data", "deepseek-v3-sglang")

# name, layers, experts, slots, groups, nodes, gpus, value range (ints) or None (floats)
RANDOM_CASES = [
    ("h_e12_n2", 6, 12, 16, 4, 2, 8, 5),
    ("h_e16_n2", 6, 16, 24, 4, 2, 4, 3),
    ("h_e32_n4", 4, 32, 40, 8, 4, 8, 5),
    ("h_e64_n2", 4, 64, 80, 8, 2, 8, 5),
    ("h_e256_ep32", 3, 256, 288, 8, 4, 32, 5),
    ("h_e256_g8n8", 3, 256, 320, 8, 8, 64, 3),
    ("h_e48_zero", 4, 48, 64, 4, 2, 16, 2),
    ("h_e24_noredund", 3, 24, 24, 6, 3, 6, 5),
    ("g_e12_n3", 6, 12, 18, 4, 3, 6, 5),
    ("g_e64_n3", 4, 64, 72, 8, 3, 12, 5),
    ("g_e256_ep144", 3, 256, 288, 8, 18, 144, 5),
    ("g_e8_identity", 4, 8, 8, 3, 2, 8, 5),
    ("g_e40_n2", 4, 40, 60, 5, 2, 6, 9),
    ("h_e64_float", 4, 64, 80, 8, 2, 8, None),
]


def make_inputs(path):
    rng = random.Random(20250301)
    cases = [{
        "name": "readme", "kind": "array", "slots": 16, "groups": 4, "nodes": 2, "gpus": 8,
        "weight": [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                   [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]}]
    for name, L, E, P, G, N, GP, hi in RANDOM_CASES:
        if hi is None:
            w = [[round(rng.random() * 100, 3) for _ in range(E)] for _ in range(L)]
        else:
            w = [[rng.randint(0, hi) for _ in range(E)] for _ in range(L)]
        if name == "h_e48_zero":
            w[1] = [0] * E
        cases.append({"name": name, "kind": "array", "slots": P, "groups": G, "nodes": N,
                      "gpus": GP, "weight": w})
    for f in sorted(os.listdir(TRACE_DIR)):
        if not f.endswith(".json"):
            continue
        with open(os.path.join(TRACE_DIR, f)) as fh:
            lc = json.load(fh)["logical_count"]
        while lc and not any(lc[0]):  # dense layers lead with zeros, as trace_read drops them
            lc = lc[1:]
        for tag, N, GP in (("ep32", 4, 32), ("ep144", 18, 144)):
            cases.append({"name": f[:-5] + "_" + tag, "kind": "trace", "file": f, "slots": 288,
                          "groups": 8, "nodes": N, "gpus": GP, "weight": lc})
    with open(path, "w") as fh:
        json.dump({"cases": cases}, fh)


def cpu_capability(torch):
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch has no such call
        return "?"


def run_torch(eplb_path, inputs, out):
    import importlib.util
    import platform
    import subprocess
    import torch

    def load(name, src):
        spec = importlib.util.spec_from_loader(name, loader=None)
        mod = importlib.util.module_from_spec(spec)
        exec(compile(src, eplb_path, "exec"), mod.__dict__)
        return mod

    src = open(eplb_path).read()
    ref = load("eplb_ref", src)
    stable_src = src.replace("sort(-1, descending=True)", "sort(dim=-1, descending=True, stable=True)")
    assert stable_src != src
    ref_stable = load("eplb_stable", stable_src)
    cases = json.load(open(inputs))["cases"]
    res = []
    for c in cases:
        w = torch.tensor(c["weight"], dtype=torch.float64)
        args = (c["slots"], c["groups"], c["nodes"], c["gpus"])
        p, l2p, cnt = ref.rebalance_experts(w, *args)
        try:  # the reference's sort is not asked to be stable: does that change anything?
            ps, _, cnts = ref_stable.rebalance_experts(w, *args)
            same = bool(torch.equal(p, ps) and torch.equal(cnt, cnts))
        except Exception as exc:  # keep the reference's own output regardless
            print(c["name"], "stable variant failed:", repr(exc), flush=True)
            same = None
        res.append({"name": c["name"], "phy2log": p.tolist(), "logcnt": cnt.tolist(),
                    "log2phy": l2p.tolist() if c["kind"] == "array" else None,
                    "stable_same": same})
        print(c["name"], {True: "stable sort: same", False: "stable sort: DIFFERS",
                          None: "stable sort: not run"}[same], flush=True)
    timing = {}
    g = torch.Generator().manual_seed(1)
    w = (torch.rand(58, 256, generator=g) * 1000).round()
    for tag, N, GP in (("ep32_4nodes", 4, 32), ("ep144_18nodes", 18, 144)):
        t = []
        for _ in range(2):
            t0 = time.perf_counter()
            ref.rebalance_experts(w, 288, 8, N, GP)
            t.append(time.perf_counter() - t0)
        timing[tag] = min(t)
        print("time", tag, min(t), flush=True)
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        cpu = ""
    meta = {"torch": torch.__version__, "python": platform.python_version(),
            "cpu_capability": cpu_capability(torch),
            "threads": torch.get_num_threads(), "lscpu": cpu, "timing_s": timing}
    print(json.dumps({k: v for k, v in meta.items() if k != "lscpu"}))
    with open(out, "w") as fh:
        json.dump({"meta": meta, "cases": res}, fh)


# ---- plain-Python port: every float32 operation rounded exactly --------
def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def port_packing(weight, m):
    n = len(weight)
    per = n // m
    if per == 1:
        return list(range(n)), [0] * n
    order = sorted(range(n), key=lambda i: -weight[i])  # Python's sort is stable
    load, items = [0.0] * m, [0] * m
    pack, rank = [0] * n, [0] * n
    for i in order:
        p = min((j for j in range(m) if items[j] < per), key=load.__getitem__)
        pack[i], rank[i] = p, items[p]
        load[p] = f32(load[p] + weight[i])
        items[p] += 1
    return pack, rank


def port_replicate(weight, n_phy):
    n = len(weight)
    phy2log, cnt = list(range(n)), [1] * n
    for _ in range(n, n_phy):
        q = [f32(weight[e] / cnt[e]) for e in range(n)]
        e = max(range(n), key=lambda i: (q[i], -i))
        phy2log.append(e)
        cnt[e] += 1
    return phy2log, cnt


def port_layer(w, P, G, N, GP):
    E = len(w)
    if G % N:
        G, N = 1, 1
    w = [f32(x) for x in w]
    gs = E // G
    gsum = []
    for g in range(G):
        s = 0.0
        for x in w[g * gs:(g + 1) * gs]:
            s = f32(s + x)
        gsum.append(s)
    gpack, grank = port_packing(gsum, N)
    log2mlog = [(gpack[e // gs] * (G // N) + grank[e // gs]) * gs + e % gs for e in range(E)]
    mlog2log = [0] * E
    for e, m in enumerate(log2mlog):
        mlog2log[m] = e
    En, Pn, spg = E // N, P // N, P // GP
    phy2log = [0] * P
    mcnt = [0] * E
    for node in range(N):
        wm = [w[mlog2log[node * En + j]] for j in range(En)]
        p2m, cnt = port_replicate(wm, Pn)
        mcnt[node * En:(node + 1) * En] = cnt
        tok = [f32(wm[j] / cnt[j]) for j in p2m]
        pack, rank = port_packing(tok, GP // N)
        for k in range(Pn):
            phy2log[node * Pn + pack[k] * spg + rank[k]] = mlog2log[node * En + p2m[k]]
    return phy2log, [mcnt[log2mlog[e]] for e in range(E)]


def run_port(inputs, out):
    res = []
    for c in json.load(open(inputs))["cases"]:
        p, cnt = zip(*[port_layer(w, c["slots"], c["groups"], c["nodes"], c["gpus"])
                       for w in c["weight"]])
        res.append({"name": c["name"], "phy2log": list(p), "logcnt": list(cnt)})
    with open(out, "w") as fh:
        json.dump({"meta": {"port": True}, "cases": res}, fh)


# ---- the C header ------------------------------------------------------
def fnv64(ints):
    h = 1469598103934665603
    for b in struct.pack("<%di" % len(ints), *ints):
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def flat(x):
    return [v for row in x for v in row]


def c_array(name, ty, vals):
    body = ", ".join(str(v) for v in vals)
    return "static const %s %s[%d] = {%s};\n" % (ty, name, len(vals), body)


def header(ref_path, inputs_path):
    ref = json.load(open(ref_path))
    inp = {c["name"]: c for c in json.load(open(inputs_path))["cases"]}
    meta = ref["meta"]
    src = ("its plain-Python port of eplb.py (float32 exact, stable sort)" if meta.get("port")
           else "DeepSeek's eplb.py run with torch %s, its sort made stable\n * (the tie rule of REFERENCE.md 1.2; torch's default CPU sort is not stable)"
           % meta.get("torch", "?"))
    o = ["/* Generated by tests/ref/eplb_vectors.py (header step) from\n * %s;\n"
         " * do not edit. That script says how to remake it. */\n" % src,
         "#include <stdint.h>\n\n"]
    arr, tr = [], []
    for c in ref["cases"]:
        i = inp[c["name"]]
        L, E = len(i["weight"]), len(i["weight"][0])
        shape = (i["slots"], i["groups"], i["nodes"], i["gpus"])
        if i["kind"] == "array":
            n = "eplbv_" + c["name"]
            w = flat(i["weight"])
            o.append(c_array(n + "_w", "double", [repr(float(x)) for x in w]))
            o.append(c_array(n + "_p", "int", flat(c["phy2log"])))
            o.append(c_array(n + "_c", "int", flat(c["logcnt"])))
            arr.append('    {"%s", %d, %d, %d, %d, %d, %d, %s_w, %s_p, %s_c},\n'
                       % ((c["name"], L, E) + shape + (n, n, n)))
        else:
            d = fnv64(flat(c["phy2log"]) + flat(c["logcnt"]))
            tr.append('    {"%s", "%s", %d, %d, %d, %d, 0x%016xull},\n'
                      % ((c["name"], i["file"]) + shape + (d,)))
    o.append("\ntypedef struct eplbv_case {\n    const char *name;\n    int L, E, P, groups, nodes, gpus;\n"
             "    const double *w;\n    const int *phy2log, *logcnt;\n} eplbv_case_t;\n\n")
    o.append("static const eplbv_case_t eplbv_cases[] = {\n" + "".join(arr) + "};\n\n")
    o.append("typedef struct eplbv_trace {\n    const char *name, *file;\n    int P, groups, nodes, gpus;\n"
             "    uint64_t digest;\n} eplbv_trace_t;\n\n")
    o.append("static const eplbv_trace_t eplbv_traces[] = {\n" + "".join(tr) + "};\n")
    sys.stdout.write("".join(o))


def main(a):
    if len(a) == 2 and a[0] == "inputs":
        make_inputs(a[1])
    elif len(a) == 4 and a[0] == "run":
        run_torch(a[1], a[2], a[3])
    elif len(a) == 3 and a[0] == "port":
        run_port(a[1], a[2])
    elif len(a) == 3 and a[0] == "header":
        header(a[1], a[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
