"""GPU memory: PyTorch's allocator peaks (reset per trial) and the process's used memory from NVML.

`torch.cuda.max_memory_allocated` counts tensors; `max_memory_reserved` what the caching allocator holds;
NVML's per-process used memory (sampled every `interval_s`, 50 ms by default) also counts the CUDA context
and other libraries' workspaces, which is what decides whether a job fits on a smaller card.
"""

from __future__ import annotations

import os
import threading
from typing import Any

MiB = 1024 * 1024


class CudaMemory:
    def __init__(self, device: str, interval_s: float = 0.05):
        import torch

        self.torch = torch
        self.available = torch.cuda.is_available()
        self.device = torch.device(device) if self.available else None
        self.interval_s = interval_s
        self.peak_used: int | None = None
        self.total: int | None = None
        self.nvml_reason: str | None = None
        self._handle = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.available:
            return
        torch = self.torch
        torch.cuda.reset_peak_memory_stats(self.device)
        self.total = torch.cuda.get_device_properties(self.device).total_memory
        try:
            import pynvml

            pynvml.nvmlInit()
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible:
                ids = [x.strip() for x in visible.split(",")]
                if ids[index].isdigit():
                    index = int(ids[index])
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.peak_used = 0
        except Exception as exc:  # no NVML library, or no permission
            self.nvml_reason = f"NVML unavailable ({exc})"
            return
        self._thread = threading.Thread(target=self._run, name="gpu-memory-sampler", daemon=True)
        self._thread.start()

    def _used_by_this_process(self) -> int | None:
        import pynvml

        pid = os.getpid()
        try:
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except pynvml.NVMLError:
            return None
        for p in procs:
            if p.pid == pid and p.usedGpuMemory is not None:
                return int(p.usedGpuMemory)
        return 0

    def sample(self) -> None:
        if self._handle is None:
            return
        used = self._used_by_this_process()
        if used is not None and used > (self.peak_used or 0):
            self.peak_used = used

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self.sample()

    def summary(self) -> dict[str, Any]:
        if not self.available:
            return {}
        torch = self.torch
        self.sample()
        return {
            "cuda_peak_allocated_mib": round(torch.cuda.max_memory_allocated(self.device) / MiB, 1),
            "cuda_peak_reserved_mib": round(torch.cuda.max_memory_reserved(self.device) / MiB, 1),
            "gpu_peak_used_mib": None if self.peak_used is None else round(self.peak_used / MiB, 1),
            "gpu_total_mib": None if self.total is None else round(self.total / MiB, 1),
        }

    def note(self) -> str:
        if not self.available:
            return "gpu: CUDA not available"
        nvml = self.nvml_reason or f"NVML per-process used memory sampled every {self.interval_s * 1000:g} ms (includes the CUDA context)"
        return f"gpu: torch.cuda max_memory_allocated/reserved reset at trial start; {nvml}"
