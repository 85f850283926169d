"""Data for one trial: source -> rows -> seeded stratified sample -> train/validation split -> token ids.

Sources: `embedded:reviews` (generated, see `reviews.py`), a local .csv/.tsv/.jsonl/.parquet file, or a
dataset name (or local dataset folder) through `datasets.load_dataset`.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..record import first_line

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
def _read_file(path: Path, text_column: str | None = None) -> pd.DataFrame:
    kind = FILE_SUFFIXES[path.suffix.lower()]
    as_text = {text_column: str} if text_column else None  # a CSV cell is text: "42" stays "42", not 42
    try:
        if kind == "csv":
            return pd.read_csv(path, encoding="utf-8", encoding_errors="strict", dtype=as_text)
        if kind == "tsv":
            return pd.read_csv(path, sep="\t", encoding="utf-8", encoding_errors="strict", quoting=3, dtype=as_text)
        if kind == "jsonl":
            return _read_jsonl(path)
        return pd.read_parquet(path)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {_first_bad_utf8(path, exc)}; expected UTF-8 text (re-save the file as UTF-8)") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header and rows") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as {kind} ({first_line(exc, 10**6)})") from None
    except Exception as exc:  # pyarrow raises its own types for a corrupt parquet file
        raise DataError(f"{path}: cannot be read as {kind} ({first_line(exc, 10**6)})") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    """JSON Lines read line by line, so that a broken line is named by its line number (pandas names a byte
    offset). A `.json` file that is one JSON array of objects is read as well."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {_first_bad_utf8(path, exc)}; expected UTF-8 text (re-save the file as UTF-8)") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected one JSON object per line")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
        if not all(isinstance(r, dict) for r in whole):
            raise DataError(f"{path}: a JSON array whose items are not all objects; expected one object per row")
        return pd.DataFrame.from_records(whole)
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                            "expected one JSON object per line") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}: line {number}: a JSON {type(rec).__name__}, not an object; "
                            "expected one JSON object per line")
        records.append(rec)
    return pd.DataFrame.from_records(records)


