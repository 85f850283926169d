"""The analytic account of one trial: what it holds in memory and what work it does, batch by batch.

Everything here is plain arithmetic on numbers a probe measured once per model (`Anatomy`) and on the
trial's own batches (`Batches`, the real padded shapes of every training and evaluation batch, replayed
from the tokenized rows with the Trainer's own seed, padding policy and length buckets). No torch.

Memory (bytes) at the trial's peak (docs/plan.md has the whole account):

    peak  = max(loading, C + weights + data + cache + max(train, eval, cache build, optimiser step))
    train = k_state x (grads + optimiser state) + max(kept + k_act x slack(kept), the frozen part's forward)
    eval  = k_state x (grads + optimiser state) + a forward without a graph (largest evaluation batch)
    build = a forward at the cache's batch (the cache itself is in `cache`) + a second copy of the ids
    step  = k_state x (grads + optimiser state) + the multi-tensor optimiser's temporaries
    a forward without a graph = k_fwd x the heap's held bytes + its live mapped storages, where that sum peaks

`weights`, `grads` (trainable parameters), `optimiser state` (AdamW: 2 per trainable parameter, SGD with
momentum: 1, plain SGD: 0), `cache` (the frozen-prefix cache, as `core/cache.py` allocates it) and `data`
(the token-id matrices) are counted exactly. Activations kept for backward are counted exactly per block
by a probe (`saved_tensors_hooks` over a forward at three lengths, fitted as a x L + b x L^2 bytes per
example), and only where something trains: frozen blocks run without a graph. A forward without a graph is
replayed storage by storage from the probe's traces (`Anatomy.forward_parts`). C, k_state, k_act and k_fwd
are fitted per calibration key from the probes' measured peaks (C no lower than what the probes' processes
held before their first batch); the loading peak is measured. The same form serves `cuda_peak_allocated`
with C the CUDA context's share (zero for allocated).

Time (seconds): per training batch t0 + kt x FLOPs + kz x frozen-forward FLOPs + ko x trainable parameters;
per evaluation batch te0 + kf x FLOPs (the head alone on cached vectors: t_head, te_head); the cache kc x
its FLOPs; plus the trial's fixed cost (child start, imports, loading data and model) and tokenizing (per
row). FLOPs are `meters/flops.py`'s count of the very batch, plus each pass's attention score elements (n x L^2
per block it runs) at the FLOP-equivalents a probe measured for its mode (`Anatomy.attention_rates`): the
mask, softmax and dropout over the scores, which grow with the length faster than the FLOPs do. On a CPU
under glibc, each batch's storages of 32 MiB or more are mapped afresh (`mapping_seconds`), and the first
training batch touches the heap it grows (`first_touch_seconds`), both at a measured seconds per byte
(`Anatomy.mapping_rate`); where the host takes freed pages back (a VM's free page reporting), a step that
outgrows the host's warm pool pays more for each page beyond it (`cold_seconds`). The fit takes all of them
out of the probes' timings.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

from ..meters.flops import EncoderShape, Work, forward_flops, trial_flops
from ..meters.speed import WINDOW_S as SPEED_WINDOW_S

MiB = 2**20
# Bytes a Python list of token ids costs per token (an 8-byte pointer and, above 256, a 28-byte int).
PY_TOKEN_BYTES = 36


def trace_sizes(trace: dict[str, Any], n: int, length: int) -> Any:
    """Each traced storage's bytes at n examples padded to `length`, from its law (probe.fit_trace):
    c + e n + d L + a n L + b n L^2 (or c + a n L + b n L^2, a law of three as account version 13 stored)."""
    import numpy as np

    law = np.asarray(trace["sizes"], dtype=float)
    if law.ndim == 2 and law.shape[1] == 5:
        return law @ np.asarray([1.0, n, length, n * length, n * length * length])
    return law.reshape(-1, 3) @ np.asarray([1.0, n * length, n * length * length])


@dataclass
class Anatomy:
    """What a probe read off a model once (per model shape, device and precision)."""

    num_layers: int
    hidden: int
    total_params: int
    embedding_params: int
    layer_params: list[int]          # parameters per block
    base_other_params: int           # encoder parameters outside embeddings and blocks (pooler)
    head_params: int                 # parameters outside the encoder (classifier)
    param_bytes: int                 # bytes per parameter as stored (4 for fp32 weights)
    act_dtype_bytes: int             # bytes per element of the compute dtype
    # Bytes autograd keeps per example, fitted over lengths L: a block a + b L (x L), the embeddings e x L,
    # what sits above the blocks (pooler, head) t0 + t1 L, and with the whole encoder frozen h0 + h1 L.
    block_a: float
    block_b: float
    emb_a: float
    top0: float
    top1: float
    all0: float
    all1: float
    flops_shape: dict[str, Any] = field(default_factory=dict)
    # Bytes live at once in a forward without a graph (evaluation, frozen blocks, the cache build), per
    # example fwd_a L + fwd_b L^2: counted by a probe (the peak of the tensors alive at once, probe.py).
    fwd_a: float = 0.0
    fwd_b: float = 0.0
    fwd_c: float = 0.0       # ... and fwd_c once per forward, whatever the batch (masks, position ids)
    block_c: float = 0.0     # bytes a trained block keeps whatever the batch (autocast's weight copies)
    cuda_free_after_load: float | None = None  # for the cache's placement rule on a GPU
    # The same forward storage by storage, in evaluation and in training mode, and a training step's forward and
    # backward with every block trained ("grad") (probe.fit_trace): each storage's bytes as c + e n + d L + a n L
    # + b n L^2 and the order of allocations and frees, replayed at a trial's shape.
    fwd_trace: dict[str, Any] | None = None
    # FLOP-equivalents of one attention score element (n x L^2 per block a pass) by how the forward runs:
    # "grad", "train" (no graph, dropout on), "eval" (probe.attention_rates); None: FLOPs alone (CUDA).
    attention_rates: dict[str, Any] | None = None
    # Seconds per byte of a storage served by a fresh mapping, beyond writing the same bytes to memory already
    # mapped (probe.mapping_seconds, {"seconds_per_byte": ...}); None: not priced (CUDA, not Linux).
    mapping_rate: dict[str, Any] | None = None
    # replays by shape; not an init field, so that dataclasses.replace gives a copy its own
    _replayed: dict[tuple[Any, ...], tuple[float, float]] = field(default_factory=dict, init=False, repr=False,
                                                                  compare=False)

    def encoder_shape(self, depth: int | None = None) -> EncoderShape:
        """The matmul sizes for FLOPs; with adapters (a LoRA calibration's anatomy, read off a model with adapters
        in every block), those of the blocks above `depth` only, as `apply_adapter` puts them there."""
        s = self.flops_shape
        base = (tuple(s["layer_params"]), int(s["attn_width"]), int(s["pooler_params"]), int(s["head_params"]),
                tuple(s["input_params"]))
        lora = self.adapter_params()
        if not lora:
            return EncoderShape(*base)
        d = len(lora) if depth is None else min(int(depth), len(lora))
        above = lambda xs, none: tuple(none if i < d else x for i, x in enumerate(xs))  # noqa: E731
        return EncoderShape(*base, above(lora, 0), above(s["adapter_input_params"], 0),
                            above([tuple(bool(v) for v in q) for q in s["adapted_qkv"]], (False, False, False)))

    def adapter_params(self) -> list[int]:
        """Per block, the parameters of its LoRA matrices (A: r x in, B: out x r, no bias: their in x out sums);
        empty without adapters."""
        return [int(x) for x in (self.flops_shape.get("adapter_params") or [])]

    def weight_params(self, depth: int | None) -> int:
        """Every parameter the trial's model holds: with adapters, those of the blocks above `depth` only."""
        lora = self.adapter_params()
        below = len(lora) if depth is None else min(int(depth), len(lora))
        return self.total_params - sum(lora[:below])

    def trainable(self, depth: int | None) -> int:
        """Trainable parameters at a frozen depth (None: "all", only the head), as `models.freeze` does; with
        adapters as `adapters.apply_adapter` does: the adapters above the depth and the head (everything outside
        the encoder; the pooler, inside it, stays frozen)."""
        if depth is None:
            return self.head_params
        lora = self.adapter_params()
        if lora:
            return self.head_params + sum(lora[depth:])
        top = sum(self.layer_params[depth:])
        emb = self.embedding_params if depth == 0 else 0
        return self.head_params + self.base_other_params + top + emb

    # -- activations -------------------------------------------------------------------------------
    def forward_bytes(self, n: int, length: int) -> float:
        """Transient bytes of a forward without a graph over n examples padded to `length` (the peak of what
        is alive at once: one block's intermediates and the hidden states around them)."""
        return self.fwd_c + n * (length * self.fwd_a + self.fwd_b * length * length)

    def forward_parts(self, n: int, length: int, train: bool = False, mapped_from: float = math.inf,
                      mode: str | None = None, k_heap: float | None = None) -> tuple[float, float]:
        """A forward without a graph over n examples padded to `length`, at its peak: (bytes then in storages
        under `mapped_from`, bytes in storages of `mapped_from` or more). glibc serves a block of 32 MiB or more
        (its largest mmap threshold) with a mapping of its own and unmaps it when it is freed, so the RSS holds
        such a storage only while it lives (x 1); smaller ones come from the heap. The trace is replayed at the
        shape. Without a trace: the counted peak, all heap. `mode` "grad": the same over a training step's trace
        (no counted peak to fall back on: (0, 0) without it).

        Without `k_heap`, the peak of live bytes, and the heap's bytes then. With it (k_fwd: the process holds
        k_heap x the heap's bytes, the kernels' own scratch and the arena's holes beside the storages), the heap's
        bytes are those it holds (`held_heap`): its high-water mark, which stays resident after the storages die,
        until glibc trims the heap's top; and the peak is where k_heap x those + the live mapped bytes is largest.
        A forward's heap peaks in the attention, before the feed-forward's large intermediates are mapped: the
        peak of live bytes, where those are, caught the heap at its low and under-predicted MiniLM's 8,192-token
        cache batches by 23-29 % (`bench/plan/forward_rss.py`, docs/plan.md)."""
        key = (n, length, train, mapped_from, mode, k_heap)
        hit = self._replayed.get(key)
        if hit is not None:
            return hit
        trace = (self.fwd_trace or {}).get(mode or ("train" if train else "eval"))
        if not trace and mode == "grad":
            self._replayed[key] = (0.0, 0.0)
            return (0.0, 0.0)
        if not trace:
            out = (self.forward_bytes(n, length), 0.0)
        elif not trace["events"]:
            out = (0.0, 0.0)
        else:
            import numpy as np

            sizes = np.maximum(0.0, trace_sizes(trace, n, length))
            events = np.asarray(trace["events"], dtype=np.int64)
            made = events >= 0
            which = np.where(made, events, -1 - events)
            delta = np.where(made, sizes[which], -sizes[which])
            mapped = sizes[which] >= mapped_from
            heap = np.cumsum(np.where(mapped, 0.0, delta))
            live_mapped = np.cumsum(np.where(mapped, delta, 0.0))
            if k_heap is None:
                at = int(np.argmax(heap + live_mapped))
                out = (float(heap[at]), float(live_mapped[at]))
            else:
                held = held_heap(heap)
                at = int(np.argmax(k_heap * held + live_mapped))
                out = (float(held[at]), float(live_mapped[at]))
        self._replayed[key] = out
        return out

    def mapped_bytes(self, n: int, length: int, mode: str) -> tuple[float, float]:
        """Bytes of the storages of MMAP_THRESHOLD or more that one pass of the whole model makes over n examples
        padded to `length`, each mapped afresh and unmapped when freed: `mode` "eval" or "train" (a forward
        without a graph, dropout off or on) or "grad" (a training step's forward and backward, every block
        trained), replayed from the traced storages' laws. Returned as (storages that grow with the batch,
        storages of one size whatever the batch): in a training step the latter are parameters' gradients
        (the word embeddings' is 44.7 MiB in MiniLM), made afresh every step (zero_grad sets them to None) but
        only for what trains. (0, 0) without that trace."""
        key = ("mapped", n, length, mode)
        hit = self._replayed.get(key)
        if hit is not None:
            return hit
        trace = (self.fwd_trace or {}).get(mode)
        out = (0.0, 0.0)
        if trace and trace["sizes"]:
            import numpy as np

            sizes = trace_sizes(trace, n, length)
            # the same at another shape (to the fit's rounding; one that grows moves by 1/n or 1/L of itself)
            fixed = np.isclose(sizes, trace_sizes(trace, n + 1, length + 1), rtol=1e-4, atol=64.0)
            mapped = sizes >= MMAP_THRESHOLD
            out = (float(sizes[mapped & ~fixed].sum()), float(sizes[mapped & fixed].sum()))
        self._replayed[key] = out
        return out

    def block_bytes(self, n: int, length: int) -> float:
        """What one trained block keeps for backward over a batch of n examples padded to `length`."""
        return n * (self.block_a * length + self.block_b * length * length) + self.block_c

    def saved_bytes(self, n: int, length: int, depth: int | None, cached: bool) -> float:
        """Everything autograd keeps over one training batch."""
        if depth is None:
            return n * (self.all0 + (0.0 if cached else self.all1 * length))
        trained = self.num_layers - depth
        emb = 0.0 if (depth > 0 or cached) else n * self.emb_a * length
        # (top0, top1 below zero with adapters: the lowest adapted block keeps less than the others)
        return max(0.0, trained * self.block_bytes(n, length) + emb + n * (self.top0 + self.top1 * length))


