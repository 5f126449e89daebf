"""Run the benchmark cases of bench/cases.py and print a Markdown table.

    .venv/bin/python bench/make_models.py           # once: writes bench/models/ (about 3.3 GB)
    .venv/bin/python bench/run.py                   # every case, 3 runs per side
    .venv/bin/python bench/run.py --only resnet50 --repeat 5
    .venv/bin/python bench/run.py --list

Each side of a :class:`cases.Case` is a whole child process; we record its wall time and its own
peak RSS (``ru_maxrss`` from ``os.wait4`` on that pid, so neither this harness nor the other side is
counted). Ours and the baseline alternate, so a burst of load from other processes hits both. The
table shows medians; ``bench/results/latest.json`` keeps every run. A failing or timed-out side is
reported on one line and the run goes on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/ is on sys.path already when this file is the script; this also covers importing it as a module.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES, REPEAT_ENV, REPO, AnyCase, Case, InProcessCase
from make_models import ARCHITECTURES, FORMATS, model_path

RESULTS = REPO / "bench" / "results"


@dataclass
class Run:
    """One execution of one command."""

    ok: bool
    wall_s: float
    maxrss_mib: float
    error: str = ""  # one line: why it failed
    stdout: str = ""


@dataclass
class Side:
    """All runs of one side of a case."""

    runs: list[Run] = field(default_factory=list)

    @property
    def error(self) -> str:
        return next((r.error for r in self.runs if not r.ok), "")

    @property
    def ok(self) -> bool:
        return bool(self.runs) and not self.error

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def best_s(self) -> float:
        return min(r.wall_s for r in self.runs)

    @property
    def maxrss_mib(self) -> float:
        return statistics.median(r.maxrss_mib for r in self.runs)


@dataclass
class Result:
    case: AnyCase
    ours: Side = field(default_factory=Side)
    baseline: Side = field(default_factory=Side)
    skipped: str = ""
    in_process: bool = False
    details: dict[str, Any] | None = None  # an in-process script's whole JSON line


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def run_once(argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> Run:
    """Run ``argv`` in the repository root; wall time and the child's own peak RSS.

    ``os.wait4`` reaps exactly this pid and returns its rusage: ``ru_maxrss`` is the child's peak
    resident set (KiB on Linux). ``resource.getrusage(RUSAGE_CHILDREN)`` would instead give the
    maximum over *all* children so far, mixing cases together.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        try:
            # Output goes to files, not pipes: nobody reads a pipe while we block in wait4, and a
            # chatty child (TF logs, model.summary of VGG16) would fill it and hang.
            proc = subprocess.Popen(list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    cwd=REPO, env=env)
        except OSError as exc:
            return Run(False, 0.0, 0.0, f"cannot start {argv[0]}: {exc}")
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        # wait4 reaped the child behind Popen's back; tell Popen, or its __del__ warns and waits.
        proc.returncode = os.waitstatus_to_exitcode(status)
        maxrss_mib = usage.ru_maxrss / 1024  # Linux: KiB
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if timed_out.is_set():
        return Run(False, wall, maxrss_mib, f"timed out after {timeout:.0f} s")
    if proc.returncode != 0:
        why = _last_line(stderr) or _last_line(stdout) or "no output"
        return Run(False, wall, maxrss_mib, f"exit {proc.returncode}: {why}", stdout)
    return Run(True, wall, maxrss_mib, "", stdout)


def child_env(repeat: int) -> dict[str, str]:
    env = dict(os.environ)
    # The same quiet logging on both sides, so neither pays for writing TF's C++ chatter.
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env[REPEAT_ENV] = str(repeat)
    return env


