"""A frozen-prefix cache build traced batch by batch, in this process: after each batch, the RSS, the kernel's
peak (VmHWM) and glibc's heap (`mallinfo2`: the main arena's size, the bytes in use in it, the bytes free in it,
the bytes in mappings of their own), then the probe's phase peaks and the build's seconds. With --no-trim the
build's `release_free_heap` after each batch is turned off (the build as it was before 2026-12-01), to see the
heap climb: the arena grows batch by batch while the bytes in use stay flat (docs/plan.md, account version 19).

    python bench/plan/cache_build_trace.py bench/plan/heldout_minilm.toml all,32,64 --steps 60 [--no-trim]

STRATEGY is `fast` (the cache); SHAPE is frozen,batch,max_length as the probes take it, and the probe's rows grow
with --steps (so does the number of cache batches: 16 at all,32,64 with 60 steps). Linux with glibc 2.33+.
"""

from __future__ import annotations

import argparse
import ctypes
import time


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                               "uordblks", "fordblks", "keepcost")]


def main() -> None:
    import psutil

    import harness.core.cache as frozen_cache
    from harness.config import load_grid
    from harness.grid import expand
    from harness.plan import probe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("shape", help="frozen,batch,max_length, e.g. all,32,64")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--strategy", default="fast")
    ap.add_argument("--no-trim", action="store_true", help="leave the heap's free pages in place between batches")
    args = ap.parse_args()
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    proc = psutil.Process()
    if args.no_trim:
        frozen_cache.release_free_heap = lambda: False
    pooled, built = frozen_cache.pooled_state, frozen_cache.build
    seen = {"n": 0, "s": 0.0}

    def traced(*a, **k):  # called once per batch of an "all" build, before the batch's trim
        seen["n"] += 1
        mi = libc.mallinfo2()
        hwm = (probe._peak_rss() or 0) / 2**20
        print(f"batch {seen['n']} {tuple(a[2].shape)}: rss {proc.memory_info().rss / 2**20:.0f} MiB, peak {hwm:.0f}, "
              f"arena {mi.arena / 2**20:.0f}, in use {mi.uordblks / 2**20:.0f}, free {mi.fordblks / 2**20:.0f}, "
              f"mapped {mi.hblkhd / 2**20:.0f}", flush=True)
        return pooled(*a, **k)

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return built(*a, **k)
        finally:
            seen["s"] += time.perf_counter() - t0

    frozen_cache.pooled_state, frozen_cache.build = traced, timed
    cfg, _ = load_grid(args.grid)
    q = dict(next(t.params for t in expand(cfg) if t.params["strategy"] == args.strategy), epochs=1)
    f, b, length = args.shape.split(",")
    shape = (f if f in ("all", "half") else int(f), int(b), int(length))
    r = probe.run_shapes({"params": q, "shapes": [shape], "anatomy": False, "steps": args.steps}, lambda e: None)
    print({"trim": not args.no_trim, "cache_batches": seen["n"], "build_s": round(seen["s"], 2),
           "phases_mib": {k: round(v / 2**20) for k, v in r["shapes"][0]["rss_phases"].items()}})


if __name__ == "__main__":
    main()
