"""The report's figures (matplotlib, Agg canvas, no pyplot state). Each is written as PNG and SVG.

Text from the run (labels built from settings) is drawn with math text off, so a `$` in a data path is just a
dollar sign; SVG text is drawn as paths, so nothing from the run can become markup in the SVG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from harness.report import fmt
from harness.report.analysis import Analysis

RC = {
    "text.parse_math": False,
    "svg.fonttype": "path",
    "svg.hashsalt": "harness-report",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}

MAX_SERIES = 12
FRONTIER_COLOR = "#d62728"


@dataclass
class FigureFiles:
    key: str
    title: str
    caption: str
    png: Path
    svg: Path


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _new(w: float, h: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _save(fig: Figure, out: Path, key: str, title: str, caption: str) -> FigureFiles:
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{key}.png", out / f"{key}.svg"
    fig.savefig(png, dpi=110, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None, "Creator": None})
    return FigureFiles(key, title, caption, png, svg)


def _color(i: int, n: int):
    """Distinct colours: tab10 up to ten series, then tab20's dark shades before its light ones."""
    if n <= 10:
        return matplotlib.colormaps["tab10"](i % 10)
    j = i % 20
    return matplotlib.colormaps["tab20"](2 * j if j < 10 else 2 * (j - 10) + 1)


def _pct_axis(ax, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    # decimals=None: as many decimals as the axis's span needs (ticks 2.5 points apart are not all rounded to
    # whole percents, which printed "78 %" twice on one axis)
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(xmax=1.0, decimals=None, symbol=" %"))


