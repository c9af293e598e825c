#!/bin/sh
# Reruns the validation anchors as deployed and prints the README's table:
# DeepSeek's production figures on H800 (open-infra-index day 6) and
# LMSYS's SGLang deployment on 12 x 8 H100 (lmsys.org, 2025-05-05), each
# from its config in configs/anchor_*.ini (every assumption is stated there
# and in the table), with moesim's figure, the published one and the error.
#
#   sh docs/anchors.sh        print the table (about eight minutes on 2 cores)
#
# Run from the repository root after `make`. MOESIM names another binary.
set -eu

MOESIM=${MOESIM:-build/moesim}
[ -x "$MOESIM" ] || { echo "anchors: $MOESIM not found (run make first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One run: prints "tokens_per_s step_ms par" from moesim's run line.
one() { # config [--set KEY=VALUE]
    cfg=$1
    shift
    "$MOESIM" run "configs/$cfg.ini" --db "$tmp/$cfg.db" "$@" |
        sed -n 's/^run [0-9]* ([^)]*): [0-9]* steps, \([0-9.]*\) ms per step, \([0-9]*\) [a-z]* tokens\/s per node, mean PAR \([0-9.]*\)$/\2 \1 \3/p'
}

# The run as deployed, then the same without two-batch overlap (what the
# overlap is worth in moesim: the first named cause of the gaps).
row() { # config label published assumptions
    got=$(one "$1")
    off=$(one "$1" --set cluster.overlap=false)
    [ -n "$got" ] && [ -n "$off" ] || { echo "anchors: no result line from $1" >&2; exit 1; }
    echo "$got $off" | awk -v label="$2" -v pub="$3" -v what="$4" '{
        printf "| %s | %.1fk | %.1fk | %+.0f%% | %.1f ms, PAR %.2f | %.1fk (%+.0f%%) | %s |\n",
               label, $1 / 1000, pub / 1000, ($1 - pub) / pub * 100, $2, $3, $4 / 1000,
               ($4 - pub) / pub * 100, what
    }'
}

echo "| anchor | moesim | published | error | step, mean PAR | overlap off (error) | assumptions |"
echo "|---|---|---|---|---|---|---|"
row anchor_deepseek_prefill "DeepSeek prefill, input tokens/s per node" 73700 \
    "H800, EP32 on 4 nodes, 32 redundant, eplb planned from a 100-batch warm-up (prior past); 16,384 computed tokens a GPU, ~4,400-token prompts, 56.3% cache hits counted as input, mean context 3,438; MTP block once; overlap on; flow mode"
row anchor_deepseek_decode "DeepSeek decode, output tokens/s per node" 14800 \
    "H800, EP144 on 18 nodes, 32 redundant, eplb planned from a 100-batch warm-up (prior past); 88 sequences a GPU, KV 4,989; MTP depth 1, acceptance 0.85 (1.85 tokens a step); overlap on; flow mode"
row anchor_lmsys_prefill "LMSYS prefill, input tokens/s per node" 52300 \
    "H100, EP32 on 4 nodes, 32 redundant, eplb planned from a 100-batch warm-up (prior past); 16,384 tokens a GPU of 2,000-token prompts, no cache, mean context 1,000; no MTP; overlap on; flow mode"
row anchor_lmsys_decode "LMSYS decode, output tokens/s per node" 22300 \
    "H100, EP72 on 9 nodes, 32 redundant, eplb planned from a 100-batch warm-up (prior past); 256 sequences a GPU, KV 2,050; no MTP; overlap on; flow mode"
