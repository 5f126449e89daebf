"""The benchmark registry, and helpers for writing new cases.

Two kinds of rows:

* :class:`Case`: two whole processes, ours and the baseline. ``bench/run.py`` runs each one
  ``--repeat`` times, alternating, and records wall time and that child's peak RSS.
* :class:`InProcessCase`: one child process (``python bench/inproc_<name>.py``) that times two
  functions in the same process and prints one JSON line ``{"ours_s": ..., "baseline_s": ...}``;
  write it with :func:`compare_in_process`. Use this when process start-up and model loading would
  drown what is being compared (e.g. activation capture vs a plain ``model(x)``). Memory is not
  reported for these rows: both functions share one process.

To add a row, append to :data:`CASES` (or extend one of the ``*_cases`` builders below). A case whose
``requires`` files are missing is reported as skipped, not failed.

Example in-process script (``bench/inproc_example.py``)::

    from cases import compare_in_process

    def main() -> None:
        model, x = ...                          # setup: not timed
        compare_in_process(ours=lambda: ours_fn(model, x), baseline=lambda: model(x))

    if __name__ == "__main__":
        main()
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
MODELS = BENCH / "models"

# make_models.py is the single source of the architectures and file names; it sits next to this file,
# which is on sys.path only when a bench/ script is the entry point.
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
from make_models import ARCHITECTURES, model_path  # noqa: E402

#: Environment variable through which run.py passes ``--repeat`` to in-process scripts.
REPEAT_ENV = "BENCH_REPEAT"


@dataclass(frozen=True)
class Case:
    """Two commands doing the same job: ours and the baseline. Each is a full argv list."""

    name: str
    ours: Sequence[str]
    baseline: Sequence[str]
    requires: tuple[Path, ...] = ()  # inputs that must exist; otherwise the row is skipped
    description: str = ""


@dataclass(frozen=True)
class InProcessCase:
    """One command that times both sides itself and prints ``{"ours_s": …, "baseline_s": …}``."""

    name: str
    command: Sequence[str]
    requires: tuple[Path, ...] = ()
    description: str = ""
    # If the script takes its repetition count as an option (e.g. "--runs"), run.py appends it with
    # its --repeat value; scripts built on compare_in_process read it from $BENCH_REPEAT instead.
    repeat_flag: str | None = None


AnyCase = Case | InProcessCase


# -- command builders -----------------------------------------------------------------------------


def python(*args: str) -> list[str]:
    """Run with this interpreter (the project's virtualenv when run.py is run as documented)."""
    return [sys.executable, *args]


def python_code(code: str, *args: str) -> list[str]:
    """``python -c CODE ARGS…``; the code sees the arguments as ``sys.argv[1:]``."""
    return [sys.executable, "-c", code, *args]


def inspector(*args: str) -> list[str]:
    """Our console command: the installed ``inspector`` script next to the interpreter if there is
    one, else ``python -m inspector`` (run.py starts children in the repository root, so the
    package imports from the working tree)."""
    script = Path(sys.executable).with_name("inspector")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "inspector", *args]


def inproc_case(name: str, *args: str, requires: tuple[Path, ...] = (), description: str = "",
                repeat_flag: str | None = None) -> InProcessCase:
    """A row run by ``bench/inproc_<name>.py ARGS…``; the row is called ``name`` plus the args."""
    script = BENCH / f"inproc_{name}.py"
    label = " ".join([name, *args])
    return InProcessCase(label, python(str(script), *args), (script, *requires), description, repeat_flag)


# -- in-process timing (for inproc_*.py scripts) ----------------------------------------------------


def compare_in_process(ours: Callable[[], object], baseline: Callable[[], object], *,
                       repeat: int | None = None, warmup: int = 1, **extra: Any) -> dict[str, Any]:
    """Time two zero-argument callables in this process and print the JSON line run.py expects.

    Each is first called ``warmup`` times untimed (graph tracing, caches, lazy imports), then the two
    alternate ``repeat`` times so that load from other processes hits both sides alike. ``repeat``
    defaults to run.py's ``--repeat``. The medians are the headline numbers; bests are kept too.
    ``extra`` (JSON-ready) is passed through to the results file.
    """
    repeat = repeat or int(os.environ.get(REPEAT_ENV, "3"))
    for _ in range(warmup):
        ours()
        baseline()
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    for _ in range(repeat):
        for side, fn in (("ours", ours), ("baseline", baseline)):
            start = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - start)
    result = {
        "ours_s": statistics.median(times["ours"]),
        "baseline_s": statistics.median(times["baseline"]),
        "ours_best_s": min(times["ours"]),
        "baseline_best_s": min(times["baseline"]),
        "repeat": repeat,
        **extra,
    }
    # One line, last on stdout, so run.py can find it under any chatter the script printed first.
    print(json.dumps(result), flush=True)
    return result


