"""The dashboard driven through its keyed widgets with Streamlit's AppTest (no browser, real models).

Every test runs the real script (``inspector/dashboard/main.py``) on the bundled sample models and
asserts on what is rendered: table rows, kernel images and their captions, error texts.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from apptest_jobs import finish_job
from streamlit.testing.v1 import AppTest

from inspector import open_model
from inspector.dashboard import MAIN_SCRIPT, default_model, loading

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_models"
TIMEOUT = 120  # first runs import matplotlib/pandas; the activations page imports TensorFlow


def _app(model: Path | str | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    if model is not None:
        at.radio(key="src_kind").set_value("Path").run()
        at.text_input(key="src_path").set_value(str(model)).run()
    if page is not None:
        at.radio(key="page").set_value(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


def _table(at: AppTest, column: str) -> object:
    """The first dataframe that has ``column``."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with column {column!r}: {[list(d.value.columns) for d in at.dataframe]}")


# -- model source and overview ---------------------------------------------------------------------------

def test_default_model_is_the_bundled_sample_and_overview_lists_every_layer() -> None:
    at = _app()
    index = open_model(default_model())
    table = _table(at, "path")
    assert list(table["path"]) == index.paths
    assert list(table["params"]) == [layer.params for layer in index.layers]
    assert table.loc[table["path"] == "conv1", "weights"].item() == "kernel[5, 5, 1, 8] bias[8]"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == f"{index.total_params:,}"
    assert metrics["Layers"] == str(len(index.layers))
    assert not _errors(at)


def test_overview_search_and_kind_filter() -> None:
    at = _app()
    at.text_input(key="ov_search").set_value("conv").run()
    assert list(_table(at, "path")["path"]) == ["conv1", "conv2"]
    at.text_input(key="ov_search").set_value("").run()
    at.multiselect(key="ov_kinds").set_value(["dense", "norm"]).run()
    assert list(_table(at, "path")["path"]) == ["bn1", "digit_probs"]
    assert any("2 of 10 layers shown" in c.value for c in at.caption)


def test_bad_path_shows_one_line_error_and_the_app_recovers(tmp_path: Path) -> None:
    missing = tmp_path / "nope.keras"
    at = _app(model=missing)
    errors = _errors(at)
    assert len(errors) == 1 and "no file or folder" in errors[0] and str(missing) in errors[0]
    assert "\n" not in errors[0] and not at.exception
    at.text_input(key="src_path").set_value(str(SAMPLES / "shapes_rgb.h5")).run()
    assert not _errors(at)
    assert "sep3" in list(_table(at, "path")["path"])


def test_unsupported_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.keras"
    with zipfile.ZipFile(bogus, "w") as zf:
        zf.writestr("train.py", "print('hello')\n")
    at = _app(model=bogus)
    errors = _errors(at)
    assert len(errors) == 1 and str(bogus) in errors[0] and "\n" not in errors[0]
    assert not at.exception
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.keras"]  # nothing written beside it


def test_sample_picker_and_every_sample_format_opens() -> None:
    at = _app()
    options = at.selectbox(key="src_sample").options
    assert {"digits_cnn.keras", "digits_cnn.h5", "digits_cnn.weights.h5", "shapes_rgb_savedmodel/"} <= set(options)
    for name in ("shapes_rgb.keras", "digits_cnn.weights.h5", "shapes_rgb_savedmodel/"):
        at.selectbox(key="src_sample").set_value(name).run()
        assert not _errors(at) and not at.exception, name
        expected = open_model(SAMPLES / name.rstrip("/")).paths
        assert list(_table(at, "path")["path"]) == expected, name


def test_upload_a_model_and_a_zipped_savedmodel() -> None:
    at = _app()
    at.radio(key="src_kind").set_value("Upload").run()
    at.file_uploader(key="src_upload").set_value(
        ("digits_cnn.keras", (SAMPLES / "digits_cnn.keras").read_bytes(), "application/octet-stream")).run()
    assert not _errors(at)
    assert list(_table(at, "path")["path"]) == open_model(SAMPLES / "digits_cnn.keras").paths
    first_dir = at.session_state["_upload"].folder
    assert Path(first_dir).is_dir() and not Path(first_dir).is_relative_to(SAMPLES)

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in (SAMPLES / "shapes_rgb_savedmodel").rglob("*"):
            if f.is_file():
                zf.write(f, "shapes_rgb_savedmodel/" + f.relative_to(SAMPLES / "shapes_rgb_savedmodel").as_posix())
    at.file_uploader(key="src_upload").set_value(("shapes.zip", buf.getvalue(), "application/zip")).run()
    assert not _errors(at)
    assert any("`savedmodel`" in m.value for m in at.markdown)
    assert not Path(first_dir).exists()  # the replaced upload's temp folder is gone


