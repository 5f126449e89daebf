"""Export page: filters of one layer or of the whole model, as a downloadable zip, with progress.

The files are written by :func:`inspector.export.export_batch` (the engine of ``inspector export``,
with its manifest) into a private temporary folder, zipped in memory, and the folder is removed at
once: nothing is written next to the model. The zip stays in ``st.session_state`` so the download
button survives reruns.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import streamlit as st

from inspector.dashboard import loading
from inspector.dashboard.page_filters import layer_choice_ui
from inspector.errors import InspectorError
from inspector.export import ExportFormat, export_batch
from inspector.filters import output_map_count
from inspector.records import ModelIndex

__all__ = ["build_zip", "export_page"]

_SCALES = {"shared per map": "shared", "per kernel": "per-kernel"}


def build_zip(index: ModelIndex, layers: str | Sequence[str] | None, maps: str | None, formats: list[str], *,
              fold_bn: bool = False, scale: str = "shared",
              progress: Callable[[int, int, str], None] | None = None) -> tuple[bytes, int]:
    """``export_batch`` into a temp folder, zipped: (zip bytes, number of maps exported).

    ``layers``: a list of exact layer paths, a pattern string (globs, commas) or None for every filter layer.
    """
    maps_done = 0

    def report(done: int, total: int, what: str) -> None:
        nonlocal maps_done
        maps_done = done
        if progress is not None:
            progress(done, total, what)

    with tempfile.TemporaryDirectory(prefix="inspector-export-") as tmp:
        export_batch(index, tmp, layers=layers, maps=maps or None, formats=formats, fold_bn=fold_bn,
                     scale=scale, progress=report)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(Path(tmp).rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(tmp).as_posix())
    return buf.getvalue(), maps_done


def export_page(index: ModelIndex, key: loading.ModelKey) -> None:
    st.subheader("Export: filter images and arrays as a zip")
    st.session_state.setdefault("exp_scope", "One layer")
    scope = st.radio("Scope", ["One layer", "Whole model"], key="exp_scope", horizontal=True)
    if scope == "One layer":
        layer = layer_choice_ui(index, prefix="exp")
        if layer is None:
            return
        paths = [layer]
    else:
        paths = [layer.path for layer in index.filter_layers()]
        if not paths:
            st.info("This model has no layer with kernels.")
            return
    total = sum(output_map_count(index.layer(p)) for p in paths)
    cols = st.columns(3)
    maps_text = cols[0].text_input("Maps (e.g. 0-7,12; empty = all)", key="exp_maps")
    st.session_state.setdefault("exp_formats", ["png", "npz"])
    formats = cols[1].multiselect("Formats", [str(f) for f in ExportFormat], key="exp_formats")
    scale = cols[2].selectbox("Normalisation", list(_SCALES), key="exp_norm")
    fold_bn = st.toggle("Fold BatchNormalization where one follows", key="exp_fold_bn")
    st.caption(f"{len(paths)} layer(s), {total} maps in all; the selection applies to each layer. PNG/SVG: one "
               "file per map; PDF and NPZ: one file per layer; manifest.json/csv list every file.")
    if st.button("Build zip", key="exp_run", type="primary", disabled=not formats):
        bar = st.progress(0.0, text="starting…")

        def progress(done: int, n: int, what: str) -> None:
            bar.progress(done / max(n, 1), text=f"{done}/{n} · {what}")

        # A list is taken as exact paths, never parsed as a pattern: 'conv[1]' or 'a,b' is that layer.
        layers = [paths[0]] if scope == "One layer" else None
        try:
            data, count = build_zip(index, layers, maps_text.strip(), list(formats), fold_bn=fold_bn,
                                    scale=_SCALES[scale], progress=progress)
        except InspectorError as exc:
            st.error(str(exc))
            return
        stem = index.name or "model"
        name = f"{stem}_{'model' if scope == 'Whole model' else paths[0].replace('/', '_')}_filters.zip"
        st.session_state["exp_result"] = (name, data, count, key)
    result = st.session_state.get("exp_result")
    if result is not None and result[3] == key:
        st.success(f"{result[2]} maps exported, {len(result[1]) / 1e6:.2f} MB")
        st.download_button("Download zip", result[1], result[0], "application/zip", key="exp_download",
                           on_click="ignore")
