"""Turn what a reader found (a config graph and raw tensors per layer) into :class:`LayerRecord` s.

Every reader ends here, so naming variables, deciding trainability, kinds, kernel specs and filling
missing shapes is written once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..keras_config import ConfigLayer, ModelGraph
from ..kinds import (
    canonical_weight_name,
    kernel_spec,
    kind_of_class,
    non_trainable_names,
    variable_names,
)
from ..layouts import infer_kind, map_count
from ..records import LayerKind, LayerRecord, TensorRef
from ..shapes import infer_output_shape
from .h5tensors import RawTensor

__all__ = ["infer_kind_from_weights", "records_from_graph", "weights_only_record"]


def _name_tensors(class_name: str | None, config: Mapping[str, object], raws: Sequence[RawTensor]) -> list[str]:
    """Short names for a layer's tensors: stored names when the file has them, else the class's order."""
    if raws and all(r.stored_name for r in raws):
        names = [canonical_weight_name(class_name, str(r.stored_name)) for r in raws]
        if len(set(names)) == len(names):
            return names
    known = variable_names(class_name, config, len(raws))
    if known is not None:
        return known
    return [r.stored_name or f"vars/{i}" for i, r in enumerate(raws)]


def _make_refs(class_name: str | None, config: Mapping[str, object], raws: Sequence[RawTensor],
               layer_trainable: bool | None, custom: bool) -> list[TensorRef]:
    names = _name_tensors(class_name, config, raws)
    frozen = non_trainable_names(class_name)
    refs = []
    for name, raw in zip(names, raws, strict=True):
        if raw.trainable is not None:
            trainable: bool | None = raw.trainable
        elif layer_trainable is False:
            trainable = False
        elif custom or layer_trainable is None:
            # A custom layer's own weights may be non-trainable (add_weight(trainable=False)); the
            # config cannot tell, so we say unknown rather than guess (docs/formats.md §1.4).
            trainable = None
        else:
            trainable = name.rsplit("/", 1)[-1] not in frozen
        refs.append(TensorRef(name, raw.shape, raw.dtype, raw.location, trainable, raw.loader))
    return refs


def records_from_graph(graph: ModelGraph, tensors: Mapping[str, Sequence[RawTensor]]) -> list[LayerRecord]:
    """Records for every leaf layer of ``graph`` (plus containers that own weights directly)."""
    records: list[LayerRecord] = []
    for layer in graph.layers:
        raws = list(tensors.get(layer.path, ()))
        if layer.is_container and not raws:
            continue
        records.append(_record(layer, raws))
    _fill_shapes(records)
    return records


def _record(layer: ConfigLayer, raws: Sequence[RawTensor]) -> LayerRecord:
    class_name = layer.class_name.rsplit(">", 1)[-1]
    refs = _make_refs(class_name, layer.config, raws, layer.trainable, layer.custom)
    kernel = next((r for r in refs if r.name in ("kernel", "depthwise_kernel")), None)
    kind = kind_of_class(class_name)
    return LayerRecord(
        path=layer.path,
        class_name=class_name,
        kind=kind,
        weights=refs,
        module=layer.module,
        spec=kernel_spec(class_name, layer.config, kernel.shape if kernel is not None else None),
        config=layer.config,
        input_shape=layer.input_shape,
        output_shape=layer.output_shape,
        inbound=tuple(layer.inbound),
        trainable=layer.trainable,
        custom=layer.custom,
    )


def _fill_shapes(records: list[LayerRecord]) -> None:
    """Propagate shapes in model order: unknown inputs from producers, unknown outputs by formula."""
    by_path = {r.path: r for r in records}
    for record in records:
        if record.input_shape is None and record.inbound:
            found = [by_path[p].output_shape for p in record.inbound if p in by_path]
            shapes = [s for s in found if isinstance(s, tuple)]
            if shapes and len(shapes) == len(found):
                record.input_shape = shapes[0] if len(shapes) == 1 else shapes
        if record.output_shape is None and record.class_name:
            record.output_shape = infer_output_shape(record.class_name, record.config, record.input_shape)


# -- weights-only files ------------------------------------------------------------------------------

#: Readers guess a class from names and shapes with the layout registry's rule.
infer_kind_from_weights = infer_kind


def weights_only_record(path: str, class_hint: str | None, raws: Sequence[RawTensor],
                        note: str | None = None) -> LayerRecord:
    """A record for a layer known only by its weights: kind from the class hint or inferred from shapes."""
    class_name = class_hint
    inferred = class_name is None
    names = _guess_names(class_name, raws) if class_name else [r.stored_name for r in raws]
    if class_name is None:
        class_name, kind = infer_kind_from_weights(names, [r.shape for r in raws])
        names = _guess_names(class_name, raws) if class_name else [
            r.stored_name.split(":", 1)[0].rsplit("/", 1)[-1] if r.stored_name else f"vars/{i}"
            for i, r in enumerate(raws)]
    else:
        kind = kind_of_class(class_name)
    # Trainability is not stored in weights files (a frozen layer looks the same), so it stays unknown
    # unless the source knows it (live models).
    refs = [TensorRef(name or f"vars/{i}", raw.shape, raw.dtype, raw.location, raw.trainable, raw.loader)
            for i, (name, raw) in enumerate(zip(names, raws, strict=True))]
    kernel = next((r for r in refs if r.name in ("kernel", "depthwise_kernel")), None)
    spec = None
    if kernel is not None and kind is not LayerKind.OTHER:
        spec = kernel_spec(class_name, {}, kernel.shape)
        if spec is not None:
            # Weights alone do not say strides, padding, dilation, groups or activation.
            spec = type(spec)(rank=spec.rank, kernel_size=spec.kernel_size, groups=None,
                              depth_multiplier=spec.depth_multiplier,
                              use_bias=any(r.name == "bias" for r in refs),
                              filters=_filters_from_shape(kind, refs))
    record = LayerRecord(path=path, class_name=class_name, kind=kind, weights=refs, kind_inferred=inferred,
                         spec=spec)
    if note:
        record.notes.append(note)
    return record


_CONFIG_VARIANTS: tuple[dict[str, object], ...] = (
    {}, {"use_bias": False}, {"center": False}, {"scale": False}, {"center": False, "scale": False},
)


def _guess_names(class_name: str | None, raws: Sequence[RawTensor]) -> list[str]:
    """Names by the class's save order, trying the config variants a weights file cannot tell apart."""
    if raws and all(r.stored_name for r in raws):
        return _name_tensors(class_name, {}, raws)
    for variant in _CONFIG_VARIANTS:
        known = variable_names(class_name, variant, len(raws))
        if known is not None:
            return known
    return [r.stored_name or f"vars/{i}" for i, r in enumerate(raws)]


def _filters_from_shape(kind: LayerKind, refs: Sequence[TensorRef]) -> int | None:
    names = {r.name: r for r in refs}
    kernel = names.get("depthwise_kernel" if kind is LayerKind.SEPARABLE else "kernel")
    if kind not in (LayerKind.CONV, LayerKind.TRANSPOSE, LayerKind.DENSE, LayerKind.SEPARABLE) or kernel is None:
        return None  # depthwise layers have no filters setting (their maps follow the input)
    pointwise = names.get("pointwise_kernel")
    if kind is LayerKind.SEPARABLE and pointwise is None:
        return None
    return map_count(kind, kernel.shape, pointwise.shape if pointwise is not None else None)
