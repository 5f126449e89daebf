"""Long work off the script thread: a :class:`Job` runs in a background thread and the page polls it.

Streamlit reruns the script on every interaction, so work that takes seconds to hours (a whole-model
export, a feature visualization) cannot run inside it without freezing the app. A page starts the
work with :func:`start` (the job lives in ``st.session_state`` under the page's key), and
:func:`progress_ui` draws a fragment that reruns every half second while the job runs: a progress
bar with the rate and an estimate of the time left, and a Cancel button. Cancel sets an event; the
job's progress callback raises :class:`JobCancelled` at the next step, so the work stops there.
When the job ends, the fragment asks for one full rerun, and the page shows the result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import streamlit as st

from inspector.dashboard import views

__all__ = ["POLL_SECONDS", "Job", "JobCancelled", "Progress", "cancel", "current", "progress_ui", "start"]

T = TypeVar("T")
#: What the work receives: ``progress(done, total, what)``; it raises JobCancelled after Cancel.
Progress = Callable[[int, int, str], None]
POLL_SECONDS = 0.5


class JobCancelled(Exception):
    """Raised by :meth:`Job.progress` when the user pressed Cancel."""


@dataclass
class Job(Generic[T]):
    """One piece of work in a background thread; the page reads it, the thread writes it."""

    name: str
    model: Any  # the model key the job belongs to: a job of another model is not shown
    unit: str = "maps"
    tag: Any = None  # what the job is for (e.g. the view it belongs to), for the page to match
    total: int = 0
    done: int = 0
    what: str = ""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    result: T | None = None
    error: str | None = None
    cancelled: bool = False

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def progress(self, done: int, total: int, what: str = "") -> None:
        self.done, self.total = done, total
        if what:
            self.what = what
        if self.cancel.is_set():
            raise JobCancelled

    def eta_text(self) -> str:
        """'about 12 s left (3.1 maps/s)' from the work done so far and its rate."""
        elapsed = time.monotonic() - self.started
        if self.done <= 0 or self.total <= 0:
            return "estimating time left…"
        left = (self.total - self.done) * elapsed / self.done
        return f"about {left:.0f} s left ({self.done / max(elapsed, 1e-9):.1f} {self.unit}/s)"

    def run(self, work: Callable[[Progress], T]) -> None:
        try:
            self.result = work(self.progress)
        except JobCancelled:
            self.cancelled = True
        except Exception as exc:  # shown as one line by the page
            self.error = views.error_text(exc)
        finally:
            self.finished = time.monotonic()


def start(state_key: str, job: Job[T], work: Callable[[Progress], T]) -> None:
    """Keep ``job`` under ``state_key`` (replacing a finished one) and run ``work`` in a thread."""
    st.session_state[state_key] = job
    threading.Thread(target=job.run, args=(work,), name=f"inspector-{state_key.strip('_')}", daemon=True).start()


def current(state_key: str, model: Any = None) -> Job[Any] | None:
    """The job under ``state_key`` (of ``model``, when given), running or finished."""
    job: Job[Any] | None = st.session_state.get(state_key)
    if job is None or (model is not None and job.model != model):
        return None
    return job


def cancel(state_key: str) -> None:
    job = current(state_key)
    if job is not None:
        job.cancel.set()


def progress_ui(state_key: str, *, cancel_label: str = "Cancel", widget_key: str | None = None) -> None:
    """While the job runs: a polled fragment with its progress and a Cancel button."""
    job = current(state_key)
    if job is not None and job.running:
        st.fragment(run_every=POLL_SECONDS)(_progress)(state_key, cancel_label,
                                                       widget_key or f"{state_key.strip('_')}_cancel")


def _progress(state_key: str, cancel_label: str, widget_key: str) -> None:
    """Polled while the job runs; a full rerun when it ends shows the result (and stops polling)."""
    job = current(state_key)
    if job is None:
        return
    if not job.running:
        st.rerun()
    frac = job.done / job.total if job.total else 0.0
    status = "stopping after this step…" if job.cancel.is_set() else job.eta_text()
    st.progress(min(1.0, frac), text=f"{job.done}/{job.total} {job.unit} · {job.what or 'starting…'} · {status}")
    st.button(cancel_label, key=widget_key, on_click=cancel, args=(state_key,), disabled=job.cancel.is_set())
