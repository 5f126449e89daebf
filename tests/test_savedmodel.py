"""The pure-Python SavedModel reader against Keras and TensorFlow themselves.

Each writer of docs/formats.md §4 saves the same tiny model (Conv2D without bias, BN, DepthwiseConv2D
M=2, SeparableConv2D, GAP, Dropout (Keras 3 only), a frozen Dense, nested Sequential) into pytest's tmp
dirs; the index must agree with the live model (paths, classes where recoverable, shapes, count_params, trainable split,
exact values) and with ``tf.train.load_checkpoint`` (every key, shape, dtype and value).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import inspector
from inspector.errors import CorruptModelError
from inspector.readers.protowire import Message, WireError, read_varint, signed64
from inspector.readers.tensorbundle import OBJECT_GRAPH_KEY, TensorBundle, read_sstable

pytestmark = pytest.mark.keras

WRITERS = ["export", "tf_save", "tf_keras", "tf24_style"]
WITH_METADATA = {"tf_keras", "tf24_style"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    """One SavedModel per writer, with Keras's own description of the model it came from."""
    import savedmodel_fixtures as fx

    root = tmp_path_factory.mktemp("savedmodels")
    return {
        "export": fx.build_keras3_export(root / "export"),
        "tf_save": fx.build_tf_saved_model_save(root / "tf_save"),
        "tf_keras": fx.build_tf_keras_save(root / "tf_keras"),
        "tf24_style": fx.build_old_tf2_style(root / "tf24_style"),
    }


def _weighted(index: inspector.ModelIndex) -> list:
    return [layer for layer in index.layers if layer.weights]


# -- each writer against Keras -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("writer", WRITERS)
def test_layers_params_and_shapes_match_keras(saved, writer):
    directory, ref = saved[writer]
    index = inspector.open_model(directory)
    assert index.format is inspector.ModelFormat.SAVEDMODEL
    assert [layer.path for layer in _weighted(index)] == list(ref.layers)
    for layer in _weighted(index):
        expected = ref.layers[layer.path]
        assert layer.class_name == expected.class_name, layer.path
        assert layer.kind_inferred is (writer not in WITH_METADATA)
        assert [w.name for w in layer.weights] == list(expected.weights), layer.path
        assert [w.shape for w in layer.weights] == [v.shape for v in expected.weights.values()]
        assert layer.params == expected.params, layer.path
    assert index.total_params == ref.total_params
    assert index.input_shapes == [ref.input_shape]
    assert index.output_shapes == [ref.output_shape]
    assert index.writer is not None and index.writer.startswith("TensorFlow 2.")
    if writer in WITH_METADATA:
        # Every layer of the config, weightless ones included, with its exact output shape.
        assert [layer.path for layer in index.layers] == ref.all_paths
        assert index.has_architecture and index.name == "tiny"
        assert "tf.keras" in index.writer
    else:
        assert not index.has_architecture
        assert any("inferred" in w for w in index.warnings)


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["export", "tf_keras", "tf24_style"])
def test_trainable_flags_match_keras(saved, writer):
    directory, ref = saved[writer]
    index = inspector.open_model(directory)
    assert index.trainable_params == ref.trainable_params
    for layer in _weighted(index):
        assert {w.name: w.trainable for w in layer.weights} == ref.layers[layer.path].trainable, layer.path


@pytest.mark.slow
def test_tf_saved_model_save_trainable_limitation_is_reported(saved):
    """tf.saved_model.save keeps only the tf.Variable flag: right for BN statistics, blind to frozen layers."""
    directory, ref = saved["tf_save"]
    index = inspector.open_model(directory)
    for layer in _weighted(index):
        flags = {w.name: w.trainable for w in layer.weights}
        if layer.path == "fc":  # frozen in Keras; the file cannot say so
            assert set(ref.layers["fc"].trainable.values()) == {False}
            assert set(flags.values()) == {True}
        else:
            assert flags == ref.layers[layer.path].trainable, layer.path
    assert any("trainable=False" in w for w in index.warnings)


