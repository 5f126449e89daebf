"""Decide what an input is by its content, never by its extension alone.

:func:`sniff` returns the format to read with, down to the HDF5 sub-kind (legacy full model, Keras 2
weights, Keras 3 weights), so format detection lives here and nowhere else; when the input is not a
model it raises a one-line error that says what the input appears to be (a zip of Python source, a PNG
image, an HDF5 file of other data, ...).
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from enum import StrEnum

import h5py

from .errors import ACCEPTED_FORMATS, CorruptModelError, ModelFormatError, UnsupportedFormatError

__all__ = ["HDF5_KINDS", "MAX_ZIP_MEMBERS", "Sniffed", "check_zip_directory", "describe_file", "sniff"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
#: Most members a model archive may list (Keras writes 3, plus assets); checked before the directory is parsed.
MAX_ZIP_MEMBERS = 10_000
_EOCD = struct.Struct("<4sHHHHIIH")
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")


def check_zip_directory(path: str, limit: int = MAX_ZIP_MEMBERS) -> None:
    """Refuse a zip whose end-of-central-directory record lists more than ``limit`` members or a central
    directory larger than the file, before ``zipfile`` reads (and allocates for) the directory."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        tail_start = max(0, size - (_EOCD.size + 0xFFFF))
        fh.seek(tail_start)
        tail = fh.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _EOCD.size > len(tail):
            return  # no record: zipfile reports the damage in its own words
        _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack_from(tail, at)
        locator_at = at - _ZIP64_LOCATOR.size
        if locator_at >= 0 and tail[locator_at:locator_at + 4] == b"PK\x06\x07":
            _, _, zip64_offset, _ = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
            if 0 <= zip64_offset <= size - _ZIP64_EOCD.size:
                fh.seek(zip64_offset)
                record = fh.read(_ZIP64_EOCD.size)
                if record[:4] == b"PK\x06\x06":
                    fields = _ZIP64_EOCD.unpack(record)
                    entries, cd_size = max(entries, fields[6]), max(cd_size, fields[8])
    if entries > limit:
        raise CorruptModelError(f"the zip archive lists {entries:,} members, more than the {limit:,} a model archive "
                                f"may hold (docs/limits.md); expected a .keras archive as Keras writes it. "
                                f"Received: {path}")
    if cd_size > size:
        raise CorruptModelError(f"the zip archive's central directory claims {cd_size:,} bytes, more than the whole "
                                f"{size:,}-byte file; it is damaged; expected a complete zip archive. Received: {path}")


class Sniffed(StrEnum):
    """What an input is (the table of docs/formats.md §0.1); ``inspector.readers.READERS`` maps each to
    its reader."""

    KERAS_ZIP = "keras"  # a zip with config.json
    LEGACY_H5 = "h5"  # legacy full-model HDF5: a model_config attribute
    LEGACY_WEIGHTS_H5 = "h5-weights"  # Keras 2 / tf.keras save_weights HDF5: layer_names at the root
    WEIGHTS_H5 = "weights.h5"  # Keras 3 save_weights HDF5: a layers/ or vars/ tree
    SHARDED_JSON = "weights.json"  # Keras 3 sharded save_weights manifest
    SAVEDMODEL = "savedmodel"  # a directory with saved_model.pb, or that file itself


#: Every HDF5 sub-kind, for callers that only care that the input is HDF5.
HDF5_KINDS = frozenset({Sniffed.LEGACY_H5, Sniffed.LEGACY_WEIGHTS_H5, Sniffed.WEIGHTS_H5})


def _hdf5_signature_offset(path: str) -> int | None:
    """HDF5 files may start with a user block: the signature sits at 0, 512, 1024, 2048, ..."""
    with open(path, "rb") as fh:
        offset = 0
        size = os.path.getsize(path)
        while offset < size:
            fh.seek(offset)
            if fh.read(8) == HDF5_MAGIC:
                return offset
            offset = 512 if offset == 0 else offset * 2
    return None


def _classify_hdf5(h5: h5py.File) -> Sniffed | None:
    """The Keras sub-kind of an open HDF5 file, or None when it is not a Keras file."""
    attrs = h5.attrs
    # A model_weights group without model_config goes to the Keras 2 weights reader, as it always has.
    if "model_config" in attrs:
        return Sniffed.LEGACY_H5
    if "model_weights" in h5 or "layer_names" in attrs:
        return Sniffed.LEGACY_WEIGHTS_H5
    if "layers" in h5 or "vars" in h5:
        return Sniffed.WEIGHTS_H5
    # Subclassed-model weights: attribute groups that each hold a 'vars' or 'layers' group.
    if any(isinstance(h5[k], h5py.Group) and ("vars" in h5[k] or "layers" in h5[k]) for k in h5):
        return Sniffed.WEIGHTS_H5
    return None


