"""Energy in joules, measured or null: never an estimate passed off as a measurement.

- GPU: NVML's total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`, millijoules since the driver
  loaded; Volta and later) read at the start and the end; where the counter is not supported, power
  samples (`nvmlDeviceGetPowerUsage`, milliwatts) integrated with the trapezoid rule at the sampler's
  GPU period (50 ms). Either way it is the whole device's energy, every process on it included.
- CPU: RAPL package energy from `/sys/class/powercap/intel-rapl:N/energy_uj` (the top-level `package-N`
  zones; AMD's RAPL shows up there too on recent kernels), read every second so that a wraparound of the
  counter (at `max_energy_range_uj`) is seen and added back. It is the whole package's energy: every
  process on the CPU counts, DRAM does not. Since Linux 5.10 `energy_uj` is readable by root only.

Where a figure cannot be read it is null and `note()` says why.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any

RAPL_ROOT = "/sys/class/powercap"
_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")


def _read_int(path: str) -> int:
    with open(path, "rb") as f:
        return int(f.read().strip())


@dataclass
class RaplZone:
    path: str
    name: str
    max_range_uj: int | None
    last_uj: int
    total_uj: int = 0


class Rapl:
    """CPU package energy from RAPL's powercap counters, with wraparound handled."""

    def __init__(self, root: str = RAPL_ROOT):
        self.root = root
        self.zones: list[RaplZone] = []
        self.reason: str | None = None
        self.samples = 0

    def start(self) -> bool:
        if not os.path.isdir(self.root):
            self.reason = f"RAPL not readable ({self.root} absent)"
            return False
        try:
            entries = sorted(e for e in os.listdir(self.root) if _PACKAGE_ZONE.match(e))
        except OSError as exc:
            self.reason = f"RAPL not readable ({self.root}: {exc.strerror})"
            return False
        if not entries:
            self.reason = f"RAPL not readable (no intel-rapl:N package zone under {self.root})"
            return False
        for entry in entries:
            path = os.path.join(self.root, entry)
            try:
                name = open(os.path.join(path, "name"), encoding="utf-8").read().strip()
            except OSError:
                name = entry
            if not name.startswith("package"):
                continue
            try:
                value = _read_int(os.path.join(path, "energy_uj"))
            except PermissionError:
                self.reason = (f"RAPL not readable ({path}/energy_uj: permission denied; root only since Linux 5.10, "
                               "CVE-2020-8694)")
                self.zones = []
                return False
            except (OSError, ValueError) as exc:
                self.reason = f"RAPL not readable ({path}/energy_uj: {exc})"
                self.zones = []
                return False
            try:
                max_range = _read_int(os.path.join(path, "max_energy_range_uj"))
            except (OSError, ValueError):
                max_range = None
            self.zones.append(RaplZone(path, name, max_range, value))
        if not self.zones:
            self.reason = f"RAPL not readable (no package zone under {self.root})"
            return False
        return True

    def sample(self) -> None:
        if not self.zones:
            return
        for z in self.zones:
            try:
                now = _read_int(os.path.join(z.path, "energy_uj"))
            except (OSError, ValueError) as exc:
                self.reason = f"RAPL read failed mid-trial ({z.path}: {exc})"
                self.zones = []
                return
            delta = now - z.last_uj
            if delta < 0:  # the counter wrapped
                if z.max_range_uj is None:
                    self.reason = f"RAPL counter of {z.path} wrapped and max_energy_range_uj is unreadable"
                    self.zones = []
                    return
                delta += z.max_range_uj
            z.total_uj += delta
            z.last_uj = now
        self.samples += 1

    def joules(self) -> float | None:
        if not self.zones:
            return None
        return sum(z.total_uj for z in self.zones) / 1e6

    def describe(self) -> str:
        names = ", ".join(f"{os.path.basename(z.path)} {z.name}" for z in self.zones)
        return (f"RAPL package energy ({names}) read every second, wraparound added back; the whole package "
                "(every process on the CPU), DRAM excluded")


class GpuEnergy:
    """Whole-device GPU energy from NVML: the energy counter, else integrated power samples."""

    def __init__(self, handle: Any, reason: str | None):
        self.handle = handle
        self.reason = reason if handle is None else None
        self.method: str | None = None
        self._start_mj: int | None = None
        self._last_mj: int | None = None
        self._joules = 0.0
        self._last_power: tuple[float, float] | None = None  # (monotonic s, watts)
        self.samples = 0

    def start(self) -> None:
        if self.handle is None:
            return
        import pynvml

        try:
            self._start_mj = self._last_mj = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
            self.method = "counter"
            return
        except Exception as exc:
            counter_reason = str(exc) or type(exc).__name__
        try:
            watts = pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0
            self._last_power = (time.monotonic(), watts)
            self.method = "power"
        except Exception as exc:
            self.reason = (f"NVML has neither an energy counter ({counter_reason}) nor power readings "
                           f"({str(exc) or type(exc).__name__}) for this GPU")

    def sample(self) -> None:
        if self.method == "counter":
            import pynvml

            try:
                self._last_mj = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
                self.samples += 1
            except Exception:
                pass
        elif self.method == "power":
            import pynvml

            try:
                watts = pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0
            except Exception:
                return
            now = time.monotonic()
            t0, w0 = self._last_power  # type: ignore[misc]
            self._joules += (w0 + watts) / 2.0 * (now - t0)
            self._last_power = (now, watts)
            self.samples += 1

    def joules(self) -> float | None:
        if self.method == "counter" and self._start_mj is not None and self._last_mj is not None:
            return (self._last_mj - self._start_mj) / 1000.0
        if self.method == "power":
            return self._joules
        return None

    def describe(self, interval_s: float) -> str:
        if self.method == "counter":
            return "NVML total-energy counter (whole device, every process on it)"
        return (f"NVML power samples every {interval_s * 1000:g} ms integrated by the trapezoid rule (this GPU has "
                "no energy counter; whole device, every process on it)")


class EnergyMeter:
    """Both figures for one trial. `sample_cpu` every second and `sample_gpu` at the GPU period."""

    def __init__(self, device: str, gpu_handle: Any = None, gpu_reason: str | None = None, rapl_root: str = RAPL_ROOT,
                 gpu_interval_s: float = 0.05):
        self.device = device
        self.rapl = Rapl(rapl_root)
        self.uses_gpu = device.startswith("cuda")
        self.gpu = GpuEnergy(gpu_handle, gpu_reason) if self.uses_gpu else None
        self.gpu_interval_s = gpu_interval_s

    def start(self) -> None:
        self.rapl.start()
        if self.gpu is not None:
            self.gpu.start()

    def sample_cpu(self) -> None:
        self.rapl.sample()

    def sample_gpu(self) -> None:
        if self.gpu is not None:
            self.gpu.sample()

    def stop(self) -> None:
        self.sample_cpu()
        self.sample_gpu()

    def summary(self) -> dict[str, float | None]:
        cpu = self.rapl.joules()
        gpu = self.gpu.joules() if self.gpu is not None else None
        return {"cpu": None if cpu is None else round(cpu, 3), "gpu": None if gpu is None else round(gpu, 3)}

    def note(self) -> str:
        cpu = self.rapl.describe() if self.rapl.zones else self.rapl.reason or "RAPL not started"
        if self.gpu is None:
            gpu = "not used by this trial"
        elif self.gpu.method is not None:
            gpu = self.gpu.describe(self.gpu_interval_s)
        else:
            gpu = self.gpu.reason or "CUDA not available"
        return f"cpu: {cpu}; gpu: {gpu}"
