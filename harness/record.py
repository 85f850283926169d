"""The trial record and the child -> parent events, as types: the one contract every part shares.

Writers (the trial's child, the executors' parent side, the largest-batch search) fill a `TrialRecord`;
the run folder holds `TrialRecord.dump()` per line; readers (results, report, compare, export) get records
through `store.read_records`, which passes every line through `load_record`, so that a record an older run
wrote reads like a new one. docs/record.md's field table and docs/record.schema.json are generated from these
models (`python docs/scripts/record_schema.py`); a test fails when they are stale.

A configuration, and a repeat of it, are defined here once (`configuration`, `config_key`).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from datetime import datetime, timezone
from typing import Annotated, Any, Iterable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SCHEMA_VERSION = 1
MiB = 2**20


# --------------------------------------------------------------------------------------------------
# Small helpers every layer uses (one definition each)
# --------------------------------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def finite(value: Any) -> float | None:
    """A real number (numpy's included) as float, or None (bools, text, NaN and infinities are not measurements)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them and a diverged loss is not a number."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (a library's long explanation cut), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An exception as one line: `Type: message`, whitespace folded, cut at `limit` characters."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# Configurations and repeats
# --------------------------------------------------------------------------------------------------
#: Settings that tell the repeats of one configuration apart. `seed` drives the training's randomness
#: (initialisation of new weights, batch order, dropout). `data_seed` draws the dataset sample and its
#: train/validation split. Both are draws of chance, not choices a user would deploy: a configuration is
#: what one would pick (model, data size, batch, frozen depth, strategy, ...), and its repeats, over seeds
#: and data samples alike, measure how much its accuracy and time vary. So two data seeds of one grid point
#: are two repeats of one configuration, in the report, `compare`, the largest-batch search and the export.
REPEAT_KEYS = frozenset({"seed", "data_seed"})


def configuration(params: Any, ignore: Iterable[str] = ()) -> dict[str, Any]:
    """A trial's settings without what tells its repeats apart (and without `ignore`)."""
    if not isinstance(params, dict):
        return {}
    drop = REPEAT_KEYS | set(ignore)
    return {k: v for k, v in params.items() if k not in drop}


def config_key(params: Any, ignore: Iterable[str] = ()) -> str:
    """A canonical string of a configuration: equal for all its repeats, different for any other."""
    return json.dumps(configuration(params, ignore), sort_keys=True, default=str)


def config_id(params: Any) -> str:
    """A short stable id of a configuration (10 hex characters of `config_key`'s SHA-1)."""
    return hashlib.sha1(config_key(params).encode("utf-8")).hexdigest()[:10]


# --------------------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------------------
class _Part(BaseModel):
    """A part of the record, or an event; keys a later version adds are kept, not dropped."""

    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        return self.model_dump()


class Memory(_Part):
    """Peak and baseline memory, MiB (2^20 bytes); null where it does not apply or was not measured."""

    cpu_peak_rss_mib: Optional[float] = Field(None, description="peak RSS of the trial's process tree, sampled every 20 ms")
    cpu_baseline_rss_mib: Optional[float] = Field(None, description="RSS after the data was loaded, before the model")
    cpu_maxrss_mib: Optional[float] = Field(None, description="the kernel's ru_maxrss of the child (the largest single process)")
    cuda_peak_allocated_mib: Optional[float] = Field(None, description="torch.cuda.max_memory_allocated")
    cuda_peak_reserved_mib: Optional[float] = Field(None, description="torch.cuda.max_memory_reserved")
    gpu_peak_used_mib: Optional[float] = Field(None, description="peak device memory used (NVML), all processes")
    gpu_total_mib: Optional[float] = Field(None, description="the device's memory size")


PEAK_KEYS = ("cpu_peak_rss_mib", "cpu_maxrss_mib", "cuda_peak_allocated_mib", "cuda_peak_reserved_mib",
             "gpu_peak_used_mib")


