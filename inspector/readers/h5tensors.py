"""Lazy tensors backed by HDF5 datasets.

Keras writes every weight dataset contiguous and uncompressed (docs/formats.md §1.2), so a dataset's bytes
are a C-order array at a fixed file offset. We record that offset while indexing and read later with
plain file reads (whole tensor) or a memory map (a slice), which touches only the pages the slice
needs and lets the HDF5 file be closed right after indexing. Datasets that are chunked or filtered
fall back to h5py reads through a handle the index keeps open.

Declared sizes are checked when the index is built, before anything is allocated (docs/limits.md): a
contiguous dataset must end inside the HDF5 image, and any other dataset may declare at most
:data:`MAX_EXPANSION` times the bytes it stores. Only numeric dtypes are tensors; data stored in other
files (HDF5 external storage) is refused. Errors while reading later are :class:`CorruptModelError` s.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import h5py
import numpy as np

from ..errors import CorruptModelError, UnsupportedFormatError
from ..records import TensorLoader
from .h5walk import H5_ERRORS, H5Dataset

__all__ = ["MAX_EXPANSION", "RawTensor", "dataset_tensor", "decode_bfloat16"]

#: A dataset that is not plain contiguous bytes may declare at most this many times the bytes it stores
#: (plus :data:`EXPANSION_SLACK`): real weights compress a few times at most; a header declaring 10^12
#: elements over a few stored bytes is refused before anything is allocated.
MAX_EXPANSION = 1024
EXPANSION_SLACK = 1 << 20
#: numpy kinds a weight tensor may have: float, signed, unsigned, complex, bool.
NUMERIC_KINDS = "fiucb"


class RawTensor:
    """A weight found in a file before the layer knows its name: stored name, shape, dtype, loader."""

    __slots__ = ("dtype", "loader", "location", "needs_handle", "offset", "shape", "stored_name", "trainable")

    def __init__(self, stored_name: str | None, shape: tuple[int, ...], dtype: str, location: str,
                 loader: TensorLoader, trainable: bool | None = None, needs_handle: bool = False) -> None:
        self.stored_name = stored_name
        self.shape = shape
        self.dtype = dtype
        self.location = location
        self.loader = loader
        self.trainable = trainable
        self.needs_handle = needs_handle  # True when reads go through a handle that must stay open
        self.offset: int | None = None  # byte offset in the file, when known (gives write order)


def decode_bfloat16(raw: np.ndarray) -> np.ndarray:
    """bfloat16 stored as opaque 2-byte values: view as ml_dtypes.bfloat16, return float32."""
    try:
        import ml_dtypes
    except ImportError:  # bfloat16 is the top half of a float32: decode without ml_dtypes
        widened = raw.view(np.uint16).astype(np.uint32) << 16
        return widened.view(np.float32)
    return raw.view(np.uint16).view(ml_dtypes.bfloat16).astype(np.float32)


def _is_bfloat16(ds: H5Dataset) -> bool:
    if ds.dtype.kind == "V" and ds.dtype.itemsize == 2:
        return True
    tag = ds.attrs.get("dtype") if ds.num_attrs else None
    if isinstance(tag, bytes):
        tag = tag.decode(errors="replace")
    return isinstance(tag, str) and tag == "bfloat16" and ds.dtype.itemsize == 2


def _damaged(where: str, exc: BaseException) -> CorruptModelError:
    return CorruptModelError(f"cannot read tensor {where} ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                             f"the file is damaged or changed since it was indexed; expected a model file as "
                             f"Keras or TensorFlow write it. Received: {where}")


class _OffsetLoader:
    """Reads a contiguous C-order tensor at a byte offset of a file: the whole tensor with one plain read,
    a slice through a memory map. A class rather than a closure: a deep model has thousands of tensors,
    and each closure would leave nine objects for the garbage collector to scan for the index's lifetime."""

    __slots__ = ("bf16", "dtype", "offset", "path", "shape", "where")

    def __init__(self, path: str, offset: int, dtype: np.dtype, shape: tuple[int, ...], bf16: bool,
                 where: str) -> None:
        self.path = path
        self.offset = offset
        self.dtype = dtype
        self.shape = shape
        self.bf16 = bf16
        self.where = where

    def __call__(self, index: tuple[Any, ...] | None) -> np.ndarray:
        path, offset, dtype, shape = self.path, self.offset, self.dtype, self.shape
        count = math.prod(shape)
        try:
            if index is None or count == 0 or shape == ():
                with open(path, "rb") as fh:
                    arr = np.fromfile(fh, dtype=dtype, count=count, offset=offset)
                if arr.size != count:
                    raise OSError(f"file ends inside the tensor at byte {offset}")
                arr = arr.reshape(shape)
                out = arr if index is None else arr[index]
            else:
                mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
                out = np.array(mapped[index])
                del mapped
        except (OSError, ValueError) as exc:
            raise _damaged(f"{self.where} in {path}", exc) from exc
        # ascontiguousarray promotes 0-d results (bias[(j,)]) to shape (1,): keep their rank.
        out = np.ascontiguousarray(out) if np.ndim(out) else np.asarray(out)
        return decode_bfloat16(out) if self.bf16 else out


