"""The heap's climb over a training pass's steps, measured at the calibration probes' own shapes: sets
`account.CLIMB` (a frozen bottom below what trains) and `account.CLIMB_ALL_TRAINED` (every block trains), docs/plan.md.

    python bench/plan/climb.py bench/plan/heldout_minilm.toml --plan PLAN_JSON --steps 20 --repeats 2

For each strategy of the grid (its calibration read from PLAN_JSON, a plan of the same grid), each probe shape is
run in the probe's own child (`probe.run_in_child`, a fresh process forked as a trial's is) for STEPS training
steps instead of the probes' 3. The account, fitted on 3-step peaks, forecasts that pass without the climb and
says how many bytes of its peak the heap serves; one line per run:

    c = (the training phase's measured peak - forecast without the climb)
        / (climb_weight(STEPS) x the heap's bytes at the peak)

Only runs whose forecast peak is the training phase's (after the first step) count: a cache build's or an
evaluation's peak is not a training pass's climb. The last lines give the median and quartiles of c, over all runs
and for each of the account's two groups (`account.climb_rate`).
"""

from __future__ import annotations

import argparse
import json
import statistics


def main() -> None:
    from harness.config import load_grid
    from harness.grid import expand
    from harness.plan import account, probe
    from harness.plan.calibrate import _probe_batches, depth_of, loaded, setting_of

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("--plan", required=True, help="a plan.json of the same grid (its calibrations are used)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--shapes", nargs="*", default=None, help="frozen,batch,max_length (default: the probes')")
    args = ap.parse_args()
    cfg, _ = load_grid(args.grid)
    shapes = probe.SHAPES
    if args.shapes:
        shapes = [(f if f in ("all", "half") else int(f), int(b), int(length))
                  for f, b, length in (x.split(",") for x in args.shapes)]
    cals = {c["key"]["strategy"]: c for c in json.load(open(args.plan))["calibrations"]}
    found: dict[str, list[float]] = {"all": [], "frozen bottom": [], "all trained": []}
    for strategy, cal in cals.items():
        params = next(t.params for t in expand(cfg) if t.params["strategy"] == strategy)
        q = dict(params, epochs=1)
        a, co = loaded(cal)
        co.load_bytes = 0.0  # the probe's phases leave its loading out
        for shape in shapes:
            for rep in range(args.repeats):
                r = probe.run_in_child({"params": q, "shapes": [shape], "anatomy": False, "steps": args.steps})
                sh = r["shapes"][0]
                measured = max(v for k, v in sh["rss_phases"].items() if k != "ready")
                d = depth_of(sh["frozen_layers"])
                s = setting_of(q, d, bool(sh["cache_used"]))
                b = _probe_batches(q, sh, d)
                saved = account.CLIMB, account.CLIMB_ALL_TRAINED
                account.CLIMB = account.CLIMB_ALL_TRAINED = 1.0
                try:
                    m = account.memory(a, s, b, co)
                finally:
                    account.CLIMB, account.CLIMB_ALL_TRAINED = saved
                line = {"strategy": strategy, "shape": [sh["frozen_layers"], sh["batch_size"], sh["max_length"]],
                        "repeat": rep, "steps": len(sh["train_batches"]), "phase": m.phase,
                        "measured_mib": round(measured / 2**20, 1),
                        "forecast_without_climb_mib": round((m.total - m.climb) / 2**20, 1),
                        "heap_climb_at_1_mib": round(m.climb / 2**20, 1),
                        "phases_mib": {k: round(v / 2**20, 1) for k, v in sh["rss_phases"].items()}}
                if m.phase == "train" and m.climb > 0:
                    # the training phase's own peak (a cache build the account puts below it may measure above)
                    train = sh["rss_phases"]["train"]
                    line["c"] = round((train - (m.total - m.climb)) / m.climb, 3)
                    found["all"].append(line["c"])
                    found["all trained" if d == 0 else "frozen bottom"].append(line["c"])
                print(json.dumps(line), flush=True)
    for group, cs in found.items():
        if cs:
            q1, med, q3 = statistics.quantiles(cs, n=4) if len(cs) > 1 else (cs[0],) * 3
            print(json.dumps({"group": group, "runs": len(cs), "c_median": round(med, 3), "c_q1": round(q1, 3),
                              "c_q3": round(q3, 3), "c_min": min(cs), "c_max": max(cs)}), flush=True)


if __name__ == "__main__":
    main()
