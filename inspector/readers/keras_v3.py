"""Keras 3 ``.keras`` archives (also tf_keras's ``.keras``): config.json + model.weights.h5 in a zip.

Archives come from strangers, so the zip is checked before it is trusted (docs/limits.md): the member
count is bounded, JSON members are read with a size cap (a zip bomb stops at the cap), a deflated weights
member is inflated only up to :data:`MAX_INFLATED_WEIGHTS`, and a stored one must lie inside the file.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from typing import Any

import h5py

from ..errors import CorruptModelError, InspectorError, UnsupportedFormatError
from ..keras_config import MAX_CONFIG_BYTES, load_config_json, parse_model_config
from ..records import LayerRecord, ModelFormat, ModelIndex, Shape
from ..sniff import MAX_ZIP_MEMBERS, check_zip_directory
from .keras_h5 import H5Source, index_with_graph, index_without_graph
from .zipwindow import ZipWindow, member_data_offset

__all__ = ["MAX_INFLATED_WEIGHTS", "read_keras_archive"]

WEIGHTS_MEMBER = "model.weights.h5"
EXPECTED = "expected a complete .keras file as written by model.save('x.keras')"
#: Largest deflated ``model.weights.h5`` inflated into memory (Keras stores it uncompressed; docs/formats.md §1.1).
MAX_INFLATED_WEIGHTS = 4 * 2**30
#: Largest inflation ratio of a compressed member (plus 1 MiB): JSON configs deflate 10-30x, weights about 1x;
#: a zip bomb inflates about 1000x.
MAX_INFLATION_RATIO = 100
#: What reading a damaged member raises (bad CRC, a broken deflate stream, a truncated member).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)


def _refuse_encrypted(info: zipfile.ZipInfo, path: str) -> None:
    if info.flag_bits & 0x1:  # zipfile would ask for a password (a RuntimeError)
        raise UnsupportedFormatError(f"{info.filename} in the .keras archive is encrypted, which Keras never writes; "
                                     f"{EXPECTED}. Received: {path}")


def _read_member(zf: zipfile.ZipFile, member: str, limit: int, path: str) -> bytes:
    """A member's bytes, reading at most ``limit + 1`` of them whatever its headers declare."""
    info = zf.getinfo(member)
    _refuse_encrypted(info, path)
    if info.file_size > limit:
        raise CorruptModelError(
            f"{member} in the .keras archive declares {info.file_size:,} bytes, more than the {limit:,}-byte "
            f"limit (docs/limits.md); {EXPECTED}. Received: {path}")
    if info.compress_type != zipfile.ZIP_STORED and (
            info.file_size > MAX_INFLATION_RATIO * info.compress_size + 2**20):
        raise CorruptModelError(
            f"{member} in the .keras archive inflates {info.compress_size:,} bytes to {info.file_size:,}, more than "
            f"{MAX_INFLATION_RATIO}x (a zip bomb?, docs/limits.md); {EXPECTED}. Received: {path}")
    try:
        with zf.open(info) as fh:
            data = fh.read(limit + 1)
    except _ZIP_ERRORS as exc:
        raise CorruptModelError(f"cannot read {member} from the .keras archive ({type(exc).__name__}: {exc}); the "
                                f"file is damaged; {EXPECTED}. Received: {path}") from exc
    if len(data) > limit:
        raise CorruptModelError(f"{member} in the .keras archive inflates past the {limit:,}-byte limit (a zip "
                                f"bomb?, docs/limits.md); {EXPECTED}. Received: {path}")
    return data


def _load_json(zf: zipfile.ZipFile, member: str, path: str) -> dict[str, Any]:
    value = load_config_json(_read_member(zf, member, MAX_CONFIG_BYTES, path), f"{member} in the .keras archive",
                             path, EXPECTED)
    if not isinstance(value, dict):
        raise CorruptModelError(f"{member} in the .keras archive is not a JSON object; {EXPECTED}. Received: {path}")
    return value


