"""The meters' record fields, filled at the end of a trial (child side) and merged from heartbeats (parent).

`fill_record` never raises: a figure it cannot compute is null with the reason in its note.
"""

from __future__ import annotations

from typing import Any

MEMORY_PEAKS = ("cpu_peak_rss_mib", "cpu_maxrss_mib", "cuda_peak_allocated_mib", "cuda_peak_reserved_mib",
                "gpu_peak_used_mib")


def compute_seconds(phases: dict[str, float], epochs: list[dict[str, Any]]) -> float:
    """Seconds of the work the FLOPs count: the cache phase and each epoch's training and evaluation."""
    return float(phases.get("cache") or 0.0) + sum(float(e.get("train_seconds") or 0.0) + float(e.get("eval_seconds") or 0.0)
                                                   for e in epochs)


def fill_record(rec: dict[str, Any], trial: Any, meters: Any, trainer: Any = None) -> None:
    try:
        rec["energy_j"] = meters.energy()
        rec["energy_note"] = meters.energy_note()
    except Exception as exc:
        rec["energy_note"] = f"energy not read ({type(exc).__name__}: {exc})"
    try:
        from ..core.budget import describe

        rec["memory_budget"] = {**(rec.get("memory_budget") or {}), **describe()}
    except Exception:
        pass
    _fill_flops(rec, trial, meters, trainer)


def _fill_flops(rec: dict[str, Any], trial: Any, meters: Any, trainer: Any) -> None:
    if trainer is None:
        rec["flops"], rec["mfu"], rec["mfu_note"] = None, None, "no training ran"
        return
    try:
        from .flops import count_trial, mfu

        p = trainer.p
        count = count_trial(trainer.model, p, trainer.depth, trainer.uses_cache(), trainer.train_set, trainer.val_set,
                            rec["epochs"], bool(trainer.result.cache_used))
        rec["flops"] = float(f"{count.total:.6g}")
        rec["flops_detail"] = {k: float(f"{v:.6g}") for k, v in count.parts.items()}
        seconds = compute_seconds(meters.phases, rec["epochs"])
        value, note = mfu(count.total if rec["epochs"] or count.parts.get("cache") else None, seconds,
                          rec.get("device_name"), p["device"], trainer.precision, getattr(trial, "peak_tflops", None))
        rec["mfu"], rec["mfu_note"] = value, note
    except Exception as exc:
        rec["flops"], rec["mfu"] = None, None
        rec["mfu_note"] = f"FLOPs not counted ({type(exc).__name__}: {exc})"


def merge_heartbeat(rec: dict[str, Any], hb: dict[str, Any]) -> None:
    """Fold a heartbeat into a (parent-side) record: peaks and energies are running maxima, so the order
    of heartbeats and snapshots does not matter."""
    mem = dict(rec.get("memory") or {})
    for key, value in (hb.get("memory") or {}).items():
        if value is None:
            continue
        if key in MEMORY_PEAKS and mem.get(key) is not None:
            mem[key] = max(mem[key], value)
        elif mem.get(key) is None:
            mem[key] = value
    rec["memory"] = mem
    energy = dict(rec.get("energy_j") or {})
    for key, value in (hb.get("energy_j") or {}).items():
        if value is not None:
            energy[key] = max(energy.get(key) or 0.0, value)
    rec["energy_j"] = energy
    for note in ("memory_note", "energy_note"):
        if hb.get(note):
            rec[note] = hb[note]
    if hb.get("seconds_total") is not None:
        rec["seconds_total"] = max(rec.get("seconds_total") or 0.0, hb["seconds_total"])
    if hb.get("device_name") and not rec.get("device_name"):
        rec["device_name"] = hb["device_name"]
