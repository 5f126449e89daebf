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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import kerascompat
from .activations import capture_io, run_operation
from .errors import InputDataError, NotAFilterLayerError, SelectionError, describe_received
from .graph import bn_fold_plan
from .records import FILTER_KINDS, LayerKind, LayerRecord, ModelIndex

__all__ = ["Decomposition", "LayerRun", "contributions_for", "decompose", "prepare_decomposition", "save_npz"]

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


def _forward_geometry(spatial: tuple[int, ...], ksize: tuple[int, ...], strides: tuple[int, ...],
                      dilation: tuple[int, ...], padding: str) -> tuple[list[tuple[int, int]], list[int]]:
    """(pads per spatial axis, output sizes) of a forward conv; docs/decomposition.md "Padding"."""
    pads, outs = [], []
    for n, k, s, d in zip(spatial, ksize, strides, dilation, strict=True):
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
        raise InputDataError(f"the layer's input is smaller than its kernel. Received: input {tuple(spatial)}")
    return pads, outs


def _correlate_padded(xp: np.ndarray, kernels: np.ndarray, strides: tuple[int, ...], dilation: tuple[int, ...],
                      outs: Sequence[int]) -> np.ndarray:
    """Per-channel cross-correlation of already padded maps ``xp`` ``(n, *sp_padded)`` with ``kernels``
    ``(n, *k)``: one multiply-add per kernel tap, each vectorised over channels and positions (float64)."""
    rank = kernels.ndim - 1
    kern = np.asarray(kernels, dtype=np.float64)
    result: np.ndarray | None = None
    scratch: np.ndarray | None = None
    for taps in itertools.product(*(range(k) for k in kern.shape[1:])):
        at: tuple[Any, ...] = (slice(None), *(slice(q * d, q * d + (o - 1) * s + 1, s)
                                              for q, d, o, s in zip(taps, dilation, outs, strides, strict=True)))
        tap: tuple[Any, ...] = (slice(None), *taps)
        window = xp[at]
        w = kern[tap].reshape((-1,) + (1,) * rank)
        if result is None:
            result = window * w  # 0 + a == a: the same float64 sums as accumulating from zeros
            scratch = np.empty_like(result)
        else:
            np.multiply(window, w, out=scratch)
            result += scratch
    if result is None:  # a kernel without taps cannot be built by Keras; keep the shape contract anyway
        result = np.zeros((xp.shape[0], *outs), dtype=np.float64)
    return result


def _forward(xs: np.ndarray, kernels: np.ndarray, strides: tuple[int, ...], dilation: tuple[int, ...],
             padding: str) -> np.ndarray:
    """Per-channel cross-correlation: xs ``(n, *sp)``, kernels ``(n, *k)`` → ``(n, *sp_out)``."""
    pads, outs = _forward_geometry(xs.shape[1:], kernels.shape[1:], strides, dilation, padding)
    return _correlate_padded(np.pad(np.asarray(xs, np.float64), [(0, 0), *pads]), kernels, strides, dilation, outs)


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
        tap: tuple[Any, ...] = (slice(None), *taps)
        at: tuple[Any, ...] = (slice(None), *window)
        w = kernels[tap].reshape((-1,) + (1,) * rank)
        buf[at] += xs * w
    crop = tuple(slice(b, b + o) for b, o in zip(befores, out_shape, strict=True))
    return buf[(slice(None), *crop)]


def _conv_geometry(record: LayerRecord) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    spec = record.spec
    if spec is None or spec.strides is None or spec.padding is None or spec.dilation_rate is None:
        raise NotAFilterLayerError(
            f"layer {record.path!r} lacks its strides/padding/dilation in this file, so its output cannot be "
            f"decomposed; open the full model file. Received: spec={spec!r}")
    return tuple(spec.strides), tuple(spec.dilation_rate), str(spec.padding)


