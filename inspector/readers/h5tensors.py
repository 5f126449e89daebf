"""Lazy tensors backed by HDF5 datasets.

Keras writes every weight dataset contiguous and uncompressed (docs/formats.md §1.2), so a dataset's bytes
are a C-order array at a fixed file offset. We record that offset while indexing and read later with
plain file reads (whole tensor) or a memory map (a slice), which touches only the pages the slice
needs and lets the HDF5 file be closed right after indexing. Datasets that are chunked or filtered
fall back to h5py reads through a handle the index keeps open.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from ..records import TensorLoader

__all__ = ["RawTensor", "dataset_tensor", "decode_bfloat16"]


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


def _is_bfloat16(ds: h5py.Dataset) -> bool:
    tag = ds.attrs.get("dtype") if "dtype" in ds.attrs else None
    if isinstance(tag, bytes):
        tag = tag.decode()
    return tag == "bfloat16" or (ds.dtype.kind == "V" and ds.dtype.itemsize == 2)


def _memmap_loader(path: str, offset: int, dtype: np.dtype, shape: tuple[int, ...],
                   post: Callable[[np.ndarray], np.ndarray]) -> TensorLoader:
    count = math.prod(shape)

    def load(index: tuple[Any, ...] | None) -> np.ndarray:
        if index is None or count == 0 or shape == ():
            with open(path, "rb") as fh:
                arr = np.fromfile(fh, dtype=dtype, count=count, offset=offset).reshape(shape)
            if arr.size != count:
                raise OSError(f"{path}: file ends inside a tensor at byte {offset}")
            out = arr if index is None else arr[index]
        else:
            mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
            out = np.array(mapped[index])
            del mapped
        # ascontiguousarray promotes 0-d results (bias[(j,)]) to shape (1,): keep their rank.
        return post(np.ascontiguousarray(out) if np.ndim(out) else np.asarray(out))

    return load


def _h5py_loader(ds: h5py.Dataset, post: Callable[[np.ndarray], np.ndarray]) -> TensorLoader:
    def load(index: tuple[Any, ...] | None) -> np.ndarray:
        arr = ds[()] if index is None else ds[index]
        return post(np.asarray(arr))

    return load


def dataset_tensor(ds: h5py.Dataset, stored_name: str | None, *, file_path: str | None,
                   base_offset: int = 0) -> RawTensor:
    """A :class:`RawTensor` for one dataset.

    ``file_path``/``base_offset`` name the real file on disk and where the HDF5 image starts in it
    (non-zero inside a ``.keras`` zip); pass ``file_path=None`` when the HDF5 image is not a plain byte
    range of a file (deflated zip member), and reads go through h5py.
    """
    bf16 = _is_bfloat16(ds)
    shape = tuple(int(d) for d in ds.shape)
    post: Callable[[np.ndarray], np.ndarray] = decode_bfloat16 if bf16 else (lambda a: a)
    dtype_name = "bfloat16" if bf16 else str(ds.dtype.newbyteorder("="))
    offset = None
    if file_path is not None and ds.chunks is None and ds.compression is None and ds.dtype.kind in "fiub":
        try:
            offset = ds.id.get_offset()
        except Exception:  # no storage allocated yet (empty dataset)
            offset = None
    if bf16 and file_path is not None and ds.chunks is None:
        offset = ds.id.get_offset()
    if offset is not None and file_path is not None:
        storage_dtype = np.dtype("<u2") if bf16 else ds.dtype
        loader = _memmap_loader(os.fspath(file_path), base_offset + offset, storage_dtype, shape, post)
        raw = RawTensor(stored_name, shape, dtype_name, ds.name, loader)
        raw.offset = base_offset + offset
        return raw
    return RawTensor(stored_name, shape, dtype_name, ds.name, _h5py_loader(ds, post), needs_handle=True)
