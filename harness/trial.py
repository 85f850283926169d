"""One trial, start to finish: data -> model -> freeze -> train/eval, all inside meters -> one record.

`run_trial` is what a child process (or a Ray task's child) runs. It never raises: a failure becomes the
record's status (`oom` or `error`), and what was measured before it is kept. `emit` receives the events of
`record.py` (as plain dicts), snapshots of the record so far among them, so that a parent can still report
a trial that is killed or times out.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import traceback
from typing import Any, Callable

import torch

from .core import data
from .core.models import encoder_shape, freeze, load_model
from .core.train import Trainer
from .env import cpu_name
from .grid import Trial
from .meters import Meters, speed
from .meters.cost import annotate_cost
from .meters.flops import Work, mfu, trial_flops
from .record import (
    Adapter, EpochEvent, EpochRecord, FlopsDetail, HeartbeatEvent, MachineSpeed, Oom, Phases, PhaseEvent, SnapshotEvent, StrategyDetail,
    TrialRecord, now_iso, one_line,
)

Emit = Callable[[dict[str, Any]], None]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "DefaultCPUAllocator: can't allocate memory" in text
        or "not enough memory" in text
        or "out of memory" in text.lower()
        or "std::bad_alloc" in text
    )


def epoch_record(epoch: int, train_s: float, eval_s: float, fit: Any, val: Any) -> EpochRecord:
    """One epoch's line of the record: losses, accuracies, times and the throughputs they give."""
    rate = (lambda x: round(x / train_s, 2)) if train_s > 0 else (lambda x: None)
    return EpochRecord(epoch=epoch, seconds=round(train_s + eval_s, 6), train_seconds=round(train_s, 6),
                       eval_seconds=round(eval_s, 6), train_loss=fit.loss, train_accuracy=fit.accuracy,
                       val_loss=val.loss, val_accuracy=val.accuracy, samples_per_s=rate(fit.samples),
                       tokens_per_s=rate(fit.real_tokens), padded_tokens_per_s=rate(fit.padded_tokens),
                       train_samples=fit.samples, train_real_tokens=fit.real_tokens,
                       train_padded_tokens=fit.padded_tokens)


def strategy_detail(trainer: Trainer) -> StrategyDetail:
    r = dataclasses.asdict(trainer.result)
    cache_mib = round(r.pop("cache_bytes") / 2**20, 2) if r["cache_used"] else None
    return StrategyDetail(**r, precision=trainer.precision, cache_mib=cache_mib, pad_to=trainer.train_set.pad_to)


def run_trial(trial: Trial, emit: Emit | None = None, budget: dict[str, Any] | None = None,
              rss_observers: tuple[Callable[[int], Any], ...] = ()) -> dict[str, Any]:
    """Run one trial; returns its record (`TrialRecord.dump()`).

    `budget`: how the executor enforces the memory budgets (the record's `memory_budget`); `rss_observers`:
    called with every RSS reading of the meters (the budget's watchdog)."""
    emit = emit or (lambda event: None)
    t_start = time.perf_counter()
    rec = TrialRecord.empty(trial)
    rec.memory_budget = rec.memory_budget.model_copy(update=budget or {})
    p = trial.params
    meters: Meters | None = None
    trainer: Trainer | None = None
    where = PhaseEvent(phase="start")

    def enter(phase: str, epoch: int | None = None) -> None:
        nonlocal where
        where = PhaseEvent(phase=phase, epoch=epoch)
        emit(where.dump())

    def snapshot() -> None:
        read_meters(rec, meters)
        rec.seconds_total = round(time.perf_counter() - t_start, 6)
        emit(SnapshotEvent(record=rec.dump(), phase=where.phase, epoch=where.epoch).dump())

    def heartbeat(reading: dict[str, Any]) -> None:  # memory so far, for a parent whose child dies
        emit(HeartbeatEvent(**reading, phase=where.phase, epoch=where.epoch, device_name=rec.device_name,
                            seconds_total=round(time.perf_counter() - t_start, 6)).dump())

    try:
        torch.set_num_threads(int(p.get("num_threads") or len(os.sched_getaffinity(0))))
        device = torch.device(p["device"])
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {p['device']!r} asked for, but CUDA is not available on {socket.gethostname()}")
        rec.device_name = device_name(device)
        meters = Meters(p["device"], heartbeat=heartbeat, rss_observers=rss_observers)
        with meters:
            enter("load_data")
            with meters.phase("load_data"):
                rows = data.load_rows(trial.data_path or p["source"], p["text_column"], p["label_column"], p["split"],
                                      offline=True)
                train_idx, val_idx = data.sample_and_split(rows, p["dataset_size"], p["val_fraction"], p["data_seed"],
                                                           p["source"], sample=p.get("sample") or "stratified",
                                                           val_rows=p.get("val_rows"))
            rec.n_train, rec.n_val, rec.num_labels = len(train_idx), len(val_idx), len(rows.label_names)
            meters.mark_baseline()

            enter("load_model")
            with meters.phase("load_model"):
                loaded = load_model(p["model"], len(rows.label_names), trust_remote_code=p["trust_remote_code"],
                                    allow_pickle=p["allow_pickle"], attention=p.get("attention"), seed=p["seed"],
                                    revision=p.get("revision"))
                model = loaded.model
                rec.trainable_params, rec.total_params = freeze(model, p["frozen_layers"], p["model"])
                if p.get("adapter"):  # peft is imported here only, in trials that ask for adapters
                    from .core.adapters import apply_adapter, counts

                    rec.adapter = Adapter(**apply_adapter(model, p, p["model"]).as_record())
                    rec.trainable_params, rec.total_params = counts(model)
                model.to(device)

            enter("tokenize")
            with meters.phase("tokenize"):
                train_set, val_set = data.encode_split(loaded.tokenizer, rows, train_idx, val_idx, p["max_length"],
                                                       p["padding"])
            trainer = Trainer(model, train_set, val_set, p, device, max_steps=p.get("max_steps"))
            if trainer.cached:
                enter("cache")
                with meters.phase("cache"):  # the one-off cost, check included; counts in seconds_total
                    trainer.build_cache()
                    trainer.check_cache()
            trainer.maybe_compile()
            rec.strategy_detail = strategy_detail(trainer)
            if device.type == "cpu":  # the speed the epochs ran at, to score a time forecast against (docs/plan.md)
                reading = speed.measure()
                rec.machine_speed = MachineSpeed(before_gflops=round(reading.gflops, 3), threads=reading.threads)
            snapshot()

            for epoch in range(1, p["epochs"] + 1):
                enter("train", epoch)
                with meters.phase(f"epoch-{epoch}/train"):
                    fit = trainer.train_epoch()
                enter("eval", epoch)
                with meters.phase(f"epoch-{epoch}/eval"):
                    val = trainer.evaluate()
                stats = epoch_record(epoch, meters.phases[f"epoch-{epoch}/train"], meters.phases[f"epoch-{epoch}/eval"],
                                     fit, val)
                rec.epochs.append(stats)
                emit(EpochEvent(**stats.model_dump()).dump())
                snapshot()
            if rec.machine_speed is not None:
                rec.machine_speed.after_gflops = round(speed.measure().gflops, 3)
            rec.status = "ok"
    except BaseException as exc:  # noqa: BLE001 - every failure is data for the report
        if isinstance(exc, KeyboardInterrupt):
            raise
        oom = is_oom(exc)
        rec.status = "oom" if oom else "error"
        rec.error = one_line(exc)
        rec.traceback = traceback.format_exc(limit=8)[-4000:]
        rec.oom = Oom(phase=where.phase, epoch=where.epoch) if oom else None
    read_meters(rec, meters, final=True)
    count_flops(rec, trial, meters, trainer)
    finish(rec, t_start)
    annotate_cost(rec, trial)
    return rec.dump()


