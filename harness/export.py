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
import math
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
    VOLATILE_KEYS,
    _as_number,
    config_labels,
    epoch_seconds,
    final_val_accuracy,
    group_by_config,
)
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
# Machine and commit info from env.json
# --------------------------------------------------------------------------------------------------
def _find(env: dict[str, Any], *names: str) -> Any:
    """The first non-empty value among `names` (dotted for nested tables) in env.json."""
    for name in names:
        node: Any = env
        for part in name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node not in (None, "", [], {}):
            return node
    return None


def _python_version(env: dict[str, Any]) -> Optional[str]:
    value = _find(env, "python_version", "python.version", "versions.python", "python")
    if isinstance(value, str):
        m = re.match(r"\s*(\d+\.\d+(?:\.\d+)?)", value)
        if m:
            return m.group(1)
    return None


def machine_id(env: dict[str, Any]) -> str:
    """pytest-benchmark's machine id (`System-Implementation-X.Y-bits`) for the machine that ran the trials."""
    version = _python_version(env)
    major_minor = ".".join(version.split(".")[:2]) if version else ".".join(platform.python_version_tuple()[:2])
    system = _find(env, "system", "os.system", "platform.system")
    system = system if isinstance(system, str) and system.isidentifier() else platform.system()
    impl = _find(env, "python_implementation", "python.implementation")
    impl = impl if isinstance(impl, str) and impl.isidentifier() else platform.python_implementation()
    return f"{system}-{impl}-{major_minor}-{platform.architecture()[0]}"


def machine_info(env: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    hosts = sorted({str(r["host"]) for r in records if r.get("host")})
    cpu_brand = _find(env, "cpu_model", "cpu.model", "cpu.brand", "cpu_brand", "cpu")
    if not isinstance(cpu_brand, str):
        cpu_brand = None
    return {
        "node": _find(env, "host", "hostname", "node") or (hosts[0] if hosts else None),
        "processor": cpu_brand,
        "machine": _find(env, "machine", "platform.machine"),
        "python_compiler": None,
        "python_implementation": _find(env, "python_implementation") or platform.python_implementation(),
        "python_implementation_version": _python_version(env),
        "python_version": _python_version(env),
        "python_build": None,
        "release": _find(env, "release", "platform.release"),
        "system": _find(env, "system", "platform.system"),
        "cpu": {"brand_raw": cpu_brand, "count": _find(env, "cpu_count", "cpu.count")},
        "hosts": hosts,
        "harness_env": env,
    }


def commit_info(env: dict[str, Any]) -> dict[str, Any]:
    commit = _find(env, "git_commit", "git.commit", "commit", "git_sha", "git")
    dirty = _find(env, "git_dirty", "git.dirty", "dirty")
    return {
        "id": commit if isinstance(commit, str) else "unversioned",
        "time": None,
        "author_time": None,
        "dirty": bool(dirty) if isinstance(dirty, bool) else False,
        "project": "harness",
        "branch": _find(env, "git_branch", "git.branch") or "(unknown)",
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
    return _as_number(mem.get(name)) if isinstance(mem, dict) else None


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
    params = {k: v for k, v in (records[0].get("params") or {}).items() if k not in VOLATILE_KEYS}
    param_id = label.replace(", ", "-")
    name = f"{BENCHMARK_FUNC}[{param_id}]"
    costs = [_as_number(r.get("cost_usd")) for r in records]
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
        "tokens_per_s": _median([_as_number(r.get("tokens_per_s")) for r in ok]),
        "samples_per_s": _median([_as_number(r.get("samples_per_s")) for r in ok]),
        "seconds_total": _median([_as_number(r.get("seconds_total")) for r in ok]),
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


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
    text = json.dumps(_json_safe(doc), ensure_ascii=True, indent=4, default=str, allow_nan=False)
    tmp = target.with_name(target.name + ".tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text + "\n", encoding="ascii")
        os.replace(tmp, target)
    except OSError as exc:
        raise StoreError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return target
