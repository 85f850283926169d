"""What an accuracy is worth, and what more data or more epochs would buy: pure functions of trial records.

- `accuracy_interval`: a validation accuracy's uncertainty. One trial: the Wilson score interval of its
  correct / validation rows (a binomial count). Repeats: the wider of the pooled Wilson interval and the
  Student-t interval of the repeats' mean, so a seed-to-seed spread larger than the validation noise shows.
- `tied_with_best`: which configurations are within noise of the best (a two-sided z-test on the difference,
  with the standard errors above), so that no winner is named among ties.
- `fit_data_curve`: validation error against rows as a saturating power law, err(n) = a + b (n / n0)^-c
  (Hestness et al. 2017), fitted by `scipy.optimize.curve_fit` with each size weighted by its binomial
  standard error; the interval comes from a bootstrap over the trials at each size (seeds and repeats; a size
  with one trial is redrawn from its binomial). Fewer than 3 sizes: no fit, and it says so.
- `fit_epoch_curve`: the same law in epochs on the per-epoch validation accuracy (mean over repeats), a
  plateau test (the gain the fit predicts from E to 2E epochs, with its interval) and the accuracy predicted
  at 2E epochs.

Every interval here is two-sided; `LEVEL` (80 %) for forecasts, `Z95` for measured accuracies. Nothing here
reads files or draws: `analysis` groups the trials and calls these, `forecast_json` writes what they return.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

Z95 = 1.959963984540054  # two-sided 95 % normal quantile: intervals on measured accuracies
LEVEL = 0.8  # forecasts: the central 80 % of the bootstrap (10th to 90th percentile)
N_BOOT = 100
MIN_SIZES = 3  # a three-parameter law through fewer sizes is not a fit
MIN_EPOCHS = 4
SCHEMA_VERSION = 1


# -- measured accuracy ----------------------------------------------------------------------------------------
def wilson(correct: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion `correct / n` (n > 0)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = min(max(correct / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class AccuracyInterval:
    mean: float  # the accuracy shown: one trial's, or the mean of the repeats
    lo: float
    hi: float
    se: float  # standard error of `mean`, for tie tests
    n_val: float | None  # validation rows per trial (median)
    n_repeats: int
    method: str  # "wilson", "wilson (pooled)" or "t over repeats"

    def text(self) -> str:
        return f"{self.mean * 100:.1f} % [{self.lo * 100:.1f}, {self.hi * 100:.1f}]"


def accuracy_interval(accuracies: Sequence[float], n_val: Sequence[float | None], z: float = Z95) -> AccuracyInterval | None:
    """95 % interval of a configuration's validation accuracy from its trials' accuracies and validation rows.
    Without the number of validation rows only repeats can give an interval (t over their spread)."""
    pairs = [(float(a), (float(n) if n is not None and not _nan(n) and n > 0 else None))
             for a, n in zip(accuracies, n_val) if a is not None and not _nan(a)]
    if not pairs:
        return None
    accs = np.array([a for a, _ in pairs])
    ns = [n for _, n in pairs if n is not None]
    r = len(accs)
    mean = float(accs.mean())
    cands: list[tuple[float, float, float, str]] = []  # (lo, hi, se, method)
    if len(ns) == r:
        total = float(sum(ns))
        correct = float(sum(a * n for a, n in pairs))
        lo, hi = wilson(correct, total, z)
        se = math.sqrt(max(mean * (1 - mean), 0.25 / total) / total)  # never 0: one row is the resolution
        cands.append((lo, hi, se, "wilson" if r == 1 else "wilson (pooled)"))
    if r > 1:
        sd = float(accs.std(ddof=1))
        se = sd / math.sqrt(r)
        half = float(stats.t.ppf(0.5 + _level_of(z) / 2, r - 1)) * se
        cands.append((max(0.0, mean - half), min(1.0, mean + half), se, "t over repeats"))
    if not cands:
        return None
    lo, hi, se, method = max(cands, key=lambda c: c[1] - c[0])
    return AccuracyInterval(mean, lo, hi, se, float(np.median(ns)) if ns else None, r, method)


def _level_of(z: float) -> float:
    return float(2 * stats.norm.cdf(z) - 1)


def _nan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def tied_with_best(means: Sequence[float], ses: Sequence[float], z: float = Z95) -> list[bool]:
    """For each configuration: is it statistically tied with the most accurate one? (|difference| below z
    standard errors of the difference; the best is tied with itself.)"""
    if not len(means):
        return []
    best = int(np.nanargmax(np.asarray(means, dtype=float)))
    out = []
    for m, s in zip(means, ses):
        diff = means[best] - m
        se = math.sqrt(s * s + ses[best] * ses[best])
        out.append(bool(diff <= z * se) if se > 0 else bool(diff <= 0))
    return out


def reaches(interval: AccuracyInterval, target: float) -> str:
    """'yes' (the whole interval at or over the target), 'no' (the whole interval under it) or 'within noise'."""
    if interval.lo >= target:
        return "yes"
    if interval.hi < target:
        return "no"
    return "within noise"


# -- the saturating power law ---------------------------------------------------------------------------------
def power_law(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """Error at x (already divided by a reference x0): a + b x^-c. a is the error it levels off at."""
    return a + b * np.power(x, -c)


def _power_law_jac(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    xc = np.power(x, -c)
    return np.column_stack([np.ones_like(x), xc, -b * xc * np.log(x)])


BOUNDS = ([0.0, 0.0, 0.01], [1.0, 2.0, 3.0])


def fit_power_law(x: np.ndarray, err: np.ndarray, sigma: np.ndarray | None = None,
                  start: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Least squares of err = a + b x^-c (bounded: a in [0, 1], b in [0, 2], c in [0.01, 3]) with scipy's
    curve_fit; x should be scaled so that its largest value is 1. Returns (params, covariance) or None."""
    x = np.asarray(x, dtype=float)
    err = np.asarray(err, dtype=float)
    lo_err = float(err.min())
    starts = [(max(lo_err - 0.02, 0.0), max(float(err.max()) - lo_err, 0.01), 0.5),
              (0.0, max(lo_err, 0.01), 0.2)]
    if start is not None:  # a bootstrap refit starts from the point estimate: one start is enough
        starts = [tuple(start)]
    best = None
    for p0 in starts:
        p0 = tuple(min(max(v, lo + 1e-6), hi - 1e-6) for v, lo, hi in zip(p0, *BOUNDS))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params, cov = optimize.curve_fit(power_law, x, err, p0=p0, sigma=sigma, absolute_sigma=True,
                                                 bounds=BOUNDS, max_nfev=2000, jac=_power_law_jac)
        except (RuntimeError, ValueError, optimize.OptimizeWarning):
            continue
        resid = (power_law(x, *params) - err) / (sigma if sigma is not None else 1.0)
        cost = float(np.sum(resid * resid))
        if best is None or cost < best[0]:
            best = (cost, params, cov)
    return None if best is None else (best[1], best[2])


