"""Legacy HDF5 reader: real tiny models saved by Keras 3, tf_keras 2 and in the Keras 2.0.5 layout,
read back and compared with what the live Keras model says (docs/formats.md §3)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import h5py
import legacy_fixtures as fx
import numpy as np
import pytest

import inspector
from inspector import CorruptModelError, LayerKind, ModelFormat, UnsupportedFormatError
from inspector.readers.legacy_h5 import writer_name

pytestmark = pytest.mark.keras

KINDS = ("zoo", "nested", "sequential")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, fx.ModelRef]]:
    """Every file once per module: saving is the slow part (Keras graph building)."""
    d = tmp_path_factory.mktemp("legacy")
    out: dict[str, tuple[Path, fx.ModelRef]] = {}
    for kind in KINDS:
        out[f"k3/{kind}"] = fx.save_keras3(kind, d)
        out[f"k3keras/{kind}"] = fx.save_keras3(kind, d, suffix=".keras")
        out[f"tk/{kind}"] = fx.save_tf_keras(kind, d)
        out[f"tkw/{kind}"] = fx.save_tf_keras(kind, d, weights_only=True)
    out["k205"] = fx.write_keras205_h5(d / "keras205.h5")
    return out


def _check_layers(index: inspector.ModelIndex, ref: fx.ModelRef, *, check_trainable: bool = True) -> None:
    """Weight names, shapes, values, per-layer params and trainable flags equal Keras's own."""
    owning = {layer.path: layer for layer in index.layers if layer.weights}
    assert sorted(owning) == sorted(ref.layers)
    for path, expected in ref.layers.items():
        layer = owning[path]
        assert layer.params == expected.params, path
        assert [w.name for w in layer.weights] == list(expected.weights), path
        for ref_w in layer.weights:
            want = expected.weights[ref_w.name]
            assert ref_w.shape == want.shape, (path, ref_w.name)
            np.testing.assert_array_equal(ref_w.read(), want, err_msg=f"{path}/{ref_w.name}")
            if check_trainable:
                assert ref_w.trainable == expected.trainable[ref_w.name], (path, ref_w.name)
    assert index.total_params == ref.total_params
    if check_trainable:
        assert index.trainable_params == ref.trainable_params
        assert index.non_trainable_params == ref.non_trainable_params


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("writer", "label"), [("k3", "Keras 3."), ("tk", "tf.keras 2.")])
def test_full_model_matches_keras(files: dict[str, Any], writer: str, label: str, kind: str) -> None:
    path, ref = files[f"{writer}/{kind}"]
    with inspector.open_model(path) as index:
        assert index.format is ModelFormat.LEGACY_H5
        assert index.has_architecture
        assert index.writer is not None and index.writer.startswith(label)
        assert index.model_config is not None and index.model_config["class_name"] in ("Functional", "Sequential")
        assert index.paths == ref.all_paths  # model order, nested models flattened with '/'
        _check_layers(index, ref)
        for layer_path, shape in ref.output_shapes.items():
            assert index.layer(layer_path).output_shape == shape, layer_path
        assert not index.warnings
        # Every tensor reads by file offset, so no HDF5 handle stays open.
        assert not index.holds_resources


@pytest.mark.parametrize("writer", ["k3", "tk"])
def test_conv_zoo_kinds_and_specs(files: dict[str, Any], writer: str) -> None:
    path, ref = files[f"{writer}/zoo"]
    with inspector.open_model(path) as index:
        kinds = {layer.name: layer.kind for layer in index.layers}
        assert kinds["conv"] is kinds["grouped"] is kinds["c1d"] is kinds["c3d"] is LayerKind.CONV
        assert kinds["dw"] is kinds["dw1d"] is LayerKind.DEPTHWISE
        assert kinds["sep"] is kinds["sep1d"] is LayerKind.SEPARABLE
        assert kinds["tr"] is kinds["tr1d"] is kinds["tr3d"] is LayerKind.TRANSPOSE
        assert kinds["bn"] is LayerKind.NORM and kinds["lstm"] is LayerKind.RNN and kinds["head"] is LayerKind.DENSE
        # tf.keras's depthwise_kernel is indexed under the Keras 3 name.
        assert index.layer("dw").kernel is not None and index.layer("dw").kernel.name == "kernel"
        grouped = index.layer("grouped").spec
        assert grouped is not None and grouped.groups == 2
        tr = index.layer("tr").spec
        assert tr is not None and tr.strides == (2, 2)
        # Output shapes come from the config (consumers) or formulas (model outputs); all equal Keras's.
        assert ref.output_shapes
        for path, shape in ref.output_shapes.items():
            assert index.layer(path).output_shape == shape, path
        assert index.output_shapes == [ref.output_shapes["head"]]
        assert index.layer("cat").inbound == ("gap", "lstm", "gap3d")


