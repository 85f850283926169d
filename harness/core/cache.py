"""The frozen-prefix cache: run the frozen bottom of the network once, train the rest on its outputs.

When the embeddings and the bottom N blocks are frozen and run in eval mode, their output for a given
example never changes, so computing it every epoch (as the lab did) is wasted work. We compute it once per
trial, for the training and the validation examples together (validation rows are indexed after the
training rows):

- `frozen_layers = "all"`: the head reads only the encoder's first-token state (and the pooled output:
  BERT's pooler, or the embedded MiniLM's masked mean), so we keep just that, one vector per example, in
  fp32 whatever the precision (it is tiny). The encoder is replaced by `CachedEncoder`, a lookup whose
  `input_ids` carry example indices.
- `frozen_layers = N`: we keep the hidden states after block N, unpadded and packed into one [tokens, H]
  tensor with per-example offsets, in the compute dtype (bf16/fp16 under mixed precision). A batch is one
  vectorised gather, padded to the batch's longest example (or to a fixed length, for `longest_in_set`).
  Blocks N.. and the head train on it: the embedding stage is replaced by a stand-in and the block list by
  its top part, so the model's own forward (masks, pooling, head, loss) runs unchanged. Encoders take the
  states as `inputs_embeds`; decoders, whose classifier finds the token it pools from `input_ids`, get ids
  that name cache rows (`CacheLookup`). A final norm after the blocks is off while the cache is built.
  "all" keeps, per example, the one state the family's head reads (first token, last non-pad token, or the
  masked mean), so the head run on it gives the uncached logits.

Where the cache lives: on the GPU when it takes less than a quarter of the free device memory after the
model is loaded (`placement`), otherwise in host memory (pinned on a CUDA machine, so that each batch's
copy is asynchronous); on a CPU run it is host memory. The caller times `build` as the trial's `cache`
phase, and `Trainer.verify_cache` checks on a few examples that the cached path gives the uncached logits.

Frozen layers run in eval mode for the cache, so the dropout noise the lab had inside them is gone: the
only semantic difference from the uncached loop (docs/performance.md measures its effect on accuracy).

On a CPU build, the heap's free pages go back to the system after each batch (`release_free_heap`): without
it the build's peak climbs batch by batch as each forward's transients land among the holes the last one left
(MiniLM, everything frozen, 2,000 rows at up to 256 tokens: 1,114-1,188 MiB, and 843-856 with the trim;
docs/plan.md), for 3-5 % of the build's time (its transient pages are touched afresh each batch). They go back
before the first batch too, so that it runs as every later one does: a first batch on the loaded process's free
pages grew the process by less, and the plan's probes, whose builds are a batch or two, forecast a long build
from it (MiniLM, everything frozen, 400 and 2,000 rows at 256 tokens: 8-10 % under, and 0.4 % over to 2.6 %
under with this trim; docs/plan.md).
"""

from __future__ import annotations

import ctypes
import functools
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from .models import Anatomy

DEVICE_FRACTION = 0.25  # keep the cache on the GPU when it needs less than this share of the free memory


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc's; None where the C library has none (macOS)
    except (OSError, TypeError):  # Windows: no process handle to open this way
        return None


