"""Output paths the CLI writes to: checked before any work is done, written with one-line errors.

Every command that writes files calls :func:`prepare_file` / :func:`prepare_folder` *before* it opens
or runs a model, so a typo in ``-o`` costs nothing, and wraps the write itself in :func:`writing`, so
a disk that fills up or a folder removed meanwhile is still a one-line :class:`OutputPathError`
instead of an "internal error". :func:`write_npz` writes ``.npz`` files from a plain mapping: any
string is a valid key (numpy's ``np.savez(file, **arrays)`` breaks on keys named ``file`` or
``allow_pickle``). :data:`FORMATS` is the one table of the file formats written (figures, arrays,
manifests): every suffix check and every "accepted: ..." list reads it.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InspectorError, OutputPathError, SelectionError, describe_received

__all__ = [
    "FORMATS",
    "FileFormat",
    "FormatInfo",
    "OutputPathError",
    "Role",
    "figure_format",
    "formats_with",
    "npz_path",
    "per_layer_path",
    "prepare_file",
    "prepare_folder",
    "write_npz",
    "writing",
]


class FileFormat(StrEnum):
    PNG = "png"
    SVG = "svg"
    PDF = "pdf"
    JPG = "jpg"
    JPEG = "jpeg"
    NPZ = "npz"
    JSON = "json"
    CSV = "csv"


class Role(StrEnum):
    FIGURE = "figure"  # a matplotlib figure, chosen by the -o suffix
    ARRAYS = "arrays"  # --npz
    MANIFEST = "manifest"  # the batch-export file list


@dataclass(frozen=True)
class FormatInfo:
    role: Role
    batch: bool  # a batch export (``--format`` / the dashboard zip) can write it
    mime: str
    metadata_key: str | None  # where "filter-inspector" goes; None: the writer takes no metadata (JPEG)


#: The one suffix table. JPEG is a single-figure format only: batch exports keep lossless PNG.
FORMATS: dict[FileFormat, FormatInfo] = {
    FileFormat.PNG: FormatInfo(Role.FIGURE, True, "image/png", "Software"),
    FileFormat.SVG: FormatInfo(Role.FIGURE, True, "image/svg+xml", "Creator"),
    FileFormat.PDF: FormatInfo(Role.FIGURE, True, "application/pdf", "Creator"),
    FileFormat.JPG: FormatInfo(Role.FIGURE, False, "image/jpeg", None),
    FileFormat.JPEG: FormatInfo(Role.FIGURE, False, "image/jpeg", None),
    FileFormat.NPZ: FormatInfo(Role.ARRAYS, True, "application/octet-stream", None),
    FileFormat.JSON: FormatInfo(Role.MANIFEST, False, "application/json", None),
    FileFormat.CSV: FormatInfo(Role.MANIFEST, False, "text/csv", None),
}


def formats_with(role: Role | None = None, *, batch: bool | None = None) -> tuple[FileFormat, ...]:
    """The formats of the table with ``role`` (and batch capability), in table order."""
    return tuple(f for f, info in FORMATS.items()
                 if (role is None or info.role is role) and (batch is None or info.batch is batch))


def figure_format(path: str | os.PathLike[str], *, option: str = "the figure") -> FileFormat:
    """The figure format a file name asks for, or a one-line SelectionError listing the accepted suffixes."""
    suffix = Path(path).suffix.lower()
    figures = formats_with(Role.FIGURE)
    fmt = next((f for f in figures if f".{f}" == suffix), None)
    if fmt is None:
        accepted = ", ".join(f".{f}" for f in figures)
        raise SelectionError(f"cannot write {option} as {suffix or 'a file without suffix'}; accepted: {accepted} "
                             f"(arrays: .npz). Received: {describe_received(str(path))}")
    return fmt


def _why(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def npz_path(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``.npz`` appended when it has another suffix or none (numpy would append it silently,
    and the command would then report a file that does not exist)."""
    p = Path(path).expanduser()
    return p if p.suffix.lower() == ".npz" else p.with_name(p.name + ".npz")


