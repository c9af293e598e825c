"""calibmeta: provenance shared by the calibration measurements.

Every CSV the measurement scripts write starts with '# key: value' lines
(GPU, driver, CUDA, torch, NCCL, date, command) so a file says where its
numbers came from; moesim's loader skips lines that start with '#'. Also
the start every multi-GPU measurement shares (start_ranks).
"""
import datetime
import os
import platform
import re
import subprocess
import sys


def _run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as exc:  # the tool may be missing: say so in the file
        return "unavailable (%s)" % exc.__class__.__name__


def start_ranks(torch, dist):
    """(rank, world size, device) of this torchrun process, with NCCL started on its GPU."""
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    torch.cuda.set_device(local)
    dev = torch.device("cuda", local)
    dist.init_process_group("nccl", device_id=dev)
    return rank, world, dev


def collect(torch=None):
    """Returns [(key, value)] describing this machine and software."""
    # File names only: the files must not carry the measuring machine's paths.
    argv = [os.path.basename(a) if os.sep in a else a for a in sys.argv]
    meta = [("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")),
            ("command", " ".join(argv)),
            ("python", platform.python_version())]
    drv = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                "--format=csv,noheader"])
    for i, line in enumerate(drv.splitlines() or [drv]):
        meta.append(("nvidia_smi_gpu%d" % i, line))
    topo = re.sub(r"\x1b\[[0-9;]*m", "", _run(["nvidia-smi", "topo", "-m"])).split("Legend")[0]
    meta.append(("nvidia_smi_topo", " | ".join(l.rstrip() for l in topo.splitlines() if l.strip())))
    if torch is not None:
        meta.append(("torch", torch.__version__))
        meta.append(("cuda", str(torch.version.cuda)))
        try:
            v = torch.cuda.nccl.version()
            meta.append(("nccl", ".".join(map(str, v)) if isinstance(v, tuple) else str(v)))
        except Exception as exc:
            meta.append(("nccl", "unavailable (%s)" % exc.__class__.__name__))
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            meta.append(("gpu", p.name))
            meta.append(("gpu_count", str(torch.cuda.device_count())))
            meta.append(("sm_count", str(p.multi_processor_count)))
            meta.append(("capability", "%d.%d" % (p.major, p.minor)))
    for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS"):
        meta.append(("env_" + k, os.environ.get(k, "(unset)")))
    return meta


def write_csv(path, meta, header, rows):
    """Writes '# key: value' lines, the header and rows; atomically (tmp + rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for k, v in meta:
            f.write("# %s: %s\n" % (k, str(v).replace("\n", " | ")))
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(str(r[h]) for h in header) + "\n")
    os.replace(tmp, path)
