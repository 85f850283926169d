"""One trial, start to finish: data -> model -> freeze -> train/eval, all inside meters -> one record.

`run_trial` is what a child process (or a Ray task) runs. It never raises: a failure becomes the record's
status (`oom` or `error`), and what was measured before it is kept. `emit` receives progress events and
snapshots of the record so far, so that a parent can still report a trial that is killed or times out.
"""

from __future__ import annotations

import os
import platform
import socket
import time
import traceback
from datetime import datetime, timezone
from typing import Any, Callable

from ..grid import Trial
from ..store import SCHEMA_VERSION

Emit = Callable[[dict[str, Any]], None]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def empty_record(trial: Trial) -> dict[str, Any]:
    """The record's shape with nothing measured yet (what a parent reports if the child never starts)."""
    return {
        "schema": SCHEMA_VERSION,
        "run_name": trial.run_name,
        "trial_id": trial.trial_id,
        "index": trial.index,
        "repeat": trial.repeat,
        "kind": trial.kind,
        "params": trial.params,
        "status": "error",
        "error": None,
        "started_at": now_iso(),
        "finished_at": None,
        "host": socket.gethostname(),
        "device_name": None,
        "n_train": None,
        "n_val": None,
        "num_labels": None,
        "trainable_params": None,
        "total_params": None,
        "phases": {},
        "epochs": [],
        "seconds_total": None,
        "samples_per_s": None,
        "tokens_per_s": None,
        "padded_tokens_per_s": None,
        "memory": {"cpu_peak_rss_mib": None, "cpu_baseline_rss_mib": None, "cpu_maxrss_mib": None,
                   "cuda_peak_allocated_mib": None, "cuda_peak_reserved_mib": None,
                   "gpu_peak_used_mib": None, "gpu_total_mib": None},
        "memory_note": None,
        "memory_budget": {"cpu_bytes": trial.limits.get("cpu_memory"), "gpu_bytes": trial.limits.get("gpu_memory")},
        "energy_j": {"cpu": None, "gpu": None},
        "energy_note": None,
        "cost_usd": None,
        "cost_note": None,
        "flops": None,
        "mfu": None,
        "mfu_note": None,
        "oom": None,
        "strategy_detail": None,
    }


def cpu_name() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return name


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    import torch

    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "DefaultCPUAllocator: can't allocate memory" in text
        or "not enough memory" in text
        or "out of memory" in text.lower()
        or "std::bad_alloc" in text
    )


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__


