"""Meters: context managers that measure a phase of a trial. They know nothing of training.

    meters = Meters(device, heartbeat=callback)   # callback(dict) about every 0.5 s, and at once when
    with meters:                                  #   the memory peak grows by 5 %
        with meters.phase("load_model"):
            ...
        with meters.phase("epoch-1/train"):
            ...
    meters.phases["epoch-1/train"]    # seconds (perf_counter, CUDA synchronised)
    meters.memory()                   # the record's `memory` object
    meters.energy()                   # the record's `energy_j` object

One sampler thread reads the process tree's RSS every `cpu_interval_s` (20 ms), NVML every
`gpu_interval_s` (50 ms: memory, and power where there is no energy counter) and RAPL every second. A
second thread sends heartbeats, so that a slow receiver never delays sampling. See docs/meters.md.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from .clock import Clock
from .cpu_memory import CpuMemorySampler, close_quietly
from .cuda_memory import CudaMemory
from .energy import RAPL_ROOT, EnergyMeter

__all__ = ["Meters", "Clock", "CpuMemorySampler", "CudaMemory", "EnergyMeter"]

Heartbeat = Callable[[dict[str, Any]], None]


class Meters:
    def __init__(self, device: str, cpu_interval_s: float = 0.02, gpu_interval_s: float = 0.05,
                 rapl_interval_s: float = 1.0, heartbeat: Heartbeat | None = None, heartbeat_s: float = 0.5,
                 rapl_root: str = RAPL_ROOT, rss_observers: tuple[Callable[[int], Any], ...] = ()):
        self.device = device
        self.clock = Clock(device)
        self.cpu = CpuMemorySampler(interval_s=cpu_interval_s, observers=rss_observers)
        self.cuda = CudaMemory(device, interval_s=gpu_interval_s) if device.startswith("cuda") else None
        self.rapl_root = rapl_root
        self.energy_meter: EnergyMeter | None = None
        self.cpu_interval_s, self.gpu_interval_s, self.rapl_interval_s = cpu_interval_s, gpu_interval_s, rapl_interval_s
        self.heartbeat, self.heartbeat_s = heartbeat, heartbeat_s
        self.heartbeats = 0
        self.phases: dict[str, float] = {}
        self.current_phase: str | None = None
        self._t0: float | None = None
        self._stop = threading.Event()
        self._beat = threading.Event()
        self._threads: list[threading.Thread] = []
        self._tids: list[int] = []
        self._own_cpu_s = 0.0  # CPU time of finished sampler threads
        self._grew = False  # the peak grew 5 %: beat at the next sample
        self._outbox: dict[str, Any] | None = None  # a heartbeat built by the sampler, for the sending thread
        self._notes: dict[str, str] | None = None  # the heartbeat's notes, rebuilt every 5 s
        self._notes_at = 0.0
        self._schedstat_fds: dict[int, int] = {}

    # -- lifetime ----------------------------------------------------------------------------------------
    def __enter__(self) -> "Meters":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        self.cpu.start(thread=False)
        handle, reason = None, None
        if self.cuda is not None:
            self.cuda.start(thread=False)
            handle, reason = self.cuda.handle, self.cuda.nvml_reason
        self.energy_meter = EnergyMeter(self.device, handle, reason, self.rapl_root, self.gpu_interval_s)
        self.energy_meter.start()
        self._t0 = time.perf_counter()
        self._stop.clear()
        self._threads = [threading.Thread(target=self._sample_loop, name="meters-sampler", daemon=True)]
        if self.heartbeat is not None:
            self.cpu.on_growth = self._on_growth
            self._threads.append(threading.Thread(target=self._heartbeat_loop, name="meters-heartbeat", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        running = self.own_cpu_seconds()
        self._stop.set()
        self._beat.set()
        for t in self._threads:
            t.join(timeout=2.0)
        self._threads = []
        self._tids = []
        self._close_schedstat()
        if running is not None:
            self._own_cpu_s = running
        self.cpu.stop()
        if self.cuda is not None:
            self.cuda.stop()
        if self.energy_meter is not None:
            self.energy_meter.stop()

    def own_cpu_seconds(self) -> float | None:
        """CPU time the meters' own threads have used (Linux schedstat; None elsewhere): their cost. Each
        thread's schedstat stays open and is read again with pread, as the RSS is (an open costs more)."""
        total = self._own_cpu_s
        for tid in list(self._tids):
            try:
                fd = self._schedstat_fds.get(tid)
                if fd is None:
                    fd = self._schedstat_fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
                total += int(os.pread(fd, 128, 0).split()[0]) * 1e-9
            except (OSError, ValueError, IndexError):
                if not os.path.exists("/proc/self/task"):
                    return None
        return total

    def _close_schedstat(self) -> None:
        for fd in self._schedstat_fds.values():
            close_quietly(fd)
        self._schedstat_fds = {}

    def _sample_loop(self) -> None:
        self._tids.append(threading.get_native_id())
        now = time.monotonic()
        next_gpu, next_rapl = now + self.gpu_interval_s, now + self.rapl_interval_s
        next_beat, last_beat = now + self.heartbeat_s, -1e9
        while not self._stop.is_set():
            time.sleep(self.cpu_interval_s)  # cheaper to wake from than Event.wait(timeout)
            if self._stop.is_set():
                return
            try:
                self.cpu.sample()
                now = time.monotonic()
                if now >= next_gpu:
                    next_gpu = now + self.gpu_interval_s
                    if self.cuda is not None:
                        self.cuda.sample()
                    if self.energy_meter is not None:
                        self.energy_meter.sample_gpu()
                if now >= next_rapl:
                    next_rapl = now + self.rapl_interval_s
                    if self.energy_meter is not None:
                        self.energy_meter.sample_cpu()
                # The heartbeat's payload is built here, by the thread that is awake every 20 ms: on a virtual
                # machine a thread's first milliseconds after a long sleep run many times slower (a 0.5 s sleep
                # made the same Python work 18x slower on the 2-core CI machine), so the sending thread, which
                # sleeps between beats, only sends. At most 20 beats a second, growth included.
                if self.heartbeat is not None and (now >= next_beat or self._grew) and now - last_beat >= 0.05:
                    self._grew = False
                    next_beat, last_beat = now + self.heartbeat_s, now
                    self._outbox = self.heartbeat_payload()
                    self._beat.set()
            except Exception:  # a meter must never take the trial down
                pass

    def _heartbeat_loop(self) -> None:
        """Sends what the sampler built, so that a slow receiver never delays sampling."""
        self._tids.append(threading.get_native_id())
        while not self._stop.is_set():
            self._beat.wait()
            self._beat.clear()
            payload, self._outbox = self._outbox, None
            if self._stop.is_set() or payload is None:
                continue
            try:
                self.heartbeat(payload)  # type: ignore[misc]
                self.heartbeats += 1
            except Exception:
                pass

    def _on_growth(self, peak: int) -> None:
        self._grew = True

    def heartbeat_payload(self) -> dict[str, Any]:
        # The notes travel too: a record the parent completes (the child killed) says how its figures were taken.
        # They change slowly (a sample count, the meters' own CPU), so they are rebuilt every 5 s, not every
        # beat; the memory figures are the sampler's last readings, not fresh ones (a beat's cost is its code).
        now = time.monotonic()
        if self._notes is None or now - self._notes_at >= 5.0:
            self._notes, self._notes_at = {"memory_note": self.memory_note(), "energy_note": self.energy_note()}, now
        return {"memory": self.memory(fresh=False), "energy_j": self.energy(), **self._notes}

    # -- phases ------------------------------------------------------------------------------------------
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

    # -- figures -----------------------------------------------------------------------------------------
    def memory(self, fresh: bool = True) -> dict[str, Any]:
        out = self.cpu.summary(fresh)
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
        own, elapsed = self.own_cpu_seconds(), self.elapsed()
        if own is not None and elapsed > 0:
            notes.append(f"the meters' threads used {own:.3f} s of CPU in {elapsed:.1f} s ({own / elapsed:.2%})")
        return "; ".join(notes)

    def energy(self) -> dict[str, float | None]:
        if self.energy_meter is None:
            return {"cpu": None, "gpu": None}
        return self.energy_meter.summary()

    def energy_note(self) -> str:
        if self.energy_meter is None:
            return "meters not started"
        return self.energy_meter.note()
