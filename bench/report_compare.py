"""Benchmark of ``inspector report`` and ``inspector compare`` against what a user would do with Keras.

    .venv/bin/python bench/report_compare.py              # both cases, 1 run per side
    .venv/bin/python bench/report_compare.py --repeat 3

* report: ``inspector report resnet50.keras --layers '*_conv'`` (all 53 conv layers, no input) to HTML,
  against loading the model with Keras and drawing, per conv layer, the same number of kernels
  (the 8 strongest maps × 16 input channels) into one PDF with matplotlib.
* compare: ``inspector compare vgg16.keras vgg16_b.keras --json`` (two different random inits), against
  ``keras.models.load_model`` of both and a numpy diff of ``get_weights()`` (per-layer relative change and
  per-map cosine of every kernel).

Each side is its own process; wall time and the process's own peak RSS come from ``os.wait4``
(:func:`run.run_once`). Sides alternate; medians are reported; ratios are baseline / ours.
The second VGG16 (``bench/models/vgg16_b.keras``, seed 1) is made on first use.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import run_once  # noqa: E402  (bench/ is not a package)

MODELS = HERE / "models"
RESNET = MODELS / "resnet50.keras"
VGG_A = MODELS / "vgg16.keras"
VGG_B = MODELS / "vgg16_b.keras"

REPORT_BASELINE = r"""
import sys, numpy as np, keras
from matplotlib.figure import Figure
from matplotlib.backends.backend_pdf import PdfPages
model = keras.models.load_model(sys.argv[1], compile=False)
with PdfPages(sys.argv[2]) as pdf:
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        k = layer.get_weights()[0]
        norms = np.linalg.norm(k.reshape(-1, k.shape[-1]), axis=0)
        maps = np.argsort(-norms)[:8]
        fig = Figure(figsize=(10, 6))
        for r, j in enumerate(maps):
            for c in range(min(16, k.shape[2])):
                ax = fig.add_subplot(8, 16, r * 16 + c + 1)
                ax.imshow(k[:, :, c, j], cmap="RdBu_r")
                ax.set_axis_off()
        fig.suptitle(f"{layer.name}: dead {int((norms < 1e-3 * np.median(norms)).sum())}")
        pdf.savefig(fig)
"""

COMPARE_BASELINE = r"""
import sys, numpy as np, keras
a = keras.models.load_model(sys.argv[1], compile=False)
b = keras.models.load_model(sys.argv[2], compile=False)
for la, lb in zip(a.layers, b.layers):
    wa, wb = la.get_weights(), lb.get_weights()
    if not wa:
        continue
    ka, kb = wa[0].astype(np.float64), wb[0].astype(np.float64)
    rel = np.linalg.norm(kb - ka) / np.linalg.norm(ka)
    fa, fb = ka.reshape(-1, ka.shape[-1]), kb.reshape(-1, kb.shape[-1])
    cos = (fa * fb).sum(0) / (np.linalg.norm(fa, axis=0) * np.linalg.norm(fb, axis=0))
    print(la.name, rel, cos.min())
"""

MAKE_B = r"""
import sys, keras
keras.utils.set_random_seed(1)
keras.applications.VGG16(weights=None).save(sys.argv[1])
"""


def _inspector(*args: str) -> list[str]:
    return [sys.executable, "-m", "inspector", *args]


def _code(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)
    missing = [p for p in (RESNET, VGG_A) if not p.exists()]
    if missing:
        print(f"missing {', '.join(map(str, missing))}: run bench/make_models.py first", file=sys.stderr)
        return 2
    if not VGG_B.exists():
        run = run_once(_code(MAKE_B, str(VGG_B)), timeout=args.timeout)
        if not run.ok:
            print(f"cannot make {VGG_B}: {run.error}", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("report resnet50 (53 conv layers, HTML)",
             _inspector("report", str(RESNET), "--layers", "*_conv", "-o", f"{tmp}/r.html", "--no-progress"),
             _code(REPORT_BASELINE, str(RESNET), f"{tmp}/base.pdf")),
            ("compare vgg16 vs vgg16 (2 random inits)",
             _inspector("compare", str(VGG_A), str(VGG_B), "--json", f"{tmp}/c.json", "--no-progress"),
             _code(COMPARE_BASELINE, str(VGG_A), str(VGG_B))),
        ]
        rows = []
        for name, ours, base in cases:
            times: dict[str, list[float]] = {"ours": [], "base": []}
            mems: dict[str, list[float]] = {"ours": [], "base": []}
            for _ in range(args.repeat):
                for side, cmd in (("ours", ours), ("base", base)):
                    run = run_once(cmd, timeout=args.timeout)
                    if not run.ok:
                        print(f"FAIL {name} {side}: {run.error}", file=sys.stderr)
                        continue
                    times[side].append(run.wall_s)
                    mems[side].append(run.maxrss_mib)
            if not times["ours"] or not times["base"]:
                rows.append(f"| {name} | failed | | | | | |")
                continue
            t_o, t_b = statistics.median(times["ours"]), statistics.median(times["base"])
            m_o, m_b = statistics.median(mems["ours"]), statistics.median(mems["base"])
            rows.append(f"| {name} | {t_o:.1f} s | {t_b:.1f} s | {t_b / t_o:.1f}× | {m_o:.0f} MiB | {m_b:.0f} MiB "
                        f"| {m_b / m_o:.1f}× |")
    print("| case | ours time | Keras time | speed | ours peak RSS | Keras peak RSS | memory |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
