"""A runnable ``keras.Model`` from a model index: the only module that builds models from files.

Routes, tried in this order (docs/decomposition.md, "Compatibility path"):

1. In-memory models: ``index.keras_model`` as is.
2. ``.keras`` and legacy ``.h5`` files: Keras 3 ``load_model(path, safe_mode=..., compile=False)``.
   ``compile=False`` matters: old files carry Keras 2 optimizer settings (``lr``, ``decay``) that
   Keras 3 rejects although the model itself is fine (docs/formats.md §3.3).
3. The compatibility path, for files whose layer configs Keras 3 rejects (tf.keras 2 writes
   ``groups`` on DepthwiseConv2D, docs/formats.md §3.2) and for SavedModels with tf.keras metadata: the
   model is rebuilt from ``index.model_config`` with every layer's unknown constructor arguments
   dropped, and the weights are copied from the index's tensors layer by layer (``set_weights``).

Nothing stored in a file is executed unless the caller passes ``safe_mode=False`` (the CLI's
``--unsafe``): Keras's own safe mode guards routes 2 and 3, and route 3 additionally refuses
Lambda / TFOpLambda layers up front, because the legacy config path would otherwise unpickle
their bytecode. Keras is imported lazily, inside functions.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Iterator, Mapping
from typing import Any

from . import kerascompat
from .errors import InspectorError, ModelNotRunnableError, UnsafeModelError, describe_received
from .records import LayerRecord, ModelFormat, ModelIndex

__all__ = ["find_layer", "load_runnable", "rebuild_from_index"]

# Layer classes whose config carries Python code (bytecode or a function name to resolve).
_CODE_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})

# Keyword arguments every Keras 3 layer accepts through ``Layer.__init__`` (it pops the last three).
_BASE_KWARGS = frozenset({"activity_regularizer", "trainable", "dtype", "autocast", "name",
                          "input_shape", "input_dim", "batch_input_shape", "batch_shape"})


def load_runnable(index_or_path: ModelIndex | str | os.PathLike[str] | Any, *,
                  safe_mode: bool = True) -> Any:
    """A ``keras.Model`` that can be called on inputs, from an index, a path or a live model.

    Raises :class:`ModelNotRunnableError` (one line) when the model cannot run: weights-only files,
    custom layer classes whose code is not importable, SavedModels without layer configs; and
    :class:`UnsafeModelError` when running it would execute code stored in the file.
    """
    from .readers.live import is_keras_model

    if is_keras_model(index_or_path):
        return _keras3_only(index_or_path)
    if isinstance(index_or_path, ModelIndex):
        return _from_index(index_or_path, safe_mode)
    if isinstance(index_or_path, (str, os.PathLike)):
        from .loader import open_model

        with open_model(index_or_path) as index:
            return _from_index(index, safe_mode)
    raise ModelNotRunnableError(
        "load_runnable takes a ModelIndex, a model path or a keras.Model; "
        f"Received: an object of type {type(index_or_path).__name__}")


def _keras3_only(model: Any) -> Any:
    if type(model).__module__.startswith(("tf_keras", "tensorflow")):
        raise ModelNotRunnableError(
            "activations need a Keras 3 model, but this is a tf.keras (Keras 2) object; save it and open "
            f"the file instead (the compatibility path rebuilds it in Keras 3). Received: {model.name!r}")
    return model


def _require_keras() -> None:
    """Running a model needs Keras and its TensorFlow backend: the optional 'run' extra."""
    import importlib.util

    from .errors import missing_dependency

    for module in ("keras", "tensorflow"):
        if importlib.util.find_spec(module) is None:
            raise missing_dependency(module, "run", "running the model (activations, decomposition)")


def _from_index(index: ModelIndex, safe_mode: bool) -> Any:
    _require_keras()
    if index.format is ModelFormat.IN_MEMORY and index.keras_model is not None:
        return _keras3_only(index.keras_model)
    if not index.has_architecture or index.model_config is None:
        if index.format is ModelFormat.SAVEDMODEL:
            raise ModelNotRunnableError(
                "this SavedModel has no Keras layer configs (a Keras 3 export or tf.saved_model.save), so "
                "only its final output could be computed, not the activations of inner layers; filters and "
                f"statistics still work. Received: {index.source}")
        raise ModelNotRunnableError(
            "the file holds weights but no architecture, so the model cannot be run; filters and "
            f"statistics still work, or open the matching .keras / .h5 model. Received: {index.source}")
    _refuse_unsafe_layers(index, safe_mode)
    first_error: Exception | None = None
    if index.format in (ModelFormat.KERAS, ModelFormat.LEGACY_H5):
        try:
            return _keras_load(index.source, safe_mode)
        except InspectorError:
            raise
        except Exception as exc:  # Keras raises TypeError/ValueError/... on configs it rejects
            first_error = exc
    try:
        return rebuild_from_index(index, safe_mode=safe_mode)
    except InspectorError:
        raise
    except Exception as exc:
        why = _short(exc, 160) if first_error is None else \
            f"{_short(first_error, 120)}; rebuilding from the config failed too: {_short(exc, 120)}"
        raise ModelNotRunnableError(
            f"Keras cannot build this model ({why}); filters and statistics still work. "
            f"Received: {index.source}") from exc


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refuse_unsafe_layers(index: ModelIndex, safe_mode: bool) -> None:
    if not safe_mode:
        return
    risky = [layer.path for layer in index.layers if layer.class_name in _CODE_CLASSES]
    if risky:
        raise UnsafeModelError(
            f"running this model would execute Python code stored in the file (Lambda layers: "
            f"{', '.join(risky[:3])}); pass --unsafe (safe_mode=False) only if you trust the file. "
            f"Received: {index.source}")


def _keras_load(path: str, safe_mode: bool) -> Any:
    keras = kerascompat.import_keras()

    try:
        return keras.saving.load_model(path, safe_mode=safe_mode, compile=False)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
            raise UnsafeModelError(
                "running this model would execute Python code stored in the file; pass --unsafe "
                f"(safe_mode=False) only if you trust the file. Received: {path}") from exc
        raise


# -- compatibility path -------------------------------------------------------------------------------

def rebuild_from_index(index: ModelIndex, *, safe_mode: bool = True) -> Any:
    """Rebuild the model from ``index.model_config`` (Keras 2 or 3 spelling) and copy its weights.

    Constructor arguments the installed Keras does not accept (``groups`` on a tf.keras 2
    DepthwiseConv2D, ...) are dropped: they only ever carried their default value in such files,
    and the weights are checked against the rebuilt layers' shapes, so a dropped argument that
    mattered shows up as a shape mismatch instead of a silently different model.
    """
    keras = kerascompat.import_keras()
    if index.model_config is None:
        raise ModelNotRunnableError(f"the model has no stored architecture. Received: {index.source}")
    config = copy.deepcopy(dict(index.model_config))
    _clean_config(config, keras.layers)
    if not _is_keras3_config(config):
        _renumber_nested_model_nodes(config)
    if _is_keras3_config(config):
        model = kerascompat.deserialize(config, safe_mode=safe_mode)
    else:
        model = kerascompat.legacy_model_from_config(config, safe_mode=safe_mode)
    _copy_weights(index, model)
    return model


def _is_keras3_config(config: Mapping[str, Any]) -> bool:
    return "module" in config or "registered_name" in config


def _iter_layer_entries(config: Any) -> Iterator[dict[str, Any]]:
    """Every layer entry of a model config, nested models included (the model entry itself too)."""
    if isinstance(config, dict) and "class_name" in config and isinstance(config.get("config"), dict):
        yield config
        for sub in config["config"].get("layers") or []:
            yield from _iter_layer_entries(sub)
        inner = config["config"].get("layer")  # wrappers: TimeDistributed, Bidirectional
        if isinstance(inner, dict):
            yield from _iter_layer_entries(inner)


def _accepted_kwargs(cls: type) -> frozenset[str] | None:
    """Constructor keywords a Keras class accepts, following ``**kwargs`` up the MRO; None = anything."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return frozenset(names)
        if klass.__module__.startswith("keras.src.layers.layer"):
            return frozenset(names | _BASE_KWARGS)
    return None


