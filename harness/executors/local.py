"""Run each trial in its own child process, with a timeout.

A trial's crash, kill or memory use never touches the next trial or the grid: each trial gets a fresh
process. By default it is forked from an idle trial server (`multiprocessing`'s forkserver) that has
imported torch, transformers and the core once (`preload.py`) and has never run a trial, a thread or CUDA:
the child starts with the imports done (tenths of a second instead of seconds) and nothing of any other
trial. `HARNESS_START_METHOD=spawn` starts each child as a bare interpreter instead (what the Ray executor
does inside its own workers). The child streams events and
snapshots of its record over a pipe; the parent blocks on the pipe (no busy loop) until the final record
arrives, the child dies, or the timeout passes. When the child cannot finish its own record, the parent
completes the last snapshot: `timeout` keeps the epochs that finished. A child killed by SIGKILL is recorded
as `oom` (with the phase and epoch it was in) only on evidence of memory: the budget's watchdog killed it, its
cgroup's `oom_kill` counter moved, or the kernel's OOM killer ran while it died (`oom_kill` in /proc/vmstat
or in the cgroup harness runs in). A SIGKILL without such evidence (a user's `kill -9`, a scheduler) and any
other signal are an `error` that names the signal.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterable

from ..env import offline
from ..grid import Trial
from ..record import BudgetEvent, RecordEvent, StartedEvent, TrialRecord, now_iso
from .base import Events, Watch, finish_abnormal
from .budget import Prepared, apply_budgets, prepare

SPAWN = mp.get_context("spawn")
START_METHODS = ("forkserver", "spawn")
TRIAL_PROCESS_NAME = "harness-trial"  # the child's name in ps/top (and how tests tell trials from the server)
_SERVER_LOCK = threading.Lock()


def start_method() -> str:
    method = os.environ.get("HARNESS_START_METHOD", "forkserver").strip() or "forkserver"
    if method not in START_METHODS or method not in mp.get_all_start_methods():
        return "spawn"
    return method


def trial_context(method: str | None = None) -> Any:
    """The multiprocessing context a trial's child is started from; for the forkserver, the server is made
    sure to run first, with harness importable as this process imports it."""
    method = method or start_method()
    if method == "spawn":
        return SPAWN
    from multiprocessing import forkserver

    context = mp.get_context("forkserver")
    with _SERVER_LOCK:
        # '__main__' first, as the standard library's default: a script's main module is imported once in
        # the server, not again in every child. Then the trial's imports (preload.py).
        context.set_forkserver_preload(["__main__", "harness.executors.preload"])
        # The server is a new interpreter that finds modules through PYTHONPATH, not through this process's
        # sys.path: put this harness first, so that the server preloads the code this process runs.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = root + (os.pathsep + saved if saved else "")
        try:
            forkserver.ensure_running()  # (re)starts a server that is not running; else nothing
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    return context


def _leave_server() -> int:
    """In a child forked from the trial server: drop the server's end of its 'parent alive' pipe (else the
    server outlives a killed driver for as long as the trial runs, and the trial with it); return the
    server's pid, the parent this child should have."""
    from multiprocessing import forkserver

    fd = forkserver._forkserver._forkserver_alive_fd
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        forkserver._forkserver._forkserver_alive_fd = None
    preload = sys.modules.get("harness.executors.preload")  # imported by the server, never here
    return preload.SERVER_PID if preload is not None else os.getppid()


def _die_with_parent(parent_pid: int | None = None, driver_pid: int | None = None) -> None:
    """Linux: have the kernel SIGKILL this child when its parent dies (a driver killed with SIGKILL, a Ray
    worker cancelled with force=True), so that no orphaned trial keeps loading the machine. Under the trial
    server the parent is the server, which exits when the driver does."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        libc.prctl(15, TRIAL_PROCESS_NAME.encode(), 0, 0, 0)  # PR_SET_NAME
    except Exception:
        return
    if parent_pid is None:
        parent = mp.parent_process()
        parent_pid = parent.pid if parent is not None else None
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the line above took effect
    if driver_pid is not None:
        try:
            os.kill(driver_pid, 0)
        except ProcessLookupError:
            os._exit(1)  # the driver died while this child was being forked
        except OSError:
            pass


def child_start_args(context: Any) -> tuple[dict[str, str] | None, int | None]:
    """What a child started from `context` is given to become a trial's process: from the trial server, the
    driver's environment now and its pid (a spawned child inherits both)."""
    if context is SPAWN:
        return None, None
    with _SERVER_LOCK:  # trial_context sets PYTHONPATH for a moment under it (probes start children from two threads)
        environ = dict(os.environ)
    return environ, os.getpid()


