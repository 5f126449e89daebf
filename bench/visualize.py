"""Feature visualization speed (issue 12): one optimization step vs a plain forward+backward pass.

    .venv/bin/python bench/visualize.py            # sample model + ResNet50 (weights=None, never downloaded)
    .venv/bin/python bench/visualize.py --quick    # sample model only

For each case: seconds per step of :func:`inspector.visualize.visualize` (wall time per step from its progress
callback, after the first two graph calls, which trace; several steps run per call) against one plain
forward+backward pass of the same feature extractor (``keras.Model(model.inputs, layer.output)``, gradient of
the sum of the output with respect to the input, one ``tf.function``) at the same batch and size. The ResNet50
case then gives the time to a visualization of 64 maps at 128 px: batched (64 images per pass) against one map
at a time (batch 1), each extrapolated from the measured seconds per step to the default 256 steps (full runs
would take hours on 2 cores); the extrapolation is said in the output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inspector import kerascompat
from inspector.visualize import DEFAULTS, visualize


def seconds_per_step(model: Any, layer: str, maps: list[int], steps: int, **kw: Any) -> float:
    """Wall time per step between the end of the second graph call and the last (the first calls trace)."""
    stamps: list[tuple[int, float]] = []

    def progress(done: int, total: int) -> None:
        stamps.append((done, time.perf_counter()))

    visualize(model, layer, maps, steps=steps, progress=progress, reference=None, **kw)
    (d0, t0), (d1, t1) = stamps[min(2, len(stamps) - 2)], stamps[-1]
    return (t1 - t0) / max(d1 - d0, 1)


def plain_pass(model: Any, layer: str, batch: int, shape: tuple[int, ...], repeat: int) -> float:
    keras = kerascompat.import_keras()
    tf = kerascompat._tf()
    from inspector.runtime import find_layer

    extractor = keras.Model(model.inputs, find_layer(model, layer).output)

    @tf.function
    def step(x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = extractor(x, training=False)
            loss = tf.reduce_sum(y)
        return tape.gradient(loss, x)

    x = tf.constant(np.random.default_rng(0).uniform(0, 1, (batch, *shape)).astype(np.float32))
    step(x).numpy()
    step(x).numpy()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        step(x).numpy()
        times.append(time.perf_counter() - t)
    return float(statistics.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the sample model only")
    parser.add_argument("--steps", type=int, default=6, help="measured steps per ResNet50 run (default 6)")
    args = parser.parse_args()
    keras = kerascompat.import_keras()
    from inspector.runtime import load_runnable

    rows = []
    shapes = load_runnable(Path(__file__).resolve().parent.parent / "sample_models" / "shapes_rgb.keras")
    step_s = seconds_per_step(shapes, "relu3", list(range(24)), 40)
    plain = plain_pass(shapes, "relu3", 24, (32, 32, 3), 20)
    rows.append(("shapes_rgb relu3, 24 maps, 32 px", 24, step_s, plain))
    if not args.quick:
        resnet = keras.applications.ResNet50(weights=None, input_shape=(128, 128, 3))
        layer, maps = "conv3_block4_out", list(range(64))
        batched = seconds_per_step(resnet, layer, maps, args.steps, batch=64)
        plain64 = plain_pass(resnet, layer, 64, (128, 128, 3), 3)
        rows.append((f"ResNet50 {layer}, 64 maps, 128 px", 64, batched, plain64))
        single = seconds_per_step(resnet, layer, [0], max(args.steps, 8), batch=1)
        plain1 = plain_pass(resnet, layer, 1, (128, 128, 3), 5)
        rows.append((f"ResNet50 {layer}, 1 map, 128 px", 1, single, plain1))
    print("| case | batch | s/step | plain fwd+bwd s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, batch, s, p in rows:
        print(f"| {name} | {batch} | {s:.4f} | {p:.4f} | {s / p:.2f}x |")
    if not args.quick:
        n = DEFAULTS.steps
        print(f"\nTime to a visualization of 64 maps of ResNet50 {layer} at 128 px, {n} steps "
              f"(extrapolated from the measured s/step):")
        print(f"- batched (64 per pass): {batched * n:.0f} s")
        print(f"- one map at a time (batch 1): {single * n * 64:.0f} s ({single * n * 64 / (batched * n):.1f}x longer)")


if __name__ == "__main__":
    main()
