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
from pathlib import Path

import numpy as np

from ..errors import LayerNotFoundError, SelectionError
from ..filters import (
    BNFold,
    FilterSet,
    Stage,
    consumers_of_map,
    filters_for_map,
    input_channel_count,
    output_map_count,
)
from ..loader import open_model
from ..outputs import npz_path, per_layer_path, prepare_file
from ..records import LayerRecord, ModelIndex
from ..selectors import parse_maps, parse_selector, select_layers
from ._argtypes import positive_int

_FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .keras, .h5, .weights.h5 file or a SavedModel directory")
    parser.add_argument("layer", help="layer path or name, optionally with maps: 'conv2' or 'conv2:0-3,7'; "
                                      "a glob or comma list ('conv*:0-3') selects several layers")
    parser.add_argument("maps", nargs="?", default=None,
                        help="map selection: '5', '0-3,7', '8-' or 'all' (default: all maps, or those in LAYER)")
    parser.add_argument("-o", "--output", help="write a figure: FILE.png, FILE.svg or FILE.pdf")
    parser.add_argument("--npz", help="write the kernels, input channels and bias to FILE.npz")
    parser.add_argument("--fold-bn", nargs="?", const="after", default=None, choices=[str(m) for m in BNFold],
                        help="fold the BatchNormalization after the layer (default) / before it / both")
    parser.add_argument("--sort", choices=["norm", "index"], default=None,
                        help="order input channels by kernel norm (strongest first)")
    parser.add_argument("--stage", choices=[str(s) for s in Stage], default=None,
                        help="separable layers: effective (default), depthwise or pointwise kernel")
    parser.add_argument("--dpi", type=positive_int, default=100, help="PNG resolution (default 100)")
    parser.add_argument("--scale", choices=["shared", "per-kernel"], default="shared",
                        help="one symmetric colour scale for the figure (default) or one per kernel")
    parser.add_argument("--max-kernels", type=positive_int, default=64, help="kernels per figure page (default 64)")
    parser.add_argument("--page", type=int, default=0, help="which page of kernels to draw (default 0)")
    parser.add_argument("--rgb", action="store_true", help="draw 3-channel 2-D kernels as colour images")
    parser.add_argument("--consumers", action="store_true",
                        help="also list the slices of later layers' kernels that read each map")


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.6g}"


def describe(fs: FilterSet, limit: int = 8) -> str:
    shape = "×".join(map(str, fs.spatial_shape)) or "scalar"
    chans = fs.input_channels
    if len(chans) > 1 and np.array_equal(chans, np.arange(chans[0], chans[0] + len(chans))):
        chan_text = f"{chans[0]}-{chans[-1]}"
    else:
        chan_text = ",".join(map(str, chans[:limit])) + (",..." if len(chans) > limit else "")
    norms = fs.norms
    order = np.argsort(-norms, kind="stable")[:limit]
    top = ", ".join(f"in {fs.input_channels[i]}: {norms[i]:.4g}" for i in order)
    lines = [
        f"map {fs.map_index}: {fs.n_inputs} input channel(s) [{chan_text}] of {fs.n_inputs_total}, "
        f"{shape} kernels, bias {_fmt(fs.bias)}" + (" (BN folded)" if fs.bn_folded else ""),
        f"  norms (largest first): {top}" + (" ..." if len(norms) > limit else ""),
    ]
    if fs.image_shape is not None:
        lines.append(f"  reads a flattened {fs.image_shape} tensor: per-map images with --output")
    lines.extend(f"  note: {n}" for n in fs.notes)
    return "\n".join(lines)


def _header(index: ModelIndex, path: str, stage: str | None) -> str:
    layer = index.layer(path)
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


def _check_figure_suffix(output: str) -> None:
    suffix = Path(output).suffix.lower()
    if suffix not in _FIGURE_SUFFIXES:
        raise SelectionError(f"cannot write a figure as {suffix or 'a file without suffix'}; accepted: .png, .svg, "
                             f".pdf (and --npz FILE.npz for arrays). Received: {output!r}")


def resolve_layers(index: ModelIndex, text: str) -> list[LayerRecord]:
    """The layers LAYER names: an exact path or unique name first (so ``conv[1]`` or ``a,b`` is that
    layer), else a glob / comma list through :func:`select_layers`, as in ``export --layers``."""
    try:
        return [index.layer(text)]
    except LayerNotFoundError:
        if not any(ch in text for ch in "*?[,"):
            raise  # a plain name: keep its close-match suggestions
    return select_layers(index, text)


def run(args: argparse.Namespace) -> int:
    layer_text, maps_text = args.layer, args.maps
    if maps_text is None and ":" in layer_text:
        sel = parse_selector(layer_text)
        layer_text, maps_sel = sel.layer, sel.maps
    else:
        maps_sel = parse_maps(maps_text)
    # Outputs are checked before the model is opened: a typo in -o must not cost the slicing.
    if args.output:
        _check_figure_suffix(args.output)
    figure = prepare_file(args.output, option="the -o figure") if args.output else None
    npz = prepare_file(npz_path(args.npz), option="the --npz file") if args.npz else None
    with open_model(args.model) as index:
        layers = resolve_layers(index, layer_text)
        many = len(layers) > 1
        # Every layer's selection is resolved first, so an out-of-range map fails before any file is written.
        plan = [(layer, maps_sel.resolve(output_map_count(layer, args.stage), layer=layer.path)) for layer in layers]
        for layer, indices in plan:
            sets = [filters_for_map(layer, j, index=index, fold_bn=args.fold_bn or False, sort=args.sort,
                                    stage=args.stage) for j in indices]
            if npz is not None:
                from ..export import save_npz

                written = save_npz(sets, per_layer_path(npz, layer.path, many), source=index.source)
                print(f"wrote {written} ({len(sets)} map(s))")
            if figure is not None:
                out = per_layer_path(figure, layer.path, many)
                _draw(sets, args, out)
                print(f"wrote {out}")
            if figure is None and npz is None:
                _print_layer(index, layer, sets, args)
    return 0


def _print_layer(index: ModelIndex, layer: LayerRecord, sets: list[FilterSet], args: argparse.Namespace) -> None:
    print(_header(index, layer.path, args.stage))
    shown = sets if len(sets) <= 64 else sets[:64]
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


def _draw(sets: list[FilterSet], args: argparse.Namespace, out: Path) -> None:
    from ..export import figures_for_pdf, save_figure, save_pdf_pages
    from ..render.filters import is_rgb_filterset, plot_filterset, plot_layer, plot_rgb_filters

    suffix = out.suffix.lower()
    options = {"scale": args.scale, "max_kernels": args.max_kernels, "page": args.page, "dpi": args.dpi}
    if args.rgb:
        save_figure(plot_rgb_filters(sets, dpi=args.dpi), out, dpi=args.dpi)
    elif suffix == ".pdf" and len(sets) > 1:
        save_pdf_pages(figures_for_pdf(sets, **options), out)
    elif len(sets) == 1:
        save_figure(plot_filterset(sets[0], **options), out, dpi=args.dpi)
    elif all(is_rgb_filterset(fs) for fs in sets) and sets[0].n_inputs_total == 3:
        save_figure(plot_rgb_filters(sets, dpi=args.dpi), out, dpi=args.dpi)
    else:
        save_figure(plot_layer(sets, scale=args.scale, dpi=args.dpi, max_maps=max(len(sets), 1) if len(sets) <= 64
                               else 64), out, dpi=args.dpi)