@dataclass
class Prediction:
    x: float  # rows, or epochs
    accuracy: float  # the fitted curve's accuracy at x
    lo: float  # LEVEL interval of the accuracy a run of `repeats` trials would measure there
    hi: float
    curve_lo: float  # LEVEL interval of the curve alone (fit uncertainty, no measurement noise)
    curve_hi: float
    kind: str = "extrapolated"  # "extrapolated" beyond the largest measured x, "interpolated" within

    def text(self) -> str:
        return f"{self.accuracy * 100:.1f} % [{self.lo * 100:.1f}, {self.hi * 100:.1f}]"


@dataclass
class CurveFit:
    """A saturating power law of validation error in rows (or epochs) for one configuration."""

    axis: str  # "rows" or "epochs"
    status: str  # "fitted", "too_few_points", "failed"
    reason: str | None
    x: list[float]  # measured points (each trial: rows, or each epoch)
    accuracy: list[float]
    x_sizes: list[float]  # distinct x measured
    mean_accuracy: list[float]  # mean accuracy at each distinct x
    x0: float = 1.0  # x is divided by this in the law
    params: dict[str, float] | None = None  # a, b, c of err = a + b (x/x0)^-c
    param_se: dict[str, float] | None = None  # from the fit's covariance
    asymptote: float | None = None  # accuracy it levels off at: 1 - a
    asymptote_interval: tuple[float, float] | None = None
    predictions: list[Prediction] = field(default_factory=list)
    level: float = LEVEL
    n_boot: int = 0
    boot: np.ndarray | None = field(default=None, repr=False)  # bootstrap parameters, [n_boot, 3]
    val_rows: float | None = None  # validation rows per trial (median), for the measurement noise
    val_fraction: float | None = None  # validation rows / rows, to scale the noise to a new size

    def accuracy_at(self, x: float) -> float | None:
        if self.params is None:
            return None
        return float(1.0 - power_law(np.array([x / self.x0]), self.params["a"], self.params["b"], self.params["c"])[0])

    def rows_for(self, target: float) -> float | None:
        """The x at which the fitted curve reaches `target` accuracy; None where it levels off below it."""
        if self.params is None:
            return None
        a, b, c = self.params["a"], self.params["b"], self.params["c"]
        err = 1.0 - target
        if err <= a or b <= 0:
            return None
        if err >= a + b * (min(self.x_sizes) / self.x0) ** -c:
            return float(min(self.x_sizes))
        return float(self.x0 * ((err - a) / b) ** (-1.0 / c))

    def predict(self, xs: Iterable[float], repeats: int = 1, val_rows: float | None = None) -> list[Prediction]:
        """Accuracy at each x with its LEVEL interval: the bootstrap of the curve, plus the binomial noise of
        the mean of `repeats` trials validated on `val_rows` rows each (default: the fit's validation
        fraction of x for rows, its validation rows for epochs)."""
        if self.params is None or self.boot is None:
            return []
        rng = np.random.default_rng(0)
        out = []
        q = [(1 - self.level) / 2 * 100, (1 + self.level) / 2 * 100]
        for x in xs:
            x = float(x)
            centre = self.accuracy_at(x)
            draws = 1.0 - power_law(np.full(len(self.boot), x / self.x0), self.boot[:, 0], self.boot[:, 1], self.boot[:, 2])
            draws = np.clip(draws, 0.0, 1.0)
            n_val = val_rows
            if n_val is None:
                n_val = (self.val_fraction * x) if (self.axis == "rows" and self.val_fraction) else self.val_rows
            noisy = draws
            if n_val:
                sd = np.sqrt(np.clip(draws * (1 - draws), 0.25 / n_val, None) / (n_val * max(repeats, 1)))
                noisy = np.clip(draws + rng.standard_normal(len(draws)) * sd, 0.0, 1.0)
            c_lo, c_hi = np.percentile(draws, q)
            lo, hi = np.percentile(noisy, q)
            kind = "extrapolated" if x > max(self.x_sizes) else "interpolated"
            out.append(Prediction(x, float(centre), float(lo), float(hi), float(c_lo), float(c_hi), kind))
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("boot")
        d["asymptote_interval"] = list(self.asymptote_interval) if self.asymptote_interval else None
        d["law"] = "error = a + b * (x / x0) ** -c; accuracy = 1 - error"
        return d


