"""Run each trial as a Ray task, for grids that outgrow one machine.

Ray does the placement; everything else stays as the local executor does it:

* **One task per trial, a fresh worker per task.** The remote function is declared with `max_calls=1`,
  so Ray starts a new worker process for every trial and ends it afterwards: no state, memory or CUDA
  context is carried from one trial to the next. `max_retries=0`: a trial whose worker dies is reported,
  not silently run a second time somewhere else (see "Failures" below).
* **Resources per trial.** `num_cpus` = the trial's `num_threads` (1 when unset); `num_gpus=1` for a CUDA
  trial. Ray puts the task on a node with that much free, so trials on one node share it only as far as
  their requests allow.
* **The task runs the trial in a child process, exactly as the local executor does.** The task calls the
  local executor's `ChildRun` (what `run_in_child` uses): a spawned, bare interpreter that applies the
  memory budgets and runs `run_trial`, watched by the worker with the same timeout, the same SIGKILL ->
  `oom` rule and the same "complete the last snapshot" handling. Running `run_trial` directly in the Ray
  worker would be simpler but measure something else: the worker's RSS includes Ray's core worker
  (hundreds of MiB, threads, the object-store mapping), `RLIMIT_AS` for a `cpu_memory` budget would
  break the worker itself, and a timeout would need a cancel from the driver that loses the snapshot.
  One extra process start per trial (about what a local trial costs) buys identical records.
* **Only the driver writes.** The task returns the record; the driver calls `events.trial_finished`,
  the one place a record is appended to `trials.jsonl`. Resume, reports and compare work unchanged.
* **Progress.** The task forwards the child's events (phases, epochs, snapshots) to a small actor on
  the driver's node; the driver drains it in its `ray.wait` loop (0.5 s timeout, no busy loop) and passes
  them on as `trial_started` / `trial_event`. The last snapshot it saw is what a failed trial's record
  is completed from.
* **Where a trial ran.** The record's `host` is the worker's host name (set in the child, as locally);
  `env.json` `nodes` collects them. The record also gets `"ray": {"node_id", "node_ip", "worker_pid",
  "gpu_ids"}`.

Failures. A trial that ends inside its child (ok, oom, timeout, error) is recorded as locally. A trial whose
worker or node dies, or whose task fails in Ray itself (`WorkerCrashedError`, `NodeDiedError`,
`RayTaskError`, any other `RayError`), is recorded as `error` with the reason, completed from the last
snapshot the driver saw, and marked `"retry_on_resume": true`: the store does not count such a record as
finished, so `--resume` runs the trial again (its new record supersedes the old one, the last record of a
trial id wins). A task that Ray's memory monitor kills (`ray.exceptions.OutOfMemoryError`) is `oom`, as a
kernel OOM kill is locally, and is not retried. On `stop()` (Ctrl-C, SIGTERM) outstanding tasks are
cancelled with `force=True`, their workers killed (the trial's child dies with its parent), and no record
is written for them: they run again on `--resume`, as locally.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import sys
from typing import Any, Iterable, Iterator

from ..grid import Trial
from ..record import WorkerEvent, load_record, one_line
from .base import Events, Watch

INSTALL_HINT = 'the Ray executor needs Ray: pip install "harness[ray]" (or pip install "ray[default]")'
POLL_S = 0.5          # the driver's ray.wait timeout: how soon a stop or an event is noticed
FLUSH_S = 10.0        # how long a task waits for its last forwarded event before returning its record
DRAIN_TIMEOUT_S = 60.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a `HOST:PORT` nobody listens on (Ray itself retries for many minutes)."""
    if "://" in address or address in ("auto", "local"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address {address}: expected HOST:PORT of a Ray head (for example head-node:6379), "
                         f"ray://HOST:10001 or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ValueError(f"cannot reach a Ray head at {address} ({exc.strerror or exc}); start one there with "
                         f"`ray start --head --port={port}`") from None


def resources_of(trial: Trial) -> dict[str, float]:
    """What a trial asks Ray for: its threads as CPUs (1 when unset), one GPU for a CUDA trial."""
    p = trial.params
    out: dict[str, float] = {"num_cpus": float(p.get("num_threads") or 1)}
    out["num_gpus"] = 1.0 if str(p.get("device", "cpu")).startswith("cuda") else 0.0
    return out


