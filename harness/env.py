"""What the run ran on: versions, CPU, RAM, GPUs and driver, the project's git commit."""

from __future__ import annotations

import os
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


def _git(*args: str) -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info() -> dict[str, Any]:
    """The project's commit (with "-dirty" where tracked files differ from it), whether it is dirty, the branch."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None, "git_branch": None}
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {"git_commit": commit + ("-dirty" if dirty else ""), "git_dirty": dirty,
            "git_branch": _git("rev-parse", "--abbrev-ref", "HEAD")}


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


# Environment variables that change a trial's speed or memory without changing its settings: threads, the C
# allocator (glibc tunables, a preloaded jemalloc/tcmalloc), CUDA's allocator and visible devices. A run
# that differs only in these differs in its figures (docs/performance.md measures MALLOC_* on the cache).
PERF_ENV_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "PYTORCH_",
                     "TORCH_", "CUDA_VISIBLE_DEVICES", "CUBLAS_", "NVIDIA_TF32", "TOKENIZERS_PARALLELISM")


def perf_env() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(PERF_ENV_PREFIXES)}


def offline() -> None:
    """No hub at trial time (the trial's child, preflight): models and data come from local files or package
    folders, and nothing prints progress bars or warnings over the run's own lines."""
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(key, value)


def cpu_name() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return name


def collect() -> dict[str, Any]:
    info: dict[str, Any] = {
        "created_at": datetime.now(timezone.utc).isoformat(),
        "host": socket.gethostname(),
        "nodes": [socket.gethostname()],
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "python_compiler": platform.python_compiler(),
        "python_build": list(platform.python_build()),
        "platform": platform.platform(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "bits": platform.architecture()[0],
        "harness": _version("harness"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "datasets": _version("datasets"),
        "cpu_model": cpu_name(),
        "cpu_count": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "ram_total_mib": round(psutil.virtual_memory().total / 2**20, 1),
        **git_info(),
        "env_vars": perf_env(),
    }
    info.update(gpus())
    return info
