"""argparse ``type=`` callables and argument groups shared by the subcommands.

A value argparse rejects is a usage error: exit 2 with ``COMMAND: error: argument --x: ...`` as the
last line, before any model is opened. Range checks belong here rather than deep in matplotlib or
the dashboard, where a bad number surfaces as ``internal error: ValueError``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["add_run_arguments", "choice_of", "int_at_least", "manifest_formats", "positive_int"]


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


def choice_of(choices: tuple[str, ...], what: str) -> Callable[[str], str]:
    """A string type accepting exactly ``choices``, with a three-part message for anything else
    (argparse's own ``choices`` says "invalid choice" without naming what is accepted in our words)."""
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}. Received: {text!r}")
        return text

    parse.__name__ = what
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
    from ..inputs import FIT_CHOICES, PREPROCESS_CHOICES

    parser.add_argument("model", help="a .keras, .h5 model file or a SavedModel directory (needs an architecture)")
    parser.add_argument("input", metavar="INPUT",
                        help="a PNG/JPEG image, a .npy array (with or without batch axis), 'sample', or a "
                             "bundled photograph 'photo:NAME' (astronaut, chelsea, coffee, ...)")
    parser.add_argument("--preprocess", default="auto", type=choice_of(PREPROCESS_CHOICES, "--preprocess"),
                        metavar="{" + ",".join(PREPROCESS_CHOICES) + "}",
                        help="scale01: v/255; scale11: v/127.5-1; meanstd: (v-mean)/std; none: as stored; "
                             "auto (default): for images and 'sample' none if the model begins with Rescaling/"
                             "Normalization, else scale01; none for .npy arrays; "
                             "Keras applications' presets (RGB on 0..255): caffe: RGB->BGR minus the ImageNet "
                             "mean (VGG, ResNet50); torch: v/255 then ImageNet mean/std; tf: v/127.5-1")
    parser.add_argument("--fit", default="stretch", type=choice_of(FIT_CHOICES, "--fit"),
                        metavar="{" + ",".join(FIT_CHOICES) + "}",
                        help="an image whose aspect differs from the model input: stretch (default) resizes "
                             "each side; crop: centre crop to the model's aspect, then resize; pad: resize to "
                             "fit inside and centre on black (zeros before preprocessing)")
    parser.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel mean for meanstd")
    parser.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std for meanstd")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow running code stored in the model file (Lambda layers); only for trusted files")
