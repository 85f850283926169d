"""Regenerate docs/record.md's field tables and docs/record.schema.json from harness/record.py's models.

    python docs/scripts/record_schema.py           # rewrite both files
    python docs/scripts/record_schema.py --check   # exit 1 if either is stale (tests/test_flow.py does this)
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.record import json_schema, with_field_tables

DOCS = Path(__file__).resolve().parent.parent


def expected() -> dict[Path, str]:
    md = DOCS / "record.md"
    return {md: with_field_tables(md.read_text(encoding="utf-8")), DOCS / "record.schema.json": json_schema()}


def main(argv: list[str]) -> int:
    stale = [p for p, text in expected().items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for p in stale:
            print(f"{p}: stale; run python docs/scripts/record_schema.py", file=sys.stderr)
        return 1 if stale else 0
    for p, text in expected().items():
        p.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
