"""Peak resident memory of the trial's whole process tree.

A thread samples the RSS of this process and all its descendants (data-loader workers included) every
`interval_s` (10 ms by default; a trial's `Meters` use 20 ms). The kernel's high-water mark `ru_maxrss`
(self, and the largest reaped child) is kept as a cross-check: a sampler can miss a spike shorter than its
period, the kernel cannot, but the kernel's figure is per process (it does not add the workers up).

Cost matters here (the sampler runs during the measured work): on Linux the RSS is read from
`/proc/<pid>/statm` with `pread` on a descriptor kept open, and the process tree from
`/proc/<pid>/task/<tid>/children`, re-listed every `tree_refresh_s` (0.5 s) rather than on every sample
(in a tight loop a reading of a 3-process tree took 5 us of CPU this way, 77 us re-listing and re-opening);
psutil's `children(recursive=True)` scans every process on the machine (1.2 ms with 72 processes) and is
only the fallback where those files are absent. The task lists' `children` files stay open too. On a
virtual machine a reading right after the thread's sleep costs far more than in a tight loop (docs/meters.md:
the meters' threads use 0.6 to 2.4 % of one core, depending on the machine and its state).
The sum of RSS over a tree counts pages shared between a parent and its forked workers once per process
(an over-count, never an under-count); PSS would be exact but reading smaps costs milliseconds per sample.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from typing import Any, Callable

import psutil

from ..record import MiB

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _statm_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None


def _proc_children(pid: int) -> list[int]:
    """Direct children of `pid` from /proc (every thread can fork, so every task's list is read)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def descendants(pid: int, children: Callable[[int], list[int]] = _proc_children) -> list[int]:
    """Every descendant of `pid` (children, grandchildren, ...); `children` lists one process's direct
    children from /proc (TreeRss passes its reader of kept-open files)."""
    if PROC_CHILDREN:
        found: list[int] = []
        todo = [pid]
        while todo:
            kids = children(todo.pop())
            found.extend(kids)
            todo.extend(kids)
        return found
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def rss_of(pid: int) -> int | None:
    if sys.platform.startswith("linux"):
        return _statm_rss(pid)
    try:
        return psutil.Process(pid).memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def maxrss_bytes() -> int:
    """ru_maxrss of this process and of its largest reaped child (KiB on Linux, bytes on macOS)."""
    unit = 1 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) * unit


