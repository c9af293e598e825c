#!/usr/bin/env python3
"""a2a_pattern: the bytes each rank sends each other rank in one MoE dispatch.

Builds the DeepEP-like pattern of a DeepSeek-V3 decode step from a real
expert-count trace (SGLang `logical_count` JSON): experts sit contiguously
on WORLD ranks (static layout, experts / WORLD per rank); every rank holds
BATCH tokens; each token picks TOPK distinct experts of one MoE layer, drawn
without replacement in proportion to the trace's counts (the traces have no
per-token data, so tokens are sampled from the per-layer distribution with a
fixed seed); a token is sent once to every rank that holds at least one of
its experts (DeepEP deduplicates per destination rank), HIDDEN x BYTES bytes
each. Writes CSV rows `batch,layer,src,dst,bytes` (16-byte multiples) that
measure_a2a.py replays with --pattern-file.

  python3 a2a_pattern.py --trace decode_in1000out1000.json --world 8 --out ep8.csv

Python standard library only (runs where the trace is, no torch needed).
"""
import argparse
import bisect
import csv
import json
import random
import sys


def sample_topk(cum, total, k, rng):
    """k distinct expert ids drawn in proportion to the counts (rejection on repeats)."""
    got = set()
    while len(got) < k:
        got.add(bisect.bisect_right(cum, rng.random() * total))
    return got


def pattern(counts, world, batch, topk, hidden, nbytes, seed):
    experts = len(counts)
    if experts % world:
        sys.exit("a2a_pattern: %d experts do not divide over %d ranks" % (experts, world))
    per = experts // world
    cum, acc = [], 0.0
    for c in counts:
        acc += c
        cum.append(acc)
    if acc <= 0 or sum(1 for c in counts if c > 0) < topk:
        sys.exit("a2a_pattern: layer has fewer than %d experts with tokens" % topk)
    rng = random.Random(seed)
    send = [[0] * world for _ in range(world)]
    for src in range(world):
        for _ in range(batch):
            for dst in {e // per for e in sample_topk(cum, acc, topk, rng)}:
                send[src][dst] += hidden * nbytes
    return [[-(-b // 16) * 16 for b in row] for row in send]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", required=True, help="SGLang logical_count JSON")
    ap.add_argument("--world", type=int, default=8)
    ap.add_argument("--batches", default="16,64,128,256", help="tokens per rank, comma-separated")
    ap.add_argument("--layer", type=int, default=-1,
                    help="MoE layer to sample (default: the most skewed, max/mean of counts)")
    ap.add_argument("--topk", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=7168)
    ap.add_argument("--bytes", type=int, default=1, help="bytes per element (FP8 dispatch: 1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    try:
        with open(args.trace) as f:
            lc = json.load(f)["logical_count"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.exit("a2a_pattern: %s: not an SGLang logical_count JSON (%s)" % (args.trace, exc))
    layers = [i for i, row in enumerate(lc) if sum(row) > 0]
    if not layers:
        sys.exit("a2a_pattern: %s: every layer is empty" % args.trace)
    if args.layer < 0:
        layer = max(layers, key=lambda i: max(lc[i]) * len(lc[i]) / sum(lc[i]))
    elif args.layer in layers:
        layer = args.layer
    else:
        sys.exit("a2a_pattern: layer %d has no tokens (MoE layers: %d-%d)" % (args.layer, layers[0], layers[-1]))
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        f.write("# trace: %s\n# layer: %d\n# world: %d, top-%d, hidden %d x %d B, seed %d\n"
                % (args.trace.rsplit("/", 1)[-1], layer, args.world, args.topk, args.hidden,
                   args.bytes, args.seed))
        w.writerow(["batch", "layer", "src", "dst", "bytes"])
        for b in (int(x) for x in args.batches.split(",") if x):
            send = pattern(lc[layer], args.world, b, args.topk, args.hidden, args.bytes, args.seed + b)
            for s in range(args.world):
                for d in range(args.world):
                    w.writerow([b, layer, s, d, send[s][d]])
    print("a2a_pattern: layer %d, world %d -> %s" % (layer, args.world, args.out))


if __name__ == "__main__":
    main()
