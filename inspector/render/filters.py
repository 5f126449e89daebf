"""Figures of filters: the kernels feeding one map, a whole layer, first-layer RGB filters.

All builders return a :class:`~matplotlib.figure.Figure` (no pyplot) and take an optional ``fig`` to
draw into. Colours: a diverging map with zero neutral (``RdBu_r``, ``vmin = -vmax``), shared across
the figure by default so kernels compare directly, or per kernel. Large grids are paged, with a note
such as "showing 64 of 512 (sorted by norm)".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..filters import FilterSet, SortOrder
from ..records import LayerKind
from .common import DIVERGING, Scale, format_number, grid_shape, new_figure, page_range, rgb_image, symmetric_limit

__all__ = [
    "is_rgb_filterset",
    "plot_filterset",
    "plot_kernel",
    "plot_layer",
    "plot_rgb_filters",
]

_CELL = 1.15  # inches per kernel cell: readable for 3×3 and 11×11 alike (imshow scales pixels)


def plot_kernel(kernel: np.ndarray, ax: Axes, *, vmax: float | None = None, cmap: str = DIVERGING,
                title: str | None = None, xlabel: str | None = None, fontsize: float = 7) -> object:
    """Draw one 1-D or 2-D kernel on ``ax`` (1-D as a one-row strip); returns the image artist."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim == 0:
        k = k.reshape(1, 1)
    elif k.ndim == 1:
        k = k[None, :]
    elif k.ndim > 2:
        k = k.reshape(-1, k.shape[-1])
    v = symmetric_limit(k) if vmax is None else vmax
    image = ax.imshow(k, cmap=cmap, vmin=-v, vmax=v, interpolation="nearest", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize, pad=2)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=fontsize - 1, labelpad=1)
    return image


def _axes_right(fig: Figure, colorbar: bool) -> float:
    """Right edge of the kernel grid, leaving a fixed 1.1 inch for the colour bar and its labels."""
    return 1 - (1.1 if colorbar else 0.1) / fig.get_figwidth()


def _colorbar(fig: Figure, image: object) -> None:
    width = fig.get_figwidth()
    cax = fig.add_axes((1 - 0.85 / width, 0.1, 0.15 / width, 0.6))
    fig.colorbar(image, cax=cax).ax.tick_params(labelsize=7)  # type: ignore[arg-type]


def _title_room(title: str) -> float:
    """Inches to keep free above the axes for a suptitle of this many lines."""
    return 0.3 + 0.2 * (title.count("\n") + 1)


def _title(fs: FilterSet, shown: int, start: int) -> str:
    what = f"{fs.layer_path} · map {fs.map_index} · {fs.class_name or fs.kind}"
    if fs.stage not in ("kernel",):
        what += f" ({fs.stage} stage)"
    bias = format_number(fs.bias) + (" (BN folded)" if fs.bn_folded else "")
    line2 = f"{fs.n_inputs} input channel{'s' if fs.n_inputs != 1 else ''}"
    if fs.n_inputs_total and fs.n_inputs_total != fs.n_inputs:
        line2 += f" of {fs.n_inputs_total}"
    line2 += f" · kernel {'×'.join(str(d) for d in fs.spatial_shape) or 'scalar'} · bias {bias}"
    if shown < fs.n_inputs:
        order = "sorted by norm" if fs.sorted_by == SortOrder.NORM else "in channel order"
        line2 += f"\nshowing {start}-{start + shown - 1}: {shown} of {fs.n_inputs} ({order})"
    return f"{what}\n{line2}"


