"""The ``inspector`` command line: a thin shell over the Python API.

Each subcommand lives in ``inspector/commands/<name>.py`` and exposes ``register(subparsers)`` and
``run(args) -> int``. Modules are imported only when their command runs, so ``inspector --help`` and
``--version`` stay instant. Exit codes: 0 success, 2 bad input (one-line message, no traceback unless
``--debug``), 1 unexpected internal error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._version import __version__

__all__ = ["COMMANDS", "main"]

# name -> (module, one-line help). Keep in the order users meet them.
COMMANDS: dict[str, tuple[str, str]] = {
    "summary": ("inspector.commands.summary", "per-layer table of weights, shapes and parameter counts"),
    "filters": ("inspector.commands.filters", "the input-channel filters feeding one output map"),
    "montage": ("inspector.commands.montage", "every map of a layer in one paged figure"),
    "export": ("inspector.commands.export", "batch-export filter images and arrays to a folder"),
    "activations": ("inspector.commands.activations", "a layer's activation maps for one input"),
    "decompose": ("inspector.commands.decompose", "split one output map into per-input-channel contributions"),
    "visualize": ("inspector.commands.visualize", "feature visualization: the input a map responds to most"),
    "stats": ("inspector.commands.stats", "weight statistics and filter health"),
    "examples": ("inspector.commands.examples", "the dataset images (and patches) that excite each map most"),
    "report": ("inspector.commands.report", "one self-contained HTML or PDF report of a model, with a JSON sidecar"),
    "compare": ("inspector.commands.compare", "which layers and filters changed between two models"),
    "app": ("inspector.commands.app", "open the Streamlit dashboard"),
}

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspector",
        description="Open a trained Keras/TensorFlow model and see exactly what its layers learned.",
    )
    parser.add_argument("--version", action="version", version=f"filter-inspector {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the invoked command's module is imported; --help lists all from the table.
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_text) in COMMANDS.items():
        if name == chosen:
            mod = importlib.import_module(module)
            mod.register(sub.add_parser(name, help=help_text, description=help_text))
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(args_list)
    args = parser.parse_args(args_list)
    if not args.command:
        parser.print_help()
        return EXIT_BAD_INPUT
    from . import kerascompat
    from .errors import InspectorError

    # Without --debug, TensorFlow's start-up lines are held back so the user sees only ours.
    kerascompat.set_verbose(args.debug)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except InspectorError as exc:
        if args.debug:
            raise
        print(f"inspector {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `inspector summary big.keras | head`
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            raise
        print(f"inspector {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(run again with --debug for the traceback, and please report it)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
