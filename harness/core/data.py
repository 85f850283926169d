"""Data for one trial: source -> rows -> seeded stratified sample -> train/validation split -> token ids.

Sources: `embedded:reviews` (generated, see `reviews.py`), a local .csv/.tsv/.jsonl/.parquet file, or a
dataset name (or local dataset folder) through `datasets.load_dataset`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

FILE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
MAX_TEXT_CHARS = 1_000_000


class DataError(Exception):
    """Bad data. The message is one line naming the source, the column or row, and what is expected."""


@dataclass
class Rows:
    texts: list[str]
    labels: np.ndarray  # int64 class ids
    label_names: list[Any]  # id -> original label value
    dropped_empty: int = 0


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def _read_file(path: Path) -> pd.DataFrame:
    kind = FILE_SUFFIXES[path.suffix.lower()]
    try:
        if kind == "csv":
            return pd.read_csv(path, encoding="utf-8", encoding_errors="strict")
        if kind == "tsv":
            return pd.read_csv(path, sep="\t", encoding="utf-8", encoding_errors="strict", quoting=3)
        if kind == "jsonl":
            return pd.read_json(path, lines=True, encoding="utf-8")
        return pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {_first_bad_utf8(path, exc)}; expected UTF-8 text (re-save the file as UTF-8)") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header and rows") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {kind} ({first})") from None
    except Exception as exc:  # pyarrow raises its own types for a corrupt parquet file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {kind} ({first})") from None


def _first_bad_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    """Where the first byte that is not UTF-8 is, as a line number (pandas reports a chunk offset)."""
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    return f"line {number}: byte {line[bad.start]:#04x} is not UTF-8"
    except OSError:
        pass
    return f"not UTF-8 ({exc.reason})"


def _quiet_hub() -> None:
    """No retry warnings or progress bars from datasets / huggingface_hub on the user's terminal: a failure
    becomes one DataError line."""
    try:
        import datasets
        import huggingface_hub

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
        huggingface_hub.utils.disable_progress_bars()
        huggingface_hub.utils.logging.set_verbosity_error()
    except Exception:
        pass


def _load_dataset(name: str, split: str, offline: bool = False) -> pd.DataFrame:
    """A data set through `datasets.load_dataset`: a local folder as it is; a hub id through its snapshot
    in the hub cache (`hub.resolve_dataset`: fetched by the parent unless HF_HUB_OFFLINE is set; `offline`,
    as trials call it, reads the cache only), then read as a local folder."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - a dependency
        raise DataError(f"{name}: reading a dataset by name needs the 'datasets' package") from None
    _quiet_hub()
    target = name
    if not Path(name).expanduser().exists():
        from .hub import HubError, resolve_dataset

        try:
            target = str(resolve_dataset(name, local_only=True if offline else None))
        except HubError as exc:
            raise DataError(str(exc)) from None
    try:
        ds = datasets.load_dataset(target, split=split)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{name}: not a local file and could not be loaded with datasets.load_dataset(split={split!r}) ({first[:200]})"
        ) from None
    return ds.to_pandas()


def load_frame(source: str, split: str = "train", offline: bool = False) -> pd.DataFrame:
    if source == "embedded:reviews":
        from .reviews import generate

        return generate()
    if source.startswith("embedded:"):
        raise DataError(f"{source}: unknown embedded data set; expected embedded:reviews")
    path = Path(source).expanduser()
    if path.suffix.lower() in FILE_SUFFIXES:
        if not path.is_file():
            raise DataError(f"{source}: no such data file")
        return _read_file(path)
    if path.is_file():
        known = ", ".join(sorted(FILE_SUFFIXES))
        raise DataError(f"{source}: unknown file type {path.suffix!r}; expected one of {known}")
    return _load_dataset(source, split, offline)


