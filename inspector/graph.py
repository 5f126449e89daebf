"""Graph rules: what a layer class does to the channels of the tensor it reads, and BN folding.

Why a module of its own (and not :mod:`inspector.kinds`): ``kinds`` answers "what is this class and
how are its variables stored" for the readers; this module answers "how do maps travel through the
graph" for the consumers (filters, stats, decompose, export, dashboard). Every class-name table those
consumers need lives here once, and so do the two rules they used to re-derive:

* :func:`produces_channels_first`: is the tensor a layer produces channels_first? The same rule on
  index records (:func:`tensor_channels_first`) and on live Keras layers (``inspector.activations``).
* :func:`bn_fold_plan`: can the BatchNormalization after (or before) a layer be folded into its
  kernels, and if not, why not, in one user-facing sentence. Filters, stats, decompose, export and the
  dashboard all ask it, so they can never disagree (docs/formats.md §5.2 for the fold algebra).

Framework-free: numpy only, works on a :class:`~inspector.records.ModelIndex`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import NotAFilterLayerError, SelectionError
from .records import LayerKind, LayerRecord, ModelIndex

__all__ = [
    "ACTIVATION_LAYERS",
    "BN_CLASSES",
    "CHANNEL_PRESERVING",
    "FLAT_OUTPUT",
    "GLOBAL_POOLING",
    "MERGE_LAYERS",
    "POSITION_PRESERVING",
    "SHAPE_PRESERVING",
    "BNFoldPlan",
    "bn_fold_plan",
    "output_rank",
    "produces_channels_first",
    "tensor_channels_first",
]

# -- class-name tables ------------------------------------------------------------------------------------

BN_CLASSES = frozenset({"BatchNormalization", "SyncBatchNormalization"})
#: Element-wise activation layers: output channel c is f(input channel c) at the same position.
_ELEMENTWISE_ACTIVATIONS = frozenset({"Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU"})
#: Activation layers a decomposition may report after a folded BN (Softmax mixes channels but its value
#: at map j is still "the activated output of map j").
ACTIVATION_LAYERS = _ELEMENTWISE_ACTIVATIONS | {"Softmax"}
#: Identity at inference (noise and dropout layers) or plain pass-through layers.
_INFERENCE_IDENTITY = frozenset({
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization", "Identity",
})
_SPATIAL_RESAMPLING = frozenset(
    {f"{op}{d}D" for op in ("MaxPooling", "AveragePooling", "MaxPool", "AvgPool", "ZeroPadding", "Cropping",
                            "UpSampling") for d in (1, 2, 3)})
MERGE_LAYERS = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})
#: Output channel c is computed from input channel c alone, so "map j" keeps its index through them.
#: Softmax, LayerNormalization etc. mix channels and are not here.
CHANNEL_PRESERVING = BN_CLASSES | _ELEMENTWISE_ACTIVATIONS | _INFERENCE_IDENTITY | _SPATIAL_RESAMPLING | {
    "Rescaling"}
#: Between Flatten and Dense: layers that keep every flattened position where it is.
POSITION_PRESERVING = _ELEMENTWISE_ACTIVATIONS | (_INFERENCE_IDENTITY - {
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"})
#: Output shape == input shape (docs/formats.md §5.3), channel-mixing ones included.
SHAPE_PRESERVING = _ELEMENTWISE_ACTIVATIONS | _INFERENCE_IDENTITY | BN_CLASSES | {
    "Softmax", "LayerNormalization", "GroupNormalization", "RMSNormalization", "UnitNormalization",
    "Normalization", "Rescaling", "Masking"}
GLOBAL_POOLING = frozenset(
    {f"Global{op}Pooling{d}D" for op in ("Average", "Max") for d in (1, 2, 3)}
    | {f"Global{op}Pool{d}D" for op in ("Avg", "Max") for d in (1, 2, 3)})
#: Layers whose output has no channels_first layout whatever they read (features last or rank 2).
FLAT_OUTPUT = frozenset({"Dense", "EinsumDense", "Embedding", "Flatten", "Reshape", "Permute"})


# -- channel layout of a tensor -----------------------------------------------------------------------------

def produces_channels_first(class_name: str | None, data_format: Any, axis: Any, inherited: bool) -> bool:
    """Is the tensor this layer produces channels_first? ``inherited``: is the tensor it reads?

    A layer with a ``data_format`` says so; a BatchNormalization on axis 1 is channels_first; layers
    that flatten or re-lay features (Dense, Flatten, Reshape, ...) are not; every other layer passes
    its input's layout through (activations, Add, Dropout, ...). ``data_format``/``axis`` come from a
    config (index records) or from the live layer's attributes (``inspector.activations``).
    """
    if data_format in ("channels_first", "channels_last"):
        return data_format == "channels_first"
    if class_name in BN_CLASSES:
        return axis == 1 or (isinstance(axis, (list, tuple)) and list(axis) == [1])
    if class_name in FLAT_OUTPUT:
        return False
    return inherited


def _model_default_channels_first(index: ModelIndex) -> bool:
    """Layout of the model input: that of the first layer stating a data_format (as a forward pass does)."""
    for layer in index.layers:
        fmt = layer.config.get("data_format")
        if fmt in ("channels_first", "channels_last"):
            return fmt == "channels_first"
    return False


def tensor_channels_first(index: ModelIndex, layer: LayerRecord) -> bool:
    """Is the output of ``layer`` (an index record) channels_first? :func:`produces_channels_first` applied
    along the producers, starting from the model input's layout."""
    memo: dict[str, bool] = {}
    default = _model_default_channels_first(index)

    def of(rec: LayerRecord, depth: int) -> bool:
        if rec.path in memo:
            return memo[rec.path]
        producers = [index.layer(p) for p in rec.inbound if p in index]
        inherited = of(producers[0], depth + 1) if producers and depth < 256 else default
        memo[rec.path] = produces_channels_first(rec.class_name, rec.config.get("data_format"),
                                                 rec.config.get("axis", -1), inherited)
        return memo[rec.path]

    return of(layer, 0)


