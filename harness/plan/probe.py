"""Calibration probes: a few training steps at a few small shapes, in an isolated child process like a trial.

`calibrate.calibrate_many` starts one child per probe shape (so that each peak is a fresh process's, as a
trial's is), the first of a model, run alone, also reading its anatomy: parameters per part, FLOP shape, what autograd keeps per block
(counted with `torch.autograd.graph.saved_tensors_hooks` at three lengths) and the storages a forward without
a graph makes and frees, traced at five (n, L) in evaluation and in training mode, and those of a training
step's forward and backward at five (`_LiveBytes`, `fit_trace`), the attention's timed rates and what a fresh
mapping of memory costs (`mapping_seconds`). Each child loads the data and the model as a trial does (the
kernel's peak-RSS mark over the loading is the loading peak), then runs the real `Trainer` for `STEPS` training
and `EVAL_STEPS` evaluation batches at its shape, measuring each pass's peak memory (CPU: the kernel's mark,
reset before the pass and read after it, where `/proc/self/clear_refs` allows, else the meters' 20 ms sampler;
CUDA: `max_memory_allocated` / `max_memory_reserved` after a reset), the RSS before the first batch, the seconds
of each batch and of the cache build, and the padded shape of every batch it ran.

The parent (`calibrate.calibrate_many`, `calibrate.fit`) fits the account's coefficients from these measurements.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import traceback
from typing import Any

from .account import PROBE_STEPS

# the first is warm-up (kernels chosen, pages first touched); the rest are timed as steady. The memory account's
# heap climb counts from this many steps (account.climb_weight).
STEPS = PROBE_STEPS
# Evaluation batches: a warm-up and one steady batch per shape (four or five steady batches for two
# coefficients: under `fast` the head-only shape is priced apart);
# the third cost 2-3 s of the probes and, under `fast`, of the cache they build over these rows too.
EVAL_STEPS = 2
# (frozen_layers, batch_size, max_length), each in a child of its own. "half" is
# resolved to half the model's blocks; a length past the model's positions to the longest it takes.
# The first has no graph to keep and a forward of 2,048 tokens a batch (k_fwd, the heap's share: lab's
# uncached frozen encoder, fast's cache build; the replayed forward carries it to larger batches, so it need
# not be large, and at 128 tokens it cost 4-5 s more of the probes), the last two large ones to keep (k_act);
# the small ones pin the constant and k_state.
# Five shapes for four memory coefficients, so that no one probe's noise is fitted exactly.
# The fourth was (half, 16, 128) until account version 23: at 8 examples it costs 2-3 s less of each
# calibration (the plan of a 24-trial grid was over its 60 s with its probes) and still keeps a graph at 128 tokens.
SHAPES: list[tuple[Any, int, int]] = [("all", 32, 64), ("half", 8, 64), (0, 8, 48), ("half", 8, 128), (0, 16, 128)]
# Lengths of the counted forwards (saved_tensors_hooks, _LiveBytes): long enough that the attention's L^2
# terms show beside the per-token ones.
HOOK_LENGTHS = (32, 64, 128)


def _peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark of this process (VmHWM; Linux 4.0+, `clear_refs` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int | None:
    """The kernel's peak RSS of this process since the last reset (VmHWM), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _PhasePeak:
    """Each phase's peak RSS: the kernel's exact mark where it can be reset (a peak that lasts a few
    milliseconds, such as a frozen encoder's forward at batch 4, slips between a 20 ms sampler's looks, the more
    often the fewer the batches, and a probe runs three), else the sampler's peak over the phase. The probe is
    one process, so its own mark is its tree's."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.exact = _peak_rss_reset()
        self.start = sampler.reset_peak()  # the RSS as the first phase begins

    def end(self) -> int:
        self.sampler.sample(force_refresh=True)
        hwm = _peak_rss() if self.exact else None
        peak = max(self.sampler.peak, hwm or 0)
        self.exact = self.exact and _peak_rss_reset()
        self.sampler.reset_peak()
        return peak


def set_depth(model: Any, frozen: Any, name: str) -> None:
    """What trains at a frozen depth, as a trial sets it: `models.freeze`, or, on a model that carries
    adapters in every block (a LoRA calibration), `adapters.set_adapted_depth` (the adapters below the depth
    off, as `apply_adapter` would not have put them there)."""
    from ..core.adapters import carries_adapters, set_adapted_depth
    from ..core.models import freeze

    if carries_adapters(model):
        set_adapted_depth(model, frozen, name)
    else:
        freeze(model, frozen, name)


def _probe_inputs(model: Any, device: Any, length: int, n: int) -> tuple[Any, Any]:
    """Token ids and attention mask of `n` examples padded to `length`, every example after the first half
    padding (so the attention mask is used), the same every call."""
    import torch

    vocab = int(getattr(model.config, "vocab_size", 1000) or 1000)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(min(1000, vocab - 1), vocab, (n, length), generator=g).to(device)
    mask = torch.ones((n, length), dtype=torch.long)
    mask[1:, length // 2:] = 0
    return ids, mask.to(device)


def first_forward(model: Any, device: Any, precision: str) -> float:
    """One forward of two 8-token examples (the second half padding), in training mode without a graph, before
    anything is measured; its seconds. A process's first forward makes one-off allocations whatever its shape
    (MiniLM, one thread, a fresh process: 49 MiB more RSS after a forward of 1 x 8 tokens, 59 after 4 x 64), which
    a probe otherwise counted in its first pass's peak and the fit could only put into k_fwd, the heap's
    multiple (`lab`: 2.9-4.2 across calibrations, over-predicting its everything-frozen trials at 256 tokens by
    10-23 % and under-predicting its smallest by 5-8 %). Made here, they are in each pass's "ready" RSS, from
    which the fit reads the floor under the process constant. A trial's first batch makes them: the fit adds
    these seconds to the warm-up's."""
    import torch

    from ..core.train import autocast_for

    ids, mask = _probe_inputs(model, device, 8, 2)
    was_training = model.training
    model.train()
    t = time.perf_counter()
    with torch.no_grad(), autocast_for(precision, device)():
        model(input_ids=ids, attention_mask=mask)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t
    model.train(was_training)
    return seconds


