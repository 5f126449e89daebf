"""Bad user input found in review: every case is a one-line InspectorError (CLI exit 2, dashboard st.error).

One test (or parameter row) per reviewed defect; the item numbers of the review are in the comments.
Output paths under ``/proc`` cannot be created even by root, which is how these tests run in CI.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inspector.cli import main
from inspector.errors import CorruptModelError, InputDataError, InspectorError, ModelFormatError, SelectionError

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_models"
DIGITS = SAMPLES / "digits_cnn.keras"
SHAPES = SAMPLES / "shapes_rgb.keras"
UNWRITABLE = "/proc/inspector-test"  # /proc refuses new entries, for root too


def _fail(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI, expect exit 2 and return its one-line error message."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and "internal error" not in err, err
    assert err.startswith(f"inspector {argv[0]}: error: ") and "Received:" in err, err
    return err


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI, expect argparse's exit 2 and return its error line (the last one, after the usage)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail instead of hanging forever should a FIFO ever be opened again."""
    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError("blocked on a FIFO")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- 2. unwritable output paths: exit 2 naming the path, checked before the model is opened ------------------

@pytest.mark.parametrize("argv, named", [
    (["filters", "{m}", "conv1", "0", "--npz", f"{UNWRITABLE}/x.npz"], f"{UNWRITABLE}/x.npz"),
    (["filters", "{m}", "conv1", "0", "-o", f"{UNWRITABLE}/x.png"], f"{UNWRITABLE}/x.png"),
    (["filters", "{m}", "conv1", "0", "-o", "{t}/afile/x.png"], "afile"),
    (["export", "{m}", "-o", "{t}/afile"], "afile"),
    (["export", "{m}", "-o", f"{UNWRITABLE}/exp"], f"{UNWRITABLE}/exp"),
    (["filters", "{m}", "conv1", "0", "-o", "{t}/dir.png"], "dir.png is a folder"),
])
def test_unwritable_outputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               argv: list[str], named: str) -> None:
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "dir.png").mkdir()
    err = _fail(capsys, [a.format(m=DIGITS, t=tmp_path) for a in argv])
    assert named in err and "cannot write" in err
    assert (tmp_path / "afile").read_text() == "not a folder"  # an existing file in the way is left alone


@pytest.mark.parametrize("command, extra", [
    ("activations", ["--layer", "conv1"]),
    ("decompose", ["--layer", "conv1", "--map", "0"]),
])
@pytest.mark.parametrize("option, target", [
    ("-o", f"{UNWRITABLE}/x.png"),
    ("--npz", f"{UNWRITABLE}/x.npz"),
    ("--npz", "{t}/afile/x"),
])
def test_forward_pass_outputs_are_checked_before_the_model_is_opened(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, extra: list[str], option: str,
        target: str) -> None:
    # The model path does not exist: the error must still be about the output, so it was checked first
    # (before loading and running the model, which is the slow part).
    (tmp_path / "afile").write_text("x")
    target = target.format(t=tmp_path)
    err = _fail(capsys, [command, str(tmp_path / "missing.keras"), "sample", *extra, option, target])
    assert "cannot write" in err and option in err and str(Path(target).parent) in err
    assert "missing.keras" not in err


def test_export_refuses_an_existing_file_before_reading_the_model(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").write_bytes(b"keep me")
    err = _fail(capsys, ["export", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "out")])
    assert "exists and is not a folder" in err and str(tmp_path / "out") in err
    assert (tmp_path / "out").read_bytes() == b"keep me"


def test_output_parent_folders_are_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "deeper" / "f.png"
    assert main(["filters", str(DIGITS), "conv1", "0", "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and f"wrote {out}" in capsys.readouterr().out


def test_a_failing_write_is_a_one_line_error(tmp_path: Path) -> None:
    from inspector.outputs import OutputPathError, writing

    with pytest.raises(OutputPathError) as info, writing(tmp_path / "x.png", option="the figure"):
        raise OSError(28, "No space left on device")
    assert "No space left on device" in str(info.value) and "x.png" in str(info.value)
    assert isinstance(info.value, InspectorError) and "\n" not in str(info.value)


def test_figure_write_errors_are_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    from inspector.export import save_figure
    from inspector.outputs import OutputPathError

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    fig = Figure()
    monkeypatch.setattr(fig, "savefig", full_disk)
    with pytest.raises(OutputPathError, match="No space left"):
        save_figure(fig, tmp_path / "f.png")


# -- 3. --dpi / --max-kernels take positive integers; 14. --max-upload-mb >= 1 ---------------------------

@pytest.mark.parametrize("argv, option", [
    (["filters", str(DIGITS), "conv1", "0", "--dpi", "0"], "--dpi"),
    (["filters", str(DIGITS), "conv1", "0", "--dpi", "-5"], "--dpi"),
    (["filters", str(DIGITS), "conv1", "0", "--max-kernels", "0"], "--max-kernels"),
    (["export", str(DIGITS), "-o", "unused", "--dpi", "0"], "--dpi"),
    (["export", str(DIGITS), "-o", "unused", "--dpi", "-1"], "--dpi"),
    (["app", "--max-upload-mb", "0"], "--max-upload-mb"),
    (["app", "--max-upload-mb", "-3"], "--max-upload-mb"),
])
def test_non_positive_numbers_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str],
                                               option: str) -> None:
    line = _usage_error(capsys, argv)
    assert f"argument {option}" in line and ">= 1" in line and "Received:" in line