def load_rows(source: str, text_column: str, label_column: str, split: str = "train", offline: bool = False) -> Rows:
    """All usable rows of a source: texts as strings, labels mapped to class ids 0..K-1. `offline`: a hub
    data set comes from the local cache only (a trial's reading of what the parent resolved)."""
    df = load_frame(source, split, offline)
    for col, key in ((text_column, "text_column"), (label_column, "label_column")):
        if col not in df.columns:
            cols = ", ".join(map(str, list(df.columns)[:12]))
            raise DataError(f"{source}: {key} {col!r} is not a column; the columns are: {cols}")
    if len(df) == 0:
        raise DataError(f"{source}: no rows (only a header); expected labelled texts")
    df = df[[text_column, label_column]]
    # As the lab did (dropna on reviewText): rows without text are dropped, not errors.
    text = df[text_column]
    empty = text.isna() | text.astype(str).str.strip().eq("")
    dropped = int(empty.sum())
    row_no = np.flatnonzero(~empty.to_numpy()) + 1  # kept row -> its data row number in the file (1-based)
    df = df[~empty]
    if len(df) == 0:
        raise DataError(f"{source}: every row has an empty {text_column!r}; expected texts")
    bad_label = df[label_column].isna()
    if bad_label.any():
        row = int(bad_label.to_numpy().nonzero()[0][0])
        raise DataError(f"{source}: {label_column!r} is empty or NaN in data row {row_no[row]}; every row needs a label")
    texts = df[text_column].astype(str).tolist()
    too_long = [i for i, t in enumerate(texts) if len(t) > MAX_TEXT_CHARS]
    if too_long:
        raise DataError(
            f"{source}: {text_column!r} in data row {row_no[too_long[0]]} has {len(texts[too_long[0]])} characters; "
            f"expected at most {MAX_TEXT_CHARS}"
        )
    raw_labels = df[label_column].tolist()
    for i, v in enumerate(raw_labels):
        if isinstance(v, float) and not math.isfinite(v):
            raise DataError(f"{source}: {label_column!r} is {v} in data row {row_no[i]}; expected a class label")
        if isinstance(v, float) and v.is_integer():
            raw_labels[i] = int(v)
        elif not isinstance(v, (int, str, bool, np.integer, np.bool_)):
            raise DataError(f"{source}: {label_column!r} is {v!r} in data row {row_no[i]}; expected a class label (int, bool or str)")
    raw_labels = [v.item() if isinstance(v, (np.integer, np.bool_)) else v for v in raw_labels]
    kinds = {type(v) for v in raw_labels}
    if len(kinds) > 1 and not kinds <= {int, bool}:
        raise DataError(f"{source}: {label_column!r} mixes label types {sorted(k.__name__ for k in kinds)}; expected one")
    names = sorted(set(raw_labels))
    if len(names) < 2:
        raise DataError(f"{source}: {label_column!r} has a single class ({names[0]!r}); expected at least 2 classes")
    if len(names) > 1000:
        raise DataError(f"{source}: {label_column!r} has {len(names)} distinct values; expected class labels (at most 1000)")
    index = {v: i for i, v in enumerate(names)}
    labels = np.array([index[v] for v in raw_labels], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(names))
    if counts.min() < 2:  # a class seen once is a typo or a stray value far more often than a real class
        lone = int(np.argmin(counts))
        row = int(row_no[int(np.flatnonzero(labels == lone)[0])])
        raise DataError(
            f"{source}: {label_column!r} is {names[lone]!r} only in data row {row}; expected each class in at least "
            f"2 rows (the other classes are {', '.join(repr(n) for n in names if n != names[lone])[:200]})"
        )
    return Rows(texts=texts, labels=labels, label_names=names, dropped_empty=dropped)


# --------------------------------------------------------------------------------------------------
# Sampling and splitting (scikit-learn's stratified splitter, exactly as the lab called it)
# --------------------------------------------------------------------------------------------------
def sample_and_split(rows: Rows, dataset_size: int, val_fraction: float, seed: int, source: str = "data",
                     sample: str = "stratified") -> tuple[list[int], list[int]]:
    """Indices of the train and validation rows: `dataset_size` rows, then a stratified split. 2,000 rows
    with val_fraction 0.1 give 1,800 / 200, as in the lab. `sample = "stratified"` takes a seeded
    stratified sample of the rows; "head" the first `dataset_size` usable rows in file order (the lab's
    `dropna(subset=["reviewText"])` then `df.head(2000)`: rows with empty text are dropped first here too)."""
    from sklearn.model_selection import train_test_split

    n = len(rows.texts)
    if dataset_size > n:
        raise DataError(f"{source}: dataset_size {dataset_size} is larger than the {n} usable rows")
    idx = np.arange(n)
    counts = np.bincount(rows.labels)
    if dataset_size < n and sample == "head":
        idx = idx[:dataset_size]
    elif dataset_size < n:
        strat = rows.labels if _can_stratify(counts, dataset_size, n) else None
        idx, _ = train_test_split(idx, train_size=dataset_size, random_state=seed, shuffle=True, stratify=strat)
    labels = rows.labels[idx]
    n_val = math.ceil(dataset_size * val_fraction)
    if n_val < 1 or dataset_size - n_val < 1:
        raise DataError(f"{source}: dataset_size {dataset_size} with val_fraction {val_fraction} leaves an empty split")
    sub_counts = np.bincount(labels, minlength=len(counts))
    strat = labels if _can_stratify(sub_counts[sub_counts > 0], n_val, dataset_size) else None
    train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, shuffle=True, stratify=strat)
    return [int(i) for i in train_idx], [int(i) for i in val_idx]


def _can_stratify(counts: np.ndarray, n_pick: int, n_total: int) -> bool:
    counts = counts[counts > 0]
    return bool(counts.min() >= 2 and n_pick >= len(counts) and n_total - n_pick >= len(counts))


# --------------------------------------------------------------------------------------------------
# Tokenized split
# --------------------------------------------------------------------------------------------------
@dataclass
class Encoded:
    """Token ids per example (unpadded) and the length every batch is padded to (None: per batch)."""

    ids: list[list[int]]
    labels: np.ndarray
    pad_to: int | None
    pad_id: int

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    out = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return out["input_ids"]


def encode_split(tokenizer: Any, rows: Rows, train_idx: list[int], val_idx: list[int], max_length: int,
                 padding: str) -> tuple[Encoded, Encoded]:
    """Tokenize once. `longest_in_set` pads every batch to the longest text of the whole sample, as the
    lab's single tokenizer call with padding=True did; `batch` pads each batch to its own longest."""
    texts = [rows.texts[i] for i in train_idx] + [rows.texts[i] for i in val_idx]
    ids = tokenize(tokenizer, texts, max_length)
    pad_to = max(len(x) for x in ids) if padding == "longest_in_set" else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n = len(train_idx)
    train = Encoded(ids[:n], rows.labels[train_idx], pad_to, pad_id)
    val = Encoded(ids[n:], rows.labels[val_idx], pad_to, pad_id)
    return train, val
