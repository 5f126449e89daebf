"""Many small images as ONE image: the fast grid behind kernel, RGB-filter and activation figures.

One axes per tile costs about 10 ms per tile in matplotlib (axes, ticks, spines, layout), so a grid
of 64 kernels took ~1 s. Here every tile is copied into one array, with blank gaps between tiles,
and drawn with a single ``imshow``; labels are plain texts in data coordinates. A grid of 64 tiles
then draws in tens of milliseconds, plus about 1 ms per label (text is the remaining cost).

Tiles are upscaled by an integer factor (nearest neighbour, values unchanged) so that gaps, which
must be whole pixels of the array, can be thin next to 3×3 kernels. :class:`MosaicLayout` knows
where every tile sits, and :meth:`MosaicLayout.split` gives the tiles back from the drawn array
(tests compare them with the kernels; nothing is lost in the round trip).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.transforms import ScaledTranslation, Transform

from .common import DEFAULT_DPI, DIVERGING, LABEL_PT, new_figure, text_width_in, wrap_to_width

__all__ = ["MARKED_GID", "MOSAIC_GID", "MosaicLayout", "mosaic_figure", "mosaic_image"]

#: ``gid`` of the mosaic's image artist, so callers and tests find it among colour bars.
MOSAIC_GID = "inspector-mosaic"

#: ``gid`` of the hatching over marked (e.g. all-zero) tiles.
MARKED_GID = "inspector-marked"

_MIN_TILE_PX = 12  # tiles smaller than this are upscaled, so a 1-pixel gap is thin beside them
_LEADING = 1.3  # line height / font size, with room for descenders and the "‖" of norm labels
_LINE_IN = LABEL_PT * _LEADING / 72.0  # inches per line of label text
_LABEL_OFFSET_PT = 1.5  # labels sit this far above their tile
_LABEL_PAD_IN = (_LABEL_OFFSET_PT + 2.0) / 72.0  # label block height beyond its lines
_TITLE_PT = 8.0
_MARGIN_IN = 0.12
_BAR_W_IN = 0.1
_MIN_TILE_IN = 0.12
_MAX_WIDTH_IN = 16.0  # the grid itself; beyond, tiles shrink (labels are thinned, never shrunk)
_MAX_HEIGHT_IN = 30.0


@dataclass(frozen=True)
class MosaicLayout:
    """Where ``n`` tiles of ``tile_h × tile_w`` sit in the mosaic array (row-major, ``cols`` per row).

    ``scale`` is the integer upscaling of every tile, ``gap_x`` / ``gap_y`` the blank pixels between
    tiles (``gap_y`` larger when labels sit between rows).
    """

    n: int
    rows: int
    cols: int
    tile_h: int
    tile_w: int
    scale: int
    gap_x: int
    gap_y: int

    @classmethod
    def for_tiles(cls, n: int, tile_h: int, tile_w: int, *, cols: int | None = None, tile_in: float = 0.9,
                  label_lines: int = 1, gap_in: float | None = None, label_in: float | None = None) -> MosaicLayout:
        """A layout for ``n`` tiles drawn ``tile_in`` inches on their longer side, with room for
        ``label_lines`` lines of label text between rows (``label_in`` inches, when given, instead).

        ``gap_in`` is the blank space between tiles (default: 0.12 in, less for small tiles)."""
        if cols is None:  # close to square on paper: tall tiles get more columns
            cols = math.ceil(math.sqrt(n * tile_h / max(tile_w, 1))) if n > 0 else 1
        cols = max(1, min(cols, max(n, 1)))
        rows = max(1, math.ceil(n / cols))
        scale = max(1, math.ceil(_MIN_TILE_PX / max(tile_h, tile_w, 1)))
        px_per_in = max(tile_h, tile_w) * scale / tile_in
        if gap_in is None:
            gap_in = max(0.04, min(0.12, 0.15 * tile_in))
        gap_x = max(1 if scale == 1 else 2, round(gap_in * px_per_in))  # upscaled tiles: a visible gap
        if label_in is None:
            label_in = 0.06 + _LINE_IN * label_lines
        gap_y = max(gap_x, math.ceil(label_in * px_per_in))
        return cls(n, rows, cols, tile_h, tile_w, scale, gap_x, gap_y)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the mosaic array in pixels."""
        return (self.rows * (self.tile_h * self.scale + self.gap_y) - self.gap_y,
                self.cols * (self.tile_w * self.scale + self.gap_x) - self.gap_x)

    def origin(self, t: int) -> tuple[int, int]:
        """(y, x) pixel of tile ``t``'s top-left corner."""
        r, c = divmod(t, self.cols)
        return r * (self.tile_h * self.scale + self.gap_y), c * (self.tile_w * self.scale + self.gap_x)

    def compose(self, tiles: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Tiles ``(n, h, w)`` or ``(n, h, w, channels)`` as one array; gaps hold ``fill``."""
        tiles = np.asarray(tiles, dtype=np.float64)
        s = self.scale
        out = np.full(self.shape + tiles.shape[3:], fill)
        for t in range(self.n):
            y, x = self.origin(t)
            out[y: y + self.tile_h * s, x: x + self.tile_w * s] = (
                tiles[t] if s == 1 else np.repeat(np.repeat(tiles[t], s, axis=0), s, axis=1))
        return out

    def split(self, image: np.ndarray) -> np.ndarray:
        """The tiles back from a composed array, ``(n, h, w[, channels])`` (inverse of :meth:`compose`)."""
        image = np.asarray(image)
        s = self.scale
        out = []
        for t in range(self.n):
            y, x = self.origin(t)
            out.append(image[y: y + self.tile_h * s: s, x: x + self.tile_w * s: s])
        return np.stack(out) if out else np.empty((0, self.tile_h, self.tile_w, *image.shape[2:]))


def mosaic_image(fig: Figure) -> tuple[np.ndarray, MosaicLayout]:
    """The drawn mosaic array of a figure made by :func:`mosaic_figure`, and its layout."""
    for ax in fig.axes:
        for im in ax.images:
            array = im.get_array()
            if im.get_gid() == MOSAIC_GID and array is not None:
                layout: MosaicLayout = ax._inspector_layout  # type: ignore[attr-defined]
                return np.ma.getdata(array), layout
    raise ValueError("the figure has no mosaic image")


def mosaic_figure(tiles: np.ndarray, labels: Sequence[str] | None = None, *,
                  sublabels: Sequence[str] | None = None, title: str = "", cols: int | None = None,
                  vmin: float | None = None, vmax: float | None = None, cmap: str = DIVERGING,
                  colorbar: bool = True, tile_in: float = 0.9, row_labels: Sequence[str] | None = None,
                  fig: Figure | None = None, dpi: float = DEFAULT_DPI, col_labels: Sequence[str] | None = None,
                  extend: str = "neither", bar_ticklabels: Sequence[str] | None = None,
                  marked: Sequence[int] = (), max_width: float = _MAX_WIDTH_IN,
                  max_height: float = _MAX_HEIGHT_IN) -> Figure:
    """``tiles`` ``(n, h, w)`` (colour-mapped) or ``(n, h, w, 3)`` (RGB in [0, 1]) as one image.

    ``labels`` go above each tile and ``sublabels`` (e.g. norms) on a second line, both per tile so
    every tile names what it shows; ``row_labels`` go left of each row (e.g. the map of a layer
    grid) and ``col_labels`` above each column (a big grid's index offsets). ``vmin`` / ``vmax``
    default to the data range. ``extend`` draws the colour bar's clipping triangles and
    ``bar_ticklabels`` replaces its three tick labels (low, middle, high). Tiles in ``marked``
    (e.g. all-zero kernels) are hatched so they never pass for ordinary mid-colour tiles.

    Text never shrinks below :data:`LABEL_PT` points: the grid is at most ``max_width`` ×
    ``max_height`` inches, tiles shrink to fit, and labels that would not fit their tile are thinned
    (every k-th column) and norms dropped rather than printed on top of each other. Margins are
    measured from the texts, so titles, labels and the colour bar never overlap or leave the figure.
    """
    tiles = np.asarray(tiles, dtype=np.float64)
    rgb = tiles.ndim == 4
    n, h, w = tiles.shape[:3]
    long_side = max(h, w, 1)
    if cols is None:
        cols = math.ceil(math.sqrt(n * h / max(w, 1))) if n > 0 else 1
    cols = max(1, min(cols, max(n, 1)))
    rows = max(1, math.ceil(n / cols))
    line_in = LABEL_PT * _LEADING / 72.0
    lab_w = _widest(labels)
    sub_w = _widest(sublabels)
    row_w = _widest(row_labels)
    col_w = _widest(col_labels)
    # Fit the grid into max_width × max_height by shrinking the tiles (never the text).
    for _ in range(3):
        gap_in = max(0.04, min(0.12, 0.15 * tile_in))
        pitch = tile_in * w / long_side + gap_in
        step = 1 if labels is None else max(1, math.ceil((lab_w + 0.03) / pitch))
        show_sub = sublabels is not None and step == 1 and sub_w + 0.03 <= pitch
        lines = (labels is not None) + show_sub
        label_in = _LABEL_PAD_IN + lines * line_in if lines else 0.0
        grid_w = cols * pitch - gap_in
        grid_h = rows * (tile_in * h / long_side + max(gap_in, label_in)) - max(gap_in, label_in)
        shrink = min(max_width / max(grid_w, 1e-9), max_height / max(grid_h, 1e-9), 1.0)
        if shrink >= 0.999 or tile_in <= _MIN_TILE_IN:
            break
        tile_in = max(_MIN_TILE_IN, tile_in * shrink * 0.98)
    col_step = 1 if col_labels is None else max(1, math.ceil((col_w + 0.03) / pitch))
    layout = MosaicLayout.for_tiles(n, h, w, cols=cols, tile_in=tile_in, gap_in=gap_in,
                                    label_in=label_in if lines else gap_in)
    # RGB has no "bad" colour: gaps are white, like the figure around them.
    mosaic = layout.compose(tiles, fill=1.0 if rgb else np.nan)
    px_per_in = long_side * layout.scale / tile_in
    img_w, img_h = mosaic.shape[1] / px_per_in, mosaic.shape[0] / px_per_in
    show_bar = colorbar and not rgb
    lo_hi = _limits(tiles, vmin, vmax) if not rgb else (0.0, 1.0)
    ticks = list(bar_ticklabels) if bar_ticklabels is not None else [format_tick(v) for v in
                                                                     (lo_hi[0], sum(lo_hi) / 2, lo_hi[1])]
    left = _MARGIN_IN + (row_w + 0.1 if row_labels is not None else 0.0)
    # Thinned labels may run past the last tile: keep them inside the figure.
    overhang = max(0.0, (lab_w if labels is not None else 0.0) - tile_in * w / long_side,
                   (sub_w if show_sub else 0.0) - tile_in * w / long_side, col_w - tile_in * w / long_side)
    right = _MARGIN_IN + overhang
    if show_bar:
        right = max(right, 0.12) + _BAR_W_IN + 0.06 + max(_widest(ticks), 0.2) + _MARGIN_IN
    width = max(left + img_w + right, 3.2)
    left += (width - left - img_w - right) / 2  # a grid narrower than the minimum width is centred
    wrapped = wrap_to_width(title, width - 2 * _MARGIN_IN, _TITLE_PT) if title else ""
    title_in = 0.08 + (wrapped.count("\n") + 1) * _TITLE_PT * _LEADING / 72.0 if wrapped else 0.0
    # The first row's labels, and the column header, sit above the image.
    top = title_in + 0.08 + label_in * (lines > 0) + (line_in + _LABEL_PAD_IN if col_labels is not None else 0.0)
    bottom = _MARGIN_IN
    height = top + img_h + bottom
    # Sizes in whole tenths of an inch are whole pixels at the usual dpi (40, 50, 80, 100, 120, 200...),
    # so a saved PNG is exactly size × dpi (matplotlib truncates fractional pixels).
    width, height = math.ceil(width * 10 - 1e-6) / 10, math.ceil(height * 10 - 1e-6) / 10
    fig = new_figure(fig, width, height, dpi)
    fw, fh = fig.get_figwidth(), fig.get_figheight()
    ax = fig.add_axes((left / fw, (fh - top - img_h) / fh, img_w / fw, img_h / fh))
    ax._inspector_layout = layout  # type: ignore[attr-defined]  # for mosaic_image()
    # "none": unresampled in SVG/PDF (drawn with crisp edges), nearest-neighbour in PNG: kernels stay sharp.
    if rgb:
        im = ax.imshow(np.clip(mosaic, 0.0, 1.0), interpolation="none")
    else:
        colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")  # NaN gaps stay white
        im = ax.imshow(mosaic, cmap=colormap, vmin=lo_hi[0], vmax=lo_hi[1], interpolation="none")
    im.set_gid(MOSAIC_GID)
    ax.set_axis_off()
    _label(ax, layout, labels if labels is not None else None, sublabels if show_sub else None, row_labels,
           col_labels, step, col_step)
    if marked:
        _hatch(ax, layout, marked)
    if show_bar:
        bar_h = max(0.25, min(0.75 * fh, img_h * 0.9, 2.5)) / fh
        y0 = (fh - top - img_h / 2) / fh - bar_h / 2
        x0 = (left + img_w + max(overhang, 0.12)) / fw
        cax = fig.add_axes((x0, y0, _BAR_W_IN / fw, bar_h))
        # Three ticks: every tick label is a text, and text is the dominant drawing cost.
        bar = fig.colorbar(im, cax=cax, ticks=[lo_hi[0], sum(lo_hi) / 2, lo_hi[1]], extend=extend)
        bar.ax.tick_params(labelsize=LABEL_PT, length=2, pad=2)
        bar.ax.set_yticklabels(ticks)
    if wrapped:
        fig.suptitle(wrapped, fontsize=_TITLE_PT, y=1 - 0.06 / fh, va="top", linespacing=1.2)
    return fig


def format_tick(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}"


def _limits(tiles: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    finite = tiles[np.isfinite(tiles)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _widest(texts: Sequence[str] | None) -> float:
    """Inches of the widest of ``texts`` at the label size (measures the longest few strings)."""
    if not texts:
        return 0.0
    candidates = sorted({t for t in texts if t}, key=lambda t: max(map(len, t.split("\n"))), reverse=True)[:8]
    return max((text_width_in(t, LABEL_PT) for t in candidates), default=0.0)


def _offset_points(ax: Axes, x: float = 0.0, y: float = 0.0) -> Transform:
    """Data coordinates shifted by (x, y) points: matplotlib's offset_copy(units="points"), written out
    because its annotation accepts only a top-level Figure while an axes may sit in a SubFigure."""
    return ax.transData + ScaledTranslation(x / 72.0, y / 72.0, ax.figure.dpi_scale_trans)


def _label(ax: Axes, layout: MosaicLayout, labels: Sequence[str] | None, sublabels: Sequence[str] | None,
           row_labels: Sequence[str] | None, col_labels: Sequence[str] | None, step: int, col_step: int) -> None:
    """Texts in data coordinates (pixels of the mosaic), offset by points so their distance to the
    tile is the same at any upscaling: no ticks, which cost several texts each."""
    s = layout.scale
    above = _offset_points(ax, y=_LABEL_OFFSET_PT)
    for t in range(layout.n):
        if (t % layout.cols) % step:
            continue
        y, x = layout.origin(t)
        text = "\n".join(part[t] for part in (labels, sublabels) if part is not None)
        if text:
            ax.text(x - 0.5, y - 0.5, text, fontsize=LABEL_PT, va="bottom", ha="left", color="#333",
                    linespacing=1.2, transform=above)
    if col_labels is not None:
        header = _offset_points(ax, y=_LABEL_OFFSET_PT)
        for c, text in enumerate(col_labels[: layout.cols]):
            if c % col_step == 0 and text:
                _, x = layout.origin(c)
                ax.text(x - 0.5, -0.5, text, fontsize=LABEL_PT, va="bottom", ha="left", color="#333",
                        transform=header)
    if row_labels is not None:
        left = _offset_points(ax, x=-3)
        for r, text in enumerate(row_labels[: layout.rows]):
            y, _ = layout.origin(r * layout.cols)
            ax.text(-0.5, y + (layout.tile_h * s - 1) / 2, text, fontsize=LABEL_PT, ha="right",
                    va="center", color="#333", transform=left)


def _hatch(ax: Axes, layout: MosaicLayout, marked: Sequence[int]) -> None:
    """Hatched outlines over ``marked`` tiles (one collection: cheap for hundreds of tiles)."""
    s = layout.scale
    boxes = []
    for t in marked:
        if 0 <= t < layout.n:
            y, x = layout.origin(t)
            boxes.append(Rectangle((x - 0.5, y - 0.5), layout.tile_w * s, layout.tile_h * s))
    if boxes:
        ax.add_collection(PatchCollection(boxes, facecolor="none", edgecolor="#444444", hatch="xxxx",
                                          linewidth=0.4, gid=MARKED_GID))
