"""``inspector stats MODEL [--layer L] [--json] ...``: weight statistics and filter health.

Without ``--layer``: one row per layer that has weights (all its tensors merged). With ``--layer``:
that layer's per-tensor statistics and a per-map table. ``--json`` prints exactly one JSON object
(NaN/Inf become ``null``) for scripts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

from ..errors import SelectionError, describe_received
from ..loader import open_model
from ..records import ModelIndex
from ..stats import (
    DEFAULT_BINS,
    DEFAULT_DEAD_THRESHOLD,
    DEFAULT_DUP_THRESHOLD,
    DEFAULT_NEAR_ZERO,
    FilterHealth,
    LayerStats,
    TensorStats,
    layer_stats,
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .keras, .h5, .weights.h5/.weights.json file or a SavedModel directory")
    parser.add_argument("--layer", metavar="L", help="one layer (path or unique name): per-tensor and per-map tables")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--dead-threshold", type=float, default=DEFAULT_DEAD_THRESHOLD, metavar="X",
                        help=f"a map is dead below X × the median map norm (default {DEFAULT_DEAD_THRESHOLD:g})")
    parser.add_argument("--dup-threshold", type=float, default=DEFAULT_DUP_THRESHOLD, metavar="X",
                        help=f"maps are near duplicates when |cosine| >= X (default {DEFAULT_DUP_THRESHOLD:g})")
    parser.add_argument("--no-duplicates", action="store_true",
                        help="skip the duplicate search (the map Gram matrix; the slow part on huge Dense layers)")
    parser.add_argument("--near-zero", type=float, default=DEFAULT_NEAR_ZERO, metavar="X",
                        help=f"near zero: |w| < X × max|w| per tensor (default {DEFAULT_NEAR_ZERO:g})")
    parser.add_argument("--near-zero-abs", type=float, default=None, metavar="X",
                        help="near zero: |w| < X (absolute; overrides --near-zero)")
    parser.add_argument("--fold-bn", action="store_true",
                        help="fold a directly following BatchNormalization: per-map scale, dead maps on folded norms")
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS, help="histogram bins (JSON output)")


def _check(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.dead_threshold) and args.dead_threshold >= 0):
        raise SelectionError("--dead-threshold is a relative factor >= 0, e.g. 1e-3. "
                             f"Received: {describe_received(args.dead_threshold)}")
    if not 0 < args.dup_threshold <= 1:
        raise SelectionError("--dup-threshold is a cosine similarity in (0, 1], e.g. 0.99. "
                             f"Received: {describe_received(args.dup_threshold)}")
    if not (math.isfinite(args.near_zero) and args.near_zero >= 0):
        raise SelectionError(f"--near-zero is a relative factor >= 0, e.g. 1e-6. "
                             f"Received: {describe_received(args.near_zero)}")
    if args.near_zero_abs is not None and not (math.isfinite(args.near_zero_abs) and args.near_zero_abs >= 0):
        raise SelectionError(f"--near-zero-abs is an absolute value >= 0, e.g. 1e-8. "
                             f"Received: {describe_received(args.near_zero_abs)}")
    if args.bins < 1:
        raise SelectionError(f"--bins is a positive integer, e.g. 64. Received: {describe_received(args.bins)}")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "bins": args.bins, "near_zero": args.near_zero, "near_zero_abs": args.near_zero_abs,
        "dead_threshold": args.dead_threshold,
        "dup_threshold": None if args.no_duplicates else args.dup_threshold, "fold_bn": args.fold_bn,
    }


def _jsonable(value: Any) -> Any:
    """Plain JSON: NaN/Inf -> null, numpy scalars and arrays -> Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _num(value: float | None, width: int = 10) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = "-" * len(line(headers))
    return [rule, line(headers), rule, *(line(r) for r in rows), rule]


def _nonfinite(t: TensorStats) -> str:
    return "0" if not t.nonfinite else f"{t.nan}/{t.posinf + t.neginf}"


def format_model_table(index: ModelIndex, stats: list[LayerStats]) -> str:
    headers = ["Layer (path)", "Kind", "Params", "Min", "Max", "Mean", "Std", "Zeros %", "NaN/Inf",
               "Dead maps", "Dup pairs"]
    rows = []
    for ls in stats:
        c, h = ls.combined, ls.health
        rows.append([
            ls.path, ls.kind, f"{ls.params:,}", _num(c.min), _num(c.max), _num(c.mean), _num(c.std),
            f"{100 * c.zero_fraction:.2f}", _nonfinite(c),
            "-" if h is None else f"{len(h.dead)}/{h.n_maps}",
            "-" if h is None or h.dup_threshold is None else str(h.duplicate_pair_count),
        ])
    out = [f'Model: "{index.name or "?"}"  format: {index.format}', *_table(headers, rows, set(range(2, 11)))]
    out.append("Statistics over finite values of all the layer's weights; NaN/Inf = NaN count / Inf count.")
    h0 = next((s.health for s in stats if s.health is not None), None)
    if h0 is not None:
        dup = "off" if h0.dup_threshold is None else f"|cosine| >= {h0.dup_threshold:g}"
        out.append(f"Dead: map norm < {h0.dead_threshold:g} × median map norm; duplicates: {dup}.")
    return "\n".join(out)


