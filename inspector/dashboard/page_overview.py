"""Overview page: the layer table with search and kind filter, and parameters per layer."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from inspector.dashboard import loading, views
from inspector.records import LayerKind, ModelIndex

__all__ = ["overview_page", "table_filter_ui"]


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


def overview_page(index: ModelIndex, key: loading.ModelKey) -> None:
    st.subheader("Layers")
    search, kinds = table_filter_ui()
    rows = _rows(key)
    shown = [r for r in rows
             if (not search or search in str(r["path"]).lower() or search in str(r["class"]).lower())
             and (not kinds or str(r["kind"]).rstrip("?") in kinds)]
    st.caption(f"{len(shown)} of {len(rows)} layers shown · "
               f"{sum(int(r['params']) for r in shown):,} of {index.total_params:,} parameters")  # type: ignore[call-overload]
    columns = list(rows[0]) if rows else None
    st.dataframe(pd.DataFrame(shown, columns=columns), hide_index=True, width="stretch", key="ov_table")
    if any(str(r["kind"]).endswith("?") for r in rows):
        st.caption("'?' after a kind: inferred from weight names and shapes, not read from a config.")
    with_params = [r for r in shown if int(r["params"]) > 0]  # type: ignore[call-overload]
    if with_params:
        st.subheader("Parameters per layer")
        chart = pd.DataFrame({"layer": [r["path"] for r in with_params],
                              "params": [r["params"] for r in with_params]})
        st.bar_chart(chart, x="layer", y="params", sort=False, horizontal=True,
                     height=max(160, 28 * len(with_params)))
