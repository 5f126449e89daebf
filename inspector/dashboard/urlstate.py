"""The view lives in the URL: ``/?page=filters&layer=block5_conv3&map=7`` opens exactly that view.

Two directions, both through ``st.query_params``:

* **URL -> widgets** (:func:`apply_url`, at the top of a run): when the query string differs from
  the one this session wrote last, it came from outside (a shared link, a typed URL, or the browser's
  Back/Forward) and its values are written into the widgets' session state before they are drawn.
  Options missing from the URL take their defaults, so a link always means the same view.
* **widgets -> URL** (:func:`sync_url`, at the end of a run): the current view as a query string.
  Streamlit 1.67's frontend ``pushState``s a query string the script changes (``replaceState`` during
  a Back/Forward run) and re-runs the script with the URL's query on ``popstate``: so every view
  change is a history entry and Back/Forward move between views with no JavaScript of ours.

Which widget a parameter drives is the table :data:`PARAMS`; nothing else in the dashboard reads the
query string. ``sample=NAME`` names a bundled sample other than the default one (a model opened by
path or upload is not in the URL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

__all__ = ["PARAMS", "Param", "apply_url", "current_query", "open_view", "page_slug", "sync_url"]


def page_slug(page: str) -> str:
    """A page's name in the URL: its sidebar name in lower case ("Filters" -> "filters")."""
    return page.lower()


def _page_of_slug(slug: str) -> str | None:
    from inspector.dashboard.main import PAGES  # the page table; imported late (main imports this module)

    return next((name for name in PAGES if page_slug(name) == slug.lower()), None)

_LAST = "_url_last"  # the query this session wrote (or applied) last
#: Set when a link named a layer the model does not have: the page says so once.
URL_LAYER_REQUEST = "_url_layer_request"


def _to_bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


def _from_bool(value: Any) -> str:
    return "1" if value else "0"


@dataclass(frozen=True)
class Param:
    """One URL parameter of a page: the widget key it drives, its default (None: keep the session's
    value when the URL lacks it, and always write it) and how it is parsed/validated."""

    name: str
    key: str
    default: Any = None
    parse: Callable[[str], Any] = str
    dump: Callable[[Any], str] = str
    choices: tuple[Any, ...] | None = None  # accepted values; anything else in a URL is ignored


def _sort_param() -> Param:
    from inspector.dashboard.page_filters import SORTS

    to_url = {label: ("norm" if value else "input") for label, value in SORTS.items()}
    from_url = {v: k for k, v in to_url.items()}
    return Param("sort", "flt_sort", next(iter(SORTS)), parse=lambda s: from_url.get(s, ""),
                 dump=lambda v: to_url.get(v, "input"), choices=tuple(SORTS))


def _params() -> dict[str, tuple[Param, ...]]:
    from inspector.dashboard import views
    from inspector.dashboard.page_filters import CAPS
    from inspector.inputs import FIT_CHOICES, PREPROCESS_CHOICES
    from inspector.visualize import PREPROCESS, Objective

    return {
        "Filters": (
            Param("layer", "flt_layer"),
            Param("map", "flt_map", None, int),
            Param("stage", "flt_stage", "effective", choices=("effective", "depthwise", "pointwise", "kernel")),
            Param("norm", "flt_norm", views.NORMALISATIONS[0], choices=views.NORMALISATIONS),
            Param("cmap", "flt_cmap", views.CMAPS[0], choices=views.CMAPS),
            Param("rgb", "flt_rgb", False, _to_bool, _from_bool),
            Param("fold", "flt_fold_bn", False, _to_bool, _from_bool),
            _sort_param(),
            Param("cap", "flt_cap", views.DEFAULT_CAP, int, choices=CAPS),
            Param("grid", "flt_page", 1, int),
            Param("whole", "flt_whole", False, _to_bool, _from_bool),
            Param("mpage", "flt_mpage", 1, int),
        ),
        "Activations": (
            Param("layer", "act_layer"),
            Param("map", "act_map", None, int),
            Param("fold", "act_fold_bn", False, _to_bool, _from_bool),
            Param("pre", "act_pre", "auto", choices=PREPROCESS_CHOICES),
            Param("fit", "act_fit", "stretch", choices=FIT_CHOICES),
        ),
        "Visualize": (
            Param("layer", "vis_layer"),
            Param("maps", "vis_maps", "0-15"),
            Param("steps", "vis_steps", 256, int),
            Param("seed", "vis_seed", 0, int),
            Param("objective", "vis_objective", "channel", choices=tuple(str(o) for o in Objective)),
            Param("pre", "vis_pre", "auto", choices=tuple(p for p in PREPROCESS if p != "meanstd")),
        ),
        "Weights": (
            Param("layer", "w_layer"),
            Param("log", "w_log", False, _to_bool, _from_bool),
            Param("fold", "w_fold_bn", False, _to_bool, _from_bool),
        ),
        "Examples": (  # the scan's folder is not in the URL: it names a path on the server
            Param("layer", "ex_view_layer"),
            Param("sheet", "ex_view_page", 1, int),
        ),
        "Overview": (),
        "Export": (),
    }


