"""Score a plan made from stored calibrations only (probe=False) against bench/plan/runs/heldout_minilm (docs/plan.md)."""
import json, time
from pathlib import Path
from harness.plan.planner import plan_grid, write_plan
from harness.plan import check_run
t = time.time()
plan = plan_grid("bench/plan/heldout_minilm.toml", probe=False)
print("plan wall", round(time.time() - t, 1), plan.totals())
write_plan(plan, Path("bench/plan/runs/check_minilm_lab"))
res = check_run(plan, Path("bench/plan/runs/heldout_minilm"))
json.dump(res, open("bench/plan/runs/check_minilm_lab/check.json", "w"), indent=1)
for r in res["trials"]:
    if "skipped" in r: continue
    p = r["params"]
    print(p["max_length"], p["batch_size"], p["frozen_layers"], p["strategy"], r["peak_mib_predicted"], r["peak_mib_measured"],
          round(r["memory_error_pct"], 1), r["epoch_s_predicted"], round(r["epoch_s_measured"], 1), round(r["epoch_error_pct"], 1))
print(json.dumps(res["summary"]))
