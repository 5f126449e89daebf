"""Split one output map of a conv-like or Dense layer into per-input-channel contributions.

For output map j and one input sample (docs/formats.md §5.2, docs/decomposition.md)::

    preactivation_j = bias_j + Σ_n contribution_n,   contribution_n = xcorr(x[..., c_n], K_n)

where ``c_n`` / ``K_n`` are the input channels and kernels :func:`inspector.filters.filters_for_map`
returns (grouped, depthwise and separable layers included; transposed convs scatter instead of
correlating; Dense multiplies). Contributions are computed here in float64 numpy from the layer's
captured input, independently of Keras's convolution code, and then checked against the truth:
Keras runs the same layer with a linear activation on the same input, and the largest difference is
stored in the result (``max_abs_error``, ``max_rel_error``). With ``fold_bn`` the following
BatchNormalization is folded into kernel and bias, and the sum is checked against the BN's output.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import kerascompat
from .activations import capture_io, run_operation
from .errors import InputDataError, NotAFilterLayerError, SelectionError, describe_received
from .graph import bn_fold_plan
from .records import FILTER_KINDS, LayerKind, LayerRecord, ModelIndex

__all__ = ["Decomposition", "contributions_for", "decompose", "save_npz"]

@dataclass(frozen=True, eq=False)
class Decomposition:
    """Output map ``map_index`` of ``layer_path`` for one sample, split by input channel.

    Spatial arrays are channels_last-free: ``contributions`` is ``(n_inputs_seen, *spatial_out)``,
    ``inputs`` is ``(n_inputs_seen, *spatial_in)`` (the input maps that were read),
    ``preactivation`` / ``reference`` / ``output`` are ``(*spatial_out)``. ``ranking`` orders
    positions of ``input_channels`` by contribution ``energy`` (sum of squares), strongest first.
    """

    layer_path: str
    class_name: str | None
    kind: LayerKind
    map_index: int
    sample_index: int
    input_channels: np.ndarray
    inputs: np.ndarray
    kernels: np.ndarray
    contributions: np.ndarray
    bias: float
    preactivation: np.ndarray  # Σ contributions + bias (ours, float64)
    reference: np.ndarray  # the real pre-activation from Keras (linear-activation run / BN output)
    output: np.ndarray  # the real activated output of the layer (or of the activation after the BN)
    activation: str
    energy: np.ndarray
    ranking: np.ndarray
    max_abs_error: float  # max |preactivation − reference|
    max_rel_error: float  # max_abs_error / max |reference|
    activation_error: float  # max |act(reference) − output|
    bn_folded: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_inputs(self) -> int:
        return len(self.input_channels)

    def top(self, k: int) -> np.ndarray:
        """Positions (into ``input_channels``) of the k strongest contributions."""
        return self.ranking[: max(0, int(k))]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "contributions": self.contributions, "input_channels": self.input_channels,
            "bias": np.asarray(self.bias), "preactivation": self.preactivation, "reference": self.reference,
            "output": self.output, "inputs": self.inputs, "kernels": self.kernels, "energy": self.energy,
            "ranking": self.ranking, "map_index": np.asarray(self.map_index),
            "max_abs_error": np.asarray(self.max_abs_error), "max_rel_error": np.asarray(self.max_rel_error),
            "activation_error": np.asarray(self.activation_error), "activation": np.asarray(self.activation),
            "layer_path": np.asarray(self.layer_path), "bn_folded": np.asarray(self.bn_folded),
        }


def save_npz(dec: Decomposition, path: str | os.PathLike[str]) -> Path:
    """Write the decomposition's arrays to an ``.npz`` (strings as 0-d unicode arrays, no pickles).

    ``.npz`` is appended when missing; returns the path written.
    """
    from .outputs import write_npz

    return write_npz(path, dec.to_arrays(), compressed=True)


def _check_fold_bn(fold_bn: object) -> bool:
    """``fold_bn`` as a bool. Only the BN *after* the layer can be folded here: the contributions are
    computed from the layer's own input, which a folded BN *before* it would have to be undone from."""
    if isinstance(fold_bn, (bool, np.bool_)):
        return bool(fold_bn)
    if isinstance(fold_bn, str) and fold_bn.strip().lower() in ("after", "none"):
        return fold_bn.strip().lower() == "after"
    raise SelectionError(
        "decompose folds only the BatchNormalization after the layer; accepted fold_bn: True/False "
        f"(or 'after' / 'none'). Received: {describe_received(fold_bn)}")


