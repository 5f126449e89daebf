"""The dataset-examples panel of the Filters page: map j's top crops, when a scan of this model exists.

``examples_panel(index, model_key, layer_path, map_index)`` is called by the Filters page next to the
kernels. It must cost nothing when no scan exists: it asks the examples cache for the model's
remembered content hash (a ``stat`` and one small read) and, finding none, shows a one-line hint
pointing to the Examples page. With a scan, it decodes only the k images of this map.
"""

from __future__ import annotations

import streamlit as st

from inspector.dashboard import loading, urlstate, views
from inspector.dashboard.widgets import show_picture
from inspector.records import ModelIndex

__all__ = ["examples_panel"]

_PANEL_K = 9


@st.cache_data(max_entries=64, show_spinner=False)
def _panel_png(key: loading.ModelKey, layer_path: str, map_index: int, stamp: float) -> tuple[bytes, int, str] | None:
    """(PNG, CSS width, caption) of the map's crops; ``stamp`` (the scan's time) refreshes it after a new scan."""
    from inspector.examples import cached_map_examples, crop_hits
    from inspector.render.examples import contact_sheet_figure

    found = cached_map_examples(key[0], layer_path, map_index, _PANEL_K, index=loading.load_index(*key))
    if found is None:
        return None
    hits, source, fit = found
    size = _scan_size(key[0], layer_path)
    crops = crop_hits(source, hits, size, fit)
    fig = contact_sheet_figure([(map_index, crops)], k=_PANEL_K, dpi=views.DPI)
    pic = views.figure_picture(fig)
    files = ", ".join(e.file for e, _ in crops[:3]) + (", ..." if len(crops) > 3 else "")
    return pic.png, pic.width, f"Top {len(crops)} images from {source.root.name}: {files}"


def _scan_size(model_path: str, layer_path: str) -> tuple[int, int]:
    from inspector.examples import latest_scan_meta

    meta = latest_scan_meta(model_path, layer_path)
    size = (meta or {}).get("size") or (0, 0)
    return int(size[0]), int(size[1])


def _open_examples_page(layer_path: str) -> None:
    # The scan's layer list too: left at its default (the first conv), the scan would not serve this map.
    urlstate.open_view("Examples", ex_view_layer=layer_path, ex_layers=[layer_path])
    st.session_state["_flt_full_rerun"] = True  # clicked inside the Filters page's fragment: leave the page


def examples_panel(index: ModelIndex, model_key: loading.ModelKey, layer_path: str, map_index: int) -> None:
    """Map ``map_index``'s cached dataset examples, or a hint to run a scan on the Examples page."""
    from inspector.examples import latest_scan_stamp

    stamp = latest_scan_stamp(model_key[0], layer_path)
    if stamp is None:
        st.caption("Dataset examples: no scan of this layer yet.")
        st.button("Find the images that excite this map (Examples page)", key=f"examples_open_{layer_path}",
                  on_click=_open_examples_page, args=(layer_path,))
        return
    shown = _panel_png(model_key, layer_path, map_index, stamp)
    if shown is None:
        st.caption("Dataset examples: none cached for this map.")
        return
    png, width, caption = shown
    show_picture(views.Picture(png, width), caption)
