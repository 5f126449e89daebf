"""Legacy Keras HDF5 files: full models (``model.save('x.h5')``) and Keras 2 ``save_weights('x.h5')``.

Layout (docs/formats.md §3):

* Full model: root attributes ``keras_version``, ``backend``, ``model_config`` (JSON), maybe
  ``training_config``; group ``model_weights`` with attribute ``layer_names`` (``model.layers`` order)
  and one group per layer whose attribute ``weight_names`` lists its variables as HDF5 paths relative
  to that group. ``optimizer_weights`` is optimizer state, never a layer.
* Weights only (tf.keras / Keras 2 ``save_weights``): the same per-layer groups at the file root,
  with ``layer_names`` as a root attribute and no config.

Writers differ in spelling, not in structure: Keras 3 writes ``variable.path`` (``seq/c1/kernel``),
tf.keras 2 ``variable.name`` (``c1/kernel:0``), Keras 2.0 adds a scope suffix (``conv2d_1_1/kernel:0``)
and stores attributes as fixed-length bytes. So ``weight_names`` entries are resolved as paths, never
parsed for structure; they are only *matched* against layer names to split a nested model's group
between its layers.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from ..errors import CorruptModelError, InspectorError
from ..keras_config import ConfigLayer, ModelGraph, load_config_json, parse_model_config
from ..kinds import CONTAINER_CLASSES, canonical_weight_name, class_from_group_name, kind_of_class, variable_names
from ..records import FILTER_KINDS, LayerKind, LayerRecord, ModelFormat, ModelIndex
from .build import infer_kind_from_weights, records_from_graph, weights_only_record
from .h5tensors import RawTensor, dataset_tensor
from .h5walk import H5Dataset, H5Group, open_h5, walk

__all__ = ["read_legacy_h5", "read_legacy_weights_h5", "writer_name"]

WEIGHTS_ONLY_NOTE = ("weights-only file (save_weights): no architecture is stored, so kinds are inferred "
                     "from weight names and shapes, and strides, padding, activations, connectivity and "
                     "output shapes are unknown")

# Marks a config node as a raw op for the config parser (kinds.is_raw_op checks this prefix).
_RAW_OP_MODULE = "keras.src.ops"


# -- attribute decoding ------------------------------------------------------------------------------

def _text(value: Any) -> str:
    """An HDF5 string attribute as str: Keras 2.0 wrote fixed-length bytes, later writers str."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _names(attrs: Mapping[str, Any], key: str) -> list[str]:
    """A list-of-names attribute (``layer_names``, ``weight_names``).

    Stored as an object array of str (Keras 3, tf.keras), fixed-length bytes (``|S26``, Keras 2.0) or,
    when empty, as an empty float64 array (every writer): the empty case must not be read as numbers.
    """
    if key not in attrs:
        return []
    value = attrs[key]
    if isinstance(value, (str, bytes, np.bytes_)):
        return [_text(value)]
    array = np.asarray(value)
    if array.size == 0 or array.dtype.kind not in "OSU":
        return []
    return [_text(v) for v in array.reshape(-1)]


def writer_name(keras_version: str | None) -> str | None:
    """Who wrote the file, from ``keras_version``: Keras 3, tf.keras 2 or standalone Keras 1/2.

    Standalone Keras ended at 2.3.1; 2.4+ exists only as tf.keras (TF 2.x), which earlier marked its
    version with a ``-tf`` suffix (``2.3.0-tf``).
    """
    if not keras_version:
        return None
    version = keras_version.strip()
    if version.endswith("-tf"):
        return f"tf.keras {version[:-3]}"
    parts = re.findall(r"\d+", version)
    major, minor = (int(parts[0]) if parts else 0), (int(parts[1]) if len(parts) > 1 else 0)
    if major == 2 and minor >= 4:
        return f"tf.keras {version}"
    return f"Keras {version}"


# -- resolving weight_names entries ------------------------------------------------------------------

