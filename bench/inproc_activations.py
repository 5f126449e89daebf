"""In-process benchmark: activations of every ResNet50 layer vs a plain ``model(x)``.

Run: ``.venv/bin/python bench/inproc_activations.py [--runs 7] [--data-format channels_first]``. Prints
one JSON object: ``{"ours_s", "baseline_s", "ratio", ...}`` (medians after a warm-up of each).
``weights=None``: no download; random weights cost exactly what trained ones do.

Both sides go through :func:`inspector.kerascompat.call`, so on a CPU without an eager kernel for a
layer (channels_first with oneDNN off) both take the XLA fallback: ``bench/onednn.py`` runs this
script with oneDNN on and off to price it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--data-format", choices=("channels_last", "channels_first"), default="channels_last")
    args = parser.parse_args()

    import numpy as np

    from inspector import kerascompat
    from inspector.activations import capture, layer_paths

    keras = kerascompat.import_keras()
    keras.config.set_image_data_format(args.data_format)
    shape = (1, 224, 224, 3) if args.data_format == "channels_last" else (1, 3, 224, 224)
    model = keras.applications.ResNet50(weights=None, input_shape=shape[1:])
    x = np.random.default_rng(0).random(shape, dtype=np.float32) * 255.0
    paths = layer_paths(model)

    def baseline() -> None:
        np.asarray(kerascompat.call(model, x))  # include the device->host copy of the result, as ours does

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
        "data_format": args.data_format,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "runs": args.runs,
        "ours_all_s": [round(t, 4) for t in our_times],
        "baseline_all_s": [round(t, 4) for t in base_times],
    }))


if __name__ == "__main__":
    main()
