"""Input presets (the Keras applications' preprocess_input modes) and fit modes for non-matching aspects.

The presets are checked against ``keras.applications.imagenet_utils.preprocess_input`` itself; the fit
modes on a non-square picture with a distinct colour in its left, centre and right thirds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.cli import main
from inspector.errors import InputDataError
from inspector.inputs import CAFFE_MEAN_BGR, FIT_CHOICES, PREPROCESS_CHOICES, InputSpec, load_input

REPO = Path(__file__).resolve().parent.parent
SHAPES = REPO / "sample_models" / "shapes_rgb.keras"  # 32x32x3 input; conv1_rgb is its first conv


def _thirds_png(path: Path, width: int = 60, height: int = 20) -> Path:
    """A wide picture: red left third, green centre third, blue right third."""
    from PIL import Image

    img = np.zeros((height, width, 3), np.uint8)
    third = width // 3
    img[:, :third, 0] = 255
    img[:, third:2 * third, 1] = 255
    img[:, 2 * third:, 2] = 255
    Image.fromarray(img, mode="RGB").save(path)
    return path


# -- presets ------------------------------------------------------------------------------------------

@pytest.mark.keras
@pytest.mark.parametrize("mode", ["caffe", "torch", "tf"])
@pytest.mark.parametrize("channels_first", [False, True], ids=["channels_last", "channels_first"])
def test_presets_equal_keras_preprocess_input(mode: str, channels_first: bool, tmp_path: Path) -> None:
    from inspector import kerascompat

    kerascompat.import_keras()
    from keras.applications.imagenet_utils import preprocess_input

    data_format = "channels_first" if channels_first else "channels_last"
    raw = (np.random.default_rng(0).random((2, 5, 6, 3)) * 255).astype(np.float32)
    if channels_first:
        raw = np.moveaxis(raw, -1, 1)
    spec = InputSpec(raw.shape[1:], channels_first)
    ref = preprocess_input(raw.copy(), mode=mode, data_format=data_format)
    np.testing.assert_array_equal(load_input(raw, spec, preprocess=mode), ref)
    # The same through an image file (0..255 pixels), and a .npy file.
    np.save(tmp_path / "x.npy", raw)
    np.testing.assert_array_equal(load_input(tmp_path / "x.npy", spec, preprocess=mode), ref)
    png = _thirds_png(tmp_path / "t.png", 6, 5)
    pixels = load_input(png, spec, preprocess="none")
    np.testing.assert_array_equal(load_input(png, spec, preprocess=mode),
                                  preprocess_input(pixels.copy(), mode=mode, data_format=data_format))


def test_caffe_is_bgr_minus_mean_and_tf_is_scale11() -> None:
    x = np.zeros((1, 2, 2, 3), np.float32)
    x[..., 0] = 200.0  # red
    spec = InputSpec((2, 2, 3))
    caffe = load_input(x, spec, preprocess="caffe")
    np.testing.assert_allclose(caffe[0, 0, 0], [-CAFFE_MEAN_BGR[0], -CAFFE_MEAN_BGR[1], 200.0 - CAFFE_MEAN_BGR[2]],
                               rtol=1e-6)
    np.testing.assert_array_equal(load_input(x, spec, preprocess="tf"), load_input(x, spec, preprocess="scale11"))
    assert {"caffe", "torch", "tf"} <= set(PREPROCESS_CHOICES)


@pytest.mark.parametrize("mode", ["caffe", "torch"])
def test_imagenet_presets_need_three_channels(mode: str) -> None:
    with pytest.raises(InputDataError) as info:
        load_input(np.zeros((1, 4, 4, 1), np.float32), InputSpec((4, 4, 1)), preprocess=mode)
    msg = str(info.value)
    assert "\n" not in msg and "3-channel" in msg and "Received: 1 input channels" in msg


def test_bad_choices_and_stray_mean_are_one_line_errors() -> None:
    spec = InputSpec((4, 4, 3))
    for kwargs, accepted in (({"preprocess": "imagenet"}, "caffe"), ({"fit": "zoom"}, "stretch, crop, pad")):
        with pytest.raises(InputDataError) as info:
            load_input("sample", spec, **kwargs)
        msg = str(info.value)
        assert "\n" not in msg and accepted in msg and "Received:" in msg
    with pytest.raises(InputDataError, match="apply only to the meanstd"):
        load_input("sample", spec, preprocess="caffe", mean=[1.0])


# -- fit modes ----------------------------------------------------------------------------------------

def test_fit_modes_shapes(tmp_path: Path) -> None:
    png = _thirds_png(tmp_path / "wide.png")
    for fit in FIT_CHOICES:
        assert load_input(png, InputSpec((16, 16, 3)), fit=fit).shape == (1, 16, 16, 3)
        assert load_input(png, InputSpec((3, 8, 12), channels_first=True), fit=fit).shape == (1, 3, 8, 12)
    # One free side: crop / pad keep the aspect (60x20 -> height 10 gives width 30); stretch keeps the width.
    assert load_input(png, InputSpec((10, None, 3)), fit="crop").shape == (1, 10, 30, 3)
    assert load_input(png, InputSpec((10, None, 3)), fit="pad").shape == (1, 10, 30, 3)
    assert load_input(png, InputSpec((10, None, 3)), fit="stretch").shape == (1, 10, 60, 3)
    assert load_input(png, InputSpec((None, None, 3)), fit="crop").shape == (1, 20, 60, 3)


def test_crop_keeps_the_centre(tmp_path: Path) -> None:
    png = _thirds_png(tmp_path / "wide.png")  # 60x20: the centred 20x20 box is the green third exactly
    x = load_input(png, InputSpec((16, 16, 3)), fit="crop", preprocess="none")[0]
    np.testing.assert_allclose(x[..., 1], 255.0, atol=1.0)
    assert float(x[..., 0].max()) < 1.0 and float(x[..., 2].max()) < 1.0


def test_pad_keeps_everything_on_black(tmp_path: Path) -> None:
    png = _thirds_png(tmp_path / "wide.png")  # 60x20 into 16x16: 16x5 (rounded from 5.33), rows 5-9
    x = load_input(png, InputSpec((16, 16, 3)), fit="pad", preprocess="none")[0]
    rows = np.flatnonzero(x.max(axis=(1, 2)) > 0)
    assert rows.min() == 5 and rows.max() == 9  # centred; the extra row goes below
    np.testing.assert_array_equal(x[:5], 0.0)
    np.testing.assert_array_equal(x[10:], 0.0)
    band = x[5:10]
    assert band[:, 1, 0].min() > 250 and band[:, 8, 1].min() > 250 and band[:, 14, 2].min() > 250
    # Stretch (the default) keeps everything too, but squeezed over the full height.
    s = load_input(png, InputSpec((16, 16, 3)), preprocess="none")[0]
    assert s[:, 1, 0].min() > 250 and s[:, 14, 2].min() > 250


def test_fit_does_not_touch_arrays_or_matching_images(tmp_path: Path) -> None:
    arr = np.arange(48, dtype=np.float32).reshape(1, 4, 4, 3)
    for fit in FIT_CHOICES:
        np.testing.assert_array_equal(load_input(arr, InputSpec((4, 4, 3)), fit=fit), arr)
    png = _thirds_png(tmp_path / "sq.png", 12, 12)
    same = [load_input(png, InputSpec((12, 12, 3)), fit=fit) for fit in FIT_CHOICES]
    for other in same[1:]:
        np.testing.assert_array_equal(other, same[0])


# -- CLI ------------------------------------------------------------------------------------------------

@pytest.mark.keras
@pytest.mark.parametrize(("pre", "fit"), [("caffe", "crop"), ("torch", "pad"), ("tf", "stretch")])
def test_cli_flags_reach_the_model_input(pre: str, fit: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    png = _thirds_png(tmp_path / "wide.png")
    out = tmp_path / "acts.npz"
    assert main(["activations", str(SHAPES), str(png), "--layer", "conv1_rgb", "--preprocess", pre,
                 "--fit", fit, "--npz", str(out)]) == 0
    with np.load(out) as data:
        fed = data["__input__"]
    np.testing.assert_array_equal(fed, load_input(png, InputSpec((32, 32, 3)), preprocess=pre, fit=fit))
    assert main(["decompose", str(SHAPES), str(png), "--layer", "conv1_rgb", "--map", "1", "--preprocess", pre,
                 "--fit", fit]) == 0
    assert "check: max |sum + bias - Keras|" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["activations", "m.keras", "sample", "--layer", "c", "--fit", "zoom"],
    ["decompose", "m.keras", "sample", "--layer", "c", "--map", "0", "--fit", "Crop"],
    ["decompose", "m.keras", "sample", "--layer", "c", "--map", "0", "--preprocess", "imagenet"],
])
def test_cli_bad_values_exit_2_before_any_model(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "must be one of" in err and "Received:" in err and "Traceback" not in err


@pytest.mark.keras
def test_cli_preset_on_a_one_channel_model_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    digits = REPO / "sample_models" / "digits_cnn.keras"
    assert main(["activations", str(digits), "sample", "--layer", "conv1", "--preprocess", "caffe"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "3-channel" in err and "Received:" in err


# -- bundled photographs (inspector.photos) ----------------------------------------------------------------

def test_photos_are_real_photographs_from_the_installed_package() -> None:
    from PIL import Image

    from inspector.photos import PHOTO_NAMES, photo_paths

    paths = photo_paths()
    assert [p.name for p in paths] == list(PHOTO_NAMES.values())  # the test extra installs scikit-image
    for p in paths:
        with Image.open(p) as img:
            arr = np.asarray(img.convert("RGB"), np.float32)
        # Photographs, not test patterns: at least 128 px a side and many distinct values.
        assert min(arr.shape[:2]) >= 128
        assert len(np.unique(arr[..., 0])) > 64


def test_photo_input_is_fitted_like_any_image() -> None:
    from PIL import Image

    from inspector.photos import photo_path

    spec = InputSpec((32, 32, 3), False)
    x = load_input("photo:chelsea", spec, fit="crop")
    assert x.shape == (1, 32, 32, 3) and x.min() >= 0.0 and x.max() <= 1.0
    # Exactly what the same file given by path gives.
    np.testing.assert_array_equal(x, load_input(photo_path("chelsea"), spec, fit="crop"))
    with Image.open(photo_path("camera")) as img:
        assert img.mode == "L"  # grayscale photo into an RGB model: replicated channels
    gray = load_input("photo:camera", spec)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_unknown_photo_is_one_line_error() -> None:
    with pytest.raises(InputDataError, match=r"unknown photo 'nope'; accepted: astronaut, chelsea") as err:
        load_input("photo:nope", InputSpec((32, 32, 3), False))
    assert "\n" not in str(err.value)


def test_cli_takes_a_photo_as_input(tmp_path: Path) -> None:
    out = tmp_path / "act.npz"
    assert main(["activations", str(SHAPES), "photo:astronaut", "--layer", "conv1_rgb", "--npz", str(out)]) == 0
    assert out.is_file()


def test_auto_feeds_raw_pixels_to_a_model_that_rescales_itself() -> None:
    """shapes_rgb begins with Rescaling(1/255): 'auto' gives it 0..255; digits_cnn does not: 0..1."""
    from inspector.inputs import input_spec_from_model
    from inspector.runtime import load_runnable

    shapes = input_spec_from_model(load_runnable(SHAPES))
    digits = input_spec_from_model(load_runnable(REPO / "sample_models" / "digits_cnn.keras"))
    assert shapes.builtin_preprocessing and not digits.builtin_preprocessing
    png = REPO / "sample_models" / "sample_input_rgb.png"
    raw = load_input(png, shapes)
    np.testing.assert_array_equal(raw, load_input(png, shapes, preprocess="none"))
    assert raw.max() > 200
    scaled = load_input("sample", digits)
    np.testing.assert_array_equal(scaled, load_input("sample", digits, preprocess="scale01"))
    assert scaled.max() <= 1.0
    # Arrays are taken as given either way.
    arr = np.full((1, 32, 32, 3), 7.0, np.float32)
    np.testing.assert_array_equal(load_input(arr, shapes), arr)