# Magic numbers of the compressed and binary formats a text file name is most often put on by mistake.
_MAGIC = ((b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip)"),
          (b"BZh", "bzip2-compressed", "decompress it first (bunzip2)"),
          (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (unxz)"),
          (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it first (unzstd)"),
          (b"PK\x03\x04", "a zip archive", "unpack it first"),
          (b"PAR1", "a parquet file", "name it .parquet"))


def _check_readable_file(path: Path, source: str) -> None:
    """A data path that is not a regular file says what it is (a dangling link, a link loop, a FIFO, a
    folder) instead of "no such data file"; a text suffix on compressed or binary bytes says so."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DataError(f"{source}: a symbolic link to {os.readlink(path)}, which does not exist; "
                            "expected a data file") from None
        raise DataError(f"{source}: no such data file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{source}: a symbolic link loop (it points, through other links, back at itself); "
                            "expected a data file") from None
        raise DataError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{source}: a folder; expected a data file")
    if not stat.S_ISREG(st.st_mode):
        what = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise DataError(f"{source}: {what}, not a regular file; expected a data file (a run reads its data once "
                        "per trial: copy the data into a file)")
    kind = FILE_SUFFIXES[path.suffix.lower()]
    if kind == "parquet":
        return
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise DataError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    for magic, what, fix in _MAGIC:
        if head.startswith(magic):
            raise DataError(f"{source}: the file is {what}, not {kind} text; {fix}, or give a plain {path.suffix} file")


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
        raise DataError(
            f"{name}: not a local file and could not be loaded with datasets.load_dataset(split={split!r}) ({first_line(exc, 200)})"
        ) from None
    return ds.to_pandas()


def resolve_data_path(source: str, grid_dir: Path, notes: list[str] | None = None) -> str | None:
    """Where a relative `[data] source` is read from: the grid file's folder (what a grid kept beside its data
    expects, wherever harness is started from). For backward compatibility, a path found only in the working
    folder (how harness read it before) is still read from there, with a note. Returns the absolute path to
    read, or None to read `source` as written (embedded data, an absolute path, a dataset name)."""
    if source.startswith("embedded:"):
        return None
    path = Path(source).expanduser()
    if path.is_absolute():
        return None
    beside = Path(grid_dir) / path
    if os.path.lexists(beside):
        return str(beside)
    here = Path.cwd() / path
    if os.path.lexists(here):
        if notes is not None:
            notes.append(f"[data] source {source!r} is not in the grid file's folder ({grid_dir}); read from the "
                         f"working folder instead ({here}), as before: relative data paths are read from the grid "
                         "file's folder, so move the file there or give an absolute path")
        return str(here)
    if path.suffix.lower() in FILE_SUFFIXES:
        return str(beside)  # missing: reported as missing where it was looked for
    return None  # a dataset name for datasets.load_dataset


def load_frame(source: str, split: str = "train", text_column: str | None = None, offline: bool = False) -> pd.DataFrame:
    if source == "embedded:reviews":
        from .reviews import cached

        return cached()
    if source.startswith("embedded:"):
        raise DataError(f"{source}: unknown embedded data set; expected embedded:reviews")
    path = Path(source).expanduser()
    if path.suffix.lower() in FILE_SUFFIXES:
        _check_readable_file(path, source)
        return _read_file(path, text_column)
    if path.is_file():
        known = ", ".join(sorted(FILE_SUFFIXES))
        raise DataError(f"{source}: unknown file type {path.suffix!r}; expected one of {known}")
    return _load_dataset(source, split, offline)


def load_rows(source: str, text_column: str, label_column: str, split: str = "train", offline: bool = False) -> Rows:
    """All usable rows of a source: texts as strings, labels mapped to class ids 0..K-1.

    A row is named as "data row N" (the N-th record after the header) and, for a text file, "(line L)" too:
    a quoted CSV cell or a blank line makes the two differ, and other messages (not UTF-8) count lines.
    `offline`: a hub data set comes from the local cache only (a trial's reading of what the parent resolved)."""
    if text_column == label_column:
        raise DataError(f"{source}: text_column and label_column both name {text_column!r}; expected two different "
                        "columns (the texts and their labels)")
    df = load_frame(source, split, text_column, offline)
    dup = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    for col, key in ((text_column, "text_column"), (label_column, "label_column")):
        if col in dup:
            raise DataError(f"{source}: {key} {col!r} names {int((df.columns == col).sum())} columns; expected one "
                            "column of that name")
        if col not in df.columns:
            cols = ", ".join(map(str, list(df.columns)[:12]))
            raise DataError(f"{source}: {key} {col!r} is not a column; the columns are: {cols}")
    if len(df) == 0:
        raise DataError(f"{source}: no rows (only a header); expected labelled texts")
    df = df[[text_column, label_column]]
    lines: list[int] | None = None

    def row_name(row: int) -> str:  # 1-based data row -> "data row 41 (line 42)"
        nonlocal lines
        if lines is None:
            lines = _record_lines(source) or []
        return f"data row {row} (line {lines[row - 1]})" if 0 < row <= len(lines) else f"data row {row}"

    text = df[text_column]
    # Texts are strings: a list or a number (parquet, JSON Lines) would be trained on as its printed form.
    wrong = ~(text.isna().to_numpy() | text.map(lambda v: isinstance(v, str)).to_numpy())
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        value = text.iloc[first]
        shown = repr(value.tolist() if isinstance(value, np.ndarray) else value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise DataError(f"{source}: {text_column!r} in {row_name(first + 1)} is a {_type_name(value)} ({shown}); "
                        f"expected a text (a string) in every row ({int(wrong.sum())} row(s) are not)")
    # As the lab did (dropna on reviewText): rows without text are dropped, not errors.
    empty = text.isna() | text.astype(str).str.strip().eq("")
    dropped = int(empty.sum())
    row_no = np.flatnonzero(~empty.to_numpy()) + 1  # kept row -> its data row number in the file (1-based)
    df = df[~empty]
    if len(df) == 0:
        raise DataError(f"{source}: every row has an empty {text_column!r}; expected texts")
    bad_label = df[label_column].isna()
    if bad_label.any():
        row = int(bad_label.to_numpy().nonzero()[0][0])
        raise DataError(f"{source}: {label_column!r} is empty or NaN in {row_name(row_no[row])}; every row needs a label")
    texts = df[text_column].astype(str).tolist()
    too_long = [i for i, t in enumerate(texts) if len(t) > MAX_TEXT_CHARS]
    if too_long:
        raise DataError(
            f"{source}: {text_column!r} in {row_name(row_no[too_long[0]])} has {len(texts[too_long[0]])} characters; "
            f"expected at most {MAX_TEXT_CHARS}"
        )
    raw_labels = df[label_column].tolist()
    for i, v in enumerate(raw_labels):
        if isinstance(v, float) and not math.isfinite(v):
            raise DataError(f"{source}: {label_column!r} is {v} in {row_name(row_no[i])}; expected a class label")
        if isinstance(v, float) and v.is_integer():
            raw_labels[i] = int(v)
        elif not isinstance(v, (int, str, bool, np.integer, np.bool_)):
            raise DataError(f"{source}: {label_column!r} is {v!r} in {row_name(row_no[i])}; expected a class label (int, bool or str)")
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
            f"{source}: {label_column!r} is {names[lone]!r} only in {row_name(row)}; expected each class in at least "
            f"2 rows (the other classes are {', '.join(repr(n) for n in names if n != names[lone])[:200]})"
        )
    return Rows(texts=texts, labels=labels, label_names=names, dropped_empty=dropped)


def _type_name(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return "list"
    if isinstance(value, np.generic):
        value = value.item()
    return {list: "list", tuple: "list", dict: "table (dict)", bytes: "bytes", bool: "boolean", int: "number",
            float: "number"}.get(type(value), type(value).__name__)


def _record_lines(source: str) -> list[int] | None:
    """The file line each data row starts on, for a CSV/TSV/JSON Lines file (None for other sources): what a
    "data row" is counted from differs from lines where a quoted cell spans lines or blank lines are skipped."""
    path = Path(source).expanduser()
    kind = FILE_SUFFIXES.get(path.suffix.lower())
    if kind not in ("csv", "tsv", "jsonl"):
        return None
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if kind == "jsonl":
                return [n for n, line in enumerate(f, start=1) if line.strip()]
            reader = csv.reader(f, delimiter="," if kind == "csv" else "\t",
                                quoting=csv.QUOTE_MINIMAL if kind == "csv" else csv.QUOTE_NONE)
            out: list[int] = []
            end = 0  # the line the previous record ended on
            header = True
            for row in reader:
                start, end = end + 1, reader.line_num
                if not row or all(not cell.strip() for cell in row) and len(row) == 1:
                    continue  # a blank line: pandas skips it
                if header:
                    header = False
                    continue
                out.append(start)
            return out
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


# --------------------------------------------------------------------------------------------------
# Sampling and splitting (scikit-learn's stratified splitter, exactly as the lab called it)
# --------------------------------------------------------------------------------------------------
def split_sizes(dataset_size: int, val_fraction: float, val_rows: int | None = None) -> tuple[int, int]:
    """(training rows, validation rows) of a trial: `val_rows` apart from the `dataset_size` rows, or
    `val_fraction` of them (rounded up)."""
    if val_rows:
        return int(dataset_size), int(val_rows)
    n_val = math.ceil(dataset_size * val_fraction)
    return int(dataset_size - n_val), int(n_val)


def sample_and_split(rows: Rows, dataset_size: int, val_fraction: float, seed: int, source: str = "data",
                     sample: str = "stratified", val_rows: int | None = None) -> tuple[list[int], list[int]]:
    """Indices of the train and validation rows: `dataset_size` rows, then a stratified split. 2,000 rows
    with val_fraction 0.1 give 1,800 / 200, as in the lab. `sample = "stratified"` takes a seeded
    stratified sample of the rows; "head" the first `dataset_size` usable rows in file order (the lab's
    `dropna(subset=["reviewText"])` then `df.head(2000)`: rows with empty text are dropped first here too).
    With `val_rows`, a stratified sample of that many rows is drawn first (it depends on the seed only, so
    every `dataset_size` of a seed validates on the same rows), and the `dataset_size` rows, which all
    train, are taken from the rest."""
    from sklearn.model_selection import train_test_split

    if val_rows:
        return _fixed_validation(rows, dataset_size, int(val_rows), seed, source, sample)
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


def _fixed_validation(rows: Rows, dataset_size: int, val_rows: int, seed: int, source: str,
                      sample: str) -> tuple[list[int], list[int]]:
    from sklearn.model_selection import train_test_split

    n = len(rows.texts)
    if dataset_size + val_rows > n:
        raise DataError(f"{source}: dataset_size {dataset_size} and val_rows {val_rows} need {dataset_size + val_rows} "
                        f"rows; it has {n} usable rows")
    idx = np.arange(n)
    counts = np.bincount(rows.labels)
    strat = rows.labels if _can_stratify(counts, val_rows, n) else None
    rest, val_idx = train_test_split(idx, test_size=val_rows, random_state=seed, shuffle=True, stratify=strat)
    rest = np.sort(rest)  # file order, so that "head" takes the first rows left
    if sample == "head" or dataset_size == len(rest):
        train_idx = rest[:dataset_size]
    else:
        labels = rows.labels[rest]
        sub = np.bincount(labels, minlength=len(counts))
        strat = labels if _can_stratify(sub[sub > 0], dataset_size, len(rest)) else None
        train_idx, _ = train_test_split(rest, train_size=dataset_size, random_state=seed, shuffle=True, stratify=strat)
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
