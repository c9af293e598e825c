#!/bin/sh
# Reruns the validation anchors as deployed and prints the README's table:
# DeepSeek's production figures on H800 (open-infra-index day 6) and
# LMSYS's SGLang deployment on 12 x 8 H100 (lmsys.org, 2025-05-05), each
# from its config in configs/anchor_*.ini (every assumption is stated there
# and in the table), with moesim's figure, the published one and the error.
#
#   sh docs/anchors.sh        print the table (about five minutes on 2 cores)
#
# Run from the repository root after `make`. MOESIM names another binary.
set -eu

MOESIM=${MOESIM:-build/moesim}
[ -x "$MOESIM" ] || { echo "anchors: $MOESIM not found (run make first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One run: prints "tokens_per_s step_ms par" from moesim's run line.
one() { # config
    "$MOESIM" run "configs/$1.ini" --db "$tmp/$1.db" |
        sed -n 's/^run [0-9]* ([^)]*): [0-9]* steps, \([0-9.]*\) ms per step, \([0-9]*\) [a-z]* tokens\/s per node, mean PAR \([0-9.]*\)$/\2 \1 \3/p'
}

row() { # config label published assumptions
    set -- "$1" "$2" "$3" "$4" "$(one "$1")"
    [ -n "$5" ] || { echo "anchors: no result line from $1" >&2; exit 1; }
    echo "$5" | awk -v label="$2" -v pub="$3" -v what="$4" '{
        err = ($1 - pub) / pub * 100
        printf "| %s | %.1fk | %.1fk | %+.0f%% | %.1f ms, PAR %.2f | %s |\n", label, $1 / 1000,
               pub / 1000, err, $2, $3, what
    }'
}

echo "| anchor | moesim | published | error | step, mean PAR | assumptions |"
echo "|---|---|---|---|---|---|"
row anchor_deepseek_prefill "DeepSeek prefill, input tokens/s per node" 73700 \
    "H800, EP32 on 4 nodes, 32 redundant, eplb (prior: the trace's own counts); 16,384 computed tokens a GPU, ~4,400-token prompts, 56.3% cache hits counted as input, mean context 3,438; MTP block once; overlap on; flow mode"
row anchor_deepseek_decode "DeepSeek decode, output tokens/s per node" 14800 \
    "H800, EP144 on 18 nodes, 32 redundant, eplb (prior: the trace's own counts); 88 sequences a GPU, KV 4,989; MTP depth 1, acceptance 0.85 (1.85 tokens a step); overlap on; flow mode"
row anchor_lmsys_prefill "LMSYS prefill, input tokens/s per node" 52300 \
    "H100, EP32 on 4 nodes, 32 redundant, eplb (prior: the trace's own counts); 16,384 tokens a GPU of 2,000-token prompts, no cache, mean context 1,000; no MTP; overlap on; flow mode"
row anchor_lmsys_decode "LMSYS decode, output tokens/s per node" 22300 \
    "H100, EP72 on 9 nodes, 32 redundant, eplb (prior: the trace's own counts); 256 sequences a GPU, KV 2,050; no MTP; overlap on; flow mode"
