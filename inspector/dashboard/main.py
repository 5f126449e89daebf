"""The filter-inspector dashboard (Streamlit script).

Run from a checkout with ``streamlit run app.py -- MODEL`` or ``inspector app MODEL``. The sidebar
chooses the model (bundled sample, a path, or an upload) and the page; each page lives in its own
``page_*`` module and is a thin client of the Python API.

Error policy: an :class:`~inspector.errors.InspectorError` (bad file, unsupported model, wrong image,
bad selection) is shown with ``st.error`` as its one-line message and the script stops for this
run only; the sidebar stays usable, so the user can pick something else. Unexpected exceptions are
shown the same way, as one line, never as a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import streamlit as st

from inspector import kerascompat
from inspector.dashboard import (
    DEBUG_ENV,
    loading,
    page_activations,
    page_compare,
    page_examples,
    page_export,
    page_filters,
    page_overview,
    page_visualize,
    page_weights,
    urlstate,
    views,
)
from inspector.records import ModelIndex

__all__ = ["PAGES", "main"]

#: Page name -> page function ``(index, model_key) -> None``, in sidebar order.
PAGES: dict[str, Callable[[ModelIndex, loading.ModelKey], None]] = {
    "Overview": page_overview.overview_page,
    "Filters": page_filters.filters_page,
    "Activations": page_activations.activations_page,
    "Visualize": page_visualize.visualize_page,
    "Examples": page_examples.examples_page,
    "Weights": page_weights.weights_page,
    "Export": page_export.export_page,
    "Compare": page_compare.compare_page,
}


def show_error(exc: BaseException) -> None:
    """One line in an error box: our messages already are; anything else gets its type in front."""
    st.error(views.error_text(exc))


#: Widget keys whose values must survive a page switch. Streamlit drops the state of widgets that
#: were not drawn in a run, so a page that is not shown would forget its layer and map; writing the
#: value back each run makes it plain session state, which is kept.
_PERSIST_PREFIXES = ("ov_", "flt_", "act_", "w_", "exp_", "vis_", "ex_")
#: Keys that are not plain values (buttons, downloads, uploads, tables) and must not be written.
_NOT_VALUES = ("_prev", "_next", "_dl_", "_run", "_download", "_upload", "_table", "_heatmap", "_cancel")


def persist_widget_state() -> None:
    for key in list(st.session_state.keys()):
        name = str(key)
        if name.startswith(_PERSIST_PREFIXES) and not any(part in name for part in _NOT_VALUES):
            st.session_state[name] = st.session_state[name]


def page_ui() -> str:
    """The page selector (a keyed radio, so AppTest and the browser test can drive it)."""
    st.session_state.setdefault("page", "Overview")
    st.sidebar.radio("Page", list(PAGES), key="page")
    return str(st.session_state["page"])


def model_header(index: ModelIndex) -> None:
    """Format, totals and warnings of the loaded model, above every page."""
    st.markdown(f"### {index.name or 'model'} — `{index.format}`"
                + (f" written by {index.writer}" if index.writer else ""))
    cols = st.columns(5)
    cols[0].metric("Layers", len(index.layers))
    cols[1].metric("Parameters", f"{index.total_params:,}")
    tp, ntp = index.trainable_params, index.non_trainable_params
    cols[2].metric("Trainable", "unknown" if tp is None else f"{tp:,}")
    cols[3].metric("Non-trainable", "unknown" if ntp is None else f"{ntp:,}")
    cols[4].metric("Weights", f"{index.total_bytes / 1e6:.2f} MB")
    if not index.has_architecture:
        st.info("This file stores weights only: layer kinds are inferred and the model cannot be run.")
    for warning in index.warnings:
        st.warning(warning)


def main() -> None:
    kerascompat.set_verbose(os.environ.get(DEBUG_ENV) == "1")
    st.set_page_config(page_title="filter-inspector", layout="wide")
    st.sidebar.title("filter-inspector")
    try:
        _run()
    except Exception as exc:  # the last guard: whatever escapes below is one line, never a traceback
        show_error(exc)


def _run() -> None:
    persist_widget_state()
    urlstate.apply_url()  # a shared link or Back/Forward: the URL's view wins over the session's
    try:
        _run_view()
    finally:  # also after st.stop(): the URL always names what is on screen
        urlstate.sync_url()


def _run_view() -> None:
    try:
        path = loading.model_source_ui()
    except Exception as exc:  # a rejected or damaged upload, or a bug: one line, the sidebar stays usable
        show_error(exc)
        st.stop()
    page = page_ui()
    if path is None:
        st.info("Choose a model in the sidebar: a bundled sample, a path, or an upload.")
        st.stop()
    try:
        index, key = loading.open_current(path)
    except Exception as exc:  # bad file / unsupported model: one line, app keeps running
        show_error(exc)
        st.stop()
    st.sidebar.caption(f"`{index.source}`")
    model_header(index)
    try:
        PAGES[page](index, key)
    except Exception as exc:  # InspectorError or a bug: never a traceback in the page
        show_error(exc)


if __name__ == "__main__":  # Streamlit runs the script as __main__ (also under AppTest)
    main()
