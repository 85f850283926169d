"""CPU time of one reading of the process tree's RSS, three ways (this process and CHILDREN idle children):

- `TreeRss.read()`: statm kept open and read with pread, the tree re-listed every 0.5 s (what the sampler does);
- `tree_rss(pid)`: the tree listed from /proc/<pid>/task/<tid>/children and every statm opened anew;
- psutil `children(recursive=True)` plus `memory_info()` per process (the fallback where /proc lacks the
  children files; it scans every process on the machine).

    python docs/scripts/sampler_cost.py [N] [CHILDREN]      # N readings each, default 2000 and 2
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from harness.meters.cpu_memory import TreeRss, descendants, rss_of


def tree_rss(pid: int) -> int:
    """The slow path measured against TreeRss: the tree re-listed and every statm opened anew."""
    return sum(r for r in (rss_of(p) for p in [pid, *descendants(pid)]) if r is not None)


def cpu_us(fn, n: int) -> float:
    fn()
    t = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - t) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(k)]
    try:
        time.sleep(0.5)
        kept = TreeRss(refresh_s=0.5)
        me = psutil.Process(os.getpid())

        def with_psutil() -> int:
            return sum(p.memory_info().rss for p in [me, *me.children(recursive=True)])

        print(f"processes on the machine: {len(psutil.pids())}; tree: this process + {k} children")
        print(f"TreeRss.read (pread on kept-open statm): {cpu_us(kept.read, n):.0f} us of CPU per reading")
        print(f"tree_rss (re-list, re-open):           {cpu_us(lambda: tree_rss(os.getpid()), n):.0f} us")
        print(f"psutil children(recursive=True):       {cpu_us(with_psutil, max(1, n // 10)):.0f} us")
    finally:
        for p in kids:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
