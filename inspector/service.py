"""The layer under both front ends: what the CLI commands and the dashboard decide the same way.

    options       one rule per option (:data:`RULES`), :class:`StatsOptions`, the choice enums
    outputs       :func:`prepare_outputs`: every output path checked before a model is opened or run
    selection     :func:`inspector.selectors.plan_maps` (one layer policy, ``layer:0-7,12`` syntax)
    figures       :func:`write_filter_figure`: which filter figure a selection gets, and the file written
    runs          :func:`open_run`: model + runnable + fitted input for a forward pass
    stats         :func:`stats_payload`: the ``inspector stats --json`` object

A command is parse -> call here -> format (:mod:`inspector.formatting`). Nothing here prints, and heavy
modules (matplotlib, Keras) are imported inside the functions that need them, so ``inspector CMD
--help`` stays instant.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import SelectionError, describe_received
from .filters import BNFold, FilterSet, SortOrder, Stage, filters_for_map
from .inputs import FIT_CHOICES, PREPROCESS_CHOICES, Fit, Preprocess
from .outputs import FORMATS, FileFormat, Role, figure_format, formats_with, npz_path, prepare_file
from .records import LayerRecord, ModelIndex
from .selectors import LayerPlan, MapSelection, parse_layer_argument, parse_maps, plan_maps, select_layers
from .serialize import jsonable

__all__ = [
    "FIT_CHOICES",
    "FORMATS",
    "PREPROCESS_CHOICES",
    "RULES",
    "BNFold",
    "FigureOptions",
    "FileFormat",
    "Fit",
    "LayerPlan",
    "MapSelection",
    "MontageOptions",
    "MontageScale",
    "Outputs",
    "Preprocess",
    "Role",
    "Rule",
    "Scale",
    "SortOrder",
    "Stage",
    "StatsOptions",
    "StatsReport",
    "check_sample_index",
    "choices",
    "compute_stats",
    "filter_sets",
    "formats_with",
    "montage_pages",
    "open_run",
    "parse_layer_argument",
    "parse_maps",
    "plan_maps",
    "prepare_outputs",
    "select_layers",
    "stats_payload",
    "write_figure",
    "write_filter_figure",
    "write_montage",
]


class MontageScale(StrEnum):
    """Colour range of a whole-layer montage: the layer's, each page's, or each map's own."""

    LAYER = "layer"
    SHARED = "shared"
    PER_MAP = "per-map"


class Scale(StrEnum):
    """Colour scale of a kernel figure: one symmetric range for the figure, or one per kernel."""

    SHARED = "shared"
    PER_KERNEL = "per-kernel"


