"""`harness plan`: the replayed batches are the Trainer's own, the account's arithmetic, the probes' fit, the
CLI's one-line errors, `--max-hours`, `--check`, records carrying `predicted`, and the report's section.

The probes run in-process here (`probe.run_shapes`) except one test that runs them in a child as `plan`
does; everything uses `random:bert-tiny` on a few dozen rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from grid_helpers import tiny_grid
from harness.cli import main
from harness.config import load_grid
from harness.grid import expand
from harness.plan.account import Anatomy, Batches, Coefficients, Setting, memory, optimizer_slots, slack_feature
from harness.plan.batches import LengthSource, replay
from harness.prediction import percentile, predicted_field, score

FROZEN = ["all", 1, 0]


def _trials(tmp_path: Path, **kw) -> list:
    cfg, _ = load_grid(tiny_grid(tmp_path, **kw))
    return expand(cfg)


@pytest.fixture(scope="module")
def probe_result(tmp_path_factory):
    """One in-process probe run on bert-tiny (anatomy and three shapes)."""
    from harness.plan.probe import run_shapes

    tmp = tmp_path_factory.mktemp("probe")
    p = dict(_trials(tmp, train__optimizer="adamw", grid__dataset_size=[60])[0].params)
    res = run_shapes({"params": p, "shapes": [("all", 4, 16), (1, 4, 16), (0, 4, 32), (0, 8, 32)], "steps": 2},
                     lambda e: None)
    return p, res


def fake_children(res):
    """Stands in for `probe.run_in_child`: hands out the in-process probe's shapes one per call, as the
    per-shape children would."""
    calls = {"n": 0}

    def child(spec, timeout_s=0):
        i = calls["n"] % len(res["shapes"])
        calls["n"] += 1
        return dict(res, shapes=[res["shapes"][i]], wall_s=1.0, spawn_to_ready_s=res["ready_s"] + 0.5)

    return child


# -- batches --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy,frozen", [("lab", 0), ("lab", "all"), ("fast", 1), ("fast", "all")])
def test_replayed_batches_are_the_trainers_own(tmp_path, strategy, frozen):
    """Every training batch of two epochs and every evaluation batch: same count, size and padded length."""
    import torch

    from harness.core import data as D
    from harness.core.models import freeze, load_model
    from harness.core.train import Trainer

    trial = _trials(tmp_path, train__epochs=2, model__max_length=48,
                    grid__dataset_size=[70], grid__batch_size=[8], grid__frozen_layers=[frozen],
                    grid__strategy=[strategy])[0]
    p = trial.params
    rows = D.load_rows(p["source"], p["text_column"], p["label_column"], p["split"])
    tr, va = D.sample_and_split(rows, p["dataset_size"], p["val_fraction"], p["data_seed"], p["source"])
    loaded = load_model(p["model"], len(rows.label_names), seed=p["seed"])
    freeze(loaded.model, frozen, p["model"])
    train_set, val_set = D.encode_split(loaded.tokenizer, rows, tr, va, p["max_length"], p["padding"])
    trainer = Trainer(loaded.model, train_set, val_set, p, torch.device("cpu"))
    if trainer.uses_cache():
        trainer.build_cache()

    def shapes(train: bool) -> list[tuple[int, int]]:
        return [(int(a["labels"].shape[0]), padded // int(a["labels"].shape[0])) for a, _, padded in trainer._batches(train)]

    real_train = [shapes(True), shapes(True)]
    real_eval = shapes(False)

    lengths = LengthSource().lengths(p)
    assert lengths.train.tolist() == train_set.lengths().tolist()
    assert lengths.val.tolist() == val_set.lengths().tolist()
    depth = None if frozen == "all" else frozen
    b = replay(p, lengths, depth, trainer.uses_cache(), "cpu")
    assert b.train == real_train
    assert b.eval == real_eval
    assert bool(b.cache) == trainer.uses_cache()


def _lengths_trial(tmp_path: Path, csv: Path, **kw):
    return _trials(tmp_path, data__source=str(csv), grid__dataset_size=[40], grid__batch_size=[8],
                   grid__frozen_layers=[0], **kw)[0].params


def test_token_lengths_are_kept_and_reused_without_tokenizing(tmp_path):
    """A second plan reads each trial's lengths from the store: no rows sampled, no tokenizer loaded, the same
    lengths; a data file changed in place is a new key."""
    from grid_helpers import tiny_csv

    csv = tiny_csv(tmp_path, n=80)
    p = _lengths_trial(tmp_path, csv)
    first = LengthSource(tmp_path / "store")
    a = first.lengths(p)
    assert first.stored_hits == 0 and first._tokenizers and len(list((tmp_path / "store" / "lengths").glob("*.npz"))) == 1
    again = LengthSource(tmp_path / "store")
    b = again.lengths(p)
    assert again.stored_hits == 1 and not again._tokenizers and not again._rows
    assert a.train.tolist() == b.train.tolist() and a.val.tolist() == b.val.tolist() and a.num_labels == b.num_labels
    short = again.lengths(dict(p, max_length=9))  # clipped per trial, from the same stored entry
    assert again.stored_hits == 2 and short.train.max() <= 9
    csv.write_text(csv.read_text(encoding="utf-8") + "a much longer review than any other one in here,1\n", encoding="utf-8")
    changed = LengthSource(tmp_path / "store")
    changed.lengths(p)
    assert changed.stored_hits == 0 and len(list((tmp_path / "store" / "lengths").glob("*.npz"))) == 2


def test_the_planner_samples_the_rows_as_the_trial_does(tmp_path):
    """`[data] sample = "head"` (the lab's df.head) takes the first rows: the planner's lengths are theirs."""
    from harness.core import data as D

    csv = tmp_path / "mixed.csv"
    lines = ["text,label"] + [f"{'word ' * (1 + (i * 7) % 23)}{i},{i % 2}" for i in range(120)]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for sample, val_rows in (("head", None), ("stratified", None), ("stratified", 30), ("head", 30)):
        p = _lengths_trial(tmp_path, csv, data__sample=sample, data__val_rows=val_rows)
        rows = D.load_rows(p["source"], p["text_column"], p["label_column"], p["split"])
        tr, va = D.sample_and_split(rows, p["dataset_size"], p["val_fraction"], p["data_seed"], p["source"], sample=sample,
                                    val_rows=val_rows)
        got = LengthSource().lengths(p)
        tok = LengthSource().tokenizer(p)
        for mine, idx in ((got.train, tr), (got.val, va)):
            want = [len(tok(rows.texts[i])["input_ids"]) for i in idx]
            assert mine.tolist() == [min(n, int(p["max_length"])) for n in want], (sample, val_rows)
        assert len(got.val) == (val_rows or 4)


# -- the account ----------------------------------------------------------------------------------------------
def _anatomy() -> Anatomy:
    return Anatomy(num_layers=4, hidden=8, total_params=1000, embedding_params=400, layer_params=[100] * 4,
                   base_other_params=50, head_params=150, param_bytes=4, act_dtype_bytes=4,
                   block_a=10.0, block_b=1.0, emb_a=2.0, top0=5.0, top1=0.5, all0=3.0, all1=0.0,
                   flops_shape={"layer_params": [64] * 4, "attn_width": 8, "pooler_params": 0, "head_params": 16,
                                "input_params": [16] * 4})


def test_trainable_parameters_by_depth():
    a = _anatomy()
    assert a.trainable(None) == 150
    assert a.trainable(0) == 1000
    assert a.trainable(2) == 150 + 50 + 200
    assert a.trainable(4) == 150 + 50


def test_activations_only_where_something_trains():
    a = _anatomy()
    # depth 2 of 4: two blocks and the top; depth 0 adds the embeddings; "all" keeps only the head's inputs
    assert a.saved_bytes(2, 10, 2, False) == 2 * a.block_bytes(2, 10) + 2 * (5.0 + 0.5 * 10)
    assert a.saved_bytes(2, 10, 0, False) == 4 * a.block_bytes(2, 10) + 2 * 2.0 * 10 + 2 * (5.0 + 0.5 * 10)
    assert a.saved_bytes(2, 10, None, True) == 2 * 3.0


def test_memory_parts_add_up_and_grow_with_the_batch():
    a = _anatomy()
    s = Setting(depth=0, cached=False, optimizer="adamw", momentum=0.0, multi_tensor=False, device="cpu", epochs=1)
    co = Coefficients(c_bytes=1000.0, k_act=2.0, k_state=1.0)

    def batches(n: int, length: int) -> Batches:
        return Batches(train=[[(n, length)] * 2], eval=[(n, length)], cache=[], n_examples=n, n_tokens=n * length,
                       width_train=length, width_val=length, n_train=n, n_val=n)

    small, big = memory(a, s, batches(2, 10), co), memory(a, s, batches(8, 40), co)
    assert small.phase == "train"
    assert small.grads == 1000 * 4 and small.optimizer_state == 2 * 1000 * 4
    kept = a.saved_bytes(2, 10, 0, False)
    assert small.activations == pytest.approx(kept + 2.0 * slack_feature(kept))
    # the allocator's slack: linear for small batches, concave beyond a GiB
    assert slack_feature(1e6) == pytest.approx(1e6, rel=1e-3) and slack_feature(8 * 2**30) < 3 * 2**30
    assert small.total == pytest.approx(sum(getattr(small, k) for k in (
        "constant", "weights", "data", "cache", "grads", "optimizer_state", "activations", "state_overhead")))
    assert big.total > small.total
    assert optimizer_slots(Setting(0, False, "sgd", 0.0, False, "cpu", 1)) == 0
    assert optimizer_slots(Setting(0, False, "sgd", 0.9, False, "cpu", 1)) == 1


def test_the_first_step_runs_before_the_optimiser_has_state():
    """AdamW makes its state in its first step, after the first backward: a trial of one training step never
    holds its activations and the optimiser's state at once; from the second step on it does."""
    a = _anatomy()
    s = Setting(depth=0, cached=False, optimizer="adamw", momentum=0.0, multi_tensor=False, device="cpu", epochs=1)
    co = Coefficients(c_bytes=1000.0, k_act=2.0, k_state=1.5)
    kept = a.saved_bytes(64, 64, 0, False)
    grads, opt = 1000 * 4, 2 * 1000 * 4

    def batches(train: list[list[tuple[int, int]]]) -> Batches:
        return Batches(train=train, eval=[(2, 8)], cache=[], n_examples=64, n_tokens=64 * 64, width_train=64,
                       width_val=8, n_train=64, n_val=2)

    one = memory(a, s, batches([[(64, 64)]]), co)
    assert one.phase == "train" and one.optimizer_state == 0.0 and one.grads == grads
    assert one.total == pytest.approx(1000.0 + a.total_params * 4 + one.data + 1.5 * grads + kept + 2.0 * slack_feature(kept))
    # a second step, in the same epoch or the next, runs with the state
    for train in ([[(64, 64), (64, 64)]], [[(64, 64)], [(64, 64)]]):
        two = memory(a, s, batches(train), co)
        assert two.optimizer_state == opt and two.total == pytest.approx(one.total + 1.5 * opt)
    # a large first batch and small later ones: the first step's peak, without the state, is the larger
    mixed = memory(a, s, batches([[(64, 64), (1, 8)]]), co)
    assert mixed.optimizer_state == 0.0 and mixed.total == pytest.approx(one.total)
    # an optimiser with no state: the same either way
    sgd = Setting(depth=0, cached=False, optimizer="sgd", momentum=0.0, multi_tensor=False, device="cpu", epochs=1)
    assert memory(a, sgd, batches([[(64, 64)]]), co).total == pytest.approx(
        memory(a, sgd, batches([[(64, 64)] * 2]), co).total)


def test_the_heap_is_read_at_what_it_holds_not_at_what_lives_when_the_mappings_peak():
    """A forward's heap peaks in the attention and its storages die before the feed-forward's large ones are mapped;
    the freed heap pages stay resident (until glibc trims the heap's top, more than TRIM_THRESHOLD free there), so
    the RSS peaks with the heap's high-water mark beside the mappings. Read at the peak of live bytes, the heap
    counted nothing there (MiniLM's 8,192-token cache batches: 23-29 % under)."""
    from harness.plan.account import MMAP_THRESHOLD, TRIM_THRESHOLD, held_heap

    a = _anatomy()
    MiB = 2**20
    # storages 0 and 1: 40 MiB of heap (the attention), freed; then storage 2: a 48 MiB mapping (the feed-forward)
    a.fwd_trace = {"eval": {"sizes": [[20 * MiB, 0, 0], [20 * MiB, 0, 0], [48 * MiB, 0, 0]],
                            "events": [0, 1, -1, -2, 2, -3]}}
    assert a.forward_parts(8, 64, mapped_from=MMAP_THRESHOLD) == (0.0, 48 * MiB)  # the live bytes' peak
    assert a.forward_parts(8, 64, mapped_from=MMAP_THRESHOLD, k_heap=2.0) == (40 * MiB, 48 * MiB)
    s = Setting(depth=None, cached=False, optimizer="adamw", momentum=0.0, multi_tensor=False, device="cpu", epochs=1)
    b = Batches(train=[[(8, 64)]], eval=[(8, 64)], cache=[], n_examples=8, n_tokens=512, width_train=64,
                width_val=64, n_train=8, n_val=8)
    parts = memory(a, s, b, Coefficients(k_fwd=2.0))
    assert parts.raw_forward == 40 * MiB and parts.activations == pytest.approx(2.0 * 40 * MiB + 48 * MiB)
    # a heap peak of 100 MiB freed down to 10: the free top passes the trim threshold and goes back to the
    # system, so the mapping later sits beside 10 MiB, not 100; the forward's peak is the heap's own
    assert TRIM_THRESHOLD == 2 * MMAP_THRESHOLD
    a.fwd_trace = {"eval": {"sizes": [[10 * MiB, 0, 0]] + [[30 * MiB, 0, 0]] * 3 + [[48 * MiB, 0, 0]],
                            "events": [0, 1, 2, 3, -2, -3, -4, 4, -5, -1]}}
    a._replayed.clear()
    assert a.forward_parts(8, 64, mapped_from=MMAP_THRESHOLD, k_heap=2.0) == (100 * MiB, 0.0)
    assert a.forward_parts(8, 64, mapped_from=MMAP_THRESHOLD, k_heap=0.2) == (10 * MiB, 48 * MiB)
    import numpy as np
    assert held_heap(np.asarray([1.0, 5.0, 2.0, 3.0])).tolist() == [1.0, 5.0, 5.0, 5.0]
    big = float(TRIM_THRESHOLD)
    assert held_heap(np.asarray([1.0, big + 2.0, 1.0, 3.0])).tolist() == [1.0, big + 2.0, 1.0, 3.0]


def test_a_forward_replayed_splits_heap_and_mapped_storages_at_its_peak():
    """Storages of 32 MiB or more are glibc mappings of their own (x 1 in the RSS), smaller ones heap (x k_fwd);
    both are read at the forward's peak of live bytes, which the replay finds at the trial's shape."""
    from harness.plan.account import MMAP_THRESHOLD

    a = _anatomy()
    MiB = 2**20
    # three storages: a per-token one (16 B x n L), an attention-sized one (4 B x n L^2), a constant 1 MiB
    a.fwd_trace = {"eval": {"sizes": [[0, 16, 0], [0, 0, 4], [MiB, 0, 0]],
                            # made 0, made 1, freed 0, made 2, freed 1, freed 2
                            "events": [0, 1, -1, 2, -2, -3]}}
    heap, mapped = a.forward_parts(8, 64, mapped_from=MMAP_THRESHOLD)  # the peak: storages 1 and 2, all heap
    assert (heap, mapped) == (4 * 8 * 64**2 + MiB, 0.0)
    n = 256  # storage 1 is 4 x 256 x 512^2 = 256 MiB: mapped; the peak is storages 0 (2 MiB) and 1 together
    heap, mapped = a.forward_parts(n, 512, mapped_from=MMAP_THRESHOLD)
    assert mapped == 4 * n * 512**2 and heap == 16 * n * 512
    # on CUDA (no threshold) the same peak is all "heap" (x k_fwd ~ 1 for allocated bytes)
    assert sum(a.forward_parts(n, 512)) == heap + mapped and a.forward_parts(n, 512)[1] == 0.0
    # the account: the mapped part counts once, the heap part k_fwd times
    s = Setting(depth=None, cached=False, optimizer="adamw", momentum=0.0, multi_tensor=False, device="cpu", epochs=1)
    co = Coefficients(k_fwd=3.0)
    b = Batches(train=[[(n, 512)]], eval=[(2, 8)], cache=[], n_examples=n, n_tokens=n * 512, width_train=512,
                width_val=8, n_train=n, n_val=2)
    parts = memory(a, s, b, co)
    assert parts.phase == "train" and parts.raw_forward == heap
    assert parts.activations == pytest.approx(3.0 * heap + mapped)


def test_a_small_trials_peak_is_its_loading():
    a = _anatomy()
    s = Setting(depth=None, cached=False, optimizer="adamw", momentum=0.0, multi_tensor=False, device="cpu", epochs=1)
    b = Batches(train=[[(2, 8)]], eval=[(2, 8)], cache=[], n_examples=4, n_tokens=32, width_train=8, width_val=8,
                n_train=2, n_val=2)
    co = Coefficients(c_bytes=1000.0, load_bytes=50_000.0)
    parts = memory(a, s, b, co)
    assert parts.phase == "load" and parts.total == pytest.approx(50_000.0)
    co.load_bytes = 10.0
    assert memory(a, s, b, co).phase != "load"


# -- probes and fit -------------------------------------------------------------------------------------------
def test_probe_measures_and_the_fit_reproduces_its_shapes(probe_result):
    from harness.plan.calibrate import fit

    p, res = probe_result
    anat = res["anatomy"]
    assert anat["num_layers"] == 2 and anat["total_params"] > 0
    assert anat["block_a"] > 0  # a trained block keeps something per token
    assert all(s["cpu_peak_rss_bytes"] > 0 and s["train_seconds"] > 0 for s in res["shapes"])
    assert all(s["speed_gflops"] > 0 for s in res["shapes"])  # the machine's speed as each shape started
    from harness.plan.account import rate_from_ratio

    rates = anat["attention_rates"]  # a score element's FLOP-equivalents, by how the forward runs
    assert set(rates["ratios"]) == {"grad", "train", "eval"}
    for mode, ratio in rates["ratios"].items():  # each from its two timings, over the same tokens
        flops, scores = rates["flops"][mode], rates["scores"][mode]
        assert scores[1] == 4 * scores[0] and 0.9 < flops[1] / flops[0] < 2.0
        assert ratio > 0 and rates[mode] == rate_from_ratio(ratio, tuple(flops), tuple(scores))
    _, co, table = fit(p, res)
    assert 0.0 <= co.k_act <= 5.0 and 0.5 <= co.k_fwd <= 5.0 and co.c_bytes > 0
    # each pass's peak is at least what the process held before it; the constant is at least that, less the
    # weights (measured, not traded for the slopes)
    weights = anat["total_params"] * anat["param_bytes"]
    for sh in res["shapes"]:
        ready = sh["rss_phases"]["ready"]
        assert 0 < ready <= sh["cpu_peak_rss_bytes"] and sh["cpu_peak_rss_bytes"] == max(
            v for k, v in sh["rss_phases"].items() if k != "ready")
    assert co.c_bytes >= min(sh["rss_phases"]["ready"] for sh in res["shapes"]) - weights - 2**20
    for row in table:  # the fit reproduces the probes it was fitted on
        assert abs(row["fitted_mib"] - row["measured_mib"]) / row["measured_mib"] < 0.10


def test_plan_with_a_stored_calibration_runs_no_probe(tmp_path, probe_result, monkeypatch):
    """A calibration in the store is reused (no child, probe seconds 0); plan.json has every trial, verdicts
    against the budget and the largest batch per grid point."""
    from harness.plan import calibrate as C
    from harness.plan.planner import PLAN_SCHEMA, plan_grid, write_plan

    p, res = probe_result
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))

    monkeypatch.setattr("harness.plan.probe.run_in_child", fake_children(res))
    grid = tiny_grid(tmp_path, train__optimizer="adamw", grid__dataset_size=[60], grid__batch_size=[4, 16],
                     grid__frozen_layers=["all", 0], limits__cpu_memory="640MiB")
    first = plan_grid(str(grid))
    assert [c["source"] for c in first.calibrations] == ["probes (this plan)"] and len(first.rows) == 4
    monkeypatch.setattr("harness.plan.probe.run_in_child", lambda *a, **k: pytest.fail("probed again"))
    plan = plan_grid(str(grid))
    assert plan.probe_seconds == 0 and [c["source"] for c in plan.calibrations] == ["stored calibration"]
    assert all(r["status"] == "predicted" for r in plan.rows)
    # the calibration's speed travels with each row, for --check to scale by
    assert all(r["seconds"]["calibration_speed_gflops"] > 0 for r in plan.rows)
    assert {r["verdict"] for r in plan.rows} <= {"fits", "oom"}
    for r in plan.rows:
        assert (r["verdict"] == "fits") == (r["memory"]["peak_mib"] <= 640)
        # the parts add up to the peak (to their rounding)
        assert sum(r["memory"]["parts_mib"].values()) == pytest.approx(r["memory"]["peak_mib"], abs=0.6)
    assert len(plan.max_batch) == 2 and all("max_batch" in e for e in plan.max_batch)
    doc = json.loads(write_plan(plan, tmp_path / "plan").read_text())
    assert doc["schema"] == PLAN_SCHEMA and doc["totals"]["trials"] == 4
    assert C.Store().path.is_file()