def test_upload_over_the_size_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "MAX_UPLOAD_MB", 0)
    at = _app()
    at.radio(key="src_kind").set_value("Upload").run()
    at.file_uploader(key="src_upload").set_value(("big.keras", b"x" * 2048, "application/octet-stream")).run()
    errors = _errors(at)
    assert len(errors) == 1 and "larger than the 0 MB limit" in errors[0] and "big.keras" in errors[0]
    assert not at.exception


# -- filters ---------------------------------------------------------------------------------------------

def test_filters_layer_map_and_prev_next() -> None:
    at = _app(page="Filters")
    assert at.selectbox(key="flt_layer").options == ["conv1", "conv2", "digit_probs"]
    at.selectbox(key="flt_layer").set_value("conv2").run()
    at.number_input(key="flt_map").set_value(5).run()
    # The kernel grid of map 5, then the kernels of the next layer that read map 5.
    assert _captions(at) == ["conv2 · map 5 of 16 · 8 of 8 kernels shown (input channels 0, 1, 2, 3, 4, 5, 6, 7)",
                             "digit_probs: the kernels through which map 5 reaches its output maps"]
    at.button(key="flt_map_next").click().run()
    assert at.number_input(key="flt_map").value == 6 and "map 6 of 16" in _captions(at)[0]
    at.button(key="flt_map_prev").click().run()
    at.button(key="flt_map_prev").click().run()
    assert at.number_input(key="flt_map").value == 4
    # Switching to a layer with fewer maps clamps the map instead of failing.
    at.number_input(key="flt_map").set_value(15).run()
    at.selectbox(key="flt_layer").set_value("conv1").run()
    assert at.number_input(key="flt_map").value == 7 and "map 7 of 8" in _captions(at)[0]
    assert not _errors(at) and not at.exception


def test_filters_bias_norms_and_consumers_match_the_api() -> None:
    from inspector.filters import consumers_of_map, filters_for_map

    at = _app(page="Filters")
    at.selectbox(key="flt_layer").set_value("conv1").run()
    at.number_input(key="flt_map").set_value(3).run()
    index = open_model(SAMPLES / "digits_cnn.keras")
    fs = filters_for_map(index.layer("conv1"), 3, index=index)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Bias"] == f"{fs.bias:.4g}"
    assert metrics["BN folded"] == "no"
    norms = _table(at, "L2 norm")
    np.testing.assert_allclose(norms["L2 norm"], fs.norms)
    consumers = _table(at, "consumer")
    expected = consumers_of_map(index, "conv1", 3)
    assert list(consumers["consumer"]) == [s.consumer_path for s in expected.slices] == ["conv2"]
    assert consumers["via"].item() == "bn1 → relu1 → pool1"
    assert consumers["n_outputs"].item() == 16
    assert _captions(at)[1] == "conv2: the kernels through which map 3 reaches its output maps"


def test_filters_on_a_savedmodel_sample() -> None:
    at = _app(page="Filters")
    at.radio(key="src_kind").set_value("Sample model").run()
    at.selectbox(key="src_sample").set_value("shapes_rgb_savedmodel/").run()
    at.selectbox(key="flt_layer").set_value("dw2").run()
    at.number_input(key="flt_map").set_value(5).run()  # depthwise: map 5 = input channel 2, multiplier 1
    assert not _errors(at) and _captions(at)[0].startswith("dw2 · map 5 of 24 · 1 of 1 kernels shown (input "
                                                             "channels 2)")


def test_view_builders_downloads_round_trip() -> None:
    from inspector.dashboard import views
    from inspector.export import load_npz
    from inspector.filters import filters_for_map

    index = open_model(SAMPLES / "digits_cnn.keras")
    view = views.filter_view(index, "conv2", 4, cap=3, offset=3)
    assert view.png.startswith(b"\x89PNG") and list(view.shown) == [3, 4, 5]
    svg = views.filter_svg(view.filters, start=3, cap=3)
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    fs = filters_for_map(index.layer("conv2"), 4, index=index)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        path.write_bytes(views.filter_npz(view.filters))
        (back,) = load_npz(path)
    np.testing.assert_array_equal(back.kernels, fs.kernels)
    assert back.bias == fs.bias and back.map_index == 4


