#!/bin/sh
# The README's validation table: EPLB, OmniPlacement and bias balancing
# against static placement on the setups nearest to the published ones,
# with the strategy planning out-of-sample (prior trace:OTHER, a dump of
# another workload; and past, a warm-up window) and, beside it, in-sample
# (prior oracle). Throughput ratio over static with the same prior.
#
#   sh docs/validation.sh      print the table (run from the repository root after make)
#
# Setups (configs/validation.ini plus the --set lines below):
#   LMSYS prefill  H100, 4 nodes (EP32), prefill steps of 1024 prompt tokens per GPU
#                  (mean context 1,000: 2000-token prompts, prefill_in2000out100),
#                  planned on prefill_in4096
#   LMSYS decode   H100, 9 nodes (EP72), decode_in1800out100, 128 sequences per GPU,
#                  planned on decode_in1000out1000
#   Huawei decode  Ascend 910B, 4 nodes (EP32), decode_in1000out1000, 64 sequences
#                  per NPU, planned on decode_in1800out100
# MOESIM names another binary. Nothing is tuned toward the published figures.
set -eu

MOESIM=${MOESIM:-build/moesim}
CFG=configs/validation.ini
[ -x "$MOESIM" ] || { echo "validation: $MOESIM not found (run make first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Speed-ups over static for one prior, "eplb 1.23" lines: static's mean step
# time over the strategy's (the same tokens every step, so the throughput
# ratio).
ratios() { # prior setup-flags...
    prior=$1
    shift
    # shellcheck disable=SC2068
    "$MOESIM" compare "$CFG" --db "$tmp/v.db" --set "placement.prior=$prior" $@ >"$tmp/out" ||
        { echo "validation: moesim compare failed (prior $prior $*)" >&2; exit 1; }
    awk '$1 ~ /^(static|eplb|omni|bias)$/ { v[$1] = $(NF - 3) } END {
        for (s in v) if (s != "static") printf "%s %.2f\n", s, v["static"] / v[s] }' "$tmp/out"
}

setup() { # label published-eplb published-omni oos-trace flags...
    label=$1 pub_eplb=$2 pub_omni=$3 other=$4
    shift 4
    ratios "trace:../traces/data/deepseek-v3-sglang/$other" "$@" >"$tmp/oos"
    ratios past "$@" >"$tmp/past"
    ratios oracle "$@" >"$tmp/oracle"
    for s in eplb omni bias; do
        pub="-"
        [ "$s" = eplb ] && pub=$pub_eplb
        [ "$s" = omni ] && pub=$pub_omni
        printf '| %s | %s | %sx | %sx | %sx | %s |\n' "$label" "$s" \
            "$(awk -v s="$s" '$1 == s { print $2 }' "$tmp/oos")" \
            "$(awk -v s="$s" '$1 == s { print $2 }' "$tmp/past")" \
            "$(awk -v s="$s" '$1 == s { print $2 }' "$tmp/oracle")" "$pub"
    done
}

echo '| setup | strategy | out-of-sample (planned on another dump) | past (warm-up window) | oracle (in-sample) | published |'
echo '|---|---|---|---|---|---|'
setup "LMSYS prefill, H100 EP32" "1.49x" "-" prefill_in4096.json \
    --set cluster.nodes=4 --set workload.trace=../traces/data/deepseek-v3-sglang/prefill_in2000out100.json \
    --set workload.phase=prefill --set workload.tokens_per_device=1024 --set workload.kv_len=1000
setup "LMSYS decode, H100 EP72" "2.54x" "-" decode_in1000out1000.json \
    --set cluster.nodes=9 --set workload.trace=../traces/data/deepseek-v3-sglang/decode_in1800out100.json \
    --set workload.tokens_per_device=128 --set workload.kv_len=2000
setup "Huawei decode, 910B EP32" "-" "~1.10x" decode_in1800out100.json \
    --set cluster.hardware=910B --set cluster.nodes=4 \
    --set workload.trace=../traces/data/deepseek-v3-sglang/decode_in1000out1000.json \
    --set workload.tokens_per_device=64 --set workload.kv_len=2000