# -- BatchNormalization folding ----------------------------------------------------------------------------

def output_rank(layer: LayerRecord) -> int | None:
    """Number of axes of the layer's output (batch included), when known."""
    shape = layer.output_shape
    if isinstance(shape, tuple):
        return len(shape)
    return None if layer.spec is None or layer.kind is LayerKind.DENSE else layer.spec.rank + 2


def _on_channel_axis(bn: LayerRecord, channels_first: bool, ndim: int | None) -> bool:
    """True when the BN normalises the channel axis, the only case in which folding it is exact."""
    axis = bn.config.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    axis = int(axis)
    want = 1 if channels_first else -1
    if axis == want:
        return True
    return ndim is not None and axis % ndim == want % ndim


@dataclass(frozen=True, eq=False)
class BNFoldPlan:
    """Whether (and how) a BatchNormalization folds into ``layer_path``'s kernels.

    ``ok`` false: ``reason`` is one user-facing sentence saying why not. ``ok`` true: ``bn`` is the
    BatchNormalization, ``where`` says whether it reads the layer's output (``"after"``) or feeds its
    input (``"before"``), :meth:`affine` gives its per-channel ``BN(x) = x·scale + shift`` and
    ``activation`` is the activation layer reading the BN's output, if exactly one does (after only).
    """

    layer_path: str
    where: str
    reason: str | None = None
    bn: LayerRecord | None = None
    activation: LayerRecord | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def bn_path(self) -> str | None:
        return None if self.bn is None else self.bn.path

    def affine(self, idx: tuple[Any, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(scale, shift)`` with ``BN(x) = x·scale + shift``, read at ``idx`` only (float64)."""
        bn = self.bn
        if bn is None:
            raise SelectionError(self.error_message())
        eps = float(bn.config.get("epsilon", 1e-3))

        def get(name: str, default: float) -> np.ndarray:
            ref = bn.weight(name)
            # gamma/beta are absent with scale=False/center=False; moving stats are checked by the planner.
            return np.asarray(default if ref is None else ref.read(idx), dtype=np.float64)

        scale = get("gamma", 1.0) / np.sqrt(get("moving_variance", 1.0) + eps)
        return scale, get("beta", 0.0) - get("moving_mean", 0.0) * scale

    def error_message(self) -> str:
        """The refusal as a three-part error message (what, accepted, received)."""
        return (f"cannot fold a BatchNormalization {self.where} {self.layer_path!r}: {self.reason}; "
                f"turn BN folding off for this layer. Received: fold_bn={self.where!r}")

    def require(self) -> BNFoldPlan:
        """This plan, or SelectionError with the reason when the BN cannot be folded."""
        if not self.ok:
            raise SelectionError(self.error_message())
        return self


def _names(layers: list[LayerRecord]) -> str:
    return ", ".join(f"{c.path} ({c.class_name})" for c in layers) or "nothing known"


def bn_fold_plan(index: ModelIndex | None, layer: LayerRecord | str, where: str = "after", *,
                 stage: str | None = None) -> BNFoldPlan:
    """Can a BatchNormalization be folded into ``layer``'s kernels ``where`` (``"after"``/``"before"``)?

    After: the BN must read the layer's output directly, over the channel axis, with a linear
    activation in between (BN(act(conv)) is not a conv). Before: the layer's single input must be a BN
    over the channel axis, and the layer must not zero-pad (padding zeros are not shifted by the BN).
    ``stage`` is a separable layer's stage. Never raises for a refusal: check ``.ok`` / ``.reason``.
    """
    from .layouts import layout_of  # layouts knows the map counts; it imports nothing from here

    if where not in ("after", "before"):
        raise SelectionError(f"a BatchNormalization folds 'after' or 'before' a layer. Received: {where!r}")
    path = layer if isinstance(layer, str) else layer.path
    if index is None:
        return BNFoldPlan(path, where, "folding needs the model graph, and no model index was given")
    rec = index.layer(layer) if isinstance(layer, str) else layer
    try:
        lay = layout_of(rec, stage)  # resolves the stage as filters does ("depthwise" of a DepthwiseConv: kernel)
    except NotAFilterLayerError:
        return BNFoldPlan(path, where, f"{rec.class_name or 'this layer'} has no kernel to fold a "
                                       "BatchNormalization into")
    stage = str(lay.stage)
    spec = rec.spec
    cf = bool(spec and spec.channels_first)
    if where == "after":
        if stage == "depthwise":
            return BNFoldPlan(path, where, "the BatchNormalization follows the pointwise stage, not the depthwise "
                                           "one; choose the effective or pointwise stage")
        readers = index.consumers(rec.path)
        bns = [c for c in readers if c.class_name in BN_CLASSES]
        if not bns:
            return BNFoldPlan(path, where, f"no BatchNormalization reads its output directly (it feeds "
                                           f"{_names(readers)}), so there is nothing to fold")
        bn = bns[0]
        act = spec.activation if spec else None
        if act is None:
            return BNFoldPlan(path, where, "this file does not record the layer's activation, so "
                                           "BN(activation(conv)) cannot be ruled out")
        if act != "linear":
            return BNFoldPlan(path, where, f"its activation {act!r} is applied before BN {bn.path!r}, so the BN "
                                           "is not a per-map rescaling of the kernel")
        n = lay.n_maps
        ndim = output_rank(rec)
    else:
        if rec.kind is LayerKind.TRANSPOSE or stage in ("depthwise", "pointwise"):
            return BNFoldPlan(path, where, "the BN shift would not be a constant per output position for a "
                                           "transposed convolution or a single separable stage")
        producers = [index.layer(p) for p in rec.inbound if p in index]
        if len(producers) != 1 or producers[0].class_name not in BN_CLASSES:
            return BNFoldPlan(path, where, f"its input is not a single BatchNormalization (it reads "
                                           f"{_names(producers)})")
        bn = producers[0]
        n = lay.n_inputs
        ndim = len(rec.input_shape) if isinstance(rec.input_shape, tuple) else None
    if not _on_channel_axis(bn, cf, ndim):
        return BNFoldPlan(path, where, f"BN {bn.path!r} normalises axis {bn.config.get('axis')!r}, not the "
                                       f"channel axis ({'1' if cf else '-1'}), so it is not a per-map scale")
    for name in ("moving_mean", "moving_variance"):
        ref = bn.weight(name)
        if ref is None:
            return BNFoldPlan(path, where, f"BN {bn.path!r} has no {name} in this file")
        if ref.shape != (n,):
            return BNFoldPlan(path, where, f"BN {bn.path!r} normalises {ref.size} channels, not the layer's {n}")
    if where == "before" and rec.kind is not LayerKind.DENSE:
        padded = _zero_padded(rec)
        if padded:
            return BNFoldPlan(path, where, f"the layer zero-pads its input ({padded}), and padding zeros are not "
                                           "shifted by the BN, so the fold is exact only with padding='valid'")
    activation = None
    if where == "after":
        after = index.consumers(bn.path)
        if len(after) == 1 and after[0].class_name in ACTIVATION_LAYERS:
            activation = after[0]
    return BNFoldPlan(path, where, None, bn, activation)


def _zero_padded(layer: LayerRecord) -> str:
    """Why the layer's input is zero-padded ('' when it is not), from padding and input size."""
    spec = layer.spec
    if spec is None or spec.padding is None:
        return "padding unknown"
    if spec.padding == "valid":
        return ""
    k = spec.kernel_size
    d = spec.dilation_rate or (1,) * len(k)
    if spec.padding == "causal":
        return "" if all((kk - 1) * dd == 0 for kk, dd in zip(k, d, strict=True)) else "causal left padding"
    shape = layer.input_shape if isinstance(layer.input_shape, tuple) else None
    if shape is None:
        return "'same' padding with unknown input size"
    spatial = shape[2:] if spec.channels_first else shape[1:-1]
    strides = spec.strides or (1,) * len(k)
    for n, kk, s, dd in zip(spatial, k, strides, d, strict=True):
        if n is None:
            return "'same' padding with unknown input size"
        out = -(-n // s)
        if max((out - 1) * s + (kk - 1) * dd + 1 - n, 0):
            return "'same' padding"
    return ""

