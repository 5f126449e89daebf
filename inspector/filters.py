"""The kernels feeding one output map, for every filter kind, in one canonical layout.

A :class:`FilterSet` answers "which input channels does output map j read, and through which
kernels?" as ``kernels[n] `` = the kernel applied to input channel ``input_channels[n]``, shape
``(n_inputs_seen, *spatial)``, so that (docs/formats.md §5.2)

    y[..., j] = bias + Σ_n xcorr(x[..., input_channels[n]], kernels[n])      (transposed: scatter)

Only the bytes of the requested slice are read (``TensorRef.read((..., j))``), so a map of a huge
layer costs kilobytes. The reverse view, :func:`consumers_of_map`, finds the slices of the next
layers' kernels that read map j. No Keras/TensorFlow import here: this works on the index.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np

from .errors import NotAFilterLayerError, SelectionError, describe_received
from .records import FILTER_KINDS, LayerKind, LayerRecord, ModelIndex, TensorRef

__all__ = [
    "BN_CLASSES",
    "BNFold",
    "ConsumerSlice",
    "FilterSet",
    "MapConsumers",
    "SortOrder",
    "Stage",
    "bn_affine",
    "bn_on_channel_axis",
    "consumers_of_map",
    "default_stage",
    "filters_for_layer",
    "filters_for_map",
    "filters_for_maps",
    "input_channel_count",
    "output_map_count",
    "output_rank",
    "stages_for",
]


class Stage(StrEnum):
    """Which kernel of a layer a FilterSet shows."""

    KERNEL = "kernel"  # the layer's own kernel (conv, depthwise, transpose, dense)
    EFFECTIVE = "effective"  # separable: depthwise ∘ pointwise as one conv kernel (exact)
    DEPTHWISE = "depthwise"  # separable: the depthwise stage; maps are the C_in·M intermediate channels
    POINTWISE = "pointwise"  # separable: the 1×1 stage reading the intermediate channels


class SortOrder(StrEnum):
    NORM = "norm"  # strongest input channel first (L2 norm of its kernel)
    INDEX = "index"  # input-channel order (the default)


class BNFold(StrEnum):
    """Which BatchNormalization to fold into the kernel (see docs/filters.md for exactness)."""

    NONE = "none"
    AFTER = "after"  # BN reading this layer's output: always exact when it applies
    BEFORE = "before"  # BN feeding this layer: exact only without zero padding at the borders
    BOTH = "both"


BN_CLASSES = frozenset({"BatchNormalization", "SyncBatchNormalization"})

# Layers whose output channel c is computed from input channel c alone (or is input channel c), so
# "map j" keeps its index through them. Softmax, LayerNormalization etc. mix channels and stop the walk.
_CHANNEL_PRESERVING = frozenset({
    "BatchNormalization", "SyncBatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU",
    "ThresholdedReLU", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity", "Rescaling",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
})
_GLOBAL_POOLING = frozenset({
    f"Global{op}Pooling{d}D" for op in ("Average", "Max") for d in (1, 2, 3)
} | {f"Global{op}Pool{d}D" for op in ("Avg", "Max") for d in (1, 2, 3)})
_MERGE = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})
# Between Flatten and Dense only layers that keep every position where it is.
_POSITION_PRESERVING = frozenset({"Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                                  "ActivityRegularization", "Identity", "Activation", "ReLU"})


@dataclass(frozen=True, eq=False)
class FilterSet:
    """The kernels feeding output map ``map_index`` of one layer, one per input channel it reads.

    ``kernels[n]`` is applied to input channel ``input_channels[n]``; ``bias`` is the map's bias
    (``None`` when the layer has none and nothing was folded in). For Dense, spatial is ``()`` and
    ``kernels`` is the kernel column; :meth:`image_kernels` reshapes it to the flattened image.
    """

    layer_path: str
    kind: LayerKind
    map_index: int
    kernels: np.ndarray
    input_channels: np.ndarray
    bias: float | None
    stage: str = Stage.KERNEL
    bn_folded: bool = False
    class_name: str | None = None
    kernel_shape: tuple[int, ...] = ()  # shape of the stored kernel this set was sliced from
    n_inputs_total: int = 0  # input channels of the layer (a grouped/depthwise map sees fewer)
    sorted_by: str = SortOrder.INDEX
    image_shape: tuple[int, ...] | None = None  # Dense after Flatten: the flattened tensor's shape
    image_channel_axis: int = -1  # which axis of image_shape holds the producer's maps
    notes: tuple[str, ...] = ()

    @property
    def norms(self) -> np.ndarray:
        """L2 norm of each input channel's kernel, aligned with ``input_channels``."""
        flat = self.kernels.reshape(len(self.kernels), -1)
        return np.sqrt(np.einsum("ij,ij->i", flat, flat))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.kernels.shape[1:])

    @property
    def n_inputs(self) -> int:
        return len(self.input_channels)

    def channel_order(self) -> FilterSet:
        """This set with input channels back in increasing order (undoes ``sort``)."""
        order = np.argsort(self.input_channels, kind="stable")
        return replace(self, kernels=self.kernels[order], input_channels=self.input_channels[order],
                       sorted_by=SortOrder.INDEX)

    def image_kernels(self) -> FilterSet | None:
        """Dense reading a flattened image: the column as one ``(H, W)`` kernel per producer map.

        Returns ``None`` when the Dense does not read a Flatten of a known shape. The result is
        again canonical: ``kernels`` ``(C, *spatial)``, ``input_channels`` = the producer's maps.
        """
        if self.image_shape is None:
            return None
        column = np.zeros(math.prod(self.image_shape), dtype=self.kernels.dtype)
        column[self.input_channels] = self.kernels
        image = np.moveaxis(column.reshape(self.image_shape), self.image_channel_axis, 0)
        return replace(self, kernels=np.ascontiguousarray(image), input_channels=np.arange(image.shape[0]),
                       sorted_by=SortOrder.INDEX, image_shape=None, n_inputs_total=image.shape[0],
                       notes=(*self.notes, f"Dense column reshaped to the flattened input {self.image_shape}"))


