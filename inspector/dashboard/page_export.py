"""Export page: filters of one layer or of the whole model, as a downloadable zip, with progress.

The files are written by :func:`inspector.export.export_batch` (the engine of ``inspector export``,
with its manifest) into a private temporary folder, zipped in memory, and the folder is removed at
once: nothing is written next to the model.

A long export must not block the app: ``export_batch`` runs as a background :class:`~inspector.dashboard.jobs.Job`
(progress, an estimate of the time left, and Cancel, which stops the export after the current map).
When it is done the page offers the zip and a summary of its manifest (files, input channels covered,
truncated maps).
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from inspector.dashboard import jobs, loading, views
from inspector.dashboard.report_widget import report_download
from inspector.dashboard.widgets import layer_choice_ui
from inspector.errors import InspectorError
from inspector.export import ExportFormat, Manifest, export_batch
from inspector.filters import output_map_count
from inspector.records import ModelIndex

__all__ = ["ExportJob", "build_zip", "export_page"]

_SCALES = {"shared per map": "shared", "per kernel": "per-kernel"}
_JOB = "_exp_job"  # not an exp_* key: main.persist_widget_state leaves it alone


def build_zip(index: ModelIndex, layers: str | Sequence[str] | None, maps: str | None, formats: list[str], *,
              fold_bn: bool = False, scale: str = "shared", per_page: int = 64, max_kernels: int | None = None,
              progress: Callable[[int, int, str], None] | None = None) -> tuple[bytes, int, Manifest]:
    """``export_batch`` into a temp folder, zipped: (zip bytes, number of maps exported, manifest).

    ``layers``: a list of exact layer paths, a pattern string (globs, commas) or None for every filter layer.
    When ``progress`` raises :class:`~inspector.dashboard.jobs.JobCancelled` (the user's Cancel), the export
    stops cleanly after that map and the zip holds the maps done (``manifest.complete`` is False).
    """
    maps_done = 0
    cancelled = False

    def report(done: int, total: int, what: str) -> None:
        nonlocal maps_done, cancelled
        maps_done = done
        if progress is not None:
            try:
                progress(done, total, what)
            except jobs.JobCancelled:
                cancelled = True

    with tempfile.TemporaryDirectory(prefix="inspector-export-") as tmp:
        manifest = export_batch(index, tmp, layers=layers, maps=maps or None, formats=formats, fold_bn=fold_bn,
                                scale=scale, per_page=per_page, max_kernels=max_kernels, progress=report,
                                stop=lambda: cancelled)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(Path(tmp).rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(tmp).as_posix())
    return buf.getvalue(), maps_done, manifest


#: The export job of the page: ``job.result`` is (zip bytes, maps exported, manifest).
ExportJob = jobs.Job[tuple[bytes, int, Manifest]]


def export_options_ui(index: ModelIndex) -> dict[str, Any] | None:
    st.session_state.setdefault("exp_scope", "One layer")
    scope = st.radio("Scope", ["One layer", "Whole model"], key="exp_scope", horizontal=True)
    if scope == "One layer":
        layer = layer_choice_ui(index, prefix="exp")
        if layer is None:
            return None
        paths = [layer]
    else:
        paths = [layer.path for layer in index.filter_layers()]
        if not paths:
            st.info("This model has no layer with kernels.")
            return None
    total = sum(output_map_count(index.layer(p)) for p in paths)
    cols = st.columns(3)
    maps_text = cols[0].text_input("Maps (e.g. 0-7,12; empty = all)", key="exp_maps")
    st.session_state.setdefault("exp_formats", ["png", "npz"])
    formats = cols[1].multiselect("Formats", [str(f) for f in ExportFormat], key="exp_formats")
    scale = cols[2].selectbox("Normalisation", list(_SCALES), key="exp_norm")
    cols = st.columns(3)
    st.session_state.setdefault("exp_per_page", 64)
    per_page = cols[0].number_input("Kernels per figure", min_value=1, max_value=1024, step=8, key="exp_per_page",
                                    help="A map with more input kernels gets more figure pages "
                                         "(map_0007.png, map_0007_p2.png, …): no kernel is left out")
    capped = cols[1].toggle("Cap kernels per map", key="exp_cap_on",
                            help="Only the first N kernels of each map (in input-channel order); the manifest "
                                 "marks those files truncated. Off: every kernel is exported")
    st.session_state.setdefault("exp_max_kernels", 64)
    max_kernels = cols[2].number_input("Max kernels per map", min_value=1, step=8, key="exp_max_kernels",
                                       disabled=not capped)
    fold_bn = st.toggle("Fold BatchNormalization where one follows", key="exp_fold_bn")
    st.caption(f"{len(paths)} layer(s), {total} maps in all; the selection applies to each layer. PNG/SVG: one "
               "file per figure page; PDF and NPZ: one file per layer; manifest.json/csv list every file with "
               "the input channels it holds.")
    return {"scope": scope, "paths": paths, "maps": maps_text.strip(), "formats": list(formats),
            "scale": _SCALES[scale], "per_page": int(per_page), "max_kernels": int(max_kernels) if capped else None,
            "fold_bn": bool(fold_bn)}


def export_page(index: ModelIndex, key: loading.ModelKey) -> None:
    st.subheader("Export: filter images and arrays as a zip")
    options = export_options_ui(index)
    if options is None:
        return
    job = jobs.current(_JOB)
    busy = job is not None and job.running
    if st.button("Build zip", key="exp_run", type="primary", disabled=not options["formats"] or busy):
        scope, paths = options["scope"], options["paths"]
        stem = index.name or "model"
        name = f"{stem}_{'model' if scope == 'Whole model' else paths[0].replace('/', '_')}_filters.zip"
        # A list is taken as exact paths, never parsed as a pattern: 'conv[1]' or 'a,b' is that layer.
        layers = [paths[0]] if scope == "One layer" else None

        def work(progress: Callable[[int, int, str], None]) -> tuple[bytes, int, Manifest]:
            return build_zip(index, layers, options["maps"], options["formats"], fold_bn=options["fold_bn"],
                             scale=options["scale"], per_page=options["per_page"],
                             max_kernels=options["max_kernels"], progress=progress)

        try:  # a bad selection is refused at once, before the thread starts
            from inspector.selectors import plan_maps

            plan = plan_maps(index, layers, options["maps"] or None, stage_where_offered=True)
        except InspectorError as exc:
            st.error(str(exc))
            return
        jobs.start(_JOB, ExportJob(name, key, total=sum(len(p.maps) for p in plan)), work)
    _job_status(key)
    report_download(index, key)


def _job_status(key: loading.ModelKey) -> None:
    job = jobs.current(_JOB, key)
    if job is None:
        return
    if job.running:
        jobs.progress_ui(_JOB, cancel_label="Cancel export", widget_key="exp_cancel")
    else:
        _result(job)


def _result(job: ExportJob) -> None:
    seconds = job.seconds
    if job.error is not None:
        st.error(job.error)
        return
    if job.cancelled or job.result is None:  # cancelled before the first map was done
        st.warning(f"Export cancelled after {job.done} of {job.total} maps ({seconds:.1f} s); nothing to download.")
        return
    data, done, manifest = job.result
    rows = views.manifest_summary(manifest)
    truncated = sum(r["truncated maps"] for r in rows)
    maps = f"{done} map{'' if done == 1 else 's'}"
    text = (f"{len(manifest.rows)} files, {len(data) / 1e6:.2f} MB"
            + (f"; {truncated} maps truncated by the cap" if truncated else "; every kernel included"))
    if manifest.complete:
        st.success(f"{maps} exported in {seconds:.1f} s: {text}")
        label, name = "Download zip", job.name
    else:
        st.warning(f"Export cancelled after {maps} of {job.total} ({seconds:.1f} s); the zip holds those maps "
                   f"(manifest.json says complete: false): {text}")
        label, name = f"Download the {maps} exported", job.name.replace(".zip", "_partial.zip")
    st.download_button(label, data, name, "application/zip", key="exp_download", on_click="ignore")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="exp_summary_table", width="stretch")
