"""Bad inputs get one-line errors that say what is wrong, what is accepted and what was received.

Table-driven (netron style): each row makes a file and names the exception and a message fragment.
Add a row for every bug found.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

import inspector
from inspector.errors import CorruptModelError, InspectorError, ModelFormatError, UnsupportedFormatError


def _random_bytes(d: Path) -> Path:
    p = d / "model.keras"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    return p


def _empty(d: Path) -> Path:
    p = d / "empty.h5"
    p.write_bytes(b"")
    return p


def _tiny_keras(d: Path) -> Path:
    """A real (tiny) .keras archive written by hand in Keras's layout, so this table needs no Keras."""
    weights = d / "w.h5"
    with h5py.File(weights, "w") as h5:
        g = h5.create_group("layers/dense/vars")
        g.attrs["name"] = "dense"
        g.create_dataset("0", data=np.ones((3, 2), "float32"))
        g.create_dataset("1", data=np.zeros((2,), "float32"))
    config = ('{"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": ['
              '{"module": "keras.layers", "class_name": "InputLayer",'
              ' "config": {"batch_shape": [null, 3], "name": "in"}},'
              '{"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "units": 2},'
              ' "build_config": {"input_shape": [null, 3]}}]}}')
    path = d / "tiny.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", '{"keras_version": "3.15.1"}')
        zf.writestr("config.json", config)
        zf.write(weights, "model.weights.h5")
    return path


def _truncated_keras(d: Path) -> Path:
    good = _tiny_keras(d)
    data = good.read_bytes()
    p = d / "truncated.keras"
    p.write_bytes(data[: len(data) // 2])
    return p


def _zip_without_config(d: Path) -> Path:
    p = d / "code.keras"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("main.py", "print('hello')\n")
        zf.writestr("util.py", "x = 1\n")
    return p


def _bad_config_json(d: Path) -> Path:
    p = d / "badjson.keras"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("config.json", "{not json")
        zf.writestr("model.weights.h5", b"")
    return p


def _missing_weights_member(d: Path) -> Path:
    p = d / "noweights.keras"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": []}}')
    return p


def _hdf5_not_model(d: Path) -> Path:
    p = d / "data.h5"
    with h5py.File(p, "w") as h5:
        h5.create_dataset("images", data=np.zeros((4, 4)))
        h5.create_group("labels")
    return p


def _png_named_keras(d: Path) -> Path:
    p = d / "picture.keras"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    return p


def _empty_dir(d: Path) -> Path:
    p = d / "emptydir"
    p.mkdir()
    return p


def _unrelated_dir(d: Path) -> Path:
    p = d / "somedir"
    p.mkdir()
    (p / "notes.txt").write_text("hello")
    (p / "data.csv").write_text("a,b\n1,2\n")
    return p


def _missing(d: Path) -> Path:
    return d / "does_not_exist.keras"


def _architecture_json(d: Path) -> Path:
    p = d / "model.json"
    p.write_text('{"class_name": "Sequential", "config": {"layers": []}}')
    return p


CASES: list[tuple[str, Callable[[Path], Path], type[Exception], str]] = [
    ("random-bytes", _random_bytes, UnsupportedFormatError, "unrecognised binary data"),
    ("empty-file", _empty, CorruptModelError, "empty file"),
    ("truncated-keras", _truncated_keras, CorruptModelError, "truncated"),
    ("zip-without-config", _zip_without_config, UnsupportedFormatError, "zip of Python source"),
    ("config-not-json", _bad_config_json, CorruptModelError, "not valid JSON"),
    ("missing-weights-member", _missing_weights_member, CorruptModelError, "no model.weights.h5"),
    ("hdf5-not-a-model", _hdf5_not_model, UnsupportedFormatError, "not a Keras model"),
    ("png-named-keras", _png_named_keras, UnsupportedFormatError, "PNG image"),
    ("empty-directory", _empty_dir, UnsupportedFormatError, "empty directory"),
    ("unrelated-directory", _unrelated_dir, UnsupportedFormatError, "without saved_model.pb"),
    ("missing-path", _missing, ModelFormatError, "no such file"),
    ("architecture-json", _architecture_json, UnsupportedFormatError, "without weights"),
]


# The "what is accepted" part: "expected ...", "accepted: ...", or an explicit instruction.
_ACCEPTED = re.compile(r"\b(?:expected\b|accepted:|re-save\b|pass (?:the|one of)\b)", re.IGNORECASE)


@pytest.mark.parametrize(("make", "error", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_open_model_error(tmp_path: Path, make: Callable[[Path], Path], error: type[Exception],
                          fragment: str) -> None:
    path = make(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    with pytest.raises(error) as info:
        inspector.open_model(path)
    message = str(info.value)
    assert "\n" not in message
    # Three parts, in this order: what is wrong (the fragment), what is accepted, what was received.
    assert fragment in message
    assert f"Received: {path}" in message
    accepted = _ACCEPTED.search(message)
    assert accepted is not None, f"no 'what is accepted' part: {message}"
    received = message.index("Received:")
    assert message.index(fragment) < accepted.start() < received, message
    # The accepted part names what to give instead (every accepted input is or includes a .keras file).
    assert ".keras" in message[accepted.start():received], message
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing written or touched


@pytest.mark.parametrize(("make", "fragment"), [(c[1], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_cli_exit_code_and_one_line(tmp_path: Path, make: Callable[[Path], Path], fragment: str) -> None:
    path = make(tmp_path)
    result = subprocess.run([sys.executable, "-m", "inspector", "summary", str(path)], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def test_tiny_handmade_keras_reads(tmp_path: Path) -> None:
    """The fixture the table corrupts is itself valid: proves the errors come from the damage."""
    with inspector.open_model(_tiny_keras(tmp_path)) as index:
        assert index.total_params == 8
        # InputLayer batch_shape [null, 3] → Dense(2): the reader derives the output shape from the config.
        assert index.layer("dense").output_shape == (None, 2)
        assert index.layer("dense").input_shape == (None, 3)


def test_all_errors_are_inspector_errors() -> None:
    for _, _, error, _ in CASES:
        assert issubclass(error, InspectorError)
        assert issubclass(error, ValueError)  # callers' existing except clauses keep working


def test_debug_flag_shows_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "inspector", "--debug", "summary", str(_empty(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" in result.stderr
