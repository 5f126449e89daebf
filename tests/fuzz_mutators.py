"""Seeded, format-aware mutations of model files for the fuzz suite (tests/test_fuzz.py, tests/fuzz_runner.py).

A *target* is one seed model (a file, or a folder for SavedModels and sharded weights). A *case* is
``(target, mutation kind, rng)``: the mutation copies the target into a scratch folder and damages the copy
there; the seed is never written. Every choice comes from the case's own ``random.Random``, so a case is
reproduced from ``(run seed, case number)`` alone.

Mutation kinds (``KINDS``; each says which targets it applies to):

* bytes, any file of the target: truncation at a structural boundary (zip headers and member data, HDF5
  signatures and dataset data, protobuf field and SSTable block boundaries, JSON punctuation) and at random
  points; bit flips; byte splats with boundary values; insertions and deletions that shift everything after;
* zip (``.keras``): central-directory, local-header and end-of-directory field tampering; member removal,
  duplication, renaming, re-compression, path-escaping names, a zip bomb, a huge declared member;
* HDF5: attribute tampering (wrong types, garbage, mutated JSON in ``model_config``), dataset dtype and shape
  tampering (including declared shapes of 10^12 elements without storage, chunked/compressed data, external
  storage), structure tampering (deleted, renamed, soft/external/dangling links, hard-link cycles);
* JSON configs (``config.json``, ``model_config``, ``keras_metadata.pb`` nodes, sharded manifests): missing keys,
  wrong types, huge numbers, deep nesting, many layers, self-referencing layers;
* SavedModel: protobuf field tampering at any depth of ``saved_model.pb`` / ``keras_metadata.pb`` / the
  checkpoint object graph, TensorBundle entry tampering (dtype, shape, offset, size, shard), missing or
  replaced files, symlink loops and symlinks escaping the folder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from inspector.readers.protowire import iter_fields, read_varint

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_models"
SEEDS = Path(__file__).resolve().parent / "fuzz_corpus" / "seeds"


# -- targets --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One seed model: ``entry`` is what ``open_model`` is given, relative to the copied root."""

    name: str
    fmt: str  # keras, h5, weights.h5, h5-weights, weights.json, savedmodel
    source: Path  # a file or a folder
    entry: str  # "" for the root itself, else a path inside the copied folder


def targets() -> list[Target]:
    out = []
    for stem in ("digits_cnn", "shapes_rgb"):
        out += [Target(f"{stem}.keras", "keras", SAMPLES / f"{stem}.keras", ""),
                Target(f"{stem}.h5", "h5", SAMPLES / f"{stem}.h5", ""),
                Target(f"{stem}.weights.h5", "weights.h5", SAMPLES / f"{stem}.weights.h5", ""),
                Target(f"{stem}_savedmodel", "savedmodel", SAMPLES / f"{stem}_savedmodel", "")]
    out += [Target("k3_nested.keras", "keras", SEEDS / "k3_nested.keras", ""),
            Target("k3_nested.h5", "h5", SEEDS / "k3_nested.h5", ""),
            Target("tk_nested.h5", "h5", SEEDS / "tk_nested.h5", ""),
            Target("keras205.h5", "h5", SEEDS / "keras205.h5", ""),
            Target("tk_nested_weights.h5", "h5-weights", SEEDS / "tk_nested_weights.h5", ""),
            Target("sharded", "weights.json", SEEDS / "sharded", "seq.weights.json"),
            Target("tf_keras_savedmodel", "savedmodel", SEEDS / "tf_keras_savedmodel", ""),
            Target("tf24_savedmodel", "savedmodel", SEEDS / "tf24_savedmodel", "")]
    return [t for t in out if t.source.exists()]


@dataclass
class Case:
    """A materialised case: the scratch root, the path to open, and what was done (for the report)."""

    root: Path
    open_path: Path
    target: Target
    kind: str
    detail: str = ""
    files: list[str] = field(default_factory=list)