# -- the registry ---------------------------------------------------------------------------------

# Baselines: what a user would do with Keras alone to get a per-layer overview of the file.
_LOAD_SUMMARY = "import sys, keras; m = keras.models.load_model(sys.argv[1], compile=False); m.summary()"
_WEIGHTS_SUMMARY = "import sys, keras; m = {build}; m.load_weights(sys.argv[1]); m.summary()"
# A Keras 3 export has no Keras config (docs/formats.md §4.5), so the closest Keras-only overview is
# loading it as a TFSMLayer and listing its variables.
_SAVEDMODEL_SUMMARY = (
    "import sys, keras; layer = keras.layers.TFSMLayer(sys.argv[1], call_endpoint='serve')\n"
    "for v in layer.weights: print(v.path, tuple(v.shape), v.dtype)\n"
    "print('total', sum(int(v.numpy().size) for v in layer.weights))"
)


def summary_cases(arch: str) -> list[Case]:
    """``inspector summary FILE`` vs the Keras-only equivalent, for each saved format of ``arch``."""
    build = ARCHITECTURES[arch]
    cases = []
    for fmt, baseline_code in (
        ("keras", _LOAD_SUMMARY),
        ("h5", _LOAD_SUMMARY),
        ("weights.h5", _WEIGHTS_SUMMARY.format(build=build)),
        ("savedmodel", _SAVEDMODEL_SUMMARY),
    ):
        path = model_path(arch, fmt)
        cases.append(Case(
            name=f"summary {arch} {fmt}",
            ours=inspector("summary", str(path)),
            baseline=python_code(baseline_code, str(path)),
            requires=(path,),
            description=f"inspector summary vs the Keras-only equivalent, {arch} {fmt}",
        ))
    return cases


_LOAD_SLICE = (
    "import sys, keras; m = keras.models.load_model(sys.argv[1], compile=False)\n"
    "k = m.get_layer(sys.argv[2]).kernel.numpy()[..., int(sys.argv[3])]\n"
    "print(sys.argv[2], k.shape, float(abs(k).sum()))"
)
# What a user computes by hand for weight statistics: every weight's min/max/mean/std/zeros and a histogram.
_LOAD_STATS = (
    "import sys, keras, numpy as np; m = keras.models.load_model(sys.argv[1], compile=False)\n"
    "for w in m.weights:\n"
    "    a = w.numpy(); h = np.histogram(a, 64)\n"
    "    print(w.path, a.min(), a.max(), a.mean(), a.std(), (a == 0).mean(), int(h[0].sum()))"
)


def filters_case(arch: str, layer: str, j: int) -> Case:
    """``inspector filters`` for one map vs ``load_model`` + slicing the kernel, fresh processes."""
    path = model_path(arch, "keras")
    return Case(
        name=f"filters {arch} {layer}:{j}",
        ours=inspector("filters", str(path), layer, str(j)),
        baseline=python_code(_LOAD_SLICE, str(path), layer, str(j)),
        requires=(path,),
        description=f"the kernels feeding map {j} of {layer}: inspector filters vs load_model + slice",
    )


def stats_case(arch: str) -> Case:
    """``inspector stats`` on every layer vs ``load_model`` + numpy statistics of every weight."""
    path = model_path(arch, "keras")
    return Case(
        name=f"stats {arch} keras",
        ours=inspector("stats", str(path), "--json", "--no-duplicates"),
        baseline=python_code(_LOAD_STATS, str(path)),
        requires=(path,),
        description=f"per-layer weight statistics of {arch}: inspector stats vs load_model + numpy",
    )


CASES: list[AnyCase] = [
    *summary_cases("resnet50"),
    *summary_cases("vgg16"),
    filters_case("vgg16", "block5_conv3", 0),
    stats_case("vgg16"),
    # bench/inproc_activations.py builds ResNet50 in memory, so it needs no bench/models file.
    inproc_case("activations", description="capture every ResNet50 layer output vs a plain model(x), one process",
                repeat_flag="--runs"),
]
