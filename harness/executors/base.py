"""The executors' one small interface: `run(trials, events)`; records come back through `events`.

An executor never touches the core or the store: it gets plain trials and hands back plain records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..grid import Trial
from ..meters.cost import annotate_cost
from ..record import (
    BudgetEvent, BudgetExceededEvent, EpochEvent, HeartbeatEvent, Oom, PhaseEvent, SnapshotEvent, TrialRecord,
    load_record, now_iso, parse_event,
)


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


@dataclass
class Watch:
    """What a parent knows of one running trial from its child's events: enough to complete the record when
    the child cannot (its last snapshot, with the heartbeats, budget and epochs that came after it)."""

    trial: Trial
    snapshot: TrialRecord | None = None
    phase: str | None = "start"
    epoch: int | None = None
    heartbeat: HeartbeatEvent | None = None
    budget_info: dict[str, Any] = field(default_factory=dict)  # how the child enforces its budgets
    budget_reason: str | None = None  # the CPU-budget watchdog's report, if it killed the child
    epochs: list[dict[str, Any]] = field(default_factory=list)  # every finished epoch, from epoch events

    def fold(self, raw: Any) -> Any:
        """Take in one event from the child; returns it as its model (None for anything else)."""
        event = parse_event(raw)
        if isinstance(event, SnapshotEvent):
            self.snapshot = load_record(event.record)
            self._merge(self.heartbeat)
        elif isinstance(event, HeartbeatEvent):
            self.heartbeat = event
            self._merge(event)
        elif isinstance(event, BudgetEvent):
            self.budget_info = event.memory_budget
            self._merge(None)
        elif isinstance(event, BudgetExceededEvent):
            self.budget_reason = event.reason
            self._merge(HeartbeatEvent(memory={"cpu_peak_rss_mib": round(event.rss_bytes / 2**20, 1)}))
        elif isinstance(event, EpochEvent):
            self.epochs.append(event.model_dump(exclude={"type"}))
        elif isinstance(event, PhaseEvent):
            self.phase, self.epoch = event.phase, event.epoch
        return event

    def _merge(self, heartbeat: HeartbeatEvent | None) -> None:
        """Fold the child's latest memory (and energy, time) into the snapshot the parent would complete."""
        if self.snapshot is None:
            self.snapshot = TrialRecord.empty(self.trial)
        if heartbeat is not None:
            self.snapshot.merge_heartbeat(heartbeat)
            if heartbeat.phase is not None:
                self.phase, self.epoch = heartbeat.phase, heartbeat.epoch
        if self.budget_info:
            self.snapshot.memory_budget = self.snapshot.memory_budget.model_copy(update=self.budget_info)

    def complete(self, status: str, reason: str) -> dict[str, Any]:
        """The last snapshot completed by the parent, with every epoch the child reported finishing (an epoch
        that ended just before the kill may be in an epoch event but not yet in a snapshot)."""
        if len(self.epochs) > len(self.snapshot.epochs if self.snapshot else []):
            base = self.snapshot or TrialRecord.empty(self.trial)
            self.snapshot = load_record({**base.dump(), "epochs": self.epochs})
        return finish_abnormal(self.trial, self.snapshot, status, reason, self.phase, self.epoch)
