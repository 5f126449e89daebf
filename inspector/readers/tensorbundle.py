"""Read a TensorFlow checkpoint (TensorBundle) without TensorFlow: ``variables.index`` + data shards.

Layout (docs/formats.md §4.3):

* ``<prefix>.index`` is a LevelDB-format SSTable. A 48-byte footer ends in the magic number
  ``0xdb4775248b80fb57`` and holds the handles (varint offset, varint size) of the metaindex block and
  of the index block. The index block maps separator keys to data-block handles. Each block is a run of
  entries ``shared_len, unshared_len, value_len (varints), key suffix, value`` with prefix-compressed
  keys, then ``uint32`` restart offsets and their ``uint32`` count; after every block comes a 5-byte
  trailer (compression type byte, masked CRC32C). TensorFlow writes blocks uncompressed; a
  snappy-compressed block (type 1) would need a decompressor we do not ship, so it is reported.
* Key ``""`` holds a BundleHeaderProto (``num_shards=1``, ``endianness=2``); every other key a
  BundleEntryProto (``dtype=1, shape=2, shard_id=3, offset=4, size=5, crc32c=6, slices=7``).
* Tensor bytes are ``<prefix>.data-<shard:05d>-of-<N:05d>`` at ``[offset, offset + size)``, C order.
  DT_STRING tensors hold varint lengths, a 4-byte CRC, then the bytes.
* Key ``_CHECKPOINTABLE_OBJECT_GRAPH`` (a DT_STRING scalar) is a serialized TrackableObjectGraph.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import CorruptModelError, UnsupportedFormatError
from ..records import TensorLoader
from .h5tensors import decode_bfloat16
from .protowire import Message, WireError, read_varint

__all__ = [
    "MAX_INDEX_BYTES",
    "OBJECT_GRAPH_KEY",
    "BundleEntry",
    "TensorBundle",
    "TrackableNode",
    "parse_object_graph",
    "read_sstable",
]

#: Largest ``variables.index`` read (TensorFlow's are kilobytes to a few MB; docs/limits.md).
MAX_INDEX_BYTES = 256 * 2**20
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"

#: TensorFlow ``DataType`` enum values -> numpy dtype names (``bfloat16`` and ``string`` are special).
DTYPES: dict[int, str] = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
    8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128",
    19: "float16", 22: "uint32", 23: "uint64",
}
DTYPE_NAMES: dict[int, str] = {
    11: "DT_QINT8", 12: "DT_QUINT8", 13: "DT_QINT32", 15: "DT_QINT16", 16: "DT_QUINT16",
    20: "DT_RESOURCE", 21: "DT_VARIANT", 24: "DT_FLOAT8_E5M2", 25: "DT_FLOAT8_E4M3FN",
}


@dataclass(frozen=True)
class BundleEntry:
    """One checkpoint tensor: where its bytes are and what they hold."""

    key: str
    dtype: str  # numpy dtype name, "bfloat16", "string", or "DT_<n>" for types we cannot decode
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    sliced: bool = False  # a partitioned variable: the bytes live in per-slice entries

    @property
    def decodable(self) -> bool:
        return not self.sliced and (self.dtype in ("bfloat16", "string") or self.dtype in DTYPES.values())


def _corrupt(path: str, what: str) -> CorruptModelError:
    return CorruptModelError(
        f"the checkpoint index is damaged: {what}; expected a TensorFlow variables.index (LevelDB table). "
        f"Received: {path}")


def _block(data: bytes, offset: int, size: int, path: str) -> memoryview:
    end = offset + size
    if offset < 0 or end + BLOCK_TRAILER_SIZE > len(data):
        raise _corrupt(path, f"block [{offset}, {end}) lies outside the {len(data)}-byte file")
    kind = data[end]
    if kind == 1:
        raise CorruptModelError(
            "the checkpoint index uses snappy-compressed blocks, which this reader does not decode; "
            f"expected the uncompressed blocks TensorFlow writes (re-save it with TensorFlow). Received: {path}")
    if kind != 0:
        raise _corrupt(path, f"unknown block compression type {kind}")
    return memoryview(data)[offset:end]


def _block_entries(block: memoryview, path: str) -> list[tuple[bytes, memoryview]]:
    """Decode one block: prefix-compressed keys (restart points are only needed for seeking)."""
    if len(block) < 4:
        raise _corrupt(path, "a block shorter than its restart count")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise _corrupt(path, f"a block claims {num_restarts} restart points but has {len(block)} bytes")
    entries: list[tuple[bytes, memoryview]] = []
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        value_len, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise _corrupt(path, "a block entry runs past its block")
        key = key[:shared] + bytes(block[pos:pos + unshared])
        pos += unshared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def read_sstable(path: str) -> list[tuple[bytes, memoryview]]:
    """All ``(key, value)`` pairs of a LevelDB-format table, in key order."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_INDEX_BYTES + 1)
    if len(data) > MAX_INDEX_BYTES:
        raise _corrupt(path, f"more than {MAX_INDEX_BYTES:,} bytes, beyond the limit of docs/limits.md")
    if len(data) < FOOTER_SIZE:
        raise _corrupt(path, f"{len(data)} bytes, shorter than the {FOOTER_SIZE}-byte table footer")
    footer = memoryview(data)[len(data) - FOOTER_SIZE:]
    magic = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)[0]
    if magic != TABLE_MAGIC:
        raise _corrupt(path, f"footer magic {magic:#018x} instead of {TABLE_MAGIC:#018x}")
    try:
        _meta_offset, pos = read_varint(footer, 0)
        _meta_size, pos = read_varint(footer, pos)
        index_offset, pos = read_varint(footer, pos)
        index_size, pos = read_varint(footer, pos)
        entries: list[tuple[bytes, memoryview]] = []
        for _separator, handle in _block_entries(_block(data, index_offset, index_size, path), path):
            offset, hpos = read_varint(handle, 0)
            size, _ = read_varint(handle, hpos)
            entries.extend(_block_entries(_block(data, offset, size, path), path))
    except WireError as exc:
        raise _corrupt(path, str(exc)) from exc
    return entries


