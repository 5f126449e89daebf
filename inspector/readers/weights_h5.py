"""Keras 3 ``save_weights`` files: ``.weights.h5`` and sharded ``.weights.json`` (docs/formats.md §2).

No architecture is stored: layers are named by the ``vars`` ``name`` attribute (Keras >= 3.6) or by
group, kinds come from the class-derived group names and are marked inferred.
"""

from __future__ import annotations

import os

import h5py

from ..errors import CorruptModelError, UnsupportedFormatError
from ..keras_config import load_config_json
from ..records import LayerRecord, ModelFormat, ModelIndex
from .h5walk import open_h5
from .keras_h5 import H5Source, index_without_graph, model_name

#: Most shard files a sharded manifest may name.
MAX_SHARDS = 10_000

__all__ = ["read_sharded_weights", "read_weights_h5"]

WEIGHTS_ONLY_NOTE = ("weights-only file: no architecture is stored, so kinds are inferred from group names and "
                     "shapes, and strides, padding, activations, connectivity and output shapes are unknown")


def _index(layers: list[LayerRecord], path: str, fmt: ModelFormat, name: str | None,
           warnings: list[str], handles: list[h5py.File]) -> ModelIndex:
    for layer in layers:
        layer.kind_inferred = True
    index = ModelIndex(format=fmt, source=os.fspath(path), layers=layers, name=name, has_architecture=False,
                       warnings=[WEIGHTS_ONLY_NOTE, *warnings])
    for h5 in handles:
        index.own(h5)
    return index


def read_weights_h5(path: str, h5: h5py.File | None = None) -> ModelIndex:
    """A Keras 3 ``.weights.h5``; ``h5`` is an already open handle to it, if the caller has one."""
    h5 = h5 if h5 is not None else open_h5(path, "the .weights.h5 file")
    try:
        src = H5Source(h5, os.fspath(path), image_size=os.path.getsize(path), what=os.fspath(path))
        warnings: list[str] = []
        layers = index_without_graph(src, warnings)
        name = model_name(src.root)
    except BaseException:
        h5.close()
        raise
    if not src.needs_handle:  # every tensor reads straight from the file by offset
        h5.close()
    return _index(layers, path, ModelFormat.WEIGHTS_H5, name, warnings, [h5] if src.needs_handle else [])


def _plain_name(name: str) -> bool:
    """A bare file name: no folder part, not '.' or '..', nothing absolute."""
    return bool(name) and name not in (".", "..") and os.path.basename(name) == name and "\\" not in name \
        and "\x00" not in name


def read_sharded_weights(path: str) -> ModelIndex:
    """A sharded ``.weights.json``: each shard holds part of the same tree; layers are merged in map order."""
    with open(path, "rb") as fh:
        manifest = load_config_json(fh.read(), "the sharded-weights manifest", path)
    weight_map = manifest.get("weight_map") if isinstance(manifest, dict) else None
    if not isinstance(weight_map, dict):
        raise UnsupportedFormatError(
            "JSON file that is not a Keras sharded-weights manifest (expected a 'weight_map' written by "
            f"save_weights('x.weights.json')). Received: {path}")
    folder = os.path.dirname(os.path.abspath(path))
    shards: list[str] = []
    for value in weight_map.values():
        for shard in [value] if isinstance(value, str) else value if isinstance(value, list) else [None]:
            if not isinstance(shard, str) or not _plain_name(shard):
                raise CorruptModelError(
                    f"sharded weights: the manifest names shard {shard!r}, which is not a file name beside the "
                    f"manifest (paths into other folders are refused, docs/limits.md); expected shard file "
                    f"names as save_weights writes them. Received: {path}")
            if shard not in shards:
                shards.append(shard)
    if len(shards) > MAX_SHARDS:
        raise CorruptModelError(f"sharded weights: the manifest names {len(shards):,} shards, more than "
                                f"{MAX_SHARDS:,} (docs/limits.md); expected a manifest as save_weights writes "
                                f"it. Received: {path}")
    layers: list[LayerRecord] = []
    seen: dict[str, LayerRecord] = {}
    warnings: list[str] = []
    handles: list[h5py.File] = []
    try:
        for shard in shards:
            shard_path = os.path.join(folder, shard)
            if not os.path.isfile(shard_path) or os.path.islink(shard_path):
                raise CorruptModelError(f"sharded weights: shard file {shard!r} listed in the manifest is "
                                        f"missing (or a link); keep all shards beside the .weights.json. "
                                        f"Received: {path}")
            h5 = open_h5(shard_path, f"shard {shard!r}")
            handles.append(h5)
            src = H5Source(h5, shard_path, image_size=os.path.getsize(shard_path), what=shard_path)
            for layer in index_without_graph(src, warnings):
                if layer.path in seen:  # a layer split across shards: its variables continue in this shard
                    seen[layer.path].weights.extend(layer.weights)
                else:
                    seen[layer.path] = layer
                    layers.append(layer)
            if not src.needs_handle:
                handles.pop().close()
    except BaseException:  # a failed read leaves no shard open
        for h5 in handles:
            h5.close()
        raise
    return _index(layers, path, ModelFormat.WEIGHTS_SHARDED, None, sorted(set(warnings)), handles)
