"""Freezing, LoRA and full fine-tuning over seeds, from one run folder: the Markdown tables of docs/performance.md.

    python docs/scripts/lora_table.py RUN_DIR

Per configuration (every setting but `seed`): the last epoch's validation accuracy, total time, training
time per epoch, the cache phase and peak RSS, each as the mean with a 95 % Student-t interval over the seeds;
then, per seed, time ratios of configurations that ran one after the other (the grid's outer axis is the
seed), which the shared machine's load drifts affect far less than absolute times. A Wilson 95 % interval
for one seed's validation set says how much the accuracy can move from the validation rows alone.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict

from scipy import stats

from harness.store import read_records


def label(p: dict) -> str:
    depth, adapter = p["frozen_layers"], p.get("adapter")
    if adapter == "lora":
        return f"LoRA r={p['lora_r']} in every block" if depth == 0 else f"LoRA r={p['lora_r']} above {depth} frozen blocks"
    return {"all": "head only (frozen all)", 0: "full fine-tuning"}.get(depth, f"{depth} blocks frozen")


def interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % t-interval); 0 half-width for a single value."""
    m = statistics.mean(values)
    if len(values) < 2:
        return m, 0.0
    return m, float(stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5)


def main(run_dir: str) -> None:
    groups: dict[str, list[dict]] = defaultdict(list)
    for rec in read_records(run_dir):
        if rec.get("kind", "train") == "train" and rec.get("status") == "ok":
            groups[label(rec["params"])].append(rec)

    def cell(values: list[float], f: str) -> str:
        m, h = interval(values)
        return f"{m:{f}} ± {h:{f}}"

    print("| configuration | trainable params | seeds | val accuracy | values | total s | train s / epoch | cache s | peak RSS MiB |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for name, recs in groups.items():
        accs = [r["epochs"][-1]["val_accuracy"] for r in recs]
        per_epoch = [statistics.mean(e["train_seconds"] for e in r["epochs"]) for r in recs]
        cache = [r["phases"].get("cache") or 0.0 for r in recs]
        print(f"| {name} | {recs[0]['trainable_params']:,} | {len(recs)} | {cell(accs, '.3f')} | "
              f"{', '.join(f'{a:.3f}' for a in accs)} | {cell([r['seconds_total'] for r in recs], '.1f')} | "
              f"{cell(per_epoch, '.2f')} | {cell(cache, '.1f')} | "
              f"{cell([r['memory']['cpu_peak_rss_mib'] for r in recs], '.0f')} |")
    n_val = next(iter(groups.values()))[0]["n_val"]
    ci = stats.binomtest(round(0.75 * n_val), n_val).proportion_ci(method="wilson")
    lo, hi = ci.low, ci.high
    print(f"\nOne seed's validation set has {n_val} rows: at 75 % its Wilson 95 % interval is {lo:.3f} - {hi:.3f}.")

    by_seed: dict[int, dict[str, dict]] = defaultdict(dict)
    for name, recs in groups.items():
        for r in recs:
            by_seed[r["params"]["seed"]][name] = r
    pairs = [("LoRA r=8 above 4 frozen blocks", "LoRA r=8 in every block"),
             ("4 blocks frozen", "full fine-tuning"),
             ("LoRA r=8 in every block", "full fine-tuning"),
             ("LoRA r=8 above 4 frozen blocks", "4 blocks frozen"),
             ("head only (frozen all)", "full fine-tuning")]
    print("\n| per seed: a / b | total time ratios | mean | train s per epoch ratios | mean | accuracy a - b | "
          "paired mean a - b, 95 % t |")
    print("| --- | --- | ---: | --- | ---: | --- | ---: |")
    for a, b in pairs:
        seeds = [s for s in sorted(by_seed) if a in by_seed[s] and b in by_seed[s]]
        if not seeds:
            continue
        tot = [by_seed[s][a]["seconds_total"] / by_seed[s][b]["seconds_total"] for s in seeds]
        ep = [statistics.mean(e["train_seconds"] for e in by_seed[s][a]["epochs"])
              / statistics.mean(e["train_seconds"] for e in by_seed[s][b]["epochs"]) for s in seeds]
        dacc = [by_seed[s][a]["epochs"][-1]["val_accuracy"] - by_seed[s][b]["epochs"][-1]["val_accuracy"] for s in seeds]
        print(f"| {a} / {b} | {', '.join(f'{x:.2f}' for x in tot)} | {statistics.mean(tot):.2f} | "
              f"{', '.join(f'{x:.2f}' for x in ep)} | {statistics.mean(ep):.2f} | "
              f"{', '.join(f'{x:+.3f}' for x in dacc)} | {paired(dacc)} |")


def paired(diffs: list[float]) -> str:
    """The seeds' paired accuracy difference, in points, with its 95 % t-interval (same seed, same split)."""
    m, h = interval(diffs)
    if len(diffs) < 2:
        return f"{100 * m:+.1f}"
    return f"{100 * m:+.1f} [{100 * (m - h):+.1f}, {100 * (m + h):+.1f}]"


if __name__ == "__main__":
    main(sys.argv[1])
