"""`harness plan GRID.toml`: every trial of a grid forecast before it runs; `plan.json` and its table.

For each trial: its batches are replayed from the tokenized rows (`batches.py`), its calibration key's
coefficients are read from the store or measured by probes (`calibrate.py`), and the account
(`account.py`) gives its peak memory, seconds per epoch and per trial, cost, and a verdict against the
grid's memory budget. For each (model, max_length, frozen depth, strategy, ...) the largest batch the
account says fits is found by the same rule `--max-batch` searches with (up to `max_batch_limit` and the
training-set size). A trial the account cannot model gets "cannot predict: <why>"; the rest is planned.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import LORA_SETTINGS
from ..grid import Trial, has_adapter

PLAN_SCHEMA = 1
PLAN_FILE = "plan.json"
MiB = 2**20


@dataclass
class Plan:
    grid_path: str
    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    max_batch: list[dict[str, Any]] = field(default_factory=list)
    calibrations: list[dict[str, Any]] = field(default_factory=list)
    probe_seconds: float = 0.0
    plan_seconds: float = 0.0
    env: dict[str, Any] = field(default_factory=dict)

    def by_trial(self) -> dict[str, dict[str, Any]]:
        return {r["trial_id"]: r for r in self.rows}

    def totals(self) -> dict[str, Any]:
        ok = [r for r in self.rows if r["status"] == "predicted"]
        secs = [r["wall_seconds"] for r in ok]
        costs = [r["cost_usd"] for r in ok if r["cost_usd"] is not None]
        return {
            "trials": len(self.rows), "predicted": len(ok), "cannot_predict": len(self.rows) - len(ok),
            "seconds": round(sum(secs), 1), "hours": round(sum(secs) / 3600, 4),
            "cost_usd": round(sum(costs), 6) if costs else None,
            "cost_note": None if len(costs) == len(ok) else f"{len(ok) - len(costs)} predicted trial(s) have no price",
            "oom": sum(1 for r in ok if r["verdict"] == "oom"),
            "fits": sum(1 for r in ok if r["verdict"] == "fits"),
            "probe_seconds": round(self.probe_seconds, 2),
            "plan_seconds": round(self.plan_seconds, 2),
        }

    def to_json(self) -> dict[str, Any]:
        return {"schema": PLAN_SCHEMA, "kind": "harness-plan", "created_at": datetime.now(timezone.utc).isoformat(),
                "grid": self.grid_path, "name": self.name, "env": self.env, "totals": self.totals(),
                "trials": self.rows, "max_batch": self.max_batch, "calibrations": self.calibrations}


def _budget(trial: Trial) -> tuple[int | None, str]:
    dev = str(trial.params["device"])
    if dev.startswith("cuda"):
        return trial.limits.get("gpu_memory"), "gpu_memory"
    return trial.limits.get("cpu_memory"), "cpu_memory"


def _verdict(peak: float, budget: int | None) -> tuple[str, float | None, float | None]:
    if budget is None:
        return "no budget", None, None
    margin = budget - peak
    return ("fits" if margin >= 0 else "oom"), round(margin / MiB, 1), round(100.0 * margin / budget, 1)


def _cannot(trial: Trial, why: str) -> dict[str, Any]:
    return {"trial_id": trial.trial_id, "index": trial.index, "repeat": trial.repeat, "label": trial.label(),
            "params": _shown(trial.params), "status": "cannot predict", "reason": f"cannot predict: {why}",
            "verdict": None, "wall_seconds": None, "cost_usd": None}


def _shown(p: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "max_length", "dataset_size", "batch_size", "frozen_layers", "strategy", "device", "epochs",
            "optimizer", "precision")
    shown = {k: p.get(k) for k in keys}
    if has_adapter(p):  # absent without one, as in the trial's own params
        shown.update({k: p.get(k) for k in ("adapter", *LORA_SETTINGS)})
    return shown


def predict_trial(trial: Trial, cal: dict[str, Any], lengths: Any) -> dict[str, Any]:
    """One trial's prediction (a `plan.json` row) from its calibration and token lengths."""
    from .account import memory, seconds
    from .batches import replay
    from .calibrate import depth_of, loaded, memory_metric, setting_of
    from ..meters.cost import trial_cost

    p = trial.params
    anat, co = loaded(cal)
    depth = depth_of(p["frozen_layers"])
    if depth is not None and depth > anat.num_layers:
        return _cannot(trial, f"frozen_layers = {depth} but {p['model']} has {anat.num_layers} layers")
    if anat.adapter_params() and len(anat.layer_params) < anat.num_layers:
        return _cannot(trial, f"{p['model']} shares one block across its depth: LoRA on shared blocks is not in the account")
    if depth == anat.num_layers and (anat.adapter_params() or anat.base_other_params == 0):
        # Every block frozen and nothing trained in the base (LoRA freezes the pooler; DistilBERT has none): the
        # Trainer runs it as "all" (the whole encoder's cache, the head alone), and so is it planned.
        depth = None
    cached = bool(p["cache_frozen"]) and (depth is None or depth > 0)
    s = setting_of(p, depth, cached)
    b = replay(p, lengths, depth, cached, str(p["device"]), int(p["max_steps"]) if p.get("max_steps") else None)
    if b.n_train < int(p["batch_size"]):
        note = f"batch_size {p['batch_size']} > {b.n_train} training rows: no training batch (drop_last)"
    else:
        note = None
    mem = memory(anat, s, b, co)
    t = seconds(anat, s, b, co)
    budget, budget_key = _budget(trial)
    metric = memory_metric(str(p["device"]))
    peak = mem.total
    reserved = None
    if metric == "cuda_peak_allocated" and cal.get("reserved_over_allocated"):
        reserved = peak * float(cal["reserved_over_allocated"])
    verdict, margin_mib, margin_pct = _verdict(reserved if reserved is not None else peak, budget)
    wall = t.total + float(cal.get("spawn_s") or 0.0)
    cost, cost_note = trial_cost(cal.get("device_name"), str(p["device"]), wall, trial.prices or {})
    return {
        "trial_id": trial.trial_id, "index": trial.index, "repeat": trial.repeat, "label": trial.label(),
        "params": _shown(p), "status": "predicted", "reason": note,
        "calibration": cal["key_id"],
        "memory": {"metric": metric, "peak_mib": round(peak / MiB, 1),
                   "cuda_peak_reserved_mib": round(reserved / MiB, 1) if reserved is not None else None,
                   "phase": mem.phase,
                   "parts_mib": {k: round(getattr(mem, k) / MiB, 1) for k in
                                 ("constant", "weights", "data", "cache", "grads", "optimizer_state",
                                  "state_overhead", "activations", "climb")}},
        "seconds": {"per_epoch": round(t.per_epoch, 3),
                    "train_per_epoch": round(sum(t.train_epoch) / max(1, len(t.train_epoch)), 3),
                    "eval_per_epoch": round(t.eval_epoch, 3), "cache": round(t.cache, 3),
                    "fixed": round(t.fixed, 3), "tokenize": round(t.tokenize, 3), "total": round(t.total, 3),
                    # the machine's speed while the probes ran (meters/speed.py): what --check scales by
                    "calibration_speed_gflops": cal.get("speed_gflops")},
        "wall_seconds": round(wall, 3),
        "cost_usd": cost, "cost_note": cost_note,
        "budget": {"key": budget_key, "bytes": budget}, "verdict": verdict,
        "margin_mib": margin_mib, "margin_pct": margin_pct,
        "batches": {"train_per_epoch": len(b.train[0]) if b.train else 0, "eval": len(b.eval), "cache": len(b.cache),
                    "train_padded_tokens_epoch1": sum(n * L for n, L in b.train[0]) if b.train else 0},
    }


