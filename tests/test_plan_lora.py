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
MiB = 2**20


def _lora(frozen: Any) -> dict[str, Any]:
    return {"adapter": "lora", "frozen_layers": frozen, **LORA_DEFAULTS}


def _trial_model(frozen: Any) -> Any:
    """A LoRA trial's model as `trial.py` makes it: freeze, then adapters above the depth."""
    model = load_model(MODEL, 2, seed=0).model
    freeze(model, frozen, MODEL)
    apply_adapter(model, _lora(frozen), MODEL)
    return model


def _probe_model() -> Any:
    """The probes' model: adapters in every block (`probe.run_shapes`)."""
    model = load_model(MODEL, 2, seed=0).model
    apply_adapter(model, _lora(0), MODEL)
    return model


def _trained(model: Any) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_one_model_with_adapters_in_every_block_trains_as_each_depths_own():
    """set_adapted_depth: the same trainable parameters, the same bytes kept for backward and the same
    gradients reached as the trial's model at that depth; back and forth between depths on one model."""
    import torch

    from harness.plan.probe import saved_bytes

    probe = _probe_model()
    for frozen in (1, "all", 0, 1):
        trial = _trial_model(frozen)
        set_adapted_depth(probe, frozen, MODEL)
        assert counts(probe)[0] == counts(trial)[0]
        assert _trained(probe) == _trained(trial)
        kept = [saved_bytes(m, frozen, MODEL, torch.device("cpu"), contextlib.nullcontext, 24) for m in (probe, trial)]
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
    for frozen in (1, 0):
        trainable = counts(_trial_model(frozen))[0]
        parts = rows[("lora", frozen)]["memory"]["parts_mib"]
        plain = rows[(None, frozen)]["memory"]["parts_mib"]
        # gradients are kept only if the peak is past the first step; either way never the encoder's
        assert parts["grads"] in (0.0, round(trainable * 4 / MiB, 1))
        assert parts["optimizer_state"] in (0.0, round(2 * trainable * 4 / MiB, 1))
        assert rows[("lora", frozen)]["params"]["lora_r"] == LORA_DEFAULTS["lora_r"]
        assert rows[("lora", frozen)]["calibration"] != rows[(None, frozen)]["calibration"]
        assert plain["grads"] == 0.0 or plain["grads"] > parts["grads"]
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
