"""Predicted vs measured: a plan's forecasts scored against finished trial records. Pure data, no torch; at
the level of record.py, so that the report can score a run folder's `predicted` without importing harness.plan.

Used by `harness plan --check RUN_DIR` and by the report's "Predicted vs measured" section (records of a
`harness run --plan` carry their prediction as `predicted`). Errors are relative to the measured value:
(predicted - measured) / measured; an under-prediction of memory by more than `UNDER_PCT` percent is
flagged, since that is the error that costs a crash.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

UNDER_PCT = 5.0


def predicted_field(row: dict[str, Any]) -> dict[str, Any] | None:
    """The compact prediction a record carries (`predicted`), from a plan.json row."""
    if row.get("status") != "predicted":
        return {"status": "cannot predict", "reason": row.get("reason")}
    return {
        "status": "predicted",
        "memory_metric": row["memory"]["metric"],
        "peak_mib": row["memory"]["peak_mib"],
        "cuda_peak_reserved_mib": row["memory"].get("cuda_peak_reserved_mib"),
        "seconds_per_epoch": row["seconds"]["per_epoch"],
        "train_seconds_per_epoch": row["seconds"]["train_per_epoch"],
        "eval_seconds_per_epoch": row["seconds"]["eval_per_epoch"],
        "seconds_total": row["seconds"]["total"],
        "cost_usd": row.get("cost_usd"),
        "verdict": row.get("verdict"),
        "calibration": row.get("calibration"),
        "speed_gflops": row["seconds"].get("calibration_speed_gflops"),
    }


def measured_memory(rec: dict[str, Any], metric: str) -> float | None:
    mem = rec.get("memory") or {}
    return mem.get("cuda_peak_allocated_mib" if metric == "cuda_peak_allocated" else "cpu_peak_rss_mib")


def measured_epoch_seconds(rec: dict[str, Any]) -> float | None:
    eps = [e for e in rec.get("epochs") or [] if e.get("train_seconds") is not None]
    if not eps:
        return None
    return sum(float(e["train_seconds"]) + float(e.get("eval_seconds") or 0.0) for e in eps) / len(eps)


def speed_ratio(pred: dict[str, Any], rec: dict[str, Any]) -> float | None:
    """How much faster the machine ran the trial than the calibration's probes: the trial's speed readings
    (before and after its epochs, meters/speed.py), averaged, over the calibration's. None where either
    was not measured (CUDA, records or calibrations made before the readings existed)."""
    cal = pred.get("speed_gflops")
    ms = rec.get("machine_speed") or {}
    readings = [float(x) for x in (ms.get("before_gflops"), ms.get("after_gflops")) if x]
    if not cal or not readings:
        return None
    return sum(readings) / len(readings) / float(cal)


def _err(pred: float | None, meas: float | None) -> float | None:
    if pred is None or meas is None or not meas:
        return None
    return 100.0 * (float(pred) - float(meas)) / float(meas)


def percentile(values: Iterable[float], q: float) -> float | None:
    v = sorted(values)
    if not v:
        return None
    pos = (len(v) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _params_shown(p: dict[str, Any]) -> dict[str, Any]:
    """The settings a scored trial is shown by; the adapter's only where the trial has one."""
    out = {k: p.get(k) for k in ("model", "max_length", "batch_size", "frozen_layers", "strategy", "dataset_size")}
    if isinstance(p.get("adapter"), str) and p["adapter"] != "none":  # (a report's frame has NaN for none)
        out.update(adapter=p["adapter"], lora_r=p.get("lora_r"))
    return out


def score(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """(predicted field, record) pairs -> per-trial errors and their summary."""
    rows = []
    for pred, rec in pairs:
        if not pred or pred.get("status") != "predicted":
            rows.append({"trial_id": rec.get("trial_id"), "status": rec.get("status"), "skipped":
                         (pred or {}).get("reason") or "no prediction"})
            continue
        metric = pred["memory_metric"]
        mem_meas = measured_memory(rec, metric)
        ep_meas = measured_epoch_seconds(rec)
        status = rec.get("status")
        mem_err = _err(pred["peak_mib"], mem_meas) if status == "ok" else None
        ratio = speed_ratio(pred, rec)
        row = {
            "trial_id": rec.get("trial_id"), "status": status,
            "params": _params_shown(rec.get("params") or {}),
            "memory_metric": metric,
            "peak_mib_predicted": pred["peak_mib"], "peak_mib_measured": mem_meas, "memory_error_pct": mem_err,
            "epoch_s_predicted": pred["seconds_per_epoch"], "epoch_s_measured": ep_meas,
            "epoch_error_pct": _err(pred["seconds_per_epoch"], ep_meas) if status == "ok" else None,
            # the same with the prediction scaled to the machine's speed during the trial: the model's own error
            "speed_ratio": _r(ratio),
            "epoch_error_at_speed_pct": (_err(pred["seconds_per_epoch"] / ratio, ep_meas)
                                         if status == "ok" and ratio else None),
            "total_s_predicted": pred["seconds_total"], "total_s_measured": rec.get("seconds_total"),
            "total_error_pct": _err(pred["seconds_total"], rec.get("seconds_total")) if status == "ok" else None,
            "verdict_predicted": pred.get("verdict"),
            "under_predicted": bool(mem_err is not None and mem_err < -UNDER_PCT),
        }
        if pred.get("verdict") in ("fits", "oom") and status in ("ok", "oom"):
            row["verdict_right"] = (pred["verdict"] == "oom") == (status == "oom")
        rows.append(row)
    return {"trials": rows, "summary": summarise(rows)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(key: str) -> dict[str, Any]:
        vals = [abs(r[key]) for r in rows if r.get(key) is not None]
        return {"n": len(vals), "median_abs_pct": _r(percentile(vals, 0.5)), "p90_abs_pct": _r(percentile(vals, 0.9)),
                "max_abs_pct": _r(max(vals) if vals else None)}

    mem = [r for r in rows if r.get("memory_error_pct") is not None]
    verdicts = [r["verdict_right"] for r in rows if "verdict_right" in r]
    return {
        "memory": stats("memory_error_pct"),
        "seconds_per_epoch": stats("epoch_error_pct"),
        "seconds_per_epoch_at_speed": stats("epoch_error_at_speed_pct"),
        "seconds_total": stats("total_error_pct"),
        "memory_under_predicted_gt_5pct": sum(1 for r in mem if r["under_predicted"]),
        "memory_scored": len(mem),
        "verdicts_right": sum(verdicts), "verdicts_scored": len(verdicts),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)