# -- scoring --------------------------------------------------------------------------------------------------
def test_score_median_p90_and_under_predictions():
    rows = []
    for i, (pred, meas) in enumerate([(100, 100), (90, 100), (110, 100), (100, 125)]):
        row = {"status": "predicted", "memory": {"metric": "cpu_peak_rss", "peak_mib": pred},
               "seconds": {"per_epoch": 10.0, "train_per_epoch": 8.0, "eval_per_epoch": 2.0, "total": 20.0},
               "verdict": "fits"}
        rec = {"trial_id": str(i), "status": "ok", "memory": {"cpu_peak_rss_mib": meas}, "seconds_total": 20.0,
               "epochs": [{"train_seconds": 8.0, "eval_seconds": 3.0}], "params": {}}
        rows.append((predicted_field(row), rec))
    out = score(rows)
    s = out["summary"]
    assert s["memory"]["n"] == 4
    assert s["memory"]["median_abs_pct"] == pytest.approx(10.0)
    assert s["memory_under_predicted_gt_5pct"] == 2  # -10 % and -20 %
    assert s["seconds_per_epoch"]["median_abs_pct"] == pytest.approx(100 * (10 - 11) / 11 * -1, abs=0.01)
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == pytest.approx(9.1)
    assert s["seconds_per_epoch_at_speed"]["n"] == 0  # neither side carries a speed reading


