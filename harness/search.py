"""Largest batch that fits: for each grid point without its batch size, double then bisect, in child processes.

`[search] max_batch = true` (or `harness run --max-batch`) runs, after the grid, for every other grid point
(the grid minus its `batch_size` axis, first repeat): batch sizes from `start_batch`, doubled while the probe
fits, then bisected between the largest that fitted and the smallest that ran out of memory, up to
`max_batch_limit` and the training-set size (batches drop the last partial one). Each probe is a trial of
its own in its own child process (`kind = "probe"`, under the grid's memory budget), of `search_epochs`
epochs cut to `probe_steps` batches per pass (the peak is reached in the first optimiser steps, but for the
heap's climb over the first 10-20 where frozen blocks sit below what trains: such a trial of many steps can peak
a few percent higher; with every block trained, trials of 23-27 steps peaked as the probes did, docs/plan.md). Grid
trials already run at a batch size count as probes (`ok`: fits; `oom`: does not), so they are not run twice.

One record per grid point (`kind = "max_batch"`, `params.search = "max_batch"`, `params.batch_size` the
answer) lands in trials.jsonl: `max_batch`, `smallest_oom_batch`, `batch_limit`, and `probes`, every batch
size tried with its status and peak memory. A probe that fails for another reason than memory (an error, a
timeout) makes the search inconclusive: the record's status is `error` and says which probe.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .grid import Trial, trial_id_of
from .record import TrialRecord, config_key, now_iso

# What a search result's id leaves out of its grid point's settings (the ids of earlier runs' results hold).
SEARCH_SKIP = ("batch_size", "eval_batch_size", "seed")
BATCH_KEYS = ("batch_size", "eval_batch_size")


def group_key(params: dict[str, Any]) -> str:
    """The grid point a search answers for: its configuration (`record.config_key`) without the batch sizes,
    so that the repeats of one configuration (seeds, data seeds) share one search."""
    return config_key(params, ignore=BATCH_KEYS)


def n_train(params: dict[str, Any]) -> int:
    from .core.data import split_sizes

    return split_sizes(int(params["dataset_size"]), float(params["val_fraction"]), params.get("val_rows"))[0]


def _peaks(rec: dict[str, Any]) -> dict[str, Any]:
    mem = rec.get("memory") or {}
    return {k: mem.get(k) for k in ("cpu_peak_rss_mib", "cuda_peak_allocated_mib", "cuda_peak_reserved_mib",
                                    "gpu_peak_used_mib")}


class _ProbeEvents:
    """Executor events for probes: their records are kept here, not written to trials.jsonl."""

    def __init__(self, outer: Any):
        self.outer = outer
        self.record: dict[str, Any] | None = None

    def trial_started(self, trial: Trial) -> None:
        pass

    def trial_event(self, trial: Trial, event: dict[str, Any]) -> None:
        pass

    def trial_finished(self, trial: Trial, record: dict[str, Any]) -> None:
        self.record = record

    def stopping(self) -> bool:
        return bool(self.outer.stopping())


class Search:
    """The search for one grid point."""

    def __init__(self, rep: Trial, cfg: Any, executor: Any, events: Any, console: Any, known: dict[int, dict[str, Any]]):
        self.rep, self.cfg, self.executor, self.events, self.console = rep, cfg, executor, events, console
        self.limit = max(1, min(int(cfg.search.max_batch_limit), n_train(rep.params)))
        self.follows = rep.params.get("eval_batch_size") == rep.params.get("batch_size")
        self.probes: dict[int, dict[str, Any]] = dict(known)
        self.records: list[dict[str, Any]] = []
        self.failed: dict[str, Any] | None = None
        self.stopped = False

    def probe_trial(self, batch: int) -> Trial:
        params = dict(self.rep.params)
        params.update(batch_size=batch, epochs=int(self.cfg.search.search_epochs),
                      max_steps=int(getattr(self.cfg.search, "probe_steps", 3)))
        if self.follows:
            params["eval_batch_size"] = batch
        return dataclasses.replace(self.rep, kind="probe", params=params, repeat=0,
                                   trial_id=trial_id_of({**params, "kind": "probe"}, 0))

    def status(self, batch: int) -> str:
        if batch not in self.probes:
            trial = self.probe_trial(batch)
            sink = _ProbeEvents(self.events)
            self.executor.run([trial], sink)
            if sink.record is None:  # stopped before it finished
                self.stopped = True
                return "stopped"
            rec = sink.record
            self.records.append(rec)
            self.probes[batch] = {"batch_size": batch, "status": rec.get("status"), "source": "probe",
                                  "trial_id": trial.trial_id, **_peaks(rec), "seconds_total": rec.get("seconds_total"),
                                  "cost_usd": rec.get("cost_usd"), "oom": rec.get("oom"), "error": rec.get("error")}
            if self.console is not None:
                peak = rec.get("memory", {}).get("gpu_peak_used_mib") or rec.get("memory", {}).get("cpu_peak_rss_mib")
                self.console.print(f"  max-batch {self.rep.label()}: batch {batch}: {rec.get('status')}"
                                   + (f" (peak {peak:.0f} MiB)" if isinstance(peak, (int, float)) else ""))
        st = self.probes[batch]["status"]
        if st not in ("ok", "oom") and self.failed is None:
            self.failed = self.probes[batch]
        return st

    def run(self) -> tuple[int | None, int | None]:
        """(largest batch that fits, smallest that ran out of memory)."""
        lo, hi = 0, None
        known_oom = [b for b, p in self.probes.items() if p["status"] == "oom"]
        cap = min([self.limit, *known_oom])
        b = max(1, min(int(self.cfg.search.start_batch), cap))
        while True:
            st = self.status(b)
            if st == "ok":
                lo = b
                if b >= self.limit:
                    break
                b = min(b * 2, self.limit, *[x for x in known_oom if x > b] or [self.limit])
            elif st == "oom":
                hi = b
                break
            else:
                return (lo or None), hi
        while hi is not None and hi - lo > 1:
            mid = (lo + hi) // 2
            st = self.status(mid)
            if st == "ok":
                lo = mid
            elif st == "oom":
                hi = mid
            else:
                break
        return (lo or None), hi


def search_max_batch(cfg: Any, trials: list[Trial], executor: Any, events: Any, console: Any = None) -> list[dict[str, Any]]:
    """Run the search for every grid point; each result goes through `events.trial_finished`."""
    groups: dict[str, Trial] = {}
    for t in trials:
        if t.repeat == 0 and t.kind == "train":
            groups.setdefault(group_key(t.params), t)
    store = getattr(events, "store", None)
    try:
        earlier = store.records() if store is not None else list(getattr(events, "records", []))
        done = store.finished_ids() if store is not None else set()
    except Exception:
        earlier, done = list(getattr(events, "records", [])), set()
    progress = getattr(events, "progress", None)
    if progress is not None and hasattr(progress, "total"):
        progress.total += len(groups)
    results = []
    for key, rep in groups.items():
        if events.stopping():
            break
        params = {**{k: v for k, v in rep.params.items()}, "search": "max_batch"}
        result_id = trial_id_of({k: v for k, v in params.items() if k not in SEARCH_SKIP}, 0)
        if result_id in done:
            continue
        known = {}
        for r in earlier:
            rp = r.get("params") or {}
            if r.get("kind", "train") == "train" and r.get("status") in ("ok", "oom") and group_key(rp) == key:
                b = int(rp["batch_size"])
                if known.get(b, {}).get("status") != "oom":  # one OOM at a size is enough to call it too big
                    known[b] = {"batch_size": b, "status": r["status"], "source": "grid trial",
                                "trial_id": r.get("trial_id"), **_peaks(r), "seconds_total": r.get("seconds_total"),
                                "cost_usd": None, "oom": r.get("oom"), "error": r.get("error")}
        if console is not None:
            console.print(f"largest batch for {rep.label()} (limit {min(cfg.search.max_batch_limit, n_train(rep.params))}):")
        started = now_iso()
        s = Search(rep, cfg, executor, events, console, known)
        best, smallest_oom = s.run()
        if s.stopped:
            break
        fit = s.probes.get(best) if best else None
        last = s.records[-1] if s.records else {}
        params["batch_size"] = best
        if s.follows:
            params["eval_batch_size"] = best
        empty = TrialRecord.empty(rep)
        rec = TrialRecord.model_validate({
            **empty.dump(),
            "trial_id": result_id,
            "kind": "max_batch",
            "params": params,
            "started_at": started,
            "finished_at": now_iso(),
            "status": "error" if s.failed else "ok",
            "error": (f"probe at batch {s.failed['batch_size']} ended {s.failed['status']}: {s.failed.get('error')}"
                      if s.failed else None),
            "max_batch": best,
            "smallest_oom_batch": smallest_oom,
            "batch_limit": s.limit,
            "limited_by": ("training set size" if s.limit == n_train(rep.params) else "max_batch_limit")
            if best == s.limit else None,
            "probes": [s.probes[b] for b in sorted(s.probes)],
            "device_name": last.get("device_name"),
            "host": last.get("host") or empty.host,
            "seconds_total": round(sum(r.get("seconds_total") or 0 for r in s.records), 6),
            "cost_usd": (round(sum(r["cost_usd"] for r in s.records), 8)
                         if s.records and all(r.get("cost_usd") is not None for r in s.records) else None),
            "cost_note": f"sum over the {len(s.records)} probe(s) run" if s.records else "no probe run",
        })
        if fit is not None:
            src = next((r for r in s.records if r.get("trial_id") == fit.get("trial_id")), None)
            if src is not None:
                rec.memory = rec.memory.model_validate(src.get("memory") or {})
                rec.memory_note = src.get("memory_note")
                rec.memory_budget = rec.memory_budget.model_validate(src.get("memory_budget") or rec.memory_budget.model_dump())
            else:
                rec.memory = rec.memory.model_copy(update={k: v for k, v in fit.items() if k in type(rec.memory).model_fields})
        if last.get("memory_budget"):
            rec.memory_budget = rec.memory_budget.model_validate(last["memory_budget"])
        rec = rec.dump()
        result_trial = dataclasses.replace(rep, kind="max_batch", trial_id=result_id, params=params)
        events.trial_finished(result_trial, rec)
        results.append(rec)
        if console is not None:
            console.print(f"  -> largest batch that fits: {best if best else 'none'}"
                          + (f" (smallest that ran out of memory: {smallest_oom})" if smallest_oom else "")
                          + (f"; inconclusive: {rec['error']}" if s.failed else ""))
    return results
