"""Wall time with `time.perf_counter`, CUDA synchronised before each reading so queued kernels count."""

from __future__ import annotations

import time


class Clock:
    def __init__(self, device: str = "cpu"):
        self.sync = None
        if device.startswith("cuda"):
            import torch

            if torch.cuda.is_available():
                dev = torch.device(device)
                self.sync = lambda: torch.cuda.synchronize(dev)

    def now(self) -> float:
        if self.sync is not None:
            self.sync()
        return time.perf_counter()
