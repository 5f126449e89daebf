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
    MontageKind,
    is_rgb_filterset,
    kernel_page,
    kernels_per_page,
    layer_color_limit,
    layer_montage,
    montage_kind,
    montage_page_count,
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
    "Picture",
    "channel_heatmap",
    "consumer_rows",
    "figure_bytes",
    "figure_picture",
    "filter_figure_options",
    "filter_npz",
    "filter_view",
    "fold_bn_reason",
    "grid_extent",
    "grid_page_size",
    "layer_range",
    "layer_rows",
    "manifest_summary",
    "montage_info",
    "montage_picture",
    "neighbourhood_dot",
]

#: How kernel colours are scaled: each kernel on its own range, all kernels of the map on one
#: shared range (compare channels), or every kernel of the layer on one range (compare maps).
NORMALISATIONS = ("map", "kernel", "layer")
CMAPS = ("RdBu_r", "gray", "viridis", "coolwarm", "magma")
#: Kernels drawn per grid: the mosaic's cost grows with its labels (about 1 ms each), and a
#: 512-channel layer (VGG block5) shown whole would be unreadable anyway. The page pages the rest.
DEFAULT_CAP = 64
#: Figures are shown at SCREEN_DPI CSS pixels per figure inch, but rendered at DPI = 2 x that, so
#: they stay crisp on hi-DPI (2x) screens and when zoomed: ``st.image(width=picture.width)`` scales
#: them down. (The files downloaded and exported use render.common.DEFAULT_DPI = 200.)
SCREEN_DPI = 80
DPI = 2 * SCREEN_DPI


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = SCREEN_DPI) -> bytes:
    """The figure encoded as PNG / SVG / PDF bytes (PNG at ``dpi``: the default is shown at its natural
    size; :func:`figure_picture` makes the hi-DPI PNG the Filters and Weights pages show)."""
    buf = io.BytesIO()
    # zlib level 1: about 4x faster PNG encoding than the default for ~20% more bytes.
    extra: dict[str, Any] = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
    fig.savefig(buf, format=fmt, dpi=dpi, **extra)
    return buf.getvalue()


@dataclass(frozen=True)
class Picture:
    """A hi-DPI PNG and the width (CSS pixels) to show it at: ``st.image(p.png, width=p.width)``."""

    png: bytes
    width: int


#: Streamlit shrinks (re-encodes) images wider than this many pixels on every run: stay below it.
MAX_IMAGE_PX = 1460


def figure_picture(fig: Figure) -> Picture:
    """PNG at :data:`DPI` (less for figures so wide that it would pass :data:`MAX_IMAGE_PX`), shown
    :data:`SCREEN_DPI` pixels per inch wide."""
    inches = max(fig.get_figwidth(), 0.1)
    dpi = max(SCREEN_DPI, min(DPI, int(MAX_IMAGE_PX / inches)))
    return Picture(figure_bytes(fig, dpi=dpi), max(1, round(inches * SCREEN_DPI)))


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
    width: int = 0  # CSS pixels to show the hi-DPI PNG at (0: its natural size)

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
    pic = figure_picture(fig)
    return FilterView(shown_fs, n_maps, shown, pic.png, use_rgb, notes + tuple(fs.notes), pic.width)


def layer_range(index: ModelIndex, layer_path: str, *, fold_bn: bool | str = False,
                stage: str | None = None) -> float:
    """max |value| of what the layer's grids draw (effective / BN-folded kernels included), for the
    'shared per layer' normalisation: :func:`inspector.render.filters.layer_color_limit`."""
    return layer_color_limit(index.layer(layer_path), index=index, fold_bn=fold_bn, stage=stage)


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


# -- whole-layer montage ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MontageInfo:
    """How the whole-layer montage of a layer is drawn and paged (no figure made)."""

    kind: str  # a render.filters.MontageKind value
    pages: int
    n_maps: int

    @property
    def description(self) -> str:
        return {MontageKind.RGB: "one colour image per map (3 input channels)",
                MontageKind.DEPTHWISE: "one kernel per map",
                MontageKind.MATRIX: "1×1 kernels as one input channel × output map matrix",
                MontageKind.STRIPS: "one (input channel × taps) tile per map",
                MontageKind.GRID: "maps × input channels (first 64 channels)"}.get(MontageKind(self.kind), self.kind)


