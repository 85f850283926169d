"""The host's warm pool, read as the planner's probe reads it, and what it costs a large training step
(docs/plan.md, "Pages beyond the host's warm pool").

    python bench/plan/warm_pool.py                      # the probe's reading, three times
    python bench/plan/warm_pool.py --step 64 256        # and MiniLM's training step, everything trained,
                                                        # with the pool as it is and right after 14 GiB freed
    python bench/plan/warm_pool.py --step 64 256 --grid bench/plan/heldout_minilm.toml   # and the account's price

Prints JSON lines: each reading (warm bytes, cold microseconds a page beyond warm, each chunk's); each step's
seconds and minor faults; with --grid, what the account adds for pages beyond the pool to a later step and to
the first (the grid's stored `lab` calibration of the model, everything trained: plan the grid first).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

PAGE = 4096


def reading() -> dict:
    import torch

    from harness.plan.probe import mapping_seconds

    m = mapping_seconds(torch.device("cpu"))
    pool = m["pool"]
    return {"warm_us_per_page": round(m["fresh_seconds_per_byte"] * PAGE * 1e6, 2),
            "hot_gib": None if pool["hot_bytes"] is None else round(pool["hot_bytes"] / 2**30, 3),
            "cold_extra_us_per_page": round(pool["cold_seconds_per_byte"] * PAGE * 1e6, 2),
            "chunks_us_per_page": [round(x * PAGE * 1e6, 2) for x in pool["chunk_seconds_per_byte"]]}


def steps(n: int, length: int, repeats: int, warm_gib: int) -> dict:
    import torch

    from harness.core.models import load_model

    model = load_model("embedded:minilm-l6", 2, attention="sdpa").model.train()
    ids = torch.randint(1000, 2000, (n, length))
    mask = torch.ones(n, length, dtype=torch.long)
    mask[:, -length // 8:] = 0
    labels = torch.zeros(n, dtype=torch.long)
    out = {}
    for how in ("as it is", f"after {warm_gib} GiB freed"):
        runs = []
        for _ in range(repeats):
            if how == "as it is":
                time.sleep(3)  # the host takes back what the last step freed
            else:
                b = torch.empty(warm_gib << 30, dtype=torch.uint8)
                b.fill_(1)
                del b
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t = time.perf_counter()
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            model.zero_grad(set_to_none=True)
            runs.append([round(time.perf_counter() - t, 2), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults])
        out[how] = runs
    return out


def account_price(grid: str, n: int, length: int) -> dict:
    from harness.config import load_grid
    from harness.grid import expand
    from harness.plan.account import Batches, cold_seconds, live_mapped, memory, warm_pool
    from harness.plan.calibrate import Store, calibration_key, environment, loaded, setting_of

    trial = next(t for t in expand(load_grid(grid)[0]) if t.params["strategy"] == "lab")
    p = dict(trial.params, frozen_layers=0)
    cal = Store().get(environment(), calibration_key(p))
    if cal is None:
        return {"account": f"no stored calibration for {grid}'s lab key: plan the grid first"}
    a, co = loaded(cal)
    s = setting_of(p, 0, False)
    b = Batches(train=[[(n, length)]], eval=[], cache=[], n_examples=n, n_tokens=n * length, width_train=length,
                width_val=length, n_train=n, n_val=0)
    live, growth = live_mapped(a, s, (n, length)), memory(a, s, b, co).train_growth
    pool = warm_pool(a)[0]
    return {"pool_gib": round(pool / 2**30, 3) if pool != float("inf") else None,
            "mapped_activations_gib": round(live / 2**30, 2), "first_step_growth_gib": round(growth / 2**30, 2),
            "later_step_s": round(cold_seconds(a, s, live), 2), "first_step_s": round(cold_seconds(a, s, growth), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", nargs=2, type=int, metavar=("N", "LENGTH"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--warm-gib", type=int, default=14)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grid")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for _ in range(3):
        print(json.dumps({"reading": reading()}))
        time.sleep(2)
    if args.step:
        print(json.dumps({"step": args.step, "threads": args.threads, "seconds, minor faults": steps(*args.step, args.repeats, args.warm_gib)}))
        if args.grid:
            print(json.dumps({"account": account_price(args.grid, *args.step)}))


if __name__ == "__main__":
    main()
