"""Model inputs from image files, ``.npy`` arrays or a built-in sample, fitted to the model's input.

Preprocessing is explicit (docs/decomposition.md, "Inputs"); only ``auto`` looks at the model:

* ``scale01``: pixel values ``v / 255`` → [0, 1]
* ``scale11``: ``v / 127.5 - 1`` → [-1, 1]
* ``meanstd``: ``(v - mean) / std`` per channel, on the 0..255 values (give ``mean`` and ``std``)
* ``none``: values as stored (0..255 for images, as-is for arrays)
* ``auto`` (default): for images, photographs and the built-in sample, ``none`` (raw 0..255) when the
  model begins with a ``Rescaling`` or ``Normalization`` layer (it preprocesses itself), else ``scale01``;
  ``none`` for ``.npy`` arrays (arrays are assumed to be preprocessed already).
* the Keras applications' modes (``keras.applications.imagenet_utils.preprocess_input(x, mode=...)``,
  same float32 results), for 3-channel RGB inputs on 0..255:
  ``caffe``: RGB → BGR, minus the ImageNet mean ``[103.939, 116.779, 123.68]`` (BGR order), no scaling
  (VGG16/19, ResNet50); ``torch``: ``v / 255``, minus ``[0.485, 0.456, 0.406]``, divided by
  ``[0.229, 0.224, 0.225]`` (DenseNet); ``tf``: ``v / 127.5 - 1`` (MobileNet, Inception, Xception; the
  same numbers as ``scale11``).

Fitting: images are converted to 1 (grayscale), 3 (RGB) or 4 (RGBA) channels and brought to the
model's height and width when those are fixed (``fit``, bilinear): ``stretch`` (default) resizes each
side independently (the aspect ratio changes); ``crop`` cuts the largest centred box with the model's
aspect ratio, then resizes it; ``pad`` resizes the whole image to fit inside (aspect kept) and centres it
on zeros (black pixels, value 0 *before* preprocessing; the extra row/column goes after). With only one
side fixed, ``crop`` and ``pad`` scale the image so that side fits, keeping the aspect ratio. ``fit``
concerns image files only: arrays must already have the input shape and ``sample`` is made at it.
channels_first models get ``(C, H, W)``.
Arrays must already have the input shape, with or without a batch axis; a channel axis of size 1
may be missing. The result always has a batch axis and dtype float32.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputDataError, missing_dependency

__all__ = ["CAFFE_MEAN_BGR", "FIT_CHOICES", "PREPROCESS_CHOICES", "TORCH_MEAN", "TORCH_STD", "Fit", "InputSpec",
           "Preprocess", "fit_image", "input_spec_from_model", "load_input", "model_channels_first", "sample_image"]


class Preprocess(StrEnum):
    """How input values are scaled; see the module doc. The CLI and the dashboard offer exactly these."""

    AUTO = "auto"
    SCALE01 = "scale01"
    SCALE11 = "scale11"
    MEANSTD = "meanstd"
    NONE = "none"
    CAFFE = "caffe"
    TORCH = "torch"
    TF = "tf"


class Fit(StrEnum):
    """How an image whose aspect ratio differs from the model input's is brought to its size."""

    STRETCH = "stretch"
    CROP = "crop"
    PAD = "pad"


PREPROCESS_CHOICES = tuple(str(p) for p in Preprocess)
FIT_CHOICES = tuple(str(f) for f in Fit)
#: The Keras applications' ImageNet constants (keras.applications.imagenet_utils).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_DEFAULT_SIDE = 64  # sample size for models whose spatial size is not fixed


@dataclass(frozen=True)
class InputSpec:
    """The model input shape without the batch axis (``None`` = any size) and its layout."""

    shape: tuple[int | None, ...]
    channels_first: bool = False
    #: The model begins with Rescaling/Normalization: ``auto`` feeds images raw (0..255).
    builtin_preprocessing: bool = False

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def channels(self) -> int | None:
        if not self.shape:
            return None
        return self.shape[0] if self.channels_first else self.shape[-1]

    @property
    def spatial(self) -> tuple[int | None, ...]:
        return self.shape[1:] if self.channels_first else self.shape[:-1]

    def describe(self) -> str:
        dims = ", ".join("any" if d is None else str(d) for d in self.shape)
        return f"({dims})" + (" channels_first" if self.channels_first else "")


def _leaf_layers(model: Any) -> Iterator[Any]:
    """The layers of a Keras model in order, nested Functional models flattened."""
    from .kerascompat import functional_graph

    for layer in getattr(model, "layers", []):
        if functional_graph(layer) is not None:
            yield from _leaf_layers(layer)
        else:
            yield layer


