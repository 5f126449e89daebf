"""The CLI's progress bar: a ``progress(done, total, what)`` callback drawing on a text stream.

Library code (``export_batch``) only calls the callback; drawing belongs to the front end, as the
dashboard draws its own ``st.progress`` bar from the same callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

__all__ = ["text_progress_bar"]


def text_progress_bar(stream: TextIO, width: int = 30) -> Callable[[int, int, str], None]:
    """A progress callback drawing ``[#####.....] 12/40 conv1:11`` on ``stream`` (stderr)."""
    def report(done: int, total: int, what: str) -> None:
        filled = int(width * done / max(total, 1))
        end = "\n" if done >= total else ""
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what[:40]:<40}{end}")
        stream.flush()

    return report
