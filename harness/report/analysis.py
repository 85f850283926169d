"""The numbers behind the report, apart from any rendering: configurations and their spread across repeats,
Pareto frontiers, the time-per-epoch vs dataset-size fit and its extrapolation, memory grids, learning curves,
the frozen-depth trade-off, `lab` vs `fast`, and the recommendation.

Everything works on the frame of `harness.results.load`, so a report can also be rebuilt from its own
`trials.csv` / `trials.parquet`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.results import SEED_KEYS, param_columns
from harness.report import fmt
from harness.report import forecast as fc

FROZEN = "frozen_layers"
BATCH = "batch_size"
SIZE = "dataset_size"
STRATEGY = "strategy"
EPOCHS = "epochs"
SEARCH = "search"

# The settings a strategy ("lab" / "fast") fills in (harness.config.STRATEGIES).
STRATEGY_SWITCHES = frozenset({
    "padding", "precision", "cache_frozen", "length_buckets", "frozen_dropout", "fused_optimizer", "compile",
    "attention",
})

# Settings that never tell two configurations apart.
NON_CONFIG = frozenset(SEED_KEYS) | {SEARCH}

SHORT_NAMES = {
    "batch_size": "batch",
    "frozen_layers": "frozen",
    "dataset_size": "rows",
    "learning_rate": "lr",
    "head_learning_rate": "head lr",
    "max_length": "len",
    "strategy": "strategy",
}

METRICS = [
    "val_accuracy",
    "best_val_accuracy",
    "seconds_per_epoch",
    "seconds_total",
    "cost_usd",
    "cpu_peak_rss_mib",
    "gpu_peak_used_mib",
    "cuda_peak_allocated_mib",
    "energy_cpu_j",
    "energy_gpu_j",
    "samples_per_s",
    "trainable_params",
    "n_epochs_done",
]

DEFAULT_TARGET_ACCURACY = 0.8
DEFAULT_EXTRAPOLATE_ROWS = 56000


# -- small helpers --------------------------------------------------------------------------------------------
def order_key(v: Any) -> tuple:
    """Sort order for setting values: numbers by size, 'none' as 0, 'all' after every number, text last."""
    if fmt.is_missing(v):
        return (3, 0.0, "")
    if isinstance(v, bool):
        return (0, float(v), "")
    f = fmt.num(v)
    if f is not None:
        return (0, f, "")
    text = str(v).strip().lower()
    try:
        return (0, float(text), "")
    except ValueError:
        pass
    if text == "none":
        return (0, 0.0, "")
    if text == "all":
        return (1, 0.0, "")
    return (2, 0.0, text)


def short_name(col: str) -> str:
    return SHORT_NAMES.get(col, col)


def label(row: Any, cols: list[str]) -> str:
    parts = [f"{short_name(c)}={fmt.value(row[c])}" for c in cols if c in row]
    return ", ".join(parts) if parts else "all trials"


def is_search(df: pd.DataFrame) -> pd.Series:
    """Records of the largest-batch search (`params.search`, or `kind == "probe"`): listed, not analysed."""
    mask = pd.Series(False, index=df.index)
    if SEARCH in df.columns:
        mask |= df[SEARCH].notna()
    if "kind" in df.columns:
        mask |= df["kind"].astype(object).map(lambda v: isinstance(v, str) and v == "probe")
    return mask


# A configuration's validation accuracy with its 95 % interval (harness.report.forecast.accuracy_interval).
INTERVAL_COLUMNS = ("val_accuracy_mean", "val_accuracy_lo", "val_accuracy_hi", "val_accuracy_se",
                    "val_accuracy_method", "n_val", "within_noise_of")

# Columns `group_configs` adds next to the settings.
GROUP_COLUMNS = frozenset({"label", "n_trials", "n_ok", "statuses", "run_names"}) | frozenset(INTERVAL_COLUMNS) | frozenset(
    m + sfx for m in METRICS for sfx in ("_min", "_max", "_std", "_n")
)


def setting_columns(df: pd.DataFrame) -> list[str]:
    """The settings among a frame's columns: trials or configurations, less helper columns (`_x`)."""
    return [c for c in param_columns(df) if c not in GROUP_COLUMNS and not c.startswith("_")]


