#!/usr/bin/env python3
"""greedy_place: a small external placement strategy for moesim's tests
(python3 standard library only). It reads moesim's request (JSON on stdin:
the deployment and the loads, inline or as a .npy file) and writes
{"physical_to_logical_map": [[expert per slot] per MoE layer]} to stdout.

Per layer: every expert gets one slot; each redundant slot goes to the
expert with the highest load per replica (lowest id on ties); replicas,
heaviest first (then by expert id), go to the least-loaded device that has
a free slot and no copy of that expert yet (lowest device on ties; any
device with a free slot when every such device holds one). tests/
test_exec.c ports the same steps to C and expects the same layout.
"""
import json
import struct
import sys


def read_npy(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise SystemExit("greedy_place: %s is not a .npy file" % path)
    hlen = struct.unpack("<H", data[8:10])[0]
    header = data[10:10 + hlen].decode("latin1")
    if "'<f8'" not in header or "False" not in header:
        raise SystemExit("greedy_place: %s: expected float64 in C order" % path)
    shape = header.split("(")[1].split(")")[0]
    rows, cols = (int(x) for x in shape.split(",")[:2])
    flat = struct.unpack("<%dd" % (rows * cols), data[10 + hlen:10 + hlen + 8 * rows * cols])
    return [list(flat[r * cols:(r + 1) * cols]) for r in range(rows)]


def place_layer(w, devices, slots):
    experts = len(w)
    cnt = [1] * experts
    for _ in range(slots - experts):
        best = 0
        for e in range(1, experts):
            if w[e] / cnt[e] > w[best] / cnt[best]:
                best = e
        cnt[best] += 1
    items = []
    for e in range(experts):
        for k in range(cnt[e]):
            items.append((w[e] / cnt[e], e, k))
    items.sort(key=lambda t: (-t[0], t[1], t[2]))
    per = slots // devices
    load = [0.0] * devices
    held = [[] for _ in range(devices)]
    for share, e, _ in items:
        pick = -1
        for strict in (True, False):
            for d in range(devices):
                if len(held[d]) == per or (strict and e in held[d]):
                    continue
                if pick < 0 or load[d] < load[pick]:
                    pick = d
            if pick >= 0:
                break
        held[pick].append(e)
        load[pick] += share
    return [e for d in range(devices) for e in held[d]]


def main():
    req = json.load(sys.stdin)
    dep = req["deployment"]
    if req.get("loads_npy"):
        loads = read_npy(req["loads_npy"])
    elif req.get("loads") is not None:
        loads = req["loads"]
    else:
        loads = [[0.0] * dep["experts"] for _ in range(dep["layers"])]
    out = [place_layer(w, dep["devices"], dep["slots"]) for w in loads]
    json.dump({"physical_to_logical_map": out}, sys.stdout)


main()