def model_channels_first(model: Any) -> bool:
    """Whether a Keras model takes channels_first inputs, judged by its first layer that declares a
    ``data_format`` (channels_last when none does, as Keras defaults)."""
    for layer in _leaf_layers(model):
        fmt = getattr(layer, "data_format", None)
        if fmt in ("channels_first", "channels_last"):
            return fmt == "channels_first"
    return False


def has_builtin_preprocessing(model: Any) -> bool:
    """Whether the model's first layer (after the input) is ``Rescaling`` or ``Normalization``: then it
    takes raw pixel values, and ``auto`` preprocessing is ``none``."""
    for layer in _leaf_layers(model):
        name = type(layer).__name__
        if name == "InputLayer":
            continue
        return name in ("Rescaling", "Normalization")
    return False


def auto_preprocess(preprocess: str, *, builtin: bool, array: bool = False) -> str:
    """What ``auto`` means for an input: ``none`` for arrays and for models that preprocess themselves,
    ``scale01`` otherwise; any other value is returned as it is."""
    if preprocess != "auto":
        return preprocess
    return "none" if array or builtin else "scale01"


def input_spec_from_model(model: object) -> InputSpec:
    """The input spec of a Keras model: its (first) input shape, layout from its first conv-like layer."""
    shape = model.inputs[0].shape  # type: ignore[attr-defined]
    return InputSpec(tuple(None if d is None else int(d) for d in shape[1:]), model_channels_first(model),
                     has_builtin_preprocessing(model))


def sample_image(height: int, width: int, channels: int) -> np.ndarray:
    """A deterministic test picture, values 0..255: diagonal colour gradients under a soft checkerboard.

    Edges in several orientations and smooth ramps give every typical first-layer filter something
    to respond to; no randomness, so outputs are reproducible anywhere.
    """
    yy, xx = np.meshgrid(np.linspace(0.0, 1.0, height), np.linspace(0.0, 1.0, width), indexing="ij")
    checker = ((np.floor(yy * 4) + np.floor(xx * 4)) % 2) * 0.35
    ring = 0.3 * (np.hypot(yy - 0.5, xx - 0.5) < 0.3)
    bases = [xx, yy, 1.0 - (xx + yy) / 2.0, (xx * yy)]
    planes = [np.clip(0.65 * bases[c % 4] + checker + ring * (c % 2), 0.0, 1.0) for c in range(channels)]
    return (np.stack(planes, axis=-1) * 255.0).astype(np.float32)


def _preprocess(x: np.ndarray, how: str, mean: Sequence[float] | None, std: Sequence[float] | None,
                channel_axis: int) -> np.ndarray:
    if how == "none":
        return x
    if how == "scale01":
        return x / 255.0
    if how in ("scale11", "tf"):
        return x / 127.5 - 1.0
    if how in ("caffe", "torch"):
        return _imagenet_preset(x, how, channel_axis)
    if how == "meanstd":
        if mean is None or std is None:
            raise InputDataError(
                "preprocessing 'meanstd' needs --mean and --std (one value, or one per channel). "
                f"Received: mean={mean!r}, std={std!r}")
        shape = [1] * x.ndim
        m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        # A zero std divides by zero and a negative one flips the image: both give silent garbage (NaN/Inf
        # or inverted inputs) instead of an error, so they are refused here.
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            raise InputDataError(f"--std values must be positive numbers (one, or one per channel). "
                                 f"Received: std={[float(v) for v in s.ravel()]}")
        if not np.all(np.isfinite(m)):
            raise InputDataError(f"--mean values must be finite numbers (one, or one per channel). "
                                 f"Received: mean={[float(v) for v in m.ravel()]}")
        if m.size > 1 or s.size > 1:
            shape[channel_axis] = -1
        try:
            return (x - m.reshape(shape)) / s.reshape(shape)
        except ValueError as exc:
            raise InputDataError(
                f"mean/std must have 1 value or one per input channel ({x.shape[channel_axis]}). "
                f"Received: mean={list(m)}, std={list(s)}") from exc
    raise InputDataError(f"preprocessing must be one of {', '.join(PREPROCESS_CHOICES)}. Received: {how!r}")


def _imagenet_preset(x: np.ndarray, how: str, channel_axis: int) -> np.ndarray:
    """``caffe`` / ``torch`` exactly as ``keras.applications.imagenet_utils.preprocess_input`` (float32)."""
    if x.ndim < 2 or x.shape[channel_axis] != 3:
        raise InputDataError(
            f"preprocessing {how!r} is for 3-channel RGB inputs (the ImageNet mean per channel); use scale01, "
            f"scale11, meanstd or none. Received: {x.shape[channel_axis] if x.ndim else 0} input channels")
    shape = [1] * x.ndim
    shape[channel_axis] = 3
    x = x.astype(np.float32)
    if how == "caffe":
        return np.flip(x, axis=channel_axis) - np.asarray(CAFFE_MEAN_BGR, np.float32).reshape(shape)
    return (x / np.float32(255.0) - np.asarray(TORCH_MEAN, np.float32).reshape(shape)) \
        / np.asarray(TORCH_STD, np.float32).reshape(shape)


