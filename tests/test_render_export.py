"""Figures, NPZ round trips, batch export with manifest, and the ``filters`` / ``export`` commands."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from inspector import open_model
from inspector.cli import main
from inspector.export import export_batch, load_npz, parse_formats, save_figure, save_npz
from inspector.filters import filters_for_map, filters_for_maps
from inspector.render.filters import display_set, plot_filterset, plot_layer, plot_rgb_filters
from inspector.render.mosaic import MOSAIC_GID, mosaic_image


def _pdf_pages(path) -> int:
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", path.read_bytes()))


def _axes_titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def _tile_labels(fig: Figure) -> list[str]:
    """First lines of the mosaic's tile labels, in drawing (row-major) order."""
    (ax,) = [ax for ax in fig.axes if any(im.get_gid() == MOSAIC_GID for im in ax.images)]
    return [t.get_text().split("\n")[0] for t in ax.texts]


def _tiles(fig: Figure) -> np.ndarray:
    image, layout = mosaic_image(fig)
    return layout.split(image)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """RGB first conv, a conv that reads 512 channels, BN, Flatten → Dense; random kernels and biases."""
    import keras

    L = keras.layers
    model = keras.Sequential([
        keras.Input((12, 12, 3)),
        L.Conv2D(8, 3, name="rgb"),
        L.Conv2D(512, 1, name="wide"),
        L.Conv2D(2, 3, name="deep"),
        L.BatchNormalization(name="bn"),
        L.MaxPooling2D(name="pool"),
        L.Flatten(name="flat"),
        L.Dense(3, name="fc"),
    ], name="render_model")
    rng = np.random.default_rng(1)
    for layer in model.layers:
        ws = layer.get_weights()
        new = [rng.normal(size=w.shape).astype("float32") for w in ws]
        if isinstance(layer, L.BatchNormalization):
            new[3] = np.abs(new[3]) + 0.5
        if ws:
            layer.set_weights(new)
    path = tmp_path_factory.mktemp("render") / "render_model.keras"
    model.save(path)
    return path