# -- counts ------------------------------------------------------------------------------------------

def _require_filter_layer(layer: LayerRecord) -> TensorRef:
    kernel = layer.kernel
    if layer.kind not in FILTER_KINDS or kernel is None:
        what = layer.class_name or "unknown class"
        raise NotAFilterLayerError(
            f"layer {layer.path!r} ({what}) has no kernel to slice into filters; filters exist for Conv1D/2D/3D, "
            "DepthwiseConv, SeparableConv, Conv*Transpose and Dense layers. "
            f"Received: {describe_received(layer.path)}")
    return kernel


def _groups(layer: LayerRecord, kernel: TensorRef) -> int:
    return _groups_known(layer, kernel)[0]


def _groups_known(layer: LayerRecord, kernel: TensorRef) -> tuple[int, bool]:
    """(groups, known): weights-only files do not store groups (docs/formats.md §2)."""
    spec = layer.spec
    if spec is not None and spec.groups:
        return int(spec.groups), True
    # The producer's channel count tells, when the file recorded it.
    c_in = _channels_of(layer.input_shape, layer.spec.channels_first if layer.spec else False)
    if c_in and c_in % kernel.shape[-2] == 0:
        return c_in // kernel.shape[-2], True
    return 1, False


def _channels_of(shape: Any, channels_first: bool) -> int | None:
    if not isinstance(shape, tuple) or len(shape) < 2:
        return None
    dim = shape[1] if channels_first else shape[-1]
    return int(dim) if isinstance(dim, int) else None


def stages_for(layer: LayerRecord) -> tuple[Stage, ...]:
    """The stages a layer can show; the first is the default."""
    if layer.kind is LayerKind.SEPARABLE:
        return (Stage.EFFECTIVE, Stage.DEPTHWISE, Stage.POINTWISE)
    return (Stage.KERNEL,)


def default_stage(layer: LayerRecord) -> Stage:
    return stages_for(layer)[0]


def _stage(layer: LayerRecord, stage: str | None) -> Stage:
    allowed = stages_for(layer)
    if stage is None:
        return allowed[0]
    # Depthwise layers: "depthwise" is a natural name for their only kernel.
    if layer.kind is LayerKind.DEPTHWISE and stage == Stage.DEPTHWISE:
        return Stage.KERNEL
    try:
        chosen = Stage(stage)
    except ValueError:
        chosen = None
    if chosen not in allowed:
        raise SelectionError(
            f"stage {stage!r} does not exist for layer {layer.path!r} ({layer.class_name}); accepted: "
            f"{', '.join(allowed)}. Received: {describe_received(stage)}")
    return chosen  # type: ignore[return-value]


