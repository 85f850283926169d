"""How often the CPU-budget watchdog sees the process tree's RSS while a trial's meters run.

The meters' sampler (every 20 ms, `Meters`) hands each reading to the watchdog (`RssWatchdog.observe`);
the watchdog's own thread (every 10 ms) reads the tree itself only when no reading came for 20 ms. Here
both run as in a trial's child, with a budget that is never reached, for SECONDS of idling and then SECONDS
of a training loop on the main thread (a small MLP, torch on one thread: the GIL is busy). Prints the gaps
between successive readings and how many came from the watchdog's own thread.

    python docs/scripts/watchdog_period.py [SECONDS]       # default 5
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from harness.executors.budget import RssWatchdog
from harness.meters import Meters


def run(seconds: float, busy: bool) -> None:
    dog = RssWatchdog(1 << 50)  # never fires
    own = [0]
    read = dog.tree.read

    def counted_read(*a, **k):  # the watchdog's own readings (`check`)
        own[0] += 1
        return read(*a, **k)

    dog.tree.read = counted_read
    stamps: list[float] = []
    observe = dog.observe

    def stamped(rss: int) -> bool:
        stamps.append(time.monotonic())
        return observe(rss)

    dog.observe = stamped
    dog.start()
    meters = Meters("cpu", rss_observers=(dog.observe,))  # as the trial's child wires them (executors/budget.py)
    with meters:
        t0 = time.monotonic()
        if busy:
            torch.set_num_threads(1)
            model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 2))
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            x, y = torch.randn(128, 256), torch.randint(0, 2, (128,))
            while time.monotonic() - t0 < seconds:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        else:
            time.sleep(seconds)
    dog.stop()
    gaps = np.diff(np.array(stamps)) * 1000
    print(f"{'training loop' if busy else 'idle':13s}: {len(stamps)} readings in {seconds:g} s "
          f"({len(stamps) / seconds:.0f} per s), {own[0]} by the watchdog's own thread; gap between readings "
          f"median {np.median(gaps):.1f} ms, p99 {np.percentile(gaps, 99):.1f} ms, max {gaps.max():.1f} ms")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    run(seconds, busy=False)
    run(seconds, busy=True)


if __name__ == "__main__":
    main()
