"""View builders for the dashboard: API call -> Figure -> bytes. No Streamlit, no TensorFlow here.

Each builder takes an open :class:`~inspector.records.ModelIndex` (or arrays) plus plain options and
returns plain data (arrays, numbers, PNG bytes), so the pages can cache them with ``st.cache_data``
and ``bench/dashboard_render.py`` can time exactly the path the app runs when the output map changes.

The figures come from :mod:`inspector.render` (the same functions the CLI and the exports call);
this module holds no drawing code: it only decides *what* to show (which map, which channels fit
the grid cap, which scale) and turns figures into bytes.
"""

from __future__ import annotations

import io
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
from inspector.formatting import shape_text
from inspector.graph import bn_fold_plan
from inspector.records import LayerKind, ModelIndex
from inspector.render.activations import activation_grid_figure
from inspector.render.activations import decomposition_figure as _decomposition_figure
from inspector.render.filters import (
    is_rgb_filterset,
    kernel_page,
    kernels_per_page,
    plot_consumer_slice,
    plot_filterset,
    plot_rgb_filters,
)

__all__ = [
    "CMAPS",
    "DEFAULT_CAP",
    "NORMALISATIONS",
    "ConsumerRow",
    "FilterView",
    "consumer_rows",
    "figure_bytes",
    "filter_figure_options",
    "filter_npz",
    "filter_view",
    "fold_bn_reason",
    "grid_extent",
    "grid_page_size",
    "layer_rows",
    "neighbourhood_dot",
]

#: How kernel colours are scaled: each kernel on its own range, all kernels of the map on one
#: shared range (compare channels), or every kernel of the layer on one range (compare maps).
NORMALISATIONS = ("map", "kernel", "layer")
CMAPS = ("RdBu_r", "gray", "viridis", "coolwarm", "magma")
#: Kernels drawn per grid: the mosaic's cost grows with its labels (about 1 ms each), and a
#: 512-channel layer (VGG block5) shown whole would be unreadable anyway. The page pages the rest.
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

def layer_rows(index: ModelIndex) -> list[dict[str, Any]]:
    """One row per layer for the overview table (the columns of ``inspector summary``)."""
    return [
        {
            "path": layer.path,
            "class": layer.class_name or "?",
            "kind": f"{layer.kind}{'?' if layer.kind_inferred else ''}",
            "output shape": shape_text(layer.output_shape),
            "params": layer.params,
            "inbound": ", ".join(layer.inbound),
            "outbound": ", ".join(c.path for c in index.consumers(layer.path)),
            "weights": " ".join(f"{w.name}{list(w.shape)}" for w in layer.weights),
        }
        for layer in index.layers
    ]


def _dot_id(path: str) -> str:
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def neighbourhood_dot(index: ModelIndex, path: str, depth: int = 2, limit: int = 40, rankdir: str = "LR") -> str:
    """Graphviz DOT text of the layers within ``depth`` hops of ``path`` (inputs and consumers), plus
    every input of a merge layer in view and the layer feeding it, with every edge between them: a skip
    connection shows as a second path into an ``Add``. Layers
    with kernels are boxes, the chosen layer is filled; at most ``limit`` layers are drawn."""
    centre = index.layer(path).path
    seen = {centre: 0}
    frontier = [centre]
    for hop in range(1, depth + 1):
        nxt = []
        for p in frontier:
            for q in [*index.layer(p).inbound, *(c.path for c in index.consumers(p))]:
                if q not in seen and len(seen) < limit:
                    seen[q] = hop
                    nxt.append(q)
        frontier = nxt
    # Skip connections: every input of a merge (Add, Concatenate, ...) in view, and what feeds it.
    for p in [q for q in seen if len(index.layer(q).inbound) > 1]:
        for q in index.layer(p).inbound:
            for r in (q, *index.layer(q).inbound[:1]):
                if r not in seen and len(seen) < limit:
                    seen[r] = depth + 1
    lines = ["digraph G {", f"  rankdir={rankdir}; nodesep=0.2; ranksep=0.3;",
             '  node [fontname="Helvetica", fontsize=10, height=0.3, style="rounded,filled", '
             'fillcolor="#f4f4f4", color="#999999"];', '  edge [color="#777777", arrowsize=0.6];']
    for p in index.paths:  # model order keeps the drawing stable
        if p not in seen:
            continue
        layer = index.layer(p)
        label = f"{p}\\n{layer.class_name or layer.kind}"
        attrs = [f'label="{label}"', "shape=box" if layer.kernel is not None else "shape=ellipse"]
        if p == centre:
            attrs.append('fillcolor="#ffd27f", color="#c07000", penwidth=2')
        lines.append(f"  {_dot_id(p)} [{', '.join(attrs)}];")
    for p in seen:
        for q in index.layer(p).inbound:
            if q in seen:
                lines.append(f"  {_dot_id(q)} -> {_dot_id(p)};")
    lines.append("}")
    return "\n".join(lines)


def user_reason(message: str) -> str:
    """An API error message in user wording: no "Received: ..." tail, no layer-path preamble."""
    text = message.split(" Received:", 1)[0].rstrip(" .;")
    head, sep, tail = text.partition(": ")
    if sep and head.startswith("cannot fold"):
        text = tail
    return text[:1].upper() + text[1:] + "."


