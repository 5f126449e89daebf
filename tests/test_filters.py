"""FilterSets against real Keras forward passes, for every row of the layer table.

The reference is independent of inspector: single-channel cross-correlation with
``scipy.signal.correlate(mode="valid")`` on a manually (TF-style) padded input, subsampled by the
stride, with the kernel dilated by inserting zeros; transposed convs by scattering
``out[p·s + q·d − pb] += x[p]·w[q]`` (docs/formats.md §5.2). Only the FilterSets (kernels, input channels,
bias) decide which input channels and which kernels are used.
"""

from __future__ import annotations

import importlib.util
import itertools
import math

import numpy as np
import pytest
from layer_table import LAYER_TABLE, LayerCase
from scipy import signal

from inspector import LayerKind, NotAFilterLayerError, SelectionError, open_model
from inspector.filters import (
    FilterSet,
    consumers_of_map,
    filters_for_layer,
    filters_for_map,
    filters_for_maps,
    input_channel_count,
    output_map_count,
)
from inspector.kerascompat import call
from inspector.selectors import parse_maps, parse_selector

# -- independent reference ---------------------------------------------------------------------------


def _dilate(w: np.ndarray, d: tuple[int, ...]) -> np.ndarray:
    shape = tuple((k - 1) * dd + 1 for k, dd in zip(w.shape, d, strict=True))
    out = np.zeros(shape)
    out[tuple(slice(None, None, dd) for dd in d)] = w
    return out


