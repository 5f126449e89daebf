"""Build tiny real SavedModels with each writer of docs/formats.md §4 (used by test_savedmodel.py).

Writers:
  (a) Keras 3 ``model.export(dir)``
  (b) ``tf.saved_model.save(keras3_model, dir)``
  (c) tf_keras 2 ``model.save(dir, save_format="tf")`` (with ``keras_metadata.pb``)
  (d) an older-style TF 2.x SavedModel: (c) with each keras_metadata node's JSON moved into the matching
      ``saved_model.pb`` ``SavedUserObject.metadata`` and ``keras_metadata.pb`` deleted (TF <= 2.4 layout).

Each builder returns ``(directory, reference)`` where ``reference`` holds what Keras itself says about
the model (per-layer variables by layer path, per-layer and total ``count_params()``, trainable totals,
input/output shapes), taken from the live model before saving, so tests compare with Keras, not with
hand-written numbers. TensorFlow / Keras / tf_keras are imported only inside these functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

INPUT_SHAPE = (8, 8, 3)


@dataclass
class LayerRef:
    """What Keras says about one layer."""

    path: str
    class_name: str
    params: int
    weights: dict[str, np.ndarray]  # short name -> value
    trainable: dict[str, bool]  # short name -> trainable


@dataclass
class ModelRef:
    layers: dict[str, LayerRef] = field(default_factory=dict)  # only layers that own weights
    all_paths: list[str] = field(default_factory=list)  # every leaf layer path in model order
    total_params: int = 0
    trainable_params: int = 0
    input_shape: tuple[Any, ...] = ()
    output_shape: tuple[Any, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def _fill_unique(model: Any) -> None:
    """Give every variable distinct random values so value checks can tell variables apart."""
    rng = np.random.default_rng(7)
    for var in model.weights:
        shape = tuple(var.shape)
        value = rng.standard_normal(shape).astype("float32")
        if "variance" in var.name:
            value = np.abs(value) + 0.5
        var.assign(value)


def _short_name(name: str) -> str:
    return name.split(":", 1)[0].rsplit("/", 1)[-1]


def _reference(model: Any, keras_module: Any) -> ModelRef:
    """Walk the live model (Keras 3 or tf_keras) and record per-layer truth."""
    ref = ModelRef()

    def walk(container: Any, prefix: str, trainable: bool) -> None:
        for layer in container.layers:
            if isinstance(layer, keras_module.Model):
                walk(layer, f"{prefix}{layer.name}/", trainable and layer.trainable)
                continue
            path = f"{prefix}{layer.name}"
            ref.all_paths.append(path)
            if not layer.weights:
                continue
            weights = {}
            flags = {}
            trainable_ids = {id(v) for v in layer.trainable_weights}
            for var in layer.weights:
                name = _short_name(var.name)
                if name == "depthwise_kernel" and type(layer).__name__ == "DepthwiseConv2D":
                    name = "kernel"  # the index uses Keras 3 names (docs/formats.md §1.6)
                weights[name] = np.array(var.numpy())
                flags[name] = id(var) in trainable_ids
            ref.layers[path] = LayerRef(path, type(layer).__name__, int(layer.count_params()), weights, flags)

    walk(model, "", True)
    ref.total_params = int(model.count_params())
    ref.trainable_params = int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    ref.input_shape = tuple(model.input_shape)
    ref.output_shape = tuple(model.output_shape)
    return ref


def _build_keras3_model() -> Any:
    import keras
    from keras import layers

    inner = keras.Sequential([layers.Dense(4, name="d_in"), layers.Dense(3, name="d_out")], name="inner_seq")
    inputs = keras.Input(INPUT_SHAPE, name="img")
    x = layers.Conv2D(4, 3, use_bias=False, name="convA")(inputs)
    x = layers.BatchNormalization(name="bnA")(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = layers.SeparableConv2D(5, 2, name="sep")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.1, name="drop")(x)  # its SeedGenerator state is a variable, but not a weight
    x = layers.Dense(6, name="fc", trainable=False)(x)  # frozen: checks the trainable flags
    outputs = inner(x)
    model = keras.Model(inputs, outputs, name="tiny")
    _fill_unique(model)
    return model


def build_keras3_export(directory: Path) -> tuple[Path, ModelRef]:
    """(a) Keras 3 ``model.export(dir)``."""
    import keras

    model = _build_keras3_model()
    ref = _reference(model, keras)
    ref.extra["example_input"] = np.random.default_rng(1).standard_normal((2, *INPUT_SHAPE)).astype("float32")
    ref.extra["example_output"] = np.array(model(ref.extra["example_input"]))
    model.export(str(directory), verbose=False)
    return directory, ref


def build_tf_saved_model_save(directory: Path) -> tuple[Path, ModelRef]:
    """(b) ``tf.saved_model.save(keras3_model, dir)``."""
    import keras
    import tensorflow as tf

    model = _build_keras3_model()
    ref = _reference(model, keras)
    tf.saved_model.save(model, str(directory))
    return directory, ref


def _build_tf_keras_model(with_optimizer: bool) -> Any:
    import tf_keras
    from tf_keras import layers

    inner = tf_keras.Sequential([layers.Dense(4, name="d_in"), layers.Dense(3, name="d_out")],
                                name="inner_seq")
    inputs = tf_keras.Input(INPUT_SHAPE, name="img")
    x = layers.Conv2D(4, 3, use_bias=False, name="convA")(inputs)
    x = layers.BatchNormalization(name="bnA")(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = layers.SeparableConv2D(5, 2, name="sep")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(6, name="fc", trainable=False)(x)  # frozen: checks the trainable flags
    outputs = inner(x)
    model = tf_keras.Model(inputs, outputs, name="tiny")
    _fill_unique(model)
    if with_optimizer:
        # Compile and train one step so optimizer slots and metric variables land in the checkpoint.
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        rng = np.random.default_rng(3)
        model.fit(rng.standard_normal((4, *INPUT_SHAPE)).astype("float32"),
                  rng.standard_normal((4, 3)).astype("float32"), epochs=1, verbose=0)
    return model


def build_tf_keras_save(directory: Path, with_optimizer: bool = True) -> tuple[Path, ModelRef]:
    """(c) tf_keras 2 ``model.save(dir, save_format="tf")``, compiled and trained one step."""
    import tf_keras

    model = _build_tf_keras_model(with_optimizer)
    ref = _reference(model, tf_keras)
    model.save(str(directory), save_format="tf")
    return directory, ref


def move_metadata_into_saved_model(directory: Path) -> None:
    """Turn a tf_keras SavedModel into the TF <= 2.4 layout: metadata in saved_model.pb, no keras_metadata.pb.

    Uses the ``protobuf`` package and TF's generated protos (available in the test environment only);
    the reader under test never needs them.
    """
    from tensorflow.core.protobuf import saved_model_pb2
    from tf_keras.protobuf import saved_metadata_pb2

    meta = saved_metadata_pb2.SavedMetadata()
    meta.ParseFromString((directory / "keras_metadata.pb").read_bytes())
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((directory / "saved_model.pb").read_bytes())
    nodes = sm.meta_graphs[0].object_graph_def.nodes
    moved = 0
    for node in meta.nodes:
        target = nodes[node.node_id]
        if not target.HasField("user_object"):
            raise AssertionError(f"node {node.node_id} ({node.node_path}) has no user_object")
        target.user_object.identifier = node.identifier
        target.user_object.metadata = node.metadata
        moved += 1
    if moved == 0:
        raise AssertionError("keras_metadata.pb had no nodes")
    (directory / "saved_model.pb").write_bytes(sm.SerializeToString())
    (directory / "keras_metadata.pb").unlink()


def build_old_tf2_style(directory: Path) -> tuple[Path, ModelRef]:
    """(d) a TF 2.x SavedModel whose Keras metadata lives in saved_model.pb (no keras_metadata.pb)."""
    directory, ref = build_tf_keras_save(directory)
    move_metadata_into_saved_model(directory)
    return directory, ref