def release_free_heap() -> bool:
    """Hand the free pages of the C heap back to the system (glibc's `malloc_trim(0)`, which also releases
    whole free pages in the middle of the heap, not only at its top). Whether it could be called."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class PassThroughEmbeddings(nn.Module):
    """Stands in for the embeddings: returns the `inputs_embeds` it is given (the cached hidden states)."""

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        emb = kwargs.get("inputs_embeds", kwargs.get("input_embeds"))
        if emb is None:
            emb = next((a for a in args if torch.is_tensor(a) and a.is_floating_point()), None)
        if emb is None:
            raise RuntimeError("cached forward called without inputs_embeds")
        return emb


def _cached_output_class() -> type:
    """BaseModelOutputWithPooling that answers None for the fields a family's head reads and a cache has
    none of (a decoder's key/value cache is `past_key_values` in some transformers versions, `cache` in others)."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    global _CachedOutput
    if _CachedOutput is None:
        class CachedOutput(BaseModelOutputWithPooling):  # type: ignore[misc]
            def __getattr__(self, name: str) -> Any:
                if name.startswith("__"):
                    raise AttributeError(name)
                return None

        _CachedOutput = CachedOutput
    return _CachedOutput


_CachedOutput: type | None = None


class CachedEncoder(nn.Module):
    """Stands in for the whole frozen encoder: `input_ids[:, 0]` carries example indices into the cache.
    Results come back on the device of `input_ids` (the cache itself may live in host memory)."""

    def __init__(self, first_token: torch.Tensor, pooled: torch.Tensor | None, config: Any):
        super().__init__()
        self.first_token = first_token  # [N, 1, H]
        self.pooled = pooled            # [N, H] or None
        self.config = config

    def forward(self, input_ids: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        BaseModelOutputWithPooling = _cached_output_class()

        if input_ids is None:
            raise RuntimeError("cached encoder called without example indices (input_ids)")
        out_device = input_ids.device
        idx = input_ids[:, 0].to(self.first_token.device)
        hidden = self.first_token.index_select(0, idx).to(out_device, non_blocking=True)
        pooled = None if self.pooled is None else self.pooled.index_select(0, idx).to(out_device, non_blocking=True)
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooled)


class CacheLookup(nn.Module):
    """Stands in for a decoder's token embeddings above a cached depth. A decoder's classifier finds the
    token it pools from `input_ids` (the rightmost id that is not the pad id), so the cached batch keeps
    `input_ids`, and they carry rows of the packed cache instead of tokens: row r is id r, or r + 1 from the
    pad id on (so no row is ever the pad id); the pad id reads as zeros. The cache may sit in host memory:
    rows are read there, and come back on the ids' device."""

    def __init__(self, flat: torch.Tensor, pad_id: int):
        super().__init__()
        self.flat = flat  # a plain attribute, not a buffer: `.to()` and state_dict leave it alone
        self.pad_id = int(pad_id)

    def forward(self, input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        valid = input_ids != self.pad_id
        rows = torch.where(valid, input_ids - (input_ids > self.pad_id).to(input_ids.dtype), 0)
        out = self.flat.index_select(0, rows.reshape(-1).to(self.flat.device)).view(*input_ids.shape, -1)
        out = out.to(input_ids.device, non_blocking=True)
        return out.masked_fill(~valid.unsqueeze(-1), 0)


def row_ids(rows: torch.Tensor, valid: torch.Tensor, pad_id: int) -> torch.Tensor:
    """`CacheLookup`'s ids of packed rows (the pad id where `valid` is false)."""
    ids = rows + (rows >= pad_id).to(rows.dtype)
    return torch.where(valid, ids, pad_id)


class Zeros(nn.Module):
    """Stands in for GPT-2's position embeddings above a cached depth (the cached states already hold them)."""

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.zeros(())


def pooled_state(pooling: str, hidden: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor, pad_id: int | None
                 ) -> torch.Tensor:
    """[B, 1, H]: the one state of the base's output that the family's head reads. A head run on a
    one-token sequence of it gives the full forward's logits (first, mean and last of one token are that
    token). "last" is transformers' rule: the rightmost position whose id is not the pad id."""
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * m).sum(1) / m.sum(1).clamp(min=1)).unsqueeze(1)
    if pooling == "last":
        non_pad = (input_ids != pad_id).to(torch.int32) if pad_id is not None else torch.ones_like(input_ids, dtype=torch.int32)
        last = (torch.arange(input_ids.shape[1], device=input_ids.device, dtype=torch.int32) * non_pad).argmax(-1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)].unsqueeze(1)
    return hidden[:, :1]