def output_map_count(layer: LayerRecord, stage: str | None = None) -> int:
    """How many output maps (channels / units) the layer (or a separable stage) produces."""
    kernel = _require_filter_layer(layer)
    st = _stage(layer, stage)
    match layer.kind:
        case LayerKind.CONV | LayerKind.DENSE:
            return kernel.shape[-1]
        case LayerKind.DEPTHWISE:
            return kernel.shape[-2] * kernel.shape[-1]
        case LayerKind.TRANSPOSE:
            return kernel.shape[-2]
        case LayerKind.SEPARABLE:
            if st is Stage.DEPTHWISE:
                return kernel.shape[-2] * kernel.shape[-1]
            return _pointwise(layer).shape[-1]
    raise AssertionError(layer.kind)  # pragma: no cover


def input_channel_count(layer: LayerRecord) -> int:
    """How many input channels (or input units) the layer reads."""
    kernel = _require_filter_layer(layer)
    match layer.kind:
        case LayerKind.CONV:
            return kernel.shape[-2] * _groups(layer, kernel)
        case LayerKind.DEPTHWISE | LayerKind.SEPARABLE:
            return kernel.shape[-2]
        case LayerKind.TRANSPOSE:
            return kernel.shape[-1]
        case LayerKind.DENSE:
            return kernel.shape[0]
    raise AssertionError(layer.kind)  # pragma: no cover


def _pointwise(layer: LayerRecord) -> TensorRef:
    ref = layer.weight("pointwise_kernel")
    if ref is None:
        raise NotAFilterLayerError(
            f"separable layer {layer.path!r} has no pointwise kernel in this file; expected weights "
            f"depthwise_kernel and pointwise_kernel. Received: {[w.name for w in layer.weights]}")
    return ref


# -- slicing -----------------------------------------------------------------------------------------

def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _scalar(a: np.ndarray) -> float:
    return float(np.asarray(a, dtype=np.float64))


_COLUMN_CHUNK = 2048  # rows per read of a Dense column


def _dense_column(kernel: TensorRef, j: int) -> np.ndarray:
    """Column j of a (rows, units) kernel, read in row blocks.

    A column is strided across the whole tensor (one value per row), so a single memory-mapped read
    touches a page per row at once; blocks keep the mapped working set small (VGG16 fc1: 25088 rows
    of 16 KB).
    """
    rows = kernel.shape[0]
    if rows <= _COLUMN_CHUNK:
        return _f64(kernel.read((slice(None), j)))
    return np.concatenate([_f64(kernel.read((slice(r, min(r + _COLUMN_CHUNK, rows)), j)))
                           for r in range(0, rows, _COLUMN_CHUNK)])


def _raw_slice(layer: LayerRecord, j: int, stage: Stage) -> tuple[np.ndarray, np.ndarray, bool]:
    """(kernels, input_channels, has_bias) for map j, reading only that map's bytes."""
    kernel = _require_filter_layer(layer)
    has_bias = layer.bias is not None
    match layer.kind:
        case LayerKind.CONV:
            groups = _groups(layer, kernel)
            per_group_in, c_out = kernel.shape[-2], kernel.shape[-1]
            g = j // (c_out // groups)
            k = _f64(kernel.read((..., j)))  # (*k, C_in/g)
            return np.moveaxis(k, -1, 0), np.arange(g * per_group_in, (g + 1) * per_group_in), has_bias
        case LayerKind.DEPTHWISE:
            i, m = divmod(j, kernel.shape[-1])  # output map i·M + m reads input channel i only
            return _f64(kernel.read((..., i, m)))[None], np.array([i]), has_bias
        case LayerKind.TRANSPOSE:
            k = _f64(kernel.read((..., j, slice(None))))  # kernel is (*k, C_out, C_in)
            return np.moveaxis(k, -1, 0), np.arange(kernel.shape[-1]), has_bias
        case LayerKind.DENSE:
            return _dense_column(kernel, j), np.arange(kernel.shape[0]), has_bias
        case LayerKind.SEPARABLE:
            c_in, mult = kernel.shape[-2], kernel.shape[-1]
            if stage is Stage.DEPTHWISE:
                i, m = divmod(j, mult)
                # The separable bias is added after the pointwise stage, so this stage has none.
                return _f64(kernel.read((..., i, m)))[None], np.array([i]), False
            pw = _pointwise(layer)
            column = _f64(pw.read((..., j))).reshape(c_in * mult)  # P[i·M+m, j]
            if stage is Stage.POINTWISE:
                k = column.reshape(c_in * mult, *pw.shape[:-2])  # keep the 1×1 spatial axes
                return k, np.arange(c_in * mult), has_bias
            depthwise = _f64(kernel.read())  # every input channel feeds map j: all of D is needed
            k_eff = np.einsum("...im,im->i...", depthwise, column.reshape(c_in, mult))
            return k_eff, np.arange(c_in), has_bias
    raise AssertionError(layer.kind)  # pragma: no cover