def test_filters_fold_bn_where_possible_and_disabled_with_a_reason_where_not() -> None:
    at = _app(page="Filters")
    at.toggle(key="flt_fold_bn").set_value(True).run()  # conv1 -> bn1: folds
    assert {m.label: m.value for m in at.metric}["BN folded"] == "yes"
    assert not at.toggle(key="flt_fold_bn").disabled and not at.warning
    at.selectbox(key="flt_layer").set_value("conv2").run()  # conv2 -> pool2: nothing to fold
    toggle = at.toggle(key="flt_fold_bn")
    assert toggle.disabled and toggle.value is False
    assert "No BatchNormalization reads its output" in toggle.help and "Received" not in toggle.help
    assert any("Fold BN: not available here" in c.value for c in at.caption)
    assert {m.label: m.value for m in at.metric}["BN folded"] == "no"
    assert "conv2 · map 0 of 16" in _captions(at)[0] and not _errors(at) and not at.warning


def test_fold_bn_toggle_behaves_the_same_on_the_weights_page() -> None:
    at = _app(page="Weights")
    assert not at.toggle(key="w_fold_bn").disabled  # conv1 -> bn1
    at.selectbox(key="w_layer").set_value("conv2").run()
    toggle = at.toggle(key="w_fold_bn")
    assert toggle.disabled and "No BatchNormalization reads its output" in toggle.help
    assert not _errors(at) and not at.warning


def test_filters_options_change_the_image_and_downloads_are_offered() -> None:
    at = _app(page="Filters")
    at.selectbox(key="flt_layer").set_value("conv2").run()
    first = at.image[0].value
    at.selectbox(key="flt_cmap").set_value("gray").run()
    second = at.image[0].value
    at.selectbox(key="flt_norm").set_value("kernel").run()
    at.selectbox(key="flt_sort").set_value("strongest first (L2 norm)").run()
    third = at.image[0].value
    assert len({first[0], second[0], third[0]}) == 3
    labels = [d.label for d in at.get("download_button")]
    assert labels == ["Download PNG", "Download SVG", "Download NPZ"]
    norms = _table(at, "L2 norm")["L2 norm"].to_numpy()
    assert np.all(np.diff(norms) <= 0)  # sorted strongest first


def test_filters_rgb_view_separable_stage_and_grid_cap() -> None:
    at = _app(model=SAMPLES / "shapes_rgb.keras", page="Filters")
    at.selectbox(key="flt_layer").set_value("conv1_rgb").run()
    at.toggle(key="flt_rgb").set_value(True).run()
    assert "RGB filter of 3 input channels" in _captions(at)[0]
    at.selectbox(key="flt_layer").set_value("sep3").run()
    assert at.selectbox(key="flt_stage").options == ["effective", "depthwise", "pointwise"]
    at.select_slider(key="flt_cap").set_value(16).run()
    assert "16 of 24 kernels shown" in _captions(at)[0]
    assert at.number_input(key="flt_page").value == 1  # grid pages count from 1
    at.number_input(key="flt_page").set_value(2).run()
    assert "8 of 24 kernels shown (input channels 16," in _captions(at)[0]
    at.selectbox(key="flt_stage").set_value("depthwise").run()
    assert "1 of 1 kernels shown" in _captions(at)[0]
    assert not _errors(at) and not at.exception


def test_filters_whole_layer_montage_kinds_pages_and_downloads() -> None:
    at = _app(model=SAMPLES / "shapes_rgb.keras", page="Filters")
    at.selectbox(key="flt_layer").set_value("conv1_rgb").run()
    at.toggle(key="flt_whole").set_value(True).run()
    assert _captions(at) == ["conv1_rgb · whole layer (12 maps) · one colour image per map (3 input channels)"]
    assert at.query_params["whole"] == "1"
    assert [d.label for d in at.get("download_button")] == ["Download montage PNG", "Download montage PDF"]
    at.selectbox(key="flt_layer").set_value("dw2").run()
    assert _captions(at)[0] == "dw2 · whole layer (24 maps) · one kernel per map"
    at.selectbox(key="flt_layer").set_value("sep3").run()
    at.selectbox(key="flt_stage").set_value("pointwise").run()
    assert _captions(at)[0] == ("sep3 · whole layer (24 maps) · 1×1 kernels as one input channel × output map "
                                "matrix")
    at.selectbox(key="flt_norm").set_value("layer").run()
    png = at.image[0].value
    assert not _errors(at) and not at.exception and png
    # Off again: the single-map view comes back on the map it showed.
    at.toggle(key="flt_whole").set_value(False).run()
    assert _captions(at)[0].startswith("sep3 · map 0 of 24")
    assert "whole" not in at.query_params


