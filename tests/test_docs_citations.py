"""Citations of docs/formats.md point at sections that exist, and nothing points outside the repository.

Code comments and docs cite sections such as ``docs/formats.md §1.3`` (or ``formats.md §5.2`` from inside
docs/, also as ``§1.3 and §1.5`` or a range ``§1-4``). Each cited number must be the number of a heading of
docs/formats.md (``### §1.3 ...``), and each link to a formats.md anchor must name a heading. The
file-format facts live in the repository, so no file may refer to the team's external notes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORMATS_DOC = REPO / "docs" / "formats.md"
CITING_DIRS = ("inspector", "tests", "bench", "docs")
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "models"}

# Spelled in two parts so that this file does not match itself.
FORBIDDEN = ("shared" + "/docs", "FORMATS" + ".md")

_NUMBER = r"\d+(?:\.\d+)*"
_CITATION = re.compile(
    rf"formats\.md\s*((?:§{_NUMBER}(?:\s*[-–]\s*{_NUMBER})?(?:\s*(?:,|and|or|&)\s*)?)+)")
_SECTION = re.compile(rf"§({_NUMBER})(?:\s*[-–]\s*({_NUMBER}))?")
_HEADING = re.compile(rf"^#{{1,6}}\s+§({_NUMBER})\s", re.MULTILINE)
_ANCHOR_LINK = re.compile(r"formats\.md#([\w-]+)")


def _headings() -> dict[str, str]:
    """Section number -> heading line of docs/formats.md."""
    text = FORMATS_DOC.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for match in _HEADING.finditer(text):
        line = text[match.start():text.index("\n", match.start())]
        assert match.group(1) not in found, f"section §{match.group(1)} appears twice in docs/formats.md"
        found[match.group(1)] = line
    return found


def _slug(heading_line: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    title = heading_line.lstrip("#").strip().lower()
    title = re.sub(r"[^\w\- ]", "", title)
    return title.replace(" ", "-")


def _citing_files() -> list[Path]:
    files = []
    for top in CITING_DIRS:
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".md") and not SKIP_DIRS & set(path.parts):
                files.append(path)
    return files


def _citations() -> list[tuple[str, int, str]]:
    """(file:line, cited section, citation text) for every section cited anywhere."""
    out = []
    for path in _citing_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in _CITATION.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{path.relative_to(REPO)}:{line}"
            for section in _SECTION.finditer(match.group(1)):
                for number in filter(None, section.groups()):
                    out.append((where, number, match.group(0).strip()))
    return out


def test_formats_doc_has_numbered_sections() -> None:
    headings = _headings()
    for top in ("1", "2", "3", "4", "5"):
        assert top in headings, f"docs/formats.md has no section §{top}"


def test_citations_are_found() -> None:
    """The scanner sees the citations it is meant to check (guards against a regex that matches nothing)."""
    cited = {number for _, number, _ in _citations()}
    assert {"1.3", "1.5", "4.3", "5.2", "5.3"} <= cited, sorted(cited)


def test_every_cited_section_exists() -> None:
    headings = _headings()
    missing = [f"{where}: {text!r} cites §{number}" for where, number, text in _citations()
               if number not in headings]
    assert not missing, "citations of sections docs/formats.md does not have:\n" + "\n".join(missing)


def test_every_formats_anchor_exists() -> None:
    anchors = {_slug(line) for line in _headings().values()}
    bad = []
    for path in _citing_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in _ANCHOR_LINK.finditer(text):
            if match.group(1) not in anchors:
                line = text.count("\n", 0, match.start()) + 1
                bad.append(f"{path.relative_to(REPO)}:{line}: #{match.group(1)}")
    assert not bad, "links to anchors docs/formats.md does not have:\n" + "\n".join(bad)


def _repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (so .venv and generated models are out)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO, capture_output=True, check=True, timeout=60).stdout.decode("utf-8", "replace")
        paths = [REPO / p for p in listed.split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        paths = [p for p in REPO.rglob("*") if not {".git", ".venv"} & set(p.relative_to(REPO).parts)]
    return [p for p in paths if p.is_file() and not {".git", ".venv"} & set(p.relative_to(REPO).parts)]


def test_nothing_points_outside_the_repository() -> None:
    files = _repository_files()
    assert any(p == FORMATS_DOC for p in files)
    bad = []
    for path in files:
        data = path.read_bytes()
        for needle in FORBIDDEN:
            if needle.encode() in data:
                bad.append(f"{path.relative_to(REPO)} mentions {needle!r}")
    assert not bad, "files that point at notes outside the repository:\n" + "\n".join(bad)


@pytest.mark.parametrize("text", ["docs/formats.md §1.3 and §1.5", "(docs/formats.md §1-4)",
                                  "[formats.md §5.2](formats.md#52-per-layer-type)"])
def test_citation_pattern(text: str) -> None:
    match = _CITATION.search(text)
    assert match is not None
    numbers = [n for s in _SECTION.finditer(match.group(1)) for n in s.groups() if n]
    assert numbers == {"docs/formats.md §1.3 and §1.5": ["1.3", "1.5"], "(docs/formats.md §1-4)": ["1", "4"],
                       "[formats.md §5.2](formats.md#52-per-layer-type)": ["5.2"]}[text]
