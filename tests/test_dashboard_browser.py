"""End to end: the real Streamlit server in headless Chromium (Playwright), on the bundled samples.

The server runs as a child process on a free localhost port and is killed in the fixture teardown.
Screenshots of every page go to ``test-artifacts/`` (gitignored) for people to look at. Chromium is
the system one (``/usr/bin/chromium``); nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.dashboard import MAIN_SCRIPT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 90.0  # a busy shared machine: streamlit itself needs a few seconds to start
UI_TIMEOUT_MS = 120_000  # the activations page imports TensorFlow on first use

if os.environ.get("CI"):  # in CI a missing browser is a broken install step, not a reason to skip
    import playwright.sync_api as playwright_api

    assert os.path.exists(CHROMIUM), "Debian chromium is missing: `make test` installs it with apt-get"
else:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("system chromium not installed at /usr/bin/chromium (make test installs it)",
                    allow_module_level=True)
expect = playwright_api.expect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(cmd_tail: list[str], *, via_cli: bool = False, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the dashboard (``python -m streamlit run`` or ``inspector app``), yield its URL, kill it.
    ``env``: extra environment variables of the server."""
    port = _free_port()
    if via_cli:
        cmd = [sys.executable, "-m", "inspector", "app", *cmd_tail, "--headless", "--port", str(port)]
    else:
        # No file watcher: an edit to a module while a test runs (a shared checkout) would make Streamlit
        # re-import it on the next rerun, giving a second st.cache_resource store that a running job never fills.
        cmd = [sys.executable, "-m", "streamlit", "run", str(MAIN_SCRIPT), "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal", *cmd_tail]
    extra = env or {}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    env.pop("INSPECTOR_APP_MODEL", None)
    env.update(extra)
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / f"server-{port}.log", "wb")  # noqa: SIM115 - closed in finally
    # Own process group: `inspector app` starts streamlit as a grandchild, and both must go.
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not answer on {url} within {START_TIMEOUT}s")
            time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _wait_idle(page: object, timeout_ms: int = UI_TIMEOUT_MS) -> None:
    """Wait until the script run triggered by the last interaction has finished.

    Streamlit marks the app root with ``data-test-script-state``; a run may start a moment after
    the click, so first give it the chance to start, then wait for it to stop.
    """
    with contextlib.suppress(playwright_api.TimeoutError):
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="running"]', timeout=1_500)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)
    page.wait_for_timeout(300)  # let the last deltas paint


def _goto_page(page: object, name: str) -> None:
    page.locator('[data-testid="stSidebar"] [data-testid="stRadio"]').filter(has_text="Page") \
        .get_by_text(name, exact=True).click()
    _wait_idle(page)


def _select(page: object, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (a searchable combobox)."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    _wait_idle(page)


def _shot(page: object, name: str) -> Path:
    """Screenshot of the whole page: Streamlit scrolls inside its main container, so the viewport
    is made as tall as the content for the shot (``full_page`` alone stops at the window)."""
    path = ARTIFACTS / f"dashboard-{name}.png"
    size = page.viewport_size
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
                           "[data-testid=stMainBlockContainer]')].map(e => e.scrollHeight), 0)")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 80, 6000))})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def _errors(page: object) -> list[str]:
    return page.locator('[data-testid="stAlertContentError"]').all_inner_texts()


def _open(browser: object, url: str) -> object:
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(url, timeout=UI_TIMEOUT_MS)
    page.wait_for_selector('[data-testid="stSidebar"]')
    _wait_idle(page)
    return page


def _download(page: object, label: str) -> bytes:
    with page.expect_download(timeout=UI_TIMEOUT_MS) as info:
        page.get_by_role("button", name=label).click()
    return Path(info.value.path()).read_bytes()