PARAMS: dict[str, tuple[Param, ...]] = {}


def _table() -> dict[str, tuple[Param, ...]]:
    if not PARAMS:
        PARAMS.update(_params())
    return PARAMS


def _default_sample() -> str | None:
    from inspector.dashboard import default_model

    model = default_model()
    return model.name if model is not None else None


def current_query() -> dict[str, str]:
    """The view in session state as query parameters (defaults left out, layer and map always in)."""
    page = str(st.session_state.get("page", "Overview"))
    out = {"page": page_slug(page)}
    sample = st.session_state.get("src_sample")
    if st.session_state.get("src_kind") == "Sample model" and sample and sample != _default_sample():
        out["sample"] = str(sample)
    for p in _table().get(page, ()):
        if p.key not in st.session_state:
            continue
        value = st.session_state[p.key]
        if p.default is not None and value == p.default:
            continue
        if p.key == "flt_stage" and st.session_state.get("_flt_single_stage"):
            continue  # a layer with one stage: the selectbox is not drawn
        out[p.name] = p.dump(value)
    return out


def apply_url() -> None:
    """Write the URL's view into session state when the URL changed outside this session's control."""
    query = {k: st.query_params[k] for k in st.query_params}
    if query == st.session_state.get(_LAST):
        return
    st.session_state[_LAST] = query
    page = _page_of_slug(query.get("page", ""))
    if page is None:
        if not query:
            return  # a bare URL: keep whatever the session shows
        page = "Overview"
    st.session_state["page"] = page
    sample = query.get("sample")
    if sample is None and st.session_state.get("src_kind") == "Sample model":
        sample = _default_sample()
    if sample is not None:
        from inspector.dashboard.loading import sample_choices

        if sample in sample_choices():
            st.session_state["src_kind"] = "Sample model"
            st.session_state["src_sample"] = sample
    for p in _table().get(page, ()):
        raw = query.get(p.name)
        if raw is None:
            if p.default is not None:
                st.session_state[p.key] = p.default
            continue
        try:
            value = p.parse(raw)
        except ValueError:
            continue
        if p.choices is not None and value not in p.choices:
            continue
        if p.name == "layer":
            st.session_state[URL_LAYER_REQUEST] = value
            st.session_state.pop(p.key.replace("_layer", "_layer_search"), None)
        st.session_state[p.key] = value


def sync_url() -> None:
    """Put the current view in the URL (a new history entry when it changed)."""
    wanted = current_query()
    have = {k: st.query_params[k] for k in st.query_params}
    st.session_state[_LAST] = wanted
    if wanted != have:
        st.query_params.from_dict(wanted)


def open_view(page: str, **values: Any) -> None:
    """Switch to ``page`` with the given widget values (for click handlers, which run before the
    rerun: the only moment widget state may be set). ``values`` are widget keys -> values."""
    st.session_state["page"] = page
    for key, value in values.items():
        if key.endswith("_layer"):
            st.session_state.pop(key.replace("_layer", "_layer_search"), None)
        st.session_state[key] = value