def run_trial(trial: Trial, emit: Emit | None = None) -> dict[str, Any]:
    emit = emit or (lambda event: None)
    t_start = time.perf_counter()
    rec = empty_record(trial)
    p = trial.params
    meters = trainer = None
    state = {"phase": "start", "epoch": None}

    def snapshot() -> None:
        if meters is not None:
            rec["memory"] = meters.memory()
            rec["phases"] = {k: round(v, 6) for k, v in meters.phases.items() if "/" not in k}
        rec["seconds_total"] = round(time.perf_counter() - t_start, 6)
        emit({"type": "snapshot", "record": rec, "phase": state["phase"], "epoch": state["epoch"]})

    def enter(phase: str, epoch: int | None = None) -> None:
        state["phase"], state["epoch"] = phase, epoch
        emit({"type": "phase", "phase": phase, "epoch": epoch})

    try:
        import torch

        from ..meters import Meters
        from . import data as D
        from .models import freeze, load_model
        from .train import Trainer

        threads = p.get("num_threads") or len(os.sched_getaffinity(0))
        torch.set_num_threads(int(threads))
        device = torch.device(p["device"])
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {p['device']!r} asked for, but CUDA is not available on {socket.gethostname()}")
        rec["device_name"] = device_name(p["device"])
        meters = Meters(p["device"], heartbeat=lambda hb: emit({  # memory so far, for a parent whose child dies
            "type": "heartbeat", **hb, "phase": state["phase"], "epoch": state["epoch"],
            "device_name": rec["device_name"], "seconds_total": round(time.perf_counter() - t_start, 6)}))
        with meters:
            enter("load_data")
            with meters.phase("load_data"):
                rows = D.load_rows(p["source"], p["text_column"], p["label_column"], p["split"], offline=True)
                train_idx, val_idx = D.sample_and_split(rows, p["dataset_size"], p["val_fraction"], p["data_seed"], p["source"],
                                                        sample=p.get("sample") or "stratified")
            rec["n_train"], rec["n_val"], rec["num_labels"] = len(train_idx), len(val_idx), len(rows.label_names)
            meters.mark_baseline()
            enter("load_model")
            with meters.phase("load_model"):
                loaded = load_model(p["model"], len(rows.label_names), trust_remote_code=p["trust_remote_code"],
                                    allow_pickle=p["allow_pickle"], attention=p.get("attention"), seed=p["seed"],
                                    revision=p.get("revision"))
                model = loaded.model
                rec["trainable_params"], rec["total_params"] = freeze(model, p["frozen_layers"], p["model"])
                model.to(device)
            enter("tokenize")
            with meters.phase("tokenize"):
                train_set, val_set = D.encode_split(loaded.tokenizer, rows, train_idx, val_idx, p["max_length"], p["padding"])
            trainer = Trainer(model, train_set, val_set, p, device)
            if p.get("max_steps"):  # a probe of the largest-batch search: a few steps reach the peak
                from ..search import limit_steps

                limit_steps(trainer, int(p["max_steps"]))
            if trainer.uses_cache():
                enter("cache")
                with meters.phase("cache"):  # the one-off cost, check included; counts in seconds_total
                    trainer.build_cache()
                    trainer.check_cache()
            trainer.maybe_compile()
            rec["strategy_detail"] = {
                "precision": trainer.precision,
                "optimizer_impl": trainer.result.optimizer_impl,
                "cache_used": trainer.result.cache_used,
                "cache_mib": round(trainer.result.cache_bytes / 2**20, 2) if trainer.result.cache_used else None,
                "cache_where": trainer.result.cache_where,
                "cache_note": trainer.result.cache_note,
                "cache_check_rel_diff": trainer.result.cache_max_rel_diff,
                "compiled": trainer.result.compiled,
                "compiled_part": trainer.result.compiled_part,
                "pad_to": train_set.pad_to,
            }
            snapshot()
            for epoch in range(1, p["epochs"] + 1):
                enter("train", epoch)
                with meters.phase(f"epoch-{epoch}/train"):
                    loss, acc, samples, real, padded = trainer.train_epoch()
                enter("eval", epoch)
                with meters.phase(f"epoch-{epoch}/eval"):
                    val_loss, val_acc = trainer.evaluate()
                from .train import EpochStats

                stats = EpochStats(epoch, meters.phases[f"epoch-{epoch}/train"], meters.phases[f"epoch-{epoch}/eval"],
                                   loss, acc, val_loss, val_acc, samples, real, padded)
                rec["epochs"].append(stats.as_record())
                emit({"type": "epoch", **stats.as_record()})
                snapshot()
            rec["status"] = "ok"
    except BaseException as exc:  # noqa: BLE001 - every failure is data for the report
        if isinstance(exc, KeyboardInterrupt):
            raise
        oom = False
        try:
            oom = is_oom(exc)
        except Exception:
            pass
        rec["status"] = "oom" if oom else "error"
        rec["error"] = one_line(exc)
        rec["traceback"] = traceback.format_exc(limit=8)[-4000:]
        if oom:
            rec["oom"] = {"phase": state["phase"], "epoch": state["epoch"]}
    finally:
        if meters is not None:
            rec["memory"] = meters.memory()
            rec["memory_note"] = meters.memory_note()
            rec["phases"] = {k: round(v, 6) for k, v in meters.phases.items() if "/" not in k}
        from ..meters.record import fill_record

        fill_record(rec, trial, meters, trainer)  # energy, FLOPs, MFU, how the budget is enforced
    _finish(rec, t_start)
    from ..meters.cost import annotate_cost

    annotate_cost(rec, trial)
    return rec


def _finish(rec: dict[str, Any], t_start: float) -> None:
    rec["seconds_total"] = round(time.perf_counter() - t_start, 6)
    rec["finished_at"] = now_iso()
    epochs = rec["epochs"]
    train_s = sum(e["train_seconds"] for e in epochs)
    if epochs and train_s > 0:
        rec["samples_per_s"] = round(sum(e["train_samples"] for e in epochs) / train_s, 2)
        rec["tokens_per_s"] = round(sum(e["train_real_tokens"] for e in epochs) / train_s, 2)
        rec["padded_tokens_per_s"] = round(sum(e["train_padded_tokens"] for e in epochs) / train_s, 2)