def _clean_config(config: dict[str, Any], layers_module: Any) -> None:
    for entry in _iter_layer_entries(config):
        cls = getattr(layers_module, str(entry.get("class_name")), None)
        if not isinstance(cls, type) or entry.get("class_name") in ("Functional", "Model", "Sequential"):
            continue
        accepted = _accepted_kwargs(cls)
        if accepted is None:
            continue
        cfg = entry["config"]
        for key in [k for k in cfg if k not in accepted and k not in _BASE_KWARGS]:
            del cfg[key]


_CONTAINERS = ("Functional", "Model", "Sequential")


def _node_refs(obj: Any) -> Iterator[list[Any]]:
    """Keras 2 tensor references ``[layer_name, node_index, tensor_index, (kwargs)]``, mutable in place."""
    if isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int) and isinstance(obj[2], int):
            yield obj
            return
        for item in obj:
            yield from _node_refs(item)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _node_refs(value)


def _renumber_nested_model_nodes(config: dict[str, Any]) -> None:
    """Shift references to nested models' call nodes down by one, at every Functional level.

    A tf.keras 2 nested model owns node 0 (its own graph, made when it was built) and the outer
    model's call is node 1, so configs say ``["inner_seq", 1, 0]``. A rebuilt Keras 3 nested model
    has no such node: the outer call is node 0.
    """
    for entry in _iter_layer_entries(config):
        if entry.get("class_name") not in _CONTAINERS:
            continue
        cfg = entry["config"]
        layers = [e for e in cfg.get("layers") or [] if isinstance(e, dict)]
        nested = {str(e.get("config", {}).get("name") or e.get("name")) for e in layers
                  if e.get("class_name") in _CONTAINERS}
        if not nested:
            continue
        refs = [r for e in layers for r in _node_refs(e.get("inbound_nodes") or [])]
        refs += list(_node_refs(cfg.get("output_layers") or []))
        for name in nested:
            mine = [r for r in refs if r[0] == name]
            if mine and all(r[1] >= 1 for r in mine):
                for r in mine:
                    r[1] -= 1