@dataclass
class Batches:
    """A trial's passes, as (examples, padded length) per batch: every training epoch, the evaluation pass,
    and the cache's build pass (empty without the cache)."""

    train: list[list[tuple[int, int]]]   # per epoch
    eval: list[tuple[int, int]]          # one pass (the same every epoch)
    cache: list[tuple[int, int]]
    n_examples: int                      # training + validation rows
    n_tokens: int                        # their real tokens
    width_train: int                     # the token-id matrix's width (the longest example)
    width_val: int
    n_train: int
    n_val: int


@dataclass
class Setting:
    """The settings of a trial the account needs, resolved (strategy switches filled in)."""

    depth: int | None        # frozen bottom blocks; None: "all"
    cached: bool             # the frozen-prefix cache is used
    optimizer: str
    momentum: float
    multi_tensor: bool       # fused / foreach optimiser (temporaries the size of the trainable parameters)
    device: str
    epochs: int
    frozen_dropout: bool = False  # frozen blocks run in training mode (dropout on), without a graph


def head_only(s: Setting) -> bool:
    """Only the head runs in the epochs, on cached vectors (the whole encoder frozen and cached)."""
    return s.cached and s.depth is None


# glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): a block this large or larger is always
# a mapping of its own, returned to the system when freed. CUDA's allocated bytes are the live bytes: no split.
MMAP_THRESHOLD = 32 * MiB
# glibc gives the heap's top back to the system when the free space there passes its trim threshold, which follows
# the mmap threshold (twice it) once a freed mapping has raised that to its largest.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def held_heap(live: Any) -> Any:
    """The heap's bytes the process holds at each event of a replayed forward, from the live heap bytes: the
    high-water mark so far, since freed pages stay resident, back down to the live bytes where the mark stands
    more than TRIM_THRESHOLD above them (the freed top trimmed away). Measured on MiniLM's forward alone
    (`bench/plan/forward_rss.py`, 1 thread, 22 shapes from 256 to 16,384 tokens, two runs each, k_fwd 2): in
    evaluation mode, as k_fwd x this + the live mapped bytes, the RSS's growth within a median 9.6 % (under by more
    than 5 % at 4 of 22 shapes), as k_fwd x the live heap at the peak of live bytes 18.4 % (11 of 22); in training
    mode 10.3 % (6) against 9.1 % (8). DistilBERT: 13.0 % (3) against 18.3 % (16), and 12.5 % (6) against 12.3 %
    (13)."""
    import numpy as np

    live = np.asarray(live, dtype=float)
    held = np.empty_like(live)
    start = 0
    while start < len(live):  # one running maximum per stretch between trims (a few per forward)
        mark = np.maximum.accumulate(live[start:])
        trimmed = np.flatnonzero(mark - live[start:] > TRIM_THRESHOLD)
        end = start + int(trimmed[0]) if len(trimmed) else len(live)
        held[start:end] = mark[:end - start]
        start = end  # the mark starts again from the live bytes there
    return held