def per_layer_path(base: str | os.PathLike[str], layer: str, many: bool) -> Path:
    """``base`` itself for one layer; ``stem-<layer>.suffix`` beside it when several layers share the option."""
    p = Path(base)
    if not many:
        return p
    return p.with_name(f"{p.stem}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', layer)}{p.suffix}")


def _make_folder(folder: Path, option: str, received: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"cannot write {option}: {folder} exists and is not a folder; give a path in a "
                              f"writable folder. Received: {received}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot write {option}: the folder {folder} cannot be created ({_why(exc)}); "
                              f"give a path in a writable folder. Received: {received}") from exc


def prepare_file(path: str | os.PathLike[str], *, option: str = "the output file") -> Path:
    """Check that a file can be written at ``path`` before any work is done; returns the path.

    Creates missing parent folders (as the figure writers always did) and proves the folder is
    writable by creating, then removing, the file when it does not exist yet; an existing regular file
    is opened for writing without truncating it, so it is left as it was. Special files (FIFOs,
    devices) are refused: opening a pipe for writing would block until something reads it.
    """
    p = Path(path).expanduser()
    received = describe_received(str(path))
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputPathError(f"cannot write {option} ({_why(exc)}); give a path in a writable folder. "
                              f"Received: {received}") from exc
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputPathError(f"cannot write {option}: {p} is {_kind_of(mode)}; give a file name, e.g. "
                              f"{p / 'out'}{p.suffix or ''} for a folder. Received: {received}")
    _make_folder(p.parent, option, received)
    try:
        if mode is None:
            # O_EXCL: if something appeared meanwhile it is not ours to remove.
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            p.unlink()
        else:
            os.close(os.open(p, os.O_WRONLY))  # no O_TRUNC: the existing file is untouched until written
    except OSError as exc:
        raise OutputPathError(f"cannot write {option} at {p} ({_why(exc)}); give a path in a writable folder. "
                              f"Received: {received}") from exc
    return p


def prepare_folder(path: str | os.PathLike[str], *, option: str = "the output folder") -> Path:
    """Create the folder ``path`` (and its parents) and check that files can be created in it."""
    p = Path(path).expanduser()
    received = describe_received(str(path))
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"cannot write {option}: {p} exists and is not a folder; give a new or an "
                              f"existing folder. Received: {received}")
    _make_folder(p, option, received)
    probe = p / f".inspector-write-check-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        probe.unlink()
    except OSError as exc:
        raise OutputPathError(f"cannot write {option}: no files can be created in {p} ({_why(exc)}); give a "
                              f"writable folder. Received: {received}") from exc
    return p


@contextmanager
def writing(path: str | os.PathLike[str], *, option: str = "the output file") -> Iterator[Path]:
    """Run a write; an OSError (disk full, folder removed meanwhile, ...) becomes a one-line error."""
    p = Path(path)
    try:
        yield p
    except InspectorError:
        raise
    except OSError as exc:
        raise OutputPathError(f"writing {option} failed ({_why(exc)}); check the disk and the folder. "
                              f"Received: {describe_received(str(p))}") from exc


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, Any], *, compressed: bool = False) -> Path:
    """Write ``arrays`` as an ``.npz`` at ``path`` (``.npz`` appended when missing); returns the path.

    The zip is built here, one ``KEY.npy`` member per entry exactly as ``np.savez`` does, because
    ``np.savez(path, **arrays)`` passes keys as keyword arguments and so fails on ``file`` or
    ``allow_pickle``. Objects are never pickled (``np.load(..., allow_pickle=False)`` reads the file).
    A partly written file is removed.
    """
    out = npz_path(path)
    compression = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with writing(out, option="the .npz file"):
        try:
            with zipfile.ZipFile(out, mode="w", compression=compression, allowZip64=True) as zf:
                for key, value in arrays.items():
                    with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                        np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    return out
