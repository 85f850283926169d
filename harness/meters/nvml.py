"""NVML access shared by the GPU memory and energy meters: one init, the handle of the trial's device.

torch numbers devices after CUDA_VISIBLE_DEVICES; NVML numbers them all. The visible list may hold indices
or UUIDs ("GPU-..." or "MIG-..."), so a torch index is mapped through it before asking NVML for a handle.
"""

from __future__ import annotations

import os
from typing import Any

_initialised = False


def nvml() -> Any:
    """The pynvml module, initialised once (raises ImportError or pynvml.NVMLError)."""
    global _initialised
    import pynvml

    if not _initialised:
        pynvml.nvmlInit()
        _initialised = True
    return pynvml


def handle_for(torch_index: int) -> tuple[Any | None, str | None]:
    """(NVML handle, None) for a torch CUDA index, or (None, the reason there is none)."""
    try:
        pynvml = nvml()
    except ImportError:
        return None, "NVML unavailable (pynvml / nvidia-ml-py not installed)"
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, NoPermission
        return None, f"NVML unavailable ({exc})"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        if visible:
            ids = [x.strip() for x in visible.split(",") if x.strip()]
            if torch_index >= len(ids):
                return None, f"CUDA_VISIBLE_DEVICES={visible!r} has no entry {torch_index}"
            entry = ids[torch_index]
            if entry.isdigit():
                return pynvml.nvmlDeviceGetHandleByIndex(int(entry)), None
            return pynvml.nvmlDeviceGetHandleByUUID(entry), None
        return pynvml.nvmlDeviceGetHandleByIndex(torch_index), None
    except Exception as exc:
        return None, f"NVML has no handle for CUDA device {torch_index} ({exc})"
