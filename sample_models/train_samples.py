"""Train and save the small sample models that ship with filter-inspector.

Run from the repository root (offline, about a minute on 2 CPU cores)::

    .venv/bin/python sample_models/train_samples.py            # both models
    .venv/bin/python sample_models/train_samples.py digits_cnn # just one

Every model is written in the four formats the readers support, next to this script:
``<name>.keras``, ``<name>.h5`` (legacy full model), ``<name>.weights.h5`` and ``<name>_savedmodel/``.
One example input per model is written too (``sample_input_digit.npy``, ``sample_input_rgb.png``).

Nothing is downloaded: the digits come with scikit-learn and the colour images are generated here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

# Quiet TF's C++ start-up chatter before it is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

if TYPE_CHECKING:  # keras is imported lazily, inside functions, so --help stays fast
    import keras

HERE = Path(__file__).resolve().parent
SEED = 1234


def set_seeds(seed: int) -> None:
    """Seed Python, numpy and the backend, and ask TF for deterministic kernels.

    Op determinism makes a rerun on the same machine reproduce the same weights bit for bit; other
    CPUs or TF versions may still round differently, which is why the files are committed.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# --------------------------------------------------------------------------------------------------
# digits_cnn: scikit-learn's 8x8 handwritten digits, upsampled to 16x16
# --------------------------------------------------------------------------------------------------


