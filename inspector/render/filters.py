"""Figures of filters: the kernels feeding one map, a whole layer, first-layer RGB filters.

All builders return a :class:`~matplotlib.figure.Figure` (no pyplot) and take an optional ``fig`` to
draw into. Colours: a diverging map with zero neutral (``RdBu_r``, ``vmin = -vmax``), shared across
the figure by default so kernels compare directly, or per kernel. Large grids are paged, with a note
such as "showing 64 of 512 (sorted by norm)".

Grids of 2-D kernels (one map's kernels, RGB filters, a layer's maps × channels, 3-D depth slices)
are mosaics (:mod:`.mosaic`): one image and plain text labels, fast enough for the dashboard's
per-map budget, so the CLI, the exports and the dashboard draw with the same functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..filters import ConsumerSlice, FilterSet, SortOrder
from ..records import LayerKind
from .common import (
    DEFAULT_DPI,
    DIVERGING,
    LABEL_PT,
    Scale,
    clip_counts,
    colorbar_extend,
    format_number,
    grid_shape,
    new_figure,
    page_range,
    rgb_image,
    symmetric_limit,
    wrap_to_width,
)
from .mosaic import mosaic_figure

if TYPE_CHECKING:
    from ..records import LayerRecord, ModelIndex, TensorRef

__all__ = [
    "MontageKind",
    "display_set",
    "is_rgb_filterset",
    "kernel_page",
    "kernel_tiles",
    "kernels_per_page",
    "layer_color_limit",
    "layer_montage",
    "montage_kind",
    "montage_page_count",
    "plot_consumer_slice",
    "plot_filterset",
    "plot_kernel",
    "plot_layer",
    "plot_rgb_filters",
]

_TILE_IN = 0.85  # inches per mosaic tile (longer side); labels take the gaps between tiles
_MAX_VOLUMES = 16  # 3-D kernels per page: each is a row of depth slices


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


def kernels_per_page(fs: FilterSet, max_kernels: int = 64) -> int:
    """How many kernels one page of :func:`plot_filterset` holds: ``max_kernels``, but at most 16
    3-D kernels (each is a whole row of depth slices)."""
    return max(1, max_kernels if fs.kernels.ndim - 1 != 3 else min(max_kernels, _MAX_VOLUMES))


def kernel_page(fs: FilterSet, max_kernels: int = 64, page: int = 0) -> tuple[int, int]:
    """[start, stop) of the kernels :func:`plot_filterset` draws for ``page`` (clamped to the last
    page). Callers use it to say which channels are shown."""
    return page_range(fs.n_inputs, kernels_per_page(fs, max_kernels), page)


def _scale_note(scale: Scale, vmax: float | None, *, fixed: bool = False, clipped: tuple[int, int] = (0, 0),
                total: int = 0, fixed_word: str = "fixed") -> str:
    if scale is Scale.PER_KERNEL:
        return "each kernel on its own scale (±1 = its max |w|)"
    if not fixed:
        return f"shared scale ±{format_number(vmax)}"
    note = f"{fixed_word} scale ±{format_number(vmax)}"
    if sum(clipped):
        note += f": {sum(clipped)} of {total} values clipped"
    return note


def display_set(fs: FilterSet, as_image: bool = True) -> FilterSet:
    """What is drawn for ``fs``: a Dense column reading a flattened image becomes one image per
    producer map (in norm order when ``fs`` was sorted by norm); anything else as it is."""
    if fs.kind is not LayerKind.DENSE or not as_image:
        return fs
    return fs.image_kernels() or fs


def _zero_tiles(tiles: np.ndarray) -> list[int]:
    """Indices of tiles whose values are all exactly zero (hatched: not a mid-colour kernel)."""
    if not len(tiles):
        return []
    flat = np.asarray(tiles).reshape(len(tiles), -1)
    return [int(t) for t in np.flatnonzero(np.all(flat == 0, axis=1))]


def plot_filterset(fs: FilterSet, *, fig: Figure | None = None, scale: str = Scale.SHARED,
                   max_kernels: int = 64, page: int = 0, cols: int | None = None, cmap: str = DIVERGING,
                   as_image: bool = True, vmax: float | None = None, show_norms: bool = True,
                   dpi: float = DEFAULT_DPI) -> Figure:
    """The kernels feeding one map, one tile per input channel, labelled ``in c`` with its norm.

    2-D kernels are one mosaic image (see :mod:`.mosaic`); ``scale`` shared draws the values on one
    symmetric range: by default the max |value| of the kernels drawn (after BN folding, of the
    effective kernels: exactly what is on the page); ``vmax`` fixes it, e.g. to
    :func:`layer_color_limit` so the maps of a layer compare. Values beyond a fixed range are
    counted in the title and the colour bar gets end triangles. Per-kernel divides each kernel by
    its own max |w| on a copy. All-zero kernels are hatched. ``show_norms=False`` drops the norm
    line (the dashboard lists norms in a table; each label costs about 1 ms to draw).
    Dense columns that read a flattened image are drawn as one image per producer map
    (``as_image``, in norm order when ``fs`` was sorted by norm); other Dense columns as a
    weight-per-input line. 1-D kernels are strips, 3-D kernels one row of depth slices per input channel.
    """
    scale = Scale(scale)
    fs = display_set(fs, as_image)
    rank = fs.kernels.ndim - 1
    if rank == 0:
        return _plot_column(fs, fig=fig, dpi=dpi)
    start, stop = kernel_page(fs, max_kernels, page)
    kernels, channels = fs.kernels[start:stop], fs.input_channels[start:stop]
    norms = fs.norms[start:stop]
    fixed = scale is Scale.SHARED and vmax is not None
    if scale is Scale.SHARED:
        shared: float | None = symmetric_limit(kernels) if vmax is None else float(vmax)
    else:
        shared = None
    clipped = clip_counts(kernels, -shared, shared) if fixed and shared is not None else (0, 0)
    extend = colorbar_extend(*clipped)
    title = _title(fs, len(kernels), start)
    if rank == 1:
        return _plot_strips(fs, kernels, channels, norms, shared, title, fig=fig, cmap=cmap, dpi=dpi, extend=extend)
    title += f" · {_scale_note(scale, shared, fixed=fixed, clipped=clipped, total=kernels.size)}"
    zeros = _zero_tiles(kernels)
    if zeros:
        title += f" · {len(zeros)} all-zero kernel{'s' if len(zeros) != 1 else ''} hatched"
    labels = [f"in {c}" for c in channels]
    sublabels = [f"‖k‖ {format_number(v)}" for v in norms] if show_norms else None
    if rank == 3:
        return _plot_volumes(kernels, labels, sublabels, shared, title, fig=fig, cmap=cmap, dpi=dpi, extend=extend)
    tiles = kernels if shared is not None else _per_tile(kernels)
    pointwise = kernels.shape[1:] == (1, 1) and len(kernels) > 4
    if pointwise:
        # 1x1 kernels are one weight each: small tiles 16 to a row (the norm is |w|, no second label),
        # not 64 big single-colour squares.
        sublabels, labels = None, [str(c) for c in channels]
        cols = cols or min(16, len(kernels))
        title += " · 1×1 kernels: one weight per input channel"
    if cols is None:
        cols = grid_shape(len(kernels), None, aspect=kernels.shape[2] / kernels.shape[1])[1]
    v = shared if shared is not None else 1.0
    # A few kernels (a depthwise map reads one) get big tiles: they are the whole figure.
    tile_in = 0.42 if pointwise else 2.0 if len(kernels) == 1 else 1.3 if len(kernels) <= 4 else _TILE_IN
    return mosaic_figure(tiles, labels, sublabels=sublabels, title=title, cols=cols, vmin=-v, vmax=v, cmap=cmap,
                         colorbar=shared is not None, tile_in=tile_in, fig=fig, dpi=dpi, extend=extend,
                         marked=zeros)


def _per_tile(tiles: np.ndarray) -> np.ndarray:
    """Each tile divided by its own max |value| (zero tiles stay zero), on a copy."""
    peak = np.abs(tiles).reshape(len(tiles), -1).max(axis=1) if len(tiles) else np.zeros(0)
    peak = np.where(peak > 0, peak, 1.0)
    return tiles / peak.reshape((-1,) + (1,) * (tiles.ndim - 1))


def _plot_strips(fs: FilterSet, kernels: np.ndarray, channels: np.ndarray, norms: np.ndarray,
                 shared: float | None, title: str, *, fig: Figure | None, cmap: str, dpi: float,
                 extend: str = "neither") -> Figure:
    n, k = kernels.shape
    width = min(3.5 + 0.35 * k, 14)
    title = wrap_to_width(title, width - 0.3, 9)
    fig = new_figure(fig, width, 1.2 + _title_room(title) + 0.22 * n, dpi)
    ax = fig.add_subplot(1, 1, 1)
    if shared is None:  # per-kernel: normalise each row on a copy so every strip spans the colour map
        shown = kernels / np.maximum(np.abs(kernels).max(axis=1, keepdims=True), 1e-30)
        vmax = 1.0
    else:
        shown, vmax = kernels, shared
    image = ax.imshow(shown, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="none", aspect="auto")
    ax.set_yticks(range(n), [f"in {c}  ‖k‖ {format_number(v)}" for c, v in zip(channels, norms, strict=True)],
                  fontsize=LABEL_PT)
    ax.set_xticks(range(k), [str(t) for t in range(k)], fontsize=LABEL_PT)
    ax.set_xlabel("tap", fontsize=8)
    fig.suptitle(title, fontsize=9)
    if shared is not None:
        fig.colorbar(image, ax=ax, fraction=0.04, extend=extend).ax.tick_params(labelsize=LABEL_PT)
    fig.subplots_adjust(left=0.3, right=0.9, top=1 - _title_room(title) / fig.get_figheight(),
                        bottom=0.5 / fig.get_figheight())
    return fig


def _plot_volumes(kernels: np.ndarray, labels: list[str], sublabels: list[str] | None, shared: float | None,
                  title: str, *, fig: Figure | None, cmap: str, dpi: float, extend: str = "neither") -> Figure:
    """3-D kernels as a mosaic: one row of depth slices per input channel, the channel left of it."""
    n, depth, kh, kw = kernels.shape
    tiles = (kernels if shared is not None else _per_tile(kernels)).reshape(n * depth, kh, kw)
    row_labels = [f"{lab}\n{sub}" if sublabels else lab for lab, sub in zip(labels, sublabels or labels, strict=True)]
    depth_labels = [f"depth {z}" if r == 0 else "" for r in range(n) for z in range(depth)]
    v = shared if shared is not None else 1.0
    return mosaic_figure(tiles, depth_labels, title=title, cols=depth, vmin=-v, vmax=v, cmap=cmap,
                         colorbar=shared is not None, tile_in=_TILE_IN, row_labels=row_labels, fig=fig, dpi=dpi,
                         extend=extend)


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
        ax.annotate(f"in {x[t]}", (x[t], w[t]), fontsize=LABEL_PT, ha="center",
                    va="bottom" if w[t] >= 0 else "top")
    ax.set_xlabel("input unit", fontsize=8)
    ax.set_ylabel("weight", fontsize=8)
    ax.tick_params(labelsize=LABEL_PT)
    fig.suptitle(wrap_to_width(_title(fs, fs.n_inputs, 0), 7.7, 9), fontsize=9)
    fig.subplots_adjust(top=0.8, bottom=0.16)
    return fig


def is_rgb_filterset(fs: FilterSet) -> bool:
    """Three 2-D input kernels: drawable as one colour image (first-layer filters)."""
    return fs.kernels.ndim == 3 and fs.n_inputs == 3 and fs.kind in (LayerKind.CONV, LayerKind.SEPARABLE)


def plot_rgb_filters(sets: Sequence[FilterSet], *, fig: Figure | None = None, cols: int | None = None,
                     normalize: str = "symmetric", max_maps: int = 256, dpi: float = DEFAULT_DPI) -> Figure:
    """First-layer filters as colour images, one per map (the classic AlexNet figure).

    Each kernel ``(3, kh, kw)`` becomes ``(kh, kw, 3)`` in input-channel order (R, G, B for an RGB
    input) and is normalised on a copy: ``symmetric`` keeps zero grey, ``minmax`` stretches. For one
    range shared by all maps (so their strengths compare) use :func:`layer_montage`.
    """
    sets = [fs.channel_order() for fs in sets[:max_maps]]
    if not sets or not all(is_rgb_filterset(fs) for fs in sets):
        from ..errors import SelectionError

        raise SelectionError("RGB display needs 2-D kernels reading exactly 3 input channels; accepted: a first "
                             "conv layer on an RGB input. Received: "
                             f"{[tuple(fs.kernels.shape) for fs in sets[:3]]}")
    tiles = np.stack([rgb_image(np.moveaxis(fs.kernels, 0, -1), normalize) for fs in sets])
    ncols = grid_shape(len(sets), cols)[1]
    first = sets[0]
    title = (f"{first.layer_path} · {len(sets)} RGB filter{'s' if len(sets) != 1 else ''} · "
             f"{'×'.join(map(str, first.spatial_shape))}\ncolour = input channels 0/1/2 ({normalize} normalisation)")
    # A single filter gets a big tile: it is the whole figure (the dashboard's RGB view of one map).
    tile_in = 2.0 if len(sets) == 1 else 0.8
    return mosaic_figure(tiles, [f"map {fs.map_index}" for fs in sets], title=title, cols=ncols,
                         tile_in=tile_in, fig=fig, dpi=dpi)


def plot_layer(sets: Sequence[FilterSet], *, fig: Figure | None = None, max_maps: int = 16,
               max_channels: int = 32, cmap: str = DIVERGING, scale: str = Scale.SHARED,
               dpi: float = DEFAULT_DPI, vmax: float | None = None) -> Figure:
    """A layer as a maps × input-channels grid (rows: maps, columns: the kernels each map reads).

    Layers whose maps each read one channel (depthwise) are drawn as a grid of maps. Dense layers
    without an image shape are drawn as the kernel matrix. Both axes are capped, with a note.
    ``vmax`` fixes the shared range (values beyond it are counted and the colour bar extended).
    """
    total_maps = len(sets)
    sets = list(sets[:max_maps])
    if not sets:
        raise ValueError("plot_layer needs at least one FilterSet")
    return _layer_grid(sets, total_maps, max_channels=max_channels, cmap=cmap, scale=Scale(scale), vmax=vmax,
                       fig=fig, dpi=dpi)


def _layer_grid(sets: list[FilterSet], total_maps: int, *, max_channels: int, cmap: str, scale: Scale,
                vmax: float | None, fig: Figure | None, dpi: float, head: str = "") -> Figure:
    first = sets[0]
    if first.kind is LayerKind.DENSE:
        images = [display_set(fs, True) for fs in sets]
        if any(im.kind is LayerKind.DENSE and im.kernels.ndim == 1 for im in images):
            return _plot_dense_matrix(sets, total_maps, fig=fig, cmap=cmap, dpi=dpi, vmax=vmax)
        sets = images
        first = sets[0]
    n_in = max(fs.n_inputs for fs in sets)
    shown_in = min(n_in, max_channels)
    stack = [fs.kernels[:shown_in] for fs in sets]
    fixed = scale is Scale.SHARED and vmax is not None
    shared = (float(vmax) if fixed else symmetric_limit(*stack)) if scale is Scale.SHARED else None  # type: ignore[arg-type]
    same_channels = all(np.array_equal(fs.input_channels[:shown_in], first.input_channels[:shown_in])
                        for fs in sets)
    kshape = first.kernels.shape[1:]
    if len(kshape) == 3:  # 3-D kernels: middle depth slice in the overview
        kshape = kshape[1:]
    # One row per map; a map reading fewer channels leaves blank (NaN) tiles at the end of its row.
    tiles = np.full((len(sets), shown_in, *kshape), np.nan)
    labels: list[str] = []
    for r, fs in enumerate(sets):
        k = fs.kernels[:shown_in]
        if k.ndim == 4:
            k = k[:, k.shape[1] // 2]
        tiles[r, : len(k)] = k if shared is not None else k / symmetric_limit(fs.kernels)  # one scale per map
        labels += [f"in {fs.input_channels[c]}" if c < fs.n_inputs and (r == 0 or not same_channels) else ""
                   for c in range(shown_in)]
    v = shared if shared is not None else 1.0
    clipped = clip_counts(np.concatenate([x.ravel() for x in stack]), -v, v) if fixed else (0, 0)
    notes = []
    if total_maps > len(sets):
        notes.append(f"showing maps {sets[0].map_index}-{sets[-1].map_index}: {len(sets)} of {total_maps}")
    if n_in > shown_in:
        order = "sorted by norm" if first.sorted_by == SortOrder.NORM else "in channel order"
        notes.append(f"showing {shown_in} of {n_in} input channels ({order})")
    if first.kernels.ndim == 4:
        notes.append("3-D kernels: middle depth slice")
    flat = tiles.reshape(len(sets) * shown_in, *kshape)
    zeros = [t for t in _zero_tiles(np.nan_to_num(flat, nan=1.0))]
    if zeros:
        notes.append(f"{len(zeros)} all-zero kernel{'s' if len(zeros) != 1 else ''} hatched")
    scale_note = (_scale_note(Scale.SHARED, shared, fixed=fixed, clipped=clipped, total=sum(x.size for x in stack))
                  if shared is not None else "each map on its own scale")
    fold = " · BN folded" if first.bn_folded else ""
    title = (head or f"{first.layer_path} · {first.class_name or first.kind} · {first.stage}{fold} · "
             "maps × input channels") + f" · {scale_note}" + (f"\n{'; '.join(notes)}" if notes else "")
    if flat.ndim == 2:  # 1-D kernels: each a one-row tile
        flat = flat[:, None, :]
    return mosaic_figure(flat, labels, title=title, cols=shown_in, vmin=-v, vmax=v, cmap=cmap,
                         colorbar=shared is not None, tile_in=0.6, fig=fig, dpi=dpi,
                         extend=colorbar_extend(*clipped), marked=zeros,
                         row_labels=[f"map {fs.map_index}\nb {format_number(fs.bias)}" for fs in sets])


def _plot_dense_matrix(sets: Sequence[FilterSet], total: int, *, fig: Figure | None, cmap: str,
                       dpi: float, vmax: float | None = None) -> Figure:
    columns = np.stack([fs.channel_order().kernels for fs in sets], axis=1)  # (in, maps)
    note = f" (showing {len(sets)} of {total} units)" if total > len(sets) else ""
    return _matrix_figure(columns, np.arange(columns.shape[0]), np.array([fs.map_index for fs in sets]),
                          title=f"{sets[0].layer_path} · Dense kernel{note}", ylabel="input unit",
                          xlabel="output unit", vmax=vmax, cmap=cmap, fig=fig, dpi=dpi)


def _matrix_figure(matrix: np.ndarray, row_ids: np.ndarray, col_ids: np.ndarray, *, title: str, ylabel: str,
                   xlabel: str, vmax: float | None, cmap: str, fig: Figure | None, dpi: float,
                   fixed_word: str = "fixed") -> Figure:
    """A weight matrix (rows: inputs, columns: outputs) as one image, one cell per weight, with a
    symmetric colour bar (``vmax`` fixed: clipping counted and shown) and a few index ticks."""
    rows, cols = matrix.shape
    finite = matrix[np.isfinite(matrix)]
    fixed = vmax is not None
    v = float(vmax) if fixed else symmetric_limit(finite)  # type: ignore[arg-type]
    clipped = clip_counts(finite, -v, v) if fixed else (0, 0)
    # Square cells, the longer side about 8 inches (at least 1.5 in for the shorter one).
    cell = min(0.25, 8.0 / max(rows, cols))
    img_w, img_h = max(cols * cell, 1.5), max(rows * cell, 1.5)
    left, right, bottom = 0.75, 1.05, 0.55
    width = max(left + img_w + right, 4.0)
    note = _scale_note(Scale.SHARED, v, fixed=fixed, clipped=clipped, total=finite.size, fixed_word=fixed_word)
    if finite.size < matrix.size:
        note += " · white: not read (other group)"
    wrapped = wrap_to_width(f"{title} · {note}", width - 0.3, 9)
    top = 0.25 + 0.19 * (wrapped.count("\n") + 1)
    height = top + img_h + bottom
    fig = new_figure(fig, width, height, dpi)
    fw, fh = fig.get_figwidth(), fig.get_figheight()
    ax = fig.add_axes((left / fw, bottom / fh, img_w / fw, img_h / fh))
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")
    image = ax.imshow(matrix, cmap=colormap, vmin=-v, vmax=v, aspect="auto", interpolation="none")
    for axis, ids in ((ax.xaxis, col_ids), (ax.yaxis, row_ids)):
        pos = _index_ticks(len(ids))
        axis.set_ticks(pos, [str(int(ids[i])) for i in pos])
    ax.tick_params(labelsize=LABEL_PT, length=2, pad=2)
    ax.set_xlabel(xlabel, fontsize=8, labelpad=2)
    ax.set_ylabel(ylabel, fontsize=8, labelpad=2)
    bar_h = min(img_h, 3.0)
    cax = fig.add_axes(((left + img_w + 0.15) / fw, (bottom + (img_h - bar_h) / 2) / fh, 0.1 / fw, bar_h / fh))
    bar = fig.colorbar(image, cax=cax, ticks=[-v, 0, v], extend=colorbar_extend(*clipped))
    bar.ax.set_yticklabels([format_number(-v), "0", format_number(v)])
    bar.ax.tick_params(labelsize=LABEL_PT, length=2)
    fig.suptitle(wrapped, fontsize=9, y=1 - 0.08 / fh, va="top")
    return fig


def _index_ticks(n: int, most: int = 6) -> list[int]:
    """A few round positions in ``range(n)`` for index ticks (0, 128, 256, ... and the last)."""
    if n <= most:
        return list(range(n))
    step = 10 ** math.floor(math.log10(max(n / most, 1)))
    for mult in (1, 2, 5, 10):
        if n / (step * mult) <= most:
            step *= mult
            break
    pos = list(range(0, n, step))
    if n - 1 - pos[-1] > step / 2:
        pos.append(n - 1)
    return pos


# -- whole-layer montage --------------------------------------------------------------------------------

class MontageKind(StrEnum):
    """How :func:`layer_montage` draws a layer (chosen from what its maps read)."""

    RGB = "rgb"  # 2-D kernels reading exactly 3 channels (a first layer): one colour tile per map
    DEPTHWISE = "depthwise"  # one 2-D kernel per map (depthwise, separable depthwise stage): one tile per map
    MATRIX = "matrix"  # 1×1 kernels, pointwise stage, Dense: one C_in × C_out weight matrix image
    STRIPS = "strips"  # 1-D kernels: one (C_in × taps) tile per map
    GRID = "grid"  # k×k kernels reading several channels: maps × input channels, channels capped


#: Maps (columns, for MATRIX) per montage page, per kind.
_PER_PAGE = {MontageKind.RGB: 256, MontageKind.DEPTHWISE: 1024, MontageKind.MATRIX: 512, MontageKind.STRIPS: 64,
             MontageKind.GRID: 16}
_GRID_LABEL_MAX = 64  # montages of more tiles than this label rows and columns instead of every tile


def _layer_options(layer: LayerRecord | str, index: ModelIndex | None, stage: str | None
                   ) -> tuple[LayerRecord, int]:
    from ..filters import output_map_count

    if isinstance(layer, str):
        if index is None:
            raise ValueError("a layer given by name needs index=")
        rec = index.layer(layer)
    else:
        rec = layer
    return rec, output_map_count(rec, stage)


def montage_kind(layer: LayerRecord | str, *, index: ModelIndex | None = None, stage: str | None = None,
                 rgb: bool | None = None) -> MontageKind:
    """The :class:`MontageKind` :func:`layer_montage` uses for ``layer`` (reads map 0's kernels only).

    ``rgb=False`` draws a first layer as a grid of its 3 channels instead of colour images."""
    from ..filters import filters_for_map

    rec, _ = _layer_options(layer, index, stage)
    fs = filters_for_map(rec, 0, index=index, stage=stage)
    if fs.kind is LayerKind.DENSE:
        image = fs.image_kernels()
        return MontageKind.GRID if image is not None and image.kernels.ndim == 3 else MontageKind.MATRIX
    spatial = fs.spatial_shape
    if all(d == 1 for d in spatial):
        return MontageKind.MATRIX
    if fs.n_inputs == 1 and len(spatial) in (1, 2):
        return MontageKind.DEPTHWISE
    if len(spatial) == 2 and fs.n_inputs == 3 and fs.n_inputs_total == 3 and rgb is not False:
        return MontageKind.RGB
    if len(spatial) == 1:
        return MontageKind.STRIPS
    return MontageKind.GRID


def montage_page_count(layer: LayerRecord | str, *, index: ModelIndex | None = None, stage: str | None = None,
                       per_page: int | None = None, rgb: bool | None = None) -> int:
    """How many pages :func:`layer_montage` has for ``layer`` with ``per_page`` maps a page (default:
    the kind's page size, e.g. all 960 depthwise kernels of MobileNetV2's ``block_16_depthwise``)."""
    _, n_maps = _layer_options(layer, index, stage)
    per = per_page or _PER_PAGE[montage_kind(layer, index=index, stage=stage, rgb=rgb)]
    return max(1, math.ceil(n_maps / max(1, per)))


def layer_color_limit(layer: LayerRecord | str, *, index: ModelIndex | None = None, fold_bn: bool | str = False,
                      stage: str | None = None) -> float:
    """max |value| over every kernel the layer's figures draw: the FilterSets of all its maps with
    the same ``stage`` and ``fold_bn`` (so a separable layer's effective kernels, BN-folded kernels,
    ...), not the stored tensor. Pass it as ``vmax=`` so every map of the layer shares one scale.

    Reads the layer one map at a time (about 0.5 s for VGG16's ``block5_conv3``). When nothing is
    folded and the stage is a stored tensor (the maps' kernels partition it exactly), that tensor's
    max |value|, read in row blocks, is used instead, so a 25088 × 4096 Dense is not read column by
    column."""
    from ..filters import Stage, filters_for_map, stages_for

    rec, n_maps = _layer_options(layer, index, stage)
    st = Stage(stage) if stage else stages_for(rec)[0]
    if fold_bn in (False, None, "none") and st is not Stage.EFFECTIVE:
        name = {Stage.DEPTHWISE: "depthwise_kernel", Stage.POINTWISE: "pointwise_kernel"}.get(st)
        ref = rec.weight(name) if name else rec.kernel
        if ref is not None and ref.shape:
            return symmetric_limit(np.array([_streamed_max_abs(ref)]))
    peak = 0.0
    for j in range(n_maps):
        k = filters_for_map(rec, j, index=index, fold_bn=fold_bn, stage=stage).kernels
        if k.size:
            peak = max(peak, float(np.nanmax(np.abs(k))))
    return peak if peak > 0 and math.isfinite(peak) else 1.0


def _streamed_max_abs(ref: TensorRef, chunk_bytes: int = 64 << 20) -> float:
    """max |value| of a stored tensor, read in blocks of leading-axis rows (at most ``chunk_bytes``)."""
    shape = ref.shape
    row = max(1, math.prod(shape[1:]) * 8)
    step = max(1, chunk_bytes // row)
    peak = 0.0
    for start in range(0, shape[0], step):
        block = np.asarray(ref.read((slice(start, min(shape[0], start + step)),)), dtype=np.float64)
        if block.size:
            peak = max(peak, float(np.nanmax(np.abs(block))))
    return peak


def layer_montage(index: ModelIndex | None, layer: LayerRecord | str, *, page: int = 0, per_page: int | None = None,
                  fold_bn: bool | str = False, stage: str | None = None, scale: str = "shared",
                  vmax: float | None = None, rgb: bool | None = None, max_channels: int = 64,
                  cmap: str = DIVERGING, fig: Figure | None = None, dpi: float = DEFAULT_DPI) -> Figure:
    """Every map of a layer in one figure, ``per_page`` maps a page (see :func:`montage_page_count`).

    The drawing follows :func:`montage_kind`: a first layer on 3 channels as colour images (VGG16's
    64 ``block1_conv1`` filters at once), one-kernel-per-map layers as one grid of kernels (all 960
    of MobileNetV2's ``block_16_depthwise``), 1×1 kernels and Dense as one C_in × C_out matrix
    image, 1-D kernels as one (C_in × taps) tile per map, other layers as maps × input channels
    (the first ``max_channels`` channels).

    Colours are computed from the values drawn (after ``stage`` and ``fold_bn``): ``scale="shared"``
    is the page's max |value|, ``"layer"`` the whole layer's (:func:`layer_color_limit`, the same on
    every page), ``"per-map"`` each map its own; ``vmax`` fixes the range and counts what it clips.
    """
    from ..filters import filters_for_map

    if scale not in ("shared", "layer", "per-map"):
        from ..errors import SelectionError

        raise SelectionError(f"unknown montage scale; accepted: shared, layer, per-map. Received: {scale!r}")
    rec, n_maps = _layer_options(layer, index, stage)
    kind = montage_kind(rec, index=index, stage=stage, rgb=rgb)
    per = max(1, per_page or _PER_PAGE[kind])
    pages = max(1, math.ceil(n_maps / per))
    page = min(max(int(page), 0), pages - 1)
    start, stop = page * per, min(n_maps, (page + 1) * per)
    sets = [filters_for_map(rec, j, index=index, fold_bn=fold_bn, stage=stage) for j in range(start, stop)]
    first = sets[0]
    if scale == "layer" and vmax is None:
        vmax = layer_color_limit(rec, index=index, fold_bn=fold_bn, stage=stage)
        fixed_note = "layer-wide"
    else:
        fixed_note = "fixed"
    fold = " · BN folded" if first.bn_folded else ""
    where = (f" · page {page + 1} of {pages} (maps {start}-{stop - 1} of {n_maps})" if pages > 1
             else f" · all {n_maps} maps")
    head = f"{rec.path} · {first.class_name or first.kind} · {first.stage}{fold}{where}"
    if kind is MontageKind.MATRIX:
        return _matrix_montage(sets, head, vmax=vmax, per_map=scale == "per-map", cmap=cmap, fig=fig, dpi=dpi,
                               fixed_note=fixed_note)
    if kind is MontageKind.GRID:
        scale_ = Scale.PER_KERNEL if scale == "per-map" else Scale.SHARED
        return _layer_grid(sets, len(sets), max_channels=max_channels, cmap=cmap, scale=scale_, vmax=vmax,
                           fig=fig, dpi=dpi, head=head + " · maps × input channels")
    tiles = np.stack([_montage_tile(fs, kind) for fs in sets])  # (n, h, w[, 3]) exactly the drawn values
    values = tiles
    fixed = vmax is not None and scale != "per-map"
    v = float(vmax) if fixed else symmetric_limit(values)  # type: ignore[arg-type]
    clipped = clip_counts(values, -v, v) if fixed else (0, 0)
    zeros = _zero_tiles(tiles)
    if scale == "per-map":
        scale_note = "each map on its own scale"
        tiles = _per_tile(tiles)
        v = 1.0
    else:
        scale_note = _scale_note(Scale.SHARED, v, fixed=fixed, clipped=clipped, total=values.size,
                                 fixed_word=fixed_note)
    notes = [scale_note]
    if kind is MontageKind.RGB:
        notes.append("colour = input channels 0/1/2, grey = 0")
        tiles = np.clip(0.5 + tiles / (2.0 * v), 0.0, 1.0)
    if kind is MontageKind.STRIPS:
        notes.append("each tile: input channels (rows) × taps")
    if zeros:
        notes.append(f"{len(zeros)} all-zero map{'s' if len(zeros) != 1 else ''} hatched")
    title = head + "\n" + " · ".join(notes)
    n, h, w = tiles.shape[:3]
    cols = grid_shape(n, None, aspect=w / h)[1] if n > 8 else n
    if n > _GRID_LABEL_MAX:  # label rows (first map) and columns (offset) instead of every tile
        if h == w:  # round column counts (32 for 960 maps) make row starts easy to read
            cols = min((8, 16, 32, 64), key=lambda c: abs(math.log(c / cols)))
        labels, row_labels = None, [str(start + r * cols) for r in range(math.ceil(n / cols))]
        col_labels: list[str] | None = [f"+{c}" for c in range(cols)]
    else:
        labels, row_labels, col_labels = [str(fs.map_index) for fs in sets], None, None
    tile_in = 0.9 if kind is MontageKind.STRIPS else 0.6 if n <= _GRID_LABEL_MAX else 0.4
    return mosaic_figure(tiles, labels, title=title, cols=cols, vmin=-v, vmax=v, cmap=cmap,
                         colorbar=kind is not MontageKind.RGB, tile_in=tile_in, row_labels=row_labels,
                         col_labels=col_labels, extend=colorbar_extend(*clipped), marked=zeros, fig=fig, dpi=dpi)


def _montage_tile(fs: FilterSet, kind: MontageKind) -> np.ndarray:
    fs = fs.channel_order()
    if kind is MontageKind.RGB:
        return np.moveaxis(fs.kernels, 0, -1)  # (kh, kw, 3): channel c -> colour c
    if kind is MontageKind.DEPTHWISE:
        k = fs.kernels[0]
        return k[None, :] if k.ndim == 1 else k
    return fs.kernels  # STRIPS: (C_in, taps)


def _matrix_montage(sets: list[FilterSet], head: str, *, vmax: float | None, per_map: bool, cmap: str,
                    fig: Figure | None, dpi: float, fixed_note: str) -> Figure:
    """1×1 kernels / Dense columns of a page of maps as one (input channel × output map) matrix."""
    n_rows = max(fs.n_inputs_total or fs.n_inputs for fs in sets)
    n_rows = max(n_rows, *(int(fs.input_channels.max()) + 1 for fs in sets if fs.n_inputs))
    matrix = np.full((n_rows, len(sets)), np.nan)
    for c, fs in enumerate(sets):
        matrix[fs.input_channels, c] = fs.kernels.reshape(fs.n_inputs)
    if per_map:
        peak = np.nanmax(np.abs(matrix), axis=0)
        matrix = matrix / np.where(peak > 0, peak, 1.0)
        vmax = 1.0
        head += " · each map (column) on its own scale"
    zero_cols = [int(c) for c in np.flatnonzero(np.nansum(np.abs(matrix), axis=0) == 0)]
    if zero_cols:
        head += f" · all-zero maps: {', '.join(str(sets[c].map_index) for c in zero_cols[:8])}"
        head += "…" if len(zero_cols) > 8 else ""
    what = "input unit" if sets[0].kind is LayerKind.DENSE else "input channel"
    return _matrix_figure(matrix, np.arange(n_rows), np.array([fs.map_index for fs in sets]), title=head,
                         ylabel=what, xlabel="output map" if sets[0].kind is not LayerKind.DENSE else "output unit",
                          vmax=vmax, cmap=cmap, fig=fig, dpi=dpi, fixed_word=fixed_note)


def kernel_tiles(kernels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """2-D tiles ``(n, h, w)`` from kernels ``(n, *spatial)`` of any rank, and a note when 3-D kernels
    were cut to their centre depth slice (1-D kernels become one-row tiles)."""
    k = np.asarray(kernels)
    if k.ndim == 1:  # one value per kernel (a Dense column)
        return k.reshape(-1, 1, 1), None
    if k.ndim == 2:
        return k[:, None, :], None
    if k.ndim == 3:
        return k, None
    mid = k.shape[1] // 2
    return k[:, mid], f"3-D kernels: centre depth slice {mid} of {k.shape[1]} shown"


def plot_consumer_slice(sl: ConsumerSlice, *, source: str, max_kernels: int = 64, cmap: str = DIVERGING,
                        fig: Figure | None = None, dpi: float = DEFAULT_DPI) -> Figure:
    """The kernels through which one map (``source``, e.g. ``"conv1 map 3"``) reaches each output map
    of a later layer, strongest first, labelled ``→m`` by output map, on one shared scale."""
    order = np.argsort(-sl.norms, kind="stable")[:max_kernels]
    tiles, note = kernel_tiles(sl.kernels[order])
    v = symmetric_limit(tiles)
    total = len(sl.output_maps)
    more = f", the {len(order)} strongest of {total}" if len(order) < total else ""
    title = (f"{sl.consumer_path}: kernels reading {source} (input channel {sl.input_channel}){more}, "
             f"labelled by output map · shared scale ±{format_number(v)}" + (f"; {note}" if note else ""))
    return mosaic_figure(tiles, [f"→{int(sl.output_maps[o])}" for o in order], title=title, vmin=-v, vmax=v,
                         cmap=cmap, cols=grid_shape(len(tiles), None, aspect=tiles.shape[2] / tiles.shape[1])[1],
                         tile_in=_TILE_IN, fig=fig, dpi=dpi)
