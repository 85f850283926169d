"""LoRA beside frozen depth (harness/core/adapters.py): what trains, counted as peft counts it; the cache
with adapters above it; FLOPs against torch's counter; settings, trial ids and bad input; a whole run.

Fast: tiny random models (2 blocks), a few dozen rows.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

peft = pytest.importorskip("peft")

from harness.config import STRATEGIES, ConfigError, parse_grid  # noqa: E402
from harness.core.adapters import apply_adapter, counts  # noqa: E402
from harness.core.data import Encoded  # noqa: E402
from harness.core.models import RANDOM_SHAPES, ModelError, anatomy, freeze  # noqa: E402
from harness.core.train import Trainer  # noqa: E402
from harness.grid import LORA_DEFAULTS, expand  # noqa: E402
from harness.core.models import encoder_shape as shape_of  # noqa: E402
from harness.meters.flops import Work, trial_flops  # noqa: E402

ARCHS = ["bert-tiny", "distilbert-tiny", "roberta-tiny"]
# What peft's own LoraConfig adds for a sequence classifier, per family: the head modules it trains in full
# (modules_to_save) and, for DistilBERT (no default in peft), the query and value projections.
HEADS = {"bert-tiny": ["classifier"], "distilbert-tiny": ["pre_classifier", "classifier"],
         "roberta-tiny": ["classifier"]}
QV = {"bert-tiny": None, "roberta-tiny": None, "distilbert-tiny": ["q_lin", "v_lin"]}


def tiny_model(shape: str, seed: int = 0) -> torch.nn.Module:
    import transformers
    from transformers import AutoModelForSequenceClassification

    cls_name, kwargs = RANDOM_SHAPES[shape]
    config = getattr(transformers, cls_name)(**{**kwargs, "vocab_size": 1200}, num_labels=2, initializer_range=0.3)
    config.pad_token_id = 0
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="eager").eval()


def lora(frozen: Any, **over: Any) -> dict[str, Any]:
    return {"adapter": "lora", "frozen_layers": frozen, **LORA_DEFAULTS, **over}


def test_defaults_are_peft_defaults() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(peft.LoraConfig)}
    assert (fields["r"], fields["lora_alpha"], fields["lora_dropout"]) == \
        (LORA_DEFAULTS["lora_r"], LORA_DEFAULTS["lora_alpha"], LORA_DEFAULTS["lora_dropout"])


# --------------------------------------------------------------------------------------------------
# What trains, counted against peft's own count
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ARCHS)
@pytest.mark.parametrize("frozen", [0, 1])
@pytest.mark.parametrize("r", [4, 8])
def test_trainable_count_matches_peft(shape: str, frozen: int, r: int) -> None:
    """Ours: adapters in blocks `frozen`.. by module name, the head trained in place. peft's: a
    PeftModelForSequenceClassification built its own way (layers_to_transform / layers_pattern, the head as
    modules_to_save). Same trainable count; peft's total also holds its copy of the head."""
    model = tiny_model(shape)
    freeze(model, frozen)
    info = apply_adapter(model, lora(frozen, lora_r=r))
    trainable, total = counts(model)

    ref_model = tiny_model(shape)
    parts = anatomy(ref_model)
    head = sum(p.numel() for name in HEADS[shape] for p in getattr(ref_model, name).parameters())
    ref = peft.get_peft_model(ref_model, peft.LoraConfig(
        task_type="SEQ_CLS", r=r, lora_alpha=8, target_modules=QV[shape] and list(QV[shape]), modules_to_save=list(HEADS[shape]),  # peft appends to it
        layers_to_transform=list(range(frozen, parts.num_layers)), layers_pattern=parts.layers_attr))
    ref_trainable, ref_total = ref.get_nb_trainable_parameters()

    assert info is not None and trainable == ref_trainable
    assert total == ref_total - head  # peft keeps the original head beside the trained copy
    assert info.adapter_params + info.head_params == trainable and info.head_params == head
    hidden = ref_model.config.hidden_size if hasattr(ref_model.config, "hidden_size") else ref_model.config.dim
    assert info.adapter_params == (parts.num_layers - frozen) * 2 * 2 * r * hidden  # Q and V: A and B each
    assert info.blocks == list(range(frozen, parts.num_layers)) and info.modules == 2 * len(info.blocks)


