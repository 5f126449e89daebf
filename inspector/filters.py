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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np

from .errors import SelectionError, describe_received
from .graph import (
    CHANNEL_PRESERVING,
    GLOBAL_POOLING,
    MERGE_LAYERS,
    POSITION_PRESERVING,
    bn_fold_plan,
    tensor_channels_first,
)
from .layouts import DenseLayout, Layout, Stage, layout_of, stages_for
from .records import LayerKind, LayerRecord, ModelIndex

__all__ = [
    "BNFold",
    "ConsumerSlice",
    "FilterSet",
    "MapConsumers",
    "SortOrder",
    "Stage",
    "consumers_of_map",
    "filters_for_layer",
    "filters_for_map",
    "filters_for_maps",
    "input_channel_count",
    "output_map_count",
    "stages_for",
]


class SortOrder(StrEnum):
    NORM = "norm"  # strongest input channel first (L2 norm of its kernel)
    INDEX = "index"  # input-channel order (the default)


class BNFold(StrEnum):
    """Which BatchNormalization to fold into the kernel (see docs/filters.md for exactness)."""

    NONE = "none"
    AFTER = "after"  # BN reading this layer's output: always exact when it applies
    BEFORE = "before"  # BN feeding this layer: exact only without zero padding at the borders
    BOTH = "both"


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
        channels = np.arange(image.shape[0])
        if self.sorted_by == SortOrder.NORM:  # a requested norm order holds for the producer maps too
            flat = image.reshape(len(image), -1)
            channels = np.argsort(-np.sqrt(np.einsum("ij,ij->i", flat, flat)), kind="stable")
        return replace(self, kernels=np.ascontiguousarray(image[channels]), input_channels=channels,
                       image_shape=None, n_inputs_total=image.shape[0],
                       notes=(*self.notes, f"Dense column reshaped to the flattened input {self.image_shape}"))

    def head(self, n: int) -> FilterSet:
        """The first ``n`` kernels (in the set's order: by norm when sorted), for a user-capped figure."""
        if n >= self.n_inputs:
            return self
        return replace(self, kernels=self.kernels[:n], input_channels=self.input_channels[:n],
                       notes=(*self.notes, f"first {n} of {self.n_inputs} input kernels"))


# -- counts ------------------------------------------------------------------------------------------

def output_map_count(layer: LayerRecord, stage: str | None = None) -> int:
    """How many output maps (channels / units) the layer (or a separable stage) produces."""
    return layout_of(layer, stage).n_maps


def input_channel_count(layer: LayerRecord) -> int:
    """How many input channels (or input units) the layer reads."""
    return layout_of(layer).n_inputs


# -- slicing -----------------------------------------------------------------------------------------

def _scalar(a: np.ndarray) -> float:
    return float(np.asarray(a, dtype=np.float64))


