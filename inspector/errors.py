"""Exceptions raised by filter-inspector.

Every error a user can cause is an :class:`InspectorError` whose ``str()`` is one line in three parts:
what is wrong, what is accepted (or how to fix it), and what was received. Lower-level exceptions
(zipfile, h5py, json, keras) are mapped to these at the reader boundary with ``raise ... from exc``.

    InspectorError
    ├── ModelFormatError (ValueError)         the input is not a model file we can read
    │   ├── UnsupportedFormatError             a recognisable file, but not a Keras/TF model
    │   └── CorruptModelError                  looks like a model but is truncated / inconsistent
    ├── UnsafeModelError (ValueError)          loading would execute code stored in the file
    ├── ModelNotRunnableError (RuntimeError)   the model can be indexed but not run
    ├── MissingDependencyError (ImportError)   an optional extra is not installed
    ├── LayerNotFoundError (KeyError)          no layer at that path (close matches suggested)
    ├── NotAFilterLayerError (ValueError)      the layer has no kernel to slice
    ├── SelectionError (ValueError)            a map index / selector is out of range or malformed
    ├── InputDataError (ValueError)            an image / array does not fit the model input
    └── OutputPathError (ValueError)           an output file or folder cannot be written
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CorruptModelError",
    "InputDataError",
    "InspectorError",
    "LayerNotFoundError",
    "MissingDependencyError",
    "ModelFormatError",
    "ModelNotRunnableError",
    "NotAFilterLayerError",
    "OutputPathError",
    "SelectionError",
    "UnsafeModelError",
    "UnsupportedFormatError",
]

ACCEPTED_FORMATS = (
    "a Keras .keras archive, a .weights.h5 / sharded .weights.json file, a legacy Keras .h5/.hdf5 model "
    "or weights file, or a TensorFlow SavedModel directory"
)


class InspectorError(Exception):
    """Base class of every error filter-inspector raises on purpose."""

    def __str__(self) -> str:  # one line, always: messages are shown in CLIs and dashboards
        # Exception.__str__, not super(): KeyError subclasses would otherwise quote the message.
        return " ".join(Exception.__str__(self).split())


class ModelFormatError(InspectorError, ValueError):
    """The input is not something filter-inspector can read as a model."""


class UnsupportedFormatError(ModelFormatError):
    """The file is recognisable but is not a supported Keras/TensorFlow model."""


class CorruptModelError(ModelFormatError):
    """The file looks like a model but is truncated, damaged or missing parts."""


class UnsafeModelError(InspectorError, ValueError):
    """Loading the model would run code stored in the file and the user has not opted in."""


class ModelNotRunnableError(InspectorError, RuntimeError):
    """The model can be indexed (weights, shapes) but cannot be run for activations."""


class MissingDependencyError(InspectorError, ImportError):
    """An optional dependency is missing; the message says which extra to install."""


class LayerNotFoundError(InspectorError, KeyError):
    """No layer has the requested path."""


class NotAFilterLayerError(InspectorError, ValueError):
    """The layer has no kernel (pooling, activation, ...), so it has no filters."""


class SelectionError(InspectorError, ValueError):
    """A map index or selector string is malformed or out of range."""


class InputDataError(InspectorError, ValueError):
    """An input image or array cannot be fitted to the model's input."""


class OutputPathError(InspectorError, ValueError):
    """An output file or folder cannot be written (missing/unwritable folder, a folder in the way, ...)."""


def describe_received(value: object, limit: int = 120) -> str:
    """Short ``Received: ...`` text for a value, trimmed so messages stay one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def close_matches(word: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Candidates that look like ``word``: difflib matches first, then substring matches."""
    pool = list(candidates)
    found = difflib.get_close_matches(word, pool, n=n, cutoff=0.5)
    lowered = word.lower()
    for cand in pool:
        if len(found) >= n:
            break
        if cand not in found and (lowered in cand.lower() or cand.lower().endswith("/" + lowered)):
            found.append(cand)
    return found


def missing_dependency(module: str, extra: str, purpose: str) -> MissingDependencyError:
    """The error to raise when an optional import fails."""
    return MissingDependencyError(
        f"{purpose} needs the optional package '{module}', which is not installed; "
        f"install it with: pip install 'filter-inspector[{extra}]'. Received: import of {module!r} failed."
    )
