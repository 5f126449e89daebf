"""Dataset examples (``inspector.examples``, ``inspector examples``) against a brute-force computation.

The brute force keeps every activation in memory: images read through ``inputs.load_input`` (the
``activations`` path, independent of the scan's decoder), all layers captured in one batch, each
map's per-image maximum and first argmax, sorted by (value desc, file path). The scan must return
the same files and positions with the same values (float32 tolerance: the scan runs a compiled
sub-model in batches), and the receptive-field box of each position.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from inspector.activations import capture
from inspector.errors import InputDataError, InspectorError, SelectionError
from inspector.examples import (
    CACHE_ENV,
    ExamplesResult,
    ScanSettings,
    cached_map_examples,
    crop_examples,
    find_examples,
    open_images,
)
from inspector.inputs import input_spec_from_model, load_input
from inspector.kerascompat import import_keras
from inspector.loader import open_model
from inspector.receptive import receptive_field
from inspector.serialize import from_json, to_json

N_IMAGES = 230


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Random smooth blobs, stripes and a rectangle: varied responses, no two images alike."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(1, 12), rng.uniform(1, 12), rng.uniform(0, 6.3)
        img[..., c] = 0.5 + 0.5 * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph) * rng.uniform(0.2, 1)
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[y0:y0 + rng.integers(2, h // 2), x0:x0 + rng.integers(2, w // 2)] = rng.uniform(0, 1, 3)
    img += rng.normal(0, 0.08, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    for n in range(N_IMAGES):
        sub = root / ("a" if n % 3 == 0 else "b/c" if n % 3 == 1 else "")
        sub.mkdir(parents=True, exist_ok=True)
        h, w = int(rng.integers(20, 48)), int(rng.integers(20, 48))
        suffix = ".jpg" if n % 4 == 0 else ".png"
        Image.fromarray(_texture(rng, h, w)).save(sub / f"img{n:03d}{suffix}")
    (root / "b" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG header, no image
    (root / "a" / "notes.jpg").write_text("not an image at all")
    (root / "readme.txt").write_text("ignored: not an image suffix")
    return root


def _models():
    keras = import_keras()
    L = keras.layers
    inp = keras.Input((24, 24, 3))
    x = L.Conv2D(6, 3, activation="relu", name="c1")(inp)
    x = L.Conv2D(5, 4, strides=2, padding="same", name="c2")(x)
    x = L.Conv2D(4, 3, dilation_rate=2, padding="same", name="c3")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(2, name="fc")(x)
    plain = keras.Model(inp, out, name="plain")

    inner = keras.Sequential([keras.Input((4, 10, 10)),
                              L.Conv2D(3, 3, data_format="channels_first", name="ic")], name="inner")
    inp2 = keras.Input((3, 20, 20))
    y = L.Conv2D(4, 3, strides=2, padding="same", data_format="channels_first", name="cf1")(inp2)
    y = inner(y)
    cf = keras.Model(inp2, y, name="cf_nested")
    return {"plain": (plain, ["c1", "c2", "c3", "pool"]), "cf_nested": (cf, ["cf1", "inner/ic"])}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    folder = tmp_path_factory.mktemp("models")
    for name, (model, layers) in _models().items():
        path = folder / f"{name}.keras"
        model.save(path)
        out[name] = (model, layers, path)
    return out


@pytest.fixture(autouse=True)
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def brute(images, models):
    """Every activation of every chosen layer of both models, in memory."""
    src = open_images(images)
    out = {}
    for name, (model, layers, _) in models.items():
        spec = input_spec_from_model(model)
        good, batch = [], []
        for rel in src.files:
            try:
                batch.append(load_input(str(images / rel), spec)[0])
                good.append(rel)
            except InputDataError:
                pass
        acts = capture(model, np.stack(batch), layers)
        out[name] = (good, acts)
    return out


def _brute_top(good: list[str], acts: np.ndarray, j: int, k: int) -> list[tuple[str, float, tuple[int, ...]]]:
    flat = acts[..., j].reshape(len(good), -1)
    where = np.argmax(flat, axis=1)
    values = flat[np.arange(len(good)), where]
    order = sorted(range(len(good)), key=lambda n: (-values[n], good[n]))[:k]
    spatial = acts.shape[1:-1]
    return [(good[n], float(values[n]), tuple(int(v) for v in np.unravel_index(where[n], spatial))) for n in order]


@pytest.mark.parametrize(("name", "k", "maps"), [("plain", 5, None), ("plain", 1, "0,2-3"), ("plain", 12, "1"),
                                                 ("cf_nested", 4, None)])
def test_top_k_equals_brute_force(images, models, brute, name, k, maps):
    _, layers, path = models[name]
    result = find_examples(path, images, layers, maps=maps, k=k, batch=16, use_cache=False)
    good, acts = brute[name]
    assert result.images_scanned == len(good) == N_IMAGES
    assert sorted(result.images_skipped) == ["a/notes.jpg", "b/corrupt.png"]
    assert result.files_ignored == 1
    with open_model(path) as index:
        for le in result.layers:
            a = acts[le.layer]
            assert le.n_maps == a.shape[-1] and tuple(le.output_size) == a.shape[1:-1]
            expected_maps = list(range(a.shape[-1])) if maps is None else [int(maps)] if maps == "1" else [0, 2, 3]
            assert [m.map for m in le.maps] == expected_maps
            for m in le.maps:
                want = _brute_top(good, a, m.map, k)
                assert [e.file for e in m.top] == [w[0] for w in want], (le.layer, m.map)
                assert [e.position for e in m.top] == [w[2] for w in want], (le.layer, m.map)
                np.testing.assert_allclose([e.value for e in m.top], [w[1] for w in want], rtol=1e-5, atol=1e-5)
                field = receptive_field(index, le.layer, (24, 24) if name == "plain" else (20, 20), map_index=m.map)
                assert [e.box for e in m.top] == [field.box(e.position) for e in m.top]


def test_cache_makes_a_rerun_instant_and_serves_smaller_k(images, models, cache_folder):
    _, _, path = models["plain"]
    first = find_examples(path, images, ["c2", "c3"], k=5, batch=32)
    assert not first.from_cache and any(cache_folder.rglob("*.npz"))
    again = find_examples(path, images, ["c3", "c2"], k=3, maps="0-1", batch=32)
    assert again.from_cache
    for le in again.layers:
        full = first.layer(le.layer)
        for m in le.maps:
            assert m.top == full.maps[m.map].top[:3]
    hits = cached_map_examples(path, "c2", 1, k=5)
    assert hits is not None and hits[0] == list(first.layer("c2").maps[1].top)
    assert cached_map_examples(path, "c1", 0) is None  # c1 was never scanned


def test_interrupted_scan_resumes(images, models, cache_folder):
    _, _, path = models["plain"]
    fresh = find_examples(path, images, ["c3"], k=4, batch=16, use_cache=False)
    calls: list[int] = []

    def interrupt(done: int, total: int, what: str) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        find_examples(path, images, ["c3"], k=4, batch=16, progress=interrupt)
    assert list(cache_folder.rglob("*.partial.npz"))
    resumed_from: list[int] = []
    result = find_examples(path, images, ["c3"], k=4, batch=16,
                           progress=lambda done, total, what: resumed_from.append(done))
    assert resumed_from[0] > 16 * 3 - 1  # started after the three batches already done
    assert result == fresh
    assert not list(cache_folder.rglob("*.partial.npz"))


def test_zip_gives_the_folder_result_and_json_round_trips(images, models, tmp_path):
    _, _, path = models["plain"]
    archive = tmp_path / "images.zip"
    src = open_images(images)
    with zipfile.ZipFile(archive, "w") as zf:
        for rel in [*src.files, "readme.txt"]:
            zf.write(images / rel, rel)
    from_folder = find_examples(path, images, "c2", k=3, maps="0-2", use_cache=False)
    from_zip = find_examples(path, archive, "c2", k=3, maps="0-2", use_cache=False)
    assert from_zip.layers == from_folder.layers
    assert from_zip.images_skipped == from_folder.images_skipped and from_zip.files_ignored == 1
    data = json.loads(json.dumps(to_json(from_zip), allow_nan=False))
    assert from_json(ExamplesResult, data) == from_zip
    top = data["layers"][0]["maps"][0]["top"][0]
    assert set(top) == {"file", "value", "position", "box"} and len(top["position"]) == 2 and len(top["box"]) == 4
    rows = crop_examples(from_zip, "c2", [0])
    example, crop = rows[0][1][0]
    y0, x0, y1, x1 = example.box
    assert crop.shape == (y1 - y0, x1 - x0, 3) and crop.dtype == np.uint8


def test_bad_input_is_one_line(images, models, tmp_path):
    _, _, path = models["plain"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    cases = [
        (lambda: find_examples(path, empty, "c1"), InputDataError, "no images found"),
        (lambda: find_examples(path, tmp_path / "missing", "c1"), InputDataError, "folder or a .zip"),
        (lambda: find_examples(path, images, "fc"), SelectionError, "no spatial maps"),
        (lambda: find_examples(path, images, "gap"), SelectionError, "no spatial maps"),
        (lambda: find_examples(path, images, "c1", k=0), SelectionError, "positive integer"),
        (lambda: find_examples(path, images, "c1", maps="40"), SelectionError, "out of range"),
        (lambda: find_examples(path, images, "c1", settings=ScanSettings(size=(30, 30))), InputDataError, "--size"),
    ]
    for call, kind, words in cases:
        with pytest.raises(kind) as info:
            call()
        text = str(info.value)
        assert words in text and "\n" not in text and "Received:" in text


def _cli(*args: str, env_cache: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, CACHE_ENV: str(env_cache)}
    return subprocess.run([sys.executable, "-m", "inspector", "examples", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_json_contact_sheet_and_errors(images, models, tmp_path, cache_folder):
    _, _, path = models["plain"]
    out_json, sheet = tmp_path / "ex.json", tmp_path / "sheet.png"
    proc = _cli(str(path), str(images), "--layer", "c1", "--layer", "c3", "--maps", "0-3", "--k", "4",
                "--json", str(out_json), "-o", str(sheet), env_cache=cache_folder)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out_json.read_text())
    api = find_examples(path, images, ["c1", "c3"], maps="0-3", k=4)
    assert api.from_cache  # the CLI's scan was stored
    assert data == json.loads(json.dumps(to_json(api)))
    assert data["images_scanned"] == N_IMAGES and len(data["layers"]) == 2
    for layer in ("c1", "c3"):
        png = tmp_path / f"sheet-{layer}.png"
        assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    bad = [
        ([str(path), str(tmp_path / "nothing"), "--layer", "c1"], "folder or a .zip"),
        ([str(path), str(images), "--layer", "fc"], "no spatial maps"),
        ([str(path), str(images), "--layer", "c1", "--k", "0"], "--k"),
        ([str(path), str(images), "--layer", "c1", "--engine", "ray", "--ray-address", "127.0.0.1:1"],
         "no Ray cluster answers"),
    ]
    for args, words in bad:
        proc = _cli(*args, env_cache=cache_folder)
        assert proc.returncode == 2, (args, proc.stderr)
        last = proc.stderr.strip().splitlines()[-1]
        assert words in last and "Traceback" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             object_store_memory=80 * 1024 * 1024)
    yield ray
    ray.shutdown()


def test_ray_engine_gives_the_local_result(images, models, local_ray):
    _, layers, path = models["plain"]
    local = find_examples(path, images, layers, k=5, batch=16, use_cache=False)
    on_ray = find_examples(path, images, layers, k=5, batch=16, engine="ray", use_cache=False)
    a, b = to_json(local), to_json(on_ray)
    for la, lb in zip(a["layers"], b["layers"], strict=True):
        for ma, mb in zip(la["maps"], lb["maps"], strict=True):
            np.testing.assert_allclose([e["value"] for e in mb["top"]], [e["value"] for e in ma["top"]], rtol=1e-5)
            for e in ma["top"] + mb["top"]:
                e["value"] = round(e["value"], 3)
    assert a == b
    assert isinstance(on_ray, ExamplesResult) and sorted(on_ray.images_skipped) == ["a/notes.jpg", "b/corrupt.png"]


def test_errors_are_inspector_errors():
    assert issubclass(InputDataError, InspectorError) and issubclass(SelectionError, InspectorError)


# -- dashboard ---------------------------------------------------------------------------------------------

def _panel_script(model_path: str, layer: str, map_index: int) -> None:
    from inspector.dashboard import loading
    from inspector.dashboard.examples_panel import examples_panel

    key = loading.model_key(model_path)
    examples_panel(loading.load_index(*key), key, layer, map_index)


def test_dashboard_examples_page_and_filters_panel(images, models, cache_folder, monkeypatch):
    import time

    from streamlit.testing.v1 import AppTest

    from inspector.dashboard import MAIN_SCRIPT

    _, _, path = models["plain"]
    panel = AppTest.from_function(_panel_script, args=(str(path), "c2", 1), default_timeout=120).run()
    assert not panel.exception and not panel.image  # nothing cached: a hint and a button, no scan
    assert any("no scan" in c.value for c in panel.caption) and panel.button

    at = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120).run()
    at.radio(key="src_kind").set_value("Path").run()
    at.text_input(key="src_path").set_value(str(path)).run()
    at.radio(key="page").set_value("Examples").run()
    at.text_input(key="ex_folder").set_value(str(images)).run()
    at.multiselect(key="ex_layers").set_value(["c2"]).run()
    at.number_input(key="ex_k").set_value(4).run()
    at.button(key="ex_run").click().run()
    deadline = time.monotonic() + 120
    while not at.success and time.monotonic() < deadline:
        time.sleep(1.0)
        at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"{N_IMAGES} images scanned, 2 skipped" in at.success[0].value
    assert any("c2: maps 0–4 of 5" in c for img in at.image for c in img.captions)
    assert at.query_params["page"] == "examples" and at.query_params["layer"] == "c2"  # the view is in the URL

    panel = AppTest.from_function(_panel_script, args=(str(path), "c2", 1), default_timeout=120).run()
    assert not panel.exception
    captions = [c for img in panel.image for c in img.captions]
    api = find_examples(path, images, "c2", maps="1", k=4)
    assert api.from_cache and captions and api.layers[0].maps[0].top[0].file in captions[0]
