"""Index details beyond the zoo matrix: optimizer state, lookups, dtypes, other writers, laziness."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import inspector
from inspector.errors import LayerNotFoundError

pytestmark = pytest.mark.keras


def _small_cnn(name: str = "cnn") -> Any:
    import keras

    L = keras.layers
    return keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="conv_a"), L.BatchNormalization(name="bn"),
                             L.DepthwiseConv2D(3, name="dw"), L.Flatten(), L.Dense(2, name="out")], name=name)


@contextlib.contextmanager
def _edited_weights(source: Path, target: Path) -> Iterator[h5py.File]:
    """Copy a ``.keras`` archive to ``target``, with its ``model.weights.h5`` opened for editing in between."""
    with zipfile.ZipFile(source) as src:
        weights = target.with_suffix(".weights.h5")
        weights.write_bytes(src.read("model.weights.h5"))
        with h5py.File(weights, "r+") as h5:
            yield h5
        with zipfile.ZipFile(target, "w") as dst:
            for member in ("metadata.json", "config.json"):
                dst.writestr(member, src.read(member))
            dst.write(weights, "model.weights.h5")


def test_optimizer_state_is_not_a_layer(tmp_path: Path) -> None:
    model = _small_cnn()
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 8, 8, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "t.keras")
    model.save(tmp_path / "t.h5")
    model.save_weights(tmp_path / "t.weights.h5")
    with h5py.File(tmp_path / "t.weights.h5") as h5:
        assert "optimizer" in h5  # the fixture really carries optimizer state
    for name in ("t.keras", "t.h5", "t.weights.h5"):
        with inspector.open_model(tmp_path / name) as index:
            assert index.total_params == model.count_params(), name
            assert not any("optimizer" in layer.path for layer in index), name


def test_lookup_suggests_close_matches(tmp_path: Path) -> None:
    _small_cnn().save(tmp_path / "m.keras")
    with inspector.open_model(tmp_path / "m.keras") as index:
        assert index.layer("conv_a").path == "conv_a"
        with pytest.raises(LayerNotFoundError) as info:
            index.layer("conv_b")
        assert "conv_a" in str(info.value) and "Received: 'conv_b'" in str(info.value)
        assert isinstance(info.value, KeyError)


def test_nested_lookup_by_unique_name(tmp_path: Path) -> None:
    import keras

    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="deep")], name="inner")
    inp = keras.Input((3,))
    keras.Model(inp, inner(inp)).save(tmp_path / "n.keras")
    with inspector.open_model(tmp_path / "n.keras") as index:
        assert index.layer("deep").path == "inner/deep"
        assert index.layer("inner/deep").params == 8


def test_bfloat16_layer_is_decoded(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, dtype="bfloat16", name="bf")])
    model.save(tmp_path / "bf.keras")
    with inspector.open_model(tmp_path / "bf.keras") as index:
        ref = index.layer("bf").kernel
        assert ref.dtype == "bfloat16" and ref.nbytes == 4 * 3 * 2
        expected = np.asarray(model.layers[0].kernel.numpy(), dtype="float32")
        np.testing.assert_array_equal(ref.read(), expected)
        np.testing.assert_array_equal(ref.read((slice(None), 1)), expected[:, 1])


def test_tf_keras_archive(tmp_path: Path) -> None:
    """tf_keras 2.x writes .keras too: no name attributes, depthwise_kernel, a metrics group."""
    code = (
        "import tf_keras as k, numpy as np\n"
        "L = k.layers\n"
        "m = k.Sequential([k.Input((8, 8, 3)), L.Conv2D(4, 3, name='c'), L.DepthwiseConv2D(3, name='dw'),"
        " L.Flatten(), L.Dense(2, name='d')])\n"
        "m.compile('adam', 'mse', metrics=['mae'])\n"
        "m.fit(np.zeros((2, 8, 8, 3)), np.zeros((2, 2)), verbose=0)\n"
        f"m.save({str(tmp_path / 'tfk.keras')!r})\n"
        "print(m.count_params(), [l.count_params() for l in m.layers])\n"
        f"np.save({str(tmp_path / 'dw.npy')!r}, m.get_layer('dw').get_weights()[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    total, per_layer = out.stdout.strip().splitlines()[-1].split(" ", 1)
    with inspector.open_model(tmp_path / "tfk.keras") as index:
        assert index.total_params == int(total)
        assert [layer.params for layer in index] == eval(per_layer)  # list printed by the writer process
        dw = index.layer("dw")
        assert dw.kind == "depthwise" and dw.kernel is not None and dw.kernel.name == "kernel"
        np.testing.assert_array_equal(dw.kernel.read(), np.load(tmp_path / "dw.npy"))


def test_keras_without_name_attributes(tmp_path: Path) -> None:
    """Keras 3.0-3.5 files have no 'name' attribute on vars groups: groups are matched by class-derived name."""
    model = _small_cnn()
    model.save(tmp_path / "new.keras")
    old = tmp_path / "old.keras"
    with _edited_weights(tmp_path / "new.keras", old) as h5:
        h5.visititems(lambda name, obj: obj.attrs.__delitem__("name") if "name" in obj.attrs else None)
    with inspector.open_model(old) as index:
        assert [layer.path for layer in index] == [layer.name for layer in model.layers]
        np.testing.assert_array_equal(index.layer("dw").kernel.read(), model.get_layer("dw").kernel.numpy())


def test_keras_groups_out_of_line_with_class_names(tmp_path: Path) -> None:
    """An empty group at a layer's class-derived name is trusted without reading its name attribute (a
    speed-up: most layers hold no weights), but only while every group holding data is claimed. Here the
    expected group of 'conv_a' is an empty decoy, and its real group sits under another name: the reader
    must notice the unclaimed data and match groups by their name attributes."""
    model = _small_cnn()
    model.save(tmp_path / "new.keras")
    edited = tmp_path / "moved.keras"
    with _edited_weights(tmp_path / "new.keras", edited) as h5:
        layers = h5["layers"]
        expected = next(key for key in layers if layers[key]["vars"].attrs.get("name") == "conv_a")
        layers.move(expected, "moved_elsewhere")
        decoy = layers.create_group(expected).create_group("vars")
        decoy.attrs["name"] = "not_conv_a"
    with inspector.open_model(edited) as index:
        assert [layer.params for layer in index] == [layer.count_params() for layer in model.layers]
        np.testing.assert_array_equal(index.layer("conv_a").kernel.read(), model.get_layer("conv_a").kernel.numpy())


def test_reading_a_slice_reads_only_that_slice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slice is copied out of a memory map of the tensor's bytes; the whole tensor is never read for it.

    Every path that moves tensor bytes is instrumented: ``np.fromfile`` (whole-tensor reads) records
    the bytes it returns, ``np.memmap`` records the region it maps and the bytes copied out of it, and
    h5py dataset reads are refused outright.
    """
    model = _small_cnn()
    model.save(tmp_path / "m.keras")
    truth = model.get_layer("conv_a").kernel.numpy()
    whole_reads: list[int] = []  # bytes returned by np.fromfile
    maps: list[tuple[int, ...]] = []  # shapes of the regions mapped
    copied: list[int] = []  # bytes taken out of a map
    real_fromfile, real_memmap = np.fromfile, np.memmap

    def counting_fromfile(*args: Any, **kwargs: Any) -> np.ndarray:
        out = real_fromfile(*args, **kwargs)
        whole_reads.append(out.nbytes)
        return out

    class CountingMap:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._mapped = real_memmap(*args, **kwargs)
            maps.append(tuple(self._mapped.shape))

        def __getitem__(self, index: Any) -> Any:
            part = self._mapped[index]
            copied.append(np.asarray(part).nbytes)
            return part

    def refuse_h5py(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tensor bytes read through h5py")

    with inspector.open_model(tmp_path / "m.keras") as index:
        kernel = index.layer("conv_a").kernel
        assert kernel.shape == truth.shape == (3, 3, 3, 4)
        monkeypatch.setattr(np, "fromfile", counting_fromfile)
        monkeypatch.setattr(np, "memmap", CountingMap)
        monkeypatch.setattr(h5py.Dataset, "__getitem__", refuse_h5py)

        part = kernel.read((..., 2))
        np.testing.assert_array_equal(part, truth[..., 2])
        assert whole_reads == []  # no whole-tensor read for a slice
        assert maps == [truth.shape]  # only this tensor's own bytes were mapped
        assert copied == [truth[..., 2].nbytes] and copied[0] < truth.nbytes  # 1 of 4 maps: 108 of 432 bytes

        rows = kernel.read((slice(0, 2), 1))
        np.testing.assert_array_equal(rows, truth[0:2, 1])
        assert whole_reads == [] and copied[1:] == [truth[0:2, 1].nbytes] and copied[1] < truth.nbytes

        # The whole tensor, by contrast, is one plain read of exactly its bytes.
        full = kernel.read()
        np.testing.assert_array_equal(full, truth)
        assert whole_reads == [truth.nbytes] and len(copied) == 2


def test_model_file_is_never_modified(tmp_path: Path) -> None:
    _small_cnn().save(tmp_path / "m.keras")
    before = (tmp_path / "m.keras").read_bytes()
    mtime = (tmp_path / "m.keras").stat().st_mtime_ns
    with inspector.open_model(tmp_path / "m.keras") as index:
        for layer in index:
            for w in layer.weights:
                w.read()
    assert (tmp_path / "m.keras").read_bytes() == before
    assert (tmp_path / "m.keras").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_summary_json_contract(tmp_path: Path) -> None:
    import json

    model = _small_cnn()
    model.save(tmp_path / "m.keras")
    out = subprocess.run([sys.executable, "-m", "inspector", "summary", str(tmp_path / "m.keras"), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # exactly one JSON object
    assert data["format"] == "keras"
    assert data["total_params"] == model.count_params()
    assert data["trainable_params"] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert [entry["path"] for entry in data["layers"]] == [layer.name for layer in model.layers]
    assert sum(entry["params"] for entry in data["layers"]) == data["total_params"]
    conv = data["layers"][0]
    assert conv["class_name"] == "Conv2D" and conv["kind"] == "conv" and conv["output_shape"] == [None, 6, 6, 4]
    assert conv["weights"][0] == {"name": "kernel", "shape": [3, 3, 3, 4], "dtype": "float32", "trainable": True}


def test_summary_table_rows_sum_to_total(tmp_path: Path) -> None:
    """torchinfo-style invariant: the params column sums to the printed total."""
    from inspector.commands.summary import format_table

    model = _small_cnn()
    model.save(tmp_path / "m.keras")
    with inspector.open_model(tmp_path / "m.keras") as index:
        text = format_table(index, weights=False)  # params is then the last column
        names = {layer.path for layer in index}
    rows = [line for line in text.splitlines() if line.split() and line.split()[0] in names]
    assert len(rows) == len(model.layers)
    column = sum(int(line.split()[-1].replace(",", "")) for line in rows)
    total = int(next(line for line in text.splitlines() if line.startswith("Total params")).split()[2]
                .replace(",", ""))
    assert column == total == model.count_params()


# -- owned resources and the reader registry (readers/__init__.py contract) -------------------------------

def test_index_closes_what_it_owns_last_registered_first() -> None:
    calls: list[str] = []

    class Handle:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            calls.append(self.name)

    index = inspector.ModelIndex(format=inspector.ModelFormat.WEIGHTS_H5, source="x", layers=[])
    assert not index.holds_resources
    window = Handle("window")
    assert index.own(window) is window
    index.add_closer(lambda: calls.append("h5"))
    assert index.holds_resources
    with index:
        pass
    assert calls == ["h5", "window"] and not index.holds_resources
    index.close()  # idempotent: nothing runs twice
    assert calls == ["h5", "window"]
    index.own(Handle("late"))  # registering on a closed index closes at once: nothing leaks
    assert calls == ["h5", "window", "late"] and not index.holds_resources


def test_every_sniffed_kind_has_a_reader() -> None:
    from inspector.readers import READERS, reader_for
    from inspector.sniff import Sniffed

    assert set(READERS) == set(Sniffed)
    assert all(callable(reader_for(kind)) for kind in Sniffed)


def _write_h5(path: Path, build: Any) -> Path:
    with h5py.File(path, "w") as h5:
        build(h5)
    return path


def test_sniff_decides_hdf5_sub_kinds(tmp_path: Path) -> None:
    from inspector.sniff import Sniffed, sniff

    samples = Path(__file__).resolve().parent.parent / "sample_models"
    assert sniff(str(samples / "digits_cnn.keras")) is Sniffed.KERAS_ZIP
    assert sniff(str(samples / "digits_cnn.h5")) is Sniffed.LEGACY_H5
    assert sniff(str(samples / "digits_cnn.weights.h5")) is Sniffed.WEIGHTS_H5
    assert sniff(str(samples / "digits_cnn_savedmodel")) is Sniffed.SAVEDMODEL
    assert sniff(str(samples / "digits_cnn_savedmodel" / "saved_model.pb")) is Sniffed.SAVEDMODEL

    def keras2_weights(h5: h5py.File) -> None:
        h5.attrs["layer_names"] = [b"dense"]
        h5.create_group("dense").attrs["weight_names"] = [b"dense/kernel:0"]

    def subclassed_weights(h5: h5py.File) -> None:
        h5.create_group("block1/vars").create_dataset("0", data=np.ones((2, 2), "float32"))

    cases = {
        "config.h5": (lambda h5: h5.attrs.__setitem__("model_config", "{}"), Sniffed.LEGACY_H5),
        "k2.h5": (keras2_weights, Sniffed.LEGACY_WEIGHTS_H5),
        # A model_weights group without a model_config has always gone to the Keras 2 weights reader.
        "mw.h5": (lambda h5: h5.create_group("model_weights"), Sniffed.LEGACY_WEIGHTS_H5),
        "k3.weights.h5": (lambda h5: h5.create_group("layers/dense/vars"), Sniffed.WEIGHTS_H5),
        "sub.weights.h5": (subclassed_weights, Sniffed.WEIGHTS_H5),
    }
    for name, (build, kind) in cases.items():
        assert sniff(str(_write_h5(tmp_path / name, build))) is kind, name


def test_compressed_weights_keep_their_handle_until_close(tmp_path: Path) -> None:
    """A gzip dataset cannot be read by file offset, so the index owns the HDF5 handle until closed."""

    def build(h5: h5py.File) -> None:
        g = h5.create_group("layers/dense/vars")
        g.attrs["name"] = "dense"
        g.create_dataset("0", data=np.arange(6, dtype="float32").reshape(3, 2), compression="gzip")
        g.create_dataset("1", data=np.zeros((2,), "float32"))

    path = _write_h5(tmp_path / "gz.weights.h5", build)
    index = inspector.open_model(path)
    with index:
        assert index.holds_resources
        np.testing.assert_array_equal(index.layer("dense").kernel.read(), np.arange(6).reshape(3, 2))
    assert not index.holds_resources
    with pytest.raises(Exception):  # noqa: B017 - h5py's error for a closed file varies by version
        index.layer("dense").kernel.read()


@pytest.mark.parametrize("name", ["digits_cnn.keras", "digits_cnn.h5", "digits_cnn.weights.h5",
                                  "digits_cnn_savedmodel", "shapes_rgb.keras", "shapes_rgb.h5"])
def test_indexing_leaves_no_cyclic_garbage(name: str) -> None:
    """Indexing pauses the cyclic collector, so whatever it builds must be freed by reference counts alone:
    a reference cycle left behind (a recursive closure, a tree pointing back at its root) would keep a deep
    model's whole parse alive until the collector's next full pass, and make that pass slow."""
    import gc

    path = Path(__file__).resolve().parent.parent / "sample_models" / name
    inspector.open_model(path).close()  # first use: imports and caches
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        with inspector.open_model(path) as index:
            assert index.total_params > 0
        del index
        gc.collect()
        left = [type(obj).__name__ for obj in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []
