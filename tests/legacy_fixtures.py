"""Build tiny real legacy ``.h5`` files with each writer of docs/formats.md §3 (used by test_legacy_h5.py).

Writers:
  * Keras 3.15 ``model.save('x.h5')`` (legacy path) and, for comparison, ``model.save('x.keras')``
  * tf_keras 2.21 ``model.save('x.h5')`` and ``model.save_weights('x.h5')``
  * a Keras 2.0.5-era file, written here with h5py from a real tf_keras model's config and weights in the
    2.0.5 layout of docs/formats.md §3.3: ``"class_name": "Model"``, fixed-length bytes attributes, empty float64
    ``weight_names`` for weightless layers, scope-suffixed weight paths (``conv2d_1/conv2d_1_1/kernel:0``),
    a Keras 2 ``training_config`` and generic ``optimizer_weights``.

Each builder returns a :class:`ModelRef` taken from the live model (Keras's own ``count_params()``,
``trainable_weights`` and ``get_weights()``), so tests compare the index with Keras, not with numbers
written by hand. Keras / tf_keras are imported only inside these functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RNN_CLASSES = frozenset({"LSTM", "GRU", "SimpleRNN"})


@dataclass
class LayerRef:
    """What Keras says about one layer that owns weights."""

    path: str
    class_name: str
    params: int
    weights: dict[str, np.ndarray]  # index short name -> value
    trainable: dict[str, bool]


@dataclass
class ModelRef:
    layers: dict[str, LayerRef] = field(default_factory=dict)
    all_paths: list[str] = field(default_factory=list)  # every leaf layer path, model order
    total_params: int = 0
    trainable_params: int = 0
    non_trainable_params: int = 0
    output_shapes: dict[str, tuple[int | None, ...]] = field(default_factory=dict)  # single-output layers


def _fill_unique(model: Any) -> None:
    """Distinct random values per variable, so value checks can tell variables apart."""
    rng = np.random.default_rng(11)
    for var in model.weights:
        value = rng.standard_normal(tuple(var.shape)).astype("float32")
        if "variance" in var.name:
            value = np.abs(value) + 0.5
        var.assign(value)


def _index_name(layer: Any, var: Any) -> str:
    """The short name the index promises (architecture.md): Keras 3 names, ``cell/`` for RNN cells."""
    base = var.name.split(":", 1)[0].rsplit("/", 1)[-1]
    cls = type(layer).__name__
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D") and base == "depthwise_kernel":
        return "kernel"
    return f"cell/{base}" if cls in RNN_CLASSES else base


def reference(model: Any, keras_module: Any) -> ModelRef:
    """Per-layer truth from the live model (Keras 3 or tf_keras); shared layers appear once."""
    ref = ModelRef()

    def walk(container: Any, prefix: str) -> None:
        for layer in container.layers:
            if isinstance(layer, keras_module.Model):
                walk(layer, f"{prefix}{layer.name}/")
                continue
            path = f"{prefix}{layer.name}"
            ref.all_paths.append(path)
            try:  # shared layers have several outputs and raise here; they are simply not recorded
                shape = layer.output.shape
                ref.output_shapes[path] = tuple(None if d is None else int(d) for d in shape)
            except (AttributeError, ValueError, RuntimeError):
                pass
            if not layer.weights:
                continue
            trainable_ids = {id(v) for v in layer.trainable_weights}
            values = layer.get_weights()
            weights = {_index_name(layer, v): np.asarray(a) for v, a in zip(layer.weights, values, strict=True)}
            flags = {_index_name(layer, v): id(v) in trainable_ids for v in layer.weights}
            ref.layers[path] = LayerRef(path, type(layer).__name__, int(layer.count_params()), weights, flags)

    walk(model, "")
    ref.total_params = int(model.count_params())
    ref.trainable_params = int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    ref.non_trainable_params = int(sum(int(np.prod(v.shape)) for v in model.non_trainable_weights))
    return ref


# -- model builders (K is keras or tf_keras) -----------------------------------------------------------

def conv_zoo(K: Any) -> Any:
    """Every conv kind (1-D, 2-D, 3-D, grouped, depthwise, separable, transposed) + BN + Dense + LSTM."""
    L = K.layers
    img = K.Input((8, 8, 4), name="img")
    x = L.Conv2D(4, 3, name="conv", use_bias=False)(img)
    x = L.Conv2D(4, 3, groups=2, padding="same", name="grouped")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.SeparableConv2D(5, 2, depth_multiplier=2, name="sep")(x)
    x = L.Conv2DTranspose(3, 2, strides=2, name="tr")(x)
    a = L.GlobalAveragePooling2D(name="gap")(x)

    seq = K.Input((10, 3), name="sig")
    y = L.Conv1D(4, 3, name="c1d")(seq)
    y = L.DepthwiseConv1D(3, depth_multiplier=2, name="dw1d")(y)
    y = L.SeparableConv1D(4, 2, name="sep1d")(y)
    y = L.Conv1DTranspose(3, 2, name="tr1d")(y)
    b = L.LSTM(3, name="lstm")(y)

    vol = K.Input((4, 4, 4, 2), name="vol")
    z = L.Conv3D(2, 2, name="c3d")(vol)
    z = L.Conv3DTranspose(2, 2, name="tr3d")(z)
    c = L.GlobalAveragePooling3D(name="gap3d")(z)

    merged = L.Concatenate(name="cat")([a, b, c])
    out = L.Dense(2, name="head")(merged)
    return K.Model([img, seq, vol], out, name="zoo")


def nested(K: Any) -> Any:
    """Sequential inside Functional, Functional inside Functional (two levels), a shared layer and a
    frozen nested model."""
    L = K.layers
    deep_in = K.Input((6,), name="deep_in")
    deep = K.Model(deep_in, L.Dense(5, name="deep_dense")(deep_in), name="deep_fn")
    fn_in = K.Input((6,), name="fn_in")
    h = L.Dense(6, name="fn_dense")(fn_in)
    inner_fn = K.Model(fn_in, deep(h), name="inner_fn")
    inner_seq = K.Sequential([L.Dense(4, name="s_a"), L.BatchNormalization(name="s_bn"), L.Dense(3, name="s_b")],
                             name="inner_seq")
    frozen = K.Sequential([L.Dense(3, name="f_a")], name="frozen_seq")
    inp = K.Input((8, 8, 3), name="img")
    x = L.Conv2D(4, 3, name="c1")(inp)
    x = L.BatchNormalization(name="bn1", trainable=False)(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(6, name="fc")(x)
    shared = L.Dense(6, name="shared")
    x = shared(shared(x))
    x = inner_fn(x)
    x = inner_seq(x)
    out = frozen(x)
    frozen.trainable = False
    return K.Model(inp, out, name="outer")


def sequential(K: Any) -> Any:
    L = K.layers
    inner = K.Sequential([L.Dense(5, name="in_a"), L.Dense(2, name="in_b")], name="inner")
    return K.Sequential([
        K.Input((8, 8, 2)),
        L.Conv2D(3, 3, name="conv"),
        L.BatchNormalization(name="bn"),
        L.MaxPooling2D(name="pool"),
        L.Flatten(name="flat"),
        L.Dense(6, name="fc"),
        inner,
    ], name="seq_model")


BUILDERS: dict[str, Callable[[Any], Any]] = {"zoo": conv_zoo, "nested": nested, "sequential": sequential}


# -- writers --------------------------------------------------------------------------------------------

def save_keras3(kind: str, directory: Path, suffix: str = ".h5") -> tuple[Path, ModelRef]:
    """Keras 3 ``model.save`` as legacy ``.h5`` (or ``.keras`` with ``suffix='.keras'``)."""
    import keras

    model = BUILDERS[kind](keras)
    _fill_unique(model)
    path = directory / f"k3_{kind}{suffix}"
    model.save(str(path))
    return path, reference(model, keras)


def save_tf_keras(kind: str, directory: Path, weights_only: bool = False) -> tuple[Path, ModelRef]:
    """tf_keras 2 ``model.save('x.h5')`` or ``model.save_weights('x.h5')``."""
    import tf_keras

    model = BUILDERS[kind](tf_keras)
    _fill_unique(model)
    path = directory / f"tk_{kind}{'_weights' if weights_only else ''}.h5"
    if weights_only:
        model.save_weights(str(path))
    else:
        model.save(str(path))
    return path, reference(model, tf_keras)


def keras205_model() -> Any:
    """The kind of small Functional CNN docs/formats.md §3.3 describes, with Keras 2.0-style auto names."""
    import tf_keras
    from tf_keras import layers as L

    inp = tf_keras.Input((16, 16, 1), name="input_1")
    x = L.Conv2D(4, 3, padding="same", use_bias=False, name="conv2d_1")(inp)
    x = L.BatchNormalization(name="batch_normalization_1")(x)
    x = L.Activation("relu", name="activation_1")(x)
    y = L.SeparableConv2D(4, 3, padding="same", name="separable_conv2d_1")(x)
    x = L.Add(name="add_1")([x, y])
    x = L.MaxPooling2D(name="max_pooling2d_1")(x)
    x = L.Conv2D(3, 1, name="conv2d_2")(x)
    x = L.GlobalAveragePooling2D(name="global_average_pooling2d_1")(x)
    out = L.Dense(2, activation="softmax", name="dense_1")(x)
    return tf_keras.Model(inp, out, name="model_1")


def _keras2_layer_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A tf_keras layer config entry reduced to the Keras 2.0 keys."""
    return {k: entry[k] for k in ("name", "class_name", "config", "inbound_nodes") if k in entry}


