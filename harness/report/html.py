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

CSS = """
:root { --fg: #1d2733; --muted: #5b6775; --line: #d9dee4; --bg: #ffffff; --band: #f5f7fa; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: var(--bg); }
header { padding: 24px 32px 12px; border-bottom: 1px solid var(--line); background: var(--band); }
header h1 { margin: 0 0 8px; font-size: 22px; overflow-wrap: anywhere; }
header p { margin: 2px 0; color: var(--muted); }
nav { margin-top: 10px; display: flex; flex-wrap: wrap; gap: 6px 14px; }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
main { padding: 8px 32px 48px; max-width: 1400px; }
section { margin-top: 28px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p, li { overflow-wrap: anywhere; }
.lead { font-weight: 600; }
section#recommendation { background: #eef6ee; border: 1px solid #b9dcb9; border-radius: 6px; padding: 4px 18px 10px; }
section#recommendation h2 { border-bottom-color: #b9dcb9; }
figure { margin: 12px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption, .caption { color: var(--muted); font-size: 13px; margin: 4px 0; }
.table-wrap { overflow-x: auto; margin: 8px 0 16px; max-height: 720px; overflow-y: auto; border: 1px solid var(--line);
              border-radius: 4px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
td { font-variant-numeric: tabular-nums; overflow-wrap: break-word; }
td.num { white-space: nowrap; }
th { background: var(--band); position: sticky; top: 0; z-index: 1; min-width: 3em; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: "\\00a0\\2195"; color: #a0a8b2; font-size: 11px; }
table.sortable th[aria-sort="ascending"]::after { content: "\\00a0\\2191"; color: var(--fg); }
table.sortable th[aria-sort="descending"]::after { content: "\\00a0\\2193"; color: var(--fg); }
tbody tr:nth-child(even) td { background: #fafbfc; }
tbody tr:hover td { background: #eef3f9; }
td.status-ok { color: #1e7b34; }
td.status-oom { color: #b3261e; font-weight: 600; background: #fdecec !important; }
td.status-timeout { color: #8a5a00; font-weight: 600; background: #fff4dd !important; }
td.status-error { color: #b3261e; font-weight: 600; background: #fdecec !important; }
pre { background: var(--band); border: 1px solid var(--line); border-radius: 4px; padding: 10px 12px;
      overflow-x: auto; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
"""

JS = """
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-v');
    if (v === null || v === '') { return null; }
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function compare(a, b) {
    if (a === null && b === null) { return 0; }
    if (a === null) { return 1; }
    if (b === null) { return -1; }
    if (typeof a === 'number' && typeof b === 'number') { return a - b; }
    return String(a).localeCompare(String(b), undefined, {numeric: true});
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      th.setAttribute('tabindex', '0');
      function sort() {
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var a = key(r1.cells[col]), b = key(r2.cells[col]);
          if (a === null || b === null) { return compare(a, b); }
          return asc ? compare(a, b) : compare(b, a);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); } });
    });
  });
})();
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '{{ script_hash }}'">
<title>{{ doc.title }}</title>
<style>{{ css }}</style>
</head>
<body>
<header>
<h1>{{ doc.title }}</h1>
{% for p in doc.intro %}<p>{{ p }}</p>
{% endfor %}<nav>{% for s in doc.sections %}<a href="#{{ s.key }}">{{ s.title }}</a>{% endfor %}</nav>
</header>
<main>
{% for s in doc.sections %}<section id="{{ s.key }}">
<h2>{{ s.title }}</h2>
{% for b in s.blocks %}{% if b.kind == "sub" %}<h3>{{ b.title }}</h3>
{% elif b.kind == "para" %}<p>{% if b.lead %}<span class="lead">{{ b.lead }}</span> {% endif %}{{ b.text }}</p>
{% elif b.kind == "bullets" %}<ul>{% for i in b.entries %}<li>{{ i }}</li>{% endfor %}</ul>
{% elif b.kind == "pre" %}{% if b.caption %}<p class="caption">{{ b.caption }}</p>{% endif %}<pre>{{ b.text }}</pre>
{% elif b.kind == "fig" %}<figure><img alt="{{ b.title }}" src="data:image/png;base64,{{ b.png_b64 }}"><figcaption><strong>{{ b.title }}.</strong> {{ b.caption }}</figcaption></figure>
{% elif b.kind == "table" %}{% if b.caption %}<p class="caption">{{ b.caption }}</p>{% endif %}<div class="table-wrap"><table{% if b.sortable %} class="sortable"{% endif %}{% if b.key %} id="table-{{ b.key }}"{% endif %}>
<thead><tr>{% for c in b.columns %}<th scope="col">{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in b.rows %}<tr>{% for c in row %}<td{% if c.sort is not none %} data-v="{{ c.sort }}"{% endif %}{% if c.cls %} class="{{ c.cls }}"{% endif %}>{{ c.text }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table></div>
{% endif %}{% endfor %}</section>
{% endfor %}</main>
<script>{{ js }}</script>
</body>
</html>
"""

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