def test_keras205_layout(files: dict[str, Any]) -> None:
    path, ref = files["k205"]
    with h5py.File(path, "r") as h5:  # the fixture really has the 2.0.5 quirks under test
        assert h5["model_weights"].attrs["layer_names"].dtype.kind == "S"
        assert h5["model_weights/activation_1"].attrs["weight_names"].dtype == np.float64
        assert "conv2d_1_1" in h5["model_weights/conv2d_1"]
    with inspector.open_model(path) as index:
        assert index.format is ModelFormat.LEGACY_H5
        assert index.writer == "Keras 2.0.5"
        assert index.model_config is not None and index.model_config["class_name"] == "Model"
        assert index.paths == ref.all_paths
        _check_layers(index, ref)
        assert "optimizer_weights" not in " ".join(w.location for layer in index.layers for w in layer.weights)
        assert index.input_shapes == [(None, 16, 16, 1)]
        assert index.layer("add_1").inbound == ("activation_1", "separable_conv2d_1")
        assert index.layer("separable_conv2d_1").kind is LayerKind.SEPARABLE


@pytest.mark.parametrize("kind", KINDS)
def test_save_weights_file(files: dict[str, Any], kind: str) -> None:
    path, ref = files[f"tkw/{kind}"]
    with inspector.open_model(path) as index:
        assert index.format is ModelFormat.LEGACY_WEIGHTS_H5
        assert not index.has_architecture
        assert index.writer == "tf.keras 2.21.0"
        assert index.total_params == ref.total_params
        assert index.trainable_params is None  # a weights file cannot say
        assert all(layer.kind_inferred for layer in index.layers)
        # tf.keras weight names carry no nested-model scopes, so deeper nesting than one level cannot be
        # recovered: compare by layer name, and paths wherever nesting is one level.
        by_name = {layer.name: layer for layer in index.layers}
        assert sorted(by_name) == sorted(p.rsplit("/", 1)[-1] for p in ref.layers)
        for ref_path, expected in ref.layers.items():
            layer = by_name[ref_path.rsplit("/", 1)[-1]]
            if ref_path.count("/") <= 1:
                assert layer.path == ref_path
            assert layer.params == expected.params
            assert [w.name for w in layer.weights] == list(expected.weights)
            for w in layer.weights:
                np.testing.assert_array_equal(w.read(), expected.weights[w.name])
            if expected.class_name in ("DepthwiseConv2D", "DepthwiseConv1D", "SeparableConv2D", "SeparableConv1D",
                                       "BatchNormalization", "LSTM", "Dense"):
                assert layer.class_name == expected.class_name, ref_path


def test_keras_and_legacy_h5_agree(files: dict[str, Any]) -> None:
    for kind in KINDS:
        h5_path, _ = files[f"k3/{kind}"]
        keras_path, _ = files[f"k3keras/{kind}"]
        with inspector.open_model(h5_path) as a, inspector.open_model(keras_path) as b:
            assert a.paths == b.paths
            for la, lb in zip(a.layers, b.layers, strict=True):
                assert [(w.name, w.shape) for w in la.weights] == [(w.name, w.shape) for w in lb.weights], la.path
                assert la.params == lb.params and la.kind is lb.kind
                assert la.output_shape == lb.output_shape and la.inbound == lb.inbound, la.path
            assert (a.total_params, a.trainable_params) == (b.total_params, b.trainable_params)
            assert a.input_shapes == b.input_shapes and a.output_shapes == b.output_shapes


def test_keras3_raw_ops_are_not_layers(tmp_path: Path) -> None:
    """Keras 3's legacy writer drops `module`, so `x + y` looks like an Add layer; it must not become one."""
    import keras

    inp = keras.Input((5, 4), name="seq_in")
    a = keras.layers.LSTM(3, return_sequences=True, name="lstm")(inp)
    b = keras.layers.Dense(3, name="dd")(inp)
    out = keras.layers.Dense(2, name="out")(keras.ops.relu(a + b))
    model = keras.Model(inp, out)
    model.save(tmp_path / "raw.h5")
    model.save(tmp_path / "raw.keras")
    with inspector.open_model(tmp_path / "raw.h5") as h5, inspector.open_model(tmp_path / "raw.keras") as ka:
        assert h5.paths == [layer.name for layer in model.layers] == ka.paths
        assert h5.layer("out").inbound == ("lstm", "dd") == ka.layer("out").inbound
        assert h5.total_params == model.count_params()


def test_file_is_not_modified(files: dict[str, Any]) -> None:
    path, _ = files["tk/nested"]
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with inspector.open_model(path) as index:
        for layer in index.layers:
            for w in layer.weights:
                w.read()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_sliced_read_equals_full_read(files: dict[str, Any]) -> None:
    path, ref = files["k3/zoo"]
    with inspector.open_model(path) as index:
        kernel = index.layer("sep").weight("pointwise_kernel")
        assert kernel is not None
        np.testing.assert_array_equal(kernel.read((0, 0, slice(None), 3)),
                                      ref.layers["sep"].weights["pointwise_kernel"][0, 0, :, 3])


