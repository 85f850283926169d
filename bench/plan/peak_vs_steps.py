"""How a training pass's peak memory grows with its number of steps: the calibration probe's own child
(`probe.run_in_child`, a fresh process forked as a trial's is) run at one shape for several step counts, the
training phase's exact peak (VmHWM, reset as the phase starts) against the account's forecast of that shape.
Probes run 3 steps and trials hundreds: this says how far a long run's peak sits above a short one's (docs/plan.md).

    python bench/plan/peak_vs_steps.py bench/plan/heldout_minilm.toml lab 3,4,256 --steps 3 6 12 23 40 60

STRATEGY picks the grid's first trial of that strategy for its settings; SHAPE is frozen,batch,max_length
("all" or a depth). One line per step count: the phases' peaks in MiB and the padded widths of the batches.
With --plan PLAN_JSON, the account's forecast of each from that plan's calibration is printed beside it.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    from harness.config import load_grid
    from harness.grid import expand
    from harness.plan import probe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("strategy")
    ap.add_argument("shape", help="frozen,batch,max_length, e.g. 3,4,256 or all,64,64")
    ap.add_argument("--steps", type=int, nargs="+", default=[3, 6, 12, 23, 40])
    ap.add_argument("--plan", help="a plan.json of the same grid: print the account's forecast beside each")
    args = ap.parse_args()
    frozen, batch, length = args.shape.split(",")
    shape = (frozen if frozen == "all" else int(frozen), int(batch), int(length))
    cfg, _ = load_grid(args.grid)
    params = next(t.params for t in expand(cfg) if t.params["strategy"] == args.strategy)
    q = dict(params, epochs=1)
    cal = None
    if args.plan:
        cal = next(c for c in json.load(open(args.plan))["calibrations"] if c["key"]["strategy"] == args.strategy)
    for steps in args.steps:
        r = probe.run_in_child({"params": q, "shapes": [shape], "anatomy": False, "steps": steps})
        sh = r["shapes"][0]
        line = {"steps": steps, "shape": list(shape),
                "peaks_mib": {k: round(v / 2**20, 1) for k, v in sh["rss_phases"].items()},
                "widths": [w for _, w in sh["train_batches"]]}
        if cal is not None:
            from harness.plan.account import memory
            from harness.plan.calibrate import _probe_batches, depth_of, loaded, setting_of

            a, co = loaded(cal)
            co.load_bytes = 0.0  # the probe's phases leave its loading out
            d = depth_of(sh["frozen_layers"])
            m = memory(a, setting_of(q, d, bool(sh["cache_used"])), _probe_batches(q, sh, d), co)
            line["forecast_mib"] = round(m.total / 2**20, 1)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
