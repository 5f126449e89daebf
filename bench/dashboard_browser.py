"""Benchmark: the dashboard as a user feels it, in headless Chromium (Playwright), on VGG16.

Run: ``.venv/bin/python bench/dashboard_browser.py [--repeat 7] [--model PATH]``. Uses
``bench/models/vgg16.keras`` (made by ``bench/make_models.py vgg16 --formats keras``, random weights,
no download; made here when missing), starts the real Streamlit server on a free localhost port and
drives the system Chromium (``/usr/bin/chromium``; nothing is downloaded). Every time is from the
click (or ``goto``) until the expected text is on screen *and* the script run has finished (the page
is stable). Prints a table of medians (and max) against the budgets:

* first paint — ``/?page=filters&layer=block5_conv3&map=0`` until the kernel grid's caption shows
  (cold: indexes the 528 MB file);
* map step — "next ▶" on ``block5_conv3`` (512 input channels), back to back (the worst case: the
  background prefetch of the next map competes with the click) and with a 1 s pause: budget 500 ms;
* decomposition step — "next ▶" under "Map to decompose" on the Activations page, back to back and
  with a 3 s pause: budget 700 ms;
* option toggle — the Weights page's "Log scale" on ``block5_conv3`` (first time each way = cold,
  then cached), and the Filters page's colour map: budget 500 ms.

Timings belong here, never in the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LAYER = "block5_conv3"
TIMEOUT_MS = 180_000
#: A user's pause between two clicks: the next/previous map is prepared in the background meanwhile.
THINK_MS = 1000
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def _model(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    sys.path.insert(0, str(REPO / "bench"))
    import make_models  # bench/make_models.py: skips files that exist

    make_models.MODELS_DIR.mkdir(parents=True, exist_ok=True)
    make_models.make("vgg16", ["keras"])
    return make_models.model_path("vgg16", "keras")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(model: Path) -> Iterator[str]:
    from inspector.dashboard import MAIN_SCRIPT

    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(MAIN_SCRIPT), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--", str(model)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    log = tempfile.NamedTemporaryFile(prefix="dashboard-bench-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log.name}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no server on {url}; see {log.name}")
            time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
        os.unlink(log.name)


EXPORT_MAPS = 8


def _timed(page: object, action: Callable[[], object], text: str) -> float:
    """Milliseconds from ``action`` until ``text`` is visible and the script run has finished."""
    start = time.perf_counter()
    action()
    page.get_by_text(text, exact=False).first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    return (time.perf_counter() - start) * 1000


def _timed_redraw(page: object, action: Callable[[], object], image: int = 0) -> float:
    """Milliseconds from ``action`` until image number ``image`` on the page shows a new picture and the
    run has finished. (An option change keeps the caption text, so waiting for text alone could stop
    before the rerun even started.)"""
    imgs = '[data-testid="stImage"] img, [data-testid="stFullScreenFrame"] img'
    before = page.evaluate(f"() => document.querySelectorAll({imgs!r})[{image}]?.src")
    start = time.perf_counter()
    action()
    page.wait_for_function(f"() => document.querySelectorAll({imgs!r})[{image}]?.src !== {before!r}",
                           timeout=TIMEOUT_MS)
    page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    return (time.perf_counter() - start) * 1000


def _settle(page: object) -> None:
    page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    page.wait_for_timeout(400)


def run(model: Path, repeat: int) -> list[tuple[str, list[float], float | None]]:
    from playwright.sync_api import sync_playwright

    rows: list[tuple[str, list[float], float | None]] = []
    with _server(model) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)

        first = _timed(page, lambda: page.goto(f"{url}/?page=filters&layer={LAYER}&map=0"),
                       f"{LAYER} · map 0 of 512")
        rows.append(("first paint, Filters link (cold index)", [first], None))
        _settle(page)
        again = _timed(page, lambda: page.goto(f"{url}/?page=filters&layer={LAYER}&map=0"),
                       f"{LAYER} · map 0 of 512")
        rows.append(("reload of the same link (new session)", [again], None))
        _settle(page)

        nxt = page.get_by_role("button", name="next ▶").first
        steps = [_timed(page, nxt.click, f"{LAYER} · map {j} of 512") for j in range(1, repeat + 1)]
        rows.append((f"map step on {LAYER}, back to back", steps, 500.0))
        paused = []
        for j in range(repeat + 1, 2 * repeat + 1):
            page.wait_for_timeout(THINK_MS)
            paused.append(_timed(page, nxt.click, f"{LAYER} · map {j} of 512"))
        rows.append((f"map step on {LAYER}, {THINK_MS} ms between clicks", paused, 500.0))
        _settle(page)
        back = []
        for j in range(2 * repeat - 1, 2 * repeat - 4, -1):
            back.append(_timed(page, page.go_back, f"{LAYER} · map {j} of 512"))
        rows.append(("Back to a map seen before", back, 500.0))
        _settle(page)

        cmap = page.locator('[data-testid="stSelectbox"]').filter(has_text="Colour map").first
        toggles = []
        for name in ("gray", "viridis", "RdBu_r", "gray"):
            cmap.click()  # open the list first: the time runs from choosing the option
            option = page.get_by_role("option", name=name, exact=True)
            option.wait_for(timeout=TIMEOUT_MS)
            toggles.append(_timed_redraw(page, option.click))
            _settle(page)
        rows.append(("Filters: colour map change", toggles, 500.0))

        page.goto(f"{url}/?page=weights&layer={LAYER}")
        page.get_by_text("Filter health", exact=False).first.wait_for(timeout=TIMEOUT_MS)
        _settle(page)
        log = page.locator('[data-testid="stCheckbox"]').filter(has_text="Log scale").first
        flips = []
        for _ in range(max(4, repeat)):
            flips.append(_timed_redraw(page, log.click))  # the first histogram is redrawn
            _settle(page)
        rows.append(("Weights: log-scale toggle, first on/off (cold)", flips[:2], 500.0))
        rows.append(("Weights: log-scale toggle, again (cached)", flips[2:], 500.0))

        # Export rate, before the Activations page loads TensorFlow into the server: EXPORT_MAPS maps of
        # block5_conv3 (512 kernels each: 8 figure pages per map) as PNG + NPZ.
        page.goto(f"{url}/?page=export")
        page.get_by_text("Build zip", exact=False).first.wait_for(timeout=TIMEOUT_MS)
        _settle(page)
        box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Layer (").first
        box.click()
        page.get_by_role("option", name=LAYER, exact=True).click()
        _settle(page)
        maps = page.locator('[data-testid="stTextInput"]').filter(has_text="Maps").locator("input")
        maps.fill(f"0-{EXPORT_MAPS - 1}")
        maps.press("Enter")
        _settle(page)
        try:
            took = _timed(page, page.get_by_role("button", name="Build zip").click, "exported in")
            done = page.get_by_text("exported in", exact=False).first.inner_text()
            n = int(re.match(r"\s*(\d+) map", done).group(1))  # type: ignore[union-attr]
            rows.append((f"export of {n} maps of {LAYER}, 8 pages each (ms per map; {n * 1000 / took:.2f} maps/s)",
                         [took / n], None))
        except Exception as exc:  # report what was measured before, and why this row is missing
            print(f"export measurement failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            page.screenshot(path="test-artifacts/bench-export-failed.png", full_page=True)
        warm = _timed(page, lambda: page.goto(f"{url}/?page=activations&layer={LAYER}&map=0"),
                      f"{LAYER} map 0: contributions")
        rows.append(("Activations first paint (imports TensorFlow, forward pass)", [warm], None))
        _settle(page)
        dnext = page.locator('[data-testid="stButton"]').filter(has_text="next ▶").last
        dec = [_timed(page, dnext.click, f"{LAYER} map {j}: contributions") for j in range(1, repeat + 1)]
        rows.append(("decomposition map step, back to back", dec, 700.0))
        paused = []
        for j in range(repeat + 1, 2 * repeat + 1):
            page.wait_for_timeout(THINK_MS * 3)
            paused.append(_timed(page, dnext.click, f"{LAYER} map {j}: contributions"))
        rows.append((f"decomposition map step, {THINK_MS * 3} ms between clicks", paused, 700.0))

        browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="steps per measurement (default 7)")
    parser.add_argument("--model", help="a VGG16 .keras file (default: bench/models/vgg16.keras)")
    args = parser.parse_args()
    rows = run(_model(args.model), args.repeat)
    print(f"{'measurement':58} {'n':>3} {'median ms':>10} {'max ms':>8} {'budget':>7}")
    for name, values, budget in rows:
        med = statistics.median(values)
        verdict = "" if budget is None else ("ok" if med <= budget else "OVER")
        print(f"{name:58} {len(values):>3} {med:>10.0f} {max(values):>8.0f} "
              f"{'' if budget is None else f'{budget:.0f}':>7} {verdict}")


if __name__ == "__main__":
    main()
