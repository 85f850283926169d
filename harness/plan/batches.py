"""A trial's batches without running it: the tokenized lengths of its rows, replayed through the Trainer's own
batch order (`core.batching.batch_order`, the same seed, padding policy, length buckets and drop_last), so the
account sees the padded shape of every batch the trial will run.

Rows are read and sampled by `core.data` exactly as the trial does; each (data, model tokenizer) is
tokenized once, untruncated, and clipped per `max_length` (truncation keeps the special tokens, so a
truncated example has exactly `max_length` ids).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.batching import CACHE_BATCH_TOKENS
from .account import Batches


@dataclass
class Lengths:
    train: np.ndarray
    val: np.ndarray
    num_labels: int


class LengthSource:
    """Memoised rows, samples and token lengths for many trials (the planner's one expensive input). With a
    `store` folder, each trial's (untruncated) train and validation lengths are kept on disk, keyed by the
    data file's path, size and modification time, the sample and the tokenizer: a later plan of the same grid
    neither reads the rows, samples them (scikit-learn) nor tokenizes them (transformers, torch)."""

    def __init__(self, store: Path | None = None) -> None:
        self._rows: dict[tuple[Any, ...], Any] = {}
        self._split: dict[tuple[Any, ...], tuple[list[int], list[int]]] = {}
        self._tokenizers: dict[str, Any] = {}
        self._full: dict[tuple[Any, ...], np.ndarray] = {}
        self.store = store
        self.stored_hits = 0
        self._libraries: list[str] | None = None  # the tokenizer libraries' versions, part of a stored key

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
        path = self._stored_path(p)
        if path is not None and path.exists():
            try:
                with np.load(path) as z:
                    train, val, labels = z["train"], z["val"], int(z["num_labels"])
                self.stored_hits += 1
                return self._clip(p, train, val, labels)
            except (OSError, KeyError, ValueError):  # a damaged entry: measured again below
                pass
        train, val, labels = self._measure(p)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez(tmp, train=train, val=val, num_labels=labels)
                os.replace(tmp, path)
            except OSError:  # a read-only cache: the plan still stands, the next one tokenizes again
                pass
        return self._clip(p, train, val, labels)

    @staticmethod
    def _clip(p: dict[str, Any], train: np.ndarray, val: np.ndarray, labels: int) -> Lengths:
        ml = int(p["max_length"])
        return Lengths(np.minimum(train, ml), np.minimum(val, ml), labels)

    def _measure(self, p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
        from ..core import data as D

        rows = self.rows(p)
        skey = _sample_key(p)
        if skey not in self._split:
            self._split[skey] = D.sample_and_split(rows, p["dataset_size"], p["val_fraction"], p["data_seed"],
                                                   p["source"], sample=skey[7], val_rows=p.get("val_rows"))  # skey[7]: the sample
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
        return full[train_idx].copy(), full[val_idx].copy(), len(rows.label_names)

    def _stored_path(self, p: dict[str, Any]) -> Path | None:
        """Where this trial's lengths are kept: keyed by a local file's (or folder's) path, size and modification
        time, or an embedded set's name and generator; None for other sources (a hub data set) or without a store."""
        if self.store is None:
            return None
        source = str(p["source"])
        if os.path.exists(source):
            st = os.stat(source)
            identity: list[Any] = [os.path.abspath(source), st.st_size, st.st_mtime_ns]
        elif source.startswith("embedded:"):
            from .. import __version__

            identity = [source, __version__, _module_stamp("reviews")]
        else:
            return None
        if self._libraries is None:
            try:
                from importlib.metadata import version

                self._libraries = [version("transformers"), version("tokenizers")]
            except Exception:  # noqa: BLE001 - not installed as a distribution
                self._libraries = []
        key = json.dumps([LENGTHS_VERSION, identity, *_sample_key(p)[1:], p["model"], _folder_stamp(str(p["model"])),
                          bool(p.get("trust_remote_code")), p.get("revision"), self._libraries], default=str)
        return self.store / "lengths" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".npz")


LENGTHS_VERSION = 1


def _sample_key(p: dict[str, Any]) -> tuple[Any, ...]:
    """What picks a trial's rows: the source and its columns, the size and split, the seed, the sample (as the
    trial takes it, trial.py) and a fixed validation set."""
    return (p["source"], p["text_column"], p["label_column"], p["split"], p["dataset_size"], p["val_fraction"],
            p["data_seed"], p.get("sample") or "stratified", p.get("val_rows"))


def _folder_stamp(path: str) -> list[Any]:
    """A local model folder's tokenizer files (size, modification time): a tokenizer replaced in place is a new key."""
    if not os.path.isdir(path):
        return []
    out: list[Any] = []
    for name in sorted(os.listdir(path)):
        if "token" in name or name in ("vocab.txt", "merges.txt", "spiece.model", "config.json"):
            st = os.stat(os.path.join(path, name))
            out.append([name, st.st_size, st.st_mtime_ns])
    return out


def _module_stamp(name: str) -> list[Any]:
    """Size and modification time of a harness.core module (what generates an embedded data set)."""
    path = Path(__file__).resolve().parent.parent / "core" / f"{name}.py"
    try:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        return []


def replay(p: dict[str, Any], lengths: Lengths, depth: int | None, cached: bool, device: str,
           max_steps: int | None = None) -> Batches:
    """Every batch (examples, padded length) the trial's Trainer will make, in order."""
    from ..core.batching import batch_order

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
