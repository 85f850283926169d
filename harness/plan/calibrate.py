"""Calibrations: the account's coefficients per (model, device, precision, strategy and its switches), fitted
from one probe child's measurements, stored with the environment they were measured in and reused.

Store: `$HARNESS_CACHE/plan/calibrations.json` (default `~/.cache/harness`), one entry per environment
fingerprint (CPU model and threads, GPU names, Python, torch and transformers versions, the account's
version) and calibration key. `--recalibrate` measures again and replaces the entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .account import (Anatomy, Batches, Coefficients, Setting, first_touch_seconds, head_only, mapping_seconds,
                      memory, seconds, time_features, train_seconds)
from ..config import LORA_SETTINGS
from ..grid import has_adapter
from .batches import Lengths, replay

ACCOUNT_VERSION = 24
KEY_SETTINGS = ("model", "source", "text_column", "split", "device", "precision", "strategy", "optimizer",
                "fused_optimizer", "cache_frozen", "padding", "length_buckets", "frozen_dropout", "attention",
                "num_threads", "compile")


def cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness") / "plan"


def device_type(device: str) -> str:
    return device.split(":")[0]


# With low-rank adapters, what the probes must build the same: config's adapter settings but lora_alpha, which
# only scales (the same work, the same bytes).
ADAPTER_SETTINGS = ("adapter", *(k for k in LORA_SETTINGS if k != "lora_alpha"))


def calibration_key(p: dict[str, Any]) -> dict[str, Any]:
    key = {k: p.get(k) for k in KEY_SETTINGS}
    key["device"] = device_type(str(p["device"]))
    key["momentum"] = float(p.get("momentum") or 0.0) > 0
    if has_adapter(p):  # absent otherwise: the keys (and stored calibrations) as before
        key.update({k: p.get(k) for k in ADAPTER_SETTINGS})
    return key


def key_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def environment() -> dict[str, Any]:
    """What a calibration depends on besides its key."""
    from importlib import metadata

    from ..env import cpu_name
    from ..executors.local import start_method

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    gpus = []
    try:
        import pynvml

        pynvml.nvmlInit()
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            gpus.append(name.decode() if isinstance(name, bytes) else name)
    except Exception:
        pass
    return {"cpu_model": cpu_name(), "threads": len(os.sched_getaffinity(0)), "gpus": gpus,
            "python": sys.version.split()[0], "torch": version("torch"), "transformers": version("transformers"),
            "platform": platform.machine(), "account_version": ACCOUNT_VERSION,
            # forked from the preloaded trial server or a bare interpreter: a different process constant
            "start_method": start_method(),
            "malloc_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "PYTORCH_CUDA_ALLOC"))}}


def env_id(env: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:12]


class Store:
    def __init__(self, root: Path | None = None):
        self.path = (root or cache_root()) / "calibrations.json"

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("version") == ACCOUNT_VERSION:
                return data
        except (OSError, ValueError):
            pass
        return {"version": ACCOUNT_VERSION, "environments": {}}

    def get(self, env: dict[str, Any], key: dict[str, Any]) -> dict[str, Any] | None:
        return self._load()["environments"].get(env_id(env), {}).get("calibrations", {}).get(key_id(key))

    def put(self, env: dict[str, Any], cal: dict[str, Any]) -> None:
        """Add one calibration: read, update and replace the file under an exclusive lock, so that two
        plans calibrating at once keep both entries."""
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_suffix(".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                data = self._load()
                slot = data["environments"].setdefault(env_id(env), {"env": env, "calibrations": {}})
                slot["calibrations"][cal["key_id"]] = cal
                tmp = self.path.with_suffix(f".tmp{os.getpid()}")
                tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
                os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only home: the calibration is still used for this plan, just not kept


# --------------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------------
# The least k_fwd a CPU fit may take. One forward without a graph, measured alone, grew the process by 1.7-2.5 x the
# heap it held (bench/plan/forward_rss.py: MiniLM and DistilBERT, 22 shapes, docs/plan.md); k_fwd rests on one probe
# per key (`fast`'s cache build, `lab`'s frozen forward), and where that probe's peak came out low the fit went
# below any of those (`fast`: 1.16 and 1.31 in two of fourteen calibrations on 2026-12-01), and exactly those two
# under-predicted `fast`'s everything-frozen trials at 256 tokens by 5.4-8.7 %.
K_FWD_FLOOR_CPU = 1.5


def setting_of(p: dict[str, Any], depth: int | None, cached: bool) -> Setting:
    return Setting(depth=depth, cached=cached, optimizer=p["optimizer"], momentum=float(p.get("momentum") or 0.0),
                   multi_tensor=bool(p.get("fused_optimizer")), device=str(p["device"]), epochs=int(p["epochs"]),
                   frozen_dropout=bool(p.get("frozen_dropout")))


def depth_of(frozen: Any) -> int | None:
    return None if frozen == "all" else int(frozen)


def _probe_batches(p: dict[str, Any], shape: dict[str, Any], depth: int | None) -> Batches:
    lengths = Lengths(np.asarray(shape["train_lengths"]), np.asarray(shape["val_lengths"]), 2)
    q = dict(p, batch_size=shape["batch_size"], eval_batch_size=shape["batch_size"], epochs=1,
             max_length=shape["max_length"])
    b = replay(q, lengths, depth, bool(shape["cache_used"]), str(p["device"]))
    b.train = [[tuple(x) for x in shape["train_batches"]]]  # what the probe really ran
    b.eval = [tuple(x) for x in shape["eval_batches"]]
    return b


def memory_metric(device: str) -> str:
    return "cuda_peak_allocated" if device_type(device) == "cuda" else "cpu_peak_rss"


def fit(p: dict[str, Any], probe: dict[str, Any]) -> tuple[Anatomy, Coefficients, list[dict[str, Any]]]:
    """Coefficients from one probe child's result; also each probe shape's measured and fitted figures."""
    fields = set(Anatomy.__dataclass_fields__)
    probe["anatomy"]["cuda_free_after_load"] = probe.get("cuda_free_after_load_bytes")
    anat = Anatomy(**{k: v for k, v in probe["anatomy"].items() if k in fields})
    cuda = device_type(str(p["device"])) == "cuda"
    rows = []
    for sh in probe["shapes"]:
        depth = depth_of(sh["frozen_layers"])
        s = setting_of(p, depth, bool(sh["cache_used"]))
        b = _probe_batches(p, sh, depth)
        measured = sh["cuda_peak_allocated_bytes"] if cuda else sh["cpu_peak_rss_bytes"]
        rows.append((sh, s, b, float(measured)))
    co = Coefficients()
    # Memory: y = C + k_state x (grads + optimiser state) + activations kept for backward + k_act x their
    # slack_feature + k_fwd x a forward's transient, bounded least squares, alternating (which phase sets the
    # peak depends on them).
    from scipy.optimize import lsq_linear

    # The process constant is at least what each probe's process held before its first batch (everything
    # loaded and tokenized, nothing run) less the weights and the data the account counts: measured, so that
    # the fit cannot trade the constant for the slopes (it did: 14 MiB low, and the smallest trials of a
    # frozen encoder under-predicted by 7-10 %). A trial's child holds a little more (its meters), so only
    # a floor.
    floor = 0.0
    if not cuda:
        ready = []
        for sh, s, b, _ in rows:
            if (sh.get("rss_phases") or {}).get("ready"):
                parts = memory(anat, s, b, co)
                ready.append(float(sh["rss_phases"]["ready"]) - parts.weights - parts.data)
        floor = max(0.0, float(np.median(ready))) if ready else 0.0
    for _ in range(5):
        X, y = [], []
        for sh, s, b, measured in rows:
            parts = memory(anat, s, b, co)
            X.append([1.0, parts.grads + parts.optimizer_state, parts.raw_activations, parts.raw_forward])
            # what the phase holds that no coefficient scales (the cache build's second copy of the ids)
            fixed_act = parts.activations - co.k_act * parts.raw_activations - co.k_fwd * parts.raw_forward
            y.append(measured - parts.weights - parts.data - parts.cache - fixed_act - parts.climb)
        # Each probe weighed by 1 / its measured peak: the fit minimises relative errors, as the plan is
        # judged, rather than letting the largest probe's bytes decide the constant of the smallest.
        w = 1.0 / np.asarray([m for *_, m in rows])
        X_, y_ = np.asarray(X) * w[:, None], np.asarray(y) * w
        scale = np.max(np.abs(X_), axis=0) + 1e-30
        # k_state at least 1: gradients and optimiser state are tensors written in full, so the process holds
        # at least their bytes (a fit free to go lower traded them for the constant and the activations, and
        # under-predicted fast's trained trials at 256 tokens by 5-10 %).
        if cuda:  # allocated memory has no process constant beyond what the account counts
            lo, hi = [0.0, 1.0, 0.0, 0.5], [1.0, 2.0, 5.0, 5.0]
        else:
            lo, hi = [floor, 1.0, 0.0, K_FWD_FLOOR_CPU], [np.inf, 3.0, 5.0, 5.0]
        sol = lsq_linear(X_ / scale, y_, bounds=(np.asarray(lo) * scale, np.asarray(hi) * scale)).x / scale
        co.c_bytes, co.k_state, co.k_act, co.k_fwd = (float(v) for v in sol)
    # Time: nonnegative least squares per pass.
    from scipy.optimize import nnls

    Xt, yt, Xe, ye, cache_s, cache_f = [], [], [], [], 0.0, 0.0
    head_t: list[float] = []
    head_e: list[float] = []
    head_first: list[float] = []
    for sh, s, b, _ in rows:
        if sh.get("cache_seconds") and b.cache:
            # what the fresh mappings cost is priced apart (account.mapping_seconds), not in the per-FLOP rates
            cache_s += sh["cache_seconds"] - mapping_seconds(anat, s, [], [], b.cache)["cache"]
            cache_f += time_features(anat, s, [], [], b.cache)["cache_flops"]
        if head_only(s):  # the head on cached vectors: priced apart (Coefficients.t_head)
            head_t += list(sh["train_step_seconds"][1:])
            head_first += list(sh["train_step_seconds"][:1])
            head_e += list(sh["eval_step_seconds"][1:])
            continue
        # Steady state: every batch after the first of each pass, one row per batch.
        for batch, secs in list(zip(b.train[0], sh["train_step_seconds"]))[1:]:
            ft = time_features(anat, s, [batch], [], [])
            Xt.append([ft["train_batches"], ft["train_flops"], ft["train_frozen_flops"], ft["train_param_steps"]])
            yt.append(secs - mapping_seconds(anat, s, [batch], [], [])["train"])
        for batch, secs in list(zip(b.eval, sh["eval_step_seconds"]))[1:]:
            fe = time_features(anat, s, [], [batch], [])
            Xe.append([fe["eval_batches"], fe["eval_flops"]])
            ye.append(secs - mapping_seconds(anat, s, [], [batch], [])["eval"])
    # The optimiser's step per trainable parameter, where the probes timed it (probe._time_optimizer_steps): each
    # steady step's seconds = a constant + ko x the parameters it updates (the first step makes the state).
    # Measured so, ko is taken out of the batches' seconds, and the rest fitted on the FLOPs alone.
    opt_x, opt_y = [], []
    for sh, s, _, _ in rows:
        p_train = float(anat.trainable(s.depth))  # what time_features counts as one step's parameters
        for secs in (sh.get("optimizer_step_seconds") or [])[1:]:
            opt_x.append([1.0, p_train])
            opt_y.append(secs)
    ko_measured = None
    if len(opt_y) >= 2 and len({x[1] for x in opt_x}) >= 2:
        scale_o = np.max(np.abs(opt_x), axis=0) + 1e-30
        ko_measured = float((nnls(np.asarray(opt_x) / scale_o, np.asarray(opt_y))[0] / scale_o)[1])
    Xt_, yt_ = np.asarray(Xt), np.asarray(yt)
    if ko_measured is not None:
        yt_ = yt_ - ko_measured * Xt_[:, 3]
        Xt_ = Xt_[:, :3]
    scale_t = np.max(np.abs(Xt_), axis=0) + 1e-30
    sol_t, _ = nnls(Xt_ / scale_t, yt_)
    sol_t = sol_t / scale_t
    co.t0, co.kt, co.kz = (float(v) for v in sol_t[:3])
    co.ko = ko_measured if ko_measured is not None else float(sol_t[3])
    scale_e = np.max(np.abs(Xe), axis=0) + 1e-30
    sol_e, _ = nnls(np.asarray(Xe) / scale_e, np.asarray(ye))
    co.te0, co.kf = (float(v) for v in sol_e / scale_e)
    co.t_head = float(np.median(head_t)) if head_t else None
    co.te_head = float(np.median(head_e)) if head_e else None
    co.t_head_warm = max(0.0, float(np.median(head_first)) - (co.t_head or 0.0)) if head_first else 0.0
    # Warm-up: what the first batch of a trial costs beyond a steady one, less its first touch of the heap's
    # new pages (account.first_touch_seconds, priced by the growth at the trial's own shape): median over the probes.
    warm = []
    for sh, s, b, _ in rows:
        if sh["train_step_seconds"] and b.train[0] and not head_only(s):
            ft = time_features(anat, s, [b.train[0][0]], [], [])
            steady = train_seconds(co, ft) + mapping_seconds(anat, s, [b.train[0][0]], [], [])["train"]
            warm.append(sh["train_step_seconds"][0] - steady - first_touch_seconds(anat, s, b, co))
    # and what the probe's own first forward (probe.first_forward, before its passes) took of a trial's first batch
    # (one child's result: one figure; calibrate's, merged from its children: one per child)
    firsts = [float(x) for x in np.atleast_1d(probe.get("first_forward_seconds") or []) if x is not None]
    co.warmup_s = max(0.0, float(np.median(warm))) if warm else 0.0
    co.warmup_s += float(np.median(firsts)) if firsts else 0.0
    # What each pass spends outside its batches (a probe's pass less its batches' seconds, which run from handing
    # a batch over to asking for the next: so the collation of each batch is in here too), median; the head-only
    # shapes apart (priced apart, as their batches are).
    def outside(part: str, head: bool) -> float:
        got = [sh[f"{part}_seconds"] - sum(sh[f"{part}_step_seconds"]) for sh, s, *_ in rows
               if sh[f"{part}_step_seconds"] and head_only(s) == head]
        return max(0.0, float(np.median(got))) if got else 0.0

    co.train_pass_s, co.eval_pass_s = outside("train", False), outside("eval", False)
    co.head_train_pass_s, co.head_eval_pass_s = outside("train", True), outside("eval", True)
    co.kc = cache_s / cache_f if cache_f > 0 else co.kf
    co.fixed_s = float(probe["ready_s"])
    loads = [float(x) for x in probe.get("load_peaks") or [] if x]
    co.load_bytes = float(np.median(loads)) if loads and not cuda else 0.0
    n_rows = max(1, int(probe["n_rows"]))
    co.tokenize_s_per_row = float(np.median([sh["tokenize_seconds"] for sh in probe["shapes"]])) / n_rows
    table = []
    no_load = Coefficients(**dict(co.__dict__, load_bytes=0.0))  # a probe's peaks leave its loading out
    for sh, s, b, measured in rows:
        pred = memory(anat, s, b, no_load).total
        t_pred = seconds(anat, s, b, co).train_epoch[0]  # the account's own first epoch of these batches
        table.append({"frozen_layers": sh["frozen_layers"], "batch_size": sh["batch_size"], "max_length": sh["max_length"],
                      "measured_mib": round(measured / 2**20, 1), "fitted_mib": round(pred / 2**20, 1),
                      # each pass's own peak, and the process before the first batch ("ready"), measured
                      "phase_peaks_mib": {k: round(v / 2**20, 1) for k, v in (sh.get("rss_phases") or {}).items()},
                      "train_seconds": round(sh["train_seconds"], 4), "fitted_train_seconds": round(t_pred, 4),
                      "eval_seconds": round(sh["eval_seconds"], 4), "cache_seconds": sh.get("cache_seconds"),
                      "cuda_peak_reserved_mib": (round(sh["cuda_peak_reserved_bytes"] / 2**20, 1)
                                                 if sh.get("cuda_peak_reserved_bytes") else None)})
    return anat, co, table


def anatomy_key(p: dict[str, Any]) -> str:
    """What the anatomy (parameters, FLOP shape, bytes autograd keeps, a forward's transient, the attention's
    timed rates) depends on: not the strategy or the optimiser, so one reading serves every key of a model in a
    plan at its threads and compile setting. On a CPU "auto" precision is fp32 (core.train.resolve_precision),
    so `lab` and `fast` share one reading there."""
    precision = p.get("precision")
    if device_type(str(p["device"])) == "cpu" and precision == "auto":
        precision = "fp32"
    # the threads and compile too: the attention's rates (probe.attention_rates) are timed, on the key's threads
    parts = [p.get("model"), device_type(str(p["device"])), precision, p.get("attention"), p.get("num_threads"),
             p.get("compile"), p.get("trust_remote_code"), p.get("revision")]
    if has_adapter(p):  # read off the model with its adapters
        parts += [p.get(k) for k in ADAPTER_SETTINGS]
    return json.dumps(parts, default=str)


# At most this many probe children at once (probe_lanes). Measured with two: `lab`'s and `fast`'s one-thread
# probes of MiniLM side by side on the 2-core VM read the speed meter at 96 GFLOPS (92-100 alone), and their
# calibration scored three runs of the held-out grid as well as calibrations probed one child at a time
# (docs/plan.md). More lanes share more of the memory bandwidth: not measured, not used.
MAX_PROBE_LANES = 2
# Side by side only where the host has this many times the first probe child's peak free for each lane: the
# largest probe peaked at 1.1-3.3 x the first (`("all", 32, 64)`) in the calibrations of 2026-12-01 (MiniLM
# 1.9-3.0, DistilBERT 2.0-3.3, bert-tiny 1.1-1.2).
LANE_MEMORY_FACTOR = 4.0


def probe_lanes(params: list[dict[str, Any]]) -> int:
    """How many probe children run at once: on a CPU, as many as this process's cores hold the probes' threads
    (a one-thread grid on 2 cores: 2), at most MAX_PROBE_LANES; 1 with any CUDA key (one device, whose
    allocator and clocks a second probe would share) or where the threads fill the cores."""
    if not params or any(device_type(str(p["device"])) != "cpu" for p in params):
        return 1
    cores = len(os.sched_getaffinity(0))  # as a probe's and a trial's default threads count them
    threads = max(int(p.get("num_threads") or cores) for p in params)
    return max(1, min(MAX_PROBE_LANES, cores // max(1, threads)))


def lanes_for_memory(lanes: int, first_peak_bytes: float | None) -> int:
    """`lanes`, or 1 where the host's available memory (and this process's cgroup's room) does not hold
    LANE_MEMORY_FACTOR x the first probe child's peak for each lane (two large probes at once must not push the
    host into swap or its OOM killer)."""
    if lanes <= 1 or not first_peak_bytes:
        return lanes
    import psutil

    from ..executors.budget import cgroup_room

    rooms = [r for r in (int(psutil.virtual_memory().available), cgroup_room()) if r is not None]
    return lanes if min(rooms) >= lanes * LANE_MEMORY_FACTOR * first_peak_bytes else 1


def calibrate_many(params: list[dict[str, Any]], env: dict[str, Any], timeout_s: float = 900.0,
                   anatomies: dict[str, Any] | None = None, lanes: int = 1, say: Any = None,
                   done: Any = None) -> list[dict[str, Any] | Exception]:
    """Run the probes for the calibration key of each trial params in `params` and fit each; returns each stored
    entry, or the exception that failed its probes, in order. One fresh child per probe shape, each peak a new
    process's as a trial's is. The first child of each model reads its anatomy and runs alone, so that the
    anatomy's timed readings (the warm pool, the attention's rates) share the machine with nothing; the other
    children then run `lanes` at a time (one at a time where the host's memory is short: lanes_for_memory).
    `anatomies`: anatomies already read in this plan, by `anatomy_key` (read here where missing, and added).
    `say`: called with one line saying how the children run, once that is decided. `done(i, entry)`: called
    with each calibration fitted, in order; where the probes are interrupted (Ctrl-C), with those whose probes
    had all finished, before the interrupt goes on (the store keeps what was measured)."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    from . import probe as probe_mod
    from .probe import SHAPES

    anatomies = {} if anatomies is None else anatomies
    qs = [dict(p, epochs=1) for p in params]
    parts: list[dict[int, dict[str, Any]]] = [{} for _ in qs]
    spent: dict[tuple[int, int], float] = {}  # each child's seconds, by (calibration, shape)
    failed: dict[int, Exception] = {}
    probe_mod.STOP.clear()
    side_by_side, width = False, 1

    def run(k: int, i: int, read: bool) -> None:
        if k in failed or probe_mod.STOP.is_set():
            return
        started = time.monotonic()
        try:
            # looked up at each call: tests put an in-process runner in its place
            parts[k][i] = probe_mod.run_in_child({"params": qs[k], "shapes": [SHAPES[i]], "anatomy": read},
                                                 timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - fails this calibration, not the others
            failed.setdefault(k, exc)
        finally:
            spent[(k, i)] = time.monotonic() - started

    def fitted(k: int) -> dict[str, Any] | Exception:
        if k in failed:
            return failed[k]
        try:
            return _fitted(qs[k], [parts[k][i] for i in range(len(SHAPES))], dict(anatomies[anatomy_key(qs[k])]),
                           env, sum(v for (kk, _), v in spent.items() if kk == k), width if side_by_side else 1)
        except Exception as exc:  # noqa: BLE001 - a fit that cannot be made fails its calibration alone
            return exc

    try:
        # Each model's anatomy, read by the first child of its first calibration (the next one's where that fails).
        alone = 0
        for k, p in enumerate(qs):
            akey = anatomy_key(p)
            if akey not in anatomies:
                run(k, 0, True)
                alone += 1
                if 0 in parts[k]:
                    anatomies[akey] = parts[k][0]["anatomy"]
        rest = [(k, i) for k in range(len(qs)) for i in range(len(SHAPES)) if i not in parts[k] and k not in failed]
        firsts = [float(r["shapes"][0]["cpu_peak_rss_bytes"]) for got in parts for r in got.values()
                  if r.get("shapes") and r["shapes"][0].get("cpu_peak_rss_bytes")]
        # no peak read (no anatomy child here): nothing to judge the host's memory by, so one at a time
        width = min(lanes, MAX_PROBE_LANES)
        side_by_side = width > 1 and len(rest) > 1 and bool(firsts) and lanes_for_memory(width, max(firsts)) > 1
        if say is not None:
            how = f"{width} at a time" if side_by_side else "one at a time"
            say(f"probes: {len(qs) * len(SHAPES)} child processes, "
                + (f"the first alone, the rest {how}" if alone and side_by_side else how))
        if side_by_side:
            pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="plan-probe")
            futures: list[Any] = []
            try:
                for k, i in rest:
                    futures.append(pool.submit(run, k, i, False))
                # woken every half second, so that a signal's handler (Ctrl-C) runs in this thread at once
                while wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION).not_done:
                    pass
                for f in futures:
                    f.result()
            except BaseException:  # Ctrl-C: start no other child, and end the running ones (their threads return)
                pool.shutdown(wait=False, cancel_futures=True)
                probe_mod.kill_live()
                raise
            finally:
                pool.shutdown(wait=True)
        else:
            for k, i in rest:
                run(k, i, False)
    except BaseException:  # (a child run alone is ended by run_in_child itself; side by side, above)
        if done is not None:  # what was measured in full is kept
            for k in range(len(qs)):
                if k not in failed and len(parts[k]) == len(SHAPES):
                    got = fitted(k)
                    if not isinstance(got, Exception):
                        done(k, got)
        raise
    finally:
        probe_mod.STOP.clear()
    out = [fitted(k) for k in range(len(qs))]
    if done is not None:
        for k, got in enumerate(out):
            if not isinstance(got, Exception):
                done(k, got)
    return out