def test_time_is_also_scored_at_the_machines_measured_speed():
    """A trial that ran while the machine was at half the calibration's speed took twice the seconds: scaled
    by the speed readings the prediction is exact; without the trial's readings it is not scored that way."""
    row = {"status": "predicted", "memory": {"metric": "cpu_peak_rss", "peak_mib": 100.0},
           "seconds": {"per_epoch": 10.0, "train_per_epoch": 8.0, "eval_per_epoch": 2.0, "total": 20.0,
                       "calibration_speed_gflops": 100.0}, "verdict": "fits"}
    slow = {"trial_id": "a", "status": "ok", "memory": {"cpu_peak_rss_mib": 100.0}, "seconds_total": 40.0,
            "epochs": [{"train_seconds": 16.0, "eval_seconds": 4.0}], "params": {},
            "machine_speed": {"before_gflops": 40.0, "after_gflops": 60.0, "threads": 1}}
    unread = dict(slow, trial_id="b", machine_speed=None)
    out = score([(predicted_field(row), slow), (predicted_field(row), unread)])
    a, b = out["trials"]
    assert a["epoch_error_pct"] == pytest.approx(-50.0) and a["speed_ratio"] == pytest.approx(0.5)
    assert a["epoch_error_at_speed_pct"] == pytest.approx(0.0)
    assert b["speed_ratio"] is None and b["epoch_error_at_speed_pct"] is None
    assert out["summary"]["seconds_per_epoch_at_speed"]["n"] == 1


