"""Compact selector strings, parsed in one place.

    block2_conv1:0-7,12      layer ``block2_conv1``, maps 0..7 and 12
    conv*:0-3                every layer matching the glob ``conv*``, maps 0..3
    0-3,7   8-   *   all     map selections alone (``8-`` = 8 to the last map)

Ranges are inclusive, as people write them. A selection is resolved against a map count only when
the layer is known, so ``resolve`` is where out-of-range indices are reported.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import LayerNotFoundError, SelectionError, describe_received
from .filters import output_map_count, stages_for
from .records import LayerRecord, ModelIndex

__all__ = ["LayerPlan", "MapSelection", "Selector", "parse_layer_argument", "parse_maps", "parse_selector",
           "plan_maps", "select_layers"]

_ACCEPTED = "indices and inclusive ranges separated by commas, e.g. '0-7,12', '8-' or 'all'"
_ITEM = re.compile(r"^(\d+)(?:-(\d*))?$")


@dataclass(frozen=True)
class MapSelection:
    """Parsed map indices: ``(start, stop_inclusive_or_None)`` pairs in the order written."""

    items: tuple[tuple[int, int | None], ...] = ()  # empty = every map
    text: str = "all"

    @property
    def is_all(self) -> bool:
        return not self.items

    def resolve(self, count: int, *, layer: str = "") -> list[int]:
        """The selected indices for a layer with ``count`` maps; duplicates dropped, order kept."""
        if self.is_all:
            return list(range(count))
        where = f" of layer {layer!r}" if layer else ""
        out: list[int] = []
        seen: set[int] = set()
        for start, stop in self.items:
            end = count - 1 if stop is None else stop
            if start >= count or end >= count:
                bad = start if start >= count else end
                raise SelectionError(
                    f"map index {bad} is out of range{where}; valid maps are 0-{count - 1} ({count} maps). "
                    f"Received: {describe_received(self.text)}")
            for j in range(start, end + 1):
                if j not in seen:
                    seen.add(j)
                    out.append(j)
        return out


def parse_maps(text: str | int | MapSelection | None) -> MapSelection:
    """Parse ``'0-7,12'``; ``None``, ``''``, ``'*'`` and ``'all'`` mean every map."""
    if isinstance(text, MapSelection):
        return text
    if text is None:
        return MapSelection()
    if isinstance(text, int):
        if text < 0:
            raise SelectionError(f"a map index must be >= 0; accepted: {_ACCEPTED}. Received: {text}")
        return MapSelection(((text, text),), str(text))
    raw = str(text).strip()
    if raw.lower() in ("", "*", "all"):
        return MapSelection()
    items: list[tuple[int, int | None]] = []
    for part in raw.split(","):
        part = part.strip()
        match = _ITEM.match(part)
        if not match:
            raise SelectionError(f"malformed map selection {part!r}; accepted: {_ACCEPTED}. "
                                 f"Received: {describe_received(raw)}")
        start = int(match.group(1))
        if match.group(2) is None:
            stop: int | None = start
        elif match.group(2) == "":
            stop = None  # open range "8-"
        else:
            stop = int(match.group(2))
            if stop < start:
                raise SelectionError(f"range {part!r} runs backwards; write the lower index first, e.g. "
                                     f"'{stop}-{start}'. Received: {describe_received(raw)}")
        items.append((start, stop))
    return MapSelection(tuple(items), raw)


@dataclass(frozen=True)
class Selector:
    """``layer:maps``; ``layer`` may be a path, a bare name or a glob pattern."""

    layer: str
    maps: MapSelection


def parse_selector(text: str) -> Selector:
    """Split ``'block2_conv1:0-7,12'`` at its last colon; no colon selects every map."""
    raw = str(text).strip()
    if not raw:
        raise SelectionError(f"empty selector; accepted: 'LAYER' or 'LAYER:MAPS' with MAPS as {_ACCEPTED}. "
                             f"Received: {describe_received(text)}")
    layer, sep, maps = raw.rpartition(":")
    if not sep:
        return Selector(raw, MapSelection())
    if not layer:
        raise SelectionError(f"selector {raw!r} names no layer; accepted: 'LAYER:MAPS', e.g. 'conv1:0-7'. "
                             f"Received: {describe_received(text)}")
    return Selector(layer, parse_maps(maps))


def select_layers(index: ModelIndex, spec: str | Sequence[str | LayerRecord] | None, *,
                  filters_only: bool = True) -> list[LayerRecord]:
    """The layers ``spec`` names, in model order: the one selection policy of the CLI, the batch export
    and the dashboard.

    * ``None``, ``''``, ``'*'`` or ``'all'``: every filter layer (every layer with ``filters_only=False``);
    * a sequence: exact paths or records, in the order given, so names holding ``,`` or ``[`` are never
      read as patterns;
    * a string: an exact path or unique name first (so a layer called ``conv[1]`` or ``a,b`` is that
      layer), else comma-separated globs on the path or the bare name. A part without glob characters
      must name a layer exactly, so typos get close-match hints from ``index.layer``.
    """
    if spec is not None and not isinstance(spec, str):
        chosen: list[LayerRecord] = []
        for item in spec:
            record = item if isinstance(item, LayerRecord) else index.layer(str(item))
            if record not in chosen:
                chosen.append(record)
        return chosen
    pool = index.filter_layers() if filters_only else list(index.layers)
    if spec is None or spec.strip() in ("", "*", "all"):
        return pool
    try:
        return [index.layer(spec)]
    except LayerNotFoundError:
        if not any(ch in spec for ch in "*?[,"):
            raise  # a plain name: keep its close-match suggestions
    chosen = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if any(ch in part for ch in "*?["):
            hits = [layer for layer in pool
                    if fnmatch.fnmatchcase(layer.path, part) or fnmatch.fnmatchcase(layer.name, part)]
            if not hits:
                names = ", ".join(layer.path for layer in pool[:8]) + (", ..." if len(pool) > 8 else "")
                raise SelectionError(f"no filter layer matches {part!r}; filter layers are: {names}. "
                                     f"Received: {describe_received(spec)}")
        else:
            hits = [index.layer(part)]
        chosen.extend(h for h in hits if h not in chosen)
    order = {id(layer): i for i, layer in enumerate(index.layers)}
    return sorted(chosen, key=lambda layer: order[id(layer)])


def parse_layer_argument(layer: str, maps: str | None = None) -> tuple[str, MapSelection]:
    """``inspector filters``' LAYER [MAPS]: the maps may ride on LAYER (``conv2:0-3``) when MAPS is absent."""
    if maps is None and ":" in layer:
        sel = parse_selector(layer)
        return sel.layer, sel.maps
    return layer, parse_maps(maps)


@dataclass(frozen=True)
class LayerPlan:
    """One chosen layer, the stage its maps are counted in, and the selected map indices."""

    layer: LayerRecord
    stage: str | None
    maps: list[int]


def plan_maps(index: ModelIndex, layers: str | Sequence[str | LayerRecord] | None,
              maps: str | int | MapSelection | None = None, *, stage: str | None = None,
              stage_where_offered: bool = False) -> list[LayerPlan]:
    """Layers by :func:`select_layers`, each with its maps resolved, all before any slicing, so an
    out-of-range map fails before a file is written.

    ``stage_where_offered`` (batch export): the stage applies to the layers that have it and the others
    keep their default; otherwise it applies to every layer, and one without it is an error.
    """
    selection = parse_maps(maps)
    plan = []
    for layer in select_layers(index, layers):
        st = stage if not stage_where_offered or stage in stages_for(layer) else None
        plan.append(LayerPlan(layer, st, selection.resolve(output_map_count(layer, st), layer=layer.path)))
    return plan