def _check_map(layer: LayerRecord, j: Any, stage: Stage) -> int:
    count = output_map_count(layer, stage)
    if isinstance(j, bool) or not isinstance(j, (int, np.integer)):
        raise SelectionError(f"a map index must be an integer; accepted: 0-{count - 1} for layer "
                             f"{layer.path!r}. Received: {describe_received(j)}")
    if not 0 <= int(j) < count:
        raise SelectionError(f"map index {int(j)} is out of range for layer {layer.path!r}; valid maps are "
                             f"0-{count - 1} ({count} maps). Received: {int(j)}")
    return int(j)


def _resolve(layer: LayerRecord | str, index: ModelIndex | None) -> LayerRecord:
    if isinstance(layer, LayerRecord):
        return layer
    if index is None:
        raise SelectionError(f"a layer given by name needs the model index; pass index=... or a LayerRecord. "
                             f"Received: {describe_received(layer)}")
    return index.layer(layer)


def _fold_mode(fold_bn: bool | str | BNFold | None) -> BNFold:
    if fold_bn is True:
        return BNFold.AFTER
    if fold_bn in (False, None):
        return BNFold.NONE
    try:
        return BNFold(str(fold_bn))
    except ValueError:
        raise SelectionError(f"unknown BatchNormalization fold mode; accepted: True/False or "
                             f"{', '.join(BNFold)}. Received: {describe_received(fold_bn)}") from None


def filters_for_map(layer: LayerRecord | str, j: int, *, index: ModelIndex | None = None,
                    fold_bn: bool | str = False, sort: str | None = None, stage: str | None = None) -> FilterSet:
    """The input-channel kernels feeding output map ``j`` of ``layer``.

    ``fold_bn``: ``True``/``"after"`` folds the BatchNormalization that reads this layer's output,
    ``"before"`` the one feeding it (exact only without zero padding), ``"both"`` both; folding needs
    ``index`` (for the graph). ``sort="norm"`` orders input channels by kernel norm, strongest first.
    ``stage`` picks a separable layer's ``effective`` (default), ``depthwise`` or ``pointwise`` kernel.
    """
    rec = _resolve(layer, index)
    st = _stage(rec, stage)
    j = _check_map(rec, j, st)
    mode = _fold_mode(fold_bn)
    kernels, channels, has_bias = _raw_slice(rec, j, st)
    bias: float | None = None
    if has_bias and rec.bias is not None:
        bias = _scalar(rec.bias.read((j,)))
    notes: list[str] = []
    if rec.kind is LayerKind.CONV and not _groups_known(rec, rec.kernel)[1]:  # type: ignore[arg-type]
        notes.append("groups unknown (weights-only file): input channel indices assume groups=1")
    folded = False
    if mode in (BNFold.BEFORE, BNFold.BOTH):
        kernels, bias, note = _fold_before(rec, index, st, kernels, channels, bias)
        notes.append(note)
        folded = True
    if mode in (BNFold.AFTER, BNFold.BOTH):
        kernels, bias, note = _fold_after(rec, index, st, j, kernels, bias)
        notes.append(note)
        folded = True
    image_shape, image_axis = (None, -1)
    if rec.kind is LayerKind.DENSE and index is not None:
        image_shape, image_axis = _dense_image(rec, index)
    kernel = rec.kernel
    fs = FilterSet(
        layer_path=rec.path, kind=rec.kind, map_index=j, kernels=np.ascontiguousarray(kernels),
        input_channels=np.asarray(channels, dtype=np.int64), bias=bias, stage=str(st), bn_folded=folded,
        class_name=rec.class_name,
        kernel_shape=(_pointwise(rec).shape if st is Stage.POINTWISE else kernel.shape) if kernel else (),
        n_inputs_total=(kernel.shape[-2] * kernel.shape[-1]) if st is Stage.POINTWISE and kernel
        else input_channel_count(rec),
        image_shape=image_shape, image_channel_axis=image_axis, notes=tuple(notes),
    )
    return _sorted(fs, sort)


def _sorted(fs: FilterSet, sort: str | None) -> FilterSet:
    if sort is None or sort == SortOrder.INDEX:
        return fs
    if sort != SortOrder.NORM:
        raise SelectionError(f"unknown sort order; accepted: {', '.join(SortOrder)}. "
                             f"Received: {describe_received(sort)}")
    order = np.argsort(-fs.norms, kind="stable")
    return replace(fs, kernels=fs.kernels[order], input_channels=fs.input_channels[order],
                   sorted_by=SortOrder.NORM)


