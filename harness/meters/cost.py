"""Cost of a trial in USD: the device's price per hour x the trial's wall time, plus energy x price per kWh.

The device is named by a key of the price table: "cpu" for a CPU trial; for a GPU the key that appears in
the device's name as a word of its own, case-insensitively ("Tesla T4" -> t4, "NVIDIA H100 80GB HBM3" ->
h100, "NVIDIA A100-SXM4-40GB" -> a100; "NVIDIA L40S" is not an L4). Where several keys match, the longest
wins ("h100 pcie" over "h100"). A GPU that matches no key has no cost (null) and `cost_note` says why.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

J_PER_KWH = 3.6e6


def _key_pattern(key: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in re.split(r"[\s_-]+", key.strip().lower()) if w]
    return re.compile(r"(?<![a-z0-9])" + r"[\s_-]*".join(words) + r"(?![a-z0-9])")


def match_device(device_name: str | None, device: str, keys: Iterable[str]) -> str | None:
    """The table key for a trial's device, or None. CPU trials are "cpu" whatever the processor."""
    keys = list(keys)
    lower = {k.lower(): k for k in keys}
    if not device.startswith("cuda"):
        return lower.get("cpu")
    if not device_name:
        return None
    name = device_name.lower()
    hits = [k for k in keys if k.lower() != "cpu" and _key_pattern(k).search(name)]
    return max(hits, key=lambda k: (len(k), k)) if hits else None


def trial_cost(device_name: str | None, device: str, seconds: float | None, prices: Mapping[str, float],
               price_per_kwh: float | None = None, energy_j: Mapping[str, float | None] | None = None
               ) -> tuple[float | None, str]:
    """(cost_usd or None, cost_note)."""
    if seconds is None:
        return None, "no wall time measured"
    key = match_device(device_name, device, prices)
    if key is None and device.startswith("cuda") and not device_name:
        return None, "the GPU's name is not known (the trial ended before it was read), so no price applies"
    if key is None:
        what = "CPU" if not device.startswith("cuda") else f"GPU {device_name!r}"
        return None, (f"no device-hour price for {what}: its name matches none of {', '.join(sorted(prices))} "
                      "(name it in [cost] add_devices and price it in [cost] device_hour_usd)")
    per_hour = float(prices[key])
    cost = per_hour * seconds / 3600.0
    note = f"{key} at {per_hour:g} USD per device-hour x {seconds:.1f} s"
    if price_per_kwh is not None:
        energy = energy_j or {}
        measured = {k: v for k, v in energy.items() if v is not None}
        if measured:
            joules = sum(measured.values())
            cost += joules / J_PER_KWH * price_per_kwh
            note += (f" + {joules:.0f} J measured ({' + '.join(sorted(measured))}) x {price_per_kwh:g} USD per kWh")
        else:
            note += f"; price_per_kwh {price_per_kwh:g} not applied: no energy was measured"
    return round(cost, 8), note


def annotate_cost(rec: Any, trial: Any) -> None:
    """Set `cost_usd` and `cost_note` of a record (a `record.TrialRecord`, child or parent side) from what
    it holds so far."""
    device = str(rec.params.get("device") or "cpu")
    rec.cost_usd, rec.cost_note = trial_cost(rec.device_name, device, rec.seconds_total, trial.prices or {},
                                             trial.price_per_kwh, rec.energy_j.model_dump())
