"""`harness run`: grid file -> validated config -> trials -> executor -> trials.jsonl -> report.

This module wires the stages together; each stage lives in its own module and knows nothing of the ones
after it. Ctrl-C or SIGTERM stops the running trial's child, writes no record for it (it runs again on
`--resume`), renders the report for what finished and exits 130 or 143.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from . import env as env_info
from .config import GridFile, load_grid
from .grid import Trial, expand
from .progress import Progress, make_console, summary_table
from .store import GRID, TRIALS, RunStore, StoreError, check_new_run_folder, default_run_dir, read_env

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
        self.failed: StoreError | None = None  # a record could not be written (a full disk): the grid stops
        self.on_failure: Any = None  # called once on such a failure (stops the executor's running trials)

    def trial_started(self, trial: Trial) -> None:
        self.progress.trial_started(trial)

    def trial_event(self, trial: Trial, event: dict[str, Any]) -> None:
        self.progress.trial_event(trial, event)

    def trial_finished(self, trial: Trial, record: dict[str, Any]) -> None:
        with self.lock:
            if self.failed is not None:
                return
            try:
                self.store.append(record)
                self.records.append(record)
                host = record.get("host")
                if host and host not in self.nodes:
                    self.nodes.add(host)
                    self.store.add_node(host)
            except StoreError as exc:
                self.failed = exc
                if self.on_failure is not None:
                    self.on_failure()
                raise
        self.progress.trial_finished(trial, record)

    def stopping(self) -> bool:
        return self.stop_signal is not None or self.failed is not None


def make_executor(name: str, workers: int = 1, address: str | None = None) -> Any:
    if name == "local":
        from .executors.local import LocalExecutor

        return LocalExecutor(workers=workers)
    if name == "ray":
        from .executors.ray import RayExecutor

        return RayExecutor(address=address)
    raise ValueError(f"unknown executor {name!r}; expected local or ray")


def prepare(grid_path: str, out: str | None, resume: str | None, check_devices: bool = True,
            notes: list[str] | None = None) -> tuple[GridFile, str, list[Trial], Path]:
    """Everything that can fail on bad input, before anything is written. `notes` collects what the user
    should read before the run starts (a long grid, a data path read the old way)."""
    notes = notes if notes is not None else []
    if resume is not None:
        if not str(resume).strip():
            raise StoreError("--resume got an empty folder name (an unset shell variable?); "
                             "give the run folder to continue")
        run_dir = Path(resume)
        cfg, text = load_grid(grid_path)
        if not run_dir.is_dir() or not (run_dir / TRIALS).is_file():
            raise StoreError(f"{run_dir}: --resume expects a run folder (one with {TRIALS}); "
                             f"start a new run with --out {run_dir} instead")
        check_same_grid(cfg, grid_path, run_dir)
        grid_dir = _grid_dir_of(grid_path, run_dir)
    else:
        if out is not None and not str(out).strip():
            raise StoreError("--out got an empty folder name (an unset shell variable?); "
                             "give a folder, or leave --out out for results/<name>-<time>")
        cfg, text = load_grid(grid_path)
        run_dir = Path(out) if out else default_run_dir(RESULTS_ROOT, cfg.name)
        if out:
            check_new_run_folder(run_dir)  # judged again, race-free, when the folder is claimed
        grid_dir = Path(grid_path).resolve().parent
    from .core.data import resolve_data_path  # pandas: only once the grid file itself is known to be good

    trials = expand(cfg)
    paths = {source: resolve_data_path(source, grid_dir, notes) for source in sorted({t.params["source"] for t in trials})}
    trials = [dataclasses.replace(t, data_path=paths[t.params["source"]]) for t in trials]
    from .core.preflight import check  # imports torch: only once the grid file itself is known to be good

    check(trials, grid_path, check_devices=check_devices, cfg=cfg)
    return cfg, text, trials, run_dir


def check_same_grid(cfg: GridFile, grid_path: str, run_dir: Path) -> None:
    """`--resume` continues a run only with the grid it was started with, compared by meaning (the parsed,
    validated settings): line endings, comments, key order and spelling (1 vs 1.0) do not count. A run
    folder without its grid copy is refused: nothing could tell two grids' records apart."""
    from .config import ConfigError, parse_grid

    stored = run_dir / GRID
    if not stored.is_file():
        raise StoreError(f"{run_dir}: has no {GRID} (the copy of the grid this run was started with), so "
                         f"{grid_path} cannot be checked against it and resuming could mix the records of two "
                         f"grids; start a new run with --out instead")
    try:
        old_text = stored.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise StoreError(f"{stored}: the copy of the grid this run was started with cannot be read ({why}); "
                         f"{grid_path} cannot be checked against it") from None
    try:
        old = parse_grid(old_text, str(stored))
    except ConfigError as exc:  # a copy this version does not accept cannot mean what a valid grid means
        raise ConfigError(f"{grid_path}: differs from the grid the run in {run_dir} was started with (its copy is "
                          f"not a valid grid here: {str(exc).removeprefix(str(stored) + ': ')})") from None
    diffs = grid_differences(old, cfg)
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise ConfigError(f"{grid_path}: differs from the grid the run in {run_dir} was started with ({shown}); "
                          f"resume with {stored}, or start a new run with --out")


