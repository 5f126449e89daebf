"""``inspector export MODEL [--layers PATTERN] [--maps SEL] --format png,svg,pdf,npz -o DIR``."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..loader import open_model
from ..service import BNFold, SortOrder, Stage, choices
from ._argtypes import manifest_formats, positive_int


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .keras, .h5, .weights.h5 file or a SavedModel directory")
    parser.add_argument("-o", "--output", required=True, help="folder to write into (created if missing)")
    parser.add_argument("--layers", default=None,
                        help="layer names/paths or globs, comma separated (default: every filter layer)")
    parser.add_argument("--maps", default=None, help="map selection for every layer, e.g. '0-7' (default: all)")
    parser.add_argument("--format", default="png,npz", help="comma separated: png, svg, pdf, npz (default png,npz)")
    parser.add_argument("--fold-bn", nargs="?", const="after", default=None,
                        choices=choices(m for m in BNFold if m is not BNFold.NONE),
                        help="fold BatchNormalization where the model allows")
    parser.add_argument("--sort", choices=choices(SortOrder), default=None, help="order input channels by norm")
    parser.add_argument("--stage", choices=choices(Stage), default=None,
                        help="separable layers: effective, depthwise or pointwise")
    parser.add_argument("--dpi", type=positive_int, default=None, help="PNG resolution (default 200)")
    parser.add_argument("--per-page", type=positive_int, default=64,
                        help="kernels per figure page; a map with more gets more pages (default 64)")
    parser.add_argument("--max-kernels", type=positive_int, default=None,
                        help="draw only the first N kernels of each map (in --sort order); the manifest then "
                             "says truncated (default: every kernel)")
    parser.add_argument("--manifest", type=manifest_formats, default=["json", "csv"], metavar="json,csv",
                        help="manifest formats, comma separated: json, csv (default both)")
    parser.add_argument("--montage", action="store_true",
                        help="also write each layer's whole-layer montage (every map in one paged figure)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..export import export_batch, parse_formats
    from ..outputs import prepare_folder
    from ._progress import text_progress_bar

    parse_formats(args.format)  # a bad --format must not wait for the model to be indexed
    out_dir = prepare_folder(args.output, option="the -o export folder")  # before the model is opened
    progress = None if args.quiet else text_progress_bar(sys.stderr)
    with open_model(args.model) as index, _stop_on_first_interrupt() as stop:
        manifest = export_batch(
            index, out_dir, layers=args.layers, maps=args.maps, formats=args.format,
            fold_bn=args.fold_bn or False, sort=args.sort, stage=args.stage, dpi=args.dpi,
            max_kernels=args.max_kernels, per_page=args.per_page, montage=args.montage, manifest=args.manifest,
            progress=progress, stop=stop)
    layers = len({r.layer for r in manifest.rows})
    listed = " / ".join(Path(p).name for p in manifest.written)
    tail = f" ({listed} list{'s' if len(manifest.written) == 1 else ''} them)" if listed else ""
    if not manifest.complete:
        print(f"interrupted: wrote {len(manifest.rows)} file(s) for the maps done in {layers} layer(s) to "
              f"{manifest.out_dir}{tail}; the manifest says complete: false")
        return 130  # the shell's code for a run stopped by Ctrl-C
    print(f"wrote {len(manifest.rows)} file(s) for {layers} layer(s) to {manifest.out_dir}{tail}")
    return 0


@contextlib.contextmanager
def _stop_on_first_interrupt() -> Iterator[Callable[[], bool]]:
    """While exporting, the first Ctrl-C asks the export to stop after the map in hand (files and manifest
    of the maps done are kept); a second one interrupts at once, as usual."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted.is_set  # signal handlers live in the main thread only
        return

    def first(signum: int, frame: Any) -> None:
        interrupted.set()
        signal.signal(signal.SIGINT, previous)
        sys.stderr.write("\nstopping after this map (Ctrl-C again to abort at once)\n")

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield interrupted.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
