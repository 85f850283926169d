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
        rec = _parse_record(raw)
        if rec is not None:
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


def unreadable_lines(run_dir: str | os.PathLike) -> list[int]:
    """Line numbers (1-based) of trials.jsonl lines that are not complete records: a torn last line, or
    garbage. Readers skip them; a report says that it did."""
    try:
        data = (Path(run_dir) / TRIALS).read_bytes()
    except OSError:
        return []
    return [n for n, raw in enumerate(data.split(b"\n"), start=1) if raw.strip() and _parse_record(raw) is None]


def _parse_record(raw: bytes) -> dict[str, Any] | None:
    """One line of trials.jsonl as a record, or None where it is not one."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) and "trial_id" in rec and "status" in rec else None


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


HARNESS_FILES = frozenset({TRIALS, REJECTED, ENV, GRID, LOCK, ".write-probe", GRID + ".tmp", ENV + ".tmp"})


def is_run_folder(folder: str | os.PathLike) -> bool:
    """A folder a harness run made: it holds trials.jsonl and the copy of its grid."""
    folder = Path(folder)
    return (folder / TRIALS).is_file() and (folder / GRID).is_file()


def check_new_run_folder(folder: str | os.PathLike) -> None:
    """A new run may write into `folder` only if it does not exist, is empty, or holds an unfinished harness
    run with no records yet (only the harness's own files, trials.jsonl empty). Anything else is refused:
    a folder with the user's own files (a grid.toml, an env.json of their own is never overwritten), or a
    run with records (continue it with --resume)."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise StoreError(f"{folder}: output folder is a file; expected a folder (or a path that does not exist)")
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError as exc:
        raise StoreError(f"{folder}: output folder cannot be read ({exc.strerror or exc})") from None
    if not names or names == [LOCK]:
        return
    trials = folder / TRIALS
    if trials.is_file() and trials.stat().st_size > 0:
        raise StoreError(f"{folder}: already holds a run's records; continue it with --resume {folder}, "
                         "or give another --out (a new run never writes into an old one)")
    others = [n for n in names if n not in HARNESS_FILES]
    if not others and (LOCK in names or TRIALS in names):
        return  # a run that stopped (or is being set up) before its first record: the lock decides
    shown = ", ".join(others[:5] or [n for n in names if n != LOCK][:5]) + (", ..." if len(others) > 5 else "")
    raise StoreError(f"{folder}: output folder is not empty and is not a harness run (it holds {shown}); "
                     "give a new or empty folder to --out")


class RunStore:
    """Writes one run folder. Records are appended with one `os.write` each, then fsynced."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.trials_path = self.run_dir / TRIALS
        self._lock_fd: int | None = None
        self._made_lock = False

    # -- creation -------------------------------------------------------------------------------------
    def create(self, grid_text: str, env: dict[str, Any], resume: bool = False, unique: bool = False) -> None:
        """Claim the folder, lock it, and check that it is writable before the first trial runs.

        Race-free: a new folder is claimed with one `os.mkdir` (atomic: of two runs making it at the same
        instant, one makes it), then locked with `flock`; what the folder holds is judged only once the lock
        is held. Of two runs reaching one folder, the one that gets the lock goes on and the other is told
        that another harness run holds it; a run that fails removes only a folder it made itself and still
        holds the lock of, never one another run may be writing. A new run refuses a folder that holds
        anything but an unfinished harness run with no records (`check_new_run_folder`). `unique` (the
        default folder name, no --out): a folder that exists already is never entered; `-2`, `-3`, ... are
        tried instead. The lock is held for the life of this process."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise StoreError(f"{self.run_dir}: output folder is a file; expected a folder (or a path that does not exist)")
        made_parents: list[Path] = []
        made = False
        base = self.run_dir
        try:
            if not resume:
                made_parents = [d for d in reversed(self.run_dir.parents) if not d.exists()]
                self.run_dir.parent.mkdir(parents=True, exist_ok=True)
                for attempt in range(2, 10_000):
                    try:
                        os.mkdir(self.run_dir)  # the atomic claim
                        made = True
                        break
                    except FileExistsError:
                        if not unique:
                            break
                        self.run_dir = base.with_name(f"{base.name}-{attempt}")
                        self.trials_path = self.run_dir / TRIALS
                if not made:  # judged once before the lock file is made in it (a user's folder gains nothing)
                    check_new_run_folder(self.run_dir)
            self._lock()
            if not resume:
                check_new_run_folder(self.run_dir)  # again, under the lock: what counts
            probe = self.run_dir / ".write-probe"
            with open(probe, "wb") as f:
                f.write(b"x" * 4096)
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
            # trials.jsonl first: a folder left by a crash from here on is recognisably a harness run
            self.trials_path.touch(exist_ok=True)
            if not resume:
                self._atomic_write(self.run_dir / GRID, grid_text.encode("utf-8"))
            if resume and (self.run_dir / ENV).exists():
                old = read_env(self.run_dir)
                env = {**env, "resumed_from": old,
                       "nodes": sorted(set(old.get("nodes", [])) | set(env.get("nodes", [])))}
            self.write_env(env)
        except (OSError, StoreError) as exc:
            owner = self._lock_fd is not None
            self.close()
            if made and owner:  # this run made the folder and nobody else entered it: take it away again
                shutil.rmtree(self.run_dir, ignore_errors=True)
            elif owner:  # an existing folder (resume, an empty --out): only what this call may have left
                left = [".write-probe", GRID + ".tmp", ENV + ".tmp"]
                if self._made_lock and not is_run_folder(self.run_dir):
                    left.append(LOCK)
                for name in left:
                    try:
                        (self.run_dir / name).unlink(missing_ok=True)
                    except OSError:
                        pass
            if made and owner or not made and not self.run_dir.exists():
                for d in reversed(made_parents):  # parents this call made, if nobody put anything in them
                    try:
                        d.rmdir()
                    except OSError:
                        break
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
        SIGKILL): a second run of a folder that is still being written is refused."""
        import fcntl

        try:
            fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            self._made_lock = True
        except FileExistsError:
            fd = os.open(self.run_dir / LOCK, os.O_RDWR, 0o644)
            self._made_lock = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(f"{self.run_dir}: another harness run holds this folder (it is writing to it); "
                             "wait for it or stop it, or give another --out") from None
        self._lock_fd = fd

    def close(self) -> None:
        fd = self._lock_fd
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

