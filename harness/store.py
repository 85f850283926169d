"""The run folder: `trials.jsonl` (append-only, one fsynced write per record), `env.json`, a copy of the grid.

Everything downstream (report, compare, export) reads run folders through this module only, so that a
half-written last line (a kill in the middle of a write) is handled in one place.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .record import SCHEMA_VERSION, TrialRecord, json_safe, normalise  # noqa: F401 (SCHEMA_VERSION re-exported)

TRIALS = "trials.jsonl"
REJECTED = "trials.rejected.jsonl"
ENV = "env.json"
GRID = "grid.toml"
LOCK = ".harness.lock"


class StoreError(Exception):
    """A run folder that cannot be written or read; the message is one line for the user."""


def safe_name(name: str, max_len: int = 64) -> str:
    """A folder-name-safe version of a user-supplied run name: no separators, no '..', ASCII only."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return text[:max_len] or "run"


def default_run_dir(results_root: Path, run_name: str, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return results_root / f"{safe_name(run_name)}-{stamp}"


@dataclass
class ReadResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)


def _read_lines(path: Path) -> ReadResult:
    out = ReadResult()
    if not path.exists():
        return out
    with open(path, "rb") as f:
        data = f.read()
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            out.bad_lines.append(raw.decode("utf-8", "replace"))
            continue
        if isinstance(rec, dict) and "trial_id" in rec and "status" in rec:
            out.records.append(rec)
        else:
            out.bad_lines.append(raw.decode("utf-8", "replace"))
    return out


def read_records(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete record of a run folder, in the order written, each read through `record.load_record`
    (so that a record an older run wrote reads like a new one). A torn line is skipped.

    Where a trial id appears more than once (it should not), the last record wins.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StoreError(f"{run_dir}: not a run folder (no such directory)")
    if not (run_dir / TRIALS).exists():
        raise StoreError(f"{run_dir}: not a run folder (no {TRIALS})")
    result = _read_lines(run_dir / TRIALS)
    by_id: dict[str, dict[str, Any]] = {}
    for rec in result.records:
        by_id.pop(rec["trial_id"], None)
        by_id[rec["trial_id"]] = rec
    return [normalise(rec) for rec in by_id.values()]


def read_env(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / ENV
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def read_grid_text(run_dir: str | os.PathLike) -> str | None:
    path = Path(run_dir) / GRID
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


class RunStore:
    """Writes one run folder. Records are appended with one `os.write` each, then fsynced."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.trials_path = self.run_dir / TRIALS

    # -- creation -------------------------------------------------------------------------------------
    def create(self, grid_text: str, env: dict[str, Any], resume: bool = False) -> None:
        """Make the folder and check that it is writable before the first trial runs.

        On failure, folders this call made are removed again (no partial run folder), and the error is one
        line. The folder is locked for the life of this process, so two runs never append to one file."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise StoreError(f"{self.run_dir}: output folder is a file; expected a folder (or a path that does not exist)")
        made = [d for d in (self.run_dir, *self.run_dir.parents) if not d.exists()]
        probe = self.run_dir / ".write-probe"
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as f:
                f.write(b"x" * 4096)
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
            self._lock()
            if not resume or not (self.run_dir / GRID).exists():
                self._atomic_write(self.run_dir / GRID, grid_text.encode("utf-8"))
            if resume and (self.run_dir / ENV).exists():
                old = read_env(self.run_dir)
                env = {**env, "resumed_from": old,
                       "nodes": sorted(set(old.get("nodes", [])) | set(env.get("nodes", [])))}
            self.write_env(env)
            self.trials_path.touch(exist_ok=True)
        except (OSError, StoreError) as exc:
            self.close()
            if made:  # this call made the folder: take it away again, nothing of a run was in it
                shutil.rmtree(made[0], ignore_errors=True)
                for d in made[1:]:
                    try:
                        d.rmdir()
                    except OSError:
                        break
            else:  # an existing folder (resume, or --out given): only the probe goes; the lock file stays
                try:
                    probe.unlink(missing_ok=True)
                except OSError:
                    pass
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.run_dir}: output folder is not writable ({exc.strerror or exc})") from None

    def write_env(self, env: dict[str, Any]) -> None:
        self._atomic_write(self.run_dir / ENV, json.dumps(env, indent=2, default=str).encode("utf-8"))

    def add_node(self, host: str) -> None:
        env = read_env(self.run_dir)
        nodes = set(env.get("nodes", []))
        if host and host not in nodes:
            env["nodes"] = sorted(nodes | {host})
            self.write_env(env)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise StoreError(f"{path}: cannot write ({exc.strerror or exc})") from None

    def _lock(self) -> None:
        """An advisory lock on the run folder, held until this process exits (the kernel drops it even on
        SIGKILL): a second `run --resume` of a folder that is still being written is refused."""
        import fcntl

        fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(f"{self.run_dir}: another harness run is writing to this folder; wait for it or stop it") from None
        self._lock_fd = fd

    def close(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            self._lock_fd = None
            os.close(fd)

    # -- records --------------------------------------------------------------------------------------
    def repair(self) -> int:
        """Set aside lines that are not complete records (a torn last line); returns how many."""
        if not self.trials_path.exists():
            return 0
        result = _read_lines(self.trials_path)
        raw = self.trials_path.read_bytes()
        if not result.bad_lines and (not raw or raw.endswith(b"\n")):
            return 0
        if result.bad_lines:
            with open(self.run_dir / REJECTED, "ab") as f:
                for line in result.bad_lines:
                    f.write(line.encode("utf-8") + b"\n")
                f.flush()
                os.fsync(f.fileno())
        good = b"".join(json.dumps(r, default=str).encode("utf-8") + b"\n" for r in result.records)
        self._atomic_write(self.trials_path, good)
        return len(result.bad_lines)

    def finished_ids(self) -> set[str]:
        """Trial ids that `--resume` skips: every status counts as finished, except a record marked
        `"retry_on_resume": true` (the Ray executor's mark for a trial whose worker or node died). The last
        record of a trial id decides, as in `read_records`."""
        last: dict[str, dict[str, Any]] = {}
        for r in _read_lines(self.trials_path).records:
            last[r["trial_id"]] = r
        return {tid for tid, r in last.items() if r.get("retry_on_resume") is not True}

    def append(self, record: TrialRecord | dict[str, Any]) -> None:
        """One `os.write` of one line, then fsync. If the write fails or is short (a full disk), the file is
        cut back to its length before the write, so no torn line is left behind; if even that fails, the
        torn line is set aside by `repair()` on `--resume`."""
        data = record.dump() if isinstance(record, TrialRecord) else normalise(record)
        line = json.dumps(json_safe(data), default=str, allow_nan=False).encode("utf-8") + b"\n"
        try:
            fd = os.open(self.trials_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{self.trials_path}: cannot append a record ({exc.strerror or exc})") from None
        try:
            before = os.fstat(fd).st_size
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, before)
                    os.fsync(fd)
                except OSError:
                    pass
                raise
        except OSError as exc:
            why = exc.strerror or str(exc)
            if exc.errno == errno.ENOSPC and "No space" not in why:
                why = f"No space left on device: {why}"
            raise StoreError(f"{self.trials_path}: cannot append a record ({why}); the records before it are intact, "
                             f"continue with --resume {self.run_dir}") from None
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.run_dir)

