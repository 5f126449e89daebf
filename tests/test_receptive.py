"""Receptive-field boxes against the empirical receptive field of real Keras models.

The empirical field of a unit is the set of input pixels that change it: the models run in float64
with every weight in [0.5, 1.5] (so nothing cancels and max pooling passes an increase on), and one
batch holds the base input plus one copy per pixel with that pixel raised by 1000. A unit's box is
the bounding box of the pixels whose copy moved it; it must equal :func:`receptive_field`'s box for
every position and every map of every layer of the zoo.
"""

from __future__ import annotations

import numpy as np
import pytest

from inspector.activations import capture
from inspector.errors import InspectorError
from inspector.kerascompat import import_keras
from inspector.loader import open_model
from inspector.receptive import ReceptiveFieldError, layer_output_size, receptive_field


def _keras():
    return import_keras()


def strides_padding():
    keras = _keras()
    L = keras.layers
    inp = keras.Input((13, 16, 2))
    x = L.Conv2D(3, 3, name="c1")(inp)
    x = L.Conv2D(3, 4, strides=2, padding="same", name="c2")(x)  # even kernel: the extra pixel after
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(3, 3, dilation_rate=2, padding="same", activation="relu", name="c3")(x)
    return keras.Model(inp, x), ["c1", "c2", "pool", "c3"]


def transposed():
    keras = _keras()
    L = keras.layers
    inp = keras.Input((9, 10, 2))
    x = L.Conv2D(3, 3, strides=2, padding="same", name="down")(inp)
    x = L.Conv2DTranspose(3, 3, strides=2, padding="same", name="up")(x)
    x = L.Conv2DTranspose(2, 4, strides=3, padding="valid", output_padding=1, name="up2")(x)
    x = L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same", name="up_dil")(x)
    return keras.Model(inp, x), ["down", "up", "up2", "up_dil"]


def branches():
    keras = _keras()
    L = keras.layers
    inp = keras.Input((12, 11, 2))
    small = L.Conv2D(2, 1, name="small")(inp)
    big = L.Conv2D(2, 5, padding="same", name="big")(inp)
    added = L.Add(name="add")([small, big])
    cat = L.Concatenate(name="cat")([small, big])
    act = L.Activation("relu", name="act")(cat)  # map j still comes from one branch
    x = L.ZeroPadding2D(((1, 2), (0, 1)), name="zpad")(added)
    x = L.Cropping2D(((2, 0), (1, 1)), name="crop")(x)
    x = L.UpSampling2D(2, name="upsample")(x)
    x = L.AveragePooling2D(3, strides=2, padding="same", name="avg")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.SeparableConv2D(2, 3, strides=2, name="sep")(x)
    return keras.Model(inp, [x, act]), ["add", "cat", "act", "zpad", "crop", "upsample", "avg", "dw", "sep"]


def nested():
    keras = _keras()
    L = keras.layers
    inner = keras.Sequential([keras.Input((12, 12, 3)), L.Conv2D(3, 3, strides=2, name="ic"),
                              L.MaxPooling2D(2, strides=1, name="ipool")], name="inner")
    inp = keras.Input((14, 14, 2))
    x = L.Conv2D(3, 3, name="pre")(inp)
    x = inner(x)
    x = L.Conv2D(2, 3, padding="same", name="post")(x)
    return keras.Model(inp, x), ["pre", "inner/ic", "inner/ipool", "post"]


def conv1d():
    keras = _keras()
    L = keras.layers
    inp = keras.Input((21, 2))
    x = L.Conv1D(3, 3, padding="causal", dilation_rate=2, name="causal")(inp)
    x = L.Conv1D(3, 4, strides=2, padding="same", name="same1d")(x)
    x = L.MaxPooling1D(3, strides=2, name="pool1d")(x)
    return keras.Model(inp, x), ["causal", "same1d", "pool1d"]


def channels_first():
    keras = _keras()
    L = keras.layers
    inp = keras.Input((2, 12, 13))
    x = L.Conv2D(3, 3, strides=2, padding="same", data_format="channels_first", name="cf1")(inp)
    x = L.MaxPooling2D(2, padding="same", data_format="channels_first", name="cfpool")(x)
    x = L.Conv2D(2, 3, dilation_rate=2, padding="same", data_format="channels_first", name="cf2")(x)
    return keras.Model(inp, x), ["cf1", "cfpool", "cf2"]


ZOO = {f.__name__: f for f in (strides_padding, transposed, branches, nested, conv1d, channels_first)}


def _positive_weights(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "layers"):
            _positive_weights(layer, seed + 1)
            continue
        if layer.weights:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    keras = _keras()
    before = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("float64")
    built = {}
    try:
        for n, (name, make) in enumerate(ZOO.items()):
            model, layers = make()
            _positive_weights(model, n)
            path = tmp_path_factory.mktemp("rf") / f"{name}.keras"
            model.save(path)
            built[name] = (model, layers, path)
        yield built
    finally:
        keras.config.set_dtype_policy(before)