def materialise(target: Target, scratch: Path) -> Case:
    """Copy the target into ``scratch`` (fresh) and return a case pointing at the copy."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    if target.source.is_dir():
        root = scratch / target.source.name
        shutil.copytree(target.source, root, symlinks=True)
        open_path = root / target.entry if target.entry else root
    else:
        root = scratch
        open_path = scratch / target.source.name
        shutil.copyfile(target.source, open_path)
    return Case(root, open_path, target, "none")


def data_files(case: Case) -> list[Path]:
    """The regular files of a case, in a stable order."""
    if case.open_path.is_file() and not case.target.source.is_dir():
        return [case.open_path]
    return sorted(p for p in case.root.rglob("*") if p.is_file() and not p.is_symlink())


# -- interesting values ---------------------------------------------------------------------------------------

INTS = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
        0xFFFFFFFF, 2**40, 2**62, 2**63 - 1, 2**64 - 1, 10**12]


def interesting_int(rng: random.Random) -> int:
    return rng.choice(INTS) if rng.random() < 0.8 else rng.randrange(0, 2**rng.choice((8, 16, 32, 64)))


def bogus_json_value(rng: random.Random, depth_hint: int = 0) -> Any:
    choice = rng.randrange(14)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 10**30, 2**64])
    if choice == 2:
        return rng.choice([1e308, -1e308, 1e-320, 0.5, float("nan"), float("inf")])
    if choice == 3:
        return rng.choice(["", "x", "../../etc/passwd", "\u0000", "é" * 50, "a" * 10000, "keras.src.ops"])
    if choice == 4:
        return []
    if choice == 5:
        return {}
    if choice == 6:
        return [None, None, None]
    if choice == 7:
        return rng.choice([True, False])
    if choice == 8:
        return deep_nest(rng.choice([50, 300, 990, 3000, 20000]), rng.random() < 0.5)
    if choice == 9:
        return {"class_name": "__keras_tensor__", "config": {"shape": [None, 10**12],
                                                             "keras_history": ["x", 10**6, -1]}}
    if choice == 10:
        return [["x", 0, 0, {}]] * rng.choice([1, 5])
    if choice == 11:
        return {"class_name": "TensorShape", "items": [10**18, -5, "a"]}
    if choice == 12:
        return {"class_name": "__tuple__", "items": deep_nest(rng.choice([100, 2000]), True)}
    return rng.choice([[1, 2, 3], [None, 8, 8, 3], [[None, 4], [None, 4]], ["a", "b"]])


def deep_nest(depth: int, as_list: bool) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def json_dumps(value: Any) -> str:
    """json.dumps that survives nesting deeper than the recursion limit (written by hand for those)."""
    try:
        return json.dumps(value)
    except RecursionError:
        return _dumps_iterative(value)


def _dumps_iterative(value: Any) -> str:
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item.text)
        elif isinstance(item, list):
            out.append("[")
            parts: list[Any] = []
            for i, v in enumerate(item):
                if i:
                    parts.append(_Raw(","))
                parts.append(v)
            parts.append(_Raw("]"))
            stack.extend(reversed(parts))
        elif isinstance(item, dict):
            out.append("{")
            parts = []
            for i, (k, v) in enumerate(item.items()):
                parts.append(_Raw(("," if i else "") + json.dumps(str(k)) + ":"))
                parts.append(v)
            parts.append(_Raw("}"))
            stack.extend(reversed(parts))
        else:
            out.append(json.dumps(item))
    return "".join(out)


@dataclass
class _Raw:
    text: str


def _containers(value: Any, limit: int = 4000) -> list[tuple[Any, Any]]:
    """(container, key) pairs of a JSON tree, breadth first, for picking a place to mutate."""
    found: list[tuple[Any, Any]] = []
    queue = [value]
    while queue and len(found) < limit:
        item = queue.pop(0)
        if isinstance(item, dict):
            for k, v in item.items():
                found.append((item, k))
                queue.append(v)
        elif isinstance(item, list):
            for i, v in enumerate(item):
                found.append((item, i))
                queue.append(v)
    return found


def mutate_json_value(value: Any, rng: random.Random) -> tuple[Any, str]:
    """One JSON-tree mutation of a model config (or any JSON); returns the new tree and what was done."""
    places = _containers(value)
    op = rng.randrange(10)
    if not places or op == 0:
        return bogus_json_value(rng), "replaced the whole document"
    container, key = rng.choice(places)
    if op in (1, 2):  # missing key / element
        del container[key]
        return value, f"deleted {key!r}"
    if op in (3, 4, 5):
        container[key] = bogus_json_value(rng)
        return value, f"{key!r} -> bogus value"
    if op == 6:  # deep nesting in place
        container[key] = deep_nest(rng.choice([200, 990, 5000]), rng.random() < 0.5) if rng.random() < 0.5 else \
            _wrap(container[key], rng.choice([200, 990, 5000]))
        return value, f"{key!r} nested deep"
    if op == 7:  # many layers / duplicates
        layers = _find_key(value, "layers")
        if isinstance(layers, list) and layers:
            count = rng.choice([2, 50, 3000])
            layers.extend([layers[rng.randrange(len(layers))]] * count)
            return value, f"{count} duplicated layer entries"
        container[key] = [container[key]] * 100
        return value, f"{key!r} repeated"
    if op == 8:  # a layer that consumes itself / a cycle
        layers = _find_key(value, "layers")
        if isinstance(layers, list) and layers and isinstance(layers[-1], dict):
            entry = layers[-1]
            name = entry.get("name") or (entry.get("config") or {}).get("name") or "x"
            entry["inbound_nodes"] = [[[name, 0, 0, {}]]] if rng.random() < 0.5 else [
                {"args": [{"class_name": "__keras_tensor__", "config": {"shape": [None, 3],
                                                                        "keras_history": [name, 0, 0]}}]}]
            return value, f"layer {name!r} reads itself"
        return value, "no layers to cycle"
    # op 9: change a string value to another key's name or a type name
    if isinstance(container[key], str):
        container[key] = rng.choice(["Sequential", "Functional", "Model", "Conv2D", "InputLayer", "Add",
                                     "Bidirectional", "TimeDistributed", "layers", ""])
        return value, f"{key!r} -> other class/name"
    container[key] = str(container[key])
    return value, f"{key!r} -> str"


def _wrap(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def _find_key(value: Any, wanted: str) -> Any:
    queue = [value]
    while queue:
        item = queue.pop(0)
        if isinstance(item, dict):
            if wanted in item:
                return item[wanted]
            queue.extend(item.values())
        elif isinstance(item, list):
            queue.extend(item)
    return None


def mutate_json_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return data, "not JSON"
    value, what = mutate_json_value(value, rng)
    return json_dumps(value).encode(), what


# -- structural boundaries ------------------------------------------------------------------------------------

_H5_SIGNATURES = (b"TREE", b"HEAP", b"SNOD", b"GCOL", b"OHDR", b"OCHK", b"BTHD", b"BTIN", b"BTLF", b"FRHP",
                  b"FHDB", b"FHIB", b"FSHD", b"FSSE", b"EAHD", b"EAIB", b"EADB", b"FADB")
_BOUNDARY_CACHE: dict[tuple[str, int], list[int]] = {}


def boundaries(path: Path, data: bytes) -> list[int]:
    """Offsets where a structure starts or ends, by format (cached per seed content)."""
    key = (path.name, hash(data))
    if key in _BOUNDARY_CACHE:
        return _BOUNDARY_CACHE[key]
    found: set[int] = {0, len(data)}
    if data[:4] == b"PK\x03\x04":
        found |= _zip_boundaries(data)
    elif data[:8] == b"\x89HDF\r\n\x1a\n":
        found |= _h5_boundaries(path, data)
    elif data[-8:] == struct.pack("<Q", 0xDB4775248B80FB57):
        found |= _sstable_boundaries(data)
    elif data[:1] in (b"{", b"["):
        found |= {i for i, c in enumerate(data) if c in b"{}[],:\""}
    else:
        found |= _pb_boundaries(data, 0, 0)
    result = sorted(b for b in found if 0 <= b <= len(data))
    _BOUNDARY_CACHE[key] = result
    return result


def _zip_boundaries(data: bytes) -> set[int]:
    out: set[int] = set()
    for magic in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"):
        start = 0
        while (pos := data.find(magic, start)) >= 0:
            out |= {pos, pos + 4, pos + 30, pos + 46}
            start = pos + 1
    return out


def _h5_boundaries(path: Path, data: bytes) -> set[int]:
    out: set[int] = set(range(0, 96, 4))
    for sig in _H5_SIGNATURES:
        start = 0
        while (pos := data.find(sig, start)) >= 0:
            out |= {pos, pos + 4, pos + 8, pos + 16}
            start = pos + 1
    try:
        with h5py.File(path, "r") as h5:
            def visit(_name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    offset = obj.id.get_offset()
                    if offset is not None:
                        out.update({offset, offset + obj.id.get_storage_size()})
            h5.visititems(visit)
    except (OSError, ValueError):
        pass
    return out


def _sstable_boundaries(data: bytes) -> set[int]:
    out = {len(data) - 48, len(data) - 8}
    pos = len(data) - 48
    try:
        for _ in range(4):
            value, pos = read_varint(data, pos)
            out.add(value)
    except ValueError:
        pass
    return out


def _pb_boundaries(data: bytes, base: int, depth: int) -> set[int]:
    out: set[int] = set()
    view = memoryview(data)
    pos = 0
    try:
        while pos < len(data) and len(out) < 2000:
            out.add(base + pos)
            pos = _field_end(view, pos)
    except (ValueError, IndexError):
        pass
    if depth < 2:
        for start, length in _length_fields(data):
            if length > 2:
                out |= _pb_boundaries(data[start:start + length], base + start, depth + 1)
    return out


def _field_end(view: memoryview, pos: int) -> int:
    tag, pos = read_varint(view, pos)
    wire = tag & 7
    if wire == 0:
        _, pos = read_varint(view, pos)
    elif wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        length, pos = read_varint(view, pos)
        pos += length
    else:
        raise ValueError("wire")
    return pos


def _length_fields(data: bytes, limit: int = 64) -> list[tuple[int, int]]:
    """(start, length) of the top-level length-delimited fields."""
    out = []
    view = memoryview(data)
    pos = 0
    try:
        while pos < len(data) and len(out) < limit:
            tag, after = read_varint(view, pos)
            if tag & 7 == 2:
                length, start = read_varint(view, after)
                out.append((start, length))
            pos = _field_end(view, pos)
    except (ValueError, IndexError):
        pass
    return out


# -- protobuf re-encoding --------------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


PbField = tuple[int, int, Any]  # (number, wire, int | bytes)


def pb_parse(data: bytes) -> list[PbField]:
    out: list[PbField] = []
    for number, wire, value in iter_fields(data):
        out.append((number, wire, bytes(value) if isinstance(value, memoryview) else value))
    return out


def pb_encode(fields: list[PbField]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += varint((number << 3) | wire)
        if wire == 0:
            out += varint(value)
        elif wire == 1:
            out += struct.pack("<Q", value & ((1 << 64) - 1))
        elif wire == 5:
            out += struct.pack("<I", value & 0xFFFFFFFF)
        else:
            out += varint(len(value)) + value
    return bytes(out)


def mutate_pb(data: bytes, rng: random.Random, depth: int = 0) -> tuple[bytes, str]:
    """Change one field somewhere in a protobuf message tree (descending into sub-messages)."""
    try:
        fields = pb_parse(data)
    except ValueError:
        return data, "not a message"
    if not fields:
        return pb_encode([(rng.randrange(1, 20), 0, interesting_int(rng))]), "added a field to an empty message"
    i = rng.randrange(len(fields))
    number, wire, value = fields[i]
    if wire == 2 and depth < 12 and rng.random() < 0.7:
        try:
            pb_parse(value)
            inner, what = mutate_pb(value, rng, depth + 1)
            fields[i] = (number, wire, inner)
            return pb_encode(fields), f"{number}/{what}"
        except ValueError:
            pass
    op = rng.randrange(7)
    if op == 0:
        del fields[i]
        what = f"deleted field {number}"
    elif op == 1:
        fields.insert(i, fields[i])
        what = f"duplicated field {number}"
    elif op == 2:
        fields[i] = (number, 0, interesting_int(rng))
        what = f"field {number} -> varint"
    elif op == 3 and wire == 2:
        cut = rng.randrange(len(value) + 1)
        fields[i] = (number, 2, value[:cut])
        what = f"field {number} cut to {cut} bytes"
    elif op == 4:
        fields[i] = (number, 2, bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 40]))))
        what = f"field {number} -> random bytes"
    elif op == 5:
        fields[i] = (rng.choice([1, 2, 3, 4, 5, 6, 7, 1000, 2**28]), wire, value)
        what = f"field {number} renumbered"
    else:
        fields[i] = (number, wire, interesting_int(rng)) if wire != 2 else (number, 2, value * rng.choice([2, 50]))
        what = f"field {number} value changed"
    return pb_encode(fields), what


# -- SSTable (variables.index) re-encoding -----------------------------------------------------------------------


def sstable_encode(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A LevelDB-format table with one data block, no prefix compression (valid and simple)."""
    def block(items: list[tuple[bytes, bytes]]) -> bytes:
        body = bytearray()
        for key, value in items:
            body += varint(0) + varint(len(key)) + varint(len(value)) + key + value
        body += struct.pack("<II", 0, 1)  # one restart point at 0, count 1
        return bytes(body)

    out = bytearray()
    data_block = block(entries)
    data_handle = varint(0) + varint(len(data_block))
    out += data_block + b"\x00\x00\x00\x00\x00"
    meta_block = block([])
    meta_handle = varint(len(out)) + varint(len(meta_block))
    out += meta_block + b"\x00\x00\x00\x00\x00"
    last = entries[-1][0] if entries else b""
    index_block = block([(last + b"\xff", data_handle)])
    index_handle = varint(len(out)) + varint(len(index_block))
    out += index_block + b"\x00\x00\x00\x00\x00"
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    return bytes(out + footer)


