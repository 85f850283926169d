"""Shared test helpers (imported as `grid_helpers`, not a conftest: bench/ has its own conftest.py, and
two modules both named `conftest` cannot be imported in one session): a tiny grid file and a tiny CSV.

`tiny_grid(tmp_path, **overrides)` writes a grid TOML for `random:bert-tiny` on `embedded:reviews` that runs
in seconds per trial. Overrides are `section.key=value` pairs given as keyword arguments with the dot
spelled `__` (``tiny_grid(tmp_path, train__epochs=2, grid__batch_size=[4, 8])``); a value of `None`
removes the key; `name=` sets the run name. Returns the grid file's path.

`tiny_csv(tmp_path, n=60)` writes a small two-class CSV (`text`, `label`) for a fast `[data] source`.
`dumps_toml(doc)` / `tiny_grid_doc(**overrides)` give the same grid as a dict or as TOML text.

Tests marked `@pytest.mark.slow` are left out of the default run (pyproject's `addopts = -m 'not slow'`);
`pytest -m slow` runs them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

TINY_GRID: dict[str, Any] = {
    "name": "tiny",
    "model": {"name": "random:bert-tiny", "max_length": 16},
    "data": {"source": "embedded:reviews"},
    "train": {"epochs": 1},
    "grid": {"dataset_size": [40], "batch_size": [8], "frozen_layers": [0], "device": ["cpu"]},
    "limits": {"trial_timeout_s": 300},
}


def toml_value(value: Any) -> str:
    """A TOML spelling of a Python value (str, bool, int, float incl. nan/inf, list, dict, date/time)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        out = []
        for ch in value:
            code = ord(ch)
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            elif code < 0x20 or code == 0x7F:
                out.append(f"\\u{code:04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"no TOML spelling for {type(value).__name__}")


def toml_key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
        return key
    return toml_value(key)


def dumps_toml(doc: dict[str, Any]) -> str:
    """Top-level scalars first, then one `[table]` per dict value."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"\n[{toml_key(k)}]")
            lines.extend(f"{toml_key(kk)} = {toml_value(vv)}" for kk, vv in v.items())
    return "\n".join(lines) + "\n"


def tiny_grid_doc(**overrides: Any) -> dict[str, Any]:
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_GRID.items()}
    for spec, value in overrides.items():
        section, _, key = spec.partition("__")
        if not key:
            if value is None:
                doc.pop(section, None)
            else:
                doc[section] = value
            continue
        table = doc.setdefault(section, {})
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return doc


def tiny_grid(tmp_path: Path, filename: str = "grid.toml", **overrides: Any) -> Path:
    path = Path(tmp_path) / filename
    path.write_text(dumps_toml(tiny_grid_doc(**overrides)), encoding="utf-8")
    return path


def tiny_csv(tmp_path: Path, n: int = 60, filename: str = "tiny.csv") -> Path:
    """A small two-class CSV (`text`, `label`) that loads in milliseconds (embedded:reviews takes seconds)."""
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    lines = ["text,label"]
    for i in range(n):
        label = i % 2
        lines.append(f"review {i} was {words[(i % 3) + 3 * (1 - label)]} overall,{label}")
    path = Path(tmp_path) / filename
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