def test_every_page_in_a_real_browser(browser: object) -> None:
    sample = REPO / "sample_models" / "digits_cnn.keras"
    with _server(["--", str(sample)]) as url:
        page = _open(browser, url)
        exceptions: list[str] = []
        page.on("pageerror", lambda exc: exceptions.append(str(exc)))

        # Overview: model header, the layer table and the chart.
        # Waits retry until the element renders (Streamlit paints the page in several deltas).
        page.get_by_text("digits_cnn", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=UI_TIMEOUT_MS)
        expect(page.get_by_text("10 of 10 layers shown", exact=False)).to_have_count(1, timeout=UI_TIMEOUT_MS)
        _shot(page, "1-overview")

        # Filters: pick conv2, output map 5, check the grid image and the downloads.
        _goto_page(page, "Filters")
        _select(page, "Layer (", "conv2")
        number = page.locator('[data-testid="stNumberInput"]').filter(has_text="Output map").locator("input")
        number.fill("5")
        number.press("Enter")
        _wait_idle(page)
        caption = "conv2 · map 5 of 16 · 8 of 8 kernels shown"
        page.get_by_text(caption, exact=False).wait_for()
        images = page.locator('[data-testid="stImage"] img')
        expect(images).to_have_count(2, timeout=UI_TIMEOUT_MS)  # the kernel grid + next layer's kernels
        for k in range(2):
            assert images.nth(k).evaluate("img => img.complete && img.naturalWidth > 100")
        page.get_by_role("button", name="next ▶").click()
        _wait_idle(page)
        page.get_by_text("conv2 · map 6 of 16", exact=False).wait_for()
        png = _download(page, "Download PNG")
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
        npz = _download(page, "Download NPZ")
        assert npz.startswith(b"PK")  # a zip archive of .npy arrays
        _shot(page, "2-filters")

        # Activations: the forward pass and the decomposition of one map.
        _goto_page(page, "Activations")
        page.get_by_text("conv1 output (1, 16, 16, 8)", exact=False).wait_for(timeout=UI_TIMEOUT_MS)
        page.get_by_text("contributions, bias, pre-activation, output", exact=False).wait_for()
        expect(page.locator('[data-testid="stImage"] img')).to_have_count(3, timeout=UI_TIMEOUT_MS)  # input, maps, dec.
        _shot(page, "3-activations")

        # Weights: histograms and filter health.
        _goto_page(page, "Weights")
        page.get_by_text("Filter health", exact=True).wait_for()
        expect(page.locator('[data-testid="stImage"] img')).to_have_count(3, timeout=UI_TIMEOUT_MS)
        page.locator('[data-testid="stVegaLiteChart"]').first.wait_for()  # the clickable heat map
        _shot(page, "4-weights")

        # Export: build the zip of conv1 and download it.
        _goto_page(page, "Export")
        page.get_by_role("button", name="Build zip").click()
        page.get_by_text("8 maps exported", exact=False).wait_for()  # built in the background, polled
        _wait_idle(page)
        data = _download(page, "Download zip")
        assert data.startswith(b"PK")
        _shot(page, "5-export")

        assert not _errors(page), _errors(page)
        assert not exceptions, exceptions
        assert page.locator('[data-testid="stException"]').count() == 0


@pytest.mark.parametrize(("args", "expect", "shot"), [
    ([], "digits_cnn", "6-cli-default"),
    (["/no/such/model.keras"], "no file or folder at this path", "7-cli-bad-path"),
])
def test_inspector_app_command(browser: object, args: list[str], expect: str, shot: str) -> None:
    with _server(args, via_cli=True) as url:
        page = _open(browser, url)
        page.get_by_text(expect, exact=False).first.wait_for()
        _shot(page, shot)
        if args:
            errors = _errors(page)
            assert len(errors) == 1 and args[0] in errors[0]
            assert page.locator('[data-testid="stException"]').count() == 0
            # The sidebar still works: switching to a sample loads it.
            page.get_by_text("Sample model", exact=True).click()
            _wait_idle(page)
            page.get_by_text("10 of 10 layers shown", exact=False).wait_for()
            assert not _errors(page)
            _shot(page, shot + "-recovered")



# -- linked views: the URL, clicks on rows, the graph ------------------------------------------------------

def _caption(page: object, text: str) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)