# -- 4. activation NPZ keys cannot collide with numpy's argument names -----------------------------------

def test_write_npz_takes_any_key(tmp_path: Path) -> None:
    from inspector.outputs import write_npz

    arrays = {"file": np.arange(3), "allow_pickle": np.ones(2), "input": np.zeros((1, 2)), "inner/dense": np.eye(2),
              "name": np.str_("x")}
    path = write_npz(tmp_path / "a", arrays, compressed=True)
    assert path == tmp_path / "a.npz"
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(data[key], value)


@pytest.fixture(scope="module")
def odd_names_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Layers named like numpy's savez arguments and like selector patterns."""
    import keras

    inp = keras.Input((8, 8, 3), name="img")
    h = keras.layers.Conv2D(4, 3, padding="same", name="input")(inp)
    h = keras.layers.Conv2D(4, 3, padding="same", name="file")(h)
    h = keras.layers.Conv2D(4, 1, name="allow_pickle")(h)
    h = keras.layers.Conv2D(2, 1, name="conv[1]")(h)
    h = keras.layers.Conv2D(2, 1, name="a,b")(h)
    out = keras.layers.Conv2D(2, 1, name="conv1")(h)
    path = tmp_path_factory.mktemp("odd") / "odd.keras"
    keras.Model(inp, out).save(path)
    return path


