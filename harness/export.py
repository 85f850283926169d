"""Export a run folder in pytest-benchmark's saved-run JSON format.

`export_benchmark(run_dir)` writes one file that `pytest-benchmark compare` loads like a run saved with
`pytest --benchmark-save`: one benchmark per configuration (the repeats of a configuration grouped, as in
`harness compare`), whose data are the per-epoch seconds of its trials (`epochs[].seconds`), so `rounds`
is the number of epochs and `iterations` is 1. Status, final accuracy, peak memory, tokens/s and cost go
to `extra_info`.

Where it goes (`out_path`):

- None (default): `<run_dir>/benchmarks/<machine id>/0001_<run name>.json`, the layout of pytest-benchmark's
  file storage (machine id as pytest-benchmark spells it, e.g. `Linux-CPython-3.11-64bit`), so that

      pytest-benchmark --storage <run_dir>/benchmarks compare 0001

  finds it. Exporting again replaces that file.
- a path ending in `.json`: exactly that file.
- any other path: a pytest-benchmark storage folder (created if needed); the file is
  `<out_path>/<machine id>/NNNN_<run name>.json` with the next free number, so that several runs exported
  into one folder can be compared side by side: `pytest-benchmark --storage <out_path> compare`.

The statistics are those of `pytest_benchmark.stats.Stats` itself (they changed between releases: 5.3 moved
`hd15iqr`), and the file says which pytest-benchmark release wrote it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from harness import __version__ as HARNESS_VERSION
from harness.compare import (
    config_labels,
    epoch_seconds,
    final_val_accuracy,
    group_by_config,
)
from harness.record import configuration, finite, json_safe
from harness.store import StoreError, read_env, read_records, safe_name


BENCHMARK_FUNC = "train_epoch"


# --------------------------------------------------------------------------------------------------
# Statistics: pytest-benchmark's own, so that they match whatever release reads the file
# --------------------------------------------------------------------------------------------------
def _pytest_benchmark_version() -> str:
    from importlib.metadata import version

    return version("pytest-benchmark")


def benchmark_stats(data: list[float]) -> dict[str, Any]:
    """pytest-benchmark's `stats` dict for one benchmark's timings (seconds), `data` and `iterations` included."""
    from pytest_benchmark.stats import Stats

    if not data:
        raise ValueError("no timings")
    stats = Stats()
    for value in data:
        stats.update(float(value))
    return {**stats.as_dict(), "data": [float(v) for v in data], "iterations": 1}


# --------------------------------------------------------------------------------------------------
# Machine and commit info: the run's env.json (the machine that ran the trials, not the one exporting)
# --------------------------------------------------------------------------------------------------
def _text(env: dict[str, Any], key: str) -> Optional[str]:
    value = env.get(key)
    return value if isinstance(value, str) and value else None


def _python_version(env: dict[str, Any]) -> Optional[str]:
    m = re.match(r"\s*(\d+\.\d+(?:\.\d+)?)", _text(env, "python") or "")
    return m.group(1) if m else None


def machine_id(env: dict[str, Any]) -> str:
    """pytest-benchmark's machine id (`System-Implementation-X.Y-bits`) of the machine that ran the trials.
    Only for a run whose env.json predates a field does that part of the folder name come from the machine
    that exports (`machine_info` leaves it null)."""
    version = _python_version(env) or platform.python_version()
    parts = [(_text(env, "system"), platform.system()),
             (_text(env, "python_implementation"), platform.python_implementation()),
             (".".join(version.split(".")[:2]), ""), (_text(env, "bits"), platform.architecture()[0])]
    return "-".join(p if p and re.fullmatch(r"[\w.]+", p) else fallback for p, fallback in parts)


def machine_info(env: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    hosts = sorted({str(r["host"]) for r in records if r.get("host")})
    build = env.get("python_build")
    return {
        "node": _text(env, "host") or (hosts[0] if hosts else None),
        "processor": _text(env, "cpu_model"),
        "machine": _text(env, "machine"),
        "python_compiler": _text(env, "python_compiler"),
        "python_implementation": _text(env, "python_implementation"),
        "python_implementation_version": _python_version(env),
        "python_version": _python_version(env),
        "python_build": list(build) if isinstance(build, list) else None,
        "release": _text(env, "release"),
        "system": _text(env, "system"),
        "cpu": {"brand_raw": _text(env, "cpu_model"), "count": env.get("cpu_count")},
        "hosts": hosts,
        "harness_env": env,
    }


def commit_info(env: dict[str, Any]) -> dict[str, Any]:
    """The commit the run ran at; `dirty` from env.json's `git_dirty` (or, in older runs, the "-dirty" suffix
    of `git_commit`)."""
    commit = _text(env, "git_commit")
    dirty = env.get("git_dirty")
    if not isinstance(dirty, bool):
        dirty = bool(commit and commit.endswith("-dirty"))
    return {
        "id": commit.removesuffix("-dirty") if commit else "unversioned",
        "time": None,
        "author_time": None,
        "dirty": dirty,
        "project": "harness",
        "branch": _text(env, "git_branch") or "(unknown)",
    }


# --------------------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------------------
def _median(values: list[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _max(values: list[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def _mem(rec: dict[str, Any], name: str) -> Optional[float]:
    mem = rec.get("memory")
    return finite(mem.get(name)) if isinstance(mem, dict) else None


def _status(records: list[dict[str, Any]]) -> str:
    counts = Counter(str(r.get("status")) for r in records)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{k}={n}" for k, n in sorted(counts.items(), key=lambda kv: (kv[0] != "ok", kv[0])))


def _benchmark(run_name: str, label: str, records: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    ok = [r for r in records if r.get("status") == "ok"]
    measured = ok or records  # a configuration with no ok trial keeps the epochs its trials finished
    data = [s for r in measured for s in epoch_seconds(r)]
    if not data:
        return None
    params = configuration(records[0].get("params"))
    param_id = label.replace(", ", "-")
    name = f"{BENCHMARK_FUNC}[{param_id}]"
    costs = [finite(r.get("cost_usd")) for r in records]
    known_costs = [c for c in costs if c is not None]
    extra_info = {
        "status": _status(records),
        "statuses": [str(r.get("status")) for r in records],
        "trials": len(records),
        "measured_trials": len(measured),
        "partial": not ok,
        "trial_ids": [str(r.get("trial_id")) for r in records],
        "val_accuracy": _median([final_val_accuracy(r) for r in ok]),
        "val_accuracies": [final_val_accuracy(r) for r in ok],
        "cpu_peak_rss_mib": _max([_mem(r, "cpu_peak_rss_mib") for r in measured]),
        "gpu_peak_used_mib": _max([_mem(r, "gpu_peak_used_mib") for r in measured]),
        "cuda_peak_allocated_mib": _max([_mem(r, "cuda_peak_allocated_mib") for r in measured]),
        "tokens_per_s": _median([finite(r.get("tokens_per_s")) for r in ok]),
        "samples_per_s": _median([finite(r.get("samples_per_s")) for r in ok]),
        "seconds_total": _median([finite(r.get("seconds_total")) for r in ok]),
        "cost_usd": sum(known_costs) if known_costs else None,
        "cost_usd_per_trial": _median(costs),
        "device_name": next((r.get("device_name") for r in records if r.get("device_name")), None),
        "hosts": sorted({str(r["host"]) for r in records if r.get("host")}),
    }
    return {
        "group": None,
        "name": name,
        "fullname": f"{safe_name(run_name)}::{name}",
        "params": params,
        "param": param_id,
        "extra_info": extra_info,
        "options": {
            "disable_gc": False,
            "timer": "perf_counter",
            "min_rounds": 1,
            "max_time": None,
            "min_time": None,
            "warmup": False,
        },
        "stats": benchmark_stats(data),
    }


def build_benchmark_json(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The saved-run document for a run folder (what `export_benchmark` writes)."""
    run_dir = Path(run_dir)
    records = read_records(run_dir)
    if not records:
        raise StoreError(f"{run_dir}: no trials to export")
    env = read_env(run_dir)
    run_name = str(records[0].get("run_name") or run_dir.name)
    groups = group_by_config(records)
    labels = config_labels(groups)
    benchmarks, omitted = [], []
    for key, recs in groups.items():
        bench = _benchmark(run_name, labels[key], recs)
        if bench is None:
            omitted.append({"config": labels[key], "statuses": [str(r.get("status")) for r in recs],
                            "trial_ids": [str(r.get("trial_id")) for r in recs]})
        else:
            benchmarks.append(bench)
    if not benchmarks:
        raise StoreError(f"{run_dir}: nothing to export: no trial finished an epoch")
    finished = sorted(str(r["finished_at"]) for r in records if isinstance(r.get("finished_at"), str))
    return {
        "machine_info": machine_info(env, records),
        "commit_info": commit_info(env),
        "benchmarks": benchmarks,
        "datetime": finished[-1] if finished else datetime.now(timezone.utc).isoformat(),
        "version": _pytest_benchmark_version(),
        "harness": {
            "version": HARNESS_VERSION,
            "run_dir": str(run_dir),
            "run_name": run_name,
            "unit": "seconds per epoch",
            "omitted": omitted,
        },
    }