def _resolve(group: H5Group, entry: str, datasets: list[tuple[str, H5Dataset]]) -> H5Dataset | None:
    """The dataset a ``weight_names`` entry names: a path relative to the layer group, with fallbacks for
    files whose writers placed it differently (searched by path suffix, then by last component).
    ``datasets`` lists the group's datasets (relative path, dataset), made once per group by the caller."""
    found = group.get(entry)
    if isinstance(found, H5Dataset):
        return found
    for rel, ds in datasets:
        if rel.endswith("/" + entry) or entry.endswith("/" + rel):
            return ds
    last = entry.rsplit("/", 1)[-1]
    tail = [ds for rel, ds in datasets if rel.rsplit("/", 1)[-1] == last]
    return tail[0] if len(tail) == 1 else None


def _in_known_order(group: H5Group, datasets: list[tuple[str, H5Dataset]],
                    layer: ConfigLayer) -> list[tuple[str, H5Dataset]] | None:
    """A layer group's datasets in save order without reading its ``weight_names``, or None.

    That list's entries are the datasets' paths in the group (``conv0/kernel``, ``conv0/kernel:0``); what it
    adds is their order. When the layer's class has a known variable order (``kinds.variable_names``) and
    the group holds exactly those variables, each at ``<group name>/<variable>``, as every writer stores
    them, the order is known and the attribute (a string read per layer) is not needed. Anything else, a
    nested path, a missing or an extra dataset, falls back to the list.
    """
    class_name = _base_class(layer)
    names = variable_names(class_name, layer.config, len(datasets))
    if names is None:
        return None
    prefix = group.name.rsplit("/", 1)[-1] + "/"
    found: dict[str, tuple[str, H5Dataset]] = {}
    for rel, ds in datasets:
        variable = rel[len(prefix):] if rel.startswith(prefix) else ""
        if not variable or "/" in variable:
            return None
        found.setdefault(canonical_weight_name(class_name, variable), (rel, ds))
    if len(found) != len(names) or any(name not in found for name in names):
        return None
    return [found[name] for name in names]


def _group_entries(group: H5Group, path: str, where: str,
                   layer: ConfigLayer | None = None) -> list[tuple[str, H5Dataset]]:
    """(weight name, dataset) pairs of one layer group, in the writer's order. ``layer`` is the plain
    (not nested-model) config layer the group belongs to, when known."""
    if not group.children:
        # An empty group stores nothing, whatever a weight_names list might say: no attribute read (most
        # layers of a deep model hold no weights). A config layer that should have weights is then
        # reported as missing; a group that lost only some datasets still fails the check below.
        return []
    datasets = list(group.datasets())
    if layer is not None and (known := _in_known_order(group, datasets, layer)) is not None:
        return known
    if "weight_names" not in group.attrs:
        # No list (hand-made files): take every dataset, in HDF5 (alphabetical) order.
        return datasets
    names = _names(group.attrs, "weight_names")
    entries = []
    for name in names:
        ds = _resolve(group, name, datasets)
        if ds is None:
            raise CorruptModelError(
                f"weight {name!r} listed for layer group {where!r} is missing from the file; the file is "
                f"damaged or was edited. Expected every weight_names entry to be a dataset. Received: {path}")
        entries.append((name, ds))
    return entries


# -- naming and splitting ----------------------------------------------------------------------------

def _components(weight_name: str) -> list[str]:
    return [c for c in weight_name.split(":", 1)[0].split("/") if c]


def _match_position(comps: Sequence[str], leaf_path: str) -> tuple[int, int, int] | None:
    """How well a weight name's components point at a layer: (tier, ancestors matched, position).

    Tier 2: a component equals the layer name. Tier 1: it is the name plus a TF scope suffix
    (``conv2d_1_1`` for ``conv2d_1``, Keras 2.0). Ancestors: enclosing model names matched just before
    it (Keras 3 Sequential scopes: ``outer/inner/dense/kernel``).
    """
    parts = leaf_path.split("/")
    name = parts[-1]
    scoped = name + "_"
    best: tuple[int, int, int] | None = None
    for i, comp in enumerate(comps[:-1]):  # the last component is the variable itself
        # A string test, not a regex per layer name: deep models have thousands of names (re's cache holds 512).
        tier = 2 if comp == name else 1 if comp.startswith(scoped) and comp[len(scoped):].isdigit() else 0
        if not tier:
            continue
        ancestors = 0
        while (ancestors < i and ancestors + 1 < len(parts)
               and comps[i - ancestors - 1] == parts[-ancestors - 2]):
            ancestors += 1
        candidate = (tier, ancestors, i)
        # The same layer named twice in one weight path: the later one is the layer, earlier ones scopes.
        if best is None or candidate[:2] >= best[:2]:
            best = candidate
    return best


