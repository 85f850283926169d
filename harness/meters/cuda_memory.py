"""GPU memory: PyTorch's allocator peaks (reset per trial) and the process's used memory from NVML.

`torch.cuda.max_memory_allocated` counts tensors; `max_memory_reserved` what the caching allocator holds;
NVML's per-process used memory (sampled every `interval_s`, 50 ms by default, i.e. 20 Hz, by the meters'
sampler thread) also counts the CUDA context and other libraries' workspaces (cuBLAS, cuDNN), which is what
decides whether a job fits on a smaller card.

Inside a container NVML may list processes by host PIDs that do not match ours. Then the figure falls back
to the device's used memory minus what was used when the meters started, and the note says so (other
processes on the same GPU would be counted, and a CUDA context created before the meters started would not).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..record import MiB
from .nvml import handle_for



class CudaMemory:
    def __init__(self, device: str, interval_s: float = 0.05):
        import torch

        self.torch = torch
        self.available = device.startswith("cuda") and torch.cuda.is_available()
        self.device = torch.device(device) if self.available else None
        self.interval_s = interval_s
        self.peak_used: int | None = None
        self.total: int | None = None
        self.nvml_reason: str | None = None
        self.handle: Any = None
        self.samples = 0
        self._device_used_before: int | None = None
        self._pid_visible: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, thread: bool = False) -> None:
        """Reset the allocator's peaks and open NVML. Sampling is driven by the caller (the meters' thread)
        unless `thread` is set."""
        if not self.available:
            return
        torch = self.torch
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.handle, self.nvml_reason = handle_for(index)
        if self.handle is not None:
            # Only needed where NVML does not list our PID: the device's used memory at the start.
            self._device_used_before = self._device_used()
        torch.cuda.reset_peak_memory_stats(self.device)
        self.total = torch.cuda.get_device_properties(self.device).total_memory
        if self.handle is not None:
            self.peak_used = 0
            if thread:
                self._thread = threading.Thread(target=self._run, name="gpu-memory-sampler", daemon=True)
                self._thread.start()

    def _device_used(self) -> int | None:
        import pynvml

        try:
            return int(pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)
        except Exception:
            return None

    def _used_by_this_process(self) -> int | None:
        import pynvml

        pid = os.getpid()
        procs = None
        for fn in ("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses"):
            if hasattr(pynvml, fn):
                try:
                    procs = getattr(pynvml, fn)(self.handle)
                    break
                except Exception:
                    continue
        if procs is not None:
            for p in procs:
                if p.pid == pid:
                    self._pid_visible = True
                    used = getattr(p, "usedGpuMemory", None)
                    return int(used) if used is not None else None
        if self._pid_visible:
            return None  # we were listed before: a transient miss, not a reason to switch figures
        # Our PID is not listed (PID namespace) or the list is unsupported: device-wide increment.
        self._pid_visible = False
        used = self._device_used()
        if used is None or self._device_used_before is None:
            return None
        return max(0, used - self._device_used_before)

    def sample(self) -> None:
        if self.handle is None:
            return
        used = self._used_by_this_process()
        self.samples += 1
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
        if self.handle is None:
            nvml = f"gpu_peak_used_mib: {self.nvml_reason}"
        elif self._pid_visible is False:
            nvml = (f"gpu_peak_used_mib: this PID is not in NVML's process list (PID namespace), so it is the "
                    f"device's used memory minus the {(self._device_used_before or 0) / MiB:.0f} MiB used when the meters "
                    f"started, sampled every {self.interval_s * 1000:g} ms (other processes on the GPU count)")
        else:
            nvml = (f"gpu_peak_used_mib: NVML per-process used memory sampled every {self.interval_s * 1000:g} ms "
                    f"({self.samples} samples; includes the CUDA context)")
        return f"gpu: torch.cuda max_memory_allocated/reserved reset at trial start; {nvml}"