def read_keras_archive(path: str) -> ModelIndex:
    check_zip_directory(path, MAX_ZIP_MEMBERS)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise CorruptModelError(
            f"cannot open the .keras archive: {exc}; it may be truncated or damaged; {EXPECTED}. Received: {path}"
        ) from exc
    with zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise UnsupportedFormatError(
                f"zip archive without config.json, so not a Keras .keras model (members: "
                f"{', '.join(sorted(names)[:5]) or 'none'}); expected a file written by model.save('x.keras'). "
                f"Received: {path}")
        config = _load_json(zf, "config.json", path)
        metadata = _load_json(zf, "metadata.json", path) if "metadata.json" in names else {}
        if WEIGHTS_MEMBER not in names:
            if "model.weights.npz" in names:
                raise UnsupportedFormatError(
                    "this .keras archive stores weights as model.weights.npz (a private pickled format that "
                    f"needs code execution to read); re-save with model.save('x.keras'). Received: {path}")
            raise CorruptModelError(
                f"the .keras archive has no {WEIGHTS_MEMBER}; it is incomplete; {EXPECTED}. Received: {path}")
        info = zf.getinfo(WEIGHTS_MEMBER)
        _refuse_encrypted(info, path)
        try:
            zf.open(info).close()  # validates the member header before we trust offsets
            if info.compress_type == zipfile.ZIP_STORED:
                start = member_data_offset(path, info)
                if start + info.file_size > os.path.getsize(path):
                    raise CorruptModelError(
                        f"the .keras archive is truncated: {WEIGHTS_MEMBER} needs {info.file_size} bytes from "
                        f"offset {start} but the file has {os.path.getsize(path)}; {EXPECTED}. Received: {path}")
                fileobj: io.RawIOBase | io.BytesIO = ZipWindow(path, start, info.file_size)
                file_path: str | None = os.fspath(path)
            else:
                # A re-zipped (deflated) archive: no byte range to map, so read the member once.
                data = _read_member(zf, WEIGHTS_MEMBER, MAX_INFLATED_WEIGHTS, path)
                fileobj, start, file_path = io.BytesIO(data), 0, None
        except _ZIP_ERRORS as exc:
            raise CorruptModelError(
                f"cannot read {WEIGHTS_MEMBER} from the archive: {exc}; {EXPECTED}. Received: {path}") from exc
    try:
        h5 = h5py.File(fileobj, "r")
    except (OSError, RuntimeError, ValueError) as exc:
        fileobj.close()
        raise CorruptModelError(
            f"{WEIGHTS_MEMBER} inside the archive is not a readable HDF5 file ({exc}); the archive is damaged; "
            f"{EXPECTED}. "
            f"Received: {path}") from exc
    warnings: list[str] = []
    try:
        src = H5Source(h5, file_path, start, image_size=info.file_size, what=f"{path} ({WEIGHTS_MEMBER})")
        graph = parse_model_config(config)
        if graph.has_layer_list:
            layers = index_with_graph(src, graph, warnings)
        else:
            layers = index_without_graph(src, warnings, subclassed=True)
    except InspectorError:
        h5.close()
        fileobj.close()
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        h5.close()
        fileobj.close()
        raise CorruptModelError(f"config.json does not describe a Keras model we can read ({exc!r}); {EXPECTED}. "
                                f"Received: {path}") from exc
    except BaseException:
        h5.close()
        fileobj.close()
        raise
    version = metadata.get("keras_version")
    version = version if isinstance(version, str) else None
    index = ModelIndex(
        format=ModelFormat.KERAS,
        source=os.fspath(path),
        layers=layers,
        name=graph.name,
        writer=f"Keras {version}" if version else None,
        model_config=config,
        has_architecture=graph.has_layer_list,
        input_shapes=graph.input_shapes,
        output_shapes=[_output_shape(layers, p) for p in graph.output_paths],
        warnings=warnings,
    )
    if src.needs_handle:  # closed in reverse: the HDF5 handle first, then the window it reads through
        index.own(fileobj)
        index.own(h5)
    else:  # every tensor reads straight from the file: no handle needs to stay open
        h5.close()
        fileobj.close()
    return index


def _output_shape(layers: list[LayerRecord], path: str) -> Shape | None:
    for layer in layers:
        if layer.path == path:
            return layer.output_shape if isinstance(layer.output_shape, tuple) else None
    return None
