"""One reader per model format, behind one contract.

The contract every file reader keeps (:class:`Reader`):

* ``reader(path) -> ModelIndex``; ``path`` is what :func:`inspector.sniff.sniff` classified, and the
  reader trusts that classification (format detection lives in ``inspector/sniff.py`` only).
* Tensors are lazy: indexing reads metadata (configs, shapes, dtypes, file offsets), never weight bytes;
  each :class:`~inspector.records.TensorRef` reads its bytes when asked.
* Resources are owned by the index: a handle that lazy tensors read through is registered with
  ``index.own(handle)`` / ``index.add_closer(fn)`` and released by ``index.close()``; everything else
  the reader opened is closed before it returns, and on error nothing it opened stays open.
* Errors are ours: what the reader recognises as wrong (a damaged member, a missing group, an unsupported
  variant) is raised as a one-line :class:`~inspector.errors.ModelFormatError` subclass. Low-level
  exceptions that still escape (``OSError``, ``KeyError``, ``ValueError``, ...) are mapped to
  :class:`~inspector.errors.CorruptModelError` by :func:`inspector.loader.open_model`, the only caller.

:data:`READERS` maps every :class:`~inspector.sniff.Sniffed` kind to its reader. The functions below
import their modules on first use so that ``import inspector`` stays light. An in-memory
``keras.Model`` is not a file: ``inspector.readers.live.read_keras_model`` takes the object and owns
no resources.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from ..records import ModelIndex
from ..sniff import Sniffed

__all__ = ["READERS", "Reader", "reader_for"]


class Reader(Protocol):
    """A file reader: see the module docstring for the contract."""

    def __call__(self, path: str, /) -> ModelIndex: ...


def _keras_archive(path: str) -> ModelIndex:
    from .keras_v3 import read_keras_archive

    return read_keras_archive(path)


def _legacy_h5(path: str) -> ModelIndex:
    from .legacy_h5 import read_legacy_h5

    return read_legacy_h5(path)


def _legacy_weights_h5(path: str) -> ModelIndex:
    from .legacy_h5 import read_legacy_weights_h5

    return read_legacy_weights_h5(path)


def _weights_h5(path: str) -> ModelIndex:
    from .weights_h5 import read_weights_h5

    return read_weights_h5(path)


def _sharded_weights(path: str) -> ModelIndex:
    from .weights_h5 import read_sharded_weights

    return read_sharded_weights(path)


def _savedmodel(path: str) -> ModelIndex:
    from .savedmodel import read_savedmodel

    # sniff accepts the saved_model.pb file itself; the reader wants its directory.
    return read_savedmodel(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)))


#: Sniffed kind -> reader. A new format adds a Sniffed member, a detection rule in sniff.py and a row here.
READERS: Mapping[Sniffed, Reader] = {
    Sniffed.KERAS_ZIP: _keras_archive,
    Sniffed.LEGACY_H5: _legacy_h5,
    Sniffed.LEGACY_WEIGHTS_H5: _legacy_weights_h5,
    Sniffed.WEIGHTS_H5: _weights_h5,
    Sniffed.SHARDED_JSON: _sharded_weights,
    Sniffed.SAVEDMODEL: _savedmodel,
}


def reader_for(kind: Sniffed) -> Reader:
    """The reader for a sniffed kind (every kind has one; tests/test_index_details.py checks it)."""
    return READERS[kind]
