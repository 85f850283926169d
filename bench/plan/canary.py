"""The machine's speed now: one training step of the embedded MiniLM (AdamW, one thread), at 64 x 64 and at
16 x 128 tokens, four times each; prints the seconds of each step. Run it before and after a timing benchmark:
on a shared VM the same step can take 3x longer a quarter of an hour later (docs/plan.md).

    python bench/plan/canary.py
"""

from __future__ import annotations

import time

import torch

from harness.core.models import load_model


def main() -> None:
    torch.set_num_threads(1)
    model = load_model("embedded:minilm-l6", 2, trust_remote_code=False, allow_pickle=False, attention="sdpa",
                       seed=0).model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for n, length in [(64, 64), (16, 128)]:
        ids = torch.randint(1000, 30000, (n, length))
        mask = torch.ones(n, length, dtype=torch.long)
        mask[1:, length // 2:] = 0
        seconds = []
        for _ in range(4):
            t = time.perf_counter()
            out = model(input_ids=ids, attention_mask=mask, labels=torch.zeros(n, dtype=torch.long))
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            seconds.append(round(time.perf_counter() - t, 3))
        print(f"{n} x {length} tokens: {seconds} s per step")


if __name__ == "__main__":
    main()