def _next_number(folder: Path) -> str:
    nums = []
    for p in folder.glob("[0-9][0-9][0-9][0-9]_*.json"):
        try:
            nums.append(int(p.name.split("_", 1)[0]))
        except ValueError:
            pass
    return f"{max(nums, default=0) + 1:04d}"


def export_benchmark(run_dir: str | os.PathLike, out_path: str | os.PathLike | None = None) -> Path:
    """Write a run's trials as a pytest-benchmark saved run; returns the file written.

    `out_path`: None -> `<run_dir>/benchmarks/<machine id>/0001_<run name>.json` (replaced on re-export);
    a `*.json` path -> that file; any other path -> a pytest-benchmark storage folder, into which the file
    goes as `<machine id>/NNNN_<run name>.json` with the next free number. Load it with
    `pytest-benchmark --storage <storage folder> compare` (or name the file: `pytest-benchmark compare FILE`).
    Raises `StoreError` for a missing run folder, a run without trials, or an unwritable destination.
    """
    run_dir = Path(run_dir)
    doc = build_benchmark_json(run_dir)
    name = safe_name(doc["harness"]["run_name"])
    mid = machine_id(read_env(run_dir))
    if out_path is None:
        target = run_dir / "benchmarks" / mid / f"0001_{name}.json"
    else:
        out = Path(out_path)
        if out.suffix.lower() == ".json" and not out.is_dir():
            target = out
        else:
            folder = out / mid
            target = folder / f"{_next_number(folder) if folder.is_dir() else '0001'}_{name}.json"
    text = json.dumps(json_safe(doc), ensure_ascii=True, indent=4, default=str, allow_nan=False)
    tmp = target.with_name(target.name + ".tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text + "\n", encoding="ascii")
        os.replace(tmp, target)
    except OSError as exc:
        raise StoreError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return target