def enter_child(environ: dict[str, str] | None, driver_pid: int | None) -> None:
    """The first thing a trial's (or a calibration probe's) child does: take the driver's environment when
    forked from the server (not the server's at its start), and die with its parent."""
    forked = environ is not None
    if forked:
        os.environ.clear()
        os.environ.update(environ)
    _die_with_parent(_leave_server() if forked else None, driver_pid)


def _child_main(trial_dict: dict[str, Any], conn: Connection, budget: Prepared | None = None,
                environ: dict[str, str] | None = None, driver_pid: int | None = None) -> None:
    """Entry point of the child process: apply the memory budget, run the trial, send the record."""
    # The parent handles Ctrl-C for the whole grid; a child must not die half-way through a write on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    enter_child(environ, driver_pid)
    try:
        conn.send(StartedEvent(monotonic=time.monotonic()).model_dump())
    except (BrokenPipeError, OSError):
        return  # the parent is gone
    offline()
    from ..trial import run_trial  # torch and the core: in the child only (preloaded by the trial server)

    trial = Trial.from_dict(trial_dict)
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        with lock:
            try:
                conn.send(event)
            except (BrokenPipeError, OSError):
                pass

    try:  # `budget`: the cgroup the parent made for this child (budget.py), joined here
        applied = apply_budgets(trial, report=emit, prepared=budget)
        emit(BudgetEvent(memory_budget=applied.describe()).dump())
    except Exception as exc:  # a budget that cannot be enforced as asked: an error record, not a crash
        record = TrialRecord.empty(trial)
        record.error, record.finished_at = f"memory budget not applied: {exc}", now_iso()
        emit(RecordEvent(record=record.dump()).dump())
        conn.close()
        return
    record = run_trial(trial, emit, budget=applied.describe(), rss_observers=applied.rss_observers())
    emit(RecordEvent(record=record).dump())
    conn.close()


class ChildRun:
    """One trial in one child process, watched by the parent."""

    def __init__(self, trial: Trial, on_event: Callable[[Trial, dict[str, Any]], None] | None = None,
                 method: str | None = None):
        self.trial = trial
        self.method = method  # "forkserver" | "spawn"; None: start_method()
        self.start_seconds: float | None = None  # from start() to the child's first line (bench/startup.py)
        self.on_event = on_event
        self.watch = Watch(trial)
        self.process: Any = None
        self.budget: Prepared | None = None  # the child's cgroup, removed in close()
        self.stopped = False  # killed by the executor's stop() (a SIGINT/SIGTERM of the grid)

    def start(self) -> None:
        self.oom_kills_before = kernel_oom_kills()
        budget = self._budget_for_child()
        self.started = time.monotonic()
        context = trial_context(self.method)
        parent_conn, child_conn = context.Pipe(duplex=False)
        self.conn = parent_conn
        args = (self.trial.to_dict(), child_conn, budget, *child_start_args(context))
        self.process = context.Process(target=_child_main, args=args, daemon=True, name=f"trial-{self.trial.trial_id}")
        try:
            self.process.start()
        finally:
            child_conn.close()  # the parent keeps only its end, so EOF shows the child is gone

    def wait(self) -> dict[str, Any]:
        timeout = float(self.trial.limits.get("trial_timeout_s") or 3600.0)
        deadline = self.started + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                return self.watch.complete("timeout", f"trial exceeded trial_timeout_s = {timeout:g} s")
            try:
                ready = self.conn.poll(min(remaining, 5.0))
            except Exception:
                ready = True
            if not ready:
                continue
            try:
                raw = self.conn.recv()
            except Exception:  # EOF, or a message cut short by the child's death
                return self._child_gone()
            event = self.watch.fold(raw)
            if isinstance(event, RecordEvent):
                self.process.join(timeout=30)
                if self.process.is_alive():
                    self.kill()
                return event.record
            if isinstance(event, StartedEvent):
                self.start_seconds = event.monotonic - self.started
                continue
            if event is not None and self.on_event is not None:
                self.on_event(self.trial, raw)

    def _child_gone(self) -> dict[str, Any]:
        self.process.join(timeout=10)
        code = self.process.exitcode
        if code == -signal.SIGKILL:
            memory = self._memory_evidence()
            if memory:
                return self.watch.complete("oom", memory)
            return self.watch.complete("error", "child process killed by SIGKILL from outside the harness (a user, a "
                                       "scheduler): no sign of memory exhaustion (no memory budget kill, the kernel's "
                                       "oom_kill counters did not move)")
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return self.watch.complete("error", f"child process killed by {name}")
        return self.watch.complete("error", f"child process exited with code {code} before sending its record")

    def _budget_for_child(self) -> Prepared:
        self.budget = prepare(self.trial)
        return self.budget

    def _memory_evidence(self) -> str | None:
        """Why a SIGKILLed child died of memory, or None where nothing says it did."""
        if self.watch.budget_reason:  # the CPU-budget watchdog killed it
            return self.watch.budget_reason
        known = self.budget.explain_kill() if self.budget is not None else None  # its cgroup's oom_kill moved
        if known:
            return known
        before, after = getattr(self, "oom_kills_before", {}), kernel_oom_kills()
        moved = [f"{where} {before[where]} -> {after[where]}" for where in sorted(set(before) & set(after))
                 if after[where] > before[where]]
        if moved:
            return ("child process killed by SIGKILL while the kernel's OOM killer ran (oom_kill "
                    f"{', '.join(moved)}): out of memory")
        return None

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=10)

    def close(self) -> None:
        self.kill()
        if self.budget is not None:
            self.budget.close()
        try:
            self.conn.close()
        except Exception:
            pass