@dataclass
class FrozenCache:
    """The frozen part's outputs for every example (training rows first, then validation rows).

    depth None ("all"): `first_token` [N, 1, H] and `pooled` [N, H] (or None).
    depth N: `flat` [sum of lengths, H] holds example i's states at rows offsets[i] : offsets[i] + lengths[i].
    """

    depth: int | None
    n: int
    first_token: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    flat: torch.Tensor | None = None
    offsets: torch.Tensor | None = None  # [N] int64, on the cache's device
    lengths: torch.Tensor | None = None  # [N] int64, on the cache's device
    nbytes: int = 0
    where: str = "cpu"
    lookup_pad_id: int | None = None  # decoders: cached batches carry `CacheLookup` ids (see there)


# --------------------------------------------------------------------------------------------------
# Size and placement
# --------------------------------------------------------------------------------------------------
def estimate_bytes(depth: int | None, n_examples: int, n_tokens: int, hidden: int, store_dtype: torch.dtype) -> int:
    """What `build` will allocate: two fp32 vectors per example for "all", one state per token for N."""
    if depth is None:
        return n_examples * hidden * 4 * 2
    return n_tokens * hidden * torch.tensor([], dtype=store_dtype).element_size() + n_examples * 16


def placement(nbytes: int, device: torch.device, free_device_bytes: int | None) -> torch.device:
    """Where a cache of `nbytes` goes: the compute device if it is a GPU with room to spare, else host."""
    if device.type == "cpu":
        return torch.device("cpu")
    if free_device_bytes is not None and nbytes < DEVICE_FRACTION * free_device_bytes:
        return device
    return torch.device("cpu")


def free_device_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    try:
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    except Exception:
        return None


# --------------------------------------------------------------------------------------------------
# Views of the model
# --------------------------------------------------------------------------------------------------
@contextmanager
def swapped(obj: nn.Module, attr: str, replacement: nn.Module | None) -> Iterator[None]:
    original = getattr(obj, attr)
    setattr(obj, attr, replacement)
    try:
        yield
    finally:
        setattr(obj, attr, original)


@contextmanager
def trunk_view(parts: Anatomy, depth: int) -> Iterator[nn.Module]:
    """The base with only its bottom `depth` blocks and no final norm: its output is the state after block
    `depth`."""
    with ExitStack() as stack:
        stack.enter_context(swapped(parts.layers_owner, parts.layers_attr, nn.ModuleList(list(parts.layers[:depth]))))
        for path in parts.family.after if parts.family else ():
            owner, attr = _owner_of(parts.base, path)
            if getattr(owner, attr, None) is not None:
                stack.enter_context(swapped(owner, attr, nn.Identity()))
        yield parts.base


