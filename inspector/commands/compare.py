"""``inspector compare A B [--json FILE] [-o FILE] [--input DIR]``: which layers and filters changed.

Prints one row per layer (status, relative change of the kernel, lowest and median per-map cosine,
permuted / sign-flipped maps after matching, CKA with ``--input``). ``--json FILE`` (``-`` for stdout)
writes every number (:meth:`inspector.compare.Comparison.to_dict`); ``-o`` the per-layer drift overview
and, for the most-changed layers, their most-changed maps (A, B, B − A): in one PDF, or as
``stem-<layer>.png`` files beside the overview.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._argtypes import positive_int


def register(parser: argparse.ArgumentParser) -> None:
    from ..compare import DEFAULT_TOLERANCE, Match
    from ..inputs import FIT_CHOICES, PREPROCESS_CHOICES

    parser.add_argument("a", help="model A (any format: .keras, .h5, .weights.h5, SavedModel directory)")
    parser.add_argument("b", help="model B, compared with A")
    parser.add_argument("--json", metavar="FILE", help="write every number as one JSON object ('-': stdout)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="figure: drift overview (+ most-changed maps); .pdf gets every figure as a page")
    parser.add_argument("--input", metavar="DIR", help="folder of images / .npy inputs: linear CKA of each "
                                                       "matched layer's activations (runs both models)")
    parser.add_argument("--fold-bn", action="store_true",
                        help="fold the BatchNormalization after each layer into both kernels first")
    parser.add_argument("--match", default="auto", choices=[str(m) for m in Match],
                        help="permutation-aware map matching: auto (layers where some map's cosine < 0.9), "
                             "always, never")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="X",
                        help=f"a weight is unchanged when ‖B − A‖ <= X · ‖A‖ (default {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--top-layers", type=positive_int, default=3, metavar="N",
                        help="most-changed layers drawn map by map in the figure (default 3)")
    parser.add_argument("--top-maps", type=positive_int, default=4, metavar="N",
                        help="most-changed maps drawn per layer (default 4)")
    parser.add_argument("--max-inputs", type=positive_int, default=64, metavar="N",
                        help="inputs read from --input (default 64)")
    parser.add_argument("--preprocess", default="auto", choices=PREPROCESS_CHOICES,
                        help="input preprocessing for --input (as in inspector activations)")
    parser.add_argument("--fit", default="stretch", choices=FIT_CHOICES, help="image fit for --input")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow running code stored in the model files (Lambda layers); only for trusted files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "inf" if value > 0 else "nan"
    return f"{value:.{digits}g}"


def format_table(result: object) -> str:
    from ..compare import Comparison
    from ..formatting import table_lines

    assert isinstance(result, Comparison)
    headers = ["Layer", "Status", "Rel. change", "Min cos", "Median cos", "Matched maps (perm/flip)", "CKA"]
    rows = []
    for e in result.layers:
        cos = sorted(m.cosine for m in e.maps)
        name = e.path if e.path_b is None else f"{e.path} ~ {e.path_b}"
        matched = ("-" if e.matching is None
                   else f"{e.matched} of {len(e.matching)} ({e.permuted}/{e.flipped})")
        rows.append([name, str(e.status), _num(e.relative_change), _num(cos[0]) if cos else "-",
                     _num(cos[len(cos) // 2]) if cos else "-", matched, _num(e.cka)])
    title = f"A: {result.a} ({result.format_a})   B: {result.b} ({result.format_b})"
    out = table_lines(headers, rows, right=range(2, 7), title=title)
    counts = ", ".join(f"{v} {k}" for k, v in result.counts().items() if v)
    out.append(f"{counts}. Same: every weight within ‖B − A‖ <= {result.tolerance:g} · ‖A‖"
               + ("; kernels BN-folded" if result.fold_bn else "") + ".")
    if result.inputs:
        out.append(f"CKA: linear CKA over {len(result.inputs)} input file(s) of the --input folder.")
    for e in result.layers:
        out += [f"note: {e.path}: {n}" for n in e.notes]
    out += [f"note: {n}" for n in result.notes]
    return "\n".join(out)


def write_figures(a: object, b: object, result: object, out: Path, *, top_layers: int, top_maps: int) -> list[Path]:
    """The drift overview and the most-changed layers' maps, to ``out`` (PDF pages, or one file each)."""
    from ..compare import Comparison, iter_changed
    from ..export import save_figure, save_pdf_pages
    from ..outputs import FileFormat, figure_format, per_layer_path
    from ..records import ModelIndex
    from ..render.compare import changed_maps_figure, drift_figure

    assert isinstance(result, Comparison) and isinstance(a, ModelIndex) and isinstance(b, ModelIndex)
    layers = list(iter_changed(result))[:top_layers]
    if figure_format(out) is FileFormat.PDF:
        def pages() -> Iterator[Any]:
            yield drift_figure(result)
            for entry in layers:
                yield changed_maps_figure(a, b, entry, n_maps=top_maps)

        save_pdf_pages(pages(), out)
        return [out]
    written = [save_figure(drift_figure(result), out)]
    for entry in layers:
        written.append(save_figure(changed_maps_figure(a, b, entry, n_maps=top_maps),
                                   per_layer_path(out, f"maps-{entry.path}", True)))
    return written


def run(args: argparse.Namespace) -> int:
    from ..compare import compare_models
    from ..loader import open_model
    from ..outputs import figure_format, prepare_file, writing
    from ..serialize import jsonable
    from ._progress import text_progress_bar

    out = None
    if args.output:
        figure_format(args.output, option="the -o figure")
        out = prepare_file(args.output, option="the -o figure")
    json_out = None
    if args.json and args.json != "-":
        json_out = prepare_file(args.json, option="the --json file")
    progress = None if args.no_progress or args.json == "-" else text_progress_bar(sys.stderr)
    with open_model(args.a) as a, open_model(args.b) as b:
        result = compare_models(a, b, tolerance=args.tolerance, fold_bn=args.fold_bn, match=args.match,
                                inputs=args.input, preprocess=args.preprocess, fit=args.fit, unsafe=args.unsafe,
                                max_inputs=args.max_inputs, progress=progress)
        result.a, result.b = str(args.a), str(args.b)
        written = []
        if out is not None:
            written = write_figures(a, b, result, out, top_layers=args.top_layers, top_maps=args.top_maps)
    payload = json.dumps(jsonable(result.to_dict()), allow_nan=False)
    if args.json == "-":
        sys.stdout.write(payload + "\n")
        return 0
    if json_out is not None:
        with writing(json_out, option="the --json file"):
            json_out.write_text(payload + "\n", encoding="utf-8")
        written.append(json_out)
    print(format_table(result))
    for path in written:
        print(f"wrote {path}")
    return 0
