"""Run fuzz cases (tests/fuzz_mutators.py) against ``open_model`` and what ``inspector summary`` touches.

    .venv/bin/python tests/fuzz_runner.py --cases 200000 --seed 7        # the long run (make fuzz-long)
    .venv/bin/python tests/fuzz_runner.py --seed 7 --case 1234 --keep /tmp/case   # reproduce one case

Design, so that no case can take the run down with it:

* Cases run in worker processes (``--workers``, default 2), each on a contiguous range of case numbers,
  with ``RLIMIT_AS`` capping the worker's address space (``--memory-mb``): a reader that tries to allocate
  what a hostile header declares gets a MemoryError, which the case reports as a bug.
* Each case runs under a wall-clock alarm (``setitimer`` in the worker's main thread, ``--case-seconds``);
  a case still running then is reported as a timeout. Code stuck inside a C call cannot be interrupted
  that way, so the parent also watches the progress file each worker appends to: a worker that makes no
  progress for ``--hang-seconds`` is killed, its current case is reported as a hang, and a new worker
  continues after it. A worker that dies (a segfault in a C library) is handled the same way (crash).
* Outcomes: ``ok`` (a valid index, and everything summary touches plus a few tensor reads worked),
  ``InspectorError`` subclasses by name (the expected refusals), and ``bug:<exception>`` / ``timeout`` /
  ``hang`` / ``crash`` / ``memory``, the failures. Inputs of failing cases are kept under ``--artifacts``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

DEFAULT_MEMORY_MB = 1536
DEFAULT_CASE_SECONDS = 5.0
DEFAULT_HANG_SECONDS = 30.0
FAILURES = ("bug", "timeout", "hang", "crash", "memory")


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in a reader swallows it."""


def _alarm(_signum: int, _frame: Any) -> None:
    raise CaseTimeout()


def touch(path: Path) -> int:
    """What ``inspector summary`` touches, plus a few lazy reads (where declared-size checks matter)."""
    from inspector.commands.summary import format_table
    from inspector.loader import open_model

    with open_model(path) as index:
        out = len(format_table(index)) + len(json.dumps(index.to_dict(), default=str))
        reads = 0
        for layer in index.layers:
            for ref in layer.weights:
                if reads >= 6:
                    break
                whole = ref.read()
                part = ref.read(tuple(slice(0, 1) for _ in ref.shape)) if ref.shape else None
                out += int(getattr(whole, "size", 0)) + int(getattr(part, "size", 0))
                reads += 1
        return out


def classify(exc: BaseException) -> str:
    from inspector.errors import InspectorError

    if isinstance(exc, InspectorError):
        return type(exc).__name__
    if isinstance(exc, CaseTimeout):
        return "timeout"
    if isinstance(exc, MemoryError):
        return "memory"
    return f"bug:{type(exc).__name__}"


def run_case(seed: int, number: int, targets: list[Any], scratch: Path, case_seconds: float) -> dict[str, Any]:
    from fuzz_mutators import make_case

    record: dict[str, Any] = {"case": number}
    try:
        case = make_case(seed, number, targets, scratch)
    except Exception as exc:
        record.update(outcome="mutator-failed", error=f"{type(exc).__name__}: {exc}"[:300])
        return record
    record.update(target=case.target.name, fmt=case.target.fmt, kind=case.kind, detail=case.detail[:300])
    signal.setitimer(signal.ITIMER_REAL, case_seconds)
    start = time.perf_counter()
    try:
        touch(case.open_path)
        record["outcome"] = "ok"
    except BaseException as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        record["outcome"] = classify(exc)
        if record["outcome"].split(":")[0] in FAILURES:
            record["error"] = f"{type(exc).__name__}: {exc}"[:500]
            record["traceback"] = "".join(traceback.format_exception(exc))[-4000:]
        elif "\n" in str(exc):
            record["outcome"] = "bug:multi-line-message"
            record["error"] = str(exc)[:500]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    record["seconds"] = round(time.perf_counter() - start, 4)
    return record


def worker(args: argparse.Namespace) -> int:
    """Cases ``[start, stop)``: one JSON line per case start and end in the progress file."""
    limit = args.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _alarm)
    from fuzz_mutators import targets

    all_targets = targets()
    scratch = Path(args.scratch)
    artifacts = Path(args.artifacts) if args.artifacts else None
    with open(args.progress, "a", buffering=1) as progress:
        for number in range(args.start, args.stop):
            progress.write(json.dumps({"case": number, "state": "start"}) + "\n")
            record = run_case(args.seed, number, all_targets, scratch / "case", args.case_seconds)
            record["state"] = "end"
            if artifacts is not None and record["outcome"].split(":")[0] in FAILURES:
                keep = artifacts / f"seed{args.seed}-case{number}"
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(scratch / "case", keep, symlinks=True)
            progress.write(json.dumps(record) + "\n")
    record_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(args.progress, "a") as progress:
        progress.write(json.dumps({"state": "done", "max_rss_kb": record_rss}) + "\n")
    return 0


