"""All the HDF5 metadata a reader needs, read in one traversal (docs/formats.md §1.2, docs/limits.md).

``walk(h5, ...)`` visits every object once with ``H5Ovisit`` and records groups and datasets (shape, dtype,
contiguous data offset, attribute count) in plain Python objects with the small part of h5py's API the
readers use (``in``, ``[]``, ``get``, ``keys``, ``items``, ``attrs``, ``name``). Indexing a deep model then
costs one pass over the file instead of several HDF5 lookups per variable, and everything after the walk
is pure Python.

Attributes are read one key at a time, on first use, through the low-level API (one ``H5Aopen_by_name``
per value, no h5py ``Group`` / ``AttributeManager`` objects), and HDF5 datatypes are converted to numpy
dtypes once per distinct type (``H5Tequal`` against the types already seen): a deep model has thousands
of datasets and attributes but two or three types, and h5py's conversion costs more than the read.

The walk is also where hostile files are first contained:

* ``H5Ovisit`` visits each object once and follows hard links only: hard-link cycles cannot loop, and soft
  or external links (which could point at other files) are never followed;
* group nesting and the object count are bounded (:data:`MAX_DEPTH`, :data:`MAX_OBJECTS`);
* any HDF5 library error while reading metadata becomes one :class:`CorruptModelError`;
* attributes are read on demand, only for objects that have some, with the same error mapping.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import h5py
import numpy as np

from ..errors import CorruptModelError

__all__ = ["MAX_DEPTH", "MAX_OBJECTS", "H5Attrs", "H5Dataset", "H5Group", "H5Tree", "open_h5", "walk"]

#: Deepest group nesting accepted. Keras files nest about two levels per nested model or wrapper.
MAX_DEPTH = 64
#: Most HDF5 objects (groups + datasets) accepted in one file: 20x the deepest model we measured.
MAX_OBJECTS = 1_000_000
#: Distinct HDF5 datatypes remembered per file (a linear ``H5Tequal`` search; real files have a few).
MAX_CACHED_TYPES = 64

#: h5py's errors for damaged metadata (the HDF5 library raises them as these Python types).
H5_ERRORS = (RuntimeError, OSError, KeyError, ValueError, TypeError)

_MISSING = object()


def open_h5(path: str, what: str) -> h5py.File:
    """``h5py.File(path, "r")`` with the library's errors as one :class:`CorruptModelError`."""
    try:
        return h5py.File(path, "r")
    except H5_ERRORS as exc:
        raise CorruptModelError(f"{what} is not a readable HDF5 file ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())}); it is truncated or damaged; expected a model "
                                f"file as Keras or TensorFlow write it. Received: {path}") from exc


def _encode(name: str) -> bytes:
    """An HDF5 name back to its bytes (names are decoded with ``surrogateescape``, so any bytes survive)."""
    return name.encode("utf-8", errors="surrogateescape")


