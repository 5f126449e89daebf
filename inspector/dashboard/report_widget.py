"""The "Download report" button (Export page): the same file ``inspector report`` writes.

Streamlit's download button needs the bytes when it is drawn, so there are two steps. "Build report"
starts :func:`inspector.report.write_report` as a background :class:`~inspector.dashboard.jobs.Job`
(into a private temporary folder, removed when the job ends): a report of ResNet50 takes 20-40 s,
which inside the page script froze the app, and any click abandoned it. While it runs the page shows
the sections done, an estimate of the time left and Cancel (the report stops after the current
section); then "Download report" hands over the bytes the job kept. Nothing is written next to the model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from inspector.dashboard import jobs, loading
from inspector.errors import InspectorError
from inspector.records import ModelIndex

__all__ = ["JOB", "ReportJob", "build_report_bytes", "report_download"]

JOB = "_rep_job"  # not a rep_* key: main.persist_widget_state leaves it alone
_REFUSED = "_rep_refused"  # the one-line reason "Build report" was refused, shown by the next run
_MIME = {"html": "text/html", "pdf": "application/pdf"}

#: The report job of the Export page: ``job.result`` is the file's bytes, ``job.tag`` the
#: (model, format, options) it was built for, ``job.name`` the download's file name.
ReportJob = jobs.Job[bytes]


def build_report_bytes(index: ModelIndex, fmt: str, options: Any, progress: Any = None) -> bytes:
    """The report of ``index`` as ``fmt`` ("html" or "pdf") bytes, written through a temporary folder.

    ``progress(done, total, what)`` is called before each section and may raise to stop the report
    (the temporary folder is removed all the same).
    """
    from inspector.report import write_report

    with tempfile.TemporaryDirectory(prefix="inspector-report-") as folder:
        out = Path(folder) / f"report.{fmt}"
        write_report(index, out, options, progress=progress, sidecar=False)
        return out.read_bytes()


def report_download(index: ModelIndex, model_key: loading.ModelKey) -> None:
    """Draw the report settings, "Build report", the job's progress and, once built, "Download report"."""
    st.subheader("Report: one printable file of the whole model")
    cols = st.columns(4)
    cols[0].radio("Format", ["html", "pdf"], key="rep_format", horizontal=True)
    cols[1].text_input("Layers (glob, empty = all)", key="rep_layers")
    cols[2].number_input("Strongest maps per layer", 1, 64, 8, key="rep_top_maps")
    cols[3].checkbox("Activations for the sample input", key="rep_input", disabled=not index.has_architecture,
                     help="runs the model on the bundled sample input (imports TensorFlow)")
    fmt, options = _settings(index)
    wanted = (model_key, fmt, options)
    # Started from the button's callback, which runs before the script: the button is then drawn disabled
    # in the same run (a fragment's polling reruns only the progress, never this button).
    job = jobs.current(JOB, model_key)
    st.button("Build report", key="rep_run", disabled=job is not None and job.running, on_click=_start,
              args=(index, model_key))
    refused = st.session_state.pop(_REFUSED, None)
    if refused is not None:
        st.error(refused)
        return
    job = jobs.current(JOB, model_key)
    if job is None:
        return
    if job.running:
        jobs.progress_ui(JOB, cancel_label="Cancel report", widget_key="rep_cancel")
    elif job.tag == wanted:  # a finished job of other settings is not offered for these
        _result(job, fmt)


def _settings(index: ModelIndex) -> tuple[str, Any]:
    """(format, ReportOptions) from the widgets' values; read from the session so that the button's
    callback sees a value typed just before the click (callback arguments are those of the last run)."""
    from inspector.report import ReportOptions

    state = st.session_state
    fmt = str(state.get("rep_format") or "html")
    layers = str(state.get("rep_layers") or "").strip() or None
    with_input = bool(state.get("rep_input")) and index.has_architecture
    options = ReportOptions(layers=layers, top_maps=int(state.get("rep_top_maps") or 8),
                            input="sample" if with_input else None)
    return fmt, options


def _start(index: ModelIndex, model_key: loading.ModelKey) -> None:
    """The Build button: check the settings (a bad layer selection is refused at once, before any thread
    starts), then run the report as the page's background job."""
    from inspector.report import check_options

    fmt, options = _settings(index)
    try:
        check_options(index, options)
    except InspectorError as exc:
        st.session_state[_REFUSED] = str(exc)
        return
    name = f"{index.name or 'model'}_report.{fmt}"

    def work(progress: jobs.Progress) -> bytes:
        return build_report_bytes(index, fmt, options, progress)

    jobs.start(JOB, ReportJob(name, model_key, unit="sections", tag=(model_key, fmt, options)), work)


def _result(job: ReportJob, fmt: str) -> None:
    if job.error is not None:
        st.error(job.error)
        return
    if job.cancelled:
        st.warning(f"Report cancelled after {job.done} of {job.total} sections ({job.seconds:.1f} s); "
                   "nothing to download.")
        return
    assert job.result is not None
    data = job.result
    st.download_button("Download report", data, job.name, _MIME[fmt], key="rep_download", on_click="ignore")
    st.caption(f"{job.name}: {len(data) / 1e6:.2f} MB, built in {job.seconds:.1f} s, every image embedded; the "
               "JSON sidecar with every number comes with `inspector report`.")
