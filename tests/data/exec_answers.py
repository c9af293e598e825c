#!/usr/bin/env python3
"""exec_answers: an external strategy for moesim's tests that answers in a
chosen way (argv[1]): "trivial" (slot i holds expert i mod E, the echo the
benchmark times), or one malformed answer moesim must refuse. "late_MODE"
answers trivially at init and with MODE at the first re-plan.
"""
import json
import sys
import time

mode = sys.argv[1]
req = json.load(sys.stdin)
dep = req["deployment"]
if mode.startswith("late_"):
    mode = mode[5:] if req["event"] == "replan" else "trivial"
L, E, S = dep["layers"], dep["experts"], dep["slots"]
rows = [[s % E for s in range(S)] for _ in range(L)]
if mode == "badjson":
    sys.stdout.write('{"physical_to_logical_map": [[0, 1')
elif mode == "shape":
    json.dump({"physical_to_logical_map": rows[:-1]}, sys.stdout)
elif mode == "slots":
    json.dump({"physical_to_logical_map": [r[:-1] for r in rows]}, sys.stdout)
elif mode == "range":
    rows[0][3] = E
    json.dump({"physical_to_logical_map": rows}, sys.stdout)
elif mode == "missing":
    rows[1] = [0] * S
    json.dump({"physical_to_logical_map": rows}, sys.stdout)
elif mode == "exit3":
    sys.stderr.write("cannot plan: out of ideas\n")
    sys.exit(3)
elif mode == "sleep":
    time.sleep(30)
else:
    json.dump({"physical_to_logical_map": rows}, sys.stdout)
