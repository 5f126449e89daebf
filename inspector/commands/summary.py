"""``inspector summary MODEL [--json]``: a Keras-summary-like table of every layer's weights."""

from __future__ import annotations

import argparse
import json
import sys

from ..formatting import count_text, shape_text, table_lines
from ..loader import open_model
from ..records import ModelIndex
from ..serialize import ModelSummary, to_json


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .keras, .h5, .weights.h5/.weights.json file or a SavedModel directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--no-weights", action="store_true", help="omit the weight-shapes column")


def format_table(index: ModelIndex, weights: bool = True) -> str:
    headers = ["Layer (path)", "Class", "Kind", "Output shape", "Params"] + (["Weights"] if weights else [])
    rows = []
    for layer in index.layers:
        kind = f"{layer.kind}{'?' if layer.kind_inferred else ''}"
        row = [layer.path, layer.class_name or "?", kind, shape_text(layer.output_shape), f"{layer.params:,}"]
        if weights:
            row.append(" ".join(f"{w.name}{list(w.shape)}" for w in layer.weights))
        rows.append(row)
    title = f'Model: "{index.name or "?"}"  format: {index.format}'
    if index.writer:
        title += f"  written by {index.writer}"
    out = table_lines(headers, rows, right=(4,), max_width=60, title=title)
    out.append(f"Total params: {count_text(index.total_params)} ({index.total_bytes / 1e6:.2f} MB)")
    out.append(f"Trainable params: {count_text(index.trainable_params)}")
    out.append(f"Non-trainable params: {count_text(index.non_trainable_params)}")
    if any(layer.kind_inferred for layer in index.layers):
        out.append("'?' after a kind: inferred from weight names and shapes, not read from a config")
    for warning in index.warnings:
        out.append(f"note: {warning}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    with open_model(args.model) as index:
        if args.json:
            json.dump(to_json(ModelSummary.from_index(index)), sys.stdout)
            sys.stdout.write("\n")
        else:
            print(format_table(index, weights=not args.no_weights))
    return 0