SLACK_SCALE = float(2**30)


def slack_feature(saved: float) -> float:
    """What k_act multiplies: the allocator's peak above the activations autograd keeps (backward's own
    temporaries, freed chunks malloc's arenas hold), which grows more slowly than they do. Measured on
    MiniLM (1 and 2 threads, 2026-11-30): 16 MiB over 60 MiB kept, 330-500 over 820, 400-540 over 2,944,
    690-780 over 6,098; a constant factor fitted on small probes over-predicted the largest by 30-40 %.
    Hence G log(1 + kept / G), G = 1 GiB: linear for small batches, concave beyond a GiB."""
    return SLACK_SCALE * math.log1p(max(0.0, saved) / SLACK_SCALE)


@dataclass
class Coefficients:
    """Fitted per calibration key. Memory in bytes, time in seconds."""

    c_bytes: float = 0.0
    k_act: float = 0.3       # x slack_feature(activations kept for backward)
    k_state: float = 1.0     # gradients and optimiser state as the allocator holds them
    k_fwd: float = 1.0       # a forward without a graph: the allocator's peak over the tensors' own
    t0: float = 0.0          # per training batch
    kt: float = 0.0          # per training FLOP (forward and backward of what trains)
    kz: float = 0.0          # per FLOP of a frozen bottom's forward without a graph, in a training batch
    ko: float = 0.0          # per trainable parameter per step
    te0: float = 0.0         # per evaluation batch
    kf: float = 0.0          # per evaluation FLOP
    kc: float = 0.0          # per cache FLOP
    # Seconds per batch when only the head runs, on cached vectors (fast, everything frozen): no encoder at all,
    # so none of the per-batch constants fitted on batches that run one applies (they put 0.05 s on an epoch
    # that takes 0.01). The probes' steady head-only batches, median; None: the general formula.
    t_head: float | None = None
    te_head: float | None = None
    t_head_warm: float = 0.0  # ... and the first head-only batch's extra seconds (the optimiser's state made)
    load_bytes: float = 0.0  # the process's peak while it loads the model (CPU; measured, the probes' median)
    warmup_s: float = 0.0    # the first training batch's extra seconds (kernels chosen, pages first touched)
    # Seconds a pass spends outside its batches (the loader's iterator made, each batch collated, the mode
    # switched, the epoch's bookkeeping): the probes' pass time less their batches', median. Milliseconds, but all there is beside
    # the head's batches in an epoch of `fast` with everything frozen (4-7 ms).
    train_pass_s: float = 0.0
    eval_pass_s: float = 0.0
    head_train_pass_s: float = 0.0  # ... the head-only probe's own (a loop over cached vectors: less to set up)
    head_eval_pass_s: float = 0.0
    fixed_s: float = 0.0     # per trial: child start, imports, data and model loading
    tokenize_s_per_row: float = 0.0


