"""Writing filters out: figures (PNG/SVG/PDF), arrays (NPZ), multi-page PDFs, batch export + manifest.

NPZ layout (one file per layer and stage). One map, the layout ``inspector filters --npz`` promises:

    kernels         (n_inputs_seen, *spatial) float64
    input_channels  (n_inputs_seen,) int64
    bias            () float64, NaN when the layer has no bias
    maps            () int64, the output map
    layer, kind, stage, source, class_name, sorted_by: 0-d str;  bn_folded: 0-d bool

Several maps (batch export of a layer): the same arrays with a leading ``n_maps`` axis.

:func:`load_npz` turns such a file back into FilterSets; both are :mod:`inspector.serialize`'s FilterSet
round trip under their historical names. Formats and suffixes come from :data:`inspector.outputs.FORMATS`.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from .errors import SelectionError, describe_received
from .filters import FilterSet, ProgressCallback, filters_for_map, input_channel_count, output_map_count
from .formatting import index_text
from .graph import bn_fold_plan
from .outputs import FORMATS, FileFormat, Role, figure_format, formats_with, prepare_folder, writing
from .records import LayerRecord, ModelIndex
from .selectors import plan_maps
from .serialize import filtersets_from_npz as load_npz
from .serialize import filtersets_to_npz as save_npz

__all__ = [
    "MANIFEST_FORMATS",
    "ExportFormat",
    "Manifest",
    "ManifestRow",
    "export_batch",
    "load_npz",
    "parse_formats",
    "parse_manifest_formats",
    "save_figure",
    "save_npz",
    "save_pdf_pages",
]


#: What a batch export can write: the rows of the format table marked ``batch``.
ExportFormat = StrEnum("ExportFormat", {f.name: f.value for f in formats_with(batch=True)})  # type: ignore[misc]
ExportFormat.__doc__ = "A batch-export format (``--format``): the batch rows of inspector.outputs.FORMATS."

#: The manifest files ``export_batch`` can write, in the order written.
MANIFEST_FORMATS = tuple(str(f) for f in formats_with(Role.MANIFEST))


def _parse_list(text: str | Iterable[str], accepted: Sequence[str], what: str) -> list[str]:
    """A comma-separated (or listed) subset of ``accepted``, in the order given, duplicates dropped; an
    unknown name is a one-line SelectionError (skipping it silently would write less than the CLI says)."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for part in (str(p).strip().lower().lstrip(".") for p in parts):
        if not part:
            continue
        if part not in accepted:
            raise SelectionError(f"unknown {what} {part!r}; accepted: {', '.join(accepted)} (comma separated). "
                                 f"Received: {describe_received(text)}")
        if part not in out:
            out.append(part)
    return out


def parse_formats(text: str | Iterable[str]) -> list[ExportFormat]:
    """``'png,svg,npz'`` → formats, in the order given, duplicates dropped."""
    out = [ExportFormat(p) for p in _parse_list(text, [str(f) for f in ExportFormat], "export format")]
    if not out:
        raise SelectionError(f"no export format given; accepted: {', '.join(ExportFormat)}. "
                             f"Received: {describe_received(text)}")
    return out


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: float | None = None) -> Path:
    """Save ``fig`` as PNG, SVG, PDF or JPEG, chosen by the file suffix."""
    out = Path(path)
    fmt = figure_format(out, option="a figure")
    key = FORMATS[fmt].metadata_key
    # metadata=None for svg/pdf would embed dates; fixed metadata keeps exports reproducible.
    meta: dict[str, Any] = {"metadata": {key: "filter-inspector"}} if key else {}
    with writing(out, option="the figure"):
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format=str(fmt), dpi=dpi if dpi else fig.dpi, **meta)
    return out


def save_pdf_pages(figures: Iterable[Figure], path: str | os.PathLike[str]) -> int:
    """Write figures as the pages of one PDF (figures may be a generator: one page in memory at a time)."""
    out = Path(path)
    pages = 0
    with writing(out, option="the PDF"):
        out.parent.mkdir(parents=True, exist_ok=True)
        with PdfPages(out, metadata={"Creator": "filter-inspector"}) as pdf:
            for fig in figures:
                pdf.savefig(fig)
                pages += 1
    return pages