def _maybe_log(ax, values: list[float], axis: str = "x") -> None:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if len(vals) >= 2 and max(vals) / min(vals) > 50:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def accuracy_vs(a: Analysis, x: str, out: Path) -> FigureFiles | None:
    g = a.groups
    if not len(g) or x not in g.columns:
        return None
    d = g[g[x].notna() & g["val_accuracy"].notna()]
    if not len(d):
        return None
    frontier = a.frontier_cost if x == "cost_usd" else a.frontier_time
    xlabel = "cost per trial (USD)" if x == "cost_usd" else "total time per trial, loading included (s)"
    key = "accuracy_vs_cost" if x == "cost_usd" else "accuracy_vs_time"
    what = "cost" if x == "cost_usd" else "time"
    fig, (ax,) = _new(8, 5)
    t = a.trials
    ok = t[(t["status"] == "ok") & t[x].notna() & t["val_accuracy"].notna()]
    if len(ok) > len(d):
        ax.scatter(ok[x], ok["val_accuracy"], s=10, color="#bbbbbb", label="single trials", zorder=1)
    xerr = [d[x] - d[x + "_min"], d[x + "_max"] - d[x]]
    yerr = [d["val_accuracy"] - d["val_accuracy_min"], d["val_accuracy_max"] - d["val_accuracy"]]
    has_spread = (d["n_ok"] > 1).any()
    has_interval = "val_accuracy_lo" in d.columns and d["val_accuracy_lo"].notna().any()
    if has_interval:  # the 95 % interval (validation rows, repeats) where known, else the repeats' range
        lo = d["val_accuracy_lo"].fillna(d["val_accuracy_min"])
        hi = d["val_accuracy_hi"].fillna(d["val_accuracy_max"])
        yerr = [(d["val_accuracy"] - lo).clip(lower=0), (hi - d["val_accuracy"]).clip(lower=0)]
    ax.errorbar(d[x], d["val_accuracy"], xerr=xerr if has_spread else None,
                yerr=yerr if (has_spread or has_interval) else None,
                fmt="o", ms=5, color="#1f77b4", ecolor="#9ecae1", elinewidth=1,
                label="configurations (median, 95 % interval)" if has_interval else "configurations (median)",
                zorder=2)
    if len(frontier):
        ax.plot(frontier[x], frontier["val_accuracy"], "-o", color=FRONTIER_COLOR, ms=7, lw=1.5,
                label="Pareto frontier", zorder=3, drawstyle="steps-post")
        for n, (_, r) in enumerate(frontier.iterrows(), start=1):
            ax.annotate(str(n), (r[x], r["val_accuracy"]), textcoords="offset points", xytext=(-4, 6),
                        ha="right", fontsize=8, fontweight="bold", color=FRONTIER_COLOR)
    ax.axhline(a.target_accuracy, ls="--", color="#2ca02c", lw=1, label=f"target {fmt.pct(a.target_accuracy)}")
    _maybe_log(ax, d[x].tolist())
    if x == "cost_usd" and ax.get_xscale() != "log":
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.usd(v)))
    ax.set_xlabel(xlabel + (" — log scale" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("validation accuracy (last epoch)")
    _pct_axis(ax)
    ax.set_title(f"Validation accuracy vs {what}")
    fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    return _save(fig, out, key, f"Accuracy vs {what}",
                 "Each point is a configuration (median over its ok repeats); vertical bars: its 95 % interval "
                 "(Wilson over the validation rows, or the t interval of the repeats where wider), horizontal bars: "
                 "the repeats' range. The red line is the Pareto frontier, its points numbered as in the table "
                 "below; a step within noise of the one before is no real gain.")


def memory_heatmap(a: Analysis, out: Path) -> FigureFiles | None:
    grids = a.memory_grids
    if not grids:
        return None
    ncols = len(grids)
    width = max(5.5, 1.0 + 1.1 * max(len(gr.batches) for gr in grids)) * ncols
    height = 1.6 + 0.55 * max(len(gr.depths) for gr in grids)
    fig, axes = _new(min(width, 16), max(height, 3), ncols)
    import numpy as np

    for ax, gr in zip(axes, grids):
        vals = np.array([[np.nan if v is None else v for v in row] for row in gr.peak], dtype=float)
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#f2f2f2")
        finite = vals[np.isfinite(vals)]
        im = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, aspect="auto",
                       vmin=float(finite.min()) if finite.size else 0, vmax=float(finite.max()) if finite.size else 1)
        ax.grid(False)
        ax.set_xticks(range(len(gr.batches)), [str(b) for b in gr.batches])
        ax.set_yticks(range(len(gr.depths)), [str(d) for d in gr.depths])
        ax.set_xlabel("batch size")
        ax.set_ylabel("frozen layers")
        ax.set_title(f"{gr.title} (MiB)")
        hi = float(finite.max()) if finite.size else 1.0
        lo = float(finite.min()) if finite.size else 0.0
        for i in range(len(gr.depths)):
            for j in range(len(gr.batches)):
                v = gr.peak[i][j]
                n_oom = gr.oom[i][j]
                if n_oom:
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=v is None, facecolor="#f7c6c7",
                                           edgecolor=FRONTIER_COLOR, hatch="///", lw=1.5))
                text = []
                if v is not None:
                    text.append(f"{v:,.0f}")
                if n_oom:
                    text.append("OOM" if v is None else f"OOM ×{n_oom}")
                if not text and gr.runs[i][j] == 0:
                    text.append("not run")
                if text:
                    dark = v is not None and not n_oom and (v - lo) < 0.6 * (hi - lo or 1)
                    ax.text(j, i, "\n".join(text), ha="center", va="center", fontsize=8,
                            color="white" if dark else "black", fontweight="bold" if n_oom else "normal")
        fig.colorbar(im, ax=ax, label="peak MiB", shrink=0.9)
    return _save(fig, out, "memory_heatmap", "Peak memory by batch size and frozen depth",
                 "Largest peak per cell over the trials that did not run out of memory; hatched red cells ran out "
                 "of memory (OOM).")


