"""The grid file's schema: pydantic models per section, defaults, and one clear line per mistake.

A grid file has `name`, scalar settings in `[model]`, `[data]` and `[train]`, sweeps in `[grid]` (any
setting given as a list), and run-wide tables `[limits]`, `[cost]`, `[search]`, `[report]`.

Every setting has one flat name, used in `[grid]` and in a record's `params`: it is the key in its section,
except `[model] name` (flat `model`), `[data] source` (flat `source`) and `[data] seed` (flat `data_seed`).
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

MAX_EPOCHS = 10_000
MAX_BATCH = 1 << 20
MAX_ROWS = 100_000_000


class ConfigError(Exception):
    """A mistake in a grid file. The message is one line: file, key, what is expected."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------------------------------------------------
# The three sections whose settings can be swept
# --------------------------------------------------------------------------------------------------
FrozenLayers = Union[Literal["all"], int]
Device = str


class ModelSection(Strict):
    name: str = "embedded:minilm-l6"
    max_length: int = Field(128, ge=8, le=8192)
    trust_remote_code: bool = False
    allow_pickle: bool = False
    attention: Optional[Literal["sdpa", "eager"]] = None
    # A hub model's branch, tag or commit (default: its main branch); pin a commit for runs that must repeat.
    revision: Optional[str] = Field(None, min_length=1, max_length=200)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("expected a model: a hub id, a local folder, embedded:minilm-l6 or random:<shape>")
        return v


