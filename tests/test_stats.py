"""Weight statistics and filter health, checked against numpy on real saved Keras models.

Expected values are computed here, independently, from the live model's ``get_weights()`` with
plain numpy (full tensors, float64); the code under test reads the saved file through
``inspector.open_model`` and streams.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector import open_model
from inspector.layouts import chunk_indices
from inspector.stats import filter_health, layer_stats, tensor_stats

CHUNKS = [64, 8 * 2**20]  # a tiny budget forces many slices; the default reads small tensors whole


# -- models ----------------------------------------------------------------------------------------
def _build() -> Any:
    import keras

    L = keras.layers
    inp = keras.Input((8, 8, 4), name="img")
    x = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    x = L.Conv2D(6, 3, padding="same", groups=2, name="g")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", name="sep")(x)
    x = L.Conv2D(4, 1, use_bias=False, name="pre_bn")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2DTranspose(3, 3, strides=2, name="tr")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(7, name="fc")(x)
    out = L.Dense(3, name="nanfc")(x)
    model = keras.Model(inp, out, name="stats_zoo")
    rng = np.random.default_rng(7)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = [rng.normal(0.0, 0.5, w.shape).astype(w.dtype) for w in ws]
        if layer.name == "bn":
            new[3] = rng.uniform(0.5, 2.0, ws[3].shape).astype(ws[3].dtype)  # variance must be > 0
        layer.set_weights(new)
    # Planted faults in c1: map 2 dead (zero kernel), map 3 nearly dead, map 4 = copy of map 1,
    # map 5 = sign-flipped copy of map 0. Exact zeros also exercise the zero counts.
    k, b = model.get_layer("c1").get_weights()
    k[..., 2] = 0.0
    k[..., 3] *= 1e-5
    k[..., 4] = k[..., 1]
    k[..., 5] = -k[..., 0]
    model.get_layer("c1").set_weights([k, b])
    # Planted duplicates where random kernels have none, so every layer's duplicate search has pairs to
    # find. g (2 groups of 3 maps): map 1 = 2 × map 0 and map 5 = -0.5 × map 3 inside a group; map 4 copies
    # map 0's numbers across groups, which reads other inputs and so is no duplicate (similarity 0).
    k, b = model.get_layer("g").get_weights()
    k[..., 1] = 2.0 * k[..., 0]
    k[..., 5] = -0.5 * k[..., 3]
    k[..., 4] = k[..., 0]
    model.get_layer("g").set_weights([k, b])
    # tr (transposed: maps on axis -2): map 2 = sign-flipped map 0.
    k, b = model.get_layer("tr").get_weights()
    k[..., 2, :] = -k[..., 0, :]
    model.get_layer("tr").set_weights([k, b])
    # sep: pointwise column 3 = 3 × column 1, so effective map 3 = 3 × effective map 1.
    d, pw, b = model.get_layer("sep").get_weights()
    pw[..., 3] = 3.0 * pw[..., 1]
    model.get_layer("sep").set_weights([d, pw, b])
    # NaN / Inf planted in nanfc: 3 NaN, 2 +Inf, 1 -Inf, and map 1 entirely NaN.
    k, b = model.get_layer("nanfc").get_weights()
    k[0, 0] = k[2, 0] = np.nan
    k[3, 2] = np.inf
    b[2] = np.inf
    k[4, 2] = -np.inf
    k[:, 1] = np.nan
    model.get_layer("nanfc").set_weights([k, b])
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    model = _build()
    folder = tmp_path_factory.mktemp("stats")
    keras_path, weights_path = folder / "zoo.keras", folder / "zoo.weights.h5"
    model.save(keras_path)
    model.save_weights(weights_path)
    truth = {layer.name: layer.get_weights() for layer in model.layers if layer.get_weights()}
    bn = model.get_layer("bn")
    return {"keras": keras_path, "weights": weights_path, "truth": truth, "bn_eps": float(bn.epsilon)}


def _weights_by_name(index: Any, name: str) -> Any:
    return next(layer for layer in index.layers if layer.name == name)


# -- pure streaming helper (no Keras) ------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 3, 4, 6), (1, 1, 50, 7), (17,), (), (5, 0, 2), (2, 1, 3, 40, 9)])
@pytest.mark.parametrize("budget", [4, 40, 400, 10**6])
def test_chunks_cover_tensor_once_within_budget(shape: tuple[int, ...], budget: int) -> None:
    data = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    seen = np.zeros(shape, dtype=np.int64)
    for index, *_ in chunk_indices(shape, 4, budget):
        part = data[index] if index else data
        assert part.ndim == data.ndim  # rank kept: leading axes are length-1 slices
        if part.size > 1:
            row = math.prod(shape[-1:]) * 4
            assert part.nbytes <= max(budget, row)  # only a single innermost row may exceed it
        view = seen[index] if index else seen
        view += 1
    assert (seen == 1).all()


# -- tensor statistics ---------------------------------------------------------------------------------
def _expect(w: np.ndarray) -> dict[str, Any]:
    x = np.asarray(w, dtype=np.float64).ravel()
    f = x[np.isfinite(x)]
    return {"min": f.min(), "max": f.max(), "mean": f.mean(), "std": f.std(), "l1": np.abs(f).sum(),
            "l2": np.sqrt((f ** 2).sum()), "zeros": int((f == 0).sum()),
            "near": int((np.abs(f) < 1e-6 * np.abs(f).max()).sum()),
            "hist": np.histogram(f, bins=64, range=(f.min(), f.max())),
            "nan": int(np.isnan(x).sum()), "posinf": int((x == np.inf).sum()), "neginf": int((x == -np.inf).sum())}


@pytest.mark.keras
@pytest.mark.parametrize("fmt", ["keras", "weights"])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_tensor_stats_equal_numpy(saved: dict[str, Any], fmt: str, chunk: int) -> None:
    checked = 0
    with open_model(saved[fmt]) as index:
        for name, weights in saved["truth"].items():
            layer = _weights_by_name(index, name)
            assert len(layer.weights) == len(weights)
            for ref, w in zip(layer.weights, weights, strict=True):
                assert ref.shape == w.shape
                got = tensor_stats(ref, chunk_bytes=chunk)
                e = _expect(w)
                assert got.count == w.size and got.finite == w.size - e["nan"] - e["posinf"] - e["neginf"]
                assert (got.nan, got.posinf, got.neginf) == (e["nan"], e["posinf"], e["neginf"])
                for key in ("min", "max", "mean", "std", "l1", "l2"):
                    assert getattr(got, key) == pytest.approx(e[key], rel=1e-12, abs=1e-15), (name, ref.name, key)
                assert got.zeros == e["zeros"] and got.near_zeros == e["near"]
                counts, edges = e["hist"]
                np.testing.assert_array_equal(got.hist_counts, counts)
                np.testing.assert_allclose(got.hist_edges, edges, rtol=0, atol=0)
                checked += 1
    assert checked == sum(len(w) for w in saved["truth"].values())


@pytest.mark.keras
def test_planted_nan_inf_are_counted(saved: dict[str, Any]) -> None:
    k, b = saved["truth"]["nanfc"]
    with open_model(saved["keras"]) as index:
        ls = layer_stats(index.layer("nanfc"), index=index)
    kernel, bias = ls.tensors
    assert kernel.nan == 2 + k.shape[0] and kernel.posinf == 1 and kernel.neginf == 1
    assert bias.posinf == 1 and bias.nan == 0
    assert ls.combined.nan == kernel.nan and ls.combined.posinf == 2 and ls.combined.neginf == 1
    both = np.concatenate([k.ravel(), b.ravel()]).astype(np.float64)
    finite = both[np.isfinite(both)]
    assert ls.combined.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert ls.combined.std == pytest.approx(finite.std(), rel=1e-12)
    assert ls.combined.min == finite.min() and ls.combined.max == finite.max()
    h = ls.health
    assert h is not None
    # Maps holding NaN/Inf are reported as such, not as dead, and kept out of the duplicate search.
    bad = [j for j in range(k.shape[1]) if not np.isfinite(k[:, j]).all()]
    assert h.nonfinite.tolist() == bad
    assert not set(h.dead.tolist()) & set(bad)
    assert all(p.a not in bad and p.b not in bad for p in h.duplicates)


# -- filter health --------------------------------------------------------------------------------------
def _expected_maps(kind: str, ws: list[np.ndarray], groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(channel × map norm matrix, map vectors over all input channels), written per kind from docs/formats.md §5.2."""
    k = ws[0].astype(np.float64)
    if kind == "conv":
        cin_g, n = k.shape[-2], k.shape[-1]
        vecs = np.zeros((n, k[..., 0, 0].size, cin_g * groups))
        for j in range(n):
            g = j // (n // groups)
            vecs[j][:, g * cin_g:(g + 1) * cin_g] = k[..., j].reshape(-1, cin_g)
    elif kind == "depthwise":
        c_in, m = k.shape[-2], k.shape[-1]
        vecs = np.zeros((c_in * m, k[..., 0, 0].size, c_in))
        for i in range(c_in):
            for mm in range(m):
                vecs[i * m + mm][:, i] = k[..., i, mm].ravel()
    elif kind == "transpose":
        vecs = np.stack([k[..., j, :].reshape(-1, k.shape[-1]) for j in range(k.shape[-2])])
    elif kind == "separable":
        d, p = k, ws[1].astype(np.float64)
        c_in, m = d.shape[-2], d.shape[-1]
        p2 = p.reshape(c_in * m, -1)
        eff = np.zeros((*d.shape[:-2], c_in, p2.shape[1]))
        for i in range(c_in):
            for mm in range(m):
                eff[..., i, :] += d[..., i, mm, None] * p2[i * m + mm]
        vecs = np.stack([eff[..., j].reshape(-1, c_in) for j in range(p2.shape[1])])
    else:  # dense
        vecs = k.T[:, None, :]
    matrix = np.sqrt((vecs ** 2).sum(1)).T  # (C_in, maps)
    return matrix, vecs.reshape(vecs.shape[0], -1)


