"""The house's shape: one direction of flow (import-linter), the generated record docs, FLOPs of the work the
Trainer reports (the cache's own batches), one definition of a configuration, the export's machine info."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.config import STRATEGIES
from harness.core import train as T
from harness.core.data import Encoded
from harness.core.models import RANDOM_SHAPES, encoder_shape, freeze
from harness.meters.flops import Work, forward_flops, trial_flops
from harness.record import TrialRecord, config_key, load_record
from harness.store import RunStore, read_records

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------------
# Layers and generated docs
# --------------------------------------------------------------------------------------------------
def test_the_import_contracts_are_kept():
    """pyproject.toml's [tool.importlinter]: the layers, the readers that read run folders only, no cycle."""
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_the_record_docs_and_schema_are_generated_from_the_models():
    proc = subprocess.run([sys.executable, str(ROOT / "docs/scripts/record_schema.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads((ROOT / "docs/record.schema.json").read_text())
    assert {"trial_id", "status", "memory", "epochs", "strategy_detail"} <= set(schema["properties"])


def test_old_records_read_like_new_ones(tmp_path):
    """A line as the first runs wrote it (no kind, a search result marked only by params.search, parts
    missing, `result.max_batch`) comes back from the store with every field of today's record."""
    old = [{"schema": 1, "trial_id": "a", "status": "ok", "params": {"batch_size": 8}, "epochs": [{"epoch": 1}]},
           {"schema": 1, "trial_id": "b", "status": "ok", "params": {"search": "max_batch"}, "result": {"max_batch": 96},
            "memory": None}]
    (tmp_path / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    a, b = read_records(tmp_path)
    assert a["kind"] == "train" and b["kind"] == "max_batch" and b["max_batch"] == 96
    assert set(TrialRecord.model_fields) - {"schema_"} - set(a) <= {"traceback", "notes", "ray", "retry_on_resume",
                                                                    "flops_detail", "max_batch", "smallest_oom_batch",
                                                                    "batch_limit", "limited_by", "probes"}
    assert a["memory"]["cpu_peak_rss_mib"] is None and a["epochs"][0]["val_accuracy"] is None
    assert load_record(a).dump() == a  # reading is idempotent


# --------------------------------------------------------------------------------------------------
# FLOPs of the batches the Trainer ran
# --------------------------------------------------------------------------------------------------
def _tiny_trainer(frozen: Any, **over: Any) -> T.Trainer:
    import transformers
    from transformers import AutoModelForSequenceClassification

    cls_name, kwargs = RANDOM_SHAPES["bert-tiny"]
    config = getattr(transformers, cls_name)(**{**kwargs, "vocab_size": 1200}, num_labels=2)
    config.pad_token_id = 0
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    freeze(model, frozen)
    rng = np.random.default_rng(0)

    def enc(n: int) -> Encoded:
        ids = [[101, *rng.integers(1000, 1200, int(rng.integers(1, 30))).tolist(), 102] for _ in range(n)]
        return Encoded(ids, rng.integers(0, 2, n), None, 0)

    p = dict(STRATEGIES["fast"])
    p.update(model="random", frozen_layers=frozen, precision="fp32", seed=0, optimizer="sgd", learning_rate=0.005,
             momentum=0.0, weight_decay=0.0, batch_size=4, eval_batch_size=4, epochs=1, compile=False)
    p.update(over)
    return T.Trainer(model, enc(24), enc(9), p, torch.device("cpu"), max_steps=over.get("max_steps"))


@pytest.mark.parametrize("frozen", ["all", 1])
def test_cache_flops_are_the_analytic_count_of_the_batches_the_cache_ran(frozen, monkeypatch):
    """The cache runs token-budgeted batches (not batch_size ones): the count is of what ran, seen here by a
    hook on the first block, and agrees with torch's own FLOP counter over the cache build."""
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.setitem(T.CACHE_BATCH_TOKENS, "cpu", 64)  # several batches of different sizes
    t = _tiny_trainer(frozen)
    seen: list[tuple[int, int]] = []
    hook = t.parts.layers[0].register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[:2])))
    with FlopCounterMode(display=False) as counter:
        t.build_cache()
    hook.remove()
    shape = encoder_shape(t.model)
    depth = None if frozen == "all" else frozen
    d = shape.num_layers if depth is None else depth
    ran = forward_flops(shape, Work.from_batches(seen), range(0, d), pooler=depth is None, head=False)
    reported = trial_flops(shape, depth, t.work.cached, [], [], Work.from_batches(t.work.cache)).parts["cache"]
    assert len(seen) > 2 and len({n for n, _ in seen}) > 1 and sorted(seen) == sorted(t.work.cache)
    assert reported == pytest.approx(ran, rel=1e-12)
    assert reported == pytest.approx(counter.get_total_flops(), rel=0.02)
    # the batch-size batches the count used to assume (4 rows each) are not what ran
    assert len(seen) != -(-24 // 4) - (-9 // 4)


def test_a_step_limit_cuts_every_pass_and_the_report_says_so():
    t = _tiny_trainer(0, max_steps=2, cache_frozen=False)
    loss, _, samples, _, _ = t.train_epoch()
    t.evaluate()
    assert samples == 8 and [len(p) for p in t.work.train] == [2] and [len(p) for p in t.work.eval] == [2]
    assert not t.work.cached and t.work.cache == []


# --------------------------------------------------------------------------------------------------
# One definition of a configuration
# --------------------------------------------------------------------------------------------------
def _rec(trial_id: str, data_seed: int, repeat: int, acc: float) -> dict[str, Any]:
    params = {"model": "embedded:minilm-l6", "dataset_size": 200, "batch_size": 8, "frozen_layers": "all",
              "device": "cpu", "strategy": "lab", "epochs": 1, "seed": data_seed + repeat, "data_seed": data_seed}
    rec = TrialRecord(trial_id=trial_id, repeat=repeat, params=params, status="ok", run_name="seeds",
                      seconds_total=3.0, epochs=[{"epoch": 1, "seconds": 3.0, "train_seconds": 2.7,
                                                  "eval_seconds": 0.3, "val_accuracy": acc}])
    return rec.dump()


def test_report_and_compare_agree_that_two_data_seeds_are_repeats_of_one_configuration(tmp_path):
    from harness import results
    from harness.compare import Thresholds, compare_runs, group_by_config
    from harness.report.analysis import analyse

    recs = [_rec(f"s{ds}r{r}", ds, r, 0.7 + 0.01 * r) for ds in (1, 2) for r in (0, 1)]
    assert len({config_key(r["params"]) for r in recs}) == 1
    for name in ("base", "new"):
        store = RunStore(tmp_path / name)
        store.create('name = "seeds"\n', {"host": "h"})
        for r in recs if name == "base" else recs[:2]:
            store.append(r)
        store.close()
    frame = results.load(tmp_path / "base")
    assert frame["config_key"].nunique() == 1
    groups = analyse(frame).groups
    assert len(groups) == 1 and int(groups.iloc[0]["n_trials"]) == 4
    paired = group_by_config(read_records(tmp_path / "base"))
    assert len(paired) == 1 and len(next(iter(paired.values()))) == 4
    result = compare_runs(tmp_path / "base", tmp_path / "new", Thresholds())  # new: data seed 1 only
    assert result.configs_compared == 1 and not result.only_in_base and not result.only_in_new


# --------------------------------------------------------------------------------------------------
# Export: the machine that ran, and a dirty commit
# --------------------------------------------------------------------------------------------------
def test_export_carries_the_running_machines_info_and_the_dirty_flag(tmp_path):
    from harness.env import collect
    from harness.export import build_benchmark_json, machine_id

    env = {**collect(), "host": "gpu-node-7", "cpu_model": "Far Away CPU", "system": "Linux", "machine": "aarch64",
           "python": "3.10.14", "python_implementation": "PyPy", "bits": "64bit", "release": "5.15.0-far",
           "git_commit": "0123abc-dirty", "git_dirty": True, "git_branch": "exp"}
    store = RunStore(tmp_path / "run")
    store.create('name = "far"\n', env)
    store.append(_rec("t0", 1, 0, 0.7))
    store.close()
    doc = build_benchmark_json(tmp_path / "run")
    m, c = doc["machine_info"], doc["commit_info"]
    assert (m["node"], m["processor"], m["machine"], m["python_implementation"], m["python_version"], m["release"]) == \
        ("gpu-node-7", "Far Away CPU", "aarch64", "PyPy", "3.10.14", "5.15.0-far")
    assert c == {**c, "id": "0123abc", "dirty": True, "branch": "exp"}
    assert machine_id(env) == "Linux-PyPy-3.10-64bit"
    here = collect()  # this machine's env.json says whether its checkout is dirty, as a bool
    assert isinstance(here["git_dirty"], (bool, type(None))) and here["system"] and here["machine"]
    old = {"git_commit": "fedcba9-dirty", "python": "3.11.7"}  # an env.json written before git_dirty
    from harness.export import commit_info

    assert commit_info(old)["dirty"] is True and commit_info(old)["id"] == "fedcba9"