def _points(x: Sequence[float], acc: Sequence[float], n_val: Sequence[float | None]) -> pd.DataFrame:
    d = pd.DataFrame({"x": pd.to_numeric(pd.Series(list(x)), errors="coerce"),
                      "acc": pd.to_numeric(pd.Series(list(acc)), errors="coerce"),
                      "n_val": pd.to_numeric(pd.Series(list(n_val), dtype=object), errors="coerce")})
    return d[d["x"].notna() & d["acc"].notna() & (d["x"] > 0)].reset_index(drop=True)


def _fit_means(d: pd.DataFrame, x0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct x: scaled x, mean error, and its standard error (binomial over the pooled validation
    rows, or the spread of the trials where that is larger)."""
    xs, errs, ses = [], [], []
    for x, g in d.groupby("x", sort=True):
        acc = g["acc"].to_numpy(float)
        p = float(acc.mean())
        n = float(g["n_val"].fillna(0).sum()) or None
        se_b = math.sqrt(max(p * (1 - p), 0.25 / n) / n) if n else 0.05
        se_t = float(acc.std(ddof=1)) / math.sqrt(len(acc)) if len(acc) > 1 else 0.0
        xs.append(x / x0)
        errs.append(1 - p)
        ses.append(max(se_b, se_t, 1e-3))
    return np.array(xs), np.array(errs), np.array(ses)


def fit_curve(x: Sequence[float], accuracy: Sequence[float], n_val: Sequence[float | None], *, axis: str = "rows",
              min_points: int = MIN_SIZES, n_boot: int = N_BOOT, seed: int = 0,
              groups: Sequence[Any] | None = None) -> CurveFit:
    """Fit accuracy against x (rows or epochs) for one configuration: each element is one measurement
    (a trial at a size; for epochs, the mean over repeats at an epoch). `groups`, for epochs, names the trial
    each point belongs to, so the bootstrap redraws whole trials (epochs of one trial are not independent)."""
    d = _points(x, accuracy, n_val)
    if groups is not None:
        d["group"] = list(pd.Series(list(groups)).iloc[d.index]) if len(d) else []
    sizes = sorted(d["x"].unique().tolist())
    means = [float(d.loc[d["x"] == s, "acc"].mean()) for s in sizes]
    fit = CurveFit(axis=axis, status="too_few_points", reason=None, x=d["x"].tolist(), accuracy=d["acc"].tolist(),
                   x_sizes=sizes, mean_accuracy=means, n_boot=0)
    nv = d["n_val"].dropna()
    fit.val_rows = float(nv.median()) if len(nv) else None
    if axis == "rows" and len(nv) and not (nv.nunique() == 1 and d["x"].nunique() > 1):
        # validation rows a fraction of the rows; a fixed validation set ([data] val_rows) keeps `val_rows`
        fit.val_fraction = float((d["n_val"] / d["x"]).dropna().median())
    what = "sizes" if axis == "rows" else "epochs"
    if len(sizes) < min_points:
        fit.reason = (f"{len(sizes)} {what} measured; a saturating power law needs at least {min_points} "
                      f"(run more {'dataset sizes' if axis == 'rows' else 'epochs'} to forecast)")
        return fit
    x0 = float(max(sizes))
    fit.x0 = x0
    xs, errs, ses = _fit_means(d, x0)
    res = fit_power_law(xs, errs, ses)
    if res is None:
        fit.status, fit.reason = "failed", "the least-squares fit did not converge"
        return fit
    params, cov = res
    fit.status = "fitted"
    fit.params = dict(zip("abc", map(float, params)))
    with np.errstate(invalid="ignore"):
        fit.param_se = {k: (float(math.sqrt(v)) if v >= 0 and math.isfinite(v) else None)
                        for k, v in zip("abc", np.diag(cov))}
    fit.asymptote = 1.0 - fit.params["a"]
    fit.boot = _bootstrap(d, x0, n_boot, seed, params)
    fit.n_boot = len(fit.boot)
    lo, hi = np.percentile(1 - fit.boot[:, 0], [(1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100])
    fit.asymptote_interval = (float(lo), float(hi))
    return fit


def _bootstrap(d: pd.DataFrame, x0: float, n_boot: int, seed: int, start: np.ndarray) -> np.ndarray:
    """Refits on resampled data. With `group` (epochs): whole trials drawn with replacement, then each
    epoch's accuracy redrawn from its binomial; for one trial, the binomial alone. Without (rows): at each
    size, the trials drawn with replacement where there are two or more, then each one's accuracy redrawn from
    its binomial (three seeds resampled alone understate the spread: on synthetic curves 6 of 12 80 %
    intervals covered the truth; and three trials whose first ten epochs have one shape give one gain: the
    lab's 10-epoch forecast printed a gain of 3.7-3.7 points against a measured +1.9, docs/forecast.md)."""
    rng = np.random.default_rng(seed)
    out = []
    if "group" in d.columns and d["group"].nunique() > 1:
        names = d["group"].unique()
        by = {g: d[d["group"] == g] for g in names}
        for _ in range(n_boot):
            sample = pd.concat([by[g] for g in rng.choice(names, size=len(names), replace=True)], ignore_index=True)
            n = sample["n_val"].fillna(0).to_numpy(float)
            if (n > 0).any():
                safe = np.maximum(n, 1)
                acc = np.clip(sample["acc"].to_numpy(float), 0, 1)
                sample["acc"] = np.where(n > 0, rng.binomial(safe.astype(int), acc) / safe, acc)
            xs, errs, ses = _fit_means(sample, x0)
            res = fit_power_law(xs, errs, ses, start=start) if len(xs) >= 3 else None
            if res is not None:
                out.append(res[0])
        return np.array(out) if out else np.array([start])
    cells = []
    for x, g in d.groupby("x", sort=True):
        cells.append((x / x0, g["acc"].to_numpy(float), g["n_val"].fillna(0).to_numpy(float),
                      "group" not in d.columns and len(g) > 1))
    xs = np.array([c[0] for c in cells])
    for _ in range(n_boot):
        errs, ses = [], []
        for _, acc, n, resample in cells:
            if resample:
                idx = rng.integers(0, len(acc), len(acc))
                acc, n = acc[idx], n[idx]
            safe = np.maximum(n, 1)
            acc = np.where(n > 0, rng.binomial(safe.astype(int), np.clip(acc, 0, 1)) / safe, acc)
            p = float(acc.mean())
            total = float(n.sum())
            se_b = math.sqrt(max(p * (1 - p), 0.25 / total) / total) if total else 0.05
            se_t = float(acc.std(ddof=1)) / math.sqrt(len(acc)) if len(acc) > 1 else 0.0
            errs.append(1 - p)
            ses.append(max(se_b, se_t, 1e-3))
        res = fit_power_law(xs, np.array(errs), np.array(ses), start=start)
        if res is not None:
            out.append(res[0])
    return np.array(out) if out else np.array([start])


# -- data: accuracy against rows -------------------------------------------------------------------------------
def fit_data_curve(trials: pd.DataFrame, targets: Sequence[float] = (), *, repeats: int = 1,
                   n_boot: int = N_BOOT) -> CurveFit:
    """One configuration's trials at several `dataset_size`s (ok ones, last epoch's accuracy) -> the fit and
    its predictions at `targets` and at 2x and 4x the largest size."""
    ok = trials[trials["status"] == "ok"] if "status" in trials.columns else trials
    n_val = ok["n_val"] if "n_val" in ok.columns else pd.Series([None] * len(ok))
    fit = fit_curve(ok["dataset_size"].tolist(), ok["val_accuracy"].tolist(), n_val.tolist(), axis="rows",
                    n_boot=n_boot)
    if fit.status == "fitted":
        largest = max(fit.x_sizes)
        xs = sorted({float(t) for t in targets} | {2 * largest, 4 * largest})
        fit.predictions = fit.predict(xs, repeats=repeats)
    return fit


# -- epochs ---------------------------------------------------------------------------------------------------
@dataclass
class EpochForecast:
    fit: CurveFit
    epochs_run: int
    last_accuracy: float | None  # mean over repeats at the last epoch
    gain: tuple[float, float, float] | None  # predicted accuracy at 2E minus at E: (median, lo, hi), LEVEL
    verdict: str  # "still improving", "plateau", "cannot tell", "overfitting", "too few epochs"
    reason: str
    at_double: Prediction | None

    def to_json(self) -> dict[str, Any]:
        return {"epochs_run": self.epochs_run, "last_accuracy": self.last_accuracy,
                "gain_at_double": list(self.gain) if self.gain else None, "verdict": self.verdict,
                "reason": self.reason, "at_double": asdict(self.at_double) if self.at_double else None,
                "fit": self.fit.to_json()}


def epoch_table(epoch_logs: Sequence[Sequence[dict[str, Any]]]) -> pd.DataFrame:
    """Long table (trial, epoch, val_accuracy, val_loss, n_val) from the trials' per-epoch logs."""
    rows = []
    for t, log in enumerate(epoch_logs):
        for i, e in enumerate(log or []):
            acc = e.get("val_accuracy")
            if acc is None or _nan(acc):
                continue
            rows.append({"trial": t, "epoch": int(e.get("epoch") or i + 1), "val_accuracy": float(acc),
                         "val_loss": e.get("val_loss")})
    return pd.DataFrame(rows, columns=["trial", "epoch", "val_accuracy", "val_loss"])


def fit_epoch_curve(epoch_logs: Sequence[Sequence[dict[str, Any]]], n_val: Sequence[float | None], *,
                    up_to: int | None = None, n_boot: int = N_BOOT, noise_pp: float = 0.01) -> EpochForecast:
    """Would more epochs help? The power law fitted to validation error against epoch (every trial's epochs,
    up to `up_to`), the gain it predicts from E to 2E epochs (LEVEL interval, bootstrap over the trials, or
    over each epoch's binomial for one trial) and the accuracy at 2E. Verdict: "still improving" where the
    whole interval of the gain is above `noise_pp`, "plateau" where it is below, else "cannot tell"; a
    validation loss rising over the last third of the epochs while accuracy does not gain says
    "overfitting"."""
    table = epoch_table(epoch_logs)
    if up_to is not None:
        table = table[table["epoch"] <= up_to]
    nv = [v for v in n_val if v is not None and not _nan(v)]
    val_rows = float(np.median(nv)) if nv else None
    table["n_val"] = val_rows
    e_run = int(table["epoch"].max()) if len(table) else 0
    fit = fit_curve(table["epoch"].tolist(), table["val_accuracy"].tolist(), table["n_val"].tolist(), axis="epochs",
                    min_points=MIN_EPOCHS, n_boot=n_boot, groups=table["trial"].tolist())
    last = table[table["epoch"] == e_run]["val_accuracy"].mean() if len(table) else None
    last = None if last is None or _nan(last) else float(last)
    if fit.status != "fitted":
        return EpochForecast(fit, e_run, last, None, "too few epochs", fit.reason or "", None)
    n_rep = int(table["trial"].nunique())
    at_double = fit.predict([2 * e_run], repeats=n_rep)[0]
    fit.predictions = [at_double]
    e_vals = 1.0 - power_law(np.full(len(fit.boot), e_run / fit.x0), *fit.boot.T)
    d_vals = 1.0 - power_law(np.full(len(fit.boot), 2 * e_run / fit.x0), *fit.boot.T)
    g = d_vals - e_vals
    q = [(1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100]
    gain = (float(fit.accuracy_at(2 * e_run) - fit.accuracy_at(e_run)), *map(float, np.percentile(g, q)))
    if gain[1] > noise_pp:
        verdict, reason = "still improving", (f"the fit gains {gain[0] * 100:.1f} pp from {e_run} to {2 * e_run} "
                                              f"epochs ({LEVEL:.0%} interval {gain[1] * 100:.1f}-{gain[2] * 100:.1f} pp, all above {noise_pp * 100:.0f} pp)")
    elif gain[2] < noise_pp:
        verdict, reason = "plateau", (f"the fit gains under {noise_pp * 100:.0f} pp from {e_run} to {2 * e_run} epochs "
                                      f"({LEVEL:.0%} interval {gain[1] * 100:.1f}-{gain[2] * 100:.1f} pp)")
    else:
        verdict, reason = "cannot tell", (f"the fit's gain from {e_run} to {2 * e_run} epochs, {gain[1] * 100:.1f}-"
                                          f"{gain[2] * 100:.1f} pp ({LEVEL:.0%}), straddles {noise_pp * 100:.0f} pp")
    loss = table.dropna(subset=["val_loss"]).groupby("epoch")["val_loss"].mean()
    if len(loss) >= MIN_EPOCHS:
        tail = loss.iloc[-max(3, len(loss) // 3):]
        slope = np.polyfit(tail.index.to_numpy(float), tail.to_numpy(float), 1)[0]
        if slope > 0 and verdict != "still improving" and tail.iloc[-1] > loss.min() * 1.02:
            verdict = "overfitting"
            reason = (f"validation loss rose over the last {len(tail)} epochs (from its low {loss.min():.3f} to "
                      f"{tail.iloc[-1]:.3f}) while accuracy did not gain; " + reason)
    return EpochForecast(fit, e_run, last, gain, verdict, reason, at_double)


# -- the budget answer ----------------------------------------------------------------------------------------
@dataclass
class Cost:
    """Measured (or planned) cost of one trial of a configuration at `rows`: seconds = fixed + per_row x rows."""

    fixed_s: float
    per_row_s: float  # all epochs and the one-off phases that grow with the rows
    usd_per_s: float | None
    source: str  # "measured" or "planned"

    def seconds(self, rows: float) -> float:
        return self.fixed_s + self.per_row_s * rows

    def usd(self, rows: float) -> float | None:
        return None if self.usd_per_s is None else self.seconds(rows) * self.usd_per_s

    def rows_within(self, hours: float | None, usd: float | None) -> float | None:
        limits = []
        if hours is not None:
            limits.append(hours * 3600.0)
        if usd is not None:
            if not self.usd_per_s:
                return None
            limits.append(usd / self.usd_per_s)
        if not limits or self.per_row_s <= 0:
            return None
        return max((min(limits) - self.fixed_s) / self.per_row_s, 0.0)


def cost_per_point(curve: CurveFit, cost: Cost, from_rows: float, to_rows: float) -> float | None:
    """Extra dollars (or seconds, without a price) per extra percentage point of accuracy from one size to
    another, along the fitted curve."""
    a0, a1 = curve.accuracy_at(from_rows), curve.accuracy_at(to_rows)
    if a0 is None or a1 is None or a1 - a0 <= 1e-6:
        return None
    extra = (cost.usd(to_rows) - cost.usd(from_rows)) if cost.usd_per_s else cost.seconds(to_rows) - cost.seconds(from_rows)
    return extra / ((a1 - a0) * 100)


def forecast_json(configs: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The document `forecast.json` holds (docs/forecast.md describes every field)."""
    doc = {"schema": "harness.forecast", "version": SCHEMA_VERSION, "level": LEVEL, "settings": settings,
           "configurations": configs}
    return json.dumps(_clean(doc), indent=2, default=_json_default, allow_nan=False)


def _clean(v: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_clean(x) for x in v.tolist()]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"not JSON: {type(v).__name__}")