def test_montage_pages_and_file_downloads() -> None:
    from inspector.dashboard import views

    index = open_model(SAMPLES / "shapes_rgb.keras")
    info = views.montage_info(index, "conv1_rgb")
    assert (info.kind, info.pages, info.n_maps) == ("rgb", 1, 12)
    pdf = views.montage_file(index, "dw2", "pdf")
    png = views.montage_file(index, "dw2", "png")
    assert pdf.startswith(b"%PDF") and png.startswith(b"\x89PNG")
    pic = views.montage_picture(index, "dw2")
    from PIL import Image

    assert Image.open(io.BytesIO(pic.png)).width == 2 * pic.width  # hi-DPI: twice the pixels shown


def test_layer_range_is_the_drawn_max_not_the_stored_kernel() -> None:
    from inspector.dashboard import page_filters
    from inspector.filters import filters_for_map

    path = SAMPLES / "shapes_rgb.keras"
    key = loading.model_key(str(path))
    index = open_model(path)
    layer = index.layer("sep3")
    drawn = max(float(np.abs(filters_for_map(layer, j, index=index, stage="effective").kernels).max())
                for j in range(1))
    assert page_filters.cached_layer_range(key, "sep3", False, "effective") == pytest.approx(drawn)
    stored = float(np.abs(np.asarray(layer.weight("depthwise_kernel").read())).max())
    assert drawn != pytest.approx(stored)
    # BN folded (digits_cnn conv1 -> bn1): the folded kernels' max, a separate cache entry.
    dkey = loading.model_key(str(SAMPLES / "digits_cnn.keras"))
    dindex = open_model(SAMPLES / "digits_cnn.keras")
    folded = max(float(np.abs(filters_for_map(dindex.layer("conv1"), j, index=dindex, fold_bn=True).kernels).max())
                 for j in range(8))
    assert page_filters.cached_layer_range(dkey, "conv1", True, None) == pytest.approx(folded)
    assert page_filters.cached_layer_range(dkey, "conv1", False, None) != pytest.approx(folded)


def test_heatmap_pooling_maps_a_click_back_to_the_true_channel_and_map() -> None:
    from inspector.dashboard import views

    mat = np.random.default_rng(0).random((512, 300))
    mat[317, 123] = 10.0
    table = views.channel_heatmap(mat, max_side=64)
    assert len(table) == 64 * 60 and table["row"].nunique() == 64  # pooled 8 x 5
    cell = table.loc[table["norm"].idxmax()]
    assert (int(cell["channel"]), int(cell["map"])) == (317, 123)
    assert cell["channels"] == "312-319" and cell["maps"] == "120-124"
    # every cell opens the true argmax of its block
    for _, c in table.sample(20, random_state=0).iterrows():
        assert mat[int(c["channel"]), int(c["map"])] == pytest.approx(c["norm"])
    # a matrix already pooled by inspector.stats (channel_block) scales back to real indices
    assert int(views.channel_heatmap(np.eye(4), (2, 3))["map"].max()) == 9
    small = views.channel_heatmap(np.arange(6.0).reshape(2, 3))
    assert len(small) == 6 and list(small["channels"][:3]) == ["0", "0", "0"]
    index = open_model(SAMPLES / "digits_cnn.keras")
    assert views.grid_page_of(index, "conv2", 3, 7, cap=4) == 2 and views.grid_page_of(index, "conv2", 3, 7) == 1


def test_state_survives_page_switches() -> None:
    at = _app(page="Filters")
    at.selectbox(key="flt_layer").set_value("conv2").run()
    at.number_input(key="flt_map").set_value(9).run()
    at.radio(key="page").set_value("Overview").run()
    at.radio(key="page").set_value("Filters").run()
    assert at.selectbox(key="flt_layer").value == "conv2" and at.number_input(key="flt_map").value == 9


# -- the view in the URL ---------------------------------------------------------------------------------

def _app_at(query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=TIMEOUT)
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_query_params_open_a_view_and_follow_it() -> None:
    at = _app_at({"page": "filters", "layer": "conv2", "map": "5"})
    assert at.radio(key="page").value == "Filters"
    assert _captions(at)[0].startswith("conv2 · map 5 of 16")
    at.button(key="flt_map_next").click().run()
    assert at.query_params["map"] == "6" and at.query_params["layer"] == "conv2"
    at.selectbox(key="flt_cmap").set_value("gray").run()
    assert at.query_params["cmap"] == "gray" and at.query_params["page"] == "filters"
    # Back: the browser re-runs the script with the previous URL; its view wins, missing options reset.
    at.query_params.clear()
    at.query_params.update({"page": "filters", "layer": "conv2", "map": "5"})
    at.run()
    assert at.number_input(key="flt_map").value == 5 and at.selectbox(key="flt_cmap").value == "RdBu_r"
    assert _captions(at)[0].startswith("conv2 · map 5 of 16")
    at.radio(key="page").set_value("Weights").run()
    assert at.query_params["page"] == "weights" and at.query_params["layer"] == "conv1"


def test_query_params_options_pages_and_bad_values() -> None:
    at = _app_at({"page": "filters", "sample": "shapes_rgb.keras", "layer": "sep3", "stage": "pointwise",
                  "cap": "16", "grid": "2", "norm": "kernel", "sort": "norm", "fold": "1"})
    assert not _errors(at)
    assert at.selectbox(key="flt_stage").value == "pointwise" and at.select_slider(key="flt_cap").value == 16
    assert at.selectbox(key="flt_norm").value == "kernel"
    assert at.selectbox(key="flt_sort").value == "strongest first (L2 norm)"
    assert at.number_input(key="flt_page").value == 2 and "8 of 24 kernels shown" in _captions(at)[0]
    assert at.toggle(key="flt_fold_bn").value is True  # sep3 -> bn: folds
    assert at.query_params["sample"] == "shapes_rgb.keras" and at.query_params["stage"] == "pointwise"
    # A layer the model does not have, a map out of range, an unknown colour map: one warning, a clamped
    # map and the defaults, never an error.
    at = _app_at({"page": "filters", "layer": "nope", "map": "99", "cmap": "rainbow"})
    assert len(at.warning) == 1 and "'nope'" in at.warning[0].value
    assert at.selectbox(key="flt_layer").value == "conv1" and at.number_input(key="flt_map").value == 7
    assert at.query_params["layer"] == "conv1" and at.query_params["map"] == "7" and not _errors(at)
    at = _app_at({"page": "weights", "layer": "bn1", "log": "1"})
    assert at.selectbox(key="w_layer").value == "bn1" and at.toggle(key="w_log").value is True
    at = _app_at({"page": "no-such-page"})
    assert at.radio(key="page").value == "Overview" and not _errors(at)


def test_neighbourhood_graph_and_layer_links() -> None:
    from inspector.dashboard import views

    index = open_model(SAMPLES / "digits_cnn.keras")
    dot = views.neighbourhood_dot(index, "conv2")
    assert '"pool1" -> "conv2";' in dot and '"conv2" -> "pool2";' in dot and "penwidth" in dot
    rows = {r["path"]: r for r in views.layer_rows(index)}
    assert rows["conv2"]["inbound"] == "pool1" and rows["conv2"]["outbound"] == "pool2"
    at = _app(page="Filters")
    assert len(at.get("graphviz_chart")) == 1
    consumers = _table(at, "consumer")
    assert consumers["top_map"].item() in range(16)


# -- weights and export ----------------------------------------------------------------------------------

def test_weights_histograms_and_filter_health() -> None:
    at = _app(page="Weights")
    assert at.selectbox(key="w_layer").value == "conv1"
    assert _captions(at)[:2] == ["conv1 · kernel", "conv1 · bias"]
    assert len(at.image) == 3  # two histograms, map norms; the channel-norm matrix is a clickable chart
    assert any("click a cell to open that map" in m.value for m in at.markdown)
    health = _table(at, "dead")
    assert list(health["map"]) == list(range(8))
    tensors = _table(at, "tensor")
    assert list(tensors["tensor"]) == ["kernel", "bias"]
    at.selectbox(key="w_layer").set_value("bn1").run()
    assert len(at.image) == 4 and not _errors(at)  # gamma, beta, mean, variance; no health for BN


def _finish_export(at: AppTest) -> object:
    return finish_job(at, "_exp_job")


def test_export_layer_zip_with_manifest() -> None:
    at = _app(page="Export")
    at.text_input(key="exp_maps").set_value("0-3").run()
    at.multiselect(key="exp_formats").set_value(["png", "npz"]).run()
    at.button(key="exp_run").click().run()
    job = _finish_export(at)
    assert not _errors(at) and "4 maps exported" in at.success[0].value and "every kernel" in at.success[0].value
    assert job.name == "digits_cnn_conv1_filters.zip"
    with zipfile.ZipFile(io.BytesIO(job.result[0])) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
        arrays = np.load(io.BytesIO(zf.read("conv1.npz")))
    assert sorted(n for n in names if n.endswith(".png")) == [f"conv1/map_{j:04d}.png" for j in range(4)]
    assert "manifest.csv" in names
    assert json.dumps(manifest).count("map_0003.png") == 1
    assert arrays["kernels"].shape == (4, 1, 5, 5) and list(arrays["maps"]) == [0, 1, 2, 3]
    assert [d.label for d in at.get("download_button")] == ["Download zip"]
    summary = _table(at, "input channels in files")
    assert summary.to_dict("records")[0] | {"MB": 0} == {
        "layer": "conv1", "maps": 4, "files": 5, "MB": 0, "input channels in files": "0 (1)",
        "fewest channels of one map's figures": 1, "truncated maps": 0}


def test_export_kernels_per_figure_and_cap() -> None:
    at = _app(page="Export")
    at.selectbox(key="exp_layer").set_value("conv2").run()  # 8 input channels per map
    at.text_input(key="exp_maps").set_value("2").run()
    at.multiselect(key="exp_formats").set_value(["png"]).run()
    at.number_input(key="exp_per_page").set_value(3).run()
    at.button(key="exp_run").click().run()
    job = _finish_export(at)
    rows = [r for r in job.result[2].rows if r.format == "png"]
    assert [r.path for r in rows] == ["conv2/map_0002.png", "conv2/map_0002_p2.png", "conv2/map_0002_p3.png"]
    assert [r.input_channels for r in rows] == ["0-2", "3-5", "6-7"] and not any(r.truncated for r in rows)
    # The cap: only the first 5 kernels, marked truncated, and said so.
    at.toggle(key="exp_cap_on").set_value(True).run()
    at.number_input(key="exp_max_kernels").set_value(5).run()
    at.button(key="exp_run").click().run()
    job = _finish_export(at)
    rows = [r for r in job.result[2].rows if r.format == "png"]
    assert [r.input_channels for r in rows] == ["0-2", "3-4"] and all(r.truncated for r in rows)
    assert "1 maps truncated by the cap" in at.success[0].value
    assert _table(at, "truncated maps")["truncated maps"].tolist() == [1]


def test_export_job_cancel_stops_at_the_next_map() -> None:
    import threading

    from inspector.dashboard.page_export import ExportJob

    job = ExportJob("x.zip", ("m", 0, 0), total=100)
    gate = threading.Event()
    seen = []

    def work(progress: object) -> tuple[bytes, int, object]:
        for j in range(1, 101):
            progress(j, 100, f"layer:{j}")  # type: ignore[operator]
            seen.append(j)
            if j == 3:
                gate.set()
                job.cancel.wait(5)
        raise AssertionError("not cancelled")

    thread = threading.Thread(target=job.run, args=(work,))
    thread.start()
    gate.wait(5)
    assert job.running and "left" in job.eta_text()
    job.cancel.set()
    thread.join(5)
    assert job.cancelled and not job.running and job.error is None and job.result is None
    assert seen == [1, 2, 3] and job.done == 4  # the callback raised at map 4


def test_export_bad_selection_is_an_error() -> None:
    at = _app(page="Export")
    at.radio(key="exp_scope").set_value("Whole model").run()
    at.text_input(key="exp_maps").set_value("40-2").run()
    at.button(key="exp_run").click().run()
    errors = _errors(at)
    assert len(errors) == 1 and "runs backwards" in errors[0] and not at.exception


# -- activations (imports TensorFlow) --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.keras
def test_activations_grid_decomposition_and_wrong_image() -> None:
    at = _app(page="Activations")
    assert not _errors(at), _errors(at)
    assert _captions(at) == ["input (stretched to 0–1 for display)", "conv1 output (1, 16, 16, 8)",
                             "conv1 map 0: contributions, bias, pre-activation, output"]
    at.number_input(key="act_map").set_value(3).run()
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Max |Σ − Keras|"]) < 1e-4
    at.selectbox(key="act_layer").set_value("conv2").run()
    at.number_input(key="act_topk").set_value(3).run()
    top = _table(at, "share")
    assert len(top) == 3 and np.all(np.diff(top["energy (Σ contribution²)"].to_numpy()) <= 0)
    # A bundled photograph (grayscale model: converted) decomposes as exactly as the generated picture.
    at.selectbox(key="act_sample").set_value("photo: chelsea").run()
    assert not _errors(at), _errors(at)
    assert float({m.label: m.value for m in at.metric}["Max |Σ − Keras|"]) < 1e-4
    at.radio(key="act_input").set_value("Upload").run()
    at.file_uploader(key="act_upload").set_value(("photo.png", b"not an image", "image/png")).run()
    errors = _errors(at)
    assert len(errors) == 1 and "cannot read the image" in errors[0] and "photo.png" in errors[0]
    at.file_uploader(key="act_upload").set_value(
        ("digit.npy", (SAMPLES / "sample_input_digit.npy").read_bytes(), "application/octet-stream")).run()
    assert not _errors(at) and "conv2 output (1, 8, 8, 16)" in _captions(at)


