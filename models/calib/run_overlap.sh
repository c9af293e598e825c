#!/bin/sh
# run_overlap: the kernel-step and overlap measurements of issue 14 in one go
# on a host of two or more GPUs. Writes into OUT (default: the current folder)
# PREFIX_experts_steps.csv (the grouped kernels at fine steps of tokens per
# expert around their tile sizes, measure_experts.py, GPU 0) and
# PREFIX_overlap.csv (grouped GEMM and NCCL all-to-all, alone and
# concurrently, measure_overlap.py), plus logs. STEPS_ARGS and OVERLAP_ARGS
# replace the grids; QUICK=1 runs tiny ones (to check the scripts); SKIP_STEPS=1
# or SKIP_OVERLAP=1 leaves one out. NVLink multicast stays off: a program
# using it can take a shared host's GPUs out of service.
. "$(dirname "$0")/gpu_env.sh"
steps="--experts 1,8,32 --budget-s 120 --tokens 64,96,112,120,128,129,136,144,160,192,224,240,256,257,264,272,288,320,384,448,480,512,513,520,544,576,640,768,896,1024,1025,1040,1088"
overlap=""
if [ "${QUICK:-0}" = 1 ]; then
    steps="--experts 8 --tokens 120,128,136,256,264,512,520 --budget-s 30"
    overlap="--experts 8 --tokens 128 --bytes 4194304 --carveouts 20,0 --samples 3 --stall-s 40"
fi
steps=${STEPS_ARGS:-$steps}
overlap=${OVERLAP_ARGS:-$overlap}
n=$(python3 -c 'import torch; print(torch.cuda.device_count())')
echo "run_overlap: $n GPUs"
if [ "${SKIP_STEPS:-0}" != 1 ]; then
    timeout ${STEPS_TIMEOUT:-200} python3 "$d/measure_experts.py" --impls grouped \
        --out "$out/${prefix}_experts_steps.csv" $steps >"$out/steps.log" 2>&1
    echo "run_overlap: steps exit $?"; tail -12 "$out/steps.log"
fi
if [ "$n" -ge 2 ] && [ "${SKIP_OVERLAP:-0}" != 1 ]; then
    timeout ${OVERLAP_TIMEOUT:-300} python3 -m torch.distributed.run --standalone --nproc_per_node=$n \
        "$d/measure_overlap.py" --out "$out/${prefix}_overlap.csv" $overlap >"$out/overlap.log" 2>&1
    rc=$?; echo "run_overlap: overlap exit $rc"; grep -v "^ *File\|^    " "$out/overlap.log" | tail -80
fi
if [ "$n" -ge 2 ] && [ -n "${OVERLAP_FALLBACK:-}" ] && [ "${rc:-0}" != 0 ]; then
    # The same with other arguments (e.g. --comm-mode eager) when the first failed.
    timeout ${OVERLAP_TIMEOUT:-300} python3 -m torch.distributed.run --standalone --nproc_per_node=$n \
        "$d/measure_overlap.py" --out "$out/${prefix}_overlap.csv" $overlap $OVERLAP_FALLBACK \
        >"$out/overlap_fallback.log" 2>&1
    echo "run_overlap: overlap (fallback) exit $?"; grep -v "^ *File\|^    " "$out/overlap_fallback.log" | tail -60
fi
