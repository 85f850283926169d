"""The Ray executor on a local Ray head started by this module on 127.0.0.1 (issue 7).

Skipped only where Ray is not installed (CI installs the extra, `pip install ".[ray]"`); the checks of the
command line without Ray, of the resume rule and of the resources a trial asks for run everywhere.

Trials are `random:bert-tiny` on 60-80 rows of `embedded:reviews`, max_length 32, one thread, so that two
trials fit the two CPUs the head is given and the losses are bit-for-bit reproducible.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from harness import cli
from harness.config import load_grid
from harness.grid import expand
from harness.progress import Progress
from harness.run import RunEvents, run_grid
from harness.store import RunStore, read_env, read_records

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason='Ray is not installed (pip install ".[ray]")')


def write_grid(path: Path, sizes: list[int], epochs: int = 1, name: str = "raytest") -> Path:
    path.write_text(
        f'name = "{name}"\n'
        '[model]\nname = "random:bert-tiny"\nmax_length = 32\n'
        '[data]\nsource = "embedded:reviews"\n'
        f'[train]\nepochs = {epochs}\nnum_threads = 1\n'
        f'[grid]\ndataset_size = {json.dumps(sizes)}\nbatch_size = [8]\nfrozen_layers = [0]\ndevice = ["cpu"]\n'
        '[limits]\ntrial_timeout_s = 600\n',
        encoding="utf-8")
    return path


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def outcome_of(rec: dict) -> dict:
    """What must not depend on the executor: everything but times, memory and where it ran."""
    return {
        "status": rec["status"], "error": rec["error"], "params": rec["params"], "n_train": rec["n_train"],
        "n_val": rec["n_val"], "trainable_params": rec["trainable_params"],
        "epochs": [{k: e[k] for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                      "train_samples")} for e in rec["epochs"]],
    }


# --------------------------------------------------------------------------------------------------
# Without a cluster
# --------------------------------------------------------------------------------------------------
def test_without_ray_the_command_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    grid = write_grid(tmp_path / "g.toml", [60])
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code = cli.main(["run", str(grid), "--executor", "ray", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert 'pip install "harness[ray]"' in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()

    from harness.run import make_executor

    with pytest.raises(ImportError, match=r"harness\[ray\]"):
        make_executor("ray")


def test_workers_are_for_the_local_executor_and_address_for_ray(tmp_path, capsys):
    grid = write_grid(tmp_path / "g.toml", [60])
    assert cli.main(["run", str(grid), "--executor", "ray", "--workers", "2"]) == 2
    assert "--workers is for the local executor" in capsys.readouterr().err
    assert cli.main(["run", str(grid), "--address", "head:6379"]) == 2
    assert "--executor ray" in capsys.readouterr().err


@needs_ray
def test_an_address_nobody_listens_on_fails_fast_with_exit_2(tmp_path, capsys):
    import socket

    import ray

    if ray.is_initialized():  # an existing connection would be reused, whatever the address
        pytest.skip("Ray is already initialised in this process")
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    grid = write_grid(tmp_path / "g.toml", [60])
    t0 = time.monotonic()
    code = cli.main(["run", str(grid), "--executor", "ray", "--address", f"127.0.0.1:{port}",
                     "--out", str(tmp_path / "run")])
    assert code == 2 and time.monotonic() - t0 < 30
    assert "cannot reach a Ray head" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_record_marked_retry_on_resume_is_not_finished(tmp_path):
    store = RunStore(tmp_path / "run")
    store.create('name = "x"\n', {})
    base = {"schema": 1, "params": {}, "epochs": []}
    store.append({**base, "trial_id": "a", "status": "ok"})
    store.append({**base, "trial_id": "b", "status": "oom"})
    store.append({**base, "trial_id": "c", "status": "error", "retry_on_resume": True})
    store.append({**base, "trial_id": "d", "status": "error", "retry_on_resume": True})
    store.append({**base, "trial_id": "d", "status": "ok"})  # d ran again on resume: its last record wins
    assert store.finished_ids() == {"a", "b", "d"}
    assert {r["trial_id"]: r["status"] for r in read_records(tmp_path / "run")}["d"] == "ok"
    if hasattr(store, "close"):
        store.close()


def test_resources_a_trial_asks_for(tmp_path):
    from harness.executors.ray import _for_this_worker, resources_of

    cfg, _ = load_grid(str(write_grid(tmp_path / "g.toml", [60])))
    (trial,) = expand(cfg)
    assert resources_of(trial) == {"num_cpus": 1.0, "num_gpus": 0.0}
    unset = trial.__class__(**{**trial.to_dict(), "params": {**trial.params, "num_threads": None}})
    assert resources_of(unset) == {"num_cpus": 1.0, "num_gpus": 0.0}
    gpu = trial.__class__(**{**trial.to_dict(), "params": {**trial.params, "device": "cuda:1", "num_threads": 4}})
    assert resources_of(gpu) == {"num_cpus": 4.0, "num_gpus": 1.0}
    # Ray makes the task's GPU the only visible one: cuda:1 runs as cuda, the trial's id stays.
    moved = _for_this_worker(gpu)
    assert moved.params["device"] == "cuda" and moved.trial_id == gpu.trial_id
    assert _for_this_worker(trial) is trial


# --------------------------------------------------------------------------------------------------
# On a local Ray head
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_head():
    if not HAVE_RAY:
        pytest.skip('Ray is not installed (pip install ".[ray]")')
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@needs_ray
def test_ray_gives_the_same_records_as_the_local_executor(tmp_path, ray_head):
    grid = write_grid(tmp_path / "g.toml", [60, 80], epochs=2)
    local = run_grid(str(grid), out=str(tmp_path / "local"), executor="local", console=quiet(), report=False)
    on_ray = run_grid(str(grid), out=str(tmp_path / "ray"), executor="ray", console=quiet(), report=False)
    assert local.exit_code == 0 and on_ray.exit_code == 0

    by_id = {r["trial_id"]: r for r in on_ray.records}
    assert len(on_ray.records) == 2 and set(by_id) == {r["trial_id"] for r in local.records}
    for rec in local.records:
        assert rec["status"] == "ok"
        assert outcome_of(by_id[rec["trial_id"]]) == outcome_of(rec)
    for rec in on_ray.records:
        assert rec["ray"]["node_id"] and rec["ray"]["worker_pid"]
        assert "retry_on_resume" not in rec
        # The trial ran in the task's bare child: the same process size as locally, not a Ray worker's.
        assert rec["memory"]["cpu_peak_rss_mib"] < 1.25 * by_id[rec["trial_id"]]["memory"]["cpu_peak_rss_mib"]
    # One fresh worker per trial (max_calls=1).
    assert len({r["ray"]["worker_pid"] for r in on_ray.records}) == 2
    assert read_env(tmp_path / "ray")["nodes"] == sorted({r["host"] for r in on_ray.records})


class KillWorkerMidTrial(RunEvents):
    """Kills the Ray worker running `victim` once the trial has entered `phase` (from the driver's thread)."""

    def __init__(self, store, progress, victim: str, phase: str = "load_model"):
        super().__init__(store, progress)
        self.victim, self.phase = victim, phase
        self.worker_pid: int | None = None
        self.killed: list[int] = []

    def trial_event(self, trial, event):
        super().trial_event(trial, event)
        if trial.trial_id != self.victim:
            return
        if event.get("type") == "worker":
            self.worker_pid = event["worker_pid"]
        if event.get("type") == "phase" and event.get("phase") == self.phase and not self.killed:
            import psutil

            worker = psutil.Process(self.worker_pid)
            self.killed = [worker.pid] + [c.pid for c in worker.children(recursive=True)]
            os.kill(worker.pid, signal.SIGKILL)


@needs_ray
def test_a_worker_killed_mid_trial_leaves_an_error_record_and_resume_runs_it_again(tmp_path, ray_head):
    from harness.executors.ray import RayExecutor

    grid = write_grid(tmp_path / "g.toml", [60, 80])
    cfg, text = load_grid(str(grid))
    trials = expand(cfg)
    victim = trials[0].trial_id
    store = RunStore(tmp_path / "run")
    store.create(text, {})
    progress = Progress(len(trials), console=quiet())
    events = KillWorkerMidTrial(store, progress, victim)
    RayExecutor().run(trials, events)  # returns: the grid finishes
    if hasattr(store, "close"):
        store.close()

    assert events.killed, "the victim's worker was never seen"
    recs = {r["trial_id"]: r for r in read_records(tmp_path / "run")}
    assert len(recs) == 2
    dead = recs[victim]
    assert dead["status"] == "error" and dead["retry_on_resume"] is True
    assert "worker" in dead["error"] and "--resume" in dead["error"]
    assert dead["host"] and dead["ray"]["worker_pid"] == events.worker_pid
    assert dead["params"] == trials[0].params
    other = recs[trials[1].trial_id]
    assert other["status"] == "ok" and "retry_on_resume" not in other
    # The trial's child died with its worker (no orphan left running).
    import psutil

    time.sleep(1.0)
    alive = [p for p in events.killed if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive

    # --resume runs the killed trial again, and only it.
    resumed = run_grid(str(grid), resume=str(tmp_path / "run"), executor="ray", console=quiet(), report=False)
    assert resumed.skipped == 1
    final = {r["trial_id"]: r for r in resumed.records}
    assert len(final) == 2 and all(r["status"] == "ok" for r in final.values())
    assert final[trials[1].trial_id]["finished_at"] == other["finished_at"]  # not run twice


@needs_ray
def test_the_driver_interrupted_and_resumed_loses_nothing(tmp_path, ray_head):
    grid = write_grid(tmp_path / "g.toml", [60, 70, 80])
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness", "run", str(grid), "--executor", "ray", "--address", ray_head,
           "--out", str(run_dir), "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    trials_path = run_dir / "trials.jsonl"
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if trials_path.exists() and trials_path.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        # Two trials run at once on the head's two CPUs; the third cannot have finished yet.
        assert trials_path.read_bytes().count(b"\n") < 3, "the interrupt came too late to interrupt anything"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out[-3000:]
    assert "--resume" in out
    before = read_records(run_dir)
    assert 1 <= len(before) < 3

    resumed = run_grid(str(grid), resume=str(run_dir), executor="ray", console=quiet(), report=False)
    assert resumed.exit_code == 0 and resumed.skipped == len(before)
    lines = [json.loads(line) for line in trials_path.read_text().splitlines() if line.strip()]
    assert len(lines) == 3 and len({r["trial_id"] for r in lines}) == 3  # exactly N, no duplicates
    assert all(r["status"] == "ok" for r in lines)
    assert {r["trial_id"] for r in lines} == {t.trial_id for t in expand(load_grid(str(grid))[0])}


@needs_ray
def test_a_task_that_fails_in_ray_is_an_error_to_run_again(tmp_path, ray_head):
    import ray

    from harness.executors.ray import RayExecutor, _Watch

    cfg, _ = load_grid(str(write_grid(tmp_path / "g.toml", [60])))
    (trial,) = expand(cfg)
    failing = ray.remote(max_retries=0)(lambda: 1 / 0).remote()
    watch = _Watch(trial, started=True, phase="train", epoch=1,
                   where={"host": "node-7", "node_id": "n7", "node_ip": "10.0.0.7", "worker_pid": 1, "gpu_ids": []})
    rec = RayExecutor()._collect(failing, watch)
    assert rec["status"] == "error" and rec["retry_on_resume"] is True
    assert "ZeroDivisionError" in rec["error"] and "node-7" in rec["error"]
    assert rec["host"] == "node-7" and rec["ray"]["node_id"] == "n7" and rec["params"] == trial.params
