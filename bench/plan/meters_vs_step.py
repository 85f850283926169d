"""Which short meter tracks the machine's swings: alternate a 0.1 s matrix-product window (meters/speed.py), a
0.1 s memory-copy window (64 MiB) and one MiniLM training step (64 x 64 tokens, AdamW, one thread), for
ROUNDS rounds, one JSON line each, then the correlations of the step's seconds with 1 / each reading
(docs/plan.md).

    python bench/plan/meters_vs_step.py 40 /tmp/mvs.jsonl
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from harness.core.models import load_model
from harness.meters.speed import measure


def copy_gbs(window_s: float = 0.1, mib: int = 64) -> float:
    a = torch.ones(mib * 2**18)
    b = torch.empty_like(a)
    b.copy_(a)
    n, t0 = 0, time.perf_counter()
    while True:
        b.copy_(a)
        n += 1
        dt = time.perf_counter() - t0
        if dt >= window_s:
            return 2 * a.numel() * 4 * n / dt / 1e9  # read and written


def main() -> None:
    rounds, path = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)
    model = load_model("embedded:minilm-l6", 2, trust_remote_code=False, allow_pickle=False, attention="sdpa",
                       seed=0).model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(1000, 2000, (64, 64))
    mask, labels = torch.ones_like(ids), torch.zeros(64, dtype=torch.long)
    rows = []
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rounds):
            g, c = measure().gflops, copy_gbs()
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            opt.step()
            rows.append({"i": i, "gflops": g, "copy_gbs": c, "step_s": time.perf_counter() - t})
            out.write(json.dumps(rows[-1]) + "\n")
            print(rows[-1], flush=True)
    s = np.array([r["step_s"] for r in rows])
    for k in ("gflops", "copy_gbs"):
        v = np.array([r[k] for r in rows])
        print(f"step seconds against 1 / {k}: r = {np.corrcoef(s, 1 / v)[0, 1]:.2f} "
              f"(step {s.min():.1f}-{s.max():.1f} s, {k} {v.min():.1f}-{v.max():.1f})")


if __name__ == "__main__":
    main()
