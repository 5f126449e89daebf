"""What Keras layer classes are: their kind, their variable names and order, their kernel spec.

One table serves every reader. Variable orders follow docs/formats.md §1.4 (verified by value
matching for Keras 3); tf.keras 2 names that differ are listed as aliases.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .graph import BN_CLASSES
from .layouts import depth_multiplier, map_count
from .records import KernelSpec, LayerKind
from .shapes import expand_ints

__all__ = [
    "CONTAINER_CLASSES",
    "canonical_weight_name",
    "class_from_group_name",
    "is_raw_op",
    "kernel_spec",
    "kind_of_class",
    "non_trainable_names",
    "snake_case",
    "variable_names",
]

CONTAINER_CLASSES = frozenset({"Sequential", "Functional", "Model"})

_KIND_BY_CLASS: dict[str, LayerKind] = {
    **{f"Conv{d}D": LayerKind.CONV for d in (1, 2, 3)},
    **{f"Convolution{d}D": LayerKind.CONV for d in (1, 2, 3)},
    **{f"Conv{d}DTranspose": LayerKind.TRANSPOSE for d in (1, 2, 3)},
    **{f"Convolution{d}DTranspose": LayerKind.TRANSPOSE for d in (1, 2, 3)},
    "Deconv2D": LayerKind.TRANSPOSE,
    "Deconvolution2D": LayerKind.TRANSPOSE,
    **{f"DepthwiseConv{d}D": LayerKind.DEPTHWISE for d in (1, 2)},
    **{f"SeparableConv{d}D": LayerKind.SEPARABLE for d in (1, 2)},
    **{f"SeparableConvolution{d}D": LayerKind.SEPARABLE for d in (1, 2)},
    "Dense": LayerKind.DENSE,
    "BatchNormalization": LayerKind.NORM,
    "SyncBatchNormalization": LayerKind.NORM,
    "LayerNormalization": LayerKind.NORM,
    "GroupNormalization": LayerKind.NORM,
    "RMSNormalization": LayerKind.NORM,
    "UnitNormalization": LayerKind.NORM,
    "Normalization": LayerKind.NORM,
    "SimpleRNN": LayerKind.RNN,
    "LSTM": LayerKind.RNN,
    "GRU": LayerKind.RNN,
    "CuDNNLSTM": LayerKind.RNN,
    "CuDNNGRU": LayerKind.RNN,
    "ConvLSTM1D": LayerKind.RNN,
    "ConvLSTM2D": LayerKind.RNN,
    "ConvLSTM3D": LayerKind.RNN,
    "Bidirectional": LayerKind.RNN,
    "RNN": LayerKind.RNN,
    "Embedding": LayerKind.EMBEDDING,
    "MultiHeadAttention": LayerKind.ATTENTION,
    "GroupedQueryAttention": LayerKind.ATTENTION,
    "Attention": LayerKind.ATTENTION,
    "AdditiveAttention": LayerKind.ATTENTION,
    "InputLayer": LayerKind.INPUT,
}

# Variable names in save order (Keras 3), keyed by class. Optional entries depend on config flags
# and are resolved in :func:`variable_names`.
_RNN_CELL_VARS = ("kernel", "recurrent_kernel", "bias")

# tf.keras 2 / Keras 2 names mapped to the Keras 3 names used throughout the index.
_ALIASES = {"depthwise_kernel@DepthwiseConv1D": "kernel", "depthwise_kernel@DepthwiseConv2D": "kernel"}


@functools.lru_cache(maxsize=4096)  # a deep model repeats a few class names thousands of times
def snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``: how ``.keras`` files name a layer's HDF5 group."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


def is_raw_op(entry: Mapping[str, Any]) -> bool:
    """A Functional config node that is a raw op (``x + y``, ``ops.relu``), not a Layer."""
    module = entry.get("module") or ""
    return module.startswith("keras.src.ops")


_CLASS_BY_SNAKE: dict[str, str] = {}


def class_from_group_name(group: str) -> str | None:
    """A Keras class from a ``.keras``/``.weights.h5`` group name such as ``conv2d_3`` (``snake_case`` inverted
    for the classes this table knows)."""
    if not _CLASS_BY_SNAKE:
        for cls in [*_KIND_BY_CLASS, "PReLU", "EinsumDense"]:
            _CLASS_BY_SNAKE.setdefault(snake_case(cls), cls)
    return _CLASS_BY_SNAKE.get(re.sub(r"_\d+$", "", group)) or _CLASS_BY_SNAKE.get(group)


def kind_of_class(class_name: str | None) -> LayerKind:
    if class_name is None:
        return LayerKind.OTHER
    return _KIND_BY_CLASS.get(class_name, LayerKind.OTHER)


def canonical_weight_name(class_name: str | None, name: str) -> str:
    """Map a stored variable name (tf.keras 2 spelling, ``:0`` suffix) to the Keras 3 short name."""
    name = name.split(":", 1)[0]
    return _ALIASES.get(f"{name}@{class_name}", name)


def variable_names(class_name: str | None, config: Mapping[str, Any], count: int) -> list[str] | None:
    """The short names of a layer's ``count`` saved variables, in save order, or None if unknown."""
    c = config
    names: list[str] | None
    match class_name:
        case "Dense" | "EinsumDense":
            names = ["kernel"] + (["bias"] if c.get("use_bias", True) or c.get("bias_axes") else [])
        case _ if kind_of_class(class_name) in (LayerKind.CONV, LayerKind.TRANSPOSE, LayerKind.DEPTHWISE):
            names = ["kernel"] + (["bias"] if c.get("use_bias", True) else [])
        case _ if kind_of_class(class_name) is LayerKind.SEPARABLE:
            names = ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if c.get("use_bias", True) else [])
        case _ if class_name in BN_CLASSES:
            names = (["gamma"] if c.get("scale", True) else []) + (["beta"] if c.get("center", True) else [])
            names += ["moving_mean", "moving_variance"]
            if c.get("renorm"):
                names += ["moving_stddev", "renorm_mean", "renorm_stddev"]
        case "LayerNormalization":
            if c.get("rms_scaling"):
                names = ["gamma"]
            else:
                names = (["gamma"] if c.get("scale", True) else []) + (["beta"] if c.get("center", True) else [])
        case "GroupNormalization":
            names = (["gamma"] if c.get("scale", True) else []) + (["beta"] if c.get("center", True) else [])
        case "RMSNormalization":
            names = ["scale"]
        case "Normalization":
            names = ["mean", "variance", "count"]
        case "Embedding":
            names = ["embeddings"]
        case "PReLU":
            names = ["alpha"]
        case "SimpleRNN" | "LSTM" | "GRU" | "ConvLSTM1D" | "ConvLSTM2D" | "ConvLSTM3D":
            names = [f"cell/{n}" for n in _RNN_CELL_VARS[: 3 if c.get("use_bias", True) else 2]]
        case _:
            names = None
    if names is None or len(names) != count:
        return None
    return names


