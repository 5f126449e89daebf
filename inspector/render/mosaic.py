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
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .common import DIVERGING, new_figure

__all__ = ["MOSAIC_GID", "MosaicLayout", "mosaic_figure", "mosaic_image"]

#: ``gid`` of the mosaic's image artist, so callers and tests find it among colour bars.
MOSAIC_GID = "inspector-mosaic"

_MIN_TILE_PX = 12  # tiles smaller than this are upscaled, so a 1-pixel gap is thin beside them
_LABEL_PT = 6.0
_LINE_IN = 0.11  # inches per line of 6-pt label text (with leading)


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
                  label_lines: int = 1) -> MosaicLayout:
        """A layout for ``n`` tiles drawn ``tile_in`` inches on their longer side, with room for
        ``label_lines`` lines of label text between rows."""
        if cols is None:  # close to square on paper: tall tiles get more columns
            cols = math.ceil(math.sqrt(n * tile_h / max(tile_w, 1))) if n > 0 else 1
        cols = max(1, min(cols, max(n, 1)))
        rows = max(1, math.ceil(n / cols))
        scale = max(1, math.ceil(_MIN_TILE_PX / max(tile_h, tile_w, 1)))
        px_per_in = max(tile_h, tile_w) * scale / tile_in
        gap_x = max(1, round(0.12 * px_per_in))
        gap_y = max(gap_x, math.ceil((0.06 + _LINE_IN * label_lines) * px_per_in))
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
            if im.get_gid() == MOSAIC_GID:
                return np.ma.getdata(im.get_array()), ax._inspector_layout  # type: ignore[attr-defined]
    raise ValueError("the figure has no mosaic image")


def mosaic_figure(tiles: np.ndarray, labels: Sequence[str] | None = None, *,
                  sublabels: Sequence[str] | None = None, title: str = "", cols: int | None = None,
                  vmin: float | None = None, vmax: float | None = None, cmap: str = DIVERGING,
                  colorbar: bool = True, tile_in: float = 0.9, row_labels: Sequence[str] | None = None,
                  fig: Figure | None = None, dpi: float = 100) -> Figure:
    """``tiles`` ``(n, h, w)`` (colour-mapped) or ``(n, h, w, 3)`` (RGB in [0, 1]) as one image.

    ``labels`` go above each tile and ``sublabels`` (e.g. norms) on a second line, both per tile so
    every tile names what it shows; ``row_labels`` go left of each row (e.g. the map of a layer
    grid). ``vmin`` / ``vmax`` default to the data range. The colour bar (colour-mapped tiles only)
    and margins are fixed in inches, so narrow and wide grids keep their texts unclipped.
    """
    tiles = np.asarray(tiles, dtype=np.float64)
    rgb = tiles.ndim == 4
    n, h, w = tiles.shape[:3]
    lines = (labels is not None) + (sublabels is not None)
    layout = MosaicLayout.for_tiles(n, h, w, cols=cols, tile_in=tile_in, label_lines=lines)
    # RGB has no "bad" colour: gaps are white, like the figure around them.
    mosaic = layout.compose(tiles, fill=1.0 if rgb else np.nan)
    px_per_in = max(h, w) * layout.scale / tile_in
    img_w, img_h = mosaic.shape[1] / px_per_in, mosaic.shape[0] / px_per_in
    show_bar = colorbar and not rgb
    left = 0.15 + (0.55 if row_labels is not None else 0.0)
    right = 0.85 if show_bar else 0.15
    width = max(left + img_w + right, 3.2)
    left += (width - left - img_w - right) / 2  # a grid narrower than the minimum width is centred
    # About 15 characters of 8-pt text per inch: wrap long title lines instead of clipping them.
    wrapped = "\n".join(textwrap.fill(line, max(30, int(width * 15))) for line in title.split("\n")) if title else ""
    title_in = 0.1 + 0.15 * (wrapped.count("\n") + 1) if wrapped else 0.0
    top = title_in + 0.08 + _LINE_IN * lines  # the first row's labels sit above the image
    bottom = 0.12
    height = top + img_h + bottom
    # Sizes in whole tenths of an inch are whole pixels at the usual dpi (40, 50, 80, 100, 120...),
    # so a saved PNG is exactly size × dpi (matplotlib truncates fractional pixels).
    width, height = math.ceil(width * 10 - 1e-6) / 10, math.ceil(height * 10 - 1e-6) / 10
    fig = new_figure(fig, width, height, dpi)
    # new_figure caps the size at 40 inches: scale everything down proportionally in that case.
    fw, fh = fig.get_figwidth(), fig.get_figheight()
    ax = fig.add_axes((left / fw, bottom / fh, min(img_w, fw - left - right) / fw, min(img_h, fh - top - bottom) / fh))
    ax._inspector_layout = layout  # type: ignore[attr-defined]  # for mosaic_image()
    if rgb:
        im = ax.imshow(np.clip(mosaic, 0.0, 1.0), interpolation="nearest")
    else:
        finite = tiles[np.isfinite(tiles)]
        lo = float(finite.min()) if vmin is None and finite.size else (vmin if vmin is not None else 0.0)
        hi = float(finite.max()) if vmax is None and finite.size else (vmax if vmax is not None else 1.0)
        colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")  # NaN gaps stay white
        im = ax.imshow(mosaic, cmap=colormap, vmin=lo, vmax=hi, interpolation="nearest")
    im.set_gid(MOSAIC_GID)
    ax.set_axis_off()
    _label(ax, layout, labels, sublabels, row_labels)
    if show_bar:
        bar_h = max(0.2, min(0.75, img_h / fh))
        cax = fig.add_axes((1 - 0.65 / fw, bottom / fh + (img_h / fh - bar_h) / 2, 0.1 / fw, bar_h))
        lo, hi = im.get_clim()
        mid = (lo + hi) / 2
        # Three ticks: every tick label is a text, and text is the dominant drawing cost.
        bar = fig.colorbar(im, cax=cax, ticks=[lo, mid, hi])
        bar.ax.tick_params(labelsize=6)
        bar.ax.set_yticklabels([f"{lo:.3g}", f"{mid:.3g}", f"{hi:.3g}"])
    if wrapped:
        fig.suptitle(wrapped, fontsize=8, y=1 - 0.08 / fh, va="top")
    return fig


def _label(ax: Axes, layout: MosaicLayout, labels: Sequence[str] | None, sublabels: Sequence[str] | None,
           row_labels: Sequence[str] | None) -> None:
    """Texts in data coordinates (pixels of the mosaic): no ticks, which cost several texts each."""
    s = layout.scale
    for t in range(layout.n):
        y, x = layout.origin(t)
        text = "\n".join(part[t] for part in (labels, sublabels) if part is not None)
        if text:
            ax.text(x - 0.5, y - 0.5 - 0.3 * s, text, fontsize=_LABEL_PT, va="bottom", ha="left", color="#333",
                    linespacing=1.1)
    if row_labels is not None:
        for r, text in enumerate(row_labels[: layout.rows]):
            y, _ = layout.origin(r * layout.cols)
            ax.text(-0.5 - layout.gap_x, y + (layout.tile_h * s - 1) / 2, text, fontsize=_LABEL_PT, ha="right",
                    va="center", color="#333")