@dataclass
class MemoryParts:
    """A predicted peak, part by part (bytes)."""

    constant: float
    weights: float
    data: float
    cache: float
    grads: float
    optimizer_state: float
    activations: float       # k x the largest of the phases' activation terms
    phase: str               # which phase sets the peak: train, eval, cache build, optimizer step, load
    state_overhead: float = 0.0  # (k_state - 1) x (grads + optimizer state)
    raw_activations: float = 0.0  # the phase's slack_feature(activations kept for backward), before k_act
    raw_forward: float = 0.0      # the phase's forward transient, before k_fwd
    train_growth: float = 0.0     # what the training phase adds to the process (state and activations)
    climb: float = 0.0            # the heap's climb over the trial's steps beyond the probes' (`climb_rate`)

    @property
    def total(self) -> float:
        return (self.constant + self.weights + self.data + self.cache + self.grads + self.optimizer_state
                + self.state_overhead + self.activations + self.climb)


# The probes' training steps (probe.STEPS): the peaks the memory coefficients are fitted on are those of 3 steps.
PROBE_STEPS = 3
# A training pass's peak climbs with its steps: each step's storages land in the holes the steps before left in
# glibc's heap, and where none fits the heap grows (by about one attention score tensor at a time, 12 MiB at
# MiniLM's 4 x 256). Measured by the probe's own child at one shape (`bench/plan/peak_vs_steps.py`, MiniLM, `lab`,
# depth 3, 4 x 256, two series): 3 / 6 / 12 / 23 / 40 / 60 steps peaked at 903 / 931 / 915 / 960 / 961 / 953 and
# 912 / 932 / 934 / 947 / 924 / 943 MiB: up for the first 10-20 steps, flat after. So a pass of S steps holds
# climb_rate x climb_weight(S) x the heap's bytes at its peak more than the probes' 3 steps held. The rate is
# measured at the probes' own shapes by `bench/plan/climb.py` (docs/plan.md), and it is the frozen bottom's: where
# frozen blocks sit below what trains (run without a graph each step, or cached by a build before the pass), the
# trained part's storages land among theirs; where every block trains, a step's storages are the same every step
# and take the same places. MiniLM, the nine probe shapes that train, 20 steps, two runs each, under AdamW
# (2026-12-01 05:50 and 10:35) and SGD (10:10), each against a calibration of the same hour: with a frozen bottom
# (depth 3 or "all", 28 runs) c from -0.05 to 0.36, median 0.15 (quartiles 0.11 and 0.24); with every block
# trained (24 runs) from -0.15 to 0.22, median 0.005 (quartiles -0.03 and 0.09); and four full trials with every
# block trained under SGD (20 to 26 x 128, 23-27 steps, two runs each) peaked 2.6 % below to 2.7 % above the
# forecast without any climb. Storages of MMAP_THRESHOLD or more are mappings of their own and do not fragment;
# on CUDA nothing is added (no measurement of its allocator's climb).
CLIMB = 0.15              # a frozen bottom below what trains
CLIMB_ALL_TRAINED = 0.0   # every block trains (frozen depth 0; with adapters there, not measured apart)
CLIMB_FULL_STEPS = 20


