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
import ctypes
import gc
import json
import statistics

SHAPES = ["4x64", "8x64", "32x64", "64x64", "16x128", "4x256", "8x256", "16x256", "32x256", "64x256", "64x127",
          "138x59", "128x64", "207x16", "8x160", "16x160", "24x160", "32x160", "48x160", "64x160", "32x128", "32x192"]


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> None:
    import numpy as np
    import torch

    from harness.core.models import load_model
    from harness.plan.account import MMAP_THRESHOLD, held_heap, trace_sizes
    from harness.plan.calibrate import loaded
    from harness.plan.probe import _probe_inputs

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
    trim = ctypes.CDLL(None).malloc_trim
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    errors: dict[tuple[str, str, float], list[float]] = {}
    for mode in ("eval", "train"):
        model.train(mode == "train")
        trace = anatomy.fwd_trace[mode]
        events = np.asarray(trace["events"], dtype=np.int64)
        made = events >= 0
        which = np.where(made, events, -1 - events)
        for n, length in shapes:
            grown = []
            for _ in range(args.repeats):
                ids, mask = _probe_inputs(model, torch.device("cpu"), length, n)
                gc.collect()
                trim(0)
                before = _status_bytes("VmRSS:")
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                with torch.no_grad():
                    out = model(input_ids=ids, attention_mask=mask)
                grown.append(_status_bytes("VmHWM:") - before)
                del out
            measured = statistics.mean(grown)
            sizes = np.maximum(0.0, trace_sizes(trace, n, length))
            delta = np.where(made, sizes[which], -sizes[which])
            mapped = sizes[which] >= MMAP_THRESHOLD
            heap = np.cumsum(np.where(mapped, 0.0, delta))
            live_mapped = np.cumsum(np.where(mapped, delta, 0.0))
            at = int(np.argmax(heap + live_mapped))
            held = held_heap(heap)
            line = {"mode": mode, "shape": f"{n}x{length}", "measured_mib": round(measured / 2**20, 1),
                    "readings_mib": [round(g / 2**20, 1) for g in grown]}
            for k in args.k:
                forecast = {"live": k * heap[at] + live_mapped[at], "held": float(np.max(k * held + live_mapped))}
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