# --------------------------------------------------------------------------------------------------
# The worker side
# --------------------------------------------------------------------------------------------------
class _EventSink:
    """An actor that holds the tasks' forwarded events until the driver drains them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def put(self, trial_id: str, event: dict[str, Any]) -> None:
        self.events.append((trial_id, event))

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        out, self.events = self.events, []
        return out


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """Let the trial's child start as the same bare interpreter as under the local executor.

    `spawn` re-runs the parent's `__main__` in the child; in a Ray worker that is Ray's
    `default_worker.py`, which imports all of Ray into the child (time, and RSS in the trial's memory
    figures). Hidden while the child starts; the worker runs this one task only (`max_calls=1`).
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    missing = object()
    saved_file = main.__dict__.pop("__file__", missing)
    saved_spec = main.__dict__.get("__spec__", missing)
    main.__spec__ = None
    try:
        yield
    finally:
        if saved_file is not missing:
            main.__file__ = saved_file
        if saved_spec is missing:
            main.__dict__.pop("__spec__", None)
        else:
            main.__spec__ = saved_spec


def _for_this_worker(trial: Trial) -> Trial:
    """Ray gives a GPU task its GPU as the only visible one: `cuda:N` runs as `cuda` (device 0)."""
    device = str(trial.params.get("device", "cpu"))
    if device.startswith("cuda:"):
        return dataclasses.replace(trial, params={**trial.params, "device": "cuda"})
    return trial