def _map_rows(h: FilterHealth) -> tuple[list[str], list[list[str]]]:
    partners = h.duplicate_partners()
    headers = ["Map", "Norm"] + (["Bias"] if h.bias is not None else [])
    if h.bn_scale is not None:
        headers += ["BN scale", "Folded norm", "Folded bias"]
    headers += ["Status", "Duplicates (cosine)"]
    dead, bad = set(h.dead.tolist()), set(h.nonfinite.tolist())
    rows = []
    for j in range(h.n_maps):
        row = [str(j), _num(float(h.map_norms[j]))]
        if h.bias is not None:
            row.append(_num(float(h.bias[j])))
        if h.bn_scale is not None and h.bn_bias is not None:
            row += [_num(float(h.bn_scale[j])), _num(float(h.effective_norms[j])), _num(float(h.bn_bias[j]))]
        row.append("NaN/Inf" if j in bad else "DEAD" if j in dead else "")
        row.append(", ".join(f"{k} ({s:+.4f})" for k, s in partners.get(j, [])[:6]))
        rows.append(row)
    return headers, rows


def format_layer_report(ls: LayerStats) -> str:
    out = [f"Layer {ls.path!r} ({ls.class_name or '?'}, {ls.kind}): {ls.params:,} params"]
    headers = ["Weight", "Shape", "Min", "Max", "Mean", "Std", "L1", "L2", "Zeros %", "Near-0 %", "NaN", "Inf"]
    rows = [[t.name, "x".join(map(str, t.shape)) or "scalar", _num(t.min), _num(t.max), _num(t.mean),
             _num(t.std), _num(t.l1), _num(t.l2), f"{100 * t.zero_fraction:.2f}",
             f"{100 * t.near_zero_fraction:.2f}", str(t.nan), str(t.posinf + t.neginf)] for t in ls.tensors]
    out += _table(headers, rows, set(range(2, 12)))
    h = ls.health
    if h is None:
        out.append("No filters: this layer has no kernel split into output maps.")
        return "\n".join(out)
    stage = " (effective kernel: depthwise · pointwise)" if h.stage == "effective" else ""
    out.append(f"{h.n_maps} output maps{stage}, {h.n_inputs} input channels, groups {h.groups}"
               + (f", BN folded: {h.bn_layer}" if h.bn_layer else ""))
    headers, rows = _map_rows(h)
    out += _table(headers, rows, set(range(0, len(headers) - 2)))
    out.append(f"Dead: {len(h.dead)} (norm < {h.dead_threshold:g} × median {h.dead_reference:.4g} = "
               f"{h.dead_cutoff:.4g}); NaN/Inf maps: {len(h.nonfinite)}")
    if h.dup_threshold is not None:
        listed = "" if h.duplicate_pair_count == len(h.duplicates) else f" ({len(h.duplicates)} listed)"
        out.append(f"Near-duplicate pairs (|cosine| >= {h.dup_threshold:g}; negative = sign-flipped): "
                   f"{h.duplicate_pair_count}{listed}")
    out += [f"note: {n}" for n in h.notes]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    _check(args)
    opts = _options(args)
    with open_model(args.model) as index:
        if args.layer:
            layer = index.layer(args.layer)
            ls = layer_stats(layer, index=index, **opts)
            payload: dict[str, Any] = {"model": args.model, "format": str(index.format), "layer": ls.to_dict()}
            text = format_layer_report(ls)
        else:
            stats = [layer_stats(layer, index=index, **opts) for layer in index.layers if layer.weights]
            payload = {"model": args.model, "format": str(index.format), "name": index.name,
                       "layers": [s.to_dict(histogram=False) for s in stats]}
            for entry in payload["layers"]:
                if entry["health"] is not None:  # per-map arrays belong to --layer; keep the summary short
                    for key in ("map_norms", "bias", "bn_scale", "bn_bias", "effective_norms"):
                        entry["health"].pop(key, None)
            text = format_model_table(index, stats)
        if args.json:
            sys.stdout.write(json.dumps(_jsonable(payload), allow_nan=False) + "\n")
        else:
            print(text)
    return 0