def largest_batch(trial: Trial, cal: dict[str, Any], lengths: Any, limit: int, budget: int,
                  metric_reserved: bool) -> int | None:
    """The largest batch size (1..limit) the account says fits `budget`, by bisection: the peak grows with the
    batch, except where a larger batch leaves one training step in all (one epoch, a batch past half the
    training rows), whose peak has no optimiser state beside the activations; there the search may answer a
    batch above a smaller one that does not fit, as a trial of that batch would run."""
    import dataclasses

    def fits(bs: int) -> bool:
        params = dict(trial.params, batch_size=bs)
        if trial.params.get("eval_batch_size") == trial.params.get("batch_size"):
            params["eval_batch_size"] = bs
        row = predict_trial(dataclasses.replace(trial, params=params), cal, lengths)
        if row["status"] != "predicted":
            return False
        peak = row["memory"]["cuda_peak_reserved_mib"] if metric_reserved and row["memory"]["cuda_peak_reserved_mib"] \
            else row["memory"]["peak_mib"]
        return peak * MiB <= budget

    if not fits(1):
        return None
    lo, hi = 1, None
    b = 1
    while hi is None:
        nb = min(b * 2, limit)
        if nb == b:
            return b
        if fits(nb):
            lo = b = nb
            if nb == limit:
                return nb
        else:
            hi = nb
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def plan_grid(grid_path: str, recalibrate: bool = False, console: Any = None, store_root: Path | None = None,
              check_devices: bool = True, probe: bool = True, trials: list[Trial] | None = None) -> Plan:
    """Plan every trial of a grid. Bad grid input raises the same errors `harness run` raises. Without
    `probe`, only stored calibrations are used (a key without one: "cannot predict"). `trials`: the grid
    already expanded and checked (by `harness run`)."""
    from ..config import load_grid
    from ..grid import expand
    from ..core.preflight import check
    from ..search import SEARCH_SKIP, group_key, n_train
    from .batches import LengthSource
    from .calibrate import Store, calibrate_many, calibration_key, environment, key_id, probe_lanes

    t_start = time.perf_counter()
    cfg, _ = load_grid(grid_path)
    checked = trials is not None
    if trials is None:
        trials = expand(cfg)
    env = environment()
    store = Store(store_root)
    plan = Plan(grid_path=str(grid_path), name=cfg.name, env=env)
    source = LengthSource(store.path.parent)  # token lengths kept beside the calibrations
    cals: dict[str, dict[str, Any] | str] = {}
    anatomies: dict[str, Any] = {}  # read once per model in this plan, shared by its strategies' calibrations
    kid_of = {t.trial_id: key_id(calibration_key(t.params)) for t in trials}
    stored = {}
    for trial in trials:
        if kid_of[trial.trial_id] not in stored:
            stored[kid_of[trial.trial_id]] = None if recalibrate else store.get(env, calibration_key(trial.params))
    if probe and any(c is None for c in stored.values()):
        # Probes run in children of the trial server: start it now, so that it imports torch and transformers
        # (seconds) on one core while this process reads the trials' token lengths on the other.
        try:
            from ..executors.local import trial_context

            trial_context()
        except Exception:  # noqa: BLE001 - only a head start: the probes start it again, or say why not
            pass
    if not checked:  # after the server's start: its imports (5-6 s, the first probe's wait) begin the sooner
        check(trials, grid_path, check_devices=check_devices)
    lengths: dict[str, Any] = {}
    for trial in trials:
        if not probe and stored[kid_of[trial.trial_id]] is None:
            continue  # cannot be predicted without probes: no tokenizer loaded for it
        try:
            lengths[trial.trial_id] = source.lengths(trial.params)
        except Exception as exc:  # noqa: BLE001 - a tokenizer that cannot be loaded, an odd model
            lengths[trial.trial_id] = " ".join(str(exc).split())[:300] or type(exc).__name__
    to_probe: dict[str, dict[str, Any]] = {}  # key id -> the first trial's params with that key, in grid order
    for trial in trials:
        kid = kid_of[trial.trial_id]
        if kid in cals or kid in to_probe:
            continue
        cal = stored[kid]
        if cal is None and not probe:
            cals[kid] = "no stored calibration (harness plan GRID measures one)"
        elif cal is None:
            to_probe[kid] = trial.params
        else:
            cals[kid] = dict(cal, source="stored calibration")
    if to_probe:
        lanes = probe_lanes(list(to_probe.values()))
        if console is not None:
            for p in to_probe.values():
                console.print(f"calibrating {p['model']} {p['device']} {strategy_label(p)} ...")
        started = time.perf_counter()

        def stored_now(i: int, cal: dict[str, Any]) -> None:  # each one kept as it is fitted (or interrupted)
            cal["source"] = "probes (this plan)"
            store.put(env, cal)

        got = calibrate_many(list(to_probe.values()), env, anatomies=anatomies, lanes=lanes, done=stored_now,
                             say=None if console is None else (lambda line: console.print(f"  {line}")))
        plan.probe_seconds += time.perf_counter() - started
        for kid, cal in zip(to_probe, got):
            if isinstance(cal, Exception):  # a probe that fails makes its trials unpredictable
                text = " ".join(str(cal).split())[:300] or type(cal).__name__
                cals[kid] = f"the calibration probes failed ({text})"
                continue
            cals[kid] = cal
    # in the grid's order of keys, as before
    for kid in dict.fromkeys(kid_of[t.trial_id] for t in trials):
        if isinstance(cals.get(kid), dict):
            plan.calibrations.append(cals[kid])
    for trial in trials:
        cal = cals[kid_of[trial.trial_id]]
        if isinstance(cal, str):
            plan.rows.append(_cannot(trial, cal))
            continue
        if isinstance(lengths.get(trial.trial_id), str):
            plan.rows.append(_cannot(trial, lengths[trial.trial_id]))
            continue
        try:
            plan.rows.append(predict_trial(trial, cal, lengths[trial.trial_id]))
        except Exception as exc:  # noqa: BLE001 - a tokenizer that cannot be loaded, an odd model
            text = " ".join(str(exc).split())[:300] or type(exc).__name__
            plan.rows.append(_cannot(trial, text))
    # Largest batch per grid point without its batch size, under the grid's budget.
    groups: dict[str, Trial] = {}
    for t in trials:
        if t.repeat == 0:
            groups.setdefault(group_key(t.params), t)
    for gk, rep in groups.items():
        budget, budget_key = _budget(rep)
        cal = cals[kid_of[rep.trial_id]]
        lens = lengths.get(rep.trial_id)
        point = {k: v for k, v in _shown(rep.params).items() if k not in SEARCH_SKIP}
        entry: dict[str, Any] = {"point": point, "budget": {"key": budget_key, "bytes": budget}}
        limit = max(1, min(int(cfg.search.max_batch_limit), n_train(rep.params)))
        entry["batch_limit"] = limit
        if budget is None:
            entry.update(max_batch=None, note=f"no {budget_key} budget in [limits]")
        elif isinstance(cal, str) or isinstance(lens, str):
            entry.update(max_batch=None, note=f"cannot predict: {cal if isinstance(cal, str) else lens}")
        else:
            try:
                best = largest_batch(rep, cal, lens, limit, int(budget), bool(cal.get("reserved_over_allocated")))
                entry.update(max_batch=best, note=("even batch 1 is predicted not to fit" if best is None else
                                                   "limited by the training set / max_batch_limit" if best == limit else None))
            except Exception as exc:  # noqa: BLE001
                entry.update(max_batch=None, note=f"cannot predict: {' '.join(str(exc).split())[:200]}")
        plan.max_batch.append(entry)
    plan.plan_seconds = time.perf_counter() - t_start
    return plan


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------
def write_plan(plan: Plan, out_dir: Path) -> Path:
    from ..store import StoreError

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / PLAN_FILE
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(plan.to_json(), indent=1, default=str), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"{out_dir}: cannot write the plan ({exc.strerror or exc})") from None
    return path


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 3600:
        return f"{x / 3600:.2f} h"
    if x >= 60:
        return f"{x / 60:.1f} min"
    return f"{x:.1f} s"