def climb_rate(s: Setting) -> float:
    """The climb's rate for a trial's setting (`CLIMB` or `CLIMB_ALL_TRAINED`)."""
    return CLIMB_ALL_TRAINED if s.depth == 0 else CLIMB


def climb_weight(steps: int) -> float:
    """How much of the climb a pass of `steps` training steps reaches: 0 at the probes' 3, 1 from 20 on,
    logarithmic between (the measured series rose by about half their climb by 6 steps)."""
    if steps <= PROBE_STEPS:
        return 0.0
    return min(1.0, math.log(steps / PROBE_STEPS) / math.log(CLIMB_FULL_STEPS / PROBE_STEPS))


def heap_share(a: Anatomy, batch: tuple[int, int], mapped_from: float) -> float:
    """The share of a training step's storages, at its peak of live bytes over `batch`, that the heap serves (the
    rest: mappings of MMAP_THRESHOLD or more), from the step's trace; 1 without one."""
    if not math.isfinite(mapped_from) or batch[0] <= 0:
        return 1.0
    heap, mapped = a.forward_parts(batch[0], batch[1], mapped_from=mapped_from, mode="grad")
    return heap / (heap + mapped) if heap + mapped > 0 else 1.0


def optimizer_slots(s: Setting) -> int:
    if s.optimizer == "adamw":
        return 2
    return 1 if s.momentum > 0 else 0


def memory(a: Anatomy, s: Setting, b: Batches, co: Coefficients, include_train: bool = True) -> MemoryParts:
    p_train = a.trainable(s.depth)
    weights = a.weight_params(s.depth) * a.param_bytes
    grads = p_train * a.param_bytes
    opt = optimizer_slots(s) * p_train * 4
    # Token ids live in host memory: part of a CPU trial's RSS, not of CUDA's allocated bytes.
    on_gpu = s.device.startswith("cuda")
    data = 0.0 if on_gpu else 8 * (b.n_train * b.width_train + b.n_val * b.width_val) + PY_TOKEN_BYTES * b.n_tokens
    cache = 0.0
    uncached_frozen = (not s.cached) and (s.depth is None or s.depth > 0)
    if s.cached:
        if s.depth is None:
            cache = b.n_examples * a.hidden * 4 * 2
        else:
            cache = b.n_tokens * a.hidden * a.act_dtype_bytes + b.n_examples * 16
        # core/cache.py's placement: on the GPU only under a quarter of the free memory, else host memory.
        if on_gpu and not (a.cuda_free_after_load and cache < 0.25 * a.cuda_free_after_load):
            cache = 0.0
    # Each phase: (bytes not scaled, the allocator's slack over what autograd keeps (x k_act), a forward's
    # transient (x k_fwd)).
    phases: dict[str, tuple[float, float, float]] = {}
    state = co.k_state * (grads + opt) if include_train else 0.0
    # glibc's rule (Linux); elsewhere, and for CUDA's allocated bytes, no split
    mapped_from = MMAP_THRESHOLD if not on_gpu and sys.platform.startswith("linux") else math.inf

    def largest_forward(batches: Any, train: bool = False) -> tuple[float, float]:
        """(heap, mapped) of the batch whose forward holds the most (k_fwd x heap + mapped)."""
        parts = [a.forward_parts(n, length, train, mapped_from, k_heap=co.k_fwd) for n, length in set(batches)]
        return max(parts, key=lambda x: co.k_fwd * x[0] + x[1], default=(0.0, 0.0))

    def total(ph: tuple[float, float, float]) -> float:
        return ph[0] + co.k_act * ph[1] + co.k_fwd * ph[2]

    def train_phase(batches: list[tuple[int, int]], held: float) -> tuple[tuple[float, float, float], float]:
        """The training phase over these batches, with `held` bytes of gradients and optimiser state, and the
        bytes of its peak the heap serves (what its steps can fragment)."""
        # each distinct shape once: a trial of 56,000 rows runs thousands of batches of a few shapes
        saved, widest = max(((a.saved_bytes(n, length, s.depth, s.cached), (n, length)) for n, length in set(batches)),
                            default=(0.0, (0, 0)))
        # the frozen blocks' forward runs first, without a graph
        heap, mapped = largest_forward(batches, s.frozen_dropout) if uncached_frozen else (0.0, 0.0)
        if co.k_fwd * heap + mapped > saved + co.k_act * slack_feature(saved):
            return (held + mapped, 0.0, heap), co.k_fwd * heap
        kept = saved + co.k_act * slack_feature(saved)
        return (held + saved, slack_feature(saved), 0.0), kept * heap_share(a, widest, mapped_from)

    first_step_only = False  # the training phase's peak is the first step's, before the optimiser has state
    climb = 0.0
    if include_train:
        steps = [x for e in b.train for x in e]
        # The optimiser makes its state in its first step, after the first backward (and the Trainer sets
        # the gradients to None before each forward): the first step's forward and backward run without it.
        # A trial of one training step (batch 64 on 90 rows, drop_last, one epoch) never holds state and
        # activations at once; counting both over-predicted MiniLM's 64 x 64, everything trained, by 23-33 %.
        first, _ = train_phase(steps[:1], co.k_state * grads)
        later, later_heap = train_phase(steps[1:], state) if len(steps) > 1 else (None, 0.0)
        if later is not None and not on_gpu:
            # the heap's climb over the trial's steps, beyond the probes' few (`climb_weight`)
            climb = climb_rate(s) * climb_weight(len(steps)) * later_heap
            later = (later[0] + climb, later[1], later[2])
        first_step_only = later is None or total(first) > total(later)
        phases["train"] = first if first_step_only else later
        phases["optimizer step"] = (state + (p_train * 4 if s.multi_tensor else 0), 0.0, 0.0)
    if not head_only(s):
        heap, mapped = largest_forward(b.eval)
        phases["eval"] = (state + mapped, 0.0, heap)
    else:  # the head on cached vectors
        phases["eval"] = (state + max((n * a.all0 for n, _ in b.eval), default=0.0), 0.0, 0.0)
    if b.cache:
        # The cache-building Collator holds a second copy of all token ids while it runs.
        ids = 0.0 if on_gpu else 8 * b.n_examples * max(b.width_train, b.width_val)
        heap, mapped = largest_forward(b.cache)
        phases["cache build"] = (ids + mapped, 0.0, heap)

    phase = max(phases, key=lambda k: total(phases[k]))
    dyn = total(phases[phase])
    # What the first batch grows the process by: its activations, and the optimiser's state that its step makes
    # (which, where the first step sets the training peak, the training phase leaves out)
    growth = max(total(phases["train"]), total(phases["optimizer step"])) if "train" in phases else 0.0
    if co.load_bytes > co.c_bytes + weights + data + cache + dyn:  # a small trial's peak is its loading
        return MemoryParts(co.load_bytes - weights - data, weights, data, 0.0, 0.0, 0.0, 0.0, "load",
                           train_growth=growth)
    has_state = include_train and phase != "cache build"
    g, o = (grads, opt) if has_state else (0.0, 0.0)
    if phase == "train" and first_step_only:
        o = 0.0
    over = (co.k_state - 1.0) * (g + o)
    _, raw_saved, raw_fwd = phases[phase]
    climbed = climb if phase == "train" and not first_step_only else 0.0
    return MemoryParts(co.c_bytes, weights, data, cache, g, o, dyn - g - o - over - climbed, phase, over, raw_saved,
                       raw_fwd, growth, climbed)


