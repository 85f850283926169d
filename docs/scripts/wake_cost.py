"""How much slower a thread's first Python work runs after it has slept: the same small piece of work
(200 f-string formats, about 0.1 ms when warm) timed right after sleeping PAUSE seconds, on a thread of
its own, 20 times per pause; median and 90th percentile of the wall time.

On a virtual machine whose vCPU idles while the thread sleeps, the first milliseconds after the wake-up
run slowly (cold caches on a shared host core, or a slow clock): this is why the meters build their
heartbeat on the sampler thread (awake every 20 ms) and leave the heartbeat thread only the sending.

    python docs/scripts/wake_cost.py
"""

from __future__ import annotations

import threading
import time

PAUSES = (0.0, 0.001, 0.02, 0.1, 0.5)


def work() -> int:
    return sum(len(f"{i:.3f} {i * 2.5:.2%}") for i in range(200))


def after_pause(pause: float, n: int = 20) -> tuple[float, float]:
    walls: list[float] = []

    def loop() -> None:
        for _ in range(n):
            if pause:
                time.sleep(pause)
            t = time.perf_counter()
            work()
            walls.append(time.perf_counter() - t)

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    walls.sort()
    return walls[n // 2], walls[int(n * 0.9)]


if __name__ == "__main__":
    warm = None
    for pause in PAUSES:
        median, p90 = after_pause(pause)
        warm = warm or median
        print(f"after a {pause * 1000:5g} ms sleep: median {median * 1e6:6.0f} us, p90 {p90 * 1e6:6.0f} us "
              f"({median / warm:4.1f}x the warm median)")
