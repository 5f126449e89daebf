"""Project-level checks: lint, the public surface, instant CLI help, no TensorFlow on import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import inspector

REPO = Path(__file__).resolve().parent.parent


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: pip install 'filter-inspector[test]'")
    result = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_public_surface_is_exact() -> None:
    """__all__ is the API we document; adding to it is a decision, not an accident."""
    assert sorted(inspector.__all__) == sorted(
        ["FILTER_KINDS", "CorruptModelError", "InputDataError", "InspectorError", "KernelSpec", "LayerKind",
         "LayerNotFoundError", "LayerRecord", "MissingDependencyError", "ModelFormat", "ModelFormatError",
         "ModelIndex", "ModelNotRunnableError", "NotAFilterLayerError", "OutputPathError", "SelectionError",
         "TensorRef", "UnsafeModelError", "UnsupportedFormatError", "__version__", "open_model"])
    for name in inspector.__all__:
        assert hasattr(inspector, name), name


def test_import_is_light() -> None:
    code = ("import sys, inspector\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'matplotlib', 'streamlit') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["summary", "--help"], ["filters", "--help"]])
def test_cli_help_is_instant(args: list[str]) -> None:
    """Help and version load no heavy module (speed itself is measured in bench/, not in tests)."""
    code = ("import sys, contextlib, io\n"
            "from inspector.cli import main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    try:\n"
            f"        main({args!r})\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code == 0, exc.code\n"
            "assert 'inspector' in out.getvalue()\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'matplotlib', 'streamlit', 'scipy') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_no_command_prints_help_and_fails() -> None:
    result = subprocess.run([sys.executable, "-m", "inspector"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "summary" in result.stdout


def test_running_without_keras_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """With only the core installed, forward passes fail in one line that says which extra to install."""
    import importlib.util

    from inspector.errors import MissingDependencyError
    from inspector.runtime import load_runnable

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("keras", "tensorflow") else real_find_spec(name, *a))
    with inspector.open_model(REPO / "sample_models" / "digits_cnn.keras") as index, \
            pytest.raises(MissingDependencyError) as info:
        load_runnable(index)
    assert "pip install 'filter-inspector[run]'" in str(info.value)
    assert isinstance(info.value, ImportError)
