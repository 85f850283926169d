"""The trial server: children forked from a preloaded, idle process (executors/local.py, preload.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch

from grid_helpers import tiny_grid
from harness.config import load_grid
from harness.grid import Trial, expand

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _trial(tmp_path: Path, **overrides: Any) -> Trial:
    return expand(load_grid(tiny_grid(tmp_path, **overrides))[0])[0]


def test_the_server_preload_never_touches_cuda():
    """Importing what the server preloads calls none of CUDA's entry points (a server that initialised the
    driver would make every CUDA trial forked from it fail). Trapped here so that it fails on a CPU too."""
    code = """
import torch, torch.cuda
calls = []
def trap(name, real):
    def wrapper(*a, **k):
        calls.append(name)
        return real(*a, **k)
    return wrapper
torch.cuda._lazy_init = trap("_lazy_init", torch.cuda._lazy_init)
torch.cuda.init = trap("init", torch.cuda.init)
torch.cuda.is_available = trap("is_available", torch.cuda.is_available)
torch.cuda.device_count = trap("device_count", torch.cuda.device_count)
if hasattr(torch._C, "_cuda_getDeviceCount"):
    torch._C._cuda_getDeviceCount = trap("_cuda_getDeviceCount", torch._C._cuda_getDeviceCount)
import harness.executors.preload
assert not torch.cuda.is_initialized(), "CUDA initialised"
print("CALLS", calls)
"""
    res = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "CALLS []" in res.stdout, res.stdout


def test_each_trial_is_a_fresh_child_of_the_server(tmp_path):
    from harness.executors import local

    trial = _trial(tmp_path)
    pids, parents = [], []

    def on_event(t: Trial, event: dict[str, Any]) -> None:
        if event.get("type") == "phase" and event.get("phase") == "load_data":
            proc = psutil.Process(run.process.pid)
            pids.append(proc.pid)
            parents.append(proc.ppid())
            assert proc.name() == local.TRIAL_PROCESS_NAME

    for _ in range(2):
        run = local.ChildRun(trial, on_event, method="forkserver")
        run.start()
        try:
            rec = run.wait()
        finally:
            run.close()
        assert rec["status"] == "ok", rec["error"]
        assert run.start_seconds is not None and run.start_seconds >= 0
    assert len(set(pids)) == 2  # a new process per trial
    assert parents[0] == parents[1] != os.getpid()  # both forked from the one server, not from this process
    assert "forkserver" in " ".join(psutil.Process(parents[0]).cmdline())


def test_spawn_is_still_there(tmp_path, monkeypatch):
    """HARNESS_START_METHOD=spawn: a bare interpreter per trial (what the Ray executor's workers use)."""
    from harness.executors import local

    monkeypatch.setenv("HARNESS_START_METHOD", "spawn")
    assert local.start_method() == "spawn" and local.trial_context() is local.SPAWN
    rec = local.run_in_child(_trial(tmp_path))
    assert rec["status"] == "ok", rec["error"]
    monkeypatch.setenv("HARNESS_START_METHOD", "no-such-method")
    assert local.start_method() == "spawn"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_trial_forked_from_the_server(tmp_path):
    """CUDA works in a child forked from the server (which never initialised it): the driver is fresh."""
    from harness.executors import local

    rec = local.run_in_child(_trial(tmp_path, grid__device=["cuda"]))
    assert rec["status"] == "ok", rec["error"]
    assert rec["memory"]["cuda_peak_allocated_mib"]