def sstable_entries(data: bytes, tmp: Path) -> list[tuple[bytes, bytes]]:
    from inspector.readers.tensorbundle import read_sstable

    tmp.write_bytes(data)
    return [(k, bytes(v)) for k, v in read_sstable(str(tmp))]


# -- mutation kinds ----------------------------------------------------------------------------------------------

Mutator = Callable[[Case, random.Random], str]


def _pick_file(case: Case, rng: random.Random, suffixes: tuple[str, ...] = ()) -> Path | None:
    files = [p for p in data_files(case) if not suffixes or p.name.endswith(suffixes)]
    return rng.choice(files) if files else None


def m_truncate_boundary(case: Case, rng: random.Random) -> str:
    path = _pick_file(case, rng)
    if path is None:
        return "no file"
    data = path.read_bytes()
    cut = rng.choice(boundaries(path, data)) + rng.choice([0, 0, 0, -1, 1, -4, 4])
    cut = max(0, min(len(data), cut))
    path.write_bytes(data[:cut])
    return f"{path.name} cut at {cut}/{len(data)}"


def m_truncate_random(case: Case, rng: random.Random) -> str:
    path = _pick_file(case, rng)
    if path is None:
        return "no file"
    data = path.read_bytes()
    cut = rng.randrange(len(data) + 1)
    path.write_bytes(data[:cut])
    return f"{path.name} cut at {cut}/{len(data)}"


