"""Output-shape formulas for layers whose output shape no consumer recorded (docs/formats.md §5.3).

Only exact formulas live here; a layer we have no formula for keeps an unknown (``None``) shape
rather than a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .graph import MERGE_LAYERS, SHAPE_PRESERVING
from .records import Shape

__all__ = ["conv_output_length", "expand_ints", "infer_output_shape", "pad_pairs", "transpose_output_length"]



def conv_output_length(n: int | None, k: int, s: int, d: int, padding: str) -> int | None:
    if n is None:
        return None
    if padding == "same":
        return math.ceil(n / s)
    if padding == "causal":
        return (n - 1) // s + 1
    return (n - (k - 1) * d - 1) // s + 1


def transpose_output_length(n: int | None, k: int, s: int, d: int, padding: str,
                            output_padding: int | None) -> int | None:
    if n is None:
        return None
    k_eff = (k - 1) * d + 1
    if output_padding is None:
        return n * s if padding == "same" else n * s + max(k_eff - s, 0)
    pad = k_eff // 2 if padding == "same" else 0
    return (n - 1) * s + k_eff - 2 * pad + output_padding


def pad_pairs(value: Any, rank: int) -> list[tuple[int, int]]:
    """(before, after) per spatial axis from Keras's padding/cropping spellings: n, (a, b) in 1-D, or per axis."""
    if isinstance(value, int):
        return [(value, value)] * rank
    items = list(value)
    if rank == 1 and len(items) == 2 and all(isinstance(v, int) for v in items):
        return [(int(items[0]), int(items[1]))]
    return [(int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1])) for v in items]


def expand_ints(value: Any, rank: int, default: int = 1) -> tuple[int, ...]:
    """A config's int-or-tuple field (kernel_size, strides, ...) as a tuple of ``rank`` ints."""
    if value is None:
        return (default,) * rank
    if isinstance(value, int):
        return (value,) * rank
    return tuple(int(v) for v in value)


def _spatial(shape: Shape, rank: int, channels_first: bool) -> tuple[list[int | None], int | None]:
    if channels_first:
        return list(shape[2:2 + rank]), shape[1]
    return list(shape[1:1 + rank]), shape[-1]


def _assemble(batch: int | None, spatial: Sequence[int | None], channels: int | None, channels_first: bool) -> Shape:
    return (batch, channels, *spatial) if channels_first else (batch, *spatial, channels)


def infer_output_shape(class_name: str, config: Mapping[str, Any],
                       input_shape: Shape | list[Shape] | None) -> Shape | None:
    """The output shape of a layer from its config and input shape, or None when not exactly known."""
    if input_shape is None:
        return None
    c = config
    if isinstance(input_shape, list):
        shapes = input_shape
        if class_name in MERGE_LAYERS and shapes:
            return shapes[0]
        if class_name == "Concatenate" and shapes and all(s is not None for s in shapes):
            axis = int(c.get("axis", -1))
            first = list(shapes[0])
            dims = [s[axis] for s in shapes]
            first[axis] = None if any(d is None for d in dims) else sum(d for d in dims if d is not None)
            return tuple(first)
        return None
    shape = input_shape
    if class_name in SHAPE_PRESERVING or class_name == "InputLayer":
        return shape
    cf = c.get("data_format") == "channels_first"
    rank_map = {"1D": 1, "2D": 2, "3D": 3}
    rank = next((r for tag, r in rank_map.items() if class_name.endswith(tag) or f"{tag}Transpose" in class_name), 0)
    if class_name == "Dense":
        return (*shape[:-1], int(c["units"]))
    if class_name == "Flatten":
        rest = shape[1:]
        return (shape[0], None if any(d is None for d in rest) else math.prod(d for d in rest if d is not None))
    if class_name == "Reshape":
        target = list(c.get("target_shape", []))
        if -1 in target and all(d is not None for d in shape[1:]):
            total = math.prod(d for d in shape[1:] if d is not None)
            known = math.prod(d for d in target if d != -1)
            target[target.index(-1)] = total // known
        return (shape[0], *target)
    if class_name == "Embedding":
        return (*shape, int(c["output_dim"]))
    if class_name in ("SimpleRNN", "LSTM", "GRU"):
        units = int(c["units"])
        return (shape[0], shape[1], units) if c.get("return_sequences") else (shape[0], units)
    if class_name.startswith("Global") and "Pooling" in class_name:
        spatial, ch = _spatial(shape, rank, cf)
        if c.get("keepdims"):
            return _assemble(shape[0], [1] * rank, ch, cf)
        return (shape[0], ch)
    if ("Pooling" in class_name or class_name.startswith(("MaxPool", "AveragePooling", "AvgPool"))) and rank:
        pool = expand_ints(c.get("pool_size"), rank, 2)
        strides = expand_ints(c.get("strides") or pool, rank)
        spatial, ch = _spatial(shape, rank, cf)
        out = [conv_output_length(n, k, s, 1, str(c.get("padding", "valid")).lower())
               for n, k, s in zip(spatial, pool, strides, strict=True)]
        return _assemble(shape[0], out, ch, cf)
    if class_name.startswith(("ZeroPadding", "Cropping")) and rank:
        # Padding grows each spatial axis by (before + after); cropping shrinks it by the same amounts.
        grow = class_name.startswith("ZeroPadding")
        pairs = pad_pairs(c.get("padding" if grow else "cropping", 1 if grow else 0), rank)
        spatial, ch = _spatial(shape, rank, cf)
        sign = 1 if grow else -1
        out = [None if n is None else n + sign * (a + b) for n, (a, b) in zip(spatial, pairs, strict=True)]
        return _assemble(shape[0], out, ch, cf)
    if class_name.startswith("UpSampling") and rank:
        size = expand_ints(c.get("size"), rank, 2)
        spatial, ch = _spatial(shape, rank, cf)
        return _assemble(shape[0], [None if n is None else n * s for n, s in zip(spatial, size, strict=True)], ch, cf)
    is_conv = class_name.startswith(("Conv", "DepthwiseConv", "SeparableConv")) and rank
    if is_conv and "LSTM" not in class_name:
        k = expand_ints(c.get("kernel_size"), rank)
        s = expand_ints(c.get("strides"), rank)
        d = expand_ints(c.get("dilation_rate"), rank)
        padding = str(c.get("padding", "valid")).lower()
        spatial, ch = _spatial(shape, rank, cf)
        if class_name.endswith("Transpose"):
            op = c.get("output_padding")
            ops = [None] * rank if op is None else list(expand_ints(op, rank))
            out = [transpose_output_length(n, *a, padding, o)
                   for n, a, o in zip(spatial, zip(k, s, d, strict=True), ops, strict=True)]
            return _assemble(shape[0], out, int(c["filters"]), cf)
        out = [conv_output_length(n, kk, ss, dd, padding) for n, kk, ss, dd in zip(spatial, k, s, d, strict=True)]
        if class_name.startswith("Depthwise"):
            channels = None if ch is None else ch * int(c.get("depth_multiplier", 1))
        else:
            channels = int(c["filters"])
        return _assemble(shape[0], out, channels, cf)
    return None
