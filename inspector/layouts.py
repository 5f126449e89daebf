"""How each filter kind lays out its kernel: the one place that knows it (docs/formats.md §5.2).

Stored kernel layouts (channels_last and channels_first alike: ``data_format`` moves the data, not
the kernel; any spatial rank ``*k``)::

    conv (groups g)      (*k, C_in/g, C_out)       map j reads group j // (C_out/g)
    depthwise (mult M)   (*k, C_in, M)             map i·M + m reads input channel i
    transposed           (*k, C_out, C_in)         axes reversed; map j reads every input channel
    separable            depthwise (*k, C_in, M), pointwise (1.., C_in·M, C_out):
                         effective K[..., i, j] = Σ_m D[..., i, m]·P[i·M+m, j] (exact)
    dense                (C_in, units)

:func:`layout_of` returns one :class:`Layout` per (layer, stage) that answers every question the
rest of the package asks about it: how many maps and input channels, which input channels feed map j
and the lazy ``TensorRef.read`` index of their kernels (:meth:`Layout.map_kernels`), the slice of
this layer's kernel that reads one of *its* input channels (:meth:`Layout.consumer_kernels`, for the
previous layer's "who reads my map"), and the kernel streamed as bounded blocks of the
(taps·channels × maps) matrix for statistics (:meth:`Layout.stream`). For files without a config,
:func:`infer_kind` guesses the kind from variable names and shapes, and :func:`map_count` /
:func:`input_count` answer from shapes alone. numpy only: no Keras here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from .errors import NotAFilterLayerError, SelectionError, describe_received
from .records import FILTER_KINDS, LayerKind, LayerRecord, TensorRef

__all__ = [
    "Layout",
    "Stage",
    "Stream",
    "chunk_indices",
    "conv_kinds_matching",
    "depth_multiplier",
    "groups_of",
    "infer_kind",
    "input_count",
    "itemsize",
    "layout_of",
    "map_count",
    "read_chunk",
    "stages_for",
]


class Stage(StrEnum):
    """Which kernel of a layer a FilterSet shows."""

    KERNEL = "kernel"  # the layer's own kernel (conv, depthwise, transpose, dense)
    EFFECTIVE = "effective"  # separable: depthwise ∘ pointwise as one conv kernel (exact)
    DEPTHWISE = "depthwise"  # separable: the depthwise stage; maps are the C_in·M intermediate channels
    POINTWISE = "pointwise"  # separable: the 1×1 stage reading the intermediate channels


# -- shapes alone (weights-only files) ------------------------------------------------------------------

def map_count(kind: LayerKind, kernel_shape: Sequence[int], pointwise_shape: Sequence[int] | None = None) -> int:
    """Output maps of a layer of ``kind`` from its kernel shape (separable: effective stage, which needs
    ``pointwise_shape``)."""
    match kind:
        case LayerKind.CONV | LayerKind.DENSE:
            return int(kernel_shape[-1])
        case LayerKind.DEPTHWISE:
            return int(kernel_shape[-2]) * depth_multiplier(kernel_shape)
        case LayerKind.TRANSPOSE:
            return int(kernel_shape[-2])
        case LayerKind.SEPARABLE if pointwise_shape is not None:
            return int(pointwise_shape[-1])
    raise ValueError(f"no map count for kind {kind} from shapes {kernel_shape}, {pointwise_shape}")


def depth_multiplier(kernel_shape: Sequence[int]) -> int:
    """M of a depthwise (or separable depthwise) kernel ``(*k, C_in, M)``."""
    return int(kernel_shape[-1])


def input_count(kind: LayerKind, kernel_shape: Sequence[int], groups: int = 1) -> int:
    """Input channels (or units) a layer of ``kind`` reads, from its (main) kernel shape."""
    match kind:
        case LayerKind.CONV:
            return int(kernel_shape[-2]) * groups
        case LayerKind.DEPTHWISE | LayerKind.SEPARABLE:
            return int(kernel_shape[-2])
        case LayerKind.TRANSPOSE:
            return int(kernel_shape[-1])
        case LayerKind.DENSE:
            return int(kernel_shape[0])
    raise ValueError(f"no input count for kind {kind}")


def infer_kind(names: Sequence[str | None], shapes: Sequence[tuple[int, ...]]) -> tuple[str | None, LayerKind]:
    """Guess a class from variable names and shapes when nothing else says (weights-only, SavedModel)."""
    plain = [None if n is None else n.split(":", 1)[0].rsplit("/", 1)[-1].lstrip("_") for n in names]
    if "pointwise_kernel" in plain and "depthwise_kernel" in plain:
        rank = len(shapes[plain.index("depthwise_kernel")]) - 2
        return f"SeparableConv{rank}D", LayerKind.SEPARABLE
    if "depthwise_kernel" in plain:
        rank = len(shapes[plain.index("depthwise_kernel")]) - 2
        return f"DepthwiseConv{rank}D", LayerKind.DEPTHWISE
    if "moving_mean" in plain and "moving_variance" in plain:
        return "BatchNormalization", LayerKind.NORM
    if "recurrent_kernel" in plain:
        return None, LayerKind.RNN
    if "embeddings" in plain:
        return "Embedding", LayerKind.EMBEDDING
    if "kernel" in plain:
        kshape = shapes[plain.index("kernel")]
        if len(kshape) == 2:
            return "Dense", LayerKind.DENSE
        if 3 <= len(kshape) <= 5:
            # A regular conv kernel; depthwise and transposed kernels look the same from the shape alone.
            return f"Conv{len(kshape) - 2}D", LayerKind.CONV
    if plain and set(plain) <= {"gamma", "beta"}:
        return None, LayerKind.NORM
    return None, LayerKind.OTHER


def conv_kinds_matching(kernel_shape: Sequence[int], channels: int) -> list[LayerKind]:
    """The conv-like kinds whose map count from this kernel shape is ``channels`` (regular, depthwise,
    transposed look alike in a rank-(k+2) kernel; a bias or the next layer's input tells them apart)."""
    return [k for k in (LayerKind.CONV, LayerKind.DEPTHWISE, LayerKind.TRANSPOSE)
            if map_count(k, kernel_shape) == channels]


# -- streaming ------------------------------------------------------------------------------------------

def chunk_indices(shape: tuple[int, ...], itemsize: int, chunk_bytes: int,
                  max_axis: int | None = None) -> Iterator[tuple[tuple[Any, ...], int, int, int]]:
    """Index tuples that cover ``shape`` in contiguous C-order slices of at most ``chunk_bytes``.

    Picks the first axis ``k`` (``<= max_axis``) whose trailing block fits, steps along it, and walks
    the axes before it one index at a time (as length-1 slices, so every chunk keeps the tensor's
    rank). Contiguous slices matter: a memory-mapped read of a strided slice would touch, and count
    in RSS, every page of the tensor. Yields ``(index, axis, start, stop)``.
    """
    ndim = len(shape)
    if ndim == 0 or math.prod(shape) == 0:
        yield (), -1, 0, 0
        return
    last = ndim - 1 if max_axis is None else min(max_axis, ndim - 1)
    axis = last
    for k in range(last + 1):
        if math.prod(shape[k + 1:]) * itemsize <= chunk_bytes:
            axis = k
            break
    row_bytes = math.prod(shape[axis + 1:]) * itemsize
    step = max(1, chunk_bytes // max(row_bytes, 1))
    if axis == 0 and step >= shape[0]:
        yield (), -1, 0, shape[0]  # the whole tensor is one chunk: read it with one plain file read
        return
    for lead in np.ndindex(*shape[:axis]):
        head = tuple(slice(i, i + 1) for i in lead)
        for start in range(0, shape[axis], step):
            stop = min(start + step, shape[axis])
            yield (*head, slice(start, stop)), axis, start, stop


def read_chunk(ref: TensorRef, index: tuple[Any, ...]) -> np.ndarray:
    """``ref`` at a :func:`chunk_indices` index (``()``: the whole tensor, one plain read)."""
    return ref.read(index if index else None)


def itemsize(ref: TensorRef) -> int:
    """Bytes per stored element (bfloat16: 2)."""
    return np.dtype(ref.numpy_dtype).itemsize


@dataclass
class Stream:
    """A kernel as blocks ``(taps, channels, maps)`` of the map matrix, for one streamed pass.

    Column ``j`` of a block holds map ``j``'s weights for local input channels ``c0 .. c0+channels``
    at some kernel taps; ``col_offset[j]`` turns a local channel into a full input channel (the
    group's first channel for grouped conv, ``i`` for depthwise map ``i·M+m``). Maps with different
    offsets read disjoint channels. ``rows`` is the length of one map's vector (taps × local channels).
    """

    local_channels: int
    col_offset: np.ndarray
    rows: int
    make_blocks: Callable[[], Iterator[tuple[np.ndarray, int]]] = field(repr=False)

    def blocks(self) -> Iterator[tuple[np.ndarray, int]]:
        """``(block, c0)`` pairs; each call starts a new pass over the kernel."""
        return self.make_blocks()


# -- per-kind layouts -----------------------------------------------------------------------------------

def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


_COLUMN_CHUNK = 2048  # rows per read of a Dense column


@dataclass(frozen=True, eq=False)
class Layout:
    """One (layer, stage)'s kernel layout. ``kernel`` is the tensor sliced for a map (the depthwise
    kernel for a separable ``depthwise`` stage, the pointwise one for ``pointwise``)."""

    kind: LayerKind
    stage: Stage
    kernel: TensorRef
    n_maps: int
    n_inputs: int
    groups: int = 1
    groups_known: bool = True
    has_bias: bool = True  # whether the layer's bias belongs to this stage's maps

    # map j -------------------------------------------------------------------------------------------
    def map_channels(self, j: int) -> np.ndarray:
        """The input channels that feed map ``j``, in increasing order."""
        return np.arange(self.n_inputs)

    def map_index(self, j: int) -> tuple[Any, ...]:
        """The ``TensorRef.read`` index of ``kernel`` that holds map ``j``'s weights."""
        raise NotImplementedError

    def map_kernels(self, j: int) -> np.ndarray:
        """Map ``j``'s kernels, canonical ``(len(map_channels(j)), *spatial)`` float64; reads only them."""
        return np.moveaxis(_f64(self.kernel.read(self.map_index(j))), -1, 0)

    # its input channel c, read by this layer (the previous layer's map c) ------------------------------
    def consumer_maps(self, c: int) -> np.ndarray:
        """This layer's maps that read input channel ``c``."""
        return np.arange(self.n_maps)

    def consumer_index(self, c: int) -> tuple[Any, ...]:
        raise NotImplementedError

    def consumer_kernels(self, c: int) -> np.ndarray:
        """The kernels through which input channel ``c`` reaches ``consumer_maps(c)``: ``(n, *spatial)``."""
        return np.moveaxis(_f64(self.kernel.read(self.consumer_index(c))), -1, 0)

    # streaming ---------------------------------------------------------------------------------------
    def stream(self, chunk_bytes: int) -> Stream:
        """The kernel as blocks of at most about ``chunk_bytes`` raw bytes (see :class:`Stream`)."""
        raise NotImplementedError

    def _chunks(self, chunk_bytes: int, max_axis: int, item_bytes: int | None = None,
                ) -> Iterator[tuple[np.ndarray, int, int]]:
        ref = self.kernel
        for index, axis, start, _stop in chunk_indices(ref.shape, item_bytes or itemsize(ref), chunk_bytes,
                                                       max_axis=max_axis):
            yield read_chunk(ref, index), axis, start


@dataclass(frozen=True, eq=False)
class ConvLayout(Layout):
    """``(*k, C_in/g, C_out)``; also a separable layer's pointwise stage (1×1, g = 1)."""

    def _per(self) -> tuple[int, int]:
        return self.kernel.shape[-2], self.n_maps // self.groups  # (inputs, maps) per group

    def map_channels(self, j: int) -> np.ndarray:
        per_in, per_out = self._per()
        g = j // per_out
        return np.arange(g * per_in, (g + 1) * per_in)

    def map_index(self, j: int) -> tuple[Any, ...]:
        return (..., j)

    def consumer_maps(self, c: int) -> np.ndarray:
        per_in, per_out = self._per()
        g = c // per_in
        return np.arange(g * per_out, (g + 1) * per_out)

    def consumer_index(self, c: int) -> tuple[Any, ...]:
        per_in, per_out = self._per()
        g, local = divmod(c, per_in)
        return (..., local, slice(g * per_out, (g + 1) * per_out))

    def stream(self, chunk_bytes: int) -> Stream:
        shape, n = self.kernel.shape, self.n_maps
        ndim, cin_g = len(shape), shape[-2]
        offsets = (np.arange(n, dtype=np.int64) // (n // self.groups)) * cin_g

        def blocks() -> Iterator[tuple[np.ndarray, int]]:
            for chunk, axis, start in self._chunks(chunk_bytes, ndim - 2):
                yield chunk.reshape(-1, chunk.shape[-2], n), (start if axis == ndim - 2 else 0)

        return Stream(cin_g, offsets, math.prod(shape[:-1]), blocks)


@dataclass(frozen=True, eq=False)
class DepthwiseLayout(Layout):
    """``(*k, C_in, M)``: map ``i·M + m`` reads input channel ``i`` only; also a separable depthwise stage."""

    def _mult(self) -> int:
        return depth_multiplier(self.kernel.shape)

    def map_channels(self, j: int) -> np.ndarray:
        return np.array([j // self._mult()])

    def map_index(self, j: int) -> tuple[Any, ...]:
        return (..., *divmod(j, self._mult()))

    def map_kernels(self, j: int) -> np.ndarray:
        return _f64(self.kernel.read(self.map_index(j)))[None]

    def consumer_maps(self, c: int) -> np.ndarray:
        return c * self._mult() + np.arange(self._mult())

    def consumer_index(self, c: int) -> tuple[Any, ...]:
        return (..., c, slice(None))

    def stream(self, chunk_bytes: int) -> Stream:
        shape, n = self.kernel.shape, self.n_maps

        def blocks() -> Iterator[tuple[np.ndarray, int]]:
            # A map reads one channel: the block has one local channel; col_offset says which.
            for chunk, *_ in self._chunks(chunk_bytes, len(shape) - 3):
                yield chunk.reshape(-1, 1, n), 0

        return Stream(1, np.arange(n, dtype=np.int64) // self._mult(), math.prod(shape[:-2]), blocks)


@dataclass(frozen=True, eq=False)
class TransposeLayout(Layout):
    """``(*k, C_out, C_in)``: the last two axes reversed; every map reads every input channel."""

    def map_index(self, j: int) -> tuple[Any, ...]:
        return (..., j, slice(None))

    def consumer_index(self, c: int) -> tuple[Any, ...]:
        return (..., slice(None), c)

    def stream(self, chunk_bytes: int) -> Stream:
        shape, n, c_in = self.kernel.shape, self.n_maps, self.n_inputs

        def blocks() -> Iterator[tuple[np.ndarray, int]]:
            for chunk, *_ in self._chunks(chunk_bytes, len(shape) - 3):
                yield np.swapaxes(chunk.reshape(-1, n, c_in), 1, 2), 0

        return Stream(c_in, np.zeros(n, dtype=np.int64), math.prod(shape[:-2]) * c_in, blocks)


@dataclass(frozen=True, eq=False)
class DenseLayout(Layout):
    """``(C_in, units)``: map j is kernel column j (spatial ``()``)."""

    def map_index(self, j: int) -> tuple[Any, ...]:
        return (slice(None), j)

    def map_kernels(self, j: int) -> np.ndarray:
        # A column is strided across the whole tensor (one value per row), so a single memory-mapped
        # read touches a page per row at once; row blocks keep the mapped working set small (VGG16
        # fc1: 25088 rows of 16 KB).
        rows = self.kernel.shape[0]
        if rows <= _COLUMN_CHUNK:
            return _f64(self.kernel.read((slice(None), j)))
        return np.concatenate([_f64(self.kernel.read((slice(r, min(r + _COLUMN_CHUNK, rows)), j)))
                               for r in range(0, rows, _COLUMN_CHUNK)])

    def consumer_index(self, c: int) -> tuple[Any, ...]:
        return (c, slice(None))

    def consumer_kernels(self, c: int) -> np.ndarray:
        return _f64(self.kernel.read(self.consumer_index(c)))

    def rows_kernels(self, rows: np.ndarray) -> np.ndarray:
        """Kernel rows ``rows`` (any order) as ``(len(rows), units)``; h5py needs increasing indices."""
        order = np.argsort(rows)
        got = _f64(self.kernel.read((rows[order], slice(None))))
        back = np.empty_like(got)
        back[order] = got
        return back

    def stream(self, chunk_bytes: int) -> Stream:
        shape, n = self.kernel.shape, self.n_maps

        def blocks() -> Iterator[tuple[np.ndarray, int]]:
            for chunk, axis, start in self._chunks(chunk_bytes, 0):
                yield chunk.reshape(1, -1, n), (start if axis == 0 else 0)

        return Stream(shape[0], np.zeros(n, dtype=np.int64), shape[0], blocks)


@dataclass(frozen=True, eq=False)
class SeparableLayout(Layout):
    """Effective kernel of a separable layer: ``K[..., i, j] = Σ_m D[..., i, m]·P[i·M+m, j]``."""

    pointwise: TensorRef | None = None

    def _pw(self) -> TensorRef:
        assert self.pointwise is not None
        return self.pointwise

    def map_index(self, j: int) -> tuple[Any, ...]:
        return (..., j)  # of the pointwise kernel; every input channel's depthwise kernel is needed too

    def map_kernels(self, j: int) -> np.ndarray:
        c_in, mult = self.kernel.shape[-2], self.kernel.shape[-1]
        column = _f64(self._pw().read(self.map_index(j))).reshape(c_in, mult)  # P[i·M+m, j]
        depthwise = _f64(self.kernel.read())  # every input channel feeds map j: all of D is needed
        return np.einsum("...im,im->i...", depthwise, column)

    def consumer_index(self, c: int) -> tuple[Any, ...]:
        return (..., c, slice(None))  # of the depthwise kernel

    def consumer_kernels(self, c: int) -> np.ndarray:
        mult = self.kernel.shape[-1]
        pw = self._pw()
        d = _f64(self.kernel.read(self.consumer_index(c)))  # (*k, M)
        p = _f64(pw.read((..., slice(c * mult, (c + 1) * mult), slice(None)))).reshape(mult, pw.shape[-1])
        return np.einsum("...m,mf->f...", d, p)

    def stream(self, chunk_bytes: int) -> Stream:
        shape, n = self.kernel.shape, self.n_maps
        c_in, mult = shape[-2], shape[-1]
        pw = _f64(self._pw().read()).reshape(c_in, mult, n)
        # One tap of K_eff is c_in·n wide: chunk the depthwise kernel by that size rather than its own.
        tap_ratio = max(1, n // max(mult, 1))

        def blocks() -> Iterator[tuple[np.ndarray, int]]:
            for chunk, *_ in self._chunks(chunk_bytes, len(shape) - 3, itemsize(self.kernel) * tap_ratio):
                d = chunk.reshape(-1, c_in, mult)
                yield np.einsum("tim,imf->tif", d.astype(np.float64), pw), 0

        return Stream(c_in, np.zeros(n, dtype=np.int64), math.prod(shape[:-2]) * c_in, blocks)


# -- from a record ----------------------------------------------------------------------------------------

def stages_for(layer: LayerRecord) -> tuple[Stage, ...]:
    """The stages a layer can show; the first is the default."""
    if layer.kind is LayerKind.SEPARABLE:
        return (Stage.EFFECTIVE, Stage.DEPTHWISE, Stage.POINTWISE)
    return (Stage.KERNEL,)


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
    return chosen


def _require_kernel(layer: LayerRecord) -> TensorRef:
    kernel = layer.kernel
    if layer.kind not in FILTER_KINDS or kernel is None:
        what = layer.class_name or "unknown class"
        raise NotAFilterLayerError(
            f"layer {layer.path!r} ({what}) has no kernel to slice into filters; filters exist for Conv1D/2D/3D, "
            "DepthwiseConv, SeparableConv, Conv*Transpose and Dense layers. "
            f"Received: {describe_received(layer.path)}")
    if len(kernel.shape) < 2:
        raise NotAFilterLayerError(
            f"layer {layer.path!r} has a kernel of rank {len(kernel.shape)}; filters need a rank >= 2 kernel. "
            f"Received: shape {kernel.shape}")
    return kernel


def _pointwise(layer: LayerRecord) -> TensorRef:
    ref = layer.weight("pointwise_kernel")
    if ref is None:
        raise NotAFilterLayerError(
            f"separable layer {layer.path!r} has no pointwise kernel in this file; expected weights "
            f"depthwise_kernel and pointwise_kernel. Received: {[w.name for w in layer.weights]}")
    return ref


def _channels_of(shape: Any, channels_first: bool) -> int | None:
    if not isinstance(shape, tuple) or len(shape) < 2:
        return None
    dim = shape[1] if channels_first else shape[-1]
    return int(dim) if isinstance(dim, int) else None


def groups_of(layer: LayerRecord, kernel: TensorRef) -> tuple[int, bool]:
    """(groups, known) of a conv layer: weights-only files do not store groups (docs/formats.md §2), so
    the producer's channel count decides when recorded; a count that does not divide the maps is 1."""
    c_out = kernel.shape[-1]
    spec = layer.spec
    if spec is not None and spec.groups:
        groups, known = int(spec.groups), True
    else:
        c_in = _channels_of(layer.input_shape, spec.channels_first if spec else False)
        if c_in and c_in % kernel.shape[-2] == 0:
            groups, known = c_in // kernel.shape[-2], True
        else:
            groups, known = 1, False
    if groups < 1 or c_out % groups:
        return 1, False  # inconsistent file: treat as ungrouped rather than guess
    return groups, known


def layout_of(layer: LayerRecord, stage: str | None = None) -> Layout:
    """The layout of ``layer``'s kernel for ``stage`` (default: the layer's first stage)."""
    kernel = _require_kernel(layer)
    st = _stage(layer, stage)
    shape = kernel.shape
    has_bias = layer.bias is not None
    match layer.kind:
        case LayerKind.CONV:
            groups, known = groups_of(layer, kernel)
            return ConvLayout(layer.kind, st, kernel, map_count(layer.kind, shape),
                              input_count(layer.kind, shape, groups), groups, known, has_bias)
        case LayerKind.DEPTHWISE:
            return DepthwiseLayout(layer.kind, st, kernel, map_count(layer.kind, shape), shape[-2], shape[-2],
                                   has_bias=has_bias)
        case LayerKind.TRANSPOSE:
            return TransposeLayout(layer.kind, st, kernel, map_count(layer.kind, shape),
                                   input_count(layer.kind, shape), has_bias=has_bias)
        case LayerKind.DENSE:
            return DenseLayout(layer.kind, st, kernel, map_count(layer.kind, shape),
                               input_count(layer.kind, shape), has_bias=has_bias)
        case LayerKind.SEPARABLE if st is Stage.DEPTHWISE:
            # The separable bias is added after the pointwise stage, so this stage has none.
            n = map_count(LayerKind.DEPTHWISE, shape)
            return DepthwiseLayout(layer.kind, st, kernel, n, shape[-2], shape[-2], has_bias=False)
        case LayerKind.SEPARABLE if st is Stage.POINTWISE:
            pw = _pointwise(layer)
            return ConvLayout(layer.kind, st, pw, pw.shape[-1], pw.shape[-2], has_bias=has_bias)
        case LayerKind.SEPARABLE:
            pw = _pointwise(layer)
            return SeparableLayout(layer.kind, st, kernel, map_count(layer.kind, shape, pw.shape),
                                   input_count(layer.kind, shape), has_bias=has_bias, pointwise=pw)
    raise AssertionError(layer.kind)  # pragma: no cover