class Energy(_Part):
    """Energy over the trial, joules; null where no counter could be read (`energy_note` says why)."""

    cpu: Optional[float] = Field(None, description="joules, RAPL package counters over the trial (every process on the CPU)")
    gpu: Optional[float] = Field(None, description="joules, NVML energy counter over the trial")


class MemoryBudget(_Part):
    """The `[limits]` memory budgets and how they were enforced (docs/meters.md)."""

    cpu_bytes: Optional[int] = Field(None, description="[limits] cpu_memory, bytes, or null")
    gpu_bytes: Optional[int] = Field(None, description="[limits] gpu_memory, bytes, or null")
    cpu_enforced_by: Optional[str] = Field(None, description="how the CPU budget was enforced (watchdog, cgroup, RLIMIT_AS)")
    gpu_enforced_by: Optional[str] = Field(None, description="how the GPU budget was enforced (set_per_process_memory_fraction)")


class Phases(_Part):
    """Seconds of the one-off phases (epochs are in `epochs`)."""

    load_data: Optional[float] = None
    load_model: Optional[float] = None
    tokenize: Optional[float] = None
    cache: Optional[float] = Field(None, description="building and checking the frozen-prefix cache; null without it")


class EpochRecord(_Part):
    """One finished epoch; the throughputs are computed from the `train_*` counts over `train_seconds`."""

    epoch: int
    seconds: Optional[float] = Field(None, description="train_seconds + eval_seconds")
    train_seconds: Optional[float] = None
    eval_seconds: Optional[float] = None
    train_loss: Optional[float] = None
    train_accuracy: Optional[float] = Field(None, description="fraction in [0, 1]")
    val_loss: Optional[float] = None
    val_accuracy: Optional[float] = Field(None, description="fraction in [0, 1]")
    samples_per_s: Optional[float] = None
    tokens_per_s: Optional[float] = Field(None, description="real (unpadded) tokens per training second")
    padded_tokens_per_s: Optional[float] = Field(None, description="tokens the model ran, padding included")
    train_samples: Optional[int] = None
    train_real_tokens: Optional[int] = None
    train_padded_tokens: Optional[int] = None


class Oom(_Part):
    """Where memory ran out."""

    phase: Optional[str] = Field(None, description="the phase the trial was in when memory ran out")
    epoch: Optional[int] = None


class FlopsDetail(_Part):
    """`flops` split by phase: the cache built once, training, evaluation."""

    cache: Optional[float] = None
    train: Optional[float] = None
    eval: Optional[float] = None


class StrategyDetail(_Part):
    """What the strategy's switches came to on this machine."""

    precision: Optional[str] = Field(None, description="fp32, bf16 or fp16, as actually used")
    optimizer_impl: Optional[str] = Field(None, description="fused, foreach or for-loop")
    cache_used: Optional[bool] = None
    cache_mib: Optional[float] = None
    cache_where: Optional[str] = Field(None, description="cpu or the device")
    cache_note: Optional[str] = Field(None, description="why the cache was not used, where it was asked for")
    cache_check_rel_diff: Optional[float] = Field(
        None, description="largest relative difference between the cached and the uncached forward, checked before training")
    compiled: Optional[bool] = None
    compiled_part: Optional[str] = None
    pad_to: Optional[int] = Field(None, description="the fixed length with padding = longest_in_set")