def xcorr(x: np.ndarray, w: np.ndarray, s: tuple[int, ...], d: tuple[int, ...], padding: str) -> np.ndarray:
    """Single-channel N-D cross-correlation with TF padding rules (docs/formats.md §5.3)."""
    pads = []
    for n, k, ss, dd in zip(x.shape, w.shape, s, d, strict=True):
        k_eff = (k - 1) * dd + 1
        if padding == "valid":
            pads.append((0, 0))
        elif padding == "causal":
            pads.append((k_eff - 1, 0))
        else:
            out = math.ceil(n / ss)
            total = max((out - 1) * ss + k_eff - n, 0)
            pads.append((total // 2, total - total // 2))
    xp = np.pad(x, pads)
    full = signal.correlate(xp, _dilate(w, d), mode="valid")
    return full[tuple(slice(None, None, ss) for ss in s)]


def scatter_transpose(x: np.ndarray, w: np.ndarray, s: tuple[int, ...], d: tuple[int, ...], padding: str,
                      out_shape: tuple[int, ...]) -> np.ndarray:
    """Single-channel transposed conv: out[p·s + q·d − pb] += x[p]·w[q]."""
    pbs = []
    for n_in, n_out, k, ss, dd in zip(x.shape, out_shape, w.shape, s, d, strict=True):
        total = max((n_in - 1) * ss + (k - 1) * dd + 1 - n_out, 0) if padding == "same" else 0
        pbs.append(total // 2)
    out = np.zeros(out_shape)
    for p in itertools.product(*(range(n) for n in x.shape)):
        for q in itertools.product(*(range(k) for k in w.shape)):
            pos = tuple(pp * ss + qq * dd - pb for pp, qq, ss, dd, pb in zip(p, q, s, d, pbs, strict=True))
            if all(0 <= t < n for t, n in zip(pos, out_shape, strict=True)):
                out[pos] += x[p] * w[q]
    return out


def reference_map(fs: FilterSet, layer, x_cl: np.ndarray, out_spatial: tuple[int, ...]) -> np.ndarray:
    """Output map ``fs.map_index`` for one channels-last sample, from the FilterSet alone."""
    bias = 0.0 if fs.bias is None else fs.bias
    if fs.kind is LayerKind.DENSE:
        return x_cl[..., fs.input_channels] @ fs.kernels + bias
    spec = layer.spec
    s, d = spec.strides, spec.dilation_rate
    total = np.zeros(out_spatial)
    for ch, w in zip(fs.input_channels, fs.kernels, strict=True):
        if fs.kind is LayerKind.TRANSPOSE:
            total += scatter_transpose(x_cl[..., ch], w, s, d, spec.padding, out_spatial)
        else:
            total += xcorr(x_cl[..., ch], w, s, d, spec.padding)
    return total + bias


def run_case(case: LayerCase, seed: int = 0):
    import keras

    rng = np.random.default_rng(seed)
    layer = case.build()
    model = keras.Sequential([keras.Input(case.input_shape), layer])
    # Random kernel AND bias: a zero bias would hide bias mistakes.
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    x = rng.normal(size=(2, *case.input_shape)).astype("float32")
    y = np.asarray(call(model, x))
    return model, layer, x, y


# -- the table-driven acceptance test ----------------------------------------------------------------


@pytest.mark.keras
@pytest.mark.parametrize("case", LAYER_TABLE, ids=[c.id for c in LAYER_TABLE])
def test_filtersets_reproduce_keras(case: LayerCase) -> None:
    model, _klayer, x, y = run_case(case)
    index = open_model(model)
    rec = index.layer(case.id)
    cf = rec.spec.channels_first if rec.spec else False
    x_cl = np.moveaxis(x, 1, -1) if cf else x
    y_cl = np.moveaxis(y, 1, -1) if cf else y
    n_maps = output_map_count(rec)
    assert n_maps == y_cl.shape[-1]
    assert input_channel_count(rec) == x_cl.shape[-1]
    scale = float(np.abs(y_cl).max())
    sets = filters_for_layer(rec, index=index)
    for fs in sets:
        for b in range(len(x)):
            ref = reference_map(fs, rec, x_cl[b].astype(np.float64), y_cl.shape[1:-1])
            err = float(np.abs(ref - y_cl[b, ..., fs.map_index]).max())
            assert err <= 1e-5 * scale, f"map {fs.map_index}: max error {err:.3g} (scale {scale:.3g})"
    # Concatenating the sets rebuilds the stored kernel exactly.
    weights = {w.name: w.read() for w in rec.weights}
    rebuilt = rebuild_kernel(rec.kind, sets, weights)
    main = weights.get("kernel", weights.get("depthwise_kernel"))
    if rec.kind is LayerKind.SEPARABLE:
        dw, pw = weights["depthwise_kernel"], weights["pointwise_kernel"]
        k_eff = np.einsum("...im,imf->...if", dw, pw.reshape(dw.shape[-2], dw.shape[-1], pw.shape[-1]))
        np.testing.assert_allclose(rebuilt, k_eff, rtol=1e-6, atol=1e-6)
        for stage, ref in (("depthwise", dw), ("pointwise", pw)):
            staged = filters_for_layer(rec, index=index, stage=stage)
            np.testing.assert_array_equal(rebuild_kernel(stage, staged, weights), ref)
    else:
        np.testing.assert_array_equal(rebuilt, main)
    biases = np.array([np.nan if fs.bias is None else fs.bias for fs in sets])
    if "bias" in weights:
        np.testing.assert_array_equal(biases, weights["bias"])
    else:
        assert np.isnan(biases).all()


def rebuild_kernel(kind: str, sets: list[FilterSet], weights: dict[str, np.ndarray]) -> np.ndarray:
    """Put every map's kernels back where the stored layout keeps them."""
    if kind in (LayerKind.CONV, LayerKind.SEPARABLE):  # separable: the effective (*k, C_in, F)
        return np.stack([np.moveaxis(fs.kernels, 0, -1) for fs in sets], axis=-1)
    if kind == LayerKind.DENSE:
        return np.stack([fs.kernels for fs in sets], axis=-1)
    if kind == LayerKind.TRANSPOSE:
        return np.stack([np.moveaxis(fs.kernels, 0, -1) for fs in sets], axis=-2)
    if kind in (LayerKind.DEPTHWISE, "depthwise"):
        ref = weights.get("kernel", weights.get("depthwise_kernel"))
        out = np.zeros_like(ref)
        mult = ref.shape[-1]
        for fs in sets:
            (i,) = fs.input_channels
            out[..., i, fs.map_index % mult] = fs.kernels[0]
            assert fs.map_index // mult == i
        return out
    if kind == "pointwise":
        return np.stack([np.moveaxis(fs.kernels, 0, -1) for fs in sets], axis=-1)
    raise AssertionError(kind)


# -- the seed example --------------------------------------------------------------------------------


@pytest.mark.keras
def test_seed_example(tmp_path) -> None:
    import keras

    model = keras.Sequential([
        keras.Input((28, 28, 3)),
        keras.layers.Conv2D(32, 5, use_bias=False, name="c1"),
        keras.layers.Conv2D(64, 5, use_bias=False, name="c2"),
    ])
    path = tmp_path / "seed.keras"
    model.save(path)
    with open_model(path) as index:
        c1, c2 = index.layer("c1"), index.layer("c2")
        assert (c1.params, c2.params) == (5 * 5 * 3 * 32, 5 * 5 * 32 * 64) == (2400, 51200)
        fs = filters_for_map(c2, 7, index=index)
        assert fs.kernels.shape == (32, 5, 5)
        np.testing.assert_array_equal(fs.input_channels, np.arange(32))
        assert fs.bias is None and fs.stage == "kernel" and not fs.bn_folded
        np.testing.assert_array_equal(fs.kernels, np.moveaxis(model.layers[1].get_weights()[0][..., 7], -1, 0))
        assert output_map_count(c2) == 64 and input_channel_count(c2) == 32
        # Reverse view: map 7 of c1 is read by c2 through K2[:, :, 7, :], one 5x5 kernel per c2 map.
        cons = consumers_of_map(index, c1, 7)
        (sl,) = cons.slices
        assert sl.consumer_path == "c2" and sl.kernels.shape == (64, 5, 5)
        np.testing.assert_array_equal(sl.kernels, np.moveaxis(model.layers[1].get_weights()[0][:, :, 7, :], -1, 0))


# -- options: BN folding, sort, several maps -----------------------------------------------------------


def _bn_model(activation=None, axis=-1, padding="valid", before=False):
    import keras

    rng = np.random.default_rng(3)
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    h = inp
    if before:
        h = L.BatchNormalization(name="bn0", epsilon=0.01)(h)
    h = L.Conv2D(4, 3, padding=padding, activation=activation, name="conv")(h)
    h = L.BatchNormalization(axis=axis, name="bn", epsilon=0.002)(h)
    out = L.ReLU(name="relu")(h)
    model = keras.Model(inp, out)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            new = [rng.normal(size=w.shape).astype("float32") for w in ws]
            if isinstance(layer, L.BatchNormalization):
                new[3] = rng.uniform(0.5, 2.0, size=ws[3].shape).astype("float32")  # variance > 0
            layer.set_weights(new)
    return model, rng.normal(size=(2, 8, 8, 3)).astype("float32")


@pytest.mark.keras
@pytest.mark.parametrize("mode", ["after", "before", "both"])
def test_fold_bn_matches_keras(mode: str) -> None:
    import keras

    model, x = _bn_model(before=mode != "after")
    index = open_model(model)
    start = "bn0" if mode != "after" else "conv"
    end = "bn" if mode != "before" else "conv"
    sub = keras.Model(model.get_layer(start).input, model.get_layer(end).output)
    y = np.asarray(sub(x, training=False))
    conv = index.layer("conv")
    scale = float(np.abs(y).max())
    for j in range(4):
        fs = filters_for_map(conv, j, index=index, fold_bn=mode if mode != "after" else True)
        assert fs.bn_folded
        for b in range(2):
            ref = sum(xcorr(x[b, ..., c].astype(float), k, (1, 1), (1, 1), "valid")
                      for c, k in zip(fs.input_channels, fs.kernels, strict=True)) + fs.bias
            assert np.abs(ref - y[b, ..., j]).max() <= 1e-5 * scale


@pytest.mark.keras
def test_fold_bn_refusals() -> None:
    model, _ = _bn_model(activation="relu")
    index = open_model(model)
    with pytest.raises(SelectionError, match="activation"):
        filters_for_map("conv", 0, index=index, fold_bn=True)
    flat_index = open_model(_flatten_model())
    with pytest.raises(SelectionError, match="no BatchNormalization reads"):
        filters_for_map("conv2", 0, index=flat_index, fold_bn=True)  # conv2 -> Dropout
    model, _ = _bn_model(axis=1)
    index = open_model(model)
    with pytest.raises(SelectionError, match="channel axis"):
        filters_for_map("conv", 0, index=index, fold_bn=True)
    model, _ = _bn_model(before=True, padding="same")
    index = open_model(model)
    with pytest.raises(SelectionError, match="zero-pads"):
        filters_for_map("conv", 0, index=index, fold_bn="before")


@pytest.mark.keras
def test_sort_and_several_maps() -> None:
    model, _x = _bn_model()
    index = open_model(model)
    plain = filters_for_map("conv", 2, index=index)
    by_norm = filters_for_map("conv", 2, index=index, sort="norm")
    assert np.all(np.diff(by_norm.norms) <= 0)
    assert sorted(by_norm.input_channels.tolist()) == plain.input_channels.tolist()
    for c, k in zip(by_norm.input_channels, by_norm.kernels, strict=True):
        np.testing.assert_array_equal(k, plain.kernels[c])
    back = by_norm.channel_order()
    np.testing.assert_array_equal(back.kernels, plain.kernels)
    several = filters_for_maps("conv", [0, 1, 3], index=index)
    assert [fs.map_index for fs in several] == [0, 1, 3]
    with pytest.raises(SelectionError, match="parse_maps"):  # selection strings are the CLI's syntax
        filters_for_maps("conv", "0-1,3", index=index)


# -- Dense after Flatten, reverse view ------------------------------------------------------------------


def _flatten_model(channels_first: bool = False):
    import keras

    L = keras.layers
    shape = (3, 5, 4) if channels_first else (5, 4, 3)
    fmt = "channels_first" if channels_first else "channels_last"
    model = keras.Sequential([
        keras.Input(shape),
        L.Conv2D(3, 2, data_format=fmt, name="conv"),
        L.BatchNormalization(axis=1 if channels_first else -1, name="bn"),
        L.ReLU(name="act"),
        L.Conv2D(4, 1, groups=1, data_format=fmt, name="conv2"),
        L.Dropout(0.1, name="drop"),
        L.Flatten(name="flat"),
        L.Dense(6, name="fc"),
    ])
    rng = np.random.default_rng(5)
    for layer in model.layers:
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    return model


@pytest.mark.keras
@pytest.mark.parametrize("channels_first", [False, True])
def test_dense_image_and_flatten_consumers(channels_first: bool) -> None:
    import keras

    model = _flatten_model(channels_first)
    index = open_model(model)
    fc = filters_for_map("fc", 2, index=index)
    image = fc.image_kernels()
    assert image is not None and image.kernels.shape == (4, 4, 3)  # 4 maps of conv2, each 4×3
    # Check against Keras: the Dense output equals Σ_c Σ_hw map_c · image_kernel_c + b.
    feats = keras.Model(model.inputs, model.get_layer("conv2").output)
    x = np.random.default_rng(0).normal(size=(2, *model.inputs[0].shape[1:])).astype("float32")
    maps = np.asarray(call(feats, x))
    maps_cl = np.moveaxis(maps, 1, -1) if channels_first else maps
    y = np.asarray(call(model, x, training=False))[:, 2]
    ref = np.einsum("bhwc,chw->b", maps_cl.astype(float), image.kernels) + fc.bias
    np.testing.assert_allclose(ref, y, rtol=1e-5, atol=1e-5 * np.abs(y).max())
    # Reverse view: map 1 of conv2 reaches fc through Flatten as rows shaped like the map.
    cons = consumers_of_map(index, "conv2", 1)
    (sl,) = cons.slices
    assert sl.consumer_path == "fc" and sl.kernels.shape == (6, 4, 3) and "drop" in sl.via
    for unit in range(6):
        np.testing.assert_array_equal(sl.kernels[unit], filters_for_map("fc", unit, index=index)
                                      .image_kernels().kernels[1])
    # Map 0 of conv passes BN and ReLU (channel preserving) into conv2's 1x1 kernel row.
    cons = consumers_of_map(index, "conv", 0)
    (sl,) = cons.slices
    assert sl.consumer_path == "conv2" and sl.via == ("bn", "act") and sl.kernels.shape == (4, 1, 1)


@pytest.mark.keras
def test_reverse_view_stops_and_concat() -> None:
    import keras

    L = keras.layers
    inp = keras.Input((6, 6, 2))
    a = L.Conv2D(3, 3, padding="same", name="a")(inp)
    b = L.Conv2D(2, 1, name="b")(inp)
    cat = L.Concatenate(name="cat")([b, a])
    c = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(cat)
    ln = L.LayerNormalization(name="ln")(a)
    d = L.Conv2D(2, 1, name="after_ln")(ln)
    model = keras.Model(inp, [c, d])
    index = open_model(model)
    cons = consumers_of_map(index, "a", 1)
    (sl,) = cons.slices
    assert sl.consumer_path == "dw" and sl.input_channel == 3  # offset by b's 2 channels
    np.testing.assert_array_equal(sl.output_maps, [6, 7])
    np.testing.assert_array_equal(
        sl.kernels, np.moveaxis(model.get_layer("dw").get_weights()[0][:, :, 3, :], -1, 0))
    assert [p for p, _ in cons.stops] == ["ln"]


# -- same FilterSets whichever format the model was read from ---------------------------------------------


def _mixed_model():
    import keras

    L = keras.layers
    inp = keras.Input((8, 8, 4), name="img")
    h = L.Conv2D(4, 3, groups=2, padding="same", name="gconv")(inp)
    h = L.BatchNormalization(name="bn")(h)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)
    h = L.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(h)
    h = L.Conv2DTranspose(3, 3, strides=2, name="tconv")(h)
    h = L.Flatten(name="flat")(h)
    out = L.Dense(3, name="fc")(h)
    model = keras.Model(inp, out, name="mixed")
    rng = np.random.default_rng(11)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            new = [rng.normal(size=w.shape).astype("float32") for w in ws]
            if isinstance(layer, L.BatchNormalization):
                new[3] = np.abs(new[3]) + 0.5
            layer.set_weights(new)
    return model


def _all_sets(index) -> dict[tuple[str, int, str], FilterSet]:
    out = {}
    for layer in index.filter_layers():
        from inspector.filters import stages_for

        for stage in stages_for(layer):
            for fs in filters_for_layer(layer, index=index, stage=stage):
                out[(layer.name, fs.map_index, stage)] = fs
    return out


def test_every_reader_is_present() -> None:
    """Both readers exist: a missing one is a failure, never a skip of the format comparison below."""
    for module in ("inspector.readers.legacy_h5", "inspector.readers.savedmodel"):
        assert importlib.util.find_spec(module) is not None, module


@pytest.mark.keras
@pytest.mark.parametrize("fmt", ["keras", "weights.h5", "h5", "savedmodel"])
def test_same_filtersets_in_every_format(fmt: str, tmp_path) -> None:
    model = _mixed_model()
    live = _all_sets(open_model(model))
    assert len(live) > 40
    if fmt == "keras":
        path = tmp_path / "m.keras"
        model.save(path)
    elif fmt == "weights.h5":
        path = tmp_path / "m.weights.h5"
        model.save_weights(path)
    elif fmt == "h5":
        path = tmp_path / "m.h5"
        model.save(path)
    else:
        path = tmp_path / "sm"
        model.export(str(path), verbose=False)
    with open_model(path) as index:
        got = _all_sets(index)
        assert set(got) == set(live), set(live) ^ set(got)
        for key, fs in live.items():
            other = got[key]
            np.testing.assert_array_equal(other.kernels, fs.kernels, err_msg=str(key))
            if fmt in ("weights.h5", "savedmodel") and key[0] == "gconv":
                # Weights-only files and Keras 3 exports store no groups: channel indices assume groups=1, and say so.
                assert any("groups unknown" in n for n in other.notes)
                continue
            np.testing.assert_array_equal(other.input_channels, fs.input_channels, err_msg=str(key))
            assert (other.bias is None) == (fs.bias is None) and (fs.bias is None or other.bias == fs.bias)


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.keras
def test_bad_input_one_line_errors() -> None:
    model = _flatten_model()
    index = open_model(model)
    with pytest.raises(NotAFilterLayerError) as exc:
        filters_for_map("flat", 0, index=index)
    assert "\n" not in str(exc.value) and "Received:" in str(exc.value)
    with pytest.raises(SelectionError, match=r"out of range.*0-3"):
        filters_for_map("conv2", 4, index=index)
    with pytest.raises(SelectionError):
        filters_for_map("conv2", -1, index=index)
    with pytest.raises(SelectionError, match="stage"):
        filters_for_map("conv2", 0, index=index, stage="pointwise")
    with pytest.raises(SelectionError, match="sort"):
        filters_for_map("conv2", 0, index=index, sort="size")
    from inspector import LayerNotFoundError

    with pytest.raises(LayerNotFoundError, match="conv2"):
        filters_for_map("conv_2", 0, index=index)


def test_selector_parsing() -> None:
    sel = parse_selector("block2_conv1:0-7,12")
    assert sel.layer == "block2_conv1"
    assert sel.maps.resolve(16) == [*range(8), 12]
    assert parse_selector("inner/conv").maps.is_all
    assert parse_maps("8-").resolve(10) == [8, 9]
    assert parse_maps("all").resolve(3) == [0, 1, 2]
    assert parse_maps("3,1,3").resolve(4) == [3, 1]
    for bad in ("1-", "x", "3-1", "1,,2", "-2"):
        if bad == "1-":
            assert parse_maps(bad).resolve(2) == [1]
            continue
        with pytest.raises(SelectionError) as exc:
            parse_maps(bad)
        assert "\n" not in str(exc.value) and "Received:" in str(exc.value)
    with pytest.raises(SelectionError, match="out of range"):
        parse_maps("0-9").resolve(4, layer="c")
    with pytest.raises(SelectionError):
        parse_selector(":0-3")
