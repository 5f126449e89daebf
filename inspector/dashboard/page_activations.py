"""Activations page: one input through the model, a layer's maps, and one map split by input channel.

This is the only page that imports TensorFlow (through ``inspector.runtime``), and only when it is
opened: the runnable model is a ``st.cache_resource`` per file version, the input batch, captured
outputs and decompositions are ``st.cache_data`` keyed by the input's digest, preprocessing and fit.
The decomposition's forward pass runs once per (layer, input, preprocessing, fit, fold-BN): the
:class:`~inspector.decompose.LayerRun` is a ``st.cache_resource``, so a map step is only numpy work
(``LayerRun.decompose(j)``, milliseconds) and the figure; the neighbours' figures are made ahead.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import streamlit as st

from inspector.dashboard import loading, urlstate, views
from inspector.dashboard.widgets import fold_bn_ui, map_choice_ui, runnable_or_error, show_picture
from inspector.errors import InspectorError
from inspector.inputs import FIT_CHOICES, PREPROCESS_CHOICES, input_spec_from_model, load_input
from inspector.records import FILTER_KINDS, LayerKind, ModelIndex

if TYPE_CHECKING:  # inspector.decompose reaches Keras: imported when a decomposition is made
    from inspector.decompose import LayerRun

__all__ = ["activations_page", "input_ui"]

_GENERATED = "generated test picture"
_INPUT_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff", "npy"]


def _sample_inputs() -> dict[str, str]:
    from inspector.dashboard import sample_models_dir

    out = {_GENERATED: "sample"}
    folder = sample_models_dir()
    if folder is not None:
        for p in sorted(folder.glob("sample_input_*")):
            out[p.name] = str(p)
    from inspector.photos import PHOTO_NAMES, PHOTO_PREFIX, photo_paths

    available = {p.name for p in photo_paths()}
    for name, file in PHOTO_NAMES.items():
        if file in available:
            out[f"photo: {name}"] = PHOTO_PREFIX + name
    return out


@st.cache_data(max_entries=32, show_spinner=False)
def cached_input(key: loading.ModelKey, source: str, digest: str, data: bytes | None, suffix: str,
                 preprocess: str, fit: str = "stretch") -> np.ndarray:
    """The model-ready batch for a sample name/path, or for uploaded bytes (``data``, keyed by digest).

    Uploaded bytes go to a temporary file only for the duration of the call: ``load_input`` reads
    files (and checks them) the same way the CLI does.
    """
    spec = input_spec_from_model(loading.load_runnable_cached(*key))
    if data is None:
        return load_input(source, spec, preprocess=preprocess, fit=fit)
    with tempfile.TemporaryDirectory(prefix="inspector-input-") as tmp:
        # Keep the uploaded name, so a rejection message names the user's file.
        path = Path(tmp) / (Path(source).name or f"input{suffix}")
        path.write_bytes(data)
        return load_input(path, spec, preprocess=preprocess, fit=fit)


@st.cache_data(max_entries=64, show_spinner="Running the model...")
def cached_activation(key: loading.ModelKey, digest: str, preprocess: str, layer: str,
                      _x: np.ndarray) -> np.ndarray:
    from inspector.activations import capture

    return capture(loading.load_runnable_cached(*key), _x, [layer])[layer]


@st.cache_data(max_entries=64, show_spinner=False)
def cached_activation_png(key: loading.ModelKey, digest: str, preprocess: str, layer: str, cap: int,
                          offset: int, cmap: str, shared: bool, _act: np.ndarray) -> views.Picture:
    return views.figure_picture(views.activation_figure(_act, layer, cap=cap, offset=offset, cmap=cmap,
                                                      shared_scale=shared))


@st.cache_resource(max_entries=4, show_spinner="Running the model for the decomposition...")
def cached_layer_run(key: loading.ModelKey, digest: str, preprocess: str, fit: str, layer: str, fold_bn: bool,
                     _x: np.ndarray) -> LayerRun:
    """The one forward pass behind every map of ``layer`` for this input (read-only arrays, shared by
    sessions and the prefetch thread). Four entries: a VGG16 block1 layer's run holds about 100 MB."""
    from inspector.decompose import prepare_decomposition

    index, model = loading.load_index(*key), loading.load_runnable_cached(*key)
    return prepare_decomposition(index, model, _x, layer, fold_bn=fold_bn)


def _run_key(key: loading.ModelKey, digest: str, preprocess: str, fit: str, layer: str, j: int, fold_bn: bool,
             top_k: int) -> tuple[object, ...]:
    return ("dec", key, digest, preprocess, fit, layer, j, fold_bn, top_k)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_decomposition(key: loading.ModelKey, digest: str, preprocess: str, fit: str, layer: str, j: int,
                         fold_bn: bool, top_k: int, _run: LayerRun) -> tuple[object, views.Picture]:
    return PREFETCH.take(_run_key(key, digest, preprocess, fit, layer, j, fold_bn, top_k),
                         lambda: _decompose(_run, j, top_k))


