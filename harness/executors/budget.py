"""Memory budgets that emulate smaller hardware on bigger hardware, enforced on the trial's child process.

`[limits] cpu_memory` is enforced by one of (`[limits] cpu_memory_method`, default "auto"):

- "cgroup": the parent makes a memory cgroup for the child, nested in its own (v2 `memory.max` with
  `memory.swap.max = 0` and `memory.oom.group = 1`; v1 `memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes`
  where swap accounting exists), and the child joins it first thing. The kernel charges it the pages the
  process tree (workers too) faults in from then on: its anonymous memory and the page cache it reads
  (reclaimed first under pressure); shared-library pages already resident stay charged to whoever loaded
  them first, so the charge is below the tree's RSS (by about 180 MiB with torch on a 2-core test machine,
  cgroup v1, docs/meters.md). Past the limit the kernel's OOM killer sends SIGKILL: the trial is recorded
  as `oom`, and the parent confirms it from the cgroup's `oom_kill` counter. The cgroup is removed when the
  child is gone.
- "watchdog": the tree's RSS, read every 20 ms (each reading of the meters' sampler while it runs; a thread
  of its own, waking every 10 ms, reads the tree when no reading came for 20 ms), is checked against the
  budget; past it the child reports to the parent and SIGKILLs the tree (the same outcome, `oom`). The
  overshoot is what the tree grows between two readings: 20 ms apart as a rule, but up to 155 ms apart was
  measured while a Python-heavy loop held the GIL (docs/meters.md).
- "rlimit": RLIMIT_AS. It limits ADDRESS SPACE, not memory: a trial's child maps about 1.9 GiB more than it
  touches (torch, OpenMP, BLAS), so a budget near the resident size breaks the trial before it trains (an
  ImportError at 900 MiB and 2 GiB), and loading SciPy's OpenBLAS after torch under RLIMIT_AS = 700 or
  800 MiB spins (a core busy, mostly in the kernel) instead of failing (docs/meters.md). For comparison only.

"auto" runs the watchdog, with the cgroup as a kernel backstop where one can be made (measured in docs/meters.md).
`[limits] gpu_memory`: `torch.cuda.set_per_process_memory_fraction`, so PyTorch's caching allocator raises
OutOfMemoryError past the budget (the CUDA context and cuBLAS workspaces are outside it).
"""

from __future__ import annotations

import os
import resource
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..meters.cpu_memory import TreeRss, descendants
from ..record import BudgetExceededEvent, MiB

METHODS = ("auto", "cgroup", "watchdog", "rlimit")


