"""Peak resident memory of the trial's whole process tree.

A daemon thread samples the RSS of this process and all its descendants (data-loader workers included)
with psutil every `interval_s` (10 ms by default). The kernel's high-water mark `ru_maxrss` (self and
waited-for children) is kept as a cross-check: a sampler can miss a spike shorter than its period, the
kernel cannot, but the kernel's figure includes what the process used before the trial started.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from typing import Any

import psutil

MiB = 1024 * 1024


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        total += proc.memory_info().rss
        children = proc.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return total
    for child in children:
        try:
            total += child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def maxrss_bytes() -> int:
    """ru_maxrss of this process and its reaped children (KiB on Linux, bytes on macOS)."""
    unit = 1 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) * unit


class CpuMemorySampler:
    def __init__(self, interval_s: float = 0.01, pid: int | None = None):
        self.interval_s = interval_s
        self.proc = psutil.Process(pid or os.getpid())
        self.peak = 0
        self.baseline: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        rss = tree_rss(self.proc)
        if rss > self.peak:
            self.peak = rss
        self.samples += 1
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="cpu-memory-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self.sample()

    def mark_baseline(self) -> None:
        self.baseline = self.sample()

    def peak_mib(self) -> float:
        return round(self.peak / MiB, 1)

    def summary(self) -> dict[str, Any]:
        self.sample()
        return {
            "cpu_peak_rss_mib": round(self.peak / MiB, 1),
            "cpu_baseline_rss_mib": None if self.baseline is None else round(self.baseline / MiB, 1),
            "cpu_maxrss_mib": round(maxrss_bytes() / MiB, 1),
        }

    def note(self) -> str:
        return (
            f"cpu: peak RSS of the trial's process tree sampled with psutil every {self.interval_s * 1000:g} ms "
            f"({self.samples} samples); baseline taken before the model loads; cpu_maxrss_mib is the kernel's ru_maxrss"
        )