def _click_row(page: object, table_key: str, row: int) -> None:
    """Click the row marker of data row ``row`` (0-based) of the dataframe with widget key ``table_key``
    (Streamlit draws tables on a canvas: rows are found by position, 35 px each under a 35 px header)."""
    frame = page.locator(f"[class*='st-key-{table_key}'] [data-testid='stDataFrame']").first
    frame.scroll_into_view_if_needed()
    box = frame.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 14, box["y"] + 35 + 35 * row + 17)
    _wait_idle(page)


def _query(page: object) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlparse

    return dict(parse_qsl(urlparse(page.url).query))


def test_url_round_trip_back_and_forward(browser: object) -> None:
    sample = REPO / "sample_models" / "digits_cnn.keras"
    with _server(["--", str(sample)]) as url:
        page = _open(browser, f"{url}/?page=filters&layer=conv2&map=5")
        _caption(page, "conv2 · map 5 of 16")
        assert _query(page) == {"page": "filters", "layer": "conv2", "map": "5"}
        page.get_by_role("button", name="next ▶").click()
        _wait_idle(page)
        _caption(page, "conv2 · map 6 of 16")
        assert _query(page)["map"] == "6"
        page.go_back()
        _wait_idle(page)
        _caption(page, "conv2 · map 5 of 16")
        assert _query(page)["map"] == "5"
        assert page.locator('[data-testid="stNumberInput"]').filter(has_text="Output map") \
            .locator("input").input_value() == "5"
        page.go_forward()
        _wait_idle(page)
        _caption(page, "conv2 · map 6 of 16")
        # Another page is another history entry too.
        _goto_page(page, "Weights")
        assert _query(page)["page"] == "weights"
        page.go_back()
        _wait_idle(page)
        _caption(page, "conv2 · map 6 of 16")
        assert _query(page)["page"] == "filters"
        _shot(page, "8-url-round-trip")
        assert not _errors(page)


def test_clicks_open_views(browser: object) -> None:
    from inspector import open_model

    sample = REPO / "sample_models" / "digits_cnn.keras"
    paths = open_model(sample).paths
    with _server(["--", str(sample)]) as url:
        page = _open(browser, url)
        page.locator(".st-key-ov_table [data-testid='stDataFrame']").wait_for()
        _shot(page, "9-overview-linked")
        # A layer row in the Overview opens the Filters page on that layer.
        _click_row(page, "ov_table", paths.index("conv2"))
        _caption(page, "conv2 · map 0 of 16")
        assert _query(page) == {"page": "filters", "layer": "conv2", "map": "0"}
        page.locator('[data-testid="stGraphVizChart"] svg').first.wait_for()  # drawn offline
        assert page.locator('[data-testid="stGraphVizChart"] svg g.node').count() >= 3
        # A "who reads" row opens the consumer at the map that reads this one most strongly.
        page.goto(f"{url}/?page=filters&layer=conv1&map=3")
        _wait_idle(page)
        _caption(page, "conv1 · map 3 of 8")
        _click_row(page, "flt_consumers_table", 0)
        assert _query(page)["layer"] == "conv2"
        _caption(page, f"conv2 · map {_query(page)['map']} of 16")
        _shot(page, "10-who-reads-clicked")
        assert not _errors(page)