def write_keras205_h5(path: Path) -> tuple[Path, ModelRef]:
    """A Keras 2.0.5-layout full model, written with h5py from a real tf_keras model."""
    import h5py
    import tf_keras

    model = keras205_model()
    _fill_unique(model)
    ref = reference(model, tf_keras)
    cfg = model.get_config()
    config = {
        "class_name": "Model",
        "config": {
            "name": cfg["name"],
            "layers": [_keras2_layer_entry(e) for e in cfg["layers"]],
            "input_layers": cfg["input_layers"],
            "output_layers": cfg["output_layers"],
        },
    }
    training = {"optimizer_config": {"class_name": "Adam", "config": {
        "lr": 1e-4, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-08, "decay": 0.0}},
        "loss": "categorical_crossentropy", "metrics": ["accuracy"], "sample_weight_mode": None,
        "loss_weights": None}
    with h5py.File(path, "w") as f:
        # Keras 2.0.5 wrote `str(...).encode('utf8')`: fixed-length bytes attributes.
        f.attrs["keras_version"] = np.bytes_(b"2.0.5")
        f.attrs["backend"] = np.bytes_(b"tensorflow")
        f.attrs["model_config"] = np.bytes_(json.dumps(config).encode("utf8"))
        f.attrs["training_config"] = np.bytes_(json.dumps(training).encode("utf8"))
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([layer.name.encode("utf8") for layer in model.layers])
        mw.attrs["backend"] = np.bytes_(b"tensorflow")
        mw.attrs["keras_version"] = np.bytes_(b"2.0.5")
        for layer in model.layers:
            group = mw.create_group(layer.name)
            names = [f"{layer.name}_1/{v.name.split(':')[0].rsplit('/', 1)[-1]}:0" for v in layer.weights]
            # An empty list was stored by h5py as an empty float64 array.
            group.attrs["weight_names"] = (np.array([n.encode("utf8") for n in names]) if names
                                           else np.array([], dtype=np.float64))
            for name, value in zip(names, layer.get_weights(), strict=True):
                group.create_dataset(name, data=value)
        opt = f.create_group("optimizer_weights")
        opt.attrs["weight_names"] = np.array([b"training/Adam/Variable_104:0", b"iterations_1:0"])
        opt.create_dataset("training/Adam/Variable_104:0", data=np.ones((3, 3, 1, 4), "float32"))
        opt.create_dataset("iterations_1:0", data=np.array(7, "int64"))
    return path, ref
