"""What the meters cost: their sampling must take under 2 % of a trial's time.

A fixed CPU workload (training steps of a small MLP on one thread, about 3 s) runs with and without
the meters around it, as a trial runs them (RSS every 20 ms, heartbeats every 0.5 s), in interleaved
rounds (a slow spell of the machine hits both kinds). Figures, all in `benchmark.extra_info`:

- `meters_threads_cpu_share`: the CPU time of the meters' own threads (their schedstat) over the work's
  wall time, median of the rounds: the direct cost, what they take from the machine whatever else runs on
  it. Asserted < 2 % when the benchmark is timed (`--benchmark-enable`, a measurement taken on purpose).
  The default test run (benchmarks disabled, issue 6: too noisy on shared machines to time) asserts < 4 %,
  a guard against regressions: on the 2-core CI machine the same code measured 0.7 % to 2.4 % on one
  morning, as its vCPUs' wake-up cost moved (docs/meters.md), so a 2 % bound there fails on the machine's
  state rather than on the meters; a regression such as the psutil fallback (1.2 ms a reading, 6 % at
  50 readings a second) still fails it.
- `cpu_overhead`: (the work's own thread CPU time + the meters' threads) with the meters over the work's
  thread CPU time without, minus one, median over the rounds; and `wall_overhead`, the same with wall time
  (`bench_timer.uncontended` where available: wall less run-queue waits, bench/bench_timer.py). These hold
  the indirect costs too (the GIL, caches, scheduling), but on a shared machine identical runs differ by
  more than 2 %: each is asserted under 2 % plus the spread this run measured among its plain runs
  (`cpu_noise`, `wall_noise`), which is the tolerance of the measurement.

The benchmark itself times the work under the meters.

    python -m pytest bench/test_meters_bench.py -q                       # a run, untimed benchmark
    python -m pytest bench/test_meters_bench.py --benchmark-enable -q    # timed too
"""

from __future__ import annotations

import os
import time

import torch

from harness.meters import Meters

ROUNDS = int(os.environ.get("HARNESS_METERS_BENCH_ROUNDS", "5"))
# Seconds of work per round: the meters' cost in a trial is their steady state (a trial runs for tens of
# seconds); in 1 s rounds their first readings (cold, descriptors being opened) weighed as much as the rest.
WORK_S = float(os.environ.get("HARNESS_METERS_BENCH_WORK_S", "3.0"))
STEPS = 60

try:
    import bench_timer

    clock = bench_timer.uncontended if bench_timer.available() else time.perf_counter
except ImportError:  # pragma: no cover
    clock = time.perf_counter


def make_workload():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 256),
                                torch.nn.GELU(), torch.nn.Linear(256, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(128, 256)
    y = torch.randint(0, 2, (128,))

    def workload() -> None:
        for _ in range(STEPS):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return workload


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def test_meters_sampling_costs_under_2_percent_of_a_trial(benchmark):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    step = make_workload()
    beats: list[dict] = []
    try:
        step()  # warm up (allocator, kernels)
        t0 = time.perf_counter()
        step()
        reps = max(1, round(WORK_S / max(time.perf_counter() - t0, 1e-3)))

        def workload() -> None:
            for _ in range(reps):
                step()

        def plain() -> tuple[float, float]:
            t, c = clock(), time.thread_time()
            workload()
            return clock() - t, time.thread_time() - c

        def with_meters() -> tuple[float, float, float | None]:
            m = Meters("cpu", heartbeat=beats.append)
            with m:  # starting and stopping (about 20 ms a trial, once) is left out: sampling is measured
                own0 = m.own_cpu_seconds()
                t, c = clock(), time.thread_time()
                workload()
                wall, cpu = clock() - t, time.thread_time() - c
                own = m.own_cpu_seconds()
            return wall, cpu, None if own is None or own0 is None else own - own0

        rounds = []
        for _ in range(ROUNDS):  # interleaved, so that a slow spell of the machine hits both kinds
            rounds.append((plain(), with_meters()))
        benchmark.pedantic(with_meters, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)

    # CPU: the work's own thread plus the meters' threads, against the work alone (per round, then the median).
    have_own = all(on[2] is not None for _, on in rounds)
    cpu_ratios = [(on[1] + (on[2] or 0.0)) / off[1] for off, on in rounds]
    cpu_overhead = _median(cpu_ratios) - 1.0
    cpus = sorted(off[1] for off, _ in rounds)
    cpu_noise = (cpus[-1] - cpus[0]) / _median(cpus)
    # Each round's share, then the median: one round that a stall of the virtual machine lands on (a round at
    # 2.3 % among rounds at 1.0-1.6 % has been seen) does not decide, as for the overheads below.
    shares = [on[2] / on[0] for _, on in rounds] if have_own else []
    share = _median(shares) if have_own else None
    # Wall: each round's pair (adjacent in time), then the median; the spread of the plain runs is the noise.
    wall_overhead = _median([on[0] / off[0] for off, on in rounds]) - 1.0
    offs = sorted(off[0] for off, _ in rounds)
    noise = (offs[-1] - offs[0]) / _median(offs)
    info = benchmark.extra_info
    info.update({
        "rounds": ROUNDS,
        "workload_s_median": round(_median(offs), 4),
        "cpu_overhead": round(cpu_overhead, 5),
        "cpu_noise": round(cpu_noise, 5),
        "meters_threads_cpu_share": None if share is None else round(share, 5),
        "meters_threads_cpu_share_rounds": [round(x, 5) for x in shares],
        "wall_overhead": round(wall_overhead, 5),
        "wall_noise": round(noise, 5),
        "heartbeats": len(beats),
        "timer": getattr(clock, "__module__", "") + "." + getattr(clock, "__qualname__", str(clock)),
        "cpu_interval_ms": round(Meters("cpu").cpu_interval_s * 1000, 3),
    })
    print(f"\nmeters: CPU overhead {cpu_overhead:+.2%} (their threads {'n/a' if share is None else f'{share:.2%}'} "
          f"of the wall time, median; rounds {' '.join(f'{x:.2%}' for x in shares)}); "
          f"wall overhead {wall_overhead:+.2%} (median of {ROUNDS} interleaved pairs; plain runs spread {noise:.1%})")
    assert beats, "the heartbeat thread ran"
    # The direct cost: the CPU the meters' threads use, per second of the work. 2 % when timed on purpose;
    # twice that as the untimed run's regression guard (see the module's docstring for why).
    if share is not None:
        limit = 0.04 if benchmark.disabled else 0.02
        info["meters_threads_cpu_share_limit"] = limit
        assert share < limit, info
    # The indirect cost (the GIL, caches, the scheduler) shows only in the work's own time, which on a shared
    # machine moves by more than 2 % between identical runs: the bound is 2 % plus the spread this run saw
    # among the plain runs (small on a quiet machine, so the bound is then close to 2 %).
    assert cpu_overhead < 0.02 + cpu_noise, info
    assert wall_overhead < 0.02 + noise, info