def saved_bytes(model: Any, frozen: Any, name: str, device: Any, autocast: Any, length: int, n: int = 2) -> int:
    """Bytes autograd keeps over one training forward of `n` examples padded to `length` (the second example
    half padding, so the attention mask is used), parameters not counted. Storages are counted once."""
    import torch

    set_depth(model, frozen, name)
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Any) -> Any:
        try:
            st = t.untyped_storage()
            ptr = st.data_ptr()
            if ptr not in params and t.device.type != "meta":
                seen[ptr] = max(seen.get(ptr, 0), st.nbytes())
        except Exception:
            pass
        return t

    ids, mask = _probe_inputs(model, device, length, n)
    labels = torch.zeros(n, dtype=torch.long, device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    del out
    return int(sum(seen.values()))


class _LiveBytes:
    """The storages made by the ops run under it (what existed before, such as the parameters and the inputs,
    is not counted), in order: each new storage's bytes and the moment its last tensor made here dies. From it
    the peak of the bytes alive at once (an allocator-free peak of a forward) and the sequence of allocations
    and frees that `account.Anatomy.forward_parts` replays at another shape. Made lazily (torch is imported in
    the child only)."""

    @staticmethod
    def mode(existing: set[int] | None = None) -> Any:
        import weakref

        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_map_only

        class LiveBytes(TorchDispatchMode):
            def __init__(self, existing: set[int] | None = None) -> None:
                super().__init__()
                # storages that existed before (parameters, buffers, inputs): a view of one (a weight's
                # transpose in a linear) is not a new storage
                self.existing = existing or set()
                self.live = 0
                self.peak = 0
                self.refs: dict[int, list[int]] = {}
                self.sizes: list[int] = []     # bytes of each storage, in the order they were made
                self.events: list[int] = []    # i: storage i made; -1 - i: storage i freed
                self.ops: list[str] = []

            def _track(self, t: Any) -> None:
                try:
                    st = t.untyped_storage()
                    ptr, nbytes = st.data_ptr(), st.nbytes()
                except Exception:
                    return
                if not ptr or ptr in self.existing:
                    return
                entry = self.refs.get(ptr)
                if entry is None:  # a new storage: counted until its last tensor made here is gone
                    self.refs[ptr] = [1, nbytes, len(self.sizes)]
                    self.events.append(len(self.sizes))
                    self.sizes.append(nbytes)
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                else:  # a view of a storage already counted
                    entry[0] += 1
                weakref.finalize(t, self._drop, ptr)

            def _drop(self, ptr: int) -> None:
                entry = self.refs.get(ptr)
                if entry is not None:
                    entry[0] -= 1
                    if entry[0] == 0:
                        self.live -= entry[1]
                        self.events.append(-1 - entry[2])
                        del self.refs[ptr]

            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                self.ops.append(str(func))
                tree_map_only(torch.Tensor, self._track, out)
                return out

        return LiveBytes(existing)


def forward_trace(model: Any, device: Any, autocast: Any, length: int, n: int = 2, train: bool = False) -> Any:
    """One forward without a graph (evaluation, the frozen prefix, the cache's build) of `n` examples padded to
    `length`, the inputs `saved_bytes` feeds, counted by `_LiveBytes`; `train`: in training mode (dropout on),
    as frozen blocks run under `frozen_dropout`. Returns the finished mode (its peak, sizes, events, ops)."""
    import torch

    model.train(train)
    ids, mask = _probe_inputs(model, device, length, n)
    existing = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers(), ids, mask)}
    mode = _LiveBytes.mode(existing)
    with torch.no_grad(), autocast(), mode:
        out = model(input_ids=ids, attention_mask=mask)
    del out  # the last references: the storages' finalizers run here
    return mode


def step_trace(model: Any, name: str, device: Any, autocast: Any, length: int, n: int = 2) -> Any:
    """One training step's forward and backward with every block trained (the loss from labels, as the Trainer
    computes it), of `n` examples padded to `length`, counted by `_LiveBytes`: the storages a trained block
    makes, gradients of the activations included. The parameters' gradients are set to None first, so they
    count as storages of a constant size."""
    import torch

    set_depth(model, 0, name)
    model.train()
    model.zero_grad(set_to_none=True)
    ids, mask = _probe_inputs(model, device, length, n)
    labels = torch.zeros(n, dtype=torch.long, device=device)
    existing = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers(), ids, mask, labels)}
    mode = _LiveBytes.mode(existing)
    with mode:
        with autocast():
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        del out
    model.zero_grad(set_to_none=True)
    return mode


# The training step's trace: five points fix each storage's law (fit_trace); at 16 to 64 tokens its replay at
# 64 x 256 and 4 x 512 equals that of points at 32 and 128 within 1 % (MiniLM), in under half the time. (A
# single example has no padding, and sdpa then drops the mask: other ops, no fit.)
STEP_TRACE_POINTS = ((2, 16), (4, 16), (2, 64), (4, 64), (3, 32))
# Fresh mappings timed against a buffer already mapped: alternated pairs after a warm-up, the median.
MAPPING_BYTES = 48 * 2**20
MAPPING_PAIRS = 10


class _Fresh:
    """`nbytes` of fresh anonymous memory (a mapping of its own, as glibc makes for a block of 32 MiB or more)
    seen as a torch uint8 tensor; `close` unmaps it."""

    def __init__(self, nbytes: int) -> None:
        import mmap

        import torch

        # private, as malloc's are (an anonymous mmap is shared by default: shmem pages, dearer faults)
        self._map = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.tensor = torch.frombuffer(self._map, dtype=torch.uint8)

    def close(self) -> None:
        del self.tensor
        self._map.close()