@pytest.mark.keras
def test_activations_npz_for_layers_named_like_numpy_arguments(odd_names_model: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing_dir" / "acts"  # no suffix, no folder: both are fixed up (items 2 and 7)
    argv = ["activations", str(odd_names_model), "sample", "--layer", "input", "--layer", "file",
            "--layer", "allow_pickle", "--npz", str(target), "-o", str(tmp_path / "figs" / "a.png")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    written = tmp_path / "missing_dir" / "acts.npz"
    assert f"wrote {written}\n" in out
    with np.load(written, allow_pickle=False) as data:
        assert sorted(data.files) == ["__input__", "allow_pickle", "file", "input"]
        assert data["__input__"].shape == (1, 8, 8, 3) and data["file"].shape == (1, 8, 8, 4)
    assert (tmp_path / "figs" / "a-input.png").exists() and (tmp_path / "figs" / "a-allow_pickle.png").exists()


# -- 5. inputs: decompression bombs and non-positive std ---------------------------------------------------

def test_decompression_bomb_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from inspector.inputs import InputSpec, load_input

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 8)  # the sample image is far above 2 × 8 pixels
    with pytest.raises(InputDataError) as info:
        load_input(SAMPLES / "sample_input_rgb.png", InputSpec((None, None, 3)))
    message = str(info.value)
    assert "DecompressionBombError" in message and "sample_input_rgb.png" in message and "\n" not in message


@pytest.mark.parametrize("std", [[0.0], [-1.0], [1.0, 0.0, 1.0], [float("nan")]])
def test_meanstd_refuses_non_positive_std(std: list[float]) -> None:
    from inspector.inputs import InputSpec, load_input

    with pytest.raises(InputDataError, match="--std values must be positive") as info:
        load_input("sample", InputSpec((8, 8, 3)), preprocess="meanstd", mean=[127.5], std=std)
    assert "Received: std=" in str(info.value)
    x = load_input("sample", InputSpec((8, 8, 3)), preprocess="meanstd", mean=[127.5], std=[64.0])
    assert np.all(np.isfinite(x))


def test_image_for_a_two_channel_model_keeps_its_own_message() -> None:
    from inspector.inputs import InputSpec, load_input

    with pytest.raises(InputDataError) as info:
        load_input(SAMPLES / "sample_input_rgb.png", InputSpec((8, 8, 2)))
    assert str(info.value).startswith("an image can feed a model with 1, 3 or 4 input channels")


# -- 6. model paths that are not files or folders, unreadable paths ---------------------------------------

def test_fifo_model_path_is_refused_without_hanging(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    no_hang: None) -> None:
    fifo = tmp_path / "model.keras"
    os.mkfifo(fifo)
    err = _fail(capsys, ["summary", str(fifo)])
    assert "named pipe (FIFO)" in err and str(fifo) in err


def test_device_model_path_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    err = _fail(capsys, ["stats", "/dev/null"])
    assert "character device" in err and "/dev/null" in err


def test_permission_error_while_sniffing_is_a_format_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import inspector.sniff

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    model = tmp_path / "m.keras"
    model.write_bytes(DIGITS.read_bytes())
    monkeypatch.setattr(inspector.sniff, "open", denied, raising=False)  # root cannot be denied for real
    err = _fail(capsys, ["summary", str(model)])
    assert "PermissionError" in err and "Permission denied" in err and str(model) in err
    monkeypatch.undo()
    folder = tmp_path / "folder"
    folder.mkdir()
    monkeypatch.setattr(inspector.sniff.os, "listdir", denied)
    with pytest.raises(ModelFormatError, match="PermissionError"):
        from inspector.loader import open_model

        open_model(folder)


def test_dashboard_open_current_maps_stat_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.dashboard import loading

    def denied(path: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(loading, "model_key", denied)
    with pytest.raises(ModelFormatError) as info:
        loading.open_current("/somewhere/m.keras")
    assert "PermissionError" in str(info.value) and "/somewhere/m.keras" in str(info.value)


# -- 7. --npz without the suffix: written and reported as FILE.npz ----------------------------------------

def test_npz_suffix_is_appended_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["filters", str(DIGITS), "conv1", "0-1", "--npz", str(tmp_path / "x")]) == 0
    assert f"wrote {tmp_path / 'x.npz'} (2 map(s))" in capsys.readouterr().out
    assert (tmp_path / "x.npz").is_file() and not (tmp_path / "x").exists()

    from inspector.export import load_npz, save_npz
    from inspector.filters import filters_for_map
    from inspector.loader import open_model

    with open_model(DIGITS) as index:
        fs = filters_for_map(index.layer("conv2"), 3, index=index)
    path = save_npz(fs, tmp_path / "y")
    assert path == tmp_path / "y.npz" and load_npz(path)[0].map_index == 3


# -- 8. --manifest: only json/csv, and the command names what it wrote ------------------------------------

def test_manifest_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, ["export", str(DIGITS), "-o", str(tmp_path / "e"), "--manifest", "xml"])
    assert "argument --manifest" in line and "'xml'" in line and "json, csv" in line
    assert not (tmp_path / "e").exists()

    assert main(["export", str(DIGITS), "-o", str(tmp_path / "j"), "--layers", "conv1", "--maps", "0",
                 "--format", "npz", "--manifest", "json", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "(manifest.json lists them)" in out and "manifest.csv" not in out
    assert (tmp_path / "j" / "manifest.json").is_file() and not (tmp_path / "j" / "manifest.csv").exists()

    from inspector.export import Manifest

    with pytest.raises(SelectionError, match="unknown manifest format 'xml'"):
        Manifest(str(tmp_path), "src").write(["json", "xml"])
    assert not (tmp_path / "manifest.json").exists()  # refused before anything is written


# -- 9. --stage is a choice ---------------------------------------------------------------------------------

def test_export_stage_bogus_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, ["export", str(SHAPES), "-o", str(tmp_path / "e"), "--stage", "bogus"])
    assert "argument --stage" in line and "'bogus'" in line and "pointwise" in line


# -- 10. filters resolves globs like export --layers ----------------------------------------------------------

def test_filters_layer_glob(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["filters", str(DIGITS), "conv*:0-1"]) == 0
    out = capsys.readouterr().out
    assert "layer conv1 (Conv2D" in out and "layer conv2 (Conv2D" in out and out.count("map 1:") == 2

    assert main(["filters", str(DIGITS), "conv*", "0", "--npz", str(tmp_path / "f.npz"),
                 "-o", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    for layer in ("conv1", "conv2"):
        assert f"wrote {tmp_path / f'f-{layer}.npz'}" in out and (tmp_path / f"f-{layer}.png").is_file()
    assert not (tmp_path / "f.npz").exists()

    err = _fail(capsys, ["filters", str(DIGITS), "zz*:0"])
    assert "no filter layer matches 'zz*'" in err
    err = _fail(capsys, ["filters", str(DIGITS), "conv*:0-9"])  # conv1 has 8 maps: nothing is written
    assert "out of range" in err


# -- 11. exact layer paths are never parsed as patterns ------------------------------------------------------

@pytest.mark.keras
def test_export_takes_exact_layer_paths(odd_names_model: Path, tmp_path: Path) -> None:
    from inspector.dashboard.page_export import build_zip
    from inspector.export import export_batch
    from inspector.loader import open_model

    with open_model(odd_names_model) as index:
        for name in ("conv[1]", "a,b"):
            manifest = export_batch(index, tmp_path / "e", layers=[name], maps="0", formats="npz")
            assert {r.layer for r in manifest.rows} == {name}
        data, count, _ = build_zip(index, ["conv[1]"], "0", ["npz"])
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert "conv_1.npz" in zf.namelist() and "conv1.npz" not in zf.namelist() and count == 1
    # The CLI takes an exact name first, too.
    assert main(["filters", str(odd_names_model), "conv[1]", "0"]) == 0


# -- 13. decompose: fold_bn takes True/False only ----------------------------------------------------------

@pytest.mark.parametrize("fold_bn", ["before", "both", "yes"])
def test_decompose_refuses_other_fold_modes(fold_bn: str) -> None:
    from inspector.decompose import decompose
    from inspector.loader import open_model

    with open_model(DIGITS) as index, pytest.raises(SelectionError) as info:
        decompose(index, None, np.zeros((1, 16, 16, 1), np.float32), "conv1", 0, fold_bn=fold_bn)
    assert "after the layer" in str(info.value) and repr(fold_bn) in str(info.value)


# -- 1 and 12. dashboard: damaged zip uploads, the last-resort guard, upload types ------------------------------

def _damaged_savedmodel_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("m/saved_model.pb", b"\x08\x01" + b"x" * 200)
    data = bytearray(buf.getvalue())
    pos = data.index(b"x" * 200)
    data[pos + 50] ^= 0xFF  # the central directory stays intact, so only extraction notices (Bad CRC-32)
    return bytes(data)


def test_damaged_savedmodel_zip_upload_is_one_line() -> None:
    from streamlit.testing.v1 import AppTest

    from inspector.dashboard import MAIN_SCRIPT

    at = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120).run()
    at.radio(key="src_kind").set_value("Upload").run()
    at.file_uploader(key="src_upload").set_value(("broken.zip", _damaged_savedmodel_zip(), "application/zip")).run()
    errors = [e.value for e in at.error]
    assert not at.exception, [e.value for e in at.exception]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert "BadZipFile" in errors[0] and "broken.zip" in errors[0] and "internal error" not in errors[0]
    # The app recovers: a good model opens after the broken upload.
    at.radio(key="src_kind").set_value("Sample model").run()
    assert not at.error and not at.exception


def test_materialise_upload_maps_bad_zips(monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.dashboard import loading

    state: dict[str, object] = {}
    monkeypatch.setattr(loading.st, "session_state", state)
    with pytest.raises(CorruptModelError, match="Bad CRC-32"):
        loading._materialise_upload("broken.zip", _damaged_savedmodel_zip())
    loading._cleanup_temp_dirs()


def test_unexpected_dashboard_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from inspector.dashboard import MAIN_SCRIPT, loading

    def broken() -> str:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(loading, "model_source_ui", broken)
    at = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == ["internal error: RuntimeError: boom second line (please report it)"]


def test_bare_weights_json_is_not_an_upload_type() -> None:
    from inspector.dashboard import loading

    assert "json" not in loading._UPLOAD_TYPES and "zip" in loading._UPLOAD_TYPES
    docs = (REPO / "docs" / "dashboard.md").read_text()
    assert "`.weights.h5`, `.weights.json`" not in docs


@pytest.mark.keras
def test_zipped_sharded_weights_upload_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    from inspector.dashboard import loading
    from inspector.loader import open_model

    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(40, name="d1"), keras.layers.Dense(3, name="d2")])
    model.save_weights(tmp_path / "w.weights.json", max_shard_size=0.000002)  # ~2 kB shards
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(tmp_path.iterdir()):
            zf.write(f, "w/" + f.name)
    monkeypatch.setattr(loading.st, "session_state", {})
    path = loading._materialise_upload("weights.zip", buf.getvalue())
    try:
        assert path.endswith("w.weights.json")
        with open_model(path) as index:
            assert {"d1", "d2"} <= set(index.paths)
    finally:
        loading._cleanup_temp_dirs()
