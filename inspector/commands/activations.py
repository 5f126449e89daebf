"""``inspector activations MODEL INPUT --layer L``: a layer's activation maps for one input.

``--npz`` keys: each captured layer's activations ``(N, *spatial, C)`` under its path (e.g. ``conv1``,
``inner/dense_1``) and the model input batch under ``__input__``. Also holds the argument handling
shared with ``inspector decompose`` (model + input loading, output paths checked up front).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SelectionError
from ..outputs import npz_path, per_layer_path, prepare_file, write_npz, writing

FIGURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
#: The ``--npz`` key of the model input. Layer paths are the other keys; this one is reserved.
INPUT_KEY = "__input__"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL, INPUT and the input/safety options both commands take."""
    parser.add_argument("model", help="a .keras, .h5 model file or a SavedModel directory (needs an architecture)")
    parser.add_argument("input", metavar="INPUT",
                        help="a PNG/JPEG image, a .npy array (with or without batch axis), or 'sample'")
    parser.add_argument("--preprocess", default="auto",
                        choices=("auto", "scale01", "scale11", "meanstd", "none"),
                        help="scale01: v/255; scale11: v/127.5-1; meanstd: (v-mean)/std; none: as stored; "
                             "auto (default): scale01 for images and 'sample', none for .npy arrays")
    parser.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel mean for meanstd")
    parser.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std for meanstd")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow running code stored in the model file (Lambda layers); only for trusted files")


def prepare(args: argparse.Namespace) -> tuple[Any, Any, np.ndarray]:
    """(index, runnable model, input batch) from the parsed arguments; the caller closes the index."""
    from ..inputs import input_spec_from_model, load_input
    from ..loader import open_model
    from ..runtime import load_runnable

    index = open_model(args.model)
    try:
        model = load_runnable(index, safe_mode=not args.unsafe)
        x = load_input(args.input, input_spec_from_model(model), preprocess=args.preprocess,
                       mean=args.mean, std=args.std)
    except BaseException:
        index.close()
        raise
    return index, model, x


def check_figure_path(path: str | None) -> None:
    if path is not None and Path(path).suffix.lower() not in FIGURE_SUFFIXES:
        raise SelectionError(f"the figure file must end in {', '.join(FIGURE_SUFFIXES)}. Received: {path}")


def prepare_outputs(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """(figure path, npz path) checked before the model is loaded and run: a bad ``-o`` or ``--npz``
    must not cost a forward pass. The npz path gets its ``.npz`` suffix here, so it is reported as written."""
    check_figure_path(args.output)
    figure = prepare_file(args.output, option="the -o figure") if args.output else None
    npz = prepare_file(npz_path(args.npz), option="the --npz file") if args.npz else None
    return figure, npz


def figure_path_for(base: str | Path, layer: str, many: bool) -> Path:
    return per_layer_path(base, layer, many)


def register(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--layer", action="append", required=True, metavar="L",
                        help="layer path or unique name; repeat for several layers (one forward pass)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="figure file (.png/.svg/.pdf); with several layers, one file per layer")
    parser.add_argument("--npz", metavar="FILE", help="save the activations (channels_last, all samples) to an NPZ")
    parser.add_argument("--maps", metavar="SEL", help="maps to draw, e.g. '0-15,20' (default: the first 64)")
    parser.add_argument("--shared-scale", action="store_true", help="one colour scale for all maps")
    parser.add_argument("--sample-index", type=int, default=0, metavar="N", help="which sample of a batch to draw")


def run(args: argparse.Namespace) -> int:
    from ..activations import capture

    figure, npz = prepare_outputs(args)
    index, model, x = prepare(args)
    with index:
        paths = [index.layer(name).path for name in args.layer]  # LayerNotFoundError with close matches
        if npz is not None and INPUT_KEY in paths:
            raise SelectionError(f"--npz stores the model input under the reserved key {INPUT_KEY!r}, so a layer "
                                 f"at that path cannot be saved beside it; capture it without --npz. "
                                 f"Received: --layer {INPUT_KEY}")
        if not 0 <= args.sample_index < len(x):
            raise SelectionError(f"--sample-index must be in 0-{len(x) - 1}. Received: {args.sample_index}")
        acts = capture(model, x, paths)
    for path, arr in acts.items():
        a = arr[args.sample_index]
        print(f"{path}: shape {tuple(arr.shape)} (channels_last)  min {a.min():.4g}  max {a.max():.4g}  "
              f"mean {a.mean():.4g}")
    if npz is not None:
        # A mapping, not **kwargs: layers named 'file' or 'allow_pickle' would collide with numpy's arguments.
        written = write_npz(npz, {**acts, INPUT_KEY: x}, compressed=True)
        print(f"wrote {written}")
    if figure is not None:
        from ..render.activations import activation_grid_figure
        from ..selectors import parse_maps

        for path, arr in acts.items():
            a = arr[args.sample_index]
            maps = None
            if args.maps and a.ndim > 1:
                maps = parse_maps(args.maps).resolve(a.shape[-1], layer=path)
            fig = activation_grid_figure(a, title=f"{path} {tuple(a.shape)}", maps=maps,
                                         shared_scale=args.shared_scale)
            out = figure_path_for(figure, path, len(acts) > 1)
            with writing(out, option="the -o figure"):
                fig.savefig(out, dpi=120)
            print(f"wrote {out}")
    return 0
