"""A whole `harness run` of a 2x2x2 grid, each trial in its own child process, writing valid records."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from harness.cli import main
from harness.store import read_env, read_records

GRID = """
name = "spine"
[model]
name = "random:bert-tiny"
max_length = 16
[data]
source = "embedded:reviews"
[train]
epochs = 2
learning_rate = 0.05
[grid]
dataset_size = [40, 60]
batch_size = [4, 8]
frozen_layers = ["all", 0]
device = ["cpu"]
"""

RECORD_KEYS = {"trial_id", "params", "status", "error", "epochs", "seconds_total", "trainable_params",
               "total_params", "device_name", "memory"}
EPOCH_KEYS = {"epoch", "seconds", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}


def test_a_2x2x2_grid_runs_in_child_processes(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--no-report"]) == 0

    records = read_records(out)
    assert len(records) == 8
    assert len({r["trial_id"] for r in records}) == 8
    for r in records:
        assert RECORD_KEYS <= set(r)
        assert r["status"] == "ok", r["error"]
        assert len(r["epochs"]) == 2
        for e in r["epochs"]:
            assert EPOCH_KEYS <= set(e)
            assert e["seconds"] > 0 and 0.0 <= e["val_accuracy"] <= 1.0
        assert r["memory"]["cpu_peak_rss_mib"] > 50
        assert r["seconds_total"] > sum(e["seconds"] for e in r["epochs"])
        assert 0 < r["trainable_params"] <= r["total_params"]
        p = r["params"]
        n_val = -(-p["dataset_size"] // 10)
        assert (r["n_train"], r["n_val"]) == (p["dataset_size"] - n_val, n_val)
        if p["frozen_layers"] == 0:
            assert r["trainable_params"] == r["total_params"]
    # each trial ran in a process of its own
    assert len({r["host"] for r in records}) == 1

    # the run folder holds the grid copy and the environment
    assert (out / "grid.toml").read_text() == GRID
    env = read_env(out)
    for key in ("python", "torch", "transformers", "datasets", "cpu_model", "cpu_count", "ram_total_mib"):
        assert env.get(key), key
    # every line is one JSON object
    lines = (out / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line)["trial_id"] for line in lines)


def test_the_installed_command_and_module_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "run" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(GRID.replace("epochs = 2", "epochs = 0"))
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(bad), "--out", str(tmp_path / "never")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert str(bad) in done.stderr and "[train] epochs" in done.stderr
    assert not (tmp_path / "never").exists()


def test_example_grids_are_valid():
    from harness.config import load_grid

    grids = sorted((Path(__file__).resolve().parents[1] / "grids").glob("*.toml"))
    assert any(g.name == "quick.toml" for g in grids)
    for g in grids:
        tomllib.loads(g.read_text())
        load_grid(g)


def test_env_json_keeps_the_variables_that_change_speed_or_memory(monkeypatch):
    from harness.env import collect

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HARNESS_UNRELATED_SECRET", "x")
    env = collect()
    assert env["env_vars"]["MALLOC_MMAP_THRESHOLD_"] == "65536" and env["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert "HARNESS_UNRELATED_SECRET" not in env["env_vars"]  # only what changes the figures, nothing else