class DataSection(Strict):
    source: str = "embedded:reviews"
    text_column: str = "text"
    label_column: str = "label"
    split: str = "train"
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    # A validation set of this many rows, drawn apart from the `dataset_size` rows (which then all train) and
    # the same for every `dataset_size` of a seed: learning curves measured on 20-200 validation rows are
    # flatter than their noise (docs/forecast.md). Unset: `val_fraction` of the `dataset_size` rows.
    val_rows: Optional[int] = Field(None, ge=1, le=MAX_ROWS)
    seed: int = Field(324, ge=0, le=2**32 - 1)
    dataset_size: Optional[int] = Field(None, ge=2, le=MAX_ROWS)
    padding: Optional[Literal["longest_in_set", "batch"]] = None
    eval_batch_size: Optional[int] = Field(None, ge=1, le=MAX_BATCH)
    # Which `dataset_size` rows: "stratified" (default) a seeded stratified sample, "head" the first rows of
    # the source, as the lab's df.head(2000) took them; the train/validation split is stratified either way.
    sample: Optional[Literal["head", "stratified"]] = None

    @field_validator("source", "text_column", "label_column")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("expected a non-empty string")
        return v

    @field_validator("val_fraction", mode="before")
    @classmethod
    def _float(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class TrainSection(Strict):
    epochs: int = Field(3, ge=1, le=MAX_EPOCHS)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    learning_rate: float = Field(0.005, gt=0.0, le=10.0)
    # The classification head's own rate (default: learning_rate). A head trained from scratch on a
    # pretrained encoder wants a larger step than the encoder it sits on: one rate cannot serve "all" and 0.
    head_learning_rate: Optional[float] = Field(None, gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    batch_size: Optional[int] = Field(None, ge=1, le=MAX_BATCH)
    frozen_layers: Optional[FrozenLayers] = None
    device: Optional[Device] = None
    strategy: Literal["lab", "fast"] = "lab"
    # The switches behind a strategy; None means "what the strategy says" (see STRATEGIES).
    precision: Optional[Literal["fp32", "bf16", "fp16", "auto"]] = None
    cache_frozen: Optional[bool] = None
    length_buckets: Optional[bool] = None
    frozen_dropout: Optional[bool] = None
    fused_optimizer: Optional[bool] = None
    compile: Optional[bool] = None
    seed: Optional[int] = Field(None, ge=0, le=2**32 - 1)
    num_threads: Optional[int] = Field(None, ge=1, le=1024)
    # Low-rank adapters through peft (harness/core/adapters.py): "lora" puts them in the blocks above
    # frozen_layers, the base weights stay frozen, the head trains. Unset lora_* take peft's defaults.
    adapter: Optional[Literal["none", "lora"]] = None
    lora_r: Optional[int] = Field(None, ge=1, le=4096)
    lora_alpha: Optional[float] = Field(None, gt=0.0, le=1e6)
    lora_dropout: Optional[float] = Field(None, ge=0.0, lt=1.0)
    # "all-linear", one module name, names joined by commas, or a list of names (suffixes of a block's
    # module names, as peft matches them); unset: peft's default for the model family
    lora_targets: Optional[Union[str, list[str]]] = None

    @field_validator("learning_rate", "head_learning_rate", "momentum", "weight_decay", "lora_alpha", "lora_dropout",
                     mode="before")
    @classmethod
    def _float(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("frozen_layers", mode="before")
    @classmethod
    def _frozen(cls, v: Any) -> Any:
        if v is None or v == "all" and isinstance(v, str):
            return v
        if isinstance(v, bool) or not isinstance(v, int) or not (0 <= v <= 1000):
            raise ValueError('expected "all" or a layer count from 0 to 1000')
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else check_device(v)

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, v: Any) -> Any:
        names = v.split(",") if isinstance(v, str) else v
        if v is not None and (not names or any(not n.strip() for n in names)):
            raise ValueError('expected "all-linear", module names such as "query,value", or a list of names')
        return v


def check_device(v: str) -> str:
    if v == "cpu" or v == "cuda":
        return v
    if v.startswith("cuda:") and v[5:].isdigit() and int(v[5:]) < 64:
        return v
    raise ValueError('expected "cpu", "cuda" or "cuda:N"')


# What each strategy means, switch by switch. `lab` is the notebook as published; `fast` is the best
# combination measured in docs/performance.md. A switch set explicitly in the grid wins over these.
STRATEGIES: dict[str, dict[str, Any]] = {
    "lab": {
        "padding": "longest_in_set",
        "precision": "fp32",
        "cache_frozen": False,
        "length_buckets": False,
        "frozen_dropout": True,
        "fused_optimizer": False,
        "compile": False,
        "attention": "sdpa",
    },
    "fast": {
        "padding": "batch",
        "precision": "auto",
        "cache_frozen": True,
        "length_buckets": True,
        "frozen_dropout": False,
        "fused_optimizer": True,
        "compile": False,
        "attention": "sdpa",
    },
}

# section -> {field name in the section: flat name}
SECTIONS: dict[str, tuple[type[Strict], dict[str, str]]] = {
    "model": (ModelSection, {"name": "model"}),
    "data": (DataSection, {"source": "source", "seed": "data_seed"}),
    "train": (TrainSection, {}),
}


def flat_names() -> dict[str, tuple[str, str]]:
    """flat setting name -> (section, field)."""
    out: dict[str, tuple[str, str]] = {}
    for section, (model, renames) in SECTIONS.items():
        for field_name in model.model_fields:
            out[renames.get(field_name, field_name)] = (section, field_name)
    return out


REQUIRED_AXES = ("dataset_size", "batch_size", "frozen_layers", "device")


# --------------------------------------------------------------------------------------------------
# Run-wide tables
# --------------------------------------------------------------------------------------------------
class LimitsSection(Strict):
    trial_timeout_s: float = Field(3600.0, gt=0, le=7 * 24 * 3600)
    cpu_memory: Optional[ByteSize] = None
    gpu_memory: Optional[ByteSize] = None
    # How cpu_memory is enforced (harness/executors/budget.py, measured in docs/meters.md): "auto" is a watchdog on
    # the process tree's RSS with a memory cgroup as kernel backstop where one can be made; "rlimit" (address
    # space) only for comparison.
    cpu_memory_method: Literal["auto", "cgroup", "watchdog", "rlimit"] = "auto"

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)

    @field_validator("trial_timeout_s", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("expected a number of seconds")
        return v

    @field_validator("cpu_memory", "gpu_memory", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise ValueError('expected a size such as "4GiB" or "512MiB"')
        if isinstance(v, int) and v <= 0 or isinstance(v, str) and v.strip().startswith("-"):
            raise ValueError('expected a positive size such as "4GiB"')
        if isinstance(v, str):
            try:
                ByteSize._validate(v, None)  # type: ignore[attr-defined]
            except Exception:
                raise ValueError(f'expected a size such as "4GiB" or "512MiB", got {v!r}') from None
        return v

    @model_validator(mode="after")
    def _fits_machine(self) -> "LimitsSection":
        if self.cpu_memory is not None:
            if int(self.cpu_memory) < 64 * 2**20:
                raise ValueError("cpu_memory: expected at least 64MiB")
            total = _machine_memory()
            if total and int(self.cpu_memory) > total:
                raise ValueError(
                    f"cpu_memory: {self.cpu_memory.human_readable()} is more than this machine has "
                    f"({ByteSize(total).human_readable()}); a budget emulates smaller hardware"
                )
        if self.gpu_memory is not None and int(self.gpu_memory) < 16 * 2**20:
            raise ValueError("gpu_memory: expected at least 16MiB")
        gpu_total = _largest_gpu_memory()
        if self.gpu_memory is not None and gpu_total and int(self.gpu_memory) > gpu_total:
            raise ValueError(
                f"gpu_memory: {self.gpu_memory.human_readable()} is more than the largest GPU here has "
                f"({ByteSize(gpu_total).human_readable()}); a budget emulates smaller hardware"
            )
        return self


def _largest_gpu_memory() -> Optional[int]:
    """The largest GPU's memory from NVML (no torch import), or None where there is no GPU or no NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        return max((int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).total) for i in range(n)),
                   default=None)
    except Exception:
        return None


def _machine_memory() -> Optional[int]:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return None


# Documented default prices (USD per device-hour, on-demand list prices in us-east-1 as of 2026;
# see docs/meters.md). Keys are matched against a trial's device name, case-insensitively.
DEFAULT_DEVICE_HOUR_USD: dict[str, float] = {
    "cpu": 0.096,   # a 2-vCPU general-purpose VM (m7i.large class)
    "t4": 0.526,    # one 16 GB T4 (g4dn.xlarge, the lab's ml.g4dn)
    "a10g": 1.006,  # g5.xlarge
    "l4": 0.805,    # g6.xlarge
    "a100": 4.10,   # one A100 40 GB, per-GPU share of p4d
    "h100": 6.88,   # one H100 80 GB, per-GPU share of p5
    "h200": 7.91,   # one H200 141 GB, per-GPU share of p5e
}


# Dense peak TFLOP/s per precision (NVIDIA datasheets; "with sparsity" figures halved). "fp32" is the
# non-tensor-core rate; "tf32" applies to fp32 matmuls when torch allows TF32. A precision missing for a
# device (bf16 on a T4) means no peak is known.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "t4": {"fp32": 8.1, "fp16": 65.0},
    "a10g": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
    "l4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
    "a100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "h100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "h100 pcie": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "h100 nvl": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
    "h200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "h200 nvl": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
}
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


def device_key(name: str) -> str:
    """A device name as the price and peak tables key it: lower case, runs of blanks as one space."""
    return " ".join(name.lower().split())


class CostSection(Strict):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)
    # Devices the default tables lack (an RTX A6000, a laptop GPU): naming them here lets device_hour_usd
    # and peak_tflops price them, while a misspelt known name (h1OO) still fails as unknown.
    add_devices: tuple[str, ...] = ()
    device_hour_usd: dict[str, float] = Field(default_factory=dict)
    price_per_kwh: Optional[float] = Field(None, ge=0, le=100)
    # Peak TFLOP/s per device and precision for MFU, over the table in harness/meters/flops.py:
    # peak_tflops = {cpu = {fp32 = 1.5}, t4 = {fp16 = 65}}
    peak_tflops: dict[str, dict[str, float]] = Field(default_factory=dict)

    @field_validator("add_devices", mode="before")
    @classmethod
    def _added(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or not all(isinstance(d, str) and d.strip() for d in v):
            raise ValueError('expected a list of device names, e.g. ["rtx a6000"]')
        out = tuple(device_key(d) for d in v)
        known = set(DEFAULT_DEVICE_HOUR_USD) | set(PEAK_TFLOPS)
        for name in out:
            if name in known:
                raise ValueError(f"{name!r} is already a known device; price it in device_hour_usd directly")
        return out

    @field_validator("peak_tflops", mode="before")
    @classmethod
    def _peaks(cls, v: Any, info: ValidationInfo) -> Any:
        if not isinstance(v, dict):
            raise ValueError("expected a table of device name = {precision = TFLOP/s}")
        known = sorted(set(DEFAULT_DEVICE_HOUR_USD) | set(PEAK_TFLOPS) | set(info.data.get("add_devices", ())))
        out: dict[str, dict[str, float]] = {}
        for key, per in v.items():
            if device_key(key) not in known:
                raise ValueError(f"unknown device name {key!r}; expected one of {', '.join(known)} "
                                 "(or name a new device in [cost] add_devices)")
            if not isinstance(per, dict) or not per:
                raise ValueError(f"{key}: expected a table of precision = TFLOP/s, e.g. {{fp32 = 19.5}}")
            for prec, tf in per.items():
                if prec.lower() not in PRECISIONS:
                    raise ValueError(f"{key}.{prec}: unknown precision; expected one of {', '.join(PRECISIONS)}")
                if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not math.isfinite(tf) or tf <= 0:
                    raise ValueError(f"{key}.{prec}: expected a peak in TFLOP/s (a number > 0), got {tf!r}")
            out[device_key(key)] = {p.lower(): float(t) for p, t in per.items()}
        return out

    @field_validator("device_hour_usd", mode="before")
    @classmethod
    def _prices(cls, v: Any, info: ValidationInfo) -> Any:
        if not isinstance(v, dict):
            raise ValueError("expected a table of device name = USD per hour")
        known = set(DEFAULT_DEVICE_HOUR_USD) | set(info.data.get("add_devices", ()))
        for key, price in v.items():
            if device_key(key) not in known:
                raise ValueError(f"unknown device name {key!r}; expected one of {', '.join(sorted(known))} "
                                 "(or name a new device in [cost] add_devices)")
            if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0:
                raise ValueError(f"{key}: expected a price in USD per hour (a number >= 0), got {price!r}")
        return {device_key(k): float(p) for k, p in v.items()}

    @field_validator("price_per_kwh", mode="before")
    @classmethod
    def _kwh(cls, v: Any) -> Any:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError("expected a price in USD per kWh (a number)")
        return v

    def prices(self) -> dict[str, float]:
        return {**DEFAULT_DEVICE_HOUR_USD, **self.device_hour_usd}


class SearchSection(Strict):
    max_batch: bool = False
    max_batch_limit: int = Field(4096, ge=1, le=MAX_BATCH)
    start_batch: int = Field(1, ge=1, le=MAX_BATCH)
    search_epochs: int = Field(1, ge=1, le=10)
    probe_steps: int = Field(3, ge=1, le=100_000)  # batches per pass of a probe: the peak comes in the first steps


class ReportSection(Strict):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)
    target_accuracy: float = Field(0.8, ge=0.0, le=1.0)
    extrapolate_rows: int = Field(56_000, ge=1, le=MAX_ROWS)
    # What a budget buys (docs/forecast.md): hours of one trial on this machine and/or dollars.
    budget_hours: Optional[float] = Field(None, gt=0.0, le=1e6)
    budget_usd: Optional[float] = Field(None, gt=0.0, le=1e9)


class GridFile(Strict):
    """The whole grid file after validation (sections as models, `[grid]` as lists per flat name)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)
    name: str
    repeats: int = Field(1, ge=1, le=1000)
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    limits: LimitsSection = LimitsSection()
    cost: CostSection = CostSection()
    search: SearchSection = SearchSection()
    report: ReportSection = ReportSection()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("expected a non-empty run name")
        if len(v) > 200:
            raise ValueError("expected a run name of at most 200 characters")
        return v


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
_UNION_TAGS = {"int", "str", "float", "bool", "none"}


def _where(loc: tuple[Any, ...]) -> str:
    """A pydantic error location without the union-branch tags it adds (`literal['all']`, `int`, ...)."""
    parts = []
    for p in loc:
        p = str(p)
        if p in _UNION_TAGS or "[" in p or p.startswith(("function-", "lax-", "json-")):
            continue
        parts.append(p)
    return ".".join(parts)


_EXPECTED = {
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "dict_type": "expected a table",
    "list_type": "expected a list",
    "greater_than": "expected a number greater than {gt}",
    "greater_than_equal": "expected a number of at least {ge}",
    "less_than": "expected a number less than {lt}",
    "less_than_equal": "expected a number of at most {le}",
    "literal_error": "expected {expected}",
    "string_too_long": "expected at most {max_length} characters",
}
_BOUNDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _expected(err: Any) -> str | None:
    """Pydantic's error in the grid file's words ("expected a whole number"), or None to keep its own."""
    kind = err.get("type")
    got = err.get("input")
    if kind in _BOUNDS and isinstance(got, float) and not math.isfinite(got):
        return "expected a finite number"
    template = _EXPECTED.get(kind)
    if template is None:
        return None
    try:
        return template.format(**(err.get("ctx") or {}))
    except (KeyError, IndexError, ValueError):
        return None


# Settings that are fractions from 0 to 1: a value from 1 to 100 was almost surely meant as a percentage.
FRACTIONS = frozenset({"target_accuracy", "val_fraction", "momentum"})


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = _where(tuple(err.get("loc", ())))
    msg = err.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    msg = _expected(err) or msg
    if err.get("type") == "extra_forbidden":
        msg = "unknown key" + _belongs_elsewhere(loc)
    elif err.get("type") == "missing":
        msg = "required key is missing"
    got = err.get("input")
    if err.get("type") not in {"extra_forbidden", "missing"} and not isinstance(got, dict) and "got" not in msg:
        shown = repr(got)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg = f"{msg}, got {shown}"
    field_name = loc.rpartition(".")[2]
    if (field_name in FRACTIONS and err.get("type") in _BOUNDS and isinstance(got, (int, float))
            and not isinstance(got, bool) and 1 < got <= 100):
        msg = f"{msg} (a fraction from 0 to 1, not a percentage: did you mean {got / 100:g}?)"
    return loc, msg


def _homes() -> dict[str, list[str]]:
    """key -> the places a grid file takes it ("[train]", "top level"), over every section and run-wide table."""
    homes: dict[str, list[str]] = {}
    for name, info in GridFile.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for key in model.model_fields:
                homes.setdefault(key, []).append(f"[{name}]")
        elif name != "grid":
            homes.setdefault(name, []).append("the top level (before any [section])")
    for flat, (section, field_name) in flat_names().items():
        if flat != field_name:  # `model`, `source`, `data_seed`: spelt so only in [grid]
            homes.setdefault(flat, []).append(f"[grid] (as [{section}] {field_name} otherwise)")
    return homes


def _belongs_elsewhere(loc: str) -> str:
    """For an unknown key: the section it belongs in, or the known key it is a typo of."""
    section, _, key = loc.rpartition(".")
    here = f"[{section}]" if section else "the top level (before any [section])"
    homes = [h for h in _homes().get(key, []) if h != here]
    if homes:
        return f"; {key} belongs in {' or '.join(homes)}"
    import difflib

    known = (list(SECTIONS[section][0].model_fields) if section in SECTIONS
             else list(GridFile.model_fields[section].annotation.model_fields)  # type: ignore[union-attr]
             if section in GridFile.model_fields and section != "grid" else list(GridFile.model_fields))
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f"; did you mean {near[0]}?" if near else ""


def _check_flat_value(path: str, flat: str, value: Any) -> Any:
    """Validate one setting value by building its section with just that field; returns what it means (the
    validated value: 1 for a rate is 1.0)."""
    section, field_name = flat_names()[flat]
    model = SECTIONS[section][0]
    try:
        return getattr(model.model_validate({field_name: value}), field_name)
    except ValidationError as exc:
        _, msg = _first_error(exc)
        raise ConfigError(f"{path}: [grid] {flat}: {msg}") from None


def parse_grid(text: str, path: str = "<grid>") -> GridFile:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if "name" not in raw:
        raise ConfigError(f"{path}: name: required key is missing (a run name, for example name = \"quick\")")
    grid = raw.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"{path}: [grid]: expected a table of setting = [values]")
    names = flat_names()
    for key, values in grid.items():
        if key not in names:
            near = ", ".join(sorted(names))
            homes = [h for h in _homes().get(key, []) if not h.startswith("[grid]")]
            if homes:
                raise ConfigError(f"{path}: [grid] {key}: not a setting that can be swept; {key} is set once for "
                                  f"the run in {' or '.join(homes)}")
            raise ConfigError(f"{path}: [grid] {key}: unknown setting; expected one of {near}")
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise ConfigError(f"{path}: [grid] {key}: empty list; give at least one value")
        if len(values) > 1000:
            raise ConfigError(f"{path}: [grid] {key}: {len(values)} values; expected at most 1000")
        seen: list[tuple[Any, Any]] = []  # (as written, as meant)
        for v in values:
            meant = _check_flat_value(path, key, v)
            for written, other in seen:  # compared by meaning: 1 and 1.0 are one learning rate
                if other == meant and type(other) is type(meant):
                    same = f"value {v!r} is given twice" if written == v and type(written) is type(v) else \
                        f"{written!r} and {v!r} are the same value"
                    raise ConfigError(f"{path}: [grid] {key}: {same}; each value makes its own trials")
            seen.append((v, meant))
        grid[key] = list(values)
    raw["grid"] = grid
    try:
        cfg = GridFile.model_validate(raw)
    except ValidationError as exc:
        loc, msg = _first_error(exc)
        loc = _section_loc(loc)
        raise ConfigError(f"{path}: {loc}: {msg}") from None
    for axis in REQUIRED_AXES:
        section, field_name = names[axis]
        if axis not in cfg.grid and getattr(getattr(cfg, section), field_name) is None:
            raise ConfigError(
                f"{path}: [grid] {axis}: required axis is missing (give a list, e.g. {axis} = {_example(axis)})"
            )
    _check_adapter(cfg, path)
    total = 1
    for values in cfg.grid.values():
        total *= len(values)
    total *= cfg.repeats
    if total > 100_000:
        raise ConfigError(f"{path}: [grid]: {total} trials; expected at most 100000")
    return cfg


LORA_SETTINGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")


def _check_adapter(cfg: GridFile, path: str) -> None:
    """lora_* settings need adapter = "lora" somewhere in the grid, and "lora" needs peft installed."""
    adapters = set(cfg.grid.get("adapter", [cfg.train.adapter]))
    if "lora" not in adapters:
        for key in LORA_SETTINGS:
            if key in cfg.grid or getattr(cfg.train, key) is not None:
                raise ConfigError(f'{path}: [train] {key}: set, but no trial has adapter = "lora"; '
                                  'expected adapter = "lora" in [train] or [grid]')
        return
    import importlib.util

    if importlib.util.find_spec("peft") is None:
        raise ConfigError(f'{path}: [train] adapter: "lora" needs the peft library, which is not installed '
                          "(pip install 'peft>=0.18')")


def _section_loc(loc: str) -> str:
    head, _, rest = loc.partition(".")
    if head in {"model", "data", "train", "limits", "cost", "search", "report", "grid"}:
        return f"[{head}] {rest}" if rest else f"[{head}]"
    return loc


def _example(axis: str) -> str:
    return {"dataset_size": "[200, 400]", "batch_size": "[8, 16]", "frozen_layers": '["all", 0]', "device": '["cpu"]'}[axis]


def load_grid(path: str | os.PathLike) -> tuple[GridFile, str]:
    """Read and validate a grid file; returns the config and the file's text (copied into the run)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such grid file")
    if not p.is_file():
        raise ConfigError(f"{p}: not a file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    if len(data) > 1_000_000:
        raise ConfigError(f"{p}: {len(data)} bytes; a grid file is expected to be under 1 MB")
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (some Windows editors write one) is not content
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{p}: line {line}: not UTF-8 text (byte {data[exc.start]:#04x}); expected a UTF-8 TOML file") from None
    return parse_grid(text, str(p)), text
