"""Validated config -> trials: the cartesian product of the `[grid]` axes, each with a stable id."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import SECTIONS, STRATEGIES, GridFile


@dataclass(frozen=True)
class Trial:
    """One trial as plain data: what the child process (or Ray task) gets, and all it gets."""

    trial_id: str
    index: int
    repeat: int
    params: dict[str, Any]
    run_name: str
    limits: dict[str, Any] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    price_per_kwh: float | None = None
    peak_tflops: dict[str, dict[str, float]] = field(default_factory=dict)  # [cost] peak_tflops, for MFU
    kind: str = "train"  # "train", or "probe" for a largest-batch search step
    # A relative [data] source resolved against the grid file's folder (core/data.py resolve_data_path);
    # None: read params["source"] as written. Not in params, so a trial's id does not depend on where it runs.
    data_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Trial":
        return cls(**d)

    def label(self) -> str:
        p = self.params
        parts = [f"n={p['dataset_size']}", f"bs={p['batch_size']}", f"frozen={p['frozen_layers']}", p["device"]]
        parts.append(p["strategy"])
        if p.get("adapter"):
            parts.append(f"{p['adapter']} r={p.get('lora_r')}")
        if self.repeat:
            parts.append(f"rep={self.repeat}")
        return " ".join(str(x) for x in parts)


def base_params(cfg: GridFile) -> dict[str, Any]:
    """Every setting under its flat name, from the sections (grid values not applied yet)."""
    out: dict[str, Any] = {}
    for section, (_, renames) in SECTIONS.items():
        values = getattr(cfg, section).model_dump()
        for name, value in values.items():
            out[renames.get(name, name)] = value
    return out


def resolve(params: dict[str, Any], repeat: int = 0) -> dict[str, Any]:
    """Fill what a strategy implies and what defaults from other settings; the result is what runs."""
    p = dict(params)
    for switch, value in STRATEGIES[p["strategy"]].items():
        if p.get(switch) is None:
            p[switch] = value
    if p.get("eval_batch_size") is None:
        p["eval_batch_size"] = p["batch_size"]
    for optional in ("head_learning_rate", "revision", "sample", "val_rows"):
        if p.get(optional) is None:
            p.pop(optional, None)  # unset: absent, so that earlier runs keep their trial ids
    resolve_adapter(p)
    base_seed = p["data_seed"] if p.get("seed") is None else p["seed"]
    p["seed"] = int(base_seed) + repeat
    return p


# peft's LoraConfig defaults (0.18-0.21; tests/test_adapters.py checks them against the installed peft).
LORA_DEFAULTS = {"lora_r": 8, "lora_alpha": 8.0, "lora_dropout": 0.0}


def resolve_adapter(p: dict[str, Any]) -> None:
    """No adapter: the adapter settings are absent (earlier runs keep their trial ids, and lora_* swept
    beside adapter = "none" give one trial, not copies); so with frozen_layers = "all", where no block is
    left to adapt. LoRA: peft's defaults filled in; lora_targets
    stays absent when unset (the family's default is resolved, and recorded, when the model is loaded)."""
    if p.get("adapter") in (None, "none") or p.get("frozen_layers") == "all":
        # "all" leaves no block for adapters: the trial is the head-only one, run once
        for key in ("adapter", *LORA_DEFAULTS, "lora_targets"):
            p.pop(key, None)
        return
    for key, value in LORA_DEFAULTS.items():
        if p.get(key) is None:
            p[key] = value
    if p.get("lora_targets") is None:
        p.pop("lora_targets", None)


def has_adapter(p: dict[str, Any]) -> bool:
    """Whether a trial trains low-rank adapters (without, `resolve_adapter` leaves the settings absent)."""
    return p.get("adapter") not in (None, "none")


def trial_id_of(params: dict[str, Any], repeat: int) -> str:
    blob = json.dumps({"params": params, "repeat": repeat}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def expand(cfg: GridFile) -> list[Trial]:
    base = base_params(cfg)
    axes = list(cfg.grid.items())
    names = [k for k, _ in axes]
    limits = cfg.limits.model_dump()
    limits = {k: (int(v) if k.endswith("memory") and v is not None else v) for k, v in limits.items()}
    trials: list[Trial] = []
    seen: set[str] = set()
    for combo in itertools.product(*[values for _, values in axes]):
        params = {**base, **dict(zip(names, combo))}
        for repeat in range(cfg.repeats):
            resolved = resolve(params, repeat)
            trial_id = trial_id_of(resolved, repeat)
            if trial_id in seen:  # lora_* swept beside adapter = "none": the same trial again
                continue
            seen.add(trial_id)
            trials.append(
                Trial(
                    trial_id=trial_id,
                    index=len(trials),
                    repeat=repeat,
                    params=resolved,
                    run_name=cfg.name,
                    limits=limits,
                    prices=cfg.cost.prices(),
                    price_per_kwh=cfg.cost.price_per_kwh,
                    peak_tflops=cfg.cost.peak_tflops,
                )
            )
    return trials
