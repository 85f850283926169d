"""`harness plan`: forecast the memory, time and cost of every trial of a grid before spending it.

    account.py    the analytic account of one trial (memory parts, time per batch), plain arithmetic
    batches.py    a trial's real batches, replayed from its tokenized rows (padding, buckets, seed)
    probe.py      calibration probes: a few steps at a few small shapes, in a child process
    calibrate.py  coefficients fitted from the probes, stored per environment and reused
    planner.py    the grid's plan: rows, verdicts, largest batch, plan.json, tables
    (harness/prediction.py scores predicted vs measured for `--check` and the report; no torch)

docs/plan.md documents plan.json and the benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_run(plan: Any, run_dir: Path) -> dict[str, Any]:
    """Score `plan` against the finished records of `run_dir` (matched by trial id; largest-batch records
    against the plan's largest batch)."""
    from ..store import RunStore, StoreError
    from ..prediction import predicted_field, score

    if not (run_dir / "trials.jsonl").is_file():
        raise StoreError(f"{run_dir}: not a run folder (no trials.jsonl)")
    records = RunStore(run_dir).records()
    rows = plan.by_trial()
    pairs = []
    for rec in records:
        if rec.get("kind", "train") != "train":
            continue
        row = rows.get(rec.get("trial_id"))
        if row is None:
            continue
        pairs.append((predicted_field(row), rec))
    result = score(pairs)
    result["run_dir"] = str(run_dir)
    result["unmatched_records"] = sum(1 for r in records if r.get("kind", "train") == "train"
                                      and r.get("trial_id") not in rows)
    mb = []
    from ..search import SEARCH_SKIP

    for rec in records:
        if rec.get("kind") != "max_batch":
            continue
        point = {k: v for k, v in (rec.get("params") or {}).items() if k not in SEARCH_SKIP and k != "search"}
        for e in plan.max_batch:
            if all(point.get(k) == v for k, v in e["point"].items()):
                measured = rec.get("max_batch")
                predicted = e.get("max_batch")
                step = _step_distance(predicted, measured, rec.get("probes") or [])
                mb.append({"point": e["point"], "predicted": predicted, "measured": measured,
                           "smallest_oom_measured": rec.get("smallest_oom_batch"), "within_one_step": step,
                           "error_pct": (round(100.0 * (predicted - measured) / measured, 2)
                                         if predicted and measured else None)})
                break
    result["max_batch"] = mb
    return result


def _step_distance(predicted: int | None, measured: int | None, probes: list[dict[str, Any]]) -> bool | None:
    """Whether the predicted largest batch is within one step of the searched one: equal, or adjacent among
    the batch sizes the search tried (its steps), or within a factor of 2 when it stopped on the limit."""
    if predicted is None or measured is None:
        return None if predicted is None and measured is None else False
    if predicted == measured:
        return True
    tried = sorted({int(p["batch_size"]) for p in probes if p.get("batch_size")} | {predicted, measured})
    i, j = tried.index(predicted), tried.index(measured)
    return abs(i - j) <= 1


def print_check(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    from .planner import fmt_epoch_s, strategy_label

    t = Table(title=f"predicted vs measured: {result['run_dir']}")
    for col in ("trial", "model", "len", "batch", "frozen", "strategy", "status", "peak MiB pred/meas", "err %",
                "s/epoch pred/meas", "err %", "verdict"):
        t.add_column(col)
    for r in result["trials"]:
        if "skipped" in r:
            t.add_row(str(r["trial_id"]), "", "", "", "", "", str(r["status"]), r["skipped"], "", "", "", "")
            continue
        p = r["params"]
        me, ee = r["memory_error_pct"], r["epoch_error_pct"]
        flag = " [red]under[/red]" if r["under_predicted"] else ""
        t.add_row(str(r["trial_id"]), str(p["model"]), str(p["max_length"]), str(p["batch_size"]), str(p["frozen_layers"]),
                  strategy_label(p),
                  str(r["status"]),
                  f"{r['peak_mib_predicted']:.0f} / {r['peak_mib_measured'] or float('nan'):.0f}",
                  ("-" if me is None else f"{me:+.1f}") + flag,
                  f"{fmt_epoch_s(r['epoch_s_predicted'])} / {fmt_epoch_s(r['epoch_s_measured'])}",
                  "-" if ee is None else f"{ee:+.1f}",
                  str(r["verdict_predicted"]) + ("" if "verdict_right" not in r else (" ok" if r["verdict_right"] else " [red]wrong[/red]")))
    console.print(t)
    s = result["summary"]
    console.print(f"memory: median |error| {s['memory']['median_abs_pct']} %, p90 {s['memory']['p90_abs_pct']} % "
                  f"(n={s['memory']['n']}); under-predicted by > 5 %: {s['memory_under_predicted_gt_5pct']} of "
                  f"{s['memory_scored']}")
    console.print(f"seconds per epoch: median |error| {s['seconds_per_epoch']['median_abs_pct']} %, p90 "
                  f"{s['seconds_per_epoch']['p90_abs_pct']} % (n={s['seconds_per_epoch']['n']}); total seconds: median "
                  f"{s['seconds_total']['median_abs_pct']} %")
    at_speed = s.get("seconds_per_epoch_at_speed") or {}
    if at_speed.get("n"):
        ratios = [r["speed_ratio"] for r in result["trials"] if r.get("epoch_error_at_speed_pct") is not None]
        console.print(f"seconds per epoch at the machine's measured speed: median |error| {at_speed['median_abs_pct']} %, "
                      f"p90 {at_speed['p90_abs_pct']} % (n={at_speed['n']}); the trials ran at "
                      f"{min(ratios):.2f}-{max(ratios):.2f} x the calibration's speed")
    else:
        console.print("seconds per epoch at the machine's measured speed: not scored (the run's records or the "
                      "calibration carry no speed reading: CUDA, or made before harness measured it)")
    if s["verdicts_scored"]:
        console.print(f"fits/oom verdicts right: {s['verdicts_right']} of {s['verdicts_scored']}")
    for m in result.get("max_batch") or []:
        console.print(f"largest batch {m['point']}: predicted {m['predicted']}, searched {m['measured']} "
                      f"(within one step: {m['within_one_step']}; error {m['error_pct']} %)")
