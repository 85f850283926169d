"""What a memory cgroup charges a trial, against the process tree's RSS that the record shows.

Each trial of GRID runs as `harness run` runs it (its own child process, `executors.budget.prepare` making the
cgroup, the child joining it first thing), with `[limits] cpu_memory = BUDGET` enforced by
`cpu_memory_method = "cgroup"` whatever the grid says: pick a budget well above the trial's peak so that
nothing is killed. Before the cgroup is removed its high-water mark is read (v2 `memory.peak`, v1
`memory.max_usage_in_bytes`) and printed next to the record's `memory.cpu_peak_rss_mib`.

    python docs/scripts/cgroup_vs_rss.py GRID [BUDGET]        # BUDGET default "8GiB"
"""

from __future__ import annotations

import dataclasses
import sys

from pydantic import ByteSize, TypeAdapter

from harness.config import load_grid
from harness.executors.local import ChildRun
from harness.grid import expand

MiB = 2**20


def main() -> None:
    grid = sys.argv[1]
    budget = int(TypeAdapter(ByteSize).validate_python(sys.argv[2] if len(sys.argv) > 2 else "8GiB"))
    cfg, _ = load_grid(grid)
    for trial in expand(cfg):
        trial = dataclasses.replace(trial, limits={**trial.limits, "cpu_memory": budget,
                                                   "cpu_memory_method": "cgroup"})
        run = ChildRun(trial)
        run.start()
        try:
            rec = run.wait()
            cg = run.budget.cgroup if run.budget is not None else None
            peak = cg.peak_bytes() if cg is not None else None
        finally:
            run.close()
        rss = (rec.get("memory") or {}).get("cpu_peak_rss_mib")
        base = (rec.get("memory") or {}).get("cpu_baseline_rss_mib")
        if cg is None or peak is None:
            print(f"{trial.label()}: no cgroup ({run.budget.error or run.budget.reason if run.budget else 'none'})")
            continue
        print(f"{trial.label()}: status {rec['status']}; {cg.version} cgroup peak {peak / MiB:.0f} MiB; "
              f"tree RSS peak {rss} MiB (baseline {base} MiB); RSS - cgroup {rss - peak / MiB:+.0f} MiB; "
              f"enforced by: {(rec.get('memory_budget') or {}).get('cpu_enforced_by')}")


if __name__ == "__main__":
    main()