@pytest.mark.slow
@pytest.mark.parametrize("writer", WRITERS)
def test_tensor_values_equal_keras_weights(saved, writer):
    directory, ref = saved[writer]
    with inspector.open_model(directory) as index:
        for layer in _weighted(index):
            for ref_name, value in ref.layers[layer.path].weights.items():
                tensor = layer.weight(ref_name)
                assert tensor is not None, (layer.path, ref_name)
                whole = tensor.read()
                assert whole.dtype == value.dtype
                np.testing.assert_array_equal(whole, value)
                # A slice goes through the memory map and must agree too.
                np.testing.assert_array_equal(tensor.read((..., -1)), value[..., -1])


@pytest.mark.slow
@pytest.mark.parametrize("writer", sorted(WITH_METADATA))
def test_configs_give_specs_and_connectivity(saved, writer):
    directory, _ = saved[writer]
    index = inspector.open_model(directory)
    conv, dw, sep = index.layer("convA"), index.layer("dw"), index.layer("sep")
    assert conv.spec is not None and conv.spec.use_bias is False and conv.spec.kernel_size == (3, 3)
    assert dw.spec is not None and dw.spec.depth_multiplier == 2
    assert sep.spec is not None and sep.spec.filters == 5
    assert index.layer("inner_seq/d_in").inbound == ("fc",)
    assert index.layer("gap").output_shape == (None, 5)


@pytest.mark.slow
@pytest.mark.parametrize("writer", sorted(WITH_METADATA))
def test_optimizer_and_metric_variables_are_skipped_and_counted(saved, writer):
    import tensorflow as tf

    directory, _ = saved[writer]
    keys = [k for k, _ in tf.train.list_variables(str(directory / "variables" / "variables"))]
    not_model = [k for k in keys if k.startswith(("optimizer/", "keras_api/metrics/")) or ".OPTIMIZER_SLOT" in k]
    assert not_model  # the fixture was trained one step, so the checkpoint holds Adam state and metrics
    index = inspector.open_model(directory)
    assert any(w.startswith(f"left out {len(not_model)} checkpoint variable") for w in index.warnings)


# -- the checkpoint reader against TensorFlow ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("writer", WRITERS)
def test_bundle_matches_tf_load_checkpoint(saved, writer):
    import tensorflow as tf

    directory, _ = saved[writer]
    prefix = str(directory / "variables" / "variables")
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    bundle = TensorBundle(prefix)
    assert set(bundle.entries) == set(shapes)
    for key, shape in shapes.items():
        entry = bundle.entries[key]
        assert entry.shape == tuple(shape), key
        value = bundle.read(key)
        if key == OBJECT_GRAPH_KEY:
            assert value.reshape(-1)[0] == reader.get_tensor(key)
        else:
            np.testing.assert_array_equal(value, reader.get_tensor(key))


