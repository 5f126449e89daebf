"""One JSON and one NPZ spelling per result type, each with its inverse.

=====================  ==========================================  ==========================================
result                 JSON (``to_json`` / ``from_json``)          NPZ (``to_npz`` / ``from_npz``)
=====================  ==========================================  ==========================================
FilterSet(s)           the NPZ keys as JSON values                 ``inspector filters --npz`` / export layout
Decomposition          ``to_arrays()`` + kind, class, sample, notes  ``inspector decompose --npz`` layout
LayerStats             ``LayerStats.to_dict()`` (``stats --json``)  per-map and histogram arrays + ``meta``
ModelSummary           ``ModelIndex.to_dict()`` (``summary --json``)  ``meta`` (a JSON string)
Comparison             ``Comparison.to_dict()`` (``compare --json``)  (JSON only)
=====================  ==========================================  ==========================================

The FilterSet and Decomposition NPZ layouts are documented (export.py, decompose.py) and unchanged;
their JSON is the same keys with arrays as lists. The stats JSON is the existing ``to_dict`` of
:mod:`inspector.stats`, read back here. What a format does not hold comes back as the field's
default: the Decomposition NPZ has no ``class_name`` / ``sample_index`` / ``notes`` (``kind`` reads
``other``) and
the stats JSON no ``channel_norms`` (the stats NPZ has it). NaN/Inf in JSON follow :func:`jsonable`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .decompose import Decomposition
from .errors import SelectionError
from .examples import ExamplesResult
from .filters import FilterSet
from .outputs import npz_path, write_npz, writing
from .records import LayerKind, ModelIndex
from .stats import DuplicatePair, FilterHealth, LayerStats, TensorStats

__all__ = [
    "ModelSummary",
    "filtersets_from_json",
    "filtersets_from_npz",
    "filtersets_to_json",
    "filtersets_to_npz",
    "from_json",
    "from_npz",
    "jsonable",
    "to_json",
    "to_npz",
]

T = TypeVar("T")


def jsonable(value: Any) -> Any:
    """Plain JSON: NaN/Inf -> null, numpy scalars and arrays -> Python (``json.dumps(..., allow_nan=False)``)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.str_):
        return str(value)
    return value


# -- FilterSet ----------------------------------------------------------------------------------------

def _filterset_arrays(sets: FilterSet | Sequence[FilterSet], source: str) -> dict[str, Any]:
    """The NPZ layout of export.py's module doc: one map unstacked, several maps on a leading axis."""
    items = [sets] if isinstance(sets, FilterSet) else list(sets)
    if not items:
        raise SelectionError("nothing to save: no FilterSets were given; accepted: one or more FilterSets. "
                             "Received: []")
    first = items[0]
    if any(fs.layer_path != first.layer_path or fs.stage != first.stage for fs in items):
        raise SelectionError("an .npz holds one layer and stage; accepted: FilterSets of a single layer/stage. "
                             f"Received: {sorted({(fs.layer_path, fs.stage) for fs in items})}")
    single = len(items) == 1

    def stack(values: list[Any], dtype: Any = None) -> np.ndarray:
        return np.asarray(values[0], dtype=dtype) if single else np.stack([np.asarray(v, dtype=dtype) for v in values])

    return {
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
    }


def _filtersets_from_arrays(data: Any) -> list[FilterSet]:
    kernels = np.asarray(data["kernels"])
    channels = np.asarray(data["input_channels"])
    bias = np.asarray(data["bias"], dtype=np.float64)
    maps = np.asarray(data["maps"])
    if maps.ndim == 0:  # a single map, saved without the leading map axis
        kernels, channels, bias = kernels[None], channels[None], bias[None]
    folded = np.atleast_1d(np.asarray(data["bn_folded"]))
    return [
        FilterSet(layer_path=str(data["layer"]), kind=LayerKind(str(data["kind"])), map_index=int(m),
                  kernels=kernels[n], input_channels=channels[n],
                  bias=None if np.isnan(bias[n]) else float(bias[n]), stage=str(data["stage"]),
                  bn_folded=bool(folded[n]), class_name=str(data["class_name"]) or None,
                  n_inputs_total=int(data["n_inputs_total"]), sorted_by=str(data["sorted_by"]))
        for n, m in enumerate(np.atleast_1d(maps))
    ]


def filtersets_to_npz(sets: FilterSet | Sequence[FilterSet], path: str | os.PathLike[str], *,
                      source: str = "") -> Path:
    """Save the FilterSets of one layer and stage (maps stacked); ``.npz`` appended when missing."""
    arrays = _filterset_arrays(sets, source)
    out = npz_path(path)
    with writing(out, option="the .npz file"):
        out.parent.mkdir(parents=True, exist_ok=True)
    return write_npz(out, arrays)


def filtersets_from_npz(path: str | os.PathLike[str]) -> list[FilterSet]:
    """FilterSets back from :func:`filtersets_to_npz` (bias NaN -> None)."""
    with np.load(path, allow_pickle=False) as data:
        return _filtersets_from_arrays(data)


