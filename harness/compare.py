"""Compare two run folders: pair trials by their settings and flag slowdowns, memory growth, accuracy drops.

Pure functions for `harness compare BASE NEW`:

- `parse_percent("10%") -> 0.10` turns an option value into a fraction.
- `compare_runs(base_dir, new_dir, Thresholds(...)) -> CompareResult` reads both folders (through
  `harness.store`) and decides; `CompareResult.failed` is the exit status the CLI should give.
- `print_comparison(result, console)` prints the table, the trials that were not compared and a verdict line.

Pairing. A trial's configuration is its `params` without what tells repeats apart (`seed` and `data_seed`,
`record.REPEAT_KEYS`, as in the report and the export), so the repeats of one configuration form a group. Groups
with the same configuration in both runs are compared; a configuration found in one run only is listed and
is not fatal.

Status. Only `ok` trials are measured; the others are listed. A configuration whose share of failed trials
rises (ok in base, oom/timeout/error in new) is a regression and fails the comparison.

Metrics (per trial, then the median over a group's ok trials):

| metric | from the record | threshold |
| --- | --- | --- |
| time per epoch | mean of `epochs[].seconds` | `max_slowdown`: new/base - 1 |
| total time | `seconds_total` | `max_slowdown`, only when a side has no epoch times |
| CPU peak RSS, GPU peak used, CUDA peak allocated | `memory.*_mib` (GPU rows only where not null) | `max_memory_growth` |
| final val accuracy | `epochs[-1].val_accuracy` | `max_accuracy_drop`: base - new (absolute) |
| tokens/s | `tokens_per_s` | informational (`max_slowdown` on base/new - 1 marks it "worse") |

With more than one trial on either side, a change whose median lies inside the other side's min-max range
(the spread of either side) is "within noise" and does not fail. A missing or null value is shown as
missing and never fails or passes anything by itself.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from harness.record import REPEAT_KEYS, finite
from harness.record import config_key as _config_key
from harness.store import SCHEMA_VERSION, StoreError, read_env, read_records

#: Keys of `params` that differ between repeats of one configuration and are left out of the pairing key
#: (`record.REPEAT_KEYS`: the seed and the data seed, the one definition report and export use too).
VOLATILE_KEYS = REPEAT_KEYS

#: Shown in a label when no setting varies between the configurations being compared.
_LABEL_FALLBACK_KEYS = ("model", "batch_size")

_EPS = 1e-9


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------
def parse_percent(text: str) -> float:
    """A threshold as a fraction: "10%" -> 0.10, "0.1" -> 0.1, "2.5%" -> 0.025.

    A bare number is a fraction and must be at most 1 (write "150%" for more; a bare "10" is refused
    because it almost always means ten percent). Raises ValueError with a one-line message otherwise.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a percentage such as 10% or a fraction such as 0.1, got {text!r}")
    raw = text.strip()
    is_percent = raw.endswith("%")
    number = raw[:-1].strip() if is_percent else raw
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"expected a percentage such as 10% or a fraction such as 0.1, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite percentage such as 10%, got {text!r}")
    if value < 0:
        raise ValueError(f"expected a percentage of 0 or more, got {text!r}")
    if is_percent:
        return value / 100.0
    if value > 1:
        raise ValueError(
            f"ambiguous threshold {text!r}: a bare number is a fraction (0.1 = 10%); write {raw}% for a percentage"
        )
    return value


@dataclass
class Thresholds:
    """Allowed change before a metric counts as a regression (fractions; accuracy is absolute)."""

    max_slowdown: float = 0.10
    max_memory_growth: float = 0.10
    max_accuracy_drop: float = 0.01

    def __post_init__(self) -> None:
        for name in ("max_slowdown", "max_memory_growth", "max_accuracy_drop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a number of 0 or more, got {value!r}")
            setattr(self, name, float(value))


