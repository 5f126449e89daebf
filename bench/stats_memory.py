"""Peak memory and time of ``inspector stats`` on every layer of VGG16 (random weights, ~528 MB).

    .venv/bin/python bench/stats_memory.py [--model /tmp/vgg16_random.keras] [--no-duplicates]

The model is built once (``keras.applications.VGG16(weights=None)``: no download) in its own child
process, so Keras never inflates the measured process. The measurement runs in a fresh child that
imports only ``inspector``; its peak RSS comes from ``os.wait4`` (``ru_maxrss``) and, as a cross-check,
from the child's own ``VmHWM`` in ``/proc/self/status``. The budget is 400 MB: fc1's kernel alone is
25088 × 4096 float32 = 411 MB, so it must be streamed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BUDGET_MB = 400.0

_BUILD = """
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
import keras, sys
keras.applications.VGG16(weights=None).save(sys.argv[1])
"""

_MEASURE = """
import json, sys, time
t0 = time.perf_counter()
from inspector import open_model
from inspector.stats import layer_stats
dup = None if sys.argv[2] == "off" else 0.99
rows = []
with open_model(sys.argv[1]) as index:
    for layer in index.layers:
        if not layer.weights:
            continue
        t = time.perf_counter()
        ls = layer_stats(layer, index=index, dup_threshold=dup)
        h = ls.health
        rows.append({"layer": layer.path, "params": ls.params, "seconds": round(time.perf_counter() - t, 3),
                     "mean": ls.combined.mean, "std": ls.combined.std,
                     "dead": None if h is None else len(h.dead),
                     "dup_pairs": None if h is None else h.duplicate_pair_count})
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": time.perf_counter() - t0, "vmhwm_kb": hwm, "layers": rows}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/tmp/vgg16_random.keras")
    parser.add_argument("--no-duplicates", action="store_true", help="skip the duplicate (Gram) search")
    args = parser.parse_args()
    if not os.path.exists(args.model):
        print(f"building {args.model} (VGG16, random weights) ...", flush=True)
        subprocess.run([sys.executable, "-c", _BUILD, args.model], check=True)
    size_mb = os.path.getsize(args.model) / 1e6
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _MEASURE, args.model, "off" if args.no_duplicates else "on"],
                            stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        print(f"measurement child failed with status {status}", file=sys.stderr)
        return 1
    result = json.loads(out)
    peak_mb = usage.ru_maxrss / 1024  # Linux: kilobytes
    for row in result["layers"]:
        print(f"  {row['layer']:<16} {row['params']:>12,}  {row['seconds']:>7.3f} s  dead {row['dead']}  "
              f"dup pairs {row['dup_pairs']}")
    print(f"model {args.model}: {size_mb:.1f} MB, {len(result['layers'])} layers with weights, "
          f"duplicates {'off' if args.no_duplicates else 'on'}")
    print(f"wall time {wall:.2f} s (child's own {result['seconds']:.2f} s)")
    print(f"peak RSS {peak_mb:.1f} MB (ru_maxrss), VmHWM {result['vmhwm_kb'] / 1024:.1f} MB; budget {BUDGET_MB:.0f} MB")
    return 0 if peak_mb < BUDGET_MB else 3


if __name__ == "__main__":
    sys.exit(main())