def filters_for_maps(layer: LayerRecord | str, maps: Sequence[int] | str | None = None, **options: Any,
                     ) -> list[FilterSet]:
    """FilterSets for several maps; ``maps`` is a list or a selection string (``'0-7,12'``, ``None`` = all)."""
    from .selectors import parse_maps

    rec = _resolve(layer, options.get("index"))
    if maps is None or isinstance(maps, str):
        indices = parse_maps(maps).resolve(output_map_count(rec, options.get("stage")), layer=rec.path)
    else:
        indices = list(maps)
    return [filters_for_map(rec, j, **options) for j in indices]


def filters_for_layer(layer: LayerRecord | str, **options: Any) -> list[FilterSet]:
    """Every map's FilterSet (reads the whole kernel, one map at a time)."""
    return filters_for_maps(layer, None, **options)


# -- BatchNormalization folding ------------------------------------------------------------------------

def bn_on_channel_axis(bn: LayerRecord, channels_first: bool, ndim: int | None) -> bool:
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


def bn_affine(bn: LayerRecord, idx: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift) with BN(x) = x·scale + shift, read at ``idx`` only."""
    eps = float(bn.config.get("epsilon", 1e-3))

    def get(name: str, default: float) -> np.ndarray:
        ref = bn.weight(name)
        if ref is None:
            if name in ("moving_mean", "moving_variance"):
                raise NotAFilterLayerError(
                    f"BatchNormalization {bn.path!r} has no {name} in this file, so it cannot be folded; "
                    f"expected gamma/beta/moving_mean/moving_variance. Received: {[w.name for w in bn.weights]}")
            return np.asarray(default, dtype=np.float64)
        return _f64(ref.read(idx))

    scale = get("gamma", 1.0) / np.sqrt(get("moving_variance", 1.0) + eps)
    return scale, get("beta", 0.0) - get("moving_mean", 0.0) * scale


def output_rank(layer: LayerRecord) -> int | None:
    """Number of axes of the layer's output (batch included), when known."""
    shape = layer.output_shape
    if isinstance(shape, tuple):
        return len(shape)
    return None if layer.spec is None or layer.kind is LayerKind.DENSE else layer.spec.rank + 2


def _fold_after(layer: LayerRecord, index: ModelIndex | None, stage: Stage, j: int, kernels: np.ndarray,
                bias: float | None) -> tuple[np.ndarray, float, str]:
    why = f"cannot fold BatchNormalization after {layer.path!r}"
    if index is None:
        raise SelectionError(f"{why}: folding needs the model graph; pass index=... Received: fold_bn=True")
    if stage is Stage.DEPTHWISE:
        raise SelectionError(f"{why}: the BN follows the pointwise stage, not the depthwise one; accepted "
                             f"stages: effective, pointwise. Received: stage={str(stage)!r}")
    bns = [c for c in index.consumers(layer.path) if c.class_name in BN_CLASSES]
    if not bns:
        readers = ", ".join(f"{c.path} ({c.class_name})" for c in index.consumers(layer.path)) or "none"
        raise SelectionError(f"{why}: no BatchNormalization reads its output directly (its consumers: "
                             f"{readers}); folding applies only to conv → BN. Received: fold_bn=True")
    bn = bns[0]
    act = layer.spec.activation if layer.spec else None
    if layer.spec is None or act is None:
        raise SelectionError(f"{why}: this file does not record its activation, so BN(act(conv)) cannot be "
                             f"ruled out; folding needs a known activation='linear'. Received: activation=unknown")
    if act != "linear":
        raise SelectionError(f"{why}: its activation {act!r} is applied before the BN, so BN(act(conv)) is not "
                             f"a conv; folding needs activation='linear'. Received: activation={act!r}")
    cf = layer.spec.channels_first
    if not bn_on_channel_axis(bn, cf, output_rank(layer)):
        raise SelectionError(f"{why}: BN {bn.path!r} normalises axis {bn.config.get('axis')!r}, not the channel "
                             f"axis ({'1' if cf else '-1'}), so it is not a per-map scale. "
                             f"Received: axis={bn.config.get('axis')!r}")
    scale, shift = (_scalar(v) for v in bn_affine(bn, (j,)))
    new_bias = (0.0 if bias is None else bias) * scale + shift  # (b − μ)·s + β
    return kernels * scale, new_bias, f"folded {bn.path} (after): kernel·{scale:.6g}, bias→(b−μ)·s+β"