def m_bitflip(case: Case, rng: random.Random) -> str:
    path = _pick_file(case, rng)
    if path is None:
        return "no file"
    data = bytearray(path.read_bytes())
    if not data:
        return "empty"
    n = rng.choice([1, 1, 2, 4, 16, 64])
    for _ in range(n):
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return f"{path.name}: {n} bit flip(s)"


def m_splat(case: Case, rng: random.Random) -> str:
    """Overwrite bytes at (or near) a structural boundary with a boundary value: length and offset fields."""
    path = _pick_file(case, rng)
    if path is None:
        return "no file"
    data = bytearray(path.read_bytes())
    if len(data) < 8:
        return "tiny"
    base = rng.choice(boundaries(path, bytes(data))) if rng.random() < 0.7 else rng.randrange(len(data))
    pos = max(0, min(len(data) - 8, base + rng.randrange(-8, 48)))
    width = rng.choice([1, 2, 4, 8])
    value = interesting_int(rng) & ((1 << (8 * width)) - 1)
    data[pos:pos + width] = value.to_bytes(width, "little")
    path.write_bytes(bytes(data))
    return f"{path.name}: {width} byte(s) at {pos} = {value:#x}"


def m_shift(case: Case, rng: random.Random) -> str:
    path = _pick_file(case, rng)
    if path is None:
        return "no file"
    data = path.read_bytes()
    pos = rng.randrange(len(data) + 1)
    if rng.random() < 0.5:
        n = rng.choice([1, 3, 8, 512])
        path.write_bytes(data[:pos] + bytes(rng.randrange(256) for _ in range(n)) + data[pos:])
        return f"{path.name}: inserted {n} at {pos}"
    n = rng.choice([1, 4, 16, 1000])
    path.write_bytes(data[:pos] + data[pos + n:])
    return f"{path.name}: deleted {n} at {pos}"


# zip ---------------------------------------------------------------------------------------------------------

_CD_FIELDS = {"version": (6, 2), "flags": (8, 2), "method": (10, 2), "crc": (16, 4), "csize": (20, 4),
              "usize": (24, 4), "name_len": (28, 2), "extra_len": (30, 2), "comment_len": (32, 2),
              "disk": (34, 2), "offset": (42, 4)}
_LOCAL_FIELDS = {"flags": (6, 2), "method": (8, 2), "crc": (14, 4), "csize": (18, 4), "usize": (22, 4),
                 "name_len": (26, 2), "extra_len": (28, 2)}
_EOCD_FIELDS = {"disk": (4, 2), "cd_disk": (6, 2), "entries_here": (8, 2), "entries": (10, 2),
                "cd_size": (12, 4), "cd_offset": (16, 4), "comment_len": (20, 2)}


def _zip_tamper(case: Case, rng: random.Random, magic: bytes, fields: dict[str, tuple[int, int]]) -> str:
    data = bytearray(case.open_path.read_bytes())
    spots = []
    start = 0
    while (pos := data.find(magic, start)) >= 0:
        spots.append(pos)
        start = pos + 1
    if not spots:
        return "no header"
    pos = rng.choice(spots)
    name = rng.choice(sorted(fields))
    offset, width = fields[name]
    if pos + offset + width > len(data):
        return "header cut"
    value = rng.choice([0, 1, 8, 12, 99, 0xFFFF, 0xFFFFFFFF, len(data), len(data) * 2, rng.randrange(1 << 32)])
    value &= (1 << (8 * width)) - 1
    data[pos + offset:pos + offset + width] = value.to_bytes(width, "little")
    case.open_path.write_bytes(bytes(data))
    return f"{magic!r}@{pos}.{name} = {value:#x}"


def m_zip_central(case: Case, rng: random.Random) -> str:
    return _zip_tamper(case, rng, b"PK\x01\x02", _CD_FIELDS)


def m_zip_local(case: Case, rng: random.Random) -> str:
    return _zip_tamper(case, rng, b"PK\x03\x04", _LOCAL_FIELDS)


def m_zip_eocd(case: Case, rng: random.Random) -> str:
    return _zip_tamper(case, rng, b"PK\x05\x06", _EOCD_FIELDS)


_BOMB: dict[str, bytes] = {}


def _bomb() -> bytes:
    """A deflate stream of 200 MB of spaces (about 200 KB), made once per process."""
    if "z" not in _BOMB:
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunk = b" " * (1 << 20)
        _BOMB["z"] = b"".join(comp.compress(chunk) for _ in range(200)) + comp.flush()
    return _BOMB["z"]


def _members(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def _write_zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]],
               method: int = zipfile.ZIP_STORED) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of some cases
        with zipfile.ZipFile(path, "w", method) as zf:
            for info, data in members:
                zf.writestr(info, data, compress_type=method if isinstance(info, str) else info.compress_type)


