"""A forward without a graph, alone: what the process's RSS grows by against the account's replay of its storages,
at many shapes, in evaluation mode (evaluation, the cache build) and in training mode (`lab`'s frozen blocks, dropout
on). Sets how `account.Anatomy.forward_parts` reads the heap (`account.held_heap`), docs/plan.md.

    python bench/plan/forward_rss.py --plan PLAN_JSON --model embedded:minilm-l6 --k 1.75 2 2.25 --repeats 2

The model is loaded as a trial loads it (one thread); before each forward the heap's free pages go back to the
system (`malloc_trim`, as the cache build does between its batches) and the kernel's peak-RSS mark is reset, so the
reading is that forward's growth (VmHWM after it less the RSS before it). The storages' trace comes from a
calibration in PLAN_JSON (a plan of a grid with that model). Two readings of the trace, each at every --k (k_fwd):

    live: k x the heap's live bytes at the peak of live bytes + the mapped bytes then (account version 19)
    held: the largest k x the heap's held bytes (`held_heap`: its high-water mark until glibc trims its top)
          + the mapped bytes at the same moment (account version 20)

One line per shape and mode (mean of the repeats), then the median and 90th percentile of the absolute error and the
count of readings under by more than 5 %, per mode and reading. Linux with glibc.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics

SHAPES = ["4x64", "8x64", "32x64", "64x64", "16x128", "4x256", "8x256", "16x256", "32x256", "64x256", "64x127",
          "138x59", "128x64", "207x16", "8x160", "16x160", "24x160", "32x160", "48x160", "64x160", "32x128", "32x192"]


def main() -> None:
    import numpy as np
    import psutil
    import torch

    from harness.core.cache import release_free_heap
    from harness.core.models import load_model
    from harness.plan.account import MMAP_THRESHOLD
    from harness.plan.calibrate import loaded
    from harness.plan.probe import _peak_rss, _peak_rss_reset, _probe_inputs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True, help="a plan.json whose calibrations include the model's")
    ap.add_argument("--model", default="embedded:minilm-l6")
    ap.add_argument("--k", type=float, nargs="+", default=[2.0], help="k_fwd values to read the trace at")
    ap.add_argument("--shapes", nargs="*", default=SHAPES, help="NxL (examples x padded length)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cal = next(c for c in json.load(open(args.plan))["calibrations"] if c["key"]["model"] == args.model)
    anatomy, _ = loaded(cal)
    model = load_model(args.model, 2).model
    proc = psutil.Process()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    errors: dict[tuple[str, str, float], list[float]] = {}
    for mode in ("eval", "train"):
        model.train(mode == "train")
        for n, length in shapes:
            grown = []
            for _ in range(args.repeats):
                ids, mask = _probe_inputs(model, torch.device("cpu"), length, n)
                gc.collect()
                release_free_heap()
                before = proc.memory_info().rss
                _peak_rss_reset()
                with torch.no_grad():
                    out = model(input_ids=ids, attention_mask=mask)
                grown.append(_peak_rss() - before)
                del out
            measured = statistics.mean(grown)
            line = {"mode": mode, "shape": f"{n}x{length}", "measured_mib": round(measured / 2**20, 1),
                    "readings_mib": [round(g / 2**20, 1) for g in grown]}
            # the account's own replay (Anatomy.forward_parts): at the peak of live bytes, and with the heap held
            live_heap, live_mapped = anatomy.forward_parts(n, length, mode == "train", MMAP_THRESHOLD)
            for k in args.k:
                held, mapped = anatomy.forward_parts(n, length, mode == "train", MMAP_THRESHOLD, k_heap=k)
                forecast = {"live": k * live_heap + live_mapped, "held": k * held + mapped}
                for reading, value in forecast.items():
                    errors.setdefault((mode, reading, k), []).append((value - measured) / measured)
                    line[f"{reading}_k{k:g}_mib"] = round(value / 2**20, 1)
            print(json.dumps(line), flush=True)
    for (mode, reading, k), errs in sorted(errors.items()):
        ab = sorted(abs(e) for e in errs)
        p90 = float(np.percentile(ab, 90))
        print(f"{mode:5s} {reading:4s} k={k:g}: median |error| {100 * statistics.median(ab):.1f} %, p90 {100 * p90:.1f} %, "
              f"under by > 5 %: {sum(e < -0.05 for e in errs)} of {len(errs)}")


if __name__ == "__main__":
    main()
