"""Everything harness should prove on a GPU, in one command; `--dry-run` runs the same steps on CPU at tiny
shapes (tests/test_gpu_check.py runs it in the default suite).

    bash bench/gpu_check.sh                      # on the GPU machine: figures into docs/gpu.md (and $OUT)
    bash bench/gpu_check.sh --dry-run --out /tmp/gpu_check   # here, on CPU, in about a minute

Steps, each timed and isolated (one that fails is recorded and the next still runs; the exit code is 1 if
any failed):
1. `env`: the GPU, driver, torch, transformers, CUDA.
2. `cuda_tests`: the test suite's CUDA tests (they skip without CUDA; pytest's summary line is kept).
3. `lab_vs_fast`: grids/gpu.toml, the lab's workload (random-weight DistilBERT, 1,800/200 rows, 512 tokens,
   batch 16, SGD, 10 epochs), frozen "all" and 0, `lab` against `fast`: training seconds of the 10 epochs,
   total seconds, validation accuracy, peak CUDA memory, NVML energy, MFU per trial; `fast` against `lab`
   and against the lab's 24.5 s (2.45 s an epoch measured on an H200, /work/shared/reference/lab.md); the
   target is `fast` at most 0.5 s of training for the 10 epochs.
4. `budget_16gib`: grids/gpu_memory.toml with `--max-batch`: batches 8 to 256 under a 16 GiB
   `gpu_memory` budget, which fit, which run out, and the largest batch per frozen setting.
5. `plan`: `harness plan` against step 4's run, where the command exists (issue 13); skipped otherwise.
6. `families`: grids/families_gpu.toml, a modern encoder and a decoder at base shapes in bf16 (issue 16).
7. `lora`: grids/gpu_lora.toml at one seed, freezing, LoRA and full fine-tuning at 512 tokens (issue 17).

It writes `gpu_check.json` and `gpu.md` into --out, and the figures with the exact command into --doc
(default docs/gpu.md; a dry run writes it into --out only). Runs folders go under --out too. Where $OUT is
set (the device tool's folder, from which at most 8 files come back), gpu.md, gpu_check.json and one
gpu_check_runs.tar.gz of the runs, reports and logs are copied there. With the device tool:
`run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=600)`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
LAB_SECONDS_10_EPOCHS = 24.5  # the notebook's loop on one H200: 2.45 s an epoch (lab.md)
FAST_TARGET_SECONDS = 0.5  # `fast`, 10 epochs of training, on an H200
CUDA_TEST_FILES = ["tests/test_meters.py", "tests/test_cache.py", "tests/test_trial_server.py", "tests/test_families.py",
                   "bench/test_core_bench.py"]

# --dry-run: the same grids at shapes a CPU runs in seconds.
TINY = {
    "model": {"name": "random:distilbert-tiny", "max_length": 32},
    "grid": {"dataset_size": [40], "device": ["cpu"]},
    "train": {"epochs": 2, "num_threads": 1},
}
TINY_BUDGET = {  # one epoch, as the real grid; no GPU budget on a CPU; one probe (16) past the grid's batches
    "train": {"epochs": 1},
    "grid": {"batch_size": [4, 8]},
    "limits": {"gpu_memory": None},
    "search": {"start_batch": 4, "max_batch_limit": 16},
}

TINY_FAMILIES = {  # the families step's modern encoder and decoder at tiny shapes, on CPU in fp32
    "model": {"max_length": 32},
    "train": {"epochs": 1, "precision": "fp32", "num_threads": 1},
    "grid": {"model": ["random:modernbert-tiny", "random:qwen2-tiny"], "dataset_size": [40], "batch_size": [8],
             "frozen_layers": ["all", 1], "device": ["cpu"]},
}

TINY_LORA = {"grid": {"frozen_layers": ["all", 1, 0], "batch_size": [8]}, "model": {"max_length": 32}}


# --------------------------------------------------------------------------------------------------
# Helpers: grids, commands, records
# --------------------------------------------------------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string for these values
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML spelling for {value!r}")


def write_grid(source: Path, dest: Path, *overrides: dict[str, Any]) -> Path:
    """`source` with each override's `[section] key = value` applied (None removes the key)."""
    doc = tomllib.loads(source.read_text())
    for override in overrides:
        for section, values in override.items():
            table = doc.setdefault(section, {})
            for key, value in values.items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for section, table in doc.items():
        if isinstance(table, dict):
            lines += [f"\n[{section}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    dest.write_text("\n".join(lines) + "\n")
    return dest


def run_command(cmd: list[str], log: Path, timeout_s: float, cwd: Path = REPO) -> dict[str, Any]:
    """Run `cmd` (from the repository root by default) with its output into `log`; its exit code and wall time."""
    t0 = time.monotonic()
    with open(log, "w") as out:
        try:
            code = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            code = None
    return {"command": shlex.join(cmd), "exit_code": code, "wall_s": round(time.monotonic() - t0, 1),
            "timed_out": code is None, "log": str(log)}


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def records(run_dir: Path) -> list[dict[str, Any]]:
    from harness.store import read_records

    return read_records(run_dir)


def param(rec: dict[str, Any], key: str) -> Any:
    return (rec.get("params") or {}).get(key)


def train_seconds(rec: dict[str, Any]) -> float | None:
    epochs = rec.get("epochs") or []
    return round(sum(e["train_seconds"] for e in epochs), 4) if epochs else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


# --------------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------------
def step_env(ctx: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "transformers": transformers.__version__, "cuda": torch.version.cuda,
                           "cpus": os.cpu_count(), "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
    if ctx["dry_run"]:
        out["device"] = "CPU (dry run)"
        return out
    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available: run with --dry-run on a machine without a GPU")
    out["device"] = torch.cuda.get_device_name(0)
    out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        out["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        out["nvidia_smi"] = f"not run: {exc}"
    return out


def step_cuda_tests(ctx: dict[str, Any]) -> dict[str, Any]:
    files = [f for f in CUDA_TEST_FILES if (REPO / f).exists()]
    cmd = [sys.executable, "-m", "pytest", *files, "-k", "cuda or gpu", "-q", "-rs", "-p", "no:cacheprovider"]
    result = run_command(cmd, ctx["out"] / "cuda_tests.log", ctx["timeout"](240))
    lines = [ln for ln in Path(result["log"]).read_text().splitlines() if ln.strip()]
    result["summary"] = lines[-1].strip("= ") if lines else None
    result["skipped"] = [ln for ln in lines if ln.startswith("SKIPPED")][:20]
    if result["exit_code"] not in (0, 5):  # 5: nothing collected
        raise StepFailed(result, f"pytest exited with {result['exit_code']}: {result['summary']}")
    return result


def step_lab_vs_fast(ctx: dict[str, Any]) -> dict[str, Any]:
    grid = REPO / "grids/gpu.toml"
    if ctx["dry_run"]:
        grid = write_grid(grid, ctx["out"] / "gpu_tiny.toml", TINY)
    run_dir, report_dir = ctx["out"] / "runs" / "gpu", ctx["out"] / "reports" / "gpu"
    # From --out: the report lands in --out/reports/gpu/, not in the repository.
    result = run_command(harness_cmd("run", str(grid), "--out", str(run_dir)), ctx["out"] / "lab_vs_fast.log",
                         ctx["timeout"](300), cwd=ctx["out"])
    if not (run_dir / "trials.jsonl").exists():
        raise StepFailed(result, f"no trials.jsonl (exit code {result['exit_code']})")
    rows = []
    for rec in records(run_dir):
        epochs = rec.get("epochs") or []
        rows.append({
            "frozen": param(rec, "frozen_layers"), "strategy": param(rec, "strategy"), "status": rec["status"],
            "error": rec.get("error"), "epochs": len(epochs), "train_s": train_seconds(rec),
            "total_s": rec.get("seconds_total"), "cache_s": (rec.get("phases") or {}).get("cache"),
            "val_accuracy": epochs[-1]["val_accuracy"] if epochs else None,
            "cuda_peak_allocated_mib": (rec.get("memory") or {}).get("cuda_peak_allocated_mib"),
            "gpu_energy_j": (rec.get("energy_j") or {}).get("gpu"), "energy_note": rec.get("energy_note"),
            "mfu": rec.get("mfu"), "mfu_note": rec.get("mfu_note"),
            "precision": (rec.get("strategy_detail") or {}).get("precision"),
        })
    result["trials"] = rows
    by = {(str(r["frozen"]), r["strategy"]): r for r in rows}
    speedups = {}
    for frozen in ("all", "0"):
        lab, fast = by.get((frozen, "lab")), by.get((frozen, "fast"))
        if lab and fast:
            speedups[frozen] = {"train": ratio(lab["train_s"], fast["train_s"]),
                                "total": ratio(lab["total_s"], fast["total_s"])}
    result["fast_speedup"] = speedups
    fast_all = by.get(("all", "fast"))
    result["fast_all_train_s"] = fast_all["train_s"] if fast_all else None
    result["fast_all_vs_lab_24_5_s"] = ratio(LAB_SECONDS_10_EPOCHS, result["fast_all_train_s"])
    result["fast_target_met"] = (result["fast_all_train_s"] is not None
                                 and result["fast_all_train_s"] <= FAST_TARGET_SECONDS) if not ctx["dry_run"] else None
    result["report"] = str(report_dir) if (report_dir / "report.md").exists() else None
    bad = [r for r in rows if r["status"] != "ok"]
    if result["exit_code"] != 0 or bad or len(rows) != 4:
        raise StepFailed(result, f"exit code {result['exit_code']}, {len(rows)} trials, not ok: "
                         + "; ".join(f"{r['frozen']}/{r['strategy']}: {r['status']} {r['error']}" for r in bad))
    return result


def step_budget_16gib(ctx: dict[str, Any]) -> dict[str, Any]:
    grid = REPO / "grids/gpu_memory.toml"
    if ctx["dry_run"]:
        grid = write_grid(grid, ctx["out"] / "gpu_memory_tiny.toml", TINY, TINY_BUDGET)
    run_dir = ctx["out"] / "runs" / "gpu_memory"
    result = run_command(harness_cmd("run", str(grid), "--out", str(run_dir), "--max-batch", "--no-report"),
                         ctx["out"] / "budget_16gib.log", ctx["timeout"](240))
    if not (run_dir / "trials.jsonl").exists():
        raise StepFailed(result, f"no trials.jsonl (exit code {result['exit_code']})")
    recs = records(run_dir)
    result["trials"] = [{"frozen": param(r, "frozen_layers"), "batch": param(r, "batch_size"), "status": r["status"],
                         "cuda_peak_allocated_mib": (r.get("memory") or {}).get("cuda_peak_allocated_mib"),
                         "cuda_peak_reserved_mib": (r.get("memory") or {}).get("cuda_peak_reserved_mib"),
                         "oom_phase": (r.get("oom") or {}).get("phase")}
                        for r in recs if r.get("kind") not in ("max_batch", "probe")]
    result["largest_batch"] = [{"frozen": param(r, "frozen_layers"), "status": r["status"], "max_batch": r.get("max_batch"),
                                "smallest_oom_batch": r.get("smallest_oom_batch"), "error": r.get("error")}
                               for r in recs if r.get("kind") == "max_batch"]
    errors = [t for t in result["trials"] if t["status"] not in ("ok", "oom")]
    if result["exit_code"] != 0 or errors or not result["trials"] or not result["largest_batch"]:
        raise StepFailed(result, f"exit code {result['exit_code']}, {len(errors)} trials neither ok nor oom, "
                         f"{len(result['largest_batch'])} largest-batch records")
    return result


def step_plan(ctx: dict[str, Any]) -> dict[str, Any]:
    from harness.cli import build_parser

    commands = set()
    for action in build_parser()._subparsers._group_actions:
        commands |= set(action.choices)
    if "plan" not in commands:
        raise StepSkipped("`harness plan` does not exist yet (issue 13)")
    run_dir = ctx["out"] / "runs" / "gpu_memory"
    grid = ctx["out"] / "gpu_memory_tiny.toml" if ctx["dry_run"] else REPO / "grids/gpu_memory.toml"
    if not (run_dir / "trials.jsonl").exists():
        raise StepSkipped("no budget run to check the plan against (step budget_16gib)")
    result = run_command(harness_cmd("plan", str(grid), "--out", str(ctx["out"] / "plan"), "--check", str(run_dir)),
                         ctx["out"] / "plan.log", ctx["timeout"](120))
    result["output"] = Path(result["log"]).read_text()[-6000:]
    if result["exit_code"] != 0:
        raise StepFailed(result, f"harness plan exited with {result['exit_code']}")
    return result


def run_grid(ctx: dict[str, Any], grid: Path, run_name: str, log: str, timeout_s: float,
             row: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Run `grid` into --out/runs/`run_name` (no report); the result with one `row(record)` per trial, failed
    unless the run exited 0 and every trial is ok."""
    run_dir = ctx["out"] / "runs" / run_name
    result = run_command(harness_cmd("run", str(grid), "--out", str(run_dir), "--no-report"),
                         ctx["out"] / log, ctx["timeout"](timeout_s))
    if not (run_dir / "trials.jsonl").exists():
        raise StepFailed(result, f"no trials.jsonl (exit code {result['exit_code']})")
    result["trials"] = [row(r) for r in records(run_dir)]
    failed = [t for t in result["trials"] if t["status"] != "ok"]
    if result["exit_code"] != 0 or failed or not result["trials"]:
        raise StepFailed(result, f"exit code {result['exit_code']}, {len(failed)} of {len(result['trials'])} trials not ok")
    return result


def step_families(ctx: dict[str, Any]) -> dict[str, Any]:
    """grids/families_gpu.toml: a modern encoder (ModernBERT) and a decoder (Qwen2) at their base shapes, random
    weights, on CUDA in bf16, frozen "all" and 6 blocks with the cache, end to end (issue 16)."""
    grid = REPO / "grids/families_gpu.toml"
    if ctx["dry_run"]:
        grid = write_grid(grid, ctx["out"] / "families_tiny.toml", TINY_FAMILIES)
    return run_grid(ctx, grid, "families_gpu", "families.log", 240, lambda r: {
        "model": param(r, "model"), "frozen": param(r, "frozen_layers"), "status": r["status"],
        "error": r.get("error"), "precision": (r.get("strategy_detail") or {}).get("precision"),
        "cache_used": (r.get("strategy_detail") or {}).get("cache_used"), "total_s": r.get("seconds_total"),
        "cuda_peak_allocated_mib": (r.get("memory") or {}).get("cuda_peak_allocated_mib")})


def step_lora(ctx: dict[str, Any]) -> dict[str, Any]:
    """grids/gpu_lora.toml (issue 17): freezing, LoRA and full fine-tuning at the lab's shape on CUDA, one seed here
    (the grid's three are for a longer slot: `python -m harness run grids/gpu_lora.toml`)."""
    grid = write_grid(REPO / "grids/gpu_lora.toml", ctx["out"] / "gpu_lora_one_seed.toml", {"grid": {"seed": [324]}})
    if ctx["dry_run"]:
        grid = write_grid(grid, ctx["out"] / "gpu_lora_tiny.toml", TINY, TINY_LORA)
    return run_grid(ctx, grid, "gpu_lora", "lora.log", 240, lambda r: {
        "frozen": param(r, "frozen_layers"), "adapter": param(r, "adapter") or "none", "status": r["status"],
        "error": r.get("error"), "trainable_params": r.get("trainable_params"), "train_s": train_seconds(r),
        "total_s": r.get("seconds_total"), "cache_s": (r.get("phases") or {}).get("cache"),
        "val_accuracy": (r.get("epochs") or [{}])[-1].get("val_accuracy"),
        "cuda_peak_allocated_mib": (r.get("memory") or {}).get("cuda_peak_allocated_mib"),
        "gpu_energy_j": (r.get("energy_j") or {}).get("gpu"), "mfu": r.get("mfu")})


STEPS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("env", step_env), ("cuda_tests", step_cuda_tests), ("lab_vs_fast", step_lab_vs_fast),
    ("budget_16gib", step_budget_16gib), ("plan", step_plan), ("families", step_families), ("lora", step_lora),
]


class StepFailed(Exception):
    def __init__(self, result: dict[str, Any], reason: str):
        super().__init__(reason)
        self.result = result


class StepSkipped(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------------------
def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def markdown(summary: dict[str, Any]) -> str:
    steps = summary["steps"]
    env = steps.get("env", {}).get("result") or {}
    lines = ["# harness on a GPU", "",
             "Written by `bench/gpu_check.py` (do not edit by hand: run it again). Command, from a fresh machine with",
             "the repository and its `.whl/` folder (bench/gpu_wheels.sh):", "", "```bash", summary["command"], "```", "",
             f"{'DRY RUN on CPU at tiny shapes: these figures prove the script, not a GPU. ' if summary['dry_run'] else ''}"
             f"Run {summary['started_at']}, {summary['wall_s']} s wall in all, on {env.get('device', '?')}"
             f" ({env.get('nvidia_smi') or ''}); torch {env.get('torch')}, transformers {env.get('transformers')},"
             f" CUDA {env.get('cuda')}, Python {env.get('python')}, {env.get('cpus')} CPUs.", "",
             "| step | status | wall s | what |", "| --- | --- | ---: | --- |"]
    for name, step in steps.items():
        lines.append(f"| {name} | {step['status']} | {fmt(step.get('wall_s'), 1)} | {step.get('reason') or ''} |")
    tests = (steps.get("cuda_tests") or {}).get("result") or {}
    if tests:
        lines += ["", "## CUDA tests", "", f"`{tests.get('command')}`: {tests.get('summary')}"]
    lab = (steps.get("lab_vs_fast") or {}).get("result") or {}
    if lab.get("trials"):
        lines += ["", "## The lab's workload: `lab` against `fast` (grids/gpu.toml)", "",
                  "Times are the records' (`time.perf_counter` in the trial's process, CUDA synchronised at the",
                  "phase ends); training s is the sum of the epochs' training passes; energy is NVML's counter",
                  "over the trial (J); MFU is the trial's FLOPs over its time at the device's peak (docs/meters.md).", "",
                  "| frozen | strategy | status | precision | epochs | training s | cache s | total s | val acc | CUDA peak MiB | GPU energy J | MFU |",
                  "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in lab["trials"]:
            lines.append(f"| {r['frozen']} | {r['strategy']} | {r['status']} | {r['precision'] or '-'} | {r['epochs']} | "
                         f"{fmt(r['train_s'], 3)} | {fmt(r['cache_s'], 3)} | {fmt(r['total_s'], 1)} | {fmt(r['val_accuracy'], 3)} | "
                         f"{fmt(r['cuda_peak_allocated_mib'], 0)} | {fmt(r['gpu_energy_j'], 0)} | {fmt(r['mfu'], 3)} |")
        notes = sorted({r["energy_note"] for r in lab["trials"] if r.get("energy_note")}
                       | {r["mfu_note"] for r in lab["trials"] if r.get("mfu_note")})
        lines += [""] + [f"- {n}" for n in notes]
        sp = lab.get("fast_speedup") or {}
        lines += ["", f"- `fast` against `lab`, everything but the head frozen: {fmt((sp.get('all') or {}).get('train'))}x on "
                  f"training time, {fmt((sp.get('all') or {}).get('total'))}x on total time.",
                  f"- Full fine-tuning (frozen 0): {fmt((sp.get('0') or {}).get('train'))}x on training time, "
                  f"{fmt((sp.get('0') or {}).get('total'))}x on total time.",
                  f"- `fast`, frozen \"all\", 10 epochs of training: {fmt(lab.get('fast_all_train_s'), 3)} s against the lab's "
                  f"{LAB_SECONDS_10_EPOCHS} s on an H200 ({fmt(lab.get('fast_all_vs_lab_24_5_s'))}x); target at most "
                  f"{FAST_TARGET_SECONDS} s: {'met' if lab.get('fast_target_met') else 'not met' if lab.get('fast_target_met') is False else 'not judged (dry run)'}."]
    budget = (steps.get("budget_16gib") or {}).get("result") or {}
    if budget.get("trials"):
        lines += ["", "## 16 GiB budget (grids/gpu_memory.toml --max-batch)", "",
                  "| frozen | batch | status | CUDA peak allocated MiB | reserved MiB | OOM in |",
                  "| --- | ---: | --- | ---: | ---: | --- |"]
        for t in budget["trials"]:
            lines.append(f"| {t['frozen']} | {t['batch']} | {t['status']} | {fmt(t['cuda_peak_allocated_mib'], 0)} | "
                         f"{fmt(t['cuda_peak_reserved_mib'], 0)} | {t['oom_phase'] or '-'} |")
        lines += ["", "Largest batch that fits (bisected):", ""]
        for b in budget.get("largest_batch") or []:
            lines.append(f"- frozen {b['frozen']}: {b['max_batch']} (smallest that ran out: {b['smallest_oom_batch']}; {b['status']})")
    plan = steps.get("plan") or {}
    lines += ["", "## Plan: predicted against measured", ""]
    if plan.get("status") == "skipped":
        lines.append(f"Skipped: {plan.get('reason')}.")
    elif plan.get("result"):
        lines += ["```", plan["result"].get("output", "").rstrip(), "```"]
    families = (steps.get("families") or {}).get("result") or {}
    if families.get("trials"):
        lines += ["", "## Model families (grids/families_gpu.toml)", "",
                  "| model | frozen | status | precision | cache | total s | CUDA peak MiB | error |",
                  "| --- | --- | --- | --- | --- | ---: | ---: | --- |"]
        for t in families["trials"]:
            lines.append(f"| {t['model']} | {t['frozen']} | {t['status']} | {t['precision'] or '-'} | {fmt(t['cache_used'])} | "
                         f"{fmt(t['total_s'], 1)} | {fmt(t['cuda_peak_allocated_mib'], 0)} | {t['error'] or ''} |")
    lora = (steps.get("lora") or {}).get("result") or {}
    if lora.get("trials"):
        lines += ["", "## Freezing, LoRA and full fine-tuning (grids/gpu_lora.toml, seed 324)", "",
                  "| frozen | adapter | status | trainable | training s | cache s | total s | val acc | CUDA peak MiB | GPU energy J | MFU |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for t in lora["trials"]:
            lines.append(f"| {t['frozen']} | {t['adapter']} | {t['status']} | {fmt(t['trainable_params'])} | {fmt(t['train_s'], 3)} | "
                         f"{fmt(t['cache_s'], 3)} | {fmt(t['total_s'], 1)} | {fmt(t['val_accuracy'], 3)} | "
                         f"{fmt(t['cuda_peak_allocated_mib'], 0)} | {fmt(t['gpu_energy_j'], 0)} | {fmt(t['mfu'], 3)} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the same steps on CPU at tiny shapes")
    parser.add_argument("--out", help="folder for runs, logs and gpu_check.json (default /tmp/gpu_check)")
    parser.add_argument("--doc", help="where the figures go (default docs/gpu.md; --out/gpu.md for a dry run)")
    parser.add_argument("--steps", default=",".join(n for n, _ in STEPS), help="comma-separated subset")
    args = parser.parse_args(argv)
    out = Path(args.out or "/tmp/gpu_check").resolve()
    out.mkdir(parents=True, exist_ok=True)
    doc = Path(args.doc) if args.doc else (out / "gpu.md" if args.dry_run else REPO / "docs" / "gpu.md")
    t0 = time.monotonic()
    deadline = t0 + 480 if not args.dry_run else None  # the whole check fits a GPU slot of 8 minutes

    def timeout(wanted: float) -> float:
        if deadline is None:  # a dry run on a shared CPU: as long as it takes (the test has its own limit)
            return 3 * wanted
        return max(10.0, min(wanted, deadline - time.monotonic()))

    command = " ".join(["bash bench/gpu_check.sh", *(argv if argv is not None else sys.argv[1:])])
    summary: dict[str, Any] = {"command": command, "dry_run": args.dry_run,
                               "started_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "steps": {}}
    ctx = {"dry_run": args.dry_run, "out": out, "timeout": timeout}
    if args.dry_run:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # on a GPU machine too, a dry run stays on CPU
    wanted = set(args.steps.split(","))
    for name, fn in STEPS:
        if name not in wanted:
            continue
        s0 = time.monotonic()
        step: dict[str, Any] = {}
        try:
            step.update(status="ok", result=fn(ctx))
        except StepSkipped as exc:
            step.update(status="skipped", reason=str(exc))
        except StepFailed as exc:
            step.update(status="failed", reason=str(exc), result=exc.result)
        except Exception as exc:  # noqa: BLE001 - a step's failure is a finding; the next step still runs
            step.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        step["wall_s"] = round(time.monotonic() - s0, 1)
        summary["steps"][name] = step
        print(f"gpu_check: {name}: {step['status']} in {step['wall_s']} s" + (f" ({step['reason']})" if step.get("reason") else ""),
              flush=True)
    summary["wall_s"] = round(time.monotonic() - t0, 1)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str))
    text = markdown(summary)
    (out / "gpu.md").write_text(text)
    if doc.resolve() != (out / "gpu.md"):
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(text)
    collect = os.environ.get("OUT")  # the device tool's folder: only a few files come back from it
    if collect and Path(collect).resolve() != out:
        import shutil
        import tarfile

        for name in ("gpu.md", "gpu_check.json"):
            shutil.copy(out / name, Path(collect) / name)
        with tarfile.open(Path(collect) / "gpu_check_runs.tar.gz", "w:gz") as tar:  # runs, reports and logs
            for path in sorted(out.iterdir()):
                if path.name not in ("gpu.md", "gpu_check.json"):
                    tar.add(path, arcname=path.name)
    failed = [n for n, s in summary["steps"].items() if s["status"] == "failed"]
    print(f"gpu_check: {summary['wall_s']} s; " + (f"FAILED: {', '.join(failed)}" if failed else "all steps ok or skipped")
          + f"; figures in {doc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
