"""The attention's measured rates (`probe.attention_rates`), read several times in one process: how much a
reading moves on this machine (docs/plan.md).

    python bench/plan/attention_rates.py embedded:minilm-l6 --readings 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--readings", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    import torch

    from harness.core.models import load_model
    from harness.plan.probe import attention_rates

    torch.set_num_threads(args.threads)
    model = load_model(args.model, 2, trust_remote_code=False, allow_pickle=False, attention="sdpa", seed=0).model
    for _ in range(args.readings):
        t = time.perf_counter()
        r = attention_rates(model, args.model, torch.device("cpu"), args.precision)
        seconds = time.perf_counter() - t
        print(json.dumps({"seconds": round(seconds, 2), "ratios": {m: round(v, 4) for m, v in r["ratios"].items()},
                          "rates": {m: (None if r[m] is None else round(r[m])) for m in ("grad", "train", "eval")},
                          "flops_ratio": {m: round(f[1] / f[0], 4) for m, f in r["flops"].items()}}), flush=True)


if __name__ == "__main__":
    main()
