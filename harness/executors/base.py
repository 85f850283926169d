"""The executors' one small interface: `run(trials, events)`; records come back through `events`.

An executor never touches the core or the store: it gets plain trials and hands back plain records.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..grid import Trial
from ..meters.cost import annotate_cost
from ..record import Oom, TrialRecord, load_record, now_iso


class Events(Protocol):
    def trial_started(self, trial: Trial) -> None: ...
    def trial_event(self, trial: Trial, event: dict[str, Any]) -> None: ...
    def trial_finished(self, trial: Trial, record: dict[str, Any]) -> None: ...
    def stopping(self) -> bool: ...


class Executor(Protocol):
    name: str

    def run(self, trials: list[Trial], events: Events) -> None: ...
    def stop(self) -> None: ...


def finish_abnormal(trial: Trial, snapshot: TrialRecord | dict[str, Any] | None, status: str, reason: str,
                    phase: str | None, epoch: int | None) -> dict[str, Any]:
    """Complete the last snapshot of a trial whose child could not finish its own record."""
    if snapshot is None:
        rec = TrialRecord.empty(trial)
    else:
        rec = load_record(snapshot.dump() if isinstance(snapshot, TrialRecord) else snapshot)
    rec.status, rec.error, rec.finished_at = status, reason, now_iso()  # type: ignore[assignment]
    if status == "oom":
        rec.oom = Oom(phase=phase, epoch=epoch)
    annotate_cost(rec, trial)  # the device time spent until the end, at the trial's price
    # The child never reached its end-of-trial figures: each null says why, as every null in a record must.
    if rec.flops is None and not rec.mfu_note:
        rec.mfu_note = f"FLOPs not counted: the child was stopped ({status}) before the end-of-trial count"
    if not rec.memory_note:
        measured = any(v is not None for v in rec.memory.model_dump().values())
        rec.memory_note = ("memory: the child's last heartbeat before it was stopped" if measured
                           else "memory: the child was stopped before it sent any reading")
    if not rec.energy_note:
        rec.energy_note = "energy: the child was stopped before it sent any reading"
    rec.note(f"record completed by the parent from the child's last snapshot (phase {phase}, epoch {epoch})")
    return rec.dump()
