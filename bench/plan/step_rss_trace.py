"""A training pass's RSS and peak RSS after each of its steps, in this process: the probe's child code
(`probe.run_shapes`) run here for STEPS steps at one shape, to see how far and how long the heap climbs
(docs/plan.md: `lab` with everything frozen at 4 x 256 climbs by 0.6 of its forward's transient in 10 steps).

    python bench/plan/step_rss_trace.py /tmp/cache_long.toml lab all,4,256 --steps 300 [--trim-every 50]

GRID's first trial of STRATEGY gives the settings; SHAPE is frozen,batch,max_length as the probes take it. With
--trim-every N the heap's free pages go back to the system (glibc's `malloc_trim(0)`) after every N-th step.
"""

from __future__ import annotations

import argparse


def main() -> None:
    import psutil

    import harness.core.train as train
    from harness.core.cache import release_free_heap
    from harness.config import load_grid
    from harness.grid import expand
    from harness.plan import probe
    from harness.plan.probe import _peak_rss

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("strategy")
    ap.add_argument("shape", help="frozen,batch,max_length, e.g. all,4,256")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--trim-every", type=int, default=0)
    args = ap.parse_args()
    proc = psutil.Process()
    after: list[tuple[float, float]] = []
    step = train.Trainer.train_step

    def traced(self, batch):  # noqa: ANN001
        out = step(self, batch)
        if args.trim_every and len(after) % args.trim_every == args.trim_every - 1:
            release_free_heap()
        after.append((proc.memory_info().rss / 2**20, (_peak_rss() or 0) / 2**20))
        return out

    train.Trainer.train_step = traced
    cfg, _ = load_grid(args.grid)
    q = dict(next(t.params for t in expand(cfg) if t.params["strategy"] == args.strategy), epochs=1)
    f, b, length = args.shape.split(",")
    shape = (f if f in ("all", "half") else int(f), int(b), int(length))
    r = probe.run_shapes({"params": q, "shapes": [shape], "anatomy": False, "steps": args.steps}, lambda e: None)
    for i in sorted({0, 1, 2, 4, 9, 19, 49, 99, 149, 199, 299, 399, len(after) - 1}):
        if i < len(after):
            print(f"after step {i + 1}: RSS {after[i][0]:.0f} MiB, peak so far {after[i][1]:.0f} MiB")
    print({"phases_mib": {k: round(v / 2**20) for k, v in r["shapes"][0]["rss_phases"].items()}})


if __name__ == "__main__":
    main()