def _empirical(model, path: str, cf: bool, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis first/end pixel that moves each unit: arrays (rank, *out_spatial, C)."""
    rng = np.random.default_rng(0)
    spatial = shape[1:] if cf else shape[:-1]
    base = rng.uniform(0.0, 1.0, (1, *shape))
    batch = np.repeat(base, int(np.prod(spatial)), axis=0)
    for n, pos in enumerate(np.ndindex(*spatial)):
        where = (n, slice(None), *pos) if cf else (n, *pos, slice(None))
        batch[where] += 1000.0
    acts = capture(model, np.concatenate([base, batch]), [path])[path]  # channels_last
    ref, moved = acts[0], acts[1:]
    changed = np.abs(moved - ref) > 1e-9 * (np.abs(ref).max() + 1.0)
    changed = changed.reshape(*spatial, *ref.shape)
    rank = len(spatial)
    lo, hi = [], []
    for a in range(rank):
        other = tuple(b for b in range(rank) if b != a)
        along = changed.any(axis=other) if other else changed  # (n_a, *out, C)
        hit = along.any(axis=0)
        first = np.argmax(along, axis=0)
        last = spatial[a] - np.argmax(along[::-1], axis=0)
        lo.append(np.where(hit, first, 0))
        hi.append(np.where(hit, last, 0))
    return np.stack(lo), np.stack(hi)


@pytest.mark.parametrize("name", list(ZOO))
def test_boxes_equal_empirical_receptive_field(zoo, name):
    model, layers, path = zoo[name]
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    cf = name == "channels_first"
    spatial = shape[1:] if cf else shape[:-1]
    with open_model(path) as index:
        for layer in layers:
            lo, hi = _empirical(model, layer, cf, shape)
            n_maps = lo.shape[-1]
            assert layer_output_size(index, layer, spatial) == lo.shape[1:-1], layer
            union = receptive_field(index, layer, spatial)
            for j in range(n_maps):
                field = receptive_field(index, layer, spatial, map_index=j).grid()
                rank = len(spatial)
                np.testing.assert_array_equal(field[..., :rank], np.moveaxis(lo[..., j], 0, -1),
                                              err_msg=f"{name} {layer} map {j} starts")
                np.testing.assert_array_equal(field[..., rank:], np.moveaxis(hi[..., j], 0, -1),
                                              err_msg=f"{name} {layer} map {j} ends")
                whole = union.grid()
                seen = field[..., rank:] > field[..., :rank]
                assert np.all((whole[..., :rank] <= field[..., :rank]) | ~seen)
                assert np.all(whole[..., rank:] >= field[..., rank:])


def test_concatenate_boxes_follow_the_branch_of_the_map(zoo):
    _, _, path = zoo["branches"]
    with open_model(path) as index:
        small = receptive_field(index, "act", (12, 11), map_index=0)  # from the 1x1 branch
        big = receptive_field(index, "act", (12, 11), map_index=3)  # from the 5x5 branch
        assert small.box((5, 5)) == (5, 5, 6, 6)
        assert big.box((5, 5)) == (3, 3, 8, 8)
        assert receptive_field(index, "act", (12, 11)).box((5, 5)) == (3, 3, 8, 8)


def test_textbook_sizes_and_box_api(zoo):
    _, _, path = zoo["strides_padding"]
    with open_model(path) as index:
        field = receptive_field(index, "c1", (13, 16))
        assert field.box((0, 0)) == (0, 0, 3, 3)
        assert field.max_extent == (3, 3)
        np.testing.assert_array_equal(field.boxes(np.array([[0, 0], [10, 13]])), [[0, 0, 3, 3], [10, 13, 13, 16]])
        with pytest.raises(ReceptiveFieldError):
            field.box((1,))
        with pytest.raises(ReceptiveFieldError):
            receptive_field(index, "c1", (0, 5))


def test_layers_that_move_positions_otherwise_are_refused(tmp_path):
    keras = _keras()
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(2, 3, name="c")(inp)
    x = L.Reshape((6, 12, 1), name="reshape")(x)
    x = L.Conv2D(2, 3, name="after")(x)
    x = L.UpSampling2D(2, interpolation="bilinear", name="bilinear")(x)
    model = keras.Model(inp, x)
    model.save(tmp_path / "m.keras")
    with open_model(tmp_path / "m.keras") as index:
        for layer in ("after", "bilinear"):
            with pytest.raises(ReceptiveFieldError) as info:
                receptive_field(index, layer, (8, 8))
            assert isinstance(info.value, InspectorError) and "\n" not in str(info.value)
            assert "Received:" in str(info.value)
