"""The learning-curve benchmark of docs/forecast.md: fit on small runs, predict larger ones, then measure them.

    python docs/scripts/forecast_bench.py data   OUT     # fit runs (<= 1,000 rows), then the held-out sizes
    python docs/scripts/forecast_bench.py fixed  OUT     # the fit runs again, each size validated on the same
                                                         # 1,000 rows ([data] val_rows): OUT/runs/*-fitfixed
    python docs/scripts/forecast_bench.py epochs OUT     # 20-epoch runs: fit on epochs 1-10, measure epoch 20
    python docs/scripts/forecast_bench.py lab10  OUT     # the lab's question, 10 epochs (forecast from these)
    python docs/scripts/forecast_bench.py lab20  OUT     # ... and the 20-epoch run that confirms or refutes it
    python docs/scripts/forecast_bench.py evaluate OUT   # the tables of docs/forecast.md

Every run is an ordinary `python -m harness run` of a grid this script writes into OUT/grids. The held-out
runs are separate run folders that no fit ever reads: `evaluate` fits on OUT/runs/*-fit only and compares
with OUT/runs/*-held. Seeds: `data_seed` 1, 2, 3 as a grid axis (each draws its own sample, split and
initialisation), so the spread between seeds includes the sampling of the rows.

Data: SST-2's train.tsv (60,614 sentences) and the IMDB sample (999 + 999 reviews of ../shared/data/imdb-1k,
joined into one 1,998-row file under OUT/data: too small for 4,000 and 8,000 rows, so it is fitted on up to
500 rows and predicted at 1,000, 1,500 and 1,998, the same 2x-4x reach as SST-2's 2,000-4,000 from 1,000
... 8,000 is 8x).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

import os

# ../shared from the repository root (a git worktree may sit deeper: FORECAST_SHARED names it then)
SHARED = Path(os.environ.get("FORECAST_SHARED", Path(__file__).resolve().parents[2].parent / "shared")) / "data"
SEEDS = [1, 2, 3]
SETTINGS = ['"all"', "5"]
FIXED_VAL_ROWS = 1000  # frozen depth: only the head trains; the top one of MiniLM's six blocks trains too

DATASETS = {
    # name: (source, text column, max_length, fit sizes, held-out sizes)
    "sst2": ("{shared}/sst2/train.tsv", "sentence", 64, [100, 200, 400, 700, 1000], [2000, 4000, 8000]),
    "imdb": ("{out}/data/imdb-2k.csv", "text", 96, [100, 200, 300, 400, 500], [1000, 1500, 1998]),
}

GRID = """name = "{name}"
[model]
name = "embedded:minilm-l6"
max_length = {max_length}
[data]
source = "{source}"
text_column = "{text}"
label_column = "label"
val_fraction = 0.2
{val_rows}[train]
epochs = {epochs}
optimizer = "{optimizer}"
learning_rate = {lr}
{head_lr}strategy = "fast"
[grid]
dataset_size = {sizes}
data_seed = {seeds}
batch_size = [16]
frozen_layers = [{frozen}]
device = ["cpu"]
[limits]
trial_timeout_s = 5400
[report]
target_accuracy = 0.8
extrapolate_rows = {extrapolate}
"""


def write_grid(out: Path, name: str, dataset: str, sizes: list[int], epochs: int, frozen: list[str],
               optimizer: str = "adamw", lr: float = 1e-4, head_lr: float | None = 1e-2,
               seeds: list[int] = SEEDS, val_rows: int | None = None) -> Path:
    source, text, max_length, _, _ = DATASETS[dataset]
    grid = GRID.format(
        name=name, max_length=max_length, source=source.format(shared=SHARED.resolve(), out=out.resolve()),
        text=text, epochs=epochs, optimizer=optimizer, lr=lr,
        head_lr=f"head_learning_rate = {head_lr}\n" if head_lr else "", sizes=json.dumps(sizes),
        seeds=json.dumps(seeds), frozen=", ".join(frozen), extrapolate=max(DATASETS[dataset][4]),
        val_rows=f"val_rows = {val_rows}\n" if val_rows else "",
    )
    path = out / "grids" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(grid)
    return path


def imdb_file(out: Path) -> None:
    path = out / "data" / "imdb-2k.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = [pd.read_csv(SHARED / "imdb-1k" / f) for f in ("train.csv", "test.csv")]
        pd.concat(frames, ignore_index=True).to_csv(path, index=False)


def run(grid: Path, out: Path, report: bool = False) -> None:
    run_dir = out / "runs" / grid.stem
    cmd = [sys.executable, "-m", "harness", "run", str(grid)]
    cmd += ["--resume", str(run_dir)] if (run_dir / "trials.jsonl").exists() else ["--out", str(run_dir)]
    if not report:
        cmd.append("--no-report")
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=False)


def main(what: str, out: Path) -> None:
    imdb_file(out)
    if what == "data":
        for dataset, (_, _, _, fit, _) in DATASETS.items():
            run(write_grid(out, f"{dataset}-fit", dataset, fit, 3, SETTINGS), out)
        for dataset, (_, _, _, _, held) in DATASETS.items():
            run(write_grid(out, f"{dataset}-held", dataset, held, 3, SETTINGS), out)
    elif what == "fixed":
        # Every fit size validated on the same 1,000 rows of its seed (disjoint from its training rows): each
        # point 1.3 points wide instead of 3-9 (docs/forecast.md); the held-out runs are not run again.
        for dataset, (_, _, _, fit, _) in DATASETS.items():
            run(write_grid(out, f"{dataset}-fitfixed", dataset, fit, 3, SETTINGS, val_rows=FIXED_VAL_ROWS), out)
    elif what == "epochs":
        # FORECAST_EPOCH_FROZEN='"all"' keeps only the head-only setting (each epoch a few ms after the cache
        # pass; frozen 5 trains a block for 20 epochs, about 10 min a trial on 2 cores)
        frozen = os.environ.get("FORECAST_EPOCH_FROZEN")
        settings = frozen.split(",") if frozen else SETTINGS
        run(write_grid(out, "sst2-epochs", "sst2", [1000], 20, settings), out)
        run(write_grid(out, "imdb-epochs", "imdb", [500], 20, settings), out)
    elif what in ("lab10", "lab20"):
        # The lab's optimiser on real reviews: SGD at 0.005, one rate for all, everything but the head frozen.
        # On 2 cores at a load of ~28 (2026-11-30) one 10-epoch trial took 16.8 min, so the question was put to
        # seed 1 alone: LAB_SEEDS=1,2,3 asks it of three.
        epochs = 10 if what == "lab10" else 20
        seeds = [int(v) for v in os.environ.get("LAB_SEEDS", "1").split(",")]
        grid = write_grid(out, f"imdb-lab-{epochs}", "imdb", [1998], epochs, ['"all"'], "sgd", 0.005, None, seeds)
        run(grid, out, report=True)
    elif what == "evaluate":
        from forecast_evaluate import evaluate  # noqa: PLC0415  (next to this file)

        evaluate(out)
    else:
        raise SystemExit(f"forecast_bench.py: unknown step {what!r}; expected data, fixed, epochs, lab10, lab20 or evaluate")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], Path(sys.argv[2]))
