"""Which layers and which filters changed between two models (checkpoints, epochs, training runs).

:func:`compare_models` pairs the layers of model A and model B and measures, per pair:

* **status**: ``same`` (every weight within ``tolerance``), ``changed``, ``reshaped`` (a weight's shape
  differs), ``removed`` (only in A) or ``added`` (only in B);
* **relative_change** of the main kernel, ``‖K_B − K_A‖ / ‖K_A‖`` (all weights together for layers
  without a kernel, e.g. BatchNormalization);
* per output map ``j``: the **cosine** between the vectors of everything feeding map ``j`` in A and
  in B (:meth:`inspector.layouts.Layout.stream`, the same vectors the duplicate search of
  :mod:`inspector.stats` compares) and their relative L2 change; with ``fold_bn`` the
  BatchNormalization reading each layer's output is folded into both kernels first
  (:func:`inspector.graph.bn_fold_plan`, per-map scale ``γ/√(σ²+ε)``), so a change of BN statistics
  that only rescales a map shows up;
* a **permutation-aware matching** of maps (independent training runs learn the same filters in
  another order, sometimes negated): a one-to-one assignment maximising ``Σ |cos(a_i, b_σ(i))|``
  (:func:`scipy.optimize.linear_sum_assignment`), with the signed cosine of each pair. A pair counts as
  a correspondence only when its ``|cos|`` reaches :func:`match_threshold` (at least 0.5 and far above
  what unrelated random vectors of that length reach), since the assignment always finds *some*
  permutation, even between two unrelated initialisations;
* with inputs, **linear CKA** (Kornblith et al., 2019) between A's and B's activations of the layer:
  examples are the inputs, features the flattened activation. Invariant to orthogonal transforms
  and isotropic scaling of either side, so it is 1 for permuted or sign-flipped maps.

Layers pair by path first; layers left over pair by their weight shapes in model order (the pair's
``matched_by`` says so). Kernels are streamed layer by layer in bounded blocks from both files at
once, so memory stays that of one block pair plus, for matching, one ``maps × maps`` matrix.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputDataError, SelectionError, describe_received, missing_dependency
from .graph import BN_CLASSES, bn_fold_plan
from .layouts import Layout, Stage, chunk_indices, itemsize, layout_of, read_chunk
from .records import LayerRecord, ModelIndex, TensorRef

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_TOLERANCE",
    "Comparison",
    "LayerComparison",
    "MapChange",
    "Match",
    "Status",
    "compare_models",
    "linear_cka",
    "load_input_folder",
    "match_threshold",
]

DEFAULT_CHUNK_BYTES = 8 * 2**20
#: A weight is unchanged when ‖B − A‖ <= tolerance · ‖A‖ (float32 round trips are exact; 1e-6 leaves
#: room for a file written in another precision of the same values).
DEFAULT_TOLERANCE = 1e-6
#: ``match="auto"`` matches maps of a changed layer when some map's |cosine| falls below this: small
#: drift keeps every map near its old self, a permutation or an independent run does not.
AUTO_MATCH_COSINE = 0.9
#: Matching builds the maps × maps cosine matrix from every kernel entry: skipped beyond this many
#: maps or multiply-adds (VGG16 block5_conv3: 512² × 4608 = 1.2e9; fc1: 4096² × 25088 = 4.2e11).
MATCH_MAX_MAPS = 4096
MATCH_MAX_WORK = 4e9
#: A matched pair is a correspondence only when its |cosine| reaches at least this (trained kernels are not
#: isotropic random vectors: smooth first-layer filters of unrelated networks resemble each other) ...
MATCH_MIN_COSINE = 0.5
#: ... and a |cosine| that two independent random vectors of the pair's length exceed with probability
#: at most MATCH_FALSE_RATE / (pairs the assignment chose from): unrelated layers show a false match in
#: at most 0.1% of layers.
MATCH_FALSE_RATE = 1e-3
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class Status(StrEnum):
    SAME = "same"
    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"
    RESHAPED = "reshaped"


class Match(StrEnum):
    """When to compute the permutation-aware map matching."""

    AUTO = "auto"  # changed layers where some map's |cosine| < AUTO_MATCH_COSINE
    ALWAYS = "always"  # every changed filter layer
    NEVER = "never"


@dataclass(frozen=True)
class MapChange:
    """Map ``map`` of A against map ``map`` of B: cosine and relative L2 change of their kernels."""

    map: int
    cosine: float
    relative_change: float
    norm_a: float
    norm_b: float


@dataclass
class LayerComparison:
    """One layer pair (or a layer only one side has)."""

    path: str  # A's path (B's for an added layer)
    status: Status
    kind: str
    path_b: str | None = None  # B's path when it differs (matched by shape and order)
    matched_by: str | None = None  # "path", "shape and order", None for added/removed
    class_name: str | None = None
    shapes_a: dict[str, tuple[int, ...]] = field(default_factory=dict)
    shapes_b: dict[str, tuple[int, ...]] = field(default_factory=dict)
    relative_change: float | None = None  # main kernel (folded when bn_folded), else all weights
    weight_changes: dict[str, float] = field(default_factory=dict)  # per weight name, unfolded
    max_abs_change: float | None = None
    maps: list[MapChange] = field(default_factory=list)
    matching: list[int | None] | None = None  # B's map for each of A's maps (None: no counterpart); None: none
    matching_cosine: list[float | None] | None = None  # signed cosine of each matched pair (None: no counterpart)
    match_threshold: float | None = None  # the |cosine| a pair needed to count (set when matching ran)
    match_median_cosine: float | None = None  # median |cosine| of the best one-to-one assignment, kept or not
    cka: float | None = None
    bn_folded: str | None = None  # "bn_a / bn_b" when folded
    notes: list[str] = field(default_factory=list)

    @property
    def matched(self) -> int:
        """A's maps with a counterpart in B (|cosine| >= ``match_threshold``)."""
        return 0 if self.matching is None else sum(int(b is not None) for b in self.matching)

    @property
    def permuted(self) -> int:
        """Maps whose counterpart in B has another index."""
        return 0 if self.matching is None else sum(int(b is not None and b != a) for a, b in enumerate(self.matching))

    @property
    def flipped(self) -> int:
        """Matched pairs whose kernels point in opposite directions (sign-flipped maps)."""
        return 0 if self.matching_cosine is None else sum(int(c is not None and c < 0) for c in self.matching_cosine)

    def counterpart(self, j: int) -> tuple[int, float]:
        """B's map matched to A's map ``j`` and the sign of the pair; ``(j, 1.0)`` without a counterpart."""
        if self.matching is None or self.matching_cosine is None:
            return j, 1.0
        jb, cos = self.matching[j], self.matching_cosine[j]
        if jb is None or cos is None:
            return j, 1.0
        return jb, -1.0 if cos < 0 else 1.0

    def most_changed(self, n: int) -> list[MapChange]:
        """The ``n`` maps with the lowest cosine (then the largest relative change)."""
        return sorted(self.maps, key=lambda m: (_nan_last(m.cosine), -_finite_or(m.relative_change, 0.0)))[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "path_b": self.path_b, "matched_by": self.matched_by, "status": str(self.status),
            "kind": self.kind, "class_name": self.class_name,
            "shapes_a": {k: list(v) for k, v in self.shapes_a.items()},
            "shapes_b": {k: list(v) for k, v in self.shapes_b.items()},
            "relative_change": self.relative_change, "weight_changes": dict(self.weight_changes),
            "max_abs_change": self.max_abs_change, "bn_folded": self.bn_folded,
            "maps": [{"map": m.map, "cosine": m.cosine, "relative_change": m.relative_change,
                      "norm_a": m.norm_a, "norm_b": m.norm_b} for m in self.maps],
            "matching": self.matching, "matching_cosine": self.matching_cosine,
            "match_threshold": self.match_threshold, "match_median_cosine": self.match_median_cosine,
            "matched": self.matched if self.matching is not None else None,
            "permuted": self.permuted if self.matching is not None else None,
            "flipped": self.flipped if self.matching is not None else None,
            "cka": self.cka, "notes": list(self.notes),
        }