# -- option rules ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """What one option accepts. The CLI flag and the Python keyword share the rule, so ``inf`` or ``-1``
    gets the same answer from ``inspector stats``, the dashboard and :func:`StatsOptions`."""

    flag: str
    accepted: str
    check: Callable[[Any], bool]

    def __call__(self, value: Any) -> Any:
        if not self.check(value):
            raise SelectionError(f"{self.flag} is {self.accepted}. Received: {describe_received(value)}")
        return value


def _finite_at_least_zero(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


RULES: dict[str, Rule] = {
    # docs/stats.md: dead = norm 0 or norm < X × median, so X = 0 (only all-zero maps) is meaningful;
    # inf would call every map dead and NaN none, so both are refused.
    "dead_threshold": Rule("--dead-threshold", "a relative factor >= 0, e.g. 1e-3", _finite_at_least_zero),
    "dup_threshold": Rule("--dup-threshold", "a cosine similarity in (0, 1], e.g. 0.99",
                          lambda v: isinstance(v, (int, float)) and 0 < v <= 1),
    "near_zero": Rule("--near-zero", "a relative factor >= 0, e.g. 1e-6", _finite_at_least_zero),
    "near_zero_abs": Rule("--near-zero-abs", "an absolute value >= 0, e.g. 1e-8", _finite_at_least_zero),
    "bins": Rule("--bins", "a positive integer, e.g. 64", lambda v: isinstance(v, int) and v >= 1),
    "top": Rule("--top", "a positive integer, e.g. 6", lambda v: isinstance(v, int) and v >= 1),
}


@dataclass(frozen=True)
class StatsOptions:
    """Options of :func:`inspector.stats.layer_stats`, validated by :data:`RULES` on construction."""

    bins: int = 64
    near_zero: float = 1e-6
    near_zero_abs: float | None = None
    dead_threshold: float = 1e-3
    dup_threshold: float | None = 0.99  # None: skip the duplicate search
    fold_bn: bool = False

    def __post_init__(self) -> None:
        for name in ("dead_threshold", "dup_threshold", "near_zero", "near_zero_abs", "bins"):
            value = getattr(self, name)
            if value is not None or name not in ("dup_threshold", "near_zero_abs"):
                RULES[name](value)

    def kwargs(self) -> dict[str, Any]:
        return {"bins": self.bins, "near_zero": self.near_zero, "near_zero_abs": self.near_zero_abs,
                "dead_threshold": self.dead_threshold, "dup_threshold": self.dup_threshold,
                "fold_bn": self.fold_bn}


# -- outputs -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outputs:
    figure: Path | None = None
    npz: Path | None = None


def prepare_outputs(figure: str | os.PathLike[str] | None, npz: str | os.PathLike[str] | None) -> Outputs:
    """``-o`` and ``--npz`` checked before any model is opened or run: a bad path must not cost the
    slicing or a forward pass. The npz path gets its ``.npz`` suffix here, so it is reported as written."""
    if figure is not None:
        figure_format(figure, option="a figure")
    return Outputs(prepare_file(figure, option="the -o figure") if figure else None,
                   prepare_file(npz_path(npz), option="the --npz file") if npz else None)


def write_figure(fig: Any, path: str | os.PathLike[str], *, dpi: float | None = None) -> Path:
    """Any figure to its file, format by suffix (:func:`inspector.export.save_figure`)."""
    from .export import save_figure

    return save_figure(fig, path, dpi=dpi)


# -- filters -------------------------------------------------------------------------------------------------

def filter_sets(index: ModelIndex, step: LayerPlan, *, fold_bn: bool | str = False,
                sort: str | None = None) -> list[FilterSet]:
    """The FilterSets of one planned layer, in map order."""
    return [filters_for_map(step.layer, j, index=index, fold_bn=fold_bn, sort=sort, stage=step.stage)
            for j in step.maps]


@dataclass(frozen=True)
class FigureOptions:
    scale: Scale = Scale.SHARED
    max_kernels: int = 64
    page: int = 0
    dpi: int | None = None  # None: the figures' own (hi-DPI) default
    rgb: bool = False
    max_maps: int = 64  # rows of the maps × channels grid


def write_filter_figure(sets: Sequence[FilterSet], out: Path, options: FigureOptions) -> Path:
    """The figure a selection gets, written to ``out``: colour filters when asked, one page per map in a
    PDF, one map's kernel grid, colour filters when every map reads 3 colour channels, else a maps ×
    channels grid."""
    from .export import save_pdf_pages
    from .render.common import DEFAULT_DPI
    from .render.filters import is_rgb_filterset, plot_filterset, plot_layer, plot_rgb_filters

    dpi = options.dpi or DEFAULT_DPI
    grid: dict[str, Any] = {"scale": str(options.scale), "max_kernels": options.max_kernels, "page": options.page,
                            "dpi": dpi}
    if options.rgb:
        fig = plot_rgb_filters(list(sets), dpi=dpi)
    elif figure_format(out) is FileFormat.PDF and len(sets) > 1:
        save_pdf_pages((plot_filterset(fs, **grid) for fs in sets), out)  # one page in memory at a time
        return out
    elif len(sets) == 1:
        fig = plot_filterset(sets[0], **grid)
    elif all(is_rgb_filterset(fs) for fs in sets) and sets[0].n_inputs_total == 3:
        fig = plot_rgb_filters(list(sets), dpi=dpi)
    else:
        fig = plot_layer(list(sets), scale=str(options.scale), dpi=dpi, max_maps=min(len(sets), options.max_maps))
    return write_figure(fig, out, dpi=dpi)


@dataclass(frozen=True)
class MontageOptions:
    """A whole-layer montage (:func:`inspector.render.filters.layer_montage`) as the CLI and export ask for it."""

    page: int | None = None  # None: every page
    per_page: int | None = None  # None: the montage kind's own page size
    fold_bn: bool | str = False
    stage: str | None = None
    scale: str = "layer"  # one colour range for every page of the layer
    rgb: bool | None = None
    max_channels: int = 64  # maps × channels grids: input channels drawn per map
    dpi: int | None = None


def montage_pages(index: ModelIndex, layer: LayerRecord, options: MontageOptions) -> list[int]:
    """The pages a montage request draws (validated against the layer's page count)."""
    from .render.filters import montage_page_count

    count = montage_page_count(layer, index=index, stage=options.stage, per_page=options.per_page, rgb=options.rgb)
    if options.page is None:
        return list(range(count))
    if not 0 <= options.page < count:
        raise SelectionError(f"montage page {options.page + 1} does not exist for layer {layer.path!r}; accepted: "
                             f"1-{count}. Received: {options.page + 1}")
    return [options.page]


def write_montage(index: ModelIndex, layer: LayerRecord, out: Path, options: MontageOptions) -> list[Path]:
    """Write the montage pages of ``layer``: one PDF with a page each, or one image file a page
    (``name.png``, ``name_p2.png``, ...). Returns the files written."""
    from .export import save_pdf_pages
    from .render.common import DEFAULT_DPI
    from .render.filters import layer_montage

    dpi = options.dpi or DEFAULT_DPI
    pages = montage_pages(index, layer, options)

    def draw(page: int) -> Any:
        return layer_montage(index, layer, page=page, per_page=options.per_page, fold_bn=options.fold_bn,
                             stage=options.stage, scale=options.scale, rgb=options.rgb,
                             max_channels=options.max_channels, dpi=dpi)

    if figure_format(out) is FileFormat.PDF:
        save_pdf_pages((draw(p) for p in pages), out)  # one page in memory at a time
        return [out]
    written = []
    for n, page in enumerate(pages):
        path = out if n == 0 else out.with_name(f"{out.stem}_p{page + 1}{out.suffix}")
        written.append(write_figure(draw(page), path, dpi=dpi))
    return written


# -- runs (forward passes) ------------------------------------------------------------------------------------

def open_run(model: str | os.PathLike[str], source: str, *, preprocess: str | Preprocess = Preprocess.AUTO,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
             unsafe: bool = False, fit: str | Fit = Fit.STRETCH) -> tuple[ModelIndex, Any, Any]:
    """(index, runnable Keras model, input batch) for a forward pass; the caller closes the index.

    ``preprocess`` / ``fit`` as in :func:`inspector.inputs.load_input`."""
    from .inputs import input_spec_from_model, load_input
    from .loader import open_model
    from .runtime import load_runnable

    index = open_model(model)
    try:
        runnable = load_runnable(index, safe_mode=not unsafe)
        x = load_input(source, input_spec_from_model(runnable), preprocess=str(preprocess), mean=mean, std=std,
                       fit=str(fit))
    except BaseException:
        index.close()
        raise
    return index, runnable, x


def check_sample_index(sample: int, batch: int) -> int:
    if not 0 <= sample < batch:
        raise SelectionError(f"--sample-index must be in 0-{batch - 1}. Received: {sample}")
    return sample


# -- stats ----------------------------------------------------------------------------------------------------

#: Per-map arrays belong to ``stats --layer``; the whole-model object stays short without them.
_MODEL_TABLE_DROPS = ("map_norms", "bias", "bn_scale", "bn_bias", "effective_norms")


@dataclass
class StatsReport:
    """The statistics a ``stats`` run computed: one layer (``layer``) or every layer with weights."""

    model: str
    index: ModelIndex
    layer: Any = None  # LayerStats
    layers: list[Any] = field(default_factory=list)


def compute_stats(index: ModelIndex, model: str, layer: str | None, options: StatsOptions) -> StatsReport:
    from .stats import layer_stats

    if layer:
        return StatsReport(model, index, layer=layer_stats(index.layer(layer), index=index, **options.kwargs()))
    return StatsReport(model, index, layers=[layer_stats(rec, index=index, **options.kwargs())
                                             for rec in index.layers if rec.weights])


def stats_payload(report: StatsReport) -> dict[str, Any]:
    """The ``inspector stats --json`` object (NaN/Inf already null)."""
    index = report.index
    if report.layer is not None:
        return jsonable({"model": report.model, "format": str(index.format), "layer": report.layer.to_dict()})
    entries = [s.to_dict(histogram=False) for s in report.layers]
    for entry in entries:
        if entry["health"] is not None:
            for key in _MODEL_TABLE_DROPS:
                entry["health"].pop(key, None)
    return jsonable({"model": report.model, "format": str(index.format), "name": index.name, "layers": entries})


def choices(enum: Iterable[Any]) -> list[str]:
    """An option's accepted strings (argparse ``choices``, dashboard select boxes)."""
    return [str(v) for v in enum]


# -- feature visualization (CLI `visualize`, the dashboard's Visualize page and Filters panel) ----------------

def check_map_arguments(map_index: int | None, maps: str | None) -> None:
    """Exactly one of ``--map J`` and ``--maps SEL`` (checked before any model is opened)."""
    if map_index is None and maps is None:
        raise SelectionError("give the map to visualize; accepted: --map J or --maps SEL (e.g. '0-15'). "
                             "Received: neither")
    if map_index is not None and maps is not None:
        raise SelectionError(f"give --map or --maps, not both; accepted: --map J or --maps SEL. "
                             f"Received: --map {map_index} --maps {maps}")


def visualization_maps(model: Any, path: str, map_index: int | None, maps: str | None) -> list[int]:
    """The maps to visualize from ``--map J`` or ``--maps SEL`` (exactly one of them), range-checked."""
    from .visualize import layer_map_count

    check_map_arguments(map_index, maps)
    n_maps = layer_map_count(model, path)
    if map_index is not None:
        if not 0 <= map_index < n_maps:
            raise SelectionError(f"map {map_index} is out of range for layer {path!r}; valid maps are "
                                 f"0-{n_maps - 1} ({n_maps} maps). Received: {map_index}")
        return [map_index]
    assert maps is not None
    return list(parse_maps(maps).resolve(n_maps, layer=path))


def visualize_with_references(model: Any, path: str, maps: Sequence[int], *, reference: str | None = None,
                              size: int | None = None, preprocess: str = "auto",
                              mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                              progress: Callable[[int, int], bool | None] | None = None,
                              **options: Any) -> Any:
    """:func:`inspector.visualize.visualize` with its natural-image comparison set up.

    ``reference``: None for the bundled natural inputs (sample inputs and photographs), ``"none"`` for no
    comparison, or a folder. ``options`` go to ``visualize`` (objective, steps, seed, batch, lr, ...).
    """
    from .visualize import load_references, visualize

    natural: Any = None
    sources: list[str] = []
    if reference is None or str(reference).lower() != "none":
        natural, sources = load_references(reference, model, size=size, preprocess=preprocess, mean=mean, std=std)
    return visualize(model, path, list(maps), size=size, preprocess=preprocess, mean=mean, std=std,
                     reference=natural if natural is not None and len(natural) else None,
                     reference_sources=sources, progress=progress, **options)
