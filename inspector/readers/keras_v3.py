"""Keras 3 ``.keras`` archives (also tf_keras's ``.keras``): config.json + model.weights.h5 in a zip."""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

import h5py

from ..errors import CorruptModelError, UnsupportedFormatError
from ..keras_config import parse_model_config
from ..records import LayerRecord, ModelFormat, ModelIndex, Shape
from .keras_h5 import H5Source, index_with_graph, index_without_graph
from .zipwindow import ZipWindow, member_data_offset

__all__ = ["read_keras_archive"]

WEIGHTS_MEMBER = "model.weights.h5"
EXPECTED = "expected a complete .keras file as written by model.save('x.keras')"


def _load_json(zf: zipfile.ZipFile, member: str, path: str) -> dict[str, Any]:
    try:
        value = json.loads(zf.read(member))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptModelError(
            f"{member} in the .keras archive is not valid JSON ({exc}); the file is damaged; {EXPECTED}. "
            f"Received: {path}") from exc
    if not isinstance(value, dict):
        raise CorruptModelError(f"{member} in the .keras archive is not a JSON object; {EXPECTED}. Received: {path}")
    return value


def read_keras_archive(path: str) -> ModelIndex:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
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
                fileobj, start, file_path = io.BytesIO(zf.read(info)), 0, None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CorruptModelError(
                f"cannot read {WEIGHTS_MEMBER} from the archive: {exc}; {EXPECTED}. Received: {path}") from exc
    try:
        h5 = h5py.File(fileobj, "r")
    except OSError as exc:
        fileobj.close()
        raise CorruptModelError(
            f"{WEIGHTS_MEMBER} inside the archive is not a readable HDF5 file ({exc}); the archive is damaged; "
            f"{EXPECTED}. "
            f"Received: {path}") from exc
    warnings: list[str] = []
    src = H5Source(h5, file_path, start)
    try:
        graph = parse_model_config(config)
        if graph.has_layer_list:
            layers = index_with_graph(src, graph, warnings)
        else:
            layers = index_without_graph(src, warnings, subclassed=True)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        h5.close()
        fileobj.close()
        raise CorruptModelError(f"config.json does not describe a Keras model we can read ({exc!r}); {EXPECTED}. "
                                f"Received: {path}") from exc
    version = metadata.get("keras_version")
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
