"""Run each trial in its own spawned child process, with a timeout.

A trial's crash, kill or memory use never touches the next trial or the grid: the child is a fresh
interpreter (`spawn`, not `fork`, so no CUDA or thread state is inherited). The child streams events and
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
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterable

from ..grid import Trial
from .base import Events, finish_abnormal

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


def _child_main(trial_dict: dict[str, Any], conn: Connection, budget: dict[str, Any] | None = None) -> None:
    """Entry point of the child process: apply the memory budget, run the trial, send the record."""
    # The parent handles Ctrl-C for the whole grid; a child must not die half-way through a write on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from ..core.budget import apply_budgets
    from ..core.trial import run_trial

    trial = Trial.from_dict(trial_dict)
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        with lock:
            try:
                conn.send(event)
            except (BrokenPipeError, OSError):
                pass

    try:  # `budget`: the cgroup the parent made for this child (core/budget.py), joined here
        emit({"type": "budget", "memory_budget": apply_budgets(trial, report=emit, prepared=budget)})
    except Exception as exc:  # a budget that cannot be enforced as asked: an error record, not a crash
        from ..core.trial import empty_record, now_iso

        record = empty_record(trial)
        record.update(error=f"memory budget not applied: {exc}", finished_at=now_iso())
        emit({"type": "record", "record": record})
        conn.close()
        return
    record = run_trial(trial, emit)
    emit({"type": "record", "record": record})
    conn.close()


class ChildRun:
    """One trial in one child process, watched by the parent."""

    def __init__(self, trial: Trial, on_event: Callable[[Trial, dict[str, Any]], None] | None = None):
        self.trial = trial
        self.on_event = on_event
        self.snapshot: dict[str, Any] | None = None
        self.phase: str | None = "start"
        self.epoch: int | None = None
        self.process: Any = None
        self.budget: Any = None  # core.budget.Prepared: the child's cgroup, removed in close()
        self.budget_reason: str | None = None  # the CPU-budget watchdog's report, if it killed the child
        self.last_heartbeat: dict[str, Any] | None = None
        self.budget_info: dict[str, Any] = {}  # how the child enforces its budgets ("budget" event)
        self.stopped = False  # killed by the executor's stop() (a SIGINT/SIGTERM of the grid)
        self.epochs: list[dict[str, Any]] = []  # every finished epoch, from the child's "epoch" events

    def start(self) -> None:
        self.oom_kills_before = kernel_oom_kills()
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
                return self._abnormal("timeout", f"trial exceeded trial_timeout_s = {timeout:g} s")
            try:
                ready = self.conn.poll(min(remaining, 5.0))
            except Exception:
                ready = True
            if not ready:
                continue
            try:
                event = self.conn.recv()
            except Exception:  # EOF, or a message cut short by the child's death
                return self._child_gone()
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            if kind == "record":
                self.process.join(timeout=30)
                if self.process.is_alive():
                    self.kill()
                return event["record"]
            if kind == "snapshot":
                self.snapshot = event["record"]
                self._merge(self.last_heartbeat or {})
            if kind == "heartbeat":
                self.last_heartbeat = event
                self._merge(event)
            if kind == "budget":
                self.budget_info = event.get("memory_budget") or {}
                self._merge({})
            if kind == "budget_exceeded":
                self.budget_reason = event.get("reason")
                self._merge({"memory": {"cpu_peak_rss_mib": round(event.get("rss_bytes", 0) / 2**20, 1)}})
            if kind == "epoch":
                self.epochs.append({k: v for k, v in event.items() if k != "type"})
            if kind == "phase":
                self.phase, self.epoch = event.get("phase"), event.get("epoch")
            if self.on_event is not None:
                self.on_event(self.trial, event)

    def _child_gone(self) -> dict[str, Any]:
        self.process.join(timeout=10)
        code = self.process.exitcode
        if code == -signal.SIGKILL:
            memory = self._memory_evidence()
            if memory:
                return self._abnormal("oom", memory)
            return self._abnormal("error", "child process killed by SIGKILL from outside the harness (a user, a "
                                  "scheduler): no sign of memory exhaustion (no memory budget kill, the kernel's "
                                  "oom_kill counters did not move)")
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return self._abnormal("error", f"child process killed by {name}")
        return self._abnormal("error", f"child process exited with code {code} before sending its record")

    def _abnormal(self, status: str, reason: str) -> dict[str, Any]:
        """The last snapshot completed by the parent, with every epoch the child reported finishing (an epoch
        that ended just before the kill may be in an "epoch" event but not yet in a snapshot)."""
        rec = finish_abnormal(self.trial, self.snapshot, status, reason, self.phase, self.epoch)
        if len(self.epochs) > len(rec.get("epochs") or []):
            rec["epochs"] = [dict(e) for e in self.epochs]
        return rec

    def _budget_for_child(self) -> dict[str, Any] | None:
        from ..core.budget import prepare

        self.budget = prepare(self.trial)
        return self.budget.for_child()

    def _merge(self, heartbeat: dict[str, Any]) -> None:
        """Fold the child's latest memory (and energy, time) into the snapshot the parent would complete."""
        from ..core.trial import empty_record
        from ..meters.record import merge_heartbeat

        if self.snapshot is None:
            self.snapshot = empty_record(self.trial)
        merge_heartbeat(self.snapshot, heartbeat)
        if self.budget_info:
            self.snapshot["memory_budget"] = {**(self.snapshot.get("memory_budget") or {}), **self.budget_info}
        if heartbeat.get("phase") is not None:
            self.phase, self.epoch = heartbeat["phase"], heartbeat.get("epoch")

    def _memory_evidence(self) -> str | None:
        """Why a SIGKILLed child died of memory, or None where nothing says it did."""
        if self.budget_reason:  # the CPU-budget watchdog killed it
            return self.budget_reason
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