def test_only_adapters_and_head_train_and_nothing_below_n_is_adapted() -> None:
    model = tiny_model("bert-tiny")
    freeze(model, 1)
    info = apply_adapter(model, lora(1, lora_targets="all-linear"))
    assert info is not None and info.targets == ["all-linear"] and info.blocks == [1]
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or n.startswith("classifier.") for n in trained)
    assert not any(".layer.0." in n for n, _ in model.named_parameters() if "lora_" in n)
    assert {n.split(".layer.1.")[1].split(".lora_")[0] for n in trained if "lora_" in n} == {
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
        "intermediate.dense", "output.dense"}
    assert not model.bert.pooler.dense.weight.requires_grad  # the base stays frozen, pooler included


def test_all_frozen_leaves_no_block_for_adapters() -> None:
    model = tiny_model("roberta-tiny")
    freeze(model, "all")
    before = freeze(tiny_model("roberta-tiny"), "all")
    info = apply_adapter(model, lora("all"))
    assert info is not None and info.blocks == [] and info.modules == 0 and "no block" in (info.note or "")
    assert counts(model) == before  # the head alone, as without an adapter


def test_targets_from_the_grid_and_bad_targets() -> None:
    model = tiny_model("distilbert-tiny")
    info = apply_adapter(model, lora(0, lora_targets="q_lin,k_lin"))
    assert info is not None and info.targets == ["q_lin", "k_lin"] and info.targets_from == "lora_targets"
    assert info.modules == 4
    info = apply_adapter(tiny_model("distilbert-tiny"), lora(0))
    assert info is not None and info.targets == ["q_lin", "v_lin"] and "no default for distilbert" in info.targets_from
    info = apply_adapter(tiny_model("bert-tiny"), lora(0, lora_targets=["attention.output.dense"]))
    assert info is not None and info.modules == 2
    with pytest.raises(ModelError, match="no Linear layer named 'q_lin'.*expected some of .*query"):
        apply_adapter(tiny_model("bert-tiny"), lora(0, lora_targets="q_lin"))


# --------------------------------------------------------------------------------------------------
# The cache with LoRA above it
# --------------------------------------------------------------------------------------------------
def encoded(n: int, seed: int) -> Encoded:
    rng = np.random.default_rng(seed)
    ids = [[101, *rng.integers(1000, 1200, int(rng.integers(1, 13))).tolist(), 102] for _ in range(n)]
    return Encoded(ids, rng.integers(0, 2, n), None, 0)


def lora_trainer(shape: str, frozen: Any, **over: Any) -> Trainer:
    model = tiny_model(shape)
    freeze(model, frozen)
    p = dict(STRATEGIES["fast"])
    p.update(model="random", precision="fp32", seed=0, optimizer="adamw", learning_rate=0.01,
             momentum=0.0, weight_decay=0.0, batch_size=4, eval_batch_size=4, epochs=1, **lora(frozen), **over)
    apply_adapter(model, p)
    # peft starts B at zero (the adapter adds nothing): give it weights, so that the check sees the adapters.
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return Trainer(model, encoded(10, 1), encoded(7, 2), p, torch.device("cpu"))


def logits(t: Trainer, cached: bool, adapters: bool = True) -> torch.Tensor:
    from peft.tuners.tuners_utils import BaseTunerLayer

    out = []
    t.model.eval()
    for coll, offset in ((t.collate_train, 0), (t.collate_val, len(t.train_set))):
        b = coll(np.arange(len(coll.lengths)))
        with torch.no_grad():
            for m in t.model.modules():
                if isinstance(m, BaseTunerLayer):
                    m.enable_adapters(adapters)
            if cached:
                with t.view:
                    args = t._cached_args(b["index"] + offset, b["labels"], None)
                    args.pop("labels")
                    out.append(t.model(**args).logits)
            else:
                out.append(t.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits)
            for m in t.model.modules():
                if isinstance(m, BaseTunerLayer):
                    m.enable_adapters(True)
    return torch.cat(out)