def m_zip_members(case: Case, rng: random.Random) -> str:
    members: list[tuple[zipfile.ZipInfo | str, bytes]] = list(_members(case.open_path))
    names = [m[0].filename if isinstance(m[0], zipfile.ZipInfo) else m[0] for m in members]
    op = rng.randrange(9)
    i = rng.randrange(len(members))
    if op == 0:
        del members[i]
        what = f"removed {names[i]}"
    elif op == 1:
        members.insert(rng.randrange(len(members) + 1), members[i])
        what = f"duplicated {names[i]}"
    elif op == 2:
        members[i] = (rng.choice(["../" + names[i], "/" + names[i], names[i].upper(), "a/" + names[i], ""]),
                      members[i][1])
        what = f"renamed {names[i]}"
    elif op == 3:
        _write_zip(case.open_path, [(n, d) for n, d in zip(names, [m[1] for m in members], strict=True)],
                   zipfile.ZIP_DEFLATED)
        return "re-zipped deflated"
    elif op == 4:
        members = [(n, d) for n, d in zip(names, [m[1] for m in members], strict=True)]
        members.extend((f"assets/f{k}", b"") for k in range(rng.choice([100, 3000])))
        what = "many members"
    elif op == 5:
        members[i] = (names[i], members[i][1] * rng.choice([2, 3]))
        what = f"{names[i]} doubled"
    elif op == 6:
        members.append((rng.choice(["config.json", "model.weights.h5", "metadata.json"]), b"{}"))
        what = "a shadowing member added"
    elif op == 7:
        _write_bomb(case.open_path, rng.choice(["config.json", "model.weights.h5", "metadata.json"]), members)
        return "zip bomb member"
    else:
        return _huge_declared(case.open_path, rng)
    _write_zip(case.open_path, members)
    return what


def _write_bomb(path: Path, victim: str, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> None:
    """Replace one member with a deflated bomb whose headers declare its true (huge) size."""
    kept = [(m[0].filename if isinstance(m[0], zipfile.ZipInfo) else m[0], m[1]) for m in members]
    kept = [(n, d) for n, d in kept if n != victim]
    _write_zip(path, list(kept))
    bomb = _bomb()
    crc = 0
    chunk = b" " * (1 << 20)
    for _ in range(200):
        crc = zlib.crc32(chunk, crc)
    size = 200 << 20
    data = bytearray(path.read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    cd_offset, = struct.unpack_from("<I", data, eocd + 16)
    entries, = struct.unpack_from("<H", data, eocd + 10)
    central = bytes(data[cd_offset:eocd])
    name = victim.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(bomb), size, len(name), 0)
    new_offset = cd_offset
    body = bytes(data[:cd_offset]) + local + name + bomb
    cd_entry = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(bomb), size,
                           len(name), 0, 0, 0, 0, 0, new_offset) + name
    new_cd = central + cd_entry
    eocd_rec = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, entries + 1, entries + 1, len(new_cd), len(body), 0)
    path.write_bytes(body + new_cd + eocd_rec)