@pytest.fixture(scope="module")
def no_bn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small conv model without any BatchNormalization (like VGG16)."""
    import keras

    path = tmp_path_factory.mktemp("nobn") / "plain_cnn.keras"
    keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3, name="c1"),
                      keras.layers.Conv2D(8, 3, name="c2"), keras.layers.GlobalAveragePooling2D(),
                      keras.layers.Dense(4, name="out")], name="plain_cnn").save(path)
    return path


def test_fold_bn_disabled_with_a_reason_without_bn(browser: object, no_bn_model: Path) -> None:
    with _server(["--", str(no_bn_model)]) as url:
        for query, shot in (("page=filters&layer=c1", "filters"), ("page=weights&layer=c1", "weights")):
            page = _open(browser, f"{url}/?{query}")
            toggle = page.locator('[data-testid="stCheckbox"]').filter(has_text="Fold")
            toggle.first.wait_for()
            assert toggle.locator("input").first.is_disabled()
            _caption(page, "Fold BN: not available here. No BatchNormalization reads its output")
            assert not page.get_by_text("Received:", exact=False).count()
            assert not _errors(page) and not page.locator('[data-testid="stAlertContentWarning"]').count()
            _shot(page, f"11-no-bn-{shot}")
            page.close()


def _big_model(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    made = REPO / "bench" / "models" / f"{name}.keras"  # bench/make_models.py, when it was run
    if made.exists():
        return made
    import keras

    path = tmp_path_factory.mktemp(name) / f"{name}.keras"
    builder = {"resnet50": keras.applications.ResNet50, "vgg16": keras.applications.VGG16,
               "mobilenetv2": keras.applications.MobileNetV2}[name]
    builder(weights=None).save(path)  # random weights: nothing is downloaded
    return path


def test_resnet50_overview_graph_and_filters(browser: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    model = _big_model("resnet50", tmp_path_factory)
    with _server(["--", str(model)]) as url:
        page = _open(browser, url)
        page.get_by_text("177 of 177 layers shown", exact=False).wait_for()
        _shot(page, "12-resnet50-overview")
        page = _open(browser, f"{url}/?page=filters&layer=conv2_block1_3_conv&map=7")
        _caption(page, "conv2_block1_3_conv · map 7 of 256")
        graph = page.locator('[data-testid="stGraphVizChart"] svg').first
        graph.wait_for()
        text = graph.text_content() or ""
        assert "conv2_block1_add" in text and "conv2_block1_0_bn" in text  # the skip connection
        assert not page.locator('[data-testid="stCheckbox"]').filter(has_text="Fold").locator("input") \
            .first.is_disabled()  # conv → BN: folding is offered
        _shot(page, "13-resnet50-filters")
        assert not _errors(page)


# -- issue 11: whole-layer montage, clickable heat map, background export -----------------------------------

@pytest.fixture(scope="module")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv2D layers reading 512 channels: ``wide`` (2 maps) and ``wide48`` (48 maps, a long export)."""
    import keras

    path = tmp_path_factory.mktemp("wide") / "wide512.keras"
    inp = keras.Input((4, 4, 512))
    model = keras.Model(inp, [keras.layers.Conv2D(2, 3, name="wide")(inp),
                              keras.layers.Conv2D(48, 3, name="wide48")(inp)], name="wide512")
    model.save(path)
    return path


def _channels(text: str) -> set[int]:
    from inspector.selectors import parse_maps

    return set(parse_maps(text).resolve(1 << 20)) if text else set()


def _export_setup(page: object, layer: str, maps: str) -> None:
    _select(page, "Layer (", layer)
    box = page.locator('[data-testid="stTextInput"]').filter(has_text="Maps").locator("input")
    box.fill(maps)
    box.press("Enter")
    _wait_idle(page)