def find_layer(model: Any, path: str) -> Any:
    """The Keras layer at an index path (``inner_seq/dense_1``), walking nested models by name."""
    obj = model
    for part in path.split("/"):
        obj = obj.get_layer(part)
    return obj


def _short_var_name(var: Any) -> str:
    name = str(getattr(var, "path", None) or getattr(var, "name", ""))
    return name.split(":", 1)[0].rsplit("/", 1)[-1]


def _copy_weights(index: ModelIndex, model: Any) -> None:
    import numpy as np

    for record in index.layers:
        if not record.weights:
            continue
        try:
            layer = find_layer(model, record.path)
        except (ValueError, KeyError, AttributeError) as exc:
            raise ModelNotRunnableError(
                f"the rebuilt model has no layer {record.path!r} although the file stores its weights. "
                f"Received: {index.source}") from exc
        values = _ordered_values(record, layer)
        targets = [tuple(int(d) for d in w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if got != targets:
            raise ModelNotRunnableError(
                f"stored weights of layer {record.path!r} do not fit the rebuilt layer; expected shapes "
                f"{targets}. Received: {describe_received(got)}")
        layer.set_weights([np.asarray(v) for v in values])


def _ordered_values(record: LayerRecord, layer: Any) -> list[Any]:
    """The record's tensors in the order of ``layer.weights``: by short name, else by position."""
    refs = list(record.weights)
    by_name = {ref.name.rsplit("/", 1)[-1]: ref for ref in refs}
    names = [_short_var_name(w) for w in layer.weights]
    if len(by_name) == len(refs) and len(set(names)) == len(names) and all(n in by_name for n in names):
        return [by_name[n].read() for n in names]
    return [ref.read() for ref in refs]