def _huge_declared(path: Path, rng: random.Random) -> str:
    """A member whose headers declare a size far beyond the file (a zip64-sized lie)."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"PK\x01\x02")
    if pos < 0:
        return "no central directory"
    value = rng.choice([0xFFFFFFFE, 0x7FFFFFFF, 10**9])
    struct.pack_into("<I", data, pos + 24, value)
    struct.pack_into("<I", data, pos + 20, value if rng.random() < 0.5 else struct.unpack_from("<I", data,
                                                                                             pos + 20)[0])
    path.write_bytes(bytes(data))
    return f"first member declares {value} bytes"


def m_zip_json(case: Case, rng: random.Random) -> str:
    members = _members(case.open_path)
    names = [m[0].filename for m in members]
    victim = "config.json" if rng.random() < 0.85 or "metadata.json" not in names else "metadata.json"
    out: list[tuple[zipfile.ZipInfo | str, bytes]] = []
    what = "no member"
    for info, data in members:
        if info.filename == victim:
            data, what = mutate_json_bytes(data, rng)
        out.append((info, data))
    _write_zip(case.open_path, out)
    return f"{victim}: {what}"


def m_zip_inner_h5(case: Case, rng: random.Random) -> str:
    """Apply an HDF5 mutation to model.weights.h5 inside the archive and store it back."""
    members = _members(case.open_path)
    inner = case.open_path.with_name("inner.weights.h5")
    out: list[tuple[zipfile.ZipInfo | str, bytes]] = []
    what = "no weights member"
    for info, data in members:
        if info.filename == "model.weights.h5":
            inner.write_bytes(data)
            what = rng.choice([h5_attr, h5_dataset, h5_structure])(inner, rng)
            data = inner.read_bytes()
            inner.unlink()
        out.append((info, data))
    _write_zip(case.open_path, out)
    return f"model.weights.h5: {what}"


# HDF5 ---------------------------------------------------------------------------------------------------------


def _h5_objects(h5: h5py.File) -> tuple[list[str], list[str]]:
    groups: list[str] = ["/"]
    datasets: list[str] = []

    def visit(name: str, obj: Any) -> None:
        (datasets if isinstance(obj, h5py.Dataset) else groups).append(name)

    h5.visititems(visit)
    return groups, datasets


def bogus_attr(rng: random.Random) -> Any:
    choice = rng.randrange(12)
    if choice == 0:
        return np.zeros((0,), "float64")
    if choice == 1:
        return np.arange(rng.choice([1, 5, 1000]), dtype=rng.choice(["int8", "float32", "int64"]))
    if choice == 2:
        return rng.choice(["", "x", "{", "[]", "null", "é" * 100, "a" * 100000, "{\"class_name\": 5}"])
    if choice == 3:
        return np.bytes_(b"\xff\xfe\x00garbage")
    if choice == 4:
        return np.array([b"a", b"b\xff"], dtype="S2")
    if choice == 5:
        return rng.choice([0, -1, 2**62, 1.5])
    if choice == 6:
        return np.array(["layer", "layer", "../x", ""], dtype=h5py.string_dtype())
    if choice == 7:
        return np.array([[1, 2], [3, 4]])
    if choice == 8:
        return np.array([b"x" * 7], dtype="S7").astype(h5py.string_dtype()) if rng.random() < 0.5 else \
            np.void(b"\x01\x02\x03\x04")
    if choice == 9:
        return json_dumps(deep_nest(rng.choice([200, 990, 5000]), rng.random() < 0.5))
    if choice == 10:
        return np.array([1 + 2j])
    return True


def h5_attr(path: Path, rng: random.Random) -> str:
    with h5py.File(path, "r+") as h5:
        groups, datasets = _h5_objects(h5)
        holders = [(n, list(h5[n].attrs)) for n in groups + datasets]
        with_attrs = [(n, a) for n, a in holders if a]
        if with_attrs and rng.random() < 0.8:
            name, attrs = rng.choice(with_attrs)
            key = rng.choice(attrs)
            obj = h5[name]
            if key in ("model_config", "training_config") and rng.random() < 0.7:
                raw = obj.attrs[key]
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                mutated, what = mutate_json_bytes(text.encode(), rng)
                obj.attrs[key] = mutated.decode()
                return f"{name}@{key}: {what}"
            if rng.random() < 0.25:
                del obj.attrs[key]
                return f"deleted {name}@{key}"
            if key in ("layer_names", "weight_names") and rng.random() < 0.5:
                values = list(obj.attrs[key]) if np.ndim(obj.attrs[key]) else []
                if values:
                    op = rng.randrange(3)
                    if op == 0:
                        values = values * rng.choice([2, 100])
                    elif op == 1:
                        values[rng.randrange(len(values))] = rng.choice(
                            [b"missing", b"../..", b"/", b"", b"model_weights", b".", b"kernel:0"])
                    else:
                        rng.shuffle(values)
                    obj.attrs[key] = np.array([v if isinstance(v, bytes) else str(v).encode() for v in values])
                    return f"{name}@{key} list tampered"
            obj.attrs[key] = bogus_attr(rng)
            return f"{name}@{key} -> bogus"
        name = rng.choice(groups + datasets)
        key = rng.choice(["name", "model_config", "layer_names", "weight_names", "keras_version", "dtype"])
        h5[name].attrs[key] = bogus_attr(rng)
        return f"added {name}@{key}"


def h5_dataset(path: Path, rng: random.Random) -> str:
    with h5py.File(path, "r+") as h5:
        _, datasets = _h5_objects(h5)
        if not datasets:
            return "no dataset"
        name = rng.choice(datasets)
        old = h5[name]
        shape, dtype = old.shape, old.dtype
        attrs = dict(old.attrs)
        del h5[name]
        op = rng.randrange(11)
        if op == 0:
            big = (10**6, 10**6) if rng.random() < 0.5 else (10**12,)
            ds = h5.create_dataset(name, shape=big, dtype="float32")  # declared, never allocated
            what = f"declared shape {big}"
        elif op == 1:
            big = rng.choice([(10**6, 10**6), (2**40,), (3, 3, 10**5, 10**5)])
            ds = h5.create_dataset(name, shape=big, dtype="float32", chunks=True, compression="gzip")
            what = f"chunked declared shape {big}"
        elif op == 2:
            new = rng.choice(["int8", "float16", "complex64", "bool", "uint64", "V2", "V7", "S4", "float64"])
            data = np.zeros(shape, dtype=new)
            ds = h5.create_dataset(name, data=data)
            if new == "V2" and rng.random() < 0.5:
                ds.attrs["dtype"] = "bfloat16"
            what = f"dtype {dtype} -> {new}"
        elif op == 3:
            ds = h5.create_dataset(name, data=np.array("a string", dtype=h5py.string_dtype()))
            what = "a string dataset"
        elif op == 4:
            comp = np.dtype([("a", "<f4"), ("b", "<i2")])
            ds = h5.create_dataset(name, shape=shape, dtype=comp)
            what = "compound dtype"
        elif op == 5:
            new_shape = rng.choice([(), (0,), (1,) * 7, (*reversed(shape), 1), (2**31,)])
            if new_shape == (2**31,):
                ds = h5.create_dataset(name, shape=new_shape, dtype="float32")
            else:
                ds = h5.create_dataset(name, data=np.zeros(new_shape, "float32"))
            what = f"shape {shape} -> {new_shape}"
        elif op == 6:
            ds = h5.create_dataset(name, data=np.ones(shape, dtype), chunks=True if shape else None,
                                   compression="gzip" if shape else None)
            what = "chunked + gzip"
        elif op == 7:
            outside = path.with_name("external.bin")
            outside.write_bytes(b"\x00" * 64)
            ds = h5.create_dataset(name, shape=shape or (1,), dtype=dtype,
                                   external=[(str(outside), 0, 16)] if rng.random() < 0.5 else
                                   [("/etc/hostname", 0, h5py.h5f.UNLIMITED)])
            what = "external raw storage"
        elif op == 8:
            ds = h5.create_dataset(name, data=np.ones(shape, dtype), maxshape=tuple(None for _ in shape) or None,
                                   chunks=True if shape else None)
            what = "resizable"
        elif op == 9:
            ds = h5.create_dataset(name, data=np.ones(shape, dtype)) if shape else h5.create_dataset(
                name, data=np.float32(1))
            ds = None  # type: ignore[assignment]
            h5[name].attrs["dtype"] = rng.choice(["bfloat16", "float8", 5])
            what = "dtype attribute"
            return what
        else:
            ds = h5.create_dataset(name, data=np.ones(shape, dtype), track_order=True, fillvalue=None)
            what = "rewritten"
        for k, v in attrs.items():
            if ds is not None:
                ds.attrs[k] = v
        return f"{name}: {what}"


def h5_structure(path: Path, rng: random.Random) -> str:
    with h5py.File(path, "r+") as h5:
        groups, datasets = _h5_objects(h5)
        everything = [g for g in groups if g != "/"] + datasets
        if not everything:
            return "empty"
        name = rng.choice(everything)
        parent = name.rsplit("/", 1)[0] if "/" in name else "/"
        op = rng.randrange(9)
        if op == 0:
            del h5[name]
            return f"deleted {name}"
        if op == 1:
            h5.move(name, name + "_x")
            return f"renamed {name}"
        if op == 2:
            del h5[name]
            h5[name] = h5py.SoftLink("/nowhere")
            return f"{name} -> dangling soft link"
        if op == 3:
            del h5[name]
            h5[name] = h5py.SoftLink("/" + (parent if parent != "/" else ""))
            return f"{name} -> soft link to its parent"
        if op == 4:
            del h5[name]
            h5[name] = h5py.ExternalLink(rng.choice(["/etc/passwd", str(path), "missing.h5"]), "/")
            return f"{name} -> external link"
        if op == 5:
            group = rng.choice(groups)
            if group != "/":
                h5[group + "/loop"] = h5[group]  # a hard link to itself: a cycle
                return f"{group} hard-link cycle"
            h5["loop"] = h5["/"]
            return "root hard-link cycle"
        if op == 6:
            target = rng.choice(everything)
            if target != name and not target.startswith(name + "/") and not name.startswith(target + "/"):
                del h5[name]
                h5[name] = h5[target]
                return f"{name} hard-linked to {target}"
            return "no link"
        if op == 7:
            obj = h5[name]
            if isinstance(obj, h5py.Dataset):
                del h5[name]
                h5.create_group(name).create_dataset("0", data=np.zeros(3, "f4"))
                return f"{name}: dataset -> group"
            del h5[name]
            h5.create_dataset(name, data=np.zeros(3, "f4"))
            return f"{name}: group -> dataset"
        group = h5[rng.choice(groups)]
        for k in range(rng.choice([10, 300])):
            group.create_group(f"extra_{k}")
        return "many empty groups"


def _h5_file_mutator(fn: Callable[[Path, random.Random], str]) -> Mutator:
    def run(case: Case, rng: random.Random) -> str:
        files = [p for p in data_files(case) if p.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"]
        if not files:
            return "no HDF5 file"
        return fn(rng.choice(files), rng)

    return run


# SavedModel ------------------------------------------------------------------------------------------------------


def m_pb(case: Case, rng: random.Random) -> str:
    path = _pick_file(case, rng, ("saved_model.pb", "keras_metadata.pb", "fingerprint.pb"))
    if path is None:
        return "no pb"
    data, what = mutate_pb(path.read_bytes(), rng)
    path.write_bytes(data)
    return f"{path.name}: {what}"


def m_keras_metadata_json(case: Case, rng: random.Random) -> str:
    """Mutate the JSON of one keras_metadata.pb node (SavedMetadata nodes=1 {metadata=5})."""
    path = case.root / "keras_metadata.pb"
    if not path.is_file():
        return "no keras_metadata.pb"
    fields = pb_parse(path.read_bytes())
    nodes = [i for i, f in enumerate(fields) if f[0] == 1 and f[1] == 2]
    if not nodes:
        return "no nodes"
    i = nodes[0] if rng.random() < 0.5 else rng.choice(nodes)
    node = pb_parse(fields[i][2])
    for j, (number, wire, value) in enumerate(node):
        if number == 5 and wire == 2:
            new, what = mutate_json_bytes(value, rng)
            node[j] = (5, 2, new)
            fields[i] = (1, 2, pb_encode(node))
            path.write_bytes(pb_encode(fields))
            return f"node {i}: {what}"
    return "node without metadata"


def m_bundle(case: Case, rng: random.Random) -> str:
    """Tamper with one BundleEntryProto (or the header) of variables.index and re-encode the table."""
    index = case.root / "variables" / "variables.index"
    if not index.is_file():
        return "no index"
    entries = sstable_entries(index.read_bytes(), index.with_name("scratch.index"))
    index.with_name("scratch.index").unlink()
    if not entries:
        return "empty index"
    i = rng.randrange(len(entries))
    key, value = entries[i]
    fields = pb_parse(value)
    op = rng.randrange(9)
    if op == 0:
        fields = [f for f in fields if f[0] != 1] + [(1, 0, rng.choice([0, 7, 11, 20, 21, 24, 99, 2**33]))]
        what = "dtype"
    elif op == 1:
        dims = [(2, 2, pb_encode([(1, 0, d)])) for d in rng.choice([[10**12], [10**6, 10**6], [-1 & (2**64 - 1)],
                                                                     [0], [2**62, 4], [1] * 40])]
        fields = [f for f in fields if f[0] != 2] + [(2, 2, pb_encode(dims))]
        what = "shape"
    elif op == 2:
        fields = [f for f in fields if f[0] != 4] + [(4, 0, rng.choice([2**40, 2**63, 2**64 - 8, 10**9]))]
        what = "offset"
    elif op == 3:
        fields = [f for f in fields if f[0] != 5] + [(5, 0, rng.choice([0, 1, 2**40, 2**64 - 1, 10**12]))]
        what = "size"
    elif op == 4:
        fields = [f for f in fields if f[0] != 3] + [(3, 0, rng.choice([1, 5, 2**31, 2**64 - 1]))]
        what = "shard id"
    elif op == 5:
        fields.append((7, 2, b""))
        what = "slices"
    elif op == 6:
        del entries[i]
        what = "entry removed"
    elif op == 7:
        entries.insert(i, (key, value))
        what = "entry duplicated"
    else:
        fields = pb_parse(mutate_pb(value, rng)[0]) if value else fields
        what = "random field"
    if op not in (6, 7):
        entries[i] = (key, pb_encode(fields))
    if key == b"" and rng.random() < 0.5:
        entries[i] = (key, pb_encode([(1, 0, rng.choice([0, 2, 99999, 2**40])), (2, 0, rng.choice([1, 2, 7]))]))
        what = "header"
    index.write_bytes(sstable_encode(entries))
    return f"variables.index[{key[:40]!r}]: {what}"


def m_object_graph(case: Case, rng: random.Random) -> str:
    """Mutate the checkpoint's TrackableObjectGraph (a string tensor in the data shard)."""
    from inspector.readers.tensorbundle import OBJECT_GRAPH_KEY

    index = case.root / "variables" / "variables.index"
    shard = case.root / "variables" / "variables.data-00000-of-00001"
    if not index.is_file() or not shard.is_file():
        return "no checkpoint"
    scratch = index.with_name("scratch.index")
    entries = sstable_entries(index.read_bytes(), scratch)
    scratch.unlink()
    for i, (key, value) in enumerate(entries):
        if key.decode() != OBJECT_GRAPH_KEY:
            continue
        fields = pb_parse(value)
        offset = next((v for n, w, v in fields if n == 4), 0)
        size = next((v for n, w, v in fields if n == 5), 0)
        data = shard.read_bytes()
        buf = data[offset:offset + size]
        length, pos = read_varint(buf, 0)
        blob = buf[pos + 4:pos + 4 + length]
        new_blob, what = mutate_pb(blob, rng)
        tensor = varint(len(new_blob)) + b"\x00\x00\x00\x00" + new_blob
        new_offset = len(data)
        shard.write_bytes(data + tensor)
        fields = [f for f in fields if f[0] not in (4, 5)] + [(4, 0, new_offset), (5, 0, len(tensor))]
        entries[i] = (key, pb_encode(fields))
        index.write_bytes(sstable_encode(entries))
        return f"object graph: {what}"
    return "no object graph"


