"""``open_model``: the one entry point from a path (or a live model) to a :class:`ModelIndex`.

It sniffs the input (``inspector/sniff.py`` decides the format, HDF5 sub-kinds included), dispatches to
the reader that ``inspector.readers.READERS`` names for it, and maps low-level exceptions (h5py,
zipfile, json, struct) that escape a reader to one-line :class:`InspectorError` s.
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
import threading
from collections.abc import Iterator
from typing import Any

from .errors import ACCEPTED_FORMATS, CorruptModelError, InspectorError, ModelFormatError, UnsupportedFormatError
from .readers import reader_for
from .records import ModelIndex
from .sniff import Sniffed, describe_file, sniff

__all__ = ["open_model"]


_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _sniff_path(path: str) -> Sniffed:
    """:func:`sniff`, after refusing what is neither a file nor a folder, with OSErrors as one line.

    Reading a FIFO or a device would block forever (or read without end), so only the file type is
    looked at before anything is opened.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None  # sniff says "no such file or directory" in its own words
    except OSError as exc:
        raise ModelFormatError(f"cannot access the path ({type(exc).__name__}: {exc.strerror or exc}); check that "
                               f"it exists and is readable; expected {ACCEPTED_FORMATS}. Received: {path}") from exc
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        what = next((name for test, name in _SPECIAL_FILES if test(mode)), "not a regular file")
        raise ModelFormatError(f"the path is {what}, not a model file or folder; expected {ACCEPTED_FORMATS}. "
                               f"Received: {path}")
    try:
        return sniff(path)
    except InspectorError:
        raise
    except OSError as exc:  # e.g. PermissionError from open() / os.listdir()
        raise ModelFormatError(f"cannot read the path ({type(exc).__name__}: {exc.strerror or exc}); check its "
                               f"permissions; expected {ACCEPTED_FORMATS}. Received: {path}") from exc


def _describe(path: str) -> str:
    """describe_file for an error message; never raises (the message must still be produced)."""
    try:
        return describe_file(path) if os.path.isfile(path) else "a directory"
    except OSError:
        return "an unreadable file"


_gc_lock = threading.Lock()
_gc_holders = 0  # open_model calls running now
_gc_was_enabled = False  # whether the first of them found the cyclic collector on


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while an index is built.

    Indexing allocates hundreds of thousands of containers that all stay alive (a deep model's parsed
    config, its records), and every few thousand allocations the collector would scan them again:
    on a 3,751-layer model that is a third of the index time, and it grows faster than the model.
    Indexing creates no reference cycles worth collecting, so the collector is paused for the duration
    (nested and concurrent calls counted) and resumed afterwards exactly as it was found.
    """
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def open_model(source: str | os.PathLike[str] | Any) -> ModelIndex:
    """Index a model file, SavedModel directory or in-memory ``keras.Model``.

    Reads only metadata: weight bytes are read when a :class:`~inspector.records.TensorRef` is read.
    Never imports TensorFlow for files. The file is opened read-only and never modified.
    """
    from .readers.live import is_keras_model

    if is_keras_model(source):
        from .readers.live import read_keras_model

        return read_keras_model(source)
    if not isinstance(source, (str, os.PathLike)):
        raise UnsupportedFormatError(
            f"open_model takes a path or a keras.Model; expected {ACCEPTED_FORMATS}. "
            f"Received: an object of type {type(source).__name__}")
    path = os.fspath(source)
    kind = _sniff_path(path)
    try:
        with _collector_paused():
            return reader_for(kind)(path)
    except InspectorError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, EOFError, UnicodeDecodeError) as exc:
        what = _describe(path)
        raise CorruptModelError(
            f"cannot read the model ({type(exc).__name__}: {exc}); the file may be damaged or of an unsupported "
            f"variant ({what}). Received: {path}") from exc