def _fitted(q: dict[str, Any], parts: list[dict[str, Any]], anatomy: dict[str, Any], env: dict[str, Any],
            probe_wall: float, lanes: int) -> dict[str, Any]:
    """The stored entry of one calibration from its probe children's results (in SHAPES' order)."""
    key = calibration_key(q)
    parts[0] = dict(parts[0], anatomy=anatomy)
    probe = dict(parts[0])
    probe["shapes"] = [sh for r in parts for sh in r["shapes"]]
    probe["ready_s"] = float(np.median([r["ready_s"] for r in parts]))
    probe["load_peaks"] = [r.get("load_peak_rss_bytes") for r in parts]
    probe["first_forward_seconds"] = [r.get("first_forward_seconds") for r in parts]
    probe["spawn_to_ready_s"] = float(np.median([r.get("spawn_to_ready_s") or r["ready_s"] for r in parts]))
    anat, co, table = fit(q, probe)
    reserved_ratio = None
    if device_type(str(q["device"])) == "cuda":
        pairs = [(t["cuda_peak_reserved_mib"], t["measured_mib"]) for t in table if t["cuda_peak_reserved_mib"]]
        reserved_ratio = float(np.median([r / a for r, a in pairs if a])) if pairs else None
    spawn = (probe.get("spawn_to_ready_s") or probe["ready_s"]) - probe["ready_s"]
    speeds = [float(sh["speed_gflops"]) for sh in probe["shapes"] if sh.get("speed_gflops")]
    return {
        "key": key, "key_id": key_id(key), "env_id": env_id(env),
        "measured_at": datetime.now(timezone.utc).isoformat(),
        # its children's seconds one after another (a plan's probes may run some side by side: plan.json's
        # totals.probe_seconds is the plan's own wall time for them)
        "probe_seconds": round(probe_wall, 3),
        "probe_lanes": lanes,  # how many probe children ran at once (the anatomy's always alone)
        "device_name": probe.get("device_name"), "precision": probe.get("precision"),
        "anatomy": probe["anatomy"],
        "coefficients": co.__dict__,
        "spawn_s": round(max(0.0, spawn), 3),
        # the machine's speed while the probes ran (median of one reading per probe, meters/speed.py; null on
        # CUDA): a run's --check scales the time forecast by the trial's own reading over this
        "speed_gflops": round(float(np.median(speeds)), 3) if speeds else None,
        "reserved_over_allocated": reserved_ratio,
        "probe_rows": probe["n_rows"],
        "probes": table,
    }


_LOADED: dict[int, tuple[dict[str, Any], tuple[Anatomy, Coefficients]]] = {}


def loaded(cal: dict[str, Any]) -> tuple[Anatomy, Coefficients]:
    """The calibration's anatomy and coefficients, made once per calibration object: its trials (and the
    largest-batch search's many batch sizes) share the anatomy's replayed forwards."""
    hit = _LOADED.get(id(cal))
    if hit is not None and hit[0] is cal:
        return hit[1]
    fields = set(Anatomy.__dataclass_fields__)
    out = Anatomy(**{k: v for k, v in cal["anatomy"].items() if k in fields}), Coefficients(**cal["coefficients"])
    if len(_LOADED) > 64:
        _LOADED.clear()
    _LOADED[id(cal)] = (cal, out)
    return out