@pytest.mark.parametrize("shape", ARCHS)
def test_cache_with_lora_above_gives_the_uncached_logits(shape: str) -> None:
    t = lora_trainer(shape, 1)
    assert t.uses_cache()
    t.build_cache()
    ref, got = logits(t, cached=False), logits(t, cached=True)
    scale = float(ref.abs().max())
    assert float((ref - got).abs().max()) <= 1e-5 * scale
    # The adapters matter on both paths: without them the logits move far more than the tolerance.
    assert float((logits(t, cached=True, adapters=False) - got).abs().max()) > 1e-2 * scale
    assert t.verify_cache() <= 1e-5
    # and training on the cache reaches the adapters of the top block only
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    t.train_epoch()
    changed = {n for n, p in t.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n or not n.startswith(t.parts.base_attr) for n in changed)
    assert any(".1." in n and "lora_A" in n for n in changed)


# --------------------------------------------------------------------------------------------------
# FLOPs: the analytic count against torch's counter, adapters in place
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, frozen, targets", [(s, f, None) for s in ARCHS for f in (0, 1)] + [
    ("bert-tiny", 0, "all-linear"), ("distilbert-tiny", 1, "all-linear"), ("roberta-tiny", 0, "key"),
    ("distilbert-tiny", 0, "v_lin")])
def test_flops_with_lora_match_torchs_counter(shape: str, frozen: int, targets: str | None) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model = tiny_model(shape)
    freeze(model, frozen)
    apply_adapter(model, lora(frozen, lora_r=4, lora_targets=targets))
    model.train()
    B, L = 4, 16
    with FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(5, 1000, (B, L)), labels=torch.zeros(B, dtype=torch.long)).loss.backward()
    work = Work(B, B * L, B * L * L)
    mine = trial_flops(shape_of(model), frozen, False, [work], []).total
    assert mine == pytest.approx(counter.get_total_flops(), rel=1e-6)
    # less than full fine-tuning of the same blocks would cost: the frozen weights get no gradient
    full = tiny_model(shape)
    freeze(full, frozen)
    assert mine < trial_flops(shape_of(full), frozen, False, [work], []).total


def test_cached_lora_flops_drop_the_frozen_forward() -> None:
    model = tiny_model("bert-tiny")
    freeze(model, 1)
    apply_adapter(model, lora(1))
    shape = shape_of(model)
    w = Work(8, 8 * 16, 8 * 16 * 16)
    uncached = trial_flops(shape, 1, False, [w, w], [w])
    cached = trial_flops(shape, 1, True, [w, w], [w], cache=w)
    block0 = 2.0 * shape.layer_params[0] * w.tokens + 4.0 * shape.attn_width * w.tokens_sq
    assert cached.parts["cache"] == pytest.approx(block0)
    assert uncached.parts["train"] - cached.parts["train"] == pytest.approx(2 * block0)


# --------------------------------------------------------------------------------------------------
# Settings: sweepable, absent when unset, one clear line for mistakes
# --------------------------------------------------------------------------------------------------
GRID = """
name = "lora"
[model]
name = "random:bert-tiny"
max_length = 32
[train]
epochs = 2
strategy = "fast"
{train}
[grid]
dataset_size = [48]
batch_size = [8]
frozen_layers = [1, 0]
device = ["cpu"]
{grid}
"""


def test_all_frozen_with_lora_is_the_head_only_trial() -> None:
    both = expand(parse_grid(GRID.format(train="", grid='adapter = ["none", "lora"]').replace("[1, 0]", '["all"]')))
    assert len(both) == 1 and "adapter" not in both[0].params


def test_no_adapter_keeps_params_and_trial_ids() -> None:
    plain = expand(parse_grid(GRID.format(train="", grid="")))
    none = expand(parse_grid(GRID.format(train='adapter = "none"', grid="")))
    assert [t.trial_id for t in plain] == [t.trial_id for t in none]
    assert not any(k == "adapter" or k.startswith("lora_") for t in plain for k in t.params)
    # lora_* swept beside "none" give one trial per "none" cell, not copies
    both = expand(parse_grid(GRID.format(train="", grid='adapter = ["none", "lora"]\nlora_r = [4, 8]')))
    assert len(both) == 2 * (1 + 2) and len({t.trial_id for t in both}) == len(both)
    assert {t.trial_id for t in both if "adapter" not in t.params} == {t.trial_id for t in plain}
    got = sorted((t.params["frozen_layers"], t.params["lora_r"], t.params["lora_alpha"]) for t in both if "adapter" in t.params)
    assert got == [(0, 4, 8.0), (0, 8, 8.0), (1, 4, 8.0), (1, 8, 8.0)]


