"""Widgets shared by the dashboard pages (pages never import each other; they import these).

Each draws keyed Streamlit widgets and returns plain values, so AppTest and the browser tests can
drive them by key.
"""

from __future__ import annotations

import streamlit as st

from inspector.dashboard import loading, urlstate, views
from inspector.records import LayerKind, ModelIndex

#: Kernel order choices (label -> ``sort`` argument), shared by the Filters page and the heat-map links.
SORTS = {"input-channel order": None, "strongest first (L2 norm)": "norm"}

__all__ = ["SORTS", "fold_bn_ui", "layer_choice_ui", "map_choice_ui", "show_picture"]


def show_picture(pic: views.Picture, caption: str) -> None:
    """A hi-DPI figure at its screen size: a container of the picture's CSS width holds the image
    stretched to it (``st.image(width=int)`` would shrink the PNG itself), at most the column's width."""
    with st.container(width=pic.width):
        st.image(pic.png, caption=caption, width="stretch")


def layer_choice_ui(index: ModelIndex, prefix: str = "flt", *, every_layer: bool = False) -> str | None:
    """A searchable list of the layers that have kernels (``every_layer``: of every layer but the inputs,
    for pages that work on any layer's output); returns the chosen path. Without a choice yet, the first
    layer with kernels is shown."""
    kernels = [layer.path for layer in index.filter_layers()]
    layers = [layer.path for layer in index.layers if layer.kind is not LayerKind.INPUT] if every_layer else kernels
    what = "layers" if every_layer else "with kernels"
    if not layers:
        st.info("This model has no layer with kernels (conv, depthwise, separable, transposed or dense)."
                if not every_layer else "This model has no layer besides its inputs.")
        return None
    search = st.text_input("Filter layers", key=f"{prefix}_layer_search", placeholder="e.g. conv").strip().lower()
    options = [p for p in layers if search in p.lower()] or layers
    wanted = st.session_state.get(f"{prefix}_layer")
    if wanted not in options:
        first = next((p for p in kernels if p in options), options[0])
        if wanted is not None and st.session_state.get(urlstate.URL_LAYER_REQUEST) == wanted:
            try:  # a link may name a layer by its bare name: use its full path
                full = index.layer(str(wanted)).path
            except Exception:
                full = None
            if full not in layers:
                st.warning(f"The link names layer '{wanted}', which is not "
                           f"{'a layer' if every_layer else 'a layer with kernels'} in this model; showing {first}.")
            wanted = full
        st.session_state[f"{prefix}_layer"] = wanted if wanted in options else first
    st.session_state.pop(urlstate.URL_LAYER_REQUEST, None)
    return st.selectbox(f"Layer ({len(options)} of {len(layers)} {what})", options, key=f"{prefix}_layer")


def _step(key: str, delta: int, count: int) -> None:
    """prev/next: a callback runs before the rerun, the only moment a widget's state may be set."""
    st.session_state[key] = min(count - 1, max(0, int(st.session_state.get(key, 0)) + delta))


def map_choice_ui(count: int, key: str = "flt_map", label: str = "Output map") -> int:
    """Number input with prev/next buttons, clamped to the layer's map count."""
    current = int(st.session_state.get(key, 0))
    if not 0 <= current < count:  # the layer changed to one with fewer maps
        st.session_state[key] = min(max(current, 0), count - 1)
    st.number_input(f"{label} (0–{count - 1})", min_value=0, max_value=count - 1, step=1, key=key)
    prev, nxt = st.columns(2)
    prev.button("◀ prev", key=f"{key}_prev", on_click=_step, args=(key, -1, count), disabled=current <= 0,
                width="stretch")
    nxt.button("next ▶", key=f"{key}_next", on_click=_step, args=(key, 1, count),
               disabled=current >= count - 1, width="stretch")
    return int(st.session_state[key])


@st.cache_data(max_entries=256, show_spinner=False)
def cached_fold_reason(key: loading.ModelKey, layer: str, stage: str | None) -> str | None:
    return views.fold_bn_reason(loading.load_index(*key), layer, stage)


def fold_bn_ui(key: loading.ModelKey, layer: str, stage: str | None, widget_key: str,
               label: str = "Fold BatchNormalization", container: object = None) -> bool:
    """The fold-BN toggle, the same on every page: disabled, with the reason as its help, where this
    layer has no BatchNormalization to fold; returns whether to fold."""
    reason = cached_fold_reason(key, layer, stage)
    if reason is not None and st.session_state.get(widget_key):
        st.session_state[widget_key] = False
    where = container if container is not None else st
    value = where.toggle(  # type: ignore[attr-defined]
        label, key=widget_key, disabled=reason is not None,
        help=f"Not available here: {reason}" if reason else
        "Fold the BatchNormalization that reads this layer's output into its kernels and bias")
    if reason is not None:
        where.caption(f"Fold BN: not available here. {reason}")  # type: ignore[attr-defined]
    return bool(value) and reason is None


def runnable_or_error(index: ModelIndex, purpose: str) -> bool:
    """Whether the model can run; if not (a weights-only file), the one-line error saying so for ``purpose``
    ("to see activations", ...)."""
    if index.has_architecture:
        return True
    st.error("this file stores weights only, so the model cannot be run; open the full model "
             f"(.keras, .h5 or SavedModel) {purpose}. Received: {index.source}")
    return False
