"""Final validation accuracy per configuration over seeds, from run folders: one Markdown table.

    python docs/scripts/accuracy_table.py RUN_DIR [RUN_DIR ...]

Groups a run's `ok` training records by every setting but `seed` (repeats differ only in their seed), and
gives the mean, the standard deviation and the values of the last epoch's `val_accuracy`, with the mean
`seconds_total`: what docs/performance.md quotes for `lab` against `fast` on real data.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict

from harness.store import read_records

SHOWN = ("source", "frozen_layers", "strategy", "frozen_dropout")


def main(run_dirs: list[str]) -> None:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run_dir in run_dirs:
        for rec in read_records(run_dir):
            if rec.get("kind", "train") != "train" or rec.get("status") != "ok":
                continue
            p = rec["params"]
            key = tuple(sorted((k, str(v)) for k, v in p.items() if k != "seed"))
            groups[key].append(rec)
    print("| data | frozen | strategy | frozen_dropout | seeds | val acc mean | sd | values | total s (mean) |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: |")
    for recs in groups.values():
        p = recs[0]["params"]
        accs = [r["epochs"][-1]["val_accuracy"] for r in recs]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        secs = statistics.mean(r["seconds_total"] for r in recs)
        cells = [str(p.get(k)) for k in SHOWN]
        print(f"| {' | '.join(cells)} | {len(accs)} | {statistics.mean(accs):.4f} | {sd:.4f} | "
              f"{', '.join(f'{a:.3f}' for a in accs)} | {secs:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
