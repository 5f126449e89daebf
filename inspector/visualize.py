"""Feature visualization: the input a map responds to most, by activation maximization (issue 12).

Method (docs/visualize.md), after Olah, Mordvintsev and Schubert, "Feature Visualization" (Distill 2017):

* **Parameterization.** Each image is a set of Fourier coefficients per channel, scaled by ``1/f``
  (decorrelated spatial basis: all frequencies get comparable gradient, so no high-frequency noise).
  For 3-channel inputs the channels are decorrelated with the Cholesky factor of the ImageNet colour
  covariance. A sigmoid maps the result to ``u`` in (0, 1), and ``u`` is mapped linearly to the range
  the model expects (:func:`input_range`: the ``inputs.py`` preprocessing vocabulary applied to 0..255
  pixel values), so the image is always a valid input.
* **Transformation robustness**, inside the graph, different for every image and step: a translation
  jitter of about 5 % of the side, a scale in 0.9-1.1 and a rotation in ±10 degrees, as one bilinear
  affine warp with mid-grey fill (1-D signals: a shift jitter).
* **Objective**: the mean of map j (``channel``), map j at the centre (``neuron``) or the negative of
  either, read from the layer's output. Many maps of a layer are optimized together: image i of the
  batch serves map ``maps[i]``, one forward/backward pass serves all (the loss is a sum, so every
  image gets exactly its own gradient). An optional diversity term pushes several images of one map
  apart (cosine similarity of their Gram matrices, Lucid's ``diversity``).
* **ReLU start-up.** For the first ``warmup`` steps the objective reads the layer's *pre-activation*
  (the layer called with a linear activation, or the input of an activation layer), then its output.
  A map that is zero everywhere on the starting image has zero gradient behind its own ReLU, which
  is the "grey image" failure; the pre-activation always has a gradient, and after the warm-up the map
  is active, so the real objective takes over. This touches only the target layer (no gradient
  override of every ReLU in the network, which a Keras model does not let us do portably).
  Negative objectives read the pre-activation throughout (the negative of a ReLU output stops at 0).
* **Adam** on the coefficients (lr 0.05, 256 steps by default), written out as tensor arithmetic in
  the single ``tf.function`` of a step, so nothing but the seed decides the result: initial
  coefficients and every transform come from ``numpy.random.default_rng((seed, map, image))``.
  The same seed gives the same image, batched or one map at a time.

The layer is read through a feature extractor ``keras.Model(model.inputs, layer.input)`` for a
top-level layer called once (the layer itself is then applied, so that its pre-activation is at hand);
a layer inside a nested model, or a shared one, is reached by walking the Functional graph and stopping
at the layer. TensorFlow comes from :mod:`inspector.kerascompat`, imported when a function runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from . import kerascompat
from .errors import (
    InputDataError,
    LayerNotFoundError,
    ModelNotRunnableError,
    NotAFilterLayerError,
    SelectionError,
    close_matches,
    describe_received,
)

__all__ = [
    "DEFAULTS",
    "PREPROCESS",
    "Objective",
    "Reference",
    "Visualization",
    "bundled_reference_files",
    "input_range",
    "layer_map_count",
    "load_npz",
    "load_references",
    "map_scores",
    "random_crops",
    "reference_scores",
    "resolve_preprocess",
    "save_npz",
    "visualize",
]


class Objective(StrEnum):
    """What is maximized: the mean of map j, map j at the centre, or the negative of either."""

    CHANNEL = "channel"
    NEURON = "neuron"
    NEGATIVE = "negative"  # the negative channel mean
    NEGATIVE_NEURON = "negative-neuron"

    @property
    def negative(self) -> bool:
        return self in (Objective.NEGATIVE, Objective.NEGATIVE_NEURON)

    @property
    def neuron(self) -> bool:
        return self in (Objective.NEURON, Objective.NEGATIVE_NEURON)


@dataclass(frozen=True)
class _Defaults:
    steps: int = 256
    lr: float = 0.05
    seed: int = 0
    batch: int = 64  # images per forward/backward pass
    image_side: int = 128  # variable-size image models
    signal_length: int = 256  # variable-length 1-D models
    crops: int = 200
    decay_power: float = 1.0  # the 1/f scaling of the Fourier basis
    init_std: float = 0.01


DEFAULTS = _Defaults()

#: Lucid's square root of the ImageNet RGB covariance; we use the Cholesky factor of that covariance.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
#: Activation layers: their pre-activation is their input.
_ACTIVATION_LAYERS = frozenset({"ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU", "Softmax", "Activation"})
#: Layers whose output has no maps to visualize.
_NO_MAPS = frozenset({"InputLayer", "Flatten", "Reshape", "Permute", "RepeatVector", "Embedding"})
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _color_matrix() -> np.ndarray:
    cov = _COLOR_SQRT @ _COLOR_SQRT.T
    chol = np.linalg.cholesky(cov)
    return (chol / np.max(np.linalg.norm(chol, axis=0))).astype(np.float32)


# -- options ---------------------------------------------------------------------------------------------

def _check(ok: bool, flag: str, accepted: str, value: Any) -> None:
    if not ok:
        raise SelectionError(f"{flag} must be {accepted}. Received: {describe_received(value)}")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and math.isfinite(float(v))


def _objective(value: str | Objective) -> Objective:
    try:
        return Objective(str(value))
    except ValueError:
        raise SelectionError(f"--objective must be one of {', '.join(str(o) for o in Objective)}. "
                             f"Received: {describe_received(value)}") from None


# -- input side: shape, layout, range ---------------------------------------------------------------------

@dataclass(frozen=True)
class _InputPlan:
    spatial: tuple[int, ...]  # (H, W) or (L,)
    channels: int
    channels_first: bool
    lo: np.ndarray  # (C,) model-range value of pixel 0
    hi: np.ndarray  # (C,) model-range value of pixel 255
    preprocess: str

    @property
    def bgr(self) -> bool:
        """The model reads BGR (caffe): the optimized image is RGB, its channels are reversed on the way in."""
        return is_bgr(self.preprocess)

    @property
    def model_shape(self) -> tuple[int, ...]:
        return (self.channels, *self.spatial) if self.channels_first else (*self.spatial, self.channels)

    @property
    def layout(self) -> str:
        axes = "HW" if len(self.spatial) == 2 else "L"
        return f"C{axes}" if self.channels_first else f"{axes}C"

    def to_model(self, u_last: np.ndarray) -> np.ndarray:
        """``u`` in [0, 1], channels_last with batch axis -> model values in model layout."""
        x = self.lo + (self.hi - self.lo) * (u_last[..., ::-1] if self.bgr else u_last)
        return np.moveaxis(x, -1, 1) if self.channels_first else x

    def to_unit(self, x_model: np.ndarray) -> np.ndarray:
        """Model values (model layout, batch axis) -> [0, 1], channels_last (for drawing)."""
        x = np.moveaxis(x_model, 1, -1) if self.channels_first else x_model
        span = np.where(self.hi != self.lo, self.hi - self.lo, 1.0)
        u = np.asarray((x - self.lo) / span)
        return u[..., ::-1] if self.bgr else u


#: The preprocessing choices a visualization supports: a per-channel affine map from pixels to the model
#: input (the inputs.py vocabulary), with the channels reversed for caffe (the model reads BGR; the image
#: is optimized in RGB, where the colour decorrelation applies).
PREPROCESS = ("auto", "scale01", "scale11", "meanstd", "none", "caffe", "torch", "tf")


def is_bgr(preprocess: str) -> bool:
    return preprocess == "caffe"


def resolve_preprocess(model: Any, preprocess: str) -> str:
    """``auto`` is ``none`` (raw 0..255 values) when the model begins with a ``Rescaling`` or
    ``Normalization`` layer (built-in preprocessing), else ``scale01``; other values are returned as is."""
    from .inputs import auto_preprocess, has_builtin_preprocessing

    if preprocess not in PREPROCESS:
        raise InputDataError(f"preprocessing must be one of {', '.join(PREPROCESS)}. "
                             f"Received: {describe_received(preprocess)}")
    return auto_preprocess(preprocess, builtin=preprocess == "auto" and has_builtin_preprocessing(model))


def input_range(preprocess: str, channels: int, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (lo, hi) of the model input: pixel values 0 and 255 after ``preprocess``
    (``inputs.py`` vocabulary, ``auto`` resolved already)."""
    from .inputs import CAFFE_MEAN_BGR, TORCH_MEAN, TORCH_STD

    ones = np.ones(channels, np.float32)
    if preprocess == "scale01":
        return 0.0 * ones, ones
    if preprocess in ("scale11", "tf"):
        return -ones, ones
    if preprocess in ("caffe", "torch"):
        if channels != 3:
            raise InputDataError(f"preprocessing {preprocess!r} is for RGB models (3 channels). "
                                 f"Received: a model with {channels} input channel(s)")
        if preprocess == "caffe":  # BGR order, minus the ImageNet mean, no scaling
            m = np.asarray(CAFFE_MEAN_BGR, np.float32)
            return -m, 255.0 - m
        m, sd = np.asarray(TORCH_MEAN, np.float32), np.asarray(TORCH_STD, np.float32)
        return (0.0 - m) / sd, (1.0 - m) / sd
    if preprocess == "none":
        return 0.0 * ones, 255.0 * ones
    if preprocess == "meanstd":
        if mean is None or std is None:
            raise InputDataError("preprocessing 'meanstd' needs --mean and --std (one value, or one per channel). "
                                 f"Received: mean={mean!r}, std={std!r}")
        m, s = np.asarray(mean, np.float32).ravel(), np.asarray(std, np.float32).ravel()
        if m.size not in (1, channels) or s.size not in (1, channels) or not np.all(s > 0) \
                or not np.all(np.isfinite(m)) or not np.all(np.isfinite(s)):
            raise InputDataError(f"--mean/--std must be finite, std > 0, with 1 value or {channels} (one per "
                                 f"channel). Received: mean={m.tolist()}, std={s.tolist()}")
        return (0.0 - m) / s * ones, (255.0 - m) / s * ones
    raise InputDataError(f"preprocessing must be one of {', '.join(PREPROCESS)}. "
                         f"Received: {describe_received(preprocess)}")


