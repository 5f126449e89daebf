"""The Streamlit dashboard: every capability of filter-inspector in the browser.

The dashboard is a thin client of the Python API: it picks a model, calls ``open_model``,
``filters_for_map``, ``capture``/``decompose``, ``layer_stats`` and the export functions, and shows
what they return. Nothing here slices kernels, reads formats or computes statistics.

Layout of the package:

* ``main.py``            the Streamlit script (``streamlit run inspector/dashboard/main.py -- MODEL``)
* ``loading.py``         the model source (sample / path / upload) and the cached loaders
* ``views.py``           pure, Streamlit-free view builders (slice + figure + PNG bytes); the
                         benchmark times exactly these
* ``page_*.py``          one module per page

Importing this package does not import Streamlit or TensorFlow (``inspector app`` only needs
:data:`MAIN_SCRIPT` and :func:`default_model`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["DEBUG_ENV", "MAIN_SCRIPT", "MODEL_ENV", "default_model", "sample_models_dir"]

#: The Streamlit script; ``inspector app`` runs ``python -m streamlit run MAIN_SCRIPT -- MODEL``.
MAIN_SCRIPT = Path(__file__).resolve().with_name("main.py")

#: Environment variable naming the model to open at start (set by ``inspector app``). Used in
#: addition to the script argument because AppTest runs the script with pytest's ``sys.argv``.
MODEL_ENV = "INSPECTOR_APP_MODEL"
#: Set to "1" by ``inspector --debug app``: TensorFlow's own log lines and warnings reach the terminal.
DEBUG_ENV = "INSPECTOR_DEBUG"

_SAMPLE_DIR_ENV = "INSPECTOR_SAMPLE_MODELS"


def sample_models_dir() -> Path | None:
    """The folder of bundled sample models: ``$INSPECTOR_SAMPLE_MODELS``, else ``sample_models/``
    next to the package (a checkout or an editable install), else the copy a wheel installs under
    ``<prefix>/share/filter-inspector/sample_models``. ``None`` when none exists."""
    candidates = []
    if os.environ.get(_SAMPLE_DIR_ENV):
        candidates.append(Path(os.environ[_SAMPLE_DIR_ENV]))
    here = Path(__file__).resolve().parent  # .../inspector/dashboard
    candidates += [here.parent / "sample_models", here.parent.parent / "sample_models",
                   Path(sys.prefix) / "share" / "filter-inspector" / "sample_models"]
    for cand in candidates:
        if cand.is_dir():
            return cand
    return None


def default_model() -> Path | None:
    """The model the dashboard opens when none is given: the bundled ``digits_cnn.keras``."""
    folder = sample_models_dir()
    if folder is None:
        return None
    path = folder / "digits_cnn.keras"
    return path if path.exists() else None
