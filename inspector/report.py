"""A printable report of one model: every section built layer by layer, written as HTML or PDF.

:func:`report_sections` yields :class:`Section` objects in reading order (model header, layer table,
parameter chart, then one section per selected filter layer, then the optional input / feature
visualization / dataset-example sections). Each section carries its figures (matplotlib ``Figure``
objects, built only when the section is reached), its tables and its numbers; the writer in
:mod:`inspector.render.report` turns a section into HTML or PDF pages and drops it before the next one
is built, so a ResNet50 report holds one layer's kernels and figures at a time.

:func:`write_report` is the one entry point both front ends call (``inspector report`` and the
dashboard's "Download report" button): the file, plus a JSON sidecar holding every number and the
settings used.

Per filter layer: weight statistics and filter health (:func:`inspector.stats.layer_stats`: norms,
dead maps, near-duplicate maps), the map-norm chart, and its kernels: a first layer reading 3
channels as colour images (every map, up to ``max_maps``), any other layer as its ``top_maps``
strongest maps (by kernel norm, BN-folded when asked) with their strongest input-channel kernels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .errors import MissingDependencyError, SelectionError, describe_received
from .records import LayerRecord, ModelIndex

__all__ = [
    "REPORT_FORMATS",
    "ReportOptions",
    "Section",
    "Table",
    "report_sections",
    "sidecar_path",
    "write_report",
]

REPORT_FORMATS = (".html", ".htm", ".pdf")


@dataclass(frozen=True)
class ReportOptions:
    """What a report holds. ``layers`` uses the selector syntax of :func:`inspector.selectors.select_layers`."""

    layers: str | None = None  # None: every filter layer
    input: str | None = None  # an image / .npy / "sample": activations and a decomposition per layer
    examples: str | None = None  # a folder of images: dataset examples (when inspector.examples exists)
    visualize: bool = False
    visualize_layer: str | None = None  # None: the last selected layer
    visualize_maps: int = 4
    visualize_steps: int = 64
    top_maps: int = 8  # strongest maps drawn per layer (colour first layers: up to max_rgb_maps)
    max_channels: int = 16  # input-channel kernels drawn per map
    max_rgb_maps: int = 64
    fold_bn: bool = False
    dpi: int = 100
    preprocess: str = "auto"
    fit: str = "stretch"
    unsafe: bool = False

    def __post_init__(self) -> None:
        for name in ("top_maps", "max_channels", "max_rgb_maps", "dpi", "visualize_maps", "visualize_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SelectionError(f"report option {name.replace('_', '-')} is a positive integer. "
                                     f"Received: {describe_received(value)}")


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    right: tuple[int, ...] = ()  # right-aligned (numeric) columns


@dataclass
class Section:
    """One part of the report. ``figures`` are (caption, Figure) pairs; ``data`` goes to the JSON sidecar."""

    key: str  # anchor and JSON key
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    level: int = 2


def sidecar_path(out: str | os.PathLike[str]) -> Path:
    """``report.html`` -> ``report.json``."""
    return Path(out).with_suffix(".json")


def _examples_module() -> Any:
    """The dataset-examples module, when this version has it."""
    try:
        from . import examples
    except ImportError:
        return None
    return examples


def check_options(index: ModelIndex, options: ReportOptions) -> list[LayerRecord]:
    """Everything that can be refused before any work: the layer selection and the optional parts."""
    from .selectors import select_layers

    layers = select_layers(index, options.layers)
    if not layers:
        raise SelectionError(f"the report's layer selection names no layer with kernels; accepted: a layer path, "
                             f"a glob such as 'block*_conv*', or nothing for every filter layer. Received: "
                             f"{describe_received(options.layers)}")
    if options.examples is not None and _examples_module() is None:
        raise MissingDependencyError(f"dataset examples are not available in this version (no inspector.examples); "
                                     f"leave out --examples. Received: --examples {options.examples}")
    if (options.input or options.visualize or options.examples) and not index.has_architecture:
        from .errors import ModelNotRunnableError

        raise ModelNotRunnableError(f"--input, --visualize and --examples run the model, and this file stores "
                                    f"weights only; give the .keras/.h5 model or leave them out. Received: "
                                    f"{index.source}")
    return layers


# -- sections ---------------------------------------------------------------------------------------------

def _count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def header_section(index: ModelIndex, options: ReportOptions, n_layers: int) -> Section:
    from .formatting import shape_text

    rows = [["Source", index.source], ["Format", str(index.format)], ["Written by", index.writer or "unknown"],
            ["Layers", f"{len(index.layers):,} ({len(index.filter_layers()):,} with kernels, {n_layers} in this "
                       f"report)"],
            ["Parameters", f"{index.total_params:,}"], ["Trainable", _count(index.trainable_params)],
            ["Non-trainable", _count(index.non_trainable_params)],
            ["Weights", f"{index.total_bytes / 1e6:.2f} MB"],
            ["Inputs", ", ".join(shape_text(s) for s in index.input_shapes) or "unknown"]]
    settings = {k: v for k, v in asdict(options).items()}
    paragraphs = [f"filter-inspector {__version__} report of {index.name or 'a model'}."]
    if not index.has_architecture:
        paragraphs.append("This file stores weights only: layer kinds are inferred from weight names and shapes.")
    paragraphs += [f"Warning: {w}" for w in index.warnings]
    data = {"name": index.name, "source": index.source, "format": str(index.format), "writer": index.writer,
            "total_params": index.total_params, "trainable_params": index.trainable_params,
            "non_trainable_params": index.non_trainable_params, "total_bytes": index.total_bytes,
            "has_architecture": index.has_architecture, "warnings": list(index.warnings), "settings": settings,
            "version": __version__}
    return Section("model", f"Model {index.name or ''}".strip(), paragraphs,
                   [Table(["", ""], rows)], data=data, level=1)


def layer_table_section(index: ModelIndex) -> Section:
    from .formatting import shape_text

    rows, data = [], []
    for rec in index.layers:
        weights = " ".join(f"{w.name}[{', '.join(map(str, w.shape))}]" for w in rec.weights)
        kind = f"{rec.kind}{'?' if rec.kind_inferred else ''}"
        rows.append([rec.path, rec.class_name or "?", kind, shape_text(rec.output_shape), f"{rec.params:,}", weights])
        data.append({"path": rec.path, "class_name": rec.class_name, "kind": str(rec.kind), "params": rec.params,
                     "trainable_params": rec.trainable_params,
                     "weights": [{"name": w.name, "shape": list(w.shape), "dtype": w.dtype} for w in rec.weights]})
    total = (f"Total params: {index.total_params:,}; trainable: {_count(index.trainable_params)}; "
             f"non-trainable: {_count(index.non_trainable_params)}.")
    return Section("layers", "Layers", [total],
                   [Table(["Layer (path)", "Class", "Kind", "Output shape", "Params", "Weights"], rows, (4,))],
                   data={"layers": data})


def parameters_section(index: ModelIndex, dpi: int) -> Section:
    from .render.report import parameter_chart

    weighted = [rec for rec in index.layers if rec.params]
    by_kind: dict[str, int] = {}
    for rec in weighted:
        by_kind[str(rec.kind)] = by_kind.get(str(rec.kind), 0) + rec.params
    text = ", ".join(f"{kind} {count:,} ({100 * count / max(index.total_params, 1):.1f}%)"
                     for kind, count in sorted(by_kind.items(), key=lambda kv: -kv[1]))
    figures = [("Parameters per layer (model order; the largest layers when there are many).",
                parameter_chart(index, dpi=dpi))] if weighted else []
    return Section("parameters", "Parameters", [f"By kind: {text}." if text else "No layer holds weights."],
                   figures=figures, data={"by_kind": by_kind})


def _stats_table(ls: Any) -> Table:
    from .formatting import num_text

    rows = []
    for t in [*ls.tensors, ls.combined]:
        rows.append([t.name, "×".join(map(str, t.shape)) or "scalar", num_text(t.min), num_text(t.max),
                     num_text(t.mean), num_text(t.std), num_text(t.l2), f"{100 * t.zero_fraction:.2f}",
                     str(t.nonfinite)])
    return Table(["Weight", "Shape", "Min", "Max", "Mean", "Std", "L2", "Zeros %", "NaN/Inf"], rows,
                 tuple(range(2, 9)))


def _health_paragraphs(h: Any) -> list[str]:
    from .formatting import index_text

    out = [f"{h.n_maps} output maps, {h.n_inputs} input channels, groups {h.groups}"
           + (f"; BN folded: {h.bn_layer}" if h.bn_layer else "") + "."]
    dead = (f"Dead maps: {len(h.dead)} ({index_text(h.dead.tolist(), 20)})" if len(h.dead) else "Dead maps: none")
    out.append(f"{dead} — kernel norm below {h.dead_threshold:g} × median ({h.dead_cutoff:.4g}).")
    if h.dup_threshold is not None:
        pairs = ", ".join(f"{p.a}~{p.b} ({p.similarity:+.3f})" for p in h.duplicates[:10])
        more = f" and {h.duplicate_pair_count - 10} more" if h.duplicate_pair_count > 10 else ""
        out.append(f"Near-duplicate map pairs (|cosine| ≥ {h.dup_threshold:g}): {h.duplicate_pair_count}"
                   + (f": {pairs}{more}" if pairs else "") + ".")
    if len(h.nonfinite):
        out.append(f"Maps with NaN/Inf weights: {index_text(h.nonfinite.tolist(), 20)}.")
    out += [f"Note: {n}" for n in h.notes]
    return out


def _kernel_figure(index: ModelIndex, rec: LayerRecord, health: Any, options: ReportOptions) -> tuple[str, Any]:
    from .filters import filters_for_map
    from .render.filters import (
        MontageKind,
        is_rgb_filterset,
        layer_montage,
        montage_kind,
        montage_page_count,
        plot_layer,
        plot_rgb_filters,
    )

    fold = options.fold_bn and health.bn_layer is not None
    first = filters_for_map(rec, 0, index=index)
    if is_rgb_filterset(first) and first.n_inputs_total == 3:
        maps = list(range(min(health.n_maps, options.max_rgb_maps)))
        sets = [first] + [filters_for_map(rec, j, index=index) for j in maps[1:]]
        more = f" (the first {len(maps)} of {health.n_maps})" if len(maps) < health.n_maps else ""
        return (f"Colour filters of every map{more}: input channels 0/1/2 as R/G/B.",
                plot_rgb_filters(sets, dpi=options.dpi))
    if montage_kind(rec, index=index) is MontageKind.DEPTHWISE:  # one kernel per map: every map fits one grid
        return (f"Every map's kernel (first page of {montage_page_count(rec, index=index)}), one shared scale.",
                layer_montage(index, rec, page=0, fold_bn=fold, dpi=options.dpi))
    norms = health.effective_norms if fold else health.map_norms
    order = np.argsort(-np.nan_to_num(norms, nan=-1.0), kind="stable")[:options.top_maps]
    sets = [filters_for_map(rec, int(j), index=index, fold_bn=fold, sort="norm") for j in order]
    caption = (f"The {len(sets)} strongest of {health.n_maps} maps by kernel norm{' (BN folded)' if fold else ''}, "
               f"strongest first; each row shows that map's strongest input-channel kernels (at most "
               f"{options.max_channels}).")
    return caption, plot_layer(sets, max_maps=len(sets), max_channels=options.max_channels, dpi=options.dpi)


def layer_section(index: ModelIndex, rec: LayerRecord, options: ReportOptions) -> Section:
    from .render.stats import map_norms_figure
    from .stats import layer_stats

    ls = layer_stats(rec, index=index, fold_bn=options.fold_bn)
    h = ls.health
    sec = Section(f"layer-{rec.path}", f"{rec.path} ({rec.class_name or '?'}, {rec.kind})",
                  [f"{rec.params:,} parameters; kernel {'×'.join(map(str, rec.kernel.shape)) if rec.kernel else '-'}."],
                  [_stats_table(ls)], data={"stats": ls.to_dict(histogram=False)}, level=3)
    if h is not None:
        sec.paragraphs += _health_paragraphs(h)
        sec.figures.append(_kernel_figure(index, rec, h, options))
        fig = map_norms_figure(h)
        fig.set_dpi(options.dpi)
        sec.figures.append(("Kernel norm of every map (dead maps in red).", fig))
    return sec


def input_sections(index: ModelIndex, model: Any, layers: list[LayerRecord],
                   options: ReportOptions) -> Iterator[Section]:
    """Per layer: its activations for the input and the decomposition of its most active map."""
    from .decompose import prepare_decomposition
    from .inputs import input_spec_from_model, load_input
    from .render.activations import activation_grid_figure, decomposition_figure

    assert options.input is not None
    x = load_input(options.input, input_spec_from_model(model), preprocess=options.preprocess, fit=options.fit)
    for rec in layers:
        run = prepare_decomposition(index, model, x, rec.path)
        out = np.asarray(run.output, dtype=np.float64)
        means = out.reshape(-1, out.shape[-1]).mean(axis=0)
        strongest = int(np.argmax(means))
        top = [int(j) for j in np.argsort(-means, kind="stable")[:16]]
        dec = run.decompose(strongest)
        sec = Section(f"input-{rec.path}", f"{rec.path}: activations for {Path(str(options.input)).name}",
                      [f"Most active map: {strongest} (mean activation {means[strongest]:.4g}). Its decomposition "
                       f"into input-channel contributions matches Keras's pre-activation to "
                       f"{dec.max_abs_error:.2g} (max |error|)."],
                      data={"layer": rec.path, "map_means": means.tolist(), "strongest_map": strongest,
                            "decomposition_max_abs_error": dec.max_abs_error}, level=3)
        grid = activation_grid_figure(out, maps=top, title=f"{rec.path}: the {len(top)} most active maps")
        grid.set_dpi(options.dpi)
        sec.figures.append(("Activations of the most active maps (each on its own scale).", grid))
        fig = decomposition_figure(dec)
        fig.set_dpi(options.dpi)
        sec.figures.append((f"Map {strongest} split by input channel: input maps, kernels, contributions, sum.",
                            fig))
        yield sec


def visualize_section(model: Any, index: ModelIndex, layers: list[LayerRecord], options: ReportOptions) -> Section:
    from .render.visualize import visualization_figure
    from .service import visualize_with_references
    from .stats import filter_health

    rec = index.layer(options.visualize_layer) if options.visualize_layer else layers[-1]
    h = filter_health(rec, index=index, dup_threshold=None, channel_matrix=False)
    maps = [int(j) for j in np.argsort(-h.map_norms, kind="stable")[:options.visualize_maps]]
    vis = visualize_with_references(model, rec.path, sorted(maps), steps=options.visualize_steps)
    fig = visualization_figure(vis, dpi=options.dpi)
    return Section("visualize", f"Feature visualization: {rec.path}",
                   [f"The inputs that maximise maps {', '.join(map(str, sorted(maps)))} (the strongest by kernel "
                    f"norm) after {options.visualize_steps} optimisation steps, next to the best natural input."],
                   figures=[("Feature visualization (activation reached vs the best natural input).", fig)],
                   data={"layer": rec.path, "maps": sorted(maps), "steps": options.visualize_steps,
                         "activation": np.asarray(vis.activation).tolist()})


def examples_section(model: Any, index: ModelIndex, layers: list[LayerRecord], options: ReportOptions) -> Section:
    """Dataset examples (:func:`inspector.examples.find_examples`) of the strongest maps of one layer."""
    from .render.report import examples_figure
    from .stats import filter_health

    examples = _examples_module()
    assert examples is not None and options.examples is not None
    rec = index.layer(options.visualize_layer) if options.visualize_layer else layers[-1]
    h = filter_health(rec, index=index, dup_threshold=None, channel_matrix=False)
    maps = sorted(int(j) for j in np.argsort(-h.map_norms, kind="stable")[:options.visualize_maps])
    source = index.keras_model if index.keras_model is not None else index.source
    found = examples.find_examples(source, options.examples, [rec.path], maps=",".join(map(str, maps)), k=6,
                                   unsafe=options.unsafe)
    crops = examples.crop_examples(found, rec.path, maps)
    fig = examples_figure(crops, title=f"{rec.path}: the inputs of {Path(options.examples).name} that excite "
                                       f"maps {', '.join(map(str, maps))} most", dpi=options.dpi)
    return Section("examples", f"Dataset examples: {rec.path}",
                   [f"{found.images_scanned} images scanned; per map (the strongest by kernel norm) the "
                    f"{found.k} whose maximum activation is highest, cropped to the receptive field of that "
                    f"position."],
                   figures=[("Top dataset examples per map (value above each crop).", fig)],
                   data={"layer": rec.path, "maps": maps, "examples": found.to_dict()})


def report_sections(index: ModelIndex, options: ReportOptions,
                    progress: Callable[[int, int, str], None] | None = None) -> Iterator[Section]:
    """The report's sections in order, each built when the writer asks for it."""
    layers = check_options(index, options)
    runs = options.input is not None or options.visualize or options.examples is not None
    total = 3 + len(layers) * (2 if options.input else 1) + int(options.visualize) + int(bool(options.examples))
    done = 0

    def step(what: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done, total, what)
        done += 1

    step("model")
    yield header_section(index, options, len(layers))
    step("layer table")
    yield layer_table_section(index)
    step("parameters")
    yield parameters_section(index, options.dpi)
    yield Section("filters", "Filter layers", [f"{len(layers)} layer(s) with kernels, in model order."])
    for rec in layers:
        step(rec.path)
        yield layer_section(index, rec, options)
    if runs:
        from .runtime import load_runnable

        model = load_runnable(index, safe_mode=not options.unsafe)
        if options.input is not None:
            yield Section("input", f"Activations for {options.input}",
                          ["Each layer's output for the input, and the exact decomposition of its most active map."])
            for sec in input_sections(index, model, layers, options):
                step(f"input {sec.data['layer']}")
                yield sec
        if options.visualize:
            step("feature visualization")
            yield visualize_section(model, index, layers, options)
        if options.examples is not None:
            step("dataset examples")
            yield examples_section(model, index, layers, options)
    if progress is not None:
        progress(total, total, "done")


