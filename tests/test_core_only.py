"""The core install: ``pip install filter-inspector`` without extras reads every format with no TensorFlow.

One fresh venv (module fixture) gets this checkout with only its core dependencies (numpy, h5py,
matplotlib); the commands that need no forward pass then run on every bundled sample format, and
``decompose`` must refuse with the one-line "install 'filter-inspector[run]'" message. pip's cache is
reused, so after the first run the install takes seconds. Needs the package registry (or a warm cache).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
import venv
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_models"
MODELS = ["digits_cnn.keras", "digits_cnn.h5", "digits_cnn.weights.h5", "digits_cnn_savedmodel"]
FORBIDDEN = ("tensorflow", "tensorflow_cpu", "keras", "tf_keras")
#: The checkout minus what a wheel never holds; copied so the build's build/ and *.egg-info folders land
#: in the temporary copy, not in a work tree others may be using.
_NOT_SHIPPED = shutil.ignore_patterns(".git", ".venv", "bench", "tests", "test-artifacts", "build", "dist",
                                      "*.egg-info", "__pycache__", ".*_cache")


def _env() -> dict[str, str]:
    """The environment of a user's shell: nothing that points Python at the checkout or the dev venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PIP_NO_CACHE_DIR")}
    env.update(MPLBACKEND="Agg", PYTHONWARNINGS="ignore", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _run(args: list[str | Path], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def _build_requirements_met(python: Path, cwd: Path) -> bool:
    """Whether the venv already has every build requirement (``name`` or ``name>=X.Y``), so pip may skip
    build isolation (and the download of setuptools it implies)."""
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    checks = []
    for req in requires:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(?:>=\s*([0-9.]+))?\s*", req)
        if match is None:
            return False  # a requirement form this check does not parse: let pip isolate the build
        checks.append((match[1], match[2] or "0"))
    code = (
        "import importlib.metadata as m, sys\n"
        "def v(s): return tuple(int(p) for p in s.split('.')[:3] if p.isdigit())\n"
        f"for name, low in {checks!r}:\n"
        "    try:\n"
        "        ok = v(m.version(name)) >= v(low)\n"
        "    except m.PackageNotFoundError:\n"
        "        ok = False\n"
        "    if not ok: sys.exit(1)\n"
    )
    return _run([python, "-c", code], cwd).returncode == 0


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bin folder of a fresh venv holding only the core install, a work folder outside the checkout)."""
    root = tmp_path_factory.mktemp("core_only")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=_NOT_SHIPPED)
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    install: list[str | Path] = [python, "-m", "pip", "install", "--quiet"]
    if _build_requirements_met(python, root):
        install.append("--no-build-isolation")
    result = _run([*install, source], root, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    work = root / "work"
    work.mkdir()
    return bin_dir, work


def test_core_venv_has_no_tensorflow_or_keras(core: tuple[Path, Path]) -> None:
    bin_dir, work = core
    listed = _run([bin_dir / "python", "-m", "pip", "list", "--format=json"], work)
    assert listed.returncode == 0, listed.stderr
    names = {p["name"].lower().replace("-", "_") for p in json.loads(listed.stdout)}
    assert {"filter_inspector", "numpy", "h5py", "matplotlib"} <= names
    assert not names & set(FORBIDDEN), sorted(names & set(FORBIDDEN))
    code = ("import importlib.util, json, inspector\n"
            f"print(json.dumps([inspector.__file__, [m for m in {FORBIDDEN!r} if importlib.util.find_spec(m)]]))")
    probe = _run([bin_dir / "python", "-c", code], work)
    assert probe.returncode == 0, probe.stderr
    location, importable = json.loads(probe.stdout)
    assert importable == []
    assert Path(location).resolve().is_relative_to((bin_dir.parent).resolve())  # the installed copy, not REPO


@pytest.mark.parametrize("model", MODELS)
def test_core_commands_read_every_format(core: tuple[Path, Path], model: str) -> None:
    bin_dir, work = core
    cli = bin_dir / "inspector"
    path = SAMPLES / model
    out = work / model.replace(".", "_")
    out.mkdir()

    summary = _run([cli, "summary", path, "--json"], out)
    assert summary.returncode == 0, summary.stderr
    data = json.loads(summary.stdout)
    assert data["total_params"] == 3978
    assert [layer["path"] for layer in data["layers"] if layer["kind"] in ("conv", "dense")] == [
        "conv1", "conv2", "digit_probs"]

    table = _run([cli, "summary", path], out)
    assert table.returncode == 0 and "conv2" in table.stdout and "3,978" in table.stdout, table.stderr

    filters = _run([cli, "filters", path, "conv2", "0", "-o", "x.png", "--npz", "x.npz"], out)
    assert filters.returncode == 0, filters.stderr
    assert (out / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "x.png").stat().st_size > 5000
    with np.load(out / "x.npz") as npz:
        assert npz["kernels"].shape == (8, 3, 3) and np.isfinite(npz["kernels"]).all()
        assert npz["kernels"].any()
        assert sorted(npz["input_channels"].tolist()) == list(range(8))

    export = _run([cli, "export", path, "-o", "export", "--layers", "conv2", "--maps", "0-1", "--quiet"], out)
    assert export.returncode == 0, export.stderr
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest
    pngs = sorted(p.name for p in (out / "export" / "conv2").glob("*.png"))
    assert pngs == ["map_0000.png", "map_0001.png"]
    with np.load(out / "export" / "conv2.npz") as npz:
        assert npz.files

    stats = _run([cli, "stats", path, "--json"], out)
    assert stats.returncode == 0, stats.stderr
    assert "conv2" in stats.stdout and "digit_probs" in stats.stdout
    json.loads(stats.stdout)
    table = _run([cli, "stats", path], out)
    assert table.returncode == 0 and "conv1" in table.stdout and "Dead maps" in table.stdout, table.stderr


@pytest.mark.parametrize("model", ["digits_cnn.keras", "digits_cnn.h5", "digits_cnn_savedmodel"])
def test_decompose_asks_for_the_run_extra(core: tuple[Path, Path], model: str) -> None:
    bin_dir, work = core
    result = _run([bin_dir / "inspector", "decompose", SAMPLES / model, SAMPLES / "sample_input_digit.npy",
                   "--layer", "conv2", "--map", "0"], work)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'filter-inspector[run]'" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