def non_trainable_names(class_name: str | None) -> frozenset[str]:
    """Variables that are non-trainable even in a trainable layer."""
    if class_name in BN_CLASSES:
        return frozenset({"moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev"})
    if class_name == "Normalization":
        return frozenset({"mean", "variance", "count"})
    return frozenset()


def _activation_name(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):  # serialized activation object or function
        inner = value.get("config")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, Mapping) and "name" in inner:
            return str(inner["name"])
        return str(value.get("class_name", "custom"))
    return str(value)


def _rank_of(class_name: str) -> int:
    match = re.search(r"(\d)D", class_name)
    return int(match.group(1)) if match else 2


def kernel_spec(class_name: str | None, config: Mapping[str, Any],
                kernel_shape: Sequence[int] | None = None) -> KernelSpec | None:
    """The slicing-relevant config of a filter layer; None for other layers.

    ``kernel_shape`` fills what a config lacks (weights-only files) and wins on kernel size.
    """
    kind = kind_of_class(class_name)
    if class_name is None or kind not in (
        LayerKind.CONV, LayerKind.DEPTHWISE, LayerKind.SEPARABLE, LayerKind.TRANSPOSE, LayerKind.DENSE
    ):
        return None
    c = config
    if kind is LayerKind.DENSE:
        units = c.get("units", map_count(kind, kernel_shape) if kernel_shape else None)
        return KernelSpec(rank=0, activation=_activation_name(c.get("activation", "linear")),
                          use_bias=c.get("use_bias", True) if c else None, filters=units)
    rank = _rank_of(class_name)
    ksize = tuple(kernel_shape[:rank]) if kernel_shape else expand_ints(c.get("kernel_size"), rank)
    padding = c.get("padding", "valid") if c else None
    fmt = c.get("data_format") or "channels_last"
    if kind in (LayerKind.DEPTHWISE, LayerKind.SEPARABLE):
        mult = int(c.get("depth_multiplier", depth_multiplier(kernel_shape) if kernel_shape else 1))
        filters = None if kind is LayerKind.DEPTHWISE else c.get("filters")
    else:
        mult = None
        filters = c.get("filters")
    out_pad = c.get("output_padding")
    return KernelSpec(
        rank=rank,
        kernel_size=tuple(int(k) for k in ksize),
        strides=expand_ints(c.get("strides"), rank) if c else None,
        padding=str(padding).lower() if padding is not None else None,
        dilation_rate=expand_ints(c.get("dilation_rate"), rank) if c else None,
        groups=int(c.get("groups") or 1) if c else None,
        depth_multiplier=mult,
        data_format=str(fmt),
        activation=_activation_name(c.get("activation", "linear")) if c else None,
        use_bias=bool(c.get("use_bias", True)) if c else None,
        filters=None if filters is None else int(filters),
        output_padding=None if out_pad is None else expand_ints(out_pad, rank),
    )
