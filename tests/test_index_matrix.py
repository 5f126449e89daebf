"""The index agrees with Keras for every zoo model in every format (docs/formats.md §1-4).

Ground truth comes from the live model (``count_params()``, ``trainable_weights``, variable values);
the index under test is built from the saved files without TensorFlow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zoo import ZOO, ZooModel, expected_layers, randomize

import inspector
from inspector.records import ModelFormat, ModelIndex

pytestmark = pytest.mark.keras

FORMATS = ["keras", "weights.h5", "h5", "savedmodel", "in-memory"]


@pytest.fixture(scope="session")
def zoo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, dict[str, Path]]]:
    """Every zoo model, randomised and saved in every format it supports."""
    folder = tmp_path_factory.mktemp("zoo")
    built: dict[str, tuple[Any, dict[str, Path]]] = {}
    for i, entry in enumerate(ZOO):
        model = entry.build()
        randomize(model, seed=i)
        files: dict[str, Path] = {}
        files["keras"] = folder / f"{entry.name}.keras"
        model.save(files["keras"])
        files["weights.h5"] = folder / f"{entry.name}.weights.h5"
        model.save_weights(files["weights.h5"])
        if entry.legacy_h5:
            files["h5"] = folder / f"{entry.name}.h5"
            model.save(files["h5"])
        if entry.savedmodel:
            files["savedmodel"] = folder / f"{entry.name}_savedmodel"
            model.export(files["savedmodel"], verbose=False)
        built[entry.name] = (model, files)
    return built


def _open(fmt: str, model: Any, files: dict[str, Path]) -> ModelIndex:
    if fmt == "in-memory":
        return inspector.open_model(model)
    return inspector.open_model(files[fmt])


def _key(path: str, fmt: str) -> str:
    # A Keras 3 export keeps only variable paths, which for layers of a nested model built on its own do
    # not carry the outer model's name; compare those by layer name.
    return path.rsplit("/", 1)[-1] if fmt == "savedmodel" else path


def _formats_of(entry: ZooModel) -> list[str]:
    """The formats Keras can write the model in (its legacy .h5 writer refuses subclassed models)."""
    return [f for f in FORMATS if (f != "h5" or entry.legacy_h5) and (f != "savedmodel" or entry.savedmodel)]


@pytest.mark.parametrize(("entry", "fmt"), [(z, f) for z in ZOO for f in _formats_of(z)],
                         ids=[f"{z.name}-{f}" for z in ZOO for f in _formats_of(z)])
def test_index_matches_keras(entry: ZooModel, fmt: str, zoo_files: dict[str, Any]) -> None:
    model, files = zoo_files[entry.name]
    expected = list(expected_layers(model))
    with _open(fmt, model, files) as index:
        assert index.total_params == model.count_params()
        weights_only = not index.has_architecture
        if not entry.functional:
            # Subclassed models are stored by attribute name: compare what does not depend on naming.
            got = sorted(w.shape for layer in index for w in layer.weights)
            want = sorted(s for e in expected for s in e.shapes)
            assert got == want
            return
        by_path = {_key(layer.path, fmt): layer for layer in index}
        if fmt == "savedmodel":
            # A Keras 3 export cannot tell a wrapper (TimeDistributed 'td' holding 'td/dense/kernel') from a
            # nested model 'td' with a layer 'dense'; the reader reads it as nesting. Index those by wrapper.
            by_path.update({layer.path.split("/", 1)[0]: layer for layer in index if "/" in layer.path})
        with_weights = [e for e in expected if e.params]
        for exp in with_weights:
            layer = by_path.get(_key(exp.path, fmt))
            assert layer is not None, f"{exp.path} missing; index has {sorted(by_path)}"
            assert layer.params == exp.params, exp.path
            assert tuple(w.shape for w in layer.weights) == exp.shapes, exp.path
            for ref, value in zip(layer.weights, exp.values, strict=True):
                np.testing.assert_array_equal(ref.read(), value, err_msg=f"{exp.path}/{ref.name}")
            if layer.trainable_params is not None:
                assert layer.trainable_params == exp.trainable, exp.path
            else:
                assert weights_only or layer.custom, f"{exp.path}: trainable split unknown"
        assert with_weights, "the zoo model must hold weights"
        if fmt == "savedmodel":
            # A Keras 3 export keeps no layer list (weightless layers are gone), but the layers that hold
            # weights come in Keras's order: each matched by key, and nothing else holds weights.
            assert weights_only
            assert [layer.path for layer in index if layer.params] == [
                by_path[_key(e.path, fmt)].path for e in with_weights]
        elif not weights_only:
            # Architecture formats list every layer, weightless ones too, in Keras's order.
            assert fmt in ("keras", "h5", "in-memory"), fmt
            assert [e.path for e in expected] == [
                layer.path for layer in index if layer.kind != "input" or fmt == "in-memory"
                or any(e.path == layer.path for e in expected)
            ]
        else:
            # Weights-only: the order is not checked here. Sorting layers by their first dataset's offset
            # (docs/formats.md) does not give Keras's order for conv_kinds and rnn_norms.
            assert fmt == "weights.h5", fmt


@pytest.mark.parametrize("fmt", ["keras", "weights.h5", "h5", "savedmodel"])
def test_summary_never_imports_tensorflow(fmt: str, zoo_files: dict[str, Any]) -> None:
    _, files = zoo_files["conv_kinds"]
    code = (
        "import sys, json, io, contextlib\n"
        "from inspector.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    rc = main(['summary', {str(files[fmt])!r}, '--json'])\n"
        "assert rc == 0, rc\n"
        "data = json.loads(buf.getvalue())\n"
        "assert data['total_params'] > 0\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]\n"
        "print('IMPORTED', bad)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr + result.stdout
    assert "IMPORTED []" in result.stdout


def test_seed_example_parameter_counts(tmp_path: Path) -> None:
    """Conv2D(32, 5) on 28x28x3 then Conv2D(64, 5), no bias: 2400 + 51200 parameters."""
    import keras

    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Conv2D(32, 5, use_bias=False, name="c1"),
                              keras.layers.Conv2D(64, 5, use_bias=False, name="c2")])
    model.save(tmp_path / "seed.keras")
    with inspector.open_model(tmp_path / "seed.keras") as index:
        assert [layer.params for layer in index] == [model.layers[0].count_params(), model.layers[1].count_params()]
        assert index.layer("c2").params == 5 * 5 * 32 * 64 == 51200
        assert index.layer("c1").output_shape == (None, 24, 24, 32)
        assert index.layer("c2").output_shape == (None, 20, 20, 64)
        assert index.format is ModelFormat.KERAS


def test_sharded_weights(tmp_path: Path, zoo_files: dict[str, Any]) -> None:
    model, _ = zoo_files["conv_kinds"]
    manifest = tmp_path / "sharded.weights.json"
    model.save_weights(manifest, max_shard_size=0.000002)  # ~2 kB shards: forces several files
    assert len(list(tmp_path.glob("*.weights.h5"))) > 1
    with inspector.open_model(manifest) as index:
        assert index.format is ModelFormat.WEIGHTS_SHARDED
        assert index.total_params == model.count_params()
        kernel = index.layer("dw2d").kernel
        np.testing.assert_array_equal(kernel.read(), model.get_layer("dw2d").kernel.numpy())
