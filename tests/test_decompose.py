"""Decomposition of one output map into input-channel contributions, checked against Keras.

Every row of tests/layer_table.py (plus a few rows with nonlinear activations) builds a one-layer
Functional model with random kernel AND bias. The truth is the model's own forward pass: for linear
rows, ``Σ contributions + bias`` must equal ``model(x)[..., j]``; for rows with a nonlinear
activation, ``act(Σ contributions + bias)`` must. A float64 scipy reference checks the numpy
cross-correlation independently of both Keras and the layer code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from inspector.kerascompat import call

pytestmark = pytest.mark.keras

REL_TOL = 1e-5


def _activation_rows() -> list[tuple[str, Callable[[], Any], tuple[int, ...]]]:
    """Extra rows with nonlinear activations (the shared table's layers are all linear)."""
    from layer_table import _L as L  # imports Keras only when a row is built

    return [
        ("act_conv2d_relu", lambda: L().Conv2D(4, 3, activation="relu"), (7, 7, 3)),
        ("act_conv2d_nobias_tanh", lambda: L().Conv2D(3, 3, use_bias=False, activation="tanh"), (6, 6, 2)),
        ("act_dw2d_relu", lambda: L().DepthwiseConv2D(3, depth_multiplier=2, dilation_rate=2,
                                                    activation="relu"), (8, 8, 2)),
        ("act_sep2d_elu", lambda: L().SeparableConv2D(3, 3, activation="elu"), (6, 6, 2)),
        ("act_conv2dT_relu", lambda: L().Conv2DTranspose(2, 3, strides=2, activation="relu"), (3, 3, 2)),
        ("act_dense_3d_sigmoid", lambda: L().Dense(4, activation="sigmoid"), (3, 6)),
    ]


def _all_rows() -> list[tuple[str, Callable[[], Any], tuple[int, ...]]]:
    """The shared tests/layer_table.py rows (LayerCase: id, build, input_shape) plus activation rows."""
    from layer_table import LAYER_TABLE  # tests/ is on sys.path (conftest.py)

    return [(case.id, case.build, tuple(case.input_shape)) for case in LAYER_TABLE] + _activation_rows()


def randomize(model: Any, seed: int = 0) -> None:
    """Random values for every variable (bias included, so a bias bug cannot hide behind zeros)."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        value = rng.standard_normal(tuple(var.shape)).astype("float32")
        if "variance" in var.path:
            value = np.abs(value) + 0.5
        var.assign(value)


def one_layer_model(builder: Callable[[], Any], shape: tuple[int, ...], seed: int = 0) -> Any:
    import keras

    inp = keras.Input(shape)
    layer = builder()
    model = keras.Model(inp, layer(inp))
    randomize(model, seed)
    return model


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "row" in metafunc.fixturenames:
        rows = _all_rows()
        metafunc.parametrize("row", rows, ids=[r[0] for r in rows])


def _check_row(row: tuple[str, Callable[[], Any], tuple[int, ...]]) -> None:
    import keras

    from inspector.decompose import decompose
    from inspector.filters import output_map_count
    from inspector.loader import open_model

    rid, builder, shape = row
    model = one_layer_model(builder, shape)
    index = open_model(model)
    record = next(r for r in index.layers if r.has_filters)
    layer = model.get_layer(record.name)
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype("float32")
    real = np.asarray(call(model, x))  # the layer's true activated output
    if getattr(layer, "data_format", "channels_last") == "channels_first" and real.ndim >= 3:
        real = np.moveaxis(real, 1, -1)
    linear = getattr(layer, "activation", None) in (None, keras.activations.linear)
    n_maps = output_map_count(record)
    for j in sorted({0, n_maps // 2, n_maps - 1}):
        dec = decompose(index, model, x, record.path, j, sample=1)
        truth = real[1][..., j]
        ours = dec.contributions.sum(axis=0) + dec.bias
        assert dec.contributions.shape == (len(dec.input_channels), *truth.shape), rid
        scale = max(float(np.abs(truth).max()), 1e-6)
        if linear:
            # Independent of our own reference: the model's forward pass IS the pre-activation.
            assert np.abs(ours - truth).max() / scale < REL_TOL, (rid, j)
        else:
            act = np.asarray(layer.activation(ours.astype("float32")))
            assert np.abs(act - truth).max() / scale < REL_TOL, (rid, j)
        assert dec.max_rel_error < REL_TOL, (rid, j, dec.max_rel_error)
        assert dec.activation_error <= 1e-5 * scale, (rid, j, dec.activation_error)
        np.testing.assert_allclose(dec.preactivation, ours)
        np.testing.assert_allclose(dec.output, truth, rtol=0, atol=1e-6 * scale)


def test_decomposition_sums_to_keras_output(row: tuple[str, Callable[[], Any], tuple[int, ...]]) -> None:
    _check_row(row)


def test_forward_conv_matches_scipy_reference() -> None:
    """Our numpy cross-correlation against scipy.signal.correlate, float64, a strided grouped conv."""
    from scipy.signal import correlate

    from inspector.decompose import _forward

    rng = np.random.default_rng(3)
    xs = rng.standard_normal((3, 9, 8))
    k = rng.standard_normal((3, 3, 2))
    ours = _forward(xs, k, (1, 1), (1, 1), "valid")
    ref = np.stack([correlate(xs[i], k[i], mode="valid") for i in range(3)])
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    strided = _forward(xs, k, (2, 3), (1, 1), "valid")
    np.testing.assert_allclose(strided, ref[:, ::2, ::3], rtol=1e-12, atol=1e-12)
    # 'same' pads TF-style (extra pad after); check against explicit padding then valid.
    same = _forward(xs, k, (1, 1), (1, 1), "same")
    padded = np.pad(xs, [(0, 0), (1, 1), (0, 1)])
    ref_same = np.stack([correlate(padded[i], k[i], mode="valid") for i in range(3)])
    np.testing.assert_allclose(same, ref_same, rtol=1e-12, atol=1e-12)


def test_ranking_and_energy_follow_contributions() -> None:
    import keras

    from inspector.decompose import decompose
    from inspector.loader import open_model

    model = one_layer_model(lambda: keras.layers.Conv2D(2, 3), (6, 6, 5), seed=4)
    index = open_model(model)
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 5)).astype("float32")
    dec = decompose(index, model, x, index.layers[-1].path, 1)
    energy = (dec.contributions**2).reshape(len(dec.contributions), -1).sum(1)
    np.testing.assert_allclose(dec.energy, energy)
    assert list(dec.ranking) == list(np.argsort(-energy, kind="stable"))
    assert dec.energy[dec.top(1)[0]] == energy.max()


def test_fold_bn_sums_to_bn_output_and_relu() -> None:
    import keras

    from inspector.activations import capture
    from inspector.decompose import decompose
    from inspector.loader import open_model

    inp = keras.Input((7, 7, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    out = keras.layers.ReLU(name="relu")(h)
    model = keras.Model(inp, out)
    randomize(model, 5)
    index = open_model(model)
    x = np.random.default_rng(2).standard_normal((1, 7, 7, 3)).astype("float32")
    truth = capture(model, x, ["bn", "relu"])
    for j in range(4):
        dec = decompose(index, model, x, "conv", j, fold_bn=True)
        assert dec.bn_folded
        ours = dec.contributions.sum(0) + dec.bias
        scale = np.abs(truth["bn"][0, ..., j]).max()
        assert np.abs(ours - truth["bn"][0, ..., j]).max() / scale < REL_TOL
        np.testing.assert_allclose(dec.output, truth["relu"][0, ..., j], atol=1e-6 * scale)
        assert dec.max_rel_error < REL_TOL and dec.activation_error < 1e-5 * scale


def test_nested_model_layer() -> None:
    import keras

    from inspector.activations import capture
    from inspector.decompose import decompose
    from inspector.loader import open_model

    inner = keras.Sequential([keras.layers.Conv2D(3, 3, name="c_in", activation="relu"),
                              keras.layers.Conv2D(2, 3, name="c_in2")], name="inner_seq")
    inp = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(4, 1, name="stem")(inp)
    out = inner(h * 0.5)  # a raw op between the stem and the nested model
    model = keras.Model(inp, out)
    randomize(model, 6)
    index = open_model(model)
    x = np.random.default_rng(3).standard_normal((2, 8, 8, 2)).astype("float32")
    real = capture(model, x, ["inner_seq/c_in2"])["inner_seq/c_in2"]
    np.testing.assert_allclose(real, np.asarray(call(model, x)), atol=1e-6)
    for j in range(2):
        dec = decompose(index, model, x, "inner_seq/c_in2", j, sample=1)
        ours = dec.contributions.sum(0) + dec.bias
        assert np.abs(ours - real[1, ..., j]).max() / np.abs(real[1, ..., j]).max() < REL_TOL
    assert len(dec.input_channels) == 3


def test_bad_requests_are_one_line_errors() -> None:
    import keras

    from inspector.decompose import decompose
    from inspector.errors import NotAFilterLayerError, SelectionError
    from inspector.loader import open_model

    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, name="conv")(inp)
    out = keras.layers.MaxPooling2D(name="pool")(h)
    model = keras.Model(inp, out)
    index = open_model(model)
    x = np.zeros((1, 6, 6, 2), "float32")
    with pytest.raises(NotAFilterLayerError) as info:
        decompose(index, model, x, "pool", 0)
    assert "\n" not in str(info.value) and "Received" in str(info.value)
    with pytest.raises(SelectionError) as info:
        decompose(index, model, x, "conv", 3)
    assert "0-2" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SelectionError):
        decompose(index, model, x, "conv", 0, fold_bn=True)  # no BN after it


def test_keras_channels_first_bias_quirk_is_reported_not_hidden() -> None:
    """Keras 3.15 (TF backend) adds a channels_first conv's bias along the width when width == filters.

    The decomposition follows the layer's math; the mismatch with the model's real output must show
    up in ``max_rel_error`` with a note, never be papered over.
    """
    import keras

    from inspector.decompose import decompose
    from inspector.loader import open_model

    model = one_layer_model(lambda: keras.layers.Conv2D(4, 3, strides=2, padding="same",
                                                        data_format="channels_first"), (3, 7, 7), seed=1)
    index = open_model(model)
    x = np.random.default_rng(1).standard_normal((1, 3, 7, 7)).astype("float32")
    kernel, bias = model.layers[-1].get_weights()
    if np.unique(bias).size < 2:
        pytest.skip("needs distinct biases")
    dec = decompose(index, model, x, index.layers[-1].path, 0)
    real = np.asarray(call(model, x))[0, 0]
    if np.abs(dec.preactivation - real).max() < 1e-4 * np.abs(real).max():
        pytest.skip("this Keras version adds channels_first biases correctly")
    assert dec.max_rel_error > 1e-3
    assert any("bias" in note for note in dec.notes)
    # With the bias removed, the two agree exactly: the kernels and the sum are right.
    model.layers[-1].set_weights([kernel, np.zeros_like(bias)])
    dec0 = decompose(index, model, x, index.layers[-1].path, 0)
    assert dec0.max_rel_error < REL_TOL


# -- capture once, split per map (LayerRun) ----------------------------------------------------------------

_FIELDS = ("contributions", "inputs", "kernels", "preactivation", "reference", "output", "energy", "ranking",
           "input_channels")
_SCALARS = ("bias", "max_abs_error", "max_rel_error", "activation_error", "activation", "notes", "bn_folded",
            "map_index", "sample_index", "layer_path", "class_name", "kind")


def _assert_same(a: Any, b: Any, where: object) -> None:
    for name in _FIELDS:
        u, v = getattr(a, name), getattr(b, name)
        assert u.shape == v.shape and u.dtype == v.dtype and np.array_equal(u, v), (where, name)
    for name in _SCALARS:
        assert getattr(a, name) == getattr(b, name), (where, name)


def test_layer_run_maps_equal_decompose(row: tuple[str, Callable[[], Any], tuple[int, ...]]) -> None:
    """Every map of one prepared run equals a fresh decompose() of that map, bit for bit."""
    from inspector.decompose import decompose, prepare_decomposition
    from inspector.filters import output_map_count
    from inspector.loader import open_model

    rid, builder, shape = row
    model = one_layer_model(builder, shape)
    index = open_model(model)
    record = next(r for r in index.layers if r.has_filters)
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype("float32")
    run = prepare_decomposition(index, model, x, record.path, sample=1)
    assert run.n_maps == output_map_count(record) and not run.inputs_cf.flags.writeable
    for j in range(run.n_maps):
        dec = run.decompose(j)
        _assert_same(dec, decompose(index, model, x, record.path, j, sample=1), (rid, j))
        assert dec.max_rel_error < REL_TOL, (rid, j)


def test_layer_run_with_fold_bn_equals_decompose() -> None:
    import keras

    from inspector.decompose import decompose, prepare_decomposition
    from inspector.loader import open_model

    inp = keras.Input((7, 7, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)
    out = keras.layers.BatchNormalization(name="bn2")(h)  # no activation after it
    model = keras.Model(inp, out)
    randomize(model, 5)
    index = open_model(model)
    x = np.random.default_rng(2).standard_normal((2, 7, 7, 3)).astype("float32")
    for path, n_maps in (("conv", 4), ("dw", 8)):
        for fold in (True, False):
            run = prepare_decomposition(index, model, x, path, fold_bn=fold, sample=1)
            for j in range(n_maps):
                dec = run.decompose(j)
                _assert_same(dec, decompose(index, model, x, path, j, fold_bn=fold, sample=1), (path, fold, j))
                assert dec.bn_folded is fold and dec.max_rel_error < REL_TOL
    assert any("relu" in n for n in prepare_decomposition(index, model, x, "conv", fold_bn=True).notes)


def test_layer_run_bad_requests() -> None:
    import keras

    from inspector.decompose import prepare_decomposition
    from inspector.errors import NotAFilterLayerError, SelectionError
    from inspector.loader import open_model

    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, name="conv")(inp)
    model = keras.Model(inp, keras.layers.MaxPooling2D(name="pool")(h))
    index = open_model(model)
    x = np.zeros((1, 6, 6, 2), "float32")
    with pytest.raises(NotAFilterLayerError):
        prepare_decomposition(index, model, x, "pool")
    with pytest.raises(SelectionError, match="Received"):
        prepare_decomposition(index, model, x, "conv", fold_bn=True)
    with pytest.raises(SelectionError, match="Received: 1"):
        prepare_decomposition(index, model, x, "conv", sample=1)
    run = prepare_decomposition(index, model, x, "conv")
    with pytest.raises(SelectionError) as info:
        run.decompose(3)
    assert "0-2" in str(info.value) and "\n" not in str(info.value)