@pytest.mark.slow
@pytest.mark.keras
def test_activations_on_weights_only_file_says_why() -> None:
    at = _app(model=SAMPLES / "digits_cnn.weights.h5", page="Activations")
    errors = _errors(at)
    assert len(errors) == 1 and "weights only" in errors[0] and not at.exception


# -- the `inspector app` command -------------------------------------------------------------------------

def test_inspector_app_command_line() -> None:
    import argparse

    from inspector.commands import app as app_cmd

    parser = argparse.ArgumentParser()
    app_cmd.register(parser)
    cmd, env = app_cmd.build_command(parser.parse_args(["--port", "8765", "--headless"]))
    assert cmd[1:5] == ["-m", "streamlit", "run", str(MAIN_SCRIPT)]
    assert cmd[cmd.index("--server.port") + 1] == "8765" and cmd[cmd.index("--server.headless") + 1] == "true"
    assert cmd[cmd.index("--server.fileWatcherType") + 1] == "none"
    assert cmd[-2:] == ["--", str(default_model())] and env["INSPECTOR_APP_MODEL"] == str(default_model())
    cmd, env = app_cmd.build_command(parser.parse_args(["/no/such/model.keras"]))
    assert cmd[-1] == "/no/such/model.keras"  # not checked here: the app shows the error page


# -- feature visualization: the Visualize page and the Filters panel -------------------------------------------

@pytest.mark.slow
@pytest.mark.keras
def test_visualize_page_runs_in_background_and_matches_the_api() -> None:
    from inspector.runtime import load_runnable
    from inspector.service import visualize_with_references

    at = _app_at({"page": "visualize", "layer": "conv2", "maps": "0-3", "steps": "8"})
    assert not _errors(at), _errors(at)
    assert at.button(key="vis_run").label == "Visualize 4 maps of conv2"
    at.button(key="vis_run").click().run()
    job = finish_job(at, "_vis_job")
    assert job.error is None and not job.cancelled and job.done == job.total == 8
    assert not _errors(at), _errors(at)
    table = _table(at, "× best natural")
    assert table["map"].tolist() == [0, 1, 2, 3]
    # The numbers on screen are the API's for the same settings (same seed: same images).
    api = visualize_with_references(load_runnable(SAMPLES / "digits_cnn.keras"), "conv2", [0, 1, 2, 3], steps=8,
                                    seed=0)
    np.testing.assert_allclose(table["activation"].to_numpy(), api.activation, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(table["best natural image"].to_numpy(), api.reference.best_image, rtol=1e-4)
    assert api.reference.n_images >= 13  # the sample inputs and the bundled photographs
    assert [d.label for d in at.get("download_button")] == ["Download PNG", "Download PDF", "Download NPZ"]
    assert at.query_params["page"] == "visualize" and at.query_params["maps"] == "0-3"
    # Back on the same view later: the stored result is shown at once, with no run button.
    at.text_input(key="vis_maps").set_value("0-1").run()
    assert at.button(key="vis_run").label == "Visualize 2 maps of conv2"
    at.text_input(key="vis_maps").set_value("0-3").run()
    assert not [b for b in at.button if b.key == "vis_run"] and len(_table(at, "activation")) == 4
    at.text_input(key="vis_maps").set_value("0-99").run()
    errors = _errors(at)
    assert len(errors) == 1 and "out of range" in errors[0] and "0-15" in errors[0]


@pytest.mark.slow
@pytest.mark.keras
def test_visualize_job_cancel_stops_and_says_so() -> None:
    at = _app_at({"page": "visualize", "layer": "conv1", "maps": "0", "steps": "4000"})
    at.button(key="vis_run").click().run()
    job = at.session_state["_vis_job"]
    job.cancel.set()
    finish_job(at, "_vis_job")
    assert job.cancelled and job.result is None
    assert any("Cancelled after" in w.value for w in at.warning)


@pytest.mark.slow
@pytest.mark.keras
def test_filters_panel_shows_what_a_map_responds_to() -> None:
    at = _app_at({"page": "filters", "layer": "conv2", "map": "3"})
    at.toggle(key="flt_vis_on").set_value(True).run()
    at.number_input(key="flt_vis_steps").set_value(8).run()
    at.button(key="flt_vis_run").click().run()
    finish_job(at, "_flt_vis_job")
    assert not _errors(at), _errors(at)
    caption = next(c for c in _captions(at) if "the best of" in c)
    assert caption.startswith("activation ") and "natural images and 200 crops" in caption
    at.button(key="flt_map_next").click().run()  # another map: not run yet
    assert at.button(key="flt_vis_run").label == "Visualize map 4"


@pytest.mark.slow
def test_filters_panel_on_a_weights_only_file_says_why() -> None:
    at = _app(model=SAMPLES / "digits_cnn.weights.h5", page="Filters")
    at.toggle(key="flt_vis_on").set_value(True).run()
    assert any("weights only" in i.value for i in at.info) and not _errors(at)


def test_filters_page_links_to_the_examples_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path))  # no scan cached: the panel offers one
    at = _app_at({"page": "filters", "layer": "conv2", "map": "3"})
    button = at.button(key="examples_open_conv2")
    assert button.label.startswith("Find the images that excite this map")
    button.click().run()
    assert at.radio(key="page").value == "Examples" and at.query_params["page"] == "examples"
    assert not _errors(at), _errors(at)