def montage_info(index: ModelIndex, layer_path: str, *, stage: str | None = None) -> MontageInfo:
    layer = index.layer(layer_path)
    return MontageInfo(str(montage_kind(layer, index=index, stage=stage)),
                       montage_page_count(layer, index=index, stage=stage), output_map_count(layer, stage))


#: The Filters page's normalisation -> layer_montage's scale (per kernel = each map on its own scale).
_MONTAGE_SCALES = {"map": "shared", "kernel": "per-map", "layer": "layer"}


def montage_figure(index: ModelIndex, layer_path: str, *, page: int = 0, stage: str | None = None,
                   fold_bn: bool | str = False, norm: str = "map", cmap: str = "RdBu_r",
                   layer_limit: float | None = None, dpi: int = DPI) -> Figure:
    """Page ``page`` of :func:`inspector.render.filters.layer_montage` with the page's options
    (``layer_limit``: the cached :func:`layer_range`, so each montage page does not read the layer again)."""
    scale = _MONTAGE_SCALES.get(norm, "shared")
    return layer_montage(index, index.layer(layer_path), page=page, stage=stage, fold_bn=fold_bn, scale=scale,
                         vmax=layer_limit if scale == "layer" else None, cmap=cmap, dpi=dpi)


def montage_picture(index: ModelIndex, layer_path: str, **options: Any) -> Picture:
    return figure_picture(montage_figure(index, layer_path, **options))


def montage_file(index: ModelIndex, layer_path: str, fmt: str, **options: Any) -> bytes:
    """The montage page as a PNG (at the export default, 200 dpi) or a vector PDF, for download."""
    from inspector.render.common import DEFAULT_DPI

    fig = montage_figure(index, layer_path, dpi=DEFAULT_DPI, **options)
    return figure_bytes(fig, fmt, dpi=DEFAULT_DPI)


# -- channel x map heat map ------------------------------------------------------------------------------