# -- CLI ------------------------------------------------------------------------------------------------------
def test_plan_bad_grid_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[grid]\nbatch_size = [0]\n')
    assert main(["plan", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harness: error:") and "batch_size" in err[0]
    assert not (tmp_path / "out").exists()


def test_plan_check_needs_a_run_folder(tmp_path, capsys):
    grid = tiny_grid(tmp_path)
    assert main(["plan", str(grid), "--check", str(tmp_path / "nothing")]) == 2
    assert "--check expects a run folder" in capsys.readouterr().err


def test_max_hours_refuses_before_anything_is_written(tmp_path, probe_result, monkeypatch, capsys):
    p, res = probe_result
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("harness.plan.probe.run_in_child", fake_children(res))
    grid = tiny_grid(tmp_path, train__optimizer="adamw", grid__dataset_size=[60])
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--max-hours", "0.00001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "more than --max-hours" in err[0]
    assert not (out / "trials.jsonl").exists()


def test_run_with_plan_records_predicted_and_the_report_scores_it(tmp_path, probe_result, monkeypatch):
    from harness.plan import check_run
    from harness.plan.planner import plan_grid
    from harness.report import render_report
    from harness.store import RunStore

    p, res = probe_result
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("harness.plan.probe.run_in_child", fake_children(res))
    grid = tiny_grid(tmp_path, train__optimizer="adamw", grid__dataset_size=[60], grid__frozen_layers=["all", 0])
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--plan", "--no-report"]) == 0
    recs = RunStore(out).records()
    assert len(recs) == 2 and all(r["predicted"]["status"] == "predicted" for r in recs)
    assert (out / "plan.json").is_file()
    result = check_run(plan_grid(str(grid)), out)
    ok = [r for r in recs if r["status"] == "ok"]
    assert ok and result["summary"]["memory"]["n"] == len(ok), [(r["status"], r.get("error")) for r in recs]
    # the records carry the machine's speed and the forecasts the calibration's: time is scored at speed too
    assert all(r["predicted"]["speed_gflops"] > 0 and r["machine_speed"]["before_gflops"] > 0 for r in ok)
    assert result["summary"]["seconds_per_epoch_at_speed"]["n"] == len(ok)
    rep = render_report([out], tmp_path / "report")
    assert "predicted" in rep.sections
    text = rep.markdown_path.read_text()
    assert "Predicted vs measured" in text and "scaled to the machine's speed" in text


def test_probes_run_in_a_child(tmp_path):
    """The real thing once: a spawned child loads, reads the anatomy and runs one shape (a length past the
    model's 512 positions probed at 512)."""
    from harness.plan.probe import run_in_child

    p = dict(_trials(tmp_path, grid__dataset_size=[40])[0].params)
    res = run_in_child({"params": p, "shapes": [(0, 4, 4096)], "steps": 1}, timeout_s=600)
    assert res["shapes"][0]["cpu_peak_rss_bytes"] > 0
    assert res["shapes"][0]["max_length"] == 512
    assert max(width for _, width in res["shapes"][0]["train_batches"]) <= 512
    assert res["wall_s"] >= res["ready_s"] > 0
    from harness.plan.probe import _peak_rss_reset

    if _peak_rss_reset():  # the kernel's peak mark can be reset here: loading and every pass exactly
        assert res["shapes"][0]["exact_peaks"] and res["load_peak_rss_bytes"] > 0
    assert np.isfinite(res["anatomy"]["block_a"])


def test_a_key_whose_probes_fail_is_cannot_predict_and_the_rest_is_planned(tmp_path, probe_result, monkeypatch):
    from harness.plan.planner import plan_grid
    from harness.plan.probe import ProbeFailed

    p, res = probe_result
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    good = fake_children(res)

    def child(spec, timeout_s=0):
        if spec["params"]["strategy"] == "fast":
            raise ProbeFailed("RuntimeError: no such kernel")
        return good(spec, timeout_s)

    monkeypatch.setattr("harness.plan.probe.run_in_child", child)
    grid = tiny_grid(tmp_path, train__optimizer="adamw", grid__dataset_size=[60], grid__strategy=["lab", "fast"])
    plan = plan_grid(str(grid))
    by = {r["params"]["strategy"]: r for r in plan.rows}
    assert by["lab"]["status"] == "predicted"
    assert by["fast"]["status"] == "cannot predict"
    assert by["fast"]["reason"].startswith("cannot predict: the calibration probes failed (RuntimeError: no such kernel")
    assert plan.totals()["cannot_predict"] == 1


def test_the_replayed_forward_matches_a_counted_one_at_a_shape_never_traced(probe_result):
    """The probe traces the forward at four (n, L); replayed at another shape, the peak of live bytes equals
    a forward counted at that shape."""
    import torch

    from harness.core.models import load_model
    from harness.core.train import autocast_for
    from harness.plan.account import Anatomy
    from harness.plan.probe import forward_trace

    p, res = probe_result
    anat = res["anatomy"]
    assert anat["fwd_trace"]["eval"] and anat["fwd_trace"]["train"]
    a = Anatomy(**{k: v for k, v in anat.items() if k in Anatomy.__dataclass_fields__})
    model = load_model(p["model"], 2, trust_remote_code=False, allow_pickle=False, attention=p.get("attention"),
                       seed=0).model
    dev = torch.device("cpu")
    for train in (False, True):
        counted = forward_trace(model, dev, autocast_for("fp32", dev), 96, 12, train=train).peak
        replayed = sum(a.forward_parts(12, 96, train))
        assert replayed == pytest.approx(counted, rel=0.02), train


def test_the_head_on_cached_vectors_is_priced_apart():
    """fast with everything frozen runs no encoder in its epochs: its batches cost the probes' head-only batches,
    not the per-batch constants fitted where an encoder runs."""
    from harness.plan.account import seconds

    a = _anatomy()
    s = Setting(depth=None, cached=True, optimizer="adamw", momentum=0.0, multi_tensor=True, device="cpu", epochs=2)
    b = Batches(train=[[(4, 8)] * 10, [(4, 8)] * 10], eval=[(4, 8)] * 3, cache=[(16, 8)], n_examples=43,
                n_tokens=300, width_train=8, width_val=8, n_train=40, n_val=3)
    co = Coefficients(t0=0.05, te0=0.02, warmup_s=0.1, t_head=0.001, te_head=0.0005, kc=1e-9)
    t = seconds(a, s, b, co)
    assert t.train_epoch == pytest.approx([0.01, 0.01]) and t.eval_epoch == pytest.approx(0.0015)
    co.t_head = co.te_head = None  # an old calibration: the general formula
    assert seconds(a, s, b, co).train_epoch[0] > 0.5


def test_attention_blocks_by_setting():
    """Which blocks run each kind of pass: what trains with a graph, the frozen bottom without one (none under
    the cache), evaluation (only the top under the cache) and the cache's build."""
    from harness.plan.account import attention_blocks

    a = _anatomy()

    def blocks(depth, cached):
        return attention_blocks(a, Setting(depth=depth, cached=cached, optimizer="adamw", momentum=0.0,
                                           multi_tensor=False, device="cpu", epochs=1))

    assert blocks(0, False) == {"trained": 4, "frozen": 0, "eval": 4, "cache": 0}
    assert blocks(3, False) == {"trained": 1, "frozen": 3, "eval": 4, "cache": 0}
    assert blocks(3, True) == {"trained": 1, "frozen": 0, "eval": 1, "cache": 3}
    assert blocks(None, False) == {"trained": 0, "frozen": 4, "eval": 4, "cache": 0}
    assert blocks(None, True) == {"trained": 0, "frozen": 0, "eval": 0, "cache": 4}


@pytest.mark.parametrize("frozen_dropout", [False, True])
def test_the_attention_rate_measured_from_a_ratio_gives_that_ratio_back(frozen_dropout):
    """Two passes over the same tokens at 64 and 256 tokens an example, `ratio` apart in the probe: the rate
    derived from it makes the account price them `ratio` apart (the frozen bottom at the rate of its mode), and
    without rates they are priced as their FLOPs are."""
    from harness.plan.account import (rate_from_ratio, score_elements, time_features, train_seconds,
                                      frozen_forward_flops)

    import dataclasses

    a = _anatomy()  # the matmuls of a real block: its dense FLOPs above its attention's at these lengths
    a = dataclasses.replace(a, flops_shape=dict(a.flops_shape, layer_params=[20000] * 4))
    s = Setting(depth=None, cached=False, optimizer="adamw", momentum=0.0, multi_tensor=False, device="cpu",
                epochs=1, frozen_dropout=frozen_dropout)
    short, long_ = (4, 64), (1, 256)
    flops = (frozen_forward_flops(a, s, short), frozen_forward_flops(a, s, long_))
    scores = (score_elements([short], 4), score_elements([long_], 4))
    co = Coefficients(kz=1e-9)

    def priced(b):
        return train_seconds(co, time_features(a, s, [b], [], []))

    assert priced(long_) / priced(short) == pytest.approx(flops[1] / flops[0])  # no rates: FLOPs alone
    measured = 1.3 * flops[1] / flops[0]  # 30 % more than the FLOPs say
    rate = rate_from_ratio(measured, flops, scores)
    assert rate > 0
    mode, other = ("train", "eval") if frozen_dropout else ("eval", "train")
    a.attention_rates = {mode: rate, other: 0.0, "grad": 0.0}
    assert priced(long_) / priced(short) == pytest.approx(measured)
    a.attention_rates = {mode: 0.0, other: rate, "grad": rate}  # the other mode's rate is not this pass's
    assert priced(long_) / priced(short) == pytest.approx(flops[1] / flops[0])
    # a ratio the FLOPs already explain is no extra cost
    assert rate_from_ratio(flops[1] / flops[0], flops, scores) == pytest.approx(0.0, abs=1e-9)
    assert rate_from_ratio(0.5, flops, scores) == 0.0
    # slower than its score elements alone could make it: a disturbed reading, not a price
    assert rate_from_ratio(1.01 * scores[1] / scores[0], flops, scores) is None


def test_score_elements_are_the_attention_flops_of_the_blocks_each_pass_runs():
    """For every depth and cache setting, the blocks `attention_blocks` names for each pass are the ones whose
    attention `meters.flops.trial_flops` counts (a shape with nothing but attention: 4 x width x n L^2 FLOPs a
    block forward, x 3 with its backward)."""
    import dataclasses

    from harness.meters.flops import BACKWARD_FACTOR, Work, trial_flops
    from harness.plan.account import attention_blocks, score_elements

    a = _anatomy()
    a = dataclasses.replace(a, flops_shape=dict(a.flops_shape, layer_params=[0] * 4, head_params=0, input_params=[0] * 4))
    shape = a.encoder_shape()
    batches = [(4, 64), (2, 200)]
    w = Work.from_batches(batches)
    per_block = 4.0 * shape.attn_width  # FLOPs per score element of one block's forward
    for depth in (None, 0, 1, 3):
        for cached in (False, True):
            s = Setting(depth=depth, cached=cached, optimizer="adamw", momentum=0.0, multi_tensor=False,
                        device="cpu", epochs=1)
            blocks = attention_blocks(a, s)
            f = trial_flops(shape, depth, cached, [w], [w], w).parts
            want_train = per_block * (score_elements(batches, blocks["frozen"])
                                      + (1 + BACKWARD_FACTOR) * score_elements(batches, blocks["trained"]))
            cache_run = cached and (depth is None or depth > 0)
            assert f.get("train", 0.0) == pytest.approx(want_train), (depth, cached)
            assert f.get("eval", 0.0) == pytest.approx(per_block * score_elements(batches, blocks["eval"])), (depth, cached)
            assert f.get("cache", 0.0) == pytest.approx(
                per_block * score_elements(batches, blocks["cache"]) if cache_run else 0.0), (depth, cached)


def test_lab_and_fast_share_one_anatomy_on_a_cpu(tmp_path):
    """On a CPU "auto" precision is fp32: one anatomy reading serves both strategies of a model; another
    precision, device or thread count reads its own."""
    from harness.plan.calibrate import anatomy_key

    trials = _trials(tmp_path, grid__strategy=["lab", "fast"])
    by = {t.params["strategy"]: dict(t.params) for t in trials}
    assert by["lab"]["precision"] != by["fast"]["precision"]
    assert anatomy_key(by["lab"]) == anatomy_key(by["fast"])
    assert anatomy_key(dict(by["fast"], device="cuda")) != anatomy_key(dict(by["lab"], device="cuda"))
    assert anatomy_key(dict(by["lab"], precision="bf16")) != anatomy_key(by["lab"])
    assert anatomy_key(dict(by["lab"], num_threads=2)) != anatomy_key(dict(by["lab"], num_threads=1))


def test_a_phase_peak_between_two_samples_is_caught():
    """A 200 MiB spike that lives 1 ms, while the sampler looks every 20 ms: the kernel's mark has it."""
    from harness.meters.cpu_memory import CpuMemorySampler
    from harness.plan.probe import _PhasePeak, _peak_rss_reset

    if not _peak_rss_reset():
        pytest.skip("the kernel's peak-RSS mark cannot be reset here")
    import psutil

    sampler = CpuMemorySampler(interval_s=0.02)  # not started: it samples only when asked
    # this process alone, as a probe's child is (here the tree may hold an earlier test's trial server)
    sampler.tree.read = lambda force_refresh=False: psutil.Process().memory_info().rss
    phase = _PhasePeak(sampler)
    before = sampler.peak
    spike = np.ones(200 * 2**20 // 8)  # touched: resident
    del spike
    peak = phase.end()
    assert peak - before > 150 * 2**20
    # the next phase starts from what is resident now, not from the spike
    assert _PhasePeak(sampler).end() - before < 100 * 2**20


def test_traces_that_ran_different_ops_are_not_fitted():
    from types import SimpleNamespace

    from harness.plan.probe import fit_trace

    # storage 0: 1 byte per example-token; storage 1: 2 per example-token, 8 per position (the position ids)
    # and 4 per example (the loss's)
    points = [(1, 10), (2, 10), (1, 20), (2, 20), (3, 15)]

    def traced(n, length, ops=("mm", "add")):
        return SimpleNamespace(ops=list(ops), events=[0, 1, -1, -2],
                               sizes=[n * length, 2 * n * length + 8 * length + 4 * n])

    runs = [traced(n, length) for n, length in points]
    assert fit_trace(points, [*runs[:4], traced(3, 15, ("mm", "mul"))]) is None
    law = fit_trace(points, runs)
    assert law is not None and law["events"] == [0, 1, -1, -2]
    # [c, e x n, d x L, a x n L, b x n L^2] of each storage
    assert law["sizes"][0] == pytest.approx([0.0, 0.0, 0.0, 1.0, 0.0], abs=1e-3)
    assert law["sizes"][1] == pytest.approx([0.0, 4.0, 8.0, 2.0, 0.0], abs=1e-3)
    from harness.plan.account import trace_sizes

    assert trace_sizes(law, 64, 300) == pytest.approx([64 * 300, 2 * 64 * 300 + 8 * 300 + 4 * 64], rel=1e-6)


# -- fresh mappings -------------------------------------------------------------------------------------------
def _mapping_anatomy() -> Anatomy:
    """Each mode's trace: one per-token storage (16 B x n L, never mapped at these shapes) and one attention-sized
    storage (4 B x n L^2 in evaluation, 6 in training mode, 10 over a training step's forward and backward)."""
    a = _anatomy()
    a.fwd_trace = {mode: {"sizes": [[0, 0, 0, 16, 0], [0, 0, 0, 0, per]], "events": [0, 1, -1, -2]}
                   for mode, per in (("eval", 4), ("train", 6), ("grad", 10))}
    a.mapping_rate = {"seconds_per_byte": 1e-9}
    return a


def test_only_storages_of_the_threshold_or_more_count_as_mapped():
    from harness.plan.account import MMAP_THRESHOLD

    a = _mapping_anatomy()
    assert a.mapped_bytes(4, 256, "eval") == (0.0, 0.0)  # 1 MiB: the heap's
    n = 128  # 4 B x 128 x 512^2 = 128 MiB: a mapping of its own; the per-token one (1 MiB) is not
    assert 4 * n * 512**2 >= MMAP_THRESHOLD > 16 * n * 512
    for mode, per in (("eval", 4), ("train", 6), ("grad", 10)):
        assert a.mapped_bytes(n, 512, mode) == (per * n * 512**2, 0.0)
    assert _anatomy().mapped_bytes(n, 512, "grad") == (0.0, 0.0)  # no trace, nothing priced
    # a storage of one size whatever the batch (a parameter's gradient of 40 MiB) is told apart
    a.fwd_trace["grad"]["sizes"].append([40.0 * 2**20, 0, 0, 0, 0])
    a._replayed.clear()
    assert a.mapped_bytes(n, 512, "grad") == (10 * n * 512**2, 40.0 * 2**20)


def test_a_pass_of_many_steps_holds_the_heaps_climb(monkeypatch):
    """The memory coefficients are fitted on 3-step peaks; a pass of more steps holds climb_rate x climb_weight(steps)
    x the heap's bytes at its peak more (storages of 32 MiB or more are mappings: they do not fragment), at CLIMB
    with a frozen bottom and CLIMB_ALL_TRAINED with every block trained, none on CUDA and none where the first step
    (before the optimiser's state) sets the peak."""
    from harness.plan import account as acc
    from harness.plan.account import climb_weight

    assert acc.CLIMB > acc.CLIMB_ALL_TRAINED >= 0  # measured (bench/plan/climb.py), not left at nothing
    assert climb_weight(1) == climb_weight(3) == 0.0 and climb_weight(20) == climb_weight(5000) == 1.0
    assert 0 < climb_weight(4) < climb_weight(8) < climb_weight(19) < 1
    assert climb_weight(8) == pytest.approx(math.log(8 / 3) / math.log(20 / 3))
    monkeypatch.setattr(acc, "CLIMB", 0.2)
    monkeypatch.setattr(acc, "CLIMB_ALL_TRAINED", 0.05)
    a = _mapping_anatomy()  # a training step's storages: 16 B x n L and 10 B x n L^2, both alive at its peak
    co = Coefficients(c_bytes=1000.0, k_act=2.0, k_state=1.0)

    def setting(device: str = "cpu", depth: int | None = 1) -> Setting:
        return Setting(depth=depth, cached=False, optimizer="adamw", momentum=0.0, multi_tensor=False, device=device,
                       epochs=1)

    def batches(steps: int, n: int, length: int) -> Batches:
        return Batches(train=[[(n, length)] * steps], eval=[(1, 8)], cache=[], n_examples=n, n_tokens=n * length,
                       width_train=length, width_val=8, n_train=n, n_val=1)

    three, long = memory(a, setting(), batches(3, 4, 64), co), memory(a, setting(), batches(20, 4, 64), co)
    assert three.climb == 0.0 and long.phase == "train"
    kept = a.saved_bytes(4, 64, 1, False)
    assert long.climb == pytest.approx(0.2 * (kept + 2.0 * slack_feature(kept)))  # 4 x 64: every storage heap
    # every block trained: the other rate
    kept0 = a.saved_bytes(4, 64, 0, False)
    trained = memory(a, setting(depth=0), batches(20, 4, 64), co)
    assert trained.climb == pytest.approx(0.05 * (kept0 + 2.0 * slack_feature(kept0)))
    assert long.total == pytest.approx(three.total + long.climb)
    assert long.activations == pytest.approx(three.activations)
    eight = memory(a, setting(), batches(8, 4, 64), co)
    assert eight.climb == pytest.approx(climb_weight(8) * long.climb)
    # 128 x 512: the step's 10 B x n L^2 storage (320 MiB) is a mapping of its own; only the heap's share climbs
    big = memory(a, setting(), batches(20, 128, 512), co)
    kept = a.saved_bytes(128, 512, 1, False)
    share = 16 * 128 * 512 / (16 * 128 * 512 + 10 * 128 * 512**2)
    assert big.climb == pytest.approx(0.2 * share * (kept + 2.0 * slack_feature(kept)))
    assert memory(a, setting("cuda"), batches(20, 4, 64), co).climb == 0.0
    assert memory(a, setting(), batches(1, 4, 64), co).climb == 0.0  # one step: its peak is before the state


@pytest.mark.parametrize("depth,cached,frozen_dropout", [(0, False, False), (1, False, True), (1, False, False),
                                                         (None, False, True), (1, True, False), (None, True, False)])
def test_fresh_mappings_are_priced_by_the_blocks_each_pass_runs(depth, cached, frozen_dropout):
    """Trained blocks pay a training step's mapped bytes, frozen ones a forward's in their mode, evaluation and
    the cache build a forward's in evaluation mode, each block a quarter of the whole model's (4 blocks); the
    seconds are what the account adds to each pass, and nothing on CUDA or without a measured rate."""
    import dataclasses

    from harness.plan.account import attention_blocks, first_touch_seconds, mapping_seconds, seconds

    a = _mapping_anatomy()
    fixed = 40.0 * 2**20  # a parameter's gradient (the word embeddings'), made afresh every step where it trains
    a.fwd_trace["grad"]["sizes"].append([fixed, 0.0, 0.0, 0.0, 0.0])
    a.fwd_trace["grad"]["events"] = [0, 1, 2, -1, -2, -3]
    s = Setting(depth=depth, cached=cached, optimizer="adamw", momentum=0.0, multi_tensor=False, device="cpu",
                epochs=1, frozen_dropout=frozen_dropout)
    big, small = (128, 512), (4, 64)
    blocks = attention_blocks(a, s)
    got = mapping_seconds(a, s, [big, small], [big], [big, big])
    per = 1e-9 * 128 * 512**2 / 4  # seconds per unit of `per` a block maps at `big`
    head_only = cached and depth is None
    want_train = 0.0 if head_only else per * (10 * blocks["trained"] + (6 if frozen_dropout else 4) * blocks["frozen"])
    want_train += 2 * 1e-9 * fixed if depth == 0 else 0.0  # both batches, everything trained only
    assert got["train"] == pytest.approx(want_train)
    assert got["eval"] == pytest.approx(0.0 if head_only else per * 4 * blocks["eval"])
    assert got["cache"] == pytest.approx(2 * per * 4 * blocks["cache"])
    # the account adds them to the passes' seconds
    b = Batches(train=[[big, small]], eval=[big], cache=[big, big] if cached else [], n_examples=300,
                n_tokens=300 * 512, width_train=512, width_val=512, n_train=132, n_val=128)
    co = Coefficients(t0=0.01, kt=1e-9, kz=1e-9, te0=0.01, kf=1e-9, kc=1e-9, t_head=0.01, te_head=0.01)
    priced, unpriced = seconds(a, s, b, co), seconds(dataclasses.replace(a, mapping_rate=None), s, b, co)
    touched = first_touch_seconds(a, s, b, co)  # the first batch's new heap pages, at the same rate
    assert priced.train_epoch[0] - unpriced.train_epoch[0] == pytest.approx(want_train + touched)
    assert priced.cache - unpriced.cache == pytest.approx(got["cache"] if cached else 0.0)
    if not head_only:
        assert priced.eval_epoch - unpriced.eval_epoch == pytest.approx(got["eval"])
    assert mapping_seconds(a, dataclasses.replace(s, device="cuda"), [big], [big], [big]) == {
        "train": 0.0, "eval": 0.0, "cache": 0.0}


def _unpriced_and_priced(res: dict) -> tuple[dict, dict, Anatomy]:
    """Two copies of a probe result: one with fresh mappings unpriced, one whose traced laws are scaled so that
    the probes' own batches map storages, priced at a rate; and the latter's anatomy."""
    import copy

    plain = copy.deepcopy(res)
    plain["anatomy"]["mapping_rate"] = None
    priced = copy.deepcopy(res)
    priced["anatomy"]["fwd_trace"] = {m: dict(t, sizes=[[v * 1e4 for v in law] for law in t["sizes"]])
                                      for m, t in res["anatomy"]["fwd_trace"].items() if t}
    priced["anatomy"]["mapping_rate"] = {"seconds_per_byte": 1e-11}
    return plain, priced, Anatomy(**{k: v for k, v in priced["anatomy"].items() if k in Anatomy.__dataclass_fields__})


def _shapes_as_fitted(p: dict, res: dict):
    """Each probe shape with the setting and batches the fit reads it as."""
    from harness.plan.calibrate import _probe_batches, depth_of, setting_of

    for sh in res["shapes"]:
        d = depth_of(sh["frozen_layers"])
        yield sh, setting_of(p, d, bool(sh["cache_used"])), _probe_batches(p, sh, d)


def test_the_fit_leaves_fresh_mappings_out_of_the_per_flop_rates(probe_result):
    """A probe whose batches map storages (priced at the measured rate) fits the same per-FLOP coefficients as
    the same probe with those seconds taken out of its timings and no mapping priced."""
    from harness.plan.account import mapping_seconds
    from harness.plan.calibrate import fit

    p, res = probe_result
    plain, priced, a_priced = _unpriced_and_priced(res)
    _, co_plain, _ = fit(p, plain)
    added = 0.0
    for sh, s, b in _shapes_as_fitted(p, priced):
        extra = [mapping_seconds(a_priced, s, [x], [], [])["train"] for x in b.train[0]]
        sh["train_step_seconds"] = [t + e for t, e in zip(sh["train_step_seconds"], extra)]
        extra_e = [mapping_seconds(a_priced, s, [], [x], [])["eval"] for x in b.eval]
        sh["eval_step_seconds"] = [t + e for t, e in zip(sh["eval_step_seconds"], extra_e)]
        added += sum(extra) + sum(extra_e)
    assert added > 0.1  # the scaled laws do map at the probes' shapes
    _, co_priced, _ = fit(p, priced)
    for k in ("t0", "kt", "kz", "ko", "te0", "kf"):
        assert getattr(co_priced, k) == pytest.approx(getattr(co_plain, k), rel=1e-6, abs=1e-12), k


def test_the_fit_leaves_the_cache_builds_fresh_mappings_out_of_its_rate(tmp_path):
    """The same for the cache's build under `fast`: its seconds less what its batches map afresh, over its FLOPs,
    give the same per-FLOP cache rate (kc) as the plain probe."""
    from harness.plan.account import mapping_seconds
    from harness.plan.calibrate import fit
    from harness.plan.probe import run_shapes

    p = dict(_trials(tmp_path, train__optimizer="adamw", grid__dataset_size=[60], grid__strategy=["fast"])[0].params)
    res = run_shapes({"params": p, "shapes": [("all", 4, 16), (1, 4, 16), (1, 8, 32), (0, 4, 32)], "steps": 2},
                     lambda e: None)
    assert sum(bool(sh["cache_used"] and sh["cache_seconds"]) for sh in res["shapes"]) >= 2
    plain, priced, a_priced = _unpriced_and_priced(res)
    _, co_plain, _ = fit(p, plain)
    added = 0.0
    for sh, s, b in _shapes_as_fitted(p, priced):
        if sh["cache_seconds"] and b.cache:
            extra = mapping_seconds(a_priced, s, [], [], b.cache)["cache"]
            sh["cache_seconds"] += extra
            added += extra
    assert added > 0.01  # the scaled laws do map at the cache's batches
    _, co_priced, _ = fit(p, priced)
    assert co_plain.kc > 0 and co_priced.kc == pytest.approx(co_plain.kc, rel=1e-6)


def test_the_first_batch_pays_for_the_heap_it_grows():
    """The first training batch's extra is the fitted constant plus the training phase's growth (memory's
    account) at the fresh-mapping rate, less what that batch maps afresh (priced every batch); nothing when only
    the head runs, on CUDA, or without a rate."""
    import dataclasses

    from harness.plan.account import MMAP_THRESHOLD, first_touch_seconds, memory, seconds

    a = _mapping_anatomy()
    co = Coefficients(t0=0.01, kt=1e-9, warmup_s=0.05, k_act=0.5)
    s = Setting(depth=0, cached=False, optimizer="adamw", momentum=0.0, multi_tensor=False, device="cpu", epochs=1)

    def batches(n, length):
        return Batches(train=[[(n, length)] * 3], eval=[(2, 8)], cache=[], n_examples=3 * n, n_tokens=3 * n * length,
                       width_train=length, width_val=8, n_train=3 * n, n_val=2)

    small = batches(4, 64)  # maps nothing: the whole growth is first touch
    growth = memory(a, s, small, co).train_growth
    assert growth > 0 and first_touch_seconds(a, s, small, co) == pytest.approx(1e-9 * growth)
    plain = seconds(dataclasses.replace(a, mapping_rate=None), s, small, co)
    assert seconds(a, s, small, co).train_epoch[0] - plain.train_epoch[0] == pytest.approx(1e-9 * growth)
    big = batches(128, 512)  # the 320 MiB storage alive at the step's peak is a mapping, priced every batch
    live = a.forward_parts(128, 512, mapped_from=MMAP_THRESHOLD, mode="grad")[1]
    assert live == 10 * 128 * 512**2
    assert memory(a, s, big, co).train_growth < live and first_touch_seconds(a, s, big, co) == 0.0
    kept = dataclasses.replace(a, block_b=100.0)  # a phase that keeps far more than that mapping
    growth = memory(kept, s, big, co).train_growth
    assert growth > live  # the rest (gradients, optimiser state, activations) is touched first here
    assert first_touch_seconds(kept, s, big, co) == pytest.approx(1e-9 * (growth - live))
    assert first_touch_seconds(a, dataclasses.replace(s, device="cuda"), small, co) == 0.0
    assert first_touch_seconds(a, dataclasses.replace(s, depth=None, cached=True), small, co) == 0.0


def test_pages_beyond_the_hosts_warm_pool_cost_the_cold_price():
    """Where the probe saw a warm pool (probe.warm_pool), a training batch that grows the process beyond it pays
    the cold price for the excess: a later batch for its mapped activations, the first for the training phase's
    whole growth; nothing below the pool, without a reading, on CUDA, or when only the head runs."""
    import dataclasses

    from harness.plan.account import (MMAP_THRESHOLD, cold_seconds, first_touch_seconds, live_mapped, mapping_seconds,
                                      memory, seconds)

    a = dataclasses.replace(_mapping_anatomy(), block_b=100.0)  # a step that keeps far more than it maps
    co = Coefficients(t0=0.01, kt=1e-9, warmup_s=0.05, k_act=0.5)
    s = Setting(depth=0, cached=False, optimizer="adamw", momentum=0.0, multi_tensor=False, device="cpu", epochs=1)
    big = (128, 512)
    b = Batches(train=[[big] * 3], eval=[(2, 8)], cache=[], n_examples=384, n_tokens=384 * 512, width_train=512,
                width_val=8, n_train=384, n_val=2)
    live = live_mapped(a, s, big)
    assert live == a.forward_parts(128, 512, mapped_from=MMAP_THRESHOLD, mode="grad")[1] == 10 * 128 * 512**2
    growth = memory(a, s, b, co).train_growth
    assert growth > live
    pool = 100 * 2**20  # under both: both are priced beyond it
    cold = dict(a.mapping_rate, pool={"hot_bytes": float(pool), "cold_seconds_per_byte": 1e-8})
    c = dataclasses.replace(a, mapping_rate=cold)
    assert cold_seconds(c, s, live) == pytest.approx(1e-8 * (live - pool))
    assert mapping_seconds(c, s, [big], [], [])["train"] - mapping_seconds(a, s, [big], [], [])["train"] == (
        pytest.approx(1e-8 * (live - pool)))
    assert first_touch_seconds(c, s, b, co) - first_touch_seconds(a, s, b, co) == pytest.approx(1e-8 * (growth - live))
    # three batches: each pays for its mapped activations beyond the pool, the first for its whole growth
    extra = seconds(c, s, b, co).train_epoch[0] - seconds(a, s, b, co).train_epoch[0]
    assert extra == pytest.approx(1e-8 * (3 * (live - pool) + (growth - live)))
    # a pool larger than the growth: nothing; no pool seen, CUDA, the head alone: nothing
    roomy = dataclasses.replace(a, mapping_rate=dict(a.mapping_rate, pool={"hot_bytes": 2.0 * growth,
                                                                           "cold_seconds_per_byte": 1e-8}))
    assert seconds(roomy, s, b, co).train_epoch[0] == pytest.approx(seconds(a, s, b, co).train_epoch[0])
    unseen = dataclasses.replace(a, mapping_rate=dict(a.mapping_rate, pool={"hot_bytes": None,
                                                                            "cold_seconds_per_byte": 0.0}))
    assert seconds(unseen, s, b, co).train_epoch[0] == pytest.approx(seconds(a, s, b, co).train_epoch[0])
    assert cold_seconds(c, dataclasses.replace(s, device="cuda"), growth) == 0.0
    assert cold_seconds(c, dataclasses.replace(s, depth=None, cached=True), growth) == 0.0
    # the pool is priced whatever the mapping rate read (a rate of 0 prices nothing else)
    no_rate = dataclasses.replace(c, mapping_rate=dict(cold, seconds_per_byte=0.0))
    assert mapping_seconds(no_rate, s, [big], [], [])["train"] == pytest.approx(1e-8 * (live - pool))
    assert first_touch_seconds(no_rate, s, b, co) == pytest.approx(1e-8 * (growth - live))


def test_the_warm_pool_is_where_the_fresh_chunks_turn_cold():
    """pool_knee on the readings of this VM (one thread, microseconds a 4 KiB page): warm for 28 chunks of 64 MiB,
    then cold; none turning cold leaves nothing to price; a pool already empty prices the cold chunks against the
    warm price read apart."""
    from harness.plan.probe import pool_knee

    page = 4096
    warm, cold = 1.2e-6 / page, 11.2e-6 / page
    got = pool_knee([warm] * 28 + [cold] * 4, warm, chunk=64 * 2**20)
    assert got["hot_bytes"] == 28 * 64 * 2**20
    assert got["cold_seconds_per_byte"] == pytest.approx(cold - warm)
    assert pool_knee([warm] * 40, warm) == {"hot_bytes": None, "cold_seconds_per_byte": 0.0}
    empty = pool_knee([cold] * 4, warm)
    assert empty["hot_bytes"] == 0.0 and empty["cold_seconds_per_byte"] == pytest.approx(cold - warm)
    # a lone slow chunk among warm ones (a stall on a busy host) is not the pool's end
    stalled = pool_knee([warm, warm, 4 * warm] + [warm] * 30 + [cold] * 4, warm, chunk=64 * 2**20)
    assert stalled["hot_bytes"] == 33 * 64 * 2**20
    assert stalled["cold_seconds_per_byte"] == pytest.approx(cold - warm)
    assert pool_knee([warm] * 5 + [cold] * 2 + [warm] * 3, warm)["hot_bytes"] is None  # it came warm again


def test_the_larger_of_two_pool_readings_is_kept():
    """Two readings of the warm pool: the larger pool (one that turned cold nowhere counts as its cap), the cold
    price their median where they saw one, the last reading's mapping rate, and both readings kept."""
    from harness.plan.probe import larger_pool

    def reading(hot, cold, rate=1e-10, cap=4 * 2**30):
        return {"seconds_per_byte": rate, "pool": {"hot_bytes": hot, "cold_seconds_per_byte": cold, "cap_bytes": cap}}

    got = larger_pool(reading(0.3 * 2**30, 2.0e-9, rate=2e-10), reading(2.0 * 2**30, 3.0e-9))
    assert got["pool"]["hot_bytes"] == 2.0 * 2**30 and got["pool"]["cold_seconds_per_byte"] == pytest.approx(2.5e-9)
    assert got["seconds_per_byte"] == 1e-10 and len(got["pool_readings"]) == 2
    capped = larger_pool(reading(None, 0.0), reading(1.5 * 2**30, 3.0e-9))
    assert capped["pool"]["hot_bytes"] == 4 * 2**30 and capped["pool"]["cold_seconds_per_byte"] == 3.0e-9
    assert larger_pool(reading(None, 0.0), reading(None, 0.0))["pool"]["hot_bytes"] is None
    assert larger_pool(None, reading(1.0, 1.0))["pool"]["hot_bytes"] == 1.0
    assert larger_pool(reading(1.0, 1.0), None) is None


def test_a_second_pool_reading_is_taken_only_after_a_low_or_failed_first():
    """The anatomy's child reads the warm pool again after its work only where the first reading was under
    POOL_SETTLED_BYTES or failed; a last reading without a pool keeps the first's pool and mapping rate last."""
    from harness.plan.probe import POOL_SETTLED_BYTES, larger_pool, pool_settled

    def reading(hot, cold=3.0e-9, rate=1e-10, error=None, pool=True):
        return {"seconds_per_byte": rate,
                "pool": {"hot_bytes": hot, "cold_seconds_per_byte": cold, "cap_bytes": 4 * 2**30, "error": error}
                if pool else None}

    assert pool_settled(reading(float(POOL_SETTLED_BYTES)))
    assert pool_settled(reading(None, 0.0))  # turned cold nowhere under its cap
    assert not pool_settled(reading(0.31 * 2**30))
    assert not pool_settled(reading(None, 0.0, error="OSError: cannot map"))
    assert not pool_settled(None) and not pool_settled(reading(None, pool=False))
    got = larger_pool(reading(1.5 * 2**30, 2.0e-9, rate=2e-10), reading(None, rate=1e-10, pool=False))
    assert got["pool"]["hot_bytes"] == 1.5 * 2**30 and got["pool"]["cold_seconds_per_byte"] == 2.0e-9
    assert got["seconds_per_byte"] == 1e-10 and len(got["pool_readings"]) == 1
    uncapped = larger_pool(reading(None, 0.0), reading(None, pool=False))
    assert uncapped["pool"]["hot_bytes"] is None and len(uncapped["pool_readings"]) == 1


def test_the_probe_reads_the_warm_pool_within_its_cap(monkeypatch):
    """The real reading touches no more than its cap (here 192 MiB: three chunks) and says what it touched."""
    import sys

    import torch

    from harness.plan.probe import POOL_CHUNK, mapping_seconds, pool_cap

    monkeypatch.setenv("HARNESS_PLAN_POOL_CAP_MIB", "192")
    assert pool_cap() <= 192 * 2**20
    if not sys.platform.startswith("linux"):
        assert mapping_seconds(torch.device("cpu")) is None
        return
    got = mapping_seconds(torch.device("cpu"))["pool"]
    assert 1 <= len(got["chunk_seconds_per_byte"]) <= 3 and got["cap_bytes"] <= 192 * 2**20
    assert got["chunk_bytes"] == POOL_CHUNK and got["seconds"] > 0 and got["error"] is None
    assert all(x > 0 for x in got["chunk_seconds_per_byte"])
    monkeypatch.setenv("HARNESS_PLAN_POOL_CAP_MIB", "lots")  # not a number: the other bounds hold
    assert 0 < pool_cap() <= 4 * 2**30


@pytest.mark.parametrize("root,limit,room", [
    ("/", "1000000", 600000),          # the host's view: the path from /proc/self/cgroup under the mount
    ("/a", "1000000", 600000),         # a container's mount root is cut from the path
    ("/", "max", None),                # no limit: no room to cap by
])
def test_the_pool_cap_reads_the_cgroup_where_cgroup2_is_mounted(tmp_path, monkeypatch, root, limit, room):
    """The cgroup's room is read through mountinfo (this VM mounts cgroup2 at /sys/fs/cgroup/unified), and caps
    the pool's reading at half of it."""
    from harness.executors import budget
    from harness.plan.probe import pool_cap

    folder = tmp_path / "unified" / ("b" if root == "/a" else "a/b")
    folder.mkdir(parents=True)
    (folder / "memory.max").write_text(limit + "\n")
    (folder / "memory.current").write_text("400000\n")
    monkeypatch.setattr(budget, "_cgroup_entries", lambda: [["1", "name=systemd", "/x"], ["0", "", "/a/b"]])
    monkeypatch.setattr(budget, "_mounts", lambda: [(root, str(tmp_path / "unified"), "cgroup2", "rw")])
    assert budget.cgroup_v2_folder() == folder
    assert budget.cgroup_room() == room
    if room is not None:
        assert pool_cap() == room // 2
    monkeypatch.setattr(budget, "_mounts", lambda: [])  # no cgroup2 mounted: nothing read
    assert budget.cgroup_v2_folder() is None and budget.cgroup_room() is None


@pytest.mark.parametrize("costs,chunks,hot", [
    (["w"] * 5 + ["c"] * 9, 9, 5),                       # stops after four cold chunks in a row
    (["w", "w", "c", "w", "w"] + ["c"] * 9, 9, 5),       # a lone slow chunk does not stop it
    (["w"] * 20, 3, None),                               # the cap (192 MiB: three chunks), all warm
    (["w", "w", "fail"], 2, None),                       # a mapping that cannot be made: nothing priced
])
def test_the_pool_reading_stops_after_four_cold_chunks_in_a_row(monkeypatch, costs, chunks, hot):
    """warm_pool's loop on scripted chunk costs (seconds per byte, on a fake clock)."""
    import types

    from harness.plan import probe

    warm, cold = 1.2e-6 / 4096, 11.0e-6 / 4096
    clock = {"now": 0.0}
    script = iter(costs)

    class FakeFresh:
        def __init__(self, nbytes):
            self.nbytes, self.tensor = nbytes, self
            kind = next(script)
            if kind == "fail":
                raise OSError("Cannot allocate memory")
            self.cost = warm if kind == "w" else cold

        def fill_(self, value):
            clock["now"] += self.cost * self.nbytes

        def close(self):
            pass

    monkeypatch.setattr(probe, "_Fresh", FakeFresh)
    monkeypatch.setattr(probe, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    monkeypatch.setenv("HARNESS_PLAN_POOL_CAP_MIB", "192" if chunks == 3 else "4096")
    got = probe.warm_pool(warm)
    assert len(got["chunk_seconds_per_byte"]) == chunks
    assert got["hot_bytes"] == (None if hot is None else hot * probe.POOL_CHUNK)
    assert (got["error"] is not None) == ("fail" in costs)
    if hot is not None:
        assert got["cold_seconds_per_byte"] == pytest.approx(cold - warm)


def test_a_cpu_fit_keeps_k_fwd_at_least_its_floor(probe_result, monkeypatch):
    """A CPU fit may not take k_fwd below 1.5 (K_FWD_FLOOR_CPU: the least multiple of its held heap one forward
    alone grew a process by), however low the one forward-without-a-graph probe came out: a least squares that
    goes to its lower bounds in every coefficient gives k_fwd 1.5, and the real fit stays at or above it."""
    import copy

    import scipy.optimize
    from types import SimpleNamespace

    from harness.plan.calibrate import fit

    p, res = probe_result
    _, co, _ = fit(p, copy.deepcopy(res))
    assert co.k_fwd >= 1.5 - 1e-9
    monkeypatch.setattr(scipy.optimize, "lsq_linear", lambda A, b, bounds: SimpleNamespace(x=bounds[0]))
    _, low, _ = fit(p, copy.deepcopy(res))
    assert low.k_fwd == pytest.approx(1.5) and low.k_state == pytest.approx(1.0)


def test_the_fitted_warm_up_is_what_the_first_touch_leaves(probe_result):
    """Probes whose first batch is their steady batch, plus its first touch, plus 0.123 s fit a warm-up of 0.123 s,
    and the probe's own first forward (probe.first_forward: 0.02 s) is added to it."""
    import copy

    from harness.plan.account import first_touch_seconds, mapping_seconds, time_features, train_seconds
    from harness.plan.calibrate import _probe_batches, depth_of, fit, setting_of

    p, res = probe_result
    res = copy.deepcopy(res)
    assert res["first_forward_seconds"] > 0  # the real probe made and timed one
    res["first_forward_seconds"] = None
    res["anatomy"]["mapping_rate"] = {"seconds_per_byte": 2e-10}
    anat, co, _ = fit(p, copy.deepcopy(res))
    for sh in res["shapes"]:
        d = depth_of(sh["frozen_layers"])
        s = setting_of(p, d, bool(sh["cache_used"]))
        b = _probe_batches(p, sh, d)
        first = b.train[0][0]
        steady = train_seconds(co, time_features(anat, s, [first], [], [])) + mapping_seconds(anat, s, [first], [], [])["train"]
        sh["train_step_seconds"][0] = steady + first_touch_seconds(anat, s, b, co) + 0.123
    _, co2, _ = fit(p, copy.deepcopy(res))
    assert co2.warmup_s == pytest.approx(0.123, abs=1e-6)
    res["first_forward_seconds"] = [0.01, 0.02, 0.03]  # one per probe child, as calibrate merges them
    _, co3, _ = fit(p, res)
    assert co3.warmup_s == pytest.approx(0.143, abs=1e-6)


def test_each_pass_carries_what_the_probes_spent_outside_their_batches(probe_result):
    """Probes whose passes took 7 ms (training) and 3 ms (evaluation) beyond their batches fit those as per-pass
    seconds, and every epoch of a trial carries them, head-only ones (fast, everything frozen) included."""
    import copy
    import dataclasses

    from harness.plan.account import Batches, seconds
    from harness.plan.calibrate import fit, setting_of

    p, res = probe_result
    res = copy.deepcopy(res)
    for sh in res["shapes"]:
        sh["train_seconds"] = sum(sh["train_step_seconds"]) + 0.007
        sh["eval_seconds"] = sum(sh["eval_step_seconds"]) + 0.003
    anat, co, _ = fit(p, res)
    assert co.train_pass_s == pytest.approx(0.007, abs=1e-9) and co.eval_pass_s == pytest.approx(0.003, abs=1e-9)
    none = dataclasses.replace(co, train_pass_s=0.0, eval_pass_s=0.0)
    b = Batches(train=[[(4, 16)] * 2, [(4, 16)] * 2], eval=[(4, 16)], cache=[(4, 16)], n_examples=12, n_tokens=192,
                width_train=16, width_val=16, n_train=8, n_val=4)
    for depth, cached in ((0, False), (None, True)):
        s = setting_of(p, depth, cached)
        got, plain = seconds(anat, s, b, co), seconds(anat, s, b, none)
        assert [x - y for x, y in zip(got.train_epoch, plain.train_epoch)] == pytest.approx([0.007, 0.007])
        assert got.eval_epoch - plain.eval_epoch == pytest.approx(0.003)
    # the head alone on cached vectors: the head-only probe's own
    head = dataclasses.replace(co, t_head=0.001, te_head=0.0005, t_head_warm=0.004, head_train_pass_s=0.005,
                               head_eval_pass_s=0.002)
    got = seconds(anat, setting_of(p, None, True), b, head)
    assert got.train_epoch == pytest.approx([0.005 + 2 * 0.001 + 0.004, 0.005 + 2 * 0.001])
    assert got.eval_epoch == pytest.approx(0.002 + 0.0005)


def test_the_optimisers_step_is_timed_apart_from_the_flops(probe_result):
    """The probe times every optimiser step; the fit takes ko (seconds per trainable parameter a step) from those
    timings, a constant plus ko x the parameters, and not from the batches beside the FLOPs."""
    import copy

    from harness.plan.account import time_features
    from harness.plan.calibrate import _probe_batches, depth_of, fit, setting_of

    p, res = probe_result
    for sh in res["shapes"]:  # one per training batch, each a positive time
        assert len(sh["optimizer_step_seconds"]) == len(sh["train_step_seconds"])
        assert all(x > 0 for x in sh["optimizer_step_seconds"])
    res = copy.deepcopy(res)
    anat, _, _ = fit(p, copy.deepcopy(res))
    for sh in res["shapes"]:
        d = depth_of(sh["frozen_layers"])
        b = _probe_batches(p, sh, d)
        p_train = time_features(anat, setting_of(p, d, bool(sh["cache_used"])), [b.train[0][0]], [], [])["train_param_steps"]
        sh["optimizer_step_seconds"] = [0.5] + [0.001 + 3e-9 * p_train] * (len(sh["train_step_seconds"]) - 1)
    _, co, _ = fit(p, res)
    assert co.ko == pytest.approx(3e-9, rel=1e-6)
    for sh in res["shapes"]:  # without the timings (an older probe), ko is fitted beside the FLOPs as before
        sh.pop("optimizer_step_seconds")
    _, co_old, _ = fit(p, res)
    assert co_old.ko != pytest.approx(3e-9, rel=1e-3)


def test_the_probe_traces_a_training_step_and_times_a_fresh_mapping(probe_result):
    """The training step's storages, traced at five (n, L), replay at a shape never traced to what a step
    counted there makes; a fresh mapping costs something on a Linux CPU, from its alternated readings."""
    import sys

    import torch

    from harness.core.models import load_model
    from harness.core.train import autocast_for
    from harness.plan.probe import MAPPING_PAIRS, step_trace

    p, res = probe_result
    anat = res["anatomy"]
    trace = anat["fwd_trace"]["grad"]
    assert trace and trace["sizes"]
    model = load_model(p["model"], 2, trust_remote_code=False, allow_pickle=False, attention=p.get("attention"),
                       seed=0).model
    counted = step_trace(model, p["model"], torch.device("cpu"), autocast_for("fp32", torch.device("cpu")), 96, 6)
    from harness.plan.account import trace_sizes

    replayed = trace_sizes(trace, 6, 96)
    assert len(counted.sizes) == len(replayed)
    assert np.allclose(replayed, counted.sizes, rtol=0.01, atol=64)
    assert max(counted.sizes) > 10 * min(counted.sizes)  # storages of many sizes, each on its own law
    rate = anat["mapping_rate"]
    if sys.platform.startswith("linux"):
        assert len(rate["readings"]) == MAPPING_PAIRS
        assert rate["seconds_per_byte"] == pytest.approx(max(0.0, float(np.median(rate["readings"]))))
        assert 0.0 < rate["seconds_per_byte"] < 1e-6  # between nothing and a microsecond a byte
    else:
        assert rate is None


def test_a_head_only_epoch_reads_as_its_seconds_not_as_nothing():
    """A head-only epoch over cached vectors takes hundredths of a second: the plan's table shows them ("0.03"),
    where one decimal read "0.0" beside the full epochs."""
    from rich.console import Console

    from harness.plan.planner import Plan, fmt_epoch_s, plan_table

    assert (fmt_epoch_s(0.031), fmt_epoch_s(3.456), fmt_epoch_s(27.64), fmt_epoch_s(None)) == ("0.03", "3.46", "27.6", "-")
    params = {"model": "random:tiny", "max_length": 64, "batch_size": 8, "frozen_layers": "all", "strategy": "fast"}
    row = {"trial_id": "t1", "params": params, "status": "predicted", "verdict": "no budget", "cost_usd": None,
           "memory": {"peak_mib": 612.0}, "seconds": {"per_epoch": 0.031}, "wall_seconds": 1.8}
    console = Console(width=200, record=True)
    console.print(plan_table(Plan(grid_path="g.toml", name="g", rows=[row])))
    assert "0.03" in console.export_text()


def test_probe_lanes_follow_the_probes_threads_and_the_cores(monkeypatch):
    from harness.plan.calibrate import MAX_PROBE_LANES, probe_lanes

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    one = {"device": "cpu", "num_threads": 1}
    assert probe_lanes([one, one]) == 2
    assert probe_lanes([one, dict(one, num_threads=None)]) == 1  # the default takes every core
    assert probe_lanes([one, dict(one, num_threads=2)]) == 1
    assert probe_lanes([one, dict(one, device="cuda:0")]) == 1  # one device, shared
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert probe_lanes([one]) == MAX_PROBE_LANES == 2


def test_calibrations_probe_side_by_side_after_each_anatomy_is_read_alone(probe_result, monkeypatch):
    """Two keys of one model with two lanes: the first child (the model's anatomy) runs alone, then the other nine
    two at a time; each key gets every shape once and is fitted from them as one child at a time would give; a key
    whose child fails fails alone."""
    import threading
    import time as _time

    from harness.plan.calibrate import calibrate_many, environment
    from harness.plan.probe import SHAPES, ProbeFailed

    p, res = probe_result
    calls, lock, running, most = [], threading.Lock(), [0], [0]

    def child(spec, timeout_s=0):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            alone = running[0] == 1
        i = SHAPES.index(tuple(spec["shapes"][0]))
        _time.sleep(0.05)
        with lock:
            running[0] -= 1
            calls.append((spec["params"]["strategy"], i, spec["anatomy"], alone))
        if spec["params"]["strategy"] == "broken" and i == 2:
            raise ProbeFailed("RuntimeError: no such kernel")
        return dict(res, shapes=[res["shapes"][i % len(res["shapes"])]], wall_s=0.05,
                    spawn_to_ready_s=res["ready_s"] + 0.01, anatomy=res["anatomy"] if spec["anatomy"] else None)

    env = environment()
    keys = [dict(p, strategy="lab"), dict(p, strategy="fast"), dict(p, strategy="broken")]
    import harness.plan.probe as probe_mod

    monkeypatch.setattr(probe_mod, "run_in_child", child)
    first_peaks, said = [], []

    def lanes_for_memory(lanes, first_peak):  # whatever this host has free
        first_peaks.append(first_peak)
        return lanes

    monkeypatch.setattr("harness.plan.calibrate.lanes_for_memory", lanes_for_memory)
    stored = []
    lab, fast, broken = calibrate_many(keys, env, lanes=2, say=said.append, done=lambda k, cal: stored.append(k))
    assert first_peaks == [res["shapes"][0]["cpu_peak_rss_bytes"]]  # the anatomy child's peak
    assert said == ["probes: 15 child processes, the first alone, the rest 2 at a time"]
    assert [c for c in stored] == [0, 1]  # each kept as fitted; the broken one is not
    assert calls[0] == ("lab", 0, True, True)  # the anatomy's child, alone
    assert not any(a for _, _, a, _ in calls[1:])  # read once for the model
    assert most[0] == 2  # the rest side by side
    for name in ("lab", "fast"):
        assert sorted(i for s, i, _, _ in calls if s == name) == list(range(len(SHAPES)))
    assert isinstance(broken, ProbeFailed) and "no such kernel" in str(broken)
    assert lab["key"]["strategy"] == "lab" and fast["key"]["strategy"] == "fast"
    assert lab["anatomy"]["num_layers"] == fast["anatomy"]["num_layers"] == res["anatomy"]["num_layers"]
    # each key's probe seconds are its own children's, one after another
    assert 5 * 0.05 <= lab["probe_seconds"] < 5 * 0.05 + 1.0
    assert lab["probe_lanes"] == 2
    # its probes in SHAPES' order, whichever order they ran in
    assert [(t["frozen_layers"], t["batch_size"]) for t in lab["probes"]] == [
        (res["shapes"][i % len(res["shapes"])]["frozen_layers"], res["shapes"][i % len(res["shapes"])]["batch_size"])
        for i in range(len(SHAPES))]


def test_an_interrupted_plan_starts_no_other_probe_and_ends_the_running_ones(probe_result, monkeypatch):
    """Ctrl-C while probes run side by side: the children not yet started are not, the running ones are killed
    (probe.kill_live), and the interrupt reaches the caller at once."""
    import signal
    import threading
    import time as _time

    import harness.plan.probe as probe_mod
    from harness.plan.calibrate import calibrate_many, environment
    from harness.plan.probe import SHAPES

    p, res = probe_result
    started, killed, lock = [], threading.Event(), threading.Lock()
    # the default handler, as a plan's process has it: KeyboardInterrupt in the main thread
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)

    def child(spec, timeout_s=0):
        i = SHAPES.index(tuple(spec["shapes"][0]))
        with lock:
            started.append((spec["params"]["strategy"], i))
            n = len(started)
        if n == 1:  # the anatomy's child, alone
            return dict(res, shapes=[res["shapes"][0]], wall_s=0.01, spawn_to_ready_s=res["ready_s"] + 0.01)
        if n == 3:  # two children running side by side, the main thread waiting on them: the user presses Ctrl-C
            _time.sleep(0.3)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        assert killed.wait(10.0), "a running probe child was not killed"
        raise probe_mod.ProbeFailed("probe child exited with code -9 before its result")

    monkeypatch.setattr(probe_mod, "run_in_child", child)
    monkeypatch.setattr(probe_mod, "kill_live", killed.set)
    monkeypatch.setattr("harness.plan.calibrate.lanes_for_memory", lambda lanes, first_peak: lanes)
    t = _time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            calibrate_many([dict(p, strategy="lab"), dict(p, strategy="fast")], environment(), lanes=2)
    finally:
        signal.signal(signal.SIGINT, saved)
    assert _time.monotonic() - t < 5.0 and killed.is_set()
    assert len(started) <= 4  # of ten: the anatomy's, the two running, and at most one the pool had begun


def test_kill_live_ends_a_running_probe_child(tmp_path):
    """probe.kill_live kills the children run_in_child is awaiting, from another thread; its wait then ends."""
    import threading
    import time as _time

    from harness.plan import probe as probe_mod
    from harness.plan.probe import ProbeFailed, kill_live, run_in_child

    p = dict(_trials(tmp_path, grid__dataset_size=[40])[0].params)
    got: list[object] = []

    def wait() -> None:
        try:  # an epoch of thousands of rows at 512 tokens: far longer than the test waits
            got.append(run_in_child({"params": p, "shapes": [(0, 8, 512)], "steps": 10**6}, timeout_s=600))
        except BaseException as exc:  # noqa: BLE001
            got.append(exc)

    th = threading.Thread(target=wait)
    th.start()
    deadline = _time.monotonic() + 60
    while not probe_mod._LIVE and _time.monotonic() < deadline:
        _time.sleep(0.05)
    assert probe_mod._LIVE, "the probe child never started"
    _time.sleep(1.0)
    t = _time.monotonic()
    try:
        kill_live()
        th.join(30)
    finally:
        probe_mod.STOP.clear()  # as calibrate_many does: later children start as usual
    assert not th.is_alive() and _time.monotonic() - t < 15
    assert got and isinstance(got[0], ProbeFailed) and "code -9" in str(got[0]) and not probe_mod._LIVE


def test_probes_run_one_at_a_time_where_the_hosts_memory_is_short(monkeypatch):
    """Two lanes need LANE_MEMORY_FACTOR x the first probe's peak free for each, in the host and in the cgroup."""
    from types import SimpleNamespace

    from harness.plan.calibrate import LANE_MEMORY_FACTOR, lanes_for_memory

    GiB = 2**30
    free = {"host": 16 * GiB, "cgroup": None}
    monkeypatch.setattr("psutil.virtual_memory", lambda: SimpleNamespace(available=free["host"]))
    monkeypatch.setattr("harness.executors.budget.cgroup_room", lambda: free["cgroup"])
    peak = 1 * GiB
    assert LANE_MEMORY_FACTOR * 2 * peak <= 16 * GiB
    assert lanes_for_memory(2, peak) == 2
    free["cgroup"] = 4 * GiB  # a container's limit, below what its host has free
    assert lanes_for_memory(2, peak) == 1
    free.update(host=4 * GiB, cgroup=None)
    assert lanes_for_memory(2, peak) == 1
    assert lanes_for_memory(1, peak) == 1 and lanes_for_memory(2, None) == 2  # nothing read: as asked


def test_calibrations_finished_before_an_interrupt_are_kept(probe_result, monkeypatch):
    """Ctrl-C during the second key's probes: the first key's calibration, measured in full, is handed to `done`
    (the planner stores it) before the interrupt goes on; the second's is not."""
    import harness.plan.probe as probe_mod
    from harness.plan.calibrate import calibrate_many, environment
    from harness.plan.probe import SHAPES

    p, res = probe_result
    calls = []

    def child(spec, timeout_s=0):
        calls.append(spec["params"]["strategy"])
        if calls.count("fast") == 3:
            raise KeyboardInterrupt
        i = SHAPES.index(tuple(spec["shapes"][0]))
        return dict(res, shapes=[res["shapes"][i % len(res["shapes"])]], wall_s=0.01,
                    spawn_to_ready_s=res["ready_s"] + 0.01, anatomy=res["anatomy"] if spec["anatomy"] else None)

    monkeypatch.setattr(probe_mod, "run_in_child", child)
    kept = []
    with pytest.raises(KeyboardInterrupt):
        calibrate_many([dict(p, strategy="lab"), dict(p, strategy="fast")], environment(), lanes=1,
                       done=lambda k, cal: kept.append((k, cal["key"]["strategy"])))
    assert kept == [(0, "lab")]
    assert not probe_mod.STOP.is_set()  # later plans start their children as usual
