"""Figures of a model comparison (:mod:`inspector.compare`).

* :func:`drift_figure`: one row per layer: the relative change of its kernel (log scale) and the
  spread of its per-map cosines (lowest, median; the matched |cosine| when maps were matched), with
  added / removed / reshaped layers named in place of a bar.
* :func:`changed_maps_figure`: the most-changed maps of one layer, A's kernels, B's kernels and
  their difference in three rows per map, on one shared scale.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..compare import Comparison, LayerComparison, Status
from ..records import LayerRecord, ModelIndex
from .common import DEFAULT_DPI, DIVERGING, LABEL_PT, format_number, symmetric_limit
from .filters import kernel_tiles
from .mosaic import mosaic_figure

__all__ = ["changed_maps_figure", "drift_figure"]

_STATUS_COLOURS = {Status.SAME: "#9e9e9e", Status.CHANGED: "#1f77b4", Status.RESHAPED: "#d62728",
                   Status.ADDED: "#2ca02c", Status.REMOVED: "#ff7f0e"}
_FLOOR = 1e-12  # drawn position of "no change" on the log axis


def drift_figure(result: Comparison, *, max_layers: int = 120, dpi: float = DEFAULT_DPI) -> Figure:
    """Per-layer drift overview of ``result`` (the first ``max_layers`` layers, model order)."""
    layers = result.layers[:max_layers]
    n = max(len(layers), 1)
    height = min(38.0, 1.7 + 0.19 * n)  # + one legend row below the panels
    fig = Figure(figsize=(10.0, height), dpi=dpi, layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    y = np.arange(len(layers))
    changes = [e.relative_change for e in layers]
    finite = [c for c in changes if c is not None and math.isfinite(c) and c > 0]
    top = max(finite) * 3 if finite else 1.0
    low = min(min(finite) / 3, result.tolerance or 1e-7) if finite else 1e-7
    low = max(low, _FLOOR)
    for k, entry in enumerate(layers):
        colour = _STATUS_COLOURS[entry.status]
        c = entry.relative_change
        if entry.status in (Status.ADDED, Status.REMOVED, Status.RESHAPED) or c is None:
            left.text(low, k, f" {entry.status}", va="center", ha="left", fontsize=LABEL_PT, color=colour)
            continue
        value = top if not math.isfinite(c) else max(c, low)
        left.barh(k, value - low, left=low, color=colour, height=0.7)
        if entry.status is Status.SAME:
            left.text(low, k, " same", va="center", ha="left", fontsize=LABEL_PT, color="#555555")
    left.set_xscale("log")
    left.set_xlim(low, top)
    handles = []
    if result.tolerance > 0:
        handles.append(left.axvline(result.tolerance, color="#555555", lw=0.8, ls=":",
                                    label=f"tolerance {result.tolerance:g}"))
    left.set_yticks(y, [_label(e) for e in layers], fontsize=LABEL_PT)
    left.invert_yaxis()
    left.set_xlabel("relative change of the kernel ‖B − A‖ / ‖A‖" + (" (BN folded)" if result.fold_bn else ""))
    for k, entry in enumerate(layers):
        if not entry.maps:
            continue
        cos = np.array([m.cosine for m in entry.maps])
        right.plot([float(np.min(cos)), float(np.max(cos))], [k, k], color="#bbbbbb", lw=1)
        right.plot(float(np.min(cos)), k, "o", color="#d62728", ms=3)
        right.plot(float(np.median(cos)), k, "|", color="#1f77b4", ms=7, mew=1.5)
        if entry.match_median_cosine is not None:  # hollow: the best matching is no correspondence
            right.plot(entry.match_median_cosine, k, "D", ms=3.5, color="#2ca02c",
                       mfc="#2ca02c" if entry.matching is not None else "none")
    right.set_xlim(-1.05, 1.05)
    right.axvline(0, color="#dddddd", lw=0.8)
    right.set_xlabel("per-map cosine (A map j vs B map j)")
    handles += [right.plot([], [], "o", color="#d62728", ms=3, label="lowest cosine")[0],
                right.plot([], [], "|", color="#1f77b4", ms=7, mew=1.5, label="median cosine")[0]]
    matched = [e.matching is not None for e in layers if e.match_median_cosine is not None]
    if any(matched):
        handles.append(right.plot([], [], "D", color="#2ca02c", ms=3.5, label="median |cos| after matching")[0])
    if not all(matched):
        handles.append(right.plot([], [], "D", color="#2ca02c", mfc="none", ms=3.5,
                                  label="median |cos| of the best matching: no map correspondence found")[0])
    # Below both panels, outside the axes: inside, it covered the last rows (VGG16's fc1, fc2, predictions).
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=LABEL_PT, frameon=False)
    counts = ", ".join(f"{v} {k}" for k, v in result.counts().items() if v)
    more = f" (first {max_layers} of {len(result.layers)} layers)" if len(result.layers) > max_layers else ""
    fig.suptitle(f"A {_file_name(result.a)} vs B {_file_name(result.b)}: {counts}{more}", fontsize="medium")
    return fig


def _file_name(path: str) -> str:
    """The model's file (or SavedModel folder) name: a full path says nothing more and pushes the counts off."""
    return _short(PurePath(path).name or path)