def _check_choice(value: object, choices: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputDataError(f"{what} must be one of {', '.join(choices)}. Received: {value!r}")
    return value


def fit_image(img: Any, height: int | None, width: int | None, fit: str = "stretch") -> Any:
    """A PIL image brought to ``height`` × ``width`` (``None``: that side is free) by ``fit``; see the
    module doc. Bilinear resampling; ``pad`` fills with zeros (black)."""
    from PIL import Image

    fit = _check_choice(fit, FIT_CHOICES, "fit")
    bilinear = Image.Resampling.BILINEAR
    if height is None and width is None:
        return img
    if fit == "stretch" or height is None or width is None:
        if fit == "stretch":
            size = (width or img.width, height or img.height)
        else:  # one side fixed: scale to it, keeping the aspect ratio
            scale = height / img.height if height is not None else (width or img.width) / img.width
            size = (width or max(1, round(img.width * scale)), height or max(1, round(img.height * scale)))
        return img if size == img.size else img.resize(size, bilinear)
    if fit == "crop":
        # The largest centred box with the target aspect (whole pixels, the odd one left over goes after),
        # cut first so that the resampling filter sees only what is kept.
        if img.width * height > width * img.height:  # wider than the target: cut left and right
            keep = min(img.width, max(1, round(img.height * width / height)))
            left = (img.width - keep) // 2
            img = img.crop((left, 0, left + keep, img.height))
        else:
            keep = min(img.height, max(1, round(img.width * height / width)))
            top = (img.height - keep) // 2
            img = img.crop((0, top, img.width, top + keep))
        return img if img.size == (width, height) else img.resize((width, height), bilinear)
    scale = min(width / img.width, height / img.height)
    inner = (min(width, max(1, round(img.width * scale))), min(height, max(1, round(img.height * scale))))
    resized = img if inner == img.size else img.resize(inner, bilinear)
    if inner == (width, height):
        return resized
    canvas = Image.new(img.mode, (width, height), 0)  # zeros in every band: black (transparent for RGBA)
    canvas.paste(resized, ((width - inner[0]) // 2, (height - inner[1]) // 2))
    return canvas


def _read_image(path: Path, spec: InputSpec, fit: str = "stretch") -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - pillow is in the [run] extra
        raise missing_dependency("PIL", "run", "reading image inputs") from exc
    try:
        with Image.open(path) as opened:
            channels = spec.channels or 3
            mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
            if mode is None:
                raise InputDataError(
                    f"an image can feed a model with 1, 3 or 4 input channels, this model has {channels}; "
                    f"give a .npy array instead. Received: {path}")
            h, w = [*spec.spatial, None, None][:2]
            img = fit_image(opened.convert(mode), h, w, fit)
            arr = np.asarray(img, dtype=np.float32)
    except InputDataError:  # our own message (a ValueError) must not be re-wrapped by the clause below
        raise
    # DecompressionBombError derives from Exception, not OSError: a huge image must still be one line.
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise InputDataError(
            f"cannot read the image ({type(exc).__name__}: {' '.join(str(exc).split())[:100]}); accepted: "
            f"PNG/JPEG image files, .npy arrays or 'sample'. Received: {path}") from exc
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr  # (H, W, C) channels_last, 0..255


def _fit_array(arr: np.ndarray, spec: InputSpec, source: str) -> np.ndarray:
    want = spec.shape

    def fits(a: np.ndarray) -> bool:
        return a.ndim == len(want) + 1 and all(d is None or d == g for d, g in zip(want, a.shape[1:], strict=True))

    candidates = [arr[None], arr]
    if spec.channels == 1:  # a (H, W) or (N, H, W) array for a one-channel model
        axis = 1 if spec.channels_first else -1
        candidates += [np.expand_dims(arr, axis)[None], np.expand_dims(arr, axis)]
    for cand in candidates:
        if fits(cand):
            return cand
    raise InputDataError(
        f"the input array does not fit the model input; expected shape {spec.describe()} with an optional "
        f"batch axis in front. Received: array of shape {arr.shape} from {source}")


def load_input(source: str | os.PathLike[str] | np.ndarray, spec: InputSpec, *, preprocess: str = "auto",
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               batch: int | None = None, fit: str = "stretch") -> np.ndarray:
    """A float32 batch ``(N, *spec.shape)`` from ``source``: an image path, a ``.npy`` path, an array or
    the string ``"sample"``, or ``"photo:NAME"`` for a bundled photograph (:mod:`inspector.photos`).

    ``preprocess`` one of :data:`PREPROCESS_CHOICES`, ``fit`` one of :data:`FIT_CHOICES` (image files only);
    ``batch`` repeats a single sample N times (useful to check batched runs).
    """
    preprocess = _check_choice(str(preprocess) if isinstance(preprocess, StrEnum) else preprocess,
                               PREPROCESS_CHOICES, "preprocessing")
    fit = _check_choice(str(fit) if isinstance(fit, StrEnum) else fit, FIT_CHOICES, "fit")
    if preprocess != "meanstd" and (mean is not None or std is not None):
        raise InputDataError(f"--mean/--std apply only to the meanstd preprocessing (the presets carry their own); "
                             f"pick meanstd or drop them. Received: preprocessing {preprocess!r} with "
                             f"mean={mean!r}, std={std!r}")
    channel_axis = 1 if spec.channels_first else -1
    if isinstance(source, np.ndarray):
        x = _fit_array(np.asarray(source, dtype=np.float32), spec, "an in-memory array")
        how = auto_preprocess(preprocess, builtin=spec.builtin_preprocessing, array=True)
    elif str(source) == "sample":
        x = _sample_for(spec)
        how = auto_preprocess(preprocess, builtin=spec.builtin_preprocessing)
    else:
        from .photos import PHOTO_PREFIX, photo_path

        path = photo_path(str(source)) if str(source).startswith(PHOTO_PREFIX) else Path(source)
        if not path.is_file():
            raise InputDataError(
                f"input file not found; give a PNG/JPEG image, a .npy array or 'sample'. Received: {source}")
        if path.suffix.lower() == ".npy":
            try:
                raw = np.load(path, allow_pickle=False)  # never unpickle objects from an input file
            except (ValueError, OSError, EOFError) as exc:
                raise InputDataError(
                    f"cannot read the .npy array ({' '.join(str(exc).split())[:100]}); a numeric .npy "
                    f"array is expected. Received: {source}") from exc
            if not np.issubdtype(raw.dtype, np.number) and raw.dtype != np.bool_:
                raise InputDataError(f"the .npy array must be numeric. Received: dtype {raw.dtype} in {source}")
            x = _fit_array(raw.astype(np.float32), spec, str(source))
            how = auto_preprocess(preprocess, builtin=spec.builtin_preprocessing, array=True)
        else:
            if not spec.is_image:
                raise InputDataError(
                    f"this model takes inputs of shape {spec.describe()}, not images; give a .npy array. "
                    f"Received: {source}")
            if path.suffix.lower() not in _IMAGE_SUFFIXES and not _looks_like_image(path):
                raise InputDataError(
                    f"unrecognised input file type; accepted: PNG/JPEG images, .npy arrays or 'sample'. "
                    f"Received: {source}")
            img = _read_image(path, spec, fit)
            if spec.channels_first:
                img = np.moveaxis(img, -1, 0)
            x = _fit_array(img, spec, str(source))
            how = auto_preprocess(preprocess, builtin=spec.builtin_preprocessing)
    x = _preprocess(x.astype(np.float32), how, mean, std, channel_axis).astype(np.float32)
    if batch is not None and batch > 1:
        x = np.repeat(x[:1], batch, axis=0)
    return x


def _looks_like_image(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:  # e.g. PermissionError: say so instead of "internal error"
        raise InputDataError(f"cannot read the input file ({type(exc).__name__}: {exc.strerror or exc}); "
                             f"check that it is readable. Received: {path}") from exc
    return head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM"))


def _sample_for(spec: InputSpec) -> np.ndarray:
    """The built-in sample at the model's input shape (values 0..255 before preprocessing)."""
    if spec.is_image:
        h, w = ((d or _DEFAULT_SIDE) for d in spec.spatial)
        img = sample_image(h, w, spec.channels or 3)
        return (np.moveaxis(img, -1, 0) if spec.channels_first else img)[None]
    shape = tuple(d or _DEFAULT_SIDE for d in spec.shape)
    size = int(np.prod(shape)) if shape else 1
    # A smooth deterministic ramp with an oscillation: structure, not noise, on any input shape.
    t = np.linspace(0.0, 1.0, size, dtype=np.float64)
    values = 127.5 * (1.0 + np.sin(2 * np.pi * 3 * t) * (0.5 + 0.5 * t))
    return values.reshape((1, *shape)).astype(np.float32)
