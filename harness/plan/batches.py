"""A trial's batches without running it: the tokenized lengths of its rows, replayed through the Trainer's own
batch order (`core.train.batch_order`, the same seed, padding policy, length buckets and drop_last), so the
account sees the padded shape of every batch the trial will run.

Rows are read and sampled by `core.data` exactly as the trial does; each (data, model tokenizer) is
tokenized once, untruncated, and clipped per `max_length` (truncation keeps the special tokens, so a
truncated example has exactly `max_length` ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .account import CACHE_BATCH_TOKENS, Batches


@dataclass
class Lengths:
    train: np.ndarray
    val: np.ndarray
    num_labels: int


class LengthSource:
    """Memoised rows, samples and token lengths for many trials (the planner's one expensive input)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[Any, ...], Any] = {}
        self._split: dict[tuple[Any, ...], tuple[list[int], list[int]]] = {}
        self._tokenizers: dict[str, Any] = {}
        self._full: dict[tuple[Any, ...], np.ndarray] = {}

    def rows(self, p: dict[str, Any]) -> Any:
        from ..core import data as D

        key = (p["source"], p["text_column"], p["label_column"], p["split"])
        if key not in self._rows:
            self._rows[key] = D.load_rows(*key)
        return self._rows[key]

    def tokenizer(self, p: dict[str, Any]) -> Any:
        from ..core.models import load_tokenizer

        name = p["model"]
        if name not in self._tokenizers:
            self._tokenizers[name] = load_tokenizer(name, bool(p.get("trust_remote_code")))
        return self._tokenizers[name]

    def lengths(self, p: dict[str, Any]) -> Lengths:
        from ..core import data as D

        rows = self.rows(p)
        skey = (p["source"], p["text_column"], p["label_column"], p["split"], p["dataset_size"], p["val_fraction"],
                p["data_seed"])
        if skey not in self._split:
            self._split[skey] = D.sample_and_split(rows, p["dataset_size"], p["val_fraction"], p["data_seed"], p["source"])
        train_idx, val_idx = self._split[skey]
        fkey = (skey[:4], p["model"])
        full = self._full.get(fkey)
        if full is None:
            full = np.full(len(rows.texts), -1, dtype=np.int64)
            self._full[fkey] = full
        need = [i for i in train_idx + val_idx if full[i] < 0]
        if need:
            tok = self.tokenizer(p)
            ids = tok([rows.texts[i] for i in need], truncation=False, padding=False, verbose=False)["input_ids"]
            full[need] = [len(x) for x in ids]
        ml = int(p["max_length"])
        clip = np.minimum(full, ml)
        return Lengths(clip[train_idx].copy(), clip[val_idx].copy(), len(rows.label_names))


def replay(p: dict[str, Any], lengths: Lengths, depth: int | None, cached: bool, device: str,
           max_steps: int | None = None) -> Batches:
    """Every batch (examples, padded length) the trial's Trainer will make, in order."""
    from ..core.train import batch_order

    tl, vl = lengths.train, lengths.val
    pad_to = int(max(tl.max(initial=0), vl.max(initial=0))) if p["padding"] == "longest_in_set" else None
    rng = np.random.default_rng(p["seed"])
    cached_all = cached and depth is None
    buckets = bool(p["length_buckets"]) and not cached_all

    def shapes(order: list[np.ndarray], lens: np.ndarray) -> list[tuple[int, int]]:
        out = [(len(ix), int(pad_to or lens[ix].max())) for ix in order if len(ix)]
        return out[:max_steps] if max_steps else out

    train = []
    for _ in range(int(p["epochs"])):
        order = batch_order(tl, int(p["batch_size"]), rng, shuffle=True, drop_last=True, buckets=buckets)
        train.append(shapes(order, tl))
    ev = shapes(batch_order(vl, int(p["eval_batch_size"]), rng, shuffle=False, drop_last=False, buckets=buckets), vl)
    cache: list[tuple[int, int]] = []
    if cached:
        both = np.concatenate([tl, vl])
        order = np.argsort(-both, kind="stable")
        budget = CACHE_BATCH_TOKENS.get(device.split(":")[0], CACHE_BATCH_TOKENS["cpu"])
        start = 0
        while start < len(order):
            longest = max(1, int(both[order[start]]))
            rows = max(1, budget // longest)
            cache.append((len(order[start:start + rows]), longest))
            start += rows
    return Batches(train=train, eval=ev, cache=cache, n_examples=len(tl) + len(vl), n_tokens=int(tl.sum() + vl.sum()),
                   width_train=int(tl.max(initial=1)), width_val=int(vl.max(initial=1)), n_train=len(tl), n_val=len(vl))