def fmt_epoch_s(x: float | None) -> str:
    """Seconds per epoch for the tables: two decimals under 10 s, so that a head-only epoch over cached vectors
    (0.01-0.2 s) does not read as nothing ("0.0") beside the full epochs."""
    if x is None:
        return "-"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def strategy_label(p: dict[str, Any]) -> str:
    """The strategy, and the adapter where there is one ("fast + lora r=8"): the plan's tables and --check's."""
    if has_adapter(p):
        return f"{p['strategy']} + {p['adapter']} r={p.get('lora_r')}"
    return str(p["strategy"])


def plan_table(plan: Plan) -> Any:
    from rich.table import Table

    t = Table(title=f"plan: {plan.name} ({len(plan.rows)} trials)")
    for col, just in (("trial", "left"), ("model", "left"), ("len", "right"), ("batch", "right"),
                      ("frozen", "right"), ("strategy", "left"), ("peak MiB", "right"), ("s/epoch", "right"),
                      ("total", "right"), ("USD", "right"), ("verdict", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in plan.rows:
        p = r["params"]
        if r["status"] != "predicted":
            t.add_row(r["trial_id"], str(p["model"]), str(p["max_length"]), str(p["batch_size"]), str(p["frozen_layers"]),
                      strategy_label(p), "-", "-", "-", "-", f"[yellow]{r['reason']}[/yellow]")
            continue
        v = r["verdict"]
        if v == "fits":
            vt = f"[green]fits[/green] ({r['margin_mib']:+.0f} MiB)"
        elif v == "oom":
            vt = f"[red]oom[/red] ({r['margin_mib']:+.0f} MiB)"
        else:
            vt = v
        cost = r["cost_usd"]
        t.add_row(r["trial_id"], str(p["model"]), str(p["max_length"]), str(p["batch_size"]), str(p["frozen_layers"]),
                  strategy_label(p), f"{r['memory']['peak_mib']:.0f}", fmt_epoch_s(r["seconds"]["per_epoch"]),
                  _fmt_s(r["wall_seconds"]), "-" if cost is None else f"{cost:.4f}", vt)
    return t


def max_batch_table(plan: Plan) -> Any:
    from rich.table import Table

    t = Table(title="largest batch predicted to fit")
    for col in ("model", "len", "frozen", "strategy", "device", "budget", "max batch", "note"):
        t.add_column(col)
    for e in plan.max_batch:
        p = e["point"]
        b = e["budget"]["bytes"]
        t.add_row(str(p["model"]), str(p["max_length"]), str(p["frozen_layers"]), strategy_label(p), str(p["device"]),
                  "-" if b is None else f"{b / MiB:.0f} MiB", "-" if e["max_batch"] is None else str(e["max_batch"]),
                  e.get("note") or "")
    return t


def print_plan(plan: Plan, console: Any) -> None:
    console.print(plan_table(plan))
    if any(e["budget"]["bytes"] is not None for e in plan.max_batch):
        console.print(max_batch_table(plan))
    tot = plan.totals()
    cost = "-" if tot["cost_usd"] is None else f"{tot['cost_usd']:.4f} USD"
    console.print(f"total: {tot['predicted']} of {tot['trials']} trials predicted, {_fmt_s(tot['seconds'])} "
                  f"({tot['hours']:.3f} h), {cost}; {tot['oom']} predicted out of memory; "
                  f"probes {tot['probe_seconds']:.1f} s, plan {tot['plan_seconds']:.1f} s")
