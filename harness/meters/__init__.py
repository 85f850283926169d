"""Meters: context managers that measure a phase of a trial. They know nothing of training.

    meters = Meters(device)
    with meters:                      # starts the samplers, takes the baseline
        with meters.phase("load_model"):
            ...
        with meters.phase("epoch-1/train"):
            ...
    meters.phases["epoch-1/train"]    # seconds
    meters.memory()                   # the record's `memory` object
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

from .clock import Clock
from .cpu_memory import CpuMemorySampler
from .cuda_memory import CudaMemory

__all__ = ["Meters", "Clock", "CpuMemorySampler", "CudaMemory"]


class Meters:
    def __init__(self, device: str, cpu_interval_s: float = 0.01):
        self.device = device
        self.clock = Clock(device)
        self.cpu = CpuMemorySampler(interval_s=cpu_interval_s)
        self.cuda = CudaMemory(device) if device.startswith("cuda") else None
        self.phases: dict[str, float] = {}
        self.current_phase: str | None = None
        self._t0: float | None = None

    def __enter__(self) -> "Meters":
        self.cpu.start()
        if self.cuda is not None:
            self.cuda.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cpu.stop()
        if self.cuda is not None:
            self.cuda.stop()

    def mark_baseline(self) -> None:
        """Resident memory before the model loads: the trial's own increment is measured from here."""
        self.cpu.mark_baseline()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        previous = self.current_phase
        self.current_phase = name
        start = self.clock.now()
        try:
            yield
        finally:
            self.phases[name] = self.clock.now() - start
            self.current_phase = previous

    def elapsed(self) -> float:
        return 0.0 if self._t0 is None else time.perf_counter() - self._t0

    def memory(self) -> dict[str, Any]:
        out = self.cpu.summary()
        gpu = self.cuda.summary() if self.cuda is not None else {}
        out.update({
            "cuda_peak_allocated_mib": gpu.get("cuda_peak_allocated_mib"),
            "cuda_peak_reserved_mib": gpu.get("cuda_peak_reserved_mib"),
            "gpu_peak_used_mib": gpu.get("gpu_peak_used_mib"),
            "gpu_total_mib": gpu.get("gpu_total_mib"),
        })
        return out

    def memory_note(self) -> str:
        notes = [self.cpu.note()]
        notes.append(self.cuda.note() if self.cuda is not None else "gpu: not used by this trial")
        return "; ".join(notes)
