"""An in-memory ``keras.Model`` (Functional, Sequential, nested or subclassed).

Functional and Sequential models go through the same config parser as files (their serialised
config is what ``.keras`` stores), so paths, order and shapes match what the file readers report.
Subclassed models have no layer list in their config; their tracked layers are walked instead.
Weights stay in the model's variables and are copied only when read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..keras_config import parse_model_config
from ..kinds import kernel_spec, variable_names
from ..records import LayerRecord, ModelFormat, ModelIndex, Shape
from .build import records_from_graph, weights_only_record
from .h5tensors import RawTensor

__all__ = ["is_keras_model", "read_keras_model"]


def is_keras_model(obj: object) -> bool:
    """True for a Keras 3 (or tf.keras) model object, checked without importing Keras."""
    for cls in type(obj).__mro__:
        if cls.__name__ == "Model" and cls.__module__.startswith(("keras", "tf_keras", "tensorflow")):
            return True
    return False


def _variable_tensor(var: Any, stored_name: str | None) -> RawTensor:
    def load(index: tuple[Any, ...] | None) -> np.ndarray:
        arr = np.asarray(var.numpy() if hasattr(var, "numpy") else var)
        return arr.copy() if index is None else np.array(arr[index])

    shape = tuple(int(d) for d in var.shape)
    dtype = str(getattr(var, "dtype", "float32"))
    dtype = dtype.rsplit(".", 1)[-1].replace("'>", "").replace("<dtype: '", "").strip("'")
    path = str(getattr(var, "path", getattr(var, "name", "")))
    return RawTensor(stored_name, shape, dtype, path, load, trainable=bool(getattr(var, "trainable", True)))


def _layer_tensors(layer: Any) -> list[RawTensor]:
    weights = list(layer.weights)
    class_name = type(layer).__name__
    config: dict[str, Any] = {}
    try:
        config = layer.get_config()
    except Exception:  # custom layers may not implement get_config
        config = {}
    known = variable_names(class_name, config, len(weights))
    prefix = str(getattr(layer, "path", layer.name)) + "/"
    raws = []
    for var in weights:
        path = str(getattr(var, "path", var.name))
        stored = None if known is not None else (path[len(prefix):] if path.startswith(prefix) else var.name)
        raws.append(_variable_tensor(var, stored))
    return raws


def _find(model: Any, path: str) -> Any:
    obj = model
    for part in path.split("/"):
        obj = obj.get_layer(part)
    return obj


def _walk_tracked(obj: Any, prefix: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
    for layer in getattr(obj, "layers", []):
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        path = f"{prefix}{layer.name}"
        if getattr(layer, "layers", None):
            yield from _walk_tracked(layer, path + "/", seen)
        else:
            yield path, layer


def read_keras_model(model: Any) -> ModelIndex:
    config: dict[str, Any] | None
    try:
        from ..kerascompat import import_keras

        config = import_keras().saving.serialize_keras_object(model)
    except Exception:
        config = None
    graph = parse_model_config(config) if isinstance(config, dict) else None
    warnings: list[str] = []
    if graph is not None and graph.has_layer_list:
        tensors: dict[str, list[RawTensor]] = {}
        for layer in graph.layers:
            if layer.is_container:
                continue
            try:
                tensors[layer.path] = _layer_tensors(_find(model, layer.path))
            except (ValueError, KeyError, AttributeError):
                warnings.append(f"layer {layer.path!r} of the config was not found in the model object")
        layers = records_from_graph(graph, tensors)
        name, has_arch = graph.name, True
        inputs = graph.input_shapes
        by_path = {r.path: r for r in layers}
        outputs: list[Shape | None] = [_output_shape(by_path.get(p)) for p in graph.output_paths]
    else:
        layers = []
        for path, layer in _walk_tracked(model, "", set()):
            raws = _layer_tensors(layer)
            record = weights_only_record(path, type(layer).__name__, raws)
            record.kind_inferred = False
            try:
                record.config = layer.get_config()
            except Exception:
                record.config = {}
            kernel = record.kernel
            record.spec = kernel_spec(record.class_name, record.config, kernel.shape if kernel else None)
            try:
                record.output_shape = tuple(layer.output.shape)
                record.input_shape = tuple(layer.input.shape)
            except Exception:  # not called symbolically, or called more than once
                pass
            layers.append(record)
        name, has_arch, inputs, outputs = model.name, False, [], []
        warnings.append("subclassed model: layer order is attribute order and connectivity is unknown")
    index = ModelIndex(
        format=ModelFormat.IN_MEMORY,
        source=f"<keras.Model {model.name!r}>",
        layers=layers,
        name=name,
        writer=f"Keras {_keras_version()}",
        model_config=config if has_arch else None,
        has_architecture=has_arch,
        input_shapes=inputs,
        output_shapes=outputs,
        warnings=warnings,
        keras_model=model,
    )
    return index


def _output_shape(layer: LayerRecord | None) -> Shape | None:
    """A model output is one tensor, so a layer's list of output shapes is not one (as in the file readers)."""
    shape = layer.output_shape if layer is not None else None
    return shape if isinstance(shape, tuple) else None


def _keras_version() -> str:
    try:
        from ..kerascompat import import_keras

        return str(import_keras().__version__)
    except Exception:
        return "?"
