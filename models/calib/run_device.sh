#!/bin/sh
# run_device: the calibration measurements in one go on a GPU machine.
# Writes h200_experts.csv (GPU 0) and, with two or more GPUs, h200_a2a.csv
# (CUDA-graph replays) and h200_a2a_eager.csv (plain calls) over all the
# host's GPUs, one process each, into OUT (default: the current folder),
# plus logs. NVLink multicast stays off: a program using it can take a
# shared host's GPUs out of service.
. "$(dirname "$0")/gpu_env.sh"
{ nvidia-smi; nvidia-smi topo -m; } >"$out/nvidia_smi.txt" 2>&1
n=$(python3 -c 'import torch; print(torch.cuda.device_count())')
echo "run_device: $n GPUs"
if [ "$n" -ge 2 ]; then
    # The DeepEP-like dispatch of a real DeepSeek-V3 decode step at EP$n (issue 19).
    pat=${TMPDIR:-/tmp}/a2a_pattern_ep$n.csv
    python3 "$d/a2a_pattern.py" --world "$n" --out "$pat" \
        --trace "$d/../../traces/data/deepseek-v3-sglang/decode_in1000out1000.json" || exit 1
    for mode in graph eager; do
        suffix=$([ $mode = graph ] || echo _eager)
        timeout ${A2A_TIMEOUT:-120} python3 -m torch.distributed.run --standalone --nproc_per_node=$n \
            "$d/measure_a2a.py" --mode $mode --out "$out/${prefix}_a2a$suffix.csv" \
            $([ $mode = graph ] && echo --pattern-file "$pat") \
            >"$out/a2a$suffix.log" 2>&1
        echo "run_device: all-to-all ($mode) exit $?"; tail -40 "$out/a2a$suffix.log"
    done
else
    echo "run_device: one GPU, no all-to-all"
fi
[ "${SKIP_EXPERTS:-0}" = 1 ] && exit 0
timeout ${EXPERTS_TIMEOUT:-340} python3 "$d/measure_experts.py" --out "$out/${prefix}_experts.csv" \
    --budget-s ${EXPERTS_BUDGET:-300} \
    >"$out/experts.log" 2>&1
echo "run_device: experts exit $?"; tail -30 "$out/experts.log"