def _check_map(layer: LayerRecord, lay: Layout, j: Any) -> int:
    count = lay.n_maps
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
    lay = layout_of(rec, stage)
    st = lay.stage
    j = _check_map(rec, lay, j)
    mode = _fold_mode(fold_bn)
    kernels, channels = lay.map_kernels(j), lay.map_channels(j)
    bias: float | None = None
    if lay.has_bias and rec.bias is not None:
        bias = _scalar(rec.bias.read((j,)))
    notes: list[str] = []
    if rec.kind is LayerKind.CONV and not lay.groups_known:
        notes.append("groups unknown (weights-only file): input channel indices assume groups=1")
    folded = False
    if mode in (BNFold.BEFORE, BNFold.BOTH):
        plan = bn_fold_plan(index, rec, "before", stage=st).require()
        scale, shift = plan.affine(None)
        s, t = scale[channels], shift[channels]
        # conv(s·x + t) = conv_{K·s}(x) + Σ_i t_i·ΣK_i: a constant only where no tap reads padding.
        extra = float(np.sum(t * kernels.reshape(len(kernels), -1).sum(axis=1)))
        kernels = kernels * s.reshape((-1,) + (1,) * (kernels.ndim - 1))
        bias = (0.0 if bias is None else bias) + extra
        notes.append(f"folded {plan.bn_path} (before)")
        folded = True
    if mode in (BNFold.AFTER, BNFold.BOTH):
        plan = bn_fold_plan(index, rec, "after", stage=st).require()
        map_scale, map_shift = (_scalar(v) for v in plan.affine((j,)))
        kernels = kernels * map_scale
        bias = (0.0 if bias is None else bias) * map_scale + map_shift  # (b − μ)·s + β
        notes.append(f"folded {plan.bn_path} (after): kernel·{map_scale:.6g}, bias→(b−μ)·s+β")
        folded = True
    image_shape, image_axis = (None, -1)
    if rec.kind is LayerKind.DENSE and index is not None:
        image_shape, image_axis = _dense_image(rec, index)
    fs = FilterSet(
        layer_path=rec.path, kind=rec.kind, map_index=j, kernels=np.ascontiguousarray(kernels),
        input_channels=np.asarray(channels, dtype=np.int64), bias=bias, stage=str(st), bn_folded=folded,
        class_name=rec.class_name, kernel_shape=lay.kernel.shape, n_inputs_total=lay.n_inputs,
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


def filters_for_maps(layer: LayerRecord | str, maps: Iterable[int] | None = None, **options: Any,
                     ) -> list[FilterSet]:
    """FilterSets for several maps; ``maps`` is a list of map indices (``None`` = all).

    Selection strings (``'0-7,12'``) are CLI syntax: parse them with
    :func:`inspector.selectors.parse_maps` and pass the resolved list.
    """
    rec = _resolve(layer, options.get("index"))
    if maps is None:
        indices: list[int] = list(range(output_map_count(rec, options.get("stage"))))
    elif isinstance(maps, str):
        raise SelectionError(f"filters_for_maps takes a list of map indices; parse a selection string with "
                             f"inspector.selectors.parse_maps(text).resolve(count). Received: {maps!r}")
    else:
        indices = list(maps)
    return [filters_for_map(rec, j, **options) for j in indices]


def filters_for_layer(layer: LayerRecord | str, **options: Any) -> list[FilterSet]:
    """Every map's FilterSet (reads the whole kernel, one map at a time)."""
    return filters_for_maps(layer, None, **options)


# -- Dense after Flatten --------------------------------------------------------------------------------

def _single_producer(index: ModelIndex, layer: LayerRecord) -> LayerRecord | None:
    producers = [p for p in layer.inbound if p in index]
    return index.layer(producers[0]) if len(producers) == 1 else None


def _reads_channels_first(index: ModelIndex, layer: LayerRecord) -> bool:
    """Whether the tensor ``layer`` reads (its first producer's output) is channels_first."""
    producers = [p for p in layer.inbound if p in index]
    return bool(producers) and tensor_channels_first(index, index.layer(producers[0]))


def _flatten_input(flatten: LayerRecord) -> tuple[int, ...] | None:
    shape = flatten.input_shape
    if not isinstance(shape, tuple) or len(shape) < 3:
        return None
    dims = [d for d in shape[1:] if isinstance(d, int)]
    return tuple(dims) if len(dims) == len(shape) - 1 else None


def _dense_image(layer: LayerRecord, index: ModelIndex) -> tuple[tuple[int, ...] | None, int]:
    """(shape in flatten order, channel axis in it) of the image a Dense reads through Flatten, if known."""
    node = _single_producer(index, layer)
    while node is not None and node.class_name in POSITION_PRESERVING:
        node = _single_producer(index, node)
    if node is None or node.class_name != "Flatten":
        return None, -1
    dims = _flatten_input(node)
    if dims is None:
        return None, -1
    if node.config.get("data_format") == "channels_first":
        # Keras's Flatten(data_format="channels_first") moves axis 1 last before flattening.
        return (*dims[1:], dims[0]), -1
    return dims, 0 if _reads_channels_first(index, node) else -1


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
    lay = layout_of(layer)
    outs = lay.consumer_maps(c)
    notes: tuple[str, ...] = ()
    if layer.kind is LayerKind.CONV and lay.groups > 1:
        g = int(outs[0]) // len(outs)
        notes = (f"group {g} of {lay.groups}: only maps {outs[0]}-{outs[-1]} read this channel",)
    return ConsumerSlice(layer.path, layer.kind, c, lay.consumer_kernels(c), outs, via, str(lay.stage), notes)


def _concat_offset(index: ModelIndex, concat: LayerRecord, source: str) -> int | str:
    shapes = concat.input_shape if isinstance(concat.input_shape, list) else None
    if shapes is None or len(shapes) != len(concat.inbound) or concat.inbound.count(source) != 1:
        return "input shapes unknown or the same tensor is concatenated twice"
    first = shapes[0]
    ndim = len(first) if isinstance(first, tuple) else 0
    axis = int(concat.config.get("axis", -1))
    want = 1 if source in index and tensor_channels_first(index, index.layer(source)) else ndim - 1
    if ndim == 0 or axis % ndim != want:
        return f"concatenation along axis {axis}, not the channel axis"
    offset = 0
    for path, shape in zip(concat.inbound, shapes, strict=True):
        if path == source:
            return offset
        count = shape[want] if isinstance(shape, tuple) else None
        if not isinstance(count, int):
            return "a channel count before this input is unknown"
        offset += count
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
    lay = layout_of(rec, stage)
    j = _check_map(rec, lay, j)
    slices: list[ConsumerSlice] = []
    stops: list[tuple[str, str]] = []
    if rec.kind is LayerKind.SEPARABLE and lay.stage is Stage.DEPTHWISE:
        # Intermediate channel j of a separable layer is read by its own pointwise stage only (a 1×1
        # kernel: shown as one weight per output map).
        pw = layout_of(rec, Stage.POINTWISE)
        k = pw.consumer_kernels(j).reshape(pw.n_maps)
        slices.append(ConsumerSlice(rec.path, rec.kind, j, k, pw.consumer_maps(j), (), Stage.POINTWISE))
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
                elif name in POSITION_PRESERVING:
                    walk(cons.path, c, (*via, cons.path), flat)
                else:
                    stops.append((cons.path, f"{name} after Flatten: flattened positions of map {c} "
                                             "do not map exactly through it"))
                continue
            if cons.has_filters:
                slices.append(_consumer_slice(cons, c, via))
            elif name in CHANNEL_PRESERVING or name in MERGE_LAYERS:
                walk(cons.path, c, (*via, cons.path), None)
            elif name == "Concatenate":
                offset = _concat_offset(index, cons, path)
                if isinstance(offset, str):
                    stops.append((cons.path, f"Concatenate: {offset}"))
                else:
                    walk(cons.path, c + offset, (*via, cons.path), None)
            elif name in GLOBAL_POOLING:
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
    dims = _flatten_input(flatten)
    if dims is None:
        return "Flatten input shape unknown, so the positions of the map are unknown"
    if flatten.config.get("data_format") == "channels_first":
        order = np.arange(math.prod(dims)).reshape((*dims[1:], dims[0]))
        data_pos = np.moveaxis(order, -1, 0)  # data layout → flattened position
    else:
        data_pos = np.arange(math.prod(dims)).reshape(dims)
    axis = 0 if _reads_channels_first(index, flatten) else -1
    return np.take(data_pos, c, axis=axis)  # shaped like one map


def _dense_positions(dense: LayerRecord, c: int, positions: np.ndarray, via: tuple[str, ...]) -> ConsumerSlice:
    lay = layout_of(dense)
    assert isinstance(lay, DenseLayout)
    rows = lay.rows_kernels(positions.ravel())
    k = np.moveaxis(rows.reshape(*positions.shape, lay.n_maps), -1, 0)  # (units, *map shape)
    return ConsumerSlice(dense.path, dense.kind, c, k, np.arange(lay.n_maps), via,
                         notes=(f"through Flatten: map {c} is {positions.size} flattened positions",))


# Progress callbacks used by export and the CLI: (done, total, what).
ProgressCallback = Callable[[int, int, str], None]