def _fold_before(layer: LayerRecord, index: ModelIndex | None, stage: Stage, kernels: np.ndarray,
                 channels: np.ndarray, bias: float | None) -> tuple[np.ndarray, float, str]:
    why = f"cannot fold a BatchNormalization before {layer.path!r}"
    if index is None:
        raise SelectionError(f"{why}: folding needs the model graph; pass index=... Received: fold_bn='before'")
    if layer.kind is LayerKind.TRANSPOSE or stage in (Stage.DEPTHWISE, Stage.POINTWISE):
        raise SelectionError(f"{why}: the BN shift would not be a constant per output position for this "
                             f"kind/stage; accepted: conv, depthwise, separable (effective) and dense. "
                             f"Received: {layer.class_name} stage {str(stage)!r}")
    producers = [index.layer(p) for p in layer.inbound if p in index]
    if len(producers) != 1 or producers[0].class_name not in BN_CLASSES:
        got = ", ".join(f"{p.path} ({p.class_name})" for p in producers) or "none known"
        raise SelectionError(f"{why}: its input is not a single BatchNormalization (inputs: {got}); "
                             f"accepted: BN → layer. Received: fold_bn='before'")
    bn = producers[0]
    cf = layer.spec.channels_first if layer.spec else False
    ndim = len(layer.input_shape) if isinstance(layer.input_shape, tuple) else None
    if not bn_on_channel_axis(bn, cf, ndim):
        raise SelectionError(f"{why}: BN {bn.path!r} does not normalise the channel axis. "
                             f"Received: axis={bn.config.get('axis')!r}")
    if layer.kind is not LayerKind.DENSE:
        padded = _zero_padded(layer)
        if padded:
            raise SelectionError(f"{why}: the layer zero-pads its input ({padded}), and padding zeros are not "
                                 f"shifted by the BN, so the fold is exact only with padding='valid' (see "
                                 f"docs/filters.md). Received: padding={layer.spec.padding if layer.spec else None!r}")
    scale, shift = bn_affine(bn, None)
    s, t = scale[channels], shift[channels]
    # conv(s·x + t) = conv_{K·s}(x) + Σ_i t_i·ΣK_i: a constant only where no tap reads padding.
    extra = float(np.sum(t * kernels.reshape(len(kernels), -1).sum(axis=1)))
    shaped = s.reshape((-1,) + (1,) * (kernels.ndim - 1))
    return kernels * shaped, (0.0 if bias is None else bias) + extra, f"folded {bn.path} (before)"


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


# -- Dense after Flatten --------------------------------------------------------------------------------

def _single_producer(index: ModelIndex, layer: LayerRecord) -> LayerRecord | None:
    producers = [p for p in layer.inbound if p in index]
    return index.layer(producers[0]) if len(producers) == 1 else None


def _channel_axis_of_data(index: ModelIndex, layer: LayerRecord) -> int:
    """0 when the tensor ``layer`` reads is channels_first (per its producers' data_format), else -1."""
    node: LayerRecord | None = layer
    for _ in range(64):
        node = _single_producer(index, node) if node is not None else None
        if node is None:
            return -1
        fmt = node.config.get("data_format")
        if fmt in ("channels_first", "channels_last"):
            return 0 if fmt == "channels_first" else -1
    return -1


def _flatten_order(index: ModelIndex, flatten: LayerRecord) -> tuple[tuple[int, ...], int] | None:
    """(shape in flatten order, channel axis in it) of the tensor a Flatten reads, if fully known."""
    shape = flatten.input_shape
    if not isinstance(shape, tuple) or len(shape) < 3 or any(not isinstance(d, int) for d in shape[1:]):
        return None
    dims = tuple(int(d) for d in shape[1:])
    axis = _channel_axis_of_data(index, flatten)
    if flatten.config.get("data_format") == "channels_first":
        # Keras's Flatten(data_format="channels_first") moves axis 1 last before flattening.
        return (*dims[1:], dims[0]), -1
    return dims, axis


def _dense_image(layer: LayerRecord, index: ModelIndex) -> tuple[tuple[int, ...] | None, int]:
    node = _single_producer(index, layer)
    while node is not None and node.class_name in _POSITION_PRESERVING:
        node = _single_producer(index, node)
    if node is None or node.class_name != "Flatten":
        return None, -1
    found = _flatten_order(index, node)
    if found is None:
        return None, -1
    return found


