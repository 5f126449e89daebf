"""Feature visualization (issue 12): the optimized input beats natural inputs, on every input kind.

Few steps and a raised learning rate keep the suite fast; the defaults (256 steps, lr 0.05) reach higher
values. "Natural" = the sample inputs in sample_models/ and the photographs of inspector.photos (from
scikit-image's wheel), plus 200 random crops of them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector.cli import main

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_models"
FAST = {"steps": 48, "lr": 0.2}

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def digits() -> Any:
    from inspector.runtime import load_runnable

    return load_runnable(SAMPLES / "digits_cnn.keras")


@pytest.fixture(scope="module")
def shapes() -> Any:
    from inspector.runtime import load_runnable

    return load_runnable(SAMPLES / "shapes_rgb.keras")


def _beats_natural(model: Any, layer: str, maps: list[int], natural: np.ndarray | None = None, **kw: Any) -> Any:
    from inspector.visualize import load_references, visualize

    if natural is None:
        natural, _ = load_references(None, model, size=kw.get("size"))
    assert len(natural) >= 1
    vis = visualize(model, layer, maps, reference=natural, crops=200, **{**FAST, **kw})
    ref = vis.reference
    assert ref is not None and ref.n_crops == 200
    assert np.all(vis.activation > ref.best_image), (vis.activation, ref.best_image)
    assert np.all(vis.activation > ref.best_crop), (vis.activation, ref.best_crop)
    return vis


@pytest.mark.parametrize(("layer", "maps"), [("conv1", [0, 2, 6]), ("relu1", [0, 2, 3, 6]), ("conv2", [0, 2, 4, 10])])
def test_digits_maps_beat_natural_images(  # linear maps with a negative kernel sum and dead maps are left out
digits: Any, layer: str, maps: list[int]) -> None:
    vis = _beats_natural(digits, layer, maps)
    assert vis.image.shape == (len(maps), 16, 16, 1) and vis.preprocess == "scale01"
    assert vis.image.min() >= 0.0 and vis.image.max() <= 1.0


@pytest.mark.parametrize(("layer", "maps"), [("conv1_rgb", [2, 5, 9]), ("relu3", [1, 5, 12])])
def test_rgb_maps_beat_natural_images(shapes: Any, layer: str, maps: list[int]) -> None:
    vis = _beats_natural(shapes, layer, maps)
    # A Rescaling layer at the input: auto gives raw 0..255 pixels, as the model was trained on.
    assert vis.preprocess == "none" and vis.image.shape == (len(maps), 32, 32, 3)
    assert vis.image.min() >= 0.0 and vis.image.max() <= 255.0


def _tiny_cnn(keras: Any, shape: tuple[int | None, ...], channels_first: bool = False, seed: int = 3) -> Any:
    keras.utils.set_random_seed(seed)
    fmt = "channels_first" if channels_first else "channels_last"
    inp = keras.Input(shape)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", data_format=fmt, name="c1")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", data_format=fmt, name="c2")(x)
    x = keras.layers.ReLU(name="r2")(x)
    x = keras.layers.GlobalAveragePooling2D(data_format=fmt)(x)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(x))


def test_channels_first_model(tmp_path: Path) -> None:
    from inspector.kerascompat import import_keras

    model = _tiny_cnn(import_keras(), (3, 16, 16), channels_first=True)
    vis = _beats_natural(model, "r2", [0, 3, 6])
    assert vis.layout == "CHW" and vis.image.shape == (3, 3, 16, 16)
    _check_npz_round_trip(model, vis, tmp_path)


def test_grayscale_variable_size_model(tmp_path: Path) -> None:
    from inspector.kerascompat import import_keras

    model = _tiny_cnn(import_keras(), (None, None, 1), seed=5)
    vis = _beats_natural(model, "c2", [1, 4], size=24)
    assert vis.image.shape == (2, 24, 24, 1)
    _check_npz_round_trip(model, vis, tmp_path)


def test_nested_layer_uses_the_graph(tmp_path: Path) -> None:
    from inspector.kerascompat import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(11)
    backbone = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="b1"),
                                 keras.layers.Conv2D(6, 3, activation="relu", name="b2")], name="backbone")
    inp = keras.Input((16, 16, 3))
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(backbone(inp)))
    model = keras.Model(inp, out)
    vis = _beats_natural(model, "backbone/b2", [0, 2, 5])
    assert vis.route == "graph"
    _check_npz_round_trip(model, vis, tmp_path)


def test_conv1d_signal(tmp_path: Path) -> None:
    from inspector.kerascompat import import_keras
    from inspector.render.visualize import visualization_figure

    keras = import_keras()
    keras.utils.set_random_seed(7)
    inp = keras.Input((64, 2))
    x = keras.layers.Conv1D(5, 7, padding="same", activation="relu", name="k1")(inp)
    x = keras.layers.Conv1D(6, 5, activation="relu", name="k2")(x)
    model = keras.Model(inp, keras.layers.GlobalMaxPooling1D()(x))
    # Natural signals: sines and ramps in the [0, 1] range the model gets (scale01).
    t = np.linspace(0, 1, 64)
    natural = np.stack([np.stack([0.5 + 0.5 * np.sin(2 * np.pi * f * t + p), (t * f) % 1.0], -1)
                        for f, p in [(1, 0), (3, 1), (5, 2), (8, 0.5)]]).astype(np.float32)
    vis = _beats_natural(model, "k2", [0, 3, 5], natural=natural)
    assert vis.layout == "LC" and vis.image.shape == (3, 64, 2)
    _check_npz_round_trip(model, vis, tmp_path)
    visualization_figure(vis).savefig(tmp_path / "signal.svg")


def _check_npz_round_trip(model: Any, vis: Any, tmp_path: Path) -> None:
    """``image[i][None]`` through the model reproduces ``activation[i]`` (mean of map j, read independently)."""
    from inspector.activations import capture
    from inspector.visualize import load_npz, save_npz

    back = load_npz(save_npz(vis, tmp_path / "vis.npz"))
    for key in ("image", "activation", "activation_trace", "map_index", "channel_range"):
        assert np.array_equal(getattr(back, key), getattr(vis, key)), key
    assert (back.seed, back.steps, back.layer, back.layout) == (vis.seed, vis.steps, vis.layer, vis.layout)
    with np.load(tmp_path / "vis.npz") as raw:
        assert {"image", "input_range", "activation_trace", "map_index", "seed", "steps"} <= set(raw.files)
        assert raw["image"].shape == vis.image.shape and raw["input_range"].shape == (2,)
    for i, j in enumerate(back.map_index):
        act = capture(model, back.image[i][None], [back.layer])[back.layer]  # channels_last
        assert np.isclose(act[0, ..., int(j)].mean(), back.activation[i], rtol=1e-4, atol=1e-5)


def test_same_seed_same_image_and_batching(digits: Any) -> None:
    from inspector.visualize import visualize

    kw = {"steps": 12, "lr": 0.2}
    a = visualize(digits, "conv2", [0, 2, 4], seed=3, **kw)
    b = visualize(digits, "conv2", [0, 2, 4], seed=3, **kw)
    c = visualize(digits, "conv2", [0, 2, 4], seed=4, **kw)
    one = visualize(digits, "conv2", [0, 2, 4], seed=3, batch=1, **kw)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.activation_trace, b.activation_trace)
    assert not np.array_equal(a.image, c.image)
    # Each image has its own seed stream: batched or one at a time, the same optimization (rounding aside).
    assert np.allclose(a.image, one.image, atol=1e-3)
    # Several steps per graph call (the default adapts the count to the step's speed) change nothing.
    for per_call in (1, 5, 12):
        d = visualize(digits, "conv2", [0, 2, 4], seed=3, steps_per_call=per_call, **kw)
        assert np.array_equal(a.image, d.image) and np.array_equal(a.activation_trace, d.activation_trace)


def test_npz_round_trip_on_sample_model(shapes: Any, tmp_path: Path) -> None:
    from inspector.visualize import visualize

    _check_npz_round_trip(shapes, visualize(shapes, "dw2", [1, 6], steps=8), tmp_path)


def test_objectives_neuron_negative_and_diversity(shapes: Any) -> None:
    from inspector.visualize import map_scores, visualize

    neuron = visualize(shapes, "conv1_rgb", [2], objective="neuron", steps=24, lr=0.2)
    centre = map_scores(shapes, "conv1_rgb", neuron.image, [2], "neuron")[0, 0]
    assert np.isclose(centre, neuron.activation[0], rtol=1e-5)
    mean_only = map_scores(shapes, "conv1_rgb", neuron.image, [2], "channel")[0, 0]
    assert neuron.activation[0] > mean_only  # the centre is pushed harder than the average

    neg = visualize(shapes, "relu3", [0], objective="negative", steps=24, lr=0.2)
    assert neg.objective == "negative" and neg.activation[0] > 0  # the pre-activation was pushed below 0

    div = visualize(shapes, "relu3", [5], steps=16, lr=0.2, diversity=1.0, images_per_map=2)
    assert list(div.map_index) == [5, 5] and not np.allclose(div.image[0], div.image[1])


def test_cli_writes_figure_and_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, npz = tmp_path / "v.png", tmp_path / "v.npz"
    assert main(["visualize", str(SAMPLES / "digits_cnn.keras"), "--layer", "conv2", "--maps", "0,2", "--steps", "24",
                 "--lr", "0.2", "--crops", "50", "-o", str(out), "--npz", str(npz)]) == 0
    text = capsys.readouterr().out
    assert "map 2: activation" in text and "the best natural input" in text and "50 random crops" in text
    assert out.stat().st_size > 10_000 and npz.is_file()


@pytest.mark.parametrize(("extra", "needle"), [
    (["--layer", "flatten", "--map", "0"], "has no maps to visualize"),
    (["--layer", "conv2", "--map", "16"], "out of range"),
    (["--layer", "conv2", "--maps", "3-40"], "out of range"),
    (["--layer", "conv2", "--map", "0", "--steps", "0"], "--steps must be a positive integer"),
    (["--layer", "conv2", "--map", "0", "--lr", "-1"], "--lr must be a positive number"),
    (["--layer", "conv2", "--map", "0", "--size", "32"], "fixed"),
    (["--layer", "nope", "--map", "0"], "no layer"),
    (["--layer", "conv2"], "--map J or --maps SEL"),
])
def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                        needle: str) -> None:
    argv = ["visualize", str(SAMPLES / "digits_cnn.keras"), *extra, "--steps" if "--steps" not in extra else "",
            "2" if "--steps" not in extra else "", "-o", str(tmp_path / "v.png")]
    assert main([a for a in argv if a]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and "internal error" not in err, err
    assert err.startswith("inspector visualize: error: ") and "Received:" in err and needle in err, err


def test_projective_warp_equals_tensorflows_op() -> None:
    """The XLA-compilable warp of the optimisation step computes what ImageProjectiveTransformV3 does."""
    from inspector import kerascompat
    from inspector.visualize import _projective_warp

    kerascompat.import_keras()
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.random((5, 12, 10, 3)).astype("float32")  # the last two read mostly outside the image
    c, s = np.cos(0.15), np.sin(0.15)
    transforms = np.array([[1, 0, 1.3, 0, 1, -0.7, 0, 0], [c * 1.05, -s, 0.8, s, c * 0.95, -0.4, 0, 0],
                           [0.9, 0, 0.5, 0, 1.1, -0.6, 0.001, -0.002],
                           [1, 0, 11.5, 0, 1, -13.2, 0, 0], [1.4, 0.3, -8.6, -0.2, 1.6, 9.1, 0, 0]], "float32")
    want = tf.raw_ops.ImageProjectiveTransformV3(images=images, transforms=transforms, output_shape=[12, 10],
                                                 fill_value=0.5, interpolation="BILINEAR", fill_mode="CONSTANT")
    got = _projective_warp(tf, tf.constant(images), tf.constant(transforms), (12, 10), 0.5)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


@pytest.mark.parametrize("preprocess", ["caffe", "torch", "tf"])
def test_keras_applications_presets(preprocess: str) -> None:
    """caffe/torch/tf as in activations: the image is in the model's range (BGR minus the ImageNet mean for
    caffe), the model on it gives the reported activation, and the drawn picture is RGB."""
    from inspector.inputs import CAFFE_MEAN_BGR, TORCH_MEAN, TORCH_STD
    from inspector.kerascompat import call, import_keras
    from inspector.visualize import visualize

    keras = import_keras()
    model = _tiny_cnn(keras, (16, 16, 3))
    vis = visualize(model, "r2", [1, 4], preprocess=preprocess, **FAST)
    x = vis.image  # (2, 16, 16, 3) in the model's own channel order
    if preprocess == "caffe":
        lo, hi = -np.asarray(CAFFE_MEAN_BGR), 255.0 - np.asarray(CAFFE_MEAN_BGR)
    elif preprocess == "torch":
        lo = -np.asarray(TORCH_MEAN) / np.asarray(TORCH_STD)
        hi = (1.0 - np.asarray(TORCH_MEAN)) / np.asarray(TORCH_STD)
    else:
        lo, hi = -np.ones(3), np.ones(3)
    np.testing.assert_allclose(vis.input_range, [lo.min(), hi.max()], rtol=1e-5)
    assert np.all(x >= lo - 1e-3) and np.all(x <= hi + 1e-3)
    feats = keras.Model(model.inputs, model.get_layer("r2").output)
    got = np.asarray(call(feats, x)).mean(axis=(1, 2))[[0, 1], [1, 4]]
    np.testing.assert_allclose(got, vis.activation, rtol=1e-4, atol=1e-6)
    unit = vis.unit_images()
    model_order = (x - lo) / (hi - lo)
    expected = model_order[..., ::-1] if preprocess == "caffe" else model_order
    np.testing.assert_allclose(unit, np.clip(expected, 0, 1), atol=1e-5)
    # Natural references go in through the same preset (inputs.load_input), so the ratio compares like with like.
    vis2 = visualize(model, "r2", [1], preprocess=preprocess, reference=np.asarray(x[:1]), crops=0, **FAST)
    assert vis2.reference is not None and vis2.reference.n_images == 1


def test_rgb_presets_refuse_a_grayscale_model(digits: Any) -> None:
    from inspector.errors import InputDataError
    from inspector.visualize import visualize

    with pytest.raises(InputDataError, match="'caffe' is for RGB models") as err:
        visualize(digits, "conv2", [0], preprocess="caffe", steps=2)
    assert "\n" not in str(err.value)


def test_ratio_only_where_both_values_are_positive(digits: Any) -> None:
    """'2.7x the best natural image' compares two positive numbers; with either <= 0 there is no ratio."""
    import dataclasses

    from inspector.visualize import Reference, visualize

    vis = visualize(digits, "conv2", [0, 1, 2, 4], steps=2)
    vis = dataclasses.replace(vis, activation=np.array([3.0, -0.7, 2.0, 0.0]),
                              reference=Reference(np.array([1.5, 0.7, -1.0, 1.0]), np.array([1.0, 0.5, np.nan, 2.0]),
                                                  1, 1))
    ratios = vis.ratios()
    assert ratios is not None
    np.testing.assert_allclose(ratios, [2.0, np.nan, np.nan, np.nan])


def test_eager_measuring_passes_fit_a_memory_budget(shapes: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reference scoring runs the model eagerly, and an eager Functional call holds every intermediate tensor
    until it returns: chunks are sized from the layers' activation bytes (64 reference crops of ResNet50 at
    224 px peaked at 8 GB), and the chunking must not change a score."""
    from inspector import visualize as vis

    tap = vis._Tap(shapes, "relu3")
    per_input = vis.kerascompat.activation_bytes(tap.feed, 32)
    # By hand: every layer output on the way to relu3's input (batch axis dropped), 4 bytes per value.
    by_hand = 4 * sum(math.prod(layer.output.shape[1:]) for layer in tap.feed.layers)
    assert per_input == by_hand > 0
    x = np.random.default_rng(0).uniform(0, 255, (23, *shapes.input_shape[1:])).astype(np.float32)
    whole = vis.map_scores(shapes, "relu3", x, [0, 3, 5])
    monkeypatch.setattr(vis.kerascompat, "EAGER_PASS_BYTES", 5 * per_input)
    assert vis._eager_chunk(tap, x, 64) == 5
    calls: list[int] = []
    real_call = vis.kerascompat.call

    def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "values":  # the measuring pass itself, not the layer calls inside it
            calls.append(len(args[0]))
        return real_call(fn, *args, **kwargs)

    monkeypatch.setattr(vis.kerascompat, "call", counting)
    np.testing.assert_allclose(vis.map_scores(shapes, "relu3", x, [0, 3, 5]), whole, rtol=1e-5, atol=1e-6)
    assert calls == [5, 5, 5, 5, 3]
