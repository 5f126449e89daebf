"""In-process benchmark: activations of every ResNet50 layer vs a plain ``model(x)``.

Run: ``.venv/bin/python bench/inproc_activations.py [--runs 7]``. Prints one JSON object:
``{"ours_s", "baseline_s", "ratio", ...}`` (medians after a warm-up of each). ``weights=None``: no
download; random weights cost exactly what trained ones do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    import keras
    import numpy as np

    from inspector.activations import capture, layer_paths

    model = keras.applications.ResNet50(weights=None)
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32) * 255.0
    paths = layer_paths(model)

    def baseline() -> None:
        np.asarray(model(x))  # include the device->host copy of the result, as ours does

    def ours() -> None:
        capture(model, x, paths)

    # Interleave the two so background load on a shared machine hits both alike.
    base_times: list[float] = []
    our_times: list[float] = []
    baseline()
    ours()
    for _ in range(args.runs):
        t0 = time.perf_counter()
        baseline()
        base_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours()
        our_times.append(time.perf_counter() - t0)
    base, our = statistics.median(base_times), statistics.median(our_times)
    print(json.dumps({
        "ours_s": round(our, 4),
        "baseline_s": round(base, 4),
        "ratio": round(our / base, 3),
        "ratio_of_minima": round(min(our_times) / min(base_times), 3),
        "layers": len(paths),
        "runs": args.runs,
        "ours_all_s": [round(t, 4) for t in our_times],
        "baseline_all_s": [round(t, 4) for t in base_times],
    }))


if __name__ == "__main__":
    main()