def filtersets_to_json(sets: FilterSet | Sequence[FilterSet], *, source: str = "") -> dict[str, Any]:
    """The NPZ keys with arrays as (nested) lists; a missing bias is ``null``."""
    return jsonable(_filterset_arrays(sets, source))


def filtersets_from_json(data: dict[str, Any]) -> list[FilterSet]:
    bias = data["bias"]
    nan_bias = np.asarray([np.nan if b is None else b for b in bias] if isinstance(bias, list)
                          else (np.nan if bias is None else bias), dtype=np.float64)
    kernels = np.asarray(data["kernels"], dtype=np.float64)
    return _filtersets_from_arrays({**data, "bias": nan_bias, "kernels": kernels,
                                    "input_channels": np.asarray(data["input_channels"], dtype=np.int64)})


# -- the other results: dispatch on type ------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSummary:
    """The ``inspector summary --json`` object as a value (a ModelIndex itself reads bytes lazily and
    cannot be rebuilt from JSON)."""

    format: str
    source: str
    name: str | None
    writer: str | None
    has_architecture: bool
    total_params: int | None
    trainable_params: int | None
    non_trainable_params: int | None
    input_shapes: list[Any] = field(default_factory=list)
    output_shapes: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_index(cls, index: ModelIndex) -> ModelSummary:
        return cls(**index.to_dict())


def _stats_types() -> tuple[type[LayerStats], type[FilterHealth], type[TensorStats], type[DuplicatePair]]:
    return LayerStats, FilterHealth, TensorStats, DuplicatePair


def _decomposition_type() -> type[Decomposition]:
    return Decomposition


def to_json(result: Any) -> dict[str, Any]:
    """The JSON object of a Decomposition, LayerStats, FilterHealth, TensorStats or ModelSummary
    (FilterSets: :func:`filtersets_to_json`). Values are JSON-ready; pass through :func:`jsonable` for NaN."""
    layer_stats, health, tensor, _ = _stats_types()
    if isinstance(result, ModelSummary):
        return asdict(result)
    from .compare import Comparison

    if isinstance(result, Comparison):  # the `inspector compare --json` object (docs/report.md)
        return jsonable(result.to_dict())
    if isinstance(result, ExamplesResult):  # the `inspector examples --json` object (docs/examples.md)
        return jsonable(result.to_dict())
    if isinstance(result, (layer_stats, tensor)):
        return result.to_dict(histogram=True)
    if isinstance(result, health):
        return result.to_dict()
    if isinstance(result, _decomposition_type()):
        return jsonable({**result.to_arrays(), "kind": result.kind, "class_name": result.class_name,
                         "sample_index": result.sample_index, "notes": list(result.notes)})
    raise TypeError(f"no JSON form for {type(result).__name__}")


def from_json(cls: type[T], data: dict[str, Any]) -> T:
    """The inverse of :func:`to_json` for ``cls``."""
    layer_stats, health, tensor, _ = _stats_types()
    if cls is ModelSummary:
        return ModelSummary(**data)  # type: ignore[return-value]
    from .compare import Comparison

    if cls is Comparison:
        return Comparison.from_dict(data)  # type: ignore[return-value]
    if cls is ExamplesResult:
        return ExamplesResult.from_dict(data)  # type: ignore[return-value]
    if cls is layer_stats:
        return _layer_stats_from_json(data)
    if cls is health:
        return _health_from_json(data)
    if cls is tensor:
        return _tensor_from_json(data)
    if cls is _decomposition_type():
        return _decomposition_from_arrays(data)
    raise TypeError(f"no JSON form for {cls.__name__}")


def _array(value: Any, dtype: Any = np.float64) -> np.ndarray | None:
    """A JSON list back as an array; ``null`` entries (NaN/Inf written by :func:`jsonable`) become NaN."""
    if value is None:
        return None
    if dtype is np.float64:
        value = np.asarray(value, dtype=object)
        value = np.where(np.asarray([v is None for v in value.ravel()]).reshape(value.shape), np.nan, value)
    return np.asarray(value, dtype=dtype)


def _tensor_from_json(d: dict[str, Any]) -> Any:
    _, _, tensor, _ = _stats_types()
    hist = d.get("histogram")
    names = {f.name for f in fields(tensor)} - {"hist_counts", "hist_edges"}
    return tensor(**{k: d[k] for k in names if k != "shape"}, shape=tuple(d["shape"]),
                  hist_counts=None if hist is None else _array(hist["counts"], np.int64),
                  hist_edges=None if hist is None else _array(hist["edges"]))


def _present(value: Any, dtype: Any = np.float64) -> np.ndarray:
    """A JSON list that a result always has, back as an array."""
    array = _array(value, dtype)
    if array is None:
        raise ValueError("a filter-health array is missing from the JSON")
    return array


