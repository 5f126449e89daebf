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

__all__ = [
    "DIVERGING",
    "Scale",
    "format_number",
    "grid_shape",
    "new_figure",
    "page_range",
    "rgb_image",
    "symmetric_limit",
]

#: Zero is white: positive weights red, negative blue, so a kernel's sign is read at a glance.
DIVERGING = "RdBu_r"


class Scale(StrEnum):
    SHARED = "shared"  # one symmetric scale for the whole figure: kernels compare directly
    PER_KERNEL = "per-kernel"  # each kernel uses its own ±max: shapes of weak kernels stay visible


def new_figure(fig: Figure | None, width: float, height: float, dpi: float = 100) -> Figure:
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
