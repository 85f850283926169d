"""What a trial spends before its first training step, per start method: `spawn` (a bare interpreter per
trial, what harness did before) against `forkserver` (children forked from the preloaded trial server).

    python bench/startup.py                      # 5 trials each, the quick grid's smallest trial
    python bench/startup.py --trials 8 --json /tmp/startup.json

Each trial is the quick grid's first (embedded MiniLM, 200 rows of embedded:reviews, 64 tokens, batch 16,
everything but the head frozen, `lab`), run through the local executor's `ChildRun`, one at a time, and
killed when it reaches its first training step (what follows is training, not start-up). Per trial, on one clock (`time.monotonic`, system-wide on Linux):
- `start_s`: from `ChildRun.start()` in the parent to the child's first line (`_child_main`);
- `load_data_s`, `load_model_s`, `tokenize_s`: the record's phases (the child's `time.perf_counter`);
- `to_first_step_s`: from `start()` to the child's "train" phase event, i.e. everything before the first
  training step: process start, imports, reading the rows and the weights (90 MiB of safetensors), building
  the model, tokenising;
- `cpu_to_first_step_s`: the CPU time (user + system, all threads) the child had used when it reached its
  first training step, read by the parent (psutil). On a shared machine wall times wait for a core; this
  does not, and on an idle machine the wall time before the first step is at most about this (less where
  threads run in parallel);
- `weights_read_s` (once, in this process): `safetensors.torch.load_file` of the model's weights, the part of
  `load_model` that is reading the trial's own weights.
The first forkserver trial also starts the server (once per run); it is reported apart (`server_start_s`)
and left out of the medians. Run on a loaded machine, compare the two methods within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GRID = """
name = "startup"
[model]
name = "embedded:minilm-l6"
max_length = 64
[data]
source = "embedded:reviews"
seed = 324
[train]
epochs = 1
optimizer = "adamw"
learning_rate = 0.0001
strategy = "lab"
[grid]
dataset_size = [200]
batch_size = [16]
frozen_layers = ["all"]
device = ["cpu"]
[limits]
trial_timeout_s = 600
"""


def one_trial(trial: Any, method: str) -> dict[str, Any]:
    import psutil

    from harness.executors.local import ChildRun

    marks: dict[str, float] = {}

    def on_event(_trial: Any, event: dict[str, Any]) -> None:
        if event.get("type") == "phase" and event.get("phase") == "train" and "train" not in marks:
            marks["train"] = time.monotonic()
            try:  # the CPU the child used until now: what a quiet machine's wall time would be, at most
                cpu = psutil.Process(run.process.pid).cpu_times()
                marks["cpu"] = cpu.user + cpu.system
            except psutil.Error:
                pass
            run.kill()  # what follows is training, not start-up: the record is completed from the snapshot

    run = ChildRun(trial, on_event, method=method)
    run.start()
    try:
        record = run.wait()
    finally:
        run.close()
    phases = record.get("phases") or {}
    return {
        "method": method,
        "status": "killed at the first training step" if "train" in marks else record["status"],
        "start_s": round(run.start_seconds, 3) if run.start_seconds is not None else None,
        "load_data_s": phases.get("load_data"),
        "load_model_s": phases.get("load_model"),
        "tokenize_s": phases.get("tokenize"),
        "to_first_step_s": round(marks["train"] - run.started, 3) if "train" in marks else None,
        "cpu_to_first_step_s": round(marks["cpu"], 3) if "cpu" in marks else None,
    }


def weights_read_seconds() -> float:
    from safetensors.torch import load_file

    from harness.core.models import embedded_minilm_path

    path = next(embedded_minilm_path().glob("*.safetensors"))
    load_file(str(path))  # once into the page cache, as a trial after the first finds it
    t0 = time.perf_counter()
    load_file(str(path))
    return round(time.perf_counter() - t0, 3)


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="trials per start method (default 5)")
    parser.add_argument("--methods", default="spawn,forkserver")
    parser.add_argument("--json", help="write every trial's figures here")
    args = parser.parse_args(argv)

    from harness.config import parse_grid
    from harness.grid import expand

    trial = expand(parse_grid(GRID, "bench/startup.py"))[0]
    out: dict[str, Any] = {"uptime": Path("/proc/loadavg").read_text().split()[:3], "cpus": os.cpu_count(),
                           "weights_read_s": weights_read_seconds(), "methods": {}}
    for method in args.methods.split(","):
        rows = [one_trial(trial, method) for _ in range(args.trials + (1 if method == "forkserver" else 0))]
        summary: dict[str, Any] = {"trials": rows}
        if method == "forkserver":  # the first one started the server too
            summary["server_start_s"] = rows[0]["start_s"]
            rows = rows[1:]
        for key in ("start_s", "load_data_s", "load_model_s", "tokenize_s", "to_first_step_s", "cpu_to_first_step_s"):
            summary[f"median_{key}"] = median(rows, key)
            values = [r[key] for r in rows if r.get(key) is not None]
            summary[f"range_{key}"] = [min(values), max(values)] if values else None
        out["methods"][method] = summary
        print(f"{method:>10}: " + ", ".join(f"{k} {summary[f'median_{k}']} s (range {summary[f'range_{k}']})"
                                         for k in ("start_s", "load_data_s", "load_model_s", "to_first_step_s",
                                                   "cpu_to_first_step_s")))
        if "server_start_s" in summary:
            print(f"{'':>10}  server start (first trial, once per run): {summary['server_start_s']} s")
    out["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    print(f"weights read (safetensors, warm page cache): {out['weights_read_s']} s; "
          f"load average before {' '.join(out['uptime'])}, after {' '.join(out['loadavg_after'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
