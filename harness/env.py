"""What the run ran on: versions, CPU, RAM, GPUs and driver, the project's git commit."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def gpus() -> dict[str, Any]:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        return {"gpus": [], "gpu_driver": None, "gpu_note": f"NVML unavailable ({type(exc).__name__})"}
    out = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        name = pynvml.nvmlDeviceGetName(h)
        out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_total_mib": round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**20, 1)})
    driver = pynvml.nvmlSystemGetDriverVersion()
    return {"gpus": out, "gpu_driver": driver.decode() if isinstance(driver, bytes) else driver}


def collect() -> dict[str, Any]:
    from .core.trial import cpu_name

    info: dict[str, Any] = {
        "created_at": datetime.now(timezone.utc).isoformat(),
        "host": socket.gethostname(),
        "nodes": [socket.gethostname()],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "harness": _version("harness"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "datasets": _version("datasets"),
        "cpu_model": cpu_name(),
        "cpu_count": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "ram_total_mib": round(psutil.virtual_memory().total / 2**20, 1),
        "git_commit": _git_commit(),
    }
    info.update(gpus())
    return info