@pytest.mark.keras
@pytest.mark.parametrize("name,kind,groups", [("c1", "conv", 1), ("g", "conv", 2), ("dw", "depthwise", 1),
                                              ("sep", "separable", 1), ("tr", "transpose", 1), ("fc", "dense", 1),
                                              ("pre_bn", "conv", 1)])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_map_norms_matrix_and_similarity_equal_numpy(saved: dict[str, Any], name: str, kind: str,
                                                     groups: int, chunk: int) -> None:
    matrix, vecs = _expected_maps(kind, saved["truth"][name], groups)
    with open_model(saved["keras"]) as index:
        h = filter_health(index.layer(name), index=index, chunk_bytes=chunk, dup_threshold=0.5)
    np.testing.assert_allclose(h.channel_norms, matrix, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h.map_norms, np.linalg.norm(vecs, axis=1), rtol=1e-12)
    k = saved["truth"][name][0]
    assert h.groups == (k.shape[-2] if kind == "depthwise" else groups)
    # The reported pairs are exactly numpy's pairs with |cosine| >= the threshold (maps with a zero
    # kernel excluded), each with numpy's cosine (the Gram products are float32: 1e-5).
    threshold = 0.5
    norms = np.linalg.norm(vecs, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = vecs @ vecs.T / np.outer(norms, norms)
    upper = [(a, b) for a in range(len(vecs)) for b in range(a + 1, len(vecs)) if norms[a] > 0 and norms[b] > 0]
    # No pair sits within float32 rounding of the threshold, so "above" is unambiguous.
    assert all(abs(abs(cos[a, b]) - threshold) > 1e-5 for a, b in upper)
    want = {(a, b) for a, b in upper if abs(cos[a, b]) >= threshold}
    assert want, f"{name}: the model must hold pairs above {threshold} for this test to check anything"
    got = {(p.a, p.b) for p in h.duplicates}
    assert got == want
    for p in h.duplicates:
        assert abs(p.similarity) >= threshold - 1e-5
        assert p.similarity == pytest.approx(cos[p.a, p.b], abs=1e-5)
    assert h.duplicate_pair_count == len(h.duplicates) == len(want)


@pytest.mark.keras
def test_grouped_matrix_is_zero_outside_group_blocks(saved: dict[str, Any]) -> None:
    k = saved["truth"]["g"][0]
    cin_g, n = k.shape[-2], k.shape[-1]
    with open_model(saved["keras"]) as index:
        h = filter_health(index.layer("g"))
    mat = h.channel_norms
    assert mat is not None and mat.shape == (2 * cin_g, n) and h.groups == 2
    for j in range(n):
        g = j // (n // 2)
        inside = np.zeros(2 * cin_g, dtype=bool)
        inside[g * cin_g:(g + 1) * cin_g] = True
        assert (mat[~inside, j] == 0).all()
        assert (mat[inside, j] > 0).all()
    dw = saved["truth"]["dw"][0]
    with open_model(saved["keras"]) as index:
        hd = filter_health(index.layer("dw"))
    m = dw.shape[-1]
    assert hd.channel_norms is not None
    assert [np.flatnonzero(hd.channel_norms[:, o]).tolist() for o in range(hd.n_maps)] == \
        [[o // m] for o in range(hd.n_maps)]


@pytest.mark.keras
@pytest.mark.parametrize("fmt", ["keras", "weights"])
def test_planted_dead_and_duplicate_filters(saved: dict[str, Any], fmt: str) -> None:
    k = saved["truth"]["c1"][0].astype(np.float64)
    norms = np.linalg.norm(k.reshape(-1, k.shape[-1]), axis=0)
    with open_model(saved[fmt]) as index:
        h = filter_health(_weights_by_name(index, "c1"), index=index)
    assert h.dead.tolist() == [2, 3]  # the zeroed map and the one scaled by 1e-5
    assert h.dead_reference == pytest.approx(np.median(norms), rel=1e-12)
    pairs = {(p.a, p.b): p.similarity for p in h.duplicates}
    assert set(pairs) == {(1, 4), (0, 5)}
    assert pairs[(1, 4)] == pytest.approx(1.0, abs=1e-6)
    assert pairs[(0, 5)] == pytest.approx(-1.0, abs=1e-6)
    with open_model(saved[fmt]) as index:
        strict = filter_health(_weights_by_name(index, "c1"), dead_threshold=1e-6)
    assert strict.dead.tolist() == [2]  # 1e-5 × a typical norm is above 1e-6 × the median


@pytest.mark.keras
def test_bn_fold_scale(saved: dict[str, Any]) -> None:
    gamma, beta, mean, var = (a.astype(np.float64) for a in saved["truth"]["bn"])
    scale = gamma / np.sqrt(var + saved["bn_eps"])
    k = saved["truth"]["pre_bn"][0].astype(np.float64)
    norms = np.linalg.norm(k.reshape(-1, k.shape[-1]), axis=0)
    with open_model(saved["keras"]) as index:
        h = filter_health(index.layer("pre_bn"), index=index, fold_bn=True)
        plain = filter_health(index.layer("c1"), index=index, fold_bn=True)
    assert h.bn_layer == "bn"
    np.testing.assert_allclose(h.bn_scale, scale, rtol=1e-6)  # BN variables are float32 in the file
    np.testing.assert_allclose(h.effective_norms, norms * np.abs(scale), rtol=1e-6)
    np.testing.assert_allclose(h.bn_bias, beta - mean * scale, rtol=1e-6, atol=1e-7)  # no conv bias
    assert plain.bn_scale is None and any("BatchNormalization" in n for n in plain.notes)


@pytest.mark.keras
def test_pooled_dense_matrix_is_exact_block_norms(saved: dict[str, Any]) -> None:
    k = saved["truth"]["fc"][0].astype(np.float64)  # (C_in, 7)
    with open_model(saved["keras"]) as index:
        h = filter_health(index.layer("fc"), max_matrix_cells=9, chunk_bytes=32)
    br, bc = h.channel_block
    assert (br, bc) != (1, 1)
    mat = h.channel_norms
    assert mat is not None
    for r in range(mat.shape[0]):
        for c in range(mat.shape[1]):
            block = k[r * br:(r + 1) * br, c * bc:(c + 1) * bc]
            assert mat[r, c] == pytest.approx(np.sqrt((block ** 2).sum()), rel=1e-12)


# -- CLI and rendering ------------------------------------------------------------------------------------
@pytest.mark.keras
def test_cli_table_layer_and_json(saved: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from inspector.cli import main

    def strict(text: str) -> Any:
        def refuse(token: str) -> None:
            raise AssertionError(f"non-standard JSON token {token}")
        return json.loads(text, parse_constant=refuse)

    assert main(["stats", str(saved["keras"])]) == 0
    table = capsys.readouterr().out
    for name in saved["truth"]:
        assert name in table
    c1_row = next(line for line in table.splitlines() if line.startswith("c1 "))
    assert "2/6" in c1_row.split() and c1_row.split()[-1] == "2"

    assert main(["stats", str(saved["keras"]), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    doc = strict(out)
    by_path = {entry["path"]: entry for entry in doc["layers"]}
    assert set(by_path) == set(saved["truth"])
    assert by_path["c1"]["health"]["dead"] == [2, 3]
    assert by_path["nanfc"]["combined"]["nan"] == 2 + saved["truth"]["nanfc"][0].shape[0]

    assert main(["stats", str(saved["keras"]), "--layer", "nanfc", "--json"]) == 0
    doc = strict(capsys.readouterr().out)
    assert doc["layer"]["health"]["map_norms"][1] is None  # NaN -> null

    assert main(["stats", str(saved["weights"]), "--layer", "c1", "--dup-threshold", "0.9"]) == 0
    report = capsys.readouterr().out
    assert "DEAD" in report and "4 (+1.0000)" in report and "0 (-1.0000)" in report

    assert main(["stats", str(saved["keras"]), "--dead-threshold", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Received: -1.0" in err


@pytest.mark.keras
def test_figures(saved: dict[str, Any]) -> None:
    from matplotlib.figure import Figure

    from inspector.render.stats import channel_norm_figure, histogram_figure, map_norms_figure

    with open_model(saved["keras"]) as index:
        ls = layer_stats(index.layer("c1"), index=index, channel_matrix=True)
        hg = filter_health(index.layer("g"))
    assert ls.health is not None
    fig = histogram_figure(ls.tensors[0])
    assert isinstance(fig, Figure)
    stairs = fig.axes[0].patches[0]
    np.testing.assert_array_equal(stairs.get_data().values, ls.tensors[0].hist_counts)

    bars = map_norms_figure(ls.health)
    rects = bars.axes[0].patches
    np.testing.assert_allclose([r.get_height() for r in rects], ls.health.map_norms)
    dead_colors = {tuple(rects[j].get_facecolor()) for j in ls.health.dead}
    live_colors = {tuple(rects[j].get_facecolor()) for j in range(6) if j not in ls.health.dead}
    assert len(dead_colors) == 1 and not dead_colors & live_colors

    heat = channel_norm_figure(hg)
    np.testing.assert_array_equal(heat.axes[0].images[0].get_array(), hg.channel_norms)
    for f in (fig, bars, heat):
        f.savefig(Path("/dev/null"), format="png")


def test_render_and_stats_never_import_pyplot_or_keras() -> None:
    # Keras itself imports pyplot, so check in a clean interpreter without it.
    code = ("import sys, numpy as np\n"
            "from inspector.records import TensorRef, LayerRecord, LayerKind\n"
            "from inspector.stats import layer_stats\n"
            "from inspector.render.stats import histogram_figure, map_norms_figure, channel_norm_figure\n"
            "k = TensorRef.from_array('kernel', np.random.default_rng(0).normal(size=(3, 3, 2, 4)))\n"
            "ls = layer_stats(LayerRecord('c', 'Conv2D', LayerKind.CONV, [k]), channel_matrix=True)\n"
            "figs = [histogram_figure(ls.tensors[0]), map_norms_figure(ls.health), channel_norm_figure(ls.health)]\n"
            "bad = [m for m in ('matplotlib.pyplot', 'keras', 'tensorflow') if m in sys.modules]\n"
            "print(len(figs), bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "3 []"


@pytest.mark.keras
@pytest.mark.parametrize("name", ["c1", "g", "dw", "sep", "fc", "tr"])
def test_sketch_path_finds_the_same_pairs(saved: dict[str, Any], name: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Huge layers use a random-projection prefilter; forced here, it must agree with the exact search."""
    import inspector.stats as st

    with open_model(saved["keras"]) as index:
        exact = filter_health(index.layer(name), dup_threshold=0.6, chunk_bytes=64)
        monkeypatch.setattr(st, "_EXACT_MAX_WORK", 0)
        sketched = filter_health(index.layer(name), dup_threshold=0.6, chunk_bytes=64)
    # Every layer here holds pairs above 0.6 (planted in g, sep and tr), so the comparison is not [] == [].
    assert exact.duplicates, f"{name}: no exact pairs at 0.6, nothing to compare"
    planted = {"c1": {(1, 4), (0, 5)}, "g": {(0, 1), (3, 5)}, "sep": {(1, 3)}, "tr": {(0, 2)}}
    assert planted.get(name, set()) <= {(p.a, p.b) for p in exact.duplicates}
    assert [(p.a, p.b) for p in sketched.duplicates] == [(p.a, p.b) for p in exact.duplicates]
    np.testing.assert_allclose([p.similarity for p in sketched.duplicates],
                               [p.similarity for p in exact.duplicates], rtol=1e-6)
    if name == "c1":
        assert {(p.a, p.b) for p in sketched.duplicates} >= {(1, 4), (0, 5)}
