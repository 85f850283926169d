"""A benchmark timer for shared machines: wall time minus the time this thread spent waiting for a CPU.

    pytest bench/ --benchmark-timer bench_timer.uncontended     (bench/conftest.py makes it the default)

On cores shared with other jobs, `time.perf_counter` charges a benchmark for every slice the scheduler
gave to someone else: consecutive identical runs here (load average 8 on 2 cores) differed by 20-90 % in
median, so a 15 % threshold could not tell a regression from a neighbour. `time.process_time` is stable
but blind to sleeping, waiting on I/O or on a lock, which are regressions too. This timer subtracts only
the kernel's run-queue delay (`/proc/<pid>/task/<tid>/schedstat`, second field: nanoseconds spent
runnable but not running) from the wall clock, so CPU work, sleeps and I/O waits all count and other
jobs' CPU use does not. It reads one small /proc file per call (about 8 us here), and is exact for
single-threaded code only: with several intra-op threads, time the main thread spends waiting for a
descheduled worker is not run-queue delay, so bench/conftest.py uses it only with one thread.
Where /proc has no schedstat (not Linux, or a kernel without it) it is `time.perf_counter`.
"""

from __future__ import annotations

import os
import threading
import time

_local = threading.local()


def _schedstat_path() -> str:
    return f"/proc/self/task/{threading.get_native_id()}/schedstat"


def available() -> bool:
    try:
        with open(_schedstat_path(), "rb") as f:
            return len(f.read().split()) >= 2
    except OSError:
        return False


def run_delay_s() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU, since it started."""
    fd = getattr(_local, "fd", None)
    if fd is None:
        fd = _local.fd = os.open(_schedstat_path(), os.O_RDONLY)
    return int(os.pread(fd, 128, 0).split()[1]) * 1e-9


def uncontended() -> float:
    """`time.perf_counter()` less the run-queue delay so far: differences are uncontended elapsed time."""
    return time.perf_counter() - run_delay_s()


if not available():  # pragma: no cover - not Linux
    uncontended = time.perf_counter  # type: ignore[assignment]  # noqa: F811
