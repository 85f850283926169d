"""The machine's speed now: one fixed fp32 matrix product, repeated over a short window on the process's
torch threads, as GFLOP/s.

A shared VM's speed swings under its neighbours' load: the same MiniLM training step took 3.0 s and then
8-11 s a quarter of an hour later on this project's 2-core VM (docs/plan.md), and nothing inside the VM
(its load, the steal column of /proc/stat) showed why. A trial that carries the speed it ran at lets a
time forecast be scored against the model rather than the weather: `harness plan --check` scales each
prediction by the ratio of the calibration's speed to the trial's (docs/plan.md).

    reading = measure()      # about 0.1 s
    reading.gflops           # GFLOP/s of SIZE x SIZE products, `threads` threads

CPU only: a GPU is not shared this way, and its host-side speed is not what sets a CUDA trial's time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

SIZE = 256       # three 256 KiB matrices: in cache, and nothing a memory peak would notice
WINDOW_S = 0.1


@dataclass(frozen=True)
class SpeedReading:
    gflops: float    # 2 SIZE^3 FLOPs per product x products / seconds, / 1e9
    seconds: float   # the window as measured (perf_counter)
    threads: int     # torch's intra-op threads during the window


def measure(window_s: float = WINDOW_S, size: int = SIZE) -> SpeedReading:
    import torch

    # from a generator of its own: the global one seeds the trial's dropout and shuffling, and a draw here
    # would change every CPU trial's training from what it was before the meter existed
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=gen), torch.randn(size, size, generator=gen)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # the first call picks its kernel and touches the pages: not timed
    n = 0
    t0 = time.perf_counter()
    while True:
        torch.mm(a, b, out=out)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= window_s:
            break
    return SpeedReading(gflops=2.0 * size**3 * n / elapsed / 1e9, seconds=elapsed, threads=torch.get_num_threads())
