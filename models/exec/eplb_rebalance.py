#!/usr/bin/env python3
"""eplb_rebalance: DeepSeek's reference EPLB as a moesim external strategy.

moesim sends the deployment and the loads as JSON on stdin (docs/strategies.md,
"exec: external strategies"); this wraps DeepSeek's
rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
from eplb.py (github deepseek-ai/EPLB; needs torch, not part of moesim) and
answers its physical-to-logical map. In an experiment config:

  [placement]
  strategies = eplb, exec:deepseek
  [strategy.deepseek]
  command = python3 ../models/exec/eplb_rebalance.py /path/to/EPLB

The argument is the folder holding eplb.py (default: already importable).
"""
import json
import sys

if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
import torch  # noqa: E402
from eplb import rebalance_experts  # noqa: E402

req = json.load(sys.stdin)
dep = req["deployment"]
if req.get("loads_npy"):  # large loads come as a float64 .npy file
    import numpy
    weight = torch.from_numpy(numpy.load(req["loads_npy"]))
elif req.get("loads") is not None:
    weight = torch.tensor(req["loads"], dtype=torch.float64)
else:  # no prior statistics at init
    weight = torch.zeros(dep["layers"], dep["experts"])
phy2log, _, _ = rebalance_experts(weight, dep["slots"], dep["groups"], dep["nodes"], dep["devices"])
json.dump({"physical_to_logical_map": phy2log.tolist()}, sys.stdout)
