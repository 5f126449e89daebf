"""``inspector report``: a self-contained HTML file that opens in headless Chromium without errors or
requests, a PDF that renders with its sections, and a JSON sidecar whose numbers are Keras's."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from apptest_jobs import finish_job

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_models"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _cli(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inspector", "report", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def html_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "shapes.html"
    proc = _cli(SAMPLES / "shapes_rgb.keras", "-o", out, "--input", "sample", "--visualize",
                "--visualize-steps", "8", "--visualize-maps", "2")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    return out


def test_html_is_self_contained(html_report: Path) -> None:
    text = html_report.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", text, flags=re.I)
    assert refs, "the report embeds its figures"
    assert all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs if not r.startswith("data:")]
    assert not re.search(r"url\(|@import|https?://", text.split("<body>", 1)[0])  # CSS loads nothing
    assert "@media print" in text
    images = re.findall(r'src="data:image/png;base64,', text)
    # conv1_rgb, dw2, sep3, shape_probs: kernels + norms each; parameters; 4 activation + 4 decomposition; visualize
    assert len(images) == 1 + 4 * 2 + 4 * 2 + 1
    for title in ("Layers", "Parameters", "conv1_rgb (Conv2D, conv)", "dw2 (DepthwiseConv2D, depthwise)",
                  "Activations for sample", "Feature visualization: shape_probs"):
        assert f">{title}</h" in text


def test_sidecar_numbers_agree_with_keras(html_report: Path) -> None:
    import keras

    data = json.loads(html_report.with_suffix(".json").read_text())
    model = keras.models.load_model(SAMPLES / "shapes_rgb.keras")
    assert data["model"]["total_params"] == model.count_params()
    assert data["model"]["settings"]["input"] == "sample" and data["model"]["settings"]["visualize"] is True
    sections = {s["key"]: s for s in data["sections"]}
    kernel = model.get_layer("conv1_rgb").get_weights()[0].astype(np.float64)
    health = sections["layer-conv1_rgb"]["data"]["stats"]["health"]
    np.testing.assert_allclose(health["map_norms"], np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), axis=0),
                               rtol=1e-10)
    table = sections["layers"]["data"]["layers"]
    assert [row["path"] for row in table] == [layer.name for layer in model.layers]
    assert [row["params"] for row in table] == [layer.count_params() for layer in model.layers]
    act = sections["input-conv1_rgb"]["data"]
    assert act["decomposition_max_abs_error"] < 1e-4
    assert act["strongest_map"] == int(np.argmax(act["map_means"]))


@pytest.mark.browser
def test_html_opens_in_chromium_without_errors(html_report: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("system chromium not installed at /usr/bin/chromium (make test installs it)")
    errors: list[str] = []
    requests: list[str] = []
    failed: list[str] = []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(html_report.as_uri())
            page.wait_for_load_state("load")
            broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                                   ".length")
            count = page.evaluate("document.images.length")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"))
            page.emulate_media(media="print")
            nav_hidden = page.evaluate("getComputedStyle(document.querySelector('nav')).display") == "none"
        finally:
            browser.close()
    assert errors == [] and failed == []
    assert [u for u in requests if not u.startswith("data:")] == [html_report.as_uri()]
    assert count == 18 and broken == 0
    assert nav_hidden


def test_pdf_renders_with_its_sections(tmp_path: Path) -> None:
    out = tmp_path / "digits.pdf"
    proc = _cli(SAMPLES / "digits_cnn.keras", "-o", out, "--input", "sample", "--fold-bn")
    assert proc.returncode == 0, proc.stderr
    if shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftoppm, pdftotext) not installed")
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(out), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, check=True).stdout
    for section in ("Model digits_cnn", "Layers", "Parameters", "conv1 (Conv2D, conv)", "conv2 (Conv2D, conv)",
                    "digit_probs (Dense, dense)", "Activations for sample", "BN folded: bn1"):
        assert section in text, section
    # text pages: header, layers, parameters, filter layers, 3 layers, input intro, 3 input layers = 11;
    # figures: parameters 1, 2 per layer, 2 per input layer = 13
    assert len(pages) == 24
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(pages[5], ARTIFACTS / "report-pdf-page.png")
    from PIL import Image

    with Image.open(pages[5]) as im:  # a figure page: not blank
        assert np.asarray(im.convert("L")).std() > 5


def test_weights_only_file_and_layer_selection(tmp_path: Path) -> None:
    out = tmp_path / "w.html"
    proc = _cli(SAMPLES / "digits_cnn.weights.h5", "-o", out, "--layers", "conv*")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.with_suffix(".json").read_text())
    keys = [s["key"] for s in data["sections"]]
    assert [k for k in keys if k.startswith("layer-")] == ["layer-conv1", "layer-conv2"]
    assert data["model"]["has_architecture"] is False


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    model = SAMPLES / "digits_cnn.keras"
    (tmp_path / "file").write_text("x")
    cases = [
        ([model, "-o", tmp_path / "r.txt"], ".html or .pdf"),
        ([model, "-o", tmp_path / "file" / "r.html"], "cannot write"),
        ([model, "--layers", "no_such_layer", "-o", tmp_path / "r.html"], "no_such_layer"),
        ([SAMPLES / "digits_cnn.weights.h5", "--input", "sample", "-o", tmp_path / "r.html"], "weights only"),
        ([model, "--input", tmp_path / "missing.png", "-o", tmp_path / "r.html"], "not found"),
    ]
    from inspector.report import _examples_module

    if _examples_module() is None:
        cases.append(([model, "--examples", tmp_path, "-o", tmp_path / "r.html"], "not available"))
    for args, phrase in cases:
        proc = _cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert phrase in lines[0], lines[0]
    assert not (tmp_path / "r.html").exists()  # nothing written when refused


def test_write_report_in_process_streams_sections(tmp_path: Path) -> None:
    from inspector import open_model
    from inspector.report import ReportOptions, report_sections, write_report

    seen: list[tuple[int, int, str]] = []
    with open_model(SAMPLES / "digits_cnn.keras") as index:
        written = write_report(index, tmp_path / "r.html", ReportOptions(top_maps=2),
                               progress=lambda d, t, w: seen.append((d, t, w)))
        sections = report_sections(index, ReportOptions())
        first = next(sections)  # a generator: nothing past the header is built yet
        assert first.key == "model" and first.figures == []
    assert [p.name for p in written] == ["r.html", "r.json"]
    assert seen[-1][0] == seen[-1][1] and [w for _, _, w in seen if w in ("conv1", "conv2", "digit_probs")]


def _export_page() -> Any:
    from streamlit.testing.v1 import AppTest

    from inspector.dashboard import MAIN_SCRIPT

    at = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120).run()
    at.radio(key="src_kind").set_value("Path").run()
    at.text_input(key="src_path").set_value(str(SAMPLES / "digits_cnn.keras")).run()
    at.radio(key="page").set_value("Export").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_dashboard_download_report_button() -> None:
    from inspector.dashboard.report_widget import JOB

    at = _export_page()
    assert not [b for b in at.get("download_button") if b.label == "Download report"]
    at.button(key="rep_run").click().run()
    # The report is built by a background job: the script run that started it returned at once.
    job = at.session_state[JOB]
    assert job.unit == "sections" and job.name == "digits_cnn_report.html"
    job = finish_job(at, JOB)
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    assert job.error is None and not job.cancelled and job.done == job.total > 3
    data = job.result
    assert data.startswith(b"<!DOCTYPE html>") and b"conv2 (Conv2D, conv)" in data
    assert not re.search(rb'src="(?!data:)', data)
    assert [b.label for b in at.get("download_button") if b.label == "Download report"] == ["Download report"]
    assert any(c.value.startswith(f"digits_cnn_report.html: {len(data) / 1e6:.2f} MB") for c in at.caption)
    # Other settings: the report built for the old ones is not offered.
    at.radio(key="rep_format").set_value("pdf").run()
    assert not [b for b in at.get("download_button") if b.label == "Download report"]


def test_dashboard_report_cancel_and_bad_selection() -> None:
    from inspector.dashboard.report_widget import JOB

    at = _export_page()
    at.text_input(key="rep_layers").set_value("no_such_layer").run()
    at.button(key="rep_run").click().run()
    assert JOB not in at.session_state  # refused before any thread started
    assert any("no_such_layer" in e.value for e in at.error), [e.value for e in at.error]
    at.text_input(key="rep_layers").set_value("").run()
    at.checkbox(key="rep_input").set_value(True).run()  # runs the model too: seconds, time enough to cancel
    at.button(key="rep_run").click().run()
    assert at.session_state[JOB].running and not [b for b in at.button if b.key == "rep_run" and not b.disabled]
    at.button(key="rep_cancel").click().run()  # the job stops at its next section
    job = finish_job(at, JOB)
    assert job.cancelled and job.result is None and job.done < job.total
    assert any("Report cancelled after" in w.value for w in at.warning), [w.value for w in at.warning]
    assert not [b for b in at.get("download_button") if b.label == "Download report"]
