"""`harness plan` with low-rank adapters (LoRA): the probes' one model with adapters in every block trains as
`apply_adapter` makes a trial's at each depth; the anatomy read off it counts what a LoRA trial holds and
computes (trainable and total parameters, FLOPs shape) as the trial's own model does; LoRA trials get a
calibration of their own, and a grid of both is planned apart.

Everything on `random:bert-tiny` (2 blocks) and a few dozen rows; the probes run in-process.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

peft = pytest.importorskip("peft")

from grid_helpers import tiny_grid  # noqa: E402
from harness.config import load_grid  # noqa: E402
from harness.core.adapters import apply_adapter, counts, set_adapted_depth  # noqa: E402
from harness.core.models import encoder_shape, freeze, load_model  # noqa: E402
from harness.grid import LORA_DEFAULTS, expand  # noqa: E402

MODEL = "random:bert-tiny"


def _lora(frozen: Any, **over: Any) -> dict[str, Any]:
    return {"adapter": "lora", "frozen_layers": frozen, **LORA_DEFAULTS, **over}


def _trial_model(frozen: Any, name: str = MODEL, **over: Any) -> Any:
    """A LoRA trial's model as `trial.py` makes it: freeze, then adapters above the depth."""
    model = load_model(name, 2, seed=0).model
    freeze(model, frozen, name)
    apply_adapter(model, _lora(frozen, **over), name)
    return model


def _probe_model(name: str = MODEL, **over: Any) -> Any:
    """The probes' model: adapters in every block (`probe.run_shapes`)."""
    model = load_model(name, 2, seed=0).model
    apply_adapter(model, _lora(0, **over), name)
    return model


def _trained(model: Any) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name,over", [(MODEL, {}), ("random:gpt2-tiny", {"lora_targets": "all-linear"})])
def test_one_model_with_adapters_in_every_block_trains_as_each_depths_own(name, over):
    """set_adapted_depth: the same trainable parameters, the same bytes kept for backward and the same
    gradients reached as the trial's model at that depth; back and forth between depths on one model (an
    encoder with peft's default targets, and a decoder's Conv1D layers, every one adapted)."""
    import torch

    from harness.plan.probe import saved_bytes

    probe = _probe_model(name, **over)
    for frozen in (1, "all", 0, 1):
        trial = _trial_model(frozen, name, **over)
        set_adapted_depth(probe, frozen, name)
        assert counts(probe)[0] == counts(trial)[0]
        assert _trained(probe) == _trained(trial)
        kept = [saved_bytes(m, frozen, name, torch.device("cpu"), contextlib.nullcontext, 24) for m in (probe, trial)]
        assert kept[0] == kept[1] > 0
        for m in (probe, trial):
            m.zero_grad(set_to_none=True)
            ids = torch.randint(5, 100, (2, 12))
            m(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros(2, dtype=torch.long)).loss.backward()
        assert {n for n, p in probe.named_parameters() if p.grad is not None} == \
               {n for n, p in trial.named_parameters() if p.grad is not None} == _trained(trial)


@pytest.fixture(scope="module")
def lora_probe(tmp_path_factory):
    """One in-process LoRA probe run: the anatomy and two shapes."""
    from harness.plan.probe import run_shapes

    tmp = tmp_path_factory.mktemp("lora_probe")
    cfg, _ = load_grid(tiny_grid(tmp, train__optimizer="adamw", grid__dataset_size=[60], grid__adapter=["lora"]))
    p = dict(expand(cfg)[0].params)
    assert p["adapter"] == "lora"
    return p, run_shapes({"params": p, "shapes": [(1, 4, 16), (0, 4, 32)], "steps": 2}, lambda e: None)


def test_the_lora_anatomy_counts_each_depths_model(lora_probe):
    """Trainable parameters (adapters above the depth and the head, not the pooler), every parameter held, and
    the FLOPs shape (adapters above the depth only) as the trial's own model has them."""
    from harness.plan.account import Anatomy

    _, res = lora_probe
    fields = set(Anatomy.__dataclass_fields__)
    anat = Anatomy(**{k: v for k, v in res["anatomy"].items() if k in fields})
    assert anat.adapter_params() and all(x > 0 for x in anat.adapter_params())
    for frozen in (0, 1):
        trial = _trial_model(frozen)
        trainable, total = counts(trial)
        assert anat.trainable(frozen) == trainable
        assert anat.weight_params(frozen) == total
        assert anat.encoder_shape(frozen) == encoder_shape(trial)
    # with everything frozen no block carries adapters: the plain head-only trial
    assert anat.trainable(None) == anat.head_params
    assert not any(anat.encoder_shape(None).adapter_params)


def test_lora_trials_have_a_calibration_of_their_own():
    from harness.plan.calibrate import anatomy_key, calibration_key, key_id

    plain = {"model": MODEL, "device": "cpu", "strategy": "fast", "frozen_layers": 0}
    lora = dict(plain, **_lora(0))
    assert "adapter" not in calibration_key(plain)  # the keys of plain trials (and their stored entries) as before
    assert key_id(calibration_key(lora)) != key_id(calibration_key(plain))
    assert anatomy_key(lora) != anatomy_key(plain)
    assert key_id(calibration_key(dict(lora, lora_alpha=32.0))) == key_id(calibration_key(lora))  # a scale only
    assert key_id(calibration_key(dict(lora, lora_r=16))) != key_id(calibration_key(lora))