def grid_differences(old: GridFile, new: GridFile) -> list[str]:
    """The settings two grids disagree on, as "[train] epochs: 3 in the run, 5 now"."""
    def flat(cfg: GridFile) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in cfg.model_dump().items():
            if isinstance(value, dict) and key != "grid":
                out.update({f"[{key}] {k}": v for k, v in value.items()})
            elif key == "grid":
                out.update({f"[grid] {k}": v for k, v in value.items()})
            else:
                out[key] = value
        return out

    a, b = flat(old), flat(new)
    missing = object()
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb or type(va) is not type(vb) and not {type(va), type(vb)} <= {int, float}:
            show_a = "not set" if va is missing else repr(va)
            show_b = "not set" if vb is missing else repr(vb)
            diffs.append(f"{key}: {show_a} in the run, {show_b} now")
    return diffs


def _grid_dir_of(grid_path: str, run_dir: Path) -> Path:
    """The folder relative data paths are read from on --resume: the given grid file's, except when that file
    is the run folder's own copy, where it is the folder the original grid file was in (env.json)."""
    given = Path(grid_path).resolve()
    if given == (run_dir / GRID).resolve():
        recorded = read_env(run_dir).get("grid_dir")
        if isinstance(recorded, str) and recorded:
            return Path(recorded)
    return given.parent


# A grid this long gets a rough duration before it starts (issue 13 plans a real estimate). Each trial's child
# imports torch and transformers and builds its model before it trains: 30 to 44 s to the first training step
# for random:bert-tiny measured on the 2-core test machine under a load of 25 (docs/scripts/trial_startup.py),
# less on an idle machine. So the note gives the total at two per-trial times, not a prediction.
LONG_GRID_TRIALS = 200


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 60:.0f} minutes"


def duration_note(n_trials: int, workers: int = 1) -> str | None:
    """For a grid of many trials, how long it would take at 10 s and at 1 min a trial, said before it starts."""
    if n_trials < LONG_GRID_TRIALS:
        return None
    rounds = -(-n_trials // max(1, workers))
    on = f"{workers} workers" if workers > 1 else "one worker"
    return (f"{n_trials} trials: at 10 s a trial (a tiny model; each trial starts a fresh process that imports "
            f"torch and loads its model) that is {_span(rounds * 10)} on {on}, at 1 min a trial {_span(rounds * 60)}; "
            "the progress line estimates from the trials that finish. Ctrl-C stops, --resume continues")


def run_grid(grid_path: str, out: str | None = None, resume: str | None = None, executor: str = "local",
             workers: int = 1, address: str | None = None, console: Console | None = None,
             report: bool = True, max_batch: bool = False) -> RunOutcome:
    console = console or make_console()
    notes: list[str] = []
    cfg, text, trials, run_dir = prepare(grid_path, out, resume, check_devices=(executor == "local"), notes=notes)
    ex = make_executor(executor, workers, address)
    store = RunStore(run_dir)
    env = env_info.collect()
    if resume is None:  # where relative data paths were read from, for a resume with the folder's grid copy
        env["grid_dir"] = str(Path(grid_path).resolve().parent)
    store.create(text, env, resume=resume is not None, unique=not out and resume is None)
    long = duration_note(len(trials), workers if executor == "local" else 1)
    for note in notes + ([long] if long else []):
        console.print(f"[yellow]{escape(note)}[/yellow]")
    try:
        return _run_in(store, cfg, trials, ex, resume, console, report, max_batch)
    finally:
        store.close()


def _run_in(store: RunStore, cfg: GridFile, trials: list[Trial], ex: Any, resume: str | None, console: Console,
            report: bool, max_batch: bool) -> RunOutcome:
    run_dir = store.run_dir
    if resume is not None:
        try:
            set_aside = store.repair()
        except OSError as exc:
            raise StoreError(f"{store.trials_path}: cannot be repaired ({exc.strerror or exc})") from None
        if set_aside:
            console.print(f"[yellow]set aside {set_aside} incomplete line(s) of {TRIALS} "
                          f"in {escape(str(run_dir / 'trials.rejected.jsonl'))}[/yellow]")
    done = store.finished_ids()
    todo = [t for t in trials if t.trial_id not in done]
    outcome = RunOutcome(run_dir=run_dir, skipped=len(trials) - len(todo))
    console.print(f"run [bold]{escape(cfg.name)}[/bold]: {len(trials)} trials ({len(todo)} to run) -> {escape(str(run_dir))}")
    progress = Progress(len(trials), console=console, skipped=outcome.skipped)
    progress.done = outcome.skipped
    events = RunEvents(store, progress)
    events.on_failure = ex.stop

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
                      f"{len(events.records)} trial(s) finished; continue with --resume {escape(str(run_dir))}[/yellow]")
    if outcome.records:
        console.print(summary_table(outcome.records))
    if report and outcome.records:
        try:
            render_and_summarise([run_dir], None, console)
        except KeyboardInterrupt:
            console.print("[yellow]report skipped (interrupted)[/yellow]")
        except Exception as exc:  # the records are safe on disk; a report problem must not lose the exit code
            text = " ".join(str(exc).split())[:300] or type(exc).__name__
            console.print(f"[yellow]the report could not be rendered ({escape(text)}); "
                          f"render it with: harness report {escape(str(run_dir))}[/yellow]")
    return outcome


def render_and_summarise(run_dirs: list[Path], out: str | None, console: Console) -> Path | None:
    from .report import print_summary, render_report

    result = render_report(run_dirs, Path(out) if out else None)
    print_summary(result, console)
    console.print(f"report: {escape(str(result.out_dir / 'report.html'))}")
    return result.out_dir
