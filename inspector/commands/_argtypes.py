"""argparse ``type=`` callables and argument groups shared by the subcommands.

A value argparse rejects is a usage error: exit 2 with ``COMMAND: error: argument --x: ...`` as the
last line, before any model is opened. Range checks belong here rather than deep in matplotlib or
the dashboard, where a bad number surfaces as ``internal error: ValueError``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["add_run_arguments", "int_at_least", "manifest_formats", "positive_int"]


def int_at_least(minimum: int, what: str = "an integer") -> Callable[[str], int]:
    """An integer type accepting values >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} (>= {minimum}). Received: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what} (>= {minimum}). Received: {text!r}")
        return value

    parse.__name__ = f"int>={minimum}"  # argparse names the type in some messages
    return parse


#: A strictly positive integer (DPI, kernels per page, ...).
positive_int = int_at_least(1, "a positive integer")


def manifest_formats(text: str) -> list[str]:
    """``--manifest json,csv``: a comma-separated subset of the manifest formats."""
    from ..errors import SelectionError
    from ..export import parse_manifest_formats

    try:
        formats = parse_manifest_formats(text)
    except SelectionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not formats:
        raise argparse.ArgumentTypeError(f"give json, csv or json,csv. Received: {text!r}")
    return formats


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL, INPUT and the input/safety options of the commands that run a forward pass."""
    from ..inputs import PREPROCESS_CHOICES

    parser.add_argument("model", help="a .keras, .h5 model file or a SavedModel directory (needs an architecture)")
    parser.add_argument("input", metavar="INPUT",
                        help="a PNG/JPEG image, a .npy array (with or without batch axis), or 'sample'")
    parser.add_argument("--preprocess", default="auto", choices=PREPROCESS_CHOICES,
                        help="scale01: v/255; scale11: v/127.5-1; meanstd: (v-mean)/std; none: as stored; "
                             "auto (default): scale01 for images and 'sample', none for .npy arrays")
    parser.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel mean for meanstd")
    parser.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std for meanstd")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow running code stored in the model file (Lambda layers); only for trusted files")
