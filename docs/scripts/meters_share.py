"""The meters' own CPU time over a longer window: the benchmark's workload (bench/test_meters_bench.py, one
thread) for about SECONDS under one `Meters("cpu")` with a heartbeat; prints their threads' CPU time over the
work's wall time. Run it alternately against two checkouts to compare them:

    for i in 1 2 3 4 5; do for d in /tmp/oldmeters .; do PYTHONPATH=$d python docs/scripts/meters_share.py 10; done; done
"""

from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from test_meters_bench import make_workload  # noqa: E402

from harness.meters import Meters  # noqa: E402

if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    torch.set_num_threads(1)
    step = make_workload()
    step()
    t0 = time.perf_counter()
    step()
    reps = max(1, round(seconds / (time.perf_counter() - t0)))
    meters = Meters("cpu", heartbeat=lambda beat: None)
    with meters:
        own0, t = meters.own_cpu_seconds(), time.perf_counter()
        for _ in range(reps):
            step()
        wall, own = time.perf_counter() - t, meters.own_cpu_seconds()
    if own is None or own0 is None:
        print("the meters' own CPU time cannot be read here (no /proc/self/task/<tid>/schedstat)")
    else:
        print(f"the meters' threads: {(own - own0) / wall:.2%} of {wall:.1f} s of work")
