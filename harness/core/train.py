"""The training loop, for both strategies. Read top to bottom: batches, precision, optimiser, epochs.

`lab` is the notebook: padded to the longest text of the set, fp32, the whole model forward every epoch,
dropout active in the frozen layers. `fast` switches on the frozen-prefix cache, per-batch padding with
length buckets, mixed precision on CUDA and a fused optimiser. Each switch is a setting of its own
(`config.STRATEGIES` lists what each strategy sets; docs/performance.md measures each switch alone):

- `padding`: `longest_in_set` pads every batch to the longest text of the whole sample (the lab's single
  tokenizer call); `batch` pads each batch to its own longest text.
- `length_buckets`: examples of similar length share a batch; the batches come in random order.
- `cache_frozen`: run the frozen bottom once per trial (`cache.py`); the cost is the trial's `cache` phase.
- `frozen_dropout`: dropout stays active inside the frozen layers (the lab's `model.train()`); with the
  cache the frozen layers run in eval mode whatever this says (recorded in `cache_note`).
- `precision`: `fp32`, `bf16` (autocast), `fp16` (autocast and a gradient scaler) or `auto`: bf16 on a
  GPU that supports it, fp16 on an older one, fp32 on CPU (mixed precision is asked for explicitly there).
- `fused_optimizer`: the fused optimiser kernel where this PyTorch has it, else the foreach one.
- `compile`: `torch.compile` of the part that trains (the head, the top blocks, or the whole model).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import torch
from torch import nn

from . import cache as frozen_cache
from .batching import CACHE_BATCH_TOKENS, MEGABATCH, batch_order  # noqa: F401 - batch_order is the Trainer's, re-exported
from .data import Encoded
from .models import Anatomy, anatomy, frozen_depth, frozen_modules

# How far the cached forward may be from the uncached one (relative to the largest value), by precision.
CACHE_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 2e-2}


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------
class Collator:
    """Token ids of one split as a padded matrix made once, so that a batch is a slice, not a Python loop."""

    def __init__(self, enc: Encoded):
        self.enc = enc
        self.lengths = enc.lengths()
        width = int(self.lengths.max()) if len(enc) else 0
        ids = np.full((len(enc), max(width, 1)), enc.pad_id, dtype=np.int64)
        for i, row in enumerate(enc.ids):
            ids[i, : len(row)] = row
        self.ids = torch.from_numpy(ids)
        self.labels = torch.as_tensor(np.asarray(enc.labels), dtype=torch.long)

    def __call__(self, index: np.ndarray, pad_to: int | None = None) -> dict[str, torch.Tensor]:
        """`input_ids`, `attention_mask`, `labels`, `index` of the examples `index`, padded to `pad_to` if
        given, else to the split's fixed length (`longest_in_set`), else to the batch's longest example."""
        idx = torch.as_tensor(index, dtype=torch.long)
        lens = torch.from_numpy(self.lengths[index])
        length = pad_to or self.enc.pad_to or int(lens.max())
        ids = self.ids.index_select(0, idx)
        if length <= ids.shape[1]:
            ids = ids[:, :length]
        else:
            ids = torch.nn.functional.pad(ids, (0, length - ids.shape[1]), value=self.enc.pad_id)
        mask = (torch.arange(length).unsqueeze(0) < lens.unsqueeze(1)).to(torch.long)
        return {"input_ids": ids.contiguous(), "attention_mask": mask, "labels": self.labels.index_select(0, idx),
                "index": idx}


# --------------------------------------------------------------------------------------------------
# Precision and optimiser
# --------------------------------------------------------------------------------------------------
def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"  # on CPU mixed precision rarely pays; ask for bf16 explicitly


def autocast_for(precision: str, device: torch.device) -> Callable[[], Any]:
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def compute_dtype(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def make_optimizer(name: str, params: list[Any], lr: float, momentum: float, weight_decay: float,
                   fused: bool, device: torch.device) -> tuple[torch.optim.Optimizer, str]:
    """The optimiser and which implementation it got: `fused`, `foreach` or `for-loop` (the lab's).

    `fused` asks for the fastest multi-tensor kernel: the fused one (foreach where there is none), except
    SGD on CPU, where PyTorch's fused kernel measured slower than foreach (MiniLM's top two blocks, 3.5 M
    parameters, best of 15 on 2 cores: fused 0.8 ms, foreach 0.5 ms, for-loop 0.4 ms a step, and the
    fused one far worse when the cores are shared); AdamW on CPU: fused 1.5 ms, foreach 33 ms, loop 52 ms."""
    cls = torch.optim.SGD if name == "sgd" else torch.optim.AdamW
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if name == "sgd":
        kwargs["momentum"] = momentum
    if fused:
        cpu_sgd = device.type == "cpu" and name == "sgd"
        variants = ({"foreach": True},) if cpu_sgd else ({"fused": True}, {"foreach": True})
        for variant in variants:
            try:
                return cls(params, **kwargs, **variant), next(iter(variant))
            except (RuntimeError, TypeError, ValueError):
                continue
    return cls(params, **kwargs, foreach=False), "for-loop"


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------
class TrainPass(NamedTuple):
    """One training epoch's statistics (losses and accuracies over the examples seen)."""

    loss: float
    accuracy: float
    samples: int
    real_tokens: int
    padded_tokens: int