def read_meters(rec: TrialRecord, meters: Meters | None, final: bool = False) -> None:
    """The meters' figures into the record; at the end, their notes and energy too (never raises there:
    a figure that cannot be read is null with the reason in its note)."""
    if meters is None:
        return
    rec.memory = rec.memory.model_validate(meters.memory())
    rec.phases = Phases(**{k: round(v, 6) for k, v in meters.phases.items() if "/" not in k})
    if not final:
        return
    rec.memory_note = meters.memory_note()
    try:
        rec.energy_j = rec.energy_j.model_validate(meters.energy())
        rec.energy_note = meters.energy_note()
    except Exception as exc:
        rec.energy_note = f"energy not read ({one_line(exc)})"


def count_flops(rec: TrialRecord, trial: Trial, meters: Meters | None, trainer: Trainer | None) -> None:
    """FLOPs of the work the Trainer reports it did (a pure function of the model's shape and that report),
    and MFU over the seconds of the cache, training and evaluation phases."""
    if trainer is None or meters is None:
        rec.flops, rec.mfu, rec.mfu_note = None, None, "no training ran"
        return
    try:
        work = trainer.work
        count = trial_flops(encoder_shape(trainer.model), work.depth, work.cached,
                            [Work.from_batches(b) for b in work.train], [Work.from_batches(b) for b in work.eval],
                            Work.from_batches(work.cache) if work.cached else None)
        rec.flops = float(f"{count.total:.6g}")
        rec.flops_detail = FlopsDetail(**{k: float(f"{v:.6g}") for k, v in count.parts.items()})
        seconds = float(meters.phases.get("cache") or 0.0) + sum(
            (e.train_seconds or 0.0) + (e.eval_seconds or 0.0) for e in rec.epochs)
        rec.mfu, rec.mfu_note = mfu(count.total if rec.epochs or work.cached else None, seconds, rec.device_name,
                                    trial.params["device"], trainer.precision, trial.peak_tflops)
    except Exception as exc:
        rec.flops, rec.mfu, rec.mfu_note = None, None, f"FLOPs not counted ({one_line(exc)})"


def finish(rec: TrialRecord, t_start: float) -> None:
    rec.seconds_total = round(time.perf_counter() - t_start, 6)
    rec.finished_at = now_iso()
    train_s = sum(e.train_seconds or 0.0 for e in rec.epochs)
    if rec.epochs and train_s > 0:
        rec.samples_per_s = round(sum(e.train_samples or 0 for e in rec.epochs) / train_s, 2)
        rec.tokens_per_s = round(sum(e.train_real_tokens or 0 for e in rec.epochs) / train_s, 2)
        rec.padded_tokens_per_s = round(sum(e.train_padded_tokens or 0 for e in rec.epochs) / train_s, 2)
