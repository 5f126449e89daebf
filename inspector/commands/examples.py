"""``inspector examples MODEL IMAGES --layer L``: the images (and patches) that excite each map most.

One pass over IMAGES (a folder searched recursively, or a zip) serves every map of every ``--layer``;
``--json`` writes the result object (docs/examples.md), ``-o`` a contact sheet per layer. Results are
cached (``$INSPECTOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/filter-inspector/examples``): a re-run is instant
and an interrupted scan resumes.
"""

from __future__ import annotations

import argparse
import json
import sys

from ._argtypes import choice_of, int_at_least, positive_int

_MAX_SHEET_MAPS = 64  # rows of one contact sheet when --maps is not given


def register(parser: argparse.ArgumentParser) -> None:
    from ..examples import DEFAULT_K
    from ..inputs import FIT_CHOICES, PREPROCESS_CHOICES

    parser.add_argument("model", help="a .keras, .h5 model file or a SavedModel directory (needs an architecture)")
    parser.add_argument("images", metavar="IMAGES",
                        help="a folder of images (searched recursively: png, jpg, bmp, gif, webp, tiff) or a .zip")
    parser.add_argument("--layer", action="append", required=True, metavar="L",
                        help="a layer with spatial maps; repeat for several layers (one pass serves all)")
    parser.add_argument("--maps", metavar="SEL", help="maps to report, e.g. '0-7,12' (default: all)")
    parser.add_argument("--k", type=int_at_least(1, "a positive integer"), default=DEFAULT_K, metavar="K",
                        help=f"examples per map (default {DEFAULT_K})")
    parser.add_argument("--preprocess", default="auto", type=choice_of(PREPROCESS_CHOICES, "--preprocess"),
                        metavar="{" + ",".join(PREPROCESS_CHOICES) + "}",
                        help="as for 'inspector activations' (auto = scale01 for images)")
    parser.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel mean for meanstd")
    parser.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std for meanstd")
    parser.add_argument("--fit", default="stretch", type=choice_of(FIT_CHOICES, "--fit"),
                        metavar="{" + ",".join(FIT_CHOICES) + "}", help="how images are brought to the input size")
    parser.add_argument("--size", type=positive_int, nargs=2, metavar=("H", "W"),
                        help="input size for models that accept any size")
    parser.add_argument("--batch", type=positive_int, default=32, metavar="N", help="images per forward pass")
    parser.add_argument("--engine", default="local", type=choice_of(("local", "ray"), "--engine"),
                        metavar="{local,ray}", help="local (default) or ray (Ray Data; pip install "
                                                    "'filter-inspector[scale]')")
    parser.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: start a local Ray)")
    parser.add_argument("--no-cache", action="store_true", help="scan again and do not store the result")
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON ('-' for standard output)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="contact sheet (.png/.svg/.pdf); with several layers, one file per layer")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow running code stored in the model file (Lambda layers); only for trusted files")


def run(args: argparse.Namespace) -> int:
    from ..errors import SelectionError
    from ..examples import ScanSettings, crop_examples, find_examples
    from ..outputs import per_layer_path, prepare_file
    from ..service import write_figure
    from ._progress import text_progress_bar

    if args.ray_address and args.engine != "ray":
        raise SelectionError(f"--ray-address needs --engine ray. Received: --ray-address {args.ray_address}")
    json_out = prepare_file(args.json, option="the --json file") if args.json and args.json != "-" else None
    figure = None
    if args.output:
        from ..outputs import figure_format

        figure_format(args.output, option="a figure")
        figure = prepare_file(args.output, option="the -o figure")
    settings = ScanSettings(preprocess=args.preprocess, mean=tuple(args.mean) if args.mean else None,
                            std=tuple(args.std) if args.std else None, fit=args.fit,
                            size=tuple(args.size) if args.size else None)
    result = find_examples(args.model, args.images, args.layer, maps=args.maps, k=args.k, settings=settings,
                           batch=args.batch, engine=args.engine, ray_address=args.ray_address,
                           progress=text_progress_bar(sys.stderr), use_cache=not args.no_cache, unsafe=args.unsafe)
    from ..serialize import to_json

    payload = to_json(result)
    if args.json == "-":
        sys.stdout.write(json.dumps(payload, allow_nan=False) + "\n")
    elif json_out is not None:
        from ..outputs import writing

        with writing(json_out, option="the --json file"):
            json_out.write_text(json.dumps(payload, allow_nan=False, indent=1))
    say = print if args.json != "-" else (lambda *a: print(*a, file=sys.stderr))
    cached = " (from the cache)" if result.from_cache else ""
    say(f"{result.images_scanned} images scanned, {len(result.images_skipped)} skipped"
        + (f" ({', '.join(result.images_skipped[:3])}{', ...' if len(result.images_skipped) > 3 else ''})"
           if result.images_skipped else "") + cached)
    for le in result.layers:
        best = max((m.top[0].value for m in le.maps if m.top), default=float("nan"))
        say(f"{le.layer}: {len(le.maps)} of {le.n_maps} maps, output {tuple(le.output_size)}, best value {best:.4g}"
            + (f"; note: {le.note}" if le.note else ""))
    if json_out is not None:
        say(f"wrote {json_out}")
    if figure is not None:
        from ..render.examples import contact_sheet_figure

        for le in result.layers:
            maps = [m.map for m in le.maps][: None if args.maps else _MAX_SHEET_MAPS]
            if len(maps) < len(le.maps):
                say(f"{le.layer}: the contact sheet shows maps {maps[0]}-{maps[-1]} of {len(le.maps)}; "
                    f"choose others with --maps")
            rows = crop_examples(result, le.layer, maps)
            fig = contact_sheet_figure(rows, title=f"{le.layer}: top {result.k} of {result.images_scanned} images",
                                       k=result.k)
            say(f"wrote {write_figure(fig, per_layer_path(figure, le.layer, len(result.layers) > 1))}")
    return 0
