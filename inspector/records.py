"""Framework-free records: what every reader produces and every consumer reads.

A reader turns a file (or a live ``keras.Model``) into a :class:`ModelIndex`: ordered
:class:`LayerRecord` s, each holding :class:`TensorRef` s that know a tensor's name, shape and
dtype now and read its bytes (all, or a slice) only when asked. Nothing here imports Keras.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import numpy as np

from .errors import LayerNotFoundError, close_matches, describe_received

__all__ = [
    "FILTER_KINDS",
    "Closeable",
    "KernelSpec",
    "LayerKind",
    "LayerRecord",
    "ModelFormat",
    "ModelIndex",
    "Shape",
    "TensorRef",
]

#: A tensor shape as Keras records it: ``None`` for unknown dimensions (usually the batch).
Shape = tuple[int | None, ...]

#: Reads a tensor: ``None`` means the whole array, otherwise a numpy-style index tuple.
TensorLoader = Callable[[tuple[Any, ...] | None], np.ndarray]


class Closeable(Protocol):
    """Anything with a ``close()``: an h5py.File, a file object, a zip window."""

    def close(self) -> None: ...


_Resource = TypeVar("_Resource", bound=Closeable)


class ModelFormat(StrEnum):
    """Where an index came from."""

    KERAS = "keras"  # Keras 3 .keras zip archive (also tf_keras's .keras)
    WEIGHTS_H5 = "weights.h5"  # Keras 3 save_weights: weights only, no architecture
    WEIGHTS_SHARDED = "weights.json"  # Keras 3 sharded save_weights
    LEGACY_H5 = "h5"  # legacy full-model HDF5 (Keras 3 legacy writer, tf.keras 2, Keras 2.0-era)
    LEGACY_WEIGHTS_H5 = "h5-weights"  # Keras 2 / tf.keras save_weights .h5: weights only
    SAVEDMODEL = "savedmodel"  # TensorFlow SavedModel directory
    IN_MEMORY = "keras.Model"  # a live keras.Model object


class LayerKind(StrEnum):
    """What a layer does, as far as slicing and display care."""

    CONV = "conv"  # Conv1D/2D/3D, any groups
    DEPTHWISE = "depthwise"  # DepthwiseConv1D/2D
    SEPARABLE = "separable"  # SeparableConv1D/2D
    TRANSPOSE = "transpose"  # Conv1D/2D/3DTranspose
    DENSE = "dense"  # Dense
    NORM = "norm"  # BatchNormalization, LayerNormalization, ...
    RNN = "rnn"  # SimpleRNN, LSTM, GRU, ConvLSTM, Bidirectional
    EMBEDDING = "embedding"
    ATTENTION = "attention"
    INPUT = "input"
    OTHER = "other"  # everything else (pooling, activation, reshape, custom, ...)


#: Kinds whose kernels feed output maps and can be sliced into filters.
FILTER_KINDS = frozenset(
    {LayerKind.CONV, LayerKind.DEPTHWISE, LayerKind.SEPARABLE, LayerKind.TRANSPOSE, LayerKind.DENSE}
)


@dataclass(frozen=True, eq=False)
class TensorRef:
    """One weight tensor: metadata now, bytes on demand.

    ``name`` is the variable's short name (``kernel``, ``bias``, ``cell/recurrent_kernel``); where
    the file does not say, it is ``vars/<i>``. ``location`` says where it lives in the file.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    location: str
    trainable: bool | None
    loader: TensorLoader = field(repr=False)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.numpy_dtype).itemsize

    @property
    def numpy_dtype(self) -> str:
        """A dtype numpy understands (bfloat16 is decoded to its ml_dtypes type, 2 bytes)."""
        return "uint16" if self.dtype == "bfloat16" else self.dtype

    def read(self, index: tuple[Any, ...] | None = None) -> np.ndarray:
        """The tensor (or ``tensor[index]``) as a numpy array; reads only what it needs where it can."""
        return self.loader(index)

    @staticmethod
    def from_array(name: str, array: np.ndarray, location: str = "", trainable: bool | None = True) -> TensorRef:
        """A tensor backed by an in-memory array (in-memory models, tests)."""
        array = np.asarray(array)

        def load(index: tuple[Any, ...] | None) -> np.ndarray:
            return array.copy() if index is None else np.array(array[index])

        return TensorRef(name, tuple(int(d) for d in array.shape), str(array.dtype), location or name,
                         trainable, load)


