"""`harness.compare` and `harness.export` on synthetic run folders (no training)."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from harness.compare import Thresholds, compare_runs, parse_percent, print_comparison
from harness.export import benchmark_stats, export_benchmark
from harness.store import RunStore, StoreError

GRID = 'name = "synthetic"\n[grid]\nbatch_size = [8, 16]\ndataset_size = [200]\nfrozen_layers = ["all"]\ndevice = ["cpu"]\n'
ENV = {"python_version": "3.11.7", "torch": "2.13.0", "cpu_model": "Synthetic CPU", "host": "node-1"}


def make_record(batch_size=8, repeat=0, status="ok", epoch_s=(3.0, 3.0, 3.0), acc=0.8, rss=800.0,
                total=None, tokens=4000.0, gpu=None, seed=None, **params):
    epochs = [
        {"epoch": i + 1, "seconds": s, "train_seconds": s * 0.9, "eval_seconds": s * 0.1, "train_loss": 0.6,
         "train_accuracy": 0.7, "val_loss": 0.5, "val_accuracy": acc, "samples_per_s": 60.0,
         "tokens_per_s": tokens, "padded_tokens_per_s": tokens * 2}
        for i, s in enumerate(epoch_s)
    ]
    p = {"model": "embedded:minilm-l6", "max_length": 128, "source": "embedded:reviews", "dataset_size": 200,
         "batch_size": batch_size, "frozen_layers": "all", "device": "cpu", "strategy": "lab", "epochs": 3,
         "optimizer": "sgd", "learning_rate": 0.005, "seed": 324 + repeat if seed is None else seed,
         "data_seed": 324}
    p.update(params)
    return {
        "schema": 1, "run_name": "synthetic", "trial_id": f"bs{batch_size}-r{repeat}-{status}", "index": 0,
        "repeat": repeat, "params": p, "status": status,
        "error": None if status == "ok" else "CUDA out of memory" if status == "oom" else "boom",
        "started_at": "2026-11-23T06:00:00+00:00", "finished_at": "2026-11-23T06:00:21+00:00",
        "host": "node-1", "device_name": "Synthetic CPU", "n_train": 180, "n_val": 20, "num_labels": 2,
        "epochs": epochs, "seconds_total": sum(epoch_s) + 1.0 if total is None else total,
        "samples_per_s": 60.0, "tokens_per_s": tokens, "padded_tokens_per_s": tokens * 2,
        "memory": {"cpu_peak_rss_mib": rss, "cpu_baseline_rss_mib": 400.0, "cpu_maxrss_mib": rss,
                   "cuda_peak_allocated_mib": gpu, "cuda_peak_reserved_mib": gpu, "gpu_peak_used_mib": gpu,
                   "gpu_total_mib": None},
        "cost_usd": 0.0003, "oom": {"phase": "train", "epoch": 1} if status == "oom" else None,
    }


def make_run(path: Path, records, env=ENV) -> Path:
    store = RunStore(path)
    store.create(GRID, dict(env))
    for rec in records:
        store.append(rec)
    return path


def base_records():
    return [make_record(8), make_record(16, epoch_s=(2.0, 2.0, 2.0), rss=900.0, acc=0.82)]


def render(result) -> str:
    console = Console(file=io.StringIO(), width=220, color_system=None)
    print_comparison(result, console)
    return console.file.getvalue()


# --------------------------------------------------------------------------------------------------
# parse_percent / Thresholds
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [("10%", 0.10), ("0.1", 0.1), (" 2.5 % ", 0.025), ("0", 0.0),
                                           ("150%", 1.5), ("1", 1.0)])
def test_parse_percent(text, expected):
    assert parse_percent(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["-5%", "-0.1", "abc", "", "%", "nan", "inf%", "10"])
def test_parse_percent_rejects(text):
    with pytest.raises(ValueError) as exc:
        parse_percent(text)
    assert str(exc.value) and "\n" not in str(exc.value)


def test_thresholds_reject_negative():
    with pytest.raises(ValueError):
        Thresholds(max_slowdown=-0.1)


# --------------------------------------------------------------------------------------------------
# compare_runs
# --------------------------------------------------------------------------------------------------
def test_identical_runs_pass(tmp_path):
    base = make_run(tmp_path / "base", base_records())
    new = make_run(tmp_path / "new", base_records())
    result = compare_runs(base, new, Thresholds())
    assert not result.failed and result.reasons == []
    assert result.configs_compared == 2
    assert not result.only_in_base and not result.only_in_new
    assert {r.verdict for r in result.rows} == {"unchanged"}
    metrics = {r.metric for r in result.rows}
    assert {"time_per_epoch", "seconds_total", "cpu_peak_rss_mib", "val_accuracy", "tokens_per_s"} <= metrics
    assert "gpu_peak_used_mib" not in metrics and "cuda_peak_allocated_mib" not in metrics  # null on both sides
    assert {r.config for r in result.rows} == {"batch_size=8", "batch_size=16"}
    out = render(result)
    assert "PASS" in out and "batch_size=16" in out


def test_planted_slowdown_fails(tmp_path):
    base = make_run(tmp_path / "base", base_records())
    slow = base_records()
    slow[0] = make_record(8, epoch_s=(3.6, 3.6, 3.6))  # +20% per epoch
    new = make_run(tmp_path / "new", slow)
    result = compare_runs(base, new, Thresholds())
    assert result.failed
    assert len(result.reasons) == 1
    assert "batch_size=8" in result.reasons[0] and "slowdown" in result.reasons[0]
    assert "time per epoch" in result.reasons[0] and "+20.0%" in result.reasons[0]
    row = next(r for r in result.rows if r.config == "batch_size=8" and r.metric == "time_per_epoch")
    assert row.verdict == "regression" and row.ratio == pytest.approx(1.2) and row.change == pytest.approx(0.2)
    # total time grew too but only gates when there are no epoch times
    total = next(r for r in result.rows if r.config == "batch_size=8" and r.metric == "seconds_total")
    assert total.verdict == "worse" and not total.gating
    assert "FAIL" in render(result)
    # a looser limit lets it pass
    assert not compare_runs(base, new, Thresholds(max_slowdown=parse_percent("25%"))).failed


def test_slowdown_on_total_time_when_no_epochs(tmp_path):
    b = make_record(8, epoch_s=(), total=10.0)
    n = make_record(8, epoch_s=(), total=13.0)
    result = compare_runs(make_run(tmp_path / "b", [b]), make_run(tmp_path / "n", [n]), Thresholds())
    assert result.failed and "total time" in result.reasons[0]
    epoch_row = next(r for r in result.rows if r.metric == "time_per_epoch")
    assert epoch_row.verdict == "missing" and epoch_row.base.value is None  # never invented


def test_planted_memory_growth_fails(tmp_path):
    base = make_run(tmp_path / "base", base_records())
    grown = base_records()
    grown[1] = make_record(16, epoch_s=(2.0, 2.0, 2.0), rss=900.0 * 1.25, acc=0.82)
    result = compare_runs(base, make_run(tmp_path / "new", grown), Thresholds())
    assert result.failed and len(result.reasons) == 1
    assert "memory growth" in result.reasons[0] and "CPU peak RSS" in result.reasons[0]
    assert "batch_size=16" in result.reasons[0]


def test_gpu_memory_growth_fails_where_not_null(tmp_path):
    base = make_run(tmp_path / "base", [make_record(8, gpu=1000.0, device="cuda")])
    new = make_run(tmp_path / "new", [make_record(8, gpu=1500.0, device="cuda")])
    result = compare_runs(base, new, Thresholds())
    assert result.failed
    assert {r.metric for r in result.regressions} == {"gpu_peak_used_mib", "cuda_peak_allocated_mib"}


def test_planted_accuracy_drop_fails(tmp_path):
    base = make_run(tmp_path / "base", base_records())
    worse = base_records()
    worse[0] = make_record(8, acc=0.75)
    result = compare_runs(base, make_run(tmp_path / "new", worse), Thresholds())
    assert result.failed and len(result.reasons) == 1
    assert "final val accuracy dropped by 0.0500" in result.reasons[0]
    # a small drop within the limit passes
    ok = base_records()
    ok[0] = make_record(8, acc=0.795)
    assert not compare_runs(base, make_run(tmp_path / "new2", ok), Thresholds()).failed


def test_improvement_is_not_a_failure(tmp_path):
    base = make_run(tmp_path / "base", base_records())
    better = base_records()
    better[0] = make_record(8, epoch_s=(2.0, 2.0, 2.0), rss=600.0, acc=0.9)
    result = compare_runs(base, make_run(tmp_path / "new", better), Thresholds())
    assert not result.failed
    verdicts = {r.metric: r.verdict for r in result.rows if r.config == "batch_size=8"}
    assert verdicts["time_per_epoch"] == "improved" and verdicts["val_accuracy"] == "improved"


def test_one_sided_trials_are_listed_not_fatal(tmp_path):
    base = make_run(tmp_path / "base", base_records())
    new_recs = [make_record(8), make_record(32)]
    result = compare_runs(base, make_run(tmp_path / "new", new_recs), Thresholds())
    assert not result.failed
    assert result.configs_compared == 1
    assert [t.config for t in result.only_in_base] == ["batch_size=16"]
    assert [t.config for t in result.only_in_new] == ["batch_size=32"]
    out = render(result)
    assert "one run only" in out and "batch_size=32" in out and "PASS" in out


def test_repeats_change_within_spread_does_not_fail(tmp_path):
    base = make_run(tmp_path / "base", [
        make_record(8, repeat=0, epoch_s=(3.0,) * 3),
        make_record(8, repeat=1, epoch_s=(3.3,) * 3),
        make_record(8, repeat=2, epoch_s=(4.0,) * 3),
    ])
    new = make_run(tmp_path / "new", [
        make_record(8, repeat=0, epoch_s=(3.7,) * 3),
        make_record(8, repeat=1, epoch_s=(3.8,) * 3),
        make_record(8, repeat=2, epoch_s=(3.1,) * 3),
    ])  # median 3.3 -> 3.7 (+12%), but 3.7 lies inside base's 3.0-4.0
    result = compare_runs(base, new, Thresholds())
    assert result.configs_compared == 1 and not result.only_in_base  # seeds differ, repeats are grouped
    row = next(r for r in result.rows if r.metric == "time_per_epoch")
    assert row.base.n == 3 and row.base.value == pytest.approx(3.3) and row.new.value == pytest.approx(3.7)
    assert row.verdict == "within noise" and row.within_spread
    assert not result.failed
    assert "within noise" in render(result)


def test_repeats_change_beyond_spread_fails(tmp_path):
    base = make_run(tmp_path / "base", [make_record(8, repeat=i, epoch_s=(s,) * 3) for i, s in enumerate((3.0, 3.1, 3.2))])
    new = make_run(tmp_path / "new", [make_record(8, repeat=i, epoch_s=(s,) * 3) for i, s in enumerate((3.9, 4.0, 4.1))])
    result = compare_runs(base, new, Thresholds())
    assert result.failed and "slowdown" in result.reasons[0]


def test_ok_to_oom_fails(tmp_path):
    base = make_run(tmp_path / "base", base_records())
    recs = base_records()
    recs[1] = make_record(16, status="oom", epoch_s=(2.0,))
    result = compare_runs(base, make_run(tmp_path / "new", recs), Thresholds())
    assert result.failed
    assert any("batch_size=16" in r and "oom" in r for r in result.reasons)
    status = next(r for r in result.rows if r.metric == "status")
    assert status.verdict == "regression" and status.base_text == "ok" and status.new_text == "oom"
    assert [(t.side, t.status) for t in result.not_compared] == [("new", "oom")]
    # the oom trial's partial figures are not compared
    assert not [r for r in result.rows if r.config == "batch_size=16" and r.metric != "status"]
    out = render(result)
    assert "oom" in out and "FAIL" in out


def test_oom_in_both_is_listed_not_fatal(tmp_path):
    recs = [make_record(8), make_record(16, status="oom", epoch_s=())]
    result = compare_runs(make_run(tmp_path / "b", recs), make_run(tmp_path / "n", copy.deepcopy(recs)), Thresholds())
    assert not result.failed
    assert sorted(t.side for t in result.not_compared) == ["base", "new"]


def test_oom_to_ok_is_fixed(tmp_path):
    b = make_run(tmp_path / "b", [make_record(8, status="oom", epoch_s=())])
    n = make_run(tmp_path / "n", [make_record(8)])
    result = compare_runs(b, n, Thresholds())
    assert not result.failed and result.rows[0].verdict == "fixed"


def test_missing_values_shown_not_invented(tmp_path):
    rec = make_record(8)
    rec["memory"]["cpu_peak_rss_mib"] = None
    result = compare_runs(make_run(tmp_path / "b", [make_record(8)]), make_run(tmp_path / "n", [rec]), Thresholds())
    row = next(r for r in result.rows if r.metric == "cpu_peak_rss_mib")
    assert row.verdict == "missing" and row.new.value is None and row.ratio is None and row.change is None
    assert not result.failed
    assert "—" in render(result)


def test_not_a_run_folder(tmp_path):
    make_run(tmp_path / "b", base_records())
    with pytest.raises(StoreError):
        compare_runs(tmp_path / "b", tmp_path / "missing", Thresholds())


# --------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------
def test_stats_match_pytest_benchmark():
    from pytest_benchmark.stats import Stats

    for data in ([3.0], [1.0, 2.0], [3.1, 2.9, 3.0], [1.0, 1.1, 0.9, 1.2, 5.0], [2.0, 2.1, 2.2, 2.3, 2.4, 9.0, 0.1]):
        ref = Stats()
        for d in data:
            ref.update(d)
        ours = benchmark_stats(data)
        for key, value in ref.as_dict().items():
            assert ours[key] == pytest.approx(value) if isinstance(value, float) else ours[key] == value, key


def _pytest_benchmark_cli() -> list[str]:
    exe = shutil.which("pytest-benchmark") or shutil.which("py.test-benchmark")
    if exe:
        return [exe]
    return [sys.executable, "-c", "import sys; from pytest_benchmark.cli import main; sys.exit(main())"]


def test_export_loads_in_pytest_benchmark_compare(tmp_path):
    run = make_run(tmp_path / "run", [
        make_record(8, repeat=0, epoch_s=(3.0, 3.1, 2.9)),
        make_record(8, repeat=1, epoch_s=(3.2, 3.0, 3.1)),
        make_record(16, repeat=0, epoch_s=(2.0, 2.1, 2.2)),
        make_record(16, repeat=1, status="oom", epoch_s=(2.0,)),
        make_record(32, repeat=0, status="oom", epoch_s=()),  # nothing measured: left out
    ])
    path = export_benchmark(run)
    assert path.parent.parent == run / "benchmarks"
    assert path.parent.name.endswith("-64bit") and path.name == "0001_synthetic.json"

    doc = json.loads(path.read_text())
    assert set(doc) >= {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    benches = {b["name"]: b for b in doc["benchmarks"]}
    assert set(benches) == {"train_epoch[batch_size=8]", "train_epoch[batch_size=16]"}
    b8 = benches["train_epoch[batch_size=8]"]
    assert set(b8) == {"group", "name", "fullname", "params", "param", "extra_info", "options", "stats"}
    assert b8["stats"]["rounds"] == 6 and b8["stats"]["iterations"] == 1
    assert b8["stats"]["median"] == pytest.approx(3.05)
    assert "seed" not in b8["params"] and b8["params"]["batch_size"] == 8
    assert b8["extra_info"]["status"] == "ok" and b8["extra_info"]["val_accuracy"] == pytest.approx(0.8)
    assert b8["extra_info"]["cpu_peak_rss_mib"] == 800.0 and b8["extra_info"]["tokens_per_s"] == 4000.0
    assert b8["extra_info"]["cost_usd"] == pytest.approx(0.0006)
    b16 = benches["train_epoch[batch_size=16]"]
    assert b16["extra_info"]["status"] == "ok=1, oom=1" and b16["stats"]["rounds"] == 3  # ok trial only
    assert doc["harness"]["omitted"][0]["config"] == "batch_size=32"

    # a second run exported into a shared storage folder gets the next number
    storage = tmp_path / "storage"
    first = export_benchmark(run, storage)
    second = export_benchmark(run, storage)
    assert first.name.startswith("0001_") and second.name.startswith("0002_")
    explicit = export_benchmark(run, tmp_path / "x" / "out.json")
    assert explicit == tmp_path / "x" / "out.json" and explicit.exists()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    cmd = _pytest_benchmark_cli() + ["--storage", str(run / "benchmarks"), "compare", "0001"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Failed to load" not in out
    assert "train_epoch[batch_size=8]" in out and "train_epoch[batch_size=16]" in out

    cmd = _pytest_benchmark_cli() + ["--storage", str(storage), "compare"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(0001_synthet)" in proc.stdout and "(0002_synthet)" in proc.stdout  # the two saved runs side by side

    proc = subprocess.run(_pytest_benchmark_cli() + ["compare", str(explicit)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0 and "train_epoch[batch_size=8]" in proc.stdout, proc.stdout + proc.stderr


def test_export_rejects_empty_run(tmp_path):
    run = make_run(tmp_path / "run", [])
    with pytest.raises(StoreError):
        export_benchmark(run)
    with pytest.raises(StoreError):
        export_benchmark(tmp_path / "nope")
