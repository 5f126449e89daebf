"""Writing filters out: figures (PNG/SVG/PDF), arrays (NPZ), multi-page PDFs, batch export + manifest.

NPZ layout (one file per layer and stage). One map, the layout ``inspector filters --npz`` promises:

    kernels         (n_inputs_seen, *spatial) float64
    input_channels  (n_inputs_seen,) int64
    bias            () float64, NaN when the layer has no bias
    maps            () int64, the output map
    layer, kind, stage, source, class_name, sorted_by: 0-d str;  bn_folded: 0-d bool

Several maps (batch export of a layer): the same arrays with a leading ``n_maps`` axis.

:func:`load_npz` turns such a file back into FilterSets.
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

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from .errors import SelectionError, describe_received
from .filters import FilterSet, ProgressCallback, filters_for_map, output_map_count, stages_for
from .graph import bn_fold_plan
from .outputs import npz_path, prepare_folder, write_npz, writing
from .records import LayerKind, LayerRecord, ModelIndex
from .selectors import parse_maps, select_layers

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


class ExportFormat(StrEnum):
    PNG = "png"
    SVG = "svg"
    PDF = "pdf"
    NPZ = "npz"


_FIGURE_FORMATS = (ExportFormat.PNG, ExportFormat.SVG, ExportFormat.PDF)

#: The manifest files ``export_batch`` can write, in the order written.
MANIFEST_FORMATS = ("json", "csv")


def parse_formats(text: str | Iterable[str]) -> list[ExportFormat]:
    """``'png,svg,npz'`` → formats, in the order given, duplicates dropped."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    out: list[ExportFormat] = []
    for part in (p.strip().lower().lstrip(".") for p in parts):
        if not part:
            continue
        try:
            fmt = ExportFormat(part)
        except ValueError:
            raise SelectionError(f"unknown export format {part!r}; accepted: {', '.join(ExportFormat)} (comma "
                                 f"separated). Received: {describe_received(text)}") from None
        if fmt not in out:
            out.append(fmt)
    if not out:
        raise SelectionError(f"no export format given; accepted: {', '.join(ExportFormat)}. "
                             f"Received: {describe_received(text)}")
    return out


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: float | None = None) -> Path:
    """Save ``fig`` as PNG, SVG or PDF, chosen by the file suffix."""
    out = Path(path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in _FIGURE_FORMATS:
        raise SelectionError(f"cannot write a figure as {out.suffix or 'a file without suffix'}; accepted: "
                             f".png, .svg, .pdf. Received: {describe_received(str(path))}")
    # metadata=None for svg/pdf would embed dates; fixed metadata keeps exports reproducible.
    meta = {"Creator": "filter-inspector"} if fmt != "png" else {"Software": "filter-inspector"}
    with writing(out, option="the figure"):
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format=fmt, dpi=dpi if dpi else fig.dpi, metadata=meta)
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


def save_npz(sets: FilterSet | Sequence[FilterSet], path: str | os.PathLike[str], *, source: str = "") -> Path:
    """Save the FilterSets of one layer and stage (maps stacked) as an ``.npz``; see the module doc.

    ``.npz`` is appended to ``path`` when missing; the path actually written is returned.
    """
    items = [sets] if isinstance(sets, FilterSet) else list(sets)
    if not items:
        raise SelectionError("nothing to save: no FilterSets were given; accepted: one or more FilterSets. "
                             "Received: []")
    first = items[0]
    if any(fs.layer_path != first.layer_path or fs.stage != first.stage for fs in items):
        raise SelectionError("an .npz holds one layer and stage; accepted: FilterSets of a single layer/stage. "
                             f"Received: {sorted({(fs.layer_path, fs.stage) for fs in items})}")
    out = npz_path(path)
    with writing(out, option="the .npz file"):
        out.parent.mkdir(parents=True, exist_ok=True)
    # One map keeps the documented layout as is: kernels (n_inputs_seen, *spatial), input_channels (n,),
    # bias and map as scalars. Several maps are stacked along a new leading axis.
    single = isinstance(sets, FilterSet) or len(items) == 1

    def stack(values: list[Any], dtype: Any = None) -> np.ndarray:
        return np.asarray(values[0], dtype=dtype) if single else np.stack([np.asarray(v, dtype=dtype) for v in values])

    return write_npz(out, {
        "kernels": stack([fs.kernels for fs in items]),
        "input_channels": stack([fs.input_channels for fs in items]),
        "bias": stack([np.nan if fs.bias is None else fs.bias for fs in items], np.float64),
        "maps": stack([fs.map_index for fs in items], np.int64),
        "bn_folded": stack([fs.bn_folded for fs in items], bool),
        "layer": np.str_(first.layer_path),
        "kind": np.str_(first.kind),
        "stage": np.str_(first.stage),
        "class_name": np.str_(first.class_name or ""),
        "sorted_by": np.str_(first.sorted_by),
        "source": np.str_(source),
        "n_inputs_total": np.int64(first.n_inputs_total),
    })


