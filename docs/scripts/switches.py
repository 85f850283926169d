"""Each switch of `fast` alone (grids/switches/*.toml): run every grid, then print one Markdown table.

    python docs/scripts/switches.py [--out /tmp/switches] [--only padding,compile] [--table-only]

Each grid changes one switch on a fixed base and nothing else, so the ratio between its trials is that
switch's effect, measured in one run, one trial at a time. The table gives per trial: the switch's value,
the frozen depth, `seconds_total`, the median epoch (training + evaluation), the cache phase, the last
validation accuracy and the peak RSS of the trial's process tree, from `trials.jsonl`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from harness.store import read_records

REPO = Path(__file__).resolve().parents[2]
GRIDS = sorted((REPO / "grids" / "switches").glob("*.toml"))


def run(grid: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-m", "harness", "run", str(grid), "--out", str(out), "--no-report"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def rows(name: str, out: Path) -> list[str]:
    lines = []
    for rec in read_records(out):
        p, epochs = rec["params"], rec.get("epochs") or []
        median = statistics.median(e["seconds"] for e in epochs) if epochs else None
        cache = (rec.get("phases") or {}).get("cache")
        acc = epochs[-1]["val_accuracy"] if epochs else None
        rss = (rec.get("memory") or {}).get("cpu_peak_rss_mib")
        lines.append(f"| {name} | `{p[name]}` | {p['frozen_layers']} | {p['strategy']} | {rec['status']} "
                     f"| {rec['seconds_total']:.1f} | {'-' if median is None else f'{median:.2f}'} "
                     f"| {'-' if cache is None else f'{cache:.2f}'} | {'-' if acc is None else f'{acc:.3f}'} "
                     f"| {'-' if rss is None else f'{rss:.0f}'} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/switches")
    ap.add_argument("--only", default="")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    only = {s for s in args.only.split(",") if s}
    table = ["| switch | value | frozen | base | status | total s | median epoch s | cache s | val acc | peak RSS MiB |",
             "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for grid in GRIDS:
        name = grid.stem
        if only and name not in only:
            continue
        out = Path(args.out) / name
        if not args.table_only:
            print(f"running {grid.relative_to(REPO)} -> {out}", file=sys.stderr, flush=True)
            run(grid, out)
        table += rows(name, out)
    print("\n".join(table))


if __name__ == "__main__":
    main()