def _health_from_json(d: dict[str, Any]) -> Any:
    _, health, _, pair = _stats_types()
    return health(
        layer_path=d["layer_path"], kind=d["kind"], stage=d["stage"], n_maps=d["n_maps"], n_inputs=d["n_inputs"],
        groups=d["groups"], map_norms=_present(d["map_norms"]), bias=_array(d["bias"]),
        dead_threshold=d["dead_threshold"], dead_reference=d["dead_reference"], dead=_present(d["dead"], np.int64),
        nonfinite=_present(d["nonfinite_maps"], np.int64), dup_threshold=d["dup_threshold"],
        duplicates=[pair(int(a), int(b), float(s)) for a, b, s in d["duplicates"]],
        duplicate_pair_count=d["duplicate_pair_count"], bn_layer=d["bn_layer"], bn_scale=_array(d["bn_scale"]),
        bn_bias=_array(d["bn_bias"]), channel_block=tuple(d["channel_block"]), notes=list(d["notes"]))


def _layer_stats_from_json(d: dict[str, Any]) -> Any:
    layer_stats, _, _, _ = _stats_types()
    return layer_stats(d["path"], d["kind"], d["class_name"], d["params"],
                       [_tensor_from_json(t) for t in d["tensors"]], _tensor_from_json(d["combined"]),
                       None if d["health"] is None else _health_from_json(d["health"]))


def _decomposition_from_arrays(d: Any) -> Any:
    def arr(key: str, dtype: Any = np.float64) -> np.ndarray:
        return np.asarray(d[key], dtype=dtype)

    # The NPZ layout predates these four fields; the JSON carries them.
    class_name = d.get("class_name")
    return _decomposition_type()(
        layer_path=str(d["layer_path"]), class_name=None if class_name is None else str(class_name),
        kind=LayerKind(str(d["kind"])) if "kind" in d else LayerKind.OTHER, map_index=int(d["map_index"]),
        sample_index=int(d["sample_index"]) if "sample_index" in d else 0,
        notes=tuple(d["notes"]) if "notes" in d else (), input_channels=arr("input_channels", np.int64),
        inputs=arr("inputs"), kernels=arr("kernels"), contributions=arr("contributions"), bias=float(d["bias"]),
        preactivation=arr("preactivation"), reference=arr("reference"), output=arr("output"),
        activation=str(d["activation"]), energy=arr("energy"), ranking=arr("ranking", np.int64),
        max_abs_error=float(d["max_abs_error"]), max_rel_error=float(d["max_rel_error"]),
        activation_error=float(d["activation_error"]), bn_folded=bool(d["bn_folded"]))


# -- NPZ ------------------------------------------------------------------------------------------------------

_HEALTH_ARRAYS = ("map_norms", "bias", "dead", "nonfinite", "bn_scale", "bn_bias", "channel_norms")


def to_npz(result: Any, path: str | os.PathLike[str]) -> Path:
    """Write a Decomposition (its documented layout), LayerStats or ModelSummary as ``.npz``
    (FilterSets: :func:`filtersets_to_npz`); ``.npz`` appended when missing, the path written returned."""
    layer_stats, _, _, _ = _stats_types()
    if isinstance(result, _decomposition_type()):
        return write_npz(path, result.to_arrays(), compressed=True)
    if isinstance(result, layer_stats):
        # Arrays stay arrays (channel_norms too, which the JSON lacks); the rest is the JSON as 'meta'.
        arrays: dict[str, Any] = {"meta": np.str_(json.dumps(jsonable(result.to_dict(histogram=False))))}
        if result.health is not None:
            arrays.update({f"health/{k}": getattr(result.health, k) for k in _HEALTH_ARRAYS
                           if getattr(result.health, k) is not None})
        for n, t in enumerate(result.tensors):
            if t.hist_counts is not None and t.hist_edges is not None:
                arrays[f"hist_counts/{n}"], arrays[f"hist_edges/{n}"] = t.hist_counts, t.hist_edges
        return write_npz(path, arrays, compressed=True)
    if isinstance(result, ModelSummary):
        return write_npz(path, {"meta": np.str_(json.dumps(jsonable(to_json(result))))})
    raise TypeError(f"no NPZ form for {type(result).__name__}")


def from_npz(cls: type[T], path: str | os.PathLike[str]) -> T:
    """The inverse of :func:`to_npz` for ``cls``."""
    layer_stats, _, _, _ = _stats_types()
    with np.load(path, allow_pickle=False) as data:
        if cls is _decomposition_type():
            return _decomposition_from_arrays(data)
        meta = json.loads(str(data["meta"]))
        if cls is ModelSummary:
            return ModelSummary(**meta)  # type: ignore[return-value]
        if cls is layer_stats:
            ls = _layer_stats_from_json(meta)
            for n, t in enumerate(ls.tensors):
                if f"hist_counts/{n}" in data:
                    t.hist_counts, t.hist_edges = data[f"hist_counts/{n}"], data[f"hist_edges/{n}"]
            if ls.health is not None:
                for k in _HEALTH_ARRAYS:
                    setattr(ls.health, k, data.get(f"health/{k}"))
            return ls
    raise TypeError(f"no NPZ form for {cls.__name__}")
