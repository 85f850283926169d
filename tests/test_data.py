"""Data: every source type, label mapping, the lab's empty-text rule, stratified sampling and split sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.core.data import DataError, encode_split, load_rows, sample_and_split

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _frame(n=40):
    texts = [f"review number {i} " + ("great" if i % 3 else "awful") for i in range(n)]
    return pd.DataFrame({"text": texts, "label": [1 if i % 3 else 0 for i in range(n)]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_each_file_type_loads(tmp_path, suffix):
    df = _frame()
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in df.to_dict("records")) + "\n")
    else:
        df.to_parquet(path)
    rows = load_rows(str(path), "text", "label")
    assert len(rows.texts) == 40
    assert rows.label_names == [0, 1]
    assert rows.labels.tolist() == df["label"].tolist()


def test_dataset_by_name_goes_through_datasets_load_dataset(tmp_path):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    _frame().to_csv(folder / "train.csv", index=False)
    rows = load_rows(str(folder), "text", "label", split="train")
    assert len(rows.texts) == 40


def test_head_takes_the_first_rows_then_the_labs_stratified_split():
    """sample = "head": the first dataset_size usable rows in file order (the lab's df.head(2000)), then
    train_test_split(test_size, shuffle=True, random_state=seed, stratify=labels) exactly as the lab called it."""
    from sklearn.model_selection import train_test_split

    from harness.core.data import Rows, sample_and_split

    labels = np.array([i % 3 % 2 for i in range(300)])
    rows = Rows([f"t{i}" for i in range(300)], labels, [0, 1])
    train, val = sample_and_split(rows, 100, 0.1, 324, sample="head")
    assert sorted(train + val) == list(range(100))
    lab_train, lab_val = train_test_split(np.arange(100), test_size=0.1, shuffle=True, random_state=324,
                                          stratify=labels[:100])
    assert train == lab_train.tolist() and val == lab_val.tolist()
    strat_train, strat_val = sample_and_split(rows, 100, 0.1, 324)  # the default: a stratified sample of all rows
    assert max(strat_train + strat_val) >= 100


def test_the_labs_csv_shape_drops_empty_texts(tmp_path):
    df = pd.DataFrame({
        "ID": range(6),
        "reviewText": ["good", None, "bad", "", "fine", "meh"],
        "summary": ["s"] * 6,
        "isPositive": [1.0, 0.0, 0.0, 1.0, 1.0, 0.0],
    })
    path = tmp_path / "NLP-REVIEW-DATA-CLASSIFICATION-TRAINING.csv"
    df.to_csv(path, index=False)
    rows = load_rows(str(path), "reviewText", "isPositive")
    assert rows.texts == ["good", "bad", "fine", "meh"]
    assert rows.dropped_empty == 2
    assert rows.labels.tolist() == [1, 0, 1, 0]


def test_string_labels_and_more_than_two_classes(tmp_path):
    df = pd.DataFrame({"t": ["a", "b", "c", "d", "e", "f"], "y": ["pos", "neg", "neutral", "pos", "neg", "neutral"]})
    df.to_csv(tmp_path / "d.csv", index=False)
    rows = load_rows(str(tmp_path / "d.csv"), "t", "y")
    assert rows.label_names == ["neg", "neutral", "pos"]
    assert rows.labels.tolist() == [2, 0, 1, 2, 0, 1]


@pytest.mark.parametrize("content, needle", [
    ("", "empty"),
    ("text,label\n", "no rows"),
    ("text,label\na,1\nb,1\n", "single class"),
    ("text,label\na,1\nb,\n", "NaN"),
    ("txt,label\na,1\nb,0\n", "text_column 'text' is not a column"),
])
def test_bad_files_say_what_is_wrong(tmp_path, content, needle):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=needle):
        load_rows(str(path), "text", "label")


def test_non_utf8_is_refused(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9,1\nthe,0\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_rows(str(path), "text", "label")


def test_two_thousand_rows_split_1800_200_stratified_and_seeded():
    rows = load_rows("embedded:reviews", "text", "label")
    tr, va = sample_and_split(rows, 2000, 0.1, 324)
    assert (len(tr), len(va)) == (1800, 200)
    assert not set(tr) & set(va)
    overall = rows.labels.mean()
    assert abs(rows.labels[va].mean() - overall) < 0.02
    assert abs(rows.labels[tr].mean() - overall) < 0.02
    assert sample_and_split(rows, 2000, 0.1, 324) == (tr, va)
    assert sample_and_split(rows, 2000, 0.1, 325) != (tr, va)


def test_dataset_size_larger_than_the_data_is_refused():
    rows = load_rows("embedded:reviews", "text", "label")
    with pytest.raises(DataError, match="larger than"):
        sample_and_split(rows, len(rows.texts) + 1, 0.1, 0)


def test_padding_longest_in_set_versus_batch():
    from harness.core.models import load_tokenizer

    tok = load_tokenizer("random:bert-tiny")
    rows = load_rows("embedded:reviews", "text", "label")
    tr, va = sample_and_split(rows, 200, 0.1, 324)
    train, val = encode_split(tok, rows, tr, va, 128, "longest_in_set")
    assert train.pad_to == val.pad_to == max(max(train.lengths()), max(val.lengths()))
    assert max(train.lengths()) <= 128
    train_b, _ = encode_split(tok, rows, tr, va, 128, "batch")
    assert train_b.pad_to is None
    assert np.array_equal(train.lengths(), train_b.lengths())


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent")
def test_the_real_sets_in_shared_load():
    sst = load_rows(str(SHARED / "sst2" / "test.tsv"), "sentence", "label")
    assert len(sst.texts) == 872 and sst.label_names == [0, 1]
    imdb = load_rows(str(SHARED / "imdb-1k" / "train.csv"), "text", "label")
    assert len(imdb.texts) == 999 and imdb.label_names == [0, 1]


def test_a_fixed_validation_set_is_the_same_for_every_dataset_size(tmp_path):
    """`[data] val_rows`: the validation rows depend on the seed only, lie apart from the training rows, and
    every one of the `dataset_size` rows trains."""
    from grid_helpers import tiny_csv

    from harness.core import data as D

    rows = D.load_rows(str(tiny_csv(tmp_path, n=200)), "text", "label")
    splits = {size: D.sample_and_split(rows, size, 0.1, 7, val_rows=50) for size in (20, 60, 150)}
    vals = {tuple(sorted(v)) for _, v in splits.values()}
    assert len(vals) == 1 and len(next(iter(vals))) == 50
    for size, (tr, va) in splits.items():
        assert len(tr) == size and not set(tr) & set(va)
        assert abs(sum(rows.labels[i] for i in va) - 25) <= 1  # stratified
    other_seed = D.sample_and_split(rows, 20, 0.1, 8, val_rows=50)[1]
    assert sorted(other_seed) != sorted(splits[20][1])
    head_tr, head_va = D.sample_and_split(rows, 30, 0.1, 7, sample="head", val_rows=50)
    assert head_va == splits[20][1] and head_tr == sorted(set(range(200)) - set(head_va))[:30]
    with pytest.raises(D.DataError, match="val_rows 50 need 210 rows"):
        D.sample_and_split(rows, 160, 0.1, 7, val_rows=50)
    assert D.split_sizes(100, 0.2) == (80, 20) and D.split_sizes(100, 0.2, 50) == (100, 50)
