"""Every grid written in the README and docs/ parses: documentation that drifts from the config fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.config import parse_grid

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = 'name = "doc"\n[grid]\ndataset_size = [40]\nbatch_size = [8]\nfrozen_layers = [0]\ndevice = ["cpu"]\n'


def toml_blocks() -> list[tuple[str, str]]:
    out = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, block in enumerate(re.findall(r"```toml\n(.*?)```", md.read_text(), re.S)):
            out.append((f"{md.relative_to(ROOT)}#{i}", block))
    return out


BLOCKS = toml_blocks()


def test_the_docs_hold_grid_examples():
    assert any(name.startswith("README.md") for name, _ in BLOCKS)


@pytest.mark.parametrize("name, block", BLOCKS, ids=[n for n, _ in BLOCKS])
def test_a_documented_grid_or_section_parses(name, block):
    # A fragment (a [cost] or [limits] table alone) is checked inside the smallest valid grid.
    text = block if "[grid]" in block else MINIMAL + block
    parse_grid(text, name)
