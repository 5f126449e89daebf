"""Figures for activations and for the decomposition of one output map.

Builders return a :class:`matplotlib.figure.Figure` made directly (no pyplot: no global state).
They draw arrays that :mod:`inspector.activations` / :mod:`inspector.decompose` computed and compute
nothing but display slices, so a figure never disagrees with the saved NPZ.

Display of any spatial rank: 2-D maps as images, 1-D maps as line plots, 3-D maps as their middle
depth slice (said in the title), and Dense outputs (no spatial axes) as bar charts. Grids of 2-D
maps are one mosaic image (:mod:`.mosaic`), fast enough for the dashboard; line plots and the
decomposition's columns keep one axes per panel (they need axes: y-scales, per-panel titles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..decompose import Decomposition
from .common import DEFAULT_DPI, LABEL_PT, format_number, wrap_to_width
from .mosaic import mosaic_figure

__all__ = ["activation_grid_figure", "decomposition_figure"]

_DIVERGING = "RdBu_r"  # signed quantities (kernels, contributions): white = 0


def _display(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """A 0-, 1- or 2-D view of one map, and a note when a 3-D map was sliced."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 3:
        mid = a.shape[0] // 2
        return a[mid], f" [depth {mid}/{a.shape[0]}]"
    return a, ""