def _take(arr: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """``arr[channels]`` along axis 0, as a view when the channels are one contiguous ascending run
    (every input of a plain conv, one group of a grouped conv, one channel of a depthwise conv)."""
    ch = np.asarray(channels)
    if ch.size and ch.ndim == 1 and int(ch[-1]) - int(ch[0]) == ch.size - 1 \
            and (ch.size == 1 or bool(np.all(np.diff(ch) == 1))):
        return arr[int(ch[0]):int(ch[-1]) + 1]
    return arr[ch]


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
    strides, dilation, padding = _conv_geometry(record)
    if record.kind is LayerKind.TRANSPOSE:
        if out_spatial is None:
            raise ValueError("transposed convolutions need out_spatial")
        return _transpose(xs, kernels, strides, dilation, padding, out_spatial), xs
    return _forward(xs, kernels, strides, dilation, padding), xs


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


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


_BIAS_QUIRK_NOTE = (
    "Keras added this channels_first layer's bias along the last spatial axis (its length equals the channel "
    "count: a TensorFlow-backend bias_add quirk), so the model's real output differs from the layer's math by "
    "the bias pattern")


@dataclass(eq=False)
class LayerRun:
    """One forward pass of a layer for one sample, captured once and split map by map.

    Made by :func:`prepare_decomposition`. Every array is for the chosen sample, channels_last, and
    read-only: ``inputs_cf`` is the layer's input with the channel axis first ``(C_in, *spatial_in)``
    (float64); ``reference`` ``(*spatial_out, C_out)`` is the real pre-activation from Keras for every map
    (the layer cloned with a linear activation, or the BN output when folding; float64); ``output`` the
    real activated output (the layer's, or the activation layer's after the BN) and ``activated`` Keras's
    activation applied to ``reference``. :meth:`decompose` does only numpy work per map.
    """

    index: ModelIndex
    record: LayerRecord
    sample_index: int
    fold_bn: bool
    inputs_cf: np.ndarray
    reference: np.ndarray
    output: np.ndarray
    activated: np.ndarray
    activation: str
    channels_first: bool
    notes: tuple[str, ...] = ()
    _padded: np.ndarray | None = field(default=None, repr=False)  # forward convs: inputs_cf zero-padded
    _outs: tuple[int, ...] = field(default=(), repr=False)
    _kernel_size: tuple[int, ...] = field(default=(), repr=False)

    @property
    def layer_path(self) -> str:
        return self.record.path

    @property
    def n_maps(self) -> int:
        return int(self.reference.shape[-1])

    def decompose(self, j: int) -> Decomposition:
        """Output map ``j`` split into input-channel contributions, checked against the captured Keras run.

        Raises SelectionError for a map index out of range."""
        from .filters import filters_for_map

        return self._split(filters_for_map(self.record, j, index=self.index, fold_bn=self.fold_bn))

    def _contributions(self, kernels: np.ndarray, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        record = self.record
        xs = _take(self.inputs_cf, channels)
        if record.kind is LayerKind.DENSE:
            return xs * np.asarray(kernels, np.float64).reshape((-1,) + (1,) * (xs.ndim - 1)), xs
        strides, dilation, padding = _conv_geometry(record)
        if record.kind is LayerKind.TRANSPOSE:
            return _transpose(xs, kernels, strides, dilation, padding, self.reference.shape[:-1]), xs
        if self._padded is None or tuple(kernels.shape[1:]) != self._kernel_size:
            return _forward(xs, kernels, strides, dilation, padding), xs  # geometry not known up front
        return _correlate_padded(_take(self._padded, channels), kernels, strides, dilation, self._outs), xs

    def _split(self, fs: Any) -> Decomposition:
        j = int(fs.map_index)
        contributions, inputs = self._contributions(fs.kernels, fs.input_channels)
        bias = 0.0 if fs.bias is None else float(fs.bias)
        preact = contributions.sum(axis=0) + bias
        reference = np.array(self.reference[..., j])  # a copy: ascontiguousarray makes 0-d arrays 1-d
        output = np.array(self.output[..., j])
        activated = self.activated[..., j]
        notes = [*fs.notes, *self.notes]
        abs_err, rel_err = _errors(preact, reference)
        if rel_err > 1e-4 and self.channels_first and fs.bias and reference.ndim >= 1 \
                and reference.shape[-1] == self.n_maps:
            # Keras 3 (TF backend) ops.add treats (1, C, 1, 1) + x as tf.nn.bias_add and picks NHWC when
            # x's last axis also has length C: the bias then lands on the width axis (seen in 3.15.1).
            notes.append(_BIAS_QUIRK_NOTE)
        act_err = float(np.max(np.abs(np.asarray(activated, np.float64) - np.asarray(output, np.float64)))) \
            if output.size else 0.0
        flat = contributions.reshape(len(contributions), -1)
        energy = np.einsum("ij,ij->i", flat, flat)
        ranking = np.argsort(-energy, kind="stable")
        record = self.record
        return Decomposition(
            layer_path=record.path, class_name=record.class_name, kind=record.kind, map_index=j,
            sample_index=self.sample_index, input_channels=np.asarray(fs.input_channels), inputs=inputs,
            kernels=np.asarray(fs.kernels), contributions=contributions, bias=bias, preactivation=preact,
            reference=reference, output=output, activation=self.activation, energy=np.asarray(energy),
            ranking=ranking, max_abs_error=abs_err, max_rel_error=rel_err, activation_error=act_err,
            bn_folded=bool(fs.bn_folded), notes=tuple(notes),
        )


def _filter_record(index: ModelIndex, path: str) -> LayerRecord:
    record = index.layer(path)
    if record.kind not in FILTER_KINDS or record.kernel is None:
        raise NotAFilterLayerError(
            f"layer {record.path!r} ({record.class_name}) has no kernel, so its maps cannot be split into "
            "input-channel contributions; accepted: Conv*, DepthwiseConv*, SeparableConv*, Conv*Transpose, "
            f"Dense. Received: {record.path!r}")
    return record


def _check_sample(x: np.ndarray, sample: int) -> None:
    if not 0 <= sample < len(x):
        raise SelectionError(f"sample index out of range; the batch has {len(x)} samples. Received: {sample}")


def prepare_decomposition(index: ModelIndex, model: Any, x: np.ndarray, path: str, *,
                          fold_bn: bool | str = False, sample: int = 0) -> LayerRun:
    """Run the model once on sample ``sample`` of ``x`` and keep what every map of the layer at ``path``
    needs: its input, the Keras reference for all maps (linear-activation clone, or the BN output when
    ``fold_bn``) and the real output. Then ``run.decompose(j)`` splits any map without running Keras.

    Raises NotAFilterLayerError for layers without a kernel, SelectionError for a bad sample index or a
    ``fold_bn`` that cannot be folded (or is not True/False/'after'/'none').
    """
    from .runtime import find_layer

    fold = _check_fold_bn(fold_bn)
    record = _filter_record(index, path)
    x = np.asarray(x)
    _check_sample(x, sample)
    bn_path = act_path = None
    if fold:
        plan = bn_fold_plan(index, record, "after").require()  # also names the activation after the BN
        bn_path = plan.bn_path
        act_path = None if plan.activation is None else plan.activation.path
    layer = find_layer(model, record.path)
    spec = record.spec
    cf = bool(spec is not None and spec.channels_first and record.kind is not LayerKind.DENSE)
    wanted = [p for p in (record.path, bn_path, act_path) if p is not None]
    cap = capture_io(model, x[sample:sample + 1], outputs=wanted, inputs=[record.path])
    x_in = cap.inputs[record.path][0]  # the layer's first input, (1, ...) native layout
    layer_out = _cl(cap.outputs[record.path], cf)[0]

    notes: list[str] = []
    keras = kerascompat.import_keras()
    if fold:
        assert bn_path is not None
        bn_cf = cap.channels_first[bn_path]
        reference = np.asarray(_cl(cap.outputs[bn_path], bn_cf)[0], dtype=np.float64)
        if act_path is not None:
            act_layer = find_layer(model, act_path)
            activation = _activation_name(act_layer) if type(act_layer).__name__ == "Activation" \
                else type(act_layer).__name__
            output = np.asarray(_cl(cap.outputs[act_path], cap.channels_first[act_path])[0])
            full = keras.ops.convert_to_numpy(run_operation(act_path, act_layer, cap.outputs[bn_path]))
            activated = np.asarray(_cl(full, bn_cf)[0])
            notes.append(f"output is {act_path} ({activation}) after {bn_path}")
        else:
            activation, output, activated = "linear", reference.astype(np.float32), reference
            notes.append(f"output is {bn_path}; no activation layer follows it directly")
    else:
        full_ref = _cl(_linear_clone(layer, x_in), cf)[0]
        reference = np.asarray(full_ref, dtype=np.float64)
        output = np.asarray(layer_out)
        activation = _activation_name(layer)
        activated = np.asarray(keras.ops.convert_to_numpy(layer.activation(keras.ops.convert_to_tensor(
            full_ref.astype(np.float32))))) if getattr(layer, "activation", None) else full_ref

    inputs_cf = np.ascontiguousarray(np.moveaxis(np.asarray(_cl(x_in, cf)[0], dtype=np.float64), -1, 0))
    padded: np.ndarray | None = None
    outs: tuple[int, ...] = ()
    ksize: tuple[int, ...] = ()
    if record.kind not in (LayerKind.DENSE, LayerKind.TRANSPOSE) and spec is not None \
            and spec.kernel_size is not None and len(spec.kernel_size) == inputs_cf.ndim - 1:
        # Pad the input once for every map: a map step is then only the per-tap multiply-adds.
        strides, dilation, padding = _conv_geometry(record)
        ksize = tuple(int(k) for k in spec.kernel_size)
        pads, out_list = _forward_geometry(inputs_cf.shape[1:], ksize, strides, dilation, padding)
        padded, outs = _readonly(np.pad(inputs_cf, [(0, 0), *pads])), tuple(out_list)
    return LayerRun(
        index=index, record=record, sample_index=int(sample), fold_bn=fold, inputs_cf=_readonly(inputs_cf),
        reference=_readonly(reference), output=_readonly(np.array(output)), activated=_readonly(np.array(activated)),
        activation=activation, channels_first=cf, notes=tuple(notes), _padded=padded, _outs=outs,
        _kernel_size=ksize)


def decompose(index: ModelIndex, model: Any, x: np.ndarray, path: str, j: int, *, fold_bn: bool | str = False,
              sample: int = 0) -> Decomposition:
    """Decompose output map ``j`` of the layer at ``path`` for sample ``sample`` of the batch ``x``.

    ``model`` is the runnable model (:func:`inspector.runtime.load_runnable`), ``index`` its index.
    The same as ``prepare_decomposition(...).decompose(j)`` (one forward pass per call: to step through
    maps, prepare once). Raises NotAFilterLayerError for layers without a kernel, SelectionError for a bad
    map index or a ``fold_bn`` other than True/False/'after'/'none'.
    """
    from .filters import filters_for_map

    fold = _check_fold_bn(fold_bn)
    record = _filter_record(index, path)
    x = np.asarray(x)
    _check_sample(x, sample)
    fs = filters_for_map(record, j, index=index, fold_bn=fold)  # a bad map or fold fails before the forward pass
    return prepare_decomposition(index, model, x, record.path, fold_bn=fold, sample=sample)._split(fs)
