"""The report as Markdown readable on a code-hosting site (GitHub-flavoured tables, figures as relative PNGs).

Every string from the run is escaped: `<`, `>` and `&` as HTML entities (so `<script>` shows as text and never
becomes a tag), Markdown punctuation with a backslash, table pipes as `\\|`. The grid copy goes in a `<pre>` block
with its text entity-escaped, which also keeps a stray code fence in it from ending the block.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from harness.report.document import Bullets, Document, Fig, Para, Pre, Sub, Table

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")


def escape(text: str, *, cell: bool = False) -> str:
    """Plain text as inline Markdown: no markup, no HTML, on one line. Outside a table cell, a leading list,
    heading or quote marker is escaped too."""
    text = html.escape(str(text), quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = re.sub(r"\s*[\r\n]+\s*", " ", text)
    if not cell:
        text = re.sub(r"^(\s*)([-+=#])", r"\1\\\2", text)
        text = re.sub(r"^(\s*\d+)([.)])", r"\1\\\2", text)
    return text


def slug(title: str) -> str:
    """The anchor a code-hosting site gives a heading (GitHub's rule: lower case, punctuation dropped, spaces
    to hyphens). Section titles are fixed text, never run data."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _table(t: Table) -> list[str]:
    out = []
    if t.caption:
        out += [f"*{escape(t.caption)}*", ""]
    out.append("| " + " | ".join(escape(c, cell=True) for c in t.columns) + " |")
    out.append("|" + "|".join(" --- " for _ in t.columns) + "|")
    for row in t.rows:
        out.append("| " + " | ".join(escape(c.text, cell=True) if c.text else " " for c in row) + " |")
    return out


def render(doc: Document, out_dir: Path) -> str:
    lines = [f"# {escape(doc.title)}", ""]
    for p in doc.intro:
        lines += [escape(p), ""]
    lines += ["**Contents:** " + " · ".join(f"[{escape(s.title)}](#{slug(s.title)})" for s in doc.sections), ""]
    for s in doc.sections:
        lines += [f"## {escape(s.title)}", ""]
        for b in s.blocks:
            if isinstance(b, Sub):
                lines += [f"### {escape(b.title)}", ""]
            elif isinstance(b, Para):
                lead = f"**{escape(b.lead)}** " if b.lead else ""
                lines += [lead + escape(b.text), ""]
            elif isinstance(b, Bullets):
                lines += [f"- {escape(i)}" for i in b.items] + [""]
            elif isinstance(b, Pre):
                if b.caption:
                    lines += [f"*{escape(b.caption)}*", ""]
                lines += ["<pre>" + html.escape(b.text, quote=False).rstrip("\n") + "</pre>", ""]
            elif isinstance(b, Fig):
                png = b.files.png.relative_to(out_dir).as_posix()
                svg = b.files.svg.relative_to(out_dir).as_posix()
                lines += [f"![{escape(b.files.title)}]({png})", "",
                          f"*{escape(b.files.caption)}* ([SVG]({svg}))", ""]
            elif isinstance(b, Table):
                lines += _table(b) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"
