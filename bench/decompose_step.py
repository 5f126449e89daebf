"""In-process benchmark: one decomposition map step, ``decompose()`` vs a prepared ``LayerRun``.

Run: ``.venv/bin/python bench/decompose_step.py [--runs 7] [--maps 8]``. Prints one JSON object per
layer and, last, one summary object (``ours_s`` = median ``LayerRun.decompose(j)``, ``baseline_s`` =
median ``decompose(..., j)``), so ``bench/run.py`` can register it as an in-process case.

Models are ``keras.applications.VGG16`` / ``ResNet50`` with ``weights=None`` (built offline, nothing is
downloaded; random weights cost what trained ones do). For each layer the maps ``0, step, 2·step, ...``
are decomposed both ways, alternating, after a warm-up; the one-off ``prepare_decomposition`` (the
forward pass and the Keras reference for every map) is timed separately.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

CASES = (("vgg16", "block5_conv3", False), ("vgg16", "block1_conv2", False),
         ("resnet50", "conv4_block6_2_conv", True), ("resnet50", "conv5_block3_3_conv", True))


def _model(name: str) -> Any:
    from inspector import kerascompat

    keras = kerascompat.import_keras()
    build = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}[name]
    return build(weights=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="passes over the maps (default 3)")
    parser.add_argument("--maps", type=int, default=8, help="maps per layer (default 8)")
    parser.add_argument("--only", default=None, help="only layers whose 'model/layer' contains this text")
    args = parser.parse_args()

    import numpy as np

    from inspector.decompose import decompose, prepare_decomposition
    from inspector.filters import output_map_count
    from inspector.loader import open_model

    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32) * 2.0 - 1.0
    models: dict[str, Any] = {}
    all_ours: list[float] = []
    all_base: list[float] = []
    for model_name, layer, fold_bn in CASES:
        if args.only and args.only not in f"{model_name}/{layer}":
            continue
        if model_name not in models:
            models[model_name] = _model(model_name)
        model = models[model_name]
        index = open_model(model)
        count = output_map_count(index.layer(layer))
        maps = list(range(0, count, max(1, count // args.maps)))[: args.maps]
        decompose(index, model, x, layer, maps[0], fold_bn=fold_bn)  # warm-up (tracing, first calls)
        t0 = time.perf_counter()
        run = prepare_decomposition(index, model, x, layer, fold_bn=fold_bn)
        prepare_s = time.perf_counter() - t0
        run.decompose(maps[0])
        base: list[float] = []
        ours: list[float] = []
        worst = 0.0
        for _ in range(args.runs):
            for j in maps:  # alternate, so load from other processes hits both alike
                t0 = time.perf_counter()
                decompose(index, model, x, layer, j, fold_bn=fold_bn)
                base.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                dec = run.decompose(j)
                ours.append(time.perf_counter() - t0)
                worst = max(worst, dec.max_rel_error)
        all_ours += ours
        all_base += base
        print(json.dumps({
            "model": model_name, "layer": layer, "fold_bn": fold_bn, "maps": len(maps), "runs": args.runs,
            "input": list(run.inputs_cf.shape), "output": list(run.reference.shape),
            "prepare_s": round(prepare_s, 4), "decompose_s": round(statistics.median(base), 4),
            "layerrun_decompose_s": round(statistics.median(ours), 4),
            "speedup": round(statistics.median(base) / statistics.median(ours), 1),
            "max_rel_error": float(f"{worst:.3g}"),
        }))
    if all_ours:
        print(json.dumps({"ours_s": round(statistics.median(all_ours), 4),
                          "baseline_s": round(statistics.median(all_base), 4)}))


if __name__ == "__main__":
    main()