def _decompose(run: LayerRun, j: int, top_k: int) -> tuple[object, views.Picture]:
    dec = run.decompose(j)  # numpy only: the forward pass is in the LayerRun
    return dec, views.figure_picture(views.decomposition_figure(dec, top_k))  # shared renderer


#: The next and previous maps' decompositions and figures are made in the background after each run,
#: so a map step finds its figure done (or under way) instead of starting it.
PREFETCH = loading.Prefetcher(max_entries=16)
#: Figures already shown (so in ``cached_decomposition``'s cache): never made again in the background,
#: where the map just left would otherwise be redrawn after every step, holding the GIL for ~0.5 s.
_SHOWN: OrderedDict[tuple[object, ...], None] = OrderedDict()
_SHOWN_MAX = 64  # cached_decomposition's max_entries


def _prefetched(k: tuple[object, ...], run: LayerRun, j: int, top_k: int) -> dict[tuple[object, ...], object]:
    return {k: _decompose(run, j, top_k)}


def _prefetch_decompositions(key: loading.ModelKey, digest: str, preprocess: str, fit: str, layer: str, j: int,
                             count: int, fold_bn: bool, top_k: int, run: LayerRun) -> None:
    _SHOWN[_run_key(key, digest, preprocess, fit, layer, j, fold_bn, top_k)] = None
    while len(_SHOWN) > _SHOWN_MAX:
        _SHOWN.popitem(last=False)
    for n in (j + 1, j - 1):
        k = _run_key(key, digest, preprocess, fit, layer, n, fold_bn, top_k)
        if 0 <= n < count and k not in _SHOWN:
            PREFETCH.submit(k, [], functools.partial(_prefetched, k, run, n, top_k))


def input_ui() -> tuple[str, str, bytes | None, str, str, str]:
    """(source, digest, uploaded bytes or None, suffix, preprocessing, fit) of the chosen input."""
    cols = st.columns([2, 3, 2, 2])
    st.session_state.setdefault("act_input", "Sample")
    kind = cols[0].radio("Input", ["Sample", "Upload"], key="act_input", horizontal=True)
    samples = _sample_inputs()
    if kind == "Sample":
        name = cols[1].selectbox("Sample input", list(samples), key="act_sample")
        source, data, suffix = samples[name], None, ""
        digest = hashlib.sha1(source.encode()).hexdigest()
    else:
        up = cols[1].file_uploader("Image (PNG/JPEG) or .npy array", type=_INPUT_TYPES, key="act_upload")
        if up is None:
            st.info("Upload an image or a .npy array, or switch to a sample input.")
            st.stop()
        data = up.getvalue()
        source, suffix = up.name, Path(up.name).suffix.lower()
        digest = hashlib.sha1(data).hexdigest()
    st.session_state.setdefault("act_pre", "auto")
    pre = cols[2].selectbox("Preprocessing", PREPROCESS_CHOICES, key="act_pre",
                            help="auto: images and samples /255 (as they are if the model rescales itself), .npy "
                                 "arrays as stored; scale01: /255; "
                                 "scale11 and tf: /127.5 − 1; caffe: RGB→BGR minus the ImageNet mean (VGG, "
                                 "ResNet50); torch: /255 then ImageNet mean/std; none: as stored")
    st.session_state.setdefault("act_fit", "stretch")
    fit = cols[3].selectbox("Fit", FIT_CHOICES, key="act_fit",
                            help="an image whose aspect differs from the model input: stretch it, crop its "
                                 "centre, or pad it (letterbox on black); arrays and the test picture "
                                 "already have the input shape")
    return source, digest, data, suffix, pre, fit