@pytest.mark.keras
def test_filterset_figure_labels_and_paging(model_path, tmp_path) -> None:
    with open_model(model_path) as index:
        fs = filters_for_map("deep", 1, index=index, sort="norm")
        fig = plot_filterset(fs, max_kernels=64)
        assert _tile_labels(fig) == [f"in {c}" for c in fs.input_channels[:64]]
        assert "showing 0-63: 64 of 512 (sorted by norm)" in fig._suptitle.get_text()
        # One image holds the kernels, in label order, unscaled on the shared symmetric range.
        assert sum(len(ax.images) for ax in fig.axes) == 1
        np.testing.assert_array_equal(_tiles(fig), fs.kernels[:64])
        limit = np.abs(fs.kernels[:64]).max()
        (im,) = [im for ax in fig.axes for im in ax.images if im.get_gid() == MOSAIC_GID]
        np.testing.assert_allclose(im.get_clim(), (-limit, limit))
        page2 = plot_filterset(fs, max_kernels=64, page=1)
        assert _tile_labels(page2) == [f"in {c}" for c in fs.input_channels[64:128]]
        np.testing.assert_array_equal(_tiles(page2), fs.kernels[64:128])
        # Per-kernel scale: each tile is its kernel divided by its own max |w|, on a copy.
        before = fs.kernels.copy()
        per = plot_filterset(fs, max_kernels=8, scale="per-kernel")
        np.testing.assert_array_equal(fs.kernels, before)  # the FilterSet's own kernels are untouched
        peaks = np.abs(before[:8]).reshape(8, -1).max(axis=1)
        assert not np.allclose(peaks, 1)  # random normal kernels: dividing by the peak really changes them
        drawn = _tiles(per)
        np.testing.assert_allclose(drawn, before[:8] / peaks[:, None, None])
        np.testing.assert_allclose(np.abs(drawn).reshape(8, -1).max(axis=1), 1.0)  # each tile peaks at ±1
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert texts[0] == f"in {fs.input_channels[0]}\n‖k‖ {fs.norms[0]:.3g}"
        png = save_figure(fig, tmp_path / "deep1.png", dpi=50)
        from PIL import Image

        with Image.open(png) as im:
            w_in, h_in = fig.get_size_inches()
            assert im.size == (round(w_in * 50), round(h_in * 50))
        svg = save_figure(fig, tmp_path / "deep1.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        pdf = save_figure(fig, tmp_path / "deep1.pdf")
        assert _pdf_pages(pdf) == 1


@pytest.mark.keras
def test_rgb_layer_dense_figures(model_path) -> None:
    with open_model(model_path) as index:
        sets = filters_for_maps("rgb", None, index=index)
        before = [fs.kernels.copy() for fs in sets]
        assert len(before) == 8
        fig = plot_rgb_filters(sets)
        images = _tiles(fig)
        assert images.shape == (8, 3, 3, 3)
        assert _tile_labels(fig) == [f"map {j}" for j in range(8)]
        # Symmetric normalisation on a copy: the FilterSets' kernels are unchanged by plotting ...
        for fs, k0 in zip(sets, before, strict=True):
            np.testing.assert_array_equal(fs.kernels, k0)
        np.testing.assert_array_equal(before[0], filters_for_map("rgb", 0, index=index).kernels)
        # ... and what was drawn is each kernel mapped into [0, 1] with zero at grey.
        for image, k0 in zip(images, before, strict=True):
            k = np.moveaxis(k0, 0, -1)
            np.testing.assert_allclose(image, 0.5 + k / (2 * np.abs(k).max()), rtol=1e-6)
            assert image.min() >= 0 and image.max() <= 1
            assert min(image.min(), 1 - image.max()) == pytest.approx(0, abs=1e-6)  # the peak reaches 0 or 1
        assert np.abs(np.stack(before)).max() > 1  # raw values lie outside [0, 1]: drawing really rescaled
        layer_fig = plot_layer(filters_for_maps("wide", range(4), index=index), max_channels=4)
        assert "showing 4 of 8 input channels" in layer_fig._suptitle.get_text()
        wide = filters_for_maps("wide", range(4), index=index)
        np.testing.assert_array_equal(_tiles(layer_fig).reshape(4, 4, 1, 1),
                                      np.stack([fs.kernels[:4] for fs in wide]))
        assert _tile_labels(layer_fig)[:4] == ["in 0", "in 1", "in 2", "in 3"]
        fc = filters_for_map("fc", 0, index=index)
        assert fc.image_kernels().kernels.shape == (2, 4, 4)  # pool output 4×4, 2 maps of 'deep'
        fc_fig = plot_filterset(fc)
        assert _tile_labels(fc_fig) == ["in 0", "in 1"]
        np.testing.assert_array_equal(_tiles(fc_fig), fc.image_kernels().kernels)


@pytest.mark.keras
def test_npz_round_trip(model_path, tmp_path) -> None:
    with open_model(model_path) as index:
        sets = filters_for_maps("deep", [0, 1], index=index, fold_bn=True, sort="norm")
        nobias = filters_for_map("rgb", 2, index=index)
        nobias = type(nobias)(**{**nobias.__dict__, "bias": None})
        path = save_npz(sets, tmp_path / "deep.npz", source=str(model_path))
        back = load_npz(path)
        with np.load(path) as raw:
            assert str(raw["source"]) == str(model_path) and str(raw["layer"]) == "deep"
            assert raw["kernels"].shape == (2, 512, 3, 3) and raw["bn_folded"].all()
        for a, b in zip(sets, back, strict=True):
            np.testing.assert_array_equal(a.kernels, b.kernels)
            np.testing.assert_array_equal(a.input_channels, b.input_channels)
            assert (a.bias, a.map_index, a.stage, a.kind, a.bn_folded) == (b.bias, b.map_index, b.stage, b.kind,
                                                                           b.bn_folded)
        (one,) = load_npz(save_npz(nobias, tmp_path / "nobias.npz"))
        assert one.bias is None
        with np.load(tmp_path / "nobias.npz") as raw:
            assert np.isnan(raw["bias"]).all()


@pytest.mark.keras
def test_batch_export_manifest_and_progress(model_path, tmp_path) -> None:
    calls = []
    with open_model(model_path) as index:
        manifest = export_batch(index, tmp_path / "out", layers="rgb,deep,fc", maps="0-1",
                                formats="png,svg,pdf,npz", fold_bn=True,
                                progress=lambda d, t, w: calls.append((d, t, w)))
        assert [c[0] for c in calls] == list(range(1, 7)) and {c[1] for c in calls} == {6}
        rows = json.loads((tmp_path / "out" / "manifest.json").read_text())["files"]
        with (tmp_path / "out" / "manifest.csv").open() as fh:
            assert len(list(csv.DictReader(fh))) == len(rows) == len(manifest.rows)
        for row in rows:
            assert (tmp_path / "out" / row["path"]).stat().st_size == row["bytes"] > 0
        # Nothing dropped: per map and figure format, the files together hold every input channel
        # ("deep" reads 512 channels: 8 pages of 64 per map), and nothing is marked truncated.
        for layer in ("rgb", "deep", "fc"):
            for j in (0, 1):
                for fmt in ("png", "svg"):
                    mine = [r for r in rows if (r["layer"], r["maps"], r["format"]) == (layer, str(j), fmt)]
                    got = set().union(*(_channel_set(r["input_channels"]) for r in mine))
                    shown = display_set(filters_for_map(layer, j, index=index))
                    assert got == set(shown.input_channels.tolist()), (layer, j, fmt)
                    assert not any(r["truncated"] for r in mine)
        deep_pngs = [r for r in rows if r["layer"] == "deep" and r["format"] == "png"]
        assert len(deep_pngs) == 2 * 8 and {r["input_channels"] for r in deep_pngs} >= {"0-63", "448-511"}
        assert all(_channel_set(r["input_channels"]) == set(range(512)) for r in rows
                   if r["layer"] == "deep" and r["format"] in ("pdf", "npz"))
        by_layer = {r["layer"]: r for r in rows if r["format"] == "pdf"}
        assert _pdf_pages(tmp_path / "out" / "deep.pdf") == 2 * 8
        assert by_layer["deep"]["bn_folded"] is True and by_layer["rgb"]["bn_folded"] is False
        assert "BN not folded" in by_layer["rgb"]["note"]
        back = load_npz(tmp_path / "out" / "deep.npz")
        np.testing.assert_array_equal(back[1].kernels,
                                      filters_for_map("deep", 1, index=index, fold_bn=True).kernels)


def _channel_set(text: str) -> set[int]:
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


@pytest.mark.keras
def test_export_caps_kernels_only_when_asked(model_path, tmp_path) -> None:
    with open_model(model_path) as index:
        rows = export_batch(index, tmp_path / "cap", layers="deep", maps="1", formats="png,npz", sort="norm",
                            max_kernels=10, per_page=4).rows
        pngs = [r for r in rows if r.format == "png"]
        assert len(pngs) == 3 and all(r.truncated for r in pngs)  # 10 kernels on pages of 4, 4, 2
        strongest = filters_for_map("deep", 1, index=index, sort="norm").input_channels[:10]
        assert set().union(*(_channel_set(r.input_channels) for r in pngs)) == set(strongest.tolist())
        (npz,) = [r for r in rows if r.format == "npz"]
        assert not npz.truncated and _channel_set(npz.input_channels) == set(range(512))


@pytest.mark.keras
def test_cli_filters_and_export(model_path, tmp_path, capsys) -> None:
    assert main(["filters", str(model_path), "deep", "1"]) == 0
    out = capsys.readouterr().out
    assert "layer deep (Conv2D" in out and "map 1: 512 input channel(s) [0-511]" in out and "bias" in out
    assert main(["filters", str(model_path), "rgb:0-1", "--consumers"]) == 0
    out = capsys.readouterr().out
    assert "map 0:" in out and "map 1:" in out and "read by wide" in out
    png = tmp_path / "f.png"
    assert main(["filters", str(model_path), "deep", "0", "-o", str(png), "--dpi", "40", "--fold-bn",
                 "--sort", "norm", "--npz", str(tmp_path / "f.npz")]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and load_npz(tmp_path / "f.npz")[0].bn_folded
    with np.load(tmp_path / "f.npz") as raw:  # the layout the CLI documents for one map
        assert raw["kernels"].shape == (512, 3, 3) and raw["input_channels"].shape == (512,)
        assert raw["bias"].shape == () and int(raw["maps"]) == 0
        channels = raw["input_channels"]
        assert sorted(channels.tolist()) == list(range(512))  # all channels, each once
        # Sorted by norm, strongest first: the norms computed here from the saved kernels never increase,
        # and random kernels make that order differ from the plain channel order.
        norms = np.linalg.norm(raw["kernels"].reshape(512, -1), axis=1)
        assert np.all(np.diff(norms) <= 0), norms
        assert channels.tolist() != list(range(512))
        assert str(raw["sorted_by"]) == "norm"
    # Each saved kernel is the one of its labelled channel (the unsorted, folded set reindexed).
    with open_model(model_path) as index:
        plain = filters_for_map("deep", 0, index=index, fold_bn=True)
    assert plain.input_channels.tolist() == list(range(512))
    np.testing.assert_allclose(load_npz(tmp_path / "f.npz")[0].kernels, plain.kernels[channels], rtol=1e-6)
    pdf = tmp_path / "maps.pdf"
    assert main(["filters", str(model_path), "wide", "0-2", "-o", str(pdf)]) == 0
    assert _pdf_pages(pdf) == 3
    capsys.readouterr()
    assert main(["export", str(model_path), "--layers", "d*", "--maps", "0", "--format", "png,npz",
                 "-o", str(tmp_path / "exp")]) == 0
    captured = capsys.readouterr()
    assert "[" in captured.err and "1/1" in captured.err  # progress bar on stderr
    assert (tmp_path / "exp" / "deep" / "map_0000.png").exists()


@pytest.mark.keras
@pytest.mark.parametrize(("argv", "needle"), [
    (["filters", "{m}", "deeep", "0"], "did you mean 'deep'"),
    (["filters", "{m}", "pool", "0"], "has no kernel"),
    (["filters", "{m}", "deep", "2"], "out of range"),
    (["filters", "{m}", "deep", "0-x"], "malformed map selection"),
    (["filters", "{m}", "deep", "0", "-o", "{t}/x.bmp"], "accepted: .png, .svg, .pdf"),
    (["filters", "{m}", "rgb", "0", "--fold-bn"], "cannot fold"),
    (["export", "{m}", "--format", "gif", "-o", "{t}/e"], "unknown export format"),
    (["export", "{m}", "--layers", "zz*", "-o", "{t}/e"], "no filter layer matches"),
])
def test_cli_bad_input_one_line(model_path, tmp_path, capsys, argv, needle) -> None:
    args = [a.format(m=model_path, t=tmp_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err and "Received:" in err


def test_parse_formats() -> None:
    assert parse_formats("png, SVG,.pdf,png") == ["png", "svg", "pdf"]
    from inspector import SelectionError

    with pytest.raises(SelectionError):
        parse_formats("")


def test_no_tensorflow_import() -> None:
    code = ("import sys, inspector.filters, inspector.selectors, inspector.render, inspector.render.filters, "
            "inspector.export, inspector.commands.filters, inspector.commands.export; "
            "import json; heavy = ('matplotlib.pyplot', 'tensorflow', 'keras'); "
            "print(json.dumps({m: m in sys.modules for m in heavy}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {"matplotlib.pyplot": False, "tensorflow": False, "keras": False}, loaded


@pytest.mark.keras
def test_montage_command_and_export(model_path, tmp_path, capsys) -> None:
    """The whole-layer montage from the CLI (`inspector montage`) and in a batch export (`--montage`)."""
    png = tmp_path / "rgb.png"
    assert main(["montage", str(model_path), "rgb", "-o", str(png)]) == 0
    out = capsys.readouterr().out
    assert "rgb montage" in out and png.stat().st_size > 0
    pdf = tmp_path / "deep.pdf"
    assert main(["montage", str(model_path), "deep", "-o", str(pdf), "--per-page", "1"]) == 0
    assert "page(s) 1, 2" in capsys.readouterr().out and _pdf_pages(pdf) == 2
    assert main(["montage", str(model_path), "deep", "--page", "7"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "montage page 7 does not exist" in err and "Received: 7" in err
    assert main(["export", str(model_path), "-o", str(tmp_path / "ex"), "--layers", "rgb,deep", "--maps", "0",
                 "--format", "png,pdf", "--montage", "--quiet"]) == 0
    rows = json.loads((tmp_path / "ex" / "manifest.json").read_text())["files"]
    montage = {(r["layer"], r["format"]): r for r in rows if r["note"] == "whole-layer montage"}
    assert set(montage) == {("rgb", "png"), ("rgb", "pdf"), ("deep", "png"), ("deep", "pdf")}
    assert montage[("rgb", "png")]["path"] == "rgb/montage.png" and not montage[("rgb", "png")]["truncated"]
    # deep reads 512 channels: its maps x channels grid shows 64 of them and says so
    assert montage[("deep", "png")]["truncated"] and montage[("deep", "png")]["input_channels"] == "0-63"


def test_cli_export_stops_cleanly_on_the_first_ctrl_c(tmp_path) -> None:
    """The first Ctrl-C (SIGINT) ends the export after the map in hand: exit 130, every file the manifest
    lists exists, the manifest says complete: false, and no further map was drawn."""
    import os
    import signal
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "out"
    model = repo / "sample_models" / "shapes_rgb.keras"
    proc = subprocess.Popen([sys.executable, "-m", "inspector", "export", str(model),
                             "-o", str(out), "--format", "png", "--dpi", "150", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*.png"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the export ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout and "Traceback" not in stderr and "stopping after this map" in stderr
    listed = json.loads((out / "manifest.json").read_text())
    assert listed["complete"] is False
    files = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert {row["path"] for row in listed["files"]} == files and len(files) >= 3
    with open_model(repo / "sample_models" / "shapes_rgb.keras") as index:
        every_map = sum(layer.spec.filters or 0 for layer in index.filter_layers() if layer.spec is not None)
    assert len(files) < every_map