# --------------------------------------------------------------------------------------------------
# Configurations (shared with harness.export)
# --------------------------------------------------------------------------------------------------
def config_key(record: dict[str, Any], ignore: Iterable[str] = ()) -> str:
    """A canonical string for a record's configuration: equal for the repeats of one configuration."""
    return _config_key(record.get("params"), ignore)


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def config_labels(keys: Iterable[str]) -> dict[str, str]:
    """Short labels for configuration keys: only the settings that vary between them, `k=v, ...`."""
    keys = list(dict.fromkeys(keys))
    decoded = {k: json.loads(k) for k in keys}
    all_names: list[str] = []
    for params in decoded.values():
        for name in params:
            if name not in all_names:
                all_names.append(name)
    varying = [
        n for n in all_names
        if len({json.dumps(p.get(n, "<absent>"), sort_keys=True, default=str) for p in decoded.values()}) > 1
    ]
    shown = varying or [n for n in _LABEL_FALLBACK_KEYS if n in all_names]
    labels: dict[str, str] = {}
    used: Counter[str] = Counter()
    for key, params in decoded.items():
        label = ", ".join(f"{n}={_fmt_value(params[n])}" for n in shown if n in params) or "(default settings)"
        used[label] += 1
        if used[label] > 1:  # two values that print alike (1 and "1"): keep the labels apart
            label = f"{label} #{used[label]}"
        labels[key] = label
    return labels


def group_by_config(records: Iterable[dict[str, Any]], ignore: Iterable[str] = ()) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by configuration key, in the order the configurations first appear."""
    ignore = tuple(ignore)
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(config_key(rec, ignore), []).append(rec)
    for recs in groups.values():
        recs.sort(key=lambda r: (finite(r.get("repeat")) or 0, str(r.get("trial_id"))))
    return groups


# --------------------------------------------------------------------------------------------------
# Metrics of one trial
# --------------------------------------------------------------------------------------------------
def _epochs(record: dict[str, Any]) -> list[dict[str, Any]]:
    epochs = record.get("epochs")
    return [e for e in epochs if isinstance(e, dict)] if isinstance(epochs, list) else []


def epoch_seconds(record: dict[str, Any]) -> list[float]:
    """The measured `seconds` of a record's finished epochs (missing ones skipped)."""
    out = []
    for e in _epochs(record):
        s = finite(e.get("seconds"))
        if s is not None:
            out.append(s)
    return out


def time_per_epoch(record: dict[str, Any]) -> Optional[float]:
    secs = epoch_seconds(record)
    return statistics.fmean(secs) if secs else None


def final_val_accuracy(record: dict[str, Any]) -> Optional[float]:
    epochs = _epochs(record)
    return finite(epochs[-1].get("val_accuracy")) if epochs else None


def _memory(name: str) -> Callable[[dict[str, Any]], Optional[float]]:
    def get(record: dict[str, Any]) -> Optional[float]:
        mem = record.get("memory")
        return finite(mem.get(name)) if isinstance(mem, dict) else None

    return get


def _top(name: str) -> Callable[[dict[str, Any]], Optional[float]]:
    return lambda record: finite(record.get(name))


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    get: Callable[[dict[str, Any]], Optional[float]]
    higher_is_better: bool = False
    gate: Optional[str] = None  # "time", "time_fallback", "memory", "accuracy" or None (informational)
    absolute: bool = False  # change reported as new - base rather than new/base - 1
    skip_if_null: bool = False  # left out when null on both sides (GPU figures on a CPU trial)


METRICS: tuple[Metric, ...] = (
    Metric("time_per_epoch", "time per epoch", "s", time_per_epoch, gate="time"),
    Metric("seconds_total", "total time", "s", _top("seconds_total"), gate="time_fallback"),
    Metric("cpu_peak_rss_mib", "CPU peak RSS", "MiB", _memory("cpu_peak_rss_mib"), gate="memory"),
    Metric("gpu_peak_used_mib", "GPU peak used", "MiB", _memory("gpu_peak_used_mib"), gate="memory", skip_if_null=True),
    Metric(
        "cuda_peak_allocated_mib", "CUDA peak allocated", "MiB", _memory("cuda_peak_allocated_mib"),
        gate="memory", skip_if_null=True,
    ),
    Metric("val_accuracy", "final val accuracy", "", final_val_accuracy, higher_is_better=True, gate="accuracy",
           absolute=True),
    Metric("tokens_per_s", "tokens/s", "tok/s", _top("tokens_per_s"), higher_is_better=True),
)


