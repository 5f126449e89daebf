"""``inspector compare``: planted changes found, nothing found across formats, numbers equal numpy's.

Real Keras models saved to files; every expected number is computed here with numpy from the weights
Keras itself returns (``get_weights``), never hard-coded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector import open_model
from inspector.compare import Status, compare_models, linear_cka

PERM = np.array([5, 0, 7, 2, 1, 6, 4, 3])
SIGN = np.array([1, -1, 1, 1, -1, 1, -1, 1], dtype=np.float32)
PERM2 = np.array([3, 9, 0, 4, 8, 1, 7, 2, 6, 5])


def _build(seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.Conv2D(10, 3, activation="relu", name="c2")(x)
    x = L.DepthwiseConv2D(3, name="dw")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(4, name="head")(x)
    model = keras.Model(inp, out, name="cmp")
    rng = np.random.default_rng(seed)
    bn = model.get_layer("bn1")
    bn.set_weights([rng.uniform(0.5, 1.5, 8).astype("float32"), rng.normal(0, 0.1, 8).astype("float32"),
                    rng.normal(0, 0.1, 8).astype("float32"), rng.uniform(0.5, 2.0, 8).astype("float32")])
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("compare")
    model = _build(0)
    out: dict[str, Any] = {"folder": folder}
    for name in ("a.keras", "a.h5"):
        model.save(folder / name)
    model.save_weights(folder / "a.weights.h5")
    out["a"] = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers if layer.weights}
    rng = np.random.default_rng(7)

    def variant(name: str, change: Any) -> None:
        m = _build(0)
        change(m)
        m.save(folder / name)
        out[name] = {layer.name: [w.copy() for w in layer.get_weights()] for layer in m.layers if layer.weights}

    def perturb(m: Any) -> None:  # map 5 of c2 gets noise; everything else stays bit-identical
        k, b = m.get_layer("c2").get_weights()
        k[..., 5] += 0.3 * rng.standard_normal(k[..., 5].shape).astype("float32")
        m.get_layer("c2").set_weights([k, b])

    def reinit(m: Any) -> None:
        k, b = m.get_layer("c2").get_weights()
        m.get_layer("c2").set_weights([rng.standard_normal(k.shape).astype("float32") * 0.1, b])

    def permute(m: Any) -> None:  # B's map j is A's map PERM[j], times SIGN[j]
        k, b = m.get_layer("c1").get_weights()
        m.get_layer("c1").set_weights([k[..., PERM] * SIGN, b[PERM] * SIGN])

    def partial(m: Any) -> None:  # c2's maps permuted with noise, then B's maps 0 and 1 re-drawn at random
        k, b = m.get_layer("c2").get_weights()
        k = k[..., PERM2] + 0.2 * np.std(k) * rng.standard_normal(k.shape).astype("float32")
        k[..., :2] = np.std(k) * rng.standard_normal(k[..., :2].shape).astype("float32")
        m.get_layer("c2").set_weights([k, b])

    def bn_gamma(m: Any) -> None:
        w = m.get_layer("bn1").get_weights()
        w[0] = w[0] * np.linspace(0.5, 2.0, 8, dtype="float32")
        m.get_layer("bn1").set_weights(w)

    variant("perturbed.keras", perturb)
    variant("reinit.keras", reinit)
    variant("permuted.keras", permute)
    variant("bn.keras", bn_gamma)
    variant("partial.keras", partial)
    other = _build(1)  # an independent initialisation of the same architecture
    other.save(folder / "other_init.keras")
    return out


def _cmp(files: dict[str, Any], b: str, a: str = "a.keras", **kw: Any) -> Any:
    with open_model(files["folder"] / a) as ia, open_model(files["folder"] / b) as ib:
        return compare_models(ia, ib, **kw)


def _maps(kernel: np.ndarray, kind: str = "conv") -> np.ndarray:
    """(maps, everything feeding each map) from a Keras kernel."""
    if kind == "depthwise":
        return kernel.reshape(-1, kernel.shape[-2] * kernel.shape[-1]).T
    return kernel.reshape(-1, kernel.shape[-1]).T


@pytest.mark.parametrize("other", ["a.h5", "a.weights.h5"])
def test_same_model_in_other_formats_is_same_everywhere(files: dict[str, Any], other: str) -> None:
    result = _cmp(files, other, match="always")
    assert {e.path for e in result.layers} == set(files["a"])
    for entry in result.layers:
        assert entry.status is Status.SAME, entry
        assert entry.relative_change == 0.0 and entry.max_abs_change == 0.0
        assert entry.matching is None  # nothing to match on an unchanged layer
        assert all(m.cosine == pytest.approx(1.0, abs=1e-12) and m.relative_change == 0.0 for m in entry.maps)
    assert result.counts()["same"] == len(files["a"])


def test_one_perturbed_map_is_found_with_numpy_numbers(files: dict[str, Any]) -> None:
    result = _cmp(files, "perturbed.keras")
    changed = [e.path for e in result.layers if e.status is Status.CHANGED]
    assert changed == ["c2"]
    entry = result.layer("c2")
    ka, kb = _maps(files["a"]["c2"][0]).astype(np.float64), _maps(files["perturbed.keras"]["c2"][0]).astype(np.float64)
    cos = np.einsum("ij,ij->i", ka, kb) / (np.linalg.norm(ka, axis=1) * np.linalg.norm(kb, axis=1))
    rel = np.linalg.norm(kb - ka, axis=1) / np.linalg.norm(ka, axis=1)
    np.testing.assert_allclose([m.cosine for m in entry.maps], cos, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([m.relative_change for m in entry.maps], rel, rtol=1e-9, atol=1e-12)
    assert [m.map for m in entry.maps if m.relative_change > 0] == [5]
    assert entry.relative_change == pytest.approx(np.linalg.norm(kb - ka) / np.linalg.norm(ka), rel=1e-9)
    assert entry.weight_changes["bias"] == 0.0
    assert entry.most_changed(1)[0].map == 5


def test_reinitialized_layer(files: dict[str, Any]) -> None:
    result = _cmp(files, "reinit.keras", match="never")
    assert [e.path for e in result.layers if e.status is not Status.SAME] == ["c2"]
    ka, kb = files["a"]["c2"][0].astype(np.float64), files["reinit.keras"]["c2"][0].astype(np.float64)
    entry = result.layer("c2")
    assert entry.relative_change == pytest.approx(np.linalg.norm(kb - ka) / np.linalg.norm(ka), rel=1e-9)
    assert entry.max_abs_change == pytest.approx(np.abs(kb - ka).max(), rel=1e-6)
    assert np.median([abs(m.cosine) for m in entry.maps]) < 0.5  # unrelated random kernels
    assert entry.matching is None  # match="never"


def test_permuted_and_sign_flipped_maps_are_matched(files: dict[str, Any]) -> None:
    result = _cmp(files, "permuted.keras")
    entry = result.layer("c1")
    assert entry.status is Status.CHANGED
    expected = np.argsort(PERM)  # A's map i is B's map j with PERM[j] == i
    assert entry.matching == expected.tolist()
    np.testing.assert_allclose(entry.matching_cosine, SIGN[expected], atol=1e-6)
    assert entry.flipped == int((SIGN < 0).sum())
    assert entry.permuted == int((expected != np.arange(8)).sum())
    # Only c1 was touched (c2 still reads the channels in A's order: not a function-preserving permutation).
    assert [e.path for e in result.layers if e.status is not Status.SAME] == ["c1"]


def _assignment_cosines(ka: np.ndarray, kb: np.ndarray) -> np.ndarray:
    """Signed cosine of each A map with its partner in the best one-to-one assignment by |cos| (numpy, scipy)."""
    from scipy.optimize import linear_sum_assignment

    a, b = ka / np.linalg.norm(ka, axis=1, keepdims=True), kb / np.linalg.norm(kb, axis=1, keepdims=True)
    cos = a @ b.T
    rows, cols = linear_sum_assignment(np.abs(cos), maximize=True)
    return cos[rows, cols]


def test_independent_initialisations_have_no_correspondence(files: dict[str, Any]) -> None:
    import keras

    result = _cmp(files, "other_init.keras", match="always")
    other = keras.models.load_model(files["folder"] / "other_init.keras")
    filter_layers = [e for e in result.layers if e.maps]
    assert {e.path for e in filter_layers} >= {"c1", "c2", "head"}
    for entry in filter_layers:
        assert entry.status is Status.CHANGED
        assert entry.matching is None and entry.matching_cosine is None, entry.path
        assert entry.permuted == 0 and entry.flipped == 0 and entry.matched == 0
        assert entry.match_threshold is not None and entry.match_threshold >= 0.5
        assert entry.match_median_cosine is not None and entry.match_median_cosine < entry.match_threshold
        assert any(n.startswith("no map correspondence found (median matched |cos| = ") for n in entry.notes)
        data = entry.to_dict()
        assert data["matching"] is None and data["permuted"] is None
    # The median reported is that of the best assignment, computed here from Keras's kernels.
    for path in ("c1", "c2"):
        cos = _assignment_cosines(_maps(files["a"][path][0]).astype(np.float64),
                                  _maps(other.get_layer(path).get_weights()[0]).astype(np.float64))
        assert result.layer(path).match_median_cosine == pytest.approx(np.median(np.abs(cos)), rel=1e-5)


def test_partial_correspondence_leaves_null_entries(files: dict[str, Any]) -> None:
    entry = _cmp(files, "partial.keras").layer("c2")
    expected: list[int | None] = np.argsort(PERM2).tolist()  # A's map i is B's map j with PERM2[j] == i
    for j in (0, 1):  # B's maps 0 and 1 were re-drawn: A's maps PERM2[0], PERM2[1] have no counterpart
        expected[PERM2[j]] = None
    assert entry.matching == expected
    assert entry.matched == 8 and entry.permuted == 8
    assert entry.matching_cosine is not None
    kept = [c for c in entry.matching_cosine if c is not None]
    assert len(kept) == 8 and all(0.9 < c < 1.0 for c in kept)  # noisy copies, clearly above the threshold
    assert any("8 of 10 maps have a counterpart" in n for n in entry.notes)


def test_match_threshold_is_the_random_vector_tail() -> None:
    from inspector.compare import match_threshold

    rng = np.random.default_rng(5)
    for length in (9, 27, 200):
        t = match_threshold(length, 1, false_rate=0.01, floor=0.0)
        a = rng.standard_normal((200_000, length))
        b = rng.standard_normal((200_000, length))
        cos = np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert np.mean(np.abs(cos) >= t) == pytest.approx(0.01, rel=0.15), length
    assert match_threshold(4608, 512 * 512) == 0.5  # the floor: random 4608-vectors stay below 0.09
    assert match_threshold(4608, 512 * 512, floor=0.0) < 0.09
    assert match_threshold(27, 64 * 64) > 0.75  # VGG16 block1_conv1: 27 weights a map
    assert match_threshold(1, 4) == np.inf


def test_bn_fold_shows_a_rescaled_map(files: dict[str, Any]) -> None:
    plain = _cmp(files, "bn.keras")
    assert plain.layer("c1").status is Status.SAME and plain.layer("bn1").status is Status.CHANGED
    folded = _cmp(files, "bn.keras", fold_bn=True)
    entry = folded.layer("c1")
    assert entry.bn_folded == "bn1"
    ga, _beta, _mean, var = (w.astype(np.float64) for w in files["a"]["bn1"])
    gb = files["bn.keras"]["bn1"][0].astype(np.float64)
    eps = 1e-3
    sa, sb = ga / np.sqrt(var + eps), gb / np.sqrt(var + eps)
    k = _maps(files["a"]["c1"][0]).astype(np.float64)
    expected = np.linalg.norm(k * (sb - sa)[:, None]) / np.linalg.norm(k * sa[:, None])
    assert entry.relative_change == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose([m.relative_change for m in entry.maps], np.abs(sb / sa - 1), rtol=1e-9)
    np.testing.assert_allclose([m.cosine for m in entry.maps], 1.0, atol=1e-12)  # scaled, same direction
    assert entry.status is Status.SAME  # the stored kernel did not change; the fold shows the BN's effect


def test_linear_cka_properties() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 30))
    y = rng.standard_normal((20, 12)) + x[:, :12]
    q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, 3.7 * x @ q) == pytest.approx(1.0, abs=1e-12)
    base = linear_cka(x, y)
    assert 0.0 < base < 1.0
    assert linear_cka(2.5 * x @ q, y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x, 0.1 * y) == pytest.approx(base, abs=1e-12)
    # Kornblith et al.'s feature-space form gives the same number.
    xc, yc = x - x.mean(0), y - y.mean(0)
    feature_form = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert base == pytest.approx(feature_form, rel=1e-10)


@pytest.fixture(scope="module")
def input_dir(files: dict[str, Any]) -> Path:
    folder = files["folder"] / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for n in range(6):
        np.save(folder / f"x{n}.npy", rng.uniform(0, 1, (1, 12, 12, 3)).astype("float32"))
    return folder


def test_cka_on_activations(files: dict[str, Any], input_dir: Path) -> None:
    same = _cmp(files, "a.h5", inputs=input_dir)
    assert len(same.inputs) == 6
    for entry in same.layers:
        assert entry.cka == pytest.approx(1.0, abs=1e-9), entry.path
    permuted = _cmp(files, "permuted.keras", inputs=input_dir)
    # c1's output is linear in its kernel: permuting and negating maps is an orthogonal map of the features.
    assert permuted.layer("c1").cka == pytest.approx(1.0, abs=1e-6)
    # Checked against Keras: the captured activations of both models through linear_cka.
    import keras

    from inspector.activations import capture

    x = np.concatenate([np.load(p) for p in sorted(input_dir.glob("*.npy"))])
    ma = keras.models.load_model(files["folder"] / "a.keras")
    mb = keras.models.load_model(files["folder"] / "permuted.keras")
    expected = linear_cka(capture(ma, x, ["c2"])["c2"], capture(mb, x, ["c2"])["c2"])
    assert permuted.layer("c2").cka == pytest.approx(expected, rel=1e-6)
    assert permuted.layer("c2").cka < 0.999


def _cli(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inspector", "compare", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_cli_json_table_and_figures(files: dict[str, Any], tmp_path: Path) -> None:
    folder = files["folder"]
    proc = _cli(folder / "a.keras", folder / "permuted.keras", "--json", tmp_path / "c.json", "-o",
                tmp_path / "c.png", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "c.json").read_text())
    assert set(data) >= {"a", "b", "layers"}
    c1 = next(e for e in data["layers"] if e["path"] == "c1")
    assert set(c1) >= {"path", "status", "relative_change", "maps", "matching", "cka"}
    assert c1["status"] == "changed" and c1["matching"] == np.argsort(PERM).tolist() and c1["cka"] is None
    assert set(c1["maps"][0]) >= {"map", "cosine", "relative_change"}
    assert "c1" in proc.stdout and "changed" in proc.stdout
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "c-maps-c1.png").stat().st_size > 0
    pdf = tmp_path / "c.pdf"
    proc = _cli(folder / "a.keras", folder / "perturbed.keras", "-o", pdf, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert pdf.read_bytes().count(b"/Type /Page\n") + pdf.read_bytes().count(b"/Type /Page ") >= 2


def test_figures_draw_a_b_and_difference(files: dict[str, Any]) -> None:
    from inspector.render.compare import changed_maps_figure, drift_figure

    with open_model(files["folder"] / "a.keras") as a, open_model(files["folder"] / "perturbed.keras") as b:
        result = compare_models(a, b)
        fig = changed_maps_figure(a, b, result.layer("c2"), n_maps=2)
        texts = [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]
        assert any("A map 5" in t for t in texts) and any("B − A" in t for t in texts)
        assert "c2" in fig.texts[0].get_text() or any("c2" in t for t in texts)
        overview = drift_figure(result)
        assert [t.get_text() for t in overview.axes[0].get_yticklabels()] == [e.path for e in result.layers]
        # The title names the files, not their folders.
        assert overview.get_suptitle().startswith("A a.keras vs B perturbed.keras: ")
        # Channel names once, above the top row (the figure's only "in 0"); the cosine in A's row label.
        assert sum(t == "in 0" for t in texts) == 1 and any(t.startswith("A map 5, cos +0.") for t in texts)
    with open_model(files["folder"] / "a.keras") as a, open_model(files["folder"] / "other_init.keras") as b:
        unrelated = compare_models(a, b, match="always")
        overview = drift_figure(unrelated)
    # The legend sits outside both panels: it covers no row (it covered VGG16's last three).
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(overview)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = overview.legends[0].get_window_extent(renderer)
    assert not any(ax.get_window_extent(renderer).overlaps(legend) for ax in overview.axes)
    labels = [t.get_text() for t in overview.legends[0].get_texts()]
    assert "median |cos| of the best matching: no map correspondence found" in labels
    assert "median |cos| after matching" not in labels  # no layer of two independent inits has one


def test_renamed_removed_and_added_layers(tmp_path: Path) -> None:
    import keras

    L = keras.layers
    keras.utils.set_random_seed(1)
    a = keras.Sequential([keras.Input((8,)), L.Dense(6, name="d1"), L.Dense(5, name="d2"), L.Dense(3, name="out")])
    b = keras.Sequential([keras.Input((8,)), L.Dense(6, name="dense_9"), L.Dense(4, name="d2"),
                          L.Dense(3, name="out"), L.Dense(2, name="extra")])
    b.get_layer("dense_9").set_weights(a.get_layer("d1").get_weights())
    a.save(tmp_path / "a.keras")
    b.save(tmp_path / "b.keras")
    with open_model(tmp_path / "a.keras") as ia, open_model(tmp_path / "b.keras") as ib:
        result = compare_models(ia, ib)
    by = {e.path: e for e in result.layers}
    assert by["d1"].path_b == "dense_9" and by["d1"].matched_by == "shape and order"
    assert by["d1"].status is Status.SAME
    assert by["d2"].status is Status.RESHAPED
    assert by["out"].status is Status.RESHAPED  # reads 4 inputs in B instead of 5
    assert by["extra"].status is Status.ADDED
    assert any("shape" in n for n in result.notes)


def test_bad_input_is_one_line(files: dict[str, Any], tmp_path: Path) -> None:
    import keras

    other = keras.Sequential([keras.Input((7,)), keras.layers.Dense(9, name="zzz")])
    other.save(tmp_path / "other.keras")
    folder = files["folder"]
    cases = [
        ([folder / "a.keras", tmp_path / "other.keras"], "share no layer"),
        ([folder / "a.keras", tmp_path / "missing.keras"], ""),
        ([folder / "a.keras", folder / "a.h5", "-o", tmp_path / "no" / "x.txt"], "accepted"),
        ([folder / "a.keras", folder / "a.h5", "-o", "/proc/nope/x.png"], "cannot write"),
        ([folder / "a.keras", folder / "a.h5", "--tolerance", "-1"], "--tolerance"),
        ([folder / "a.keras", folder / "a.weights.h5", "--input", tmp_path], ""),
    ]
    for args, phrase in cases:
        proc = _cli(*args, "--no-progress")
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert phrase in lines[0]


def test_json_round_trip(files: dict[str, Any]) -> None:
    from inspector.compare import Comparison
    from inspector.serialize import from_json, to_json

    result = _cmp(files, "permuted.keras")
    data = json.loads(json.dumps(to_json(result), allow_nan=False))
    back = from_json(Comparison, data)
    assert back.to_dict() == result.to_dict()


def test_dashboard_compare_page(files: dict[str, Any]) -> None:
    from streamlit.testing.v1 import AppTest

    from inspector.dashboard import MAIN_SCRIPT

    at = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120).run()
    at.radio(key="src_kind").set_value("Path").run()
    at.text_input(key="src_path").set_value(str(files["folder"] / "a.keras")).run()
    at.radio(key="page").set_value("Compare").run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    at.text_input(key="cmp_path").set_value(str(files["folder"] / "permuted.keras")).run()
    at.button(key="cmp_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    table = next(df.value for df in at.dataframe if "status" in df.value.columns)
    assert dict(zip(table["layer"], table["status"], strict=True))["c1"] == "changed"
    assert (table["status"] == "same").sum() == len(files["a"]) - 1
    assert int(table.set_index("layer").loc["c1", "sign-flipped maps"]) == int((SIGN < 0).sum())
    assert table.set_index("layer").loc["c1", "map correspondence"].startswith("8 of 8 maps (|cos| ≥ ")
    assert at.selectbox(key="cmp_layer").value == "c1"
    assert len(at.image) == 2  # drift overview and the most-changed maps
