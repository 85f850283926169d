"""The report as plain data (sections of paragraphs, tables, figures), rendered alike by `markdown` and `html`.

Text here is never markup: every string, from the run or not, is escaped by the renderer that writes it out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Union

import pandas as pd

from harness.report import fmt
from harness.report import forecast as fc
from harness.report.analysis import (BATCH, FROZEN, Analysis, accuracy_text, order_key, setting_columns, short_name,
                                     trial_interval)
from harness.report.figures import FigureFiles


@dataclass
class Cell:
    text: str
    sort: float | str | None = None  # what the HTML table sorts by (numbers sort as numbers)
    cls: str | None = None  # a CSS class from a fixed set ("status-ok", ...), never run data


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    sortable: bool = False
    caption: str | None = None
    key: str | None = None


@dataclass
class Para:
    text: str
    lead: str | None = None  # shown in bold before the text


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Pre:
    text: str
    caption: str | None = None


@dataclass
class Fig:
    files: FigureFiles


@dataclass
class Sub:
    """A sub-heading inside a section."""

    title: str


Block = Union[Para, Bullets, Pre, Fig, Table, Sub]


@dataclass
class Section:
    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class RunInfo:
    run_dir: str
    run_name: str | None
    env: dict[str, Any]
    grid_text: str | None
    skipped_lines: list[int] = field(default_factory=list)  # trials.jsonl lines that are not records


@dataclass
class Document:
    title: str
    intro: list[str]
    sections: list[Section]


# -- cells ----------------------------------------------------------------------------------------------------
def c_setting(v: Any) -> Cell:
    """A setting's value; sorts numerically where it is a number, 'all' after every number."""
    text = fmt.value(v)
    k = order_key(v)
    sort: float | str | None
    if k[0] == 0:
        sort = k[1]
    elif k[0] == 1:
        sort = 1e300
    elif k[0] == 2:
        sort = text
    else:
        sort = None
    return Cell(text, sort)


def c_num(v: Any, formatter) -> Cell:
    f = fmt.num(v)
    return Cell(formatter(v), f)


def c_status(row: Any) -> Cell:
    status = str(row["status"])
    text = status
    if status == "oom":
        where = []
        if not fmt.is_missing(row.get("oom_phase")):
            where.append(str(row["oom_phase"]))
        if fmt.num(row.get("oom_epoch")) is not None:
            where.append(f"epoch {fmt.value(row['oom_epoch'])}")
        if where:
            text = f"oom ({', '.join(where)})"
    cls = f"status-{status}" if status in ("ok", "oom", "timeout", "error") else "status-other"
    return Cell(text, status, cls)


def c_trial_accuracy(row: Any) -> Cell:
    """One trial's accuracy and its 95 % Wilson interval over its validation rows."""
    text = fmt.pct(row["val_accuracy"])
    iv = trial_interval(row["val_accuracy"], row.get("n_val"))
    if iv is not None:
        text += f" [{iv[0] * 100:.1f}, {iv[1] * 100:.1f}]"
    return Cell(text, fmt.num(row["val_accuracy"]))


def c_accuracy(row: Any) -> Cell:
    """A configuration's accuracy (median of repeats) and its 95 % interval."""
    return Cell(accuracy_text(row), fmt.num(row["val_accuracy"]))


