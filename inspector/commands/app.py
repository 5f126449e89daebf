"""``inspector app [MODEL] [--port N] [--headless]``: open the Streamlit dashboard on a model.

Runs ``python -m streamlit run inspector/dashboard/main.py -- MODEL`` in a child process (the
dashboard script ships inside the package, so this works from a checkout and from an install).
Without MODEL the bundled sample ``sample_models/digits_cnn.keras`` opens. The path is not checked
here on purpose: a bad path opens the dashboard on its error page, where another model can be chosen.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

from ..errors import missing_dependency
from ._argtypes import int_at_least

DEFAULT_PORT = 8501


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None,
                        help="a model file or SavedModel folder (default: the bundled digits_cnn.keras sample)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    parser.add_argument("--headless", action="store_true", help="do not open a browser window")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: the app reads local files, so it is not "
                             "exposed to the network unless you ask)")
    parser.add_argument("--max-upload-mb", type=int_at_least(1, "a whole number of MB"), default=None,
                        help="largest model upload accepted, in MB, at least 1 (default 1024)")


def _has_display() -> bool:
    """Whether a browser window can open here (no point trying on a headless Linux box or in CI)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def build_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The streamlit command line and environment for ``args`` (separate so it can be tested)."""
    from ..dashboard import DEBUG_ENV, MAIN_SCRIPT, MODEL_ENV, default_model

    model = args.model
    if model is None:
        sample = default_model()
        model = str(sample) if sample is not None else ""
    elif os.path.exists(model):
        model = os.path.abspath(model)  # the server's working directory must not matter
    env = dict(os.environ)
    env[MODEL_ENV] = model
    if getattr(args, "debug", False):
        env[DEBUG_ENV] = "1"
    upload_mb = args.max_upload_mb
    if upload_mb is not None:
        env["INSPECTOR_APP_MAX_UPLOAD_MB"] = str(upload_mb)
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(MAIN_SCRIPT),
        "--server.port", str(args.port),
        # An explicit address also stops Streamlit from looking up the machine's external IP online.
        "--server.address", str(getattr(args, "address", "127.0.0.1")),
        "--server.headless", "true" if args.headless or not _has_display() else "false",
        "--browser.gatherUsageStats", "false",
        # Streamlit's first-run email prompt would block `make app` on a fresh machine waiting for input.
        "--server.showEmailPrompt", "false",
        "--client.toolbarMode", "minimal",
        "--server.maxUploadSize", str(upload_mb or 1024),
        # No reloading when a module file changes: a reload while a background job (export, visualization)
        # runs re-imports the modules, and the page then waits for a result stored under the old ones.
        "--server.fileWatcherType", "none",
    ]
    if model:
        cmd += ["--", model]
    return cmd, env


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise missing_dependency("streamlit", "app", "the dashboard")
    cmd, env = build_command(args)
    return subprocess.call(cmd, env=env)
