"""Receptive fields from the model graph: the box of input pixels a unit at a position sees.

Why a walk over the graph and not the textbook affine formula (``jump``, ``start``, ``size``): the
affine formula is exact only in the interior. At the borders, padding pixels are not input pixels,
a dilated kernel can skip the first row of the image, a transposed convolution's units see a
varying number of input rows, and Keras ``same`` padding puts its extra pixel at the bottom/right
(``pad_before = total // 2``, docs/formats.md §5.3 for the output-length formulas). So each layer is
described per spatial axis by its *taps*: for every output position ``p``, the input positions
``q`` it reads (one array of ``q`` per kernel tap, ``-1`` where the tap falls on padding). The box
of a unit is then the smallest and largest input pixel reachable through the taps of every layer
between it and the model input, computed exactly, per axis, for every position at once.

Per axis is exact for boxes: every supported layer connects position ``(p_y, p_x)`` to the product
of its per-axis tap sets, and the bounding box of a union of boxes is the per-axis min/max. Branches
joined by Add/Multiply/Concatenate/... take the union of their inputs' boxes; through a Concatenate
on the channel axis the walk follows the branch that holds the map when it knows the map (a map of
a Concatenate, or of an activation/BN reading one), and the union otherwise.

Supported classes: convolutions (1-3D, depthwise, separable, grouped, dilated, ``valid``/``same``/
``causal``), transposed convolutions (with ``output_padding``), max/average pooling, zero padding,
cropping, nearest up-sampling, position-wise layers (activations, BN, dropout, normalizations,
rescaling, merges, a Dense on a spatial tensor) and nested models. Anything that moves positions in
another way (Flatten, Reshape, global pooling, bilinear up-sampling, Lambda, attention, ...) raises
:class:`ReceptiveFieldError`. Raw ``keras.ops`` calls between layers are not in the index; a
single-input layer fed by several layers reveals them and is refused, but a raw op on a single path
(a slice, say) is invisible.

Framework-free: numpy and the index only (``index.layers``, their ``config`` and ``inbound``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InspectorError, describe_received
from .graph import CHANNEL_PRESERVING, MERGE_LAYERS, SHAPE_PRESERVING, tensor_channels_first
from .records import LayerRecord, ModelIndex
from .shapes import conv_output_length, expand_ints, pad_pairs, transpose_output_length

__all__ = ["FieldCache", "ReceptiveField", "ReceptiveFieldError", "layer_output_size", "receptive_field"]

_EMPTY_LO = np.iinfo(np.int64).max // 4  # a unit that sees no input pixel (a padding position)
_EMPTY_HI = -_EMPTY_LO


class ReceptiveFieldError(InspectorError, ValueError):
    """A layer on the way to the model input moves positions in a way we have no exact rule for."""


@dataclass(frozen=True)
class ReceptiveField:
    """Input-pixel boxes of every position of one layer's output (one map, or all maps).

    ``lo[a][p]`` / ``hi[a][p]``: first and end-exclusive input pixel along spatial axis ``a`` seen by
    output position ``p``, already clipped to the image (``input_size``). A position that sees no
    pixel at all (the border a ZeroPadding layer adds) has ``lo == hi == 0``.
    """

    layer: str
    map_index: int | None
    input_size: tuple[int, ...]
    lo: tuple[np.ndarray, ...]
    hi: tuple[np.ndarray, ...]

    @property
    def output_size(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.lo)

    def box(self, position: Sequence[int]) -> tuple[int, ...]:
        """``(y0, x0, y1, x1)`` in 2-D (all starts, then all ends; end-exclusive) for ``position``."""
        if len(position) != len(self.lo):
            raise ReceptiveFieldError(f"a position of layer {self.layer!r} has {len(self.lo)} coordinates. "
                                      f"Received: {describe_received(tuple(position))}")
        return tuple(int(v) for v in self.boxes(np.asarray([position]))[0])

    def boxes(self, positions: np.ndarray) -> np.ndarray:
        """Boxes of many positions at once: ``(N, rank)`` positions -> ``(N, 2 * rank)`` boxes.

        A unit that sees no pixel along one axis sees none at all: its box is all zeros."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1, len(self.lo))
        starts = [lo[positions[:, a]] for a, lo in enumerate(self.lo)]
        ends = [hi[positions[:, a]] for a, hi in enumerate(self.hi)]
        out = np.stack(starts + ends, axis=1)
        empty = np.any(np.stack(ends, axis=1) <= np.stack(starts, axis=1), axis=1)
        out[empty] = 0
        return out

    def grid(self) -> np.ndarray:
        """Every position's box: ``(*output_size, 2 * rank)``."""
        positions = np.stack(np.meshgrid(*[np.arange(n) for n in self.output_size], indexing="ij"), axis=-1)
        return self.boxes(positions.reshape(-1, len(self.lo))).reshape(*self.output_size, 2 * len(self.lo))

    @property
    def max_extent(self) -> tuple[int, ...]:
        """The largest box side per axis (the size quoted for a layer's receptive field)."""
        return tuple(int((hi - lo).max(initial=0)) for lo, hi in zip(self.lo, self.hi, strict=True))


