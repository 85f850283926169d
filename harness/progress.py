"""What the user sees while a grid runs: a rich live display on a terminal, plain lines otherwise."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from .grid import Trial


def make_console(**kwargs: Any) -> Console:
    """A rich console; when the output is not a terminal (a log file, a pipe, CI) 120 columns wide rather than
    rich's 80, so that a summary line is not broken in the middle of a configuration (COLUMNS still wins)."""
    if "width" not in kwargs and not os.environ.get("COLUMNS") and not sys.stdout.isatty():
        kwargs["width"] = 120
    return Console(**kwargs)


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _acc(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


class Progress:
    """Receives the executor's events. Thread-safe: several trials may run at once."""

    def __init__(self, total: int, console: Console | None = None, skipped: int = 0):
        self.console = console or make_console(stderr=False)
        self.total = total
        self.skipped = skipped
        self.done = 0
        self.started_at = time.monotonic()
        self.lock = threading.Lock()
        self.current: dict[str, dict[str, Any]] = {}
        self.finished: list[dict[str, Any]] = []
        self.interactive = self.console.is_terminal
        self.live: Live | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        if self.interactive:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
            self.live.__enter__()
        else:
            self._line(f"{self.total} trials to run" + (f" ({self.skipped} already done)" if self.skipped else ""))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    # -- events ---------------------------------------------------------------------------------------
    def trial_started(self, trial: Trial) -> None:
        with self.lock:
            self.current[trial.trial_id] = {"trial": trial, "phase": "start", "epoch": None, "val": None,
                                            "t0": time.monotonic()}
            k = self.done + len(self.current)
        if not self.interactive:
            self._line(f"[{k}/{self.total}] {trial.label()} ...")
        self._refresh()

    def trial_event(self, trial: Trial, event: dict[str, Any]) -> None:
        with self.lock:
            cur = self.current.get(trial.trial_id)
            if cur is None:
                return
            if event.get("type") == "phase":
                cur["phase"], cur["epoch"] = event.get("phase"), event.get("epoch")
            elif event.get("type") == "epoch":
                cur["val"] = event.get("val_accuracy")
                if not self.interactive:
                    self._line(f"    epoch {event['epoch']}/{trial.params['epochs']}: {event['seconds']:.2f} s, "
                               f"val acc {_acc(event.get('val_accuracy'))}, val loss {event.get('val_loss') or float('nan'):.4f}")
        self._refresh()

    def trial_finished(self, trial: Trial, record: dict[str, Any]) -> None:
        with self.lock:
            self.current.pop(trial.trial_id, None)
            self.done += 1
            self.finished.append(record)
        if not self.interactive:
            extra = f" ({record['error']})" if record.get("error") else ""
            epochs = record.get("epochs") or []
            acc = epochs[-1]["val_accuracy"] if epochs else None
            self._line(f"[{self.done}/{self.total}] {trial.label()}: {record['status']}, "
                       f"val acc {_acc_interval(acc, record.get('n_val'))}, "
                       f"{record.get('seconds_total') or 0:.1f} s{extra}")
        else:
            self.console.print(self._finished_line(trial, record))
        self._refresh()

    # -- rendering ------------------------------------------------------------------------------------
    def _line(self, text: str) -> None:
        print(text, file=self.console.file, flush=True)

    def _finished_line(self, trial: Trial, record: dict[str, Any]) -> str:
        colour = {"ok": "green", "oom": "yellow", "timeout": "yellow"}.get(record["status"], "red")
        epochs = record.get("epochs") or []
        acc = epochs[-1]["val_accuracy"] if epochs else None
        tail = f" [dim]{escape(str(record['error']))}[/dim]" if record.get("error") else ""  # text, never markup
        return (f"[{colour}]{record['status']:>7}[/{colour}] {trial.label()}  "
                f"val acc {_acc_interval(acc, record.get('n_val'))}  "
                f"{record.get('seconds_total') or 0:.1f} s{tail}")

    def _eta(self) -> float | None:
        if not self.done:
            return None
        per = (time.monotonic() - self.started_at) / self.done
        return per * (self.total - self.done)

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        elapsed = time.monotonic() - self.started_at
        table.add_row(f"[bold]trial {min(self.done + 1, self.total)} of {self.total}[/bold]",
                      f"elapsed {_fmt_s(elapsed)}", f"remaining ~{_fmt_s(self._eta())}")
        for cur in list(self.current.values()):
            t: Trial = cur["trial"]
            epoch = f"epoch {cur['epoch']}/{t.params['epochs']}" if cur["epoch"] else cur["phase"]
            table.add_row(f"  {t.label()}", f"{cur['phase']} {epoch if cur['epoch'] else ''}".strip(),
                          f"last val acc {_acc(cur['val'])}  ({_fmt_s(time.monotonic() - cur['t0'])})")
        return table

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())


def _acc_interval(acc: Any, n_val: Any) -> str:
    """"0.795 [0.756, 0.829]": a trial's accuracy with its 95 % Wilson interval over its validation rows."""
    if not isinstance(acc, (int, float)) or not isinstance(n_val, (int, float)) or n_val <= 0:
        return _acc(acc)
    from harness.report.forecast import wilson  # scipy, only when a summary is printed

    lo, hi = wilson(acc * n_val, n_val)
    return f"{_acc(acc)} [{lo:.3f}, {hi:.3f}]"


def summary_table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="trials", show_lines=False)
    for col in ("status", "size", "batch", "frozen", "device", "strategy", "val acc [95 %]", "s/epoch", "total s", "peak RSS MiB"):
        table.add_column(col, justify="right" if col not in {"status", "device", "strategy"} else "left")
    for r in records:
        p = r.get("params", {})
        epochs = r.get("epochs") or []
        per_epoch = sum(e["seconds"] for e in epochs) / len(epochs) if epochs else None
        mem = (r.get("memory") or {}).get("cpu_peak_rss_mib")
        table.add_row(r["status"], str(p.get("dataset_size")), str(p.get("batch_size")), str(p.get("frozen_layers")),
                      str(p.get("device")), str(p.get("strategy")),
                      _acc_interval(epochs[-1]["val_accuracy"] if epochs else None, r.get("n_val")),
                      "-" if per_epoch is None else f"{per_epoch:.2f}",
                      "-" if r.get("seconds_total") is None else f"{r['seconds_total']:.1f}",
                      "-" if mem is None else f"{mem:.0f}")
    return table
