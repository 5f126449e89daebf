"""Weight statistics and filter health: what a layer learned, at a glance.

Two levels, both computed from a :class:`~inspector.records.ModelIndex` without Keras:

* :func:`tensor_stats` / :func:`layer_stats`: min, max, mean, std, L1/L2 norms, exact and near
  zeros, NaN/Inf counts and a histogram of every weight tensor. Tensors are *streamed*: read in
  contiguous slices along their leading axes (never more than ``chunk_bytes`` of one tensor at a
  time), with moments merged in float64 (Chan et al.'s parallel update), so a 411 MB Dense kernel
  costs a few MB of memory.
* :func:`filter_health`: per output map of a filter layer (conv, grouped conv, depthwise,
  separable, transposed, dense): kernel norm, bias, the input-channel × output-map norm matrix, dead
  maps, near-duplicate maps and, when a BatchNormalization follows, its per-map scale.

Definitions (also in ``docs/stats.md``):

* Statistics cover the *finite* entries; NaN, +Inf and -Inf are counted, never averaged in.
* ``near_zeros`` counts ``|w| < near_zero · max|w|`` (relative, default 1e-6, per tensor), or
  ``|w| < near_zero_abs`` when an absolute threshold is given. Exact zeros are included.
* The histogram has ``bins`` equal bins over ``[min, max]`` of the finite values (numpy's rule for
  a constant tensor: ``[v - 0.5, v + 0.5]``). Tensors larger than one chunk take two passes: the
  first finds min/max, the second bins; the result equals ``np.histogram`` on the whole tensor.
* A map is *dead* when its kernel norm is 0 or below ``dead_threshold`` (default 1e-3) × the median
  map norm of the layer (the largest map norm when the median itself is 0). The bias is ignored: a
  map with a zero kernel outputs a constant whatever its input.
* Two maps are *near duplicates* when the cosine similarity of their kernels, as vectors over all
  input channels, has absolute value ≥ ``dup_threshold`` (default 0.99). Negative similarity means a
  sign-flipped copy. Grouped-conv maps in different groups (and depthwise maps of different input
  channels) read disjoint inputs, so their similarity is 0 by this definition.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SelectionError, describe_received

# BN folding asks the same planner as filters_for_map(fold_bn=True) (inspector.graph), and the kernel
# is streamed through the same layout (inspector.layouts), so the norms and scales here are the ones
# of the FilterSets (tests/test_layouts.py checks that on every layer-table row).
from .graph import bn_fold_plan
from .layouts import chunk_indices, itemsize, layout_of, read_chunk
from .records import LayerKind, LayerRecord, ModelIndex, TensorRef

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DuplicatePair",
    "FilterHealth",
    "LayerStats",
    "TensorStats",
    "filter_health",
    "layer_stats",
    "tensor_stats",
]

#: Largest slice of one tensor held in memory (raw bytes; the float64 working copy is 2x for float32).
DEFAULT_CHUNK_BYTES = 8 * 2**20
DEFAULT_BINS = 64
DEFAULT_NEAR_ZERO = 1e-6
DEFAULT_DEAD_THRESHOLD = 1e-3
DEFAULT_DUP_THRESHOLD = 0.99
#: Listing every duplicate pair of a degenerate layer (e.g. constant-initialised) could mean millions.
MAX_LISTED_PAIRS = 1000
#: The channel-norm matrix is pooled into exact block norms beyond this many cells (about 8 MB float64).
DEFAULT_MAX_MATRIX_CELLS = 2**20
#: Column-block width for the Gram matrix, bounding its temporary to block × maps float32.
_GRAM_BLOCK = 1024
#: The exact all-pairs Gram matrix is used up to this many maps and maps² × vector length
#: multiply-adds (VGG16 block5: 512² × 4608 = 1.2e9). Beyond (VGG16 fc1: 4096² × 25088 = 4.2e11,
#: ~30 s of BLAS) candidates come from a random-projection sketch and are then verified exactly.
_EXACT_MAX_MAPS = 2048
_EXACT_MAX_WORK = 4e9
#: Sketch width k and candidate slack: a pair at true distance² δ (unit vectors) is missed only if a
#: chi-square with k degrees of freedom exceeds slack·k (P(χ²_64 > 256) < 1e-40).
_SKETCH_DIM = 64
_SKETCH_SLACK = 4.0


# -- tensor statistics ----------------------------------------------------------------------------------
@dataclass
class TensorStats:
    """Statistics of one weight tensor (or, for a layer's ``combined``, of all its tensors).

    ``min``/``max``/``mean``/``std`` are over finite entries and ``None`` when there are none; ``std``
    is the population standard deviation (numpy's default ``ddof=0``).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    count: int
    finite: int
    nan: int
    posinf: int
    neginf: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    l1: float
    l2: float
    zeros: int
    near_zeros: int
    near_zero_cutoff: float | None  # the |w| bound used (absolute); None for a combined row
    hist_counts: np.ndarray | None = field(default=None, repr=False)
    hist_edges: np.ndarray | None = field(default=None, repr=False)

    @property
    def nonfinite(self) -> int:
        return self.nan + self.posinf + self.neginf

    @property
    def zero_fraction(self) -> float:
        return self.zeros / self.count if self.count else 0.0

    @property
    def near_zero_fraction(self) -> float:
        return self.near_zeros / self.count if self.count else 0.0

    def to_dict(self, histogram: bool = True) -> dict[str, Any]:
        out = {
            "name": self.name, "shape": list(self.shape), "dtype": self.dtype, "count": self.count,
            "finite": self.finite, "nan": self.nan, "posinf": self.posinf, "neginf": self.neginf,
            "min": self.min, "max": self.max, "mean": self.mean, "std": self.std,
            "l1": self.l1, "l2": self.l2,
            "zeros": self.zeros, "zero_fraction": self.zero_fraction, "near_zeros": self.near_zeros,
            "near_zero_fraction": self.near_zero_fraction, "near_zero_cutoff": self.near_zero_cutoff,
        }
        if histogram and self.hist_counts is not None and self.hist_edges is not None:
            out["histogram"] = {"counts": self.hist_counts.tolist(), "edges": self.hist_edges.tolist()}
        return out


class _Acc:
    """Mergeable first-pass accumulator: counts, min/max, Chan-merged mean and M2, norms, zeros."""

    def __init__(self) -> None:
        self.count = self.finite = self.nan = self.posinf = self.neginf = self.zeros = 0
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.l1 = 0.0
        self.sq = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, chunk: np.ndarray) -> np.ndarray:
        """Fold one chunk in; returns its finite values as float64 (for the histogram)."""
        x = np.asarray(chunk, dtype=np.float64).ravel()
        self.count += x.size
        ok = np.isfinite(x)
        if not ok.all():
            bad = x[~ok]
            n_nan = int(np.isnan(bad).sum())
            n_pos = int((bad == np.inf).sum())
            self.nan += n_nan
            self.posinf += n_pos
            self.neginf += bad.size - n_nan - n_pos
            x = x[ok]
        if x.size:
            mean = float(x.mean())
            d = x - mean
            m2 = float(np.einsum("i,i->", d, d))
            self._merge(x.size, mean, m2)
            self.min = min(self.min, float(x.min()))
            self.max = max(self.max, float(x.max()))
            np.abs(x, out=d)
            self.l1 += float(d.sum())
            # Σx² = M2 + n·mean²: both terms are >= 0, so no cancellation, and no extra pass.
            self.sq += m2 + x.size * mean * mean
            self.zeros += int(np.count_nonzero(x == 0))
        self.finite += x.size
        return x

    def _merge(self, n_b: int, mean_b: float, m2_b: float) -> None:
        # Chan, Golub & LeVeque: combining (n, mean, M2) of two parts is exact in real arithmetic and
        # avoids the cancellation of the textbook sum-of-squares formula on large, offset tensors.
        n_a = self.n
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n
        self.n = n

    def merge(self, other: _Acc) -> None:
        for name in ("count", "finite", "nan", "posinf", "neginf", "zeros"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.n:
            self._merge(other.n, other.mean, other.m2)
        self.l1 += other.l1
        self.sq += other.sq
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def result(self, name: str, shape: tuple[int, ...], dtype: str, near_zeros: int,
               cutoff: float | None, counts: np.ndarray | None, edges: np.ndarray | None) -> TensorStats:
        has = self.finite > 0
        return TensorStats(
            name=name, shape=shape, dtype=dtype, count=self.count, finite=self.finite, nan=self.nan,
            posinf=self.posinf, neginf=self.neginf,
            min=self.min if has else None, max=self.max if has else None,
            mean=self.mean if has else None, std=math.sqrt(self.m2 / self.n) if has else None,
            l1=self.l1, l2=math.sqrt(self.sq), zeros=self.zeros, near_zeros=near_zeros,
            near_zero_cutoff=cutoff, hist_counts=counts, hist_edges=edges,
        )


def tensor_stats(ref: TensorRef, *, bins: int = DEFAULT_BINS, near_zero: float = DEFAULT_NEAR_ZERO,
                 near_zero_abs: float | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> TensorStats:
    """Statistics of one tensor, streamed in slices of at most ``chunk_bytes`` (see module docstring)."""
    if bins < 1:
        raise SelectionError(f"the histogram needs at least one bin; pass bins >= 1. Received: {bins!r}")
    acc = _Acc()
    chunks = list(chunk_indices(ref.shape, itemsize(ref), chunk_bytes))
    single = len(chunks) == 1
    kept: np.ndarray | None = None
    for index, *_ in chunks:
        finite = acc.add(read_chunk(ref, index))
        if single:
            kept = finite  # small tensor: bin and count near-zeros from this read, no second pass
    counts = edges = None
    near = 0
    cutoff: float | None = None
    if acc.finite:
        absmax = max(abs(acc.min), abs(acc.max))
        cutoff = near_zero_abs if near_zero_abs is not None else near_zero * absmax
        rng = (acc.min, acc.max)  # np.histogram widens a zero-width range to [v-0.5, v+0.5] itself
        counts = np.zeros(bins, dtype=np.int64)
        parts: Iterator[np.ndarray] = iter([kept]) if kept is not None else (
            _finite(read_chunk(ref, index)) for index, *_ in chunks)
        edges = _edges(rng, bins)
        for x in parts:
            counts += _histogram(x, edges)
            near += int(np.count_nonzero(np.abs(x) < cutoff))
    return acc.result(ref.name, ref.shape, ref.dtype, near, cutoff, counts, edges)


def _edges(rng: tuple[float, float], bins: int) -> np.ndarray:
    lo, hi = rng
    if lo == hi:  # numpy's rule for a constant tensor
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1, endpoint=True, dtype=np.float64)


def _histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(x, bins=edges.size - 1, range=(edges[0], edges[-1]))[0]`` for in-range float64 ``x``.

    The same arithmetic as numpy's equal-bins path (index by scaling, then correct by comparing with
    the edges), applied to the whole chunk at once instead of numpy's 64k-element blocks: about 2x
    faster on big tensors, and identical counts (the tests compare with ``np.histogram``).
    """
    n = edges.size - 1
    first, last = edges[0], edges[-1]
    idx = ((x - first) / (last - first) * n).astype(np.intp)
    idx[idx == n] -= 1
    idx[x < edges[idx]] -= 1
    idx[(x >= edges[idx + 1]) & (idx != n - 1)] += 1
    return np.bincount(idx, minlength=n)


def _finite(chunk: np.ndarray) -> np.ndarray:
    x = np.asarray(chunk, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


@dataclass
class LayerStats:
    """Per-tensor statistics of one layer, and all its tensors merged (``combined``, no histogram)."""

    path: str
    kind: str
    class_name: str | None
    params: int
    tensors: list[TensorStats]
    combined: TensorStats
    health: FilterHealth | None = None

    def to_dict(self, histogram: bool = True) -> dict[str, Any]:
        return {
            "path": self.path, "kind": self.kind, "class_name": self.class_name, "params": self.params,
            "combined": self.combined.to_dict(histogram=False),
            "tensors": [t.to_dict(histogram=histogram) for t in self.tensors],
            "health": None if self.health is None else self.health.to_dict(),
        }


def layer_stats(layer: LayerRecord, *, index: ModelIndex | None = None, health: bool = True,
                bins: int = DEFAULT_BINS, near_zero: float = DEFAULT_NEAR_ZERO,
                near_zero_abs: float | None = None, dead_threshold: float = DEFAULT_DEAD_THRESHOLD,
                dup_threshold: float | None = DEFAULT_DUP_THRESHOLD, fold_bn: bool = False,
                channel_matrix: bool = False, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> LayerStats:
    """Statistics of every tensor of ``layer`` and, for filter layers (``health=True``), its filter health."""
    tensors = [tensor_stats(ref, bins=bins, near_zero=near_zero, near_zero_abs=near_zero_abs,
                            chunk_bytes=chunk_bytes) for ref in layer.weights]
    combined = _combine(tensors)
    hl = None
    if health and layer.has_filters:
        hl = filter_health(layer, index=index, dead_threshold=dead_threshold, dup_threshold=dup_threshold,
                           fold_bn=fold_bn, channel_matrix=channel_matrix, chunk_bytes=chunk_bytes)
    return LayerStats(layer.path, str(layer.kind), layer.class_name, layer.params, tensors, combined, hl)


def _combine(tensors: list[TensorStats]) -> TensorStats:
    acc = _Acc()
    for t in tensors:  # rebuild each tensor's accumulator from its exact moments, then Chan-merge
        part = _Acc()
        part.count, part.finite, part.nan = t.count, t.finite, t.nan
        part.posinf, part.neginf = t.posinf, t.neginf
        part.zeros, part.l1, part.sq = t.zeros, t.l1, t.l2 ** 2
        if t.finite and t.mean is not None and t.std is not None and t.min is not None and t.max is not None:
            part.n, part.mean, part.m2 = t.finite, t.mean, t.std ** 2 * t.finite
            part.min, part.max = t.min, t.max
        acc.merge(part)
    dtypes = sorted({t.dtype for t in tensors})
    return acc.result("(all weights)", (acc.count,), "/".join(dtypes), sum(t.near_zeros for t in tensors),
                      None, None, None)


# -- filter health --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DuplicatePair:
    """Maps ``a < b`` whose kernels have cosine ``similarity`` (negative: a sign-flipped copy)."""

    a: int
    b: int
    similarity: float


@dataclass
class FilterHealth:
    """Per-output-map health of one filter layer.

    ``map_norms[j]`` is the L2 norm of everything that feeds map ``j`` (for separable layers the
    effective kernel ``K_eff``; docs/formats.md §5.2). ``channel_norms[i, j]`` is the L2 norm of the part of
    map ``j``'s kernel that reads input channel ``i`` (Dense: ``|w[i, j]|``); when the matrix would
    exceed ``max_matrix_cells`` it is pooled: cell ``(I, J)`` is the exact L2 norm of the block
    ``channel_block[0]`` channels × ``channel_block[1]`` maps.
    """

    layer_path: str
    kind: str
    stage: str  # "kernel" or "effective" (separable)
    n_maps: int
    n_inputs: int  # input channels (full, all groups)
    groups: int
    map_norms: np.ndarray
    bias: np.ndarray | None
    dead_threshold: float
    dead_reference: float  # the median map norm (or the largest, if the median is 0)
    dead: np.ndarray  # indices of dead maps
    nonfinite: np.ndarray  # indices of maps whose kernel holds NaN/Inf
    dup_threshold: float | None
    duplicates: list[DuplicatePair]
    duplicate_pair_count: int  # all pairs found; ``duplicates`` lists at most MAX_LISTED_PAIRS
    bn_layer: str | None = None
    bn_scale: np.ndarray | None = None  # gamma / sqrt(var + eps) of the following BatchNormalization
    bn_bias: np.ndarray | None = None  # (b - mean) * scale + beta: the folded bias
    channel_norms: np.ndarray | None = field(default=None, repr=False)
    channel_block: tuple[int, int] = (1, 1)
    notes: list[str] = field(default_factory=list)

    @property
    def effective_norms(self) -> np.ndarray:
        """Map norms with the BN scale folded in (``|scale| · norm``), or the plain norms."""
        return self.map_norms if self.bn_scale is None else self.map_norms * np.abs(self.bn_scale)

    @property
    def dead_cutoff(self) -> float:
        return self.dead_threshold * self.dead_reference

    def duplicate_partners(self) -> dict[int, list[tuple[int, float]]]:
        out: dict[int, list[tuple[int, float]]] = {}
        for p in self.duplicates:
            out.setdefault(p.a, []).append((p.b, p.similarity))
            out.setdefault(p.b, []).append((p.a, p.similarity))
        return out

    def to_dict(self) -> dict[str, Any]:
        def arr(a: np.ndarray | None) -> list[Any] | None:
            return None if a is None else a.tolist()

        return {
            "layer_path": self.layer_path, "kind": self.kind, "stage": self.stage, "n_maps": self.n_maps,
            "n_inputs": self.n_inputs, "groups": self.groups, "map_norms": arr(self.map_norms),
            "bias": arr(self.bias), "dead_threshold": self.dead_threshold,
            "dead_reference": self.dead_reference, "dead_cutoff": self.dead_cutoff,
            "dead": arr(self.dead), "nonfinite_maps": arr(self.nonfinite),
            "dup_threshold": self.dup_threshold,
            "duplicates": [[p.a, p.b, p.similarity] for p in self.duplicates],
            "duplicate_pair_count": self.duplicate_pair_count,
            "bn_layer": self.bn_layer, "bn_scale": arr(self.bn_scale), "bn_bias": arr(self.bn_bias),
            "effective_norms": arr(self.effective_norms), "channel_block": list(self.channel_block),
            "notes": list(self.notes),
        }


def _add_gram(gram: np.ndarray, flat: np.ndarray) -> None:
    """``gram += flat.T @ flat``: float32 products (BLAS speed), float64 accumulation across chunks."""
    n = flat.shape[1]
    if n <= _GRAM_BLOCK:
        gram += flat.T @ flat  # numpy uses syrk here: half the work of a general product
        return
    for s in range(0, n, _GRAM_BLOCK):  # column blocks bound the temporary to _GRAM_BLOCK × n
        gram[s:s + _GRAM_BLOCK] += flat[:, s:s + _GRAM_BLOCK].T @ flat


def _sketch_candidates(sketch: np.ndarray, norms: np.ndarray, usable: np.ndarray, offsets: np.ndarray,
                       threshold: float) -> np.ndarray:
    """Maps that may have a near duplicate, from a Gaussian random projection of every map.

    For unit vectors u, v: |cos| >= t  <=>  min(‖u−v‖², ‖u+v‖²) <= 2(1−t), and ‖Rᵀw‖²/k estimates
    ‖w‖² with a χ²_k/k factor, so a slack of 4 on that bound loses no true pair in practice.
    """
    k = sketch.shape[1]
    unit = np.zeros_like(sketch)
    unit[usable] = sketch[usable] / norms[usable, None]
    sq = (unit ** 2).sum(1)
    bound = _SKETCH_SLACK * 2.0 * (1.0 - threshold) * k
    found = np.zeros(norms.size, dtype=bool)
    for s in range(0, norms.size, 512):
        cross = unit[s:s + 512] @ unit.T
        near = np.minimum(sq[s:s + 512, None] + sq[None, :] - 2 * cross,
                          sq[s:s + 512, None] + sq[None, :] + 2 * cross) <= bound
        near &= (offsets[s:s + 512, None] == offsets[None, :]) & usable[s:s + 512, None] & usable[None, :]
        near[np.arange(near.shape[0]), np.arange(s, s + near.shape[0])] = False  # not with itself
        found[s:s + 512] |= near.any(1)
    return np.flatnonzero(found)


def filter_health(layer: LayerRecord, *, index: ModelIndex | None = None,
                  dead_threshold: float = DEFAULT_DEAD_THRESHOLD,
                  dup_threshold: float | None = DEFAULT_DUP_THRESHOLD, fold_bn: bool = False,
                  channel_matrix: bool = True, max_matrix_cells: int = DEFAULT_MAX_MATRIX_CELLS,
                  chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> FilterHealth:
    """Per-map norms, channel-norm matrix, dead and near-duplicate maps of one filter layer.

    One streamed pass over the kernel accumulates, in float64, the per-(channel, map) sums of squares
    and (unless ``dup_threshold`` is None) the Gram matrix of the maps, from which the cosine
    similarities follow exactly. ``fold_bn`` looks for a BatchNormalization that directly follows the
    layer (needs ``index``) and reports its per-map scale; dead maps are then judged on the folded norms.
    """
    if not dead_threshold >= 0:
        raise SelectionError(f"the dead-map threshold is a relative factor >= 0, e.g. 1e-3. "
                             f"Received: {describe_received(dead_threshold)}")
    if dup_threshold is not None and not 0 < dup_threshold <= 1:
        raise SelectionError(f"the duplicate threshold is a cosine similarity in (0, 1], e.g. 0.99. "
                             f"Received: {describe_received(dup_threshold)}")
    lay = layout_of(layer)
    stream = lay.stream(chunk_bytes)
    n, cl = lay.n_maps, stream.local_channels
    notes: list[str] = []
    if layer.kind is LayerKind.CONV and not lay.groups_known:
        notes.append("groups not stored in this file and not inferable: treated as 1")

    # Channel sums of squares: exact (local channels × maps) when small, else pooled blocks.
    # Pooling is only possible when every map uses the same channel numbering (offset 0).
    same_offsets = not stream.col_offset.any()
    cells = cl * n
    br = bc = 1
    if channel_matrix and cells > max_matrix_cells:
        if same_offsets:
            side = math.isqrt(max_matrix_cells)
            br, bc = max(1, math.ceil(cl / side)), max(1, math.ceil(n / side))
        else:
            channel_matrix = False
            notes.append("channel-norm matrix not built: too large for a grouped/depthwise layout")
    pooled = np.zeros((math.ceil(cl / br), math.ceil(n / bc))) if channel_matrix else None
    col_sq = np.zeros(n)
    want_dups = dup_threshold is not None
    exact = want_dups and n <= _EXACT_MAX_MAPS and n * n * stream.rows <= _EXACT_MAX_WORK
    gram = np.zeros((n, n)) if exact else None
    sketch = np.zeros((n, _SKETCH_DIM)) if want_dups and not exact else None
    rng = np.random.default_rng(0)  # fixed seed: the same file gives the same candidates every run
    for block, c0 in stream.blocks():
        b64 = np.asarray(block, dtype=np.float64)
        sq = np.einsum("tcn,tcn->cn", b64, b64)  # per (channel, map), summed over taps
        col_sq += sq.sum(0)
        if pooled is not None:
            if br == 1 and bc == 1:
                pooled[c0:c0 + sq.shape[0]] += sq
            else:
                rows = (np.arange(c0, c0 + sq.shape[0]) // br)
                cols = np.arange(n) // bc
                np.add.at(pooled, (rows[:, None], cols[None, :]), sq)
        del b64, sq
        if gram is not None or sketch is not None:
            flat = np.asarray(block, dtype=np.float32).reshape(-1, n)
            with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf maps are reported, not warned on
                if gram is not None:
                    _add_gram(gram, flat)
                if sketch is not None:
                    sketch += flat.T @ rng.standard_normal((flat.shape[0], _SKETCH_DIM), dtype=np.float32)
            del flat
        del block
    norms = np.sqrt(col_sq)
    usable = np.isfinite(norms) & (norms > 0)
    cand_cols = np.arange(n)
    if sketch is not None and dup_threshold is not None:
        cand_cols = _sketch_candidates(sketch, norms, usable, stream.col_offset, dup_threshold)
        del sketch
        gram = np.zeros((cand_cols.size, cand_cols.size))
        if cand_cols.size:  # second pass: exact products among the candidate maps only
            for block, _c0 in stream.blocks():
                flat = np.asarray(block, dtype=np.float32).reshape(-1, n)[:, cand_cols]
                with np.errstate(invalid="ignore", over="ignore"):
                    _add_gram(gram, flat)
                del block, flat

    bias_ref = layer.bias
    bias = bias_ref.read().astype(np.float64).reshape(-1) if bias_ref is not None else None
    if bias is not None and bias.shape != (n,):
        notes.append(f"bias has {bias.size} entries for {n} maps; not shown per map")
        bias = None

    bn_layer = bn_scale = bn_bias = None
    if fold_bn:
        plan = bn_fold_plan(index, layer, "after")
        if not plan.ok:
            notes.append(f"BN not folded: {plan.reason}")
        else:
            bn_layer = plan.bn_path
            bn_scale, shift = plan.affine(None)  # BN(x) = x·scale + shift, per map
            bn_bias = (np.zeros(n) if bias is None else bias) * bn_scale + shift
    eff = norms if bn_scale is None else norms * np.abs(bn_scale)

    finite = np.isfinite(eff)
    nonfinite = np.flatnonzero(~finite)
    good = eff[finite]
    reference = float(np.median(good)) if good.size else 0.0
    if reference == 0.0 and good.size:
        reference = float(good.max())
    dead_mask = finite & ((eff == 0) | (eff < dead_threshold * reference))
    dead = np.flatnonzero(dead_mask)

    pairs: list[DuplicatePair] = []
    pair_count = 0
    if gram is not None and dup_threshold is not None:
        cn = norms[cand_cols]
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = gram / np.outer(cn, cn)
        if bn_scale is not None:
            sign = np.sign(bn_scale[cand_cols])
            cos *= np.outer(sign, sign)
        off, ok = stream.col_offset[cand_cols], usable[cand_cols]
        comparable = (off[:, None] == off[None, :]) & np.outer(ok, ok)
        hit = np.triu(comparable & (np.abs(np.nan_to_num(cos)) >= dup_threshold - 1e-12), k=1)
        a_idx, b_idx = np.nonzero(hit)
        pair_count = int(a_idx.size)
        order = np.argsort(-np.abs(cos[a_idx, b_idx]), kind="stable")[:MAX_LISTED_PAIRS]
        pairs = sorted((DuplicatePair(int(cand_cols[a_idx[k]]), int(cand_cols[b_idx[k]]),
                                      float(np.clip(cos[a_idx[k], b_idx[k]], -1, 1))) for k in order),
                       key=lambda p: (-abs(p.similarity), p.a, p.b))
        del gram, cos

    full: np.ndarray | None = None
    if pooled is not None:
        if br == 1 and bc == 1:
            full = np.zeros((lay.n_inputs, n))
            rows = np.arange(cl)[:, None] + stream.col_offset[None, :]
            full[rows, np.broadcast_to(np.arange(n), rows.shape)] = pooled
            full = np.sqrt(full)
        else:
            full = np.sqrt(pooled)
            notes.append(f"channel-norm matrix pooled into blocks of {br} channels × {bc} maps")
    return FilterHealth(
        layer_path=layer.path, kind=str(layer.kind), stage=str(lay.stage), n_maps=n, n_inputs=lay.n_inputs,
        groups=lay.groups, map_norms=norms, bias=bias, dead_threshold=dead_threshold,
        dead_reference=reference, dead=dead, nonfinite=nonfinite, dup_threshold=dup_threshold,
        duplicates=pairs, duplicate_pair_count=pair_count, bn_layer=bn_layer, bn_scale=bn_scale,
        bn_bias=bn_bias, channel_norms=full, channel_block=(br, bc), notes=notes,
    )