# -- per-layer rules: taps along one axis ---------------------------------------------------------------

Taps = list[np.ndarray]  # one array per tap: input position read by each output position, -1 = none


def _class(rec: LayerRecord) -> str:
    return rec.class_name or ""


def _is_conv(cls: str) -> bool:
    return cls.startswith(("Conv", "DepthwiseConv", "SeparableConv")) and cls[-2:] in ("1D", "2D", "3D") \
        and "LSTM" not in cls


def _is_transpose(cls: str) -> bool:
    return cls.startswith(("Conv", "Deconv")) and cls.endswith(("Transpose", "DTranspose")) and "LSTM" not in cls


def _is_pool(cls: str) -> bool:
    return cls.startswith(("MaxPooling", "AveragePooling", "MaxPool", "AvgPool")) and cls[-2:] in ("1D", "2D", "3D")


def _window_taps(n_in: int, n_out: int, k: int, s: int, d: int, pad_before: int) -> Taps:
    p = np.arange(n_out, dtype=np.int64)
    taps = []
    for t in range(k):
        q = p * s - pad_before + t * d
        taps.append(np.where((q >= 0) & (q < n_in), q, -1))
    return taps


def _pad_before(padding: str, n_in: int, n_out: int, k_eff: int, s: int) -> int:
    if padding == "same":  # TensorFlow's SAME: the odd pixel goes after (bottom/right)
        return max((n_out - 1) * s + k_eff - n_in, 0) // 2
    if padding == "causal":
        return k_eff - 1
    return 0


def _conv_axis(n_in: int, k: int, s: int, d: int, padding: str) -> tuple[int, Taps]:
    n_out = conv_output_length(n_in, k, s, d, padding)
    assert n_out is not None
    k_eff = (k - 1) * d + 1
    return n_out, _window_taps(n_in, n_out, k, s, d, _pad_before(padding, n_in, n_out, k_eff, s))


def _transpose_axis(n_in: int, k: int, s: int, d: int, padding: str, output_padding: int | None) -> tuple[int, Taps]:
    n_out = transpose_output_length(n_in, k, s, d, padding, output_padding)
    assert n_out is not None
    k_eff = (k - 1) * d + 1
    # The transposed convolution is the gradient of a convolution from n_out to n_in positions with the
    # same padding: output p receives input q through tap t when p = q * s - pad + t * d.
    pad = max((n_in - 1) * s + k_eff - n_out, 0) // 2 if padding == "same" else 0
    p = np.arange(n_out, dtype=np.int64)
    taps = []
    for t in range(k):
        num = p + pad - t * d
        q = np.floor_divide(num, s)
        ok = (num % s == 0) & (q >= 0) & (q < n_in)
        taps.append(np.where(ok, q, -1))
    return n_out, taps


