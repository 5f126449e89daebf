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

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..filters import ConsumerSlice, FilterSet, SortOrder
from ..records import LayerKind
from .common import DIVERGING, Scale, format_number, grid_shape, new_figure, page_range, rgb_image, symmetric_limit
from .mosaic import mosaic_figure

__all__ = [
    "is_rgb_filterset",
    "kernel_page",
    "kernel_tiles",
    "kernels_per_page",
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


def _scale_note(scale: Scale, vmax: float | None) -> str:
    if scale is Scale.PER_KERNEL:
        return "each kernel on its own scale (±1 = its max |w|)"
    return f"shared scale ±{format_number(vmax)}"


def plot_filterset(fs: FilterSet, *, fig: Figure | None = None, scale: str = Scale.SHARED,
                   max_kernels: int = 64, page: int = 0, cols: int | None = None, cmap: str = DIVERGING,
                   as_image: bool = True, vmax: float | None = None, show_norms: bool = True,
                   dpi: float = 100) -> Figure:
    """The kernels feeding one map, one tile per input channel, labelled ``in c`` with its norm.

    2-D kernels are one mosaic image (see :mod:`.mosaic`); ``scale`` shared draws the values on one
    symmetric range (``vmax`` fixes it, e.g. to the layer's max |w| so maps compare), per-kernel
    divides each kernel by its own max |w| on a copy. ``show_norms=False`` drops the norm line (the
    dashboard lists norms in a table; each label costs about 1 ms to draw).
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
    start, stop = kernel_page(fs, max_kernels, page)
    kernels, channels = fs.kernels[start:stop], fs.input_channels[start:stop]
    norms = fs.norms[start:stop]
    if scale is Scale.SHARED:
        shared: float | None = symmetric_limit(kernels) if vmax is None else float(vmax)
    else:
        shared = None
    title = _title(fs, len(kernels), start)
    if rank == 1:
        return _plot_strips(fs, kernels, channels, norms, shared, title, fig=fig, cmap=cmap, dpi=dpi)
    title += f" · {_scale_note(scale, shared)}"
    labels = [f"in {c}" for c in channels]
    sublabels = [f"‖k‖ {format_number(v)}" for v in norms] if show_norms else None
    if rank == 3:
        return _plot_volumes(kernels, labels, sublabels, shared, title, fig=fig, cmap=cmap, dpi=dpi)
    tiles = kernels if shared is not None else _per_tile(kernels)
    if cols is None:
        cols = grid_shape(len(kernels), None, aspect=kernels.shape[2] / kernels.shape[1])[1]
    v = shared if shared is not None else 1.0
    return mosaic_figure(tiles, labels, sublabels=sublabels, title=title, cols=cols, vmin=-v, vmax=v, cmap=cmap,
                         colorbar=shared is not None, tile_in=_TILE_IN, fig=fig, dpi=dpi)


def _per_tile(tiles: np.ndarray) -> np.ndarray:
    """Each tile divided by its own max |value| (zero tiles stay zero), on a copy."""
    peak = np.abs(tiles).reshape(len(tiles), -1).max(axis=1) if len(tiles) else np.zeros(0)
    peak = np.where(peak > 0, peak, 1.0)
    return tiles / peak.reshape((-1,) + (1,) * (tiles.ndim - 1))


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


def _plot_volumes(kernels: np.ndarray, labels: list[str], sublabels: list[str] | None, shared: float | None,
                  title: str, *, fig: Figure | None, cmap: str, dpi: float) -> Figure:
    """3-D kernels as a mosaic: one row of depth slices per input channel, the channel left of it."""
    n, depth, kh, kw = kernels.shape
    tiles = (kernels if shared is not None else _per_tile(kernels)).reshape(n * depth, kh, kw)
    row_labels = [f"{lab}\n{sub}" if sublabels else lab for lab, sub in zip(labels, sublabels or labels, strict=True)]
    depth_labels = [f"depth {z}" if r == 0 else "" for r in range(n) for z in range(depth)]
    v = shared if shared is not None else 1.0
    return mosaic_figure(tiles, depth_labels, title=title, cols=depth, vmin=-v, vmax=v, cmap=cmap,
                         colorbar=shared is not None, tile_in=_TILE_IN, row_labels=row_labels, fig=fig, dpi=dpi)


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
    notes = []
    if total_maps > len(sets):
        notes.append(f"showing maps {sets[0].map_index}-{sets[-1].map_index}: {len(sets)} of {total_maps}")
    if n_in > shown_in:
        order = "sorted by norm" if first.sorted_by == SortOrder.NORM else "in channel order"
        notes.append(f"showing {shown_in} of {n_in} input channels ({order})")
    if first.kernels.ndim == 4:
        notes.append("3-D kernels: middle depth slice")
    scale_note = _scale_note(Scale.SHARED, shared) if shared is not None else "each map on its own scale"
    title = (f"{first.layer_path} · {first.class_name or first.kind} · {first.stage} · maps × input channels · "
             f"{scale_note}" + (f"\n{'; '.join(notes)}" if notes else ""))
    tiles = tiles.reshape(len(sets) * shown_in, *kshape)
    if tiles.ndim == 2:  # 1-D kernels: each a one-row tile
        tiles = tiles[:, None, :]
    return mosaic_figure(tiles, labels, title=title, cols=shown_in, vmin=-v, vmax=v, cmap=cmap,
                         colorbar=shared is not None, tile_in=0.6, fig=fig, dpi=dpi,
                         row_labels=[f"map {fs.map_index}\nb {format_number(fs.bias)}" for fs in sets])


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
                        fig: Figure | None = None, dpi: float = 100) -> Figure:
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