def _sniff_hdf5(path: str) -> Sniffed:
    """Open the HDF5 file only to read its top level; the reader opens it again for itself."""
    try:
        h5 = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise CorruptModelError(
            f"HDF5 file that cannot be opened ({exc}); it may be truncated or damaged; expected {ACCEPTED_FORMATS}. "
            f"Received: {path}") from exc
    try:
        with h5:
            kind = _classify_hdf5(h5)
            groups = ", ".join(list(h5.keys())[:5]) or "none"
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # broken links, damaged headers
        raise CorruptModelError(
            f"HDF5 file whose top level cannot be read ({type(exc).__name__}: {exc}); it may be damaged; "
            f"expected {ACCEPTED_FORMATS}. Received: {path}") from exc
    if kind is None:
        raise UnsupportedFormatError(
            f"HDF5 file that is not a Keras model or weights file (top-level groups: {groups}); expected "
            f"{ACCEPTED_FORMATS}. Received: {path}")
    return kind


def _describe_zip(path: str) -> str:
    try:
        check_zip_directory(path)
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, CorruptModelError):
        return "a damaged or truncated zip archive"
    if not names:
        return "an empty zip archive"
    lowered = [n.lower() for n in names]
    if any(n.endswith("saved_model.pb") for n in lowered):
        return "a zipped TensorFlow SavedModel directory (unzip it and pass the directory)"
    if any(n.endswith("data.pkl") for n in lowered):
        return "a PyTorch checkpoint (torch.save), not a Keras model"
    exts = {os.path.splitext(n)[1] for n in lowered if not n.endswith("/")}
    if exts and exts <= {".py", ".pyc", ".txt", ".md", ".cfg", ".toml", ""}:
        return "a zip of Python source or text files"
    return f"a zip archive of {len(names)} member(s) without config.json ({', '.join(names[:3])})"


def describe_file(path: str) -> str:
    """What a non-model file appears to be, for error messages."""
    size = os.path.getsize(path)
    if size == 0:
        return "an empty file (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        return _describe_zip(path)
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if b"onnx" in head.lower() or head[:2] == b"\x08\x07" or head[:2] == b"\x08\x08":
        return "an ONNX model or other protobuf file"
    stripped = head.lstrip()
    if stripped.startswith((b"{", b"[")):
        return "a JSON file"
    try:
        head.decode("utf-8")
        text = True
    except UnicodeDecodeError:
        text = False
    if text and (head.startswith((b"#", b"import", b"from", b"def ", b"class "))):
        return "a Python or text file"
    if text:
        return "a text file"
    return f"unrecognised binary data ({size} bytes)"


def _directory_error(path: str) -> ModelFormatError:
    entries = sorted(os.listdir(path))
    if not entries:
        return UnsupportedFormatError(
            f"empty directory, not a model; expected {ACCEPTED_FORMATS}. Received: {path}")
    models = [e for e in entries if e.endswith((".keras", ".h5", ".hdf5", ".weights.json"))]
    hint = f" (it contains {', '.join(models[:3])}: pass one of those files)" if models else ""
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    return UnsupportedFormatError(
        f"directory without saved_model.pb, so not a TensorFlow SavedModel{hint}; it holds: {shown}. "
        f"Expected {ACCEPTED_FORMATS}. Received: {path}")


def sniff(path: str) -> Sniffed:
    """The format of the model at ``path``; raises a :class:`ModelFormatError` for anything else."""
    if not os.path.exists(path):
        raise ModelFormatError(f"no such file or directory; expected {ACCEPTED_FORMATS}. Received: {path}")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return Sniffed.SAVEDMODEL
        if os.path.isfile(os.path.join(path, "saved_model.pbtxt")):
            raise UnsupportedFormatError(
                "SavedModel stored as text (saved_model.pbtxt) is not supported; re-export it in binary form. "
                f"Received: {path}")
        raise _directory_error(path)
    if os.path.basename(path) == "saved_model.pb":
        return Sniffed.SAVEDMODEL
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(ZIP_MAGIC):
        check_zip_directory(path)
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise CorruptModelError(
                f"zip archive that cannot be opened ({exc}): a truncated or damaged .keras file? "
                f"Expected a complete file written by model.save('x.keras'). Received: {path} ({size} bytes)"
            ) from exc
        if "config.json" in names:
            return Sniffed.KERAS_ZIP
        raise UnsupportedFormatError(
            f"{_describe_zip(path)}, not a Keras model; expected {ACCEPTED_FORMATS}. Received: {path}")
    if _hdf5_signature_offset(path) is not None:
        return _sniff_hdf5(path)
    if head.lstrip().startswith(b"{"):
        try:
            with open(path, "rb") as fh:
                # A manifest is small; a bigger or absurdly nested JSON file is not one.
                value = json.loads(fh.read(64 * 2**20 + 1)) if size <= 64 * 2**20 else None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            value = None
        if isinstance(value, dict) and "weight_map" in value:
            return Sniffed.SHARDED_JSON
        if isinstance(value, dict) and "class_name" in value and "config" in value:
            raise UnsupportedFormatError(
                "a Keras architecture JSON (model.to_json()) without weights; pass the model file that holds "
                f"the weights (.keras or .h5). Received: {path}")
    if size == 0 or head.startswith(b"\x89HDF"):
        raise CorruptModelError(f"truncated or damaged file that looks like a model by its name but not by its "
                                f"content ({describe_file(path)}); expected {ACCEPTED_FORMATS}. Received: {path}")
    raise UnsupportedFormatError(f"{describe_file(path)}, not a model; expected {ACCEPTED_FORMATS}. "
                                 f"Received: {path}")
