"""Weights page: per-tensor histograms and statistics, and per-filter health (norms, dead, duplicates).

Numbers come from :mod:`inspector.stats` and figures from :mod:`inspector.render.stats`; this page
only lays them out. Statistics of a layer are computed once per file version and options.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from inspector.dashboard import loading, urlstate, views
from inspector.dashboard.widgets import SORTS, fold_bn_ui, show_picture
from inspector.records import ModelIndex
from inspector.stats import LayerStats, layer_stats

__all__ = ["weights_page"]


@st.cache_data(max_entries=64, show_spinner="Computing weight statistics...")
def cached_layer_stats(key: loading.ModelKey, layer: str, dead: float, dup: float, fold_bn: bool) -> LayerStats:
    index = loading.load_index(*key)
    return layer_stats(index.layer(layer), index=index, dead_threshold=dead, dup_threshold=dup,
                       fold_bn=fold_bn, channel_matrix=True)


@st.cache_data(max_entries=256, show_spinner=False)
def cached_figure(key: loading.ModelKey, layer: str, dead: float, dup: float, fold_bn: bool, log: bool,
                  which: str) -> views.Picture:
    """PNG bytes of one figure of the page: ``hist:<tensor>``, ``map_norms`` or ``channel_norms``.

    One cache entry per figure, so the log-scale toggle re-draws only the figures that use it."""
    from inspector.render import stats as rs

    ls = cached_layer_stats(key, layer, dead, dup, fold_bn)
    if which.startswith("hist:"):
        tensor = next(t for t in ls.tensors if t.name == which[5:])
        return views.figure_picture(rs.histogram_figure(tensor, log=log, figsize=(5.0, 2.8)))
    assert ls.health is not None
    return views.figure_picture(rs.map_norms_figure(ls.health))


def cached_figures(key: loading.ModelKey, layer: str, dead: float, dup: float, fold_bn: bool,
                   log: bool) -> dict[str, views.Picture]:
    """Every figure of the page for one layer (each from its own cache entry)."""
    ls = cached_layer_stats(key, layer, dead, dup, fold_bn)
    names = [f"hist:{t.name}" for t in ls.tensors]
    if ls.health is not None:
        names.append("map_norms")
    # The map-norm bars do not depend on the log toggle: always the log=False entry.
    return {n: cached_figure(key, layer, dead, dup, fold_bn, log and n != "map_norms", n) for n in names}


def _open_map(layer: str, maps: list[int]) -> None:
    """A click on a health-table row: that map's kernels on the Filters page."""
    picked = st.session_state["w_health_table"].selection.rows
    if picked:
        urlstate.open_view("Filters", flt_layer=layer, flt_map=maps[picked[0]], flt_page=1)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_heatmap(key: loading.ModelKey, layer: str, dead: float, dup: float, fold_bn: bool) -> pd.DataFrame:
    """The channel-norm matrix pooled for display (each cell keeps its true channel and map)."""
    health = cached_layer_stats(key, layer, dead, dup, fold_bn).health
    assert health is not None and health.channel_norms is not None
    return views.channel_heatmap(health.channel_norms, health.channel_block)


def _open_cell(key: loading.ModelKey, layer: str) -> None:
    """A click on a heat-map cell: Filters at that map, on the grid page holding that input channel."""
    cells = st.session_state["w_heatmap"].selection.get("cell") or []
    if not cells:
        return
    channel, j = int(cells[0]["channel"]), int(cells[0]["map"])
    cap = int(st.session_state.get("flt_cap", views.DEFAULT_CAP))
    sorted_by_norm = SORTS.get(str(st.session_state.get("flt_sort")), None) is not None
    page = 1 if sorted_by_norm else views.grid_page_of(loading.load_index(*key), layer, j, channel, cap=cap)
    urlstate.open_view("Filters", flt_layer=layer, flt_map=j, flt_page=page, flt_whole=False)


def _heatmap(key: loading.ModelKey, layer: str, dead: float, dup: float, fold: bool, log: bool,
             shape: tuple[int, ...]) -> None:
    table = cached_heatmap(key, layer, dead, dup, fold)
    pooled = len(table) < shape[0] * shape[1]
    st.markdown("**‖kernel[input channel → map]‖: who feeds whom** — click a cell to open that map on "
                "the Filters page" + (f" (pooled from {shape[0]} × {shape[1]}: a cell shows its block's "
                                      "largest norm and opens that channel and map)" if pooled else ""))
    st.altair_chart(views.heatmap_chart(table, log=log, height=min(480, max(160, 8 * table["row"].nunique()))),
                    key="w_heatmap", on_select=partial(_open_cell, key, layer), selection_mode="cell",
                    width="stretch")