# --------------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------------
@dataclass
class Side:
    """One side's figure for a configuration: the median of its ok trials and their spread."""

    value: Optional[float]
    n: int = 0  # trials with a value
    low: Optional[float] = None
    high: Optional[float] = None
    values: list[float] = field(default_factory=list)
    interval: Optional[tuple[float, float]] = None  # accuracy: 95 % interval (validation rows, repeats)
    se: Optional[float] = None  # accuracy: standard error of the mean


@dataclass
class Row:
    config: str
    metric: str  # Metric.name, or "status"
    label: str  # human name of the metric
    unit: str
    base: Side
    new: Side
    ratio: Optional[float]  # new / base
    change: Optional[float]  # new/base - 1, or new - base for absolute metrics (accuracy)
    absolute: bool
    verdict: str  # unchanged | ok | improved | worse | regression | within noise | missing | fixed
    gating: bool  # whether this row can fail the comparison
    within_spread: bool = False
    note: str = ""
    base_text: Optional[str] = None  # for the status row
    new_text: Optional[str] = None


@dataclass
class TrialRef:
    side: str  # "base" or "new"
    config: str
    trial_id: str
    repeat: Any
    status: str
    error: Optional[str] = None


@dataclass
class CompareResult:
    base_dir: Path
    new_dir: Path
    thresholds: Thresholds
    rows: list[Row] = field(default_factory=list)
    only_in_base: list[TrialRef] = field(default_factory=list)
    only_in_new: list[TrialRef] = field(default_factory=list)
    not_compared: list[TrialRef] = field(default_factory=list)  # trials with status != ok in compared configs
    configs_compared: int = 0
    env_differences: list[tuple[str, Any, Any]] = field(default_factory=list)
    failed: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "regression"]


# --------------------------------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------------------------------
def _read(run_dir: Path) -> list[dict[str, Any]]:
    records = read_records(run_dir)
    for rec in records:
        schema = rec.get("schema", SCHEMA_VERSION)
        if isinstance(schema, int) and schema > SCHEMA_VERSION:
            raise StoreError(
                f"{run_dir}: trial {rec.get('trial_id')} has record schema {schema}; "
                f"this version of harness reads schema {SCHEMA_VERSION}"
            )
    return records


def _side(records: list[dict[str, Any]], metric: Metric) -> Side:
    values = [v for v in (metric.get(r) for r in records) if v is not None]
    if not values:
        return Side(None, 0)
    side = Side(statistics.median(values), len(values), min(values), max(values), values)
    if metric.gate == "accuracy":
        from harness.report.forecast import accuracy_interval

        pairs = [(metric.get(r), finite(r.get("n_val"))) for r in records]
        pairs = [(v, n) for v, n in pairs if v is not None]
        iv = accuracy_interval([v for v, _ in pairs], [n for _, n in pairs])
        if iv is not None and (iv.n_val is not None or iv.n_repeats > 1):
            side.interval, side.se = (iv.lo, iv.hi), iv.se
    return side


def _trial_ref(side: str, label: str, rec: dict[str, Any]) -> TrialRef:
    error = rec.get("error")
    if error is not None and not isinstance(error, str):
        error = json.dumps(error, default=str)
    oom = rec.get("oom")
    if rec.get("status") == "oom" and isinstance(oom, dict) and not error:
        error = f"out of memory in {oom.get('phase')}" + (f", epoch {oom['epoch']}" if oom.get("epoch") else "")
    if isinstance(error, str):
        error = error.strip().splitlines()[0][:200] if error.strip() else None
    return TrialRef(side, label, str(rec.get("trial_id")), rec.get("repeat"), str(rec.get("status")), error)


def _status_text(records: list[dict[str, Any]]) -> str:
    counts = Counter(str(r.get("status")) for r in records)
    order = ["ok", "oom", "timeout", "error"]
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    return ", ".join(f"{k}×{counts[k]}" if counts[k] > 1 or len(records) > 1 else k for k in keys)


