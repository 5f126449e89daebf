"""Examples page: scan a folder (or an uploaded zip) of images for the top-k examples of every map.

The scan (:func:`inspector.examples.find_examples`) runs as a background job with a progress bar
(images/s) and Cancel; a cancelled scan keeps its partial state in the examples cache, so running it
again resumes. The result is browsed as contact sheets, a page of maps at a time; the Filters page
shows the same cached crops next to a map's kernels (:mod:`inspector.dashboard.examples_panel`).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import streamlit as st

from inspector.dashboard import jobs, loading, views
from inspector.dashboard.widgets import show_picture
from inspector.examples import DEFAULT_K, ExamplesResult, ScanSettings, crop_examples, find_examples
from inspector.inputs import FIT_CHOICES
from inspector.records import ModelIndex

__all__ = ["examples_page", "spatial_layers"]

_JOB = "_ex_job"  # not an ex_* key: main.persist_widget_state leaves it alone
_UPLOAD = "_ex_zip"
_MAPS_PER_SHEET = 8
#: The preprocessing choices offered here (the CLI's vocabulary; meanstd needs values, so not offered).
_PREPROCESS = ("auto", "scale01", "scale11", "none", "caffe", "torch", "tf")

ExamplesJob = jobs.Job[ExamplesResult]


def spatial_layers(index: ModelIndex) -> list[str]:
    """Layers whose output has spatial maps (rank >= 3), in model order: what a scan accepts."""
    return [layer.path for layer in index.layers
            if isinstance(layer.output_shape, tuple) and len(layer.output_shape) >= 3
            and layer.class_name != "InputLayer"]


def _images_ui() -> str | None:
    st.session_state.setdefault("ex_source", "Folder path")
    how = st.radio("Images", ["Folder path", "Upload a zip"], key="ex_source", horizontal=True)
    if how == "Folder path":
        folder = st.text_input("Folder of images (searched recursively) or a .zip path", key="ex_folder").strip()
        return folder or None
    up = st.file_uploader("A zip of images", type=["zip"], key="ex_upload")
    if up is None:
        return None
    data = up.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:16]
    kept = st.session_state.get(_UPLOAD)
    if not kept or kept[0] != digest or not Path(kept[1]).exists():
        target = Path(tempfile.mkdtemp(prefix="inspector-examples-")) / f"{digest}.zip"
        target.write_bytes(data)  # the same bytes keep the same content: the cache finds the scan again
        st.session_state[_UPLOAD] = (digest, str(target))
    return str(st.session_state[_UPLOAD][1])


def _scan_ui(index: ModelIndex, key: loading.ModelKey) -> None:
    layers = spatial_layers(index)
    if not layers:
        st.info("This model has no layer with spatial maps (height × width × maps) to find examples for.")
        return
    images = _images_ui()
    st.session_state.setdefault("ex_layers", [next((p for p in layers if p in {f.path for f in index.filter_layers()}),
                                                   layers[0])])
    st.session_state["ex_layers"] = [p for p in st.session_state["ex_layers"] if p in layers]
    chosen = st.multiselect("Layers (one pass serves all)", layers, key="ex_layers")
    cols = st.columns(4)
    k = int(cols[0].number_input("Examples per map (k)", 1, 64, DEFAULT_K, key="ex_k"))
    preprocess = cols[1].selectbox("Preprocessing", _PREPROCESS, key="ex_preprocess",
                                   help="auto = scale01 (v/255); caffe/torch/tf: the Keras applications' presets")
    fit = cols[2].selectbox("Fit", FIT_CHOICES, key="ex_fit")
    batch = int(cols[3].number_input("Batch", 1, 512, 32, key="ex_batch"))
    job = jobs.current(_JOB, key)
    busy = job is not None and job.running
    if st.button("Find examples", key="ex_run", type="primary", disabled=busy or not images or not chosen):
        assert images is not None
        settings = ScanSettings(preprocess=str(preprocess), fit=str(fit))
        model_path = key[0]
        paths = list(chosen)

        def work(progress: jobs.Progress) -> ExamplesResult:
            return find_examples(model_path, images, paths, k=k, settings=settings, batch=batch, progress=progress)

        jobs.start(_JOB, ExamplesJob("examples", key, unit="images"), work)
        st.rerun()
    jobs.progress_ui(_JOB, cancel_label="Stop (the next run resumes)", widget_key="ex_cancel")
    job = jobs.current(_JOB, key)
    if job is not None and not job.running:
        if job.error:
            st.error(job.error)
        elif job.cancelled:
            st.info(f"Stopped after {job.done} of {job.total} images; run again to resume from there.")
        elif job.result is not None:
            st.session_state["_ex_result"] = (key, job.result)
            st.session_state[_JOB] = None


def _browse_ui(key: loading.ModelKey) -> None:
    kept = st.session_state.get("_ex_result")
    if not kept or kept[0] != key:
        return
    result: ExamplesResult = kept[1]
    note = " (from the cache)" if result.from_cache else ""
    st.success(f"{result.images_scanned} images scanned, {len(result.images_skipped)} skipped{note}.")
    if result.images_skipped:
        with st.expander(f"Skipped files ({len(result.images_skipped)})"):
            st.write(", ".join(result.images_skipped[:200]))
    names = [le.layer for le in result.layers]
    if st.session_state.get("ex_view_layer") not in names:
        st.session_state["ex_view_layer"] = names[0]
    layer = st.selectbox("Layer", names, key="ex_view_layer")
    le = result.layer(str(layer))
    if le.note:
        st.caption(le.note)
    pages = max(1, -(-len(le.maps) // _MAPS_PER_SHEET))
    # A link may ask for a sheet this scan does not have: keep the page number in range.
    st.session_state["ex_view_page"] = min(max(int(st.session_state.get("ex_view_page", 1)), 1), pages)
    page = int(st.number_input(f"Page ({_MAPS_PER_SHEET} maps each, 1–{pages})", 1, pages, 1, key="ex_view_page")) - 1
    maps = [m.map for m in le.maps[page * _MAPS_PER_SHEET:(page + 1) * _MAPS_PER_SHEET]]
    pic = _sheet(result, str(layer), tuple(maps))
    show_picture(pic, f"{layer}: maps {maps[0]}–{maps[-1]} of {le.n_maps}, top {result.k} images each "
                      f"(crops = receptive fields)")
    st.download_button("Download JSON", data=_json_bytes(result), file_name="examples.json",
                       mime="application/json", key="ex_dl_json")


def _json_bytes(result: ExamplesResult) -> bytes:
    import json

    from inspector.serialize import to_json

    return json.dumps(to_json(result), allow_nan=False, indent=1).encode()


def _sheet(result: ExamplesResult, layer: str, maps: tuple[int, ...]) -> views.Picture:
    from inspector.render.examples import contact_sheet_figure

    rows = crop_examples(result, layer, list(maps))
    fig = contact_sheet_figure(rows, k=result.k, dpi=views.DPI)
    return views.figure_picture(fig)


def examples_page(index: ModelIndex, key: loading.ModelKey) -> None:
    st.subheader("Dataset examples: the images that excite each map most")
    st.caption("One pass over your images; each map keeps its k best images, cropped to the receptive field "
               "of the strongest position. Results are cached: a second run is instant, a stopped one resumes.")
    _scan_ui(index, key)
    _browse_ui(key)