class BudgetError(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# cgroups
# --------------------------------------------------------------------------------------------------
def _mounts() -> list[tuple[str, str, str, str]]:
    """(root, mount point, fs type, super options) of cgroup mounts, from /proc/self/mountinfo."""
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if len(f) >= 5 and len(r) >= 3 and r[0] in ("cgroup", "cgroup2"):
            out.append((f[3], f[4], r[0], r[2]))
    return out


def _cgroup_entries() -> list[list[str]] | None:
    """/proc/self/cgroup as (hierarchy id, controllers, path) entries; None where it cannot be read."""
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    return [line.split(":", 2) for line in text.splitlines() if line.count(":") >= 2]


def _v2_entry(entries: list[list[str]]) -> list[str] | None:
    """The cgroup v2 entry of /proc/self/cgroup (hierarchy 0, no controllers listed)."""
    return next((e for e in entries if e[0] == "0" and e[1] == ""), None)


def _resolve(rel: str, root: str, point: str) -> Path:
    """A cgroup path from /proc/self/cgroup as a folder under its mount (a container's mount root is cut)."""
    if root != "/" and rel.startswith(root):
        rel = rel[len(root):]
    return Path(point) / rel.lstrip("/")


def cgroup_v2_folder() -> Path | None:
    """This process's cgroup v2 folder, resolved through /proc/self/mountinfo (wherever cgroup2 is mounted);
    None where there is none (cgroup v1 only, or not Linux)."""
    entries = _cgroup_entries()
    if entries is None:
        return None
    v2 = _v2_entry(entries)
    if v2 is None:
        return None
    return next((_resolve(v2[2], root, point) for root, point, fstype, _ in _mounts() if fstype == "cgroup2"), None)


def cgroup_room() -> int | None:
    """Bytes this process's cgroup (v2) may still take: memory.max less memory.current; None where no limit
    is set or none could be read."""
    folder = cgroup_v2_folder()
    if folder is None:
        return None
    try:
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((folder / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def find_cgroup() -> tuple[str, Path]:
    """(version "v1"|"v2", this process's memory cgroup folder), where children can be made with a memory
    limit; raises BudgetError with the reason otherwise."""
    entries = _cgroup_entries()
    if entries is None:
        raise BudgetError("no /proc/self/cgroup (not Linux)")
    mounts = _mounts()
    reasons = []
    v1 = next((e for e in entries if "memory" in e[1].split(",")), None)
    if v1 is not None:
        for root, point, fstype, opts in mounts:
            if fstype == "cgroup" and "memory" in opts.split(","):
                folder = _resolve(v1[2], root, point)
                if (folder / "memory.limit_in_bytes").exists() and os.access(folder, os.W_OK):
                    return "v1", folder
                reasons.append(f"cgroup v1 memory folder {folder} is not writable")
                break
    v2 = _v2_entry(entries)
    if v2 is not None:
        for root, point, fstype, _ in mounts:
            if fstype == "cgroup2":
                folder = _resolve(v2[2], root, point)
                try:
                    controllers = (folder / "cgroup.controllers").read_text().split()
                except OSError:
                    controllers = []
                if "memory" not in controllers:
                    reasons.append(f"cgroup v2 at {folder} has no memory controller")
                    continue
                if not os.access(folder, os.W_OK):
                    reasons.append(f"cgroup v2 folder {folder} is not writable")
                    continue
                sub = (folder / "cgroup.subtree_control").read_text().split()
                if "memory" not in sub:
                    try:
                        (folder / "cgroup.subtree_control").write_text("+memory")
                    except OSError as exc:
                        reasons.append(f"cgroup v2: cannot enable memory for children of {folder} ({exc.strerror}; "
                                       "a cgroup with processes in it cannot delegate: run under a delegated cgroup)")
                        continue
                return "v2", folder
    if not reasons:
        reasons.append("no memory cgroup found")
    raise BudgetError("; ".join(reasons))


class CgroupLimit:
    """A memory cgroup for one child: made by the parent, joined by the child, removed by the parent."""

    def __init__(self, version: str, path: Path, limit: int):
        self.version, self.path, self.limit = version, Path(path), int(limit)

    @classmethod
    def create(cls, limit_bytes: int, name: str) -> "CgroupLimit":
        version, parent = find_cgroup()
        path = parent / name
        try:
            path.mkdir()
        except OSError as exc:
            raise BudgetError(f"cannot make cgroup {path} ({exc.strerror})") from None
        cg = cls(version, path, limit_bytes)
        try:
            if version == "v2":
                (path / "memory.max").write_text(str(cg.limit))
                for knob, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                    if (path / knob).exists():
                        (path / knob).write_text(value)
            else:
                (path / "memory.limit_in_bytes").write_text(str(cg.limit))
                try:  # what the child touched before joining moves with it (v1 only; v2 never moves charges)
                    (path / "memory.move_charge_at_immigrate").write_text("3")
                except OSError:
                    pass
                if (path / "memory.memsw.limit_in_bytes").exists():
                    (path / "memory.memsw.limit_in_bytes").write_text(str(cg.limit))
        except OSError as exc:
            cg.remove()
            raise BudgetError(f"cannot set the memory limit of cgroup {path} ({exc.strerror})") from None
        return cg

    def join(self, pid: int | None = None) -> None:
        (self.path / "cgroup.procs").write_text(str(pid or os.getpid()))

    def describe(self) -> str:
        knob = "memory.max" if self.version == "v2" else "memory.limit_in_bytes"
        return f"cgroup {self.version} {knob} = {self.limit / MiB:.0f} MiB (kernel OOM killer, whole process tree)"

    def oom_kills(self) -> int | None:
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            return None
        return None

    def peak_bytes(self) -> int | None:
        name = "memory.peak" if self.version == "v2" else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def remove(self, wait_s: float = 5.0) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)


# --------------------------------------------------------------------------------------------------
# The watchdog
# --------------------------------------------------------------------------------------------------
class RssWatchdog:
    """SIGKILLs this process tree when its RSS passes `limit`, after telling `report` (the parent).

    While the meters' sampler runs it hands every reading to `observe` (the trial passes it to the meters as
    an RSS observer), so the tree is not read twice; the watchdog's own thread reads it only when no reading
    came for two periods (before the meters start, after they stop)."""

    def __init__(self, limit: int, report: Callable[[dict[str, Any]], None] | None = None, interval_s: float = 0.01,
                 kill: Callable[[list[int]], None] | None = None):
        self.limit = int(limit)
        self.report = report
        self.interval_s = interval_s
        self.tree = TreeRss(os.getpid())
        self.kill = kill or _kill_tree
        self.peak = 0
        self.fired = False
        self.last_observed = -1e9
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-budget-watchdog", daemon=True)

    def start(self) -> "RssWatchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)

    def observe(self, rss: int) -> bool:
        """One reading of the tree's RSS (from the meters' sampler, or from `check`)."""
        self.last_observed = time.monotonic()
        with self._lock:
            self.peak = max(self.peak, rss)
            if rss <= self.limit or self.fired:
                return False
            self.fired = True
        event = BudgetExceededEvent(rss_bytes=rss, reason=(
            f"cpu_memory budget exceeded: the process tree's RSS reached {rss / MiB:.1f} MiB > "
            f"{self.limit / MiB:.1f} MiB (watchdog, SIGKILL)")).dump()
        if self.report is not None:
            try:
                self.report(event)
            except Exception:
                pass
        self.kill([os.getpid(), *descendants(os.getpid())])
        return True

    def check(self) -> bool:
        return self.observe(self.tree.read())

    def _run(self) -> None:
        while not self._stop.is_set():
            time.sleep(self.interval_s)
            if time.monotonic() - self.last_observed > 2 * self.interval_s and self.check():
                return


def _kill_tree(pids: list[int]) -> None:
    me = os.getpid()
    for pid in [p for p in pids if p != me] + [me]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------------
class Prepared:
    """What the parent set up for one child: a cgroup, or the reason there is none. The child gets a copy
    (pickled with its arguments) to join the cgroup; only the parent removes it."""

    def __init__(self, cgroup: CgroupLimit | None = None, reason: str | None = None, error: str | None = None):
        self.cgroup, self.reason, self.error = cgroup, reason, error

    def explain_kill(self) -> str | None:
        """Why a SIGKILLed child died, where the cgroup can tell."""
        if self.cgroup is None:
            return None
        kills = self.cgroup.oom_kills()
        if kills:
            peak = self.cgroup.peak_bytes()
            peak_text = f"; the cgroup's peak usage {peak / MiB:.0f} MiB" if peak else ""
            return (f"killed by the kernel's OOM killer at the cpu_memory budget ({self.cgroup.describe()}; "
                    f"oom_kill = {kills}{peak_text})")
        return None

    def close(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()


def cpu_method(limits: dict[str, Any]) -> str:
    method = limits.get("cpu_memory_method") or "auto"
    if method not in METHODS:
        raise BudgetError(f"cpu_memory_method {method!r}; expected one of {', '.join(METHODS)}")
    return method


def prepare(trial: Any) -> Prepared:
    """Parent side, before the child starts: make the cgroup when the method wants one."""
    limit = trial.limits.get("cpu_memory")
    if not limit:
        return Prepared()
    method = cpu_method(trial.limits)
    if method not in ("auto", "cgroup"):
        return Prepared()
    name = f"harness-{os.getpid()}-{trial.trial_id}-{time.monotonic_ns() % 10**9}"
    try:
        return Prepared(cgroup=CgroupLimit.create(int(limit), name))
    except BudgetError as exc:
        if method == "cgroup":
            return Prepared(error=f"cpu_memory_method = cgroup, but no cgroup can be made here: {exc}")
        return Prepared(reason=str(exc))


# --------------------------------------------------------------------------------------------------
# Child side
# --------------------------------------------------------------------------------------------------
@dataclass
class Applied:
    """How the child enforces its budgets (the record's `memory_budget`), and the watchdog, if one runs:
    its `observe` goes to the trial's meters, which then read the tree's RSS for both."""

    cpu_enforced_by: str | None = None
    gpu_enforced_by: str | None = None
    watchdog: RssWatchdog | None = None

    def describe(self) -> dict[str, Any]:
        return {"cpu_enforced_by": self.cpu_enforced_by, "gpu_enforced_by": self.gpu_enforced_by}

    def rss_observers(self) -> tuple[Callable[[int], Any], ...]:
        return (self.watchdog.observe,) if self.watchdog is not None else ()


def apply_cpu_budget(limit_bytes: int | None, method: str = "auto", prepared: Prepared | None = None,
                     report: Callable[[dict[str, Any]], None] | None = None) -> tuple[str | None, RssWatchdog | None]:
    """Enforce the CPU budget on this process; returns how (for the record) and the watchdog, if one runs.

    "auto" runs the watchdog AND, where the parent could make one, the cgroup: the watchdog holds the
    budget to the figure the record shows (the tree's RSS, which also counts shared-library pages that the
    cgroup charges elsewhere, about 180 MiB with torch, docs/meters.md), and the cgroup catches in the kernel
    what grows faster than one 20 ms sampling period."""
    if not limit_bytes:
        return None, None
    prepared = prepared or Prepared()
    if prepared.error:
        raise BudgetError(prepared.error)
    joined: str | None = None
    why = prepared.reason
    if method in ("auto", "cgroup") and prepared.cgroup is not None:
        cg = prepared.cgroup
        try:
            cg.join()
            joined = cg.describe()
        except OSError as exc:
            if method == "cgroup":
                raise BudgetError(f"cannot join cgroup {cg.path} ({exc.strerror})") from None
            why = f"cannot join cgroup {cg.path} ({exc.strerror})"
    if method == "cgroup":
        if joined is None:
            raise BudgetError("cpu_memory_method = cgroup, but the parent made no cgroup for this trial")
        return joined, None
    if method == "rlimit":
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        new = int(limit_bytes) if hard == resource.RLIM_INFINITY else min(int(limit_bytes), hard)
        resource.setrlimit(resource.RLIMIT_AS, (new, hard))
        return f"RLIMIT_AS = {new / MiB:.0f} MiB (address space, not resident memory)", None
    dog = RssWatchdog(int(limit_bytes), report).start()
    how = f"watchdog: the process tree's RSS read every 20 ms, SIGKILL past {int(limit_bytes) / MiB:.0f} MiB"
    if method == "watchdog":
        return how, dog
    if joined is not None:
        return f"{how}; backstop: {joined}", dog
    return f"{how} (no cgroup: {why or 'none prepared'})", dog


def apply_gpu_budget(limit_bytes: int | None, device: str) -> str | None:
    if not limit_bytes or not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    dev = torch.device(device)
    total = torch.cuda.get_device_properties(dev).total_memory
    fraction = min(1.0, int(limit_bytes) / total)
    torch.cuda.set_per_process_memory_fraction(fraction, dev)
    text = (f"torch.cuda.set_per_process_memory_fraction({fraction:.4f}) of {total / MiB:.0f} MiB "
            f"(PyTorch's allocator; the CUDA context is outside it)")
    if int(limit_bytes) > total:
        text += "; the budget is more than the device has, so the device's own size is the limit"
    return text


def apply_budgets(trial: Any, report: Callable[[dict[str, Any]], None] | None = None,
                  prepared: Prepared | None = None) -> Applied:
    """Child side, before the trial: enforce both budgets; returns how they are enforced."""
    cpu, dog = apply_cpu_budget(trial.limits.get("cpu_memory"), cpu_method(trial.limits), prepared, report)
    gpu = apply_gpu_budget(trial.limits.get("gpu_memory"), trial.params["device"])
    return Applied(cpu, gpu, dog)