def close_quietly(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


class TreeRss:
    """Cheap repeated RSS readings of a process tree: the tree is re-listed every `refresh_s` only, and
    each process's statm stays open (read again with pread)."""

    def __init__(self, pid: int | None = None, refresh_s: float = 0.5):
        self.pid = pid or os.getpid()
        self.refresh_s = refresh_s
        self._pids: list[int] = [self.pid]
        self._listed = -1e9
        self._fds: dict[int, int] = {}
        self._child_fds: dict[tuple[int, int], int] = {}  # (pid, tid) -> its open `children` file
        self._linux = sys.platform.startswith("linux")

    def _rss(self, pid: int) -> int | None:
        if not self._linux:
            return rss_of(pid)
        fd = self._fds.get(pid)
        try:
            if fd is None:
                fd = self._fds[pid] = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
            return int(os.pread(fd, 128, 0).split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            self._drop(pid)
            return None

    def _drop(self, pid: int) -> None:
        close_quietly(self._fds.pop(pid, None))

    def _children(self, pid: int, seen: set[tuple[int, int]]) -> list[int]:
        """Direct children of `pid`: its task list is read (one getdents) and each task's `children` file is
        read again through a descriptor kept open (an open per task per refresh cost 0.2-0.5 ms of CPU on a
        2-core VM, where a thread's first system calls after a sleep run slowly)."""
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
        out: list[int] = []
        for tid in tids:
            key = (pid, int(tid))
            seen.add(key)
            fd = self._child_fds.get(key)
            try:
                if fd is None:
                    fd = self._child_fds[key] = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY)
                out.extend(int(x) for x in os.pread(fd, 4096, 0).split())
            except (OSError, ValueError):
                self._drop_children(key)
        return out

    def _descendants(self) -> list[int]:
        if not self._linux:
            return descendants(self.pid)
        seen_tasks: set[tuple[int, int]] = set()
        found = descendants(self.pid, lambda pid: self._children(pid, seen_tasks))
        for key in set(self._child_fds) - seen_tasks:  # threads and processes that have ended
            self._drop_children(key)
        return found

    def _drop_children(self, key: tuple[int, int]) -> None:
        close_quietly(self._child_fds.pop(key, None))

    def read(self, force_refresh: bool = False) -> int:
        now = time.monotonic()
        if force_refresh or now - self._listed >= self.refresh_s:
            self._pids = [self.pid, *self._descendants()]
            self._listed = now
            for pid in set(self._fds) - set(self._pids):
                self._drop(pid)
        total = 0
        gone = False
        for pid in self._pids:
            r = self._rss(pid)
            if r is None:
                gone = True
            else:
                total += r
        if gone:  # a worker exited: list again next time
            self._listed = -1e9
        return total

    def close(self) -> None:
        for pid in list(self._fds):
            self._drop(pid)
        for key in list(self._child_fds):
            self._drop_children(key)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class CpuMemorySampler:
    def __init__(self, interval_s: float = 0.01, pid: int | None = None, tree_refresh_s: float = 0.5,
                 observers: tuple[Callable[[int], Any], ...] = ()):
        """`observers`: called with every reading (bytes), from the sampling thread (a memory-budget watchdog
        reads the tree through them, so that it is not read twice)."""
        self.interval_s = interval_s
        self.observers = tuple(observers)
        self.proc = psutil.Process(pid or os.getpid())
        self.tree = TreeRss(self.proc.pid, tree_refresh_s)
        self.peak = 0
        self.last = 0
        self.baseline: int | None = None
        self.samples = 0
        self.on_growth: Callable[[int], None] | None = None  # called (from the sampler) when the peak grows 5 %
        self._reported = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self, force_refresh: bool = False) -> int:
        rss = self.tree.read(force_refresh)
        with self._lock:
            self.last = rss
            if rss > self.peak:
                self.peak = rss
            self.samples += 1
            grew = self.peak > self._reported * 1.05 + MiB
            if grew:
                self._reported = self.peak
        if grew and self.on_growth is not None:
            self.on_growth(self.peak)
        for observer in self.observers:
            observer(rss)
        return rss

    def _run(self) -> None:
        while not self._stop.is_set():
            time.sleep(self.interval_s)  # cheaper to wake from than Event.wait(timeout)
            self.sample()

    def start(self, thread: bool = True) -> None:
        """Take a first reading; with `thread`, sample every `interval_s` on a daemon thread until `stop`."""
        self.sample(force_refresh=True)
        if thread:
            self._thread = threading.Thread(target=self._run, name="cpu-memory-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self.sample(force_refresh=True)
        self.tree.close()

    def reset_peak(self) -> int:
        """Start a new peak from a fresh reading (a phase's own peak); returns it."""
        rss = self.tree.read(True)
        with self._lock:
            self.last = self.peak = rss
        return rss

    def mark_baseline(self) -> None:
        self.baseline = self.sample(force_refresh=True)

    def summary(self, fresh: bool = True) -> dict[str, Any]:
        """The record's CPU memory figures; `fresh=False` (a heartbeat) uses the sampler's last reading
        rather than reading the tree once more."""
        if fresh:
            self.sample()
        return {
            "cpu_peak_rss_mib": round(self.peak / MiB, 1),
            "cpu_baseline_rss_mib": None if self.baseline is None else round(self.baseline / MiB, 1),
            "cpu_maxrss_mib": round(maxrss_bytes() / MiB, 1),
        }

    def note(self) -> str:
        how = "/proc statm" if sys.platform.startswith("linux") else "psutil"
        return (
            f"cpu: peak RSS of the trial's process tree (workers included) read from {how} every "
            f"{self.interval_s * 1000:g} ms ({self.samples} samples); baseline taken before the model loads; "
            "cpu_maxrss_mib is the kernel's ru_maxrss (largest single process)"
        )
