"""`--executor local --workers N`: several trials at once on one machine, where the user accepts interference.

Trials are `random:bert-tiny` on 60-80 rows of `embedded:reviews`, one thread each, so that two fit the two
cores of a small machine and the losses are reproducible bit for bit.
"""

from __future__ import annotations

import io
import json
import threading
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from harness import cli
from harness.config import load_grid
from harness.executors.local import LocalExecutor
from harness.grid import expand
from harness.run import run_grid


def write_grid(path: Path, sizes: list[int], epochs: int = 1) -> Path:
    path.write_text(
        'name = "workers"\n'
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
    return {"status": rec["status"], "params": rec["params"], "n_train": rec["n_train"],
            "epochs": [{k: e[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")}
                       for e in rec["epochs"]]}


def test_two_workers_run_trials_at_once_with_the_same_results(tmp_path):
    grid = write_grid(tmp_path / "g.toml", [60, 80])
    two = run_grid(str(grid), out=str(tmp_path / "two"), workers=2, console=quiet(), report=False)
    one = run_grid(str(grid), out=str(tmp_path / "one"), workers=1, console=quiet(), report=False)
    assert two.exit_code == 0 and len(two.records) == 2
    assert len({r["trial_id"] for r in two.records}) == 2
    lines = (tmp_path / "two" / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 2  # the driver appended each record once, whole
    # The two children ran at the same time...
    starts = [datetime.fromisoformat(r["started_at"]) for r in two.records]
    ends = [datetime.fromisoformat(r["finished_at"]) for r in two.records]
    assert max(starts) < min(ends)
    # ...and, with one thread each and the same seeds, computed what one at a time computes.
    serial = {r["trial_id"]: outcome_of(r) for r in one.records}
    assert {r["trial_id"]: outcome_of(r) for r in two.records} == serial
    assert all(r["status"] == "ok" for r in two.records)


class StopWhenBothRun:
    """Events that stop the executor (as the Ctrl-C handler does) once both trials are in their children."""

    def __init__(self, executor: LocalExecutor, n: int):
        self.executor, self.n = executor, n
        self.in_child: set[str] = set()
        self.finished: list[dict] = []
        self.stop = False
        self.lock = threading.Lock()

    def trial_started(self, trial):
        pass

    def trial_event(self, trial, event):
        if event.get("type") != "phase":
            return
        with self.lock:
            self.in_child.add(trial.trial_id)
            both = len(self.in_child) == self.n and not self.stop
            if both:
                self.stop = True
        if both:
            threading.Thread(target=self.executor.stop).start()

    def trial_finished(self, trial, record):
        self.finished.append(record)

    def stopping(self):
        return self.stop


def test_stop_with_two_workers_kills_both_children_and_writes_nothing(tmp_path):
    cfg, _ = load_grid(str(write_grid(tmp_path / "g.toml", [60, 80], epochs=50)))
    trials = expand(cfg)
    executor = LocalExecutor(workers=2)
    events = StopWhenBothRun(executor, len(trials))
    done = threading.Event()
    thread = threading.Thread(target=lambda: (executor.run(trials, events), done.set()), daemon=True)
    thread.start()
    assert done.wait(240), "the run did not return after stop()"
    assert events.stop and events.in_child == {t.trial_id for t in trials}
    assert events.finished == []  # interrupted trials leave no record; they run again on --resume


@pytest.mark.parametrize("value", ["0", "-1", "two", "257"])
def test_workers_must_be_a_sensible_count(tmp_path, value, capsys):
    grid = write_grid(tmp_path / "g.toml", [60])
    try:
        code = cli.main(["run", str(grid), "--workers", value])
    except SystemExit as exc:  # argparse's exit, where main lets it through
        code = exc.code
    assert code == 2
    assert "--workers" in capsys.readouterr().err
