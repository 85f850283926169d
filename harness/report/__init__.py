"""The report: one or more run folders -> report.md, report.html, figures/*.png|svg, trials.csv, trials.parquet.

    result = render_report([Path("results/quick-20261123T060000Z")])
    print_summary(result, rich.console.Console())

The numbers are computed in `analysis` (no rendering), drawn in `figures`, laid out once in `document`, and
written by `markdown` and `html`.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness import results
from harness.report import analysis as _analysis
from harness.report import document as _document
from harness.report import figures as _figures
from harness.report import fmt
from harness.report import forecast as _fc
from harness.report import html as _html
from harness.report import markdown as _markdown
from harness.report.analysis import (
    DEFAULT_EXTRAPOLATE_ROWS,
    DEFAULT_TARGET_ACCURACY,
    Analysis,
    Pick,
    Recommendation,
)
from harness.report.figures import FigureFiles
from harness.store import TRIALS, StoreError, read_env, read_grid_text, safe_name, unreadable_lines

__all__ = [
    "ReportResult",
    "render_report",
    "print_summary",
    "Recommendation",
    "Pick",
    "FigureFiles",
    "DEFAULT_TARGET_ACCURACY",
    "DEFAULT_EXTRAPOLATE_ROWS",
]

REPORTS_ROOT = Path("reports")
FIGURE_KEYS = ("accuracy_vs_cost", "accuracy_vs_time", "memory_heatmap", "learning_curves", "time_vs_size",
               "frozen_depth", "strategies", "data_curve", "epoch_curve")


@dataclass
class ReportResult:
    out_dir: Path
    markdown_path: Path
    html_path: Path
    csv_path: Path
    parquet_path: Path
    figures: dict[str, FigureFiles]  # key -> .png and .svg paths
    recommendation: Recommendation
    frontier_cost: pd.DataFrame  # configurations on the accuracy-vs-cost Pareto frontier, cheapest first
    frontier_time: pd.DataFrame  # the same against total time
    sections: list[str]  # keys of the sections written, in order
    target_accuracy: float
    extrapolate_rows: int
    status_counts: dict[str, int]
    run_dirs: list[Path]
    analysis: Analysis = field(repr=False)
    warnings: list[str] = field(default_factory=list)  # what the reader must know (lines skipped)


def _report_settings(run_dirs: list[Path]) -> dict[str, Any]:
    """The first `[report]` table found in the runs' grid copies (a grid that does not parse is skipped)."""
    for d in run_dirs:
        text = read_grid_text(d) if d.is_dir() else None
        if not text:
            continue
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue
        section = data.get("report")
        if isinstance(section, dict) and section:
            return section
    return {}


def _choose(given: Any, grid: dict[str, Any], key: str, default: Any) -> tuple[Any, str]:
    if given is not None:
        return given, "given"
    value = grid.get(key)
    if value is not None and not isinstance(value, bool) and isinstance(value, (int, float)):
        return value, "from the grid's [report] table"
    return default, "default"


def _run_name(df: pd.DataFrame) -> str | None:
    if "run_name" in df.columns:
        for v in df["run_name"]:
            if not fmt.is_missing(v):
                return str(v)
    return None


def _refuse_repeats(dirs: list[Path]) -> None:
    """One run given twice (or as its folder and its trials.jsonl) would count every trial twice."""
    seen: dict[Path, Path] = {}
    for d in dirs:
        if not str(d).strip():
            raise StoreError("a run folder was given as an empty name (an unset shell variable?)")
        folder = d.parent if d.name == "trials.jsonl" else d
        try:
            key = folder.resolve()
        except OSError:
            continue
        if key in seen:
            raise StoreError(f"{d}: the same run as {seen[key]}, given twice; each run counts once (give it once)")
        seen[key] = d


