"""A zoo of tiny real Keras models covering the structures the index must get right.

Each builder returns a built, named model with non-trivial weights. ``expected_layers`` walks a live
model the way Keras counts it, giving the ground truth the index is compared against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


def _keras() -> Any:
    import keras

    return keras


def sequential() -> Any:
    keras = _keras()
    L = keras.layers
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        L.Conv2D(4, 3, name="c1"),
        L.MaxPooling2D(name="pool"),
        L.Conv2D(6, 3, use_bias=False, padding="same", name="c2"),
        L.Flatten(name="flat"),
        L.Dense(5, activation="softmax", name="head"),
    ], name="seq_model")


def functional_raw_ops() -> Any:
    keras = _keras()
    L = keras.layers
    inp = keras.Input((10, 10, 2), name="img")
    a = L.Conv2D(4, 3, padding="same", name="a")(inp)
    b = L.Conv2D(4, 1, name="b")(inp)
    x = keras.ops.relu(a + b)  # raw ops: not layers, no weights
    x = L.BatchNormalization(name="bn")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(3, name="out")(x)
    return keras.Model(inp, out, name="raw_ops")


def nested() -> Any:
    keras = _keras()
    L = keras.layers
    inner_in = keras.Input((6,), name="inner_in")
    inner_fn = keras.Model(inner_in, L.Dense(6, name="dense_fn")(inner_in), name="inner_fn")
    inner_seq = keras.Sequential([keras.Input((6,)), L.Dense(4, name="d_in"), L.Dense(3, name="d_in2")],
                                 name="inner_seq")
    inp = keras.Input((5, 5, 2), name="x")
    x = L.Conv2D(3, 3, name="conv")(inp)
    x = L.Flatten()(x)
    x = L.Dense(6, name="fc")(x)
    shared = L.Dense(6, name="shared")
    x = shared(shared(x))  # a shared layer: stored and counted once
    x = inner_fn(x)
    return keras.Model(inp, inner_seq(x), name="nested_model")


def shared_nested_model() -> Any:
    keras = _keras()
    L = keras.layers
    block = keras.Sequential([keras.Input((4,)), L.Dense(4, name="blk_dense")], name="block")
    inp = keras.Input((4,))
    out = L.Add()([block(inp), block(L.Dense(4, name="pre")(inp))])
    return keras.Model(inp, out, name="shared_nested")


def every_conv_kind() -> Any:
    keras = _keras()
    L = keras.layers
    i1 = keras.Input((16, 6), name="seq_in")
    x1 = L.Conv1D(6, 3, groups=2, name="conv1d_g2")(i1)
    x1 = L.DepthwiseConv1D(3, depth_multiplier=2, name="dw1d")(x1)
    x1 = L.SeparableConv1D(4, 3, depth_multiplier=2, name="sep1d")(x1)
    x1 = L.Conv1DTranspose(3, 3, strides=2, name="tconv1d")(x1)
    x1 = L.GlobalAveragePooling1D()(x1)
    i2 = keras.Input((9, 9, 4), name="img_in")
    x2 = L.Conv2D(8, 3, groups=4, use_bias=False, name="conv2d_g4")(i2)
    x2 = L.BatchNormalization(name="bn2d")(x2)
    x2 = L.DepthwiseConv2D(3, depth_multiplier=3, padding="same", name="dw2d")(x2)
    x2 = L.SeparableConv2D(5, 3, name="sep2d")(x2)
    x2 = L.Conv2DTranspose(4, 3, strides=2, output_padding=1, name="tconv2d")(x2)
    x2 = L.GlobalMaxPooling2D()(x2)
    i3 = keras.Input((5, 5, 5, 2), name="vol_in")
    x3 = L.Conv3D(4, 2, groups=2, name="conv3d_g2")(i3)
    x3 = L.Conv3DTranspose(2, 2, name="tconv3d")(x3)
    x3 = L.GlobalAveragePooling3D()(x3)
    out = L.Dense(3, name="fc")(L.Concatenate()([x1, x2, x3]))
    return keras.Model([i1, i2, i3], out, name="conv_kinds")


def recurrent_and_norms() -> Any:
    keras = _keras()
    L = keras.layers
    inp = keras.Input((7,), dtype="int32", name="tokens")
    x = L.Embedding(20, 6, name="emb")(inp)
    x = L.LSTM(5, return_sequences=True, name="lstm")(x)
    x = L.GRU(4, return_sequences=True, name="gru")(x)
    x = L.Bidirectional(L.SimpleRNN(3, return_sequences=True), name="bidi")(x)
    x = L.LayerNormalization(name="ln")(x)
    x = L.TimeDistributed(L.Dense(2), name="td")(x)
    x = L.BatchNormalization(name="bn_frozen", trainable=False)(x)
    return keras.Model(inp, L.Flatten()(x), name="rnn_norms")


def frozen_nested() -> Any:
    keras = _keras()
    L = keras.layers
    backbone = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(3, 3, name="bb_conv"),
                                 L.BatchNormalization(name="bb_bn")], name="backbone")
    backbone.trainable = False
    inp = keras.Input((8, 8, 1))
    x = L.GlobalAveragePooling2D()(backbone(inp))
    return keras.Model(inp, L.Dense(2, name="head")(x), name="frozen_nested")


def custom_layer() -> Any:
    keras = _keras()

    @keras.saving.register_keras_serializable(package="zoo")
    class Scale(keras.layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

        def call(self, x: Any) -> Any:
            return x * self.w

    L = keras.layers
    inp = keras.Input((4, 4, 2))
    x = L.Conv2D(3, 2, name="pre")(inp)
    x = Scale(name="scale")(x)
    x = L.Lambda(lambda t: t * 2.0, name="double")(x)
    return keras.Model(inp, L.Flatten()(x), name="custom")


def subclassed() -> Any:
    keras = _keras()
    L = keras.layers

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="subnet")
            self.block1 = keras.Sequential([L.Conv2D(3, 3, name="b1_conv"), L.BatchNormalization(name="b1_bn")])
            self.head = L.Dense(2, name="head_dense")

        def call(self, x: Any) -> Any:
            return self.head(L.Flatten()(self.block1(x)))

    model = Net()
    model(np.zeros((1, 6, 6, 2), "float32"))
    return model


@dataclass(frozen=True)
class ZooModel:
    name: str
    build: Callable[[], Any]
    functional: bool = True  # has a config layer list (False: subclassed)
    legacy_h5: bool = True  # Keras 3's legacy writer can save it
    savedmodel: bool = True


ZOO: list[ZooModel] = [
    ZooModel("sequential", sequential),
    ZooModel("raw_ops", functional_raw_ops),
    ZooModel("nested", nested),
    ZooModel("shared_nested", shared_nested_model),
    ZooModel("conv_kinds", every_conv_kind),
    ZooModel("rnn_norms", recurrent_and_norms),
    ZooModel("frozen_nested", frozen_nested),
    ZooModel("custom", custom_layer),
    ZooModel("subclassed", subclassed, functional=False, legacy_h5=False),
]


def randomize(model: Any, seed: int = 0) -> None:
    """Give every variable distinct random values (so value checks can't pass by accident)."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        if "int" in str(var.dtype):
            continue
        value = rng.standard_normal(tuple(var.shape)).astype("float32")
        if "variance" in var.path:
            value = np.abs(value) + 0.5
        var.assign(value)


@dataclass(frozen=True)
class ExpectedLayer:
    path: str
    params: int
    trainable: int
    shapes: tuple[tuple[int, ...], ...]
    values: tuple[np.ndarray, ...]


def expected_layers(model: Any) -> Iterator[ExpectedLayer]:
    """Leaf layers with their Keras-reported parameter counts, in Keras's order, shared layers once."""
    seen: set[int] = set()

    def walk(obj: Any, prefix: str) -> Iterator[ExpectedLayer]:
        for layer in obj.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if hasattr(layer, "layers") and isinstance(layer.layers, list) and layer.layers:
                yield from walk(layer, f"{prefix}{layer.name}/")
                continue
            weights = layer.weights
            yield ExpectedLayer(
                path=f"{prefix}{layer.name}",
                params=int(layer.count_params()) if layer.built else 0,
                trainable=sum(int(np.prod(w.shape)) for w in layer.trainable_weights),
                shapes=tuple(tuple(int(d) for d in w.shape) for w in weights),
                values=tuple(np.asarray(w.numpy()) for w in weights),
            )

    yield from walk(model, "")
