"""Nothing measured is ever lost: resume, signals, timeouts, full or unwritable disks, kills, and security.

Fast tests drive `harness.run` in-process with a fake executor (the resume and store logic live in the
parent, not in the executor); the end-to-end ones run `python -m harness run ...` as a real process with real
trial children and kill or signal it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid_helpers import tiny_csv, tiny_grid
from harness.cli import main
from harness.config import load_grid
from harness.record import TrialRecord, now_iso
from harness.grid import Trial, expand
from harness.store import REJECTED, TRIALS, RunStore, StoreError, default_run_dir, safe_name

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every line of trials.jsonl, each of which must be a complete JSON record (no torn line)."""
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "the file ends in a torn line"
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def fake_record(trial: Trial, status: str = "ok") -> dict[str, Any]:
    rec = TrialRecord.empty(trial).dump()
    rec["status"] = status
    rec["finished_at"] = now_iso()
    rec["seconds_total"] = 1.0
    rec["epochs"] = [{"epoch": 1, "seconds": 1.0, "train_seconds": 0.9, "eval_seconds": 0.1, "train_loss": 0.7,
                      "train_accuracy": 0.5, "val_loss": 0.69, "val_accuracy": 0.6, "train_samples": 36,
                      "train_real_tokens": 400, "train_padded_tokens": 500}] if status == "ok" else []
    rec["memory"]["cpu_peak_rss_mib"] = 500.0
    return rec


class FakeExecutor:
    """Stands in for the local executor: 'runs' each trial instantly and hands back a record."""

    name = "local"

    def __init__(self, statuses: list[str] | None = None, limit: int | None = None,
                 before: Callable[[Trial], None] | None = None):
        self.ran: list[str] = []
        self.statuses = statuses or []
        self.limit = limit
        self.before = before
        self.stopped = False

    def run(self, trials: list[Trial], events: Any) -> None:
        for trial in trials:
            if events.stopping() or self.limit is not None and len(self.ran) >= self.limit:
                return
            events.trial_started(trial)
            if self.before:
                self.before(trial)
            status = self.statuses[len(self.ran)] if len(self.ran) < len(self.statuses) else "ok"
            self.ran.append(trial.trial_id)
            events.trial_finished(trial, fake_record(trial, status))

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    w = tmp_path / "work"
    w.mkdir()
    monkeypatch.chdir(w)
    return w


@pytest.fixture
def fake(monkeypatch) -> Callable[..., FakeExecutor]:
    def install(**kwargs: Any) -> FakeExecutor:
        ex = FakeExecutor(**kwargs)
        monkeypatch.setattr("harness.run.make_executor", lambda *a, **k: ex)
        return ex
    return install


def grid6(tmp_path: Path, **overrides: Any) -> Path:
    """Six trials on a tiny CSV (preflight in milliseconds)."""
    overrides.setdefault("data__source", str(tiny_csv(tmp_path)))
    overrides.setdefault("grid__batch_size", [2, 4, 8])
    overrides.setdefault("grid__frozen_layers", [0, "all"])
    return tiny_grid(tmp_path, **overrides)



def is_trial_process(proc: psutil.Process) -> bool:
    """A trial's child: forked from the trial server (named harness-trial) or spawned (spawn_main)."""
    return proc.name() == "harness-trial" or "spawn_main" in " ".join(proc.cmdline())

def trial_children(pid: int) -> list[psutil.Process]:
    """The spawned trial children of a `harness run` process."""
    out = []
    try:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if is_trial_process(child):
                    out.append(child)
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return out