def render_report(
    run_dirs: Iterable[str | os.PathLike] | str | os.PathLike,
    out_dir: Path | None = None,
    *,
    target_accuracy: float | None = None,
    extrapolate_rows: int | None = None,
    budget_hours: float | None = None,
    budget_usd: float | None = None,
) -> ReportResult:
    """Read the run folders (or report tables), analyse, draw, and write the report. Raises StoreError for a
    folder that is not a run folder or an output folder that cannot be written."""
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    dirs = [Path(p) for p in run_dirs]
    if not dirs:
        raise StoreError("no run folder given")
    _refuse_repeats(dirs)
    frames, runs = [], []
    for d in dirs:
        df = results.load(d)
        frames.append(df)
        folder = d.parent if d.name == TRIALS else d
        runs.append(_document.RunInfo(str(d), _run_name(df), read_env(d) if d.is_dir() else {},
                                      read_grid_text(d) if d.is_dir() else None,
                                      unreadable_lines(folder) if folder.is_dir() else []))
    df = results.merge_frames(frames)

    grid = _report_settings(dirs)
    target, target_src = _choose(target_accuracy, grid, "target_accuracy", DEFAULT_TARGET_ACCURACY)
    rows, rows_src = _choose(extrapolate_rows, grid, "extrapolate_rows", DEFAULT_EXTRAPOLATE_ROWS)
    target = float(target)
    if not (0.0 <= target <= 1.0) or math.isnan(target):
        raise ValueError(f"target accuracy {target!r}: expected a fraction from 0 to 1")
    if int(rows) != rows or int(rows) < 1:
        raise ValueError(f"extrapolate rows {rows!r}: expected a positive whole number")
    rows = int(rows)
    hours, _ = _choose(budget_hours, grid, "budget_hours", None)
    usd, _ = _choose(budget_usd, grid, "budget_usd", None)
    for what, v in (("budget hours", hours), ("budget usd", usd)):
        if v is not None and not (float(v) > 0 and math.isfinite(float(v))):
            raise ValueError(f"{what} {v!r}: expected a positive number")

    name = next((r.run_name for r in runs if r.run_name), None) or dirs[0].name
    out = Path(out_dir) if out_dir is not None else REPORTS_ROOT / safe_name(name)
    fig_dir = out / "figures"
    try:
        fig_dir.mkdir(parents=True, exist_ok=True)
        for key in FIGURE_KEYS:  # figures of an earlier report into the same folder
            for ext in (".png", ".svg"):
                (fig_dir / f"{key}{ext}").unlink(missing_ok=True)
    except OSError as exc:
        raise StoreError(f"{out}: report folder is not writable ({exc.strerror or exc})") from None

    a = _analysis.analyse(df, target_accuracy=target, extrapolate_rows=rows,
                          budget_hours=None if hours is None else float(hours),
                          budget_usd=None if usd is None else float(usd))
    figs = _figures.make_all(a, fig_dir)
    doc = _document.build(a, runs, figs, target_source=target_src, rows_source=rows_src)

    paths = {"md": out / "report.md", "html": out / "report.html", "csv": out / "trials.csv",
             "parquet": out / "trials.parquet", "forecast": out / "forecast.json"}
    try:
        paths["md"].write_text(_markdown.render(doc, out), encoding="utf-8")
        paths["html"].write_text(_html.render(doc), encoding="utf-8")
        df.to_csv(paths["csv"], index=False)
        df.to_parquet(paths["parquet"], index=False)
        paths["forecast"].write_text(_forecast_json(a), encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"{out}: cannot write the report ({exc.strerror or exc})") from None

    return ReportResult(
        out_dir=out,
        markdown_path=paths["md"],
        html_path=paths["html"],
        csv_path=paths["csv"],
        parquet_path=paths["parquet"],
        figures=figs,
        recommendation=a.recommendation,
        frontier_cost=a.frontier_cost,
        frontier_time=a.frontier_time,
        sections=[s.key for s in doc.sections],
        target_accuracy=target,
        extrapolate_rows=rows,
        status_counts=a.status_counts,
        run_dirs=dirs,
        analysis=a,
        warnings=[_document.skipped_sentence(r) for r in runs if r.skipped_lines],
    )


def _forecast_json(a: Analysis) -> str:
    """forecast.json: the learning curves as data (docs/forecast.md, "forecast.json")."""
    configs = []
    epochs = {e.config_key: e for e in a.epoch_curves}
    for f in a.data_curves:
        configs.append({"kind": "rows", **f.to_json(a.target_accuracy)})
    for e in epochs.values():
        configs.append({"kind": "epochs", "label": e.label, "config_keys": [e.config_key],
                        "extra_seconds_at_double": e.extra_seconds, "extra_usd_at_double": e.extra_usd,
                        **e.forecast.to_json()})
    settings = {"target_accuracy": a.target_accuracy, "extrapolate_rows": a.extrapolate_rows,
                "budget_hours": a.budget.hours if a.budget else None, "budget_usd": a.budget.usd if a.budget else None,
                "budget_answer": a.budget.lines if a.budget else None,
                "budget_choice": a.budget.choice if a.budget else None}
    return _fc.forecast_json(configs, settings)


def _frontier_line(fr: pd.DataFrame, x: str) -> str | None:
    if fr is None or not len(fr):
        return None
    f = fmt.usd if x == "cost_usd" else fmt.seconds
    parts = []
    for _, r in fr.iterrows():
        tie = r.get("within_noise_of")
        parts.append(f"{r['label']} ({_analysis.accuracy_text(r)}, {f(r[x])}"
                     + (f"; within noise of {tie}" if isinstance(tie, str) else "") + ")")
    what = "cost" if x == "cost_usd" else "time"
    return f"Pareto frontier, accuracy vs {what} (95 % intervals): " + " → ".join(parts)


def print_summary(result: ReportResult, console: Any) -> None:
    """The recommendation and the frontier in a few lines. Run data is printed as text, never as rich markup."""
    from rich.text import Text

    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.status_counts.items())) or "no trials"
    console.print(Text.assemble(("Report: ", "bold"), str(result.html_path),
                                f"  (also report.md, {len(result.figures)} figures, trials.csv/.parquet)"))
    console.print(Text(f"Trials: {counts}"))
    for warning in result.warnings:
        console.print(Text(warning, style="yellow"))
    for line in result.recommendation.lines():
        console.print(Text(line))
    if result.analysis.budget is not None:
        for line in result.analysis.budget.lines:
            console.print(Text(line))
    for fr, x in ((result.frontier_cost, "cost_usd"), (result.frontier_time, "seconds_total")):
        line = _frontier_line(fr, x)
        if line:
            console.print(Text(line))
