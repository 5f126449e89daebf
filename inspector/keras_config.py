"""Parse a Keras model config (Keras 3 or Keras 2 spelling) into a flat, ordered layer graph.

The same parser serves ``.keras`` (``config.json``), legacy ``.h5`` (``model_config``), SavedModel
metadata (``keras_metadata.pb`` / ``saved_model.pb``) and live models (``serialize_keras_object``).
Facts used here are in docs/formats.md §1.3 and §1.5:

* Functional ``model.layers`` includes InputLayers; Sequential excludes its automatic InputLayer.
* Raw-op nodes (``module`` under ``keras.src.ops``) are not layers: no weights, no HDF5 group.
* A ``.keras`` file names each layer's HDF5 group ``snake_case(class)`` with ``_1``, ``_2`` ... per container.
* A layer's output shape is recorded by its consumers (``__keras_tensor__`` shapes), so it is known
  exactly for every layer that feeds another one; the rest come from :mod:`inspector.shapes`.

Configs come from strangers, so :func:`load_config_json` bounds their size and nesting before they are
parsed, :func:`parse_model_config` bounds the layer count, and every step is linear in the number of
layers (docs/limits.md). A config the parser cannot make sense of is a :class:`CorruptModelError`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CorruptModelError
from .kinds import CONTAINER_CLASSES, is_raw_op, snake_case
from .records import Shape

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "MAX_LAYERS",
    "ConfigLayer",
    "ModelGraph",
    "json_depth",
    "load_config_json",
    "parse_model_config",
]

#: Largest model config accepted (bytes of JSON). A 3,751-layer model's config is about 3 MB.
MAX_CONFIG_BYTES = 256 * 2**20
#: Deepest JSON nesting accepted. Keras configs nest about 6 levels per nested model; the parser and
#: ``copy.deepcopy`` recurse per level, so this stays well inside Python's recursion limit.
MAX_CONFIG_DEPTH = 200
#: Most layers (nested models' layers included) a config may list.
MAX_LAYERS = 200_000


def json_depth(value: Any, limit: int = MAX_CONFIG_DEPTH) -> int:
    """Nesting depth of a JSON value (iterative; stops counting past ``limit``)."""
    deepest = 0
    level: list[Any] = [value] if isinstance(value, (dict, list)) else []
    while level:  # breadth first, one list per level: no per-item tuples
        deepest += 1
        if deepest > limit:
            return deepest
        following: list[Any] = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, (dict, list)):
                    following.append(child)
        level = following
    return deepest


# Bytes that matter for nesting: '"' and the brackets; and the depth step of each bracket.
_SPECIAL = np.zeros(256, dtype=bool)
_SPECIAL[[ord(c) for c in '"[]{}']] = True
_STEP = np.zeros(256, dtype=np.int64)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_DEPTH_CHUNK = 1 << 24


def _text_depth(data: bytes) -> int | None:
    """Nesting depth of *valid* JSON text, from its brackets outside strings; None when the text escapes
    a quote (then strings cannot be found by counting quotes, and the caller walks the parsed value).

    Equal to :func:`json_depth` of the parsed value, in vectorised passes over the bytes instead of a
    Python loop over every container (a deep model's config has hundreds of thousands).
    """
    if b'\\"' in data:
        return None
    arr = np.frombuffer(data, dtype=np.uint8)
    depth = deepest = inside = 0
    for start in range(0, len(arr), _DEPTH_CHUNK):  # chunks bound the temporary arrays
        chars = arr[start:start + _DEPTH_CHUNK]
        chars = chars[_SPECIAL[chars]]
        if not len(chars):
            continue
        parity = (np.cumsum(chars == ord('"'), dtype=np.int64) + inside) & 1  # 1 inside a string
        inside = int(parity[-1])
        run = np.cumsum(np.where(parity == 0, _STEP[chars], 0)) + depth
        deepest = max(deepest, int(run.max()))
        depth = int(run[-1])
    return deepest


def load_config_json(data: bytes | str, what: str, received: str,
                     expected: str = "expected a Keras model config") -> Any:
    """``json.loads`` with the limits of docs/limits.md; ``what`` names the document in errors, ``expected``
    says what is accepted."""
    if len(data) > MAX_CONFIG_BYTES:
        raise CorruptModelError(f"{what} is {len(data):,} bytes, more than the {MAX_CONFIG_BYTES:,}-byte limit for "
                                f"a model config (docs/limits.md); {expected}. Received: {received}")
    try:
        value = json.loads(data)
    except RecursionError as exc:
        raise CorruptModelError(f"{what} nests deeper than Python can parse; accepted configs nest at most "
                                f"{MAX_CONFIG_DEPTH} levels (docs/limits.md); {expected}. Received: "
                                f"{received}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptModelError(f"{what} is not valid JSON ({exc}); the file is damaged; {expected}. "
                                f"Received: {received}") from exc
    # The byte scan needs UTF-8 (no ASCII byte inside a multi-byte character); json also reads UTF-16/32.
    if isinstance(data, str):
        depth = _text_depth(data.encode("utf-8", errors="surrogatepass"))
    else:
        depth = _text_depth(data) if json.detect_encoding(data) in ("utf-8", "utf-8-sig") else None
    if (depth if depth is not None else json_depth(value)) > MAX_CONFIG_DEPTH:
        raise CorruptModelError(f"{what} nests deeper than {MAX_CONFIG_DEPTH} levels, more than any Keras config "
                                f"(docs/limits.md); {expected}. Received: {received}")
    return value


@dataclass
class ConfigLayer:
    """One layer (or nested model) as the config describes it."""

    path: str
    class_name: str
    config: dict[str, Any]
    module: str | None = None
    registered_name: str | None = None
    container_path: str = ""  # path of the enclosing nested model ('' at top level)
    group: str | None = None  # HDF5 group name inside the container's 'layers' group (.keras files)
    is_container: bool = False
    trainable: bool = True  # effective: false if the layer or any enclosing model is frozen
    input_shape: Shape | list[Shape] | None = None
    output_shape: Shape | list[Shape] | None = None
    inbound: list[str] = field(default_factory=list)  # producer paths (containers resolved later)
    custom: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class ModelGraph:
    """The flattened layers of a model config, in model order (containers precede their layers)."""

    name: str | None
    class_name: str
    layers: list[ConfigLayer]
    input_shapes: list[Shape] = field(default_factory=list)
    output_paths: list[str] = field(default_factory=list)
    has_layer_list: bool = True  # False for subclassed models, whose config lists no layers

    def leaves(self) -> Iterator[ConfigLayer]:
        return (layer for layer in self.layers if not layer.is_container)

    def by_path(self) -> dict[str, ConfigLayer]:
        return {layer.path: layer for layer in self.layers}


def _shape(value: Any) -> Shape | list[Shape] | None:
    """Normalise a config shape (list, TensorShape dict, list of shapes) to tuples."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if value.get("class_name") == "TensorShape":
            return _shape(value.get("items"))
        if "shape" in value:
            return _shape(value["shape"])
        return None
    if isinstance(value, (list, tuple)):
        # Sizes are plain ints or None (checked first: the Mapping test is an ABC check, slow per item).
        if any(v is not None and type(v) is not int and isinstance(v, (list, tuple, Mapping)) for v in value):
            return [s for s in (_shape(v) for v in value) if s is not None]  # type: ignore[misc]
        # Only integers are sizes; anything else (a tampered string, float or bool) is an unknown size.
        return tuple(v if type(v) is int or (isinstance(v, int) and not isinstance(v, bool)) else None
                     for v in value)
    return None


def _is_custom(entry: Mapping[str, Any]) -> bool:
    module = entry.get("module")
    registered = entry.get("registered_name")
    if registered and ">" in str(registered):
        return True
    if entry.get("class_name") in ("Lambda", "TFOpLambda"):
        return True
    return module is not None and not str(module).startswith(("keras", "tf_keras", "tensorflow"))


def _input_layer_shape(cfg: Mapping[str, Any]) -> Shape | None:
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if shape is None and cfg.get("input_shape") is not None:
        shape = [None, *cfg["input_shape"]]
    if shape is None and cfg.get("shape") is not None:
        shape = [None, *cfg["shape"]]
    result = _shape(shape)
    return result if isinstance(result, tuple) else None


def _walk_tensors(obj: Any) -> list[tuple[str, int, int, Shape | None]]:
    """(layer name, node index, tensor index, shape) for every tensor reference in inbound args, in order.

    Iterative (an explicit stack, pushed in reverse so the order is depth-first as written): one call per
    inbound node rather than one generator frame per nested value.
    """
    found: list[tuple[str, int, int, Shape | None]] = []
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            # Keras 2 spelling: [layer_name, node_index, tensor_index, kwargs]
            if len(item) >= 3 and isinstance(item[0], str) and isinstance(item[1], int) and isinstance(item[2], int):
                found.append((item[0], item[1], item[2], None))
            else:
                stack.extend(reversed(item))
        elif isinstance(item, dict) or (not isinstance(item, (str, int, float)) and item is not None
                                         and isinstance(item, Mapping)):
            if item.get("class_name") == "__keras_tensor__":
                cfg = item.get("config", {})
                hist = cfg.get("keras_history") or [None, 0, 0]
                shape = _shape(cfg.get("shape"))
                found.append((str(hist[0]), int(hist[1]), int(hist[2]), shape if isinstance(shape, tuple) else None))
            else:
                stack.extend(reversed(list(item.values())))
    return found


def _io_names(value: Any) -> list[str]:
    """Names in ``input_layers`` / ``output_layers``: a triple, a list of triples, or a dict of them."""
    if isinstance(value, Mapping):
        return [n for v in value.values() for n in _io_names(v)]
    if isinstance(value, (list, tuple)):
        if len(value) >= 1 and isinstance(value[0], str):
            return [value[0]]
        return [n for v in value for n in _io_names(v)]
    return []


class _Parser:
    def __init__(self) -> None:
        self.layers: list[ConfigLayer] = []
        self.container_outputs: dict[str, list[str]] = {}
        self.container_inputs: dict[str, list[str]] = {}

    def container(self, entry: Mapping[str, Any], prefix: str, inbound: list[str], trainable: bool) -> None:
        class_name = entry.get("class_name", "")
        cfg = entry.get("config") or {}
        trainable = trainable and cfg.get("trainable", True) is not False
        if class_name == "Sequential":
            self.sequential(cfg, prefix, inbound, trainable, entry)
        else:
            self.functional(cfg, prefix, trainable)

    def _new_layer(self, entry: Mapping[str, Any], prefix: str, trainable: bool) -> ConfigLayer:
        cfg = dict(entry.get("config") or {})
        name = str(cfg.get("name") or entry.get("name") or entry.get("class_name", "layer"))
        class_name = str(entry.get("class_name", ""))
        build = entry.get("build_config") or {}
        input_shape = _shape(build.get("input_shape")) if isinstance(build, Mapping) else None
        if input_shape is None:
            input_shape = _shape(cfg.get("build_input_shape")) or _shape(entry.get("build_input_shape"))
        layer = ConfigLayer(
            path=f"{prefix}{name}",
            class_name=class_name,
            config=cfg,
            module=entry.get("module"),
            registered_name=entry.get("registered_name"),
            container_path=prefix.rstrip("/"),
            is_container=_is_container(entry),
            trainable=trainable and cfg.get("trainable", True) is not False,
            input_shape=input_shape,
            custom=_is_custom(entry),
        )
        if class_name == "InputLayer":
            layer.output_shape = _input_layer_shape(cfg)
            layer.input_shape = layer.output_shape
        return layer

    def _assign_groups(self, members: list[ConfigLayer]) -> None:
        used: dict[str, int] = {}
        for layer in members:
            base = snake_case(layer.class_name.rsplit(">", 1)[-1])
            if base in used:
                used[base] += 1
                layer.group = f"{base}_{used[base]}"
            else:
                used[base] = 0
                layer.group = base

    def _add(self, layer: ConfigLayer, entry: Mapping[str, Any], inbound: list[str]) -> None:
        layer.inbound = inbound
        self.layers.append(layer)
        if len(self.layers) > MAX_LAYERS:
            raise _TooManyLayers()
        if layer.is_container:
            self.container(entry, layer.path + "/", inbound, layer.trainable)

    def sequential(self, cfg: Mapping[str, Any], prefix: str, inbound: list[str], trainable: bool,
                   entry: Mapping[str, Any]) -> None:
        entries = list(cfg.get("layers") or [])
        members: list[ConfigLayer] = []
        previous = list(inbound)
        first_input: Shape | None = None
        build_shape = _shape(cfg.get("build_input_shape")) or _shape(
            (entry.get("build_config") or {}).get("input_shape"))
        for sub in entries:
            if sub.get("class_name") == "InputLayer":
                first_input = _input_layer_shape(sub.get("config") or {})
                continue  # Sequential.layers excludes its InputLayer: no row, no HDF5 group
            layer = self._new_layer(sub, prefix, trainable)
            if not members:
                declared = _input_layer_shape(sub.get("config") or {})
                if layer.input_shape is None:
                    layer.input_shape = first_input or declared or (
                        build_shape if isinstance(build_shape, tuple) else None)
            members.append(layer)
            self._add(layer, sub, previous)
            previous = [layer.path]
        self._assign_groups(members)
        # Output shape of layer i is the input shape of layer i+1 (exact).
        for current, following in itertools.pairwise(members):
            if current.output_shape is None and following.input_shape is not None:
                current.output_shape = following.input_shape
        key = prefix.rstrip("/")
        self.container_outputs[key] = [members[-1].path] if members else list(inbound)
        self.container_inputs[key] = [members[0].path] if members else []

    def functional(self, cfg: Mapping[str, Any], prefix: str, trainable: bool) -> None:
        entries = list(cfg.get("layers") or [])
        members: list[ConfigLayer] = []
        by_name: dict[str, ConfigLayer] = {}
        raw_ops: dict[str, list[str]] = {}  # raw op name -> producer names (edges pass through)
        recorded: dict[str, Shape] = {}  # producer name -> output shape seen by a consumer (node 0)
        pending: list[tuple[ConfigLayer, Mapping[str, Any], list[str]]] = []
        for sub in entries:
            sub_cfg = sub.get("config") or {}
            name = str(sub.get("name") or sub_cfg.get("name"))
            producers: list[str] = []
            shapes_in: list[Shape] = []
            for node in sub.get("inbound_nodes") or []:
                for pname, node_index, tensor_index, shape in _walk_tensors(node):
                    if pname not in producers:
                        producers.append(pname)
                    if shape is not None:
                        shapes_in.append(shape)
                        if node_index == 0 and tensor_index == 0 and pname not in recorded:
                            recorded[pname] = shape
                break  # the first call site gives the edges; shared layers have more
            if is_raw_op(sub):
                raw_ops[name] = producers
                continue
            layer = self._new_layer(sub, prefix, trainable)
            if layer.input_shape is None and shapes_in:
                layer.input_shape = shapes_in[0] if len(shapes_in) == 1 else list(shapes_in)
            by_name[name] = layer
            members.append(layer)
            pending.append((layer, sub, producers))
        through: dict[str, list[str]] = {}
        for layer, sub, producers in pending:
            resolved: list[str] = []
            for pname in producers:
                for real in _through_raw_ops(pname, raw_ops, through):
                    if real in by_name and by_name[real].path not in resolved:
                        resolved.append(by_name[real].path)
            self._add(layer, sub, resolved)
        for name, shape in recorded.items():
            if name in by_name and by_name[name].output_shape is None:
                by_name[name].output_shape = shape
        self._assign_groups(members)
        key = prefix.rstrip("/")
        self.container_outputs[key] = [by_name[n].path for n in _io_names(cfg.get("output_layers")) if n in by_name]
        self.container_inputs[key] = [by_name[n].path for n in _io_names(cfg.get("input_layers")) if n in by_name]

    def resolve_container_edges(self) -> None:
        """Point edges at real layers: a consumer of a nested model reads that model's output layers."""
        by = {x.path: x for x in self.layers}
        containers = {layer.path: layer for layer in self.layers if layer.is_container}
        expanded: dict[str, list[str]] = {}
        for layer in self.layers:
            layer.inbound = [p for src in layer.inbound for p in self._expand(src, containers, expanded)]
            # A nested Functional's InputLayers read what the container reads.
            if layer.class_name == "InputLayer" and layer.container_path in containers:
                layer.inbound = list(containers[layer.container_path].inbound)
        for layer in self.layers:
            if layer.is_container:
                outs = self.container_outputs.get(layer.path, [])
                shapes = [by[p].output_shape for p in outs if p in by]
                if layer.output_shape is None and len(shapes) == 1:
                    layer.output_shape = shapes[0]


    def _expand(self, path: str, containers: Mapping[str, ConfigLayer], expanded: dict[str, list[str]]) -> list[str]:
        """A container's real output layers, each container expanded once (memoised, cycle-safe).

        A method, not a closure: a recursive nested function is a reference cycle (it holds its own cell)
        that would keep the whole parse alive until the cyclic collector ran."""
        if path not in containers:
            return [path]
        if path not in expanded:
            expanded[path] = []  # a container that (in a damaged config) outputs itself adds nothing
            out: list[str] = []
            for p in self.container_outputs.get(path, []):
                out.extend(q for q in self._expand(p, containers, expanded) if q not in out)
            expanded[path] = out
        return expanded[path]


def _through_raw_ops(name: str, raw_ops: Mapping[str, list[str]], memo: dict[str, list[str]]) -> list[str]:
    """The layers behind a chain of raw ops (iterative, each op resolved once: no blow-up on shared ops)."""
    if name not in raw_ops:
        return [name]
    if name in memo:
        return memo[name]
    out: list[str] = []
    seen = {name}
    stack = list(reversed(raw_ops[name]))
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in raw_ops:
            stack.extend(reversed(raw_ops[current]))
        elif current not in out:
            out.append(current)
    memo[name] = out
    return out


def _is_container(entry: Mapping[str, Any]) -> bool:
    cfg = entry.get("config") or {}
    return (entry.get("class_name") in CONTAINER_CLASSES and isinstance(cfg.get("layers"), list)) or (
        isinstance(cfg.get("layers"), list) and all(isinstance(x, Mapping) and "class_name" in x
                                                    for x in cfg["layers"])
        and ("input_layers" in cfg or entry.get("class_name") == "Sequential")
    )


class _TooManyLayers(Exception):
    pass


def parse_model_config(model_config: Mapping[str, Any]) -> ModelGraph:
    """Flatten a top-level model config ``{"class_name", "config", ...}`` into a :class:`ModelGraph`.

    Raises :class:`CorruptModelError` for a config that does not describe a model (wrong types, missing
    parts) or is beyond the limits of docs/limits.md.
    """
    if not isinstance(model_config, Mapping):
        raise CorruptModelError(f"the model config is a JSON {type(model_config).__name__}, not an object; "
                                f"expected a Keras model config. Received: {str(model_config)[:80]!r}")
    try:
        return _parse(model_config)
    except _TooManyLayers as exc:
        raise CorruptModelError(f"the model config lists more than {MAX_LAYERS:,} layers, beyond the limit of "
                                f"docs/limits.md; expected a Keras model config. Received: a config of class "
                                f"{str(model_config.get('class_name'))[:40]!r}") from exc
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        raise CorruptModelError(f"the model config does not describe a Keras model we can read "
                                f"({type(exc).__name__}: {str(exc)[:200]}); the file is damaged or of an unknown "
                                f"variant; expected a Keras model config. Received: a config of class "
                                f"{str(model_config.get('class_name'))[:40]!r}"
                                ) from exc


def _parse(model_config: Mapping[str, Any]) -> ModelGraph:
    class_name = str(model_config.get("class_name", ""))
    cfg = model_config.get("config") or {}
    name = cfg.get("name") if isinstance(cfg, Mapping) else None
    if not _is_container(model_config):
        # Subclassed model: the config holds constructor arguments, not layers.
        return ModelGraph(name=name, class_name=class_name, layers=[], has_layer_list=False)
    parser = _Parser()
    parser.container(model_config, "", [], True)
    parser.resolve_container_edges()
    by_path = {layer.path: layer for layer in parser.layers}
    input_shapes: list[Shape] = []
    for path in parser.container_inputs.get("", []):
        shape = by_path[path].output_shape if by_path[path].class_name == "InputLayer" else by_path[path].input_shape
        if isinstance(shape, tuple):
            input_shapes.append(shape)
    if not input_shapes and parser.layers:
        first = next((x for x in parser.layers if not x.is_container), None)
        if first is not None and isinstance(first.input_shape, tuple):
            input_shapes.append(first.input_shape)
    return ModelGraph(
        name=name,
        class_name=class_name,
        layers=parser.layers,
        input_shapes=input_shapes,
        output_paths=[p for out in parser.container_outputs.get("", [])
                      for p in ([out] if out not in by_path or not by_path[out].is_container
                                else parser.container_outputs.get(out, []))],
    )