def _draw(ax: Axes, arr: np.ndarray, *, vmin: float | None, vmax: float | None, cmap: str, title: str,
          fontsize: float = 7.0) -> object | None:
    view, note = _display(arr)
    ax.set_title(title + note, fontsize=fontsize)
    if view.ndim == 2:
        img = ax.imshow(view, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        return img
    if view.ndim == 1:
        ax.plot(view, lw=1.0, color="#4c72b0")
        if vmin is not None and vmax is not None and vmin < vmax:
            ax.set_ylim(vmin, vmax)
        ax.tick_params(labelsize=LABEL_PT)
        return None
    ax.bar([0], [float(view)], color="#4c72b0")
    ax.set_xticks([])
    ax.tick_params(labelsize=LABEL_PT)
    return None


def _sym(values: Sequence[np.ndarray]) -> float:
    peak = max((float(np.max(np.abs(v))) for v in values if np.size(v)), default=0.0)
    return peak if peak > 0 else 1.0


def activation_grid_figure(acts: np.ndarray, *, title: str | None = None, maps: Sequence[int] | None = None,
                           shared_scale: bool = False, cmap: str = "viridis", max_maps: int = 64,
                           ncols: int | None = None, panel: float = 1.3) -> Figure:
    """One sample's activation maps of a layer, ``acts`` channels_last ``(*spatial, C)``.

    ``shared_scale`` gives all maps one colour scale (compare strengths across maps); otherwise each
    map is scaled to its own range (see each map's structure). At most ``max_maps`` maps are drawn.
    """
    a = np.asarray(acts)
    if a.ndim == 1:  # Dense / pooled output: one bar per unit
        fig = Figure(figsize=(max(4.0, 0.12 * a.size + 2), 2.8), layout="constrained")
        ax = fig.add_subplot()
        ax.bar(np.arange(a.size), a, color="#4c72b0")
        ax.set_xlabel("unit")
        ax.set_ylabel("activation")
        ax.set_title(title or "activations", fontsize=9)
        return fig
    channels = a.shape[-1]
    chosen = list(range(channels)) if maps is None else [int(m) for m in maps]
    shown = chosen[:max_maps]
    suffix = f" (first {len(shown)} of {len(chosen)} maps)" if len(shown) < len(chosen) else ""
    scale = "shared colour scale" if shared_scale else "each map on its own scale (min to max)"
    if a.ndim - 1 in (2, 3) and shown:
        return _map_mosaic(a, shown, title=f"{title or 'activations'}{suffix}; {scale}", shared_scale=shared_scale,
                           cmap=cmap, ncols=ncols, panel=panel)
    cols = ncols or min(len(shown), max(1, math.ceil(math.sqrt(len(shown) * 1.6))))
    rows = max(1, math.ceil(len(shown) / cols))
    fig = Figure(figsize=(cols * panel + 0.8, rows * panel + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    vmin = vmax = None
    if shared_scale and shown:
        vmin, vmax = float(np.min(a[..., shown])), float(np.max(a[..., shown]))
    for k, ax in enumerate(axes.flat):
        if k >= len(shown):
            ax.set_axis_off()
            continue
        m = shown[k]
        _draw(ax, a[..., m], vmin=vmin, vmax=vmax, cmap=cmap, title=f"map {m}")
    fig.suptitle(f"{title or 'activations'}{suffix}; {scale}", fontsize=9)
    return fig


def _map_mosaic(a: np.ndarray, shown: list[int], *, title: str, shared_scale: bool, cmap: str,
                ncols: int | None, panel: float) -> Figure:
    """2-D (or 3-D: middle depth slice) maps ``shown`` of ``a`` ``(*spatial, C)`` as one mosaic."""
    tiles = np.moveaxis(np.asarray(a, dtype=np.float64)[..., shown], -1, 0)  # (n, *spatial), a copy
    if tiles.ndim == 4:
        mid = tiles.shape[1] // 2
        tiles = tiles[:, mid]
        title += f"; 3-D maps: depth slice {mid} of {a.shape[0]}"
    n, h, w = tiles.shape
    flat = tiles.reshape(n, -1)
    lo_each, hi_each = np.nanmin(flat, axis=1), np.nanmax(flat, axis=1)
    flat_maps = [t for t in range(n) if not hi_each[t] > lo_each[t]]  # constant (e.g. dead ReLU): hatched
    zero = [shown[t] for t in flat_maps if hi_each[t] == 0]
    const = [shown[t] for t in flat_maps if hi_each[t] != 0]
    if zero:
        title += f"; {_list(zero)} all zero (hatched)"
    if const:
        title += f"; {_list(const)} constant (hatched)"
    ticklabels = None
    if shared_scale:
        vmin, vmax = float(np.nanmin(tiles)), float(np.nanmax(tiles))
    else:  # each map stretched to [0, 1] on the copy, so a weak map's structure is as visible as a strong one's
        lo = lo_each[:, None, None]
        span = hi_each[:, None, None] - lo
        tiles = np.where(span > 0, (tiles - lo) / np.where(span > 0, span, 1.0), 0.5)
        vmin, vmax = 0.0, 1.0
        ticklabels = ["map min", "", "map max"]
    cols = ncols or min(n, max(1, math.ceil(math.sqrt(n * 1.6 * h / max(w, 1)))))
    return mosaic_figure(tiles, [f"map {m}" for m in shown], title=title, cols=cols, vmin=vmin, vmax=vmax, cmap=cmap,
                         colorbar=True, bar_ticklabels=ticklabels, tile_in=panel * 0.8, marked=flat_maps,
                         dpi=DEFAULT_DPI)


def _list(maps: Sequence[int], most: int = 12) -> str:
    """``maps 3, 7, 9`` (at most ``most`` numbers, then how many more)."""
    head = ", ".join(str(m) for m in maps[:most])
    more = f" and {len(maps) - most} more" if len(maps) > most else ""
    return f"map{'s' if len(maps) != 1 else ''} {head}{more}"


def decomposition_figure(dec: Decomposition, *, top: int = 6, cmap: str = "viridis",
                         panel: float = 1.6) -> Figure:
    """How output map j is made: input maps, their kernels and contributions, then the sum.

    One row per input channel (the ``top`` strongest by contribution energy when there are more),
    columns: input map (own scale and colour bar) · kernel · contribution (kernels on one symmetric
    scale, contributions on another, each with one colour bar, so their sizes compare). The last
    row: Σ of all contributions, + bias → pre-activation (one scale) → activation.

    The panels are placed by hand (a fixed grid in inches) rather than by constrained layout: with
    ~30 axes and their colour bars the layout solver alone took longer than drawing (the dashboard
    redraws this figure at every map step).
    """
    order = dec.ranking[: max(1, min(top, dec.n_inputs))]
    n_rows = len(order) + 1
    lines = any(np.asarray(a).ndim == 1 for a in (dec.inputs[0], dec.contributions[0]))
    gap = 0.6 if lines else 0.3  # left of each panel: room for a line plot's tick labels
    bar_w, bar_room = 0.1, 0.75  # a colour bar and the room its tick labels need
    title_h, row_gap = 0.25, 0.12
    cols = [gap + c * (gap + panel + bar_room) for c in range(4)]
    width = cols[3] + panel + bar_room
    head_h = 0.55
    height = head_h + n_rows * (panel + title_h + row_gap) + 0.1
    fig = Figure(figsize=(width, height), dpi=DEFAULT_DPI)

    def box(row: int, col: int) -> Axes:
        y = height - head_h - (row + 1) * (panel + title_h + row_gap) + row_gap
        return fig.add_axes((cols[col] / width, y / height, panel / width, panel / height))

    def bar(image: object | None, col: int, rows: tuple[int, int], label: str | None = None) -> None:
        if image is None:
            return
        top_y = height - head_h - rows[0] * (panel + title_h + row_gap) - title_h
        bottom_y = height - head_h - (rows[1] + 1) * (panel + title_h + row_gap) + row_gap
        cax = fig.add_axes(((cols[col] + panel + 0.08) / width, bottom_y / height, bar_w / width,
                            (top_y - bottom_y) / height))
        _bar(fig, image, cax, label=label, cax=True)

    c_lim = _sym([dec.contributions[i] for i in order])
    k_lim = _sym([dec.kernels[i] for i in order])
    total_energy = float(dec.energy.sum()) or 1.0
    kernel_img = contrib_img = None
    for r, pos in enumerate(order):
        ch = int(dec.input_channels[pos])
        share = 100.0 * float(dec.energy[pos]) / total_energy
        img = _draw(box(r, 0), dec.inputs[pos], vmin=None, vmax=None, cmap=cmap, title=f"input map {ch}")
        bar(img, 0, (r, r))
        kernel_ax = box(r, 1)
        if dec.kernels[pos].ndim == 0:  # Dense: the weight is a scalar
            kernel_ax.set_axis_off()
            kernel_ax.text(0.5, 0.5, f"weight\n{float(dec.kernels[pos]):.4g}", ha="center", va="center",
                           fontsize=8, transform=kernel_ax.transAxes)
        else:
            kernel_img = _draw(kernel_ax, dec.kernels[pos], vmin=-k_lim, vmax=k_lim, cmap=_DIVERGING,
                               title=f"kernel [{ch}→{dec.map_index}]") or kernel_img
        contrib_img = _draw(box(r, 2), dec.contributions[pos], vmin=-c_lim, vmax=c_lim, cmap=_DIVERGING,
                            title=f"contribution ({share:.1f}% energy)") or contrib_img
    bar(kernel_img, 1, (0, len(order) - 1), label="kernel weight")
    bar(contrib_img, 2, (0, len(order) - 1), label="contribution")
    last = n_rows - 1
    p_lim = _sym([dec.preactivation, dec.contributions.sum(0)])
    _draw(box(last, 0), dec.contributions.sum(0), vmin=-p_lim, vmax=p_lim, cmap=_DIVERGING,
          title=f"Σ all {dec.n_inputs} contributions")
    bias_ax = box(last, 1)
    bias_ax.set_axis_off()
    bias_ax.text(0.5, 0.5, f"+ bias\n{dec.bias:.4g}", ha="center", va="center", fontsize=9,
                 transform=bias_ax.transAxes)
    pre = _draw(box(last, 2), dec.preactivation, vmin=-p_lim, vmax=p_lim, cmap=_DIVERGING, title="pre-activation")
    bar(pre, 2, (last, last))
    bar(_draw(box(last, 3), dec.output, vmin=None, vmax=None, cmap=cmap, title=f"output ({dec.activation})"),
        3, (last, last))
    rest = dec.n_inputs - len(order)
    head = (f"{dec.layer_path} map {dec.map_index}: "
            f"{'top ' + str(len(order)) + ' of ' if rest else ''}{dec.n_inputs} input channels"
            f"{' (BN folded)' if dec.bn_folded else ''}; max |Σ+b − Keras| = {dec.max_abs_error:.2g}"
            f" (rel {dec.max_rel_error:.1e})")
    fig.suptitle(wrap_to_width(head, width - 0.4, 9), fontsize=9, y=1 - 0.08 / height, va="top")
    return fig


def _bar(fig: Figure, image: object | None, ax: Axes | Sequence[Axes] | np.ndarray, label: str | None = None,
         *, cax: bool = False) -> None:
    """A slim colour bar beside ``ax`` (or spanning several axes) for ``image`` (None: a line plot);
    ``cax=True``: ``ax`` is the bar's own axes, placed by the caller."""
    if image is None:
        return
    if cax:
        bar = fig.colorbar(image, cax=ax)  # type: ignore[arg-type]
    else:
        bar = fig.colorbar(image, ax=ax, shrink=0.85, aspect=20 if isinstance(ax, Axes) else 40, pad=0.02)  # type: ignore[arg-type]
    # Three ticks with short labels (no offset text): narrow bars beside small panels stay legible.
    lo, hi = bar.mappable.get_clim()
    bar.set_ticks([lo, (lo + hi) / 2, hi], labels=[format_number(v) for v in (lo, (lo + hi) / 2, hi)])
    bar.ax.tick_params(labelsize=LABEL_PT, length=2, pad=1)
    if label:
        bar.set_label(label, fontsize=LABEL_PT)