def _plan_input(model: Any, size: int | None, preprocess: str, mean: Sequence[float] | None,
                std: Sequence[float] | None) -> _InputPlan:
    from .inputs import input_spec_from_model

    if len(getattr(model, "inputs", None) or []) != 1:
        raise ModelNotRunnableError("feature visualization needs a model with one input; accepted: Functional or "
                                    f"Sequential models with a single input. Received: {type(model).__name__} "
                                    f"{getattr(model, 'name', '')!r}")
    spec = input_spec_from_model(model)
    if len(spec.shape) not in (2, 3) or spec.channels is None:
        raise InputDataError("feature visualization optimizes images (H, W, C) or 1-D signals (L, C); accepted: "
                             f"models with such an input. Received: input shape {spec.describe()}")
    fixed = [d for d in spec.spatial if d is not None]
    if size is not None:
        _check(_is_int(size) and 4 <= size <= 4096, "--size", "an integer in 4-4096", size)
        if len(fixed) == len(spec.spatial) and any(d != size for d in fixed):
            raise SelectionError(f"this model's input size is fixed at {spec.describe()}, so the visualization is "
                                 f"made at that size; accepted: --size only for models of variable size. "
                                 f"Received: --size {size}")
    default = DEFAULTS.image_side if spec.is_image else DEFAULTS.signal_length
    spatial = tuple(d if d is not None else (size or default) for d in spec.spatial)
    pp = resolve_preprocess(model, preprocess)
    lo, hi = input_range(pp, spec.channels, mean, std)
    return _InputPlan(tuple(int(d) for d in spatial), int(spec.channels), spec.channels_first, lo, hi, pp)