_CELL = re.compile(r".*_cell(_\d+)?")


def _short_name(class_name: str | None, comps: Sequence[str], position: int | None) -> str:
    """The index's short name: what follows the layer's component, sub-layer scopes in ``.keras`` terms
    (``lstm_cell`` -> ``cell``, ``forward_lstm`` -> ``forward_layer``, TimeDistributed's inner layer ->
    ``layer``), so names agree across formats."""
    if position is None:
        cell = next((i for i, c in enumerate(comps[:-1]) if _CELL.fullmatch(c)), None)
        rest = list(comps[cell:]) if cell is not None else [comps[-1]]
    else:
        rest = list(comps[position + 1:])
    mapped = []
    for i, comp in enumerate(rest[:-1]):
        if class_name == "Bidirectional" and i == 0 and comp.startswith(("forward_", "backward_")):
            mapped.append("forward_layer" if comp.startswith("forward_") else "backward_layer")
        elif class_name == "TimeDistributed" and i == 0:
            mapped.append("layer")
        elif _CELL.fullmatch(comp):
            mapped.append("cell")
        else:
            mapped.append(comp)
    return "/".join([*mapped, rest[-1]]) if rest else comps[-1]


def _base_class(layer: ConfigLayer) -> str:
    return layer.class_name.rsplit(">", 1)[-1]


def _split_container(
    container: ConfigLayer, leaves: Sequence[ConfigLayer], entries: Sequence[tuple[str, RawTensor]]
) -> tuple[dict[str, list[RawTensor]], list[RawTensor]]:
    """Assign a nested model's weights to its layers by matching layer names in the weight names.

    Returns tensors per leaf path and the tensors no layer name matched.
    """
    by_leaf: dict[str, list[RawTensor]] = {}
    leftover: list[RawTensor] = []
    for weight_name, raw in entries:
        comps = _components(weight_name)
        best: tuple[tuple[int, int, int], ConfigLayer] | None = None
        for leaf in leaves:
            rel = leaf.path[len(container.path) - len(container.name):]  # from the container's own name
            match = _match_position(comps, rel)
            # Across layers, the left-most match wins on a tie: the later components are sub-scopes
            # of the first layer (lstm/lstm_cell/kernel), not a second layer.
            if match is not None and (best is None or (match[0], match[1], -match[2]) >
                                      (best[0][0], best[0][1], -best[0][2])):
                best = (match, leaf)
        if best is None:
            raw.stored_name = _short_name(None, comps, None)
            leftover.append(raw)
            continue
        (_, _, position), leaf = best
        raw.stored_name = _short_name(_base_class(leaf), comps, position)
        by_leaf.setdefault(leaf.path, []).append(raw)
    return by_leaf, leftover


def _layer_raws(layer: ConfigLayer | None, name: str,
                entries: Sequence[tuple[str, RawTensor]]) -> list[RawTensor]:
    """A plain (non-container) layer's tensors with their short names."""
    class_name = _base_class(layer) if layer is not None else None
    raws = []
    for weight_name, raw in entries:
        comps = _components(weight_name)
        match = _match_position(comps, name)
        raw.stored_name = _short_name(class_name, comps, None if match is None else match[2])
        raws.append(raw)
    return raws


# -- config normalisation ----------------------------------------------------------------------------