def _shift_axis(n_in: int, n_out: int, offset: int) -> Taps:
    q = np.arange(n_out, dtype=np.int64) + offset
    return [np.where((q >= 0) & (q < n_in), q, -1)]


def _pairs(value: Any, rank: int, default: int) -> list[tuple[int, int]]:
    return pad_pairs(default if value is None else value, rank)


def _axis_rules(rec: LayerRecord, sizes: Sequence[int]) -> tuple[tuple[int, ...], list[Taps]] | None:
    """Output size and per-axis taps of a layer that moves positions; None for position-wise layers."""
    cls, c, rank = _class(rec), rec.config, len(sizes)
    padding = str(c.get("padding", "valid")).lower()
    if _is_transpose(cls):
        k, s, d = (expand_ints(c.get(key), rank) for key in ("kernel_size", "strides", "dilation_rate"))
        op = c.get("output_padding")
        ops: list[int | None] = [None] * rank if op is None else list(expand_ints(op, rank))
        axes = [_transpose_axis(n, k[a], s[a], d[a], padding, ops[a]) for a, n in enumerate(sizes)]
    elif _is_conv(cls):
        k, s, d = (expand_ints(c.get(key), rank) for key in ("kernel_size", "strides", "dilation_rate"))
        axes = [_conv_axis(n, k[a], s[a], d[a], padding) for a, n in enumerate(sizes)]
    elif _is_pool(cls):
        pool = expand_ints(c.get("pool_size"), rank, 2)
        strides = expand_ints(c.get("strides") or pool, rank)
        axes = [_conv_axis(n, pool[a], strides[a], 1, padding) for a, n in enumerate(sizes)]
    elif cls.startswith("ZeroPadding"):
        pads = _pairs(c.get("padding"), rank, 1)
        axes = [(n + b + e, _shift_axis(n, n + b + e, -b)) for n, (b, e) in zip(sizes, pads, strict=True)]
    elif cls.startswith("Cropping"):
        crops = _pairs(c.get("cropping"), rank, 0)
        axes = [(n - b - e, _shift_axis(n, n - b - e, b)) for n, (b, e) in zip(sizes, crops, strict=True)]
    elif cls.startswith("UpSampling"):
        if str(c.get("interpolation", "nearest")) != "nearest":
            raise ReceptiveFieldError(
                f"layer {rec.path!r} up-samples with {c.get('interpolation')!r} interpolation; receptive fields "
                f"are exact for nearest up-sampling only. Received: {cls}")
        size = expand_ints(c.get("size"), rank, 2)
        axes = [(n * size[a], [np.arange(n * size[a], dtype=np.int64) // size[a]]) for a, n in enumerate(sizes)]
    else:
        return None
    return tuple(n for n, _ in axes), [taps for _, taps in axes]


def _position_wise(rec: LayerRecord) -> str | None:
    """'keep' (map j reads map j), 'mix' (position-wise, channels mixed) or None (moves positions)."""
    cls = _class(rec)
    if cls in MERGE_LAYERS or (cls in CHANNEL_PRESERVING and not _is_pool(cls)
                               and not cls.startswith(("ZeroPadding", "Cropping", "UpSampling"))):
        return "keep"
    if cls in SHAPE_PRESERVING:
        return "mix"
    if cls in ("Dense", "EinsumDense") and isinstance(rec.input_shape, tuple) and len(rec.input_shape) > 2:
        return "mix" if cls == "Dense" else None
    return None


# -- the walk ---------------------------------------------------------------------------------------------

class _Walker:
    def __init__(self, index: ModelIndex, input_size: tuple[int, ...]) -> None:
        self.index = index
        self.input_size = input_size
        self.sizes: dict[str, tuple[int, ...]] = {}
        self.fields: dict[tuple[str, int | None], tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def producers(self, rec: LayerRecord) -> list[LayerRecord]:
        return [self.index.layer(p) for p in rec.inbound if p in self.index]

    def _check(self, rec: LayerRecord, producers: list[LayerRecord]) -> None:
        cls = _class(rec)
        if len(producers) > 1 and cls not in MERGE_LAYERS and cls != "Concatenate":
            raise ReceptiveFieldError(
                f"layer {rec.path!r} ({cls}) reads {len(producers)} layers, so raw operations the file does not "
                f"list as layers sit between them; receptive fields need layers only. Received: inbound "
                f"{describe_received(list(rec.inbound))}")

    def size(self, rec: LayerRecord, depth: int = 0) -> tuple[int, ...]:
        if rec.path in self.sizes:
            return self.sizes[rec.path]
        if depth > 2000:
            raise ReceptiveFieldError(f"the layer graph is too deep or cyclic at {rec.path!r}. Received: {depth} steps")
        producers = self.producers(rec)
        self._check(rec, producers)
        if _class(rec) == "InputLayer" or not producers:
            out = self.input_size
        else:
            ins = [self.size(p, depth + 1) for p in producers]
            rules = _axis_rules(rec, ins[0])
            if rules is not None:
                out = rules[0]
            elif _position_wise(rec) is not None or _class(rec) == "Concatenate":
                out = ins[0]
            else:
                raise self._unsupported(rec)
        if any(n <= 0 for n in out):
            raise ReceptiveFieldError(f"layer {rec.path!r} has an empty output at input size {self.input_size}; "
                                      f"give a larger input. Received: output size {out}")
        self.sizes[rec.path] = out
        return out

    def _unsupported(self, rec: LayerRecord) -> ReceptiveFieldError:
        return ReceptiveFieldError(
            f"layer {rec.path!r} ({_class(rec) or 'unknown class'}) lies between the chosen layer and the input and "
            f"moves positions in a way receptive fields have no exact rule for; supported: convolutions, "
            f"pooling, padding, cropping, nearest up-sampling and position-wise layers. Received: {_class(rec)}")

    def field(self, rec: LayerRecord, channel: int | None, depth: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
        key = (rec.path, channel)
        if key in self.fields:
            return self.fields[key]
        out_size = self.size(rec)
        producers = self.producers(rec)
        cls = _class(rec)
        if cls == "InputLayer" or not producers:
            ar = [np.arange(n, dtype=np.int64) for n in out_size]
            result = (ar, [a + 1 for a in ar])
        else:
            rules = _axis_rules(rec, self.size(producers[0]))
            if rules is not None:
                # Map j of a depthwise layer reads input channel j // multiplier; pooling, padding, cropping and
                # up-sampling keep channels; the other convolutions mix them.
                if channel is None or not (cls.startswith("DepthwiseConv") or _is_pool(cls)
                                           or cls.startswith(("ZeroPadding", "Cropping", "UpSampling"))):
                    inner = None
                elif cls.startswith("DepthwiseConv"):
                    inner = channel // int(rec.config.get("depth_multiplier", 1) or 1)
                else:
                    inner = channel
                lo, hi = self.field(producers[0], inner, depth + 1)
                result = _compose(lo, hi, rules[1])
            elif cls == "Concatenate":
                result = self._concatenate(rec, producers, channel, depth)
            else:
                keep = _position_wise(rec) == "keep"
                parts = [self.field(p, channel if keep else None, depth + 1) for p in producers]
                result = _union(parts)
        self.fields[key] = result
        return result

    def _concatenate(self, rec: LayerRecord, producers: list[LayerRecord], channel: int | None,
                     depth: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        axis = int(rec.config.get("axis", -1))
        cf = tensor_channels_first(self.index, rec)
        rank = len(self.input_size) + 2
        channel_axis = 1 if cf else rank - 1
        if axis % rank != channel_axis:
            raise ReceptiveFieldError(
                f"layer {rec.path!r} concatenates along a spatial axis; receptive fields need a concatenation "
                f"of channels. Received: axis={axis}")
        if channel is not None:
            counts = [_channels(p, cf) for p in producers]
            if all(n is not None for n in counts):
                start = 0
                for p, n in zip(producers, counts, strict=True):
                    assert n is not None
                    if channel < start + n:
                        return self.field(p, channel - start, depth + 1)
                    start += n
        return _union([self.field(p, None, depth + 1) for p in producers])


def _channels(rec: LayerRecord, channels_first: bool) -> int | None:
    shape = rec.output_shape
    if not isinstance(shape, tuple) or len(shape) < 3:
        return None
    n = shape[1] if channels_first else shape[-1]
    return None if n is None else int(n)


def _compose(lo: list[np.ndarray], hi: list[np.ndarray], taps: list[Taps]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Boxes of this layer's positions from its input's boxes: min/max over the taps, per axis."""
    out_lo, out_hi = [], []
    for a, axis_taps in enumerate(taps):
        n_out = len(axis_taps[0])
        new_lo = np.full(n_out, _EMPTY_LO, dtype=np.int64)
        new_hi = np.full(n_out, _EMPTY_HI, dtype=np.int64)
        for q in axis_taps:
            ok = q >= 0
            idx = np.where(ok, q, 0)
            new_lo = np.where(ok, np.minimum(new_lo, lo[a][idx]), new_lo)
            new_hi = np.where(ok, np.maximum(new_hi, hi[a][idx]), new_hi)
        out_lo.append(new_lo)
        out_hi.append(new_hi)
    return out_lo, out_hi


def _union(parts: list[tuple[list[np.ndarray], list[np.ndarray]]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    lo = [np.minimum.reduce([p[0][a] for p in parts]) for a in range(len(parts[0][0]))]
    hi = [np.maximum.reduce([p[1][a] for p in parts]) for a in range(len(parts[0][1]))]
    return lo, hi


def layer_output_size(index: ModelIndex, layer: str | LayerRecord, input_size: Sequence[int]) -> tuple[int, ...]:
    """The spatial size of a layer's output for a model input of spatial size ``input_size``."""
    rec = layer if isinstance(layer, LayerRecord) else index.layer(layer)
    return _Walker(index, tuple(int(n) for n in input_size)).size(rec)


def receptive_field(index: ModelIndex, layer: str | LayerRecord, input_size: Sequence[int],
                    map_index: int | None = None) -> ReceptiveField:
    """The input boxes of every output position of ``layer`` for an input of spatial size ``input_size``.

    ``map_index`` matters only where a Concatenate on the way makes boxes differ per map; ``None``
    gives the union over all maps.
    """
    size = tuple(int(n) for n in input_size)
    if not size or any(n <= 0 for n in size):
        raise ReceptiveFieldError(f"the input size must be positive spatial lengths, e.g. (224, 224). "
                                  f"Received: {describe_received(tuple(input_size))}")
    return FieldCache(index, layer, size).get(map_index)


class FieldCache:
    """Receptive fields of one layer, computed once per distinct answer (maps share the union field
    unless a Concatenate on the way separates them)."""

    def __init__(self, index: ModelIndex, layer: str | LayerRecord, input_size: Sequence[int]) -> None:
        self.rec = layer if isinstance(layer, LayerRecord) else index.layer(layer)
        self.index = index
        self.input_size = tuple(int(n) for n in input_size)
        self._walker = _Walker(index, self.input_size)
        self._by_map: dict[int | None, ReceptiveField] = {}

    def get(self, map_index: int | None) -> ReceptiveField:
        if map_index not in self._by_map:
            lo, hi = self._walker.field(self.rec, map_index)
            clipped_lo, clipped_hi = [], []
            for a, n in enumerate(self.input_size):
                empty = lo[a] >= hi[a]
                clipped_lo.append(np.where(empty, 0, np.clip(lo[a], 0, n)))
                clipped_hi.append(np.where(empty, 0, np.clip(hi[a], 0, n)))
            self._by_map[map_index] = ReceptiveField(self.rec.path, map_index, self.input_size,
                                                     tuple(clipped_lo), tuple(clipped_hi))
        return self._by_map[map_index]