def _projective_warp(tf: Any, images: Any, transforms: Any, spatial: tuple[int, ...], fill: float) -> Any:
    """Bilinear projective warp of ``images`` (B, H, W, C) by ``transforms`` (B, 8), as TensorFlow's
    ``ImageProjectiveTransformV3`` (output pixel (x, y) reads input ((a0 x + a1 y + a2) / k,
    (b0 x + b1 y + b2) / k), k = c0 x + c1 y + 1; outside the image reads ``fill``), written with
    gathers so that XLA can compile it: that op has no XLA kernel, and the optimisation step must
    compile whole where this CPU has no eager kernel for the model (channels_first without oneDNN).
    """
    height, width = spatial
    batch, channels = tf.shape(images)[0], tf.shape(images)[-1]
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    a = [tf.cast(transforms[:, i], tf.float32)[:, None, None] for i in range(8)]
    k = a[6] * xs + a[7] * ys + 1.0
    sx = (a[0] * xs + a[1] * ys + a[2]) / k
    sy = (a[3] * xs + a[4] * ys + a[5]) / k
    x0, y0 = tf.floor(sx), tf.floor(sy)
    wx, wy = (sx - x0)[..., None], (sy - y0)[..., None]
    # One gather instead of four: each pixel of a fill-padded copy carries its 2x2 neighbourhood in the
    # channels, so the taps (y0, x0) .. (y0 + 1, x0 + 1) are one read (and one scatter in the gradient).
    # A margin of 2 makes every tap outside the image read the fill: corners are clipped to -2 .. size.
    pad = 2
    padded = tf.pad(images, [[0, 0], [pad, pad + 1], [pad, pad + 1], [0, 0]], constant_values=fill)
    hp, wp = height + 2 * pad, width + 2 * pad
    # (stack, not concat: concat's gradient needs compile-time offsets, which XLA lacks inside the step loop)
    quad = tf.stack([padded[:, :hp, :wp], padded[:, :hp, 1:wp + 1], padded[:, 1:hp + 1, :wp],
                     padded[:, 1:hp + 1, 1:wp + 1]], axis=-2)
    xi = tf.cast(tf.clip_by_value(x0, -pad, width), tf.int32) + pad
    yi = tf.cast(tf.clip_by_value(y0, -pad, height), tf.int32) + pad
    taps = tf.gather(tf.reshape(quad, [batch, hp * wp, 4 * channels]), tf.reshape(yi * wp + xi, [batch, -1]),
                     batch_dims=1)
    taps = tf.reshape(taps, [batch, height, width, 4, channels])
    return ((1 - wy) * (1 - wx) * taps[..., 0, :] + (1 - wy) * wx * taps[..., 1, :]
            + wy * (1 - wx) * taps[..., 2, :] + wy * wx * taps[..., 3, :])


# -- reading the layer (pre-activation and output), inside or outside tf.function -------------------------

def _resolve_path(model: Any, layer: str) -> str:
    from .activations import layer_paths

    known = layer_paths(model)
    if layer in known:
        return layer
    by_name = [k for k in known if k.rsplit("/", 1)[-1] == layer]
    if len(by_name) == 1:
        return by_name[0]
    hints = close_matches(layer, known)[:5]
    raise LayerNotFoundError(f"no layer {layer!r} in the model; give a layer path"
                             + (f" such as {', '.join(hints)}" if hints else "") + f". Received: {layer!r}")


class _Stop(Exception):
    """Raised at the target layer during a graph walk: nothing after it needs computing."""

    def __init__(self, pre: Any, post: Any) -> None:
        super().__init__()
        self.pre, self.post = pre, post


def _pre_post(layer: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(pre-activation, output) of one layer call. The pre-activation is the layer with a linear activation
    (the attribute is swapped for this call only) or, for activation layers, their input."""
    keras = kerascompat.import_keras()
    name = type(layer).__name__
    if name in _ACTIVATION_LAYERS:
        return args[0], layer(*args, **kwargs)
    act = getattr(layer, "activation", None)
    linear = keras.activations.linear
    if not callable(act) or act is linear or getattr(act, "__name__", "") == "linear":
        out = layer(*args, **kwargs)
        return out, out
    layer.activation = linear
    try:
        pre = layer(*args, **kwargs)
    finally:
        layer.activation = act
    return pre, act(pre)


class _Tap:
    """``x -> (pre-activation, output)`` of one layer, in the layer's native layout."""

    def __init__(self, model: Any, path: str) -> None:
        from .runtime import find_layer

        keras = kerascompat.import_keras()
        self.model, self.path = model, path
        self.layer = find_layer(model, path)
        self.feed: Any = None
        if "/" not in path and kerascompat.functional_graph(model) is not None:
            try:
                nodes = len(getattr(self.layer, "_inbound_nodes", []) or [])
                if nodes == 1:
                    self.feed = keras.Model(model.inputs, self.layer.input)
            except (ValueError, AttributeError, TypeError):
                self.feed = None
        self.route = "extractor" if self.feed is not None else "graph"

    def __call__(self, x: Any) -> tuple[Any, Any]:
        if self.feed is not None:
            return _pre_post(self.layer, [self.feed(x, training=False)], {})
        try:
            _walk(kerascompat.functional_graph(self.model), x, "", self.path)
        except _Stop as hit:
            return hit.pre, hit.post
        raise ModelNotRunnableError(f"layer {self.path!r} is not called when the model runs, so it has no "
                                    f"activation to maximize; accepted: layers on the path from input to output. "
                                    f"Received: {self.path!r}")


def _walk(functional: Any, inputs: Any, prefix: str, target: str) -> Any:
    inputs = kerascompat.standardize_inputs(functional, inputs)

    def op_fn(op: Any) -> Callable[..., Any]:
        path = f"{prefix}{op.name}"
        if path == target:
            def hit(*args: Any, **kwargs: Any) -> Any:
                raise _Stop(*_pre_post(op, args, kwargs))
            return hit
        inner = kerascompat.functional_graph(op)
        if inner is not None and target.startswith(path + "/"):
            return lambda *a, **k: _walk(inner, a[0] if len(a) == 1 else list(a), path + "/", target)
        result: Callable[..., Any] = op
        return result

    return kerascompat.run_graph(functional, inputs, op_fn)


@dataclass(frozen=True)
class _LayerPlan:
    path: str
    n_maps: int
    spatial: tuple[int, ...]  # of the layer output
    channels_first: bool


def _plan_layer(model: Any, path: str, plan: _InputPlan) -> _LayerPlan:
    from .activations import capture_io
    from .runtime import find_layer

    layer_type = type(find_layer(model, path)).__name__
    if layer_type in _NO_MAPS:
        raise NotAFilterLayerError(f"layer {path!r} ({layer_type}) has no maps to visualize; accepted: layers "
                                   f"with feature maps (convolution, pooling, activation, normalization) or Dense "
                                   f"units. Received: {path!r}")
    probe = plan.to_model(np.full((1, *plan.spatial, plan.channels), 0.5, np.float32)).astype(np.float32)
    got = capture_io(model, probe, outputs=[path], input_channels_first=plan.channels_first)
    out = np.asarray(got.outputs[path])
    if out.ndim < 2 or not np.issubdtype(out.dtype, np.floating):
        raise NotAFilterLayerError(f"layer {path!r} ({layer_type}) has no maps to visualize; accepted: layers "
                                   f"whose output has a channel axis. Received: output shape {tuple(out.shape)}")
    cf = bool(got.channels_first[path]) and out.ndim >= 3
    shape = out.shape[1:]
    n_maps = int(shape[0] if cf else shape[-1])
    spatial = tuple(int(d) for d in (shape[1:] if cf else shape[:-1]))
    return _LayerPlan(path, n_maps, spatial, cf)


def layer_map_count(model: Any, layer: str) -> int:
    """How many maps (channels / units) the layer has; a one-line error for layers without maps."""
    path = _resolve_path(model, layer)
    return _plan_layer(model, path, _plan_input(model, None, "scale01", None, None)).n_maps


# -- the optimization ---------------------------------------------------------------------------------------

def _freq_scale(spatial: tuple[int, ...], decay: float) -> np.ndarray:
    """1/f amplitude scaling of the real-FFT coefficients (Lucid's fft_image), times sqrt(pixels)."""
    if len(spatial) == 2:
        h, w = spatial
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.rfftfreq(w)[None, :]
        freqs = np.sqrt(fx * fx + fy * fy)
        side = max(h, w)
    else:
        freqs = np.abs(np.fft.rfftfreq(spatial[0]))
        side = spatial[0]
    scale = 1.0 / np.maximum(freqs, 1.0 / side) ** decay
    return (scale * math.sqrt(float(np.prod(spatial)))).astype(np.float32)


def _affine(rng: np.random.Generator, spatial: tuple[int, ...], steps: int) -> np.ndarray:
    """(steps, 8) projective transforms (output pixel -> input pixel): jitter, scale, rotation."""
    h, w = spatial
    jitter = max(1, round(0.05 * max(h, w)))
    tx = rng.integers(-jitter, jitter + 1, steps).astype(np.float64)
    ty = rng.integers(-jitter, jitter + 1, steps).astype(np.float64)
    scale = 1.0 + (rng.integers(0, 11, steps) - 5) / 50.0  # Lucid: 0.9 .. 1.1
    theta = np.deg2rad(rng.integers(-10, 11, steps).astype(np.float64))
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    a0, a1 = np.cos(theta) / scale, -np.sin(theta) / scale
    b0, b1 = np.sin(theta) / scale, np.cos(theta) / scale
    a2 = cx - a0 * cx - a1 * cy - tx
    b2 = cy - b0 * cx - b1 * cy - ty
    zeros = np.zeros(steps)
    return np.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1).astype(np.float32)