@pytest.mark.slow
@pytest.mark.keras
def test_visualize_page_input_range_is_in_the_url_and_checked() -> None:
    at = _app_at({"page": "visualize", "layer": "conv2", "maps": "0", "steps": "4", "pre": "caffe"})
    assert at.selectbox(key="vis_pre").value == "caffe"
    at.button(key="vis_run").click().run()
    job = finish_job(at, "_vis_job")
    # digits_cnn reads one grey channel: the RGB preset is refused in one line, and the page stays usable.
    assert job.error is not None and "'caffe' is for RGB models" in job.error and "\n" not in job.error
    assert any("'caffe' is for RGB models" in e for e in _errors(at))
    at.selectbox(key="vis_pre").set_value("scale01").run()
    assert at.query_params["pre"] == "scale01" and at.button(key="vis_run").label == "Visualize 1 map of conv2"


def test_visualize_page_on_a_weights_only_file_says_why() -> None:
    at = _app(model=SAMPLES / "digits_cnn.weights.h5", page="Visualize")
    errors = _errors(at)
    assert len(errors) == 1 and "weights only" in errors[0] and "to visualize its maps" in errors[0]


def test_cancelled_export_zips_the_maps_done(tmp_path: Path) -> None:
    """Cancel during an export ends it cleanly after the map in hand: the zip holds the maps done (figures,
    the layer's NPZ with those maps, a manifest saying complete: false), and nothing of the next maps."""
    from inspector.dashboard import jobs
    from inspector.dashboard.page_export import build_zip
    from inspector.export import load_npz

    calls: list[int] = []

    def progress(done: int, total: int, what: str) -> None:
        calls.append(done)
        if done >= 3:
            raise jobs.JobCancelled

    with open_model(SAMPLES / "digits_cnn.keras") as index:
        layer = index.filter_layers()[1].path
        data, done, manifest = build_zip(index, [layer], "0-9", ["png", "npz"], progress=progress)
    assert calls == [1, 2, 3] and done == 3 and not manifest.complete
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        listed = json.loads(zf.read("manifest.json"))
        stem = layer.replace("/", "__")
        assert {f"{stem}/map_{j:04d}.png" for j in range(3)} <= names
        assert not any(f"map_{j:04d}" in n for n in names for j in range(3, 10))
        assert listed["complete"] is False and {r["path"] for r in listed["files"]} <= names
        npz = zf.read(f"{stem}.npz")
    (tmp_path / "partial.npz").write_bytes(npz)
    assert [fs.map_index for fs in load_npz(tmp_path / "partial.npz")] == [0, 1, 2]


@pytest.mark.keras
def test_visualize_page_offers_layers_without_kernels() -> None:
    """Feature visualization works on any layer's output (a ResNet block's Add, an activation), so the
    Visualize page lists every layer but the inputs, while a kernel page still lists kernel layers only."""
    at = _app_at({"page": "visualize", "layer": "relu1", "maps": "0-1", "steps": "4"})
    assert not _errors(at) and not at.warning, (_errors(at), [w.value for w in at.warning])
    assert at.selectbox(key="vis_layer").value == "relu1"
    with open_model(SAMPLES / "digits_cnn.keras") as index:
        every = [layer.path for layer in index.layers if layer.kind != "input"]
        kernels = [layer.path for layer in index.filter_layers()]
    assert at.selectbox(key="vis_layer").options == every and "relu1" not in kernels
    at.button(key="vis_run").click().run()
    job = finish_job(at, "_vis_job")
    assert job.error is None and job.result is not None and not _errors(at)
    at = _app_at({"page": "filters", "layer": "relu1"})
    assert any("not a layer with kernels" in w.value for w in at.warning)
    assert at.selectbox(key="flt_layer").options == kernels
