"""Waiting for a dashboard page's background job (dashboard/jobs.py) in Streamlit AppTests."""

from __future__ import annotations

import time
from typing import Any


def finish_job(at: Any, state_key: str, timeout: float = 120.0) -> Any:
    """Wait until the job the page keeps under ``state_key`` has ended, then rerun the app so the page
    shows its result; returns the job."""
    job = at.session_state[state_key]
    deadline = time.monotonic() + timeout
    while job.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not job.running, f"the job under {state_key} did not end within {timeout} s"
    at.run()
    return job