def plot_filterset(fs: FilterSet, *, fig: Figure | None = None, scale: str = Scale.SHARED,
                   max_kernels: int = 64, page: int = 0, cols: int | None = None, cmap: str = DIVERGING,
                   as_image: bool = True, dpi: float = 100) -> Figure:
    """The kernels feeding one map, one cell per input channel, labelled ``in c`` with its norm.

    Dense columns that read a flattened image are drawn as one image per producer map
    (``as_image``); other Dense columns as a weight-per-input line. 1-D kernels are strips, 3-D
    kernels one row of depth slices per input channel.
    """
    scale = Scale(scale)
    if fs.kind is LayerKind.DENSE and as_image:
        fs = fs.image_kernels() or fs
    rank = fs.kernels.ndim - 1
    if rank == 0:
        return _plot_column(fs, fig=fig, dpi=dpi)
    per_page = max_kernels if rank != 3 else min(max_kernels, 16)
    start, stop = page_range(fs.n_inputs, per_page, page)
    kernels, channels = fs.kernels[start:stop], fs.input_channels[start:stop]
    norms = fs.norms[start:stop]
    shared = symmetric_limit(kernels) if scale is Scale.SHARED else None
    title = _title(fs, len(kernels), start)
    if rank == 1:
        return _plot_strips(fs, kernels, channels, norms, shared, title, fig=fig, cmap=cmap, dpi=dpi)
    if rank == 3:
        return _plot_volumes(kernels, channels, norms, shared, title, fig=fig, cmap=cmap, dpi=dpi)
    kh, kw = kernels.shape[1:]
    rows, ncols = grid_shape(len(kernels), cols, aspect=kw / kh)
    cell_h = _CELL * min(max(kh / kw, 0.4), 2.5)
    fig = new_figure(fig, ncols * _CELL + 1.4, rows * (cell_h + 0.3) + 1.0, dpi)
    axes = fig.subplots(rows, ncols, squeeze=False)
    image = None
    for n, ax in enumerate(axes.flat):
        if n >= len(kernels):
            ax.set_axis_off()
            continue
        image = plot_kernel(kernels[n], ax, vmax=shared, cmap=cmap, title=f"in {channels[n]}",
                            xlabel=f"‖k‖ {format_number(norms[n])}")
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.03, right=_axes_right(fig, shared is not None),
                        top=1 - _title_room(title) / fig.get_figheight(), bottom=0.02, wspace=0.25, hspace=0.6)
    if shared is not None and image is not None:
        _colorbar(fig, image)
    return fig


def _plot_strips(fs: FilterSet, kernels: np.ndarray, channels: np.ndarray, norms: np.ndarray,
                 shared: float | None, title: str, *, fig: Figure | None, cmap: str, dpi: float) -> Figure:
    n, k = kernels.shape
    fig = new_figure(fig, min(3.5 + 0.35 * k, 14), 1.2 + _title_room(title) + 0.22 * n, dpi)
    ax = fig.add_subplot(1, 1, 1)
    if shared is None:  # per-kernel: normalise each row on a copy so every strip spans the colour map
        shown = kernels / np.maximum(np.abs(kernels).max(axis=1, keepdims=True), 1e-30)
        vmax = 1.0
    else:
        shown, vmax = kernels, shared
    image = ax.imshow(shown, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest", aspect="auto")
    ax.set_yticks(range(n), [f"in {c}  ‖k‖ {format_number(v)}" for c, v in zip(channels, norms, strict=True)],
                  fontsize=7)
    ax.set_xticks(range(k), [str(t) for t in range(k)], fontsize=7)
    ax.set_xlabel("tap", fontsize=8)
    fig.suptitle(title, fontsize=9)
    if shared is not None:
        fig.colorbar(image, ax=ax, fraction=0.04).ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.3, right=0.9, top=1 - _title_room(title) / fig.get_figheight(),
                        bottom=0.5 / fig.get_figheight())
    return fig


def _plot_volumes(kernels: np.ndarray, channels: np.ndarray, norms: np.ndarray, shared: float | None,
                  title: str, *, fig: Figure | None, cmap: str, dpi: float) -> Figure:
    n, depth = kernels.shape[:2]
    fig = new_figure(fig, depth * _CELL + 1.8, n * (_CELL + 0.2) + 1.0, dpi)
    axes = fig.subplots(n, depth, squeeze=False)
    image = None
    for r in range(n):
        vmax = shared if shared is not None else symmetric_limit(kernels[r])
        for z in range(depth):
            image = plot_kernel(kernels[r, z], axes[r, z], vmax=vmax, cmap=cmap,
                                title=f"depth {z}" if r == 0 else None)
        axes[r, 0].set_ylabel(f"in {channels[r]}\n‖k‖ {format_number(norms[r])}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.12, right=_axes_right(fig, shared is not None),
                        top=1 - _title_room(title) / fig.get_figheight(), bottom=0.02, wspace=0.15, hspace=0.3)
    if shared is not None and image is not None:
        _colorbar(fig, image)
    return fig


