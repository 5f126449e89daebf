"""``inspector activations MODEL INPUT --layer L``: a layer's activation maps for one input.

Also holds the argument handling shared with ``inspector decompose`` (model + input loading).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SelectionError

FIGURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


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


def figure_path_for(base: str, layer: str, many: bool) -> Path:
    p = Path(base)
    if not many:
        return p
    return p.with_name(f"{p.stem}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', layer)}{p.suffix}")


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

    check_figure_path(args.output)
    index, model, x = prepare(args)
    with index:
        paths = [index.layer(name).path for name in args.layer]  # LayerNotFoundError with close matches
        if not 0 <= args.sample_index < len(x):
            raise SelectionError(f"--sample-index must be in 0-{len(x) - 1}. Received: {args.sample_index}")
        acts = capture(model, x, paths)
    for path, arr in acts.items():
        a = arr[args.sample_index]
        print(f"{path}: shape {tuple(arr.shape)} (channels_last)  min {a.min():.4g}  max {a.max():.4g}  "
              f"mean {a.mean():.4g}")
    if args.npz:
        np.savez_compressed(args.npz, **{p: a for p, a in acts.items()}, input=x)
        print(f"wrote {args.npz}")
    if args.output:
        from ..render.activations import activation_grid_figure
        from ..selectors import parse_maps

        for path, arr in acts.items():
            a = arr[args.sample_index]
            maps = None
            if args.maps and a.ndim > 1:
                maps = parse_maps(args.maps).resolve(a.shape[-1], layer=path)
            fig = activation_grid_figure(a, title=f"{path} {tuple(a.shape)}", maps=maps,
                                         shared_scale=args.shared_scale)
            out = figure_path_for(args.output, path, len(acts) > 1)
            fig.savefig(out, dpi=120)
            print(f"wrote {out}")
    return 0
