#!/bin/sh
# tbo_moesim: moesim's two-batch-overlap gain for the setup measure_tbo.py
# times on two H200s, to set beside models/calib/tbo_summary.py's measured
# one. The model is DeepSeek-V3 cut to an EP2 slice of one balanced EP rank:
# 16 routed experts, top-8, 8 a GPU (T tokens a GPU give T rows an expert, as
# measured), the shared expert, MLA, no dense layer, no MTP; its hidden state
# crosses to the other GPU FAN times (dispatch_bytes FAN, combine_bytes
# 2 FAN, as measure_tbo.py's fan-out; moesim takes at most 8 bytes an
# element, so FAN 1 and 4). Fixed batches of a uniform synthetic trace, flow
# mode, H200 preset (its measured calibration and overlap contention). Per
# row, stacks of 2 and 6 MoE layers with overlap off and on; (6 - 2) / 4 is
# the steady-state layer, as measured. Prints
#   phase tokens fan serial_us tbo_us gain
# Run from the repository root after `make` (MOESIM names another binary).
set -eu
MOESIM=${MOESIM:-build/moesim}
[ -x "$MOESIM" ] || { echo "tbo_moesim: $MOESIM not found (run make first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for l in 2 6; do
    "$MOESIM" trace gen --layers $l --experts 16 --top-k 8 --skew 0 --steps 16 --tokens 65536 \
        -o "$tmp/uniform_$l.csv" >/dev/null
done
model() { # layers fan
    cat <<MODEL
[model]
name = deepseek-v3-ep2-slice
description = DeepSeek-V3 MoE layers as one balanced EP rank on 2 GPUs (models/calib/tbo_moesim.sh)
source = deepseek-ai/DeepSeek-V3 config.json, cut down
n_layers = $1
n_dense = 0
hidden = 7168
moe_inter = 2048
dense_inter = 18432
n_experts = 16
top_k = 8
n_shared = 1
shared_inter = 2048
scoring = sigmoid
routed_scale = 2.5
weight_bytes = 1
dispatch_bytes = $2
combine_bytes = $(($2 * 2))
attn = mla
n_heads = 128
q_lora_rank = 1536
kv_lora_rank = 512
qk_nope_dim = 128
qk_rope_dim = 64
v_head_dim = 128
vocab = 129280
dense_bytes = 1
embed_bytes = 2
kv_bytes = 2
MODEL
}
cat >"$tmp/tbo.ini" <<CFG
[experiment]
name = tbo_ep2
seed = 1
steps = 3
[cluster]
hardware = H200
nodes = 1
devices_per_node = 2
mode = flow
[model]
preset = m_6_1.ini
[workload]
trace = uniform_6.csv
[placement]
strategies = static
prior = none
CFG
step() { # layers fan phase tokens kv overlap -> ms per step
    model "$1" "$2" >"$tmp/m_$1_$2.ini"
    ms=$("$MOESIM" run "$tmp/tbo.ini" --db "$tmp/r.db" --set model.preset="m_$1_$2.ini" \
        --set workload.trace="uniform_$1.csv" \
        --set workload.phase="$3" --set workload.tokens_per_device="$4" \
        --set workload.kv_len="$5" --set cluster.overlap="$6" |
        sed -n 's/^run [0-9]* ([^)]*): [0-9]* steps, \([0-9.]*\) ms per step.*/\1/p')
    [ -n "$ms" ] || { echo "tbo_moesim: no result line ($*)" >&2; exit 1; }
    echo "$ms"
}
echo "phase tokens fan serial_us tbo_us gain"
for row in "decode 64 2048" "decode 128 2048" "decode 256 2048" "prefill 4096 1024" \
           "prefill 16384 1024"; do
    set -- $row
    for fan in 1 4; do
        s2=$(step 2 $fan "$1" "$2" "$3" false) s6=$(step 6 $fan "$1" "$2" "$3" false)
        o2=$(step 2 $fan "$1" "$2" "$3" true) o6=$(step 6 $fan "$1" "$2" "$3" true)
        echo "$1 $2 $fan $s2 $s6 $o2 $o6" |
            awk '{ s = ($5 - $4) / 4 * 1e3; o = ($7 - $6) / 4 * 1e3
                   printf "%s %s %s %.1f %.1f %.3f\n", $1, $2, $3, s, o, s / o }'
    done
done