def learning_curves(a: Analysis, out: Path) -> FigureFiles | None:
    curves = [c for c in a.curves if any(v is not None for v in c.val_accuracy + c.val_loss)]
    if not curves:
        return None
    curves = sorted(curves, key=lambda c: -(c.final_val_accuracy if c.final_val_accuracy is not None else -1))
    shown = curves[:MAX_SERIES]
    fig, (ax1, ax2) = _new(11, 5.2, 2)
    for i, c in enumerate(shown):
        color = _color(i, len(shown))
        lbl = _short(c.label, 44)
        ep_acc = [(e, v) for e, v in zip(c.epochs, c.val_accuracy) if v is not None]
        if ep_acc:
            ax1.plot(*zip(*ep_acc), "-o", ms=3, color=color, label=lbl)
        ep_vl = [(e, v) for e, v in zip(c.epochs, c.val_loss) if v is not None]
        if ep_vl:
            ax2.plot(*zip(*ep_vl), "-o", ms=3, color=color)
        ep_tl = [(e, v) for e, v in zip(c.epochs, c.train_loss) if v is not None]
        if ep_tl:
            ax2.plot(*zip(*ep_tl), "--", lw=1, color=color, alpha=0.7)
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax1.set_ylabel("validation accuracy")
    _pct_axis(ax1)
    ax1.set_title("Validation accuracy per epoch")
    ax2.set_ylabel("loss")
    ax2.set_title("Loss per epoch (solid: validation, dashed: training)")
    fig.legend(loc="outside lower center", ncols=3 if len(shown) > 4 else 2, fontsize=7, frameon=False)
    caption = "Median over repeats, per configuration."
    if len(curves) > len(shown):
        caption += f" The {len(shown)} most accurate of {len(curves)} configurations are drawn."
    return _save(fig, out, "learning_curves", "Learning curves", caption)


