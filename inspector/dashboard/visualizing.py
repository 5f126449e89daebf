"""Feature visualization in the dashboard: runs as a background job, results kept per settings.

Shared by the Filters page's "what it responds to" panel (one map) and the Visualize page (a grid of a
layer's maps); neither imports the other. A run is a :class:`~inspector.dashboard.jobs.Job` calling
:func:`inspector.service.visualize_with_references` (the engine of ``inspector visualize``), so it
shows progress, an estimate and Cancel, and never blocks the app. Finished results are kept in one
store shared by all sessions (``st.cache_resource``), keyed by model file version, layer, maps and the
settings, so a result is drawn at once when its view is opened again (or from a shared URL after
someone ran it).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from inspector.dashboard import jobs, loading, views
from inspector.dashboard.widgets import show_picture
from inspector.records import ModelIndex
from inspector.visualize import DEFAULTS, PREPROCESS, Objective, Visualization

__all__ = ["Settings", "VisKey", "filters_panel", "job_for", "result_table", "results", "settings_ui", "show_result",
           "start"]

#: (model key, layer, maps, objective, steps, seed, size): what identifies a result.
VisKey = tuple[loading.ModelKey, str, tuple[int, ...], str, int, int, int | None, str]
#: The input ranges offered (meanstd needs numbers typed in: CLI only).
PRESETS = tuple(p for p in PREPROCESS if p != "meanstd")
_MAX_RESULTS = 64


@dataclass(frozen=True)
class Settings:
    objective: str = str(Objective.CHANNEL)
    steps: int = DEFAULTS.steps
    seed: int = DEFAULTS.seed
    size: int | None = None  # variable-size models only
    preprocess: str = "auto"

    def key(self, model: loading.ModelKey, layer: str, maps: Sequence[int]) -> VisKey:
        return (model, layer, tuple(int(m) for m in maps), self.objective, self.steps, self.seed, self.size,
                self.preprocess)


class _Store:
    """Finished visualizations, most recent last, bounded (thread-safe: jobs write from their thread)."""

    def __init__(self) -> None:
        self._items: OrderedDict[VisKey, Visualization] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: VisKey) -> Visualization | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: VisKey, vis: Visualization) -> None:
        with self._lock:
            self._items[key] = vis
            self._items.move_to_end(key)
            while len(self._items) > _MAX_RESULTS:
                self._items.popitem(last=False)


@st.cache_resource(show_spinner=False)
def results() -> _Store:
    return _Store()


def variable_size(key: loading.ModelKey) -> bool:
    """Whether the model's input has a free spatial size (then the user picks one)."""
    from inspector.inputs import input_spec_from_model

    spec = input_spec_from_model(loading.load_runnable_cached(*key))
    return any(d is None for d in spec.spatial)


def settings_ui(key: loading.ModelKey, prefix: str, *, objective: bool = True) -> Settings:
    """Steps, seed (and objective, size where they apply) as keyed widgets ``{prefix}_*``."""
    free_size = variable_size(key)
    cols = iter(st.columns(3 + int(free_size) + int(objective)))  # no empty column where a widget is absent
    st.session_state.setdefault(f"{prefix}_steps", DEFAULTS.steps)
    steps = next(cols).number_input("Steps", 1, 4096, step=64, key=f"{prefix}_steps",
                                    help="Optimisation steps (Adam); 256-512 is the usual range")
    seed = next(cols).number_input("Seed", 0, 2**31 - 1, step=1, key=f"{prefix}_seed",
                                   help="The same seed gives the same image")
    size: int | None = None
    if free_size:
        st.session_state.setdefault(f"{prefix}_size", DEFAULTS.image_side)
        size = int(next(cols).number_input("Size (px)", 8, 1024, step=16, key=f"{prefix}_size",
                                           help="This model takes any input size; the image is made at this one"))
    pre = str(next(cols).selectbox(
        "Input range", PRESETS, key=f"{prefix}_pre",
        help="What the model was trained on. auto: raw 0..255 if the model begins with Rescaling/Normalization, "
             "else 0..1; caffe: BGR minus the ImageNet mean (Keras VGG16/19, ResNet50); torch: ImageNet "
             "mean/std (DenseNet); tf: -1..1 (MobileNet, Inception, Xception)"))
    obj = str(Objective.CHANNEL)
    if objective:
        obj = str(next(cols).selectbox("Objective", [str(o) for o in Objective], key=f"{prefix}_objective",
                                       help="channel: mean of the map; neuron: its centre value; negative-*: "
                                            "the lowest values"))
    return Settings(obj, int(steps), int(seed), size, pre)


def start(state_key: str, key: loading.ModelKey, layer: str, maps: Sequence[int], settings: Settings) -> None:
    """Run a visualization of ``maps`` of ``layer`` in the background; the result goes to :func:`results`."""
    from inspector.service import visualize_with_references

    model = loading.load_runnable_cached(*key)  # in the script thread: a cached resource
    store, vis_key = results(), settings.key(key, layer, maps)
    job: jobs.Job[Visualization] = jobs.Job(f"{layer} {list(maps)}", key, unit="steps", tag=vis_key)
    # The bar already reads "3/16 steps": the text says what is optimized, not the step again.
    job.what = f"optimizing {_images(len(maps))} of {layer}"

    def work(progress: jobs.Progress) -> Visualization:
        def step(done: int, total: int) -> None:
            progress(done, total, "")

        vis = visualize_with_references(model, layer, maps, size=settings.size, objective=settings.objective,
                                        steps=settings.steps, seed=settings.seed, preprocess=settings.preprocess,
                                        progress=step)
        store.put(vis_key, vis)
        return vis

    jobs.start(state_key, job, work)