def kernel_oom_kills() -> dict[str, int]:
    """The kernel's OOM-kill counters that can be read here: machine-wide (`oom_kill` in /proc/vmstat, Linux
    4.13+) and of the cgroup v2 this process runs in (`memory.events`). A trial child SIGKILLed while one of
    them moved was killed for memory."""
    out: dict[str, int] = {}
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    out["/proc/vmstat"] = int(line.split()[1])
                    break
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:  # v2 "0::/path" -> memory.events; v1 "4:memory:/path" -> memory.oom_control
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if controllers == "" and path:
            candidates = [f"/sys/fs/cgroup{path.rstrip('/')}/memory.events"]
        elif "memory" in controllers.split(","):
            candidates = [f"/sys/fs/cgroup/memory{path.rstrip('/')}/memory.oom_control",
                          "/sys/fs/cgroup/memory/memory.oom_control"]  # a container sees its own cgroup as root
        else:
            continue
        for events in candidates:
            try:
                with open(events) as ev:
                    for row in ev:
                        key, _, value = row.partition(" ")
                        if key == "oom_kill":
                            out[events] = int(value)
                break
            except (OSError, ValueError):
                continue
    return out


def run_in_child(trial: Trial, on_event: Callable[[Trial, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    run = ChildRun(trial, on_event)
    run.start()
    try:
        return run.wait()
    finally:
        run.close()


class LocalExecutor:
    """Runs trials one after another (or `workers` at once), each in its own child process."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._active: set[ChildRun] = set()
        # Re-entrant: stop() runs in the signal handler, on the main thread, which may hold the lock already.
        self._lock = threading.RLock()

    def run(self, trials: Iterable[Trial], events: Events) -> None:
        trials = list(trials)
        if self.workers == 1:
            for trial in trials:
                self._one(trial, events)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(self._one, t, events) for t in trials]
            try:
                for future in futures:
                    future.result()
            finally:  # after an error (a store that cannot append), trials not yet started are not started
                for future in futures:
                    future.cancel()

    def _one(self, trial: Trial, events: Events) -> None:
        if events.stopping():
            return
        events.trial_started(trial)
        run = ChildRun(trial, events.trial_event)
        with self._lock:
            self._active.add(run)
        try:
            try:
                run.start()
            except OSError as exc:  # no process could be started (out of memory, too many processes)
                record = finish_abnormal(trial, None, "error", f"could not start the child process: {exc}",
                                         "start", None)
            else:
                record = run.wait()
        finally:
            run.close()
            with self._lock:
                self._active.discard(run)
        if run.stopped:
            return  # interrupted: the trial runs again on resume, no record is written for it
        events.trial_finished(trial, record)

    def stop(self) -> None:
        with self._lock:
            for run in list(self._active):
                run.stopped = True
                run.kill()
