"""All the HDF5 metadata a reader needs, read in one traversal (docs/formats.md §1.2, docs/limits.md).

``walk(h5, ...)`` visits every object once with ``H5Ovisit`` and records groups and datasets (shape, dtype,
contiguous data offset, attribute count) in plain Python objects with the small part of h5py's API the
readers use (``in``, ``[]``, ``get``, ``keys``, ``items``, ``attrs``, ``name``). Indexing a deep model then
costs one pass over the file instead of several HDF5 lookups per variable, and everything after the walk
is pure Python.

The walk is also where hostile files are first contained:

* ``H5Ovisit`` visits each object once and follows hard links only: hard-link cycles cannot loop, and soft
  or external links (which could point at other files) are never followed;
* group nesting and the object count are bounded (:data:`MAX_DEPTH`, :data:`MAX_OBJECTS`);
* any HDF5 library error while reading metadata becomes one :class:`CorruptModelError`;
* attributes are read on demand, only for objects that have some, with the same error mapping.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from ..errors import CorruptModelError

__all__ = ["MAX_DEPTH", "MAX_OBJECTS", "H5Dataset", "H5Group", "H5Tree", "open_h5", "walk"]

#: Deepest group nesting accepted. Keras files nest about two levels per nested model or wrapper.
MAX_DEPTH = 64
#: Most HDF5 objects (groups + datasets) accepted in one file: 20x the deepest model we measured.
MAX_OBJECTS = 1_000_000

#: h5py's errors for damaged metadata (the HDF5 library raises them as these Python types).
H5_ERRORS = (RuntimeError, OSError, KeyError, ValueError, TypeError)


def open_h5(path: str, what: str) -> h5py.File:
    """``h5py.File(path, "r")`` with the library's errors as one :class:`CorruptModelError`."""
    try:
        return h5py.File(path, "r")
    except H5_ERRORS as exc:
        raise CorruptModelError(f"{what} is not a readable HDF5 file ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())}); it is truncated or damaged; expected a model "
                                f"file as Keras or TensorFlow write it. Received: {path}") from exc


class H5Tree:
    """The open file behind a walk, for on-demand attribute reads."""

    def __init__(self, h5: h5py.File, what: str) -> None:
        self.h5 = h5
        self.what = what  # "Received: ..." text for errors
        self._attrs: dict[str, dict[str, Any]] = {}
        self._partial: dict[str, dict[str, Any]] = {}  # prefetched attributes, when an object has only those

    def prefetch(self, name: bytes, path: str, keys: tuple[str, ...]) -> None:
        """Read string attributes ``keys`` of the object at ``name`` now (missing ones are skipped); other
        attributes of that object are then read on demand as usual."""
        found: dict[str, Any] = {}
        for key in keys:
            try:
                aid = h5py.h5a.open(self.h5.id, key.encode(), obj_name=name)
            except KeyError:
                continue
            if aid.shape != () or aid.dtype.kind not in "OSU":
                return  # not a plain string: leave it to the general reader
            value = np.empty((), dtype=aid.dtype)
            aid.read(value)
            found[key] = value[()]
        if found and len(found) == len(keys):
            self._partial[path] = found

    def attrs_of(self, path: str, count: int) -> dict[str, Any]:
        if count == 0:
            return {}
        partial = self._partial.get(path)
        if partial is not None and len(partial) == count:
            return partial
        if path not in self._attrs:
            try:
                obj = self.h5[path] if path != "/" else self.h5
                self._attrs[path] = {key: obj.attrs[key] for key in obj.attrs}
            except H5_ERRORS as exc:
                raise CorruptModelError(
                    f"the attributes of HDF5 object {path!r} cannot be read ({type(exc).__name__}: {exc}); the "
                    f"file is damaged; expected a model file as Keras or TensorFlow write it. Received: "
                    f"{self.what}") from exc
        return self._attrs[path]


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
    def attrs(self) -> dict[str, Any]:
        return self.tree.attrs_of(self.name, self.num_attrs)

    def storage_size(self) -> int:
        """Bytes actually stored for the data (compressed size for filtered data; 0 if never written)."""
        return int(self._dataset_id().get_storage_size())

    def external_count(self) -> int:
        """How many external files hold this dataset's raw data (HDF5 external storage)."""
        return int(self._dataset_id().get_create_plist().get_external_count())

    def _dataset_id(self) -> Any:
        try:
            return h5py.h5d.open(self.tree.h5.id, self.name.encode())
        except H5_ERRORS as exc:
            raise CorruptModelError(f"HDF5 dataset {self.name!r} cannot be opened ({exc}); the file is damaged; "
                                    f"expected a model file as Keras or TensorFlow write it. Received: "
                                    f"{self.tree.what}") from exc


class H5Group:
    """A group: children in HDF5's listing (name) order, attributes on demand."""

    __slots__ = ("children", "name", "num_attrs", "tree")

    def __init__(self, tree: H5Tree, name: str, num_attrs: int) -> None:
        self.tree = tree
        self.name = name
        self.num_attrs = num_attrs
        self.children: dict[str, H5Group | H5Dataset] = {}

    @property
    def attrs(self) -> dict[str, Any]:
        return self.tree.attrs_of(self.name, self.num_attrs)

    def get(self, path: str, default: Any = None) -> H5Group | H5Dataset | Any:
        """Like h5py: ``a/b`` relative to this group; a leading ``/`` starts from the file root."""
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
        return self.tree.root  # type: ignore[attr-defined]

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


def walk(h5: h5py.File, what: str, eager: dict[str, tuple[str, ...]] | None = None) -> H5Group:
    """Every group and dataset of ``h5``, read in one ``H5Ovisit`` pass; returns the root group.

    ``eager`` maps a group's own name to attributes read during the pass (Keras 3 ``vars`` groups: their
    ``name``), through the low-level API, so a reader that needs one attribute per layer pays no lookup
    per layer later.
    """
    tree = H5Tree(h5, what)
    try:
        fid = h5.id
        root = H5Group(tree, "/", int(h5py.h5o.get_info(fid).num_attrs))
        tree.root = root  # type: ignore[attr-defined]
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
            if info.type == h5py.h5o.TYPE_GROUP:
                if path.count("/") >= MAX_DEPTH:
                    return "too deep"
                group = H5Group(tree, "/" + path, int(info.num_attrs))
                if info.num_attrs and eager and leaf in eager:
                    tree.prefetch(name, group.name, eager[leaf])
                groups[path] = group
                parent.children[leaf] = group
            elif info.type == h5py.h5o.TYPE_DATASET:
                dsid = h5py.h5d.open(fid, name)
                parent.children[leaf] = H5Dataset(tree, "/" + path, tuple(int(d) for d in dsid.shape), dsid.dtype,
                                                  dsid.get_offset(), int(info.num_attrs))
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