# -- bad input --------------------------------------------------------------------------------------

def _one_line(exc: BaseException, path: Path) -> None:
    text = str(exc)
    assert "\n" not in text and "Received:" in text and str(path) in text


def test_hdf5_that_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.random.default_rng(0).standard_normal((4, 4)))
        f.create_group("stuff").create_dataset("y", data=np.arange(3))
    with pytest.raises(UnsupportedFormatError) as info:
        inspector.open_model(path)
    _one_line(info.value, path)


def test_truncated_h5(files: dict[str, Any], tmp_path: Path) -> None:
    src, _ = files["k3/zoo"]
    path = tmp_path / "cut.h5"
    data = src.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptModelError) as info:
        inspector.open_model(path)
    _one_line(info.value, path)


def test_missing_weight_dataset(files: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "edited.h5"
    shutil.copy(files["tk/zoo"][0], path)
    with h5py.File(path, "r+") as f:
        del f["model_weights/conv/conv/kernel:0"]
    with pytest.raises(CorruptModelError) as info:
        inspector.open_model(path)
    _one_line(info.value, path)
    assert "kernel" in str(info.value)


def test_bad_model_config_json(files: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "badjson.h5"
    shutil.copy(files["tk/sequential"][0], path)
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = '{"class_name": "Sequential", "config": {'
    with pytest.raises(CorruptModelError) as info:
        inspector.open_model(path)
    _one_line(info.value, path)


def test_listed_layer_without_group(files: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "nogroup.h5"
    shutil.copy(files["tkw/sequential"][0], path)
    with h5py.File(path, "r+") as f:
        del f["fc"]
    with pytest.raises(CorruptModelError) as info:
        inspector.open_model(path)
    _one_line(info.value, path)


@pytest.mark.parametrize(("version", "expected"), [
    ("3.15.1", "Keras 3.15.1"), ("2.21.0", "tf.keras 2.21.0"), ("2.0.5", "Keras 2.0.5"),
    ("2.3.0-tf", "tf.keras 2.3.0"), ("2.3.1", "Keras 2.3.1"), (None, None),
])
def test_writer_name(version: str | None, expected: str | None) -> None:
    assert writer_name(version) == expected


def _as_keras20_sequential(entry: dict[str, Any]) -> dict[str, Any]:
    """Keras <= 2.2 spelling of a Sequential config: the bare layer list, the input shape on the first layer."""
    layers = [dict(e) for e in entry["config"]["layers"]]
    if layers and layers[0]["class_name"] == "InputLayer":
        shape = layers.pop(0)["config"]["batch_input_shape"]
        layers[0]["config"] = {**layers[0]["config"], "batch_input_shape": shape}
    layers = [_as_keras20_sequential(e) if e["class_name"] == "Sequential" else e for e in layers]
    return {"class_name": "Sequential", "config": layers}


def test_keras20_sequential_list_config(files: dict[str, Any], tmp_path: Path) -> None:
    import json

    path = tmp_path / "seq20.h5"
    src, ref = files["tk/sequential"]
    shutil.copy(src, path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        f.attrs["model_config"] = np.bytes_(json.dumps(_as_keras20_sequential(config)).encode())
    with inspector.open_model(path) as index:
        assert isinstance(index.model_config["config"], list)  # the stored config, untouched
        assert index.paths == ref.all_paths
        _check_layers(index, ref)
        assert index.input_shapes == [(None, 8, 8, 2)] == [index.layer("conv").input_shape]


def test_known_variable_order_agrees_with_weight_names(files: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers of a known class are indexed without reading their weight_names list (their variable order
    is known); every fixture must give exactly the index the list gives, and the fast path must be taken."""
    from inspector.readers import legacy_h5

    def describe(path: Path) -> list[tuple[str, list[tuple[str, tuple[int, ...], str]]]]:
        with inspector.open_model(path) as index:
            return [(layer.path, [(w.name, w.shape, w.location) for w in layer.weights]) for layer in index]

    h5_files = {key: path for key, (path, _) in files.items() if path.suffix == ".h5"}
    fast = {key: describe(path) for key, path in h5_files.items()}
    taken = []
    real = legacy_h5._in_known_order

    def counting(*args: Any) -> Any:
        out = real(*args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(legacy_h5, "_in_known_order", counting)
    for path in h5_files.values():
        describe(path)
    assert sum(taken) >= 10  # conv, BN and dense layers of the zoo in every writer's file
    monkeypatch.setattr(legacy_h5, "_in_known_order", lambda *args: None)
    assert {key: describe(path) for key, path in h5_files.items()} == fast
