"""The floor under any forecast of a grid: each run's peaks predicted by the mean of the other runs of the same
grid (an oracle that has seen the very trials run before), and each trial's spread across the runs, of its
peak memory and of its seconds per epoch. A forecast can only be graded more finely than these allow
(docs/plan.md).

    python bench/plan/floor.py bench/plan/runs/heldout_minilm bench/plan/runs/heldout_minilm_r2 \
        bench/plan/runs/final_heldout_minilm bench/plan/runs/s4_heldout_minilm
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from harness.prediction import UNDER_PCT, percentile
from harness.store import RunStore


def values(run: str, what: str = "memory") -> dict[tuple, float]:
    out = {}
    for rec in RunStore(Path(run)).records():
        if rec.get("kind", "train") != "train" or rec.get("status") != "ok":
            continue
        p = rec["params"]
        key = (p["model"], p["max_length"], p["batch_size"], str(p["frozen_layers"]), p["strategy"])
        if what == "memory":
            out[key] = rec["memory"]["cpu_peak_rss_mib"]
        elif rec.get("epochs"):
            eps = rec["epochs"]
            out[key] = sum(e["train_seconds"] + (e.get("eval_seconds") or 0.0) for e in eps) / len(eps)
    return out


def spread_line(what: str, runs: list[str]) -> str:
    measured = [values(r, what) for r in runs]
    keys = sorted(set.intersection(*[set(m) for m in measured]))
    spread = sorted((100 * (max(v) - min(v)) / statistics.median(v), k)
                    for k in keys for v in [[m[k] for m in measured]])
    s = [x for x, _ in spread]
    return (f"each trial's {what} spread over {len(runs)} runs, (max - min) / median: median "
            f"{percentile(s, 0.5):.1f} %, p90 {percentile(s, 0.9):.1f} %, max {s[-1]:.1f} % {spread[-1][1]}")


def main() -> None:
    runs = sys.argv[1:]
    if len(runs) < 2:
        sys.exit("usage: python bench/plan/floor.py RUN_DIR RUN_DIR [RUN_DIR ...]")
    measured = [values(r) for r in runs]
    keys = sorted(set.intersection(*[set(m) for m in measured]))
    for i, run in enumerate(runs):
        errs = [100 * (statistics.mean(m[k] for j, m in enumerate(measured) if j != i) - measured[i][k]) / measured[i][k]
                for k in keys]
        a = [abs(e) for e in errs]
        print(f"{run}: mean of the other runs as the forecast: median |error| {percentile(a, 0.5):.2f} %, "
              f"p90 {percentile(a, 0.9):.2f} %, max {max(a):.1f} %; under by > {UNDER_PCT:.0f} %: "
              f"{sum(e < -UNDER_PCT for e in errs)} of {len(errs)}")
    print(spread_line("memory", runs))
    print(spread_line("seconds per epoch", runs))


if __name__ == "__main__":
    main()