def test_every_lora_setting_is_sweepable() -> None:
    trials = expand(parse_grid(GRID.format(train='adapter = "lora"', grid=(
        'lora_alpha = [8, 16.0]\nlora_dropout = [0.0, 0.1]\nlora_targets = ["query,value", "all-linear", ["key"]]'))))
    assert len(trials) == 2 * 2 * 2 * 3
    assert {json.dumps(t.params["lora_targets"]) for t in trials} == {'"query,value"', '"all-linear"', '["key"]'}
    assert all(t.params["lora_r"] == 8 for t in trials)


@pytest.mark.parametrize("train, grid, expect", [
    ("lora_r = 8", "", '[train] lora_r: set, but no trial has adapter = "lora"'),
    ('adapter = "none"', "lora_alpha = [4]", "[train] lora_alpha: set, but no trial"),
    ('adapter = "qlora"', "", "[train] adapter: expected 'none' or 'lora'"),
    ('adapter = "lora"\nlora_r = 0', "", "[train] lora_r: expected a number of at least 1"),
    ('adapter = "lora"\nlora_dropout = 1.0', "", "[train] lora_dropout: expected a number less than 1"),
    ('adapter = "lora"\nlora_targets = ""', "", "[train] lora_targets"),
    ('adapter = "lora"', "lora_targets = [3]", "[grid] lora_targets"),
])
def test_bad_adapter_settings_are_one_line_and_exit_2(tmp_path: Path, capsys: Any, train: str, grid: str,
                                                       expect: str) -> None:
    from harness.cli import main

    path = tmp_path / "bad.toml"
    path.write_text(GRID.format(train=train, grid=grid))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err, err
    assert not (tmp_path / "run").exists()


def test_missing_peft_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the peft library.*pip install 'peft>=0.18'"):
        parse_grid(GRID.format(train='adapter = "lora"', grid=""))


# --------------------------------------------------------------------------------------------------
# A whole run, 2 epochs, and its report
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def trial_server_stopped_after():
    """The run leaves its trial server (a forkserver child of this process) idle for the next run; stop it, so
    that later tests in this process see a process tree of their own (test_meters compares the tree's RSS
    with the kernel's ru_maxrss of one process)."""
    yield
    from multiprocessing import forkserver

    forkserver._forkserver._stop()


def test_two_epoch_run_end_to_end(tmp_path: Path, trial_server_stopped_after: None) -> None:
    from harness.cli import main

    path = tmp_path / "grid.toml"
    path.write_text(GRID.format(train='optimizer = "adamw"\nlearning_rate = 0.01', grid='adapter = ["none", "lora"]'))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-report"]) == 0
    recs = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and all(r["status"] == "ok" and len(r["epochs"]) == 2 for r in recs), \
        [(r["status"], r["error"]) for r in recs]
    by = {(r["params"]["frozen_layers"], r["params"].get("adapter", "none")): r for r in recs}
    for frozen in (1, 0):
        plain, ad = by[(frozen, "none")], by[(frozen, "lora")]
        assert plain["adapter"] is None
        a = ad["adapter"]
        assert a["kind"] == "lora" and a["r"] == 8 and a["targets"] == ["query", "value"]
        assert ad["trainable_params"] == a["adapter_params"] + a["head_params"]
        assert ad["total_params"] == plain["total_params"] + a["adapter_params"]
        assert ad["strategy_detail"]["cache_used"] == (frozen != 0)
        assert ad["flops"] > 0
    assert by[(1, "lora")]["trainable_params"] < by[(1, "none")]["trainable_params"]
    assert by[(0, "lora")]["flops"] < by[(0, "none")]["flops"]  # no weight gradients for the base
    assert by[(1, "lora")]["flops"] < by[(0, "lora")]["flops"]  # the bottom block cached, run once
    assert by[(0, "lora")]["adapter"]["blocks"] == [0, 1]
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Freezing, LoRA and full fine-tuning" in text and "Freezing, LoRA and full fine-tuning:" in text
    for label in ("LoRA r=8 above 1 frozen blocks", "LoRA r=8 in every block", "1 blocks frozen", "full fine-tuning"):
        assert label in text, label
    assert (tmp_path / "report" / "figures" / "methods.png").exists()
