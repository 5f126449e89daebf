"""Generate the large benchmark models into bench/models/ (gitignored).

    .venv/bin/python bench/make_models.py                  # ResNet50 and VGG16, every format
    .venv/bin/python bench/make_models.py resnet50         # one architecture
    .venv/bin/python bench/make_models.py --formats keras h5

The models have random weights (``weights=None``): nothing is downloaded, and file layout and size,
which is what the benchmark measures, are the same as with trained weights. Files that already exist
are skipped, so an interrupted run can simply be restarted.

Disk use: ResNet50 about 0.5 GB over its four formats, VGG16 about 2.8 GB (the SavedModel holds every
variable twice, docs/formats.md §4.4).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS_DIR = Path(__file__).resolve().parent / "models"

#: architecture name → Python expression that builds it (also used by bench/cases.py for the
#: weights-only baseline, which has to rebuild the architecture before ``load_weights``).
ARCHITECTURES: dict[str, str] = {
    "resnet50": "keras.applications.ResNet50(weights=None)",
    "vgg16": "keras.applications.VGG16(weights=None)",
}

#: format name → file name pattern inside MODELS_DIR.
FORMATS: dict[str, str] = {
    "keras": "{name}.keras",
    "h5": "{name}.h5",
    "weights.h5": "{name}.weights.h5",
    "savedmodel": "{name}_savedmodel",
}


def model_path(name: str, fmt: str) -> Path:
    return MODELS_DIR / FORMATS[fmt].format(name=name)


def _writer(fmt: str) -> Callable[[Any, Path], None]:
    def save(model: Any, path: Path) -> None:
        model.save(path)  # .keras zip, or the legacy HDF5 writer for a .h5 suffix

    def save_weights(model: Any, path: Path) -> None:
        model.save_weights(path)

    def export(model: Any, path: Path) -> None:
        model.export(str(path), verbose=False)

    return {"keras": save, "h5": save, "weights.h5": save_weights, "savedmodel": export}[fmt]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def make(name: str, formats: list[str]) -> None:
    missing = [fmt for fmt in formats if not model_path(name, fmt).exists()]
    for fmt in formats:
        if fmt not in missing:
            print(f"skip  {model_path(name, fmt).name} (exists)")
    if not missing:
        return

    import keras

    # Fixed seed so regenerated files hold the same values (sizes never depend on it).
    keras.utils.set_random_seed(0)
    model = eval(ARCHITECTURES[name], {"keras": keras})  # trusted constant from ARCHITECTURES
    write_files(model, [(fmt, model_path(name, fmt)) for fmt in missing])


def write_files(model: Any, targets: list[tuple[str, Path]]) -> None:
    """Save ``model`` as each ``(format, path)`` (bench/deep_index.py uses this too)."""
    for fmt, path in targets:
        # Write next to the final name and rename at the end, so a killed run never leaves a
        # half-written file that the next run would mistake for a finished one.
        partial = path.with_name("partial-" + path.name)
        if partial.is_dir():
            shutil.rmtree(partial)
        elif partial.exists():
            partial.unlink()
        start = time.perf_counter()
        _writer(fmt)(model, partial)
        partial.rename(path)
        print(f"wrote {path.name}: {_size(path) / 2**20:.1f} MiB in {time.perf_counter() - start:.1f} s",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate benchmark models (random weights) in bench/models/.")
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"architectures to generate, from {', '.join(ARCHITECTURES)} (default: all)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), metavar="FMT",
                        help=f"formats to write, from {', '.join(FORMATS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(ARCHITECTURES)) + sorted(set(args.formats) - set(FORMATS))
    if unknown:
        parser.error(f"unknown model or format: {', '.join(unknown)}")

    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    for name in args.models or list(ARCHITECTURES):
        make(name, args.formats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