def m_savedmodel_files(case: Case, rng: random.Random) -> str:
    root = case.root
    files = [p for p in root.rglob("*") if p.is_file()]
    victim = rng.choice(files)
    op = rng.randrange(8)
    if op == 0:
        victim.unlink()
        return f"removed {victim.name}"
    if op == 1:
        victim.unlink()
        victim.mkdir()
        return f"{victim.name} is a folder"
    if op == 2:
        victim.unlink()
        victim.symlink_to(victim.name)  # a link to itself: ELOOP
        return f"{victim.name} symlink loop"
    if op == 3:
        victim.unlink()
        victim.symlink_to(rng.choice(["/etc/passwd", "/etc/hostname", "../../../../../../etc/passwd"]))
        return f"{victim.name} symlink escaping the folder"
    if op == 4:
        variables = root / "variables"
        if variables.is_dir():
            shutil.rmtree(variables)
            variables.symlink_to(rng.choice([".", "..", "/etc", "variables"]))
            return "variables/ symlinked"
        return "no variables/"
    if op == 5:
        victim.unlink()
        os.mkfifo(victim)
        return f"{victim.name} is a FIFO"
    if op == 6:
        with open(victim, "r+b") as fh:
            fh.truncate(victim.stat().st_size + rng.choice([1, 4096, 10**9]))  # sparse growth
        return f"{victim.name} grown"
    victim.write_bytes(b"")
    return f"{victim.name} emptied"