def trial_task(trial_dict: dict[str, Any], sink: Any) -> dict[str, Any]:
    """The body of the Ray task: run one trial in a child process of this worker, return its record."""
    import ray

    from .local import ChildRun

    trial = Trial.from_dict(trial_dict)
    ctx = ray.get_runtime_context()
    where: dict[str, Any] = {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                             "worker_pid": os.getpid(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}
    last: list[Any] = [None]

    def send(event: dict[str, Any]) -> None:
        if sink is None:
            return
        try:
            last[0] = sink.put.remote(trial.trial_id, event)
        except Exception:  # the driver's node is gone: the record still comes back as the result
            pass

    send(WorkerEvent(host=socket.gethostname(), **where).dump())
    run_as = _for_this_worker(trial)
    run = ChildRun(run_as, lambda _trial, event: send(event), method="spawn")
    try:
        with _bare_main():
            run.start()
        record = load_record(run.wait())
    finally:
        run.close()
    if run_as is not trial:
        record.params = trial.params
        record.note(f"device {trial.params['device']} ran as the GPU Ray assigned to the task (gpu_ids {where['gpu_ids']})")
    record.ray = where
    if last[0] is not None:  # calls from one caller run in order: the last one done means all are
        ray.wait([last[0]], timeout=FLUSH_S)
    return record.dump()


# --------------------------------------------------------------------------------------------------
# The driver side
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Watch(Watch):
    """What the driver knows of one running trial, from its forwarded events."""

    started: bool = False
    where: dict[str, Any] | None = None


class RayExecutor:
    """Submits every trial as a Ray task and records what comes back, in the driver only.

    `address`: a running cluster (`HEAD:6379`, `ray://HEAD:10001`, or `auto`). Without one (and without
    `RAY_ADDRESS` in the environment) a private local Ray instance is started for this run, without a
    dashboard, and shut down by `close()` or when the driver exits. If Ray is already initialised in this
    process (a notebook, a test), that connection is used as is, whatever `address` says.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        ray = _ray()
        self._owns = False
        self._stop = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            common = {"log_to_driver": False, "logging_level": logging.WARNING}
            try:
                if address:
                    check_reachable(address)
                    ray.init(address=address, **common)
                else:
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                             _node_ip_address="127.0.0.1", **common)
            except ConnectionError as exc:  # a wrong or unreachable address: bad input, exit 2 in the CLI
                raise ValueError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
            self._owns = True
        self._task = ray.remote(max_calls=1, max_retries=0)(trial_task)
        self._sink_cls = ray.remote(num_cpus=0, max_restarts=0)(_EventSink)

    # -- the run --------------------------------------------------------------------------------------
    def run(self, trials: Iterable[Trial], events: Events) -> None:
        ray = _ray()
        trials = list(trials)
        self._stop = False
        if not trials or events.stopping():
            return
        self._warn_infeasible(trials)
        sink = self._new_sink()
        pending: dict[Any, _Watch] = {}
        watches: dict[str, _Watch] = {}
        try:
            for trial in trials:
                opts = resources_of(trial)
                ref = self._task.options(name=f"trial-{trial.trial_id}", **opts).remote(trial.to_dict(), sink)
                pending[ref] = watches[trial.trial_id] = _Watch(trial)
            while pending:
                if self._stop or events.stopping():
                    return  # the finally cancels what is left; no record for it (it runs again on --resume)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                sink = self._drain(sink, watches, events)
                for ref in ready:
                    watch = pending.pop(ref)
                    record = self._collect(ref, watch)
                    if self._stop or events.stopping():
                        return
                    if record is None:
                        continue  # cancelled from outside this run: no record, it runs again on --resume
                    if not watch.started:
                        watch.started = True
                        events.trial_started(watch.trial)
                    events.trial_finished(watch.trial, record)
        finally:
            if pending:
                self._cancel(list(pending))
            if sink is not None:
                with contextlib.suppress(Exception):
                    ray.kill(sink)

    def stop(self) -> None:
        """Ask the run to stop: within `POLL_S` its loop cancels every outstanding task (`force=True`).

        Only a flag is set here: this is called from a signal handler, possibly while the main thread is
        inside `ray.wait`, and Ray calls are not made re-entrantly from there.
        """
        self._stop = True

    def close(self) -> None:
        """Shut down the Ray instance this executor started (one it only connected to is left alone)."""
        if self._owns:
            ray = _ray()
            if ray.is_initialized():
                ray.shutdown()
            self._owns = False

    # -- helpers --------------------------------------------------------------------------------------
    def _new_sink(self) -> Any:
        ray = _ray()
        opts: dict[str, Any] = {}
        try:  # keep the sink next to the driver, so that it lives as long as the driver's node
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                                                         soft=True)
        except Exception:
            pass
        try:
            return self._sink_cls.options(**opts).remote()
        except Exception:
            return None  # no progress events; records still come back as results

    def _drain(self, sink: Any, watches: dict[str, _Watch], events: Events) -> Any:
        if sink is None:
            return None
        ray = _ray()
        try:
            batch = ray.get(sink.drain.remote(), timeout=DRAIN_TIMEOUT_S)
        except Exception:
            return None  # the sink is gone; carry on without progress events
        for trial_id, event in batch:
            watch = watches.get(trial_id)
            if watch is None:
                continue
            if isinstance(watch.fold(event), WorkerEvent):
                watch.where = {k: event.get(k) for k in ("host", "node_id", "node_ip", "worker_pid", "gpu_ids")}
            if not watch.started:
                watch.started = True
                events.trial_started(watch.trial)
            events.trial_event(watch.trial, event)
        return sink

    def _collect(self, ref: Any, watch: _Watch) -> dict[str, Any] | None:
        """The task's record, or one completed here from the last snapshot when Ray could not return it."""
        ray = _ray()
        from ray import exceptions as rex

        try:
            record = ray.get(ref)
        except rex.TaskCancelledError:
            return None
        except rex.OutOfMemoryError as exc:
            record = self._abnormal(watch, "oom", f"killed by Ray's memory monitor ({one_line(exc, 300)})")
        except rex.RayError as exc:
            what = {"WorkerCrashedError": "the Ray worker running the trial died",
                    "NodeDiedError": "the node running the trial died",
                    "LocalRayletDiedError": "the node running the trial died"}.get(type(exc).__name__,
                                                                                   "the Ray task failed")
            cause = getattr(exc, "cause", None) if isinstance(exc, rex.RayTaskError) else None
            detail = one_line(cause, 400) if isinstance(cause, BaseException) else one_line(exc, 400)
            record = self._abnormal(watch, "error", f"{what} ({detail}); --resume runs it again")
            record["retry_on_resume"] = True
        record["params"] = watch.trial.params
        return load_record(record).dump()

    def _abnormal(self, watch: _Watch, status: str, reason: str) -> dict[str, Any]:
        where = watch.where or {}
        on = where.get("host") or where.get("node_ip")
        if on:
            reason = f"{reason} [on {on}]"
        record = watch.complete(status, reason)
        if where.get("host") or watch.snapshot is None:  # the trial ran on the worker, not on this driver
            record["host"] = where.get("host")
        if where:
            record["ray"] = {k: where.get(k) for k in ("node_id", "node_ip", "worker_pid", "gpu_ids")}
        return record

    def _cancel(self, refs: list[Any]) -> None:
        ray = _ray()
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):  # let the kills land before the driver goes away
            ray.wait(refs, num_returns=len(refs), timeout=10)

    def _warn_infeasible(self, trials: list[Trial]) -> None:
        """Say so when no node can ever hold a trial (Ray would wait for one to join, silently)."""
        ray = _ray()
        try:
            nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        except Exception:
            return
        seen = set()
        for trial in trials:
            need = resources_of(trial)
            key = (need["num_cpus"], need["num_gpus"])
            if key in seen:
                continue
            seen.add(key)
            if not any(r.get("CPU", 0) >= need["num_cpus"] and r.get("GPU", 0) >= need["num_gpus"] for r in nodes):
                gpus = " and 1 GPU" if need["num_gpus"] else ""
                print(f"harness: warning: no node of the Ray cluster has {need['num_cpus']:g} CPU(s){gpus}; "
                      f"such trials wait until one joins (Ctrl-C stops the run)", file=sys.stderr, flush=True)
