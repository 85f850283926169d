"""fits/oom against a CPU budget, predicted (plan.json) vs measured (the run's peak RSS), for budgets that
some of the held-out trials exceed. A trial the watchdog would stop is one whose measured peak passes the
budget, so the measured verdict here is `cpu_peak_rss_mib > budget` (the run itself had no budget).

    python bench/plan/verdicts.py PLAN_DIR RUN_DIR [BUDGET_MIB ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    plan = json.loads((Path(sys.argv[1]) / "plan.json").read_text())
    recs = [json.loads(line) for line in (Path(sys.argv[2]) / "trials.jsonl").read_text().splitlines() if line.strip()]
    pred = {r["trial_id"]: r["memory"]["peak_mib"] for r in plan["trials"] if r["status"] == "predicted"}
    meas = {r["trial_id"]: r["memory"]["cpu_peak_rss_mib"] for r in recs
            if r.get("status") == "ok" and r["trial_id"] in pred}
    budgets = [float(b) for b in sys.argv[3:]] or [1024.0, 1536.0, 2048.0, 4096.0]
    for b in budgets:
        right = sum((pred[t] > b) == (meas[t] > b) for t in meas)
        over = sum(meas[t] > b for t in meas)
        print(f"budget {b:.0f} MiB: {over} of {len(meas)} trials measured over it; "
              f"verdict right for {right} of {len(meas)} ({100 * right / max(1, len(meas)):.0f} %)")


if __name__ == "__main__":
    main()
