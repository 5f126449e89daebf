"""Filters page: the kernels feeding one output map, and which later kernels read that map.

Every widget is keyed (``flt_*``) and lives in ``st.session_state``, so the chosen layer, map and
options survive reruns and page switches. The per-map path (slice + figure + PNG) is cached with
``st.cache_data`` keyed by the model file version and the options, so stepping back to a map seen
before costs nothing.

Everything that depends on the output map (and the options) is one ``st.fragment``: a map step or an
option change reruns only that part, not the layer list, the graph or the rest of the app. The
fragment writes the URL itself (a fragment rerun does not reach ``main``'s ``sync_url``), and a click
that opens another layer asks for a full rerun. The **whole layer** toggle shows every map of the
layer at once (``render.filters.layer_montage``: colour images for RGB first layers, one grid for
depthwise kernels, a C_in x C_out matrix for 1x1 kernels), paged, with PNG/PDF downloads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict
from functools import partial

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from inspector.dashboard import loading, urlstate, views, visualizing
from inspector.dashboard.examples_panel import examples_panel
from inspector.dashboard.widgets import SORTS, fold_bn_ui, layer_choice_ui, map_choice_ui, show_picture
from inspector.filters import output_map_count
from inspector.records import ModelIndex

__all__ = ["CAPS", "SORTS", "filters_page"]

CAPS = (16, 32, 64, 128, 256)


@st.cache_data(max_entries=512, show_spinner=False)
def cached_filter_view(key: loading.ModelKey, layer: str, j: int, stage: str | None, fold_bn: bool,
                       sort: str | None, norm: str, cmap: str, cap: int, offset: int,
                       rgb: bool) -> views.FilterView:
    view_key = ("view", key, layer, j, stage, fold_bn, sort, norm, cmap, cap, offset, rgb)
    _remember(view_key)
    return PREFETCH.take(view_key, lambda: _filter_view(key, layer, j, stage, fold_bn, sort, norm, cmap, cap,
                                                        offset, rgb))


#: Views already made for st.cache_data (most recent last): the map just left is not prepared again in
#: the background, so back-to-back "next" clicks wait only for the next map, never behind the previous one.
_MADE: OrderedDict[tuple[object, ...], None] = OrderedDict()
_MADE_LOCK = threading.Lock()


def _remember(view_key: tuple[object, ...]) -> None:
    with _MADE_LOCK:
        _MADE[view_key] = None
        _MADE.move_to_end(view_key)
        while len(_MADE) > 400:  # a little under cached_filter_view's max_entries
            _MADE.popitem(last=False)


def _made(view_key: tuple[object, ...]) -> bool:
    with _MADE_LOCK:
        return view_key in _MADE


def _filter_view(key: loading.ModelKey, layer: str, j: int, stage: str | None, fold_bn: bool,
                 sort: str | None, norm: str, cmap: str, cap: int, offset: int, rgb: bool) -> views.FilterView:
    index = loading.load_index(*key)
    layer_range = cached_layer_range(key, layer, fold_bn, stage) if norm == "layer" else None
    return views.filter_view(index, layer, j, stage=stage, fold_bn=fold_bn, sort=sort, norm=norm, cmap=cmap,
                             cap=cap, offset=offset, rgb=rgb, layer_range=layer_range)


#: Neighbouring maps (next, then previous) are prepared in the background after each run, so
#: "next ▶" / "◀ prev" find their grid, consumers and consumer grids ready (or being made).
PREFETCH = loading.Prefetcher()


def _prefetch_neighbours(key: loading.ModelKey, layer: str, j: int, count: int, stage: str | None,
                         fold_bn: bool, sort: str | None, norm: str, cmap: str, cap: int, offset: int,
                         rgb: bool) -> None:
    layer_range = cached_layer_range(key, layer, fold_bn, stage) if norm == "layer" else None
    index = loading.load_index(*key)  # here: the worker thread has no Streamlit script context
    for n in (j + 1, j - 1):
        if not 0 <= n < count or _made(("view", key, layer, n, stage, fold_bn, sort, norm, cmap, cap, offset, rgb)):
            continue

        def work(n: int = n) -> dict[tuple[object, ...], object]:
            out: dict[tuple[object, ...], object] = {
                ("view", key, layer, n, stage, fold_bn, sort, norm, cmap, cap, offset, rgb): views.filter_view(
                    index, layer, n, stage=stage, fold_bn=fold_bn, sort=sort, norm=norm, cmap=cmap, cap=cap,
                    offset=offset, rgb=rgb, layer_range=layer_range)}
            rows = views.consumer_rows(index, layer, n, stage=stage)
            out[("consumers", key, layer, n, stage)] = rows
            for row in rows[0]:
                fig = views.consumer_figure(index, layer, n, row.consumer, stage=stage, cap=cap, cmap=cmap)
                out[("png", key, layer, n, stage, row.consumer, cap, cmap)] = \
                    None if fig is None else views.figure_picture(fig)
            return out

        _remember(("consumer pictures", key, layer, n, stage, cap, cmap))
        PREFETCH.submit(("view", key, layer, n, stage, fold_bn, sort, norm, cmap, cap, offset, rgb),
                        [("consumers", key, layer, n, stage)], work)


@st.cache_data(max_entries=64, show_spinner="Reading the layer's range…")
def cached_layer_range(key: loading.ModelKey, layer: str, fold_bn: bool, stage: str | None) -> float:
    """max |value| of what the layer's grids draw with these options (effective kernels of a separable
    stage, BN-folded kernels, ...), for 'shared per layer' scaling and the montage."""
    return views.layer_range(loading.load_index(*key), layer, fold_bn=fold_bn, stage=stage)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_svg(key: loading.ModelKey, layer: str, j: int, stage: str | None, fold_bn: bool,
               sort: str | None, norm: str, cmap: str, cap: int, offset: int, rgb: bool) -> bytes:
    view = cached_filter_view(key, layer, j, stage, fold_bn, sort, norm, cmap, cap, offset, rgb)
    layer_range = cached_layer_range(key, layer, fold_bn, stage) if norm == "layer" else None
    return views.filter_svg(view.filters, start=offset, cap=cap, norm=norm, cmap=cmap, rgb=view.rgb,
                            layer_range=layer_range)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_npz(key: loading.ModelKey, layer: str, j: int, stage: str | None, fold_bn: bool,
               sort: str | None) -> bytes:
    view = cached_filter_view(key, layer, j, stage, fold_bn, sort, "map", "RdBu_r", 1, 0, False)
    return views.filter_npz(view.filters, source=key[0])


@st.cache_data(max_entries=128, show_spinner=False)
def cached_consumer_png(key: loading.ModelKey, layer: str, j: int, stage: str | None, consumer: str,
                        cap: int, cmap: str) -> views.Picture | None:
    def make() -> views.Picture | None:
        return PREFETCH.take(png_key, lambda: _consumer_picture(loading.load_index(*key), layer, j, stage, consumer,
                                                                cap, cmap))

    png_key = ("png", key, layer, j, stage, consumer, cap, cmap)
    _remember(png_key)
    return ALONGSIDE.take(png_key, make)


def _consumer_picture(index: ModelIndex, layer: str, j: int, stage: str | None, consumer: str, cap: int,
                      cmap: str) -> views.Picture | None:
    fig = views.consumer_figure(index, layer, j, consumer, stage=stage, cap=cap, cmap=cmap)
    return None if fig is None else views.figure_picture(fig)


#: The consumer grids of the view being drawn are made in this thread while the script draws the map's
#: own grid (an option change, e.g. the colour map, needs both): the two figures are drawn side by side.
ALONGSIDE = loading.Prefetcher()


def _consumer_work(png_key: tuple[object, ...], index: ModelIndex, layer: str, j: int, stage: str | None,
                   consumer: str, cap: int, cmap: str) -> dict[tuple[object, ...], object]:
    return {png_key: _consumer_picture(index, layer, j, stage, consumer, cap, cmap)}


def _start_consumer_pictures(index: ModelIndex, key: loading.ModelKey, layer: str, j: int, stage: str | None,
                             cap: int, cmap: str) -> None:
    group = ("consumer pictures", key, layer, j, stage, cap, cmap)
    if _made(group):  # made (or being made) by the neighbour prefetch, or drawn before
        return
    _remember(group)
    rows, _ = cached_consumers(key, layer, j, stage)
    for row in rows:
        png_key = ("png", key, layer, j, stage, row.consumer, cap, cmap)
        if not _made(png_key):
            ALONGSIDE.submit(png_key, [], partial(_consumer_work, png_key, index, layer, j, stage, row.consumer,
                                                  cap, cmap))


@st.cache_data(max_entries=64, show_spinner=False)
def cached_montage_info(key: loading.ModelKey, layer: str, stage: str | None) -> views.MontageInfo:
    return views.montage_info(loading.load_index(*key), layer, stage=stage)


@st.cache_data(max_entries=64, show_spinner="Drawing the whole layer…")
def cached_montage(key: loading.ModelKey, layer: str, page: int, stage: str | None, fold_bn: bool, norm: str,
                   cmap: str) -> views.Picture:
    """One page of the whole-layer montage, per (model, layer, page, options)."""
    limit = cached_layer_range(key, layer, fold_bn, stage) if norm == "layer" else None
    return views.montage_picture(loading.load_index(*key), layer, page=page, stage=stage, fold_bn=fold_bn,
                                 norm=norm, cmap=cmap, layer_limit=limit)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_montage_file(key: loading.ModelKey, layer: str, page: int, stage: str | None, fold_bn: bool,
                        norm: str, cmap: str, fmt: str) -> bytes:
    limit = cached_layer_range(key, layer, fold_bn, stage) if norm == "layer" else None
    return views.montage_file(loading.load_index(*key), layer, fmt, page=page, stage=stage, fold_bn=fold_bn,
                              norm=norm, cmap=cmap, layer_limit=limit)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_dot(key: loading.ModelKey, layer: str) -> str:
    return views.neighbourhood_dot(loading.load_index(*key), layer)


@st.cache_data(max_entries=256, show_spinner=False)
def cached_consumers(key: loading.ModelKey, layer: str, j: int, stage: str | None,
                     ) -> tuple[list[views.ConsumerRow], list[tuple[str, str]]]:
    return PREFETCH.take(("consumers", key, layer, j, stage),
                         lambda: views.consumer_rows(loading.load_index(*key), layer, j, stage=stage))


_FULL_RERUN = "_flt_full_rerun"  # a click inside the fragment opened another layer or page


def _open_consumer(table_key: str, rows: list[views.ConsumerRow]) -> None:
    """A click on a "who reads" row: open the consumer at the output map that reads this one most."""
    picked = st.session_state[table_key].selection.rows
    if picked:
        row = rows[picked[0]]
        urlstate.open_view("Filters", flt_layer=row.consumer, flt_map=row.top_map, flt_page=1)
        st.session_state[_FULL_RERUN] = True


def filters_page(index: ModelIndex, key: loading.ModelKey) -> None:
    st.subheader("Filters: the kernels feeding one output map")
    left, right = st.columns([1, 3])
    with left:
        layer = layer_choice_ui(index)
        if layer is None:
            return
    with right, st.expander(f"Graph around {layer}", expanded=True):
        st.graphviz_chart(cached_dot(key, layer), width="content")
        st.caption("Boxes: layers with kernels; arrows: data flow, skip connections included.")
    _map_part(index, key, layer, left, right)


@st.fragment
def _map_part(index: ModelIndex, key: loading.ModelKey, layer: str, left: DeltaGenerator,
              right: DeltaGenerator) -> None:
    """The map-dependent part of the page: a map step or an option change reruns only this."""
    if st.session_state.pop(_FULL_RERUN, False):
        st.rerun()  # another layer or page was opened from inside the fragment
    try:
        _map_part_body(index, key, layer, left, right)
    except Exception as exc:  # a fragment rerun does not pass main's guard: one line, never a traceback
        st.error(views.error_text(exc))
    finally:
        urlstate.sync_url()  # also on a fragment rerun: the URL names what is on screen


#: Widgets of the fragment that are not drawn in every view (map widgets under "whole layer", the grid
#: page, ...): their values are written back each fragment run, or Streamlit would drop them.
_KEEP = ("flt_map", "flt_page", "flt_mpage", "flt_rgb", "flt_sort", "flt_cap", "flt_stage", "flt_vis_steps",
         "flt_vis_seed", "flt_vis_size", "flt_vis_pre")


def _map_part_body(index: ModelIndex, key: loading.ModelKey, layer: str, left: DeltaGenerator,
                   right: DeltaGenerator) -> None:
    for name in _KEEP:
        if name in st.session_state:
            st.session_state[name] = st.session_state[name]
    with left:
        whole = st.toggle("Whole layer (every map)", key="flt_whole",
                          help="Every map of the layer at once: colour images for a first layer, one grid of "
                               "depthwise kernels, 1×1 kernels as an input channel × output map matrix")
        stages = views.stage_choices(index, layer)
        st.session_state["_flt_single_stage"] = len(stages) <= 1
        if len(stages) > 1 and st.session_state.get("flt_stage") not in stages:
            st.session_state["flt_stage"] = stages[0]
        stage = st.selectbox("Stage", stages, key="flt_stage") if len(stages) > 1 else None
        count = output_map_count(index.layer(layer), stage)
        j = 0 if whole else map_choice_ui(count)
        norm = st.selectbox("Normalisation", views.NORMALISATIONS, key="flt_norm",
                            format_func=lambda n: {"map": "shared per map" if not whole else "shared per page",
                                                   "kernel": "per kernel" if not whole else "per map",
                                                   "layer": "shared per layer"}[n])
        cmap = st.selectbox("Colour map", views.CMAPS, key="flt_cmap")
        fold_bn = fold_bn_ui(key, layer, stage, "flt_fold_bn")
        if whole:
            _montage(key, layer, stage, fold_bn, norm, cmap, right)
            return
        can_rgb = views.can_show_rgb(index, layer)
        # The toggle keeps its value across layers; it only applies where the layer reads 3 channels.
        rgb = st.toggle("RGB view (colour input)", key="flt_rgb", disabled=not can_rgb,
                        help="Show the 3 input-channel kernels of a first layer as one colour filter") and can_rgb
        sort = SORTS[st.selectbox("Order of input channels", list(SORTS), key="flt_sort")]
        st.session_state.setdefault("flt_cap", views.DEFAULT_CAP)
        cap = int(st.select_slider("Kernels per grid", CAPS, key="flt_cap"))
    with right:
        n_inputs, per_page = _grid_size(key, layer, j, stage, cap)
        offset = 0
        if n_inputs > per_page and not rgb:
            pages = (n_inputs + per_page - 1) // per_page
            current = int(st.session_state.get("flt_page", 1))
            st.session_state["flt_page"] = min(max(current, 1), pages)
            page = st.number_input(f"Grid page (1–{pages}, {per_page} kernels each)", 1, pages, step=1,
                                   key="flt_page")
            offset = (int(page) - 1) * per_page
        _start_consumer_pictures(index, key, layer, j, stage, cap, cmap)
        view = cached_filter_view(key, layer, j, stage, fold_bn, sort, norm, cmap, cap, offset, rgb)
        fs = view.filters
        shown = "RGB filter of 3 input channels" if view.rgb else (
            f"{view.n_shown} of {fs.n_inputs} kernels shown (input channels "
            f"{', '.join(str(int(c)) for c in fs.input_channels[view.shown][:8])}"
            f"{', …' if view.n_shown > 8 else ''})")
        show_picture(views.Picture(view.png, view.width), f"{layer} · map {j} of {view.n_maps} · {shown}")
        for note in view.notes:
            st.caption(note)
        stats = st.columns(4)
        stats[0].metric("Bias", "none" if fs.bias is None else f"{fs.bias:.4g}")
        stats[1].metric(f"Input channels read (of {fs.n_inputs_total or fs.n_inputs})", f"{fs.n_inputs}")
        stats[2].metric("Kernel L2 norm", f"{float((fs.norms ** 2).sum() ** 0.5):.4g}")
        stats[3].metric("BN folded", "yes" if fs.bn_folded else "no")
        _downloads(key, layer, j, stage, fold_bn, sort, norm, cmap, cap, offset, rgb)
        st.markdown(f"**What map {j} responds to** — the photos that excite it most, and the image that "
                    "excites it most")
        examples_panel(index, key, layer, j)
        visualizing.filters_panel(index, key, layer, j)
        with st.expander(f"Norm per input channel ({fs.n_inputs})", expanded=False):
            st.dataframe(pd.DataFrame({"input channel": fs.input_channels, "L2 norm": fs.norms}),
                         hide_index=True, height=240, key="flt_norms_table")
        _consumers(key, layer, j, stage, cap, cmap)
    _prefetch_neighbours(key, layer, j, count, stage, fold_bn, sort, norm, cmap, cap, offset, rgb)


def _montage(key: loading.ModelKey, layer: str, stage: str | None, fold_bn: bool, norm: str, cmap: str,
             right: DeltaGenerator) -> None:
    """The whole-layer montage, paged, with PNG (200 dpi) and PDF downloads of the page shown."""
    info = cached_montage_info(key, layer, stage)
    with right:
        page = 0
        if info.pages > 1:
            current = int(st.session_state.get("flt_mpage", 1))
            st.session_state["flt_mpage"] = min(max(current, 1), info.pages)
            page = int(st.number_input(f"Montage page (1–{info.pages})", 1, info.pages, step=1,
                                       key="flt_mpage")) - 1
        pic = cached_montage(key, layer, page, stage, fold_bn, norm, cmap)
        show_picture(pic, f"{layer} · whole layer ({info.n_maps} maps) · {info.description}"
                          + (f" · page {page + 1} of {info.pages}" if info.pages > 1 else ""))
        stem = f"{layer.replace('/', '_')}_layer" + (f"_p{page + 1}" if info.pages > 1 else "")
        cols = st.columns(2)
        cols[0].download_button(
            "Download montage PNG", lambda: cached_montage_file(key, layer, page, stage, fold_bn, norm, cmap, "png"),
            f"{stem}.png", "image/png", key="flt_dl_montage_png", on_click="ignore")
        cols[1].download_button(
            "Download montage PDF", lambda: cached_montage_file(key, layer, page, stage, fold_bn, norm, cmap, "pdf"),
            f"{stem}.pdf", "application/pdf", key="flt_dl_montage_pdf", on_click="ignore")
        st.caption("Turn “Whole layer” off to step through single maps, their consumers and downloads.")


@st.cache_data(max_entries=256, show_spinner=False)
def _grid_size(key: loading.ModelKey, layer: str, j: int, stage: str | None, cap: int) -> tuple[int, int]:
    """(kernels in the map's grid before the cap, kernels per grid page): sets the grid-page range
    (uses the cached view)."""
    return views.grid_extent(loading.load_index(*key), layer, j, stage=stage, cap=cap)


def _downloads(key: loading.ModelKey, layer: str, j: int, stage: str | None, fold_bn: bool,
               sort: str | None, norm: str, cmap: str, cap: int, offset: int, rgb: bool) -> None:
    """PNG = the image on screen; SVG = the annotated shared figure; NPZ = the arrays. SVG and NPZ
    are callables, so they are built only when their button is clicked."""
    view = cached_filter_view(key, layer, j, stage, fold_bn, sort, norm, cmap, cap, offset, rgb)
    stem = f"{layer.replace('/', '_')}_map{j}"
    cols = st.columns(3)
    cols[0].download_button("Download PNG", view.png, f"{stem}.png", "image/png", key="flt_dl_png",
                            on_click="ignore")
    cols[1].download_button(
        "Download SVG", lambda: cached_svg(key, layer, j, stage, fold_bn, sort, norm, cmap, cap, offset, rgb),
        f"{stem}.svg", "image/svg+xml", key="flt_dl_svg", on_click="ignore")
    cols[2].download_button(
        "Download NPZ", lambda: cached_npz(key, layer, j, stage, fold_bn, sort),
        f"{stem}.npz", "application/octet-stream", key="flt_dl_npz", on_click="ignore")


def _consumers(key: loading.ModelKey, layer: str, j: int, stage: str | None, cap: int, cmap: str) -> None:
    st.markdown(f"**Who reads map {j}** — the slices of later kernels that read this map")
    rows, stops = cached_consumers(key, layer, j, stage)
    if rows:
        st.caption("Click a row to open that layer at the output map that reads this map most strongly.")
        # One key per view: a clicked row must not stay selected in the next view's table.
        table_key = f"flt_consumers_table_{layer}_{stage}_{j}"
        st.dataframe(pd.DataFrame([asdict(r) for r in rows]), hide_index=True, key=table_key,
                     on_select=partial(_open_consumer, table_key, rows), selection_mode="single-row",
                     width="stretch",
                     column_order=["consumer", "top_map", "strongest", "via", "input_channel", "n_outputs",
                                   "kind", "notes"],
                     column_config={
                         "consumer": st.column_config.TextColumn("consumer", width="medium"),
                         "top_map": st.column_config.NumberColumn("opens map", width="small"),
                         "strongest": st.column_config.TextColumn("strongest maps (norm)", width="medium"),
                         "via": st.column_config.TextColumn("via", width="medium"),
                         "input_channel": st.column_config.NumberColumn("as input channel", width="small"),
                         "n_outputs": st.column_config.NumberColumn("its maps", width="small"),
                     })
        for row in rows:
            pic = cached_consumer_png(key, layer, j, stage, row.consumer, cap, cmap)
            if pic is not None:
                show_picture(pic, f"{row.consumer}: the kernels through which map {j} reaches its output maps")
    else:
        st.caption("No later layer with kernels reads this map exactly.")
    for where, why in stops:
        st.caption(f"stopped at `{where}`: {why}")