def _shifts(rng: np.random.Generator, length: int, steps: int) -> np.ndarray:
    jitter = max(1, round(0.05 * length))
    return rng.integers(-jitter, jitter + 1, (steps, 1)).astype(np.float32)


def _scores(tf: Any, t: Any, onehot: Any, layer: _LayerPlan, objective: Objective) -> Any:
    """(B,) objective values of a layer tensor (native layout); row i reads the map of ``onehot[i]``."""
    if layer.channels_first:
        t = tf.experimental.numpy.moveaxis(t, 1, -1)
    t = tf.cast(t, tf.float32)
    if t.shape.rank > 2 and objective.neuron:
        t = t[(slice(None), *(d // 2 for d in layer.spatial))]
    per_map = tf.reduce_sum(t * tf.reshape(onehot, [-1] + [1] * (t.shape.rank - 2) + [layer.n_maps]), axis=-1)
    value = tf.reduce_mean(tf.reshape(per_map, [tf.shape(per_map)[0], -1]), axis=1)
    return -value if objective.negative else value


class _Optimizer:
    """The traced step for one batch shape; images, Adam state and transforms are plain tensors."""

    def __init__(self, tap: _Tap, plan: _InputPlan, layer: _LayerPlan, objective: Objective, lr: float,
                 diversity: float, transforms: bool) -> None:
        self.tf = tf = kerascompat._tf()
        self.tap, self.plan, self.layer, self.objective = tap, plan, layer, objective
        self.lr, self.diversity, self.transforms = float(lr), float(diversity), transforms
        self.scale = tf.constant(_freq_scale(plan.spatial, DEFAULTS.decay_power))
        self.color = tf.constant(_color_matrix()) if plan.channels == 3 else None
        self.lo = tf.constant(plan.lo.astype(np.float32))
        self.span = tf.constant((plan.hi - plan.lo).astype(np.float32))
        self.steps = tf.function(self._steps, reduce_retracing=True)
        kerascompat.set_xla_variant(self.steps, tf.function(partial(self._steps, whole=True), jit_compile=True,
                                                            reduce_retracing=True))
        # The image side of a step (Fourier basis, colour, sigmoid, warp) is many small ops: compiled by
        # XLA it costs a tenth (0.6 + 1.0 ms instead of 5.5 + 8.9 ms forward+backward on a 24x32x32x3
        # batch); the model itself stays on TensorFlow's own kernels, which XLA's CPU convolutions are
        # several times slower than.
        self.image = tf.function(self._image, jit_compile=True)
        self.adam = tf.function(self._adam, jit_compile=True)  # one fused loop
        self.render = tf.function(self._unit_image, reduce_retracing=True)

    # image = sigmoid(colour(irfft(coefficients * 1/f))), channels_last, in (0, 1)
    def _unit_image(self, params: Any) -> Any:
        tf = self.tf
        spectrum = tf.complex(params[..., 0] * self.scale, params[..., 1] * self.scale)
        if len(self.plan.spatial) == 2:
            img = tf.signal.irfft2d(spectrum, fft_length=list(self.plan.spatial)) / 4.0  # (B, C, H, W)
            img = tf.transpose(img, [0, 2, 3, 1])
        else:
            img = tf.signal.irfft(spectrum, fft_length=list(self.plan.spatial)) / 4.0  # (B, C, L)
            img = tf.transpose(img, [0, 2, 1])
        if self.color is not None:
            img = tf.linalg.matvec(self.color, img)  # x = L t per pixel
        return tf.sigmoid(img)

    def _image(self, params: Any, jitter: Any) -> Any:
        u = self._unit_image(params)
        return self._warp(u, jitter) if self.transforms else u

    def _warp(self, u: Any, jitter: Any) -> Any:
        tf = self.tf
        if len(self.plan.spatial) == 2:
            return _projective_warp(tf, u, jitter, self.plan.spatial, fill=0.5)
        length = self.plan.spatial[0]
        idx = tf.clip_by_value(tf.range(length)[None, :] + tf.cast(jitter, tf.int32), 0, length - 1)
        return tf.gather(u, idx, batch_dims=1)

    def _to_model(self, u: Any) -> Any:
        x = self.lo + self.span * (self.tf.reverse(u, axis=[-1]) if self.plan.bgr else u)
        if self.plan.channels_first:
            x = self.tf.experimental.numpy.moveaxis(x, -1, 1)
        return x

    def scores(self, t: Any, onehot: Any) -> Any:
        return _scores(self.tf, t, onehot, self.layer, self.objective)

    def _similarity(self, t: Any, same: Any) -> Any:
        tf = self.tf
        if self.layer.channels_first:
            t = tf.experimental.numpy.moveaxis(t, 1, -1)
        flat = tf.reshape(tf.cast(t, tf.float32), [tf.shape(t)[0], -1, self.layer.n_maps])
        grams = tf.matmul(flat, flat, transpose_a=True)
        grams = tf.math.l2_normalize(tf.reshape(grams, [tf.shape(t)[0], -1]), axis=1, epsilon=1e-10)
        sims = tf.matmul(grams, grams, transpose_b=True) * same
        return tf.reduce_sum(sims) / tf.cast(tf.shape(t)[0], tf.float32)

    def _step(self, params: Any, m: Any, v: Any, t: Any, jitter: Any, onehot: Any, same: Any,
              use_pre: Any, whole: bool = False) -> tuple[Any, Any, Any, Any]:
        tf = self.tf
        with tf.GradientTape() as tape:
            tape.watch(params)
            # Where the whole step is XLA-compiled (the fallback of a CPU without some eager kernel), a
            # nested compiled function would only hide static shapes from it: the plain version is traced.
            u = self._image(params, jitter) if whole else self.image(params, jitter)
            pre, post = self.tap(self._to_model(u))
            pre_s, post_s = self.scores(pre, onehot), self.scores(post, onehot)
            reported = pre_s if self.objective.negative else post_s
            target = tf.where(use_pre, pre_s, reported)
            loss = -tf.reduce_sum(target)
            if self.diversity > 0:
                chosen = tf.cond(use_pre, lambda: pre, lambda: pre if self.objective.negative else post)
                weight = tf.stop_gradient(tf.reduce_mean(tf.abs(target))) + 1e-6
                loss += self.diversity * weight * self._similarity(chosen, same)
        params, m, v = (self._adam if whole else self.adam)(params, m, v, tape.gradient(loss, params), t)
        return params, m, v, reported

    def _adam(self, params: Any, m: Any, v: Any, grad: Any, t: Any) -> tuple[Any, Any, Any]:
        tf = self.tf
        b1, b2 = 0.9, 0.999
        m = b1 * m + (1.0 - b1) * grad
        v = b2 * v + (1.0 - b2) * grad * grad
        m_hat = m / (1.0 - tf.pow(b1, t))
        v_hat = v / (1.0 - tf.pow(b2, t))
        return params - self.lr * m_hat / (tf.sqrt(v_hat) + 1e-8), m, v

    def _steps(self, params: Any, m: Any, v: Any, first: Any, jitters: Any, onehot: Any, same: Any,
               warm: Any, whole: bool = False) -> tuple[Any, Any, Any, Any]:
        """``len(jitters)`` steps in one call (a graph loop): on a small model the Python and dispatch
        overhead of one call per step costs more than the step itself. ``first`` is the 0-based index
        of the first step; steps before ``warm`` read the pre-activation."""
        tf = self.tf
        n = tf.shape(jitters)[0]
        trace = tf.TensorArray(tf.float32, size=n)
        for k in tf.range(n):
            s = first + k
            params, m, v, score = self._step(params, m, v, tf.cast(s + 1, tf.float32), jitters[k], onehot, same,
                                             s < warm, whole)
            trace = trace.write(k, tf.cast(score, tf.float32))
        return params, m, v, trace.stack()


# -- results ------------------------------------------------------------------------------------------------

@dataclass
class Reference:
    """The best objective values reached by natural inputs: whole images and random crops of them."""

    best_image: np.ndarray  # (M,) per visualized image: best over the natural images
    best_crop: np.ndarray  # (M,) best over the random crops (nan without crops)
    n_images: int
    n_crops: int
    sources: list[str] = field(default_factory=list)

    @property
    def best(self) -> np.ndarray:
        return np.fmax(self.best_image, self.best_crop)


@dataclass
class Visualization:
    """Images that maximize the objective, with the numbers that say how well they do.

    ``image`` is what the model consumes (its input layout, no batch axis, one per visualized image on
    the leading axis): ``model(image[i][None])`` gives ``activation[i]`` for ``map_index[i]``.
    """

    layer: str
    objective: str
    map_index: np.ndarray  # (M,) int
    image: np.ndarray  # (M, *model input shape) float32
    channel_range: np.ndarray  # (C, 2) per-channel [lo, hi] of the model input
    activation: np.ndarray  # (M,) objective value of each final image, measured without transforms
    activation_trace: np.ndarray  # (steps, M) objective value at each step (on the transformed image)
    seed: int
    steps: int
    lr: float
    diversity: float
    preprocess: str
    layout: str  # "HWC", "CHW", "LC" or "CL"
    warmup: int
    seconds: float = 0.0
    route: str = ""
    reference: Reference | None = None

    @property
    def input_range(self) -> np.ndarray:
        return np.array([self.channel_range[:, 0].min(), self.channel_range[:, 1].max()], np.float32)

    @property
    def channels_first(self) -> bool:
        return self.layout.startswith("C")

    def unit_images(self) -> np.ndarray:
        """The images in [0, 1], channels_last (for drawing)."""
        x = np.moveaxis(self.image, 1, -1) if self.channels_first else self.image
        lo, hi = self.channel_range[:, 0], self.channel_range[:, 1]
        u = np.clip((x - lo) / np.where(hi != lo, hi - lo, 1.0), 0.0, 1.0)
        return u[..., ::-1] if is_bgr(self.preprocess) else u  # caffe models read BGR: draw RGB

    def ratios(self) -> np.ndarray | None:
        """activation / best natural (image or crop) value, per image; nan where either is <= 0 (a ratio of
        a negative activation, e.g. "-1.0x", would read as a comparison and mean none)."""
        if self.reference is None:
            return None
        best = self.reference.best
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((best > 0) & (self.activation > 0), self.activation / best, np.nan)

    def to_arrays(self) -> dict[str, Any]:
        arrays: dict[str, Any] = {
            "image": self.image.astype(np.float32), "input_range": self.input_range,
            "channel_range": self.channel_range.astype(np.float32),
            "activation": self.activation.astype(np.float64),
            "activation_trace": self.activation_trace.astype(np.float64),
            "map_index": self.map_index.astype(np.int64), "seed": np.int64(self.seed),
            "steps": np.int64(self.steps), "lr": np.float64(self.lr), "diversity": np.float64(self.diversity),
            "warmup": np.int64(self.warmup), "layer": np.str_(self.layer), "objective": np.str_(self.objective),
            "preprocess": np.str_(self.preprocess), "layout": np.str_(self.layout),
        }
        if self.reference is not None:
            arrays |= {"reference_best_image": self.reference.best_image.astype(np.float64),
                       "reference_best_crop": self.reference.best_crop.astype(np.float64),
                       "reference_counts": np.array([self.reference.n_images, self.reference.n_crops], np.int64)}
        return arrays

    @classmethod
    def from_arrays(cls, a: Any) -> Visualization:
        ref = None
        if "reference_best_image" in a:
            counts = np.asarray(a["reference_counts"])
            ref = Reference(np.asarray(a["reference_best_image"]), np.asarray(a["reference_best_crop"]),
                            int(counts[0]), int(counts[1]))
        return cls(layer=str(a["layer"]), objective=str(a["objective"]), map_index=np.asarray(a["map_index"]),
                   image=np.asarray(a["image"]), channel_range=np.asarray(a["channel_range"]),
                   activation=np.asarray(a["activation"]), activation_trace=np.asarray(a["activation_trace"]),
                   seed=int(a["seed"]), steps=int(a["steps"]), lr=float(a["lr"]), diversity=float(a["diversity"]),
                   preprocess=str(a["preprocess"]), layout=str(a["layout"]), warmup=int(a["warmup"]), reference=ref)


def save_npz(vis: Visualization, path: str | Path) -> Path:
    """Write ``vis`` as an NPZ (keys: :meth:`Visualization.to_arrays`); returns the path written."""
    from .outputs import write_npz

    return write_npz(path, vis.to_arrays(), compressed=True)


def load_npz(path: str | Path) -> Visualization:
    with np.load(path, allow_pickle=False) as data:
        return Visualization.from_arrays({k: data[k] for k in data.files})


# -- measuring (final images, natural references) -------------------------------------------------------------

def map_scores(model: Any, layer: str, x: np.ndarray, maps: Sequence[int] | np.ndarray,
               objective: str | Objective = Objective.CHANNEL, *, chunk: int = 64) -> np.ndarray:
    """Objective values ``(len(x), len(maps))`` of inputs ``x`` (model layout, batch axis): entry (i, k) is
    the objective of map ``maps[k]`` for input i, measured exactly as :func:`visualize` reports it."""
    obj = _objective(objective)
    path = _resolve_path(model, layer)
    from .inputs import input_spec_from_model

    spec = input_spec_from_model(model)
    spatial = tuple(int(d) for d in (x.shape[2:] if spec.channels_first else x.shape[1:-1]))
    channels = int(x.shape[1] if spec.channels_first else x.shape[-1])
    plan = _InputPlan(spatial, channels, spec.channels_first, np.zeros(channels, np.float32),
                      np.ones(channels, np.float32), "none")
    lplan = _plan_layer(model, path, plan)
    return _measure(_Tap(model, path), lplan, obj, np.asarray(x, np.float32), np.asarray(maps), chunk)


def _eager_chunk(tap: _Tap, x: np.ndarray, cap: int) -> int:
    """Inputs per eager measuring pass (:func:`inspector.kerascompat.eager_batch`): the pass runs the
    layer's feed model, or the whole model when the layer is reached by walking the graph."""
    return kerascompat.eager_batch(tap.feed if tap.feed is not None else tap.model, x.shape, cap)


def _measure(tap: _Tap, layer: _LayerPlan, objective: Objective, x: np.ndarray, maps: np.ndarray,
             chunk: int = 64) -> np.ndarray:
    tf = kerascompat._tf()
    maps = np.asarray(maps, np.int64)
    chunk = _eager_chunk(tap, x, chunk)
    out = np.empty((len(x), len(maps)), np.float64)

    def values(xb: Any) -> Any:
        pre, post = tap(xb)
        t = pre if objective.negative else post
        if layer.channels_first:
            t = tf.experimental.numpy.moveaxis(t, 1, -1)
        t = tf.gather(tf.cast(t, tf.float32), maps, axis=-1)
        if t.shape.rank > 2 and objective.neuron:
            t = t[(slice(None), *(d // 2 for d in layer.spatial))]
        v = tf.reduce_mean(tf.reshape(tf.experimental.numpy.moveaxis(t, -1, 1), [tf.shape(t)[0], len(maps), -1]),
                           axis=-1)
        return -v if objective.negative else v

    for start in range(0, len(x), chunk):
        xb = tf.constant(x[start:start + chunk])
        out[start:start + chunk] = np.asarray(kerascompat.call(values, xb), np.float64)
    return out


def _measure_own(tap: _Tap, layer: _LayerPlan, objective: Objective, x: np.ndarray, ids: np.ndarray,
                 chunk: int = 64) -> np.ndarray:
    """The objective of image i for its own map ``ids[i]`` (what :func:`visualize` reports)."""
    tf = kerascompat._tf()
    eye = np.eye(layer.n_maps, dtype=np.float32)
    out = np.empty(len(x), np.float64)
    chunk = _eager_chunk(tap, x, chunk)

    def values(xb: Any, onehot: Any) -> Any:
        pre, post = tap(xb)
        return _scores(tf, pre if objective.negative else post, onehot, layer, objective)

    for start in range(0, len(x), chunk):
        out[start:start + chunk] = np.asarray(kerascompat.call(
            values, tf.constant(x[start:start + chunk]), tf.constant(eye[ids[start:start + chunk]])))
    return out


def bundled_reference_files() -> list[Path]:
    """The natural inputs that come with the tool: the sample inputs shipped in ``sample_models/``
    (present in a source checkout) and the photographs of :mod:`inspector.photos`."""
    from .photos import photo_paths

    folder = Path(__file__).resolve().parent.parent / "sample_models"
    samples = sorted(p for p in folder.glob("sample_input_*") if p.suffix.lower() in (*_IMAGE_SUFFIXES, ".npy"))
    return samples + photo_paths()


def load_references(sources: Sequence[str | Path] | str | Path | None, model: Any, *, size: int | None = None,
                    preprocess: str = "auto", mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None) -> tuple[np.ndarray, list[str]]:
    """Natural inputs fitted to the model at the visualization's size and range (model layout, batch axis).

    ``sources``: a folder (its images and ``.npy`` arrays), a list of files, or None for the bundled
    sample inputs (those that do not fit the model are skipped; given files that do not fit are errors).
    Images get the visualization's preprocessing; ``.npy`` arrays are taken as already preprocessed.
    """
    from .inputs import InputSpec, load_input

    plan = _plan_input(model, size, preprocess, mean, std)
    spec = InputSpec(plan.model_shape, plan.channels_first)
    strict = sources is not None
    if sources is None:
        files = bundled_reference_files()
    elif isinstance(sources, (str, Path)):
        folder = Path(sources)
        if not folder.is_dir():
            raise InputDataError(f"--reference must be a folder of images or .npy arrays; accepted: an existing "
                                 f"folder. Received: {describe_received(str(sources))}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (*_IMAGE_SUFFIXES, ".npy"))
        if not files:
            raise InputDataError(f"the --reference folder has no images or .npy arrays; accepted: PNG/JPEG images "
                                 f"and .npy arrays. Received: {describe_received(str(sources))}")
    else:
        files = [Path(s) for s in sources]
    arrays: list[np.ndarray] = []
    names: list[str] = []
    for f in files:
        is_array = f.suffix.lower() == ".npy"
        if is_array or spec.is_image:
            try:
                # Photographs are centre-cropped to the model's aspect ratio: stretched ones are not natural.
                x = load_input(f, spec, preprocess="auto" if is_array else plan.preprocess, mean=mean, std=std,
                               fit="crop")
            except InputDataError:
                if strict:
                    raise
                continue
            arrays.append(x)
            names.append(f.name)
    if not arrays:
        return np.zeros((0, *plan.model_shape), np.float32), []
    return np.concatenate(arrays).astype(np.float32), names


def random_crops(x: np.ndarray, n: int, *, channels_first: bool = False, seed: int = 0,
                 min_fraction: float = 0.3) -> np.ndarray:
    """``n`` random crops of the inputs ``x`` (batch axis first), each resized back to the input size:
    a square-ish window of 30-100 % of the side at a random place (bilinear)."""
    rng = np.random.default_rng((seed, 7919))
    if n <= 0 or len(x) == 0:
        return x[:0]
    last = np.moveaxis(x, 1, -1) if channels_first else x
    which = rng.integers(0, len(x), n)
    frac = rng.uniform(min_fraction, 1.0, n)
    y0, x0 = rng.uniform(0, 1, n) * (1 - frac), rng.uniform(0, 1, n) * (1 - frac)
    if last.ndim == 4:
        tf = kerascompat._tf()
        boxes = np.stack([y0, x0, y0 + frac, x0 + frac], axis=1).astype(np.float32)
        crops = np.asarray(tf.image.crop_and_resize(last.astype(np.float32), boxes, which.astype(np.int32),
                                                    last.shape[1:3], method="bilinear"))
    else:
        length = last.shape[1]
        grid = np.linspace(0.0, 1.0, length)
        crops = np.empty((n, *last.shape[1:]), np.float32)
        src = np.arange(length, dtype=np.float64)
        for i in range(n):
            pos = (x0[i] + frac[i] * grid) * (length - 1)
            for c in range(last.shape[2]):
                crops[i, :, c] = np.interp(pos, src, last[which[i], :, c])
    return (np.moveaxis(crops, -1, 1) if channels_first else crops).astype(np.float32)


def reference_scores(model: Any, layer: str, maps: Sequence[int] | np.ndarray, natural: np.ndarray, *,
                     objective: str | Objective = Objective.CHANNEL, crops: int = DEFAULTS.crops, seed: int = 0,
                     sources: Sequence[str] = ()) -> Reference:
    """Best objective values of ``maps`` over natural inputs and ``crops`` random crops of them."""
    from .inputs import model_channels_first

    maps = np.asarray(maps, np.int64)
    if len(natural) == 0:
        nan = np.full(len(maps), np.nan)
        return Reference(nan, nan.copy(), 0, 0, list(sources))
    whole = map_scores(model, layer, natural, maps, objective).max(axis=0)
    best_crop = np.full(len(maps), np.nan)
    if crops > 0:
        cut = random_crops(natural, crops, channels_first=model_channels_first(model), seed=seed)
        best_crop = map_scores(model, layer, cut, maps, objective).max(axis=0)
    return Reference(whole, best_crop, len(natural), crops, list(sources))


# -- the entry point ----------------------------------------------------------------------------------------

def visualize(model: Any, layer: str, maps: int | Sequence[int], *, objective: str | Objective = Objective.CHANNEL,
              steps: int = DEFAULTS.steps, seed: int = DEFAULTS.seed, size: int | None = None,
              batch: int = DEFAULTS.batch, lr: float = DEFAULTS.lr, diversity: float = 0.0,
              images_per_map: int | None = None, preprocess: str = "auto", mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None, transforms: bool = True, warmup: int | None = None,
              reference: np.ndarray | None = None, reference_sources: Sequence[str] = (),
              crops: int = DEFAULTS.crops, steps_per_call: int | None = None,
              progress: Callable[[int, int], bool | None] | None = None) -> Visualization:
    """Optimize one image per map (``images_per_map`` with ``diversity``) of ``layer`` in ``model`` (a Keras 3
    Functional or Sequential model, e.g. from :func:`inspector.runtime.load_runnable`).

    ``batch`` images share one forward/backward pass. ``warmup`` (default ``min(16, steps // 4)``) steps read
    the pre-activation (module doc). ``reference`` (natural inputs, model layout, from
    :func:`load_references`) adds the best natural values and those of ``crops`` random crops.
    ``progress(done, total)`` is called after every call of the step loop; returning ``False`` stops early
    (the result then holds the steps done). ``steps_per_call`` steps run in one graph call (default: as
    many as take about 0.3 s, at most 32); the images do not depend on it.
    """
    obj = _objective(objective)
    _check(_is_int(steps) and steps >= 1, "--steps", "a positive integer, e.g. 256", steps)
    _check(_is_int(seed) and 0 <= seed < 2**63, "--seed", "an integer >= 0", seed)
    _check(_is_int(batch) and batch >= 1, "--batch", "a positive integer (images per pass), e.g. 64", batch)
    _check(_finite(lr) and lr > 0, "--lr", "a positive number, e.g. 0.05", lr)
    _check(_finite(diversity) and diversity >= 0, "--diversity", "a number >= 0, e.g. 1.0", diversity)
    _check(_is_int(crops) and crops >= 0, "--crops", "an integer >= 0", crops)
    _check(steps_per_call is None or (_is_int(steps_per_call) and steps_per_call >= 1), "steps_per_call",
           "a positive integer or None", steps_per_call)
    if images_per_map is None:
        images_per_map = 4 if diversity > 0 else 1
    _check(_is_int(images_per_map) and images_per_map >= 1, "--images", "a positive integer", images_per_map)
    if diversity > 0 and images_per_map < 2:
        raise SelectionError(f"--diversity pushes several images of one map apart, so it needs --images >= 2. "
                             f"Received: --images {images_per_map}")
    warm = min(16, steps // 4) if warmup is None else warmup
    _check(_is_int(warm) and 0 <= warm <= steps, "warmup", f"an integer in 0-{steps}", warm)

    tf = kerascompat._tf()
    path = _resolve_path(model, layer)
    plan = _plan_input(model, size, preprocess, mean, std)
    lplan = _plan_layer(model, path, plan)
    map_list: list[Any] = [maps] if isinstance(maps, (int, np.integer)) else list(maps)
    if not map_list:
        raise SelectionError(f"give at least one map of layer {path!r}; accepted: 0-{lplan.n_maps - 1}. Received: []")
    for j in map_list:
        if not _is_int(j) or not 0 <= int(j) < lplan.n_maps:
            raise SelectionError(f"map {j} is out of range for layer {path!r}; valid maps are 0-{lplan.n_maps - 1} "
                                 f"({lplan.n_maps} maps). Received: {describe_received(j)}")
    images = [(int(j), k) for j in map_list for k in range(images_per_map)]
    maps_per_pass = max(1, batch // images_per_map)

    tap = _Tap(model, path)
    opt = _Optimizer(tap, plan, lplan, obj, lr, diversity, transforms)
    n_freq = plan.spatial[-1] // 2 + 1
    pshape = (plan.channels, *plan.spatial[:-1], n_freq, 2)
    finals: list[np.ndarray] = []
    traces: list[np.ndarray] = []
    done_steps = steps
    stop = False
    start_time = time.perf_counter()
    for first in range(0, len(map_list), maps_per_pass):
        chunk = images[first * images_per_map:(first + maps_per_pass) * images_per_map]
        rngs = [np.random.default_rng((seed, j, k)) for j, k in chunk]
        params0 = np.stack([r.normal(0.0, DEFAULTS.init_std, pshape) for r in rngs]).astype(np.float32)
        if len(plan.spatial) == 2:
            jit = np.stack([_affine(r, plan.spatial, steps) for r in rngs], axis=1)  # (steps, B, 8)
        else:
            jit = np.stack([_shifts(r, plan.spatial[0], steps) for r in rngs], axis=1)  # (steps, B, 1)
        onehot = tf.constant(np.eye(lplan.n_maps, dtype=np.float32)[[j for j, _ in chunk]])
        ids = np.array([j for j, _ in chunk])
        same = tf.constant(((ids[:, None] == ids[None, :]) & ~np.eye(len(chunk), dtype=bool)).astype(np.float32))
        params = tf.constant(params0)
        m, v = tf.zeros_like(params), tf.zeros_like(params)
        trace = np.zeros((steps, len(chunk)), np.float64)
        s, per_call = 0, 1 if steps_per_call is None else steps_per_call
        while s < steps:
            k = min(per_call, steps - s)
            tick = time.perf_counter()
            params, m, v, scores = kerascompat.call(
                opt.steps, params, m, v, tf.constant(s, tf.int32), tf.constant(jit[s:s + k]), onehot, same,
                tf.constant(warm, tf.int32))
            trace[s:s + k] = np.asarray(scores)
            s += k
            if steps_per_call is None and s > 1:  # calls of about 0.3 s: cheap steps batched, progress still lively
                per_call = int(np.clip(0.3 * k / max(time.perf_counter() - tick, 1e-6), 1, 32))
            if progress is not None:
                total = steps * math.ceil(len(map_list) / maps_per_pass)
                if progress(first // maps_per_pass * steps + s, total) is False:
                    done_steps, stop = s, True
                    break
        finals.append(np.asarray(opt.render(params)))
        traces.append(trace[:done_steps])
        if stop:
            break
    seconds = time.perf_counter() - start_time
    n_done = sum(len(f) for f in finals)
    u = np.concatenate(finals)
    image = plan.to_model(u).astype(np.float32)
    ids = np.array([j for j, _ in images[:n_done]], np.int64)
    activation = _measure_own(tap, lplan, obj, image, ids)
    trace_all = np.concatenate([t[:done_steps] for t in traces], axis=1)
    vis = Visualization(layer=path, objective=str(obj), map_index=ids, image=image,
                        channel_range=np.stack([plan.lo, plan.hi], axis=1).astype(np.float32),
                        activation=activation, activation_trace=trace_all, seed=int(seed), steps=done_steps,
                        lr=float(lr), diversity=float(diversity), preprocess=plan.preprocess, layout=plan.layout,
                        warmup=warm, seconds=seconds, route=tap.route)
    if reference is not None:
        vis.reference = reference_scores(model, path, ids, np.asarray(reference, np.float32), objective=obj,
                                         crops=crops, seed=seed, sources=reference_sources)
    return vis