@dataclass
class TimeParts:
    fixed: float
    tokenize: float
    cache: float
    train_epoch: list[float]
    eval_epoch: float

    @property
    def total(self) -> float:
        return self.fixed + self.tokenize + self.cache + sum(self.train_epoch) + self.eval_epoch * len(self.train_epoch)

    @property
    def per_epoch(self) -> float:
        if not self.train_epoch:
            return 0.0
        return sum(self.train_epoch) / len(self.train_epoch) + self.eval_epoch


def _flops(a: Anatomy, s: Setting, train: list[tuple[int, int]], evals: list[tuple[int, int]],
           cache: list[tuple[int, int]] | None = None) -> float:
    shape = a.encoder_shape(s.depth)
    tw = [Work.from_batches(train)] if train else []
    ew = [Work.from_batches(evals)] if evals else []
    cw = Work.from_batches(cache) if cache else None
    return trial_flops(shape, s.depth, s.cached, tw, ew, cw).total


def train_batch_flops(a: Anatomy, s: Setting, batch: tuple[int, int]) -> float:
    return _flops(a, s, [batch], [])


def eval_batch_flops(a: Anatomy, s: Setting, batch: tuple[int, int]) -> float:
    return _flops(a, s, [], [batch])


def frozen_forward_flops(a: Anatomy, s: Setting, batch: tuple[int, int]) -> float:
    """The part of a training batch's FLOPs that is the frozen bottom's forward without a graph (none under
    the cache): priced apart, as a no-grad forward runs at another rate than a forward and backward."""
    if s.cached or s.depth == 0:
        return 0.0
    shape = a.encoder_shape(s.depth)
    d = shape.num_layers if s.depth is None else min(int(s.depth), shape.num_layers)
    return float(forward_flops(shape, Work.from_batches([batch]), range(0, d), pooler=s.depth is None, head=False))


def _rate(a: Anatomy, mode: str) -> float:
    return float((a.attention_rates or {}).get(mode) or 0.0)


def _mapping_rate(a: Anatomy) -> float:
    """Seconds per byte of a fresh mapping (probe.mapping_seconds); 0: not measured."""
    return float((a.mapping_rate or {}).get("seconds_per_byte") or 0.0)


def warm_pool(a: Anatomy) -> tuple[float, float]:
    """(bytes of fresh pages that come at the mapping rate, seconds per byte a page beyond them costs more),
    as `probe.warm_pool` read them; (inf, 0): no limit seen (most machines: no free page reporting)."""
    pool = (a.mapping_rate or {}).get("pool") or {}
    hot, extra = pool.get("hot_bytes"), float(pool.get("cold_seconds_per_byte") or 0.0)
    if hot is None or extra <= 0.0:
        return math.inf, 0.0
    return float(hot), extra


