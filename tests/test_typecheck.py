"""mypy over inspector/ with the [tool.mypy] settings of pyproject.toml.

A file either type-checks cleanly or is listed in PENDING with the number of errors it had when the
checker was added (issue 10). A listed file may not gain errors and an unlisted file may have none, so
the list only shrinks: whoever fixes a file's last error deletes its row, and the test then says so if
the row is still there.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent

#: Files still being typed, and how many errors each had: these files were being edited by others when the
#: checker was added. Delete a row when its file is clean; the goal is an empty dict.
PENDING: dict[str, int] = {
    "inspector/dashboard/loading.py": 2,
    "inspector/dashboard/views.py": 1,
}

_ERROR = re.compile(r"^(?P<file>[^:\n]+\.py):\d+(?::\d+)?: error: ", re.MULTILINE)


def test_mypy() -> None:
    pytest.importorskip("mypy", reason="mypy is in the 'test' extra: pip install -e '.[test]'")
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-color-output", "--no-error-summary"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: a crash or a bad configuration
    errors = Counter(match["file"].replace("\\", "/") for match in _ERROR.finditer(result.stdout))
    over = {f: n for f, n in errors.items() if n > PENDING.get(f, 0)}
    assert not over, f"new type errors (file: count, allowed {PENDING}):\n{result.stdout}"
    clean = sorted(f for f in PENDING if errors[f] == 0)
    assert not clean, f"these files now type-check cleanly; delete their rows from PENDING: {clean}"
