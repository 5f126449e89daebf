"""Figures of feature visualizations (:class:`inspector.visualize.Visualization`).

* :func:`visualization_grid` — one cell per optimized image, labelled ``map j`` with the activation
  reached and, when natural references were measured, how many times the best natural value it is.
  Images are drawn in the model's input range mapped to [0, 1]: RGB as colour, one channel as grey,
  other channel counts as their first channel (the label says so); 1-D signals as line plots.
* :func:`activation_curve` — the objective at every step, one line per image.
* :func:`visualization_figure` — both, the grid above the curve (what ``inspector visualize -o`` writes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .common import DEFAULT_DPI, LABEL_PT, format_number, grid_shape, new_figure, wrap_to_width

if TYPE_CHECKING:
    from ..visualize import Visualization

__all__ = ["activation_curve", "cell_label", "visualization_figure", "visualization_grid"]

_CELL_IN = 1.25  # inches per grid cell (image plus two label lines)


def cell_label(vis: Visualization, i: int) -> str:
    """``map 7`` / ``1.23 · 2.7× nat.`` under each image."""
    top = f"map {int(vis.map_index[i])}"
    per_map = int(np.sum(vis.map_index == vis.map_index[i]))
    if per_map > 1:
        top += f" #{int(np.sum(vis.map_index[:i] == vis.map_index[i])) + 1}"
    line = format_number(float(vis.activation[i]))
    ratios = vis.ratios()
    if ratios is not None and np.isfinite(ratios[i]):
        line += f" · {ratios[i]:.1f}× nat."
    return f"{top}\n{line}"


def _draw_cell(ax: Axes, vis: Visualization, unit: np.ndarray, i: int) -> None:
    img = unit[i]
    if img.ndim == 2:  # (L, C) signal
        lo, hi = vis.channel_range[:, 0], vis.channel_range[:, 1]
        x = np.moveaxis(vis.image[i], 0, -1) if vis.channels_first else vis.image[i]
        for c in range(x.shape[-1]):
            ax.plot(x[:, c], linewidth=0.8)
        ax.set_ylim(float(lo.min()), float(hi.max()))
        ax.tick_params(labelsize=LABEL_PT - 1, length=2)
        ax.set_xticks([])
    else:
        channels = img.shape[-1]
        if channels in (3, 4):
            ax.imshow(img[..., :3], interpolation="nearest")
        else:
            ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(cell_label(vis, i), fontsize=LABEL_PT, pad=2)


def visualization_grid(vis: Visualization, *, fig: Figure | None = None, cols: int | None = None,
                       dpi: float = DEFAULT_DPI) -> Figure:
    """One labelled cell per visualized image."""
    n = len(vis.map_index)
    rows, cols = grid_shape(n, cols)
    width = cols * _CELL_IN + 0.4
    title = wrap_to_width(_title(vis), width - 0.2, LABEL_PT + 1)  # one or two cells: the title wraps
    extra = 0.18 * title.count("\n")
    fig = new_figure(fig, width, rows * (_CELL_IN + 0.2) + 0.75 + extra, dpi)
    _fill_grid(fig, vis, rows, cols, top=1.0 - (0.7 + extra) / fig.get_figheight(), bottom=0.02)
    fig.suptitle(title, fontsize=LABEL_PT + 1)
    return fig


def _title(vis: Visualization) -> str:
    extra = "" if vis.channels_first is False else " (channels_first)"
    return (f"{vis.layer}: {vis.objective}, {vis.steps} steps, seed {vis.seed}{extra}, "
            f"input range {format_number(float(vis.input_range[0]))}..{format_number(float(vis.input_range[1]))}")


def _fill_grid(fig: Figure, vis: Visualization, rows: int, cols: int, *, top: float, bottom: float) -> None:
    unit = vis.unit_images()
    grid = fig.add_gridspec(rows, cols, left=0.03, right=0.97, top=top, bottom=bottom, hspace=0.55, wspace=0.15)
    for i in range(len(vis.map_index)):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        _draw_cell(ax, vis, unit, i)
    channels = vis.channel_range.shape[0]
    if unit.ndim == 4 and channels not in (1, 3, 4):
        fig.text(0.5, bottom, f"showing channel 0 of {channels}", ha="center", va="bottom", fontsize=LABEL_PT)


def activation_curve(vis: Visualization, *, ax: Axes | None = None, fig: Figure | None = None,
                     dpi: float = DEFAULT_DPI) -> Figure:
    """The objective per step (under the random transforms), one line per image; the warm-up shaded."""
    if ax is None:
        fig = new_figure(fig, 7.5, 3.0, dpi)
        ax = fig.add_axes((0.1, 0.16, 0.64, 0.78))  # the legend goes to the right
    owner = ax.get_figure()
    assert isinstance(owner, Figure)
    trace = np.asarray(vis.activation_trace)
    steps = np.arange(1, trace.shape[0] + 1)
    for i in range(trace.shape[1]):
        ax.plot(steps, trace[:, i], linewidth=0.9, label=f"map {int(vis.map_index[i])}" if i < 10 else None)
    if vis.warmup > 0:
        ax.axvspan(0.5, vis.warmup + 0.5, color="0.9", zorder=0, label="pre-activation warm-up")
    if vis.reference is not None and vis.reference.n_images and trace.shape[1] == 1:
        ax.axhline(float(vis.reference.best[0]), color="0.3", linestyle="--", linewidth=0.8, label="best natural")
    ax.set_xlabel("step", fontsize=LABEL_PT + 1)
    ax.set_ylabel(f"{vis.objective} objective", fontsize=LABEL_PT + 1)
    ax.tick_params(labelsize=LABEL_PT)
    ax.grid(True, linewidth=0.3)
    if trace.shape[1] <= 10 or vis.warmup > 0:
        # Beside the axes, not over the curves (they rise into the upper left where a legend would sit).
        ax.legend(fontsize=LABEL_PT, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return owner


def visualization_figure(vis: Visualization, *, cols: int | None = None, dpi: float = DEFAULT_DPI) -> Figure:
    """The grid above the activation curve, in one figure."""
    n = len(vis.map_index)
    rows, cols = grid_shape(n, cols)
    width = max(6.0, cols * _CELL_IN + 0.4)
    grid_h = rows * (_CELL_IN + 0.2)
    curve_h = 2.6
    fig = Figure(figsize=(min(width, 40.0), min(grid_h + curve_h + 0.85, 40.0)), dpi=dpi)
    height = fig.get_figheight()
    _fill_grid(fig, vis, rows, cols, top=1.0 - 0.7 / height, bottom=(curve_h + 0.35) / height)
    legend_in = 1.9  # room right of the curve for its legend
    ax = fig.add_axes((0.8 / width, 0.45 / height, (width - 0.8 - legend_in) / width, (curve_h - 0.6) / height))
    activation_curve(vis, ax=ax)
    fig.suptitle(wrap_to_width(_title(vis), width - 0.2, LABEL_PT + 1), fontsize=LABEL_PT + 1)
    return fig