def upsample_bilinear(images: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling of (n, h, w) images by an integer factor, pixel centres aligned.

    Bilinear rather than np.kron: blocky 2x2 pixels would make the first-layer filters learn block
    edges instead of pen strokes.
    """
    _, h, w = images.shape

    def coords(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(size * factor) + 0.5) / factor - 0.5
        src = np.clip(src, 0, size - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, size - 1)
        return lo, hi, (src - lo).astype(np.float32)

    y0, y1, fy = coords(h)
    x0, x1, fx = coords(w)
    rows = images[:, y0, :] * (1 - fy)[None, :, None] + images[:, y1, :] * fy[None, :, None]
    return rows[:, :, x0] * (1 - fx)[None, None, :] + rows[:, :, x1] * fx[None, None, :]


def digits_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are 0..16; scale to 0..1 so the saved sample input is in the model's units.
    images = upsample_bilinear(digits.images.astype(np.float32) / 16.0, 2)[..., None]
    return train_test_split(images, digits.target.astype(np.int64), test_size=0.25, random_state=SEED,
                            stratify=digits.target)


def quiet_init() -> keras.initializers.Initializer:
    """A near-zero start for first-layer kernels that feed a BatchNormalization.

    BN makes the layer's output independent of the kernel's scale, so a tiny start costs nothing, and
    Adam's steps then quickly outweigh it: what is left in the trained filter is what the data put
    there, not the random pattern of a Glorot start. With Glorot, the 5x5 filters still looked like
    noise after training. The small L2 on these kernels only bounds their norm, which BN leaves free.
    """
    import keras

    return keras.initializers.RandomNormal(stddev=1e-3, seed=SEED)


def smooth_sgd(n_train: int, batch_size: int, epochs: int) -> keras.optimizers.Optimizer:
    """SGD with momentum and a cosine decay to zero.

    Chosen over Adam by looking at the filters: Adam's steps have about the same size for every
    weight, so kernel entries with weak, noisy gradients random-walk and the 5x5 filters came out
    speckled. SGD's steps scale with the gradient, and the decay lets the last epochs settle.
    Accuracy was the same either way.
    """
    import keras

    steps = epochs * -(-n_train // batch_size)
    return keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.05, steps), momentum=0.9)


def build_digits_cnn() -> keras.Model:
    import keras
    from keras import layers

    # conv1 is linear and followed by bn1 and a separate ReLU so that folding bn1 into conv1 is exact
    # (the "fold BN" view); conv2 carries its ReLU inside the layer so the other pattern is covered too.
    inputs = keras.Input((16, 16, 1), name="digit_image")
    x = layers.Conv2D(8, 5, padding="same", name="conv1", kernel_initializer=quiet_init(),
                      kernel_regularizer=keras.regularizers.L2(1e-3))(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Activation("relu", name="relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)  # 8x8
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 4x4
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(10, activation="softmax", name="digit_probs")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train_digits_cnn() -> dict[str, object]:
    set_seeds(SEED)
    x_train, x_test, y_train, y_test = digits_data()
    model = build_digits_cnn()
    model.compile(optimizer=smooth_sgd(len(x_train), 32, 30), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=30, verbose=0, shuffle=True)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)

    # A test image the model classifies correctly, so the dashboard's demo shows a sensible answer.
    predicted = model.predict(x_test, verbose=0).argmax(-1)
    index = int(np.flatnonzero((predicted == y_test) & (y_test == 3))[0])
    np.save(HERE / "sample_input_digit.npy", x_test[index].astype(np.float32))

    return {"model": model, "test_accuracy": float(accuracy), "train_size": len(x_train),
            "test_size": len(x_test), "sample_label": int(y_test[index])}


# --------------------------------------------------------------------------------------------------
# shapes_rgb: generated 32x32 colour images of oriented stripes
# --------------------------------------------------------------------------------------------------

#: Class names of shapes_rgb, in label order: 4 orientations x 2 colour families.
SHAPES_CLASSES = [f"{colour}_{angle}deg" for colour in ("warm", "cool") for angle in (0, 45, 90, 135)]

# Hue ranges (degrees) of the stripe colour. Warm = red..yellow and magenta, cool = green..blue. The
# network must look at colour *and* orientation, so its first-layer filters become coloured, oriented
# edge detectors rather than plain grey ones.
_WARM_HUES = (-40.0, 55.0)
_COOL_HUES = (110.0, 250.0)
# Stripe period in pixels. Short periods alias away after the first 2x pooling, so orientation has
# to be detected by the first-layer 5x5 filters themselves, which is what makes them oriented.
STRIPE_PERIOD = (3.5, 7.0)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (hue in degrees) → RGB in 0..1, shape (..., 3)."""
    h = np.mod(h, 360.0) / 60.0
    c = v * s
    x = c * (1 - np.abs(np.mod(h, 2) - 1))
    m = v - c
    zeros = np.zeros_like(h)
    sector = np.floor(h).astype(int) % 6
    choices = [
        np.stack([c, x, zeros], -1), np.stack([x, c, zeros], -1), np.stack([zeros, c, x], -1),
        np.stack([zeros, x, c], -1), np.stack([x, zeros, c], -1), np.stack([c, zeros, x], -1),
    ]
    rgb = np.select([(sector == k)[..., None] for k in range(6)], choices)
    return rgb + m[..., None]


def make_shapes(n: int, rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (uint8, size x size x 3) and labels (int64) of the 8 SHAPES_CLASSES.

    Each image is a grating of random period, phase and softness in a colour of the class's family,
    over a random grey/tinted background, with per-pixel noise. Contrast and brightness vary so that
    no single pixel statistic gives the class away.
    """
    labels = rng.integers(0, len(SHAPES_CLASSES), n)
    angles = np.deg2rad((labels % 4) * 45.0 + rng.normal(0, 4.0, n))
    warm = labels < 4
    lo = np.where(warm, _WARM_HUES[0], _COOL_HUES[0])
    hi = np.where(warm, _WARM_HUES[1], _COOL_HUES[1])
    hue = rng.uniform(lo, hi)
    fg = _hsv_to_rgb(hue, rng.uniform(0.6, 1.0, n), rng.uniform(0.6, 1.0, n))  # (n, 3)
    # Background: low-saturation, any hue, so colour of the stripes (not the background) is the cue.
    bg = _hsv_to_rgb(rng.uniform(0, 360, n), rng.uniform(0.0, 0.25, n), rng.uniform(0.05, 0.5, n))

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(*STRIPE_PERIOD, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    # Distance along the grating normal, whose angle is measured from the image's vertical axis:
    # 0deg = horizontal stripes, 90deg = vertical, 45deg = stripes running "/" (y points down).
    along = (xx[None] * np.sin(angles)[:, None, None] + yy[None] * np.cos(angles)[:, None, None])
    wave = np.sin(2 * np.pi * along / period[:, None, None] + phase[:, None, None])
    sharpness = rng.uniform(1.0, 6.0, n)[:, None, None]  # soft sine .. near-square stripes
    mask = 0.5 + 0.5 * np.tanh(sharpness * wave)
    images = bg[:, None, None, :] + mask[..., None] * (fg - bg)[:, None, None, :]
    images += rng.normal(0, 0.06, images.shape)
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), labels.astype(np.int64)


def build_shapes_rgb() -> keras.Model:
    import keras
    from keras import layers

    # The model takes raw 0..255 pixels (Rescaling inside), so a PNG can be fed as it is.
    inputs = keras.Input((32, 32, 3), name="rgb_image")
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = layers.Conv2D(12, 5, padding="same", name="conv1_rgb", kernel_initializer=quiet_init(),
                      kernel_regularizer=keras.regularizers.L2(1e-3))(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Activation("relu", name="relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)  # 16x16
    # Depthwise then separable conv so each of those layer kinds has a trained fixture.
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu", name="dw2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 8x8
    x = layers.SeparableConv2D(24, 3, padding="same", name="sep3")(x)
    x = layers.BatchNormalization(name="bn3")(x)
    x = layers.Activation("relu", name="relu3")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(len(SHAPES_CLASSES), activation="softmax", name="shape_probs")(x)
    return keras.Model(inputs, outputs, name="shapes_rgb")


def train_shapes_rgb() -> dict[str, object]:
    set_seeds(SEED)
    rng = np.random.default_rng(SEED)
    x_train, y_train = make_shapes(4000, rng)
    x_test, y_test = make_shapes(1000, rng)
    model = build_shapes_rgb()
    model.compile(optimizer=smooth_sgd(len(x_train), 64, 15), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train.astype(np.float32), y_train, batch_size=64, epochs=15, verbose=0, shuffle=True)
    _, accuracy = model.evaluate(x_test.astype(np.float32), y_test, verbose=0)

    predicted = model.predict(x_test.astype(np.float32), verbose=0).argmax(-1)
    # A correctly classified diagonal warm grating: colour and orientation both visible in one example.
    index = int(np.flatnonzero((predicted == y_test) & (y_test == SHAPES_CLASSES.index("warm_45deg")))[0])
    from PIL import Image

    Image.fromarray(x_test[index]).save(HERE / "sample_input_rgb.png")

    return {"model": model, "test_accuracy": float(accuracy), "train_size": len(x_train),
            "test_size": len(x_test), "sample_label": SHAPES_CLASSES[int(y_test[index])]}


# --------------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------------


def save_all_formats(model: keras.Model, name: str) -> list[Path]:
    """Write ``name`` in every format the readers handle; replaces earlier files of the same name."""
    paths = [HERE / f"{name}.keras", HERE / f"{name}.h5", HERE / f"{name}.weights.h5",
             HERE / f"{name}_savedmodel"]
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    model.save(paths[0])
    model.save(paths[1])  # the .h5 suffix selects Keras's legacy HDF5 writer (it warns; that is expected)
    model.save_weights(paths[2])
    model.export(str(paths[3]), verbose=False)
    return paths


def disk_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


TRAINERS: dict[str, Callable[[], dict[str, object]]] = {
    "digits_cnn": train_digits_cnn,
    "shapes_rgb": train_shapes_rgb,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"models to train, from {', '.join(TRAINERS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(TRAINERS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(TRAINERS)}")

    summary: dict[str, dict[str, object]] = {}
    for name in args.models or list(TRAINERS):
        start = time.perf_counter()
        result = TRAINERS[name]()
        model = result.pop("model")
        files = save_all_formats(model, name)
        result["params"] = int(model.count_params())
        result["seconds"] = round(time.perf_counter() - start, 1)
        result["files"] = {p.name: disk_size(p) for p in files}
        summary[name] = result
        print(f"{name}: test accuracy {result['test_accuracy']:.4f}, {result['params']} params, "
              f"{result['seconds']} s", flush=True)
        for file_name, size in result["files"].items():  # type: ignore[union-attr]
            print(f"  {file_name:32s} {size / 1024:8.1f} KiB")
    json.dump(summary, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