def test_export_of_a_512_channel_map_covers_every_channel_and_cancel(browser: object, wide_model: Path) -> None:
    import io
    import json
    import zipfile

    with _server(["--", str(wide_model)]) as url:
        page = _open(browser, f"{url}/?page=export")
        _export_setup(page, "wide", "0")  # formats: png, npz
        page.get_by_role("button", name="Build zip").click()
        page.get_by_text("1 map exported", exact=False).wait_for(timeout=UI_TIMEOUT_MS)
        _wait_idle(page)
        data = _download(page, "Download zip")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            rows = json.loads(zf.read("manifest.json"))["files"]
        pngs = [r for r in rows if r["format"] == "png"]
        assert len(pngs) == 8 and all(r["maps"] == "0" and not r["truncated"] for r in pngs)  # 64 per figure
        covered: set[int] = set()
        for r in pngs:
            covered |= _channels(r["input_channels"])
        assert covered == set(range(512))
        npz = next(r for r in rows if r["format"] == "npz")
        assert _channels(npz["input_channels"]) == set(range(512))
        _caption(page, "every kernel included")  # the manifest summary (a table below it)
        expect(page.locator("[data-testid=stDataFrame]")).to_have_count(1)
        _shot(page, "14-export-512-channels")

        # A long export runs in the background: progress with time left, then Cancel.
        _export_setup(page, "wide48", "")
        page.get_by_role("button", name="Build zip").click()
        page.get_by_text("maps/s", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
        # the app stays usable while it runs: another widget answers
        _shot(page, "15-export-running")
        page.get_by_role("button", name="Cancel export").click()
        page.get_by_text("Export cancelled after", exact=False).wait_for(timeout=UI_TIMEOUT_MS)
        _wait_idle(page)
        assert page.get_by_role("button", name="Download zip").count() == 0
        _shot(page, "16-export-cancelled")
        # What was done before Cancel is offered, and says it is partial.
        partial = page.get_by_role("button", name=re.compile(r"Download the \d+ maps? exported"))
        done = int(re.search(r"\d+", partial.inner_text()).group())  # type: ignore[union-attr]
        with zipfile.ZipFile(io.BytesIO(_download(page, partial.inner_text()))) as zf:
            listed = json.loads(zf.read("manifest.json"))
            assert listed["complete"] is False and {r["path"] for r in listed["files"]} <= set(zf.namelist())
        assert 1 <= done < 48 and len({r["maps"] for r in listed["files"] if r["format"] == "png"}) == done
        assert not _errors(page)


def test_whole_layer_montage_of_an_rgb_first_layer(browser: object) -> None:
    sample = REPO / "sample_models" / "shapes_rgb.keras"
    with _server(["--", str(sample)]) as url:
        page = _open(browser, f"{url}/?page=filters&layer=conv1_rgb&whole=1")
        _caption(page, "conv1_rgb · whole layer (12 maps) · one colour image per map")
        img = page.locator('[data-testid="stImage"] img').first
        img.wait_for()
        page.wait_for_function("() => { const i = document.querySelector('[data-testid=stImage] img'); "
                               "return i && i.complete && i.naturalWidth > 0; }")
        natural, shown = img.evaluate("img => [img.naturalWidth, img.clientWidth]")
        assert shown > 100 and natural >= 2 * shown - 4, (natural, shown)  # hi-DPI: 2x the pixels shown
        png = _download(page, "Download montage PNG")
        assert png.startswith(b"\x89PNG")
        _shot(page, "17-montage-rgb")
        # Back to single maps: a map step reruns only the fragment and still moves the URL.
        page.get_by_text("Whole layer (every map)", exact=True).click()
        _wait_idle(page)
        _caption(page, "conv1_rgb · map 0 of 12")
        page.get_by_role("button", name="next ▶").click()
        _wait_idle(page)
        _caption(page, "conv1_rgb · map 1 of 12")
        assert _query(page)["map"] == "1" and "whole" not in _query(page)
        assert not _errors(page)


def test_heat_map_click_opens_filters_at_that_map(browser: object) -> None:
    sample = REPO / "sample_models" / "digits_cnn.keras"
    with _server(["--", str(sample)]) as url:
        page = _open(browser, f"{url}/?page=weights&layer=conv2")
        chart = page.locator('[data-testid="stVegaLiteChart"]').first
        chart.wait_for()
        page.wait_for_timeout(800)  # vega draws after the element appears
        _shot(page, "18-weights-heatmap")
        chart.scroll_into_view_if_needed()  # after the shot: it resizes the window
        page.wait_for_timeout(500)
        box = chart.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.45)
        _wait_idle(page)
        page.wait_for_function("() => location.search.includes('page=filters')", timeout=UI_TIMEOUT_MS)
        query = _query(page)
        assert query["page"] == "filters" and query["layer"] == "conv2"
        _caption(page, f"conv2 · map {query.get('map', '0')} of 16")
        _shot(page, "19-heatmap-clicked")
        assert not _errors(page)


