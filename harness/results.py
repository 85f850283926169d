"""Trial records as one table: a row per trial, settings flattened into columns under their own names.

`load` accepts a run folder (read through `harness.store`), or a `trials.csv` / `trials.parquet` written by the
report, so that the table round-trips through those formats. Every measured column may be missing (partial
runs, OOM, timeouts, errors): a missing figure is NaN / None, never an exception.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness.record import REPEAT_KEYS, MiB, config_id, finite
from harness.store import TRIALS, StoreError, read_records

SEED_KEYS = REPEAT_KEYS  # settings that tell the repeats of one configuration apart (record.py says why)

ID_COLUMNS = ["run_name", "run_dir", "trial_id", "index", "repeat", "kind", "status", "config_key"]

# Columns that are text whatever their content looks like (a hex id such as "1e5a..." is not a number).
TEXT_COLUMNS = [
    "run_name", "run_dir", "trial_id", "kind", "status", "config_key", "oom_phase", "error", "host", "device_name",
    "started_at", "finished_at", "memory_note", "energy_note", "cost_note", "mfu_note", "phases", "epoch_log",
]



def param_columns(df: pd.DataFrame) -> list[str]:
    """The columns of a `load` frame that hold settings (flattened `params`)."""
    return [c for c in df.columns if c not in RESERVED]


def param_column_name(key: str) -> str:
    """The column a setting lands in: its own name, or `param.<name>` where that would clash."""
    return f"param.{key}" if key in RESERVED else key


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, default=str)
        elif isinstance(value, float) and not math.isfinite(value):
            out[name] = None
        else:
            out[name] = value
    return out


def _last(values: list[float | None]) -> float | None:
    for v in reversed(values):
        if v is not None:
            return v
    return None


# Columns copied from the record as they are, in the table's order.
_NUMBERS = ("seconds_total", "samples_per_s", "tokens_per_s", "padded_tokens_per_s", "n_train", "n_val", "num_labels",
            "trainable_params", "total_params")
_MEMORY = ("cpu_peak_rss_mib", "cpu_baseline_rss_mib", "cpu_maxrss_mib", "gpu_peak_used_mib", "gpu_total_mib",
           "cuda_peak_allocated_mib", "cuda_peak_reserved_mib")
_TEXTS = ("error", "host", "device_name", "started_at", "finished_at", "memory_note", "energy_note", "cost_note",
          "mfu_note")


def record_row(rec: dict[str, Any], run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """One record as one flat row (settings under their own names, then the measures)."""
    params = _dict(rec.get("params"))
    row: dict[str, Any] = {
        "run_name": _text(rec.get("run_name")),
        "run_dir": None if run_dir is None else str(run_dir),
        "trial_id": str(rec.get("trial_id")),
        "index": finite(rec.get("index")),
        "repeat": finite(rec.get("repeat")),
        "kind": _text(rec.get("kind")),  # "train", or "probe" for a step of the largest-batch search
        "status": str(rec.get("status")),
        "config_key": config_id(params),
    }
    for key, value in _flatten(params).items():
        row[param_column_name(key)] = value
    return {**row, **_measures(rec)}


def _measures(rec: dict[str, Any]) -> dict[str, Any]:
    """The measured columns of a record (MEASURE_COLUMNS is their list, read off an empty record)."""
    epochs = [e for e in (rec.get("epochs") or []) if isinstance(e, dict)] if isinstance(rec.get("epochs"), list) else []
    mem, budget, energy, oom = (_dict(rec.get(k)) for k in ("memory", "memory_budget", "energy_j", "oom"))
    val_acc = [finite(e.get("val_accuracy")) for e in epochs]
    secs = [s for s in (finite(e.get("seconds")) for e in epochs) if s is not None]
    known_acc = [v for v in val_acc if v is not None]

    def mib(nbytes: Any) -> float | None:
        n = finite(nbytes)
        return None if n is None else n / MiB

    return {
        "val_accuracy": _last(val_acc),  # last finished epoch
        "best_val_accuracy": max(known_acc) if known_acc else None,
        "val_loss": _last([finite(e.get("val_loss")) for e in epochs]),  # last finished epoch
        "train_loss": _last([finite(e.get("train_loss")) for e in epochs]),
        "train_accuracy": _last([finite(e.get("train_accuracy")) for e in epochs]),
        "n_epochs_done": len(epochs),
        "seconds_per_epoch": sum(secs) / len(secs) if secs else None,  # mean over finished epochs
        **{k: finite(rec.get(k)) for k in _NUMBERS},
        **{k: finite(mem.get(k)) for k in _MEMORY},
        "memory_budget_cpu_mib": mib(budget.get("cpu_bytes")),
        "memory_budget_gpu_mib": mib(budget.get("gpu_bytes")),
        "energy_cpu_j": finite(energy.get("cpu")),
        "energy_gpu_j": finite(energy.get("gpu")),
        "cost_usd": finite(rec.get("cost_usd")),
        # the machine's speed around the epochs (meters/speed.py), GFLOP/s: CPU trials only
        "speed_before_gflops": finite((rec.get("machine_speed") or {}).get("before_gflops")),
        "speed_after_gflops": finite((rec.get("machine_speed") or {}).get("after_gflops")),
        "flops": finite(rec.get("flops")),
        "mfu": finite(rec.get("mfu")),
        "max_batch": finite(rec.get("max_batch")),  # an older run's `result.max_batch`: moved by the loader
        "oom_phase": _text(oom.get("phase")),
        "oom_epoch": finite(oom.get("epoch")),
        **{k: _text(rec.get(k)) for k in _TEXTS},
        "phases": json.dumps(rec["phases"], default=str) if isinstance(rec.get("phases"), dict) else None,  # name -> s
        "epoch_log": json.dumps(epochs, default=str),  # the per-epoch dicts: learning curves survive CSV / Parquet
        # `harness run --plan`: the plan's prediction for this trial (harness/prediction.py scores it)
        "predicted": json.dumps(rec["predicted"], default=str) if isinstance(rec.get("predicted"), dict) else None,
    }


MEASURE_COLUMNS = list(_measures({}))
RESERVED = frozenset(ID_COLUMNS) | frozenset(MEASURE_COLUMNS)


def _normalise_mixed(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A setting that is sometimes a number and sometimes text ("all" or 2 frozen layers) becomes text in
    every row, so that the column has one type and survives Parquet and CSV alike."""
    for col in columns:
        kinds = set()
        for row in rows:
            v = row.get(col)
            if v is None:
                continue
            if isinstance(v, bool):
                kinds.add("bool")
            elif isinstance(v, (int, float)):
                kinds.add("num")
            else:
                kinds.add("str")
        if len(kinds) > 1:
            for row in rows:
                v = row.get(col)
                if v is not None:
                    row[col] = v if isinstance(v, str) else json.dumps(v)


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    for col in df.columns:
        if df[col].isna().all():
            df[col] = pd.Series([float("nan")] * len(df), index=df.index, dtype="float64")
        elif col in TEXT_COLUMNS:
            df[col] = df[col].astype("str")
    for col in ("index", "repeat", "n_epochs_done"):
        if col in df.columns and df[col].notna().all():
            df[col] = df[col].astype("int64")
    return df.reset_index(drop=True)


