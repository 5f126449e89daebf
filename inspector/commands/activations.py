"""``inspector activations MODEL INPUT --layer L``: a layer's activation maps for one input.

``--npz`` keys: each captured layer's activations ``(N, *spatial, C)`` under its path (e.g. ``conv1``,
``inner/dense_1``) and the model input batch under ``__input__``.
"""

from __future__ import annotations

import argparse

from ..errors import SelectionError
from ..outputs import per_layer_path, write_npz
from ..service import check_sample_index, open_run, prepare_outputs, write_figure
from ._argtypes import add_run_arguments

#: The ``--npz`` key of the model input. Layer paths are the other keys; this one is reserved.
INPUT_KEY = "__input__"


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

    outputs = prepare_outputs(args.output, args.npz)  # before the forward pass, which is the slow part
    index, model, x = open_run(args.model, args.input, preprocess=args.preprocess, mean=args.mean, std=args.std,
                               unsafe=args.unsafe, fit=args.fit)
    with index:
        paths = [index.layer(name).path for name in args.layer]  # LayerNotFoundError with close matches
        if outputs.npz is not None and INPUT_KEY in paths:
            raise SelectionError(f"--npz stores the model input under the reserved key {INPUT_KEY!r}, so a layer "
                                 f"at that path cannot be saved beside it; capture it without --npz. "
                                 f"Received: --layer {INPUT_KEY}")
        check_sample_index(args.sample_index, len(x))
        acts = capture(model, x, paths)
    for path, arr in acts.items():
        a = arr[args.sample_index]
        print(f"{path}: shape {tuple(arr.shape)} (channels_last)  min {a.min():.4g}  max {a.max():.4g}  "
              f"mean {a.mean():.4g}")
    if outputs.npz is not None:
        # A mapping, not **kwargs: layers named 'file' or 'allow_pickle' would collide with numpy's arguments.
        print(f"wrote {write_npz(outputs.npz, {**acts, INPUT_KEY: x}, compressed=True)}")
    if outputs.figure is not None:
        from ..render.activations import activation_grid_figure
        from ..selectors import parse_maps

        for path, arr in acts.items():
            a = arr[args.sample_index]
            maps = None
            if args.maps and a.ndim > 1:
                maps = parse_maps(args.maps).resolve(a.shape[-1], layer=path)
            fig = activation_grid_figure(a, title=f"{path} {tuple(a.shape)}", maps=maps,
                                         shared_scale=args.shared_scale)
            print(f"wrote {write_figure(fig, per_layer_path(outputs.figure, path, len(acts) > 1))}")
    return 0
