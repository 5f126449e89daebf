"""Shared pieces of every figure builder: figures without pyplot, colour scales, grids, paging.

Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot, no global state), so they
can be built in threads, saved by any backend and embedded by the app. Builders take an optional
``fig`` (or ``ax``) like captum's visualisers, so single plots compose into bigger grids.
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

__all__ = [
    "DEFAULT_DPI",
    "DIVERGING",
    "LABEL_PT",
    "Scale",
    "clip_counts",
    "colorbar_extend",
    "format_number",
    "grid_shape",
    "new_figure",
    "page_range",
    "rgb_image",
    "symmetric_limit",
    "text_width_in",
    "wrap_to_width",
]

#: Default figure resolution: PNGs are 2x (a standard 8-9 inch figure is 1600-1800 px wide), so
#: 7-pt labels stay sharp on hi-DPI screens and when the dashboard scales the image down.
DEFAULT_DPI = 200

#: Smallest text in any figure, in points (at the saved DPI, 7 pt is 19 px at 200 dpi, 10 px at 100).
LABEL_PT = 7.0

#: Zero is white: positive weights red, negative blue, so a kernel's sign is read at a glance.
DIVERGING = "RdBu_r"


class Scale(StrEnum):
    SHARED = "shared"  # one symmetric scale for the whole figure: kernels compare directly
    PER_KERNEL = "per-kernel"  # each kernel uses its own ±max: shapes of weak kernels stay visible


def new_figure(fig: Figure | None, width: float, height: float, dpi: float = DEFAULT_DPI) -> Figure:
    """``fig`` cleared for reuse, or a new Figure of at most 40×40 inches."""
    if fig is not None:
        fig.clear()
        return fig
    return Figure(figsize=(min(max(width, 2.5), 40.0), min(max(height, 2.0), 40.0)), dpi=dpi)


def symmetric_limit(*arrays: np.ndarray) -> float:
    """max |value| over the arrays (1.0 when all are zero), for ``vmin=-v, vmax=v``."""
    vmax = max((float(np.max(np.abs(a))) for a in arrays if np.size(a)), default=0.0)
    return vmax if vmax > 0 and math.isfinite(vmax) else 1.0


def grid_shape(n: int, cols: int | None = None, aspect: float = 1.0) -> tuple[int, int]:
    """(rows, cols) for ``n`` cells, close to square for cells of width/height ``aspect``."""
    if n <= 0:
        return 1, 1
    if cols is None:
        # Up to 8 cells fit one row (RGB's 3 kernels side by side); beyond, close to square.
        cols = n if n <= 8 and aspect <= 2 else max(1, min(n, math.ceil(math.sqrt(n / max(aspect, 1e-3)))))
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def page_range(n: int, per_page: int, page: int) -> tuple[int, int]:
    """[start, stop) of ``page`` when showing ``per_page`` of ``n`` items (page clamped to range)."""
    per_page = max(1, per_page)
    pages = max(1, math.ceil(n / per_page))
    page = min(max(page, 0), pages - 1)
    return page * per_page, min(n, (page + 1) * per_page)


def rgb_image(kernel_hwc: np.ndarray, mode: str = "symmetric") -> np.ndarray:
    """A colour image in [0, 1] from a ``(kh, kw, 3)`` kernel, computed on a copy.

    ``symmetric`` maps 0 to mid-grey and ±max|k| to 0/1, so colour means sign and strength;
    ``minmax`` stretches each filter to the full range, as in the AlexNet figure.
    """
    k = np.array(kernel_hwc, dtype=np.float64, copy=True)
    if mode == "minmax":
        lo, hi = float(k.min()), float(k.max())
        return (k - lo) / (hi - lo) if hi > lo else np.full_like(k, 0.5)
    return np.clip(0.5 + k / (2.0 * symmetric_limit(k)), 0.0, 1.0)


def format_number(value: float | None) -> str:
    if value is None:
        return "none"
    if value == 0:
        return "0"
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.2e}"


_TEXT_TO_PATH = TextToPath()


def text_width_in(text: str, size: float) -> float:
    """Width in inches of the widest line of ``text`` at ``size`` points in the default font (the
    metrics the Agg, SVG and PDF backends draw with), measured without a renderer."""
    prop = FontProperties(size=size)
    widths = [_TEXT_TO_PATH.get_text_width_height_descent(line, prop, ismath=False)[0]
              for line in text.split("\n") if line]
    return max(widths, default=0.0) / 72.0


def wrap_to_width(text: str, width_in: float, size: float) -> str:
    """``text`` with each line wrapped at spaces (or, for a single long word, anywhere) so that no
    line is wider than ``width_in`` inches at ``size`` points: long titles wrap instead of clipping."""
    out: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            trial = f"{line} {word}" if line else word
            if not line or text_width_in(trial, size) <= width_in:
                line = trial
                continue
            out.append(line)
            line = word
        while line and text_width_in(line, size) > width_in and len(line) > 1:  # an over-long word
            cut = len(line) - 1
            while cut > 1 and text_width_in(line[:cut], size) > width_in:
                cut -= 1
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return "\n".join(out)


def clip_counts(values: np.ndarray, vmin: float, vmax: float) -> tuple[int, int]:
    """How many finite values lie below ``vmin`` and above ``vmax`` (drawn in the end colours)."""
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    return int(np.count_nonzero(v < vmin)), int(np.count_nonzero(v > vmax))


def colorbar_extend(below: int, above: int) -> str:
    """The colour bar ``extend`` that shows clipping: a triangle at each end where values were cut."""
    return {(False, False): "neither", (True, False): "min", (False, True): "max"}.get((below > 0, above > 0), "both")
