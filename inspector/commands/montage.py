"""``inspector montage MODEL LAYER [-o FILE] [--page N]``: every map of a layer in one paged figure."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..loader import open_model
from ..service import BNFold, MontageOptions, MontageScale, Stage, choices, montage_pages, prepare_outputs
from ._argtypes import positive_int


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .keras, .h5, .weights.h5 file or a SavedModel directory")
    parser.add_argument("layer", help="layer path or unique name, e.g. block1_conv1")
    parser.add_argument("-o", "--output", default=None,
                        help="figure file (.png, .svg, .pdf, .jpg); a PDF gets every page, an image one file a "
                             "page (name_p2.png, ...); without -o only the page plan is printed")
    parser.add_argument("--page", type=positive_int, default=None, help="draw only this page (1-based)")
    parser.add_argument("--per-page", type=positive_int, default=None,
                        help="maps per page (default: depends on the layer: 256 colour filters, 1024 depthwise "
                             "kernels, 512 matrix columns, 16 grid rows)")
    parser.add_argument("--fold-bn", nargs="?", const="after", default=None,
                        choices=choices(m for m in BNFold if m is not BNFold.NONE),
                        help="fold BatchNormalization into the kernels first")
    parser.add_argument("--stage", choices=choices(Stage), default=None,
                        help="separable layers: effective, depthwise or pointwise")
    parser.add_argument("--scale", choices=choices(MontageScale), default=MontageScale.LAYER,
                        help="one colour range for the whole layer (default), per page, or per map")
    parser.add_argument("--no-rgb", action="store_true", help="draw a colour first layer as its 3 channels")
    parser.add_argument("--max-channels", type=positive_int, default=64,
                        help="maps x channels grids: input channels drawn per map (default 64)")
    parser.add_argument("--dpi", type=positive_int, default=None, help="PNG resolution (default 200)")


def run(args: argparse.Namespace) -> int:
    from ..render.filters import montage_kind
    from ..service import write_montage

    outputs = prepare_outputs(args.output, None)  # a bad -o fails before the model is read
    options = MontageOptions(page=None if args.page is None else args.page - 1, per_page=args.per_page,
                             fold_bn=args.fold_bn or False, stage=args.stage, scale=str(args.scale),
                             rgb=False if args.no_rgb else None, max_channels=args.max_channels, dpi=args.dpi)
    with open_model(args.model) as index:
        layer = index.layer(args.layer)
        pages = montage_pages(index, layer, options)
        kind = montage_kind(layer, index=index, stage=args.stage, rgb=options.rgb)
        print(f"layer {layer.path} ({layer.class_name}): {kind} montage, page(s) "
              f"{', '.join(str(p + 1) for p in pages)}")
        if outputs.figure is not None:
            for path in write_montage(index, layer, Path(outputs.figure), options):
                print(f"wrote {path}")
    return 0
