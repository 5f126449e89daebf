"""Shared pytest set-up: quiet TensorFlow, a session-wide folder of saved zoo models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from inspector.kerascompat import prepare_environment

# The tests' own Keras references run under the same TensorFlow settings as the product
# (oneDNN unless the environment says otherwise, quiet C++ log); TF_ENABLE_ONEDNN_OPTS=0 exported
# for the whole run reproduces the CPUs whose TensorFlow has oneDNN off by default.
prepare_environment()
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("MPLBACKEND", "Agg")

sys.path.insert(0, str(Path(__file__).parent))  # lets tests import zoo.py and other helpers

REPO = Path(__file__).resolve().parent.parent
SAMPLE_MODELS = REPO / "sample_models"