def weights_options_ui(key: loading.ModelKey, layer: str) -> tuple[float, float, bool, bool]:
    cols = st.columns(4)
    st.session_state.setdefault("w_dead", 1e-3)
    st.session_state.setdefault("w_dup", 0.99)
    dead = cols[0].number_input("Dead below × median norm", min_value=0.0, max_value=1.0, step=1e-3,
                                format="%.4f", key="w_dead")
    dup = cols[1].number_input("Duplicate if |cosine| ≥", min_value=0.5, max_value=1.0, step=0.005,
                               format="%.3f", key="w_dup")
    with cols[2]:
        fold = fold_bn_ui(key, layer, None, "w_fold_bn", "Fold following BN")
    log = cols[3].toggle("Log scale", key="w_log")
    return float(dead), float(dup), bool(fold), bool(log)


def weights_page(index: ModelIndex, key: loading.ModelKey) -> None:
    st.subheader("Weights: statistics and filter health")
    layers = [layer.path for layer in index.layers if layer.weights]
    if not layers:
        st.info("This model stores no weights.")
        return
    if st.session_state.get("w_layer") not in layers:
        st.session_state["w_layer"] = (index.filter_layers() or [index.layer(layers[0])])[0].path
    layer = st.selectbox("Layer", layers, key="w_layer")
    dead, dup, fold, log = weights_options_ui(key, layer)
    ls = cached_layer_stats(key, layer, dead, dup, fold)
    figs = cached_figures(key, layer, dead, dup, fold, log)
    rows = [{"tensor": t.name, "shape": str(list(t.shape)), "dtype": t.dtype, "min": t.min, "max": t.max,
             "mean": t.mean, "std": t.std, "L2": t.l2, "zeros": t.zeros, "near zeros": t.near_zeros,
             "NaN/Inf": t.nonfinite} for t in ls.tensors]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="w_tensor_table")
    cols = st.columns(min(3, max(1, len(ls.tensors))))
    for i, t in enumerate(ls.tensors):
        pic = figs[f"hist:{t.name}"]
        cols[i % len(cols)].image(pic.png, caption=f"{layer} · {t.name}", width="stretch")
    health = ls.health
    if health is None:
        st.caption("Filter health applies to layers with kernels (conv, depthwise, separable, transposed, dense).")
        return
    st.markdown(f"**Filter health** — {health.n_maps} maps, {len(health.dead)} dead, "
                f"{health.duplicate_pair_count} near-duplicate pairs"
                + (f", BN `{health.bn_layer}` folded into the norms" if health.bn_scale is not None else ""))
    show_picture(figs["map_norms"], "Kernel L2 norm per output map (dead maps in red)")
    partners = health.duplicate_partners()
    dead_set = {int(d) for d in health.dead}
    table = pd.DataFrame({
        "map": np.arange(health.n_maps),
        "norm": health.effective_norms,
        "bias": health.bias if health.bias is not None else np.full(health.n_maps, np.nan),
        "dead": [j in dead_set for j in range(health.n_maps)],
        "near duplicates (map: cosine)": [", ".join(f"{b}: {s:+.3f}" for b, s in partners.get(j, [])[:6])
                                          for j in range(health.n_maps)],
    })
    only_flagged = st.toggle("Only dead or duplicated maps", key="w_only_flagged")
    if only_flagged:
        table = table[table["dead"] | (table["near duplicates (map: cosine)"] != "")]
    if len(table):
        st.caption("Click a row to see that map's kernels on the Filters page.")
        st.dataframe(table, hide_index=True, key="w_health_table", height=min(400, 38 + 35 * len(table)),
                     on_select=partial(_open_map, layer, [int(m) for m in table["map"]]),
                     selection_mode="single-row", width="stretch")
    else:
        st.info("No dead or near-duplicate maps in this layer at these thresholds.")
    if health.channel_norms is not None:
        _heatmap(key, layer, dead, dup, fold, log, health.channel_norms.shape)
    for note in health.notes:
        st.caption(note)