class Adapter(_Part):
    """The low-rank adapters a trial trained (`[train] adapter`, core/adapters.py); null without one."""

    kind: str = Field(..., description="lora")
    r: int = Field(..., description="rank of each adapter")
    alpha: float = Field(..., description="scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(..., description="dropout on the adapters' input")
    targets: list[str] = Field(default_factory=list, description="module names within a block that got an adapter")
    targets_from: str = Field("", description="where the targets came from (the grid, peft's default, ...)")
    blocks: list[int] = Field(default_factory=list, description="indices of the adapted blocks (those above frozen_layers)")
    modules: int = Field(0, description="number of adapted Linear layers")
    adapter_params: int = Field(0, description="parameters of the adapters alone")
    head_params: int = Field(0, description="parameters of the classifier head, trained in full")
    peft_version: Optional[str] = None
    note: Optional[str] = None


class MachineSpeed(_Part):
    """The machine's speed around a CPU trial's epochs (meters/speed.py); null on CUDA."""

    before_gflops: Optional[float] = Field(None, description="GFLOP/s of a fixed fp32 256 x 256 matrix product, "
                                                             "0.1 s, the trial's threads, just before the first epoch")
    after_gflops: Optional[float] = Field(None, description="the same just after the last epoch; null if it did not finish")
    threads: Optional[int] = Field(None, description="torch threads during the readings")


class Predicted(_Part):
    """`harness run --plan`: the plan's forecast for this trial, made before it ran (docs/plan.md)."""

    status: str = Field("predicted", description="predicted, or cannot predict (then `reason` says why)")
    reason: Optional[str] = None
    memory_metric: Optional[str] = Field(None, description="the peak predicted: cpu_peak_rss or cuda_peak_allocated")
    peak_mib: Optional[float] = Field(None, description="predicted peak of `memory_metric`, MiB")
    cuda_peak_reserved_mib: Optional[float] = None
    seconds_per_epoch: Optional[float] = Field(None, description="training plus evaluation, s")
    train_seconds_per_epoch: Optional[float] = None
    eval_seconds_per_epoch: Optional[float] = None
    seconds_total: Optional[float] = Field(None, description="the whole trial in its child, s")
    cost_usd: Optional[float] = None
    verdict: Optional[str] = Field(None, description="fits or oom, against the device's memory")
    calibration: Optional[str] = Field(None, description="id of the stored calibration the forecast used")
    speed_gflops: Optional[float] = Field(None, description="the machine's speed (meters/speed.py) while the "
                                                            "calibration's probes ran, GFLOP/s; CPU only")


Status = Literal["ok", "oom", "timeout", "error"]
Kind = Literal["train", "probe", "max_batch"]

# Fields written only where they apply (absent, not null, elsewhere), as runs before the types wrote them.
_ONLY_WHERE_SET = ("traceback", "notes", "ray", "retry_on_resume", "flops_detail", "max_batch",
                   "smallest_oom_batch", "batch_limit", "limited_by", "probes", "predicted")


class TrialRecord(BaseModel):
    """One trial's line in trials.jsonl."""

    model_config = ConfigDict(extra="allow")

    schema_: int = Field(SCHEMA_VERSION, alias="schema", description="bumped on any incompatible change")
    run_name: Optional[str] = None
    trial_id: str
    index: Optional[int] = None
    repeat: int = 0
    kind: Kind = Field("train", description="train: a grid trial; probe: a step of the largest-batch search; "
                                            "max_batch: the search's result for one grid point")
    params: dict[str, Any] = Field(default_factory=dict, description="every resolved setting")
    status: Status = Field("error", description="only ok trials are complete; the others keep what was measured")
    error: Optional[str] = Field(None, description="one line: why the trial did not finish")
    traceback: Optional[str] = Field(None, description="status error only: the exception's last frames")
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    host: Optional[str] = None
    device_name: Optional[str] = None
    n_train: Optional[int] = None
    n_val: Optional[int] = None
    num_labels: Optional[int] = None
    trainable_params: Optional[int] = None
    total_params: Optional[int] = None
    phases: Phases = Field(default_factory=Phases)
    epochs: list[EpochRecord] = Field(default_factory=list, description="every finished epoch")
    seconds_total: Optional[float] = Field(None, description="wall time of the whole trial in its child, loading included")
    samples_per_s: Optional[float] = None
    tokens_per_s: Optional[float] = None
    padded_tokens_per_s: Optional[float] = None
    memory: Memory = Field(default_factory=Memory)
    memory_note: Optional[str] = None
    memory_budget: MemoryBudget = Field(default_factory=MemoryBudget)
    energy_j: Energy = Field(default_factory=Energy)
    energy_note: Optional[str] = None
    cost_usd: Optional[float] = None
    cost_note: Optional[str] = None
    flops: Optional[float] = Field(None, description="matmul FLOPs the trial ran, counted analytically")
    flops_detail: Optional[FlopsDetail] = None
    mfu: Optional[float] = None
    mfu_note: Optional[str] = None
    oom: Optional[Oom] = Field(None, description="where memory ran out, when status is oom")
    strategy_detail: Optional[StrategyDetail] = None
    adapter: Optional[Adapter] = Field(None, description="[train] adapter = lora: what was adapted; null without adapters")
    machine_speed: Optional[MachineSpeed] = Field(None, description="CPU trials: the machine's speed before and after "
                                                                    "the epochs; null on CUDA")
    notes: Optional[list[str]] = Field(None, description="sentences about anything unusual the executor saw")
    ray: Optional[dict[str, Any]] = Field(None, description="Ray executor: node_id, node_ip, worker_pid, gpu_ids")
    retry_on_resume: Optional[bool] = Field(None, description="Ray: the worker or node died; --resume runs it again")
    max_batch: Optional[int] = Field(None, description="max_batch records: the largest batch that fits")
    smallest_oom_batch: Optional[int] = None
    batch_limit: Optional[int] = None
    limited_by: Optional[str] = None
    probes: Optional[list[dict[str, Any]]] = Field(None, description="max_batch records: every batch size tried")
    predicted: Optional[Predicted] = Field(None, description="`run --plan`: the plan's forecast for this trial")

    @classmethod
    def empty(cls, trial: Any, host: str | None = None) -> "TrialRecord":
        """A trial's record with nothing measured yet (what a parent reports if the child never starts)."""
        import socket

        limits = getattr(trial, "limits", {}) or {}
        return cls(run_name=trial.run_name, trial_id=trial.trial_id, index=trial.index, repeat=trial.repeat,
                   kind=trial.kind, params=trial.params, started_at=now_iso(), host=host or socket.gethostname(),
                   memory_budget=MemoryBudget(cpu_bytes=limits.get("cpu_memory"), gpu_bytes=limits.get("gpu_memory")))

    def dump(self) -> dict[str, Any]:
        """The record as the plain JSON object trials.jsonl holds."""
        out = self.model_dump(by_alias=True)
        # A phase that did not run is absent, not null (a trial without the cache has no `cache` phase).
        out["phases"] = {name: seconds for name, seconds in (out.get("phases") or {}).items() if seconds is not None}
        for key in _ONLY_WHERE_SET:
            if out.get(key) is None:
                out.pop(key, None)
        return json_safe(out)

    def note(self, text: str) -> None:
        self.notes = [*(self.notes or []), text]

    def merge_heartbeat(self, hb: "HeartbeatEvent") -> None:
        """Fold a heartbeat into a (parent-side) record: peaks and energies are running maxima, so the order
        of heartbeats and snapshots does not matter; a value that is not a peak keeps its first reading."""
        for key, value in hb.memory.items():
            if value is None:
                continue
            mine = getattr(self.memory, key, None)
            if key in PEAK_KEYS and mine is not None:
                setattr(self.memory, key, max(mine, value))
            elif mine is None:
                setattr(self.memory, key, value)
        for key, value in hb.energy_j.items():
            if value is not None:
                setattr(self.energy_j, key, max(getattr(self.energy_j, key, None) or 0.0, value))
        self.memory_note = hb.memory_note or self.memory_note
        self.energy_note = hb.energy_note or self.energy_note
        if hb.seconds_total is not None:
            self.seconds_total = max(self.seconds_total or 0.0, hb.seconds_total)
        self.device_name = self.device_name or hb.device_name


def load_record(raw: dict[str, Any]) -> TrialRecord:
    """A record as any run wrote it, upgraded: a missing `kind` is `train` (or `max_batch` for a search
    result, marked by `params.search`), `result.max_batch` moves to `max_batch`, null parts become empty."""
    data = dict(raw)
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    if "kind" not in data or data["kind"] is None:
        data["kind"] = "max_batch" if params.get("search") == "max_batch" else "train"
    if isinstance(data.get("result"), dict) and data.get("max_batch") is None:
        data["max_batch"] = data["result"].get("max_batch")
    for part in ("memory", "memory_budget", "energy_j", "phases"):
        if not isinstance(data.get(part), dict):
            data.pop(part, None)
    if not isinstance(data.get("epochs"), list):
        data["epochs"] = []
    data["epochs"] = [e for e in data["epochs"] if isinstance(e, dict) and "epoch" in e]
    return TrialRecord.model_validate(json_safe(data))


def normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored line as readers see it: upgraded through `load_record`; a line that does not fit the types
    (a record from a version that changed them) is kept as it was, for the readers' defensive reads."""
    try:
        return load_record(raw).dump()
    except ValidationError:
        return raw


# --------------------------------------------------------------------------------------------------
# Events from a trial's child to its parent (over the pipe, and through Ray's event sink)
# --------------------------------------------------------------------------------------------------
class StartedEvent(_Part):
    """The child's first line ran (its start-up, from the parent's start(), is measured against `monotonic`)."""

    type: Literal["started"] = "started"
    monotonic: float


class PhaseEvent(_Part):
    """The trial entered a phase (load_data, load_model, tokenize, cache, train, eval)."""

    type: Literal["phase"] = "phase"
    phase: str
    epoch: Optional[int] = None


class EpochEvent(EpochRecord):
    """An epoch finished: its statistics."""

    type: Literal["epoch"] = "epoch"


class SnapshotEvent(_Part):
    """The record so far, for a parent whose child dies or times out later."""

    type: Literal["snapshot"] = "snapshot"
    record: dict[str, Any]
    phase: Optional[str] = None
    epoch: Optional[int] = None


class HeartbeatEvent(_Part):
    """Memory and energy so far, sent every few seconds by the meters' thread."""

    type: Literal["heartbeat"] = "heartbeat"
    memory: dict[str, Any] = Field(default_factory=dict)
    energy_j: dict[str, Any] = Field(default_factory=dict)
    memory_note: Optional[str] = None
    energy_note: Optional[str] = None
    phase: Optional[str] = None
    epoch: Optional[int] = None
    device_name: Optional[str] = None
    seconds_total: Optional[float] = None


class BudgetEvent(_Part):
    """How the child enforces its memory budgets (sent before the trial starts)."""

    type: Literal["budget"] = "budget"
    memory_budget: dict[str, Any] = Field(default_factory=dict)


class BudgetExceededEvent(_Part):
    """The CPU-budget watchdog is about to SIGKILL the child's tree."""

    type: Literal["budget_exceeded"] = "budget_exceeded"
    rss_bytes: int = 0
    reason: str


class RecordEvent(_Part):
    """The child's finished record: the last event."""

    type: Literal["record"] = "record"
    record: dict[str, Any]


class WorkerEvent(_Part):
    """Ray executor: the worker that took the trial."""

    type: Literal["worker"] = "worker"
    host: Optional[str] = None


# Every kind of event, in the order a trial sends them (docs/record.md's table is generated from this).
EVENT_MODELS = (StartedEvent, PhaseEvent, EpochEvent, SnapshotEvent, HeartbeatEvent, BudgetEvent, BudgetExceededEvent,
                RecordEvent, WorkerEvent)
Event = Annotated[Union[EVENT_MODELS], Field(discriminator="type")]
EVENTS = TypeAdapter(Event)


def parse_event(raw: Any) -> Any:
    """An event received from a child, as its model; None for anything that is not one."""
    if isinstance(raw, BaseModel):
        return raw
    try:
        return EVENTS.validate_python(raw)
    except ValidationError:
        return None