def _fmt_pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _compare_metric(config: str, metric: Metric, base: Side, new: Side, gating: bool, th: Thresholds) -> Row:
    ratio = change = None
    if base.value is not None and new.value is not None:
        if base.value != 0:
            ratio = new.value / base.value
        if metric.absolute:
            change = new.value - base.value
        elif base.value != 0:
            change = new.value / base.value - 1
        elif new.value == 0:
            change = 0.0
    row = Row(config, metric.name, metric.label, metric.unit, base, new, ratio, change, metric.absolute,
              "missing", gating)
    if base.value is None or new.value is None:
        row.note = "no value in " + " and ".join(
            s for s, side in (("base", base), ("new", new)) if side.value is None)
        return row
    if new.value == base.value:
        row.verdict = "unchanged"
        return row
    if change is None:  # base is 0, new is not: no ratio to judge
        row.verdict = "ok"
        row.note = "base is 0"
        return row

    # How much worse (positive) or better (negative) new is, in the threshold's terms.
    if metric.gate == "accuracy":
        worse_by, limit = base.value - new.value, th.max_accuracy_drop
    elif metric.higher_is_better:  # throughput: inverse of a time, judged like a slowdown
        worse_by = (base.value / new.value - 1) if new.value else math.inf
        limit = th.max_slowdown
    else:
        worse_by = change
        limit = th.max_memory_growth if metric.gate == "memory" else th.max_slowdown

    if worse_by > limit + _EPS:
        row.verdict = "regression" if gating else "worse"
    elif -worse_by > limit + _EPS:
        row.verdict = "improved"
    else:
        row.verdict = "ok"

    if metric.gate == "accuracy" and base.se is not None and new.se is not None and row.verdict != "ok":
        # The gate stays the threshold's; the note says when the difference is within the validation noise.
        if abs(new.value - base.value) <= 1.959964 * math.hypot(base.se, new.se):
            row.note = "within noise (95 %): more validation rows or repeats would tell"
    if base.n > 1 or new.n > 1:
        row.within_spread = (
            base.low <= new.value <= base.high  # type: ignore[operator]
            or new.low <= base.value <= new.high  # type: ignore[operator]
        )
        if row.within_spread:
            row.note = f"would be {row.verdict}" if row.verdict in ("regression", "worse", "improved") else ""
            row.verdict = "within noise"
    return row


def _env_flat(env: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    skip = ("time", "date", "started", "created", "resumed_from", "nodes")
    for key, value in env.items():
        if any(s in key.lower() for s in skip):
            continue
        if isinstance(value, dict):
            for k2, v2 in value.items():
                if not isinstance(v2, (dict, list)) and not any(s in k2.lower() for s in skip):
                    out[f"{key}.{k2}"] = v2
        elif isinstance(value, list):
            out[key] = json.dumps(value, sort_keys=True, default=str)
        else:
            out[key] = value
    return out


def _check_ignored(ignore: tuple[str, ...], records: list[dict[str, Any]]) -> None:
    """A name given to --ignore must be a setting of the runs' trials (a typo would silently change nothing)."""
    known: set[str] = set()
    for rec in records:
        if isinstance(rec.get("params"), dict):
            known.update(rec["params"])
    for name in ignore:
        if known and name not in known:
            import difflib

            near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}?" if near else f"expected one of {', '.join(sorted(known))}"
            raise ValueError(f"--ignore {name}: not a setting of these runs; {hint}")