def write_report(index: ModelIndex, out: str | os.PathLike[str], options: ReportOptions | None = None, *,
                 progress: Callable[[int, int, str], None] | None = None, sidecar: bool = True) -> list[Path]:
    """Write the report of ``index`` to ``out`` (``.html`` or ``.pdf``) and its JSON sidecar; returns the files.

    Every option is checked (layer selection, optional parts) before the first section is built.
    """
    from .outputs import prepare_file
    from .render.report import write_html, write_pdf

    options = options or ReportOptions()
    path = Path(out)
    if path.suffix.lower() not in REPORT_FORMATS:
        raise SelectionError(f"a report is written as .html or .pdf; accepted: {', '.join(REPORT_FORMATS)}. "
                             f"Received: {describe_received(str(out))}")
    path = prepare_file(path, option="the report")
    side = prepare_file(sidecar_path(path), option="the report's JSON sidecar") if sidecar else None
    check_options(index, options)  # refuse before anything is written
    sections = report_sections(index, options, progress)
    data = (write_pdf if path.suffix.lower() == ".pdf" else write_html)(sections, path,
                                                                          title=f"{index.name or 'model'} report")
    written = [path]
    if side is not None:
        import json

        from .outputs import writing
        from .serialize import jsonable

        with writing(side, option="the report's JSON sidecar"):
            side.write_text(json.dumps(jsonable(data), allow_nan=False, indent=1) + "\n", encoding="utf-8")
        written.append(side)
    return written
