"""Memory budgets that emulate smaller hardware on bigger hardware, applied inside the trial's child.

`[limits] cpu_memory`: RLIMIT_AS on the child, so an allocation past the budget fails in the child as a
MemoryError / allocator error, which the trial records as `oom`. `[limits] gpu_memory`: the caching
allocator's per-process fraction of the device, so CUDA raises OutOfMemoryError past the budget.
"""

from __future__ import annotations

import resource
from typing import Any


def apply_cpu_budget(limit_bytes: int | None) -> None:
    if not limit_bytes:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    new = int(limit_bytes) if hard == resource.RLIM_INFINITY else min(int(limit_bytes), hard)
    resource.setrlimit(resource.RLIMIT_AS, (new, hard))


def apply_gpu_budget(limit_bytes: int | None, device: str) -> None:
    if not limit_bytes or not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        return
    dev = torch.device(device)
    total = torch.cuda.get_device_properties(dev).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, int(limit_bytes) / total), dev)


def apply_budgets(trial: Any) -> None:
    apply_cpu_budget(trial.limits.get("cpu_memory"))
    apply_gpu_budget(trial.limits.get("gpu_memory"), trial.params["device"])