def mapping_seconds(device: Any, pool: bool = True) -> dict[str, Any] | None:
    """Seconds per byte that a storage served by a mapping of its own costs beyond the same bytes written to
    memory already mapped: the page faults that map it (the kernel zeroing each page) and its unmapping when
    freed. glibc serves every block of 32 MiB or more so (account.MMAP_THRESHOLD) and unmaps it when freed, so
    a trial whose activations are that large maps them afresh every step, which probes at small shapes never do
    (MiniLM, 64 x 256, a forward in training mode without a graph: 1.5-1.8 million minor faults, the account's
    replayed trace 1.77 million pages; 8.0-8.5 s a forward with glibc told never to map, 10.1-15.6 s without).
    Written by torch, as a trial's tensors are, into a mapping of its own (`_Fresh`): a tensor from the allocator
    can come from a free chunk of a heap that earlier work grew (random:distilbert-base's anatomy child: the
    48 MiB "fresh" tensor cost what a rewrite does, 0.003 microseconds a page, in every calibration of it on
    record). None on CUDA and off Linux (another allocator's rule). `pool`: read the host's warm pool too
    (`warm_pool`; else "pool" is None)."""
    import sys

    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return None
    import numpy as np

    kept = _Fresh(MAPPING_BYTES)
    kept.tensor.fill_(0)
    diffs, fresh_s = [], []
    for i in range(MAPPING_PAIRS + 1):
        t = time.perf_counter()
        fresh = _Fresh(MAPPING_BYTES)
        fresh.tensor.fill_(1)
        fresh.close()
        t_fresh = time.perf_counter() - t
        t = time.perf_counter()
        kept.tensor.fill_(1)
        t_kept = time.perf_counter() - t
        if i:  # the first pair is warm-up
            diffs.append((t_fresh - t_kept) / MAPPING_BYTES)
            fresh_s.append(t_fresh / MAPPING_BYTES)
    kept.close()
    return {"seconds_per_byte": max(0.0, float(np.median(diffs))), "bytes": MAPPING_BYTES,
            "readings": [float(x) for x in diffs], "fresh_seconds_per_byte": float(np.median(fresh_s)),
            "pool": warm_pool(float(np.median(fresh_s))) if pool else None}


# The host's warm pool: first touches 64 MiB at a time, up to 4 GiB (or half the memory available, or
# $HARNESS_PLAN_POOL_CAP_MIB: the tests keep it small), stopping after a few cold chunks.
POOL_CHUNK = 64 * 2**20
POOL_CAP = 4 * 2**30
POOL_COLD_CHUNKS = 4
POOL_COLD_FACTOR = 3.0


