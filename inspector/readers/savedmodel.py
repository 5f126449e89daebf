"""TensorFlow SavedModel directories, read in pure Python (no TensorFlow, no ``protobuf`` package).

What each writer leaves behind (docs/formats.md §4):

* Keras layer metadata (tf_keras 2 ``model.save(dir)``: ``keras_metadata.pb``; TF <= 2.4: the same
  JSON in ``saved_model.pb`` ``SavedUserObject.metadata``). The root node's JSON is the full model
  config, so classes, configs, shapes and connectivity are exact; variables are found by walking the
  checkpoint object graph from the root through ``layer-<n>`` children (a container's ``layers``
  order) down to each layer's variable children.
* No metadata (Keras 3 ``model.export``, ``tf.saved_model.save(keras3_model)``): only variable
  ``full_name`` s (``<layer path>/<short name>``), shapes, ``trainable`` (SavedVariable field 3) and the
  serving signature survive. Layers are grouped by ``full_name`` prefix and their kinds inferred.

Optimizer state (slots, iterations) and ``keras_api/metrics`` counters are variables too; they are
never model weights and are left out.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptModelError, UnsafeModelError, UnsupportedFormatError
from ..keras_config import ModelGraph, load_config_json, parse_model_config
from ..kinds import canonical_weight_name, variable_names
from ..layouts import conv_kinds_matching, input_count
from ..records import FILTER_KINDS, LayerKind, LayerRecord, ModelFormat, ModelIndex, Shape
from .build import records_from_graph, weights_only_record
from .h5tensors import RawTensor
from .protowire import Message, WireError
from .tensorbundle import OBJECT_GRAPH_KEY, TensorBundle, TrackableNode

__all__ = ["read_savedmodel"]

VARIABLE_ATTRIBUTE = "VARIABLE_VALUE"
CONTAINER_IDENTIFIERS = frozenset({"_tf_keras_network", "_tf_keras_sequential", "_tf_keras_model"})
# Children of a tf.keras layer node that are bookkeeping views, not sub-layers or own variables.
_BOOKKEEPING_CHILDREN = frozenset({
    "variables", "trainable_variables", "non_trainable_variables", "regularization_losses", "keras_api",
    "layers", "metrics", "layer_regularization_losses", "layer_metrics", "_self_saveable_object_factories",
    "optimizer", "signatures", "_all_variables",
})
_LAYER_CHILD = re.compile(r"layer-(\d+)")
#: Largest ``saved_model.pb`` / ``keras_metadata.pb`` read into memory (TensorFlow caps protobufs at 2 GB;
#: docs/limits.md).
MAX_PROTO_BYTES = 1 * 2**30
EXPECTED = "expected a SavedModel directory as TensorFlow writes it"


def _checked_file(root: str, relative: str, required: bool = True) -> str | None:
    """``root/relative`` after refusing what a hostile folder could hold instead of a plain file: a link
    leading outside the SavedModel folder (or in a loop), a FIFO or device (reading it would block), a folder.
    Returns None for a missing optional file."""
    path = os.path.join(root, relative)
    try:
        real = os.path.realpath(path, strict=True)
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        if not required:
            return None
        raise CorruptModelError(f"the SavedModel has no {relative}; {EXPECTED}. Received: {root}") from None
    except (OSError, RuntimeError) as exc:  # ELOOP and friends
        raise CorruptModelError(f"{relative} in the SavedModel cannot be resolved ({type(exc).__name__}: {exc}); a "
                                f"symlink loop? {EXPECTED}. Received: {root}") from exc
    base = os.path.realpath(root)
    if os.path.commonpath([base, real]) != base:
        raise UnsafeModelError(f"{relative} in the SavedModel is a link to {real}, outside the model folder; links "
                               f"out of the folder are refused (docs/limits.md); {EXPECTED}. Received: {root}")
    if not stat.S_ISREG(mode):
        raise CorruptModelError(f"{relative} in the SavedModel is not a regular file; {EXPECTED}. Received: {root}")
    return path


def _read_proto(path: str, root: str) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(MAX_PROTO_BYTES + 1)
    if len(data) > MAX_PROTO_BYTES:
        raise CorruptModelError(f"{os.path.basename(path)} is larger than {MAX_PROTO_BYTES:,} bytes, beyond the "
                                f"limit of docs/limits.md; {EXPECTED}. Received: {root}")
    return data


# -- saved_model.pb --------------------------------------------------------------------------------


@dataclass
class SavedNode:
    """What saved_model.pb says about one object: its children, Keras identity and variable flags."""

    children: list[tuple[str, int]]
    identifier: str | None = None  # SavedUserObject.identifier
    metadata: str = ""  # SavedUserObject.metadata (Keras JSON in TF <= 2.4 files)
    is_variable: bool = False
    trainable: bool | None = None  # SavedVariable.trainable


@dataclass
class SavedModelInfo:
    tensorflow_version: str | None
    nodes: list[SavedNode]
    inputs: list[Shape]
    outputs: list[Shape | None]


def _signature_shapes(tensors: Mapping[str, Message]) -> list[Shape | None]:
    shapes: list[Shape | None] = []
    for name in sorted(tensors):
        shape_msg = tensors[name].message(3)
        if shape_msg.bool(3):  # unknown_rank
            shapes.append(None)
            continue
        dims = [d.int64(1) for d in shape_msg.messages(2)]
        shapes.append(tuple(None if d < 0 else d for d in dims))
    return shapes


def _read_saved_model_pb(path: str) -> SavedModelInfo:
    pb_path = _checked_file(path, "saved_model.pb")
    assert pb_path is not None
    try:
        saved_model = Message(_read_proto(pb_path, path))
        meta_graphs = saved_model.messages(2)
        if not meta_graphs:
            raise CorruptModelError(
                f"saved_model.pb holds no MetaGraph; the SavedModel is damaged. Received: {path}")
        meta_graph = meta_graphs[0]
        version = meta_graph.message(1).string(5) or None
        nodes: list[SavedNode] = []
        for obj in meta_graph.message(7).messages(1):
            node = SavedNode(children=obj.references(1))
            if obj.has(4):
                user = obj.message(4)
                node.identifier = user.string(1)
                node.metadata = user.string(3)
            if obj.has(7):
                node.is_variable = True
                variable = obj.message(7)
                node.trainable = variable.bool(3)  # proto3: an absent bool is False
            nodes.append(node)
        signatures = meta_graph.map_entries(5)
        serving = signatures.get("serving_default") or next(
            (sig for name, sig in sorted(signatures.items()) if not name.startswith("__")), None)
        inputs = [s for s in _signature_shapes(serving.map_entries(1)) if s is not None] if serving else []
        outputs = _signature_shapes(serving.map_entries(2)) if serving else []
    except (WireError, UnicodeDecodeError) as exc:
        raise CorruptModelError(
            f"saved_model.pb is not a valid SavedModel protobuf ({exc}); the file is damaged or truncated. "
            f"Received: {path}") from exc
    return SavedModelInfo(version, nodes, inputs, outputs)


def _read_keras_metadata(path: str) -> dict[int, tuple[str, str]] | None:
    """``keras_metadata.pb`` (SavedMetadata ``nodes=1 {node_id=2, identifier=4, metadata=5}``) by node id."""
    meta_path = _checked_file(path, "keras_metadata.pb", required=False)
    if meta_path is None:
        return None
    try:
        saved = Message(_read_proto(meta_path, path))
        return {node.int(2): (node.string(4), node.string(5)) for node in saved.messages(1)}
    except (WireError, UnicodeDecodeError) as exc:
        raise CorruptModelError(
            f"keras_metadata.pb is not a valid SavedMetadata protobuf ({exc}); the file is damaged. "
            f"Received: {path}") from exc


# -- the checkpoint object graph -------------------------------------------------------------------


@dataclass
class Variable:
    """A checkpointed variable: its object-graph node, key, full name and trainable flag."""

    node_id: int
    key: str
    full_name: str
    trainable: bool | None


def _pair_graphs(saved: Sequence[SavedNode], ckpt: Sequence[TrackableNode]) -> dict[int, int]:
    """Checkpoint node id -> saved_model.pb node id, by walking both graphs from the root by child name.

    Restoring a checkpoint matches objects the same way, so this does not rely on the two graphs
    numbering their nodes alike (they do in every file seen, but nothing promises it).
    """
    if not saved or not ckpt:
        return {}
    pairs = {0: 0}
    queue = [0]
    while queue:
        ckpt_id = queue.pop()
        saved_children = dict(saved[pairs[ckpt_id]].children)
        for name, child in ckpt[ckpt_id].children:
            target = saved_children.get(name)
            if target is None or child in pairs or child >= len(ckpt) or target >= len(saved):
                continue
            pairs[child] = target
            queue.append(child)
    return pairs


def _not_a_weight(key: str, full_name: str) -> str | None:
    """Why a checkpoint variable is not a model weight (optimizer, metric, RNG state), or None."""
    if ".OPTIMIZER_SLOT" in key or key.startswith(("optimizer/", "save_counter/")):
        return "optimizer"
    if key.startswith("keras_api/metrics/") or "/keras_api/metrics/" in key:
        return "metric"
    if full_name.rsplit("/", 1)[-1] == "seed_generator_state":
        # Keras 3 SeedGenerator state (Dropout, noise layers): in model.variables, not in count_params.
        return "random-generator state"
    return None


class _Checkpoint:
    """The variables of a SavedModel's checkpoint, with what saved_model.pb adds about them."""

    def __init__(self, bundle: TensorBundle, saved: SavedModelInfo) -> None:
        self.bundle = bundle
        self.nodes = bundle.object_graph() or []
        self.to_saved = _pair_graphs(saved.nodes, self.nodes)
        self.saved = saved
        slot_ids = {slot for node in self.nodes for _, _, slot in node.slot_variables}
        self.variables: dict[int, Variable] = {}
        self.skipped: dict[str, int] = {}
        for node in self.nodes:
            for name, full_name, key in node.attributes:
                if name != VARIABLE_ATTRIBUTE or key not in bundle.entries:
                    continue
                reason = "optimizer" if node.node_id in slot_ids else _not_a_weight(key, full_name)
                if reason is not None:
                    self.skipped[reason] = self.skipped.get(reason, 0) + 1
                    continue
                saved_node = self.saved_node(node.node_id)
                trainable = saved_node.trainable if saved_node is not None else None
                self.variables[node.node_id] = Variable(node.node_id, key, full_name, trainable)
        self.keras_trainable_lists = self._apply_root_trainable_lists()
        if not self.nodes:  # a TF1-style checkpoint: keys are the variable names
            for key, entry in bundle.entries.items():
                if key != OBJECT_GRAPH_KEY and entry.decodable and not _not_a_weight(key, key):
                    self.variables[len(self.variables)] = Variable(-1, key, key, None)

    def _apply_root_trainable_lists(self) -> bool:
        """Use the root's ``trainable_variables`` / ``non_trainable_variables`` lists when it has them.

        Keras 3 ``model.export`` records them from Keras's own view. The tf.Variable flag (SavedVariable
        field 3) is fixed when the variable is created, so it still says trainable for a frozen layer.
        """
        if not self.nodes:
            return False
        root_children = dict(self.nodes[0].children)
        found = False
        for list_name, flag in (("trainable_variables", True), ("non_trainable_variables", False)):
            list_id = root_children.get(list_name)
            if list_id is None or list_id >= len(self.nodes):
                continue
            found = True
            for _, var_id in self.nodes[list_id].children:
                if var_id in self.variables:
                    self.variables[var_id].trainable = flag
        return found

    def saved_node(self, ckpt_id: int) -> SavedNode | None:
        saved_id = self.to_saved.get(ckpt_id)
        return None if saved_id is None else self.saved.nodes[saved_id]

    def identifier(self, ckpt_id: int) -> str | None:
        node = self.saved_node(ckpt_id)
        return None if node is None else node.identifier

    def raw(self, variable: Variable, stored_name: str | None, trainable: bool | None) -> RawTensor:
        entry = self.bundle.entries[variable.key]
        if not entry.decodable or entry.dtype == "string":
            raise UnsupportedFormatError(
                f"variable {variable.full_name!r} is stored as {entry.dtype}"
                f"{' (partitioned)' if entry.sliced else ''}, which this reader cannot decode; expected "
                f"unpartitioned numeric variables. Received: {self.bundle.index_path}")
        loader = self.bundle.loader(variable.key)
        return RawTensor(stored_name, entry.shape, entry.dtype, variable.key, loader, trainable)


