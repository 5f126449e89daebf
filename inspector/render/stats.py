"""Figures for weight statistics and filter health.

Builders return a :class:`matplotlib.figure.Figure` made directly (no pyplot: no global state, safe
in threads and in the Streamlit app). They draw what :mod:`inspector.stats` computed and compute
nothing themselves, so a figure never disagrees with the numbers in the table.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..stats import FilterHealth, TensorStats

__all__ = ["channel_norm_figure", "histogram_figure", "map_norms_figure"]

_OK = "#4c72b0"
_DEAD = "#d62728"
_NONFINITE = "#7f7f7f"


def histogram_figure(stats: TensorStats, *, title: str | None = None, log: bool = False,
                     figsize: tuple[float, float] = (6.0, 3.5)) -> Figure:
    """The tensor's histogram (finite values), with min/mean/max marked and NaN/Inf noted."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    if stats.hist_counts is None or stats.hist_edges is None:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
    else:
        edges = stats.hist_edges
        ax.stairs(stats.hist_counts, edges, fill=True, color=_OK, alpha=0.85)
        if stats.mean is not None:
            ax.axvline(stats.mean, color="black", lw=1, ls="--", label=f"mean {stats.mean:.3g}")
        if stats.mean is not None and stats.std is not None and stats.std > 0:
            ax.axvspan(stats.mean - stats.std, stats.mean + stats.std, color="black", alpha=0.08,
                       label=f"±std {stats.std:.3g}")
        if log:
            ax.set_yscale("log")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    extra = f"  NaN {stats.nan}, +Inf {stats.posinf}, -Inf {stats.neginf}" if stats.nonfinite else ""
    ax.set_title(title or f"{stats.name} {list(stats.shape)}: {stats.count:,} values{extra}", fontsize="medium")
    return fig


def map_norms_figure(health: FilterHealth, *, effective: bool = True, title: str | None = None,
                     figsize: tuple[float, float] | None = None) -> Figure:
    """One bar per output map: its kernel L2 norm; dead maps in red, NaN/Inf maps in grey.

    ``effective`` uses the BN-folded norms when a BatchNormalization was folded.
    """
    norms = health.effective_norms if effective else health.map_norms
    n = norms.size
    fig = Figure(figsize=figsize or (min(14.0, 4.0 + n * 0.06), 3.5), layout="constrained")
    ax = fig.add_subplot()
    colors = np.array([_OK] * n, dtype=object)
    colors[health.dead] = _DEAD
    colors[health.nonfinite] = _NONFINITE
    shown = np.where(np.isfinite(norms), norms, 0.0)
    ax.bar(np.arange(n), shown, width=0.9 if n < 200 else 1.0, color=list(colors), linewidth=0)
    if health.dead_reference > 0:
        ax.axhline(health.dead_cutoff, color=_DEAD, lw=1, ls=":",
                   label=f"dead below {health.dead_threshold:g} × median = {health.dead_cutoff:.3g}")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel("output map")
    what = "BN-folded kernel norm" if effective and health.bn_scale is not None else "kernel L2 norm"
    ax.set_ylabel(what)
    summary = f"{len(health.dead)} dead, {health.duplicate_pair_count} duplicate pairs"
    ax.set_title(title or f"{health.layer_path}: {n} maps, {summary}", fontsize="medium")
    return fig


def channel_norm_figure(health: FilterHealth, *, title: str | None = None, log: bool = False,
                        figsize: tuple[float, float] | None = None) -> Figure:
    """Heat map of ‖kernel[input channel i → map j]‖: who feeds whom.

    Rows are input channels, columns output maps; grouped layers show their block-diagonal structure
    (group borders are drawn). Pooled matrices (huge Dense layers) show exact block norms.
    """
    if health.channel_norms is None:
        fig = Figure(figsize=figsize or (5.0, 2.0), layout="constrained")
        ax = fig.add_subplot()
        ax.axis("off")
        why = "; ".join(health.notes) or "ask for it with layer_stats(..., channel_matrix=True)"
        ax.text(0.5, 0.5, "channel-norm matrix not computed:\n" + why, ha="center",
                va="center", transform=ax.transAxes)
        return fig
    mat = health.channel_norms
    rows, cols = mat.shape
    aspect = rows / max(cols, 1)
    width = 7.0
    fig = Figure(figsize=figsize or (width, min(12.0, max(2.5, width * aspect))), layout="constrained")
    ax = fig.add_subplot()
    data = np.log10(mat + 1e-12) if log else mat
    im = ax.imshow(data, aspect="auto", interpolation="nearest", cmap="magma")
    fig.colorbar(im, ax=ax, label="log10 norm" if log else "L2 norm")
    br, bc = health.channel_block
    ax.set_xlabel("output map" + (f" (blocks of {bc})" if bc > 1 else ""))
    ax.set_ylabel("input channel" + (f" (blocks of {br})" if br > 1 else ""))
    # Channels and maps are whole numbers: never tick a 1-channel matrix at -0.4 ... 0.4.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if health.groups > 1 and br == bc == 1 and health.groups <= 64:
        per_in, per_out = rows // health.groups, cols // health.groups
        for g in range(1, health.groups):
            ax.axhline(g * per_in - 0.5, color="white", lw=0.6, alpha=0.7)
            ax.axvline(g * per_out - 0.5, color="white", lw=0.6, alpha=0.7)
    ax.set_title(title or f"{health.layer_path}: input channel × output map norms", fontsize="medium")
    return fig
