"""``inspector report MODEL [-o report.html|report.pdf] [--layers SEL] [--input IMAGE] [--visualize]``.

One self-contained HTML file (every image embedded, no external request, prints cleanly) or a PDF, and
a JSON sidecar (``report.json`` beside it) with every number and the settings used. Sections: model
header and layer table, parameter chart, and per selected filter layer its kernels, statistics and
filter health; ``--input`` adds activations and a decomposition per layer, ``--visualize`` feature
visualizations of the strongest maps of one layer, ``--examples`` dataset examples.
"""

from __future__ import annotations

import argparse
import sys

from ._argtypes import positive_int


def register(parser: argparse.ArgumentParser) -> None:
    from ..inputs import FIT_CHOICES, PREPROCESS_CHOICES
    from ..report import ReportOptions

    d = ReportOptions()
    parser.add_argument("model", help="a .keras, .h5, .weights.h5/.weights.json file or a SavedModel directory")
    parser.add_argument("-o", "--output", default="report.html", metavar="FILE",
                        help="report.html (default) or report.pdf; the JSON sidecar goes beside it (.json)")
    parser.add_argument("--layers", metavar="SEL",
                        help="layers to include: a path, a glob or a comma list (default: every filter layer)")
    parser.add_argument("--input", metavar="IMAGE", help="an image, a .npy or 'sample': activations and the "
                                                         "decomposition of each layer's most active map")
    parser.add_argument("--examples", metavar="DIR", help="a folder of images: dataset examples of one layer")
    parser.add_argument("--visualize", action="store_true",
                        help="feature visualizations of the strongest maps of one layer (the last selected one)")
    parser.add_argument("--visualize-layer", metavar="L", help="the layer --visualize / --examples use")
    parser.add_argument("--visualize-maps", type=positive_int, default=d.visualize_maps, metavar="N",
                        help=f"maps visualized (default {d.visualize_maps})")
    parser.add_argument("--visualize-steps", type=positive_int, default=d.visualize_steps, metavar="N",
                        help=f"optimisation steps (default {d.visualize_steps})")
    parser.add_argument("--top-maps", type=positive_int, default=d.top_maps, metavar="N",
                        help=f"strongest maps drawn per layer (default {d.top_maps})")
    parser.add_argument("--max-channels", type=positive_int, default=d.max_channels, metavar="N",
                        help=f"input-channel kernels drawn per map (default {d.max_channels})")
    parser.add_argument("--fold-bn", action="store_true",
                        help="fold a directly following BatchNormalization (norms, dead maps, kernels)")
    parser.add_argument("--dpi", type=positive_int, default=d.dpi, metavar="N",
                        help=f"figure resolution (default {d.dpi})")
    parser.add_argument("--preprocess", default="auto", choices=PREPROCESS_CHOICES, help="preprocessing of --input")
    parser.add_argument("--fit", default="stretch", choices=FIT_CHOICES, help="image fit of --input")
    parser.add_argument("--no-json", action="store_true", help="no JSON sidecar")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow running code stored in the model file (Lambda layers); only for trusted files")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import SelectionError
    from ..loader import open_model
    from ..outputs import prepare_file
    from ..report import REPORT_FORMATS, ReportOptions, sidecar_path, write_report
    from ._progress import text_progress_bar

    if Path(args.output).suffix.lower() not in REPORT_FORMATS:
        raise SelectionError(f"a report is written as .html or .pdf; accepted: {', '.join(REPORT_FORMATS)}. "
                             f"Received: {args.output!r}")
    prepare_file(args.output, option="the report")  # before the model is opened
    if not args.no_json:
        prepare_file(sidecar_path(args.output), option="the report's JSON sidecar")
    options = ReportOptions(layers=args.layers, input=args.input, examples=args.examples, visualize=args.visualize,
                            visualize_layer=args.visualize_layer, visualize_maps=args.visualize_maps,
                            visualize_steps=args.visualize_steps, top_maps=args.top_maps,
                            max_channels=args.max_channels, fold_bn=args.fold_bn, dpi=args.dpi,
                            preprocess=args.preprocess, fit=args.fit, unsafe=args.unsafe)
    progress = None if args.no_progress else text_progress_bar(sys.stderr)
    with open_model(args.model) as index:
        written = write_report(index, args.output, options, progress=progress, sidecar=not args.no_json)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