def frame_from_records(records: Iterable[dict[str, Any]], run_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    rows = [record_row(r, run_dir) for r in records]
    pcols: list[str] = []
    for row in rows:
        for key in row:
            if key not in RESERVED and key not in pcols:
                pcols.append(key)
    _normalise_mixed(rows, pcols)
    columns = ID_COLUMNS + pcols + MEASURE_COLUMNS
    df = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame({c: [] for c in columns})
    return _tidy(df)


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: cannot read the trials table ({exc})") from None
    return _tidy(df)


def load(run_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per trial of a run folder, or the table a report wrote (`trials.csv` / `trials.parquet`)."""
    path = Path(run_dir)
    if path.suffix.lower() in (".csv", ".parquet"):
        if not path.is_file():
            raise StoreError(f"{path}: no such file")
        return _read_table(path)
    if path.is_file() and path.name == TRIALS:
        path = path.parent
    if path.is_dir() and not (path / TRIALS).exists():
        for name in ("trials.parquet", "trials.csv"):
            if (path / name).is_file():
                return _read_table(path / name)
    return frame_from_records(read_records(path), path)


def merge_frames(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Frames of `load` as one; a setting missing in one is NaN there, and a setting that is text in one frame
    and a number in another becomes text everywhere."""
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return frame_from_records([])
    if len(frames) == 1:
        return frames[0]
    rows = [row for f in frames for row in f.astype(object).where(f.notna(), None).to_dict("records")]
    pcols: list[str] = []
    for f in frames:
        for c in param_columns(f):
            if c not in pcols:
                pcols.append(c)
    _normalise_mixed(rows, pcols)
    columns = ID_COLUMNS + pcols + MEASURE_COLUMNS
    df = pd.DataFrame(rows, columns=columns)
    for col in ("index", "repeat", "n_epochs_done"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return _tidy(df)


def load_many(run_dirs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Several run folders (or report tables) as one frame."""
    return merge_frames(load(p) for p in run_dirs)
