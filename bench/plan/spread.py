"""The machine's own run-to-run spread: the same trial repeated (bench/plan/spread.toml), per configuration
the range of seconds per epoch and of peak RSS, as a % of their median, and each repeat's deviation from
the configuration's median (the floor under any prediction's error on this machine at this load).

    python bench/plan/spread.py RUN_DIR
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main() -> None:
    recs = [json.loads(line) for line in (Path(sys.argv[1]) / "trials.jsonl").read_text().splitlines() if line.strip()]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        if r.get("status") != "ok":
            continue
        key = json.dumps({k: v for k, v in r["params"].items() if k != "seed"}, sort_keys=True)
        groups[key].append(r)
    devs_t, devs_m = [], []
    for key, rs in groups.items():
        p = json.loads(key)
        ep = [sum(e["train_seconds"] + e["eval_seconds"] for e in r["epochs"]) / len(r["epochs"]) for r in rs]
        mem = [r["memory"]["cpu_peak_rss_mib"] for r in rs]
        mt, mm = statistics.median(ep), statistics.median(mem)
        devs_t += [abs(x - mt) / mt * 100 for x in ep]
        devs_m += [abs(x - mm) / mm * 100 for x in mem]
        print(f"batch {p['batch_size']} frozen {p['frozen_layers']} {p['strategy']} x{len(rs)}: s/epoch "
              f"{', '.join(f'{x:.1f}' for x in ep)} (range {100 * (max(ep) - min(ep)) / mt:.0f} % of the median); "
              f"peak MiB {', '.join(f'{x:.0f}' for x in mem)} (range {100 * (max(mem) - min(mem)) / mm:.1f} %)")
    if devs_t:
        print(f"|deviation from the configuration's median|: seconds per epoch median {statistics.median(devs_t):.1f} %, "
              f"max {max(devs_t):.1f} %; peak memory median {statistics.median(devs_m):.1f} %, max {max(devs_m):.1f} %")


if __name__ == "__main__":
    main()