# -- reverse view: who reads map j -----------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ConsumerSlice:
    """The part of a later layer's kernel that reads map j: ``kernels`` ``(n_outputs, *spatial)``.

    ``kernels[n]`` is the kernel through which input channel ``input_channel`` of ``consumer_path``
    (= map j, carried through ``via``) reaches that layer's output map ``output_maps[n]``.
    """

    consumer_path: str
    kind: LayerKind
    input_channel: int
    kernels: np.ndarray
    output_maps: np.ndarray
    via: tuple[str, ...] = ()
    stage: str = Stage.KERNEL
    notes: tuple[str, ...] = ()

    @property
    def norms(self) -> np.ndarray:
        flat = self.kernels.reshape(len(self.kernels), -1)
        return np.sqrt(np.einsum("ij,ij->i", flat, flat))


@dataclass(frozen=True)
class MapConsumers:
    """Every exact consumer slice of map j, and where (and why) the walk had to stop."""

    layer_path: str
    map_index: int
    slices: tuple[ConsumerSlice, ...]
    stops: tuple[tuple[str, str], ...] = field(default=())  # (layer path, reason)


def _consumer_slice(layer: LayerRecord, c: int, via: tuple[str, ...]) -> ConsumerSlice:
    kernel = _require_filter_layer(layer)
    notes: tuple[str, ...] = ()
    match layer.kind:
        case LayerKind.CONV:
            groups = _groups(layer, kernel)
            per_in, c_out = kernel.shape[-2], kernel.shape[-1]
            per_out = c_out // groups
            g, local = divmod(c, per_in)
            k = _f64(kernel.read((..., local, slice(g * per_out, (g + 1) * per_out))))
            outs = np.arange(g * per_out, (g + 1) * per_out)
            if groups > 1:
                notes = (f"group {g} of {groups}: only maps {outs[0]}-{outs[-1]} read this channel",)
            return ConsumerSlice(layer.path, layer.kind, c, np.moveaxis(k, -1, 0), outs, via, notes=notes)
        case LayerKind.DEPTHWISE:
            mult = kernel.shape[-1]
            k = _f64(kernel.read((..., c, slice(None))))
            return ConsumerSlice(layer.path, layer.kind, c, np.moveaxis(k, -1, 0), c * mult + np.arange(mult), via)
        case LayerKind.SEPARABLE:
            mult = kernel.shape[-1]
            d = _f64(kernel.read((..., c, slice(None))))  # (*k, M)
            pw = _pointwise(layer)
            p = _f64(pw.read((..., slice(c * mult, (c + 1) * mult), slice(None)))).reshape(mult, pw.shape[-1])
            k_eff = np.einsum("...m,mf->f...", d, p)
            return ConsumerSlice(layer.path, layer.kind, c, k_eff, np.arange(pw.shape[-1]), via, Stage.EFFECTIVE)
        case LayerKind.TRANSPOSE:
            k = _f64(kernel.read((..., slice(None), c)))
            return ConsumerSlice(layer.path, layer.kind, c, np.moveaxis(k, -1, 0), np.arange(kernel.shape[-2]), via)
        case LayerKind.DENSE:
            k = _f64(kernel.read((c, slice(None))))
            return ConsumerSlice(layer.path, layer.kind, c, k, np.arange(kernel.shape[-1]), via)
    raise AssertionError(layer.kind)  # pragma: no cover


def _concat_offset(index: ModelIndex, concat: LayerRecord, source: str) -> int | str:
    shapes = concat.input_shape if isinstance(concat.input_shape, list) else None
    if shapes is None or len(shapes) != len(concat.inbound) or concat.inbound.count(source) != 1:
        return "input shapes unknown or the same tensor is concatenated twice"
    first = shapes[0]
    ndim = len(first) if isinstance(first, tuple) else 0
    axis = int(concat.config.get("axis", -1))
    cf_axis = _channel_axis_of_data(index, concat)
    want = 1 if cf_axis == 0 else ndim - 1
    if ndim == 0 or axis % ndim != want:
        return f"concatenation along axis {axis}, not the channel axis"
    offset = 0
    for path, shape in zip(concat.inbound, shapes, strict=True):
        if path == source:
            return offset
        if not isinstance(shape, tuple) or not isinstance(shape[want], int):
            return "a channel count before this input is unknown"
        offset += int(shape[want])
    return "input not found"


