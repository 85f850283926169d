"""Seconds and minor page faults of one pass of the embedded MiniLM at a shape (one thread), repeated: the cost
of storages glibc maps afresh (docs/plan.md, "fresh mappings"). Run it as it is, and again with glibc told
never to map, to see what the faults cost:

    python bench/plan/page_faults.py 64 256 4 nograd-train
    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 python bench/plan/page_faults.py 64 256 4 nograd-train

MODE: nograd-train (a frozen forward under frozen_dropout), eval, or grad (forward and backward, all trained).
Prints one JSON line: each repeat's seconds and minor faults (getrusage).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time


def main() -> None:
    import torch

    from harness.core.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("length", type=int)
    ap.add_argument("repeats", type=int)
    ap.add_argument("mode", choices=["nograd-train", "eval", "grad"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    n, length = args.n, args.length
    model = load_model("embedded:minilm-l6", 2, attention="sdpa").model
    ids = torch.randint(1000, 2000, (n, length))
    mask = torch.ones(n, length, dtype=torch.long)
    mask[:, -length // 8:] = 0  # padded, as trials' batches are (an all-ones mask lets sdpa take another kernel)
    labels = torch.zeros(n, dtype=torch.long)
    model.train(args.mode != "eval")
    runs = []
    for _ in range(args.repeats):
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        if args.mode == "grad":
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            model.zero_grad(set_to_none=False)
        else:
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask)
        runs.append([round(time.perf_counter() - t, 3), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults])
    print(json.dumps({"malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC")}, "n": n,
                      "length": length, "mode": args.mode, "runs [seconds, minor faults]": runs}))


if __name__ == "__main__":
    main()