def _normalise_config(entry: Any, top_layer_names: Sequence[str] | None, keras3: bool) -> Any:
    """A model config the shared parser reads like any other: the levels it changes are copies, the rest is
    shared with ``entry``, which is never mutated.

    * Keras <= 2.2 Sequential: ``config`` is the bare layer list; the parser wants ``{name, layers}``.
      A nested one has no name at all, so at the top level it takes its ``layer_names`` entry (same order).
    * Keras 3's legacy writer drops each layer's ``module``, so raw-op nodes (``x + y``, ``ops.relu``)
      look like layers. They are not in ``layer_names`` (top level) and their config holds only a
      ``name`` (no ``trainable`` / ``dtype``, which every Layer serialises): mark them as raw ops.
    """
    if not isinstance(entry, Mapping):
        return entry
    cfg = entry.get("config")
    if not (entry.get("class_name") == "Sequential" and isinstance(cfg, list)) and not (
            isinstance(cfg, Mapping) and isinstance(cfg.get("layers"), list)):
        return entry  # a plain layer: nothing to change, so no copy (a deep model has thousands)
    out = dict(entry)
    if out.get("class_name") == "Sequential" and isinstance(cfg, list):
        cfg = {"name": out.get("name") or "sequential", "layers": cfg}
    if isinstance(cfg, Mapping) and isinstance(cfg.get("layers"), list):
        cfg = dict(cfg)
        layers = []
        real = [isinstance(e, Mapping) and e.get("class_name") != "InputLayer" for e in cfg["layers"]]
        names_fit = top_layer_names is not None and sum(real) == len(top_layer_names)
        # Both looked up once per layer, so a deep model's normalisation stays linear.
        listed = set(top_layer_names) if top_layer_names is not None else set()
        real_before = [0, *itertools.accumulate(real)]
        for position, sub in enumerate(cfg["layers"]):
            unnamed_seq = (isinstance(sub, Mapping) and sub.get("class_name") == "Sequential"
                           and isinstance(sub.get("config"), list) and not sub.get("name"))
            if unnamed_seq and names_fit and top_layer_names is not None:
                sub = {**sub, "name": top_layer_names[real_before[position]]}
            if isinstance(sub, Mapping) and out.get("class_name") != "Sequential":
                sub_cfg = sub.get("config")
                sub_name = sub.get("name") or (sub_cfg.get("name") if isinstance(sub_cfg, Mapping) else None)
                only_name = isinstance(sub_cfg, Mapping) and set(sub_cfg) <= {"name"}
                not_listed = top_layer_names is not None and not (
                    isinstance(sub_name, Hashable) and sub_name in listed)
                layer_like = sub.get("class_name") not in ("InputLayer", *CONTAINER_CLASSES)
                if layer_like and (not_listed or (keras3 and only_name)) and not sub.get("module"):
                    sub = {**sub, "module": _RAW_OP_MODULE}
            layers.append(_normalise_config(sub, None, keras3))
        cfg["layers"] = layers
    out["config"] = cfg
    return out


# -- the reader --------------------------------------------------------------------------------------

def read_legacy_h5(path: str, h5: h5py.File | None = None) -> ModelIndex:
    """Index a legacy full-model ``.h5`` (``model.save('x.h5')``: a ``model_config`` attribute).

    ``h5`` is an already open handle to ``path``, if the caller has one. The handle is closed unless a
    tensor must be read through it (chunked or compressed datasets); then the index owns it.
    """
    return _read(path, h5, _read_full_model)


def read_legacy_weights_h5(path: str, h5: h5py.File | None = None) -> ModelIndex:
    """Index a Keras 2 / tf.keras ``save_weights('x.h5')`` file (no config); handles as :func:`read_legacy_h5`."""
    return _read(path, h5, _read_weights_only)


def _read(path: str, h5: h5py.File | None,
          read: Callable[[str, H5Group], tuple[ModelIndex, bool]]) -> ModelIndex:
    h5 = h5 if h5 is not None else open_h5(path, "the legacy .h5 file")
    try:
        index, keep_open = read(path, walk(h5, path))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OSError) as exc:
        h5.close()
        if isinstance(exc, InspectorError):
            raise
        raise CorruptModelError(
            f"legacy Keras HDF5 file whose structure cannot be read ({type(exc).__name__}: {exc}); the file "
            f"may be damaged or written by an unknown tool. Received: {path}") from exc
    except BaseException:
        h5.close()
        raise
    if keep_open:
        index.own(h5)
    else:  # every tensor reads straight from the file by offset
        h5.close()
    return index


class _Tensors:
    """Creates lazy tensors and remembers whether any needs the h5 handle kept open."""

    def __init__(self, path: str) -> None:
        self.path = os.fspath(path)
        self.size = os.path.getsize(self.path)
        self.needs_handle = False

    def entries(self, group: H5Group, where: str, layer: ConfigLayer | None = None) -> list[tuple[str, RawTensor]]:
        out = []
        for name, ds in _group_entries(group, self.path, where, layer):
            raw = dataset_tensor(ds, name, file_path=self.path, image_size=self.size)
            self.needs_handle |= raw.needs_handle
            out.append((name, raw))
        return out