def activations_page(index: ModelIndex, key: loading.ModelKey) -> None:
    st.subheader("Activations: what one input does to a layer")
    if not runnable_or_error(index, "to see activations"):
        return
    source, digest, data, suffix, pre, fit = input_ui()
    try:
        x = cached_input(key, source, digest, data, suffix, pre, fit)
    except InspectorError as exc:  # wrong image / array: one line, the page stays usable
        st.error(str(exc))
        return
    st.caption(f"Input batch {tuple(x.shape)}, values {float(x.min()):.3g} … {float(x.max()):.3g}")
    if x.ndim == 4 and x.shape[-1] in (1, 3):  # channels_last image: show what the model sees
        img = x[0].astype(np.float64)
        if pre == "caffe":
            img = img[..., ::-1]  # caffe feeds BGR: show it as RGB
        span = float(img.max() - img.min()) or 1.0
        st.image((img - img.min()) / span, width=128, caption="input (stretched to 0–1 for display)",
                 clamp=True)
    layers = [layer.path for layer in index.layers if layer.kind is not LayerKind.INPUT]
    if st.session_state.get("act_layer") not in layers:
        filt = index.filter_layers()
        st.session_state["act_layer"] = filt[0].path if filt else layers[0]
    left, right = st.columns([1, 3])
    with left:
        layer = st.selectbox("Layer", layers, key="act_layer")
        cmap = st.selectbox("Colour map", ("viridis", "gray", "magma", "RdBu_r"), key="act_cmap")
        # The shared renderer draws the grid as one mosaic image; labels (≈ 1 ms each) set its cost.
        st.session_state.setdefault("act_cap", 32)
        cap = int(st.select_slider("Maps per grid", (8, 16, 32, 64, 128), key="act_cap"))
        shared = st.toggle("One colour scale for all maps", key="act_shared")
    act = cached_activation(key, digest, f"{pre}/{fit}", layer, x)
    n_maps = act.shape[-1] if act.ndim > 2 else 1
    with left:
        offset = 0
        if n_maps > cap:
            pages = (n_maps + cap - 1) // cap
            st.session_state["act_page"] = min(max(int(st.session_state.get("act_page", 1)), 1), pages)
            page = st.number_input(f"Grid page (1–{pages}, {cap} maps each)", 1, pages, step=1, key="act_page")
            offset = (int(page) - 1) * cap
    with right:
        png = cached_activation_png(key, digest, f"{pre}/{fit}", layer, cap, offset, cmap, shared, act)
        show_picture(png, f"{layer} output {tuple(act.shape)}")
    record = index.layer(layer)
    if record.kind not in FILTER_KINDS or record.kernel is None:
        st.caption("Pick a layer with kernels (conv, dense, ...) to split a map into input-channel contributions.")
        return
    st.markdown("**Decomposition** — one output map as the sum of its input channels' contributions")
    _decomposition_part(key, digest, pre, fit, layer, x)


@st.fragment
def _decomposition_part(key: loading.ModelKey, digest: str, pre: str, fit: str, layer: str, x: np.ndarray) -> None:
    """Everything that depends on the decomposed map: a map step, top-k or fold-BN change reruns only this
    (the input, the activation grid and the layer list stay as drawn)."""
    try:
        _decomposition_body(key, digest, pre, fit, layer, x)
    except Exception as exc:  # a fragment rerun does not pass main's guard: one line, never a traceback
        st.error(views.error_text(exc))
    finally:
        urlstate.sync_url()  # also on a fragment rerun: the URL names what is on screen


def _decomposition_body(key: loading.ModelKey, digest: str, pre: str, fit: str, layer: str, x: np.ndarray) -> None:
    record = loading.load_index(*key).layer(layer)
    from inspector.filters import output_map_count

    c1, c2 = st.columns([3, 2])
    with c1:
        j = map_choice_ui(output_map_count(record), key="act_map", label="Map to decompose")
    with c2:
        st.session_state.setdefault("act_topk", 6)
        top_k = int(st.number_input("Top-k channels", 1, 32, step=1, key="act_topk"))
        fold_bn = fold_bn_ui(key, layer, None, "act_fold_bn", "Fold following BN")
    try:
        run = cached_layer_run(key, digest, pre, fit, layer, fold_bn, x)
        dec, dec_png = cached_decomposition(key, digest, pre, fit, layer, j, fold_bn, top_k, run)
    except InspectorError as exc:
        st.error(str(exc))
        return
    show_picture(dec_png, f"{layer} map {j}: contributions, bias, pre-activation, output")
    m = st.columns(4)
    m[0].metric("Bias", f"{dec.bias:.4g}")  # type: ignore[attr-defined]
    m[1].metric("Max |Σ − Keras|", f"{dec.max_abs_error:.2e}")  # type: ignore[attr-defined]
    m[2].metric("Activation", str(dec.activation))  # type: ignore[attr-defined]
    m[3].metric("Input channels", dec.n_inputs)  # type: ignore[attr-defined]
    energy = np.asarray(dec.energy)  # type: ignore[attr-defined]
    total = float(energy.sum()) or 1.0
    order = dec.top(top_k)  # type: ignore[attr-defined]
    st.dataframe(pd.DataFrame({
        "input channel": np.asarray(dec.input_channels)[order],  # type: ignore[attr-defined]
        "energy (Σ contribution²)": energy[order],
        "share": energy[order] / total,
    }), hide_index=True, key="act_topk_table")
    for note in dec.notes:  # type: ignore[attr-defined]
        st.caption(note)
    _prefetch_decompositions(key, digest, pre, fit, layer, j, output_map_count(record), fold_bn, top_k, run)
