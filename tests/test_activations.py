"""Inputs, one-pass capture, activation figures and the ``activations`` / ``decompose`` commands.

Capture is checked against Keras itself: sub-models built on the same graph (public API) and plain
``model(x)`` calls give the truth for every captured layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector.errors import InputDataError
from inspector.inputs import InputSpec, load_input, sample_image
from inspector.kerascompat import call

REPO = Path(__file__).resolve().parent.parent


# -- inputs (no Keras needed) ------------------------------------------------------------------------

def _write_png(path: Path, array: np.ndarray, mode: str) -> None:
    from PIL import Image

    Image.fromarray(array.astype(np.uint8), mode=mode).save(path)


def test_image_is_resized_converted_and_scaled(tmp_path: Path) -> None:
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    _write_png(tmp_path / "red.png", rgb, "RGB")
    x = load_input(tmp_path / "red.png", InputSpec((5, 8, 3)))
    assert x.shape == (1, 5, 8, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, ..., 0], 1.0)  # scale01 by default for images
    np.testing.assert_allclose(x[0, ..., 1:], 0.0)
    gray = load_input(tmp_path / "red.png", InputSpec((5, 8, 1)), preprocess="none")
    # PIL's ITU-R 601-2 luma: L = R*299/1000 for pure red.
    np.testing.assert_allclose(gray, 255 * 299 / 1000, atol=0.6)
    cf = load_input(tmp_path / "red.png", InputSpec((3, 5, 8), channels_first=True), preprocess="scale11")
    assert cf.shape == (1, 3, 5, 8)
    np.testing.assert_allclose(cf[0, 0], 1.0)
    np.testing.assert_allclose(cf[0, 1:], -1.0)


def test_jpeg_grayscale_source_to_rgb_model(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((6, 6), 128, np.uint8), mode="L").save(tmp_path / "g.jpg")
    x = load_input(tmp_path / "g.jpg", InputSpec((6, 6, 3)), preprocess="meanstd", mean=[128.0], std=[2.0])
    assert x.shape == (1, 6, 6, 3)
    assert np.abs(x).max() <= 1.0  # JPEG rounding of a flat grey stays within 2 levels


def test_npy_with_and_without_batch_and_missing_channel(tmp_path: Path) -> None:
    arr = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    np.save(tmp_path / "b.npy", arr)
    x = load_input(tmp_path / "b.npy", InputSpec((4, 4, 1)))
    assert x.shape == (2, 4, 4, 1)
    np.testing.assert_array_equal(x[..., 0], arr)  # arrays are taken as already preprocessed
    np.save(tmp_path / "one.npy", arr[0, :, :, None])
    assert load_input(tmp_path / "one.npy", InputSpec((4, 4, 1))).shape == (1, 4, 4, 1)


def test_mismatched_and_unreadable_inputs_are_one_line_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((3, 3), np.float32))
    with pytest.raises(InputDataError) as info:
        load_input(tmp_path / "bad.npy", InputSpec((4, 4, 1)))
    assert "(4, 4, 1)" in str(info.value) and "(3, 3)" in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "fake.png").write_bytes(b"not an image at all")
    with pytest.raises(InputDataError) as info:
        load_input(tmp_path / "fake.png", InputSpec((4, 4, 3)))
    assert "Received" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputDataError):
        load_input(tmp_path / "missing.png", InputSpec((4, 4, 3)))
    with pytest.raises(InputDataError):
        load_input("sample", InputSpec((4, 4, 3)), preprocess="meanstd")  # no mean/std given
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputDataError):
        load_input(tmp_path / "obj.npy", InputSpec((1,)))  # never unpickled


def test_sample_is_deterministic_and_structured() -> None:
    a = load_input("sample", InputSpec((12, 10, 3)))
    b = load_input("sample", InputSpec((12, 10, 3)))
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.std() > 0.1
    img = sample_image(12, 10, 3)
    np.testing.assert_allclose(a[0], img / 255.0, rtol=1e-6)
    assert load_input("sample", InputSpec((None, None, 1))).shape == (1, 64, 64, 1)
    assert load_input("sample", InputSpec((7,))).shape == (1, 7)


# -- capture (Keras) -----------------------------------------------------------------------------------

def _nested_model() -> Any:
    import keras

    inner_fn_in = keras.Input((6, 6, 4))
    inner_fn = keras.Model(inner_fn_in, keras.layers.Conv2D(3, 3, padding="same", name="c_fn")(inner_fn_in),
                           name="inner_fn")
    inner_seq = keras.Sequential([keras.layers.Flatten(name="flat"), keras.layers.Dense(5, name="d_in"),
                                  keras.layers.Dense(2, name="d_out")], name="inner_seq")
    inp = keras.Input((6, 6, 2), name="img")
    h = keras.layers.Conv2D(4, 1, name="stem")(inp)
    h = keras.layers.Activation("relu", name="act")(h)
    h = inner_fn(h) + 1.0  # a raw op after a nested Functional
    out = inner_seq(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.mark.keras
def test_capture_nested_layers_in_one_pass_matches_keras() -> None:
    import keras

    from inspector.activations import capture, layer_paths

    model = _nested_model()
    x = np.random.default_rng(1).standard_normal((3, 6, 6, 2)).astype("float32")
    paths = layer_paths(model)
    assert "inner_fn/c_fn" in paths and "inner_seq/d_in" in paths
    acts = capture(model, x, paths)
    assert list(acts) == paths
    # Truth from Keras, layer by layer through the public API.
    stem_act = np.asarray(call(keras.Model(model.input, model.get_layer("act").output), x))
    np.testing.assert_allclose(acts["act"], stem_act, atol=1e-6)
    c_fn = np.asarray(call(model.get_layer("inner_fn"), stem_act))
    np.testing.assert_allclose(acts["inner_fn/c_fn"], c_fn, atol=1e-5)
    seq = model.get_layer("inner_seq")
    d_in = np.asarray(seq.get_layer("d_in")(seq.get_layer("flat")(c_fn + 1.0)))
    np.testing.assert_allclose(acts["inner_seq/d_in"], d_in, atol=1e-5)
    np.testing.assert_allclose(acts["inner_seq/d_out"], np.asarray(call(model, x)), atol=1e-5)
    np.testing.assert_array_equal(acts["img"], x)
    only = capture(model, x, ["inner_seq/d_in"])
    assert list(only) == ["inner_seq/d_in"]  # keeps only what was asked for



@pytest.mark.keras
def test_capture_runs_a_big_batch_in_batches_that_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """An eager pass holds every intermediate tensor of its batch, so a folder of inputs (compare's CKA) is
    captured in batches that fit kerascompat.EAGER_PASS_BYTES; the joined outputs equal one pass."""
    from inspector import kerascompat
    from inspector.activations import capture, layer_paths

    model = _nested_model()
    x = np.random.default_rng(2).standard_normal((11, 6, 6, 2)).astype("float32")
    paths = layer_paths(model)
    whole = capture(model, x, paths)
    per_input = kerascompat.activation_bytes(model, 6)
    # By hand: every layer's output, nested models' layers included (raw ops such as the +1.0 are not
    # layers and are not counted), 4 bytes per value.
    outer = 6 * 6 * 2 + 6 * 6 * 4 * 2 + 6 * 6 * 3 + 2  # img, stem, act, inner_fn, inner_seq
    inner = 6 * 6 * 4 + 6 * 6 * 3 + 6 * 6 * 3 + 5 + 2  # inner_fn's input layer and c_fn; flat, d_in, d_out
    assert per_input == 4 * (outer + inner)
    monkeypatch.setattr(kerascompat, "EAGER_PASS_BYTES", 4 * per_input)
    passes: list[tuple[int, int]] = []  # (graph, batch) of every graph walk, nested models' included
    real = kerascompat.run_graph
    flatten = kerascompat.import_keras().tree.flatten

    def counting(functional: Any, inputs: Any, fn: Any) -> Any:
        passes.append((id(functional), int(flatten(inputs)[0].shape[0])))
        return real(functional, inputs, fn)

    monkeypatch.setattr(kerascompat, "run_graph", counting)
    batched = capture(model, x, paths)
    assert [batch for graph, batch in passes if graph == passes[0][0]] == [4, 4, 3]
    assert list(batched) == list(whole)
    for path in paths:
        np.testing.assert_allclose(batched[path], whole[path], rtol=1e-6, atol=1e-6)

@pytest.mark.keras
def test_capture_channels_first_layout() -> None:
    import keras

    from inspector.activations import capture

    inp = keras.Input((2, 6, 6))
    h = keras.layers.Conv2D(3, 3, data_format="channels_first", name="conv")(inp)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.MaxPooling2D(data_format="channels_first", name="pool")(h)
    out = keras.layers.GlobalAveragePooling2D(data_format="channels_first", name="gap")(h)
    model = keras.Model(inp, out)
    x = np.random.default_rng(2).standard_normal((2, 2, 6, 6)).astype("float32")
    native = capture(model, x, ["conv", "relu", "pool", "gap"], layout="native")
    last = capture(model, x, ["conv", "relu", "pool", "gap"])
    assert native["relu"].shape == (2, 3, 4, 4) and last["relu"].shape == (2, 4, 4, 3)
    for name in ("conv", "relu", "pool"):
        np.testing.assert_array_equal(last[name], np.moveaxis(native[name], 1, -1))
    np.testing.assert_array_equal(last["gap"], native["gap"])  # (N, C): nothing to move
    truth = np.asarray(call(keras.Model(inp, model.get_layer("pool").output), x))
    np.testing.assert_allclose(native["pool"], truth, atol=1e-6)


@pytest.mark.keras
def test_unknown_layer_in_capture_suggests_paths() -> None:
    from inspector.activations import capture
    from inspector.errors import LayerNotFoundError

    model = _nested_model()
    with pytest.raises(LayerNotFoundError) as info:
        capture(model, np.zeros((1, 6, 6, 2), "float32"), ["d_inn"])
    assert "inner_seq/d_in" in str(info.value)


# -- figures ---------------------------------------------------------------------------------------------

def test_activation_grid_figure_shapes() -> None:
    from matplotlib.figure import Figure

    from inspector.render.activations import activation_grid_figure
    from inspector.render.mosaic import mosaic_image

    acts = np.random.default_rng(0).standard_normal((5, 5, 10))
    fig = activation_grid_figure(acts, title="t", shared_scale=True, max_maps=6)
    assert isinstance(fig, Figure)
    image, layout = mosaic_image(fig)
    # One image holds the 6 maps, raw values, on one shared colour range.
    np.testing.assert_array_equal(layout.split(image), np.moveaxis(acts[..., :6], -1, 0))
    (im,) = [im for ax in fig.axes for im in ax.images if im.get_array().shape == image.shape]
    assert im.get_clim() == (acts[..., :6].min(), acts[..., :6].max())
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == [f"map {m}" for m in range(6)]
    fig = activation_grid_figure(acts, maps=[1, 3])
    image, layout = mosaic_image(fig)
    # Own scale per map: each chosen map min-max stretched to [0, 1] on a copy.
    chosen = np.moveaxis(acts[..., [1, 3]], -1, 0)
    lo, hi = chosen.min(axis=(1, 2), keepdims=True), chosen.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(layout.split(image), (chosen - lo) / (hi - lo))
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == ["map 1", "map 3"]
    assert isinstance(activation_grid_figure(np.arange(7.0)), Figure)  # Dense output: bars
    assert isinstance(activation_grid_figure(np.ones((9, 4))), Figure)  # 1-D maps: lines


@pytest.mark.keras
def test_decomposition_figure_top_k() -> None:
    import keras

    from inspector.decompose import decompose
    from inspector.loader import open_model
    from inspector.render.activations import decomposition_figure

    inp = keras.Input((6, 6, 8))
    model = keras.Model(inp, keras.layers.Conv2D(2, 3, name="c")(inp))
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 8)).astype("float32")
    dec = decompose(open_model(model), model, x, "c", 1)
    fig = decomposition_figure(dec, top=3)
    titles = [ax.get_title() for ax in fig.axes]
    assert sum(t.startswith("input map") for t in titles) == 3
    assert titles[0] == f"input map {int(dec.input_channels[dec.ranking[0]])}"
    assert any(t.startswith("Σ all 8") for t in titles)


# -- CLI -------------------------------------------------------------------------------------------------

@pytest.mark.keras
def test_cli_decompose_npz_and_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import keras

    from inspector.cli import main

    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    out = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)
    m = keras.Model(inp, out)
    m.save(tmp_path / "m.keras")
    rc = main(["decompose", str(tmp_path / "m.keras"), "sample", "--layer", "dw", "--map", "5",
                "--npz", str(tmp_path / "d.npz"), "-o", str(tmp_path / "d.png"), "--top", "2"])
    assert rc == 0, capsys.readouterr().err
    data = np.load(tmp_path / "d.npz")
    assert list(data["input_channels"]) == [2]  # map 5 = channel 2, multiplier 1
    assert data["contributions"].shape == (1, 6, 6)
    np.testing.assert_allclose(data["contributions"].sum(0) + data["bias"], data["preactivation"])
    x = load_input("sample", InputSpec((8, 8, 3)))
    truth = np.asarray(call(m, x))[0, ..., 5]
    np.testing.assert_allclose(data["output"], truth, atol=1e-5)
    np.testing.assert_allclose(data["preactivation"], truth, atol=1e-5)  # dw is linear
    assert (tmp_path / "d.png").stat().st_size > 1000
    rc = main(["activations", str(tmp_path / "m.keras"), "sample", "--layer", "c1", "--layer", "dw",
               "--npz", str(tmp_path / "a.npz"), "-o", str(tmp_path / "a.png")])
    assert rc == 0
    acts = np.load(tmp_path / "a.npz")
    np.testing.assert_allclose(acts["dw"], np.asarray(call(m, x)), atol=1e-5)
    assert (tmp_path / "a-c1.png").exists() and (tmp_path / "a-dw.png").exists()


@pytest.mark.keras
@pytest.mark.parametrize("extra, needle", [
    (["--layer", "c1", "--map", "9"], "out of range"),
    (["--layer", "pool", "--map", "0"], "no kernel"),
    (["--layer", "nope", "--map", "0"], "nope"),
])
def test_cli_decompose_bad_requests_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          extra: list[str], needle: str) -> None:
    import keras

    from inspector.cli import main

    path = tmp_path / "p.keras"
    if not path.exists():
        inp = keras.Input((6, 6, 1))
        h = keras.layers.Conv2D(2, 3, name="c1")(inp)
        keras.Model(inp, keras.layers.MaxPooling2D(name="pool")(h)).save(path)
    rc = main(["decompose", str(path), "sample", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1, err


@pytest.mark.keras
def test_cli_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import keras

    from inspector.cli import main

    inp = keras.Input((6, 6, 1))
    model = keras.Model(inp, keras.layers.Conv2D(2, 3, name="c1")(inp))
    model.save(tmp_path / "p.keras")
    model.save_weights(tmp_path / "p.weights.h5")
    np.save(tmp_path / "wrong.npy", np.zeros((5, 5, 3), np.float32))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cases = [
        (["activations", str(tmp_path / "p.keras"), str(tmp_path / "wrong.npy"), "--layer", "c1"], "(6, 6, 1)"),
        (["activations", str(tmp_path / "p.keras"), str(tmp_path / "broken.png"), "--layer", "c1"], "image"),
        (["activations", str(tmp_path / "p.weights.h5"), "sample", "--layer", "c1"], "weights"),
        (["activations", str(tmp_path / "p.keras"), "sample", "--layer", "c1", "-o", "x.gif"], ".png"),
    ]
    for argv, needle in cases:
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and needle in err and len(err.splitlines()) == 1, (argv, err)


@pytest.mark.keras
def test_cli_on_bundled_sample_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from inspector.cli import main

    model = REPO / "sample_models" / "digits_cnn.keras"
    digit = REPO / "sample_models" / "sample_input_digit.npy"
    # The sample files are committed to the repository: their absence is a failure, not a skip.
    assert model.is_file() and digit.is_file(), "bundled sample models are missing from sample_models/"
    rc = main(["decompose", str(model), str(digit), "--layer", "conv2", "--map", "3",
               "--npz", str(tmp_path / "d.npz")])
    out = capsys.readouterr().out
    assert rc == 0 and "check: max" in out
    assert float(np.load(tmp_path / "d.npz")["max_rel_error"]) < 1e-5


# -- dashboard: one forward pass per layer run, preprocessing and fit in the URL -----------------------------

@pytest.mark.slow
@pytest.mark.keras
def test_dashboard_map_steps_reuse_one_layer_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    import inspector.decompose as decompose_module
    from inspector.dashboard import MAIN_SCRIPT

    calls: list[str] = []
    real = decompose_module.prepare_decomposition

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(decompose_module, "prepare_decomposition", counting)
    at = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120).run()
    at.radio(key="src_kind").set_value("Path").run()
    at.text_input(key="src_path").set_value(str(REPO / "sample_models" / "shapes_rgb.keras")).run()
    at.radio(key="page").set_value("Activations").run()
    at.selectbox(key="act_pre").set_value("torch").run()
    at.selectbox(key="act_fit").set_value("pad").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert calls.count("conv1_rgb") <= 3  # one per (preprocessing, fit) shown so far, unless cached
    calls.clear()
    for j in (1, 2, 3):
        at.number_input(key="act_map").set_value(j).run()
        assert f"conv1_rgb map {j}: contributions, bias, pre-activation, output" in \
            [c for img in at.image for c in img.captions]
    assert calls == []  # map steps never run the model again
    assert at.query_params["pre"] == "torch" and at.query_params["fit"] == "pad"
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Max |Σ − Keras|"]) < 1e-4
    # A preset that needs RGB on a grayscale model is a one-line error on the page.
    at.text_input(key="src_path").set_value(str(REPO / "sample_models" / "digits_cnn.keras")).run()
    at.radio(key="page").set_value("Activations").run()
    at.selectbox(key="act_pre").set_value("caffe").run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "3-channel" in errors[0] and not at.exception