def consumers_of_map(index: ModelIndex, layer: LayerRecord | str, j: int, *,
                     stage: str | None = None) -> MapConsumers:
    """The slices of later layers' kernels that read output map ``j`` of ``layer``.

    Walks ``index.consumers()`` through channel-preserving layers (BN, activations, pooling, dropout,
    padding, cropping, upsampling, merges), Concatenate (channel offset), global pooling and Flatten
    (map j becomes a set of flattened positions; a Dense then reads the matching kernel rows, shaped
    like the map). It stops, and records why, where the channel mapping is not exact.
    """
    rec = _resolve(layer, index)
    st = _stage(rec, stage)
    j = _check_map(rec, j, st)
    slices: list[ConsumerSlice] = []
    stops: list[tuple[str, str]] = []
    if st is Stage.DEPTHWISE:
        # Intermediate channel j of a separable layer is read by its own pointwise stage only.
        pw = _pointwise(rec)
        k = _f64(pw.read((..., j, slice(None)))).reshape(pw.shape[-1])
        slices.append(ConsumerSlice(rec.path, rec.kind, j, k, np.arange(pw.shape[-1]), (), Stage.POINTWISE))
        return MapConsumers(rec.path, j, tuple(slices))
    seen: set[tuple[str, int]] = set()

    def walk(path: str, c: int, via: tuple[str, ...], flat: np.ndarray | None) -> None:
        for cons in index.consumers(path):
            key = (cons.path, c)
            if key in seen:
                continue
            seen.add(key)
            name = cons.class_name or "?"
            if flat is not None:  # after Flatten: only position-preserving layers and Dense are exact
                if cons.kind is LayerKind.DENSE and cons.kernel is not None:
                    slices.append(_dense_positions(cons, c, flat, via))
                elif name in _POSITION_PRESERVING:
                    walk(cons.path, c, (*via, cons.path), flat)
                else:
                    stops.append((cons.path, f"{name} after Flatten: flattened positions of map {c} "
                                             "do not map exactly through it"))
                continue
            if cons.has_filters:
                slices.append(_consumer_slice(cons, c, via))
            elif name in _CHANNEL_PRESERVING or name in _MERGE:
                walk(cons.path, c, (*via, cons.path), None)
            elif name == "Concatenate":
                offset = _concat_offset(index, cons, path)
                if isinstance(offset, str):
                    stops.append((cons.path, f"Concatenate: {offset}"))
                else:
                    walk(cons.path, c + offset, (*via, cons.path), None)
            elif name in _GLOBAL_POOLING:
                walk(cons.path, c, (*via, cons.path), None)  # map c becomes vector entry c
            elif name == "Flatten":
                positions = _flatten_positions(index, cons, c)
                if isinstance(positions, str):
                    stops.append((cons.path, positions))
                else:
                    walk(cons.path, c, (*via, cons.path), positions)
            else:
                stops.append((cons.path, f"{name} does not keep channel {c} separate (or is not known to), "
                                         "so the mapping past it is not exact"))

    walk(rec.path, j, (), None)
    return MapConsumers(rec.path, j, tuple(slices), tuple(stops))


def _flatten_positions(index: ModelIndex, flatten: LayerRecord, c: int) -> np.ndarray | str:
    shape = flatten.input_shape
    if not isinstance(shape, tuple) or len(shape) < 3 or any(not isinstance(d, int) for d in shape[1:]):
        return "Flatten input shape unknown, so the positions of the map are unknown"
    dims = tuple(int(d) for d in shape[1:])
    axis = _channel_axis_of_data(index, flatten)
    if flatten.config.get("data_format") == "channels_first":
        order = np.arange(math.prod(dims)).reshape((*dims[1:], dims[0]))
        data_pos = np.moveaxis(order, -1, 0)  # data layout → flattened position
    else:
        data_pos = np.arange(math.prod(dims)).reshape(dims)
    return np.take(data_pos, c, axis=axis)  # shaped like one map


def _dense_positions(dense: LayerRecord, c: int, positions: np.ndarray, via: tuple[str, ...]) -> ConsumerSlice:
    kernel = dense.kernel
    assert kernel is not None
    flat = positions.ravel()
    order = np.argsort(flat)  # h5py needs increasing indices
    rows = _f64(kernel.read((flat[order], slice(None))))
    rows_back = np.empty_like(rows)
    rows_back[order] = rows
    k = np.moveaxis(rows_back.reshape(*positions.shape, kernel.shape[-1]), -1, 0)  # (units, *map shape)
    return ConsumerSlice(dense.path, dense.kind, c, k, np.arange(kernel.shape[-1]), via,
                         notes=(f"through Flatten: map {c} is {flat.size} flattened positions",))


# Progress callbacks used by export and the CLI: (done, total, what).
ProgressCallback = Callable[[int, int, str], None]
