"""Compare page: the loaded model (A) against a second model (B), layer by layer and map by map.

B is a bundled sample or a path (any format: a ``.keras`` against its ``.h5`` reports "same"
everywhere). The comparison (:func:`inspector.compare.compare_models`) runs on "Compare" and is kept
in the session per (A, B, settings); the page then shows the layer table, the drift overview and,
for a chosen changed layer, its most-changed maps (A, B, B − A).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from inspector.dashboard import loading, views
from inspector.dashboard.widgets import show_picture
from inspector.errors import InspectorError
from inspector.records import ModelIndex

__all__ = ["compare_page", "comparison_rows"]

_STATE = "_cmp_result"  # not a cmp_* key: main.persist_widget_state leaves it alone


def comparison_rows(result: Any) -> list[dict[str, Any]]:
    """One table row per layer of a :class:`~inspector.compare.Comparison`."""
    rows = []
    for e in result.layers:
        cos = sorted(m.cosine for m in e.maps)
        rows.append({"layer": e.path if e.path_b is None else f"{e.path} ~ {e.path_b}", "status": str(e.status),
                     "relative change": e.relative_change, "min cosine": cos[0] if cos else None,
                     "median cosine": cos[len(cos) // 2] if cos else None,
                     "map correspondence": _correspondence(e),
                     "permuted maps": e.permuted if e.matching is not None else None,
                     "sign-flipped maps": e.flipped if e.matching is not None else None, "CKA": e.cka})
    return rows


def _correspondence(e: Any) -> str | None:
    """'8 of 10 maps' / 'none (median |cos| 0.046 < 0.50)'; None when no matching ran."""
    if e.match_threshold is None:
        return None
    if e.matching is None:
        return f"none found (median |cos| {e.match_median_cosine:.3f} < {e.match_threshold:.2f})"
    return f"{e.matched} of {len(e.matching)} maps (|cos| ≥ {e.match_threshold:.2f})"


def _second_model_ui() -> str | None:
    samples = loading.sample_choices()
    how = st.radio("Model B", ["Path", "Sample model"], key="cmp_source", horizontal=True)
    if how == "Sample model" and samples:
        name = st.selectbox("Sample", list(samples), key="cmp_sample")
        return str(samples[name]) if name else None
    path = st.text_input("Path of model B (.keras, .h5, .weights.h5, SavedModel folder)", key="cmp_path").strip()
    return path or None


def compare_page(index: ModelIndex, key: loading.ModelKey) -> None:
    from inspector.compare import Match, compare_models, iter_changed

    st.subheader("Compare: which layers and filters changed between this model (A) and another (B)")
    path_b = _second_model_ui()
    cols = st.columns(3)
    fold_bn = cols[0].checkbox("Fold BatchNormalization into both", key="cmp_fold_bn")
    match = cols[1].selectbox("Map matching", [str(m) for m in Match], key="cmp_match",
                              help="permutation-aware matching of maps (auto: layers where some map's cosine < 0.9); "
                                   "a pair counts only when its |cosine| is far above chance (≥ 0.5)")
    top_maps = int(cols[2].number_input("Maps drawn", 1, 16, 4, key="cmp_top_maps"))
    if path_b is None:
        st.info("Choose model B: a path or a bundled sample.")
        return
    try:
        index_b, key_b = loading.open_current(path_b)
    except InspectorError as exc:
        st.error(str(exc))
        return
    wanted = (key, key_b, fold_bn, match)
    if st.button("Compare", key="cmp_run", type="primary"):
        bar = st.progress(0.0, text="starting…")

        def progress(done: int, total: int, what: str) -> None:
            bar.progress(min(1.0, done / max(total, 1)), text=f"{done}/{total} · {what}")

        try:
            result = compare_models(index, index_b, fold_bn=fold_bn, match=match, progress=progress)
        except InspectorError as exc:
            bar.empty()
            st.error(str(exc))
            return
        bar.empty()
        st.session_state[_STATE] = (wanted, result)
    stored = st.session_state.get(_STATE)
    if stored is None or stored[0] != wanted:
        return
    result = stored[1]
    counts = ", ".join(f"{v} {k}" for k, v in result.counts().items() if v)
    st.success(f"Layers with weights: {counts} (same = every weight within ‖B − A‖ ≤ {result.tolerance:g} · ‖A‖).")
    for note in result.notes:
        st.info(note)
    table = pd.DataFrame(comparison_rows(result))
    # Columns no layer has a value for (no map matching ran, no activations compared) would read "None" on
    # every row: they are left out.
    table = table.loc[:, [c for c in table.columns if table[c].notna().any()]]
    st.dataframe(table, hide_index=True, key="cmp_table", width="stretch")
    from inspector.render.compare import changed_maps_figure, drift_figure

    changed = [e.path for e in iter_changed(result)]
    if not changed:  # the drift figure would be one empty row per layer
        st.info("No layer's kernels changed.")
        return
    show_picture(views.figure_picture(drift_figure(result)), "Per-layer drift")
    layer = st.selectbox("Changed layer (most changed first)", changed, key="cmp_layer")
    entry = result.layer(layer)
    try:
        fig = changed_maps_figure(index, index_b, entry, n_maps=top_maps)
    except InspectorError as exc:
        st.error(str(exc))
        return
    show_picture(views.figure_picture(fig), f"{layer}: the most-changed maps, rows A, B, B − A")
    for note in entry.notes:
        st.caption(note)
