"""The largest-batch search's answer, repeated: the search's own probes (`search.Search.probe_trial`: 3 batches
a pass, a child process each) run again at batch sizes near its answer, several times, under a budget raised
above the one searched (bench/plan/max_batch_boundary.toml: 3 GiB), so that every peak is measured in full.
How far the batch where the peak crosses the searched budget moves from one repeat to the next is how
closely any forecast of the largest batch can be graded (docs/plan.md).

    python bench/plan/boundary.py bench/plan/max_batch_boundary.toml --budget-mib 2048 --repeats 2 \
        --batches 0=23,24,25,26,27,28 all=416,424,430,436,444 --out /tmp/boundary.jsonl

One line per probe in --out (repeat, frozen, batch, status, peak MiB, seconds); then, per frozen setting and
batch, the peaks and whether each fitted the budget.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


class _Events:
    def stopping(self) -> bool:
        return False


def main() -> None:
    from harness.config import load_grid
    from harness.executors.local import LocalExecutor
    from harness.grid import expand
    from harness.search import Search, _ProbeEvents

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("--budget-mib", type=float, required=True, help="the budget the search answered for")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batches", nargs="+", required=True, help="FROZEN=B1,B2,... per frozen setting of the grid")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sizes = {k: [int(b) for b in v.split(",")] for k, v in (x.split("=", 1) for x in args.batches)}
    cfg, _ = load_grid(args.grid)
    trials = [t for t in expand(cfg) if str(t.params["frozen_layers"]) in sizes]
    ex = LocalExecutor()
    peaks: dict[tuple[str, int], list[float | None]] = defaultdict(list)
    with open(args.out, "a", encoding="utf-8") as out:
        for repeat in range(args.repeats):
            for t in trials:
                frozen = str(t.params["frozen_layers"])
                search = Search(t, cfg, ex, _Events(), None, {})
                for b in sizes[frozen]:
                    sink = _ProbeEvents(_Events())
                    ex.run([search.probe_trial(b)], sink)
                    rec = sink.record or {}
                    peak = (rec.get("memory") or {}).get("cpu_peak_rss_mib")
                    row = {"repeat": repeat, "frozen": frozen, "batch": b, "status": rec.get("status"),
                           "peak_mib": peak, "seconds": rec.get("seconds_total")}
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(row, flush=True)
                    peaks[(frozen, b)].append(peak)
    for (frozen, b), v in sorted(peaks.items()):
        fits = ["fits" if p is not None and p <= args.budget_mib else "over" for p in v]
        print(f"frozen {frozen}, batch {b}: peaks {v} MiB -> {fits}")


if __name__ == "__main__":
    main()