def config_columns(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    return [c for c in setting_columns(df) if c not in NON_CONFIG and c not in exclude]


def varying_params(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """Settings that take more than one value across `df` (the ones worth naming in a label)."""
    out = []
    for c in config_columns(df, exclude):
        if df[c].map(fmt.value).nunique() > 1:
            out.append(c)
    return out


LABEL_PRIORITY = [SIZE, BATCH, FROZEN, STRATEGY, "device", "model", "max_length", EPOCHS, "optimizer", "learning_rate"]


def label_columns(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """The varying settings worth naming: each one kept only where it tells apart configurations that the ones
    before it do not (`eval_batch_size` follows `batch_size`, a strategy's switches follow `strategy`)."""
    cand = varying_params(df, exclude)
    cand.sort(key=lambda c: LABEL_PRIORITY.index(c) if c in LABEL_PRIORITY else len(LABEL_PRIORITY))
    text = {c: df[c].map(fmt.value) for c in cand}
    chosen: list[str] = []
    combos = 1
    for c in cand:
        n = len(set(zip(*(text[k] for k in chosen + [c]))))
        if n > combos:
            chosen.append(c)
            combos = n
    return chosen


def determined_by(df: pd.DataFrame, by: str) -> list[str]:
    """Settings whose value follows from `by` alone (a strategy's switches)."""
    if by not in df.columns or not len(df):
        return []
    key = df[by].map(fmt.value)
    out = []
    for c in config_columns(df, exclude=(by,)):
        vals = df[c].map(fmt.value)
        if vals.nunique() > 1 and vals.groupby(key).nunique().max() <= 1:
            out.append(c)
    return out


def _group_id(row: Any, cols: list[str]) -> str:
    return json.dumps([fmt.value(row[c]) for c in cols])


def _median(s: Any) -> float | None:
    s = pd.to_numeric(pd.Series(s, dtype=object), errors="coerce").dropna()
    return float(s.median()) if len(s) else None


# -- configurations -------------------------------------------------------------------------------------------
def group_configs(trials: pd.DataFrame, varying: list[str]) -> pd.DataFrame:
    """One row per configuration (every setting but the seeds): counts by status, and the median, min, max and
    standard deviation of each metric over its `ok` repeats."""
    pcols = param_columns(trials)
    rows = []
    for key, g in trials.groupby("config_key", sort=False):
        ok = g[g["status"] == "ok"]
        first = g.iloc[0]
        statuses = Counter(g["status"].astype(str))
        row: dict[str, Any] = {
            "config_key": key,
            "label": label(first, varying),
            "n_trials": len(g),
            "n_ok": int(statuses.get("ok", 0)),
            "statuses": ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
            "device_name": next((d for d in g["device_name"] if not fmt.is_missing(d)), None)
            if "device_name" in g.columns
            else None,
            "run_names": ", ".join(sorted({str(r) for r in g["run_name"] if not fmt.is_missing(r)})),
        }
        for c in pcols:
            row[c] = first[c]
        for m in METRICS:
            vals = pd.to_numeric(ok[m], errors="coerce").dropna() if m in ok.columns else pd.Series(dtype=float)
            row[m] = float(vals.median()) if len(vals) else float("nan")
            row[m + "_min"] = float(vals.min()) if len(vals) else float("nan")
            row[m + "_max"] = float(vals.max()) if len(vals) else float("nan")
            row[m + "_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            row[m + "_n"] = int(len(vals))
        row.update(interval_columns(ok))
        rows.append(row)
    out = pd.DataFrame(rows)
    if len(out) and varying:
        keys = out.apply(lambda r: tuple(order_key(r[c]) for c in varying), axis=1)
        out = out.iloc[sorted(range(len(out)), key=lambda i: keys.iloc[i])].reset_index(drop=True)
    return out


def interval_columns(ok: pd.DataFrame) -> dict[str, Any]:
    """The 95 % interval of the `ok` trials' last-epoch validation accuracy: Wilson on the validation rows,
    widened to the t interval of the repeats where their spread is larger (NaN where nothing is known)."""
    empty = {c: float("nan") for c in INTERVAL_COLUMNS}
    empty.update(val_accuracy_method=None, within_noise_of=None)
    if not len(ok) or "val_accuracy" not in ok.columns:
        return empty
    accs = pd.to_numeric(ok["val_accuracy"], errors="coerce")
    n_val = pd.to_numeric(ok["n_val"], errors="coerce") if "n_val" in ok.columns else pd.Series(np.nan, index=ok.index)
    keep = accs.notna()
    iv = fc.accuracy_interval(accs[keep].tolist(), [None if math.isnan(v) else v for v in n_val[keep]])
    if iv is None:
        return empty
    return {"val_accuracy_mean": iv.mean, "val_accuracy_lo": iv.lo, "val_accuracy_hi": iv.hi,
            "val_accuracy_se": iv.se, "val_accuracy_method": iv.method,
            "n_val": iv.n_val if iv.n_val is not None else float("nan"), "within_noise_of": None}


def trial_interval(acc: Any, n_val: Any) -> tuple[float, float] | None:
    """One trial's 95 % Wilson interval, or None where its validation rows are unknown."""
    a, n = fmt.num(acc), fmt.num(n_val)
    if a is None or not n:
        return None
    return fc.wilson(a * n, n)


def accuracy_text(row: Any, col: str = "val_accuracy") -> str:
    """"81.0 % [77.1, 84.4]": the accuracy shown (median of repeats) and its 95 % interval where known."""
    text = fmt.pct(row.get(col) if hasattr(row, "get") else row[col])
    lo, hi = fmt.num(row.get("val_accuracy_lo")), fmt.num(row.get("val_accuracy_hi"))
    if lo is not None and hi is not None:
        text += f" [{lo * 100:.1f}, {hi * 100:.1f}]"
    return text


def _se(row: Any) -> float:
    se = fmt.num(row.get("val_accuracy_se"))
    return 0.0 if se is None else se


def tied(a: Any, b: Any) -> bool:
    """Are two configurations' accuracies within noise of each other (|difference| < 1.96 standard errors of
    the difference)? Unknown noise (no validation rows, one repeat) is no tie unless they are equal."""
    x, y = fmt.num(a.get("val_accuracy")), fmt.num(b.get("val_accuracy"))
    if x is None or y is None:
        return False
    se = math.sqrt(_se(a) ** 2 + _se(b) ** 2)
    return abs(x - y) <= (fc.Z95 * se if se > 0 else 0.0)


# -- Pareto frontier ------------------------------------------------------------------------------------------
def pareto_frontier(groups: pd.DataFrame, x: str, y: str = "val_accuracy") -> pd.DataFrame:
    """Configurations not beaten on both axes: nothing else is at least as accurate for less `x`. Each step
    up the frontier is checked against noise: `within_noise_of` names the cheaper frontier configuration a
    step is statistically tied with (its extra accuracy is not shown to be real), else None."""
    if not len(groups) or x not in groups.columns or y not in groups.columns:
        return groups.iloc[0:0]
    d = groups[groups[x].notna() & groups[y].notna()]
    d = d.sort_values([x, y], ascending=[True, False], kind="mergesort")
    keep = []
    best = -math.inf
    for idx, r in d.iterrows():
        if r[y] > best:
            keep.append(idx)
            best = r[y]
    out = d.loc[keep].copy()
    anchor = None  # the last step that was a real gain
    ties: list[Any] = []
    for _, r in out.iterrows():
        if anchor is not None and tied(r, anchor):
            ties.append(str(anchor["label"]))
        else:
            ties.append(None)
            anchor = r
    out["within_noise_of"] = ties
    return out


# -- recommendation -------------------------------------------------------------------------------------------
@dataclass
class Pick:
    config_key: str
    label: str
    params: dict[str, Any]
    val_accuracy: float | None
    seconds_total: float | None
    seconds_per_epoch: float | None
    cost_usd: float | None
    n_ok: int
    val_accuracy_lo: float | None = None  # 95 % interval (forecast.accuracy_interval)
    val_accuracy_hi: float | None = None
    tied: list[str] = field(default_factory=list)  # labels of the configurations within noise of this one

    @classmethod
    def from_group(cls, row: Any, pcols: list[str]) -> "Pick":
        return cls(
            config_key=str(row["config_key"]),
            label=str(row["label"]),
            params={c: row[c] for c in pcols if not fmt.is_missing(row[c])},
            val_accuracy=fmt.num(row["val_accuracy"]),
            seconds_total=fmt.num(row["seconds_total"]),
            seconds_per_epoch=fmt.num(row["seconds_per_epoch"]),
            cost_usd=fmt.num(row["cost_usd"]),
            n_ok=int(row["n_ok"]),
            val_accuracy_lo=fmt.num(row.get("val_accuracy_lo")),
            val_accuracy_hi=fmt.num(row.get("val_accuracy_hi")),
        )

    def accuracy_text(self) -> str:
        text = fmt.pct(self.val_accuracy)
        if self.val_accuracy_lo is not None and self.val_accuracy_hi is not None:
            text += f" [{self.val_accuracy_lo * 100:.1f}, {self.val_accuracy_hi * 100:.1f}]"
        return text

    def describe(self) -> str:
        bits = [f"val accuracy {self.accuracy_text()}"]
        if self.cost_usd is not None:
            bits.append(f"cost {fmt.usd(self.cost_usd)}")
        if self.seconds_total is not None:
            bits.append(f"total {fmt.seconds(self.seconds_total)}")
        if self.seconds_per_epoch is not None:
            bits.append(f"{fmt.seconds(self.seconds_per_epoch)} per epoch")
        if self.n_ok > 1:
            bits.append(f"median of {self.n_ok} repeats")
        return f"{self.label} ({'; '.join(bits)})"


@dataclass
class Recommendation:
    target_accuracy: float
    cheapest: Pick | None = None  # cheapest configuration reaching the target
    cheapest_by: str = "cost"  # "cost", or "time" where no trial has a cost
    fastest: Pick | None = None  # fastest reaching the target (fastest overall where none does)
    most_accurate: Pick | None = None
    reached: bool = False
    notes: list[str] = field(default_factory=list)

    def entries(self) -> list[tuple[str, str]]:
        """(lead, text) pairs: the three picks, a pick that repeats an earlier one said once."""
        t = fmt.pct(self.target_accuracy)
        out: list[tuple[str, str]] = []
        seen: dict[str, str] = {}

        def add(lead: str, pick: Pick) -> None:
            if pick.config_key in seen:
                out.append((lead, f"the same configuration ({pick.label})"))
            else:
                seen[pick.config_key] = lead
                out.append((lead, pick.describe()))

        if self.cheapest is not None:
            add(f"Cheapest reaching {t}" if self.cheapest_by == "cost"
                else f"Quickest reaching {t} (no costs recorded)", self.cheapest)
        elif self.most_accurate is not None:
            out.append(("Target", f"no configuration reached {t}"))
        if self.fastest is not None:
            add(f"Fastest reaching {t}" if self.reached else "Fastest overall", self.fastest)
        if self.most_accurate is not None:
            m = self.most_accurate
            if m.tied:
                lead = f"Most accurate: no winner, {len(m.tied) + 1} configurations are within noise of the best; the cheapest of them"
                out.append((lead, m.describe() if m.config_key not in seen else f"the same configuration ({m.label})"))
                seen.setdefault(m.config_key, lead)
            else:
                add("Most accurate", m)
        return out

    def lines(self) -> list[str]:
        return [f"{lead}: {text}" for lead, text in self.entries()] + list(self.notes)


def recommend(groups: pd.DataFrame, target_accuracy: float) -> Recommendation:
    rec = Recommendation(target_accuracy=target_accuracy)
    if not len(groups):
        rec.notes.append("No trial finished, so there is nothing to recommend.")
        return rec
    pcols = setting_columns(groups)
    done = groups[(groups["n_ok"] > 0) & groups["val_accuracy"].notna()]
    if not len(done):
        rec.notes.append("No trial finished with a validation accuracy, so there is nothing to recommend.")
        return rec
    reaching = done[done["val_accuracy"] >= target_accuracy]
    rec.reached = bool(len(reaching))
    if len(reaching):
        costed = reaching[reaching["cost_usd"].notna()]
        if len(costed):
            best = costed.sort_values(["cost_usd", "val_accuracy"], ascending=[True, False], kind="mergesort").iloc[0]
            rec.cheapest_by = "cost"
        else:
            timed = reaching[reaching["seconds_total"].notna()]
            best = (timed if len(timed) else reaching).sort_values(
                ["seconds_total", "val_accuracy"], ascending=[True, False], kind="mergesort"
            ).iloc[0]
            rec.cheapest_by = "time"
            rec.notes.append("No trial recorded a cost, so the cheapest pick is the one with the shortest total time.")
        rec.cheapest = Pick.from_group(best, pcols)
    pool = reaching if len(reaching) else done
    timed = pool[pool["seconds_total"].notna()]
    if len(timed):
        best = timed.sort_values(["seconds_total", "val_accuracy"], ascending=[True, False], kind="mergesort").iloc[0]
        rec.fastest = Pick.from_group(best, pcols)
    acc = done.assign(_c=done["cost_usd"].fillna(math.inf), _t=done["seconds_total"].fillna(math.inf))
    best = acc.sort_values(["val_accuracy", "_c", "_t"], ascending=[False, True, True], kind="mergesort").iloc[0]
    # No winner among ties: every configuration within noise of the best is as good as far as we know, so the
    # cheapest of them (then the quickest) is the pick, and the others are named as tied.
    tie = acc[acc.apply(lambda r: tied(r, best), axis=1)]
    pick = tie.sort_values(["_c", "_t", "val_accuracy"], ascending=[True, True, False], kind="mergesort").iloc[0]
    rec.most_accurate = Pick.from_group(pick, pcols)
    rec.most_accurate.tied = [str(r["label"]) for _, r in tie.iterrows() if r["config_key"] != pick["config_key"]]
    if rec.most_accurate.tied:
        rec.notes.append(
            f"No configuration is measurably the most accurate: {', '.join(rec.most_accurate.tied)} "
            f"{'is' if len(rec.most_accurate.tied) == 1 else 'are'} within noise (95 %) of "
            f"{rec.most_accurate.label}; the cheapest of them is named.")
    for p in (rec.cheapest, rec.fastest):
        if (p is not None and rec.reached and p.val_accuracy_lo is not None and p.val_accuracy_lo < target_accuracy
                and (p.val_accuracy or 0) >= target_accuracy):
            rec.notes.append(
                f"{p.label} reaches {fmt.pct(target_accuracy)} only within noise: its 95 % interval "
                f"[{p.val_accuracy_lo * 100:.1f}, {(p.val_accuracy_hi or 0) * 100:.1f}] includes accuracies below the "
                f"target (more validation rows or repeats would tell).")
            break
    return rec


# -- time per epoch vs dataset size ---------------------------------------------------------------------------
@dataclass
class SizeFit:
    label: str
    x: list[float]  # rows (dataset_size, else n_train)
    y: list[float]  # seconds per epoch
    slope: float  # seconds per row
    intercept: float  # seconds
    r2: float | None
    n_points: int
    n_sizes: int
    extrapolate_rows: int
    predicted_s_per_epoch: float | None
    epochs: float | None
    overhead_s: float | None  # fixed: start-up, loading; the same at every size
    once_s: float | None  # one-off phases that grow with the rows (tokenising, the frozen-layer cache), predicted
    predicted_total_s: float | None
    cost_per_s: float | None
    predicted_cost_usd: float | None
    device: str | None
    config_keys: list[str] = field(default_factory=list)  # the configurations (one per size) behind the fit

    def sentence(self, with_label: bool = True) -> str:
        """"<label>: the full set (56,000 rows) would take X h and cost $Y on <device> (...)"."""
        rows = f"{self.extrapolate_rows:,} rows"
        head = f"{self.label}: the" if with_label else "The"
        if self.predicted_total_s is None:
            return (
                f"{self.label + ': t' if with_label else 'T'}ime per epoch does not grow with dataset size over the sizes measured, "
                f"so there is no extrapolation to {rows}."
            )
        where = f" on {self.device}" if self.device else " on this device"
        cost = (
            f" and cost {fmt.usd(self.predicted_cost_usd)}"
            if self.predicted_cost_usd is not None
            else " (cost unknown: no price recorded)"
        )
        ep = f"{fmt.value(self.epochs)} epochs of " if self.epochs else ""
        once = (f", plus {fmt.seconds(self.once_s)} once: tokenising, and the frozen-layer cache where there is one"
                if self.once_s is not None and self.once_s >= 1.0 else "")
        return (
            f"{head} full set ({rows}) would take {fmt.hours(self.predicted_total_s)}{cost}{where} "
            f"({ep}{fmt.seconds(self.predicted_s_per_epoch)} each{once}; {self.fit_quality()})."
        )

    def fit_quality(self) -> str:
        # Two sizes always give R² = 1: a line through two points says nothing about how straight time is.
        if self.n_sizes < 3 or self.r2 is None:
            return f"a line through {self.n_sizes} sizes, its fit unchecked: measure 3 or more to check it"
        return f"R² {self.r2:.3f} over {self.n_sizes} sizes"


def _size_x(df: pd.DataFrame) -> pd.Series:
    x = pd.to_numeric(df[SIZE], errors="coerce") if SIZE in df.columns else pd.Series(np.nan, index=df.index)
    if "n_train" in df.columns:
        x = x.fillna(pd.to_numeric(df["n_train"], errors="coerce"))
    return x


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float | None]:
    slope, intercept = np.polyfit(x, y, 1)
    pred = slope * x + intercept
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - pred) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else None
    return float(slope), float(intercept), r2


def size_fits(trials: pd.DataFrame, extrapolate_rows: int) -> list[SizeFit]:
    """A straight line of seconds per epoch against rows for each configuration measured at two sizes or more;
    trials that stopped early (OOM, timeout) still count for the epochs they finished."""
    if not len(trials):
        return []
    d = trials.assign(_x=_size_x(trials), _y=pd.to_numeric(trials["seconds_per_epoch"], errors="coerce"))
    d = d[d["_x"].notna() & d["_y"].notna() & (d["_x"] > 0)]
    if not len(d):
        return []
    cols = config_columns(d, exclude=(SIZE,))
    label_cols = label_columns(d, exclude=(SIZE,))
    d = d.assign(_g=d.apply(lambda r: _group_id(r, cols), axis=1))
    fits = []
    for _, g in d.groupby("_g", sort=False):
        if g["_x"].nunique() < 2:
            continue
        x = g["_x"].to_numpy(float)
        y = g["_y"].to_numpy(float)
        slope, intercept, r2 = fit_line(x, y)
        n = float(extrapolate_rows)
        pred = slope * n + intercept if slope > 0 else None
        epochs = _median(g[EPOCHS]) if EPOCHS in g.columns else None
        if epochs is None:
            epochs = _median(g["n_epochs_done"])
        ok = g[g["status"] == "ok"]
        src = ok if len(ok) else g
        epoch_sum = src["epoch_log"].map(_epoch_seconds_sum)
        once = src["phases"].map(_once_seconds) if "phases" in src.columns else pd.Series(0.0, index=src.index)
        overhead = _median(pd.to_numeric(src["seconds_total"], errors="coerce") - epoch_sum - once)
        overhead = max(overhead, 0.0) if overhead is not None else 0.0
        once_pred = None
        if float(once.max() or 0.0) > 0 and src["_x"].nunique() >= 2:
            o_slope, o_intercept, _ = fit_line(src["_x"].to_numpy(float), once.to_numpy(float))
            once_pred = max(o_slope * n + o_intercept, 0.0)
        cps = _median(pd.to_numeric(g["cost_usd"], errors="coerce") / pd.to_numeric(g["seconds_total"], errors="coerce"))
        total = pred * (epochs or 1) + overhead + (once_pred or 0.0) if pred is not None else None
        device = next((v for v in g["device_name"] if not fmt.is_missing(v)), None)
        if device is None and "device" in g.columns:
            device = next((fmt.value(v) for v in g["device"] if not fmt.is_missing(v)), None)
        fits.append(
            SizeFit(
                label=label(g.iloc[0], label_cols) if label_cols else "all trials",
                x=x.tolist(),
                y=y.tolist(),
                slope=slope,
                intercept=intercept,
                r2=r2,
                n_points=len(g),
                n_sizes=int(g["_x"].nunique()),
                extrapolate_rows=int(extrapolate_rows),
                predicted_s_per_epoch=pred,
                epochs=epochs,
                overhead_s=overhead,
                once_s=once_pred,
                predicted_total_s=total,
                cost_per_s=cps,
                predicted_cost_usd=total * cps if (total is not None and cps is not None) else None,
                device=device,
                config_keys=sorted({str(k) for k in g["config_key"]}),
            )
        )
    return fits


ONCE_PHASES = ("tokenize", "cache")  # run once per trial, but over every row: they grow with the data set


def _once_seconds(phases: Any) -> float:
    if isinstance(phases, str):
        try:
            phases = json.loads(phases)
        except ValueError:
            return 0.0
    if not isinstance(phases, dict):
        return 0.0
    return float(sum(fmt.num(phases.get(k)) or 0.0 for k in ONCE_PHASES))


def _epoch_seconds_sum(log: Any) -> float:
    total = 0.0
    for e in parse_epochs(log):
        total += fmt.num(e.get("seconds")) or 0.0
    return total


def parse_epochs(log: Any) -> list[dict[str, Any]]:
    if isinstance(log, list):
        return [e for e in log if isinstance(e, dict)]
    if not isinstance(log, str) or not log:
        return []
    try:
        data = json.loads(log)
    except json.JSONDecodeError:
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


# -- memory ---------------------------------------------------------------------------------------------------
MEMORY_METRICS = [
    ("gpu_peak_used_mib", "GPU peak used (NVML)"),
    ("cuda_peak_allocated_mib", "CUDA peak allocated"),
    ("cpu_peak_rss_mib", "CPU peak RSS"),
]


def memory_metrics(trials: pd.DataFrame) -> list[tuple[str, str]]:
    """The GPU measure (device-level where there is one) and the CPU one, each only where something was measured."""
    out = []
    for col, title in MEMORY_METRICS:
        if col in trials.columns and trials[col].notna().any():
            if col == "cuda_peak_allocated_mib" and out and out[0][0] == "gpu_peak_used_mib":
                continue
            out.append((col, title))
    return out


@dataclass
class MemoryGrid:
    metric: str
    title: str
    depths: list[Any]  # row values (frozen depth), display order
    batches: list[Any]  # column values (batch size), display order
    peak: list[list[float | None]]  # largest peak among trials that did not run out of memory
    oom: list[list[int]]  # trials that ran out of memory in the cell
    runs: list[list[int]]  # trials in the cell


def memory_grid(trials: pd.DataFrame, metric: str, title: str) -> MemoryGrid | None:
    if BATCH not in trials.columns:
        return None
    d = trials[trials[BATCH].notna()]
    if not len(d):
        return None
    depth_col = d[FROZEN] if FROZEN in d.columns else pd.Series("—", index=d.index)
    depths = sorted({v for v in depth_col.map(fmt.value)}, key=lambda s: order_key(s))
    batches = sorted({v for v in d[BATCH].map(fmt.value)}, key=lambda s: order_key(s))
    peak = [[None for _ in batches] for _ in depths]
    oom = [[0 for _ in batches] for _ in depths]
    runs = [[0 for _ in batches] for _ in depths]
    for idx, r in d.iterrows():
        i = depths.index(fmt.value(depth_col[idx]))
        j = batches.index(fmt.value(r[BATCH]))
        runs[i][j] += 1
        if r["status"] == "oom":
            oom[i][j] += 1
            continue
        v = fmt.num(r.get(metric))
        if v is not None:
            peak[i][j] = v if peak[i][j] is None else max(peak[i][j], v)
    if not any(v is not None for row in peak for v in row) and not any(n for row in oom for n in row):
        return None
    return MemoryGrid(metric, title, depths, batches, peak, oom, runs)


def largest_batches(trials: pd.DataFrame) -> pd.DataFrame:
    """For each frozen depth and memory budget: the largest batch that ran and stayed within the budget, its
    peak, and the smallest batch that ran out of memory."""
    cols = ["frozen", "budget_kind", "budget_mib", "largest_batch", "peak_mib", "peak_measure", "smallest_oom_batch"]
    if BATCH not in trials.columns or not len(trials):
        return pd.DataFrame(columns=cols)
    d = trials[trials[BATCH].notna()].copy()
    d["_b"] = pd.to_numeric(d[BATCH], errors="coerce")
    d = d[d["_b"].notna()]
    d["_depth"] = d[FROZEN].map(fmt.value) if FROZEN in d.columns else "—"
    gpu_col = next((c for c in ("gpu_peak_used_mib", "cuda_peak_reserved_mib", "cuda_peak_allocated_mib")
                    if c in d.columns and d[c].notna().any()), "gpu_peak_used_mib")
    rows = []
    for depth in sorted(d["_depth"].unique(), key=order_key):
        g = d[d["_depth"] == depth]
        budgets: list[tuple[str, float | None, str]] = []
        for kind, bcol, mcol in (("GPU", "memory_budget_gpu_mib", gpu_col), ("CPU", "memory_budget_cpu_mib", "cpu_peak_rss_mib")):
            if bcol in g.columns:
                for b in sorted(pd.to_numeric(g[bcol], errors="coerce").dropna().unique()):
                    budgets.append((kind, float(b), mcol))
        if not budgets:
            budgets.append(("none", None, gpu_col if g[gpu_col].notna().any() else "cpu_peak_rss_mib"))
        for kind, budget, mcol in budgets:
            sel = g
            if budget is not None:
                bcol = "memory_budget_gpu_mib" if kind == "GPU" else "memory_budget_cpu_mib"
                sel = g[pd.to_numeric(g[bcol], errors="coerce") == budget]
            ok = sel[sel["status"] == "ok"]
            peaks = pd.to_numeric(ok[mcol], errors="coerce") if mcol in ok.columns else pd.Series(np.nan, index=ok.index)
            fits = ok[peaks.isna() | (peaks <= budget)] if budget is not None else ok
            ooms = sel[sel["status"] == "oom"]
            largest = float(fits["_b"].max()) if len(fits) else None
            peak = None
            if largest is not None:
                p = pd.to_numeric(fits.loc[fits["_b"] == largest, mcol], errors="coerce").dropna()
                peak = float(p.max()) if len(p) else None
            rows.append({
                "frozen": depth,
                "budget_kind": kind,
                "budget_mib": budget,
                "largest_batch": largest,
                "peak_mib": peak,
                "peak_measure": mcol,
                "smallest_oom_batch": float(ooms["_b"].min()) if len(ooms) else None,
            })
    return pd.DataFrame(rows, columns=cols)


# -- learning curves ------------------------------------------------------------------------------------------
@dataclass
class Curve:
    config_key: str
    label: str
    epochs: list[int]
    val_accuracy: list[float | None]
    val_loss: list[float | None]
    train_loss: list[float | None]
    n_trials: int
    final_val_accuracy: float | None

    def verdict(self) -> tuple[float | None, float | None, str]:
        """(last-epoch change in val accuracy, relative last-epoch change in val loss, answer to "would more
        epochs help?")."""
        acc = [v for v in self.val_accuracy if v is not None]
        loss = [v for v in self.val_loss if v is not None]
        if len(acc) < 2 and len(loss) < 2:
            return None, None, "one epoch only: cannot tell"
        d_acc = acc[-1] - acc[-2] if len(acc) >= 2 else None
        d_loss = (loss[-1] - loss[-2]) / abs(loss[-2]) if len(loss) >= 2 and loss[-2] else None
        improving = (d_acc is not None and d_acc > 0.005) or (d_loss is not None and d_loss < -0.01 and (d_acc or 0) >= 0)
        worse = (d_loss is not None and d_loss > 0.01) and (d_acc is None or d_acc <= 0.005)
        if improving:
            return d_acc, d_loss, "likely: still improving"
        if worse:
            return d_acc, d_loss, "unlikely: validation loss rising (overfitting)"
        return d_acc, d_loss, "unlikely: flat"


def learning_curves(trials: pd.DataFrame, varying: list[str]) -> list[Curve]:
    curves = []
    if not len(trials):
        return curves
    for key, g in trials.groupby("config_key", sort=False):
        per_epoch: dict[int, dict[str, list[float]]] = {}
        n = 0
        for log in g["epoch_log"]:
            eps = parse_epochs(log)
            if eps:
                n += 1
            for i, e in enumerate(eps):
                ep = int(fmt.num(e.get("epoch")) or (i + 1))
                slot = per_epoch.setdefault(ep, {"val_accuracy": [], "val_loss": [], "train_loss": []})
                for k in slot:
                    v = fmt.num(e.get(k))
                    if v is not None:
                        slot[k].append(v)
        if not per_epoch:
            continue
        epochs = sorted(per_epoch)
        curve = Curve(
            config_key=str(key),
            label=label(g.iloc[0], varying),
            epochs=epochs,
            val_accuracy=[_median(per_epoch[e]["val_accuracy"]) for e in epochs],
            val_loss=[_median(per_epoch[e]["val_loss"]) for e in epochs],
            train_loss=[_median(per_epoch[e]["train_loss"]) for e in epochs],
            n_trials=n,
            final_val_accuracy=None,
        )
        accs = [v for v in curve.val_accuracy if v is not None]
        curve.final_val_accuracy = accs[-1] if accs else None
        curves.append(curve)
    return curves


# -- frozen depth ---------------------------------------------------------------------------------------------
def memory_column(df: pd.DataFrame) -> str | None:
    for col in ("gpu_peak_used_mib", "cuda_peak_allocated_mib", "cpu_peak_rss_mib"):
        if col in df.columns and df[col].notna().any():
            return col
    return None


def frozen_effect(groups: pd.DataFrame) -> pd.DataFrame | None:
    """Per frozen depth: median accuracy, time per epoch and peak memory, and, against the least-frozen depth on
    otherwise identical configurations, the accuracy given up and the time and memory saved."""
    if FROZEN not in groups.columns:
        return None
    g = groups[(groups["n_ok"] > 0)].copy()
    g["_depth"] = g[FROZEN].map(fmt.value)
    depths = sorted(g["_depth"].unique(), key=order_key)
    if len(depths) < 2:
        return None
    mem = memory_column(g)
    base_depth = depths[0]
    cols = [c for c in config_columns(groups, exclude=(FROZEN,)) if c in g.columns]
    g["_match"] = g.apply(lambda r: _group_id(r, cols), axis=1)
    base = {r["_match"]: r for _, r in g[g["_depth"] == base_depth].iterrows()}

    def saved(r: Any, b: Any, col: str) -> float | None:
        x, y = fmt.num(r[col]), fmt.num(b[col])
        return 1 - x / y if x is not None and y else None

    rows = []
    for depth in depths:
        sub = g[g["_depth"] == depth]
        d_acc, t_saved, m_saved = [], [], []
        for _, r in sub.iterrows():
            b = base.get(r["_match"])
            if b is None:
                continue
            x, y = fmt.num(r["val_accuracy"]), fmt.num(b["val_accuracy"])
            if x is not None and y is not None:
                d_acc.append(x - y)
            t = saved(r, b, "seconds_per_epoch")
            if t is not None:
                t_saved.append(t)
            m = saved(r, b, mem) if mem else None
            if m is not None:
                m_saved.append(m)
        rows.append({
            "frozen": depth,
            "is_baseline": depth == base_depth,
            "n_configs": len(sub),
            "val_accuracy": _median(sub["val_accuracy"]),
            "seconds_per_epoch": _median(sub["seconds_per_epoch"]),
            "peak_mib": _median(sub[mem]) if mem else None,
            "memory_measure": mem,
            "trainable_params": _median(sub["trainable_params"]),
            "accuracy_change": _median(d_acc),
            "time_saved": _median(t_saved),
            "memory_saved": _median(m_saved),
            "n_matched": len(d_acc) if depth != base_depth else len(sub),
        })
    return pd.DataFrame(rows)


# -- lab vs fast ----------------------------------------------------------------------------------------------
def strategy_comparison(groups: pd.DataFrame) -> pd.DataFrame | None:
    """Configurations run under both strategies, side by side (medians across repeats)."""
    if STRATEGY not in groups.columns:
        return None
    g = groups[groups["n_ok"] > 0].copy()
    g["_s"] = g[STRATEGY].map(fmt.value)
    if not {"lab", "fast"} <= set(g["_s"]):
        return None
    switches = tuple(c for c in determined_by(g, STRATEGY) if c in STRATEGY_SWITCHES)
    cols = [c for c in config_columns(groups, exclude=(STRATEGY,) + switches) if c in g.columns]
    g["_match"] = g.apply(lambda r: _group_id(r, cols), axis=1)
    lab_cols = label_columns(g, exclude=(STRATEGY,) + switches)
    rows = []
    for _, m in g.groupby("_match", sort=False):
        lab = m[m["_s"] == "lab"]
        fast = m[m["_s"] == "fast"]
        if not len(lab) or not len(fast):
            continue
        a, b = lab.iloc[0], fast.iloc[0]
        rows.append({
            "label": label(a, lab_cols),
            "lab_seconds_per_epoch": a["seconds_per_epoch"],
            "fast_seconds_per_epoch": b["seconds_per_epoch"],
            "lab_seconds_total": a["seconds_total"],
            "fast_seconds_total": b["seconds_total"],
            "lab_val_accuracy": a["val_accuracy"],
            "fast_val_accuracy": b["val_accuracy"],
            "speedup_epoch": a["seconds_per_epoch"] / b["seconds_per_epoch"] if b["seconds_per_epoch"] else float("nan"),
            "speedup_total": a["seconds_total"] / b["seconds_total"] if b["seconds_total"] else float("nan"),
            "accuracy_change": b["val_accuracy"] - a["val_accuracy"],
            "lab_n": int(a["n_ok"]),
            "fast_n": int(b["n_ok"]),
        })
    return pd.DataFrame(rows) if rows else None


# -- forecasts: more data, more epochs, a budget ---------------------------------------------------------------
@dataclass
class DataForecast:
    """Accuracy against rows for configurations that differ only in `dataset_size` (and seeds)."""

    label: str
    config_keys: list[str]
    fit: fc.CurveFit
    cost: fc.Cost | None  # one trial's seconds (and dollars) against rows, a line through the measured trials
    target_rows: float | None = None  # rows at which the fitted curve reaches the target accuracy
    cost_per_point: list[tuple[float, float | None]] = field(default_factory=list)  # (rows, $ or s per pp)

    def to_json(self, target: float) -> dict[str, Any]:
        c = self.cost
        return {
            "label": self.label, "config_keys": self.config_keys, "fit": self.fit.to_json(),
            "cost": None if c is None else {"fixed_s": c.fixed_s, "per_row_s": c.per_row_s, "usd_per_s": c.usd_per_s,
                                            "source": c.source},
            "target_accuracy": target, "rows_for_target": self.target_rows,
            "seconds_for_target": c.seconds(self.target_rows) if c and self.target_rows else None,
            "usd_for_target": c.usd(self.target_rows) if c and self.target_rows else None,
            "cost_per_point": [{"rows": r, "per_point": v, "unit": "usd" if c and c.usd_per_s else "s"}
                               for r, v in self.cost_per_point],
        }


def _cost_line(g: pd.DataFrame) -> fc.Cost | None:
    """Measured cost of one trial against rows: seconds_total = fixed + per_row x rows (least squares over the
    ok trials), and the trials' own dollars per second."""
    ok = g[(g["status"] == "ok")]
    x = pd.to_numeric(ok[SIZE], errors="coerce")
    y = pd.to_numeric(ok["seconds_total"], errors="coerce")
    keep = x.notna() & y.notna()
    if x[keep].nunique() < 2:
        return None
    slope, intercept, _ = fit_line(x[keep].to_numpy(float), y[keep].to_numpy(float))
    if slope <= 0:
        return None
    cps = _median(pd.to_numeric(ok["cost_usd"], errors="coerce") / y)
    return fc.Cost(fixed_s=max(float(intercept), 0.0), per_row_s=float(slope), usd_per_s=cps, source="measured")


BOOT_FITS = 1200  # refits a whole report may spend on bootstraps (about 10 ms each on one free core)


def _boot_share(n_curves: int) -> int:
    """Bootstrap size per curve: the full N_BOOT for a few curves, fewer (at least 30) for a big grid."""
    return max(30, min(fc.N_BOOT, BOOT_FITS // max(n_curves, 1)))


def data_forecasts(trials: pd.DataFrame, extrapolate_rows: int, target: float, repeats: int = 1) -> list[DataForecast]:
    """A learning curve in rows for each group of configurations measured at two sizes or more (two sizes say
    "too few points"), predicting at `extrapolate_rows`, 2x and 4x the largest size."""
    if not len(trials) or SIZE not in trials.columns:
        return []
    d = trials[(trials["status"] == "ok") & pd.to_numeric(trials[SIZE], errors="coerce").notna()]
    if not len(d):
        return []
    cols = config_columns(d, exclude=(SIZE,))
    label_cols = label_columns(d, exclude=(SIZE,))
    d = d.assign(_g=d.apply(lambda r: _group_id(r, cols), axis=1))
    out = []
    n_curves = sum(1 for _, g in d.groupby("_g", sort=False) if g[SIZE].nunique() >= fc.MIN_SIZES)
    n_boot = _boot_share(n_curves)
    for _, g in d.groupby("_g", sort=False):
        if g[SIZE].nunique() < 2:
            continue
        fit = fc.fit_data_curve(g, [extrapolate_rows], repeats=repeats, n_boot=n_boot)
        f = DataForecast(label=label(g.iloc[0], label_cols) if label_cols else "all trials",
                         config_keys=sorted({str(k) for k in g["config_key"]}), fit=fit, cost=_cost_line(g))
        if fit.status == "fitted":
            f.target_rows = fit.rows_for(target)
            if f.cost is not None:
                largest = max(fit.x_sizes)
                f.cost_per_point = [(p.x, fc.cost_per_point(fit, f.cost, largest, p.x)) for p in fit.predictions
                                    if p.x > largest]
        out.append(f)
    return out


@dataclass
class EpochForecast:
    config_key: str
    label: str
    forecast: fc.EpochForecast
    extra_seconds: float | None  # the E more epochs at the measured time per epoch
    extra_usd: float | None


def epoch_forecasts(trials: pd.DataFrame, groups: pd.DataFrame) -> list[EpochForecast]:
    out = []
    if not len(trials) or not len(groups):
        return out
    n_boot = _boot_share(int((pd.to_numeric(groups["n_epochs_done"], errors="coerce") >= fc.MIN_EPOCHS).sum()))
    for _, row in groups.iterrows():
        ok = trials[(trials["config_key"] == row["config_key"]) & (trials["status"] == "ok")]
        if not len(ok):
            continue
        logs = [parse_epochs(v) for v in ok["epoch_log"]]
        n_val = pd.to_numeric(ok["n_val"], errors="coerce").tolist() if "n_val" in ok.columns else []
        f = fc.fit_epoch_curve(logs, n_val, n_boot=n_boot)
        spe = fmt.num(row["seconds_per_epoch"])
        extra_s = spe * f.epochs_run if spe is not None and f.epochs_run else None
        cps = _median(pd.to_numeric(ok["cost_usd"], errors="coerce") / pd.to_numeric(ok["seconds_total"], errors="coerce"))
        out.append(EpochForecast(str(row["config_key"]), str(row["label"]), f, extra_s,
                                 extra_s * cps if extra_s is not None and cps is not None else None))
    return out


@dataclass
class BudgetAnswer:
    hours: float | None
    usd: float | None
    lines: list[str]
    choice: dict[str, Any] | None = None  # for forecast.json


def budget_answer(data: list[DataForecast], groups: pd.DataFrame, target: float, hours: float | None,
                  usd: float | None) -> BudgetAnswer | None:
    """ "On this machine, for this budget: expected accuracy X [lo, hi] with settings S; to reach the target
    you would need about N rows, H hours, $C" from the data curves and the measured cost per row."""
    if hours is None and usd is None:
        return None
    limit = " and ".join(x for x in ((f"{fmt.hours(hours * 3600)}" if hours is not None else None),
                                     (fmt.usd(usd) if usd is not None else None)) if x)
    ans = BudgetAnswer(hours, usd, [])
    cands = []
    for f in data:
        if f.fit.status != "fitted" or f.cost is None:
            continue
        rows = f.cost.rows_within(hours, usd)
        if rows is None or rows < 1:
            continue
        pred = f.fit.predict([rows])[0]
        cands.append((f, rows, pred))
    if cands:
        best = max(cands, key=lambda c: c[2].accuracy)
        # Tied: another curve whose interval reaches the best's expected accuracy; the cheapest to run wins.
        tie = [c for c in cands if c[2].hi >= best[2].accuracy]
        f, rows, pred = min(tie, key=lambda c: (c[0].cost.seconds(c[1]) if c[0].cost else math.inf))
        where = f"{rows:,.0f} rows"
        line = (f"On this machine, for {limit}: expected accuracy {pred.text()} ({int(fc.LEVEL * 100)} % interval) "
                f"with {f.label}, {where} (one trial: {fmt.hours(f.cost.seconds(rows))}"
                + (f", {fmt.usd(f.cost.usd(rows))}" if f.cost.usd(rows) is not None else "") + ")")
        if len(tie) > 1:
            line += (f"; {len(tie) - 1} other configuration{'s are' if len(tie) > 2 else ' is'} within its interval "
                     f"({', '.join(c[0].label for c in tie if c[0] is not f)}): the quickest is named")
        ans.lines.append(line + ".")
        if f.target_rows is not None:
            ans.lines.append(
                f"To reach {fmt.pct(target)} you would need about {f.target_rows:,.0f} rows, "
                f"{fmt.hours(f.cost.seconds(f.target_rows))}"
                + (f", {fmt.usd(f.cost.usd(f.target_rows))}" if f.cost.usd(f.target_rows) is not None else "")
                + f" (the fitted curve; cost per row measured on {len(f.fit.x)} trials).")
        else:
            ans.lines.append(f"The fitted curve levels off at {fmt.pct(f.fit.asymptote)} "
                             f"({int(fc.LEVEL * 100)} % interval {fmt.pct((f.fit.asymptote_interval or (None,))[0])}–"
                             f"{fmt.pct((f.fit.asymptote_interval or (None, None))[1])}): more rows alone are not "
                             f"forecast to reach {fmt.pct(target)}.")
        ans.choice = {"label": f.label, "config_keys": f.config_keys, "rows": rows, "prediction": pred.__dict__,
                      "rows_for_target": f.target_rows}
        return ans
    # No learning curve: what the budget buys among the configurations measured, as measured.
    g = groups[(groups["n_ok"] > 0) & groups["val_accuracy"].notna()] if len(groups) else groups
    if len(g):
        within = g[pd.Series(True, index=g.index)
                   & ((g["seconds_total"] <= hours * 3600) if hours is not None else True)
                   & ((g["cost_usd"] <= usd) if usd is not None else True)]
        if len(within):
            best = within.sort_values("val_accuracy", ascending=False, kind="mergesort").iloc[0]
            tie = within[within.apply(lambda r: tied(r, best), axis=1)]
            pick = tie.sort_values("seconds_total", kind="mergesort").iloc[0]
            ans.lines.append(f"For {limit}, as measured (no learning curve: {_why_no_curve(data)}): "
                             f"{pick['label']} at {accuracy_text(pick)}"
                             + (f", tied within noise with {len(tie) - 1} other{'s' if len(tie) > 2 else ''}; "
                                "the quickest is named" if len(tie) > 1 else "") + ".")
        else:
            ans.lines.append(f"No configuration measured fits within {limit}.")
    return ans


def _why_no_curve(data: list[DataForecast]) -> str:
    reasons = {f.fit.reason for f in data if f.fit.reason}
    return "; ".join(sorted(reasons)) if reasons else "every configuration was run at one dataset size"


# -- everything -----------------------------------------------------------------------------------------------
@dataclass
class Analysis:
    df: pd.DataFrame  # every record, searches included
    trials: pd.DataFrame  # without `max_batch` search records
    searches: pd.DataFrame
    varying: list[str]
    groups: pd.DataFrame
    frontier_cost: pd.DataFrame
    frontier_time: pd.DataFrame
    recommendation: Recommendation
    fits: list[SizeFit]
    memory_grids: list[MemoryGrid]
    largest: pd.DataFrame
    curves: list[Curve]
    frozen: pd.DataFrame | None
    strategies: pd.DataFrame | None
    target_accuracy: float
    extrapolate_rows: int
    data_curves: list[DataForecast] = field(default_factory=list)
    epoch_curves: list[EpochForecast] = field(default_factory=list)
    budget: BudgetAnswer | None = None

    def fit_for(self, config_key: str) -> SizeFit | None:
        """The dataset-size fit a configuration belongs to, if it was measured at two sizes or more."""
        return next((f for f in self.fits if config_key in f.config_keys), None)

    @property
    def status_counts(self) -> dict[str, int]:
        return dict(Counter(self.trials["status"].astype(str))) if len(self.trials) else {}


def analyse(df: pd.DataFrame, target_accuracy: float = DEFAULT_TARGET_ACCURACY,
            extrapolate_rows: int = DEFAULT_EXTRAPOLATE_ROWS, budget_hours: float | None = None,
            budget_usd: float | None = None) -> Analysis:
    search_mask = is_search(df)
    trials = df[~search_mask].reset_index(drop=True)
    searches = df[search_mask].reset_index(drop=True)
    varying = label_columns(trials) if len(trials) else []
    groups = group_configs(trials, varying) if len(trials) else pd.DataFrame()
    grids = []
    for col, title in memory_metrics(trials):
        grid = memory_grid(trials, col, title)
        if grid is not None:
            grids.append(grid)
    has = len(groups) > 0
    frontier_cost = pareto_frontier(groups, "cost_usd") if has else groups
    frontier_time = pareto_frontier(groups, "seconds_total") if has else groups
    data = data_forecasts(trials, extrapolate_rows, target_accuracy)
    epochs = epoch_forecasts(trials, groups) if has else []
    return Analysis(
        df=df,
        trials=trials,
        searches=searches,
        varying=varying,
        groups=groups,
        frontier_cost=frontier_cost,
        frontier_time=frontier_time,
        recommendation=recommend(groups, target_accuracy),
        fits=size_fits(trials, extrapolate_rows),
        memory_grids=grids,
        largest=largest_batches(trials),
        curves=learning_curves(trials, varying),
        frozen=frozen_effect(groups) if has else None,
        strategies=strategy_comparison(groups) if has else None,
        target_accuracy=target_accuracy,
        extrapolate_rows=extrapolate_rows,
        data_curves=data,
        epoch_curves=epochs,
        budget=budget_answer(data, groups, target_accuracy, budget_hours, budget_usd) if has else None,
    )