def compare_runs(
    base_dir: str | os.PathLike,
    new_dir: str | os.PathLike,
    thresholds: Thresholds | None = None,
    ignore: Iterable[str] = (),
) -> CompareResult:
    """Compare run folder `new_dir` against `base_dir`; raises `StoreError` when either is not a run folder.

    `ignore` names further settings left out of the pairing key (for example `strategy`, to pair a `lab`
    run with a `fast` run of the same grid).
    """
    th = thresholds or Thresholds()
    base_dir, new_dir = Path(base_dir), Path(new_dir)
    base_records, new_records = _read(base_dir), _read(new_dir)
    ignore = tuple(ignore)
    _check_ignored(ignore, base_records + new_records)
    base_groups = group_by_config(base_records, ignore)
    new_groups = group_by_config(new_records, ignore)
    labels = config_labels(list(base_groups) + list(new_groups))
    result = CompareResult(base_dir, new_dir, th)

    base_env, new_env = _env_flat(read_env(base_dir)), _env_flat(read_env(new_dir))
    for key in sorted(set(base_env) | set(new_env)):
        if base_env.get(key) != new_env.get(key):
            result.env_differences.append((key, base_env.get(key), new_env.get(key)))

    for key, recs in base_groups.items():
        if key not in new_groups:
            result.only_in_base.extend(_trial_ref("base", labels[key], r) for r in recs)
    for key, recs in new_groups.items():
        if key not in base_groups:
            result.only_in_new.extend(_trial_ref("new", labels[key], r) for r in recs)

    for key, base_recs in base_groups.items():
        if key not in new_groups:
            continue
        new_recs = new_groups[key]
        label = labels[key]
        result.configs_compared += 1
        for side, recs in (("base", base_recs), ("new", new_recs)):
            result.not_compared.extend(_trial_ref(side, label, r) for r in recs if r.get("status") != "ok")
        base_ok = [r for r in base_recs if r.get("status") == "ok"]
        new_ok = [r for r in new_recs if r.get("status") == "ok"]

        # Status: a rising share of failed trials is a regression.
        base_bad = 1 - len(base_ok) / len(base_recs)
        new_bad = 1 - len(new_ok) / len(new_recs)
        if base_bad != new_bad or _status_text(base_recs) != _status_text(new_recs):
            verdict = "regression" if new_bad > base_bad else ("fixed" if new_bad < base_bad else "ok")
            row = Row(label, "status", "status", "", Side(None), Side(None), None, None, False, verdict,
                      gating=True, base_text=_status_text(base_recs), new_text=_status_text(new_recs))
            result.rows.append(row)
            if verdict == "regression":
                result.failed = True
                bad = Counter(str(r.get("status")) for r in new_recs if r.get("status") != "ok")
                what = ", ".join(f"{k}×{n}" for k, n in sorted(bad.items()))
                result.reasons.append(
                    f"{label}: status {row.base_text} in base, {row.new_text} in new ({what} of {len(new_recs)})"
                )
        if not base_ok or not new_ok:
            continue  # nothing measured to compare on one side; the status row says why

        sides = {m.name: (_side(base_ok, m), _side(new_ok, m)) for m in METRICS}
        epoch_b, epoch_n = sides["time_per_epoch"]
        time_gate = "time" if epoch_b.value is not None and epoch_n.value is not None else "time_fallback"
        for m in METRICS:
            b, n = sides[m.name]
            if m.skip_if_null and b.value is None and n.value is None:
                continue
            if m.gate in ("time", "time_fallback"):
                gating = m.gate == time_gate
            else:
                gating = m.gate is not None
            row = _compare_metric(label, m, b, n, gating, th)
            result.rows.append(row)
            if row.verdict == "regression":
                result.failed = True
                if m.gate == "accuracy":
                    result.reasons.append(
                        f"{label}: {m.label} dropped by {b.value - n.value:.4f} "  # type: ignore[operator]
                        f"({b.value:.4f} -> {n.value:.4f}; limit {th.max_accuracy_drop:.4f})"
                        + (f"; {row.note}" if row.note else "")
                    )
                else:
                    kind = "memory growth" if m.gate == "memory" else "slowdown"
                    limit = th.max_memory_growth if m.gate == "memory" else th.max_slowdown
                    result.reasons.append(
                        f"{label}: {kind}: {m.label} {_fmt_pct(row.change)} "  # type: ignore[arg-type]
                        f"({_fmt_num(b.value, m)} -> {_fmt_num(n.value, m)}; limit {_fmt_pct(limit)})"
                    )
    return result


# --------------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------------
def _fmt_num(value: Optional[float], metric: Metric | Row) -> str:
    if value is None:
        return "—"
    unit = metric.unit
    if unit == "s":
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:,.2f}"
    elif unit == "MiB":
        text = f"{value:,.0f}" if abs(value) >= 10 else f"{value:.2f}"
    elif unit == "":
        text = f"{value:.4f}"
    else:
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def _side_text(side: Side, row: Row) -> str:
    text = _fmt_num(side.value, row)
    if side.n > 1:
        lo = _fmt_num(side.low, row).removesuffix(f" {row.unit}")
        hi = _fmt_num(side.high, row).removesuffix(f" {row.unit}")
        text += f"\nmedian of {side.n}, " + (f"{lo}–{hi}" if side.low != side.high else "all equal")
    if side.interval is not None:
        text += f"\n95 % [{side.interval[0]:.4f}, {side.interval[1]:.4f}]"
    return text