def live_mapped(a: Anatomy, s: Setting, batch: tuple[int, int]) -> float:
    """The mapped storages alive at a training batch's peak (its trained part's and its frozen part's forward
    peak apart: the larger)."""
    blocks, per = attention_blocks(a, s), 1.0 / max(1, a.num_layers)
    n, length = batch
    return max(per * blocks["trained"] * a.forward_parts(n, length, mapped_from=MMAP_THRESHOLD, mode="grad")[1],
               per * blocks["frozen"] * a.forward_parts(n, length, s.frozen_dropout, MMAP_THRESHOLD)[1])


def cold_seconds(a: Anatomy, s: Setting, grows: float) -> float:
    """What a batch that grows the process by `grows` bytes pays for the pages beyond the host's warm pool
    (`warm_pool`), over the mapping rate it pays for every fresh page. A training step's activations are kept
    until its backward, so they grow the process by their whole size and draw fresh pages from the pool, and
    past it from pages the host took back; what a step makes and frees again at once is served by what it just
    freed. Measured on MiniLM at 64 x 256, everything trained, one thread (7.5 GiB of growth in the first step,
    4.6 GiB of mapped activations in the later ones): a later step 7.5-9.5 s slower with the pool as it is
    (about 2 GiB) than right after 14 GiB were freed, the first 10-15 s; at 10 microseconds a page beyond a
    2.2 GiB pool this prices 6.4 s and 14.0 s (`bench/plan/warm_pool.py`, docs/plan.md)."""
    pool, extra = warm_pool(a)
    if extra <= 0.0 or s.device.startswith("cuda") or head_only(s):
        return 0.0
    return extra * max(0.0, grows - pool)


def _frozen_mode(s: Setting) -> str:
    """How frozen blocks run their forward without a graph: in training mode under `frozen_dropout`."""
    return "train" if s.frozen_dropout else "eval"


def score_elements(batches: list[tuple[int, int]], blocks: int) -> float:
    """Attention score elements of `blocks` blocks over these (examples, padded length) batches: n x L^2 each
    (per head; the heads are in the rate)."""
    return float(sum(n * length * length for n, length in batches)) * blocks


def rate_from_ratio(ratio: float, flops: tuple[float, float], scores: tuple[float, float]) -> float | None:
    """The FLOP-equivalents of a score element that make two passes' seconds, each c x (FLOPs + rate x score
    elements), come out `ratio` apart (second over first); 0 where the ratio is within what the FLOPs explain.
    None where no rate can: the second pass slower than its score elements alone would make it (a disturbed
    reading), which must not be priced as nothing, nor as without bound."""
    den = scores[1] - ratio * scores[0]
    if den <= 0 or ratio <= 0:
        return None
    return max(0.0, (ratio * flops[0] - flops[1]) / den)


def attention_blocks(a: Anatomy, s: Setting) -> dict[str, int]:
    """Blocks each kind of pass runs: trained with a graph, frozen without one in a training batch (none when
    cached), in an evaluation batch, and in the cache's build."""
    n = a.num_layers
    d = n if s.depth is None else min(int(s.depth), n)
    cached = s.cached and d > 0
    return {"trained": n - d, "frozen": 0 if cached else d, "eval": n - d if cached else n, "cache": d if cached else 0}


def mapping_seconds(a: Anatomy, s: Setting, train: list[tuple[int, int]], evals: list[tuple[int, int]],
                    cache: list[tuple[int, int]]) -> dict[str, float]:
    """Seconds the passes' storages of 32 MiB or more cost beyond their FLOPs, by pass: mapped afresh every
    batch (glibc's rule), at the measured `mapping_rate`. Each block runs its share of the traced whole model's
    mapped bytes (1 / blocks): trained blocks a training step's, frozen ones a forward without a graph in their
    mode, evaluation and the cache's build a forward in evaluation mode. Probes at small shapes map no
    activation (only, where everything trains, the word embeddings' gradient), so the rates fitted on them leave
    this out; a trial at 64 x 256 tokens maps gigabytes a batch (MiniLM, lab, everything trained: about 12 GB a
    step, 2.96 million pages, against 2.1-3.2 million minor faults counted)."""
    rate = _mapping_rate(a)
    out = {"train": 0.0, "eval": 0.0, "cache": 0.0}
    if s.device.startswith("cuda"):
        return out
    # beyond the host's warm pool a page costs more: a later step grows the process by its mapped activations
    # (the heap's pages it keeps); the first step's extra is first_touch_seconds'. Read apart from the rate.
    cold = sum(cold_seconds(a, s, live_mapped(a, s, x)) for x in train)
    if rate <= 0.0:
        return dict(out, train=cold)
    blocks = attention_blocks(a, s)
    per = 1.0 / max(1, a.num_layers)
    frozen_mode = _frozen_mode(s)
    for n, length in train:
        if head_only(s):
            break
        grows, fixed = a.mapped_bytes(n, length, "grad")
        # the fixed ones (parameters' gradients) as traced: with everything trained only
        frozen = sum(a.mapped_bytes(n, length, frozen_mode))
        out["train"] += per * (blocks["trained"] * grows + blocks["frozen"] * frozen)
        out["train"] += fixed if s.depth == 0 else 0.0
    if not head_only(s):
        out["eval"] = per * blocks["eval"] * sum(sum(a.mapped_bytes(n, length, "eval")) for n, length in evals)
    out["cache"] = per * blocks["cache"] * sum(sum(a.mapped_bytes(n, length, "eval")) for n, length in cache)
    priced = {k: rate * v for k, v in out.items()}
    priced["train"] += cold
    return priced