# -- the math --------------------------------------------------------------------------------------------

def _same_pad(n: int, k: int, s: int, d: int) -> tuple[int, int, int]:
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2, out  # TF style: the extra pad goes after


def _forward(xs: np.ndarray, kernels: np.ndarray, strides: tuple[int, ...], dilation: tuple[int, ...],
             padding: str) -> np.ndarray:
    """Per-channel cross-correlation: xs ``(n, *sp)``, kernels ``(n, *k)`` → ``(n, *sp_out)``."""
    rank = kernels.ndim - 1
    pads, outs = [], []
    for a in range(rank):
        n, k, s, d = xs.shape[1 + a], kernels.shape[1 + a], strides[a], dilation[a]
        if padding == "same":
            before, after, out = _same_pad(n, k, s, d)
        elif padding == "causal":
            before, after = (k - 1) * d, 0
            out = (n - 1) // s + 1
        else:
            before, after = 0, 0
            out = (n - (k - 1) * d - 1) // s + 1
        pads.append((before, after))
        outs.append(out)
    if any(o <= 0 for o in outs):
        raise InputDataError(f"the layer's input is smaller than its kernel. Received: input {xs.shape[1:]}")
    xp = np.pad(xs, [(0, 0), *pads])
    result = np.zeros((xs.shape[0], *outs), dtype=np.float64)
    for taps in itertools.product(*(range(k) for k in kernels.shape[1:])):
        window = tuple(slice(q * d, q * d + (o - 1) * s + 1, s)
                       for q, d, o, s in zip(taps, dilation, outs, strides, strict=True))
        w = kernels[(slice(None), *taps)].reshape((-1,) + (1,) * rank)
        result += xp[(slice(None), *window)] * w
    return result


def _transpose(xs: np.ndarray, kernels: np.ndarray, strides: tuple[int, ...], dilation: tuple[int, ...],
               padding: str, out_shape: tuple[int, ...]) -> np.ndarray:
    """Per-channel transposed conv: ``out[p·s + q·d − pb] += x[p]·w[q]``, cropped to ``out_shape``."""
    rank = kernels.ndim - 1
    befores, sizes = [], []
    for a in range(rank):
        n, k, s, d, out = xs.shape[1 + a], kernels.shape[1 + a], strides[a], dilation[a], out_shape[a]
        k_eff = (k - 1) * d + 1
        # pb is the "same" pad_before of the forward conv out -> n (0 for valid): docs/formats.md §5.2.
        before = max((n - 1) * s + k_eff - out, 0) // 2 if padding == "same" else 0
        befores.append(before)
        sizes.append(max((n - 1) * s + k_eff, before + out))
    buf = np.zeros((xs.shape[0], *sizes), dtype=np.float64)
    for taps in itertools.product(*(range(k) for k in kernels.shape[1:])):
        window = tuple(slice(q * d, q * d + (xs.shape[1 + a] - 1) * s + 1, s)
                       for a, (q, d, s) in enumerate(zip(taps, dilation, strides, strict=True)))
        w = kernels[(slice(None), *taps)].reshape((-1,) + (1,) * rank)
        buf[(slice(None), *window)] += xs * w
    crop = tuple(slice(b, b + o) for b, o in zip(befores, out_shape, strict=True))
    return buf[(slice(None), *crop)]