def load_npz(path: str | os.PathLike[str]) -> list[FilterSet]:
    """FilterSets back from :func:`save_npz` (bias NaN → None)."""
    with np.load(path, allow_pickle=False) as data:
        kernels, channels, bias = data["kernels"], data["input_channels"], data["bias"]
        if data["maps"].ndim == 0:  # a single map, saved without the leading map axis
            kernels, channels, bias = kernels[None], channels[None], bias[None]
        return [
            FilterSet(layer_path=str(data["layer"]), kind=LayerKind(str(data["kind"])), map_index=int(m),
                      kernels=kernels[n], input_channels=channels[n],
                      bias=None if np.isnan(bias[n]) else float(bias[n]), stage=str(data["stage"]),
                      bn_folded=bool(np.atleast_1d(data["bn_folded"])[n]), class_name=str(data["class_name"]) or None,
                      n_inputs_total=int(data["n_inputs_total"]), sorted_by=str(data["sorted_by"]))
            for n, m in enumerate(np.atleast_1d(data["maps"]))
        ]


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


def parse_manifest_formats(text: str | Iterable[str]) -> list[str]:
    """``'json,csv'`` → ``['json', 'csv']``; unknown names are a one-line SelectionError (an unknown
    name used to be skipped silently, so no manifest was written while the CLI said one was)."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for part in (str(p).strip().lower().lstrip(".") for p in parts):
        if not part:
            continue
        if part not in MANIFEST_FORMATS:
            raise SelectionError(f"unknown manifest format {part!r}; accepted: {', '.join(MANIFEST_FORMATS)} "
                                 f"(comma separated). Received: {describe_received(text)}")
        if part not in out:
            out.append(part)
    return out


@dataclass
class Manifest:
    out_dir: str
    source: str
    rows: list[ManifestRow] = field(default_factory=list)
    #: The manifest files written by :meth:`write` (absolute or as given), so callers report what exists.
    written: list[str] = field(default_factory=list)

    def write(self, formats: str | Sequence[str] = MANIFEST_FORMATS) -> list[Path]:
        """Write ``manifest.json`` / ``manifest.csv`` as asked; unknown formats are refused up front."""
        wanted = parse_manifest_formats(formats)
        written = []
        base = Path(self.out_dir)
        if "json" in wanted:
            p = base / "manifest.json"
            with writing(p, option="the manifest"):
                p.write_text(json.dumps({"source": self.source, "files": [asdict(r) for r in self.rows]},
                                        indent=1))
            written.append(p)
        if "csv" in wanted:
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


def _span(maps: Sequence[int]) -> str:
    return str(maps[0]) if len(maps) == 1 else f"{maps[0]}-{maps[-1]}" if list(maps) == list(
        range(maps[0], maps[-1] + 1)) else ",".join(map(str, maps))


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


def _layers_for(index: ModelIndex, layers: str | Sequence[str | LayerRecord] | None) -> list[LayerRecord]:
    """A pattern string goes through :func:`select_layers` (globs, commas); a sequence is taken as exact
    paths or records, so names holding ``,`` or ``[`` (``conv[1]``) are never read as patterns."""
    if layers is None or isinstance(layers, str):
        return select_layers(index, layers)
    chosen: list[LayerRecord] = []
    for item in layers:
        record = item if isinstance(item, LayerRecord) else index.layer(str(item))
        if record not in chosen:
            chosen.append(record)
    return chosen


def export_batch(index: ModelIndex, out_dir: str | os.PathLike[str], *,
                 layers: str | Sequence[str | LayerRecord] | None = None,
                 maps: str | None = None, formats: str | Iterable[str] = ("png", "npz"),
                 fold_bn: bool | str = False, sort: str | None = None, stage: str | None = None,
                 dpi: float = 100, max_kernels: int = 64, scale: str = "shared",
                 manifest: Sequence[str] = ("json", "csv"), progress: ProgressCallback | None = None,
                 ) -> Manifest:
    """Export the filters of many maps / layers (default: every map of every filter layer).

    Per layer ``L`` (file-safe name): ``L/map_0007.png|svg`` per map, ``L.pdf`` (one page per map),
    ``L.npz`` (all selected maps). Writes ``manifest.json`` / ``manifest.csv`` listing every file
    (``Manifest.written`` says which). ``layers``: a pattern string (comma-separated names, paths or
    globs) or a sequence of exact paths / LayerRecords. ``progress(done, total, what)`` is called after
    each map.
    """
    from .render.filters import plot_filterset

    fmts = parse_formats(formats)
    manifest_formats = parse_manifest_formats(manifest)
    chosen = _layers_for(index, layers)
    selection = parse_maps(maps)
    # A stage names a separable layer's kernel; other layers in the same batch keep their default.
    stages = {layer.path: stage if stage in stages_for(layer) else None for layer in chosen}
    plan = [(layer, selection.resolve(output_map_count(layer, stages[layer.path]), layer=layer.path))
            for layer in chosen]
    total = sum(len(m) for _, m in plan)
    out = prepare_folder(out_dir, option="the export folder")
    result = Manifest(str(out), index.source)
    done = 0

    def add(layer: LayerRecord, fs: FilterSet, span: str, fmt: str, path: Path, note: str) -> None:
        result.rows.append(ManifestRow(layer.path, span, str(layer.kind), fs.stage, fmt,
                                       str(path.relative_to(out)), path.stat().st_size, fs.bn_folded, note))

    for layer, indices in plan:
        name = safe_name(layer.path)
        sets: list[FilterSet] = []
        pdf = None
        if ExportFormat.PDF in fmts:
            with writing(out / f"{name}.pdf", option="the PDF"):
                pdf = PdfPages(out / f"{name}.pdf", metadata={"Creator": "filter-inspector"})
        notes: set[str] = set()
        try:
            for j in indices:
                fs, note = _set_for(layer, j, index, fold_bn, sort, stages[layer.path])
                if note:
                    notes.add(note)
                sets.append(fs)
                needs_figure = pdf is not None or any(f in fmts for f in (ExportFormat.PNG, ExportFormat.SVG))
                fig = plot_filterset(fs, max_kernels=max_kernels, scale=scale, dpi=dpi) if needs_figure else None
                for fmt in (ExportFormat.PNG, ExportFormat.SVG):
                    if fmt in fmts and fig is not None:
                        path = save_figure(fig, out / name / f"map_{j:04d}.{fmt}", dpi=dpi)
                        add(layer, fs, str(j), fmt, path, note)
                if pdf is not None and fig is not None:
                    with writing(out / f"{name}.pdf", option="the PDF"):
                        pdf.savefig(fig)
                done += 1
                if progress is not None:
                    progress(done, total, f"{layer.path}:{j}")
        finally:
            if pdf is not None:
                with writing(out / f"{name}.pdf", option="the PDF"):
                    pdf.close()
        span = _span(indices)
        if pdf is not None and sets:
            add(layer, sets[0], span, "pdf", out / f"{name}.pdf", "; ".join(sorted(notes)))
        if ExportFormat.NPZ in fmts and sets:
            path = save_npz(sets, out / f"{name}.npz", source=index.source)
            add(layer, sets[0], span, "npz", path, "; ".join(sorted(notes)))
    result.write(manifest_formats)
    return result


def figures_for_pdf(sets: Iterable[FilterSet], **plot_options: Any) -> Iterable[Figure]:
    """One figure per FilterSet, lazily (for :func:`save_pdf_pages`)."""
    from .render.filters import plot_filterset

    for fs in sets:
        yield plot_filterset(fs, **plot_options)


def text_progress_bar(stream: Any, width: int = 30) -> Callable[[int, int, str], None]:
    """A progress callback drawing ``[#####.....] 12/40 conv1:11`` on ``stream`` (stderr)."""
    def report(done: int, total: int, what: str) -> None:
        filled = int(width * done / max(total, 1))
        end = "\n" if done >= total else ""
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what[:40]:<40}{end}")
        stream.flush()

    return report