@pytest.mark.slow
def test_bundle_dtypes_match_tf(tmp_path):
    """Every dtype a Keras model may hold, written by tf.train.Checkpoint and read back without TF."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    values = {
        "f32": rng.standard_normal((3, 4)).astype("float32"),
        "f64": rng.standard_normal((5,)),
        "f16": rng.standard_normal((2, 3)).astype("float16"),
        "i64": np.array([-(2**40), 7, 2**50], dtype="int64"),
        "i32": np.array([[-5, 6]], dtype="int32"),
        "i8": np.array([-128, 127], dtype="int8"),
        "u8": np.array([0, 255], dtype="uint8"),
        "flag": np.array([True, False, True]),
        "scalar": np.float32(2.5),
    }
    variables = {k: tf.Variable(v) for k, v in values.items()}
    variables["bf16"] = tf.Variable(tf.constant(rng.standard_normal((4, 2)), dtype=tf.bfloat16))
    variables["text"] = tf.Variable(tf.constant([b"alpha", b"", b"gamma\x00delta"]))
    prefix = tf.train.Checkpoint(**variables).write(str(tmp_path / "ckpt"))
    reader = tf.train.load_checkpoint(prefix)
    bundle = TensorBundle(prefix)
    dtypes = {}
    for key in reader.get_variable_to_shape_map():
        if key == OBJECT_GRAPH_KEY:
            continue
        expected = reader.get_tensor(key)
        got = bundle.read(key)
        name = key.split("/", 1)[0]
        dtypes[name] = bundle.entries[key].dtype
        if name == "bf16":
            np.testing.assert_array_equal(got, expected.astype("float32"))
        elif name == "text":
            assert list(got) == list(expected)
        else:
            assert got.dtype == expected.dtype, key
            np.testing.assert_array_equal(got, expected)
    assert dtypes["bf16"] == "bfloat16" and dtypes["f16"] == "float16" and dtypes["text"] == "string"
    assert len(dtypes) == len(variables)


def test_protowire_decodes_protobuf_messages():
    """Messages serialized by the protobuf package (negative int64, packed ints, nested, map) decode."""
    pytest.importorskip("google.protobuf")
    from tensorflow.core.framework import tensor_shape_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    shape = tensor_shape_pb2.TensorShapeProto(dim=[{"size": -1}, {"size": 2**40}, {"size": 3, "name": "c"}])
    decoded = Message(shape.SerializeToString())
    assert [d.int64(1) for d in decoded.messages(2)] == [-1, 2**40, 3]
    assert decoded.messages(2)[2].string(2) == "c"
    sig = meta_graph_pb2.SignatureDef(method_name="m")
    sig.inputs["x"].name = "x:0"
    sig.inputs["x"].dtype = 1
    sig.inputs["x"].tensor_shape.CopyFrom(shape)
    entries = Message(sig.SerializeToString()).map_entries(1)
    assert entries["x"].string(1) == "x:0" and entries["x"].int(2) == 1
    assert read_varint(b"\xac\x02", 0) == (300, 2)
    assert signed64(2**64 - 1) == -1



def test_protowire_references_equal_the_general_decoder():
    """``Message.references`` (the object graphs' edge lists, decoded without a Message per edge) gives the
    general decoder's pairs, and its errors, on references serialized by protobuf and on odd encodings."""
    pytest.importorskip("google.protobuf")
    from tensorflow.core.protobuf import saved_object_graph_pb2, trackable_object_graph_pb2

    def general(message: Message) -> list[tuple[str, int]] | str:
        try:
            return [(m.string(2), m.int(1)) for m in message.messages(1)]
        except WireError as exc:
            return f"WireError {exc}"

    def fast(message: Message) -> list[tuple[str, int]] | str:
        try:
            return message.references(1)
        except WireError as exc:
            return f"WireError {exc}"

    node = trackable_object_graph_pb2.TrackableObjectGraph.TrackableObject()
    for node_id, name in [(0, ""), (5, "kernel"), (127, "b"), (128, "c" * 127), (2**20, "é" * 100), (7, "x" * 300)]:
        node.children.add(node_id=node_id, local_name=name)
    saved = saved_object_graph_pb2.SavedObject()
    saved.children.add(node_id=3, local_name="layer_with_weights-0")
    for blob in (node.SerializeToString(), saved.SerializeToString()):
        message = Message(blob)
        assert fast(message) == general(message) and len(message.references(1)) >= 1
    # Hand-made encodings: fields reversed or repeated (last wins), an unknown field, a truncated
    # varint or string, a number where a message belongs.
    odd = [b"\x12\x01a\x08\x05", b"\x08\x01\x08\x02\x12\x01a\x12\x01b", b"\x18\x07\x08\x05\x12\x01z",
           b"\x08", b"\x08\xff", b"\x12\x05ab", b"\x12", b""]
    for child in odd:
        message = Message(b"\x0a" + bytes([len(child)]) + child)
        assert fast(message) == general(message), child
    assert fast(Message(b"\x08\x05")) == general(Message(b"\x08\x05"))

# -- TensorFlow stays out, bad input gives one-line errors -------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("writer", WRITERS)
def test_open_model_never_imports_tensorflow(saved, writer):
    directory, _ = saved[writer]
    code = (
        "import inspector, sys; index = inspector.open_model(sys.argv[1]); "
        "[w.read() for layer in index.layers for w in layer.weights]; "
        "assert 'tensorflow' not in sys.modules and 'google.protobuf' not in sys.modules, 'imported'; "
        "print(index.total_params)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) == saved[writer][1].total_params


def _copy(saved, tmp_path: Path, writer: str = "export") -> Path:
    target = tmp_path / "model"
    shutil.copytree(saved[writer][0], target)
    return target


def _one_line_corrupt(directory: Path) -> str:
    with pytest.raises(CorruptModelError) as info:
        inspector.open_model(directory)
    message = str(info.value)
    assert "\n" not in message and "Received:" in message
    return message


@pytest.mark.slow
def test_corrupt_index_footer(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    index_path = directory / "variables" / "variables.index"
    data = bytearray(index_path.read_bytes())
    data[-8:] = b"\x00" * 8
    index_path.write_bytes(bytes(data))
    assert "footer magic" in _one_line_corrupt(directory)


@pytest.mark.slow
def test_truncated_index(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    index_path = directory / "variables" / "variables.index"
    index_path.write_bytes(index_path.read_bytes()[: 30])
    _one_line_corrupt(directory)


@pytest.mark.slow
def test_garbage_inside_index_block(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    index_path = directory / "variables" / "variables.index"
    data = bytearray(index_path.read_bytes())
    data[: len(data) - 48] = b"\xff" * (len(data) - 48)  # every block destroyed, footer intact
    index_path.write_bytes(bytes(data))
    _one_line_corrupt(directory)


@pytest.mark.slow
def test_snappy_block_is_reported(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    index_path = directory / "variables" / "variables.index"
    data = bytearray(index_path.read_bytes())
    footer = data[-48:]
    _, pos = read_varint(footer, 0)
    _, pos = read_varint(footer, pos)
    offset, pos = read_varint(footer, pos)
    size, _ = read_varint(footer, pos)
    data[offset + size] = 1  # the index block's trailer now says "snappy"
    index_path.write_bytes(bytes(data))
    assert "snappy" in _one_line_corrupt(directory)


@pytest.mark.slow
def test_missing_data_shard(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    (directory / "variables" / "variables.data-00000-of-00001").unlink()
    assert "variables.data-00000-of-00001" in _one_line_corrupt(directory)


@pytest.mark.slow
def test_truncated_data_shard(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    shard = directory / "variables" / "variables.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:100])
    assert "truncated" in _one_line_corrupt(directory)


@pytest.mark.slow
def test_damaged_saved_model_pb(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    pb = directory / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: 1000])
    _one_line_corrupt(directory)


@pytest.mark.slow
def test_cli_summary_reads_savedmodel(saved):
    directory, ref = saved["tf_keras"]
    result = subprocess.run([sys.executable, "-m", "inspector", "summary", "--json", str(directory)],
                            capture_output=True, text=True, timeout=120, env={**os.environ})
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads(result.stdout)
    assert summary["total_params"] == ref.total_params and summary["format"] == "savedmodel"


def test_sstable_reader_on_shipped_sample():
    """The sample SavedModel in the repository: keys come out sorted and include the bundle header."""
    sample = Path(__file__).resolve().parent.parent / "sample_models" / "digits_cnn_savedmodel"
    assert (sample / "variables" / "variables.index").is_file(), f"sample SavedModel missing: {sample}"
    keys = [k for k, _ in read_sstable(str(sample / "variables" / "variables.index"))]
    assert keys[0] == b"" and keys == sorted(keys) and OBJECT_GRAPH_KEY.encode() in keys
    header = Message(dict(read_sstable(str(sample / "variables" / "variables.index")))[b""])
    assert header.int(1, 1) == 1


@pytest.mark.slow
def test_tf_keras_sequential_with_recurrent_sublayers(tmp_path):
    """A top-level tf.keras Sequential; RNN cells and Bidirectional halves are found as sub-layers."""
    import tf_keras
    from tf_keras import layers

    model = tf_keras.Sequential([tf_keras.Input((5, 3)), layers.LSTM(4, return_sequences=True, name="lstm"),
                                 layers.Bidirectional(layers.GRU(2), name="bi"), layers.Dense(2, name="out")],
                                name="seqm")
    model.save(str(tmp_path / "seq"), save_format="tf")
    index = inspector.open_model(tmp_path / "seq")
    assert index.paths == [layer.name for layer in model.layers]
    assert index.total_params == model.count_params()
    assert index.layer("lstm").weight("cell/recurrent_kernel") is not None
    assert [w.name for w in index.layer("bi").weights][:1] == ["forward_layer/cell/kernel"]
    for layer in index.layers:
        keras_layer = model.get_layer(layer.name)
        assert layer.class_name == type(keras_layer).__name__
        assert layer.params == keras_layer.count_params()
        for ref, var in zip(layer.weights, keras_layer.weights, strict=True):
            np.testing.assert_array_equal(ref.read(), var.numpy())
    assert index.output_shapes == [tuple(model.output_shape)]


@pytest.mark.slow
def test_keras3_export_folds_rnn_cells_and_splits_shared_scopes(tmp_path):
    """Export keeps only variable paths: RNN cells fold into their layer; a subclassed model's shared
    name scope is split into one record per layer, in variable order."""
    import keras
    from keras import layers

    inputs = keras.Input((5, 3))
    x = layers.LSTM(4, return_sequences=True, name="lstm")(inputs)
    outputs = layers.Bidirectional(layers.GRU(2), name="bi")(x)
    rnn = keras.Model(inputs, outputs)
    rnn.export(str(tmp_path / "rnn"), verbose=False)
    index = inspector.open_model(tmp_path / "rnn")
    assert index.paths == ["lstm", "bi"]
    for layer in index.layers:
        keras_layer = rnn.get_layer(layer.path)
        assert layer.params == keras_layer.count_params()
        assert layer.kind is inspector.LayerKind.RNN
        for ref, var in zip(layer.weights, keras_layer.weights, strict=True):
            np.testing.assert_array_equal(ref.read(), var.numpy())
    assert [w.name for w in index.layer("bi").weights][:2] == ["forward_layer/cell/kernel",
                                                              "forward_layer/cell/recurrent_kernel"]

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="subnet")
            self.conv = layers.Conv2D(3, 3)
            self.bn = layers.BatchNormalization()
            self.head = layers.Dense(2)

        def call(self, x):
            return self.head(layers.Flatten()(self.bn(self.conv(x))))

    net = Net()
    net(np.zeros((1, 6, 6, 2), "float32"))
    net.export(str(tmp_path / "sub"), verbose=False)
    index = inspector.open_model(tmp_path / "sub")
    assert index.total_params == net.count_params()
    assert [layer.class_name for layer in index.layers] == ["Conv2D", "BatchNormalization", "Dense"]
    for layer, keras_layer in zip(index.layers, [net.conv, net.bn, net.head], strict=True):
        assert [w.shape for w in layer.weights] == [tuple(v.shape) for v in keras_layer.weights]
        for ref, var in zip(layer.weights, keras_layer.weights, strict=True):
            np.testing.assert_array_equal(ref.read(), var.numpy())
