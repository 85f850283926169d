"""The report as one self-contained HTML file: CSS and a small sorting script inline, figures as base64 PNG.

Rendered by jinja2 with autoescape on, so every string from the run (grid name, data path, error message)
comes out as text. Only the fixed CSS and script of this module are marked safe. A Content-Security-Policy
allows no network access at all and only this module's script (by its hash), so the page opens offline and
an injected script would not run even if one got through.
"""

from __future__ import annotations

import base64
import hashlib
import math
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness.report.document import Bullets, Document, Fig, Para, Pre, Sub, Table

# The page's fixed parts, as files of their own language: the CSS and script are inlined (and only they are
# marked safe); the template is rendered with autoescape on.
TEMPLATES = Path(__file__).resolve().parent / "templates"
CSS = (TEMPLATES / "report.css").read_text(encoding="utf-8")
JS = (TEMPLATES / "report.js").read_text(encoding="utf-8")
TEMPLATE = (TEMPLATES / "report.html.j2").read_text(encoding="utf-8")

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_TEMPLATE = _ENV.from_string(TEMPLATE)
_CLASSES = {"status-ok", "status-oom", "status-timeout", "status-error", "status-other"}


def script_hash(js: str = JS) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")


def _block(b: Any) -> dict[str, Any]:
    if isinstance(b, Sub):
        return {"kind": "sub", "title": b.title}
    if isinstance(b, Para):
        return {"kind": "para", "lead": b.lead, "text": b.text}
    if isinstance(b, Bullets):
        return {"kind": "bullets", "entries": b.items}
    if isinstance(b, Pre):
        return {"kind": "pre", "text": b.text, "caption": b.caption}
    if isinstance(b, Fig):
        data = base64.b64encode(Path(b.files.png).read_bytes()).decode("ascii")
        return {"kind": "fig", "title": b.files.title, "caption": b.files.caption, "png_b64": data}
    if isinstance(b, Table):
        rows = [[{"text": c.text, "sort": _sort(c.sort), "cls": _cls(c)} for c in row] for row in b.rows]
        return {"kind": "table", "columns": b.columns, "rows": rows, "sortable": b.sortable, "caption": b.caption,
                "key": b.key}
    raise TypeError(f"unknown block {type(b).__name__}")


def _cls(c: Any) -> str | None:
    """CSS classes from a fixed set only: the status colours, and `num` (no wrapping) for number cells."""
    classes = [c.cls] if c.cls in _CLASSES else []
    if isinstance(c.sort, (int, float)) and not isinstance(c.sort, bool) and len(c.text) <= 24:
        classes.append("num")
    return " ".join(classes) or None


def _sort(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        f = float(v)
        return repr(f) if math.isfinite(f) else None
    return str(v)


def render(doc: Document) -> str:
    sections = [{"key": s.key, "title": s.title, "blocks": [_block(b) for b in s.blocks]} for s in doc.sections]
    return _TEMPLATE.render(
        doc={"title": doc.title, "intro": doc.intro, "sections": sections},
        css=Markup(CSS),
        js=Markup(JS),
        script_hash=script_hash(JS),
    )
