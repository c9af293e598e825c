#!/bin/sh
# run_overlap: the overlap and kernel-step measurements of issue 14 in one go
# on a host of two or more GPUs. Writes into OUT (default: the current folder)
# PREFIX_overlap.csv (grouped GEMM and NCCL all-to-all, alone and concurrently,
# measure_overlap.py) and PREFIX_experts_steps.csv (the grouped kernels at
# fine steps of tokens per expert around their tile sizes, measure_experts.py),
# plus logs. QUICK=1 runs a tiny grid (to check the scripts). NVLink
# multicast stays off: a program using it can take a shared host's GPUs out
# of service.
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
d=$(dirname "$0")
out=${OUT:-.}
prefix=${CALIB_PREFIX:-h200}
n=$(python3 -c 'import torch; print(torch.cuda.device_count())')
echo "run_overlap: $n GPUs"
if [ "${QUICK:-0}" = 1 ]; then
    ov="--experts 8 --tokens 128 --bytes 4194304 --carveouts 0,20 --samples 3"
    st="--experts 8 --tokens 120,128,136,256,264,512,520 --budget-s 30"
else
    ov="${OVERLAP_ARGS:-}"
    st="--experts 1,8,32 --budget-s ${STEPS_BUDGET:-120} --tokens ${STEPS_TOKENS:-64,96,112,120,128,129,136,144,160,192,224,240,256,257,264,272,288,320,384,448,480,512,513,520,544,576,640,768,896,1024,1025,1040,1088}"
fi
if [ "$n" -ge 2 ] && [ "${SKIP_OVERLAP:-0}" != 1 ]; then
    timeout ${OVERLAP_TIMEOUT:-300} python3 -m torch.distributed.run --standalone --nproc_per_node=$n \
        "$d/measure_overlap.py" --out "$out/${prefix}_overlap.csv" $ov >"$out/overlap.log" 2>&1
    echo "run_overlap: overlap exit $?"; tail -60 "$out/overlap.log"
fi
[ "${SKIP_STEPS:-0}" = 1 ] && exit 0
timeout ${STEPS_TIMEOUT:-200} python3 "$d/measure_experts.py" --out "$out/${prefix}_experts_steps.csv" \
    --impls grouped $st >"$out/steps.log" 2>&1
echo "run_overlap: steps exit $?"; tail -40 "$out/steps.log"
