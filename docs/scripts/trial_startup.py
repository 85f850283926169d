"""Seconds from a trial child's start to each phase (spawn, imports, data, model, tokenize, first training step).

Usage: python docs/scripts/trial_startup.py GRID.toml [N]  (the grid's first trial, N times; default 3)

The figure behind run.py's long-grid note (docs/reliability.md): 29.6, 33.9 and 44.4 s to the first training
step for random:bert-tiny on a 60-row CSV, on the 2-core test machine under a load average of 25.
"""

from __future__ import annotations

import sys
import time

from harness.config import load_grid
from harness.executors.local import ChildRun
from harness.grid import expand


def main() -> None:
    cfg, _ = load_grid(sys.argv[1])
    trial = expand(cfg)[0]
    for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 3):
        marks: dict[str, float] = {}
        t0 = time.monotonic()

        def on_event(t, event, marks=marks, t0=t0):
            if event.get("type") == "phase" and event.get("phase") not in marks:
                marks[event["phase"]] = round(time.monotonic() - t0, 2)

        run = ChildRun(trial, on_event)
        run.start()
        try:
            rec = run.wait()
        finally:
            run.close()
        print(f"run {i}: status {rec['status']}, first training step after {marks.get('train')} s, "
              f"whole trial {time.monotonic() - t0:.1f} s; phases {marks}", flush=True)


if __name__ == "__main__":
    main()