def time_vs_size(a: Analysis, out: Path) -> FigureFiles | None:
    fits = a.fits[:MAX_SERIES]
    if not fits:
        return None
    import numpy as np

    fig, (ax1, ax2) = _new(11, 5.2, 2)
    n = a.extrapolate_rows
    peak = max((f.predicted_s_per_epoch or 0.0) for f in fits)
    scale, unit = (3600.0, "h") if peak > 7200 else (60.0, "min") if peak > 600 else (1.0, "s")
    for i, f in enumerate(fits):
        color = _color(i, len(fits))
        lo, hi = min(f.x), max(f.x)
        xs = np.linspace(lo, hi, 20)
        lbl = _short(f.label, 40) + (f" (R² {f.r2:.3f})" if f.r2 is not None and f.n_sizes >= 3 else "")
        ax1.scatter(f.x, f.y, s=14, color=color)
        ax1.plot(xs, f.slope * xs + f.intercept, "-", color=color, lw=1.2, label=lbl)
        xe = np.linspace(0, max(n, hi), 50)
        ax2.scatter(f.x, np.asarray(f.y) / scale, s=8, color=color)
        ax2.plot(xe, (f.slope * xe + f.intercept) / scale, "--", color=color, lw=1)
        if f.predicted_s_per_epoch is not None:
            ax2.plot([n], [f.predicted_s_per_epoch / scale], "*", ms=10, color=color)
    ax1.set_title("Measured sizes with the fitted line")
    ax2.set_title(f"Extrapolated to {n:,} rows (★)")
    ax2.axvline(n, color="#777777", lw=0.8, ls=":")
    for ax, u in ((ax1, "s"), (ax2, unit)):
        ax.set_xlabel("dataset size (rows)")
        ax.set_ylabel(f"time per epoch ({u})")
    fig.legend(loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    return _save(fig, out, "time_vs_size", "Time per epoch vs dataset size",
                 "A least-squares line per configuration; the right panel carries it to the full set.")


def frozen_depth(a: Analysis, out: Path) -> FigureFiles | None:
    fz = a.frozen
    if fz is None or not len(fz):
        return None
    d = fz[fz["val_accuracy"].notna()]
    if not len(d):
        return None
    has_mem = d["peak_mib"].notna().any()
    fig, axes = _new(11 if has_mem else 6, 4.6, 2 if has_mem else 1)
    panels = [("seconds_per_epoch", "median seconds per epoch (s)")]
    if has_mem:
        panels.append(("peak_mib", "median peak memory (MiB)"))
    for ax, (col, xl) in zip(axes, panels):
        e = d[d[col].notna()]
        ax.plot(e[col], e["val_accuracy"], "-o", color="#1f77b4", ms=6)
        for _, r in e.iterrows():
            ax.annotate(f"frozen={r['frozen']}", (r[col], r["val_accuracy"]), textcoords="offset points",
                        xytext=(6, 4), fontsize=8)
        ax.set_xlabel(xl)
        ax.set_ylabel("median validation accuracy")
        _pct_axis(ax)
    axes[0].set_title("Accuracy against time per epoch")
    if has_mem:
        axes[1].set_title("Accuracy against peak memory")
    return _save(fig, out, "frozen_depth", "Frozen depth: accuracy vs time and memory",
                 "One point per frozen depth (median over configurations).")


def strategies(a: Analysis, out: Path) -> FigureFiles | None:
    s = a.strategies
    if s is None or not len(s):
        return None
    import numpy as np

    s = s.head(MAX_SERIES * 2)
    labels = [_short(str(v), 36) for v in s["label"]]
    y = np.arange(len(s))
    h = 0.38
    fig, (ax1, ax2) = _new(11, 1.6 + 0.42 * len(s), 2)
    # Total time per trial, loading and the frozen-layer cache included: per epoch alone, a cached "all"
    # looks hundreds of times faster while the cache built once is most of its time.
    ax1.barh(y - h / 2, s["lab_seconds_total"], h, color="#7f7f7f", label="lab")
    ax1.barh(y + h / 2, s["fast_seconds_total"], h, color="#ff7f0e", label="fast")
    ends = s[["lab_seconds_total", "fast_seconds_total"]].max(axis=1)
    for yi, sp, spe, v in zip(y, s["speedup_total"], s["speedup_epoch"], ends):
        if sp == sp:
            per_epoch = f" ({spe:.3g}× per epoch)" if spe == spe else ""
            ax1.text(v, yi, f"  {sp:.2f}×{per_epoch}", va="center", fontsize=7)
    ax1.set_yticks(y, labels)
    ax1.invert_yaxis()
    ax1.margins(x=0.35)
    ax1.set_xlabel("total seconds per trial, loading and cache included (s)")
    ax1.set_title("Time per trial (speed-up of fast)")
    ax2.barh(y - h / 2, s["lab_val_accuracy"], h, color="#7f7f7f", label="lab")
    ax2.barh(y + h / 2, s["fast_val_accuracy"], h, color="#ff7f0e", label="fast")
    ax2.set_yticks(y, [""] * len(s))
    ax2.invert_yaxis()
    ax2.set_xlabel("validation accuracy")
    _pct_axis(ax2, "x")
    ax2.set_title("Validation accuracy")
    fig.legend(*ax2.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return _save(fig, out, "strategies", "lab vs fast", "Configurations that ran under both strategies.")


def _annotate_apart(ax, labels: list[tuple[float, float, str, Any]]) -> None:
    """Label points beside them, moving a label down a line where it would print over one already placed
    (points close in both cost and accuracy, as a LoRA and a freezing configuration often are)."""
    ax.autoscale_view()
    to_axes = ax.transData + ax.transAxes.inverted()
    placed: list[tuple[float, float]] = []
    height_pt = ax.get_window_extent().height * 72.0 / ax.figure.dpi
    line = 10.0 / max(height_pt, 1.0)  # one 7-pt label's line, in axes fractions
    for xv, yv, text, color in sorted(labels, key=lambda t: (-t[1], t[0])):
        px, py = to_axes.transform((xv, yv))
        dy = 0.0
        while any(abs(px - qx) < 0.3 and abs(py + dy - qy) < line for qx, qy in placed):
            dy -= line
        placed.append((px, py + dy))
        ax.annotate(text, (xv, yv), textcoords="offset points", xytext=(6, 4 + dy * height_pt), fontsize=7, color=color)


METHOD_STYLE = {"head only": ("#7f7f7f", "s"), "freezing": ("#1f77b4", "o"), "LoRA": ("#ff7f0e", "D"),
                "full fine-tuning": ("#2ca02c", "^")}


def methods(a: Analysis, out: Path) -> FigureFiles | None:
    """Freezing, LoRA and full fine-tuning on one accuracy-against-cost chart (time where no cost was recorded)."""
    mc = a.methods
    if mc is None or not len(mc):
        return None
    x = "cost_usd" if mc["cost_usd"].notna().all() else "seconds_total"
    g = a.groups.set_index("config_key")
    fig, (ax,) = _new(8, 5)
    labels: list[tuple[float, float, str, Any]] = []
    for method, (color, marker) in METHOD_STYLE.items():
        m = mc[mc["method"] == method]
        if not len(m):
            continue
        lo, hi = g.loc[m["config_key"], x + "_min"].to_numpy(), g.loc[m["config_key"], x + "_max"].to_numpy()
        ax.errorbar(m[x], m["val_accuracy"], xerr=[m[x] - lo, hi - m[x]],
                    yerr=[m["val_accuracy"] - m["accuracy_low"], m["accuracy_high"] - m["val_accuracy"]],
                    fmt=marker, ms=7, color=color, ecolor=color, elinewidth=1, alpha=0.9, label=method, zorder=2)
        for _, r in m.iterrows():
            labels.append((r[x], r["val_accuracy"], _short(r["method_label"], 36), color))
    _maybe_log(ax, mc[x].tolist())
    _annotate_apart(ax, labels)
    if x == "cost_usd" and ax.get_xscale() != "log":
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.usd(v)))
    what = "cost per trial (USD)" if x == "cost_usd" else "total time per trial, loading included (s)"
    ax.set_xlabel(what + (" — log scale" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("validation accuracy (last epoch)")
    _pct_axis(ax)
    ax.set_title("Freezing, LoRA and full fine-tuning: accuracy vs " + ("cost" if x == "cost_usd" else "time"))
    fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    return _save(fig, out, "methods", "Freezing, LoRA and full fine-tuning",
                 "Each point is a configuration (median over its ok repeats), coloured by what it trains; bars: "
                 "accuracy over the range of repeats widened by the Wilson 95 % interval on the validation rows, "
                 "cost or time from the fastest to the slowest repeat.")


def data_curve(a: Analysis, out: Path) -> FigureFiles | None:
    """Accuracy against rows: the measured trials, the fitted power law with its band, the predictions marked."""
    curves = [f for f in a.data_curves if len(f.fit.x)][:MAX_SERIES]
    if not curves:
        return None
    import numpy as np

    fig, (ax,) = _new(8, 5)
    xs_all: list[float] = []
    for i, f in enumerate(curves):
        c = _color(i, len(curves))
        fit = f.fit
        name = _short(f.label) if f.label != "all trials" else "trials"
        ax.scatter(fit.x, fit.accuracy, s=14, color=c, alpha=0.6, zorder=3,
                   label=f"{name}" + ("" if fit.status == "fitted" else f" ({len(fit.x_sizes)} sizes: no fit)"))
        xs_all += fit.x
        if fit.status != "fitted":
            ax.plot(fit.x_sizes, fit.mean_accuracy, ":", color=c, lw=1)
            continue
        top = max([p.x for p in fit.predictions] + fit.x_sizes)
        grid = np.geomspace(min(fit.x_sizes), top, 80)
        preds = [p for p in fit.predictions if p.kind == "extrapolated"]
        _fitted_band(ax, fit, grid, preds, c, lw=1.5, zorder=2)
        xs_all += [p.x for p in preds]
    ax.plot([], [], "D", mfc="white", color="#555555", label="predicted (80 % interval)")
    ax.axhline(a.target_accuracy, ls="--", color="#2ca02c", lw=1, label=f"target {fmt.pct(a.target_accuracy)}")
    ax.set_xscale("log")
    ax.set_xlabel("rows (dataset_size) — log scale")
    ax.set_ylabel("validation accuracy (last epoch)")
    _pct_axis(ax)
    ax.set_title("Accuracy against rows: measured, fitted and predicted")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return _save(fig, out, "data_curve", "Accuracy against rows",
                 "Dots: trials. Line and band: the saturating power law fitted to validation error and its 80 % "
                 "bootstrap band. Open diamonds: predictions beyond the sizes run, with the 80 % interval of what "
                 "one run there would measure. Fewer than 3 sizes: the points only (no fit).")


def _fitted_band(ax: Any, fit: Any, grid: Any, predictions: list[Any], color: Any, lw: float,
                 zorder: float | None = None) -> None:
    """A fitted learning curve over `grid` with its band, and its predictions as open diamonds with intervals
    (the rows and the epochs figures draw them alike)."""
    band = fit.predict(grid)
    ax.plot(grid, [b.accuracy for b in band], "-", color=color, lw=lw, zorder=zorder)
    ax.fill_between(grid, [b.curve_lo for b in band], [b.curve_hi for b in band], color=color, alpha=0.15, lw=0)
    ax.errorbar([p.x for p in predictions], [p.accuracy for p in predictions],
                yerr=[[p.accuracy - p.lo for p in predictions], [p.hi - p.accuracy for p in predictions]],
                fmt="D", mfc="white", color=color, ms=6, capsize=3, zorder=4)


def epoch_curve(a: Analysis, out: Path) -> FigureFiles | None:
    """Accuracy against epochs with the fit, the prediction at 2x the epochs and the plateau verdict."""
    items = [e for e in a.epoch_curves if len(e.forecast.fit.x)][:MAX_SERIES]
    if not items:
        return None
    import numpy as np

    fig, (ax,) = _new(8, 5)
    for i, e in enumerate(items):
        c = _color(i, len(items))
        f = e.forecast
        fit = f.fit
        ax.plot(fit.x_sizes, fit.mean_accuracy, "o", color=c, ms=4, zorder=3,
                label=f"{_short(e.label, 40)}: {f.verdict}")
        if fit.status != "fitted" or f.at_double is None:
            ax.plot(fit.x_sizes, fit.mean_accuracy, ":", color=c, lw=1)
            continue
        grid = np.linspace(min(fit.x_sizes), 2 * f.epochs_run, 60)
        _fitted_band(ax, fit, grid, [f.at_double], c, lw=1.3)
    ax.axvline(max(e.forecast.epochs_run for e in items), ls=":", color="#777777", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (mean over repeats)")
    _pct_axis(ax)
    ax.set_title("Accuracy against epochs: would more epochs help?")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return _save(fig, out, "epoch_curve", "Accuracy against epochs",
                 "Dots: validation accuracy per epoch. Line and band: the power law fitted to validation error "
                 "against epoch and its 80 % band; open diamond: the prediction at twice the epochs run (80 % "
                 "interval); the legend gives each configuration's plateau verdict. Fewer than 4 epochs: no fit.")


def make_all(a: Analysis, out: Path) -> dict[str, FigureFiles]:
    """Every figure the data supports, keyed by name."""
    figs: dict[str, FigureFiles] = {}
    with matplotlib.rc_context(RC):
        for make in (
            lambda: accuracy_vs(a, "cost_usd", out),
            lambda: accuracy_vs(a, "seconds_total", out),
            lambda: memory_heatmap(a, out),
            lambda: learning_curves(a, out),
            lambda: time_vs_size(a, out),
            lambda: frozen_depth(a, out),
            lambda: strategies(a, out),
            lambda: methods(a, out),
            lambda: data_curve(a, out),
            lambda: epoch_curve(a, out),
        ):
            f = make()
            if f is not None:
                figs[f.key] = f
    return figs