def _short(path: str, most: int = 48) -> str:
    return path if len(path) <= most else "…" + path[-(most - 1):]


def _label(entry: LayerComparison) -> str:
    name = entry.path if entry.path_b is None else f"{entry.path} ~ {entry.path_b}"
    return _short(name, 40)


def _filterset(index: ModelIndex, rec: LayerRecord, template: LayerRecord, j: int, fold: bool) -> Any:
    from dataclasses import replace

    from ..filters import filters_for_map

    if rec.kind != template.kind and rec.kind_inferred:
        rec = replace(rec, kind=template.kind, spec=template.spec, class_name=template.class_name)
    return filters_for_map(rec, j, index=index, fold_bn=fold)


def changed_maps_figure(a: ModelIndex, b: ModelIndex, entry: LayerComparison, *, n_maps: int = 4,
                        max_channels: int = 16, dpi: float = DEFAULT_DPI) -> Figure:
    """A's, B's and the difference of the kernels feeding the ``n_maps`` most-changed maps of ``entry``.

    Each map takes three rows (A, B, B − A) of its first ``max_channels`` input-channel kernels (in
    channel order); all rows share one symmetric colour scale. With a matching, B's row shows the
    map of B matched to A's map (sign included), so the difference is the change after matching.
    """
    ra, rb = a.layer(entry.path), b.layer(entry.path_b or entry.path)
    template = rb if ra.kind_inferred and not rb.kind_inferred else ra
    fold = entry.bn_folded is not None
    chosen = entry.most_changed(n_maps)
    rows, labels, row_labels = [], [], []
    notes: list[str] = []
    width = 0
    for change in chosen:
        j = change.map
        jb, sign = entry.counterpart(j)
        fa = _filterset(a, ra, template, j, fold)
        fb = _filterset(b, rb, template, jb, fold)
        ka, kb = fa.kernels[:max_channels], fb.kernels[:max_channels]
        if sign < 0:
            kb = -kb
        ta, note = kernel_tiles(ka)
        tb, _ = kernel_tiles(kb)
        if note:
            notes.append(note)
        width = max(width, len(ta))
        b_name = f"B map {jb}" + (" (−1×)" if sign < 0 else "")
        for tiles, name in ((ta, f"A map {j}, cos {change.cosine:+.3f}"), (tb, b_name), (tb - ta, "B − A")):
            rows.append(tiles)
            row_labels.append(name)
        labels.append(fa.input_channels[:max_channels])
    if not rows:
        raise ValueError(f"layer {entry.path!r} has no per-map comparison to draw")
    h, w = rows[0].shape[1:]
    grid = np.full((len(rows), width, h, w), np.nan)
    for r, tiles in enumerate(rows):
        grid[r, :len(tiles)] = tiles
    v = symmetric_limit(np.nan_to_num(grid))
    # Input channels named once, above the top row, when every map shows the same ones (plain convs); else
    # (grouped convs) above each map's A row. Repeating them above every row made a wall of "in 0 … in 15".
    names = [[f"in {c}" for c in channels] + [""] * (width - len(channels)) for channels in labels]
    same_channels = all(row == names[0] for row in names)
    tile_labels = None if same_channels else [t for row in names for t in row + [""] * (2 * width)]
    total = a.layer(entry.path)
    shown = f"first {width} input channels" if width < (fs_total := _n_inputs(total)) else f"all {fs_total} inputs"
    title = (f"{entry.path}: the {len(chosen)} most-changed maps ({shown}); rows A, B, B\u00a0−\u00a0A; "
             f"shared scale ±{format_number(v)}" + ("; BN folded" if fold else "")
             + ("; B's matched map where it has one" if entry.matching is not None else "")
             + (f"; {notes[0]}" if notes else ""))
    return mosaic_figure(grid.reshape(-1, h, w), tile_labels, title=title, cols=width, vmin=-v,
                         vmax=v, cmap=DIVERGING, row_labels=row_labels, dpi=dpi,
                         col_labels=names[0] if same_channels else None, tile_in=0.55 if h > 1 else 0.4)


def _n_inputs(rec: LayerRecord) -> int:
    from ..filters import input_channel_count

    try:
        return input_channel_count(rec)
    except Exception:
        return 0
