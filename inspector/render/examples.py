"""Contact sheets of dataset examples (:mod:`inspector.examples`): maps as rows, the k crops as columns.

Each crop is the resized input image inside the hit's receptive-field box, drawn at its own pixel
aspect (border boxes are clipped, so crops of one row may differ in size), labelled with the map's
value at that position. Crops are ``uint8`` arrays from :func:`inspector.examples.crop_examples`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from .common import DEFAULT_DPI, LABEL_PT, format_number, new_figure

if TYPE_CHECKING:
    from ..examples import Example

__all__ = ["contact_sheet_figure", "crop_label"]

_CELL_IN = 1.1  # inches per crop (image plus one label line)
_LABEL_IN = 0.75  # the row labels on the left


def crop_label(example: Example) -> str:
    """The value a crop is labelled with (and its file, shortened, in the dashboard captions)."""
    return format_number(example.value)


def contact_sheet_figure(rows: Sequence[tuple[int, Sequence[tuple[Example, np.ndarray]]]], *, title: str = "",
                         k: int | None = None, fig: Figure | None = None, dpi: float = DEFAULT_DPI) -> Figure:
    """One row per map (``(map index, [(example, crop), ...])``), ``k`` columns (default: the longest row)."""
    cols = max(1, k or max((len(r) for _, r in rows), default=1))
    n_rows = max(1, len(rows))
    width = _LABEL_IN + cols * _CELL_IN
    height = 0.45 + n_rows * _CELL_IN
    fig = new_figure(fig, width, height, dpi)
    if title:
        fig.suptitle(title, fontsize=LABEL_PT + 2, y=1.0 - 0.12 / height, va="top")
    top = 1.0 - 0.4 / height
    cell_w, cell_h = (1.0 - _LABEL_IN / width) / cols, top / n_rows
    if not rows:
        fig.text(0.5, 0.5, "no examples", ha="center", va="center", fontsize=LABEL_PT + 1)
        return fig
    for r, (map_index, crops) in enumerate(rows):
        y = top - (r + 1) * cell_h
        fig.text(_LABEL_IN / width * 0.9, y + cell_h * 0.55, f"map {map_index}", ha="right", va="center",
                 fontsize=LABEL_PT + 1)
        if not crops:
            fig.text(_LABEL_IN / width + 0.01, y + cell_h * 0.55, "no image", va="center", fontsize=LABEL_PT)
        for c, (example, crop) in enumerate(crops[:cols]):
            x = _LABEL_IN / width + c * cell_w
            ax = fig.add_axes((x + cell_w * 0.06, y + cell_h * 0.2, cell_w * 0.88, cell_h * 0.75))
            img = crop[..., 0] if crop.ndim == 3 and crop.shape[-1] == 1 else crop[..., :3] if crop.ndim == 3 else crop
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            # Under the crop, clear of its edge (a title with a negative y sat on the image's border).
            ax.text(0.5, -0.05, crop_label(example), transform=ax.transAxes, ha="center", va="top",
                    fontsize=LABEL_PT + 1)
    return fig