def _plot_column(fs: FilterSet, *, fig: Figure | None, dpi: float) -> Figure:
    """A Dense column that is not an image: weight per input unit, strongest inputs marked."""
    fig = new_figure(fig, 8, 3.2, dpi)
    ax = fig.add_subplot(1, 1, 1)
    order = np.argsort(fs.input_channels, kind="stable")
    x, w = fs.input_channels[order], fs.kernels[order]
    if len(w) <= 64:
        ax.bar(x, w, color=np.where(w >= 0, "#b2182b", "#2166ac"), width=0.8)
    else:
        ax.plot(x, w, lw=0.6, color="#444444")
    ax.axhline(0, color="black", lw=0.5)
    top = np.argsort(-np.abs(w))[:5]
    for t in top:
        ax.annotate(f"in {x[t]}", (x[t], w[t]), fontsize=6, ha="center",
                    va="bottom" if w[t] >= 0 else "top")
    ax.set_xlabel("input unit", fontsize=8)
    ax.set_ylabel("weight", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.suptitle(_title(fs, fs.n_inputs, 0), fontsize=9)
    fig.subplots_adjust(top=0.8, bottom=0.16)
    return fig


def is_rgb_filterset(fs: FilterSet) -> bool:
    """Three 2-D input kernels: drawable as one colour image (first-layer filters)."""
    return fs.kernels.ndim == 3 and fs.n_inputs == 3 and fs.kind in (LayerKind.CONV, LayerKind.SEPARABLE)


def plot_rgb_filters(sets: Sequence[FilterSet], *, fig: Figure | None = None, cols: int | None = None,
                     normalize: str = "symmetric", max_maps: int = 256, dpi: float = 100) -> Figure:
    """First-layer filters as colour images, one per map (the classic AlexNet figure).

    Each kernel ``(3, kh, kw)`` becomes ``(kh, kw, 3)`` in input-channel order (R, G, B for an RGB
    input) and is normalised on a copy: ``symmetric`` keeps zero grey, ``minmax`` stretches.
    """
    sets = [fs.channel_order() for fs in sets[:max_maps]]
    if not sets or not all(is_rgb_filterset(fs) for fs in sets):
        from ..errors import SelectionError

        raise SelectionError("RGB display needs 2-D kernels reading exactly 3 input channels; accepted: a first "
                             "conv layer on an RGB input. Received: "
                             f"{[tuple(fs.kernels.shape) for fs in sets[:3]]}")
    rows, ncols = grid_shape(len(sets), cols)
    fig = new_figure(fig, max(ncols * 0.9 + 0.5, 4.0), rows * 1.05 + 1.0, dpi)
    axes = fig.subplots(rows, ncols, squeeze=False)
    for n, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if n < len(sets):
            fs = sets[n]
            ax.imshow(rgb_image(np.moveaxis(fs.kernels, 0, -1), normalize), interpolation="nearest")
            ax.set_title(f"map {fs.map_index}", fontsize=6, pad=1)
    first = sets[0]
    fig.suptitle(f"{first.layer_path} · {len(sets)} RGB filters · {'×'.join(map(str, first.spatial_shape))}\n"
                 f"colour = input channels 0/1/2 ({normalize} normalisation)", fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.75 / fig.get_figheight(), bottom=0.02,
                        wspace=0.1, hspace=0.35)
    return fig


def plot_layer(sets: Sequence[FilterSet], *, fig: Figure | None = None, max_maps: int = 16,
               max_channels: int = 32, cmap: str = DIVERGING, scale: str = Scale.SHARED,
               dpi: float = 100) -> Figure:
    """A layer as a maps × input-channels grid (rows: maps, columns: the kernels each map reads).

    Layers whose maps each read one channel (depthwise) are drawn as a grid of maps. Dense layers
    without an image shape are drawn as the kernel matrix. Both axes are capped, with a note.
    """
    scale = Scale(scale)
    total_maps = len(sets)
    sets = list(sets[:max_maps])
    if not sets:
        raise ValueError("plot_layer needs at least one FilterSet")
    first = sets[0]
    if first.kind is LayerKind.DENSE:
        images = [fs.image_kernels() for fs in sets]
        if any(im is None for im in images):
            return _plot_dense_matrix(sets, total_maps, fig=fig, cmap=cmap, dpi=dpi)
        sets = [im for im in images if im is not None]
        first = sets[0]
    n_in = max(fs.n_inputs for fs in sets)
    shown_in = min(n_in, max_channels)
    stack = [fs.kernels[:shown_in] for fs in sets]
    shared = symmetric_limit(*stack) if scale is Scale.SHARED else None
    same_channels = all(np.array_equal(fs.input_channels[:shown_in], first.input_channels[:shown_in])
                        for fs in sets)
    rows, cols = len(sets), shown_in
    fig = new_figure(fig, cols * 0.75 + 1.6, rows * 0.8 + 1.2, dpi)
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for r, fs in enumerate(sets):
        vmax = shared if shared is not None else symmetric_limit(fs.kernels)
        for c in range(cols):
            ax = axes[r, c]
            if c >= fs.n_inputs:
                ax.set_axis_off()
                continue
            k = fs.kernels[c]
            if k.ndim == 3:
                k = k[k.shape[0] // 2]  # 3-D kernels: middle depth slice in the overview
            label = f"in {fs.input_channels[c]}" if (r == 0 or not same_channels) else None
            image = plot_kernel(k, ax, vmax=vmax, cmap=cmap, title=label, fontsize=6)
        axes[r, 0].set_ylabel(f"map {fs.map_index}\nb {format_number(fs.bias)}", fontsize=6)
    notes = []
    if total_maps > len(sets):
        notes.append(f"showing maps {sets[0].map_index}-{sets[-1].map_index}: {len(sets)} of {total_maps}")
    if n_in > shown_in:
        order = "sorted by norm" if first.sorted_by == SortOrder.NORM else "in channel order"
        notes.append(f"showing {shown_in} of {n_in} input channels ({order})")
    if first.kernels.ndim == 4:
        notes.append("3-D kernels: middle depth slice")
    fig.suptitle(f"{first.layer_path} · {first.class_name or first.kind} · {first.stage} · maps × input channels"
                 + (f"\n{'; '.join(notes)}" if notes else ""), fontsize=8)
    fig.subplots_adjust(left=0.08, right=_axes_right(fig, shared is not None), top=1 - 0.7 / fig.get_figheight(),
                        bottom=0.02, wspace=0.15, hspace=0.35)
    if shared is not None and image is not None:
        _colorbar(fig, image)
    return fig


def _plot_dense_matrix(sets: Sequence[FilterSet], total: int, *, fig: Figure | None, cmap: str,
                       dpi: float) -> Figure:
    columns = np.stack([fs.channel_order().kernels for fs in sets], axis=1)  # (in, maps)
    fig = new_figure(fig, 7, 5, dpi)
    ax = fig.add_subplot(1, 1, 1)
    v = symmetric_limit(columns)
    image = ax.imshow(columns, cmap=cmap, vmin=-v, vmax=v, aspect="auto", interpolation="nearest")
    ax.set_xlabel("output unit", fontsize=8)
    ax.set_ylabel("input unit", fontsize=8)
    ax.set_xticks(range(len(sets)), [str(fs.map_index) for fs in sets], fontsize=6)
    fig.colorbar(image, ax=ax).ax.tick_params(labelsize=7)
    note = f" (showing {len(sets)} of {total} units)" if total > len(sets) else ""
    fig.suptitle(f"{sets[0].layer_path} · Dense kernel{note}", fontsize=9)
    return fig
