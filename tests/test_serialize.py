"""One JSON and one NPZ round trip per result type (inspector.serialize), on the bundled sample model."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector import open_model
from inspector.decompose import Decomposition
from inspector.filters import filters_for_map
from inspector.records import LayerKind
from inspector.serialize import (
    ModelSummary,
    filtersets_from_json,
    filtersets_from_npz,
    filtersets_to_json,
    filtersets_to_npz,
    from_json,
    from_npz,
    jsonable,
    to_json,
    to_npz,
)
from inspector.stats import LayerStats, layer_stats

MODEL = Path(__file__).resolve().parent.parent / "sample_models" / "digits_cnn.keras"


def _same(a: Any, b: Any, skip: tuple[str, ...] = ()) -> None:
    """Dataclass field by field: arrays by value (NaN equal), the rest by ==."""
    for f in fields(a):
        if f.name in skip:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True), f.name
        elif isinstance(x, list) and x and hasattr(x[0], "__dataclass_fields__"):
            for u, v in zip(x, y, strict=True):
                _same(u, v)
        elif hasattr(x, "__dataclass_fields__") and not isinstance(x, type):
            _same(x, y)
        else:
            assert x == y, (f.name, x, y)


def _json_trip(data: dict[str, Any]) -> dict[str, Any]:
    """Through real JSON text, as a file or a pipe would carry it."""
    return json.loads(json.dumps(jsonable(data), allow_nan=False))


_SET_FIELDS = ("layer_path", "kind", "map_index", "kernels", "input_channels", "bias", "stage", "bn_folded",
               "class_name", "n_inputs_total", "sorted_by")


@pytest.mark.parametrize("maps", [[3], [0, 1, 5]])
def test_filterset_round_trips(tmp_path: Path, maps: list[int]) -> None:
    with open_model(MODEL) as index:
        sets = [filters_for_map(index.layer("conv2"), j, index=index, sort="norm") for j in maps]
    back_npz = filtersets_from_npz(filtersets_to_npz(sets, tmp_path / "f", source="m.keras"))
    back_json = filtersets_from_json(_json_trip(filtersets_to_json(sets, source="m.keras")))
    for back in (back_npz, back_json):
        assert len(back) == len(sets)
        for a, b in zip(sets, back, strict=True):
            for name in _SET_FIELDS:
                x, y = getattr(a, name), getattr(b, name)
                assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y, name


def test_filterset_npz_layout_is_the_documented_one(tmp_path: Path) -> None:
    with open_model(MODEL) as index:
        fs = filters_for_map(index.layer("digit_probs"), 2, index=index)
    with np.load(filtersets_to_npz(fs, tmp_path / "one.npz"), allow_pickle=False) as raw:
        assert sorted(raw.files) == sorted(["kernels", "input_channels", "bias", "maps", "bn_folded", "layer",
                                            "kind", "stage", "class_name", "sorted_by", "source", "n_inputs_total"])
        assert raw["kernels"].shape == fs.kernels.shape and raw["bias"].shape == () and int(raw["maps"]) == 2


def _decomposition() -> Decomposition:
    rng = np.random.default_rng(0)
    contributions = rng.normal(size=(3, 4, 4))
    energy = (contributions ** 2).sum(axis=(1, 2))
    pre = contributions.sum(0) + 0.25
    return Decomposition(
        layer_path="block/conv", class_name="Conv2D", kind=LayerKind.CONV, map_index=5, sample_index=1,
        input_channels=np.array([0, 2, 7]), inputs=rng.normal(size=(3, 6, 6)), kernels=rng.normal(size=(3, 3, 3)),
        contributions=contributions, bias=0.25, preactivation=pre, reference=pre + 1e-7, output=np.maximum(pre, 0),
        activation="relu", energy=energy, ranking=np.argsort(-energy), max_abs_error=1e-7, max_rel_error=2e-8,
        activation_error=0.0, bn_folded=True, notes=("a note",))


def test_decomposition_round_trips(tmp_path: Path) -> None:
    dec = _decomposition()
    _same(dec, from_json(Decomposition, _json_trip(to_json(dec))))
    # The NPZ layout (inspector decompose --npz) predates class_name / kind / sample_index / notes.
    back = from_npz(Decomposition, to_npz(dec, tmp_path / "d"))
    _same(dec, back, skip=("class_name", "kind", "sample_index", "notes"))
    with np.load(tmp_path / "d.npz", allow_pickle=False) as raw:
        assert set(raw.files) == set(dec.to_arrays())


@pytest.mark.parametrize("layer", ["conv2", "bn1"])
def test_layer_stats_round_trips(tmp_path: Path, layer: str) -> None:
    with open_model(MODEL) as index:
        ls = layer_stats(index.layer(layer), index=index, channel_matrix=True, fold_bn=layer == "conv2")
    # The JSON is `inspector stats --layer --json`'s, which has no channel-norm matrix; the NPZ keeps it.
    _same(ls, from_json(LayerStats, _json_trip(to_json(ls))), skip=("health",))
    if ls.health is not None:
        _same(ls.health, from_json(LayerStats, _json_trip(to_json(ls))).health, skip=("channel_norms",))
    _same(ls, from_npz(LayerStats, to_npz(ls, tmp_path / "s.npz")))
    assert to_json(from_json(LayerStats, _json_trip(to_json(ls)))) == _json_trip(to_json(ls))


def test_model_summary_round_trips(tmp_path: Path) -> None:
    with open_model(MODEL) as index:
        summary = ModelSummary.from_index(index)
        assert to_json(summary) == index.to_dict()  # the `inspector summary --json` object, unchanged
    # JSON has no tuples (kernel_size and shapes come back as lists): compare the JSON forms.
    assert to_json(from_json(ModelSummary, _json_trip(to_json(summary)))) == _json_trip(to_json(summary))
    assert to_json(from_npz(ModelSummary, to_npz(summary, tmp_path / "s"))) == _json_trip(to_json(summary))


def test_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError):
        to_json(object())
    with pytest.raises(TypeError):
        from_json(dict, {})