class HeadView:
    """The replacement modules for training on a cache, made once per trial (stable module identity, so
    that a compiled top part is not re-traced each epoch). `with view:` swaps them in, exit restores.

    "all": the whole base becomes a `CachedEncoder`. N: the blocks become their top part and the embedding
    stage a stand-in: encoders take the cached states as `inputs_embeds` (`PassThroughEmbeddings`; ELECTRA's
    projection becomes an identity); decoders keep `input_ids` for their pooling and read the states through
    `CacheLookup` (GPT-2's position embeddings become zeros, its embedding dropout an identity)."""

    def __init__(self, model: nn.Module, parts: Anatomy, cache: FrozenCache):
        self.model, self.parts, self.cache = model, parts, cache
        self.swaps: list[tuple[nn.Module, str, nn.Module | None]] = []
        if cache.depth is None:
            self.swaps.append((model, parts.base_attr, CachedEncoder(cache.first_token, cache.pooled, parts.base.config)))  # type: ignore[arg-type]
        else:
            assert parts.layers_owner is not None and parts.family is not None
            self.swaps.append((parts.layers_owner, parts.layers_attr, nn.ModuleList(list(parts.layers[cache.depth:]))))  # type: ignore[index]
            for i, (path, module) in enumerate(parts.stem):
                owner, attr = _owner_of(parts.base, path)
                if i == 0:
                    stand_in: nn.Module = CacheLookup(cache.flat, cache.lookup_pad_id) \
                        if cache.lookup_pad_id is not None else PassThroughEmbeddings()  # type: ignore[arg-type]
                elif isinstance(module, nn.Embedding):
                    stand_in = Zeros()
                else:
                    stand_in = nn.Identity()
                self.swaps.append((owner, attr, stand_in))
            if cache.depth > 0:
                for path in parts.family.top_disable:
                    owner, attr = _owner_of(parts.base, path)
                    if getattr(owner, attr, None) is not None:
                        self.swaps.append((owner, attr, None))
        self.top = self.swaps[0][2] if cache.depth is not None else None
        self._stack: ExitStack | None = None

    def __enter__(self) -> nn.Module:
        stack = ExitStack()
        for owner, attr, replacement in self.swaps:
            stack.enter_context(swapped(owner, attr, replacement))
        self._stack = stack
        return self.model

    def __exit__(self, *exc: Any) -> None:
        assert self._stack is not None
        self._stack.close()
        self._stack = None


@contextmanager
def head_view(model: nn.Module, parts: Anatomy, cache: FrozenCache) -> Iterator[nn.Module]:
    with HeadView(model, parts, cache) as m:
        yield m


def _owner_of(base: nn.Module, path: str) -> tuple[nn.Module, str]:
    owner = base
    *heads, last = path.split(".")
    for part in heads:
        owner = getattr(owner, part)
    return owner, last


# --------------------------------------------------------------------------------------------------
# Building and reading
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def build(parts: Anatomy, depth: int | None, batches: Iterable[dict[str, torch.Tensor]], lengths: torch.Tensor,
          device: torch.device, store_dtype: torch.dtype, autocast: Callable[[], Any], target: torch.device) -> FrozenCache:
    """Run the frozen trunk once, in eval mode, over `batches` (dicts with `index`, `input_ids`,
    `attention_mask`, padded per batch) and keep what the rest of the network needs, on `target`.
    `lengths` are the examples' token counts (so the packed store is allocated once)."""
    was_training = parts.base.training
    parts.base.eval()
    n = int(lengths.numel())
    pad_id = getattr(parts.base.config, "pad_token_id", None)
    decoder = parts.family is not None and parts.family.decoder
    cache = FrozenCache(depth=depth, n=n, where=str(target), lookup_pad_id=pad_id if decoder and depth is not None else None)
    pin = target.type == "cpu" and device.type == "cuda"
    # the forwards' transients live in host memory: trim before the first batch and after each (see the module's
    # docstring), so that every batch runs on a heap without free pages, the first as the rest
    host_heap = device.type == "cpu"
    if host_heap:
        release_free_heap()
    try:
        if depth is None:
            first = pooled = None
            for batch in batches:
                ids = batch["input_ids"].to(device, non_blocking=True)
                mask = batch["attention_mask"].to(device, non_blocking=True)
                with autocast():
                    out = parts.base(input_ids=ids, attention_mask=mask)
                h = pooled_state(parts.pooling, out[0], ids, mask, pad_id).float()
                p = getattr(out, "pooler_output", None)
                if first is None:
                    first = torch.empty((n, 1, h.shape[-1]), dtype=torch.float32, device=target, pin_memory=pin)
                    if p is not None:
                        pooled = torch.empty((n, p.shape[-1]), dtype=torch.float32, device=target, pin_memory=pin)
                idx = batch["index"].to(target)
                first.index_copy_(0, idx, h.to(target))
                if p is not None:
                    pooled.index_copy_(0, idx, p.float().to(target))  # type: ignore[union-attr]
                del out, h, p
                if host_heap:
                    release_free_heap()
            if first is None:
                raise RuntimeError("frozen-layer cache: no examples")
            cache.first_token, cache.pooled = first, pooled
            cache.nbytes = sum(t.numel() * t.element_size() for t in (first, pooled) if t is not None)
        else:
            lengths = lengths.to(torch.long)
            offsets = torch.zeros_like(lengths)
            offsets[1:] = torch.cumsum(lengths, 0)[:-1]
            flat: torch.Tensor | None = None
            with trunk_view(parts, depth) as trunk:
                for batch in batches:
                    ids = batch["input_ids"].to(device, non_blocking=True)
                    mask = batch["attention_mask"].to(device, non_blocking=True)
                    with autocast():
                        out = trunk(input_ids=ids, attention_mask=mask)
                    h = out[0]
                    if flat is None:
                        flat = torch.empty((int(lengths.sum()), h.shape[-1]), dtype=store_dtype, device=target,
                                           pin_memory=pin)
                    valid = mask.bool()
                    pos = torch.arange(valid.shape[1], device=device)
                    dest = (offsets.to(device)[batch["index"].to(device)].unsqueeze(1) + pos)[valid]
                    flat.index_copy_(0, dest.to(target), h[valid].to(store_dtype).to(target))
                    del out, h, valid, dest
                    if host_heap:
                        release_free_heap()
            if flat is None:
                raise RuntimeError("frozen-layer cache: no examples")
            cache.flat, cache.offsets, cache.lengths = flat, offsets.to(target), lengths.to(target)
            cache.nbytes = flat.numel() * flat.element_size() + 2 * n * 8
    finally:
        parts.base.train(was_training)
    return cache


