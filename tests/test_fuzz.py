"""Hostile files: a seeded mutation fuzzer over every format, and the regression corpus it left behind.

``test_fuzz_run`` runs ``INSPECTOR_FUZZ_CASES`` cases (default 10,000) of run ``INSPECTOR_FUZZ_SEED`` (default:
a fixed seed, so CI is reproducible; ``make fuzz-long`` picks a new one) in two worker processes with a
memory cap and a per-case time limit (tests/fuzz_runner.py explains the guards). Every case must end in
our error tree or in a valid index whose summary and tensor reads work: never another exception, a hang,
a crash or a memory blow-up. The report (seed, counts per format, per mutation kind, per outcome) is
printed whatever pytest's capture settings and kept in test-artifacts/fuzz-report.txt; failing inputs are
kept under test-artifacts/fuzz/ and reproduced with ``tests/fuzz_runner.py --seed S --case N``.

``test_corpus_case`` replays every input in tests/fuzz_corpus/crashers/ (minimised crashers of earlier
runs, one folder each with the model and a note), so fixed bugs stay fixed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import inspector.keras_config as keras_config
from inspector.errors import CorruptModelError, InspectorError
from inspector.loader import open_model

sys.path.insert(0, str(Path(__file__).parent))
import fuzz_runner

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "fuzz_corpus" / "crashers"
DEFAULT_SEED = 20261130


def test_fuzz_run(request: pytest.FixtureRequest) -> None:
    seed = int(os.environ.get("INSPECTOR_FUZZ_SEED", DEFAULT_SEED))
    cases = int(os.environ.get("INSPECTOR_FUZZ_CASES", "10000"))
    artifacts = REPO / "test-artifacts" / "fuzz"
    report = fuzz_runner.run(seed, cases, workers=2, artifacts=artifacts)
    text = fuzz_runner.format_report(report)
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts.parent / "fuzz-report.txt").write_text(text + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        for line in text.splitlines():
            reporter.write_line(line)
    assert report["ran"] == cases, text
    # Every case classified, most of them reaching the readers (not stopped by a mutator that could not apply).
    assert report["outcomes"].get("mutator-failed", 0) < cases * 0.05, text
    assert report["outcomes"].get("ok", 0) > cases * 0.2, text  # the mutations leave many files readable
    assert not report["failures"], text


def _corpus_cases() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else []


@pytest.mark.parametrize("case", _corpus_cases(), ids=lambda p: p.name)
def test_corpus_case(case: Path) -> None:
    """A crasher of an earlier run now opens, or is refused with one line of ours."""
    model = next(p for p in sorted(case.iterdir()) if p.name != "NOTE.txt")
    if model.is_dir() and not (model / "saved_model.pb").exists():
        model = next(model.glob("*.weights.json"))  # a sharded model: open its manifest
    try:
        fuzz_runner.touch(model)
    except InspectorError as exc:
        assert "\n" not in str(exc)


def test_layer_count_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layer bound of docs/limits.md, exercised with a small limit (a real 200,000-layer config is slow)."""
    monkeypatch.setattr(keras_config, "MAX_LAYERS", 5)
    layers = [{"class_name": "Dense", "config": {"name": f"d{i}", "units": 1}} for i in range(6)]
    with pytest.raises(CorruptModelError, match="more than 5 layers"):
        keras_config.parse_model_config({"class_name": "Sequential", "config": {"name": "s", "layers": layers}})


def test_deep_json_is_refused(tmp_path: Path) -> None:
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(CorruptModelError, match="nests deeper"):
        keras_config.load_config_json(deep, "config.json", str(tmp_path))
    shallow = "[" * (keras_config.MAX_CONFIG_DEPTH + 1) + "]" * (keras_config.MAX_CONFIG_DEPTH + 1)
    with pytest.raises(CorruptModelError, match="nests deeper"):
        keras_config.load_config_json(shallow, "config.json", str(tmp_path))


def test_savedmodel_link_out_of_folder_is_refused(tmp_path: Path) -> None:
    import shutil

    from inspector.errors import UnsafeModelError

    model = tmp_path / "sm"
    shutil.copytree(REPO / "sample_models" / "digits_cnn_savedmodel", model)
    (model / "keras_metadata.pb").symlink_to("/etc/hostname")
    with pytest.raises(UnsafeModelError, match="outside the model folder"):
        open_model(model)


def test_a_timeout_is_confirmed_alone_before_it_counts(tmp_path: Path) -> None:
    """A case that timed out only because the machine was busy ends when run again alone: it is kept as
    'slow' with the outcome of its re-run, not counted as a failure. (Case 0 of the default run ends in
    well under a second, so here it stands for a case that was starved of CPU.)"""
    starved = {"case": 0, "state": "end", "outcome": "timeout", "error": ""}
    confirmed = fuzz_runner._confirm(starved, DEFAULT_SEED, tmp_path, None, 1536, 5.0, 30.0)
    assert confirmed["outcome"] == "slow" and confirmed["first_outcome"] == "timeout"
    assert confirmed["case"] == 0 and confirmed["seconds"] < 20
    summary = fuzz_runner.summarise(DEFAULT_SEED, 1, [confirmed], [], 1.0, 1536, 5.0)
    assert not summary["failures"] and summary["outcomes"] == {"slow": 1}
    # Other outcomes pass through untouched.
    refused = {"case": 1, "state": "end", "outcome": "CorruptModelError"}
    assert fuzz_runner._confirm(refused, DEFAULT_SEED, tmp_path, None, 1536, 5.0, 30.0) is refused
