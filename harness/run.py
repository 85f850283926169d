"""`harness run`: grid file -> validated config -> trials -> executor -> trials.jsonl -> report.

This module wires the stages together; each stage lives in its own module and knows nothing of the ones
after it. Ctrl-C or SIGTERM stops the running trial's child, writes no record for it (it runs again on
`--resume`), renders the report for what finished and exits 130 or 143.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from . import env as env_info
from .config import GridFile, load_grid
from .grid import Trial, expand
from .progress import Progress, summary_table
from .store import RunStore, default_run_dir, read_grid_text

RESULTS_ROOT = Path("results")


@dataclass
class RunOutcome:
    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    interrupted_by: int | None = None  # signal number
    skipped: int = 0

    @property
    def exit_code(self) -> int:
        if self.interrupted_by is None:
            return 0
        return 128 + self.interrupted_by


class RunEvents:
    """Glue between an executor and the store/progress: the one place a record is appended."""

    def __init__(self, store: RunStore, progress: Progress):
        self.store = store
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self.stop_signal: int | None = None
        self.lock = threading.Lock()
        self.nodes: set[str] = set()

    def trial_started(self, trial: Trial) -> None:
        self.progress.trial_started(trial)

    def trial_event(self, trial: Trial, event: dict[str, Any]) -> None:
        self.progress.trial_event(trial, event)

    def trial_finished(self, trial: Trial, record: dict[str, Any]) -> None:
        with self.lock:
            self.store.append(record)
            self.records.append(record)
            host = record.get("host")
            if host and host not in self.nodes:
                self.nodes.add(host)
                self.store.add_node(host)
        self.progress.trial_finished(trial, record)

    def stopping(self) -> bool:
        return self.stop_signal is not None


def make_executor(name: str, workers: int = 1, address: str | None = None) -> Any:
    if name == "local":
        from .executors.local import LocalExecutor

        return LocalExecutor(workers=workers)
    if name == "ray":
        from .executors.ray import RayExecutor

        return RayExecutor(address=address)
    raise ValueError(f"unknown executor {name!r}; expected local or ray")


def prepare(grid_path: str, out: str | None, resume: str | None, check_devices: bool = True
            ) -> tuple[GridFile, str, list[Trial], Path]:
    """Everything that can fail on bad input, before anything is written."""
    from .core.preflight import check

    if resume:
        run_dir = Path(resume)
        cfg, text = load_grid(grid_path)
        old = read_grid_text(run_dir)
        if old is not None and old != text:
            from .config import ConfigError

            raise ConfigError(f"{grid_path}: differs from the grid the run in {run_dir} was started with; "
                              f"resume with {run_dir / 'grid.toml'}")
    else:
        cfg, text = load_grid(grid_path)
        run_dir = Path(out) if out else default_run_dir(RESULTS_ROOT, cfg.name)
    trials = expand(cfg)
    check(trials, grid_path, check_devices=check_devices)
    return cfg, text, trials, run_dir


def run_grid(grid_path: str, out: str | None = None, resume: str | None = None, executor: str = "local",
             workers: int = 1, address: str | None = None, console: Console | None = None,
             report: bool = True, max_batch: bool = False) -> RunOutcome:
    console = console or Console()
    cfg, text, trials, run_dir = prepare(grid_path, out, resume, check_devices=(executor == "local"))
    ex = make_executor(executor, workers, address)
    store = RunStore(run_dir)
    store.create(text, env_info.collect(), resume=bool(resume))
    if resume:
        set_aside = store.repair()
        if set_aside:
            console.print(f"[yellow]set aside {set_aside} incomplete line(s) in {store.trials_path.name}[/yellow]")
    done = store.finished_ids()
    todo = [t for t in trials if t.trial_id not in done]
    outcome = RunOutcome(run_dir=run_dir, skipped=len(trials) - len(todo))
    console.print(f"run [bold]{cfg.name}[/bold]: {len(trials)} trials ({len(todo)} to run) -> {run_dir}")
    progress = Progress(len(trials), console=console, skipped=outcome.skipped)
    progress.done = outcome.skipped
    events = RunEvents(store, progress)

    def on_signal(signum: int, frame: Any) -> None:
        if events.stop_signal is None:
            events.stop_signal = signum
            ex.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with progress:
            ex.run(todo, events)
        if (max_batch or cfg.search.max_batch) and not events.stopping():
            from .search import search_max_batch

            search_max_batch(cfg, trials, ex, events, console)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    outcome.records = store.records()
    outcome.interrupted_by = events.stop_signal
    if outcome.interrupted_by is not None:
        console.print(f"[yellow]interrupted ({signal.Signals(outcome.interrupted_by).name}): "
                      f"{len(events.records)} trial(s) finished; continue with --resume {run_dir}[/yellow]")
    if outcome.records:
        console.print(summary_table(outcome.records))
    if report and outcome.records:
        render_and_summarise([run_dir], None, console)
    return outcome


def render_and_summarise(run_dirs: list[Path], out: str | None, console: Console) -> Path | None:
    from .report import print_summary, render_report

    result = render_report(run_dirs, Path(out) if out else None)
    print_summary(result, console)
    console.print(f"report: {result.out_dir / 'report.html'}")
    return result.out_dir