def _read_full_model(path: str, h5: H5Group) -> tuple[ModelIndex, bool]:
    if "model_config" not in h5.attrs:
        raise CorruptModelError(f"the model_config attribute of this .h5 file is missing or unreadable; the file "
                                f"is damaged. Received: {path}")
    config = load_config_json(_text(h5.attrs["model_config"]), "the model_config attribute of this .h5 file", path)
    if not isinstance(config, dict):
        raise CorruptModelError(
            f"the model_config attribute of this .h5 file is not a JSON object. Received: {path}")
    weights_root = h5.get("model_weights")
    if not isinstance(weights_root, H5Group):
        raise CorruptModelError(
            "legacy .h5 model with a model_config but no model_weights group; the file is incomplete. "
            f"Expected a file written by model.save('x.h5'). Received: {path}")
    version = _text(h5.attrs.get("keras_version", weights_root.attrs.get("keras_version", ""))) or None
    warnings: list[str] = []
    if version and version.split(".")[0] == "1":
        warnings.append(f"written by Keras {version}: Keras 1 weight names and kernel layouts may differ "
                        "from Keras 2/3, so weight names and filter slices may be wrong")
    layer_names = _names(weights_root.attrs, "layer_names")
    if "layer_names" not in weights_root.attrs:
        layer_names = [k for k in weights_root if k != "top_level_model_weights"]
    keras3 = version is not None and version.split(".")[0] == "3"
    # _normalise_config copies every level it changes and never mutates its input: no deepcopy needed.
    graph = parse_model_config(_normalise_config(config, layer_names, keras3))
    tensors = _Tensors(path)
    if not graph.has_layer_list:
        layers = _records_without_config(tensors, weights_root, layer_names)
        warnings.append("the model_config lists no layers (subclassed model), so kinds are inferred from "
                        "weight names and shapes")
    else:
        layers = _records_with_graph(tensors, weights_root, layer_names, graph, warnings)
    own = _top_level_weights(tensors, weights_root, graph.name or "model")
    if own is not None:
        layers.append(own)
    index = ModelIndex(
        format=ModelFormat.LEGACY_H5,
        source=os.fspath(path),
        layers=layers,
        name=graph.name,
        writer=writer_name(version),
        model_config=config,
        has_architecture=graph.has_layer_list,
        input_shapes=graph.input_shapes,
        output_shapes=[_output_shape(layers, p) for p in graph.output_paths],
        warnings=warnings,
    )
    return index, tensors.needs_handle


def _records_with_graph(tensors: _Tensors, weights_root: H5Group, layer_names: list[str],
                        graph: ModelGraph, warnings: list[str]) -> list[LayerRecord]:
    top = {layer.name: layer for layer in graph.layers if not layer.container_path}
    found: dict[str, list[RawTensor]] = {}
    unknown: list[LayerRecord] = []
    for name in layer_names:
        group = weights_root.get(name)
        if not isinstance(group, H5Group):
            raise CorruptModelError(
                f"layer {name!r} is listed in model_weights but has no group; the file is damaged. "
                f"Expected one group per name in layer_names. Received: {tensors.path}")
        layer = top.get(name)
        entries = tensors.entries(group, f"model_weights/{name}",
                                  layer if layer is not None and not layer.is_container else None)
        if not entries:
            continue
        if layer is None:
            raws = _layer_raws(None, name, entries)
            unknown.append(weights_only_record(name, _hint(name, raws), raws,
                                               note="layer not described by the model_config"))
            continue
        if not layer.is_container:
            found[layer.path] = _layer_raws(layer, layer.name, entries)
            continue
        leaves = [x for x in graph.layers if x.path.startswith(layer.path + "/") and not x.is_container]
        by_leaf, leftover = _split_container(layer, leaves, entries)
        found.update(by_leaf)
        if leftover:
            # Kept on the nested model itself so totals stay exact, and said plainly.
            found[layer.path] = leftover
            warnings.append(f"{len(leftover)} weight(s) of nested model {layer.path!r} match no layer name, "
                            f"e.g. {entries[0][0]!r}; they are listed under the nested model")
    if unknown:
        warnings.append(f"{len(unknown)} weight group(s) match no layer of the model_config, e.g. "
                        f"{unknown[0].path!r}; their kinds are inferred from weight names")
    missing = [x.path for x in graph.leaves()
               if x.path not in found and kind_of_class(_base_class(x)) in FILTER_KINDS]
    if missing:
        warnings.append(f"{len(missing)} layer(s) have no weights in the file, e.g. {missing[0]!r}")
    return records_from_graph(graph, found) + unknown


