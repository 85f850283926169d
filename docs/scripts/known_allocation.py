"""How close the CPU memory meter comes to an allocation of known size made in a child process.

The parent runs the trial's sampler (`CpuMemorySampler`, the process tree's RSS every 20 ms, as `Meters`
runs it). A child imports torch, reports ready, then on a signal from the parent allocates a tensor of
SIZE_MIB and writes every page (torch.ones), and reports its own ru_maxrss before and after. The meter's
figure is the tree's peak minus the tree's RSS just before the allocation.

    python docs/scripts/known_allocation.py [SIZE_MIB] [REPEATS]     # defaults 256 and 5

Prints one line per repeat and the range of the error in %.
"""

from __future__ import annotations

import subprocess
import sys
import time

from harness.meters.cpu_memory import CpuMemorySampler

MiB = 2**20
CHILD = r"""
import resource, sys, torch
size = int(sys.argv[1]) * 2**20
print("imported", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
sys.stdin.readline()
x = torch.ones(size // 4, dtype=torch.float32)  # every page written
print("allocated", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
sys.stdin.readline()
"""


def one(size_mib: int) -> tuple[float, float]:
    sampler = CpuMemorySampler(interval_s=0.02)
    sampler.start()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(size_mib)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        _, maxrss_before = child.stdout.readline().split()
        time.sleep(0.1)
        sampler.mark_baseline()  # tree RSS with the child's torch imported, before the tensor
        sampler.peak = sampler.baseline  # the peak so far belongs to the import, not the tensor
        child.stdin.write("go\n")
        child.stdin.flush()
        _, maxrss_after = child.stdout.readline().split()
        time.sleep(0.1)  # a few sampling periods with the tensor resident
        grown = (sampler.peak - sampler.baseline) / MiB
        kernel = (int(maxrss_after) - int(maxrss_before)) / 1024  # ru_maxrss is in KiB on Linux
    finally:
        child.stdin.write("done\n")
        child.stdin.flush()
        child.wait()
        sampler.stop()
    return grown, kernel


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    errors = []
    for i in range(repeats):
        grown, kernel = one(size)
        err = (grown - size) / size * 100
        errors.append(err)
        print(f"repeat {i + 1}: sampler {grown:.1f} MiB ({err:+.2f} %), child's ru_maxrss grew {kernel:.1f} MiB "
              f"({(kernel - size) / size * 100:+.2f} %), true size {size} MiB")
    print(f"sampler error over {repeats} repeats: {min(errors):+.2f} % to {max(errors):+.2f} %")


if __name__ == "__main__":
    main()
