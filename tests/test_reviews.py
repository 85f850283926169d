"""The built-in review set (harness.core.reviews): deterministic, sized, balanced, varied."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.core import reviews

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full() -> pd.DataFrame:
    return reviews.generate()


def _digest(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for text, label in zip(df["text"], df["label"]):
        h.update(f"{label}\t{text}\n".encode())
    return h.hexdigest()


def test_size_and_columns(full):
    assert reviews.TOTAL_ROWS == 4000
    assert len(full) == reviews.TOTAL_ROWS
    assert list(full.columns) == ["text", "label"]
    assert full["label"].dtype.kind == "i"
    assert all(isinstance(t, str) and t.strip() for t in full["text"])
    assert set(full["label"].unique()) == {0, 1}
    assert len(reviews.generate(n_rows=17, seed=5)) == 17


def test_empty():
    df = reviews.generate(n_rows=0)
    assert len(df) == 0 and list(df.columns) == ["text", "label"]


def test_deterministic_in_process():
    a = reviews.generate(n_rows=300, seed=7)
    b = reviews.generate(n_rows=300, seed=7)
    pd.testing.assert_frame_equal(a, b)


def test_deterministic_across_processes():
    """Same frame in a fresh interpreter with a different hash seed (no reliance on hash())."""
    code = (
        "import hashlib; from harness.core import reviews\n"
        "df = reviews.generate(n_rows=200, seed=11)\n"
        "h = hashlib.sha256()\n"
        "[h.update(f'{l}\\t{t}\\n'.encode()) for t, l in zip(df['text'], df['label'])]\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == _digest(reviews.generate(n_rows=200, seed=11))


def test_prefix_stable():
    pd.testing.assert_frame_equal(reviews.generate(n_rows=40, seed=2),
                                  reviews.generate(n_rows=120, seed=2).iloc[:40])


def test_seeds_differ():
    a = reviews.generate(n_rows=100, seed=0)
    b = reviews.generate(n_rows=100, seed=1)
    assert (a["text"] != b["text"]).mean() > 0.9


def test_balance(full):
    assert 0.55 <= full["label"].mean() <= 0.65


def test_lengths(full):
    chars = full["text"].str.len()
    words = full["text"].str.split().str.len()
    assert (chars > 2000).sum() >= 100          # the long tail (> 512 WordPiece tokens)
    assert (chars < 80).sum() >= 100            # one-liners
    assert words.min() >= 4
    assert 0.03 <= (words >= 400).mean() <= 0.12
    assert words.median() < 120                 # skewed: most reviews are short or medium


def test_negation_and_hard_cases(full):
    texts = full["text"]
    neg = texts.str.contains(r"\b(?:not|never|hardly)\b|n't\b", regex=True)
    assert neg.mean() > 0.3
    # negation appears in both classes, so it is no label shortcut
    assert neg[full["label"] == 1].mean() > 0.2 and neg[full["label"] == 0].mean() > 0.2
    assert texts.str.contains(r"wasn't bad|isn't bad|not bad", regex=True).any()
    # contrast connectors in both classes
    turn = texts.str.contains(r"\b(?:but|however|That said|Still)\b", regex=True)
    assert turn[full["label"] == 1].mean() > 0.1 and turn[full["label"] == 0].mean() > 0.1


def test_domains_present(full):
    joined = " ".join(full["text"].head(1000)).lower()
    for word in ("movie", "novel", "restaurant", "hotel", "battery"):
        assert word in joined


def test_varied(full):
    assert full["text"].nunique() / len(full) > 0.97
    counts: dict[str, int] = {}
    for text in full["text"]:
        for sent in set(re.split(r"(?<=[.!?])\s+", text)):
            counts[sent] = counts.get(sent, 0) + 1
    # no single sentence shows up in more than 5 % of the rows
    assert max(counts.values()) < 0.05 * len(full)