@dataclass(frozen=True)
class KernelSpec:
    """The config fields that decide how a kernel is laid out and applied (docs/formats.md §5).

    Fields a config does not state keep Keras's defaults; ``None`` means the reader could not know
    (weights-only files), as opposed to a default.
    """

    rank: int  # spatial rank: 1, 2 or 3 for conv layers, 0 for Dense
    kernel_size: tuple[int, ...] = ()
    strides: tuple[int, ...] | None = None
    padding: str | None = None
    dilation_rate: tuple[int, ...] | None = None
    groups: int | None = 1
    depth_multiplier: int | None = None
    data_format: str = "channels_last"
    activation: str | None = None
    use_bias: bool | None = None
    filters: int | None = None  # filters / units / output channels
    output_padding: tuple[int, ...] | None = None

    @property
    def channels_first(self) -> bool:
        return self.data_format == "channels_first"


@dataclass(eq=False)
class LayerRecord:
    """One layer of the model as stored in the file.

    ``path`` joins the names of enclosing nested models with ``/`` (``inner_seq/dense_1``).
    ``kind_inferred`` is true when the kind was guessed from weight names/shapes rather than read from a
    config (weights-only files, SavedModels without Keras metadata).
    """

    path: str
    class_name: str | None
    kind: LayerKind
    weights: list[TensorRef] = field(default_factory=list)
    kind_inferred: bool = False
    module: str | None = None
    spec: KernelSpec | None = None
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    input_shape: Shape | list[Shape] | None = None
    output_shape: Shape | list[Shape] | None = None
    inbound: tuple[str, ...] = ()  # paths of the layers whose outputs this layer reads
    trainable: bool = True
    custom: bool = False  # class not shipped with Keras (registered custom class, Lambda, subclass)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def params(self) -> int:
        return sum(w.size for w in self.weights)

    @property
    def trainable_params(self) -> int | None:
        if any(w.trainable is None for w in self.weights):
            return None
        return sum(w.size for w in self.weights if w.trainable)

    @property
    def non_trainable_params(self) -> int | None:
        if any(w.trainable is None for w in self.weights):
            return None
        return sum(w.size for w in self.weights if not w.trainable)

    @property
    def has_filters(self) -> bool:
        return self.kind in FILTER_KINDS and self.kernel is not None

    @property
    def kernel(self) -> TensorRef | None:
        """The main kernel: ``kernel``, or ``depthwise_kernel`` for separable layers."""
        for name in ("kernel", "depthwise_kernel"):
            ref = self.weight(name)
            if ref is not None:
                return ref
        return None

    @property
    def bias(self) -> TensorRef | None:
        return self.weight("bias")

    def weight(self, name: str) -> TensorRef | None:
        """The weight called ``name`` (exact short name), or None."""
        for ref in self.weights:
            if ref.name == name:
                return ref
        return None