class H5Tree:
    """The open file behind a walk: on-demand attribute reads and the datatype cache."""

    def __init__(self, h5: h5py.File, what: str) -> None:
        self.h5 = h5
        self.what = what  # "Received: ..." text for errors
        # The root group, set by walk(). Held weakly: groups hold the tree, and a strong link back would
        # make the whole walk one reference cycle that only the cyclic collector could free (tens of
        # thousands of objects on a deep model). Whoever called walk() keeps the root alive.
        self.root: weakref.ref[H5Group] | None = None
        self._values: dict[str, dict[str, Any]] = {}  # object path -> attribute name -> value (or _MISSING)
        # (HDF5 type, numpy dtype, h5py memory type, variable-length strings?)
        self._types: list[tuple[Any, np.dtype, Any, bool]] = []

    def _type(self, tid: Any) -> tuple[np.dtype, Any, bool]:
        """The numpy dtype of an HDF5 type, h5py's memory type for reads, and whether values are
        variable-length strings; worked out once per type."""
        for known, dtype, htype, vlen_str in self._types:
            if known.equal(tid):
                return dtype, htype, vlen_str
        dtype = tid.dtype
        htype = h5py.h5t.py_create(dtype)
        string_info = h5py.check_string_dtype(dtype.subdtype[0] if dtype.subdtype is not None else dtype)
        vlen_str = bool(string_info) and string_info.length is None
        if len(self._types) < MAX_CACHED_TYPES:
            self._types.append((tid, dtype, htype, vlen_str))
        return dtype, htype, vlen_str

    def dtype_of(self, tid: Any) -> np.dtype:
        return self._type(tid)[0]

    def attr(self, path: str, key: str) -> Any:
        """The value of attribute ``key`` of the object at ``path`` (as h5py's ``attrs[key]`` gives it), or
        ``_MISSING``; read once."""
        values = self._values.setdefault(path, {})
        if key in values:
            return values[key]
        try:
            try:
                aid = h5py.h5a.open(self.h5.id, _encode(key), obj_name=_encode(path))
            except KeyError:
                value: Any = _MISSING
            else:
                value = self._read_attr(aid)
        except H5_ERRORS as exc:
            raise self._damaged(path, exc) from exc
        values[key] = value
        return value

    def _read_attr(self, aid: Any) -> Any:
        """h5py's ``AttributeManager.__getitem__`` on an open attribute, with the datatype cache."""
        shape = aid.shape
        dtype, htype, vlen_str = self._type(aid.get_type())
        if shape is None:  # a null dataspace
            return h5py.Empty(dtype)
        if dtype.subdtype is not None:  # numpy has no top-level array types: fold them into the shape
            subdtype, subshape = dtype.subdtype
            shape = shape + subshape
            dtype = subdtype
        arr = np.zeros(shape, dtype=dtype, order="C")
        if arr.size == 0:
            return arr  # nothing to read (every writer stores an empty name list this way)
        aid.read(arr, mtype=htype)
        if vlen_str:  # variable-length strings come back as bytes
            arr = np.array([b.decode("utf-8", "surrogateescape") for b in arr.flat], dtype=dtype).reshape(arr.shape)
        return arr[()] if arr.ndim == 0 else arr

    def attr_names(self, path: str) -> list[str]:
        """Every attribute name of the object at ``path`` (h5py's listing; no reader needs it on a hot path)."""
        try:
            obj = self.h5[path] if path != "/" else self.h5
            return list(obj.attrs)
        except H5_ERRORS as exc:
            raise self._damaged(path, exc) from exc

    def _damaged(self, path: str, exc: BaseException) -> CorruptModelError:
        return CorruptModelError(
            f"the attributes of HDF5 object {path!r} cannot be read ({type(exc).__name__}: {exc}); the file is "
            f"damaged; expected a model file as Keras or TensorFlow write it. Received: {self.what}")


class H5Attrs(Mapping[str, Any]):
    """An object's attributes as a read-only mapping; each value is read on first use (``H5Tree.attr``)."""

    __slots__ = ("_count", "_path", "_tree")

    def __init__(self, tree: H5Tree, path: str, count: int) -> None:
        self._tree = tree
        self._path = path
        self._count = count

    def __getitem__(self, key: str) -> Any:
        value = self._tree.attr(self._path, key) if self._count and isinstance(key, str) else _MISSING
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return bool(self._count) and isinstance(key, str) and self._tree.attr(self._path, key) is not _MISSING

    def __iter__(self) -> Iterator[str]:
        return iter(self._tree.attr_names(self._path) if self._count else [])

    def __len__(self) -> int:
        return len(self._tree.attr_names(self._path)) if self._count else 0


class H5Dataset:
    """A dataset's metadata: enough to build a lazy tensor without touching the file again."""

    __slots__ = ("dtype", "name", "num_attrs", "offset", "shape", "tree")

    def __init__(self, tree: H5Tree, name: str, shape: tuple[int, ...], dtype: np.dtype, offset: int | None,
                 num_attrs: int) -> None:
        self.tree = tree
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.offset = offset  # byte offset of contiguous, allocated data in the HDF5 image; else None
        self.num_attrs = num_attrs

    @property
    def attrs(self) -> H5Attrs:
        return H5Attrs(self.tree, self.name, self.num_attrs)

    def storage_size(self) -> int:
        """Bytes actually stored for the data (compressed size for filtered data; 0 if never written)."""
        return int(self._dataset_id().get_storage_size())

    def external_count(self) -> int:
        """How many external files hold this dataset's raw data (HDF5 external storage)."""
        return int(self._dataset_id().get_create_plist().get_external_count())

    def _dataset_id(self) -> Any:
        try:
            return h5py.h5d.open(self.tree.h5.id, _encode(self.name))
        except H5_ERRORS as exc:
            raise CorruptModelError(f"HDF5 dataset {self.name!r} cannot be opened ({exc}); the file is damaged; "
                                    f"expected a model file as Keras or TensorFlow write it. Received: "
                                    f"{self.tree.what}") from exc


