"""``inspector stats MODEL [--layer L] [--json] ...``: weight statistics and filter health.

Without ``--layer``: one row per layer that has weights (all its tensors merged). With ``--layer``:
that layer's per-tensor statistics and a per-map table. ``--json`` prints exactly one JSON object
(NaN/Inf become ``null``) for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..formatting import num_text, table_lines
from ..loader import open_model
from ..records import ModelIndex
from ..service import RULES, StatsOptions, compute_stats, stats_payload
from ..stats import (
    DEFAULT_BINS,
    DEFAULT_DEAD_THRESHOLD,
    DEFAULT_DUP_THRESHOLD,
    DEFAULT_NEAR_ZERO,
    FilterHealth,
    LayerStats,
    TensorStats,
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


def _options(args: argparse.Namespace) -> StatsOptions:
    RULES["dup_threshold"](args.dup_threshold)  # refused even with --no-duplicates: a typo stays a typo
    return StatsOptions(bins=args.bins, near_zero=args.near_zero, near_zero_abs=args.near_zero_abs,
                        dead_threshold=args.dead_threshold,
                        dup_threshold=None if args.no_duplicates else args.dup_threshold, fold_bn=args.fold_bn)


def _nonfinite(t: TensorStats) -> str:
    return "0" if not t.nonfinite else f"{t.nan}/{t.posinf + t.neginf}"


def format_model_table(index: ModelIndex, stats: list[LayerStats]) -> str:
    headers = ["Layer (path)", "Kind", "Params", "Min", "Max", "Mean", "Std", "Zeros %", "NaN/Inf",
               "Dead maps", "Dup pairs"]
    rows = []
    for ls in stats:
        c, h = ls.combined, ls.health
        rows.append([
            ls.path, ls.kind, f"{ls.params:,}", num_text(c.min), num_text(c.max), num_text(c.mean), num_text(c.std),
            f"{100 * c.zero_fraction:.2f}", _nonfinite(c),
            "-" if h is None else f"{len(h.dead)}/{h.n_maps}",
            "-" if h is None or h.dup_threshold is None else str(h.duplicate_pair_count),
        ])
    out = table_lines(headers, rows, right=range(2, 11), title=f'Model: "{index.name or "?"}"  format: {index.format}')
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
        row = [str(j), num_text(float(h.map_norms[j]))]
        if h.bias is not None:
            row.append(num_text(float(h.bias[j])))
        if h.bn_scale is not None and h.bn_bias is not None:
            row += [num_text(float(h.bn_scale[j])), num_text(float(h.effective_norms[j])),
                    num_text(float(h.bn_bias[j]))]
        row.append("NaN/Inf" if j in bad else "DEAD" if j in dead else "")
        row.append(", ".join(f"{k} ({s:+.4f})" for k, s in partners.get(j, [])[:6]))
        rows.append(row)
    return headers, rows


def format_layer_report(ls: LayerStats) -> str:
    out = [f"Layer {ls.path!r} ({ls.class_name or '?'}, {ls.kind}): {ls.params:,} params"]
    headers = ["Weight", "Shape", "Min", "Max", "Mean", "Std", "L1", "L2", "Zeros %", "Near-0 %", "NaN", "Inf"]
    rows = [[t.name, "x".join(map(str, t.shape)) or "scalar", num_text(t.min), num_text(t.max), num_text(t.mean),
             num_text(t.std), num_text(t.l1), num_text(t.l2), f"{100 * t.zero_fraction:.2f}",
             f"{100 * t.near_zero_fraction:.2f}", str(t.nan), str(t.posinf + t.neginf)] for t in ls.tensors]
    out += table_lines(headers, rows, right=range(2, 12))
    h = ls.health
    if h is None:
        out.append("No filters: this layer has no kernel split into output maps.")
        return "\n".join(out)
    stage = " (effective kernel: depthwise · pointwise)" if h.stage == "effective" else ""
    out.append(f"{h.n_maps} output maps{stage}, {h.n_inputs} input channels, groups {h.groups}"
               + (f", BN folded: {h.bn_layer}" if h.bn_layer else ""))
    headers, rows = _map_rows(h)
    out += table_lines(headers, rows, right=range(0, len(headers) - 2))
    out.append(f"Dead: {len(h.dead)} (norm < {h.dead_threshold:g} × median {h.dead_reference:.4g} = "
               f"{h.dead_cutoff:.4g}); NaN/Inf maps: {len(h.nonfinite)}")
    if h.dup_threshold is not None:
        listed = "" if h.duplicate_pair_count == len(h.duplicates) else f" ({len(h.duplicates)} listed)"
        out.append(f"Near-duplicate pairs (|cosine| >= {h.dup_threshold:g}; negative = sign-flipped): "
                   f"{h.duplicate_pair_count}{listed}")
    out += [f"note: {n}" for n in h.notes]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    options = _options(args)  # refused before the model is opened
    with open_model(args.model) as index:
        report = compute_stats(index, args.model, args.layer, options)
        if args.json:
            sys.stdout.write(json.dumps(stats_payload(report), allow_nan=False) + "\n")
        elif report.layer is not None:
            print(format_layer_report(report.layer))
        else:
            print(format_model_table(index, report.layers))
    return 0
