"""View builders for the dashboard: API call -> Figure -> bytes. No Streamlit, no TensorFlow here.

Each builder takes an open :class:`~inspector.records.ModelIndex` (or arrays) plus plain options and
returns plain data (arrays, numbers, PNG bytes), so the pages can cache them with ``st.cache_data``
and ``bench/dashboard_render.py`` can time exactly the path the app runs when the output map changes.

The figures come from :mod:`inspector.render`; this module only decides *what* to show (which map,
which channels fit the grid cap) and turns figures into bytes.
"""

from __future__ import annotations

import io
import itertools
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from inspector.filters import (
    FilterSet,
    consumers_of_map,
    filters_for_map,
    output_map_count,
    stages_for,
)
from inspector.records import LayerKind, ModelIndex

__all__ = [
    "CMAPS",
    "DEFAULT_CAP",
    "NORMALISATIONS",
    "ConsumerRow",
    "FilterView",
    "consumer_rows",
    "figure_bytes",
    "filter_figure",
    "filter_npz",
    "filter_view",
    "layer_rows",
]

#: How kernel colours are scaled: each kernel on its own range, all kernels of the map on one
#: shared range (compare channels), or every kernel of the layer on one range (compare maps).
NORMALISATIONS = ("map", "kernel", "layer")
CMAPS = ("RdBu_r", "gray", "viridis", "coolwarm", "magma")
#: Kernels drawn per grid: drawing cost grows with tiles, and 512-channel layers (VGG block5)
#: would otherwise take seconds per map. The page offers paging through the rest.
DEFAULT_CAP = 64
DPI = 80


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = DPI) -> bytes:
    """The figure encoded as PNG / SVG / PDF bytes."""
    buf = io.BytesIO()
    # zlib level 1: about 4x faster PNG encoding than the default for ~20% more bytes.
    extra = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
    fig.savefig(buf, format=fmt, dpi=dpi, **extra)
    return buf.getvalue()


# -- overview --------------------------------------------------------------------------------------------