def _top_level_weights(tensors: _Tensors, weights_root: H5Group, label: str) -> LayerRecord | None:
    """Weights owned by the model itself (``model.add_weight`` in a Functional subclass); usually none."""
    group = weights_root.get("top_level_model_weights")
    if not isinstance(group, H5Group):
        return None
    entries = tensors.entries(group, "model_weights/top_level_model_weights")
    if not entries:
        return None
    raws = _layer_raws(None, label, entries)
    return weights_only_record(label, None, raws, note="weights owned by the model itself")


def _hint(group_name: str, raws: Sequence[RawTensor]) -> str | None:
    """A class for a layer known by weights only: the group name's class (``conv2d_3`` -> Conv2D) when it
    agrees with what the weight names say, so a user's odd layer name cannot mislabel a kernel."""
    hint = class_from_group_name(group_name)
    if hint is None:
        return None
    _, kind = infer_kind_from_weights([r.stored_name for r in raws], [r.shape for r in raws])
    hint_kind = kind_of_class(hint)
    if kind is LayerKind.OTHER or hint_kind is kind:
        return hint
    if kind is LayerKind.CONV and hint_kind is LayerKind.TRANSPOSE:
        return hint  # a transposed kernel looks like a regular one; only the name tells them apart
    return None


def _records_without_config(tensors: _Tensors, root: H5Group, layer_names: list[str]) -> list[LayerRecord]:
    """Records from per-layer groups alone (save_weights files, config-less models).

    A group whose weight names carry several layer scopes is a nested model (tf.keras writes
    ``d_in/kernel:0``, ``d_in2/kernel:0`` under ``inner_seq``): it becomes one record per scope,
    ``inner_seq/d_in`` and so on, matching the full-model paths.
    """
    records: list[LayerRecord] = []
    for name in layer_names:
        group = root.get(name)
        if not isinstance(group, H5Group):
            raise CorruptModelError(
                f"layer {name!r} is listed in layer_names but has no group; the file is damaged. Expected "
                f"one group per listed layer. Received: {tensors.path}")
        entries = tensors.entries(group, name)
        if not entries:
            continue
        scopes: dict[str, list[tuple[str, RawTensor]]] = {}
        for weight_name, raw in entries:
            comps = _components(weight_name)
            match = _match_position(comps, name)
            scope = name if match is not None or len(comps) < 2 else comps[0]
            scopes.setdefault(scope, []).append((weight_name, raw))
        if list(scopes) == [name]:
            raws = _layer_raws(None, name, entries)
            records.append(weights_only_record(name, _hint(name, raws), raws))
            continue
        for scope, scoped in scopes.items():
            label = name if scope == name else f"{name}/{scope}"
            raws = _layer_raws(None, scope, scoped)
            records.append(weights_only_record(label, _hint(scope, raws), raws))
    return records


def _read_weights_only(path: str, h5: H5Group) -> tuple[ModelIndex, bool]:
    version = _text(h5.attrs.get("keras_version", "")) or None
    layer_names = _names(h5.attrs, "layer_names")
    tensors = _Tensors(path)
    layers = _records_without_config(tensors, h5, layer_names)
    for layer in layers:
        layer.kind_inferred = True
    index = ModelIndex(
        format=ModelFormat.LEGACY_WEIGHTS_H5,
        source=os.fspath(path),
        layers=layers,
        name=None,
        writer=writer_name(version),
        has_architecture=False,
        warnings=[WEIGHTS_ONLY_NOTE],
    )
    return index, tensors.needs_handle


def _output_shape(layers: Sequence[LayerRecord], path: str) -> tuple[int | None, ...] | None:
    for layer in layers:
        if layer.path == path:
            return layer.output_shape if isinstance(layer.output_shape, tuple) else None
    return None
