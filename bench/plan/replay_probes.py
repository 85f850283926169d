"""Refit a plan from the same probes: `capture` runs a grid's calibration probes once (each child's result kept
in a pickle); `score` replays them through the current fit, as measured, with the attention's rates set to 0,
and with fresh mappings priced at nothing (`--variants`), and scores each plan against finished runs of the grid. Two fits of one set of probes differ only by the
account, not by the machine's mood between two calibrations (docs/plan.md).

    python bench/plan/replay_probes.py capture bench/plan/heldout_minilm.toml /tmp/probes.pkl
    python bench/plan/replay_probes.py score bench/plan/heldout_minilm.toml /tmp/probes.pkl \\
        bench/plan/runs/v13_heldout_minilm_1 bench/plan/runs/v13_heldout_minilm_2

Prints, per variant and run: memory median / p90 / under by > 5 %, seconds per epoch median / p90, and with
--trials each trial's measured over predicted seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
from pathlib import Path


def _key(spec: dict) -> tuple:
    return (spec["params"]["strategy"], json.dumps(list(spec["shapes"][0])), bool(spec.get("anatomy")))


def main() -> None:
    import harness.plan.account as account
    import harness.plan.probe as probe
    from harness.plan import check_run
    from harness.plan.planner import plan_grid

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["capture", "score"])
    ap.add_argument("grid")
    ap.add_argument("pickle")
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--trials", action="store_true", help="each trial's measured / predicted seconds per epoch and its peak memory error")
    ap.add_argument("--variants", nargs="+", default=["measured", "no-attention-rates", "no-mapping"],
                    choices=["measured", "no-attention-rates", "no-mapping"])
    args = ap.parse_args()
    os.environ["HARNESS_CACHE"] = tempfile.mkdtemp()  # never a stored calibration: every key probes (or replays)
    if args.mode == "capture":
        saved: dict = {}
        run = probe.run_in_child

        def kept(spec: dict, timeout_s: float = 600.0) -> dict:
            saved[_key(spec)] = result = run(spec, timeout_s=timeout_s)
            return result

        probe.run_in_child = kept
        plan_grid(args.grid)
        Path(args.pickle).write_bytes(pickle.dumps(saved))
        print(f"{len(saved)} probe results kept in {args.pickle}")
        return
    saved = pickle.loads(Path(args.pickle).read_bytes())

    import copy

    no_mapping = False

    def replayed(spec: dict, timeout_s: float = 0.0) -> dict:
        k = _key(spec)
        if k not in saved:  # the anatomy was read by another key's child: a result of this shape, with one if asked
            same = [x for x in saved if x[:2] == k[:2]]
            k = next((x for x in same if saved[x].get("anatomy") is not None), same[0]) if k[2] else same[0]
        out = copy.deepcopy(saved[k])
        if no_mapping and out.get("anatomy") is not None:
            out["anatomy"]["mapping_rate"] = None
        return out

    probe.run_in_child = replayed
    measured_rate = account._rate
    for variant in args.variants:
        account._rate = (lambda a, mode: 0.0) if variant == "no-attention-rates" else measured_rate
        no_mapping = variant == "no-mapping"
        os.environ["HARNESS_CACHE"] = tempfile.mkdtemp()
        plan = plan_grid(args.grid)
        for run_dir in args.runs:
            d = check_run(plan, Path(run_dir))
            s = d["summary"]
            m, t = s["memory"], s["seconds_per_epoch"]
            print(f"{variant} | {run_dir}: memory {m['median_abs_pct']} % / {m['p90_abs_pct']} % / "
                  f"{s['memory_under_predicted_gt_5pct']} under; seconds per epoch {t['median_abs_pct']} % / {t['p90_abs_pct']} %")
            if args.trials:
                for r in d["trials"]:
                    p = r["params"]
                    if r.get("epoch_s_predicted") and r.get("epoch_s_measured"):
                        mem = r.get("memory_error_pct")
                        print(f"    {p['max_length']} x {p['batch_size']} frozen {p['frozen_layers']} {p['strategy']}: "
                              f"seconds measured / predicted {r['epoch_s_measured'] / r['epoch_s_predicted']:.2f}, "
                              f"peak memory error {'n/a' if mem is None else f'{mem:+.1f} %'}")
    account._rate = measured_rate


if __name__ == "__main__":
    main()
