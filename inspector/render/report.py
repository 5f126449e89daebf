"""Report writers: sections (:class:`inspector.report.Section`) as one self-contained HTML file or a PDF.

HTML: every figure is a PNG embedded as a ``data:`` URI, the CSS is inline (with ``@media print``
rules so figures and tables are not split across printed pages), there is no script and no external
reference of any kind (not even a favicon request), so the file opens offline, mails as one
attachment and prints from any browser. PDF: matplotlib's ``PdfPages``; text and tables are drawn
as monospace text pages, each figure is a page. Both writers consume the sections one at a time and
drop each section's figures once written.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..formatting import table_lines
from .common import LABEL_PT

__all__ = ["examples_figure", "parameter_chart", "text_pages", "write_html", "write_pdf"]

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 8px; } h2 { font-size: 20px; margin-top: 36px; border-bottom: 1px solid #ddd; }
h3 { font-size: 16px; margin-top: 28px; }
nav { font-size: 13px; columns: 3; column-gap: 24px; margin: 12px 0 24px; }
nav a { display: block; color: #0b57d0; text-decoration: none; overflow: hidden; text-overflow: ellipsis;
        white-space: nowrap; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0 12px; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 2px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.wide { overflow-x: auto; }
figure { margin: 12px 0 20px; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; margin-top: 4px; }
footer { margin-top: 40px; font-size: 12px; color: #777; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  nav { display: none; }
  .wide { overflow: visible; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  figure, tr { break-inside: avoid; page-break-inside: avoid; }
  figure img { max-height: 24cm; object-fit: contain; border: none; }
  a { color: inherit; text-decoration: none; }
}
"""


def parameter_chart(index: Any, *, most: int = 40, dpi: float = 100) -> Figure:
    """Parameters per layer (horizontal bars, model order); the ``most`` largest layers when there are more."""
    weighted = [rec for rec in index.layers if rec.params]
    if len(weighted) > most:
        keep = set(np.argsort([-rec.params for rec in weighted], kind="stable")[:most].tolist())
        shown = [rec for k, rec in enumerate(weighted) if k in keep]
    else:
        shown = weighted
    fig = Figure(figsize=(9.0, 1.2 + 0.2 * len(shown)), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    kinds = sorted({str(rec.kind) for rec in shown})
    colours = {k: f"C{n % 10}" for n, k in enumerate(kinds)}
    y = np.arange(len(shown))
    ax.barh(y, [rec.params for rec in shown], color=[colours[str(rec.kind)] for rec in shown])
    ax.set_yticks(y, [rec.path if len(rec.path) <= 36 else "…" + rec.path[-35:] for rec in shown],
                  fontsize=LABEL_PT)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    for k in kinds:
        ax.barh([], [], color=colours[k], label=k)
    ax.legend(fontsize=LABEL_PT, loc="lower right")
    more = f"; the {len(shown)} largest of {len(weighted)} layers with weights" if len(shown) < len(weighted) else ""
    ax.set_title(f"{index.name or 'model'}: {index.total_params:,} parameters{more}", fontsize="medium")
    return fig


def examples_figure(crops: list[tuple[int, list[tuple[Any, np.ndarray]]]], *, title: str,
                    dpi: float = 100) -> Figure:
    """Dataset-example crops: one row per map, its examples left to right (best first), value above each."""
    cols = max((len(row) for _, row in crops), default=1) or 1
    fig = Figure(figsize=(1.0 + 1.2 * cols, 0.8 + 1.35 * max(len(crops), 1)), dpi=dpi, layout="constrained")
    axes = np.atleast_2d(fig.subplots(max(len(crops), 1), cols, squeeze=False))
    for r, (j, row) in enumerate(crops):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                example, crop = row[c]
                ax.imshow(crop if crop.shape[-1] == 3 else crop[..., 0], cmap=None if crop.shape[-1] == 3 else "gray")
                ax.set_title(f"{example.value:.3g}", fontsize=LABEL_PT)
            else:
                ax.set_axis_off()
        axes[r, 0].set_ylabel(f"map {j}", fontsize=LABEL_PT)
    fig.suptitle(title, fontsize="medium")
    return fig


def _png_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, metadata={"Software": "filter-inspector"})
    fig.clear()  # the section's figures are not needed once written
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _anchor(key: str) -> str:
    return "s-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in key)