@pytest.mark.parametrize(("name", "filters", "whole"), [
    ("resnet50", "conv2_block1_3_conv", "conv1_conv"),
    ("mobilenetv2", "block_16_project", "block_16_depthwise"),
])
def test_every_page_on_a_large_model(browser: object, tmp_path_factory: pytest.TempPathFactory, name: str,
                                     filters: str, whole: str) -> None:
    model = _big_model(name, tmp_path_factory)
    with _server(["--", str(model)]) as url:
        page = _open(browser, url)
        page.locator(".st-key-ov_table [data-testid='stDataFrame']").wait_for()
        _shot(page, f"20-{name}-overview")
        for query, text, shot in (
            (f"page=filters&layer={filters}&map=3", f"{filters} · map 3 of", "filters"),
            (f"page=filters&layer={whole}&whole=1", f"{whole} · whole layer", "montage"),
            (f"page=filters&layer={filters}&whole=1", f"{filters} · whole layer", "montage-1x1"),
            (f"page=weights&layer={filters}", "Filter health", "weights"),
            (f"page=activations&layer={filters}&map=3", f"{filters} map 3: contributions", "activations"),
            ("page=export", "Build zip", "export"),
        ):
            page.goto(f"{url}/?{query}")
            page.get_by_text(text, exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
            _wait_idle(page)
            _shot(page, f"20-{name}-{shot}")
            assert not _errors(page), (query, _errors(page))


# -- the new pages: Visualize, Examples, Compare, the report, the Filters-page panels ------------------------
# One server on the bundled digits sample serves them all (each test opens its own session), with an
# examples cache of its own so a scan from an earlier run is never found.

SAMPLE = REPO / "sample_models" / "digits_cnn.keras"


@pytest.fixture(scope="module")
def sample_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cache = tmp_path_factory.mktemp("examples-cache")
    with _server(["--", str(SAMPLE)], env={"INSPECTOR_CACHE_DIR": str(cache)}) as url:
        yield url


def _watch(page: object) -> list[str]:
    """Console errors and uncaught exceptions of ``page``, collected from now on."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    return problems


def _clean(page: object, problems: list[str]) -> None:
    assert not _errors(page), _errors(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not problems, problems


def _images_loaded(page: object, min_width: int = 100) -> int:
    """How many images of the page are decoded and at least ``min_width`` pixels wide."""
    return int(page.evaluate(f"() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                             f".filter(i => i.complete && i.naturalWidth >= {min_width}).length"))


def _keyed_download(page: object, key: str) -> bytes:
    """The file of the download button with widget key ``key`` (pages have several "Download NPZ")."""
    with page.expect_download(timeout=UI_TIMEOUT_MS) as info:
        page.locator(f".st-key-{key} button").first.click()
    return Path(info.value.path()).read_bytes()


def _npz(data: bytes) -> dict[str, object]:
    import io

    import numpy as np

    with np.load(io.BytesIO(data)) as arrays:
        return {name: arrays[name] for name in arrays.files}


def test_visualize_page_from_a_pasted_url_back_and_forward(browser: object, sample_server: str) -> None:
    import numpy as np

    page = _open(browser, f"{sample_server}/?page=filters&layer=conv2&map=5")
    problems = _watch(page)
    _caption(page, "conv2 · map 5 of 16")
    page.goto(f"{sample_server}/?page=visualize&layer=conv2&maps=0-3&steps=8")  # pasted in the address bar
    _wait_idle(page)
    page.get_by_role("button", name="Visualize 4 maps of conv2").click()
    summary = "natural images and 200 crops; 4 images, 8 steps, seed 0"  # the bundled inputs and photographs
    _caption(page, summary)  # the job ran in the background and the page redrew with its result
    _wait_idle(page)
    assert _images_loaded(page, 400) == 1  # the grid of 4 images above the activation curve
    assert page.get_by_role("button", name="Visualize 4 maps of conv2").count() == 0
    assert _query(page) == {"page": "visualize", "layer": "conv2", "maps": "0-3", "steps": "8"}
    arrays = _npz(_keyed_download(page, "vis_dl_npz"))
    assert arrays["map_index"].tolist() == [0, 1, 2, 3] and int(arrays["steps"]) == 8
    assert arrays["image"].shape == (4, 16, 16, 1) and np.isfinite(arrays["activation"]).all()
    assert arrays["activation_trace"].shape == (8, 4)
    _shot(page, "21-visualize-done")

    # Back: the view before the pasted URL; Forward: the visualization again, shown at once (kept per settings).
    page.go_back()
    _wait_idle(page)
    _caption(page, "conv2 · map 5 of 16")
    assert _query(page)["page"] == "filters"
    page.go_forward()
    _wait_idle(page)
    _caption(page, summary)
    assert page.get_by_role("button", name="Visualize 4 maps of conv2").count() == 0
    # Inside the app: other maps are another view (and not run yet); Back returns to the result.
    box = page.locator('[data-testid="stTextInput"]').filter(has_text="Maps").locator("input")
    box.fill("0-1")
    box.press("Enter")
    _wait_idle(page)
    page.get_by_role("button", name="Visualize 2 maps of conv2").wait_for()
    assert _query(page)["maps"] == "0-1"
    page.go_back()
    _wait_idle(page)
    _caption(page, summary)
    assert _query(page)["maps"] == "0-3" and box.input_value() == "0-3"
    assert _images_loaded(page, 400) == 1
    _clean(page, problems)


def test_filters_panel_feature_visualization(browser: object, sample_server: str) -> None:
    import re

    import numpy as np

    page = _open(browser, f"{sample_server}/?page=filters&layer=conv1&map=3")
    problems = _watch(page)
    _caption(page, "conv1 · map 3 of 8")
    before = _images_loaded(page)
    page.get_by_text("Feature visualization: the image that excites map 3 most", exact=True).click()
    _wait_idle(page)
    steps = page.locator(".st-key-flt_vis_steps input")
    steps.fill("8")
    steps.press("Enter")
    _wait_idle(page)
    page.get_by_role("button", name="Visualize map 3").click()
    _caption(page, "1 image, 8 steps, seed 0")
    _wait_idle(page)
    caption = page.get_by_text("natural images and 200 crops", exact=False).first.inner_text()
    assert re.match(r"activation \S+?( =|;) .*the best of \d+ natural images", caption), caption
    assert _images_loaded(page) == before + 1
    arrays = _npz(_keyed_download(page, "flt_vis_dl_npz"))
    assert arrays["map_index"].tolist() == [3] and arrays["image"].shape == (1, 16, 16, 1)
    shown = float(re.match(r"activation (\S+?)[;\s]", caption).group(1))  # 4 significant digits on screen
    np.testing.assert_allclose(shown, float(arrays["activation"][0]), rtol=1e-3, atol=1e-6)
    _shot(page, "22-filters-visualization-panel")
    _clean(page, problems)


def test_examples_scan_then_filters_panel_shows_the_crops(browser: object, sample_server: str,
                                                          tmp_path: Path) -> None:
    import json
    import shutil

    from inspector.photos import photo_paths

    photos = tmp_path / "photos"
    photos.mkdir()
    for path in photo_paths():
        shutil.copy(path, photos / path.name)
    n_photos = len(list(photos.iterdir()))
    page = _open(browser, f"{sample_server}/?page=filters&layer=conv2&map=3")
    problems = _watch(page)
    _caption(page, "Dataset examples: no scan of this layer yet.")
    page.get_by_role("button", name="Find the images that excite this map (Examples page)").click()
    _wait_idle(page)
    assert _query(page)["page"] == "examples"
    chosen = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Layers")
    assert "conv2" in chosen.inner_text() and "conv1" not in chosen.inner_text()  # the map's layer is chosen
    folder = page.locator('[data-testid="stTextInput"]').filter(has_text="Folder of images").locator("input")
    folder.fill(str(photos))
    folder.press("Enter")
    _wait_idle(page)
    page.get_by_role("button", name="Find examples").click()
    _caption(page, f"{n_photos} images scanned, 0 skipped.")
    _wait_idle(page)
    _caption(page, "conv2: maps 0–7 of 16, top 9 images each")
    assert _images_loaded(page, 300) == 1  # the contact sheet
    result = json.loads(_keyed_download(page, "ex_dl_json"))
    (layer,) = result["layers"]
    assert layer["layer"] == "conv2" and len(layer["maps"]) == 16
    top = next(m for m in layer["maps"] if m["map"] == 3)["top"]
    assert len(top) == 9 and {e["file"] for e in top} <= {p.name for p in photos.iterdir()}
    values = [e["value"] for e in top]
    assert values == sorted(values, reverse=True)
    _shot(page, "23-examples-scanned")

    # The Filters page now shows map 3's crops, best first: the files of the scan's top 3.
    page.goto(f"{sample_server}/?page=filters&layer=conv2&map=3")
    _wait_idle(page)
    _caption(page, f"Top 9 images from {photos.name}: {', '.join(e['file'] for e in top[:3])}, ...")
    assert page.get_by_text("no scan of this layer yet", exact=False).count() == 0
    _shot(page, "24-filters-examples-panel")
    _clean(page, problems)


@pytest.fixture(scope="module")
def digits_changed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits sample with conv2's map 5 kernels replaced by noise (everything else the same)."""
    import keras
    import numpy as np

    model = keras.saving.load_model(SAMPLE, compile=False)
    kernel, bias = model.get_layer("conv2").get_weights()
    kernel[..., 5] = np.random.default_rng(0).normal(0.0, float(kernel.std()), kernel[..., 5].shape)
    model.get_layer("conv2").set_weights([kernel, bias])
    path = tmp_path_factory.mktemp("changed") / "digits_changed.keras"
    model.save(path)
    return path


def test_compare_two_model_files(browser: object, sample_server: str, digits_changed: Path) -> None:
    from inspector import open_model
    from inspector.compare import compare_models

    api = compare_models(open_model(SAMPLE), open_model(digits_changed))
    counts = ", ".join(f"{v} {k}" for k, v in api.counts().items() if v)
    assert api.counts()["changed"] == 1 and api.layer("conv2").status == "changed"
    page = _open(browser, f"{sample_server}/?page=compare")
    problems = _watch(page)
    path_b = page.locator('[data-testid="stTextInput"]').filter(has_text="Path of model B").locator("input")
    path_b.fill(str(digits_changed))
    path_b.press("Enter")
    _wait_idle(page)
    page.get_by_role("button", name="Compare", exact=True).click()
    _wait_idle(page)
    _caption(page, f"Layers with weights: {counts} (same = every weight within")  # inspector.compare's counts
    assert page.locator('[data-testid="stDataFrame"]').count() == 1
    _caption(page, "conv2: the most-changed maps, rows A, B, B − A")
    assert _images_loaded(page, 300) == 2  # the drift overview and conv2's maps
    _shot(page, "25-compare")
    _clean(page, problems)


def test_export_page_builds_and_downloads_the_report(browser: object, sample_server: str) -> None:
    import re

    page = _open(browser, f"{sample_server}/?page=export")
    problems = _watch(page)
    page.get_by_text("Activations for the sample input", exact=True).click()  # runs the model: seconds
    _wait_idle(page)
    page.get_by_role("button", name="Build report").click()
    # Built by a background job: its progress and Cancel show while the page stays usable.
    page.get_by_role("button", name="Cancel report").wait_for(timeout=UI_TIMEOUT_MS)
    assert page.get_by_role("button", name="Build report").is_disabled()
    page.get_by_role("button", name="Download report").wait_for(timeout=UI_TIMEOUT_MS)
    _wait_idle(page)
    data = _download(page, "Download report")
    assert data.startswith(b"<!DOCTYPE html>") and b"conv2 (Conv2D, conv)" in data
    assert b">Activations for sample</h" in data
    assert not re.search(rb'src="(?!data:)', data)  # self-contained: every image embedded
    assert data.count(b'src="data:image/png;base64,') >= 3
    _caption(page, f"digits_cnn_report.html: {len(data) / 1e6:.2f} MB")
    _shot(page, "26-export-report")
    _clean(page, problems)
