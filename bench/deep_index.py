"""Index speed on very deep models: ``inspector summary`` against the one-walk floor and ``load_model``.

    .venv/bin/python bench/deep_index.py --make-only          # generate the models (cached in bench/models/)
    .venv/bin/python bench/deep_index.py                      # every depth and format, writes the table
    .venv/bin/python bench/deep_index.py --depths 250 1000 --repeat 5 --no-keras

Models: a Functional chain of ``depth`` Conv2D layers (3x3, 8 channels) with an ``Add`` after every second
conv (the residual pattern of deep CNNs): ``depth=2500`` gives 2,500 convs, 1,250 Adds and 3,751 layers.
Written as ``.keras``, legacy ``.h5``, ``.weights.h5`` and a SavedModel (``model.export``), random weights.

Per model, in a fresh process per case and alternating the sides, median of ``--repeat`` runs:

* ``index``: ``open_model`` plus what ``inspector summary`` touches (every layer's shapes, parameter
  counts, the totals), then close and a full ``gc.collect()`` (``open_model`` pauses the cyclic collector;
  the collection it defers is charged here);
* ``floor``: one h5py ``visititems`` over the HDF5 image reading every dataset's shape, dtype and file offset
  (for ``.keras`` the walk goes over the inner ``model.weights.h5`` through the same zip window the reader
  uses; for a SavedModel: decoding every ``variables.index`` entry and the checkpoint's object graph, the
  minimum that names every variable with its shape and dtype, in this package's own protobuf decoder);
* ``config``: reading and ``json.loads`` of the model config (``.keras``, ``.h5``), which every index of
  a full model does and the walk does not; reported as ``index / (floor + config)`` too;
* ``cli``: wall time of the ``inspector summary`` process (interpreter start-up included), median of runs;
* ``load_model``: ``keras.models.load_model`` (``.keras``/``.h5``), building the architecture and
  ``load_weights`` (``.weights.h5``) or ``keras.layers.TFSMLayer`` (SavedModel), in a fresh process, once;
  skipped above ``--keras-limit`` layers when asked (``--no-keras`` skips it entirely).

The table goes to ``bench/results/deep_index.md`` (ratios: ``index / floor``, ``load_model / index``).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "bench" / "models"
RESULTS = ROOT / "bench" / "results" / "deep_index.md"
DEPTHS = (250, 1000, 2500)
FORMATS: dict[str, str] = {
    "keras": "deep{n}.keras",
    "h5": "deep{n}.h5",
    "weights.h5": "deep{n}.weights.h5",
    "savedmodel": "deep{n}_savedmodel",
}
CHANNELS = 8
BUILD = f"""
def build(depth):
    inputs = keras.Input((8, 8, {CHANNELS}), name="input")
    x = skip = inputs
    for i in range(depth):
        x = keras.layers.Conv2D({CHANNELS}, 3, padding="same", name=f"conv{{i}}")(x)
        if i % 2 == 1:
            x = keras.layers.Add(name=f"add{{i // 2}}")([x, skip])
            skip = x
    return keras.Model(inputs, x, name=f"deep{{depth}}")
"""


def model_path(depth: int, fmt: str) -> Path:
    return MODELS_DIR / FORMATS[fmt].format(n=depth)


# -- generation -------------------------------------------------------------------------------------


def make(depth: int, formats: list[str]) -> None:
    missing = [fmt for fmt in formats if not model_path(depth, fmt).exists()]
    if not missing:
        return
    import keras

    sys.setrecursionlimit(100_000)  # Keras maps a Functional graph recursively: one level per layer
    keras.utils.set_random_seed(0)
    scope: dict[str, Any] = {"keras": keras}
    exec(BUILD, scope)  # trusted constant above
    start = time.perf_counter()
    model = scope["build"](depth)
    print(f"built deep{depth}: {len(model.layers)} layers in {time.perf_counter() - start:.1f} s", flush=True)
    from make_models import write_files  # bench/ is on sys.path when a bench script runs

    write_files(model, [(fmt, model_path(depth, fmt)) for fmt in missing])


# -- the sides --------------------------------------------------------------------------------------


def summary_touch(path: Path) -> int:
    """What ``inspector summary`` does with an index: every layer's row, the totals."""
    from inspector.commands.summary import format_table
    from inspector.loader import open_model

    with open_model(path) as index:
        return len(format_table(index))


