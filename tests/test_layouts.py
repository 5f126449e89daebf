"""Contract test of the layout registry (inspector.layouts) and graph rules over the whole layer table.

For every row of ``layer_table.py`` the registry's answers are checked against the real Keras layer
and against an independent, loop-written "full weight" tensor ``W[j, c, *k]`` (map j, input channel
c) built here from the Keras weights and config: map and channel counts, the slices of every map
rebuild ``W``, the consumer slices of every input channel are ``W[maps, c]``, the streamed blocks of
``inspector.stats`` give the same per-map norms as the FilterSets, and the channel layout of the
produced tensor is the one a forward pass records.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from layer_table import LAYER_TABLE, LayerCase

from inspector import LayerKind, open_model
from inspector.filters import filters_for_layer, filters_for_map, input_channel_count, output_map_count
from inspector.graph import bn_fold_plan, produces_channels_first, tensor_channels_first
from inspector.kerascompat import call
from inspector.layouts import conv_kinds_matching, infer_kind, layout_of, map_count
from inspector.stats import filter_health

ROWS = [pytest.param(c, id=c.id) for c in LAYER_TABLE]


def _full_weight(layer: Any) -> np.ndarray:
    """``W[j, c, *k]``: the kernel through which input channel c feeds output map j (zero if it does not)."""
    name = type(layer).__name__
    cfg = layer.get_config()
    w = [np.asarray(a, dtype=np.float64) for a in layer.get_weights()]
    if name == "Dense":
        return w[0].T.copy()
    k = w[0]
    spatial = k.shape[:-2]
    if name.startswith("Separable"):
        d, p = k, w[1].reshape(-1, w[1].shape[-1])
        c_in, mult = d.shape[-2:]
        out = np.zeros((p.shape[-1], c_in, *spatial))
        for j, c, m in itertools.product(range(p.shape[-1]), range(c_in), range(mult)):
            out[j, c] += d[..., c, m] * p[c * mult + m, j]
        return out
    if name.startswith("Depthwise"):
        c_in, mult = k.shape[-2:]
        out = np.zeros((c_in * mult, c_in, *spatial))
        for c, m in itertools.product(range(c_in), range(mult)):
            out[c * mult + m, c] = k[..., c, m]
        return out
    if name.endswith("Transpose"):
        c_out, c_in = k.shape[-2:]
        out = np.zeros((c_out, c_in, *spatial))
        for j, c in itertools.product(range(c_out), range(c_in)):
            out[j, c] = k[..., j, c]
        return out
    groups = int(cfg.get("groups", 1))
    per_in, c_out = k.shape[-2:]
    out = np.zeros((c_out, per_in * groups, *spatial))
    for j, i in itertools.product(range(c_out), range(per_in)):
        g = j // (c_out // groups)
        out[j, g * per_in + i] = k[..., i, j]
    return out


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[Any, Any, np.ndarray]]:
    """Every row as (model, layer, output), random kernels and biases, built once."""
    import keras

    out = {}
    rng = np.random.default_rng(7)
    for case in LAYER_TABLE:
        layer = case.build()
        model = keras.Sequential([keras.Input(case.input_shape), layer])
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
        y = np.asarray(call(model, rng.normal(size=(1, *case.input_shape)).astype("float32")))
        out[case.id] = (model, layer, y)
    return out


@pytest.mark.keras
@pytest.mark.parametrize("case", ROWS)
def test_registry_answers_match_keras(case: LayerCase, built: dict[str, Any]) -> None:
    model, layer, y = built[case.id]
    index = open_model(model)
    rec = index.layer(case.id)
    cf = bool(rec.spec and rec.spec.channels_first)
    full = _full_weight(layer)
    lay = layout_of(rec)
    # Counts: maps are the output's channels, inputs the input's (any rank, either data_format).
    assert lay.n_maps == (y.shape[1] if cf and y.ndim > 2 else y.shape[-1]) == full.shape[0] == output_map_count(rec)
    assert lay.n_inputs == (case.input_shape[0] if cf else case.input_shape[-1]) == full.shape[1]
    assert input_channel_count(rec) == lay.n_inputs
    # The slices of every map rebuild W; channels outside map_channels(j) are exactly zero in W.
    rebuilt = np.zeros_like(full)
    for j in range(lay.n_maps):
        rebuilt[j, lay.map_channels(j)] = lay.map_kernels(j)
    np.testing.assert_allclose(rebuilt, full, rtol=1e-12, atol=1e-12)
    # Consumer slices: what reads input channel c is W[consumer_maps(c), c], and no other map does.
    for c in range(lay.n_inputs):
        maps = lay.consumer_maps(c)
        np.testing.assert_allclose(lay.consumer_kernels(c), full[maps, c], rtol=1e-12, atol=1e-12)
        others = np.setdiff1d(np.arange(lay.n_maps), maps)
        assert not full[others, c].any()
    # Shapes alone (weights-only files) give the same count, and the inferred class family fits.
    kernel = rec.kernel
    assert kernel is not None
    pw = rec.weight("pointwise_kernel")
    assert map_count(rec.kind, kernel.shape, pw.shape if pw is not None else None) == lay.n_maps
    if rec.kind in (LayerKind.CONV, LayerKind.DEPTHWISE, LayerKind.TRANSPOSE):
        assert rec.kind in conv_kinds_matching(kernel.shape, lay.n_maps)
    names = [w.name for w in rec.weights]
    inferred = infer_kind(names, [w.shape for w in rec.weights])[1]
    # Keras 3 names a depthwise kernel "kernel": transposed and depthwise look like a conv from shapes
    # alone (the SavedModel reader refines them with the bias length: conv_kinds_matching above).
    alike = rec.kind in (LayerKind.TRANSPOSE, LayerKind.DEPTHWISE) and "depthwise_kernel" not in names
    expected = LayerKind.CONV if alike else rec.kind
    assert inferred is expected
    # The produced tensor's layout, by the one rule on the index, is what the layer says.
    assert tensor_channels_first(index, rec) is (cf and rec.kind is not LayerKind.DENSE)


@pytest.mark.keras
@pytest.mark.parametrize("case", [r for r in ROWS if r.values[0].id.startswith("sep")])
def test_separable_stages_rebuild_their_kernels(case: LayerCase, built: dict[str, Any]) -> None:
    _model, layer, _y = built[case.id]
    index = open_model(built[case.id][0])
    rec = index.layer(case.id)
    d, p = (np.asarray(a, np.float64) for a in layer.get_weights()[:2])
    for stage, ref in (("depthwise", d), ("pointwise", p)):
        lay = layout_of(rec, stage)
        assert lay.n_maps == (d.shape[-2] * d.shape[-1] if stage == "depthwise" else p.shape[-1])
        for j in range(lay.n_maps):
            got = lay.map_kernels(j)
            if stage == "depthwise":
                (c,) = lay.map_channels(j)
                np.testing.assert_array_equal(got[0], ref[..., c, j % d.shape[-1]])
            else:
                np.testing.assert_array_equal(np.moveaxis(got, 0, -1), ref[..., j])


@pytest.mark.keras
@pytest.mark.parametrize("case", ROWS)
def test_stats_health_agrees_with_filtersets(case: LayerCase, built: dict[str, Any]) -> None:
    model, layer, _y = built[case.id]
    index = open_model(model)
    rec = index.layer(case.id)
    sets = filters_for_layer(rec, index=index)
    set_norms = np.array([np.sqrt(np.sum(fs.norms ** 2)) for fs in sets])
    full = _full_weight(layer)
    expected_matrix = np.sqrt((full.reshape(full.shape[0], full.shape[1], -1) ** 2).sum(-1)).T
    # A tiny chunk forces the multi-block streaming path; the default reads the kernel in one block.
    for chunk in (64, 8 * 2**20):
        health = filter_health(rec, index=index, chunk_bytes=chunk, dup_threshold=0.99)
        np.testing.assert_allclose(health.map_norms, set_norms, rtol=1e-6)
        assert health.n_maps == len(sets) and health.n_inputs == input_channel_count(rec)
        assert health.channel_norms is not None
        np.testing.assert_allclose(health.channel_norms, expected_matrix, rtol=1e-6, atol=1e-12)


@pytest.mark.keras
@pytest.mark.parametrize("case", [r for r in ROWS if r.values[0].id in (
    "conv1d_cf", "conv2d_cf_g2_s2_same", "dw2d_cf_m2", "sep2d_cf_m2", "conv2dT_cf", "conv2d_valid", "dense_3d")])
def test_one_channel_layout_rule_on_index_and_live_model(case: LayerCase, built: dict[str, Any]) -> None:
    from inspector.activations import capture_io

    model, layer, _y = built[case.id]
    index = open_model(model)
    x = np.zeros((1, *case.input_shape), np.float32)
    live = capture_io(model, x, outputs=[case.id]).channels_first[case.id]
    assert tensor_channels_first(index, index.layer(case.id)) is live
    assert produces_channels_first(type(layer).__name__, getattr(layer, "data_format", None), -1, False) is live


# -- the BN planner ----------------------------------------------------------------------------------------

def _bn_chain(activation: str = "linear", axis: int = -1) -> Any:
    import keras

    L = keras.layers
    model = keras.Sequential([
        keras.Input((6, 6, 3)),
        L.Conv2D(4, 3, activation=activation, name="conv"),
        L.BatchNormalization(axis=axis, name="bn"),
        L.ReLU(name="relu"),
        L.Conv2D(2, 1, name="head"),
    ])
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 2, size=w.shape).astype("float32") for w in bn.get_weights()])
    return model


@pytest.mark.keras
def test_bn_fold_plan_api_and_agreement() -> None:
    index = open_model(_bn_chain())
    plan = bn_fold_plan(index, "conv")
    assert plan.ok and plan.reason is None and plan.bn_path == "bn" and plan.where == "after"
    assert plan.activation is not None and plan.activation.path == "relu"
    scale, shift = plan.affine(None)
    assert scale.shape == shift.shape == (4,)
    # filters, stats and the plan agree on the scale.
    fs, plain = filters_for_map("conv", 2, index=index, fold_bn=True), filters_for_map("conv", 2, index=index)
    np.testing.assert_allclose(fs.kernels, plain.kernels * scale[2], rtol=1e-12)
    health = filter_health(index.layer("conv"), index=index, fold_bn=True)
    np.testing.assert_allclose(health.bn_scale, scale, rtol=1e-12)
    # Refusals: a reason in user wording, the same one stats reports and filters raises.
    for path, where, words in (("head", "after", "no BatchNormalization reads its output"),
                               ("head", "before", "not a single BatchNormalization"),
                               ("bn", "after", "no kernel")):
        refused = bn_fold_plan(index, path, where)
        assert not refused.ok and refused.reason is not None and words in refused.reason
        assert "Received" not in refused.reason and "fold_bn" not in refused.reason and "\n" not in refused.reason
    assert any(str(bn_fold_plan(index, "head").reason) in n
               for n in filter_health(index.layer("head"), index=index, fold_bn=True).notes)
    with pytest.raises(Exception, match="no BatchNormalization reads its output"):
        filters_for_map("head", 0, index=index, fold_bn=True)
    relu_index = open_model(_bn_chain(activation="relu"))
    assert "activation 'relu'" in str(bn_fold_plan(relu_index, "conv").reason)
    axis_index = open_model(_bn_chain(axis=1))
    assert "channel axis" in str(bn_fold_plan(axis_index, "conv").reason)
    assert "model graph" in str(bn_fold_plan(None, index.layer("conv")).reason)