def make_missing_models(cases: Sequence[AnyCase]) -> None:
    """Generate the bench/models files the selected cases need (make_models.py skips existing ones).

    Done here so that ``make bench`` works on a fresh checkout; it runs as a child process, so this
    harness itself never imports TensorFlow and its own memory stays out of the picture.
    """
    needed = {p for case in cases for p in case.requires if not p.exists()}
    pairs = [(arch, fmt) for arch in ARCHITECTURES for fmt in FORMATS if model_path(arch, fmt) in needed]
    if not pairs:
        return
    archs = sorted({arch for arch, _ in pairs})
    formats = sorted({fmt for _, fmt in pairs})
    print(f"generating missing benchmark models ({', '.join(archs)}: {', '.join(formats)}); "
          "this takes a few minutes once", flush=True)
    # Output is not captured: progress lines show while it runs.
    subprocess.run([sys.executable, str(REPO / "bench" / "make_models.py"), *archs, "--formats", *formats],
                   cwd=REPO, env=child_env(1), check=False)


def run_case(case: AnyCase, *, repeat: int, timeout: float) -> Result:
    result = Result(case, in_process=isinstance(case, InProcessCase))
    missing = [p for p in case.requires if not p.exists()]
    if missing:
        hint = " (run bench/make_models.py)" if any("models" in p.parts for p in missing) else ""
        shown = [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in missing]
        result.skipped = f"missing {', '.join(shown)}{hint}"
        return result
    env = child_env(repeat)

    if isinstance(case, InProcessCase):
        # The script repeats internally and reports medians; run it once.
        command = [*case.command, *([case.repeat_flag, str(repeat)] if case.repeat_flag else [])]
        run = run_once(command, timeout=timeout * 2 * repeat, env=env)
        if run.ok:
            try:
                data = json.loads(_last_line(run.stdout))
                result.details = data
                result.ours.runs.append(Run(True, float(data["ours_s"]), float("nan"), stdout=run.stdout))
                result.baseline.runs.append(Run(True, float(data["baseline_s"]), float("nan")))
            except (ValueError, KeyError, TypeError) as exc:
                bad = Run(False, 0.0, 0.0, f"no JSON result line ({exc.__class__.__name__}: {exc})")
                result.ours.runs.append(bad)
                result.baseline.runs.append(bad)
        else:
            result.ours.runs.append(run)
            result.baseline.runs.append(run)
        return result

    assert isinstance(case, Case)
    for _ in range(repeat):
        for side, argv in ((result.ours, case.ours), (result.baseline, case.baseline)):
            # Once a side has failed, more runs would fail the same way: save the time.
            if side.error:
                continue
            side.runs.append(run_once(argv, timeout=timeout, env=env))
    return result


# -- reporting ------------------------------------------------------------------------------------


def _ratio(baseline: float, ours: float) -> str:
    if not (ours > 0 and baseline > 0):  # also false for NaN (in-process memory)
        return "–"
    return f"{baseline / ours:.1f}×"


def _cells(side: Side, in_process: bool) -> tuple[str, str]:
    if not side.ok:
        return "failed", "–"
    return f"{side.wall_s:.2f}", "–" if in_process else f"{side.maxrss_mib:.0f}"


def row_cells(r: Result) -> list[str]:
    """ours s, ours MB, baseline s, baseline MB, speed ratio, memory ratio."""
    if r.skipped:
        return ["skipped", "", "", "", "", ""]
    ours_s, ours_mb = _cells(r.ours, r.in_process)
    base_s, base_mb = _cells(r.baseline, r.in_process)
    ok = r.ours.ok and r.baseline.ok
    speed = _ratio(r.baseline.wall_s, r.ours.wall_s) if ok else "–"
    memory = _ratio(r.baseline.maxrss_mib, r.ours.maxrss_mib) if ok and not r.in_process else "–"
    return [ours_s, ours_mb, base_s, base_mb, speed, memory]


def table_row(r: Result) -> str:
    return "| " + " | ".join([r.case.name, *row_cells(r)]) + " |"


def status_line(r: Result) -> str:
    """One line per case for the console while the run is going."""
    if r.skipped:
        return f"SKIP {r.case.name}: {r.skipped}"
    problems = []
    if r.in_process and r.ours.error:
        problems.append(r.ours.error)
    else:
        problems += [f"{label} {side.error}" for label, side in (("ours", r.ours), ("baseline", r.baseline))
                     if side.error]
    if problems:
        return f"FAIL {r.case.name}: " + "; ".join(problems)
    ours_s, ours_mb, base_s, base_mb, speed, memory = row_cells(r)
    if r.in_process:
        return f"ok   {r.case.name}: ours {ours_s} s, baseline {base_s} s, speed {speed}"
    return (f"ok   {r.case.name}: ours {ours_s} s {ours_mb} MB, baseline {base_s} s {base_mb} MB, "
            f"speed {speed}, memory {memory}")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" (uncommitted changes)" if dirty else "")