def gather(cache: FrozenCache, index: torch.Tensor, pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states [B, L, H] (zeros past each example's end) and the attention mask [B, L] of the
    examples `index`, on the cache's device; L is the longest of them, or `pad_to` if that is longer."""
    assert cache.flat is not None
    rows, valid = _rows(cache, index, pad_to)
    length = valid.shape[1]
    hidden = cache.flat.index_select(0, rows.reshape(-1)).view(len(index), length, -1)
    hidden.masked_fill_(~valid.unsqueeze(-1), 0)
    return hidden, valid.to(torch.long)


def _rows(cache: FrozenCache, index: torch.Tensor, pad_to: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed-cache rows [B, L] of the examples `index` (0 past each example's end) and where they are valid."""
    assert cache.offsets is not None and cache.lengths is not None
    index = index.to(cache.offsets.device)
    lens = cache.lengths.index_select(0, index)
    length = int(lens.max())
    if pad_to is not None:
        length = max(length, int(pad_to))
    pos = torch.arange(length, device=lens.device)
    valid = pos.unsqueeze(0) < lens.unsqueeze(1)
    return torch.where(valid, cache.offsets.index_select(0, index).unsqueeze(1) + pos, 0), valid


def cached_batch(cache: FrozenCache, index: torch.Tensor, labels: torch.Tensor, device: torch.device,
                 pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """A training/eval batch read from the cache (the model's forward arguments), on `device`.
    `index` is in the cache's numbering (validation rows after the training rows)."""
    if cache.depth is None:
        ids = index.view(-1, 1).to(device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels.to(device)}
    if cache.lookup_pad_id is not None:
        rows, valid = _rows(cache, index, pad_to)
        ids = row_ids(rows, valid, cache.lookup_pad_id)
        return {"input_ids": ids.to(device), "attention_mask": valid.to(torch.long).to(device), "labels": labels.to(device)}
    hidden, mask = gather(cache, index, pad_to)
    if hidden.device != device:
        if device.type == "cuda":
            hidden, mask = hidden.pin_memory(), mask.pin_memory()
        hidden, mask = hidden.to(device, non_blocking=True), mask.to(device, non_blocking=True)
    return {"inputs_embeds": hidden, "attention_mask": mask, "labels": labels.to(device)}