def wait_for(cond: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended ({proc.returncode}) while waiting for {what}:\n{out[-3000:]}\n{err[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def n_records(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def harness_proc(args: list[str], cwd: Path, **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


# --------------------------------------------------------------------------------------------------
# 1. Records: one write + fsync each; a failed or short write leaves no torn line
# --------------------------------------------------------------------------------------------------
def _store_with_one(tmp_path: Path) -> tuple[RunStore, list[Trial]]:
    cfg, text = load_grid(grid6(tmp_path))
    trials = expand(cfg)
    store = RunStore(tmp_path / "run")
    store.create(text, {})
    store.append(fake_record(trials[0]))
    return store, trials


def test_each_record_is_one_write_then_fsync(tmp_path, monkeypatch):
    store, trials = _store_with_one(tmp_path)
    calls: list[tuple[str, Any]] = []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(os, "write", lambda fd, data: calls.append(("write", bytes(data))) or real_write(fd, data))
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", fd)) or real_fsync(fd))
    store.append(fake_record(trials[1]))
    kinds = [k for k, _ in calls]
    assert kinds == ["write", "fsync"]
    assert calls[0][1].endswith(b"\n") and calls[0][1].count(b"\n") == 1
    assert [r["trial_id"] for r in lines_of(store.trials_path)] == [trials[0].trial_id, trials[1].trial_id]
    store.close()


@pytest.mark.parametrize("failure", ["ENOSPC", "short write", "fsync fails"])
def test_a_failed_write_leaves_no_torn_line(tmp_path, monkeypatch, failure):
    store, trials = _store_with_one(tmp_path)
    before = store.trials_path.read_bytes()
    real_write, real_fsync = os.write, os.fsync

    def write(fd, data):
        if failure == "ENOSPC":
            raise OSError(errno.ENOSPC, "No space left on device")
        if failure == "short write":
            return real_write(fd, bytes(data)[: len(data) // 2])  # what a filling disk does
        return real_write(fd, data)

    def fsync(fd):
        if failure == "fsync fails" and not getattr(fsync, "failed", False):
            fsync.failed = True
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StoreError) as info:
        store.append(fake_record(trials[1]))
    monkeypatch.undo()
    msg = str(info.value)
    assert "\n" not in msg and str(store.trials_path) in msg
    assert "No space left on device" in msg and "--resume" in msg
    assert store.trials_path.read_bytes() == before
    store.close()


def test_a_full_disk_mid_run_is_one_line_and_stops_the_grid(tmp_path, work, fake, monkeypatch, capsys):
    ex = fake()
    real_write = os.write
    appended = []

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.endswith(TRIALS):
            appended.append(len(data))
            if len(appended) >= 3:  # the disk fills up during the third record
                return real_write(fd, bytes(data)[:10])
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    out = tmp_path / "run"
    code = main(["run", str(grid6(tmp_path)), "--out", str(out), "--no-report"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{out / TRIALS}: cannot append a record (No space left on device" in err
    assert f"--resume {out}" in err
    assert len(ex.ran) == 3 and ex.stopped  # the grid stopped at the failed record
    assert [r["trial_id"] for r in lines_of(out / TRIALS)] == ex.ran[:2]


def test_a_full_disk_before_the_first_trial_is_refused_and_leaves_nothing(tmp_path, work, fake, monkeypatch, capsys):
    ex = fake()

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "new" / "run"
    code = main(["run", str(grid6(tmp_path)), "--out", str(out), "--no-report"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 2 and ex.ran == []
    assert err.strip() == f"harness: error: {out}: output folder is not writable (No space left on device)"
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("where", ["proc", "read-only"])
def test_an_unwritable_output_folder_is_refused_before_the_first_trial(tmp_path, work, fake, capsys, where):
    ex = fake()
    if where == "proc":
        out = Path("/proc/harness-cannot-write-here")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes to read-only folders")
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o500)
        out = parent / "run"
    code = main(["run", str(grid6(tmp_path)), "--out", str(out), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and ex.ran == []
    assert err.startswith(f"harness: error: {out}: output folder is not writable (") and err.count("\n") == 1
    assert not out.exists()


def test_two_runs_never_write_one_folder(tmp_path):
    cfg, text = load_grid(grid6(tmp_path))
    first = RunStore(tmp_path / "run")
    first.create(text, {})
    second = RunStore(tmp_path / "run")
    with pytest.raises(StoreError, match="another harness run holds this folder"):
        second.create(text, {}, resume=True)
    first.close()
    second.create(text, {}, resume=True)  # free again once the first is done (or dead: the kernel drops it)
    second.close()


# --------------------------------------------------------------------------------------------------
# 2. Resume
# --------------------------------------------------------------------------------------------------
def test_repair_sets_a_torn_last_line_aside(tmp_path):
    store, trials = _store_with_one(tmp_path)
    store.append(fake_record(trials[1], "oom"))
    torn = json.dumps(fake_record(trials[2])).encode()[:57]
    with open(store.trials_path, "ab") as f:
        f.write(torn)
    assert store.finished_ids() == {trials[0].trial_id, trials[1].trial_id}  # the torn line is never parsed
    assert store.repair() == 1
    assert [r["trial_id"] for r in lines_of(store.trials_path)] == [trials[0].trial_id, trials[1].trial_id]
    assert (store.run_dir / REJECTED).read_bytes() == torn + b"\n"
    assert store.repair() == 0
    store.close()


def test_resume_runs_only_what_is_missing_with_no_duplicates(tmp_path, work, fake, capsys):
    grid = grid6(tmp_path)
    out = tmp_path / "run"
    first = fake(statuses=["ok", "error", "timeout", "oom"], limit=4)
    assert main(["run", str(grid), "--out", str(out), "--no-report"]) == 0
    assert len(first.ran) == 4
    torn = b'{"schema": 1, "trial_id": "' + first.ran[0].encode() + b'", "status": "o'
    with open(out / TRIALS, "ab") as f:  # a kill in the middle of a write
        f.write(torn)
    capsys.readouterr()

    second = fake()
    assert main(["run", str(grid), "--resume", str(out), "--no-report"]) == 0
    stdout = capsys.readouterr().out
    flat = "".join(stdout.split())
    assert "setaside1incompleteline" in flat and "6trials(2torun)" in flat
    all_ids = [t.trial_id for t in expand(load_grid(grid)[0])]
    assert sorted(second.ran) == sorted(set(all_ids) - set(first.ran))  # finished ones, any status, skipped
    recs = lines_of(out / TRIALS)
    assert sorted(r["trial_id"] for r in recs) == sorted(all_ids)
    assert [r["status"] for r in recs[:4]] == ["ok", "error", "timeout", "oom"]
    assert (out / REJECTED).read_bytes() == torn + b"\n"

    third = fake()
    assert main(["run", str(grid), "--resume", str(out), "--no-report"]) == 0
    assert third.ran == [] and len(lines_of(out / TRIALS)) == 6


def test_resume_after_the_parent_is_killed_mid_grid(tmp_path):
    """Real processes: SIGKILL the `harness run` process while its second trial runs. The trial child dies
    with it (no orphan); a torn line left by a kill mid-write is set aside; --resume runs only the rest."""
    grid = tiny_grid(tmp_path, data__source=str(tiny_csv(tmp_path)), grid__batch_size=[4, 8])
    out = tmp_path / "run"
    proc = harness_proc(["run", str(grid), "--out", str(out), "--no-report"], tmp_path)
    try:
        wait_for(lambda: n_records(out / TRIALS) >= 1, 240, "the first record", proc)
        children = wait_for(lambda: trial_children(proc.pid), 60, "the second trial's child", proc)
        proc.kill()
        proc.wait(30)
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, "a trial child outlived the killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    first = (out / TRIALS).read_bytes()
    assert first.count(b"\n") == 1
    torn = b'{"schema": 1, "run_name": "tiny", "trial_id": "abc'
    with open(out / TRIALS, "ab") as f:
        f.write(torn)

    res = subprocess.run([sys.executable, "-m", "harness", "run", str(grid), "--resume", str(out), "--no-report"],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "2trials(1torun)" in "".join(res.stdout.split())
    recs = lines_of(out / TRIALS)
    assert len(recs) == 2 and len({r["trial_id"] for r in recs}) == 2
    assert (out / TRIALS).read_bytes().startswith(first)  # the finished record is untouched
    assert all(r["status"] == "ok" for r in recs)
    assert (out / REJECTED).read_bytes() == torn + b"\n"


# --------------------------------------------------------------------------------------------------
# 3. SIGINT / SIGTERM: the running child is stopped, no record for it, report for what finished
# --------------------------------------------------------------------------------------------------
def test_ctrl_c_stops_the_running_trial_keeps_what_finished_and_renders_the_report(tmp_path):
    # The second trial trains for thousands of epochs: it is always running when Ctrl-C comes.
    grid = tiny_grid(tmp_path, name="sig", data__source=str(tiny_csv(tmp_path)), grid__epochs=[1, 5000])
    out = tmp_path / "run"
    # A terminal's Ctrl-C goes to the whole process group: the children get SIGINT too (and ignore it).
    proc = harness_proc(["run", str(grid), "--out", str(out)], tmp_path, start_new_session=True)
    try:
        wait_for(lambda: n_records(out / TRIALS) >= 1, 240, "the first record", proc)
        children = wait_for(lambda: trial_children(proc.pid), 60, "the second trial's child", proc)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    flat = "".join(stdout.split())  # rich wraps long lines at 80 columns when not on a terminal
    assert "interrupted(SIGINT)" in flat and f"--resume{out}" in flat
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    recs = lines_of(out / TRIALS)
    assert len(recs) == 1 and recs[0]["params"]["epochs"] == 1 and recs[0]["status"] == "ok"
    report = tmp_path / "reports" / "sig" / "report.html"
    assert report.is_file(), stdout[-2000:]


def test_sigterm_during_the_first_trial_exits_143_with_no_record(tmp_path):
    grid = tiny_grid(tmp_path, name="term", data__source=str(tiny_csv(tmp_path)), train__epochs=5000)
    out = tmp_path / "run"
    proc = harness_proc(["run", str(grid), "--out", str(out)], tmp_path)
    try:
        children = wait_for(lambda: trial_children(proc.pid), 120, "the trial's child", proc)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert "interrupted(SIGTERM):0trial(s)finished" in "".join(stdout.split())
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert (out / TRIALS).read_bytes() == b""
    assert not (tmp_path / "reports").exists()  # nothing finished, nothing to report


def test_ctrl_c_while_the_grid_is_checked_is_one_line_and_130(tmp_path, work, monkeypatch, capsys):
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("harness.run.prepare", interrupted)
    assert main(["run", str(grid6(tmp_path)), "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert err == "harness: interrupted (SIGINT)\n"
    assert not (tmp_path / "run").exists()


def test_a_report_that_fails_keeps_the_records_and_the_exit_code(tmp_path, work, fake, monkeypatch, capsys):
    ex = fake()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("figure backend\nexploded")

    monkeypatch.setattr("harness.run.render_and_summarise", broken)
    out = tmp_path / "run"
    assert main(["run", str(grid6(tmp_path)), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    flat = " ".join(captured.out.split())
    assert "the report could not be rendered (figure backend exploded)" in flat
    assert "Traceback" not in captured.out + captured.err
    assert len(lines_of(out / TRIALS)) == len(ex.ran) == 6


# --------------------------------------------------------------------------------------------------
# 4. Per-trial timeout and killed children: a record with a status, what finished kept
# --------------------------------------------------------------------------------------------------
def test_a_trial_past_its_timeout_is_recorded_as_timeout(tmp_path, work, capsys):
    # Enough epochs that the trial cannot finish inside its 0.5 s: forked from the trial server, a tiny trial of
    # a few epochs now starts and ends within it.
    grid = tiny_grid(tmp_path, data__source=str(tiny_csv(tmp_path)), train__epochs=1000, limits__trial_timeout_s=0.5)
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--no-report"]) == 0
    (rec,) = lines_of(out / TRIALS)
    assert rec["status"] == "timeout"
    assert rec["error"] == "trial exceeded trial_timeout_s = 0.5 s"


def _one_trial(tmp_path: Path, **overrides: Any) -> Trial:
    cfg, _ = load_grid(tiny_grid(tmp_path, data__source=str(tiny_csv(tmp_path)), **overrides))
    return expand(cfg)[0]


def test_a_timeout_keeps_the_epochs_that_finished(tmp_path, monkeypatch):
    """The clock jumps past the deadline the moment the first epoch is reported: the record is `timeout`
    with that epoch in it (even though no snapshot carrying it had arrived yet)."""
    import harness.executors.local as local

    class Clock:
        offset = 0.0

        def monotonic(self) -> float:
            return time.monotonic() + self.offset

        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

    clock = Clock()
    monkeypatch.setattr(local, "time", clock)
    trial = _one_trial(tmp_path, train__epochs=50, limits__trial_timeout_s=600)
    seen = []

    def on_event(t: Trial, event: dict[str, Any]) -> None:
        seen.append(event.get("type"))
        if event.get("type") == "epoch":
            clock.offset = 10_000.0

    rec = local.run_in_child(trial, on_event)
    assert rec["status"] == "timeout"
    assert len(rec["epochs"]) >= 1
    assert rec["epochs"][0]["epoch"] == 1 and rec["epochs"][0]["val_accuracy"] is not None
    assert rec["trainable_params"] and rec["n_train"] == 36  # what the snapshot carried is kept too


def test_a_killed_child_becomes_a_record_and_the_parent_goes_on(tmp_path):
    from harness.executors.local import run_in_child

    trial = _one_trial(tmp_path, train__epochs=5000)

    def on_event(t: Trial, event: dict[str, Any]) -> None:
        if event.get("type") == "epoch" and event.get("epoch") == 2:
            for child in psutil.Process().children(recursive=True):
                if is_trial_process(child):
                    child.kill()

    rec = run_in_child(trial, on_event)
    # A kill from outside with no sign of memory (no budget, the kernel's oom_kill counters still) is an error
    # that names the signal, not `oom` (issue 15, class 8: tests/test_reliability.py's table covers the rest).
    assert rec["status"] == "error" and "SIGKILL" in rec["error"] and "from outside" in rec["error"]
    assert len(rec["epochs"]) >= 2 and rec["oom"] is None


def test_a_child_that_cannot_start_becomes_an_error_record(tmp_path, monkeypatch):
    from harness.executors import local

    def no_fork(self: Any) -> None:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(local.ChildRun, "start", no_fork)
    trial = _one_trial(tmp_path)
    got: list[dict[str, Any]] = []

    class Events:
        def trial_started(self, t: Trial) -> None: ...
        def trial_event(self, t: Trial, e: dict[str, Any]) -> None: ...
        def trial_finished(self, t: Trial, rec: dict[str, Any]) -> None: got.append(rec)
        def stopping(self) -> bool: return False

    local.LocalExecutor().run([trial], Events())
    (rec,) = got
    assert rec["status"] == "error" and "could not start the child process" in rec["error"]
    assert rec["trial_id"] == trial.trial_id


# --------------------------------------------------------------------------------------------------
# 5. Security: names never escape the chosen folder; no remote code; no pickle; the report escapes
# --------------------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_safe_name_is_always_one_plain_folder_name(name):
    s = safe_name(name)
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", s)
    assert s not in {".", ".."} and not s.startswith((".", "-"))
    root = Path("/results")
    assert default_run_dir(root, name).parent == root


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "..", "a/../../b", "名前 ✓", "C:\\win\\path", "\u202e\x00",
                                  "[/x] [bold]"])
def test_a_run_name_never_writes_outside_the_results_folder(tmp_path, work, fake, name, capsys):
    fake()
    grid = grid6(tmp_path, name=name, grid__batch_size=[4], grid__frozen_layers=[0])
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["run", str(grid)]) == 0  # with the report: its default folder is reports/<safe name>
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing new next to the working folder
    assert sorted(p.name for p in work.iterdir()) == ["reports", "results"]
    (run_dir,) = list((work / "results").iterdir())
    (report_dir,) = list((work / "reports").iterdir())
    assert re.fullmatch(r"[A-Za-z0-9._-]+-\d{8}T\d{6}Z", run_dir.name)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", report_dir.name) and (report_dir / "report.html").is_file()
    assert lines_of(run_dir / TRIALS)[0]["run_name"] == name  # the record keeps the name as given


def test_every_string_in_the_html_report_is_escaped(tmp_path, work, fake, capsys):
    evil = '<script>alert("name")</script>'
    fake(statuses=["ok", "error"])
    grid = grid6(tmp_path, name=evil, grid__batch_size=[4, 8], grid__frozen_layers=[0])
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--no-report"]) == 0
    recs = lines_of(out / TRIALS)
    recs[1]["error"] = "</pre><script>alert('error')</script><img src=x onerror=alert(1)>"
    recs[1]["device_name"] = "<b onmouseover=alert(2)>cpu</b>"
    recs[0]["params"]["model"] = "<iframe src=javascript:alert(3)>"
    (out / TRIALS).write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    capsys.readouterr()
    (report_dir,) = list((work / "reports").iterdir())
    assert report_dir.name == safe_name(evil)
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    for needle in ("<script>alert", "<img src=x", "<b onmouseover", "<iframe", "</pre><script>"):
        assert needle not in html, needle
    assert "&lt;script&gt;alert" in html
    # the only script in the page is the report's own, allowed by hash in the Content-Security-Policy
    assert html.count("<script>") == 1 and "script-src 'sha256-" in html
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    assert "<script>alert" not in md and "<img src=x" not in md


def test_trust_remote_code_is_passed_only_as_the_grid_sets_it(tmp_path, monkeypatch):
    import transformers

    from harness.core import models

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    # Readable weights: the pre-flight reads every safetensors header (issue 16), before any loading is mocked.
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
    seen: list[tuple[str, Any]] = []

    class Tok:
        pad_token_id = 0

    class Model:
        class config:
            pad_token_id = 0

    def tok(name, **kw):
        seen.append(("tokenizer", kw.get("trust_remote_code")))
        return Tok()

    def model(name, **kw):
        seen.append(("model", kw.get("trust_remote_code")))
        seen.append(("use_safetensors", kw.get("use_safetensors")))
        return Model()

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", staticmethod(tok))
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", staticmethod(model))
    models.load_model(str(folder), 2)
    assert seen == [("tokenizer", False), ("model", False), ("use_safetensors", True)]
    seen.clear()
    models.load_model(str(folder), 2, trust_remote_code=True)
    assert seen == [("tokenizer", True), ("model", True), ("use_safetensors", True)]
    from harness.config import ModelSection

    assert ModelSection().trust_remote_code is False and ModelSection().allow_pickle is False


def test_no_code_enables_remote_code_or_unsafe_unpickling():
    """Source check over the package: every torch.load passes weights_only=True (there is none today), and
    nothing turns trust_remote_code on by itself."""
    for path in sorted((REPO / "harness").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            assert "weights_only=True" in call, f"{path}: {call}"
        assert not re.search(r"trust_remote_code\s*=\s*True", text), path
        assert "pickle.load" not in text, path


# --------------------------------------------------------------------------------------------------
# Round two (issue 15): run folders claimed race-free, resume by meaning, oom only on evidence
# --------------------------------------------------------------------------------------------------
def _claim(run_dir: str, text: str, start: Any, done: Any, results: Any) -> None:
    """One of two racers: wait at the barrier, claim the folder, say how it went, and (the winner) keep the
    folder until the other has finished, then write a record into it."""
    store = RunStore(Path(run_dir))
    start.wait()
    try:
        store.create(text, {})
        outcome = "won"
    except StoreError as exc:
        outcome = f"lost: {exc}"
    except Exception as exc:  # anything else is a failure of the test, reported, not hidden
        outcome = f"crashed: {type(exc).__name__}: {exc}"
    results.put(outcome)
    done.wait()
    if outcome == "won":
        try:
            store.append({"trial_id": f"t{os.getpid()}", "status": "ok"})
        except StoreError as exc:
            results.put(f"append failed: {exc}")
        store.close()


@pytest.mark.parametrize("before", ["nothing", "an empty folder", "no parent"])
def test_two_runs_claiming_one_folder_at_the_same_instant(tmp_path, before):
    """Two processes released by one barrier create the same --out, 25 times: exactly one wins, the other
    says that another harness run holds the folder, and the winner's folder is never removed or spoiled."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")  # fast to start: the race is in create(), not in an interpreter's start-up
    text = 'name = "race"\n'
    for i in range(25):
        root = tmp_path / f"round{i}"
        run_dir = root / "parent" / "run" if before == "no parent" else root / "run"
        if before == "an empty folder":
            run_dir.mkdir(parents=True)
        start, done, results = ctx.Barrier(2), ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_claim, args=(str(run_dir), text, start, done, results)) for _ in range(2)]
        for p in procs:
            p.start()
        outcomes = sorted([results.get(timeout=30), results.get(timeout=30)])
        for p in procs:
            p.join(timeout=30)
        assert all(p.exitcode == 0 for p in procs)
        assert results.empty(), results.get()
        assert outcomes[1] == "won", outcomes
        assert outcomes[0].startswith("lost: ") and "another harness run holds this folder" in outcomes[0], outcomes
        assert sorted(p.name for p in run_dir.iterdir()) == [".harness.lock", "env.json", "grid.toml", TRIALS]
        assert (run_dir / "grid.toml").read_text() == text
        assert len(lines_of(run_dir / TRIALS)) == 1  # the winner wrote into a folder nobody took from it


def test_a_failed_claim_removes_only_what_it_made(tmp_path, monkeypatch):
    """A run that fails after claiming (a write probe that fails) removes the folder it made; a run that
    fails in a folder it did not make leaves it, and the user's files in it, as they were."""
    real_open = open

    def failing_probe(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path).endswith(".write-probe"):
            raise OSError(errno.EIO, "Input/output error")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_probe)
    made = tmp_path / "a" / "b" / "run"
    with pytest.raises(StoreError, match="not writable"):
        RunStore(made).create('name = "x"\n', {})
    assert not (tmp_path / "a").exists()  # the folder and the parents it made are gone
    existing = tmp_path / "empty"
    existing.mkdir()
    with pytest.raises(StoreError, match="not writable"):
        RunStore(existing).create('name = "x"\n', {})
    assert existing.is_dir() and list(existing.iterdir()) == []  # the user's empty folder stays, and empty


@pytest.mark.parametrize("layout", ["empty folder", "run stopped before its first record", "only the lock file"])
def test_out_may_be_an_empty_folder_or_a_run_with_no_records(tmp_path, work, fake, capsys, layout):
    out = tmp_path / "out"
    out.mkdir()
    if layout == "run stopped before its first record":
        for name in ("trials.jsonl", ".harness.lock", "env.json"):
            (out / name).write_text("" if name != "env.json" else "{}")
        (out / "grid.toml").write_text('name = "old"\n')
    elif layout == "only the lock file":
        (out / ".harness.lock").write_text("")
    ex = fake()
    assert main(["run", str(grid6(tmp_path)), "--out", str(out), "--no-report"]) == 0
    assert len(ex.ran) == 6 and len(lines_of(out / TRIALS)) == 6


@pytest.mark.parametrize("variant", ["crlf", "crlf, resumed with the stored copy", "comment changed", "keys reordered",
                                     "byte-order mark", "1 written as 1.0", "blank lines and spacing"])
def test_resume_compares_grids_by_meaning(tmp_path, work, fake, capsys, variant):
    """A grid that means the same resumes, whatever its bytes: line endings, comments, order, spelling."""
    data = tiny_csv(tmp_path)
    text = (f'# the grid\nname = "meaning"\n\n[data]\nsource = "{data}"\n\n[train]\nepochs = 1\nlearning_rate = 1\n\n'
            '[grid]\ndataset_size = [40]\nbatch_size = [2, 4]\nfrozen_layers = [0]\ndevice = ["cpu"]\n')
    grid = tmp_path / "grid.toml"
    first = text.replace("\n", "\r\n").encode() if variant.startswith("crlf") else text.encode()
    grid.write_bytes(first)
    out = tmp_path / "run"
    fake(limit=1)
    assert main(["run", str(grid), "--out", str(out), "--no-report"]) == 0
    changed = {
        "crlf": first,
        "crlf, resumed with the stored copy": None,
        "comment changed": text.replace("# the grid", "# a different comment, and # one more").encode(),
        "keys reordered": text.replace("epochs = 1\nlearning_rate = 1", "learning_rate = 1\nepochs = 1").encode(),
        "byte-order mark": b"\xef\xbb\xbf" + text.encode(),
        "1 written as 1.0": text.replace("learning_rate = 1\n", "learning_rate = 1.0\n").encode(),
        "blank lines and spacing": text.replace("\n\n", "\n\n\n").replace("epochs = 1", "epochs   =   1").encode(),
    }[variant]
    given = out / "grid.toml" if changed is None else tmp_path / "again.toml"
    if changed is not None:
        given.write_bytes(changed)
    ex = fake()
    capsys.readouterr()
    assert main(["run", str(given), "--resume", str(out), "--no-report"]) == 0, capsys.readouterr().err
    assert len(ex.ran) == 1  # the one trial that had not run; the first is kept
    assert len(lines_of(out / TRIALS)) == 2


@pytest.mark.parametrize("edit, needles", [
    (("epochs = 1", "epochs = 2"), ["[train] epochs: 1 in the run, 2 now"]),
    (("batch_size = [2, 4]", "batch_size = [2, 8]"), ["[grid] batch_size: [2, 4] in the run, [2, 8] now"]),
    (("[train]\n", "[train]\noptimizer = \"adamw\"\n"), ["[train] optimizer: 'sgd' in the run, 'adamw' now"]),
    (('name = "meaning"', 'name = "other"'), ["name: 'meaning' in the run, 'other' now"]),
    (("frozen_layers = [0]", "frozen_layers = [0]\nlearning_rate = [0.1, 0.2]"),
     ["[grid] learning_rate: not set in the run, [0.1, 0.2] now"]),
])
def test_resume_with_a_grid_that_means_something_else_names_what_differs(tmp_path, work, fake, capsys, edit, needles):
    data = tiny_csv(tmp_path)
    text = (f'name = "meaning"\n[data]\nsource = "{data}"\n[train]\nepochs = 1\n'
            '[grid]\ndataset_size = [40]\nbatch_size = [2, 4]\nfrozen_layers = [0]\ndevice = ["cpu"]\n')
    grid = tmp_path / "grid.toml"
    grid.write_text(text)
    out = tmp_path / "run"
    fake(limit=1)
    assert main(["run", str(grid), "--out", str(out), "--no-report"]) == 0
    before = (out / TRIALS).read_bytes()
    other = tmp_path / "other.toml"
    other.write_text(text.replace(*edit))
    capsys.readouterr()
    assert main(["run", str(other), "--resume", str(out), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differs from the grid the run" in err and f"resume with {out / 'grid.toml'}" in err
    for needle in needles:
        assert needle in err, err
    assert (out / TRIALS).read_bytes() == before


def test_resume_api_refuses_an_empty_name_instead_of_starting_afresh(tmp_path, work, fake):
    from harness.run import run_grid

    for name in ("", " "):
        with pytest.raises(StoreError, match="--resume got an empty folder name"):
            run_grid(str(grid6(tmp_path)), resume=name, report=False)
    assert not (work / "results").exists()


class _GoneProcess:
    """A child process that has ended with `exitcode` (negative: killed by that signal)."""

    def __init__(self, exitcode: int):
        self.exitcode = exitcode

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return False


class _Budget:
    def __init__(self, explanation: str | None):
        self.explanation = explanation

    def explain_kill(self) -> str | None:
        return self.explanation


@pytest.mark.parametrize("signum, watchdog, cgroup, counters, status, needles", [
    # SIGKILL with no evidence of memory: a user's kill -9, a scheduler
    (signal.SIGKILL, None, None, ({"/proc/vmstat": 3}, {"/proc/vmstat": 3}), "error", ["SIGKILL", "from outside"]),
    (signal.SIGKILL, None, None, ({}, {}), "error", ["SIGKILL", "no sign of memory exhaustion"]),
    (signal.SIGKILL, None, _Budget(None), ({"x/memory.events": 0}, {"x/memory.events": 0}), "error", ["SIGKILL"]),
    # other signals are never memory
    (signal.SIGTERM, None, None, ({"/proc/vmstat": 3}, {"/proc/vmstat": 4}), "error", ["killed by SIGTERM"]),
    (signal.SIGSEGV, None, None, ({}, {}), "error", ["killed by SIGSEGV"]),
    (signal.SIGINT, None, None, ({}, {}), "error", ["killed by SIGINT"]),
    # SIGKILL with evidence: the budget watchdog, the budget cgroup's oom_kill, the kernel's counters moving
    (signal.SIGKILL, "cpu_memory budget exceeded: RSS 900 MiB > 512 MiB", None, ({}, {}), "oom", ["budget exceeded"]),
    (signal.SIGKILL, None, _Budget("killed by the kernel's OOM killer at the cpu_memory budget"), ({}, {}), "oom",
     ["OOM killer at the cpu_memory budget"]),
    (signal.SIGKILL, None, None, ({"/proc/vmstat": 3}, {"/proc/vmstat": 4}), "oom", ["/proc/vmstat 3 -> 4"]),
    (signal.SIGKILL, None, None, ({"/sys/fs/cgroup/memory.events": 0}, {"/sys/fs/cgroup/memory.events": 1}), "oom",
     ["memory.events 0 -> 1", "out of memory"]),
])
def test_a_killed_child_is_oom_only_on_evidence_of_memory(tmp_path, monkeypatch, signum, watchdog, cgroup, counters,
                                                          status, needles):
    from harness.executors import local

    trial = _one_trial(tmp_path)
    run = local.ChildRun(trial)
    run.process = _GoneProcess(-int(signum))
    run.watch.budget_reason = watchdog
    run.budget = cgroup
    run.watch.phase, run.watch.epoch = "train", 1
    run.oom_kills_before = counters[0]
    monkeypatch.setattr(local, "kernel_oom_kills", lambda: counters[1])
    rec = run._child_gone()
    assert rec["status"] == status
    for needle in needles:
        assert needle in rec["error"], rec["error"]
    assert (rec["oom"] is not None) == (status == "oom")


def test_kernel_oom_kill_counters_are_read_where_the_kernel_has_them():
    from harness.executors.local import kernel_oom_kills

    counters = kernel_oom_kills()
    assert all(isinstance(v, int) and v >= 0 for v in counters.values())
    if Path("/proc/vmstat").read_text().find("oom_kill ") >= 0:
        assert "/proc/vmstat" in counters


@pytest.mark.parametrize("garbage", [[b"not json at all"], [b'{"no": "trial id"}', b"\xff\xfe"], [b'{"trial_id": "x"']])
def test_report_says_which_lines_of_trials_jsonl_it_skipped(tmp_path, work, fake, capsys, garbage):
    out = tmp_path / "run"
    fake()
    assert main(["run", str(grid6(tmp_path)), "--out", str(out), "--no-report"]) == 0
    good = (out / TRIALS).read_bytes().splitlines()
    mixed = good[:2] + garbage[:1] + good[2:] + garbage[1:]
    (out / TRIALS).write_bytes(b"\n".join(mixed) + b"\n")
    bad_numbers = [i + 1 for i, line in enumerate(mixed) if line in garbage]
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    said = " ".join(capsys.readouterr().out.split())
    shown = ", ".join(map(str, bad_numbers))
    assert f"{len(garbage)} line" in said and f"skipped (line {shown})" in said, said
    assert f"skipped (line {shown})" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.parametrize("n_rates, repeats, workers, said", [
    (1, 1, 1, None), (10, 19, 1, None),
    (10, 20, 1, "200 trials: at 10 s a trial (a tiny model; each trial starts a fresh process that imports torch and "
                "loads its model) that is 33 minutes on one worker, at 1 min a trial 3 hours"),
    (100, 100, 1, "10000 trials: at 10 s a trial (a tiny model; each trial starts a fresh process that imports torch "
                  "and loads its model) that is 28 hours on one worker, at 1 min a trial 7 days"),
    (100, 100, 4, "that is 7 hours on 4 workers, at 1 min a trial 42 hours"),
])
def test_a_long_grid_says_how_long_it_would_take_before_it_starts(tmp_path, work, fake, capsys, n_rates, repeats,
                                                                 workers, said):
    grid = grid6(tmp_path, repeats=repeats, grid__learning_rate=[0.001 * (i + 1) for i in range(n_rates)],
                 grid__batch_size=[2], grid__frozen_layers=[0])
    fake(limit=0)
    assert main(["run", str(grid), "--out", str(tmp_path / "run"), "--no-report", "--workers", str(workers)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    if said is None:
        assert "a trial" not in out, out
    else:
        assert said in out, out
        assert out.index("at 10 s a trial") < out.index("trials (")  # said before the run starts


def test_relative_data_paths_are_read_from_the_grid_files_folder(tmp_path, work, fake, capsys):
    project = tmp_path / "project"
    project.mkdir()
    tiny_csv(project, filename="reviews.csv")
    grid = tiny_grid(project, data__source="reviews.csv", grid__batch_size=[2, 4])
    ex = fake(limit=1)
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--no-report"]) == 0  # started from work/, not project/
    assert "working folder" not in capsys.readouterr().out
    assert len(ex.ran) == 1
    # the trial id does not depend on where the data was found: params keep the path as written
    assert lines_of(out / TRIALS)[0]["params"]["source"] == "reviews.csv"
    assert json.loads((out / "env.json").read_text())["grid_dir"] == str(project)
    # resumed with the run folder's own copy of the grid: still read beside the original grid file
    ex = fake()
    assert main(["run", str(out / "grid.toml"), "--resume", str(out), "--no-report"]) == 0
    assert len(ex.ran) == 1 and len(lines_of(out / TRIALS)) == 2


def test_a_relative_data_path_found_only_in_the_working_folder_still_runs_with_a_note(tmp_path, work, fake, capsys):
    tiny_csv(work, filename="old.csv")  # where harness used to look: the working folder
    elsewhere = tmp_path / "grids"
    elsewhere.mkdir()
    grid = tiny_grid(elsewhere, data__source="old.csv")
    ex = fake()
    assert main(["run", str(grid), "--out", str(tmp_path / "run"), "--no-report"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "not in the grid file's folder" in said and "read from the working folder" in said
    assert len(ex.ran) == 1


def test_default_folders_of_one_name_in_one_second_are_claimed_not_shared(tmp_path):
    """Without --out, a folder that exists (another run's, made in the same second) is never entered."""
    base = tmp_path / "results" / "tiny-20260101T000000Z"
    stores = [RunStore(base) for _ in range(3)]
    for s in stores:
        s.create('name = "tiny"\n', {}, unique=True)
    assert [s.run_dir.name for s in stores] == [base.name, f"{base.name}-2", f"{base.name}-3"]
    for s in stores:
        s.close()