def contributions_for(record: LayerRecord, x_cl: np.ndarray, kernels: np.ndarray, input_channels: np.ndarray,
                      out_spatial: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(contributions, input maps) for one sample ``x_cl`` (channels_last, no batch axis), float64.

    ``kernels`` / ``input_channels`` as in a :class:`~inspector.filters.FilterSet`; ``out_spatial`` is
    needed for transposed convs (their output size also depends on ``output_padding``).
    """
    x = np.asarray(x_cl, dtype=np.float64)
    xs = np.moveaxis(x[..., input_channels], -1, 0)  # (n, *spatial_in)
    if record.kind is LayerKind.DENSE:
        return xs * kernels.reshape((-1,) + (1,) * (xs.ndim - 1)), xs
    spec = record.spec
    if spec is None or spec.strides is None or spec.padding is None or spec.dilation_rate is None:
        raise NotAFilterLayerError(
            f"layer {record.path!r} lacks its strides/padding/dilation in this file, so its output cannot be "
            f"decomposed; open the full model file. Received: spec={spec!r}")
    strides, dilation = tuple(spec.strides), tuple(spec.dilation_rate)
    if record.kind is LayerKind.TRANSPOSE:
        if out_spatial is None:
            raise ValueError("transposed convolutions need out_spatial")
        return _transpose(xs, kernels, strides, dilation, spec.padding, out_spatial), xs
    return _forward(xs, kernels, strides, dilation, spec.padding), xs


# -- against Keras -----------------------------------------------------------------------------------------

def _linear_clone(layer: Any, x: np.ndarray) -> np.ndarray:
    """The layer's output with a linear activation: a clone from its config with the same weights.

    A clone, not a temporary ``layer.activation = linear``: the user's model is never mutated.
    """
    cfg = dict(layer.get_config())
    cfg["activation"] = "linear"
    clone = type(layer).from_config(cfg)
    clone.build(tuple(x.shape))
    clone.set_weights(layer.get_weights())
    return np.asarray(run_operation(layer.name, clone, x))


def _activation_name(layer: Any) -> str:
    act = getattr(layer, "activation", None)
    if act is None:
        return "linear"
    return str(getattr(act, "__name__", type(act).__name__))


def _cl(arr: np.ndarray, channels_first: bool) -> np.ndarray:
    return np.moveaxis(arr, 1, -1) if channels_first and arr.ndim >= 3 else arr


def _errors(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    if ours.shape != ref.shape:
        raise AssertionError(f"decomposition shape {ours.shape} != layer output shape {ref.shape}")
    abs_err = float(np.max(np.abs(ours - ref))) if ours.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return abs_err, abs_err / scale if scale > 0 else abs_err


def decompose(index: ModelIndex, model: Any, x: np.ndarray, path: str, j: int, *, fold_bn: bool | str = False,
              sample: int = 0) -> Decomposition:
    """Decompose output map ``j`` of the layer at ``path`` for sample ``sample`` of the batch ``x``.

    ``model`` is the runnable model (:func:`inspector.runtime.load_runnable`), ``index`` its index.
    Raises NotAFilterLayerError for layers without a kernel, SelectionError for a bad map index or a
    ``fold_bn`` other than True/False/'after'/'none'.
    """
    from .filters import filters_for_map
    from .runtime import find_layer

    fold_bn = _check_fold_bn(fold_bn)
    record = index.layer(path)
    if record.kind not in FILTER_KINDS or record.kernel is None:
        raise NotAFilterLayerError(
            f"layer {record.path!r} ({record.class_name}) has no kernel, so its maps cannot be split into "
            "input-channel contributions; accepted: Conv*, DepthwiseConv*, SeparableConv*, Conv*Transpose, "
            f"Dense. Received: {record.path!r}")
    x = np.asarray(x)
    if not 0 <= sample < len(x):
        raise SelectionError(f"sample index out of range; the batch has {len(x)} samples. Received: {sample}")
    fs = filters_for_map(record, j, index=index, fold_bn=fold_bn)
    layer = find_layer(model, record.path)
    spec = record.spec
    cf = bool(spec is not None and spec.channels_first and record.kind is not LayerKind.DENSE)

    bn_path = act_path = None
    if fold_bn:
        # filters_for_map has folded it, so the planner said yes; it also names the activation after the BN.
        plan = bn_fold_plan(index, record, "after").require()
        bn_path = plan.bn_path
        act_path = None if plan.activation is None else plan.activation.path
    wanted = [p for p in (record.path, bn_path, act_path) if p is not None]
    cap = capture_io(model, x[sample:sample + 1], outputs=wanted, inputs=[record.path])
    x_in = cap.inputs[record.path][0]  # (1, ...) native layout
    layer_out = _cl(cap.outputs[record.path], cf)[0]

    out_spatial = tuple(layer_out.shape[:-1])
    contributions, inputs = contributions_for(record, _cl(x_in, cf)[0], fs.kernels, fs.input_channels,
                                              out_spatial)
    bias = 0.0 if fs.bias is None else float(fs.bias)
    preact = contributions.sum(axis=0) + bias
    notes: list[str] = list(fs.notes)

    keras = kerascompat.import_keras()
    if fold_bn:
        assert bn_path is not None
        bn_cf = cap.channels_first[bn_path]
        reference = np.asarray(_cl(cap.outputs[bn_path], bn_cf)[0][..., j], dtype=np.float64)
        if act_path is not None:
            act_layer = find_layer(model, act_path)
            activation = _activation_name(act_layer) if type(act_layer).__name__ == "Activation" \
                else type(act_layer).__name__
            output = _cl(cap.outputs[act_path], cap.channels_first[act_path])[0][..., j]
            full = keras.ops.convert_to_numpy(run_operation(act_path, act_layer, _cl(cap.outputs[bn_path], False)))
            activated = _cl(full, bn_cf)[0][..., j]
            notes.append(f"output is {act_path} ({activation}) after {bn_path}")
        else:
            activation, output, activated = "linear", reference.astype(np.float32), reference
            notes.append(f"output is {bn_path}; no activation layer follows it directly")
    else:
        full_ref = _cl(_linear_clone(layer, x_in), cf)[0]
        reference = np.asarray(full_ref[..., j], dtype=np.float64)
        output = layer_out[..., j]
        activation = _activation_name(layer)
        activated = keras.ops.convert_to_numpy(layer.activation(keras.ops.convert_to_tensor(
            full_ref.astype(np.float32))))[..., j] if getattr(layer, "activation", None) else full_ref[..., j]
    abs_err, rel_err = _errors(preact, reference)
    if rel_err > 1e-4 and cf and fs.bias and layer_out.ndim >= 2 and layer_out.shape[-2] == layer_out.shape[-1]:
        # Keras 3 (TF backend) ops.add treats (1, C, 1, 1) + x as tf.nn.bias_add and picks NHWC when
        # x's last axis also has length C: the bias then lands on the width axis (seen in 3.15.1).
        notes.append("Keras added this channels_first layer's bias along the last spatial axis (its length "
                     "equals the channel count: a TensorFlow-backend bias_add quirk), so the model's real "
                     "output differs from the layer's math by the bias pattern")
    act_err = float(np.max(np.abs(np.asarray(activated, np.float64) - np.asarray(output, np.float64)))) \
        if np.size(output) else 0.0
    flat = contributions.reshape(len(contributions), -1)
    energy = np.einsum("ij,ij->i", flat, flat)
    ranking = np.argsort(-energy, kind="stable")
    return Decomposition(
        layer_path=record.path, class_name=record.class_name, kind=record.kind, map_index=int(j),
        sample_index=int(sample), input_channels=np.asarray(fs.input_channels), inputs=inputs,
        kernels=np.asarray(fs.kernels), contributions=contributions, bias=bias, preactivation=preact,
        reference=reference, output=np.asarray(output), activation=activation, energy=np.asarray(energy),
        ranking=ranking, max_abs_error=abs_err, max_rel_error=rel_err, activation_error=act_err,
        bn_folded=bool(fs.bn_folded), notes=tuple(notes),
    )