def pool_cap() -> int:
    """The most the reading touches: POOL_CAP, $HARNESS_PLAN_POOL_CAP_MIB, and half of what the machine
    (MemAvailable) and this process's cgroup have room for (a container's MemAvailable is its host's)."""
    cap = POOL_CAP
    try:
        cap = min(cap, int(float(os.environ.get("HARNESS_PLAN_POOL_CAP_MIB") or "inf") * 2**20))
    except (ValueError, OverflowError):
        pass
    import psutil

    from ..executors.budget import cgroup_room

    for room in (int(psutil.virtual_memory().available), cgroup_room()):
        if room is not None:
            cap = min(cap, max(0, room) // 2)
    return cap


def _cold(x: float, fresh_s_per_byte: float) -> bool:
    return x > POOL_COLD_FACTOR * fresh_s_per_byte


def pool_knee(chunk_s: list[float], fresh_s_per_byte: float, chunk: int = POOL_CHUNK) -> dict[str, Any]:
    """From each fresh chunk's seconds per byte (first touched in order, all kept): the bytes touched before the
    last run of chunks that cost more than POOL_COLD_FACTOR x the warm price, when that run reaches the end
    (`hot_bytes`; None: the last chunk was warm, so no cold stretch was reached), and what a cold byte costs
    beyond a warm one (the run's median less the warm chunks' before it; the warm price itself where the first
    chunk was already cold). A lone slow chunk among warm ones (a stall on a busy host) is not the pool's end."""
    import numpy as np

    if not chunk_s or not _cold(chunk_s[-1], fresh_s_per_byte):
        return {"hot_bytes": None, "cold_seconds_per_byte": 0.0}
    start = len(chunk_s)
    while start > 0 and _cold(chunk_s[start - 1], fresh_s_per_byte):
        start -= 1
    warm = [x for x in chunk_s[:start] if not _cold(x, fresh_s_per_byte)] or [fresh_s_per_byte]
    return {"hot_bytes": float(start * chunk),
            "cold_seconds_per_byte": max(0.0, float(np.median(chunk_s[start:]) - np.median(warm)))}


def warm_pool(fresh_s_per_byte: float) -> dict[str, Any]:
    """How many bytes of fresh pages come at the price `mapping_seconds` reads, and what those beyond cost.

    A guest that reports its free memory to its host (virtio free page reporting) hands the pages it frees back
    within a second or so, keeping a pool of a GiB or two, and the host faults each page it took back in again
    when the guest next touches it. This VM, one thread, fresh 64 MiB chunks kept and first touched in order:
    about 1.3 microseconds a page for the first 1.3-3.0 GiB, then about 11 (two threads: 0.7, then 6); what was
    freed in the last second also comes warm. A training step keeps its activations until its backward, so a
    large one outgrows the pool (MiniLM at 64 x 256, everything trained: 7.4 GiB in its first step): such trials'
    epochs took 1.5-2.1x a forecast that priced every page warm (`account.cold_seconds`).

    Touches fresh POOL_CHUNK mappings on the process's torch threads (written in full, kept until the end) until
    POOL_COLD_CHUNKS in a row cost more than POOL_COLD_FACTOR x `fresh_s_per_byte` (a fresh buffer's own write,
    warm) or `pool_cap()` bytes are touched (`pool_knee`). The reading is optional: where a mapping cannot be
    made, `hot_bytes` is None (nothing priced) and `error` says why."""
    cap = pool_cap()
    kept, chunk_s = [], []
    error = None
    t_start = time.perf_counter()
    try:
        while (len(kept) + 1) * POOL_CHUNK <= cap:
            t = time.perf_counter()
            buf = _Fresh(POOL_CHUNK)
            kept.append(buf)
            buf.tensor.fill_(1)
            chunk_s.append((time.perf_counter() - t) / POOL_CHUNK)
            if len(chunk_s) >= POOL_COLD_CHUNKS and all(_cold(x, fresh_s_per_byte)
                                                         for x in chunk_s[-POOL_COLD_CHUNKS:]):
                break
    except (OSError, RuntimeError, MemoryError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        seconds = time.perf_counter() - t_start
        for buf in kept:
            buf.close()
    knee = pool_knee(chunk_s, fresh_s_per_byte) if error is None else {"hot_bytes": None, "cold_seconds_per_byte": 0.0}
    return dict(knee, chunk_bytes=POOL_CHUNK, cap_bytes=int(cap), seconds=round(seconds, 3),
                chunk_seconds_per_byte=[float(x) for x in chunk_s], error=error)


# A first reading of the warm pool at least this large needs no second (`pool_settled`).
POOL_SETTLED_BYTES = 2**30


def pool_settled(reading: dict[str, Any] | None) -> bool:
    """Whether a mapping reading's warm pool needs no second reading (`larger_pool`): it read at least
    POOL_SETTLED_BYTES, or turned cold nowhere under its cap. The second reading can only raise the pool, and in
    the 20 pairs on record (MiniLM and DistilBERT anatomies, 2026-12-01; firsts of 0.94-3.31 GiB or the cap) it
    read less than the first every time, 0.12-0.75 GiB less: so it is taken only after a low or failed first
    reading, such as the 0.31 GiB one in `larger_pool`, and the 1-2 s it costs are saved everywhere else."""
    if reading is None or reading.get("pool") is None:
        return False
    pool = reading["pool"]
    if pool.get("error"):
        return False
    return pool["hot_bytes"] is None or pool["hot_bytes"] >= POOL_SETTLED_BYTES


def larger_pool(first: dict[str, Any] | None, last: dict[str, Any] | None) -> dict[str, Any] | None:
    """The last mapping reading, its warm pool the larger of two readings' (one that saw no cold chunk counts
    as its cap): a reading finds the pool as the host has left it at that moment, and one of nine this session
    on this VM read 0.31 GiB where the rest read 1.3-3.8 (random:distilbert-base with LoRA, whose trials then
    came 10-40 % under their forecast); a trial meets the pool after the trial before it has freed its pages.
    Both readings are kept (`pool_readings`). A last reading without a pool (`pool_settled` first) keeps the
    first's."""
    if last is None or first is None:
        return last
    pools = [p for p in (first["pool"], last["pool"]) if p is not None]
    if not pools:
        return dict(last, pool_readings=[])
    seen = [p for p in pools if p["hot_bytes"] is not None]
    out = dict(last, pool=last["pool"] or pools[0], pool_readings=pools)
    if not seen:
        return out
    import numpy as np

    out["pool"] = dict(out["pool"], hot_bytes=max(p["hot_bytes"] if p["hot_bytes"] is not None else float(p["cap_bytes"])
                                                   for p in pools),
                       cold_seconds_per_byte=float(np.median([p["cold_seconds_per_byte"] for p in seen])))
    return out


def fit_trace(points: list[tuple[int, int]], traces: list[Any]) -> dict[str, Any] | None:
    """Each storage's bytes as c + e x n + d x L + a x (n L) + b x (n L^2) over the traced (n, L) (five points
    at least: the position ids and embeddings are L long whatever the batch, the labels and the loss's
    per-example terms n long whatever the length), and the order of the allocations and frees, where every
    point ran the same ops in the same order (else None: the account then uses the counted peak alone)."""
    import numpy as np

    first = traces[0]
    if any(t.ops != first.ops or t.events != first.events for t in traces[1:]):
        return None
    X = np.asarray([[1.0, n, length, n * length, n * length * length] for n, length in points])
    S = np.asarray([t.sizes for t in traces], dtype=float)
    coef = np.linalg.lstsq(X, S, rcond=None)[0].T  # storages x 5
    return {"sizes": [[round(float(c), 1), round(float(e), 4), round(float(d), 4), round(float(a), 4),
                       round(float(b), 6)] for c, e, d, a, b in coef],
            "events": list(first.events), "points": [list(p) for p in points]}


# The attention's elementwise work (the mask, softmax and dropout over n x heads x L x L scores) takes time that
# a FLOP count does not see: MiniLM's forward in training mode without a graph, 512 tokens a pass, took 0.20 s
# at 8 x 64 and 0.32 s at 2 x 256 (1 thread, 2026-11-30), FLOPs 8 % apart. Probes stop at 128 tokens, so a
# per-FLOP rate fitted on them priced `lab` at 256 tokens (every batch padded there, the frozen blocks with
# dropout on) short in every run on record, by 20-66 % in account version 12's two runs (docs/plan.md). So the
# probe measures what a score element costs against a FLOP: two forwards over the same tokens at 64 and 256
# tokens an example, alternated, so that the machine's drift between them cancels in their ratio.
ATTENTION_POINTS = ((4, 64), (1, 256))
ATTENTION_ROUNDS = 3


def attention_rates(model: Any, name: str, device: Any, precision: str) -> dict[str, Any] | None:
    """FLOP-equivalents of one attention score element (per block: n x L^2 of them a pass; None: no reading),
    by how a forward runs: "grad" (training mode, forward and backward: trained blocks), "train" (training mode
    without a graph: frozen blocks under `frozen_dropout`) and "eval" (evaluation mode without a graph:
    evaluation, the cache's build, other frozen blocks). From R = t(1 x 256) / t(4 x 64), the median of ATTENTION_ROUNDS alternated
    pairs after a warm-up of each: R (F1 + rho S1) = F2 + rho S2, F the counted FLOPs and S the score elements.
    None on CUDA, whose forwards at these sizes are launch-bound: their ratio measures the launches."""
    if device.type != "cpu":
        return None
    import numpy as np
    import torch

    from ..core.models import anatomy, encoder_shape
    from ..core.train import autocast_for
    from ..meters.flops import Work, _no_input_grad, trial_flops
    from .account import rate_from_ratio, score_elements

    autocast = autocast_for(precision, device)
    shape = encoder_shape(model)
    blocks = shape.num_layers
    set_depth(model, 0, name)
    # The embeddings' gradient (vocabulary x hidden, zeroed and scattered every backward) is the same cost at
    # both points: it would pull the ratio toward 1. Freezing them costs block 0 its input gradient, at both.
    for param in anatomy(model).embeddings.parameters():
        param.requires_grad_(False)
    inputs = {}
    for n, length in ATTENTION_POINTS:
        # Every example with its last eighth padded, at both points: the same share of real tokens, and a mask
        # at both (an all-ones mask lets sdpa drop it and take another kernel, which trials, padded, do not).
        ids, mask = _probe_inputs(model, device, length, n)
        mask = torch.ones_like(mask)
        mask[:, length - length // 8:] = 0
        inputs[(n, length)] = (ids, mask)

    def timed(point: tuple[int, int], mode: str) -> float:
        ids, mask = inputs[point]
        model.train(mode != "eval")
        t = time.perf_counter()
        if mode == "grad":
            with autocast():
                out = model(input_ids=ids, attention_mask=mask)
            out.logits.float().sum().backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), autocast():
                model(input_ids=ids, attention_mask=mask)
        return time.perf_counter() - t

    out: dict[str, Any] = {"points": [list(p) for p in ATTENTION_POINTS], "ratios": {}, "flops": {}, "scores": {}}
    for mode in ("grad", "train", "eval"):
        flops = []
        for n, length in ATTENTION_POINTS:
            w = Work.from_batches([(n, length)])
            if mode == "grad":  # less block 0's input gradient, which the frozen embeddings do not need
                # (with adapters, every base weight is frozen and the count leaves it out already)
                flops.append(trial_flops(shape, 0, False, [w], []).total
                             - (0.0 if shape.adapter_params else _no_input_grad(shape, 0, w)))
            else:
                flops.append(trial_flops(shape, 0, False, [], [w]).total)
        scores = [score_elements([point], blocks) for point in ATTENTION_POINTS]
        out["flops"][mode], out["scores"][mode] = flops, scores
        for point in ATTENTION_POINTS:  # warm-up: kernels chosen, pages first touched
            timed(point, mode)
        ratios = []
        for _ in range(ATTENTION_ROUNDS):
            t1 = timed(ATTENTION_POINTS[0], mode)
            ratios.append(timed(ATTENTION_POINTS[1], mode) / t1)
        r = float(np.median(ratios))
        out[mode] = rate_from_ratio(r, (flops[0], flops[1]), (scores[0], scores[1]))
        out["ratios"][mode] = r
    model.zero_grad(set_to_none=True)
    return out


def read_anatomy(model: Any, name: str, device: Any, precision: str) -> dict[str, Any]:
    import dataclasses

    import numpy as np

    from ..core.models import anatomy
    from ..core.train import autocast_for, compute_dtype
    from ..core.models import encoder_shape

    parts = anatomy(model)
    n = parts.num_layers
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    total = count(model)
    base = count(parts.base)
    emb = count(parts.embeddings)
    layers = [count(layer) for layer in parts.layers]
    from ..core.adapters import carries_adapters

    adapters = carries_adapters(model)
    autocast = autocast_for(precision, device)
    measured: dict[str, list[float]] = {"block": [], "emb": [], "top": [], "all": []}
    # The forward without a graph at (examples, length), traced storage by storage. Each storage's bytes are an
    # exact c + e n + d L + a n L + b n L^2 (fit_trace), so batches of 2 to 4 give the same laws as 8 and 16
    # (MiniLM: the replays at 4 x 64 to 430 x 128 equal to 0.1 MiB) at a quarter of the work. (The counted
    # peaks alone, the fallback where traces differ, read the per-token bytes at 2-4 examples, where MiniLM's
    # are 12.5 KB against 16.8 at 48: the peak's make-up shifts with the batch, which the replay follows and a
    # per-token rate does not.)
    fwd_points = [(2, HOOK_LENGTHS[0]), (4, HOOK_LENGTHS[0]), (2, HOOK_LENGTHS[-1]), (4, HOOK_LENGTHS[-1]),
                  (3, HOOK_LENGTHS[1])]
    # Each mode traced with the adapters (a LoRA calibration's) as they mostly run in it: evaluation over adapted
    # blocks (depth 0), frozen blocks under frozen_dropout without any. (A plain model: no difference without a graph.)
    set_depth(model, 0, name)
    eval_traces = [forward_trace(model, device, autocast, length, n) for n, length in fwd_points]
    fwd_peaks = [float(t.peak) for t in eval_traces]
    # The same forwards in training mode (dropout's masks and copies), as frozen blocks run under frozen_dropout.
    set_depth(model, "all", name)
    train_traces = [forward_trace(model, device, autocast, length, n, train=True) for n, length in fwd_points]
    fwd_trace = {"eval": fit_trace(fwd_points, eval_traces), "train": fit_trace(fwd_points, train_traces)}
    del eval_traces, train_traces
    # A training step with every block trained, forward and backward: what a trained block maps afresh (glibc's
    # rule, so on a CPU only; on CUDA nothing reads it)
    if device.type == "cpu":
        step_traces = [step_trace(model, name, device, autocast, length, n) for n, length in STEP_TRACE_POINTS]
        fwd_trace["grad"] = fit_trace(list(STEP_TRACE_POINTS), step_traces)
        del step_traces
    for length in HOOK_LENGTHS:
        s0 = saved_bytes(model, 0, name, device, autocast, length)
        s_all = saved_bytes(model, "all", name, device, autocast, length)
        s_top = saved_bytes(model, n - 1, name, device, autocast, length) if n >= 1 else s_all
        if n >= 3:
            s1 = saved_bytes(model, 1, name, device, autocast, length)
            block = (s1 - s_top) / (n - 2)
            emb_b = s0 - s1 - block
        else:
            block = (s0 - s_top) / max(1, n - 1) if n >= 2 else s0 - s_all
            emb_b = 0.0
        measured["block"].append(block / 2)
        measured["emb"].append(max(0.0, emb_b) / 2)
        # With adapters the lowest adapted block keeps less than the others (its frozen Q, K, V need no input
        # for backward): what sits above the blocks comes out below zero, and is kept so (Anatomy.saved_bytes
        # bounds the total).
        measured["top"].append((s_top - block if adapters else max(0.0, s_top - block)) / 2)
        measured["all"].append(s_all / 2)
    lengths = np.asarray(HOOK_LENGTHS, dtype=float)
    # Per example a L + b L^2, plus c per block whatever the batch (under autocast, the low-precision copies
    # of the block's weights that backward keeps); measured at n = 2, so c / 2 per example.
    c2, a, b = np.linalg.lstsq(np.stack([np.ones_like(lengths), lengths, lengths**2], 1), np.asarray(measured["block"]),
                               rcond=None)[0]
    e = float(np.linalg.lstsq(lengths[:, None], np.asarray(measured["emb"]), rcond=None)[0][0])
    t0, t1 = np.linalg.lstsq(np.stack([np.ones_like(lengths), lengths], 1), np.asarray(measured["top"]), rcond=None)[0]
    h0, h1 = np.linalg.lstsq(np.stack([np.ones_like(lengths), lengths], 1), np.asarray(measured["all"]), rcond=None)[0]
    # The forward without a graph: f_c once plus, per example, f_a L + f_b L^2 (counted: the live tensors' peak,
    # see _LiveBytes).
    fn = np.asarray([float(n) for n, _ in fwd_points])
    fl = np.asarray([float(length) for _, length in fwd_points])
    f_c, f_a, f_b = np.linalg.lstsq(np.stack([np.ones_like(fn), fn * fl, fn * fl**2], 1), np.asarray(fwd_peaks),
                                    rcond=None)[0]
    cfg = model.config
    hidden = int(getattr(cfg, "hidden_size", None) or getattr(cfg, "dim", 768))
    return {
        "num_layers": n, "hidden": hidden, "total_params": total, "embedding_params": emb, "layer_params": layers,
        "base_other_params": base - emb - sum(layers), "head_params": total - base,
        "param_bytes": next(model.parameters()).element_size(),
        "act_dtype_bytes": compute_dtype(precision).itemsize,
        "block_a": float(a), "block_b": float(b), "block_c": max(0.0, 2.0 * float(c2)), "emb_a": max(0.0, e), "top0": float(t0) if adapters else max(0.0, float(t0)),
        "top1": float(t1), "all0": max(0.0, float(h0)), "all1": max(0.0, float(h1)),
        "flops_shape": dataclasses.asdict(encoder_shape(model)),
        "fwd_a": max(0.0, float(f_a)), "fwd_b": max(0.0, float(f_b)), "fwd_c": max(0.0, float(f_c)),
        "fwd_trace": fwd_trace,
        "saved_bytes_per_example": {k: [round(v) for v in vals] for k, vals in measured.items()},
        "forward_peak_bytes": [[n, length, round(v)] for (n, length), v in zip(fwd_points, fwd_peaks)],
        "hook_lengths": list(HOOK_LENGTHS),
    }


def _time_optimizer_steps(optimizer: Any, device: Any) -> list[Any]:
    """Times each `optimizer.step()` from here on (the list fills as the Trainer steps; `_step_seconds` reads it):
    what a step costs per trainable parameter is measured apart rather than fitted beside the FLOPs, with which
    it grows in step where the probes train more blocks at larger batches (DistilBERT under `fast`: the fit put
    it all on the FLOPs, 31 % dearer than `lab`'s, and priced the trials' larger batches 24-42 % over). On CUDA
    with a pair of events around each step, so that nothing is synchronised that a trial would overlap."""
    import torch

    timings: list[Any] = []
    step = optimizer.step

    def timed(*args: Any, **kwargs: Any) -> Any:
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = step(*args, **kwargs)
            end.record()
            timings.append((start, end))
            return out
        t = time.perf_counter()
        out = step(*args, **kwargs)
        timings.append(time.perf_counter() - t)
        return out

    optimizer.step = timed
    return timings


def _step_seconds(timings: list[Any]) -> list[float]:
    out = []
    for x in timings:
        if isinstance(x, tuple):
            x[1].synchronize()
            out.append(x[0].elapsed_time(x[1]) / 1e3)
        else:
            out.append(float(x))
    return out


def run_shapes(spec: dict[str, Any], send: Any) -> dict[str, Any]:
    """The child's work (also callable in-process by tests): load, read the anatomy, run every shape."""
    t_start = time.perf_counter()
    exact = _peak_rss_reset()  # from here the kernel's mark is this child's loading, as a trial's child's is
    import torch

    from ..core import data as D
    from ..core.cache import release_free_heap
    from ..core.models import load_model
    from ..core.train import Trainer, resolve_precision
    from ..meters.cpu_memory import CpuMemorySampler
    from ..meters.speed import measure as measure_speed

    p = dict(spec["params"])
    threads = p.get("num_threads") or len(os.sched_getaffinity(0))
    torch.set_num_threads(int(threads))
    device = torch.device(p["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {p['device']!r} asked for, but CUDA is not available here")
    t0 = time.perf_counter()
    rows = D.load_rows(p["source"], p["text_column"], p["label_column"], p["split"])
    shapes = list(spec.get("shapes") or SHAPES)
    steps = int(spec.get("steps") or STEPS)
    # The probe's own sample, whatever the trial's dataset_size: `steps` training batches and EVAL_STEPS
    # evaluation batches at the largest probe batch (fewer rows where the source has fewer; the batches are
    # then made smaller below, so that every pass still has a steady batch after its first).
    big = max(int(b) for _, b, _ in shapes)
    size = min(len(rows.texts), (steps + EVAL_STEPS) * big)
    train_idx, val_idx = D.sample_and_split(rows, size, EVAL_STEPS / (steps + EVAL_STEPS), p["data_seed"], p["source"])
    load_data_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = load_model(p["model"], len(rows.label_names), trust_remote_code=p["trust_remote_code"],
                        allow_pickle=p["allow_pickle"], attention=p.get("attention"), seed=p["seed"])
    model = loaded.model.to(device)
    from ..grid import has_adapter

    if has_adapter(p):
        # Adapters in every block, switched off below each shape's depth (set_depth): one model for all
        # the shapes and the anatomy, as `apply_adapter` would have made it at each depth.
        from ..core.adapters import apply_adapter

        apply_adapter(model, dict(p, frozen_layers=0), p["model"])
    load_model_s = time.perf_counter() - t0
    # The peak while loading (from_pretrained holds a state dict beside the model): the whole of a small
    # trial's peak where its training never reaches it (MiniLM, batch 4, everything frozen, before account
    # version 22 built a second encoder: 599 MiB loading, 587 training; since then about 462 loading).
    load_peak = _peak_rss() if exact and device.type == "cpu" else None
    free_after_load = None
    if device.type == "cuda":
        free_after_load = int(torch.cuda.mem_get_info(device)[0])
    ready_s = time.perf_counter() - t_start
    precision = resolve_precision(p["precision"], device)
    send({"type": "loaded", "seconds": ready_s})
    first_forward_s = first_forward(model, device, precision)
    # The host's warm pool is read by the anatomy's child here, and again after its work where this first
    # reading was low (`pool_settled`, `larger_pool`).
    first_reading = mapping_seconds(device) if spec.get("anatomy", True) else None
    from ..core.models import anatomy as _anatomy

    shapes_out = []
    n = _anatomy(model).num_layers
    from ..core.preflight import max_positions

    positions = max_positions(model.config.to_dict()) or 1 << 30
    for frozen, batch, max_length in shapes:
        frozen = n // 2 if frozen == "half" else frozen
        max_length = min(int(max_length), positions)
        batch = max(1, min(int(batch), len(train_idx) // 2, len(val_idx) // 2))
        q = dict(p, batch_size=batch, eval_batch_size=batch, max_length=max_length, frozen_layers=frozen, epochs=1)
        set_depth(model, frozen, p["model"])
        t0 = time.perf_counter()
        train_set, val_set = D.encode_split(loaded.tokenizer, rows, train_idx, val_idx, max_length, p["padding"])
        tokenize_s = time.perf_counter() - t0
        # the machine's speed as this shape starts, as a trial reads it before its epochs (meters/speed.py)
        speed_gflops = measure_speed().gflops if device.type == "cpu" else None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        # Sampled as a trial's meters sample (every 20 ms): a faster sampler takes the GIL between the
        # training loop's ops often enough to slow a one-thread step by half (MiniLM, 64 x 64 tokens: 5.0 s a
        # step at 5 ms against 2.9 s in the trial), and the probe must time what a trial would.
        sampler = CpuMemorySampler(interval_s=0.02)
        sampler.start()
        try:
            trainer = Trainer(model, train_set, val_set, q, device, max_steps=steps)
            opt_s = _time_optimizer_steps(trainer.optimizer, device)
            # The RSS with everything loaded and nothing run yet, and each pass's own peak: what the
            # process holds before the work, told apart from what each phase adds.
            phase_peak = _PhasePeak(sampler)
            rss_phases = {"ready": phase_peak.start}
            seen: dict[str, list[tuple[int, int]]] = {"train": [], "eval": []}
            step_s: dict[str, list[float]] = {"train": [], "eval": []}
            inner = trainer._batches

            def recorded(train: bool, _inner: Any = inner, _seen: dict = seen, _step: dict = step_s) -> Any:  # type: ignore[type-arg]
                # The seconds the loop spends on each batch: from handing it over to asking for the next.
                part = "train" if train else "eval"
                for args, real, padded in _inner(train):
                    k = int(args["labels"].shape[0])
                    _seen[part].append((k, int(padded // max(1, k))))
                    t = time.perf_counter()
                    yield args, real, padded
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    _step[part].append(time.perf_counter() - t)

            trainer._batches = recorded  # type: ignore[method-assign]
            cache_s = None
            if trainer.uses_cache():
                t0 = time.perf_counter()
                trainer.build_cache()
                trainer.check_cache()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                cache_s = time.perf_counter() - t0
                rss_phases["cache build"] = phase_peak.end()
            t0 = time.perf_counter()
            trainer.train_epoch()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_s = time.perf_counter() - t0
            rss_phases["train"] = phase_peak.end()
            t0 = time.perf_counter()
            trainer.evaluate()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            eval_s = time.perf_counter() - t0
            rss_phases["eval"] = phase_peak.end()
        finally:
            sampler.stop()
        out = {
            "frozen_layers": frozen, "batch_size": batch, "max_length": max_length,
            "cpu_peak_rss_bytes": int(max(v for k, v in rss_phases.items() if k != "ready")),
            "rss_phases": {k: int(v) for k, v in rss_phases.items()}, "exact_peaks": phase_peak.exact,
            "cuda_peak_allocated_bytes": int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None,
            "cuda_peak_reserved_bytes": int(torch.cuda.max_memory_reserved(device)) if device.type == "cuda" else None,
            "train_seconds": train_s, "eval_seconds": eval_s, "cache_seconds": cache_s, "tokenize_seconds": tokenize_s,
            "train_batches": seen["train"], "eval_batches": seen["eval"],
            "train_step_seconds": step_s["train"], "eval_step_seconds": step_s["eval"], "optimizer_step_seconds": _step_seconds(opt_s),
            "cache_used": bool(trainer.result.cache_used), "cache_bytes": int(trainer.result.cache_bytes),
            "train_lengths": train_set.lengths().tolist(), "val_lengths": val_set.lengths().tolist(),
            "pad_to": train_set.pad_to, "speed_gflops": speed_gflops,
        }
        shapes_out.append(out)
        send({"type": "shape", "shape": {k: out[k] for k in ("frozen_layers", "batch_size", "max_length")}})
        del trainer, train_set, val_set
        model.zero_grad(set_to_none=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        release_free_heap()
    from ..trial import device_name

    # Read after the shapes, so that the hooks' forwards leave nothing in the peaks measured above.
    anat = read_anatomy(model, p["model"], device, precision) if spec.get("anatomy", True) else None
    if anat is not None:
        anat["attention_rates"] = attention_rates(model, p["model"], device, precision)
        anat["mapping_rate"] = larger_pool(first_reading, mapping_seconds(device, pool=not pool_settled(first_reading)))
    return {"anatomy": anat, "shapes": shapes_out, "load_data_s": load_data_s, "load_model_s": load_model_s,
            "ready_s": ready_s, "n_rows": len(train_idx) + len(val_idx), "precision": precision,
            "load_peak_rss_bytes": load_peak, "first_forward_seconds": first_forward_s,
            "cuda_free_after_load_bytes": free_after_load,
            "device_name": device_name(device), "seconds": time.perf_counter() - t_start}


def _child_main(spec: dict[str, Any], conn: Any, environ: dict[str, str] | None = None,
                driver_pid: int | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..env import offline
    from ..executors.local import enter_child

    enter_child(environ, driver_pid)  # as a trial's child does
    offline()

    def send(event: dict[str, Any]) -> None:
        try:
            conn.send(event)
        except (BrokenPipeError, OSError):
            pass

    try:
        result = run_shapes(spec, send)
        send({"type": "result", "result": result})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as the probe's failure
        text = " ".join(str(exc).split())[:400]
        send({"type": "error", "error": f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
              "traceback": traceback.format_exc(limit=6)[-3000:]})
    finally:
        conn.close()


class ProbeFailed(Exception):
    pass


# The probe children running now, for kill_live (an interrupted plan runs some side by side, each awaited by a
# thread of its own that a KeyboardInterrupt in the main thread does not reach).
_LIVE: set[Any] = set()
_LIVE_LOCK = threading.Lock()
# Set by kill_live: a child started after it (by a thread that had already taken its job) is killed at once.
# calibrate_many clears it as it begins.
STOP = threading.Event()


def kill_live() -> None:
    """Kill every probe child of this process that is running, and any started after this: the threads
    awaiting them then see them end."""
    with _LIVE_LOCK:
        STOP.set()
        procs = list(_LIVE)
    for proc in procs:
        if proc.is_alive():
            proc.kill()


def run_in_child(spec: dict[str, Any], timeout_s: float = 600.0) -> dict[str, Any]:
    """Run probes in a fresh child started exactly as a trial's is (forked from the preloaded trial server, or
    spawned under HARNESS_START_METHOD=spawn), so that its process constant, its start-up seconds and its
    allocator's history are a trial's; returns the child's result with the parent's view of the child's time
    (`wall_s` from start to result, `spawn_to_ready_s`)."""
    from ..executors.local import child_start_args, trial_context

    context = trial_context()
    parent_conn, child_conn = context.Pipe(duplex=False)
    args = (spec, child_conn, *child_start_args(context))
    proc = context.Process(target=_child_main, args=args, daemon=True, name="plan-probe")
    started = time.monotonic()
    proc.start()
    with _LIVE_LOCK:
        _LIVE.add(proc)
        if STOP.is_set():
            proc.kill()
    child_conn.close()
    ready = None
    try:
        while True:
            left = started + timeout_s - time.monotonic()
            if left <= 0:
                raise ProbeFailed(f"probe exceeded {timeout_s:g} s")
            if not parent_conn.poll(min(left, 5.0)):
                continue
            try:
                event = parent_conn.recv()
            except EOFError:
                proc.join(timeout=10)
                raise ProbeFailed(f"probe child exited with code {proc.exitcode} before its result") from None
            kind = event.get("type")
            if kind == "loaded":
                ready = time.monotonic() - started
            elif kind == "result":
                res = event["result"]
                res["wall_s"] = time.monotonic() - started
                res["spawn_to_ready_s"] = ready
                return res
            elif kind == "error":
                raise ProbeFailed(event["error"])
    finally:
        if proc.is_alive():
            proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
        with _LIVE_LOCK:
            _LIVE.discard(proc)
        parent_conn.close()