def _table_html(table: Any) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers) if any(table.headers) else ""
    rows = []
    for row in table.rows:
        cells = "".join(f"<td class=\"num\">{html.escape(c)}</td>" if k in table.right else
                        f"<td>{html.escape(c)}</td>" for k, c in enumerate(row))
        rows.append(f"<tr>{cells}</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<div class=\"wide\"><table>{thead}<tbody>{''.join(rows)}</tbody></table></div>"


def _collect(data: dict[str, Any], sec: Any) -> None:
    data["sections"].append({"key": sec.key, "title": sec.title, "paragraphs": list(sec.paragraphs),
                             "figures": [caption for caption, _ in sec.figures], "data": sec.data})
    if sec.key == "model":
        data["model"] = sec.data


def write_html(sections: Iterable[Any], out: str | os.PathLike[str], *, title: str) -> dict[str, Any]:
    """Write the sections as one self-contained HTML file; returns the JSON sidecar's data."""
    from ..outputs import writing

    data: dict[str, Any] = {"report": {"file": str(out), "format": "html"}, "model": None, "sections": []}
    body, toc = [], []
    for sec in sections:
        anchor = _anchor(sec.key)
        tag = f"h{min(max(sec.level, 1), 4)}"
        if sec.level <= 2 or sec.key.startswith("layer-"):
            toc.append(f"<a href=\"#{anchor}\">{html.escape(sec.title)}</a>")
        parts = [f"<section id=\"{anchor}\"><{tag}>{html.escape(sec.title)}</{tag}>"]
        parts += [f"<p>{html.escape(p)}</p>" for p in sec.paragraphs]
        parts += [_table_html(t) for t in sec.tables]
        for caption, fig in sec.figures:
            parts.append(f"<figure><img src=\"{_png_uri(fig)}\" alt=\"{html.escape(caption)}\">"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        parts.append("</section>")
        body.append("".join(parts))
        _collect(data, sec)
        sec.figures = [(caption, None) for caption, _ in sec.figures]
    doc = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           "<link rel=\"icon\" href=\"data:,\">"  # no favicon request, even when served over http
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
           + (body[0] if body else "") + f"<nav>{''.join(toc)}</nav>" + "".join(body[1:])
           + "<footer>Written by filter-inspector; every image is embedded in this file.</footer></body></html>")
    path = Path(out)
    with writing(path, option="the report"):
        path.write_text(doc, encoding="utf-8")
    return data


# -- PDF ------------------------------------------------------------------------------------------------------

_PAGE = (8.27, 11.69)  # A4 portrait, inches
_LINES_PER_PAGE = 88
_CHARS_PER_LINE = 120


def _clip(line: str) -> str:
    return line if len(line) <= _CHARS_PER_LINE else line[:_CHARS_PER_LINE - 1] + "…"


def _wrap(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, _CHARS_PER_LINE) or [""]


def text_pages(title: str, lines: list[str]) -> list[Figure]:
    """Monospace text pages (A4) holding ``title`` and ``lines`` (long lines clipped, never wrapped mid-table)."""
    pages: list[Figure] = []
    chunks = [lines[k:k + _LINES_PER_PAGE] for k in range(0, max(len(lines), 1), _LINES_PER_PAGE)]
    for n, chunk in enumerate(chunks):
        fig = Figure(figsize=_PAGE, dpi=100)
        head = title if n == 0 else f"{title} (continued)"
        fig.text(0.06, 0.965, head, fontsize=12, weight="bold", va="top")
        fig.text(0.06, 0.935, "\n".join(_clip(x) for x in chunk), family="monospace", fontsize=6.2, va="top",
                 linespacing=1.25)
        pages.append(fig)
    return pages


def _section_lines(sec: Any) -> list[str]:
    lines: list[str] = []
    for p in sec.paragraphs:
        lines += _wrap(p)
    for table in sec.tables:
        lines.append("")
        if any(table.headers):
            lines += table_lines(table.headers, [[c[:60] for c in row] for row in table.rows], right=table.right)
        else:
            lines += [f"{row[0]:<16}{row[1]}" for row in table.rows]
    return lines


def write_pdf(sections: Iterable[Any], out: str | os.PathLike[str], *, title: str) -> dict[str, Any]:
    """Write the sections as PDF pages (text pages, then one page per figure); returns the sidecar data."""
    from matplotlib.backends.backend_pdf import PdfPages

    from ..outputs import writing

    data: dict[str, Any] = {"report": {"file": str(out), "format": "pdf"}, "model": None, "sections": []}
    path = Path(out)
    with writing(path, option="the report"), PdfPages(path, metadata={"Creator": "filter-inspector",
                                                                      "Title": title}) as pdf:
        for sec in sections:
            lines = _section_lines(sec)
            # Captions go on the text page (drawn into a figure they would collide with its axis labels).
            for k, (caption, _) in enumerate(sec.figures, 1):
                lines += ["", *_wrap(f"Page +{k}: {caption}")]
            for page in text_pages(sec.title, lines):
                pdf.savefig(page)
            for _, fig in sec.figures:
                pdf.savefig(fig)
                fig.clear()
            _collect(data, sec)
            sec.figures = [(caption, None) for caption, _ in sec.figures]
    return data
