"""What the XLA fallback costs: ResNet50 activations with TensorFlow's oneDNN kernels on and off.

Run: ``.venv/bin/python bench/onednn.py [--runs 5]``. Runs ``bench/inproc_activations.py`` in four
fresh processes (oneDNN on/off x channels_last/channels_first: the setting is read once, at
TensorFlow's import) and prints a Markdown table. ``TF_ENABLE_ONEDNN_OPTS=0`` reproduces the CPUs
whose TensorFlow has oneDNN off by default; there, channels_first convolutions have no eager CPU
kernel and run XLA-compiled (``inspector.kerascompat``), so that row prices the fallback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for data_format in ("channels_last", "channels_first"):
        for onednn in ("1", "0"):
            env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn)
            out = subprocess.run([sys.executable, str(HERE / "inproc_activations.py"), "--runs", str(args.runs),
                                  "--data-format", data_format], env=env, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| layout | oneDNN | model(x) s | capture all layers s | capture / model(x) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['data_format']} | {'on' if r['onednn'] == '1' else 'off'} | {r['baseline_s']:.3f} | "
              f"{r['ours_s']:.3f} | {r['ratio']:.2f}x |")


if __name__ == "__main__":
    main()