class H5Group:
    """A group: children in HDF5's listing (name) order, attributes on demand."""

    __slots__ = ("__weakref__", "children", "name", "num_attrs", "tree")

    def __init__(self, tree: H5Tree, name: str, num_attrs: int) -> None:
        self.tree = tree
        self.name = name
        self.num_attrs = num_attrs
        self.children: dict[str, H5Group | H5Dataset] = {}

    @property
    def attrs(self) -> H5Attrs:
        return H5Attrs(self.tree, self.name, self.num_attrs)

    def get(self, path: str, default: Any = None) -> H5Group | H5Dataset | Any:
        """Like h5py: ``a/b`` relative to this group; a leading ``/`` starts from the file root."""
        found = self.children.get(path)  # the common case: one plain child name
        if found is not None:
            return found
        node: H5Group | H5Dataset = self
        if path.startswith("/"):
            node = self.tree_root()
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if not isinstance(node, H5Group) or part not in node.children:
                return default
            node = node.children[part]
        return node

    def tree_root(self) -> H5Group:
        root = self.tree.root() if self.tree.root is not None else None
        assert root is not None, "the root group of a walk must outlive lookups from the root"
        return root

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.get(path) is not None

    def __getitem__(self, path: str) -> H5Group | H5Dataset:
        found = self.get(path)
        if found is None:
            raise KeyError(path)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self.children)

    def keys(self) -> list[str]:
        return list(self.children)

    def items(self) -> list[tuple[str, H5Group | H5Dataset]]:
        return list(self.children.items())

    def datasets(self, prefix: str = "") -> Iterator[tuple[str, H5Dataset]]:
        """(path relative to this group, dataset) for every dataset below, depth first in listing order."""
        stack: list[tuple[str, H5Group | H5Dataset]] = [(prefix + k, v) for k, v in reversed(self.children.items())]
        while stack:
            rel, node = stack.pop()
            if isinstance(node, H5Dataset):
                yield rel, node
            else:
                stack.extend((f"{rel}/{k}", v) for k, v in reversed(node.children.items()))


#: HDF5 metadata cache size while indexing (HDF5 starts at 2 MiB): big enough that the object headers the
#: walk read are still cached when readers then read one attribute per layer (a 3,751-layer file's metadata
#: is about 5 MB). It is a ceiling: the cache only holds what was read.
METADATA_CACHE_BYTES = 32 * 2**20


def _keep_metadata_cached(h5: h5py.File) -> None:
    try:
        config = h5.id.get_mdc_config()
        if config.max_size < METADATA_CACHE_BYTES:
            config.max_size = METADATA_CACHE_BYTES
        config.set_initial_size = True
        config.initial_size = max(config.initial_size, min(config.max_size, METADATA_CACHE_BYTES))
        h5.id.set_mdc_config(config)
    except H5_ERRORS:
        pass  # only a speed-up


def walk(h5: h5py.File, what: str) -> H5Group:
    """Every group and dataset of ``h5``, read in one ``H5Ovisit`` pass; returns the root group.

    Nothing but the visit itself runs inside ``H5Ovisit``: attributes are read afterwards, on demand
    (an attribute read inside the visit hung on a damaged global heap).
    """
    tree = H5Tree(h5, what)
    _keep_metadata_cached(h5)
    group_type, dataset_type = h5py.h5o.TYPE_GROUP, h5py.h5o.TYPE_DATASET
    open_dataset = h5py.h5d.open
    try:
        fid = h5.id
        root = H5Group(tree, "/", int(h5py.h5o.get_info(fid).num_attrs))
        tree.root = weakref.ref(root)
        groups: dict[str, H5Group] = {"": root}
        count = 0

        def visit(name: bytes, info: Any) -> object:
            nonlocal count
            count += 1
            if count > MAX_OBJECTS:
                return "too many"
            path = name.decode("utf-8", errors="surrogateescape")
            parent_path, _, leaf = path.rpartition("/")
            parent = groups.get(parent_path)
            if parent is None:
                return None  # below an object we do not list (a named datatype)
            kind = info.type
            if kind == group_type:
                if path.count("/") >= MAX_DEPTH:
                    return "too deep"
                group = H5Group(tree, "/" + path, int(info.num_attrs))
                groups[path] = group
                parent.children[leaf] = group
            elif kind == dataset_type:
                dsid = open_dataset(fid, name)
                parent.children[leaf] = H5Dataset(tree, "/" + path, tuple(int(d) for d in dsid.shape),
                                                  tree.dtype_of(dsid.get_type()), dsid.get_offset(),
                                                  int(info.num_attrs))
            return None

        stopped = h5py.h5o.visit(fid, visit, info=True)
    except H5_ERRORS as exc:
        raise CorruptModelError(
            f"the HDF5 tree cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())}); the file is "
            f"damaged or truncated; expected a model file as Keras or TensorFlow write it. Received: {what}") from exc
    if stopped == "too many":
        raise CorruptModelError(f"the HDF5 file holds more than {MAX_OBJECTS:,} objects, more than any model "
                                f"this reader accepts (docs/limits.md); expected a model file as Keras or "
                                f"TensorFlow write it. Received: {what}")
    if stopped == "too deep":
        raise CorruptModelError(f"the HDF5 file nests groups more than {MAX_DEPTH} deep, more than any Keras "
                                f"file does (docs/limits.md); expected a model file as Keras or TensorFlow "
                                f"write it. Received: {what}")
    return root