@dataclass(eq=False)
class ModelIndex:
    """Ordered layers of one model, with lookups and totals. Close it (or use ``with``) when done."""

    format: ModelFormat
    source: str
    layers: list[LayerRecord]
    name: str | None = None
    writer: str | None = None  # e.g. "Keras 3.15.1", "tf.keras 2.21.0", "TensorFlow 2.4.1"
    model_config: dict[str, Any] | None = field(default=None, repr=False)  # the top-level model config
    has_architecture: bool = True  # False for weights-only files and config-less SavedModels
    input_shapes: list[Shape] = field(default_factory=list)
    output_shapes: list[Shape | None] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    keras_model: Any = field(default=None, repr=False)  # the live model, for IN_MEMORY indexes
    # Not constructor arguments: readers register what the index must close with add_closer() / own().
    _closers: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # -- container protocol ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[LayerRecord]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __enter__(self) -> ModelIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release open file handles. Reading weights afterwards reopens nothing and fails."""
        with self._lock:
            closers, self._closers = self._closers, []
            self._closed = True
        for closer in reversed(closers):
            with contextlib.suppress(Exception):  # closing must never raise over a real error
                closer()

    # -- owned resources ------------------------------------------------------------------------------
    def add_closer(self, closer: Callable[[], None]) -> None:
        """Call ``closer`` when the index is closed; closers run last-registered first.

        Readers register here every handle their lazy tensors read through. Registering on an index
        that is already closed runs ``closer`` at once, so nothing is left open.
        """
        with self._lock:
            if not self._closed:
                self._closers.append(closer)
                return
        with contextlib.suppress(Exception):
            closer()

    def own(self, resource: _Resource) -> _Resource:
        """Close ``resource`` with the index (``h5 = index.own(h5py.File(...))``); returns it."""
        self.add_closer(resource.close)
        return resource

    @property
    def holds_resources(self) -> bool:
        """Whether closing the index releases anything (false when every tensor reads by file offset)."""
        with self._lock:
            return bool(self._closers)

    # -- lookups --------------------------------------------------------------------------------------
    @property
    def paths(self) -> list[str]:
        return [layer.path for layer in self.layers]

    def layer(self, path: str) -> LayerRecord:
        """The layer at ``path``; a bare layer name works when it is unique in the model."""
        for layer in self.layers:
            if layer.path == path:
                return layer
        by_name = [layer for layer in self.layers if layer.name == path]
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            options = ", ".join(layer.path for layer in by_name)
            raise LayerNotFoundError(
                f"layer name {path!r} is ambiguous in this model; give the full path, one of: {options}. "
                f"Received: {describe_received(path)}"
            )
        suggestions = close_matches(path, self.paths)
        hint = f"did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else (
            f"the model has {len(self.layers)} layers; list them with 'inspector summary'"
        )
        raise LayerNotFoundError(f"no layer {path!r} in this model; {hint} Received: {describe_received(path)}")

    def __contains__(self, path: object) -> bool:
        return any(layer.path == path for layer in self.layers)

    def filter_layers(self) -> list[LayerRecord]:
        """Layers whose kernels can be sliced into filters, in model order."""
        return [layer for layer in self.layers if layer.has_filters]

    def consumers(self, path: str) -> list[LayerRecord]:
        """Layers that read the output of the layer at ``path`` directly."""
        return [layer for layer in self.layers if path in layer.inbound]

    # -- totals ---------------------------------------------------------------------------------------
    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def trainable_params(self) -> int | None:
        counts = [layer.trainable_params for layer in self.layers]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    @property
    def non_trainable_params(self) -> int | None:
        counts = [layer.non_trainable_params for layer in self.layers]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    @property
    def total_bytes(self) -> int:
        return sum(w.nbytes for layer in self.layers for w in layer.weights)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the ``inspector summary --json`` object)."""
        return {
            "format": str(self.format),
            "source": self.source,
            "name": self.name,
            "writer": self.writer,
            "has_architecture": self.has_architecture,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "input_shapes": [_shape_json(s) for s in self.input_shapes],
            "output_shapes": [_shape_json(s) for s in self.output_shapes],
            "warnings": list(self.warnings),
            "layers": [_layer_json(layer) for layer in self.layers],
        }


def _shape_json(shape: Shape | Sequence[Shape | None] | None) -> Any:
    """A shape as a JSON list, or a list of shapes (multi-input/output layers) as a list of those."""
    if shape is None:
        return None
    if any(isinstance(s, (tuple, list)) for s in shape) and all(isinstance(s, (tuple, list)) or s is None
                                                                for s in shape):
        return [_shape_json(s) if isinstance(s, (tuple, list)) else None for s in shape]
    return [None if d is None else int(d) for d in shape if not isinstance(d, (tuple, list))]


def _layer_json(layer: LayerRecord) -> dict[str, Any]:
    spec = layer.spec
    return {
        "path": layer.path,
        "class_name": layer.class_name,
        "kind": str(layer.kind),
        "kind_inferred": layer.kind_inferred,
        "params": layer.params,
        "trainable_params": layer.trainable_params,
        "input_shape": _shape_json(layer.input_shape),
        "output_shape": _shape_json(layer.output_shape),
        "inbound": list(layer.inbound),
        "custom": layer.custom,
        "spec": None if spec is None else {k: getattr(spec, k) for k in spec.__dataclass_fields__},
        "weights": [
            {"name": w.name, "shape": list(w.shape), "dtype": w.dtype, "trainable": w.trainable}
            for w in layer.weights
        ],
    }
