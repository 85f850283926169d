"""Run each trial in its own spawned child process, with a timeout.

A trial's crash, kill or memory use never touches the next trial or the grid: the child is a fresh
interpreter (`spawn`, not `fork`, so no CUDA or thread state is inherited). The child streams events and
snapshots of its record over a pipe; the parent blocks on the pipe (no busy loop) until the final record
arrives, the child dies, or the timeout passes. When the child cannot finish its own record, the parent
completes the last snapshot: `timeout` keeps the epochs that finished; a child killed by SIGKILL (what
the kernel's OOM killer sends) is recorded as `oom` with the phase and epoch it was in.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterable

from ..env import offline
from ..grid import Trial
from ..record import BudgetEvent, RecordEvent, TrialRecord, now_iso
from .base import Events, Watch, finish_abnormal
from .budget import Prepared, apply_budgets, prepare

SPAWN = mp.get_context("spawn")


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this child when its parent dies (a driver killed with SIGKILL, a Ray
    worker cancelled with force=True), so that no orphaned trial keeps loading the machine."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        return
    parent = mp.parent_process()
    if parent is not None and parent.pid is not None and os.getppid() != parent.pid:
        os._exit(1)  # the parent died before the line above took effect


def _child_main(trial_dict: dict[str, Any], conn: Connection, budget: Prepared | None = None) -> None:
    """Entry point of the child process: apply the memory budget, run the trial, send the record."""
    # The parent handles Ctrl-C for the whole grid; a child must not die half-way through a write on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    offline()
    from ..trial import run_trial  # torch and the core: in the child only

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

    def __init__(self, trial: Trial, on_event: Callable[[Trial, dict[str, Any]], None] | None = None):
        self.trial = trial
        self.on_event = on_event
        self.watch = Watch(trial)
        self.process: Any = None
        self.budget: Prepared | None = None  # the child's cgroup, removed in close()
        self.stopped = False  # killed by the executor's stop() (a SIGINT/SIGTERM of the grid)

    def start(self) -> None:
        parent_conn, child_conn = SPAWN.Pipe(duplex=False)
        self.conn = parent_conn
        self.process = SPAWN.Process(target=_child_main, args=(self.trial.to_dict(), child_conn, self._budget_for_child()),
                                     daemon=True, name=f"trial-{self.trial.trial_id}")
        self.started = time.monotonic()
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
            if event is not None and self.on_event is not None:
                self.on_event(self.trial, raw)

    def _child_gone(self) -> dict[str, Any]:
        self.process.join(timeout=10)
        code = self.process.exitcode
        if code == -signal.SIGKILL:
            return self.watch.complete("oom", self._sigkill_reason())
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return self.watch.complete("error", f"child process killed by {name}")
        return self.watch.complete("error", f"child process exited with code {code} before sending its record")

    def _budget_for_child(self) -> Prepared:
        self.budget = prepare(self.trial)
        return self.budget

    def _sigkill_reason(self) -> str:
        if self.watch.budget_reason:
            return self.watch.budget_reason
        known = self.budget.explain_kill() if self.budget is not None else None
        return known or "child process killed by SIGKILL (the kernel's OOM killer sends this)"

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