# -- with Keras metadata ---------------------------------------------------------------------------


def _untuple(value: Any) -> Any:
    """tf.keras metadata spells tuples ``{"class_name": "__tuple__", "items": [...]}``; make them lists."""
    if isinstance(value, dict):
        if value.get("class_name") == "__tuple__" and "items" in value:
            return [_untuple(v) for v in value["items"]]
        return {k: _untuple(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untuple(v) for v in value]
    return value


class _MetadataIndexer:
    """Layers of a model whose Keras metadata survived: config graph + object-graph walk."""

    def __init__(self, ckpt: _Checkpoint, metadata: Mapping[int, tuple[str, str]], path: str) -> None:
        self.ckpt = ckpt
        self.metadata = metadata  # saved_model.pb node id -> (identifier, JSON)
        self.path = path
        self._json: dict[int, dict[str, Any]] = {}
        self.used: set[int] = set()

    def json_of(self, ckpt_id: int) -> dict[str, Any] | None:
        saved_id = self.ckpt.to_saved.get(ckpt_id)
        if saved_id is None or saved_id not in self.metadata:
            return None
        if saved_id not in self._json:
            value = load_config_json(self.metadata[saved_id][1] or "{}",
                                     f"the Keras metadata of object {saved_id}", self.path)
            self._json[saved_id] = _untuple(value) if isinstance(value, dict) else {}
        return self._json[saved_id]

    def is_container(self, ckpt_id: int) -> bool:
        saved_id = self.ckpt.to_saved.get(ckpt_id)
        identifier = self.metadata.get(saved_id, ("", ""))[0] if saved_id is not None else ""
        return identifier in CONTAINER_IDENTIFIERS

    def layer_nodes(self, ckpt_id: int, prefix: str, out: dict[str, int], seen: set[int] | None = None) -> None:
        """Map layer paths (as the config parser spells them) to checkpoint node ids, recursively (each node
        once: a damaged graph whose container lists itself must not recurse for ever)."""
        seen = set() if seen is None else seen
        if ckpt_id in seen or len(seen) > len(self.ckpt.nodes):
            return
        seen.add(ckpt_id)
        numbered = []
        for name, child in self.ckpt.nodes[ckpt_id].children:
            match = _LAYER_CHILD.fullmatch(name)
            if match:
                numbered.append((int(match.group(1)), child))
        for _, child in sorted(numbered):
            info = self.json_of(child)
            if info is None:
                continue
            name = str(info.get("name") or (info.get("config") or {}).get("name") or "")
            if not name:
                continue
            out.setdefault(prefix + name, child)
            if self.is_container(child) and child < len(self.ckpt.nodes):
                self.layer_nodes(child, f"{prefix}{name}/", out, seen)

    def variables_under(self, ckpt_id: int, prefix: str, container: bool,
                        seen: set[int]) -> list[tuple[str, int]]:
        """(stored name, node id) of a layer's variables: its own, then its sub-layers' (``cell/kernel``)."""
        found: list[tuple[str, int]] = []
        subs: list[tuple[str, int]] = []
        for name, child in self.ckpt.nodes[ckpt_id].children:
            if child in seen or name in _BOOKKEEPING_CHILDREN or name.startswith("__"):
                continue
            if child in self.ckpt.variables:
                seen.add(child)
                found.append((prefix + name.lstrip("_"), child))
                continue
            if container and _LAYER_CHILD.fullmatch(name.replace("layer_with_weights-", "layer-")):
                continue  # a nested model's layers are records of their own
            identifier = self.ckpt.identifier(child) or ""
            if (identifier.startswith("_tf_keras_") and identifier != "_tf_keras_metric") or identifier in (
                    "trackable_list_wrapper", "trackable_dict_wrapper"):
                subs.append((name, child))
        for name, child in subs:
            seen.add(child)
            found.extend(self.variables_under(child, f"{prefix}{name.lstrip('_')}/", False, seen))
        return found

    def build(self, graph: ModelGraph, warnings: list[str]) -> list[LayerRecord]:
        nodes: dict[str, int] = {}
        self.layer_nodes(0, "", nodes)
        tensors: dict[str, list[RawTensor]] = {}
        seen: set[int] = set()
        missing = []
        for layer in graph.layers:
            node_id = nodes.get(layer.path)
            if node_id is None:
                if not layer.is_container:
                    missing.append(layer.path)
                continue
            found = self.variables_under(node_id, "", layer.is_container, seen)
            raws = []
            for stored, var_id in found:
                variable = self.ckpt.variables[var_id]
                self.used.add(var_id)
                # A frozen layer keeps its tf.Variables' trainable=True; Keras counts them non-trainable.
                trainable = variable.trainable if layer.trainable else False
                raws.append(self.ckpt.raw(variable, stored, trainable))
            if raws:
                tensors[layer.path] = _in_save_order(layer.class_name, layer.config, raws)
        if missing:
            warnings.append(f"{len(missing)} layer(s) of the config were not found in the object graph, "
                            f"e.g. {missing[0]!r}; their weights are listed by variable name")
        return records_from_graph(graph, tensors)


def _in_save_order(class_name: str, config: Mapping[str, Any], raws: list[RawTensor]) -> list[RawTensor]:
    """Reorder a layer's variables to Keras's save order (docs/formats.md §1.4) when the names allow it."""
    short = class_name.rsplit(">", 1)[-1]
    names = [canonical_weight_name(short, r.stored_name or "") for r in raws]
    order = variable_names(short, config, len(raws))
    if order is None or sorted(order) != sorted(names) or len(set(names)) != len(names):
        return raws
    by_name = dict(zip(names, raws, strict=True))
    return [by_name[n] for n in order]


# -- without Keras metadata ------------------------------------------------------------------------


def _variable_order(variables: Sequence[Variable]) -> list[Variable]:
    """Model order: ``variables/<i>`` keys (Keras 3 export) by i, otherwise object-graph order."""
    numbered = re.compile(r"variables/(\d+)/\.ATTRIBUTES/")
    if variables and all(numbered.match(v.key) for v in variables):
        return sorted(variables, key=lambda v: int(numbered.match(v.key).group(1)))  # type: ignore[union-attr]
    return sorted(variables, key=lambda v: (v.node_id, v.key))


def _in_channels(record: LayerRecord) -> int | None:
    """How many channels a layer reads, from its weights (for checking the previous layer's kind)."""
    names = {w.name: w for w in record.weights}
    if record.kind is LayerKind.NORM:
        ref = names.get("moving_mean") or names.get("gamma") or names.get("beta")
        return ref.shape[-1] if ref is not None and ref.shape else None
    kernel = record.kernel
    if record.kind in FILTER_KINDS and kernel is not None and len(kernel.shape) >= 2:
        return input_count(record.kind, kernel.shape)  # groups unknown here: 1
    return None


def _refined_conv_class(record: LayerRecord, next_in: int | None,
                        stored_kernel_name: str | None) -> str | None:
    """Tell regular, depthwise and transposed convolutions apart, which a kernel shape alone cannot.

    Evidence, strongest first: the bias length (regular ``C_out = K[-1]``, depthwise ``C_in·M =
    K[-2]·K[-1]``, transposed ``C_out = K[-2]``); the channel count the next layer reads; the attribute
    name in ``tf.saved_model.save`` files (Keras 3 Conv/Dense hold ``_kernel``, DepthwiseConv ``kernel``).
    """
    kernel = record.weight("kernel")
    if record.kind is not LayerKind.CONV or kernel is None:
        return None
    rank = len(kernel.shape) - 2
    bias = record.bias
    evidence_list = [bias.shape[0]] if bias is not None and bias.shape else []
    if next_in:
        evidence_list.append(next_in)
    for evidence in evidence_list:
        matching = conv_kinds_matching(kernel.shape, evidence)
        if len(matching) == 1:
            if matching[0] is LayerKind.DEPTHWISE and rank in (1, 2):
                return f"DepthwiseConv{rank}D"
            if matching[0] is LayerKind.TRANSPOSE:
                return f"Conv{rank}DTranspose"
            return None
    if stored_kernel_name == "kernel" and rank in (1, 2):
        return f"DepthwiseConv{rank}D"
    return None


def _records_without_metadata(ckpt: _Checkpoint, variables: list[Variable]) -> list[LayerRecord]:
    """Weights-only records, one per ``full_name`` prefix, kinds inferred from names and shapes."""
    if any(v.key.startswith("variables/") for v in variables):
        # Keras 3 export stores every variable twice; `variables/<i>` is model.variables order.
        variables = [v for v in variables if not v.key.startswith("_all_variables/")]
    scopes: dict[str, list[tuple[str, Variable]]] = {}
    for variable in _variable_order(variables):
        layer_path, short_name = _split_variable_path(variable.full_name)
        scopes.setdefault(layer_path, []).append((short_name, variable))
    groups: dict[str, list[tuple[str, Variable]]] = {}
    for path, members in scopes.items():
        runs = _split_runs(members)
        if len(runs) == 1:
            groups[path] = members
        else:
            # One name scope holding several layers' variables (layers created inside a subclassed
            # model's call): split where a new layer's variables begin and number the parts.
            for i, run in enumerate(runs):
                groups[f"{path}#{i}"] = run
    records = []
    kernel_attr: dict[str, str | None] = {}
    for path, members in groups.items():
        raws = [ckpt.raw(v, name, v.trainable) for name, v in members]
        record = weights_only_record(path, None, raws)
        if record.class_name is None:
            # Keep sub-layer prefixes (``forward_layer/cell/kernel``): short names alone would collide.
            record.weights = [dataclasses.replace(ref, name=raw.stored_name or ref.name)
                              for ref, raw in zip(record.weights, raws, strict=True)]
        records.append(record)
        kernel = next((v for name, v in members if name == "kernel"), None)
        kernel_attr[path] = _attribute_name(kernel.key) if kernel is not None else None
    # The channels the next layer with weights reads, for each record: one backward pass (a forward search
    # from every record would be quadratic in the depth).
    next_in: list[int | None] = [None] * len(records)
    seen: int | None = None
    for i in range(len(records) - 1, -1, -1):
        next_in[i] = seen
        channels = _in_channels(records[i])
        if channels is not None:
            seen = channels
    for i, record in enumerate(records):
        better = _refined_conv_class(record, next_in[i], kernel_attr.get(record.path))
        if better:
            raws = [ckpt.raw(v, name, v.trainable) for name, v in groups[record.path]]
            refined = weights_only_record(record.path, better, raws)
            refined.kind_inferred = True
            records[i] = refined
    return records


_LEADING_NAMES = frozenset({"kernel", "depthwise_kernel", "embeddings", "gamma", "alpha", "scale"})


def _split_runs(members: list[tuple[str, Variable]]) -> list[list[tuple[str, Variable]]]:
    """Split one scope's variables into layers when the scope repeats a name (so it must hold several).

    A repeated name, or a name that opens a layer (``kernel``, ``gamma``, ...) after other variables,
    starts the next layer. A scope without repeats stays one layer: a custom layer may well own a
    ``kernel`` and a ``gamma``.
    """
    short_names = [name for name, _ in members]
    if len(set(short_names)) == len(short_names):
        return [members]
    runs: list[list[tuple[str, Variable]]] = []
    current: list[tuple[str, Variable]] = []
    for name, variable in members:
        names = {n for n, _ in current}
        opens = name in _LEADING_NAMES or (name == "beta" and "gamma" not in names) or (
            name == "moving_mean" and not names & {"gamma", "beta"})
        if current and (name in names or opens):
            runs.append(current)
            current = []
        current.append((name, variable))
    runs.append(current)
    return runs


_RNN_CELL = re.compile(r"(?:simple_rnn|lstm|gru|conv_lstm\dd)_cell(?:_\d+)?")
_DIRECTION = re.compile(r"(forward|backward)_.+")


def _split_variable_path(full_name: str) -> tuple[str, str]:
    """Layer path and weight name from a Keras 3 ``variable.path``.

    A recurrent layer's weights live in its cell (``lstm/lstm_cell/kernel``) and a Bidirectional's in
    its two halves (``bi/forward_lstm/lstm_cell/kernel``); fold them into the layer, with the weight
    names the other formats use (``cell/kernel``, ``forward_layer/cell/kernel``).
    """
    parts = full_name.split("/")
    if len(parts) == 1:
        return full_name, full_name
    layer, name = parts[:-1], [parts[-1]]
    if len(layer) >= 2 and _RNN_CELL.fullmatch(layer[-1]):
        layer, name = layer[:-1], ["cell", *name]
        if len(layer) >= 2 and (match := _DIRECTION.fullmatch(layer[-1])):
            layer, name = layer[:-1], [f"{match.group(1)}_layer", *name]
    return "/".join(layer), "/".join(name)


def _attribute_name(key: str) -> str | None:
    """The Python attribute holding a variable, from a ``.../<attr>/.ATTRIBUTES/VARIABLE_VALUE`` key."""
    parts = key.split("/.ATTRIBUTES/", 1)[0].rsplit("/", 1)
    return parts[-1] if len(parts) == 2 and not parts[-1].isdigit() else None


# -- entry point -----------------------------------------------------------------------------------


def _metadata_nodes(path: str, saved: SavedModelInfo) -> dict[int, tuple[str, str]] | None:
    """Keras metadata by saved_model.pb node id: keras_metadata.pb, else the JSON TF <= 2.4 embedded."""
    from_file = _read_keras_metadata(path)
    if from_file:
        return from_file
    embedded = {i: (n.identifier or "", n.metadata) for i, n in enumerate(saved.nodes) if n.metadata}
    return embedded or None


def _root_config(metadata: Mapping[int, tuple[str, str]], path: str) -> dict[str, Any] | None:
    if 0 not in metadata:
        return None
    root = load_config_json(metadata[0][1] or "{}", "the root Keras metadata", path)
    if not isinstance(root, dict) or "config" not in root:
        return None
    return _untuple(root)


def read_savedmodel(path: str) -> ModelIndex:
    """Index a SavedModel directory without TensorFlow."""
    path = os.fspath(path)
    saved = _read_saved_model_pb(path)
    _checked_file(path, os.path.join("variables", "variables.index"))
    bundle = TensorBundle(os.path.join(path, "variables", "variables"))
    for shard_id in sorted({e.shard_id for e in bundle.entries.values() if not e.sliced}):
        _checked_file(path, os.path.relpath(bundle.shard_path(shard_id), path))
    ckpt = _Checkpoint(bundle, saved)
    warnings: list[str] = []
    metadata = _metadata_nodes(path, saved)
    root = _root_config(metadata, path) if metadata else None
    graph = parse_model_config(root) if root is not None else None
    writer = f"TensorFlow {saved.tensorflow_version}" if saved.tensorflow_version else "TensorFlow"
    if graph is not None and graph.has_layer_list and ckpt.nodes:
        assert metadata is not None
        indexer = _MetadataIndexer(ckpt, metadata, path)
        layers = indexer.build(graph, warnings)
        leftovers = [v for k, v in ckpt.variables.items() if k not in indexer.used]
        if leftovers:
            # Variables outside the config's layers (custom-layer internals, extra tracked objects).
            layers.extend(_records_without_metadata(ckpt, leftovers))
            warnings.append(f"{len(leftovers)} variable(s) are not attached to a layer of the config; they "
                            "are listed by variable name with inferred kinds")
        keras_version = root.get("keras_version") if root else None
        writer += f", tf.keras {keras_version}" if keras_version else ", tf.keras"
        by_path = {layer.path: layer for layer in layers}
        outputs: list[Shape | None] = []
        for p in graph.output_paths:
            shape = by_path[p].output_shape if p in by_path else None
            outputs.append(shape if isinstance(shape, tuple) else None)
        if len(outputs) == len(saved.outputs):
            outputs = [o if o is not None else s for o, s in zip(outputs, saved.outputs, strict=True)]
        index = ModelIndex(
            format=ModelFormat.SAVEDMODEL, source=path, layers=layers, name=graph.name, writer=writer,
            model_config=root, has_architecture=True,
            input_shapes=graph.input_shapes or list(saved.inputs), output_shapes=outputs, warnings=warnings)
    else:
        layers = _records_without_metadata(ckpt, list(ckpt.variables.values()))
        if not layers:
            raise UnsupportedFormatError(
                "the SavedModel has no variables we can read as model weights; expected a SavedModel of a "
                f"Keras/TensorFlow model with a variables/ checkpoint. Received: {path}")
        index = ModelIndex(
            format=ModelFormat.SAVEDMODEL, source=path, layers=layers, name=None, writer=writer,
            has_architecture=False, input_shapes=list(saved.inputs), output_shapes=list(saved.outputs),
            warnings=warnings)
        index.warnings.append("no Keras metadata in this SavedModel: layer classes are inferred from weight "
                              "names and shapes")
        if not ckpt.keras_trainable_lists and ckpt.nodes:
            index.warnings.append("trainable flags are those of the TensorFlow variables, which do not record "
                                  "layers frozen with trainable=False (they still show as trainable)")
    if ckpt.skipped:
        parts = ", ".join(f"{count} {reason}" for reason, count in sorted(ckpt.skipped.items()))
        index.warnings.append(f"left out {sum(ckpt.skipped.values())} checkpoint variable(s) that are not model "
                              f"weights ({parts})")
    return index
