"""Walk a Keras 3 weights HDF5 tree (``model.weights.h5`` in ``.keras``, and ``.weights.h5``).

Layout (docs/formats.md §1.3): ``layers/<grp>/vars/<i>``; nested models ``layers/<grp>/layers/<grp2>/...``;
sub-layers in attribute groups (``cell/vars``, ``forward_layer/cell/vars``, ``query_dense/vars``);
``optimizer/vars`` is optimizer state, never a layer. Group names are class-derived, not layer names;
from Keras 3.6 each ``vars`` group carries the layer name as attribute ``name``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h5py

from ..keras_config import ModelGraph
from ..kinds import class_from_group_name, kind_of_class
from ..records import FILTER_KINDS, LayerRecord
from .build import records_from_graph, weights_only_record
from .h5tensors import RawTensor, dataset_tensor
from .h5walk import H5Dataset, H5Group, walk

__all__ = ["H5Source", "index_with_graph", "index_without_graph"]

_NOT_LAYERS = {"optimizer", "metrics", "compile_metrics", "loss_tracker"}


class H5Source:
    """Where an HDF5 image lives, so tensors can be read straight from the file later.

    ``root`` is the file's metadata read in one walk (``readers/h5walk.py``); ``image_size`` is the length
    of the HDF5 image (the zip member's inside a ``.keras``), which every contiguous dataset must end within.
    """

    def __init__(self, h5: h5py.File, file_path: str | None, base_offset: int = 0, *, image_size: int | None,
                 what: str) -> None:
        self.root: H5Group = walk(h5, what)
        self.file_path = file_path
        self.base_offset = base_offset
        self.image_size = image_size
        self.needs_handle = False

    def tensor(self, ds: H5Dataset, stored_name: str | None = None) -> RawTensor:
        raw = dataset_tensor(ds, stored_name, file_path=self.file_path, base_offset=self.base_offset,
                             image_size=self.image_size)
        self.needs_handle |= raw.needs_handle
        return raw


def _sorted_vars(group: H5Group | H5Dataset) -> list[H5Dataset]:
    if not isinstance(group, H5Group):
        return []
    items = [(k, v) for k, v in group.items() if isinstance(v, H5Dataset)]
    # 'vars/10' sorts after 'vars/9': numeric order is creation order.
    items.sort(key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0]))
    return [v for _, v in items]


_CELL_VARS = ("kernel", "recurrent_kernel", "bias")
_SUBLAYER_ORDER = {name: i for i, name in enumerate(
    ("cell", "forward_layer", "backward_layer", "layer", "query_dense", "key_dense", "value_dense", "output_dense"))}


def _sublayer_names(prefix: str, tensors: list[RawTensor]) -> list[str]:
    """Names for a sub-layer's variables from its attribute name: RNN cells and dense projections."""
    attr = prefix.rstrip("/").rsplit("/", 1)[-1]
    n = len(tensors)
    if attr == "cell" and n in (2, 3):
        return [f"{prefix}{v}" for v in _CELL_VARS[:n]]
    if n in (1, 2) and len(tensors[0].shape) >= 2:  # Dense/EinsumDense/Conv sub-layers: kernel, bias
        return [f"{prefix}{v}" for v in ("kernel", "bias")[:n]]
    return [f"{prefix}vars/{i}" for i in range(n)]


def layer_tensors(src: H5Source, group: H5Group, prefix: str = "") -> list[RawTensor]:
    """All tensors of one layer group: its own ``vars`` first, then attribute sub-groups, recursively.

    A layer's own variables get no stored name (the class's save order names them); sub-layers' get
    their attribute path (``cell/kernel``, ``forward_layer/cell/bias``). Sub-groups come in write order
    in Keras's ``layer.weights`` order for the wrappers that have several (Bidirectional, attention);
    the file itself stores them alphabetically.
    """
    found: list[RawTensor] = []
    if isinstance(group.get("vars"), H5Group):
        own = [src.tensor(ds) for ds in _sorted_vars(group["vars"])]
        if prefix:
            for raw, name in zip(own, _sublayer_names(prefix, own), strict=True):
                raw.stored_name = name
        found.extend(own)
    subs: list[list[RawTensor]] = []
    for key in sorted(group.keys(), key=lambda k: (_SUBLAYER_ORDER.get(k, len(_SUBLAYER_ORDER)), k)):
        if key in ("vars", "layers"):
            continue
        sub = group[key]
        if isinstance(sub, H5Group):
            tensors = layer_tensors(src, sub, f"{prefix}{key}/")
            if tensors:
                subs.append(tensors)
    for tensors in subs:
        found.extend(tensors)
    return found


def _name_attr(group: H5Group | H5Dataset) -> str | None:
    vars_group = group.get("vars") if isinstance(group, H5Group) else None
    if isinstance(vars_group, H5Group) and vars_group.num_attrs and "name" in vars_group.attrs:
        value: Any = vars_group.attrs["name"]
        if isinstance(value, bytes):
            return value.decode(errors="replace")
        return value if isinstance(value, str) else None  # anything else is not a layer name
    return None


def _holds_data(group: H5Group) -> bool:
    return next(group.datasets(), None) is not None


def _find_group(parent: H5Group | None, expected: str | None, name: str,
                by_name: dict[int, dict[str, H5Group]], trust_empty: bool = False) -> H5Group | None:
    """The group of a layer inside ``parent['layers']``: by the expected class-derived name, checked
    against the ``name`` attribute when present, else by the attribute (looked up in a table built once
    per ``layers`` group, so finding every layer stays linear).

    ``trust_empty`` skips the attribute check when the expected group holds no data: most layers of a
    deep model have no weights, and each check reads a string from the file. The caller then verifies
    that every group holding data was claimed (:func:`_unclaimed_data`)."""
    layers = parent.get("layers") if parent is not None else None
    if not isinstance(layers, H5Group):
        return None
    if expected and isinstance(layers.get(expected), H5Group):
        group = layers[expected]
        assert isinstance(group, H5Group)
        if trust_empty and not _holds_data(group):
            return group
        stored = _name_attr(group)
        if stored is None or stored == name:
            return group
    table = by_name.get(id(layers))
    if table is None:
        table = {}
        for key in layers:
            child = layers[key]
            if isinstance(child, H5Group) and (stored := _name_attr(child)) is not None:
                table.setdefault(stored, child)
        by_name[id(layers)] = table
    return table.get(name)


def _unclaimed_data(root: H5Group, claimed: set[int]) -> bool:
    """Whether some layer group (a child of any ``layers`` group) holds data but no layer claimed it."""
    stack = [root]
    while stack:
        group = stack.pop()
        layers = group.children.get("layers")
        if isinstance(layers, H5Group):
            for child in layers.children.values():
                if isinstance(child, H5Group):
                    if id(child) not in claimed and _holds_data(child):
                        return True
                    stack.append(child)
    return False


def _groups_for_layers(src: H5Source, graph: ModelGraph) -> dict[str, H5Group | None]:
    """Each config layer's group. First pass: groups at their expected names, trusted without a name check
    when they hold no data; if any group holding data is then left unclaimed, the names did not line up,
    and every group is checked against its ``name`` attribute."""
    for trust_empty in (True, False):
        groups: dict[str, H5Group | None] = {"": src.root}
        by_name: dict[int, dict[str, H5Group]] = {}
        for layer in graph.layers:
            parent = groups.get(layer.container_path)
            groups[layer.path] = _find_group(parent, layer.group, layer.name, by_name, trust_empty)
        if not trust_empty or not _unclaimed_data(src.root, {id(g) for g in groups.values() if g is not None}):
            break
    return groups


def index_with_graph(src: H5Source, graph: ModelGraph, warnings: list[str]) -> list[LayerRecord]:
    """Records for a model whose config we have: weights located through the config's layer order."""
    groups = _groups_for_layers(src, graph)
    tensors: dict[str, list[RawTensor]] = {}
    for layer in graph.layers:
        group = groups[layer.path]
        if group is None:
            continue
        if layer.is_container:
            own = [src.tensor(ds) for ds in _sorted_vars(group["vars"])] if "vars" in group else []
            if own:
                tensors[layer.path] = own
        else:
            tensors[layer.path] = layer_tensors(src, group)
    missing = [x.path for x in graph.leaves() if groups.get(x.path) is None and _expects_weights(x.class_name)]
    if missing:
        warnings.append(f"{len(missing)} layer(s) have no weights group in the file, e.g. {missing[0]!r}")
    return records_from_graph(graph, tensors)


def _expects_weights(class_name: str) -> bool:
    return kind_of_class(class_name) in FILTER_KINDS


def _walk(group: H5Group, label: str, in_layers: bool) -> Iterator[tuple[str, str | None, H5Group, bool]]:
    """Yield (path, class hint, group, is_leaf) for every layer-like group, depth first."""
    layers = group.get("layers")
    if isinstance(layers, H5Group):
        if "vars" in group and _sorted_vars(group["vars"]):
            yield label, None, group, False  # a container with weights of its own
        for key in layers:
            sub = layers[key]
            if isinstance(sub, H5Group):
                name = _name_attr(sub) or key
                yield from _walk(sub, f"{label}/{name}" if label else name, True)
        for key in group:  # attribute sub-models of a subclassed container
            if key not in ("layers", "vars") and key not in _NOT_LAYERS and isinstance(group[key], H5Group):
                sub = group[key]
                assert isinstance(sub, H5Group)
                yield from _walk(sub, f"{label}/{key}" if label else key, False)
        return
    hint = group.name.rsplit("/", 1)[-1] if in_layers else None
    yield label, hint, group, True


def index_without_graph(src: H5Source, warnings: list[str], subclassed: bool = False) -> list[LayerRecord]:
    """Records from the HDF5 tree alone (weights-only files, subclassed models)."""
    records: list[LayerRecord] = []
    order: list[int] = []
    root = src.root
    entries: list[tuple[str, str | None, H5Group, bool]] = []
    if "layers" in root:
        entries.extend(_walk(root, "", True))
    for key in root:
        sub = root[key]
        if key in ("layers", "vars") or key in _NOT_LAYERS or not isinstance(sub, H5Group):
            continue
        # Subclassed models store layers under their Python attribute names.
        entries.extend(_walk(sub, key, False))
    if "vars" in root and _sorted_vars(root["vars"]):
        entries.insert(0, ("", None, root, False))
    for path, hint, group, is_leaf in entries:
        raws = layer_tensors(src, group) if is_leaf else [src.tensor(ds) for ds in _sorted_vars(group["vars"])]
        if not raws:
            continue
        class_hint = class_from_group_name(hint) if hint else None
        label = path or (_name_attr(root) or "model")
        if not is_leaf:
            label = label or "model"
        records.append(weights_only_record(label, class_hint, raws))
        order.append(min((r.offset for r in raws if r.offset is not None), default=len(order)))
    if len(order) == len(records) and all(o is not None for o in order):
        # h5py lists groups alphabetically; data offsets follow Keras's write (model) order closely, though
        # not always exactly (HDF5 may place a dataset after later ones): the best order the file offers.
        records = [r for _, _, r in sorted(zip(order, range(len(records)), records, strict=True),
                                            key=lambda t: (t[0], t[1]))]
    if subclassed:
        warnings.append("subclassed model: its config lists no layers, so layers are named after the model's "
                        "attributes and their kinds are inferred from weight names and shapes")
    return records


def model_name(root: H5Group) -> str | None:
    return _name_attr(root)


