#!/bin/sh
# run_tbo: the two-batch-overlap measurement of issue 14 (measure_tbo.py) on
# a host of two GPUs. Writes OUT/PREFIX_tbo.csv (default OUT: the current
# folder, PREFIX h200) and tbo.log. TBO_ARGS replaces the grid; QUICK=1
# runs a tiny one first (to check the script) and the grid only if it
# passed. NVLink multicast stays off: a program using it can take a shared
# host's GPUs out of service.
. "$(dirname "$0")/gpu_env.sh"
run() { # csv log timeout args...
    csv=$1 log=$2 lim=$3
    shift 3
    timeout "$lim" python3 -m torch.distributed.run --standalone --nproc_per_node=2 \
        "$d/measure_tbo.py" --out "$csv" "$@" >"$log" 2>&1
    rc=$?
    echo "run_tbo: $(basename "$csv") exit $rc"
    grep -v "^ *File\|^    \|^\[rank" "$log" | tail -40
    return $rc
}
if [ "${QUICK:-0}" = 1 ]; then
    run "$out/quick_tbo.csv" "$out/quick.log" 150 --decode 64 --prefill 4096 --fans 4 \
        --layers 1,2 --samples 3 --stall-s 60 || { grep "^\[rank" "$out/quick.log" | tail -5; exit 1; }
fi
run "$out/${prefix}_tbo.csv" "$out/tbo.log" "${TBO_TIMEOUT:-400}" ${TBO_ARGS:-}
