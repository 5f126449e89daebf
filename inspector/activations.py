"""Capture the outputs (and inputs) of chosen layers in ONE forward pass.

How: a Keras 3 Functional model runs by walking its graph node by node
(``Function._run_through_graph``), which is exactly what a plain eager ``model(x)`` does. We run the
same walk with a wrapper around each operation that keeps the tensors of the requested layers, and
we descend into nested Functional / Sequential models the same way, so inner layers
(``inner_seq/dense_1``) are captured in the same pass. Nothing is rebuilt, no layer gets a new
node, and the cost stays that of ``model(x)`` plus the copies we keep.

Layout: arrays are returned **channels_last** (``(N, *spatial, C)``) by default, whatever the
layer's ``data_format``; ``layout="native"`` returns what the layer produced. A tensor counts as
channels_first when the layer that made it has ``data_format="channels_first"`` (or is a
BatchNormalization on axis 1), or when it merely passes through a channels_first tensor
(activations, Add, Dropout, ...): :func:`inspector.graph.produces_channels_first`, the rule filters
also uses on index records. Rank-2 tensors ``(N, features)`` have no channel axis to move.

A layer called several times (shared layer) is captured at its first call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import kerascompat
from .errors import LayerNotFoundError, ModelNotRunnableError, close_matches
from .graph import produces_channels_first
from .inputs import model_channels_first

__all__ = ["Captured", "capture", "capture_io", "layer_paths"]


@dataclass
class Captured:
    """Tensors kept during one forward pass (numpy arrays, native layout), keyed by layer path."""

    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, list[np.ndarray]] = field(default_factory=dict)  # every positional tensor arg
    channels_first: dict[str, bool] = field(default_factory=dict)  # per captured output
    input_channels_first: dict[str, bool] = field(default_factory=dict)
    model_output: Any = None


def _sub_functional(op: Any) -> Any:
    """The Functional graph inside a nested model, or None for plain layers / subclassed models."""
    return kerascompat.functional_graph(op)


def layer_paths(model: Any, prefix: str = "") -> list[str]:
    """Every layer path of a model in model order, nested models flattened (containers excluded)."""
    out: list[str] = []
    for layer in model.layers:
        if _sub_functional(layer) is not None:
            out.extend(layer_paths(layer, f"{prefix}{layer.name}/"))
        else:
            out.append(f"{prefix}{layer.name}")
    return out


def _makes_channels_first(op: Any, inherited: bool) -> bool:
    # The rule filters applies to index records, here on the live layer's attributes.
    return produces_channels_first(type(op).__name__, getattr(op, "data_format", None), getattr(op, "axis", -1),
                                   inherited)


def _to_numpy(t: Any) -> np.ndarray:
    # np.asarray on a TF eager CPU tensor is a zero-copy view (``__array__``), whereas ``.numpy()``
    # copies: with every ResNet50 layer captured the copies alone cost ~10% of a forward pass.
    return np.asarray(t)


class _Recorder:
    def __init__(self, want_out: set[str], want_in: set[str], input_cf: bool) -> None:
        self.tree = kerascompat.import_keras().tree
        self.want_out, self.want_in = want_out, want_in
        self.want_any = want_out | want_in
        self.layout: dict[int, bool] = {}  # id(tensor) -> channels_first; tensors stay alive in the pass
        self.result = Captured()
        self.input_cf = input_cf

    def _cf_of(self, args: Sequence[Any]) -> bool:
        for t in self.tree.flatten(args):
            if id(t) in self.layout:
                return self.layout[id(t)]
        return self.input_cf

    def wants_inside(self, prefix: str) -> bool:
        return any(p.startswith(prefix) for p in self.want_any)

    def run(self, functional: Any, inputs: Any, prefix: str) -> Any:
        inputs = kerascompat.standardize_inputs(functional, inputs)
        for ref, t in zip(functional.inputs, self.tree.flatten(inputs), strict=False):
            self.layout.setdefault(id(t), self.input_cf)
            # InputLayers are not called during the walk: their output is the fed tensor.
            path = f"{prefix}{kerascompat.input_operation_name(ref)}"
            if path in self.want_out and path not in self.result.outputs:
                self.result.outputs[path] = _to_numpy(t)
                self.result.channels_first[path] = self.input_cf
        outputs = kerascompat.run_graph(functional, inputs, lambda op: self.wrap(op, prefix))
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            return outputs[0]
        return outputs

    def wrap(self, op: Any, prefix: str) -> Callable[..., Any]:
        path = f"{prefix}{op.name}"
        inner = _sub_functional(op)
        descend = inner is not None and self.wants_inside(path + "/")

        def call(*args: Any, **kwargs: Any) -> Any:
            cf_in = self._cf_of(args)
            if path in self.want_in and path not in self.result.inputs:
                self.result.inputs[path] = [_to_numpy(t) for t in self.tree.flatten(args)]
                self.result.input_channels_first[path] = cf_in
            if descend:
                saved, self.input_cf = self.input_cf, cf_in
                try:
                    outputs = self.run(inner, args[0] if len(args) == 1 else list(args), path + "/")
                finally:
                    self.input_cf = saved
            else:
                outputs = run_operation(path, op, *args, **kwargs)
            cf_out = _makes_channels_first(op, cf_in) if inner is None else self._cf_of([outputs])
            for t in self.tree.flatten(outputs):
                self.layout[id(t)] = cf_out
            if path in self.want_out and path not in self.result.outputs:
                flat = self.tree.flatten(outputs)
                self.result.outputs[path] = _to_numpy(flat[0])
                self.result.channels_first[path] = cf_out
            return outputs

        return call


def run_operation(path: str, op: Any, *args: Any, **kwargs: Any) -> Any:
    """One layer call of the forward pass, on any CPU (:func:`inspector.kerascompat.call`).

    When neither the eager kernel nor the XLA-compiled call can run it, the error names the layer.
    """
    try:
        return kerascompat.call(op, *args, **kwargs)
    except Exception as exc:
        if not kerascompat.is_backend_error(exc):
            raise
        raise ModelNotRunnableError(
            f"layer {path!r} ({type(op).__name__}) cannot run on this input on this CPU, eagerly or "
            f"XLA-compiled: {kerascompat.first_line(exc)}; leave TF_ENABLE_ONEDNN_OPTS unset (or 1) "
            f"and check the input's shape. Received: input shapes "
            f"{[tuple(getattr(a, 'shape', ())) for a in args]}") from exc


def _check_paths(model: Any, paths: Iterable[str]) -> list[str]:
    known = layer_paths(model)
    known_set = set(known)
    out = []
    for p in paths:
        if p in known_set:
            out.append(p)
            continue
        by_name = [k for k in known if k.rsplit("/", 1)[-1] == p]
        if len(by_name) == 1:
            out.append(by_name[0])
            continue
        by_bare: dict[str, str] = {}
        for k in known:
            by_bare.setdefault(k.rsplit("/", 1)[-1], k)
        hints = close_matches(p, known)
        hints += [by_bare[n] for n in close_matches(p, by_bare) if by_bare[n] not in hints]
        hints = hints[:5]
        raise LayerNotFoundError(
            f"no layer {p!r} in the model; give a layer path"
            + (f" such as {', '.join(hints)}" if hints else f" (the model has {len(known)} layers)")
            + f". Received: {p!r}")
    return out


def capture_io(model: Any, x: Any, outputs: Iterable[str] = (), inputs: Iterable[str] = (),
               *, input_channels_first: bool | None = None) -> Captured:
    """Run ``model`` once on ``x`` and keep the outputs of ``outputs`` and the inputs of ``inputs``.

    Arrays are in the layer's native layout; ``Captured.channels_first`` says which are channels_first.
    """
    functional = _sub_functional(model)
    if functional is None:
        raise ModelNotRunnableError(
            "capturing inner layers needs a Functional or Sequential Keras 3 model; subclassed models "
            f"only expose their final output. Received: {type(model).__name__} {model.name!r}")
    want_out = set(_check_paths(model, outputs))
    want_in = set(_check_paths(model, inputs))
    cf = model_channels_first(model) if input_channels_first is None else input_channels_first
    recorder = _Recorder(want_out, want_in, cf)
    # A built Sequential's graph holds its input layer; feeding it goes through the same walk.
    recorder.result.model_output = recorder.run(functional, x, "")
    return recorder.result


def to_channels_last(array: np.ndarray, channels_first: bool) -> np.ndarray:
    """Move the channel axis last for rank >= 3 channels_first arrays (no copy otherwise)."""
    if channels_first and array.ndim >= 3:
        return np.moveaxis(array, 1, -1)
    return array


def capture(model: Any, x: Any, paths: Iterable[str], *, layout: str = "channels_last") -> dict[str, np.ndarray]:
    """Outputs of the layers at ``paths`` for input ``x`` (with batch axis), from one forward pass.

    ``layout="channels_last"`` (default) returns ``(N, *spatial, C)`` for every layer;
    ``layout="native"`` returns the arrays as the layers produced them.
    """
    if layout not in ("channels_last", "native"):
        raise ValueError(f"layout must be 'channels_last' or 'native'. Received: {layout!r}")
    paths = list(paths)
    if isinstance(x, np.ndarray) and x.ndim >= 2 and len(x) > 1:
        # An eager pass holds every intermediate tensor of the batch (kerascompat.EAGER_PASS_BYTES): a
        # folder of inputs runs in batches that fit, each layer's outputs joined afterwards.
        step = kerascompat.eager_batch(model, x.shape, len(x))
        if step < len(x):
            parts = [capture(model, x[i:i + step], paths, layout=layout) for i in range(0, len(x), step)]
            return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    result = capture_io(model, x, outputs=paths)
    resolved = _check_paths(model, paths)
    out: dict[str, np.ndarray] = {}
    for asked, path in zip(paths, resolved, strict=True):
        arr = result.outputs[path]
        if layout == "channels_last":
            arr = to_channels_last(arr, result.channels_first[path])
        out[asked] = arr
    return out
