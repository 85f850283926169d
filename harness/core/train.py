"""The training loop, for both strategies. Read top to bottom: batches, precision, optimiser, epochs.

`lab` is the notebook: padded to the longest text of the set, fp32, the whole model forward every epoch,
dropout active in the frozen layers. `fast` switches on the frozen-prefix cache, per-batch padding with
length buckets, mixed precision on CUDA and a fused optimiser. Each switch is a setting of its own.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from . import cache as frozen_cache
from .data import Encoded
from .models import Anatomy, anatomy, frozen_depth, frozen_modules

MEGABATCH = 50  # length buckets: sort within groups of 50 batches, then shuffle the batches


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------
def batch_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, *, shuffle: bool,
                drop_last: bool, buckets: bool) -> list[np.ndarray]:
    """Example indices per batch. With `buckets`, examples of similar length share a batch (less padding)
    while the batches themselves come in random order, so training stays stochastic."""
    n = len(lengths)
    order = rng.permutation(n) if shuffle else np.arange(n)
    if drop_last:
        order = order[: (n // batch_size) * batch_size]
    if buckets:
        chunks = []
        span = batch_size * MEGABATCH
        for start in range(0, len(order), span):
            part = order[start:start + span]
            chunks.append(part[np.argsort(-lengths[part], kind="stable")])
        order = np.concatenate(chunks) if chunks else order
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if buckets and shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(enc: Encoded, index: np.ndarray) -> dict[str, torch.Tensor]:
    rows = [enc.ids[i] for i in index]
    length = enc.pad_to or max(len(r) for r in rows)
    ids = torch.full((len(rows), length), enc.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[j, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.as_tensor(enc.labels[index]),
            "index": torch.as_tensor(index, dtype=torch.long)}


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


def make_optimizer(name: str, params: list[nn.Parameter], lr: float, momentum: float, weight_decay: float,
                   fused: bool, device: torch.device) -> tuple[torch.optim.Optimizer, str]:
    cls = torch.optim.SGD if name == "sgd" else torch.optim.AdamW
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if name == "sgd":
        kwargs["momentum"] = momentum
    if fused:
        for variant in ({"fused": True}, {"foreach": True}):
            try:
                return cls(params, **kwargs, **variant), next(iter(variant))
            except (RuntimeError, TypeError, ValueError):
                continue
    return cls(params, **kwargs, foreach=False), "for-loop"


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------
@dataclass
class EpochStats:
    epoch: int
    train_seconds: float
    eval_seconds: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    samples: int
    real_tokens: int
    padded_tokens: int

    def as_record(self) -> dict[str, Any]:
        seconds = self.train_seconds + self.eval_seconds
        rate = lambda x: round(x / self.train_seconds, 2) if self.train_seconds > 0 else None  # noqa: E731
        return {
            "epoch": self.epoch,
            "seconds": round(seconds, 6),
            "train_seconds": round(self.train_seconds, 6),
            "eval_seconds": round(self.eval_seconds, 6),
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
            "samples_per_s": rate(self.samples),
            "tokens_per_s": rate(self.real_tokens),
            "padded_tokens_per_s": rate(self.padded_tokens),
            "train_samples": self.samples,
            "train_real_tokens": self.real_tokens,
            "train_padded_tokens": self.padded_tokens,
        }


@dataclass
class TrainResult:
    epochs: list[EpochStats] = field(default_factory=list)
    precision: str = "fp32"
    optimizer_impl: str = "for-loop"
    cache_used: bool = False
    cache_bytes: int = 0
    cache_where: str | None = None
    cache_note: str | None = None
    compiled: bool = False


class Trainer:
    """One trial's training: built from resolved params, run epoch by epoch under the caller's meters."""

    def __init__(self, model: nn.Module, train: Encoded, val: Encoded, params: dict[str, Any], device: torch.device):
        self.model = model
        self.train_set = train
        self.val_set = val
        self.p = params
        self.device = device
        self.parts: Anatomy = anatomy(model)
        self.depth = frozen_depth(params["frozen_layers"], self.parts.num_layers, params["model"])
        self.precision = resolve_precision(params["precision"], device)
        self.autocast = autocast_for(self.precision, device)
        self.scaler = torch.amp.GradScaler(device.type) if self.precision == "fp16" else None
        self.rng = np.random.default_rng(params["seed"])
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer, impl = make_optimizer(params["optimizer"], trainable, params["learning_rate"],
                                              params["momentum"], params["weight_decay"], params["fused_optimizer"], device)
        self.result = TrainResult(precision=self.precision, optimizer_impl=impl)
        # The cache applies where something is frozen below a trained part.
        self.cache_depth: int | None | str = "off"
        if params["cache_frozen"] and (self.depth is None or self.depth > 0):
            self.cache_depth = self.depth
        self.train_cache: frozen_cache.FrozenCache | None = None
        self.val_cache: frozen_cache.FrozenCache | None = None
        self._frozen = frozen_modules(model, params["frozen_layers"])
        self._step_model: Callable[..., Any] = model

    # -- the one-off cache ------------------------------------------------------------------------------
    def uses_cache(self) -> bool:
        return self.cache_depth != "off"

    def build_cache(self) -> None:
        depth = None if self.cache_depth is None else int(self.cache_depth)  # type: ignore[arg-type]
        store_dtype = torch.float32 if self.precision == "fp32" else (
            torch.bfloat16 if self.precision == "bf16" else torch.float16)
        est = self._cache_bytes_estimate(depth, store_dtype)
        keep_on_device = self.device.type == "cuda" and est < 0.25 * _free_cuda_bytes(self.device)
        bs = max(self.p["eval_batch_size"], self.p["batch_size"])
        caches = []
        for enc in (self.train_set, self.val_set):
            order = batch_order(enc.lengths(), bs, self.rng, shuffle=False, drop_last=False, buckets=True)
            batches = (collate_for_cache(enc, b) for b in order)
            caches.append(frozen_cache.build(self.parts, depth, batches, len(enc), self.device, store_dtype,
                                             self.autocast, keep_on_device))
        self.train_cache, self.val_cache = caches
        self.result.cache_used = True
        self.result.cache_bytes = sum(c.nbytes for c in caches)
        self.result.cache_where = caches[0].where

    def _cache_bytes_estimate(self, depth: int | None, dtype: torch.dtype) -> int:
        hidden = getattr(self.model.config, "hidden_size", None) or getattr(self.model.config, "dim", 768)
        n = len(self.train_set) + len(self.val_set)
        per = torch.tensor([], dtype=dtype).element_size() * hidden
        if depth is None:
            return n * per * 2
        return int(self.train_set.lengths().sum() + self.val_set.lengths().sum()) * per

    def verify_cache(self, n: int = 4, atol: float = 1e-4) -> float:
        """Largest |logit difference| between the cached and the uncached forward, in eval mode."""
        enc = self.val_set
        index = np.arange(min(n, len(enc)))
        batch = collate(enc, index)
        self.model.eval()
        with torch.no_grad(), self.autocast():
            ref = self.model(input_ids=batch["input_ids"].to(self.device),
                             attention_mask=batch["attention_mask"].to(self.device)).logits.float()
            with self._cached_model(self.val_cache):
                args = frozen_cache.cached_batch(self.val_cache, batch["index"], batch["labels"], self.device)
                args.pop("labels")
                got = self.model(**args).logits.float()
        return float((ref - got).abs().max())

    @contextlib.contextmanager
    def _cached_model(self, cache: frozen_cache.FrozenCache) -> Iterator[nn.Module]:
        """The model with its frozen part replaced by lookups into `cache` (restored on exit)."""
        with frozen_cache.head_view(self.model, self.parts, cache.depth, cache.first_token, cache.pooled) as m:
            yield m

    # -- batches ---------------------------------------------------------------------------------------
    def _batches(self, enc: Encoded, cache: frozen_cache.FrozenCache | None, batch_size: int, train: bool
                 ) -> Iterator[tuple[dict[str, torch.Tensor], int, int]]:
        """(forward kwargs, real tokens, padded tokens) per batch."""
        lengths = enc.lengths()
        order = batch_order(lengths, batch_size, self.rng, shuffle=train, drop_last=train,
                            buckets=bool(self.p["length_buckets"]))
        for index in order:
            real = int(lengths[index].sum())
            if cache is not None:
                pad = enc.pad_to or int(lengths[index].max())
                args = frozen_cache.cached_batch(cache, torch.as_tensor(index), torch.as_tensor(enc.labels[index]),
                                                 self.device, pad_to=enc.pad_to if cache.depth is not None else None)
                yield args, real, pad * len(index)
            else:
                b = collate(enc, index)
                b.pop("index")
                padded = int(b["input_ids"].numel())
                yield {k: v.to(self.device, non_blocking=True) for k, v in b.items()}, real, padded

    # -- epochs ----------------------------------------------------------------------------------------
    def set_train_mode(self) -> None:
        self.model.train()
        if not self.p["frozen_dropout"]:
            for m in self._frozen:
                m.eval()

    def train_epoch(self) -> tuple[float, float, int, int, int]:
        self.set_train_mode()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        samples = real_tokens = padded_tokens = 0
        cache = self.train_cache if self.uses_cache() else None
        ctx = self._enter_cache(cache)
        with ctx:
            for args, real, padded in self._batches(self.train_set, cache, self.p["batch_size"], train=True):
                with self.autocast():
                    out = self._step_model(**args)
                loss = out.loss
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    loss.backward()
                    self.optimizer.step()
                n = args["labels"].shape[0]
                total_loss += loss.detach().float() * n
                correct += (out.logits.detach().argmax(-1) == args["labels"]).sum()
                samples += n
                real_tokens += real
                padded_tokens += padded
        if samples == 0:
            return math.nan, math.nan, 0, 0, 0
        return float(total_loss) / samples, float(correct) / samples, samples, real_tokens, padded_tokens

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        self.model.eval()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        n_total = 0
        cache = self.val_cache if self.uses_cache() else None
        with self._enter_cache(cache):
            for args, _, _ in self._batches(self.val_set, cache, self.p["eval_batch_size"], train=False):
                with self.autocast():
                    out = self._step_model(**args)
                n = args["labels"].shape[0]
                total_loss += out.loss.float() * n
                correct += (out.logits.argmax(-1) == args["labels"]).sum()
                n_total += n
        return float(total_loss) / n_total, float(correct) / n_total

    def _enter_cache(self, cache: frozen_cache.FrozenCache | None) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if cache is None else self._cached_model(cache)

    def maybe_compile(self) -> None:
        if self.p.get("compile"):
            self._step_model = torch.compile(self.model)
            self.result.compiled = True


def collate_for_cache(enc: Encoded, index: np.ndarray) -> dict[str, torch.Tensor]:
    b = collate(Encoded(enc.ids, enc.labels, None, enc.pad_id), index)  # per-batch padding: same outputs
    return b


def _free_cuda_bytes(device: torch.device) -> int:
    try:
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    except Exception:
        return 0