def _any(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and df[col].notna().any()


def _energy(row: Any) -> float | None:
    vals = [fmt.num(row.get(c)) for c in ("energy_cpu_j", "energy_gpu_j")]
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def _gpu_peak(row: Any) -> float | None:
    for c in ("gpu_peak_used_mib", "cuda_peak_allocated_mib"):
        v = fmt.num(row.get(c))
        if v is not None:
            return v
    return None


_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def merged_notes(df: pd.DataFrame, col: str) -> list[str]:
    """The distinct notes of a column, notes that differ only in their numbers (sample counts, a trial's
    seconds) merged into one with each differing number shown as its range."""
    groups: dict[str, list[list[str]]] = {}
    for note in _unique_text(df, col):
        parts = _NUMBER.split(note)
        key = "".join("#" if i % 2 else p for i, p in enumerate(parts))
        groups.setdefault(key, []).append(parts)
    out = []
    for variants in groups.values():
        merged = []
        for i, part in enumerate(variants[0]):
            if i % 2 == 0:
                merged.append(part)
                continue
            values = sorted({v[i] for v in variants}, key=float)
            merged.append(values[0] if len(values) == 1 else f"{values[0]}–{values[-1]}")
        out.append("".join(merged))
    return out


def _unique_text(df: pd.DataFrame, col: str) -> list[str]:
    if col not in df.columns:
        return []
    seen: list[str] = []
    for v in df[col]:
        if not fmt.is_missing(v) and str(v) not in seen:
            seen.append(str(v))
    return seen


# -- sections -------------------------------------------------------------------------------------------------
def section_recommendation(a: Analysis) -> Section | None:
    rec = a.recommendation
    s = Section("recommendation", "Recommendation")
    if not rec.lines():
        return None
    s.blocks.append(Para(f"Target validation accuracy: {fmt.pct(rec.target_accuracy)}."))
    for lead, text in rec.entries():
        s.blocks.append(Para(text, lead=lead + ":"))
    pick = rec.cheapest or rec.most_accurate
    fit = a.fit_for(pick.config_key) if pick is not None else None
    if fit is not None:
        s.blocks.append(Para(fit.sentence(with_label=False), lead=f"Full set, {fit.label}:"))
    if a.budget is not None:
        for line in a.budget.lines:
            s.blocks.append(Para(line, lead="Budget:"))
    for line in forecast_lines(a, pick.config_key if pick is not None else None):
        s.blocks.append(Para(line, lead="Forecast:"))
    for note in rec.notes:
        s.blocks.append(Para(note))
    if a.methods is not None and len(a.methods):
        from harness.report.analysis import method_sentences

        first, *per_method = method_sentences(a.methods)
        s.blocks.append(Para(first))
        s.blocks.append(Bullets(per_method))
    return s


def forecast_lines(a: Analysis, config_key: str | None) -> list[str]:
    """One or two sentences on what more data and more epochs would buy the recommended configuration."""
    out = []
    for f in a.data_curves:
        if config_key is None or config_key not in f.config_keys:
            continue
        if f.fit.status != "fitted":
            out.append(f"{f.label}: no learning curve in rows ({f.fit.reason}).")
            continue
        preds = "; ".join(f"{p.x:,.0f} rows {p.text()}" for p in f.fit.predictions)
        out.append(f"{f.label}: more data is forecast to give {preds} ({int(fc.LEVEL * 100)} % intervals; the curve "
                   f"levels off at {fmt.pct(f.fit.asymptote)}).")
    for e in a.epoch_curves:
        if e.config_key != config_key:
            continue
        f = e.forecast
        if f.at_double is None:
            out.append(f"More epochs: {f.reason}.")
        else:
            out.append(f"More epochs ({f.verdict}): {f.epochs_run * 2} epochs are forecast to give "
                       f"{f.at_double.text()} against {fmt.pct(f.last_accuracy)} at {f.epochs_run}"
                       + (f", for {fmt.seconds(e.extra_seconds)} more" if e.extra_seconds is not None else "") + ".")
    return out


def _flat_env(env: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in env.items():
        name = f"{prefix}{k}"
        if k == "resumed_from":
            out.append((name, "yes (an earlier environment is kept in env.json)"))
        elif isinstance(v, dict):
            out.extend(_flat_env(v, name + "."))
        elif isinstance(v, list):
            if all(not isinstance(x, (dict, list)) for x in v):
                out.append((name, ", ".join(fmt.value(x) for x in v) or "—"))
            else:
                out.append((name, "; ".join(json.dumps(x, default=str) for x in v)))
        else:
            out.append((name, fmt.value(v)))
    return out


def section_setup(a: Analysis, runs: list[RunInfo]) -> Section:
    s = Section("setup", "Set-up")
    t = a.df
    for run in runs:
        title = f"Run {run.run_name}" if run.run_name else "Run"
        s.blocks.append(Sub(title))
        s.blocks.append(Para(run.run_dir, lead="Folder:"))
        if run.env:
            rows = [[Cell(k), Cell(v)] for k, v in _flat_env(run.env)]
            s.blocks.append(Table(["environment", "value"], rows, caption="From env.json"))
        else:
            s.blocks.append(Para("No env.json in this run folder."))
        if run.grid_text is not None:
            s.blocks.append(Pre(run.grid_text, caption="The grid file the run was started with (grid.toml)"))
    if not len(t):
        return s
    s.blocks.append(Sub("Data, model and settings"))
    rows = []

    def add(name: str, values: list[str]) -> None:
        if values:
            rows.append([Cell(name), Cell(", ".join(values))])

    def settings(col: str) -> list[str]:
        if col not in t.columns:
            return []
        vals = {fmt.value(v) for v in t[col] if not fmt.is_missing(v)}
        return sorted(vals, key=order_key)

    add("model", settings("model"))
    add("data source", settings("source"))
    add("dataset size (rows)", settings("dataset_size"))
    add("max length (tokens)", settings("max_length"))
    add("training rows per trial", settings("n_train"))
    add("validation rows per trial", settings("n_val"))
    add("labels", settings("num_labels"))
    add("devices", settings("device"))
    add("device names", _unique_text(t, "device_name"))
    add("hosts", _unique_text(t, "host"))
    if _any(t, "total_params"):
        add("model parameters", [fmt.count(v) for v in sorted(t["total_params"].dropna().unique())])
    if _any(t, "trainable_params") and FROZEN in t.columns:
        per = []
        for depth in sorted({fmt.value(v) for v in t[FROZEN]}, key=order_key):
            vals = t.loc[t[FROZEN].map(fmt.value) == depth, "trainable_params"].dropna()
            if len(vals):
                per.append(f"frozen={depth}: {fmt.count(vals.median())}")
        add("trainable parameters", per)
    if rows:
        s.blocks.append(Table(["what", "values"], rows))
    constant = []
    shown = {"model", "source", "dataset_size", "max_length", "device"}
    for col in setting_columns(a.trials):
        if col in a.varying or col in shown or col not in t.columns:
            continue
        vals = {fmt.value(v) for v in t[col]}
        if len(vals) == 1:
            constant.append([Cell(col), Cell(vals.pop())])
    if constant:
        s.blocks.append(Table(["setting shared by every trial", "value"], constant))
    if a.varying:
        s.blocks.append(Para(", ".join(f"{c} ({short_name(c)})" for c in a.varying), lead="Settings swept:"))
    budgets = []
    for col, what in (("memory_budget_gpu_mib", "GPU"), ("memory_budget_cpu_mib", "CPU")):
        if _any(t, col):
            budgets.append(f"{what}: " + ", ".join(fmt.mib(v) for v in sorted(t[col].dropna().unique())))
    s.blocks.append(Sub("Memory budgets"))
    s.blocks.append(Para("; ".join(budgets) if budgets else "No memory budget was set."))
    prices = merged_notes(t, "cost_note")
    s.blocks.append(Sub("Prices"))
    s.blocks.append(Bullets(prices) if prices else Para("No prices recorded: costs are not known."))
    notes = [f"memory — {n}" for n in merged_notes(t, "memory_note")]
    notes += [f"energy — {n}" for n in merged_notes(t, "energy_note")]
    notes += [f"MFU — {n}" for n in merged_notes(t, "mfu_note")]
    if notes:
        s.blocks.append(Sub("How things were measured"))
        s.blocks.append(Bullets(notes))
    return s


def _label_cells(row: Any, cols: list[str]) -> list[Cell]:
    return [c_setting(row[c]) for c in cols]


def section_trials(a: Analysis, runs: list[RunInfo]) -> Section:
    s = Section("trials", "Trials")
    t = a.trials
    if not len(t):
        s.blocks.append(Para("No trial records."))
        return s
    counts = a.status_counts
    s.blocks.append(Para(
        f"{len(t)} trials: " + ", ".join(f"{n} {st}" for st, n in sorted(counts.items()))
        + ". Click a column header in the HTML report to sort."
    ))
    multi_run = t["run_dir"].nunique() > 1 if "run_dir" in t.columns else False
    show_repeat = "repeat" in t.columns and t["repeat"].nunique() > 1
    gpu = _any(t, "gpu_peak_used_mib") or _any(t, "cuda_peak_allocated_mib")
    energy = _any(t, "energy_cpu_j") or _any(t, "energy_gpu_j")
    cols = (["run"] if multi_run else []) + ["trial"] + [short_name(c) for c in a.varying]
    cols += (["repeat"] if show_repeat else []) + ["status", "val accuracy", "epochs", "time per epoch", "total time",
                                                  "CPU peak RSS"]
    cols += (["GPU peak"] if gpu else []) + (["energy"] if energy else []) + ["cost"]
    order = sorted(range(len(t)), key=lambda i: tuple(order_key(t.iloc[i][c]) for c in a.varying)
                   + (order_key(t.iloc[i]["repeat"]),))
    rows = []
    for i in order:
        r = t.iloc[i]
        cells = [Cell(fmt.value(r["run_name"]))] if multi_run else []
        cells.append(Cell(str(r["trial_id"])))
        cells += _label_cells(r, a.varying)
        if show_repeat:
            cells.append(c_setting(r["repeat"]))
        cells.append(c_status(r))
        cells.append(c_trial_accuracy(r))
        cells.append(c_num(r["n_epochs_done"], fmt.count))
        cells.append(c_num(r["seconds_per_epoch"], fmt.seconds))
        cells.append(c_num(r["seconds_total"], fmt.seconds))
        cells.append(c_num(r["cpu_peak_rss_mib"], fmt.mib))
        if gpu:
            cells.append(c_num(_gpu_peak(r), fmt.mib))
        if energy:
            cells.append(c_num(_energy(r), fmt.joules))
        cells.append(c_num(r["cost_usd"], fmt.usd))
        rows.append(cells)
    s.blocks.append(Table(cols, rows, sortable=True, key="trials"))
    notes = ["Val accuracy is the last finished epoch's, with its 95 % Wilson interval over the trial's validation "
             "rows; time per epoch is the mean over finished epochs."]
    if energy:
        notes.append("Energy is CPU (RAPL) plus GPU (NVML) where each could be read.")
    if gpu:
        notes.append("GPU peak is the device-level peak (NVML) where measured, else the CUDA allocator's peak.")
    s.blocks.append(Bullets(notes))
    return s


def section_configurations(a: Analysis) -> Section | None:
    g = a.groups
    if not len(g) or not (g["n_trials"] > 1).any():
        return None
    s = Section("configurations", "Configurations across repeats")
    s.blocks.append(Para("Median over each configuration's ok repeats, with the range (min – max) and the "
                         "standard deviation where there are two or more. The accuracy's 95 % interval (in "
                         "brackets) is the wider of the Wilson interval over all its validation rows and the "
                         "t interval of its repeats' mean."))

    def spread(row: Any, m: str, f) -> Cell:
        med = fmt.num(row[m])
        if med is None:
            return Cell(fmt.MISSING, None)
        text = f(med)
        if row[m + "_n"] > 1:
            text += f" ({f(row[m + '_min'])} – {f(row[m + '_max'])}; sd {f(row[m + '_std'])})"
        return Cell(text, med)

    rows = []
    for _, r in g.iterrows():
        rows.append([
            Cell(str(r["label"])),
            Cell(str(r["statuses"]), r["n_trials"]),
            spread(r, "val_accuracy", fmt.pct),
            c_accuracy(r),
            spread(r, "seconds_per_epoch", fmt.seconds),
            spread(r, "seconds_total", fmt.seconds),
            spread(r, "cost_usd", fmt.usd),
        ])
    s.blocks.append(Table(["configuration", "trials", "val accuracy", "95 % interval", "time per epoch", "total time",
                           "cost"], rows, sortable=True, key="configurations"))
    return s


def section_problems(a: Analysis) -> Section | None:
    t = a.trials
    bad = t[t["status"] != "ok"] if len(t) else t
    if not len(bad):
        return None
    s = Section("problems", "OOM, timeouts and errors")
    s.blocks.append(Para("These trials did not finish; what they measured before the end is kept in the tables "
                         "above, and they are left out of the frontier and the recommendation."))
    rows = []
    for _, r in bad.iterrows():
        err = r.get("error")
        msg = "" if fmt.is_missing(err) else str(err)
        if len(msg) > 300:
            msg = msg[:299] + "…"
        rows.append([Cell(str(r["trial_id"])), Cell(", ".join(f"{short_name(c)}={fmt.value(r[c])}" for c in a.varying)),
                     c_status(r), c_num(r["n_epochs_done"], fmt.count), c_num(r["seconds_total"], fmt.seconds),
                     Cell(msg or fmt.MISSING)])
    s.blocks.append(Table(["trial", "configuration", "status", "epochs done", "time before the end", "message"],
                          rows, sortable=True, key="problems"))
    return s


def section_predicted(a: Analysis) -> Section | None:
    """Predicted vs measured, for records of `harness run --plan` (each carries the plan's `predicted`)."""
    import json

    from ..prediction import UNDER_PCT, score

    t = a.trials
    if not len(t) or "predicted" not in t.columns or not t["predicted"].notna().any():
        return None
    pairs = []
    for _, r in t[t["predicted"].notna()].iterrows():
        rec = {"trial_id": r["trial_id"], "status": r["status"], "seconds_total": fmt.num(r.get("seconds_total")),
               "params": {c: r.get(c) for c in ("model", "max_length", "batch_size", "frozen_layers", "strategy",
                                                "dataset_size", "adapter", "lora_r") if c in t.columns},
               "memory": {"cpu_peak_rss_mib": fmt.num(r.get("cpu_peak_rss_mib")),
                          "cuda_peak_allocated_mib": fmt.num(r.get("cuda_peak_allocated_mib"))},
               "epochs": json.loads(r["epoch_log"]) if isinstance(r.get("epoch_log"), str) else [],
               "machine_speed": {"before_gflops": fmt.num(r.get("speed_before_gflops")),
                                 "after_gflops": fmt.num(r.get("speed_after_gflops"))}}
        pairs.append((json.loads(r["predicted"]), rec))
    result = score(pairs)
    summ = result["summary"]
    s = Section("predicted", "Predicted vs measured")
    s.blocks.append(Para(
        "Each trial's forecast from `harness plan` (made before it ran) against what it measured. Error = "
        "(predicted - measured) / measured. Memory is the device's peak (CPU: RSS of the trial's process tree; "
        f"GPU: CUDA peak allocated); a memory under-prediction by more than {UNDER_PCT:g} % is flagged, since "
        "that is the error that crashes a trial. Time per epoch is training plus evaluation."))
    m, e = summ["memory"], summ["seconds_per_epoch"]
    lines = [f"Peak memory: median |error| {fmt.value(m['median_abs_pct'])} %, 90th percentile "
             f"{fmt.value(m['p90_abs_pct'])} % over {m['n']} trials; under-predicted by more than {UNDER_PCT:g} % in "
             f"{summ['memory_under_predicted_gt_5pct']} of {summ['memory_scored']}.",
             f"Seconds per epoch: median |error| {fmt.value(e['median_abs_pct'])} %, 90th percentile "
             f"{fmt.value(e['p90_abs_pct'])} % over {e['n']} trials."]
    at = summ.get("seconds_per_epoch_at_speed") or {}
    if at.get("n"):  # the machine's speed swings on a shared host: the forecast scaled to the speed each trial met
        lines.append(f"Seconds per epoch with each forecast scaled to the machine's speed during the trial (over its "
                     f"speed during calibration, both measured, meters/speed.py): median |error| "
                     f"{fmt.value(at['median_abs_pct'])} %, 90th percentile {fmt.value(at['p90_abs_pct'])} % over "
                     f"{at['n']} trials.")
    if summ["verdicts_scored"]:
        lines.append(f"fits/oom verdicts right in {summ['verdicts_right']} of {summ['verdicts_scored']} trials.")
    s.blocks.append(Bullets(lines))
    rows = []
    for r in result["trials"]:
        if "skipped" in r:
            continue
        flag = " (under)" if r["under_predicted"] else ""
        rows.append([Cell(str(r["trial_id"])),
                     Cell(", ".join(f"{k}={fmt.value(v)}" for k, v in r["params"].items() if k != "dataset_size")),
                     Cell(str(r["status"])),
                     c_num(r["peak_mib_predicted"], fmt.value), c_num(r["peak_mib_measured"], fmt.value),
                     Cell(("—" if r["memory_error_pct"] is None else f"{r['memory_error_pct']:+.1f} %") + flag,
                          r["memory_error_pct"], "status-oom" if r["under_predicted"] else None),
                     c_num(r["epoch_s_predicted"], fmt.seconds), c_num(r["epoch_s_measured"], fmt.seconds),
                     Cell("—" if r["epoch_error_pct"] is None else f"{r['epoch_error_pct']:+.1f} %", r["epoch_error_pct"])])
    s.blocks.append(Table(["trial", "configuration", "status", "peak MiB predicted", "peak MiB measured", "memory error",
                           "s/epoch predicted", "s/epoch measured", "time error"], rows, sortable=True, key="predicted"))
    return s


def _frontier_table(fr: pd.DataFrame, x: str) -> Table:
    rows = []
    for n, (_, r) in enumerate(fr.iterrows(), start=1):
        tie = r.get("within_noise_of")
        rows.append([Cell(str(n), n), Cell(str(r["label"])), c_accuracy(r),
                     Cell(f"within noise of {tie}: not shown to be more accurate" if isinstance(tie, str)
                          else ("cheapest" if n == 1 else "a real gain (95 %)")),
                     c_num(r["cost_usd"], fmt.usd),
                     c_num(r["seconds_total"], fmt.seconds), c_num(r["seconds_per_epoch"], fmt.seconds),
                     c_num(r["n_ok"], fmt.count)])
    what = "cost" if x == "cost_usd" else "total time"
    return Table(["#", "configuration", "val accuracy [95 %]", "step up the frontier", "cost", "total time",
                  "time per epoch", "ok repeats"], rows,
                 caption=f"Pareto frontier, accuracy vs {what}: no other configuration is at least as accurate "
                         f"for less {what}. A step whose accuracy is within noise of the cheaper one before it "
                         f"is no winner: the cheaper one is as good as far as these trials can tell.")


def section_frontier(a: Analysis, figs: dict[str, FigureFiles]) -> Section | None:
    if "accuracy_vs_cost" not in figs and "accuracy_vs_time" not in figs:
        return None
    s = Section("frontier", "Accuracy vs cost and time")
    if "accuracy_vs_cost" in figs:
        s.blocks.append(Fig(figs["accuracy_vs_cost"]))
        s.blocks.append(_frontier_table(a.frontier_cost, "cost_usd"))
    else:
        s.blocks.append(Para("No trial recorded a cost, so there is no accuracy-vs-cost frontier."))
    if "accuracy_vs_time" in figs:
        s.blocks.append(Fig(figs["accuracy_vs_time"]))
        s.blocks.append(_frontier_table(a.frontier_time, "seconds_total"))
    return s


def section_memory(a: Analysis, figs: dict[str, FigureFiles]) -> Section | None:
    lg = a.largest
    if "memory_heatmap" not in figs and not len(lg) and not len(a.searches):
        return None
    s = Section("memory", "Memory: peak by batch size and frozen depth")
    if "memory_heatmap" in figs:
        s.blocks.append(Fig(figs["memory_heatmap"]))
        for grid in a.memory_grids:
            rows = []
            for i, depth in enumerate(grid.depths):
                cells = [Cell(str(depth))]
                for j in range(len(grid.batches)):
                    v, n = grid.peak[i][j], grid.oom[i][j]
                    text = fmt.mib(v) if v is not None else ("" if n else fmt.MISSING)
                    if n:
                        text = (text + " " if text else "") + ("OOM" if v is None else f"(OOM ×{n})")
                    cells.append(Cell(text, v, "status-oom" if n and v is None else None))
                rows.append(cells)
            s.blocks.append(Table(["frozen ↓ batch →"] + [str(b) for b in grid.batches], rows,
                                  caption=f"{grid.title}, largest peak per cell (MiB); OOM: ran out of memory."))
    if len(lg):
        rows = []
        for _, r in lg.iterrows():
            budget = "none set" if r["budget_kind"] == "none" else f"{r['budget_kind']} {fmt.mib(r['budget_mib'])}"
            rows.append([Cell(str(r["frozen"])), Cell(budget, fmt.num(r["budget_mib"])),
                         c_num(r["largest_batch"], fmt.count), c_num(r["peak_mib"], fmt.mib),
                         c_num(r["smallest_oom_batch"], fmt.count)])
        s.blocks.append(Table(["frozen", "memory budget", "largest batch that fits", "its peak",
                               "smallest batch that ran out of memory"], rows,
                              caption="Largest batch that ran and stayed within each budget (per frozen depth)."))
    if len(a.searches):
        rows = []
        sr = a.searches
        extra = [c for c in (FROZEN, "device", "max_length", "model") if c in sr.columns]
        for _, r in sr.iterrows():
            found = r.get("max_batch")
            rows.append([Cell(str(r["trial_id"])), *[c_setting(r[c]) for c in extra],
                         c_setting(r[BATCH]) if BATCH in sr.columns else Cell(fmt.MISSING), c_status(r),
                         c_num(found, fmt.count), c_num(_gpu_peak(r) or r.get("cpu_peak_rss_mib"), fmt.mib)])
        s.blocks.append(Table(["search record"] + [short_name(c) for c in extra] +
                              ["batch tried", "status", "largest batch found", "peak"], rows, sortable=True,
                              caption="Largest-batch search (params.search = max_batch)."))
    return s


def section_curves(a: Analysis, figs: dict[str, FigureFiles]) -> Section | None:
    if "learning_curves" not in figs:
        return None
    s = Section("curves", "Learning curves")
    s.blocks.append(Fig(figs["learning_curves"]))
    rows = []
    plateau = {e.config_key: e.forecast for e in a.epoch_curves}
    for c in sorted(a.curves, key=lambda c: -(c.final_val_accuracy if c.final_val_accuracy is not None else -1)):
        d_acc, d_loss, verdict = c.verdict()
        f = plateau.get(c.config_key)
        if f is not None and f.at_double is not None:
            verdict = f"{f.verdict} (power-law fit: {f.at_double.text()} at {2 * f.epochs_run} epochs)"
        accs = [v for v in c.val_accuracy if v is not None]
        rows.append([
            Cell(c.label), c_num(len(c.epochs), fmt.count),
            Cell(f"{fmt.pct(accs[0])} → {fmt.pct(accs[-1])}" if accs else fmt.MISSING, accs[-1] if accs else None),
            c_num(d_acc, fmt.pp),
            Cell(f"{d_loss * 100 + 0.0:+.1f} %".replace("-0.0 %", "+0.0 %") if d_loss is not None else fmt.MISSING,
                 d_loss),
            Cell(verdict),
        ])
    s.blocks.append(Table(["configuration", "epochs", "val accuracy first → last", "last epoch: accuracy change",
                           "last epoch: val loss change", "would more epochs help?"], rows, sortable=True,
                          caption="Where 4 or more epochs were run, the answer is the plateau test of the "
                                  "forecast section (a power law in epochs, 80 % interval); with fewer: still "
                                  "improving if the last epoch gained over 0.5 pp of accuracy, or the validation loss "
                                  "still fell by over 1 %."))
    return s


def section_scaling(a: Analysis, figs: dict[str, FigureFiles]) -> Section | None:
    if not a.fits:
        return None
    s = Section("scaling", "Time per epoch vs dataset size")
    if "time_vs_size" in figs:
        s.blocks.append(Fig(figs["time_vs_size"]))
    rows = []
    for f in a.fits:
        rows.append([
            Cell(f.label), c_num(f.n_points, fmt.count), c_num(f.n_sizes, fmt.count),
            c_num(f.slope, fmt.per_row), c_num(f.intercept, fmt.seconds),
            Cell(f"{f.r2:.3f}" if f.r2 is not None else fmt.MISSING, f.r2),
            c_num(f.predicted_s_per_epoch, fmt.seconds), c_num(f.once_s, fmt.seconds),
            c_num(f.predicted_total_s, fmt.hours),
            c_num(f.predicted_cost_usd, fmt.usd),
        ])
    n = f"{a.extrapolate_rows:,} rows"
    s.blocks.append(Table(["configuration", "trials", "sizes", "slope", "intercept", "R²", f"per epoch at {n}",
                           f"once at {n}", f"total at {n}", f"cost at {n}"], rows, sortable=True,
                          caption="Least-squares fit of seconds per epoch against rows. The total adds the one-off "
                                  "phases that grow with the rows (tokenising, the frozen-layer cache: a line of "
                                  "their own), the measured fixed time (start-up, loading), and uses each trial's "
                                  "own cost per second."))
    s.blocks.append(Bullets([f.sentence() for f in a.fits]))
    if any(f.n_sizes == 2 for f in a.fits):
        s.blocks.append(Para("A fit through two sizes has R² = 1 by construction; add a third size to test it."))
    return s


def section_frozen(a: Analysis, figs: dict[str, FigureFiles]) -> Section | None:
    fz = a.frozen
    if fz is None or not len(fz):
        return None
    s = Section("frozen", "Frozen depth: accuracy against time and memory")
    if "frozen_depth" in figs:
        s.blocks.append(Fig(figs["frozen_depth"]))
    base = fz[fz["is_baseline"]].iloc[0]
    rows = []
    for _, r in fz.iterrows():
        b = bool(r["is_baseline"])
        rows.append([
            c_setting(r["frozen"]), c_num(r["n_configs"], fmt.count), c_num(r["trainable_params"], fmt.count),
            c_num(r["val_accuracy"], fmt.pct),
            Cell("baseline", 0.0) if b else c_num(r["accuracy_change"], fmt.pp),
            c_num(r["seconds_per_epoch"], fmt.seconds),
            Cell("baseline", 0.0) if b else c_num(r["time_saved"], fmt.rel),
            c_num(r["peak_mib"], fmt.mib),
            Cell("baseline", 0.0) if b else c_num(r["memory_saved"], fmt.rel),
        ])
    s.blocks.append(Table(["frozen", "configurations", "trainable parameters", "val accuracy", "accuracy vs baseline",
                           "time per epoch", "time per epoch vs baseline", "peak memory", "memory vs baseline"],
                          rows, sortable=True,
                          caption=f"Medians; changes are against frozen={base['frozen']} on otherwise identical "
                                  "configurations."))
    items = []
    for _, r in fz[~fz["is_baseline"]].iterrows():
        if fmt.num(r["accuracy_change"]) is None:
            continue
        bits = [f"freezing {r['frozen']} layers instead of {base['frozen']} changes validation accuracy by "
                f"{fmt.pp(r['accuracy_change'])}"]
        if fmt.num(r["time_saved"]) is not None:
            bits.append(f"time per epoch {fmt.rel(r['time_saved'])}")
        if fmt.num(r["memory_saved"]) is not None:
            bits.append(f"peak memory {fmt.rel(r['memory_saved'])}")
        items.append(", ".join(bits) + f" ({fmt.value(r['n_matched'])} matched configurations).")
    if items:
        s.blocks.append(Bullets([i[0].upper() + i[1:] for i in items]))
    return s


def section_methods(a: Analysis, figs: dict[str, FigureFiles]) -> Section | None:
    mc = a.methods
    if mc is None or not len(mc):
        return None
    s = Section("methods", "Freezing, LoRA and full fine-tuning")
    if "methods" in figs:
        s.blocks.append(Fig(figs["methods"]))
    rows = []
    for _, r in mc.iterrows():
        rows.append([
            Cell(str(r["method"])), Cell(str(r["method_label"])), c_num(r["trainable_params"], fmt.count),
            c_num(r["val_accuracy"], fmt.pct),
            Cell(f"{fmt.pct(r['accuracy_low'])} – {fmt.pct(r['accuracy_high'])}"),
            Cell("yes" if bool(r["tied"]) else "no"),
            c_num(r["seconds_total"], fmt.seconds), c_num(r["seconds_per_epoch"], fmt.seconds),
            c_num(r["peak_mib"], fmt.mib), c_num(r["cost_usd"], fmt.usd), c_num(r["n_ok"], fmt.count),
        ])
    s.blocks.append(Table(["method", "configuration", "trainable parameters", "val accuracy", "interval",
                           "overlaps the most accurate's", "total time", "time per epoch", "peak memory", "cost",
                           "repeats"], rows, sortable=True,
                          caption="Medians over ok repeats; interval: the range over repeats widened by the Wilson "
                                  "95 % interval on the validation rows. LoRA keeps every weight of the encoder frozen and trains "
                                  "low-rank adapters in the blocks above the frozen ones, and the head; with fast, the "
                                  "frozen blocks below run once (the cache)."))
    return s


def section_strategies(a: Analysis, figs: dict[str, FigureFiles]) -> Section | None:
    st = a.strategies
    if st is None or not len(st):
        return None
    s = Section("strategies", "lab vs fast")
    sp = pd.to_numeric(st["speedup_epoch"], errors="coerce").dropna()
    tot = pd.to_numeric(st["speedup_total"], errors="coerce").dropna()
    dacc = pd.to_numeric(st["accuracy_change"], errors="coerce").dropna()
    # The total leads: per epoch, a cached trial hides the cache it built once.
    parts = []
    if len(tot):
        parts.append(f"fast takes {fmt.ratio(1 / tot.median())} the total time of lab, loading and the frozen-layer "
                     f"cache included (median speed-up {fmt.ratio(tot.median())}, range {fmt.ratio(tot.min())} – "
                     f"{fmt.ratio(tot.max())})")
    if len(sp):
        parts.append(f"per epoch alone the median speed-up is {fmt.ratio(sp.median())} (range {fmt.ratio(sp.min())} – "
                     f"{fmt.ratio(sp.max())})")
    if parts:
        s.blocks.append(Para(
            f"Over {len(st)} configurations run both ways, " + "; ".join(parts)
            + (f"; validation accuracy changes by {fmt.pp(dacc.median())} (median)." if len(dacc) else ".")))
    if "strategies" in figs:
        s.blocks.append(Fig(figs["strategies"]))
    rows = []
    for _, r in st.iterrows():
        rows.append([
            Cell(str(r["label"])),
            c_num(r["lab_seconds_per_epoch"], fmt.seconds), c_num(r["fast_seconds_per_epoch"], fmt.seconds),
            c_num(r["speedup_epoch"], fmt.ratio),
            c_num(r["lab_seconds_total"], fmt.seconds), c_num(r["fast_seconds_total"], fmt.seconds),
            c_num(r["speedup_total"], fmt.ratio),
            c_num(r["lab_val_accuracy"], fmt.pct), c_num(r["fast_val_accuracy"], fmt.pct),
            c_num(r["accuracy_change"], fmt.pp),
        ])
    s.blocks.append(Table(["configuration", "lab: time per epoch", "fast: time per epoch", "speed-up per epoch",
                           "lab: total", "fast: total", "speed-up total", "lab: val accuracy", "fast: val accuracy",
                           "accuracy change"], rows, sortable=True,
                          caption="Medians over ok repeats; speed-up is lab time / fast time."))
    return s


def skipped_sentence(run: RunInfo) -> str:
    lines = run.skipped_lines
    shown = ", ".join(str(n) for n in lines[:10]) + (", ..." if len(lines) > 10 else "")
    return (f"{run.run_dir}: {len(lines)} line{'s' if len(lines) != 1 else ''} of trials.jsonl "
            f"{'are' if len(lines) != 1 else 'is'} not a complete record and {'were' if len(lines) != 1 else 'was'} "
            f"skipped (line {shown}); `harness run --resume` sets such lines aside in trials.rejected.jsonl.")


def build(a: Analysis, runs: list[RunInfo], figs: dict[str, FigureFiles], *, target_source: str,
          rows_source: str) -> Document:
    names = []
    for r in runs:
        if r.run_name and r.run_name not in names:
            names.append(r.run_name)
    title = "Benchmark report: " + (", ".join(names) if names else "(no trials)")
    counts = a.status_counts
    intro = [
        f"{len(a.trials)} trials from {len(runs)} run folder{'s' if len(runs) != 1 else ''}"
        + (": " + ", ".join(f"{n} {st}" for st, n in sorted(counts.items())) if counts else "")
        + (f"; {len(a.searches)} largest-batch search record{'s' if len(a.searches) != 1 else ''}"
           if len(a.searches) else "") + ".",
        f"Target accuracy {fmt.pct(a.target_accuracy)} ({target_source}); the full set is "
        f"{a.extrapolate_rows:,} rows ({rows_source}).",
        "Generated " + datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") + ".",
    ]
    intro += [skipped_sentence(r) for r in runs if r.skipped_lines]
    sections = [
        section_recommendation(a),
        section_setup(a, runs),
        section_trials(a, runs),
        section_configurations(a),
        section_problems(a),
        section_predicted(a),
        section_frontier(a, figs),
        section_memory(a, figs),
        section_curves(a, figs),
        section_scaling(a, figs),
        section_forecast(a, figs),
        section_frozen(a, figs),
        section_methods(a, figs),
        section_strategies(a, figs),
    ]
    return Document(title, intro, [s for s in sections if s is not None])


def section_forecast(a: Analysis, figs: dict[str, FigureFiles]) -> Section | None:
    """What more data or more epochs would buy: the learning curves in rows and in epochs (docs/forecast.md)."""
    if not a.data_curves and not a.epoch_curves:
        return None
    s = Section("forecast", "What more data or more epochs would buy")
    level = f"{int(fc.LEVEL * 100)} %"
    s.blocks.append(Para(
        "Validation error is fitted as a saturating power law, error = a + b·(x/x0)^−c, against rows (configurations "
        "that differ only in dataset size) and against epochs (each configuration's per-epoch validation "
        f"accuracy). Intervals are {level}, from a bootstrap over the trials (seeds, repeats; a lone trial's "
        "accuracy redrawn from its binomial) plus the validation noise of one run at the predicted size. Below 3 "
        "sizes (4 epochs) there is no fit, and the table says so. The curves are also in forecast.json."))
    if "data_curve" in figs:
        s.blocks.append(Fig(figs["data_curve"]))
    if a.data_curves:
        rows = []
        for f in a.data_curves:
            fit = f.fit
            sizes = ", ".join(f"{x:,.0f}" for x in fit.x_sizes)
            if fit.status != "fitted":
                rows.append([Cell(f.label), Cell(sizes), Cell(fit.reason or fit.status), Cell(fmt.MISSING),
                             Cell(fmt.MISSING), Cell(fmt.MISSING), Cell(fmt.MISSING)])
                continue
            p = fit.params or {}
            law = f"a={p.get('a', 0):.3f}, b={p.get('b', 0):.3f}, c={p.get('c', 0):.2f}, x0={fit.x0:,.0f}"
            asym = fmt.pct(fit.asymptote)
            if fit.asymptote_interval:
                asym += f" [{fit.asymptote_interval[0] * 100:.1f}, {fit.asymptote_interval[1] * 100:.1f}]"
            preds = "; ".join(f"{q.x:,.0f}: {q.text()}" for q in fit.predictions)
            unit = "$" if f.cost is not None and f.cost.usd_per_s else "s"
            cpp = "; ".join(f"to {x:,.0f}: {(fmt.usd(v) if unit == '$' else fmt.seconds(v)) if v is not None else fmt.MISSING}"
                            for x, v in f.cost_per_point) or fmt.MISSING
            target = (f"{f.target_rows:,.0f} rows" + (f", {fmt.hours(f.cost.seconds(f.target_rows))}" if f.cost else "")
                      if f.target_rows is not None else f"not reached (levels off at {fmt.pct(fit.asymptote)})")
            rows.append([Cell(f.label), Cell(sizes), Cell(law), Cell(asym), Cell(preds), Cell(target), Cell(cpp)])
        s.blocks.append(Table(["configuration", "sizes measured (rows)", "fit", "levels off at",
                               f"predicted accuracy [{level}]", f"to reach {fmt.pct(a.target_accuracy)}",
                               "cost per extra point of accuracy"], rows,
                              caption="Accuracy against rows; predictions at the report's extrapolated size and at "
                                      "2x and 4x the largest size run. Cost per point: the extra cost of one trial "
                                      "from the largest size run to each size, per percentage point the curve gains."))
    if "epoch_curve" in figs:
        s.blocks.append(Fig(figs["epoch_curve"]))
    if a.epoch_curves:
        rows = []
        for e in a.epoch_curves:
            f = e.forecast
            rows.append([
                Cell(e.label), c_num(f.epochs_run, fmt.count), c_num(f.last_accuracy, fmt.pct),
                Cell(f.at_double.text() if f.at_double else fmt.MISSING, f.at_double.accuracy if f.at_double else None),
                Cell(f"{f.gain[0] * 100:+.1f} pp [{f.gain[1] * 100:+.1f}, {f.gain[2] * 100:+.1f}]" if f.gain else fmt.MISSING),
                c_num(e.extra_seconds, fmt.seconds), Cell(f.verdict), Cell(f.reason),
            ])
        s.blocks.append(Table(["configuration", "epochs run", "val accuracy at the last epoch",
                               f"predicted at 2x the epochs [{level}]", "gain", "extra time", "verdict", "why"],
                              rows, sortable=True,
                              caption="Plateau test: 'still improving' where the whole interval of the gain from E "
                                      "to 2E epochs is above 1 pp, 'plateau' where it is below, 'overfitting' where "
                                      "the validation loss rises while accuracy does not gain."))
    return s
