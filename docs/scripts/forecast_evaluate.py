"""Score the forecasts of docs/scripts/forecast_bench.py against the runs held out from them (docs/forecast.md).

    python docs/scripts/forecast_evaluate.py OUT

Data: for each data set and frozen depth, the learning curve is fitted on OUT/runs/<set>-fit only and predicts
the sizes of OUT/runs/<set>-held; each (size, setting, set) is one case: the predicted accuracy and its 80 %
interval (for the mean of as many seeds as were measured there) against the measured mean.
Epochs: every configuration of OUT/runs/*-epochs and OUT/runs/imdb-lab-20: fitted on epochs 1-10 of its
trials, predicting epoch 20, against the measured mean at epoch 20; and a backtest, fitted on epochs 1-5,
for the gain from 5 to 10.
Prints Markdown tables and the summary lines (mean absolute error, interval coverage).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness import results
from harness.report import forecast as fc
from harness.report.analysis import parse_epochs


def _load(run: Path) -> pd.DataFrame | None:
    if not (run / "trials.jsonl").exists():
        return None
    df = results.load(run)
    return df[df["status"] == "ok"]


def data_cases(out: Path, fit_suffix: str = "-fit") -> list[dict]:
    """`-fit` runs validate on 20 % of their rows, so their x is `dataset_size` as the held-out runs' is.
    `-fitfixed` runs ([data] val_rows) train on all their `dataset_size` rows: their curve is in training rows,
    so it predicts at each held-out size's training rows (80 % of it), with that run's validation noise."""
    cases = []
    fixed = fit_suffix == "-fitfixed"
    for fit_run in sorted((out / "runs").glob(f"*{fit_suffix}")):
        held_run = fit_run.with_name(fit_run.name.replace(fit_suffix, "-held"))
        fit_df, held_df = _load(fit_run), _load(held_run)
        if fit_df is None or not len(fit_df):
            continue
        for depth, g in fit_df.groupby(fit_df["frozen_layers"].astype(str)):
            held = held_df[held_df["frozen_layers"].astype(str) == depth] if held_df is not None else pd.DataFrame()
            sizes = sorted(held["dataset_size"].unique()) if len(held) else []
            n_seeds = max([len(held[held["dataset_size"] == s]) for s in sizes] or [1])
            fit = fc.fit_data_curve(g, [] if fixed else sizes, repeats=n_seeds)
            for s in sizes:
                at = held[held["dataset_size"] == s]
                measured = at["val_accuracy"]
                if fixed:
                    preds = fit.predict([float(at["n_train"].median())], repeats=len(at),
                                        val_rows=float(at["n_val"].median())) if fit.status == "fitted" else []
                    p = preds[0] if preds else None
                else:
                    p = next((q for q in fit.predictions if q.x == float(s)), None)
                cases.append({"set": fit_run.name.removesuffix(fit_suffix), "frozen": depth, "rows": int(s),
                              "fit sizes": ", ".join(f"{x:.0f}" for x in fit.x_sizes), "seeds": len(measured),
                              "measured": measured.mean(), "predicted": p.accuracy if p else None,
                              "lo": p.lo if p else None, "hi": p.hi if p else None, "status": fit.status})
    return cases


def _epoch_runs(out: Path, min_epochs: int):
    """(run, one configuration's trials, their per-epoch logs) for every configuration of the 20-epoch runs
    whose every trial ran at least `min_epochs` epochs."""
    for run in sorted((out / "runs").glob("*-epochs")) + sorted((out / "runs").glob("imdb-lab-20")):
        df = _load(run)
        if df is None or not len(df):
            continue
        for _, g in df.groupby("config_key"):
            logs = [parse_epochs(v) for v in g["epoch_log"]]
            if min(len(log) for log in logs) >= min_epochs:
                yield run, g, logs


def _mean_at(logs: list, epoch: int) -> float:
    return float(np.mean([log[epoch - 1]["val_accuracy"] for log in logs]))


def _gain_text(gain: tuple[float, float, float] | None) -> str | None:
    return f"{gain[0] * 100:+.1f} [{gain[1] * 100:+.1f}, {gain[2] * 100:+.1f}]" if gain else None


def epoch_cases(out: Path) -> list[dict]:
    cases = []
    for run, g, logs in _epoch_runs(out, 20):
        f = fc.fit_epoch_curve(logs, g["n_val"].tolist(), up_to=10)
        measured, at10 = _mean_at(logs, 20), _mean_at(logs, 10)
        p = f.at_double
        cases.append({"run": run.name, "frozen": str(g["frozen_layers"].iloc[0]), "seeds": len(logs),
                      "at 10": at10, "predicted 20": p.accuracy if p else None, "lo": p.lo if p else None,
                      "hi": p.hi if p else None, "measured 20": measured, "verdict": f.verdict,
                      "gain 10->20 predicted [80 %]": _gain_text(f.gain),
                      "gain measured": f"{(measured - at10) * 100:+.1f}"})
    return cases


def backtest_cases(out: Path) -> list[dict]:
    """The same epoch forecasts made from epochs 1-5, for the gain from 5 to 10: does the method over- or
    under-promise on runs where both are known?"""
    cases = []
    for run, g, logs in _epoch_runs(out, 10):
        f = fc.fit_epoch_curve(logs, g["n_val"].tolist(), up_to=5)
        cases.append({"run": run.name, "frozen": str(g["frozen_layers"].iloc[0]), "seeds": len(logs),
                      "gain 5->10 predicted [80 %]": _gain_text(f.gain),
                      "gain measured": f"{(_mean_at(logs, 10) - _mean_at(logs, 5)) * 100:+.1f}",
                      "verdict at 5": f.verdict})
    return cases


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no cases)"
    cols = list(rows[0])
    fmt = lambda v: f"{v * 100:.1f} %" if isinstance(v, float) and v <= 1.0 else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) if r[c] is not None else "—" for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _summary(rows: list[dict], pred: str, meas: str) -> str:
    done = [r for r in rows if r[pred] is not None]
    if not done:
        return "no case with a forecast"
    err = [abs(r[pred] - r[meas]) for r in done]
    inside = sum(1 for r in done if r["lo"] <= r[meas] <= r["hi"])
    return (f"{len(done)} cases: mean absolute error {np.mean(err) * 100:.2f} points (max {max(err) * 100:.2f}); "
            f"80 % intervals contain the measured mean in {inside} of {len(done)} ({inside / len(done):.0%})")


def evaluate(out: Path) -> None:
    d, e = data_cases(out), epoch_cases(out)
    print("## Data: fitted on the -fit runs, measured on the -held runs\n")
    print(_table(d) + "\n\n" + _summary(d, "predicted", "measured") + "\n")
    fixed = data_cases(out, "-fitfixed")
    if fixed:
        print("## Data: fitted on the -fitfixed runs (1,000 fixed validation rows), measured on the -held runs\n")
        print(_table(fixed) + "\n\n" + _summary(fixed, "predicted", "measured") + "\n")
    print("## Epochs: fitted on epochs 1-10, measured at epoch 20\n")
    print(_table(e) + "\n\n" + _summary(e, "predicted 20", "measured 20") + "\n")
    print("## Backtest: fitted on epochs 1-5, the gain from 5 to 10\n")
    print(_table(backtest_cases(out)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    evaluate(Path(sys.argv[1]))