def _shape_text(shape: Any) -> str:
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return ", ".join(_shape_text(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def layer_rows(index: ModelIndex) -> list[dict[str, Any]]:
    """One row per layer for the overview table (the columns of ``inspector summary``)."""
    return [
        {
            "path": layer.path,
            "class": layer.class_name or "?",
            "kind": f"{layer.kind}{'?' if layer.kind_inferred else ''}",
            "output shape": _shape_text(layer.output_shape),
            "params": layer.params,
            "weights": " ".join(f"{w.name}{list(w.shape)}" for w in layer.weights),
        }
        for layer in index.layers
    ]


# -- filters ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class FilterView:
    """What the Filters page shows for one output map: the FilterSet, the grid image and its extent."""

    filters: FilterSet
    n_maps: int
    shown: np.ndarray  # positions into ``filters.input_channels`` drawn in the grid
    png: bytes
    rgb: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def n_shown(self) -> int:
        return len(self.shown)


def _display_set(fs: FilterSet) -> tuple[FilterSet, tuple[str, ...]]:
    """The set in a drawable form: a Dense column reading a Flatten becomes one image per map."""
    if fs.kind is LayerKind.DENSE:
        image = fs.image_kernels()
        if image is not None:
            return image, ("Dense column reshaped to the flattened input",)
    return fs, ()


def _tiles(kernels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """2-D tiles ``(n, h, w)`` from canonical kernels of any spatial rank."""
    if kernels.ndim == 1:  # Dense without an image shape: one value per input unit
        return kernels.reshape(1, 1, -1), None
    if kernels.ndim == 2:  # 1-D kernels: one row each
        return kernels[:, None, :], None
    if kernels.ndim == 3:
        return kernels, None
    mid = kernels.shape[1] // 2  # 3-D kernels: the centre depth slice
    return kernels[:, mid], f"3-D kernels: centre depth slice {mid} of {kernels.shape[1]} shown"


def filter_figure(fs: FilterSet, *, shown: Sequence[int] | np.ndarray | None = None, norm: str = "map",
                  cmap: str = "RdBu_r", layer_range: float | None = None, rgb: bool = False,
                  title: str | None = None) -> Figure:
    """The on-screen figure of one FilterSet: the fast kernel mosaic, or the shared RGB figure.

    The grid is drawn here as ONE image (see :func:`mosaic_figure`) rather than with
    :func:`inspector.render.filters.plot_filterset`, whose axes-per-kernel layout costs about
    10 ms per kernel (≈1 s for 64 kernels of VGG16 block5_conv3), over the 300 ms per-map budget.
    The annotated ``plot_filterset`` figure is what the SVG download and the batch export give.
    """
    pos = np.arange(fs.n_inputs) if shown is None else np.asarray(shown, dtype=np.int64)
    if rgb:
        from inspector.render.filters import plot_rgb_filters

        return plot_rgb_filters([fs], dpi=DPI)
    return _grid_figure(fs, pos, norm=norm, cmap=cmap, layer_range=layer_range, title=title)


def _grid_figure(fs: FilterSet, pos: np.ndarray, *, norm: str, cmap: str, layer_range: float | None,
                 title: str | None) -> Figure:
    title = title or f"{fs.layer_path} map {fs.map_index}" + (" (BN folded)" if fs.bn_folded else "")
    tiles, _ = _tiles(fs.kernels[pos])
    n = len(tiles)
    if norm == "kernel":
        peaks = np.max(np.abs(tiles.reshape(n, -1)), axis=1)
        peaks[peaks == 0] = 1.0
        tiles = tiles / peaks[:, None, None]
        vmax = 1.0
    elif norm == "layer" and layer_range:
        vmax = layer_range
    else:
        vmax = float(np.max(np.abs(tiles))) or 1.0
    scale = {"kernel": "each kernel scaled to ±1", "layer": f"layer range ±{vmax:.3g}"}.get(
        norm, f"map range ±{vmax:.3g}")
    labels = [str(int(fs.input_channels[p])) for p in pos]
    return mosaic_figure(tiles, labels, vmin=-vmax, vmax=vmax, cmap=cmap,
                         title=f"{title}: {n} of {fs.n_inputs} kernels, {scale}")


def mosaic_figure(tiles: np.ndarray, labels: Sequence[str], *, vmin: float, vmax: float, cmap: str,
                  title: str, cell: float | None = None) -> Figure:
    """Tiles ``(n, h, w)`` as ONE image with a gap between tiles, labelled, with a colour bar.

    A single ``imshow`` keeps drawing at tens of milliseconds for hundreds of tiles, where one
    axes per tile costs several milliseconds each.
    """
    import matplotlib

    n, h, w = tiles.shape
    cols = max(1, min(n, math.ceil(math.sqrt(n * h / max(w, 1))) if w < 8 * h else 1))
    rows = math.ceil(n / cols)
    gap = max(1, round(0.15 * max(h, w)))
    mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for t in range(n):
        r, c = divmod(t, cols)
        mosaic[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tiles[t]
    cell = cell or (0.75 if max(h, w) <= 7 else 1.1)
    aspect_w, aspect_h = w / max(h, w), h / max(h, w)
    width = max(3.2, min(14.0, 1.3 + cols * cell * aspect_w * 1.1))
    # About 15 characters of 8-pt text per inch: wrap long titles instead of clipping them, and
    # keep room for every line above the image.
    wrapped = textwrap.fill(title, max(30, int(width * 15)))
    top = 0.25 + 0.15 * (wrapped.count("\n") + 1)  # inches
    height = min(14.0, top + 0.25 + rows * cell * aspect_h * 1.1)
    fig = Figure(figsize=(width, height))
    # Fixed margins in inches (row labels left, colour bar and its labels right), not fractions:
    # narrow grids would otherwise clip the colour-bar labels.
    left, right = 0.3 / width, 0.75 / width
    ax = fig.add_axes((left, 0.1 / height, 1 - left - right, 1 - (top + 0.1) / height))
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")  # the gaps stay white
    im = ax.imshow(mosaic, cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    _label_tiles(ax, labels, n, rows, cols, h, w, gap)
    cax = fig.add_axes((1 - 0.6 / width, 0.15, 0.1 / width, max(0.2, 0.75 - top / height)))
    bar = fig.colorbar(im, cax=cax, ticks=[vmin, (vmin + vmax) / 2, vmax])  # 3 ticks: text is costly
    bar.ax.tick_params(labelsize=6)
    bar.ax.set_yticklabels([f"{vmin:.2g}", f"{(vmin + vmax) / 2:.2g}", f"{vmax:.2g}"])
    fig.suptitle(wrapped, fontsize=8, y=1 - 0.08 / height, va="top")
    return fig


#: Up to this many tiles each gets its own label; beyond, rows and columns are labelled instead.
#: Text is the dominant drawing cost (about 1-2 ms per label), and the per-map budget is 300 ms.
_MAX_TILE_LABELS = 24


def _label_tiles(ax: Any, labels: Sequence[str], n: int, rows: int, cols: int, h: int, w: int,
                 gap: int) -> None:
    if n <= _MAX_TILE_LABELS and w > 1:
        for t in range(n):
            r, c = divmod(t, cols)
            ax.text(c * (w + gap) - 0.5, r * (h + gap) - 0.6, labels[t], fontsize=6, va="bottom",
                    ha="left", color="#333")
        return
    try:  # consecutive numbers (channel order): "row start + column offset" reads the number
        numbers = [int(x) for x in labels]
        consecutive = all(b - a == 1 for a, b in itertools.pairwise(numbers))
    except ValueError:
        consecutive = False
    # Plain texts, not axis ticks: a tick is a line and two texts, several times the cost.
    for c in range(cols):
        ax.text(c * (w + gap) + (w - 1) / 2, -0.6, f"+{c}", fontsize=6, ha="center", va="bottom",
                color="#333")
    for r in range(rows):
        ax.text(-0.7, r * (h + gap) + (h - 1) / 2, labels[r * cols] if consecutive else f"#{r * cols}",
                fontsize=6, ha="right", va="center", color="#333")


def filter_view(index: ModelIndex, layer_path: str, j: int, *, stage: str | None = None,
                fold_bn: bool | str = False, sort: str | None = None, norm: str = "map",
                cmap: str = "RdBu_r", cap: int = DEFAULT_CAP, offset: int = 0, rgb: bool = False,
                layer_range: float | None = None) -> FilterView:
    """Slice map ``j``, draw up to ``cap`` kernels from ``offset`` (or the RGB filter), encode PNG.

    This is the whole per-map render path of the Filters page.
    """
    layer = index.layer(layer_path)
    fs = filters_for_map(layer, j, index=index, fold_bn=fold_bn, sort=sort, stage=stage)
    n_maps = output_map_count(layer, stage)
    shown_fs, notes = _display_set(fs)
    from inspector.render.filters import is_rgb_filterset

    use_rgb = rgb and is_rgb_filterset(shown_fs)
    start = max(0, min(int(offset), max(shown_fs.n_inputs - 1, 0)))
    shown = np.arange(start, min(shown_fs.n_inputs, start + max(1, int(cap))))
    if use_rgb:
        shown = np.arange(shown_fs.n_inputs)
    _, depth_note = _tiles(shown_fs.kernels[:1])
    fig = filter_figure(shown_fs, shown=shown, norm=norm, cmap=cmap, layer_range=layer_range, rgb=use_rgb)
    png = figure_bytes(fig)
    return FilterView(shown_fs, n_maps, shown, png, use_rgb,
                      notes + ((depth_note,) if depth_note else ()) + tuple(fs.notes))


def can_show_rgb(index: ModelIndex, layer_path: str) -> bool:
    """Whether the layer's maps read exactly 3 input channels with 2-D kernels (colour first layers)."""
    layer = index.layer(layer_path)
    kernel = layer.kernel
    return (layer.kind is LayerKind.CONV and kernel is not None and len(kernel.shape) == 4
            and kernel.shape[-2] == 3)


def filter_npz(fs: FilterSet, source: str = "") -> bytes:
    """The FilterSet as ``.npz`` bytes, written by :func:`inspector.export.save_npz` (same layout as
    ``inspector export``), through a temporary folder that is removed at once."""
    import tempfile
    from pathlib import Path

    from inspector.export import save_npz

    with tempfile.TemporaryDirectory(prefix="inspector-npz-") as tmp:
        return save_npz(fs, Path(tmp) / "filters.npz", source=source).read_bytes()


def filter_svg(fs: FilterSet, *, start: int = 0, cap: int = DEFAULT_CAP, norm: str = "map",
               cmap: str = "RdBu_r", rgb: bool = False) -> bytes:
    """The annotated shared figure (:func:`inspector.render.filters.plot_filterset`) of the same
    page of kernels, as SVG: what ``inspector filters`` and the batch export draw."""
    from inspector.render.filters import plot_filterset, plot_rgb_filters

    if rgb:
        return figure_bytes(plot_rgb_filters([fs]), "svg")
    page = start // max(cap, 1)
    fig = plot_filterset(fs, max_kernels=cap, page=page, cmap=cmap,
                         scale="per-kernel" if norm == "kernel" else "shared")
    return figure_bytes(fig, "svg")


# -- consumers ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConsumerRow:
    """One later layer that reads the map: through which layers, and its strongest readers."""

    consumer: str
    kind: str
    input_channel: int
    via: str
    n_outputs: int
    strongest: str  # "map (norm)" for the top few output maps reading this channel
    notes: str


def consumer_rows(index: ModelIndex, layer_path: str, j: int, *, stage: str | None = None,
                  top: int = 5) -> tuple[list[ConsumerRow], list[tuple[str, str]]]:
    """The consumers of map ``j`` (exact slices of later kernels) and where the walk stopped."""
    found = consumers_of_map(index, layer_path, j, stage=stage)
    rows = []
    for sl in found.slices:
        norms = sl.norms
        order = np.argsort(-norms, kind="stable")[:top]
        strongest = ", ".join(f"{int(sl.output_maps[o])} ({norms[o]:.3g})" for o in order)
        rows.append(ConsumerRow(sl.consumer_path, str(sl.kind), int(sl.input_channel),
                                " → ".join(sl.via) or "direct", len(sl.output_maps), strongest,
                                "; ".join(sl.notes)))
    return rows, list(found.stops)


def stage_choices(index: ModelIndex, layer_path: str) -> list[str]:
    return [str(s) for s in stages_for(index.layer(layer_path))]


# -- activations and decomposition -----------------------------------------------------------------------

def consumer_figure(index: ModelIndex, layer_path: str, j: int, consumer: str, *, stage: str | None = None,
                    cap: int = DEFAULT_CAP, cmap: str = "RdBu_r") -> Figure | None:
    """The kernels through which map ``j`` reaches each output map of ``consumer`` (strongest first).

    This is the forward half of "how are the maps of one layer connected to the next": tile ``m``
    is the slice of the consumer's kernel that reads map ``j`` and writes its output map ``m``.
    Returns None when the slices are single weights (a Dense after global pooling): the table's
    "strongest" column says it all then.
    """
    found = consumers_of_map(index, layer_path, j, stage=stage)
    sl = next((s for s in found.slices if s.consumer_path == consumer), None)
    if sl is None or sl.kernels.ndim < 2:
        return None
    order = np.argsort(-sl.norms, kind="stable")[:cap]
    tiles, note = _tiles(sl.kernels[order])
    vmax = float(np.max(np.abs(tiles))) or 1.0
    labels = [f"→{int(sl.output_maps[o])}" for o in order]
    more = f", the {len(order)} strongest of {len(sl.output_maps)}" if len(order) < len(sl.output_maps) else ""
    return mosaic_figure(tiles, labels, vmin=-vmax, vmax=vmax, cmap=cmap,
                         title=f"{consumer}: kernels reading {layer_path} map {j} (input channel "
                               f"{sl.input_channel}){more}, labelled by output map" + (f"; {note}" if note else ""))


def activation_figure(act: np.ndarray, layer_path: str, *, cap: int = DEFAULT_CAP, offset: int = 0,
                      cmap: str = "viridis", shared_scale: bool = False) -> Figure:
    """Maps ``offset .. offset+cap`` of one captured output ``(1, *spatial, C)`` (channels_last),
    drawn by :func:`inspector.render.activations.activation_grid_figure`."""
    from inspector.render.activations import activation_grid_figure

    a = np.asarray(act[0])
    if a.ndim == 1:
        return activation_grid_figure(a, title=f"{layer_path} ({a.size} units)")
    maps = range(max(0, min(offset, a.shape[-1] - 1)), min(a.shape[-1], offset + cap))
    return activation_grid_figure(a, title=layer_path, maps=list(maps), max_maps=cap, cmap=cmap,
                                  shared_scale=shared_scale)


def decomposition_figure(dec: Any, top_k: int = 6) -> Figure:
    """Input maps, kernels and contributions of the ``top_k`` strongest channels, then Σ + bias → output."""
    from inspector.render.activations import decomposition_figure as draw

    return draw(dec, top=top_k)