def environment() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tensorflow": _version("tensorflow"),
        "keras": _version("keras"),
        "h5py": _version("h5py"),
    }


def markdown(results: list[Result], repeat: int, env: dict[str, Any]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"{env['date']}, git {env['git']}; Python {env['python']}, TensorFlow {env['tensorflow']}, "
        f"Keras {env['keras']}, h5py {env['h5py']}; {env['cpus']} CPUs, {env['platform']}.",
        "",
        f"Times: median wall-clock seconds of {repeat} run{'s' if repeat > 1 else ''} of the whole process "
        "(start-up, imports and exit included). MB: median peak RSS of that process (MiB). Ratios: baseline / ours, so "
        "above 1× means ours is faster or smaller. In-process rows time two functions in one process "
        "and report no memory.",
        "",
        "| case | ours s | ours MB | baseline s | baseline MB | speed | memory |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(table_row(r) for r in results),
    ]
    notes = [status_line(r) for r in results if r.skipped or not (r.ours.ok and r.baseline.ok)]
    if notes:
        lines += ["", "Not measured:", "", *(f"* {n.split(' ', 1)[1]}" for n in notes)]
    return "\n".join(lines) + "\n"


def to_json(results: list[Result], repeat: int, env: dict[str, Any]) -> dict[str, Any]:
    def side(s: Side) -> dict[str, Any]:
        return {"ok": s.ok, "error": s.error or None,
                "runs": [{"wall_s": r.wall_s, "maxrss_mib": None if math.isnan(r.maxrss_mib) else r.maxrss_mib}
                         for r in s.runs if r.ok]}

    return {"environment": env, "repeat": repeat, "cases": [
        {"name": r.case.name, "description": r.case.description, "in_process": r.in_process,
         "skipped": r.skipped or None, "ours": side(r.ours), "baseline": side(r.baseline),
         "details": r.details}
        for r in results
    ]}


def select(cases: list[AnyCase], patterns: list[str]) -> list[AnyCase]:
    """Cases matching any pattern: a glob if it has wildcards, else a substring (case-insensitive)."""
    if not patterns:
        return cases

    def match(name: str, pattern: str) -> bool:
        name, pattern = name.lower(), pattern.lower()
        if any(ch in pattern for ch in "*?["):
            return fnmatch.fnmatchcase(name, pattern)
        return pattern in name

    return [c for c in cases if any(match(c.name, p) for p in patterns)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark filter-inspector against Keras-only baselines.")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="run only cases whose name contains PATTERN (or matches it as a glob); repeatable")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="runs per side (default 3)")
    parser.add_argument("--timeout", type=float, default=900, metavar="S",
                        help="seconds before one run is killed (default 900)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.md",
                        help="where to write the table (default bench/results/latest.md; a .json with "
                             "every run is written next to it)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--no-make-models", action="store_true",
                        help="do not generate missing bench/models files (those cases are skipped)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    cases = select(CASES, args.only)
    if args.list:
        for case in cases:
            print(f"{case.name:36s} {case.description}")
        return 0
    if not cases:
        parser.error(f"no case matches {args.only}; see --list")

    if not args.no_make_models:
        make_missing_models(cases)
    results = []
    for case in cases:
        result = run_case(case, repeat=args.repeat, timeout=args.timeout)
        print(status_line(result), flush=True)
        results.append(result)

    env = environment()
    text = markdown(results, args.repeat, env)
    print()
    print(text, end="")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(json.dumps(to_json(results, args.repeat, env), indent=1) + "\n")
    print(f"\nwrote {args.output} and {args.output.with_suffix('.json').name}")
    # Non-zero when nothing could be compared, so CI notices a harness that measures nothing.
    return 0 if any(r.ours.ok and r.baseline.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