@dataclass
class Comparison:
    """Model A against model B, layer by layer (A's order, then layers only B has)."""

    a: str
    b: str
    format_a: str
    format_b: str
    layers: list[LayerComparison]
    tolerance: float = DEFAULT_TOLERANCE
    fold_bn: bool = False
    match: str = Match.AUTO
    inputs: list[str] = field(default_factory=list)  # the files CKA was computed on
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {str(s): 0 for s in Status}
        for layer in self.layers:
            out[str(layer.status)] += 1
        return out

    def layer(self, path: str) -> LayerComparison:
        for entry in self.layers:
            if path in (entry.path, entry.path_b):
                return entry
        raise SelectionError(f"no layer {path!r} in this comparison; accepted: "
                             f"{', '.join(e.path for e in self.layers[:8])}... Received: {path!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        """The inverse of :meth:`to_dict` (null numbers read back as NaN, inf as inf where they were)."""
        def num(v: Any) -> float:
            return math.nan if v is None else float(v)

        layers = []
        for e in d["layers"]:
            layers.append(LayerComparison(
                path=e["path"], status=Status(e["status"]), kind=e["kind"], path_b=e.get("path_b"),
                matched_by=e.get("matched_by"), class_name=e.get("class_name"),
                shapes_a={k: tuple(v) for k, v in e.get("shapes_a", {}).items()},
                shapes_b={k: tuple(v) for k, v in e.get("shapes_b", {}).items()},
                relative_change=e.get("relative_change"),
                weight_changes={k: num(v) for k, v in e.get("weight_changes", {}).items()},
                max_abs_change=e.get("max_abs_change"),
                maps=[MapChange(int(m["map"]), num(m["cosine"]), num(m["relative_change"]), num(m.get("norm_a")),
                                num(m.get("norm_b"))) for m in e.get("maps", [])],
                matching=e.get("matching"), matching_cosine=e.get("matching_cosine"),
                match_threshold=e.get("match_threshold"), match_median_cosine=e.get("match_median_cosine"),
                cka=e.get("cka"),
                bn_folded=e.get("bn_folded"), notes=list(e.get("notes", []))))
        return cls(a=d["a"], b=d["b"], format_a=d.get("format_a", ""), format_b=d.get("format_b", ""),
                   layers=layers, tolerance=float(d.get("tolerance", DEFAULT_TOLERANCE)),
                   fold_bn=bool(d.get("fold_bn", False)), match=str(d.get("match", Match.AUTO)),
                   inputs=list(d.get("inputs", [])), notes=list(d.get("notes", [])))

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "format_a": self.format_a, "format_b": self.format_b,
                "tolerance": self.tolerance, "fold_bn": self.fold_bn, "match": str(self.match),
                "inputs": list(self.inputs), "counts": self.counts(), "notes": list(self.notes),
                "layers": [entry.to_dict() for entry in self.layers]}


def _nan_last(value: float) -> float:
    return math.inf if not math.isfinite(value) else value


def _finite_or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def _relative(diff_sq: float, ref_sq: float) -> float:
    """‖d‖/‖a‖; 0 when both are 0, inf when only A is 0."""
    if ref_sq > 0:
        return math.sqrt(diff_sq / ref_sq)
    return 0.0 if diff_sq == 0 else math.inf


# -- pairing layers -----------------------------------------------------------------------------------------

def _signature(layer: LayerRecord) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(w.shape) for w in layer.weights)


def pair_layers(a: ModelIndex, b: ModelIndex) -> tuple[list[tuple[LayerRecord, LayerRecord, str]],
                                                      list[LayerRecord], list[LayerRecord]]:
    """(pairs with how they matched, only-in-A, only-in-B) over the layers that hold weights."""
    la = [rec for rec in a.layers if rec.weights]
    lb = [rec for rec in b.layers if rec.weights]
    b_by_path = {rec.path: rec for rec in lb}
    pairs: list[tuple[LayerRecord, LayerRecord, str]] = []
    taken: set[str] = set()
    for rec in la:
        other = b_by_path.get(rec.path)
        if other is not None:
            pairs.append((rec, other, "path"))
            taken.add(rec.path)
    rest_a = [rec for rec in la if rec.path not in taken]
    rest_b = [rec for rec in lb if rec.path not in taken]
    # Renamed layers (another Keras session numbers conv2d_3 as conv2d_7): equal weight shapes, same order.
    matcher = difflib.SequenceMatcher(None, [_signature(r) for r in rest_a], [_signature(r) for r in rest_b],
                                      autojunk=False)
    used_a: set[int] = set()
    used_b: set[int] = set()
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            pairs.append((rest_a[block.a + k], rest_b[block.b + k], "shape and order"))
            used_a.add(block.a + k)
            used_b.add(block.b + k)
    order = {rec.path: n for n, rec in enumerate(la)}
    pairs.sort(key=lambda p: order[p[0].path])
    removed = [r for n, r in enumerate(rest_a) if n not in used_a]
    added = [r for n, r in enumerate(rest_b) if n not in used_b]
    return pairs, removed, added


def _weight_pairs(ra: LayerRecord, rb: LayerRecord) -> list[tuple[TensorRef, TensorRef]] | None:
    """A's and B's weights paired by name (by order when the names differ); None when they do not pair."""
    if len(ra.weights) != len(rb.weights):
        return None
    by_name = {w.name: w for w in rb.weights}
    if all(w.name in by_name for w in ra.weights):
        return [(w, by_name[w.name]) for w in ra.weights]
    return list(zip(ra.weights, rb.weights, strict=True))


# -- streamed differences -------------------------------------------------------------------------------------

@dataclass
class _Sums:
    aa: float = 0.0
    bb: float = 0.0
    dd: float = 0.0
    max_abs: float = 0.0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        d = b64 - a64
        self.aa += float(np.vdot(a64, a64))
        self.bb += float(np.vdot(b64, b64))
        self.dd += float(np.vdot(d, d))
        if d.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(d))))


def _tensor_sums(ta: TensorRef, tb: TensorRef, chunk_bytes: int) -> _Sums:
    sums = _Sums()
    for idx, *_ in chunk_indices(ta.shape, itemsize(ta), chunk_bytes):
        sums.add(read_chunk(ta, idx), read_chunk(tb, idx))
    return sums


def _layout_pair(ra: LayerRecord, rb: LayerRecord) -> tuple[Layout, Layout] | None:
    """Both layers' layouts; a side whose kind was inferred from shapes (weights-only) takes the other's."""
    if ra.kernel is None or rb.kernel is None:
        return None
    template = rb if ra.kind_inferred and not rb.kind_inferred else ra
    try:
        la = layout_of(ra if ra is template or ra.kind == template.kind else
                       replace(ra, kind=template.kind, spec=template.spec, class_name=template.class_name))
        lb = layout_of(rb if rb is template or rb.kind == template.kind else
                       replace(rb, kind=template.kind, spec=template.spec, class_name=template.class_name))
    except Exception:  # not a filter layout on one side (an RNN kernel, an unknown kind)
        return None
    if la.n_maps != lb.n_maps or la.kernel.shape != lb.kernel.shape:
        return None
    return la, lb


def _fold_scale(index: ModelIndex, rec: LayerRecord, n: int) -> tuple[np.ndarray | None, str | None, str | None]:
    """The per-map scale of the BatchNormalization reading ``rec`` (None, None, None when none does: "when
    present"; None, None, why when one does but cannot be folded)."""
    if not any(c.class_name in BN_CLASSES for c in index.consumers(rec.path)):
        return None, None, None
    plan = bn_fold_plan(index, rec, "after")
    if not plan.ok:
        return None, None, plan.reason
    scale, _ = plan.affine(None)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    if scale.shape != (n,):
        return None, None, f"the BatchNormalization has {scale.size} channels for {n} maps"
    return scale, plan.bn_path, None


@dataclass
class _MapSums:
    dot: np.ndarray
    aa: np.ndarray
    bb: np.ndarray
    dd: np.ndarray
    raw: _Sums  # the stored kernel, unfolded (the stream covers it exactly, except separable)
    cross: np.ndarray | None  # A's maps × B's maps dot products, for the matching
    length: int = 0  # entries of each map's vector (rows of the stream)


def _stream_maps(la: Layout, lb: Layout, scale_a: np.ndarray | None, scale_b: np.ndarray | None,
                 want_cross: bool, chunk_bytes: int) -> _MapSums:
    n = la.n_maps
    sa, sb = la.stream(chunk_bytes), lb.stream(chunk_bytes)
    sums = _MapSums(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), _Sums(),
                    np.zeros((n, n)) if want_cross else None)
    for (block_a, _), (block_b, _) in zip(sa.blocks(), sb.blocks(), strict=True):
        a = np.asarray(block_a, dtype=np.float64).reshape(-1, n)
        b = np.asarray(block_b, dtype=np.float64).reshape(-1, n)
        del block_a, block_b
        sums.length += a.shape[0]
        sums.raw.add(a, b)
        if scale_a is not None and scale_b is not None:
            a, b = a * scale_a, b * scale_b
        sums.dot += np.einsum("rn,rn->n", a, b)
        sums.aa += np.einsum("rn,rn->n", a, a)
        sums.bb += np.einsum("rn,rn->n", b, b)
        d = b - a
        sums.dd += np.einsum("rn,rn->n", d, d)
        del d
        if sums.cross is not None:
            with np.errstate(invalid="ignore", over="ignore"):
                sums.cross += np.asarray(a, dtype=np.float32).T @ np.asarray(b, dtype=np.float32)
        del a, b
    return sums


def _cosines(dot: np.ndarray, na: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """dot / (|a||b|): 1 when both maps are all zero, 0 when only one is."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    both_zero = (na == 0) & (nb == 0)
    cos = np.where(both_zero, 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    return np.clip(cos, -1.0, 1.0)


def _assignment(score: np.ndarray) -> np.ndarray:
    try:
        from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]
    except ImportError as exc:
        raise missing_dependency("scipy", "run", "the permutation-aware map matching of inspector compare") from exc
    rows, cols = linear_sum_assignment(score, maximize=True)
    out = np.empty(score.shape[0], dtype=np.int64)
    out[rows] = cols
    return out


def match_threshold(length: int, pairs: int, *, false_rate: float = MATCH_FALSE_RATE,
                    floor: float = MATCH_MIN_COSINE) -> float:
    """The |cosine| a matched pair of maps needs to count as a correspondence.

    For two independent isotropic random vectors of ``length`` entries, cos² follows
    Beta(1/2, (length − 1)/2) (typical |cos| ≈ 1/√length). The threshold is the |cos| such a pair exceeds
    with probability ``false_rate / pairs`` (``pairs``: the candidate pairs the assignment chose from), so
    over a whole layer of unrelated maps a false correspondence has probability at most ``false_rate``;
    and never below ``floor``. Vectors of one entry are always parallel: nothing can be matched (inf).
    """
    if length <= 1:
        return math.inf
    from scipy.stats import beta  # type: ignore[import-untyped]

    null = math.sqrt(float(beta.isf(false_rate / max(pairs, 1), 0.5, (length - 1) / 2)))
    return max(floor, null)


def _match_maps(entry: LayerComparison, sums: _MapSums, la: Layout) -> None:
    assert sums.cross is not None
    na, nb = np.sqrt(sums.aa), np.sqrt(sums.bb)
    cos = _cosines(sums.cross, na[:, None], nb[None, :])
    offsets = la.stream(DEFAULT_CHUNK_BYTES).col_offset
    comparable = offsets[:, None] == offsets[None, :]  # grouped/depthwise maps of other groups read other inputs
    score = np.where(comparable, np.abs(np.nan_to_num(cos)), -1.0)
    assigned = _assignment(score)
    pair_cos = np.array([cos[i, j] for i, j in enumerate(assigned)], dtype=np.float64)
    threshold = match_threshold(sums.length, int(comparable.sum()))
    # Two all-zero maps have cosine 1 by convention, but a zero map says nothing about order: not a match.
    alive = (na > 0) & (nb[assigned] > 0)
    kept = (np.abs(pair_cos) >= threshold) & alive
    entry.match_threshold = threshold
    entry.match_median_cosine = float(np.median(np.abs(pair_cos))) if len(pair_cos) else None
    n, k = len(assigned), int(kept.sum())
    needed = f"a match needs |cos| ≥ {threshold:.2f}"
    if k == 0:
        entry.notes.append(f"no map correspondence found (median matched |cos| = {entry.match_median_cosine:.3f}; "
                           f"{needed})")
        return
    entry.matching = [int(j) if ok else None for j, ok in zip(assigned, kept, strict=True)]
    entry.matching_cosine = [float(c) if ok else None for c, ok in zip(pair_cos, kept, strict=True)]
    if k < n:
        rest = n - k
        entry.notes.append(f"{k} of {n} maps have a counterpart in B ({needed}); the other {rest} "
                           f"{'has' if rest == 1 else 'have'} none (null in matching)")


def _compare_pair(a: ModelIndex, b: ModelIndex, ra: LayerRecord, rb: LayerRecord, how: str, *, tolerance: float,
                  fold_bn: bool, match: Match, chunk_bytes: int) -> LayerComparison:
    entry = LayerComparison(
        path=ra.path, path_b=rb.path if rb.path != ra.path else None, matched_by=how, status=Status.SAME,
        kind=str(ra.kind if not ra.kind_inferred or rb.kind_inferred else rb.kind),
        class_name=ra.class_name or rb.class_name,
        shapes_a={w.name: tuple(w.shape) for w in ra.weights}, shapes_b={w.name: tuple(w.shape) for w in rb.weights})
    if how != "path":
        entry.notes.append(f"matched by weight shapes and order: A {ra.path!r} ~ B {rb.path!r}")
    weights = _weight_pairs(ra, rb)
    if weights is None or any(tuple(wa.shape) != tuple(wb.shape) for wa, wb in weights):
        entry.status = Status.RESHAPED
        return entry
    layouts = _layout_pair(ra, rb)
    streamed_kernel = layouts is not None and layouts[0].stage is not Stage.EFFECTIVE
    sums_all = _Sums()
    for wa, wb in weights:
        if streamed_kernel and layouts is not None and wa is layouts[0].kernel:
            continue  # covered by the map stream below, which reads it block by block
        s = _tensor_sums(wa, wb, chunk_bytes)
        entry.weight_changes[wa.name] = _relative(s.dd, s.aa)
        sums_all.aa, sums_all.bb, sums_all.dd = sums_all.aa + s.aa, sums_all.bb + s.bb, sums_all.dd + s.dd
        sums_all.max_abs = max(sums_all.max_abs, s.max_abs)
    if layouts is None:
        entry.relative_change = _relative(sums_all.dd, sums_all.aa)
        entry.max_abs_change = sums_all.max_abs
    else:
        la, lb = layouts
        n = la.n_maps
        scale_a = scale_b = None
        if fold_bn:
            scale_a, bn_a, why_a = _fold_scale(a, ra, n)
            scale_b, bn_b, why_b = _fold_scale(b, rb, n)
            if scale_a is None or scale_b is None:
                if scale_a is not None or scale_b is not None or why_a or why_b:
                    entry.notes.append(f"BN not folded: {why_a or why_b or 'only one model has it'}")
                scale_a = scale_b = None
            else:
                entry.bn_folded = bn_a if bn_a == bn_b else f"{bn_a} / {bn_b}"
        want_cross = match is not Match.NEVER and n <= MATCH_MAX_MAPS
        rows = math.prod(la.kernel.shape) // max(n, 1)
        if want_cross and n * n * rows > MATCH_MAX_WORK:
            want_cross = False
            entry.notes.append(f"map matching skipped: {n} maps × {rows} weights each is beyond "
                               f"{MATCH_MAX_WORK:.0e} multiply-adds")
        # The cross products cost a matrix product per block; when the layer turns out unchanged they are
        # not needed, but the per-map sums must be streamed anyway and a second pass would cost a re-read.
        sums = _stream_maps(la, lb, scale_a, scale_b, want_cross, chunk_bytes)
        if streamed_kernel:
            kname = la.kernel.name
            entry.weight_changes[kname] = _relative(sums.raw.dd, sums.raw.aa)
            sums_all.max_abs = max(sums_all.max_abs, sums.raw.max_abs)
        entry.max_abs_change = sums_all.max_abs
        na, nb = np.sqrt(sums.aa), np.sqrt(sums.bb)
        cos = _cosines(sums.dot, na, nb)
        entry.relative_change = _relative(float(sums.dd.sum()), float(sums.aa.sum()))
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(na > 0, np.sqrt(sums.dd) / np.where(na > 0, na, 1.0),
                           np.where(sums.dd == 0, 0.0, np.inf))
        entry.maps = [MapChange(j, float(cos[j]), float(rel[j]), float(na[j]), float(nb[j])) for j in range(n)]
        changed = any(v > tolerance for v in entry.weight_changes.values())
        if sums.cross is not None and changed:
            low = bool(np.any(np.abs(cos) < AUTO_MATCH_COSINE))
            if match is Match.ALWAYS or low:
                _match_maps(entry, sums, la)
    if any(v > tolerance for v in entry.weight_changes.values()):
        entry.status = Status.CHANGED
    return entry


# -- CKA ------------------------------------------------------------------------------------------------------

def _centered_gram(x: np.ndarray) -> np.ndarray:
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    flat = flat - flat.mean(axis=0, keepdims=True)
    return flat @ flat.T


def cka_from_grams(k: np.ndarray, gram_l: np.ndarray) -> float:
    """Linear CKA from the centred Gram matrices of the two representations (examples × examples)."""
    hsic = float(np.vdot(k, gram_l))
    norm = math.sqrt(float(np.vdot(k, k)) * float(np.vdot(gram_l, gram_l)))
    return hsic / norm if norm > 0 else math.nan


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al., 2019) of two representations of the same ``n`` examples.

    ``x`` ``(n, ...)`` and ``y`` ``(n, ...)`` are flattened to features per example and centred;
    ``CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)``, computed through the ``n × n`` Gram matrices so that wide
    activations cost ``n²`` memory. NaN when either side is constant over the examples.
    """
    if len(x) != len(y):
        raise SelectionError(f"CKA compares two representations of the same examples; accepted: equal first "
                             f"dimensions. Received: {len(x)} and {len(y)}")
    if len(x) < 2:
        raise InputDataError(f"CKA needs at least 2 inputs (it centres over the examples); give a folder of "
                             f"several images. Received: {len(x)} input")
    return cka_from_grams(_centered_gram(x), _centered_gram(y))


def load_input_folder(folder: str | os.PathLike[str], spec: Any, *, preprocess: str = "auto", fit: str = "stretch",
                      limit: int = 64) -> tuple[np.ndarray, list[str]]:
    """Every image / ``.npy`` file of ``folder`` (sorted by name, at most ``limit`` examples) as one batch."""
    from .inputs import load_input

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputDataError(f"--input takes a folder of images or .npy arrays for CKA; accepted: an existing "
                             f"folder. Received: {describe_received(str(folder))}")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (*_IMAGE_SUFFIXES, ".npy"))
    if not files:
        raise InputDataError(f"no inputs in the --input folder; accepted: PNG/JPEG images or .npy arrays. "
                             f"Received: {describe_received(str(folder))} with no such file")
    batches, names, count = [], [], 0
    for path in files:
        if count >= limit:
            break
        x = load_input(path, spec, preprocess=preprocess, fit=fit)[: limit - count]
        batches.append(x)
        names.append(path.name)
        count += len(x)
    return np.concatenate(batches), names


def _activation_grams(index: ModelIndex, x_source: str | os.PathLike[str], paths: Sequence[str], *,
                      preprocess: str, fit: str, unsafe: bool, limit: int,
                      budget_bytes: int = 256 * 2**20) -> tuple[dict[str, np.ndarray], list[str]]:
    """Centred Gram matrices of the outputs of ``paths`` over the inputs of a folder, one model at a time,
    capturing groups of layers whose outputs fit ``budget_bytes`` (one forward pass per group)."""
    from .activations import capture
    from .inputs import input_spec_from_model
    from .runtime import load_runnable

    model = load_runnable(index, safe_mode=not unsafe)
    x, names = load_input_folder(x_source, input_spec_from_model(model), preprocess=preprocess, fit=fit,
                                 limit=limit)
    grams: dict[str, np.ndarray] = {}
    group: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal group, size
        if group:
            for path, act in capture(model, x, group).items():
                grams[path] = _centered_gram(act)
        group, size = [], 0

    for path in paths:
        rec = index.layer(path)
        shape = rec.output_shape if isinstance(rec.output_shape, tuple) else None
        per = math.prod(d or 1 for d in shape[1:]) * 4 * len(x) if shape else budget_bytes
        if group and size + per > budget_bytes:
            flush()
        group.append(path)
        size += per
    flush()
    return grams, names


# -- the comparison -------------------------------------------------------------------------------------------

def compare_models(a: ModelIndex, b: ModelIndex, *, tolerance: float = DEFAULT_TOLERANCE, fold_bn: bool = False,
                   match: str | Match = Match.AUTO, inputs: str | os.PathLike[str] | None = None,
                   preprocess: str = "auto", fit: str = "stretch", unsafe: bool = False, max_inputs: int = 64,
                   progress: Callable[[int, int, str], None] | None = None,
                   chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Comparison:
    """Compare model ``a`` with model ``b`` (see the module docstring). ``inputs``: a folder for CKA.

    Raises :class:`SelectionError` when the two models share no layer at all (by path or by weight shapes).
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise SelectionError(f"--tolerance is a relative change >= 0, e.g. 1e-6. Received: "
                             f"{describe_received(tolerance)}")
    try:
        how = Match(str(match))
    except ValueError:
        raise SelectionError(f"--match is one of {', '.join(Match)}. Received: {describe_received(match)}") from None
    pairs, removed, added = pair_layers(a, b)
    if not pairs:
        na, nb = sum(1 for r in a.layers if r.weights), sum(1 for r in b.layers if r.weights)
        raise SelectionError(
            f"the two models share no layer: no layer path and no sequence of weight shapes in common, so there "
            f"is nothing to compare; compare two versions of one architecture. Received: {a.name or a.source!r} "
            f"({na} layers with weights) and {b.name or b.source!r} ({nb} layers with weights)")
    total = len(pairs) + (2 if inputs is not None else 0)
    layers: list[LayerComparison] = []
    for n, (ra, rb, by) in enumerate(pairs):
        if progress is not None:
            progress(n, total, ra.path)
        layers.append(_compare_pair(a, b, ra, rb, by, tolerance=tolerance, fold_bn=fold_bn, match=how,
                                    chunk_bytes=chunk_bytes))
    layers += [LayerComparison(path=r.path, status=Status.REMOVED, kind=str(r.kind), class_name=r.class_name,
                               shapes_a={w.name: tuple(w.shape) for w in r.weights}) for r in removed]
    layers += [LayerComparison(path=r.path, status=Status.ADDED, kind=str(r.kind), class_name=r.class_name,
                               shapes_b={w.name: tuple(w.shape) for w in r.weights}) for r in added]
    result = Comparison(a=a.source, b=b.source, format_a=str(a.format), format_b=str(b.format), layers=layers,
                        tolerance=float(tolerance), fold_bn=fold_bn, match=str(how))
    if fold_bn and not (a.has_architecture and b.has_architecture):
        result.notes.append("BN folding needs the layer graph, which a weights-only file lacks: nothing folded")
    if sum(1 for e in layers if e.matched_by == "shape and order"):
        result.notes.append("some layers were matched by weight shapes and order, not by path (see each layer)")
    if inputs is not None:
        _add_cka(result, a, b, pairs, inputs, preprocess=preprocess, fit=fit, unsafe=unsafe, limit=max_inputs,
                 progress=progress, done=len(pairs), total=total)
    if progress is not None:
        progress(total, total, "done")
    return result


def _add_cka(result: Comparison, a: ModelIndex, b: ModelIndex, pairs: list[tuple[LayerRecord, LayerRecord, str]],
             inputs: str | os.PathLike[str], *, preprocess: str, fit: str, unsafe: bool, limit: int,
             progress: Callable[[int, int, str], None] | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total, "activations of A")
    grams_a, names = _activation_grams(a, inputs, [ra.path for ra, _, _ in pairs], preprocess=preprocess, fit=fit,
                                       unsafe=unsafe, limit=limit)
    if len(names) and next(iter(grams_a.values())).shape[0] < 2:
        raise InputDataError(f"CKA needs at least 2 inputs (it centres over the examples); give a folder of "
                             f"several images. Received: {describe_received(str(inputs))} with one input")
    if progress is not None:
        progress(done + 1, total, "activations of B")
    grams_b, _ = _activation_grams(b, inputs, [rb.path for _, rb, _ in pairs], preprocess=preprocess, fit=fit,
                                   unsafe=unsafe, limit=limit)
    by_path = {e.path: e for e in result.layers}
    for ra, rb, _ in pairs:
        ka, kb = grams_a.get(ra.path), grams_b.get(rb.path)
        if ka is not None and kb is not None and ka.shape == kb.shape:
            by_path[ra.path].cka = cka_from_grams(ka, kb)
    result.inputs = names


def iter_changed(result: Comparison) -> Iterator[LayerComparison]:
    """Layers whose kernels were compared map by map and changed, most changed first."""
    yield from sorted((e for e in result.layers if e.status is Status.CHANGED and e.maps),
                      key=lambda e: -_finite_or(e.relative_change or 0.0, 1e300))