def job_for(state_key: str, vis_key: VisKey) -> jobs.Job[Visualization] | None:
    """The job under ``state_key`` if it is (or was) the run of exactly these settings."""
    job = jobs.current(state_key, vis_key[0])
    return job if job is not None and job.tag == vis_key else None


# -- the Filters page's panel -------------------------------------------------------------------------------

_PANEL_JOB = "_flt_vis_job"


def filters_panel(index: ModelIndex, key: loading.ModelKey, layer: str, j: int) -> None:
    """"What map j responds to": off by default (it needs TensorFlow and seconds to minutes of work);
    when on, the stored result for these settings, the running job's progress, or a Run button."""
    on = st.toggle(f"Feature visualization: the image that excites map {j} most", key="flt_vis_on",
                   help="The input image that drives this map highest, found by gradient ascent, with how "
                        "it compares with natural photographs")
    if not on:
        return
    if not index.has_architecture:
        st.info("This file stores weights only: a feature visualization needs the full model "
                "(.keras, .h5 or SavedModel).")
        return
    settings = settings_ui(key, "flt_vis", objective=False)
    vis_key = settings.key(key, layer, [j])
    done = results().get(vis_key)
    if done is not None:
        show_result(done, f"{layer.replace('/', '_')}_map{j}_vis", "flt_vis")
        return
    job = job_for(_PANEL_JOB, vis_key)
    if job is not None and job.running:
        jobs.progress_ui(_PANEL_JOB, cancel_label="Cancel", widget_key="flt_vis_cancel")
        return
    if job is not None and job.error is not None:
        st.error(job.error)
    other = jobs.current(_PANEL_JOB, key)
    busy = other is not None and other.running
    slot = st.empty()  # the button goes once its run starts (the progress polls, the panel is not redrawn)
    if slot.button(f"Visualize map {j}", key="flt_vis_run", disabled=busy, type="primary"):
        slot.empty()
        start(_PANEL_JOB, key, layer, [j], settings)
        jobs.progress_ui(_PANEL_JOB, cancel_label="Cancel", widget_key="flt_vis_cancel")
        return
    if busy and other is not None:
        st.caption(f"A visualization of {other.name} is running; it finishes (or is cancelled) first.")
        jobs.progress_ui(_PANEL_JOB, cancel_label="Cancel", widget_key="flt_vis_cancel")


def result_table(vis: Visualization) -> pd.DataFrame:
    """Per image: map, activation reached, best natural input and crop, and the ratio."""
    rows: dict[str, Any] = {"map": vis.map_index.astype(int), "activation": vis.activation}
    ref = vis.reference
    if ref is not None:
        rows["best natural image"] = ref.best_image
        rows[f"best of {ref.n_crops} crops"] = ref.best_crop
        ratios = vis.ratios()
        if ratios is not None:
            rows["× best natural"] = np.round(ratios, 2)
    return pd.DataFrame(rows)


def _npz_bytes(vis: Visualization) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **vis.to_arrays())
    return buf.getvalue()


def _images(n: int) -> str:
    return f"{n} image" + ("" if n == 1 else "s")


def summary_line(vis: Visualization) -> str:
    """'activation 3.2 = 2.7× the best of 13 natural images and 200 crops (1.19); 1 image, 256 steps, ...'."""
    ref = vis.reference
    line = f"{_images(len(vis.map_index))}, {vis.steps} steps, seed {vis.seed}, {vis.seconds:.0f} s"
    if ref is None or not ref.n_images:
        return line + "; no natural images to compare with"
    natural = f"the best of {ref.n_images} natural images and {ref.n_crops} crops"
    if len(vis.map_index) == 1:
        ratios = vis.ratios()
        reached = f"activation {vis.activation[0]:.4g}"
        if ratios is not None and np.isfinite(ratios[0]):
            return f"{reached} = {ratios[0]:.1f}× {natural} ({ref.best[0]:.4g}); " + line
        # A ratio with a value <= 0 means nothing (Visualization.ratios gives nan): both values, no ratio.
        return f"{reached}; {natural} reach {ref.best[0]:.4g} (no ratio: not both positive); " + line
    return f"compared with {natural}; " + line


def show_result(vis: Visualization, stem: str, widget_prefix: str) -> None:
    """The figure (the grid above the activation curve), the numbers and the downloads.

    Always the figure with the curve: it is at least 6 inches wide, so its title is not cut off (a grid
    of one image is narrower than its title) and a single map's curve shows the best natural value."""
    from inspector.render.visualize import visualization_figure

    fig = visualization_figure(vis)
    show_picture(views.figure_picture(fig), summary_line(vis))
    cols = st.columns(3)
    cols[0].download_button("Download PNG", lambda: views.figure_bytes(visualization_figure(vis), "png", dpi=200),
                            f"{stem}.png", "image/png", key=f"{widget_prefix}_dl_png", on_click="ignore")
    cols[1].download_button("Download PDF", lambda: views.figure_bytes(visualization_figure(vis), "pdf"),
                            f"{stem}.pdf", "application/pdf", key=f"{widget_prefix}_dl_pdf", on_click="ignore")
    cols[2].download_button("Download NPZ", lambda: _npz_bytes(vis), f"{stem}.npz", "application/octet-stream",
                            key=f"{widget_prefix}_dl_npz", on_click="ignore",
                            help="image (the model's input layout: the model on image[None] gives the activation), "
                                 "input_range, activation_trace, map_index, seed, steps")