def fold_bn_reason(index: ModelIndex, layer_path: str, stage: str | None = None) -> str | None:
    """Why BatchNormalization cannot be folded into this layer (None: it can).

    The planner filters, stats and decompose fold with (``inspector.graph.bn_fold_plan``) decides."""
    plan = bn_fold_plan(index, index.layer(layer_path), stage=stage)
    return None if plan.ok else user_reason(str(plan.reason))


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


def filter_figure_options(norm: str, layer_range: float | None) -> dict[str, Any]:
    """The dashboard's normalisation choice as :func:`plot_filterset` options ('layer' = one shared
    range for every map of the layer, so maps compare)."""
    if norm == "kernel":
        return {"scale": "per-kernel"}
    return {"scale": "shared", "vmax": layer_range if norm == "layer" and layer_range else None}


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
    use_rgb = rgb and is_rgb_filterset(shown_fs)
    cap = max(1, int(cap))
    # The grid shows the page of kernels that holds ``offset`` (the page widget offers multiples of
    # grid_page_size), counted exactly as plot_filterset counts it.
    page = max(0, int(offset)) // grid_page_size(shown_fs, cap)
    if use_rgb:
        shown = np.arange(shown_fs.n_inputs)
        fig = plot_rgb_filters([shown_fs], dpi=DPI)
    else:
        start, stop = kernel_page(shown_fs, cap, page)
        shown = np.arange(start, stop)
        # Norms are listed in the page's table: leaving them off the tiles halves the label cost.
        fig = plot_filterset(shown_fs, max_kernels=cap, page=page, cmap=cmap, show_norms=False, dpi=DPI,
                             **filter_figure_options(norm, layer_range))
    return FilterView(shown_fs, n_maps, shown, figure_bytes(fig), use_rgb, notes + tuple(fs.notes))


def grid_extent(index: ModelIndex, layer_path: str, j: int, *, stage: str | None = None,
                cap: int = DEFAULT_CAP) -> tuple[int, int]:
    """(kernels in map ``j``'s grid before the cap, kernels per grid page), from the slice alone (no
    figure): what the grid-page widget needs before the page's grid is drawn."""
    fs, _ = _display_set(filters_for_map(index.layer(layer_path), j, index=index, stage=stage))
    return fs.n_inputs, grid_page_size(fs, cap)


def grid_page_size(fs: FilterSet, cap: int) -> int:
    """Kernels per grid page for a cap of ``cap``: fewer for 3-D kernels (see
    :func:`inspector.render.filters.kernels_per_page`), so the page widget and the grid agree."""
    return kernels_per_page(fs, max(1, int(cap)))


def can_show_rgb(index: ModelIndex, layer_path: str) -> bool:
    """Whether the layer's maps read exactly 3 input channels with 2-D kernels (colour first layers)."""
    layer = index.layer(layer_path)
    kernel = layer.kernel
    return (layer.kind is LayerKind.CONV and kernel is not None and len(kernel.shape) == 4
            and kernel.shape[-2] == 3)


def filter_npz(fs: FilterSet, source: str = "") -> bytes:
    """The FilterSet as ``.npz`` bytes, written by :func:`inspector.serialize.filtersets_to_npz` (same
    layout as ``inspector export``), through a temporary folder that is removed at once."""
    import tempfile
    from pathlib import Path

    from inspector.serialize import filtersets_to_npz

    with tempfile.TemporaryDirectory(prefix="inspector-npz-") as tmp:
        return filtersets_to_npz(fs, Path(tmp) / "filters.npz", source=source).read_bytes()


def filter_svg(fs: FilterSet, *, start: int = 0, cap: int = DEFAULT_CAP, norm: str = "map",
               cmap: str = "RdBu_r", rgb: bool = False, layer_range: float | None = None) -> bytes:
    """The same page of kernels as :func:`filter_view`, annotated with norms, as SVG: the figure
    ``inspector filters -o x.svg`` and the batch export draw."""
    if rgb:
        return figure_bytes(plot_rgb_filters([fs]), "svg")
    page = max(0, start) // grid_page_size(fs, cap)
    fig = plot_filterset(fs, max_kernels=cap, page=page, cmap=cmap, **filter_figure_options(norm, layer_range))
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
    top_map: int = 0  # the consumer's output map that reads this channel most strongly


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
                                "; ".join(sl.notes), int(sl.output_maps[order[0]]) if len(order) else 0))
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
    return plot_consumer_slice(sl, source=f"{layer_path} map {j}", max_kernels=cap, cmap=cmap, dpi=DPI)


def activation_figure(act: np.ndarray, layer_path: str, *, cap: int = DEFAULT_CAP, offset: int = 0,
                      cmap: str = "viridis", shared_scale: bool = False) -> Figure:
    """Maps ``offset .. offset+cap`` of one captured output ``(1, *spatial, C)`` (channels_last),
    drawn by :func:`inspector.render.activations.activation_grid_figure`."""
    a = np.asarray(act[0])
    if a.ndim == 1:
        return activation_grid_figure(a, title=f"{layer_path} ({a.size} units)")
    maps = range(max(0, min(offset, a.shape[-1] - 1)), min(a.shape[-1], offset + cap))
    return activation_grid_figure(a, title=layer_path, maps=list(maps), max_maps=cap, cmap=cmap,
                                  shared_scale=shared_scale)


def decomposition_figure(dec: Any, top_k: int = 6) -> Figure:
    """Input maps, kernels and contributions of the ``top_k`` strongest channels, then Σ + bias → output."""
    return _decomposition_figure(dec, top=top_k)
