"""``inspector summary MODEL [--json]``: a Keras-summary-like table of every layer's weights."""

from __future__ import annotations

import argparse
import json
import sys

from ..loader import open_model
from ..records import ModelIndex


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .keras, .h5, .weights.h5/.weights.json file or a SavedModel directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--no-weights", action="store_true", help="omit the weight-shapes column")


def _shape_text(shape: object) -> str:
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return ", ".join(_shape_text(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"  # type: ignore[union-attr]


def _count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def format_table(index: ModelIndex, weights: bool = True) -> str:
    headers = ["Layer (path)", "Class", "Kind", "Output shape", "Params"] + (["Weights"] if weights else [])
    rows = []
    for layer in index.layers:
        kind = f"{layer.kind}{'?' if layer.kind_inferred else ''}"
        row = [layer.path, layer.class_name or "?", kind, _shape_text(layer.output_shape), f"{layer.params:,}"]
        if weights:
            row.append(" ".join(f"{w.name}{list(w.shape)}" for w in layer.weights))
        rows.append(row)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    widths = [min(w, 60) for w in widths]

    def line(cells: list[str]) -> str:
        parts = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            parts.append(cell.rjust(width) if i == 4 else cell.ljust(width))
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(headers))
    title = f'Model: "{index.name or "?"}"  format: {index.format}'
    if index.writer:
        title += f"  written by {index.writer}"
    out = [title, rule, line(headers), rule, *(line(r) for r in rows), rule]
    out.append(f"Total params: {_count(index.total_params)} ({index.total_bytes / 1e6:.2f} MB)")
    out.append(f"Trainable params: {_count(index.trainable_params)}")
    out.append(f"Non-trainable params: {_count(index.non_trainable_params)}")
    if any(layer.kind_inferred for layer in index.layers):
        out.append("'?' after a kind: inferred from weight names and shapes, not read from a config")
    for warning in index.warnings:
        out.append(f"note: {warning}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    with open_model(args.model) as index:
        if args.json:
            json.dump(index.to_dict(), sys.stdout)
            sys.stdout.write("\n")
        else:
            print(format_table(index, weights=not args.no_weights))
    return 0