# -- batch export ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ManifestRow:
    layer: str
    maps: str  # "7" or "0-63" for a per-layer file
    kind: str
    stage: str
    format: str
    path: str  # relative to the export folder
    bytes: int
    bn_folded: bool
    note: str = ""
    #: The input channels whose kernels are in this file ("0-63,128"); every channel of the map unless
    #: the user capped the kernels per map (``max_kernels``), in which case ``truncated`` is true.
    input_channels: str = ""
    truncated: bool = False


def parse_manifest_formats(text: str | Iterable[str]) -> list[str]:
    """``'json,csv'`` → ``['json', 'csv']`` (may be empty: no manifest)."""
    return _parse_list(text, MANIFEST_FORMATS, "manifest format")


@dataclass
class Manifest:
    out_dir: str
    source: str
    rows: list[ManifestRow] = field(default_factory=list)
    #: The manifest files written by :meth:`write` (absolute or as given), so callers report what exists.
    written: list[str] = field(default_factory=list)
    #: False when the export was stopped early (``export_batch(stop=...)``): the files hold the maps done.
    complete: bool = True

    def write(self, formats: str | Sequence[str] = MANIFEST_FORMATS) -> list[Path]:
        """Write ``manifest.json`` / ``manifest.csv`` as asked; unknown formats are refused up front."""
        wanted = parse_manifest_formats(formats)
        written = []
        base = Path(self.out_dir)
        if FileFormat.JSON in wanted:
            p = base / "manifest.json"
            with writing(p, option="the manifest"):
                p.write_text(json.dumps({"source": self.source, "complete": self.complete,
                                         "files": [asdict(r) for r in self.rows]}, indent=1))
            written.append(p)
        if FileFormat.CSV in wanted:
            p = base / "manifest.csv"
            with writing(p, option="the manifest"), p.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(ManifestRow.__dataclass_fields__))
                writer.writeheader()
                for r in self.rows:
                    writer.writerow(asdict(r))
            written.append(p)
        self.written = [str(p) for p in written]
        return written