def test_a_grid_of_lora_and_plain_trials_is_planned_apart(tmp_path, monkeypatch):
    """Two calibrations (their probes with and without adapters); each LoRA row holds its adapters' gradients and
    AdamW state, not the encoder's, and says so in its params and the table."""
    from harness.plan.planner import plan_grid, plan_table
    from harness.plan.probe import run_shapes

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    specs = []

    def child(spec: dict[str, Any], timeout_s: float = 0) -> dict[str, Any]:
        specs.append(spec)
        res = run_shapes(dict(spec, steps=2), lambda e: None)
        return dict(res, wall_s=1.0, spawn_to_ready_s=res["ready_s"] + 0.1)

    monkeypatch.setattr("harness.plan.probe.run_in_child", child)
    grid = tiny_grid(tmp_path, train__optimizer="adamw", grid__dataset_size=[60], grid__batch_size=[8],
                     grid__frozen_layers=[1, 0], grid__adapter=["none", "lora"], model__max_length=24)
    plan = plan_grid(str(grid))
    assert len(plan.calibrations) == 2
    assert {bool(s["params"].get("adapter")) for s in specs} == {True, False}
    rows = {(r["params"].get("adapter"), r["params"]["frozen_layers"]): r for r in plan.rows}
    assert set(rows) == {(None, 1), (None, 0), ("lora", 1), ("lora", 0)}
    assert all(r["status"] == "predicted" for r in rows.values())
    from harness.plan.account import Batches, Setting, memory
    from harness.plan.calibrate import loaded

    cal = next(c for c in plan.calibrations if c["key"].get("adapter") == "lora")
    anat, co = loaded(cal)
    for frozen in (1, 0):
        trainable = counts(_trial_model(frozen))[0]
        # past the first step a LoRA trial holds its adapters' and head's gradients and AdamW state, to the byte
        two_steps = Batches([[(8, 24), (8, 24)]], [(8, 24)], [], 60, 900, 24, 24, 48, 12)
        parts = memory(anat, Setting(frozen, False, "adamw", 0.0, False, "cpu", 1), two_steps, co)
        assert parts.phase == "train"
        assert parts.grads == trainable * 4 and parts.optimizer_state == 2 * trainable * 4
        assert rows[("lora", frozen)]["params"]["lora_r"] == LORA_DEFAULTS["lora_r"]
        assert rows[("lora", frozen)]["calibration"] != rows[(None, frozen)]["calibration"]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(plan_table(plan))
    assert "lora r=8" in console.export_text()


def test_scored_trials_show_their_adapter_only_where_they_have_one():
    """--check and the report's section show a LoRA trial apart from the plain one at its depth (a report's
    frame holds NaN where a trial has no adapter)."""
    from harness.prediction import _params_shown

    plain = {"model": MODEL, "max_length": 16, "batch_size": 8, "frozen_layers": 0, "strategy": "lab"}
    assert "adapter" not in _params_shown(plain) and "adapter" not in _params_shown(dict(plain, adapter=float("nan")))
    shown = _params_shown(dict(plain, **_lora(0)))
    assert shown["adapter"] == "lora" and shown["lora_r"] == LORA_DEFAULTS["lora_r"]


def test_lora_with_every_block_frozen_is_planned_as_the_trainer_runs_it(lora_probe, tmp_path):
    """frozen_layers = the model's depth leaves no block for adapters and LoRA freezes the pooler: nothing in the
    encoder trains, and the Trainer runs the whole encoder's cache ("all"), as the plan has it."""
    import dataclasses

    import torch

    from harness.core import data as D
    from harness.core.train import Trainer
    from harness.plan.batches import LengthSource
    from harness.plan.planner import predict_trial

    p, res = lora_probe
    cal = {"key_id": "k", "anatomy": res["anatomy"], "coefficients": {"c_bytes": 4e8, "t_head": 0.01, "te_head": 0.005,
                                                                       "kt": 1e-9, "kf": 1e-9, "kc": 1e-9}}
    cfg, _ = load_grid(tiny_grid(tmp_path, train__optimizer="adamw", grid__dataset_size=[60], grid__adapter=["lora"],
                                 grid__frozen_layers=[2, "all"], grid__strategy=["fast"]))
    at_depth, at_all = expand(cfg)
    assert at_depth.params["frozen_layers"] == 2 and at_all.params["frozen_layers"] == "all"
    lengths = LengthSource(tmp_path / "store").lengths(at_depth.params)
    a, b = predict_trial(at_depth, cal, lengths), predict_trial(dataclasses.replace(at_all, params=dict(
        at_all.params, **{k: at_depth.params[k] for k in ("adapter", *LORA_DEFAULTS)})), cal, lengths)
    assert a["memory"] == b["memory"] and a["seconds"] == b["seconds"] and a["batches"] == b["batches"]
    # the Trainer's own choice for that trial
    q = at_depth.params
    rows = D.load_rows(q["source"], q["text_column"], q["label_column"], q["split"])
    tr, va = D.sample_and_split(rows, q["dataset_size"], q["val_fraction"], q["data_seed"], q["source"])
    model = _trial_model(2)
    train_set, val_set = D.encode_split(load_model(MODEL, 2, seed=0).tokenizer, rows, tr, va, q["max_length"], q["padding"])
    trainer = Trainer(model, train_set, val_set, q, torch.device("cpu"))
    assert trainer.cached and trainer.cache_depth is None