def index_side(path: Path) -> int:
    """The timed index side: open + summary + close, then a full garbage collection, so that the
    collection ``open_model`` defers (it pauses the cyclic collector while indexing) is charged here and
    not to whatever runs next."""
    out = summary_touch(path)
    gc.collect()
    return out


def config_parse(path: Path, fmt: str) -> int:
    """Reading and ``json.loads`` of the model config, which any index of a full model must do and the
    one-walk floor does not (``.keras``: ``config.json``; ``.h5``: the ``model_config`` attribute)."""
    if fmt == "keras":
        with zipfile.ZipFile(path) as zf:
            return len(json.loads(zf.read("config.json")))
    if fmt == "h5":
        import h5py

        with h5py.File(path, "r") as h5:
            return len(json.loads(h5.attrs["model_config"]))
    return 0


def _walk_h5(h5: Any) -> int:
    import h5py

    found = [0]

    def visit(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            _ = (obj.shape, obj.dtype, obj.id.get_offset())
            found[0] += 1

    h5.visititems(visit)
    return found[0]


def floor_walk(path: Path, fmt: str) -> int:
    """The one-walk floor: every dataset's shape, dtype and offset, read once."""
    import h5py

    if fmt == "savedmodel":
        # The least any reader must decode to name every variable with its shape and dtype: the
        # checkpoint index entries (key, dtype, shape) and the checkpoint's object graph (which object,
        # i.e. which layer, each key belongs to). saved_model.pb is not needed for that.
        from inspector.readers.tensorbundle import TensorBundle

        bundle = TensorBundle(str(path / "variables" / "variables"))
        graph = bundle.object_graph() or []
        return len(bundle.entries) + len(graph)
    if fmt == "keras":
        from inspector.readers.zipwindow import ZipWindow, member_data_offset

        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("model.weights.h5")
        window: io.RawIOBase = ZipWindow(path, member_data_offset(path, info), info.file_size)
        with window, h5py.File(window, "r") as h5:
            return _walk_h5(h5)
    with h5py.File(path, "r") as h5:
        return _walk_h5(h5)


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def alternate(a: Callable[[], object], b: Callable[[], object], repeat: int) -> tuple[float, float]:
    a()
    b()  # warm the page cache and imports for both sides
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(repeat):
        ta += timed(a, 1)
        tb += timed(b, 1)
    return statistics.median(ta), statistics.median(tb)


def cli_time(path: Path, repeat: int) -> float:
    exe = Path(sys.executable).with_name("inspector")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "inspector"]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([*argv, "summary", str(path)], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


KERAS_CODE = {
    "keras": "m = keras.models.load_model(sys.argv[1], compile=False); n = len(m.weights)",
    "h5": "m = keras.models.load_model(sys.argv[1], compile=False); n = len(m.weights)",
    "weights.h5": BUILD + "m = build(int(sys.argv[2])); m.load_weights(sys.argv[1]); n = len(m.weights)",
    "savedmodel": "m = keras.layers.TFSMLayer(sys.argv[1], call_endpoint='serve'); n = len(m.weights)",
}


def keras_time(path: Path, fmt: str, depth: int, timeout: float) -> float | None:
    """Seconds ``load_model`` (or its format's equivalent) takes after imports, in a fresh process."""
    code = ("import sys, time, os; sys.setrecursionlimit(100_000); os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2'); "
            "import keras; "
            "t = time.perf_counter()\n" + KERAS_CODE[fmt] + "\nprint(time.perf_counter() - t)")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path), str(depth)], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        print(f"load_model failed on {path.name}: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return float(done.stdout.strip().splitlines()[-1])


# -- main -------------------------------------------------------------------------------------------


def measure_case(depth: int, fmt: str, repeat: int) -> dict[str, Any]:
    """The in-process sides of one (depth, format) case: index and floor alternating, then the config parse."""
    path = model_path(depth, fmt)
    ours, floor = alternate(lambda: index_side(path), lambda: floor_walk(path, fmt), repeat)
    config_s = statistics.median(timed(lambda: config_parse(path, fmt), repeat)) if fmt in ("keras", "h5") else None
    from inspector.loader import open_model

    with open_model(path) as index:
        n_layers, n_tensors = len(index.layers), sum(len(x.weights) for x in index.layers)
    return {"layers": n_layers, "tensors": n_tensors, "index_s": ours, "floor_s": floor, "config_s": config_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", nargs="+", type=int, default=list(DEPTHS))
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--cli-repeat", type=int, default=3)
    parser.add_argument("--make-only", action="store_true", help="only generate the models")
    parser.add_argument("--no-keras", action="store_true", help="skip the load_model column")
    parser.add_argument("--keras-timeout", type=float, default=120.0,
                        help="give up on load_model after this many seconds (reported as '> N s')")
    parser.add_argument("--reuse-keras", type=Path, default=None,
                        help="with --no-keras: take the load_model column from the JSON rows an earlier run printed")
    parser.add_argument("--case", nargs=2, metavar=("DEPTH", "FORMAT"), default=None,
                        help=argparse.SUPPRESS)  # internal: one case's in-process sides, printed as JSON
    args = parser.parse_args(argv)
    reused: dict[tuple[int, str], float] = {}
    if args.reuse_keras is not None:
        for line in args.reuse_keras.read_text().splitlines():
            if line.startswith("{") and '"keras_s"' in line:
                old = json.loads(line)
                if old.get("keras_s") is not None:
                    reused[old["depth"], old["format"]] = old["keras_s"]
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    for depth in args.depths:
        make(depth, args.formats)
    if args.make_only:
        return 0
    if args.case is not None:
        print(json.dumps(measure_case(int(args.case[0]), args.case[1], args.repeat)))
        return 0
    rows = []
    for depth in args.depths:
        for fmt in args.formats:
            path = model_path(depth, fmt)
            # Each case in a fresh process, as a user's `inspector summary` runs: measured in one long-lived
            # process, whichever format came second paid for the heap the first one left (10-15 % slower).
            done = subprocess.run([sys.executable, __file__, "--case", str(depth), fmt, "--repeat", str(args.repeat)],
                                  check=True, capture_output=True, text=True, cwd=ROOT)
            case = json.loads(done.stdout.strip().splitlines()[-1])
            cli = cli_time(path, args.cli_repeat)
            keras_s = None if args.no_keras else keras_time(path, fmt, depth, args.keras_timeout)
            if args.no_keras and (depth, fmt) in reused:
                keras_s = reused[depth, fmt]
            row = {"depth": depth, "format": fmt, **case, "cli_s": cli, "keras_s": keras_s,
                   "keras_skipped": args.no_keras and keras_s is None}
            rows.append(row)
            print(json.dumps(row), flush=True)
    write_table(rows, args)
    return 0


def write_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    lines = [
        "# Deep-model index speed (bench/deep_index.py)",
        "",
        f"Median of {args.repeat} runs per side (alternating, one fresh process per case), "
        f"CLI median of {args.cli_repeat}; "
        f"`load_model` once in a fresh process, time after imports. Python {sys.version.split()[0]}. "
        "The index side ends with a full `gc.collect()` (the collection `open_model` defers is charged to it). "
        "SavedModel floor: the checkpoint index entries + the checkpoint object graph decoded."
        + (" `load_model` column taken from an earlier run on the same models (`--reuse-keras`)."
           if args.no_keras and args.reuse_keras is not None else ""),
        "",
        "| convs | format | layers | tensors | index (open + summary) | one-walk floor | index / floor "
        "| floor + config json.loads | index / (floor + config) | CLI wall | load_model | load_model / index |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["keras_s"] is not None:
            keras_text, keras_ratio = f"{r['keras_s']:.2f} s", f"{r['keras_s'] / r['index_s']:.0f}x"
        elif r["keras_skipped"]:
            keras_text, keras_ratio = "not run", ""
        else:
            keras_text, keras_ratio = f"> {args.keras_timeout:.0f} s or failed", ""
        if r.get("config_s") is not None:
            both = r["floor_s"] + r["config_s"]
            with_config = f"{both * 1000:.0f} ms | {r['index_s'] / both:.2f}"
        else:
            with_config = "(no config) | "
        lines.append(
            f"| {r['depth']:,} | {r['format']} | {r['layers']:,} | {r['tensors']:,} | {r['index_s'] * 1000:.0f} ms "
            f"| {r['floor_s'] * 1000:.0f} ms | {r['index_s'] / r['floor_s']:.2f} | {with_config} "
            f"| {r['cli_s']:.2f} s "
            f"| {keras_text} | {keras_ratio} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