_STYLES = {
    "regression": "bold red",
    "worse": "yellow",
    "improved": "green",
    "fixed": "green",
    "within noise": "dim",
    "missing": "dim",
    "unchanged": "",
    "ok": "",
}


def print_comparison(result: CompareResult, console: Any) -> None:
    """Print a comparison with rich: metric table, trials not compared, unmatched trials, verdict line."""
    from rich.table import Table
    from rich.text import Text

    th = result.thresholds
    console.print(Text.assemble(("base ", "bold"), str(result.base_dir), ("  new ", "bold"), str(result.new_dir)))
    console.print(
        Text(
            f"limits: slowdown {_fmt_pct(th.max_slowdown)}, memory growth {_fmt_pct(th.max_memory_growth)}, "
            f"accuracy drop {th.max_accuracy_drop:.4f}",
            style="dim",
        )
    )
    if result.rows:
        table = Table(title="Changes (new vs base)", show_lines=False)
        for name, justify in (("configuration", "left"), ("metric", "left"), ("base", "right"), ("new", "right"),
                              ("ratio", "right"), ("change", "right"), ("verdict", "left")):
            table.add_column(name, justify=justify, overflow="fold")
        last_config = None
        for row in result.rows:
            style = _STYLES.get(row.verdict, "")
            if row.metric == "status":
                base_text, new_text, ratio, change = row.base_text or "", row.new_text or "", "", ""
            else:
                base_text, new_text = _side_text(row.base, row), _side_text(row.new, row)
                ratio = "—" if row.ratio is None else f"×{row.ratio:.3f}"
                if row.change is None:
                    change = "—"
                elif row.absolute:
                    change = f"{row.change:+.4f}"
                else:
                    change = _fmt_pct(row.change)
            verdict = row.verdict + (f" ({row.note})" if row.note else "")
            if row.gating and row.metric != "status":
                label = row.label + " *"
            else:
                label = row.label
            table.add_row(
                Text("" if row.config == last_config else row.config),
                Text(label),
                Text(base_text),
                Text(new_text, style=style if row.verdict in ("regression", "improved", "fixed", "worse") else ""),
                Text(ratio),
                Text(change, style=style),
                Text(verdict, style=style),
                end_section=False,
            )
            last_config = row.config
        console.print(table)
        console.print(Text("* metric that can fail the comparison", style="dim"))
    else:
        console.print(Text("No configuration in common: nothing was compared.", style="yellow"))

    if result.not_compared:
        table = Table(title="Trials not measured (status other than ok)")
        for name in ("run", "configuration", "repeat", "trial", "status", "error"):
            table.add_column(name, overflow="fold")
        for t in result.not_compared:
            table.add_row(t.side, Text(t.config), str(t.repeat), t.trial_id,
                          Text(t.status, style="red" if t.side == "new" else "yellow"), Text(t.error or ""))
        console.print(table)

    unmatched = result.only_in_base + result.only_in_new
    if unmatched:
        table = Table(title="Trials in one run only (not compared)")
        for name in ("only in", "configuration", "repeat", "trial", "status"):
            table.add_column(name, overflow="fold")
        for t in unmatched:
            table.add_row(t.side, Text(t.config), str(t.repeat), t.trial_id, t.status)
        console.print(table)

    if result.env_differences:
        table = Table(title="Environment differences (timings may not be comparable)")
        for name in ("setting", "base", "new"):
            table.add_column(name, overflow="fold")
        for key, b, n in result.env_differences:
            table.add_row(Text(key), Text("—" if b is None else str(b)), Text("—" if n is None else str(n)))
        console.print(table)

    for reason in result.reasons:
        console.print(Text("✗ " + reason, style="red"))
    n_unmatched = len({t.config for t in result.only_in_base}) + len({t.config for t in result.only_in_new})
    summary = f"{result.configs_compared} configuration(s) compared"
    if n_unmatched:
        summary += f", {n_unmatched} in one run only"
    if result.failed:
        console.print(Text(f"FAIL: {len(result.reasons)} regression(s); {summary}", style="bold red"))
    else:
        noise = sum(1 for r in result.rows if r.verdict == "within noise")
        extra = f"; {noise} change(s) within noise" if noise else ""
        console.print(Text(f"PASS: no regression; {summary}{extra}", style="bold green"))
