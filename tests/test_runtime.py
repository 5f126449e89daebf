"""Runnable models from files: Keras 3 loading, the compatibility path, and refusals.

The truth for old files is the writer itself: a tf_keras 2 model's own ``predict`` output, taken
before saving, must equal what our rebuilt Keras 3 model computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector.kerascompat import call

pytestmark = pytest.mark.keras

INPUT = (8, 8, 3)


def _fill(model: Any, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    values = []
    for w in model.get_weights():
        v = rng.standard_normal(w.shape).astype("float32") * 0.5
        values.append(v)
    model.set_weights(values)
    # Keep BN variances positive (they are the 4th weight of each BN layer).
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([g, b, m, np.abs(v) + 0.5])


def _tf_keras_model() -> Any:
    """A Keras 2-era model Keras 3 refuses (DepthwiseConv2D carries ``groups``), compiled with an optimizer."""
    import tf_keras as K

    inp = K.Input(INPUT, name="img")
    h = K.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    h = K.layers.BatchNormalization(name="bn")(h)
    h = K.layers.Activation("relu", name="relu")(h)
    h = K.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)
    h = K.layers.SeparableConv2D(5, 3, padding="same", name="sep")(h)
    h = K.layers.GlobalAveragePooling2D(name="gap")(h)
    inner = K.Sequential([K.layers.Dense(6, activation="relu", name="d1"), K.layers.Dense(3, name="d2")],
                         name="inner_seq")
    model = K.Model(inp, inner(h), name="old")
    _fill(model)
    model.compile(optimizer=K.optimizers.legacy.Adam(learning_rate=1e-3) if hasattr(K.optimizers, "legacy")
                  else "adam", loss="mse")
    return model


@pytest.fixture(scope="module")
def tf_keras_h5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    model = _tf_keras_model()
    x = np.random.default_rng(9).standard_normal((2, *INPUT)).astype("float32")
    path = tmp_path_factory.mktemp("legacy") / "old.h5"
    model.save(path)  # the tf.keras 2 HDF5 writer
    import tf_keras as K

    dw_out = K.Model(model.input, model.get_layer("dw").output).predict(x, verbose=0)
    return path, model.predict(x, verbose=0), (x, dw_out)  # type: ignore[return-value]


def test_keras3_refuses_the_tf_keras_file(tf_keras_h5: Any) -> None:
    import keras

    path = tf_keras_h5[0]
    with pytest.raises(Exception, match=r"groups|Unrecognized"):
        keras.saving.load_model(path, compile=False)


def test_compat_path_runs_legacy_h5_and_matches_tf_keras(tf_keras_h5: Any) -> None:
    from inspector.activations import capture
    from inspector.loader import open_model
    from inspector.runtime import load_runnable

    path, expected, (x, dw_out) = tf_keras_h5
    with open_model(path) as index:
        model = load_runnable(index)
    got = np.asarray(call(model, x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    acts = capture(model, x, ["dw", "inner_seq/d2"])
    np.testing.assert_allclose(acts["dw"], dw_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acts["inner_seq/d2"], expected, rtol=1e-5, atol=1e-5)


def test_decompose_on_legacy_model(tf_keras_h5: Any) -> None:
    from inspector.decompose import decompose
    from inspector.loader import open_model
    from inspector.runtime import load_runnable

    path, _, (x, dw_out) = tf_keras_h5
    with open_model(path) as index:
        model = load_runnable(index)
        for layer, j in (("dw", 5), ("sep", 2), ("inner_seq/d1", 1)):
            dec = decompose(index, model, x, layer, j)
            assert dec.max_rel_error < 1e-5, (layer, dec.max_rel_error)
        dec = decompose(index, model, x, "dw", 5)
        # The depthwise output map 5 = input channel 2, multiplier 1, read by tf_keras itself.
        assert list(dec.input_channels) == [2]
        np.testing.assert_allclose(dec.output, dw_out[0, ..., 5], rtol=1e-5, atol=1e-5)
        dec = decompose(index, model, x, "conv", 1, fold_bn=True)
        assert dec.bn_folded and dec.max_rel_error < 1e-5 and dec.activation_error < 1e-5


def test_keras_file_and_in_memory_model(tmp_path: Path) -> None:
    import keras

    from inspector.loader import open_model
    from inspector.runtime import load_runnable

    inp = keras.Input((6, 6, 2))
    model = keras.Model(inp, keras.layers.Conv2D(3, 3, name="c")(inp))
    path = tmp_path / "m.keras"
    model.save(path)
    x = np.ones((1, 6, 6, 2), "float32")
    loaded = load_runnable(path)
    np.testing.assert_allclose(np.asarray(call(loaded, x)), np.asarray(call(model, x)), atol=1e-6)
    assert load_runnable(open_model(model)) is model
    assert load_runnable(model) is model


def test_weights_only_file_is_not_runnable(tmp_path: Path) -> None:
    import keras

    from inspector.errors import ModelNotRunnableError
    from inspector.runtime import load_runnable

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    with pytest.raises(ModelNotRunnableError) as info:
        load_runnable(path)
    message = str(info.value)
    assert "\n" not in message and "weights" in message and "Received" in message


def test_lambda_needs_opt_in(tmp_path: Path) -> None:
    import keras

    from inspector.errors import UnsafeModelError
    from inspector.runtime import load_runnable

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp))
    path = tmp_path / "lam.keras"
    model.save(path)
    with pytest.raises(UnsafeModelError) as info:
        load_runnable(path)
    assert "--unsafe" in str(info.value) and "\n" not in str(info.value)
    runnable = load_runnable(path, safe_mode=False)
    np.testing.assert_allclose(np.asarray(runnable(np.ones((1, 4), "float32"))), 2.0)


def test_unknown_custom_layer_is_not_runnable(tmp_path: Path) -> None:
    import keras

    from inspector.errors import InspectorError
    from inspector.runtime import load_runnable

    @keras.saving.register_keras_serializable(package="rt_test")
    class Twice(keras.layers.Layer):
        def call(self, t: Any) -> Any:
            return t * 2.0

    inp = keras.Input((4,))
    model = keras.Model(inp, Twice(name="twice")(inp))
    path = tmp_path / "custom.keras"
    model.save(path)
    keras.saving.get_custom_objects().pop("rt_test>Twice", None)  # as in a fresh process
    with pytest.raises(InspectorError) as info:
        load_runnable(path)
    assert "\n" not in str(info.value) and "Received" in str(info.value)


@pytest.mark.slow
def test_tf_keras_savedmodel_rebuilds(tmp_path: Path) -> None:
    """A tf_keras SavedModel carries layer configs (keras_metadata.pb): rebuilt and weights copied."""
    from inspector.loader import open_model
    from inspector.runtime import load_runnable

    model = _tf_keras_model()
    x = np.random.default_rng(4).standard_normal((1, *INPUT)).astype("float32")
    expected = model.predict(x, verbose=0)
    directory = tmp_path / "sm"
    model.save(directory, save_format="tf")
    with open_model(directory) as index:
        # tf_keras SavedModels carry keras_metadata.pb: the reader must expose the config (no skip).
        assert index.model_config is not None, "the SavedModel reader does not expose the model config"
        runnable = load_runnable(index)
    np.testing.assert_allclose(np.asarray(runnable(x)), expected, rtol=1e-5, atol=1e-5)
