"""Visualize page: what the maps of one layer respond to, as a grid (feature visualization).

The maps chosen (``0-15``, ``3,7,12``; all maps of the layer share one batched optimisation) are
optimized in the background (:mod:`inspector.dashboard.visualizing`: progress, estimate, Cancel); the
grid, the activation curves, the comparison with natural photographs and the downloads appear when
the run ends, and stay available for these settings (also from a shared URL) while the app runs.
"""

from __future__ import annotations

import streamlit as st

from inspector.dashboard import jobs, loading, visualizing
from inspector.dashboard.widgets import layer_choice_ui, runnable_or_error
from inspector.errors import InspectorError
from inspector.records import ModelIndex

__all__ = ["visualize_page"]

_JOB = "_vis_job"  # not a vis_* key: main.persist_widget_state leaves it alone
DEFAULT_MAPS = "0-15"


def visualize_page(index: ModelIndex, key: loading.ModelKey) -> None:
    st.subheader("Visualize: the input each map responds to most")
    if not runnable_or_error(index, "to visualize its maps"):
        return
    left, right = st.columns([1, 3])
    with left:
        layer = layer_choice_ui(index, prefix="vis", every_layer=True)  # any layer's maps, e.g. a block's output
        if layer is None:
            return
        st.session_state.setdefault("vis_maps", DEFAULT_MAPS)
        text = st.text_input("Maps (e.g. 0-15 or 3,7,12)", key="vis_maps",
                             help="All chosen maps are optimized together, one image each, in batches of 64")
    with right:
        settings = visualizing.settings_ui(key, "vis")
        try:
            from inspector.service import visualization_maps

            maps = visualization_maps(loading.load_runnable_cached(*key), layer, None, text.strip() or DEFAULT_MAPS)
        except InspectorError as exc:
            st.error(str(exc))
            return
        vis_key = settings.key(key, layer, maps)
        done = visualizing.results().get(vis_key)
        job = visualizing.job_for(_JOB, vis_key)
        running = jobs.current(_JOB, key)
        busy = running is not None and running.running
        label = f"Visualize {len(maps)} map{'s' if len(maps) != 1 else ''} of {layer}"
        slot = st.empty()  # the button goes once its run starts: the polled progress below is not a full rerun
        if done is None and not busy and slot.button(label, key="vis_run", type="primary"):
            slot.empty()
            visualizing.start(_JOB, key, layer, maps, settings)
            busy = True
        elif busy and running is not None and running.tag != vis_key:
            st.caption(f"A visualization of {running.name} is running; it finishes (or is cancelled) first.")
        if busy:
            jobs.progress_ui(_JOB, cancel_label="Cancel", widget_key="vis_cancel")
            return
        if job is not None and job.error is not None:
            st.error(job.error)
        elif job is not None and job.cancelled:
            st.warning(f"Cancelled after {job.done} of {job.total} steps ({job.seconds:.0f} s).")
        if done is None:
            st.caption("Each image starts from noise and follows the gradient of the map's mean activation "
                       "(in a decorrelated Fourier basis, under small random shifts, scales and rotations), "
                       "then is compared with the bundled photographs and 200 random crops of them.")
            return
        visualizing.show_result(done, f"{layer.replace('/', '_')}_vis", "vis")
        st.dataframe(visualizing.result_table(done), hide_index=True, key="vis_table", width="stretch")