class _H5pyLoader:
    """Reads a dataset through an open h5py handle (chunked or filtered data)."""

    __slots__ = ("bf16", "h5", "name")

    def __init__(self, h5: h5py.File, name: str, bf16: bool) -> None:
        self.h5 = h5
        self.name = name
        self.bf16 = bf16

    def __call__(self, index: tuple[Any, ...] | None) -> np.ndarray:
        try:
            ds = self.h5[self.name]
            arr = ds[()] if index is None else ds[index]
        except H5_ERRORS as exc:
            raise _damaged(self.name, exc) from exc
        arr = np.asarray(arr)
        return decode_bfloat16(arr) if self.bf16 else arr


@functools.lru_cache(maxsize=256)
def _dtype_name(dtype: np.dtype) -> str:
    """``str`` of a dtype in native byte order (numpy builds that string slowly; a model has a few dtypes)."""
    return str(dtype.newbyteorder("="))


def dataset_tensor(ds: H5Dataset, stored_name: str | None, *, file_path: str | None, base_offset: int = 0,
                   image_size: int | None = None) -> RawTensor:
    """A :class:`RawTensor` for one dataset found by :func:`inspector.readers.h5walk.walk`.

    ``file_path``/``base_offset`` name the real file on disk and where the HDF5 image starts in it
    (non-zero inside a ``.keras`` zip); pass ``file_path=None`` when the HDF5 image is not a plain byte
    range of a file (deflated zip member), and reads go through h5py. ``image_size`` is the HDF5 image's
    length, which every contiguous dataset must end within.
    """
    where = ds.name
    bf16 = _is_bfloat16(ds)
    if not bf16 and ds.dtype.kind not in NUMERIC_KINDS:
        raise UnsupportedFormatError(
            f"HDF5 dataset {where!r} holds {ds.dtype} values, not a numeric tensor; expected weights stored as "
            f"numbers. Received: {ds.tree.what}")
    shape = ds.shape
    dtype_name = "bfloat16" if bf16 else _dtype_name(ds.dtype)
    storage_dtype = np.dtype("<u2") if bf16 else ds.dtype
    nbytes = math.prod(shape) * storage_dtype.itemsize
    offset = ds.offset
    if offset is not None:
        if image_size is not None and offset + nbytes > image_size:
            raise CorruptModelError(
                f"HDF5 dataset {where!r} declares {nbytes:,} bytes at offset {offset:,}, past the end of the "
                f"{image_size:,}-byte file; the file is truncated or damaged; expected a model file as Keras or "
                f"TensorFlow write it. Received: {ds.tree.what}")
        if file_path is not None:
            loader = _OffsetLoader(os.fspath(file_path), base_offset + offset, storage_dtype, shape, bf16, where)
            raw = RawTensor(stored_name, shape, dtype_name, where, loader)
            raw.offset = base_offset + offset
            return raw
    else:
        if ds.external_count():
            raise UnsupportedFormatError(
                f"HDF5 dataset {where!r} keeps its data in another file (HDF5 external storage), which the reader "
                f"never follows; expected weights stored inside the model file. Received: {ds.tree.what}")
        stored = ds.storage_size()
        if nbytes > MAX_EXPANSION * stored + EXPANSION_SLACK:
            raise CorruptModelError(
                f"HDF5 dataset {where!r} declares shape {shape} ({nbytes:,} bytes) but stores {stored:,} bytes, "
                f"more than {MAX_EXPANSION}x expansion (docs/limits.md); the file is damaged or hostile; "
                f"expected a model file as Keras or TensorFlow write it. "
                f"Received: {ds.tree.what}")
    return RawTensor(stored_name, shape, dtype_name, where, _H5pyLoader(ds.tree.h5, where, bf16),
                     needs_handle=True)