class EvalPass(NamedTuple):
    loss: float
    accuracy: float


@dataclass
class WorkReport:
    """The work the Trainer did, as FLOPs count it: (examples, padded length) per batch, per pass.

    Blocks below `depth` (None: the whole encoder, "all") ran forward only; with `cached`, they ran once, in
    the `cache` pass (token-budgeted batches over both splits), and each epoch ran only what is above them;
    without it they ran forward in every pass. The blocks above `depth`, the pooler and the head ran forward
    and backward in `train` passes, forward in `eval` passes."""

    depth: int | None
    cached: bool = False
    cache: list[tuple[int, int]] = field(default_factory=list)
    train: list[list[tuple[int, int]]] = field(default_factory=list)
    eval: list[list[tuple[int, int]]] = field(default_factory=list)


@dataclass
class TrainResult:
    """What the strategy's switches came to (the record's `strategy_detail`)."""

    optimizer_impl: str = "for-loop"
    cache_used: bool = False
    cache_bytes: int = 0
    cache_where: str | None = None
    cache_note: str | None = None
    cache_check_rel_diff: float | None = None
    compiled: bool = False
    compiled_part: str | None = None


class Trainer:
    """One trial's training: built from resolved params, run epoch by epoch under the caller's meters."""

    def __init__(self, model: nn.Module, train: Encoded, val: Encoded, params: dict[str, Any], device: torch.device,
                 max_steps: int | None = None):
        """`max_steps`: cut every training and evaluation pass to its first batches (the largest-batch
        search's probes: the memory peak comes in the first optimiser steps)."""
        self.model = model
        self.max_steps = int(max_steps) if max_steps else None
        self.train_set = train
        self.val_set = val
        self.p = params
        self.device = device
        self.parts: Anatomy = anatomy(model)
        self.depth = frozen_depth(params["frozen_layers"], self.parts.num_layers, params["model"])
        # Precision is decided here, once: everything below (autocast, the scaler, the cache's dtype, the
        # record's strategy_detail, the MFU's peak) reads self.precision.
        self.precision = resolve_precision(params["precision"], device)
        self.autocast = autocast_for(self.precision, device)
        self.scaler = torch.amp.GradScaler(device.type) if self.precision == "fp16" else None
        # One seed for everything random in the loop: batch order (numpy) and dropout (torch).
        self.rng = np.random.default_rng(params["seed"])
        torch.manual_seed(int(params["seed"]))
        self.optimizer, impl = make_optimizer(params["optimizer"], self._param_groups(model, params),
                                              params["learning_rate"], params["momentum"], params["weight_decay"],
                                              params["fused_optimizer"], device)
        self.result = TrainResult(optimizer_impl=impl)
        # The cache applies where something is frozen below a trained part.
        # `cached`: the frozen part runs once, into a cache built at `cache_depth` (None: the whole base, "all").
        self.cached = False
        self.cache_depth: int | None = self.depth
        family = self.parts.family
        if params["cache_frozen"] and (self.depth is None or self.depth > 0):
            if family is None:
                self.result.cache_note = (f"no cache: the layout of model type {model.config.model_type!r} is not "
                                          "known to harness, so the frozen part runs every epoch")
            elif self.depth is not None and not family.partial_cache:
                self.result.cache_note = (f"no cache at frozen_layers = {self.depth}: {family.name} shares one block "
                                          "across its depth (the cache applies to \"all\")")
            else:
                self.cached = True
                if self.depth == self.parts.num_layers and not any(p.requires_grad for p in self.parts.base.parameters()):
                    self.cache_depth = None  # every block frozen and nothing after them in the base: the "all" cache
        # FLOPs: what ran forward only is the cached part when there is a cache, else the frozen blocks.
        self.work = WorkReport(self.cache_depth if self.cached else self.depth)
        if self.cached:
            if params.get("frozen_dropout"):
                self.result.cache_note = ("frozen_dropout ignored: the cached frozen layers ran once in eval mode, "
                                          "so they add no dropout noise")
        self.cache: frozen_cache.FrozenCache | None = None
        self.view: frozen_cache.HeadView | None = None
        self._frozen = frozen_modules(model, params["frozen_layers"])
        self.collate_train = Collator(train)
        self.collate_val = Collator(val)
        self._pin = device.type == "cuda"

    def _param_groups(self, model: nn.Module, params: dict[str, Any]) -> list[Any]:
        """The trainable parameters; with `head_learning_rate`, two groups: the encoder's at `learning_rate`
        and the head's (everything outside the encoder) at its own rate."""
        trainable = [p for p in model.parameters() if p.requires_grad]
        head_lr = params.get("head_learning_rate")
        if head_lr is None:
            return trainable
        in_base = {id(p) for p in self.parts.base.parameters()}
        body = [p for p in trainable if id(p) in in_base]
        head = [p for p in trainable if id(p) not in in_base]
        groups = [{"params": body, "lr": float(params["learning_rate"])}] if body else []
        return groups + [{"params": head, "lr": float(head_lr)}]

    # -- the one-off cache ------------------------------------------------------------------------------
    def uses_cache(self) -> bool:
        return self.cached

    def cache_store_dtype(self) -> torch.dtype:
        return compute_dtype(self.precision)

    def cache_bytes_estimate(self) -> int:
        hidden = getattr(self.model.config, "hidden_size", None) or getattr(self.model.config, "dim", 768)
        n = len(self.train_set) + len(self.val_set)
        tokens = int(self.collate_train.lengths.sum() + self.collate_val.lengths.sum())
        return frozen_cache.estimate_bytes(self.cache_depth, n, tokens, hidden, self.cache_store_dtype())

    def build_cache(self) -> None:
        """Run the frozen part once over the training and validation examples (validation rows are
        numbered after the training rows), sorted by length so that batches carry little padding."""
        assert self.cached, "build_cache without cache_frozen"
        target = frozen_cache.placement(self.cache_bytes_estimate(), self.device, frozen_cache.free_device_bytes(self.device))
        lengths = np.concatenate([self.collate_train.lengths, self.collate_val.lengths])
        self.cache = frozen_cache.build(self.parts, self.cache_depth, self._cache_batches(lengths), torch.from_numpy(lengths),
                                        self.device, self.cache_store_dtype(), self.autocast, target)
        self.view = frozen_cache.HeadView(self.model, self.parts, self.cache)
        self.result.cache_used = True
        self.result.cache_bytes = self.cache.nbytes
        self.result.cache_where = self.cache.where
        self.work.cached = True

    def _cache_batches(self, lengths: np.ndarray) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of both splits in the cache's numbering, longest first, CACHE_BATCH_TOKENS at most each."""
        both = Collator(Encoded(list(self.train_set.ids) + list(self.val_set.ids),
                                np.concatenate([np.asarray(self.train_set.labels), np.asarray(self.val_set.labels)]),
                                None, self.train_set.pad_id))
        order = np.argsort(-lengths, kind="stable")
        budget = CACHE_BATCH_TOKENS.get(self.device.type, CACHE_BATCH_TOKENS["cpu"])
        start = 0
        while start < len(order):
            rows = max(1, budget // max(1, int(lengths[order[start]])))
            batch = both(order[start:start + rows])
            self.work.cache.append((int(batch["input_ids"].shape[0]), int(batch["input_ids"].shape[1])))
            yield batch
            start += rows

    @torch.no_grad()
    def verify_cache(self, n: int = 4) -> float:
        """Largest relative difference (max |a - b| / max |a|) between the uncached and the cached forward
        in eval mode, over what the cache replaces (the encoder's output the head reads: all real token
        states for N, the first-token state and pooled output for "all") and over the logits, on the
        shortest and longest few training and validation examples (so padding is exercised)."""
        assert self.cache is not None and self.view is not None
        diffs = [0.0]
        was_training = self.model.training
        self.model.eval()
        base_attr = self.parts.base_attr
        try:
            for coll, offset in ((self.collate_train, 0), (self.collate_val, len(self.train_set))):
                if len(coll.lengths) == 0:
                    continue
                by_len = np.argsort(coll.lengths, kind="stable")
                index = np.unique(np.concatenate([by_len[: max(1, n // 2)], by_len[-max(1, n - n // 2):]]))
                batch = coll(index)
                ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
                with self.autocast():
                    ref_out = getattr(self.model, base_attr)(input_ids=ids, attention_mask=mask)
                    ref_logits = self.model(input_ids=ids, attention_mask=mask).logits
                    with self.view:
                        args = self._cached_args(batch["index"] + offset, batch["labels"], coll.enc.pad_to)
                        args.pop("labels")
                        got_logits = self.model(**args).logits
                        got_out = getattr(self.model, base_attr)(**args)
                pairs = [(ref_logits, got_logits)]
                if self.cache.depth is None:
                    pad_id = getattr(self.model.config, "pad_token_id", None)
                    pairs.append((frozen_cache.pooled_state(self.parts.pooling, ref_out[0], ids, mask, pad_id), got_out[0]))
                else:
                    valid = args["attention_mask"].bool()
                    width = valid.shape[1]
                    pairs.append((ref_out[0][:, :width][valid], got_out[0][valid]))
                ref_pooled = getattr(ref_out, "pooler_output", None)
                if ref_pooled is not None:
                    pairs.append((ref_pooled, got_out.pooler_output))
                for a, b in pairs:
                    a, b = a.float(), b.float()
                    diffs.append(float((a - b).abs().max() / a.abs().max().clamp(min=1e-12)))
        finally:
            self.model.train(was_training)
        self.result.cache_check_rel_diff = max(diffs)
        return max(diffs)

    def check_cache(self) -> None:
        """`verify_cache` against the tolerance of this precision; raises when the cache is wrong."""
        diff = self.verify_cache()
        tol = CACHE_TOLERANCE[self.precision]
        if not diff <= tol:
            raise RuntimeError(f"frozen-layer cache check failed: cached and uncached forward differ by "
                               f"{diff:.3g} (relative; tolerance {tol} at {self.precision})")

    def _cached_args(self, index: torch.Tensor, labels: torch.Tensor, pad_to: int | None) -> dict[str, torch.Tensor]:
        assert self.cache is not None
        return frozen_cache.cached_batch(self.cache, index, labels, self.device, pad_to=pad_to)

    # -- batches ---------------------------------------------------------------------------------------
    def _batches(self, train: bool) -> Iterator[tuple[dict[str, torch.Tensor], int, int]]:
        """(forward kwargs, real tokens, padded tokens) per batch of the training or validation split."""
        coll = self.collate_train if train else self.collate_val
        enc = coll.enc
        lengths = coll.lengths
        batch_size = self.p["batch_size"] if train else self.p["eval_batch_size"]
        cached_all = self.cache is not None and self.cache.depth is None
        # With the "all" cache a batch has no token dimension, so length buckets would only make the
        # batches' membership less random: they are left out.
        buckets = bool(self.p["length_buckets"]) and not cached_all
        order = batch_order(lengths, batch_size, self.rng, shuffle=train, drop_last=train, buckets=buckets)
        if self.max_steps:
            order = order[: self.max_steps]
        offset = 0 if train else len(self.train_set)
        done = self.work.train if train else self.work.eval
        done.append([])
        for index in order:
            real = int(lengths[index].sum())
            width = enc.pad_to or int(lengths[index].max())
            padded = width * len(index)
            done[-1].append((len(index), width))
            if self.cache is not None:
                idx = torch.as_tensor(index, dtype=torch.long) + offset
                yield self._cached_args(idx, coll.labels[index], enc.pad_to), real, padded
            else:
                b = coll(index)
                b.pop("index")
                if self._pin:
                    b = {k: v.pin_memory() for k, v in b.items()}
                yield {k: v.to(self.device, non_blocking=True) for k, v in b.items()}, real, padded

    # -- epochs ----------------------------------------------------------------------------------------
    def set_train_mode(self) -> None:
        self.model.train()
        if not self.p["frozen_dropout"]:
            for m in self._frozen:
                m.eval()

    def train_step(self, args: dict[str, torch.Tensor]) -> Any:
        """One optimiser step on one batch; returns the model's output (loss and logits)."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.model(**args)
        loss = out.loss
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return out

    def train_epoch(self) -> TrainPass:
        self.set_train_mode()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        samples = real_tokens = padded_tokens = 0
        with self._enter_cache():
            for args, real, padded in self._batches(train=True):
                out = self.train_step(args)
                n = args["labels"].shape[0]
                total_loss += out.loss.detach().float() * n
                correct += (out.logits.detach().argmax(-1) == args["labels"]).sum()
                samples += n
                real_tokens += real
                padded_tokens += padded
        if samples == 0:
            return TrainPass(math.nan, math.nan, 0, 0, 0)
        return TrainPass(float(total_loss) / samples, float(correct) / samples, samples, real_tokens, padded_tokens)

    @torch.no_grad()
    def evaluate(self) -> EvalPass:
        self.model.eval()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        n_total = 0
        with self._enter_cache():
            for args, _, _ in self._batches(train=False):
                with self.autocast():
                    out = self.model(**args)
                n = args["labels"].shape[0]
                total_loss += out.loss.float() * n
                correct += (out.logits.argmax(-1) == args["labels"]).sum()
                n_total += n
        if n_total == 0:
            return EvalPass(math.nan, math.nan)
        return EvalPass(float(total_loss) / n_total, float(correct) / n_total)

    def _enter_cache(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if self.view is None else self.view

    # -- compile ---------------------------------------------------------------------------------------
    def maybe_compile(self) -> None:
        """`torch.compile` the part that trains, in place (module identity is kept, so the cache's views
        and the optimiser still see the same modules): the head for "all", the top blocks and the head for
        N, the whole model for 0 or without the cache. Shapes vary with per-batch padding: dynamic."""
        if not self.p.get("compile"):
            return
        if self.cache is not None and self.cache.depth is None:
            targets = [m for name, m in self.model.named_children() if name != self.parts.base_attr]
            part = "head"
        elif self.cache is not None:
            targets = list(self.parts.layers[self.cache.depth:]) + \
                [m for name, m in self.model.named_children() if name != self.parts.base_attr]
            part = f"top {self.parts.num_layers - int(self.cache.depth)} blocks + head"
        else:
            targets = [self.model]
            part = "model"
        for m in targets:
            if any(True for _ in m.parameters()):
                m.compile(dynamic=None)
        self.result.compiled = True
        self.result.compiled_part = part
