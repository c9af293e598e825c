# gpu_env: the environment every device script of models/calib runs under,
# sourced by run_device.sh, run_overlap.sh and run_tbo.sh. NVLink multicast
# stays off (a program using it can take a shared host's GPUs out of
# service); d is the scripts' folder, out and prefix where and under what
# name they write (OUT, CALIB_PREFIX).
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
d=$(dirname "$0")
out=${OUT:-.}
prefix=${CALIB_PREFIX:-h200}