def _shape(msg: Message) -> tuple[int, ...]:
    """A TensorShapeProto (``dim=2 {size=1}``, ``unknown_rank=3``) as a tuple; -1 for unknown sizes."""
    return tuple(dim.int64(1) for dim in msg.messages(2))


def _decode_strings(buf: bytes, count: int) -> np.ndarray:
    if count < 0 or count > len(buf):  # every string needs at least one length byte
        raise ValueError(f"string tensor of {count} elements cannot fit in {len(buf)} bytes")
    pos = 0
    lengths = []
    for _ in range(count):
        length, pos = read_varint(buf, pos)
        lengths.append(length)
    pos += 4  # masked CRC32C of the lengths
    out = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        if pos + length > len(buf):
            raise ValueError("string tensor runs past its recorded size")
        out[i] = buf[pos:pos + length]
        pos += length
    return out


class TensorBundle:
    """The entries of one checkpoint, and lazy reads of their tensors.

    ``prefix`` is the path without suffix: ``<savedmodel>/variables/variables``. Opening reads only the
    index file and checks that every data shard exists and is long enough; tensor bytes are read on demand.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.index_path = f"{prefix}.index"
        if not os.path.isfile(self.index_path):
            raise CorruptModelError(
                f"the SavedModel has no variables index ({os.path.basename(self.index_path)} is missing); "
                f"expected variables/variables.index next to saved_model.pb. Received: {os.path.dirname(prefix)}")
        self.entries: dict[str, BundleEntry] = {}
        self.num_shards = 1
        self.byteorder: Literal["<", ">"] = "<"
        header_seen = False
        try:
            for raw_key, value in read_sstable(self.index_path):
                key = raw_key.decode("utf-8", errors="replace")
                msg = Message(value)
                if key == "":
                    header_seen = True
                    self.num_shards = msg.int(1, 1)
                    self.byteorder = ">" if msg.int(2) == 1 else "<"
                    continue
                dtype_enum = msg.int(1)
                dtype = DTYPES.get(dtype_enum) or DTYPE_NAMES.get(dtype_enum, f"DT_{dtype_enum}")
                self.entries[key] = BundleEntry(
                    key=key, dtype=dtype, shape=_shape(msg.message(2)), shard_id=msg.int(3),
                    offset=msg.int64(4), size=msg.int64(5), sliced=msg.has(7))
        except WireError as exc:
            raise _corrupt(self.index_path, f"an entry is not a valid protobuf ({exc})") from exc
        if not header_seen:
            raise _corrupt(self.index_path, "no bundle header (the empty key)")
        self._check_shards()

    # -- files ----------------------------------------------------------------------------------------
    def shard_path(self, shard_id: int) -> str:
        return f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}"

    def _check_shards(self) -> None:
        needed: dict[int, int] = {}
        for entry in self.entries.values():
            if not entry.sliced:
                needed[entry.shard_id] = max(needed.get(entry.shard_id, 0), entry.offset + entry.size)
        for shard_id, end in sorted(needed.items()):
            path = self.shard_path(shard_id)
            if shard_id >= self.num_shards:
                raise _corrupt(self.index_path, f"an entry names shard {shard_id} of {self.num_shards}")
            if not os.path.isfile(path):
                raise CorruptModelError(
                    f"the SavedModel is missing the variables data shard {os.path.basename(path)}; expected "
                    f"all {self.num_shards} variables.data-*-of-{self.num_shards:05d} files. "
                    f"Received: {os.path.dirname(path)}")
            size = os.path.getsize(path)
            if size < end:
                raise CorruptModelError(
                    f"the variables data shard {os.path.basename(path)} is truncated: {size} bytes, but the "
                    f"index needs {end}; expected a complete SavedModel. Received: {path}")

    # -- tensors --------------------------------------------------------------------------------------
    def _storage_dtype(self, entry: BundleEntry) -> np.dtype:
        if entry.dtype == "bfloat16":
            return np.dtype(f"{self.byteorder}u2")
        if not entry.decodable:
            raise UnsupportedFormatError(
                f"checkpoint tensor {entry.key!r} has a type this reader cannot decode ({entry.dtype}"
                f"{', partitioned' if entry.sliced else ''}); expected numeric, bool or string tensors. "
                f"Received: {self.index_path}")
        return np.dtype(entry.dtype).newbyteorder(self.byteorder)

    def read(self, key: str, index: tuple[Any, ...] | None = None) -> np.ndarray:
        """The tensor at ``key`` (or ``tensor[index]``), as a native-byte-order numpy array."""
        return self.loader(key)(index)

    def loader(self, key: str) -> TensorLoader:
        """A reader for one tensor: plain reads for whole tensors, a memory map for slices."""
        entry = self.entries[key]
        path = self.shard_path(entry.shard_id)
        shape = entry.shape
        if entry.dtype == "string":
            def load_strings(index: tuple[Any, ...] | None) -> np.ndarray:
                try:
                    with open(path, "rb") as fh:
                        fh.seek(entry.offset)
                        buf = fh.read(entry.size)
                    arr = _decode_strings(buf, math.prod(shape)).reshape(shape)
                except (OSError, ValueError) as exc:
                    raise CorruptModelError(
                        f"checkpoint string tensor {key!r} cannot be decoded ({exc}); the SavedModel is damaged; "
                        f"expected a checkpoint as TensorFlow writes it. Received: {path}") from exc
                return arr if index is None else arr[index]
            return load_strings
        storage = self._storage_dtype(entry)
        count = math.prod(shape)
        if count * storage.itemsize != entry.size:
            raise CorruptModelError(
                f"checkpoint tensor {key!r} has {entry.size} bytes but shape {shape} of {entry.dtype} needs "
                f"{count * storage.itemsize}; the index is inconsistent. Received: {self.index_path}")
        bf16 = entry.dtype == "bfloat16"

        def finish(arr: np.ndarray) -> np.ndarray:
            # ascontiguousarray promotes 0-d results (bias[(j,)]) to shape (1,): keep their rank.
            arr = np.ascontiguousarray(arr) if arr.ndim else np.asarray(arr)
            if bf16:
                return decode_bfloat16(arr.astype("<u2", copy=False))
            return arr.astype(storage.newbyteorder("="), copy=False)

        def load(index: tuple[Any, ...] | None) -> np.ndarray:
            try:
                if index is None or count == 0 or shape == ():
                    with open(path, "rb") as fh:
                        arr = np.fromfile(fh, dtype=storage, count=count, offset=entry.offset)
                    if arr.size != count:
                        raise CorruptModelError(
                            f"the data shard ends inside tensor {key!r}; the SavedModel is truncated; expected a "
                            f"complete SavedModel. Received: {path}")
                    arr = arr.reshape(shape)
                    return finish(arr if index is None else arr[index])
                mapped = np.memmap(path, dtype=storage, mode="r", offset=entry.offset, shape=shape)
                try:
                    return finish(np.array(mapped[index]))
                finally:
                    del mapped
            except (OSError, ValueError) as exc:
                if isinstance(exc, CorruptModelError):
                    raise
                raise CorruptModelError(
                    f"cannot read checkpoint tensor {key!r} ({type(exc).__name__}: {exc}); the SavedModel is damaged "
                    f"or changed since it was indexed; expected a complete SavedModel. Received: {path}") from exc

        return load

    # -- object graph ---------------------------------------------------------------------------------
    def object_graph(self) -> list[TrackableNode] | None:
        """The checkpoint's TrackableObjectGraph, or None when the checkpoint has none (TF1 style)."""
        if OBJECT_GRAPH_KEY not in self.entries:
            return None
        if self.entries[OBJECT_GRAPH_KEY].dtype != "string":
            raise _corrupt(self.index_path, f"its object graph is stored as {self.entries[OBJECT_GRAPH_KEY].dtype}, "
                                            "not as a string")
        value = self.read(OBJECT_GRAPH_KEY)
        blob = value.reshape(-1)[0] if value.size else b""
        try:
            return parse_object_graph(bytes(blob))
        except WireError as exc:
            raise _corrupt(self.index_path, f"its object graph is not a valid protobuf ({exc})") from exc


@dataclass
class TrackableNode:
    """One node of a TrackableObjectGraph: named children, saved tensors and optimizer slots."""

    node_id: int
    children: list[tuple[str, int]]  # (local_name, node_id)
    attributes: list[tuple[str, str, str]]  # (name, full_name, checkpoint_key)
    slot_variables: list[tuple[int, str, int]]  # (original variable node, slot name, slot variable node)


def parse_object_graph(blob: bytes) -> list[TrackableNode]:
    """Decode a serialized TrackableObjectGraph (``nodes=1``; docs/formats.md §4.3)."""
    nodes = []
    for node_id, node in enumerate(Message(blob).messages(1)):
        children = node.references(1)
        attributes = [(a.string(1), a.string(2), a.string(3)) for a in node.messages(2)]
        slots = [(s.int(1), s.string(2), s.int(3)) for s in node.messages(3)]
        nodes.append(TrackableNode(node_id, children, attributes, slots))
    return nodes