# -- the parent ------------------------------------------------------------------------------------------------


def _read_progress(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line cut by a kill
            out.append(json.loads(line))
    return out


def _spawn(seed: int, start: int, stop: int, scratch: Path, progress: Path, artifacts: Path | None,
           memory_mb: int, case_seconds: float) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", "--seed", str(seed), "--start", str(start),
            "--stop", str(stop), "--scratch", str(scratch), "--progress", str(progress), "--memory-mb",
            str(memory_mb), "--case-seconds", str(case_seconds)]
    if artifacts is not None:
        argv += ["--artifacts", str(artifacts)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "HDF5_USE_FILE_LOCKING": "FALSE"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run(seed: int, cases: int, workers: int = 2, artifacts: Path | None = None, memory_mb: int = DEFAULT_MEMORY_MB,
        case_seconds: float = DEFAULT_CASE_SECONDS, hang_seconds: float = DEFAULT_HANG_SECONDS) -> dict[str, Any]:
    """Run ``cases`` cases of run ``seed`` in ``workers`` processes; returns the aggregated report."""
    started = time.perf_counter()
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="inspector-fuzz-", dir=shm if shm.is_dir() else None))
    records: list[dict[str, Any]] = []
    rss: list[int] = []
    try:
        bounds = [cases * i // workers for i in range(workers + 1)]
        slots = []
        for i in range(workers):
            slots.append({"next": bounds[i], "stop": bounds[i + 1], "n": 0, "proc": None, "progress": None})
        while True:
            active = 0
            for i, slot in enumerate(slots):
                proc = slot["proc"]
                if proc is None:
                    if slot["next"] >= slot["stop"]:
                        continue
                    slot["n"] += 1
                    slot["progress"] = base / f"w{i}-{slot['n']}.jsonl"
                    slot["scratch"] = base / f"w{i}"
                    slot["proc"] = _spawn(seed, slot["next"], slot["stop"], slot["scratch"], slot["progress"],
                                          artifacts, memory_mb, case_seconds)
                    slot["seen"] = (0, time.monotonic())
                    active += 1
                    continue
                active += 1
                size = slot["progress"].stat().st_size if slot["progress"].exists() else 0
                if size != slot["seen"][0]:
                    slot["seen"] = (size, time.monotonic())
                stalled = time.monotonic() - slot["seen"][1] > hang_seconds
                code = proc.poll()
                if code is None and not stalled:
                    continue
                if code is None:
                    proc.kill()
                    proc.wait()
                lines = _read_progress(slot["progress"])
                ends = [r for r in lines if r.get("state") == "end"]
                records.extend(ends)
                rss.extend(r["max_rss_kb"] for r in lines if r.get("state") == "done")
                starts = [r["case"] for r in lines if r.get("state") == "start"]
                finished = {r["case"] for r in ends}
                pending = [c for c in starts if c not in finished]
                if pending:  # the case the worker was in when it hung or died
                    stderr = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                    outcome = "hang" if stalled and code is None else "crash"
                    records.append({"case": pending[0], "state": "end", "outcome": outcome,
                                    "error": f"worker exit {proc.returncode}; {stderr.strip()[-500:]}"})
                    slot["next"] = pending[0] + 1
                else:
                    slot["next"] = max([slot["next"] - 1, *finished]) + 1 if finished else slot["stop"]
                if proc.stderr:
                    proc.stderr.close()
                slot["proc"] = None
            if not active:
                break
            time.sleep(0.2)
        records = [_confirm(r, seed, base, artifacts, memory_mb, case_seconds, hang_seconds) for r in records]
    finally:
        for slot in slots:
            if slot.get("proc") is not None:
                slot["proc"].kill()
        shutil.rmtree(base, ignore_errors=True)
    return summarise(seed, cases, records, rss, time.perf_counter() - started, memory_mb, case_seconds)


def _confirm(record: dict[str, Any], seed: int, base: Path, artifacts: Path | None, memory_mb: int,
             case_seconds: float, hang_seconds: float) -> dict[str, Any]:
    """A timeout or hang is run again alone with four times the time: a case that then ends was only
    starved of CPU by other work on the machine (kept as ``slow``, with its time); one that does not is
    a real failure. Deterministic cases make this exact: the same bytes, the same code path."""
    if record["outcome"] not in ("timeout", "hang"):
        return record
    case = int(record["case"])
    progress, scratch = base / f"confirm-{case}.jsonl", base / f"confirm-{case}"
    proc = _spawn(seed, case, case + 1, scratch, progress, artifacts, memory_mb, case_seconds * 4)
    try:
        proc.wait(timeout=max(hang_seconds, case_seconds * 4) + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    finally:
        if proc.stderr:
            proc.stderr.close()
    ends = [r for r in _read_progress(progress) if r.get("state") == "end" and r.get("case") == case]
    if not ends or ends[0]["outcome"].split(":")[0] in FAILURES:
        return record
    return {**ends[0], "outcome": "slow", "first_outcome": record["outcome"]}


def summarise(seed: int, cases: int, records: list[dict[str, Any]], rss: list[int], elapsed: float,
              memory_mb: int, case_seconds: float) -> dict[str, Any]:
    outcomes = collections.Counter(r["outcome"] for r in records)
    by_fmt: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in records:
        group = "ok" if r["outcome"] == "ok" else "slow" if r["outcome"] == "slow" else (
            "failure" if r["outcome"].split(":")[0] in FAILURES else "refused")
        by_fmt[r.get("fmt", "?")][group] += 1
        by_kind[r.get("kind", "?")][group] += 1
    failures = [r for r in records if r["outcome"].split(":")[0] in FAILURES]
    slowest = sorted((r for r in records if "seconds" in r), key=lambda r: -r["seconds"])[:3]
    return {
        "seed": seed, "cases": cases, "ran": len(records), "seconds": round(elapsed, 1),
        "memory_limit_mb": memory_mb, "case_seconds": case_seconds,
        "max_worker_rss_mb": round(max(rss) / 1024, 1) if rss else None,
        "outcomes": dict(outcomes.most_common()), "by_format": {k: dict(v) for k, v in sorted(by_fmt.items())},
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "failures": failures, "slowest": [{k: r.get(k) for k in ("case", "target", "kind", "detail", "seconds")}
                                           for r in slowest],
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"fuzz: seed {report['seed']}, {report['ran']}/{report['cases']} cases in {report['seconds']} s "
             f"(memory limit {report['memory_limit_mb']} MB per worker, max RSS {report['max_worker_rss_mb']} MB; "
             f"{report['case_seconds']} s per case)",
             "outcomes: " + ", ".join(f"{k} {v}" for k, v in report["outcomes"].items())]
    lines.append("per format: " + "; ".join(
        f"{fmt} " + " ".join(f"{k}={v}" for k, v in sorted(c.items())) for fmt, c in report["by_format"].items()))
    lines.append("per mutation: " + "; ".join(
        f"{kind} " + " ".join(f"{k}={v}" for k, v in sorted(c.items())) for kind, c in report["by_kind"].items()))
    lines.append("slowest: " + "; ".join(f"#{r['case']} {r['kind']} {r['target']} {r['seconds']} s"
                                         for r in report["slowest"]))
    lines.append(f"failures: {len(report['failures'])}")
    for r in report["failures"][:25]:
        lines.append(f"  #{r['case']} {r.get('target')} {r.get('kind')} [{r.get('detail')}] -> {r['outcome']}: "
                     f"{r.get('error', '')[:300]}")
    return "\n".join(lines)


def reproduce(seed: int, number: int, keep: Path) -> int:
    """Materialise one case into ``keep`` and run it in this process (tracebacks shown)."""
    from fuzz_mutators import make_case, targets

    case = make_case(seed, number, targets(), keep)
    print(f"case {number}: {case.target.name} {case.kind}: {case.detail}\nopen: {case.open_path}")
    print(touch(case.open_path))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB)
    parser.add_argument("--case-seconds", type=float, default=DEFAULT_CASE_SECONDS)
    parser.add_argument("--hang-seconds", type=float, default=DEFAULT_HANG_SECONDS)
    parser.add_argument("--artifacts", default=str(REPO / "test-artifacts" / "fuzz"))
    parser.add_argument("--case", type=int, help="reproduce one case in this process")
    parser.add_argument("--keep", default="/tmp/inspector-fuzz-case", help="where --case puts its input")
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    if args.case is not None:
        return reproduce(seed, args.case, Path(args.keep))
    artifacts = Path(args.artifacts)
    report = run(seed, args.cases, args.workers, artifacts, args.memory_mb, args.case_seconds, args.hang_seconds)
    text = format_report(report)
    print(text)
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts.parent / "fuzz-report.txt").write_text(text + "\n")
    (artifacts.parent / "fuzz-report.json").write_text(json.dumps(report, indent=1, default=str))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
