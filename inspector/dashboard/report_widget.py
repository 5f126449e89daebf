"""The "Download report" button (Export page): the same file ``inspector report`` writes.

Two steps, as Streamlit's download button needs the bytes when it is drawn: "Build report" runs
:func:`inspector.report.write_report` into a private temporary folder (with a progress bar), keeps the
bytes in the session (per model and settings) and removes the folder; "Download report" then hands
them over. Nothing is written next to the model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from inspector.dashboard import loading
from inspector.errors import InspectorError
from inspector.records import ModelIndex

__all__ = ["build_report_bytes", "report_download"]

_STATE = "_rep_built"  # not a rep_* key: main.persist_widget_state leaves it alone
_MIME = {"html": "text/html", "pdf": "application/pdf"}


def build_report_bytes(index: ModelIndex, fmt: str, options: Any, progress: Any = None) -> bytes:
    """The report of ``index`` as ``fmt`` ("html" or "pdf") bytes, written through a temporary folder."""
    from inspector.report import write_report

    with tempfile.TemporaryDirectory(prefix="inspector-report-") as folder:
        out = Path(folder) / f"report.{fmt}"
        write_report(index, out, options, progress=progress, sidecar=False)
        return out.read_bytes()


def report_download(index: ModelIndex, model_key: loading.ModelKey) -> None:
    """Draw the report settings, "Build report" and, once built, "Download report"."""
    from inspector.report import ReportOptions

    st.subheader("Report: one printable file of the whole model")
    cols = st.columns(4)
    fmt = cols[0].radio("Format", ["html", "pdf"], key="rep_format", horizontal=True)
    layers = cols[1].text_input("Layers (glob, empty = all)", key="rep_layers").strip() or None
    top_maps = int(cols[2].number_input("Strongest maps per layer", 1, 64, 8, key="rep_top_maps"))
    with_input = cols[3].checkbox("Activations for the sample input", key="rep_input",
                                  disabled=not index.has_architecture,
                                  help="runs the model on the bundled sample input (imports TensorFlow)")
    options = ReportOptions(layers=layers, top_maps=top_maps, input="sample" if with_input else None)
    wanted = (model_key, fmt, options)
    if st.button("Build report", key="rep_run"):
        bar = st.progress(0.0, text="starting…")

        def progress(done: int, total: int, what: str) -> None:
            bar.progress(min(1.0, done / max(total, 1)), text=f"{done}/{total} · {what}")

        try:
            data = build_report_bytes(index, fmt, options, progress)
        except InspectorError as exc:
            st.error(str(exc))
            return
        st.session_state[_STATE] = (wanted, data)
        bar.empty()
    built = st.session_state.get(_STATE)
    if built is not None and built[0] == wanted:
        data = built[1]
        name = f"{index.name or 'model'}_report.{fmt}"
        st.download_button("Download report", data, name, _MIME[fmt], key="rep_download", on_click="ignore")
        st.caption(f"{name}: {len(data) / 1e6:.2f} MB, every image embedded; the JSON sidecar with every number "
                   f"comes with `inspector report`.")
