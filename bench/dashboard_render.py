"""Benchmark: the dashboard's per-map render path on VGG16 ``block5_conv3`` (512 input channels).

Run: ``.venv/bin/python bench/dashboard_render.py [--maps 12] [--cap 64]``. Uses
``bench/models/vgg16.keras`` when ``bench/make_models.py`` made it, else saves
``keras.applications.VGG16(weights=None)`` (no download) to a temp folder first. Then it opens the
file with ``open_model`` and times :func:`inspector.dashboard.views.filter_view` (exactly what the
Filters page runs, uncached, when the output map changes: slice + figure + PNG bytes) for several
maps, after one warm-up. Prints one JSON object with median/max milliseconds; the budget is 300 ms.
The consumers panel (table + the next layer's kernels that read the map) is timed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BUDGET_MS = 300.0
LAYER = "block5_conv3"


def _model_path(tmp: Path) -> Path:
    prepared = Path(__file__).resolve().parent / "models" / "vgg16.keras"
    if prepared.exists():
        return prepared
    import keras  # only when the model has to be generated

    path = tmp / "vgg16.keras"
    keras.applications.VGG16(weights=None).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--maps", type=int, default=12, help="how many output maps to time")
    parser.add_argument("--cap", type=int, default=None, help="kernels per grid (default: the app's)")
    args = parser.parse_args()

    from inspector import open_model
    from inspector.dashboard import views
    from inspector.filters import filters_for_map

    cap = args.cap or views.DEFAULT_CAP
    with tempfile.TemporaryDirectory(prefix="inspector-bench-") as tmp:
        path = _model_path(Path(tmp))
        t0 = time.perf_counter()
        index = open_model(path)
        open_ms = (time.perf_counter() - t0) * 1e3
        n_maps = index.layer(LAYER).kernel.shape[-1]
        maps = [round(i * (n_maps - 1) / max(args.maps - 1, 1)) for i in range(args.maps)]
        views.filter_view(index, LAYER, n_maps // 3, cap=cap)  # warm-up: fonts, colormaps, code paths
        totals, slices, pngs, consumers = [], [], [], []
        for j in maps:
            t0 = time.perf_counter()
            view = views.filter_view(index, LAYER, j, cap=cap)
            totals.append((time.perf_counter() - t0) * 1e3)
            # The page also redraws who reads map j (here fc1 through pool + flatten: 4096 7×7 slices).
            t0 = time.perf_counter()
            rows, _ = views.consumer_rows(index, LAYER, j)
            for row in rows:
                fig = views.consumer_figure(index, LAYER, j, row.consumer, cap=cap)
                if fig is not None:
                    views.figure_bytes(fig)
            consumers.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            filters_for_map(index.layer(LAYER), j, index=index)
            slices.append((time.perf_counter() - t0) * 1e3)
            pngs.append(len(view.png))
        index.close()
    result = {
        "model": str(path) if "models" in str(path) else "VGG16(weights=None) in a temp dir",
        "layer": LAYER, "input_channels": int(view.filters.n_inputs), "kernels_drawn": int(view.n_shown),
        "cap": cap, "maps": maps, "open_ms": round(open_ms, 1),
        "median_ms": round(statistics.median(totals), 1), "max_ms": round(max(totals), 1),
        "slice_median_ms": round(statistics.median(slices), 2),
        "consumers_median_ms": round(statistics.median(consumers), 1),
        "consumers_max_ms": round(max(consumers), 1),
        "png_kb_median": round(statistics.median(pngs) / 1024, 1),
        "budget_ms": BUDGET_MS, "within_budget": max(totals) <= BUDGET_MS,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