def safe_name(path: str) -> str:
    """A layer path as a file name: ``inner/conv 1`` → ``inner__conv_1``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.replace("/", "__")).strip("._") or "layer"


def _set_for(layer: LayerRecord, j: int, index: ModelIndex, fold_bn: bool | str, sort: str | None,
             stage: str | None) -> tuple[FilterSet, str]:
    """The FilterSet, folding BN where the model allows it (batch export must not stop at one layer)."""
    if fold_bn and fold_bn != "none":
        # Ask the planner filters_for_map itself asks (inspector.graph), rather than catching its error.
        wheres = {"before": ("before",), "both": ("before", "after")}.get(str(fold_bn), ("after",))
        plans = [bn_fold_plan(index, layer, where, stage=stage) for where in wheres]
        if all(plan.ok for plan in plans):
            return filters_for_map(layer, j, index=index, fold_bn=fold_bn, sort=sort, stage=stage), ""
        note = "BN not folded: " + "; ".join(str(plan.reason) for plan in plans if not plan.ok)
        return filters_for_map(layer, j, index=index, sort=sort, stage=stage), note
    return filters_for_map(layer, j, index=index, sort=sort, stage=stage), ""


_MONTAGE_CHANNELS = 64  # input channels per map in a maps x channels grid montage


def _export_montage(index: ModelIndex, layer: LayerRecord, out: Path, name: str, fmts: set[str],
                    fold_bn: bool | str, stage: str | None, dpi: float,
                    add: Callable[[str, Path, Iterable[int], bool], None]) -> None:
    from .render.filters import MontageKind, layer_montage, montage_kind, montage_page_count

    kind = montage_kind(layer, index=index, stage=stage)
    n_inputs = input_channel_count(layer)
    cut = kind is MontageKind.GRID and n_inputs > _MONTAGE_CHANNELS
    channels = range(min(n_inputs, _MONTAGE_CHANNELS) if cut else n_inputs)
    pages = range(montage_page_count(layer, index=index, stage=stage))

    def draw(page: int) -> Figure:
        return layer_montage(index, layer, page=page, fold_bn=fold_bn, stage=stage, scale="layer",
                             max_channels=_MONTAGE_CHANNELS, dpi=dpi)

    for fmt in (FileFormat.PNG, FileFormat.SVG):
        if fmt in fmts:
            for page in pages:
                suffix = "" if page == 0 else f"_p{page + 1}"
                add(str(fmt), save_figure(draw(page), out / name / f"montage{suffix}.{fmt}", dpi=dpi), channels, cut)
    if FileFormat.PDF in fmts:
        path = out / f"{name}_montage.pdf"
        save_pdf_pages((draw(page) for page in pages), path)
        add("pdf", path, channels, cut)


def export_batch(index: ModelIndex, out_dir: str | os.PathLike[str], *,
                 layers: str | Sequence[str | LayerRecord] | None = None,
                 maps: str | None = None, formats: str | Iterable[str] = ("png", "npz"),
                 fold_bn: bool | str = False, sort: str | None = None, stage: str | None = None,
                 dpi: float | None = None, max_kernels: int | None = None, per_page: int = 64,
                 scale: str = "shared", manifest: Sequence[str] = ("json", "csv"),
                 progress: ProgressCallback | None = None, montage: bool = False,
                 stop: Callable[[], bool] | None = None) -> Manifest:
    """Export the filters of many maps / layers (default: every map of every filter layer).

    Per layer ``L`` (file-safe name): ``L/map_0007.png|svg`` per map, ``L.pdf`` (one page per map),
    ``L.npz`` (all selected maps). Writes ``manifest.json`` / ``manifest.csv`` listing every file
    (``Manifest.written`` says which). ``layers``: a pattern string (comma-separated names, paths or
    globs) or a sequence of exact paths / LayerRecords. ``progress(done, total, what)`` is called after
    each map; it may raise to abandon the export (files written so far stay, no manifest). ``stop()`` is
    asked after each map; when true, the export ends cleanly there: the current layer's PDF and NPZ hold
    the maps done, no montage is drawn, and the manifest lists what was written with ``complete: false``.

    Nothing is dropped silently: a map with more input kernels than ``per_page`` gets several figure
    pages (``map_0007.png``, ``map_0007_p2.png``, ... and one PDF page each), so every kernel is in the
    files. Only ``max_kernels`` (the user's explicit cap: the first N kernels, in ``sort`` order) leaves
    kernels out, and the manifest then says ``truncated``. Each manifest row lists the ``input_channels``
    its file holds.

    ``montage`` adds each layer's whole-layer montage (every map, one colour range for the layer):
    ``L/montage.png`` (``montage_p2.png``, ... when it has pages) and/or ``L_montage.pdf``. A maps x
    channels grid montage draws the first 64 input channels of each map (its row says ``truncated``;
    the per-map files hold every channel).
    """
    from .render.common import DEFAULT_DPI
    from .render.filters import display_set, kernel_page, kernels_per_page, plot_filterset

    fmts: set[str] = set(parse_formats(formats))
    manifest_formats = parse_manifest_formats(manifest)
    # A stage names a separable layer's kernel; other layers in the same batch keep their default.
    plan = plan_maps(index, layers, maps, stage=stage, stage_where_offered=True)
    total = sum(len(p.maps) for p in plan)
    out = prepare_folder(out_dir, option="the export folder")
    result = Manifest(str(out), index.source)
    done = 0

    if max_kernels is not None and max_kernels < 1:
        raise SelectionError(f"max_kernels must be a positive number of kernels per map, or None for all. "
                             f"Received: {max_kernels}")
    if per_page < 1:
        raise SelectionError(f"per_page must be a positive number of kernels per figure. Received: {per_page}")

    def add(layer: LayerRecord, fs: FilterSet, span: str, fmt: str, path: Path, note: str,
            channels: Iterable[int], truncated: bool) -> None:
        result.rows.append(ManifestRow(layer.path, span, str(layer.kind), fs.stage, fmt,
                                       str(path.relative_to(out)), path.stat().st_size, fs.bn_folded, note,
                                       index_text(sorted(int(c) for c in channels)), truncated))

    stopped = False

    def stopping() -> bool:  # asked before each map after the first, so a stop with nothing left is no stop
        nonlocal stopped
        stopped = stopped or (stop is not None and done > 0 and stop())
        return stopped

    for step in plan:
        if stopping():
            break
        layer, indices = step.layer, step.maps
        name = safe_name(layer.path)
        sets: list[FilterSet] = []
        pdf = None
        if FileFormat.PDF in fmts:
            with writing(out / f"{name}.pdf", option="the PDF"):
                pdf = PdfPages(out / f"{name}.pdf", metadata={"Creator": "filter-inspector"})
        notes: set[str] = set()
        pdf_channels: set[int] = set()
        pdf_truncated = False
        try:
            for j in indices:
                if sets and stopping():
                    break
                fs, note = _set_for(layer, j, index, fold_bn, sort, step.stage)
                if note:
                    notes.add(note)
                sets.append(fs)
                needs_figure = pdf is not None or any(f in fmts for f in (FileFormat.PNG, FileFormat.SVG))
                shown = display_set(fs)  # what a figure draws (Dense after Flatten: producer-map images)
                drawn = shown if max_kernels is None else shown.head(max_kernels)
                truncated = drawn.n_inputs < shown.n_inputs
                n_pages = -(-drawn.n_inputs // kernels_per_page(drawn, per_page)) if drawn.kernels.ndim > 1 else 1
                for page in range(n_pages if needs_figure else 0):
                    fig = plot_filterset(drawn, max_kernels=per_page, page=page, scale=scale,
                                         dpi=dpi or DEFAULT_DPI)
                    first, last = kernel_page(drawn, per_page, page)
                    channels = drawn.input_channels[first:last] if drawn.kernels.ndim > 1 else drawn.input_channels
                    suffix = "" if page == 0 else f"_p{page + 1}"
                    for fmt in (FileFormat.PNG, FileFormat.SVG):
                        if fmt in fmts:
                            path = save_figure(fig, out / name / f"map_{j:04d}{suffix}.{fmt}", dpi=dpi)
                            add(layer, fs, str(j), fmt, path, note, channels, truncated)
                    if pdf is not None:
                        with writing(out / f"{name}.pdf", option="the PDF"):
                            pdf.savefig(fig)
                        pdf_channels.update(int(c) for c in channels)
                        pdf_truncated = pdf_truncated or truncated
                done += 1
                if progress is not None:
                    progress(done, total, f"{layer.path}:{j}")
        finally:
            if pdf is not None:
                with writing(out / f"{name}.pdf", option="the PDF"):
                    pdf.close()
        span = index_text(indices[:len(sets)])
        if montage and sets and not stopped:
            every_map = index_text(range(output_map_count(layer, step.stage)))

            def add_montage(fmt: str, path: Path, chans: Iterable[int], cut: bool, layer: LayerRecord = layer,
                            fs: FilterSet = sets[0], span: str = every_map) -> None:
                add(layer, fs, span, fmt, path, "whole-layer montage", chans, cut)

            _export_montage(index, layer, out, name, fmts, fold_bn if sets[0].bn_folded else False, step.stage,
                            dpi or DEFAULT_DPI, add_montage)
        if pdf is not None and sets:
            add(layer, sets[0], span, "pdf", out / f"{name}.pdf", "; ".join(sorted(notes)), pdf_channels,
                pdf_truncated)
        if FileFormat.NPZ in fmts and sets:  # arrays always hold every kernel of every map
            path = save_npz(sets, out / f"{name}.npz", source=index.source)
            add(layer, sets[0], span, "npz", path, "; ".join(sorted(notes)),
                {int(c) for fs in sets for c in fs.input_channels}, False)
    result.complete = not stopped
    result.write(manifest_formats)
    return result
