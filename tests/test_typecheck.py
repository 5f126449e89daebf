"""mypy over ``inspector/`` (``[tool.mypy]`` in pyproject.toml): no errors, and no unused ``type: ignore``.

``warn_unused_ignores`` is on, so every remaining ignore is one mypy still needs. mypy is in the ``test``
extra: a missing mypy fails here rather than skipping, so the check cannot quietly stop running.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_mypy_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-color-output"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
