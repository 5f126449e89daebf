"""``inspector filters MODEL LAYER [MAP]``: the input-channel filters feeding output maps.

Without ``-o`` prints a short description per map (layer, kind, kernel shape, input channels,
bias, norms); ``-o FILE.png|.svg|.pdf`` draws them (one map: its kernel grid; several maps: a
maps × input-channels grid, or one PDF page per map); ``--npz`` saves the arrays.
LAYER may carry the maps itself: ``block2_conv1:0-7,12``. LAYER may also be a glob or a comma-separated
list (``'conv*:0-3'``, resolved like ``export --layers``): several layers print one block each, and
``-o`` / ``--npz`` then write one file per layer, ``NAME-<layer>.SUFFIX`` beside the name given.
"""

from __future__ import annotations

import argparse

import numpy as np

from ..filters import FilterSet, consumers_of_map, input_channel_count, output_map_count
from ..formatting import index_text, optional_num_text
from ..loader import open_model
from ..outputs import per_layer_path
from ..records import LayerRecord, ModelIndex
from ..serialize import filtersets_to_npz
from ..service import (
    BNFold,
    FigureOptions,
    Scale,
    SortOrder,
    Stage,
    choices,
    filter_sets,
    parse_layer_argument,
    plan_maps,
    prepare_outputs,
    write_filter_figure,
)
from ._argtypes import positive_int

#: Maps described one by one in the text output; more are counted, not listed.
_LISTED_MAPS = 64


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .keras, .h5, .weights.h5 file or a SavedModel directory")
    parser.add_argument("layer", help="layer path or name, optionally with maps: 'conv2' or 'conv2:0-3,7'; "
                                      "a glob or comma list ('conv*:0-3') selects several layers")
    parser.add_argument("maps", nargs="?", default=None,
                        help="map selection: '5', '0-3,7', '8-' or 'all' (default: all maps, or those in LAYER)")
    parser.add_argument("-o", "--output", help="write a figure: FILE.png, FILE.svg or FILE.pdf")
    parser.add_argument("--npz", help="write the kernels, input channels and bias to FILE.npz")
    parser.add_argument("--fold-bn", nargs="?", const="after", default=None, choices=choices(BNFold),
                        help="fold the BatchNormalization after the layer (default) / before it / both")
    parser.add_argument("--sort", choices=choices(SortOrder), default=None,
                        help="order input channels by kernel norm (strongest first)")
    parser.add_argument("--stage", choices=choices(Stage), default=None,
                        help="separable layers: effective (default), depthwise or pointwise kernel")
    parser.add_argument("--dpi", type=positive_int, default=None, help="PNG resolution (default 200)")
    parser.add_argument("--scale", choices=choices(Scale), default=Scale.SHARED,
                        help="one symmetric colour scale for the figure (default) or one per kernel")
    parser.add_argument("--max-kernels", type=positive_int, default=64, help="kernels per figure page (default 64)")
    parser.add_argument("--page", type=int, default=0, help="which page of kernels to draw (default 0)")
    parser.add_argument("--rgb", action="store_true", help="draw 3-channel 2-D kernels as colour images")
    parser.add_argument("--consumers", action="store_true",
                        help="also list the slices of later layers' kernels that read each map")


def describe(fs: FilterSet, limit: int = 8) -> str:
    shape = "×".join(map(str, fs.spatial_shape)) or "scalar"
    norms = fs.norms
    order = np.argsort(-norms, kind="stable")[:limit]
    top = ", ".join(f"in {fs.input_channels[i]}: {norms[i]:.4g}" for i in order)
    lines = [
        f"map {fs.map_index}: {fs.n_inputs} input channel(s) [{index_text(fs.input_channels, limit)}] of "
        f"{fs.n_inputs_total}, {shape} kernels, bias {optional_num_text(fs.bias)}"
        + (" (BN folded)" if fs.bn_folded else ""),
        f"  norms (largest first): {top}" + (" ..." if len(norms) > limit else ""),
    ]
    if fs.image_shape is not None:
        lines.append(f"  reads a flattened {fs.image_shape} tensor: per-map images with --output")
    lines.extend(f"  note: {n}" for n in fs.notes)
    return "\n".join(lines)


def _header(layer: LayerRecord, stage: str | None) -> str:
    kernel = layer.kernel
    spec = layer.spec
    bits = [f"layer {layer.path} ({layer.class_name}, kind {layer.kind})",
            f"kernel {tuple(kernel.shape) if kernel else '?'}"]
    if layer.kind == "separable":
        pw = layer.weight("pointwise_kernel")
        bits.append(f"pointwise {tuple(pw.shape) if pw else '?'}")
    bits.append(f"{input_channel_count(layer)} input channels -> {output_map_count(layer, stage)} maps")
    if spec is not None and spec.rank:
        bits.append(f"strides {spec.strides}, padding {spec.padding}, dilation {spec.dilation_rate}, "
                    f"groups {spec.groups}, {spec.data_format}")
    return "; ".join(bits)


def run(args: argparse.Namespace) -> int:
    layer_text, maps = parse_layer_argument(args.layer, args.maps)
    # Outputs are checked before the model is opened: a typo in -o must not cost the slicing.
    outputs = prepare_outputs(args.output, args.npz)
    figure_options = FigureOptions(scale=Scale(args.scale), max_kernels=args.max_kernels, page=args.page,
                                   dpi=args.dpi, rgb=args.rgb)
    with open_model(args.model) as index:
        # Every layer's selection is resolved first, so an out-of-range map fails before any file is written.
        plan = plan_maps(index, layer_text, maps, stage=args.stage)
        many = len(plan) > 1
        for step in plan:
            sets = filter_sets(index, step, fold_bn=args.fold_bn or False, sort=args.sort)
            if outputs.npz is not None:
                written = filtersets_to_npz(sets, per_layer_path(outputs.npz, step.layer.path, many),
                                            source=index.source)
                print(f"wrote {written} ({len(sets)} map(s))")
            if outputs.figure is not None:
                out = write_filter_figure(sets, per_layer_path(outputs.figure, step.layer.path, many),
                                          figure_options)
                print(f"wrote {out}")
            if outputs.figure is None and outputs.npz is None:
                _print_layer(index, step.layer, sets, args)
    return 0


def _print_layer(index: ModelIndex, layer: LayerRecord, sets: list[FilterSet], args: argparse.Namespace) -> None:
    print(_header(layer, args.stage))
    shown = sets[:_LISTED_MAPS]
    for fs in shown:
        print(describe(fs))
        if args.consumers:
            _print_consumers(index, layer.path, fs.map_index, args.stage)
    if len(sets) > len(shown):
        print(f"... {len(sets) - len(shown)} more maps (select fewer, e.g. {layer.path}:0-7)")


def _print_consumers(index: ModelIndex, path: str, j: int, stage: str | None) -> None:
    cons = consumers_of_map(index, path, j, stage=stage)
    for sl in cons.slices:
        via = f" via {' -> '.join(sl.via)}" if sl.via else ""
        print(f"  read by {sl.consumer_path} (input channel {sl.input_channel}{via}): "
              f"{len(sl.output_maps)} kernel(s) of shape {sl.kernels.shape[1:] or 'scalar'} -> maps "
              f"{sl.output_maps[0]}-{sl.output_maps[-1]}")
    for where, why in cons.stops:
        print(f"  stops at {where}: {why}")