# sharded manifest ---------------------------------------------------------------------------------------------------


def m_manifest(case: Case, rng: random.Random) -> str:
    manifest = case.open_path
    try:
        value = json.loads(manifest.read_bytes())
    except ValueError:
        return "not JSON"
    op = rng.randrange(5)
    wm = value.get("weight_map") if isinstance(value, dict) else None
    if op == 0 and isinstance(wm, dict) and wm:
        key = rng.choice(sorted(wm))
        wm[key] = rng.choice(["../../../../etc/passwd", "/etc/hostname", "missing.weights.h5", ".", "",
                              ["a", "a"], 5, None, str(case.root)])
        what = f"weight_map[{key!r}] -> shard path"
    elif op == 1 and isinstance(wm, dict):
        for k in range(rng.choice([100, 5000])):
            wm[f"/layers/x{k}/vars"] = next(iter(wm.values()), "x")
        what = "many weight_map entries"
    else:
        value, what = mutate_json_value(value, rng)
    manifest.write_text(json_dumps(value))
    return what


# -- the table -----------------------------------------------------------------------------------------------------

ANY = ("keras", "h5", "weights.h5", "h5-weights", "weights.json", "savedmodel")
H5ISH = ("h5", "weights.h5", "h5-weights", "weights.json")

#: kind -> (mutator, formats it applies to, weight)
KINDS: dict[str, tuple[Mutator, tuple[str, ...], int]] = {
    "truncate_boundary": (m_truncate_boundary, ANY, 6),
    "truncate_random": (m_truncate_random, ANY, 3),
    "bitflip": (m_bitflip, ANY, 6),
    "splat": (m_splat, ANY, 6),
    "shift": (m_shift, ANY, 2),
    "zip_central": (m_zip_central, ("keras",), 4),
    "zip_local": (m_zip_local, ("keras",), 3),
    "zip_eocd": (m_zip_eocd, ("keras",), 2),
    "zip_members": (m_zip_members, ("keras",), 4),
    "zip_json": (m_zip_json, ("keras",), 6),
    "zip_inner_h5": (m_zip_inner_h5, ("keras",), 5),
    "h5_attr": (_h5_file_mutator(h5_attr), H5ISH, 6),
    "h5_dataset": (_h5_file_mutator(h5_dataset), H5ISH, 6),
    "h5_structure": (_h5_file_mutator(h5_structure), H5ISH, 5),
    "pb_field": (m_pb, ("savedmodel",), 6),
    "keras_metadata_json": (m_keras_metadata_json, ("savedmodel",), 4),
    "bundle_entry": (m_bundle, ("savedmodel",), 6),
    "object_graph": (m_object_graph, ("savedmodel",), 4),
    "savedmodel_files": (m_savedmodel_files, ("savedmodel",), 3),
    "manifest": (m_manifest, ("weights.json",), 6),
}


def choose(rng: random.Random, all_targets: list[Target]) -> tuple[Target, str]:
    """A target (uniform over formats, then over that format's seeds) and a kind that applies to it."""
    formats = sorted({t.fmt for t in all_targets})
    fmt = rng.choice(formats)
    target = rng.choice([t for t in all_targets if t.fmt == fmt])
    kinds = [(k, w) for k, (_, fmts, w) in KINDS.items() if fmt in fmts]
    total = sum(w for _, w in kinds)
    pick = rng.uniform(0, total)
    for kind, weight in kinds:
        pick -= weight
        if pick <= 0:
            return target, kind
    return target, kinds[-1][0]


def make_case(run_seed: int, number: int, all_targets: list[Target], scratch: Path) -> Case:
    """Case ``number`` of run ``run_seed``, materialised and mutated under ``scratch``."""
    rng = random.Random(f"{run_seed}:{number}")
    target, kind = choose(rng, all_targets)
    case = materialise(target, scratch)
    case.kind = kind
    case.detail = KINDS[kind][0](case, rng)
    if rng.random() < 0.1:  # now and then, two mutations stack
        second = rng.choice([k for k, (_, fmts, _) in KINDS.items() if target.fmt in fmts])
        case.detail += " + " + KINDS[second][0](case, rng)
    return case