def channel_heatmap(matrix: np.ndarray, block: tuple[int, int] = (1, 1), max_side: int = 64) -> Any:
    """The channel-norm matrix ``(input channels, maps)`` as a long table for a clickable heat map,
    pooled to at most ``max_side`` cells per axis (the max of each block of cells). Each cell keeps the
    true ``channel`` and ``map`` of its strongest entry, so a click on a pooled cell opens a real
    (channel, map); ``block`` is the pooling ``inspector.stats`` already applied (``channel_block``)."""
    import pandas as pd

    mat = np.asarray(matrix, dtype=np.float64)
    rows, cols = mat.shape
    fr, fc = max(1, -(-rows // max_side)), max(1, -(-cols // max_side))
    nr, nc = -(-rows // fr), -(-cols // fc)
    padded = np.full((nr * fr, nc * fc), -np.inf)
    padded[:rows, :cols] = np.nan_to_num(mat, nan=-np.inf)
    cells = padded.reshape(nr, fr, nc, fc).transpose(0, 2, 1, 3).reshape(nr, nc, fr * fc)
    arg = cells.argmax(axis=2)
    best = np.take_along_axis(cells, arg[..., None], axis=2)[..., 0]
    r_idx, c_idx = np.meshgrid(np.arange(nr), np.arange(nc), indexing="ij")
    true_r = (r_idx * fr + arg // fc) * block[0]
    true_c = (c_idx * fc + arg % fc) * block[1]
    r0, c0 = r_idx * fr * block[0], c_idx * fc * block[1]
    r1 = np.minimum((r_idx + 1) * fr, rows) * block[0] - 1
    c1 = np.minimum((c_idx + 1) * fc, cols) * block[1] - 1
    def span(a: np.ndarray, b: np.ndarray) -> list[str]:
        return [str(x) if x == y else f"{x}-{y}" for x, y in zip(a.ravel(), b.ravel(), strict=True)]

    return pd.DataFrame({
        "row": r0.ravel(), "col": c0.ravel(), "norm": np.where(np.isfinite(best), best, np.nan).ravel(),
        "channel": true_r.ravel(), "map": true_c.ravel(),
        "channels": span(r0, r1), "maps": span(c0, c1),
    })


def heatmap_chart(table: Any, *, log: bool = False, height: int = 420) -> Any:
    """An Altair heat map of :func:`channel_heatmap`'s table with a point selection named ``cell`` on
    the true ``channel`` and ``map`` (``st.altair_chart(..., on_select="rerun")`` returns them)."""
    import altair as alt

    pick = alt.selection_point(name="cell", fields=["channel", "map"], on="click", clear=False)
    scale = alt.Scale(type="symlog", scheme="magma") if log else alt.Scale(scheme="magma")
    n_cols = int(table["col"].nunique())
    n_rows = int(table["row"].nunique())
    return (
        alt.Chart(table)
        .mark_rect()
        .encode(
            x=alt.X("col:O", title="output map", axis=alt.Axis(labelOverlap=True, labelAngle=0,
                                                                values=_tick_values(table["col"], n_cols))),
            y=alt.Y("row:O", title="input channel", axis=alt.Axis(labelOverlap=True,
                                                                  values=_tick_values(table["row"], n_rows))),
            color=alt.Color("norm:Q", title="L2 norm", scale=scale),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.85)),
            tooltip=[alt.Tooltip("channels:N", title="input channel(s)"), alt.Tooltip("maps:N", title="map(s)"),
                     alt.Tooltip("norm:Q", title="max norm", format=".4g"),
                     alt.Tooltip("channel:Q", title="opens channel"), alt.Tooltip("map:Q", title="opens map")],
        )
        .add_params(pick)
        .properties(height=height)
    )


def _tick_values(values: Any, n: int, most: int = 12) -> list[int]:
    uniq = sorted({int(v) for v in values})
    step = max(1, -(-n // most))
    return uniq[::step]


# -- export ----------------------------------------------------------------------------------------------

def manifest_summary(manifest: Any) -> list[dict[str, Any]]:
    """One row per exported layer from an :class:`inspector.export.Manifest`: maps, files, the input
    channels its files hold (union, and the fewest any one map's figures hold) and truncated maps."""
    from inspector.formatting import index_text
    from inspector.selectors import parse_maps

    def channels(text: str) -> set[int]:
        return set(parse_maps(text).resolve(1 << 30)) if text else set()

    layers: dict[str, dict[str, Any]] = {}
    for row in manifest.rows:
        info = layers.setdefault(row.layer, {"files": 0, "bytes": 0, "all": set(), "per_map": {},
                                             "maps": set(), "truncated": set()})
        info["files"] += 1
        info["bytes"] += row.bytes
        got = channels(row.input_channels)
        info["all"] |= got
        if row.format in ("png", "svg"):
            info["maps"].add(int(row.maps))
            info["per_map"].setdefault(int(row.maps), set()).update(got)
            if row.truncated:
                info["truncated"].add(int(row.maps))
        else:
            info["maps"].update(parse_maps(row.maps).resolve(1 << 30))
    out = []
    for layer, info in layers.items():
        per_map = [len(v) for v in info["per_map"].values()]
        out.append({"layer": layer, "maps": len(info["maps"]), "files": info["files"],
                    "MB": round(info["bytes"] / 1e6, 3),
                    "input channels in files": f"{index_text(sorted(info['all']))} ({len(info['all'])})",
                    "fewest channels of one map's figures": min(per_map) if per_map else None,
                    "truncated maps": len(info["truncated"])})
    return out


def error_text(exc: BaseException) -> str:
    """The one line the dashboard shows for an error: our messages as they are, anything else with its
    type in front (never a traceback)."""
    from inspector.errors import InspectorError

    if isinstance(exc, InspectorError):
        return str(exc)
    text = " ".join(str(exc).split())
    return f"internal error: {type(exc).__name__}: {text} (please report it)"


def grid_page_of(index: ModelIndex, layer_path: str, j: int, channel: int, *, stage: str | None = None,
                 cap: int = DEFAULT_CAP) -> int:
    """The grid page (from 1, input-channel order) of map ``j`` that holds input ``channel`` (1 when the
    map does not read it)."""
    fs, _ = _display_set(filters_for_map(index.layer(layer_path), j, index=index, stage=stage))
    where = np.flatnonzero(np.asarray(fs.input_channels) == channel)
    return 1 + int(where[0]) // grid_page_size(fs, cap) if len(where) else 1
