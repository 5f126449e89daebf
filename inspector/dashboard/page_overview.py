"""Overview page: the layer table with search and kind filter, and parameters per layer."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from inspector.dashboard import loading, urlstate, views
from inspector.records import LayerKind, ModelIndex

__all__ = ["overview_page", "table_filter_ui"]

#: Layers in the parameters chart: the largest ones (all 177 of a ResNet50 make a 3000-px chart).
_CHART_LAYERS = 25


@st.cache_data(max_entries=16, show_spinner=False)
def _rows(key: loading.ModelKey) -> list[dict[str, object]]:
    return views.layer_rows(loading.load_index(*key))


def table_filter_ui() -> tuple[str, list[str]]:
    """Search text and the kinds to show."""
    left, right = st.columns([2, 3])
    search = left.text_input("Search layers (path or class)", key="ov_search", placeholder="e.g. conv")
    kinds = right.multiselect("Kinds", [str(k) for k in LayerKind], key="ov_kinds",
                              placeholder="all kinds")
    return search.strip().lower(), kinds


def _open_layer(shown_paths: list[str]) -> None:
    """A click on a layer row: its kernels on the Filters page, its weights on the Weights page, or
    (no weights) its place in the graph below the table."""
    picked = st.session_state["ov_table"].selection.rows
    if not picked:
        return
    path = shown_paths[picked[0]]
    index = loading.load_index(*st.session_state["_ov_model_key"])
    layer = index.layer(path)
    if any(layer.path == f.path for f in index.filter_layers()):
        urlstate.open_view("Filters", flt_layer=layer.path, flt_map=0, flt_page=1)
    elif layer.weights:
        urlstate.open_view("Weights", w_layer=layer.path)
    else:
        st.session_state["ov_focus"] = layer.path


def overview_page(index: ModelIndex, key: loading.ModelKey) -> None:
    st.subheader("Layers")
    search, kinds = table_filter_ui()
    rows = _rows(key)
    shown = [r for r in rows
             if (not search or search in str(r["path"]).lower() or search in str(r["class"]).lower())
             and (not kinds or str(r["kind"]).rstrip("?") in kinds)]
    st.caption(f"{len(shown)} of {len(rows)} layers shown · "
               f"{sum(int(r['params']) for r in shown):,} of {index.total_params:,} parameters · "  # type: ignore[call-overload]
               "click a row to open the layer (kernels on Filters, other weights on Weights)")
    columns = list(rows[0]) if rows else None
    st.session_state["_ov_model_key"] = key
    st.dataframe(pd.DataFrame(shown, columns=columns), hide_index=True, width="stretch", key="ov_table",
                 height=min(720, 38 + 35 * max(1, len(shown))),
                 on_select=partial(_open_layer, [str(r["path"]) for r in shown]), selection_mode="single-row",
                 column_config={"path": st.column_config.TextColumn("path", width="medium", pinned=True),
                                "inbound": st.column_config.TextColumn("inbound", width="medium"),
                                "outbound": st.column_config.TextColumn("outbound", width="medium"),
                                "weights": st.column_config.TextColumn("weights", width="large")})
    if any(str(r["kind"]).endswith("?") for r in rows):
        st.caption("'?' after a kind: inferred from weight names and shapes, not read from a config.")
    focus = st.session_state.get("ov_focus")
    if focus in index.paths:
        st.markdown(f"**Graph around `{focus}`**")
        st.graphviz_chart(views.neighbourhood_dot(index, str(focus)), width="content")
    with_params = sorted((r for r in shown if int(r["params"]) > 0),  # type: ignore[call-overload]
                         key=lambda r: -int(r["params"]))[:_CHART_LAYERS]  # type: ignore[call-overload]
    if with_params:
        with st.expander(f"Parameters per layer (the {len(with_params)} largest)", expanded=False):
            chart = pd.DataFrame({"layer": [r["path"] for r in with_params],
                                  "params": [r["params"] for r in with_params]})
            st.bar_chart(chart, x="layer", y="params", sort="-params", horizontal=True,
                         height=60 + 18 * len(with_params))
