"""`lab` and `fast`, switch by switch: batches (length buckets), each switch taking effect, the cache as
its own phase counted in the total, and `lab`'s determinism on CPU (same seed, same accuracy twice).

Fast: tiny random models; whole trials run in-process (`run_trial`) on a few dozen rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from harness.config import STRATEGIES, parse_grid
from harness.core import train as T
from harness.core.data import Encoded
from harness.trial import run_trial
from harness.grid import expand, resolve


GRID = """
name = "strategies"
[model]
name = "random:bert-tiny"
max_length = 32
[data]
source = "embedded:reviews"
[train]
epochs = 2
strategy = "{strategy}"
{train}
[grid]
dataset_size = [48]
batch_size = [8]
frozen_layers = [{frozen}]
device = ["cpu"]
"""


def one(strategy: str, frozen: Any, **train: Any) -> dict[str, Any]:
    """One whole trial, in-process."""
    lines = "\n".join(f"{k} = {v}" for k, v in train.items())
    frozen_text = '"all"' if frozen == "all" else str(frozen)
    (trial,) = expand(parse_grid(GRID.format(strategy=strategy, train=lines, frozen=frozen_text)))
    rec = run_trial(trial)
    assert rec["status"] == "ok", rec.get("traceback")
    # a CPU trial carries the machine's speed before and after its epochs (meters/speed.py)
    speed = rec["machine_speed"]
    assert speed["before_gflops"] > 0 and speed["after_gflops"] > 0 and speed["threads"] >= 1
    return rec


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------
LENGTHS = np.random.default_rng(0).integers(3, 120, 203)


def padded(batches: list[np.ndarray]) -> int:
    return int(sum(LENGTHS[b].max() * len(b) for b in batches))


@pytest.mark.parametrize("buckets", [False, True])
def test_batches_keep_every_example(buckets: bool) -> None:
    rng = np.random.default_rng(1)
    batches = T.batch_order(LENGTHS, 16, rng, shuffle=True, drop_last=False, buckets=buckets)
    assert sorted(np.concatenate(batches).tolist()) == list(range(203))
    assert len(batches) == 13 and sorted(len(b) for b in batches)[1:] == [16] * 12


@pytest.mark.parametrize("buckets", [False, True])
def test_drop_last_count(buckets: bool) -> None:
    rng = np.random.default_rng(1)
    batches = T.batch_order(LENGTHS, 16, rng, shuffle=True, drop_last=True, buckets=buckets)
    assert len(batches) == 203 // 16 and all(len(b) == 16 for b in batches)
    assert len(set(np.concatenate(batches).tolist())) == 16 * (203 // 16)


def test_buckets_pad_less_and_stay_stochastic() -> None:
    rng = np.random.default_rng(2)
    plain = T.batch_order(LENGTHS, 16, rng, shuffle=True, drop_last=True, buckets=False)
    e1 = T.batch_order(LENGTHS, 16, rng, shuffle=True, drop_last=True, buckets=True)
    e2 = T.batch_order(LENGTHS, 16, rng, shuffle=True, drop_last=True, buckets=True)
    assert padded(e1) < 0.8 * padded(plain)
    # Each epoch: a different batch order and different batch members.
    assert [b.tolist() for b in e1] != [b.tolist() for b in e2]
    members = lambda bs: {frozenset(b.tolist()) for b in bs}  # noqa: E731
    assert len(members(e1) & members(e2)) < len(e1) // 2
    # Same seed, same batches.
    again = T.batch_order(LENGTHS, 16, np.random.default_rng(2), shuffle=True, drop_last=True, buckets=False)
    assert [b.tolist() for b in again] == [b.tolist() for b in plain]


def test_evaluation_order_is_fixed_and_complete() -> None:
    rng = np.random.default_rng(3)
    a = T.batch_order(LENGTHS, 8, rng, shuffle=False, drop_last=False, buckets=True)
    b = T.batch_order(LENGTHS, 8, rng, shuffle=False, drop_last=False, buckets=True)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert sorted(np.concatenate(a).tolist()) == list(range(203))


def collate(enc: Encoded, index: np.ndarray) -> dict[str, torch.Tensor]:
    """The plain per-row padding `Collator` replaces (a reference for it; the harness no longer carries it)."""
    rows = [enc.ids[i] for i in index]
    length = enc.pad_to or max(len(r) for r in rows)
    ids = torch.full((len(rows), length), enc.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[j, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.as_tensor(np.asarray(enc.labels)[index]),
            "index": torch.as_tensor(index, dtype=torch.long)}


@pytest.mark.parametrize("pad_to", [None, 40])
def test_collator_matches_collate(pad_to: int | None) -> None:
    rng = np.random.default_rng(4)
    enc = Encoded([rng.integers(5, 99, int(n)).tolist() for n in rng.integers(1, 30, 20)], rng.integers(0, 2, 20),
                  pad_to, 0)
    index = np.array([3, 17, 0, 9])
    ref, got = collate(enc, index), T.Collator(enc)(index)
    for key in ("input_ids", "attention_mask", "labels", "index"):
        assert torch.equal(ref[key], got[key]), key
    assert got["input_ids"].shape[1] == (pad_to or max(len(enc.ids[i]) for i in index))


# --------------------------------------------------------------------------------------------------
# Strategies and switches
# --------------------------------------------------------------------------------------------------
def test_strategies_set_every_switch() -> None:
    assert set(STRATEGIES["lab"]) == set(STRATEGIES["fast"])
    lab = STRATEGIES["lab"]
    assert lab["padding"] == "longest_in_set" and lab["precision"] == "fp32" and lab["frozen_dropout"] is True
    assert lab["cache_frozen"] is False and lab["length_buckets"] is False and lab["compile"] is False
    fast = STRATEGIES["fast"]
    assert fast["cache_frozen"] is True and fast["padding"] == "batch" and fast["frozen_dropout"] is False
    # A switch set in the grid wins over the strategy.
    p = resolve({**{k: None for k in fast}, "strategy": "fast", "batch_size": 8, "eval_batch_size": None,
                 "data_seed": 1, "seed": None, "cache_frozen": False})
    assert p["cache_frozen"] is False and p["padding"] == "batch"


def test_precision_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert T.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert T.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert T.resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert T.resolve_precision("auto", torch.device("cuda")) == "fp16"


def test_lab_and_fast_records() -> None:
    """One trial each: padding, precision, optimiser, cache and its phase, all in the record."""
    lab = one("lab", "all")
    fast = one("fast", "all")
    ld, fd = lab["strategy_detail"], fast["strategy_detail"]
    assert ld["precision"] == fd["precision"] == "fp32"  # fp32 on CPU unless asked
    assert ld["optimizer_impl"] == "for-loop" and fd["optimizer_impl"] in {"fused", "foreach"}
    assert ld["pad_to"] == 32 and fd["pad_to"] is None
    assert not ld["cache_used"] and "cache" not in lab["phases"]
    assert fd["cache_used"] and fd["cache_where"] == "cpu" and fd["cache_check_rel_diff"] <= 1e-4
    # The cache's one-off cost is its own phase and counts in the trial's total.
    cache_s = fast["phases"]["cache"]
    assert cache_s > 0
    timed = sum(fast["phases"].values()) + sum(e["seconds"] for e in fast["epochs"])
    assert fast["seconds_total"] >= timed
    le, fe = lab["epochs"][0], fast["epochs"][0]
    assert fe["train_samples"] == le["train_samples"] == 40  # 48 rows: 43 train (drop_last) / 5 validation
    assert fe["train_padded_tokens"] <= le["train_padded_tokens"] == 32 * le["train_samples"]
    assert abs(fast["epochs"][-1]["val_accuracy"] - lab["epochs"][-1]["val_accuracy"]) <= 1.0


def test_lab_same_seed_same_accuracy_twice() -> None:
    """`lab` on CPU is deterministic: the same seed gives the same validation accuracy (and loss)."""
    a, b = one("lab", 1, seed=7), one("lab", 1, seed=7)
    assert [e["val_accuracy"] for e in a["epochs"]] == [e["val_accuracy"] for e in b["epochs"]]
    assert [e["val_loss"] for e in a["epochs"]] == [e["val_loss"] for e in b["epochs"]]
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]


# Switch-level checks on the Trainer directly (no data loading).
def tiny_trainer(frozen: Any = 1, **over: Any) -> T.Trainer:
    import transformers
    from transformers import AutoModelForSequenceClassification

    from harness.core.models import RANDOM_SHAPES, freeze

    cls_name, kwargs = RANDOM_SHAPES["bert-tiny"]
    config = getattr(transformers, cls_name)(**{**kwargs, "vocab_size": 1200}, num_labels=2)
    config.pad_token_id = 0
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    freeze(model, frozen)
    rng = np.random.default_rng(0)
    pad_to = over.pop("pad_to", None)
    make = lambda n: Encoded([rng.integers(1000, 1200, int(k)).tolist() for k in rng.integers(2, 20, n)],  # noqa: E731
                             rng.integers(0, 2, n), pad_to, 0)
    p = dict(STRATEGIES["fast"])
    p.update(model="random:bert-tiny", frozen_layers=frozen, precision="fp32", seed=0, optimizer="sgd",
             learning_rate=0.01, momentum=0.0, weight_decay=0.0, batch_size=4, eval_batch_size=4, epochs=1)
    p.update(over)
    return T.Trainer(model, make(16), make(8), p, torch.device("cpu"))


def test_frozen_dropout_switch() -> None:
    on = tiny_trainer(2, frozen_dropout=True, cache_frozen=False)
    on.set_train_mode()
    assert all(m.training for m in on._frozen)
    off = tiny_trainer(2, frozen_dropout=False, cache_frozen=False)
    off.set_train_mode()
    assert off._frozen and not any(m.training for m in off._frozen)
    assert off.model.classifier.training and off.parts.base.pooler.training  # the trained part keeps dropout
    noted = tiny_trainer(1, frozen_dropout=True, cache_frozen=True)
    assert noted.uses_cache() and "frozen_dropout ignored" in (noted.result.cache_note or "")


def test_padding_switch() -> None:
    """padding="batch" pads each batch to its own longest example: fewer padded tokens, same real ones."""
    def tokens(t: T.Trainer) -> tuple[int, int]:
        got = [(real, pad) for _, real, pad in t._batches(train=True)]
        return sum(r for r, _ in got), sum(p for _, p in got)

    batch = tiny_trainer(2, cache_frozen=False, length_buckets=False)
    whole = tiny_trainer(2, cache_frozen=False, length_buckets=False, pad_to=19)
    (rb, pb), (rw, pw) = tokens(batch), tokens(whole)
    assert rb == rw and pb < pw == 19 * 16
    args, _, _ = next(whole._batches(train=True))
    assert args["input_ids"].shape[1] == 19
    # Length buckets pad less again.
    bucketed = tiny_trainer(2, cache_frozen=False, length_buckets=True)
    assert tokens(bucketed)[1] <= pb


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_when_asked(precision: str) -> None:
    t = tiny_trainer(1, precision=precision)
    assert t.precision == precision and (t.scaler is not None) == (precision == "fp16")
    t.build_cache()
    t.check_cache()
    assert t.cache is not None and t.cache.flat is not None
    assert t.cache.flat.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    loss, _, samples, _, _ = t.train_epoch()
    assert samples == 16 and np.isfinite(loss)
    assert np.isfinite(t.evaluate()[0])


def test_all_cache_batches_ignore_buckets() -> None:
    t = tiny_trainer("all", length_buckets=True)
    t.build_cache()
    seen = [args["input_ids"].view(-1).tolist() for args, _, _ in t._batches(train=True)]
    assert sorted(sum(seen, [])) == list(range(16))
    lengths = t.collate_train.lengths
    # Not sorted by length within the batches (buckets would sort each group of batches longest-first).
    assert any(list(lengths[b]) != sorted(lengths[b], reverse=True) for b in seen)


def test_compile_marks_the_trained_part() -> None:
    t = tiny_trainer(1, compile=True)
    t.build_cache()
    t.maybe_compile()
    assert t.result.compiled and t.result.compiled_part == "top 1 blocks + head"
    assert getattr(t.parts.layers[1], "_compiled_call_impl", None) is not None
    assert getattr(t.parts.layers[0], "_compiled_call_impl", None) is None
    t2 = tiny_trainer(1, compile=False)
    t2.maybe_compile()
    assert not t2.result.compiled


@pytest.mark.parametrize("frozen", [0, 1, "all"])
def test_head_learning_rate_gives_the_head_its_own_group(frozen: Any) -> None:
    plain = tiny_trainer(frozen)
    assert len(plain.optimizer.param_groups) == 1 and plain.optimizer.param_groups[0]["lr"] == 0.01
    t = tiny_trainer(frozen, head_learning_rate=0.5)
    groups = t.optimizer.param_groups
    base = {id(p) for p in t.parts.base.parameters()}
    head = groups[-1]
    assert head["lr"] == 0.5 and head["params"] and not any(id(p) in base for p in head["params"])
    assert {id(p) for p in head["params"]} == {id(p) for p in t.model.classifier.parameters()}
    if frozen == "all":
        assert len(groups) == 1  # the encoder has nothing to train
    else:
        body = groups[0]
        assert len(groups) == 2 and body["lr"] == 0.01 and all(id(p) in base for p in body["params"])
    trainable = {id(p) for p in t.model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable  # every trained parameter, once


def test_head_learning_rate_unset_leaves_params_and_trial_ids_as_they_were() -> None:
    (plain,) = expand(parse_grid(GRID.format(strategy="fast", train="", frozen=0)))
    assert "head_learning_rate" not in plain.params
    (same,) = expand(parse_grid(GRID.format(strategy="fast", train="head_learning_rate = 0.01", frozen=0)))
    assert same.params["head_learning_rate"] == 0.01 and same.trial_id != plain.trial_id