def first_touch_seconds(a: Anatomy, s: Setting, b: Batches, co: Coefficients) -> float:
    """What the first training batch costs for touching the heap's new pages: the training phase's growth
    (memory's account of it: gradients, optimiser state, activations) less the mapped storages alive at its
    peak (priced every batch by mapping_seconds), at the fresh-mapping rate. The rest of the first batch's
    extra is the fitted constant `warmup_s`. On the probes the first batch's extra follows that growth (MiniLM,
    `lab`: 0.02-0.07 s at 80-105 MiB, 0.32-0.35 s at 1.2 GiB, at 0.9-1.0 microseconds a page), so a median
    constant fitted on them priced a trial whose one batch an epoch grows the heap by 1.6 GiB (64 x 64,
    everything trained) short. Plus the first step's pages beyond the host's warm pool, over what a later
    step pays for them (`cold_seconds`: the first step's heap is new)."""
    rate = _mapping_rate(a)
    first = next((epoch[0] for epoch in b.train if epoch), None)
    if first is None or s.device.startswith("cuda") or head_only(s):
        return 0.0
    growth = memory(a, s, b, co).train_growth
    # the mapped storages alive at the step's peak (priced every batch)
    live = live_mapped(a, s, first)
    # and the first step's pages beyond the host's warm pool, over what a later step pays (its heap is new)
    cold = cold_seconds(a, s, growth) - cold_seconds(a, s, live)
    return rate * max(0.0, growth - live) + max(0.0, cold)


def train_seconds(co: Coefficients, f: dict[str, float]) -> float:
    """Steady seconds of the training batches summed in `f` (time_features)."""
    return (co.t0 * f["train_batches"] + co.kt * f["train_flops"] + co.kz * f["train_frozen_flops"]
            + co.ko * f["train_param_steps"])


def cache_flops(a: Anatomy, s: Setting, batches: list[tuple[int, int]]) -> float:
    """The cache build's FLOPs and the FLOP-equivalents of its attention scores (a forward in evaluation mode)."""
    if not batches:
        return 0.0
    return _flops(a, s, [], [], batches) + _rate(a, "eval") * score_elements(batches, attention_blocks(a, s)["cache"])


def time_features(a: Anatomy, s: Setting, train: list[tuple[int, int]], evals: list[tuple[int, int]],
                  cache: list[tuple[int, int]]) -> dict[str, float]:
    """The sums the time coefficients multiply: batches, FLOPs and trainable parameters x steps. Each FLOP sum
    carries its pass's attention score elements at their measured FLOP-equivalents (`attention_rates`)."""
    p_train = a.trainable(s.depth)
    frozen = [frozen_forward_flops(a, s, x) for x in train]
    blocks = attention_blocks(a, s)
    frozen_mode = _frozen_mode(s)
    return {
        "train_batches": float(len(train)),
        "train_flops": sum(train_batch_flops(a, s, x) for x in train) - sum(frozen)
        + _rate(a, "grad") * score_elements(train, blocks["trained"]),
        "train_frozen_flops": float(sum(frozen)) + _rate(a, frozen_mode) * score_elements(train, blocks["frozen"]),
        "train_param_steps": float(p_train * len(train)),
        "eval_batches": float(len(evals)),
        "eval_flops": sum(eval_batch_flops(a, s, x) for x in evals)
        + _rate(a, "eval") * score_elements(evals, blocks["eval"]),
        "cache_flops": cache_flops(a, s, cache),
    }


def seconds(a: Anatomy, s: Setting, b: Batches, co: Coefficients) -> TimeParts:
    train_epochs = []
    for i, epoch in enumerate(b.train):
        if head_only(s) and co.t_head is not None:
            train_epochs.append(co.head_train_pass_s + co.t_head * len(epoch)
                                + (co.t_head_warm if i == 0 and epoch else 0.0))
            continue
        f = time_features(a, s, epoch, [], [])
        warm = co.warmup_s + first_touch_seconds(a, s, b, co) if i == 0 and epoch else 0.0
        train_epochs.append(co.train_pass_s + warm + train_seconds(co, f) + mapping_seconds(a, s, epoch, [], [])["train"])
    if head_only(s) and co.te_head is not None:
        eval_s = co.head_eval_pass_s + co.te_head * len(b.eval)
    else:
        fe = time_features(a, s, [], b.eval, [])
        eval_s = (co.eval_pass_s + co.te0 * fe["eval_batches"] + co.kf * fe["eval_flops"]
                  + mapping_seconds(a, s, [], b.eval, [])["eval"])
    cache_s = co.kc * cache_flops(a, s, b.cache) + mapping_seconds(a, s, [], [], b.cache)["cache"] if b.cache else 0.0
    # a CPU trial reads the machine's speed before and after its epochs (meters/speed.py): outside every phase,
    # and not in the probes' start-up seconds
    fixed = co.fixed_s + (0.0 if s.device.startswith("cuda") else 2 * SPEED_WINDOW_S)
    return TimeParts(fixed, co.tokenize_s_per_row * b.n_examples, cache_s, train_epochs, eval_s)


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
